"""TensorBoard event files, the W&B adapter, loss curves and the `logging` config section of a run."""

from __future__ import annotations

import csv
import io
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from test_pipeline import tiny_config

from wsss_kit.config import apply_overrides
from wsss_kit.engine.loggers import TensorBoardLogger, WandbLogger, scalar_tags
from wsss_kit.errors import ConfigError
from wsss_kit.pipeline import run_pipeline, stage_logging
from wsss_kit.pipeline.validation import check_run_config

pytest.importorskip("tensorboard")
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator  # noqa: E402

LOGGED = ["cam.train.log_every=1", "head.train.log_every=1", "logging.images=2", "logging.images_every=2"]


def _events(folder: Path) -> EventAccumulator:
    acc = EventAccumulator(str(folder), size_guidance={"scalars": 0, "images": 0})
    acc.Reload()
    return acc


@pytest.fixture(scope="module")
def logged_run(tmp_path_factory):
    run_dir = tmp_path_factory.mktemp("logged")
    run_pipeline(tiny_config(LOGGED), run_dir)
    return run_dir


def test_every_training_stage_writes_scalars_and_pictures(logged_run):
    cam = _events(logged_run / "train_cam" / "tensorboard")
    assert set(cam.Tags()["scalars"]) == {"loss/total", "train/lr", "train/images_per_s"}
    assert [e.step for e in cam.Scalars("loss/total")] == [1, 2, 3]
    with open(logged_run / "train_cam" / "log.csv", newline="") as fh:
        losses = [float(r["loss"]) for r in csv.DictReader(fh)]
    assert [e.value for e in cam.Scalars("loss/total")] == pytest.approx(losses, rel=1e-6)
    assert all(e.value > 0 for e in cam.Scalars("train/images_per_s"))
    # pictures: at the first logged step, every images_every=2 steps, and the last step
    overlays = cam.Images("images/cam_overlays")
    assert [e.step for e in overlays] == [1, 2, 3]
    assert overlays[-1].height > 2 * 64 and overlays[-1].width > 2 * 64  # two images, image + CAM each
    # the run's config, once, as text
    config = cam.Tensors("text/config/text_summary")
    assert len(config) == 1 and b"cams/resnet_cam" in config[0].tensor_proto.string_val[0]
    head = _events(logged_run / "train_head" / "tensorboard")
    assert "loss/total" in head.Tags()["scalars"] and [e.step for e in head.Images("images/predictions")] == [1, 2]


def test_every_training_stage_draws_its_loss_curves(logged_run):
    for stage in ("train_cam", "train_head"):
        path = logged_run / stage / "loss_curves.png"
        with Image.open(path) as im:
            im.verify()
        with Image.open(path) as im:
            assert im.format == "PNG" and im.size[0] > 600 and im.size[1] > 300


def test_the_switch_turns_tensorboard_off_and_keeps_the_curves(tmp_path):
    run_pipeline(tiny_config(["logging.tensorboard=false"]), tmp_path, stages=["train_cam"])
    assert not (tmp_path / "train_cam" / "tensorboard").exists()
    assert (tmp_path / "train_cam" / "loss_curves.png").is_file()


def test_logging_does_not_change_what_is_trained(tmp_path):
    """Pictures are made in eval mode from un-augmented images: the loss curve is bit-equal without them."""
    logs = []
    for name, extra in (("on", ["logging.images_every=1", "cam.train.log_every=1"]),
                        ("off", ["logging.tensorboard=false", "cam.train.log_every=1"])):
        run_pipeline(tiny_config(extra), tmp_path / name, stages=["train_cam"])
        with open(tmp_path / name / "train_cam" / "log.csv", newline="") as fh:
            logs.append([(r["step"], r["loss"], r["lr"]) for r in csv.DictReader(fh)])
    assert logs[0] == logs[1] and len(logs[0]) == 3


@pytest.mark.parametrize("override, message", [
    ("logging.tensorbord=true", "logging.tensorbord: unknown key (did you mean 'tensorboard'?)"),
    ("logging.tensorboard=maybe", "logging.tensorboard must be true or false; got 'maybe'"),
    ("logging.images=-1", "logging.images must be an integer >= 0"),
    ("logging.wandb={projekt: x}", "logging.wandb.projekt: unknown key"),
])
def test_the_logging_section_is_validated_like_any_other(override, message):
    with pytest.raises(ConfigError, match=message.replace("(", r"\(").replace(")", r"\)").replace("?", r"\?")):
        check_run_config(apply_overrides(tiny_config(), [override]))


def test_asking_for_a_missing_package_is_an_error_before_any_work(monkeypatch, tmp_path):
    monkeypatch.setattr(stage_logging, "tensorboard_available", lambda: False)
    with pytest.raises(ConfigError, match="logging.tensorboard is true but the tensorboard package is not installed"):
        run_pipeline(tiny_config(["logging.tensorboard=true"]), tmp_path / "run")
    assert not (tmp_path / "run").exists()
    assert not stage_logging.tensorboard_enabled({})  # the default follows what is installed
    assert stage_logging.tensorboard_enabled({"logging": {"tensorboard": True}})


def test_scalar_tags():
    assert scalar_tags({"step": 3, "loss": 1.0, "cls": 0.5, "lr": 0.1, "seconds": 2.0, "images_per_s": 9.0}) == {
        "loss/total": 1.0, "loss/cls": 0.5, "train/lr": 0.1, "train/images_per_s": 9.0}


