"""The pipeline stages. Each reads the previous stages' files in the run directory and writes its own.

    train_cam → cams → seeds → train_refiner → pseudo_masks → train_head → eval

Inference stages skip items whose output file exists (resume) and handle only this process's shard.
A stage returns a dict recorded in the manifest, or ``None`` when other shards are still pending.
A stage with nothing to do returns ``{"skipped": True, "reason": ...}`` and counts as complete:
``train_refiner`` for a refiner that is not trainable; ``train_cam`` and ``cams`` for a config
without a ``cam`` section whose seeds come from ``seeds.source`` (a folder of seed masks);
``train_refiner`` and ``train_head`` for a node with ``checkpoint:`` (released weights, loaded and not
trained: ``{"skipped": True, "reason": "from checkpoint <spec>", "checkpoint": <spec>}``).
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any, cast

import torch

from ..config import build, check_keys, is_node, split_type
from ..data.artifacts import MaskTargetDataset
from ..data.transforms import build_augment
from ..engine import TrainConfig, seed_everything, train
from ..engine.threads import current_plan
from ..errors import ConfigError, PluginError
from ..interfaces import CAMGenerator, HasTrainingStep
from ..progress import Progress
from ..registry import accepted_kwargs, default_registry
from ..weights import load_checkpoint
from .cam_export import export_cams, seed_from_cam_file
from .checkpoints import build_for_trained_weights, build_from_checkpoint, node_checkpoint, trained_weights_file
from .context import SPLITS, RunContext
from .evaluation import evaluate_cams, evaluate_masks
from .items import all_exist, item_names
from .mask_writers import HEAD_INFER_KEYS, head_infer_settings, write_predictions, write_pseudo_masks
from .refiner_targets import make_cam_targets, refiner_target_kind
from .seed_masks import check_seed_masks, copy_seed_masks, raise_seed_problems
from .sources import pseudo_mask_sources, seed_sources
from .stage_logging import cam_pictures, head_pictures, stage_loggers


def _train_config(ctx: RunContext, section: str) -> TrainConfig:
    cfg = dict(ctx.get(section))
    cfg.setdefault("seed", ctx.seed)
    cfg.setdefault("device", str(ctx.device))
    cfg.setdefault("num_workers", current_plan().loader_workers)  # the run's threads plan, unless set here
    return TrainConfig.from_dict(cfg, where=section)


def _pending(ctx: RunContext, split: str, folder: str, suffix: str) -> tuple[Any, list[str], Path, list[int]]:
    """``(dataset, names, output folder, indices of this shard without an output file yet)``."""
    ds = ctx.dataset(split)
    names = item_names(ds, f"data.{split}")
    out = ctx.path(folder, split)
    todo = [i for i in ctx.items(ds) if not (out / f"{names[i]}{suffix}").exists()]
    return ds, names, out, todo


# --------------------------------------------------------------------------- train_cam
def _without_cams(ctx: RunContext) -> dict[str, Any] | None:
    """``{"skipped": ...}`` when the config has no ``cam`` section (the seeds come from
    ``seeds.source``); ``None`` when CAMs are to be computed."""
    if ctx.get("cam", None) is not None:
        return None
    if pseudo_mask_sources(ctx) and not seed_sources(ctx):
        return {"skipped": True, "reason": "no cam section: the pseudo masks come from pseudo_masks.source"}
    sources = seed_sources(ctx)
    missing = [split for split in SPLITS if split not in sources]
    if missing:
        raise ConfigError(
            f"the config has no cam section, so seeds cannot be computed for data.{missing[0]}: add a cam "
            f"section (cam.model, cam.train, ...), or give seed masks with seeds.source: DIR (a folder of "
            f"<name>.png for both splits) or seeds.source: {{train: DIR, eval: DIR}}")
    return {"skipped": True, "reason": "no cam section: the seeds come from seeds.source"}


def _cam_not_trained(ctx: RunContext) -> dict[str, Any] | None:
    """``train_cam``'s ``{"skipped": ...}``: no cam section, or ``cam.model`` names released weights."""
    skipped = _without_cams(ctx)
    if skipped is None:
        skipped = _from_checkpoint(ctx, ctx.get("cam.model", None), "train_cam", ("cam.train", "cam.augment"))
    return skipped


