"""The random walk shared by PSA (AffinityNet) and IRNet: pairs within a radius, pairwise
affinities, the transition matrix and the walk itself.

Everything here works on one feature grid of ``h × w`` pixels (``N = h·w``), numbered in raster
order (``index = y·w + x``). The networks that predict the affinities live in
:mod:`wsss_affinity.affinity` (PSA) and :mod:`wsss_affinity.irn` (IRNet); these functions are pure.

Pairs (both official codes). The *search offsets* of radius ``r`` are the half disc
``(0, dx)`` for ``1 ≤ dx < r`` and ``(dy, dx)`` for ``1 ≤ dy < r``, ``|dx| < r``,
``dy² + dx² < r²``; each unordered pair of pixels closer than ``r`` appears once, as
``source → source + offset``. The official codes take sources only in the *cropped* grid (rows
``[0, h - r + 1)``, columns ``[r - 1, w - r + 1)``): PSA does exactly that, so pairs with both
ends in the bottom/left/right border band are missing; IRNet pads the grid (boundary 1, i.e.
affinity 0 outside) and crops back, which keeps every pair inside the image.
``cover_border=True`` (default) gives IRNet's result (every pair within the radius);
``cover_border=False`` gives PSA's cropped layout.

Transition (both official codes): the dense affinity ``A`` (symmetric, ones on the diagonal) is
raised to ``beta``, normalised so that every *column* sums to 1, and squared ``log_t`` times
(``T^(2^log_t)``). The walk is ``x ← x · T`` for maps ``x`` of shape ``(K, N)``, so each pixel
becomes an affinity-weighted average of its neighbours; on a connected region it converges to
the degree-weighted mean ``Σ d_i x_i / Σ d_i`` with ``d_i = Σ_j A_ij^beta``.
"""

from __future__ import annotations

import torch

from wsss_kit.shapes import check_shape

__all__ = [
    "boundary_affinity",
    "check_refiner_cams",
    "dense_affinity",
    "feature_affinity",
    "irn_random_walk",
    "line_path",
    "path_indices",
    "psa_random_walk",
    "random_walk",
    "search_offsets",
    "sparse_random_walk",
    "stationary_mean",
    "transition_matrix",
]


def _check_radius(radius: int) -> int:
    if not isinstance(radius, int) or radius < 2:
        raise ValueError(f"radius must be an int >= 2 (pairs closer than radius), got {radius!r}")
    return radius


def search_offsets(radius: int) -> list[tuple[int, int]]:
    """The half-disc offsets ``(dy, dx)`` of radius ``radius``, in the official order.

    ``(0, 1) … (0, r-1)``, then row by row ``dy = 1 … r-1`` with ``dx = -(r-1) … r-1`` and
    ``dy² + dx² < r²``. For ``radius = 5`` there are 34 offsets.
    """
    r = _check_radius(radius)
    offsets = [(0, dx) for dx in range(1, r)]
    offsets += [(dy, dx) for dy in range(1, r) for dx in range(-r + 1, r) if dy * dy + dx * dx < r * r]
    return offsets


def _source_window(dy: int, dx: int, height: int, width: int, radius: int, cover_border: bool):
    """Row and column ranges of the sources that take offset ``(dy, dx)``."""
    if cover_border:
        return (0, height - dy), (max(0, -dx), width - max(0, dx))
    rf = radius - 1
    return (0, height - rf), (rf, width - rf)


def _check_grid(height: int, width: int, radius: int, cover_border: bool) -> None:
    if height < 1 or width < 1:
        raise ValueError(f"grid must be at least 1×1, got {height}×{width}")
    if not cover_border and (height < radius or width < 2 * radius - 1):
        raise ValueError(
            f"cover_border=False (PSA's cropped layout) needs a grid of at least {radius}×{2 * radius - 1} "
            f"for radius {radius}, got {height}×{width}"
        )


