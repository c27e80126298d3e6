"""What a solve returns: the solution, per-problem outcome, and the per-iteration history."""

from __future__ import annotations

import dataclasses
import math
from typing import Any

from torch import Tensor

from liegeo import LieGroup

from ..variables import Variable
from .termination import Termination


@dataclasses.dataclass(frozen=True)
class IterationRecord:
    """One iteration, for every problem of the batch (tensors ``(B,)``)."""

    iteration: int
    cost: Tensor
    """Cost after the iteration (unchanged where the step was rejected)."""
    step_norm: Tensor
    damping: Tensor
    """λ used for this iteration's step (0 for Gauss-Newton and dogleg)."""
    accepted: Tensor
    seconds: float
    """Wall time since the solve started."""
    decrease: Tensor | None = None
    """Cost before minus cost at the trial point (the decrease of an accepted step)."""
    active: Tensor | None = None
    """bool ``(B,)``: the problems that were still iterating in this iteration."""
    radius: Tensor | None = None
    """The trust-region radius Δ used for this step (dogleg; None for the others)."""


@dataclasses.dataclass(frozen=True)
class SolveResult:
    """The outcome of ``slam.solve``; index it with a ``Variable`` to get that table's solution."""

    values: dict[Variable, LieGroup]
    """Solutions, shaped like the variables' values (``(N,)`` or ``(B, N)``)."""
    cost: Tensor
    """Final cost ``½ Σ ρ(‖W r‖²)`` per problem ``(B,)``."""
    initial_cost: Tensor
    iterations: Tensor
    """Iterations each problem ran ``(B,)``."""
    converged: Tensor
    """bool ``(B,)``: a tolerance was met (not the iteration limit, not a stall), and the last linear
    system was solved as positive definite (False after a Gauss-Newton minimum-norm step on a
    rank-deficient system; see ``termination``)."""
    termination: list[Termination]
    """Why each problem stopped (a ``str`` enum: ``termination[0] == "function tolerance"``)."""
    history: list[IterationRecord]
    solve_seconds: float

    def __getitem__(self, variable: Variable) -> LieGroup:
        return self.values[variable]


def json_safe(summary: dict[str, Any]) -> dict[str, Any]:
    """A copy of ``summary`` that ``json.dumps(..., allow_nan=False)`` accepts: tensors become lists or
    numbers, every non-finite float (also inside lists and dicts) becomes None, and the dotted names
    of those fields are listed under ``non_finite`` (absent when there are none)."""
    replaced: list[str] = []

    def clean(x: Any, name: str) -> Any:
        if isinstance(x, Tensor):
            x = x.tolist()
        if isinstance(x, float) and not math.isfinite(x):
            replaced.append(name)
            return None
        if isinstance(x, dict):
            return {k: clean(v, f"{name}.{k}" if name else str(k)) for k, v in x.items()}
        if isinstance(x, (list, tuple)):
            return [clean(v, f"{name}[{i}]") for i, v in enumerate(x)]
        return x

    out = clean(summary, "")
    if replaced:
        out["non_finite"] = replaced
    return out