def trained_cam_model(ctx: RunContext, checkpoint: Any = None, run_dir: Path | None = None,
                      num_classes: int | None = None, *, untrained_ok: bool = False) -> tuple[CAMGenerator, str]:
    """``cam.model`` on the run's device in eval mode with its weights, and a line saying which:
    ``checkpoint`` (e.g. ``--checkpoint``), else the node's ``checkpoint:``, else
    ``<run_dir>/train_cam/model.pt`` (``run_dir``: the run's). With ``untrained_ok`` (``wsss cam``) a
    missing ``model.pt`` leaves the model as built from its arguments instead of raising.

    The model is built under the run's seed, so that parts its weights leave out (or all of it,
    untrained) get the same initialisation in every shard. ``num_classes``: ``C``, default the run's.
    """
    node = ctx.get("cam.model")
    if not is_node(node):
        raise ConfigError(f"{ctx.source}: cam.model must be a CAM network node like "
                          "{type: cams/resnet_cam, backbone: resnet50}")
    seed_everything(ctx.seed)
    model, used = _trained_model(ctx, "cam.model", "train_cam", "trained CAM network",
                                 ctx.num_classes if num_classes is None else num_classes, checkpoint, run_dir,
                                 untrained_ok)
    assert isinstance(model, CAMGenerator)  # a cams/ node: wsss_kit.create checked the interface
    return model, used


def _trained_model(ctx: RunContext, key: str, stage: str, what: str, num_classes: int, checkpoint: Any,
                   run_dir: Path | None, untrained_ok: bool = False) -> tuple[torch.nn.Module, str]:
    """The node ``key`` built with ``num_classes`` outputs on the run's device in eval mode with its
    weights, and a line saying which: ``checkpoint``, else the node's ``checkpoint:``, else
    ``<run_dir>/<stage>/model.pt`` (with ``untrained_ok``, the model as built when that is missing)."""
    node = ctx.get(key)
    trained = Path(run_dir or ctx.run_dir) / stage / "model.pt"
    if checkpoint is not None or node_checkpoint(node) is not None:
        model, spec = build_from_checkpoint(node, key, checkpoint, num_classes=num_classes)
        return model.to(ctx.device).eval(), f"checkpoint {spec}"
    if untrained_ok and not trained.is_file():
        model = build(node, key, num_classes=num_classes)
        return model.to(ctx.device).eval(), (f"{node['type']} as built from {key}'s own arguments (no "
                                             f"checkpoint, and no {trained})")
    weights = trained_weights_file(trained, what, stage, key)
    model = build_for_trained_weights(node, key, num_classes=num_classes)
    load_checkpoint(model, weights, purpose=what)
    return model.to(ctx.device).eval(), f"{weights} (trained by the run)"


def train_cam(ctx: RunContext) -> dict[str, Any]:
    skipped = _cam_not_trained(ctx)
    if skipped is not None:
        return skipped
    ds = ctx.dataset("train", augment=ctx.get("cam.augment", None))
    config = _train_config(ctx, "cam.train")
    seed_everything(config.seed)  # the model's random initialisation is part of the run
    model = build(ctx.get("cam.model"), "cam.model", num_classes=ctx.num_classes)
    result = train(model, ds, config, ctx.path("train_cam"), desc="train CAM",
                   loggers=stage_loggers(ctx, "train_cam", config.steps, cam_pictures(ctx, model)))
    return {"steps": result.steps, "final_loss": result.final_loss, "seconds": round(result.seconds, 1)}


# --------------------------------------------------------------------------- cams
def cam_infer_settings(ctx: RunContext) -> tuple[tuple[float, ...], bool, int]:
    """``cam.infer`` as ``(scales, flip, batch_size)``."""
    infer = dict(ctx.get("cam.infer", {}) or {})
    check_keys(infer, ("scales", "flip", "batch_size"), "cam.infer")
    try:
        scales = tuple(float(s) for s in infer.get("scales", (1.0,)))
        batch_size = int(infer.get("batch_size", 1))
    except (TypeError, ValueError):
        raise ConfigError(f"cam.infer: scales must be a list of numbers and batch_size an integer, got "
                          f"{infer.get('scales')!r} and {infer.get('batch_size')!r}") from None
    if not scales or any(not s > 0 for s in scales) or batch_size < 1:
        raise ConfigError(f"cam.infer: scales must be positive numbers and batch_size >= 1, got "
                          f"{list(scales)} and {batch_size}")
    return scales, bool(infer.get("flip", False)), batch_size


