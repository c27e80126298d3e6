"""``slam.solve``: Gauss-Newton / Levenberg-Marquardt over a batch of problems, differentiable.

Every problem b of the batch keeps its own damping, acceptance decisions and
termination; the iteration stops when all have stopped.  How gradients reach the
inputs (measurements, weights, robust scales, initial values) is the backward
mode: ``Unroll``, ``Truncated(k)`` or ``Implicit`` (the default).  When nothing
requires grad, the solve runs without recording a graph.

Failures are never reported as convergence:

* A non-finite cost, residual, Jacobian or normal-equation entry at the initial point or at an
  accepted point raises ``NonFiniteError`` naming the cost, instance, problem and variables.
  Levenberg-Marquardt rejects a trial point whose cost is not finite (the damping grows, as in
  Ceres), but raises ``NonFiniteError`` (naming the term at the last such trial) when a problem
  then ends without converging after such rejections, or meets a step or cost-change tolerance
  at the edge of the non-finite region (checked by one more step from the solution at the initial
  damping: finite at a minimum, non-finite at such an edge).  Gauss-Newton takes every step, so a
  non-finite cost there raises at once.
* A linear solve that fails (``Factorization.ok`` False: not positive definite, non-finite, an
  iterative solve that broke down) or returns a non-finite step is never taken: LM rejects it;
  Gauss-Newton raises ``SingularSystemError``.  (An iterative solve that only missed its
  tolerance, ``inexact``, gives an inexact Newton step, which is taken.)  Where the solver has
  a minimum-norm fallback (``DenseCholesky``), GN takes the minimum-norm step of the
  rank-deficient system, and a problem whose last system was rank-deficient ends with
  ``converged`` False and a termination that says so (its solution is not unique).
"""

from __future__ import annotations

import dataclasses
import functools
import logging
import time
from typing import Any, Iterator

import torch
from torch import Tensor

from liegeo import LieGroup

from ..linear.base import LinearSolver
from ..problem import NonFiniteError, Problem, Values
from .config import BackwardMode, GaussNewton, Implicit, LevenbergMarquardt, Truncated, Unroll, _Common
from .implicit import implicit_solution
from .result import IterationRecord, SolveResult

log = logging.getLogger("slam")

Optimizer = GaussNewton | LevenbergMarquardt


class SingularSystemError(RuntimeError):
    """The Gauss-Newton system could not be factorized (a rank-deficient problem)."""


def make_linear_solver(choice: Any, problem: Problem) -> LinearSolver:
    """The ``LinearSolver`` for a config's ``linear_solver`` field (see ``_Common.linear_solver``)."""
    if isinstance(choice, LinearSolver):
        return choice.prepare(problem)
    from ..linear.cg import ConjugateGradient
    from ..linear.dense import DenseCholesky
    from ..linear.sparse import SparseCholesky

    if choice == "auto":
        # Measured (benchmarks/solver.py, SE(3) grids): CHOLMOD equals dense Cholesky at 90 free
        # dimensions and is 6x faster at 594; dense stays the choice off the CPU up to 1,000.
        cpu = problem.device.type == "cpu"
        if problem.structure.n <= (100 if cpu else 1000):
            return DenseCholesky()
        if not cpu:
            _log_choice_once("the sparse system is not on the CPU: preconditioned conjugate gradients on "
                             f"{problem.device} (a direct sparse factorization would run on the CPU)")
            return ConjugateGradient()
        if not _have_cholmod():
            # SciPy's SuperLU with symmetric pivots, not PCG: sphere2500 (15k unknowns) takes 1.65x
            # CHOLMOD's time with it and ~500x with PCG (measured, 1 thread; issue 15).
            _log_choice_once("CHOLMOD (scikit-sparse) is not installed: sparse systems are factorized by SciPy's "
                             "SuperLU (~1.7x CHOLMOD's time on sphere2500; pip install scikit-sparse for CHOLMOD)")
        return SparseCholesky()
    return {"dense": DenseCholesky, "cholmod": SparseCholesky, "cg": ConjugateGradient}[choice]()


