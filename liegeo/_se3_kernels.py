"""Fused CPU kernels (numba) for the groups' optimizer-step retraction, and the primitives they share
with the cost kernels of ``slam`` (which import them from here).

``SE3.retract_step`` runs ``retract`` below (through ``liegeo._kernels.fused_retract``, where the inputs
allow: ``kernel_inputs_ok``): one pass per
pose instead of ~40 small torch operations, the same formulas as ``SE3.retract`` (the series
coefficients and switch points of ``liegeo._math``, copied in as compile-time constants).  Without
numba, or for inputs that autograd or a ``torch.func`` transform must see, the torch path runs.
"""

from __future__ import annotations

import math

import numpy as np
import torch

try:
    import numba
except ImportError:  # the torch path is used instead
    numba = None

from . import _math
from ._kernels import drop_stale_cache

__all__ = ["available", "retract", "warm_up"]

# Series coefficients and switch points of liegeo._math, in float64: tuples, which numba compiles in
# as constants (global arrays would keep the parallel kernels out of its on-disk cache).
_JINV = tuple(_math._JINV.coefficients(torch.float64))
_SINC3 = tuple(_math._SINC3.coefficients(torch.float64))
_COS4 = tuple(_math._COS4.coefficients(torch.float64))
_Q5 = tuple(_math._Q5.coefficients(torch.float64))
_ATAN = tuple(_math._ATAN_OVER_X.coefficients(torch.float64))
_SINC = tuple(_math._SINC.coefficients(torch.float64))
_COS = tuple(_math._COS.coefficients(torch.float64))
_COSC = tuple(_math._COSC.coefficients(torch.float64))
_BENIGN_T = _math._SINC.threshold64
assert _math._COS.threshold64 == _math._COSC.threshold64 == _BENIGN_T
_CANCELLING_T = _math._JINV.threshold64
_ATAN_T = _math._ATAN_OVER_X.threshold64
assert _math._SINC3.threshold64 == _math._COS4.threshold64 == _math._Q5.threshold64 == _CANCELLING_T
CONSTANTS = (_JINV, _SINC3, _COS4, _Q5, _ATAN, _SINC, _COS, _COSC, _BENIGN_T, _CANCELLING_T, _ATAN_T)
"""Everything from ``liegeo._math`` compiled into these kernels and those that import them."""
drop_stale_cache(__file__, CONSTANTS)



def available() -> bool:
    return numba is not None


def warm_up() -> None:
    """Load (or, the first time on a machine, compile and cache) the kernels of this module."""
    if numba is not None:
        x = np.zeros((1, 7))
        x[0, 6] = 1.0
        retract(x, np.zeros((1, 6)), np.zeros((1, 7)))


if numba is not None:
    _jit = numba.njit(cache=True, nogil=True, error_model="numpy", fastmath={"contract"})
    _inline = numba.njit(cache=True, nogil=True, error_model="numpy", fastmath={"contract"}, inline="always")

    @_inline
    def _horner(t, c):
        out = c[len(c) - 1]
        for k in range(len(c) - 2, -1, -1):
            out = out * t + c[k]
        return out

    @_inline
    def _coefficients(t):
        """``jinv, sinc3, cos4, q5`` of ``t = θ²`` (see ``liegeo._math``)."""
        if t < _CANCELLING_T:
            return _series_coefficients(t)
        theta = math.sqrt(t)
        half = 0.5 * theta
        return _closed_coefficients(t, theta, math.sin(theta), math.cos(theta), half * math.cos(half) / math.sin(half))

    @_inline
    def _series_coefficients(t):
        """``_coefficients`` below the switch point, generic in the scalar type (``slam._se3_kernels`` runs
        it on complex steps)."""
        return _horner(t, _JINV), _horner(t, _SINC3), _horner(t, _COS4), _horner(t, _Q5)

    @_inline
    def _closed_coefficients(t, theta, s, c, half_cot):
        """``_coefficients`` from ``θ``, ``sin θ``, ``cos θ`` and ``(θ/2) cot(θ/2)``, generic in the scalar type."""
        return (1.0 - half_cot) / t, (theta - s) / (t * theta), (c - 1.0 + 0.5 * t) / (t * t), \
            (2.0 * theta - 3.0 * s + theta * c) / (2.0 * t * t * theta)

    @_inline
    def _multiply(ax, ay, az, aw, bx, by, bz, bw):
        return (aw * bx + ax * bw + ay * bz - az * by,
                aw * by - ax * bz + ay * bw + az * bx,
                aw * bz + ax * by - ay * bx + az * bw,
                aw * bw - ax * bx - ay * by - az * bz)

    @_jit
    def retract(x, delta, out):
        """``out = x · Exp(δ)`` for ``x, out: (M, 7)`` and ``delta: (M, 6)`` (``SE3.retract``)."""
        for k in range(x.shape[0]):
            v0, v1, v2 = delta[k, 0], delta[k, 1], delta[k, 2]
            w0, w1, w2 = delta[k, 3], delta[k, 4], delta[k, 5]
            t = w0 * w0 + w1 * w1 + w2 * w2
            quarter = 0.25 * t
            if quarter < _BENIGN_T:
                half_sinc, cos_half = 0.5 * _horner(quarter, _SINC), _horner(quarter, _COS)
            else:
                half = math.sqrt(quarter)
                half_sinc, cos_half = 0.5 * math.sin(half) / half, math.cos(half)
            if t < _BENIGN_T:
                cosc = _horner(t, _COSC)
            else:
                sin_half = math.sin(0.5 * math.sqrt(t))
                cosc = 2.0 * sin_half * sin_half / t
            sinc3 = _coefficients(t)[1]
            # Exp(δ): translation J_l(ω) v = v + cosc ω×v + sinc3 ω×(ω×v), rotation (half_sinc ω, cos_half)
            c0, c1, c2 = w1 * v2 - w2 * v1, w2 * v0 - w0 * v2, w0 * v1 - w1 * v0
            s0 = v0 + cosc * c0 + sinc3 * (w1 * c2 - w2 * c1)
            s1 = v1 + cosc * c1 + sinc3 * (w2 * c0 - w0 * c2)
            s2 = v2 + cosc * c2 + sinc3 * (w0 * c1 - w1 * c0)
            qx, qy, qz, qw = x[k, 3], x[k, 4], x[k, 5], x[k, 6]
            # R_x s = s + 2w u + 2 q_v × u with u = q_v × s
            u0, u1, u2 = qy * s2 - qz * s1, qz * s0 - qx * s2, qx * s1 - qy * s0
            out[k, 0] = x[k, 0] + s0 + 2.0 * (qw * u0 + qy * u2 - qz * u1)
            out[k, 1] = x[k, 1] + s1 + 2.0 * (qw * u1 + qz * u0 - qx * u2)
            out[k, 2] = x[k, 2] + s2 + 2.0 * (qw * u2 + qx * u1 - qy * u0)
            out[k, 3], out[k, 4], out[k, 5], out[k, 6] = _multiply(
                qx, qy, qz, qw, half_sinc * w0, half_sinc * w1, half_sinc * w2, cos_half)
