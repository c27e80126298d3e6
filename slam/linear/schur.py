"""Schur complement: eliminate one variable table whose elements are coupled only to the other
variables (bundle adjustment's points), then factorize the reduced system.

With ``H = [[A, W], [Wᵀ, C]]`` and ``C`` block diagonal (one ``d x d`` block per eliminated element),

    S = A - W C⁻¹ Wᵀ,   S x_k = b_k - W C⁻¹ b_e,   x_e = C⁻¹ (b_e - Wᵀ x_k).

The reduced system is solved by one of (``reduced``):

- ``"dense"``: ``S`` formed densely and factorized by a batched dense Cholesky (right for up to a
  few thousand kept dimensions: 441 for Ladybug-49's cameras);
- ``"sparse"``: ``S`` formed in its own sparsity pattern (cameras that share a point) and factorized
  by CHOLMOD, reusing the symbolic analysis (for many cameras, where a dense ``S`` would not fit);
- ``"pcg"``: iterative Schur, conjugate gradients on the dense ``S`` preconditioned by the inverses of
  its diagonal blocks, one per kept variable element, to a relative residual ``tolerance``;
- ``"auto"`` (default): dense up to 4,000 kept dimensions, sparse beyond.

The index bookkeeping (which entries of ``H`` form
``A``, ``C`` and ``W``) is done once per structure (``SchurLayout``); each iteration runs two numba
loops over the eliminated elements.  The solve is differentiable in ``H``'s values and the
right-hand side (the same formulas as ``sparse_solve``), so every backward mode works.
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Any

import numpy as np
import torch
from torch import Tensor
from torch.autograd.function import once_differentiable

from liegeo._kernels import numba_available

from ..structure import Structure
from ..variables import Variable
from .base import Factorization, LinearSolver
from .sparse_cholesky import _cholmod, pattern_gradient


@dataclasses.dataclass(frozen=True)
class SchurLayout:
    """Where the blocks of ``H`` live in its lower-triangle values (``nnz`` = an absent entry, 0)."""

    keep_columns: Tensor
    """``(nk,)`` columns of ``H`` kept in ``S``, in order."""
    elim_columns: Tensor
    """``(P·d,)`` eliminated columns, element by element."""
    d: int
    a_row: np.ndarray
    a_col: np.ndarray
    a_slot: np.ndarray
    """Entries of ``A`` (lower, in ``S``'s indices) and their slots in the values."""
    c_slot: np.ndarray
    """``(P, d, d)`` slots of each ``C_e`` (both triangles)."""
    ptr: np.ndarray
    """``(P + 1,)``: the coupling rows of element ``e`` are ``ptr[e]:ptr[e+1]``."""
    keep: np.ndarray
    """``(nW,)`` the kept column (index into ``S``) of each coupling row; ascending within an element."""
    w_slot: np.ndarray
    """``(nW, d)`` slots of ``W[keep, e's d columns]``."""
    blocks: tuple[Tensor, ...]
    """Per block size: ``(K, size)`` indices into ``S`` of the kept variable elements (block-Jacobi)."""

    # Derived tables, computed on first use (cached_property writes to the instance dict, which a frozen
    # dataclass allows): only the backends and reduced systems that need them pay for them.

    @functools.cached_property
    def row_element(self) -> np.ndarray:
        """``(nW,)`` the eliminated element of each coupling row."""
        return np.repeat(np.arange(self.ptr.size - 1), np.diff(self.ptr))

    @functools.cached_property
    def row_pairs(self) -> tuple[np.ndarray, np.ndarray]:
        """All pairs ``(i, j)`` of coupling rows of one element with ``j <= i``, element by element (the
        order the kernels visit them), without a loop over elements."""
        element = self.row_element
        local = np.arange(element.size) - self.ptr[element]
        counts = local + 1
        first = np.repeat(np.cumsum(counts) - counts, counts)
        i = np.repeat(np.arange(element.size), counts)
        j = np.repeat(self.ptr[element], counts) + (np.arange(int(counts.sum())) - first)
        return i, j

    @functools.cached_property
    def sparse_reduced(self) -> tuple[Any, np.ndarray, np.ndarray]:
        """``S``'s lower-triangle ``SparsePattern`` and the slot in its values of each ``A`` entry and of
        each row pair of ``row_pairs``."""
        from .sparse_cholesky import SparsePattern

        i, j = self.row_pairs
        rows = np.concatenate([self.a_row, self.keep[i]])
        cols = np.concatenate([self.a_col, self.keep[j]])
        pattern, slot = SparsePattern.from_coordinates(self.keep_columns.numel(), torch.from_numpy(rows),
                                                       torch.from_numpy(cols))
        slot = slot.numpy()
        return pattern, slot[: self.a_row.size], slot[self.a_row.size :]

    @functools.cached_property
    def _symbolic(self) -> dict:
        """The symbolic analysis of ``S``, shared by every problem of this shape (only copied from)."""
        return {}

    def sparse_factor(self, structure: Structure) -> Any:
        """The CHOLMOD factorizer of ``S`` for one problem (kept in its ``structure.solver_cache``: numeric
        factors are never shared between problems; the layout itself is, in ``shared_cache``)."""
        from .sparse_cholesky import BatchedSparseCholesky

        key = ("schur-reduced-factor", id(self))
        if key not in structure.solver_cache:
            structure.solver_cache[key] = BatchedSparseCholesky(self.sparse_reduced[0], symbolic_cache=self._symbolic)
        return structure.solver_cache[key]

    @classmethod
    def analyze(cls, structure: Structure, table: int) -> SchurLayout:
        layout = structure.tables[table]
        lo, d = layout.offset, layout.dim
        hi = lo + layout.num_free * d
        n, nnz = structure.n, structure.nnz
        rows, cols = structure.pattern.rows.cpu().numpy(), structure.pattern.cols.cpu().numpy()
        slots = np.arange(nnz)
        in_rows, in_cols = (rows >= lo) & (rows < hi), (cols >= lo) & (cols < hi)
        keep_columns = np.concatenate([np.arange(lo), np.arange(hi, n)])
        keep_index = np.full(n, -1)
        keep_index[keep_columns] = np.arange(keep_columns.size)

        a = ~in_rows & ~in_cols
        c = in_rows & in_cols
        element_r, element_c = (rows[c] - lo) // d, (cols[c] - lo) // d
        if np.any(element_r != element_c):
            k = int(np.flatnonzero(element_r != element_c)[0])
            raise ValueError(f"the Schur complement needs the eliminated elements to be uncoupled; elements "
                             f"{element_r[k]} and {element_c[k]} share a cost")
        c_slot = np.full((layout.num_free, d, d), nnz)
        ra, ca = (rows[c] - lo) % d, (cols[c] - lo) % d
        c_slot[element_r, ra, ca] = slots[c]
        c_slot[element_r, ca, ra] = slots[c]

        w = in_rows ^ in_cols
        elim_col = np.where(in_rows[w], rows[w], cols[w])
        keep_col = keep_index[np.where(in_rows[w], cols[w], rows[w])]
        element, component = (elim_col - lo) // d, (elim_col - lo) % d
        pairs, inverse = np.unique(element * keep_columns.size + keep_col, return_inverse=True)
        w_slot = np.full((pairs.size, d), nnz)
        w_slot[inverse, component] = slots[w]
        pair_element = pairs // keep_columns.size
        ptr = np.zeros(layout.num_free + 1, dtype=np.int64)
        np.cumsum(np.bincount(pair_element, minlength=layout.num_free), out=ptr[1:])
        by_size: dict[int, list[np.ndarray]] = {}
        for position, kept in enumerate(structure.tables):
            if position != table and kept.num_free:
                columns = kept.offset + np.arange(kept.num_free * kept.dim).reshape(kept.num_free, kept.dim)
                by_size.setdefault(kept.dim, []).append(keep_index[columns])
        blocks = tuple(torch.from_numpy(np.concatenate(group)) for group in by_size.values())
        return cls(torch.from_numpy(keep_columns), torch.arange(lo, hi), d,
                   keep_index[rows[a]], keep_index[cols[a]], slots[a], c_slot, ptr,
                   (pairs % keep_columns.size).astype(np.int64), w_slot, blocks)


class SchurFactorization(Factorization):
    """Forms ``S`` and the ``C_e⁻¹`` with the numba kernels on the CPU (``backend="numba"``) or with
    batched torch operations on the values' device (``backend="torch"``: the path for CUDA, and for
    installs without numba; it holds one product per pair of coupling rows, ~90 MB on Ladybug-49)."""

    def __init__(self, structure: Structure, layout: SchurLayout, values: Tensor, reduced: str = "dense",
                 tolerance: float = 1e-10, max_iterations: int = 500, backend: str = "numba"):
        self.structure, self.layout, self.values = structure, layout, values
        self.reduced, self.tolerance, self.max_iterations = reduced, tolerance, max_iterations
        self.backend = backend
        device = values.device if backend == "torch" else torch.device("cpu")
        v = values.detach().to(device, torch.float64)
        self._padded = torch.cat([v, torch.zeros(v.shape[0], 1, dtype=torch.float64, device=device)], dim=1)
        # The coupling rows W, gathered once into a contiguous array (see _schur_kernels)
        self._w = self._padded[:, torch.from_numpy(layout.w_slot).to(device)]
        if reduced == "sparse":
            if backend != "numba":
                raise ValueError("the sparse reduced system needs the numba backend (CPU)")
            self._reduce_sparse()
            return
        s_tensor, ok = self._reduce_numba() if backend == "numba" else self._reduce_torch()
        nk = s_tensor.shape[-1]
        s_tensor[~ok] = torch.eye(nk, dtype=torch.float64, device=device)  # placeholders, reported not ok
        if reduced == "dense":
            self._factor, info = torch.linalg.cholesky_ex(s_tensor)
        else:  # block-Jacobi preconditioner: the inverse of each kept element's diagonal block of S
            self._s, self._block_inverses = s_tensor, []
            info = torch.zeros(v.shape[0], dtype=torch.int32, device=device)
            for index in layout.blocks:
                index = index.to(device)
                block = s_tensor[:, index.unsqueeze(-1), index.unsqueeze(-2)]
                factor, block_info = torch.linalg.cholesky_ex(block)
                info = info | block_info.amax(-1)
                self._block_inverses.append(torch.cholesky_inverse(factor))
        self._ok = ok & (info == 0)
        self.ok = self._ok.to(values.device)

    def _reduce_numba(self) -> tuple[Tensor, Tensor]:
        from . import _schur_kernels as kernels

        layout, padded, w = self.layout, self._padded.numpy(), self._w.numpy()
        batch, nk, num = padded.shape[0], layout.keep_columns.numel(), layout.c_slot.shape[0]
        s = np.empty((batch, nk, nk))
        self._cinv = torch.zeros(batch, num, layout.d, layout.d, dtype=torch.float64)
        ok = np.zeros(batch, dtype=bool)
        for b in range(batch):
            if np.isfinite(padded[b]).all():
                ok[b] = kernels.reduce_matrix(padded[b], layout.a_row, layout.a_col, layout.a_slot,
                                              padded[b][layout.c_slot], layout.ptr, layout.keep, w[b], s[b],
                                              self._cinv[b].numpy())
        return torch.from_numpy(s), torch.from_numpy(ok)

    def _reduce_sparse(self) -> None:
        from . import _schur_kernels as kernels

        layout, padded, w = self.layout, self._padded.numpy(), self._w.numpy()
        pattern, a_target, pair_slot = layout.sparse_reduced
        batch, num = padded.shape[0], layout.c_slot.shape[0]
        values = np.zeros((batch, pattern.nnz))
        self._cinv = torch.zeros(batch, num, layout.d, layout.d, dtype=torch.float64)
        ok = np.zeros(batch, dtype=bool)
        for b in range(batch):
            if np.isfinite(padded[b]).all():
                ok[b] = kernels.reduce_sparse(padded[b], layout.a_slot, a_target, padded[b][layout.c_slot], layout.ptr,
                                              w[b], pair_slot, values[b], self._cinv[b].numpy())
        values[~ok] = 0.0
        values[np.ix_(~ok, pattern.diagonal.numpy())] = 1.0  # placeholders, reported not ok
        self._sparse_values = torch.from_numpy(values)
        self._factor = layout.sparse_factor(self.structure)
        self._ok = torch.from_numpy(ok) & self._factor.factorize(self._sparse_values)
        # This factorization's own numeric factors: the factor object is shared by every iteration, and
        # a backward pass (unrolled) solves with them after later iterations have refactorized.
        self._numeric = self._factor._numeric
        self.ok = self._ok.to(self.values.device)

    def _reduce_torch(self) -> tuple[Tensor, Tensor]:
        layout, padded, device = self.layout, self._padded, self._padded.device
        batch, nk = padded.shape[0], layout.keep_columns.numel()
        index = {name: torch.from_numpy(np.ascontiguousarray(array)).to(device) for name, array in (
            ("c_slot", layout.c_slot), ("a_slot", layout.a_slot), ("a_flat", layout.a_row * nk + layout.a_col),
            ("element", layout.row_element), ("keep", layout.keep))}
        i, j = (torch.from_numpy(a).to(device) for a in layout.row_pairs)
        c = padded[:, index["c_slot"]]
        factor, info = torch.linalg.cholesky_ex(c)
        ok = (info == 0).all(-1) & torch.isfinite(padded).all(-1)
        eye = torch.eye(layout.d, dtype=torch.float64, device=device)
        self._cinv = torch.cholesky_inverse(torch.where((info == 0)[..., None, None], factor, eye))
        y = (self._cinv[:, index["element"]] @ self._w.unsqueeze(-1)).squeeze(-1)  # C⁻¹ w per row
        s = torch.zeros(batch, nk * nk, dtype=torch.float64, device=device)
        s.index_add_(1, index["a_flat"], padded[:, index["a_slot"]])
        keep = index["keep"]
        s.index_add_(1, keep[i] * nk + keep[j], -(y[:, i] * self._w[:, j]).sum(-1))
        s = s.view(batch, nk, nk)
        return torch.tril(s) + torch.tril(s, -1).mT, ok

    def _solve_reduced(self, rhs: Tensor) -> Tensor:
        if self.reduced == "dense":
            return torch.cholesky_solve(rhs.unsqueeze(-1), self._factor).squeeze(-1)
        if self.reduced == "sparse":
            return self._numeric.solve(rhs)
        from .cg import preconditioned_cg

        def precondition(r: Tensor) -> Tensor:
            z = torch.empty_like(r)
            for index, inverse in zip(self.layout.blocks, self._block_inverses):
                index = index.to(r.device)
                z[:, index] = (inverse @ r[:, index].unsqueeze(-1)).squeeze(-1)
            return z

        x, breakdown, converged = preconditioned_cg(lambda v: (self._s @ v.unsqueeze(-1)).squeeze(-1), precondition,
                                                    rhs, self.tolerance, self.max_iterations)
        # A breakdown solves to zeros; a missed tolerance keeps its (inexact) iterate, reported not ok
        # but ``inexact`` (see ``CGFactorization``).
        self._ok = self._ok & ~breakdown
        self.ok = (self._ok & converged).to(self.values.device)  # what the optimizers read after solving
        self.inexact = (self._ok & ~converged).to(self.values.device)
        return x

    def _solve(self, rhs: Tensor) -> Tensor:
        """``H⁻¹ rhs`` for ``rhs: (B, n)`` in float64 on the factorization's device (zeros where not ok)."""
        layout, device = self.layout, self._padded.device
        r = rhs.detach().to(device, torch.float64)
        keep_columns, elim_columns = layout.keep_columns.to(device), layout.elim_columns.to(device)
        rhs_keep = r[:, keep_columns].contiguous()
        rhs_elim = r[:, elim_columns].reshape(r.shape[0], -1, layout.d).contiguous()
        if self.backend == "numba":
            from . import _schur_kernels as kernels

            reduced = torch.empty_like(rhs_keep)
            for b in range(r.shape[0]):
                kernels.reduce_rhs(self._w[b].numpy(), layout.ptr, layout.keep, self._cinv[b].numpy(),
                                   rhs_keep[b].numpy(), rhs_elim[b].numpy(), reduced[b].numpy())
            x_keep = self._solve_reduced(reduced)
            x_elim = torch.empty_like(rhs_elim)
            for b in range(r.shape[0]):
                kernels.back_substitute(self._w[b].numpy(), layout.ptr, layout.keep, self._cinv[b].numpy(),
                                        x_keep[b].numpy(), rhs_elim[b].numpy(), x_elim[b].numpy())
        else:
            element = torch.from_numpy(layout.row_element).to(device)
            keep = torch.from_numpy(layout.keep).to(device)
            z = (self._cinv @ rhs_elim.unsqueeze(-1)).squeeze(-1)  # C⁻¹ rhs_e
            reduced = rhs_keep.index_add(1, keep, -(self._w * z[:, element]).sum(-1))
            x_keep = self._solve_reduced(reduced)
            coupled = torch.zeros_like(rhs_elim).index_add_(1, element, self._w * x_keep[:, keep].unsqueeze(-1))
            x_elim = (self._cinv @ (rhs_elim - coupled).unsqueeze(-1)).squeeze(-1)
        x = torch.zeros_like(r)
        x[:, keep_columns] = x_keep
        x[:, elim_columns] = x_elim.reshape(r.shape[0], -1)
        x[~self._ok] = 0.0
        return x

    def solve(self, rhs: Tensor) -> Tensor:
        return _SchurSolve.apply(self.values, rhs, self)


class _SchurSolve(torch.autograd.Function):
    @staticmethod
    def forward(ctx: Any, values: Tensor, rhs: Tensor, factorization: SchurFactorization) -> Tensor:
        x = factorization._solve(rhs)
        ctx.factorization = factorization
        ctx.save_for_backward(x)
        ctx.values_meta = (values.dtype, values.device)
        return x.to(device=rhs.device, dtype=rhs.dtype)

    @staticmethod
    @once_differentiable
    def backward(ctx: Any, grad_x: Tensor) -> tuple[Tensor | None, Tensor, None]:
        (x,) = ctx.saved_tensors
        f = ctx.factorization
        grad_rhs = f._solve(grad_x)
        grad_values = None
        if ctx.needs_input_grad[0]:
            dtype, device = ctx.values_meta
            grad_values = pattern_gradient(f.structure.pattern, grad_rhs, x).to(device=device, dtype=dtype)
        return grad_values, grad_rhs.to(device=grad_x.device, dtype=grad_x.dtype), None


DENSE_REDUCED_LIMIT = 4000
"""Kept dimensions up to which ``reduced="auto"`` forms ``S`` densely (128 MB in float64 at 4,000)."""


class SchurComplement(LinearSolver):
    """Eliminate the elements of ``eliminate`` (e.g. the points of bundle adjustment), then solve the
    reduced system ``S`` (see the module).  ``reduced`` is the reduced system's solver, as a solver
    object: ``DenseCholesky()`` (``S`` dense), ``SparseCholesky()`` (``S`` in its own sparsity pattern,
    CHOLMOD) or ``ConjugateGradient(max_iterations, tolerance)`` (block-Jacobi PCG on ``S``, its
    settings taken from the object); the names ``"dense"``, ``"sparse"``, ``"pcg"`` and ``"auto"``
    (dense up to ``DENSE_REDUCED_LIMIT`` kept dimensions, sparse beyond) mean the same.
    ``backend``: ``"numba"`` (CPU), ``"torch"`` (any device) or ``"auto"``.  Bound to a problem by the
    optimizer (``prepare``)."""

    name = "schur"

    @dataclasses.dataclass(frozen=True)
    class Options:
        reduced: str = "auto"
        """``"auto"``, ``"dense"``, ``"sparse"`` or ``"pcg"`` (from the reduced solver object, if one was given)."""
        tolerance: float = 1e-10
        """PCG's relative residual (``reduced="pcg"``)."""
        max_iterations: int = 500
        backend: str = "auto"

        def __post_init__(self) -> None:
            if self.reduced not in ("auto", "dense", "sparse", "pcg"):
                raise ValueError(f"reduced must be auto, dense, sparse or pcg, got {self.reduced!r}")
            if self.backend not in ("auto", "numba", "torch"):
                raise ValueError(f"backend must be auto, numba or torch, got {self.backend!r}")

    def __init__(self, eliminate: Variable, *, reduced: str | LinearSolver = "auto", tolerance: float = 1e-10,
                 max_iterations: int = 500, backend: str = "auto", _table: int | None = None):
        if isinstance(reduced, LinearSolver):
            reduced, tolerance, max_iterations = _reduced_choice(reduced, tolerance, max_iterations)
        self.options = self.Options(reduced, tolerance, max_iterations, backend)
        self.eliminate, self._table = eliminate, _table

    def prepare(self, problem: Any) -> SchurComplement:
        return SchurComplement(self.eliminate, reduced=self.reduced, tolerance=self.tolerance,
                               max_iterations=self.max_iterations, backend=self.backend,
                               _table=problem.position(self.eliminate))

    def factorize(self, structure: Structure, values: Tensor) -> SchurFactorization:
        layout = structure.shared_cache[("schur", self.analyze(structure)._table)]
        backend = self.backend
        if backend == "auto":  # numba on the CPU where installed; torch on other devices
            backend = "numba" if values.device.type == "cpu" and numba_available() else "torch"
        reduced = self.reduced
        if reduced == "auto":
            large = layout.keep_columns.numel() > DENSE_REDUCED_LIMIT and backend == "numba" and _cholmod() is not None
            reduced = "sparse" if large else "dense"
        return SchurFactorization(structure, layout, values, reduced, self.tolerance, self.max_iterations, backend)

    def analyze(self, structure: Structure) -> SchurComplement:
        """The block layout of ``H`` (shape only: shared by the problems of one structure)."""
        if self._table is None:
            raise RuntimeError("SchurComplement must be prepared for a problem (the optimizers do this)")
        key = ("schur", self._table)
        if key not in structure.shared_cache:
            structure.shared_cache[key] = SchurLayout.analyze(structure, self._table)
        return self

    def __repr__(self) -> str:
        return f"SchurComplement(eliminate={self.eliminate.name}, reduced={self.reduced})"


def _reduced_choice(solver: LinearSolver, tolerance: float, max_iterations: int) -> tuple[str, float, int]:
    """The reduced-system algorithm a solver object stands for, and its settings."""
    from .cg import ConjugateGradient
    from .dense import DenseCholesky
    from .sparse import SparseCholesky

    if isinstance(solver, ConjugateGradient):
        return "pcg", solver.tolerance, solver.max_iterations
    if isinstance(solver, SparseCholesky):
        return "sparse", tolerance, max_iterations
    if isinstance(solver, DenseCholesky):
        return "dense", tolerance, max_iterations
    raise TypeError(f"SchurComplement's reduced solver must be DenseCholesky, SparseCholesky or ConjugateGradient, "
                    f"got {solver!r}")
