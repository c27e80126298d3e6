"""The fused CPU kernel (numba) of SE(2)'s optimizer-step retraction.

``SE2.retract_step`` runs ``retract`` below (through ``liegeo._kernels.fused_retract``, where the inputs
allow: ``kernel_inputs_ok``): one pass per pose instead of ~25 small torch operations (a quarter of a
60-pose graph's LM iteration), the same formulas as ``SE2.retract`` (the series coefficients and switch point of ``liegeo._math``, shared with
``liegeo._se3_kernels``).  Without numba, or for inputs that autograd or a ``torch.func`` transform must
see, the torch path runs.
"""

from __future__ import annotations

import math

import numpy as np

from ._se3_kernels import _BENIGN_T, _COSC, _SINC, numba

__all__ = ["retract", "warm_up"]


def warm_up() -> None:
    """Load (or, the first time on a machine, compile and cache) the kernel."""
    if numba is not None:
        x = np.zeros((1, 4))
        x[0, 2] = 1.0
        retract(x, np.zeros((1, 3)), np.zeros((1, 4)))


if numba is not None:
    from ._se3_kernels import _horner

    @numba.njit(cache=True, nogil=True, error_model="numpy", fastmath={"contract"})
    def retract(x, delta, out):  # type: ignore[no-untyped-def]
        """``out = x · Exp(δ)`` for ``x, out: (M, 4)`` and ``delta: (M, 3)`` (``SE2.retract``)."""
        for k in range(x.shape[0]):
            v0, v1, theta = delta[k, 0], delta[k, 1], delta[k, 2]
            t = theta * theta
            if t < _BENIGN_T:
                a, b = _horner(t, _SINC), theta * _horner(t, _COSC)
            else:
                root = math.sqrt(t)
                sin_half = math.sin(0.5 * root)
                a, b = math.sin(root) / root, theta * (2.0 * sin_half * sin_half / t)
            # Exp(δ) = (V(θ) v, θ) with V = [[a, -b], [b, a]]; then x · Exp(δ)
            s0, s1 = a * v0 - b * v1, b * v0 + a * v1
            c, s = x[k, 2], x[k, 3]
            cos_t, sin_t = math.cos(theta), math.sin(theta)
            out[k, 0] = x[k, 0] + (c * s0 - s * s1)
            out[k, 1] = x[k, 1] + (s * s0 + c * s1)
            out[k, 2] = c * cos_t - s * sin_t
            out[k, 3] = s * cos_t + c * sin_t
