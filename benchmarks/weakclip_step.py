"""WeakCLIP training-step time and peak memory: this plugin's step against the official code's waste.

    python benchmarks/weakclip_step.py [--clip ViT-B-16] [--weights none] [--crop 256] [--batch 2]
        [--steps 3] [--warmup 1] [--device cpu|cuda] [--preset official] [--threads N]
        [--clip-precision auto|fp32|fp16|bf16]

All variants are the same network (``wsss_weakclip.model.WeakCLIPNet``, VOC's 21 class names,
random CLIP weights with ``--weights none``: the cost does not depend on them) trained with the
same objective, the official one: ``balanced_seed + crf_boundary + 0.4 · score_map``, AdamW
(lr 1e-4, weight decay 3e-5) over ``param_groups``. They differ only where the official code
wastes time:

* ``ours``: the CLIP encoders frozen (``requires_grad=False``: no weight gradients through
  ViT-B/16, no optimizer state for them), the trainer's optimizer (``build_optimizer``: fused
  AdamW), CLIP at ``--clip-precision`` (default ``auto``: fp16 autocast on CUDA, bf16 on a CPU
  with AMX, else fp32: :func:`wsss_kit.clip.resolve_precision`),
  the boundary loss's 64 × 64 CRFs in worker processes (one per CPU core).
* ``ours_fp32``: the same with CLIP in fp32 (the official numerics), to separate the
  precision's share of the gain; skipped when ``ours`` already runs CLIP in fp32. The fp32 target
  (issue 15: ≥ 4× the official step) is measured on this one.
* ``official_like``: what the official config does: every frozen parameter (the CLIP image and
  text encoders) has ``requires_grad=True`` and sits in an AdamW group with lr 0 (gradients are
  computed and the moments updated, the weights do not move: the same updates), CLIP in fp32,
  the CRFs one after the other on the main thread (``workers=0``). It is not the official code.
* ``official`` (with ``--official CHECKOUT``): the official code itself, hustvl/WeakCLIP's
  ``forward_train`` (mmseg 0.19) and mmcv's AdamW from its VOC config, random weights
  (:mod:`benchmarks.weakclip_official` says how it is imported and what is adapted for a CPU).
  It does more than ``official_like``: the k-NN matrix of the 64 × 64 features on every step
  (unused by its ``dgcn_lite`` config), SyncBN, mmseg's head bookkeeping. Measured beside the
  others (1 thread, crop 256, batch 2, load ~1.2): official 7.0 s, official_like 5.4 s.

Equality: before timing, every variant is built from the same weights and takes one step on
the same batch with the same random stream; the report's ``equality`` gives the loss and the
largest parameter difference after the step against ``official_like`` (``ours_fp32``: loss
equal, parameters within float rounding of AdamW's first step; bf16 ``ours``: ~3e-3 relative
loss) and checks that ``official_like``'s CLIP weights did not move.

Where the time goes (torch.profiler, 1 thread, crop 256, batch 2, ``ours_fp32``, 2.3 s): the ViT-B/16
image forward (``addmm`` ~0.72 s at ~145 GFLOP/s, the fused SDPA attention 0.07 s); the FPN decoder's
3×3 convolutions at 64 × 64 and 32 × 32 forward (~0.25 s) and backward (~0.5 s, at the same
~150 GFLOP/s); the learnable prompt's text encoder forward + backward (21 prompts × 13 tokens,
~0.4 s). Everything left is needed by the update and already runs near the core's fp32 peak;
``official_like`` adds the ViT's and the text encoder's weight gradients (backward 3.0 s vs 0.85 s)
and AdamW over 171M instead of 10M parameters (0.9 s vs 0.04 s). Hence fp32 stays near 2.2×
against this variant and 2.7× against the official code: the official step's forward alone
(2.8 s) is what ours must also compute plus its k-NN matrix; with ours' forward at 1.5 s and the
backward it needs (decoder and learnable-prompt text encoder, 0.9-1.0 s) near the core's fp32 peak,
4× in fp32 would need the official step at ~10 s. bf16 autocast of the frozen CLIP (AMX) takes
the image forward from 1.6 s to 0.9 s. (Before the fused attention of :mod:`wsss_kit.attention`,
bf16 made the image forward ~12× *slower* on a 2-core AMD EPYC: ``nn.MultiheadAttention``'s input projection ran as
``aten::bmm`` against an expanded weight; the fused path projects with one ``F.linear``.)

Inputs are image-like, not noise (a CRF's time depends on the image content): smooth colour
blobs on a gradient background, seed masks with a background region, one or two objects and an
ignored band, all at the crop size.

Timing: all variants are built in one process and their steps interleaved (one step of each
per round), so that a shared machine whose load changes slows them alike; per step the time is
split into forward, losses (and the CRF within them), backward and optimizer; reported are the
medians after ``--warmup`` rounds and the min/max step. Memory: each variant then runs alone in
its own process for warm-up + 1 steps: its peak RSS (CPU) or ``torch.cuda.max_memory_allocated``
(CUDA). Headline: the speed ratios ``official / ours_fp32`` (target ≥ 4; ``official_like /
ours_fp32`` without a checkout) and ``official / ours``; ``equality_official`` holds the one-step
comparison of the official code with ``ours_fp32`` built from its weights. On a CPU shared with
other jobs use ``--threads 1`` (the default):
with 2 threads on 2 cores next to a busy job, the AdamW step of ``ours`` once took 2.5 s instead
of 0.03 s (threads waiting on descheduled siblings, we assume), which makes the timings
meaningless. Prints a table and saves
``benchmarks/results/weakclip_step_<device>.json``. Needs ``pip install -e plugins/weakclip``
(or ``PYTHONPATH=plugins/weakclip``) and pydensecrf; never timed by the tests
(``tests/test_training_step_benchmarks.py`` checks the one-step equality on a tiny CLIP).
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
from typing import Any

import torch
import torch.nn.functional as F

RESULTS_DIR = Path(__file__).resolve().parent / "results"
VARIANTS = ("official", "official_like", "ours_fp32", "ours")  # "official" only with --official
SCORE_MAP_WEIGHT = 0.4
LR, WEIGHT_DECAY = 1e-4, 3e-5


def synthetic_batch(batch: int, crop: int, num_classes: int, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Images ``(B, 3, crop, crop)`` in [0, 1] and seeds ``(B, crop, crop)`` int64 (255 = ignore):
    one or two elliptic objects of flat colour (plus a little texture) on a gradient background;
    the seeds mark the objects' cores with their class, the background far from them with 0,
    a band around each object with 255."""
    g = torch.Generator().manual_seed(seed)
    yy, xx = torch.meshgrid(torch.linspace(0, 1, crop), torch.linspace(0, 1, crop), indexing="ij")
    images = torch.empty(batch, 3, crop, crop)
    seeds = torch.zeros(batch, crop, crop, dtype=torch.long)
    for b in range(batch):
        top, bottom = torch.rand(3, generator=g), torch.rand(3, generator=g)
        image = top[:, None, None] * (1 - yy) + bottom[:, None, None] * yy
        for j in range(1 + b % 2):
            cy, cx = (0.3 + 0.4 * torch.rand(2, generator=g)).tolist()
            ry, rx = (0.12 + 0.15 * torch.rand(2, generator=g)).tolist()
            r = ((yy - cy) / ry) ** 2 + ((xx - cx) / rx) ** 2
            colour = torch.rand(3, generator=g)
            image = torch.where(r < 1, colour[:, None, None].expand_as(image), image)
            seeds[b][(r >= 0.6) & (r < 2.0)] = 255
            seeds[b][r < 0.6] = 1 + (3 * b + 7 * j) % (num_classes - 1)
        texture = F.interpolate(torch.rand(1, 3, crop // 8, crop // 8, generator=g), size=(crop, crop),
                                mode="bilinear", align_corners=False)[0]
        images[b] = (0.9 * image + 0.1 * texture).clamp(0, 1)
    return images, seeds


def build_model(
    variant: str, args: argparse.Namespace, device: torch.device
) -> tuple[Any, torch.optim.Optimizer, dict[str, Any]]:
    """The network and its AdamW for a variant, and counts of what the step updates."""
    from wsss_kit.data.palette import VOC_CLASSES
    from wsss_weakclip.model import WeakCLIPNet

    kwargs: dict[str, Any] = dict(clip_model=args.clip, clip_weights=None if args.weights == "none" else args.weights)
    if args.preset:
        kwargs["preset"] = args.preset
    precision = args.clip_precision if variant == "ours" else args.baseline_precision
    kwargs["clip_precision"] = precision
    torch.manual_seed(0)
    model = WeakCLIPNet(("background", *VOC_CLASSES), **kwargs).to(device).train()
    groups = [g for g in model.param_groups(LR) if g["params"]]
    in_groups = {id(p) for g in groups for p in g["params"]}
    frozen = [p for p in model.parameters() if not p.requires_grad and id(p) not in in_groups]
    if variant == "official_like":
        # The official config: CLIP has lr multiplier 0 but requires_grad stays True, so backward
        # computes its weight gradients and AdamW keeps moments for them (decoupled weight decay
        # is lr × wd = 0: the weights never move).
        for p in frozen:
            p.requires_grad_(True)
        groups.append({"params": frozen, "lr": 0.0})
    if variant == "official_like":  # torch's AdamW, as mmcv builds it for the official config
        optimizer: torch.optim.Optimizer = torch.optim.AdamW(groups, lr=LR, weight_decay=WEIGHT_DECAY)
    else:  # what wsss_kit's trainer builds (its optimizer_impl: fused AdamW where torch has it)
        from wsss_kit.engine import TrainConfig, build_optimizer

        optimizer = build_optimizer(model, TrainConfig(steps=1, lr=LR, optimizer="adamw", weight_decay=WEIGHT_DECAY))
    counts = {
        "params_total": sum(p.numel() for p in model.parameters()),
        "params_with_grad": sum(p.numel() for p in model.parameters() if p.requires_grad),
        "params_trained": sum(p.numel() for g in groups if g.get("lr", LR) > 0 for p in g["params"]),
        "clip_precision": precision,
    }
    return model, optimizer, counts


class VariantRun:
    """One variant's network, optimizer, batch and losses; :meth:`step` runs and times one step."""

    keys = ("forward", "losses", "crf", "backward", "optimizer", "step")

    def __init__(self, variant: str, args: argparse.Namespace) -> None:
        from wsss_weakclip.losses import BalancedSeedLoss, ScoreMapLoss

        self.variant = variant
        self.device = torch.device(args.device)
        self.steps_done = 0
        self.times: dict[str, list[float]] = {k: [] for k in self.keys}
        if variant == "official":
            self._init_official(args)
            return
        self.model, self.optimizer, self.counts = build_model(variant, args, self.device)
        self.flipped = self.optimizer.param_groups[-1]["params"] if variant == "official_like" else []
        self.workers: int | str = 0 if variant == "official_like" else "auto"
        self.seed_loss, self.score_loss = BalancedSeedLoss(size=64), ScoreMapLoss()
        with torch.no_grad():  # the number of classes comes from the model's output
            probe = self.model(torch.rand(1, 3, args.crop, args.crop, device=self.device))
        self.num_classes = int(probe["logits"].shape[1])
        del probe
        images, seeds = synthetic_batch(args.batch, args.crop, self.num_classes)
        self.images, self.seeds = images.to(self.device), seeds.to(self.device)
        if variant == "official_like":
            # The encoder builds no graph when nothing upstream needs a gradient (its CLIP is
            # frozen); an input that requires one makes it run as the official code does.
            self.images.requires_grad_(True)

    def _init_official(self, args: argparse.Namespace) -> None:
        """The official segmentor and mmcv optimizer from a checkout (:mod:`benchmarks.weakclip_official`)."""
        from benchmarks import weakclip_official as wo

        if args.clip != "ViT-B-16":
            raise SystemExit(f"--official runs the official VOC config (ViT-B/16); got --clip {args.clip}")
        self.model = wo.load_official(args.official, getattr(args, "official_site", None), args.device, train=True)
        self.optimizer = wo.build_official_optimizer(self.model, args.official)
        self.num_classes = int(self.model.num_classes)
        images, seeds = synthetic_batch(args.batch, args.crop, self.num_classes)
        self.images, self.metas, self.gt = wo.official_inputs(images.to(self.device), seeds.to(self.device))
        self.flipped, self.workers = [], 0
        self.counts = {
            "params_total": sum(p.numel() for p in self.model.parameters()),
            "params_with_grad": sum(p.numel() for p in self.model.parameters() if p.requires_grad),
            "params_trained": sum(p.numel() for g in self.optimizer.param_groups if g["lr"] > 0 for p in g["params"]),
            "clip_precision": "fp32",
            "code": f"{args.official} (official hustvl/WeakCLIP, mmseg 0.19 forward_train + mmcv AdamW)",
        }

    def _step_official(self, timed: bool) -> float:
        """``forward_train`` (the losses and the CRF run inside the head: ``forward`` is the rest,
        ``losses`` and ``crf`` the CRF's share), ``_parse_losses``, backward, mmcv's AdamW."""
        from benchmarks import weakclip_official as wo

        self.sync()
        crf_before = wo.CRF_SECONDS[0]
        t0 = time.perf_counter()
        loss, _ = self.model._parse_losses(self.model.forward_train(self.images, self.metas, self.gt))
        self.sync()
        t2 = time.perf_counter()
        crf_time = wo.CRF_SECONDS[0] - crf_before
        return self._update(loss, (t0, t2 - crf_time, t2), crf_time, timed)

    def sync(self) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)

    def step(self, timed: bool) -> float:
        from wsss_weakclip.losses import boundary_loss_from_crf, crf_targets, dsrg_probabilities

        if self.variant == "official":
            return self._step_official(timed)
        self.sync()
        t0 = time.perf_counter()
        out = self.model(self.images)
        self.sync()
        t1 = time.perf_counter()
        probs = dsrg_probabilities(out["logits"], 64)
        tc = time.perf_counter()
        q = crf_targets(probs, self.images, workers=self.workers)
        crf_time = time.perf_counter() - tc
        loss = (
            self.seed_loss(out["logits"], self.seeds)
            + boundary_loss_from_crf(probs, q)
            + SCORE_MAP_WEIGHT * self.score_loss(out["score_map"], self.seeds)
        )
        self.sync()
        return self._update(loss, (t0, t1, time.perf_counter()), crf_time, timed)

    def _update(self, loss: torch.Tensor, times: tuple[float, float, float], crf_time: float, timed: bool) -> float:
        """Backward and optimizer step after the forward (``times``: its start, the end of the
        network's forward, the end of the losses); records the split; returns the step's seconds."""
        t0, t1, t2 = times
        self.optimizer.zero_grad(set_to_none=True)
        if self.variant != "official":
            self.images.grad = None
        loss.backward()
        self.sync()
        t3 = time.perf_counter()
        self.optimizer.step()
        self.sync()
        t4 = time.perf_counter()
        if not torch.isfinite(loss):
            raise RuntimeError(f"{self.variant}: the loss is not finite at step {self.steps_done}: {loss.item()}")
        if self.steps_done == 0 and self.flipped:
            with_grad = sum(p.numel() for p in self.flipped if p.grad is not None)
            self.counts["clip_params_given_grads"] = with_grad
            if with_grad == 0:
                raise RuntimeError("official_like: no CLIP parameter received a gradient; the comparison is void")
        self.steps_done += 1
        self.last_loss = float(loss.detach())
        if timed:
            for key, value in zip(self.keys, (t1 - t0, t2 - t1, crf_time, t3 - t2, t4 - t3, t4 - t0)):
                self.times[key].append(value)
        return t4 - t0

    def summary(self) -> dict[str, Any]:
        result: dict[str, Any] = {}
        if self.times["step"]:
            result = {k: round(statistics.median(v), 4) for k, v in self.times.items()}
            result["step_min"] = round(min(self.times["step"]), 4)
            result["step_max"] = round(max(self.times["step"]), 4)
            result["steps_timed"] = len(self.times["step"])
        result["num_classes"] = self.num_classes
        result["crf_workers"] = self.workers
        result.update(self.counts)
        return result


