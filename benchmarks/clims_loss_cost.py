"""What CLIMS's CLIP losses cost per training step: the same CAM network step with and without them.

    python benchmarks/clims_loss_cost.py [--setups tiny,b32] [--steps 5] [--warmup 1]
        [--device cpu|cuda] [--b32-batch 2] [--b32-crop 512] [--threads N] [--clip-precision auto]
        [--no-official] [--channels-last] [--variants clims,clims_fp32,...]
        [--official CLIMS_CHECKOUT --official-site SITE]

For each setup it builds ``cams/clims`` (random weights everywhere: the cost does not depend on
them; for ``b32`` the random CLIP's final LayerNorm biases are set so that its image-text cosines
fall inside the losses' clamps, :func:`live_similarities`, or no gradient would reach the CAMs through
CLIP) and times optimizer steps (SGD over ``param_groups``, the official learning rate 2.5e-4, 10x
for the classifier, weight decay 1e-4, momentum 0.9) of four objectives on the same batch,
interleaved round by round (one step of each variant per round, so that a busy machine slows them
alike; the medians over ``--steps`` rounds after ``--warmup`` are reported):

* ``multilabel``: the baseline CAM objective (multilabel soft margin on the pooled logits), what the
  network costs without CLIMS;
* ``area_only``: CLIMS's area term alone (``reg_weight · mean(sigmoid CAMs)``): the CLIMS network
  step without any CLIP term;
* ``clims``: the full CLIMS loss (object/background matching and co-occurring background
  suppression through the frozen CLIP image encoder, plus the area term) with the fixed prompt
  "a photo of {}." (its text features are encoded once and cached);
* ``clims_coop``: the same with CoOp's learnable context (POLE Table 1), so the text encoder runs
  forward and backward every step;
* ``clims_fp32``: ``clims`` with CLIP in fp32, measured when ``--clip-precision`` (default ``auto``:
  bf16 on a CPU with AMX, fp16 on CUDA, :func:`wsss_kit.clip.resolve_precision`) is not fp32 for
  ``clims``; the issue's fp32 target (≥ 3× the official step) is measured on it (or on ``clims``
  when that already runs fp32);
* ``official_like``: the official step (github CVI-SZU/CLIMS ``step/train_clims.py``,
  ``clip_utils.clip_forward``, ``clip_loss.py``) built from this plugin's pieces, same network,
  same loss values: the CLIP weights keep ``requires_grad=True`` (the official freezing lines
  are commented out; CLIP is not in the optimizer, so backward computes its weight gradients for
  nothing), CLIP in fp32; every class's CAM is resized to CLIP's input, then the pairs picked;
  the pairs' prompts are tokenised and encoded with gradients on every step, twice (once with
  the foreground images, once with the background images), the ten background prompts too; the
  foreground images go through the image encoder twice (matching, then background
  suppression), the background images once. Attention runs fused as in ours (the official
  sequence-first ``nn.MultiheadAttention`` takes PyTorch's fused kernel too), so the ratio
  counts the official structure's waste only.

Before timing, ``official_like`` and ``clims_fp32`` (or ``clims``) each take one SGD step from the
same weights on the same batch: the report's ``equality`` gives the loss difference and the
largest parameter difference after the step (fp32: equal to float rounding).
Ours' networks are built with ``cams/clims``'s default ``channels_last="auto"`` (channels-last on a
CPU with AVX-512, :func:`wsss_pole.clims.prefers_channels_last`); ``--channels-last`` forces it
(``official_like`` keeps the default layout on a network of its own). ``--variants`` times a subset.

``--official PATH`` (``b32`` on the CPU) also runs the official code itself from a checkout of
github CVI-SZU/CLIMS: ``train_clims.run`` over the same batch (``benchmarks/clims_official.py``
says what is adapted to run it here; ``--official-site`` is where OpenAI's ``clip`` package is).
Every network starts from the official network's initial weights and CLIP has the same weights
in both; after each official step one round of ours' variants runs (interleaved). Before that,
ours (``clims_fp32``, as timed) takes one SGD step, and its loss and parameters are compared with
the official's after its first step (``official.equality``). The official step is timed whole
(from handing out its batch to asking for the next one).

Each step is split into CAM-network forward, loss (for the CLIMS variants: masking + CLIP image
encoder + text), backward and optimizer step. The CLIP cost per step is ``clims − area_only``.
POLE's own additions (per-image selected prompts, read from a cache and encoded once; 512→128→512
adapters) are negligible next to these and are not timed separately.

Where the time goes (torch.profiler, ``b32``, 1 thread, ours fp32, one step 4.7 s channels-last /
5.2 s in the default layout, load ~1): the ResNet-50 at 512² (output stride 16) is ~3.9 s of it —
convolution backward 2.1 s (3×3 through oneDNN 1.0 s, 1×1 through PyTorch's own GEMM kernel, which
it picks on one thread, 1.0 s), convolution forward 0.9 s, BatchNorm 0.56 s (batch statistics,
forward + backward), ReLU backward and the residual gradient sums 0.25 s; the 1×1 convolutions
reach ~130-150 GFLOP/s on the wide stages (the core's fp32 peak) and 50-70 GFLOP/s on layer1's
128² maps (memory-bound). CLIP ViT-B/32 on the 2 × 3 masked images (one pass: foreground and
background batched) is ~0.75 s: its linear layers forward 0.35 s and backward to the images 0.35 s
(~100 GFLOP at ~145 GFLOP/s), attention 0.05 s (fused; no ``bmm`` on a transposed input is left).
Resizing/masking, the cached text features and the SGD step (0.06 s) are small. The stem gets no
backward (frozen, and the images need no gradient); the text of the fixed prompts is encoded once.

Against the official code itself (``--official``, ``results/clims_loss_cost_official.json``): its
step recomputes what ours shares or skips — CLIP's weight gradients (151M parameters, the freezing
lines are commented out), the foreground images encoded twice, the pairs' prompts tokenised and
encoded with gradients twice per step and the ten background prompts once — ~6 s of CLIP work next
to ours' ~0.75 s, and the network in the default layout. Measured (three runs of 5 rounds, 1 thread,
load 1.4-2.6): official 10.1-11.6 s, ``clims_fp32`` 4.9-5.5 s (1.83-2.35×; the recorded run's median
of per-round ratios 2.04×), ``clims`` (bf16 CLIP on AMX) 4.3-4.9 s (2.13-2.64×). The 3× target
cannot be met in fp32 at this setting: ours without any CLIP term (``area_only``: the network alone,
channels-last) takes 3.8-4.0 s, so even a free CLIP would give ~2.6×. First step from the same
weights (random network, CLIP with :func:`live_similarities`): the same loss to 1e-5 of 36.6 and, in
the official layout, the same update to 6e-8; channels-last moves this random network's first update
by up to 2.8e-5 (of updates up to 4.6e-4, ~6% in norm), as much as a 1e-6 relative change of the
input images does in the default layout (~5%): the first step of a random ResNet-50 here is that
ill-conditioned, not computed differently. Earlier ``official_like`` runs (the official structure
from this plugin's pieces; load 3.7-5.2): 14.3 s vs ``clims_fp32`` 7.7 s (1.84×),
``--channels-last`` 13.2 s vs 6.9 s (1.92×) (``results/clims_loss_cost.json``,
``results/clims_loss_cost_channels_last.json``).

Setups (images are random, labels alternate 1 and 2 classes per image, VOC's mean is ~1.5):

* ``tiny``: the synthetic runs' setting (benchmarks/pole/synthetic_*.yaml): ResNet-18 at output
  stride 16 (dilated), 5 classes, crop 96, batch 8, ``wsss-tiny-clip`` (64-px input);
* ``b32``: the official setting's networks: ResNet-50 at output stride 16 (strides 2, 2, 2, 1),
  20 classes, crop 512, batch 2 (``--b32-batch``, ``--b32-crop``; the official batch is 16), CLIP
  ViT-B/32 as OpenAI's (QuickGELU; 224-px input, random weights with :func:`live_similarities`).

Each setup runs in its own process, so that its peak RSS (CPU; both networks, the shared CLIP and
all four variants) is its own; on CUDA the peak allocated memory is per variant. Prints a table and
saves benchmarks/results/clims_loss_cost.json. Needs ``pip install -e plugins/cams -e plugins/pole``;
never run by the tests.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Sequence

import torch
import torch.nn.functional as F

from wsss_kit.atomic import write_text

RESULTS = Path(__file__).resolve().parent / "results" / "clims_loss_cost.json"
VARIANTS = ("multilabel", "area_only", "clims", "clims_coop", "clims_fp32", "official_like")
BASE_VARIANTS = VARIANTS[:4]
OFFICIAL_LR = 2.5e-4
"""The official CLIMS learning rate (``--clims_learning_rate``; 10x for the classifier): every variant's SGD."""
SYNTHETIC_NAMES = ["ball", "box", "kite", "boat", "tree"]


