"""``--smoke``: a table's configs reduced to the embedded synthetic dataset and tiny random models.

The reduction is generic: it knows sections (``data``, the training recipes, augmentations,
inference) and plugin node types, not tables, so every table's runs, with their chaining, resume
and results files, run on 2 CPU cores in seconds. What stays: the stages, the refiner and head
*kinds*, the losses, the prompt strategies, every option that does not change a tensor's size or a
loop's length. What goes: VOC/COCO (→ ``datasets/synthetic``, 64-px images), weight files
(→ random initialisation; a key an :class:`~benchmarks.tables.schema.Input` sets is applied after
the reduction and so kept), widths and depths (→ the sizes the plugins' own tests use), steps
(→ :data:`SMOKE_STEPS`), multi-scale and flipped inference (→ one scale).

A node type not listed in :data:`NODE_REDUCTIONS` (a third-party plugin) keeps its keywords; a
table using one gives its tiny settings with ``Run.smoke``.
"""

from __future__ import annotations

import copy
from typing import Any, Callable, Mapping

from wsss_kit.config import is_node
from wsss_kit.data.synthetic_scene import CLASS_NAMES

__all__ = ["NODE_REDUCTIONS", "SMOKE_EVAL_IMAGES", "SMOKE_IMAGE_SIZE", "SMOKE_STEPS", "SMOKE_SYNONYMS",
           "SMOKE_TRAIN_IMAGES", "smoke_config"]

SMOKE_IMAGE_SIZE = 64
"""Side of the synthetic images (the tiny CLIP's input size)."""
SMOKE_TRAIN_IMAGES = 12
SMOKE_EVAL_IMAGES = 6
SMOKE_STEPS = 2
"""Optimizer steps of every training stage."""
SMOKE_BATCH = 4

SMOKE_SYNONYMS = {"ball": ["sphere", "orb", "globe"], "box": ["crate", "carton", "case"],
                  "kite": ["glider", "flyer", "windsock"], "boat": ["ship", "vessel", "sailboat"],
                  "tree": ["oak", "pine", "plant"]}
"""POLE's synonym table for the synthetic classes (VOC's Table S1 names none of them)."""

_TINY_CLIP = {"clip_model": "wsss-tiny-clip", "clip_weights": None, "clip_precision": "fp32"}
_TINY_RESNET = {"backbone": "resnet18", "weights": None, "checkpoint": None, "backbone_kwargs": None}
# The sizes the deeplab plugin's own tests use (plugins/deeplab/tests/).
_TINY_WR38 = {"stem_width": 8, "widths": [[8, 8], [8, 12], [12, 16], [16, 24]], "depths": [1, 1, 1, 1],
              "bottleneck_widths": [32, 48]}


def _clims(node: dict[str, Any]) -> None:
    node.update(_TINY_CLIP)
    node.update(backbone="resnet18", weights=None, init_checkpoint=None, backbone_kwargs=None, clip_input_size=None)
    node["class_names"] = list(CLASS_NAMES)  # the presets' VOC/COCO names do not fit 5 classes
    node.pop("class_name_overrides", None)  # VOC words for VOC class names


def _pole(node: dict[str, Any]) -> None:
    _clims(node)
    node["selection_cache"] = None  # a chained run's cache comes back as an Input
    syn = node.get("synonyms")
    if is_node(syn) or isinstance(syn, Mapping):
        syn = dict(syn)
        syn["synonyms"] = copy.deepcopy(SMOKE_SYNONYMS)
        syn.pop("class_name_overrides", None)
        syn.pop("cache", None)
        node["synonyms"] = syn
    else:
        node["synonyms"] = {"type": "prompts/pole_synonyms", "synonyms": copy.deepcopy(SMOKE_SYNONYMS)}


def _mctformer(node: dict[str, Any]) -> None:
    node.update(backbone="vit_tiny_patch16_224", backbone_kwargs={"patch_size": 8, "depth": 2},
                img_size=SMOKE_IMAGE_SIZE, weights=None, checkpoint=None, drop_path_rate=0.0,
                cam_layers=min(int(node.get("cam_layers", 3)), 2))  # attention maps of the last blocks


def _weakclip(node: dict[str, Any]) -> None:
    node.update(_TINY_CLIP)
    # benchmarks/weakclip/synthetic.yaml's widths; one scale, one window, CRFs in this process
    node.update(checkpoint=None, decoder_channels=64, matching_width=64, loss_crf_workers=0, crf_workers=0,
                scales=[1.0], base_size=None, flip=False, stage_layers=None)
    for key in ("dataset",):
        node.pop(key, None)


def _psa(node: dict[str, Any]) -> None:
    node.update(_TINY_WR38, weights=None, checkpoint=None, dropouts=[0.0, 0.0], embed_widths=[4, 4, 8], embed_dim=8,
                freeze_bn=False, freeze_stem=False, radius=3)  # radius 5 needs a 5×9 grid: 64 px / 8 is 8×8


def _irn(node: dict[str, Any]) -> None:
    node.update(backbone="resnet18", weights=None, checkpoint=None, backbone_args=None, width=8,
                dp_widths=[8, 8, 16, 16, 16, 16, 16], dp_groups=[2, 4, 4, 4, 4, 4, 4],
                train_radius=5)  # radius 10 needs a 10×19 grid: 64 px / 4 is 16×16


