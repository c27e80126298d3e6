"""Robust losses (M-estimators) for the least-squares solver.

Convention: a residual block ``r``, already whitened by its information matrix, adds
``½ ρ(s)`` to the total cost, with ``s = ‖r‖²``.  Every loss has ``ρ(0) = 0``,
``ρ'(0) = 1`` and ``ρ(s) ≈ s`` for small ``s``, so small residuals see plain least
squares.  The solver runs iteratively reweighted least squares: it scales the block's
residual and Jacobian by ``sqrt(ρ'(s))``, so :meth:`RobustLoss.weight` returns ``ρ'(s)``.

These match GTSAM's ``noiseModel.mEstimator`` classes with the (default) block reweight
scheme: with ``e = ‖r‖``, GTSAM's ``loss(e)`` is ``½ ρ(e²)`` and its ``weight(e)`` is
``ρ'(e²)``; the scale ``k`` is GTSAM's threshold on ``e`` (not on ``s``) for all four, and for
``Fair``, ``Welsch``, ``L2WithDeadZone`` and ``TruncatedLeastSquares``; GTSAM's ``DCS(Φ)`` is ours with
``k² = Φ``.  From Ceres (which writes ``ρ(s)`` directly): ``Huber``, ``Cauchy``, ``Tukey`` (same ``a = k``),
``PseudoHuber`` (``SoftLOneLoss(a = k)``), ``Arctan`` (``ArctanLoss(a = k²)``) and ``Tolerant`` (Ceres'
``a``, ``b`` on ``s``).  ``Barron`` is the general adaptive loss with a (learnable) shape ``α``.
Exceptions to ``ρ'(0) = 1``: ``L2WithDeadZone`` (``ρ' = 0`` in the dead zone) and ``Tolerant``
(``ρ'(0) = σ(−a/b)``).

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

__all__ = ["RobustLoss", "Huber", "Cauchy", "GemanMcClure", "Tukey", "Fair", "Welsch", "DCS", "L2WithDeadZone",
           "TruncatedLeastSquares", "PseudoHuber", "Arctan", "Tolerant", "Barron", "parse_robust", "robust_spec"]


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


def _safe_sqrt(s: Tensor) -> Tensor:
    """``√s`` for ``s >= 0`` with a finite gradient (0) at ``s = 0``, where ``√`` has an infinite one."""
    positive = s > 0
    return torch.where(positive, torch.sqrt(torch.where(positive, s, torch.ones_like(s))), torch.zeros_like(s))


def _param(value: Tensor | float, s: Tensor) -> Tensor:
    """A loss parameter as a tensor of ``s``'s dtype and device (autograd kept)."""
    return torch.as_tensor(value, dtype=s.dtype, device=s.device)


def _check_real(owner: str, what: str, value: Tensor | float, *, positive: bool, nonnegative: bool = False) -> None:
    """A parameter must be finite (and positive / non-negative); a tensor that requires grad is not checked."""
    if isinstance(value, Tensor):
        if value.requires_grad:
            return
        ok = torch.isfinite(value)
        if positive:
            ok = ok & (value > 0)
        elif nonnegative:
            ok = ok & (value >= 0)
        if not bool(torch.all(ok)):
            raise ValueError(f"{owner} {what} must be {'positive and ' if positive else 'non-negative and ' if nonnegative else ''}finite, got {value}")
        return
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not math.isfinite(value) \
            or (positive and not value > 0) or (nonnegative and not value >= 0):
        raise ValueError(f"{owner} {what} must be {'positive and ' if positive else 'non-negative and ' if nonnegative else ''}"
                         f"finite, got {value!r}")


@dataclasses.dataclass(frozen=True)
class Fair(RobustLoss):
    """``ρ = 2k² (u − log(1 + u))`` with ``u = √s / k``; ``ρ' = 1 / (1 + u)``.  GTSAM's ``Fair(c = k)``.

    ``ρ'`` is not differentiable in ``s`` at 0 (``ρ'' → −∞``); its autograd there is 0.
    """

    def rho(self, s: Tensor) -> Tensor:
        k = _param(self.scale, s)
        u = _safe_sqrt(s) / k
        # ρ = s g(u), g(u) = 2 (u − log1p u) / u²: the series below u = 0.1 (no cancellation), and the
        # factor s keeps dρ/ds = g(0) = 1 at s = 0 where u has no useful derivative.
        small = u < 0.1
        us = torch.where(small, u, torch.zeros_like(u))
        series = torch.zeros_like(us)
        for n in range(17, 1, -1):
            series = series * us + (2.0 if n % 2 == 0 else -2.0) / n
        ul = torch.where(small, torch.ones_like(u), u)
        direct = 2 * (ul - torch.log1p(ul)) / (ul * ul)
        return s * torch.where(small, series, direct)

    def weight(self, s: Tensor) -> Tensor:
        return 1 / (1 + _safe_sqrt(s) / _param(self.scale, s))


