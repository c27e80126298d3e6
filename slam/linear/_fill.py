"""The fill of a sparse Cholesky factor, from the pattern and an ordering alone (no numeric work).

CHOLMOD chooses between its simplicial (column by column) and supernodal (dense blocks, BLAS)
factorizations by ``flops / nnz(L)``, switching at 40.  Normal equations of pose graphs and other
block-sparse problems come in 3x3 and 6x6 blocks whose supernodes are small: measured on the pose
graphs of ``../shared/data`` (1 thread, ``benchmarks/sparse_factorization.py``), the block
factorization (``_block_cholesky``) is 2.4-2.9x faster than CHOLMOD's simplicial one up to
``flops / nnz(L)`` of 100 (smallGrid3D, intel, parking-garage, city10000); at 259 (sphere2500) the
block one is 1.2-1.45x faster than CHOLMOD's supernodal one on 1 thread, but the supernodal one's
BLAS uses every core (2 here: 0.79x), so the switch stays between 100 and 259.  ``cholesky_work`` gives
that ratio for an ordering, so that the sparse solver can pick the factorization per structure.
"""

from __future__ import annotations

import numpy as np

from liegeo._kernels import numba_available

SUPERNODAL_SWITCH = 160.0
"""Supernodal (BLAS) at or above this ``flops / nnz(L)``, block or simplicial below (between the measured
100 and 259; see the module doc)."""


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
