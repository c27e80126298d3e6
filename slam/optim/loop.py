"""The iteration loop every optimizer shares: linearize, step, judge, stop; records go to subscribers.

Stopping tests common to all strategies (the strategies add their own, ``StepStrategy.stops``):
gradient (``max |g|``, and the scale-free gradient cosine), cost, and, after an accepted step,
function (relative decrease), absolute decrease and parameter (relative step) tolerances.  The
relative tolerances are floored at a few units of the dtype's rounding (``tolerance_floors``), so
that a float32 solve stops where float64 stops rather than at the iteration limit: below that
floor a decrease or step cannot be told from rounding.
"""

from __future__ import annotations

import dataclasses
import time
from typing import Callable, Sequence

import torch
from torch import Tensor

from ..linear.base import LinearSolver
from ..problem import NonFiniteError, Problem, Values
from .result import IterationRecord
from .steps import Linearization, StepStrategy
from .termination import Termination

Subscriber = Callable[[IterationRecord], None]


@dataclasses.dataclass
class LoopResult:
    values: Values
    cost: Tensor
    initial_cost: Tensor
    iterations: Tensor
    converged: Tensor
    termination: list[Termination]
    h: Tensor
    """The (undamped) normal-equation values at ``values`` (the last linearization)."""
    g: Tensor
    """The gradient ``(B, n)`` at ``values`` (the last linearization)."""


def tolerance_floors(dtype: torch.dtype) -> tuple[float, float]:
    """``(function, parameter)`` floors of the relative tolerances in ``dtype``: a relative cost
    decrease below 128 eps, or a relative step below 32 eps, is within the rounding of a cost summed
    over many terms (measured on float32 pose graphs of 300 poses: the cost at a minimum wobbles by
    ~30 eps relative from one trial point to the next).  float64: 2.8e-14 and 7e-15, far below the
    defaults; float32: 1.5e-5 and 3.8e-6."""
    eps = torch.finfo(dtype).eps
    return 128.0 * eps, 32.0 * eps


class _Stops:
    """Per-problem ``active`` / ``converged`` masks and reasons.

    Tests are queued (``stop(mask, why)``) and applied in order by ``settle``, all in one reduction and
    one host sync: on small problems each tensor op and sync is a noticeable part of an iteration."""

    def __init__(self, batch: int, device: torch.device):
        self.active = torch.ones(batch, dtype=torch.bool, device=device)
        self.converged = torch.zeros(batch, dtype=torch.bool, device=device)
        self.reasons: list[Termination | None] = [None] * batch
        self._pending: list[tuple[Tensor, Termination]] = []
        self._any_active = batch > 0

    def __call__(self, mask: Tensor, why: Termination) -> None:
        self._pending.append((mask, why))

    def settle(self) -> bool:
        """Apply the queued tests in order (a problem keeps the first reason that stops it); returns
        whether any problem is still active."""
        pending, self._pending = self._pending, []
        if not pending:
            return self._any_active
        hits = (torch.stack([mask.to(self.active.device) for mask, _ in pending]) & self.active).any(-1).tolist()
        for (mask, why), hit in zip(pending, hits):
            if hit:  # rare: the exact sequential update
                mask = mask.to(self.active.device) & self.active
                for b in torch.nonzero(mask).flatten().tolist():
                    self.reasons[b] = why
                if why.converged:
                    self.converged = self.converged | mask
                self.active = self.active & ~mask
                self._any_active = bool(self.active.any())
        return self._any_active


