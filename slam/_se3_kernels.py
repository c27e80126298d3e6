"""Fused CPU kernels (numba) for the SE(3) hot spots of pose-graph solves: the whitened between cost
with its normal-equation blocks, and the retraction ``X · Exp(δ)``.

The torch path of ``Between`` (``pose_graph._between_jacobians`` on ``liegeo``) spends ~300 small
tensor operations per linearization; on pose graphs of a few thousand edges that is most of an LM
iteration besides the factorization.  This kernel computes, per edge and in one pass, the same
quantities from the same formulas (``liegeo.conventions``; the series coefficients and switch
points of ``liegeo._math``):

    D = X_i⁻¹ X_j,  r = Log(Z⁻¹ D),  J_j = J_r⁻¹(r),  J_i = -J_r⁻¹(r) Ad(D⁻¹),
    r_w = s L r,  J_w = s L [J_i | J_j],  h = J_wᵀ J_w,  g = J_wᵀ r_w

with ``L`` the sqrt-information matrix (any 6 x 6, not only triangular) and ``s`` a per-edge scale (ones: the
problem applies robust losses to the blocks).  It runs
only where nothing needs autograd, on CPU float64 tensors; ``tests/test_fused_kernels.py`` checks it
against the torch path, including near-identity and near-π relative rotations.  The retraction
``X · Exp(δ)`` has its kernel with the group (``liegeo._se3_kernels``, ``SE3.retract_step``), as do
the primitives (series, quaternion product) shared with it.
"""

from __future__ import annotations

import cmath
import math

import numpy as np

try:
    import numba
except ImportError:  # the torch path is used instead
    numba = None

from liegeo import _se3_kernels as _group_kernels
from liegeo._se3_kernels import _ATAN, _ATAN_T, available
from liegeo._kernels import drop_stale_cache

drop_stale_cache(__file__, _group_kernels.CONSTANTS)  # numba's cache does not see them change

if numba is not None:  # the jitted primitives shared with the group's retraction kernel
    from liegeo._se3_kernels import (_CANCELLING_T, _closed_coefficients, _coefficients, _horner, _multiply,
                                     _series_coefficients)

    from ._assembly_kernel import add_blocks


def warm_up() -> None:
    """Load (or, the first time on a machine, compile and cache) every kernel: ~0.3 s once per process,
    which callers that time their solves (``slam.pgo.optimize``) pay before starting the clock."""
    if numba is None:
        return
    x = np.zeros((1, 1, 7))
    x[..., 6] = 1.0
    eye = np.eye(6)[None, None].copy()
    residuals(x, x, x, eye, np.zeros((1, 1, 6)))
    normal_blocks(x, x, x, eye, np.ones((1, 1)), np.zeros((1, 1, 6)), np.zeros((1, 1, 6, 12)), np.zeros((1, 1, 78)),
                  np.zeros((1, 1, 12)))
    accumulate_normal(x, x, x, eye, np.zeros(78, dtype=np.int64), np.zeros(12, dtype=np.int64), np.zeros((1, 1, 6)),
                      np.zeros((1, 1)), np.zeros((1, 1)))
    exact_blocks(x, x, x, eye, np.zeros((1, 1, 6)), np.zeros((1, 1, 78)), np.zeros((1, 1, 12)))  # implicit backward
    directional_inputs(x, x, np.zeros((1, 1, 12)), np.zeros((1, 1, 7)), np.zeros((1, 1, 7)))
    _group_kernels.warm_up()  # SE3.retract_step



