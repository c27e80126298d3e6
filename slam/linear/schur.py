"""Schur complement: eliminate one variable table whose elements are coupled only to the other
variables (bundle adjustment's points), then factorize the reduced system.

With ``H = [[A, W], [Wᵀ, C]]`` and ``C`` block diagonal (one ``d x d`` block per eliminated element),

    S = A - W C⁻¹ Wᵀ,   S x_k = b_k - W C⁻¹ b_e,   x_e = C⁻¹ (b_e - Wᵀ x_k).

``S`` is formed densely (its size is the number of kept dimensions: 441 for Ladybug-49's cameras)
and either factorized by a batched dense Cholesky (``reduced="cholesky"``, the default: exact) or
solved by conjugate gradients preconditioned with the inverses of its diagonal blocks, one per kept
variable element (``reduced="pcg"``: iterative Schur, to a relative residual ``tolerance``).  The index bookkeeping (which entries of ``H`` form
``A``, ``C`` and ``W``) is done once per structure (``SchurLayout``); each iteration runs two numba
loops over the eliminated elements.  The solve is differentiable in ``H``'s values and the
right-hand side (the same formulas as ``sparse_solve``), so every backward mode works.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np
import torch
from torch import Tensor
from torch.autograd.function import once_differentiable

from ..structure import Structure
from ..variables import Variable
from .base import Factorization, LinearSolver
from .sparse_cholesky import pattern_gradient


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
    def __init__(self, structure: Structure, layout: SchurLayout, values: Tensor, reduced: str = "cholesky",
                 tolerance: float = 1e-10, max_iterations: int = 500):
        from . import _schur_kernels as kernels

        self.structure, self.layout, self.values = structure, layout, values
        self.reduced, self.tolerance, self.max_iterations = reduced, tolerance, max_iterations
        v = values.detach().to("cpu", torch.float64)
        self._padded = torch.cat([v, torch.zeros(v.shape[0], 1, dtype=torch.float64)], dim=1).numpy()
        batch, nk, num = v.shape[0], layout.keep_columns.numel(), layout.c_slot.shape[0]
        s = np.empty((batch, nk, nk))
        self._cinv = np.zeros((batch, num, layout.d, layout.d))
        ok = np.zeros(batch, dtype=bool)
        # The coupling rows W, gathered once into a contiguous array (see _schur_kernels)
        self._w = self._padded[:, layout.w_slot]
        for b in range(batch):
            if np.isfinite(self._padded[b]).all():
                ok[b] = kernels.reduce_matrix(self._padded[b], layout.a_row, layout.a_col, layout.a_slot,
                                              self._padded[b][layout.c_slot], layout.ptr, layout.keep, self._w[b],
                                              s[b], self._cinv[b])
        s_tensor = torch.from_numpy(s)
        s_tensor[~torch.from_numpy(ok)] = torch.eye(nk, dtype=torch.float64)  # placeholders, reported not ok
        if reduced == "cholesky":
            self._factor, info = torch.linalg.cholesky_ex(s_tensor)
        else:  # block-Jacobi preconditioner: the inverse of each kept element's diagonal block of S
            self._s, self._block_inverses = s_tensor, []
            info = torch.zeros(batch, dtype=torch.int32)
            for index in layout.blocks:
                block = s_tensor[:, index.unsqueeze(-1), index.unsqueeze(-2)]
                factor, block_info = torch.linalg.cholesky_ex(block)
                info = info | block_info.amax(-1)
                self._block_inverses.append(torch.cholesky_inverse(factor))
        self._ok = torch.from_numpy(ok) & (info == 0)
        self.ok = self._ok.to(values.device)

    def _solve_reduced(self, rhs: Tensor) -> Tensor:
        if self.reduced == "cholesky":
            return torch.cholesky_solve(rhs.unsqueeze(-1), self._factor).squeeze(-1)
        from .cg import preconditioned_cg

        def precondition(r: Tensor) -> Tensor:
            z = torch.empty_like(r)
            for index, inverse in zip(self.layout.blocks, self._block_inverses):
                z[:, index] = (inverse @ r[:, index].unsqueeze(-1)).squeeze(-1)
            return z

        x, failed = preconditioned_cg(lambda v: (self._s @ v.unsqueeze(-1)).squeeze(-1), precondition, rhs,
                                      self.tolerance, self.max_iterations)
        self._ok = self._ok & ~failed
        return x

    def _solve(self, rhs: Tensor) -> Tensor:
        """``H⁻¹ rhs`` for ``rhs: (B, n)`` in float64 on the CPU (zeros where not ok)."""
        from . import _schur_kernels as kernels

        layout = self.layout
        r = rhs.detach().to("cpu", torch.float64)
        rhs_keep = r[:, layout.keep_columns].contiguous()
        rhs_elim = r[:, layout.elim_columns].reshape(r.shape[0], -1, layout.d).contiguous().numpy()
        reduced = torch.empty_like(rhs_keep)
        for b in range(r.shape[0]):
            kernels.reduce_rhs(self._w[b], layout.ptr, layout.keep, self._cinv[b], rhs_keep[b].numpy(), rhs_elim[b],
                               reduced[b].numpy())
        x_keep = self._solve_reduced(reduced)
        x_elim = np.empty_like(rhs_elim)
        for b in range(r.shape[0]):
            kernels.back_substitute(self._w[b], layout.ptr, layout.keep, self._cinv[b], x_keep[b].numpy(),
                                    rhs_elim[b], x_elim[b])
        x = torch.zeros_like(r)
        x[:, layout.keep_columns] = x_keep
        x[:, layout.elim_columns] = torch.from_numpy(x_elim).reshape(r.shape[0], -1)
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


class SchurComplement(LinearSolver):
    """Eliminate the elements of ``eliminate`` (e.g. the points of bundle adjustment), then solve the
    reduced system by dense Cholesky or block-Jacobi PCG (``reduced``).  Bound to a problem by the
    optimizer (``prepare``)."""

    name = "schur"

    def __init__(self, eliminate: Variable, *, reduced: str = "cholesky", tolerance: float = 1e-10,
                 max_iterations: int = 500, _table: int | None = None):
        if reduced not in ("cholesky", "pcg"):
            raise ValueError(f"reduced must be 'cholesky' or 'pcg', got {reduced!r}")
        self.eliminate, self.reduced, self._table = eliminate, reduced, _table
        self.tolerance, self.max_iterations = tolerance, max_iterations

    def prepare(self, problem: Any) -> SchurComplement:
        return SchurComplement(self.eliminate, reduced=self.reduced, tolerance=self.tolerance,
                               max_iterations=self.max_iterations, _table=problem.position(self.eliminate))

    def factorize(self, structure: Structure, values: Tensor) -> SchurFactorization:
        if self._table is None:
            raise RuntimeError("SchurComplement must be prepared for a problem (the optimizers do this)")
        key = ("schur", self._table)
        if key not in structure.solver_cache:
            structure.solver_cache[key] = SchurLayout.analyze(structure, self._table)
        return SchurFactorization(structure, structure.solver_cache[key], values, self.reduced, self.tolerance,
                                  self.max_iterations)

    def __repr__(self) -> str:
        return f"SchurComplement(eliminate={self.eliminate.name}, reduced={self.reduced})"
