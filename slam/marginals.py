"""Marginal covariances of a problem's variables: blocks of ``H⁻¹`` at a solution, in each group's tangent order.

``H = Jᵀ W J`` is the Gauss-Newton information matrix at the given values (robust losses enter as the
iteratively reweighted ``H`` the solver uses: ``ρ'(s)`` on each instance, no ``ρ''`` term, as GTSAM's
``Marginals`` and Ceres' ``Covariance`` use).  Its inverse is the Laplace approximation of the
posterior covariance in the right-perturbation tangent space of the values (``x ⊕ δ = x · Exp(δ)``;
translation first for SE(2)/SE(3), ``liegeo.conventions``).  Fixed elements have no uncertainty: their
blocks are zeros.

The entries come from one factorization by selected inversion (``slam.linear.selected_inverse``):
every variable's marginal and the joint block of every pair that shares a cost at the cost of about one
Cholesky factorization, never the dense inverse; other joint blocks take one solve per column.  A batch
of problems is inverted in one call.  ``eliminate=`` orders one table first (bundle adjustment's
points), which makes the cameras' blocks the inverse of the Schur complement.

Differentiable: where ``H``'s values depend on tensors that require grad (measurements, weights, or
values from a differentiable solve, through which the solution's own dependence flows), gradients of a
loss on the covariances reach them.  ``∂Σ[r, c] = -Σ[:, r] Σ[c, :] ∂H``: the backward pass solves for the
columns of ``H⁻¹`` it needs, one per distinct column of the requested entries.
"""

from __future__ import annotations

from typing import Any, Sequence

import numba
import numpy as np
import torch
from torch import Tensor
from torch.autograd.function import once_differentiable

from liegeo import LieGroup

from .linear.selected_inverse import Factors, SelectedInverse, solve_chunk
from .problem import Problem, Values
from .variables import Variable


class SingularInformationError(ValueError):
    """``H`` is not positive definite at the values: a gauge freedom (nothing fixed, no prior) or an
    unobservable variable; its covariance is unbounded.  ``problems``: the failing problems of the batch."""

    def __init__(self, message: str, problems: list[int]):
        super().__init__(message)
        self.problems = problems


