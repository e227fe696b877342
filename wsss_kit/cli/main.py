"""The ``wsss`` command line."""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
from typing import Any, Sequence

from ..errors import WSSSError
from ..version import API_VERSION, __version__
from .demo_pipelines import DEFAULT_PIPELINE, DEMO_PIPELINES
from .demo_pipelines import demo_config_path as demo_config_path  # re-exported: tests and benchmarks use it
from .help_texts import PLUGIN_OPTION_HELP, VERB_HELP, HelpFormatter, VerbHelp, stage_verb_help


def stage_verbs() -> dict[str, tuple[str, str]]:
    """``{verb: (stage, summary)}`` for the per-stage sub-commands, read from the stage table."""
    from ..pipeline.stage_table import STAGE_TABLE

    return {s.verb: (s.name, s.summary) for s in STAGE_TABLE}


def _training_stages() -> set[str]:
    from ..pipeline.stage_table import STAGE_TABLE

    return {s.name for s in STAGE_TABLE if s.trains}


def _verb(sub: Any, verb: str, text: VerbHelp) -> argparse.ArgumentParser:
    parser: argparse.ArgumentParser = sub.add_parser(verb, help=text.help, description=text.description,
                                                     epilog=text.epilog, formatter_class=HelpFormatter)
    return parser


def _add_plugin_option(p: argparse.ArgumentParser) -> None:
    p.add_argument("--plugin", dest="plugin_modules", action="append", default=[], metavar="MODULE",
                   help=PLUGIN_OPTION_HELP)


