"""State dicts in the official layouts and reference forwards written in the official order of operations.

Layouts and orders are those of jiwoon-ahn/psa ``network/resnet38d.py`` + xulianuwa/MCTformer
``seg/network/resnet38_seg.py`` (ResNet38 / DeepLabV1) and kazuto1011/deeplab-pytorch
``libs/models/{resnet,deeplabv2,msc}.py`` (DeepLabV2-MSC), written here from their structure with
functional ops only, for tiny widths.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

IMAGENET_MEAN = torch.tensor((0.485, 0.456, 0.406)).view(1, 3, 1, 1)
IMAGENET_STD = torch.tensor((0.229, 0.224, 0.225)).view(1, 3, 1, 1)
CAFFE_MEAN_BGR = torch.tensor((104.008, 116.669, 122.675)).view(1, 3, 1, 1)

# a tiny ResNet38: stem, four basic stages (mid, out) x depth, two bottlenecks
TINY_WR38 = dict(stem_width=8, widths=((8, 8), (8, 12), (12, 16), (16, 24)), depths=(2, 1, 2, 2),
                 bottleneck_widths=(32, 48), head_width=16)


def _bn(state: dict, name: str, ch: int, gen: torch.Generator, counter: bool) -> None:
    state[f"{name}.weight"] = 1 + 0.1 * torch.randn(ch, generator=gen)
    state[f"{name}.bias"] = 0.1 * torch.randn(ch, generator=gen)
    state[f"{name}.running_mean"] = 0.1 * torch.randn(ch, generator=gen)
    state[f"{name}.running_var"] = 0.5 + torch.rand(ch, generator=gen)
    if counter:
        state[f"{name}.num_batches_tracked"] = torch.tensor(7)


def _conv(state: dict, name: str, out_ch: int, in_ch: int, k: int, gen: torch.Generator, bias: bool = False) -> None:
    state[f"{name}.weight"] = torch.randn(out_ch, in_ch, k, k, generator=gen) * (2.0 / (in_ch * k * k)) ** 0.5
    if bias:
        state[f"{name}.bias"] = 0.1 * torch.randn(out_ch, generator=gen)


def resnet38_state(cfg: dict = TINY_WR38, num_classes: int | None = None, counters: bool = False,
                   seed: int = 0) -> dict[str, torch.Tensor]:
    """PSA's ImageNet layout (``num_classes=None``, no counters) or MCTformer's seg network layout."""
    gen = torch.Generator().manual_seed(seed)
    state: dict[str, torch.Tensor] = {}
    _conv(state, "conv1a", cfg["stem_width"], 3, 3, gen)
    in_ch = cfg["stem_width"]
    for k, ((mid, out), depth) in enumerate(zip(cfg["widths"], cfg["depths"])):
        for i in range(depth):
            name = f"b{k + 2}" + (f"_{i}" if i else "")
            c_in = in_ch if i == 0 else out
            _bn(state, f"{name}.bn_branch2a", c_in, gen, counters)
            _conv(state, f"{name}.conv_branch2a", mid, c_in, 3, gen)
            _bn(state, f"{name}.bn_branch2b1", mid, gen, counters)
            _conv(state, f"{name}.conv_branch2b1", out, mid, 3, gen)
            if i == 0 and (c_in != out or k < 3):
                _conv(state, f"{name}.conv_branch1", out, c_in, 1, gen)
        in_ch = out
    for k, out in zip((6, 7), cfg["bottleneck_widths"]):
        name = f"b{k}"
        _bn(state, f"{name}.bn_branch2a", in_ch, gen, counters)
        _conv(state, f"{name}.conv_branch2a", out // 4, in_ch, 1, gen)
        _bn(state, f"{name}.bn_branch2b1", out // 4, gen, counters)
        _conv(state, f"{name}.conv_branch2b1", out // 2, out // 4, 3, gen)
        _bn(state, f"{name}.bn_branch2b2", out // 2, gen, counters)
        _conv(state, f"{name}.conv_branch2b2", out, out // 2, 1, gen)
        _conv(state, f"{name}.conv_branch1", out, in_ch, 1, gen)
        in_ch = out
    _bn(state, "bn7", in_ch, gen, counters)
    if num_classes is not None:
        _conv(state, "fc8_seg_conv1", cfg["head_width"], in_ch, 3, gen, bias=True)
        _conv(state, "fc8_seg_conv2", num_classes, cfg["head_width"], 3, gen, bias=True)
    return state


def resnet38_seg_reference(state: dict, images: torch.Tensor, cfg: dict = TINY_WR38) -> torch.Tensor:
    """MCTformer's ``resnet38_seg.Net`` forward (eval mode) on images in [0, 1], upsampled as in training."""

    def bn(x, name):
        return F.batch_norm(x, state[f"{name}.running_mean"], state[f"{name}.running_var"], state[f"{name}.weight"],
                            state[f"{name}.bias"], False, 0.0, 1e-5)

    def res_block(x, name, stride, first_dilation, dilation):
        branch2 = F.relu(bn(x, f"{name}.bn_branch2a"))
        if f"{name}.conv_branch1.weight" in state:
            branch1 = F.conv2d(branch2, state[f"{name}.conv_branch1.weight"], stride=stride)
        else:
            branch1 = x
        branch2 = F.conv2d(branch2, state[f"{name}.conv_branch2a.weight"], stride=stride, padding=first_dilation,
                           dilation=first_dilation)
        branch2 = F.relu(bn(branch2, f"{name}.bn_branch2b1"))
        branch2 = F.conv2d(branch2, state[f"{name}.conv_branch2b1.weight"], padding=dilation, dilation=dilation)
        return branch1 + branch2

    def bottleneck(x, name, dilation):
        branch2 = F.relu(bn(x, f"{name}.bn_branch2a"))
        branch1 = F.conv2d(branch2, state[f"{name}.conv_branch1.weight"])
        branch2 = F.conv2d(branch2, state[f"{name}.conv_branch2a.weight"])
        branch2 = F.relu(bn(branch2, f"{name}.bn_branch2b1"))
        branch2 = F.conv2d(branch2, state[f"{name}.conv_branch2b1.weight"], padding=dilation, dilation=dilation)
        branch2 = F.relu(bn(branch2, f"{name}.bn_branch2b2"))
        branch2 = F.conv2d(branch2, state[f"{name}.conv_branch2b2.weight"])
        return branch1 + branch2

    x = (images - IMAGENET_MEAN) / IMAGENET_STD
    x = F.conv2d(x, state["conv1a.weight"], padding=1)
    for k, depth in enumerate(cfg["depths"]):
        for i in range(depth):
            name = f"b{k + 2}" + (f"_{i}" if i else "")
            if k < 3:
                x = res_block(x, name, 2 if i == 0 else 1, 1, 1)
            else:  # b5: stride 1, first_dilation 1 then dilation 2
                x = res_block(x, name, 1, 1 if i == 0 else 2, 2)
    x = bottleneck(x, "b6", 4)
    x = bottleneck(x, "b7", 4)
    x = F.relu(bn(x, "bn7"))
    x = F.relu(F.conv2d(x, state["fc8_seg_conv1.weight"], state["fc8_seg_conv1.bias"], padding=12, dilation=12))
    x = F.conv2d(x, state["fc8_seg_conv2.weight"], state["fc8_seg_conv2.bias"], padding=12, dilation=12)
    return F.interpolate(x, size=images.shape[-2:], mode="bilinear", align_corners=False)


