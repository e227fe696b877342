"""What CLIMS's CLIP losses cost per training step: the same CAM network step with and without them.

    python benchmarks/clims_loss_cost.py [--setups tiny,b32] [--steps 5] [--warmup 1]
        [--device cpu|cuda] [--b32-batch 2] [--b32-crop 512] [--threads N]

For each setup it builds ``cams/clims`` (random weights everywhere: the cost does not depend on
them) and times optimizer steps (SGD over ``param_groups``, momentum 0.9) of four objectives on the
same batch, interleaved round by round (one step of each variant per round, so that a busy machine
slows them alike; the medians over ``--steps`` rounds after ``--warmup`` are reported):

* ``multilabel``: the baseline CAM objective (multilabel soft margin on the pooled logits), what the
  network costs without CLIMS;
* ``area_only``: CLIMS's area term alone (``reg_weight · mean(sigmoid CAMs)``): the CLIMS network
  step without any CLIP term;
* ``clims``: the full CLIMS loss (object/background matching and co-occurring background
  suppression through the frozen CLIP image encoder, plus the area term) with the fixed prompt
  "a photo of {}." (its text features are encoded once and cached);
* ``clims_coop``: the same with CoOp's learnable context (POLE Table 1), so the text encoder runs
  forward and backward every step.

Each step is split into CAM-network forward, loss (for the CLIMS variants: masking + CLIP image
encoder + text), backward and optimizer step. The CLIP cost per step is ``clims − area_only``.
POLE's own additions (per-image selected prompts, read from a cache and encoded once; 512→128→512
adapters) are negligible next to these and are not timed separately.

Setups (images are random, labels alternate 1 and 2 classes per image, VOC's mean is ~1.5):

* ``tiny``: the synthetic runs' setting (benchmarks/pole/synthetic_*.yaml): ResNet-18 at output
  stride 16 (dilated), 5 classes, crop 96, batch 8, ``wsss-tiny-clip`` (64-px input);
* ``b32``: the official setting's networks: ResNet-50 at output stride 16 (strides 2, 2, 2, 1),
  20 classes, crop 512, batch 2 (``--b32-batch``, ``--b32-crop``; the official batch is 16), CLIP
  ViT-B/32 (224-px input, random weights).

Each setup runs in its own process, so that its peak RSS (CPU; both networks, the shared CLIP and
all four variants) is its own; on CUDA the peak allocated memory is per variant. Prints a table and
saves benchmarks/results/clims_loss_cost.json. Needs ``pip install -e plugins/cams -e plugins/pole``;
never run by the tests.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from wsss_kit.atomic import write_text

RESULTS = Path(__file__).resolve().parent / "results" / "clims_loss_cost.json"
VARIANTS = ("multilabel", "area_only", "clims", "clims_coop")
SYNTHETIC_NAMES = ["ball", "box", "kite", "boat", "tree"]


def setup_kwargs(name: str, args: argparse.Namespace) -> tuple[dict[str, Any], int, int]:
    """``(cams/clims keywords, batch size, crop)`` of a setup."""
    if name == "tiny":
        kwargs = dict(num_classes=5, class_names=SYNTHETIC_NAMES, backbone="resnet18", freeze_stem=False,
                      frozen_stages=0, fixed_bn=False, dilate_last_stage=True, upsample="image",
                      clip_model="wsss-tiny-clip", clip_weights=None,
                      background=["sky", "cloud", "water", "grass", "sand"])
        return kwargs, 8, 96
    if name == "b32":
        kwargs = dict(num_classes=20, backbone="resnet50", clip_model="ViT-B-32", clip_weights=None)
        return kwargs, args.b32_batch, args.b32_crop
    raise SystemExit(f"unknown setup {name!r}; choose from tiny, b32")


def labels_for(batch: int, num_classes: int) -> torch.Tensor:
    """1, 2, 1, 2, ... classes per image (different classes per image)."""
    labels = torch.zeros(batch, num_classes)
    for i in range(batch):
        for j in range(1 + i % 2):
            labels[i, (3 * i + j) % num_classes] = 1.0
    return labels


def measure_setup(name: str, args: argparse.Namespace) -> dict[str, Any]:
    """Time the four variants on one batch, interleaved step by step (a busy machine slows them
    alike), and report the median of the timed steps."""
    import wsss_kit
    from wsss_kit.clip import load_clip

    device = torch.device(args.device)
    kwargs, batch, crop = setup_kwargs(name, args)
    images = torch.rand(batch, 3, crop, crop, generator=torch.Generator().manual_seed(0)).to(device)
    labels = labels_for(batch, kwargs["num_classes"]).to(device)
    torch.manual_seed(0)
    clip = load_clip(kwargs.pop("clip_model"), kwargs.pop("clip_weights"), device=device)  # shared, frozen
    coop = {"type": "prompts/coop", "n_ctx": 3, "init_phrase": "a photo of", "template": "{}."}
    models = {"template": wsss_kit.create("cams", "clims", **kwargs, clip_model=clip).to(device).train(),
              "coop": wsss_kit.create("cams", "clims", **kwargs, clip_model=clip, prompt=coop,
                                      prompt_lr_mult=1.0).to(device).train()}
    model_of = {"multilabel": "template", "area_only": "template", "clims": "template", "clims_coop": "coop"}
    optimizers = {v: torch.optim.SGD([g for g in models[m].param_groups(1e-3) if g["params"]], lr=1e-3,
                                     momentum=0.9, weight_decay=1e-4) for v, m in model_of.items()}

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
        if variant == "multilabel":
            loss = F.multilabel_soft_margin_loss(raw.mean(dim=(2, 3)), labels)
        elif variant == "area_only":
            loss = model.criterion.reg_weight * torch.sigmoid(raw).mean()
        else:
            loss = model.criterion(images, torch.sigmoid(raw), labels, clip=model.clip,
                                   class_text=model.class_text_features(),
                                   background_text=model.background_prompts)["loss"]
        sync()
        t2 = time.perf_counter()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        sync()
        t3 = time.perf_counter()
        opt.step()
        sync()
        t4 = time.perf_counter()
        return t1 - t0, t2 - t1, t3 - t2, t4 - t3, t4 - t0

    keys = ("cam_forward", "loss", "backward", "optimizer", "step")
    times: dict[str, dict[str, list[float]]] = {v: {k: [] for k in keys} for v in VARIANTS}
    peak_cuda: dict[str, int] = {}
    for i in range(args.warmup + args.steps):
        for variant in VARIANTS:
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

    out: dict[str, Any] = {"batch": batch, "crop": crop, "pairs": int(labels.sum()), "clip_model": clip.name,
                           "clip_image_size": list(clip.image_size), "backbone": kwargs["backbone"],
                           "variants": {}}
    for variant in VARIANTS:
        t = times[variant]
        result = {k: round(statistics.median(v), 4) for k, v in t.items()}
        result["step_min"] = round(min(t["step"]), 4)
        result["step_max"] = round(max(t["step"]), 4)
        result["trainable_params"] = sum(p.numel() for g in optimizers[variant].param_groups for p in g["params"])
        if variant in peak_cuda:
            result["peak_cuda_mb"] = round(peak_cuda[variant] / 2**20)
        out["variants"][variant] = result
    v = out["variants"]
    out["clip_cost_seconds"] = round(v["clims"]["step"] - v["area_only"]["step"], 4)
    out["clims_over_area_only"] = round(v["clims"]["step"] / v["area_only"]["step"], 3)
    out["coop_text_cost_seconds"] = round(v["clims_coop"]["step"] - v["clims"]["step"], 4)
    out["peak_rss_mb"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--setups", default="tiny,b32", help="comma-separated subset of tiny, b32")
    parser.add_argument("--steps", type=int, default=5, help="timed steps per variant (default: 5)")
    parser.add_argument("--warmup", type=int, default=1, help="untimed steps first (default: 1)")
    parser.add_argument("--device", default="cpu", help="cpu or cuda (default: cpu)")
    parser.add_argument("--b32-batch", type=int, default=2)
    parser.add_argument("--b32-crop", type=int, default=512)
    parser.add_argument("--threads", type=int, help="torch.set_num_threads (default: torch's)")
    parser.add_argument("--results", default=str(RESULTS))
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.steps < 1 or args.warmup < 0:
        parser.error("--steps must be >= 1 and --warmup >= 0")
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.child:  # one setup in this process; the result goes to stdout's last line
        print(json.dumps(measure_setup(args.child, args)))
        return 0

    setups = [s.strip() for s in args.setups.split(",") if s.strip()]
    results: dict[str, Any] = {}
    for name in setups:
        setup_kwargs(name, args)  # validate the name before spawning
        print(f"setup {name}:", flush=True)
        cmd = [sys.executable, __file__, "--child", name, "--steps", str(args.steps), "--warmup", str(args.warmup),
               "--device", args.device, "--b32-batch", str(args.b32_batch), "--b32-crop", str(args.b32_crop)]
        if args.threads:
            cmd += ["--threads", str(args.threads)]
        proc = subprocess.run(cmd, stdout=subprocess.PIPE, text=True, env=dict(os.environ, HF_HUB_OFFLINE="1"))
        lines = proc.stdout.rstrip().splitlines()
        for line in lines[:-1]:
            print(line)
        if proc.returncode != 0 or not lines:
            raise SystemExit(f"setup {name} failed with exit code {proc.returncode}")
        results[name] = json.loads(lines[-1])

    print(f"\nmedian seconds of {args.steps} interleaved steps")
    print(f"{'setup':<6} {'variant':<11} {'step s':>8} {'min-max':>15} {'CAM fwd':>8} {'loss':>8} {'backward':>9} "
          f"{'optim':>7}")
    for name, r in results.items():
        for variant, v in r["variants"].items():
            spread = f"{v['step_min']:.2f}-{v['step_max']:.2f}"
            print(f"{name:<6} {variant:<11} {v['step']:>8.3f} {spread:>15} {v['cam_forward']:>8.3f} {v['loss']:>8.3f} "
                  f"{v['backward']:>9.3f} {v['optimizer']:>7.3f}")
    for name, r in results.items():
        print(f"{name}: batch {r['batch']}, crop {r['crop']}, {r['pairs']} (image, class) pairs, "
              f"{r['backbone']} + {r['clip_model']}: the CLIP terms add {r['clip_cost_seconds']:.3f} s per step "
              f"({r['clims_over_area_only']:.2f}x the step without them); CoOp's text encoder adds "
              f"{r['coop_text_cost_seconds']:.3f} s; peak RSS {r['peak_rss_mb']} MB")
    record = {
        "results": results,
        "settings": {"steps": args.steps, "warmup": args.warmup, "device": args.device},
        "machine": {"cpus": os.cpu_count(), "torch_threads": args.threads or torch.get_num_threads(),
                    "platform": platform.platform(), "torch": torch.__version__,
                    "cuda_device": torch.cuda.get_device_name(0) if args.device.startswith("cuda") else None,
                    "load_average_at_end": os.getloadavg() if hasattr(os, "getloadavg") else None},
    }
    write_text(Path(args.results), json.dumps(record, indent=2) + "\n")
    print(f"\nsaved {args.results}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
