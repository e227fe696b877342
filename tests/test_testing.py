"""wsss_kit.testing.check_plugin: conforming toy plugins pass, each kind of broken one fails naming the check."""

from __future__ import annotations

from typing import Sequence

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import wsss_kit
from wsss_kit.cam_ops import multiscale_cams
from wsss_kit.interfaces import IGNORE_INDEX
from wsss_kit.testing import PluginConformanceError, check_plugin

C = 3


# --------------------------------------------------------------------------- toy plugins
class ToyCAM(wsss_kit.CAMGenerator):
    """A conforming CAM generator: one convolution, GAP logits, max-normalised label-masked CAMs."""

    wsss_api_version = "1.0"

    def __init__(self, num_classes: int = C) -> None:
        super().__init__()
        self.num_classes = num_classes
        self.conv = nn.Conv2d(3, num_classes, 3, padding=1)

    def raw(self, images: torch.Tensor) -> torch.Tensor:
        if images.dim() != 4 or images.shape[1] != 3:
            raise ValueError(f"images must be (B, 3, H, W), got {tuple(images.shape)}")
        return self.conv(images)

    def forward(self, images, labels=None):
        logits = self.raw(images).mean((2, 3))
        out = {"logits": logits}
        if labels is not None:
            out["loss"] = F.multilabel_soft_margin_loss(logits, labels)
        return out

    def cams(self, images, labels, scales: Sequence[float] = (1.0,), flip: bool = False):
        return multiscale_cams(self.raw, images, labels, scales=scales, flip=flip)


class ReplacesAnUnknownKeyword(ToyCAM):
    """Declares that a checkpoint replaces a keyword its constructor does not have."""

    checkpoint_replaces = ("weights",)


class OutOfRangeCAM(ToyCAM):
    def cams(self, images, labels, scales=(1.0,), flip=False):
        return super().cams(images, labels, scales, flip) * 2 - 0.5 * labels[:, :, None, None]


class NaNCAM(ToyCAM):
    def cams(self, images, labels, scales=(1.0,), flip=False):
        cams = super().cams(images, labels, scales, flip).clone()
        cams[0, 0, 0, 0] = float("nan")
        return cams


class LeakyCAM(ToyCAM):
    """Forgets to zero the classes absent from the labels."""

    def cams(self, images, labels, scales=(1.0,), flip=False):
        return super().cams(images, torch.ones_like(labels), scales, flip)


class SmallCAM(ToyCAM):
    """Returns CAMs at half the image size."""

    def cams(self, images, labels, scales=(1.0,), flip=False):
        return super().cams(images, labels, scales, flip)[..., ::2, ::2]


class RestlessCAM(ToyCAM):
    """Its output changes from call to call (a counter, which no seed resets)."""

    def __init__(self) -> None:
        super().__init__()
        self.calls = 0

    def cams(self, images, labels, scales=(1.0,), flip=False):
        self.calls += 1
        return super().cams(images, labels, scales, flip) * (1 - 0.1 * (self.calls % 2))


class DeadParameterCAM(ToyCAM):
    def __init__(self) -> None:
        super().__init__()
        self.unused = nn.Parameter(torch.zeros(4))


class LenientCAM(ToyCAM):
    """Silently accepts an unbatched image, any number of channels and of label columns."""

    def cams(self, images, labels, scales=(1.0,), flip=False):
        if images.dim() == 3:
            images, labels = images[None], labels[:1]
        return super().cams(images[:, :3], labels[:, : self.num_classes], scales, flip)


class ToyRefiner(wsss_kit.Refiner):
    wsss_api_version = "1.0"

    def refine(self, images, cams, labels):
        if images.dim() != 4 or images.shape[1] != 3 or cams.shape[1] != labels.shape[1]:
            raise ValueError("bad input")
        bg = torch.full_like(cams[:, :1], 0.3)
        return torch.cat([bg, cams * labels[:, :, None, None]], 1).softmax(1)


class UnnormalisedRefiner(ToyRefiner):
    def refine(self, images, cams, labels):
        return super().refine(images, cams, labels) * 2


class MaskRefiner(ToyRefiner):
    def __init__(self, bad_value: int | None = None) -> None:
        self.bad_value = bad_value

    def refine(self, images, cams, labels):
        masks = super().refine(images, cams, labels).argmax(1)
        masks[:, 0, 0] = IGNORE_INDEX if self.bad_value is None else self.bad_value
        return masks


