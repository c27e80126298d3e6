"""Numerically safe building blocks shared by the groups.

Every coefficient here is a function of ``t = θ²`` with a removable singularity
at ``θ = 0``.  Below a threshold it is evaluated from its Taylor series
(Horner's rule), above it from the closed form at a masked, safe argument.
Where the elements straddle the threshold both branches are computed and merged
by ``select``, so autograd never sees ``0/0``; on the CPU, where every element
takes one branch (the common case: a pose graph's errors are all small), only
that one runs, and the series only to the terms its largest ``t`` needs
(``_terms``), with the same values and gradients to the dtype's precision.
Inside ``torch.func`` transforms, tracing, compilation and on other devices the
merge always runs (no data-dependent branch).

Two kinds of coefficient need different thresholds:

* *benign* ones (``sinc``, ``cosc``, ``cos_sqrt``, ``atan(x)/x``) have accurate
  closed forms everywhere except the point ``θ = 0`` itself; a narrow series
  region keeps their autograd gradients (which do cancel, as ``eps/θ²``)
  accurate.
* *cancelling* ones (``sinc3``, ``cos4``, ``q5``, ``jinv``) lose ``~1/θ²``..``1/θ⁴``
  relative digits in closed form, so the series runs up to ``θ = 3`` in every
  dtype.  At ``θ = 1`` the float64 closed forms are still 3-80 ulps off (``q5``
  worst), at ``θ = 2.5`` up to 3; from ``θ = 3`` on they are within 2.  The series
  are within an ulp up to π (no cancellation); ``jinv``'s (Bernoulli numbers,
  radius ``2π``) converges slowest: 28 terms at the float64 switch.

The number of terms is whatever reaches the dtype's precision at the threshold.
Accuracy on both sides of every switch is checked against 100-digit references
in the tests.
"""

from __future__ import annotations

import dataclasses
import functools
import math
from fractions import Fraction
from typing import Callable

import numpy as np
import torch
from torch import Tensor

@functools.cache
def _bernoulli(m: int) -> Fraction:
    """Bernoulli number ``B_m`` (``B_1 = -1/2``), exactly, by the standard recurrence."""
    if m == 0:
        return Fraction(1)
    return -sum(math.comb(m + 1, k) * _bernoulli(k) for k in range(m)) / (m + 1)


_PRECISION = {torch.float64: 1e-17, torch.float32: 3e-9}
"""Relative size of the first neglected series term, per dtype (others use float32's)."""


@dataclasses.dataclass(frozen=True)
class _Series:
    """A power series ``Σ c_k t^k`` used where ``t < threshold[dtype]``."""

    kth: Callable[[int], float]
    threshold64: float
    threshold32: float

    def threshold(self, dtype: torch.dtype) -> float:
        return self.threshold64 if dtype == torch.float64 else self.threshold32

    def coefficients(self, dtype: torch.dtype) -> list[float]:
        return _coefficient_table(self, dtype)


_TABLES: dict[tuple[_Series, torch.dtype], list[float]] = {}


def _coefficient_table(series: _Series, dtype: torch.dtype) -> list[float]:
    key = (series, dtype)  # the object itself, not id(): an id is reused once its object is freed
    if key not in _TABLES:
        target = _PRECISION.get(dtype, _PRECISION[torch.float32]) * abs(series.kth(0))
        t, coefficients = series.threshold(dtype), [series.kth(0)]
        while abs(coefficients[-1]) * t ** (len(coefficients) - 1) > target:
            coefficients.append(series.kth(len(coefficients)))
        _TABLES[key] = coefficients
    return _TABLES[key]


def _horner(t: Tensor, coefficients: list[float]) -> Tensor:
    out = torch.full_like(t, coefficients[-1])
    for c in reversed(coefficients[:-1]):
        # c + out · t in one pass (``out * t + c`` takes two and a temporary): ~1.6x faster
        out = torch.addcmul(out.new_full((), c), out, t)
    return out


def select(mask: Tensor, if_true: Tensor, if_false: Tensor) -> Tensor:
    """``torch.where(mask, if_true, if_false)`` for finite inputs, as an exact ``lerp``.

    ``lerp`` returns its end points exactly at weights 0 and 1, gives the
    unselected branch an exactly zero gradient, and on the CPU runs ~15x faster
    than ``torch.where`` (which is not vectorized there).  Both inputs must be
    finite: ``0 · inf`` would leak through.
    """
    return torch.lerp(if_false, if_true, mask.to(if_false.dtype))


