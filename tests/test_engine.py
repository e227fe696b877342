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
    TrainConfig,
    build_optimizer,
    load_training_state,
    lr_at,
    read_log,
    save_training_state,
    train,
)
from wsss_kit.engine import checkpoint as checkpoint_module
from wsss_kit.engine.csv_log import CsvLog
from wsss_kit.engine.sampling import EpochSampler, epoch_permutation
from wsss_kit.engine.schedule import StepSchedule
from wsss_kit.engine.seeding import capture_rng_state, restore_rng_state
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
    assert len(losses) == 12 and result.steps == 60  # a row every log_every=5 steps
    assert np.mean(losses[-3:]) < 0.6 * np.mean(losses[:3])
    assert result.model_path == tmp_path / "model.pt" and result.model_path.is_file()
    assert not (tmp_path / "checkpoint.pt").exists()
    rows = read_log(tmp_path / "log.csv")
    assert [r["step"] for r in rows] == list(range(5, 61, 5))
    assert rows == result.history
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
    assert load_training_state(tmp_path / "b" / "checkpoint.pt")["step"] == 6
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
    save_training_state(path, {"step": 1, "w": torch.ones(3)})

    def failing_save(obj: Any, f: Any, *args: Any, **kwargs: Any) -> None:
        Path(f).write_bytes(b"half a checkpoint")
        raise OSError("disk full")

    monkeypatch.setattr(checkpoint_module.torch, "save", failing_save)
    with pytest.raises(OSError, match="disk full"):
        save_training_state(path, {"step": 2, "w": torch.zeros(3)})
    monkeypatch.undo()
    state = load_training_state(path)
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
    assert load_training_state(tmp_path / "checkpoint.pt")["step"] == 3
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
    with pytest.raises(ConfigError, match="amp must be true, false, .fp16. or .bf16.; got .yes."):
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
    save_training_state(tmp_path / "c.pt", {"rng": capture_rng_state()})
    expected = (torch.rand(3), np.random.rand(3), random.random())
    restore_rng_state(load_training_state(tmp_path / "c.pt")["rng"])
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


# --------------------------------------------------------------------------- numerical faults
def faulty_step(fault: str, at: int, grad_accum: int = 1):
    """A step function that injects one fault at optimizer step ``at`` (counting calls):
    ``loss`` (the ``reg`` term becomes NaN), ``grad`` (conv2.weight's gradient becomes inf),
    ``buffer`` (inputs of 1e22, which overflow BatchNorm's running_var but give a finite loss),
    ``param`` (conv1.bias becomes NaN after the forward, with finite loss and gradients)."""
    count = {"n": 0}

    def step(model: nn.Module, batch: dict[str, Any]) -> dict[str, torch.Tensor]:
        count["n"] += 1
        now = (count["n"] - 1) // grad_accum + 1 == at
        image = batch["image"] * 1e22 if fault == "buffer" and now else batch["image"]
        out = model(image, batch["labels"])
        reg = 0.01 * model.conv1.weight.pow(2).sum()
        if fault == "loss" and now:
            reg = reg * float("nan")
        if fault == "grad" and now:  # a hook that makes this backward's gradient inf, once
            handle: list[Any] = []

            def to_inf(grad: torch.Tensor) -> torch.Tensor:
                handle.pop().remove()
                return torch.full_like(grad, float("inf"))

            handle.append(model.conv2.weight.register_hook(to_inf))
        if fault == "param" and now:
            with torch.no_grad():
                model.conv1.bias[0] = float("nan")
        return {"loss": out["loss"] + reg, "cls": out["loss"], "reg": reg}

    return step


def clean_step(model: nn.Module, batch: dict[str, Any]) -> dict[str, torch.Tensor]:
    return faulty_step("none", at=0)(model, batch)


def all_finite_state(state: dict[str, Any]) -> bool:
    from wsss_kit.weights.loading import non_finite_tensors

    return non_finite_tensors(state) == []


def assert_resumes_to_the_uninterrupted_result(tmp_path: Path, broken: Path, config: TrainConfig,
                                               **model_kwargs: Any) -> None:
    """Run again without the fault: training resumes from the kept checkpoint and ends exactly
    where an uninterrupted run ends."""
    straight_model = make_model(**model_kwargs)
    straight = train(straight_model, ToyDataset(), config, tmp_path / "straight", step_fn=clean_step)
    resumed_model = make_model(seed=5, **model_kwargs)
    resumed = train(resumed_model, ToyDataset(), config, broken, step_fn=clean_step)
    assert resumed.steps == config.steps and (broken / "model.pt").is_file()
    for (name, a), b in zip(straight_model.state_dict().items(), resumed_model.state_dict().values()):
        assert torch.equal(a, b), name
    assert [r["loss"] for r in read_log(broken / "log.csv")] == [r["loss"] for r in straight.history]


