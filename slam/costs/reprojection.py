"""Reprojection costs for bundle adjustment, with analytic Jacobians.

``BALReprojection(poses[c], intrinsics[c], points[p], observation=uv)``: the BAL camera model
(``slam.ba.bal_problem``): ``P = T X`` for the world-to-camera pose ``T``, ``p = -P[:2] / P[2]``,
residual ``f (1 + k1 ‖p‖² + k2 ‖p‖⁴) p - uv`` in pixels.

``PinholeReprojection(poses[c], intrinsics[c], points[p], observation=uv)``: the usual pinhole
camera looking down its +z axis (OpenCV/COLMAP convention), intrinsics ``(fx, fy, cx, cy)`` or
``(fx, fy, cx, cy, k1, k2)`` with radial distortion: ``p = P[:2] / P[2]``,
``d = 1 + k1 ‖p‖² + k2 ‖p‖⁴``, residual ``(fx d p_x + cx, fy d p_y + cy) - uv``.

Jacobians are with respect to the pose's right tangent (``liegeo.conventions``:
``∂(T Exp(δ) X)/∂δ = R [I | -[X]×]``), the intrinsics and the point.  Fix the intrinsics by marking
them fixed in their ``Variable``.
"""

from __future__ import annotations

from typing import Sequence

import torch
from torch import Tensor

from liegeo import SE3, Euclidean, LieGroup

from .base import Linearization, _fused_inputs, kernel_inputs_ok, residual


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


class BALReprojection(residual(_reprojection, jacobians=_reprojection_jacobians)):
    """BAL reprojection error in pixels:
    ``BALReprojection(poses[c], intrinsics[c], points[p], observation=uv, loss=...)``.

    Without a weight, in float64 on the CPU and where nothing needs autograd, it runs the fused
    kernels of ``slam._bal_kernels``; everything else takes the torch path above.
    """

    def _fusable(self, pose: SE3, intrinsics: Euclidean, point: Euclidean, observation: Tensor) -> bool:
        return (self.weight is None and type(pose) is SE3
                and kernel_inputs_ok(pose.data, intrinsics.data, point.data, observation))

    def _arrays(self, pose: SE3, intrinsics: Euclidean, point: Euclidean, observation: Tensor) -> tuple:
        batch = max(pose.data.reshape(-1, self.num, 7).shape[0], point.data.reshape(-1, self.num, 3).shape[0],
                    intrinsics.data.reshape(-1, self.num, 3).shape[0])
        return (batch, pose.data.expand(batch, self.num, 7).contiguous().numpy(),
                intrinsics.data.expand(batch, self.num, 3).contiguous().numpy(),
                point.data.expand(batch, self.num, 3).contiguous().numpy(),
                observation.reshape(-1, self.num, 2).contiguous().numpy())

    def linearization_path(self, dtype: torch.dtype, device: torch.device | str) -> str:
        if self.weight is None and _fused_inputs(dtype, device):
            return "fused kernel (slam._bal_kernels)"
        return super().linearization_path(dtype, device)

    def prepare(self) -> None:
        if self.weight is None and kernel_inputs_ok(self.data["observation"]):
            from .. import _bal_kernels

            _bal_kernels.warm_up()

    def whitened_residual(self, values: Sequence[LieGroup]) -> Tensor:
        pose, intrinsics, point = values
        observation = self.data["observation"]
        if not self._fusable(pose, intrinsics, point, observation):
            return super().whitened_residual(values)
        from .. import _bal_kernels

        batch, *arrays = self._arrays(pose, intrinsics, point, observation)
        out = torch.empty(batch, self.num, 2, dtype=torch.float64)
        _bal_kernels.residuals(*arrays, out.numpy())
        return out

    def linearize(self, values: Sequence[LieGroup], batch_size: int) -> Linearization:
        pose, intrinsics, point = values
        observation = self.data["observation"]
        if not self._fusable(pose, intrinsics, point, observation):
            return super().linearize(values, batch_size)
        from .. import _bal_kernels

        batch, *arrays = self._arrays(pose, intrinsics, point, observation)
        r = torch.empty(batch, self.num, 2, dtype=torch.float64)
        j = torch.empty(batch, self.num, 2, 12, dtype=torch.float64)
        h = torch.empty(batch, self.num, 78, dtype=torch.float64)
        g = torch.empty(batch, self.num, 12, dtype=torch.float64)
        ones = torch.ones(1, self.num, dtype=torch.float64)
        _bal_kernels.normal_blocks(*arrays, ones.numpy(), r.numpy(), j.numpy(), h.numpy(), g.numpy())
        return Linearization(r, j, h, g)


