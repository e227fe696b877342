"""Deterministic data order and per-sample random streams.

The order of an epoch is a permutation drawn from ``(seed, epoch)`` alone, so a run resumed at
``(epoch, position)`` sees the same samples as an uninterrupted one. Each sample's random
augmentation runs under RNGs seeded from ``(seed, epoch, index)``, which makes it independent
of the number of DataLoader workers, of prefetching and of where a run was interrupted.
"""

from __future__ import annotations

import random
from typing import Any, Iterator

import numpy as np
import torch
from torch.utils.data import Dataset, Sampler

__all__ = ["EpochSampler", "SeededSamples", "epoch_permutation", "sample_seed"]

_MIX = 0x9E3779B97F4A7C15  # golden-ratio constant: spreads nearby (seed, epoch) pairs apart


def _mix(*values: int) -> int:
    h = 0
    for v in values:
        h = (h ^ (int(v) + _MIX + ((h << 6) & 0xFFFFFFFFFFFFFFFF) + (h >> 2))) & 0xFFFFFFFFFFFFFFFF
    return h & 0x7FFFFFFFFFFFFFFF


def epoch_permutation(n: int, seed: int, epoch: int, shuffle: bool = True) -> list[int]:
    """The sample order of ``epoch``: a permutation of ``range(n)`` that depends only on ``(seed, epoch)``."""
    if not shuffle:
        return list(range(n))
    gen = torch.Generator().manual_seed(_mix(seed, epoch))
    return torch.randperm(n, generator=gen).tolist()


def sample_seed(seed: int, epoch: int, index: int) -> int:
    """Seed of the random stream used while loading sample ``index`` in ``epoch``."""
    return _mix(seed, epoch, index, 1)


class EpochSampler(Sampler[tuple[int, int]]):
    """Yields ``(index, sample_seed)`` pairs of one epoch, from micro-batch ``start_batch`` on.

    ``batch_size`` is the *global* micro-batch: micro-batch ``k`` of the epoch is
    ``order[k * batch_size:(k + 1) * batch_size]`` of the epoch's permutation, whatever the number
    of processes. Under DDP rank ``r`` of ``world_size`` takes the ``r``-th contiguous slice of
    ``batch_size // world_size`` samples of every micro-batch, so the ranks together see exactly
    the samples (and the order) of a one-process run, and ``start_batch`` (a position in global
    micro-batches) means the same for any number of processes. The epoch is cut to whole
    micro-batches (the remainder is dropped, as with ``drop_last``).
    """

    def __init__(self, n: int, *, batch_size: int, seed: int, epoch: int, start_batch: int = 0,
                 rank: int = 0, world_size: int = 1, shuffle: bool = True) -> None:
        if world_size < 1 or not 0 <= rank < world_size:
            raise ValueError(f"EpochSampler: need 0 <= rank < world_size, got rank {rank}, world_size {world_size}")
        if batch_size % world_size:
            raise ValueError(f"EpochSampler: the global batch_size {batch_size} is not divisible by "
                             f"world_size {world_size}")
        self.n, self.batch_size, self.seed, self.epoch = n, batch_size, seed, epoch
        self.start_batch, self.rank, self.world_size, self.shuffle = start_batch, rank, world_size, shuffle

    @staticmethod
    def batches_per_epoch(n: int, batch_size: int) -> int:
        """Whole global micro-batches of ``batch_size`` in an epoch of ``n`` samples."""
        return n // batch_size

    @property
    def per_rank(self) -> int:
        """Samples this rank takes from each micro-batch (``batch_size // world_size``)."""
        return self.batch_size // self.world_size

    def _indices(self) -> list[int]:
        order = epoch_permutation(self.n, self.seed, self.epoch, self.shuffle)
        b, lo = self.batch_size, self.rank * self.per_rank
        return [i for k in range(self.start_batch, self.batches_per_epoch(self.n, b))
                for i in order[k * b + lo:k * b + lo + self.per_rank]]

    def __iter__(self) -> Iterator[tuple[int, int]]:
        for index in self._indices():
            yield index, sample_seed(self.seed, self.epoch, index)

    def __len__(self) -> int:
        return max(0, self.batches_per_epoch(self.n, self.batch_size) - self.start_batch) * self.per_rank


class SeededSamples(Dataset):
    """Wraps a dataset so that item ``(index, seed)`` is loaded under RNGs seeded with ``seed``.

    torch, NumPy and ``random`` are seeded for the call and restored afterwards, so loading in the
    main process (``num_workers=0``) leaves the training RNG streams untouched.
    """

    def __init__(self, dataset: Any) -> None:
        self.dataset = dataset

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, item: tuple[int, int]) -> Any:
        index, seed = item
        torch_state = torch.get_rng_state()
        np_state = np.random.get_state()
        py_state = random.getstate()
        try:
            torch.default_generator.manual_seed(seed)  # CPU only: CUDA streams stay untouched
            np.random.seed(seed % 2**32)
            random.seed(seed)
            return self.dataset[index]
        finally:
            torch.set_rng_state(torch_state)
            np.random.set_state(np_state)
            random.setstate(py_state)
