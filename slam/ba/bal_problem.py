"""``BALProblem``: the data of a bundle-adjustment problem in the BAL ("Bundle Adjustment in the Large")
camera model, and its conversion to the variables of ``slam``.

BAL cameras are 9 numbers: a Rodrigues (axis-angle) rotation ``ω``, a translation ``t``, the focal
length ``f`` and radial distortion ``k1, k2``.  A world point ``X`` is seen at pixel

    P = R(ω) X + t,   p = -P[:2] / P[2],   p' = f (1 + k1 ‖p‖² + k2 ‖p‖⁴) p

(the camera looks down its -z axis: points in front of it have ``P[2] < 0``).  The cost is
``½ Σ ‖p' - observed‖²`` in pixels, as Ceres reports it.  Points behind a camera
(``P[2] > 0``) are kept and evaluated by the same formula, as BAL's own tools and Ceres do;
``describe`` counts them.  In ``slam`` a camera is an ``SE3`` pose ``(R, t)`` (world to camera)
plus a ``Euclidean`` 3-vector of intrinsics ``(f, k1, k2)``.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import torch
from torch import Tensor

from liegeo import SE3, SO3, Euclidean


@dataclasses.dataclass(frozen=True)
class BALProblem:
    """Cameras, points and observations of a BAL problem (float64 as read)."""

    cameras: Tensor
    """``(C, 9)``: Rodrigues rotation (3), translation (3), f, k1, k2."""
    points: Tensor
    """``(P, 3)`` world points."""
    camera_index: Tensor
    """``(O,)`` int64: the camera of each observation."""
    point_index: Tensor
    """``(O,)`` int64: the point of each observation."""
    observations: Tensor
    """``(O, 2)`` observed pixels (BAL: relative to the image centre)."""
    source: str | None = None

    @property
    def num_cameras(self) -> int:
        return int(self.cameras.shape[0])

    @property
    def num_points(self) -> int:
        return int(self.points.shape[0])

    @property
    def num_observations(self) -> int:
        return int(self.observations.shape[0])

    def poses(self) -> SE3:
        """``(C,)`` world-to-camera poses ``(R(ω), t)``."""
        rotation = SO3.exp(self.cameras[:, :3])
        return SE3(torch.cat([self.cameras[:, 3:6], rotation.data], dim=-1))

    def intrinsics(self) -> Euclidean:
        """``(C,)`` 3-vectors ``(f, k1, k2)``."""
        return Euclidean(self.cameras[:, 6:9].clone())

    def with_parameters(self, poses: SE3, intrinsics: Euclidean | Tensor, points: Tensor) -> BALProblem:
        """The same problem with other camera poses, intrinsics ``(C, 3)`` and points ``(P, 3)``."""
        k = intrinsics.data if isinstance(intrinsics, Euclidean) else intrinsics
        cameras = torch.cat([poses.rotation().log(), poses.translation(), k], dim=-1).to(self.cameras.dtype)
        return dataclasses.replace(self, cameras=cameras, points=points.to(self.points.dtype))

    def camera_frame_points(self) -> Tensor:
        """``(O, 3)``: each observed point in its camera's frame, ``R X + t``."""
        return self.poses()[self.camera_index].act(self.points[self.point_index])

    def residuals(self) -> Tensor:
        """``(O, 2)`` reprojection errors in pixels (predicted - observed)."""
        from ..costs.reprojection import bal_project

        k = self.cameras[self.camera_index, 6:9]
        return bal_project(self.camera_frame_points(), k) - self.observations

    def cost(self) -> float:
        """``½ Σ ‖r‖²`` (pixels²), the cost Ceres and the BAL references report."""
        return 0.5 * float(self.residuals().square().sum())

    def describe(self) -> str:
        name = Path(self.source).name if self.source else "BAL problem"
        behind = int((self.camera_frame_points()[:, 2] > 0).sum())
        return (f"{name}: {self.num_cameras} cameras, {self.num_points} points, {self.num_observations} observations"
                + (f" ({behind} of them behind their camera)" if behind else ""))
