"""A least-squares problem: costs over variable tables, evaluated and linearized in batched calls.

``Problem(costs)`` collects the variables the costs refer to.  Values are kept as
one ``LieGroup`` batch ``(B, N)`` per table (B = 1 for an unbatched problem); the
optimizers call ``cost``, ``linearize`` and ``retract`` on such lists.  The total
cost of problem b is ``F_b = ½ Σ_instances ρ(‖W r‖²)`` (ρ(s) = s without a robust loss).
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
import torch
from torch import Tensor

from liegeo import SE3, LieGroup

from .costs.base import Cost, kernel_inputs_ok
from .structure import Structure, analyze, structure_key
from .variables import Variable

Values = list[LieGroup]
"""One batch ``(B, N)`` per variable table, in ``Problem.variables`` order."""

_STRUCTURES: dict[str, Structure] = {}
_STRUCTURE_CACHE_SIZE = 32


class NonFiniteError(FloatingPointError):
    """A cost produced NaN or Inf residuals or Jacobians."""


class Problem:
    """Costs and the variables they touch.

    Args:
        costs: the cost terms (each a vectorized batch of instances).

    Every variable is either unbatched ``(N,)`` or batched ``(B, N)`` with one common B;
    unbatched tables are shared initial values, expanded to B when some table is batched.
    """

    def __init__(self, costs: Sequence[Cost]):
        if not costs:
            raise ValueError("a Problem needs at least one cost")
        self.costs = list(costs)
        self.variables: list[Variable] = []
        position: dict[int, int] = {}
        for cost in self.costs:
            for ref in cost.variables:
                if id(ref.variable) not in position:
                    position[id(ref.variable)] = len(self.variables)
                    self.variables.append(ref.variable)
        self._position = position
        sizes = {v.batch_size for v in self.variables} - {None}
        if len(sizes) > 1:
            raise ValueError(f"variables disagree on the outer batch size: {sorted(sizes)}")
        self.batch_size = sizes.pop() if sizes else 1
        self.batched = bool(sizes) or any(v.batch_size is not None for v in self.variables)
        reference = self.variables[0].value
        self.dtype, self.device = reference.dtype, reference.device
        self._structure: Structure | None = None

    def position(self, variable: Variable) -> int:
        return self._position[id(variable)]

    # ------------------------------------------------------------------ structure

    @property
    def structure(self) -> Structure:
        """The sparsity analysis, shared by every problem of the same shape."""
        if self._structure is None:
            tables = [(v.num, v.tangent_dim, v.fixed) for v in self.variables]
            costs = [[(self.position(r.variable), r.index) for r in c.variables] for c in self.costs]
            key = structure_key(tables, costs)
            if key not in _STRUCTURES:
                if len(_STRUCTURES) >= _STRUCTURE_CACHE_SIZE:
                    _STRUCTURES.pop(next(iter(_STRUCTURES)))
                _STRUCTURES[key] = analyze(tables, costs)
            self._structure = _STRUCTURES[key]
        return self._structure

    # ------------------------------------------------------------------ values

    def initial_values(self) -> Values:
        """Each table's value as a ``(B, N)`` batch."""
        out = []
        for v in self.variables:
            value = v.value if v.batch_size is not None else v.value.unsqueeze(0)
            out.append(value.expand(self.batch_size, v.num) if value.shape[0] != self.batch_size else value)
        return out

    def retract(self, values: Values, delta: Tensor) -> Values:
        """``x ⊕ δ`` for a global tangent step ``delta: (B, n)`` (fixed elements stay exactly)."""
        out = []
        for value, table in zip(values, self.structure.tables):
            if table.num_free == 0:
                out.append(value)
                continue
            step = delta[:, table.offset : table.offset + table.num_free * table.dim].reshape(-1, table.num_free, table.dim)
            if table.num_free < table.num:
                full = torch.zeros(step.shape[0], table.num, table.dim, dtype=step.dtype, device=step.device)
                step = full.index_copy(1, table.free.to(step.device), step)
            out.append(_retract(value, step))
        return out

    def select(self, mask: Tensor, new: Values, old: Values) -> Values:
        """Per problem of the batch, ``new`` where ``mask: (B,)`` else ``old``."""
        m = mask.view(-1, 1, 1).to(new[0].device)
        return [a._new(torch.where(m, a.data, b.data)) for a, b in zip(new, old)]

    def _gather(self, cost: Cost, values: Values) -> list[LieGroup]:
        out = []
        for ref in cost.variables:
            value = values[self.position(ref.variable)]
            out.append(value._new(value.data.index_select(1, ref.index.to(value.device))))
        return out

    # ------------------------------------------------------------------ evaluation

    def cost(self, values: Values) -> Tensor:
        """``F = ½ Σ ρ(‖W r‖²)`` per problem: ``(B,)``."""
        total = torch.zeros(self.batch_size, dtype=self.dtype, device=self.device)
        for cost in self.costs:
            total = total + self._instance_cost(cost, self._whitened_residual(cost, self._gather(cost, values))).sum(-1)
        return total

    def _whitened_residual(self, cost: Cost, values: list[LieGroup]) -> Tensor:
        r = cost.fused_residuals(*values, **cost.data)
        return _whitened(cost, cost.residual(*values, **cost.data)) if r is None else r

    def residuals(self, values: Values) -> list[Tensor]:
        """Whitened residuals ``(B, E, m)`` per cost (before any robust loss)."""
        return [self._whitened_residual(c, self._gather(c, values)) for c in self.costs]

    def linearize(self, values: Values) -> tuple[Tensor, Tensor, Tensor]:
        """Normal equations at ``values``: ``H`` values ``(B, nnz)``, ``g = Jᵀr`` ``(B, n)`` and ``F`` ``(B,)``.

        Robust losses use iteratively reweighted least squares: each instance's whitened
        residual and Jacobian are scaled by ``√ρ'(s)``, so ``g`` is the exact gradient of
        ``F`` and ``H`` drops only the ``ρ''`` term.
        """
        contributions, total = [], torch.zeros(self.batch_size, dtype=self.dtype, device=self.device)
        for cost in self.costs:
            gathered = self._gather(cost, values)
            fused = self._fused_linearization(cost, gathered)
            if fused is not None:
                cost_per_instance, h, g = fused
                total = total + cost_per_instance.sum(-1)
                contributions.append((h, g))
                continue
            r, jacobians = cost.residual_and_jacobians(*gathered, **cost.data)
            r = r.expand(self.batch_size, cost.num, r.shape[-1])
            r = _whitened(cost, r)
            j = torch.cat([_whitened_jacobian(cost, x.expand(*r.shape, x.shape[-1])) for x in jacobians], dim=-1)
            total = total + self._instance_cost(cost, r).sum(-1)
            if cost.loss is not None:
                scale = _safe_sqrt(cost.loss.weight((r * r).sum(-1)))
                r, j = r * scale.unsqueeze(-1), j * scale[..., None, None]
            _check_finite(cost, r, j)
            jt = j.mT
            contributions.append((jt @ j, (jt @ r.unsqueeze(-1)).squeeze(-1)))
        h, g = self.structure.assemble(contributions, self.batch_size)
        return h, g, total

    def _fused_linearization(self, cost: Cost, values: list[LieGroup]) -> tuple[Tensor, Tensor, Tensor] | None:
        """``(½ρ(‖r‖²) (B, E), JᵀJ, Jᵀr)`` from the cost's fused kernel, or None where it has none."""
        if cost.loss is None:
            blocks = cost.fused_normal_blocks(*values, **cost.data)
            if blocks is None:
                return None
            r, j, h, g = blocks
            instance_cost = self._instance_cost(cost, r)
        else:
            unscaled = cost.fused_residuals(*values, **cost.data)
            if unscaled is None:
                return None
            scale = _safe_sqrt(cost.loss.weight((unscaled * unscaled).sum(-1)))
            blocks = cost.fused_normal_blocks(*values, scale=scale, **cost.data)
            if blocks is None:
                return None
            r, j, h, g = blocks
            instance_cost = self._instance_cost(cost, unscaled)
        _check_finite(cost, r, j)
        return instance_cost.expand(self.batch_size, cost.num), h, g

    def _instance_cost(self, cost: Cost, r: Tensor) -> Tensor:
        s = (r * r).sum(-1)
        return 0.5 * (cost.loss.rho(s) if cost.loss is not None else s)