def setup_kwargs(name: str, args: argparse.Namespace) -> tuple[dict[str, Any], int, int]:
    """``(cams/clims keywords, batch size, crop)`` of a setup."""
    if name == "tiny":
        kwargs = dict(num_classes=5, class_names=SYNTHETIC_NAMES, backbone="resnet18", freeze_stem=False,
                      frozen_stages=0, fixed_bn=False, dilate_last_stage=True, upsample="image",
                      clip_model="wsss-tiny-clip", clip_weights=None,
                      background=["sky", "cloud", "water", "grass", "sand"])
        return kwargs, 8, 96
    if name == "b32":  # OpenAI's ViT-B/32 (QuickGELU), as the official code loads it
        kwargs = dict(num_classes=20, backbone="resnet50", clip_model="ViT-B-32", clip_weights=None,
                      clip_quick_gelu=True)
        return kwargs, args.b32_batch, args.b32_crop
    raise SystemExit(f"unknown setup {name!r}; choose from tiny, b32")


def live_similarities(clip: Any, seed: int = 7) -> None:
    """Make a random CLIP's image-text cosines land inside CLIMS's clamps ([1e-4, 0.9999]; ~0.4 here).

    A random ViT-B/32's cosines are ~0 and clamped, so no gradient would reach the CAMs through CLIP
    and the one-step equality would test the area term only. The final LayerNorm biases of both towers
    are set along one random direction ``u`` of the embedding space (through each tower's projection),
    so every embedding shares a component along ``u``. ``clip``: a :class:`wsss_kit.clip.CLIPModel`.
    """
    m = clip.model
    u = F.normalize(torch.randn(m.text_projection.shape[1], generator=torch.Generator().manual_seed(seed)), dim=0)
    with torch.no_grad():
        for bias, proj in ((m.visual.ln_post.bias, m.visual.proj), (m.ln_final.bias, m.text_projection)):
            bias.copy_(F.normalize(proj @ u.to(proj), dim=0) * proj.shape[0] ** 0.5)
    clip.clear_text_cache()


