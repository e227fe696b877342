"""Every CLIMS/POLE prompt strategy trained end to end on the procedural dataset, with its CAM mIoU.

    python benchmarks/pole_synthetic.py [--strategies template_photo,coop,...] [--out DIR]
        [--set KEY=VALUE ...] [--results PATH]

POLE's Table 1 and Table 4 as a smoke-scale experiment on a 2-core CPU, with the configs in
benchmarks/pole/synthetic_*.yaml:

1. writes the tiny CLIP (``wsss-tiny-clip``, random weights) to ``<out>/tiny_clip.pt``, so that every
   run and the synonym selection see the same one. A random CLIP puts many image-text cosines below
   0, where CLIMS's clamped matching terms have no gradient at all (a first run's DeFo trained
   nothing), so one shared random direction is added to both towers' embeddings, just large
   enough that every cosine of every strategy's prompts lies in [0.05, 0.95];
2. trains the baseline ResNet-18 CAM network (synthetic_baseline.yaml) and writes its CAMs;
3. runs POLE's synonym selection (``python -m wsss_pole.cli``) from the baseline CAMs of the
   training split into ``<out>/selection.json``;
4. for each strategy (template "a photo of {}.", template "an image of {}.", coop, defo,
   target_opt, POLE selection only, POLE + fixed adapters, POLE + learnable adapters):
   ``wsss run benchmarks/pole/synthetic_<strategy>.yaml --stages train_cam,cams`` starting from the
   baseline checkpoint, one after another (they would only slow each other down on a small CPU).

It prints and saves benchmarks/results/pole_synthetic.json: CAM mIoU at the best background
threshold on the training split (how the CAM papers report it) and on the held-out split, wall
times, the loss at the start and end of training, and how far training moved each part of the
model (relative L2 change of the CAM network, the learnable prompt vectors, the adapters), which
shows that the gradient reaches every trainable part.

With a random-weight CLIP the CLIP losses carry no meaning: the numbers show that the machinery
trains, not how good CLIMS, the prompt strategies or POLE are; expect the CLIP-trained CAMs to be
no better than the baseline. Rerunning with the same ``--out`` resumes (complete stages are kept).
Needs ``pip install -e plugins/cams -e plugins/pole``; never run by the tests.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import torch

from wsss_kit.atomic import write_text

HERE = Path(__file__).resolve().parent
CONFIGS = HERE / "pole"
RESULTS = HERE / "results" / "pole_synthetic.json"
STRATEGIES = ("template_photo", "template_image", "coop", "defo", "target_opt", "pole_select", "pole_fixed",
              "pole_vector")
POLE_STRATEGIES = {"pole_select", "pole_fixed", "pole_vector"}
NOTE = ("The tiny CLIP has random weights: these numbers show that every strategy trains end to end "
        "(losses move, gradients reach the prompt vectors and adapters), not what the strategies are worth.")


def env() -> dict[str, str]:
    return dict(os.environ, HF_HUB_OFFLINE="1")


def sets(items: list[str]) -> list[str]:
    return [a for item in items for a in ("--set", item)]


# ---------------------------------------------------------------------------- the tiny CLIP
PROMPT_FORMS = ("a photo of {}.", "an image of {}.", "a photo of {}", "A photo of {}.")
"""The strategies' texts at initialisation: CLIMS, "an image of", DeFo (no full stop), POLE."""


@torch.no_grad()
def clip_similarities(clip: Any, images: torch.Tensor, masks: torch.Tensor, labels: torch.Tensor,
                      words: list[list[str]]) -> torch.Tensor:
    """Cosines of ``P·X`` and ``(1 − P)·X`` (P: the ground-truth mask of each present class, X
    ImageNet-normalised: CLIMS's inputs) with every prompt form of every candidate word of the class."""
    import torch.nn.functional as F

    mean = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)
    std = torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)
    b, c = torch.nonzero(labels > 0.5, as_tuple=True)
    x = ((images - mean) / std)[b]
    p = (masks[b] == (c + 1)[:, None, None]).float().unsqueeze(1)
    inputs = F.interpolate(torch.cat([p * x, (1 - p) * x]), size=tuple(clip.image_size), mode="bilinear",
                           align_corners=True)
    feats = F.normalize(clip.encode_image(inputs, normalized=True).float(), dim=-1)
    cls = torch.cat([c, c])
    sims = []
    for form in PROMPT_FORMS:
        for k in range(max(len(w) for w in words)):
            text = F.normalize(clip.encode_text([form.format(w[min(k, len(w) - 1)]) for w in words]).float(), dim=-1)
            sims.append((feats * text[cls]).sum(-1))
    return torch.cat(sims)


