"""Confusion-matrix segmentation metrics, computed on the tensors' own device.

Rows of a confusion matrix are ground truth, columns are predictions; ``cm[g, p]`` counts the
pixels of true class ``g`` predicted as ``p``. Pixels whose target is ``ignore_index`` are not
counted. IoU of class ``k`` is ``cm[k, k] / (row_k + col_k - cm[k, k])``; a class absent from both
the ground truth and the prediction has no IoU (NaN) and is left out of the mean.

Distributed evaluation: each process accumulates the pixels it was given and
:meth:`ConfusionMatrix.all_reduce` sums the matrices over processes. The matrix counts every
pixel it receives, so padded or duplicated samples (e.g. from ``DistributedSampler``) must be
dropped by the caller before :meth:`~ConfusionMatrix.update`.
"""

from __future__ import annotations

from typing import Any

import torch

__all__ = ["ConfusionMatrix", "confusion_matrix", "iou_from_confusion", "metrics_from_confusion"]

IGNORE_INDEX = 255


def _as_index_tensor(x: Any, what: str) -> torch.Tensor:
    t = torch.as_tensor(x)
    if t.is_floating_point() or t.is_complex() or t.dtype == torch.bool:
        raise ValueError(
            f"{what} must hold integer class indices, got dtype {t.dtype}"
            + (" (for logits or probabilities take .argmax(1) first)" if what == "pred" else "")
        )
    return t.long()


def _values_preview(values: torch.Tensor, limit: int = 8) -> str:
    uniq = torch.unique(values).tolist()
    text = ", ".join(str(v) for v in uniq[:limit])
    return text + (f", ... ({len(uniq)} distinct)" if len(uniq) > limit else "")


def confusion_matrix(
    pred: torch.Tensor,
    target: torch.Tensor,
    num_classes: int,
    ignore_index: int = IGNORE_INDEX,
) -> torch.Tensor:
    """Confusion matrix ``int64 (K, K)`` of integer predictions against targets.

    Args:
        pred: class indices in ``[0, K)``, any shape (e.g. ``(B, H, W)``), integer dtype.
        target: ground truth of the same shape: ``[0, K)`` or ``ignore_index``.
        num_classes: ``K`` (background included).
        ignore_index: target value of pixels that are not counted.

    Returns:
        ``int64 (K, K)`` on ``target``'s device; rows = ground truth, columns = prediction.

    Raises:
        ValueError: shapes differ, devices differ, a dtype is not integer, or a prediction (at a
            counted pixel) or a target lies outside ``[0, K)``; the message lists the bad values.
    """
    if num_classes < 1:
        raise ValueError(f"num_classes must be >= 1, got {num_classes}")
    pred = _as_index_tensor(pred, "pred")
    target = _as_index_tensor(target, "target")
    if pred.shape != target.shape:
        raise ValueError(f"pred has shape {tuple(pred.shape)} but target has shape {tuple(target.shape)}")
    if pred.device != target.device:
        raise ValueError(f"pred is on {pred.device} but target is on {target.device}")
    k = int(num_classes)
    valid = target != ignore_index
    bad_target = valid & ((target < 0) | (target >= k))
    if bool(bad_target.any()):
        raise ValueError(
            f"target holds values outside [0, {k}) that are not ignore_index={ignore_index}: "
            f"{_values_preview(target[bad_target])}"
        )
    bad_pred = valid & ((pred < 0) | (pred >= k))
    if bool(bad_pred.any()):
        raise ValueError(
            f"pred holds values outside [0, {k}) at counted pixels: {_values_preview(pred[bad_pred])}; "
            f"map ignore/uncertain predictions to a class (e.g. background 0) before evaluating"
        )
    # Uncounted pixels go to one extra bin that is dropped, which avoids a boolean gather.
    flat = torch.where(valid, target * k + pred, torch.full_like(target, k * k)).reshape(-1)
    counts = torch.bincount(flat, minlength=k * k + 1)
    return counts[: k * k].reshape(k, k)


