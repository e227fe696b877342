"""The official CLIMS training step (github CVI-SZU/CLIMS, ``step/train_clims.py``) run beside ours.

The official step is the body of ``train_clims.run``'s loop: the ``CLIMS`` network of
``net/resnet50_clims.py`` (ResNet-50, strides 2, 2, 2, 1, sigmoid CAMs), every class's CAM resized to
224², the (image, class) pairs masked one by one, ``clip_utils.clip_forward`` twice (OTM with the
foreground images, BTM with the background images; each call tokenises and encodes the pairs'
prompts) and ``clip_loss.BackgroundSuppressionLoss`` (the foreground images again and the ten
background prompts), ``torch.mean`` of the CAMs, backward, and ``misc.torchutils.PolyOptimizer``
(SGD). OpenAI's ``clip`` package builds the CLIP model; its weights keep ``requires_grad=True`` (the
freezing lines are commented out), so every step also computes CLIP's weight gradients.

This module calls ``train_clims.run(args)`` itself, from a checkout the user points at; nothing of it
is copied here. It needs OpenAI's ``clip`` package (pure Python; PyPI's ``openai-clip`` 1.0.1 is that
code) on ``sys.path``: :func:`prepare_site` installs it into a folder of its own, so the commands are::

    git clone https://github.com/CVI-SZU/CLIMS /tmp/clims_official
    python benchmarks/clims_official.py --prepare /tmp/clims_site
    python benchmarks/clims_loss_cost.py --setups b32 --official /tmp/clims_official --official-site /tmp/clims_site

``run(args)`` reads VOC, downloads weights and calls ``.cuda()``; while it runs here (one
:class:`OfficialRun`), without changing what a step computes:

* ``torch.utils.model_zoo.load_url`` (ImageNet ResNet-50) returns nothing (the network starts at
  random) and ``torch.load('cam-baseline-voc12/res50_cam.pth')`` returns the given state dict, so the
  official network starts from the same weights as ours; ``torch.save`` of the result is kept in
  memory;
* ``clip.load`` returns a CLIP built by the package's own ``clip.model.build_model`` from the given
  state dict (OpenAI's layout), in fp32 as ``clip.load`` builds it on a CPU;
* ``voc12.dataloader.VOC12ClassificationDataset`` and the module's ``DataLoader`` give the same
  ImageNet-normalised batch at every step (the official loader's normalisation);
* ``Tensor.cuda`` / ``Module.cuda`` leave tensors where they are (CPU); ``DataParallel`` without
  GPUs calls the network directly;
* ``pkg_resources`` (gone with setuptools 81), from which ``clip`` imports only ``packaging``, is
  given as a module holding ``packaging``;
* ``cv2`` and the top-level ``imutils`` (imported by ``train_clims`` for a commented-out debug
  picture; they pull in OpenCV and matplotlib) get stand-ins that raise when used.

``misc.pyutils.AverageMeter`` is watched (each step's ``loss1``, ``L_OTM`` ... values) and
``DataParallel`` / ``PolyOptimizer`` instances are recorded, so that the caller can read the official
loss and parameters after each step. Between two official steps the loader calls ``between(i)``:
the benchmark runs ours' step there, so the two are interleaved round by round.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import subprocess
import sys
import time
import types
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

OPENAI_CLIP = "openai-clip==1.0.1"
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def prepare_site(site: str | Path) -> Path:
    """Install OpenAI's ``clip`` package (PyPI ``openai-clip`` 1.0.1, no dependencies: ``ftfy``,
    ``regex`` and ``tqdm`` come with wsss_kit's CLIP) into ``site``; returns the folder."""
    site = Path(site)
    site.mkdir(parents=True, exist_ok=True)
    subprocess.run([sys.executable, "-m", "pip", "install", "--no-deps", "--target", str(site), OPENAI_CLIP],
                   check=True)
    return site


def _stand_in(name: str, why: str) -> types.ModuleType:
    module = types.ModuleType(name)

    def missing(attr: str) -> Any:
        if attr.startswith("__"):
            raise AttributeError(attr)

        def call(*_args: Any, **_kwargs: Any) -> Any:
            raise RuntimeError(f"{name}.{attr} is a stand-in here ({why})")

        return call

    module.__getattr__ = missing  # type: ignore[method-assign]
    return module