def cams(ctx: RunContext) -> dict[str, Any] | None:
    skipped = _without_cams(ctx)
    if skipped is not None:
        return skipped
    scales, flip, batch_size = cam_infer_settings(ctx)
    model = None
    complete = True
    for split in SPLITS:
        ds, names, out, todo = _pending(ctx, split, "cams", ".npz")
        if todo and model is None:
            model, _ = trained_cam_model(ctx)
        export_cams(model, ds, todo, out, scales=scales, flip=flip, batch_size=batch_size, device=ctx.device,
                    desc=f"CAMs [{split}]", where=f"data.{split}")
        complete &= all_exist(out, names, ".npz")
    if not complete:
        return None
    return {split: evaluate_cams(ctx, split) for split in SPLITS}


# --------------------------------------------------------------------------- seeds
def cams_skipped(ctx: RunContext) -> bool:
    """Whether the run computed no CAMs (no ``cam`` section; the seeds were brought in)."""
    return bool(ctx.manifest.info("cams").get("skipped"))


def parse_bg_threshold(value: Any, where: str = "seeds.bg_threshold") -> float | str:
    """A background threshold setting: a number in [0, 1], or ``"auto"`` (the best threshold of a CAM
    sweep); ``where`` names it in the error (``seeds.bg_threshold``, ``--bg-threshold``)."""
    if value == "auto":
        return "auto"
    try:
        number = float(value)
    except (TypeError, ValueError):
        number = math.nan
    if not math.isfinite(number):
        raise ConfigError(f"{where} must be a number (e.g. 0.25) or 'auto', got {value!r}")
    if not 0.0 <= number <= 1.0:
        raise ConfigError(f"{where} must be a number in [0, 1] (CAMs lie in [0, 1]: a threshold outside makes "
                          f"every pixel background or every pixel foreground), got {value!r}")
    return number


def bg_threshold(ctx: RunContext) -> float:
    """``seeds.bg_threshold``; ``auto`` takes the best threshold of the CAM sweep on ``data.train``."""
    value = parse_bg_threshold(ctx.get("seeds.bg_threshold", "auto"))
    if isinstance(value, float):
        return value
    if cams_skipped(ctx):
        raise ConfigError("a background threshold of 'auto' (seeds.bg_threshold, refiner.bg_threshold) is the best "
                          "threshold of the CAM sweep, but this run computed no CAMs (no cam section); set a number "
                          "or null")
    sweep = ctx.manifest.info("cams").get("train") or {}
    if sweep.get("best_threshold") is None:
        raise ConfigError("seeds.bg_threshold: 'auto' needs ground-truth masks on data.train to pick the "
                          "threshold; this dataset has none, so set a number (e.g. 0.15)")
    return float(sweep["best_threshold"])


def _seeds_not_needed(ctx: RunContext) -> dict[str, Any] | None:
    """``{"skipped": ...}`` when the run has neither CAMs nor seed masks and brings its pseudo masks."""
    if ctx.get("cam", None) is None and not seed_sources(ctx) and pseudo_mask_sources(ctx):
        return {"skipped": True, "reason": "no cam section and no seeds.source: the pseudo masks come from "
                                           "pseudo_masks.source"}
    return None


