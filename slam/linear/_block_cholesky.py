"""Block sparse Cholesky for normal equations whose unknowns come in blocks of one size d (pose graphs:
d = 3 or 6), in numba, for a whole batch of matrices of one pattern in one call.

The up-looking algorithm (Davis, *Direct Methods for Sparse Linear Systems*, ch. 4) on d x d blocks:
block row K of L solves ``L[:K, :K] X = C[:K, K]`` by a sparse triangular solve whose pattern is found
by walking the block elimination tree, then ``L[K, K] = chol(C[K, K] - Xᵀ X)`` (C = P A Pᵀ, P a
fill-reducing block ordering).  Every index operation moves a d x d block (36 multiply-adds for
d = 6) where a scalar factorization (CHOLMOD's simplicial) moves one number, and nothing is called
per matrix from Python.  What depends only on the pattern is computed once (``BlockPattern``).
"""

from __future__ import annotations

import functools
import types

import numba
import numpy as np


def block_structure(indptr: np.ndarray, indices: np.ndarray, d: int) -> tuple[np.ndarray, np.ndarray] | None:
    """The block pattern ``(bindptr, bindices)`` (lower triangle, CSC, diagonal blocks included) of a
    scalar lower-triangle CSC pattern, or None where that pattern is not made of complete d x d blocks.

    One pass over the pattern where its rows are sorted within each column (``SparsePattern``'s are),
    else a sort of every entry's block."""
    n = indptr.size - 1
    if d < 2 or n == 0 or n % d:
        return None
    nb = n // d
    bindptr = np.zeros(nb + 1, dtype=np.int64)
    bindices = np.empty(indices.size // d + nb, dtype=np.int64)
    status = _sorted_block_structure(indptr.astype(np.int64), indices.astype(np.int64), d, bindptr, bindices)
    if status == 1:
        return bindptr, bindices[: bindptr[nb]].copy()
    if status == 0:
        return None
    rows = indices.astype(np.int64)
    cols = np.repeat(np.arange(n, dtype=np.int64), np.diff(indptr).astype(np.int64))
    keys = (cols // d) * nb + rows // d
    blocks, counts = np.unique(keys, return_counts=True)
    diagonal = blocks // nb == blocks % nb
    if not np.array_equal(counts, np.where(diagonal, d * (d + 1) // 2, d * d)) or int(diagonal.sum()) != nb:
        return None
    bindptr = np.zeros(nb + 1, dtype=np.int64)
    np.cumsum(np.bincount(blocks // nb, minlength=nb), out=bindptr[1:])
    return bindptr, blocks % nb


@numba.njit(cache=True, nogil=True)
def _sorted_block_structure(indptr, indices, d, bindptr, bindices):  # type: ignore[no-untyped-def]
    """``block_structure`` where rows are sorted within each column: 1 (found, into ``bindptr``,
    ``bindices``), 0 (not complete d x d blocks), -1 (rows not sorted: sort instead)."""
    nb = (indptr.size - 1) // d
    count = 0
    for bc in range(nb):
        first = bc * d
        start, end = indptr[first], indptr[first + 1]
        for p in range(start + 1, end):
            if indices[p] <= indices[p - 1]:
                return -1
        # The block column's first scalar column: its diagonal block, then whole blocks below.
        if end - start < d or indices[start] != first:
            return 0
        for u in range(d):
            if indices[start + u] != first + u:
                return 0
        blocks = 1 + (end - start - d) // d
        if (end - start - d) % d:
            return 0
        bindices[count] = bc
        for k in range(1, blocks):
            q = start + k * d
            block_row = indices[q] // d
            if block_row <= bindices[count + k - 1] or indices[q] % d:
                return 0
            for u in range(d):
                if indices[q + u] != block_row * d + u:
                    return 0
            bindices[count + k] = block_row
        # Its other scalar columns: the rest of the diagonal block, then the same rows below.
        for u in range(1, d):
            c = first + u
            cs, ce = indptr[c], indptr[c + 1]
            if ce - cs != end - start - u:
                return 0
            for p in range(cs, ce):
                if indices[p] != indices[start + u + p - cs]:
                    return 0
        count += blocks
        bindptr[bc + 1] = count
    return 1


def find_blocks(indptr: np.ndarray, indices: np.ndarray) -> tuple[int, tuple[np.ndarray, np.ndarray]] | None:
    """``(d, block_structure(indptr, indices, d))`` for the first block size d (pose sizes 6 and 3 first)
    whose complete d x d blocks make up the pattern, or None."""
    for d in (6, 3, 2, 4, 5, 7, 8, 9):
        blocks = block_structure(indptr, indices, d)
        if blocks is not None:
            return d, blocks
    return None


def checked_blocks(pattern: object, indptr: np.ndarray, indices: np.ndarray, d: int, perm: np.ndarray,
                   blocks: tuple[np.ndarray, np.ndarray] | None) -> tuple[np.ndarray, np.ndarray]:
    """The block structure of a block factorization's pattern (``blocks`` or ``block_structure``; a
    ``ValueError`` where it has none), with ``d, n, nb, perm`` set on ``pattern``."""
    structure = blocks if blocks is not None else block_structure(indptr, indices, d)
    if structure is None:
        raise ValueError(f"the pattern is not made of complete {d} x {d} blocks")
    pattern.d, pattern.n, pattern.nb = d, indptr.size - 1, structure[0].size - 1  # type: ignore[attr-defined]
    pattern.perm = np.ascontiguousarray(perm, dtype=np.int64)  # type: ignore[attr-defined]
    return structure


class BlockPattern:
    """The symbolic analysis: block ordering, the permuted blocks' scalar positions, the elimination
    tree and the block pattern of L.

    Args:
        indptr, indices: the scalar pattern (lower triangle, CSC, complete d x d blocks).
        d: the block size.
        perm: ``(n / d,)`` block ordering: block k of the factorized matrix is block ``perm[k]`` of A.
        blocks: ``block_structure(indptr, indices, d)`` where the caller has it.
    """

    def __init__(self, indptr: np.ndarray, indices: np.ndarray, d: int, perm: np.ndarray,
                 blocks: tuple[np.ndarray, np.ndarray] | None = None):
        bindptr, bindices = checked_blocks(self, indptr, indices, d, perm, blocks)
        # Scalar slot of every entry of every stored block (lower blocks; diagonal blocks mirrored).
        n, nb = self.n, self.nb
        bcols = np.repeat(np.arange(nb, dtype=np.int64), np.diff(bindptr))
        u, v = np.meshgrid(np.arange(d), np.arange(d), indexing="ij")
        r = bindices[:, None, None] * d + u  # (nblocks, d, d): scalar rows, then columns
        c = bcols[:, None, None] * d + v
        r, c = np.maximum(r, c), np.minimum(r, c)  # diagonal blocks: the lower twin of an upper entry
        scalar_cols = np.repeat(np.arange(n, dtype=np.int64), np.diff(indptr).astype(np.int64))
        keys = scalar_cols * n + indices.astype(np.int64)  # ascending in CSC order
        self.slots = np.searchsorted(keys, c * n + r)
        (self.cp, self.ci, self.cblock, self.ctransposed, self.diagonal_block, self.parent, self.lp,
         self.li) = _symbolic(nb, bindptr, bindices.astype(np.int64), self.perm)

    @property
    def nnz(self) -> int:
        """Scalar entries of L (its off-diagonal blocks and the lower triangles of its diagonal ones)."""
        return int(self.lp[-1]) * self.d * self.d + self.nb * self.d * (self.d + 1) // 2

    def factorize(self, values: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """``values (B, nnz) float64`` -> ``(lx (B, nnz(L) blocks, d, d), ldiag (B, nb, d, d), ok (B,))``."""
        batch, d = values.shape[0], self.d
        lx = np.empty((batch, max(int(self.lp[-1]), 1), d, d))
        ldiag = np.empty((batch, self.nb, d, d))
        ok = np.zeros(batch, dtype=np.bool_)
        _kernels(d)[0](np.ascontiguousarray(values), self.slots, self.cp, self.ci, self.cblock, self.ctransposed,
                   self.diagonal_block, self.parent, self.lp, self.li, lx, ldiag, ok)
        return lx, ldiag, ok

    def solve(self, lx: np.ndarray, ldiag: np.ndarray, ok: np.ndarray, rhs: np.ndarray) -> np.ndarray:
        """``A_b⁻¹ rhs_b`` for ``rhs (B, n, k)`` (zeros where ``ok`` is False)."""
        out = np.zeros_like(rhs)
        _kernels(self.d)[1](self.perm, self.lp, self.li, lx, ldiag, ok, np.ascontiguousarray(rhs), out)
        return out


@numba.njit(cache=True)
def _symbolic(nb, bindptr, bindices, perm):  # type: ignore[no-untyped-def]
    """Column lists of the upper block triangle of C (``cp, ci``; for each, the stored block ``cblock``
    and whether C's block is its transpose), each C diagonal block's stored block, the elimination tree
    and the block pattern ``lp, li`` of L (rows increasing within a column)."""
    inverse = np.empty(nb, dtype=np.int64)
    for k in range(nb):
        inverse[perm[k]] = k
    counts = np.zeros(nb + 1, dtype=np.int64)
    diagonal_block = np.empty(nb, dtype=np.int64)
    for bc in range(nb):
        for e in range(bindptr[bc], bindptr[bc + 1]):
            a, b = inverse[bindices[e]], inverse[bc]
            if a == b:
                diagonal_block[a] = e
            else:
                counts[max(a, b) + 1] += 1
    cp = np.cumsum(counts)
    fill = cp[:-1].copy()
    ci = np.empty(cp[-1], dtype=np.int64)
    cblock = np.empty(cp[-1], dtype=np.int64)
    ctransposed = np.empty(cp[-1], dtype=np.bool_)
    for bc in range(nb):
        for e in range(bindptr[bc], bindptr[bc + 1]):
            a, b = inverse[bindices[e]], inverse[bc]  # stored block e is A(row block, bc) = C(a, b)
            if a == b:
                continue
            k = max(a, b)
            ci[fill[k]] = min(a, b)
            cblock[fill[k]] = e
            ctransposed[fill[k]] = a > b  # C(min, max) = C(b, a) = stored blockᵀ when a > b
            fill[k] += 1
    parent = np.full(nb, -1, dtype=np.int64)
    flag = np.full(nb, -1, dtype=np.int64)
    lnz = np.zeros(nb, dtype=np.int64)
    for k in range(nb):
        flag[k] = k
        for q in range(cp[k], cp[k + 1]):
            i = ci[q]
            while flag[i] != k:
                if parent[i] == -1:
                    parent[i] = k
                lnz[i] += 1
                flag[i] = k
                i = parent[i]
    lp = np.zeros(nb + 1, dtype=np.int64)
    for k in range(nb):
        lp[k + 1] = lp[k] + lnz[k]
    li = np.empty(lp[nb], dtype=np.int64)
    used = np.zeros(nb, dtype=np.int64)
    flag[:] = -1
    for k in range(nb):
        flag[k] = k
        for q in range(cp[k], cp[k + 1]):
            i = ci[q]
            while flag[i] != k:
                li[lp[i] + used[i]] = k
                used[i] += 1
                flag[i] = k
                i = parent[i]
    return cp, ci, cblock, ctransposed, diagonal_block, parent, lp, li


D = 0
"""The block size, a compile-time constant of each specialization (``_kernels``): numba unrolls the d x d
loops then (measured: 1.6x faster than a run-time d on parking-garage)."""


@numba.njit(cache=True, nogil=True)
def all_finite(v):  # type: ignore[no-untyped-def]
    """Whether every entry of the 1-D ``v`` is finite (the block factorizations' input test)."""
    for t in range(v.shape[0]):
        if not np.isfinite(v[t]):
            return False
    return True


def _factorize(values, slots, cp, ci, cblock, ctransposed, diagonal_block, parent, lp, li, lx, ldiag, ok):  # type: ignore[no-untyped-def]
    batch, nb, d = values.shape[0], ldiag.shape[1], D
    y = np.zeros((nb, d, d))
    x = np.empty((d, d))
    flag = np.empty(nb, dtype=np.int64)
    stack = np.empty(nb, dtype=np.int64)
    path = np.empty(nb, dtype=np.int64)
    filled = np.empty(nb, dtype=np.int64)
    for b in range(batch):
        v = values[b]
        ok[b] = all_finite(v)
        if not ok[b]:
            continue
        flag[:] = -1
        filled[:] = 0
        for k in range(nb):
            top = nb
            flag[k] = k
            for q in range(cp[k], cp[k + 1]):  # scatter C[:k, k] into y, and find the pattern of row k
                i = ci[q]
                s = slots[cblock[q]]
                if ctransposed[q]:
                    for u in range(d):
                        for w in range(d):
                            y[i, u, w] = v[s[w, u]]
                else:
                    for u in range(d):
                        for w in range(d):
                            y[i, u, w] = v[s[u, w]]
                length = 0
                while flag[i] != k:
                    path[length] = i
                    length += 1
                    flag[i] = k
                    i = parent[i]
                while length > 0:
                    length -= 1
                    top -= 1
                    stack[top] = path[length]
            s = slots[diagonal_block[k]]
            diag = ldiag[b, k]
            for u in range(d):
                for w in range(d):
                    diag[u, w] = v[s[u, w]]
            for t in range(top, nb):  # X_i = L[i, i]⁻¹ y_i, then y_r -= L[r, i] X_i for the rows below
                i = stack[t]
                li_ii = ldiag[b, i]
                yi = y[i]
                for w in range(d):  # forward substitution, column by column of y_i
                    for u in range(d):
                        acc = yi[u, w]
                        for m in range(u):
                            acc -= li_ii[u, m] * x[m, w]
                        x[u, w] = acc / li_ii[u, u]
                end = lp[i] + filled[i]
                for p in range(lp[i], end):
                    r = li[p]
                    lri, yr = lx[b, p], y[r]
                    for u in range(d):
                        for w in range(d):
                            acc = 0.0
                            for m in range(d):
                                acc += lri[u, m] * x[m, w]
                            yr[u, w] -= acc
                lki = lx[b, end]  # L[k, i] = X_iᵀ
                for u in range(d):
                    for w in range(d):
                        lki[u, w] = x[w, u]
                for u in range(d):  # diag -= X_iᵀ X_i (lower triangle)
                    for w in range(u + 1):
                        acc = 0.0
                        for m in range(d):
                            acc += x[m, u] * x[m, w]
                        diag[u, w] -= acc
                filled[i] += 1
                for u in range(d):
                    for w in range(d):
                        yi[u, w] = 0.0
            for w in range(d):  # dense Cholesky of the diagonal block, in place (lower)
                acc = diag[w, w]
                for m in range(w):
                    acc -= diag[w, m] * diag[w, m]
                if not (acc > 0.0 and np.isfinite(acc)):
                    ok[b] = False
                    break
                diag[w, w] = np.sqrt(acc)
                for u in range(w + 1, d):
                    acc = diag[u, w]
                    for m in range(w):
                        acc -= diag[u, m] * diag[w, m]
                    diag[u, w] = acc / diag[w, w]
            if not ok[b]:
                for t in range(top, nb):
                    y[stack[t]] = 0.0
                break
            for u in range(d):
                for w in range(u + 1, d):
                    diag[u, w] = 0.0


def _solve(perm, lp, li, lx, ldiag, ok, rhs, out):  # type: ignore[no-untyped-def]
    batch, nb, d = ldiag.shape[0], ldiag.shape[1], D
    y = np.empty((nb, d))
    for b in range(batch):
        if not ok[b]:
            continue
        for c in range(rhs.shape[2]):
            for k in range(nb):
                for u in range(d):
                    y[k, u] = rhs[b, perm[k] * d + u, c]
            for j in range(nb):  # L y = P b, block column by block column
                l_jj = ldiag[b, j]
                for u in range(d):
                    acc = y[j, u]
                    for m in range(u):
                        acc -= l_jj[u, m] * y[j, m]
                    y[j, u] = acc / l_jj[u, u]
                for p in range(lp[j], lp[j + 1]):
                    r, l_rj = li[p], lx[b, p]
                    for u in range(d):
                        acc = 0.0
                        for m in range(d):
                            acc += l_rj[u, m] * y[j, m]
                        y[r, u] -= acc
            for j in range(nb - 1, -1, -1):  # Lᵀ x = y
                for p in range(lp[j], lp[j + 1]):
                    r, l_rj = li[p], lx[b, p]
                    for u in range(d):
                        acc = 0.0
                        for m in range(d):
                            acc += l_rj[m, u] * y[r, m]
                        y[j, u] -= acc
                l_jj = ldiag[b, j]
                for u in range(d - 1, -1, -1):
                    acc = y[j, u]
                    for m in range(u + 1, d):
                        acc -= l_jj[m, u] * y[j, m]
                    y[j, u] = acc / l_jj[u, u]
            for k in range(nb):
                for u in range(d):
                    out[b, perm[k] * d + u, c] = y[k, u]


@functools.cache
def _kernels(d: int) -> tuple:
    """``(factorize, solve)`` compiled for block size ``d`` (each cached on disk under its own name).
    Rounding may be reassociated (``fastmath`` without ``nnan``/``ninf``: the finiteness tests stay)."""
    out = []
    for template in (_factorize, _solve):
        scope = dict(template.__globals__, D=d)
        function = types.FunctionType(template.__code__, scope, f"{template.__name__}_d{d}")
        function.__qualname__ = f"{template.__qualname__}_d{d}"
        out.append(numba.njit(cache=True, nogil=True, error_model="numpy",
                              fastmath={"reassoc", "contract", "arcp"})(function))
    return tuple(out)


def warm_up(sizes: tuple[int, ...] = (3, 6), kind: type = BlockPattern) -> None:
    """Load (the first time on a machine: compile and cache) the kernels of ``kind`` (``BlockPattern``, or
    ``_supernodal.SupernodalPattern``: any with ``factorize`` and ``solve(*factor, rhs)``) for these block
    sizes, on a one-block matrix: start-up work, like an import, that a timed solve should not pay."""
    for d in sizes:
        indptr = np.concatenate([[0], np.cumsum(np.arange(d, 0, -1))]).astype(np.int64)
        indices = np.concatenate([np.arange(c, d) for c in range(d)]).astype(np.int64)
        pattern = kind(indptr, indices, d, np.zeros(1, dtype=np.int64))
        values = np.where(indices == np.repeat(np.arange(d), np.arange(d, 0, -1)), 1.0, 0.0)[None, :]
        pattern.solve(*pattern.factorize(values), np.ones((1, d, 1)))
