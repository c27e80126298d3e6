"""Pose-graph costs for any ``liegeo`` group (SE2, SE3, SO2, SO3, Euclidean), with analytic Jacobians.

``Between``: ``r = Log(Z⁻¹ · X_i⁻¹ · X_j)`` for a measured relative pose ``Z`` of ``X_j`` in
the frame of ``X_i`` (the error of ``liegeo.conventions``); ``Prior``: ``r = Log(Z⁻¹ · X)``.
Weights (e.g. ``SqrtInformation.from_information(Ω)``) and robust losses are passed
when the cost is created.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Sequence

import torch
from torch import Tensor

from liegeo import SE2, SE3, LieGroup

from ..weights import SqrtInformation
from .base import Linearization, _fused_inputs, kernel_inputs_ok, residual

if TYPE_CHECKING:
    from ..structure import CostLayout


def _kernels(group: type = SE3):
    # imported on first use: numba takes ~0.2 s to import
    if group is SE2:
        from .. import _se2_kernels

        return _se2_kernels
    from .. import _se3_kernels

    return _se3_kernels


_FUSED = (SE2, SE3)
"""The groups whose between edges have a fused kernel (``_se2_kernels``, ``_se3_kernels``)."""


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


class Between(residual(_between, jacobians=_between_jacobians)):
    """``Log(Z⁻¹ X_i⁻¹ X_j)``: ``Between(poses[i], poses[j], measurement=Z, weight=..., loss=...)``.

    SE(2) and SE(3) edges in float64 on the CPU with a ``SqrtInformation`` weight (or none) run the
    fused kernel of ``_se2_kernels`` / ``_se3_kernels`` where nothing needs autograd; everything else
    the torch path.
    """

    def _fused_group(self, x_i: LieGroup, x_j: LieGroup) -> type | None:
        """The group whose kernels take these edges (measurement and both poses of one fused group), else None."""
        group = type(self.data["measurement"])
        return group if group in _FUSED and type(x_i) is group and type(x_j) is group else None

    def _sqrt_information(self, x_i: LieGroup, x_j: LieGroup, measurement: LieGroup) -> Tensor | None:
        """``(Bl, E, n, n)`` float64 (``n`` the tangent size) when the fused kernel applies, else None."""
        group = self._fused_group(x_i, x_j)
        if group is None:
            return None
        n = group.tangent_dim
        if self.weight is None:
            matrix = torch.eye(n, dtype=torch.float64).expand(1, x_i.shape[-1], n, n)
        elif isinstance(self.weight, SqrtInformation):
            matrix = self.weight.matrix
        else:
            return None
        if not kernel_inputs_ok(x_i.data, x_j.data, measurement.data, matrix):
            return None
        return matrix.reshape(-1, *matrix.shape[-3:])

    @staticmethod
    def _edges(x: LieGroup, batch: int) -> Tensor:
        return x.data.expand(batch, -1, x.param_dim).contiguous()

    def _batch(self, x_i: LieGroup, x_j: LieGroup) -> int:
        return max(x_i.data.reshape(-1, self.num, x_i.param_dim).shape[0],
                   x_j.data.reshape(-1, self.num, x_j.param_dim).shape[0])

    def linearization_path(self, dtype: torch.dtype, device: torch.device | str) -> str:
        group = type(self.data["measurement"])
        if (group in _FUSED and (self.weight is None or isinstance(self.weight, SqrtInformation))
                and _fused_inputs(dtype, device)):
            return f"fused kernel (slam._{group.__name__.lower()}_kernels)"
        return super().linearization_path(dtype, device)

    def exact_blocks_path(self, dtype: torch.dtype, device: torch.device | str) -> str:
        path = self.linearization_path(dtype, device)  # the same kernel module computes both
        return path if path.startswith("fused") else super().exact_blocks_path(dtype, device)

    def exact_blocks(self, values: Sequence[LieGroup], batch_size: int) -> tuple[Tensor, Tensor, Tensor]:
        fused = self._kernel_inputs(values)
        if fused is None:
            return super().exact_blocks(values, batch_size)
        group, batch, arrays = fused
        rw, h, g = self._blocks_out(group, batch)
        _kernels(group).exact_blocks(*arrays, rw.numpy(), h.numpy(), g.numpy())
        return rw, h, g

    def _blocks_out(self, group: type, batch: int) -> tuple[Tensor, Tensor, Tensor]:
        """Empty ``r_w (B, E, m)``, packed ``h (B, E, D(D+1)/2)`` and ``g (B, E, D)`` for a kernel to fill."""
        m, d = group.tangent_dim, 2 * group.tangent_dim
        return (torch.empty(batch, self.num, m, dtype=torch.float64),
                torch.empty(batch, self.num, d * (d + 1) // 2, dtype=torch.float64),
                torch.empty(batch, self.num, d, dtype=torch.float64))

    def _kernel_inputs(self, values: Sequence[LieGroup]) -> tuple[type, int, tuple] | None:
        """``(group, B, (xi, xj, z, sqrt_info) as numpy arrays)`` where the fused kernel takes these
        values, else None."""
        x_i, x_j = values
        measurement = self.data["measurement"]
        sqrt_info = self._sqrt_information(x_i, x_j, measurement)
        if sqrt_info is None:
            return None
        group, batch = type(measurement), self._batch(x_i, x_j)
        return group, batch, (self._edges(x_i, batch).numpy(), self._edges(x_j, batch).numpy(),
                              measurement.data.reshape(-1, self.num, group.param_dim).contiguous().numpy(),
                              sqrt_info.contiguous().numpy())

    def prepare(self) -> None:
        measurement = self.data["measurement"]
        if type(measurement) in _FUSED and kernel_inputs_ok(measurement.data):
            _kernels(type(measurement)).warm_up()

    def whitened_residual(self, values: Sequence[LieGroup]) -> Tensor:
        fused = self._kernel_inputs(values)
        if fused is None:
            return super().whitened_residual(values)
        group, batch, arrays = fused
        out = torch.empty(batch, self.num, group.tangent_dim, dtype=torch.float64)
        _kernels(group).residuals(*arrays, out.numpy())
        return out

    def accumulate_normal(self, values: Sequence[LieGroup], batch_size: int, layout: CostLayout, h: Tensor,
                          g: Tensor) -> Tensor | None:
        fused = self._kernel_inputs(values)
        # (An edge from a pose to itself counts its blocks twice, CostLayout.multiplicity: the blocks path.)
        if fused is None or layout.multiplicity is not None or fused[1] != batch_size:
            return None
        group, batch, arrays = fused
        rw = torch.empty(batch, self.num, group.tangent_dim, dtype=torch.float64)
        _kernels(group).accumulate_normal(*arrays, layout.hessian_slots.numpy(), layout.gradient_slots.numpy(),
                                          rw.numpy(), h.numpy(), g.numpy())
        return rw

    def directional_residual(self, values: Sequence[LieGroup], direction: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        # r = Log(Z⁻¹ D) sees the poses only through D = X_i⁻¹ X_j, and (δ_i, δ_j) move D to D Exp(δ_j -
        # Ad(D⁻¹) δ_i) to first order: the graph is Log on D's storage, without retractions or between.
        x_i, x_j = values
        group = self._fused_group(x_i, x_j)
        with torch.no_grad():
            if group is not None and kernel_inputs_ok(x_i.data, x_j.data, direction):
                batch = max(self._batch(x_i, x_j), direction.shape[0])
                point = torch.empty(batch, self.num, group.param_dim, dtype=torch.float64)
                velocity = torch.empty_like(point)
                _kernels(group).directional_inputs(self._edges(x_i, batch).numpy(), self._edges(x_j, batch).numpy(),
                                                   direction.expand(batch, -1, -1).contiguous().numpy(), point.numpy(),
                                                   velocity.numpy())
            else:
                d = x_i.between(x_j)
                n = d.tangent_dim
                moved = direction[..., n:] - (d.inverse().adjoint() @ direction[..., :n].unsqueeze(-1)).squeeze(-1)
                velocity = d.retract_velocity(moved)
                point = d.data.detach().clone()
        point.requires_grad_(True)
        r = self.data["measurement"].local(x_i._new(point))
        return point, velocity, self.weight.whiten(r) if self.weight is not None else r

    def linearize(self, values: Sequence[LieGroup], batch_size: int) -> Linearization:
        fused = self._kernel_inputs(values)
        if fused is None:
            return super().linearize(values, batch_size)
        group, batch, arrays = fused
        rw, h, g = self._blocks_out(group, batch)
        jw = torch.empty(batch, self.num, group.tangent_dim, 2 * group.tangent_dim, dtype=torch.float64)
        ones = torch.ones(1, self.num, dtype=torch.float64)
        _kernels(group).normal_blocks(*arrays, ones.numpy(), rw.numpy(), jw.numpy(), h.numpy(), g.numpy())
        return Linearization(rw, jw, h, g)


Prior = residual(_prior, jacobians=_prior_jacobians)
Prior.__name__ = Prior.__qualname__ = "Prior"
Prior.__doc__ = """``Log(Z⁻¹ X)``: ``Prior(poses[k], measurement=Z, weight=...)``."""
