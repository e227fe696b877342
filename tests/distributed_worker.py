"""The per-process side of tests/test_distributed.py, run as
``python -m torch.distributed.run --nproc_per_node=2 tests/distributed_worker.py OUT`` (gloo, CPU).

The test imports this file too, so that its one-process reference runs use the very same model,
data and settings. Each process writes ``OUT/rank<r>.json`` with what it saw.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

NUM_CLASSES = 3
STEPS, CRASH_AT, CHECKPOINT_EVERY = 8, 5, 3


class ToyData:
    """24 tiny images; class c is present when channel c is bright. Each item draws a random flip and
    noise from the global torch RNG, which the engine seeds per sample (so any rank loads it alike)."""

    def __init__(self, n: int = 24) -> None:
        g = torch.Generator().manual_seed(0)
        self.labels = (torch.rand(n, NUM_CLASSES, generator=g) > 0.5).float()
        noise = 0.2 * torch.rand(n, 3, 8, 8, generator=g)
        self.images = (0.1 + 0.6 * self.labels[:, :, None, None] + noise).clamp(0, 1)

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, i: int) -> dict[str, Any]:
        image = self.images[i]
        if torch.rand(()) < 0.5:
            image = image.flip(-1)
        image = image + 0.05 * torch.rand_like(image)
        return {"image": image, "labels": self.labels[i], "name": f"img_{i:03d}"}


class GroupNormCAM(nn.Module):
    """Conv → GroupNorm → ReLU → 1x1 conv → GAP. GroupNorm, unlike BatchNorm, normalises each sample
    on its own, so N processes with DDP compute exactly the gradients of one process (on CPU
    there is no SyncBatchNorm, and BatchNorm statistics over B/N samples would differ)."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, 8, 3, padding=1)
        self.norm = nn.GroupNorm(2, 8)
        self.conv2 = nn.Conv2d(8, NUM_CLASSES, 1)

    def forward(self, images: torch.Tensor, labels: torch.Tensor) -> dict[str, torch.Tensor]:
        logits = self.conv2(F.relu(self.norm(self.conv1(images)))).mean(dim=(2, 3))
        return {"loss": F.multilabel_soft_margin_loss(logits, labels), "mean_logit": logits.detach().mean()}


def make_model() -> GroupNormCAM:
    torch.manual_seed(0)
    return GroupNormCAM()


def config(**overrides: Any) -> Any:
    from wsss_kit.engine import TrainConfig

    base = dict(steps=STEPS, batch_size=4, lr=0.2, optimizer="sgd", momentum=0.9, schedule="poly",
                checkpoint_every=CHECKPOINT_EVERY, log_every=1, device="cpu", seed=3)
    base.update(overrides)
    return TrainConfig(**base)


class Crash(RuntimeError):
    pass


def crash_at(call: int):
    """A step function that fails on its ``call``-th call (step ``call`` with one micro-batch per step)."""
    count = {"n": 0}

    def step(model: nn.Module, batch: dict[str, Any]) -> dict[str, torch.Tensor]:
        count["n"] += 1
        if count["n"] >= call:
            raise Crash(f"simulated crash in step {call}")
        return model(batch["image"], batch["labels"])

    return step


CAM_ARGS = ["--split", "eval", "--bg-threshold", "auto", "--set", "data.eval.num_images=7",
            "--set", "data.eval.image_size=48", "--set", "data.train.num_images=4", "--set", "data.train.image_size=48",
            "--set", "cam.infer.scales=[1.0]", "--set", "device=cpu"]
"""``wsss cam`` on 7 held-out images with the demo's CAM network as built (seeded: the same in every process)."""


def eval_dataset() -> Any:
    from wsss_kit.data.synthetic import SyntheticDataset

    return SyntheticDataset(split="val", num_images=7, image_size=32)  # 7 items: 4 + 3 over 2 ranks


def main(out: Path) -> None:
    from wsss_kit.cli.main import demo_config_path
    from wsss_kit.cli.main import main as cli
    from wsss_kit.engine import get_rank, get_world_size, train
    from wsss_kit.errors import ConfigError
    from wsss_kit.pipeline.evaluation import score_mask_files, sweep_cam_files

    torch.set_num_threads(1)
    seen: dict[str, Any] = {}
    result = train(make_model(), ToyData(), config(), out / "two")  # joins the process group
    seen.update(rank=get_rank(), world=get_world_size(), final_loss=result.final_loss)
    # a run that 1 process started (checkpoint at step 3), continued by 2
    train(make_model(), ToyData(), config(), out / "one_then_two")
    # a run that 2 processes start and lose in step 5 (checkpoint at step 3), for 1 process to continue
    try:
        train(make_model(), ToyData(), config(), out / "two_then_one", step_fn=crash_at(CRASH_AT))
    except Crash:
        seen["crashed"] = True
    try:
        train(make_model(), ToyData(), config(batch_size=3), out / "odd")
    except ConfigError as exc:
        seen["odd_error"] = str(exc)
    ds = eval_dataset()
    seen["masks"] = score_mask_files(ds, out / "eval" / "pred", ds.num_classes, across_ranks=True)
    seen["cams"] = sweep_cam_files(ds, out / "eval" / "cams", ds.num_classes, across_ranks=True)
    seen["cli_odd"] = cli(["run", str(demo_config_path()), "--out", str(out / "cli_odd"),
                           "--set", "cam.train.batch_size=3", "--set", "device=cpu"])
    # last: a command that succeeds leaves the process group
    seen["cli_cam"] = cli(["cam", str(demo_config_path()), "--out", str(out / "cam"), *CAM_ARGS])
    (out / f"rank{seen['rank']}.json").write_text(json.dumps(seen, indent=1))


if __name__ == "__main__":
    main(Path(sys.argv[1]))
