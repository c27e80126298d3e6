"""Bundle-adjustment scenes: a PNG of the point cloud and camera centres (matplotlib), and a PLY of
the same scene (Open3D point cloud, cameras in red).

Camera poses are world-to-camera (``slam.ba``): a camera's centre is ``-Rᵀ t``.  Points farther than
``clip`` times the median distance from the cloud's median are left out of the plot's axis limits
(BAL scenes have a few far outliers that would shrink everything else to a dot), not from the PLY.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
from torch import Tensor

from liegeo import SE3

from .plot import save_figure

__all__ = ["CAMERA_COLOR", "POINT_COLOR", "camera_centers", "plot_scene", "save_scene_ply"]

CAMERA_COLOR = (1.0, 0.0, 0.0)
"""RGB of the camera centres: red."""

POINT_COLOR = (0.2, 0.2, 0.8)
"""RGB of the points: blue-grey."""


def camera_centers(poses: SE3) -> np.ndarray:
    """``(C, 3)`` world positions of the cameras of world-to-camera ``poses``."""
    return poses.inverse().translation().detach().cpu().double().numpy()


def _inliers(points: np.ndarray, clip: float) -> np.ndarray:
    center = np.median(points, axis=0)
    with np.errstate(over="ignore"):  # a point at 1e200 gets distance inf: an outlier, dropped below
        distance = np.linalg.norm(points - center, axis=1)
    return distance <= clip * max(float(np.median(distance)), 1e-12)


def plot_scene(path_png: str | os.PathLike, points: Tensor, poses: SE3, *, title: str | None = None,
               clip: float = 5.0) -> Path:
    """3D scatter of ``points (P, 3)`` and the camera centres of ``poses (C,)``, axes equal; saved as PNG."""
    from matplotlib.figure import Figure

    xyz = points.detach().cpu().double().numpy()
    centers = camera_centers(poses)
    shown = xyz[_inliers(xyz, clip)]
    fig = Figure(figsize=(8, 7), dpi=110)
    ax = fig.add_subplot(projection="3d")
    ax.scatter(shown[:, 0], shown[:, 1], shown[:, 2], s=0.5, color=POINT_COLOR, label=f"{len(xyz)} points")
    ax.scatter(centers[:, 0], centers[:, 1], centers[:, 2], s=12, color=CAMERA_COLOR, label=f"{len(centers)} cameras")
    both = np.concatenate([shown, centers])
    lo, hi = both.min(0), both.max(0)
    span = np.maximum(hi - lo, 1e-9)
    ax.set_box_aspect(tuple(span))  # equal scaling on every axis
    ax.set_xlabel("x")
    ax.set_ylabel("y")
    ax.set_zlabel("z")
    return save_figure(fig, ax, path_png, title)


def save_scene_ply(path_ply: str | os.PathLike, points: Tensor, poses: SE3) -> Path:
    """One PLY point cloud: the points (``POINT_COLOR``) and then the camera centres (``CAMERA_COLOR``)."""
    from .open3d_view import _open3d

    o3d = _open3d()
    xyz = points.detach().cpu().double().numpy()
    centers = camera_centers(poses)
    cloud = o3d.geometry.PointCloud(o3d.utility.Vector3dVector(np.concatenate([xyz, centers])))
    colors = np.concatenate([np.tile(POINT_COLOR, (len(xyz), 1)), np.tile(CAMERA_COLOR, (len(centers), 1))])
    cloud.colors = o3d.utility.Vector3dVector(colors)
    path = Path(path_ply)
    if not o3d.io.write_point_cloud(str(path), cloud):
        raise OSError(f"Open3D could not write {path}")
    return path