def labels_for(batch: int, num_classes: int) -> torch.Tensor:
    """1, 2, 1, 2, ... classes per image (different classes per image)."""
    labels = torch.zeros(batch, num_classes)
    for i in range(batch):
        for j in range(1 + i % 2):
            labels[i, (3 * i + j) % num_classes] = 1.0
    return labels


def official_like_loss(model: Any, clip: Any, images: torch.Tensor, cams: torch.Tensor,
                       labels: torch.Tensor) -> torch.Tensor:
    """The official CLIMS loss computed the official way (module docstring, ``official_like``).

    ``model``: a ``cams/clims`` network (its prompts, background prompts and loss weights);
    ``clip``: a CLIPModel whose weights require gradients (``frozen=False``: no text cache either);
    ``images`` ``(B, 3, H, W)`` in [0, 1]; ``cams`` ``(B, C, h, w)`` sigmoid CAMs; ``labels`` ``(B, C)``.
    """
    from wsss_kit.clip import IMAGENET_MEAN, IMAGENET_STD
    from wsss_pole.losses import (
        area_regularization_loss,
        background_suppression_loss,
        background_text_matching_loss,
        object_text_matching_loss,
    )

    crit = model.criterion
    if crit.normalization != "imagenet":
        raise ValueError(f"official_like follows the official ImageNet normalisation; got {crit.normalization!r}")
    mean = torch.tensor(IMAGENET_MEAN, device=images.device).view(1, 3, 1, 1)
    std = torch.tensor(IMAGENET_STD, device=images.device).view(1, 3, 1, 1)
    x = (images - mean) / std  # the official data loader's normalisation
    size = crit.input_size or clip.image_size
    size = (size, size) if isinstance(size, int) else tuple(size)
    cam_s = F.interpolate(cams, size=size, mode="bilinear", align_corners=True)  # every class's CAM
    img_s = F.interpolate(x, size=size, mode="bilinear", align_corners=True)
    image_index, class_index = torch.nonzero(labels > 0.5, as_tuple=True)
    p = cam_s[image_index, class_index].unsqueeze(1)
    fg, bg = p * img_s[image_index], (1 - p) * img_s[image_index]
    names = [model.prompt_names[k] for k in class_index.tolist()]

    def similarity(image_batch: torch.Tensor) -> torch.Tensor:  # clip_forward: the texts encoded each call
        text = F.normalize(model.prompt(names, clip=clip), dim=-1)
        return (F.normalize(clip.encode_image(image_batch, normalized=True), dim=-1) * text).sum(-1)

    otm = object_text_matching_loss(similarity(fg), crit.eps)
    btm = background_text_matching_loss(similarity(bg), crit.eps)
    s_cbs = (F.normalize(clip.encode_image(fg, normalized=True), dim=-1)
             @ F.normalize(clip.encode_text(list(model.background_prompts)), dim=-1).t())
    cbs = background_suppression_loss(s_cbs, crit.cbs_threshold, crit.eps)
    return (crit.otm_weight * otm + crit.btm_weight * btm + crit.cbs_weight * cbs
            + crit.reg_weight * area_regularization_loss(cams))


