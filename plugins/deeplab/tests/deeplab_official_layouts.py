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


def resnet38_trunk_reference(state: dict, images: torch.Tensor, cfg: dict = TINY_WR38) -> dict[str, torch.Tensor]:
    """PSA's ``resnet38d.Net.forward_as_dict`` (eval mode): ``conv4`` (BN-ReLU input of ``b5``),
    ``conv5`` (of ``b6``) and ``conv6`` (ReLU(``bn7``)), for images in [0, 1]."""

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

    taps = {}
    x = (images - IMAGENET_MEAN) / IMAGENET_STD
    x = F.conv2d(x, state["conv1a.weight"], padding=1)
    for k, depth in enumerate(cfg["depths"]):
        for i in range(depth):
            name = f"b{k + 2}" + (f"_{i}" if i else "")
            if k < 3:
                x = res_block(x, name, 2 if i == 0 else 1, 1, 1)
            else:  # b5: stride 1, first_dilation 1 then dilation 2
                x = res_block(x, name, 1, 1 if i == 0 else 2, 2)
        if k == 2:
            taps["conv4"] = F.relu(bn(x, "b5.bn_branch2a"))
    taps["conv5"] = F.relu(bn(x, "b6.bn_branch2a"))
    x = bottleneck(x, "b6", 4)
    x = bottleneck(x, "b7", 4)
    taps["conv6"] = F.relu(bn(x, "bn7"))
    return taps


def resnet38_seg_reference(state: dict, images: torch.Tensor, cfg: dict = TINY_WR38) -> torch.Tensor:
    """MCTformer's ``resnet38_seg.Net`` forward (eval mode) on images in [0, 1], upsampled as in training."""
    x = resnet38_trunk_reference(state, images, cfg)["conv6"]
    x = F.relu(F.conv2d(x, state["fc8_seg_conv1.weight"], state["fc8_seg_conv1.bias"], padding=12, dilation=12))
    x = F.conv2d(x, state["fc8_seg_conv2.weight"], state["fc8_seg_conv2.bias"], padding=12, dilation=12)
    return F.interpolate(x, size=images.shape[-2:], mode="bilinear", align_corners=False)


def psa_aff_state(cfg: dict = TINY_WR38, embed: tuple[int, int, int] = (4, 4, 8), embed_dim: int = 16,
                  counters: bool = True, seed: int = 0) -> dict[str, torch.Tensor]:
    """PSA's ``resnet38_aff.Net`` layout: the ResNet38 keys plus ``f8_3``, ``f8_4``, ``f8_5``, ``f9``."""
    gen = torch.Generator().manual_seed(seed + 1)
    state = resnet38_state(cfg, counters=counters, seed=seed)
    taps = (cfg["widths"][2][1], cfg["widths"][3][1], cfg["bottleneck_widths"][1])
    for name, out, in_ch in zip(("f8_3", "f8_4", "f8_5"), embed, taps):
        _conv(state, name, out, in_ch, 1, gen)
    _conv(state, "f9", embed_dim, sum(embed), 1, gen)
    return state


def psa_aff_reference(state: dict, images: torch.Tensor, cfg: dict = TINY_WR38) -> torch.Tensor:
    """PSA's AffinityNet embedding (before the pair affinities), eval mode."""
    d = resnet38_trunk_reference(state, images, cfg)
    feats = [F.elu(F.conv2d(d[t], state[f"{n}.weight"])) for n, t in (("f8_3", "conv4"), ("f8_4", "conv5"),
                                                                        ("f8_5", "conv6"))]
    return F.elu(F.conv2d(torch.cat(feats, dim=1), state["f9.weight"]))


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


# a tiny IRN: a torchvision-layout bottleneck ResNet (timm resnet50 with these layers/channels), stem 64
TINY_IRN = dict(layers=(1, 1, 1, 1), channels=(4, 8, 8, 16), edge_width=8, dp_widths=(8, 8, 16, 16, 16, 16, 16),
                dp_groups=(2, 4, 4, 4, 4, 4, 4))


