"""Walking a dataset's items for inference: their names, batches of same-sized samples, and
whether every item has its output file."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Iterable, Iterator

from ..engine.distributed import barrier
from ..interfaces import WSSSDataset


def item_names(ds: WSSSDataset) -> list[str]:
    """Every item's name in dataset order (``ds.names`` when the dataset has it, else read each item)."""
    names = getattr(ds, "names", None)
    return list(names) if names is not None else [ds[i]["name"] for i in range(len(ds))]


def same_size_batches(ds: WSSSDataset, indices: Iterable[int], batch_size: int) -> Iterator[list[dict[str, Any]]]:
    """Samples of ``indices`` in order, grouped into lists of at most ``batch_size`` whose images
    share one shape (a batch ends early where the image size changes)."""
    batch: list[dict[str, Any]] = []
    for i in indices:
        sample = ds[i]
        if batch and (len(batch) == batch_size or batch[0]["image"].shape != sample["image"].shape):
            yield batch
            batch = []
        batch.append(sample)
    if batch:
        yield batch


def all_exist(folder: Path, names: Iterable[str], suffix: str) -> bool:
    """Whether ``folder/<name><suffix>`` exists for every name.

    Under ``torch.distributed`` this is the point where the processes of an inference stage meet:
    it waits for every process (a barrier) before looking, so all of them see the files of all
    shards and give the same answer. Every process must call it, the same number of times.
    """
    barrier()
    return all((folder / f"{n}{suffix}").exists() for n in names)
