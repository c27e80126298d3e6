"""Pose-graph costs for any ``liegeo`` group (SE2, SE3, SO2, SO3, Euclidean), with analytic Jacobians.

``Between``: ``r = Log(Z⁻¹ · X_i⁻¹ · X_j)`` for a measured relative pose ``Z`` of ``X_j`` in
the frame of ``X_i`` (the error of ``liegeo.conventions``); ``Prior``: ``r = Log(Z⁻¹ · X)``.
Weights (e.g. ``SqrtInformation.from_information(Ω)``) and robust losses are passed
when the cost is created.
"""

from __future__ import annotations

from torch import Tensor

from liegeo import LieGroup

from .base import residual


def _between(x_i: LieGroup, x_j: LieGroup, *, measurement: LieGroup) -> Tensor:
    return measurement.local(x_i.between(x_j))


def _between_jacobians(x_i: LieGroup, x_j: LieGroup, *, measurement: LieGroup) -> tuple[Tensor, list[Tensor]]:
    # With D = X_i⁻¹ X_j and r = Log(Z⁻¹ D): perturbing X_j moves D by D·Exp(δ), perturbing X_i
    # by Exp(-δ)·D = D·Exp(-Ad(D⁻¹) δ); ∂r/∂(D's perturbation) = J_r⁻¹(r).
    d = x_i.between(x_j)
    r = measurement.local(d)
    j_d = type(d).jr_inv(r)  # local's other Jacobian (J_l⁻¹) is not needed: it would cost as much again
    return r, [-(j_d @ d.inverse().adjoint()), j_d]


def _prior(x: LieGroup, *, measurement: LieGroup) -> Tensor:
    return measurement.local(x)


def _prior_jacobians(x: LieGroup, *, measurement: LieGroup) -> tuple[Tensor, list[Tensor]]:
    r = measurement.local(x)
    return r, [type(x).jr_inv(r)]


Between = residual(_between, jacobians=_between_jacobians)
Between.__name__ = Between.__qualname__ = "Between"
Between.__doc__ = """``Log(Z⁻¹ X_i⁻¹ X_j)``: ``Between(poses[i], poses[j], measurement=Z, weight=..., loss=...)``."""

Prior = residual(_prior, jacobians=_prior_jacobians)
Prior.__name__ = Prior.__qualname__ = "Prior"
Prior.__doc__ = """``Log(Z⁻¹ X)``: ``Prior(poses[k], measurement=Z, weight=...)``."""