def path_indices(
    radius: int, height: int, width: int, cover_border: bool = True
) -> tuple[torch.Tensor, torch.Tensor]:
    """Pixel pairs closer than ``radius`` on an ``height × width`` grid.

    Returns:
        ``(src, dst)``, two int64 tensors of shape ``(M,)`` with raster indices; pair ``m`` joins
        ``src[m]`` and ``dst[m] = src[m] + dy·width + dx`` for a search offset (see
        :func:`search_offsets`). Ordered offset-major, then sources in raster order (as PSA's
        ``get_indices_of_pairs``). Each unordered pair appears at most once and ``src != dst``.
        ``cover_border=True``: every pair within the radius (IRNet's padded result);
        ``False``: sources only in the cropped grid (PSA's layout; ``M = D·(h-r+1)(w-2r+2)``).
    """
    _check_radius(radius)
    _check_grid(height, width, radius, cover_border)
    grid = torch.arange(height * width, dtype=torch.int64).view(height, width)
    srcs, dsts = [], []
    for dy, dx in search_offsets(radius):
        (y0, y1), (x0, x1) = _source_window(dy, dx, height, width, radius, cover_border)
        if y1 <= y0 or x1 <= x0:
            continue
        srcs.append(grid[y0:y1, x0:x1].reshape(-1))
        dsts.append(grid[y0 + dy : y1 + dy, x0 + dx : x1 + dx].reshape(-1))
    if not srcs:
        empty = torch.zeros(0, dtype=torch.int64)
        return empty, empty.clone()
    return torch.cat(srcs), torch.cat(dsts)


def line_path(dy: int, dx: int) -> list[tuple[int, int]]:
    """Lattice points on the segment from ``(0, 0)`` to ``(dy, dx)`` (IRNet's rule).

    A point ``(y, x)`` in the bounding box belongs to the path when its squared distance to the
    line through the two ends is below 1: ``(dy·x − dx·y)² / (dy² + dx²) < 1``. Both ends are
    included. Sorted from the far end to the origin.
    """
    length_sq = dy * dy + dx * dx
    if length_sq == 0:
        raise ValueError("line_path needs a non-zero offset, got (0, 0)")
    ys = range(min(0, dy), max(0, dy) + 1)
    xs = range(min(0, dx), max(0, dx) + 1)
    points = [(y, x) for y in ys for x in xs if (dy * x - dx * y) ** 2 < length_sq]
    return sorted(points, key=lambda p: -abs(p[0]) - abs(p[1]))


def feature_affinity(
    features: torch.Tensor, radius: int = 5, cover_border: bool = True
) -> torch.Tensor:
    """PSA's affinity of every pair: ``exp(−mean_E |f_i − f_j|)`` (PSA Eq. 3, L1 mean over channels).

    Args:
        features: ``(B, E, h, w)`` affinity embeddings.
        radius, cover_border: the pairs, as :func:`path_indices`.

    Returns:
        ``(B, M)`` in ``(0, 1]``, in the order of :func:`path_indices`; differentiable.
    """
    check_shape(features, "B E h w", "features")
    b, e, h, w = features.shape
    src, dst = path_indices(radius, h, w, cover_border)
    flat = features.reshape(b, e, h * w)
    src, dst = src.to(flat.device), dst.to(flat.device)
    return torch.exp(-(flat[:, :, src] - flat[:, :, dst]).abs().mean(dim=1))


def boundary_affinity(
    boundary: torch.Tensor, radius: int = 5, cover_border: bool = True
) -> torch.Tensor:
    """IRNet's affinity of every pair: ``1 − max`` of the boundary map along the segment joining
    the two pixels (IRNet Eq. 5; path points from :func:`line_path`, both ends included).

    Args:
        boundary: ``(B, h, w)`` or ``(B, 1, h, w)`` class-boundary probabilities in [0, 1].
        radius, cover_border: the pairs, as :func:`path_indices`.

    Returns:
        ``(B, M)`` in [0, 1], in the order of :func:`path_indices`; differentiable.
    """
    check_shape(boundary, "B h w | B 1 h w", "boundary")
    if boundary.dim() == 4:
        boundary = boundary[:, 0]
    _, h, w = boundary.shape
    _check_radius(radius)
    _check_grid(h, w, radius, cover_border)
    out = []
    for dy, dx in search_offsets(radius):
        (y0, y1), (x0, x1) = _source_window(dy, dx, h, w, radius, cover_border)
        if y1 <= y0 or x1 <= x0:
            continue
        along = torch.stack(
            [boundary[:, y0 + py : y1 + py, x0 + px : x1 + px] for py, px in line_path(dy, dx)], dim=0
        )
        out.append((1 - along.amax(dim=0)).reshape(boundary.shape[0], -1))
    if not out:
        return boundary.new_zeros(boundary.shape[0], 0)
    return torch.cat(out, dim=1)


