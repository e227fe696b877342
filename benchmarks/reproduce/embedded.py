"""``--embedded``: a table's configs reduced to the embedded world with its pretrained foundations.

Like :mod:`.smoke`, the reduction is generic: it knows sections and plugin node types, not tables.
Unlike ``--smoke``, the networks keep their architectures' kind and start from the world's shipped
"ImageNet" and CLIP weights, at sizes large enough to separate a table's rows (each table about
15 minutes on 2 CPU cores; runs are shared between tables through ``DIR/runs/``):

- data: ``data.train`` → synthetic ``train`` (:data:`EMBEDDED_TRAIN_IMAGES`), ``data.eval`` →
  synthetic ``val`` (:data:`EMBEDDED_EVAL_IMAGES`), :data:`EMBEDDED_IMAGE_SIZE` px;
- ResNet backbones (``resnet_cam``, ``clims``, ``pole``, IRN, DeepLab V2, smp) → timm
  ``wsss_world_resnet50`` with ``released:wsss_world_resnet50``; the world has no WideResNet-38:
  a DeepLabV1-ResNet38 head becomes a DeepLab head on the world ResNet (V1's single dilated
  classifier: one atrous rate, its dilation), and PSA's AffinityNet, whose trunk can only be a
  WR38, keeps a narrow WR38 trained from scratch (:data:`EMBEDDED_WR38`);
- MCTformer's DeiT → ``wsss_world_vit`` with ``released:wsss_world_vit`` (``img_size`` 128);
- CLIP (``clims``, ``pole``, ``weakclip``, POLE's synonyms) → ``wsss-synthetic-clip`` with
  ``released:wsss_synthetic_clip``; POLE's synonym table → :data:`wsss_kit.data.captions.SYNONYMS`;
  CLIMS's background prompts → :data:`WORLD_BACKGROUND`;
- a released *trained* network (IRN's ``res50_cam.pth``, CLIMS/POLE's initialisation) → the same
  network trained in the world by a run the harness adds before the first run that reads it
  (:data:`EMBEDDED_RUNS`);
- training recipes: optimiser, learning rate, schedule and losses as the config says; steps,
  batch, crop (:data:`EMBEDDED_STEPS`, :data:`EMBEDDED_FINETUNE_STEPS` for a CAM network that starts
  from a trained one, :data:`EMBEDDED_BATCH`, :data:`EMBEDDED_CROP`) scaled to the world; multi-scale
  inference at :data:`EMBEDDED_SCALES`.

A weight spec the mapping does not know (a file of your own, a released name with no world
counterpart) is a :class:`~wsss_kit.errors.ConfigError` naming the node and key before any run
starts: ``null`` (random initialisation) is always accepted.
"""

from __future__ import annotations

import copy
import dataclasses
from dataclasses import dataclass
from typing import Any, Callable, Iterator, Mapping

from wsss_kit.config import is_node
from wsss_kit.data.captions import SYNONYMS
from wsss_kit.data.synthetic_scene import CLASS_NAMES
from wsss_kit.errors import ConfigError
from wsss_kit.weights.released import RELEASED
from wsss_kit.weights.required import is_weights_keyword

from ..tables.schema import Input, Run, Table

__all__ = ["EMBEDDED_BATCH", "EMBEDDED_CROP", "EMBEDDED_EVAL_IMAGES", "EMBEDDED_FINETUNE_STEPS", "EMBEDDED_IMAGE_SIZE", "EMBEDDED_NODES",
           "EMBEDDED_RUNS", "EMBEDDED_SCALES", "EMBEDDED_STEPS", "EMBEDDED_TRAIN_IMAGES", "EMBEDDED_WR38", "embedded_table",
           "WORLD_BACKGROUND", "WORLD_CLIP", "WORLD_RESNET", "WORLD_VIT", "EmbeddedRun", "embedded_argv",
           "embedded_config", "trained_weights"]

