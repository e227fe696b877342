"""Tests for wsss_kit.engine: training loop, exact resume, accumulation, AMP, checkpoints, schedules."""

from __future__ import annotations

import math
import random
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from wsss_kit.engine import (
    EpochSampler,
    StepSchedule,
    TrainConfig,
    build_optimizer,
    capture_rng_state,
    epoch_permutation,
    load_checkpoint,
    lr_at,
    read_log,
    restore_rng_state,
    save_checkpoint,
    train,
)
from wsss_kit.engine import checkpoint as checkpoint_module
from wsss_kit.engine.csv_log import CsvLog
from wsss_kit.errors import ConfigError, WeightsError

NUM_CLASSES = 3


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    """Tiny convolutions run fastest single-threaded (and don't suffer from a busy machine)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


class ToyDataset:
    """Class c is present when channel c of the 8x8 image is bright; random flips use the global RNG."""

    def __init__(self, n: int = 24, seed: int = 0, augment: bool = True) -> None:
        g = torch.Generator().manual_seed(seed)
        self.labels = (torch.rand(n, NUM_CLASSES, generator=g) > 0.5).float()
        noise = 0.2 * torch.rand(n, 3, 8, 8, generator=g)
        self.images = (0.1 + 0.6 * self.labels[:, :, None, None] + noise).clamp(0, 1)
        self.augment = augment

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, i: int) -> dict[str, Any]:
        image = self.images[i]
        if self.augment and torch.rand(()) < 0.5:
            image = image.flip(-1)
        if self.augment:
            image = image + 0.01 * float(np.random.rand()) * random.random()
        return {"image": image, "labels": self.labels[i], "name": f"img_{i:03d}"}


class ToyCAM(nn.Module):
    """Two conv layers + GAP; optional dropout and batch norm."""

    def __init__(self, dropout: float = 0.0, batchnorm: bool = False) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, 8, 3, padding=1)
        self.norm = nn.BatchNorm2d(8) if batchnorm else nn.Identity()
        self.drop = nn.Dropout(dropout)
        self.conv2 = nn.Conv2d(8, NUM_CLASSES, 1)

    def forward(self, images: torch.Tensor, labels: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        x = self.drop(F.relu(self.norm(self.conv1(images))))
        logits = self.conv2(x).mean(dim=(2, 3))
        out = {"logits": logits}
        if labels is not None:
            out["loss"] = F.multilabel_soft_margin_loss(logits, labels)
            out["bce_mean_logit"] = logits.detach().mean()
        return out


def make_model(seed: int = 0, **kwargs: Any) -> ToyCAM:
    torch.manual_seed(seed)
    return ToyCAM(**kwargs)


def cfg(**overrides: Any) -> TrainConfig:
    base = dict(steps=12, batch_size=4, lr=0.05, checkpoint_every=3, log_every=1, device="cpu")
    base.update(overrides)
    return TrainConfig(**base)


# --------------------------------------------------------------------------- learning
def test_loss_decreases_and_files_are_written(tmp_path: Path) -> None:
    model = make_model()
    result = train(model, ToyDataset(augment=False), cfg(steps=60, lr=0.5, log_every=5, checkpoint_every=25), tmp_path)
    losses = [row["loss"] for row in result.history]
    assert len(losses) == 60 and result.steps == 60
    assert np.mean(losses[-5:]) < 0.6 * np.mean(losses[:5])
    assert result.model_path == tmp_path / "model.pt" and result.model_path.is_file()
    assert not (tmp_path / "checkpoint.pt").exists()
    rows = read_log(tmp_path / "log.csv")
    assert [r["step"] for r in rows] == list(range(1, 61))
    assert rows[-1]["loss"] == result.final_loss
    header = (tmp_path / "log.csv").read_text().splitlines()[0].split(",")
    assert header == ["step", "loss", "bce_mean_logit", "lr", "seconds"]
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]


def test_finished_run_is_skipped_and_loaded(tmp_path: Path) -> None:
    first = make_model(seed=1)
    done = train(first, ToyDataset(), cfg(steps=4), tmp_path)
    other = make_model(seed=2)
    calls = []
    again = train(other, ToyDataset(), cfg(steps=4), tmp_path, step_fn=lambda m, b: calls.append(1))
    assert not calls and again.steps == 4 and again.final_loss == done.final_loss
    assert all(torch.equal(a, b) for a, b in zip(first.state_dict().values(), other.state_dict().values()))
    with pytest.raises(ConfigError, match="finished run of 4 steps"):
        train(make_model(), ToyDataset(), cfg(steps=5), tmp_path)


class NamedToyCAM(ToyCAM):
    """Records the image ids the training step passes."""

    def __init__(self) -> None:
        super().__init__()
        self.seen: list[Any] = []

    def forward(self, images: torch.Tensor, labels: torch.Tensor | None = None,
                names: list[str] | None = None) -> dict[str, torch.Tensor]:
        self.seen.append(names)
        return super().forward(images, labels)


def test_default_step_passes_image_ids_to_a_forward_that_declares_names(tmp_path: Path) -> None:
    from wsss_kit.engine import default_step

    model = NamedToyCAM()
    train(model, ToyDataset(), cfg(steps=2, batch_size=4), tmp_path / "named")
    assert len(model.seen) == 2 and all(isinstance(n, list) and len(n) == 4 for n in model.seen)
    assert all(isinstance(i, str) and i.startswith("img_") for n in model.seen for i in n)  # default collate
    batch = {"image": torch.rand(1, 3, 8, 8), "labels": torch.ones(1, NUM_CLASSES), "name": ["a"]}
    default_step(model, {k: v for k, v in batch.items() if k != "name"})  # no ids in the batch: not passed
    assert model.seen[-1] is None
    kwargs_only = ToyCAM()
    kwargs_only.forward = lambda images, labels=None, **kw: {"loss": images.sum(), "got": torch.tensor(len(kw))}
    assert default_step(kwargs_only, batch)["got"] == 0  # only a declared `names` parameter receives them


# --------------------------------------------------------------------------- exact resume
class Crash(RuntimeError):
    pass


def crash_after(calls: int):
    count = {"n": 0}

    def step(model: nn.Module, batch: dict[str, Any]) -> dict[str, torch.Tensor]:
        count["n"] += 1
        if count["n"] > calls:
            raise Crash("simulated crash")
        return model(batch["image"], batch["labels"])

    return step


def test_resume_is_bit_for_bit(tmp_path: Path) -> None:
    # dropout uses the training RNG, the dataset's flips use the per-sample RNG; 24 samples /
    # batch 4 = 6 batches per epoch, so the run crosses epochs and crashes mid-epoch.
    config = cfg(steps=12, optimizer="adamw", lr=0.01, warmup_steps=3, schedule="cosine")
    straight_model = make_model(dropout=0.3)
    straight = train(straight_model, ToyDataset(), config, tmp_path / "a")

    with pytest.raises(Crash):
        train(make_model(dropout=0.3), ToyDataset(), config, tmp_path / "b", step_fn=crash_after(7))
    assert load_checkpoint(tmp_path / "b" / "checkpoint.pt")["step"] == 6
    assert [r["step"] for r in read_log(tmp_path / "b" / "log.csv")] == list(range(1, 8))

    torch.manual_seed(1234)  # a new process state: every global RNG elsewhere
    np.random.seed(4321)
    random.seed(99)
    resumed_model = make_model(seed=77, dropout=0.3)
    resumed = train(resumed_model, ToyDataset(), TrainConfig(**{**config.to_dict(), "num_workers": 2}),
                    tmp_path / "b")

    for (name, a), b in zip(straight_model.state_dict().items(), resumed_model.state_dict().values()):
        assert torch.equal(a, b), name
    assert [r["loss"] for r in resumed.history] == [r["loss"] for r in straight.history]
    assert [r["lr"] for r in resumed.history] == [r["lr"] for r in straight.history]
    rows = read_log(tmp_path / "b" / "log.csv")
    assert [r["step"] for r in rows] == list(range(1, 13))
    assert [r["loss"] for r in rows] == [r["loss"] for r in straight.history]


def test_resume_rejects_other_model_or_config(tmp_path: Path) -> None:
    with pytest.raises(Crash):
        train(make_model(), ToyDataset(), cfg(), tmp_path, step_fn=crash_after(4))

    class Wider(ToyCAM):
        def __init__(self) -> None:
            super().__init__()
            self.conv2 = nn.Conv2d(8, NUM_CLASSES + 1, 1)

    with pytest.raises(WeightsError, match=r"checkpoint .*conv2\.weight"):
        train(Wider(), ToyDataset(), cfg(), tmp_path)
    with pytest.raises(ConfigError, match=r"lr: checkpoint 0\.05, now 0\.1"):
        train(make_model(), ToyDataset(), cfg(lr=0.1), tmp_path)
    # fields that do not change the updates may differ
    result = train(make_model(), ToyDataset(), cfg(log_every=4, checkpoint_every=5), tmp_path)
    assert result.steps == 12


# --------------------------------------------------------------------------- accumulation, AMP
def test_grad_accum_equals_larger_batch(tmp_path: Path) -> None:
    data = ToyDataset(n=32)
    big = make_model(seed=3)
    small = make_model(seed=3)
    r_big = train(big, data, cfg(steps=6, batch_size=8), tmp_path / "big")
    r_small = train(small, data, cfg(steps=6, batch_size=4, grad_accum=2), tmp_path / "small")
    for a, b in zip(big.parameters(), small.parameters()):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose([r["loss"] for r in r_big.history], [r["loss"] for r in r_small.history],
                               rtol=1e-5)


def test_amp_bf16_on_cpu(tmp_path: Path) -> None:
    seen = []

    def step(model: nn.Module, batch: dict[str, Any]) -> dict[str, torch.Tensor]:
        seen.append((torch.is_autocast_enabled("cpu"), model.conv1(batch["image"]).dtype))
        return model(batch["image"], batch["labels"])

    model = make_model()
    result = train(model, ToyDataset(), cfg(steps=3, amp=True), tmp_path, step_fn=step)
    assert seen and all(s == (True, torch.bfloat16) for s in seen)
    assert all(math.isfinite(r["loss"]) for r in result.history)
    assert all(p.dtype == torch.float32 for p in model.parameters())


def test_step_fn_errors_are_clear(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="'loss'"):
        train(make_model(), ToyDataset(), cfg(steps=1), tmp_path / "a",
              step_fn=lambda m, b: {"total": m(b["image"], b["labels"])["loss"]})
    with pytest.raises(FloatingPointError, match="step 1"):
        train(make_model(), ToyDataset(), cfg(steps=1), tmp_path / "b",
              step_fn=lambda m, b: {"loss": m(b["image"], b["labels"])["loss"] * float("nan")})
    with pytest.raises(ConfigError, match="fewer than one micro-batch"):
        train(make_model(), ToyDataset(n=3), cfg(steps=1), tmp_path / "c")


# --------------------------------------------------------------------------- checkpoints
def test_checkpoint_save_is_atomic(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "checkpoint.pt"
    save_checkpoint(path, {"step": 1, "w": torch.ones(3)})

    def failing_save(obj: Any, f: Any, *args: Any, **kwargs: Any) -> None:
        Path(f).write_bytes(b"half a checkpoint")
        raise OSError("disk full")

    monkeypatch.setattr(checkpoint_module.torch, "save", failing_save)
    with pytest.raises(OSError, match="disk full"):
        save_checkpoint(path, {"step": 2, "w": torch.zeros(3)})
    monkeypatch.undo()
    state = load_checkpoint(path)
    assert state["step"] == 1 and torch.equal(state["w"], torch.ones(3))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["checkpoint.pt"]


def test_failed_checkpoint_during_training_keeps_previous(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    real_save = torch.save
    calls = {"n": 0}

    def second_save_fails(obj: Any, f: Any, *args: Any, **kwargs: Any) -> None:
        calls["n"] += 1
        if calls["n"] == 2:
            raise OSError("disk full")
        real_save(obj, f, *args, **kwargs)

    monkeypatch.setattr(checkpoint_module.torch, "save", second_save_fails)
    with pytest.raises(OSError):
        train(make_model(), ToyDataset(), cfg(steps=12, checkpoint_every=3), tmp_path)
    monkeypatch.undo()
    assert load_checkpoint(tmp_path / "checkpoint.pt")["step"] == 3
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]
    assert train(make_model(), ToyDataset(), cfg(steps=12, checkpoint_every=3), tmp_path).steps == 12


def test_checkpoint_refuses_foreign_files(tmp_path: Path) -> None:
    torch.save({"step": 3}, tmp_path / "checkpoint.pt")
    with pytest.raises(WeightsError, match="not a wsss_kit training checkpoint"):
        train(make_model(), ToyDataset(), cfg(), tmp_path)


def test_csv_log_trims_rows_after_checkpoint_and_partial_lines(tmp_path: Path) -> None:
    path = tmp_path / "log.csv"
    path.write_text("step,loss,lr,seconds\n1,0.5,0.1,1.0\n2,0.4,0.1,2.0\n3,0.3,0.1,3.0\n4,0.2\n")
    assert [r["step"] for r in read_log(path)] == [1, 2, 3]
    log = CsvLog(path, keep_until=2)
    log.append({"step": 3, "loss": 0.25, "lr": 0.1, "seconds": 3.5})
    log.flush()
    assert [(r["step"], r["loss"]) for r in read_log(path)] == [(1, 0.5), (2, 0.4), (3, 0.25)]


# --------------------------------------------------------------------------- schedules
def test_lr_at_hand_computed_values() -> None:
    kw = dict(base_lr=0.01, total_steps=10)
    assert lr_at(0, schedule="poly", **kw) == pytest.approx(0.01)
    assert lr_at(5, schedule="poly", poly_power=0.9, **kw) == pytest.approx(0.01 * 0.5 ** 0.9)
    assert lr_at(10, schedule="poly", **kw) == pytest.approx(0.0)
    assert lr_at(5, schedule="poly", poly_power=1.0, min_lr=0.002, **kw) == pytest.approx(0.006)
    assert lr_at(5, schedule="cosine", **kw) == pytest.approx(0.005)
    assert lr_at(5, schedule="cosine", min_lr=0.002, **kw) == pytest.approx(0.006)
    assert lr_at(2, schedule="cosine", **kw) == pytest.approx(0.005 * (1 + math.cos(math.pi * 0.2)))
    assert lr_at(7, schedule="constant", **kw) == pytest.approx(0.01)
    # linear warm-up over 4 steps from ratio 0.1, on top of the schedule
    warm = dict(warmup_steps=4, warmup_ratio=0.1, schedule="constant", **kw)
    assert [lr_at(s, **warm) for s in range(5)] == pytest.approx([0.001, 0.00325, 0.0055, 0.00775, 0.01])
    poly = lr_at(2, warmup_steps=4, warmup_ratio=0.1, schedule="poly", poly_power=1.0, **kw)
    assert poly == pytest.approx(0.01 * 0.8 * 0.55)
    with pytest.raises(ValueError, match="poly, cosine, constant"):
        lr_at(0, schedule="step", **kw)


def test_schedule_applies_lr_mult_and_training_logs_it(tmp_path: Path) -> None:
    class Grouped(ToyCAM):
        def param_groups(self, lr: float) -> list[dict[str, Any]]:
            return [{"params": list(self.conv1.parameters()), "lr": lr, "lr_mult": 1.0},
                    {"params": list(self.conv2.parameters()), "lr": lr * 10, "lr_mult": 10.0}]

    config = cfg(steps=4, schedule="poly", poly_power=1.0, lr=0.01, optimizer="sgd")
    model = Grouped()
    opt = build_optimizer(model, config)
    sched = StepSchedule(opt, base_lr=0.01, total_steps=4, schedule="poly", poly_power=1.0)
    assert sched.apply(2) == pytest.approx(0.005)
    assert [g["lr"] for g in opt.param_groups] == pytest.approx([0.005, 0.05])
    result = train(model, ToyDataset(), config, tmp_path)
    assert [r["lr"] for r in result.history] == pytest.approx([0.01, 0.0075, 0.005, 0.0025])


def test_frozen_parameters_are_not_optimised(tmp_path: Path) -> None:
    model = make_model()
    model.conv1.requires_grad_(False)
    before = model.conv1.weight.clone()
    train(model, ToyDataset(), cfg(steps=2), tmp_path)
    assert torch.equal(model.conv1.weight, before)
    model.requires_grad_(False)
    with pytest.raises(ConfigError, match="no trainable parameters"):
        build_optimizer(model, cfg())


# --------------------------------------------------------------------------- config
def test_config_validation_messages() -> None:
    with pytest.raises(ConfigError, match=r"train\.steps must be an integer >= 1; got 0"):
        TrainConfig(steps=0)
    with pytest.raises(ValueError, match=r"optimizer must be one of sgd, adamw; got 'adamww' \(did you mean 'adamw'"):
        TrainConfig(steps=1, optimizer="adamww")
    with pytest.raises(ConfigError, match=r"schedule must be one of poly, cosine, constant"):
        TrainConfig(steps=1, schedule="step")
    with pytest.raises(ConfigError, match=r"momentum must be a number >= 0 and < 1; got 1.5"):
        TrainConfig(steps=1, momentum=1.5)
    with pytest.raises(ConfigError, match="amp must be true or false"):
        TrainConfig(steps=1, amp="yes")
    with pytest.raises(ConfigError, match="device"):
        TrainConfig(steps=1, device="gpu")
    with pytest.raises(ConfigError, match="batch_size"):
        TrainConfig(steps=1, batch_size=True)
    with pytest.raises(ConfigError, match=r"cam\.train has unknown key 'learning_rate'; valid keys: steps, "
                                          r"batch_size, lr.*did you mean"):
        TrainConfig.from_dict({"steps": 5, "learning_rate": 0.1}, where="cam.train")
    with pytest.raises(ConfigError, match=r"head\.train\.grad_accum must be an integer >= 1"):
        TrainConfig.from_dict({"steps": 5, "grad_accum": 0}, where="head.train")
    with pytest.raises(ConfigError, match=r"cam\.train\.steps is required"):
        TrainConfig.from_dict({"lr": 0.1}, where="cam.train")
    built = TrainConfig.from_dict({"steps": 5.0, "lr": 1, "optimizer": "AdamW", "weight_decay": "1e-4"})
    assert built.steps == 5 and isinstance(built.lr, float) and built.optimizer == "adamw"
    assert built.weight_decay == 1e-4
    with pytest.raises(ConfigError, match=r"train\.lr must be a number > 0; got 'fast'"):
        TrainConfig.from_dict({"steps": 5, "lr": "fast"})
    assert TrainConfig.from_dict(built.to_dict()) == built


# --------------------------------------------------------------------------- data order, RNG
def test_epoch_order_depends_only_on_seed_and_epoch() -> None:
    a = epoch_permutation(20, seed=0, epoch=1)
    assert a == epoch_permutation(20, seed=0, epoch=1) and sorted(a) == list(range(20))
    assert a != epoch_permutation(20, seed=0, epoch=2) and a != epoch_permutation(20, seed=1, epoch=1)
    full = [i for i, _ in EpochSampler(20, batch_size=3, seed=0, epoch=1)]
    assert len(full) == 18 and full == a[:18]
    assert [i for i, _ in EpochSampler(20, batch_size=3, seed=0, epoch=1, start_batch=4)] == full[12:]
    # batch_size is the global micro-batch: 2 ranks take 2 + 2 of each batch of 4, in the 1-process order
    single = [i for i, _ in EpochSampler(20, batch_size=4, seed=0, epoch=1)]
    ranks = [[i for i, _ in EpochSampler(20, batch_size=4, seed=0, epoch=1, rank=r, world_size=2)] for r in (0, 1)]
    assert len(ranks[0]) == len(ranks[1]) == 10 and not set(ranks[0]) & set(ranks[1])
    assert [x for k in range(5) for r in (0, 1) for x in ranks[r][2 * k:2 * k + 2]] == single
    resumed = [i for i, _ in EpochSampler(20, batch_size=4, seed=0, epoch=1, start_batch=3, rank=1, world_size=4)]
    assert resumed == [single[4 * k + 1] for k in range(3, 5)]  # start_batch counts global batches
    with pytest.raises(ValueError, match="not divisible"):
        EpochSampler(20, batch_size=3, seed=0, epoch=1, rank=0, world_size=2)


def test_rng_state_roundtrip_through_checkpoint(tmp_path: Path) -> None:
    torch.manual_seed(5)
    np.random.seed(5)
    random.seed(5)
    save_checkpoint(tmp_path / "c.pt", {"rng": capture_rng_state()})
    expected = (torch.rand(3), np.random.rand(3), random.random())
    restore_rng_state(load_checkpoint(tmp_path / "c.pt")["rng"])
    got = (torch.rand(3), np.random.rand(3), random.random())
    assert torch.equal(expected[0], got[0]) and np.array_equal(expected[1], got[1]) and expected[2] == got[2]


def test_a_finished_run_is_not_reused_for_other_settings(tmp_path):
    import torch
    from torch import nn

    from wsss_kit.engine import TrainConfig, train
    from wsss_kit.errors import ConfigError

    class Toy(nn.Module):
        def __init__(self):
            super().__init__()
            self.lin = nn.Linear(2, 1)

        def forward(self, image, labels):
            return {"loss": ((self.lin(image) - labels) ** 2).mean()}

    data = [{"image": torch.randn(2), "labels": torch.randn(1)} for _ in range(8)]
    train(Toy(), data, TrainConfig(steps=2, batch_size=4, lr=0.1, device="cpu"), tmp_path)
    assert (tmp_path / "train_config.json").is_file()
    train(Toy(), data, TrainConfig(steps=2, batch_size=4, lr=0.1, device="cpu"), tmp_path)  # reused
    with pytest.raises(ConfigError, match="lr: checkpoint 0.1, now 0.5"):
        train(Toy(), data, TrainConfig(steps=2, batch_size=4, lr=0.5, device="cpu"), tmp_path)