def test_non_finite_loss_names_step_and_term_and_keeps_checkpoint(tmp_path: Path) -> None:
    from wsss_kit.errors import NumericalError, WSSSError

    config = cfg(steps=10, checkpoint_every=2)
    out = tmp_path / "run"
    with pytest.raises(NumericalError) as info:
        train(make_model(), ToyDataset(), config, out, step_fn=faulty_step("loss", at=5))
    msg = str(info.value)
    assert isinstance(info.value, WSSSError) and isinstance(info.value, FloatingPointError)
    assert "non-finite loss at step 5 (micro-batch 1 of 1)" in msg
    assert "loss=nan" in msg and "reg=nan" in msg and "cls=nan" not in msg
    assert f"{out / 'checkpoint.pt'} (step 4)" in msg
    assert load_training_state(out / "checkpoint.pt")["step"] == 4
    assert not (out / "model.pt").exists() and not (out / "train_config.json").exists()
    assert [r["step"] for r in read_log(out / "log.csv")] == [1, 2, 3, 4]
    assert_resumes_to_the_uninterrupted_result(tmp_path, out, config)


def test_non_finite_loss_in_a_later_micro_batch(tmp_path: Path) -> None:
    from wsss_kit.errors import NumericalError

    count = {"n": 0}

    def step(model: nn.Module, batch: dict[str, Any]) -> dict[str, torch.Tensor]:
        count["n"] += 1
        out = model(batch["image"], batch["labels"])
        return {"loss": out["loss"] * (float("inf") if count["n"] == 6 else 1.0)}

    with pytest.raises(NumericalError, match=r"non-finite loss at step 3 \(micro-batch 2 of 2\): loss=inf"):
        train(make_model(), ToyDataset(), cfg(steps=4, grad_accum=2), tmp_path, step_fn=step)


@pytest.mark.parametrize("clip", [None, 1.0])
def test_non_finite_gradient_names_the_parameter(tmp_path: Path, clip: float | None) -> None:
    from wsss_kit.errors import NumericalError

    config = cfg(steps=8, checkpoint_every=3, clip_grad_norm=clip)
    out = tmp_path / "run"
    with pytest.raises(NumericalError) as info:
        train(make_model(), ToyDataset(), config, out, step_fn=faulty_step("grad", at=4))
    msg = str(info.value)
    assert "non-finite gradient at step 4: parameter 'conv2.weight' (24 inf of 24 values)" in msg
    assert "conv1.weight" not in msg.split("the loss terms")[0]  # clipping did not spread it first
    assert "(step 3)" in msg and load_training_state(out / "checkpoint.pt")["step"] == 3
    assert all_finite_state(load_training_state(out / "checkpoint.pt"))
    assert not (out / "model.pt").exists()
    assert_resumes_to_the_uninterrupted_result(tmp_path, out, config)


def test_non_finite_batchnorm_buffer_is_named_and_kept_checkpoint_is_finite(tmp_path: Path) -> None:
    from wsss_kit.errors import NumericalError

    config = cfg(steps=8, checkpoint_every=2)
    out = tmp_path / "run"
    with pytest.raises(NumericalError) as info:
        train(make_model(batchnorm=True), ToyDataset(), config, out, step_fn=faulty_step("buffer", at=5))
    msg = str(info.value)
    assert "non-finite buffer after step 5: 'norm.running_var' (8 inf of 8 values)" in msg
    ckpt = load_training_state(out / "checkpoint.pt")
    assert ckpt["step"] == 4 and all_finite_state(ckpt)
    assert torch.isfinite(ckpt["model"]["norm.running_var"]).all()
    assert not (out / "model.pt").exists()
    assert_resumes_to_the_uninterrupted_result(tmp_path, out, config, batchnorm=True)