def measure_setup(name: str, args: argparse.Namespace) -> dict[str, Any]:
    """Time the variants on one batch, interleaved step by step (a busy machine slows them
    alike), and report the median of the timed steps. ``args``: ``device``, ``warmup``, ``steps``,
    ``b32_batch``, ``b32_crop`` and optionally ``clip_precision`` (default ``auto``), ``official``
    (default True: ``clims_fp32``/``official_like`` and their one-step equality)."""
    import wsss_kit
    from wsss_kit.clip import load_clip

    device = torch.device(args.device)
    precision = getattr(args, "clip_precision", "auto")
    with_official = bool(getattr(args, "official", True))
    # ours: True = channels-last, None = the model's default ("auto": channels-last where faster)
    channels_last: bool | str = True if getattr(args, "channels_last", False) else "auto"
    official_path = getattr(args, "official_path", None)
    chosen = getattr(args, "variants", None)
    kwargs, batch, crop = setup_kwargs(name, args)
    if official_path and (name != "b32" or device.type != "cpu"):
        raise SystemExit("--official runs the official VOC step (20 classes) on the CPU: setup b32, --device cpu")
    images = torch.rand(batch, 3, crop, crop, generator=torch.Generator().manual_seed(0)).to(device)
    labels = labels_for(batch, kwargs["num_classes"]).to(device)
    if official_path and int(labels.sum()) < 2:
        raise SystemExit("--official: the official step fails on a batch with one (image, class) pair (it squeezes "
                         "the pair indices to a 0-dim tensor); use --b32-batch 2 or more")
    clip_name, clip_weights = kwargs.pop("clip_model"), kwargs.pop("clip_weights")
    gelu = {"quick_gelu": True} if kwargs.pop("clip_quick_gelu", False) else {}
    torch.manual_seed(0)
    clip = load_clip(clip_name, clip_weights, device=device, precision=precision, **gelu)  # shared, frozen
    if clip_weights is None and name == "b32":
        live_similarities(clip)
    resolved = clip.resolved_precision(device.type) or "fp32"
    variants = [v for v in VARIANTS if v in BASE_VARIANTS or (with_official and not (
        v == "clims_fp32" and resolved == "fp32"))]
    if chosen:
        unknown = sorted(set(chosen) - set(VARIANTS))
        if unknown:
            raise SystemExit(f"unknown variants {unknown}; choose from {', '.join(VARIANTS)}")
        variants = [v for v in variants if v in chosen]
    clips = {"ours": clip}
    if with_official or official_path:
        state = clip.state_dict()
        clips["fp32"] = clip if resolved == "fp32" else load_clip(clip_name, None, device=device, precision="fp32",
                                                                 **gelu)
        clips["fp32"].load_state_dict(state)
    if with_official:
        clips["official"] = load_clip(clip_name, None, device=device, precision="fp32", frozen=False, keep_eval=True,
                                      **gelu)
        clips["official"].load_state_dict(state)
    start_state = None  # the official network's initial weights, which every network here starts from
    if official_path:
        from benchmarks.clims_official import load_official, official_network
        from wsss_cams import convert_irn_resnet50_cam

        official = load_official(official_path, getattr(args, "official_site", None))
        torch.manual_seed(0)
        official_start = official_network(official, kwargs["num_classes"]).state_dict()
        start_state = convert_irn_resnet50_cam(official_start, num_classes=kwargs["num_classes"])
    coop = {"type": "prompts/coop", "n_ctx": 3, "init_phrase": "a photo of", "template": "{}."}

    def build(prompt: Any = None, layout: bool | str = channels_last, clip_model: Any = clip) -> Any:
        extra = {"prompt": prompt, "prompt_lr_mult": 1.0} if prompt else {}
        model = wsss_kit.create("cams", "clims", **kwargs, clip_model=clip_model, channels_last=layout,
                                **extra).to(device).train()
        if start_state is not None:
            model.cam.load_state_dict(start_state)
        return model

    torch.manual_seed(0)
    models = {"template": build(), "coop": build(coop)}
    if with_official and "official_like" in variants:  # the official network keeps the default layout
        torch.manual_seed(0)
        models["official"] = build(layout=False)
    model_of = {"multilabel": "template", "area_only": "template", "clims": "template", "clims_coop": "coop",
                "clims_fp32": "template", "official_like": "official"}

    def sgd(model: Any) -> torch.optim.Optimizer:
        return torch.optim.SGD([g for g in model.param_groups(OFFICIAL_LR) if g["params"]], lr=OFFICIAL_LR,
                               momentum=0.9, weight_decay=1e-4)

    optimizers = {v: sgd(models[model_of[v]]) for v in variants}

    def loss_of(variant: str, model: Any, raw: torch.Tensor) -> torch.Tensor:
        if variant == "multilabel":
            return F.multilabel_soft_margin_loss(raw.mean(dim=(2, 3)), labels)
        if variant == "area_only":
            return model.criterion.reg_weight * torch.sigmoid(raw).mean()
        if variant == "official_like":
            return official_like_loss(model, clips["official"], images, torch.sigmoid(raw), labels)
        c = clips["fp32"] if variant == "clims_fp32" else model.clip
        return model.criterion(images, torch.sigmoid(raw), labels, clip=c,
                               class_text=model.prompt(model.prompt_names, clip=c),
                               background_text=model.background_prompts)["loss"]

    ours_v = "clims_fp32" if resolved != "fp32" else "clims"
    equality = None
    if with_official and "official_like" in variants:  # one step each from the same weights: same loss, update
        after, losses = {}, {}
        for v in (ours_v, "official_like"):
            torch.manual_seed(1)
            m = build(layout=channels_last if v != "official_like" else False)
            before = {n: p.detach().clone() for n, p in m.named_parameters() if p.requires_grad}
            losses[v], after[v] = _first_step(m, loss_of(v, m, m.raw_cams(images)), sgd(m))
        equality = {"compared": [ours_v, "official_like"], "loss": losses,
                    "loss_difference": abs(losses[ours_v] - losses["official_like"]),
                    "max_update_difference": max(float((after[ours_v][n] - after["official_like"][n]).abs().max())
                                                 for n in after[ours_v]),
                    "max_update": max(float((after[ours_v][n] - before[n]).abs().max()) for n in after[ours_v]),
                    "official_clip_weights_given_grads": sum(
                        p.numel() for p in clips["official"].parameters() if p.grad is not None)}
        clips["official"].zero_grad(set_to_none=True)

    def sync() -> None:
        if device.type == "cuda":
            torch.cuda.synchronize()

    def step(variant: str) -> tuple[float, ...]:
        model, opt = models[model_of[variant]], optimizers[variant]
        sync()
        t0 = time.perf_counter()
        raw = model.raw_cams(images)
        sync()
        t1 = time.perf_counter()
        loss = loss_of(variant, model, raw)
        sync()
        t2 = time.perf_counter()
        opt.zero_grad(set_to_none=True)
        if variant == "official_like":  # the official step zeroes only the optimizer's parameters
            clips["official"].zero_grad(set_to_none=False)
        loss.backward()
        sync()
        t3 = time.perf_counter()
        opt.step()
        sync()
        t4 = time.perf_counter()
        return t1 - t0, t2 - t1, t3 - t2, t4 - t3, t4 - t0

    keys = ("cam_forward", "loss", "backward", "optimizer", "step")
    times: dict[str, dict[str, list[float]]] = {v: {k: [] for k in keys} for v in variants}
    peak_cuda: dict[str, int] = {}

    def run_round(i: int) -> None:
        for variant in variants:
            if device.type == "cuda":
                torch.cuda.reset_peak_memory_stats(device)
            measured = step(variant)
            if device.type == "cuda":
                peak_cuda[variant] = max(peak_cuda.get(variant, 0), torch.cuda.max_memory_allocated(device))
            if i >= args.warmup:
                for key, value in zip(keys, measured):
                    times[variant][key].append(value)
        print(f"  {name}: round {i + 1}/{args.warmup + args.steps}" + (" (warm-up)" if i < args.warmup else ""),
              flush=True)

    official_record: dict[str, Any] | None = None
    if official_path:
        official_record = _run_official(official, official_start, clips["fp32"], images, labels, args, run_round,
                                        build, loss_of, sgd, ours_v)
    else:
        for i in range(args.warmup + args.steps):
            run_round(i)

    out: dict[str, Any] = {"batch": batch, "crop": crop, "pairs": int(labels.sum()), "clip_model": clip.name,
                           "clip_image_size": list(clip.image_size), "backbone": kwargs["backbone"],
                           "clip_precision": precision, "clip_precision_resolved": resolved,
                           "channels_last": channels_last,
                           "ours_channels_last_resolved": bool(models["template"].uses_channels_last),
                           "variants": {}}
    for variant in variants:
        t = times[variant]
        result = {k: round(statistics.median(v), 4) for k, v in t.items()}
        result["step_min"] = round(min(t["step"]), 4)
        result["step_max"] = round(max(t["step"]), 4)
        result["steps"] = [round(x, 4) for x in t["step"]]  # per round, for per-round ratios
        result["trainable_params"] = sum(p.numel() for g in optimizers[variant].param_groups for p in g["params"])
        if variant in peak_cuda:
            result["peak_cuda_mb"] = round(peak_cuda[variant] / 2**20)
        out["variants"][variant] = result
    v = out["variants"]
    if "clims" in v and "area_only" in v:
        out["clip_cost_seconds"] = round(v["clims"]["step"] - v["area_only"]["step"], 4)
        out["clims_over_area_only"] = round(v["clims"]["step"] / v["area_only"]["step"], 3)
    if "clims" in v and "clims_coop" in v:
        out["coop_text_cost_seconds"] = round(v["clims_coop"]["step"] - v["clims"]["step"], 4)
    fp32 = v.get("clims_fp32", v.get("clims"))
    for base in ("official_like", "official"):
        if base == "official" and official_record is not None:
            t = official_record.pop("step_seconds")[args.warmup:]
            v["official"] = {"step": round(statistics.median(t), 4), "step_min": round(min(t), 4),
                             "step_max": round(max(t), 4), "steps": [round(x, 4) for x in t],
                             "trainable_params": official_record.pop("trainable_params")}
            out["official"] = official_record
        if base in v and fp32 is not None:
            out[f"speedup_{base}_over_clims_fp32"] = round(v[base]["step"] / fp32["step"], 3)
            if "clims" in v:
                out[f"speedup_{base}_over_clims"] = round(v[base]["step"] / v["clims"]["step"], 3)
            for ours_name in ("clims_fp32", "clims"):  # the same round's steps ran side by side
                if ours_name in v and len(v[ours_name]["steps"]) == len(v[base]["steps"]):
                    out[f"speedup_{base}_over_{ours_name}_per_round_median"] = round(statistics.median(
                        a / b for a, b in zip(v[base]["steps"], v[ours_name]["steps"])), 3)
    if equality is not None:
        out["equality"] = equality
    out["peak_rss_mb"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)
    return out


