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

import numpy as np
import torch
from torch import Tensor

from ..linear.base import LinearSolver
from ..problem import NonFiniteError, Problem, Values
from .result import IterationRecord
from .steps import Linearization, StepStrategy, Trial, to_device, to_host
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
    """Per-problem ``active`` / ``converged`` masks and reasons, on the host (``slam.optim.steps``): a
    problem keeps the first reason that stops it."""

    def __init__(self, batch: int):
        self.active = np.ones(batch, dtype=bool)
        self.converged = np.zeros(batch, dtype=bool)
        self.reasons: list[Termination | None] = [None] * batch

    def __call__(self, mask: np.ndarray, why: Termination) -> None:
        hit = mask & self.active
        if hit.any():
            for b in np.flatnonzero(hit).tolist():
                self.reasons[b] = why
            if why.converged:
                self.converged = self.converged | hit
            self.active = self.active & ~hit


def run(problem: Problem, strategy: StepStrategy, values: Values, start: float,
        subscribers: Sequence[Subscriber] = ()) -> LoopResult:
    """Iterate ``strategy`` from ``values`` until every problem of the batch has stopped.

    Per iteration the per-problem numbers (costs, step norms, the solve's success, the largest
    gradient entry) come to the host in one transfer (``to_host``); the tests and the strategy's
    judgement run there."""
    cfg = strategy.config
    batch, device = problem.batch_size, problem.device
    function_floor, parameter_floor = tolerance_floors(problem.dtype)
    function_tolerance = max(cfg.function_tolerance, function_floor) if cfg.function_tolerance > 0 else 0.0
    parameter_tolerance = max(cfg.parameter_tolerance, parameter_floor) if cfg.parameter_tolerance > 0 else 0.0
    stop = _Stops(batch)
    count = np.zeros(batch, dtype=np.int64)
    nonfinite = _NonFiniteTrials(batch) if strategy.rejects_steps else None

    lin = Linearization(*problem.linearize(values))
    initial_cost = lin.cost.detach()
    cost, g_max = to_host(lin.cost, _largest_entry(lin.g))
    # While steps are being accepted, a trial point is linearized at once (its cost comes with it, to
    # the bit, and the accepted point needs the linearization anyway); after a rejection only its cost.
    # Only where fused kernels linearize every cost: elsewhere a Jacobian costs many residuals (autodiff,
    # a user's callback) and a rejected trial would pay it for nothing.
    fused = not torch.is_grad_enabled() and all(plan.fused for plan in problem.analyze().costs)
    linearize_trials = fused
    if problem.structure.n == 0:
        stop(stop.active, Termination.NO_FREE_VARIABLES)
    for it in range(cfg.max_iterations):
        stop(g_max <= cfg.gradient_tolerance, Termination.GRADIENT_TOLERANCE)
        if cfg.gradient_cosine_tolerance > 0:
            stop(to_host(_gradient_cosine(lin, strategy.diagonal))[0] <= cfg.gradient_cosine_tolerance,
                 Termination.GRADIENT_TOLERANCE)
        stop(cost <= cfg.cost_tolerance, Termination.COST_TOLERANCE)
        if not stop.active.any():
            break
        active = stop.active
        proposal = strategy.propose(lin, active)
        candidate = problem.retract(values, proposal.step)
        trial = problem.linearize(candidate, check=False) if linearize_trials else None
        new_cost_t = trial[2] if trial is not None else problem.cost(candidate)
        with torch.no_grad():
            # One transfer: what the judgement and the tests need, and what tells whether the trial's
            # linearization is finite (the sums) and its gradient test.
            sent = [new_cost_t, proposal.step.detach().norm(dim=-1), proposal.ok]
            sent += [proposal.predicted] if proposal.predicted is not None else []
            sent += [trial[0].sum(-1) + trial[1].sum(-1), _largest_entry(trial[1])] if trial is not None else []
            received = to_host(*sent)
        new_cost, step_norm, ok = received[:3]
        predicted = received[3] if proposal.predicted is not None else None
        judged = Trial(cost, new_cost, predicted, ok, active, step_norm)
        accept = strategy.judge(judged)
        all_accepted, any_accepted = bool(accept.all()), bool(accept.any())
        if nonfinite is not None:
            nonfinite.saw(problem, active & ok & ~np.isfinite(new_cost), candidate)
            nonfinite.accepted(accept)
        count = count + active
        with np.errstate(invalid="ignore"):  # inf - inf: a non-finite trial, rejected
            decrease = cost - new_cost
        values = candidate if all_accepted else problem.select(to_device(accept, device), candidate, values)
        x_norm = None
        if any_accepted:
            previous = cost
            if trial is not None and (np.isfinite(received[-2] + new_cost) | ~accept).all():
                lin, cost, g_max = _accepted(lin, trial, accept, all_accepted, cost, new_cost, g_max, received[-1])
            else:  # raises NonFiniteError naming the culprit where the accepted point is not finite
                lin = Linearization(*problem.linearize(values))
                cost, g_max = to_host(lin.cost, _largest_entry(lin.g))
            strategy.relinearized(accept, lin)
            if parameter_tolerance > 0:
                x_norm = _storage_norm(values)
            with np.errstate(invalid="ignore"):
                change = np.abs(decrease)  # an (always taken) Gauss-Newton step may also raise the cost slightly
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
                bound = np.where(~accept & ok & np.isfinite(new_cost), step_norm, np.inf)
            if bound is not None:
                x_norm = _storage_norm(values) if x_norm is None else x_norm
                stop(bound <= parameter_tolerance * (x_norm + parameter_tolerance), Termination.PARAMETER_TOLERANCE)
        for mask, why in strategy.stops(judged, accept):
            stop(mask, why)
        linearize_trials = fused and bool((accept | ~active).all())
        damping, radius = strategy.parameter()
        record = IterationRecord(it, _record(cost, device), _record(step_norm, device), _record(damping, device),
                                 _record(accept, device), time.perf_counter() - start,
                                 decrease=_record(decrease, device), active=_record(active, device),
                                 radius=None if radius is None else _record(radius, device))
        for subscriber in subscribers:
            subscriber(record)
    stop(stop.active, Termination.MAX_ITERATIONS)
    reasons: list[Termination] = stop.reasons  # type: ignore[assignment]  # every problem has stopped
    if nonfinite is not None:
        nonfinite.check(problem, strategy, values, lin, stop.converged, reasons)
    converged = strategy.finish(stop.converged, reasons)
    return LoopResult(values, lin.cost.detach(), initial_cost, _record(count, device), _record(converged, device),
                      reasons, lin.h, lin.g)


