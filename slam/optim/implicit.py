"""Implicit differentiation of a solution: the implicit function theorem at the minimizer.

At a minimizer x* of F(x; θ), the gradient ``g(δ; θ) = ∂F(x* ⊕ δ; θ)/∂δ`` vanishes at
``δ = 0``, so ``dδ*/dθ = -H⁻¹ ∂g/∂θ`` with ``H = ∂g/∂δ``, the Hessian of F in the tangent
chart at x*.  The solution is returned as ``x* ⊕ s`` where the step ``s`` is exactly 0 in
the forward pass and carries that derivative in the backward pass: given the incoming
gradient ``v``, solve ``H w = v`` and send ``-w`` back into the graph of ``g``, which
autograd turns into ``-wᵀ ∂g/∂θ`` for every input θ.

The graph is one evaluation of the cost at x* (plus its first derivative), whatever the
number of iterations that found x*.  With ``hessian="exact"``, ``H w = v`` is solved by
conjugate gradients on Hessian-vector products (double backward through ``g``),
preconditioned with the factorized Gauss-Newton matrix ``JᵀJ``, which usually converges in
a few iterations because the second-order residual terms are small; ``"gauss_newton"``
uses ``JᵀJ`` alone.
"""

from __future__ import annotations

import logging
from typing import Any, Iterable

import torch
from torch import Tensor
from torch.autograd.function import once_differentiable

from ..linear.base import Factorization, LinearSolver
from ..linear.cg import preconditioned_cg
from ..problem import Problem, Values
from .config import Implicit
from .gauss_newton import SingularSystemError
from .inputs import cost_tensors

log = logging.getLogger("slam")


def implicit_solution(problem: Problem, solution: Values, solver: LinearSolver, mode: Implicit, *,
                      h: Tensor | None = None, lazy: bool = False) -> Values:
    """``solution`` (detached, a minimizer) as a differentiable function of the problem's inputs.

    ``h``: the normal-equation values at ``solution`` when the caller has them (the solve's last
    linearization).  ``lazy``: every input is a tensor the problem holds (``problem_tensors``); the
    graph of the gradient is then built in the backward pass, only if one runs, and the forward pass
    costs one factorization.  Otherwise (a residual closing over tensors the problem cannot see) it
    is built now.
    """
    structure = problem.structure
    with torch.no_grad():
        if h is None:
            h, _, _ = problem.linearize(solution)
        h = h.detach()
        factorization = solver.factorize(structure, h)
        # A singular JᵀJ at x*: regularize slightly, unless the solver answers by the minimum-norm
        # solution (dense), whose pseudo-inverse gradient needs no regularization (warned in backward).
        fallback = getattr(factorization, "minimum_norm", None)
        answered = factorization.ok | fallback if fallback is not None else factorization.ok
        if not bool(answered.all()):
            scale = 1e-9 * h[:, structure.pattern.diagonal.to(h.device)].abs().amax(-1, keepdim=True).clamp_min(1e-30)
            factorization = solver.factorize(structure, h.index_add(1, structure.pattern.diagonal.to(h.device),
                                                                     scale.expand(-1, structure.n)))
        # Failures that only a solve reveals (an iterative solver) are checked in the backward pass.
    if lazy:
        step = _LazyImplicitStep.apply(problem, solution, factorization, mode, *_implicit_inputs(problem, solution))
        return problem.retract(solution, step)
    delta = torch.zeros(problem.batch_size, structure.n, dtype=problem.dtype, device=problem.device, requires_grad=True)
    with torch.enable_grad():
        cost = problem.cost(problem.retract(solution, delta)).sum()
        (gradient,) = torch.autograd.grad(cost, delta, create_graph=True)
    step = _ImplicitStep.apply(gradient, delta, factorization, mode)
    return problem.retract(solution, step)


def _unique(tensors: Iterable[Tensor]) -> list[Tensor]:
    seen: set[int] = set()
    return [t for t in tensors if not (id(t) in seen or seen.add(id(t)))]


class _ImplicitStep(torch.autograd.Function):
    """Zero in the forward pass; ``-H⁻¹ v`` sent back into ``g``'s graph in the backward pass."""

    @staticmethod
    def forward(ctx: Any, gradient: Tensor, delta: Tensor, factorization: Factorization, mode: Implicit) -> Tensor:
        ctx.factorization, ctx.mode = factorization, mode
        ctx.gradient, ctx.delta = gradient, delta  # kept with their graphs for Hessian-vector products
        return torch.zeros_like(gradient)

    @staticmethod
    def backward(ctx: Any, v: Tensor) -> tuple[Tensor | None, None, None, None]:
        w = _solve_implicit(ctx.gradient, ctx.delta, ctx.factorization, v, ctx.mode)
        del ctx.gradient, ctx.delta
        return -w, None, None, None