def pinhole_project(camera_points: Tensor, intrinsics: Tensor) -> Tensor:
    """Pixels ``(..., 2)`` of points ``(..., 3)`` in a +z-looking camera frame, for intrinsics
    ``(..., 4)`` = ``(fx, fy, cx, cy)`` or ``(..., 6)`` with ``k1, k2`` appended."""
    p = camera_points[..., :2] / camera_points[..., 2:3]
    if intrinsics.shape[-1] == 6:
        rho = p.square().sum(-1, keepdim=True)
        p = p * (1.0 + rho * (intrinsics[..., 4:5] + intrinsics[..., 5:6] * rho))
    return p * intrinsics[..., 0:2] + intrinsics[..., 2:4]


def _pinhole(pose: SE3, intrinsics: Euclidean, point: Euclidean, *, observation: Tensor) -> Tensor:
    return pinhole_project(pose.act(point.data), intrinsics.data) - observation


def _pinhole_jacobians(pose: SE3, intrinsics: Euclidean, point: Euclidean, *,
                       observation: Tensor) -> tuple[Tensor, list[Tensor]]:
    cam, (j_pose_cam, j_point_cam) = pose.act(point.data, jacobians=True)
    k = intrinsics.data
    inv_z = 1.0 / cam[..., 2:3]
    p = cam[..., :2] * inv_z
    focal = k[..., 0:2]
    zeros, ones = torch.zeros_like(inv_z), torch.ones_like(inv_z)
    # ∂p/∂P = [[1/z, 0, -p_x/z], [0, 1/z, -p_y/z]]
    dp_dcam = torch.stack([torch.cat([inv_z, zeros, -p[..., 0:1] * inv_z], -1),
                           torch.cat([zeros, inv_z, -p[..., 1:2] * inv_z], -1)], dim=-2)
    if k.shape[-1] == 6:
        k1, k2 = k[..., 4:5], k[..., 5:6]
        rho = p.square().sum(-1, keepdim=True)
        d = 1.0 + rho * (k1 + k2 * rho)
        c = 2.0 * (k1 + 2.0 * k2 * rho)
        eye = torch.eye(2, dtype=p.dtype, device=p.device)
        ddist_dp = d.unsqueeze(-1) * eye + c.unsqueeze(-1) * p.unsqueeze(-1) * p.unsqueeze(-2)
        distorted = d * p
    else:
        ddist_dp, distorted = None, p
    r = focal * distorted + k[..., 2:4] - observation
    dr_dp = focal.unsqueeze(-1) * (ddist_dp if ddist_dp is not None else torch.eye(2, dtype=p.dtype, device=p.device))
    dr_dcam = dr_dp @ dp_dcam
    # ∂r/∂(fx, fy, cx, cy[, k1, k2])
    columns = [torch.cat([distorted[..., 0:1], zeros], -1), torch.cat([zeros, distorted[..., 1:2]], -1),
               torch.cat([ones, zeros], -1), torch.cat([zeros, ones], -1)]
    if k.shape[-1] == 6:
        columns += [focal * rho * p, focal * rho * rho * p]
    j_intrinsics = torch.stack(columns, dim=-1)
    return r, [dr_dcam @ j_pose_cam, j_intrinsics, dr_dcam @ j_point_cam]


PinholeReprojection = residual(_pinhole, jacobians=_pinhole_jacobians)
PinholeReprojection.__name__ = PinholeReprojection.__qualname__ = "PinholeReprojection"
PinholeReprojection.__doc__ = """Pinhole (+z, optional k1, k2) reprojection error in pixels:
``PinholeReprojection(poses[c], intrinsics[c], points[p], observation=uv, loss=...)`` with intrinsics
``(fx, fy, cx, cy)`` or ``(fx, fy, cx, cy, k1, k2)``."""