def dense_affinity(
    pair_affinity: torch.Tensor, height: int, width: int, radius: int = 5, cover_border: bool = True
) -> torch.Tensor:
    """The dense symmetric affinity matrix from pairwise affinities.

    Args:
        pair_affinity: ``(B, M)`` from :func:`feature_affinity` / :func:`boundary_affinity` on the
            same grid, radius and ``cover_border``.

    Returns:
        ``(B, N, N)`` with ``N = height·width``: ``A[i, j] = A[j, i]`` = the pair's affinity,
        ``A[i, i] = 1``, 0 for pixels not paired (farther than the radius).
    """
    src, dst = path_indices(radius, height, width, cover_border)
    check_shape(pair_affinity, f"B {src.numel()}", "pair_affinity",
                note=f"for a {height}×{width} grid with radius {radius} (cover_border={cover_border})")
    b, n = pair_affinity.shape[0], height * width
    src, dst = src.to(pair_affinity.device), dst.to(pair_affinity.device)
    eye = torch.eye(n, dtype=pair_affinity.dtype, device=pair_affinity.device)
    dense = eye.expand(b, n, n).clone()
    dense[:, src, dst] = pair_affinity
    dense[:, dst, src] = pair_affinity
    return dense


def transition_matrix(affinity: torch.Tensor, beta: float = 8.0, log_t: int = 6) -> torch.Tensor:
    """``T = (A^β D⁻¹)^(2^log_t)`` with ``D`` the column sums of ``A^β`` (PSA Eq. 7–8).

    Args:
        affinity: ``(N, N)`` or ``(B, N, N)`` non-negative, every column with a positive sum
            (true for :func:`dense_affinity`, whose diagonal is 1).
        beta: the exponent (PSA/MCTformer 8, IRNet 10).
        log_t: number of squarings (PSA/MCTformer 6; IRNet's ``exp_times`` 8).

    Returns:
        the column-stochastic transition matrix, same shape as ``affinity``.
    """
    check_shape(affinity, "N N | B N N", "affinity")
    if int(log_t) != log_t or log_t < 0:
        raise ValueError(f"log_t must be a non-negative int, got {log_t!r}")
    scaled = affinity.pow(beta)
    trans = scaled / scaled.sum(dim=-2, keepdim=True)
    for _ in range(int(log_t)):
        trans = trans @ trans
    return trans


def random_walk(maps: torch.Tensor, transition: torch.Tensor) -> torch.Tensor:
    """Propagate maps with a transition matrix: ``x ← x · T`` per image (PSA Eq. 9).

    Args:
        maps: ``(B, K, h, w)`` (CAMs, with or without a background channel).
        transition: ``(B, N, N)`` or ``(N, N)`` (shared by the batch), ``N = h·w``, from
            :func:`transition_matrix`.

    Returns:
        ``(B, K, h, w)``.
    """
    check_shape(maps, "B K h w", "maps")
    b, k, h, w = maps.shape
    n = h * w
    check_shape(transition, f"{n} {n} | B {n} {n}", "transition", note=f"for {h}×{w} maps")
    if transition.dim() == 3 and transition.shape[0] != b:
        raise ValueError(f"transition has batch {transition.shape[0]} but maps have batch {b}")
    return (maps.reshape(b, k, n) @ transition).reshape(b, k, h, w)


