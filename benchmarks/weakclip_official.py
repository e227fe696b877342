"""The official WeakCLIP code (github hustvl/WeakCLIP) run beside ours, from a local checkout.

The official training step is mmsegmentation 0.19's ``WeakCLIP`` segmentor (``forward_train``:
CLIP ViT-B/16 with its pyramid adapter, the 13-token learnable-prompt text encoder, co-attention,
the FPN neck and ``FPNHeadDGCN`` with its pydensecrf boundary loss, the identity head on the score
map) plus mmcv's optimizer built from the official config (AdamW, ``lr_mult`` 0 for ``backbone``
and ``text_encoder``). This module imports that code from a checkout the user points at; nothing
of it is copied here. It needs, on ``sys.path`` before the checkout, the pure-Python parts of
``mmcv==1.4.0`` (the official pin; the compiled ``mmcv.ops`` are not needed by this model),
``mmsegmentation==0.19.0``, ``addict``, ``yapf==0.32.0``, ``prettytable`` and ``opencv-python-headless``.
:func:`prepare_site` downloads them from PyPI into one folder (no build: mmcv's sdist is only
unpacked), so the commands are::

    git clone https://github.com/hustvl/WeakCLIP /tmp/weakclip_official
    python benchmarks/weakclip_official.py --prepare /tmp/weakclip_site
    python benchmarks/weakclip_step.py --official /tmp/weakclip_official --official-site /tmp/weakclip_site
    WEAKCLIP_OFFICIAL_SITE=/tmp/weakclip_site python -m benchmarks speed weakclip_step \
        --official-weakclip /tmp/weakclip_official

Three things of the official code do not run as they are on a machine without CUDA, and are
adapted at import time, without changing what is computed:

* ``timm.models.layers.drop`` (timm 0.5.4, the official pin) moved to ``timm.layers.drop``: aliased.
* ``mmcv.ops`` without its compiled extension: mmseg imports a few names from it at import
  time (point head, PSA head, CCNet head, ONNX export), none used here; they get stand-ins that
  raise when called.
* ``dgcn_cacul_knn_matrix_`` allocates on ``device='cuda'`` (its k-NN matrix is computed on every
  step, though the ``dgcn_lite`` config never reads it): the module's ``torch`` is given a view
  that maps ``'cuda'`` to the device of the run.

* ``dgcn_crf_operation`` clamps the probabilities it gets in place (``probs[probs < 1e-4] = 1e-4``).
  It gets ``probs.cpu().detach().numpy()``: on a GPU a copy, on a CPU the very storage of the
  tensor the seeding and boundary losses then read, so on a CPU the official losses change (the
  seeding loss of random logits drops by a quarter). The CRF gets a copy, as it does on a GPU.

Random weights (``pretrained=None``): the official text encoder allocates its position table and
text projection with ``torch.empty`` (a real run loads CLIP over them), so whatever memory held
(NaN at times) would be used; they get CLIP's own initialisation (normal, std 0.01 and
``width ** -0.5``).

The model is built as the official ``tools/train.py`` builds it (``backbone.init_weights()``,
``text_encoder.init_weights()``, the backbone's BatchNorms converted to SyncBN); in one process
(no process group) SyncBN normalises as BN does, and ``norm_eval`` freezes only ``BatchNorm2d``
instances, so the adapter's and the decode head's SyncBN layers train.
"""

from __future__ import annotations

import argparse
import os
import re
import sys
import tarfile
import time
import types
import urllib.request
import zipfile
from pathlib import Path
from typing import Any

import numpy as np
import torch

CONFIG = "configs/voc_weakclip_vit-b_512x512_20k_mct.py"
SITE_ENV = "WEAKCLIP_OFFICIAL_SITE"  # the folder of prepare_site, when no site is passed
# name, version, file pattern on PyPI's simple index (wheel, or mmcv's sdist, unpacked without a build)
SITE_PACKAGES = (
    ("mmcv", "1.4.0", r"mmcv-1\.4\.0\.tar\.gz"),
    ("mmsegmentation", "0.19.0", r"mmsegmentation-0\.19\.0-py3-none-any\.whl"),
    ("addict", "2.4.0", r"addict-2\.4\.0-py3-none-any\.whl"),
    ("yapf", "0.32.0", r"yapf-0\.32\.0-py2\.py3-none-any\.whl"),
    ("prettytable", "3.10.0", r"prettytable-3\.10\.0-py3-none-any\.whl"),
    ("wcwidth", "0.2.13", r"wcwidth-0\.2\.13-py2\.py3-none-any\.whl"),
)
# ImageNet statistics on the 0-255 scale: the official img_norm_cfg
MEAN = np.array([123.675, 116.28, 103.53], dtype=np.float32)
STD = np.array([58.395, 57.12, 57.375], dtype=np.float32)
CRF_SECONDS = [0.0]  # time spent in the official boundary loss's CRFs (summed; read the difference)


