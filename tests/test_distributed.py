"""Multi-process runs: 2 CPU processes launched with torchrun (gloo), checked against 1 process.

* distributed scoring (items split over the ranks, confusion matrices summed) gives exactly the
  one-process mIoU and CAM sweep;
* a 2-process DDP run's loss curve equals a 1-process run with the same global batch (to 1e-5;
  the model uses GroupNorm, not BatchNorm, whose statistics would be per process on CPU);
* a checkpoint of 1 process resumes with 2 and one of 2 with 1, at the right step, on the same curve;
  one from another training config is refused with a message naming the difference;
* a world size that does not divide the batch is a clear error, in the engine and in ``wsss run``,
  before anything is written;
* ``torchrun -m wsss_kit.cli.main run`` runs the whole pipeline (inference sharded by rank) and
  records exactly the mIoU that scoring its files in one process gives; ``wsss cam`` under torchrun
  writes every CAM and seed and the summary of a one-process run.

torchrun must be available (``python -m torch.distributed.run``): it is part of torch, so a
missing one is a failure, not a skip.
"""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

HERE = Path(__file__).parent
TINY_PIPELINE = [
    "data.train.num_images=12", "data.train.image_size=64", "data.eval.num_images=7", "data.eval.image_size=64",
    "cam.augment.crop_size=64", "cam.train.steps=2", "cam.train.batch_size=4", "cam.infer.scales=[1.0]",
    "head.augment.crop_size=64", "head.train.steps=2", "head.train.batch_size=4",
    "refiner.workers=0", "eval.pictures=0", "device=cpu",
]