def pin_tiny_clip(path: Path, seed: int = 0) -> dict[str, Any]:
    """Save a random ``wsss-tiny-clip`` whose image-text cosines lie well inside CLIMS's clamp.

    A random CLIP puts many cosines below 0, where CLIMS's clamped matching terms have no gradient
    (a first run's DeFo prompts trained nothing). So one shared random direction ``u`` is added to
    both towers' embeddings, through the biases of ``ln_post`` and ``ln_final`` (solved through the
    projections), ``α`` times the embeddings' mean norm, with the smallest ``α`` that puts every
    cosine in [0.05, 0.95]; the rest of the weights stay random.
    """
    import torch.nn.functional as F
    from wsss_kit.clip import TINY_CLIP, load_clip
    from wsss_kit.config import load_config
    from wsss_kit.data import SyntheticDataset

    data = SyntheticDataset("train", num_images=32)
    samples = [data[i] for i in range(len(data))]
    images = torch.stack([s["image"] for s in samples])
    masks = torch.stack([s["mask"] for s in samples])
    labels = torch.stack([s["labels"] for s in samples])
    table = load_config(CONFIGS / "synthetic_pole_vector.yaml")["cam"]["model"]["synonyms"]["synonyms"]
    words = [[c, *table[c]] for c in data.class_names]

    def draw() -> Any:
        torch.manual_seed(seed)
        return load_clip(TINY_CLIP, None)

    clip = draw()
    base = clip_similarities(clip, images, masks, labels, words)
    with torch.no_grad():
        norm_v = float(clip.encode_image(torch.rand(8, 3, *clip.image_size)).float().norm(dim=-1).mean())
        norm_t = float(clip.encode_text([f.format(c) for f in PROMPT_FORMS for c in data.class_names])
                       .float().norm(dim=-1).mean())
    u = F.normalize(torch.randn(clip.embed_dim, generator=torch.Generator().manual_seed(seed)), dim=0)
    for alpha in (0.5, 0.75, 1.0, 1.5, 2.0, 3.0):
        clip = draw()
        model = clip.model
        with torch.no_grad():
            model.visual.ln_post.bias += (alpha * norm_v * u) @ torch.linalg.pinv(model.visual.proj.float())
            model.ln_final.bias += (alpha * norm_t * u) @ torch.linalg.pinv(model.text_projection.float())
        sims = clip_similarities(clip, images, masks, labels, words)
        if float(sims.min()) >= 0.05 and float(sims.max()) <= 0.95:
            path.parent.mkdir(parents=True, exist_ok=True)
            torch.save(model.state_dict(), path)
            print(f"tiny CLIP: random (seed {seed}) with a shared embedding direction at {alpha} x the mean norm: "
                  f"image-text cosines {float(sims.min()):.3f}..{float(sims.max()):.3f} (without it "
                  f"{float(base.min()):.3f}..{float(base.max()):.3f}) -> {path}")
            return {"seed": seed, "alpha": alpha, "cosine_min": round(float(sims.min()), 3),
                    "cosine_max": round(float(sims.max()), 3), "cosine_min_random": round(float(base.min()), 3),
                    "cosine_max_random": round(float(base.max()), 3)}
    raise SystemExit(f"tiny CLIP seed {seed}: no offset puts every cosine in [0.05, 0.95]; try another --clip-seed")