def _first_step(model: Any, loss: torch.Tensor, opt: torch.optim.Optimizer) -> tuple[float, dict[str, torch.Tensor]]:
    """One optimizer step on ``loss``: the loss and the trained parameters after it (copies)."""
    opt.zero_grad(set_to_none=True)
    loss.backward()
    opt.step()
    return float(loss.detach()), {n: p.detach().clone() for n, p in model.named_parameters() if p.requires_grad}


def _run_official(official: Any, start: dict[str, torch.Tensor], clip: Any, images: torch.Tensor,
                  labels: torch.Tensor, args: argparse.Namespace, run_round: Any, build: Any, loss_of: Any,
                  sgd: Any, ours_v: str) -> dict[str, Any]:
    """The official step (``clims_official.OfficialRun``) for ``warmup + steps`` rounds, each followed by
    ``run_round(i)`` (one step of each of ours' variants), so the two interleave. First, ours' ``ours_v``
    takes one SGD step from ``start`` (the official network's initial weights), fp32 CLIP, twice: in the
    official layout (``equality``: the same computation, to float rounding) and as timed
    (``equality_as_timed``: channels-last where ``"auto"`` picks it; this random network's first update
    is ill-conditioned, so rounding moves it by a few percent, as a 1e-6 change of the input does).
    Each is compared with the official's loss and parameters after its first step."""
    from benchmarks.clims_official import OfficialRun
    from wsss_cams import convert_irn_resnet50_cam

    num_classes = labels.shape[1]
    start_ours = convert_irn_resnet50_cam(start, num_classes=num_classes)
    ours: dict[str, tuple[float, dict[str, torch.Tensor], bool]] = {}
    for key, layout in (("equality", False), ("equality_as_timed", None)):
        m = build(clip_model=clip) if layout is None else build(layout=layout, clip_model=clip)
        ours[key] = (*_first_step(m, loss_of(ours_v, m, m.raw_cams(images)), sgd(m)), bool(m.uses_channels_last))
        del m
    record: dict[str, Any] = {}

    def between(i: int) -> None:
        if i == 1:  # the official network after its first step, from the same weights
            assert run.network is not None
            state = convert_irn_resnet50_cam(run.network.state_dict(), num_classes=num_classes)
            meter = run.meters[0]
            for key, (ours_loss, after, channels_last) in ours.items():
                names = [k for k in state if f"cam.{k}" in after]
                record[key] = {
                    "compared": [ours_v, "official"], "ours_channels_last": channels_last,
                    "loss": {ours_v: ours_loss, "official": meter["loss1"]},
                    "official_terms": {k: meter[k] for k in ("L_OTM", "L_BTM", "L_CBS", "L_REG")},
                    "loss_difference": abs(ours_loss - meter["loss1"]), "parameters_compared": len(names),
                    "max_update_difference": max(float((after[f"cam.{k}"] - state[k]).abs().max()) for k in names),
                    "max_update": max(float((after[f"cam.{k}"] - start_ours[k]).abs().max()) for k in names),
                    "official_clip_weights_given_grads": sum(p.numel() for p in run.clip.parameters()
                                                             if p.grad is not None)}
        run_round(i - 1)

    run = OfficialRun(official, start, clip.model.state_dict(), images.cpu(), labels.cpu(),
                      args.warmup + args.steps, between)
    run.run()
    assert run.optimizer is not None
    record.update(step_seconds=run.step_seconds, checkout=str(args.official_path),
                  trainable_params=sum(p.numel() for g in run.optimizer.param_groups for p in g["params"]
                                       if p.requires_grad),
                  optimizer=f"{type(run.optimizer).__mro__[1].__name__} (SGD, momentum "
                            f"{run.optimizer.param_groups[0]['momentum']}, the official PolyOptimizer's)")
    return record


