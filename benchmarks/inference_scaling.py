"""Wall time of the inference stages (``pseudo_masks``: dense CRF over the CAMs of the synthetic
dataset; ``cams``: CAM extraction) with 1 and 2 processes under torchrun, and the speed-up.

    python benchmarks/inference_scaling.py [--train-images 400] [--eval-images 100] [--size 128]
        [--repeats 2] [--stages pseudo_masks,cams] [--max-load 2.0] [--force]

Set-up (once, one process, not timed): the demo pipeline's ``train_cam`` (a few steps: the CAMs'
quality does not matter for the timing), ``cams`` (one scale, no flip) and ``seeds`` on the
synthetic train and held-out splits. Then the ``pseudo_masks`` stage (dense CRF ``psa``, 10 mean-field
iterations, on every image of both splits, then scoring) is recomputed (``--restart pseudo_masks``) as

* ``1 process``: ``wsss pseudo-masks`` with the CRF in the process itself (``threads.crf_workers=0``);
* ``2 processes``: ``torchrun --nproc_per_node=2 -m wsss_kit.cli.main pseudo-masks``, each rank
  refining half of the images in itself (``threads.crf_workers=0``);
* ``1 process + 2 CRF workers``: the refiner's own process pool (``threads.crf_workers=2``), the
  other way to use 2 cores, for comparison. (``threads`` is not part of a stage's settings, so the
  variants share the stages before ``pseudo_masks``; ``refiner.workers`` is.)

and the ``cams`` stage (the CAM network's forward over both splits, then the threshold sweep) as
``1 process`` and ``2 processes (torchrun)``, after the pseudo-mask variants (restarting ``cams``
drops the later stages). Its outputs must be identical too: the SHA-256 of every CAM array written.

Each is timed twice over: the stage's own wall time from the manifest (rank 0, start of the stage to
its completion after every rank has finished, scoring included) and the whole command (interpreter,
imports and for torchrun the rendezvous included). The minimum over ``--repeats`` is kept. The
pseudo-mask mIoU must be identical in every variant (same masks, split differently). Refuses to run
on a busy machine (1-minute load average above ``--max-load``) unless ``--force``; a forced run says
in its output and results that the cores were not idle (the 0.9·N target is for idle cores). Saves
benchmarks/results/inference_scaling.json.
"""

from __future__ import annotations

import argparse
import hashlib
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
from typing import Any

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


def _cam_digest(run_dir: Path) -> str:
    """SHA-256 over every CAM array the run wrote (names and values, not the zip containers' dates)."""
    import numpy as np

    digest = hashlib.sha256()
    for path in sorted((run_dir / "cams").glob("*/*.npz")):
        digest.update(str(path.relative_to(run_dir)).encode())
        with np.load(path) as arrays:
            for key in sorted(arrays.files):
                digest.update(key.encode())
                digest.update(np.ascontiguousarray(arrays[key]).tobytes())
    return digest.hexdigest()


def _time_stage(args: argparse.Namespace, config: str, common: list[str], env: dict[str, str], stage: str,
                procs: int, extra: list[str], run_dir: Path) -> dict:
    """Recompute ``stage`` ``args.repeats`` times with ``procs`` processes; its wall times and outputs."""
    cli = ["-m", "wsss_kit.cli.main"]
    verb = [stage.replace("_", "-"), config, "--restart", *common, *extra]
    seconds, command, outputs = [], [], set()
    for _ in range(args.repeats):
        if procs == 1:
            cmd = [sys.executable, *cli, *verb]
        else:
            cmd = [sys.executable, "-m", "torch.distributed.run", f"--nproc_per_node={procs}",
                   "--master_addr=127.0.0.1", f"--master_port={_free_port()}", *cli, *verb]
        command.append(_run(cmd, env))
        record = json.loads((run_dir / "manifest.json").read_text())["stages"][stage]
        seconds.append(float(record["wall_seconds"]))
        if stage == "cams":
            outputs.add(_cam_digest(run_dir))
        else:
            outputs.add(json.dumps({"train": record["train"]["miou"], "eval": record["eval"]["miou"]}))
    label = "cam_arrays_sha256" if stage == "cams" else "pseudo_mask_miou"
    print(f"{stage:13s} {procs} process(es): stage {min(seconds):7.1f} s   command {min(command):7.1f} s")
    return {"processes": procs, "stage_seconds": min(seconds), "command_seconds": round(min(command), 2),
            "all_stage_seconds": seconds, "all_command_seconds": [round(c, 2) for c in command],
            "outputs": {label: json.loads(sorted(outputs)[0]) if stage != "cams" else sorted(outputs)[0]},
            "identical_across_repeats": len(outputs) == 1}