# ---------------------------------------------------------------------------- runs
def wsss_run(config: Path, out: Path, overrides: list[str]) -> float:
    """``wsss run CONFIG --stages train_cam,cams``; returns the wall seconds."""
    cmd = [sys.executable, "-m", "wsss_kit.cli.main", "run", str(config), "--stages", "train_cam,cams",
           "--out", str(out)] + sets(overrides)
    start = time.perf_counter()
    proc = subprocess.run(cmd, env=env())
    if proc.returncode != 0:
        raise SystemExit(f"`{' '.join(cmd)}` failed with exit code {proc.returncode}")
    return time.perf_counter() - start


def select(config: Path, cams: Path, cache: Path, overrides: list[str]) -> float:
    cmd = [sys.executable, "-m", "wsss_pole.cli", str(config), "--cams", str(cams), "--out", str(cache),
           "--no-progress"] + sets(overrides)
    start = time.perf_counter()
    proc = subprocess.run(cmd, env=env())
    if proc.returncode != 0:
        raise SystemExit(f"`{' '.join(cmd)}` failed with exit code {proc.returncode}")
    return time.perf_counter() - start


def cam_scores(out: Path, wall: float) -> dict[str, Any]:
    stages = json.loads((out / "manifest.json").read_text())["stages"]
    cams = stages["cams"]
    return {
        "train_miou": cams["train"]["miou"],
        "train_best_threshold": cams["train"]["best_threshold"],
        "eval_miou": cams["eval"]["miou"],
        "eval_best_threshold": cams["eval"]["best_threshold"],
        "train_cam_seconds": stages["train_cam"].get("wall_seconds"),
        "cams_seconds": cams.get("wall_seconds"),
        "wall_seconds": round(wall, 1),
    }


def loss_summary(out: Path, window: int = 3) -> dict[str, Any]:
    """Mean of the first and the last ``window`` logged rows of every loss term."""
    from wsss_kit.engine.csv_log import read_log

    rows = read_log(out / "train_cam" / "log.csv")
    if not rows:
        return {}
    keys = [k for k in rows[0] if k in ("loss", "otm", "btm", "cbs", "reg")]
    head, tail = rows[:window], rows[-window:]

    def mean(part: list[dict[str, float]], key: str) -> float:
        values = [r[key] for r in part if key in r and math.isfinite(r[key])]
        return round(sum(values) / len(values), 4) if values else float("nan")

    return {k: {"first": mean(head, k), "last": mean(tail, k)} for k in keys}


def parameter_drift(out: Path) -> dict[str, float]:
    """Relative L2 change ``|w_end − w_start| / |w_start|`` per part of the model, from the run's own
    resolved config (rebuilt under the training seed, so the adapters start where training did)."""
    from wsss_kit.config import build, load_config
    from wsss_kit.engine.seeding import seed_everything
    cfg = load_config(out / "config.resolved.yaml")
    seed_everything(int(cfg["cam"].get("train", {}).get("seed", cfg.get("seed", 0))))
    model = build(cfg["cam"]["model"], "cam.model", num_classes=5)
    final = {k: v for k, v in torch.load(out / "train_cam" / "model.pt", map_location="cpu", weights_only=True).items()
             if isinstance(v, torch.Tensor)}  # learnable prompts add a non-tensor `_extra_state`
    parts: dict[str, list[float]] = {}
    for name, param in model.named_parameters():
        if not param.requires_grad or name not in final:
            continue
        part = "network" if name.startswith("cam.") else ("prompt" if name.startswith("prompt.") else "adapters")
        sums = parts.setdefault(part, [0.0, 0.0])
        sums[0] += float((final[name].float() - param.detach().float()).pow(2).sum())
        sums[1] += float(param.detach().float().pow(2).sum())
    drift = {part: round(math.sqrt(d) / max(math.sqrt(n), 1e-12), 5) for part, (d, n) in parts.items()}
    ratios = [final[k].float() for k in final if k.endswith("adapter.ratio")]
    if ratios:
        drift["ratio_mean"] = round(float(torch.cat([r.flatten() for r in ratios]).mean()), 5)
    return drift


