"""The papers' tables as data: which runs produce a table, and which number of which run is each row.

A :class:`Table` is a list of :class:`Run` s (configs under ``benchmarks/``, run in order, each run's
inputs taken from the outputs of earlier runs of the same table) and a list of :class:`Row` s (one
number of the paper each, with what the paper measured it on and where the harness reads the
measured value). ``python -m benchmarks reproduce TABLE`` runs the runs and scores the rows.
"""

from __future__ import annotations

from dataclasses import dataclass, field

__all__ = ["Claim", "Input", "RegionFraction", "Row", "Run", "Table"]


@dataclass(frozen=True)
class Input:
    """A config key of a run set to a folder (or file) of an earlier run of the same table.

    ``key`` is a dotted config key (``seeds.source.train``, ``pseudo_masks.source.train``,
    ``cam.model.checkpoint``); ``run`` names the earlier :class:`Run`; ``path`` is relative to that
    run's directory (``seeds/train``, ``pseudo_masks/train``, ``train_cam/model.pt``).
    """

    key: str
    run: str
    path: str


@dataclass(frozen=True)
class Run:
    """One ``wsss run`` of a table.

    Attributes:
        name: unique within the table; also the run's folder name under ``DIR/TABLE/runs/``.
        config: the config file, relative to ``benchmarks/`` (e.g. ``"mctformer/voc_v2.yaml"``).
        stages: the stages to run (``None``: every stage the config has work for).
        inputs: config keys taken from earlier runs' outputs (the chaining).
        overrides: ``KEY=VALUE`` strings applied on top of the config (as ``--set``), e.g. an
            ablation switch shared by several rows.
        smoke: extra ``KEY=VALUE`` overrides for ``--smoke`` only, on top of the harness's generic
            reduction to the synthetic dataset and tiny models.
        command: for a step that is not ``wsss run CONFIG`` (``wsss cam``, ``wsss-pole-select``,
            ``wsss refine``/``predict``): its argv, with placeholders ``{config}`` (this run's
            resolved config file, inputs and overrides applied), ``{run_dir}`` (this run's folder)
            and ``{run:NAME}`` (the folder of the earlier run NAME). Empty: ``wsss run``.
        smoke_command: the argv used instead of ``command`` under ``--smoke`` (e.g. training a tiny
            baseline where the real run loads a released checkpoint); ``None``: ``command``.
        note: one line on what the run is (shown in results.md).
    """

    name: str
    config: str
    stages: tuple[str, ...] | None = None
    inputs: tuple[Input, ...] = ()
    overrides: tuple[str, ...] = ()
    smoke: tuple[str, ...] = ()
    command: tuple[str, ...] = ()
    smoke_command: tuple[str, ...] | None = None
    note: str = ""


@dataclass(frozen=True)
class RegionFraction:
    """A row's value that no manifest records: the fraction of the pixels of a background region
    ``region`` that a run's masks label ``label``, over the images that contain class ``label``.

    For the synthetic world only (its scenes know their regions): ``region`` names a boolean
    ``(H, W)`` attribute of :class:`wsss_kit.data.synthetic_scene.Scene` (``"water"``); the masks are
    ``<run dir>/<masks>/<image name>.png`` (``"seeds/eval"``, ``"pseudo_masks/eval"``) of the images of
    the run's ``data.<split>``. CLIMS's claim: seeds label less of the water in boat images "boat".

    Attributes:
        region: the :class:`~wsss_kit.data.synthetic_scene.Scene` attribute, e.g. ``"water"``.
        label: the class name, e.g. ``"boat"``.
        masks: the mask folder inside the run's folder.
        split: the config's data split the masks are of (``"eval"`` or ``"train"``).
    """

    region: str
    label: str
    masks: str = "seeds/eval"
    split: str = "eval"


@dataclass(frozen=True)
class Claim:
    """A claim of a paper as a comparison of two rows of a table: it holds when the measured value of
    row ``higher`` exceeds that of row ``lower`` by more than ``margin`` (in the rows' unit).

    Attributes:
        text: the claim in words, e.g. ``"a CAM network from a pretrained backbone beats one from scratch"``.
        higher, lower: the ``Row.row`` labels of the two rows.
        margin: how much ``higher`` must exceed ``lower`` (0: strictly above).
    """

    text: str
    higher: str
    lower: str
    margin: float = 0.0


@dataclass(frozen=True)
class Row:
    """One number of a paper's table.

    Attributes:
        row: the row's label as the paper prints it (plus the column when a row has several
            numbers, e.g. ``"POLE (Ours) / +RW"``).
        metric: ``"mIoU"`` (percent) unless the paper reports something else.
        paper: the paper's number, as printed (percent for mIoU); ``None`` for a row no paper prints
            (the embedded world's claims).
        dataset: ``"VOC2012"`` or ``"COCO2014"``.
        split: the split the paper scored (``"train"``, ``"val"``, ``"test"``).
        run: the :class:`Run` whose manifest holds the measured value; ``None`` when the toolkit
            cannot produce this row (then ``why_not`` says why).
        result: dotted path into that run's ``manifest.json`` ``stages`` record, e.g.
            ``"pseudo_masks.eval.miou"`` or ``"cams.eval.miou"`` (values are fractions; the harness
            converts mIoU to percent); or a :class:`RegionFraction` the harness measures from the
            run's masks.
        train_split: what the model/refiner was trained on (``"train_aug"``, ``"train"``).
        crf: whether the number is after a dense CRF.
        multiscale: whether inference is multi-scale.
        random_walk: whether the number is after a random walk ("+RW").
        per_class: the paper gives per-class IoUs for this row (``{class: IoU}``), else empty.
        why_not: for a row the toolkit cannot produce (``run is None``), the reason.
        note: paper-vs-code remarks that move this number.
        test_of: for a test-split row the toolkit cannot score (``run is None``: VOC's test masks are
            not public), the run whose trained head predicts the test images. Under ``--embedded`` the
            world's test split has its masks, so the harness scores that head on it in a run of its own
            (:func:`benchmarks.reproduce.embedded.embedded_table`).
    """

    row: str
    metric: str
    paper: float | None
    dataset: str
    split: str
    run: str | None
    result: str | RegionFraction | None
    train_split: str = "train_aug"
    crf: bool = False
    multiscale: bool = False
    random_walk: bool = False
    per_class: dict[str, float] = field(default_factory=dict)
    why_not: str = ""
    note: str = ""
    test_of: str | None = None


@dataclass(frozen=True)
class Table:
    """A paper's table (or a baseline's headline numbers).

    Attributes:
        id: the harness's name, e.g. ``"weakclip_table1"``.
        title: e.g. ``"WeakCLIP Table 1: pseudo-mask mIoU on VOC 2012 train"``.
        paper: the paper, e.g. ``"WeakCLIP (IJCV 2024)"``.
        runs: the runs in order; a run's :class:`Input` s name only runs before it.
        rows: the paper's numbers.
        data: the data the real runs need, in words (for ``docs/reproduce.md`` and ``--list``).
        weights: ``released:`` names of the files the real runs need.
        embedded_only: the table runs only with ``--embedded`` (its rows exist only in the world).
        claims: the papers' claims its rows test (listed with held / not held in ``results.md``).
    """

    id: str
    title: str
    paper: str
    runs: tuple[Run, ...]
    rows: tuple[Row, ...]
    data: str = ""
    weights: tuple[str, ...] = ()
    embedded_only: bool = False
    claims: tuple[Claim, ...] = ()