EMBEDDED_IMAGE_SIZE = 128
"""Side of the synthetic images (the world backbones' and the world CLIP's input size)."""
EMBEDDED_TRAIN_IMAGES = 240
EMBEDDED_EVAL_IMAGES = 100
EMBEDDED_STEPS = {"cam": 300, "refiner": 150, "head": 200}
"""Optimizer steps of each training section (``cam.train``, ``refiner_train``, ``head.train``): the
default demo trains a CAM network in 300 steps of 12 (~110 s on 2 idle cores); the refiners and heads
get fewer, so that a CAM + random-walk run stays near 5 minutes."""
EMBEDDED_FINETUNE_STEPS = 150
"""``cam.train`` steps of a CAM network that starts from a trained CAM network (``init_checkpoint``:
CLIMS and POLE from the world baseline, as the papers from IRN's ``res50_cam.pth``): a fine-tune, and
a CLIMS/POLE step costs ~4 CAM steps (three world-CLIP passes per image)."""
EMBEDDED_BATCH = {"cam": 12, "refiner": 8, "head": 8}
"""Largest batch of each training section (a config's smaller batch is kept)."""
EMBEDDED_CROP = 112
"""Training crop side of every augmentation (of 128-px images)."""
EMBEDDED_SCALES = [1.0, 0.75]
"""Inference scales of a config that infers at several scales (one scale stays one scale)."""
EMBEDDED_INFER_BATCH = 16

WORLD_RESNET = {"backbone": "wsss_world_resnet50", "weights": "released:wsss_world_resnet50"}
WORLD_VIT = {"backbone": "wsss_world_vit", "weights": "released:wsss_world_vit"}
WORLD_CLIP = {"clip_model": "wsss-synthetic-clip", "clip_weights": "released:wsss_synthetic_clip"}
WORLD_BACKGROUND = ["sky", "cloud", "water", "grass", "sand", "rock"]
"""CLIMS's background prompt words for the world's scenes (VOC's presets name VOC's backgrounds)."""

EMBEDDED_WR38 = {"stem_width": 16, "widths": [[16, 16], [32, 32], [64, 64], [64, 128]], "depths": [1, 1, 2, 1],
                 "bottleneck_widths": [192, 256], "dropouts": [0.0, 0.0], "embed_widths": [16, 32, 64],
                 "embed_dim": 112}
"""PSA's AffinityNet trunk in the world: WR38's layout, narrow and shallow, from scratch (no world WR38)."""

# The released files of the papers' "ImageNet"/CLIP foundations → the family of their world counterpart.
_FAMILY = {
    "torchvision_resnet50_imagenet": "resnet", "resnet38_imagenet": "resnet", "deeplab_resnet101_coco": "resnet",
    "deeplab_resnet101_imagenet": "resnet", "wsss_world_resnet50": "resnet",
    "deit_small_imagenet": "vit", "wsss_world_vit": "vit",
    "clip_vit_b16_openai": "clip", "clip_vit_b32_openai": "clip", "wsss_synthetic_clip": "clip",
}
_WORLD_SPEC = {"resnet": WORLD_RESNET["weights"], "vit": WORLD_VIT["weights"], "clip": WORLD_CLIP["clip_weights"]}


@dataclass(frozen=True)
class EmbeddedRun:
    """The world's stand-in for a released trained network: a run the harness adds to a table.

    Attributes:
        run: the run (its config is reduced like every other run, so it is shared between tables).
        path: the file it writes, relative to its folder (what the spec's key is set to).
    """

    run: Run
    path: str


EMBEDDED_RUNS: dict[str, EmbeddedRun] = {
    "irn_res50_cam": EmbeddedRun(
        Run("world_res50_cam", "resnet_cam/voc.yaml", ("train_cam", "cams", "seeds"),
            note="the world's stand-in for IRN's released res50_cam.pth: resnet_cam/voc.yaml trained from "
                 "released:wsss_world_resnet50"),
        "train_cam/model.pt"),
}
"""Released trained networks (by name) → the run that trains their world counterpart."""


