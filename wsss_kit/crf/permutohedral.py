"""A permutohedral lattice (Adams et al. 2010) in torch ops, as Krähenbühl's densecrf builds it.

The dense CRF's Gaussian filtering ``out_i = Σ_j exp(-|f_i - f_j|² / 2) v_j`` is approximated by
splatting each point's values onto the ``d + 1`` vertices of its enclosing simplex, blurring
along the ``d + 1`` lattice axes with the kernel ``[1/2, 1, 1/2]`` and slicing back with the same
barycentric weights, times ``alpha = 1 / (1 + 2^-d)``. Every step mirrors densecrf's
``Permutohedral::init`` / ``compute`` (the SSE build that pydensecrf compiles on x86: rounding to
the nearest remainder-0 point with ties to even, float32 arithmetic in the same order), so the
lattice, its weights and its output equal pydensecrf's up to float rounding.

Batched: the points of several images can go into one lattice whose keys hold the image index
(``groups``), so the images never share a vertex. The hash table is a sort of integer codes of the
keys (``torch.unique`` by hand; neighbours found by ``searchsorted``); splat and slice are sparse
CSR products with the barycentric weights and the blur is ``index_select`` over all vertices at
once: no Python loop over points, only over the ``d + 1`` blur axes.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass, field

import torch
from torch import Tensor

__all__ = ["MAX_CODE", "PermutohedralLattice"]

MAX_CODE = 2.0**62
"""Largest integer code of a vertex key (group and coordinates, mixed radix); wider key ranges
(tiny standard deviations over huge images) hash the key rows with ``torch.unique(dim=0)``."""


def _scale_factors(d: int, device: torch.device) -> Tensor:
    """``(d,)`` float32: densecrf's diagonal of E times its ``inv_std_dev`` (float32, as stored)."""
    inv_std_dev = float(torch.tensor(math.sqrt(2.0 / 3.0) * (d + 1), dtype=torch.float32))
    values = [1.0 / math.sqrt((i + 2) * (i + 1)) * inv_std_dev for i in range(d)]
    return torch.tensor(values, dtype=torch.float32, device=device)


def _elevate(features: Tensor) -> Tensor:
    """Features ``(P, d)`` float32 → points ``(P, d + 1)`` on the hyperplane Σ = 0 (``y = E f``)."""
    p, d = features.shape
    cf = features * _scale_factors(d, features.device)  # (P, d)
    # elevated[j] = sm_j - j * cf[j-1], sm_j = Σ_{m >= j} cf[m] accumulated from m = d-1 down.
    suffix = torch.flip(torch.cumsum(torch.flip(cf, [1]), 1), [1])  # suffix[:, m] = Σ_{k >= m} cf[k]
    sm = torch.cat([suffix[:, 1:], torch.zeros_like(suffix[:, :1])], 1)  # Σ_{k >= j} cf[k] for j = 1..d
    j = torch.arange(1, d + 1, device=features.device, dtype=torch.float32)
    return torch.cat([suffix[:, :1], sm - j * cf], 1)