class _LazyImplicitStep(torch.autograd.Function):
    """Zero in the forward pass; in the backward pass, builds ``g(δ; θ)`` at the solution, solves
    ``H w = v`` and returns ``-wᵀ ∂g/∂θ`` for every input θ (given to ``apply``, so that the gradients
    go wherever autograd sends them, ``.backward()`` or ``torch.autograd.grad`` alike)."""

    @staticmethod
    def forward(ctx: Any, problem: Problem, solution: Values, factorization: Factorization, mode: Implicit,
                *inputs: Tensor) -> Tensor:
        ctx.problem, ctx.solution, ctx.factorization, ctx.mode = problem, solution, factorization, mode
        return torch.zeros(problem.batch_size, problem.structure.n, dtype=problem.dtype, device=problem.device)

    @staticmethod
    @once_differentiable
    def backward(ctx: Any, v: Tensor) -> tuple[Tensor | None, ...]:
        problem = ctx.problem
        with torch.enable_grad():
            delta = torch.zeros_like(v, requires_grad=True)
            cost = problem.cost(problem.retract(ctx.solution, delta)).sum()
            (gradient,) = torch.autograd.grad(cost, delta, create_graph=True)
            w = _solve_implicit(gradient, delta, ctx.factorization, v, ctx.mode)
            targets = _implicit_inputs(problem, ctx.solution)
            grads = torch.autograd.grad(gradient, targets, grad_outputs=-w, allow_unused=True)
        return (None, None, None, None, *grads)


def _implicit_inputs(problem: Problem, solution: Values) -> list[Tensor]:
    """What ``g(δ; θ)`` at ``solution`` depends on and autograd must see, in a fixed order: the costs'
    tensors that require grad (data, weights, robust scales) and the solution's tables that carry a
    graph (fixed elements are their inputs; ``slam.solve``).  Not the variables' initial values
    themselves: ``g`` sees them only through those tables."""
    inputs = _unique(t for t in cost_tensors(problem) if t.requires_grad)
    return inputs + [value.data for value in solution if value.data.requires_grad]


def _solve_implicit(gradient: Tensor, delta: Tensor, factorization: Factorization, v: Tensor, mode: Implicit) -> Tensor:
    """``w = H⁻¹ v`` with ``mode``'s Hessian (exact, or Gauss-Newton's factorization alone)."""
    if mode.hessian == "gauss_newton":
        return _checked_solve(factorization, v)
    return _exact_solve(gradient, delta, factorization, v, mode)


def _exact_solve(gradient: Tensor, delta: Tensor, factorization: Factorization, v: Tensor, mode: Implicit) -> Tensor:
    """Solve ``H w = v`` with the true Hessian ``H = ∂g/∂δ``, by CG preconditioned with ``JᵀJ``."""

    def hessian_times(p: Tensor) -> Tensor:
        with torch.enable_grad():
            (hp,) = torch.autograd.grad(gradient, delta, grad_outputs=p, retain_graph=True)
        return hp.detach()

    w, breakdown, converged = preconditioned_cg(hessian_times, factorization.solve, v, mode.tolerance,
                                                mode.max_iterations)
    if bool(breakdown.any()):
        log.warning("implicit backward: the Hessian is not positive definite at the solution of %d problem(s) "
                    "(not a strict minimum); using the Gauss-Newton approximation there", int(breakdown.sum()))
        w = torch.where(breakdown.unsqueeze(-1), _checked_solve(factorization, v), w)
    elif not bool(converged.all()):
        log.warning("implicit backward: conjugate gradients on the exact Hessian did not reach the tolerance %.1e in "
                    "%d iterations for %d problem(s); their gradients are approximate", mode.tolerance,
                    mode.max_iterations, int((~converged).sum()))
    return w


def _checked_solve(factorization: Factorization, v: Tensor) -> Tensor:
    """``H⁻¹ v`` by the factorization; warns where the answer is approximate, raises where it is unusable.

    Approximate: a dense minimum-norm solution of a singular ``H`` (the pseudo-inverse gradient, the
    usual choice when the solution is not unique) or an iterative solve that stopped short of its
    tolerance.  Unusable: anything else the factorization reports as failed (it returns zeros or a
    broken-down iterate there), raised as ``SingularSystemError``.
    """
    w = factorization.solve(v)
    ok = factorization.ok
    if bool(ok.all()):
        return w
    minimum_norm, inexact = getattr(factorization, "minimum_norm", None), getattr(factorization, "inexact", None)
    failed = int((~ok).sum())
    finite = torch.isfinite(w).all(-1)
    if minimum_norm is not None and bool((ok | (minimum_norm & finite)).all()):
        log.warning("implicit backward: H is singular at the solution of %d problem(s) (not a strict minimum, e.g. an "
                    "unfixed gauge); using its pseudo-inverse (the minimum-norm gradient)", failed)
        return w
    if inexact is not None and bool((ok | (inexact & finite)).all()):
        log.warning("implicit backward: the iterative linear solve did not reach its tolerance for %d problem(s); "
                    "their gradients are approximate", failed)
        return w
    problems = torch.nonzero(~ok).flatten().tolist()
    raise SingularSystemError(
        f"implicit backward: H w = v could not be solved at the solution of problem(s) {problems[:10]} (H is not "
        "positive definite there, or the solver broke down: not a strict minimum, e.g. an unfixed gauge); fix a "
        "variable or add a prior, or use Unroll()"
    )