@functools.cache
def _log_choice_once(message: str) -> None:
    """One log line per distinct choice per process (a training loop solves thousands of times)."""
    log.info("linear solver: %s", message)


def _have_cholmod() -> bool:
    try:
        import sksparse.cholmod  # noqa: F401
    except ImportError:
        return False
    return True


def solve(
    problem: Problem,
    optimizer: Optimizer | None = None,
    backward: BackwardMode | None = None,
    *,
    differentiable: bool | None = None,
) -> SolveResult:
    """Minimize ``problem``'s cost from its variables' current values.

    Args:
        problem: the costs and variables.
        optimizer: ``LevenbergMarquardt()`` (default) or ``GaussNewton()`` with its settings.
        backward: how gradients flow to the inputs: ``Implicit()`` (default), ``Unroll()``
            or ``Truncated(k)``.  Irrelevant (and free) when no input requires grad.
        differentiable: build the backward graph.  ``None`` (default) decides from the tensors
            the costs and variables hold; pass ``True`` when a residual closes over tensors
            that require grad, which the problem cannot see.

    Returns:
        A ``SolveResult``; ``result[variable]`` is that table's solution, differentiable
        with respect to every input that requires grad.
    """
    optimizer = optimizer if optimizer is not None else LevenbergMarquardt()
    backward = backward if backward is not None else Implicit()
    solver = make_linear_solver(optimizer.linear_solver, problem)
    start = time.perf_counter()
    values = problem.initial_values()
    if differentiable is None:
        differentiable = any(t.requires_grad for t in _problem_tensors(problem))
    differentiable = differentiable and torch.is_grad_enabled()

    if not differentiable or not isinstance(backward, Unroll):
        with torch.no_grad():
            state = _iterate(problem, optimizer, solver, [v.detach() for v in values], start)
    else:
        state = _iterate(problem, optimizer, solver, values, start)
    solution = state.values
    if differentiable and not isinstance(backward, Unroll):
        # Restart the graph at the solution, but keep fixed elements as the inputs they are: the
        # solution depends on them, and they are part of the output.
        restart = _with_fixed_inputs(problem, [v.detach() for v in solution], values)
        if isinstance(backward, Truncated):
            solution = _iterate(problem, optimizer, solver, restart, start, iterations=backward.iterations).values
        else:
            solution = implicit_solution(problem, restart, solver, backward)

    with torch.no_grad():
        final_cost = problem.cost(solution) if solution is not state.values else state.cost
    seconds = time.perf_counter() - start
    for b in range(problem.batch_size) if problem.batch_size <= 4 else ():
        log.info("problem %d: %s after %d iterations, cost %.6e -> %.6e", b, state.termination[b],
                 int(state.iterations[b]), float(state.initial_cost[b]), float(final_cost[b]))
    out = {}
    for variable, value in zip(problem.variables, solution):
        out[variable] = value if variable.batch_size is not None or problem.batched else value[0]
    return SolveResult(
        values=out, cost=final_cost, initial_cost=state.initial_cost, iterations=state.iterations,
        converged=state.converged, termination=state.termination, history=state.history, solve_seconds=seconds,
    )


@dataclasses.dataclass
class _State:
    values: Values
    cost: Tensor
    initial_cost: Tensor
    damping: Tensor
    iterations: Tensor
    converged: Tensor
    termination: list[str]
    history: list[IterationRecord]


