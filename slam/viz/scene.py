"""Bundle-adjustment scenes: a figure of the point cloud and camera centres (matplotlib), and a PLY of
the same scene (Open3D point cloud).

Camera poses are world-to-camera (``slam.ba``): a camera's centre is ``-Rᵀ t``.  Points farther than
``clip`` times the median distance from the cloud's median are left out of the plot (BAL scenes have a
few far outliers that would shrink everything else to a dot), not from the PLY.  Colours come from
:mod:`slam.viz.style`: the points in the colour of their state (``optimized`` for an adjusted scene),
the camera centres in ``camera`` red.  The before/after figure with frusta is
:func:`slam.viz.ba_plot.plot_bundle_adjustment`.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
from torch import Tensor

from liegeo import SE3

from . import style
from .plot import broadside_view, equal_axes_3d, save_figure

__all__ = ["CAMERA_COLOR", "POINT_COLOR", "camera_centers", "plot_scene", "save_scene_ply"]

CAMERA_COLOR = style.rgb("camera")
"""RGB of the camera centres: ``style.rgb("camera")`` as imported (the functions read the palette)."""

POINT_COLOR = style.rgb("optimized")
"""RGB of the points of an adjusted scene: ``style.rgb("optimized")`` as imported."""


def camera_centers(poses: SE3) -> np.ndarray:
    """``(C, 3)`` world positions of the cameras of world-to-camera ``poses``."""
    return poses.inverse().translation().detach().cpu().double().numpy()


def _inliers(points: np.ndarray, clip: float) -> np.ndarray:
    center = np.median(points, axis=0)
    with np.errstate(over="ignore"):  # a point at 1e200 gets distance inf: an outlier, dropped below
        distance = np.linalg.norm(points - center, axis=1)
    return distance <= clip * max(float(np.median(distance)), 1e-12)


@style.quiet_overflow
def plot_scene(path_png: str | os.PathLike, points: Tensor, poses: SE3, *, title: str | None = None,
               clip: float = 5.0, role: str = "optimized") -> Path:
    """3D scatter of ``points (P, 3)`` (in the colour of ``role``) and the camera centres of
    ``poses (C,)`` (``camera`` red), one scale on all axes (:func:`slam.viz.plot.equal_axes_3d`), seen
    broadside (:func:`slam.viz.plot.broadside_view`);
    saved in the format of the path's suffix (``.png``, ``.pdf``, ``.svg``)."""
    from matplotlib.figure import Figure

    xyz = points.detach().cpu().double().numpy()
    centers = camera_centers(poses)
    shown = xyz[_inliers(xyz, clip)] if len(xyz) else xyz.reshape(0, 3)
    fig = Figure(figsize=(8, 7), dpi=110, layout="constrained")
    ax = fig.add_subplot(projection="3d")
    ax.scatter(shown[:, 0], shown[:, 1], shown[:, 2], s=0.5, color=style.color(role), rasterized=True,
               label=f"points ({len(shown)} of {len(xyz)} drawn)")
    ax.scatter(centers[:, 0], centers[:, 1], centers[:, 2], s=12, color=style.color("camera"),
               label=f"camera centres ({len(centers)})")
    both = np.concatenate([shown, centers])
    broadside_view(ax, both)  # BAL scenes have no "up"
    equal_axes_3d(ax, both)
    for axis in "xyz":
        getattr(ax, f"set_{axis}label")(f"{axis} (scene units)", labelpad=10)
    return save_figure(fig, ax, path_png, title, legend_below=True)


def save_scene_ply(path_ply: str | os.PathLike, points: Tensor, poses: SE3, *, role: str = "optimized") -> Path:
    """One PLY point cloud: the points (in the colour of ``role``) and then the camera centres (``camera`` red);
    written with numpy (``slam.io.ply``), so no Open3D is needed."""
    from ..io.ply import write_point_cloud

    xyz = points.detach().cpu().double().numpy()
    centers = camera_centers(poses)
    colors = np.concatenate([np.tile(style.rgb(role), (len(xyz), 1)), np.tile(style.rgb("camera"), (len(centers), 1))])
    return write_point_cloud(path_ply, np.concatenate([xyz, centers]), colors)