def _released_name(spec: str) -> str | None:
    """The :data:`RELEASED` name a spec names (``released:X`` or one of X's hub tags), else None."""
    if spec.startswith("released:"):
        return spec[len("released:"):]
    for name, entry in RELEASED.items():
        if spec in entry.hub_tags:
            return name
    return None


def _known(spec: Any, where: str, key: str, family: str | None = None) -> str | None:
    """``spec`` checked against the mapping: None stays None; a trained network in
    :data:`EMBEDDED_RUNS` stays (the harness sets it); a foundation becomes the world's ``family``
    spec (or, without a family, its own family's).

    Raises:
        ConfigError: a spec the mapping does not know (naming ``where`` and ``key``).
    """
    if spec is None:
        return None
    name = _released_name(spec) if isinstance(spec, str) else None
    if name in EMBEDDED_RUNS:
        return f"released:{name}"
    if name in _FAMILY or (family == "clip" and spec == "default"):
        return _WORLD_SPEC[family or _FAMILY[name]]
    known = sorted({f"released:{n}" for n in list(_FAMILY) + list(EMBEDDED_RUNS)})
    raise ConfigError(f"--embedded: {where}: {key}: {spec!r} has no counterpart in the embedded world; "
                      f"the mapping knows {', '.join(known)} (and null: random initialisation)")


def _checkpoint(node: dict[str, Any], where: str, key: str = "checkpoint") -> None:
    """A trained network the node loads (``checkpoint``), checked when the node gives one."""
    if key in node:
        node[key] = _known(node[key], where, key)


def _type_name(node: Mapping[str, Any]) -> str:
    kind, _, name = str(node["type"]).partition("/")
    return f"{kind}/{name.rpartition(':')[2]}"


def _world_resnet(node: dict[str, Any], where: str, key: str = "weights") -> None:
    node["weights"] = _known(node.get(key), where, key, "resnet")
    if key != "weights":
        node.pop(key, None)
    node["backbone"] = WORLD_RESNET["backbone"]


def _resnet_cam(node: dict[str, Any], where: str) -> None:
    _world_resnet(node, where)
    _checkpoint(node, where)
    node["backbone_kwargs"] = None


def _mctformer(node: dict[str, Any], where: str) -> None:
    node["weights"] = _known(node.get("weights"), where, "weights", "vit")
    _checkpoint(node, where)
    node.update(backbone=WORLD_VIT["backbone"], backbone_kwargs=None, img_size=EMBEDDED_IMAGE_SIZE)


def _clip(node: dict[str, Any], where: str) -> None:
    _known(node.get("clip_weights", "default"), where, "clip_weights", "clip")
    node.update(WORLD_CLIP, clip_precision="fp32")


def _clims(node: dict[str, Any], where: str) -> None:
    _world_resnet(node, where)
    _clip(node, where)
    _checkpoint(node, where, "init_checkpoint")
    _checkpoint(node, where)
    node.update(backbone_kwargs=None, clip_input_size=None, class_names=list(CLASS_NAMES),
                background=list(WORLD_BACKGROUND))
    node.pop("class_name_overrides", None)  # VOC words for VOC class names


def _pole(node: dict[str, Any], where: str) -> None:
    _clims(node, where)
    node["selection_cache"] = None  # a chained run's selection comes back as an Input
    syn = node.get("synonyms")
    syn = dict(syn) if isinstance(syn, Mapping) else {"type": "prompts/pole_synonyms"}
    syn["synonyms"] = copy.deepcopy(SYNONYMS)
    syn.pop("class_name_overrides", None)
    syn.pop("cache", None)
    node["synonyms"] = syn


