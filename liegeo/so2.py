"""SO(2): planar rotations stored as ``(cos θ, sin θ)``; tangent ``θ`` (rad), shape ``(*batch, 1)``.

Conventions: ``liegeo.conventions``.
"""

from __future__ import annotations

import math
from typing import Any, ClassVar

import torch
from torch import Tensor

from ._base import SOBase, batch_shape


class SO2(SOBase):
    """Planar rotations.  ``data: (*batch, 2)`` holds ``(cos θ, sin θ)``; tangent ``(*batch, 1)``."""

    param_dim: ClassVar[int] = 2
    tangent_dim: ClassVar[int] = 1
    matrix_dim: ClassVar[int] = 2
    point_dim: ClassVar[int] = 2

    @classmethod
    def identity(cls, *batch: int, dtype: torch.dtype | None = None, device: Any = None) -> SO2:
        data = torch.zeros(*batch_shape(batch), 2, dtype=dtype, device=device)
        data[..., 0] = 1.0
        return cls._wrap(data)

    @classmethod
    def random(
        cls,
        *batch: int,
        generator: torch.Generator | None = None,
        dtype: torch.dtype | None = None,
        device: Any = None,
    ) -> SO2:
        angle = torch.rand(batch_shape(batch), generator=generator, dtype=dtype, device=device)
        return cls.from_angle((2.0 * angle - 1.0) * math.pi)

    @classmethod
    def from_angle(cls, angle: Tensor) -> SO2:
        """From angles ``(*batch,)`` in radians."""
        angle = torch.as_tensor(angle)
        return cls._wrap(torch.stack([torch.cos(angle), torch.sin(angle)], dim=-1))

    @classmethod
    def from_matrix(cls, m: Tensor, *, project: bool = False) -> SO2:
        """From rotation matrices ``(*batch, 2, 2)``; always the nearest rotation (``project`` is implied)."""
        if m.shape[-2:] != (2, 2):
            raise ValueError(f"SO2.from_matrix expects (*, 2, 2), got {tuple(m.shape)}")
        c = m[..., 0, 0] + m[..., 1, 1]
        s = m[..., 1, 0] - m[..., 0, 1]
        return cls._wrap(torch.stack([c, s], dim=-1)).normalize()

    def angle(self) -> Tensor:
        """The angle in ``(-π, π]``: ``(*batch,)``."""
        return torch.atan2(self.data[..., 1], self.data[..., 0])

    def matrix(self) -> Tensor:
        c, s = self.data[..., 0], self.data[..., 1]
        return torch.stack([c, -s, s, c], dim=-1).unflatten(-1, (2, 2))

    def normalize(self) -> SO2:
        return SO2._wrap(self.data / torch.linalg.vector_norm(self.data, dim=-1, keepdim=True))

    @classmethod
    def _exp(cls, xi: Tensor) -> SO2:
        return cls._wrap(torch.cat([torch.cos(xi), torch.sin(xi)], dim=-1))

    @staticmethod
    def _exp_velocity(delta: Tensor) -> Tensor:
        return torch.cat([torch.zeros_like(delta), delta], dim=-1)  # (cos θ, sin θ)

    def _log(self) -> Tensor:
        return self.angle().unsqueeze(-1)

    @staticmethod
    def _multiply_parts(a: Tensor, b: Tensor) -> list[Tensor]:
        c1, s1, c2, s2 = a[..., :1], a[..., 1:], b[..., :1], b[..., 1:]
        return [c1 * c2 - s1 * s2, s1 * c2 + c1 * s2]

    @staticmethod
    def _conjugate_parts(a: Tensor) -> list[Tensor]:
        return [a[..., :1], -a[..., 1:]]

    @staticmethod
    def _rotate(a: Tensor, p: Tensor) -> Tensor:
        c, s, x, y = a[..., :1], a[..., 1:], p[..., :1], p[..., 1:]
        return torch.cat([c * x - s * y, s * x + c * y], dim=-1)

    @staticmethod
    def _rotate_inverse(a: Tensor, p: Tensor) -> Tensor:
        c, s, x, y = a[..., :1], a[..., 1:], p[..., :1], p[..., 1:]
        return torch.cat([c * x + s * y, c * y - s * x], dim=-1)

    def _act_generators(self, p: Tensor) -> Tensor:
        # Exp(δ) p ≈ p + δ (-p_y, p_x)
        return torch.stack([-p[..., 1], p[..., 0]], dim=-1).unsqueeze(-1)

    def adjoint(self) -> Tensor:
        return torch.ones_like(self.data[..., :1]).unsqueeze(-1)

    @classmethod
    def ad(cls, xi: Tensor) -> Tensor:
        return torch.zeros_like(xi).unsqueeze(-1)  # abelian

    @classmethod
    def jr(cls, xi: Tensor) -> Tensor:
        return torch.ones_like(xi).unsqueeze(-1)

    @classmethod
    def jr_inv(cls, xi: Tensor) -> Tensor:
        return torch.ones_like(xi).unsqueeze(-1)
