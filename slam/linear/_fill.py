"""The fill of a sparse Cholesky factor, from the pattern and an ordering alone (no numeric work).

CHOLMOD chooses between its simplicial (column by column) and supernodal (dense blocks, BLAS)
factorizations by ``flops / nnz(L)``, switching at 40.  Normal equations of pose graphs and other
block-sparse problems come in 3x3 and 6x6 blocks, and two block factorizations of our own beat both
(1 thread, ``benchmarks/sparse_factorization.py``): the up-looking one (``_block_cholesky``, one d x d
block at a time) is 2.4-2.9x faster than CHOLMOD's simplicial one up to ``flops / nnz(L)`` of 100
(smallGrid3D, intel, parking-garage, city10000); the supernodal one (``_supernodal``: dense panels,
BLAS) takes over from ``BLOCK_SUPERNODES`` and is faster than CHOLMOD's supernodal factorization at
every fill measured, with the ratio ``d·flops / nnz(L)`` of the block ordering the solver uses: 3.2x at
231 (sphere2500), 2.9x at 210, 2.4x at 425, 2.1x at 540 and 1.7x at 819 (cube grids of 4,096, 3,000,
4,096 and 8,000 poses with 0.5-1 loop closures per pose).  Only beyond ``SUPERNODAL_SWITCH`` (not
measured) does CHOLMOD's supernodal one take the block patterns.  ``cholesky_work`` gives that ratio for
an ordering, so that the sparse solver can pick the factorization per structure.
"""

from __future__ import annotations

import numpy as np

from liegeo._kernels import numba_available

SIMPLICIAL_SWITCH = 160.0
"""Where the block factorization does not apply (d = 1): CHOLMOD's supernodal factorization at or above
this ``flops / nnz(L)``, its simplicial one below (simplicial measured faster up to 100, supernodal 1.8x
faster at 259: ``benchmarks/sparse_factorization.py``)."""

BLOCK_SUPERNODES = 60.0
"""Block patterns at or above this ``d·flops / nnz(L)`` take the supernodal block factorization
(``slam.linear._supernodal``: dense panels and BLAS), below it the up-looking one (``_block_cholesky``:
d x d blocks one at a time, whose solve is a little faster).  Measured, supernodal against up-looking
factorization: 1.00x at 35 (manhattan), 1.04x at 54 (parking-garage), 1.35x at 72 (city10000), 1.3x at
101 (smallGrid3D), 2.3-2.45x at 231 (sphere2500)."""

SUPERNODAL_SWITCH = 1000.0
"""Block patterns at or above this ``d·flops / nnz(L)`` go to CHOLMOD's supernodal factorization (whose
BLAS may use every core): ours was 1.7x faster at 819, the highest fill measured (see the module doc)."""


def cholesky_work(indptr: np.ndarray, indices: np.ndarray, perm: np.ndarray) -> tuple[int, float]:
    """``(nnz(L), flops)`` of the Cholesky factor of ``P A Pᵀ``.

    Args:
        indptr, indices: CSC pattern ``(n + 1,)``, ``(nnz,)`` of the lower triangle of a symmetric
            ``n x n`` matrix (rows >= cols; the diagonal is implied).
        perm: ``(n,)`` the ordering: row/column ``k`` of the factorized matrix is ``perm[k]`` of A
            (CHOLMOD's ``Factor.P()``).

    ``flops`` is ``Σ_j c_j²`` over the column counts ``c_j`` of L (diagonal included), the usual
    measure of a factorization's work.  Elimination tree (Liu) and row subtrees: ``O(nnz(L))``.
    """
    n = indptr.shape[0] - 1
    counts = _column_counts(n, indptr.astype(np.int64), indices.astype(np.int64), perm.astype(np.int64))
    counts = counts.astype(np.float64) + 1.0
    return int(counts.sum()), float(np.square(counts).sum())


def _column_counts_python(n: int, indptr: np.ndarray, indices: np.ndarray, perm: np.ndarray) -> np.ndarray:
    """Below-diagonal entries per column of L (see ``cholesky_work``)."""
    inverse = np.empty(n, dtype=np.int64)
    inverse[perm] = np.arange(n)
    # Row lists of the permuted strictly lower triangle: row i holds the columns k < i with A[i, k] != 0.
    sizes = np.zeros(n + 1, dtype=np.int64)
    for c in range(n):
        for p in range(indptr[c], indptr[c + 1]):
            a, b = inverse[indices[p]], inverse[c]
            if a != b:
                sizes[max(a, b) + 1] += 1
    starts = np.cumsum(sizes)
    fill = starts[:-1].copy()
    columns = np.empty(starts[-1], dtype=np.int64)
    for c in range(n):
        for p in range(indptr[c], indptr[c + 1]):
            a, b = inverse[indices[p]], inverse[c]
            if a != b:
                i = max(a, b)
                columns[fill[i]] = min(a, b)
                fill[i] += 1
    parent = np.full(n, -1, dtype=np.int64)
    ancestor = np.full(n, -1, dtype=np.int64)
    for i in range(n):  # the elimination tree, with path compression
        for p in range(starts[i], starts[i + 1]):
            k = columns[p]
            while ancestor[k] != -1 and ancestor[k] != i:
                following = ancestor[k]
                ancestor[k] = i
                k = following
            if ancestor[k] == -1:
                ancestor[k] = i
                parent[k] = i
    counts = np.zeros(n, dtype=np.int64)
    mark = np.full(n, -1, dtype=np.int64)
    for i in range(n):  # row i of L: the union of the tree paths from each k up to i
        mark[i] = i
        for p in range(starts[i], starts[i + 1]):
            j = columns[p]
            while mark[j] != i:
                mark[j] = i
                counts[j] += 1
                j = parent[j]
    return counts


if numba_available():
    import numba

    _column_counts = numba.njit(cache=True)(_column_counts_python)
else:  # pragma: no cover - numba is a dependency; pure Python is slow but right
    _column_counts = _column_counts_python
