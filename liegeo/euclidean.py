"""Euclidean space ``R^n`` as the (commutative) translation group: the trivial manifold.

``x ⊕ δ = x + δ``; every Jacobian is an identity.  It lets the solvers treat
plain vectors (landmarks, intrinsics, joint angles) exactly like the groups.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from . import _math
from ._base import LieGroup, batch_shape


class Euclidean(LieGroup):
    """Vectors ``data: (*batch, n)``; tangent ``(*batch, n)``; ``act(p) = p + x``.

    Unlike the other groups, the dimension belongs to the instance, not the class.
    """

    param_dim: Any = property(lambda self: self.data.shape[-1])  # type: ignore[assignment]
    tangent_dim: Any = param_dim  # type: ignore[assignment]
    point_dim: Any = param_dim  # type: ignore[assignment]
    matrix_dim: Any = property(lambda self: self.data.shape[-1] + 1)  # type: ignore[assignment]

    def __post_init__(self) -> None:
        if not isinstance(self.data, Tensor) or self.data.ndim == 0 or not self.data.is_floating_point():
            raise ValueError("Euclidean wraps a floating-point tensor of shape (*batch, n)")

    @classmethod
    def identity(cls, *batch: int, dim: int, dtype: torch.dtype | None = None, device: Any = None) -> Euclidean:
        return cls(torch.zeros(*batch_shape(batch), dim, dtype=dtype, device=device))

    @classmethod
    def random(
        cls,
        *batch: int,
        dim: int,
        generator: torch.Generator | None = None,
        dtype: torch.dtype | None = None,
        device: Any = None,
    ) -> Euclidean:
        return cls(torch.randn(*batch_shape(batch), dim, generator=generator, dtype=dtype, device=device))

    @classmethod
    def _check_tangent(cls, xi: Tensor) -> None:
        if xi.ndim == 0:
            raise ValueError("Euclidean tangent vectors have shape (*, n)")

    def _check_same_type(self, other: Any) -> None:
        super()._check_same_type(other)
        if other.data.shape[-1] != self.data.shape[-1]:
            raise ValueError(f"cannot combine R^{self.data.shape[-1]} with R^{other.data.shape[-1]}")

    @classmethod
    def _exp(cls, xi: Tensor) -> Euclidean:
        return cls(xi)

    def _log(self) -> Tensor:
        return self.data

    def _compose(self, other: Euclidean) -> Euclidean:
        return Euclidean(self.data + other.data)

    def retract_velocity(self, delta: Tensor) -> Tensor:
        self._check_tangent(delta)
        return delta.expand(*_math.broadcast_shapes(self.data.shape[:-1], delta.shape[:-1]), delta.shape[-1])

    def _inverse(self) -> Euclidean:
        return Euclidean(-self.data)

    def _act(self, p: Tensor) -> Tensor:
        return p + self.data

    def _act_generators(self, p: Tensor) -> Tensor:
        return _math.eye(p.shape[-1], p.shape[:-1], p)

    def _linear_part(self) -> Tensor:
        return _math.eye(self.data.shape[-1], self.shape, self.data)

    def adjoint(self) -> Tensor:
        return _math.eye(self.data.shape[-1], self.shape, self.data)

    def matrix(self) -> Tensor:
        n = self.data.shape[-1]
        m = torch.eye(n + 1, dtype=self.dtype, device=self.device).repeat(*self.shape, 1, 1)
        m[..., :n, n] = self.data
        return m

    def normalize(self) -> Euclidean:
        return self

    @classmethod
    def ad(cls, xi: Tensor) -> Tensor:
        return torch.zeros(*xi.shape, xi.shape[-1], dtype=xi.dtype, device=xi.device)  # abelian

    @classmethod
    def jr(cls, xi: Tensor) -> Tensor:
        return _math.eye(xi.shape[-1], xi.shape[:-1], xi)

    @classmethod
    def jr_inv(cls, xi: Tensor) -> Tensor:
        return _math.eye(xi.shape[-1], xi.shape[:-1], xi)
