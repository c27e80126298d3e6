"""Selected inversion: the entries of ``H⁻¹`` on the sparsity pattern of ``H``'s Cholesky factor, without
ever forming the dense inverse (Takahashi, Fagan and Chen 1973; Erisman and Tinney 1975).

With ``C = P H Pᵀ = L Lᵀ`` (``L`` block lower triangular, ``d x d`` blocks) and ``Z = C⁻¹``, ``Z L = L⁻ᵀ`` gives,
column block by column block from the last one back, for the rows ``S = struct(L[:, J])`` below ``J``:

    Z[I, J] = -(Σ_{K ∈ S} Z[I, K] L[K, J]) L[J, J]⁻¹                           (I ∈ S)
    Z[J, J] = (L[J, J]⁻ᵀ - Σ_{K ∈ S} Z[K, J]ᵀ L[K, J]) L[J, J]⁻¹

Every ``Z[I, K]`` these need lies on the pattern of ``L`` (``I, K ∈ S`` are joined by the elimination tree),
so the recurrences close on that pattern and cost about as much as the factorization.  The pattern of
``L`` holds the pattern of ``H``: the marginal covariance of every variable (its diagonal block) and the
joint block of every pair of variables that share a cost.  Other entries are columns of ``H⁻¹``, one
solve each (``SelectedInverse.entries`` does both).

The factorization is the numba block Cholesky (``slam.linear._block_cholesky``) on a fill-reducing block
ordering; patterns that are not made of complete blocks of one size d >= 2 run it with d = 1 (scalar).
``eliminate_first`` puts chosen blocks first in the ordering: bundle adjustment's points, so that the
cameras' part of ``Z`` is the inverse of the reduced camera system (the Schur complement), as GTSAM and
Ceres compute camera covariances.
"""

from __future__ import annotations

import functools
import types

import numba
import numpy as np

from ._block_cholesky import BlockPattern, find_blocks
from .sparse_cholesky import SparsePattern, _block_ordering, _cholmod