def _iterate(
    problem: Problem,
    cfg: _Common,
    solver: LinearSolver,
    values: Values,
    start: float,
    *,
    iterations: int | None = None,
) -> _State:
    """The shared GN/LM loop.  With ``iterations`` given, runs exactly that many undamped
    Gauss-Newton steps, every step taken (the truncated backward mode's tail: at a solution,
    LM's damping may have grown huge while rejecting steps that cannot lower the cost)."""
    lm = isinstance(cfg, LevenbergMarquardt)
    tail = iterations is not None
    batch, structure = problem.batch_size, problem.structure
    diagonal = structure.pattern.diagonal.to(problem.device)
    dtype, device = problem.dtype, problem.device

    lam = torch.full((batch,), cfg.initial_damping if lm and not tail else 0.0, dtype=dtype, device=device)
    nu = torch.full((batch,), 2.0, dtype=dtype, device=device)
    d_max = None
    active = torch.ones(batch, dtype=torch.bool, device=device)
    converged = torch.zeros(batch, dtype=torch.bool, device=device)
    count = torch.zeros(batch, dtype=torch.long, device=device)
    reasons = [""] * batch
    history: list[IterationRecord] = []
    rank_deficient = torch.zeros(batch, dtype=torch.bool, device=device)  # GN: the last system was singular
    had_nonfinite = torch.zeros(batch, dtype=torch.bool, device=device)  # LM: some trial cost was not finite
    nonfinite_since_accept = torch.zeros(batch, dtype=torch.bool, device=device)
    nonfinite_values: Values | None = None  # per problem, its last trial point with a non-finite cost

    def stop(mask: Tensor, reason: str, success: bool) -> None:
        nonlocal active, converged
        mask = mask & active
        if bool(mask.any()):
            for b in torch.nonzero(mask).flatten().tolist():
                reasons[b] = reason
            converged = converged | (mask if success else torch.zeros_like(mask))
            active = active & ~mask

    h, g, cost = problem.linearize(values)
    initial_cost = cost.detach()
    if structure.n == 0:
        stop(active, "no free variables", True)
    bar = _progress(cfg, iterations or cfg.max_iterations)
    for it in range(iterations if tail else cfg.max_iterations):
        if not tail:
            stop(g.detach().abs().amax(-1) <= cfg.gradient_tolerance, "gradient tolerance", True)
            if cfg.gradient_cosine_tolerance > 0:
                cosine = _gradient_cosine(h, g, cost, diagonal)
                stop(cosine <= cfg.gradient_cosine_tolerance, "gradient tolerance", True)
            stop(cost.detach() <= cfg.cost_tolerance, "cost tolerance", True)
            if not bool(active.any()):
                break
        marquardt = lm and cfg.damping in ("marquardt", "marquardt-current")
        d = (h.detach()[:, diagonal].clamp(cfg.min_diagonal, cfg.max_diagonal)
             if marquardt else torch.ones(batch, structure.n, dtype=dtype, device=device))
        if lm and cfg.damping == "marquardt":  # running maximum (see LevenbergMarquardt.damping)
            d = d if d_max is None else torch.maximum(d, d_max)
            d_max = d
        damped = h.index_add(1, diagonal, lam.unsqueeze(-1) * d) if lm and not tail else h
        factorization = solver.factorize(structure, damped)
        if tail and not bool(factorization.ok.all()):  # a singular JᵀJ (a free gauge): regularize slightly
            scale = 1e-9 * h.detach()[:, diagonal].abs().amax(-1, keepdim=True).clamp_min(1e-30)
            factorization = solver.factorize(structure, h.index_add(1, diagonal, scale.expand(-1, structure.n)))
        step = factorization.solve(-g)
        if not lm and not tail:
            step = cfg.step_size * step
        # A non-finite step (from finite H and g: linearize checked them) is a failed linear solve.
        finite_step = torch.isfinite(step.detach()).all(-1)
        ok = factorization.ok & finite_step
        # An iterative solve that only missed its tolerance (no breakdown) still gives a step, an
        # inexact Newton one as in Ceres; LM's gain ratio judges it.
        inexact = getattr(factorization, "inexact", None)
        if inexact is not None:
            ok = ok | (inexact.to(ok.device) & finite_step)
        if not lm:
            # Gauss-Newton takes a solver's minimum-norm fallback (dense) on a rank-deficient system,
            # and remembers it: such a solve never reports convergence (the solution is not unique).
            fallback = getattr(factorization, "minimum_norm", None)
            usable = ok | (fallback.to(ok.device) & finite_step) if fallback is not None else ok
            if not tail:
                if not bool(usable[active].all()):
                    raise SingularSystemError(
                        f"the Gauss-Newton system could not be solved by the {solver.name} solver (singular, not "
                        "positive definite, or a failed iterative solve): some direction may be unconstrained (an "
                        "unfixed gauge or a variable no cost determines); fix a variable, add a prior, or use "
                        "LevenbergMarquardt"
                    )
                rank_deficient = torch.where(active, ~ok, rank_deficient)
            ok = usable
        if not bool(ok.all()):
            step = torch.where(ok.unsqueeze(-1), step, torch.zeros_like(step))  # nothing non-finite is retracted
        candidate = problem.retract(values, step)
        new_cost = problem.cost(candidate)

        with torch.no_grad():
            if lm and not tail:  # a non-finite cost at a trial point rejects the step (the damping grows)
                nonfinite = active & ok & ~torch.isfinite(new_cost)
                if bool(nonfinite.any()):
                    had_nonfinite = had_nonfinite | nonfinite
                    nonfinite_values = problem.select(nonfinite, candidate, nonfinite_values or candidate)
                nonfinite_since_accept = nonfinite_since_accept | nonfinite
            decrease = cost - new_cost
            step_norm = step.norm(dim=-1)
            if lm and not tail:
                predicted = 0.5 * ((lam.unsqueeze(-1) * d * step - g) * step).sum(-1)
                quality = decrease / predicted
                # Near the minimum the predicted decrease falls below the cost's rounding error and
                # `quality` is noise; such a step is still the model's best, so take it unless the cost
                # rose by more than rounding (otherwise LM stalls ~sqrt(eps) short of the minimum).
                rounding = 16.0 * torch.finfo(dtype).eps * cost.abs()
                noise_level = (predicted.abs() <= rounding) & (decrease >= -rounding)
                accept = active & ok & torch.isfinite(new_cost) & ((quality > cfg.min_step_quality) | noise_level)
                shrink = torch.clamp(1.0 - (2.0 * quality - 1.0) ** 3, min=cfg.min_damping_decrease)
                shrink = torch.where(noise_level, torch.ones_like(shrink), shrink)
                lam_used = lam
                lam = torch.where(accept, lam * torch.nan_to_num(shrink, nan=1.0), torch.where(active, lam * nu, lam))
                nu = torch.where(accept, torch.full_like(nu, 2.0), torch.where(active, 2.0 * nu, nu))
                nonfinite_since_accept = nonfinite_since_accept & ~accept
            else:
                accept, lam_used = active & ok, lam
        count = count + active.long()
        values = problem.select(accept, candidate, values) if not bool(accept.all()) else candidate
        if bool(accept.any()):
            previous = cost
            h, g, cost = problem.linearize(values)
            if not tail:
                with torch.no_grad():
                    x_norm = _storage_norm(values)
                    # |decrease|: an (always taken) Gauss-Newton step may also raise the cost slightly.
                    change = decrease.abs()
                    # a tolerance of 0 disables its test (an exactly unchanged cost is no reason to stop)
                    if cfg.function_tolerance > 0:
                        stop(accept & (change <= cfg.function_tolerance * previous.detach()), "function tolerance", True)
                    if cfg.absolute_tolerance > 0:
                        stop(accept & (change <= cfg.absolute_tolerance), "absolute tolerance", True)
                    if cfg.parameter_tolerance > 0:
                        stop(accept & (step_norm <= cfg.parameter_tolerance * (x_norm + cfg.parameter_tolerance)),
                             "parameter tolerance", True)
        if lm and not tail and cfg.rejected_step_tolerance and cfg.parameter_tolerance > 0:
            with torch.no_grad():  # later trials from this point are shorter still (see the config field)
                x_norm = _storage_norm(values)
                short = step_norm <= cfg.parameter_tolerance * (x_norm + cfg.parameter_tolerance)
                stop(~accept & ok & torch.isfinite(new_cost) & short, "parameter tolerance", True)
        if lm and not tail:
            exceeded = lam > cfg.max_damping
            stop(exceeded & ~ok, "the linear solver failed (not positive definite, non-finite, or an iterative "
                 "breakdown) at every damping up to the maximum", False)
            stop(exceeded, "no decrease possible (damping exceeded its maximum)", False)
        record = IterationRecord(it, cost.detach().clone(), step_norm, lam_used.clone(), accept, time.perf_counter() - start)
        history.append(record)
        _log_iteration(record, decrease, int(active.sum()), batch)
        if bar is not None:
            bar.update(1)
            bar.set_postfix(cost=f"{float(cost.detach().mean()):.4e}")
    if bar is not None:
        bar.close()
    if not tail:
        stop(active, "maximum iterations", False)
        if lm and bool(had_nonfinite.any()):
            _check_nonfinite_stops(problem, cfg, solver, values, h, g, d_max, converged, reasons, had_nonfinite,
                                   nonfinite_since_accept, nonfinite_values)
        if bool(rank_deficient.any()):
            for b in torch.nonzero(rank_deficient & converged).flatten().tolist():
                reasons[b] += (" (not converged: the last Gauss-Newton system was rank-deficient; its minimum-norm "
                               "step was taken and the solution is not unique)")
            converged = converged & ~rank_deficient
    return _State(values, cost.detach(), initial_cost, lam, count, converged, reasons, history)


