"""Matplotlib plots of pose-graph trajectories, of per-pose errors and of learning curves.

matplotlib is imported inside the functions (it is in the ``viz`` extra, not a core
dependency), and figures are drawn on a bare :class:`matplotlib.figure.Figure`, which
saves through the Agg canvas without touching ``pyplot`` or the global backend.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Mapping

import numpy as np
import torch
from torch import Tensor

from liegeo import SE2, SE3

__all__ = ["TRAJECTORY_COLORS", "LOOP_CLOSURE_GREY", "pose_arrays", "plot_trajectories", "plot_errors",
           "plot_learning_curves"]

TRAJECTORY_COLORS = ("tab:blue", "tab:orange", "tab:green", "tab:purple", "tab:brown", "tab:pink", "tab:cyan")
"""Line colours of the trajectories, in the order of the ``trajectories`` dict (cycled)."""

LOOP_CLOSURE_GREY = "0.6"
"""Grey of the loop-closure lines."""

_PLANAR_RATIO = 1e-3
"""A 3D trajectory whose z range is below this fraction of its x/y extent is drawn as a top view."""


def pose_arrays(poses: SE2 | SE3) -> tuple[np.ndarray, np.ndarray]:
    """Positions ``(N, 3)`` and rotation matrices ``(N, 3, 3)`` as float64 numpy arrays.

    Args:
        poses: ``SE2`` or ``SE3`` with one batch axis ``(N,)``; SE2 is lifted to the
            plane ``z = 0`` with rotations about z.
    """
    if not isinstance(poses, (SE2, SE3)):
        raise TypeError(f"expected SE2 or SE3 poses, got {type(poses).__name__}")
    if poses.ndim != 1:
        raise ValueError(f"expected one batch axis (N,), got batch shape {tuple(poses.shape)}")
    t = poses.translation().detach().to("cpu", torch.float64).numpy()
    r = poses.rotation().matrix().detach().to("cpu", torch.float64).numpy()
    n = t.shape[0]
    if isinstance(poses, SE2):
        positions = np.zeros((n, 3))
        positions[:, :2] = t
        rotations = np.zeros((n, 3, 3))
        rotations[:, :2, :2] = r
        rotations[:, 2, 2] = 1.0
        return positions, rotations
    return t.copy(), r.copy()


def _edge_arrays(edges: tuple[Tensor, Tensor], n: int) -> tuple[np.ndarray, np.ndarray]:
    i, j = (torch.as_tensor(e).detach().to("cpu", torch.int64).reshape(-1).numpy() for e in edges)
    if i.shape != j.shape:
        raise ValueError(f"edge index tensors differ in length: {i.shape[0]} and {j.shape[0]}")
    if i.size and (min(i.min(), j.min()) < 0 or max(i.max(), j.max()) >= n):
        raise ValueError(f"edge indices must lie in [0, {n}) for {n} poses")
    return i, j


def _is_planar(positions: np.ndarray) -> bool:
    """True when the z range is tiny against the x/y extent (or everything is a point)."""
    if positions.shape[0] == 0:
        return True
    span = np.ptp(positions, axis=0)
    return bool(span[2] <= _PLANAR_RATIO * max(span[0], span[1], 1e-12))


def plot_trajectories(
    path_png: str | os.PathLike,
    trajectories: Mapping[str, SE2 | SE3],
    *,
    edges: tuple[Tensor, Tensor] | None = None,
    title: str | None = None,
    three_d: bool | None = None,
) -> Path:
    """Plot trajectories as lines through their positions and save a PNG.

    Args:
        path_png: output file.
        trajectories: label -> poses ``(N,)``, e.g. ``{"initial": x0, "optimized": x1}``;
            colours follow :data:`TRAJECTORY_COLORS` in dict order.
        edges: optional ``(i, j)`` index tensors ``(E,)``; the loop closures among them
            (``|i - j| > 1``) are drawn as thin grey lines between the poses of the
            *last* trajectory.
        title: figure title.
        three_d: ``None`` (default) draws a 3D axis, with equal scaling on all three
            axes, when some trajectory is SE3 and not planar (z range below 1e-3 of its
            x/y extent), and a top view (x, y) otherwise; ``True``/``False`` force either.

    Returns:
        ``Path(path_png)``.
    """
    from matplotlib.figure import Figure

    if not trajectories:
        raise ValueError("plot_trajectories needs at least one trajectory")
    arrays = {label: pose_arrays(poses)[0] for label, poses in trajectories.items()}
    if three_d is None:
        three_d = any(isinstance(p, SE3) for p in trajectories.values()) and not all(
            _is_planar(xyz) for xyz in arrays.values()
        )
    last = list(arrays.values())[-1]
    loops = None
    if edges is not None:
        i, j = _edge_arrays(edges, last.shape[0])
        keep = np.abs(i - j) > 1
        loops = np.stack([last[i[keep]], last[j[keep]]], axis=1)  # (L, 2, 3)

    fig = Figure(figsize=(7, 6) if three_d else (7, 7), dpi=100, layout="tight")
    if three_d:
        from mpl_toolkits.mplot3d.art3d import Line3DCollection

        ax = fig.add_subplot(projection="3d")
        if loops is not None and len(loops):
            ax.add_collection3d(
                Line3DCollection(loops, colors=LOOP_CLOSURE_GREY, linewidths=0.5, label="loop closures")
            )
        for k, (label, xyz) in enumerate(arrays.items()):
            ax.plot(xyz[:, 0], xyz[:, 1], xyz[:, 2], color=TRAJECTORY_COLORS[k % len(TRAJECTORY_COLORS)],
                    linewidth=1.5, label=label)
        everything = np.concatenate(list(arrays.values()), axis=0)
        lo, hi = everything.min(axis=0), everything.max(axis=0)
        span = hi - lo
        span = np.maximum(span, 1e-3 * max(span.max(), 1e-9))  # keep a flat axis visible
        mid = 0.5 * (lo + hi)
        ax.set_xlim(mid[0] - span[0] / 2, mid[0] + span[0] / 2)
        ax.set_ylim(mid[1] - span[1] / 2, mid[1] + span[1] / 2)
        ax.set_zlim(mid[2] - span[2] / 2, mid[2] + span[2] / 2)
        ax.set_box_aspect(tuple(span))  # equal scaling: one metre is as long on every axis
        ax.set_zlabel("z")
    else:
        from matplotlib.collections import LineCollection

        ax = fig.add_subplot()
        if loops is not None and len(loops):
            ax.add_collection(LineCollection(loops[:, :, :2], colors=LOOP_CLOSURE_GREY, linewidths=0.5,
                                             label="loop closures"))
        for k, (label, xyz) in enumerate(arrays.items()):
            ax.plot(xyz[:, 0], xyz[:, 1], color=TRAJECTORY_COLORS[k % len(TRAJECTORY_COLORS)], linewidth=1.5,
                    label=label)
        ax.set_aspect("equal", adjustable="datalim")
        ax.grid(True, linewidth=0.3)
    ax.set_xlabel("x")
    ax.set_ylabel("y")
    return save_figure(fig, ax, path_png, title)


def save_figure(fig, ax, path_png: str | os.PathLike, title: str | None) -> Path:  # type: ignore[no-untyped-def]
    """Add the legend and the title, save the PNG."""
    ax.legend(loc="best", fontsize="small")
    if title:
        ax.set_title(title)
    path = Path(path_png)
    fig.savefig(path)
    return path


def plot_errors(path_png: str | os.PathLike, errors: Tensor, title: str | None = None) -> Path:
    """Plot per-pose errors (e.g. ATE translation errors) against the pose index; save a PNG.

    Args:
        path_png: output file.
        errors: ``(N,)`` non-negative errors; the RMSE and the maximum appear in the legend.
        title: figure title.

    Returns:
        ``Path(path_png)``.
    """
    from matplotlib.figure import Figure

    e = torch.as_tensor(errors).detach().to("cpu", torch.float64).reshape(-1).numpy()
    fig = Figure(figsize=(8, 3.5), dpi=100, layout="tight")
    ax = fig.add_subplot()
    ax.plot(np.arange(e.size), e, color=TRAJECTORY_COLORS[0], linewidth=1.0, label="error")
    if e.size:
        rmse = float(np.sqrt(np.mean(e * e)))
        ax.axhline(rmse, color=TRAJECTORY_COLORS[1], linewidth=1.0, linestyle="--", label=f"RMSE {rmse:.4g}")
        ax.set_xlim(0, max(e.size - 1, 1))
        ax.plot([], [], " ", label=f"max {e.max():.4g}")
    ax.set_ylim(bottom=0)
    ax.set_xlabel("pose index")
    ax.set_ylabel("error")
    ax.grid(True, linewidth=0.3)
    return save_figure(fig, ax, path_png, title)


def plot_learning_curves(path_png: str | os.PathLike, curves: Mapping[str, list[float]], *, ylabel: str,
                         baselines: Mapping[str, float] | None = None, log_scale: bool = False,
                         title: str | None = None) -> Path:
    """Training losses against the step, one line per run, with horizontal lines for baselines
    (e.g. held-out errors of methods that are not trained); save a PNG.

    Args:
        path_png: output file.
        curves: run label -> loss per training step.
        ylabel: what the loss is.
        baselines: label -> value, drawn dashed across the plot.
        log_scale: a logarithmic y axis.
        title: figure title.

    Returns:
        ``Path(path_png)``.
    """
    from matplotlib.figure import Figure

    fig = Figure(figsize=(7, 4), dpi=110, layout="tight")
    ax = fig.add_subplot()
    for k, (label, curve) in enumerate(curves.items()):
        ax.plot(curve, linewidth=1, label=label, color=TRAJECTORY_COLORS[k % len(TRAJECTORY_COLORS)])
    for (label, value), style in zip((baselines or {}).items(), ("--", ":", "-.", (0, (5, 5)))):
        ax.axhline(value, color="0.35", linestyle=style, label=label)
    if log_scale:
        ax.set_yscale("log")
    ax.set_xlabel("training step")
    ax.set_ylabel(ylabel)
    return save_figure(fig, ax, path_png, title)
