"""Every speed measure of ``python -m benchmarks speed``, registered as data.

Each function measures one sweep point by building its variants with the code of the benchmark
script that owns the measure (``crf_speed.py``, ``cam_throughput.py``, ``mctformer_speed.py``,
``weakclip_step.py``, ``clims_loss_cost.py``, ``retrain_throughput.py``, ``attention_speed.py``;
the mIoU evaluation is :mod:`benchmarks.speed.miou_eval`) and timing them with
:func:`benchmarks.speed.harness.interleave`. Weights are random (the cost does not depend on
them); nothing is downloaded.
"""

from __future__ import annotations

import argparse
import copy
import functools
import os
from typing import Any, Callable, Mapping, cast

import torch

from .harness import Timed, interleave
from .miou_eval import measure_miou_eval
from .registry import Context, Measure, register


def _rgb(h: int, w: int, device: torch.device, seed: int = 1) -> torch.Tensor:
    """A ``float (1, 3, h, w)`` image in [0, 1] (fixed seed)."""
    return torch.rand(1, 3, h, w, generator=torch.Generator().manual_seed(seed)).to(device)


# --------------------------------------------------------------------------- dense CRF
def measure_crf(point: Mapping[str, Any], ctx: Context) -> Timed:
    """Dense CRF of one ``size`` × ``4/3 size`` image, ``classes`` classes, 10 iterations (the
    ``default`` parameter set): pydensecrf (the reference) and the torch CRF on the device (and in
    a batch of ``batch`` images); ``extra``: label agreement with pydensecrf."""
    from benchmarks import crf_speed

    h = int(point["size"])
    w, k = round(h * 4 / 3), int(point["classes"])
    img, probs, source = crf_speed.scene(h, w, k)
    devices = [torch.device("cpu")] + ([ctx.device] if ctx.device.type == "cuda" else [])
    runs = crf_speed.variants(img, probs, devices, int(point.get("batch", 1)))
    outputs = {name: fn() for name, (fn, _, _) in runs.items()}
    ref = outputs["pydensecrf"].argmax(0)
    timed = interleave({n: fn for n, (fn, _, _) in runs.items()}, ctx.rounds, ctx.warmup, ctx.device,
                       {n: units for n, (_, units, _) in runs.items()})
    timed.extra = {"image": source, "height": h, "width": w, "params": crf_speed.PARAMS, "iterations": 10,
                   "label_agreement_with_pydensecrf": {n: round(float((o.argmax(0) == ref).mean()), 6)
                                                       for n, o in outputs.items()}}
    return timed


# --------------------------------------------------------------------------- CAM extraction
def measure_cams(point: Mapping[str, Any], ctx: Context) -> Timed:
    """CAMs of one ``size``² image, every class present, at ``scales`` plus flip, per generator."""
    from benchmarks.cam_throughput import cam_extractor

    size, scales = int(point["size"]), tuple(point["scales"])
    image = _rgb(size, size, ctx.device)
    fns: dict[str, Callable[[], Any]] = {}
    for model in point["models"]:
        one = cam_extractor(model, scales, ctx.device.type, False, point.get("classes", 20), point.get("backbone"))
        fns[model] = functools.partial(one, image)
    timed = interleave(fns, ctx.rounds, ctx.warmup, ctx.device)
    timed.extra = {"scales": list(scales), "flip": True, "backbone": point.get("backbone", "published")}
    return timed


def measure_mctformer_cams(point: Mapping[str, Any], ctx: Context) -> Timed:
    """MCTformer CAMs of one ``size``² image (``mctformer_speed``): ours against the official
    network when ``--official-mctformer`` is given, else against the official-like forward."""
    from benchmarks import mctformer_speed

    official = ctx.official.get("mctformer")
    variants = ["ours", "official_like"] + (["official"] if official else [])
    fns = mctformer_speed.cam_variants(int(point["version"]), int(point["size"]), tuple(point["scales"]), True,
                                       int(point["classes"]), official, variants)
    # mctformer_speed builds its networks on the CPU: the measure runs there whatever --device says
    timed = interleave(fns, ctx.rounds, ctx.warmup, "cpu")
    timed.official = ctx.official_label(
        "mctformer", "the official MCTformerV1/V2 forward and generate_attention_maps_ms (commit 96065977) "
        "over the same modules (mctformer_speed.OfficialLike)")
    timed.extra = {"version": point["version"], "scales": list(point["scales"]), "flip": True,
                   "backbone": mctformer_speed.BACKBONE, "device": "cpu"}
    return timed


