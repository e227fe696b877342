"""WeakCLIP pseudo-mask inference: wsss_kit against an official-like variant, side by side.

    python benchmarks/weakclip_pseudo_masks_speed.py [--scales 0.5 1.0] [--rounds 5] [--warmup 1]
        [--bf16] [--memory] [--full] [--threads 1] [--results PATH]

Both variants run the same network (``refiners/weakclip``, official preset, a random-weight
open_clip ViT-B/16, 21 VOC classes) on the same synthetic 375×500 images with the official test
pipeline (ratios of the (2048, 512) scale, flip, windows 512 / 341, averaged softmax); the CRF,
identical in both and ~1 s per image, is left out. They differ in what the official code
(hustvl/WeakCLIP, mmseg 0.x ``slide_inference`` + aug test, CLIP ViT sequence-first) does:

* ``official-like``: one window per forward; the text encoder runs inside every window's forward
  (the learnable prompt's text cache is cleared before each); CLIP's blocks sequence-first through
  ``nn.MultiheadAttention`` with ``batch_first=False``, i.e. ``F.multi_head_attention_forward``
  (open_clip's own block, not wsss_kit's fused one); no position-table cache;
* ``wsss_kit``: ``WeakCLIPRefiner.probabilities`` as it ships: windows per call from the memory
  budget (``window_memory_mb: auto``), the text encoded once, fused SDPA attention on batch-first
  tokens, the resized position tables cached per grid;
* ``official`` (``--official CHECKOUT``): the official network itself (hustvl/WeakCLIP's
  ``extract_feat``, ``after_extract_feat``, neck and decode head, mmseg 0.19; see
  ``benchmarks/weakclip_official.py``) on every window, one per forward, over the same views and
  windows; every variant then runs the official model's random weights, converted;
* ``wsss_kit bf16`` (``--bf16``): the same with the frozen CLIP under bf16 autocast
  (``clip_precision: bf16``; fast on CPUs with AMX), which changes the floats, so its masks are
  compared too.

Timing: interleaved rounds in one process (one image per variant per round, order rotated), median
over the counted rounds after ``--warmup``, and the median of the per-round ratios; process CPU time
as well (less sensitive to other jobs than wall time). Equality: the largest difference of the
averaged probabilities and the share of pixels whose argmax (the mask before the CRF) agrees.
Memory (``--memory``): each variant alone in a fresh process, the peak RSS over one image (the
kernel's high-water mark, reset after the build) and the RSS after building the network (weights),
so the difference is the inference's own.
``--full`` adds one image at the full official configuration (6 ratios + flip: 52 windows) per
variant, one round each (a full image takes minutes on a CPU). Records the load average before and
after. :func:`measure_pseudo_masks` is the entry point for ``python -m benchmarks speed``.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import resource
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import torch

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results" / "weakclip_pseudo_masks_speed.json"
FULL_SCALES = (0.5, 0.75, 1.0, 1.25, 1.5, 1.75)
VARIANTS = ("official-like", "wsss_kit", "wsss_kit bf16", "official")  # "official": with --official
OFFICIAL_LIKE = ("the same network and weights; one window per forward; the text encoder inside every window's "
                 "forward; CLIP blocks sequence-first through nn.MultiheadAttention(batch_first=False) = "
                 "F.multi_head_attention_forward (open_clip's own block); no position-table cache")


def build_refiner(scales: Sequence[float], flip: bool = True, seed: int = 0,
                  official_state: dict[str, torch.Tensor] | None = None) -> Any:
    """The measured refiner: official preset, random ViT-B/16, 21 VOC classes, no CRF; with
    ``official_state`` (an official WeakCLIP state dict) its weights, CLIP included."""
    from wsss_kit.data import VOC_CLASSES
    from wsss_weakclip.refiner import WeakCLIPRefiner

    torch.manual_seed(seed)
    return WeakCLIPRefiner(class_names=VOC_CLASSES, clip_model="ViT-B-16", clip_weights=None, crf=None,
                           scales=tuple(scales), base_size=(2048, 512), flip=flip, window=512, stride=341,
                           **({"checkpoint": official_state} if official_state is not None else {})).eval()


def build_official(checkout: str, site: str | None, seed: int = 0) -> tuple[Any, dict[str, torch.Tensor]]:
    """The official segmentor (random weights, eval mode) and its state dict (for :func:`build_refiner`)."""
    import benchmarks.weakclip_official as wo

    model = wo.load_official(checkout, site, seed=seed)
    return model, {k: v.detach().clone() for k, v in model.state_dict().items()}


def official_probabilities(official: Any, refiner: Any, images: torch.Tensor) -> torch.Tensor:
    """The averaged softmax ``(B, K, H, W)`` with the official network on every window, one window per
    forward (:func:`benchmarks.weakclip_official.official_window_logits`), over the refiner's views."""
    from benchmarks.weakclip_official import official_window_logits
    from wsss_weakclip.inference import multiscale_softmax

    with torch.no_grad():
        return multiscale_softmax(lambda w: official_window_logits(official, w), images.float(),
                                  scales=refiner.scales, base_size=refiner.base_size, flip=refiner.flip,
                                  window=refiner.window, stride=refiner.stride, window_batch=1)


