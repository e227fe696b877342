"""Walking a dataset's items for inference: their names, batches of same-sized samples, and
whether every item has its output file."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Iterable, Iterator, Mapping

from ..engine.distributed import barrier
from ..errors import DataError
from ..interfaces import WSSSDataset


def item_names(ds: WSSSDataset, where: str = "the dataset") -> list[str]:
    """Every item's name in dataset order (``ds.names`` when the dataset has it, else read each item),
    each checked to be usable as a file name inside the run directory (:func:`name_problems`).

    Raises:
        DataError: naming the first bad names and ``where`` (the dataset's config key).
    """
    names = getattr(ds, "names", None)
    names = list(names) if names is not None else [ds[i]["name"] for i in range(len(ds))]
    problems = name_problems(names)
    if problems:
        more = f" (and {len(problems) - 5} more)" if len(problems) > 5 else ""
        raise DataError(f"{where}: item names become file names in the run directory, and "
                        f"{'; '.join(problems[:5])}{more}")
    return names


def name_problems(names: Iterable[object]) -> list[str]:
    """What is wrong with item names as output file names: not a string, empty, a path (``/``,
    ``\\``, ``..``), a NUL byte, or a name given to two items (their outputs would overwrite each
    other)."""
    problems, seen = [], set()
    for name in names:
        if not isinstance(name, str) or not name:
            problems.append(f"item name {name!r} is not a non-empty string")
        elif "/" in name or "\\" in name or "\0" in name or name in (".", "..") or name.startswith("~"):
            problems.append(f"item name {name!r} would leave its folder (no '/', '\\', NUL, '.', '..' or '~')")
        elif name in seen:
            problems.append(f"item name {name!r} is used by two items")
        else:
            seen.add(name)
    return problems


def same_size_batches(ds: WSSSDataset, indices: Iterable[int], batch_size: int) -> Iterator[list[Mapping[str, Any]]]:
    """Samples of ``indices`` in order, grouped into lists of at most ``batch_size`` whose images
    share one shape (a batch ends early where the image size changes)."""
    batch: list[Mapping[str, Any]] = []
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