# --------------------------------------------------------------------------- training steps
def measure_mctformer_step(point: Mapping[str, Any], ctx: Context) -> Timed:
    """One MCTformer training step (``mctformer_speed.step_variants``: forward, multilabel loss(es),
    backward, AdamW; DeiT-S, fp32, drop path 0.1) on ``batch`` images of ``size``², CPU: ours against the
    official network (``--official-mctformer``) or its forward over the same modules."""
    from benchmarks import mctformer_speed

    official = ctx.official.get("mctformer")
    version, classes = int(point["version"]), int(point["classes"])
    batch, size = int(point["batch"]), int(point["size"])
    gen = torch.Generator().manual_seed(2)
    images = torch.rand(batch, 3, size, size, generator=gen)
    labels = (torch.rand(batch, classes, generator=gen) < 0.3).float()
    labels[:, 0] = 1.0  # every image has a class
    variants = ["ours", "official_like"] + (["official"] if official else [])
    steps = mctformer_speed.step_variants(version, batch, size, classes, official, variants, images, labels)
    timed = interleave(steps, ctx.rounds, ctx.warmup, "cpu", {v: batch for v in steps})
    timed.official = ctx.official_label(
        "mctformer", "the official MCTformerV1/V2 forward (commit 96065977) over the same modules, timm's optimizer "
        "groups (mctformer_speed.OfficialLike)")
    timed.extra = {"version": version, "size": size, "backbone": mctformer_speed.BACKBONE, "device": "cpu"}
    return timed


def measure_weakclip_step(point: Mapping[str, Any], ctx: Context) -> Timed:
    """One WeakCLIP training step (``weakclip_step.VariantRun``: ``ours`` against the official
    config's waste, ``official_like``, and the official code itself when ``--official-weakclip`` is
    given with ViT-B/16; its mmcv/mmseg from ``$WEAKCLIP_OFFICIAL_SITE``, see
    ``benchmarks/weakclip_official.py``) at ``crop``² with ``batch`` images."""
    from benchmarks import weakclip_step

    official = ctx.official.get("weakclip")
    args = argparse.Namespace(clip=point["clip"], weights="none", preset="official", clip_precision="auto",
                              baseline_precision="fp32", crop=int(point["crop"]), batch=int(point["batch"]),
                              device=str(ctx.device), steps=ctx.rounds, warmup=ctx.warmup, threads=None,
                              official=official, official_site=None)
    runs = {v: weakclip_step.VariantRun(v, args)
            for v in ("ours", "official_like") + (("official",) if official and point["clip"] == "ViT-B-16" else ())}
    timed = interleave({v: functools.partial(r.step, timed=False) for v, r in runs.items()}, ctx.rounds, ctx.warmup,
                       ctx.device, {v: int(point["batch"]) for v in runs})
    timed.official = ctx.official_label(
        "weakclip", "the official config's waste: CLIP weights requiring grad in an lr-0 AdamW group, "
        "fp32 CLIP, boundary-loss CRFs one after the other (weakclip_step.py)", runs="official" in runs)
    timed.extra = {"clip": point["clip"], "counts": {v: r.counts for v, r in runs.items()}}
    return timed


def measure_clims_step(point: Mapping[str, Any], ctx: Context) -> Timed:
    """One CLIMS training step with and without the CLIP loss terms (``clims_loss_cost.measure_setup``:
    ResNet-50 + ViT-B/32 at ``crop``², or the ``tiny`` setup), its own interleaved timing; with
    ``--official-clims`` also the official code's step (``b32`` on the CPU; OpenAI's ``clip`` package from
    ``$CLIMS_OFFICIAL_SITE``, see ``benchmarks/clims_official.py``)."""
    from benchmarks import clims_loss_cost

    # the official step needs >= 2 (image, class) pairs (its squeeze() of the pair indices), i.e. batch >= 2 here
    official = (ctx.official.get("clims") if point["setup"] == "b32" and ctx.device.type == "cpu"
                and int(point["batch"]) >= 2 else None)
    args = argparse.Namespace(device=str(ctx.device), warmup=ctx.warmup, steps=ctx.rounds,
                              b32_batch=int(point["batch"]), b32_crop=int(point["crop"]), official_path=official,
                              official_site=os.environ.get("CLIMS_OFFICIAL_SITE"))
    out = clims_loss_cost.measure_setup(point["setup"], args)
    summaries = {v: {"median_s": r["step"], "min_s": r["step_min"], "max_s": r["step_max"], "runs": ctx.rounds}
                 for v, r in out["variants"].items()}
    memory = {v: {"peak_rss_mb": out["peak_rss_mb"], **({"peak_cuda_mb": r["peak_cuda_mb"]}
                                                        if "peak_cuda_mb" in r else {})}
              for v, r in out["variants"].items()}
    return Timed(seconds={}, summaries=summaries, memory=memory,
                 units_per_call={v: int(out["batch"]) for v in summaries},
                 official=ctx.official_label("clims", "official_like: the official CLIMS step's structure "
                                             "(step/train_clims.py) from this plugin's pieces, CLIP weights "
                                             "requiring grad, fp32, prompts encoded every step "
                                             "(clims_loss_cost.py)", runs=bool(official)),
                 extra={k: out[k] for k in ("clip_model", "backbone", "clip_cost_seconds", "clims_over_area_only")
                        if k in out} | {"memory": "peak RSS of the process over all variants"})


