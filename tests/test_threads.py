"""Thread plans (wsss_kit.engine.threads): the rule for given cores and process counts, and overrides."""

from __future__ import annotations

import pytest
import torch

from wsss_kit.engine.threads import apply_threads, current_plan, plan_from_config, plan_threads
from wsss_kit.errors import ConfigError


@pytest.mark.parametrize(("cpus", "world", "torch_threads", "crf", "loaders"), [
    (2, 1, 2, 2, 0),     # this machine: no loader workers below 4 cores
    (1, 1, 1, 1, 0),
    (8, 1, 6, 8, 2),     # share 8: 8 // 4 = 2 loader workers, 8 - 2 torch threads
    (64, 1, 60, 64, 4),  # loader workers capped at 4
    (8, 4, 2, 2, 0),     # torchrun, 4 processes: 2 cores each
    (16, 2, 6, 8, 2),
    (2, 4, 1, 1, 0),     # more processes than cores: at least one thread each
    (7, 2, 3, 3, 0),     # 7 // 2 = 3
])
def test_rule_for_cores_and_local_world_size(cpus: int, world: int, torch_threads: int, crf: int,
                                             loaders: int) -> None:
    plan = plan_threads(cpus=cpus, local_world_size=world, env={})
    assert (plan.torch_threads, plan.crf_workers, plan.loader_workers) == (torch_threads, crf, loaders)
    assert plan.share == max(1, cpus // world)
    assert dict(plan.sources) == {"torch_threads": "default", "crf_workers": "default", "loader_workers": "default"}
    # nothing oversubscribes: this process's torch threads and loader workers fit its share
    assert plan.torch_threads + plan.loader_workers <= max(plan.share, 1 + plan.loader_workers)


def test_local_world_size_and_omp_num_threads_come_from_the_environment() -> None:
    plan = plan_threads(cpus=16, env={"LOCAL_WORLD_SIZE": "4"})
    assert (plan.local_world_size, plan.torch_threads, plan.crf_workers, plan.loader_workers) == (4, 3, 4, 1)
    plan = plan_threads(cpus=16, env={"LOCAL_WORLD_SIZE": "4", "OMP_NUM_THREADS": "1"})  # torchrun's default
    assert (plan.torch_threads, plan.crf_workers, plan.loader_workers) == (1, 4, 1)
    assert plan.sources["torch_threads"] == "OMP_NUM_THREADS"


def test_explicit_settings_win_over_the_environment_and_the_rule() -> None:
    env = {"LOCAL_WORLD_SIZE": "2", "OMP_NUM_THREADS": "1"}
    plan = plan_threads(torch_threads=5, crf_workers=0, loader_workers=3, cpus=16, env=env)
    assert (plan.torch_threads, plan.crf_workers, plan.loader_workers) == (5, 0, 3)
    assert set(plan.sources.values()) == {"config"}
    # an explicit loader count leaves the rest of the share to torch
    plan = plan_threads(loader_workers=2, cpus=8, local_world_size=1, env={})
    assert (plan.torch_threads, plan.loader_workers) == (6, 2)
    assert plan_threads(local_world_size=1, cpus=8, env={"LOCAL_WORLD_SIZE": "8"}).crf_workers == 8


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"torch_threads": 0}, r"threads.torch_threads must be an integer >= 1 .* got 0"),
    ({"crf_workers": -1}, r"threads.crf_workers must be an integer >= 0 .* got -1"),
    ({"loader_workers": True}, r"threads.loader_workers must be an integer >= 0 .* got True"),
    ({"env": {"OMP_NUM_THREADS": "four"}}, r"OMP_NUM_THREADS='four' must be an integer >= 1"),
    ({"env": {"LOCAL_WORLD_SIZE": "0"}}, r"LOCAL_WORLD_SIZE='0' must be an integer >= 1"),
])
def test_bad_values_name_the_key_and_the_value(kwargs: dict, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        plan_threads(cpus=4, **kwargs)


def test_config_section_keys_are_checked() -> None:
    plan = plan_from_config({"crf_workers": 3}, cpus=2, local_world_size=1, env={})
    assert (plan.torch_threads, plan.crf_workers, plan.sources["crf_workers"]) == (2, 3, "config")
    assert plan_from_config(None, cpus=2, local_world_size=1, env={}).crf_workers == 2
    with pytest.raises(ConfigError, match=r"unknown key\(s\) threads.torch; known: torch_threads, crf_workers"):
        plan_from_config({"torch": 2})
    with pytest.raises(ConfigError, match="threads must be a mapping"):
        plan_from_config(4)  # type: ignore[arg-type]


def test_apply_sets_torch_threads_and_the_default_only_caps() -> None:
    before = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        plan = apply_threads(plan_threads(cpus=4, local_world_size=1, env={}))  # default 4: keep the 1
        assert torch.get_num_threads() == 1 and plan.torch_threads == 1
        assert plan.sources["torch_threads"] == "process" and current_plan() is plan
        plan = apply_threads(plan_threads(torch_threads=2, cpus=4, env={}))  # explicit: set
        assert torch.get_num_threads() == 2 and current_plan().torch_threads == 2
        torch.set_num_threads(3)
        apply_threads(plan_threads(cpus=4, local_world_size=2, env={}))  # default 2 < 3: capped
        assert torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(before)


# --------------------------------------------------------------------------- the run config's `threads` section
def test_run_config_threads_are_checked_before_anything_is_written(tmp_path) -> None:
    from test_pipeline import tiny_config

    from wsss_kit.pipeline import run_pipeline

    for setting, message in (("threads.torch=2", r"threads\.torch: unknown key"),
                             ("threads.torch_threads=0", r"threads\.torch_threads must be .*>= 1.*got 0"),
                             ("threads.crf_workers=-1", r"threads\.crf_workers must be")):
        with pytest.raises(ConfigError, match=message):
            run_pipeline(tiny_config([setting]), tmp_path / "run")
        assert not (tmp_path / "run").exists()


def test_a_run_applies_its_threads_and_train_sections_take_the_loader_workers(tmp_path, monkeypatch) -> None:
    from test_pipeline import tiny_config

    import wsss_kit.engine.threads as threads
    from wsss_kit.pipeline import run_pipeline
    from wsss_kit.pipeline.context import RunContext
    from wsss_kit.pipeline.stages import _train_config

    before = torch.get_num_threads()
    monkeypatch.setattr(threads, "_APPLIED", [])
    try:
        cfg = tiny_config(["threads.torch_threads=1", "threads.loader_workers=2", "threads.crf_workers=0"])
        run_pipeline(cfg, tmp_path / "run", stages=[])
        plan = current_plan()
        assert (plan.torch_threads, plan.loader_workers, plan.crf_workers) == (1, 2, 0)
        assert torch.get_num_threads() == 1
        ctx = RunContext(cfg, tmp_path / "run")
        assert _train_config(ctx, "cam.train").num_workers == 2  # the plan, where the section says nothing
        explicit = RunContext(tiny_config(["cam.train.num_workers=0"]), tmp_path / "run")
        assert _train_config(explicit, "cam.train").num_workers == 0  # the section's own setting wins
    finally:
        torch.set_num_threads(before)


def test_the_crf_refiner_follows_the_runs_crf_workers(monkeypatch) -> None:
    """``threads.crf_workers`` reaches every CRF whose ``workers`` is left at None (the dense_crf
    refiner's default): a run that says 0 keeps its CRFs in its own process."""
    import wsss_kit.engine.threads as threads
    from wsss_kit.crf.pool import resolve_workers

    monkeypatch.setattr(threads, "_APPLIED", [])
    before = torch.get_num_threads()
    try:
        apply_threads(plan_threads(crf_workers=0, cpus=4, env={}))
        assert resolve_workers(None, 10) == 0
        apply_threads(plan_threads(crf_workers=3, cpus=4, env={}))
        assert resolve_workers(None, 10) == 3 and resolve_workers(None, 2) == 2  # at most one per image
        assert resolve_workers(0, 10) == 0  # an explicit refiner.workers wins over the plan
        apply_threads(plan_threads(cpus=4, local_world_size=2, env={}))
        assert resolve_workers(None, 10) == 2  # the rule: the cores shared among torchrun's processes
    finally:
        torch.set_num_threads(before)


def test_a_run_with_crf_workers_0_refines_in_its_own_process(tmp_path, monkeypatch) -> None:
    """End to end: ``threads.crf_workers: 0`` keeps the pseudo-mask stage's CRFs in the run's
    process (no worker pool), and 2 starts a pool of 2; the masks are the same either way."""
    from test_pipeline import tiny_config

    import wsss_kit.crf.pool as pool
    import wsss_kit.engine.threads as threads
    from wsss_kit.pipeline import run_pipeline

    before = torch.get_num_threads()
    monkeypatch.setattr(threads, "_APPLIED", [])
    pools: list[int] = []
    real = pool.shared_pool
    monkeypatch.setattr(pool, "shared_pool", lambda workers: pools.append(workers) or real(workers))
    stages = ["train_cam", "cams", "seeds", "pseudo_masks"]
    try:  # refiner.workers unset (tiny_config pins it to 0): the run's threads section decides
        run_pipeline(tiny_config(["refiner.workers=null", "threads.crf_workers=0"]), tmp_path / "a", stages=stages)
        assert pools == []
        run_pipeline(tiny_config(["refiner.workers=null", "threads.crf_workers=2"]), tmp_path / "b", stages=stages)
        assert pools and set(pools) == {2}
    finally:
        torch.set_num_threads(before)
        pool.shutdown_shared_pool()
    for name in sorted((tmp_path / "a" / "pseudo_masks" / "train").glob("*.png")):
        assert name.read_bytes() == (tmp_path / "b" / "pseudo_masks" / "train" / name.name).read_bytes()


@pytest.mark.parametrize("setting", ["refiner.workers=two", "refiner.workers=-1", "refiner.workers=1.5"])
def test_a_bad_refiner_workers_value_fails_before_any_stage(tmp_path, setting) -> None:
    """It used to pass the config checks and fail in the pseudo-mask stage, after CAM training."""
    from test_pipeline import tiny_config

    from wsss_kit.pipeline import run_pipeline

    with pytest.raises(ConfigError, match=r"refiner .*workers must be an integer >= 0 .* or null"):
        run_pipeline(tiny_config([setting]), tmp_path / "run")
    assert not (tmp_path / "run").exists()
