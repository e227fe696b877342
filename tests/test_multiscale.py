"""wsss_kit.multiscale.multiscale_flip: the one scale/flip loop, checked against the loop written out."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from wsss_kit.multiscale import View, multiscale_flip, scaled_size


def _net(x: torch.Tensor) -> torch.Tensor:
    # position-dependent and not mirror-symmetric, so a missing unflip shows
    ramp = torch.linspace(0, 1, x.shape[-1])
    return torch.stack([x[:, 0] * ramp, x[:, 1] - x[:, 2] * ramp, x.mean(1)], dim=1)


def test_scaled_size_roundings() -> None:
    assert scaled_size(37, 53, 0.5) == (18, 26)  # round(18.5) = 18 (banker's), round(26.5) = 26
    assert scaled_size(37, 53, 0.5, "floor") == (18, 26)
    assert scaled_size(37, 53, 1.5) == (56, 80) and scaled_size(37, 53, 1.5, "floor") == (55, 79)
    assert scaled_size(3, 3, 0.01) == (1, 1)
    assert scaled_size(10, 20, 2.0, lambda h, w, s: (h + 1, w + 2)) == (11, 22)
    with pytest.raises(ValueError, match="rounding must be one of 'round', 'floor'"):
        scaled_size(10, 10, 1.0, "ceil")


def test_one_view_is_the_function_itself() -> None:
    x = torch.rand(2, 3, 5, 7)
    assert torch.equal(multiscale_flip(_net, x), _net(x))


def test_flip_mean_is_the_mirror_average() -> None:
    x = torch.rand(2, 3, 5, 7)
    want = (_net(x) + _net(x.flip(-1)).flip(-1)) / 2
    assert torch.equal(multiscale_flip(_net, x, flip=True, aggregate="mean"), want)


@pytest.mark.parametrize("aggregate", ["sum", "mean", "max"])
@pytest.mark.parametrize("unflip", ["before_resize", "after_resize", "after_activation"])
def test_matches_the_loop_written_out(aggregate: str, unflip: str) -> None:
    x = torch.rand(2, 3, 9, 13)
    scales, size = (1.0, 0.5, 1.5), (9, 13)
    views = []
    for s in scales:
        xs = x if s == 1.0 else F.interpolate(x, size=(round(9 * s), round(13 * s)), mode="bilinear",
                                              align_corners=False)
        for flipped in (False, True):
            y = _net(xs.flip(-1) if flipped else xs).relu()
            if flipped and unflip == "before_resize":
                y = y.flip(-1)
            y = F.interpolate(y, size=size, mode="bilinear", align_corners=False) if y.shape[-2:] != size else y
            if flipped and unflip == "after_resize":
                y = y.flip(-1)
            y = y.softmax(1)
            views.append(y.flip(-1) if flipped and unflip == "after_activation" else y)
    if aggregate == "max":
        want = views[0]
        for v in views[1:]:
            want = torch.maximum(want, v)
    else:
        want = views[0]
        for v in views[1:]:
            want = want + v
        want = want / len(views) if aggregate == "mean" else want
    seen: list[View] = []

    def prepare(y: torch.Tensor, view: View) -> torch.Tensor:
        seen.append(view)
        return y.relu()

    got = multiscale_flip(_net, x, scales, True, size=size, prepare=prepare, activation=lambda y: y.softmax(1),
                          unflip=unflip, aggregate=aggregate)
    assert torch.equal(got, want)
    assert [(v.scale, v.flipped) for v in seen] == [(1.0, False), (1.0, True), (0.5, False), (0.5, True),
                                                    (1.5, False), (1.5, True)]
    assert seen[3].where == "scale 0.5 (flipped)"


def test_floor_rounding_and_align_corners_reach_the_input_resize() -> None:
    x = torch.rand(1, 3, 9, 13)
    sizes = []
    multiscale_flip(lambda v: sizes.append(tuple(v.shape[-2:])) or v, x, (1.5,), rounding="floor")
    assert sizes == [(13, 19)]
    got = multiscale_flip(lambda v: v, x, (1.5,), resize_align_corners=True)
    assert torch.equal(got, F.interpolate(x, size=(14, 20), mode="bilinear", align_corners=True))


def test_errors_name_the_problem() -> None:
    x = torch.rand(1, 3, 4, 4)
    with pytest.raises(ValueError, match=r"images must be \(B, C, H, W\); got shape \(3, 4, 4\)"):
        multiscale_flip(_net, x[0])
    with pytest.raises(ValueError, match="scales must be a non-empty sequence of positive numbers"):
        multiscale_flip(_net, x, (1.0, 0.0))
    with pytest.raises(ValueError, match="aggregate must be one of 'sum', 'mean', 'max'; got 'median'"):
        multiscale_flip(_net, x, aggregate="median")
    with pytest.raises(ValueError, match="unflip must be one of"):
        multiscale_flip(_net, x, unflip="never")
    with pytest.raises(ValueError, match=r"the head returned 2 classes at scale 0.5 but 3 before"):
        multiscale_flip(lambda v: _net(v)[:, : 3 if v.shape[-1] == 4 else 2], x, (1.0, 0.5), size=(4, 4),
                        name="the head")


def test_gradients_flow_through_fn() -> None:
    w = torch.ones(3, requires_grad=True)
    x = torch.rand(1, 3, 6, 6)
    multiscale_flip(lambda v: v * w[None, :, None, None], x, (1.0, 0.5), True, size=(6, 6)).sum().backward()
    assert w.grad is not None and torch.all(w.grad > 0)
