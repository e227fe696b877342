"""``python -m benchmarks speed``: the registry, the harness, every measure at its tiny size, the
results file, the PNG and the refusals. No timing is asserted (only that times are consistent)."""

from __future__ import annotations

import json
import time

import numpy as np
import pytest
import torch
from PIL import Image

from benchmarks.__main__ import main as benchmarks_main
from benchmarks.speed.harness import Timed, interleave, summarise
from benchmarks.speed.miou_eval import miou_of_counts, official_like_counts, synthetic_masks
from benchmarks.speed.registry import Context, get_measures, list_measures
from benchmarks.speed.report import markdown_table, speed_chart
from wsss_kit.metrics import confusion_matrix, iou_from_confusion

# what issue 15 item 7 names: CRF per backend, CAM extraction, WeakCLIP step, pseudo masks,
# CLIMS/POLE step, retrain step, mIoU evaluation (plus MCTformer CAMs and step, and attention)
ISSUE_MEASURES = {"crf", "cams", "mctformer_cams", "mctformer_step", "weakclip_step", "pseudo_masks", "clims_step",
                  "retrain_step", "miou_eval", "attention"}
VARIANT_FIELDS = {"median_s", "min_s", "max_s", "runs", "per_unit_s", "units_per_call", "peak_rss_mb",
                  "peak_rss_above_start_mb"}


def test_registry_lists_every_measure_the_issue_names() -> None:
    assert set(list_measures()) == ISSUE_MEASURES
    for m in get_measures():
        for size in ("tiny", "quick", "full"):
            xs = [p[m.axis] for p in m.sweep(size)]
            assert xs == sorted(xs) and all(x > 0 for x in xs), (m.name, size)


def test_unknown_measure_is_refused_with_the_valid_names() -> None:
    with pytest.raises(ValueError) as err:
        get_measures(["crff"])
    message = str(err.value)
    assert "'crff'" in message and "did you mean 'crf'" in message
    assert all(name in message for name in ISSUE_MEASURES)


def test_interleave_rotates_counts_rounds_and_sees_memory() -> None:
    order: list[str] = []

    def big() -> None:  # 256 MiB touched: the call's peak is above its start
        order.append("big")
        torch.ones(64, 1024, 1024, dtype=torch.float32).sum()

    def small() -> None:
        order.append("small")
        time.sleep(0.002)

    timed = interleave({"big": big, "small": small}, rounds=3, warmup=1, units_per_call={"small": 2})
    assert order == ["big", "small", "small", "big", "big", "small", "small", "big"]
    assert [len(v) for v in timed.seconds.values()] == [3, 3]
    assert timed.memory["big"]["peak_rss_above_start_mb"] > 128
    assert timed.memory["small"]["peak_rss_above_start_mb"] < 64
    with pytest.raises(ValueError, match="rounds must be >= 1"):
        interleave({"a": small}, rounds=0)


def test_rss_sampler_drops_a_sample_read_before_reset(monkeypatch) -> None:
    """The sampler thread reads the RSS of the previous call, then the next call resets the window:
    that late sample must not become the next call's peak (a race that once failed CI)."""
    import threading

    import benchmarks.speed.harness as harness

    reading, release = threading.Event(), threading.Event()
    rss = {"mb": 500.0}

    def fake_rss() -> float:
        value = rss["mb"]
        if threading.current_thread().name == "rss-sampler" and not release.is_set():
            reading.set()  # read 500 MB; hold it until the main thread has reset
            release.wait(5)
        return value

    monkeypatch.setattr(harness, "rss_mb", fake_rss)
    with harness.RssSampler(interval=0.001) as sampler:
        assert reading.wait(5)
        rss["mb"] = 100.0
        start = sampler.reset()
        release.set()
        time.sleep(0.05)  # the held sample lands, then fresh ones at 100 MB
        assert start == 100.0 and sampler.peak() == 100.0


def test_summarise_hand_computed() -> None:
    timed = Timed(seconds={"base": [1.0, 2.0, 4.0], "other": [2.0, 6.0, 4.0]}, units_per_call={"other": 2},
                  summaries={"reduced": {"median_s": 4.0, "min_s": 3.0, "max_s": 5.0, "runs": 3}})
    rows = summarise(timed, baseline="base")
    assert rows["base"]["median_s"] == 2.0 and rows["base"]["min_s"] == 1.0 and rows["base"]["max_s"] == 4.0
    assert rows["other"]["per_unit_s"] == 2.0
    # per-round ratios per unit: (2/2)/1, (6/2)/2, (4/2)/4 -> median 1.0
    assert rows["other"]["ratio_to_base"] == 1.0
    assert rows["reduced"]["ratio_to_base"] == 2.0 and "ratio_to_base" not in rows["base"]


def test_official_like_counting_equals_the_confusion_matrix() -> None:
    k = 6
    counts = np.zeros((3, k), np.int64)
    cm = torch.zeros(k, k, dtype=torch.long)
    for gt, pred in synthetic_masks(30, 40, k, count=3):
        assert (gt == 255).any() and set(np.unique(pred)) <= set(range(k))
        official_like_counts(gt, pred, k, counts)
        cm += confusion_matrix(torch.from_numpy(pred).long(), torch.from_numpy(gt).long(), k)
    assert counts[2].tolist() == torch.diagonal(cm).tolist()
    assert counts[1].tolist() == cm.sum(1).tolist() and counts[0].tolist() == cm.sum(0).tolist()
    assert miou_of_counts(counts) == pytest.approx(float(iou_from_confusion(cm).nanmean()))


