"""Throughput of POLE's synonym selection (`prompts/pole_synonyms`), without and with its cache.

    python benchmarks/pole_selection.py [--images 64] [--size 256] [--batch-size 32]
        [--device cpu|cuda] [--b32-weights released:clip_vit_b32_openai] [--b32-random]

On the synthetic dataset (``--images`` images of ``--size``², 1–3 classes each) with random
baseline CAMs saved as the pipeline saves them, and a 3-synonym table (POLE's m), it times
``PoleSynonyms.select_dataset``:

* uncached: every present class of every image masked, preprocessed and encoded by CLIP
  (``rebuild=True``), after a warm-up on 4 images;
* cached: a second strategy reading the finished cache file (header check included, which hashes
  the CLIP weights once).

Models: the tiny random ``wsss-tiny-clip`` always; ViT-B/32 (POLE's) with the OpenAI weights
when they are present locally (``--b32-weights``, default ``released:clip_vit_b32_openai``), or
with random weights under ``--b32-random`` (same compute, selections meaningless). Prints a table
and saves benchmarks/results/pole_selection.json. Needs ``pip install -e plugins/pole``. Never run
by the tests.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

import torch

RESULTS = Path(__file__).resolve().parent / "results"

SYNTHETIC_SYNONYMS = {
    "ball": ["sphere", "orb", "globe"],
    "box": ["crate", "carton", "case"],
    "kite": ["glider", "flyer", "windsock"],
    "boat": ["ship", "vessel", "sailboat"],
    "tree": ["oak", "pine", "plant"],
}


def make_data(images: int, size: int, cam_dir: Path):
    from wsss_kit.data import SyntheticDataset
    from wsss_kit.data.artifacts import save_cams

    data = SyntheticDataset("train", num_images=images, image_size=size, seed=0)
    gen = torch.Generator().manual_seed(0)
    for i in range(len(data)):
        sample = data[i]
        cams = torch.rand(data.num_classes, size // 4, size // 4, generator=gen) * sample["labels"][:, None, None]
        save_cams(cam_dir / f"{sample['name']}.npz", cams, sample["labels"])
    return data


def measure(clip, data, cam_dir: Path, work: Path, batch_size: int, device: str) -> dict:
    from wsss_kit.data import SyntheticDataset
    from wsss_pole.synonyms import PoleSynonyms

    def sync() -> None:
        if device == "cuda":
            torch.cuda.synchronize()

    warm = SyntheticDataset("train", num_images=4, image_size=data.image_size, seed=0)  # same first 4 images
    PoleSynonyms(SYNTHETIC_SYNONYMS, cache=work / "warm.json").select_dataset(
        warm, cam_dir, clip, batch_size=batch_size, progress=False, rebuild=True)
    cache = work / "selection.json"
    sync()
    start = time.perf_counter()
    chosen = PoleSynonyms(SYNTHETIC_SYNONYMS, cache=cache).select_dataset(
        data, cam_dir, clip, batch_size=batch_size, progress=False, rebuild=True)
    sync()
    uncached = time.perf_counter() - start
    start = time.perf_counter()
    again = PoleSynonyms(SYNTHETIC_SYNONYMS, cache=cache).select_dataset(data, cam_dir, clip, progress=False)
    cached = time.perf_counter() - start
    assert again == chosen
    masked = sum(len(v) for v in chosen.values())
    return {"uncached_images_per_second": round(len(data) / uncached, 3),
            "uncached_masked_images_per_second": round(masked / uncached, 3),
            "cached_images_per_second": round(len(data) / cached, 1),
            "uncached_seconds": round(uncached, 3), "cached_seconds": round(cached, 4),
            "images": len(data), "masked_images": masked, "cache_bytes": cache.stat().st_size}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", type=int, default=64)
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--b32-weights", default="released:clip_vit_b32_openai",
                        help="ViT-B/32 weights (a local file or released:...); skipped when absent")
    parser.add_argument("--b32-random", action="store_true",
                        help="time ViT-B/32 with random weights when the real ones are absent")
    parser.add_argument("--results", help="output JSON (default: results/pole_selection.json)")
    args = parser.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from wsss_kit import WeightsError
    from wsss_kit.atomic import write_text
    from wsss_kit.clip import TINY_CLIP, load_clip

    rows: dict[str, dict] = {}
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        cam_dir = work / "cams"
        data = make_data(args.images, args.size, cam_dir)
        torch.manual_seed(0)
        models = {TINY_CLIP: lambda: (load_clip(TINY_CLIP, device=args.device), "random initialisation")}

        def b32():
            try:
                return load_clip("ViT-B-32", weights=args.b32_weights, device=args.device), str(args.b32_weights)
            except WeightsError as exc:
                if not args.b32_random:
                    raise
                print(f"ViT-B-32: {exc}; timing random weights instead", file=sys.stderr)
                return load_clip("ViT-B-32", device=args.device), "random initialisation (timing only)"

        models["ViT-B-32"] = b32
        for name, build in models.items():
            try:
                clip, weights = build()
            except WeightsError as exc:
                rows[name] = {"skipped": str(exc)}
                print(f"{name:<16} skipped: weights not present locally (pass --b32-random to time random weights)")
                continue
            rows[name] = {"weights": weights, "input_size": list(clip.image_size),
                          **measure(clip, data, cam_dir, work / name, args.batch_size, args.device)}
            r = rows[name]
            print(f"{name:<16} uncached {r['uncached_images_per_second']:>9.2f} img/s "
                  f"({r['uncached_masked_images_per_second']:.2f} masked img/s)   "
                  f"cached {r['cached_images_per_second']:>10.1f} img/s   [{weights}]")
    device_name = torch.cuda.get_device_name() if args.device == "cuda" else platform.processor() or "cpu"
    record = {"dataset": {"name": "synthetic", "images": args.images, "size": args.size, "synonyms_per_class": 3},
              "batch_size": args.batch_size, "device": args.device, "device_name": device_name,
              "cpus": os.cpu_count(), "torch_threads": torch.get_num_threads(),
              "load_average": list(os.getloadavg()), "results": rows}
    out = Path(args.results or RESULTS / "pole_selection.json")
    write_text(out, json.dumps(record, indent=2) + "\n")
    print(f"saved {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
