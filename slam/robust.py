"""Robust losses (M-estimators) for the least-squares solver.

Convention: a residual block ``r``, already whitened by its information matrix, adds
``½ ρ(s)`` to the total cost, with ``s = ‖r‖²``.  Every loss has ``ρ(0) = 0``,
``ρ'(0) = 1`` and ``ρ(s) ≈ s`` for small ``s``, so small residuals see plain least
squares.  The solver runs iteratively reweighted least squares: it scales the block's
residual and Jacobian by ``sqrt(ρ'(s))``, so :meth:`RobustLoss.weight` returns ``ρ'(s)``.

These match GTSAM's ``noiseModel.mEstimator`` classes with the (default) block reweight
scheme: with ``e = ‖r‖``, GTSAM's ``loss(e)`` is ``½ ρ(e²)`` and its ``weight(e)`` is
``ρ'(e²)``; the scale ``k`` is GTSAM's threshold on ``e`` (not on ``s``) for all four.

The scale may be a learnable tensor (e.g. predicted per edge), so ``rho`` and ``weight``
are differentiable in ``s`` and ``scale`` with finite gradients everywhere, including
``s = 0`` and the kink ``s = k²``: no Python branches on data, and every ``torch.where``
gets arguments that are finite in the branch it discards.
"""

from __future__ import annotations

import abc
import dataclasses
import math
import numbers

import torch
from torch import Tensor

__all__ = ["RobustLoss", "Huber", "Cauchy", "GemanMcClure", "Tukey", "parse_robust"]


@dataclasses.dataclass(frozen=True)
class RobustLoss(abc.ABC):
    """A robust loss ``ρ(s)`` of the squared whitened residual norm ``s``.

    Attributes:
        scale: ``k``, the residual norm where the loss departs from least squares; a
            float or a tensor broadcastable to the per-block shape ``(*batch, E)``.
            Checked positive and finite unless it is a tensor that requires grad (a
            network's output, which is the caller's to keep positive, e.g. by softplus).
    """

    scale: Tensor | float

    def __post_init__(self) -> None:
        k = self.scale
        if isinstance(k, Tensor):
            if not k.requires_grad and not bool(torch.all(torch.isfinite(k) & (k > 0))):
                raise ValueError(f"{type(self).__name__} scale must be positive and finite, got {k}")
        elif not isinstance(k, numbers.Real) or not (math.isfinite(k) and k > 0):
            raise ValueError(f"{type(self).__name__} scale must be positive and finite, got {k!r}")

    def _k2(self, s: Tensor) -> Tensor:
        """``k²`` as a tensor of ``s``'s dtype and device (keeps autograd to a tensor scale)."""
        k = torch.as_tensor(self.scale, dtype=s.dtype, device=s.device)
        return k * k

    @abc.abstractmethod
    def rho(self, s: Tensor) -> Tensor:
        """``ρ(s)`` for ``s = ‖r‖² >= 0`` of shape ``(*batch, E)``; the block costs ``½ ρ(s)``."""

    @abc.abstractmethod
    def weight(self, s: Tensor) -> Tensor:
        """``ρ'(s)``, the IRLS weight: the block's residual and Jacobian scale by its root."""