@pytest.mark.parametrize("name", sorted(ISSUE_MEASURES))
def test_each_measure_runs_at_its_tiny_size(name: str) -> None:
    from benchmarks.speed.cli import run_measure

    (measure,) = get_measures([name])
    record = run_measure(measure, measure.sweep("tiny"), Context(rounds=2, warmup=0))
    assert {"title", "axis", "axis_label", "unit", "baseline", "points", "official"} <= set(record)
    (point,) = record["points"]
    assert point["x"] == measure.points["tiny"][0][measure.axis]
    assert {"config", "variants", "extra", "load_average_before", "load_average_after", "torch_threads"} <= set(point)
    assert len(point["variants"]) >= 1
    for variant, row in point["variants"].items():
        # clims_loss_cost times itself and reports the process's peak only
        assert VARIANT_FIELDS - ({"peak_rss_above_start_mb"} if name == "clims_step" else set()) <= set(row), row
        assert 0 < row["min_s"] <= row["median_s"] <= row["max_s"]
        assert row["peak_rss_mb"] > 0
        if measure.baseline and variant != measure.baseline:
            assert f"ratio_to_{measure.baseline}" in row
    if measure.baseline:
        assert measure.baseline in point["variants"]
    if measure.official:
        assert record["official"].startswith(("official-like variant: ", "official code at "))
    json.dumps(record)  # the results file can hold it


def test_official_label_names_the_checkout(tmp_path) -> None:
    ctx = Context(official={"mctformer": str(tmp_path)})
    assert ctx.official_label("mctformer", "x") == f"official code at {tmp_path} (commit unknown)"
    assert ctx.official_label("mctformer", "x", runs=False).startswith("official-like variant: x (the checkout at")
    assert Context().official_label("clims", "the CLIMS losses") == "official-like variant: the CLIMS losses"


def test_cli_writes_json_png_and_markdown_atomically(tmp_path, capsys) -> None:
    out = tmp_path / "res" / "speed.json"
    assert benchmarks_main(["speed", "miou_eval", "--tiny", "--rounds", "1", "--out", str(out), "--markdown"]) == 0
    record = json.loads(out.read_text())
    assert record["sweep"] == "tiny" and record["rounds"] == 1 and list(record["measures"]) == ["miou_eval"]
    assert {"load_average_before", "load_average_after", "cpus"} <= set(record["machine"])
    assert "one child process per measure" in record["method"]
    point = record["measures"]["miou_eval"]["points"][0]
    assert set(point["variants"]) == {"wsss_kit", "wsss_kit_png", "official_like_png"}
    assert point["extra"]["max_miou_difference"] < 1e-9
    with Image.open(out.with_suffix(".png")) as png:
        assert png.format == "PNG" and png.height > 100
    assert sorted(p.name for p in out.parent.iterdir()) == ["speed.json", "speed.png"]  # no temporaries left
    printed = capsys.readouterr().out
    assert "| miou_eval | masks 4 | official_like_png |" in printed


@pytest.mark.parametrize("argv, message", [
    (["speed", "crff"], "unknown speed measure 'crff'; available: crf, cams"),
    (["speed", "crf", "--sweep", "crf=64,0"], "--sweep crf: values must be positive integers, got '0'"),
    (["speed", "crf", "--sweep", "crf=big"], "--sweep crf: values must be positive integers, got 'big'"),
    (["speed", "crf", "--sweep", "cams=64"], "--sweep 'cams=64': 'cams' is not among the measures run"),
    (["speed", "crf", "--sweep", "crf"], "--sweep expects MEASURE=V1,V2"),
    (["speed", "crf", "--rounds", "0"], "--rounds must be >= 1"),
    (["speed", "crf", "--device", "tpu"], "--device must be cpu or cuda"),
    (["speed", "crf", "--official-mctformer", "/nonexistent/MCTformer"], "--official-mctformer: /nonexistent"),
])
def test_bad_arguments_are_refused_before_work(argv, message, tmp_path, capsys) -> None:
    out = tmp_path / "speed.json"
    assert benchmarks_main([*argv, "--out", str(out)]) == 2
    assert message in capsys.readouterr().err
    assert not out.exists()


def test_list_prints_every_measure(capsys) -> None:
    assert benchmarks_main(["speed", "--list"]) == 0
    assert capsys.readouterr().out.split() == list_measures()


def test_report_marks_failures_and_needs_results() -> None:
    results = {"measures": {"crf": {"title": "t", "error": "child exited with 1: boom\nValueError: bad"}}}
    assert "| crf | | | failed: ValueError: bad | | |" in markdown_table(results)
    with pytest.raises(ValueError, match="no measure has results"):
        speed_chart(results)


def test_pseudo_masks_without_the_official_like_script_times_the_crf_variants() -> None:
    from benchmarks.speed.harness import summarise as reduce
    from benchmarks.speed.measures import refine_variants

    (measure,) = get_measures(["pseudo_masks"])
    timed = refine_variants(measure.sweep("tiny")[0], Context(rounds=1, warmup=0))
    assert set(reduce(timed, "ours")) == {"ours", "ours_torch_crf", "one_window"}
    assert timed.official is not None and timed.official.startswith("official-like variant: one_window")


def test_a_failing_measure_is_recorded_and_the_run_fails(tmp_path, capsys) -> None:
    out = tmp_path / "speed.json"
    # an empty folder is not an MCTformer checkout: the child measuring mctformer_cams fails
    code = benchmarks_main(["speed", "mctformer_cams", "--tiny", "--rounds", "1", "--out", str(out),
                            "--official-mctformer", str(tmp_path), "--markdown"])
    assert code == 1
    record = json.loads(out.read_text())
    assert record["measures"]["mctformer_cams"]["error"].startswith("child exited with 1: ")
    assert record["official_checkouts"] == {"mctformer": str(tmp_path.resolve())}
    assert not out.with_suffix(".png").exists()
    assert "| mctformer_cams | | | failed: " in capsys.readouterr().out
