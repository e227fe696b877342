import time

import pytest
import torch

from wsss_kit import cams_to_seeds
from wsss_kit.metrics import (
    ConfusionMatrix,
    ThresholdSweep,
    confusion_matrix,
    format_iou_table,
    format_stage_table,
    iou_from_confusion,
)

VOC_NAMES = (
    "background aeroplane bicycle bird boat bottle bus car cat chair cow diningtable dog horse "
    "motorbike person pottedplant sheep sofa train tvmonitor"
).split()


# ---------------------------------------------------------------- confusion matrix
def test_confusion_matrix_hand_computed_k3():
    target = torch.tensor([[0, 0, 1, 1], [2, 2, 2, 255]])
    pred = torch.tensor([[0, 1, 1, 1], [2, 0, 2, 1]])
    cm = confusion_matrix(pred, target, 3)
    assert cm.dtype == torch.int64
    expected = torch.tensor([[1, 1, 0], [0, 2, 0], [1, 0, 2]])
    assert torch.equal(cm, expected)
    iou = iou_from_confusion(cm)
    # class 0: tp 1, fp 1, fn 1 -> 1/3; class 1: tp 2, fp 1 -> 2/3; class 2: tp 2, fn 1 -> 2/3
    assert torch.allclose(iou, torch.tensor([1 / 3, 2 / 3, 2 / 3], dtype=torch.float64))


def test_ignored_pixels_are_not_counted_even_with_bad_prediction():
    target = torch.tensor([0, 255, 1])
    pred = torch.tensor([0, 7, 1])  # 7 is out of range but sits on an ignored pixel
    cm = confusion_matrix(pred, target, 2)
    assert cm.sum() == 2
    assert torch.equal(cm, torch.tensor([[1, 0], [0, 1]]))


def test_absent_class_is_nan_and_left_out_of_miou():
    target = torch.tensor([0, 0, 1, 1])
    pred = torch.tensor([0, 1, 1, 1])
    m = ConfusionMatrix(4)
    m.update(pred, target)
    out = m.compute()
    assert out["iou"][2].isnan() and out["iou"][3].isnan()
    assert out["miou"] == pytest.approx((0.5 + 2 / 3) / 2)
    assert out["pixel_accuracy"] == pytest.approx(0.75)
    assert out["precision"][1] == pytest.approx(2 / 3)
    assert out["recall"][0] == pytest.approx(0.5)
    assert out["precision"][3].isnan()


def test_class_only_in_prediction_has_zero_iou():
    cm = confusion_matrix(torch.tensor([2, 0]), torch.tensor([0, 0]), 3)
    iou = iou_from_confusion(cm)
    assert iou[2] == 0 and iou[1].isnan() and iou[0] == 0.5


def test_out_of_range_prediction_raises_naming_values():
    with pytest.raises(ValueError, match=r"outside \[0, 3\).*255"):
        confusion_matrix(torch.tensor([0, 255, 5]), torch.tensor([0, 1, 2]), 3)
    with pytest.raises(ValueError, match="5"):
        confusion_matrix(torch.tensor([0, 1, 5]), torch.tensor([0, 1, 2]), 3)
    with pytest.raises(ValueError, match="target"):
        confusion_matrix(torch.tensor([0, 1]), torch.tensor([0, 9]), 3)


def test_bad_shapes_and_dtypes_raise():
    with pytest.raises(ValueError, match="shape"):
        confusion_matrix(torch.zeros(2, 3, dtype=torch.long), torch.zeros(3, 2, dtype=torch.long), 2)
    with pytest.raises(ValueError, match="argmax"):
        confusion_matrix(torch.zeros(2, 3), torch.zeros(2, 3, dtype=torch.long), 2)


def test_accumulation_over_batches_equals_single_batch_and_merge():
    g = torch.Generator().manual_seed(0)
    target = torch.randint(0, 5, (6, 9, 7), generator=g)
    target[:, 0, :] = 255
    pred = torch.randint(0, 5, (6, 9, 7), generator=g)
    whole = ConfusionMatrix(5)
    whole.update(pred, target)
    parts = ConfusionMatrix(5)
    for i in range(0, 6, 2):
        parts.update(pred[i : i + 2], target[i : i + 2])
    assert torch.equal(whole.matrix, parts.matrix)
    a, b = ConfusionMatrix(5), ConfusionMatrix(5)
    a.update(pred[:3], target[:3])
    b.update(pred[3:], target[3:])
    assert torch.equal((a + b).matrix, whole.matrix)
    assert torch.equal(a.merge(b).matrix, whole.matrix)
    assert whole.compute()["miou"] == pytest.approx(parts.compute()["miou"])
    with pytest.raises(ValueError, match="classes"):
        a.merge(ConfusionMatrix(4))


