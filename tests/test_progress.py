"""Tests for wsss_kit.progress and the training loop's progress, step loggers and thinned log.csv."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any, Mapping

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from wsss_kit import progress as progress_module
from wsss_kit.engine import TrainConfig, read_log, train
from wsss_kit.errors import ConfigError
from wsss_kit.progress import Progress, format_duration, progress_mode


class FakeClock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> FakeClock:
    fake = FakeClock()
    monkeypatch.setattr(progress_module.time, "perf_counter", fake)
    return fake


def test_format_duration() -> None:
    assert format_duration(0) == "0:00"
    assert format_duration(75.0) == "1:15"
    assert format_duration(3725) == "1:02:05"
    assert format_duration(float("nan")) == "?"


def test_lines_every_steps_with_scalars_rate_and_eta(clock: FakeClock) -> None:
    out = io.StringIO()
    p = Progress(10, "train CAM", unit="step", every_steps=4, items_per_unit=8, mode="lines", stream=out)
    for step in range(1, 11):
        clock.now += 2.0  # 2 s a step, 8 images a step: 4 img/s
        p.update(1, scalars={"loss": 0.5 / step, "lr": 0.01} if step % 4 == 0 or step == 10 else None)
    p.close()
    lines = out.getvalue().splitlines()
    assert lines == [
        "[wsss] train CAM: step 4/10 (40%) loss 0.125 lr 0.01 | 4 img/s | 0:08 elapsed, ETA 0:12",
        "[wsss] train CAM: step 8/10 (80%) loss 0.0625 lr 0.01 | 4 img/s | 0:16 elapsed, ETA 0:04",
        "[wsss] train CAM: step 10/10 (100%) loss 0.05 lr 0.01 | 4 img/s | 0:20 elapsed",
    ]


def test_lines_by_time_count_only_this_runs_units_and_end_with_a_line(clock: FakeClock) -> None:
    out = io.StringIO()
    p = Progress(100, "CAMs [train]", initial=40, every_seconds=10, mode="lines", stream=out)
    for _ in range(30):
        clock.now += 1.0
        p.update(1)
    p.close()
    lines = out.getvalue().splitlines()
    # a line after 10, 20 and 30 s; 1 img/s counted from the resumed position 40
    assert lines == [
        "[wsss] CAMs [train]: 50/100 img (50%) | 1 img/s | 0:10 elapsed, ETA 0:50",
        "[wsss] CAMs [train]: 60/100 img (60%) | 1 img/s | 0:20 elapsed, ETA 0:40",
        "[wsss] CAMs [train]: 70/100 img (70%) | 1 img/s | 0:30 elapsed, ETA 0:30",
    ]
    p.close()  # idempotent, and no repeated last line
    assert len(out.getvalue().splitlines()) == 3


def test_wrap_prints_the_last_line_unless_interrupted(clock: FakeClock) -> None:
    out = io.StringIO()
    assert list(Progress(3, "seeds", mode="lines", stream=out, every_seconds=1000).wrap("abc")) == ["a", "b", "c"]
    assert out.getvalue() == "[wsss] seeds: 3/3 img (100%) | 0:00 elapsed\n"
    out = io.StringIO()
    with pytest.raises(RuntimeError):
        for _ in Progress(3, "seeds", mode="lines", stream=out, every_seconds=1000).wrap("abc"):
            raise RuntimeError("boom")
    assert out.getvalue() == ""  # a failed loop does not print a line that looks finished


def test_off_and_disabled_print_nothing(capsys: pytest.CaptureFixture[str]) -> None:
    for p in (Progress(2, "x", mode="off"), Progress(2, "x", mode="lines", enabled=False)):
        p.update(2, scalars={"loss": 1.0})
        p.close()
    assert capsys.readouterr() == ("", "")


def test_mode_from_environment_and_terminal(monkeypatch: pytest.MonkeyPatch) -> None:
    class Tty(io.StringIO):
        def isatty(self) -> bool:
            return True

    monkeypatch.delenv(progress_module.MODE_ENV, raising=False)
    assert progress_mode(Tty()) == "bar"
    assert progress_mode(io.StringIO()) == "lines"
    monkeypatch.setenv(progress_module.MODE_ENV, "off")
    assert progress_mode(Tty()) == "off"
    monkeypatch.setenv(progress_module.MODE_ENV, "loud")
    with pytest.raises(ConfigError, match=r"WSSS_KIT_PROGRESS='loud'; expected one of bar, lines, off"):
        progress_mode()
    monkeypatch.setenv(progress_module.MODE_ENV, "lines")
    monkeypatch.setenv(progress_module.SECONDS_ENV, "-3")
    with pytest.raises(ConfigError, match=r"WSSS_KIT_PROGRESS_SECONDS='-3'; expected a positive number"):
        Progress(5, "x")
    with pytest.raises(ConfigError, match=r"progress mode 'fancy'"):
        Progress(5, "x", mode="fancy")


def test_bar_shows_the_scalars_in_its_postfix(capsys: pytest.CaptureFixture[str]) -> None:
    p = Progress(4, "train head", unit="step", mode="bar")
    p.update(2, scalars={"loss": 0.25, "lr": 0.001})
    p.close()
    err = capsys.readouterr().err
    assert "train head" in err and "loss=0.25" in err and "lr=0.001" in err


# --------------------------------------------------------------------------- the training loop
class TinyNet(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.conv = nn.Conv2d(3, 2, 1)

    def forward(self, images: torch.Tensor, labels: torch.Tensor) -> dict[str, torch.Tensor]:
        logits = self.conv(images).mean(dim=(2, 3))
        loss = F.multilabel_soft_margin_loss(logits, labels)
        return {"loss": loss, "cls": loss.detach() * 2}


class TinyData:
    def __init__(self, n: int = 8) -> None:
        g = torch.Generator().manual_seed(1)
        self.images = torch.rand(n, 3, 4, 4, generator=g)
        self.labels = (torch.rand(n, 2, generator=g) > 0.5).float()

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, i: int) -> dict[str, Any]:
        return {"image": self.images[i], "labels": self.labels[i]}


class RecordingLogger:
    def __init__(self) -> None:
        self.calls: list[tuple[int, dict[str, float]]] = []
        self.closed = False

    def __call__(self, step: int, scalars: Mapping[str, float]) -> None:
        self.calls.append((step, dict(scalars)))

    def close(self) -> None:
        self.closed = True


def _config(**kw: Any) -> TrainConfig:
    return TrainConfig(**{"steps": 10, "batch_size": 2, "lr": 0.1, "log_every": 4, "checkpoint_every": 3,
                          "device": "cpu", **kw})


def test_training_prints_lines_and_logs_every_log_every_steps(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                              capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv(progress_module.MODE_ENV, "lines")
    logger = RecordingLogger()
    result = train(TinyNet(), TinyData(), _config(), tmp_path, desc="train CAM", loggers=[logger])

    lines = [line for line in capsys.readouterr().out.splitlines() if line.startswith("[wsss] train CAM:")]
    assert [line.split(":")[1].split()[1] for line in lines] == ["4/10", "8/10", "10/10"]
    for line, row in zip(lines, result.history):
        assert f" loss {row['loss']:.4g} cls {row['cls']:.4g} lr {row['lr']:.4g} | " in line
        assert " img/s | " in line
    assert "ETA" in lines[0] and "ETA" not in lines[-1]

    rows = read_log(tmp_path / "log.csv")
    assert [r["step"] for r in rows] == [4, 8, 10] and rows == result.history
    assert rows[-1]["loss"] == result.final_loss
    assert (tmp_path / "log.csv").read_text().splitlines()[0] == "step,loss,cls,lr,seconds"
    assert [s for s, _ in logger.calls] == [4, 8, 10] and logger.closed
    for (_, scalars), row in zip(logger.calls, rows):
        assert {k: scalars[k] for k in row} == row
        assert scalars["images_per_s"] > 0


def test_thinned_log_survives_a_resume(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(progress_module.MODE_ENV, "off")

    class Crash(RuntimeError):
        pass

    calls = [0]

    def crash_at_8(model: nn.Module, batch: dict[str, Any]) -> Any:
        calls[0] += 1
        if calls[0] == 8:
            raise Crash
        return model(batch["image"], batch["labels"])

    straight = train(TinyNet(), TinyData(), _config(), tmp_path / "a")
    with pytest.raises(Crash):
        train(TinyNet(), TinyData(), _config(), tmp_path / "b", step_fn=crash_at_8)
    assert [r["step"] for r in read_log(tmp_path / "b" / "log.csv")] == [4]  # checkpoint at 6
    resumed = train(TinyNet(), TinyData(), _config(), tmp_path / "b")
    assert [r["step"] for r in read_log(tmp_path / "b" / "log.csv")] == [4, 8, 10]
    assert [r["loss"] for r in resumed.history] == [r["loss"] for r in straight.history]


def test_no_lines_when_progress_is_off(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                       capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv(progress_module.MODE_ENV, "off")
    train(TinyNet(), TinyData(), _config(steps=4), tmp_path)
    assert "[wsss]" not in capsys.readouterr().out


def test_wsss_eval_reports_its_progress_in_a_log(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    import numpy as np
    from PIL import Image

    from wsss_kit.cli.main import main

    monkeypatch.delenv(progress_module.MODE_ENV, raising=False)  # captured output is not a terminal: lines
    for folder in ("pred", "gt"):
        (tmp_path / folder).mkdir()
        for name in ("a", "b"):
            Image.fromarray(np.zeros((2, 2), dtype=np.uint8), mode="L").save(tmp_path / folder / f"{name}.png")
    assert main(["eval", "--pred", str(tmp_path / "pred"), "--gt", str(tmp_path / "gt"), "--classes", "cat"]) == 0
    captured = capsys.readouterr()
    assert "[wsss] eval: 2/2 img (100%) | " in captured.out and "elapsed" in captured.out
    assert "eval:" not in captured.err.replace("wsss eval: warning", "")  # no tqdm bar besides the lines


def test_a_malformed_progress_variable_stops_a_command_before_it_starts(monkeypatch: pytest.MonkeyPatch,
                                                                        capsys: pytest.CaptureFixture[str]) -> None:
    from wsss_kit.cli.main import main

    monkeypatch.setenv(progress_module.SECONDS_ENV, "often")
    assert main(["run", "missing.yaml"]) == 2
    assert "wsss run: error: WSSS_KIT_PROGRESS_SECONDS='often'; expected a positive number" in capsys.readouterr().err


def test_ranks_above_0_print_nothing(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    import torch.distributed as dist

    monkeypatch.setattr(dist, "is_initialized", lambda: True)
    monkeypatch.setattr(dist, "get_rank", lambda group=None: 1)
    p = Progress(2, "CAMs [train]", mode="lines")
    p.update(2)
    p.close()
    assert p.mode == "off" and capsys.readouterr().out == ""
    monkeypatch.setattr(dist, "get_rank", lambda group=None: 0)
    assert Progress(2, "x", mode="lines").mode == "lines"
