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
from typing import Any

import torch
from torch import Tensor

from ..linear.base import Factorization, LinearSolver
from ..linear.cg import preconditioned_cg
from ..problem import Problem, Values
from .config import Implicit
from .gauss_newton import SingularSystemError

log = logging.getLogger("slam")


def implicit_solution(problem: Problem, solution: Values, solver: LinearSolver, mode: Implicit) -> Values:
    """``solution`` (detached, a minimizer) as a differentiable function of the problem's inputs."""
    structure = problem.structure
    with torch.no_grad():
        h, _, _ = problem.linearize(solution)
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
    delta = torch.zeros(problem.batch_size, structure.n, dtype=problem.dtype, device=problem.device, requires_grad=True)
    with torch.enable_grad():
        cost = problem.cost(problem.retract(solution, delta)).sum()
        (gradient,) = torch.autograd.grad(cost, delta, create_graph=True)
    step = _ImplicitStep.apply(gradient, delta, factorization, mode)
    return problem.retract(solution, step)


class _ImplicitStep(torch.autograd.Function):
    """Zero in the forward pass; ``-H⁻¹ v`` sent back into ``g``'s graph in the backward pass."""

    @staticmethod
    def forward(ctx: Any, gradient: Tensor, delta: Tensor, factorization: Factorization, mode: Implicit) -> Tensor:
        ctx.factorization, ctx.mode = factorization, mode
        ctx.gradient, ctx.delta = gradient, delta  # kept with their graphs for Hessian-vector products
        return torch.zeros_like(gradient)

    @staticmethod
    def backward(ctx: Any, v: Tensor) -> tuple[Tensor | None, None, None, None]:
        factorization, mode = ctx.factorization, ctx.mode
        if mode.hessian == "gauss_newton":
            w = _checked_solve(factorization, v)
        else:
            w = _exact_solve(ctx.gradient, ctx.delta, factorization, v, mode)
        del ctx.gradient, ctx.delta
        return -w, None, None, None


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