@dataclasses.dataclass(frozen=True)
class Welsch(RobustLoss):
    """``ρ = k² (1 − exp(−s/k²))``, ``ρ' = exp(−s/k²)``, bounded by ``k²``.  GTSAM's ``Welsch(c = k)``."""

    def rho(self, s: Tensor) -> Tensor:
        k2 = self._k2(s)
        return -k2 * torch.expm1(-s / k2)

    def weight(self, s: Tensor) -> Tensor:
        return torch.exp(-s / self._k2(s))


@dataclasses.dataclass(frozen=True)
class DCS(RobustLoss):
    """Dynamic covariance scaling: ``ρ = s`` for ``s <= k²``, ``k² (3s − k²) / (k² + s)`` beyond (bounded
    by ``3k²``); ``ρ' = min(1, (2k² / (k² + s))²)``.  GTSAM's ``DCS(c = Φ = k²)``: GTSAM's parameter is
    a threshold on ``s``, ours on ``‖r‖`` like every other scale here."""

    def rho(self, s: Tensor) -> Tensor:
        k2 = self._k2(s)
        return torch.where(s <= k2, s, k2 * (3 * s - k2) / (k2 + s))

    def weight(self, s: Tensor) -> Tensor:
        k2 = self._k2(s)
        return torch.where(s <= k2, torch.ones_like(s), (2 * k2 / (k2 + s)) ** 2)