def _weakclip(node: dict[str, Any], where: str) -> None:
    _clip(node, where)
    _checkpoint(node, where)
    # the official widths (256) dwarf the world CLIP's 64-d embedding and dominate the CPU step (as
    # benchmarks/weakclip/synthetic.yaml); the image is one window; CRFs in this process (2 cores)
    node.update(decoder_channels=64, matching_width=64, loss_crf_workers=0, crf_workers=0, base_size=None,
                stage_layers=None)
    if len(node.get("scales") or [1.0]) > 1:
        node["scales"] = list(EMBEDDED_SCALES)
    node.pop("dataset", None)


def _psa(node: dict[str, Any], where: str) -> None:
    _known(node.get("weights"), where, "weights", "resnet")  # a known foundation; the world has no WR38
    node.update(copy.deepcopy(EMBEDDED_WR38), weights=None, freeze_bn=False, freeze_stem=False)
    _checkpoint(node, where)


def _irn(node: dict[str, Any], where: str) -> None:
    _world_resnet(node, where)
    _checkpoint(node, where)
    node["backbone_args"] = None


def _dense_crf(node: dict[str, Any], where: str) -> None:
    node["workers"] = 0  # a pool costs more than 128-px CRFs on 2 cores


def _deeplab_v2(node: dict[str, Any], where: str) -> None:
    _world_resnet(node, where)
    _checkpoint(node, where)
    node.update(style="pytorch", input_norm=None, backbone_kwargs=None)


def _deeplab_v1_wr38(node: dict[str, Any], where: str) -> None:
    """No WR38 in the world: a DeepLab head on the world ResNet with V1's single dilated classifier."""
    weights = _known(node.get("weights"), where, "weights", "resnet")
    checkpoint = _known(node.get("checkpoint"), where, "checkpoint")
    rate = int(node.get("head_dilation", 12))
    lr_mult = float(node.get("head_lr_mult", 10.0))
    freeze_bn = bool(node.get("freeze_bn", True))
    node.clear()
    node.update(type="heads/deeplab_v2_r101", backbone=WORLD_RESNET["backbone"], weights=weights,
                checkpoint=checkpoint, style="pytorch", atrous_rates=[rate], msc_scales=[], train_output="fused",
                freeze_bn=freeze_bn, aspp_lr_mult=lr_mult, aspp_bias_lr_mult=2 * lr_mult)


def _smp(node: dict[str, Any], where: str) -> None:
    node["encoder_weights"] = _known(node.get("encoder_weights"), where, "encoder_weights", "resnet")
    node["encoder_name"] = "tu-" + WORLD_RESNET["backbone"]
    _checkpoint(node, where)


def _synonyms(node: dict[str, Any], where: str) -> None:
    node["synonyms"] = copy.deepcopy(SYNONYMS)
    node.pop("class_name_overrides", None)
    node.pop("cache", None)


EMBEDDED_NODES: dict[str, Callable[[dict[str, Any], str], None]] = {
    "cams/resnet_cam": _resnet_cam,
    "cams/mctformer_v1": _mctformer,
    "cams/mctformer_v2": _mctformer,
    "cams/clims": _clims,
    "cams/pole": _pole,
    "refiners/weakclip": _weakclip,
    "refiners/psa_rw": _psa,
    "refiners/irn_rw": _irn,
    "refiners/dense_crf": _dense_crf,
    "heads/deeplab_v1_wr38": _deeplab_v1_wr38,
    "heads/deeplab_v2_r101": _deeplab_v2,
    "heads/smp": _smp,
    "prompts/pole_synonyms": _synonyms,
}
"""Plugin type → an in-place reduction of its node (at config path ``where``) to the world's models."""


def _nodes(value: Any, path: str = "") -> Iterator[tuple[str, dict[str, Any]]]:
    """Every node under ``value`` with its dotted path, children before parents."""
    if isinstance(value, list):
        for i, v in enumerate(value):
            yield from _nodes(v, f"{path}[{i}]")
    elif isinstance(value, dict):
        for k, v in value.items():
            yield from _nodes(v, f"{path}.{k}" if path else str(k))
        if is_node(value):
            yield path, value