_TOLERANCE_STOPS = ("function tolerance", "absolute tolerance", "parameter tolerance")


def _check_nonfinite_stops(problem: Problem, cfg: LevenbergMarquardt, solver: LinearSolver, values: Values,
                           h: Tensor, g: Tensor, d_max: Tensor | None, converged: Tensor, reasons: list[str],
                           had_nonfinite: Tensor, nonfinite_since_accept: Tensor, nonfinite_values: Values | None) -> None:
    """Raise ``NonFiniteError`` where non-finite trial costs, not a minimum, ended a problem's solve.

    Non-finite trials are rejected steps (as in Ceres), but a solve may then stall at the edge of the
    region where the cost is finite: (a) it ends without converging after such rejections (damping
    or iteration limit), or (b) it meets a step or cost tolerance there.  For (b) one more step is
    tried from the solution at the initial damping: at a minimum it is tiny and finite; at such an
    edge it leads back into the non-finite region.
    """
    structure = problem.structure
    batch = problem.batch_size
    blocked = ~converged & nonfinite_since_accept
    where, context = nonfinite_values, None
    if bool(blocked.any()):
        b = int(torch.nonzero(blocked)[0])
        context = f"Levenberg-Marquardt stopped ({reasons[b]}) after rejecting steps to points where it is not finite"
    else:
        suspect = converged & had_nonfinite & torch.tensor([r in _TOLERANCE_STOPS for r in reasons], device=converged.device)
        if not bool(suspect.any()):
            return
        with torch.no_grad():
            diagonal = structure.pattern.diagonal.to(h.device)
            if cfg.damping in ("marquardt", "marquardt-current"):
                d = h.detach()[:, diagonal].clamp(cfg.min_diagonal, cfg.max_diagonal)
                d = torch.maximum(d, d_max) if cfg.damping == "marquardt" and d_max is not None else d
            else:
                d = torch.ones_like(g)
            factorization = solver.factorize(structure, h.detach().index_add(1, diagonal, cfg.initial_damping * d))
            step = factorization.solve(-g.detach())
            usable = suspect & factorization.ok & torch.isfinite(step).all(-1)
            trial = problem.retract(values, torch.where(usable.unsqueeze(-1), step, torch.zeros_like(step)))
            bad = usable & ~torch.isfinite(problem.cost(trial))
        if not bool(bad.any()):
            return
        b, where = int(torch.nonzero(bad)[0]), trial
        context = (f"Levenberg-Marquardt met its {reasons[b]} at the edge of a region where the cost is not finite "
                   "(not at a minimum: the step from there leads to a non-finite cost)")
    mask = torch.zeros(batch, dtype=torch.bool, device=converged.device)
    mask[b] = True
    error = problem.nonfinite_error(where, jacobians=False, problems=mask)
    raise NonFiniteError(f"{error}; {context}", cost=error.cost, instance=error.instance, problem=error.problem,
                         variables=error.variables, quantity=error.quantity)