def measure_retrain_step(point: Mapping[str, Any], ctx: Context) -> Timed:
    """One training step of each retrain head (``retrain_throughput.training_step``) at ``crop``²."""
    from benchmarks.retrain_throughput import NUM_CLASSES, training_step

    crop, batch = int(point["crop"]), int(point["batch"])
    gen = torch.Generator().manual_seed(0)
    images = torch.rand(batch, 3, crop, crop, generator=gen).to(ctx.device)
    targets = torch.randint(0, NUM_CLASSES, (batch, crop, crop), generator=gen).to(ctx.device)
    fns = {}
    for head in point["heads"]:
        step, _ = training_step(head, ctx.device.type, False)
        fns[head] = lambda step=step: step(images, targets)
    return interleave(fns, ctx.rounds, ctx.warmup, ctx.device, {h: batch for h in fns})


# --------------------------------------------------------------------------- inference
def measure_pseudo_masks(point: Mapping[str, Any], ctx: Context) -> Timed:
    """WeakCLIP pseudo-mask network inference of one ``height`` × ``width`` image (averaged softmax of
    ``scales`` of the base size ``(4 base, base)``, flip, windows of ``base`` at stride 2/3; no CRF,
    which the ``crf`` measure times): ``ours`` (``WeakCLIPRefiner.probabilities``) against
    ``official_like`` (``weakclip_pseudo_masks_speed.py``: one window per forward, the text encoded
    in every window, sequence-first attention) and, with ``--official-weakclip`` and ViT-B/16, the
    official network on every window (``official``; every variant then has its random weights);
    ``extra``: the outputs' agreement. Without that script, :func:`refine_variants` (the CRF backends
    and one window per call, CRF included)."""
    from wsss_kit.data.palette import VOC_CLASSES
    from wsss_weakclip.refiner import WeakCLIPRefiner

    try:
        from benchmarks.weakclip_pseudo_masks_speed import OFFICIAL_LIKE, build_official, compare, variant_fn
    except ImportError:
        return refine_variants(point, ctx)
    base = int(point["base"])
    checkout = ctx.official.get("weakclip") if point["clip"] == "ViT-B-16" else None
    official, state = build_official(checkout, None) if checkout else (None, None)
    torch.manual_seed(0)
    refiner = WeakCLIPRefiner(class_names=list(VOC_CLASSES), clip_model=point["clip"], clip_weights=None, crf=None,
                              scales=tuple(point["scales"]), base_size=(4 * base, base), flip=True, window=base,
                              stride=max(1, round(base * 2 / 3)),
                              **({"checkpoint": state} if state is not None else {})).to(ctx.device).eval()
    image = _rgb(int(point["height"]), int(point["width"]), ctx.device)

    def variant(name: str) -> Callable[[], torch.Tensor]:
        fn = variant_fn(name, official)

        def call() -> torch.Tensor:
            refiner.net.clear_text_cache()  # every image starts without the text, as in a new process
            return fn(refiner, image)
        return call

    fns = {"ours": variant("wsss_kit"), "official_like": variant("official-like")}
    if official is not None:
        official.to(ctx.device)
        fns["official"] = variant("official")
    agreement = compare(fns["official" if official is not None else "official_like"](), fns["ours"]())
    timed = interleave(fns, ctx.rounds, ctx.warmup, ctx.device)
    timed.official = ctx.official_label("weakclip", OFFICIAL_LIKE, runs=official is not None)
    timed.extra = {"clip": point["clip"], "scales": list(point["scales"]), "base_size": [4 * base, base],
                   "window": base, "crf": None, **agreement}
    return timed