def _gn(state: dict, name: str, ch: int, gen: torch.Generator) -> None:
    state[f"{name}.weight"] = 1 + 0.1 * torch.randn(ch, generator=gen)
    state[f"{name}.bias"] = 0.1 * torch.randn(ch, generator=gen)


def irn_state(cfg: dict = TINY_IRN, version: str = "final", seed: int = 0) -> dict[str, torch.Tensor]:
    """``AffinityDisplacementLoss.state_dict()`` of jiwoon-ahn/irn ``net/resnet50_irn.py``, aliases included.

    ``version="final"``: ``mean_shift`` module (buffer ``running_mean``, also under ``fc_dp7.4``),
    buffers ``path_indices<n>`` and ``disp_target``; ``"older"``: the mean shift is a BatchNorm
    (``fc_dp7.4.running_mean/var/num_batches_tracked``), parameters ``path_indices<n>``, ``ind_from``, ``ind_to``.
    """
    gen = torch.Generator().manual_seed(seed)
    state: dict[str, torch.Tensor] = {}
    _conv(state, "resnet50.conv1", 64, 3, 7, gen)
    _bn(state, "resnet50.bn1", 64, gen, True)
    in_ch, outs = 64, []
    for li, (n, planes) in enumerate(zip(cfg["layers"], cfg["channels"])):
        for b in range(n):
            p = f"resnet50.layer{li + 1}.{b}"
            c_in = in_ch if b == 0 else planes * 4
            for i, (o, c, k) in enumerate(((planes, c_in, 1), (planes, planes, 3), (planes * 4, planes, 1)), 1):
                _conv(state, f"{p}.conv{i}", o, c, k, gen)
                _bn(state, f"{p}.bn{i}", o, gen, True)
            if b == 0:
                _conv(state, f"{p}.downsample.0", planes * 4, c_in, 1, gen)
                _bn(state, f"{p}.downsample.1", planes * 4, gen, True)
        in_ch = planes * 4
        outs.append(in_ch)
    feats = [64] + outs
    ew = cfg["edge_width"]
    for i, c in enumerate(feats, 1):
        _conv(state, f"fc_edge{i}.0", ew, c, 1, gen)
        _gn(state, f"fc_edge{i}.1", ew, gen)
    _conv(state, "fc_edge6", 1, 5 * ew, 1, gen, bias=True)
    w = cfg["dp_widths"]
    for i, (c, o) in enumerate(zip(feats, w[:5]), 1):
        _conv(state, f"fc_dp{i}.0", o, c, 1, gen)
        _gn(state, f"fc_dp{i}.1", o, gen)
    _conv(state, "fc_dp6.0", w[5], w[2] + w[3] + w[4], 1, gen)
    _gn(state, "fc_dp6.1", w[5], gen)
    _conv(state, "fc_dp7.0", w[6], w[0] + w[1] + w[5], 1, gen)
    _gn(state, "fc_dp7.1", w[6], gen)
    _conv(state, "fc_dp7.3", 2, w[6], 1, gen)
    mean = torch.tensor([0.3, -0.2])
    if version == "final":
        state["mean_shift.running_mean"] = mean
        state["fc_dp7.4.running_mean"] = mean.clone()
        state["disp_target"] = torch.zeros(1, 2, 5, 1)
    else:
        state["fc_dp7.4.running_mean"] = mean
        state["fc_dp7.4.running_var"] = torch.ones(2)
        state["fc_dp7.4.num_batches_tracked"] = torch.tensor(3)
        state["ind_from"], state["ind_to"] = torch.arange(6)[None], torch.arange(12).view(2, 6)
    for i in range(3):
        state[f"path_indices{i}"] = torch.arange(12).view(2, 2, 3) + i
    aliases = {"stage1.0.": "resnet50.conv1.", "stage1.1.": "resnet50.bn1.", "backbone.0.0.": "resnet50.conv1.",
               "backbone.0.1.": "resnet50.bn1."}
    for li in range(4):
        aliases[f"stage{li + 2}.0."] = aliases[f"backbone.{li + 1}.0."] = f"resnet50.layer{li + 1}."
    for i in range(6):
        aliases[f"edge_layers.{i}."] = f"fc_edge{i + 1}."
    for i in range(7):
        aliases[f"dp_layers.{i}."] = f"fc_dp{i + 1}."
    for alias, canonical in aliases.items():
        for key in [k for k in state if k.startswith(canonical)]:
            state[alias + key[len(canonical):]] = state[key]
    return state


