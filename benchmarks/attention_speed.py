"""Fused attention against open_clip's own blocks: a ViT-B/16 image tower forward, before and after.

    python benchmarks/attention_speed.py [--arch ViT-B-16] [--batches 1,8] [--sizes 224,512] [--rounds 5]
        [--warmup 1] [--threads 1] [--grad] [--grad-sizes 224] [--device cpu|cuda]
        [--out benchmarks/results/attention_speed.json]

Builds the open_clip architecture at random weights (the cost does not depend on them) and times
the image tower's forward as wsss_kit runs it (``wsss_kit.clip.image``: patch embedding with the
position embedding resized to the input's grid, the blocks, ``ln_post`` and the projection of the
CLS token; ``torch.no_grad``, eval mode) in two variants on the same weights and inputs:

* ``native``: open_clip's ``ResidualAttentionBlock`` as shipped (``nn.MultiheadAttention``,
  batch-first: PyTorch's native MHA fast path, which on CPU runs ``QKᵀ``, softmax and ``AV`` apart);
* ``fused``: the same blocks after :func:`wsss_kit.attention.fuse_attention` (what
  ``wsss_kit.clip.CLIPModel`` runs): one ``in_proj`` and ``scaled_dot_product_attention``.

``--sizes``: input sides (224 = CLIP's native input, 197 tokens; 512 = WeakCLIP's sliding windows,
1025 tokens, where attention is a larger part of the cost). ``--grad`` also times forward + backward
to the input images (the frozen-CLIP training losses of CLIMS/POLE) at ``--grad-sizes``, where
``nn.MultiheadAttention`` leaves the fast path for ``F.multi_head_attention_forward``.

Rounds are interleaved (one pass of each variant per round, so that a loaded machine slows both
alike); the median over ``--rounds`` after ``--warmup`` is reported with the min and max, the
median of the per-round ratios native/fused (both passes of a round see about the same load), the
median process CPU time of each (with ``--threads 1`` the most robust figure on a shared machine:
time spent waiting for a core does not count; ``cpu speed-up`` is its ratio) and the largest absolute
output difference between the variants. Prints a
table and saves the JSON (atomically). Never run by the tests.
"""

from __future__ import annotations

import argparse
import copy
import json
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import torch
from torch import nn

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_OUT = ROOT / "benchmarks" / "results" / "attention_speed.json"


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def tower_forward(tower: nn.Module, images: torch.Tensor) -> torch.Tensor:
    """Pooled embeddings ``(B, E)`` of images ``(B, 3, H, W)`` at any size (CLIPModel.encode_image's path)."""
    from wsss_kit.clip.image import embed_patches, pool_and_project, run_blocks

    tokens, _ = embed_patches(tower, images)
    tokens, _ = run_blocks(tower, tokens)
    return pool_and_project(tower, tokens)[0]


def _pass(tower: nn.Module, images: torch.Tensor, grad: bool) -> torch.Tensor:
    if not grad:
        with torch.no_grad():
            return tower_forward(tower, images)
    x = images.detach().requires_grad_(True)
    out = tower_forward(tower, x)
    out.float().square().sum().backward()
    return out.detach()


