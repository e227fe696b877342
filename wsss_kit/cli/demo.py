"""``wsss demo [--pipeline NAME]``: each seed method's whole pipeline on the embedded world.

Every pipeline is one run file shipped in ``wsss_kit/configs`` (:data:`DEMO_PIPELINES`), run like
``wsss run`` runs a file. CLIMS and POLE start, as in their papers, from a baseline CAM network: the
demo trains it first in ``<run_dir>/baseline`` (``demo_baseline.yaml``, with the pipeline's data, seed
and device) and points the pipeline's ``cam.model.init_checkpoint`` at it; POLE then selects its
synonyms from the baseline's CAMs with the console script the POLE plugin publishes
(``wsss-pole-select``), into ``<run_dir>/baseline/pole_selection.json``. Every run is checked before
the first one starts; rerunning resumes each of them.
"""

from __future__ import annotations

import argparse
import copy
import time
from collections.abc import Sequence
from dataclasses import dataclass
from importlib import metadata, resources
from pathlib import Path
from typing import Any

from ..atomic import write_text
from ..config import apply_overrides, dump_config, get_path, parse_config
from ..errors import ConfigError
from .demo_pipelines import (
    BASELINE_CONFIG,
    DEFAULT_PIPELINE,
    DEMO_PIPELINES,
    DemoPipeline,
    demo_config_path,
    get_pipeline,
)
from .run_config import run_config

__all__ = ["BASELINE_CONFIG", "BASELINE_STAGES", "DEFAULT_PIPELINE", "DEMO_PIPELINES", "DemoConfigs", "DemoPipeline",
           "check_demo", "checkable_config", "demo_config_path", "demo_configs", "get_pipeline", "run_demo"]


BASELINE_STAGES = ("train_cam", "cams")
BASELINE_PREFIX = "baseline."
"""``--set baseline.key=value`` changes the baseline's run file instead of the pipeline's."""
SHARED_WITH_BASELINE = ("data", "seed", "device")
"""Keys the baseline takes from the pipeline's config (POLE's selection covers the same images)."""
SET_BY_DEMO = ("cam.model.init_checkpoint", "cam.model.selection_cache")


@dataclass
class DemoConfigs:
    """The resolved run files of one demo: the pipeline's and (``clims``, ``pole``) the baseline's."""

    pipeline: DemoPipeline
    cfg: dict[str, Any]
    run_dir: Path
    baseline_cfg: dict[str, Any] | None = None
    baseline_dir: Path | None = None

    @property
    def source(self) -> str:
        return self.pipeline.config

    @property
    def init_checkpoint(self) -> Path | None:
        return None if self.baseline_dir is None else self.baseline_dir / "train_cam" / "model.pt"

    @property
    def selection_cache(self) -> Path | None:
        if self.baseline_dir is None or self.pipeline.select_command is None:
            return None
        return self.baseline_dir / "pole_selection.json"