def _train(recipe: Any, section: str, steps: int | None = None) -> Any:
    if not isinstance(recipe, Mapping):
        return recipe
    out = dict(recipe)
    steps, old = steps or EMBEDDED_STEPS[section], max(int(out.get("steps", 1) or 1), 1)
    out.update(steps=steps, batch_size=min(int(out.get("batch_size", EMBEDDED_BATCH[section])), EMBEDDED_BATCH[section]),
               grad_accum=1, amp=False, checkpoint_every=max(steps // 3, 1), log_every=10, num_workers=0)
    if out.get("warmup_steps"):  # the same fraction of the (shorter) run
        out["warmup_steps"] = max(1, round(int(out["warmup_steps"]) * steps / old))
    return out


def _augment(augment: Any) -> Any:
    return {**augment, "crop_size": EMBEDDED_CROP} if isinstance(augment, Mapping) else augment


def _infer(infer: Any) -> Any:
    if not isinstance(infer, Mapping):
        return infer
    out = dict(infer)
    if len(out.get("scales") or [1.0]) > 1:
        out["scales"] = list(EMBEDDED_SCALES)
    if "batch_size" in out:
        out["batch_size"] = EMBEDDED_INFER_BATCH
    return out


def trained_weights(cfg: Mapping[str, Any]) -> list[tuple[str, str]]:
    """``(dotted key, released name)`` of every weights keyword of ``cfg``'s nodes that names a
    released trained network the world trains itself (:data:`EMBEDDED_RUNS`)."""
    out = []
    for path, node in _nodes(copy.deepcopy(dict(cfg))):
        for key, value in node.items():
            if is_weights_keyword(key) and isinstance(value, str):
                name = _released_name(value)
                if name in EMBEDDED_RUNS:
                    out.append((f"{path}.{key}", name))
    return out


def embedded_argv(argv: tuple[str, ...], where: str) -> tuple[tuple[str, ...], list[str]]:
    """A command's argv with every ``released:`` spec of a trained network replaced by the file of its
    world run (``{run:NAME}/PATH``), and the names of those runs.

    Raises:
        ConfigError: a ``released:`` spec the mapping does not know.
    """
    out, needs = [], []
    for arg in argv:
        if arg.startswith("released:"):
            name = arg[len("released:"):]
            if name in EMBEDDED_RUNS:
                er = EMBEDDED_RUNS[name]
                out.append("{run:" + er.run.name + "}/" + er.path)
                needs.append(name)
                continue
            arg = _known(arg, where, "command argument")  # a foundation: its world file
        out.append(arg)
    return tuple(out), needs


def embedded_config(cfg: Mapping[str, Any], where: str = "config") -> dict[str, Any]:
    """``cfg`` on the embedded world with its pretrained foundations (a new dict); see the module
    docstring. Trained-network specs of :data:`EMBEDDED_RUNS` are left for the harness to set.

    Raises:
        ConfigError: a weights keyword of any node (also of a node type the mapping does not reduce)
            whose spec has no world counterpart, naming ``where``, the node and the key.
    """
    out = copy.deepcopy(dict(cfg))
    for path, node in list(_nodes(out)):
        reduce = EMBEDDED_NODES.get(_type_name(node))
        if reduce is not None:
            reduce(node, f"{where}: {path} ({node['type']})")
    for path, node in _nodes(out):  # every spec left is a world file, a trained network's, or null
        for key, value in node.items():
            if is_weights_keyword(key) and value is not None and not (
                    isinstance(value, str) and (value in _WORLD_SPEC.values()
                                                or _released_name(value) in EMBEDDED_RUNS)):
                _known(value, f"{where}: {path} ({node['type']})", key)  # an unknown spec: its own message
                raise ConfigError(f"--embedded: {where}: {path} ({node['type']}): {key}: {value!r}: --embedded "
                                  f"does not reduce node type {_type_name(node)!r} to the world's models "
                                  f"(it reduces {', '.join(EMBEDDED_NODES)}); give {key}: null or its "
                                  f"world weights")
    data = out.get("data")
    if isinstance(data, Mapping):
        # an eval on the test split (a test row's head, embedded_table) scores the world's test split,
        # whose masks are public; every other eval scores the world's val split
        evals = data.get("eval")
        eval_split = "test" if isinstance(evals, Mapping) and evals.get("split") == "test" else "val"
        sizes = {"train": ("train", EMBEDDED_TRAIN_IMAGES), "eval": (eval_split, EMBEDDED_EVAL_IMAGES)}
        out["data"] = {key: {"type": "datasets/synthetic", "split": sizes[key][0], "num_images": sizes[key][1],
                             "image_size": EMBEDDED_IMAGE_SIZE} if key in sizes and node is not None else node
                       for key, node in data.items()}
    for section in ("cam", "head"):
        part = out.get(section)
        if isinstance(part, Mapping):
            part = dict(part)
            if "train" in part:
                model = part.get("model")
                finetune = section == "cam" and isinstance(model, Mapping) and model.get("init_checkpoint") is not None
                part["train"] = _train(part["train"], section, EMBEDDED_FINETUNE_STEPS if finetune else None)
            if "augment" in part:
                part["augment"] = _augment(part["augment"])
            if "infer" in part:
                part["infer"] = _infer(part["infer"])
            out[section] = part
    if "refiner_train" in out:
        out["refiner_train"] = _train(out["refiner_train"], "refiner")
    if "refiner_augment" in out:
        out["refiner_augment"] = _augment(out["refiner_augment"])
    if isinstance(out.get("pseudo_masks"), Mapping) and "batch_size" in out["pseudo_masks"]:
        out["pseudo_masks"] = {**out["pseudo_masks"], "batch_size": EMBEDDED_BATCH["refiner"]}
    out["eval"] = {**(out.get("eval") or {}), "pictures": 4}
    return out


def embedded_table(table: Table) -> Table:
    """``table`` with its test rows scored on the world (a new table; ``table`` itself is unchanged).

    VOC's test masks are not public, so a paper's test rows have no run (:attr:`Row.test_of` names the
    run whose trained head predicts them). The world's test split has its masks: for each such head
    ``H`` the table gets a run ``H_test`` (``H``'s config, inputs and overrides, ``data.eval.split=test``,
    the eval stage only, the head read from ``H``'s ``train_head/model.pt``) and the row reads its
    ``eval.eval.miou``.

    Raises:
        ConfigError: a test row names a head run that is not a run of the table.
    """
    by_name = {run.name: run for run in table.runs}
    derived: dict[str, Run] = {}
    rows = []
    for row in table.rows:
        if row.test_of is None or row.run is not None:
            rows.append(row)
            continue
        head = by_name.get(row.test_of)
        if head is None:
            raise ConfigError(f"table {table.id}, row {row.row!r}: test_of names run {row.test_of!r}, which is not "
                              f"a run of the table (runs: {', '.join(by_name) or 'none'})")
        name = f"{head.name}_test"
        if name not in derived:
            derived[name] = Run(
                name, head.config, head.stages,
                inputs=tuple(head.inputs) + (Input("head.model.checkpoint", head.name, "train_head/model.pt"),),
                overrides=tuple(head.overrides) + ("data.eval.split=test",),
                note=f"the head trained in {head.name}, scored on the world's test split (public masks)")
        rows.append(dataclasses.replace(row, run=name, result="eval.eval.miou", why_not=""))
    if not derived:
        return table
    return dataclasses.replace(table, runs=tuple(table.runs) + tuple(derived.values()), rows=tuple(rows))