def _scaling(results: dict[str, Any], images: int, same_key: str) -> dict[str, Any]:
    """Speed-ups of 2 processes over 1 (stage and whole command), images/s, and whether outputs agree."""
    base, two = results["1 process"], results["2 processes (torchrun)"]
    return {
        "speedup_2_processes": {"stage": round(base["stage_seconds"] / two["stage_seconds"], 2),
                                "command": round(base["command_seconds"] / two["command_seconds"], 2)},
        "images_per_second": {name: round(images / r["stage_seconds"], 2) for name, r in results.items()},
        same_key: len({json.dumps(r["outputs"]) for r in results.values()}) == 1,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--train-images", type=int, default=400)
    parser.add_argument("--eval-images", type=int, default=100)
    parser.add_argument("--size", type=int, default=128)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--stages", default="pseudo_masks,cams", help="comma-separated: pseudo_masks, cams")
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
    if load_before[0] > args.max_load:
        print(f"WARNING: load average {load_before[0]} > {args.max_load} (--force): the cores are not idle, the "
              "speed-ups below understate what idle cores give")

    import torch

    from wsss_kit.atomic import write_text
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
        stages = [st.strip() for st in args.stages.split(",") if st.strip()]
        unknown = sorted(set(stages) - {"pseudo_masks", "cams"})
        if unknown:
            raise SystemExit(f"--stages: unknown stage(s) {unknown}; choose from pseudo_masks, cams")
        results: dict[str, dict] = {}
        cam_results: dict[str, dict] = {}
        if "pseudo_masks" in stages:
            for name, (procs, workers) in {"1 process": (1, 0), "2 processes (torchrun)": (2, 0),
                                           "1 process + 2 CRF workers": (1, 2)}.items():
                results[name] = _time_stage(args, config, common, env, "pseudo_masks", procs,
                                            ["--set", f"threads.crf_workers={workers}"], run_dir)
                results[name]["crf_workers"] = workers
        if "cams" in stages:  # last: restarting cams drops seeds and pseudo_masks
            for name, procs in {"1 process": 1, "2 processes (torchrun)": 2}.items():
                cam_results[name] = _time_stage(args, config, common, env, "cams", procs, [], run_dir)
    finally:
        if not args.keep:
            shutil.rmtree(run_dir, ignore_errors=True)

    images = args.train_images + args.eval_images
    idle = load_before[0] <= args.max_load
    out: dict = {
        "what": "inference stages over the synthetic train and held-out splits, 1 vs 2 processes under torchrun "
                "(gloo), CPU: pseudo_masks (dense CRF psa, 10 iterations, + scoring) and cams (resnet_cam forward, "
                "one scale, + threshold sweep)",
        "images": images, "image_size": args.size, "repeats": args.repeats, "setup_seconds": round(setup, 1),
        "cpus": os.cpu_count(), "load_average_before": load_before, "max_load": args.max_load,
        "cores_idle": idle,
        "note": None if idle else (f"forced on a busy machine (load {load_before[0]} > {args.max_load}): the other "
                                   "jobs take core time from the 2-process runs more than from the 1-process run; "
                                   "the 0.9 N target must be checked on idle cores"),
    }
    if results:
        out.update(results=results, **_scaling(results, images, "same_masks_in_every_variant"))
        print(f"pseudo_masks speed-up with 2 processes: {out['speedup_2_processes']['stage']}x (stage), "
              f"{out['speedup_2_processes']['command']}x (whole command); same masks: "
              f"{out['same_masks_in_every_variant']}")
    if cam_results:
        out["cams"] = {"results": cam_results, **_scaling(cam_results, images, "same_cams_in_every_variant")}
        print(f"cams speed-up with 2 processes: {out['cams']['speedup_2_processes']['stage']}x (stage), "
              f"{out['cams']['speedup_2_processes']['command']}x (whole command); same CAMs: "
              f"{out['cams']['same_cams_in_every_variant']}")
    out.update({"load_average_after": [round(x, 2) for x in os.getloadavg()], "torch": torch.__version__,
                "python": platform.python_version(), "machine": platform.machine()})
    if not idle:
        print(out["note"])
    if not args.no_save:
        RESULTS.mkdir(exist_ok=True)
        path = RESULTS / "inference_scaling.json"
        write_text(path, json.dumps(out, indent=2) + "\n")
        print(f"saved {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