def _add_run_options(p: argparse.ArgumentParser, shard: bool = True, stage: str | None = None) -> None:
    """The options of the verbs that run stages of a config. ``stage``: a verb that runs only that
    stage (its ``--restart`` takes no argument); ``shard``: offer ``--shard`` (not for a training stage)."""
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override a config value, e.g. --set cam.train.steps=100 (repeatable)")
    p.add_argument("--out", help="run directory (default: the config's run_dir)")
    if shard:
        p.add_argument("--shard", metavar="i/n", help="process only items i, i+n, ... of the inference stages "
                       "(training stages run in shard 0)")
    else:
        p.set_defaults(shard=None)
    if stage is None:
        p.add_argument("--restart", metavar="STAGE", help="recompute this stage and the ones after it")
    else:
        p.add_argument("--restart", action="store_const", const=stage,
                       help=f"recompute {stage} even when it is complete (the stages after it are forgotten)")
    p.add_argument("--dry-run", action="store_true",
                   help="check the whole config and the run directory, print the resolved config and what each "
                        "stage would do, and stop: nothing is written")
    p.add_argument("--print-config", action="store_true",
                   help="print the config with the --set overrides applied, and stop")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="wsss", description="wsss_kit: weakly-supervised semantic segmentation toolkit",
        epilog="Run 'wsss COMMAND --help' for a command's options and examples. Start with 'wsss demo'.")
    parser.add_argument("--version", action="version", version=f"wsss-kit {__version__} (interface {API_VERSION})")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = _verb(sub, "plugins", VERB_HELP["plugins"])
    p.add_argument("--kind", help="only this kind (cams, prompts, refiners, losses, heads, datasets)")
    p.add_argument("--no-load", action="store_true", help="do not import plugins (broken ones show as unloaded)")
    _add_plugin_option(p)

    p = _verb(sub, "demo", VERB_HELP["demo"])
    p.add_argument("--pipeline", default=DEFAULT_PIPELINE, choices=tuple(DEMO_PIPELINES), metavar="NAME",
                   help=f"which seed method's whole pipeline: {', '.join(DEMO_PIPELINES)} (default: "
                        f"{DEFAULT_PIPELINE}, wsss_kit/configs/demo.yaml; the others: demo_<NAME>.yaml)")
    _add_run_options(p)

    p = _verb(sub, "run", VERB_HELP["run"])
    p.add_argument("config", help="the run config (YAML)")
    _add_run_options(p)
    p.add_argument("--stages", help="comma-separated stages to run (default: all)")
    _add_plugin_option(p)

    training = _training_stages()
    for verb, (stage, summary) in stage_verbs().items():
        p = _verb(sub, verb, stage_verb_help(verb, stage, summary, trains=stage in training))
        p.add_argument("config", help="the run config (YAML)")
        _add_run_options(p, shard=stage not in training, stage=stage)
        _add_plugin_option(p)

    p = _verb(sub, "cam", VERB_HELP["cam"])
    p.add_argument("config", help="a run config (data.<split>, cam.model, cam.infer, seeds, run_dir, device, seed)")
    p.add_argument("--split", default="train", choices=("train", "eval"), help="which data.<split> (default: train)")
    p.add_argument("--checkpoint", metavar="PATH",
                   help="state dict of the CAM network, loaded strictly (default: <run_dir>/train_cam/model.pt "
                   "when it exists, else the model as cam.model builds it)")
    p.add_argument("--bg-threshold", metavar="T",
                   help="background threshold of the seeds (default: seeds.bg_threshold); 'auto' takes the best "
                   "threshold of the CAM sweep and needs ground truth")
    p.add_argument("--compress", action="store_true", help="write CAM files with np.savez_compressed")
    p.add_argument("--out", help="output folder (default: the config's run_dir)")
    p.add_argument("--shard", metavar="i/n", help="process only items i, i+n, ... (e.g. 0/4)")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override a config value, e.g. --set cam.infer.flip=false (repeatable)")
    p.add_argument("--batch-size", type=int, metavar="N",
                   help="images per network call (default: cam.infer.batch_size)")
    p.add_argument("--no-seeds", action="store_true", help="write only the CAM files")
    _add_plugin_option(p)

    from .split_command import add_split_options

    p = _verb(sub, "refine", VERB_HELP["refine"])
    add_split_options(p, "train", "refiner")
    _add_plugin_option(p)
    p = _verb(sub, "predict", VERB_HELP["predict"])
    add_split_options(p, "eval", "head", batch=False)
    _add_plugin_option(p)

    p = _verb(sub, "eval", VERB_HELP["eval"])
    p.add_argument("--pred", required=True, help="folder of predicted masks <name>.png")
    p.add_argument("--gt", required=True, help="folder of ground-truth masks <name>.png")
    p.add_argument("--classes", default=None, metavar="CLASSES",
                   help="'voc', 'coco', foreground names separated by commas, or an existing file (one name a line, "
                        "or a .json list); default: voc, with a warning")
    p.add_argument("--format", default="text", choices=("text", "markdown", "csv"), help="table format (default: text)")
    p.add_argument("--allow-missing", action="store_true", help="skip ground truth without a prediction")

    from .weights import add_parser as add_weights_parser

    add_weights_parser(sub)
    weights_parser = sub.choices["weights"]
    weights_parser.formatter_class = HelpFormatter
    _add_plugin_option(weights_parser)

    p = _verb(sub, "check-data", VERB_HELP["check-data"])
    p.add_argument("config", help="the run config (YAML) whose datasets are checked")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override a config value before the check, e.g. --set data.train.root=/data/VOCdevkit "
                        "(repeatable)")
    p.add_argument("--key", action="append", help="dataset node(s) to check, e.g. data.train (default: all under data)")
    _add_plugin_option(p)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    rank = int(os.environ.get("RANK", "0") or 0)  # under torchrun only rank 0 prints; errors come from every rank
    tag = f" [rank {rank}]" if "RANK" in os.environ and int(os.environ.get("WORLD_SIZE", "1") or 1) > 1 else ""
    try:
        with contextlib.ExitStack() as stack:
            if rank > 0:
                stack.enter_context(contextlib.redirect_stdout(stack.enter_context(open(os.devnull, "w"))))
            from ..progress import check_environment

            check_environment()
            if hasattr(args, "plugin_modules"):  # the verbs that build plugins; before any config is read
                from ..plugin_modules import import_plugin_modules

                import_plugin_modules(args.plugin_modules)
            code = _dispatch(args)
        _leave_process_group()
        return code
    except WSSSError as exc:
        print(f"wsss {args.command}: error{tag}: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted; rerun the same command to resume", file=sys.stderr)
        return 130


def _leave_process_group() -> None:
    """Destroy the torch.distributed group a command joined under torchrun (after success)."""
    dist = sys.modules.get("torch.distributed")
    if dist is not None and dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def _dispatch(args: argparse.Namespace) -> int:
    from . import commands

    if args.command == "plugins":
        return commands.plugins(args.kind, load=not args.no_load)
    if args.command == "demo":
        return commands.demo(args)
    if args.command == "run":
        stages = args.stages.split(",") if args.stages else None
        return commands.run(args.config, args, stages=stages, restart=args.restart)
    verbs = stage_verbs()
    if args.command in verbs:
        return commands.run(args.config, args, stages=[verbs[args.command][0]], restart=args.restart)
    if args.command == "cam":
        from .cam import cam

        return cam(args)
    if args.command == "refine":
        from .refine import refine

        return refine(args)
    if args.command == "predict":
        from .predict import predict

        return predict(args)
    if args.command == "eval":
        return commands.evaluate(args)
    if args.command == "check-data":
        return commands.check_data(args)
    if args.command == "weights":
        from .weights import weights

        return weights(args)
    raise AssertionError(args.command)


if __name__ == "__main__":
    sys.exit(main())
