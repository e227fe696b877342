"""WeakCLIP on the procedural dataset: pseudo-mask quality against the seeds and dense CRF alone, and
pseudo-mask throughput of the full official inference.

    python benchmarks/weakclip_synthetic.py [--out DIR] [--quick] [--vitb-images N] [--set KEY=VALUE ...]

1. Quality. ``wsss run benchmarks/weakclip/synthetic.yaml`` up to ``pseudo_masks`` (resnet_cam seeds
   → WeakCLIP with a random-weight tiny CLIP, a few hundred steps), then, on the same CAMs and seeds
   (copied stages, same fingerprints), the ``dense_crf`` refiner alone: on the CAMs (the demo's
   refiner, PSA parameters, background at the seed threshold) and on the seed masks. mIoU on the
   training split (how pseudo masks are reported) and on the held-out split.
2. Throughput of the full official pseudo-mask inference (6 ratios of the (2048, 512) scale, flip,
   sliding windows 512 / 341, averaged softmax, CRF ``weakclip_voc``): images/s with the tiny CLIP
   on synthetic 128-px images (blown up to 512-896 px by the (2048, 512) fitting), and with a
   random-weight ViT-B/16 on ``--vitb-images`` synthetic 375×500 images (VOC's usual size: 52
   windows per image), each with the time split into network and CRF.

Writes benchmarks/results/weakclip_synthetic.json. The mIoU says nothing about WeakCLIP with
OpenAI's CLIP (random weights have no language prior); it checks that the refiner trains end to end
and what it makes of the seeds.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
import time
from pathlib import Path

import torch

from wsss_kit.atomic import write_text
from wsss_kit.config import apply_overrides
from wsss_kit.data.synthetic import SyntheticDataset
from wsss_kit.pipeline import run_pipeline

from machine import machine_info  # sibling modules (benchmarks/ is on sys.path)
from pipeline_runs import add_run_arguments, benchmark_config, copy_upstream, miou

HERE = Path(__file__).resolve().parent
CONFIG = HERE / "weakclip" / "synthetic.yaml"
RESULTS = HERE / "results" / "weakclip_synthetic.json"
QUICK = ["data.train.num_images=48", "data.eval.num_images=16", "cam.train.steps=60", "refiner_train.steps=40"]
OFFICIAL_INFERENCE = dict(scales=(0.5, 0.75, 1.0, 1.25, 1.5, 1.75), base_size=(2048, 512), flip=True,
                          window=512, stride=341, crf="weakclip_voc")


def quality(cfg: dict, out: Path) -> dict:
    stages = ["train_cam", "cams", "seeds", "train_refiner", "pseudo_masks"]
    start = time.perf_counter()
    weak = run_pipeline(cfg, out / "weakclip", stages=stages)
    wall = time.perf_counter() - start
    result = {
        "seeds": {**miou(weak, "seeds"), "bg_threshold": weak["seeds"]["bg_threshold"]},
        "cams_best_threshold": miou(weak, "cams"),
        "weakclip": {**miou(weak, "pseudo_masks"), "train_steps": weak["train_refiner"]["steps"],
                     "final_loss": weak["train_refiner"]["final_loss"]},
        "seconds": {s: weak[s].get("wall_seconds") for s in stages},
        "wall_seconds": round(wall, 1),
    }
    log = (out / "weakclip" / "train_refiner" / "log.csv").read_text().splitlines()
    header = log[0].split(",")
    first, last = (dict(zip(header, row.split(","))) for row in (log[1], log[-1]))
    result["weakclip"]["loss_terms_first_last"] = {
        k: [round(float(first[k]), 4), round(float(last[k]), 4)] for k in ("loss", "seed", "boundary", "score_map")}
    for name, refiner, extra in (
        ("dense_crf_on_cams", "{type: refiners/dense_crf, params: psa, bg_threshold: auto}", []),
        ("dense_crf_on_seeds", "{type: refiners/dense_crf, params: psa}", ["pseudo_masks.input=seeds"]),
    ):
        copy_upstream(out / "weakclip", out / name)
        variant = apply_overrides(cfg, [f"refiner={refiner}", "refiner_train=null", "refiner_augment=null"] + extra)
        start = time.perf_counter()
        stages_done = run_pipeline(variant, out / name, stages=stages)
        result[name] = {**miou(stages_done, "pseudo_masks"), "seconds": round(time.perf_counter() - start, 1)}
    return result


def throughput(refiner, images: torch.Tensor, what: str, warm_up: bool = True) -> dict:
    """Images/s of ``refiner.refine`` one image at a time, with the network / CRF split."""
    from wsss_weakclip import inference

    crf_seconds = [0.0]
    crf = inference.crf_over_predicted_classes

    def timed_crf(*args, **kwargs):
        t = time.perf_counter()
        try:
            return crf(*args, **kwargs)
        finally:
            crf_seconds[0] += time.perf_counter() - t

    calls = {"text": 0}
    prompt_forward = refiner.net.prompt.forward

    def counted(*args, **kwargs):
        calls["text"] += 1
        return prompt_forward(*args, **kwargs)

    refiner.net.prompt.forward = counted
    import wsss_weakclip.refiner as refiner_module
    refiner_module.crf_over_predicted_classes = timed_crf
    try:
        if warm_up:
            refiner.refine(images[:1], None, None)  # warm-up: CRF workers, caches
        crf_seconds[0], calls["text"] = 0.0, 0
        refiner.net.clear_text_cache()
        start = time.perf_counter()
        for i in range(images.shape[0]):
            refiner.refine(images[i:i + 1], None, None)
        seconds = time.perf_counter() - start
    finally:
        refiner_module.crf_over_predicted_classes = crf
        refiner.net.prompt.forward = prompt_forward
    n = images.shape[0]
    return {"what": what, "images": n, "image_size": list(images.shape[-2:]),
            "images_per_second": round(n / seconds, 4), "seconds_per_image": round(seconds / n, 2),
            "crf_seconds_per_image": round(crf_seconds[0] / n, 3),
            "network_seconds_per_image": round((seconds - crf_seconds[0]) / n, 2),
            "text_encodings": calls["text"]}


def inference_speed(node: dict, trained: Path | None, vitb_images: int) -> list[dict]:
    """``node``: the config's refiner node (the tiny model as trained); its inference settings are
    replaced by the official ones."""
    from wsss_weakclip.refiner import WeakCLIPRefiner

    names = SyntheticDataset.class_names
    rows = []
    torch.manual_seed(0)  # the seed the pipeline built it with: the same random CLIP
    settings = {k: v for k, v in node.items() if k != "type"}
    tiny = WeakCLIPRefiner(class_names=names, **{**settings, **OFFICIAL_INFERENCE}).eval()
    if trained is not None:
        tiny.load_weights(trained)
    ds = SyntheticDataset(split="test", num_images=4)
    images = torch.stack([ds[i]["image"] for i in range(len(ds))])
    rows.append(throughput(tiny, images, "tiny CLIP (trained on the synthetic seeds), 128-px images"))
    if vitb_images > 0:
        torch.manual_seed(0)
        vitb = WeakCLIPRefiner(class_names=names, clip_model="ViT-B-16", clip_weights=None,
                               **OFFICIAL_INFERENCE).eval()
        ds = SyntheticDataset(split="test", num_images=vitb_images, image_size=(375, 500))
        images = torch.stack([ds[i]["image"] for i in range(len(ds))])
        rows.append(throughput(vitb, images,
                               "ViT-B/16 random weights, 375x500 images (52 windows each)", warm_up=False))
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_run_arguments(parser, RESULTS)
    parser.add_argument("--vitb-images", type=int, default=2, help="ViT-B/16 throughput images (0: skip)")
    parser.add_argument("--skip-quality", action="store_true", help="only the throughput part")
    args = parser.parse_args(argv)
    cfg, overrides = benchmark_config(CONFIG, args, QUICK)
    tmp = None if args.out else tempfile.mkdtemp(prefix="weakclip_synthetic_")
    out = Path(args.out or tmp)
    try:
        result: dict = {"config": str(CONFIG.relative_to(HERE.parent)), "overrides": overrides}
        if not args.skip_quality:
            result["quality_miou"] = quality(cfg, out)
            print(json.dumps(result["quality_miou"], indent=2))
        trained = out / "weakclip" / "train_refiner" / "model.pt"
        result["throughput"] = inference_speed(dict(cfg["refiner"]), trained if trained.is_file() else None,
                                               args.vitb_images)
        print(json.dumps(result["throughput"], indent=2))
    finally:
        if tmp is not None:
            shutil.rmtree(tmp, ignore_errors=True)
    result["machine"] = machine_info()
    result["peak_rss_mb"] = result["machine"]["peak_rss_mb"]
    write_text(Path(args.results), json.dumps(result, indent=2) + "\n")
    print(f"wrote {args.results}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