def measure_clims_step(setups: str | Sequence[str] = ("b32",), steps: int = 5, warmup: int = 1, device: str = "cpu",
                       b32_batch: int = 2, b32_crop: int = 512, threads: int | None = 1, clip_precision: str = "auto",
                       official: bool = True, channels_last: bool = False, official_path: str | None = None,
                       official_site: str | None = None, variants: Sequence[str] | None = None) -> dict[str, Any]:
    """Every setup in its own child process (its peak RSS its own); returns the record :func:`main` saves:
    ``results[setup]`` (:func:`measure_setup`), ``settings``, ``method``, ``machine``."""
    root = str(Path(__file__).resolve().parents[1])
    if root not in sys.path:
        sys.path.insert(0, root)
    from benchmarks.machine import machine_info

    names = [s.strip() for s in (setups.split(",") if isinstance(setups, str) else setups) if s.strip()]
    if steps < 1 or warmup < 0:
        raise ValueError(f"steps must be >= 1 and warmup >= 0; got steps={steps}, warmup={warmup}")
    ns = argparse.Namespace(b32_batch=b32_batch, b32_crop=b32_crop)
    for name in names:
        setup_kwargs(name, ns)  # validate the names before spawning
    load_before = [round(x, 2) for x in os.getloadavg()]
    results: dict[str, Any] = {}
    for name in names:
        print(f"setup {name}:", flush=True)
        cmd = [sys.executable, str(Path(__file__).resolve()), "--child", name, "--steps", str(steps), "--warmup",
               str(warmup), "--device", device, "--b32-batch", str(b32_batch), "--b32-crop", str(b32_crop),
               "--clip-precision", clip_precision] + ([] if official else ["--no-official"]) + (
                   ["--channels-last"] if channels_last else []) + (
                   ["--official", str(official_path)] if official_path else []) + (
                   ["--official-site", str(official_site)] if official_site else []) + (
                   ["--variants", ",".join(variants)] if variants else [])
        if threads:
            cmd += ["--threads", str(threads)]
        proc = subprocess.run(cmd, stdout=subprocess.PIPE, text=True, env=dict(os.environ, HF_HUB_OFFLINE="1"))
        lines = proc.stdout.rstrip().splitlines()
        for line in lines[:-1]:
            print(line)
        if proc.returncode != 0 or not lines:
            raise RuntimeError(f"setup {name} failed with exit code {proc.returncode}")
        results[name] = json.loads(lines[-1])
    return {
        "results": results,
        "settings": {"steps": steps, "warmup": warmup, "device": device, "clip_precision": clip_precision,
                     "channels_last": channels_last, "official_path": official_path, "variants": variants,
                     "b32_batch": b32_batch, "b32_crop": b32_crop},
        "method": f"variants built in one child process per setup (threads={threads}), one step of each per "
                  f"round, {warmup} warm-up round(s) then the median of {steps}; official_like = the official "
                  "CLIMS step's structure rebuilt from wsss_pole's pieces (not the official code)"
                  + ("; official = the official code's train_clims.run from the checkout, each of its steps "
                     "followed by one round of ours (clims_official.py)" if official_path else ""),
        "target_speedup_fp32": 3.0,
        "machine": machine_info(load_average_before=load_before, torch_threads=threads or torch.get_num_threads(),
                                cuda_device=torch.cuda.get_device_name(0) if device.startswith("cuda") else None),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--setups", default="tiny,b32", help="comma-separated subset of tiny, b32")
    parser.add_argument("--steps", type=int, default=5, help="timed steps per variant (default: 5)")
    parser.add_argument("--warmup", type=int, default=1, help="untimed steps first (default: 1)")
    parser.add_argument("--device", default="cpu", help="cpu or cuda (default: cpu)")
    parser.add_argument("--b32-batch", type=int, default=2)
    parser.add_argument("--b32-crop", type=int, default=512)
    parser.add_argument("--threads", type=int, default=1, help="torch.set_num_threads (default: 1)")
    parser.add_argument("--clip-precision", default="auto", help="CLIP precision of 'clims' (default: auto)")
    parser.add_argument("--no-official", action="store_true", help="skip clims_fp32 and official_like")
    parser.add_argument("--channels-last", action="store_true",
                        help="ours' CAM networks channels-last (cams/clims channels_last=True; default: 'auto')")
    parser.add_argument("--official", dest="official_path", metavar="PATH",
                        help="a checkout of github CVI-SZU/CLIMS: also time its own step (b32, CPU)")
    parser.add_argument("--official-site", metavar="SITE",
                        help="where OpenAI's clip package is (python benchmarks/clims_official.py --prepare SITE)")
    parser.add_argument("--variants", help=f"comma-separated subset of {', '.join(VARIANTS)} (default: all)")
    parser.add_argument("--results", default=str(RESULTS))
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.steps < 1 or args.warmup < 0:
        parser.error("--steps must be >= 1 and --warmup >= 0")
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.variants:
        args.variants = [v.strip() for v in args.variants.split(",") if v.strip()]
    if args.child:  # one setup in this process; the result goes to stdout's last line
        root = str(Path(__file__).resolve().parents[1])
        if root not in sys.path:  # benchmarks.clims_official, when --official is given
            sys.path.insert(0, root)
        args.official = not args.no_official
        print(json.dumps(measure_setup(args.child, args)))
        return 0

    record = measure_clims_step(args.setups, steps=args.steps, warmup=args.warmup, device=args.device,
                                b32_batch=args.b32_batch, b32_crop=args.b32_crop, threads=args.threads,
                                clip_precision=args.clip_precision, official=not args.no_official,
                                channels_last=args.channels_last, official_path=args.official_path,
                                official_site=args.official_site, variants=args.variants)
    results = record["results"]
    print(f"\nmedian seconds of {args.steps} interleaved steps")
    print(f"{'setup':<6} {'variant':<13} {'step s':>8} {'min-max':>15} {'CAM fwd':>8} {'loss':>8} {'backward':>9} "
          f"{'optim':>7}")
    for name, r in results.items():
        for variant, v in r["variants"].items():
            spread = f"{v['step_min']:.2f}-{v['step_max']:.2f}"
            parts = [f"{v[k]:>{w}.3f}" if k in v else " " * w for k, w in
                     (("cam_forward", 8), ("loss", 8), ("backward", 9), ("optimizer", 7))]
            print(f"{name:<6} {variant:<13} {v['step']:>8.3f} {spread:>15} " + " ".join(parts))
    for name, r in results.items():
        if "official" in r:
            e = r["official"].get("equality", {})
            print(f"  official code / clims fp32 {r['speedup_official_over_clims_fp32']:.2f}x (target >= 3x)"
                  + (f", / clims {r['speedup_official_over_clims']:.2f}x" if "speedup_official_over_clims" in r else "")
                  + f"; first step from the same weights: loss difference "
                  f"{e.get('loss_difference', float('nan')):.2e}, largest update difference "
                  f"{e.get('max_update_difference', float('nan')):.2e} (official layout)")
            t = r["official"].get("equality_as_timed", {})
            print(f"  ours as timed (channels-last {t.get('ours_channels_last')}): loss difference "
                  f"{t.get('loss_difference', float('nan')):.2e}, largest update difference "
                  f"{t.get('max_update_difference', float('nan')):.2e} of updates up to "
                  f"{t.get('max_update', float('nan')):.2e}")
        if "clip_cost_seconds" not in r or "coop_text_cost_seconds" not in r:
            continue
        print(f"{name}: batch {r['batch']}, crop {r['crop']}, {r['pairs']} (image, class) pairs, "
              f"{r['backbone']} + {r['clip_model']} ({r['clip_precision_resolved']}): the CLIP terms add "
              f"{r['clip_cost_seconds']:.3f} s per step ({r['clims_over_area_only']:.2f}x the step without them); "
              f"CoOp's text encoder adds {r['coop_text_cost_seconds']:.3f} s; peak RSS {r['peak_rss_mb']} MB")
        if "equality" in r and "speedup_official_like_over_clims" in r:
            print(f"  official_like / clims fp32 {r['speedup_official_like_over_clims_fp32']:.2f}x (target >= 3x), "
                  f"/ clims {r['speedup_official_like_over_clims']:.2f}x; one step from the same weights: loss "
                  f"difference {r['equality']['loss_difference']:.2e}, largest update difference "
                  f"{r['equality']['max_update_difference']:.2e}")
    write_text(Path(args.results), json.dumps(record, indent=2) + "\n")
    print(f"\nsaved {args.results}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