def seeds(ctx: RunContext) -> dict[str, Any] | None:
    skipped = _seeds_not_needed(ctx)
    if skipped is not None:
        return skipped
    check_keys(ctx.get("seeds", {}) or {}, ("bg_threshold", "source", "outside_labels"), "seeds")
    sources = seed_sources(ctx)
    threshold = bg_threshold(ctx) if any(split not in sources for split in SPLITS) else None
    palette = ctx.reference.palette
    complete = True
    for split in SPLITS:
        ds, names, out, todo = _pending(ctx, split, "seeds", ".png")
        if split in sources:
            _note_stray(copy_seed_masks(ds, sources[split], out, todo, palette,
                                        desc=f"seeds [{split}] from {sources[split]}",
                                        outside_labels=ctx.get("seeds.outside_labels", "error")),
                        "seeds", split, ctx.get("seeds.outside_labels", "error"))
        else:
            assert threshold is not None  # set above: this split has no seeds.source
            for i in Progress(len(todo), f"seeds [{split}]").wrap(todo):
                seed_from_cam_file(ctx.path("cams", split, f"{names[i]}.npz"), out / f"{names[i]}.png",
                                   ctx.num_classes, threshold, palette)
        complete &= all_exist(out, names, ".png")
    if not complete:
        return None
    result: dict[str, Any] = {split: evaluate_masks(ctx, split, ctx.path("seeds", split)) for split in SPLITS}
    result["bg_threshold"] = threshold
    if sources:
        result["source"] = {split: str(folder) for split, folder in sources.items()}
    return result


# --------------------------------------------------------------------------- train_refiner
def _refiner_factory(ctx: RunContext) -> tuple[dict[str, Any], Any]:
    """The ``refiner`` node (a dict) and the factory its ``type`` names."""
    node = ctx.get("refiner")
    if not is_node(node):
        raise ConfigError("refiner must be a refiner node like {type: refiners/dense_crf}")
    kind, name = split_type(node["type"], "refiner")
    try:
        return dict(node), default_registry().get(kind, name)
    except PluginError as exc:
        raise ConfigError(f"refiner.type: {exc}") from None


def refiner_extras(factory: Any, ctx: RunContext) -> dict[str, Any]:
    """What the pipeline knows and a refiner may take: ``class_names`` (the ``C`` foreground names of
    ``data.train``, background excluded) and ``num_classes`` (``C``), each passed only when the
    factory declares that keyword (the config's own value wins)."""
    accepted = accepted_kwargs(factory) or ()
    known = {"class_names": list(ctx.class_names), "num_classes": ctx.num_classes}
    return {k: v for k, v in known.items() if k in accepted}


def _refiner(ctx: RunContext, checkpoint: Any = None) -> tuple[Any, Any]:
    """The built refiner and the checkpoint it was loaded from (``checkpoint``, else the node's
    ``checkpoint:``, else ``None``: as built)."""
    node, factory = _refiner_factory(ctx)
    if node.get("bg_threshold") == "auto":
        node["bg_threshold"] = bg_threshold(ctx)
    return build_from_checkpoint(node, "refiner", checkpoint, **refiner_extras(factory, ctx))


def refiner_is_trainable(ctx: RunContext) -> bool:
    """Whether the configured refiner learns (``trainable = True``), read from its class when the
    factory is one (nothing is built), else from a built instance."""
    node, factory = _refiner_factory(ctx)
    if isinstance(factory, type):
        return bool(getattr(factory, "trainable", False))
    return bool(getattr(_refiner(ctx)[0], "trainable", False))


def _refiner_not_trainable(ctx: RunContext) -> dict[str, Any] | None:
    """``{"skipped": ...}`` when the refiner does not learn or the pseudo masks are brought in
    (``train_refiner`` has nothing to do)."""
    if pseudo_mask_sources(ctx):
        return {"skipped": True, "reason": "the pseudo masks come from pseudo_masks.source"}
    node = ctx.get("refiner")
    if refiner_is_trainable(ctx):
        return _from_checkpoint(ctx, node, "train_refiner", ("refiner_train", "refiner_augment"))
    for key in ("refiner_train", "refiner_augment"):
        if ctx.get(key, None) is not None:
            print(f"[wsss] train_refiner: note: {key} is ignored, {node['type']} does not train")
    return {"skipped": True, "reason": f"{node['type']} is not trainable"}


def _from_checkpoint(ctx: RunContext, node: Any, stage: str, unused: tuple[str, ...]) -> dict[str, Any] | None:
    """The ``{"skipped": ...}`` record of a training stage whose node names released weights
    (``checkpoint:``): they are loaded by the stages after it, nothing is trained."""
    spec = node_checkpoint(node)
    if spec is None:
        return None
    for key in unused:
        if ctx.get(key, None) is not None:
            print(f"[wsss] {stage}: note: {key} is ignored, the weights come from checkpoint {spec}")
    return {"skipped": True, "reason": f"from checkpoint {spec}", "checkpoint": str(spec)}


