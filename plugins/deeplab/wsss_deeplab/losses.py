"""Losses for training segmentation networks on pseudo masks."""

from __future__ import annotations

import torch
import torch.nn.functional as F

import wsss_kit


def balanced_ce_loss(logits: torch.Tensor, target: torch.Tensor, ignore_index: int = 255) -> torch.Tensor:
    """Class-balanced cross-entropy over a (pseudo) mask.

    With ``P`` the set of classes present among the non-ignored pixels of the whole batch and
    ``N_k`` the number of pixels labelled ``k``:

    .. math::
        L = \\frac{1}{|P|} \\sum_{k \\in P} \\frac{1}{N_k}
            \\sum_{i:\\, y_i = k} -\\log \\operatorname{softmax}(z_i)_k

    i.e. the mean cross-entropy inside each present class, averaged over the classes, so that a
    small object's pixels weigh as much in total as the background's. With every class the
    same size this equals the plain mean cross-entropy.

    Args:
        logits: ``(B, K, h, w)`` unnormalised scores; resized (bilinear, ``align_corners=False``)
            to the target size when it differs.
        target: ``(B, H, W)`` int64 class indices in ``0..K-1``, ``ignore_index`` for ignored pixels.
        ignore_index: mask value excluded from the loss.

    Returns:
        a scalar; ``0`` (still attached to ``logits``' graph) when every pixel is ignored.
    """
    if not isinstance(logits, torch.Tensor) or not isinstance(target, torch.Tensor):
        raise TypeError(
            f"logits and target must be tensors; got {type(logits).__name__} and {type(target).__name__}"
        )
    if logits.dim() != 4:
        raise ValueError(f"logits must be (B, K, H, W); got shape {tuple(logits.shape)}")
    if target.dim() != 3 or target.shape[0] != logits.shape[0]:
        raise ValueError(
            f"target must be (B, H, W) with B = {logits.shape[0]} (the logits' batch size); "
            f"got shape {tuple(target.shape)}"
        )
    if target.dtype != torch.long:
        raise TypeError(f"target must be int64 class indices; got dtype {target.dtype}")
    num_classes = logits.shape[1]
    valid = target != ignore_index
    if valid.any():
        bad = target[valid]
        bad = bad[(bad < 0) | (bad >= num_classes)]
        if bad.numel():
            raise ValueError(
                f"target holds class {int(bad[0])}, outside 0..{num_classes - 1} (logits have K = "
                f"{num_classes} channels) and not ignore_index={ignore_index}"
            )
    if logits.shape[-2:] != target.shape[-2:]:
        logits = F.interpolate(logits, size=target.shape[-2:], mode="bilinear", align_corners=False)
    if not valid.any():
        return logits.sum() * 0.0

    per_pixel = F.cross_entropy(logits, target, ignore_index=ignore_index, reduction="none")[valid]
    classes = target[valid]
    sums = per_pixel.new_zeros(num_classes).index_add(0, classes, per_pixel)
    counts = torch.bincount(classes, minlength=num_classes)
    present = counts > 0
    return (sums[present] / counts[present].to(sums.dtype)).mean()


class BalancedCELoss(wsss_kit.Loss):
    """Module form of :func:`balanced_ce_loss`.

    ``forward(logits (B, K, h, w), target (B, H, W) int64) -> scalar``.
    """

    wsss_api_version = "1.0"

    def __init__(self, ignore_index: int = wsss_kit.IGNORE_INDEX) -> None:
        super().__init__()
        self.ignore_index = int(ignore_index)

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return balanced_ce_loss(logits, target, self.ignore_index)

    def extra_repr(self) -> str:
        return f"ignore_index={self.ignore_index}"
