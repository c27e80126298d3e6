"""One colour per meaning, for every figure ``slam.viz`` draws.

Every plot function looks its colours up in :data:`PALETTE` when it draws (never at import), so a
colour means the same thing in the ``slam pgo`` PNG, the ``slam eval --plot`` figure, the
``slam view`` render, the ``slam ba`` figures and the PLY exports:

==============  =============  ====================================================================
role            colour         meaning
==============  =============  ====================================================================
reference       near black     ground truth / the reference trajectory (dashed where it is a line)
initial         orange         as read from the input file: a g2o file's poses (its initial guess;
                               what ``slam view`` shows), a BAL file's cameras and points (before BA)
start           green          an initial guess computed by ``slam`` (``--init odometry|chordal``)
optimized       blue           the optimized estimate (after PGO / BA); the estimate under evaluation
loop_closure    light grey     edges with ``|i - j| > 1``
error           brown          error curves (per-pose ATE, APE over time)
camera          red            camera centres (``plot_scene``, the scene PLY)
rmse, median,   pink, olive,   horizontal lines of error statistics (the mean ± std band in the
mean            purple         mean's colour)
baseline        grey           horizontal lines of baselines in learning curves
==============  =============  ====================================================================

Odometry edges of a graph join its poses, so they take the colour of the poses they join:
``initial`` in ``slam view`` (a file's graph as stored).  Series without a meaning (seeds of a
learning curve, extra trajectories) cycle through :data:`SERIES`, which shares no colour with the
palette.  Colours are ``#rrggbb`` strings; :func:`rgb` gives the ``(r, g, b)`` floats Open3D takes.
"""

from __future__ import annotations

import functools
from typing import Any, Callable, TypeVar

import numpy as np

__all__ = ["PALETTE", "LINESTYLES", "SERIES", "ROLE_WORDS", "color", "rgb", "series_color", "role_of",
           "quiet_overflow"]

F = TypeVar("F", bound=Callable[..., Any])

PALETTE: dict[str, str] = {
    "reference": "#262626",
    "initial": "#ff7f0e",
    "start": "#2ca02c",
    "optimized": "#1f77b4",
    "loop_closure": "#a6a6a6",
    "error": "#8c564b",
    "camera": "#d62728",
    "rmse": "#e377c2",
    "median": "#bcbd22",
    "mean": "#9467bd",
    "baseline": "#666666",
}
"""Role -> ``#rrggbb``: the one mapping every figure of ``slam.viz`` takes its colours from."""

LINESTYLES: dict[str, str] = {"reference": "--"}
"""Roles drawn with a line style other than solid (the reference is dashed, as evo draws it)."""

SERIES: tuple[str, ...] = ("#17becf", "#393b79", "#8c6d31", "#7b4173", "#637939", "#843c39")
"""Colours of series that have no role (cycled); none of them is in :data:`PALETTE`."""

ROLE_WORDS: dict[str, str] = {
    "initial": "initial", "file": "initial", "before": "initial",
    "start": "start", "odometry": "start", "chordal": "start",
    "optimized": "optimized", "estimate": "optimized", "after": "optimized",
    "reference": "reference", "ground": "reference", "gt": "reference",
}
"""The first word of a trajectory's label -> its role, for labels given without an explicit role."""


def color(role: str) -> str:
    """The ``#rrggbb`` colour of ``role`` in :data:`PALETTE`."""
    try:
        return PALETTE[role]
    except KeyError:
        raise ValueError(f"unknown colour role {role!r} (one of {', '.join(PALETTE)})") from None


def rgb(role: str) -> tuple[float, float, float]:
    """``color(role)`` as ``(r, g, b)`` floats in [0, 1] (for Open3D; no matplotlib needed)."""
    value = color(role).lstrip("#")
    return tuple(int(value[k:k + 2], 16) / 255.0 for k in (0, 2, 4))  # type: ignore[return-value]


def series_color(k: int) -> str:
    """The colour of the ``k``-th series without a role (cycling :data:`SERIES`)."""
    return SERIES[k % len(SERIES)]


def role_of(label: str) -> str | None:
    """The role a label names by its first word (``"initial (file)"`` -> ``"initial"``,
    ``"chordal start"`` -> ``"start"``), else None; see :data:`ROLE_WORDS`."""
    words = label.lower().replace("(", " ").replace(":", " ").split()
    return ROLE_WORDS.get(words[0]) if words else None


def quiet_overflow(draw: F) -> F:
    """Draw with numpy's overflow and invalid-value warnings off: a hostile file's coordinates (~1e200)
    make geometry overflow to inf, which the figure drops; the warning would be a stray stderr line
    beside the command's one-line error or result."""

    @functools.wraps(draw)
    def quiet(*args: Any, **kwargs: Any) -> Any:
        with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
            return draw(*args, **kwargs)

    return quiet  # type: ignore[return-value]