def train_refiner(ctx: RunContext) -> dict[str, Any]:
    """Train a trainable refiner on ``data.train``: ``refiner_train`` (a TrainConfig) and
    ``refiner_augment``; writes ``train_refiner/model.pt``.

    The targets are the run's train seeds (``seeds/train``), or, for a refiner that makes its own
    from the CAMs (``training_targets``, e.g. PSA's confident regions), those
    (:mod:`~wsss_kit.pipeline.refiner_targets`, ``refiner_targets: auto|seeds|cams``).
    The refiner must be an ``nn.Module`` with ``training_step(batch) -> {"loss": ..., terms}``; a
    batch holds ``image`` ``(B, 3, h, w)``, ``target`` (int64 ``(B, h, w)``, 255 = ignore),
    ``labels`` ``(B, C)`` and ``name``. Every seed file is checked first (size, values, classes
    against the image's labels) and all bad files are reported together.
    """
    skipped = _refiner_not_trainable(ctx)
    if skipped is not None:
        return skipped
    node = ctx.get("refiner")
    if ctx.get("refiner_train", None) is None:
        raise ConfigError(f"refiner_train is required: {node['type']} is trainable (e.g. refiner_train: "
                          "{steps: 20000, batch_size: 16, lr: 1.0e-4, optimizer: adamw})")
    config = _train_config(ctx, "refiner_train")
    augment = build_augment(ctx.get("refiner_augment", None))
    base = ctx.dataset("train")
    kind = refiner_target_kind(ctx, _refiner_factory(ctx)[1], has_cams=not cams_skipped(ctx))
    if kind == "seeds":
        seed_dir = ctx.path("seeds", "train")
        raise_seed_problems(check_seed_masks(base, seed_dir, desc="check train seeds"), seed_dir,
                            "train_refiner (targets: the train seeds)")
    seed_everything(config.seed)  # the refiner's random initialisation is part of the run
    refiner, _ = _refiner(ctx)
    if not getattr(refiner, "trainable", False):  # e.g. a configuration whose parts are all frozen
        return {"skipped": True, "reason": f"{node['type']} has nothing to train in this configuration"}
    if not isinstance(refiner, torch.nn.Module) or not isinstance(refiner, HasTrainingStep):
        raise ConfigError(f"refiner {node['type']} says trainable = True but is not an nn.Module with a "
                          "training_step(batch) method")
    target_dir = (make_cam_targets(ctx, refiner, ctx.fingerprints["train_refiner"]) if kind == "cams"
                  else ctx.path("seeds", "train"))
    ds = MaskTargetDataset(base, target_dir, augment=augment)

    def step(model: torch.nn.Module, batch: dict[str, Any]) -> Any:
        return cast(HasTrainingStep, model).training_step(batch)  # checked above

    result = train(refiner, ds, config, ctx.path("train_refiner"), step_fn=step, desc="train refiner",
                   loggers=stage_loggers(ctx, "train_refiner", config.steps))
    out: dict[str, Any] = {"steps": result.steps, "final_loss": result.final_loss,
                           "seconds": round(result.seconds, 1), "images": len(ds), "targets": kind}
    if kind == "cams":
        out["targets_miou"] = evaluate_masks(ctx, "train", target_dir)
    return out


# --------------------------------------------------------------------------- pseudo_masks
def refiner_input(ctx: RunContext, opts: dict[str, Any]) -> str:
    """``pseudo_masks.input``: ``cams`` (the CAM files), ``seeds`` (the seed masks) or ``auto``
    (CAMs when the run computed them, else seeds)."""
    value = str(opts.get("input", "auto"))
    if value not in ("auto", "cams", "seeds"):
        raise ConfigError(f"pseudo_masks.input must be auto, cams or seeds, got {value!r}")
    if value == "auto":
        return "seeds" if cams_skipped(ctx) else "cams"
    if value == "cams" and cams_skipped(ctx):
        raise ConfigError("pseudo_masks.input is cams, but this run computed no CAMs (no cam section); use seeds")
    return value


