"""The random-walk core shared by PSA (AffinityNet) and IRNet, on hand-built affinities."""

from __future__ import annotations

import pytest
import torch

from wsss_affinity.random_walk import (
    boundary_affinity,
    dense_affinity,
    feature_affinity,
    irn_random_walk,
    line_path,
    path_indices,
    psa_random_walk,
    random_walk,
    search_offsets,
    sparse_random_walk,
    stationary_mean,
    transition_matrix,
)


def _brute_force_pairs(radius, h, w):
    pairs = set()
    for i in range(h * w):
        for j in range(i + 1, h * w):
            (yi, xi), (yj, xj) = divmod(i, w), divmod(j, w)
            if (yi - yj) ** 2 + (xi - xj) ** 2 < radius**2:
                pairs.add((i, j))
    return pairs


def test_search_offsets_half_disc():
    offsets = search_offsets(5)
    assert len(offsets) == 34
    assert offsets[:4] == [(0, 1), (0, 2), (0, 3), (0, 4)]
    assert offsets[4] == (1, -4)
    assert all(dy * dy + dx * dx < 25 and (dy > 0 or dx > 0) for dy, dx in offsets)
    assert search_offsets(2) == [(0, 1), (1, -1), (1, 0), (1, 1)]


@pytest.mark.parametrize("radius,h,w", [(2, 3, 4), (3, 5, 6), (5, 7, 9), (5, 2, 3)])
def test_path_indices_cover_every_pair_once(radius, h, w):
    src, dst = path_indices(radius, h, w)
    assert src.dtype == dst.dtype == torch.int64 and src.shape == dst.shape
    pairs = [(min(a, b), max(a, b)) for a, b in zip(src.tolist(), dst.tolist())]
    assert len(pairs) == len(set(pairs))
    assert set(pairs) == _brute_force_pairs(radius, h, w)


def test_path_indices_psa_cropped_layout():
    radius, h, w = 3, 5, 7
    src, dst = path_indices(radius, h, w, cover_border=False)
    n_offsets = len(search_offsets(radius))
    assert src.numel() == n_offsets * (h - radius + 1) * (w - 2 * radius + 2)
    ys, xs = src // w, src % w
    assert ys.max() < h - radius + 1 and xs.min() >= radius - 1 and xs.max() < w - radius + 1
    # offset-major: the first block is offset (0, 1) over the cropped sources in raster order
    block = (h - radius + 1) * (w - 2 * radius + 2)
    assert torch.equal(dst[:block], src[:block] + 1)
    cropped = {(min(a, b), max(a, b)) for a, b in zip(src.tolist(), dst.tolist())}
    assert cropped < _brute_force_pairs(radius, h, w)  # PSA misses border-band pairs
    with pytest.raises(ValueError, match="cropped layout"):
        path_indices(5, 4, 20, cover_border=False)


def test_bad_radius_raises():
    with pytest.raises(ValueError, match="radius must be an int >= 2"):
        path_indices(1, 4, 4)


def test_line_path():
    assert line_path(0, 3) == [(0, 3), (0, 2), (0, 1), (0, 0)]
    assert line_path(2, 0) == [(2, 0), (1, 0), (0, 0)]
    diag = line_path(2, 2)
    assert (0, 0) in diag and (1, 1) in diag and (2, 2) == diag[0]
    assert (0, 2) not in diag and (2, 0) not in diag  # distance sqrt(2)·... ≥ 1 from the line
    assert set(line_path(1, -2)) >= {(0, 0), (1, -2)}
    with pytest.raises(ValueError):
        line_path(0, 0)


def test_feature_affinity_hand_computed():
    features = torch.tensor([[[[0.0, 1.0, 3.0]], [[0.0, 1.0, 1.0]]]])  # (1, 2, 1, 3)
    aff = feature_affinity(features, radius=2)
    src, dst = path_indices(2, 1, 3)
    assert src.tolist() == [0, 1] and dst.tolist() == [1, 2]
    expected = torch.tensor([[torch.exp(torch.tensor(-(1.0 + 1.0) / 2)), torch.exp(torch.tensor(-(2.0 + 0.0) / 2))]])
    assert torch.allclose(aff, expected)


def test_boundary_affinity_is_one_minus_max_along_path():
    boundary = torch.tensor([[[0.0, 0.2, 1.0, 0.0, 0.0]]])  # (1, 1, 5)
    aff = boundary_affinity(boundary, radius=3)
    src, dst = path_indices(3, 1, 5)
    got = {(s, d): a for s, d, a in zip(src.tolist(), dst.tolist(), aff[0].tolist())}
    assert got[(0, 1)] == pytest.approx(0.8) and got[(0, 2)] == 0.0 and got[(1, 3)] == 0.0
    assert got[(3, 4)] == 1.0 and got[(2, 3)] == 0.0
    assert torch.equal(boundary_affinity(boundary[:, None], radius=3), aff)


