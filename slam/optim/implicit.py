"""Implicit differentiation of a solution: the implicit function theorem at the minimizer.

At a minimizer x* of F(x; θ), the gradient ``g(δ; θ) = ∂F(x* ⊕ δ; θ)/∂δ`` vanishes at
``δ = 0``, so ``dδ*/dθ = -H⁻¹ ∂g/∂θ`` with ``H = ∂g/∂δ``, the Hessian of F in the tangent
chart at x*.  The solution is returned as ``x* ⊕ s`` where the step ``s`` is exactly 0 in
the forward pass and carries that derivative in the backward pass: given the incoming
gradient ``v``, solve ``H w = v`` and send ``-w`` back into the graph of ``g``, which
autograd turns into ``-wᵀ ∂g/∂θ`` for every input θ.

The graph is one evaluation of the cost at x* (plus its first derivative), whatever the
number of iterations that found x*.  With ``hessian="exact"``, ``H w = v`` is solved either directly
(``Implicit.exact_solve``): ``H`` assembled from every cost's exact blocks (``Problem.exact_hessian``:
Gauss-Newton blocks, second-order residual terms, robust ``ρ''`` terms; the fused SE(3) kernel
computes them in one pass per edge) and factorized once by the problem's linear solver; or by
conjugate gradients on Hessian-vector products, preconditioned with the factorized Gauss-Newton
matrix ``JᵀJ``, which usually converges in a few iterations because the second-order residual terms
are small.  CG also takes over where the assembled ``H`` is not positive definite.  ``"gauss_newton"``
uses ``JᵀJ`` alone.

The Hessian-vector products (``Implicit.products``) come either from double backward through
``g``'s torch graph, or from central differences of the gradient along the retraction, which each
cost computes in its fastest path (a fused kernel where it has one): the gradient at ``x* ⊕ tp`` is
``(I + ½ t ad(p))ᵀ ∇F(tp)`` to first order (``Problem.tangent_bracket``), so
``H p = [g(x* ⊕ tp) - g(x* ⊕ -tp)] / 2t - ½ ad(p)ᵀ g(x*) + O(t²)``.  Each such product is within
~1e-9 of the exact one relative to its norm, but CG amplifies that error in the Hessian's weak
directions (5e-5 relative in parking-garage's gradients), so double backward stays the default.
``wᵀ ∂g/∂θ`` is always one exact double backward, of ``Problem.directional_gradient``: each cost's
smallest graph of ``wᵀ g`` (a between cost's: its residual on ``D = X_i⁻¹ X_j``'s storage, moved along
``D Exp(w_j - Ad(D⁻¹) w_i)``, without the retractions and the between), the same function of θ.  (Differences of ``∂F/∂θ`` along ``w`` were measured too: the rounding of
``x* ⊕ tw``, ~eps times the translations, leaves ~1e-5 relative error in the gradients of edges
where ``w`` is small, so they are not used.)
"""

from __future__ import annotations

import functools
import logging
from typing import Any, Callable, Iterable

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


_DIFFERENCE_STEP = 2e-6
"""The largest tangent coordinate of ``±tp`` in the central differences: balances their O(t²)
truncation against the rounding of ``x ⊕ tp`` (~eps times the translations, over t).  Relative error
of the products against double backward at steps 1e-4 / 1e-5 / 1e-6: 2.0e-10 / 2.7e-10 / 2.8e-9 at the
solution of parking-garage, 5.5e-10 / 6.5e-11 / 7.6e-10 on a synthetic SE(3) graph away from its
optimum, and 1.3e-5 / 1.3e-7 / 1.2e-9 with a Cauchy loss deep in its tails (where truncation
dominates); ``tests/test_slam_gradients.py`` checks it."""