def prepare_site(dest: str | Path, index: str = "https://pypi.org/simple") -> Path:
    """Download the official pins into ``dest`` (importable with ``dest`` on ``sys.path``).

    opencv-python-headless is installed with pip (a binary wheel for this platform)."""
    import subprocess

    dest = Path(dest)
    dest.mkdir(parents=True, exist_ok=True)
    for name, version, pattern in SITE_PACKAGES:
        with urllib.request.urlopen(f"{index}/{name}/") as page:
            links = re.findall(r'href="([^"#]+)', page.read().decode())
        url = next((u for u in links if re.search(pattern + "$", u)), None)
        if url is None:
            raise SystemExit(f"{name}=={version}: no file matching {pattern} on {index}/{name}/")
        archive = dest / url.rsplit("/", 1)[-1]
        urllib.request.urlretrieve(url, archive)
        if archive.suffix == ".whl":
            with zipfile.ZipFile(archive) as z:
                z.extractall(dest)
        else:  # mmcv's sdist: its pure-Python package folder is all this model needs
            with tarfile.open(archive) as t:
                members = [m for m in t.getmembers() if m.name.startswith(f"mmcv-{version}/mmcv/")]
                for m in members:
                    m.name = m.name.split("/", 1)[1]
                t.extractall(dest, members=members, filter="data")
        archive.unlink()
        print(f"{name}=={version}", flush=True)
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--target", str(dest),
                    "opencv-python-headless"], check=True)
    return dest


class _DeviceMapped(types.ModuleType):
    """``torch`` as the official k-NN helper sees it: ``device='cuda'`` becomes ``device``."""

    def __init__(self, device: torch.device) -> None:
        super().__init__("torch")
        self._device = device

    def __getattr__(self, name: str) -> Any:
        attr = getattr(torch, name)
        if name in ("zeros", "eye", "ones", "empty"):
            def mapped(*args: Any, **kwargs: Any) -> Any:
                if kwargs.get("device") == "cuda":
                    kwargs["device"] = self._device
                return attr(*args, **kwargs)
            return mapped
        return attr


def _stand_in_mmcv_ops() -> None:
    try:
        import mmcv.ops  # noqa: F401
        return
    except ImportError:
        pass

    def missing(*_: Any, **__: Any) -> Any:
        raise RuntimeError("mmcv.ops is not compiled here (the WeakCLIP model never calls it)")

    ops = types.ModuleType("mmcv.ops")
    for name in ("point_sample", "get_onnxruntime_op_path", "PSAMask", "CrissCrossAttention"):
        setattr(ops, name, missing)
    sys.modules["mmcv.ops"] = ops


def import_official(checkout: str | Path, site: str | Path | None = None, device: str = "cpu") -> types.ModuleType:
    """Import the checkout's ``weakclip`` package (registering its mmseg modules); see the module docstring."""
    checkout = Path(checkout)
    site = site or os.environ.get(SITE_ENV) or None
    if "weakclip.heads" in sys.modules and getattr(sys.modules["weakclip.heads"], "_wsss_adapted", False):
        return sys.modules["weakclip"]
    if not (checkout / "weakclip" / "weakclip.py").is_file():
        raise SystemExit(f"--official {checkout}: not a WeakCLIP checkout (no weakclip/weakclip.py)")
    for path in (checkout, site):
        if path is not None and str(path) not in sys.path:
            sys.path.insert(0, str(path))
    import timm.layers.drop
    import timm.models.layers

    if not hasattr(timm.models.layers, "drop"):
        timm.models.layers.drop = timm.layers.drop  # type: ignore[attr-defined]
    try:
        import mmcv  # noqa: F401
    except ImportError as e:
        raise SystemExit(f"the official code needs mmcv 1.4.0 and mmsegmentation 0.19.0 ({e}); "
                         "prepare them with: python benchmarks/weakclip_official.py --prepare DIR, "
                         "then pass --official-site DIR") from e
    _stand_in_mmcv_ops()
    import weakclip  # the checkout's package: registers WeakCLIP, its backbones and heads with mmseg
    import weakclip.dgcnutils as dgcnutils

    dgcnutils.torch = _DeviceMapped(torch.device(device))  # type: ignore[attr-defined]
    import weakclip.heads as heads

    crf_operation = dgcnutils.dgcn_crf_operation

    def crf_on_a_copy(images: np.ndarray, probs: np.ndarray, img_metas: Any) -> np.ndarray:
        start = time.perf_counter()
        try:
            return crf_operation(images, np.array(probs, copy=True), img_metas)
        finally:
            CRF_SECONDS[0] += time.perf_counter() - start

    heads.dgcn_crf_operation = crf_on_a_copy  # type: ignore[attr-defined]
    heads._wsss_adapted = True  # type: ignore[attr-defined]
    return weakclip


