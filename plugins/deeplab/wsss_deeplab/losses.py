"""Losses for training segmentation networks on pseudo masks."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
import torch.nn.functional as F

import wsss_kit
from wsss_kit.shapes import check_shape

_LIST_HINT = (" (a list of logits is what a multi-scale head such as heads/deeplab_v2_r101 with "
              "train_output='all' returns in training: wrap the loss in losses/deeplab_msc)")


def _check_logits_target(logits: torch.Tensor, target: torch.Tensor) -> None:
    if not isinstance(logits, torch.Tensor) or not isinstance(target, torch.Tensor):
        hint = _LIST_HINT if isinstance(logits, (list, tuple)) else ""
        raise TypeError(
            f"logits and target must be tensors; got {type(logits).__name__} and {type(target).__name__}{hint}"
        )
    check_shape(logits, "B K H W", "logits")
    check_shape(target, "B H W", "target", sizes={"B": logits.shape[0]}, note="(the logits' batch size)")
    if target.dtype != torch.long:
        raise TypeError(f"target must be int64 class indices; got dtype {target.dtype}")


def _check_classes(target: torch.Tensor, valid: torch.Tensor, num_classes: int, ignore_index: int) -> None:
    if valid.any():
        bad = target[valid]
        bad = bad[(bad < 0) | (bad >= num_classes)]
        if bad.numel():
            raise ValueError(
                f"target holds class {int(bad[0])}, outside 0..{num_classes - 1} (logits have K = "
                f"{num_classes} channels) and not ignore_index={ignore_index}"
            )


BALANCE_MODES = ("classes", "foreground")


def balanced_ce_loss(logits: torch.Tensor, target: torch.Tensor, ignore_index: int = 255,
                     balance: str = "classes") -> torch.Tensor:
    """Class-balanced cross-entropy over a (pseudo) mask.

    With ``P`` the set of classes present among the non-ignored pixels of the whole batch and
    ``N_k`` the number of pixels labelled ``k``:

    .. math::
        L = \\frac{1}{|P|} \\sum_{k \\in P} \\frac{1}{N_k}
            \\sum_{i:\\, y_i = k} -\\log \\operatorname{softmax}(z_i)_k

    i.e. the mean cross-entropy inside each present class, averaged over the classes, so that a
    small object's pixels weigh as much in total as the background's. With every class the
    same size this equals the plain mean cross-entropy.

    ``balance="foreground"`` uses two groups instead of the classes: background (0) and all
    foreground classes together, ``L = (mean_{y_i = 0} CE_i + mean_{y_i > 0} CE_i) / 2`` — CLIMS's
    ``criterion_balance`` (``segmentation/deeplabv2/main_v2.py``, its ImageNet-initialised
    DeepLabV2 retrain). Where a group has no pixel in the batch the official code divides by zero
    (NaN); here the mean runs over the groups present.

    Args:
        logits: ``(B, K, h, w)`` unnormalised scores; resized (bilinear, ``align_corners=False``)
            to the target size when it differs.
        target: ``(B, H, W)`` int64 class indices in ``0..K-1``, ``ignore_index`` for ignored pixels.
        ignore_index: mask value excluded from the loss.
        balance: ``"classes"`` (every present class) or ``"foreground"`` (background vs foreground).

    Returns:
        a scalar; ``0`` (still attached to ``logits``' graph) when every pixel is ignored.
    """
    _check_logits_target(logits, target)
    if balance not in BALANCE_MODES:
        raise ValueError(f"balance must be one of {', '.join(map(repr, BALANCE_MODES))}; got {balance!r}")
    num_classes = logits.shape[1]
    valid = target != ignore_index
    _check_classes(target, valid, num_classes, ignore_index)
    if logits.shape[-2:] != target.shape[-2:]:
        logits = F.interpolate(logits, size=target.shape[-2:], mode="bilinear", align_corners=False)
    if not valid.any():
        return logits.sum() * 0.0

    per_pixel = F.cross_entropy(logits, target, ignore_index=ignore_index, reduction="none")[valid]
    classes = target[valid]
    if balance == "foreground":
        classes = (classes > 0).long()
    sums = per_pixel.new_zeros(num_classes).index_add(0, classes, per_pixel)
    counts = torch.bincount(classes, minlength=num_classes)
    present = counts > 0
    return (sums[present] / counts[present].to(sums.dtype)).mean()


class BalancedCELoss(wsss_kit.Loss):
    """Module form of :func:`balanced_ce_loss`.

    ``forward(logits (B, K, h, w), target (B, H, W) int64) -> scalar``.
    """

    wsss_api_version = "1.0"

    def __init__(self, ignore_index: int = wsss_kit.IGNORE_INDEX, balance: str = "classes") -> None:
        super().__init__()
        if balance not in BALANCE_MODES:
            raise ValueError(f"balance must be one of {', '.join(map(repr, BALANCE_MODES))}; got {balance!r}")
        self.ignore_index = int(ignore_index)
        self.balance = balance

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return balanced_ce_loss(logits, target, self.ignore_index, self.balance)

    def extra_repr(self) -> str:
        return f"ignore_index={self.ignore_index}, balance={self.balance!r}"


def cross_entropy_loss(logits: torch.Tensor, target: torch.Tensor, ignore_index: int = 255) -> torch.Tensor:
    """Mean cross-entropy over the non-ignored pixels: ``L = mean_i -log softmax(z_i)_{y_i}``.

    The loss of MCTformer's and kazuto1011's retrains (``nn.CrossEntropyLoss(ignore_index=255)``).

    Args:
        logits: ``(B, K, h, w)``; resized (bilinear, ``align_corners=False``) to the target size when it
            differs, as MCTformer's ``train_seg.py`` does.
        target: ``(B, H, W)`` int64 in ``0..K-1`` or ``ignore_index``.
        ignore_index: mask value excluded from the loss.

    Returns:
        a scalar; ``0`` (attached to ``logits``' graph) when every pixel is ignored.
    """
    _check_logits_target(logits, target)
    valid = target != ignore_index
    _check_classes(target, valid, logits.shape[1], ignore_index)
    if logits.shape[-2:] != target.shape[-2:]:
        logits = F.interpolate(logits, size=target.shape[-2:], mode="bilinear", align_corners=False)
    if not valid.any():
        return logits.sum() * 0.0
    return F.cross_entropy(logits, target, ignore_index=ignore_index)


class CrossEntropyLoss(wsss_kit.Loss):
    """Module form of :func:`cross_entropy_loss` (``losses/cross_entropy``).

    ``forward(logits (B, K, h, w), target (B, H, W) int64) -> scalar``.
    """

    wsss_api_version = "1.0"

    def __init__(self, ignore_index: int = wsss_kit.IGNORE_INDEX) -> None:
        super().__init__()
        self.ignore_index = int(ignore_index)

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return cross_entropy_loss(logits, target, self.ignore_index)

    def extra_repr(self) -> str:
        return f"ignore_index={self.ignore_index}"


def resize_target(target: torch.Tensor, size: Sequence[int]) -> torch.Tensor:
    """``(B, H, W)`` int64 mask → ``(B, h, w)`` by nearest-neighbour at pixel centres ("nearest-exact",
    what PIL's ``Image.NEAREST`` resize does in kazuto1011's ``resize_labels``)."""
    size = tuple(int(s) for s in size)
    if tuple(target.shape[-2:]) == size:
        return target
    return F.interpolate(target[:, None].float(), size=size, mode="nearest-exact")[:, 0].long()


def msc_loss(
    logits: torch.Tensor | Sequence[torch.Tensor],
    target: torch.Tensor,
    loss: Callable[[torch.Tensor, torch.Tensor], torch.Tensor] = cross_entropy_loss,
) -> torch.Tensor:
    """The DeepLabV2 multi-scale (MSC) training loss: ``sum_s loss(logits_s, resize(target, size_s))``.

    kazuto1011's ``main.py train`` sums the cross-entropy of the four MSC outputs (input scale 1,
    0.5, 0.75 and their pixel-wise max), each against the labels resized (nearest) to that output's
    size. A single tensor is passed to ``loss`` unchanged.

    Args:
        logits: a tensor ``(B, K, h, w)`` or a list of them (any sizes).
        target: ``(B, H, W)`` int64, ``255`` = ignore.
        loss: the per-output loss ``loss(logits, target) -> scalar`` (default :func:`cross_entropy_loss`).
    """
    if isinstance(logits, torch.Tensor):
        return loss(logits, target)
    if not isinstance(logits, (list, tuple)) or not logits:
        raise TypeError(f"logits must be a tensor or a non-empty list of tensors (B, K, h, w); got {logits!r:.80}")
    if not isinstance(target, torch.Tensor) or target.dim() != 3:
        raise ValueError(f"target must be a (B, H, W) int64 tensor; got {getattr(target, 'shape', type(target))}")
    total: torch.Tensor | None = None
    for i, out in enumerate(logits):
        if not isinstance(out, torch.Tensor) or out.dim() != 4:
            raise ValueError(f"logits[{i}] must be a (B, K, h, w) tensor; got {getattr(out, 'shape', type(out))}")
        term = loss(out, resize_target(target, out.shape[-2:]))
        total = term if total is None else total + term
    assert total is not None  # logits is a non-empty list (checked above)
    return total


class MSCLoss(wsss_kit.Loss):
    """Module form of :func:`msc_loss` (``losses/deeplab_msc``) around any inner loss.

    Args:
        loss: the per-output loss (a built loss node such as ``{type: losses/balanced_ce}``, or any
            callable ``(logits, target) -> scalar``); default :class:`CrossEntropyLoss`.

    ``forward(logits (B, K, h, w) or a list of them, target (B, H, W) int64) -> scalar``.
    """

    wsss_api_version = "1.0"

    def __init__(self, loss: Callable[[torch.Tensor, torch.Tensor], torch.Tensor] | None = None) -> None:
        super().__init__()
        if loss is not None and not callable(loss):
            raise TypeError(f"loss must be a loss module or callable (logits, target) -> scalar; got {loss!r}")
        self.loss = loss if loss is not None else CrossEntropyLoss()

    def forward(self, logits: torch.Tensor | Sequence[torch.Tensor], target: torch.Tensor) -> torch.Tensor:
        return msc_loss(logits, target, self.loss)