def trained_refiner(ctx: RunContext, checkpoint: Any = None, run_dir: Path | None = None) -> tuple[Any, str]:
    """The configured refiner with its trained weights, on the run's device in eval mode, and a line
    saying which weights: ``checkpoint`` (e.g. ``--checkpoint``), else the node's ``checkpoint:``,
    else, for a trainable refiner, ``<run_dir>/train_refiner/model.pt`` (``run_dir``: the run's).

    A trainable refiner is built under the seed it was trained with, so that parts its checkpoint
    leaves out (e.g. a frozen backbone that is not saved) get the same initialisation, even random."""
    trainable = refiner_is_trainable(ctx)
    if trainable and ctx.get("refiner_train", None) is not None:
        seed_everything(_train_config(ctx, "refiner_train").seed)
    else:
        seed_everything(ctx.seed)
    if checkpoint is not None or node_checkpoint(ctx.get("refiner")) is not None or not trainable:
        refiner, spec = _refiner(ctx, checkpoint)
        if spec is None:
            return refiner, f"{ctx.get('refiner')['type']} (nothing to train)"
        return refiner.to(ctx.device).eval(), f"checkpoint {spec}"
    if not (Path(run_dir or ctx.run_dir) / "train_refiner" / "model.pt").exists():
        # A trainable type whose configuration freezes every part (e.g. WeakCLIP's Table 4 "direct CLIP"
        # preset): train_refiner wrote no model.pt and the refiner is used as built, under the same seed.
        refiner, _ = _refiner(ctx)
        if not getattr(refiner, "trainable", False):
            return (refiner.to(ctx.device).eval(),
                    f"{ctx.get('refiner')['type']} (nothing to train in this configuration)")
    weights = trained_weights_file(Path(run_dir or ctx.run_dir) / "train_refiner" / "model.pt", "trained refiner",
                                   "train_refiner", "refiner")
    node, factory = _refiner_factory(ctx)
    if node.get("bg_threshold") == "auto":
        node["bg_threshold"] = bg_threshold(ctx)
    refiner = build_for_trained_weights(node, "refiner", **refiner_extras(factory, ctx))
    load_checkpoint(refiner, weights, purpose="trained refiner")
    return refiner.to(ctx.device).eval(), f"{weights} (trained by the run)"


def _note_stray(count: int, section: str, split: str, policy: str) -> None:
    """Say how many brought-in masks had classes outside their image's labels (kept or ignored)."""
    if count:
        done = "kept as they are" if policy == "keep" else "set to 255 (ignore)"
        print(f"[wsss] {section} [{split}]: note: {count} mask(s) have pixels of classes that the image's labels "
              f"lack; {section}.outside_labels is {policy}: {done}")


def _copy_pseudo_masks(ctx: RunContext, sources: dict[str, Path]) -> dict[str, Any] | None:
    """``pseudo_masks.source``: check the brought-in masks and copy them into the run."""
    if ctx.get("refiner", None) is not None:
        print("[wsss] pseudo_masks: note: the refiner is not used, the pseudo masks come from pseudo_masks.source")
    palette = ctx.reference.palette
    complete = True
    for split, folder in sources.items():
        ds, names, out, todo = _pending(ctx, split, "pseudo_masks", ".png")
        policy = ctx.get("pseudo_masks.outside_labels", "error")
        _note_stray(copy_seed_masks(ds, folder, out, todo, palette, desc=f"pseudo masks [{split}] from {folder}",
                                    what=f"pseudo_masks.source {folder}", outside_labels=policy),
                    "pseudo_masks", split, policy)
        complete &= all_exist(out, names, ".png")
    if not complete:
        return None
    result: dict[str, Any] = {split: evaluate_masks(ctx, split, ctx.path("pseudo_masks", split)) for split in sources}
    result["source"] = {split: str(folder) for split, folder in sources.items()}
    return result


