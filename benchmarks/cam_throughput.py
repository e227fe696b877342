"""Throughput and peak memory of CAM extraction, per CAM generator.

    python benchmarks/cam_throughput.py [--models resnet_cam,mctformer_v1,mctformer_v2]
        [--size 448] [--scales 1,0.5,1.5,2] [--images 3] [--device cpu|cuda] [--amp]

Every model is measured in its own child process (so peak memory is its own): the published
architecture (ResNet-50 at output stride 16; DeiT-S with 20 class tokens) with random weights, 20
classes all present (the worst case), one image at a time at ``size``×``size`` with the given scales
plus horizontal flip, after one warm-up image. Prints a table and saves
benchmarks/results/cam_throughput_<device>.json.
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
MODELS = {
    "resnet_cam": {"backbone": "resnet50"},
    "mctformer_v1": {"backbone": "deit_small_patch16_224"},
    "mctformer_v2": {"backbone": "deit_small_patch16_224"},
}


def cam_extractor(model_name: str, scales: tuple[float, ...], device: str, amp: bool, num_classes: int = 20,
                  backbone: str | None = None) -> Callable[[torch.Tensor], None]:
    """``one(image)``: the CAMs of one image ``(1, 3, H, W)`` at ``scales`` plus flip, every class
    present, with ``model_name`` at random weights (``backbone`` replaces the published one)."""
    import wsss_kit

    torch.manual_seed(0)
    kwargs = {**MODELS[model_name], **({"backbone": backbone} if backbone else {})}
    model = wsss_kit.create("cams", model_name, num_classes=num_classes, **kwargs).to(device).eval()
    labels = torch.ones(1, num_classes, device=device)
    dtype = torch.bfloat16 if device == "cpu" else torch.float16

    def one(image: torch.Tensor) -> None:
        with torch.no_grad(), torch.autocast(device_type=device, dtype=dtype, enabled=amp):
            model.cams(image, labels, scales=scales, flip=True)
        if device == "cuda":
            torch.cuda.synchronize()

    return one


def measure(model_name: str, size: int, scales: tuple[float, ...], images: int, device: str, amp: bool) -> dict:
    one = cam_extractor(model_name, scales, device, amp)
    batch = torch.rand(images + 1, 1, 3, size, size, device=device)
    if device == "cuda":
        torch.cuda.reset_peak_memory_stats()

    one(batch[0])  # warm-up: allocator, kernels, thread pools
    start = time.perf_counter()
    for i in range(1, images + 1):
        one(batch[i])
    seconds = time.perf_counter() - start
    result = {"images_per_second": round(images / seconds, 4), "seconds_per_image": round(seconds / images, 3),
              "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)}
    if device == "cuda":
        result["peak_cuda_mb"] = round(torch.cuda.max_memory_allocated() / 2**20)
    return result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", default=",".join(MODELS))
    parser.add_argument("--size", type=int, default=448)
    parser.add_argument("--scales", default="1,0.5,1.5,2")
    parser.add_argument("--images", type=int, default=3, help="timed images per model (after one warm-up)")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--amp", action="store_true", help="autocast (bf16 on CPU, fp16 on CUDA)")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--results", help="output JSON (default: results/cam_throughput_<device>.json)")
    args = parser.parse_args()
    scales = tuple(float(s) for s in args.scales.split(","))
    if args.child:
        print(json.dumps(measure(args.child, args.size, scales, args.images, args.device, args.amp)))
        return 0
    models = [m.strip() for m in args.models.split(",") if m.strip()]
    unknown = sorted(set(models) - set(MODELS))
    if unknown:
        parser.error(f"unknown model(s) {unknown}; choose from {', '.join(MODELS)}")
    rows = {}
    load_before = [round(x, 2) for x in os.getloadavg()]
    if load_before[0] > 1.0:
        print(f"note: load average {load_before[0]} before measuring; other processes share the CPU", file=sys.stderr)
    for name in models:
        cmd = [sys.executable, __file__, "--child", name, "--size", str(args.size), "--scales", args.scales,
               "--images", str(args.images), "--device", args.device] + (["--amp"] if args.amp else [])
        proc = subprocess.run(cmd, capture_output=True, text=True, env=dict(os.environ, HF_HUB_OFFLINE="1"))
        if proc.returncode != 0:
            print(proc.stderr, file=sys.stderr)
            raise SystemExit(f"{name}: measurement failed (exit code {proc.returncode})")
        rows[name] = json.loads(proc.stdout.strip().splitlines()[-1])
        print(f"{name:<14} {rows[name]['images_per_second']:>8.3f} img/s  {rows[name]['seconds_per_image']:>7.2f} s/img"
              f"  peak RSS {rows[name]['peak_rss_mb']:>6} MB"
              + (f"  peak CUDA {rows[name]['peak_cuda_mb']} MB" if "peak_cuda_mb" in rows[name] else ""))
    from wsss_kit.atomic import write_text

    device_name = torch.cuda.get_device_name() if args.device == "cuda" else platform.processor() or "cpu"
    record = {"size": args.size, "scales": list(scales), "flip": True, "classes_present": 20, "amp": args.amp,
              "device": args.device, "device_name": device_name, "cpus": os.cpu_count(),
              "load_average_before": load_before,
              "torch_threads": torch.get_num_threads(), "results": rows}
    out = Path(args.results or RESULTS / f"cam_throughput_{args.device}{'_amp' if args.amp else ''}.json")
    write_text(out, json.dumps(record, indent=2) + "\n")
    print(f"saved {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
