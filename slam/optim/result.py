"""What a solve returns: the solution, per-problem outcome, and the per-iteration history."""

from __future__ import annotations

import dataclasses

from torch import Tensor

from liegeo import LieGroup

from ..variables import Variable


@dataclasses.dataclass(frozen=True)
class IterationRecord:
    """One iteration, for every problem of the batch (tensors ``(B,)``)."""

    iteration: int
    cost: Tensor
    """Cost after the iteration (unchanged where the step was rejected)."""
    step_norm: Tensor
    damping: Tensor
    """λ used for this iteration's step (0 for Gauss-Newton)."""
    accepted: Tensor
    seconds: float
    """Wall time since the solve started."""


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
    """bool ``(B,)``: a tolerance was met (not the iteration limit, not a stall)."""
    termination: list[str]
    """Why each problem stopped."""
    history: list[IterationRecord]
    solve_seconds: float

    def __getitem__(self, variable: Variable) -> LieGroup:
        return self.values[variable]