# ---------------------------------------------------------------------------- main
def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--strategies", default=",".join(STRATEGIES),
                        help=f"comma-separated subset of {', '.join(STRATEGIES)}")
    parser.add_argument("--out", help="parent folder of the runs (default: a new temporary folder); reuse to resume")
    parser.add_argument("--set", dest="overrides", action="append", default=[],
                        help="override for every config, e.g. --set cam.train.steps=50 (repeatable)")
    parser.add_argument("--clip-seed", type=int, default=0, help="seed of the tiny CLIP's random weights")
    parser.add_argument("--results", default=str(RESULTS))
    args = parser.parse_args()
    strategies = [s.strip() for s in args.strategies.split(",") if s.strip()]
    unknown = sorted(set(strategies) - set(STRATEGIES))
    if unknown:
        parser.error(f"unknown strateg(ies) {unknown}; choose from {', '.join(STRATEGIES)}")
    root = Path(args.out or tempfile.mkdtemp(prefix="wsss_pole_synthetic_")).resolve()
    print(f"runs under {root}\n{NOTE}\n")

    clip_file = root / "tiny_clip.pt"
    clip_info = pin_tiny_clip(clip_file, args.clip_seed)
    common = [f"cam.model.clip_weights={clip_file}"]

    baseline_out = root / "baseline"
    wall = wsss_run(CONFIGS / "synthetic_baseline.yaml", baseline_out, args.overrides)
    baseline = {"config": "benchmarks/pole/synthetic_baseline.yaml", **cam_scores(baseline_out, wall),
                "loss": loss_summary(baseline_out)}
    checkpoint = baseline_out / "train_cam" / "model.pt"

    cache = root / "selection.json"
    selection_seconds = None
    if POLE_STRATEGIES & set(strategies):
        first = next(s for s in strategies if s in POLE_STRATEGIES)
        selection_seconds = round(select(CONFIGS / f"synthetic_{first}.yaml", baseline_out / "cams" / "train", cache,
                                         args.overrides + common), 1)

    results: dict[str, Any] = {}
    for name in strategies:
        out = root / name
        extra = common + [f"cam.model.init_checkpoint={checkpoint}"]
        if name in POLE_STRATEGIES:
            extra.append(f"cam.model.selection_cache={cache}")
        wall = wsss_run(CONFIGS / f"synthetic_{name}.yaml", out, extra + args.overrides)
        results[name] = {"config": f"benchmarks/pole/synthetic_{name}.yaml", **cam_scores(out, wall),
                         "loss": loss_summary(out), "drift": parameter_drift(out)}

    print(f"\n{NOTE}\n")
    header = (f"{'strategy':<15} {'train mIoU':>10} {'thr':>5} {'eval mIoU':>10} {'thr':>5} {'train s':>8} "
              f"{'CAMs s':>7} {'loss first->last':>17}  drift (relative L2 change)")
    print(header)
    rows = [("baseline", baseline)] + list(results.items())
    for name, r in rows:
        loss = r["loss"].get("loss", {})
        moved = ", ".join(f"{k} {v:.3g}" for k, v in r.get("drift", {}).items())
        print(f"{name:<15} {100 * r['train_miou']:>10.1f} {r['train_best_threshold']:>5.2f} "
              f"{100 * r['eval_miou']:>10.1f} {r['eval_best_threshold']:>5.2f} "
              f"{r['train_cam_seconds'] or 0:>8.0f} {r['cams_seconds'] or 0:>7.0f} "
              f"{loss.get('first', float('nan')):>8.3f}->{loss.get('last', float('nan')):<8.3f}  {moved}")
    if selection_seconds is not None:
        print(f"POLE synonym selection (tiny CLIP, {baseline_out / 'cams' / 'train'}): {selection_seconds:.0f} s")
    record = {
        "note": NOTE,
        "baseline": baseline,
        "results": results,
        "selection_seconds": selection_seconds,
        "tiny_clip": clip_info,
        "machine": {"cpus": os.cpu_count(), "torch_threads": torch.get_num_threads(),
                    "platform": platform.platform(), "cuda": torch.cuda.is_available(),
                    "load_average_at_end": os.getloadavg() if hasattr(os, "getloadavg") else None},
        "overrides": args.overrides,
    }
    write_text(Path(args.results), json.dumps(record, indent=2) + "\n")
    print(f"\nsaved {args.results}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