class Marginals:
    """Marginal and joint covariances of ``problem``'s variables at ``values``.

    Args:
        problem: the problem.
        values: a ``SolveResult`` of it, a ``{Variable: LieGroup}`` dict, a ``Values`` list (one ``(B, N)``
            batch per table in ``problem.variables`` order), or None for the variables' current values.
        eliminate: a variable table whose elements are coupled only to other tables (bundle
            adjustment's points), ordered first so that the rest is the Schur complement's inverse.

    Raises:
        SingularInformationError: ``H`` is not positive definite for some problem of the batch.
    """

    def __init__(self, problem: Problem, values: Any = None, *, eliminate: Variable | None = None):
        self.problem = problem
        self.values = _values_list(problem, values)
        structure = problem.structure
        key = ("selected-inverse", None if eliminate is None else problem.position(eliminate))
        if key not in structure.shared_cache:
            first = None
            if eliminate is not None:
                table = structure.tables[problem.position(eliminate)]
                first = np.arange(table.offset, table.offset + table.num_free * table.dim)
            structure.shared_cache[key] = SelectedInverse(structure.pattern, first)
        self._analysis: SelectedInverse = structure.shared_cache[key]
        self.h, _, _ = problem.linearize(self.values)
        """``(B, nnz)`` the information matrix's values (lower triangle on ``problem.structure.pattern``)."""
        self.factors = self._analysis.factorize(self.h.detach().to("cpu", torch.float64).numpy())
        if not bool(self.factors.ok.all()):
            failed = np.flatnonzero(~self.factors.ok).tolist()
            which = f" (problem{'s' if len(failed) > 1 else ''} {', '.join(map(str, failed[:8]))} of the batch)" \
                if problem.batch_size > 1 else ""
            raise SingularInformationError(
                f"the information matrix H is not positive definite at these values{which}: a gauge freedom "
                "(nothing fixed and no prior) or an unobservable variable, so the covariance is unbounded; "
                "fix a pose or add a prior (slam.diagnose(problem) names what is free)", failed)

    def covariance(self, variable: Variable, indices: int | Sequence[int] | Tensor | None = None) -> Tensor:
        """Marginal covariances of elements of ``variable``: ``(k, d, d)`` for ``indices`` (all elements
        when None), ``(d, d)`` for one int; a batched problem gets a leading ``(B,)``.  d is the group's
        tangent dimension, in its tangent order; fixed elements give zeros."""
        table = self._table(variable)
        columns = table.columns(_indices(variable, indices))  # (k, d), -1 where fixed
        rows = columns[:, :, None].expand(-1, -1, table.dim)
        cols = columns[:, None, :].expand(-1, table.dim, -1)
        out = self._entries(rows, cols)
        return self._shape(out[:, 0] if isinstance(indices, int) else out)

    def joint(self, *elements: tuple[Variable, int]) -> Tensor:
        """The joint covariance of the given ``(variable, index)`` elements: ``(D, D)`` with ``D`` the sum
        of their tangent dimensions, in the order given (a batched problem: ``(B, D, D)``)."""
        columns = []
        for variable, index in elements:
            columns.append(self._table(variable).columns(_indices(variable, [int(index)]))[0])
        c = torch.cat(columns)
        out = self._entries(c[:, None].expand(-1, c.numel()), c[None, :].expand(c.numel(), -1))
        return self._shape(out)

    def _table(self, variable: Variable) -> Any:
        if id(variable) not in self.problem._position:
            raise ValueError(f"variable '{variable.name}' is not one of this problem's "
                             f"({', '.join(v.name for v in self.problem.variables)})")
        return self.problem.structure.tables[self.problem.position(variable)]

    def _entries(self, rows: Tensor, cols: Tensor) -> Tensor:
        """``H⁻¹`` at scalar ``(rows, cols)`` of any shape ``S`` (-1: a fixed element, 0): ``(B, *S)``."""
        shape, rows, cols = rows.shape, rows.reshape(-1), cols.reshape(-1)
        used = ((rows >= 0) & (cols >= 0)).numpy()
        values = _InverseEntries.apply(self.h, self.factors, rows.numpy()[used], cols.numpy()[used],
                                       self.problem.structure.pattern)
        out = values.new_zeros(values.shape[0], rows.numel())
        out[:, torch.from_numpy(used).to(out.device)] = values
        return out.reshape(values.shape[0], *shape)

    def _shape(self, out: Tensor) -> Tensor:
        batched = self.problem.batched
        return out if batched else out[0]


def _indices(variable: Variable, indices: int | Sequence[int] | Tensor | None) -> Tensor:
    if indices is None:
        return torch.arange(variable.num)
    index = torch.as_tensor([indices] if isinstance(indices, int) else indices, dtype=torch.long).reshape(-1).cpu()
    if index.numel() and (int(index.min()) < -variable.num or int(index.max()) >= variable.num):
        raise IndexError(f"index out of range for variable '{variable.name}' of {variable.num} elements")
    return torch.where(index < 0, index + variable.num, index)


def _values_list(problem: Problem, values: Any) -> Values:
    """``values`` as one ``(B, N)`` batch per table (see ``Marginals``)."""
    if values is None:
        return problem.initial_values()
    if hasattr(values, "values") and isinstance(getattr(values, "values"), dict):  # a SolveResult
        values = values.values
    if isinstance(values, dict):
        out = []
        for variable, initial in zip(problem.variables, problem.initial_values()):
            value: LieGroup = values.get(variable, initial)
            if value.data.dim() == 2:
                value = value.unsqueeze(0)
            out.append(value.expand(problem.batch_size, variable.num) if value.shape[0] != problem.batch_size else value)
        return out
    return list(values)