def test_update_accepts_scores_and_reset():
    target = torch.tensor([[0, 1], [1, 2]])
    scores = torch.nn.functional.one_hot(torch.tensor([[0, 1], [2, 2]]), 3).permute(2, 0, 1)[None].float()
    m = ConfusionMatrix(3)
    m.update(scores, target[None])
    assert m.matrix.trace() == 3
    m.reset()
    assert m.matrix.sum() == 0


def test_all_reduce_without_distributed_is_idempotent():
    m = ConfusionMatrix(3)
    m.update(torch.tensor([0, 1, 2]), torch.tensor([0, 1, 1]))
    before = m.matrix.clone()
    m.all_reduce().all_reduce()
    assert torch.equal(m.matrix, before)
    m.update(torch.tensor([2]), torch.tensor([2]))
    m.all_reduce()
    assert m.matrix.sum() == 4


def test_state_dict_roundtrip():
    m = ConfusionMatrix(3)
    m.update(torch.tensor([0, 1, 2]), torch.tensor([0, 1, 1]))
    n = ConfusionMatrix(3)
    n.load_state_dict(m.state_dict())
    assert torch.equal(n.matrix, m.matrix)


# ---------------------------------------------------------------- threshold sweep
def _naive_sweep(cams, target, thresholds, k):
    return torch.stack([confusion_matrix(cams_to_seeds(cams, float(t)), target, k) for t in thresholds])


def test_threshold_sweep_matches_per_threshold_loop():
    g = torch.Generator().manual_seed(1)
    cams = torch.rand(3, 4, 16, 12, generator=g)
    cams = (cams * 100).round() / 100  # values exactly on thresholds exercise the tie rule
    target = torch.randint(0, 5, (3, 16, 12), generator=g)
    target[0, :2] = 255
    sweep = ThresholdSweep(4)
    sweep.update(cams[:2], target[:2])
    sweep.update(cams[2:], target[2:])
    expected = _naive_sweep(cams, target, sweep.thresholds, 5)
    assert torch.equal(sweep.matrices, expected)
    mious = sweep.mious()
    for i, (t, miou) in enumerate(sweep.results()):
        naive = torch.nanmean(iou_from_confusion(expected[i]))
        assert miou == pytest.approx(float(naive))
        assert t == pytest.approx(i / 100)
    assert mious.shape == (60,)


def test_threshold_sweep_labels_zero_absent_classes():
    cams = torch.rand(2, 3, 8, 8, generator=torch.Generator().manual_seed(2))
    labels = torch.tensor([[1.0, 0, 1], [0, 1, 0]])
    target = torch.randint(0, 4, (2, 8, 8), generator=torch.Generator().manual_seed(3))
    sweep = ThresholdSweep(3, thresholds=[0.1, 0.5])
    sweep.update(cams, target, labels=labels)
    expected = _naive_sweep(cams * labels[:, :, None, None], target, [0.1, 0.5], 4)
    assert torch.equal(sweep.matrices, expected)


def test_threshold_sweep_best_picks_constructed_threshold():
    # Object pixels have CAM 0.5, background pixels CAM 0.3: any threshold in [0.3, 0.5) is perfect.
    target = torch.zeros(1, 8, 8, dtype=torch.long)
    target[0, 2:6, 2:6] = 1
    cams = torch.full((1, 1, 8, 8), 0.3)
    cams[0, 0, 2:6, 2:6] = 0.5
    sweep = ThresholdSweep(1, thresholds=torch.arange(0, 60) / 100)
    sweep.update(cams, target)
    t, miou = sweep.best()
    assert t == pytest.approx(0.30)  # the lowest perfect one (ties with 0.3 go to background)
    assert miou == pytest.approx(1.0)
    best = sweep.confusion(t).compute()
    assert best["miou"] == pytest.approx(1.0) and best["matrix"].sum() == 64
    with pytest.raises(ValueError, match="not swept"):
        sweep.confusion(0.805)
    res = sweep.results()
    assert res[29][1] < 1.0 and res[50][1] < 1.0 and res[49][1] == pytest.approx(1.0)


def test_threshold_sweep_is_fast_for_60_thresholds():
    cams = torch.rand(8, 20, 128, 128)
    target = torch.randint(0, 21, (8, 128, 128))
    sweep = ThresholdSweep(20)
    start = time.perf_counter()
    sweep.update(cams, target)
    assert time.perf_counter() - start < 2.0
    assert sweep.matrices.sum() == 60 * 8 * 128 * 128


def test_threshold_sweep_errors():
    with pytest.raises(RuntimeError, match="no pixels"):
        ThresholdSweep(2).best()
    with pytest.raises(ValueError, match="num_classes=2"):
        ThresholdSweep(2).update(torch.rand(1, 3, 4, 4), torch.zeros(1, 4, 4, dtype=torch.long))
    with pytest.raises(ValueError, match="target has shape"):
        ThresholdSweep(2).update(torch.rand(1, 2, 4, 4), torch.zeros(1, 5, 4, dtype=torch.long))