@dataclass
class PermutohedralLattice:
    """A lattice over ``P`` points of dimension ``d``.

    Attributes:
        offsets: ``int64 (P, d + 1)``: the lattice vertex of each point's simplex corners.
        weights: ``float32 (P, d + 1)``: their barycentric weights (sum 1 per point).
        neighbours: ``int64 (d + 1, 2, M)``: per blur axis, the two neighbours of each vertex;
            ``M`` (a zero row) where a neighbour holds no point.
        n_vertices: ``M``.
        by_vertex: ``int64 (P·(d + 1),)``: the flat indices of ``offsets`` sorted by vertex (stable).
    """

    offsets: Tensor
    weights: Tensor
    neighbours: Tensor
    n_vertices: int
    by_vertex: Tensor
    _csr: tuple[Tensor, Tensor] | None = field(default=None, repr=False)

    @property
    def dim(self) -> int:
        return self.offsets.shape[1] - 1

    @classmethod
    def build(cls, features: Tensor, groups: Tensor | None = None) -> "PermutohedralLattice":
        """Build the lattice of ``features``.

        Args:
            features: ``float32 (P, d)``, already divided by the kernel's standard deviations.
            groups: ``int64 (P,)`` group (image) index of each point, or ``None`` (one group); points
                of different groups never interact.
        """
        if features.dim() != 2 or features.shape[1] < 1:
            raise ValueError(f"lattice features must be (P, d) with d >= 1, got shape {tuple(features.shape)}")
        features = features.float()
        p, d = features.shape
        dev = features.device
        elevated = _elevate(features)  # (P, d+1)
        inv = torch.tensor(1.0 / (d + 1), dtype=torch.float32, device=dev)
        v = torch.round(elevated * inv)  # nearest remainder-0 point, ties to even (SSE rounding)
        rem0 = v * float(d + 1)
        total = v.sum(1, keepdim=True)  # densecrf's "sum": how far the point is off the plane
        # rank[i] = #{j > i: di < dj} + #{j < i: dj >= di}, densecrf's pairwise count (ties included)
        diff = elevated - rem0
        less = diff[:, :, None] < diff[:, None, :]  # [i, j]: di < dj
        upper = torch.triu(torch.ones(d + 1, d + 1, dtype=torch.bool, device=dev), 1)
        rank = (less & upper).sum(2) + (~less & upper).sum(1)
        rank = rank.to(torch.float32) + total
        add = (rank < 0).float() * (d + 1)
        sub = (rank >= d + 1).float() * (d + 1)
        rank = rank + add - sub
        rem0 = rem0 + add - sub
        rank_i = rank.long()
        # Barycentric coordinates: slot d - rank[i] gets +v_i, the next slot -v_i, then wrap around.
        bv = (elevated - rem0) * inv
        bary = torch.zeros(p, d + 2, dtype=torch.float32, device=dev)
        bary.scatter_add_(1, d - rank_i, bv)
        bary.scatter_add_(1, d - rank_i + 1, -bv)
        weights = bary[:, : d + 1].clone()
        weights[:, 0] += 1 + bary[:, d + 1]
        # Vertex keys: key[i] = rem0[i] + canonical[r][rank[i]] for the first d coordinates, where
        # canonical[r][k] = r if k <= d - r else r - (d + 1).
        r = torch.arange(d + 1, device=dev)
        canonical = torch.where(r[None, :] <= d - r[:, None], r[:, None], r[:, None] - (d + 1))  # [r, k]
        keys = rem0[:, None, :d].long() + canonical[:, rank_i[:, :d]].permute(1, 0, 2)  # (P, d+1, d)
        if groups is None:
            groups = torch.zeros(p, dtype=torch.long, device=dev)
        offsets, neighbours, m, by_vertex = _hash(keys, groups.to(dev).long(), d)
        return cls(offsets=offsets, weights=weights, neighbours=neighbours, n_vertices=m, by_vertex=by_vertex)

    def filter(self, values: Tensor) -> Tensor:
        """Gaussian filtering ``(P, C)`` → ``(P, C)`` float32 (splat, blur along each axis, slice)."""
        d, m = self.dim, self.n_vertices
        splat, slice_ = self._matrices()
        grid = splat @ values.float().contiguous()  # (M + 1, C); row m: the empty neighbour, stays 0
        other = torch.zeros_like(grid)
        n1_values, n2_values = grid.new_empty(m, grid.shape[1]), grid.new_empty(m, grid.shape[1])
        for axis in range(d + 1):  # old + 0.5 (n1 + n2) into the other buffer, then swap (as densecrf)
            n1, n2 = self.neighbours[axis]
            torch.index_select(grid, 0, n1, out=n1_values)
            torch.index_select(grid, 0, n2, out=n2_values)
            torch.add(grid[:m], n1_values.add_(n2_values), alpha=0.5, out=other[:m])
            grid, other = other, grid
        alpha = 1.0 / (1.0 + 2.0 ** (-d))
        return (slice_ @ grid) * alpha

    def _matrices(self) -> tuple[Tensor, Tensor]:
        """Splat ``(M + 1, P)`` and slice ``(P, M + 1)`` as sparse CSR matrices of the barycentric
        weights: one sparse product each (several times faster than index_add / gather on CPU)."""
        if self._csr is None:
            p, corners = self.offsets.shape
            dev = self.offsets.device
            cols, order = self.offsets.sort(1)  # CSR wants sorted column indices per row
            vals = self.weights.gather(1, order)
            crow = torch.arange(0, p * corners + 1, corners, device=dev)
            flat = self.offsets.reshape(-1)
            by_vertex = self.by_vertex  # points in increasing order within a vertex
            counts = torch.bincount(flat, minlength=self.n_vertices + 1)
            crow_t = torch.cat([counts.new_zeros(1), torch.cumsum(counts, 0)])
            with warnings.catch_warnings():  # "sparse CSR support is in beta": the ops used here are stable
                warnings.simplefilter("ignore", UserWarning)
                slice_ = torch.sparse_csr_tensor(crow, cols.reshape(-1), vals.reshape(-1),
                                                 (p, self.n_vertices + 1))
                splat = torch.sparse_csr_tensor(crow_t, by_vertex // corners, self.weights.reshape(-1)[by_vertex],
                                                (self.n_vertices + 1, p))
            self._csr = (splat, slice_)
        return self._csr