def demo_configs(pipeline: str, overrides: Sequence[str] = (), out: str | None = None) -> DemoConfigs:
    """Read a demo pipeline's run file(s) and apply ``overrides`` (``baseline.``-prefixed ones to
    the baseline's); ``out`` replaces the run directory.

    Raises:
        ConfigError: an unknown pipeline, a ``baseline.`` override for a pipeline without a
            baseline, or an override of a key the demo sets itself (:data:`SET_BY_DEMO`).
    """
    record = get_pipeline(pipeline)
    own = [o for o in overrides if not o.strip().startswith(BASELINE_PREFIX)]
    base = [o.strip()[len(BASELINE_PREFIX):] for o in overrides if o.strip().startswith(BASELINE_PREFIX)]
    if base and not record.baseline:
        with_baseline = ", ".join(p.name for p in DEMO_PIPELINES.values() if p.baseline)
        raise ConfigError(f"--set baseline.{base[0]}: the {pipeline!r} demo has no baseline run (only {with_baseline} "
                          f"start from one)")
    cfg = apply_overrides(_read(record.config), own)
    run_dir = Path(out or cfg.get("run_dir") or f"wsss_demo_{record.name}")
    if not record.baseline:
        return DemoConfigs(record, cfg, run_dir)
    for item in own:
        key = item.split("=", 1)[0].strip()
        if key in SET_BY_DEMO or any(key.startswith(k + ".") for k in SET_BY_DEMO):
            raise ConfigError(f"--set {key}: the {pipeline!r} demo sets it to its baseline run's file "
                              f"(<run_dir>/baseline); to start from another file, run the config with `wsss run`")
    for key in base:
        if key.split("=", 1)[0].split(".")[0].strip() in SHARED_WITH_BASELINE:
            raise ConfigError(f"--set baseline.{key}: the baseline takes {', '.join(SHARED_WITH_BASELINE)} from the "
                              f"pipeline's config (POLE selects its words for the same images); set them without "
                              f"'baseline.'")
    baseline_cfg = apply_overrides(_read(BASELINE_CONFIG), base)
    baseline_dir = run_dir / "baseline"
    for key in SHARED_WITH_BASELINE:
        if key in cfg:
            baseline_cfg[key] = copy.deepcopy(cfg[key])
    baseline_cfg["run_dir"] = str(baseline_dir)
    configs = DemoConfigs(record, cfg, run_dir, baseline_cfg, baseline_dir)
    model = get_path(cfg, "cam.model", source=record.config)
    if not isinstance(model, dict):
        raise ConfigError(f"{record.config}: cam.model must be a node like {{type: cams/clims, ...}}; got {model!r}")
    model["init_checkpoint"] = str(configs.init_checkpoint)
    if configs.selection_cache is not None:
        model["selection_cache"] = str(configs.selection_cache)
    return configs


def _read(name: str) -> dict[str, Any]:
    """A run file of ``wsss_kit/configs``, parsed."""
    path = Path(str(resources.files("wsss_kit") / "configs" / name))
    return parse_config(path.read_text(encoding="utf-8"), source=name)


def _select_entry_point(command: str) -> Any:
    """The ``main(argv) -> int`` of a console script a plugin publishes (e.g. ``wsss-pole-select``)."""
    found = [ep for ep in metadata.entry_points(group="console_scripts") if ep.name == command]
    if not found:
        raise ConfigError(f"the demo needs the console script {command!r}, which no installed distribution "
                          f"provides; install the POLE plugin (pip install -e plugins/pole)")
    return found[0].load()


def check_demo(configs: DemoConfigs, restart: str | None = None) -> None:
    """Check every run of the demo before the first one starts (nothing is written).

    The pipeline's ``cam.model.init_checkpoint`` is the baseline's output; until the baseline has
    written it, the pipeline is checked as if it started from the backbone's weights.

    Raises:
        ConfigError: every problem of each run, as ``wsss run --dry-run`` reports it.
    """
    from ..pipeline.validation import plan_run

    if configs.baseline_cfg is not None:
        plan_run(configs.baseline_cfg, configs.baseline_dir, stages=BASELINE_STAGES, source=BASELINE_CONFIG)
        if configs.pipeline.select_command is not None:
            _select_entry_point(configs.pipeline.select_command)
    plan_run(checkable_config(configs), configs.run_dir, restart=restart, source=configs.source)


def checkable_config(configs: DemoConfigs) -> dict[str, Any]:
    """The pipeline's config as it can be checked now: until the baseline run has written its
    checkpoint, without ``cam.model.init_checkpoint`` (the network then starts from ``weights``)."""
    checkpoint = configs.init_checkpoint
    if checkpoint is None or checkpoint.is_file():
        return configs.cfg
    cfg = apply_overrides(configs.cfg, [])
    cfg["cam"]["model"]["init_checkpoint"] = None
    return cfg


def _print_config(configs: DemoConfigs) -> None:
    print(dump_config(configs.cfg).rstrip())
    if configs.baseline_cfg is not None:
        print(f"\n# the baseline run ({BASELINE_CONFIG}, in {configs.baseline_dir}; stages "
              f"{', '.join(BASELINE_STAGES)}), trained first")
        print(dump_config(configs.baseline_cfg).rstrip())


