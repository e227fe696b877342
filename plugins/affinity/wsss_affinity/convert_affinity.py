"""Official affinity-network checkpoints → :class:`~wsss_affinity.AffinityNet` and
:class:`~wsss_affinity.IRNRefiner` layouts.

* PSA's AffinityNet (jiwoon-ahn/psa ``network/resnet38_aff.py``, trained file ``res38_aff.pth``;
  MCTformer's PSA step uses the same network): the ResNet38 trunk keys (``conv1a``, ``b2`` …
  ``b7``, ``bn7``; see :mod:`.convert_wr38`) plus ``f8_3.weight`` (512→64, on ``conv4`` = the
  BN-ReLU input of ``b5``), ``f8_4.weight`` (1024→128, on ``conv5`` = the BN-ReLU input of ``b6``),
  ``f8_5.weight`` (4096→256, on ``conv6`` = ReLU(``bn7``)) and ``f9.weight`` (448→448), all 1×1
  without bias → ``trunk.*``, ``proj.0/1/2.weight``, ``embed.weight``.
* IRN (jiwoon-ahn/irn ``net/resnet50_irn.py``; ``res50_irn.pth`` is the state dict of
  ``AffinityDisplacementLoss``): ``resnet50.{conv1,bn1,layer1..4}.*`` (torchvision names, which are
  timm's ``features_only`` names → ``backbone.body.*``); ``fc_edge1..5.{0,1}`` →
  ``boundary.levels.{0..4}.{0,1}``, ``fc_edge6`` → ``boundary.head``; ``fc_dp1..5.{0,1}`` →
  ``displacement.levels.{0..4}.{0,1}``, ``fc_dp6.{0,1}`` → ``displacement.fuse.{0,1}``,
  ``fc_dp7.{0,1,3}`` → ``displacement.head.{0,1,3}``; ``mean_shift.running_mean`` (or, in the
  older layout where the mean shift is a BatchNorm, ``fc_dp7.4.running_mean``) →
  ``displacement.running_mean``. Dropped: the aliases of the same tensors (``stage1..5.*``,
  ``backbone.<n>.*``, ``edge_layers.*``, ``dp_layers.*``, ``fc_dp7.4.*``), the pair-index buffers
  ``path_indices<n>``, ``disp_target``, ``ind_from``, ``ind_to``.

A ``module.`` prefix (DataParallel) is stripped; missing ``num_batches_tracked`` are filled with 0.
"""

from __future__ import annotations

import functools
import os
import re
from collections.abc import Mapping
from typing import Any

from torch import Tensor, nn

from wsss_deeplab.convert_wr38 import describe_resnet38_state_dict, is_resnet38_layout, wr38_backbone_key
from wsss_kit.errors import WeightsError
from wsss_kit.weights import get_converter, load_checkpoint, register_converter
from wsss_kit.weights.converters import fill_bn_counters, strip_module_prefix

__all__ = ["convert_irn_resnet50", "convert_psa_affinity_net", "describe_affinity_state_dict", "load_converted"]

_PSA_HEAD = {"f8_3.": "proj.0.", "f8_4.": "proj.1.", "f8_5.": "proj.2.", "f9.": "embed."}
_IRN_DROPPED = re.compile(r"^(stage[1-5]\.|backbone\.\d+\.|edge_layers\.|dp_layers\.|fc_dp7\.4\.|path_indices\d+$|"
                          r"disp_target$|ind_from$|ind_to$)")
_IRN_LEVEL = re.compile(r"^fc_(edge|dp)([1-7])\.(\d)\.(weight|bias)$")


def _more(items: list[str]) -> str:
    return ", ".join(items[:5]) + (f" ... (+{len(items) - 5} more)" if len(items) > 5 else "")


def describe_affinity_state_dict(state: Mapping[str, Tensor]) -> str:
    """A few words on what a state dict looks like, for error messages."""
    keys = list(state)
    if any(k.startswith("fc_edge") for k in keys):
        return "an IRN (resnet50_irn: fc_edge*, fc_dp*)"
    if any(k.startswith("resnet50.") for k in keys) and "classifier.weight" in state:
        return "a ResNet-50 CAM network (resnet50_cam: classifier.weight), not an IRN"
    if any(k.startswith("boundary.levels.") for k in keys):
        return "a refiners/irn_rw state dict"
    if any(k.startswith(("trunk.", "net.trunk.")) for k in keys):
        return "a refiners/psa_rw (AffinityNet) state dict"
    return describe_resnet38_state_dict(state)


