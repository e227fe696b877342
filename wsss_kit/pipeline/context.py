"""The run context: config, run directory, device, datasets and sharding shared by the stages."""

from __future__ import annotations

import dataclasses
from functools import cached_property
from pathlib import Path
from typing import Any, Iterator, Mapping

import torch

from ..config import build, get_path, is_node
from ..errors import ConfigError
from ..interfaces import WSSSDataset
from .checked_dataset import CheckedDataset
from .manifest import Manifest

SPLITS = ("train", "eval")
"""``data.train`` trains the CAM, a trainable refiner and the head, and gets pseudo masks; ``data.eval`` is held out."""


@dataclasses.dataclass(frozen=True)
class Shard:
    """This process handles items ``index % count == rank``."""

    rank: int = 0
    count: int = 1

    @classmethod
    def parse(cls, text: str | None) -> "Shard":
        if not text:
            return cls()
        try:
            rank, count = (int(v) for v in text.split("/"))
        except ValueError:
            raise ConfigError(f"--shard must look like i/n (e.g. 0/4), got {text!r}") from None
        if count < 1 or not 0 <= rank < count:
            raise ConfigError(f"--shard {text!r}: need 0 <= i < n")
        return cls(rank, count)

    def indices(self, n: int) -> range:
        return range(self.rank, n, self.count)


class RunContext:
    """Everything a stage needs; stages communicate only through files in ``run_dir``."""

    def __init__(self, cfg: Mapping[str, Any], run_dir: str | Path | None = None,
                 shard: Shard = Shard(), source: str = "config") -> None:
        self.cfg = dict(cfg)
        self.source = source
        self.run_dir = Path(run_dir or cfg.get("run_dir") or "runs/default")
        self.shard = shard
        self.manifest = Manifest(self.run_dir)
        seed = cfg.get("seed", 0)
        if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
            raise ConfigError(f"{source}: seed must be an integer >= 0; got {seed!r}")
        self.seed = seed
        self._datasets: dict[str, WSSSDataset] = {}
        self.fingerprints: dict[str, str] = {}
        """Each stage's fingerprint in this config, filled in by the runner
        (:func:`wsss_kit.pipeline.stage_table.stage_fingerprint`)."""

    def get(self, dotted: str, default: Any = ...) -> Any:
        return get_path(self.cfg, dotted, default, source=self.source)

    @cached_property
    def device(self) -> torch.device:
        name = str(self.cfg.get("device", "auto"))
        if name == "auto":
            return torch.device("cuda" if torch.cuda.is_available() else "cpu")
        try:
            return torch.device(name)
        except RuntimeError as exc:
            raise ConfigError(f"{self.source}: device {name!r} is not a torch device ({exc})") from None

    def dataset(self, split: str, augment: Any = None) -> WSSSDataset:
        """Build ``data.<split>``; ``augment`` (a dict for the dataset's ``augment`` keyword) is
        added for training copies. Un-augmented datasets are built once and shared by the stages.
        Every sample is checked as it is read (:class:`~wsss_kit.pipeline.checked_dataset.CheckedDataset`)."""
        if augment is None and split in self._datasets:
            return self._datasets[split]
        node = self.get(f"data.{split}")
        if not is_node(node):
            raise ConfigError(f"{self.source}: data.{split} must be a dataset node like "
                              "{type: datasets/synthetic, split: train}")
        node = dict(node)
        if augment is not None:
            node["augment"] = augment
            return CheckedDataset(build(node, f"data.{split}"), f"data.{split}", augmented=True)
        self._datasets[split] = CheckedDataset(build(node, f"data.{split}"), f"data.{split}")
        return self._datasets[split]

    @cached_property
    def reference(self) -> WSSSDataset:
        """The un-augmented training dataset: class names, palette and sizes come from it."""
        return self.dataset("train")

    @property
    def class_names(self) -> tuple[str, ...]:
        return tuple(self.reference.class_names)

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    def path(self, *parts: str) -> Path:
        return self.run_dir.joinpath(*parts)

    def items(self, dataset: WSSSDataset) -> Iterator[int]:
        """Indices this shard handles."""
        return iter(self.shard.indices(len(dataset)))