def implicit_solution(problem: Problem, solution: Values, solver: LinearSolver, mode: Implicit, *,
                      h: Tensor | None = None, g: Tensor | None = None, lazy: bool = False) -> Values:
    """``solution`` (detached, a minimizer) as a differentiable function of the problem's inputs.

    ``h``, ``g``: the normal-equation values and the gradient at ``solution`` when the caller has them
    (the solve's last linearization).  ``lazy``: every input is a tensor the problem holds
    (``problem_tensors``); the graph of the gradient is then built in the backward pass, only if one
    runs, and the forward pass costs one factorization (none where the exact Hessian is solved
    directly: ``Implicit.exact_solve``).  Otherwise (a residual closing over tensors the problem cannot
    see) it is built now.
    """
    structure = problem.structure
    direct = _direct_solver(problem, solution, solver) if _uses_direct(problem, mode) else None
    if h is None:
        with torch.no_grad():
            h, _, _ = problem.linearize(solution)
    # The direct solve needs the Gauss-Newton factorization only where it falls back to CG: then, in the
    # backward pass; otherwise the forward pass costs this one factorization.
    factorization = (_LazyFactorization(solver, structure, h.detach()) if direct is not None
                     else _gauss_newton_factorization(solver, structure, h.detach()))
    hessian_times = None
    if mode.hessian == "exact" and direct is None and _checked_products(problem, mode) == "differences":
        if g is None:
            with torch.no_grad():
                g, _ = problem.gradient(solution)
        hessian_times = functools.partial(_difference_hvp, problem, solution, g.detach())
    if lazy:
        step = _LazyImplicitStep.apply(problem, solution, factorization, mode, hessian_times, direct,
                                       *_implicit_inputs(problem, solution))
        return problem.retract(solution, step)
    with torch.enable_grad():
        gradient, delta = problem.gradient_graph(solution)
    step = _ImplicitStep.apply(gradient, delta, factorization, mode, hessian_times, direct)
    return problem.retract(solution, step)


def _gauss_newton_factorization(solver: LinearSolver, structure: Any, h: Tensor) -> Factorization:
    """``JᵀJ`` at the solution factorized; where it is singular, regularized slightly, unless the solver
    answers by the minimum-norm solution (dense), whose pseudo-inverse gradient needs no regularization
    (warned in backward).  Failures that only a solve reveals (an iterative solver) are checked in the
    backward pass."""
    with torch.no_grad():
        factorization = solver.factorize(structure, h)
        fallback = getattr(factorization, "minimum_norm", None)
        answered = factorization.ok | fallback if fallback is not None else factorization.ok
        if not bool(answered.all()):
            diagonal = structure.pattern.diagonal.to(h.device)
            scale = 1e-9 * h[:, diagonal].abs().amax(-1, keepdim=True).clamp_min(1e-30)
            factorization = solver.factorize(structure, h.index_add(1, diagonal, scale.expand(-1, structure.n)))
    return factorization


class _LazyFactorization:
    """``_gauss_newton_factorization`` made on first use (its ``ok``, ``solve``, ...)."""

    def __init__(self, solver: LinearSolver, structure: Any, h: Tensor):
        self._arguments: tuple | None = (solver, structure, h)
        self._factorization: Factorization | None = None

    def __getattr__(self, name: str) -> Any:
        if name.startswith("_"):
            raise AttributeError(name)
        if self._factorization is None:
            self._factorization = _gauss_newton_factorization(*self._arguments)
            self._arguments = None
        return getattr(self._factorization, name)


def _unique(tensors: Iterable[Tensor]) -> list[Tensor]:
    seen: set[int] = set()
    return [t for t in tensors if not (id(t) in seen or seen.add(id(t)))]


