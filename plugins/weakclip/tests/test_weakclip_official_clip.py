"""An official WeakCLIP checkpoint alone builds the refiner: the CLIP tensors it carries are the CLIP.

The official-layout state dicts come from ``test_weakclip_model.official_state`` (a tiny random CLIP
stored as the official backbone / text encoder hold it: image position table resized to 32 × 32, text
table cut to 5 + N rows). Nothing is downloaded.
"""

from __future__ import annotations

import pytest
import torch
from test_weakclip_model import official_state  # the official-layout builders (same folder)

from wsss_kit.clip import TINY_CLIP, load_clip
from wsss_kit.errors import WeightsError
from wsss_kit.pipeline.checkpoints import build_from_checkpoint
from wsss_weakclip.official_clip import carries_clip, clip_from_official
from wsss_weakclip.refiner import WeakCLIPRefiner

CLASSES = ("cat", "dog")  # background + 2: the official_state's 3 classes
SMALL = dict(matching_width=16, decoder_channels=8, crf_workers=0, loss_crf_workers=0)
DIRECT = dict(scales=(1.0,), base_size=None, flip=False, window=512, crf=None)
CLIP_OPTIONS = dict(normalization="imagenet", pos_interpolation="bilinear", precision="fp32")


def tiny_clip(seed):
    torch.manual_seed(seed)
    return load_clip(TINY_CLIP, **CLIP_OPTIONS)


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    """``(official checkpoint, its CLIP as an open_clip file, another CLIP file)``."""
    folder = tmp_path_factory.mktemp("weakclip_official")
    clip, other = tiny_clip(0), tiny_clip(1)
    torch.save(clip.model.state_dict(), folder / "tiny_clip.pt")
    torch.save(other.model.state_dict(), folder / "other_clip.pt")
    torch.save({"state_dict": official_state(clip), "meta": {"iter": 20000}}, folder / "weakclip_official.pth")
    return folder / "weakclip_official.pth", folder / "tiny_clip.pt", folder / "other_clip.pt"


def images(seed=2):
    return torch.rand(2, 3, 64, 80, generator=torch.Generator().manual_seed(seed))


def test_the_checkpoint_alone_builds_the_refiner_with_its_clip(files):
    ckpt, clip_file, _ = files
    # The reference: the same CLIP from its own file (QuickGELU, as the official CLIP blocks), plus the checkpoint.
    reference_clip = load_clip(TINY_CLIP, clip_file, quick_gelu=True, **CLIP_OPTIONS)
    reference = WeakCLIPRefiner(class_names=CLASSES, clip_model=reference_clip, checkpoint=str(ckpt), **SMALL,
                                **DIRECT).eval()
    for clip_weights in ("default", None):
        alone = WeakCLIPRefiner(class_names=CLASSES, clip_model=TINY_CLIP, clip_weights=clip_weights,
                                checkpoint=str(ckpt), **SMALL, **DIRECT).eval()
        assert str(ckpt) in alone.net.clip.source and alone.net.clip.visual.grid_size == (32, 32)
        assert alone.net.clip.context_length == 13  # 5 name tokens + 8 context vectors
        x = images()
        with torch.no_grad():
            ours, ref = alone(x), reference(x)
        assert torch.equal(ours["score_map"], ref["score_map"])
        torch.testing.assert_close(ours["logits"], ref["logits"], rtol=0, atol=0)
        torch.testing.assert_close(alone.refine(x, None, None), reference.refine(x, None, None), rtol=0, atol=0)


def test_a_random_clip_instead_of_the_checkpoints_gives_other_outputs(files):
    """The regression the test above guards: ignoring the checkpoint's CLIP changes the outputs."""
    ckpt, clip_file, _ = files
    reference = WeakCLIPRefiner(class_names=CLASSES, clip_model=load_clip(TINY_CLIP, clip_file, quick_gelu=True,
                                                                          **CLIP_OPTIONS),
                                checkpoint=str(ckpt), **SMALL, **DIRECT).eval()
    state = torch.load(ckpt, weights_only=True)["state_dict"]
    no_clip = {k: v for k, v in state.items() if not k.startswith("text_encoder.") and
               not (k.startswith("backbone.") and not k.startswith("backbone.fpn"))}
    assert carries_clip(state) and not carries_clip(no_clip)
    torch.manual_seed(5)
    random_clip = WeakCLIPRefiner(class_names=CLASSES, clip_model=TINY_CLIP, clip_weights=None, checkpoint=no_clip,
                                  **SMALL, **DIRECT).eval()
    with torch.no_grad():
        assert not torch.allclose(random_clip(images())["score_map"], reference(images())["score_map"])


def test_a_clip_file_equal_to_the_checkpoints_clip_is_accepted(files):
    ckpt, clip_file, _ = files
    refiner = WeakCLIPRefiner(class_names=CLASSES, clip_model=TINY_CLIP, clip_weights=str(clip_file),
                              checkpoint=str(ckpt), **SMALL, **DIRECT)
    assert refiner.net.clip.source == str(clip_file)


