"""``wsss cam CONFIG``: CAM files and seeds of one split, sharded, resumable, scored when complete."""

from __future__ import annotations

import json
import shutil
import textwrap
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from wsss_kit.cli.main import main
from wsss_kit.data.synthetic import SyntheticDataset
from wsss_kit.errors import DataError
from wsss_kit.interfaces import cams_to_seeds
from wsss_kit.data.artifacts import load_cams, save_cams

pytestmark = pytest.mark.usefixtures("offline")

NUM_TRAIN = 6
SIZE = 32


@pytest.fixture
def offline(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")


def write_config(path: Path, run_dir: Path, train: str | None = None, extra: str = "") -> Path:
    """A small run config. One image per network call, so that every image's CAMs are the same
    bit for bit whichever images share its batch (batched convolutions differ by ~1e-6 on CPU)."""
    train = train or f"{{type: datasets/synthetic, split: train, num_images: {NUM_TRAIN}, image_size: {SIZE}}}"
    path.write_text(textwrap.dedent(f"""
        run_dir: {run_dir}
        seed: 0
        device: cpu
        data:
          train: {train}
          eval: {{type: datasets/synthetic, split: val, num_images: 3, image_size: {SIZE}}}
        cam:
          model: {{type: cams/resnet_cam, backbone: test_resnet}}
          infer: {{scales: [1.0], flip: false, batch_size: 1}}
        seeds: {{bg_threshold: 0.2}}
    """) + extra)
    return path


def save_checkpoint(path: Path, seed: int = 1, num_classes: int = 5) -> Path:
    from wsss_cams import ResNetCAM

    torch.manual_seed(seed)
    torch.save(ResNetCAM(num_classes, backbone="test_resnet").state_dict(), path)
    return path


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    """A config, a checkpoint and one finished unsharded run (``base``) that tests copy from."""
    root = tmp_path_factory.mktemp("cam")
    config = write_config(root / "run.yaml", root / "run_dir")
    ckpt = save_checkpoint(root / "cam.pt")
    base = root / "base"
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("HF_HUB_OFFLINE", "1")
        assert main(["cam", str(config), "--checkpoint", str(ckpt), "--out", str(base)]) == 0
    return config, ckpt, base


def files(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def seed_array(path: Path) -> np.ndarray:
    return np.asarray(Image.open(path))


def test_writes_cams_of_the_present_classes_and_their_seeds(setup):
    _, _, base = setup
    ds = SyntheticDataset(split="train", num_images=NUM_TRAIN, image_size=SIZE)
    for i in range(NUM_TRAIN):
        sample = ds[i]
        with np.load(base / "cams" / "train" / f"{sample['name']}.npz") as data:
            cams, classes = data["cams"], data["classes"]
        present = torch.nonzero(sample["labels"]).flatten().numpy()
        assert cams.dtype == np.float16 and cams.shape == (len(present), SIZE, SIZE)
        assert classes.tolist() == present.tolist()
        seed = Image.open(base / "seeds" / "train" / f"{sample['name']}.png")
        assert seed.mode == "P" and seed.size == (SIZE, SIZE)
        expected = cams_to_seeds(load_cams(base / "cams" / "train" / f"{sample['name']}.npz", 5)[None], 0.2)[0]
        assert np.array_equal(np.asarray(seed), expected.numpy())
    summary = json.loads((base / "cams" / "train" / "summary.json").read_text())
    assert summary["images"] == NUM_TRAIN and summary["bg_threshold"] == 0.2
    assert 0 <= summary["cams"]["miou"] <= 1 and 0 <= summary["seeds"]["miou"] <= 1
    assert 0 <= summary["cams"]["best_threshold"] < 0.6


def test_prints_the_weights_and_the_scores(setup, tmp_path, capsys):
    config, ckpt, _ = setup
    assert main(["cam", str(config), "--checkpoint", str(ckpt), "--out", str(tmp_path), "--split", "eval",
                 "--no-seeds"]) == 0
    out = capsys.readouterr().out
    assert f"weights: --checkpoint {ckpt}" in out
    assert "CAM sweep: best threshold" in out and "seeds (threshold" not in out
    assert len(list((tmp_path / "cams" / "eval").glob("*.npz"))) == 3
    assert not (tmp_path / "seeds").exists()


def test_two_shards_make_the_files_of_one_run(setup, tmp_path, capsys):
    config, ckpt, base = setup
    out = tmp_path / "sharded"
    args = ["cam", str(config), "--checkpoint", str(ckpt), "--out", str(out)]
    assert main(args + ["--shard", "0/2"]) == 0
    text = capsys.readouterr().out
    assert "other shards pending: 3 of 6 CAM files, 3 seeds exist" in text and "CAM sweep" not in text
    assert len(list((out / "cams" / "train").glob("*.npz"))) == 3
    assert main(args + ["--shard", "1/2"]) == 0
    assert "CAM sweep: best threshold" in capsys.readouterr().out
    assert files(out) == files(base)


def test_resume_recreates_only_what_is_missing(setup, tmp_path, monkeypatch, capsys):
    from wsss_cams import ResNetCAM

    config, ckpt, base = setup
    out = tmp_path / "out"
    shutil.copytree(base, out)
    names = sorted(p.stem for p in (out / "cams" / "train").glob("*.npz"))
    (out / "seeds" / "train" / f"{names[1]}.png").unlink()
    (out / "cams" / "train" / f"{names[3]}.npz").unlink()
    before = {p: p.stat().st_mtime_ns for p in out.rglob("*.*")}
    calls = []
    original = ResNetCAM.cams

    def counting(self, images, labels, **kwargs):
        calls.append(images.shape[0])
        return original(self, images, labels, **kwargs)

    monkeypatch.setattr(ResNetCAM, "cams", counting)
    assert main(["cam", str(config), "--checkpoint", str(ckpt), "--out", str(out)]) == 0
    assert "1 CAMs computed, 1 seeds made from existing CAM files, 4 already complete" in capsys.readouterr().out
    assert calls == [1]  # only the missing CAM went through the network
    changed = {p for p, t in before.items() if p.exists() and p.stat().st_mtime_ns != t}
    assert changed == {out / "cams" / "train" / "summary.json"}  # rescored; nothing else rewritten
    assert files(out) == files(base)

    calls.clear()
    assert main(["cam", str(config), "--checkpoint", str(ckpt), "--out", str(out)]) == 0
    assert calls == [] and "0 CAMs computed, 0 seeds made from existing CAM files, 6 already complete" \
        in capsys.readouterr().out


def test_resume_refuses_other_weights_or_another_threshold(setup, tmp_path, capsys):
    config, ckpt, base = setup
    out = tmp_path / "out"
    shutil.copytree(base, out)
    name = next((out / "cams" / "train").glob("*.npz")).stem
    (out / "cams" / "train" / f"{name}.npz").unlink()
    other = save_checkpoint(tmp_path / "other.pt", seed=2)
    assert main(["cam", str(config), "--checkpoint", str(other), "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert f"the CAM files in {out / 'cams' / 'train'} were made with other settings (weights_sha256:" in err
    assert main(["cam", str(config), "--checkpoint", str(ckpt), "--out", str(out), "--bg-threshold", "0.3"]) == 2
    assert "bg_threshold: 0.2 then, 0.3 now" in capsys.readouterr().err


def test_compressed_batched_cam_files_load_the_same(setup, tmp_path):
    config, ckpt, base = setup
    assert main(["cam", str(config), "--checkpoint", str(ckpt), "--out", str(tmp_path), "--compress",
                 "--no-seeds", "--batch-size", "4"]) == 0
    for path in (tmp_path / "cams" / "train").glob("*.npz"):
        with zipfile.ZipFile(path) as zf:
            assert {i.compress_type for i in zf.infolist()} == {zipfile.ZIP_DEFLATED}
        plain = base / "cams" / "train" / path.name
        assert torch.allclose(load_cams(path, 5), load_cams(plain, 5), atol=1e-3)


def test_save_cams_returns_what_load_cams_reads(tmp_path):
    cams = torch.rand(4, 8, 8)
    labels = torch.tensor([0.0, 1.0, 0.0, 1.0])
    for compress in (False, True):
        path = tmp_path / f"c{compress}.npz"
        stored = save_cams(path, cams, labels, compress=compress)
        assert torch.equal(stored, load_cams(path, 4))
        assert torch.equal(stored[0], torch.zeros(8, 8))
        assert torch.allclose(stored[1], cams[1], atol=1e-3)


def test_a_checkpoint_that_does_not_fit_names_the_file(setup, tmp_path, capsys):
    config, _, _ = setup
    wrong = save_checkpoint(tmp_path / "three_classes.pt", num_classes=3)
    assert main(["cam", str(config), "--checkpoint", str(wrong), "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err
    assert str(wrong) in err and "num_classes=3" in err and "num_classes=5" in err
    missing = tmp_path / "nowhere.pt"
    assert main(["cam", str(config), "--checkpoint", str(missing), "--out", str(tmp_path / "o")]) == 2
    assert str(missing) in capsys.readouterr().err
    assert not list((tmp_path / "o").rglob("*.npz"))


@pytest.fixture
def folder_data(tmp_path):
    """The synthetic train split as a ``folder`` dataset (with masks) whose item 2 has no label."""
    root = tmp_path / "data"
    SyntheticDataset(split="train", num_images=4, image_size=SIZE).export(root)
    lines = (root / "labels.csv").read_text().splitlines()
    rows = [line for line in lines if line.startswith("train_")]
    empty = rows[2].split(",")[0]
    (root / "labels.csv").write_text("\n".join(rows[:2] + [f"{empty},"] + rows[3:]) + "\n")
    mask_path = root / "masks" / f"{empty}.png"  # a background-only mask agrees with the empty label set
    mask = Image.open(mask_path)
    mask.point(lambda v: 0).save(mask_path)
    node = (f"{{type: datasets/folder, root: {root}, class_names: classes.txt, mask_dir: masks, "
            "allow_empty_labels: true}")
    return root, node, empty


def test_an_image_without_labels_is_named_before_the_network_runs(setup, tmp_path, folder_data, monkeypatch, capsys):
    from wsss_cams import ResNetCAM

    _, ckpt, _ = setup
    _, node, empty = folder_data
    config = write_config(tmp_path / "run.yaml", tmp_path / "run", train=node)
    monkeypatch.setattr(ResNetCAM, "cams", lambda *a, **k: pytest.fail("the network ran"))
    assert main(["cam", str(config), "--checkpoint", str(ckpt), "--batch-size", "4"]) == 2  # one batch
    err = capsys.readouterr().err
    assert f"image {empty!r} of data.train has no foreground label" in err


def test_the_pipeline_cams_stage_names_an_image_without_labels(setup, tmp_path, folder_data):
    from wsss_kit.config import load_config
    from wsss_kit.pipeline.context import RunContext
    from wsss_kit.pipeline.stage_table import get_stage

    _, ckpt, _ = setup
    _, node, empty = folder_data
    run = tmp_path / "run"
    (run / "train_cam").mkdir(parents=True)
    shutil.copy(ckpt, run / "train_cam" / "model.pt")
    ctx = RunContext(load_config(write_config(tmp_path / "run.yaml", run, train=node)), run)
    with pytest.raises(DataError, match=f"image '{empty}' of data.train has no foreground label"):
        get_stage("cams").run(ctx)


def test_auto_threshold_needs_ground_truth(setup, tmp_path, capsys):
    config, ckpt, _ = setup
    root = tmp_path / "no_masks"
    SyntheticDataset(split="train", num_images=4, image_size=SIZE).export(root)
    node = f"{{type: datasets/folder, root: {root}, class_names: classes.txt}}"  # no mask_dir: no ground truth
    no_gt = write_config(tmp_path / "run.yaml", tmp_path / "run", train=node)
    assert main(["cam", str(no_gt), "--checkpoint", str(ckpt), "--bg-threshold", "auto"]) == 2
    err = capsys.readouterr().err
    assert "data.train has none; pass a number, e.g. --bg-threshold 0.25" in err
    assert not (tmp_path / "run").exists()

    out = tmp_path / "auto"
    assert main(["cam", str(config), "--checkpoint", str(ckpt), "--out", str(out), "--bg-threshold", "auto"]) == 0
    summary = json.loads((out / "cams" / "train" / "summary.json").read_text())
    assert summary["bg_threshold"] == summary["cams"]["best_threshold"]
    assert "(auto: the best of the CAM sweep on data.train)" in capsys.readouterr().out


@pytest.mark.parametrize("value", ["1.7", "-0.2", "nan"])
def test_a_threshold_outside_0_1_is_refused_before_any_file(setup, tmp_path, capsys, value):
    config, ckpt, _ = setup
    out = tmp_path / "out"
    assert main(["cam", str(config), "--checkpoint", str(ckpt), "--out", str(out), "--bg-threshold", value]) == 2
    assert "--bg-threshold must be a number" in capsys.readouterr().err
    assert not out.exists()


def test_cam_config_typos_are_refused(setup, tmp_path, capsys):
    config, ckpt, _ = setup
    assert main(["cam", str(config), "--checkpoint", str(ckpt), "--set", "cam.infer.flp=true"]) == 2
    assert "cam.infer.flp: unknown key (did you mean 'flip'?)" in capsys.readouterr().err


def test_a_checkpoint_replaces_the_missing_imagenet_file(setup, tmp_path, capsys):
    """resnet_cam's ``weights:`` names a file that is not there; an IRN-layout ``--checkpoint`` holds
    the backbone, so the file is never asked for, and the CAMs are those of the checkpoint."""
    config, ckpt, base = setup
    missing = tmp_path / "not_downloaded" / "resnet50_imagenet.pth"
    state = torch.load(ckpt, weights_only=True)
    irn = {("resnet50." + k[len("backbone."):] if k.startswith("backbone.") else k): v for k, v in state.items()}
    torch.save(irn, tmp_path / "res50_cam.pth")
    out = tmp_path / "o"
    args = ["cam", str(config), "--set", f"cam.model.weights={missing}", "--out", str(out)]
    assert main(args + ["--checkpoint", str(tmp_path / "res50_cam.pth")]) == 0
    assert files(out / "cams") == files(base / "cams")  # IRN's layout converted: the same network
    assert main(args + ["--checkpoint", "timm:resnet50.a1_in1k"]) == 2
    assert "--checkpoint: 'timm:resnet50.a1_in1k' is a hub tag" in capsys.readouterr().err
    # without a checkpoint the ImageNet file is needed, and the error names it
    assert main(args[:-1] + [str(tmp_path / "o2")]) == 2
    assert str(missing) in capsys.readouterr().err


def test_weights_digest_covers_extra_state():
    """A module's extra state (e.g. the class names a refiner keeps) is part of its weights' identity."""
    from torch import nn

    from wsss_kit.pipeline.cam_export import weights_digest

    class Named(nn.Linear):
        def __init__(self, names):
            super().__init__(2, 2)
            self.names = names

        def get_extra_state(self):
            return {"names": self.names}

        def set_extra_state(self, state):
            self.names = state["names"]

    torch.manual_seed(0)
    a = Named(["cat"])
    b = Named(["dog"])
    b.load_state_dict({k: v for k, v in a.state_dict().items() if k != "_extra_state"}, strict=False)
    assert weights_digest(a) != weights_digest(b)
    b.names = ["cat"]
    assert weights_digest(a) == weights_digest(b)
