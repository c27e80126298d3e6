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
from .optim.config import BackwardMode, GaussNewton, LevenbergMarquardt
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
    def __init__(self, ref, fun, jac):  # type: ignore[no-untyped-def]
        super().__init__(ref, name=getattr(fun, "__name__", "fun"))
        self.fun, self.jac = fun, jac

    def residual(self, x: Euclidean) -> Tensor:  # x: (1, 1, n)
        return self.fun(x.data.reshape(-1)).reshape(1, 1, -1)

    def residual_and_jacobians(self, x: Euclidean) -> tuple[Tensor, list[Tensor]]:
        if self.jac is None:
            return autodiff_jacobians(self.residual, (x,), {})
        flat = x.data.reshape(-1)
        return self.residual(x), [torch.as_tensor(self.jac(flat)).reshape(1, 1, -1, flat.shape[0])]


def least_squares(
    fun: Callable[[Tensor], Tensor],
    x0: Tensor | list[float] | tuple[float, ...],
    *,
    method: Literal["lm", "gn"] = "lm",
    jac: Callable[[Tensor], Tensor] | None = None,
    max_iterations: int = 100,
    ftol: float = 1e-8,
    xtol: float = 1e-8,
    gtol: float = 1e-8,
    backward: BackwardMode | None = None,
    **options: object,
) -> LeastSquaresResult:
    """Minimize ``½ Σ fun(x)²`` from ``x0`` by Levenberg-Marquardt (``"lm"``) or Gauss-Newton (``"gn"``).

    ``ftol``, ``xtol`` and ``gtol`` are the relative cost decrease, relative step and
    gradient-norm tolerances (``function_tolerance``, ``parameter_tolerance``,
    ``gradient_tolerance`` of the optimizer); other keyword options go to the optimizer's
    config (e.g. ``initial_damping=1e-3``, or ``linear_solver="cg"``; default ``"dense"``).

    A non-finite residual or Jacobian raises ``slam.NonFiniteError`` (see ``slam.solve``); with
    ``method="gn"`` a rank-deficient Jacobian gives minimum-norm steps and ``converged=False``.
    """
    if method not in ("lm", "gn"):
        raise ValueError(f"method must be 'lm' or 'gn', got {method!r}")
    x0 = torch.as_tensor(x0, dtype=torch.float64) if not isinstance(x0, Tensor) else x0
    if x0.ndim != 1:
        raise ValueError(f"x0 must be a 1-D tensor, got shape {tuple(x0.shape)}")
    variable = Variable(Euclidean(x0.unsqueeze(0)), name="x")
    problem = Problem([_VectorCost(variable[[0]], fun, jac)])
    config = (LevenbergMarquardt if method == "lm" else GaussNewton)(
        max_iterations=max_iterations, function_tolerance=ftol, parameter_tolerance=xtol, gradient_tolerance=gtol,
        **{"linear_solver": "dense", **options},  # type: ignore[arg-type]
    )
    # ``fun`` may close over tensors that require grad (data, network outputs); the problem
    # cannot see them, so ask ``fun`` itself: does its value at a constant x carry a graph?
    closes_over_grad = torch.is_grad_enabled() and bool(fun(x0.detach()).requires_grad)
    result = solve(problem, config, backward, differentiable=closes_over_grad or x0.requires_grad)
    x = result[variable].data.reshape(-1)
    return LeastSquaresResult(
        x=x, cost=float(result.cost[0]), fun=fun(x.detach()).detach(), iterations=int(result.iterations[0]),
        converged=bool(result.converged[0]), termination=result.termination[0], history=result.history,
    )