class SelectedInverse:
    """The symbolic analysis of selected inversion for one scalar pattern (lower triangle, CSC).

    Args:
        pattern: the pattern of ``H``.
        eliminate_first: optional ``(k,)`` scalar columns whose blocks are ordered first (each column's
            whole block moves; for the Schur ordering of bundle adjustment, the points' columns).
    """

    def __init__(self, pattern: SparsePattern, eliminate_first: np.ndarray | None = None):
        indptr, indices = pattern.indptr.astype(np.int64), pattern.indices.astype(np.int64)
        found = find_blocks(indptr, indices)
        d, (bindptr, bindices) = found if found is not None else (1, (indptr, indices))
        perm = _block_ordering(_cholmod(), bindptr, bindices, methods=("amd",))
        if eliminate_first is not None and len(eliminate_first):
            first = np.zeros(bindptr.size - 1, dtype=bool)
            first[np.asarray(eliminate_first, dtype=np.int64) // d] = True
            # A stable partition of the fill-reducing order: the eliminated blocks (mutually uncoupled
            # for a Schur complement) first, the rest after in their own fill-reducing order.
            perm = np.concatenate([perm[first[perm]], perm[~first[perm]]])
        self.pattern, self.d = pattern, d
        self.blocks = BlockPattern(indptr, indices, d, perm, (bindptr, bindices))
        self.position = np.empty_like(perm)
        self.position[perm] = np.arange(perm.size)
        """``(n / d,)``: where each block of ``H`` sits in the factorized order."""

    def factorize(self, values: np.ndarray) -> Factors:
        """Factor and invert on the pattern of ``L``: ``values (B, nnz) float64`` -> ``Factors``."""
        lx, ldiag, ok = self.blocks.factorize(np.ascontiguousarray(values, dtype=np.float64))
        zx, zdiag = np.zeros_like(lx), np.zeros_like(ldiag)
        _kernel(self.d)(self.blocks.lp, self.blocks.li, lx, ldiag, ok, zx, zdiag)
        return Factors(self, lx, ldiag, ok, zx, zdiag)

    def locate(self, rows: np.ndarray, cols: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """Where the scalar entries ``(rows[k], cols[k])`` of ``H⁻¹`` lie in ``Z``: ``(block, u, w, kind)``
        with ``kind`` 0 for a diagonal block (``zdiag[block, u, w]``), 1 for an off-diagonal one
        (``zx[block, u, w]``) and -1 for an entry off the pattern of ``L`` (found by solves)."""
        d, lp, li = self.d, self.blocks.lp, self.blocks.li
        rows, cols = np.asarray(rows, dtype=np.int64), np.asarray(cols, dtype=np.int64)
        pr, pc = self.position[rows // d], self.position[cols // d]
        ur, uc = rows % d, cols % d
        swap = pr < pc  # Z is symmetric: read the lower block, transposed where the entry is above
        hi, lo = np.where(swap, pc, pr), np.where(swap, pr, pc)
        u, w = np.where(swap, uc, ur), np.where(swap, ur, uc)
        kind = np.where(hi == lo, 0, -1)
        block = np.where(hi == lo, hi, -1)
        off = np.flatnonzero(hi != lo)
        if off.size:
            # Rows increase within each column of L: a binary search of row ``hi`` in column ``lo``.
            starts, ends = lp[lo[off]], lp[lo[off] + 1]
            found = _search(li, starts, ends, hi[off])
            kind[off] = np.where(found >= 0, 1, -1)
            block[off] = found
        return block, u, w, kind


class Factors:
    """One batch's Cholesky factors and its selected inverse (``SelectedInverse.factorize``)."""

    def __init__(self, analysis: SelectedInverse, lx: np.ndarray, ldiag: np.ndarray, ok: np.ndarray,
                 zx: np.ndarray, zdiag: np.ndarray):
        self.analysis, self.lx, self.ldiag, self.ok, self.zx, self.zdiag = analysis, lx, ldiag, ok, zx, zdiag

    def solve(self, rhs: np.ndarray) -> np.ndarray:
        """``H_b⁻¹ rhs_b`` for ``rhs (B, n, k)`` (zeros where ``ok`` is False)."""
        return self.analysis.blocks.solve(self.lx, self.ldiag, self.ok, np.ascontiguousarray(rhs, dtype=np.float64))

    def entries(self, rows: np.ndarray, cols: np.ndarray, *, chunk: int | None = None) -> np.ndarray:
        """``H⁻¹[rows[k], cols[k]]`` for every problem of the batch: ``(B, k)`` (nan where ``ok`` is False).
        Entries on the pattern of ``L`` are read from ``Z``; the others take one solve per distinct column,
        ``chunk`` columns at a time (default: ``solve_chunk``)."""
        block, u, w, kind = self.analysis.locate(rows, cols)
        batch = self.ok.shape[0]
        out = np.empty((batch, block.size))
        diagonal, lower = kind == 0, kind == 1
        out[:, diagonal] = self.zdiag[:, block[diagonal], u[diagonal], w[diagonal]]
        out[:, lower] = self.zx[:, block[lower], u[lower], w[lower]]
        missing = np.flatnonzero(kind < 0)
        if missing.size:
            columns, which = np.unique(np.asarray(cols)[missing], return_inverse=True)
            n = self.analysis.pattern.n
            chunk = chunk or solve_chunk(batch, n)
            for start in range(0, columns.size, chunk):
                part = columns[start : start + chunk]
                unit = np.zeros((batch, n, part.size))
                unit[:, part, np.arange(part.size)] = 1.0
                x = self.solve(unit)
                sel = np.flatnonzero((which >= start) & (which < start + part.size))
                out[:, missing[sel]] = x[:, np.asarray(rows)[missing[sel]], which[sel] - start]
        out[~self.ok] = np.nan
        return out


def solve_chunk(batch: int, n: int, budget: int = 2**24) -> int:
    """How many unit columns to solve for at once: at most 256, and at most ``budget`` float64 values
    (128 MiB) of right-hand sides for the whole batch."""
    return int(max(1, min(256, budget // max(batch * n, 1))))


def _search(li: np.ndarray, starts: np.ndarray, ends: np.ndarray, targets: np.ndarray) -> np.ndarray:
    """Per query, the index ``p`` in ``[starts, ends)`` with ``li[p] == target``, else -1."""
    return _search_kernel(li, starts, ends, targets)


@numba.njit(cache=True)
def _search_kernel(li, starts, ends, targets):  # type: ignore[no-untyped-def]
    out = np.full(targets.size, -1, dtype=np.int64)
    for q in range(targets.size):
        lo, hi, t = starts[q], ends[q], targets[q]
        while lo < hi:
            mid = (lo + hi) // 2
            if li[mid] < t:
                lo = mid + 1
            else:
                hi = mid
        if lo < ends[q] and li[lo] == t:
            out[q] = lo
    return out


D = 0
"""The block size, a compile-time constant of each specialization (``_kernel``), as in ``_block_cholesky``."""


def _takahashi(lp, li, lx, ldiag, ok, zx, zdiag):  # type: ignore[no-untyped-def]
    batch, nb, d = ldiag.shape[0], ldiag.shape[1], D
    mark = np.full(nb, -1, dtype=np.int64)
    y = np.zeros((nb, d, d))
    inv = np.empty((d, d))  # L[J, J]⁻¹ (lower triangular)
    acc = np.empty((d, d))
    for b in range(batch):
        if not ok[b]:
            continue
        for j in range(nb - 1, -1, -1):
            l_jj = ldiag[b, j]
            for w in range(d):  # inv = L[J, J]⁻¹ by forward substitution on the identity, column w
                for u in range(d):
                    s = 1.0 if u == w else 0.0
                    for m in range(w, u):
                        s -= l_jj[u, m] * inv[m, w]
                    inv[u, w] = s / l_jj[u, u] if u >= w else 0.0
            start, end = lp[j], lp[j + 1]
            for q in range(start, end):
                mark[li[q]] = q
            for q in range(start, end):  # y[I] = Σ_K Z[I, K] L[K, J] over I, K in S (both triangles of Z)
                k = li[q]
                l_kj = lx[b, q]
                yk, z_kk = y[k], zdiag[b, k]
                for u in range(d):
                    for w in range(d):
                        s = 0.0
                        for m in range(d):
                            s += z_kk[u, m] * l_kj[m, w]
                        yk[u, w] += s
                for p in range(lp[k], lp[k + 1]):
                    r = li[p]
                    qr = mark[r]
                    if qr < 0:
                        continue
                    z_rk, yr, l_rj = zx[b, p], y[r], lx[b, qr]
                    for u in range(d):
                        for w in range(d):
                            s, t = 0.0, 0.0
                            for m in range(d):
                                s += z_rk[u, m] * l_kj[m, w]  # Z[R, K] L[K, J] -> y[R]
                                t += z_rk[m, u] * l_rj[m, w]  # Z[K, R] L[R, J] = Z[R, K]ᵀ L[R, J] -> y[K]
                            yr[u, w] += s
                            yk[u, w] += t
            for u in range(d):
                for w in range(d):
                    acc[u, w] = 0.0
            for q in range(start, end):  # Z[I, J] = -y[I] inv; acc = Σ_K Z[K, J]ᵀ L[K, J]
                i = li[q]
                yi, z_ij, l_ij = y[i], zx[b, q], lx[b, q]
                for u in range(d):
                    for w in range(d):
                        s = 0.0
                        for m in range(d):
                            s -= yi[u, m] * inv[m, w]
                        z_ij[u, w] = s
                for u in range(d):
                    for w in range(d):
                        s = 0.0
                        for m in range(d):
                            s += z_ij[m, u] * l_ij[m, w]
                        acc[u, w] += s
                for u in range(d):
                    for w in range(d):
                        yi[u, w] = 0.0
                mark[i] = -1
            z_jj = zdiag[b, j]
            for u in range(d):  # Z[J, J] = (L[J, J]⁻ᵀ - acc) L[J, J]⁻¹, symmetrized
                for w in range(d):
                    s = 0.0
                    for m in range(d):
                        s += (inv[m, u] - acc[u, m]) * inv[m, w]
                    z_jj[u, w] = s
            for u in range(d):
                for w in range(u):
                    s = 0.5 * (z_jj[u, w] + z_jj[w, u])
                    z_jj[u, w] = s
                    z_jj[w, u] = s


@functools.cache
def _kernel(d: int):  # type: ignore[no-untyped-def]
    """``_takahashi`` compiled for block size ``d`` (cached on disk under its own name)."""
    scope = dict(_takahashi.__globals__, D=d)
    function = types.FunctionType(_takahashi.__code__, scope, f"_takahashi_d{d}")
    function.__qualname__ = f"_takahashi_d{d}"
    return numba.njit(cache=True, nogil=True, error_model="numpy", fastmath={"reassoc", "contract", "arcp"})(function)