@dataclasses.dataclass(frozen=True)
class L2WithDeadZone(RobustLoss):
    """``ρ = (max(0, √s − k))²``, ``ρ' = max(0, 1 − k/√s)``: no cost inside the dead zone ``‖r‖ <= k``.
    GTSAM's ``L2WithDeadZone(k)``.  The exception to the module's rule: ``ρ'(0) = 0`` and ``ρ(s) ≉ s``
    near 0 (blocks inside the zone add nothing to the normal equations)."""

    def _split(self, s: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        k = _param(self.scale, s)
        outside = s > k * k
        return k, outside, torch.sqrt(torch.where(outside, s, k * k))  # √ of at least k² > 0

    def rho(self, s: Tensor) -> Tensor:
        k, outside, root = self._split(s)
        return torch.where(outside, (root - k) ** 2, torch.zeros_like(s))

    def weight(self, s: Tensor) -> Tensor:
        k, outside, root = self._split(s)
        return torch.where(outside, 1 - k / root, torch.zeros_like(s))


@dataclasses.dataclass(frozen=True)
class TruncatedLeastSquares(RobustLoss):
    """``ρ = min(s, k²)``, ``ρ' = 1`` for ``s <= k²``, 0 beyond.  GTSAM's ``TruncatedLeastSquares(k)``."""

    def rho(self, s: Tensor) -> Tensor:
        return torch.minimum(s, self._k2(s))

    def weight(self, s: Tensor) -> Tensor:
        return torch.where(s <= self._k2(s), torch.ones_like(s), torch.zeros_like(s))


@dataclasses.dataclass(frozen=True)
class PseudoHuber(RobustLoss):
    """Pseudo-Huber / soft L1: ``ρ = 2k² (√(1 + s/k²) − 1)``, ``ρ' = 1/√(1 + s/k²)``.  Ceres'
    ``SoftLOneLoss(a = k)``; Barron's ``α = 1`` with ``c = k``."""

    def rho(self, s: Tensor) -> Tensor:
        k2 = self._k2(s)
        return 2 * s / (torch.sqrt(1 + s / k2) + 1)  # 2k²(√(1+z) − 1) without the cancellation

    def weight(self, s: Tensor) -> Tensor:
        return torch.rsqrt(1 + s / self._k2(s))


@dataclasses.dataclass(frozen=True)
class Arctan(RobustLoss):
    """``ρ = k² atan(s/k²)``, ``ρ' = 1 / (1 + (s/k²)²)``, bounded by ``πk²/2``.  Ceres'
    ``ArctanLoss(a = k²)``: Ceres' ``a`` is a threshold on ``s``."""

    def rho(self, s: Tensor) -> Tensor:
        k2 = self._k2(s)
        return k2 * torch.atan(s / k2)

    def weight(self, s: Tensor) -> Tensor:
        z = s / self._k2(s)
        return 1 / (1 + z * z)


@dataclasses.dataclass(frozen=True)
class Tolerant(RobustLoss):
    """Ceres' ``TolerantLoss(a, b)``: ``ρ = b log(1 + e^{(s−a)/b}) − b log(1 + e^{−a/b})``,
    ``ρ' = σ((s − a)/b)`` (the logistic function).  ``a = scale >= 0`` and ``b = width > 0`` are on
    ``s`` (Ceres' parametrization): costs are tolerated (weight ≈ 0) below ``s ≈ a``, linear in ``s``
    beyond.  Not least squares near 0: ``ρ'(0) = σ(−a/b)``, not 1.  CLI: ``tolerant:A,B``."""

    width: Tensor | float

    def __post_init__(self) -> None:
        _check_real(type(self).__name__, "scale a", self.scale, positive=False, nonnegative=True)
        _check_real(type(self).__name__, "width b", self.width, positive=True)

    def rho(self, s: Tensor) -> Tensor:
        a, b = _param(self.scale, s), _param(self.width, s)
        t = s / b
        x0 = -a / b
        # Near the origin b log1p(σ(x0) expm1(t)) has no cancellation; far out (t >= 20) the plain
        # difference of softplus values has none either (softplus(x) >> softplus(x0) there).
        near = t < 20
        t_near = torch.where(near, t, torch.zeros_like(t))
        stable = b * torch.log1p(torch.sigmoid(x0) * torch.expm1(t_near))
        zero = torch.zeros_like(t)
        direct = b * (torch.logaddexp(zero, x0 + t) - torch.logaddexp(zero, x0 + zero))
        return torch.where(near, stable, direct)

    def weight(self, s: Tensor) -> Tensor:
        a, b = _param(self.scale, s), _param(self.width, s)
        return torch.sigmoid((s - a) / b)


_BARRON_EPS = 1e-12  # |α − 2| is taken at least this: ∂ρ/∂α is infinite at α = 2 (a δ log|δ| term)


def _exprel(x: Tensor) -> Tensor:
    """``(eˣ − 1)/x``, 1 at 0, with finite gradients everywhere (series for ``|x| < 1e-3``)."""
    small = x.abs() < 1e-3
    xs = torch.where(small, x, torch.zeros_like(x))
    series = 1 + xs * (0.5 + xs * (1 / 6 + xs * (1 / 24 + xs / 120)))
    xl = torch.where(small, torch.ones_like(x), x)
    return torch.where(small, series, torch.expm1(xl) / xl)


@dataclasses.dataclass(frozen=True)
class Barron(RobustLoss):
    """Barron's general adaptive loss (CVPR 2019), shape ``alpha`` and scale ``c = scale``:
    ``ρ = 2c² |α−2|/α ((z/|α−2| + 1)^{α/2} − 1)`` with ``z = s/c²`` (twice ``c²`` Barron's
    ``ρ(x, α, c)`` at ``x = ‖r‖``, so ``ρ ≈ s`` near 0), ``ρ' = (1 + z/|α−2|)^{(α−2)/2}``.

    Limits: ``α = 2`` least squares, ``α = 1`` pseudo-Huber (``k = c``), ``α = 0`` Cauchy
    (``k = √2 c``), ``α = −2`` Geman-McClure (``k = 2c``), ``α → −∞`` Welsch (``k = √2 c``).
    ``alpha`` is a float or a tensor (broadcastable to the blocks) that may require grad: ``ρ`` and
    ``ρ'`` are differentiable in ``s``, ``scale`` and ``alpha``, exactly at ``α = 0`` (a series) and
    finitely at ``α = 2``, where the true ``∂ρ/∂α`` is infinite (``|α − 2|`` is floored at 1e-12
    there).  ``α = −∞`` itself is not accepted.  CLI: ``barron:SCALE,ALPHA``.
    """

    alpha: Tensor | float

    def __post_init__(self) -> None:
        super().__post_init__()
        _check_real(type(self).__name__, "alpha", self.alpha, positive=False)

    def _parts(self, s: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        alpha = _param(self.alpha, s)
        c2 = self._k2(s)
        b = torch.clamp((alpha - 2).abs(), min=_BARRON_EPS)
        return alpha, c2, b, torch.log1p(s / (c2 * b))

    def rho(self, s: Tensor) -> Tensor:
        alpha, c2, b, log_term = self._parts(s)
        # |α−2|/α · expm1(α L / 2) = |α−2| L/2 · exprel(α L / 2): no division by α.
        return c2 * b * log_term * _exprel(alpha * log_term / 2)

    def weight(self, s: Tensor) -> Tensor:
        alpha, _, _, log_term = self._parts(s)
        return torch.exp((alpha - 2) / 2 * log_term)


_LOSSES: dict[str, type[RobustLoss]] = {
    "huber": Huber,
    "cauchy": Cauchy,
    "geman_mcclure": GemanMcClure,
    "tukey": Tukey,
    "fair": Fair,
    "welsch": Welsch,
    "dcs": DCS,
    "dead_zone": L2WithDeadZone,
    "l2_dead_zone": L2WithDeadZone,
    "truncated": TruncatedLeastSquares,
    "pseudo_huber": PseudoHuber,
    "soft_l1": PseudoHuber,
    "arctan": Arctan,
    "tolerant": Tolerant,
    "barron": Barron,
}

# Losses with a second parameter, its field name: their spec is ``name:SCALE,SECOND``.
_SECOND: dict[type[RobustLoss], str] = {Tolerant: "width", Barron: "alpha"}


def robust_spec(loss: RobustLoss | None) -> str:
    """``loss`` as ``parse_robust`` (and ``--robust``) takes it, e.g. ``"cauchy:0.5"`` or ``"barron:1.0,0.5"``;
    ``"none"`` for no loss (JSON records of a run: ``null`` there stands for a NaN); the loss's repr for
    one that ``parse_robust`` cannot name (e.g. a tensor scale or shape)."""
    if loss is None:
        return "none"
    name = next((key for key, kind in _LOSSES.items() if type(loss) is kind), None)
    second = _SECOND.get(type(loss))
    params = [loss.scale] + ([getattr(loss, second)] if second else [])
    if name is None or any(isinstance(p, torch.Tensor) for p in params):
        return repr(loss)
    return f"{name}:" + ",".join(repr(float(p)) for p in params)


def parse_robust(spec: str) -> RobustLoss:
    """Build a loss from ``"name:scale"``, e.g. ``"huber:1.345"`` or ``"Geman-McClure:1"``, or for the
    two-parameter losses ``"tolerant:A,B"`` (Ceres' ``a >= 0``, ``b > 0``) and ``"barron:SCALE,ALPHA"``
    (any finite shape ``α``).

    Args:
        spec: a loss name (any key of ``_LOSSES``: ``huber``, ``cauchy``, ``geman_mcclure`` or
            ``geman-mcclure``, ``tukey``, ``fair``, ``welsch``, ``dcs``, ``dead_zone``, ``truncated``,
            ``pseudo_huber`` / ``soft_l1``, ``arctan``, ``tolerant``, ``barron``; any case), a colon,
            and a positive finite scale (and for ``tolerant`` / ``barron`` a comma and the second one).

    Returns:
        The loss with float parameters.

    Raises:
        ValueError: naming the part of ``spec`` that is missing or wrong.
    """
    name, sep, value = spec.partition(":")
    if not sep:
        raise ValueError(f"robust loss spec {spec!r} has no ':'; expected 'name:scale', e.g. 'huber:1.345'")
    key = name.strip().lower().replace("-", "_")
    if key not in _LOSSES:
        raise ValueError(f"unknown robust loss {name!r} in {spec!r}; expected one of {sorted(_LOSSES)}")
    cls = _LOSSES[key]
    second = _SECOND.get(cls)
    parts = value.split(",")
    if len(parts) != (2 if second else 1):
        expected = f"'{key}:SCALE,{second.upper()}'" if second else f"'{key}:SCALE' (one number)"
        raise ValueError(f"robust loss parameters {value!r} in {spec!r}: expected {expected}")
    numbers_ = []
    for part in parts:
        try:
            numbers_.append(float(part))
        except ValueError:
            raise ValueError(f"robust loss scale {part!r} in {spec!r} is not a number") from None
    scale = numbers_[0]
    low_ok = scale >= 0 if cls is Tolerant else scale > 0
    if not (math.isfinite(scale) and low_ok):
        raise ValueError(f"robust loss scale {parts[0]!r} in {spec!r} must be "
                         f"{'non-negative' if cls is Tolerant else 'positive'} and finite")
    if second:
        other = numbers_[1]
        if not (math.isfinite(other) and (other > 0 or cls is Barron)):
            raise ValueError(f"robust loss {second} {parts[1]!r} in {spec!r} must be "
                             f"{'finite' if cls is Barron else 'positive and finite'}")
        return cls(scale, other)  # type: ignore[call-arg]
    return cls(scale)
