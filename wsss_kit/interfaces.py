"""The interfaces every plugin implements.

Tensor conventions (shared by every interface, see docs/architecture.md):

* images   ``float32[B, 3, H, W]`` RGB in ``[0, 1]``, *not* normalised; each model applies the
  normalisation its backbone expects, so that CRFs, pictures and models all see one format.
* labels   ``float32[B, C]`` multi-hot over the ``C`` foreground classes.
* CAMs     ``float32[B, C, H, W]`` in ``[0, 1]``, zero for classes absent from ``labels``.
* masks    ``int64[B, H, W]``: 0 = background, 1..C = foreground classes, 255 = ignore.
* probabilities over ``K = C + 1`` classes: ``float32[B, K, H, W]``, channel 0 is background.

A plugin declares the interface version it was written for with a ``wsss_api_version`` attribute
(``"MAJOR.MINOR"``) on the object its entry point names; see :mod:`wsss_kit.registry`.

Besides the interfaces, a plugin object may offer optional hooks the engine and the pipeline look
for; each is a :class:`typing.Protocol` here (checked with ``isinstance``):
:class:`HasParamGroups` (per-group learning rates), :class:`HasTrainingStep` (a trainable refiner's
loss), :class:`HasTrainingTargets` (a refiner that makes its own training labels from CAMs) and
:class:`LoadsWeights` (reads its authors' checkpoint layouts).
"""

from __future__ import annotations

import abc
import os
from typing import Any, Mapping, Protocol, Sequence, runtime_checkable

import torch
from torch import nn
from torch.utils.data import Dataset

from .cam_ops import class_argmax
from .shapes import check_shape

__all__ = ["HOOKS", "IGNORE_INDEX", "INTERFACES", "CAMGenerator", "HasParamGroups", "HasTrainingStep",
           "HasTrainingTargets", "LoadsWeights", "Loss", "PromptStrategy", "Refiner", "RetrainHead", "WSSSDataset",
           "cams_to_seeds", "makes_own_targets"]

IGNORE_INDEX = 255
"""Mask value for pixels that are ignored by losses and metrics."""