# a tiny DeepLabV2: timm layers/channels (bottleneck planes; out = 4 * planes), stem width 64 (timm's)
TINY_V2 = dict(layers=(1, 2, 1, 2), channels=(8, 12, 16, 20))


def kazuto_state(cfg: dict = TINY_V2, num_classes: int | None = 4, prefix: str = "base.", coco_fc: int | None = None,
                 rates: tuple[int, ...] = (6, 12, 18, 24), counters: bool = True, seed: int = 0,
                 shortcut: str = "shortcut", aspp_stages: bool = False) -> dict[str, torch.Tensor]:
    """kazuto1011's layout: ``prefix`` ``base.`` (trained MSC), ``""`` (COCO init, with ``fc`` of
    ``coco_fc`` classes) or ``scale.`` (pre-2019, with ``shortcut="proj"`` and ``aspp_stages``)."""
    gen = torch.Generator().manual_seed(seed)
    state: dict[str, torch.Tensor] = {}
    _conv(state, f"{prefix}layer1.conv1.conv", 64, 3, 7, gen)
    _bn(state, f"{prefix}layer1.conv1.bn", 64, gen, counters)
    in_ch = 64
    for li, (n, planes) in enumerate(zip(cfg["layers"], cfg["channels"])):
        out = planes * 4
        for b in range(n):
            p = f"{prefix}layer{li + 2}.block{b + 1}"
            c_in = in_ch if b == 0 else out
            for unit, (o, i, k) in (("reduce", (planes, c_in, 1)), ("conv3x3", (planes, planes, 3)),
                                    ("increase", (out, planes, 1))):
                _conv(state, f"{p}.{unit}.conv", o, i, k, gen)
                _bn(state, f"{p}.{unit}.bn", o, gen, counters)
            if b == 0:
                _conv(state, f"{p}.{shortcut}.conv", out, c_in, 1, gen)
                _bn(state, f"{p}.{shortcut}.bn", out, gen, counters)
        in_ch = out
    if num_classes is not None:
        for i in range(len(rates)):
            name = f"{prefix}aspp.{'stages.' if aspp_stages else ''}c{i}"
            _conv(state, name, num_classes, in_ch, 3, gen, bias=True)
    if coco_fc is not None:
        _conv(state, f"{prefix}fc", coco_fc, in_ch, 1, gen, bias=True)
    return state