def _with_fixed_inputs(problem: Problem, solution: Values, inputs: Values) -> Values:
    """``solution`` with its fixed elements taken from ``inputs`` (equal values, inputs' graph)."""
    out = []
    for variable, value, original in zip(problem.variables, solution, inputs):
        if bool(variable.fixed.any()):
            mask = variable.fixed.to(value.device).view(1, -1, 1)
            value = value._new(torch.where(mask, original.data, value.data))
        out.append(value)
    return out


def _gradient_cosine(h: Tensor, g: Tensor, cost: Tensor, diagonal: Tensor) -> Tensor:
    """``max_j |gⱼ| / (‖Jⱼ‖ ‖r‖)`` per problem, with ``‖Jⱼ‖² = Hⱼⱼ`` and ``‖r‖² = 2 cost`` (columns with
    ``Hⱼⱼ = 0`` skipped; 0 where the cost is 0)."""
    with torch.no_grad():
        residual_norm = torch.sqrt(2.0 * cost.detach().clamp_min(0.0)).unsqueeze(-1)
        scale = h.detach()[:, diagonal].clamp_min(0.0).sqrt() * residual_norm
        positive = scale > 0
        cosine = g.detach().abs() / torch.where(positive, scale, torch.ones_like(scale))
        return torch.where(positive, cosine, torch.zeros_like(cosine)).amax(-1)