def _terms(series: _Series, dtype: torch.dtype, t_max: float) -> list[float]:
    """The leading coefficients of ``series`` that reach the dtype's precision for every ``t <= t_max``,
    in the value and its first two derivatives in t (what a double backward uses): the first term
    left out has ``|c_k| t_max^(k-2)`` below the precision times ``|c_0|``.  Cached per binary exponent
    of ``t_max`` (the test uses that bucket's upper end)."""
    exponent = math.frexp(t_max)[1] if t_max > 0.0 else -1074
    key = (series, dtype, exponent)
    if key not in _TERMS:
        full = series.coefficients(dtype)
        bound, target = math.ldexp(1.0, exponent), _PRECISION.get(dtype, _PRECISION[torch.float32]) * abs(full[0])
        count = 3
        while count < len(full) and abs(full[count]) * bound ** (count - 2) > target:
            count += 1
        _TERMS[key] = full[:count]
    return _TERMS[key]


_TERMS: dict[tuple[_Series, torch.dtype, int], list[float]] = {}


def _branches_on_data(t: Tensor) -> bool:
    """Whether a coefficient may look at ``t``'s values to skip the branch no element takes: on the CPU
    (where a look costs a few µs and every skipped tensor op more), outside ``torch.func`` transforms,
    tracing and compilation (which need one graph for all values)."""
    return (t.device.type == "cpu" and not torch._C._functorch.is_functorch_wrapped_tensor(t)
            and not torch.jit.is_tracing() and not torch.compiler.is_compiling())


def _series_or_exact(t: Tensor, series: _Series, exact: Callable[[Tensor], Tensor]) -> Tensor:
    threshold = series.threshold(t.dtype)
    if t.numel() and _branches_on_data(t):
        # Where every element takes one branch, only that one runs (the merge below gives the same
        # values and gradients): the exact form alone, or the series to as many terms as the largest t
        # needs (28 for jinv at the switch, 4 at θ = 1e-3).  A NaN takes the merge.
        detached = t.detach()
        t_max, t_min = float(detached.max()), float(detached.min())
        if t_max < threshold:
            return _horner(t, _terms(series, t.dtype, t_max))
        if t_min >= threshold:
            return exact(t)
    small = t < threshold
    safe_t = select(small, torch.full_like(t, 16.0), t)  # 16 > every threshold, < (2π)²
    # The unselected series must stay finite too (lerp: 0 · inf = nan): at θ ~ 1e40 the polynomial
    # in θ² overflows, so it is evaluated at most at 16.
    return select(small, _horner(t.clamp(max=16.0), series.coefficients(t.dtype)), exact(safe_t))


_BENIGN = dict(threshold64=0.1, threshold32=0.1)
_CANCELLING = dict(threshold64=9.0, threshold32=9.0)
_COS = _Series(lambda k: (-1) ** k / math.factorial(2 * k), **_BENIGN)
_SINC = _Series(lambda k: (-1) ** k / math.factorial(2 * k + 1), **_BENIGN)
_COSC = _Series(lambda k: (-1) ** k / math.factorial(2 * k + 2), **_BENIGN)
_SINC3 = _Series(lambda k: (-1) ** k / math.factorial(2 * k + 3), **_CANCELLING)
_COS4 = _Series(lambda k: (-1) ** k / math.factorial(2 * k + 4), **_CANCELLING)
_Q5 = _Series(lambda k: (-1) ** k * (k + 1) / math.factorial(2 * k + 5), **_CANCELLING)
_JINV = _Series(lambda k: float((-1) ** k * _bernoulli(2 * k + 2) / math.factorial(2 * k + 2)), **_CANCELLING)
_ATAN_OVER_X = _Series(lambda k: (-1) ** k / (2 * k + 1), threshold64=1e-3, threshold32=1e-2)


def cos_sqrt(t: Tensor) -> Tensor:
    """``cos θ`` as a function of ``t = θ²`` (``torch.cos(t.sqrt())`` has no finite gradient at 0)."""
    return _series_or_exact(t, _COS, lambda s: torch.cos(s.sqrt()))


def sinc(t: Tensor) -> Tensor:
    """``sin θ / θ`` as a function of ``t = θ²``."""
    return _series_or_exact(t, _SINC, lambda s: torch.sin(s.sqrt()) / s.sqrt())


def cosc(t: Tensor) -> Tensor:
    """``(1 - cos θ) / θ²`` as a function of ``t = θ²``."""
    # 2 sin²(θ/2) / θ² has no cancellation, unlike 1 - cos θ.
    return _series_or_exact(t, _COSC, lambda s: 2.0 * torch.sin(0.5 * s.sqrt()) ** 2 / s)