def test_non_finite_checkpoint_or_final_weights_are_not_written(tmp_path: Path) -> None:
    """A parameter that turns NaN with finite loss and gradients is caught where it would be
    written: the checkpoint on disk stays the previous one, and no model.pt appears."""
    from wsss_kit.errors import NumericalError

    out = tmp_path / "ckpt"
    with pytest.raises(NumericalError) as info:
        train(make_model(), ToyDataset(), cfg(steps=9, checkpoint_every=3), out, step_fn=faulty_step("param", at=6))
    msg = str(info.value)
    assert f"refusing to write checkpoint {out / 'checkpoint.pt'} after step 6" in msg
    assert "'model.conv1.bias' (1 NaN of 8 values)" in msg and "(step 3)" in msg
    assert load_training_state(out / "checkpoint.pt")["step"] == 3

    out = tmp_path / "final"
    with pytest.raises(NumericalError) as info:
        train(make_model(), ToyDataset(), cfg(steps=7, checkpoint_every=3), out, step_fn=faulty_step("param", at=7))
    assert f"refusing to write the trained weights {out / 'model.pt'} after step 7" in str(info.value)
    assert "'conv1.bias'" in str(info.value)
    assert load_training_state(out / "checkpoint.pt")["step"] == 6
    assert not (out / "model.pt").exists() and not (out / "train_config.json").exists()


def test_save_functions_refuse_non_finite_tensors(tmp_path: Path) -> None:
    from wsss_kit.engine import save_model_weights
    from wsss_kit.errors import NumericalError

    path = tmp_path / "checkpoint.pt"
    save_training_state(path, {"step": 1, "model": {"w": torch.ones(3)}})
    with pytest.raises(NumericalError, match=r"checkpoint .*'optimizer\.state\.0\.momentum_buffer' \(1 inf of 3"):
        save_training_state(path, {"step": 2, "model": {"w": torch.ones(3)},
                               "optimizer": {"state": {0: {"momentum_buffer": torch.tensor([1, 2, float("inf")])}}}})
    assert load_training_state(path)["step"] == 1
    model = make_model(batchnorm=True)
    model.norm.running_var[2] = float("nan")
    with pytest.raises(NumericalError, match=r"'norm\.running_var' \(1 NaN of 8 values\)"):
        save_model_weights(tmp_path / "model.pt", model)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["checkpoint.pt"]


def test_an_old_non_finite_checkpoint_is_not_resumed(tmp_path: Path) -> None:
    from wsss_kit.errors import NumericalError

    with pytest.raises(Crash):
        train(make_model(batchnorm=True), ToyDataset(), cfg(), tmp_path, step_fn=crash_after(4))
    state = load_training_state(tmp_path / "checkpoint.pt")
    state["model"]["norm.running_var"][0] = float("inf")
    torch.save(state, tmp_path / "checkpoint.pt")  # as an older wsss_kit would have written it
    with pytest.raises(NumericalError, match=r"checkpoint .* \(step 3\) holds NaN or inf in 'norm\.running_var'.*delete"):
        train(make_model(batchnorm=True), ToyDataset(), cfg(), tmp_path)


def test_fp16_amp_skips_overflowing_steps_and_stops_when_it_never_recovers(tmp_path: Path) -> None:
    """GradScaler (here on CPU; the same code path as CUDA) skips a step with an inf gradient
    instead of failing; gradients that are inf at every scale stop training after
    MAX_SKIPPED_STEPS steps in a row."""
    from wsss_kit.engine.numerics import MAX_SKIPPED_STEPS
    from wsss_kit.errors import NumericalError

    model = make_model()
    result = train(model, ToyDataset(), cfg(steps=6, amp="fp16"), tmp_path / "once", step_fn=faulty_step("grad", at=3))
    assert result.steps == 6 and all(torch.isfinite(p).all() for p in model.parameters())
    state = torch.load(tmp_path / "once" / "model.pt", weights_only=True)
    assert all_finite_state(state)

    def always_inf(model: nn.Module, batch: dict[str, Any]) -> dict[str, torch.Tensor]:
        model.conv2.weight.register_hook(lambda g: torch.full_like(g, float("inf")))
        return model(batch["image"], batch["labels"])

    with pytest.raises(NumericalError) as info:
        train(make_model(), ToyDataset(), cfg(steps=40, amp="fp16", checkpoint_every=10), tmp_path / "never",
              step_fn=always_inf)
    msg = str(info.value)
    assert f"fp16 AMP skipped {MAX_SKIPPED_STEPS} steps in a row (1 to {MAX_SKIPPED_STEPS})" in msg
    assert "parameter 'conv2.weight'" in msg
    assert not (tmp_path / "never" / "model.pt").exists()