def run(problem: Problem, strategy: StepStrategy, values: Values, start: float,
        subscribers: Sequence[Subscriber] = ()) -> LoopResult:
    """Iterate ``strategy`` from ``values`` until every problem of the batch has stopped."""
    cfg = strategy.config
    batch, device = problem.batch_size, problem.device
    function_floor, parameter_floor = tolerance_floors(problem.dtype)
    function_tolerance = max(cfg.function_tolerance, function_floor) if cfg.function_tolerance > 0 else 0.0
    parameter_tolerance = max(cfg.parameter_tolerance, parameter_floor) if cfg.parameter_tolerance > 0 else 0.0
    stop = _Stops(batch, device)
    count = torch.zeros(batch, dtype=torch.long, device=device)
    nonfinite = _NonFiniteTrials(batch, device) if strategy.rejects_steps else None

    lin = Linearization(*problem.linearize(values))
    initial_cost = lin.cost.detach()
    # While steps are being accepted, a trial point is linearized at once (its cost comes with it, to
    # the bit, and the accepted point needs the linearization anyway); after a rejection only its cost.
    # Only where fused kernels linearize every cost: elsewhere a Jacobian costs many residuals (autodiff,
    # a user's callback) and a rejected trial would pay it for nothing.
    fused = not torch.is_grad_enabled() and all(plan.fused for plan in problem.analyze().costs)
    linearize_trials = fused
    if problem.structure.n == 0:
        stop(stop.active, Termination.NO_FREE_VARIABLES)
    for it in range(cfg.max_iterations):
        stop(lin.g.detach().abs().amax(-1) <= cfg.gradient_tolerance, Termination.GRADIENT_TOLERANCE)
        if cfg.gradient_cosine_tolerance > 0:
            stop(_gradient_cosine(lin, strategy.diagonal) <= cfg.gradient_cosine_tolerance, Termination.GRADIENT_TOLERANCE)
        stop(lin.cost.detach() <= cfg.cost_tolerance, Termination.COST_TOLERANCE)
        if not stop.settle():
            break
        active = stop.active
        proposal = strategy.propose(lin, active)
        candidate = problem.retract(values, proposal.step)
        trial = problem.linearize(candidate, check=False) if linearize_trials else None
        new_cost = trial[2] if trial is not None else problem.cost(candidate)
        unusable = active & proposal.ok & ~torch.isfinite(new_cost.detach()) if nonfinite is not None else None
        accept = strategy.judge(proposal, lin, new_cost, active)
        # One host sync for every branch below (each costs about as much as a small kernel here).
        flags = [accept.all(), accept.any(), (accept | ~active).all()]
        all_accepted, any_accepted, all_moved, *saw_unusable = torch.stack(
            flags + ([unusable.any()] if unusable is not None else [])).tolist()
        if nonfinite is not None:
            nonfinite.saw(problem, unusable, candidate, bool(saw_unusable[0]))
            nonfinite.accepted(accept)
        count = count + active.long()
        with torch.no_grad():
            decrease = (lin.cost - new_cost).detach()
            step_norm = proposal.step.detach().norm(dim=-1)
        values = candidate if all_accepted else problem.select(accept, candidate, values)
        x_norm = None
        if any_accepted:
            previous = lin.cost.detach()
            lin = _accepted_linearization(problem, values, lin, trial, accept, all_accepted)
            strategy.relinearized(accept, lin)
            with torch.no_grad():
                x_norm = _storage_norm(values)
                change = decrease.abs()  # an (always taken) Gauss-Newton step may also raise the cost slightly
                if function_tolerance > 0:  # a tolerance of 0 disables its test
                    stop(accept & (change <= function_tolerance * previous), Termination.FUNCTION_TOLERANCE)
                if cfg.absolute_tolerance > 0:
                    stop(accept & (change <= cfg.absolute_tolerance), Termination.ABSOLUTE_TOLERANCE)
                if parameter_tolerance > 0:
                    stop(accept & (step_norm <= parameter_tolerance * (x_norm + parameter_tolerance)),
                         Termination.PARAMETER_TOLERANCE)
        if parameter_tolerance > 0 and strategy.rejects_steps:
            # The next step is no longer than a bound the strategy knows (its trust radius), or, with LM's
            # opt-in rejected_step_tolerance, than the step it just rejected: once that bound is within the
            # tolerance the parameters have settled, the stop of MINPACK's xtol on its radius and of Ceres'
            # min_trust_region_radius.
            bound = strategy.next_step_bound()
            if bound is None and getattr(cfg, "rejected_step_tolerance", False):
                bound = torch.where(~accept & proposal.ok & torch.isfinite(new_cost.detach()), step_norm,
                                    torch.full_like(step_norm, float("inf")))
            if bound is not None:
                with torch.no_grad():
                    x_norm = _storage_norm(values) if x_norm is None else x_norm
                    stop(bound <= parameter_tolerance * (x_norm + parameter_tolerance), Termination.PARAMETER_TOLERANCE)
        for mask, why in strategy.stops(proposal, accept, active):
            stop(mask, why)
        linearize_trials = fused and bool(all_moved)
        damping, radius = strategy.parameter()
        record = IterationRecord(it, lin.cost.detach().clone(), step_norm, damping.clone(), accept,
                                 time.perf_counter() - start, decrease=decrease, active=active,
                                 radius=None if radius is None else radius.clone())
        for subscriber in subscribers:
            subscriber(record)
    stop.settle()
    stop(stop.active, Termination.MAX_ITERATIONS)
    stop.settle()
    reasons: list[Termination] = stop.reasons  # type: ignore[assignment]  # every problem has stopped
    if nonfinite is not None:
        nonfinite.check(problem, strategy, values, lin, stop.converged, reasons)
    converged = strategy.finish(stop.converged, reasons)
    return LoopResult(values, lin.cost.detach(), initial_cost, count, converged, reasons, lin.h, lin.g)


def _accepted_linearization(problem: Problem, values: Values, lin: Linearization,
                            trial: tuple[Tensor, Tensor, Tensor] | None, accept: Tensor,
                            all_accepted: bool) -> Linearization:
    """The linearization at ``values`` (the trial point where ``accept``, the previous point elsewhere):
    the trial's own where it was linearized and is finite there, else ``problem.linearize`` (which
    raises ``NonFiniteError`` naming the culprit)."""
    if trial is not None:
        h, g, cost = trial
        with torch.no_grad():
            finite = torch.isfinite(h.sum(-1) + g.sum(-1) + cost)
        if bool((finite | ~accept).all()):
            if all_accepted:
                return Linearization(h, g, cost)
            keep = accept.unsqueeze(-1)
            return Linearization(torch.where(keep, h, lin.h), torch.where(keep, g, lin.g),
                                 torch.where(accept, cost, lin.cost))
    return Linearization(*problem.linearize(values))