def iou_from_confusion(cm: torch.Tensor) -> torch.Tensor:
    """Per-class IoU ``float64 (K,)`` from a confusion matrix ``(K, K)`` (rows = ground truth).

    NaN for a class that appears neither in the ground truth nor in the prediction; 0 for a class
    that appears in only one of them.
    """
    if cm.dim() < 2 or cm.shape[-1] != cm.shape[-2]:
        raise ValueError(f"confusion matrix must be square (..., K, K), got shape {tuple(cm.shape)}")
    cm = cm.double()
    tp = torch.diagonal(cm, dim1=-2, dim2=-1)
    union = cm.sum(-1) + cm.sum(-2) - tp
    return torch.where(union > 0, tp / union.clamp_min(1), torch.full_like(tp, float("nan")))


def _ratio(num: torch.Tensor, den: torch.Tensor) -> torch.Tensor:
    return torch.where(den > 0, num / den.clamp_min(1), torch.full_like(num, float("nan")))


def metrics_from_confusion(cm: torch.Tensor) -> dict[str, Any]:
    """Everything :meth:`ConfusionMatrix.compute` reports, from a matrix ``(K, K)``; see there."""
    cm64 = cm.double()
    tp = torch.diagonal(cm64)
    gt_count = cm64.sum(1)
    pred_count = cm64.sum(0)
    total = float(cm64.sum())
    iou = iou_from_confusion(cm64)
    recall = _ratio(tp, gt_count)
    miou = float(torch.nanmean(iou)) if bool((~iou.isnan()).any()) else float("nan")
    return {
        "iou": iou.cpu(),
        "miou": miou,
        "pixel_accuracy": float(tp.sum()) / total if total > 0 else float("nan"),
        "mean_accuracy": float(torch.nanmean(recall)) if bool((~recall.isnan()).any()) else float("nan"),
        "precision": _ratio(tp, pred_count).cpu(),
        "recall": recall.cpu(),
        "matrix": cm.detach().cpu().clone(),
    }


def all_reduce_sum(tensor: torch.Tensor) -> torch.Tensor:
    """Sum ``tensor`` over all processes when ``torch.distributed`` is initialised; else a copy.

    With the NCCL backend a CPU tensor is moved to the current CUDA device for the reduction and
    brought back. The input is not modified.
    """
    import torch.distributed as dist

    if not (dist.is_available() and dist.is_initialized()):
        return tensor.clone()
    work = tensor.clone()
    if dist.get_backend() == "nccl" and work.device.type != "cuda":
        work = work.to(torch.device("cuda", torch.cuda.current_device()))
    dist.all_reduce(work, op=dist.ReduceOp.SUM)
    return work.to(tensor.device)


