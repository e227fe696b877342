"""The released checkpoints, as data: the authors' files users download into :func:`weights_dir`, and
the embedded world's pretrained foundations shipped inside the package (:data:`PACKAGED_DIR`)."""

from __future__ import annotations

import fnmatch
import hashlib
import os
from dataclasses import dataclass
from pathlib import Path

__all__ = ["PACKAGED_DIR", "RELEASED", "ReleasedCheckpoint", "ReleasedInfo", "list_released", "packaged_dir",
           "released_path", "sha256_of", "weights_dir"]

PACKAGED_DIR = Path(__file__).resolve().parents[1] / "pretrained"
"""``wsss_kit/pretrained/``: the package-data folder of the shipped (``packaged``) checkpoints."""


@dataclass(frozen=True)
class ReleasedCheckpoint:
    """A released checkpoint: an authors' file that users download themselves and put into
    :func:`weights_dir`, or (``packaged``) a file shipped inside wsss_kit (:func:`packaged_dir`)."""

    filename: str
    """Name the file must have inside :func:`weights_dir` (or :func:`packaged_dir` when ``packaged``)."""
    source: str
    """Where users obtain it (project page or repository, in words)."""
    fits: str
    """The architecture / plugin it is meant for."""
    sha256: str | None = None
    """Hex SHA-256 of the file, or a prefix of it (torch.hub's 8-digit convention); None if unknown."""
    notes: str = ""
    hub_tags: tuple[str, ...] = ()
    """Hub tags (``open_clip:<model>/<tag>``, ``timm:<model>.<tag>``) that name the same weights."""
    packaged: bool = False
    """Shipped as package data in :func:`packaged_dir`: nothing to download, found offline,
    ``WSSS_WEIGHTS_DIR`` plays no part."""
    reproduce: str = ""
    """The command that rebuilds the file from a seed (packaged entries), e.g.
    ``python -m benchmarks pretrain clip``."""


_NO_SHA = " SHA-256 unknown: the authors share the file (Google Drive) without a checksum."