def refine_variants(point: Mapping[str, Any], ctx: Context) -> Timed:
    """WeakCLIP pseudo masks of one 375 × 500 image (``WeakCLIPRefiner.refine``: ``scales`` of the base
    size ``(4 base, base)``, flip, windows of ``base`` at stride 2/3, CRF), its CRF by pydensecrf
    (``ours``) and by the torch CRF (``ours_torch_crf``), and ``one_window``: one window per network
    call, as the official slide inference runs them (pydensecrf)."""
    from wsss_kit.data.palette import VOC_CLASSES
    from wsss_weakclip.refiner import WeakCLIPRefiner

    base = int(point["base"])
    settings = dict(class_names=list(VOC_CLASSES), clip_model=point["clip"], clip_weights=None,
                    scales=tuple(point["scales"]), base_size=(4 * base, base), flip=True, window=base,
                    stride=max(1, round(base * 2 / 3)), crf="weakclip_voc")
    fns = {}
    image = _rgb(int(point["height"]), int(point["width"]), ctx.device)
    options: tuple[tuple[str, str, dict[str, Any]], ...] = (
        ("ours", "pydensecrf", {}), ("ours_torch_crf", "torch", {}), ("one_window", "pydensecrf", {"window_batch": 1}))
    for name, backend, batch in options:
        torch.manual_seed(0)
        refiner = WeakCLIPRefiner(**settings, crf_backend=backend, **batch).to(ctx.device).eval()
        fns[name] = lambda r=refiner: r.refine(image, None, None)
    timed = interleave(fns, ctx.rounds, ctx.warmup, ctx.device)
    timed.official = ctx.official_label(
        "weakclip", "one_window: one window per network call as the official slide inference (mmseg) runs "
        "them; the text is encoded once as in ours (the official code encodes it per window: not reproduced)",
        runs=False)
    timed.extra = {k: (list(v) if isinstance(v, tuple) else v) for k, v in settings.items() if k != "class_names"}
    return timed


def measure_attention(point: Mapping[str, Any], ctx: Context) -> Timed:
    """open_clip image tower forward at ``size``², batch ``batch``: open_clip's blocks (``native``) and
    :func:`wsss_kit.attention.fuse_attention` (``fused``); ``extra``: largest output difference."""
    from benchmarks.attention_speed import tower_forward
    from wsss_kit.attention import fuse_attention
    from wsss_kit.clip.loading import build_open_clip_model

    torch.manual_seed(0)
    model, _, _ = build_open_clip_model(point["arch"])
    native = cast(torch.nn.Module, model.visual).to(ctx.device).eval()
    fused = copy.deepcopy(native)
    fuse_attention(fused)
    size, batch = int(point["size"]), int(point["batch"])
    images = torch.randn(batch, 3, size, size, generator=torch.Generator().manual_seed(0)).to(ctx.device)

    def run(tower: torch.nn.Module) -> Callable[[], torch.Tensor]:
        def go() -> torch.Tensor:
            with torch.no_grad():
                return tower_forward(tower, images)
        return go

    fns = {"native": run(native), "fused": run(fused)}
    diff = float((fns["native"]() - fns["fused"]()).abs().max())
    timed = interleave(fns, ctx.rounds, ctx.warmup, ctx.device, {v: batch for v in fns})
    timed.extra = {"arch": point["arch"], "max_abs_output_difference": diff}
    return timed


def _sizes(axis: str, values: list[int], **fixed: Any) -> list[dict[str, Any]]:
    return [{axis: v, **fixed} for v in values]


B16, TINY_CLIP = "ViT-B-16", "wsss-tiny-clip"
OFFICIAL_RATIOS = (0.5, 0.75, 1.0, 1.25, 1.5, 1.75)

register(Measure(
    "crf", "dense CRF per image by backend (10 iterations, default parameters)", "size",
    "image height (px; width 4/3 of it)", "image", "pydensecrf",
    {"tiny": _sizes("size", [24], classes=5), "quick": _sizes("size", [94, 188], classes=21),
     "full": _sizes("size", [94, 188, 375], classes=21, batch=4)}, measure_crf))