class _ImplicitStep(torch.autograd.Function):
    """Zero in the forward pass; ``-H⁻¹ v`` sent back into ``g``'s graph in the backward pass."""

    @staticmethod
    def forward(ctx: Any, gradient: Tensor, delta: Tensor, factorization: Factorization, mode: Implicit,
                hessian_times: Callable[[Tensor], Tensor] | None, direct: DirectSolve | None) -> Tensor:
        ctx.factorization, ctx.mode, ctx.hessian_times, ctx.direct = factorization, mode, hessian_times, direct
        ctx.gradient, ctx.delta = gradient, delta  # kept with their graphs for Hessian-vector products
        return torch.zeros_like(gradient)

    @staticmethod
    def backward(ctx: Any, v: Tensor) -> tuple[Tensor | None, None, None, None, None, None]:
        w = _solve_implicit(ctx.hessian_times or _autograd_hvp(ctx.gradient, ctx.delta), ctx.factorization, v, ctx.mode,
                            ctx.direct)
        del ctx.gradient, ctx.delta, ctx.hessian_times, ctx.direct
        return -w, None, None, None, None, None


class _LazyImplicitStep(torch.autograd.Function):
    """Zero in the forward pass; in the backward pass, builds ``g(δ; θ)`` at the solution, solves
    ``H w = v`` and returns ``-wᵀ ∂g/∂θ`` for every input θ (given to ``apply``, so that the gradients
    go wherever autograd sends them, ``.backward()`` or ``torch.autograd.grad`` alike)."""

    @staticmethod
    def forward(ctx: Any, problem: Problem, solution: Values, factorization: Factorization, mode: Implicit,
                hessian_times: Callable[[Tensor], Tensor] | None, direct: DirectSolve | None, *inputs: Tensor) -> Tensor:
        ctx.problem, ctx.solution, ctx.factorization, ctx.mode = problem, solution, factorization, mode
        ctx.hessian_times, ctx.direct = hessian_times, direct
        return torch.zeros(problem.batch_size, problem.structure.n, dtype=problem.dtype, device=problem.device)

    @staticmethod
    @once_differentiable
    def backward(ctx: Any, v: Tensor) -> tuple[Tensor | None, ...]:
        problem, solution = ctx.problem, ctx.solution
        with torch.enable_grad():
            # The graph of g for Hessian-vector products only where CG runs (not the direct solve).
            w = _solve_implicit(ctx.hessian_times or _lazy_autograd_hvp(problem, solution), ctx.factorization, v,
                                ctx.mode, ctx.direct)
            targets = _implicit_inputs(problem, solution)
            # -wᵀ ∂g/∂θ through each cost's smallest graph of wᵀ g (Problem.directional_gradient).  A scalar
            # output, not grad_outputs=: torch 2.13 checks grad_outputs' shapes with
            # torch.fx.experimental.symbolic_shapes, whose import (sympy) takes ~1.2 s on a process's first call.
            grads = torch.autograd.grad(problem.directional_gradient(solution, -w.detach()), targets, allow_unused=True)
        return (None, None, None, None, None, None, *grads)


DirectSolve = Callable[[Tensor], tuple[Tensor, Tensor]]
"""``v -> (H⁻¹ v, ok (B,))`` with the assembled exact Hessian (``_direct_solver``)."""


def _uses_direct(problem: Problem, mode: Implicit) -> bool:
    """Whether ``mode`` solves the exact system directly for ``problem`` (``Implicit.exact_solve``)."""
    if mode.hessian != "exact" or mode.exact_solve == "cg":
        return False
    if mode.exact_solve == "direct":
        return True
    if mode.products != "autograd":  # products are CG's: asking for other ones asks for CG
        return False
    return all(plan.exact_hessian != "autodiff" for plan in problem.analyze().costs)


def _direct_solver(problem: Problem, solution: Values, solver: LinearSolver) -> DirectSolve:
    """``H⁻¹ v`` with the exact Hessian at ``solution``, assembled and factorized on the first call (in the
    backward pass, so a forward pass that no backward follows pays nothing)."""
    values = [value.detach() for value in solution]
    factorization: list[Factorization] = []

    def solve(v: Tensor) -> tuple[Tensor, Tensor]:
        with torch.no_grad():
            if not factorization:
                h = problem.exact_hessian(values)
                factorization.append(solver.factorize(problem.structure, h))
            w = factorization[0].solve(v.detach())
            return w, factorization[0].ok & torch.isfinite(w).all(-1)

    return solve


