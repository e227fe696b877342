"""Every config shipped under benchmarks/ is complete and valid: known plugins and keywords, a
well-formed training recipe and augmentation, even where its data (VOC, COCO) is not on this machine."""

from __future__ import annotations

from pathlib import Path

import pytest

from wsss_kit.config import load_config
from wsss_kit.data.transforms import build_augment
from wsss_kit.engine import TrainConfig
from wsss_kit.pipeline import check_run_config

CONFIGS = sorted((Path(__file__).resolve().parents[1] / "benchmarks").rglob("*.yaml"))


def test_configs_are_found():
    assert len(CONFIGS) >= 6


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: str(p.relative_to(p.parents[1])))
def test_benchmark_config_is_valid(path: Path):
    cfg = load_config(path)
    check_run_config(cfg, str(path))  # the run schema: every key declared, types and ranges
    assert "train" in cfg["data"] and "eval" in cfg["data"]
    for section in ("cam", "head"):
        if section in cfg and "train" in cfg[section]:
            config = TrainConfig.from_dict(cfg[section]["train"], where=f"{section}.train")
            assert config.steps > 0
            if config.warmup_steps:
                assert config.warmup_steps < config.steps
        if section in cfg and cfg[section].get("augment"):
            assert build_augment(cfg[section]["augment"]) is not None
    if cfg.get("refiner_train") is not None:  # a trainable refiner's recipe (train_refiner stage)
        config = TrainConfig.from_dict(cfg["refiner_train"], where="refiner_train")
        assert config.steps > 0 and config.warmup_steps < config.steps
    if cfg.get("refiner_augment"):
        assert build_augment(cfg["refiner_augment"]) is not None