# ---------------------------------------------------------------- tables
def test_iou_table_text_wide_layout_numbers():
    rows = {"CAM": [0.8, 0.5, float("nan")], "CRF": torch.tensor([0.9, 0.61234, 0.7])}
    text = format_iou_table(rows, ["background", "aeroplane", "cat"])
    lines = text.splitlines()
    assert lines[0].split() == ["method", "bkg", "aero", "cat", "mIoU"]
    assert lines[2].split() == ["CAM", "80.0", "50.0", "-", "65.0"]
    assert lines[3].split() == ["CRF", "90.0", "61.2", "70.0", "73.7"]


def test_iou_table_voc_transposes_when_too_wide():
    iou = [i / 100 for i in range(21)]
    text = format_iou_table({"a very long method name": iou, "other": iou}, VOC_NAMES, max_width=100)
    lines = text.splitlines()
    assert max(len(line) for line in lines) <= 100
    assert lines[0].split()[0] == "class"
    assert lines[2].split() == ["bkg", "0.0", "0.0"]
    assert lines[-1].split() == ["mIoU", "10.0", "10.0"]
    assert any(line.split()[0] == "mbike" for line in lines)
    wide = format_iou_table({"m": iou}, VOC_NAMES, transpose=False)
    assert wide.splitlines()[0].split()[-1] == "mIoU"


def test_iou_table_markdown_and_csv():
    rows = {"seeds": {"iou": torch.tensor([0.5, 0.25])}}
    md = format_iou_table(rows, ["background", "dog"], fmt="markdown")
    assert md.splitlines()[0] == "| method | bkg | dog | mIoU |"
    assert md.splitlines()[2] == "| seeds | 50.0 | 25.0 | 37.5 |"
    csv_text = format_iou_table(rows, ["background", "dining table"], fmt="csv", decimals=2)
    assert csv_text.splitlines() == ["method,bkg,dining table,mIoU", "seeds,50.00,25.00,37.50"]


def test_iou_table_errors():
    with pytest.raises(ValueError, match="'x' has 2 IoU values but there are 3"):
        format_iou_table({"x": [0.1, 0.2]}, ["background", "a", "b"])
    with pytest.raises(ValueError, match="unknown table format"):
        format_iou_table({"x": [0.1]}, ["background"], fmt="html")


def test_stage_table():
    text = format_stage_table([("cams", 0.482, {"threshold": 0.15}), ("pseudo masks", 0.6031, {"s": 12}), ("eval", None)])
    lines = text.splitlines()
    assert lines[0].split() == ["stage", "mIoU", "threshold", "s"]
    assert lines[2].split() == ["cams", "48.2", "0.15", "-"]
    assert lines[3].split() == ["pseudo", "masks", "60.3", "-", "12"]
    assert lines[4].split() == ["eval", "-", "-", "-"]


# ---------------------------------------------------------------- distributed (2 CPU processes, gloo)
def _distributed_worker(rank: int, world: int, init_file: str, out_dir: str) -> None:
    import torch.distributed as dist

    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=world)
    try:
        g = torch.Generator().manual_seed(10)
        pred = torch.randint(0, 3, (4, 5, 5), generator=g)
        target = torch.randint(0, 3, (4, 5, 5), generator=g)
        cm = ConfusionMatrix(3)
        cm.update(pred[rank::world], target[rank::world])  # each rank sees its own samples
        cm.all_reduce()
        cm.all_reduce()  # repeated: must not double-count
        sweep = ThresholdSweep(2, thresholds=[0.2, 0.6])
        cams = torch.rand(4, 2, 5, 5, generator=g)
        sweep.update(cams[rank::world], target[rank::world])
        sweep.all_reduce()
        torch.save({"cm": cm.matrix, "sweep": sweep.matrices}, f"{out_dir}/rank{rank}.pt")
    finally:
        dist.destroy_process_group()


def test_all_reduce_sums_over_processes(tmp_path):
    import torch.multiprocessing as mp

    mp.spawn(_distributed_worker, args=(2, str(tmp_path / "init"), str(tmp_path)), nprocs=2, join=True)
    g = torch.Generator().manual_seed(10)
    pred = torch.randint(0, 3, (4, 5, 5), generator=g)
    target = torch.randint(0, 3, (4, 5, 5), generator=g)
    cams = torch.rand(4, 2, 5, 5, generator=g)
    sweep = ThresholdSweep(2, thresholds=[0.2, 0.6])
    sweep.update(cams, target)
    for rank in range(2):
        got = torch.load(tmp_path / f"rank{rank}.pt", weights_only=True)
        assert torch.equal(got["cm"], confusion_matrix(pred, target, 3))
        assert torch.equal(got["sweep"], sweep.matrices)