RELEASED: dict[str, ReleasedCheckpoint] = {
    "mctformer_v1_voc": ReleasedCheckpoint(
        "MCTformer_v1_voc.pth",
        "the MCTformer GitHub repository (xulianuwa/MCTformer), README 'MCTformer-V1' model link",
        "cams/mctformer_v1 (DeiT-S, 20 class tokens)",
        None,
        "PASCAL VOC 2012 classification checkpoint of the V1/V2 code (commit 96065977); the "
        "download has a generic name (checkpoint.pth): rename it. Its state dict sits under 'model'." + _NO_SHA,
    ),
    "mctformer_v2_voc": ReleasedCheckpoint(
        "MCTformer_v2_voc.pth",
        "the MCTformer GitHub repository (xulianuwa/MCTformer), README 'MCTformer-V2' model link",
        "cams/mctformer_v2 (DeiT-S, 20 class tokens + patch-token conv head)",
        None,
        "PASCAL VOC 2012 classification checkpoint; rename the download. State dict under 'model'." + _NO_SHA,
    ),
    "deit_small_imagenet": ReleasedCheckpoint(
        "deit_small_patch16_224-cd65a155.pth",
        "the DeiT repository (facebookresearch/deit), model zoo 'DeiT-small'",
        "cams/mctformer_v1, cams/mctformer_v2 (ImageNet initialisation)",
        "cd65a155",
        "What MCTformer fine-tunes from (https://dl.fbaipublicfiles.com/deit/deit_small_patch16_224-cd65a155.pth, "
        "the URL timm's deit_small_patch16_224.fb_in1k config names). SHA-256 prefix: the file name's hash part, "
        "torch.hub's convention (check_hash compares the first digits of the file's SHA-256).",
        ("timm:deit_small_patch16_224.fb_in1k",),
    ),
    "irn_res50_cam": ReleasedCheckpoint(
        "res50_cam.pth",
        "the CLIMS GitHub repository (CVI-SZU/CLIMS), README link to the baseline CAM network "
        "(trained with the IRN code, jiwoon-ahn/irn)",
        "cams/resnet_cam and cams/clims (ResNet-50, output stride 16)",
        None,
        "Baseline multi-label ResNet-50 CAM network on VOC 2012 train_aug; CLIMS and POLE "
        "initialise from it and POLE selects synonyms with its CAMs." + _NO_SHA,
    ),
    "torchvision_resnet50_imagenet": ReleasedCheckpoint(
        "resnet50-19c8e357.pth",
        "torchvision's model zoo (ResNet-50 ImageNet weights, the ones IRN/CLIMS start from)",
        "cams/resnet_cam (ImageNet initialisation)",
        "19c8e357",
        "https://download.pytorch.org/models/resnet50-19c8e357.pth, the URL IRN's and CLIMS's resnet50.py load. "
        "SHA-256 prefix: the file name's hash part (torch.hub's convention). timm:resnet50.tv_in1k fetches "
        "resnet50-0676ba61.pth, the file torchvision >= 0.13 names for its ResNet-50 V1 ImageNet weights "
        "(another file, so another hash).",
        ("timm:resnet50.tv_in1k",),
    ),
    "weakclip_voc": ReleasedCheckpoint(
        "weakclip_voc.pth",
        "the WeakCLIP GitHub repository (hustvl/WeakCLIP), README 'PASCAL VOC' checkpoint link",
        "refiners/weakclip (CLIP ViT-B/16 + pyramid adapter + co-attention matching)",
        None,
        "mmsegmentation checkpoint (state dict under 'state_dict'); rename the download; "
        "convert with the weakclip plugin's converter." + _NO_SHA,
    ),
    "weakclip_coco": ReleasedCheckpoint(
        "weakclip_coco.pth",
        "the WeakCLIP GitHub repository (hustvl/WeakCLIP), README 'MS COCO' checkpoint link",
        "refiners/weakclip (CLIP ViT-B/16, 81 classes)",
        None,
        "mmsegmentation checkpoint; rename the download; convert with the weakclip plugin." + _NO_SHA,
    ),
    "psa_res38_aff": ReleasedCheckpoint(
        "res38_aff.pth",
        "the PSA GitHub repository (jiwoon-ahn/psa), README link to the trained AffinityNet (ResNet-38)",
        "refiners/psa_rw (checkpoint=; converter 'psa_affinity_net')",
        None,
        "PSA's AffinityNet trained on VOC 2012 train_aug (PSA's own CAMs, alphas 4/32). MCTformer "
        "trains its own AffinityNet on its CAMs with the same code and releases none." + _NO_SHA,
    ),
    "resnet38_imagenet": ReleasedCheckpoint(
        "ilsvrc-cls_rna-a1_cls1000_ep-0001.pth",
        "the MXNet ResNet38 (Wider or Deeper, itijyou/ademxapp) ImageNet model "
        "ilsvrc-cls_rna-a1_cls1000_ep-0001.params, as linked from the PSA (jiwoon-ahn/psa) README",
        "heads/deeplab_v1_wr38, refiners/psa_rw (ResNet38 / WideResNet38 initialisation)",
        None,
        "The download is an MXNet .params file: PSA's network/resnet38d.py convert_mxnet_to_torch "
        "(needs mxnet) turns it into the state dict (conv1a.weight, b2.conv_branch2a.weight, ..., "
        "bn7.*) that the deeplab plugin reads (converter 'psa_resnet38'); torch.save that dict "
        "under this name. The download's MD5 is ff21f45d6bf03284100dcbec571edfad (ademxapp's "
        "models/checksum.md5); the converted file's SHA-256 depends on the torch version that saved it: unknown.",
    ),
    "deeplab_resnet101_coco": ReleasedCheckpoint(
        "deeplabv1_resnet101-coco.pth",
        "kazuto1011/deeplab-pytorch (scripts/setup_caffemodels.sh fetches the DeepLab authors' "
        "init.caffemodel; `python convert.py --dataset coco` writes this file), or the weights "
        "folder linked from CLIMS's segmentation/deeplabv2/README.md",
        "heads/deeplab_v2_r101 with style='caffe' (the COCO initialisation of the CLIMS/POLE retrain)",
        None,
        "DeepLabV1 ResNet-101 (Caffe) trained on MS COCO, in kazuto1011's layout "
        "(layer1.conv1.conv.weight, layer2.block1.reduce.conv.weight, ..., fc.* with 91 classes, "
        "dropped); converter 'deeplab_v2_kazuto1011'. SHA-256 unknown: the file is converted locally "
        "(scripts/setup_caffemodels.sh gives no checksum for the caffemodel archive either).",
    ),
    "deeplab_resnet101_imagenet": ReleasedCheckpoint(
        "deeplabv1_resnet101-imagenet.pth",
        "the weights folder linked from CLIMS's segmentation/deeplabv2/README.md",
        "heads/deeplab_v2_r101 with style='caffe' (the ImageNet initialisation of CLIMS's main_v2.py retrain)",
        None,
        "What CLIMS's voc12_imagenet_pretrained.yaml loads: by its name, ImageNet ResNet-101 "
        "weights in kazuto1011's DeepLabV1 layout (not checked against the file); converter "
        "'deeplab_v2_kazuto1011'." + _NO_SHA,
    ),
    "clip_vit_b16_openai": ReleasedCheckpoint(
        "ViT-B-16.pt",
        "OpenAI CLIP (github openai/CLIP), model 'ViT-B/16'",
        "CLIP access (open_clip 'ViT-B-16'), refiners/weakclip",
        "5806e77cd80f8b59890b7e101eabd078d9fb84e6937f9e85e4ecb61988df416f",
        "A TorchScript archive; open_clip reads it given the path. Equivalent tag: "
        "open_clip:ViT-B-16/openai. SHA-256: the hash part of OpenAI's download URL "
        "(openaipublic.azureedge.net/clip/models/<sha256>/ViT-B-16.pt), which clip.load checks in full.",
        ("open_clip:ViT-B-16/openai",),
    ),
    "clip_vit_b32_openai": ReleasedCheckpoint(
        "ViT-B-32.pt",
        "OpenAI CLIP (github openai/CLIP), model 'ViT-B/32'",
        "CLIP access (open_clip 'ViT-B-32'), cams/clims, prompts/pole_synonyms",
        "40d365715913c9da98579312b702a82c18be219cc2a73407c4526f58eba950af",
        "A TorchScript archive; open_clip reads it given the path. Equivalent tag: "
        "open_clip:ViT-B-32/openai. SHA-256: the hash part of OpenAI's download URL "
        "(openaipublic.azureedge.net/clip/models/<sha256>/ViT-B-32.pt), which clip.load checks in full.",
        ("open_clip:ViT-B-32/openai",),
    ),
    # The embedded world's foundations: trained by the repo's own scripts on the synthetic world's
    # pretraining split and shipped inside the package (float16 state dicts, see save_packaged_state_dict).
    "wsss_synthetic_clip": ReleasedCheckpoint(
        "wsss_synthetic_clip.pt",
        "shipped with wsss_kit; reproduce with python -m benchmarks pretrain clip",
        "CLIP access (open_clip 'wsss-synthetic-clip'), refiners/weakclip, cams/clims, cams/pole, "
        "prompts/pole_synonyms on the embedded world",
        "80d41b480f132d662c5932a413045f2e04d18c69dbe9be4f0b9a304f1e906688",
        "A tiny CLIP trained contrastively on the synthetic world's captioned scenes (pretraining split); "
        "open_clip state dict in float16, loaded as float32. Held-out zero-shot mAP over the five classes "
        "0.64, water AP 0.90 (below the 0.9 class target: see the model card). SHA-256 of the shipped file; "
        "python -m benchmarks pretrain clip rebuilds it from seed 0. Model card: docs/embedded_models.md.",
        packaged=True,
        reproduce="python -m benchmarks pretrain clip",
    ),
    "wsss_world_resnet50": ReleasedCheckpoint(
        "wsss_world_resnet50.pt",
        "shipped with wsss_kit; reproduce with python -m benchmarks pretrain resnet",
        "timm 'wsss_world_resnet50' (ResNet-50 layout at a quarter width): cams/resnet_cam, cams/clims, "
        "cams/pole, refiners/irn_rw, heads/deeplab_v2_r101 (style='pytorch'), heads/smp "
        "(encoder 'tu-wsss_world_resnet50')",
        "fd3504d4edf2eff33f3c22d63bf108b0b9f6d3ea100b1f2e8133f187786184f0",
        "The embedded world's 'ImageNet' ResNet: a multi-label classifier of the 20 scene tags "
        "(wsss_kit.data.captions.ATTRIBUTES) pretrained on the synthetic world's pretraining split; timm state "
        "dict (classifier fc.* included) in float16, loaded as float32. SHA-256 of the shipped file; "
        "python -m benchmarks pretrain resnet rebuilds it from seed 0. "
        "Model card: docs/embedded_models.md.",
        packaged=True,
        reproduce="python -m benchmarks pretrain resnet",
    ),
    "wsss_world_vit": ReleasedCheckpoint(
        "wsss_world_vit.pt",
        "shipped with wsss_kit; reproduce with python -m benchmarks pretrain vit",
        "timm 'wsss_world_vit' (DeiT-style ViT, 128 px, patch 8): cams/mctformer_v1, cams/mctformer_v2",
        "d9d0a3b943189ef94f1a704b0406e1f2497bf14a271cf1a0993eea53c8eadd24",
        "The embedded world's 'ImageNet' DeiT: a multi-label classifier pretrained on the synthetic world's "
        "pretraining split; timm state dict (classifier head.* included) in float16, loaded as float32. "
        "SHA-256 of the shipped file; python -m benchmarks pretrain vit rebuilds it from seed 0. "
        "Model card: docs/embedded_models.md.",
        packaged=True,
        reproduce="python -m benchmarks pretrain vit",
    ),
}