class ToyHead(wsss_kit.RetrainHead):
    wsss_api_version = "1.0"

    def __init__(self, num_classes: int = C + 1) -> None:
        super().__init__()
        self.num_classes = num_classes
        self.conv = nn.Conv2d(3, num_classes, 1)

    def forward(self, images):
        if images.dim() != 4:
            raise ValueError("images must be (B, 3, H, W)")
        return self.conv(images)


class DownsamplingHead(ToyHead):
    def forward(self, images):
        return super().forward(images)[..., ::2, ::2]


class ToyLoss(wsss_kit.Loss):
    wsss_api_version = "1.0"

    def forward(self, logits, target):
        return F.cross_entropy(logits, target, ignore_index=IGNORE_INDEX)


class VectorLoss(ToyLoss):
    def forward(self, logits, target):
        return F.cross_entropy(logits, target, reduction="none").mean((1, 2))


class ToyPrompt(wsss_kit.PromptStrategy):
    wsss_api_version = "1.0"
    learnable = True

    def __init__(self, dim: int = 8) -> None:
        super().__init__()
        self.context = nn.Parameter(torch.randn(dim))

    def forward(self, class_names, **context):
        if isinstance(class_names, str) or not class_names:
            raise ValueError("class_names must be a non-empty list")
        codes = torch.tensor([[float(len(n)), float(ord(n[0]))] for n in class_names])
        return codes.mean(1, keepdim=True) * self.context


class ToyDataset(wsss_kit.WSSSDataset):
    wsss_api_version = "1.0"
    class_names = ("ball", "box", "kite")
    palette = [(0, 0, 0), (255, 0, 0), (0, 255, 0), (0, 0, 255)]

    def __init__(self, label_offset: int = 0) -> None:
        self.label_offset = label_offset

    def __len__(self):
        return 3

    def __getitem__(self, index):
        if not 0 <= index < len(self):
            raise IndexError(index)
        mask = torch.zeros(16, 16, dtype=torch.int64)
        mask[4:8, 4:8] = 1 + index % 3
        labels = torch.zeros(3)
        labels[(index + self.label_offset) % 3] = 1
        return {"image": torch.full((3, 16, 16), 0.5), "labels": labels, "mask": mask, "name": f"img{index}"}


# --------------------------------------------------------------------------- conforming plugins pass
@pytest.mark.parametrize("obj, options, kind", [
    (ToyCAM(), {}, "cams"),
    (ToyRefiner(), {"num_classes": C}, "refiners"),
    (MaskRefiner(), {"num_classes": C}, "refiners"),
    (ToyHead(), {}, "heads"),
    (ToyLoss(), {"inputs": (torch.randn(2, 4, 8, 8), torch.randint(0, 4, (2, 8, 8)))}, "losses"),
    (ToyPrompt(), {}, "prompts"),
    (ToyDataset(), {}, "datasets"),
])
def test_conforming_plugins_pass(obj, options, kind):
    report = check_plugin(obj, **options)
    assert report.kind == kind and not report.skipped
    assert {"interface", "api_version"} <= set(report.passed)
    if kind != "datasets":
        assert "determinism" in report.passed
    if kind in ("cams", "heads", "losses", "prompts"):
        assert "gradients" in report.passed
    if kind in ("cams", "refiners", "heads"):
        assert {"bad_input.rank", "bad_input.channels"} <= set(report.passed)


def test_a_factory_is_built_twice_and_a_registry_name_is_built_through_create():
    report = check_plugin(ToyCAM, kwargs={"num_classes": 4})
    assert report.passed[0] == "construction" and "cams.size_40x48" in report.passed
    report = check_plugin("datasets/synthetic", kwargs={"num_images": 3, "image_size": 32})
    assert report.plugin == "'synthetic' from wsss-kit " + wsss_kit.__version__
    assert {"item.0", "item.2", "bad_input.index"} <= set(report.passed)


def test_skip_leaves_checks_out_and_reports_them():
    report = check_plugin(LenientCAM(), skip=("bad_input",))
    assert set(report.skipped) == {"bad_input.rank", "bad_input.channels", "bad_input.labels"}


