"""``slam.least_squares``: a scipy-like entry point for a plain vector of parameters.

    result = slam.least_squares(fun, x0, method="lm")

``fun`` maps a 1-D float64 tensor of n parameters to a 1-D tensor of m residuals;
the Jacobian comes from autograd (forward mode when n < m, reverse otherwise)
unless ``jac`` gives it as an ``(m, n)`` tensor.  ``result.cost`` is ``½ Σ r²``,
as scipy reports it.  The solve is the same engine as ``slam.solve`` (one
Euclidean variable, one residual instance, the dense solver), so it is
differentiable in whatever ``fun`` closes over.
"""

from __future__ import annotations

import dataclasses
from typing import Callable, Literal

import torch
from torch import Tensor

from liegeo import Euclidean

from .costs.base import Cost, autodiff_jacobians
from .optim.config import BackwardMode, Dogleg, GaussNewton, LevenbergMarquardt
from .optim.result import IterationRecord
from .optim.solve import solve
from .problem import Problem
from .variables import Variable


@dataclasses.dataclass(frozen=True)
class LeastSquaresResult:
    x: Tensor
    """The solution ``(n,)``."""
    cost: float
    """``½ Σ r(x)²``."""
    fun: Tensor
    """The residuals at ``x``, ``(m,)``."""
    iterations: int
    converged: bool
    termination: str
    history: list[IterationRecord]


class _VectorCost(Cost):
    """``fun(scale * z) / unit``, the variable holding z (see ``least_squares``: the dimensionless problem)."""

    def __init__(self, ref, fun, jac, scale, unit):  # type: ignore[no-untyped-def]
        super().__init__(ref, name=getattr(fun, "__name__", "fun"))
        self.fun, self.jac, self.scale, self.unit = fun, jac, scale, unit

    def residual(self, z: Euclidean) -> Tensor:  # z: (1, 1, n)
        return (self.fun(self.scale * z.data.reshape(-1)) / self.unit).reshape(1, 1, -1)

    def residual_and_jacobians(self, z: Euclidean) -> tuple[Tensor, list[Tensor]]:
        if self.jac is None:
            return autodiff_jacobians(self.residual, (z,), {})
        x = self.scale * z.data.reshape(-1)
        jacobian = torch.as_tensor(self.jac(x)) * (self.scale / self.unit)  # (d fun / dx) diag(scale) / unit
        return self.residual(z), [jacobian.reshape(1, 1, -1, x.shape[0])]


