"""Determinism of whole runs: the same config and seed give bit-equal files.

What is compared (tiny_runs.differences): every array of every CAM ``.npz`` (dtype, shape and
bits), the pixels of every seed, pseudo-mask and prediction PNG, every tensor of the
``train_cam`` / ``train_head`` checkpoints, the training logs and results.json / manifest.json
(every mIoU, IoU, threshold and loss; clock readings left out).

On CPU, training is bit-equal for the same torch thread count only: oneDNN's convolution backward
and torch's parallel reductions (the loss's mean, a bias gradient) split their sums by thread, so
1 and 2 threads differ by float rounding after the first step (docs/reliability.md, section 7).
Inference does not depend on the thread count: from the same checkpoints, CAMs, seeds, dense-CRF
pseudo masks and predictions are bit-equal with 1 and 2 threads.
"""

from __future__ import annotations

import shutil

import numpy as np
from tiny_runs import compared_files, differences, run_to_completion


def test_two_runs_are_bit_equal(tiny_reference, tmp_path):
    files = {str(p) for p in compared_files(tiny_reference)}
    for wanted in ("cams/train", "cams/eval", "seeds/train", "pseudo_masks/eval", "predictions/eval"):
        assert any(f.startswith(wanted + "/") for f in files), f"nothing of {wanted} compared"
    assert {"train_cam/model.pt", "train_head/model.pt", "results.json"} <= files
    again = run_to_completion(tmp_path / "again", threads=1)
    assert differences(tiny_reference, again) == []


def test_inference_is_bit_equal_with_another_thread_count(tiny_reference, tmp_path):
    """Training with 1 thread, every inference stage (CAMs, seeds, dense CRF, head predictions,
    scores) with 2: the files equal the all-1-thread run's."""
    out = tmp_path / "mixed"
    for threads, stages in ((1, "train_cam"), (2, "cams,seeds,train_refiner,pseudo_masks"), (1, "train_head"),
                            (2, "eval")):
        run_to_completion(out, threads=threads, extra=(), stages=stages)
    assert differences(tiny_reference, out) == []


def test_the_comparison_sees_one_changed_value(tiny_reference, tmp_path):
    """tiny_runs.differences is not vacuous: one CAM value one step away from the original is found."""
    shutil.copytree(tiny_reference / "cams", tmp_path / "a" / "cams")
    shutil.copytree(tiny_reference / "cams", tmp_path / "b" / "cams")
    path = sorted((tmp_path / "b" / "cams" / "train").glob("*.npz"))[0]
    with np.load(path) as z:
        arrays = {k: z[k].copy() for k in z.files}
    cams = arrays["cams"]
    cams[(0,) * cams.ndim] = np.nextafter(cams[(0,) * cams.ndim], np.float16(2))
    np.savez(path, **arrays)
    assert differences(tmp_path / "a", tmp_path / "b") == [f"cams/train/{path.name}[cams] differs"]