def irn_reference(state: dict, images: torch.Tensor, cfg: dict = TINY_IRN) -> tuple[torch.Tensor, torch.Tensor]:
    """IRN's ``Net.forward`` in eval mode (strides 2, 2, 2, 1): ``(edge logits, displacement − running_mean)``."""

    def bn(x, name):
        return F.batch_norm(x, state[f"{name}.running_mean"], state[f"{name}.running_var"], state[f"{name}.weight"],
                            state[f"{name}.bias"], False, 0.0, 1e-5)

    def seq(x, name, groups, scale=1):
        x = F.group_norm(F.conv2d(x, state[f"{name}.0.weight"]), groups, state[f"{name}.1.weight"],
                         state[f"{name}.1.bias"])
        if scale > 1:
            x = F.interpolate(x, scale_factor=scale, mode="bilinear", align_corners=False)
        return F.relu(x)

    x = (images - IMAGENET_MEAN) / IMAGENET_STD
    x = F.relu(bn(F.conv2d(x, state["resnet50.conv1.weight"], stride=2, padding=3), "resnet50.bn1"))
    feats = [F.max_pool2d(x, 3, 2, 1)]
    x = feats[0]
    for li, (n, stride) in enumerate(zip(cfg["layers"], (1, 2, 2, 1))):
        for b in range(n):
            p = f"resnet50.layer{li + 1}.{b}"
            s = stride if b == 0 else 1
            h = F.relu(bn(F.conv2d(x, state[f"{p}.conv1.weight"]), f"{p}.bn1"))
            h = F.relu(bn(F.conv2d(h, state[f"{p}.conv2.weight"], stride=s, padding=1), f"{p}.bn2"))
            h = bn(F.conv2d(h, state[f"{p}.conv3.weight"]), f"{p}.bn3")
            short = bn(F.conv2d(x, state[f"{p}.downsample.0.weight"], stride=s), f"{p}.downsample.1") if b == 0 else x
            x = F.relu(h + short)
        feats.append(x)
    x1, x2, x3, x4, x5 = feats
    h, w = x2.shape[-2:]
    edges = [seq(f, f"fc_edge{i + 1}", 4, sc)[..., :h, :w] for i, (f, sc) in enumerate(zip(feats, (1, 1, 2, 4, 4)))]
    edge = F.conv2d(torch.cat(edges, 1), state["fc_edge6.weight"], state["fc_edge6.bias"])
    g = cfg["dp_groups"]
    dp1, dp2, dp3 = seq(x1, "fc_dp1", g[0]), seq(x2, "fc_dp2", g[1]), seq(x3, "fc_dp3", g[2])
    dp4 = seq(x4, "fc_dp4", g[3], 2)[..., :dp3.shape[2], :dp3.shape[3]]
    dp5 = seq(x5, "fc_dp5", g[4], 2)[..., :dp3.shape[2], :dp3.shape[3]]
    up3 = seq(torch.cat([dp3, dp4, dp5], 1), "fc_dp6", g[5], 2)[..., :dp2.shape[2], :dp2.shape[3]]
    dp = F.conv2d(seq(torch.cat([dp1, dp2, up3], 1), "fc_dp7", g[6]), state["fc_dp7.3.weight"])
    mean = state.get("mean_shift.running_mean", state["fc_dp7.4.running_mean"])
    return edge, dp - mean.view(1, 2, 1, 1)
