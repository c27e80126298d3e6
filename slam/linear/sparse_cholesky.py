"""Batched sparse Cholesky for normal equations ``H = JᵀJ`` that share one sparsity pattern.

A Gauss-Newton / Levenberg-Marquardt solver factorizes one matrix per iteration and per problem of
an outer batch, always with the same pattern.  ``BatchedSparseCholesky`` runs CHOLMOD's symbolic
analysis (fill-reducing ordering, supernodes) once and reuses it for every numeric factorization;
``sparse_solve`` is the differentiable solve ``x = H⁻¹ b`` built on it.

Matrices are given by their ``values: (B, nnz)`` on a ``SparsePattern`` (the lower triangle, CSC
order).  CHOLMOD runs on the CPU in float64; inputs on other devices or in other dtypes are copied
there and the results copied back.
"""

from __future__ import annotations

import weakref
from typing import Any

import numpy as np
import scipy.sparse as sp
import scipy.sparse.linalg as spla
import torch
from torch import Tensor
from torch.autograd.function import once_differentiable

from ._fill import BLOCK_SUPERNODES, SIMPLICIAL_SWITCH, SUPERNODAL_SWITCH, cholesky_work


def _cholmod() -> Any:
    """The ``sksparse.cholmod`` module, or None where scikit-sparse is not installed."""
    try:
        from sksparse import cholmod
    except ImportError:
        return None
    return cholmod


class NotPositiveDefiniteError(RuntimeError):
    """For callers that need every matrix of a batch factorized; ``factorize`` itself reports failures
    through its ``ok`` mask and never raises this."""