def _load_worker():
    spec = importlib.util.spec_from_file_location("distributed_worker", HERE / "distributed_worker.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


worker = _load_worker()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def torchrun(args: list[str], nproc: int = 2, timeout: int = 240) -> subprocess.CompletedProcess:
    """``python -m torch.distributed.run --nproc_per_node=N ARGS`` on the CPU (gloo), one thread each."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1", "CUDA_VISIBLE_DEVICES": ""}
    cmd = [sys.executable, "-m", "torch.distributed.run", f"--nproc_per_node={nproc}",
           "--master_addr=127.0.0.1", f"--master_port={_free_port()}", *args]
    try:
        return subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired as exc:
        pytest.fail(f"torchrun timed out after {timeout} s: {' '.join(cmd)}\n{exc.stdout}\n{exc.stderr}")


def _losses(path: Path) -> tuple[list[int], list[float], list[float]]:
    from wsss_kit.engine import read_log

    rows = read_log(path)
    return [r["step"] for r in rows], [r["loss"] for r in rows], [r["lr"] for r in rows]


@pytest.fixture(scope="module")
def launched(tmp_path_factory):
    """Prepare the inputs, run tests/distributed_worker.py in 2 processes, return (out dir, per-rank results)."""
    from wsss_kit.data.image_io import save_mask_png
    from wsss_kit.engine import train
    from wsss_kit.data.artifacts import save_cams

    torch.set_num_threads(1)
    out = tmp_path_factory.mktemp("dist")
    # a 1-process run lost in step 5 (checkpoint at step 3), for the 2 processes to continue
    with pytest.raises(worker.Crash):
        train(worker.make_model(), worker.ToyData(), worker.config(), out / "one_then_two",
              step_fn=worker.crash_at(worker.CRASH_AT))
    # predictions and CAMs to score: random, so that every class has errors
    ds = worker.eval_dataset()
    g = torch.Generator().manual_seed(1)
    for i in range(len(ds)):
        sample = ds[i]
        h, w = sample["mask"].shape
        save_mask_png(out / "eval" / "pred" / f"{sample['name']}.png",
                      torch.randint(0, ds.num_classes + 1, (h, w), generator=g), ds.palette)
        save_cams(out / "eval" / "cams" / f"{sample['name']}.npz",
                  torch.rand(ds.num_classes, h, w, generator=g), sample["labels"])
    proc = torchrun([str(HERE / "distributed_worker.py"), str(out)])
    assert proc.returncode == 0, f"torchrun failed ({proc.returncode}):\n{proc.stdout[-3000:]}\n{proc.stderr[-6000:]}"
    seen = [json.loads((out / f"rank{r}.json").read_text()) for r in (0, 1)]
    assert [s["rank"] for s in seen] == [0, 1] and all(s["world"] == 2 for s in seen)
    return out, seen


def test_distributed_scoring_equals_one_process_exactly(launched):
    from wsss_kit.pipeline.evaluation import score_mask_files, sweep_cam_files

    out, seen = launched
    ds = worker.eval_dataset()
    masks = score_mask_files(ds, out / "eval" / "pred", ds.num_classes)
    cams = sweep_cam_files(ds, out / "eval" / "cams", ds.num_classes)
    for rank in seen:  # every rank gets the all-reduced result: no item dropped or counted twice
        assert rank["masks"] == json.loads(json.dumps(masks))
        assert rank["cams"] == json.loads(json.dumps(cams))
    assert 0 < masks["miou"] < 1


def test_two_processes_follow_the_one_process_loss_curve(launched, tmp_path):
    from wsss_kit.engine import train

    out, seen = launched
    one = train(worker.make_model(), worker.ToyData(), worker.config(), tmp_path / "one")
    steps, losses, lrs = _losses(out / "two" / "log.csv")
    assert steps == list(range(1, worker.STEPS + 1))
    np.testing.assert_allclose(losses, [r["loss"] for r in one.history], rtol=1e-5, atol=1e-6)
    assert lrs == [r["lr"] for r in one.history]
    assert losses[-1] < losses[0]  # it learns
    assert seen[0]["final_loss"] == seen[1]["final_loss"]  # the logged loss is the mean over ranks
    assert (out / "two" / "model.pt").is_file() and not (out / "two" / "checkpoint.pt").exists()
    assert not [p for p in (out / "two").iterdir() if p.name.endswith(".tmp")]
    model = worker.make_model()
    model.load_state_dict(torch.load(out / "two" / "model.pt", weights_only=True))
    reference = worker.make_model()
    train(reference, worker.ToyData(), worker.config(), tmp_path / "one")  # finished: loads its model.pt
    for (name, a), b in zip(model.state_dict().items(), reference.state_dict().values()):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5, msg=name)


def test_a_checkpoint_resumes_under_another_number_of_processes(launched, tmp_path):
    from wsss_kit.engine import load_training_state, train
    from wsss_kit.errors import ConfigError

    out, seen = launched
    one = train(worker.make_model(), worker.ToyData(), worker.config(), tmp_path / "one")
    reference = [r["loss"] for r in one.history]
    # 1 process → 2 processes: the log keeps steps 1-3 of the first run and goes on from step 4
    steps, losses, _ = _losses(out / "one_then_two" / "log.csv")
    assert steps == list(range(1, worker.STEPS + 1))
    np.testing.assert_allclose(losses, reference, rtol=1e-5, atol=1e-6)
    # 2 processes → 1 process
    assert all(s["crashed"] for s in seen)
    state = load_training_state(out / "two_then_one" / "checkpoint.pt")
    assert state["step"] == worker.CHECKPOINT_EVERY and state["world_size"] == 2
    assert state["position"] == worker.CHECKPOINT_EVERY  # global micro-batches (6 per epoch of 24 / 4)
    assert _losses(out / "two_then_one" / "log.csv")[0] == list(range(1, worker.CRASH_AT))
    before = {p.name: p.read_bytes() for p in (out / "two_then_one").iterdir()}
    with pytest.raises(ConfigError, match=r"different training config \(lr: checkpoint 0\.2, now 0\.3\)"):
        train(worker.make_model(), worker.ToyData(), worker.config(lr=0.3), out / "two_then_one")
    assert {p.name: p.read_bytes() for p in (out / "two_then_one").iterdir()} == before  # untouched
    resumed = train(worker.make_model(), worker.ToyData(), worker.config(), out / "two_then_one")
    assert resumed.steps == worker.STEPS
    steps, losses, _ = _losses(out / "two_then_one" / "log.csv")
    assert steps == list(range(1, worker.STEPS + 1))
    np.testing.assert_allclose(losses, reference, rtol=1e-5, atol=1e-6)


def test_a_world_size_that_does_not_divide_the_batch_is_a_clear_error(launched):
    out, seen = launched
    for rank in seen:
        assert "train.batch_size 3" in rank["odd_error"] and "number of processes, 2" in rank["odd_error"]
        assert rank["cli_odd"] == 2
    assert not (out / "odd").exists()  # nothing written
    assert not (out / "cli_odd").exists()


def test_wsss_cam_under_torchrun_writes_and_scores_like_one_process(launched, tmp_path):
    from wsss_kit.cli.main import demo_config_path, main

    out, seen = launched
    assert [s["cli_cam"] for s in seen] == [0, 0]
    assert main(["cam", str(demo_config_path()), "--out", str(tmp_path / "one"), *worker.CAM_ARGS]) == 0
    for folder, pattern in (("cams", "*.npz"), ("seeds", "*.png")):
        assert len(list((out / "cam" / folder / "eval").glob(pattern))) == 7
    one = json.loads((tmp_path / "one" / "cams" / "eval" / "summary.json").read_text())
    two = json.loads((out / "cam" / "cams" / "eval" / "summary.json").read_text())
    assert two == one and one["cams"]["miou"] is not None


def test_the_pipeline_cli_runs_under_torchrun(tmp_path):
    from wsss_kit.cli.main import demo_config_path
    from wsss_kit.config import apply_overrides, parse_config
    from wsss_kit.pipeline import STAGES
    from wsss_kit.pipeline.context import RunContext
    from wsss_kit.pipeline.evaluation import score_mask_files, sweep_cam_files

    run_dir = tmp_path / "run"
    args = ["-m", "wsss_kit.cli.main", "run", str(demo_config_path()), "--out", str(run_dir)]
    for item in TINY_PIPELINE:
        args += ["--set", item]
    proc = torchrun(args)
    assert proc.returncode == 0, f"torchrun failed ({proc.returncode}):\n{proc.stdout[-3000:]}\n{proc.stderr[-6000:]}"
    assert proc.stdout.count("[wsss] cams: running") == 1  # only rank 0 prints
    stages = json.loads((run_dir / "manifest.json").read_text())["stages"]
    assert all(stages[s]["complete"] for s in STAGES)
    for folder, n_train, n_eval in (("cams", 12, 7), ("seeds", 12, 7), ("pseudo_masks", 12, 7)):
        suffix = "*.npz" if folder == "cams" else "*.png"
        assert len(list((run_dir / folder / "train").glob(suffix))) == n_train
        assert len(list((run_dir / folder / "eval").glob(suffix))) == n_eval
    assert len(list((run_dir / "predictions" / "eval").glob("*.png"))) == 7
    assert (run_dir / "train_cam" / "model.pt").is_file() and (run_dir / "results.md").is_file()
    # the scores recorded by 2 processes are exactly those of scoring the files in one
    cfg = apply_overrides(parse_config(demo_config_path().read_text(), source="demo.yaml"), TINY_PIPELINE)
    ctx = RunContext(cfg, run_dir)
    k = ctx.num_classes
    for split in ("train", "eval"):
        ds = ctx.dataset(split)
        assert stages["cams"][split] == json.loads(json.dumps(sweep_cam_files(ds, run_dir / "cams" / split, k)))
        for stage in ("seeds", "pseudo_masks"):
            assert stages[stage][split] == json.loads(json.dumps(score_mask_files(ds, run_dir / stage / split, k)))
    expected = score_mask_files(ctx.dataset("eval"), run_dir / "predictions" / "eval", k)
    assert stages["eval"]["eval"]["miou"] == expected["miou"]


TINY_PSA = ("refiner={type: refiners/psa_rw, stem_width: 4, widths: [[4, 4], [4, 8], [8, 8], [8, 16]], "
            "depths: [1, 1, 1, 1], bottleneck_widths: [8, 16], dropouts: [0.0, 0.0], embed_widths: [4, 4, 8], "
            "embed_dim: 8, freeze_bn: false, train_cover_border: true}")


def test_a_refiner_trains_on_cam_targets_made_by_both_processes(tmp_path):
    """psa_rw under torchrun: each rank makes the confident-region targets of its share of the train
    images (the same files one process makes), then both train the AffinityNet with DDP."""
    from wsss_kit.cli.main import demo_config_path
    from wsss_kit.config import apply_overrides, parse_config
    from wsss_kit.pipeline import run_pipeline

    extra = [TINY_PSA, "refiner_train={steps: 2, batch_size: 4, lr: 0.01, optimizer: sgd}",
             "refiner_augment={crop_size: 64}", "refiner_targets={kind: cams, workers: 0}"]
    stages = "train_cam,cams,seeds,train_refiner,pseudo_masks"
    args = ["-m", "wsss_kit.cli.main", "run", str(demo_config_path()), "--out", str(tmp_path / "two"),
            "--stages", stages]
    for item in TINY_PIPELINE + extra:
        args += ["--set", item]
    proc = torchrun(args)
    assert proc.returncode == 0, f"torchrun failed ({proc.returncode}):\n{proc.stdout[-3000:]}\n{proc.stderr[-6000:]}"
    two = json.loads((tmp_path / "two" / "manifest.json").read_text())["stages"]
    assert two["train_refiner"]["targets"] == "cams" and two["train_refiner"]["steps"] == 2
    assert len(list((tmp_path / "two" / "train_refiner" / "targets").glob("*.png"))) == 12
    # One process from the same CAMs makes byte-identical targets.
    cfg = apply_overrides(parse_config(demo_config_path().read_text(), source="demo.yaml"), TINY_PIPELINE + extra)
    one = tmp_path / "one"
    one.mkdir()
    for folder in ("train_cam", "cams", "seeds"):
        shutil.copytree(tmp_path / "two" / folder, one / folder)
    manifest = json.loads((tmp_path / "two" / "manifest.json").read_text())
    manifest["stages"] = {k: v for k, v in manifest["stages"].items() if k in ("train_cam", "cams", "seeds")}
    (one / "manifest.json").write_text(json.dumps(manifest))
    run_pipeline(cfg, one, stages=["train_refiner"])
    for f in sorted((tmp_path / "two" / "train_refiner" / "targets").glob("*.png")):
        assert f.read_bytes() == (one / "train_refiner" / "targets" / f.name).read_bytes(), f.name


def test_process_shards_cover_every_item_once_and_batch_sizes_are_checked_up_front():
    from wsss_kit.cli.main import demo_config_path
    from wsss_kit.config import parse_config
    from wsss_kit.errors import ConfigError
    from wsss_kit.pipeline.context import RunContext, Shard
    from wsss_kit.pipeline.distributed import check_batch_sizes, process_shard

    assert process_shard(Shard(), rank=1, world=2) == Shard(1, 2)
    assert process_shard(Shard(1, 3), rank=0, world=1) == Shard(1, 3)
    items = [i for s in range(3) for r in range(2) for i in process_shard(Shard(s, 3), rank=r, world=2).indices(20)]
    assert sorted(items) == list(range(20))  # --shard s/3 on each of 2 ranks: every item exactly once
    ctx = RunContext(parse_config(demo_config_path().read_text(), source="demo.yaml"), "unused")
    check_batch_sizes(ctx, ["train_cam", "train_head"], world=4)  # 12 and 8
    with pytest.raises(ConfigError, match=r"cam\.train\.batch_size 12 .* number of processes, 5; .* 1, 2, 3, 4, 6, 12"):
        check_batch_sizes(ctx, ["cams", "train_cam"], world=5)
    check_batch_sizes(ctx, ["cams", "seeds"], world=5)  # no training among them