def _hash(keys: Tensor, groups: Tensor, d: int) -> tuple[Tensor, Tensor, int, Tensor]:
    """Vertex ids of ``keys (P, d + 1, d)`` (per group), the blur neighbours of every vertex, the
    number of vertices and the flat corner indices ordered by vertex (stable).

    Keys become one int64 code (mixed radix, coordinates shifted to start at 0 with a margin of
    ``d`` for the neighbours, so a neighbour's code never aliases another vertex); the unique
    codes are the vertices, sorted, so that a neighbour is found by ``searchsorted``.
    """
    p = keys.shape[0]
    flat = keys.reshape(-1, d)
    point_groups = groups[:, None].expand(p, d + 1).reshape(-1)
    lo_t = flat.amin(0) - d
    spans = (flat.amax(0) - lo_t + d + 1).tolist()
    lo = lo_t.tolist()
    n_groups = int(groups.max()) + 1 if p else 1
    capacity = float(n_groups) * math.prod(float(s) for s in spans)
    if capacity < MAX_CODE:
        radix = [1] * d
        for i in range(d - 2, -1, -1):
            radix[i] = radix[i + 1] * int(spans[i + 1])
        group_radix = radix[0] * int(spans[0])

        def encode(k: Tensor, g: Tensor) -> Tensor:
            code = g * group_radix
            for i in range(d):  # a loop over the d coordinates, not over points
                code = code + (k[..., i] - lo[i]) * radix[i]
            return code

        # torch.unique by hand: the sort's permutation is also the splat matrix's order
        sorted_codes, by_vertex = torch.sort(encode(flat, point_groups), stable=True)
        first = torch.ones_like(sorted_codes, dtype=torch.bool)
        first[1:] = sorted_codes[1:] != sorted_codes[:-1]
        codes = sorted_codes[first]
        inverse = torch.empty_like(by_vertex)
        inverse[by_vertex] = torch.cumsum(first, 0) - 1
        m = codes.numel()
        vertex_keys = torch.empty(m, d, dtype=torch.long, device=keys.device)
        vertex_keys[inverse] = flat
        vertex_groups = torch.empty(m, dtype=torch.long, device=keys.device)
        vertex_groups[inverse] = point_groups

        def lookup(k: Tensor) -> Tensor:
            q = encode(k, vertex_groups)
            idx = torch.searchsorted(codes, q).clamp_max(m - 1)
            return torch.where(codes[idx] == q, idx, torch.full_like(idx, m))
    else:  # huge coordinate ranges (tiny standard deviations): rows compared as rows
        rows = torch.cat([point_groups[:, None], flat], 1)
        vertex_rows, inverse = torch.unique(rows, dim=0, return_inverse=True)
        by_vertex = torch.argsort(inverse, stable=True)
        m = vertex_rows.shape[0]
        vertex_keys, vertex_groups = vertex_rows[:, 1:], vertex_rows[:, 0]

        def lookup(k: Tensor) -> Tensor:
            both = torch.cat([vertex_rows, torch.cat([vertex_groups[:, None], k], 1)], 0)
            _, ids = torch.unique(both, dim=0, return_inverse=True)
            # ids of vertex rows are a permutation of 0..m-1 (they are unique); map back through it
            to_vertex = torch.full((int(ids.max()) + 1,), m, dtype=torch.long, device=k.device)
            to_vertex[ids[:m]] = torch.arange(m, device=k.device)
            return to_vertex[ids[m:]]

    neighbours = torch.empty(d + 1, 2, m, dtype=torch.long, device=keys.device)
    for axis in range(d + 1):
        n1, n2 = vertex_keys - 1, vertex_keys + 1
        if axis < d:  # the last axis changes only the implied (d+1)-th coordinate
            n1[:, axis] = vertex_keys[:, axis] + d
            n2[:, axis] = vertex_keys[:, axis] - d
        neighbours[axis, 0] = lookup(n1)
        neighbours[axis, 1] = lookup(n2)
    return inverse.reshape(p, d + 1), neighbours, m, by_vertex