def stationary_mean(values: torch.Tensor, degrees: torch.Tensor) -> torch.Tensor:
    """The limit of :func:`random_walk` on one connected region: ``Σ d_i x_i / Σ d_i``.

    ``values`` ``(..., N)``, ``degrees`` ``(N,)`` (column sums of ``A^β``); a helper for tests
    and for reasoning about long walks.
    """
    return (values * degrees).sum(-1) / degrees.sum()



def sparse_random_walk(
    maps: torch.Tensor,
    pair_affinity: torch.Tensor,
    radius: int = 5,
    beta: float = 8.0,
    log_t: int = 6,
    cover_border: bool = True,
) -> torch.Tensor:
    """The same walk as ``random_walk(maps, transition_matrix(dense_affinity(...), beta, log_t))``
    without the dense ``N × N`` matrix: ``2^log_t`` products with the sparse one-step transition.

    Equal up to floating-point rounding; memory ``O(N·D)`` instead of ``O(N²)`` and time
    ``O(2^log_t · N·D·K)`` instead of ``O(log_t · N³)`` — the better choice on a CPU or for large
    grids (IRNet's stride-4 grids).

    Args:
        maps: ``(B, K, h, w)``.
        pair_affinity: ``(B, M)`` from :func:`feature_affinity` / :func:`boundary_affinity` on the
            same grid, radius and ``cover_border``.

    Returns:
        ``(B, K, h, w)``.
    """
    check_shape(maps, "B K h w", "maps")
    b, k, h, w = maps.shape
    n = h * w
    src, dst = path_indices(radius, h, w, cover_border)
    if pair_affinity.shape != (b, src.numel()):
        raise ValueError(f"pair_affinity must be ({b}, {src.numel()}) for {h}×{w} maps with radius {radius} "
                         f"(cover_border={cover_border}), got shape {tuple(pair_affinity.shape)}")
    if int(log_t) != log_t or log_t < 0:
        raise ValueError(f"log_t must be a non-negative int, got {log_t!r}")
    device = maps.device
    src, dst = src.to(device), dst.to(device)
    diag = torch.arange(n, device=device)
    rows = torch.cat([src, dst, diag])
    cols = torch.cat([dst, src, diag])
    out = []
    for i in range(b):
        values = torch.cat([pair_affinity[i], pair_affinity[i], torch.ones(n, dtype=pair_affinity.dtype,
                                                                           device=device)]).pow(beta)
        degree = torch.zeros(n, dtype=values.dtype, device=device).index_add_(0, cols, values)
        # x_new[:, j] = sum_i x[:, i] A[i, j] / d_j  →  x_new^T = (A^T / d) x^T = S x^T
        step = torch.sparse_coo_tensor(torch.stack([cols, rows]), values / degree[cols], (n, n),
                                       check_invariants=False).coalesce()
        x = maps[i].reshape(k, n).T.to(values.dtype)
        for _ in range(2 ** int(log_t)):
            x = torch.sparse.mm(step, x)
        out.append(x.T.reshape(k, h, w).to(maps.dtype))
    return torch.stack(out)


def check_refiner_cams(cams: torch.Tensor, images: torch.Tensor, refiner: str) -> None:
    """A random-walk refiner's input: CAMs ``(B, C, H, W)`` at the size of ``images`` ``(B, 3, H, W)``
    (these refiners walk CAM scores; seed masks are not supported)."""
    if cams.dim() != 4 or tuple(cams.shape[-2:]) != tuple(images.shape[-2:]):
        raise ValueError(f"{refiner} refines CAMs (B, C, H, W) at the image size {tuple(images.shape[-2:])}, "
                         f"got {tuple(cams.shape)} (seed masks are not supported)")


def _check_cams(cams: torch.Tensor, h: int, w: int, what: str) -> None:
    check_shape(cams, f"B C {h} {w}", "cams", note=f"to match the {what}")