def load_official(checkout: str | Path, site: str | Path | None = None) -> types.SimpleNamespace:
    """Import the official modules from ``checkout`` (``site``: where OpenAI's ``clip`` is, if not
    importable already). Returns ``train_clims``, ``resnet50_clims``, ``pyutils``, ``torchutils``,
    ``voc12_dataloader`` and ``clip`` modules."""
    root = Path(checkout).resolve()
    for name in ("step/train_clims.py", "net/resnet50_clims.py", "clip_utils.py", "clip_loss.py"):
        if not (root / name).is_file():
            raise FileNotFoundError(f"--official {root}: no {name}; give a checkout of github CVI-SZU/CLIMS")
    if site is not None:
        if not (Path(site) / "clip" / "model.py").is_file():
            raise FileNotFoundError(f"--official-site {site}: no clip/model.py; run "
                                    f"python benchmarks/clims_official.py --prepare {site}")
        sys.path.insert(0, str(Path(site).resolve()))
    try:
        import pkg_resources  # noqa: F401
    except ImportError:  # setuptools >= 81 has none; clip only asks it for the packaging module
        import packaging.version

        shim = types.ModuleType("pkg_resources")
        shim.packaging = packaging  # type: ignore[attr-defined]
        sys.modules["pkg_resources"] = shim
    try:
        clip = importlib.import_module("clip")
        importlib.import_module("clip.model")
    except ImportError as err:
        raise ImportError(f"the official CLIMS code needs OpenAI's clip package ({err}); run "
                          f"python benchmarks/clims_official.py --prepare SITE and pass --official-site SITE") from err
    if str(root) not in sys.path:
        sys.path.insert(0, str(root))
    try:
        import cv2  # noqa: F401
    except ImportError:
        sys.modules["cv2"] = _stand_in("cv2", "OpenCV is not needed by the CLIMS training step")
    sys.modules.setdefault("imutils", _stand_in("imutils", "the official debug pictures are not drawn"))
    with contextlib.chdir(root):  # voc12.dataloader reads voc12/cls_labels.npy from the working directory
        train_clims = importlib.import_module("step.train_clims")
    return types.SimpleNamespace(
        train_clims=train_clims,
        resnet50_clims=importlib.import_module("net.resnet50_clims"),
        resnet50_v2=importlib.import_module("net.resnet50_v2"),
        pyutils=importlib.import_module("misc.pyutils"),
        torchutils=importlib.import_module("misc.torchutils"),
        voc12_dataloader=importlib.import_module("voc12.dataloader"),
        clip=clip,
    )


@contextlib.contextmanager
def _patched(target: Any, name: str, value: Any) -> Iterator[None]:
    old = getattr(target, name)
    setattr(target, name, value)
    try:
        yield
    finally:
        setattr(target, name, old)


def official_network(official: types.SimpleNamespace, num_classes: int = 20) -> nn.Module:
    """The official ``CLIMS`` network at random (no ImageNet download); use the current torch seed."""
    with _patched(official.resnet50_v2.model_zoo, "load_url", lambda *a, **k: {}):
        return official.resnet50_clims.CLIMS(n_classes=num_classes)


def official_clip(official: types.SimpleNamespace, state: Mapping[str, Tensor]) -> nn.Module:
    """OpenAI's CLIP (``clip.model.build_model``) from ``state`` (OpenAI's layout), fp32 as ``clip.load``
    gives it on a CPU. ``build_model`` rounds the weights through fp16; they are loaded again in fp32
    so that they are exactly ``state``."""
    model = official.clip.model.build_model({k: v.clone() for k, v in state.items()}).float()
    model.load_state_dict(dict(state), strict=True)
    return model.eval()


class _Loader:
    """The official ``DataLoader`` stand-in: ``steps`` times the same batch; ``between(i)`` runs before
    batch ``i`` (``i >= 1``, after official step ``i - 1``) and after the last step (``i = steps``)."""

    def __init__(self, run: OfficialRun) -> None:
        self.run = run

    def __len__(self) -> int:
        return self.run.steps

    def __iter__(self) -> Iterator[dict[str, Tensor]]:
        run = self.run
        start = time.perf_counter()
        for i in range(run.steps):
            if i:
                run.step_seconds.append(time.perf_counter() - start)
                run.between(i)
            start = time.perf_counter()
            yield {"img": run.images, "label": run.labels}
        run.step_seconds.append(time.perf_counter() - start)
        run.between(run.steps)


class _Dataset:
    def __init__(self, size: int) -> None:
        self.size = size

    def __len__(self) -> int:
        return self.size