def time_variants(variants: dict[str, nn.Module], images: torch.Tensor, rounds: int, warmup: int,
                  grad: bool) -> dict[str, Any]:
    """Interleaved timing of ``variants`` on ``images``: per variant the seconds of each measured round."""
    device = images.device
    times: dict[str, list[float]] = {name: [] for name in variants}
    cpu: dict[str, list[float]] = {name: [] for name in variants}
    outputs: dict[str, torch.Tensor] = {}
    for r in range(warmup + rounds):
        for name, tower in variants.items():
            _sync(device)
            start, start_cpu = time.perf_counter(), time.process_time()
            out = _pass(tower, images, grad)
            _sync(device)
            if r >= warmup:
                times[name].append(time.perf_counter() - start)
                cpu[name].append(time.process_time() - start_cpu)
            outputs[name] = out
    ref = outputs["native"]
    diff = {name: float((out - ref).abs().max()) for name, out in outputs.items()}
    return {name: {"median_s": statistics.median(ts), "min_s": min(ts), "max_s": max(ts), "runs_s": ts,
                   "cpu_median_s": statistics.median(cpu[name]), "cpu_runs_s": cpu[name],
                   "max_abs_diff_vs_native": diff[name]} for name, ts in times.items()}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--arch", default="ViT-B-16", help="open_clip architecture (random weights)")
    parser.add_argument("--batches", default="1,8", help="comma-separated batch sizes")
    parser.add_argument("--sizes", default="224,512", help="comma-separated input sides in pixels")
    parser.add_argument("--grad-sizes", default="224", help="input sides timed with --grad")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--threads", type=int, default=1, help="torch intra-op threads")
    parser.add_argument("--grad", action="store_true", help="also time forward + backward to the images")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    args = parser.parse_args(argv)
    if args.rounds < 1 or args.warmup < 0:
        parser.error("--rounds must be >= 1 and --warmup >= 0")
    batches = [int(b) for b in args.batches.split(",") if b.strip()]
    sizes = [int(v) for v in args.sizes.split(",") if v.strip()]
    grad_sizes = [int(v) for v in args.grad_sizes.split(",") if v.strip()] if args.grad else []

    from benchmarks.machine import machine_info
    from wsss_kit.atomic import write_text
    from wsss_kit.attention import fuse_attention
    from wsss_kit.clip.loading import build_open_clip_model

    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    device = torch.device(args.device)
    model, _, _ = build_open_clip_model(args.arch)
    native = model.visual.to(device).eval()
    fused = copy.deepcopy(native)
    switched = fuse_attention(fused)
    variants = {"native": native, "fused": fused}
    cases = [("forward", size) for size in sizes] + [("forward_backward", size) for size in grad_sizes]
    results: list[dict[str, Any]] = []
    print(f"{args.arch} image tower, {args.threads} thread(s), {device}, {switched} blocks fused; "
          f"median of {args.rounds} interleaved rounds")
    print(f"{'mode':<17} {'size':>4} {'batch':>5} {'native s':>9} {'fused s':>9} {'speed-up':>8} "
          f"{'paired':>7} {'native cpu':>9} {'fused cpu':>9} {'cpu':>8} {'max |diff|':>10}")
    for mode, size in cases:
        for batch in batches:
            images = torch.randn(batch, 3, size, size, device=device)
            timed = time_variants(variants, images, args.rounds, args.warmup, grad=mode != "forward")
            ratio = timed["native"]["median_s"] / timed["fused"]["median_s"]
            paired = statistics.median(a / b for a, b in zip(timed["native"]["runs_s"], timed["fused"]["runs_s"]))
            cpu_ratio = timed["native"]["cpu_median_s"] / timed["fused"]["cpu_median_s"]
            results.append({"mode": mode, "size": size, "batch": batch, "speedup": ratio,
                            "paired_speedup": paired, "cpu_speedup": cpu_ratio, **timed})
            print(f"{mode:<17} {size:>4} {batch:>5} {timed['native']['median_s']:>9.3f} "
                  f"{timed['fused']['median_s']:>9.3f} {ratio:>7.2f}x {paired:>6.2f}x "
                  f"{timed['native']['cpu_median_s']:>9.3f} {timed['fused']['cpu_median_s']:>9.3f} "
                  f"{cpu_ratio:>7.2f}x {timed['fused']['max_abs_diff_vs_native']:>10.2e}")
    record = {
        "what": f"open_clip {args.arch} image tower forward at random weights: open_clip's blocks (native MHA) "
                f"vs wsss_kit.attention.fuse_attention (SDPA)",
        "method": f"interleaved rounds, median of {args.rounds} after {args.warmup} warm-up, torch.no_grad "
                  f"(forward) / backward to the images (forward_backward), eval mode",
        "arch": args.arch, "sizes": sizes, "threads": args.threads, "device": str(device),
        "fused_blocks": switched, "results": results,
        "machine": machine_info(),
        "command": " ".join(["python", "benchmarks/attention_speed.py", *(argv if argv is not None else sys.argv[1:])]),
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    write_text(args.out, json.dumps(record, indent=2) + "\n")
    print(f"saved {args.out}")
    return 0


if __name__ == "__main__":
    if str(ROOT) not in sys.path:
        sys.path.insert(0, str(ROOT))
    sys.exit(main())