def test_a_clip_file_unlike_the_checkpoints_clip_is_an_error_naming_both_files_and_tensors(files):
    ckpt, _, other = files
    with pytest.raises(WeightsError, match=(rf"CLIP weights inside WeakCLIP checkpoint {ckpt} differ from the model's "
                                            rf"CLIP 'wsss-tiny-clip' \(from {other}\): \d+ of \d+ tensors, first "
                                            rf"positional_embedding \(max \|Δ\| 0\.0\d+\), text_projection")):
        WeakCLIPRefiner(class_names=CLASSES, clip_model=TINY_CLIP, clip_weights=str(other), checkpoint=str(ckpt),
                        **SMALL, **DIRECT)
    refiner = WeakCLIPRefiner(class_names=CLASSES, clip_model=TINY_CLIP, clip_weights=str(other), **SMALL, **DIRECT)
    with pytest.raises(WeightsError, match="differ from the model's CLIP"):
        refiner.load_weights(ckpt)


def test_a_run_given_the_checkpoint_needs_no_clip_file(files):
    """The pipeline's path: a refiner node with ``checkpoint`` and no ``clip_weights`` builds its CLIP from it."""
    ckpt, _, _ = files
    node = {"type": "refiners/weakclip", "class_names": list(CLASSES), "clip_model": TINY_CLIP, **SMALL, **DIRECT}
    refiner, spec = build_from_checkpoint(node, "refiner", checkpoint=str(ckpt))
    assert spec == str(ckpt) and str(ckpt) in refiner.net.clip.source
    # not declared: the run's own model.pt (no CLIP inside) is loaded into a refiner built with these
    # keywords set to None, which would be a random CLIP
    assert not getattr(WeakCLIPRefiner, "checkpoint_replaces", ())


def test_a_refiner_checkpoint_records_its_clip_weights(files, tmp_path):
    _, clip_file, _ = files
    trained = WeakCLIPRefiner(class_names=CLASSES, clip_model=TINY_CLIP, clip_weights=str(clip_file), **SMALL,
                              **DIRECT).eval()
    assert trained.state_dict()["_extra_state"]["clip_weights"] == str(clip_file)
    torch.save(trained.state_dict(), tmp_path / "model.pt")
    again = WeakCLIPRefiner(class_names=CLASSES, clip_model=TINY_CLIP, clip_weights=None,
                            checkpoint=str(tmp_path / "model.pt"), **SMALL, **DIRECT).eval()
    assert again.net.clip.source == str(clip_file)
    with torch.no_grad():
        assert torch.equal(again(images())["logits"], trained(images())["logits"])
    assert "clip_weights" not in WeakCLIPRefiner(class_names=CLASSES, clip_model=trained.net.clip, **SMALL,
                                                 **DIRECT).get_extra_state()
    random_clip = WeakCLIPRefiner(class_names=CLASSES, clip_model=TINY_CLIP, clip_weights=None, **SMALL, **DIRECT)
    with pytest.warns(UserWarning, match=rf"trained with the CLIP of clip_weights='{clip_file}', but this refiner's "
                                         r"CLIP is random"):
        random_clip.load_weights(tmp_path / "model.pt")


def test_clip_from_official_errors(files):
    ckpt, _, _ = files
    state = torch.load(ckpt, weights_only=True)["state_dict"]
    with pytest.raises(WeightsError, match=r"ckpt\.pth does not carry its CLIP \(no text_encoder\.token_embedding"):
        clip_from_official({k: v for k, v in state.items() if not k.startswith("text_encoder.")}, TINY_CLIP,
                           source="ckpt.pth")
    bad = dict(state)
    bad["backbone.ln_post.weight"] = torch.ones(65)
    with pytest.raises(WeightsError, match=r"CLIP inside ckpt\.pth does not fit open_clip architecture "
                                           r"'wsss-tiny-clip' \(shape mismatches: visual\.ln_post\.weight"):
        clip_from_official(bad, TINY_CLIP, source="ckpt.pth")


def test_a_clip_file_that_is_not_here_gives_way_to_the_checkpoints_clip(files, tmp_path, monkeypatch):
    """A config naming OpenAI's file (``released:clip_vit_b16_openai``) evaluates an official checkpoint
    without that file: the checkpoint's CLIP is used, with a warning; without a checkpoint it stays an error."""
    ckpt, clip_file, _ = files
    monkeypatch.setenv("WSSS_WEIGHTS_DIR", str(tmp_path))
    missing = "released:clip_vit_b16_openai"
    with pytest.warns(UserWarning, match="is not here .* carries its own CLIP tensors"):
        alone = WeakCLIPRefiner(class_names=CLASSES, clip_model=TINY_CLIP, clip_weights=missing,
                                checkpoint=str(ckpt), **SMALL, **DIRECT).eval()
    reference = WeakCLIPRefiner(class_names=CLASSES, clip_model=TINY_CLIP, clip_weights=None, checkpoint=str(ckpt),
                                **SMALL, **DIRECT).eval()
    with torch.no_grad():
        assert torch.equal(alone(images())["score_map"], reference(images())["score_map"])
    with pytest.raises(WeightsError, match="not downloaded"):
        WeakCLIPRefiner(class_names=CLASSES, clip_model=TINY_CLIP, clip_weights=missing, **SMALL, **DIRECT)
    state = torch.load(ckpt, weights_only=True)["state_dict"]
    no_clip = {k: v for k, v in state.items() if not k.startswith("text_encoder.") and
               not (k.startswith("backbone.") and not k.startswith("backbone.fpn"))}
    with pytest.raises(WeightsError, match="not downloaded"):
        WeakCLIPRefiner(class_names=CLASSES, clip_model=TINY_CLIP, clip_weights=missing, checkpoint=no_clip,
                        **SMALL, **DIRECT)