# --------------------------------------------------------------------------- broken plugins fail, naming the check
@pytest.mark.parametrize("obj, check, fragment", [
    (OutOfRangeCAM(), "cams.output", "must lie in [0, 1]"),
    (NaNCAM(), "cams.output", "non-finite"),
    (LeakyCAM(), "cams.output", "zero for classes absent from labels"),
    (SmallCAM(), "cams.output", "must have shape (2, 3, 32, 32), got (2, 3, 16, 16)"),
    (RestlessCAM(), "determinism", "two calls with the same seed in eval mode differ"),
    (DeadParameterCAM(), "gradients", "no gradient reached 1 of 3 trainable parameter(s): unused"),
    (LenientCAM(), "bad_input.rank", "accepted images of shape (3, H, W)"),
    (LenientCAM(), "bad_input.channels", "accepted images with 4 channels"),
    (LenientCAM(), "bad_input.labels", "accepted labels with 4 columns for 3 classes"),
    (ReplacesAnUnknownKeyword(), "checkpoint_replaces",
     "names ['weights'], which ReplacesAnUnknownKeyword() does not take; its keywords: num_classes"),
])
def test_broken_cam_generators_fail_naming_the_check(obj, check, fragment):
    with pytest.raises(PluginConformanceError) as err:
        check_plugin(obj)
    msg = str(err.value)
    assert msg.startswith(f"cams plugin {type(obj).__qualname__} ({__name__})")
    assert f"  - {check}: " in msg and fragment in msg, msg
    assert isinstance(err.value, AssertionError)


def test_every_failure_is_listed_in_one_error():
    class Everything(LenientCAM, NaNCAM, DeadParameterCAM):
        pass

    with pytest.raises(PluginConformanceError) as err:
        check_plugin(Everything())
    msg = str(err.value)
    failed = [line for line in msg.splitlines() if line.startswith("  - ")]
    for check in ("gradients", "cams.output", "bad_input.rank", "bad_input.channels", "bad_input.labels"):
        assert f"  - {check}: " in msg
    assert "determinism" not in msg  # NaN in the same place twice is the same output
    assert f"failed {len(failed)} of" in msg


@pytest.mark.parametrize("obj, options, check, fragment", [
    (UnnormalisedRefiner(), {"num_classes": C}, "refine.output", "must sum to 1 over classes; off by up to 1"),
    (MaskRefiner(bad_value=7), {"num_classes": C}, "refine.output", "mask values must be 0..3 or 255; found [7]"),
    (DownsamplingHead(), {}, "logits.output_32x32", "must have shape (2, 4, 32, 32), got (2, 4, 16, 16)"),
    (VectorLoss(), {"inputs": (torch.randn(2, 4, 8, 8), torch.randint(0, 4, (2, 8, 8)))}, "loss.output",
     "must be a float scalar"),
    (ToyLoss(), {}, "loss.inputs", "needs example inputs"),
    (ToyDataset(label_offset=1), {}, "item.0", "the mask has classes [1] that its labels do not"),
])
def test_broken_plugins_of_other_kinds_fail_naming_the_check(obj, options, check, fragment):
    with pytest.raises(PluginConformanceError) as err:
        check_plugin(obj, **options)
    assert f"  - {check}: " in str(err.value) and fragment in str(err.value), str(err.value)


def test_the_plugin_is_left_as_it_was():
    model = DeadParameterCAM().train()
    model.conv.weight.grad = None
    before = {k: v.clone() for k, v in model.state_dict().items()}
    with pytest.raises(PluginConformanceError):
        check_plugin(model)
    assert model.training and model.conv.weight.grad is None
    for k, v in model.state_dict().items():
        assert torch.equal(v, before[k]), k


def test_an_object_that_is_no_plugin_is_a_type_error():
    with pytest.raises(TypeError, match="implements none of the plugin interfaces"):
        check_plugin(nn.Linear(2, 2))


# --------------------------------------------------------------------------- the core's own plugins conform
@pytest.fixture(scope="module")
def tiny_clip():
    from wsss_kit.clip import TINY_CLIP, load_clip

    torch.manual_seed(0)
    return load_clip(TINY_CLIP, precision="fp32")


def test_dense_crf_passes_the_conformance_checks():
    check_plugin("refiners/dense_crf", kwargs={"workers": 0}, num_classes=C)


@pytest.mark.parametrize("name", ["template", "coop", "defo", "target_opt"])
def test_prompt_strategies_pass_the_conformance_checks(name, tiny_clip):
    check_plugin(f"prompts/{name}", class_names=("ball", "box", "kite"), context={"clip": tiny_clip})


def test_synthetic_dataset_passes_the_conformance_checks():
    for split in ("train", "val"):
        check_plugin("datasets/synthetic", kwargs={"split": split, "num_images": 4, "image_size": 32})


def test_the_example_third_party_plugin_passes_the_conformance_checks(monkeypatch):
    from pathlib import Path

    monkeypatch.syspath_prepend(str(Path(__file__).resolve().parents[1] / "examples" / "third_party_plugin"))
    from wsss_example_plugin import TinyCAM

    check_plugin(TinyCAM, kwargs={"num_classes": 3, "width": 8})
