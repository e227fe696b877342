"""The embedded demo's pipelines as data (:data:`DEMO_PIPELINES`) and where their run files lie.

A small module of its own, so that the CLI parser, tests and benchmarks can find a demo's run
file without importing the demo runner (:mod:`wsss_kit.cli.demo`).
"""

from __future__ import annotations

from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from ..errors import ConfigError

__all__ = ["BASELINE_CONFIG", "DEFAULT_PIPELINE", "DEMO_PIPELINES", "DemoPipeline", "demo_config_path", "get_pipeline"]


@dataclass(frozen=True)
class DemoPipeline:
    """One ``wsss demo --pipeline`` choice.

    Attributes:
        name: the ``--pipeline`` value.
        config: its run file in ``wsss_kit/configs``.
        summary: the line printed before it runs (its stages).
        baseline: whether it starts from the baseline CAM network (:data:`BASELINE_CONFIG`), trained
            first in ``<run_dir>/baseline``.
        select_command: the console script that writes POLE's synonym selection from the baseline's
            CAMs of the training split (``None``: no selection).
    """

    name: str
    config: str
    summary: str
    baseline: bool = False
    select_command: str | None = None


DEMO_PIPELINES: dict[str, DemoPipeline] = {p.name: p for p in (
    DemoPipeline("resnet_cam", "demo.yaml",
                 "CAM training -> CAMs/seeds -> dense CRF pseudo masks -> retrained head -> evaluation"),
    DemoPipeline("clims", "demo_clims.yaml",
                 "baseline CAM network -> CLIMS training with the synthetic CLIP -> CAMs/seeds -> dense CRF "
                 "pseudo masks -> retrained head -> evaluation", baseline=True),
    DemoPipeline("pole", "demo_pole.yaml",
                 "baseline CAM network and CAMs -> POLE synonym selection -> POLE training (selected words, "
                 "adapters) -> CAMs/seeds -> dense CRF pseudo masks -> retrained head -> evaluation",
                 baseline=True, select_command="wsss-pole-select"),
    DemoPipeline("mctformer", "demo_mctformer.yaml",
                 "MCTformer V2 training on the world ViT -> CAMs/seeds -> dense CRF pseudo masks -> retrained "
                 "head -> evaluation"),
    DemoPipeline("weakclip", "demo_weakclip.yaml",
                 "CAM training -> CAMs/seeds -> WeakCLIP training with the synthetic CLIP -> WeakCLIP pseudo "
                 "masks -> retrained head -> evaluation"),
)}
"""The pipelines ``wsss demo --pipeline`` runs, by name."""

DEFAULT_PIPELINE = "resnet_cam"
BASELINE_CONFIG = "demo_baseline.yaml"
"""The baseline CAM network's run file (``clims`` and ``pole`` start from it)."""
def demo_config_path(pipeline: str = DEFAULT_PIPELINE) -> Path:
    """The run file of a demo pipeline (shipped inside the package); ``pipeline`` may also be the
    baseline's file name, :data:`BASELINE_CONFIG`."""
    name = BASELINE_CONFIG if pipeline == BASELINE_CONFIG else get_pipeline(pipeline).config
    return Path(str(resources.files("wsss_kit") / "configs" / name))


def get_pipeline(name: str) -> DemoPipeline:
    """The :data:`DEMO_PIPELINES` record ``name``, or a ConfigError listing the choices."""
    try:
        return DEMO_PIPELINES[name]
    except KeyError:
        raise ConfigError(f"unknown demo pipeline {name!r}; choose one of {', '.join(DEMO_PIPELINES)}") from None