_TOLERANCE_STOPS = (Termination.FUNCTION_TOLERANCE, Termination.ABSOLUTE_TOLERANCE, Termination.PARAMETER_TOLERANCE)


class _NonFiniteTrials:
    """Trial points whose cost was not finite (rejected steps, as in Ceres), remembered to tell a
    minimum from a stall at the edge of the region where the cost is finite."""

    def __init__(self, batch: int, device: torch.device):
        self.ever = torch.zeros(batch, dtype=torch.bool, device=device)
        self.since_accept = torch.zeros(batch, dtype=torch.bool, device=device)
        self.where: Values | None = None  # per problem, its last trial point with a non-finite cost

    def saw(self, problem: Problem, mask: Tensor, candidate: Values, any_set: bool) -> None:
        """``mask: (B,)`` the problems whose trial point ``candidate`` has a non-finite cost; ``any_set``:
        ``bool(mask.any())``, which the loop already has."""
        if any_set:
            self.ever = self.ever | mask
            self.where = problem.select(mask, candidate, self.where or candidate)
        self.since_accept = self.since_accept | mask

    def accepted(self, accept: Tensor) -> None:
        self.since_accept = self.since_accept & ~accept

    def check(self, problem: Problem, strategy: StepStrategy, values: Values, lin: Linearization, converged: Tensor,
              reasons: list[Termination]) -> None:
        """Raise ``NonFiniteError`` where non-finite trial costs, not a minimum, ended a problem's solve:
        (a) it ended without converging after such rejections (damping or iteration limit), or (b) it met
        a step or cost tolerance there.  For (b) one more step is tried from the solution with the
        strategy's initial setting (``StepStrategy.probe``): at a minimum it is tiny and finite; at such
        an edge it leads back into the non-finite region."""
        if not bool(self.ever.any()):
            return
        blocked = ~converged & self.since_accept
        where = self.where
        if bool(blocked.any()):
            b = int(torch.nonzero(blocked)[0])
            context = f"the solve stopped ({reasons[b]}) after rejecting steps to points where it is not finite"
        else:
            suspect = converged & self.ever & torch.tensor([r in _TOLERANCE_STOPS for r in reasons],
                                                          device=converged.device)
            if not bool(suspect.any()):
                return
            with torch.no_grad():
                detached = Linearization(lin.h.detach(), lin.g.detach(), lin.cost.detach())
                probe = strategy.probe(detached)
                usable = suspect & probe.ok
                trial = problem.retract(values, torch.where(usable.unsqueeze(-1), probe.step, torch.zeros_like(probe.step)))
                bad = usable & ~torch.isfinite(problem.cost(trial))
            if not bool(bad.any()):
                return
            b, where = int(torch.nonzero(bad)[0]), trial
            context = (f"the solve met its {reasons[b]} at the edge of a region where the cost is not finite "
                       "(not at a minimum: the step from there leads to a non-finite cost)")
        mask = torch.zeros(problem.batch_size, dtype=torch.bool, device=converged.device)
        mask[b] = True
        error = problem.nonfinite_error(where, jacobians=False, problems=mask)
        raise NonFiniteError(f"{error}; {context}", cost=error.cost, instance=error.instance, problem=error.problem,
                             variables=error.variables, quantity=error.quantity)


def _gradient_cosine(lin: Linearization, diagonal: Tensor) -> Tensor:
    """``max_j |gⱼ| / (‖Jⱼ‖ ‖r‖)`` per problem, with ``‖Jⱼ‖² = Hⱼⱼ`` and ``‖r‖² = 2 cost`` (columns with
    ``Hⱼⱼ = 0`` skipped; 0 where the cost is 0)."""
    with torch.no_grad():
        residual_norm = torch.sqrt(2.0 * lin.cost.detach().clamp_min(0.0)).unsqueeze(-1)
        scale = lin.h.detach()[:, diagonal].clamp_min(0.0).sqrt() * residual_norm
        positive = scale > 0
        cosine = lin.g.detach().abs() / torch.where(positive, scale, torch.ones_like(scale))
        return torch.where(positive, cosine, torch.zeros_like(cosine)).amax(-1)


def _storage_norm(values: Values) -> Tensor:
    return torch.sqrt(sum(v.data.detach().square().flatten(1).sum(-1) for v in values))


def make_strategy(config, problem: Problem, solver: LinearSolver) -> StepStrategy:  # type: ignore[no-untyped-def]
    """The config's step strategy bound to ``problem`` and ``solver``."""
    return config.strategy()(config, problem, solver)