if numba is not None:
    _jit = numba.njit(cache=True, nogil=True, error_model="numpy", fastmath={"contract"})
    _inline = numba.njit(cache=True, nogil=True, error_model="numpy", fastmath={"contract"}, inline="always")

    @_inline
    def _quaternion_log_scale(v2, w):
        """``2 atan2(√v2, |w|) / √v2`` with the sign of ``w`` (``SO3._log``)."""
        x = abs(w)
        if v2 < _ATAN_T * x * x:
            scale = _horner(v2 / (x * x), _ATAN) / x
        else:
            y = math.sqrt(v2)
            scale = math.atan2(y, x) / y
        return -2.0 * scale if w < 0 else 2.0 * scale

    @_inline
    def _matrix(x, y, z, w, m):
        m[0, 0] = 1 - 2 * (y * y + z * z); m[0, 1] = 2 * (x * y - w * z); m[0, 2] = 2 * (x * z + w * y)
        m[1, 0] = 2 * (x * y + w * z); m[1, 1] = 1 - 2 * (x * x + z * z); m[1, 2] = 2 * (y * z - w * x)
        m[2, 0] = 2 * (x * z - w * y); m[2, 1] = 2 * (y * z + w * x); m[2, 2] = 1 - 2 * (x * x + y * y)

    @_inline
    def _skew(v, m):
        m[0, 0] = 0.0; m[0, 1] = -v[2]; m[0, 2] = v[1]
        m[1, 0] = v[2]; m[1, 1] = 0.0; m[1, 2] = -v[0]
        m[2, 0] = -v[1]; m[2, 1] = v[0]; m[2, 2] = 0.0

    @_inline
    def _mm(a, b, out):
        for p in range(3):
            for q in range(3):
                out[p, q] = a[p, 0] * b[0, q] + a[p, 1] * b[1, q] + a[p, 2] * b[2, q]

    @_inline
    def _skew3(a0, a1, a2, m):
        m[0, 0] = 0.0; m[0, 1] = -a2; m[0, 2] = a1
        m[1, 0] = a2; m[1, 1] = 0.0; m[1, 2] = -a0
        m[2, 0] = -a1; m[2, 1] = a0; m[2, 2] = 0.0

    @_inline
    def _jr_inv_blocks(v0, v1, v2, w0, w1, w2, t, jinv, sinc3, cos4, q5, work):
        """``J_r⁻¹(v, ω) = [[A, -B], [0, A]]`` into ``A = work[5]``, ``B = work[12]`` (``work[3:13]`` is
        used), given ``t = ω·ω`` and its series coefficients (``_coefficients``).

        ``A = I + ½W + jinv W²``, ``B = A Q(-v, -ω) A`` (``W = [ω]×``)."""
        big_w, big_v, a = work[3], work[4], work[5]
        _skew3(w0, w1, w2, big_w)
        a[0, 0] = w0 * w0 - t; a[0, 1] = w0 * w1; a[0, 2] = w0 * w2  # W² = ωωᵀ - t I
        a[1, 0] = w1 * w0; a[1, 1] = w1 * w1 - t; a[1, 2] = w1 * w2
        a[2, 0] = w2 * w0; a[2, 1] = w2 * w1; a[2, 2] = w2 * w2 - t
        for p in range(3):
            for q in range(3):
                a[p, q] = (1.0 if p == q else 0.0) + 0.5 * big_w[p, q] + jinv * a[p, q]
        # Q(-v, -ω) with V = [-v]×, W' = [-ω]× = -W
        _skew3(-v0, -v1, -v2, big_v)
        for p in range(3):
            for q in range(3):
                big_w[p, q] = -big_w[p, q]
        wv, vw, wvw, tmp1, tmp2, q_mat = work[6], work[7], work[8], work[9], work[10], work[11]
        _mm(big_w, big_v, wv)
        _mm(big_v, big_w, vw)
        _mm(wv, big_w, wvw)
        _mm(big_w, wv, tmp1)   # W W V
        _mm(vw, big_w, tmp2)   # V W W
        for p in range(3):
            for q in range(3):
                q_mat[p, q] = (0.5 * big_v[p, q] + sinc3 * (wv[p, q] + vw[p, q] + wvw[p, q])
                               + cos4 * (tmp1[p, q] + tmp2[p, q] - 3.0 * wvw[p, q]))
        _mm(wvw, big_w, tmp1)  # W V W W
        _mm(big_w, wvw, tmp2)  # W W V W
        for p in range(3):
            for q in range(3):
                q_mat[p, q] += q5 * (tmp1[p, q] + tmp2[p, q])
        _mm(a, q_mat, tmp1)
        _mm(tmp1, a, work[12])

    @_inline
    def _edge_parts(xi, xj, z, r, work, vecs):
        """Residual ``r (6,)`` of one edge and the blocks of its Jacobians, left in ``work (16, 3, 3)``
        (``vecs (5, 3)`` is scratch space; no allocation per edge): ``J_j = J_r⁻¹(r) = [[A, -B], [0, A]]``
        with ``A = work[5]``, ``B = work[12]``, and ``J_i = -J_j Ad(D⁻¹)``, ``Ad(D⁻¹) = [[Rᵀ, T], [0, Rᵀ]]``
        with ``Rᵀ = work[13]`` (``R = R_D``), ``T = [p]× Rᵀ = work[15]`` (``p = -Rᵀ t_D``)."""
        ti, tj, tz = xi[:3], xj[:3], z[:3]
        rot_i, rot_z, rot_d = work[0], work[1], work[2]
        _matrix(xi[3], xi[4], xi[5], xi[6], rot_i)
        _matrix(z[3], z[4], z[5], z[6], rot_z)
        # D = X_i⁻¹ X_j
        dx, dy, dz, dw = _multiply(-xi[3], -xi[4], -xi[5], xi[6], xj[3], xj[4], xj[5], xj[6])
        td = vecs[0]
        for p in range(3):
            td[p] = rot_i[0, p] * (tj[0] - ti[0]) + rot_i[1, p] * (tj[1] - ti[1]) + rot_i[2, p] * (tj[2] - ti[2])
        # E = Z⁻¹ D, r = Log(E)
        ex, ey, ez, ew = _multiply(-z[3], -z[4], -z[5], z[6], dx, dy, dz, dw)
        te = vecs[1]
        for p in range(3):
            te[p] = rot_z[0, p] * (td[0] - tz[0]) + rot_z[1, p] * (td[1] - tz[1]) + rot_z[2, p] * (td[2] - tz[2])
        scale = _quaternion_log_scale(ex * ex + ey * ey + ez * ez, ew)
        w = vecs[2]
        w[0], w[1], w[2] = scale * ex, scale * ey, scale * ez
        t = w[0] * w[0] + w[1] * w[1] + w[2] * w[2]
        jinv, sinc3, cos4, q5 = _coefficients(t)
        # v = t_E - ½ ω × t_E + jinv ω × (ω × t_E)
        wt0 = w[1] * te[2] - w[2] * te[1]
        wt1 = w[2] * te[0] - w[0] * te[2]
        wt2 = w[0] * te[1] - w[1] * te[0]
        r[0] = te[0] - 0.5 * wt0 + jinv * (w[1] * wt2 - w[2] * wt1)
        r[1] = te[1] - 0.5 * wt1 + jinv * (w[2] * wt0 - w[0] * wt2)
        r[2] = te[2] - 0.5 * wt2 + jinv * (w[0] * wt1 - w[1] * wt0)
        r[3], r[4], r[5] = w[0], w[1], w[2]

        _jr_inv_blocks(r[0], r[1], r[2], w[0], w[1], w[2], t, jinv, sinc3, cos4, q5, work)  # A, B into work
        # Ad(D⁻¹) = [[Rᵀ, [p]× Rᵀ], [0, Rᵀ]] with R = R_D, p = -Rᵀ t_D
        _matrix(dx, dy, dz, dw, rot_d)
        rt = work[13]
        for p in range(3):
            for q in range(3):
                rt[p, q] = rot_d[q, p]
        pd = vecs[4]
        for p in range(3):
            pd[p] = -(rt[p, 0] * td[0] + rt[p, 1] * td[1] + rt[p, 2] * td[2])
        skew_p = work[14]
        _skew(pd, skew_p)
        _mm(skew_p, rt, work[15])

    @_inline
    def _edge(xi, xj, z, r, jac, work, vecs):
        """Residual ``r (6,)`` and unwhitened Jacobian ``jac (6, 12)`` of one edge (``_edge_parts``' blocks
        stay in ``work``)."""
        _edge_parts(xi, xj, z, r, work, vecs)
        a, b, rt, top_right = work[5], work[12], work[13], work[15]
        a_rt, a_tr, b_rt = work[0], work[1], work[2]
        _mm(a, rt, a_rt)
        _mm(a, top_right, a_tr)
        _mm(b, rt, b_rt)
        for p in range(3):
            for q in range(3):
                # J_i = -J_r⁻¹ Ad(D⁻¹); B above is +A Q A, so J_r⁻¹'s top right is -B.
                jac[p, q] = -a_rt[p, q]
                jac[p, 3 + q] = -(a_tr[p, q] - b_rt[p, q])
                jac[3 + p, q] = 0.0
                jac[3 + p, 3 + q] = -a_rt[p, q]
                # J_j = J_r⁻¹
                jac[p, 6 + q] = a[p, q]
                jac[p, 9 + q] = -b[p, q]
                jac[3 + p, 6 + q] = 0.0
                jac[3 + p, 9 + q] = a[p, q]

    @_jit
    def _whiten(sqrt_info, r, jac, scale, rw, jw):
        for p in range(6):
            acc = 0.0
            for q in range(6):
                acc += sqrt_info[p, q] * r[q]
            rw[p] = scale * acc
            for c in range(12):
                acc = 0.0
                for q in range(6):
                    acc += sqrt_info[p, q] * jac[q, c]
                jw[p, c] = scale * acc

    @_inline
    def _whitened_edge(sqrt_info, r, work, scale, rw, jw):
        """``rw = s L r`` and ``jw = s L [J_i | J_j]`` from ``_edge_parts``' blocks (``L = sqrt_info``, ``s =
        scale``): ``L J_j`` first, skipping ``J_j``'s zero block, then ``J_i``'s half as ``-(L J_j) Ad(D⁻¹)``
        through Ad's blocks (about 320 multiply-adds against 430 for ``L`` times the whole of ``[J_i | J_j]``)."""
        a, b, rt, tr = work[5], work[12], work[13], work[15]
        for p in range(6):
            acc = 0.0
            for q in range(6):
                acc += sqrt_info[p, q] * r[q]
            rw[p] = scale * acc
            l0, l1, l2 = scale * sqrt_info[p, 0], scale * sqrt_info[p, 1], scale * sqrt_info[p, 2]
            l3, l4, l5 = scale * sqrt_info[p, 3], scale * sqrt_info[p, 4], scale * sqrt_info[p, 5]
            for c in range(3):
                jw[p, 6 + c] = l0 * a[0, c] + l1 * a[1, c] + l2 * a[2, c]
                jw[p, 9 + c] = l3 * a[0, c] + l4 * a[1, c] + l5 * a[2, c] - (l0 * b[0, c] + l1 * b[1, c] + l2 * b[2, c])
            u0, u1, u2, v0, v1, v2 = jw[p, 6], jw[p, 7], jw[p, 8], jw[p, 9], jw[p, 10], jw[p, 11]
            for c in range(3):
                jw[p, c] = -(u0 * rt[0, c] + u1 * rt[1, c] + u2 * rt[2, c])
                jw[p, 3 + c] = -(u0 * tr[0, c] + u1 * tr[1, c] + u2 * tr[2, c] + v0 * rt[0, c] + v1 * rt[1, c]
                                 + v2 * rt[2, c])

    @_jit
    def residuals(xi, xj, z, sqrt_info, out):
        """Whitened residuals: ``xi, xj: (B, E, 7)``, ``z: (Bz, E, 7)``, ``sqrt_info: (Bl, E, 6, 6)``
        (``Bz``, ``Bl`` 1 or B), ``out: (B, E, 6)``."""
        batch, edges = xi.shape[0], xi.shape[1]
        total = batch * edges
        r, work = np.empty(6), np.empty((16, 3, 3))
        for index in range(total):
            b, e = index // edges, index % edges
            bz, bl = min(b, z.shape[0] - 1), min(b, sqrt_info.shape[0] - 1)
            _residual_only(xi[b, e], xj[b, e], z[bz, e], r, work)
            for p in range(6):
                acc = 0.0
                for q in range(6):
                    acc += sqrt_info[bl, e, p, q] * r[q]
                out[b, e, p] = acc

    @_jit
    def _residual_only(xi, xj, z, r, work):
        ti, tj, tz = xi[:3], xj[:3], z[:3]
        rot_i, rot_z = work[0], work[1]
        _matrix(xi[3], xi[4], xi[5], xi[6], rot_i)
        _matrix(z[3], z[4], z[5], z[6], rot_z)
        dx, dy, dz, dw = _multiply(-xi[3], -xi[4], -xi[5], xi[6], xj[3], xj[4], xj[5], xj[6])
        td0 = rot_i[0, 0] * (tj[0] - ti[0]) + rot_i[1, 0] * (tj[1] - ti[1]) + rot_i[2, 0] * (tj[2] - ti[2])
        td1 = rot_i[0, 1] * (tj[0] - ti[0]) + rot_i[1, 1] * (tj[1] - ti[1]) + rot_i[2, 1] * (tj[2] - ti[2])
        td2 = rot_i[0, 2] * (tj[0] - ti[0]) + rot_i[1, 2] * (tj[1] - ti[1]) + rot_i[2, 2] * (tj[2] - ti[2])
        ex, ey, ez, ew = _multiply(-z[3], -z[4], -z[5], z[6], dx, dy, dz, dw)
        te0 = rot_z[0, 0] * (td0 - tz[0]) + rot_z[1, 0] * (td1 - tz[1]) + rot_z[2, 0] * (td2 - tz[2])
        te1 = rot_z[0, 1] * (td0 - tz[0]) + rot_z[1, 1] * (td1 - tz[1]) + rot_z[2, 1] * (td2 - tz[2])
        te2 = rot_z[0, 2] * (td0 - tz[0]) + rot_z[1, 2] * (td1 - tz[1]) + rot_z[2, 2] * (td2 - tz[2])
        scale = _quaternion_log_scale(ex * ex + ey * ey + ez * ez, ew)
        w0, w1, w2 = scale * ex, scale * ey, scale * ez
        t = w0 * w0 + w1 * w1 + w2 * w2
        jinv = _coefficients(t)[0]
        wt0 = w1 * te2 - w2 * te1
        wt1 = w2 * te0 - w0 * te2
        wt2 = w0 * te1 - w1 * te0
        r[0] = te0 - 0.5 * wt0 + jinv * (w1 * wt2 - w2 * wt1)
        r[1] = te1 - 0.5 * wt1 + jinv * (w2 * wt0 - w0 * wt2)
        r[2] = te2 - 0.5 * wt2 + jinv * (w0 * wt1 - w1 * wt0)
        r[3], r[4], r[5] = w0, w1, w2

    @_inline
    def _pack_normal(jw, rw, h, g):
        """``g = J_wᵀ r_w`` and the lower triangle of ``J_wᵀ J_w`` packed row by row into ``h``."""
        k = 0
        for p in range(12):
            acc = 0.0
            for m in range(6):
                acc += jw[m, p] * rw[m]
            g[p] = acc
            for q in range(p + 1):
                acc = 0.0
                for m in range(6):
                    acc += jw[m, p] * jw[m, q]
                h[k] = acc
                k += 1

    @_jit
    def normal_blocks(xi, xj, z, sqrt_info, scale, rw_out, jw_out, h_out, g_out):
        """Per edge: whitened (and scaled) residual ``rw_out (B, E, 6)``, Jacobian ``jw_out (B, E, 6, 12)``,
        the lower triangle of ``J_wᵀ J_w`` packed row by row (``torch.tril_indices`` order) in
        ``h_out (B, E, 78)`` and ``g_out = J_wᵀ r_w (B, E, 12)``.  ``scale: (Bs, E)`` (``Bs`` 1 or B)
        multiplies residual and Jacobian (robust reweighting; ones otherwise)."""
        batch, edges = xi.shape[0], xi.shape[1]
        total = batch * edges
        # Serial on purpose: numba's OpenMP threads and torch's contend for the cores (measured on 2
        # cores: solve times jumping from 26 to 100 ms), and this loop is a few % of an iteration.
        r, work, vecs = np.empty(6), np.empty((16, 3, 3)), np.empty((5, 3))
        for index in range(total):
            b, e = index // edges, index % edges
            bz, bl, bs = min(b, z.shape[0] - 1), min(b, sqrt_info.shape[0] - 1), min(b, scale.shape[0] - 1)
            _edge_parts(xi[b, e], xj[b, e], z[bz, e], r, work, vecs)
            rw, jw = rw_out[b, e], jw_out[b, e]
            _whitened_edge(sqrt_info[bl, e], r, work, scale[bs, e], rw, jw)
            _pack_normal(jw, rw, h_out[b, e], g_out[b, e])

    @_jit
    def accumulate_normal(xi, xj, z, sqrt_info, slots, gradient_slots, rw_out, h_out, g_out):
        """``normal_blocks`` (scale 1) with each edge's blocks added straight into the assembled ``h_out (B,
        nnz + 1)`` at ``slots (E·78,)`` and ``g_out (B, n + 1)`` at ``gradient_slots (E·12,)`` (the problem's
        ``CostLayout``; ``Cost.accumulate_normal``), the whitened residual in ``rw_out (B, E, 6)``, and no
        Jacobian or block stored."""
        batch, edges = xi.shape[0], xi.shape[1]
        r, work, vecs = np.empty(6), np.empty((16, 3, 3)), np.empty((5, 3))
        jw, h, g = np.empty((6, 12)), np.empty(78), np.empty(12)
        for index in range(batch * edges):
            b, e = index // edges, index % edges
            bz, bl = min(b, z.shape[0] - 1), min(b, sqrt_info.shape[0] - 1)
            _edge_parts(xi[b, e], xj[b, e], z[bz, e], r, work, vecs)
            rw = rw_out[b, e]
            _whitened_edge(sqrt_info[bl, e], r, work, 1.0, rw, jw)
            _pack_normal(jw, rw, h, g)
            add_blocks(h_out[b], g_out[b], slots, gradient_slots, h, g, e)

    @_inline
    def _coefficients_complex(t):
        """``_coefficients`` for a complex ``t`` (the same series and switch point, on ``t.real``): analytic
        in ``t``, so that a complex step through it differentiates ``J_r⁻¹`` exactly (``curvature_blocks``)."""
        if t.real < _CANCELLING_T:
            return _series_coefficients(t)
        theta = cmath.sqrt(t)
        half = 0.5 * theta
        return _closed_coefficients(t, theta, cmath.sin(theta), cmath.cos(theta), half * cmath.cos(half) / cmath.sin(half))

    @_inline
    def _cross(a, b):
        return a[1] * b[2] - a[2] * b[1], a[2] * b[0] - a[0] * b[2], a[0] * b[1] - a[1] * b[0]

    @_inline
    def _row_a(x, w, jinv):
        """``xᵀ A`` with ``A = I + ½[ω]× + jinv [ω]×²`` (``xᵀ[a]× = (x × a)ᵀ``)."""
        xw = _cross(x, w)
        xww = _cross(xw, w)
        return (x[0] + 0.5 * xw[0] + jinv * xww[0], x[1] + 0.5 * xw[1] + jinv * xww[1],
                x[2] + 0.5 * xw[2] + jinv * xww[2])

    @_inline
    def _row_q(y, v, w, sinc3, cos4, q5):
        """``yᵀ Q(v, ω)`` (``_jr_inv_blocks``' Q, term by term as nested cross products)."""
        yw, yv = _cross(y, w), _cross(y, v)
        ywv, yvw, yww = _cross(yw, v), _cross(yv, w), _cross(yw, w)
        ywvw, ywwv, yvww = _cross(ywv, w), _cross(yww, v), _cross(yvw, w)
        ywvww, ywwvw = _cross(ywvw, w), _cross(ywwv, w)
        return (0.5 * yv[0] + sinc3 * (ywv[0] + yvw[0] + ywvw[0]) + cos4 * (ywwv[0] + yvww[0] - 3.0 * ywvw[0])
                + q5 * (ywvww[0] + ywwvw[0]),
                0.5 * yv[1] + sinc3 * (ywv[1] + yvw[1] + ywvw[1]) + cos4 * (ywwv[1] + yvww[1] - 3.0 * ywvw[1])
                + q5 * (ywvww[1] + ywwvw[1]),
                0.5 * yv[2] + sinc3 * (ywv[2] + yvw[2] + ywvw[2]) + cos4 * (ywwv[2] + yvww[2] - 3.0 * ywvw[2])
                + q5 * (ywvww[2] + ywwvw[2]))

    @_inline
    def _add3(a, b):
        return a[0] + b[0], a[1] + b[1], a[2] + b[2]

    @_inline
    def _dcross(a, da, b, db):
        """The tangent of ``a × b``: ``da × b + a × db``."""
        return _add3(_cross(da, b), _cross(a, db))

    @_inline
    def _row_a_tangent(x, dx, xw, xww, w, dw, jinv, djinv):
        """The tangent of ``_row_a(x, w, jinv) = x + ½ x × w + jinv (x × w) × w`` (``xw = x × w``, ``xww = xw × w``
        at the point)."""
        dxw = _dcross(x, dx, w, dw)
        dxww = _dcross(xw, dxw, w, dw)
        return (dx[0] + 0.5 * dxw[0] + djinv * xww[0] + jinv * dxww[0],
                dx[1] + 0.5 * dxw[1] + djinv * xww[1] + jinv * dxww[1],
                dx[2] + 0.5 * dxw[2] + djinv * xww[2] + jinv * dxww[2])

    @_jit
    def exact_blocks(xi, xj, z, sqrt_info, rw_out, h_out, g_out):
        """Per edge, ``normal_blocks``' outputs (scale 1) with the exact Hessian of ``½‖r_w‖²`` in ``h_out``
        (``r_w = L r(X_i ⊕ δ_i, X_j ⊕ δ_j)``, in ``δ = (δ_i, δ_j)`` at 0): ``J_wᵀ J_w + Σ_k μ_k ∇²(L r)_k``
        with ``μ = r_w``, packed the same way.

        The second-order part: with ``λ = Lᵀ μ``, ``E(δ) = E₀ Exp(u) Exp(b)``, ``u = P δ_i``, ``P = -Ad(D⁻¹)``, ``b = δ_j`` exactly,
        and ``Exp(u) Exp(b) = Exp(u + b + ½ ad(u) b + …)``.  So with ``A = J_r⁻¹(r)``, ``μ' = Aᵀλ``,
        ``C[p, q] = ½ μ'ᵀ ad(e_p) e_q`` and ``N`` the Hessian of ``λᵀ Log(E₀ Exp(w))`` at ``w = 0``:
        ``H_jj = N``, ``H_ij = Pᵀ (N + C)``, ``H_ii = Pᵀ N P``.  From ``∂Log(E₀ Exp(w))/∂w = J_r⁻¹(Log(E₀
        Exp(w))) J_r(w)``: ``N = C + DG A`` with ``G(φ) = J_r⁻¹(φ)ᵀ λ``, whose derivative along ``A e_k`` is taken
        in forward mode (the tangents of ``G``'s cross products, formed once at ``r``; the coefficients'
        derivatives in ``t = ω·ω`` by one complex step): no difference is subtracted, so it is exact to
        rounding."""
        batch, edges = xi.shape[0], xi.shape[1]
        r, jac, work, vecs = np.empty(6), np.empty((6, 12)), np.empty((16, 3, 3)), np.empty((5, 3))
        jw = np.empty((6, 12))
        lam, mu, big_n, c_mat, p_mat, tmp = (np.empty(6), np.empty(6), np.empty((6, 6)), np.empty((6, 6)),
                                             np.empty((6, 6)), np.empty((6, 6)))
        hess = np.empty((12, 12))
        h = 1e-30
        for index in range(batch * edges):
            b, e = index // edges, index % edges
            bz, bl = min(b, z.shape[0] - 1), min(b, sqrt_info.shape[0] - 1)
            _edge(xi[b, e], xj[b, e], z[bz, e], r, jac, work, vecs)
            rt, top_right = work[13], work[15]  # Ad(D⁻¹) = [[Rᵀ, [p]× Rᵀ], [0, Rᵀ]], left there by _edge
            rw = rw_out[b, e]
            _whiten(sqrt_info[bl, e], r, jac, 1.0, rw, jw)
            for p in range(6):
                acc = 0.0
                for q in range(6):
                    acc += sqrt_info[bl, e, q, p] * rw[q]
                lam[p] = acc
            for p in range(6):  # μ' = Aᵀ λ, A = jac[:, 6:]
                acc = 0.0
                for q in range(6):
                    acc += jac[q, 6 + p] * lam[q]
                mu[p] = acc
            # C = ½ M, μ'ᵀ [ξ₁, ξ₂] = ξ₁ᵀ M ξ₂ with M = -[[0, [μ'_ρ]×], [[μ'_ρ]×, [μ'_θ]×]]
            skew_rho, skew_theta = work[0], work[1]  # free after _edge
            _skew3(mu[0], mu[1], mu[2], skew_rho)
            _skew3(mu[3], mu[4], mu[5], skew_theta)
            for p in range(3):
                for q in range(3):
                    c_mat[p, q] = 0.0
                    c_mat[p, 3 + q] = -0.5 * skew_rho[p, q]
                    c_mat[3 + p, q] = -0.5 * skew_rho[p, q]
                    c_mat[3 + p, 3 + q] = -0.5 * skew_theta[p, q]
            # N = C + DG A, a column per direction A e_k.  The coefficients depend on t = ω·ω only: one
            # complex step in t gives their derivatives, and each direction's follow from its
            # dt = 2 ω·(A e_k)_ω without further trigonometry.
            t0 = r[3] * r[3] + r[4] * r[4] + r[5] * r[5]
            dj, ds, dc, dq = _coefficients_complex(t0 + 1j * h)
            jinv0, sinc30, cos40, q50 = dj.real, ds.real, dc.real, dq.real
            dj, ds, dc, dq = dj.imag / h, ds.imag / h, dc.imag / h, dq.imag / h  # their derivatives in t
            # J_r⁻¹'s first three columns have no rotation part, and G is linear in the translation v: there
            # DG (a, 0) = (0, -(yᵀ Q(-a, -ω)) A) with y = Aᵀλ_ρ, exactly, without a complex step.
            w3 = (r[3], r[4], r[5])
            y = _row_a((lam[0], lam[1], lam[2]), w3, jinv0)
            for k in range(3):
                yq = _row_q(y, (-jac[0, 6 + k], -jac[1, 6 + k], -jac[2, 6 + k]), (-r[3], -r[4], -r[5]),
                            sinc30, cos40, q50)
                yqa = _row_a(yq, w3, jinv0)
                for p in range(3):
                    big_n[p, k] = c_mat[p, k]
                    big_n[3 + p, k] = c_mat[3 + p, k] - yqa[p]
            # The rotation columns: forward-mode tangents of G(φ) = λᵀ J_r⁻¹(φ) = (y, ta - yqa) along A e_k at
            # φ = r, with y = Aᵀλ_ρ, yq = yᵀ Q(-v, -ω), yqa = yqᵀ A, ta = Aᵀλ_θ (J_r⁻¹ = [[A, -A Q A], [0, A]]
            # applied from the left); the cross products at r are formed once for the three directions
            # (8-13 % of the kernel's time against three complex steps through all of G).
            lr, lt = (lam[0], lam[1], lam[2]), (lam[3], lam[4], lam[5])
            nv, nw = (-r[0], -r[1], -r[2]), (-r[3], -r[4], -r[5])
            lw = _cross(lr, w3)
            lww = _cross(lw, w3)
            yw, yv = _cross(y, nw), _cross(y, nv)
            ywv, yvw, yww = _cross(yw, nv), _cross(yv, nw), _cross(yw, nw)
            ywvw, ywwv, yvww = _cross(ywv, nw), _cross(yww, nv), _cross(yvw, nw)
            ywvww, ywwvw = _cross(ywvw, nw), _cross(ywwv, nw)
            s_term = _add3(_add3(ywv, yvw), ywvw)
            c_term = (ywwv[0] + yvww[0] - 3.0 * ywvw[0], ywwv[1] + yvww[1] - 3.0 * ywvw[1],
                      ywwv[2] + yvww[2] - 3.0 * ywvw[2])
            q_term = _add3(ywvww, ywwvw)
            yq = (0.5 * yv[0] + sinc30 * s_term[0] + cos40 * c_term[0] + q50 * q_term[0],
                  0.5 * yv[1] + sinc30 * s_term[1] + cos40 * c_term[1] + q50 * q_term[1],
                  0.5 * yv[2] + sinc30 * s_term[2] + cos40 * c_term[2] + q50 * q_term[2])
            qw = _cross(yq, w3)
            qww = _cross(qw, w3)
            tw = _cross(lt, w3)
            tww = _cross(tw, w3)
            zero3 = (0.0, 0.0, 0.0)
            for k in range(3, 6):
                dv = (jac[0, 6 + k], jac[1, 6 + k], jac[2, 6 + k])
                dw = (jac[3, 6 + k], jac[4, 6 + k], jac[5, 6 + k])
                dt = 2.0 * (r[3] * dw[0] + r[4] * dw[1] + r[5] * dw[2])
                djinv, dsinc3, dcos4, dq5 = dj * dt, ds * dt, dc * dt, dq * dt
                dy = _row_a_tangent(lr, zero3, lw, lww, w3, dw, jinv0, djinv)
                dnv, dnw = (-dv[0], -dv[1], -dv[2]), (-dw[0], -dw[1], -dw[2])
                dyw, dyv = _dcross(y, dy, nw, dnw), _dcross(y, dy, nv, dnv)
                dywv, dyvw, dyww = _dcross(yw, dyw, nv, dnv), _dcross(yv, dyv, nw, dnw), _dcross(yw, dyw, nw, dnw)
                dywvw, dywwv = _dcross(ywv, dywv, nw, dnw), _dcross(yww, dyww, nv, dnv)
                dyvww = _dcross(yvw, dyvw, nw, dnw)
                dywvww, dywwvw = _dcross(ywvw, dywvw, nw, dnw), _dcross(ywwv, dywwv, nw, dnw)
                ds_term = _add3(_add3(dywv, dyvw), dywvw)
                dq_term = _add3(dywvww, dywwvw)
                dyq = (0.5 * dyv[0] + dsinc3 * s_term[0] + sinc30 * ds_term[0] + dcos4 * c_term[0]
                       + cos40 * (dywwv[0] + dyvww[0] - 3.0 * dywvw[0]) + dq5 * q_term[0] + q50 * dq_term[0],
                       0.5 * dyv[1] + dsinc3 * s_term[1] + sinc30 * ds_term[1] + dcos4 * c_term[1]
                       + cos40 * (dywwv[1] + dyvww[1] - 3.0 * dywvw[1]) + dq5 * q_term[1] + q50 * dq_term[1],
                       0.5 * dyv[2] + dsinc3 * s_term[2] + sinc30 * ds_term[2] + dcos4 * c_term[2]
                       + cos40 * (dywwv[2] + dyvww[2] - 3.0 * dywvw[2]) + dq5 * q_term[2] + q50 * dq_term[2])
                dyqa = _row_a_tangent(yq, dyq, qw, qww, w3, dw, jinv0, djinv)
                dta = _row_a_tangent(lt, zero3, tw, tww, w3, dw, jinv0, djinv)
                for p in range(3):
                    big_n[p, k] = c_mat[p, k] + dy[p]
                    big_n[3 + p, k] = c_mat[3 + p, k] + dta[p] - dyqa[p]
            for p in range(6):  # symmetric up to rounding: take its symmetric part
                for q in range(p):
                    avg = 0.5 * (big_n[p, q] + big_n[q, p])
                    big_n[p, q] = avg
                    big_n[q, p] = avg
            # P = -Ad(D⁻¹)
            for p in range(3):
                for q in range(3):
                    p_mat[p, q] = -rt[p, q]
                    p_mat[p, 3 + q] = -top_right[p, q]
                    p_mat[3 + p, q] = 0.0
                    p_mat[3 + p, 3 + q] = -rt[p, q]
            for p in range(6):  # tmp = N + C
                for q in range(6):
                    tmp[p, q] = big_n[p, q] + c_mat[p, q]
            for p in range(6):
                for q in range(6):
                    hess[6 + p, 6 + q] = big_n[p, q]
                    acc = 0.0
                    for m in range(6):
                        acc += p_mat[m, p] * tmp[m, q]
                    hess[p, 6 + q] = acc  # H_ij = Pᵀ (N + C)
                    hess[6 + q, p] = acc
            for p in range(6):  # H_ii = Pᵀ N P
                for q in range(6):
                    acc = 0.0
                    for m in range(6):
                        acc += big_n[m, q] * p_mat[m, p]
                    tmp[p, q] = acc  # (Pᵀ N)[p, q]
            for p in range(6):
                for q in range(6):
                    acc = 0.0
                    for m in range(6):
                        acc += tmp[p, m] * p_mat[m, q]
                    hess[p, q] = acc
            o = h_out[b, e]
            _pack_normal(jw, rw, o, g_out[b, e])
            k = 0
            for p in range(12):
                for q in range(p + 1):
                    o[k] += 0.5 * (hess[p, q] + hess[q, p])
                    k += 1

    @_jit
    def directional_inputs(xi, xj, direction, d_out, velocity_out):
        """``Between.directional_residual``'s inputs without a graph: per edge ``D = X_i⁻¹ X_j`` (storage
        ``(t, q_xyzw)``) in ``d_out (B, E, 7)`` and, in ``velocity_out (B, E, 7)``, the velocity of ``D``'s
        storage along ``u = δ_j - Ad(D⁻¹) δ_i`` for ``direction = (δ_i, δ_j) (B, E, 12)``: ``(R_D u_ρ, q_D ⊗
        (½ u_θ, 0))``, with ``Ad(D⁻¹) (ρ, θ) = (R_Dᵀ (ρ - t_D × θ), R_Dᵀ θ)`` (``SE3.adjoint`` of ``D⁻¹``,
        ``SEBase.retract_velocity``).  Six 3 x 3 products per edge where the torch path builds ``Ad`` (6 x 6)."""
        batch, edges = xi.shape[0], xi.shape[1]
        rot_i, rot_d = np.empty((3, 3)), np.empty((3, 3))
        for index in range(batch * edges):
            b, e = index // edges, index % edges
            x, y, w = xi[b, e], xj[b, e], direction[b, e]
            _matrix(x[3], x[4], x[5], x[6], rot_i)
            dx, dy, dz, dw = _multiply(-x[3], -x[4], -x[5], x[6], y[3], y[4], y[5], y[6])
            _matrix(dx, dy, dz, dw, rot_d)
            d = d_out[b, e]
            for p in range(3):
                d[p] = rot_i[0, p] * (y[0] - x[0]) + rot_i[1, p] * (y[1] - x[1]) + rot_i[2, p] * (y[2] - x[2])
            d[3], d[4], d[5], d[6] = dx, dy, dz, dw
            # t_D × θ_i, then Rᵀ (ρ_i - t_D × θ_i) and Rᵀ θ_i subtracted from δ_j
            c0 = d[1] * w[5] - d[2] * w[4]
            c1 = d[2] * w[3] - d[0] * w[5]
            c2 = d[0] * w[4] - d[1] * w[3]
            a0, a1, a2 = w[0] - c0, w[1] - c1, w[2] - c2
            u = (w[6] - (rot_d[0, 0] * a0 + rot_d[1, 0] * a1 + rot_d[2, 0] * a2),
                 w[7] - (rot_d[0, 1] * a0 + rot_d[1, 1] * a1 + rot_d[2, 1] * a2),
                 w[8] - (rot_d[0, 2] * a0 + rot_d[1, 2] * a1 + rot_d[2, 2] * a2),
                 w[9] - (rot_d[0, 0] * w[3] + rot_d[1, 0] * w[4] + rot_d[2, 0] * w[5]),
                 w[10] - (rot_d[0, 1] * w[3] + rot_d[1, 1] * w[4] + rot_d[2, 1] * w[5]),
                 w[11] - (rot_d[0, 2] * w[3] + rot_d[1, 2] * w[4] + rot_d[2, 2] * w[5]))
            v = velocity_out[b, e]
            for p in range(3):
                v[p] = rot_d[p, 0] * u[0] + rot_d[p, 1] * u[1] + rot_d[p, 2] * u[2]
            v[3], v[4], v[5], v[6] = _multiply(dx, dy, dz, dw, 0.5 * u[3], 0.5 * u[4], 0.5 * u[5], 0.0)
