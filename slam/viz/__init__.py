"""Plots and 3D views of pose graphs (the optional ``viz`` extra: matplotlib, Open3D).

Importing this package is cheap: matplotlib and Open3D are imported inside the
functions that need them, and a missing Open3D raises an ``ImportError`` naming the
``viz`` extra.

* :mod:`slam.viz.plot`: ``plot_trajectories`` (top view, or a 3D axis with equal
  scaling for non-planar SE3), ``plot_errors`` (per-pose ATE) and ``plot_learning_curves``
  (training losses against baselines), saved as PNG.
* :mod:`slam.viz.open3d_view`: ``graph_geometry`` (one LineSet of edges, one merged
  mesh of pose frames), ``save_ply`` (``save_ply_files``), ``render_png`` (headless) and ``show``.
* :mod:`slam.viz.scene`: bundle-adjustment scenes, ``plot_scene`` (PNG) and ``save_scene_ply``.
"""

from .open3d_view import (LOOP_CLOSURE_COLOR, ODOMETRY_COLOR, RenderError, graph_geometry, ply_paths, render_png, save_ply,
                          save_ply_files, show)
from .plot import TRAJECTORY_COLORS, plot_errors, plot_learning_curves, plot_trajectories, pose_arrays
from .scene import plot_scene, save_scene_ply

__all__ = [
    "plot_trajectories", "plot_errors", "plot_learning_curves", "pose_arrays", "TRAJECTORY_COLORS",
    "graph_geometry", "save_ply", "save_ply_files", "ply_paths", "render_png", "show", "RenderError", "ODOMETRY_COLOR", "LOOP_CLOSURE_COLOR",
    "plot_scene", "save_scene_ply",
]