def pseudo_masks(ctx: RunContext) -> dict[str, Any] | None:
    opts = dict(ctx.get("pseudo_masks", {}) or {})
    check_keys(opts, ("batch_size", "input", "source", "outside_labels"), "pseudo_masks")
    sources = pseudo_mask_sources(ctx)
    if sources:
        return _copy_pseudo_masks(ctx, sources)
    source = refiner_input(ctx, opts)
    refiner, _ = trained_refiner(ctx)
    device = ctx.device if isinstance(refiner, torch.nn.Module) else torch.device("cpu")
    complete = True
    for split in SPLITS:
        ds, names, out, todo = _pending(ctx, split, "pseudo_masks", ".png")
        write_pseudo_masks(refiner, ds, todo, out, input_kind=source, input_dir=ctx.path(source, split),
                           num_classes=ctx.num_classes, palette=ctx.reference.palette,
                           batch_size=int(opts.get("batch_size", 8)), device=device,
                           desc=f"pseudo masks [{split}]", stage=f"pseudo_masks [{split}]")
        complete &= all_exist(out, names, ".png")
    if not complete:
        return None
    return {split: evaluate_masks(ctx, split, ctx.path("pseudo_masks", split)) for split in SPLITS}


# --------------------------------------------------------------------------- train_head
def _head_from_checkpoint(ctx: RunContext) -> dict[str, Any] | None:
    """``{"skipped": ...}`` when ``head.model`` names released weights (``checkpoint:``)."""
    return _from_checkpoint(ctx, ctx.get("head.model", None), "train_head", ("head.train", "head.augment"))


def trained_head(ctx: RunContext, checkpoint: Any = None, run_dir: Path | None = None) -> tuple[torch.nn.Module, str]:
    """``head.model`` (``C + 1`` outputs) on the run's device in eval mode with its weights, and a line
    saying which: ``checkpoint`` (e.g. ``--checkpoint``), else the node's ``checkpoint:``, else
    ``<run_dir>/train_head/model.pt`` (``run_dir``: the run's)."""
    return _trained_model(ctx, "head.model", "train_head", "trained head", ctx.num_classes + 1, checkpoint, run_dir)


def train_head(ctx: RunContext) -> dict[str, Any]:
    skipped = _head_from_checkpoint(ctx)
    if skipped is not None:
        return skipped
    augment = build_augment(ctx.get("head.augment", None))
    ds = MaskTargetDataset(ctx.dataset("train"), ctx.path("pseudo_masks", "train"), augment=augment)
    config = _train_config(ctx, "head.train")
    seed_everything(config.seed)
    model = build(ctx.get("head.model"), "head.model", num_classes=ctx.num_classes + 1)
    loss_fn = build(ctx.get("head.loss"), "head.loss")

    def step(m: torch.nn.Module, batch: dict[str, Any]) -> dict[str, torch.Tensor]:
        return {"loss": loss_fn(m(batch["image"]), batch["target"])}

    result = train(model, ds, config, ctx.path("train_head"), step_fn=step, desc="train head",
                   loggers=stage_loggers(ctx, "train_head", config.steps, head_pictures(ctx, model)))
    return {"steps": result.steps, "final_loss": result.final_loss, "seconds": round(result.seconds, 1)}


# --------------------------------------------------------------------------- eval
def evaluate_head(ctx: RunContext) -> dict[str, Any] | None:
    infer = dict(ctx.get("head.infer", {}) or {})
    check_keys(infer, HEAD_INFER_KEYS, "head.infer")
    check_keys(ctx.get("eval", {}) or {}, ("pictures",), "eval")
    settings = head_infer_settings(infer)
    ds, names, out, todo = _pending(ctx, "eval", "predictions", ".png")
    if todo:
        model, _ = trained_head(ctx)
        write_predictions(model, ds, todo, out, infer=settings, num_outputs=ctx.num_classes + 1,
                          palette=ctx.reference.palette, device=ctx.device, desc="predict [eval]")
    if not all_exist(out, names, ".png"):
        return None
    return {"eval": evaluate_masks(ctx, "eval", out)}


__all__ = ["bg_threshold", "cam_infer_settings", "parse_bg_threshold", "refiner_extras", "refiner_is_trainable",
           "seed_sources", "refiner_input", "trained_cam_model", "trained_head", "trained_refiner"]