def _checked_products(problem: Problem, mode: Implicit) -> str:
    """``mode.products``, where ``problem`` allows it (``Implicit.products``)."""
    usable = problem.dtype == torch.float64 and all(type(v.value).has_ad() for v in problem.variables)
    if mode.products == "differences" and not usable:
        raise ValueError("Implicit(products='differences') needs float64 and a group with ad (LieGroup.ad) for every "
                         "variable; use products='autograd'")
    return mode.products


def _difference_scale(p: Tensor) -> Tensor:
    """``t (B, 1)`` for central differences along ``p (B, n)``: ``|t p|`` at most ``_DIFFERENCE_STEP``."""
    return _DIFFERENCE_STEP / p.abs().amax(-1, keepdim=True).clamp_min(torch.finfo(p.dtype).tiny)


def _difference_hvp(problem: Problem, solution: Values, g: Tensor, p: Tensor) -> Tensor:
    """``H p`` by central differences of the gradient along the retraction (module docstring)."""
    t = _difference_scale(p)
    with torch.no_grad():
        plus, _ = problem.gradient(problem.retract(solution, t * p))
        minus, _ = problem.gradient(problem.retract(solution, -t * p))
        return (plus - minus) / (2.0 * t) - 0.5 * problem.tangent_bracket(p, g)


def _lazy_autograd_hvp(problem: Problem, solution: Values) -> Callable[[Tensor], Tensor]:
    """``_autograd_hvp`` at ``solution``, its graph of ``g`` built on the first product."""
    built: list[Callable[[Tensor], Tensor]] = []

    def hessian_times(p: Tensor) -> Tensor:
        if not built:
            with torch.enable_grad():
                built.append(_autograd_hvp(*problem.gradient_graph(solution)))
        return built[0](p)

    return hessian_times


def _autograd_hvp(gradient: Tensor, delta: Tensor) -> Callable[[Tensor], Tensor]:
    """``p -> H p`` by double backward through ``gradient = ∂F(x ⊕ δ)/∂δ`` at ``delta``."""

    def hessian_times(p: Tensor) -> Tensor:
        with torch.enable_grad():
            (hp,) = torch.autograd.grad((gradient * p).sum(), delta, retain_graph=True)  # (no grad_outputs: above)
        return hp.detach()

    return hessian_times


def _implicit_inputs(problem: Problem, solution: Values) -> list[Tensor]:
    """What ``g(δ; θ)`` at ``solution`` depends on and autograd must see, in a fixed order: the costs'
    tensors that require grad (data, weights, robust scales) and the solution's tables that carry a
    graph (fixed elements are their inputs; ``slam.solve``).  Not the variables' initial values
    themselves: ``g`` sees them only through those tables."""
    inputs = _unique(t for t in cost_tensors(problem) if t.requires_grad)
    return inputs + [value.data for value in solution if value.data.requires_grad]


def _solve_implicit(hessian_times: Callable[[Tensor], Tensor], factorization: Factorization, v: Tensor,
                    mode: Implicit, direct: DirectSolve | None = None) -> Tensor:
    """``w = H⁻¹ v`` with ``mode``'s Hessian (exact, or Gauss-Newton's factorization alone)."""
    if mode.hessian == "gauss_newton":
        return _checked_solve(factorization, v)
    if direct is not None:
        w, ok = direct(v)
        if bool(ok.all()):
            return w
        log.info("implicit backward: the exact Hessian is not positive definite at the solution of %d problem(s); "
                 "solving there by conjugate gradients", int((~ok).sum()))
        return torch.where(ok.unsqueeze(-1), w, _exact_solve(hessian_times, factorization, v, mode))
    return _exact_solve(hessian_times, factorization, v, mode)


def _exact_solve(hessian_times: Callable[[Tensor], Tensor], factorization: Factorization, v: Tensor,
                 mode: Implicit) -> Tensor:
    """Solve ``H w = v`` with the true Hessian ``H = ∂g/∂δ``, by CG preconditioned with ``JᵀJ``."""
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