def psa_random_walk(
    cams: torch.Tensor,
    features: torch.Tensor,
    beta: float = 8.0,
    log_t: int = 6,
    radius: int = 5,
    alpha: float | None = None,
    bg_threshold: float | None = 0.39,
    cover_border: bool = True,
    background: torch.Tensor | None = None,
    sparse: bool = False,
) -> torch.Tensor:
    """PSA's inference walk: background channel, feature affinity, ``T^(2^log_t)``, walk.

    Args:
        cams: ``(B, C, h, w)`` foreground CAMs at the feature resolution (PSA average-pools the
            full-size CAMs by the stride, 8).
        features: ``(B, E, h, w)`` affinity embeddings.
        beta, log_t, radius: MCTformer/PSA 8, 6 (PSA's script default 8), 5.
        alpha: background ``(1 − max_c CAM)^alpha`` (PSA's ``infer_aff``, default 16 there);
            used when given, else
        bg_threshold: a constant background score (MCTformer's 0.39).
        cover_border: ``False`` for PSA's cropped pair layout (see :func:`path_indices`).
        background: ``(B, 1, h, w)`` background scores computed by the caller (PSA computes
            ``(1 − max)^alpha`` at the image size, then pools); overrides ``alpha``/``bg_threshold``.
        sparse: walk with :func:`sparse_random_walk` (same result, no ``N × N`` matrix).

    Returns:
        ``(B, C + 1, h, w)`` walked scores, channel 0 = background (take the argmax).
    """
    b, _, h, w = features.shape
    _check_cams(cams, h, w, "features")
    if background is not None:
        if background.shape != (cams.shape[0], 1, h, w):
            raise ValueError(f"background must be ({cams.shape[0]}, 1, {h}, {w}), got {tuple(background.shape)}")
        bg = background.to(cams)
    elif alpha is not None:
        bg = (1 - cams.amax(dim=1, keepdim=True)).clamp_min(0).pow(alpha)
    elif bg_threshold is not None:
        bg = torch.full_like(cams[:, :1], float(bg_threshold))
    else:
        raise ValueError("psa_random_walk needs alpha (background (1 - max)^alpha) or bg_threshold")
    maps = torch.cat([bg, cams], dim=1)
    pair = feature_affinity(features, radius, cover_border)
    if sparse:
        return sparse_random_walk(maps, pair, radius, beta, log_t, cover_border)
    affinity = dense_affinity(pair, h, w, radius, cover_border)
    return random_walk(maps, transition_matrix(affinity, beta, log_t))


def irn_random_walk(
    cams: torch.Tensor,
    boundary: torch.Tensor,
    beta: float = 10.0,
    exp_times: int = 8,
    radius: int = 5,
    bg_threshold: float = 0.25,
    sparse: bool = False,
) -> torch.Tensor:
    """IRNet's semantic-segmentation walk (``make_sem_seg_labels``).

    The foreground CAMs are multiplied by ``1 − boundary``, walked with the boundary affinity
    (``T^(2^exp_times)``), divided by their maximum over all classes and pixels of the image,
    and a constant background ``bg_threshold`` is put in front (IRNet 0.25; CLIMS VOC 0.2).
    IRNet normalises after the ×4 bilinear upsampling; here before (the maxima differ only by
    interpolation).

    Args:
        cams: ``(B, C, h, w)`` foreground CAMs at the boundary map's resolution (stride 4).
        boundary: ``(B, h, w)`` or ``(B, 1, h, w)`` in [0, 1].
        sparse: walk with :func:`sparse_random_walk` (same result, no ``N × N`` matrix).

    Returns:
        ``(B, C + 1, h, w)``, channel 0 = background (take the argmax).
    """
    check_shape(boundary, "B h w | B 1 h w", "boundary")
    if boundary.dim() == 4:
        boundary = boundary[:, 0]
    _, h, w = boundary.shape
    _check_cams(cams, h, w, "boundary map")
    pair = boundary_affinity(boundary, radius)
    maps = cams * (1 - boundary[:, None])
    if sparse:
        walked = sparse_random_walk(maps, pair, radius, beta, exp_times)
    else:
        walked = random_walk(maps, transition_matrix(dense_affinity(pair, h, w, radius), beta, exp_times))
    peak = walked.flatten(1).amax(dim=1).clamp_min(1e-5).view(-1, 1, 1, 1)
    return torch.cat([torch.full_like(walked[:, :1], float(bg_threshold)), walked / peak], dim=1)
