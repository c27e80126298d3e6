"""SE(2): planar rigid transforms stored as ``(x, y, cos θ, sin θ)``; tangent ``(vx, vy, θ)``.

Conventions: ``liegeo.conventions``.  Jacobians: Solà, Deray and Atchuthan, *A
micro Lie theory for state estimation in robotics* (2018), §A.
"""

from __future__ import annotations

from typing import ClassVar

import torch
from torch import Tensor

from . import _math
from ._base import SEBase
from .so2 import SO2


class SE2(SEBase):
    """Planar rigid transforms.  ``data: (*batch, 4)``; tangent ``(vx, vy, θ): (*batch, 3)``."""

    param_dim: ClassVar[int] = 4
    tangent_dim: ClassVar[int] = 3
    matrix_dim: ClassVar[int] = 3
    point_dim: ClassVar[int] = 2
    rotation_type: ClassVar[type[SO2]] = SO2
    retraction_kernel: ClassVar[str | None] = "_se2_kernels"

    def rotation(self) -> SO2:
        return SO2._wrap(self.data[..., 2:])

    @classmethod
    def from_xytheta(cls, xytheta: Tensor) -> SE2:
        """From ``(x, y, θ): (*batch, 3)``, the g2o ``VERTEX_SE2`` / ``EDGE_SE2`` layout."""
        if xytheta.shape[-1:] != (3,):
            raise ValueError(f"SE2.from_xytheta expects (*, 3), got {tuple(xytheta.shape)}")
        return cls.from_rotation_translation(SO2.from_angle(xytheta[..., 2]), xytheta[..., :2])

    def xytheta(self) -> Tensor:
        """``(x, y, θ)`` with ``θ ∈ (-π, π]``: ``(*batch, 3)``."""
        return torch.cat([self.translation(), self.rotation().angle().unsqueeze(-1)], dim=-1)

    @classmethod
    def _exp(cls, xi: Tensor) -> SE2:
        # t = V(θ) v, V = [[A, -B], [B, A]], A = sin θ/θ, B = (1 - cos θ)/θ
        v, theta = xi[..., :2], xi[..., 2:]
        theta2 = theta * theta
        a, b = _math.sinc(theta2), theta * _math.cosc(theta2)
        t = torch.cat([a * v[..., :1] - b * v[..., 1:], b * v[..., :1] + a * v[..., 1:]], dim=-1)
        return cls._wrap(torch.cat([t, torch.cos(theta), torch.sin(theta)], dim=-1))

    def _log(self) -> Tensor:
        # v = V⁻¹ t, V⁻¹ = [[α, θ/2], [-θ/2, α]], α = (θ/2) cot(θ/2)
        theta = self.rotation().angle().unsqueeze(-1)
        alpha = _math.half_cot_half(theta * theta)
        half = 0.5 * theta
        tx, ty = self.data[..., :1], self.data[..., 1:2]
        return torch.cat([alpha * tx + half * ty, alpha * ty - half * tx, theta], dim=-1)

    def _act_generators(self, p: Tensor) -> Tensor:
        # Exp(δ) p ≈ p + δ_v + δ_θ (-p_y, p_x)
        one, zero = torch.ones_like(p[..., 0]), torch.zeros_like(p[..., 0])
        return torch.stack([one, zero, -p[..., 1], zero, one, p[..., 0]], dim=-1).unflatten(-1, (2, 3))

    def adjoint(self) -> Tensor:
        c, s = self.data[..., 2], self.data[..., 3]
        x, y = self.data[..., 0], self.data[..., 1]
        zero, one = torch.zeros_like(c), torch.ones_like(c)
        return torch.stack([c, -s, y, s, c, -x, zero, zero, one], dim=-1).unflatten(-1, (3, 3))

    @classmethod
    def ad(cls, xi: Tensor) -> Tensor:
        # [[0, -θ, ρ_y], [θ, 0, -ρ_x], [0, 0, 0]] for ξ = (ρ, θ): the derivative of Ad = [[R, (y, -x)], [0, 1]]
        r1, r2, theta = xi.unbind(-1)
        zero = torch.zeros_like(theta)
        return torch.stack([zero, -theta, r2, theta, zero, -r1, zero, zero, zero], dim=-1).unflatten(-1, (3, 3))

    @classmethod
    def jr(cls, xi: Tensor) -> Tensor:
        # [[A, B, ρ1 C - ρ2 D], [-B, A, ρ1 D + ρ2 C], [0, 0, 1]], C = (θ - sin θ)/θ², D = (1 - cos θ)/θ²
        r1, r2, theta = xi.unbind(-1)
        theta2 = theta * theta
        a, d = _math.sinc(theta2), _math.cosc(theta2)
        b, c = theta * d, theta * _math.sinc3(theta2)
        zero, one = torch.zeros_like(theta), torch.ones_like(theta)
        rows = [a, b, r1 * c - r2 * d, -b, a, r1 * d + r2 * c, zero, zero, one]
        return torch.stack(rows, dim=-1).unflatten(-1, (3, 3))

    @classmethod
    def jr_inv(cls, xi: Tensor) -> Tensor:
        # [[M⁻¹, -M⁻¹ m], [0, 1]] for J_r = [[M, m], [0, 1]], M⁻¹ = [[α, -θ/2], [θ/2, α]]
        r1, r2, theta = xi.unbind(-1)
        theta2 = theta * theta
        alpha, half = _math.half_cot_half(theta2), 0.5 * theta
        d, c = _math.cosc(theta2), theta * _math.sinc3(theta2)
        m1, m2 = r1 * c - r2 * d, r1 * d + r2 * c
        zero, one = torch.zeros_like(theta), torch.ones_like(theta)
        rows = [alpha, -half, -(alpha * m1 - half * m2), half, alpha, -(half * m1 + alpha * m2), zero, zero, one]
        return torch.stack(rows, dim=-1).unflatten(-1, (3, 3))
