"""The pipeline's stages, one record each, in pipeline order.

Everything that knows about stages reads :data:`STAGE_TABLE`: the runner (order, folders, what
"nothing to do" means, which stages train), config validation (each stage's declared keys), the
fingerprints that decide whether a finished stage is still valid, the dry-run plan, the report and
the CLI's per-stage verbs. Adding a stage is adding one record here.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

from ..config import get_path
from ..errors import ConfigError
from ..registry import did_you_mean
from . import stages as _fn
from .context import RunContext
from .manifest import fingerprint
from .schema import (
    CRF,
    Augment,
    Bool,
    Choice,
    Device,
    Float,
    Int,
    ListOf,
    Node,
    Null,
    OneOf,
    Section,
    Source,
    Spec,
    Str,
    Train,
    assemble,
)
from .seed_masks import OUTSIDE_LABELS
from .stage_logging import LOGGING_SCHEMA

StageFunction = Callable[[RunContext], "dict | None"]


@dataclass(frozen=True)
class Stage:
    """One stage of a run.

    Attributes:
        name: the stage's name (manifest key, ``--stages``, ``--restart``).
        verb: the ``wsss`` sub-command that runs only this stage.
        summary: one line for help texts and the plan.
        sections: config sections its outputs depend on (besides its upstream stages'): a change
            to any of them invalidates the stage (its fingerprint).
        schema: the keys the stage reads, as ``(dotted key, spec, required)``; ``required`` means
            required whenever the parent section is there.
        needs: config keys the stage cannot run without (unless it has nothing to do); ``"a|b"``: either.
        folders: folders of the run directory it writes (removed by ``--restart``).
        reads: what it reads, for the plan (folders of the run, or a description).
        run: the stage itself: a record for the manifest, or ``None`` while other shards are pending.
        nothing_to_do: the stage's ``{"skipped": True, "reason": ...}`` record when this config gives
            it nothing to do (e.g. ``train_refiner`` for a refiner that does not learn), else ``None``.
        trains: a training stage (one process trains it; not split across ``--shard``).
        report_row: its row title in ``results.md`` (``None``: no row).
    """

    name: str
    verb: str
    summary: str
    sections: tuple[str, ...]
    schema: tuple[tuple[str, Spec, bool], ...]
    needs: tuple[str, ...]
    folders: tuple[str, ...]
    reads: tuple[str, ...]
    run: StageFunction
    nothing_to_do: StageFunction | None = None
    trains: bool = False
    report_row: str | None = None


_SCALES = ListOf(Float(0.0, low_open=True))
_THRESHOLD = OneOf((Choice(("auto",)), Float(0.0, 1.0)))
_DATASET = Node("datasets")
_OUTSIDE_LABELS = Choice(OUTSIDE_LABELS)

STAGE_TABLE: tuple[Stage, ...] = (
    Stage(
        name="train_cam", verb="train-cam", summary="train the CAM network on data.train's image-level labels",
        sections=("seed", "data.train", "cam.model", "cam.train", "cam.augment"),
        schema=(("data.train", _DATASET, True), ("cam.model", Node("cams", checkpoint=True), True),
                ("cam.train", Train(), True),
                ("cam.augment", Augment(), False)),
        needs=("cam",), folders=("train_cam",), reads=("data.train",),
        run=_fn.train_cam, nothing_to_do=_fn._cam_not_trained, trains=True),
    Stage(
        name="cams", verb="cams", summary="write the CAMs of both splits (cams/<split>/<name>.npz) and score them",
        sections=("data.eval", "cam.infer"),
        schema=(("data.eval", _DATASET, True), ("cam.infer.scales", _SCALES, False),
                ("cam.infer.flip", Bool(), False), ("cam.infer.batch_size", Int(1), False)),
        needs=("cam",), folders=("cams",),
        reads=("train_cam/model.pt (or cam.model.checkpoint)", "data.train", "data.eval"),
        run=_fn.cams, nothing_to_do=_fn._without_cams, report_row="CAM (best threshold)"),
    Stage(
        name="seeds", verb="seeds", summary="threshold the CAMs into seed masks (or copy seeds.source)",
        sections=("seeds",),
        schema=(("seeds.bg_threshold", _THRESHOLD, False), ("seeds.source", Source(), False),
                ("seeds.outside_labels", _OUTSIDE_LABELS, False)),
        needs=(), folders=("seeds",), reads=("cams/",),
        run=_fn.seeds, nothing_to_do=_fn._seeds_not_needed, report_row="seeds"),
    Stage(
        name="train_refiner", verb="train-refiner", summary="train a trainable refiner on the seeds or its own targets",
        sections=("refiner", "refiner_train", "refiner_augment", "refiner_targets"),
        schema=(("refiner", Node("refiners", checkpoint=True), False), ("refiner_train", Train(), False),
                ("refiner_augment", Augment(), False),
                ("refiner_targets", OneOf((Choice(("auto", "seeds", "cams")),
                                           Section({"kind": Choice(("auto", "seeds", "cams")),
                                                    "workers": OneOf((Int(0), Null()))}))), False)),
        needs=("refiner",), folders=("train_refiner",), reads=("seeds/train", "cams/train"),
        run=_fn.train_refiner, nothing_to_do=_fn._refiner_not_trainable, trains=True),
    Stage(
        name="pseudo_masks", verb="pseudo-masks",
        summary="refine CAMs or seeds into pseudo masks (or copy pseudo_masks.source)",
        sections=("refiner", "pseudo_masks"),
        schema=(("refiner", Node("refiners", checkpoint=True), False), ("pseudo_masks.batch_size", Int(1), False),
                ("pseudo_masks.input", Choice(("auto", "cams", "seeds")), False),
                ("pseudo_masks.source", Source(), False), ("pseudo_masks.outside_labels", _OUTSIDE_LABELS, False)),
        needs=("refiner|pseudo_masks.source",), folders=("pseudo_masks",),
        reads=("cams/ or seeds/", "train_refiner/model.pt (or refiner.checkpoint)"),
        run=_fn.pseudo_masks, report_row="pseudo masks"),
    Stage(
        name="train_head", verb="train-head", summary="train the segmentation head on the train pseudo masks",
        sections=("head.model", "head.loss", "head.train", "head.augment"),
        schema=(("head.model", Node("heads", checkpoint=True), True), ("head.loss", Node("losses"), True),
                ("head.train", Train(), True), ("head.augment", Augment(), False)),
        needs=("head",), folders=("train_head",), reads=("pseudo_masks/train",),
        run=_fn.train_head, nothing_to_do=_fn._head_from_checkpoint, trains=True),
    Stage(
        name="eval", verb="evaluate", summary="predict data.eval with the head, score it, write the report",
        sections=("head.infer",),
        schema=(("head.infer.scales", _SCALES, False), ("head.infer.flip", Bool(), False),
                ("head.infer.aggregate", Choice(("mean", "max")), False),
                ("head.infer.crf", CRF(), False),
                ("head.infer.crf_backend", Choice(("pydensecrf", "torch", "auto")), False),
                ("head.infer.resize_align_corners", Bool(), False), ("eval.pictures", Int(0), False)),
        needs=("head",), folders=("predictions", "pictures"),
        reads=("train_head/model.pt (or head.model.checkpoint)", "data.eval"),
        run=_fn.evaluate_head, report_row="retrained head"),
)
"""The stages in pipeline order."""

STAGES: tuple[str, ...] = tuple(s.name for s in STAGE_TABLE)

BASE_SCHEMA: tuple[tuple[str, Spec, bool], ...] = (
    ("run_dir", OneOf((Str(), Null())), False),
    ("seed", Int(0), False),
    ("device", Device(), False),
    # threads and worker processes of each process (wsss_kit.engine.threads; null = the automatic rule)
    ("threads.torch_threads", OneOf((Int(1), Null())), False),
    ("threads.crf_workers", OneOf((Int(0), Null())), False),
    ("threads.loader_workers", OneOf((Int(0), Null())), False),
) + LOGGING_SCHEMA
"""Keys of a run file that belong to no one stage (``logging``: :mod:`wsss_kit.pipeline.stage_logging`)."""

RUN_SCHEMA: Section = assemble(BASE_SCHEMA + tuple(d for s in STAGE_TABLE for d in s.schema))
"""The whole run file: every section and key a stage reads, with its type and range."""

STAGE_SECTIONS: dict[str, tuple[str, ...]] = {s.name: s.sections for s in STAGE_TABLE}
"""Each stage's fingerprinted sections (what :meth:`RunContext.fingerprint` reads)."""


def get_stage(name: str) -> Stage:
    """The record of stage ``name``, or a ConfigError listing the stages."""
    for stage in STAGE_TABLE:
        if stage.name == name:
            return stage
    raise ConfigError(f"unknown stage {name!r}{did_you_mean(name, STAGES)}; stages: {', '.join(STAGES)}")


def select_stages(names: Sequence[str] | None) -> list[str]:
    """Validate stage names (``None`` → all), keeping pipeline order."""
    if names is None:
        return list(STAGES)
    for name in names:
        get_stage(name)
    return [s for s in STAGES if s in names]


def stages_from(name: str) -> list[str]:
    """``name`` and every stage after it (what ``--restart name`` recomputes)."""
    get_stage(name)
    return list(STAGES[STAGES.index(name):])


OPTIONAL_SECTIONS = frozenset({"refiner_train", "refiner_augment", "refiner_targets"})
"""Sections left out of fingerprints while absent, so that the runs of configs written before they
existed (every non-trainable refiner) keep their fingerprints and resume as they were."""


def stage_settings(cfg: Mapping[str, Any], stage: str) -> dict[str, Any]:
    """The config sections ``stage`` depends on, its upstream stages' included: ``{section: value}``."""
    upto = STAGES[: STAGES.index(get_stage(stage).name) + 1]
    sections = {s: get_path(cfg, s, None) for st in upto for s in STAGE_SECTIONS[st]}
    return {s: v for s, v in sections.items() if not (v is None and s in OPTIONAL_SECTIONS)}


def stage_fingerprint(cfg: Mapping[str, Any], stage: str) -> str:
    """A short hash of :func:`stage_settings`: equal fingerprints mean the stage's outputs are valid."""
    return fingerprint(stage_settings(cfg, stage))


def producing_stage(run_dir: Path, path: Path) -> str | None:
    """The stage that writes ``path`` (a file inside ``run_dir``), from the stages' folders."""
    try:
        top = Path(path).resolve().relative_to(Path(run_dir).resolve()).parts[0]
    except (ValueError, IndexError):
        return None
    return next((s.name for s in STAGE_TABLE if top in s.folders), None)