def sinc3(t: Tensor) -> Tensor:
    """``(θ - sin θ) / θ³`` as a function of ``t = θ²``."""

    def exact(s: Tensor) -> Tensor:
        theta = s.sqrt()
        return (theta - torch.sin(theta)) / (s * theta)

    return _series_or_exact(t, _SINC3, exact)


def cos4(t: Tensor) -> Tensor:
    """``(cos θ - 1 + θ²/2) / θ⁴`` as a function of ``t = θ²``."""
    return _series_or_exact(t, _COS4, lambda s: (torch.cos(s.sqrt()) - 1.0 + 0.5 * s) / (s * s))


def q5(t: Tensor) -> Tensor:
    """``(2θ - 3 sin θ + θ cos θ) / (2θ⁵)`` as a function of ``t = θ²``."""

    def exact(s: Tensor) -> Tensor:
        theta = s.sqrt()
        return (2.0 * theta - 3.0 * torch.sin(theta) + theta * torch.cos(theta)) / (2.0 * s * s * theta)

    return _series_or_exact(t, _Q5, exact)


def jinv(t: Tensor) -> Tensor:
    """``(1 - (θ/2) cot(θ/2)) / θ²`` as a function of ``t = θ²`` (valid for ``θ < 2π``)."""

    def exact(s: Tensor) -> Tensor:
        half = 0.5 * s.sqrt()
        return (1.0 - half * torch.cos(half) / torch.sin(half)) / s

    return _series_or_exact(t, _JINV, exact)


def atan2_sqrt_over_sqrt(y2: Tensor, x: Tensor) -> Tensor:
    """``atan2(√y2, x) / √y2`` for ``x >= 0``: finite, with finite gradients, at ``y2 = 0``."""
    small = y2 < _ATAN_OVER_X.threshold(y2.dtype) * x * x
    safe_x = select(small, x, torch.ones_like(x))
    series = _horner(y2 / (safe_x * safe_x), _ATAN_OVER_X.coefficients(y2.dtype)) / safe_x
    y = select(small, torch.ones_like(y2), y2).sqrt()
    return select(small, series, torch.atan2(y, x) / y)


def half_cot_half(t: Tensor) -> Tensor:
    """``(θ/2) cot(θ/2)`` as a function of ``t = θ²``: ``1 - t · jinv(t)``; zero at ``θ = π``."""
    return 1.0 - t * jinv(t)


def skew(v: Tensor) -> Tensor:
    """``[v]×``, the 3 x 3 cross-product matrix: ``(*batch, 3) -> (*batch, 3, 3)``."""
    x, y, z = v.unbind(-1)
    zero = torch.zeros_like(x)
    return torch.stack([zero, -z, y, z, zero, -x, -y, x, zero], dim=-1).unflatten(-1, (3, 3))


def broadcast_shapes(*shapes: tuple[int, ...] | torch.Size) -> torch.Size:
    """``torch.broadcast_shapes`` without its first-call cost: torch 2.13's imports sympy (~1 s, once per
    process) through ``torch._refs``; numpy's rule is the same."""
    return torch.Size(np.broadcast_shapes(*(tuple(s) for s in shapes)))


def eye(n: int, batch_shape: torch.Size | tuple[int, ...], like: Tensor) -> Tensor:
    """An ``n x n`` identity expanded (not copied) to ``(*batch_shape, n, n)``."""
    return torch.eye(n, dtype=like.dtype, device=like.device).expand(*batch_shape, n, n)


def cross(a: Tensor, b: Tensor) -> Tensor:
    """``a × b`` over the last axis, batch axes broadcast (``torch.linalg.cross`` needs equal ranks)."""
    if a.ndim != b.ndim:
        rank = max(a.ndim, b.ndim)
        a = a.reshape((1,) * (rank - a.ndim) + a.shape)
        b = b.reshape((1,) * (rank - b.ndim) + b.shape)
    return torch.linalg.cross(a, b, dim=-1)


def dot(a: Tensor, b: Tensor) -> Tensor:
    """``a · b`` over the last axis, kept: ``(*batch, n) -> (*batch, 1)``.

    A batched ``1 x n @ n x 1`` product: for batches beyond a few thousand it is
    ~1.5x faster on the CPU than a reduction over a short last axis."""
    return (a.unsqueeze(-2) @ b.unsqueeze(-1)).squeeze(-1)


def squared_norm(v: Tensor) -> Tensor:
    """``Σ v²`` over the last axis: ``(*batch, n) -> (*batch,)``."""
    return dot(v, v).squeeze(-1)