def test_affinities_gradcheck():
    torch.manual_seed(0)
    f = torch.randn(1, 2, 3, 4, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda x: feature_affinity(x, radius=2), (f,))
    b = torch.rand(1, 3, 4, dtype=torch.float64)
    b = (b + torch.arange(12, dtype=torch.float64).view(1, 3, 4) * 1e-2).requires_grad_(True)  # no ties
    assert torch.autograd.gradcheck(lambda x: boundary_affinity(x, radius=2), (b,))


def test_dense_affinity_symmetric_with_unit_diagonal():
    torch.manual_seed(0)
    aff = torch.rand(2, path_indices(3, 3, 4)[0].numel())
    dense = dense_affinity(aff, 3, 4, radius=3)
    assert dense.shape == (2, 12, 12)
    assert torch.equal(dense, dense.transpose(1, 2))
    assert torch.equal(torch.diagonal(dense, dim1=1, dim2=2), torch.ones(2, 12))
    assert dense[0, 0, 11] == 0  # (0,0)–(2,3): distance² 13 ≥ 9, not paired
    with pytest.raises(ValueError, match="pair_affinity must be"):
        dense_affinity(aff[:, :-1], 3, 4, radius=3)


def test_transition_matrix_column_stochastic_and_squaring():
    torch.manual_seed(0)
    a = torch.rand(5, 5, dtype=torch.float64)
    a = (a + a.T) / 2
    t0 = transition_matrix(a, beta=2.0, log_t=0)
    assert torch.allclose(t0.sum(0), torch.ones(5, dtype=torch.float64))
    assert torch.allclose(t0, a**2 / (a**2).sum(0, keepdim=True))
    t2 = transition_matrix(a, beta=2.0, log_t=2)
    assert torch.allclose(t2, t0 @ t0 @ t0 @ t0)
    with pytest.raises(ValueError, match="log_t"):
        transition_matrix(a, log_t=-1)


def _two_region_row():
    """1×6 row, radius 2 (neighbours only); pixels 0–2 and 3–5 are joined, 2–3 has affinity 0."""
    src, dst = path_indices(2, 1, 6)
    pair = torch.tensor([[0.0 if (s, d) == (2, 3) else 1.0 for s, d in zip(src.tolist(), dst.tolist())]])
    return dense_affinity(pair, 1, 6, radius=2)


def test_walk_keeps_regions_apart_and_reaches_stationary_value():
    affinity = _two_region_row().double()
    trans = transition_matrix(affinity, beta=8.0, log_t=10)
    cams = torch.tensor([[[[0.9, 0.3, 0.6, 0.0, 0.0, 0.0]], [[0.0, 0.0, 0.0, 0.2, 1.0, 0.5]]]], dtype=torch.float64)
    walked = random_walk(cams, trans)
    assert walked.shape == cams.shape
    # no mass crosses the zero-affinity boundary
    assert torch.equal(walked[0, 1, 0, :3], torch.zeros(3, dtype=torch.float64))
    assert torch.equal(walked[0, 0, 0, 3:], torch.zeros(3, dtype=torch.float64))
    # each region converges to its degree-weighted mean: degrees 2, 3, 2 (self + neighbours)
    deg = torch.tensor([2.0, 3.0, 2.0], dtype=torch.float64)
    left = stationary_mean(cams[0, 0, 0, :3], deg)
    right = stationary_mean(cams[0, 1, 0, 3:], deg)
    assert left == pytest.approx((2 * 0.9 + 3 * 0.3 + 2 * 0.6) / 7)
    assert torch.allclose(walked[0, 0, 0, :3], left.expand(3))
    assert torch.allclose(walked[0, 1, 0, 3:], right.expand(3))
    # labels survive: the argmax is class 0 on the left, class 1 on the right
    assert walked[0].argmax(0)[0].tolist() == [0, 0, 0, 1, 1, 1]


def test_uniform_affinity_diffuses_to_the_mean_in_one_step():
    pair = torch.ones(1, path_indices(3, 2, 2)[0].numel())  # radius 3 joins all 4 pixels
    trans = transition_matrix(dense_affinity(pair, 2, 2, radius=3), beta=10.0, log_t=0)
    maps = torch.tensor([[[[1.0, 2.0], [3.0, 6.0]]]])
    assert torch.allclose(random_walk(maps, trans), torch.full((1, 1, 2, 2), 3.0))
    # a shared (N, N) transition broadcasts over the batch
    assert torch.allclose(random_walk(maps.repeat(2, 1, 1, 1), trans[0]), torch.full((2, 1, 2, 2), 3.0))


def test_random_walk_shape_errors():
    with pytest.raises(ValueError, match="transition must be"):
        random_walk(torch.rand(1, 2, 3, 3), torch.rand(8, 8))
    with pytest.raises(ValueError, match="maps must be"):
        random_walk(torch.rand(2, 3, 3), torch.rand(9, 9))


