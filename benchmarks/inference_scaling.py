"""Wall time of pseudo-mask inference (dense CRF over the CAMs of the synthetic dataset) with 1 and
2 processes under torchrun, and the speed-up.

    python benchmarks/inference_scaling.py [--train-images 400] [--eval-images 100] [--size 128]
        [--repeats 2] [--max-load 2.0] [--force]

Set-up (once, one process, not timed): the demo pipeline's ``train_cam`` (a few steps: the CAMs'
quality does not matter for the timing), ``cams`` (one scale, no flip) and ``seeds`` on the
synthetic train and held-out splits. Then the ``pseudo_masks`` stage (dense CRF ``psa``, 10 mean-field
iterations, on every image of both splits, then scoring) is recomputed (``--restart pseudo_masks``) as

* ``1 process``: ``wsss pseudo-masks`` with the CRF in the process itself (``refiner.workers=0``);
* ``2 processes``: ``torchrun --nproc_per_node=2 -m wsss_kit.cli.main pseudo-masks``, each rank
  refining half of the images in itself (``refiner.workers=0``);
* ``1 process + 2 CRF workers``: the refiner's own process pool (``refiner.workers=2``), the other
  way to use 2 cores, for comparison.

Each is timed twice over: the stage's own wall time from the manifest (rank 0, start of the stage to
its completion after every rank has finished, scoring included) and the whole command (interpreter,
imports and for torchrun the rendezvous included). The minimum over ``--repeats`` is kept. The
pseudo-mask mIoU must be identical in every variant (same masks, split differently). Refuses to run
on a busy machine (1-minute load average above ``--max-load``) unless ``--force``. Saves
benchmarks/results/inference_scaling.json.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "results"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _overrides(args: argparse.Namespace) -> list[str]:
    sets = [
        f"data.train.num_images={args.train_images}", f"data.train.image_size={args.size}",
        f"data.eval.num_images={args.eval_images}", f"data.eval.image_size={args.size}",
        f"cam.augment.crop_size={args.size}", "cam.train.steps=10", "cam.train.batch_size=8",
        "cam.infer.scales=[1.0]", "cam.infer.flip=false", "device=cpu",
    ]
    return [item for s in sets for item in ("--set", s)]


def _run(cmd: list[str], env: dict[str, str]) -> float:
    start = time.perf_counter()
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True)
    seconds = time.perf_counter() - start
    if proc.returncode != 0:
        raise SystemExit(f"failed ({proc.returncode}): {' '.join(cmd)}\n{proc.stdout[-2000:]}\n{proc.stderr[-4000:]}")
    return seconds


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--train-images", type=int, default=400)
    parser.add_argument("--eval-images", type=int, default=100)
    parser.add_argument("--size", type=int, default=128)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--max-load", type=float, default=2.0)
    parser.add_argument("--force", action="store_true", help="run even on a busy machine")
    parser.add_argument("--keep", help="keep the run directory here (default: a temporary folder)")
    parser.add_argument("--no-save", action="store_true", help="print only; do not write the results file")
    args = parser.parse_args()

    load_before = [round(x, 2) for x in os.getloadavg()]
    if load_before[0] > args.max_load and not args.force:
        print(f"load average {load_before[0]} > {args.max_load}: the machine is busy and the timings would "
              "measure the other jobs; rerun when it is quiet, or pass --force")
        return 1

    import torch

    from wsss_kit.cli.main import demo_config_path

    config = str(demo_config_path())
    run_dir = Path(args.keep) if args.keep else Path(tempfile.mkdtemp(prefix="wsss_scaling_"))
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1", "CUDA_VISIBLE_DEVICES": ""}
    cli = ["-m", "wsss_kit.cli.main"]
    common = ["--out", str(run_dir), *_overrides(args)]
    try:
        print(f"set-up: train_cam, cams, seeds of {args.train_images} + {args.eval_images} images of "
              f"{args.size}x{args.size} in {run_dir}")
        setup = _run([sys.executable, *cli, "run", config, "--stages", "train_cam,cams,seeds", *common], env)
        variants = {
            "1 process": (1, 0),
            "2 processes (torchrun)": (2, 0),
            "1 process + 2 CRF workers": (1, 2),
        }
        results = {}
        for name, (procs, workers) in variants.items():
            stage, command, mious = [], [], set()
            for _ in range(args.repeats):
                verb = ["pseudo-masks", config, "--restart", "pseudo_masks", *common,
                        "--set", f"refiner.workers={workers}"]
                if procs == 1:
                    cmd = [sys.executable, *cli, *verb]
                else:
                    cmd = [sys.executable, "-m", "torch.distributed.run", f"--nproc_per_node={procs}",
                           "--master_addr=127.0.0.1", f"--master_port={_free_port()}", *cli, *verb]
                command.append(_run(cmd, env))
                record = json.loads((run_dir / "manifest.json").read_text())["stages"]["pseudo_masks"]
                stage.append(float(record["wall_seconds"]))
                mious.add((record["train"]["miou"], record["eval"]["miou"]))
            results[name] = {"processes": procs, "crf_workers": workers, "stage_seconds": min(stage),
                             "command_seconds": round(min(command), 2), "all_stage_seconds": stage,
                             "all_command_seconds": [round(c, 2) for c in command],
                             "pseudo_mask_miou": {"train": sorted(mious)[0][0], "eval": sorted(mious)[0][1]},
                             "identical_across_repeats": len(mious) == 1}
            print(f"{name:28s} stage {min(stage):7.1f} s   command {min(command):7.1f} s")
    finally:
        if not args.keep:
            shutil.rmtree(run_dir, ignore_errors=True)

    base, two = results["1 process"], results["2 processes (torchrun)"]
    images = args.train_images + args.eval_images
    out = {
        "what": "pseudo_masks stage (dense CRF psa, 10 iterations, + scoring) over the synthetic train and "
                "held-out splits, 1 vs 2 processes under torchrun (gloo), CPU",
        "images": images, "image_size": args.size, "repeats": args.repeats, "setup_seconds": round(setup, 1),
        "results": results,
        "speedup_2_processes": {"stage": round(base["stage_seconds"] / two["stage_seconds"], 2),
                                "command": round(base["command_seconds"] / two["command_seconds"], 2)},
        "images_per_second": {name: round(images / r["stage_seconds"], 2) for name, r in results.items()},
        "same_masks_in_every_variant": len({json.dumps(r["pseudo_mask_miou"]) for r in results.values()}) == 1,
        "cpus": os.cpu_count(), "load_average_before": load_before,
        "load_average_after": [round(x, 2) for x in os.getloadavg()],
        "torch": torch.__version__, "python": platform.python_version(), "machine": platform.machine(),
    }
    print(f"speed-up with 2 processes: {out['speedup_2_processes']['stage']}x (stage), "
          f"{out['speedup_2_processes']['command']}x (whole command); same masks: {out['same_masks_in_every_variant']}")
    if not args.no_save:
        RESULTS.mkdir(exist_ok=True)
        path = RESULTS / "inference_scaling.json"
        path.write_text(json.dumps(out, indent=2) + "\n")
        print(f"saved {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