def _retract(value: LieGroup, step: Tensor) -> LieGroup:
    """``value.retract(step)``, by the fused kernel for SE(3) in float64 on the CPU without autograd."""
    if type(value) is not SE3 or not kernel_inputs_ok(value.data, step):
        return value.retract(step)
    from . import _se3_kernels  # imported on first use: numba takes ~0.2 s to import

    # (np.broadcast_shapes: torch.broadcast_shapes imports sympy, 0.5 s, on its first call)
    shape = np.broadcast_shapes(tuple(value.data.shape[:-1]), tuple(step.shape[:-1]))
    x = value.data.expand(*shape, 7).reshape(-1, 7).contiguous()
    out = torch.empty_like(x)
    _se3_kernels.retract(x.numpy(), step.expand(*shape, 6).reshape(-1, 6).contiguous().numpy(), out.numpy())
    return SE3(out.reshape(*shape, 7))


def _whitened(cost: Cost, r: Tensor) -> Tensor:
    return cost.weight.whiten(r) if cost.weight is not None else r


def _whitened_jacobian(cost: Cost, j: Tensor) -> Tensor:
    return cost.weight.whiten_jacobian(j) if cost.weight is not None else j


def _safe_sqrt(w: Tensor) -> Tensor:
    """``√w`` for ``w >= 0`` with a zero (not infinite) gradient where ``w = 0`` (Tukey's tails)."""
    positive = w > 0
    return torch.where(positive, torch.where(positive, w, torch.ones_like(w)).sqrt(), torch.zeros_like(w))


def _check_finite(cost: Cost, r: Tensor, j: Tensor) -> None:
    # One reduction each; the slow search for the culprit runs only on failure.
    if bool(torch.isfinite(r.sum()) & torch.isfinite(j.sum())):
        return
    bad_r = ~torch.isfinite(r).all(-1)
    bad_j = ~torch.isfinite(j).flatten(-2).all(-1)
    what = "residual" if bool(bad_r.any()) else "Jacobian"
    b, e = (int(i) for i in torch.nonzero(bad_r | bad_j)[0])
    where = f"instance {e}" + (f" of problem {b}" if r.shape[0] > 1 else "")
    raise NonFiniteError(
        f"cost '{cost.name}' produced a non-finite {what} at {where} "
        f"(variables: {', '.join(f'{ref.variable.name}[{int(ref.index[e])}]' for ref in cost.variables)})"
    )