def _dry_run(configs: DemoConfigs, restart: str | None) -> None:
    from ..pipeline.validation import plan_run, print_plan

    if configs.baseline_cfg is not None:
        print(f"# baseline run ({BASELINE_CONFIG})")
        plan = plan_run(configs.baseline_cfg, configs.baseline_dir, stages=BASELINE_STAGES, source=BASELINE_CONFIG)
        print_plan(plan, configs.baseline_cfg)
        if configs.pipeline.select_command is not None:
            print(f"\n# then `{configs.pipeline.select_command}` writes {configs.selection_cache} from "
                  f"{configs.baseline_dir}/cams/train")
        print(f"\n# the {configs.pipeline.name} run ({configs.source}); cam.model.init_checkpoint is the baseline's "
              f"{configs.init_checkpoint}")
    plan = plan_run(checkable_config(configs), configs.run_dir, restart=restart, source=configs.source)
    print_plan(plan, configs.cfg)


def _run_selection(configs: DemoConfigs) -> None:
    """POLE's synonym selection from the baseline's CAMs (reuses a complete cache)."""
    assert configs.baseline_dir is not None and configs.pipeline.select_command is not None
    config_file = write_text(configs.baseline_dir / "pole_selection_config.yaml", dump_config(configs.cfg))
    argv = [str(config_file), "--cams", str(configs.baseline_dir / "cams" / "train"),
            "--out", str(configs.selection_cache)]
    print(f"[wsss] synonym selection: {configs.pipeline.select_command} {' '.join(argv)}")
    code = _select_entry_point(configs.pipeline.select_command)(argv)
    if code:
        raise ConfigError(f"{configs.pipeline.select_command} failed (exit code {code}); see its message above")


def _baseline_line(stages: dict[str, Any], baseline_dir: Path) -> str:
    rec = stages.get("cams", {})
    cells = []
    for split, title in (("train", "train"), ("eval", "held-out")):
        r = rec.get(split) or {}
        text = "-" if r.get("miou") is None else f"{100 * r['miou']:.1f}"
        if r.get("best_threshold") is not None:
            text += f" @{r['best_threshold']:.2f}"
        cells.append(f"{title} {text}")
    return f"baseline CAM network ({baseline_dir}): CAM mIoU {', '.join(cells)}"


def run_demo(args: argparse.Namespace) -> int:
    """``wsss demo``: print the config (``--print-config``), check and plan (``--dry-run``), or run."""
    from ..pipeline import Shard, run_pipeline

    configs = demo_configs(getattr(args, "pipeline", None) or DEFAULT_PIPELINE, args.overrides, args.out)
    if args.print_config:
        _print_config(configs)
        return 0
    if args.dry_run:
        _dry_run(configs, args.restart)
        return 0
    if configs.baseline_cfg is None:
        print(f"wsss demo: {configs.pipeline.summary}")
        return run_config(configs.cfg, args, source=configs.source, restart=args.restart)
    if args.shard:
        raise ConfigError(f"--shard: the {configs.pipeline.name!r} demo chains several runs; run its configs with "
                          f"`wsss run` to shard them")
    check_demo(configs, args.restart)
    print(f"wsss demo --pipeline {configs.pipeline.name}: {configs.pipeline.summary}")
    start = time.perf_counter()
    assert configs.baseline_dir is not None
    baseline = run_pipeline(configs.baseline_cfg, configs.baseline_dir, stages=BASELINE_STAGES,
                            shard=Shard(), source=BASELINE_CONFIG)
    if configs.pipeline.select_command is not None:
        _run_selection(configs)
    args.out = str(configs.run_dir)
    code = run_config(configs.cfg, args, source=configs.source, restart=args.restart)
    print(_baseline_line(baseline, configs.baseline_dir))
    print(f"wall time with the baseline: {time.perf_counter() - start:.0f} s")
    return code