def _storage_norm(values: Values) -> Tensor:
    return torch.sqrt(sum(v.data.detach().square().flatten(1).sum(-1) for v in values))


def _log_iteration(record: IterationRecord, decrease: Tensor, active: int, batch: int) -> None:
    if not log.isEnabledFor(logging.INFO):
        return
    if batch == 1:
        before = float(record.cost[0] + decrease[0]) if bool(record.accepted[0]) else float(record.cost[0])
        relative = float(decrease[0]) / before if before else 0.0
        log.info("iter %3d  cost %.6e  rel. decrease %+.2e  damping %.1e  step %.2e  %s  %.3f s",
                 record.iteration, float(record.cost[0]), relative, float(record.damping[0]),
                 float(record.step_norm[0]), "accepted" if bool(record.accepted[0]) else "rejected", record.seconds)
    else:
        log.info("iter %3d  mean cost %.6e  accepted %d/%d  active %d/%d  %.3f s", record.iteration,
                 float(record.cost.mean()), int(record.accepted.sum()), batch, active, batch, record.seconds)


def _progress(cfg: _Common, total: int) -> Any:
    if not cfg.progress:
        return None
    try:
        from tqdm.auto import tqdm
    except ImportError:
        log.warning("progress=True needs tqdm (pip install tqdm); continuing without a bar")
        return None
    return tqdm(total=total, desc="solve", unit="it")


def _problem_tensors(problem: Problem) -> Iterator[Tensor]:
    """Every tensor the solution may depend on: values, data, weights, robust scales."""
    for variable in problem.variables:
        yield variable.value.data
    for cost in problem.costs:
        for item in (*cost.data.values(), cost.weight, cost.loss):
            yield from _tensors_in(item)


def _tensors_in(item: Any) -> Iterator[Tensor]:
    if isinstance(item, Tensor):
        yield item
    elif isinstance(item, LieGroup):
        yield item.data
    elif dataclasses.is_dataclass(item) and not isinstance(item, type):
        for field in dataclasses.fields(item):
            yield from _tensors_in(getattr(item, field.name))
    elif isinstance(item, (list, tuple)):
        for x in item:
            yield from _tensors_in(x)
    elif isinstance(item, dict):
        for x in item.values():
            yield from _tensors_in(x)