def least_squares(
    fun: Callable[[Tensor], Tensor],
    x0: Tensor | list[float] | tuple[float, ...],
    *,
    method: Literal["lm", "gn", "dogleg"] = "lm",
    jac: Callable[[Tensor], Tensor] | None = None,
    max_iterations: int = 1000,
    ftol: float = 0.0,
    xtol: float = 1e-8,
    gtol: float = 1e-8,
    x_scale: Literal["start"] | float | Tensor = "start",
    backward: BackwardMode | None = None,
    **options: object,
) -> LeastSquaresResult:
    """Minimize ``½ Σ fun(x)²`` from ``x0`` by Levenberg-Marquardt (``"lm"``), Gauss-Newton (``"gn"``) or
    Powell's dogleg (``"dogleg"``, its trust region a ball in z from radius 1: every parameter may
    change by its own magnitude at first).

    The solve runs on the dimensionless problem: parameters ``z = x / x_scale`` (the default
    ``x_scale="start"`` is the start's magnitudes ``|x0|``, 1 where ``x0`` is 0; a positive float or
    ``(n,)`` tensor gives it) and residuals in units of ``‖fun(x0)‖``.  In z, LM damps as Levenberg,
    ``(JᵀJ + λI) δ = -g`` from ``λ = 1e-3``: an isotropic trust region on the *relative* change of
    each parameter (scipy's ``x_scale``, MINPACK's ``diag``), and every tolerance and damping bound
    is free of the units of x and of the residuals.

    Stopping, all converged (a tolerance of 0 disables its test):

    * ``xtol``: the parameters have settled: a step changes z by at most ``xtol · (‖z‖ + xtol)``
      (``parameter_tolerance``); for LM a rejected step counts too, since every later trial from
      that point is shorter still (``rejected_step_tolerance``, MINPACK's ``xtol``).
    * ``gtol``: the largest cosine between the residual vector and a column of the Jacobian is at most
      this (``gradient_cosine_tolerance``, MINPACK's and scipy's ``gtol``); the optimizer's absolute
      ``gradient_tolerance`` is 0 (an exactly zero gradient).
    * ``ftol``: a step lowered the cost by at most this fraction (``function_tolerance``); off by
      default, because a small decrease does not mean the parameters have settled (below).
    * ``‖r‖ <= eps ‖fun(x0)‖`` (``cost_tolerance``): a residual that is zero in working precision,
      the stop of a zero-residual fit converging linearly to x = 0 (Powell's singular function).

    Why, measured on the NIST StRD suite (27 problems x 2 starts; ``tests/test_nist_strd.py``,
    ``benchmarks/nist_strd.py``; the earlier defaults reached LRE >= 4 from 46 of the 54 starts, 49
    with 1,000 iterations; these reach 53, all but MGH17's Start 1, whose reason is in the test):

    * ENSO stopped with 3 correct digits in b8 when a step lowered the cost by less than 1e-8 of it:
      a cost ε above the minimum leaves a parameter off by ~``sqrt(ε (m - n))`` standard errors, and
      b8's standard error is 2.4 times b8.  The parameter and cosine tests wait for x itself.
    * The absolute gradient test (1e-8) stopped the small-residual Lanczos and Roszman1 fits with
      4-5 digits: its scale is the residuals' units.  The cosine test has none.
    * Marquardt's ``D = diag(JᵀJ)`` lets a parameter whose Jacobian column is small take a huge
      relative step: from BoxBOD's Start 1 b2 goes from 1 to ~90, where ``exp(-b2 x)`` vanishes and F
      stays on the plateau Σ(y - ȳ)²; MINPACK's guard, the running maximum of D, remembers the
      start's curvature instead: from MGH10's Start 1 (b1 -> 1e-47 along the curved valley) it
      took 6,186 iterations.  Levenberg damping in z takes ~220 there, 20 on BoxBOD.
    * ``max_iterations`` 1000 leaves room for those valleys (MGH10 ~220, Bennett5 ~300).

    Other keyword options go to the optimizer's config and override these choices (e.g.
    ``damping="marquardt"``, ``initial_damping=1e-4``, ``gradient_tolerance=1e-10`` or
    ``linear_solver="cg"``; default ``"dense"``).  ``result.history`` records the dimensionless
    solve (steps in z, costs in units of ``½‖fun(x0)‖²``); ``result.cost`` is in ``fun``'s units.

    A non-finite residual or Jacobian raises ``slam.NonFiniteError`` (see ``slam.solve``); with
    ``method="gn"`` a rank-deficient Jacobian gives minimum-norm steps and ``converged=False``.
    """
    if method not in ("lm", "gn", "dogleg"):
        raise ValueError(f"method must be 'lm', 'gn' or 'dogleg', got {method!r}")
    x0 = torch.as_tensor(x0, dtype=torch.float64) if not isinstance(x0, Tensor) else x0
    if x0.ndim != 1:
        raise ValueError(f"x0 must be a 1-D tensor, got shape {tuple(x0.shape)}")
    # ``fun`` may close over tensors that require grad (data, network outputs); the problem
    # cannot see them, so ask ``fun`` itself: does its value at a constant x carry a graph?
    r0 = fun(x0.detach())
    closes_over_grad = torch.is_grad_enabled() and bool(r0.requires_grad)
    # The dimensionless problem: z = x / scale, residuals in units of the starting residual norm.
    scale = _scale(x_scale, x0)
    unit = float(r0.detach().norm())
    unit = unit if 0.0 < unit < float("inf") else 1.0
    variable = Variable(Euclidean((x0 / scale).unsqueeze(0)), name="x")  # holds z; errors name "x[0]"
    problem = Problem([_VectorCost(variable[[0]], fun, jac, scale, unit)])
    # A residual vector shorter than eps times the starting one is zero in working precision: the
    # stop for zero-residual problems whose iterates shrink toward x = 0 (no step is small relative to z).
    zero_cost = 0.5 * torch.finfo(x0.dtype).eps ** 2
    defaults: dict[str, object] = dict(
        max_iterations=max_iterations, function_tolerance=ftol, parameter_tolerance=xtol, gradient_tolerance=0.0,
        gradient_cosine_tolerance=gtol, cost_tolerance=zero_cost, linear_solver="dense",
    )
    if method == "lm":
        defaults.update(damping="levenberg", initial_damping=1e-3, rejected_step_tolerance=True)
    optimizer = {"lm": LevenbergMarquardt, "gn": GaussNewton, "dogleg": Dogleg}[method]
    config = optimizer(**{**defaults, **options})  # type: ignore[arg-type]
    result = solve(problem, config, backward, differentiable=closes_over_grad or x0.requires_grad)
    x = scale * result[variable].data.reshape(-1)
    return LeastSquaresResult(
        x=x, cost=float(result.cost[0]) * unit**2, fun=fun(x.detach()).detach(), iterations=int(result.iterations[0]),
        converged=bool(result.converged[0]), termination=result.termination[0], history=result.history,
    )


def _scale(x_scale: object, x0: Tensor) -> Tensor:
    """The ``(n,)`` positive scale of ``least_squares``'s parameters (constant: no graph)."""
    if isinstance(x_scale, str):
        if x_scale != "start":
            raise ValueError(f"x_scale must be 'start', a positive float or an (n,) tensor, got {x_scale!r}")
        magnitude = x0.detach().abs()
        return torch.where(magnitude > 0, magnitude, torch.ones_like(magnitude))
    scale = torch.as_tensor(x_scale, dtype=x0.dtype, device=x0.device).detach().expand(x0.shape).clone()
    if not bool((scale > 0).all()) or not bool(torch.isfinite(scale).all()):
        raise ValueError("x_scale must be positive and finite")
    return scale