def scene_images(count: int = 1, size: tuple[int, int] = (375, 500)) -> torch.Tensor:
    """``count`` synthetic scenes ``(count, 3, H, W)`` in [0, 1] (VOC's usual size)."""
    from wsss_kit.data.synthetic import SyntheticDataset

    ds = SyntheticDataset(split="test", num_images=count, image_size=size)
    return torch.stack([ds[i]["image"] for i in range(count)])


@contextlib.contextmanager
def official_like_attention(clip: Any) -> Iterator[None]:
    """Within the block, every transformer of ``clip`` (a :class:`wsss_kit.clip.CLIPModel`) runs as the
    official CLIP does: sequence-first tokens, open_clip's ``ResidualAttentionBlock`` calling
    ``nn.MultiheadAttention(batch_first=False)`` (no native fast path: ``F.multi_head_attention_forward``)."""
    from open_clip.transformer import ResidualAttentionBlock, Transformer

    saved: list[tuple[Any, str, Any]] = []
    for module in clip.model.modules():
        if isinstance(module, Transformer):
            saved.append((module, "batch_first", module.batch_first))
            module.batch_first = False
        elif isinstance(module, ResidualAttentionBlock):
            saved.append((module, "__class__", module.__class__))
            saved.append((module.attn, "batch_first", module.attn.batch_first))
            module.__class__ = ResidualAttentionBlock
            module.attn.batch_first = False
    try:
        yield
    finally:
        for obj, name, value in reversed(saved):
            setattr(obj, name, value)


def official_like_probabilities(refiner: Any, images: torch.Tensor) -> torch.Tensor:
    """The averaged softmax ``(B, K, H, W)`` the official-like way (see the module docstring)."""
    from wsss_weakclip.inference import multiscale_softmax

    net = refiner.net

    def predict(window: torch.Tensor) -> torch.Tensor:
        net.clear_text_cache()                 # the official forward encodes the text every time
        net.encoder.clear_position_cache()     # and resizes the position table every time
        return net(window)["logits"]

    with torch.no_grad(), official_like_attention(net.clip):
        return multiscale_softmax(predict, images.float(), scales=refiner.scales, base_size=refiner.base_size,
                                  flip=refiner.flip, window=refiner.window, stride=refiner.stride, window_batch=1)


def ours_probabilities(refiner: Any, images: torch.Tensor, precision: str = "fp32") -> torch.Tensor:
    """``refiner.probabilities`` with CLIP's compute precision set to ``precision`` for the call."""
    clip = refiner.net.clip
    before = clip.precision
    clip.precision = precision
    try:
        return refiner.probabilities(images)
    finally:
        clip.precision = before


def variant_fn(name: str, official: Any = None) -> Callable[[Any, torch.Tensor], torch.Tensor]:
    if name == "official":
        if official is None:
            raise ValueError("the 'official' variant needs the official model (--official CHECKOUT)")
        return lambda r, x: official_probabilities(official, r, x)
    if name == "official-like":
        return official_like_probabilities
    if name == "wsss_kit":
        return lambda r, x: ours_probabilities(r, x, "fp32")
    if name == "wsss_kit bf16":
        return lambda r, x: ours_probabilities(r, x, "bf16")
    raise ValueError(f"unknown variant {name!r}; one of {', '.join(VARIANTS)}")


def count_windows(refiner: Any, height: int, width: int) -> int:
    """Windows one image makes over the refiner's views."""
    from wsss_weakclip.inference import scaled_size
    from wsss_weakclip.sliding_window import window_boxes

    views = 2 if refiner.flip else 1
    return views * sum(len(window_boxes(*scaled_size(height, width, r, refiner.base_size), refiner.window,
                                        refiner.stride)) for r in refiner.scales)


class _TextCounter:
    """Counts the text encodings: the forward calls of ``prompt`` (the learnable context's module, or
    the official text encoder)."""

    def __init__(self, prompt: Any) -> None:
        self.prompt, self.count = prompt, 0
        self.forward = self.prompt.forward

    def __enter__(self) -> "_TextCounter":
        def counted(*args: Any, **kwargs: Any) -> Any:
            self.count += 1
            return self.forward(*args, **kwargs)

        self.prompt.forward = counted
        return self

    def __exit__(self, *exc: object) -> None:
        del self.prompt.forward  # back to the class's method