class ConfusionMatrix:
    """Accumulates a ``(K, K)`` confusion matrix over batches and reports IoU metrics.

    Example::

        cm = ConfusionMatrix(num_classes=21)
        for batch in loader:
            cm.update(model(batch["image"]).argmax(1), batch["mask"])
        cm.all_reduce()            # no-op unless torch.distributed is initialised
        print(cm.compute()["miou"])

    The counts from this process and the counts of the other processes (as of the last
    :meth:`all_reduce`) are kept apart, so calling :meth:`all_reduce` twice, or updating after
    it, never counts a pixel twice.
    """

    def __init__(
        self,
        num_classes: int,
        ignore_index: int = IGNORE_INDEX,
        device: torch.device | str | None = None,
    ) -> None:
        """
        Args:
            num_classes: ``K``, background included (21 for VOC).
            ignore_index: target value not counted.
            device: where the matrix lives; by default that of the first batch.
        """
        if int(num_classes) < 1:
            raise ValueError(f"num_classes must be >= 1, got {num_classes}")
        self.num_classes = int(num_classes)
        self.ignore_index = int(ignore_index)
        self._device = torch.device(device) if device is not None else None
        self._local: torch.Tensor | None = None
        self._remote: torch.Tensor | None = None

    # ------------------------------------------------------------------ state
    def _zeros(self, device: torch.device | None = None) -> torch.Tensor:
        dev = device or self._device or torch.device("cpu")
        return torch.zeros(self.num_classes, self.num_classes, dtype=torch.long, device=dev)

    @property
    def matrix(self) -> torch.Tensor:
        """The accumulated matrix ``int64 (K, K)`` (this process plus, after :meth:`all_reduce`, the others)."""
        local = self._local if self._local is not None else self._zeros()
        return local + self._remote.to(local.device) if self._remote is not None else local.clone()

    @property
    def local_matrix(self) -> torch.Tensor:
        """Only the pixels this process was given."""
        return self._local.clone() if self._local is not None else self._zeros()

    def reset(self) -> None:
        """Forget every count (local and from other processes)."""
        self._local = None
        self._remote = None

    def update(self, pred: torch.Tensor, target: torch.Tensor) -> None:
        """Add a batch.

        Args:
            pred: class indices ``(B, H, W)`` (any shape matching ``target``), or scores
                ``(B, K, H, W)`` (floating point), which are arg-maxed over dim 1.
            target: ground truth ``(B, H, W)`` with ``ignore_index`` for ignored pixels.
        """
        pred = torch.as_tensor(pred)
        target = torch.as_tensor(target)
        if pred.is_floating_point() and pred.dim() == target.dim() + 1:
            if pred.shape[1] != self.num_classes:
                raise ValueError(
                    f"pred scores have {pred.shape[1]} channels but the matrix has {self.num_classes} classes"
                )
            pred = pred.argmax(1)
        home = self._local.device if self._local is not None else self._device
        if home is not None and target.device != home:
            target = target.to(home)
        pred = pred.to(target.device)
        cm = confusion_matrix(pred, target, self.num_classes, self.ignore_index)
        self._local = cm if self._local is None else self._local + cm

    def merge(self, other: "ConfusionMatrix") -> "ConfusionMatrix":
        """Add ``other``'s counts into this accumulator (in place) and return ``self``.

        Both must have the same number of classes and ignore index. The merged counts are
        treated as this process's own by a later :meth:`all_reduce`.
        """
        if not isinstance(other, ConfusionMatrix):
            raise TypeError(f"can only merge a ConfusionMatrix, got {type(other).__name__}")
        if (other.num_classes, other.ignore_index) != (self.num_classes, self.ignore_index):
            raise ValueError(
                f"cannot merge a matrix with {other.num_classes} classes (ignore {other.ignore_index}) "
                f"into one with {self.num_classes} classes (ignore {self.ignore_index})"
            )
        add = other.matrix
        if self._local is None:
            self._local = add.to(self._device) if self._device is not None else add
        else:
            self._local = self._local + add.to(self._local.device)
        return self

    def __add__(self, other: "ConfusionMatrix") -> "ConfusionMatrix":
        out = ConfusionMatrix(self.num_classes, self.ignore_index, self._device)
        out.merge(self)
        return out.merge(other)

    def all_reduce(self) -> "ConfusionMatrix":
        """Sum the counts over all processes (no-op without ``torch.distributed``); returns ``self``.

        Every process must call it (it is a collective). Safe to call repeatedly.
        """
        local = self._local if self._local is not None else self._zeros()
        total = all_reduce_sum(local)
        self._local = local
        self._remote = total - local
        return self

    # ------------------------------------------------------------------ results
    def compute(self) -> dict[str, Any]:
        """Metrics of the accumulated matrix.

        Returns:
            a dict with ``iou`` (``float64 (K,)``, NaN for classes absent from both ground truth
            and prediction), ``miou`` (NaN-mean of ``iou``), ``pixel_accuracy``,
            ``mean_accuracy`` (NaN-mean of recall), ``precision`` and ``recall`` (``(K,)``, NaN
            where undefined) and ``matrix`` (``int64 (K, K)``); tensors on the CPU, scalars as
            Python floats.
        """
        return metrics_from_confusion(self.matrix)

    def state_dict(self) -> dict[str, torch.Tensor]:
        """The local counts, for checkpointing a partially finished evaluation."""
        return {"matrix": self.local_matrix.cpu()}

    def load_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        m = torch.as_tensor(state["matrix"])
        if tuple(m.shape) != (self.num_classes, self.num_classes):
            raise ValueError(
                f"state matrix has shape {tuple(m.shape)}, expected ({self.num_classes}, {self.num_classes})"
            )
        self._local = m.long().to(self._device or m.device)
        self._remote = None

    def __repr__(self) -> str:
        return f"ConfusionMatrix(num_classes={self.num_classes}, pixels={int(self.matrix.sum())})"