def measure_times(variants: list[str], args: argparse.Namespace) -> dict[str, Any]:
    """Every variant in this process, their steps interleaved (one step of each per round), so
    that a machine whose load changes slows them alike; medians over the timed rounds."""
    runs = [VariantRun(v, args) for v in variants]
    for i in range(args.warmup + args.steps):
        for run in runs:
            seconds = run.step(timed=i >= args.warmup)
            print(f"  {run.variant}: step {i + 1}/{args.warmup + args.steps} {seconds:.3f} s"
                  + (" (warm-up)" if i < args.warmup else ""), file=sys.stderr, flush=True)
    return {run.variant: run.summary() for run in runs}


def measure_memory(variant: str, args: argparse.Namespace) -> dict[str, Any]:
    """One variant alone in this process: its peak RSS (and CUDA allocation) over warm-up + 1 steps."""
    run = VariantRun(variant, args)
    if run.device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(run.device)
    for _ in range(args.warmup + 1):
        run.step(timed=False)
    result = {"peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)}
    if run.device.type == "cuda":
        result["peak_cuda_allocated_mb"] = round(torch.cuda.max_memory_allocated(run.device) / 2**20)
    return result


def child_command(mode: str, args: argparse.Namespace) -> list[str]:
    cmd = [sys.executable, str(Path(__file__).resolve()), "--child", mode]
    for name in ("clip", "weights", "crop", "batch", "steps", "warmup", "device", "preset",
                 "clip_precision", "baseline_precision", "threads", "official", "official_site"):
        value = getattr(args, name, None)
        if value is not None and value != "":
            cmd += [f"--{name.replace('_', '-')}", str(value)]
    return cmd


def run_child(mode: str, args: argparse.Namespace) -> dict[str, Any]:
    print(mode, flush=True)
    proc = subprocess.run(child_command(mode, args), stdout=subprocess.PIPE, text=True, check=False)
    if proc.returncode != 0:
        raise SystemExit(f"{mode} failed (exit {proc.returncode})")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def table(results: dict[str, Any], device: str, variants: list[str], memory: bool = True) -> str:
    mem_key = "peak_cuda_allocated_mb" if device.startswith("cuda") else "peak_rss_mb"
    lines = [f"{'variant':<15}{'step s':>9}{'fwd':>8}{'losses':>8}{'(crf)':>8}{'bwd':>8}{'optim':>8}"
             f"{'grad params':>13}{'peak MB':>9}"]
    for variant in variants:
        r = results[variant]
        lines.append(f"{variant:<15}{r['step']:>9.3f}{r['forward']:>8.3f}{r['losses']:>8.3f}{r['crf']:>8.3f}"
                     f"{r['backward']:>8.3f}{r['optimizer']:>8.3f}{r['params_with_grad'] / 1e6:>12.1f}M"
                     f"{r[mem_key] if memory else '-':>9}")
    return "\n".join(lines)


def one_step_equality(variants: list[str], args: argparse.Namespace) -> dict[str, Any]:
    """Every variant built from the same weights takes one step on the same batch with the same
    random stream (dropout, drop path): the largest difference of its loss and of every trained
    parameter after the step from ``official_like``'s (0 up to float rounding for ``ours_fp32``;
    bf16 ``ours`` differs by its precision), and whether the frozen CLIP weights stayed put."""
    runs = {v: VariantRun(v, args) for v in variants if v != "official"}
    for run in runs.values():
        torch.manual_seed(1)
        run.step(timed=False)
    ref = runs["official_like"]
    ref_params = dict(ref.model.named_parameters())
    out: dict[str, Any] = {"loss": {v: r.last_loss for v, r in runs.items()}}
    for v, run in runs.items():
        if v == "official_like":
            continue
        trained = [(n, p) for n, p in run.model.named_parameters() if p.requires_grad]
        out.setdefault("max_loss_difference", {})[v] = abs(run.last_loss - ref.last_loss)
        out.setdefault("max_update_difference", {})[v] = max(
            float((p.detach() - ref_params[n].detach()).abs().max()) for n, p in trained)
        out.setdefault("trained_tensors", {})[v] = len(trained)
    # official_like's CLIP weights got gradients and AdamW moments, yet stay equal to the untouched ones
    other = dict(runs[[v for v in runs][-1]].model.named_parameters())
    flipped = {id(p) for p in ref.flipped}
    out["official_like_clip_unchanged"] = all(torch.equal(p, other[n]) for n, p in ref_params.items()
                                              if id(p) in flipped)
    return out


def official_equality(args: argparse.Namespace) -> dict[str, Any]:
    """The official segmentor (random weights) and ``WeakCLIPNet`` built from its state dict
    (:func:`wsss_weakclip.official_clip.clip_from_official` + :func:`~wsss_weakclip.convert.load_official_checkpoint`,
    CLIP in fp32) take one step on the same batch, both in eval mode (dropout and drop path off:
    their random streams differ; the norm layers then use their running statistics in both): each
    loss term, the gradients of every trained tensor (largest difference relative to the tensor's
    largest gradient), and the parameters after one AdamW step. AdamW's first step moves every
    element by ``lr · g / (|g| + eps)``, about ``± lr`` whatever ``|g|``, so elements whose gradient
    is within rounding of 0 may move differently (up to ``2 lr``): counted (difference > 1e-6), with
    the largest of their gradients relative to their tensor's largest."""
    from benchmarks import weakclip_official as wo
    from wsss_kit.data.palette import VOC_CLASSES
    from wsss_weakclip.convert import convert_official_weakclip, load_official_checkpoint
    from wsss_weakclip.losses import (
        BalancedSeedLoss,
        ScoreMapLoss,
        boundary_loss_from_crf,
        crf_targets,
        dsrg_probabilities,
    )
    from wsss_weakclip.model import WeakCLIPNet
    from wsss_weakclip.official_clip import clip_from_official

    names = ["background", *VOC_CLASSES]
    official = wo.load_official(args.official, getattr(args, "official_site", None), args.device)
    state = {k: v.detach().clone() for k, v in official.state_dict().items()}
    clip = clip_from_official(state, "ViT-B-16", precision="fp32", normalization="imagenet",
                              pos_interpolation="bilinear")
    ours = WeakCLIPNet(names, clip_model=clip, preset=args.preset or "official")
    load_official_checkpoint(ours, state, clip_check="off")
    ours.to(args.device).eval()
    off_opt = wo.build_official_optimizer(official, args.official)
    ours_opt = torch.optim.AdamW([g for g in ours.param_groups(LR) if g["params"]], lr=LR, weight_decay=WEIGHT_DECAY)
    images, seeds = synthetic_batch(args.batch, args.crop, len(names))
    images, seeds = images.to(args.device), seeds.to(args.device)
    x, metas, gt = wo.official_inputs(images, seeds)
    official_terms = official.forward_train(x, metas, gt)
    official_loss, _ = official._parse_losses(official_terms)
    out = ours(images)
    probs = dsrg_probabilities(out["logits"], 64)
    terms = {"seeding": BalancedSeedLoss(size=64)(out["logits"], seeds),
             "boundary": boundary_loss_from_crf(probs, crf_targets(probs, images, workers=0)),
             "score_map": SCORE_MAP_WEIGHT * ScoreMapLoss()(out["score_map"], seeds)}
    loss = terms["seeding"] + terms["boundary"] + terms["score_map"]
    for optimizer, value in ((off_opt, official_loss), (ours_opt, loss)):
        optimizer.zero_grad()
        value.backward()
    official_grads = convert_official_weakclip({n: p.grad for n, p in official.named_parameters()
                                                if p.grad is not None}, source="the official gradients")
    trained = {n: p for n, p in ours.named_parameters() if p.requires_grad}
    grad_rel = max(float((p.grad - official_grads[n]).abs().max()) / max(float(p.grad.abs().max()), 1e-30)
                   for n, p in trained.items())
    missing = sorted(set(trained) - set(official_grads))
    grads = {n: p.grad.detach().clone() for n, p in trained.items()}
    off_opt.step()
    ours_opt.step()
    after = convert_official_weakclip(official.state_dict(), source="the official weights after the step")
    diffs = torch.cat([(p.detach() - after[n]).abs().flatten() for n, p in trained.items()])
    # |g| of each element relative to its tensor's largest |g|: AdamW's first step is lr * g / (|g| + eps),
    # so where g is within rounding of zero the two steps can differ by up to 2 lr
    relative_g = torch.cat([(g.abs() / g.abs().max().clamp_min(1e-30)).flatten() for g in grads.values()])
    differing = diffs > 1e-6
    official_named = {"seeding": "decode.loss_seeding", "boundary": "decode.loss_boundary",
                      "score_map": "aux_identity.loss_ce"}
    return {
        "mode": "eval (no dropout / drop path), one step from the official weights, CLIP fp32",
        "loss": {"official": float(official_loss.detach()), "ours_fp32": float(loss.detach())},
        "terms": {k: {"official": float(official_terms[official_named[k]].detach()), "ours_fp32": float(v.detach())}
                  for k, v in terms.items()},
        "max_relative_loss_difference": abs(float(loss.detach() - official_loss.detach())) / abs(float(
            official_loss.detach())),
        "trained_tensors": len(trained), "trained_tensors_without_official_gradient": missing,
        "max_relative_gradient_difference": grad_rel,
        "update_elements": int(diffs.numel()), "update_elements_differing_over_1e-6": int(differing.sum()),
        "their_largest_relative_gradient": float(relative_g[differing].max()) if bool(differing.any()) else 0.0,
        "max_update_difference": float(diffs.max()),
    }


def measure_weakclip_step(clip: str = "ViT-B-16", weights: str = "none", crop: int = 256, batch: int = 2,
                          steps: int = 5, warmup: int = 1, device: str = "cpu", preset: str = "official",
                          clip_precision: str = "auto", baseline_precision: str = "fp32", threads: int | None = 1,
                          memory: bool = True, equality: bool = True, official: str | None = None,
                          official_site: str | None = None) -> dict[str, Any]:
    """The WeakCLIP training step of ``ours`` (and ``ours_fp32``) against ``official_like`` (module
    docstring): medians of ``steps`` interleaved rounds after ``warmup`` in a child process, each
    variant's peak memory alone in its own process (``memory``), and the one-step equality of losses
    and updates (``equality``). ``official``: a checkout of hustvl/WeakCLIP, measured as the
    ``official`` variant (``official_site``: where mmcv 1.4.0 / mmseg 0.19.0 are, see
    :mod:`benchmarks.weakclip_official`), with its own one-step equality against ``ours_fp32``.
    Returns the report :func:`main` saves."""
    from benchmarks.machine import machine_info

    args = argparse.Namespace(clip=clip, weights=weights, crop=int(crop), batch=int(batch), steps=int(steps),
                              warmup=int(warmup), device=device, preset=preset, clip_precision=clip_precision,
                              baseline_precision=baseline_precision, threads=threads, official=official,
                              official_site=official_site)
    if args.steps < 1 or args.warmup < 0 or args.batch < 1 or args.crop < 32:
        raise ValueError(f"need steps >= 1, warmup >= 0, batch >= 1, crop >= 32; got steps={steps}, "
                         f"warmup={warmup}, batch={batch}, crop={crop}")
    variants = variants_for(args)
    load_before = [round(v, 2) for v in os.getloadavg()]
    results = run_child("times", args)
    equal = run_child("equality", args) if equality else None
    equal_official = run_child("official_equality", args) if equality and official else None
    if memory:
        for variant in variants:
            results[variant].update(run_child(f"memory:{variant}", args))
    ours_fp32 = results.get("ours_fp32", results["ours"])["step"]
    speedup = results["official_like"]["step"] / results["ours"]["step"]
    speedup_fp32 = results["official_like"]["step"] / ours_fp32
    reference = "official" if official else "official_like"
    headline = results[reference]["step"] / ours_fp32
    device_name = device
    if device.startswith("cuda") and torch.cuda.is_available():
        device_name = torch.cuda.get_device_name(torch.device(device))
    from wsss_kit.clip import resolve_precision

    resolved = resolve_precision(clip_precision, torch.device(device).type, vision_width(clip)) or "fp32"
    return {
        "benchmark": "weakclip_step",
        "what": "median training-step time (s) after warm-up, variants interleaved in one process; "
                "peak memory of each variant alone in its own process",
        "method": f"variants built in one process (threads={threads}), one step of each per round, "
                  f"{warmup} warm-up round(s) then median of {steps}; official_like = the official "
                  "config's waste (CLIP weights requiring grad in an lr-0 AdamW group, CRFs serial), "
                  "not the official code itself"
                  + ("; official = the official code (hustvl/WeakCLIP forward_train, mmseg 0.19, mmcv "
                     "AdamW from its VOC config) from the checkout " + str(official) if official else ""),
        "settings": {"clip": clip, "weights": weights, "crop": crop, "batch": batch, "steps": steps,
                     "warmup": warmup, "preset": preset, "clip_precision": clip_precision,
                     "clip_precision_resolved": resolved, "baseline_precision": baseline_precision,
                     "loss": "balanced_seed + crf_boundary + 0.4 score_map", "optimizer": "AdamW lr 1e-4 wd 3e-5"},
        "machine": machine_info(device=device_name, load_average_before=load_before, torch_threads=threads or
                                torch.get_num_threads()),
        "variants": results,
        "equality": equal,
        "equality_official": equal_official,
        "speedup_official_like_over_ours": round(speedup, 3),
        "speedup_official_like_over_ours_fp32": round(speedup_fp32, 3),
        **({"speedup_official_over_ours": round(results["official"]["step"] / results["ours"]["step"], 3),
            "speedup_official_over_ours_fp32": round(headline, 3)} if official else {}),
        "target_reference": reference,
        "target_speedup_fp32": 4.0,
        "meets_target_fp32": bool(headline >= 4.0),
    }


def vision_width(clip: str) -> int | None:
    """The ViT width of an open_clip architecture (``auto`` precision depends on it), ``None`` if unknown."""
    import open_clip

    from wsss_kit.clip import CONFIG_DIR

    own = Path(CONFIG_DIR) / f"{clip}.json"  # wsss_kit's architectures, registered with open_clip when loaded
    config = json.loads(own.read_text(encoding="utf-8")) if own.is_file() else open_clip.get_model_config(clip) or {}
    width = config.get("vision_cfg", {}).get("width")
    return int(width) if isinstance(width, int) else None


def variants_for(args: argparse.Namespace) -> list[str]:
    """The variants measured: ``ours_fp32`` only when ``ours`` does not already run CLIP in fp32."""
    from wsss_kit.clip import resolve_precision

    resolved = resolve_precision(args.clip_precision, torch.device(args.device).type, vision_width(args.clip))
    return [v for v in VARIANTS if not (v == "ours_fp32" and resolved in ("fp32", ""))
            and (v != "official" or getattr(args, "official", None))]


def main() -> int:
    root = str(Path(__file__).resolve().parents[1])
    if root not in sys.path:  # run as a script: ``benchmarks.machine`` lives beside it
        sys.path.insert(0, root)
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--clip", default="ViT-B-16", help="CLIP architecture (default: ViT-B-16)")
    parser.add_argument("--weights", default="none", help="'none' = random weights (no download), or a weights spec")
    parser.add_argument("--crop", type=int, default=256, help="square crop side (default 256; official 512)")
    parser.add_argument("--batch", type=int, default=2, help="images per step (default 2; official 8 per GPU)")
    parser.add_argument("--steps", type=int, default=5, help="timed steps per variant (default 5)")
    parser.add_argument("--warmup", type=int, default=1, help="untimed steps first (default 1)")
    parser.add_argument("--device", default="cpu", help="cpu or cuda (default cpu)")
    parser.add_argument("--preset", default="official", help="WeakCLIPNet preset (default official)")
    parser.add_argument("--clip-precision", default="auto",
                        help="CLIP precision of 'ours': auto (fp16 on CUDA, bf16 on CPUs with AMX, else fp32), "
                             "fp32, fp16, bf16")
    parser.add_argument("--baseline-precision", default="fp32",
                        help="CLIP precision of 'official_like' and 'ours_fp32' (default fp32)")
    parser.add_argument("--threads", type=int, default=1, help="torch.set_num_threads (default 1)")
    parser.add_argument("--no-memory", action="store_true", help="skip the per-variant memory runs")
    parser.add_argument("--official", metavar="PATH",
                        help="a checkout of hustvl/WeakCLIP: also measure the official code (variant 'official')")
    parser.add_argument("--official-site", metavar="DIR",
                        help="where mmcv 1.4.0 / mmsegmentation 0.19.0 are (python benchmarks/weakclip_official.py "
                             "--prepare DIR)")
    parser.add_argument("--results", help="output JSON (default benchmarks/results/weakclip_step_<device>.json)")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.child:  # a child process; its result is stdout's last line
        mode, _, variant = args.child.partition(":")
        variants = variants_for(args)
        result = (measure_times(variants, args) if mode == "times" else one_step_equality(variants, args)
                  if mode == "equality" else official_equality(args) if mode == "official_equality"
                  else measure_memory(variant, args))
        print(json.dumps(result))
        return 0

    report = measure_weakclip_step(clip=args.clip, weights=args.weights, crop=args.crop, batch=args.batch,
                                   steps=args.steps, warmup=args.warmup, device=args.device, preset=args.preset,
                                   clip_precision=args.clip_precision, baseline_precision=args.baseline_precision,
                                   threads=args.threads, memory=not args.no_memory, official=args.official,
                                   official_site=args.official_site)
    variants = list(report["variants"])
    print(table(report["variants"], args.device, variants, memory=not args.no_memory))
    print(f"speed ratio official_like / ours: {report['speedup_official_like_over_ours']:.2f}x"
          + (f"; official_like / ours_fp32: {report['speedup_official_like_over_ours_fp32']:.2f}x (target >= 4x)"
             if "ours_fp32" in variants else " (target >= 4x in fp32)"))
    if "speedup_official_over_ours_fp32" in report:
        print(f"speed ratio official / ours: {report['speedup_official_over_ours']:.2f}x; official / ours_fp32: "
              f"{report['speedup_official_over_ours_fp32']:.2f}x (target >= 4x)")
    if report.get("equality_official"):
        eq = report["equality_official"]
        print(f"official vs ours_fp32 from the official's weights: loss {eq['loss']}, gradients within "
              f"{eq['max_relative_gradient_difference']:.1e} (relative)")
    if report["equality"]:
        print(f"one step from the same weights: loss differences {report['equality']['max_loss_difference']}, "
              f"largest update differences {report['equality']['max_update_difference']}")
    path = Path(args.results) if args.results else RESULTS_DIR / f"weakclip_step_{args.device.split(':')[0]}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    from wsss_kit.atomic import write_text

    write_text(path, json.dumps(report, indent=2) + "\n")
    print(f"saved {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
