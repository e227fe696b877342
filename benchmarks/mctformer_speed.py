"""MCTformer CAM extraction and training step: wsss_kit against the official code's procedure.

    python benchmarks/mctformer_speed.py [--what cams,step] [--version 2] [--size 448]
        [--scales 1] [--batch 4] [--step-size 224] [--rounds 5] [--official PATH] [--no-memory]
        [--out FILE]

Variants, all with the same (random) DeiT-S weights, 20 classes, all present (the worst case):

* ``ours``: ``cams/mctformer_v{1,2}`` as the toolkit runs it: ``cams()`` (unit images, flip and
  original in one batch, explicit attention only where it is read) and ``forward(images, labels)``
  (fused SDPA) with the trainer's optimizer (``wsss_kit.engine.build_optimizer``: AdamW with
  ``optimizer_impl: auto``, the fused kernel).
* ``official_like``: what the official code (xulianuwa/MCTformer, commit 96065977) computes, written
  here on the same modules: every block forms its explicit attention and returns it, all blocks'
  maps are stacked and averaged over heads, each view (scale, mirror) is its own forward, the
  refinement is the broadcast ``matmul(patch_attn.unsqueeze(1), cams[..., None])``, the maps go to
  NumPy, are masked, mirrored, summed and normalised class by class (``generate_attention_maps_ms``);
  the training forward is the official ``forward`` (V2 also stacks the attention and builds the CAM
  pieces in training mode), ``F.multilabel_soft_margin_loss`` and AdamW as the official run makes it
  (timm's ``create_optimizer``: ``torch.optim.AdamW`` with torch's default kernel, a per-parameter
  loop on the CPU).
* ``official``: the official code itself, imported from a checkout given with ``--official``
  (its ``models.py``/``vision_transformer.py`` run with the installed timm), our weights loaded
  into it; its CAM procedure is ``official_like``'s (the generation script's loop) around its model.

Timing: one process, one thread (``OMP_NUM_THREADS=1`` before starting), one warm-up each, then
``rounds`` rounds that run every variant once in rotating order (``benchmarks.speed.harness``'s
``interleave``/``summarise``, the loop every speed measure uses); medians and the median of the
per-round ratios. :func:`cam_variants` and :func:`step_variants` build the timed callables, for
this script and for ``python -m benchmarks speed mctformer_cams|mctformer_step``. Views of the
official CAM procedure (the resized/mirrored images, which its data loader prepares in worker
processes) are made outside the timed region. Peak memory: each variant
in a child process of its own (peak RSS, reset after building the models, above the RSS then). Before timing,
outputs are checked equal: CAMs (largest difference), logits and loss and, with drop path off, the
parameters after one AdamW step. Results in ``results/mctformer_speed.json``.

Where the time goes (one thread of this CPU, fp32 matrix products at 63-70 GMAC/s): the CAMs of a
448² image and its mirror are 46.7 GMAC (linear layers 34.2, attention products 11.9), a floor of
about 0.7 s; ours spends ~1.0 s (the rest: forming, softmaxing and head-summing the 24 explicit
804² attention maps the CAMs are made of, GELU), the official ~1.7-2.1 s. The V2 step at batch 4,
224² is 60.8 GMAC (linear layers forward and backward 55.0), a floor of about 0.9 s; the official
step takes ~1.3 s, so 1.5x faster in fp32 is out of reach; ours saves its attention stacking and
the per-parameter AdamW loop (fused AdamW, ``train.optimizer_impl: auto``), and for V1 the last
block's patch rows, which the logits never read.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
import torch
import torch.nn.functional as F

RESULTS = Path(__file__).resolve().parent / "results"
BACKBONE = "deit_small_patch16_224"
MEAN = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)
STD = torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)
LR, WEIGHT_DECAY = 6.25e-5, 0.05

__all__ = ["cam_variants", "measure_mctformer_cams", "measure_mctformer_step", "step_variants"]


# --------------------------------------------------------------------------- models
def build_ours(version: int, num_classes: int, drop_path_rate: float = 0.1, seed: int = 0) -> Any:
    """``cams/mctformer_v{version}`` on DeiT-S with random weights (trunc-normal tokens)."""
    import wsss_kit

    torch.manual_seed(seed)
    return wsss_kit.create("cams", f"mctformer_v{version}", num_classes=num_classes, backbone=BACKBONE,
                           drop_path_rate=drop_path_rate)


def load_official(path: str | os.PathLike[str]) -> Any:
    """The official ``models`` module from a checkout of xulianuwa/MCTformer (commit 96065977).

    Its files import each other by top-level name (``from vision_transformer import ...``); they are
    loaded under those names from ``path`` without putting the checkout on ``sys.path``.
    """
    root = Path(path)
    for name in ("vision_transformer", "models"):
        if not (root / f"{name}.py").is_file():
            raise FileNotFoundError(f"--official {root}: no {name}.py; give a checkout of xulianuwa/MCTformer")
    modules = {}
    for name, alias in (("vision_transformer", "vision_transformer"), ("models", "mctformer_official_models")):
        spec = importlib.util.spec_from_file_location(alias, root / f"{name}.py")
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        sys.modules[alias] = module
        import warnings

        with warnings.catch_warnings():  # its registry entries shadow timm's vit_* names (not used here)
            warnings.simplefilter("ignore")
            spec.loader.exec_module(module)
        modules[name] = module
    return modules["models"]


def build_official(models: Any, ours: Any, version: int, num_classes: int, drop_path_rate: float = 0.1) -> Any:
    """The official network with ``ours``' weights (same names; its unused final norm stays random)."""
    factory = getattr(models, f"deit_small_MCTformerV{version}_patch16_224")
    import contextlib
    import io

    with contextlib.redirect_stdout(io.StringIO()):  # its constructors print(self.training)
        net = factory(num_classes=num_classes, drop_path_rate=drop_path_rate)
    missing, unexpected = net.load_state_dict(ours.state_dict(), strict=False)
    allowed = {"norm.weight", "norm.bias"} | ({"head.weight", "head.bias"} if version == 1 else set())
    if set(missing) - allowed or unexpected:
        raise RuntimeError(f"official MCTformer V{version}: missing {sorted(set(missing) - allowed)}, "
                           f"unexpected {sorted(unexpected)}")
    return net


