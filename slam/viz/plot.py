"""Matplotlib plots of pose-graph trajectories, of a pose graph's edges, of per-pose errors and of
learning curves.

matplotlib is imported inside the functions (it is in the ``viz`` extra, not a core dependency),
and figures are drawn on a bare :class:`matplotlib.figure.Figure`, which saves without touching
``pyplot`` or the global backend.  Every function writes the format its path's suffix names:
``.png`` (raster), ``.pdf`` or ``.svg`` (vector), or any other format matplotlib knows (an
unknown suffix raises ``ValueError``).  Colours come from :mod:`slam.viz.style` (one colour per
meaning); lengths are in metres, as g2o and TUM files hold them.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Mapping

import numpy as np
import torch
from torch import Tensor

from liegeo import SE2, SE3

from . import style

__all__ = ["TRAJECTORY_COLORS", "LOOP_CLOSURE_GREY", "pose_arrays", "plot_trajectories", "plot_graph", "plot_errors",
           "plot_learning_curves", "save_figure", "equal_axes_3d", "broadside_view"]

TRAJECTORY_COLORS = style.SERIES
"""Colours of trajectories whose label names no role (cycled): :data:`slam.viz.style.SERIES`."""

LOOP_CLOSURE_GREY = style.PALETTE["loop_closure"]
"""Grey of the loop-closure lines (``style.PALETTE["loop_closure"]`` as imported)."""

_PLANAR_RATIO = 1e-3
"""A 3D trajectory whose z range is below this fraction of its x/y extent is drawn as a top view."""

_MIN_BOX_FRACTION = 0.2
"""In 3D, an axis shorter than this fraction of the longest is given more range (same scale), so
its box side stays readable instead of collapsing."""

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


def _role_colors(labels: list[str], roles: Mapping[str, str] | None) -> list[tuple[str, str | None]]:
    """``(colour, role)`` per label: its role from ``roles``, else the one its first word names, else
    the next colour of :data:`slam.viz.style.SERIES` (role None)."""
    out, extra = [], 0
    for label in labels:
        role = (roles or {}).get(label) or style.role_of(label)
        if role is None:
            out.append((style.series_color(extra), None))
            extra += 1
        else:
            out.append((style.color(role), role))
    return out


_AZIMUTH = {("x", "y"): 0.0, ("x", "z"): 90.0, ("y", "z"): 0.0, ("y", "x"): 90.0, ("z", "x"): 0.0, ("z", "y"): 90.0}
"""(vertical axis, viewing axis) -> matplotlib's azimuth at which, with ``vertical_axis`` and no
elevation, the eye looks along the viewing axis."""


def broadside_view(ax: Any, xyz: np.ndarray) -> None:
    """Turn a 3D axis to see ``xyz (M, 3)`` broadside: the data axis of middle extent upright, the
    eye along the one of least extent (raised 20° and turned 25° for depth), so the longest runs
    across.  For scenes with no "up" (BAL); call it before :func:`equal_axes_3d`."""
    if len(xyz) < 2:
        return
    order = np.argsort(np.ptp(xyz, axis=0), kind="stable")  # least, middle, longest
    depth, vertical = "xyz"[order[0]], "xyz"[order[1]]
    from matplotlib.ticker import MaxNLocator

    ax.view_init(elev=20.0, azim=_AZIMUTH[(vertical, depth)] + 25.0, vertical_axis=vertical)
    getattr(ax, f"{depth}axis").set_major_locator(MaxNLocator(3))  # seen end-on: few ticks, no overlap


def equal_axes_3d(ax: Any, xyz: np.ndarray, *, pad: float = 0.03, zoom: float = 0.9) -> np.ndarray:
    """Give a 3D axis one scale on all three axes (a metre is as long along x, y and z) that holds
    every point of ``xyz (M, 3)``.

    Each axis's range is the data's, padded by ``pad`` of the longest on both sides; an axis
    shorter than 1/5 of the longest gets more range, centred on its data, so its box side stays
    readable; the box aspect is then set to the three ranges (``set_box_aspect``, scaled by
    ``zoom``), which is what makes the scale equal.  Non-finite rows are ignored.  Call it after any
    ``view_init(vertical_axis=...)``: matplotlib stores the box aspect for the current vertical axis.

    Returns:
        The three ranges ``(3,)`` (upper limit minus lower limit).
    """
    xyz = np.asarray(xyz, dtype=np.float64).reshape(-1, 3)
    xyz = xyz[np.all(np.isfinite(xyz), axis=1)]
    if xyz.shape[0] == 0:
        xyz = np.zeros((1, 3))
    lo, hi = xyz.min(axis=0), xyz.max(axis=0)
    span = hi - lo
    longest = max(float(span.max()), 1e-9)
    span = np.maximum(span, _MIN_BOX_FRACTION * longest) + 2 * pad * longest
    mid = 0.5 * (lo + hi)
    ax.set_xlim(mid[0] - span[0] / 2, mid[0] + span[0] / 2)
    ax.set_ylim(mid[1] - span[1] / 2, mid[1] + span[1] / 2)
    ax.set_zlim(mid[2] - span[2] / 2, mid[2] + span[2] / 2)
    # The ratios, not the ranges: matplotlib takes the norm of what it is given, which overflows for
    # ranges ~1e200 (a hostile file's coordinates).  zoom < 1: room for the tick and axis labels.
    ax.set_box_aspect(tuple(span / span.max()), zoom=zoom)
    return span


def _metre_labels(ax: Any, three_d: bool) -> None:
    ax.set_xlabel("x (m)")
    ax.set_ylabel("y (m)")
    if three_d:
        ax.set_zlabel("z (m)")
    else:
        ax.set_aspect("equal", adjustable="datalim")
        ax.grid(True, linewidth=0.3)


@style.quiet_overflow
def plot_trajectories(
    path_png: str | os.PathLike,
    trajectories: Mapping[str, SE2 | SE3],
    *,
    edges: tuple[Tensor, Tensor] | None = None,
    title: str | None = None,
    three_d: bool | None = None,
    roles: Mapping[str, str] | None = None,
    covariances: Tensor | None = None,
) -> Path:
    """Plot trajectories as lines through their positions (metres) and save the figure.

    With ``slam pgo --init chordal`` the three series are the file's guess, the computed start and
    the optimum: ``{"initial (file)": graph.poses, "chordal start": start, "optimized": x}`` draws
    them in the ``initial``, ``start`` and ``optimized`` colours of :mod:`slam.viz.style`.

    Args:
        path_png: output file; its suffix sets the format (``.png``; ``.pdf`` or ``.svg`` are vector).
        trajectories: label -> poses ``(N,)``, drawn in dict order (later ones on top).
        edges: optional ``(i, j)`` index tensors ``(E,)``; the loop closures among them
            (``|i - j| > 1``) are drawn as thin grey lines between the poses of the *last*
            trajectory.
        title: figure title (``slam pgo``: the file and chi2 before and after).
        three_d: ``None`` (default) draws a 3D axis, with one scale on all three axes
            (:func:`equal_axes_3d`), when some trajectory is SE3 and not planar (z range below
            1e-3 of its x/y extent), and a top view (x, y) otherwise; ``True``/``False`` force either.
        roles: label -> role of :data:`slam.viz.style.PALETTE` (``"reference"``, ``"initial"``,
            ``"start"``, ``"optimized"``, ...) that sets its colour.  A label not in it takes the
            role its first word names (:func:`slam.viz.style.role_of`: ``initial``/``file``,
            ``start``/``odometry``/``chordal``, ``optimized``/``estimate``, ``reference``/``gt``),
            else a colour of :data:`slam.viz.style.SERIES`, which no role has.
        covariances: optional marginal covariances ``(N, d, d)`` of the *last* trajectory's poses, in the
            tangent order of ``x · Exp(δ)`` (translation first, body frame; ``PgoResult.covariance``):
            a top view draws the 3σ ellipse of each position (``R Σ_tt Rᵀ``, x and y), for at most
            40 poses spread along the trajectory (each centre marked).

    Returns:
        ``Path(path_png)``.
    """
    from matplotlib.figure import Figure

    if not trajectories:
        raise ValueError("plot_trajectories needs at least one trajectory")
    arrays = {label: pose_arrays(poses)[0] for label, poses in trajectories.items()}
    colors = _role_colors(list(arrays), roles)
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

    fig = Figure(figsize=(7.5, 7) if three_d else (7, 7), dpi=100, layout="constrained")
    loop_style = dict(colors=style.color("loop_closure"), linewidths=0.5, zorder=1,
                      label=f"loop closures ({0 if loops is None else len(loops)})")
    if three_d:
        from mpl_toolkits.mplot3d.art3d import Line3DCollection

        ax = fig.add_subplot(projection="3d")
        if loops is not None and len(loops):
            ax.add_collection3d(Line3DCollection(loops, **loop_style))
        for (label, xyz), (color, role) in zip(arrays.items(), colors):
            ax.plot(xyz[:, 0], xyz[:, 1], xyz[:, 2], color=color, linestyle=style.LINESTYLES.get(role, "-"),
                    linewidth=1.5 if role == "optimized" else 1.1, label=label)
        equal_axes_3d(ax, np.concatenate(list(arrays.values()), axis=0))
    else:
        from matplotlib.collections import LineCollection

        ax = fig.add_subplot()
        if loops is not None and len(loops):
            ax.add_collection(LineCollection(loops[:, :, :2], **loop_style))
        for (label, xyz), (color, role) in zip(arrays.items(), colors):
            ax.plot(xyz[:, 0], xyz[:, 1], color=color, linestyle=style.LINESTYLES.get(role, "-"),
                    linewidth=1.5 if role == "optimized" else 1.1, label=label)
        if covariances is not None:
            _position_ellipses(ax, list(trajectories.values())[-1], covariances, colors[-1][0])
    _metre_labels(ax, three_d)
    return save_figure(fig, ax, path_png, title, legend_below=True)


def position_covariances(poses: SE2 | SE3, covariances: Tensor) -> np.ndarray:
    """World-frame covariances ``(N, 2, 2)`` of the poses' x, y positions from their tangent covariances
    ``(N, d, d)`` (translation first, body frame: a perturbation ``δt`` moves the position by ``R δt``)."""
    rotation = poses.matrix().detach().to("cpu", torch.float64).numpy()[:, :-1, :-1]
    k = rotation.shape[-1]
    tt = covariances.detach().to("cpu", torch.float64).numpy()[:, :k, :k]
    return (rotation @ tt @ np.swapaxes(rotation, -1, -2))[:, :2, :2]


def _position_ellipses(ax: Any, poses: SE2 | SE3, covariances: Tensor, color: str, *, sigmas: float = 3.0,
                       most: int = 40) -> None:
    """The ``sigmas``-σ ellipses of the positions of every k-th pose (k so that at most ``most`` are drawn)."""
    from matplotlib.collections import EllipseCollection

    xy = pose_arrays(poses)[0][:, :2]
    step = max(1, -(-xy.shape[0] // most))
    chosen = np.arange(0, xy.shape[0], step)
    eigenvalues, eigenvectors = np.linalg.eigh(position_covariances(poses, covariances)[chosen])
    drawn = eigenvalues[:, 1] > 0  # fixed poses have none
    radii = sigmas * np.sqrt(np.clip(eigenvalues[drawn], 0.0, None))
    angles = np.degrees(np.arctan2(eigenvectors[drawn, 1, 1], eigenvectors[drawn, 0, 1]))
    every = "every pose" if step == 1 else f"every {step}th pose"
    ax.add_collection(EllipseCollection(2 * radii[:, 1], 2 * radii[:, 0], angles, units="xy", offsets=xy[chosen][drawn],
                                        offset_transform=ax.transData, facecolors="none", edgecolors=color,
                                        linewidths=0.7, alpha=0.55, zorder=3))
    # The legend has no handler for an EllipseCollection: an empty marker stands for it.
    ax.plot([], [], linestyle="none", marker="o", markerfacecolor="none", markeredgecolor=color, alpha=0.55,
            label=f"{sigmas:g}σ position ellipses ({every})")
    ax.plot(xy[chosen][drawn, 0], xy[chosen][drawn, 1], linestyle="none", marker=".", markersize=2.5, color=color)


@style.quiet_overflow
def plot_graph(
    path: str | os.PathLike,
    poses: SE2 | SE3,
    i: Tensor,
    j: Tensor,
    *,
    name: str | None = None,
    role: str = "initial",
    three_d: bool | None = None,
) -> Path:
    """Draw a pose graph's edges (metres) with a legend, axes and a title, and save the figure
    (``slam view --png``; a still, not the interactive Open3D window).

    Odometry edges (``|i - j| = 1``) take the colour of ``role`` (``"initial"``: the poses as the
    file holds them), every other edge (loop closures) the ``loop_closure`` grey; the first pose is
    marked.  matplotlib, not Open3D, draws it, so it has a legend, units and a title, needs no
    OpenGL, and the path's suffix sets the format: ``.png``, or ``.pdf``/``.svg`` (vector).

    Args:
        path: output file.
        poses: ``SE2`` or ``SE3`` poses ``(N,)``.
        i, j: edge endpoints ``(E,)``, indices into ``poses``.
        name: what the title calls the graph (e.g. the file's name); the title is
            ``"<name>: N poses, E edges (L loop closures)"``.
        role: the :data:`slam.viz.style.PALETTE` role of the poses.
        three_d: as in :func:`plot_trajectories`.

    Returns:
        ``Path(path)``.
    """
    from matplotlib.figure import Figure

    xyz = pose_arrays(poses)[0]
    ii, jj = _edge_arrays((i, j), xyz.shape[0])
    if three_d is None:
        three_d = isinstance(poses, SE3) and not _is_planar(xyz)
    segments = np.stack([xyz[ii], xyz[jj]], axis=1)  # (E, 2, 3)
    odometry = np.abs(ii - jj) == 1
    parts = [(segments[~odometry], dict(colors=style.color("loop_closure"), linewidths=0.5, zorder=1,
                                        label=f"loop closures ({int((~odometry).sum())})")),
             (segments[odometry], dict(colors=style.color(role), linewidths=1.2, zorder=2,
                                       label=f"odometry edges ({int(odometry.sum())})"))]
    fig = Figure(figsize=(7.5, 7) if three_d else (7, 7), dpi=100, layout="constrained")
    if three_d:
        from mpl_toolkits.mplot3d.art3d import Line3DCollection

        ax = fig.add_subplot(projection="3d")
        for lines, kwargs in parts:
            if len(lines):
                ax.add_collection3d(Line3DCollection(lines, **kwargs))
        if len(xyz):
            ax.scatter(*xyz[:1].T, color=style.color(role), edgecolor="black", s=40, zorder=3, label="first pose")
        equal_axes_3d(ax, xyz)
    else:
        from matplotlib.collections import LineCollection

        ax = fig.add_subplot()
        for lines, kwargs in parts:
            if len(lines):
                ax.add_collection(LineCollection(lines[:, :, :2], **kwargs))
        if len(xyz):
            ax.plot(xyz[:1, 0], xyz[:1, 1], linestyle="none", marker="o", markersize=7, color=style.color(role),
                    markeredgecolor="black", zorder=3, label="first pose")
        ax.autoscale_view()
    _metre_labels(ax, three_d)
    title = None
    if name is not None:
        title = (f"{name}: {xyz.shape[0]} poses, {len(ii)} edges ({int((~odometry).sum())} loop closures)")
    return save_figure(fig, ax, path, title, legend_below=True)


def save_figure(fig, ax, path_png: str | os.PathLike, title: str | None, *,  # type: ignore[no-untyped-def]
                legend_below: bool = False) -> Path:
    """Add the legend (inside the axes, or in a row below them with ``legend_below``, where it hides
    no data) and the title, and save the figure in the format of the path's suffix (matplotlib
    chooses by suffix: ``.pdf`` and ``.svg`` are vector)."""
    if legend_below:
        handles, labels = ax.get_legend_handles_labels()
        fig.legend(handles, labels, loc="outside lower center", ncols=min(len(labels), 4) or 1, fontsize="small")
    else:
        ax.legend(loc="best", fontsize="small")
    if title:
        ax.set_title(title)
    path = Path(path_png)
    fig.savefig(path)
    return path


@style.quiet_overflow
def plot_errors(path_png: str | os.PathLike, errors: Tensor, title: str | None = None, *,
                ylabel: str = "error (m)") -> Path:
    """Plot per-pose errors (e.g. ATE translation errors) against the pose index; save the figure.

    Args:
        path_png: output file; its suffix sets the format (``.png``, ``.pdf``, ``.svg``).
        errors: ``(N,)`` non-negative errors, in the ``error`` colour; the RMSE (a line in the
            ``rmse`` colour) and the maximum appear in the legend.
        title: figure title.
        ylabel: what the errors are, with their unit.

    Returns:
        ``Path(path_png)``.
    """
    from matplotlib.figure import Figure

    e = torch.as_tensor(errors).detach().to("cpu", torch.float64).reshape(-1).numpy()
    fig = Figure(figsize=(8, 3.5), dpi=100, layout="constrained")
    ax = fig.add_subplot()
    ax.plot(np.arange(e.size), e, color=style.color("error"), linewidth=1.0, label="error")
    if e.size:
        rmse = float(np.sqrt(np.mean(e * e)))
        ax.axhline(rmse, color=style.color("rmse"), linewidth=1.0, linestyle="--", label=f"RMSE {rmse:.4g}")
        ax.set_xlim(0, max(e.size - 1, 1))
        ax.plot([], [], " ", color="none", label=f"max {e.max():.4g}")
    ax.set_ylim(bottom=0)
    ax.set_xlabel("pose index")
    ax.set_ylabel(ylabel)
    ax.grid(True, linewidth=0.3)
    return save_figure(fig, ax, path_png, title)


@style.quiet_overflow
def plot_learning_curves(path_png: str | os.PathLike, curves: Mapping[str, list[float]], *, ylabel: str,
                         baselines: Mapping[str, float] | None = None, log_scale: bool = False,
                         title: str | None = None) -> Path:
    """Training losses against the step, one line per run, with horizontal lines for baselines
    (e.g. held-out errors of methods that are not trained); save the figure.

    Args:
        path_png: output file; its suffix sets the format (``.png``, ``.pdf``, ``.svg``).
        curves: run label -> loss per training step; runs cycle :data:`slam.viz.style.SERIES`.
        ylabel: what the loss is.
        baselines: label -> value, drawn across the plot in the ``baseline`` grey, one dash
            pattern each.
        log_scale: a logarithmic y axis.
        title: figure title.

    Returns:
        ``Path(path_png)``.
    """
    from matplotlib.figure import Figure

    fig = Figure(figsize=(7, 4), dpi=110, layout="constrained")
    ax = fig.add_subplot()
    for k, (label, curve) in enumerate(curves.items()):
        ax.plot(curve, linewidth=1, label=label, color=style.series_color(k))
    for (label, value), dashes in zip((baselines or {}).items(), ("--", ":", "-.", (0, (5, 5)))):
        ax.axhline(value, color=style.color("baseline"), linestyle=dashes, label=label)
    if log_scale:
        ax.set_yscale("log")
    ax.set_xlabel("training step")
    ax.set_ylabel(ylabel)
    return save_figure(fig, ax, path_png, title)
