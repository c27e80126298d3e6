"""The before/after figure of ``slam ba``: the scene with camera frusta, and the reprojection errors.

Left, in 3D with one scale on all axes: a subsample of the points and a small pyramid (frustum) per
camera, as read from the BAL file (the ``initial`` colour of :mod:`slam.viz.style`) and adjusted
(``optimized``).  Right: histograms of the reprojection errors ``‖r‖`` of every observation in
pixels, before and after, on logarithmic bins when the errors span more than two decades, with
the median and the RMS of each in the legend (between 10 and 60 bins, about two per square root of
the number of observations; every finite error is counted, the ones beyond the outer edges in the
outer bins).

BAL cameras (``slam.ba.bal_problem``) map a world point ``X`` to ``P = R X + t`` and look down
their -z axis: a camera's centre is ``c = -Rᵀ t``, and its frustum joins ``c`` to the four corners
``Rᵀ((±w d/f, ±h d/f, -d) - t)`` of an image plane at depth ``d``, where ``w, h`` are the largest
``|x|, |y|`` of the camera's observed pixels (BAL pixels are relative to the image centre) and ``f``
its focal length.  BAL scenes have no unit; lengths are "scene units".  matplotlib is imported
inside the function, the figure is drawn on a bare ``Figure``, and the path's suffix sets the
format: ``.png``, or ``.pdf``/``.svg`` (vector; the point clouds alone are embedded as pixels, so
the file stays small).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch

from . import style
from .plot import broadside_view, equal_axes_3d

if TYPE_CHECKING:
    from ..ba import BALProblem

__all__ = ["plot_bundle_adjustment", "camera_frusta", "reprojection_errors"]

_LOG_BINS_ABOVE = 100.0
"""Logarithmic bins when the largest error exceeds this multiple of the smallest positive one."""


def reprojection_errors(problem: BALProblem) -> np.ndarray:
    """``(O,)`` float64: ``‖r‖`` of each observation in pixels (``problem.residuals()``)."""
    with torch.no_grad():
        return problem.residuals().norm(dim=-1).detach().to("cpu", torch.float64).numpy()


def camera_frusta(problem: BALProblem, depth: float) -> np.ndarray:
    """``(C, 8, 2, 3)`` world segments of one frustum per camera: four edges from the centre to
    the image-plane corners at ``depth`` along the viewing direction (-z), then the four sides of
    that rectangle.  A camera without observations takes the half extents of all observations."""
    with torch.no_grad():
        poses = problem.poses()
        obs = problem.observations.detach().to("cpu", torch.float64).abs().numpy()
        index = problem.camera_index.detach().to("cpu", torch.int64).numpy()
        c = problem.num_cameras
        fallback = obs.max(axis=0) if obs.size else np.ones(2)
        fallback = np.where(fallback > 0, fallback, 1.0)
        extent = np.zeros((c, 2))
        np.maximum.at(extent, index, obs)
        extent = torch.from_numpy(np.where(extent > 0, extent, fallback))  # no observation: all cameras' extent
        f = problem.cameras[:, 6].detach().to("cpu", torch.float64).abs().clamp_min(1e-12)
        half = extent / f[:, None] * depth  # (C, 2)
        signs = torch.tensor([[1.0, 1.0], [-1.0, 1.0], [-1.0, -1.0], [1.0, -1.0]], dtype=torch.float64)
        corners = torch.cat([signs[None] * half[:, None], torch.full((c, 4, 1), -float(depth), dtype=torch.float64)],
                            dim=-1)  # (C, 4, 3), in the camera frame
        inverse = poses.inverse()
        world = inverse.unsqueeze(-1).act(corners)  # (C, 4, 3)
        centre = inverse.translation()  # (C, 3): -Rᵀ t
    world, centre = world.cpu().double().numpy(), centre.cpu().double().numpy()
    rays = np.stack([np.repeat(centre[:, None], 4, axis=1), world], axis=2)  # (C, 4, 2, 3)
    sides = np.stack([world, np.roll(world, -1, axis=1)], axis=2)  # (C, 4, 2, 3)
    return np.concatenate([rays, sides], axis=1)


def _default_depth(box: np.ndarray, centres: np.ndarray) -> float:
    """3% of the longest side of ``box (M, 3)``'s extent, at most 2 nearest-camera spacings."""
    longest = float(np.ptp(box, axis=0).max()) if len(box) else 0.0
    depth = 0.03 * longest
    centres = centres[np.all(np.isfinite(centres), axis=1)]
    if 1 < len(centres) <= 5000:
        gaps = np.linalg.norm(centres[:, None] - centres[None], axis=-1)
        np.fill_diagonal(gaps, np.inf)
        spacing = float(np.median(gaps.min(axis=1)))
        if spacing > 0:
            depth = min(depth, 2.0 * spacing) if depth > 0 else 2.0 * spacing
    return depth if depth > 0 else 1.0