def compare(reference: torch.Tensor, other: torch.Tensor) -> dict[str, float]:
    """Largest probability difference and argmax agreement of two ``(B, K, H, W)`` softmaxes."""
    return {"max_prob_difference": float((reference - other).abs().max()),
            "mask_agreement": float((reference.argmax(1) == other.argmax(1)).float().mean())}


def measure_pseudo_masks(scales: Sequence[float] = (0.5, 1.0), flip: bool = True, rounds: int = 5, warmup: int = 1,
                         variants: Sequence[str] = ("official-like", "wsss_kit"),
                         image_size: tuple[int, int] = (375, 500), threads: int | None = 1,
                         official: str | None = None, official_site: str | None = None) -> dict[str, Any]:
    """Seconds per image of each variant, interleaved; ratios to ``official-like``; equality of the outputs.

    ``official``: a checkout of hustvl/WeakCLIP (``official_site``: its mmcv/mmseg, see
    :mod:`benchmarks.weakclip_official`): every variant then runs the official model's random weights
    (converted, CLIP included), the official network is measured as the variant ``official``, and the
    ratios and the equality are taken against it.

    Returns a JSON-able dict: per variant the seconds of every counted round (wall and process CPU),
    their medians, the median per-round speed-up over ``official-like``, text encodings per image,
    the windows per network call (``wsss_kit``: the budget's choice), the outputs' agreement with
    ``official-like``; the configuration, windows per image and the load average before and after.
    """
    if threads is not None:
        torch.set_num_threads(int(threads))
    load_before = [round(x, 2) for x in os.getloadavg()]
    official_model, state = build_official(official, official_site) if official else (None, None)
    if official and "official" not in variants:
        variants = [*variants, "official"]
    refiner = build_refiner(scales, flip, official_state=state)
    images = scene_images(1, image_size)
    fns = {name: variant_fn(name, official_model) for name in variants}
    wall: dict[str, list[float]] = {n: [] for n in variants}
    cpu: dict[str, list[float]] = {n: [] for n in variants}
    outputs: dict[str, torch.Tensor] = {}
    texts: dict[str, int] = {}
    names = list(variants)
    for r in range(warmup + rounds):
        order = names[r % len(names):] + names[:r % len(names)]
        for name in order:
            refiner.net.clear_text_cache()  # each image starts without the text (a new process would)
            text_module = official_model.text_encoder if name == "official" else refiner.net.prompt
            with _TextCounter(text_module) as counter:
                t0, c0 = time.perf_counter(), time.process_time()
                out = fns[name](refiner, images)
                t1, c1 = time.perf_counter(), time.process_time()
            texts[name] = counter.count
            outputs.setdefault(name, out)
            if r >= warmup:
                wall[name].append(t1 - t0)
                cpu[name].append(c1 - c0)
    base = "official" if "official" in variants else "official-like" if "official-like" in variants else names[0]
    per_window = {f"{k[0]}x{k[1]}": round(v / 2**20, 1) for k, v in refiner.window_budget.per_window_bytes.items()}
    result: dict[str, Any] = {
        "what": "WeakCLIP pseudo-mask network inference (averaged softmax, no CRF) of one 375x500 image, "
                "random ViT-B/16, 21 classes",
        "official": (f"official code (hustvl/WeakCLIP network per window: extract_feat, after_extract_feat, neck, "
                     f"decode head) from {official}; official-like variant: {OFFICIAL_LIKE}") if official
        else f"official-like variant: {OFFICIAL_LIKE}",
        "scales": list(scales), "flip": flip, "base_size": [2048, 512], "window": 512, "stride": 341,
        "windows_per_image": count_windows(refiner, *image_size), "image_size": list(image_size),
        "rounds": rounds, "warmup": warmup, "threads": torch.get_num_threads(),
        "per_window_activation_mb": per_window,
        "windows_per_call_wsss_kit": {size: refiner.window_budget.windows(torch.empty(1, 3, *map(int, size.split("x"))))
                                      for size in per_window},
        "variants": {},
    }
    for name in variants:
        ratios = [b / w for b, w in zip(wall[base], wall[name])]
        cpu_ratios = [b / w for b, w in zip(cpu[base], cpu[name])]
        result["variants"][name] = {
            "seconds_per_image": round(statistics.median(wall[name]), 3),
            "cpu_seconds_per_image": round(statistics.median(cpu[name]), 3),
            "all_seconds": [round(s, 3) for s in wall[name]],
            "images_per_second": round(1.0 / statistics.median(wall[name]), 5),
            f"speedup_over_{base}": round(statistics.median(ratios), 3),
            f"cpu_speedup_over_{base}": round(statistics.median(cpu_ratios), 3),
            "text_encodings_per_image": texts[name],
            **({} if name == base else compare(outputs[base], outputs[name])),
        }
    result["load_average_before"] = load_before
    result["load_average_after"] = [round(x, 2) for x in os.getloadavg()]
    return result