def deeplab_v2_msc_reference(state: dict, images: torch.Tensor, cfg: dict = TINY_V2, prefix: str = "base.",
                             rates: tuple[int, ...] = (6, 12, 18, 24), scales: tuple[float, ...] = (0.5, 0.75),
                             ) -> list[torch.Tensor]:
    """kazuto1011's ``MSC(DeepLabV2)`` forward in training order: ``[logits, *pyramid, logits_max]``."""

    def conv_bn(x, name, stride, padding, dilation, relu):
        x = F.conv2d(x, state[f"{name}.conv.weight"], stride=stride, padding=padding, dilation=dilation)
        x = F.batch_norm(x, state[f"{name}.bn.running_mean"], state[f"{name}.bn.running_var"],
                         state[f"{name}.bn.weight"], state[f"{name}.bn.bias"], False, 0.0, 1e-5)
        return F.relu(x) if relu else x

    def base(x):
        x = conv_bn(x, f"{prefix}layer1.conv1", 2, 3, 1, True)
        x = F.max_pool2d(x, 3, 2, 1, ceil_mode=True)
        for li, (n, stride, dilation) in enumerate(zip(cfg["layers"], (1, 2, 1, 1), (1, 1, 2, 4))):
            for b in range(n):
                p = f"{prefix}layer{li + 2}.block{b + 1}"
                s = stride if b == 0 else 1
                h = conv_bn(x, f"{p}.reduce", s, 0, 1, True)
                h = conv_bn(h, f"{p}.conv3x3", 1, dilation, dilation, True)
                h = conv_bn(h, f"{p}.increase", 1, 0, 1, False)
                h = h + (conv_bn(x, f"{p}.shortcut", s, 0, 1, False) if b == 0 else x)
                x = F.relu(h)
        return sum(F.conv2d(x, state[f"{prefix}aspp.c{i}.weight"], state[f"{prefix}aspp.c{i}.bias"], padding=r,
                            dilation=r) for i, r in enumerate(rates))

    x = images.flip(1) * 255.0 - CAFFE_MEAN_BGR
    logits = base(x)
    pyramid = [base(F.interpolate(x, size=[int(s * p) for s in x.shape[2:]], mode="bilinear", align_corners=False))
               for p in scales]
    resized = [F.interpolate(p, size=logits.shape[2:], mode="bilinear", align_corners=False) for p in pyramid]
    logits_max = torch.max(torch.stack([logits] + resized), dim=0)[0]
    return [logits] + pyramid + [logits_max]
