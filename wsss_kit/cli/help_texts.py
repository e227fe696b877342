"""The ``wsss`` verbs' help: a one-line summary, a description and an epilog with examples each.

Kept apart from the parser (:mod:`wsss_kit.cli.main`) so the texts read as prose. In a description or
epilog, a blank line separates paragraphs; prose lines are re-wrapped to the terminal, and lines
that start with a space (commands) are printed as written (:class:`HelpFormatter`).
"""

from __future__ import annotations

import argparse
import textwrap
from dataclasses import dataclass

__all__ = ["PLUGIN_OPTION_HELP", "VERB_HELP", "HelpFormatter", "VerbHelp", "stage_verb_help"]


class HelpFormatter(argparse.HelpFormatter):
    """Re-wraps prose lines of descriptions and epilogs, keeps indented lines (example commands) as written."""

    def _fill_text(self, text: str, width: int, indent: str) -> str:
        out: list[str] = []
        prose: list[str] = []

        def flush() -> None:
            if prose:
                out.append(textwrap.fill(" ".join(prose), width, initial_indent=indent, subsequent_indent=indent))
                prose.clear()

        for line in text.splitlines():
            if not line.strip():
                flush()
                out.append("")
            elif line[:1].isspace():
                flush()
                out.append(indent + line)
            else:
                prose.append(line.strip())
        flush()
        return "\n".join(out)


@dataclass(frozen=True)
class VerbHelp:
    """``help``: the line in ``wsss --help``; ``description`` and ``epilog``: ``wsss VERB --help``."""

    help: str
    description: str
    epilog: str


PLUGIN_OPTION_HELP = (
    "import this Python module before the config is built, so the plugins it registers with "
    "wsss_kit.register can be named in the config (repeatable; also WSSS_KIT_PLUGINS=mod1,mod2)"
)

_PROGRESS = (
    "Progress shows as bars on a terminal and, when the output goes to a file (nohup, SLURM, CI), as a plain "
    "line every log_every training steps (loss terms, lr, images/s, ETA) or every 30 s of inference; "
    "WSSS_KIT_PROGRESS=bar|lines|off chooses."
)

_EXIT_RUN = "exit status: 0 done (or, with --dry-run, checked), 2 on an error in the config, data or a plugin, " \
            "130 interrupted (rerun the same command to resume)."

