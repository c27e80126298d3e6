"""A least-squares problem: costs over variable tables, evaluated and linearized in batched calls.

``Problem(costs)`` collects the variables the costs refer to.  Values are kept as
one ``LieGroup`` batch ``(B, N)`` per table (B = 1 for an unbatched problem); the
optimizers call ``cost``, ``linearize`` and ``retract`` on such lists.  The total
cost of problem b is ``F_b = ½ Σ_instances ρ(‖W r‖²)`` (ρ(s) = s without a robust loss).
"""

from __future__ import annotations

from typing import Sequence

import torch
from torch import Tensor

from liegeo import LieGroup

from .costs.base import Cost, pack_lower
from .robust import RobustLoss
from .plan import CostPlan, Plan, VariablePlan
from .structure import Structure, analyze, structure_key
from .variables import Variable

Values = list[LieGroup]
"""One batch ``(B, N)`` per variable table, in ``Problem.variables`` order."""

_STRUCTURES: dict[str, Structure] = {}
_STRUCTURE_CACHE_SIZE = 32


class NonFiniteError(FloatingPointError):
    """A cost produced NaN or Inf: a residual, a Jacobian, its cost ``½ρ(‖r‖²)`` (``r·r`` may overflow
    for large finite ``r``) or its normal-equation blocks; or the assembled ``H``/``g`` overflowed.

    Attributes (None where unknown): ``cost`` (the cost's name), ``instance`` (its index among the
    cost's instances), ``problem`` (the index in the outer batch), ``variables`` (``"name[index]"``
    of each variable the instance touches) and ``quantity`` (what was non-finite).
    """

    def __init__(self, message: str, *, cost: str | None = None, instance: int | None = None,
                 problem: int | None = None, variables: tuple[str, ...] = (), quantity: str | None = None):
        super().__init__(message)
        self.cost, self.instance, self.problem = cost, instance, problem
        self.variables, self.quantity = variables, quantity


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
        self._plan: Plan | None = None

    def prepare(self) -> Problem:
        """Load what the costs' fast paths need (``Cost.prepare``: compiled kernels) now, outside any
        timed solve; the first solve would do it otherwise.  Returns the problem."""
        for cost in self.costs:
            cost.prepare()
        return self

    def position(self, variable: Variable) -> int:
        return self._position[id(variable)]

    # ------------------------------------------------------------------ structure

    def analyze(self) -> Plan:
        """The frozen plan of this problem (``slam.plan``), made once (the first solve does it): the
        sparsity structure, and what linearizes each cost and retracts each variable table."""
        if self._plan is None:
            tables = [(v.num, v.tangent_dim, v.fixed) for v in self.variables]
            costs = [[(self.position(r.variable), r.index) for r in c.variables] for c in self.costs]
            key = structure_key(tables, costs)
            if key not in _STRUCTURES:
                if len(_STRUCTURES) >= _STRUCTURE_CACHE_SIZE:
                    _STRUCTURES.pop(next(iter(_STRUCTURES)))
                _STRUCTURES[key] = analyze(tables, costs)
            structure = _STRUCTURES[key].for_problem()
            self._plan = Plan(
                structure=structure,
                costs=tuple(CostPlan(c.name, c.num, c.linearization_path(self.dtype, self.device),
                                     c.exact_blocks_path(self.dtype, self.device)) for c in self.costs),
                variables=tuple(VariablePlan(v.name, type(v.value).__name__, v.num, t.num_free,
                                             type(v.value).retraction_path(self.dtype, self.device))
                                for v, t in zip(self.variables, structure.tables)),
                batch_size=self.batch_size, dtype=self.dtype, device=self.device,
            )
        return self._plan

    @property
    def structure(self) -> Structure:
        """The sparsity analysis of the plan, shared by every problem of the same shape (with this
        problem's own linear-solver state: ``Structure.for_problem``)."""
        return self.analyze().structure

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
            out.append(value.retract_step(step))
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
        return self._cost_of(self.costs, values)

    def _cost_of(self, costs: Sequence[Cost], values: Values) -> Tensor:
        total = torch.zeros(self.batch_size, dtype=self.dtype, device=self.device)
        for cost in costs:
            total = total + self._instance_cost(cost, cost.whitened_residual(self._gather(cost, values))).sum(-1)
        return total

    def gradient_graph(self, values: Values, costs: Sequence[Cost] | None = None) -> tuple[Tensor, Tensor]:
        """``(g, δ)``: ``g = ∂F(x ⊕ δ)/∂δ (B, n)`` at the leaf ``δ = 0``, with its graph (for Hessian-vector
        products and ``wᵀ ∂g/∂θ`` by double backward), ``F`` summed over ``costs`` (default: all).  Call with
        grad enabled."""
        delta = torch.zeros(self.batch_size, self.structure.n, dtype=self.dtype, device=self.device, requires_grad=True)
        f = self._cost_of(self.costs if costs is None else costs, self.retract(values, delta)).sum()
        (g,) = torch.autograd.grad(f, delta, create_graph=True)
        return g, delta

    def residuals(self, values: Values) -> list[Tensor]:
        """Whitened residuals ``(B, E, m)`` per cost (before any robust loss)."""
        return [c.whitened_residual(self._gather(c, values)) for c in self.costs]

    def linearize(self, values: Values, *, check: bool = True) -> tuple[Tensor, Tensor, Tensor]:
        """Normal equations at ``values``: ``H`` values ``(B, nnz)``, ``g = Jᵀr`` ``(B, n)`` and ``F`` ``(B,)``.

        Robust losses use iteratively reweighted least squares: each instance's whitened
        residual and Jacobian are scaled by ``√ρ'(s)``, so ``g`` is the exact gradient of
        ``F`` and ``H`` drops only the ``ρ''`` term.  ``F`` equals ``cost(values)`` to the bit.

        ``check``: raise ``NonFiniteError`` where something is not finite; without it the values are
        returned as they are (a trial point the optimizer may still reject).
        """
        h, g, total = self._assembled(values)
        if not check:
            return h, g, total
        # One reduction per tensor on the happy path (a sum is non-finite if any term is, or if it
        # overflows); the exact test and the search for the culprit run only when it flags.
        with torch.no_grad():
            quick = torch.isfinite(total.sum() + h.sum() + g.sum())
            if not bool(quick) and not bool(torch.isfinite(total).all() & torch.isfinite(h).all()
                                            & torch.isfinite(g).all()):
                raise self.nonfinite_error(values, total=total, h=h, g=g)
        return h, g, total

    def exact_hessian(self, values: Values) -> Tensor:
        """The exact Hessian of ``F(x ⊕ δ)`` at ``δ = 0`` in ``H``'s pattern, ``(B, nnz)``.

        Per instance, ``ρ' (JᵀJ + Σ_k r_k ∇²r_k) + 2ρ'' (Jᵀr)(Jᵀr)ᵀ`` (``r``, ``J`` whitened; ``ρ' = 1``,
        ``ρ'' = 0`` without a robust loss): each cost's ``Cost.exact_blocks`` (its fused kernel where it has
        one) and the loss's second derivative.  It has the sparsity of ``JᵀJ`` (an instance couples only
        its own arguments).  Meant for the implicit backward (``slam.optim.implicit``); nothing here is
        differentiable.
        """
        contributions = []
        with torch.no_grad():
            for cost in self.costs:
                r, h, jtr = cost.exact_blocks(self._gather(cost, values), self.batch_size)
                if cost.loss is not None:
                    w, dw = _loss_derivatives(cost.loss, (r * r).sum(-1))
                    outer = jtr.unsqueeze(-1) * jtr.unsqueeze(-2)
                    outer = pack_lower(outer) if h.dim() == jtr.dim() else outer  # as h is (Linearization.jtj)
                    shape = (*w.shape, *([1] * (h.dim() - w.dim())))
                    # An instance the loss ignores (ρ' = ρ'' = 0: Tukey's tails) adds nothing, even where
                    # its unweighted blocks overflow (0 · inf would be nan).
                    used = ((w != 0) | (dw != 0)).reshape(shape)
                    h = torch.where(used, w.reshape(shape) * h + 2.0 * dw.reshape(shape) * outer, torch.zeros_like(h))
                contributions.append((h, jtr))
            hessian, _ = self.structure.assemble(contributions, self.batch_size)
        return hessian

    def directional_gradient(self, values: Values, w: Tensor) -> Tensor:
        """``Σ wᵀ g`` (``g = ∂F(x ⊕ δ)/∂δ`` at ``δ = 0`` and ``values``, ``w: (B, n)`` held constant) as a
        differentiable function of the costs' tensors: what the implicit backward differentiates for
        ``wᵀ ∂g/∂θ`` (``slam.optim.implicit``).  A cost's own smaller graph where it has one
        (``Cost.directional_residual``) and no value carries a graph; the others by their gradient along
        the retraction.  Call with grad enabled."""
        structure, batch = self.structure, self.batch_size
        free_of_graph = not any(v.data.requires_grad for v in values)
        padded = torch.cat([w, w.new_zeros(batch, 1)], dim=-1)  # slot n: a fixed variable's discarded column
        total, rest = w.new_zeros(()), []
        for cost, layout in zip(self.costs, structure.costs):
            found = None
            if free_of_graph:
                direction = padded[:, layout.gradient_slots.to(w.device)].reshape(batch, cost.num, -1)
                found = cost.directional_residual(self._gather(cost, values), direction)
            if found is None:
                rest.append(cost)
                continue
            point, velocity, r = found
            (slope,) = torch.autograd.grad(self._instance_cost(cost, r).sum(), point, create_graph=True)
            total = total + (slope * velocity).sum()
        if rest:
            g, _ = self.gradient_graph(values, rest)
            total = total + (g * w).sum()
        return total

    def gradient(self, values: Values) -> tuple[Tensor, Tensor]:
        """``g = Jᵀr`` ``(B, n)`` and ``F`` ``(B,)`` at ``values``, as ``linearize`` gives them, without
        assembling ``H`` (Hessian-vector products by differences of gradients: ``slam.optim.implicit``)."""
        contributions, total = self._blocks(values)
        return self.structure.assemble_gradient([g for _, g in contributions], self.batch_size), total

    def _assembled(self, values: Values) -> tuple[Tensor, Tensor, Tensor]:
        """``H (B, nnz)``, ``g (B, n)`` and ``F (B,)`` at ``values``.  Costs without a robust loss whose fused
        path adds its blocks straight into ``H`` and ``g`` (``Cost.accumulate_normal``) go first, into the
        fresh tensors; the others' blocks are linearized and added after, out of place (differentiable).
        ``F`` is summed in the costs' order, as ``cost`` sums it."""
        structure, batch = self.structure, self.batch_size
        h = torch.zeros(batch, structure.nnz + 1, dtype=self.dtype, device=self.device)
        g = torch.zeros(batch, structure.n + 1, dtype=self.dtype, device=self.device)
        instance_costs: list[Tensor | None] = [None] * len(self.costs)
        rest = []
        for k, (cost, layout) in enumerate(zip(self.costs, structure.costs)):
            gathered = self._gather(cost, values)
            r = cost.accumulate_normal(gathered, batch, layout, h, g) if cost.loss is None else None
            if r is None:
                rest.append((k, cost, layout, gathered))
            else:
                instance_costs[k] = self._instance_cost(cost, r)
        for k, cost, layout, gathered in rest:
            instance_costs[k], _, _, blocks, gradient = self._linearize_cost(cost, gathered)
            h = structure.add_hessian_blocks(h, layout, blocks, batch)
            g = structure.add_gradient_blocks(g, layout, gradient, batch)
        total = torch.zeros(batch, dtype=self.dtype, device=self.device)
        for instance_cost in instance_costs:
            total = total + instance_cost.sum(-1)
        return h[:, : structure.nnz], g[:, : structure.n], total

    def _blocks(self, values: Values) -> tuple[list[tuple[Tensor, Tensor]], Tensor]:
        """Every cost's ``(JᵀJ, Jᵀr)`` blocks (robust loss applied) and ``F`` ``(B,)`` at ``values``."""
        contributions, total = [], torch.zeros(self.batch_size, dtype=self.dtype, device=self.device)
        for cost in self.costs:
            instance_cost, _, _, h, g = self._linearize_cost(cost, self._gather(cost, values))
            total = total + instance_cost.sum(-1)
            contributions.append((h, g))
        return contributions, total

    def tangent_bracket(self, delta: Tensor, g: Tensor) -> Tensor:
        """``ad(δᵢ)ᵀ gᵢ`` for every free variable ``i`` of a global tangent vector ``delta: (B, n)`` and a
        gradient ``g: (B, n)``, each with its group's ``ad`` (``LieGroup.ad``): ``(B, n)``.

        The gradient at ``x ⊕ tδ`` lives in the tangent space there; to first order in ``t`` it is
        ``(I + ½ t ad(δ))ᵀ`` applied to the gradient of ``F(x ⊕ ·)`` at ``tδ`` (``Exp(a) Exp(b) = Exp(a + b +
        ½ ad(a) b + …)``), which is where ``½ ad(δ)ᵀ g`` enters a Hessian-vector product by differences."""
        out = torch.zeros_like(delta)
        for variable, table in zip(self.variables, self.structure.tables):
            if table.num_free == 0:
                continue
            span = slice(table.offset, table.offset + table.num_free * table.dim)
            d = delta[:, span].reshape(-1, table.num_free, table.dim)
            gi = g[:, span].reshape(-1, table.num_free, table.dim)
            out[:, span] = torch.einsum("bfji,bfj->bfi", type(variable.value).ad(d), gi).reshape(d.shape[0], -1)
        return out

    def _linearize_cost(self, cost: Cost, gathered: list[LieGroup]) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor]:
        """``(½ρ(‖r‖²) (B, E), r, J, JᵀJ, Jᵀr)`` of one cost: ``r`` and ``J`` whitened, the blocks
        reweighted by the robust loss.

        Whatever linearized the cost (autodiff, analytic Jacobians or the cost's own fused kernel),
        the robust loss is applied here, once: iteratively reweighted least squares scales ``JᵀJ``
        and ``Jᵀr`` by ``w = ρ'(‖r‖²)`` (the instance's ``√w`` on ``r`` and ``J``).
        """
        r, j, jtj, jtr = cost.linearize(gathered, self.batch_size)
        instance_cost = self._instance_cost(cost, r).expand(self.batch_size, cost.num)
        if cost.loss is not None:
            w = cost.loss.weight((r * r).sum(-1))
            # An instance the loss ignores (w = 0: Tukey's tails) adds nothing, even where its
            # unweighted blocks overflow (0 · inf would be nan).
            used = (w > 0).unsqueeze(-1)
            w_h = w.reshape(*w.shape, *([1] * (jtj.dim() - w.dim())))
            jtj = torch.where(used.reshape(w_h.shape), jtj * w_h, torch.zeros_like(jtj))
            jtr = torch.where(used, jtr * w.unsqueeze(-1), torch.zeros_like(jtr))
        return instance_cost, r, j, jtj, jtr

    def _instance_cost(self, cost: Cost, r: Tensor) -> Tensor:
        s = (r * r).sum(-1)
        return 0.5 * (cost.loss.rho(s) if cost.loss is not None else s)

    def nonfinite_error(self, values: Values, *, jacobians: bool = True, problems: Tensor | None = None,
                        total: Tensor | None = None, h: Tensor | None = None, g: Tensor | None = None) -> NonFiniteError:
        """The ``NonFiniteError`` that names the first non-finite term at ``values``.

        Searches, per cost and instance (of the problems where ``problems: (B,)`` is True; default
        all), the residual, the Jacobian (with ``jacobians``), the cost ``½ρ(‖r‖²)`` and the blocks
        ``JᵀJ``, ``Jᵀr``.  Where every term is finite but ``total``, ``h`` or ``g`` (assembled sums)
        is not, the sum overflowed: the error names the variable and the largest term.  Slow
        (re-evaluates every cost); meant for the failure path only.
        """
        batch = self.batch_size
        keep = (torch.ones(batch, dtype=torch.bool, device=self.device) if problems is None
                else problems.to(self.device)).view(-1, 1)
        largest: tuple[float, Cost | None, int, int] = (-1.0, None, 0, 0)
        with torch.no_grad():
            for cost in self.costs:
                gathered = self._gather(cost, values)
                if jacobians:
                    instance_cost, r, j, jtj, jtr = self._linearize_cost(cost, gathered)
                    r = r.expand(batch, cost.num, r.shape[-1])
                    checks = [("residual", r), ("Jacobian", j.flatten(-2)), ("cost ½ρ(‖r‖²) (r·r overflows)",
                              instance_cost.unsqueeze(-1)), ("normal-equation block JᵀJ", jtj.flatten(2)),
                              ("normal-equation block Jᵀr", jtr)]
                    size = jtj.detach().abs().flatten(2).amax(-1).expand(batch, cost.num)
                else:
                    r = cost.whitened_residual(gathered).expand(batch, cost.num, -1)
                    instance_cost = self._instance_cost(cost, r)
                    checks = [("residual", r), ("cost ½ρ(‖r‖²) (r·r overflows)", instance_cost.unsqueeze(-1))]
                    size = instance_cost.detach().abs()
                for quantity, x in checks:
                    bad = ~torch.isfinite(x.detach()).all(-1).expand(batch, cost.num) & keep
                    if bool(bad.any()):
                        b, e = (int(i) for i in torch.nonzero(bad)[0])
                        return _instance_error(cost, quantity, b, e, batch)
                size = torch.where(keep, size, torch.zeros_like(size))
                if size.numel() and float(size.max()) > largest[0]:
                    b, e = (int(i) for i in torch.nonzero(size == size.max())[0])
                    largest = (float(size.max()), cost, b, e)
        # Every term is finite: an assembled sum overflowed.
        what = "the total cost"
        for name, x in (("g", g), ("H", h)):
            if x is not None and not bool(torch.isfinite(x.detach()).all()):
                b, k = (int(i) for i in torch.nonzero(~torch.isfinite(x.detach()))[0])
                column = k if name == "g" else int(self.structure.pattern.rows[k])
                what = f"the assembled {name} at {self._column_name(column)}" + (f" of problem {b}" if batch > 1 else "")
                break
        _, cost, b, e = largest
        if cost is None:
            return NonFiniteError(f"{what} is not finite although every cost term is")
        return _instance_error(cost, "sum: " + what + " overflowed (every term is finite; the largest is this one)",
                               b, e, batch)

    def _column_name(self, column: int) -> str:
        """``"name[index]"`` of the variable element that owns tangent column ``column`` of ``H``."""
        for variable, table in zip(self.variables, self.structure.tables):
            if table.offset <= column < table.offset + table.num_free * table.dim:
                return f"{variable.name}[{int(table.free[(column - table.offset) // table.dim])}]"
        return f"column {column}"


def _loss_derivatives(loss: RobustLoss, s: Tensor) -> tuple[Tensor, Tensor]:
    """``ρ'(s)`` and ``ρ''(s)`` of a robust loss, the second by autograd of its ``weight`` (elementwise)."""
    with torch.enable_grad():
        s = s.detach().requires_grad_(True)
        w = loss.weight(s)
        (dw,) = torch.autograd.grad(w.sum(), s, allow_unused=True) if w.requires_grad else (None,)
    return w.detach(), torch.zeros_like(s) if dw is None else dw.detach()


def _instance_error(cost: Cost, quantity: str, b: int, e: int, batch: int, detail: str = "") -> NonFiniteError:
    variables = tuple(f"{ref.variable.name}[{int(ref.index[e])}]" for ref in cost.variables)
    where = f"instance {e}" + (f" of problem {b}" if batch > 1 else "")
    return NonFiniteError(
        f"cost '{cost.name}' produced a non-finite {quantity} at {where} (variables: {', '.join(variables)}){detail}",
        cost=cost.name, instance=e, problem=b, variables=variables, quantity=quantity,
    )
