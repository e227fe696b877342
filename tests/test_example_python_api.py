"""examples/python_api.py (the documented Python API walk-through) runs end to end at toy size."""

from __future__ import annotations

import runpy
import sys
from pathlib import Path

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "python_api.py"


def test_the_python_api_example_runs_and_reads_every_artifact(tmp_path, monkeypatch, capsys):
    run_dir = tmp_path / "run"
    monkeypatch.setattr(sys, "argv", [str(EXAMPLE), str(run_dir), "--quick"])
    names = runpy.run_path(str(EXAMPLE), run_name="__main__")
    out = capsys.readouterr().out
    assert "| retrained head" in out and "CAM: best background threshold" in out
    assert "CAM training: loss" in out and "multi-scale prediction (1, 6, 64, 64)" in out
    assert "pictures/eval_grid.png" in out and "train_cam/loss_curves.png" in out
    assert "held-out mIoU without flip" in out
    stages = names["stages"]
    assert all(record["complete"] for record in stages.values())
    assert stages["eval"]["settings"]["head.infer"]["flip"] is False  # the restarted stage ran with the change
    assert (run_dir / "results.md").is_file() and (run_dir / "pictures" / "train_grid.png").is_file()
