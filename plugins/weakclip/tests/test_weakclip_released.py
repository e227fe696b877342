"""An official WeakCLIP checkpoint evaluated as a user would: ``wsss refine`` and a run without training.

The checkpoint is built in the official (mmseg) layout from a tiny random CLIP for the synthetic world's
5 classes (``test_weakclip_model.official_state``). The config names OpenAI's CLIP file
(``released:clip_vit_b16_openai``), which is not here: the checkpoint's own CLIP tensors must be enough.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
import yaml
from test_weakclip_model import official_state  # the official-layout builders (same folder)

from wsss_kit.cli.main import main
from wsss_kit.clip import TINY_CLIP, load_clip
from wsss_kit.data.image_io import read_mask_raw, save_mask_png
from wsss_kit.data.synthetic import SyntheticDataset

DATA = {"train": {"type": "datasets/synthetic", "split": "train", "num_images": 4, "image_size": 48},
        "eval": {"type": "datasets/synthetic", "split": "val", "num_images": 3, "image_size": 48}}


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    root = tmp_path_factory.mktemp("weakclip_released")
    torch.manual_seed(0)
    clip = load_clip(TINY_CLIP, normalization="imagenet", pos_interpolation="bilinear", precision="fp32")
    torch.save({"state_dict": official_state(clip, k=6), "meta": {"iter": 20000}}, root / "weakclip_voc.pth")
    seeds = {}
    for split, node in DATA.items():  # seeds: the ground truth itself (any valid seed masks do)
        ds = SyntheticDataset(node["split"], num_images=node["num_images"], image_size=node["image_size"])
        seeds[split] = str(root / "seeds" / split)
        for i in range(len(ds)):
            sample = ds[i]
            save_mask_png(root / "seeds" / split / f"{sample['name']}.png", np.asarray(sample["mask"]), ds.palette)
    cfg = {"run_dir": str(root / "run"), "seed": 0, "device": "cpu", "data": DATA, "seeds": {"source": seeds},
           "refiner": {"type": "refiners/weakclip", "preset": "official", "clip_model": TINY_CLIP,
                       "clip_weights": "released:clip_vit_b16_openai", "matching_width": 16, "decoder_channels": 8,
                       "crf_workers": 0, "loss_crf_workers": 0, "scales": [1.0], "base_size": None, "flip": False,
                       "crf": None},
           "refiner_train": {"steps": 1, "batch_size": 2, "lr": 1.0e-4, "optimizer": "adamw"},
           "pseudo_masks": {"batch_size": 2}}
    config = root / "weakclip.yaml"
    config.write_text(yaml.safe_dump(cfg))
    return root, config


@pytest.fixture(autouse=True)
def empty_weights_dir(tmp_path, monkeypatch):
    monkeypatch.setenv("WSSS_WEIGHTS_DIR", str(tmp_path / "weights"))  # ViT-B-16.pt is not here
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")


def test_wsss_refine_evaluates_the_official_checkpoint_alone(setup, tmp_path, capsys):
    root, config = setup
    out = tmp_path / "refine"
    with pytest.warns(UserWarning, match="carries its own CLIP tensors"):
        assert main(["refine", str(config), "--split", "eval", "--checkpoint", str(root / "weakclip_voc.pth"),
                     "--out", str(out)]) == 0
    masks = sorted((out / "pseudo_masks" / "eval").glob("*.png"))
    assert len(masks) == 3
    assert all(read_mask_raw(m).shape == (48, 48) and read_mask_raw(m).max() <= 5 for m in masks)
    summary = json.loads((out / "pseudo_masks" / "eval" / "summary.json").read_text())
    assert summary["images"] == 3 and 0.0 <= summary["pseudo_masks"]["miou"] <= 1.0


def test_a_run_with_the_checkpoint_trains_no_refiner_and_writes_the_same_masks(setup, tmp_path):
    root, config = setup
    out = tmp_path / "run"
    ckpt = str(root / "weakclip_voc.pth")
    with pytest.warns(UserWarning, match="carries its own CLIP tensors"):
        assert main(["run", str(config), "--stages", "seeds,train_refiner,pseudo_masks", "--out", str(out),
                     "--set", f"refiner.checkpoint={ckpt}"]) == 0
    stages = json.loads((out / "manifest.json").read_text())["stages"]
    assert stages["train_refiner"]["skipped"] and "from checkpoint" in stages["train_refiner"]["reason"]
    assert not (out / "train_refiner" / "model.pt").exists()
    assert stages["pseudo_masks"]["eval"]["miou"] is not None
    refine_out = tmp_path / "refine"
    with pytest.warns(UserWarning):
        assert main(["refine", str(config), "--split", "eval", "--checkpoint", ckpt, "--out", str(refine_out)]) == 0
    for mask in sorted((out / "pseudo_masks" / "eval").glob("*.png")):
        assert np.array_equal(read_mask_raw(mask), read_mask_raw(refine_out / "pseudo_masks" / "eval" / mask.name))


def test_wsss_weights_says_the_official_checkpoint_carries_its_clip(setup, tmp_path, capsys):
    """``wsss weights`` agrees with the refiner: with an official checkpoint the absent CLIP file is not
    needed (exit 0); without one it is missing (exit 1); a checkpoint without CLIP changes nothing."""
    from wsss_kit.weights import required_weights

    root, config = setup
    ckpt = str(root / "weakclip_voc.pth")
    assert main(["weights", str(config), "--set", f"refiner.checkpoint={ckpt}"]) == 0
    assert "carries these weights" in capsys.readouterr().out
    assert main(["weights", str(config)]) == 1
    cfg = yaml.safe_load(config.read_text())
    cfg["refiner"]["checkpoint"] = ckpt
    (clip,) = [r for r in required_weights(cfg) if r.key == "refiner.clip_weights"]
    assert clip.status.startswith("not needed") and "carries these weights" in clip.detail
    state = torch.load(ckpt, weights_only=True)["state_dict"]
    no_clip = {k: v for k, v in state.items() if not k.startswith(("text_encoder.", "backbone."))}
    torch.save(no_clip, tmp_path / "no_clip.pth")
    cfg["refiner"]["checkpoint"] = str(tmp_path / "no_clip.pth")
    (clip,) = [r for r in required_weights(cfg) if r.key == "refiner.clip_weights"]
    assert clip.status == "missing"
