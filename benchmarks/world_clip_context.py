"""What the embedded world's CLIP rewards when a CAM spreads from its object over the background.

    python benchmarks/world_clip_context.py [--split val] [--images 100] [--template "a photo of {}."]

CLIMS's foreground term scores ``CLIP(image × CAM)`` against the class prompt. If the shipped world CLIP
scores the object *with* its background higher than the object alone, that term pulls the CAM onto the
background (the CLIMS/POLE demos and embedded tables: box and tree CAMs spread over sand, grass and
sky; CLIMS raises the water labelled boat). For every object of every held-out scene this measures
the cosine of the class prompt with three masked views, ``alone`` (the object's pixels kept),
``with_background`` (the object and all background) and ``background`` (the background alone), under
two maskings:

* ``clims``: what CLIMS feeds CLIP (the official code's input): the ImageNet-normalised image times
  the mask, given to the tower as already normalised, so masked pixels are the ImageNet mean colour;
* ``black``: the image in [0, 1] times the mask (masked pixels black), through CLIP's own
  normalisation: the cut-out views the world CLIP was trained on.

Prints a table per class and saves ``benchmarks/results/world_clip_context.json``. Never run by the
tests (a diagnostic of the shipped weights, not of code).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch
from machine import machine_info  # sibling module (benchmarks/ is on sys.path)

from wsss_kit.atomic import write_text
from wsss_kit.clip import SYNTHETIC_CLIP, load_clip
from wsss_kit.data.synthetic import SyntheticDataset
from wsss_kit.data.synthetic_scene import CLASS_NAMES

RESULTS = Path(__file__).resolve().parent / "results" / "world_clip_context.json"
IMAGENET_MEAN = torch.tensor([0.485, 0.456, 0.406]).view(3, 1, 1)
IMAGENET_STD = torch.tensor([0.229, 0.224, 0.225]).view(3, 1, 1)
VIEWS = ("alone", "with_background", "background")


def masked_views(image: torch.Tensor, mask: torch.Tensor, label: int, masking: str) -> torch.Tensor:
    """``(3, 3, H, W)``: the views :data:`VIEWS` of class ``label`` of one scene (``image`` in [0, 1])."""
    obj, bg = mask == label, mask == 0
    base = (image - IMAGENET_MEAN) / IMAGENET_STD if masking == "clims" else image
    return torch.stack([base * keep.unsqueeze(0) for keep in (obj, obj | bg, bg)])


def measure(split: str, images: int, template: str) -> dict[str, dict[str, float]]:
    clip = load_clip(SYNTHETIC_CLIP, weights="released:wsss_synthetic_clip", precision="fp32")
    data = SyntheticDataset(split=split, num_images=images)
    with torch.no_grad():
        text = torch.nn.functional.normalize(clip.encode_text([template.format(c) for c in CLASS_NAMES]), dim=-1)
    scores: dict[str, dict[str, list[torch.Tensor]]] = {m: {c: [] for c in CLASS_NAMES} for m in ("clims", "black")}
    for index in range(len(data)):
        item = data[index]
        image, mask = item["image"], item["mask"]
        image = image.float() / 255 if image.dtype == torch.uint8 else image.float()
        for label, name in enumerate(CLASS_NAMES, start=1):
            if not bool((mask == label).any()):
                continue
            for masking in scores:
                views = masked_views(image, mask, label, masking)
                with torch.no_grad():
                    emb = clip.encode_image(views, normalized=masking == "clims")
                scores[masking][name].append(torch.nn.functional.normalize(emb, dim=-1) @ text[label - 1])
    out: dict[str, dict[str, float]] = {}
    for masking, per_class in scores.items():
        for name, rows in per_class.items():
            cos = torch.stack(rows)  # (objects, 3)
            out[f"{masking}/{name}"] = {
                "objects": len(rows), **{v: round(float(cos[:, i].mean()), 3) for i, v in enumerate(VIEWS)},
                "with_background_above_alone": round(float((cos[:, 1] > cos[:, 0]).float().mean()), 2),
                "background_above_alone": round(float((cos[:, 2] > cos[:, 0]).float().mean()), 2)}
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--split", default="val")
    parser.add_argument("--images", type=int, default=100)
    parser.add_argument("--template", default="a photo of {}.")
    args = parser.parse_args()
    if args.images < 1:
        parser.error(f"--images must be >= 1, got {args.images}")
    if "{}" not in args.template:
        parser.error(f"--template must contain '{{}}' for the class name, got {args.template!r}")
    torch.manual_seed(0)
    result = measure(args.split, args.images, args.template)
    print(f"{'masking/class':<16} {'objects':>7} " + " ".join(f"{v:>15}" for v in VIEWS)
          + "  bg+obj > obj  bg > obj")
    for key, r in result.items():
        print(f"{key:<16} {r['objects']:>7} " + " ".join(f"{r[v]:>15.3f}" for v in VIEWS)
              + f"  {r['with_background_above_alone']:>11.0%}  {r['background_above_alone']:>8.0%}")
    write_text(RESULTS, json.dumps({"what": __doc__.split("\n\n")[0], "split": args.split, "images": args.images,
                                    "template": args.template, "results": result,
                                    "machine": machine_info()}, indent=1) + "\n")
    print(f"saved {RESULTS}")


if __name__ == "__main__":
    main()