register(Measure(
    "cams", "CAM extraction per image, every class present, + flip (published backbones)", "size",
    "image side (px)", "image", None,
    {"tiny": _sizes("size", [32], scales=(1.0,), models=["resnet_cam"], backbone="resnet18"),
     "quick": _sizes("size", [160, 224], scales=(1.0,), models=["resnet_cam", "mctformer_v2"]),
     "full": _sizes("size", [224, 336, 448], scales=(1.0, 0.5, 1.5, 2.0),
                    models=["resnet_cam", "mctformer_v1", "mctformer_v2"])}, measure_cams))
register(Measure(
    "mctformer_cams", "MCTformer-V2 CAMs of one image, scale 1 + flip, DeiT-S: ours vs official", "size",
    "image side (px)", "image", "ours",
    {"tiny": _sizes("size", [32], version=2, scales=(1.0,), classes=3),
     "quick": _sizes("size", [160, 224], version=2, scales=(1.0,), classes=20),
     "full": _sizes("size", [224, 448, 640], version=2, scales=(1.0,), classes=20)},
    measure_mctformer_cams, official="mctformer"))
register(Measure(
    "mctformer_step", "MCTformer-V2 training step (DeiT-S, fp32, AdamW): ours vs official", "batch",
    "images per step", "image", "ours",
    {"tiny": _sizes("batch", [2], version=2, size=32, classes=3),
     "quick": _sizes("batch", [1, 2], version=2, size=224, classes=20),
     "full": _sizes("batch", [1, 4, 8], version=2, size=224, classes=20)},
    measure_mctformer_step, official="mctformer"))
register(Measure(
    "weakclip_step", "WeakCLIP training step (ViT-B/16, random weights): ours vs official-like and official", "crop",
    "crop side (px)", "image", "ours",
    {"tiny": _sizes("crop", [64], clip=TINY_CLIP, batch=2), "quick": _sizes("crop", [96, 160], clip=B16, batch=1),
     "full": _sizes("crop", [128, 256, 384], clip=B16, batch=2)}, measure_weakclip_step, official="weakclip"))
register(Measure(
    "pseudo_masks", "WeakCLIP pseudo-mask inference of one 375x500 image (windows, flip; no CRF)", "base",
    "base size short side (px; windows of that side)", "image", "ours",
    {"tiny": _sizes("base", [32], clip=TINY_CLIP, scales=(1.0,), height=24, width=32),
     "quick": _sizes("base", [96, 192], clip=B16, scales=(1.0,), height=375, width=500),
     "full": _sizes("base", [128, 256, 512], clip=B16, scales=OFFICIAL_RATIOS, height=375, width=500)},
    measure_pseudo_masks, official="weakclip"))
register(Measure(
    "clims_step", "CLIMS/POLE training step with and without the CLIP loss terms", "crop", "crop side (px)",
    "image", "clims",
    {"tiny": _sizes("crop", [96], setup="tiny", batch=8), "quick": _sizes("crop", [96, 160], setup="b32", batch=1),
     "full": _sizes("crop", [256, 384, 512], setup="b32", batch=2)}, measure_clims_step, official="clims"))
register(Measure(
    "retrain_step", "retrain head training step (forward, loss, backward, SGD), batch 2", "crop",
    "crop side (px)", "image", None,
    {"tiny": _sizes("crop", [64], heads=["smp_unet_r18"], batch=2),
     "quick": _sizes("crop", [96, 160], heads=["smp_unet_r18", "deeplab_v2_r101"], batch=2),
     "full": _sizes("crop", [224, 321, 448], heads=["smp_unet_r18", "deeplab_v1_wr38", "deeplab_v2_r101"],
                    batch=2)}, measure_retrain_step))
register(Measure(
    "miou_eval", "mIoU evaluation over VOC-sized masks (375x500, 21 classes)", "masks", "masks", "mask",
    "wsss_kit_png",
    {"tiny": _sizes("masks", [4], height=24, width=32, classes=21),
     "quick": _sizes("masks", [50, 200], height=375, width=500, classes=21),
     "full": _sizes("masks", [200, 700, 1449], height=375, width=500, classes=21)},
    measure_miou_eval, official="mctformer"))
register(Measure(
    "attention", "open_clip ViT image tower forward: native MHA vs fused SDPA", "size", "image side (px)",
    "image", "fused",
    {"tiny": _sizes("size", [32], arch=TINY_CLIP, batch=1), "quick": _sizes("size", [224, 320], arch=B16, batch=1),
     "full": _sizes("size", [224, 384, 512], arch=B16, batch=1)}, measure_attention))
