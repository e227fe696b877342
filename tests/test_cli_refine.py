"""``wsss refine CONFIG`` with a refiner that does not learn: seeds brought in with ``seeds.source``,
pseudo masks scored, and the refusals (a checkpoint for dense_crf, pseudo masks brought in, no input)."""

from __future__ import annotations

import json
import textwrap
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from wsss_kit.cli.main import main
from wsss_kit.data.synthetic import SyntheticDataset

pytestmark = pytest.mark.usefixtures("offline")


@pytest.fixture
def offline(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")


@pytest.fixture(scope="module")
def seeds(tmp_path_factory):
    """The synthetic train split's ground truth, used as seed masks (a folder of <name>.png)."""
    root = tmp_path_factory.mktemp("seeds")
    SyntheticDataset(split="train", num_images=3, image_size=32).export(root)
    return root / "masks"


def write_config(path: Path, run_dir: Path, extra: str = "") -> Path:
    path.write_text(textwrap.dedent(f"""
        run_dir: {run_dir}
        device: cpu
        data:
          train: {{type: datasets/synthetic, split: train, num_images: 3, image_size: 32}}
          eval: {{type: datasets/synthetic, split: val, num_images: 2, image_size: 32}}
        refiner: {{type: refiners/dense_crf, params: psa, workers: 0}}
    """) + extra)
    return path


def test_refine_seed_masks_from_seeds_source_and_score_them(seeds, tmp_path, capsys):
    config = write_config(tmp_path / "run.yaml", tmp_path / "run", f"seeds: {{source: {seeds}}}\n")
    assert main(["refine", str(config), "--batch-size", "2"]) == 0
    out = tmp_path / "run" / "pseudo_masks" / "train"
    text = capsys.readouterr().out
    assert "weights: refiners/dense_crf (nothing to train)" in text and f"input: {seeds}" in text
    assert sorted(p.name for p in out.glob("*.png")) == sorted(p.name for p in seeds.glob("*.png"))
    summary = json.loads((out / "summary.json").read_text())
    assert summary["input"] == "seeds" and summary["images"] == 3
    assert 0.5 < summary["pseudo_masks"]["miou"] <= 1.0  # the CRF of perfect seeds stays close to them
    assert np.asarray(Image.open(next(out.glob("*.png")))).shape == (32, 32)
    # resumed: nothing left to compute, the summary is kept
    assert main(["refine", str(config)]) == 0
    assert "0 pseudo masks computed, 3 already complete" in capsys.readouterr().out


def test_refusals_name_what_is_wrong(seeds, tmp_path, capsys):
    config = write_config(tmp_path / "run.yaml", tmp_path / "run", f"seeds: {{source: {seeds}}}\n")
    ckpt = tmp_path / "crf.pt"
    ckpt.write_bytes(b"")
    assert main(["refine", str(config), "--checkpoint", str(ckpt)]) == 2
    assert "refiners/dense_crf has no weights to load" in capsys.readouterr().err
    assert main(["refine", str(config), "--set", f"pseudo_masks.source={seeds}"]) == 2
    assert "pseudo_masks.source brings the pseudo masks" in capsys.readouterr().err
    bare = write_config(tmp_path / "bare.yaml", tmp_path / "bare")
    assert main(["refine", str(bare)]) == 2
    assert f"{tmp_path / 'bare' / 'seeds' / 'train'} does not exist" in capsys.readouterr().err
    assert not list(tmp_path.rglob("pseudo_masks"))
