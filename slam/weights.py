"""Residual weights: whitening by a square-root information matrix.

A residual ``r`` of dimension m with information ``Ω = LᵀL`` contributes
``rᵀ Ω r = ‖L r‖²``; the solver works with the whitened residual ``L r`` and
Jacobians ``L J``.  Three forms, all differentiable in their parameters (so a
network can predict them) and broadcast over instances ``(*batch, E)``:

* ``ScalarWeight(w)``: ``L = w·I`` (``w`` is a square-root weight, 1/σ);
* ``DiagonalWeight(d)``: ``L = diag(d)``, ``d: (..., m)``;
* ``SqrtInformation(L)``: any ``L: (..., m, m)``; ``from_information(Ω)`` takes
  the upper Cholesky factor and rejects matrices that are not positive definite.
"""

from __future__ import annotations

import abc
import dataclasses

import torch
from torch import Tensor


class Weight(abc.ABC):
    """Whitens residuals ``(..., m)`` and Jacobians ``(..., m, d)``."""

    @abc.abstractmethod
    def whiten(self, r: Tensor) -> Tensor:
        """``L r`` for residuals ``(..., m)``."""

    @abc.abstractmethod
    def whiten_jacobian(self, j: Tensor) -> Tensor:
        """``L J`` for Jacobians ``(..., m, d)``."""

    def scaled(self, s: Tensor) -> Weight:
        """This weight with each instance's ``L`` times ``s: (..., E)`` (its information times ``s²``), in
        its own form where it has one (so that fused kernels keyed on the form still run)."""
        return _ScaledWeight(self, s)


class _ScaledWeight(Weight):
    """``s · L`` of any weight, ``s: (..., E)`` (``Weight.scaled`` of a form without its own)."""

    def __init__(self, base: Weight, s: Tensor):
        self.base, self.s = base, s

    def whiten(self, r: Tensor) -> Tensor:
        return self.base.whiten(r) * self.s.unsqueeze(-1)

    def whiten_jacobian(self, j: Tensor) -> Tensor:
        return self.base.whiten_jacobian(j) * self.s[..., None, None]


@dataclasses.dataclass(frozen=True, eq=False)
class ScalarWeight(Weight):
    """``L = w·I``; ``w``: float or tensor broadcastable to the instances ``(..., E)``."""

    sqrt_weight: Tensor | float

    def whiten(self, r: Tensor) -> Tensor:
        return r * _as_tensor(self.sqrt_weight, r).unsqueeze(-1)

    def whiten_jacobian(self, j: Tensor) -> Tensor:
        return j * _as_tensor(self.sqrt_weight, j)[..., None, None]

    def scaled(self, s: Tensor) -> ScalarWeight:
        return ScalarWeight(self.sqrt_weight * s)

    @classmethod
    def from_sigma(cls, sigma: Tensor | float) -> ScalarWeight:
        """From a standard deviation σ (``w = 1/σ``)."""
        return cls(1.0 / sigma)


@dataclasses.dataclass(frozen=True, eq=False)
class DiagonalWeight(Weight):
    """``L = diag(d)`` with ``d: (..., m)`` (per-component square-root weights, 1/σ_i)."""

    sqrt_weights: Tensor

    def whiten(self, r: Tensor) -> Tensor:
        return r * self.sqrt_weights

    def whiten_jacobian(self, j: Tensor) -> Tensor:
        return j * self.sqrt_weights.unsqueeze(-1)

    def scaled(self, s: Tensor) -> DiagonalWeight:
        return DiagonalWeight(self.sqrt_weights * s.unsqueeze(-1))

    @classmethod
    def from_sigmas(cls, sigmas: Tensor) -> DiagonalWeight:
        return cls(1.0 / sigmas)


@dataclasses.dataclass(frozen=True, eq=False)
class SqrtInformation(Weight):
    """Any square root ``L: (..., m, m)`` of the information, ``Ω = LᵀL``."""

    matrix: Tensor

    def whiten(self, r: Tensor) -> Tensor:
        return (self.matrix @ r.unsqueeze(-1)).squeeze(-1)

    def whiten_jacobian(self, j: Tensor) -> Tensor:
        return self.matrix @ j

    def scaled(self, s: Tensor) -> SqrtInformation:
        return SqrtInformation(self.matrix * s[..., None, None])

    @classmethod
    def from_information(cls, information: Tensor, *, what: str = "information matrix") -> SqrtInformation:
        """``L`` = the upper Cholesky factor of ``Ω: (..., m, m)``.

        Raises ``ValueError`` naming the first instance whose ``Ω`` is not symmetric
        positive definite (the caller's ``what`` prefixes the message).
        """
        if information.shape[-1] != information.shape[-2]:
            raise ValueError(f"{what}: expected square matrices (..., m, m), got {tuple(information.shape)}")
        lower, info = torch.linalg.cholesky_ex(information)
        asymmetric = (information - information.mT).abs().amax((-1, -2)) > 1e-9 * information.abs().amax((-1, -2))
        bad = (info > 0) | asymmetric | ~torch.isfinite(information).all(-1).all(-1)
        if bool(bad.any()):
            first = tuple(int(i) for i in torch.nonzero(bad)[0])
            reason = "not symmetric" if bool(asymmetric[first]) else "not positive definite (or not finite)"
            raise ValueError(f"{what} at instance {first if len(first) > 1 else first[0]} is {reason}: "
                             f"{information[first].tolist()}")
        return cls(lower.mT)

    @classmethod
    def from_covariance(cls, covariance: Tensor) -> SqrtInformation:
        return cls.from_information(torch.linalg.inv(covariance), what="inverse covariance")


def _as_tensor(x: Tensor | float, like: Tensor) -> Tensor:
    return x if isinstance(x, Tensor) else torch.tensor(x, dtype=like.dtype, device=like.device)