class OfficialRun:
    """``train_clims.run(args)`` over one fixed batch for ``steps`` steps (see the module docstring).

    Args:
        official: :func:`load_official`'s namespace.
        network_state: the official network's state dict (``torch.load`` of the baseline CAM).
        clip_state: CLIP's state dict in OpenAI's layout.
        images: ``(B, 3, H, W)`` in [0, 1] (normalised here as the official loader does).
        labels: ``(B, 20)`` multi-hot.
        steps: official steps to run.
        between: called with ``i`` after official step ``i - 1`` (``1 <= i <= steps``).
        learning_rate, weight_decay, hyper, clip_name: the official arguments (VOC defaults).

    After :meth:`run`: ``step_seconds`` (each official step, from handing out its batch to the
    next request), ``meters`` (each step's logged values), ``network`` (the official ``CLIMS``),
    ``optimizer``, ``clip`` and ``saved`` (what ``torch.save`` was given).
    """

    def __init__(self, official: types.SimpleNamespace, network_state: Mapping[str, Tensor],
                 clip_state: Mapping[str, Tensor], images: Tensor, labels: Tensor, steps: int,
                 between: Callable[[int], None] = lambda i: None, *, learning_rate: float = 0.00025,
                 weight_decay: float = 1e-4, hyper: str = "10,24,1,0.2", clip_name: str = "ViT-B/32") -> None:
        if tuple(labels.shape[1:]) != (20,):
            raise ValueError(f"the official VOC step has 20 classes; got labels {tuple(labels.shape)}")
        self.official, self.steps, self.between = official, int(steps), between
        mean = torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1)
        std = torch.tensor(IMAGENET_STD).view(1, 3, 1, 1)
        self.images = (images - mean) / std
        self.labels = labels
        self.network_state = dict(network_state)
        self.clip = official_clip(official, clip_state)
        self.args = argparse.Namespace(
            clims_network="net.resnet50_clims", train_list="", val_list="", voc12_root="",
            cam_batch_size=int(images.shape[0]), clims_num_epoches=1, num_workers=0,
            clims_learning_rate=learning_rate, cam_weight_decay=weight_decay, hyper=hyper, clip=clip_name,
            clims_weights_name="clims_official_benchmark")
        self.step_seconds: list[float] = []
        self.meters: list[dict[str, float]] = []
        self.network: nn.Module | None = None
        self.optimizer: torch.optim.Optimizer | None = None
        self.saved: Any = None

    def run(self) -> None:
        """Run the official ``run(args)`` under the stand-ins."""
        o, run = self.official, self
        loader = _Loader(self)

        class Meter(o.pyutils.AverageMeter):  # type: ignore[name-defined,misc]
            def add(self, values: dict[str, float]) -> None:
                if "loss1" in values:
                    run.meters.append(dict(values))
                super().add(values)

        class Poly(o.torchutils.PolyOptimizer):  # type: ignore[name-defined,misc]
            def __init__(self, *args: Any, **kwargs: Any) -> None:
                super().__init__(*args, **kwargs)
                run.optimizer = self

        class Parallel(nn.DataParallel):  # type: ignore[type-arg]
            def __init__(self, module: nn.Module, *args: Any, **kwargs: Any) -> None:
                super().__init__(module, *args, **kwargs)
                run.network = module

        def dataset(*_args: Any, **_kwargs: Any) -> _Dataset:
            return _Dataset(self.steps * int(self.images.shape[0]))

        def data_loader(data: _Dataset, *args: Any, **kwargs: Any) -> Any:
            return loader if data.size == self.steps * int(self.images.shape[0]) else []

        def save(obj: Any, *_args: Any, **_kwargs: Any) -> None:
            run.saved = obj

        stack = contextlib.ExitStack()
        with stack:
            for target, name, value in (
                    (o.resnet50_v2.model_zoo, "load_url", lambda *a, **k: {}),
                    (torch, "load", lambda *a, **k: {k2: v.clone() for k2, v in self.network_state.items()}),
                    (torch, "save", save),
                    (o.clip, "load", lambda *a, **k: (self.clip, None)),
                    (o.voc12_dataloader, "VOC12ClassificationDataset", dataset),
                    (o.train_clims, "DataLoader", data_loader),
                    (torch.Tensor, "cuda", lambda t, *a, **k: t),
                    (nn.Module, "cuda", lambda m, *a, **k: m),
                    (torch.nn, "DataParallel", Parallel),
                    (o.pyutils, "AverageMeter", Meter),
                    (o.torchutils, "PolyOptimizer", Poly)):
                stack.enter_context(_patched(target, name, value))
            o.train_clims.run(self.args)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--prepare", metavar="SITE", required=True,
                        help=f"install OpenAI's clip package ({OPENAI_CLIP}) into SITE")
    args = parser.parse_args()
    print(f"installed into {prepare_site(args.prepare)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