def _official_block(block: Any, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The official ``Block.forward`` / ``Attention.forward`` on a timm block's modules."""
    attn = block.attn
    b, n, d = x.shape
    h = block.norm1(x)
    qkv = attn.qkv(h).reshape(b, n, 3, attn.num_heads, d // attn.num_heads).permute(2, 0, 3, 1, 4)
    q, k, v = qkv[0], qkv[1], qkv[2]
    weights = ((q @ k.transpose(-2, -1)) * attn.scale).softmax(dim=-1)
    out = (attn.attn_drop(weights) @ v).transpose(1, 2).reshape(b, n, d)
    x = x + block.drop_path1(attn.proj_drop(attn.proj(out)))
    x = x + block.drop_path2(block.mlp(block.norm2(x)))
    return x, weights


class OfficialLike(torch.nn.Module):
    """The official MCTformerV1/V2 ``forward`` (commit 96065977) over a wsss_kit MCTformer's modules.

    Inputs are normalised images ``(B, 3, H, W)``, as the official data loader feeds them.
    ``forward(x, return_att=True, n_layers)`` → ``(logits (B, C), cams (B, C, h, w) or (B, C, P),
    patch_attn (depth, B, P, P))``; without ``return_att`` the logits (V2: and the patch logits).
    """

    def __init__(self, ours: Any) -> None:
        super().__init__()
        self.ours = ours
        self.version = ours.version
        self.num_classes = ours.num_classes

    def forward(self, x: torch.Tensor, return_att: bool = False, n_layers: int = 12) -> Any:
        m, c = self.ours, self.num_classes
        b, _, w, h = x.shape
        t = m.patch_embed.proj(x).flatten(2).transpose(1, 2)
        grid = (w // m.patch_size[0], h // m.patch_size[1])
        t = torch.cat([m.cls_token.expand(b, -1, -1), t], dim=1)
        t = m.pos_drop(t + m._pos_embed_for(w, h, grid))
        attn_weights = []
        for blk in m.blocks:
            t, weights = _official_block(blk, t)
            attn_weights.append(weights)
        stacked = torch.stack(attn_weights).mean(dim=2)  # depth × B × N × N
        mtatt = stacked[-n_layers:].sum(0)[:, :c, c:]
        patch_attn = stacked[:, :, c:, c:]
        logits = t[:, :c].mean(-1)
        if self.version == 1:
            return (logits, mtatt, patch_attn) if return_att else logits
        x_patch = m.head(t[:, c:].reshape(b, *grid, -1).permute(0, 3, 1, 2).contiguous())
        patch_logits = F.adaptive_avg_pool2d(x_patch, 1).squeeze(3).squeeze(2)
        feature_map = F.relu(x_patch.detach().clone())
        cams = mtatt.reshape(b, c, *grid) * feature_map
        return (logits, cams, patch_attn) if return_att else (logits, patch_logits)


def official_views(image: torch.Tensor, scales: Sequence[float], flip: bool) -> list[torch.Tensor]:
    """The official multi-scale loader's list: per scale the normalised image, then (with flip) its mirror."""
    h, w = image.shape[-2:]
    views = []
    for s in scales:
        scaled = image if s == 1.0 else F.interpolate(image, size=(round(h * s), round(w * s)), mode="bilinear",
                                                      align_corners=False)
        scaled = (scaled - MEAN) / STD
        views += [scaled, scaled.flip(-1)] if flip else [scaled]
    return views


def official_cams(net: Callable[..., Any], views: list[torch.Tensor], target: torch.Tensor, version: int,
                  patch_size: int = 16, n_layers: int = 3, flip: bool = True) -> dict[int, np.ndarray]:
    """``generate_attention_maps_ms`` for one image: ``{class: (H, W) map in [0, 1]}`` for present classes."""
    nb_classes = target.shape[-1]
    h_orig, w_orig = views[0].shape[-2:]
    cam_list = []
    for s, images in enumerate(views):
        w_featmap, h_featmap = images.shape[2] // patch_size, images.shape[3] // patch_size
        _, cls_attentions, patch_attn = net(images, return_att=True, n_layers=n_layers)
        if version == 1:
            cls_attentions = cls_attentions.reshape(1, nb_classes, w_featmap, h_featmap)
        patch_attn = torch.sum(patch_attn, dim=0)
        cls_attentions = torch.matmul(patch_attn.unsqueeze(1), cls_attentions.view(
            cls_attentions.shape[0], cls_attentions.shape[1], -1, 1)).reshape(1, nb_classes, w_featmap, h_featmap)
        cls_attentions = F.interpolate(cls_attentions, size=(h_orig, w_orig), mode="bilinear",
                                       align_corners=False)[0]
        cls_attentions = cls_attentions.cpu().numpy() * target.clone().view(nb_classes, 1, 1).cpu().numpy()
        if flip and s % 2 == 1:
            cls_attentions = np.flip(cls_attentions, axis=-1)
        cam_list.append(cls_attentions)
    sum_cam = torch.from_numpy(np.sum(cam_list, axis=0)).unsqueeze(0)
    out = {}
    for cls_ind in range(nb_classes):
        if target[0, cls_ind] > 0:
            a = sum_cam[0, cls_ind, :]
            out[cls_ind] = ((a - a.min()) / (a.max() - a.min() + 1e-8)).cpu().numpy()
    return out


# --------------------------------------------------------------------------- helpers
def _timed(fns: dict[str, Callable[[], Any]], rounds: int) -> dict[str, Any]:
    """The harness's interleaved rounds (one warm-up) and summary against ``ours``, with every
    counted call's seconds (``rounds_s``) kept for the results file."""
    from benchmarks.speed.harness import interleave, summarise

    timed = interleave(fns, rounds, warmup=1)
    summary = summarise(timed, baseline="ours")
    for name, row in summary.items():
        row["rounds_s"] = [round(t, 4) for t in timed.seconds[name]]
    return summary


def _child_memory(what: str, variant: str, kwargs: dict[str, Any]) -> dict[str, Any]:
    cmd = [sys.executable, str(Path(__file__).resolve()), "--memory-child", what, "--variant", variant,
           "--child-kwargs", json.dumps(kwargs)]
    proc = subprocess.run(cmd, capture_output=True, text=True, env=dict(os.environ, HF_HUB_OFFLINE="1"))
    if proc.returncode != 0:
        raise RuntimeError(f"memory child {what}/{variant} failed:\n{proc.stderr[-3000:]}")
    return dict(json.loads(proc.stdout.strip().splitlines()[-1]))


# --------------------------------------------------------------------------- CAM extraction
def cam_variants(version: int, size: int, scales: Sequence[float], flip: bool, num_classes: int,
                 official: str | None, variants: Sequence[str]) -> dict[str, Callable[[], Any]]:
    """``{variant: CAMs of one image}`` (no gradients) for ``variants`` among ``ours``,
    ``official_like`` and ``official`` (which needs ``official``, a checkout), all on the same random
    DeiT-S weights and one random ``size``² image with all ``num_classes`` classes present. Each call
    returns ``ours``' ``(C, H, W)`` array or the official procedure's ``{class: (H, W)}``."""
    ours = build_ours(version, num_classes).eval()
    torch.manual_seed(1)
    image = torch.rand(1, 3, size, size)
    labels = torch.ones(1, num_classes)
    views = official_views(image, scales, flip)
    fns: dict[str, Callable[[], Any]] = {}
    if "ours" in variants:
        fns["ours"] = lambda: ours.cams(image, labels, scales=scales, flip=flip)[0].numpy()
    if "official_like" in variants:
        like = OfficialLike(ours).eval()
        fns["official_like"] = lambda: official_cams(like, views, labels, version, flip=flip)
    if "official" in variants:
        if official is None:
            raise ValueError("variant 'official' needs official=<checkout of xulianuwa/MCTformer>")
        net = build_official(load_official(official), ours, version, num_classes).eval()
        fns["official"] = lambda: official_cams(net, views, labels, version, flip=flip)
    return {name: _no_grad(fn) for name, fn in fns.items()}


def _no_grad(fn: Callable[[], Any]) -> Callable[[], Any]:
    def run() -> Any:
        with torch.no_grad():
            return fn()
    return run


def _cam_difference(outputs: dict[str, Any]) -> dict[str, float]:
    ours = outputs["ours"]
    diff = {}
    for name, out in outputs.items():
        if name != "ours":
            diff[name] = float(max(np.abs(ours[c] - out[c]).max() for c in out))
    return diff


def measure_mctformer_cams(version: int = 2, size: int = 448, scales: Sequence[float] = (1.0,), flip: bool = True,
                           num_classes: int = 20, rounds: int = 5, official: str | None = None,
                           memory: bool = True) -> dict[str, Any]:
    """CAM extraction of one ``size``×``size`` image (all ``num_classes`` present), ours vs official(-like).

    Returns ``{"config", "seconds": {variant: {median_s, min_s, rounds_s, ratio_to_ours}},
    "max_cam_difference": {variant: float}, "peak_memory_mb": {variant: {...}}, "machine"}``;
    ``ratio_to_ours`` > 1 means the variant is slower than ours by that factor.
    """
    from benchmarks.machine import machine_info

    variants = ["ours", "official_like"] + (["official"] if official else [])
    config = {"version": version, "size": size, "scales": list(scales), "flip": flip, "num_classes": num_classes,
              "classes_present": num_classes, "rounds": rounds, "backbone": BACKBONE, "weights": "random",
              "patch_refine": True, "cam_layers": 3, "official": official}
    load_before = [round(v, 2) for v in os.getloadavg()]
    fns = cam_variants(version, size, scales, flip, num_classes, official, variants)
    outputs = {name: fn() for name, fn in fns.items()}
    outputs["ours"] = {c: outputs["ours"][c] for c in range(num_classes)}
    difference = _cam_difference(outputs)
    result: dict[str, Any] = {"config": config, "seconds": _timed(fns, rounds), "max_cam_difference": difference}
    if memory:
        kwargs = {"version": version, "size": size, "scales": list(scales), "flip": flip,
                  "num_classes": num_classes, "official": official}
        result["peak_memory_mb"] = {v: _child_memory("cams", v, kwargs) for v in variants}
    result["machine"] = machine_info(load_average_before=load_before, threads=torch.get_num_threads())
    return result


# --------------------------------------------------------------------------- training step
class _Step:
    """One training step of a variant: forward, loss, zero_grad, backward, AdamW step."""

    def __init__(self, variant: str, version: int, num_classes: int, drop_path_rate: float,
                 official: str | None) -> None:
        self.variant, self.version = variant, version
        self.ours = build_ours(version, num_classes, drop_path_rate).train()
        if variant == "ours":
            self.net: Any = self.ours
        elif variant == "official_like":
            self.net = OfficialLike(self.ours).train()
        else:
            if official is None:
                raise ValueError("variant 'official' needs official=<checkout of xulianuwa/MCTformer>")
            self.net = build_official(load_official(official), self.ours, version, num_classes,
                                      drop_path_rate).train()
        if variant == "ours":  # the trainer's optimizer, as `wsss train` builds it
            from wsss_kit.engine import TrainConfig, build_optimizer

            config = TrainConfig(steps=1, lr=LR, optimizer="adamw", weight_decay=WEIGHT_DECAY)
            self.optimizer: torch.optim.Optimizer = build_optimizer(self.ours, config)
        else:  # timm's create_optimizer of the official run: torch's AdamW, default kernel
            params = self.ours.param_groups(LR) if variant == "official_like" else _official_groups(self.net)
            self.optimizer = torch.optim.AdamW(params, lr=LR, weight_decay=WEIGHT_DECAY)

    def __call__(self, images: torch.Tensor, labels: torch.Tensor) -> float:
        if self.variant == "ours":
            loss = self.net(images, labels)["loss"]
        else:
            out = self.net((images - MEAN) / STD)
            logits, patch_logits = out if self.version == 2 else (out, None)
            loss = F.multilabel_soft_margin_loss(logits, labels)
            if patch_logits is not None:
                loss = loss + F.multilabel_soft_margin_loss(patch_logits, labels)
        self.optimizer.zero_grad()
        loss.backward()
        self.optimizer.step()
        return float(loss.detach())

    def parameters(self) -> dict[str, torch.Tensor]:
        return {k: v.detach().clone() for k, v in self.net.named_parameters() if not k.startswith("norm.")}


def _step_batch(batch: int, size: int, num_classes: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The measured batch: ``batch`` random ``size``² images and multi-hot labels (seed 2)."""
    torch.manual_seed(2)
    return torch.rand(batch, 3, size, size), (torch.rand(batch, num_classes) < 0.3).float()


def _official_groups(net: Any) -> list[dict[str, Any]]:
    """timm's ``create_optimizer`` grouping of the official run: no decay for 1-d tensors and its
    ``no_weight_decay()`` names (the class tokens and position embeddings)."""
    skip = {"cls_token", "pos_embed"}
    decay = [p for n, p in net.named_parameters() if p.ndim > 1 and n not in skip]
    no_decay = [p for n, p in net.named_parameters() if p.ndim <= 1 or n in skip]
    return [{"params": decay}, {"params": no_decay, "weight_decay": 0.0}]


def step_variants(version: int, batch: int, size: int, num_classes: int, official: str | None,
                  variants: Sequence[str], images: torch.Tensor | None = None,
                  labels: torch.Tensor | None = None) -> dict[str, Callable[[], Any]]:
    """``{variant: one training step}`` (drop path 0.1, each variant its own model and optimizer;
    a call returns the loss), all on one fixed batch: ``images`` ``(batch, 3, size, size)`` in [0, 1]
    and multi-hot ``labels`` ``(batch, num_classes)``, by default random (seed 2)."""
    if images is None or labels is None:
        images, labels = _step_batch(batch, size, num_classes)
    steps = {v: _Step(v, version, num_classes, 0.1, official) for v in variants}
    return {v: (lambda s=s: s(images, labels)) for v, s in steps.items()}


def measure_mctformer_step(version: int = 2, batch: int = 4, size: int = 224, num_classes: int = 20,
                           rounds: int = 5, official: str | None = None, memory: bool = True) -> dict[str, Any]:
    """One training step (batch ``batch`` of ``size``², fp32, drop path 0.1, AdamW), ours vs official(-like).

    Before timing, one step of each variant from the same weights with drop path off: the largest
    difference of the losses and of the parameters after the step. Returns the same layout as
    :func:`measure_mctformer_cams` (``"max_loss_difference"``, ``"max_update_difference"``).
    """
    from benchmarks.machine import machine_info

    variants = ["ours", "official_like"] + (["official"] if official else [])
    config = {"version": version, "batch": batch, "size": size, "num_classes": num_classes, "rounds": rounds,
              "backbone": BACKBONE, "optimizer": f"AdamW lr {LR} wd {WEIGHT_DECAY} (ours: fused kernel, "
              f"optimizer_impl auto; official: torch's default kernel)", "drop_path_rate": 0.1,
              "precision": "fp32", "official": official}
    load_before = [round(v, 2) for v in os.getloadavg()]
    images, labels = _step_batch(batch, size, num_classes)
    # equality: drop path off, one step each from identical weights
    steps = {v: _Step(v, version, num_classes, 0.0, official) for v in variants}
    losses = {v: s(images, labels) for v, s in steps.items()}
    after = {v: s.parameters() for v, s in steps.items()}
    loss_diff = {v: abs(losses[v] - losses["ours"]) for v in variants if v != "ours"}
    update_diff = {}
    for v in variants:
        if v == "ours":
            continue
        prefix = "ours." if v == "official_like" else ""
        update_diff[v] = max(float((after["ours"][k] - after[v][prefix + k]).abs().max()) for k in after["ours"])
    del steps, after
    fns = step_variants(version, batch, size, num_classes, official, variants, images, labels)
    result: dict[str, Any] = {"config": config, "seconds": _timed(fns, rounds), "loss": losses,
                              "max_loss_difference": loss_diff, "max_update_difference": update_diff}
    if memory:
        kwargs = {"version": version, "batch": batch, "size": size, "num_classes": num_classes, "official": official}
        result["peak_memory_mb"] = {v: _child_memory("step", v, kwargs) for v in variants}
    result["machine"] = machine_info(load_average_before=load_before, threads=torch.get_num_threads())
    return result


def _memory_child(what: str, variant: str, kwargs: dict[str, Any]) -> dict[str, Any]:
    if what == "cams":
        fn = cam_variants(kwargs["version"], kwargs["size"], kwargs["scales"], kwargs["flip"], kwargs["num_classes"],
                        kwargs["official"], [variant])[variant]
    else:
        fn = step_variants(kwargs["version"], kwargs["batch"], kwargs["size"], kwargs["num_classes"],
                         kwargs["official"], [variant])[variant]
    from benchmarks.machine import peak_rss_mb, reset_peak_rss, rss_mb

    reset = reset_peak_rss()
    before = rss_mb()
    fn()
    fn()
    peak = peak_rss_mb()
    return {"rss_before_mb": round(before), "peak_rss_mb": round(peak), "peak_above_before_mb": round(peak - before),
            "peak_since": "models built" if reset else "process start (clear_refs unavailable)"}


# --------------------------------------------------------------------------- CLI
def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--what", default="cams,step")
    parser.add_argument("--version", default="2", help="1, 2 or 1,2")
    parser.add_argument("--size", type=int, default=448, help="CAM image size")
    parser.add_argument("--scales", default="1")
    parser.add_argument("--batch", type=int, default=4, help="training batch")
    parser.add_argument("--step-size", type=int, default=224, help="training crop")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--official", help="checkout of xulianuwa/MCTformer (commit 96065977) to measure too")
    parser.add_argument("--no-memory", action="store_true")
    parser.add_argument("--out", help="results JSON (default results/mctformer_speed.json)")
    parser.add_argument("--memory-child", help=argparse.SUPPRESS)
    parser.add_argument("--variant", help=argparse.SUPPRESS)
    parser.add_argument("--child-kwargs", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.memory_child:
        print(json.dumps(_memory_child(args.memory_child, args.variant, json.loads(args.child_kwargs))))
        return 0
    what = [w.strip() for w in args.what.split(",") if w.strip()]
    if set(what) - {"cams", "step"}:
        parser.error(f"--what takes cams and/or step; got {args.what!r}")
    versions = [int(v) for v in args.version.split(",")]
    scales = tuple(float(s) for s in args.scales.split(","))
    record: dict[str, Any] = {"method": (
        "one process, torch threads as started (OMP_NUM_THREADS), every variant built with the same random "
        "DeiT-S weights; one warm-up each, then rounds that run every variant once in rotating order; "
        "median seconds and the median of per-round ratios; peak memory from one child process per variant")}
    for version in versions:
        if "cams" in what:
            res = measure_mctformer_cams(version, args.size, scales, True, rounds=args.rounds, official=args.official,
                                         memory=not args.no_memory)
            record[f"cams_v{version}"] = res
            print(f"V{version} CAMs {args.size}² scales {list(scales)} + flip:",
                  {k: (v["median_s"], v.get("ratio_to_ours")) for k, v in res["seconds"].items()},
                  "max diff", res["max_cam_difference"], flush=True)
        if "step" in what:
            res = measure_mctformer_step(version, args.batch, args.step_size, rounds=args.rounds,
                                         official=args.official, memory=not args.no_memory)
            record[f"step_v{version}"] = res
            print(f"V{version} step batch {args.batch} {args.step_size}²:",
                  {k: (v["median_s"], v.get("ratio_to_ours")) for k, v in res["seconds"].items()},
                  "loss diff", res["max_loss_difference"], "update diff", res["max_update_difference"], flush=True)
    from wsss_kit.atomic import write_text

    out = Path(args.out or RESULTS / "mctformer_speed.json")
    write_text(out, json.dumps(record, indent=2) + "\n")
    print(f"saved {out}")
    return 0


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    raise SystemExit(main())
