"""Dense CRF per image by backend: pydensecrf (the reference) against the torch permutohedral CRF.

    python benchmarks/crf_speed.py [--rounds 5] [--warmup 1] [--threads 1] [--devices cpu[,cuda]]
        [--sizes voc,small] [--batch 4] [--out benchmarks/results/crf_speed.json]

Sizes: ``voc`` = 375 × 500, 21 classes, 10 mean-field iterations (a VOC image; the ``default``
parameter set, Gaussian 3/3 and bilateral 80/13/10); ``small`` = 64 × 64, 21 classes (the WeakCLIP
boundary-loss grid). The image is scikit-image's ``astronaut`` resized (a synthetic scene of
textured discs when scikit-image is missing); the unaries are CAM-like (blurred, noisy class
evidence from the image's colour clusters), so the CRF moves labels as on real data.

Per size the variants are timed in interleaved rounds (one pass each per round, so that a loaded
machine slows all alike): ``pydensecrf`` (one image in this process; a pool of ``W`` worker
processes gives about ``W`` times its images/s on ``W`` idle cores; ``pydensecrf/pool<W>`` times
it: ``2 W`` images through :class:`~wsss_kit.crf.CRFPool`), ``torch/<device>`` (one image)
and ``torch/<device>/batch<B>`` (``B`` images in one call; the time is per image). The median,
min and max seconds per image over ``--rounds`` after ``--warmup`` are reported, with the ratio
pydensecrf / variant (> 1: faster than the reference; of the medians, and the median of the
per-round ratios) and the label agreement with pydensecrf.
CUDA variants run only where CUDA is available; the record says which devices ran. Prints a table
and saves the JSON (atomically). Never run by the tests.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_OUT = ROOT / "benchmarks" / "results" / "crf_speed.json"
SIZES = {"voc": (375, 500, 21), "small": (64, 64, 21)}
PARAMS = "default"


def scene(h: int, w: int, k: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray, str]:
    """``uint8 (h, w, 3)`` image, ``float32 (k, h, w)`` CAM-like probabilities and the image's source."""
    from scipy import ndimage

    rng = np.random.default_rng(seed)
    try:
        from skimage import data, transform

        img = (transform.resize(data.astronaut(), (h, w), anti_aliasing=True) * 255).round().astype(np.uint8)
        source = "skimage.data.astronaut resized"
    except ImportError:
        yy, xx = np.mgrid[0:h, 0:w]
        lab = np.zeros((h, w), int)
        for c in range(1, 8):
            cy, cx, r = rng.uniform(0, h), rng.uniform(0, w), rng.uniform(h / 8, h / 3)
            lab[(yy - cy) ** 2 + (xx - cx) ** 2 < r * r] = c
        img = np.clip(rng.integers(0, 256, (8, 3))[lab] + rng.normal(0, 15, (h, w, 3)), 0, 255).astype(np.uint8)
        source = "synthetic textured discs"
    centres = img.reshape(-1, 3)[rng.choice(h * w, k, replace=False)].astype(float)
    lab = ((img[None].astype(float) - centres[:, None, None]) ** 2).sum(-1).argmin(0)
    evidence = np.eye(k)[lab].transpose(2, 0, 1) * 2.0
    sigma = max(1.0, min(h, w) / 40)
    logits = ndimage.gaussian_filter(evidence + rng.normal(0, 1.0, evidence.shape), (0, 2 * sigma, 2 * sigma))
    p = np.exp(3 * logits)
    return img, (p / p.sum(0)).astype(np.float32), source


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def variants(img: np.ndarray, probs: np.ndarray, devices: list[torch.device], batch: int,
             pool: Any = None) -> dict[str, tuple[Callable[[], np.ndarray], int, torch.device]]:
    """name → (a pass returning the first image's marginals, images per pass, device)."""
    from wsss_kit.crf import dense_crf, dense_crf_torch, get_params

    out: dict[str, tuple[Callable[[], np.ndarray], int, torch.device]] = {
        "pydensecrf": (lambda: dense_crf(img, probs, PARAMS), 1, torch.device("cpu"))}
    if pool is not None:  # the reference as the toolkit runs it: worker processes, 2 images per worker
        n = 2 * pool.workers
        settings = get_params(PARAMS).as_tuple()
        out[f"pydensecrf/pool{pool.workers}"] = (lambda: pool.map([img] * n, [probs] * n, settings)[0], n,
                                                 torch.device("cpu"))
    for dev in devices:
        rgb = torch.from_numpy(img).permute(2, 0, 1)[None].to(dev)
        p = torch.from_numpy(probs)[None].to(dev)

        def one(rgb: torch.Tensor = rgb, p: torch.Tensor = p) -> np.ndarray:
            return dense_crf_torch(p, rgb, PARAMS)[0].cpu().numpy()

        out[f"torch/{dev.type}"] = (one, 1, dev)
        if batch > 1:
            rgb_b, p_b = rgb.expand(batch, -1, -1, -1).contiguous(), p.expand(batch, -1, -1, -1).contiguous()

            def many(rgb: torch.Tensor = rgb_b, p: torch.Tensor = p_b) -> np.ndarray:
                return dense_crf_torch(p, rgb, PARAMS)[0].cpu().numpy()

            out[f"torch/{dev.type}/batch{batch}"] = (many, batch, dev)
    return out