def _largest_entry(g: Tensor) -> Tensor:
    """``max |gⱼ|`` per problem ``(B,)`` (the gradient test)."""
    return g.detach().abs().amax(-1) if g.shape[-1] else g.new_zeros(g.shape[:-1])


def _record(values: np.ndarray, device: torch.device) -> Tensor:
    """A host array as the record's own tensor (a copy: subscribers may keep or modify it)."""
    return torch.tensor(values, device=device)


def _accepted(lin: Linearization, trial: tuple[Tensor, Tensor, Tensor], accept: np.ndarray, all_accepted: bool,
              cost: np.ndarray, new_cost: np.ndarray, g_max: np.ndarray,
              trial_g_max: np.ndarray) -> tuple[Linearization, np.ndarray, np.ndarray]:
    """The linearization (and its host cost and gradient test) at the trial point where ``accept``, at
    the previous point elsewhere."""
    h, g, trial_cost = trial
    if all_accepted:
        return Linearization(h, g, trial_cost), new_cost, trial_g_max
    keep = to_device(accept, h.device)
    row = keep.unsqueeze(-1)
    return (Linearization(torch.where(row, h, lin.h), torch.where(row, g, lin.g), torch.where(keep, trial_cost, lin.cost)),
            np.where(accept, new_cost, cost), np.where(accept, trial_g_max, g_max))


_TOLERANCE_STOPS = (Termination.FUNCTION_TOLERANCE, Termination.ABSOLUTE_TOLERANCE, Termination.PARAMETER_TOLERANCE)


class _NonFiniteTrials:
    """Trial points whose cost was not finite (rejected steps, as in Ceres), remembered to tell a
    minimum from a stall at the edge of the region where the cost is finite."""

    def __init__(self, batch: int):
        self.ever = np.zeros(batch, dtype=bool)
        self.since_accept = np.zeros(batch, dtype=bool)
        self.where: Values | None = None  # per problem, its last trial point with a non-finite cost

    def saw(self, problem: Problem, mask: np.ndarray, candidate: Values) -> None:
        """``mask: (B,)`` the problems whose trial point ``candidate`` has a non-finite cost."""
        if mask.any():
            self.ever = self.ever | mask
            self.where = problem.select(to_device(mask, problem.device), candidate, self.where or candidate)
        self.since_accept = self.since_accept | mask

    def accepted(self, accept: np.ndarray) -> None:
        self.since_accept = self.since_accept & ~accept

    def check(self, problem: Problem, strategy: StepStrategy, values: Values, lin: Linearization,
              converged: np.ndarray, reasons: list[Termination]) -> None:
        """Raise ``NonFiniteError`` where non-finite trial costs, not a minimum, ended a problem's solve:
        (a) it ended without converging after such rejections (damping or iteration limit), or (b) it met
        a step or cost tolerance there.  For (b) one more step is tried from the solution with the
        strategy's initial setting (``StepStrategy.probe``): at a minimum it is tiny and finite; at such
        an edge it leads back into the non-finite region."""
        if not self.ever.any():
            return
        blocked = ~converged & self.since_accept
        where = self.where
        if blocked.any():
            b = int(np.flatnonzero(blocked)[0])
            context = f"the solve stopped ({reasons[b]}) after rejecting steps to points where it is not finite"
        else:
            suspect = converged & self.ever & np.array([r in _TOLERANCE_STOPS for r in reasons])
            if not suspect.any():
                return
            with torch.no_grad():
                detached = Linearization(lin.h.detach(), lin.g.detach(), lin.cost.detach())
                probe = strategy.probe(detached)
                usable = to_device(suspect, probe.ok.device) & probe.ok
                trial = problem.retract(values, torch.where(usable.unsqueeze(-1), probe.step, torch.zeros_like(probe.step)))
                bad = to_host(usable & ~torch.isfinite(problem.cost(trial)))[0]
            if not bad.any():
                return
            b, where = int(np.flatnonzero(bad)[0]), trial
            context = (f"the solve met its {reasons[b]} at the edge of a region where the cost is not finite "
                       "(not at a minimum: the step from there leads to a non-finite cost)")
        mask = torch.zeros(problem.batch_size, dtype=torch.bool, device=problem.device)
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


def _storage_norm(values: Values) -> np.ndarray:
    """``‖x‖`` of every problem's storage, on the host."""
    with torch.no_grad():
        return to_host(torch.sqrt(sum(v.data.detach().square().flatten(1).sum(-1) for v in values)))[0]


def make_strategy(config, problem: Problem, solver: LinearSolver) -> StepStrategy:  # type: ignore[no-untyped-def]
    """The config's step strategy bound to ``problem`` and ``solver``."""
    return config.strategy()(config, problem, solver)
