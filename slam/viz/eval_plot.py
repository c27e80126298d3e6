"""The figure of ``slam eval --plot``: the trajectories after alignment and the APE over time (as ``evo_ape --plot``).

Colours come from :mod:`slam.viz.style` (one colour per meaning, the same as in every other
figure): the reference in ``reference`` near black, dashed (as evo draws it) and on top; the estimate in
``optimized`` blue (an estimate, as ``slam pgo``'s optimum is); its error over time in ``error``
brown; the statistics of the error in ``rmse``, ``median`` and ``mean`` (mean ± std is a band in
the mean's colour).  The trajectories are drawn in the plane the reference lies in (x-z for
KITTI's camera frame), else projected onto its two axes of largest spread, with equal scaling.
matplotlib is imported inside the function and the figure is drawn on a bare ``Figure`` (no
pyplot); the file's suffix (``.png``, ``.pdf``, ``.svg``) sets the format.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Mapping

import numpy as np
import torch

from ..io.trajectory import PLANES
from . import style

__all__ = ["plot_evaluation", "REFERENCE_COLOR", "ESTIMATE_COLOR", "ERROR_COLOR", "STATISTIC_COLORS"]

REFERENCE_COLOR = style.PALETTE["reference"]
"""The reference trajectory (dashed): ``style.PALETTE["reference"]`` as imported (the figure reads
the palette when it is drawn)."""

ESTIMATE_COLOR = style.PALETTE["optimized"]
"""The aligned estimate: ``style.PALETTE["optimized"]`` as imported."""

ERROR_COLOR = style.PALETTE["error"]
"""The APE curve: ``style.PALETTE["error"]`` as imported."""

STATISTIC_COLORS = {name: style.PALETTE[name] for name in ("rmse", "median", "mean")}
"""Horizontal lines of the error statistics (as imported); mean ± std is a band in the mean's colour."""

_AXES = "xyz"


@style.quiet_overflow
def plot_evaluation(path: str | os.PathLike, result: Mapping[str, Any], matched: Mapping[str, Any]) -> Path:
    """Save the two-panel figure of an ``evaluate`` result.

    Args:
        path: output file; its suffix (``.png``, ``.pdf``, ``.svg``) sets the format.
        result: ``slam.metrics.evaluate(...)``; its ``ape`` errors are plotted, its
            ``planes`` choose the view.
        matched: ``evaluate(..., return_poses=True)["matched"]``: the aligned ``estimate``
            and the ``reference`` SE3 ``(K,)``, and the estimate's ``timestamps (K,)`` or None.

    Returns:
        ``Path(path)``.
    """
    from matplotlib.figure import Figure

    from ..metrics import relation_label

    est = matched["estimate"].translation().detach().to("cpu", torch.float64).numpy()
    ref = matched["reference"].translation().detach().to("cpu", torch.float64).numpy()
    errors = torch.as_tensor(result["ape"]["errors"]).detach().to("cpu", torch.float64).numpy()
    stamps = matched.get("timestamps")
    if stamps is not None:
        time = torch.as_tensor(stamps).detach().to("cpu", torch.float64).numpy()
        time, time_label = time - time[0], "time since the first matched pose (s)"
    else:
        time, time_label = np.arange(errors.size), "pose index"
    axes, projected = _view_axes(ref, result.get("planes", (None, None))[1])
    est_name, ref_name = Path(result["est_path"]).name, Path(result["ref_path"]).name

    fig = Figure(figsize=(13, 5.6), dpi=100, layout="constrained")
    left, right = fig.subplots(1, 2, width_ratios=(1, 1.35))

    align = result["align"]
    scale = f", scale {result['ate']['scale']:.4g}" if align == "sim3" else ""
    reference, estimate = style.color("reference"), style.color("optimized")
    left.plot(ref[:, axes[0]], ref[:, axes[1]], color=reference, linestyle=style.LINESTYLES["reference"],
              linewidth=1.2, zorder=3, label=f"reference ({ref_name})")  # dashed, on top: both stay visible
    left.plot(est[:, axes[0]], est[:, axes[1]], color=estimate, linewidth=1.2,
              label=f"estimate ({est_name}), aligned")
    left.plot(ref[:1, axes[0]], ref[:1, axes[1]], linestyle="none", marker="o", markersize=6,
              color=reference, label="start")
    left.set_aspect("equal", adjustable="datalim")
    left.set_xlabel(f"{_AXES[axes[0]]} (m)")
    left.set_ylabel(f"{_AXES[axes[1]]} (m)")
    view = f"{_AXES[axes[0]]}-{_AXES[axes[1]]} {'projection' if projected else 'plane'}"
    left.set_title(f"trajectories after {align} alignment{scale} ({view})")
    left.grid(True, linewidth=0.3)
    left.legend(loc="best", fontsize="small")

    ape = result["ape"]
    label = relation_label(result["pose_relation"])
    right.plot(time, errors, color=style.color("error"), linewidth=1.0, label="APE")
    mean, std = ape["mean"], ape["std"]
    right.axhspan(mean - std, mean + std, color=style.color("mean"), alpha=0.12, linewidth=0, label="mean ± std")
    for name in ("rmse", "median", "mean"):
        color = style.color(name)
        right.axhline(ape[name], color=color, linewidth=1.6, linestyle="-" if name == "rmse" else "--",
                      label=f"{name} {ape[name]:.4g}")
    if errors.size:
        right.set_xlim(float(time[0]), float(max(time[-1], time[0] + 1e-9)))
    right.set_ylim(bottom=0)
    right.set_xlabel(time_label)
    right.set_ylabel(f"APE {label}")
    right.set_title(f"APE {label} of {result['num_matched']} matched poses, max {ape['max']:.4g}")
    right.grid(True, linewidth=0.3)
    right.legend(loc="best", fontsize="small")

    fig.suptitle(f"{est_name} against {ref_name}")
    out = Path(path)
    fig.savefig(out)
    return out


def _view_axes(positions: np.ndarray, plane: str | None) -> tuple[tuple[int, int], bool]:
    """The two axes to draw: the reference's plane if it has one, else its two of largest spread
    (in x, y, z order); and whether that is a projection of a spatial trajectory."""
    if plane in PLANES:
        normal = PLANES[plane]
        return tuple(a for a in range(3) if a != normal), False  # type: ignore[return-value]
    spread = positions.std(axis=0) if len(positions) else np.zeros(3)
    keep = sorted(np.argsort(spread)[1:].tolist())
    return (keep[0], keep[1]), True
