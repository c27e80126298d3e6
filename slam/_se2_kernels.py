"""Fused CPU kernels (numba) for the SE(2) between cost with its normal-equation blocks: the planar
counterpart of ``_se3_kernels``.

The torch path of ``Between`` (``pose_graph._between_jacobians`` on ``liegeo.SE2``) runs ~100 small
tensor operations per linearization.  This kernel computes, per edge and in one pass, the same
quantities from the same formulas (``liegeo.se2``, ``liegeo.so2``; the series coefficients and switch
points of ``liegeo._math``), storage ``(x, y, cos θ, sin θ)``, tangent ``(vx, vy, θ)``:

    D = X_i⁻¹ X_j,  r = Log(Z⁻¹ D),  J_j = J_r⁻¹(r),  J_i = -J_r⁻¹(r) Ad(D⁻¹),
    r_w = s L r,  J_w = s L [J_i | J_j],  h = J_wᵀ J_w,  g = J_wᵀ r_w

with ``L`` the sqrt-information matrix (any 3 x 3) and ``s`` a per-edge scale (ones: the problem
applies robust losses to the blocks).  It runs only where nothing needs autograd, on CPU float64
tensors; ``tests/test_fused_kernels.py`` checks it against the torch path, including near-identity
and near-π relative rotations.
"""

from __future__ import annotations

import math

import numpy as np

try:
    import numba
except ImportError:  # the torch path is used instead
    numba = None

from liegeo._se3_kernels import _BENIGN_T, _CANCELLING_T, _COSC, _JINV, _SINC3, available
from liegeo._kernels import drop_stale_cache
from liegeo._se3_kernels import CONSTANTS

drop_stale_cache(__file__, CONSTANTS)  # numba's cache does not see them change

if numba is not None:
    from liegeo._se3_kernels import _horner

__all__ = ["available", "normal_blocks", "residuals", "warm_up"]


def warm_up() -> None:
    """Load (or, the first time on a machine, compile and cache) both kernels and SE2.retract_step's."""
    if numba is None:
        return
    x = np.zeros((1, 1, 4))
    x[..., 2] = 1.0
    eye = np.eye(3)[None, None].copy()
    residuals(x, x, x, eye, np.zeros((1, 1, 3)))
    normal_blocks(x, x, x, eye, np.ones((1, 1)), np.zeros((1, 1, 3)), np.zeros((1, 1, 3, 6)), np.zeros((1, 1, 21)),
                  np.zeros((1, 1, 6)))
    from liegeo import _se2_kernels as _group_kernels

    _group_kernels.warm_up()  # SE2.retract_step