def test_amp_modes_in_the_config() -> None:
    assert TrainConfig(steps=1, amp="BF16").amp == "bf16" and TrainConfig(steps=1, amp="float16").amp == "fp16"
    assert TrainConfig(steps=1, amp=True).amp_dtype("cuda") == torch.float16
    assert TrainConfig(steps=1, amp=True).amp_dtype("cpu") == torch.bfloat16
    assert TrainConfig(steps=1, amp="bf16").amp_dtype("cuda") == torch.bfloat16
    assert TrainConfig(steps=1, amp=False).amp_dtype("cuda") is None


def test_training_removes_stale_temps_and_writes_with_the_umask(tmp_path: Path) -> None:
    import os
    import stat

    out = tmp_path / "run"
    out.mkdir()
    stale = out / ".checkpoint.pt.k3j_9x2a.tmp"
    stale.write_bytes(b"half a checkpoint")
    user = out / "my.notes.tmp"
    user.write_text("keep me")
    old = os.umask(0o027)
    try:
        train(make_model(), ToyDataset(), cfg(steps=2), out)
    finally:
        os.umask(old)
    assert not stale.exists() and user.read_text() == "keep me"
    for name in ("model.pt", "log.csv", "train_config.json"):
        assert stat.S_IMODE((out / name).stat().st_mode) == 0o640, name


_DDP_FAULTS = '''
import json, sys
import torch, torch.nn.functional as F
from torch import nn
from wsss_kit.engine import TrainConfig, get_rank, train
from wsss_kit.errors import NumericalError

class Net(nn.Module):
    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.conv1, self.norm, self.conv2 = nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8), nn.Conv2d(8, 3, 1)

    def forward(self, images, labels):
        logits = self.conv2(F.relu(self.norm(self.conv1(images)))).mean(dim=(2, 3))
        return {"loss": F.multilabel_soft_margin_loss(logits, labels)}

class Data:
    def __len__(self):
        return 16

    def __getitem__(self, i):
        return {"image": torch.rand(3, 8, 8), "labels": (torch.rand(3) > 0.5).float()}

def faulty(kind):
    calls = {"n": 0}
    def step(model, batch):
        calls["n"] += 1
        hit = calls["n"] == 3 and get_rank() == 1
        image = batch["image"] * (1e22 if hit and kind == "buffer" else 1.0)
        out = model(image, batch["labels"])
        if hit and kind == "loss_and_grads":
            return {"loss": out["loss"] * float("nan")}
        if hit and kind == "loss_only":
            return {"loss": out["loss"] + torch.tensor(float("nan"))}
        return out
    return step

seen = {}
for kind in ("loss_and_grads", "loss_only", "buffer"):
    config = TrainConfig(steps=6, batch_size=4, lr=0.05, checkpoint_every=2, device="cpu")
    try:
        train(Net(), Data(), config, f"{sys.argv[1]}/{kind}", step_fn=faulty(kind))
        seen[kind] = "finished"
    except NumericalError as exc:
        seen[kind] = str(exc)
with open(f"{sys.argv[1]}/rank{get_rank()}.json", "w") as fh:
    json.dump(seen, fh)
'''


def test_ddp_a_fault_on_one_process_stops_every_process(tmp_path: Path) -> None:
    """Under torchrun (2 CPU processes), a NaN loss or a non-finite buffer on one process stops
    both with a NumericalError at the same step (no process waits forever in a collective)."""
    import json
    import os
    import socket
    import subprocess
    import sys

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    script = tmp_path / "faults.py"
    script.write_text(_DDP_FAULTS)
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1", "CUDA_VISIBLE_DEVICES": ""}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2", "--master_addr=127.0.0.1",
           f"--master_port={port}", str(script), str(tmp_path)]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=240)
    assert proc.returncode == 0, proc.stderr[-4000:]
    rank0, rank1 = (json.loads((tmp_path / f"rank{r}.json").read_text()) for r in (0, 1))
    assert "non-finite loss at step 3" in rank1["loss_and_grads"]
    assert "non-finite gradient at step 3: parameter" in rank0["loss_and_grads"]
    for kind in ("loss_only", "buffer"):
        assert rank0[kind] == rank1[kind], kind
    assert "process 1: non-finite loss at step 3" in rank0["loss_only"]
    assert "process 1: non-finite buffer after step 3: 'norm.running_var'" in rank0["buffer"]
    assert "process 0" not in rank0["buffer"]
    for kind in ("loss_and_grads", "loss_only", "buffer"):
        ckpt = load_training_state(tmp_path / kind / "checkpoint.pt")
        assert ckpt["step"] == 2 and all_finite_state(ckpt), kind
        assert not (tmp_path / kind / "model.pt").exists()