def _peak_one(variant: str, scales: Sequence[float], threads: int, official: str | None = None,
              official_site: str | None = None) -> dict[str, float]:
    """In this (fresh) process: RSS after the build and peak RSS over one image of ``variant``.

    Building the network peaks higher than it ends (open_clip's initialisation), so the kernel's
    high-water mark is reset after the build (``/proc/self/clear_refs`` ← 5) and read after the image."""
    from machine import peak_rss_mb, reset_peak_rss, rss_mb  # run as a script (a fresh child process)

    torch.set_num_threads(threads)
    official_model, state = build_official(official, official_site) if official else (None, None)
    refiner = build_refiner(scales, official_state=state)
    images = scene_images(1)
    build_peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    built = rss_mb()
    reset_peak_rss()
    variant_fn(variant, official_model)(refiner, images)
    peak = peak_rss_mb()
    return {"rss_after_build_mb": round(built, 1), "build_peak_rss_mb": round(build_peak, 1),
            "inference_peak_rss_mb": round(peak, 1), "inference_peak_above_build_mb": round(peak - built, 1)}


def measure_peak_memory(variants: Sequence[str], scales: Sequence[float], threads: int = 1,
                        official: str | None = None, official_site: str | None = None) -> dict[str, Any]:
    """Peak RSS of one image per variant, each in its own fresh process (so neither sees the other's);
    with ``official`` every process also holds the official model (the weights every variant uses)."""
    out: dict[str, Any] = {}
    for name in variants:
        cmd = [sys.executable, __file__, "--peak-of", name, "--threads", str(threads), "--scales",
               *map(str, scales)]
        if official:
            cmd += ["--official", official, *(["--official-site", official_site] if official_site else [])]
        proc = subprocess.run(cmd, capture_output=True, text=True, env={**os.environ, "OMP_NUM_THREADS": str(threads)})
        if proc.returncode != 0:
            raise SystemExit(f"memory run of {name!r} failed:\n{proc.stderr[-3000:]}")
        out[name] = json.loads(proc.stdout.strip().splitlines()[-1])
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--scales", type=float, nargs="+", default=[0.5, 1.0],
                        help="test ratios of the (2048, 512) scale for the timed rounds (official: 0.5 ... 1.75)")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--bf16", action="store_true", help="also wsss_kit with CLIP under bf16 autocast")
    parser.add_argument("--memory", action="store_true", help="peak RSS of each variant in its own process")
    parser.add_argument("--full", action="store_true", help="also one full-configuration image per variant")
    parser.add_argument("--results", default=str(RESULTS))
    parser.add_argument("--no-save", action="store_true")
    parser.add_argument("--official", metavar="PATH",
                        help="a checkout of hustvl/WeakCLIP: also measure the official network (variant 'official')")
    parser.add_argument("--official-site", metavar="DIR",
                        help="where mmcv 1.4.0 / mmsegmentation 0.19.0 are (benchmarks/weakclip_official.py --prepare)")
    parser.add_argument("--peak-of", choices=VARIANTS, help=argparse.SUPPRESS)  # the memory subprocess
    args = parser.parse_args(argv)
    if args.peak_of:
        sys.path.insert(0, str(HERE.parent))  # benchmarks.weakclip_official
        print(json.dumps(_peak_one(args.peak_of, args.scales, args.threads, args.official, args.official_site)))
        return 0
    sys.path.insert(0, str(HERE))
    sys.path.insert(0, str(HERE.parent))
    from machine import machine_info

    variants = list(VARIANTS[:3] if args.bf16 else VARIANTS[:2]) + (["official"] if args.official else [])
    result: dict[str, Any] = {"method": "interleaved rounds in one process (order rotated), median after warm-up; "
                                        "memory: each variant alone in a fresh process"}
    result["reduced"] = measure_pseudo_masks(args.scales, rounds=args.rounds, warmup=args.warmup, variants=variants,
                                             threads=args.threads, official=args.official,
                                             official_site=args.official_site)
    print(json.dumps(result["reduced"], indent=2))
    if args.memory:
        result["peak_memory"] = {"scales": args.scales, **measure_peak_memory(variants, args.scales, args.threads,
                                                                              args.official, args.official_site)}
        print(json.dumps(result["peak_memory"], indent=2))
    if args.full:
        result["full"] = measure_pseudo_masks(FULL_SCALES, rounds=1, warmup=0, variants=variants, threads=args.threads,
                                              official=args.official, official_site=args.official_site)
        print(json.dumps(result["full"], indent=2))
    result["machine"] = machine_info()
    if not args.no_save:
        from wsss_kit.atomic import write_text

        write_text(Path(args.results), json.dumps(result, indent=2) + "\n")
        print(f"wrote {args.results}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