@pytest.mark.parametrize("h,w", [(4, 5), (6, 6)])
def test_psa_random_walk_shapes_background_and_gradients(h, w):
    torch.manual_seed(0)
    feats = torch.randn(2, 3, h, w, requires_grad=True)
    cams = torch.rand(2, 4, h, w)
    out = psa_random_walk(cams, feats, beta=2.0, log_t=2, radius=3)
    assert out.shape == (2, 5, h, w)
    out.sum().backward()
    assert feats.grad is not None and torch.isfinite(feats.grad).all()
    # a uniform background score stays uniform (columns of T sum to 1 … rows of x·T average)
    assert torch.allclose(out[:, 0], torch.full((2, h, w), 0.39), atol=1e-5)
    powered = psa_random_walk(cams, feats.detach(), radius=3, alpha=12)
    assert powered.shape == (2, 5, h, w)
    with pytest.raises(ValueError, match="cams must be"):
        psa_random_walk(torch.rand(2, 4, h + 1, w), feats)


def test_irn_random_walk_boundary_blocks_propagation():
    # 3×6 grid, a full-height boundary wall at column 2; the class lives left of the wall
    boundary = torch.zeros(1, 3, 6)
    boundary[:, :, 2] = 1.0
    cams = torch.zeros(1, 1, 3, 6)
    cams[0, 0, :, 0] = 1.0
    out = irn_random_walk(cams, boundary, radius=3, bg_threshold=0.25)
    assert out.shape == (1, 2, 3, 6)
    assert torch.allclose(out[:, 0], torch.full((1, 3, 6), 0.25))
    assert out[0, 1].max() == pytest.approx(1.0)  # normalised by the image maximum
    assert torch.equal(out[0, 1, :, 3:], torch.zeros(3, 3))  # nothing crosses the wall
    assert out[0].argmax(0)[:, :2].eq(1).all() and out[0].argmax(0)[:, 3:].eq(0).all()


def test_psa_random_walk_background_override():
    torch.manual_seed(0)
    feats, cams = torch.randn(1, 2, 4, 4), torch.rand(1, 2, 4, 4)
    bg = torch.full((1, 1, 4, 4), 0.2)
    out = psa_random_walk(cams, feats, radius=2, background=bg, bg_threshold=None)
    assert torch.allclose(out[:, :1], bg, atol=1e-6)
    with pytest.raises(ValueError, match="background must be"):
        psa_random_walk(cams, feats, radius=2, background=bg[..., :3])
    with pytest.raises(ValueError, match="needs alpha"):
        psa_random_walk(cams, feats, radius=2, bg_threshold=None)


@pytest.mark.parametrize("cover_border", [True, False])
def test_boundary_affinity_matches_per_pair_definition(cover_border):
    torch.manual_seed(0)
    h, w, radius = 6, 11, 4
    boundary = torch.rand(2, h, w)
    aff = boundary_affinity(boundary, radius, cover_border)
    src, dst = path_indices(radius, h, w, cover_border)
    assert aff.shape == (2, src.numel())
    for m in range(0, src.numel(), 7):
        (ys, xs), (yd, xd) = divmod(int(src[m]), w), divmod(int(dst[m]), w)
        path = [(ys + py, xs + px) for py, px in line_path(yd - ys, xd - xs)]
        expected = 1 - torch.stack([boundary[:, y, x] for y, x in path]).amax(0)
        assert torch.allclose(aff[:, m], expected), (m, path)
    feats = torch.randn(2, 3, h, w)
    faff = feature_affinity(feats, radius, cover_border)
    flat = feats.flatten(2)
    assert torch.allclose(faff, torch.exp(-(flat[:, :, src] - flat[:, :, dst]).abs().mean(1)))


@pytest.mark.parametrize("cover_border", [True, False])
def test_sparse_walk_equals_dense_walk(cover_border):
    torch.manual_seed(0)
    h, w, radius = 5, 7, 3
    feats = torch.randn(2, 3, h, w, dtype=torch.float64)
    maps = torch.rand(2, 4, h, w, dtype=torch.float64)
    pair = feature_affinity(feats, radius, cover_border)
    dense = random_walk(maps, transition_matrix(dense_affinity(pair, h, w, radius, cover_border), 3.0, 3))
    sparse = sparse_random_walk(maps, pair, radius, 3.0, 3, cover_border)
    assert torch.allclose(sparse, dense, atol=1e-10)
    cams = torch.rand(1, 2, h, w)
    assert torch.allclose(psa_random_walk(cams, feats[:1].float(), radius=radius, log_t=2, sparse=True),
                          psa_random_walk(cams, feats[:1].float(), radius=radius, log_t=2), atol=1e-5)
    boundary = torch.rand(1, h, w)
    assert torch.allclose(irn_random_walk(cams, boundary, radius=radius, exp_times=3, sparse=True),
                          irn_random_walk(cams, boundary, radius=radius, exp_times=3), atol=1e-5)
    with pytest.raises(ValueError, match="pair_affinity must be"):
        sparse_random_walk(maps, pair[:, :-1], radius, cover_border=cover_border)