def test_a_resumed_run_logs_no_step_twice(tmp_path):
    """The writer opens with purge_step at its first step: the events an interrupted run wrote past
    the checkpoint are dropped when training resumes from it."""
    first = TensorBoardLogger(tmp_path)
    for step in (1, 2, 3, 4):
        first(step, {"loss": float(step)})
    first.close()
    resumed = TensorBoardLogger(tmp_path)  # resumed from a checkpoint at step 2
    for step in (3, 4, 5):
        resumed(step, {"loss": 10.0 * step})
    resumed.close()
    events = _events(tmp_path).Scalars("loss/total")
    assert [(e.step, e.value) for e in events] == [(1, 1.0), (2, 2.0), (3, 30.0), (4, 40.0), (5, 50.0)]


class _FakeWandb:
    """Records what the adapter asks of the wandb module."""

    def __init__(self):
        self.calls = []

    def init(self, **kwargs):
        self.calls.append(("init", kwargs))
        return self

    def log(self, data, step):
        self.calls.append(("log", step, dict(data)))

    def finish(self):
        self.calls.append(("finish",))

    class Image:
        def __init__(self, array):
            self.shape = np.asarray(array).shape


def test_the_wandb_adapter_sends_the_same_tags():
    fake = _FakeWandb()
    pictures = {"cam_overlays": np.zeros((4, 6, 3), np.uint8)}
    logger = WandbLogger({"project": "p"}, images=lambda: pictures, image_every=0, total_steps=2, module=fake)
    logger(1, {"loss": 1.0, "lr": 0.1, "seconds": 1.0})
    logger(2, {"loss": 0.5, "lr": 0.05, "seconds": 2.0})
    logger.close()
    assert fake.calls[0] == ("init", {"project": "p"})
    assert fake.calls[1] == ("log", 1, {"loss/total": 1.0, "train/lr": 0.1})
    step, data = fake.calls[2][1], fake.calls[2][2]
    assert step == 2 and data["loss/total"] == 0.5 and data["images/cam_overlays"].shape == (4, 6, 3)
    assert fake.calls[-1] == ("finish",)


def test_stage_loggers_follow_the_config(tmp_path):
    from wsss_kit.pipeline.context import RunContext

    ctx = RunContext(tiny_config(["logging.tensorboard=false", "logging.wandb={project: x}"]), tmp_path)
    loggers = stage_logging.stage_loggers(ctx, "train_cam", 10)
    assert [type(lg).__name__ for lg in loggers] == ["LossCurveWriter", "WandbLogger"]
    init = loggers[1].init
    assert init["project"] == "x" and init["name"] == f"{tmp_path.name}/train_cam"
    assert init["config"]["cam"]["model"]["type"] == "cams/resnet_cam"
    ctx = RunContext(tiny_config(["logging.tensorboard=true"]), tmp_path)
    assert [type(lg).__name__ for lg in stage_logging.stage_loggers(ctx, "train_cam", 10)] == [
        "LossCurveWriter", "TensorBoardLogger"]


def test_a_loss_curve_that_cannot_be_drawn_warns_and_never_fails_training(tmp_path):
    log = tmp_path / "log.csv"
    log.write_text("step,loss,lr,seconds\n1,0.5,0.1,1.0\n2,0.4,0.1,2.0\n")
    (tmp_path / "loss_curves.png").mkdir()  # the picture's path is taken: writing it fails
    writer = stage_logging.LossCurveWriter(log, "t")
    writer(2, {"loss": 0.4})
    with pytest.warns(UserWarning, match="loss_curves.png was not drawn"):
        writer.close()
    (tmp_path / "loss_curves.png").rmdir()
    writer.close()
    with Image.open(tmp_path / "loss_curves.png") as im:
        assert im.format == "PNG"


def test_large_images_are_shrunk_in_the_logged_pictures(tmp_path, monkeypatch):
    monkeypatch.setattr(stage_logging, "PICTURE_SIDE", 32)  # the run's 64 px images count as large now
    run_pipeline(tiny_config(["logging.images=2"]), tmp_path, stages=["train_cam", "cams", "seeds", "train_refiner",
                                                                     "pseudo_masks", "train_head"])
    for stage, tag in (("train_cam", "images/cam_overlays"), ("train_head", "images/predictions")):
        picture = _events(tmp_path / stage / "tensorboard").Images(tag)[-1]
        assert picture.height < 2 * 64, stage  # two rows of 32 px images (and the titles)
        with Image.open(io.BytesIO(picture.encoded_image_string)) as im:
            arr = np.asarray(im.convert("RGB"))
        if stage == "train_head":  # the pseudo-mask column (shrunk nearest-neighbour) is there
            assert arr.shape[1] > 3 * 32


def test_pictures_leave_the_model_mode_and_the_random_generators_as_they_were():
    import torch

    model = torch.nn.Sequential(torch.nn.Dropout(0.5))
    model.train()

    def draw():
        assert not model.training and not torch.is_grad_enabled()
        torch.rand(3)  # a plugin whose inference draws random numbers
        np.random.rand(2)
        return np.zeros((2, 2, 3), np.uint8)

    torch.manual_seed(0)
    np.random.seed(0)
    expected = (torch.rand(4), np.random.rand(4))
    torch.manual_seed(0)
    np.random.seed(0)
    assert set(stage_logging._eval_pictures(model, "tag", draw)()) == {"tag"}
    assert model.training
    assert torch.equal(torch.rand(4), expected[0]) and np.array_equal(np.random.rand(4), expected[1])