@dataclasses.dataclass(frozen=True)
class Huber(RobustLoss):
    """``ρ = s`` for ``s <= k²``, ``2k√s − k²`` beyond (quadratic, then linear in ``‖r‖``)."""

    def _split(self, s: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        k2 = self._k2(s)
        inside = s <= k2
        # √ of at least k² > 0 in the outer branch: its gradient is finite even where discarded.
        return k2, inside, torch.where(inside, k2, s)

    def rho(self, s: Tensor) -> Tensor:
        k2, inside, s_out = self._split(s)
        return torch.where(inside, s, 2 * torch.sqrt(k2 * s_out) - k2)

    def weight(self, s: Tensor) -> Tensor:
        k2, inside, s_out = self._split(s)
        return torch.where(inside, torch.ones_like(s_out), torch.sqrt(k2 / s_out))


@dataclasses.dataclass(frozen=True)
class Cauchy(RobustLoss):
    """``ρ = k² log(1 + s/k²)``."""

    def rho(self, s: Tensor) -> Tensor:
        k2 = self._k2(s)
        return k2 * torch.log1p(s / k2)  # log1p keeps ρ(s)/s → 1 exact for tiny s

    def weight(self, s: Tensor) -> Tensor:
        k2 = self._k2(s)
        return k2 / (k2 + s)


@dataclasses.dataclass(frozen=True)
class GemanMcClure(RobustLoss):
    """``ρ = k² s / (k² + s)``, bounded by ``k²``."""

    def rho(self, s: Tensor) -> Tensor:
        k2 = self._k2(s)
        return k2 * s / (k2 + s)

    def weight(self, s: Tensor) -> Tensor:
        k2 = self._k2(s)
        return (k2 / (k2 + s)) ** 2


@dataclasses.dataclass(frozen=True)
class Tukey(RobustLoss):
    """Tukey's biweight: ``ρ = k²/3 (1 − (1 − s/k²)³)`` for ``s <= k²``, ``k²/3`` beyond."""

    def rho(self, s: Tensor) -> Tensor:
        k2 = self._k2(s)
        u = torch.clamp(s / k2, max=1.0)  # the clamp is the constant tail: zero grad in s there
        # 1 − (1 − u)³ expanded, so small s loses no digits to cancellation.
        return k2 / 3 * u * (3 - 3 * u + u * u)

    def weight(self, s: Tensor) -> Tensor:
        u = torch.clamp(s / self._k2(s), max=1.0)
        return (1 - u) ** 2


_LOSSES: dict[str, type[RobustLoss]] = {
    "huber": Huber,
    "cauchy": Cauchy,
    "geman_mcclure": GemanMcClure,
    "tukey": Tukey,
}


def robust_spec(loss: RobustLoss | None) -> str:
    """``loss`` as ``parse_robust`` (and ``--robust``) takes it, e.g. ``"cauchy:0.5"``; ``"none"`` for no
    loss (JSON records of a run: ``null`` there stands for a NaN); the loss's repr for one that
    ``parse_robust`` cannot name (e.g. a tensor scale)."""
    if loss is None:
        return "none"
    name = next((key for key, kind in _LOSSES.items() if type(loss) is kind), None)
    if name is None or isinstance(loss.scale, torch.Tensor):
        return repr(loss)
    return f"{name}:{float(loss.scale)!r}"


def parse_robust(spec: str) -> RobustLoss:
    """Build a loss from ``"name:scale"``, e.g. ``"huber:1.345"`` or ``"Geman-McClure:1"``.

    Args:
        spec: a loss name (``huber``, ``cauchy``, ``geman_mcclure`` or ``geman-mcclure``,
            ``tukey``; any case), a colon, and a positive finite scale.

    Returns:
        The loss with a float scale.

    Raises:
        ValueError: naming the part of ``spec`` that is missing or wrong.
    """
    name, sep, value = spec.partition(":")
    if not sep:
        raise ValueError(f"robust loss spec {spec!r} has no ':'; expected 'name:scale', e.g. 'huber:1.345'")
    key = name.strip().lower().replace("-", "_")
    if key not in _LOSSES:
        raise ValueError(f"unknown robust loss {name!r} in {spec!r}; expected one of {sorted(_LOSSES)}")
    try:
        scale = float(value)
    except ValueError:
        raise ValueError(f"robust loss scale {value!r} in {spec!r} is not a number") from None
    if not (math.isfinite(scale) and scale > 0):
        raise ValueError(f"robust loss scale {value!r} in {spec!r} must be positive and finite")
    return _LOSSES[key](scale)