VERB_HELP: dict[str, VerbHelp] = {
    "plugins": VerbHelp(
        help="list installed plugins by kind, with distribution and version",
        description=(
            "List the plugins of every kind (cams, prompts, refiners, losses, heads, datasets): name, "
            "distribution, version and entry point. A plugin that fails to import is listed as broken with "
            "the reason, among the others; plugins switched off by WSSS_KIT_DISABLE_PLUGINS are marked. "
            "Modules named with --plugin or WSSS_KIT_PLUGINS are imported first, so what they register "
            "in-process is listed too (distribution 'local')."),
        epilog=(
            "examples:\n"
            "  wsss plugins\n"
            "  wsss plugins --kind refiners\n"
            "  wsss plugins --plugin my_plugins     # with what my_plugins.py registers\n"),
    ),
    "demo": VerbHelp(
        help="run the embedded end-to-end demo on the synthetic dataset",
        description=(
            "Run a whole pipeline (CAM training, CAMs, seeds, refinement, pseudo masks, retraining, "
            "evaluation) on the procedurally generated dataset that ships with wsss_kit, with its shipped "
            "tiny weights: no download, minutes on 2 CPU cores. Prints the stage-wise mIoU table and writes "
            "results.md and pictures/ into the run directory; rerunning resumes.\n\n" + _PROGRESS),
        epilog=(
            "examples:\n"
            "  wsss demo\n"
            "  wsss demo --pipeline weakclip --out runs/demo_weakclip\n"
            "  wsss demo --dry-run                  # check and plan; nothing is written\n\n" + _EXIT_RUN),
    ),
    "run": VerbHelp(
        help="run (or resume) a pipeline from a YAML config",
        description=(
            "Run a pipeline from a YAML run config: train_cam, cams, seeds, train_refiner, pseudo_masks, "
            "train_head, eval, each stage reading the earlier stages' files in the run directory. The whole "
            "config is checked before the first stage starts. Complete stages and items are skipped, so "
            "rerunning the same command resumes; a stage whose settings changed is refused until --restart "
            "names the first stage to recompute. --shard splits the inference stages' items between "
            "processes (training stages run in shard 0).\n\n" + _PROGRESS),
        epilog=(
            "examples:\n"
            "  wsss run my_run.yaml\n"
            "  wsss run my_run.yaml --set cam.train.steps=100 --out runs/short\n"
            "  wsss run my_run.yaml --stages cams,seeds --shard 0/4   # one of four processes\n"
            "  wsss run my_run.yaml --restart pseudo_masks   # recompute from pseudo_masks on\n"
            "  wsss run my_run.yaml --plugin my_plugins      # the config names what my_plugins registers\n"
            "  wsss run my_run.yaml --dry-run\n\n" + _EXIT_RUN),
    ),
    "cam": VerbHelp(
        help="write the CAMs and seeds of one split from a CAM network checkpoint",
        description=(
            "Compute CAM files (<out>/cams/<split>/<name>.npz) and seed masks (<out>/seeds/<split>/<name>.png) "
            "of one split with the config's cam.model, without running a pipeline. Existing files are skipped, "
            "so rerunning resumes; --shard splits the split between processes. The split is scored once all "
            "its files exist."),
        epilog=(
            "examples:\n"
            "  wsss cam voc.yaml --split train --checkpoint res50_cam.pth --bg-threshold 0.25 --out runs/voc_cams\n"
            "  wsss cam voc.yaml --checkpoint res50_cam.pth --out runs/voc_cams --shard 1/4\n\n"
            "exit status: 0 done, 2 on an error in the config, data, checkpoint or network."),
    ),
    "refine": VerbHelp(
        help="write the pseudo masks of one split with a (released) refiner checkpoint",
        description=(
            "Refine the run directory's cams/<split> or seeds/<split> (pseudo_masks.input) with the config's "
            "refiner into <out>/pseudo_masks/<split>/<name>.png, without running a pipeline; existing files "
            "are skipped, --shard splits the work, and the split is scored into summary.json once all its "
            "files exist."),
        epilog=(
            "examples:\n"
            "  wsss refine my_run.yaml --checkpoint refiner.pth\n"
            "  wsss refine my_run.yaml --split eval --out runs/refined --shard 0/2\n\n"
            "exit status: 0 done (or other shards pending), 2 on an error."),
    ),
    "predict": VerbHelp(
        help="write a head's predictions of one split with a (released) checkpoint",
        description=(
            "Predict data.<split> with head.model under head.infer (scales, flips, CRF) into "
            "<out>/predictions/<split>/<name>.png, without running a pipeline; existing files are skipped, "
            "--shard splits the work, and the split is scored into summary.json once all its files exist."),
        epilog=(
            "examples:\n"
            "  wsss predict my_run.yaml --checkpoint head.pth\n"
            "  wsss predict my_run.yaml --split train --out runs/preds --shard 1/2\n\n"
            "exit status: 0 done (or other shards pending), 2 on an error."),
    ),
    "eval": VerbHelp(
        help="score a folder of PNG masks against ground-truth PNGs",
        description=(
            "Score every ground-truth mask <name>.png of --gt against the prediction of the same name in "
            "--pred (palette or greyscale index PNGs: 0 background, 1..C the classes, 255 ignore) and print "
            "the per-class IoU table and the mIoU of the summed confusion matrix. Every mask is checked "
            "against the class list: a value beyond it is an error naming the file.\n\n"
            "--classes takes 'voc', 'coco', names separated by commas ('cat,dog'), or a file: one name a "
            "line, or a .json list. A value that looks like a path (it has a path separator, or ends in "
            ".txt, .json, .csv or .names) must be an existing file; it is never read as a class name."),
        epilog=(
            "examples:\n"
            "  wsss eval --pred runs/voc/predictions/eval --gt VOCdevkit/VOC2012/SegmentationClass --classes voc\n"
            "  wsss eval --pred preds --gt masks --classes cat,dog --format markdown\n"
            "  wsss eval --pred preds --gt masks --classes classes.txt --allow-missing\n\n"
            "exit status: 0 scored, 2 on an error (a missing folder or --classes file, an unreadable mask, a "
            "class value outside the list, missing predictions without --allow-missing)."),
    ),
    "check-data": VerbHelp(
        help="scan the datasets of a config and report every problem",
        description=(
            "Read every item of the datasets of a run config (each node under data:, or those given with "
            "--key) and report all problems in one pass, grouped by kind: missing, unreadable or oversized "
            "images and masks, mask sizes that differ from the image, mask values outside the classes, "
            "image-level labels that disagree with the mask, ... Notes (e.g. a greyscale image that will be "
            "converted to RGB) are reported but are not errors."),
        epilog=(
            "exit status: 0 when no errors were found (none, or notes only), 1 when at least one error was "
            "found, 2 when the config cannot be read or a dataset cannot be built.\n\n"
            "examples:\n"
            "  wsss check-data my_run.yaml\n"
            "  wsss check-data my_run.yaml --key data.train --set data.train.root=/data/VOCdevkit\n"),
    ),
}


def stage_verb_help(verb: str, stage: str, summary: str, trains: bool) -> VerbHelp:
    """The help of the verb that runs only ``stage`` of a run config."""
    split = ("It is a training stage: it is not split with --shard (under torchrun every process takes part "
             "in the one training)." if trains else
             "--shard i/n makes this process handle items i, i+n, ... only; the stage is complete once every "
             "shard has run.")
    shard_example = "" if trains else f"  wsss {verb} my_run.yaml --shard 0/2   # one of two processes\n"
    return VerbHelp(
        help=f"run only the {stage} stage of a config: {summary}",
        description=(
            f"Run only the {stage} stage of a run config: {summary}. It reads what the earlier stages wrote "
            f"into the run directory (run them first, e.g. wsss run CONFIG --stages ...) and is skipped when "
            f"it is complete. {split}\n\n" + _PROGRESS),
        epilog=(
            "examples:\n"
            f"  wsss {verb} my_run.yaml\n"
            f"  wsss {verb} my_run.yaml --restart     # recompute it, and forget the stages after it\n"
            + shard_example + "\n" + _EXIT_RUN),
    )
