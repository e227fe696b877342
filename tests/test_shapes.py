"""wsss_kit.shapes.check_shape: what matches, what it returns, and the message it raises."""

from __future__ import annotations

import pytest
import torch

from wsss_kit.shapes import check_shape


def test_returns_the_sizes_of_the_names() -> None:
    assert check_shape(torch.zeros(2, 3, 5, 7), "B 3 H W", "images") == {"B": 2, "H": 5, "W": 7}
    assert check_shape(torch.zeros(2, 4), "B C", "labels", sizes={"B": 2}) == {"B": 2, "C": 4}
    assert check_shape(torch.zeros(4, 6), "* C", "x") == {"C": 6}


def test_a_name_takes_one_size() -> None:
    assert check_shape(torch.zeros(3, 3), "N N", "square") == {"N": 3}
    with pytest.raises(ValueError, match=r"^square must be \(N, N\); got shape \(3, 4\)$"):
        check_shape(torch.zeros(3, 4), "N N", "square")


def test_the_message_names_the_argument_the_expected_and_the_actual_shape() -> None:
    with pytest.raises(ValueError) as err:
        check_shape(torch.zeros(2, 4, 8, 8), "B 3 H W", "images", note="RGB in [0, 1]")
    assert str(err.value) == "images must be (B, 3, H, W) RGB in [0, 1]; got shape (2, 4, 8, 8)"
    with pytest.raises(ValueError) as err:
        check_shape(torch.zeros(3, 5), "B C", "labels", sizes={"B": 2})
    assert str(err.value) == "labels must be (B, C) with B = 2; got shape (3, 5)"
    with pytest.raises(ValueError) as err:
        check_shape(torch.zeros(7), "2", "weights")
    assert str(err.value) == "weights must be (2,); got shape (7,)"


def test_alternatives() -> None:
    assert check_shape(torch.zeros(2, 5, 6), "B H W | B 1 H W", "boundary") == {"B": 2, "H": 5, "W": 6}
    assert check_shape(torch.zeros(2, 1, 5, 6), "B H W | B 1 H W", "boundary") == {"B": 2, "H": 5, "W": 6}
    with pytest.raises(ValueError, match=r"boundary must be \(B, H, W\) or \(B, 1, H, W\); got shape \(2, 3, 5, 6\)"):
        check_shape(torch.zeros(2, 3, 5, 6), "B H W | B 1 H W", "boundary")


def test_not_a_tensor_and_a_bad_pattern() -> None:
    with pytest.raises(TypeError, match=r"images must be a torch.Tensor \(B, 3, H, W\); got list"):
        check_shape([[0.0]], "B 3 H W", "images")
    with pytest.raises(ValueError, match="empty"):
        check_shape(torch.zeros(1), "B | ", "x")