@style.quiet_overflow
def plot_bundle_adjustment(
    path: str | os.PathLike,
    before: BALProblem,
    after: BALProblem,
    *,
    title: str | None = None,
    max_points: int = 4000,
    quantile: float = 0.05,
    frustum_depth: float | None = None,
    seed: int = 0,
) -> Path:
    """Save the two-panel before/after figure of a bundle adjustment.

    Args:
        path: output file; its suffix sets the format (``.png``; ``.pdf`` or ``.svg`` are vector).
        before: the problem as read (its cameras and points are the initial guess).
        after: the same problem adjusted (``slam.ba.optimize(...).problem``): the same cameras,
            points and observations in the same order.
        title: figure title (``slam ba``: the file and the cost before and after).
        max_points: at most this many points are drawn per state, the same random subset
            (``seed``) before and after; every observation goes into the histograms.
        quantile: the 3D box spans, per axis, the ``quantile`` to ``1 - quantile`` range of the
            points before and after, widened to hold every camera centre; points outside it are
            not drawn (BAL scenes have far outliers that would shrink the rest to a dot), and the
            panel's title says how many are.  Problems with fewer than 100 points are not trimmed.
        frustum_depth: the frusta's depth in scene units; default 3% of the box's longest side, or
            twice the median distance from a camera to its nearest neighbour where that is
            less (frusta of cameras close together then overlap little).
        seed: of the subsample.

    BAL scenes have no "up": the 3D view puts the axis of middle extent upright and looks along
    the axis of least extent (tilted 20° up and turned 25°), so the longest one runs across.

    Returns:
        ``Path(path)``.
    """
    from matplotlib.figure import Figure
    from matplotlib.ticker import MaxNLocator
    from mpl_toolkits.mplot3d.art3d import Line3DCollection

    if (before.num_cameras, before.num_points, before.num_observations) != (
            after.num_cameras, after.num_points, after.num_observations):
        raise ValueError(f"before and after differ in size: {before.num_cameras}/{before.num_points}/"
                         f"{before.num_observations} and {after.num_cameras}/{after.num_points}/"
                         f"{after.num_observations} cameras/points/observations")
    states = (("initial", "before", before), ("optimized", "after", after))
    xyz = {name: problem.points.detach().to("cpu", torch.float64).numpy() for _, name, problem in states}
    centres = {name: problem.poses().inverse().translation().detach().to("cpu", torch.float64).numpy()
               for _, name, problem in states}
    cameras = np.concatenate([centres["before"], centres["after"]])
    cameras = cameras[np.all(np.isfinite(cameras), axis=1)]
    every = np.concatenate([xyz["before"], xyz["after"]])
    every = every[np.all(np.isfinite(every), axis=1)]
    trim = quantile if before.num_points >= 100 else 0.0  # a handful of points has no outliers to speak of
    if len(every):
        lo, hi = np.quantile(every, trim, axis=0), np.quantile(every, 1.0 - trim, axis=0)
    else:
        lo, hi = np.full(3, np.inf), np.full(3, -np.inf)
    if len(cameras):
        lo, hi = np.minimum(lo, cameras.min(axis=0)), np.maximum(hi, cameras.max(axis=0))
    inside = np.ones(before.num_points, dtype=bool)
    for name in xyz:
        inside &= np.all((xyz[name] >= lo) & (xyz[name] <= hi), axis=1)
    shown = np.flatnonzero(inside)
    if shown.size > max_points:
        shown = np.sort(np.random.default_rng(seed).choice(shown, size=int(max_points), replace=False))
    box = np.concatenate([xyz["before"][shown], xyz["after"][shown], cameras]).reshape(-1, 3)
    if frustum_depth is None:
        frustum_depth = _default_depth(box, centres["after"])

    fig = Figure(figsize=(14, 6.4), dpi=100, layout="constrained")
    grid = fig.add_gridspec(1, 2, width_ratios=(1.3, 1))
    scene = fig.add_subplot(grid[0], projection="3d", computed_zorder=False)  # draw order = zorder
    hist = fig.add_subplot(grid[1])

    size = float(np.clip(6000.0 / max(shown.size, 1), 1.5, 16.0))  # small clouds get visible dots
    frusta_points = []
    for k, (role, name, problem) in enumerate(states):
        points = xyz[name][shown]
        scene.scatter(points[:, 0], points[:, 1], points[:, 2], s=size, color=style.color(role),
                      alpha=0.35 if name == "before" else 0.6, linewidths=0, depthshade=False, rasterized=True,
                      zorder=1 + k, label=f"points {name}")
        frusta = camera_frusta(problem, frustum_depth)
        frusta_points.append(frusta.reshape(-1, 3))
        scene.add_collection3d(Line3DCollection(frusta.reshape(-1, 2, 3), colors=style.color(role),
                                                linewidths=1.0 if name == "after" else 0.8, zorder=3 + k,
                                                label=f"cameras {name} ({problem.num_cameras})"))
    everything = np.concatenate([box, *frusta_points])
    everything = everything[np.all(np.isfinite(everything), axis=1)]
    broadside_view(scene, everything)
    equal_axes_3d(scene, everything, zoom=1.15)  # after view_init: the box aspect depends on the vertical axis
    for axis in "xyz":
        getattr(scene, f"set_{axis}label")(f"{axis} (scene units)", labelpad=10)
    scene.set_title(f"{shown.size} of {before.num_points} points and {before.num_cameras} camera frusta")
    handles, labels = scene.get_legend_handles_labels()
    fig.legend(handles, labels, loc="outside lower left", ncols=4, fontsize="small", markerscale=6.0 / np.sqrt(size))

    errors = {name: reprojection_errors(problem) for _, name, problem in states}
    finite = {name: e[np.isfinite(e)] for name, e in errors.items()}
    both = np.concatenate(list(finite.values()))
    positive = both[both > 0]
    hi = float(both.max()) if both.size else 1.0
    lo = float(positive.min()) if positive.size else hi
    log_bins = positive.size > 0 and hi > _LOG_BINS_ABOVE * lo
    bins = int(np.clip(2.0 * np.sqrt(max(before.num_observations, 1)), 10, 60))
    if log_bins:
        lo = max(lo, hi * 1e-8)
        edges = np.geomspace(lo, hi, bins + 1)
    else:
        edges = np.linspace(0.0, max(hi, 1e-12), bins + 1)
    for role, name, _ in states:
        e = finite[name]
        counts, _ = np.histogram(np.clip(e, edges[0], edges[-1]), bins=edges)  # every finite error counted
        rms = float(np.sqrt(np.mean(e * e))) if e.size else float("nan")
        median = float(np.median(e)) if e.size else float("nan")
        dropped = errors[name].size - e.size
        label = f"{name}: median {median:.3g} px, RMS {rms:.3g} px" + (f" ({dropped} not finite)" if dropped else "")
        hist.stairs(counts, edges, color=style.color(role), linewidth=1.6, label=label,
                    fill=False, baseline=0)
        hist.axvline(median, color=style.color(role), linewidth=1.0, linestyle="--")
    if log_bins:
        hist.set_xscale("log")
    hist.set_xlim(edges[0], edges[-1])
    hist.set_ylim(bottom=0)
    hist.yaxis.set_major_locator(MaxNLocator(integer=True))
    hist.set_xlabel("reprojection error ‖r‖ (pixels)" + (", logarithmic bins" if log_bins else ""))
    hist.set_ylabel("observations per bin")
    hist.set_title(f"reprojection errors of {before.num_observations} observations (dashed: medians)")
    hist.grid(True, linewidth=0.3)
    hist.legend(loc="upper left", fontsize="small")
    if title:
        fig.suptitle(title)
    out = Path(path)
    fig.savefig(out)
    return out