def measure(size: str, devices: list[torch.device], batch: int, rounds: int, warmup: int,
            pool: Any = None) -> dict[str, Any]:
    """One size: per variant the seconds per image, speed-up and agreement (see the module docstring)."""
    h, w, k = SIZES[size]
    img, probs, source = scene(h, w, k)
    runs = variants(img, probs, devices, batch, pool)
    times: dict[str, list[float]] = {name: [] for name in runs}
    results: dict[str, np.ndarray] = {}
    for r in range(warmup + rounds):
        for name, (fn, n, dev) in runs.items():
            _sync(dev)
            start = time.perf_counter()
            results[name] = fn()
            _sync(dev)
            if r >= warmup:
                times[name].append((time.perf_counter() - start) / n)
    ref = results["pydensecrf"]
    ref_median = statistics.median(times["pydensecrf"])
    pool_name = next((name for name in times if name.startswith("pydensecrf/pool")), None)
    rows = {}
    for name, secs in times.items():
        median = statistics.median(secs)
        rows[name] = {
            "seconds_per_image": {"median": round(median, 4), "min": round(min(secs), 4), "max": round(max(secs), 4)},
            "images_per_second": round(1 / median, 3),
            "speedup_vs_pydensecrf": round(ref_median / median, 3),
            # per-round ratios: both passes of a round see about the same load
            "speedup_median_of_rounds": round(statistics.median(
                a / b for a, b in zip(times["pydensecrf"], secs)), 3),
            "label_agreement_with_pydensecrf": round(float((results[name].argmax(0) == ref.argmax(0)).mean()), 6),
            **({f"speedup_vs_{pool_name}": round(statistics.median(times[pool_name]) / median, 3)}
               if pool_name else {}),
            "max_abs_marginal_difference": float(np.abs(results[name] - ref).max()),
        }
    changed = float((ref.argmax(0) != probs.argmax(0)).mean())
    return {"height": h, "width": w, "classes": k, "iterations": 10, "params": PARAMS, "image": source,
            "pixels_relabelled_by_the_crf": round(changed, 4), "variants": rows}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--threads", type=int, default=1, help="torch intra-op threads (pydensecrf uses one)")
    parser.add_argument("--devices", default="cpu,cuda", help="torch backend devices; cuda is skipped without CUDA")
    parser.add_argument("--sizes", default="voc,small")
    parser.add_argument("--batch", type=int, default=4, help="images per torch call in the batched variant")
    parser.add_argument("--pool-workers", type=int, default=2,
                        help="also time pydensecrf in a pool of this many worker processes (0: not)")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    args = parser.parse_args(argv)
    sys.path.insert(0, str(ROOT))
    from benchmarks.machine import machine_info
    from wsss_kit.atomic import write_text
    from wsss_kit.crf import CRFPool

    torch.set_num_threads(args.threads)
    wanted = [d.strip() for d in args.devices.split(",") if d.strip()]
    devices = [torch.device(d) for d in wanted if d != "cuda" or torch.cuda.is_available()]
    sizes = [s.strip() for s in args.sizes.split(",") if s.strip()]
    unknown = [s for s in sizes if s not in SIZES]
    if unknown:
        parser.error(f"unknown sizes {unknown}; valid: {', '.join(SIZES)}")
    record: dict[str, Any] = {
        "what": "dense CRF seconds per image by backend (median of interleaved rounds)",
        "rounds": args.rounds, "warmup": args.warmup, "batch": args.batch, "pool_workers": args.pool_workers,
        "devices_run": [str(d) for d in devices],
        "gpu_note": None if torch.cuda.is_available() else
        "no GPU on this machine: torch figures are CPU only; the GPU goal (20x pydensecrf on 2 cores) is unmeasured",
        "machine": machine_info(omp_num_threads=os.environ.get("OMP_NUM_THREADS")),
        "sizes": {},
    }
    print(f"{'size':<6} {'variant':<22} {'s/image':>9} {'img/s':>8} {'x pydensecrf':>13} {'agree':>8}")
    pool = CRFPool(args.pool_workers) if args.pool_workers > 0 else None
    try:
        for size in sizes:
            result = measure(size, devices, args.batch, args.rounds, args.warmup, pool)
            record["sizes"][size] = result
            for name, row in result["variants"].items():
                print(f"{size:<6} {name:<22} {row['seconds_per_image']['median']:>9.4f} "
                      f"{row['images_per_second']:>8.2f} {row['speedup_vs_pydensecrf']:>13.2f} "
                      f"{row['label_agreement_with_pydensecrf']:>8.4f}")
    finally:
        if pool is not None:
            pool.close()
    record["machine"]["load_average_end"] = machine_info()["load_average"]
    write_text(args.out, json.dumps(record, indent=2) + "\n")
    print(f"saved {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