@dataclass(frozen=True)
class ReleasedInfo:
    """One row of :func:`list_released`: a :data:`RELEASED` entry with its name and where its file is."""

    name: str
    """The ``released:<name>`` spec's name."""
    filename: str
    fits: str
    sha256: str | None
    """Hex SHA-256 (or a prefix of it); None when unknown."""
    source: str
    notes: str
    hub_tags: tuple[str, ...]
    packaged: bool = False
    """Shipped inside wsss_kit (package data) rather than downloaded."""
    path: str = ""
    """Where the file is (packaged) or is expected (:func:`weights_dir`)."""
    present: bool = False
    """Whether that file exists."""

    @property
    def spec(self) -> str:
        return f"released:{self.name}"


def list_released(pattern: str = "*") -> list[ReleasedInfo]:
    """The checkpoints :data:`RELEASED` knows, sorted by name (like ``timm.list_pretrained``), each with
    the path of its file and whether it is there (shipped files: in :func:`packaged_dir`).

    ``pattern`` is a shell-style filter on the name, e.g. ``"clip_*"``.
    """
    rows = []
    for name, e in sorted(RELEASED.items()):
        if fnmatch.fnmatchcase(name, pattern):
            path = released_path(e)
            rows.append(ReleasedInfo(name, e.filename, e.fits, e.sha256, e.source, e.notes, e.hub_tags,
                                     e.packaged, str(path), path.is_file()))
    return rows


def weights_dir() -> Path:
    """Folder holding released checkpoints: ``$WSSS_WEIGHTS_DIR`` or ``~/.cache/wsss_kit/weights``."""
    env = os.environ.get("WSSS_WEIGHTS_DIR")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "wsss_kit" / "weights"


def packaged_dir() -> Path:
    """Folder of the checkpoints shipped with wsss_kit: :data:`PACKAGED_DIR` (read at call time)."""
    return PACKAGED_DIR


def released_path(entry: ReleasedCheckpoint) -> Path:
    """Where ``entry``'s file lives: :func:`packaged_dir` for shipped ones, else :func:`weights_dir`."""
    return (packaged_dir() if entry.packaged else weights_dir()) / entry.filename


def sha256_of(path: str | os.PathLike[str]) -> str:
    """Hex SHA-256 of a file, read in chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()