def _wr38_head(node: dict[str, Any]) -> None:
    node.update(_TINY_WR38, weights=None, checkpoint=None, head_width=16, freeze_bn=False, freeze_stem=False)


def _deeplab_v2(node: dict[str, Any]) -> None:
    node.update(backbone="resnet101", weights=None, checkpoint=None, freeze_bn=False,
                backbone_kwargs={"layers": [1, 2, 1, 2], "channels": [8, 12, 16, 20]})


def _smp(node: dict[str, Any]) -> None:
    node.update(encoder_name="resnet18", encoder_weights=None)


def _dense_crf(node: dict[str, Any]) -> None:
    node["workers"] = 0  # a pool costs more than 64-px CRFs


NODE_REDUCTIONS: dict[str, Callable[[dict[str, Any]], None]] = {
    "cams/resnet_cam": lambda n: n.update(_TINY_RESNET),
    "cams/mctformer_v1": _mctformer,
    "cams/mctformer_v2": _mctformer,
    "cams/clims": _clims,
    "cams/pole": _pole,
    "refiners/weakclip": _weakclip,
    "refiners/psa_rw": _psa,
    "refiners/irn_rw": _irn,
    "refiners/dense_crf": _dense_crf,
    "heads/deeplab_v1_wr38": _wr38_head,
    "heads/deeplab_v2_r101": _deeplab_v2,
    "heads/smp": _smp,
}
"""Plugin type → an in-place reduction of its node to a tiny random model."""


def _train(recipe: Any) -> Any:
    if not isinstance(recipe, Mapping):
        return recipe
    out = dict(recipe)
    out.update(steps=SMOKE_STEPS, batch_size=min(int(out.get("batch_size", SMOKE_BATCH)), SMOKE_BATCH),
               grad_accum=1, amp=False, checkpoint_every=SMOKE_STEPS, log_every=1, num_workers=0)
    if out.get("warmup_steps"):
        out["warmup_steps"] = 1
    return out


def _augment(augment: Any) -> Any:
    if not isinstance(augment, Mapping):
        return augment
    return {**augment, "crop_size": SMOKE_IMAGE_SIZE}


def _infer(infer: Any) -> Any:
    if not isinstance(infer, Mapping):
        return infer
    out = dict(infer)
    if "scales" in out:
        out["scales"] = [1.0]
    if "flip" in out:
        out["flip"] = False
    if "batch_size" in out:
        out["batch_size"] = SMOKE_BATCH
    return out


def _type_name(node: Mapping[str, Any]) -> str:
    """``kind/name`` of a node, without a ``dist:`` pick."""
    kind, _, name = str(node["type"]).partition("/")
    return f"{kind}/{name.rpartition(':')[2]}"


def _reduce_nodes(value: Any) -> Any:
    if isinstance(value, list):
        return [_reduce_nodes(v) for v in value]
    if not isinstance(value, Mapping):
        return value
    out = {k: _reduce_nodes(v) for k, v in value.items()}
    if is_node(out):
        reduce = NODE_REDUCTIONS.get(_type_name(out))
        if reduce is not None:
            reduce(out)
    return out


def smoke_config(cfg: Mapping[str, Any]) -> dict[str, Any]:
    """``cfg`` on the synthetic dataset with tiny random models and a few steps (a new dict).

    ``data.train`` → synthetic ``train`` (:data:`SMOKE_TRAIN_IMAGES`), ``data.eval`` → synthetic
    ``val`` (:data:`SMOKE_EVAL_IMAGES`), both :data:`SMOKE_IMAGE_SIZE` px; every training recipe
    → :data:`SMOKE_STEPS` steps of at most 4 images; every augmentation crops the whole image;
    inference at one scale without flipping; plugin nodes through :data:`NODE_REDUCTIONS`.
    """
    out = _reduce_nodes(copy.deepcopy(dict(cfg)))
    data = out.get("data")
    if isinstance(data, Mapping):
        sizes = {"train": ("train", SMOKE_TRAIN_IMAGES), "eval": ("val", SMOKE_EVAL_IMAGES)}
        out["data"] = {key: {"type": "datasets/synthetic", "split": sizes[key][0], "num_images": sizes[key][1],
                             "image_size": SMOKE_IMAGE_SIZE} if key in sizes and node is not None else node
                       for key, node in data.items()}
    for section in ("cam", "head"):
        part = out.get(section)
        if isinstance(part, Mapping):
            part = dict(part)
            if "train" in part:
                part["train"] = _train(part["train"])
            if "augment" in part:
                part["augment"] = _augment(part["augment"])
            if "infer" in part:
                part["infer"] = _infer(part["infer"])
            out[section] = part
    if "refiner_train" in out:
        out["refiner_train"] = _train(out["refiner_train"])
    if "refiner_augment" in out:
        out["refiner_augment"] = _augment(out["refiner_augment"])
    if isinstance(out.get("pseudo_masks"), Mapping) and "batch_size" in out["pseudo_masks"]:
        out["pseudo_masks"] = {**out["pseudo_masks"], "batch_size": SMOKE_BATCH}
    out["eval"] = {**(out.get("eval") or {}), "pictures": 2}
    return out
