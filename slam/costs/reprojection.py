"""Reprojection costs for bundle adjustment, with analytic Jacobians.

``BALReprojection(poses[c], intrinsics[c], points[p], observation=uv)``: the BAL camera model
(``slam.ba.bal_problem``): ``P = T X`` for the world-to-camera pose ``T``, ``p = -P[:2] / P[2]``,
residual ``f (1 + k1 ‖p‖² + k2 ‖p‖⁴) p - uv`` in pixels.  Jacobians are with respect to the
pose's right tangent (``liegeo.conventions``: ``∂(T Exp(δ) X)/∂δ = R [I | -[X]×]``), the intrinsics
``(f, k1, k2)`` and the point.  Fix the intrinsics by marking them fixed in their ``Variable``.
"""

from __future__ import annotations

import torch
from torch import Tensor

from liegeo import SE3, Euclidean

from .base import residual


def bal_project(camera_points: Tensor, intrinsics: Tensor) -> Tensor:
    """Pixels ``(..., 2)`` of points ``(..., 3)`` in the camera frame, for ``(f, k1, k2)`` ``(..., 3)``."""
    p = -camera_points[..., :2] / camera_points[..., 2:3]
    rho = p.square().sum(-1, keepdim=True)
    f, k1, k2 = intrinsics[..., 0:1], intrinsics[..., 1:2], intrinsics[..., 2:3]
    return f * (1.0 + rho * (k1 + k2 * rho)) * p


def _reprojection(pose: SE3, intrinsics: Euclidean, point: Euclidean, *, observation: Tensor) -> Tensor:
    return bal_project(pose.act(point.data), intrinsics.data) - observation


def _reprojection_jacobians(pose: SE3, intrinsics: Euclidean, point: Euclidean, *,
                            observation: Tensor) -> tuple[Tensor, list[Tensor]]:
    x_world = point.data
    cam, (j_pose_cam, j_point_cam) = pose.act(x_world, jacobians=True)  # (..., 3), (..., 3, 6), (..., 3, 3)
    inv_z = 1.0 / cam[..., 2:3]
    p = -cam[..., :2] * inv_z
    rho = p.square().sum(-1, keepdim=True)
    k = intrinsics.data
    f, k1, k2 = k[..., 0:1], k[..., 1:2], k[..., 2:3]
    d = 1.0 + rho * (k1 + k2 * rho)
    r = f * d * p - observation
    # p = -(x, y)/z, so ∂p/∂P = [[-1/z, 0, -p_x/z], [0, -1/z, -p_y/z]]
    zeros = torch.zeros_like(inv_z)
    dp_dcam = torch.stack([torch.cat([-inv_z, zeros, -p[..., 0:1] * inv_z], -1),
                           torch.cat([zeros, -inv_z, -p[..., 1:2] * inv_z], -1)], dim=-2)
    # ∂(f d p)/∂p = f (d I + 2 (k1 + 2 k2 ρ) p pᵀ)
    eye = torch.eye(2, dtype=p.dtype, device=p.device)
    dr_dp = f.unsqueeze(-1) * (d.unsqueeze(-1) * eye + (2.0 * (k1 + 2.0 * k2 * rho)).unsqueeze(-1)
                               * p.unsqueeze(-1) * p.unsqueeze(-2))
    dr_dcam = dr_dp @ dp_dcam  # (..., 2, 3)
    j_intrinsics = torch.stack([d * p, f * rho * p, f * rho * rho * p], dim=-1)  # (..., 2, 3)
    return r, [dr_dcam @ j_pose_cam, j_intrinsics, dr_dcam @ j_point_cam]


BALReprojection = residual(_reprojection, jacobians=_reprojection_jacobians)
BALReprojection.__name__ = BALReprojection.__qualname__ = "BALReprojection"
BALReprojection.__doc__ = """BAL reprojection error in pixels:
``BALReprojection(poses[c], intrinsics[c], points[p], observation=uv, loss=...)``."""
