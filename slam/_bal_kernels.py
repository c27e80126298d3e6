"""Fused CPU kernels (numba) for the BAL reprojection cost (``costs.reprojection``): residuals, and
residuals with Jacobians and their packed normal-equation blocks, in one pass per observation.

The same formulas as ``_reprojection_jacobians`` (checked against it in ``tests/test_fused_kernels.py``):

    P = R X + t,  p = -P[:2] / P[2],  r = f d p - uv  with  d = 1 + k1 ρ + k2 ρ², ρ = ‖p‖²
    M = ∂r/∂P = f (d I + 2 (k1 + 2 k2 ρ) p pᵀ) [[-1/z, 0, -p_x/z], [0, -1/z, -p_y/z]]
    J_pose = [M R | -M R [X]×],  J_intrinsics = [d p, f ρ p, f ρ² p],  J_point = M R

``h`` is ``JᵀJ``'s lower triangle packed row by row (``torch.tril_indices`` order) over the 12
columns (pose 6, intrinsics 3, point 3); ``scale`` multiplies residual and Jacobian (IRLS).
"""

from __future__ import annotations

import numba
import numpy as np

_jit = numba.njit(cache=True, nogil=True, error_model="numpy", fastmath={"contract"})

_inline = numba.njit(cache=True, nogil=True, error_model="numpy", fastmath={"contract"}, inline="always")


def warm_up() -> None:
    """Load (or, the first time on a machine, compile and cache) both kernels (``Cost.prepare``)."""
    pose = np.zeros((1, 1, 7))
    pose[..., 6] = 1.0
    point = np.array([[[0.0, 0.0, -1.0]]])
    intrinsics, uv = np.array([[[1.0, 0.0, 0.0]]]), np.zeros((1, 1, 2))
    residuals(pose, intrinsics, point, uv, np.zeros((1, 1, 2)))
    normal_blocks(pose, intrinsics, point, uv, np.ones((1, 1)), np.zeros((1, 1, 2)), np.zeros((1, 1, 2, 12)),
                  np.zeros((1, 1, 78)), np.zeros((1, 1, 12)))


@_inline
def _rotation(q, m):
    x, y, z, w = q[3], q[4], q[5], q[6]
    m[0, 0] = 1 - 2 * (y * y + z * z); m[0, 1] = 2 * (x * y - w * z); m[0, 2] = 2 * (x * z + w * y)
    m[1, 0] = 2 * (x * y + w * z); m[1, 1] = 1 - 2 * (x * x + z * z); m[1, 2] = 2 * (y * z - w * x)
    m[2, 0] = 2 * (x * z - w * y); m[2, 1] = 2 * (y * z + w * x); m[2, 2] = 1 - 2 * (x * x + y * y)


@_inline
def _camera_point(pose, x, rot):
    """``R X + t`` (``rot`` is filled with ``R``)."""
    _rotation(pose, rot)
    return (rot[0, 0] * x[0] + rot[0, 1] * x[1] + rot[0, 2] * x[2] + pose[0],
            rot[1, 0] * x[0] + rot[1, 1] * x[1] + rot[1, 2] * x[2] + pose[1],
            rot[2, 0] * x[0] + rot[2, 1] * x[1] + rot[2, 2] * x[2] + pose[2])


@_jit
def residuals(pose, intrinsics, point, uv, out):
    """``pose: (B, O, 7)``, ``intrinsics: (B, O, 3)``, ``point: (B, O, 3)``, ``uv: (Bu, O, 2)`` ->
    ``out: (B, O, 2)``."""
    rot = np.empty((3, 3))
    for b in range(pose.shape[0]):
        bu = min(b, uv.shape[0] - 1)
        for o in range(pose.shape[1]):
            x = point[b, o]
            cam0, cam1, cam2 = _camera_point(pose[b, o], x, rot)
            px, py = -cam0 / cam2, -cam1 / cam2
            rho = px * px + py * py
            f, k1, k2 = intrinsics[b, o, 0], intrinsics[b, o, 1], intrinsics[b, o, 2]
            scale = f * (1.0 + rho * (k1 + k2 * rho))
            out[b, o, 0] = scale * px - uv[bu, o, 0]
            out[b, o, 1] = scale * py - uv[bu, o, 1]


@_jit
def normal_blocks(pose, intrinsics, point, uv, scale, r_out, j_out, h_out, g_out):
    """As ``residuals``, plus ``j_out (B, O, 2, 12)``, ``h_out (B, O, 78)``, ``g_out (B, O, 12)``;
    ``scale: (Bs, O)`` multiplies residual and Jacobian."""
    rot = np.empty((3, 3))
    m = np.empty((2, 3))
    mr = np.empty((2, 3))
    for b in range(pose.shape[0]):
        bu, bs = min(b, uv.shape[0] - 1), min(b, scale.shape[0] - 1)
        for o in range(pose.shape[1]):
            x = point[b, o]
            cam0, cam1, cam2 = _camera_point(pose[b, o], x, rot)
            inv_z = 1.0 / cam2
            px, py = -cam0 * inv_z, -cam1 * inv_z
            rho = px * px + py * py
            f, k1, k2 = intrinsics[b, o, 0], intrinsics[b, o, 1], intrinsics[b, o, 2]
            d = 1.0 + rho * (k1 + k2 * rho)
            s = scale[bs, o]
            r = r_out[b, o]
            r[0] = s * (f * d * px - uv[bu, o, 0])
            r[1] = s * (f * d * py - uv[bu, o, 1])
            # ∂r/∂p = f (d I + c p pᵀ), c = 2 (k1 + 2 k2 ρ); then M = ∂r/∂p ∂p/∂P
            c = 2.0 * (k1 + 2.0 * k2 * rho)
            a00, a01, a11 = f * (d + c * px * px), f * c * px * py, f * (d + c * py * py)
            # ∂p/∂P = [[-1/z, 0, -px/z], [0, -1/z, -py/z]]
            m[0, 0], m[0, 1], m[0, 2] = -a00 * inv_z, -a01 * inv_z, -(a00 * px + a01 * py) * inv_z
            m[1, 0], m[1, 1], m[1, 2] = -a01 * inv_z, -a11 * inv_z, -(a01 * px + a11 * py) * inv_z
            for p in range(2):
                for q in range(3):
                    mr[p, q] = s * (m[p, 0] * rot[0, q] + m[p, 1] * rot[1, q] + m[p, 2] * rot[2, q])
            j = j_out[b, o]
            for p in range(2):
                for q in range(3):
                    j[p, q] = mr[p, q]
                    j[p, 9 + q] = mr[p, q]
                # -M R [X]×, with the columns of [X]× = (0, x2, -x1), (-x2, 0, x0), (x1, -x0, 0)
                j[p, 3] = -(mr[p, 1] * x[2] - mr[p, 2] * x[1])
                j[p, 4] = -(mr[p, 2] * x[0] - mr[p, 0] * x[2])
                j[p, 5] = -(mr[p, 0] * x[1] - mr[p, 1] * x[0])
            j[0, 6], j[1, 6] = s * d * px, s * d * py
            j[0, 7], j[1, 7] = s * f * rho * px, s * f * rho * py
            j[0, 8], j[1, 8] = s * f * rho * rho * px, s * f * rho * rho * py
            h, g = h_out[b, o], g_out[b, o]
            k = 0
            for p in range(12):
                g[p] = j[0, p] * r[0] + j[1, p] * r[1]
                for q in range(p + 1):
                    h[k] = j[0, p] * j[0, q] + j[1, p] * j[1, q]
                    k += 1