if numba is not None:
    _jit = numba.njit(cache=True, nogil=True, error_model="numpy", fastmath={"contract"})

    @_jit
    def _jinv(t):
        """``(1 - (θ/2) cot(θ/2)) / θ²`` of ``t = θ²`` (``_math.jinv``)."""
        if t < _CANCELLING_T:
            return _horner(t, _JINV)
        half = 0.5 * math.sqrt(t)
        return (1.0 - half * math.cos(half) / math.sin(half)) / t

    @_jit
    def _sinc3(t):
        """``(θ - sin θ) / θ³`` of ``t = θ²`` (``_math.sinc3``)."""
        if t < _CANCELLING_T:
            return _horner(t, _SINC3)
        theta = math.sqrt(t)
        return (theta - math.sin(theta)) / (t * theta)

    @_jit
    def _cosc(t):
        """``(1 - cos θ) / θ²`` of ``t = θ²`` (``_math.cosc``)."""
        if t < _BENIGN_T:
            return _horner(t, _COSC)
        s = math.sin(0.5 * math.sqrt(t))
        return 2.0 * s * s / t

    @_jit
    def _relative(xi, xj, z):
        """``D = X_i⁻¹ X_j`` and ``E = Z⁻¹ D`` as ``(x, y, c, s)`` each, in the torch path's order of
        operations (``SEBase._inverse``, ``_compose``)."""
        ci, si = xi[2], xi[3]
        dx = (ci * xj[0] + si * xj[1]) - (ci * xi[0] + si * xi[1])
        dy = (ci * xj[1] - si * xj[0]) - (ci * xi[1] - si * xi[0])
        dc = ci * xj[2] + si * xj[3]
        ds = ci * xj[3] - si * xj[2]
        cz, sz = z[2], z[3]
        ex = (cz * dx + sz * dy) - (cz * z[0] + sz * z[1])
        ey = (cz * dy - sz * dx) - (cz * z[1] - sz * z[0])
        ec = cz * dc + sz * ds
        es = cz * ds - sz * dc
        return dx, dy, dc, ds, ex, ey, ec, es

    @_jit
    def _log(ex, ey, ec, es):
        """``Log(E) = (α x + θ/2 y, α y - θ/2 x, θ)`` with ``α = 1 - θ² jinv(θ²)``; also ``θ²``, ``α``."""
        theta = math.atan2(es, ec)
        t = theta * theta
        alpha = 1.0 - t * _jinv(t)
        half = 0.5 * theta
        return alpha * ex + half * ey, alpha * ey - half * ex, theta, t, alpha

    @_jit
    def _edge(xi, xj, z, r, jac):
        """Residual ``r (3,)`` and unwhitened Jacobian ``jac (3, 6)`` of one edge."""
        dx, dy, dc, ds, ex, ey, ec, es = _relative(xi, xj, z)
        r1, r2, theta, t, alpha = _log(ex, ey, ec, es)
        r[0], r[1], r[2] = r1, r2, theta
        # J_r⁻¹(r) = [[α, -θ/2, -(α m1 - θ/2 m2)], [θ/2, α, -(θ/2 m1 + α m2)], [0, 0, 1]]
        half = 0.5 * theta
        d, c = _cosc(t), theta * _sinc3(t)
        m1, m2 = r1 * c - r2 * d, r1 * d + r2 * c
        a02 = -(alpha * m1 - half * m2)
        a12 = -(half * m1 + alpha * m2)
        # Ad(D⁻¹) = [[c', -s', y'], [s', c', -x'], [0, 0, 1]] with D⁻¹ = (x', y', c', s') = (-(Rᵀt), cos, -sin)
        px = -(dc * dx + ds * dy)
        py = -(dc * dy - ds * dx)
        # J_i = -J_r⁻¹ Ad(D⁻¹), Ad(D⁻¹) = [[cos, sin, y'], [-sin, cos, -x'], [0, 0, 1]] (cos, sin of D)
        jac[0, 0] = -(alpha * dc + half * ds)
        jac[0, 1] = -(alpha * ds - half * dc)
        jac[0, 2] = -(alpha * py + half * px + a02)
        jac[1, 0] = -(half * dc - alpha * ds)
        jac[1, 1] = -(half * ds + alpha * dc)
        jac[1, 2] = -(half * py - alpha * px + a12)
        jac[2, 0] = 0.0
        jac[2, 1] = 0.0
        jac[2, 2] = -1.0
        # J_j = J_r⁻¹
        jac[0, 3], jac[0, 4], jac[0, 5] = alpha, -half, a02
        jac[1, 3], jac[1, 4], jac[1, 5] = half, alpha, a12
        jac[2, 3], jac[2, 4], jac[2, 5] = 0.0, 0.0, 1.0

    @_jit
    def residuals(xi, xj, z, sqrt_info, out):
        """Whitened residuals: ``xi, xj: (B, E, 4)``, ``z: (Bz, E, 4)``, ``sqrt_info: (Bl, E, 3, 3)``
        (``Bz``, ``Bl`` 1 or B), ``out: (B, E, 3)``."""
        batch, edges = xi.shape[0], xi.shape[1]
        for index in range(batch * edges):
            b, e = index // edges, index % edges
            bz, bl = min(b, z.shape[0] - 1), min(b, sqrt_info.shape[0] - 1)
            ex, ey, ec, es = _relative(xi[b, e], xj[b, e], z[bz, e])[4:]
            r0, r1, r2 = _log(ex, ey, ec, es)[:3]
            m = sqrt_info[bl, e]
            for p in range(3):
                out[b, e, p] = m[p, 0] * r0 + m[p, 1] * r1 + m[p, 2] * r2

    @_jit
    def normal_blocks(xi, xj, z, sqrt_info, scale, rw_out, jw_out, h_out, g_out):
        """Per edge: whitened (and scaled) residual ``rw_out (B, E, 3)``, Jacobian ``jw_out (B, E, 3, 6)``,
        the lower triangle of ``J_wᵀ J_w`` packed row by row (``torch.tril_indices`` order) in
        ``h_out (B, E, 21)`` and ``g_out = J_wᵀ r_w (B, E, 6)``.  ``scale: (Bs, E)`` (``Bs`` 1 or B)
        multiplies residual and Jacobian (robust reweighting; ones otherwise)."""
        batch, edges = xi.shape[0], xi.shape[1]
        # Serial, as the SE(3) kernel (numba's threads and torch's contend for the cores).
        r, jac = np.empty(3), np.empty((3, 6))
        for index in range(batch * edges):
            b, e = index // edges, index % edges
            bz, bl, bs = min(b, z.shape[0] - 1), min(b, sqrt_info.shape[0] - 1), min(b, scale.shape[0] - 1)
            _edge(xi[b, e], xj[b, e], z[bz, e], r, jac)
            m, s = sqrt_info[bl, e], scale[bs, e]
            rw, jw, h, g = rw_out[b, e], jw_out[b, e], h_out[b, e], g_out[b, e]
            for p in range(3):
                rw[p] = s * (m[p, 0] * r[0] + m[p, 1] * r[1] + m[p, 2] * r[2])
                for c in range(6):
                    jw[p, c] = s * (m[p, 0] * jac[0, c] + m[p, 1] * jac[1, c] + m[p, 2] * jac[2, c])
            k = 0
            for p in range(6):
                g[p] = jw[0, p] * rw[0] + jw[1, p] * rw[1] + jw[2, p] * rw[2]
                for q in range(p + 1):
                    h[k] = jw[0, p] * jw[0, q] + jw[1, p] * jw[1, q] + jw[2, p] * jw[2, q]
                    k += 1