class CAMGenerator(nn.Module, abc.ABC):
    """A trainable network that turns image-level labels into class activation maps.

    Subclasses set ``num_classes`` (``C``, foreground only) and implement :meth:`forward` and
    :meth:`cams`; :meth:`seeds` is shared.
    """

    num_classes: int

    @abc.abstractmethod
    def forward(self, images: torch.Tensor, labels: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        """Training/inference pass.

        Args:
            images: ``(B, 3, H, W)`` in [0, 1].
            labels: ``(B, C)`` multi-hot, or ``None`` at inference.

        Returns:
            a dict with at least ``"logits"`` ``(B, C)``; when ``labels`` is given also ``"loss"``
            (a scalar to minimise) and optionally further scalar terms for logging.

        Optional keyword ``names``: a network whose training needs the image ids (e.g. POLE's
        per-image prompts) declares ``forward(self, images, labels=None, names=None)``; the engine's
        :func:`~wsss_kit.engine.default_step` then passes ``names=batch["name"]``, the ``B`` image
        ids as a list of str. Networks that do not declare it are called without it.
        """

    @abc.abstractmethod
    def cams(
        self,
        images: torch.Tensor,
        labels: torch.Tensor,
        scales: Sequence[float] = (1.0,),
        flip: bool = False,
    ) -> torch.Tensor:
        """Class activation maps ``(B, C, H, W)`` in [0, 1] at the image size, zero where
        ``labels`` is 0."""

    def seeds(self, cams: torch.Tensor, bg_threshold: float) -> torch.Tensor:
        """Seed masks ``(B, H, W)`` int64 from CAMs ``(B, C, H, W)``.

        A pixel takes the class with the highest CAM, or background (0) where no CAM exceeds
        ``bg_threshold``.
        """
        return cams_to_seeds(cams, bg_threshold)


def cams_to_seeds(cams: torch.Tensor, bg_threshold: float) -> torch.Tensor:
    """Argmax over ``[bg_threshold, cams]``: ``(B, C, H, W)`` → int64 ``(B, H, W)`` with 0 = background."""
    check_shape(cams, "B C H W", "cams")
    bg = torch.full_like(cams[:, :1], float(bg_threshold))
    return class_argmax(torch.cat([bg, cams], dim=1))


class PromptStrategy(nn.Module, abc.ABC):
    """Turns class names into text-encoder inputs or text embeddings; may own parameters.

    The convention for CLIP-based strategies (the core's ``template``, ``coop``, ``defo``,
    ``target_opt``): ``forward(class_names, clip=clip)`` returns text features ``(K, E)``, one row
    per class in order, computed with the :class:`wsss_kit.clip.CLIPModel` it is given (the
    strategy never owns the CLIP model, so its parameters and state dict hold only its own
    learnable vectors). Further keyword context (an image, CAMs) is strategy-specific. A
    strategy with fixed text also implements :meth:`prompts`. The CLIP-specific details live
    with the CLIP access code (:mod:`wsss_kit.clip`).
    """

    learnable: bool = False
    """Whether the strategy owns parameters that training should update."""

    @abc.abstractmethod
    def forward(self, class_names: Sequence[str], **context: Any) -> Any:
        """Prompts or text embeddings for ``class_names`` (one per class, in order)."""

    def prompts(self, class_names: Sequence[str]) -> list[str]:
        """The prompt strings for ``class_names`` (fixed-text strategies only).

        Raises:
            NotImplementedError: the strategy has no fixed text (learnable vectors).
        """
        raise NotImplementedError(f"{type(self).__name__} has no fixed prompt text")


class Refiner(abc.ABC):
    """Turns CAMs (or seed masks) into pseudo-mask probabilities or masks.

    A refiner may be trainable (it then also subclasses ``nn.Module``) or not (dense CRF).
    """

    trainable: bool = False

    @abc.abstractmethod
    def refine(self, images: torch.Tensor, cams: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """Refine a batch.

        Args:
            images: ``(B, 3, H, W)`` in [0, 1].
            cams: CAMs ``(B, C, H, W)`` in [0, 1], or seed masks ``(B, H, W)`` int64.
            labels: ``(B, C)`` multi-hot.

        Returns:
            probabilities ``(B, C + 1, H, W)`` (channel 0 = background), or masks ``(B, H, W)``
            int64 with 255 = ignore.
        """


class Loss(nn.Module):
    """A loss with its hyper-parameters; each has a functional twin of the same name in snake case.

    Subclasses document the shapes their ``forward`` takes.
    """


class RetrainHead(nn.Module, abc.ABC):
    """A segmentation network trained on pseudo masks.

    ``num_classes`` is ``K = C + 1`` (background included).
    """

    num_classes: int

    @abc.abstractmethod
    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """Logits ``(B, K, H, W)`` at the input size for images ``(B, 3, H, W)`` in [0, 1]."""


class WSSSDataset(Dataset, abc.ABC):
    """A dataset of images with image-level labels (and ground-truth masks where they exist).

    ``__getitem__`` returns a dict:

    * ``image``  float32 ``(3, H, W)`` RGB in [0, 1]
    * ``labels`` float32 ``(C,)`` multi-hot over foreground classes
    * ``mask``   int64 ``(H, W)`` with 0 = background, 1..C, 255 = ignore; all 255 when the
      split has no ground truth
    * ``name``   str, the image id (used for output file names)
    """

    class_names: tuple[str, ...]
    """Foreground class names, ``C`` of them (background is implicit)."""

    palette: Sequence[tuple[int, int, int]]
    """RGB colour per mask value 0..C (background first)."""

    @property
    def num_classes(self) -> int:
        """Number of foreground classes ``C``."""
        return len(self.class_names)

    @abc.abstractmethod
    def __len__(self) -> int: ...

    @abc.abstractmethod
    def __getitem__(self, index: int) -> Mapping[str, Any]: ...

    def describe(self) -> str:
        """One line for logs and check-data reports."""
        return f"{type(self).__name__}: {len(self)} images, {self.num_classes} classes"


@runtime_checkable
class HasParamGroups(Protocol):
    """Hook: parameter groups with their own learning rates (backbone vs new layers).

    The engine's optimizer (:func:`wsss_kit.engine.build_optimizer`) uses them when the model has
    this method, else one group of every trainable parameter.
    """

    def param_groups(self, lr: float) -> list[dict[str, Any]]:
        """Optimizer groups for base learning rate ``lr``: each a dict with ``"params"`` (a list of
        parameters; frozen ones are dropped) and optionally ``"lr_mult"`` (or ``"lr"``, read as
        ``lr * lr_mult``) and any other optimizer option (``"weight_decay"``)."""
        ...


@runtime_checkable
class HasTrainingStep(Protocol):
    """Hook of a trainable refiner (``trainable = True``, an ``nn.Module``): its loss on a batch.

    The pipeline's ``train_refiner`` stage calls it once per step inside the engine's loop.
    """

    def training_step(self, batch: Mapping[str, Any]) -> Mapping[str, torch.Tensor]:
        """``batch["image"]`` ``(B, 3, H, W)`` in [0, 1], ``batch["target"]`` int64 ``(B, H, W)`` (seed
        masks or :meth:`HasTrainingTargets.training_targets` output, 255 = ignore), ``batch["labels"]``
        ``(B, C)`` multi-hot → ``{"loss": scalar tensor, other named terms (logged)...}``."""
        ...


@runtime_checkable
class HasTrainingTargets(Protocol):
    """Hook of a refiner that trains on labels it derives from CAMs (PSA's / IRN's relation labels)
    rather than on the seed masks; the pipeline computes them once per image and stores them."""

    def training_targets(self, image: torch.Tensor, cams: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """``image`` ``(3, H, W)`` in [0, 1], ``cams`` ``(C, H, W)`` in [0, 1], ``labels`` ``(C,)`` →
        int64 ``(H, W)`` with 0 = background, 1..C, 255 = unlabelled."""
        ...


@runtime_checkable
class LoadsWeights(Protocol):
    """Hook: load a trained checkpoint into this model, converting its authors' layouts.

    The pipeline calls it for a ``checkpoint:`` key (or ``--checkpoint``) when the plugin's factory
    takes no ``checkpoint`` keyword; without the hook the checkpoint goes through
    :func:`wsss_kit.weights.load_checkpoint` (strict, no conversion).
    """

    def load_weights(self, checkpoint: str | os.PathLike[str]) -> None:
        """Load ``checkpoint`` (a weights spec: path, ``released:<name>``, ...) strictly into ``self``,
        raising :class:`~wsss_kit.errors.WeightsError` naming the file and the mismatched keys."""
        ...


def makes_own_targets(refiner: Any) -> bool:
    """Whether ``refiner`` (a class or an instance) implements :class:`HasTrainingTargets`."""
    if isinstance(refiner, type):
        return issubclass(refiner, HasTrainingTargets)
    return isinstance(refiner, HasTrainingTargets)


HOOKS: tuple[type, ...] = (HasParamGroups, HasTrainingStep, HasTrainingTargets, LoadsWeights)
"""The optional plugin hooks, as Protocols."""

INTERFACES: dict[str, type] = {
    "cams": CAMGenerator,
    "prompts": PromptStrategy,
    "refiners": Refiner,
    "losses": Loss,
    "heads": RetrainHead,
    "datasets": WSSSDataset,
}
"""Plugin kind → the interface its objects must implement."""
