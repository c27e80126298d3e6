"""Plots and 3D views of pose graphs and bundle adjustment (the optional ``viz`` extra: matplotlib, Open3D).

Importing this package is cheap: matplotlib and Open3D are imported inside the functions
that need them, and a missing Open3D raises an ``ImportError`` naming the ``viz`` extra.

* :mod:`slam.viz.style`: ``PALETTE``, one colour per meaning (reference, the file's initial
  guess, a computed start, the optimized estimate, loop closures, errors, cameras, statistics),
  which every figure below takes its colours from.
* :mod:`slam.viz.plot`: ``plot_trajectories`` (top view, or a 3D axis with one scale on all
  axes for non-planar SE3), ``plot_graph`` (a graph's edges, for ``slam view --png``),
  ``plot_errors`` (per-pose ATE) and ``plot_learning_curves`` (training losses against baselines).
* :mod:`slam.viz.eval_plot`: ``plot_evaluation``, the figure of ``slam eval --plot``.
* :mod:`slam.viz.ba_plot`: ``plot_bundle_adjustment``, the before/after figure of ``slam ba``
  (points and camera frusta; reprojection-error histograms).
* :mod:`slam.viz.open3d_view`: ``graph_geometry`` (one LineSet of edges, one merged
  mesh of pose frames), ``save_ply`` (``save_ply_files``), ``render_png`` (headless, raster) and ``show``.
* :mod:`slam.viz.scene`: bundle-adjustment scenes, ``plot_scene`` and ``save_scene_ply``.

Every matplotlib figure is written in the format its path's suffix names: ``.png``, or ``.pdf``
and ``.svg`` (vector); Open3D's ``render_png`` writes raster images only and refuses the others.
"""

from . import style
from .ba_plot import plot_bundle_adjustment
from .open3d_view import (LOOP_CLOSURE_COLOR, ODOMETRY_COLOR, RenderError, graph_geometry, ply_paths, render_png, save_ply,
                          save_ply_files, show)
from .plot import TRAJECTORY_COLORS, plot_errors, plot_graph, plot_learning_curves, plot_trajectories, pose_arrays
from .scene import plot_scene, save_scene_ply
from .style import PALETTE

__all__ = [
    "PALETTE", "style",
    "plot_trajectories", "plot_graph", "plot_errors", "plot_learning_curves", "pose_arrays", "TRAJECTORY_COLORS",
    "plot_bundle_adjustment",
    "graph_geometry", "save_ply", "save_ply_files", "ply_paths", "render_png", "show", "RenderError", "ODOMETRY_COLOR",
    "LOOP_CLOSURE_COLOR", "plot_scene", "save_scene_ply",
]
