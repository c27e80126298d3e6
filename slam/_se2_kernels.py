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

import cmath
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

    from ._assembly_kernel import add_blocks

__all__ = ["accumulate_normal", "available", "directional_inputs", "normal_blocks", "residuals", "warm_up"]


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
    accumulate_normal(x, x, x, eye, np.zeros(21, dtype=np.int64), np.zeros(6, dtype=np.int64), np.zeros((1, 1, 3)),
                      np.zeros((1, 1)), np.zeros((1, 1)))
    exact_blocks(x, x, x, eye, np.zeros((1, 1, 3)), np.zeros((1, 1, 21)), np.zeros((1, 1, 6)))  # implicit backward
    directional_inputs(x, x, np.zeros((1, 1, 6)), np.zeros((1, 1, 4)), np.zeros((1, 1, 4)))
    from liegeo import _se2_kernels as _group_kernels

    _group_kernels.warm_up()  # SE2.retract_step


if numba is not None:
    _jit = numba.njit(cache=True, nogil=True, error_model="numpy", fastmath={"contract"})
    _inline = numba.njit(cache=True, nogil=True, error_model="numpy", fastmath={"contract"}, inline="always")

    @_inline
    def _jinv(t):
        """``(1 - (θ/2) cot(θ/2)) / θ²`` of ``t = θ²`` (``_math.jinv``)."""
        if t < _CANCELLING_T:
            return _horner(t, _JINV)
        half = 0.5 * math.sqrt(t)
        return (1.0 - half * math.cos(half) / math.sin(half)) / t

    @_inline
    def _sinc3(t):
        """``(θ - sin θ) / θ³`` of ``t = θ²`` (``_math.sinc3``)."""
        if t < _CANCELLING_T:
            return _horner(t, _SINC3)
        theta = math.sqrt(t)
        return (theta - math.sin(theta)) / (t * theta)

    @_inline
    def _cosc(t):
        """``(1 - cos θ) / θ²`` of ``t = θ²`` (``_math.cosc``)."""
        if t < _BENIGN_T:
            return _horner(t, _COSC)
        s = math.sin(0.5 * math.sqrt(t))
        return 2.0 * s * s / t

    @_inline
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

    @_inline
    def _log(ex, ey, ec, es):
        """``Log(E) = (α x + θ/2 y, α y - θ/2 x, θ)`` with ``α = 1 - θ² jinv(θ²)``; also ``θ²``, ``α``."""
        theta = math.atan2(es, ec)
        t = theta * theta
        alpha = 1.0 - t * _jinv(t)
        half = 0.5 * theta
        return alpha * ex + half * ey, alpha * ey - half * ex, theta, t, alpha

    @_inline
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
            _edge_normal(xi[b, e], xj[b, e], z[bz, e], sqrt_info[bl, e], scale[bs, e], r, jac, rw_out[b, e],
                         jw_out[b, e], h_out[b, e], g_out[b, e])

    @_jit
    def accumulate_normal(xi, xj, z, sqrt_info, slots, gradient_slots, rw_out, h_out, g_out):
        """``normal_blocks`` (scale 1) with each edge's blocks added straight into the assembled ``h_out (B,
        nnz + 1)`` at ``slots (E·21,)`` and ``g_out (B, n + 1)`` at ``gradient_slots (E·6,)`` (the problem's
        ``CostLayout``; ``Cost.accumulate_normal``), the whitened residual in ``rw_out (B, E, 3)``."""
        batch, edges = xi.shape[0], xi.shape[1]
        r, jac, jw, h, g = np.empty(3), np.empty((3, 6)), np.empty((3, 6)), np.empty(21), np.empty(6)
        for index in range(batch * edges):
            b, e = index // edges, index % edges
            bz, bl = min(b, z.shape[0] - 1), min(b, sqrt_info.shape[0] - 1)
            _edge_normal(xi[b, e], xj[b, e], z[bz, e], sqrt_info[bl, e], 1.0, r, jac, rw_out[b, e], jw, h, g)
            add_blocks(h_out[b], g_out[b], slots, gradient_slots, h, g, e)

    @_inline
    def _edge_normal(xi, xj, z, m, s, r, jac, rw, jw, h, g):
        """One edge's ``r_w = s L r``, ``J_w = s L [J_i | J_j]``, packed lower ``J_wᵀ J_w`` (21) and ``J_wᵀ r_w``
        (``m = L``; ``r``, ``jac`` scratch)."""
        _edge(xi, xj, z, r, jac)
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

    @_inline
    def _coefficients_complex(t):
        """``jinv, sinc3, cosc`` of a complex ``t = θ²`` (the real kernels' series and switch points, on
        ``t.real``): analytic in ``t``, for the complex steps of ``exact_blocks``."""
        if t.real < _CANCELLING_T:
            jinv, sinc3 = _horner(t, _JINV), _horner(t, _SINC3)
        else:
            theta = cmath.sqrt(t)
            half = 0.5 * theta
            jinv = (1.0 - half * cmath.cos(half) / cmath.sin(half)) / t
            sinc3 = (theta - cmath.sin(theta)) / (t * theta)
        if t.real < _BENIGN_T:
            cosc = _horner(t, _COSC)
        else:
            s = cmath.sin(0.5 * cmath.sqrt(t))
            cosc = 2.0 * s * s / t
        return jinv, sinc3, cosc

    @_inline
    def _lambda_jr_inv(r0, r1, theta, t, jinv, sinc3, cosc, lam0, lam1, lam2):
        """``J_r⁻¹(r)ᵀ λ`` (``_edge``'s ``J_r⁻¹``), generic in the scalar type."""
        alpha = 1.0 - t * jinv
        half = 0.5 * theta
        c = theta * sinc3
        m1, m2 = r0 * c - r1 * cosc, r0 * cosc + r1 * c
        a02 = -(alpha * m1 - half * m2)
        a12 = -(half * m1 + alpha * m2)
        return alpha * lam0 + half * lam1, alpha * lam1 - half * lam0, a02 * lam0 + a12 * lam1 + lam2

    @_jit
    def exact_blocks(xi, xj, z, sqrt_info, rw_out, h_out, g_out):
        """Per edge, ``normal_blocks``' outputs (scale 1) with the exact Hessian of ``½‖r_w‖²`` in ``h_out``:
        ``J_wᵀ J_w + Σ_k μ_k ∇²(L r)_k`` with ``μ = r_w``, packed the same way.  The second-order part as in
        ``slam._se3_kernels.exact_blocks`` (``H_jj = N``, ``H_ij = Pᵀ (N + C)``, ``H_ii = Pᵀ N P`` with
        ``P = -Ad(D⁻¹)``, ``C[p, q] = ½ μ'ᵀ [e_p, e_q]``, ``N = C + DG A``, ``G(φ) = J_r⁻¹(φ)ᵀ λ`` by complex
        steps); SE(2)'s bracket is ``[(v₁, θ₁), (v₂, θ₂)] = (θ₁ J v₂ - θ₂ J v₁, 0)``, ``J = [[0, -1], [1, 0]]``."""
        batch, edges = xi.shape[0], xi.shape[1]
        r, jac, jw = np.empty(3), np.empty((3, 6)), np.empty((3, 6))
        big_n, c_mat, p_mat, tmp, hess = (np.empty((3, 3)), np.zeros((3, 3)), np.zeros((3, 3)), np.empty((3, 3)),
                                          np.empty((6, 6)))
        h = 1e-30
        for index in range(batch * edges):
            b, e = index // edges, index % edges
            bz, bl = min(b, z.shape[0] - 1), min(b, sqrt_info.shape[0] - 1)
            _edge(xi[b, e], xj[b, e], z[bz, e], r, jac)
            m, rw = sqrt_info[bl, e], rw_out[b, e]
            for p in range(3):
                rw[p] = m[p, 0] * r[0] + m[p, 1] * r[1] + m[p, 2] * r[2]
                for c in range(6):
                    jw[p, c] = m[p, 0] * jac[0, c] + m[p, 1] * jac[1, c] + m[p, 2] * jac[2, c]
            lam0 = m[0, 0] * rw[0] + m[1, 0] * rw[1] + m[2, 0] * rw[2]  # λ = Lᵀ r_w
            lam1 = m[0, 1] * rw[0] + m[1, 1] * rw[1] + m[2, 1] * rw[2]
            lam2 = m[0, 2] * rw[0] + m[1, 2] * rw[1] + m[2, 2] * rw[2]
            t0 = r[2] * r[2]
            cj, cs, cc = _coefficients_complex(t0 + 1j * h)
            mu0, mu1, mu2 = _lambda_jr_inv(r[0], r[1], r[2], t0, cj.real, cs.real, cc.real, lam0, lam1, lam2)
            # C = ½ M, μ'ᵀ [ξ₁, ξ₂] = ξ₁ᵀ M ξ₂: M[2, 0] = μ'₁, M[2, 1] = -μ'₀, M[0, 2] = -μ'₁, M[1, 2] = μ'₀
            c_mat[2, 0], c_mat[2, 1], c_mat[0, 2], c_mat[1, 2] = 0.5 * mu1, -0.5 * mu0, -0.5 * mu1, 0.5 * mu0
            for k in range(3):  # N = C + DG A, a column per complex step along A e_k (A = jac[:, 3:])
                a0, a1, a2 = jac[0, 3 + k], jac[1, 3 + k], jac[2, 3 + k]
                dt = 2.0 * r[2] * a2
                g0, g1, g2 = _lambda_jr_inv(r[0] + 1j * (h * a0), r[1] + 1j * (h * a1), r[2] + 1j * (h * a2),
                                            t0 + 1j * (h * dt), cj.real + 1j * (cj.imag * dt),
                                            cs.real + 1j * (cs.imag * dt), cc.real + 1j * (cc.imag * dt),
                                            lam0 + 0j, lam1 + 0j, lam2 + 0j)
                big_n[0, k] = c_mat[0, k] + g0.imag / h
                big_n[1, k] = c_mat[1, k] + g1.imag / h
                big_n[2, k] = c_mat[2, k] + g2.imag / h
            for p in range(3):  # symmetric up to rounding: take its symmetric part
                for q in range(p):
                    avg = 0.5 * (big_n[p, q] + big_n[q, p])
                    big_n[p, q] = avg
                    big_n[q, p] = avg
            # P = -Ad(D⁻¹), Ad(D⁻¹) = [[cos, sin, y'], [-sin, cos, -x'], [0, 0, 1]] (see _edge)
            dx, dy, dc, ds = _relative(xi[b, e], xj[b, e], z[bz, e])[:4]
            px, py = -(dc * dx + ds * dy), -(dc * dy - ds * dx)
            p_mat[0, 0], p_mat[0, 1], p_mat[0, 2] = -dc, -ds, -py
            p_mat[1, 0], p_mat[1, 1], p_mat[1, 2] = ds, -dc, px
            p_mat[2, 2] = -1.0
            for p in range(3):
                for q in range(3):
                    hess[3 + p, 3 + q] = big_n[p, q]
                    acc = 0.0
                    for k in range(3):
                        acc += p_mat[k, p] * (big_n[k, q] + c_mat[k, q])
                    hess[p, 3 + q] = acc  # H_ij = Pᵀ (N + C)
                    hess[3 + q, p] = acc
                    acc = 0.0
                    for k in range(3):
                        acc += p_mat[k, p] * big_n[k, q]
                    tmp[p, q] = acc  # (Pᵀ N)[p, q]
            for p in range(3):  # H_ii = Pᵀ N P
                for q in range(3):
                    hess[p, q] = tmp[p, 0] * p_mat[0, q] + tmp[p, 1] * p_mat[1, q] + tmp[p, 2] * p_mat[2, q]
            hh, g = h_out[b, e], g_out[b, e]
            k = 0
            for p in range(6):
                g[p] = jw[0, p] * rw[0] + jw[1, p] * rw[1] + jw[2, p] * rw[2]
                for q in range(p + 1):
                    hh[k] = (0.5 * (hess[p, q] + hess[q, p]) + jw[0, p] * jw[0, q] + jw[1, p] * jw[1, q]
                             + jw[2, p] * jw[2, q])
                    k += 1

    @_jit
    def directional_inputs(xi, xj, direction, d_out, velocity_out):
        """``Between.directional_residual``'s inputs without a graph: per edge ``D = X_i⁻¹ X_j`` (storage
        ``(x, y, c, s)``, as ``_relative`` forms it) in ``d_out (B, E, 4)`` and, in ``velocity_out (B, E,
        4)``, the velocity of ``D``'s storage along ``u = δ_j - Ad(D⁻¹) δ_i`` for ``direction = (δ_i, δ_j)
        (B, E, 6)``: ``(R_D u_ρ, (c, s) · i u_θ)``, with ``Ad(D⁻¹) (ρ, θ) = (R_Dᵀ ρ + θ (p_y, -p_x), θ)`` and
        ``p = -R_Dᵀ t_D`` (``SE2.adjoint``, ``SEBase.retract_velocity``)."""
        batch, edges = xi.shape[0], xi.shape[1]
        for index in range(batch * edges):
            b, e = index // edges, index % edges
            x, y = xi[b, e], xj[b, e]
            ci, si = x[2], x[3]
            dx = (ci * y[0] + si * y[1]) - (ci * x[0] + si * x[1])
            dy = (ci * y[1] - si * y[0]) - (ci * x[1] - si * x[0])
            dc = ci * y[2] + si * y[3]
            ds = ci * y[3] - si * y[2]
            d = d_out[b, e]
            d[0], d[1], d[2], d[3] = dx, dy, dc, ds
            w = direction[b, e]
            px, py = -(dc * dx + ds * dy), -(dc * dy - ds * dx)
            u0 = w[3] - ((dc * w[0] + ds * w[1]) + w[2] * py)
            u1 = w[4] - ((dc * w[1] - ds * w[0]) - w[2] * px)
            u2 = w[5] - w[2]
            v = velocity_out[b, e]
            v[0], v[1] = dc * u0 - ds * u1, ds * u0 + dc * u1
            v[2], v[3] = -ds * u2, dc * u2
