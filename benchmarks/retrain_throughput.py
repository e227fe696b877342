"""Training throughput and peak memory of the retrain heads.

    python benchmarks/retrain_throughput.py [--heads smp_unet_r18,deeplab_v1_wr38,deeplab_v2_r101]
        [--crops 321,448] [--batch 2] [--steps 2] [--device cpu|cuda] [--amp]

One training step = forward, loss, backward and an SGD step with the head's own parameter groups,
the way the pipeline's train_head stage runs it: ``heads/smp`` (U-Net, ResNet-18 encoder) with
``losses/cross_entropy``; ``heads/deeplab_v1_wr38`` (the published ResNet38, 124M parameters) with
``losses/cross_entropy``; ``heads/deeplab_v2_r101`` (ResNet-101, ASPP, multi-scale inputs 1/0.5/0.75
in training) with ``losses/deeplab_msc``. Random weights, 21 classes, random images and masks at
``crop``×``crop``, ``batch`` images per step, one warm-up step then ``steps`` timed ones. Every
(head, crop) pair runs in its own child process so that its peak memory is its own (peak RSS of the
process; on CUDA also ``torch.cuda.max_memory_allocated``). Prints a table and saves
benchmarks/results/retrain_throughput_<device>.json.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import time
from pathlib import Path
from typing import Callable

import torch

RESULTS = Path(__file__).resolve().parent / "results"
NUM_CLASSES = 21
HEADS = {
    "smp_unet_r18": ({"type": "heads/smp", "arch": "Unet", "encoder_name": "resnet18"},
                     {"type": "losses/cross_entropy"}),
    "deeplab_v1_wr38": ({"type": "heads/deeplab_v1_wr38"}, {"type": "losses/cross_entropy"}),
    "deeplab_v2_r101": ({"type": "heads/deeplab_v2_r101", "train_output": "all"},
                        {"type": "losses/deeplab_msc", "loss": {"type": "losses/cross_entropy"}}),
}


def training_step(head: str, device: str, amp: bool,
                  **overrides: object) -> tuple[Callable[[torch.Tensor, torch.Tensor], None], torch.nn.Module]:
    """``(step(images, targets), model)``: one training step of ``head`` (random weights, 21 classes)
    on images ``(B, 3, H, W)`` and masks ``(B, H, W)``; ``overrides`` replace keywords of its node."""
    from wsss_kit.config import build
    from wsss_kit.engine import TrainConfig
    from wsss_kit.engine.trainer import build_optimizer

    torch.manual_seed(0)
    model_node, loss_node = HEADS[head]
    model = build({**model_node, **overrides}, "head.model", num_classes=NUM_CLASSES).to(device).train()
    loss_fn = build(loss_node, "head.loss")
    optimizer = build_optimizer(model, TrainConfig(steps=1, lr=1e-4, momentum=0.9, weight_decay=5e-4))
    dtype = torch.bfloat16 if device == "cpu" else torch.float16

    def step(images: torch.Tensor, targets: torch.Tensor) -> None:
        optimizer.zero_grad(set_to_none=True)
        with torch.autocast(device_type=device, dtype=dtype, enabled=amp):
            loss = loss_fn(model(images), targets)
        loss.float().backward()
        optimizer.step()
        if device == "cuda":
            torch.cuda.synchronize()

    return step, model


def measure(head: str, crop: int, batch: int, steps: int, device: str, amp: bool) -> dict:
    one_step, model = training_step(head, device, amp)
    images = torch.rand(steps + 1, batch, 3, crop, crop, device=device)
    targets = torch.randint(0, NUM_CLASSES, (steps + 1, batch, crop, crop), device=device)
    if device == "cuda":
        torch.cuda.reset_peak_memory_stats()

    def step(i: int) -> None:
        one_step(images[i], targets[i])

    step(0)  # warm-up: allocator, kernels, thread pools
    start = time.perf_counter()
    for i in range(1, steps + 1):
        step(i)
    seconds = time.perf_counter() - start
    result = {
        "images_per_second": round(steps * batch / seconds, 4),
        "seconds_per_step": round(seconds / steps, 3),
        "parameters_m": round(sum(p.numel() for p in model.parameters()) / 1e6, 1),
        "trainable_parameters_m": round(sum(p.numel() for p in model.parameters() if p.requires_grad) / 1e6, 1),
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024),
    }
    if device == "cuda":
        result["peak_cuda_mb"] = round(torch.cuda.max_memory_allocated() / 2**20)
    return result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--heads", default=",".join(HEADS))
    parser.add_argument("--crops", default="321,448")
    parser.add_argument("--batch", type=int, default=2)
    parser.add_argument("--steps", type=int, default=2, help="timed steps per (head, crop), after one warm-up")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--amp", action="store_true", help="autocast (bf16 on CPU, fp16 on CUDA)")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--results", help="output JSON (default: results/retrain_throughput_<device>.json)")
    args = parser.parse_args()
    crops = [int(c) for c in args.crops.split(",") if c.strip()]
    if args.child:
        head, crop = args.child.rsplit("@", 1)
        print(json.dumps(measure(head, int(crop), args.batch, args.steps, args.device, args.amp)))
        return 0
    heads = [h.strip() for h in args.heads.split(",") if h.strip()]
    unknown = sorted(set(heads) - set(HEADS))
    if unknown:
        parser.error(f"unknown head(s) {unknown}; choose from {', '.join(HEADS)}")
    load_before = [round(x, 2) for x in os.getloadavg()]
    if load_before[0] > 1.0:
        print(f"note: load average {load_before[0]} before measuring; other processes share the CPU", file=sys.stderr)
    rows: dict[str, dict[str, dict]] = {}
    for head in heads:
        for crop in crops:
            cmd = [sys.executable, __file__, "--child", f"{head}@{crop}", "--batch", str(args.batch),
                   "--steps", str(args.steps), "--device", args.device] + (["--amp"] if args.amp else [])
            proc = subprocess.run(cmd, capture_output=True, text=True, env=dict(os.environ, HF_HUB_OFFLINE="1"))
            if proc.returncode != 0:
                print(proc.stderr, file=sys.stderr)
                raise SystemExit(f"{head} at {crop}: measurement failed (exit code {proc.returncode})")
            row = json.loads(proc.stdout.strip().splitlines()[-1])
            rows.setdefault(head, {})[str(crop)] = row
            print(f"{head:<16} crop {crop:>4}  {row['images_per_second']:>8.3f} img/s  {row['seconds_per_step']:>8.2f} "
                  f"s/step  peak RSS {row['peak_rss_mb']:>6} MB"
                  + (f"  peak CUDA {row['peak_cuda_mb']} MB" if "peak_cuda_mb" in row else ""), flush=True)
    from wsss_kit.atomic import write_text

    device_name = torch.cuda.get_device_name() if args.device == "cuda" else platform.processor() or "cpu"
    record = {"batch": args.batch, "timed_steps": args.steps, "classes": NUM_CLASSES, "amp": args.amp,
              "device": args.device, "device_name": device_name, "cpus": os.cpu_count(),
              "torch_threads": torch.get_num_threads(), "load_average_before": load_before,
              "load_average_after": [round(x, 2) for x in os.getloadavg()],
              "heads": {h: {"model": HEADS[h][0], "loss": HEADS[h][1]} for h in heads}, "results": rows}
    out = Path(args.results or RESULTS / f"retrain_throughput_{args.device}{'_amp' if args.amp else ''}.json")
    write_text(out, json.dumps(record, indent=2) + "\n")
    print(f"saved {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