def convert_psa_affinity_net(state_dict: Mapping[str, Tensor], source: str = "checkpoint") -> dict[str, Tensor]:
    """PSA's trained ``resnet38_aff.Net`` (or this plugin's layout) → :class:`~wsss_affinity.AffinityNet`.

    Returns:
        ``{"trunk.<name>": ..., "proj.{0,1,2}.weight": ..., "embed.weight": ...}``.

    Raises:
        WeightsError: another network (a DeepLab, a CAM network, an ImageNet ResNet38 — the message
            says which), missing affinity layers (named) or unknown keys.
    """
    state = strip_module_prefix(state_dict)
    if any(k.startswith("net.trunk.") for k in state):  # a PSARefiner state dict
        state = {k[len("net."):]: v for k, v in state.items() if k.startswith("net.")}
    if any(k.startswith("trunk.") for k in state):
        return fill_bn_counters(dict(state))
    if not is_resnet38_layout(state) or not any(k.startswith("f9.") for k in state):
        raise WeightsError(f"{source} is not a PSA AffinityNet (resnet38_aff: conv1a, b2 ... bn7, f8_3, f8_4, f8_5, "
                           f"f9): it looks like {describe_affinity_state_dict(state)}; an ImageNet ResNet38 goes in "
                           f"weights=, a trained AffinityNet in checkpoint=")
    converted: dict[str, Tensor] = {}
    unknown: list[str] = []
    for key, value in state.items():
        head = next((p for p in _PSA_HEAD if key.startswith(p)), None)
        new = _PSA_HEAD[head] + key[len(head):] if head else wr38_backbone_key(key)
        if new is None:
            unknown.append(key)
        else:
            converted[new if head else "trunk." + new[len("backbone."):]] = value
    if unknown:
        raise WeightsError(f"{source} is in the PSA AffinityNet layout but has keys the network does not: "
                           f"{_more(unknown)}")
    missing = [f"{p}weight" for p in _PSA_HEAD if f"{p}weight" not in state]
    if missing:
        raise WeightsError(f"{source} lacks the affinity layers {', '.join(missing)}")
    return fill_bn_counters(converted)


def _irn_key(key: str) -> str | None:
    if key.startswith("resnet50."):
        return "backbone.body." + key[len("resnet50."):]
    if key == "mean_shift.running_mean":
        return "displacement.running_mean"
    match = _IRN_LEVEL.match(key)
    if match is None:
        return None
    branch, level, index, param = match.group(1), int(match.group(2)), match.group(3), match.group(4)
    if branch == "edge":
        return f"boundary.levels.{level - 1}.{index}.{param}" if level <= 5 and index in "01" else None
    if level <= 5 and index in "01":
        return f"displacement.levels.{level - 1}.{index}.{param}"
    if level == 6 and index in "01":
        return f"displacement.fuse.{index}.{param}"
    if level == 7 and index in "013":
        return f"displacement.head.{index}.{param}"
    return None


def convert_irn_resnet50(state_dict: Mapping[str, Tensor], displacement: bool = True,
                         source: str = "checkpoint") -> dict[str, Tensor]:
    """IRN's trained ``resnet50_irn`` (or this plugin's layout) → :class:`~wsss_affinity.IRNRefiner`.

    Args:
        displacement: keep the displacement branch (``False`` drops ``fc_dp*`` and the mean shift,
            for a refiner built with ``displacement=False``).

    Raises:
        WeightsError: another network (the message says which), unknown keys, or no displacement
            branch when ``displacement=True``.
    """
    state = strip_module_prefix(state_dict)
    if any(k.startswith("boundary.levels.") for k in state):
        converted = dict(state)
    elif any(k.startswith("fc_edge") for k in state):
        converted, unknown = {}, []
        older_mean = state.get("fc_dp7.4.running_mean")
        for key, value in state.items():
            if key == "fc_edge6.weight" or key == "fc_edge6.bias":
                converted[f"boundary.head.{key.rsplit('.', 1)[1]}"] = value
                continue
            if _IRN_DROPPED.match(key):
                continue
            new = _irn_key(key)
            if new is None:
                unknown.append(key)
            else:
                converted[new] = value
        if unknown:
            raise WeightsError(f"{source} is in the IRN layout but has keys the network does not: {_more(unknown)}")
        if older_mean is not None:
            converted.setdefault("displacement.running_mean", older_mean)
    else:
        raise WeightsError(f"{source} is not an IRN (resnet50_irn: resnet50.*, fc_edge1..6, fc_dp1..7): it looks "
                           f"like {describe_affinity_state_dict(state)}")
    has_dp = any(k.startswith("displacement.") for k in converted)
    if displacement and not has_dp:
        raise WeightsError(f"{source} has no displacement branch (fc_dp1..7); build the refiner with "
                           f"displacement=False to load its boundary branch alone")
    if not displacement:
        converted = {k: v for k, v in converted.items() if not k.startswith("displacement.")}
    trunk = fill_bn_counters({k: v for k, v in converted.items() if k.startswith("backbone.")})
    return converted | trunk


register_converter("psa_affinity_net")(convert_psa_affinity_net)
register_converter("irn_resnet50")(convert_irn_resnet50)


def load_converted(module: nn.Module, spec: str | os.PathLike[str], purpose: str, converter: str,
                   **options: Any) -> None:
    """Read ``spec`` (a path or ``released:`` name; weights_only), convert it with the named converter
    and load it into ``module`` strictly (every missing, unexpected or mis-shaped key named)."""
    load_checkpoint(module, spec, converter=functools.partial(get_converter(converter), **options), purpose=purpose,
                    hint=f"trained {purpose}s are files")