class SparsePattern:
    """Lower-triangular pattern of an ``n x n`` symmetric matrix in CSC order (by column, then row).

    Attributes:
        n: Matrix size.
        rows, cols: ``(nnz,)`` int64 coordinates, ``rows >= cols``, sorted, no duplicates.
        indptr, indices: CSC column pointers ``(n + 1,)`` and row indices ``(nnz,)`` as numpy arrays,
            int32 unless the sizes need int64 (the dtype CHOLMOD is then asked to use).
        diagonal: ``(n,)`` int64, position of entry ``(i, i)`` in the values array (always present).
    """

    def __init__(self, n: int, rows: Tensor, cols: Tensor):
        """Wraps coordinates that are already canonical (see ``from_coordinates`` for any others)."""
        self.n, self.rows, self.cols = int(n), rows.long(), cols.long()
        r, c = self.rows.cpu().numpy(), self.cols.cpu().numpy()
        keys = c * self.n + r
        if r.shape != c.shape or r.ndim != 1 or np.any(r < c) or np.any(keys[1:] <= keys[:-1]):
            raise ValueError("rows/cols must be 1-D, lower-triangular, sorted by (col, row), unique")
        index_dtype = np.int32 if max(self.n, r.size) < 2**31 - 1 else np.int64
        self.indptr = np.zeros(self.n + 1, dtype=index_dtype)
        np.cumsum(np.bincount(c, minlength=self.n), out=self.indptr[1:])
        self.indices = r.astype(index_dtype)
        self.diagonal = torch.nonzero(self.rows == self.cols).squeeze(1)
        if self.diagonal.numel() != self.n:
            raise ValueError("the pattern must contain every diagonal entry")

    @property
    def nnz(self) -> int:
        return self.rows.numel()

    def matvec(self, values: Tensor, x: Tensor) -> Tensor:
        """``H x`` for the symmetric matrices given by ``values: (B, nnz)`` and ``x: (B, n)`` (differentiable)."""
        rows, cols = self.rows.to(x.device), self.cols.to(x.device)
        off = rows != cols
        y = torch.zeros_like(x).index_add(1, rows, values * x[:, cols])
        return y.index_add(1, cols[off], values[:, off] * x[:, rows[off]])

    @classmethod
    def from_coordinates(cls, n: int, rows: Tensor, cols: Tensor) -> tuple[SparsePattern, Tensor]:
        """Pattern of the given pairs plus the full diagonal, and where each pair lands.

        Args:
            n: Matrix size.
            rows, cols: Integer tensors of one shape ``(*S)``, any order; duplicates allowed; ``(r, c)``
                and ``(c, r)`` denote the same symmetric entry.

        Returns:
            ``(pattern, slot)`` with ``slot: (*S)`` int64, the position of each pair in the values
            array, so that ``values.index_add_(-1, slot.flatten(), contributions)`` assembles ``H``.
            Each symmetric contribution must be given once: ``(r, c)`` and ``(c, r)`` add up.
        """
        rows, cols = torch.as_tensor(rows), torch.as_tensor(cols)
        if rows.shape != cols.shape:
            raise ValueError(f"rows {tuple(rows.shape)} and cols {tuple(cols.shape)} differ in shape")
        if rows.numel() and (min(rows.min(), cols.min()) < 0 or max(rows.max(), cols.max()) >= n):
            raise ValueError(f"coordinates out of range for n = {n}")
        lo, hi = torch.minimum(rows, cols).reshape(-1).long(), torch.maximum(rows, cols).reshape(-1).long()
        diag = torch.arange(n, device=rows.device)
        # One int64 key per entry, ordered as CSC (column-major); unique sorts and maps pairs to slots.
        keys, inverse = torch.unique(torch.cat([lo * n + hi, diag * (n + 1)]), return_inverse=True)
        pattern = cls(n, keys % n, keys // n)
        return pattern, inverse[: lo.numel()].reshape(rows.shape)


class _Numeric:
    """The numeric factors of one ``factorize`` call (None where it failed) and a float64 copy of its
    ``values: (B, nnz)``.  ``sparse_solve`` keeps this object for its backward pass, so a later
    ``factorize`` cannot overwrite its factors."""

    __slots__ = ("factors", "backend", "values", "__weakref__")

    def __init__(self, factors: list[Any], backend: str, values: np.ndarray):
        self.factors, self.backend, self.values = factors, backend, values

    def solve(self, rhs: Tensor) -> Tensor:
        """``rhs: (B, n)`` or ``(B, n, k)`` -> ``H_b⁻¹ rhs_b`` (zeros where the factorization failed)."""
        if rhs.dim() not in (2, 3) or rhs.shape[0] != len(self.factors):
            raise ValueError(f"rhs must be ({len(self.factors)}, n) or ({len(self.factors)}, n, k), "
                             f"got {tuple(rhs.shape)}")
        b = rhs.detach().to("cpu", torch.float64).contiguous().numpy()
        out = np.zeros(b.shape, dtype=np.float64)
        for i, f in enumerate(self.factors):
            if f is not None:
                out[i] = f.solve_A(b[i]) if self.backend == "cholmod" else f.solve(b[i])
        return torch.from_numpy(out).to(device=rhs.device, dtype=rhs.dtype)


class _BlockNumeric:
    """The block factors of one ``factorize`` call (``slam.linear._block_cholesky`` or ``_supernodal``: the
    tuple its ``factorize`` returns, ``ok (B,)`` last), kept like ``_Numeric``."""

    __slots__ = ("pattern", "factor", "ok", "values", "__weakref__")

    def __init__(self, pattern: Any, factor: tuple[np.ndarray, ...], values: np.ndarray):
        self.pattern, self.factor, self.ok, self.values = pattern, factor, factor[-1], values

    def solve(self, rhs: Tensor) -> Tensor:
        if rhs.dim() not in (2, 3) or rhs.shape[0] != self.ok.shape[0]:
            raise ValueError(f"rhs must be ({self.ok.shape[0]}, n) or ({self.ok.shape[0]}, n, k), got {tuple(rhs.shape)}")
        b = rhs.detach().to("cpu", torch.float64).numpy()
        out = self.pattern.solve(*self.factor, b if b.ndim == 3 else b[..., None])
        out = out if rhs.dim() == 3 else out[..., 0]
        return torch.from_numpy(out).to(device=rhs.device, dtype=rhs.dtype)


def _block_ordering(cholmod: Any, bindptr: np.ndarray, bindices: np.ndarray,
                    methods: tuple[str, ...] = ("amd", "metis", "nesdis")) -> np.ndarray:
    """A fill-reducing ordering of the block graph: where scikit-sparse is installed, the one of CHOLMOD's
    ``methods`` (default AMD, METIS and nested dissection) that needs the fewest flops (``cholesky_work``; on the block graph,
    once per shape: nested dissection needs 15 % fewer flops than AMD on city10000, for 60 ms of analysis;
    AMD stays best on smallGrid3D, intel, manhattan and parking-garage), else SuperLU's minimum degree on
    ``AᵀA + A``."""
    nb = bindptr.size - 1
    graph = sp.csc_matrix((np.ones(bindices.size), bindices, bindptr), (nb, nb))
    if cholmod is not None:
        best, best_flops = None, np.inf
        for method in methods:
            try:
                perm = np.asarray(cholmod.analyze(graph, mode="simplicial", ordering_method=method).P(), dtype=np.int64)
            except Exception:  # noqa: BLE001 - a CHOLMOD built without METIS (CholmodError): AMD stands
                continue
            flops = cholesky_work(bindptr, bindices, perm)[1]
            if flops < best_flops:
                best, best_flops = perm, flops
        if best is not None:
            return best
    full = graph + graph.T + sp.eye(nb) * (2.0 * nb)  # diagonally dominant: no pivoting off the diagonal
    lu = spla.splu(sp.csc_matrix(full), permc_spec="MMD_AT_PLUS_A", diag_pivot_thresh=0.0,
                   options={"SymmetricMode": True})
    return np.argsort(lu.perm_c).astype(np.int64)  # perm_c[i] is where block i goes


def _recycle(spare: list[Any], factors: list[Any], cap: int) -> None:
    """Hands the factors of an unused ``_Numeric`` back to the pool, keeping at most ``cap``."""
    spare.extend(factors[: max(cap - len(spare), 0)])


class BatchedSparseCholesky:
    """Factorizes batches of SPD matrices on one ``SparsePattern``, reusing the symbolic analysis.

    Backends:
        ``"cholmod"``: CHOLMOD (scikit-sparse), simplicial or supernodal by the work the pattern implies
            (``slam.linear._fill``); detects matrices that are not positive
            definite.  Numeric factors are recycled in place once neither a pending backward pass nor
            the live values tensor they were made from holds them (10-20 % faster than new ones).
        ``"scipy"``: SuperLU (``splu``) of the mirrored full matrix, for installs without CHOLMOD; no
            symbolic reuse.  Pivots are symmetric (diagonal), so the signs of ``U``'s diagonal give
            the inertia: ``ok`` is False for singular, indefinite or non-finite matrices, as with
            CHOLMOD (and, conservatively, wherever SuperLU pivoted off the diagonal).
        ``"auto"``: ``"cholmod"`` where scikit-sparse imports, else ``"scipy"``.
    """

    def __init__(self, pattern: SparsePattern, backend: str = "auto", *, symbolic_cache: dict | None = None,
                 mode: str = "auto"):
        """``symbolic_cache``: where the symbolic analysis is kept for other factorizers of the same
        pattern (it is only ever copied from, never factorized in place); none: this one's own.
        ``mode``: CHOLMOD's ``"simplicial"`` or ``"supernodal"`` factorization, or ``"auto"`` (by the
        work the pattern implies, ``slam.linear._fill``)."""
        if mode not in ("auto", "simplicial", "supernodal", "block"):
            raise ValueError(f"mode must be auto, simplicial, supernodal or block, got {mode!r}")
        if backend == "auto":
            backend = "cholmod" if _cholmod() is not None else "scipy"
        if backend == "cholmod" and _cholmod() is None:
            raise ImportError("backend 'cholmod' needs scikit-sparse (pip install 'liegeo-slam[sparse]')")
        if backend not in ("cholmod", "scipy"):
            raise ValueError(f"unknown backend {backend!r}")
        self.pattern, self.backend = pattern, backend
        self._symbolic: Any = None
        self.mode = mode if backend == "cholmod" or mode in ("auto", "block") else "superlu"
        """``"block"`` (``slam.linear._block_cholesky``), CHOLMOD's ``"simplicial"`` or ``"supernodal"``, or
        ``"superlu"`` (``"auto"`` until ``analyze`` chooses)."""
        self._symbolic_cache = {} if symbolic_cache is None else symbolic_cache
        self._numeric: _Numeric | None = None
        self._spare: list[Any] = []
        # id(values tensor) -> (weak reference to it, its factorization), so that sparse_solve finds the
        # factors of its own values even after later factorize calls (e.g. an implicit backward pass).
        self._by_values: dict[int, tuple[weakref.ref, Any, int]] = {}
        n = pattern.n
        if backend == "cholmod":
            # One matrix whose .data is swapped per factorization: no per-matrix scipy validation,
            # and the sortedness flag spares the wrapper its O(nnz) check.
            self._matrix = sp.csc_matrix((np.zeros(pattern.nnz), pattern.indices, pattern.indptr), (n, n))
            self._matrix.has_sorted_indices = True
        else:
            # Full symmetric CSC: the lower entries plus the mirrored strictly lower ones; _source maps
            # each full entry to its position in the values array.
            r, c = pattern.indices.astype(np.int64), pattern.cols.cpu().numpy()
            off = np.flatnonzero(r != c)
            full_r, full_c = np.concatenate([r, c[off]]), np.concatenate([c, r[off]])
            order = np.lexsort((full_r, full_c))
            self._source = np.concatenate([np.arange(r.size), off])[order]
            self._full_indices = full_r[order].astype(pattern.indices.dtype)
            self._full_indptr = np.zeros(n + 1, dtype=pattern.indptr.dtype)
            np.cumsum(np.bincount(full_c, minlength=n), out=self._full_indptr[1:])

    def factorize(self, values: Tensor) -> Tensor:
        """Numeric factorization of each matrix of the batch.

        Args:
            values: ``(B, nnz)`` floating values in the pattern's order, any dtype and device.

        Returns:
            ``ok: (B,)`` bool on ``values.device``, False where a matrix is not positive definite
            (or not finite); those rows solve to zeros.  Computed in float64.
        """
        if values.dim() != 2 or values.shape[1] != self.pattern.nnz or not values.is_floating_point():
            raise ValueError(f"values must be floating (B, {self.pattern.nnz}), got {tuple(values.shape)}")
        v = values.detach().to("cpu", torch.float64, copy=True).contiguous().numpy()
        # Drop the previous factors (and those of this tensor, being refactorized) first, so that they
        # can be recycled below unless a pending backward pass or a live values tensor holds them.
        self._numeric = None
        self._by_values.pop(id(values), None)
        self.analyze()
        if self.mode == "block":
            factor = self._symbolic.factorize(v)
            ok = factor[-1]
            self._numeric = numeric = _BlockNumeric(self._symbolic, factor, v)
            self._remember(values, numeric)
            return torch.from_numpy(ok.copy()).to(values.device)  # (the kernel tests finiteness itself)
        finite = np.isfinite(v).all(axis=1)
        factors = [self._factorize_one(row) if good else None for row, good in zip(v, finite)]
        self._numeric = numeric = _Numeric(factors, self.backend, v)
        if self.backend == "cholmod":
            done = [f for f in factors if f is not None]
            weakref.finalize(numeric, _recycle, self._spare, done, len(factors)).atexit = False
        self._spare.clear()  # leftovers (the batch shrank) would only hold memory
        self._remember(values, numeric)
        return torch.tensor([f is not None for f in factors], dtype=torch.bool, device=values.device)

    def _remember(self, values: Tensor, numeric: Any) -> None:
        try:
            ref = weakref.ref(values, lambda _, table=self._by_values, key=id(values): table.pop(key, None))
            self._by_values[id(values)] = (ref, numeric, values._version)
        except TypeError:  # not weak-referenceable: sparse_solve falls back to the last factorization
            pass

    def _factorize_one(self, data: np.ndarray) -> Any:
        """One factor object for ``data: (nnz,)`` float64, or None if the matrix is not PD / singular."""
        n = self.pattern.n
        if self.backend == "scipy":
            full = sp.csc_matrix((data[self._source], self._full_indices, self._full_indptr), shape=(n, n))
            # Diagonal pivots in a symmetric ordering: stable for SPD, less fill than partial pivoting.
            try:
                lu = spla.splu(full, permc_spec="MMD_AT_PLUS_A", diag_pivot_thresh=0.0,
                               options={"SymmetricMode": True})
            except RuntimeError:  # "Factor is exactly singular"
                return None
            # With symmetric (diagonal) pivots, P H Pᵀ = L U with U = D L̃ᵀ: H is positive definite iff
            # every pivot is positive (Sylvester's inertia).  Other pivoting proves nothing: not ok.
            pivots = lu.U.diagonal()
            if not (np.array_equal(lu.perm_r, lu.perm_c) and np.all(pivots > 0) and np.all(np.isfinite(pivots))):
                return None
            return lu
        cholmod = _cholmod()
        self._matrix.data = data  # CHOLMOD reads only this (lower) triangle
        factor = self._spare.pop() if self._spare else self._symbolic.copy()
        try:
            factor.cholesky_inplace(self._matrix)
        except cholmod.CholmodNotPositiveDefiniteError:
            self._spare.append(factor)  # still reusable for the next matrix
            return None
        # Simplicial CHOLMOD factorizes LDLᵀ, which also succeeds on indefinite matrices: positive
        # definite iff every pivot is positive (supernodal LLᵀ fails on a non-positive pivot itself).
        if self.mode == "simplicial":
            pivots = factor.D()
            if not (np.all(pivots > 0) and np.all(np.isfinite(pivots))):
                self._spare.append(factor)
                return None
        return factor

    def analyze(self) -> None:
        """The symbolic analysis (ordering, and CHOLMOD's choice of mode), once: it depends on the pattern
        only, and is kept in the shared ``symbolic_cache``.  Nothing to do for SuperLU."""
        if self._symbolic is not None or self.mode == "superlu":
            return
        key = ("sparse-symbolic", self.pattern.n, self.pattern.nnz, self.mode, self.backend)
        if key not in self._symbolic_cache:
            self._symbolic_cache[key] = self._analyze(_cholmod(), self.mode)
        self._symbolic, self.mode = self._symbolic_cache[key]

    def _analyze(self, cholmod: Any, mode: str) -> tuple[Any, str]:
        """The symbolic factorization and its mode; ``"auto"``: simplicial or supernodal by the work
        the ordering implies (``_fill``)."""
        if mode in ("auto", "block"):
            block = self._block_analysis(cholmod, required=mode == "block")
            if block is not None:
                return block, "block"
        if self.backend == "scipy":
            return None, "superlu"
        use_long = self.pattern.indices.dtype == np.int64
        if mode == "supernodal":
            return cholmod.analyze(self._matrix, mode="supernodal", use_long=use_long), "supernodal"
        simplicial = cholmod.analyze(self._matrix, mode="simplicial", use_long=use_long)
        if mode == "simplicial":
            return simplicial, "simplicial"
        lnz, flops = cholesky_work(self.pattern.indptr, self.pattern.indices, simplicial.P())
        if flops / lnz < SIMPLICIAL_SWITCH:
            return simplicial, "simplicial"
        return cholmod.analyze(self._matrix, mode="supernodal", use_long=use_long), "supernodal"

    def _block_analysis(self, cholmod: Any, *, required: bool) -> Any:
        """The block factorization's symbolic analysis where it applies and is the faster choice: the
        unknowns come in complete blocks of one size d >= 2 (a pose graph's 3 or 6), numba is
        installed, and the fill is low enough that supernodes would not pay (``flops / nnz(L)`` of the
        block ordering below ``SUPERNODAL_SWITCH``; measured: ``benchmarks/sparse_factorization.py``)."""
        from liegeo._kernels import numba_available

        pattern, found = self.pattern, None
        if numba_available():
            from ._block_cholesky import BlockPattern, find_blocks

            found = find_blocks(pattern.indptr, pattern.indices)
        if found is None:
            if required:
                raise ValueError("mode 'block' needs numba and a pattern of complete blocks of one size")
            return None

        d, blocks = found
        bindptr, bindices = blocks
        perm = _block_ordering(cholmod, bindptr, bindices)
        lnz, flops = cholesky_work(bindptr, bindices, perm)
        ratio = d * flops / lnz
        if not required and ratio >= SUPERNODAL_SWITCH and self.backend == "cholmod":
            return None
        if ratio >= BLOCK_SUPERNODES:
            from ._supernodal import SupernodalPattern

            return SupernodalPattern(pattern.indptr, pattern.indices, d, perm, blocks)
        return BlockPattern(pattern.indptr, pattern.indices, d, perm, blocks)

    def solve(self, rhs: Tensor) -> Tensor:
        """Solves with the factorizations of the last ``factorize`` call.

        Args:
            rhs: ``(B, n)`` or ``(B, n, k)``.

        Returns:
            Solutions shaped, typed and placed like ``rhs``; zeros for rows whose factorization failed.
        """
        if self._numeric is None:
            raise RuntimeError("call factorize() before solve()")
        return self._numeric.solve(rhs)

    def _numeric_of(self, values: Tensor) -> _Numeric:
        """The factorization of ``values``: the one made from this very tensor if it was not modified since,
        else the last one, checked against the values since stale factors would give silently wrong results."""
        ref, numeric, version = self._by_values.get(id(values), (None, self._numeric, -1))
        if ref is not None and ref() is values and values._version == version:
            return numeric  # this very tensor, not modified in place since (torch's version counter)
        if ref is not None and ref() is not values:
            numeric = self._numeric
        current = values.detach().to("cpu", torch.float64).numpy()
        if numeric is None or not np.array_equal(numeric.values, current, equal_nan=True):
            raise ValueError("factor does not hold the factorization of these values; "
                             "call factor.factorize(values) first")
        return numeric


class _SparseSolve(torch.autograd.Function):
    @staticmethod
    def forward(ctx: Any, values: Tensor, rhs: Tensor, factor: BatchedSparseCholesky) -> Tensor:
        if values.shape[0] != rhs.shape[0]:
            raise ValueError(f"batch sizes differ: values {tuple(values.shape)}, rhs {tuple(rhs.shape)}")
        ctx.numeric, ctx.pattern = factor._numeric_of(values), factor.pattern  # these factors, for backward
        x = ctx.numeric.solve(rhs)
        ctx.save_for_backward(x)
        ctx.values_dtype, ctx.values_device = values.dtype, values.device
        return x

    @staticmethod
    @once_differentiable
    def backward(ctx: Any, grad_x: Tensor) -> tuple[Tensor | None, Tensor, None]:
        (x,) = ctx.saved_tensors
        grad_rhs = ctx.numeric.solve(grad_x)
        grad_values = None
        if ctx.needs_input_grad[0]:
            grad_values = pattern_gradient(ctx.pattern, grad_rhs, x).to(device=ctx.values_device,
                                                                         dtype=ctx.values_dtype)
        return grad_values, grad_rhs, None


def pattern_gradient(pattern: SparsePattern, grad_rhs: Tensor, x: Tensor) -> Tensor:
    """``∂L/∂values`` of ``x = H⁻¹ b`` given ``grad_rhs = H⁻¹ ∂L/∂x``: ``(B, nnz)``.

    ``∂L/∂H = -grad_rhs xᵀ``; an off-diagonal value stands for ``H[r, c]`` and ``H[c, r]``, so it gets
    both products; a diagonal one gets the product once (hence the halving of the doubled sum).
    """
    rows, cols = pattern.rows.to(x.device), pattern.cols.to(x.device)
    g = -(grad_rhs[:, rows] * x[:, cols] + grad_rhs[:, cols] * x[:, rows])
    if g.dim() == 3:  # several right-hand sides contribute additively
        g = g.sum(-1)
    g[:, pattern.diagonal.to(x.device)] *= 0.5
    return g


def sparse_solve(values: Tensor, rhs: Tensor, factor: BatchedSparseCholesky) -> Tensor:
    """Differentiable batched ``x = H⁻¹ rhs``.

    Args:
        values: ``(B, nnz)`` lower-triangular values of ``H`` on ``factor.pattern``.
        rhs: ``(B, n)`` (or ``(B, n, k)``).
        factor: Must hold the factorization of ``values``: ``factor.factorize(values)`` was called
            on this very tensor (still alive, not modified since), or was the last call, with equal
            values; otherwise ValueError.  The forward pass does not refactorize, and the backward
            pass keeps its own factors, so later ``factorize`` calls disturb neither.

    Returns:
        ``x`` shaped, typed and placed like ``rhs``; zeros for matrices that failed to factorize.
        Gradients flow to ``values`` and ``rhs`` (once differentiable).
    """
    if not torch.is_grad_enabled() or not (values.requires_grad or rhs.requires_grad):
        # Nothing to differentiate: the factors' solve without autograd.Function's bookkeeping (an
        # optimizer's step, every iteration).
        if values.shape[0] != rhs.shape[0]:
            raise ValueError(f"batch sizes differ: values {tuple(values.shape)}, rhs {tuple(rhs.shape)}")
        return factor._numeric_of(values).solve(rhs)
    return _SparseSolve.apply(values, rhs, factor)