def build_official(checkout: str | Path, class_names: list[str], device: str = "cpu") -> torch.nn.Module:
    """The official segmentor from the official VOC config, random weights (``pretrained=None``)."""
    from mmcv import Config
    from mmseg.models import build_segmentor

    cfg = Config.fromfile(str(Path(checkout) / CONFIG))
    cfg.model.pretrained = None
    cfg.model.class_names = list(class_names)
    model = build_segmentor(cfg.model, train_cfg=cfg.get("train_cfg"), test_cfg=cfg.get("test_cfg"))
    # as the official tools/train.py: only the CLIP parts are initialised (from ``pretrained``,
    # here none), and the backbone's BatchNorms become SyncBN, which ``norm_eval`` does not freeze
    model.backbone.init_weights()
    model.text_encoder.init_weights()
    model.backbone = torch.nn.SyncBatchNorm.convert_sync_batchnorm(model.backbone)
    text = model.text_encoder
    with torch.no_grad():  # torch.empty in the official text encoder; CLIP's own initialisation
        torch.nn.init.normal_(text.positional_embedding, std=0.01)
        torch.nn.init.normal_(text.text_projection, std=text.text_projection.shape[0] ** -0.5)
    return model.to(device)


def load_official(checkout: str | Path, site: str | Path | None = None, device: str = "cpu",
                  seed: int = 0, train: bool = False) -> torch.nn.Module:
    """:func:`import_official` then :func:`build_official` with VOC's 21 classes, seeded, in train or eval mode."""
    from wsss_kit.data.palette import VOC_CLASSES

    import_official(checkout, site, device)
    torch.manual_seed(seed)
    model = build_official(checkout, ["background", *VOC_CLASSES], device)
    model.train(train)  # the official train() returns None
    return model


def build_official_optimizer(model: torch.nn.Module, checkout: str | Path) -> torch.optim.Optimizer:
    """mmcv's optimizer from the official config (AdamW lr 1e-4, wd 3e-5; lr_mult 0 for CLIP)."""
    from mmcv import Config
    from mmcv.runner import build_optimizer

    cfg = Config.fromfile(str(Path(checkout) / CONFIG))
    return build_optimizer(model, cfg.optimizer)


def official_normalize(images: torch.Tensor) -> torch.Tensor:
    """Images ``(B, 3, H, W)`` in [0, 1] as the official loader gives them: ``(255 x - mean) / std``."""
    mean = torch.as_tensor(MEAN, device=images.device)[:, None, None]
    std = torch.as_tensor(STD, device=images.device)[:, None, None]
    return (images * 255.0 - mean) / std


def official_inputs(images: torch.Tensor,
                    seeds: torch.Tensor) -> tuple[torch.Tensor, list[dict[str, Any]], torch.Tensor]:
    """The official loader's tensors for images ``(B, 3, H, W)`` in [0, 1] and seeds ``(B, H, W)``:
    ``(x - mean) / std`` on the 0-255 scale, img_metas with ``img_norm_cfg``, seeds ``(B, 1, H, W)``."""
    x = official_normalize(images)
    h, w = images.shape[-2:]
    metas = [{"img_norm_cfg": {"mean": MEAN, "std": STD, "to_rgb": True}, "img_shape": (h, w, 3),
              "ori_shape": (h, w, 3), "pad_shape": (h, w, 3), "flip": False} for _ in range(images.shape[0])]
    return x, metas, seeds[:, None].long()


def official_window_logits(model: torch.nn.Module, window: torch.Tensor) -> torch.Tensor:
    """The official network on sliding windows ``(B, 3, h, w)`` in [0, 1]: the decode head's logits
    ``(B, K, h/4, w/4)``, i.e. the official ``encode_decode`` (backbone, text encoder and
    co-attention in ``after_extract_feat``, neck, head) before its final resize, which the caller's
    window loop does as the official ``slide_inference`` does (bilinear, no corner alignment)."""
    feats = model.extract_feat(official_normalize(window))
    _, levels, _ = model.after_extract_feat(feats)
    if model.with_neck:
        levels = list(model.neck(levels))
    return model.decode_head.forward(levels)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--prepare", metavar="DIR", required=True,
                        help="download mmcv 1.4.0 / mmsegmentation 0.19.0 and their small dependencies into DIR")
    args = parser.parse_args()
    print(f"ready: --official-site {prepare_site(args.prepare)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
