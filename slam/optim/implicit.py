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

log = logging.getLogger("slam")


def implicit_solution(problem: Problem, solution: Values, solver: LinearSolver, mode: Implicit) -> Values:
    """``solution`` (detached, a minimizer) as a differentiable function of the problem's inputs."""
    structure = problem.structure
    with torch.no_grad():
        h, _, _ = problem.linearize(solution)
        factorization = solver.factorize(structure, h)
        if not bool(factorization.ok.all()):  # a singular JᵀJ at x*: regularize the preconditioner only
            scale = 1e-9 * h[:, structure.pattern.diagonal.to(h.device)].abs().amax(-1, keepdim=True).clamp_min(1e-30)
            factorization = solver.factorize(structure, h.index_add(1, structure.pattern.diagonal.to(h.device),
                                                                     scale.expand(-1, structure.n)))
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
            w = factorization.solve(v)
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

    w, failed = preconditioned_cg(hessian_times, factorization.solve, v, mode.tolerance, mode.max_iterations)
    if bool(failed.any()):
        log.warning("implicit backward: the Hessian is not positive definite at the solution of %d problem(s) "
                    "(not a strict minimum); using the Gauss-Newton approximation there", int(failed.sum()))
        w = torch.where(failed.unsqueeze(-1), factorization.solve(v), w)
    return w