class _InverseEntries(torch.autograd.Function):
    """``H⁻¹[rows, cols]`` ``(B, k)`` from ``H``'s values ``(B, nnz)``, differentiable in the values."""

    @staticmethod
    def forward(ctx: Any, h: Tensor, factors: Factors, rows: np.ndarray, cols: np.ndarray, pattern: Any) -> Tensor:
        ctx.factors, ctx.rows, ctx.cols, ctx.pattern = factors, rows, cols, pattern
        return torch.from_numpy(factors.entries(rows, cols)).to(device=h.device, dtype=h.dtype)

    @staticmethod
    @once_differentiable
    def backward(ctx: Any, grad: Tensor) -> tuple[Tensor | None, None, None, None, None]:
        if not ctx.needs_input_grad[0]:
            return None, None, None, None, None
        g = grad.detach().to("cpu", torch.float64).numpy()
        out = information_gradient(ctx.factors, ctx.pattern, ctx.rows, ctx.cols, g)
        return torch.from_numpy(out).to(device=grad.device, dtype=grad.dtype), None, None, None, None


def information_gradient(factors: Factors, pattern: Any, rows: np.ndarray, cols: np.ndarray, g: np.ndarray,
                         chunk: int | None = None) -> np.ndarray:
    """``∂L/∂values`` ``(B, nnz)`` of ``H``'s lower-triangle values, given ``g = ∂L/∂Σ[rows, cols]`` ``(B, k)``.

    ``∂Σ[r, c]/∂H[i, j] = -Σ[i, r] Σ[c, j]``, so ``M = ∂L/∂H = -Σ_k g_k Σ[:, r_k] Σ[c_k, :]``; a stored
    off-diagonal value stands for ``H[i, j]`` and ``H[j, i]`` and gets ``M[i, j] + M[j, i]``.  The columns
    ``Σ[:, c]`` come from solves with the factor, ``chunk`` distinct columns at a time (default:
    ``solve_chunk``, within 128 MiB)."""
    batch, n = g.shape[0], pattern.n
    chunk = chunk or solve_chunk(batch, n)
    prow, pcol = pattern.rows.numpy(), pattern.cols.numpy()
    out = np.zeros((batch, prow.size))
    order = np.argsort(np.minimum(rows, cols), kind="stable")  # neighbouring entries share columns
    start = 0
    while start < order.size:
        # The longest run of entries whose distinct columns fit in one chunk of solves.
        end, seen = start, set()
        while end < order.size:
            new = {int(rows[order[end]]), int(cols[order[end]])} - seen
            if len(seen) + len(new) > chunk and end > start:  # (one entry always fits: progress)
                break
            seen |= new
            end += 1
        part = order[start:end]
        columns, local = np.unique(np.concatenate([rows[part], cols[part]]), return_inverse=True)
        unit = np.zeros((batch, n, columns.size))
        unit[:, columns, np.arange(columns.size)] = 1.0
        x = factors.solve(unit)  # (B, n, m): Σ[:, columns]
        _accumulate(x, local[: part.size], local[part.size :], g[:, part], prow, pcol, out)
        start = end
    return out


@numba.njit(cache=True)
def _accumulate(x, r_local, c_local, g, prow, pcol, out):  # type: ignore[no-untyped-def]
    """``out[b, p] -= Σ_k g[b, k] (x[i, r_k] x[j, c_k] + x[j, r_k] x[i, c_k])`` for pattern entries
    ``p = (i, j)``, halved on the diagonal (``M[i, j] + M[j, i]`` counts it twice)."""
    for b in range(x.shape[0]):
        for p in range(prow.size):
            i, j = prow[p], pcol[p]
            s = 0.0
            for k in range(r_local.size):
                s += g[b, k] * (x[b, i, r_local[k]] * x[b, j, c_local[k]] + x[b, j, r_local[k]] * x[b, i, c_local[k]])
            out[b, p] -= 0.5 * s if i == j else s
