"""What a solve returns: the solution, per-problem outcome, and the per-iteration history."""

from __future__ import annotations

import dataclasses
import math
from typing import Any

from torch import Tensor

from liegeo import LieGroup

from .._docs import document_fields
from ..variables import Variable
from .termination import Termination


@document_fields
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


@document_fields
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
    problem: Any = dataclasses.field(default=None, repr=False, compare=False)
    """The solved ``Problem`` (what ``covariance`` linearizes at the solution)."""
    _marginals: dict = dataclasses.field(default_factory=dict, repr=False, compare=False)

    def __getitem__(self, variable: Variable) -> LieGroup:
        return self.values[variable]

    def covariance(self, variable: Variable, indices: Any = None, *, eliminate: Variable | None = None) -> Tensor:
        """Marginal covariances of ``variable``'s elements at the solution, in its tangent order: ``(k, d, d)``
        (``(d, d)`` for one int index, a leading ``(B,)`` for a batch).  ``slam.marginals.Marginals``
        computes them (once per result and ``eliminate``: every later call reads the same inverse)."""
        return self.marginals(eliminate=eliminate).covariance(variable, indices)

    def marginals(self, *, eliminate: Variable | None = None) -> Any:
        """The ``slam.marginals.Marginals`` of the solution (``eliminate``: see there), made once."""
        if self.problem is None:
            raise ValueError("this result does not know its problem: use slam.marginals.Marginals(problem, result)")
        key = None if eliminate is None else id(eliminate)
        if key not in self._marginals:
            from ..marginals import Marginals

            self._marginals[key] = Marginals(self.problem, self, eliminate=eliminate)
        return self._marginals[key]

    def __repr__(self) -> str:
        """One line: termination, convergence, iterations, initial -> final cost, time (not the values)."""
        n = len(self.termination)
        cost = f"cost {_total(self.initial_cost):.6e} -> {_total(self.cost):.6e}"
        if n == 1:
            converged = "converged" if bool(self.converged.reshape(-1)[0]) else "not converged"
            return (f"SolveResult({self.termination[0]}, {converged}, {int(self.iterations.reshape(-1)[0])} iterations, "
                    f"{cost}, {self.solve_seconds:.3f} s)")
        return (f"SolveResult({n} problems, {int(self.converged.sum())}/{n} converged, {_span(self.iterations)} "
                f"iterations, total {cost}, {self.solve_seconds:.3f} s)")

    def summary(self, max_problems: int = 8) -> str:
        """A few lines for people: how each problem ended (termination, converged or not), its iterations,
        its initial and final cost, and the solve time.  A batch of more than ``max_problems`` problems is
        summarized: totals, the spread of iterations, the count of each termination and the problems
        that did not converge."""
        n = len(self.termination)
        converged = [bool(c) for c in self.converged.reshape(-1).tolist()]
        iterations = [int(i) for i in self.iterations.reshape(-1).tolist()]
        initial, final = _floats(self.initial_cost), _floats(self.cost)

        def outcome(b: int) -> str:
            return f"{self.termination[b]} ({'converged' if converged[b] else 'not converged'})"

        if n == 1:
            return "\n".join([
                f"SolveResult: {outcome(0)} after {iterations[0]} iterations, {self.solve_seconds:.3f} s",
                f"  cost {initial[0]:.6e} -> {final[0]:.6e}",
            ])
        lines = [f"SolveResult: {n} problems, {sum(converged)} of {n} converged, {self.solve_seconds:.3f} s"]
        if n <= max_problems:
            width = len(str(n - 1))
            lines += [f"  problem {b:>{width}}: {outcome(b)} after {iterations[b]} iterations, "
                      f"cost {initial[b]:.6e} -> {final[b]:.6e}" for b in range(n)]
            return "\n".join(lines)
        counts: dict[str, int] = {}
        for t in self.termination:
            counts[str(t)] = counts.get(str(t), 0) + 1
        failed = [b for b in range(n) if not converged[b]]
        lines += [
            f"  iterations {_span(self.iterations)} (median {int(self.iterations.reshape(-1).median())})",
            f"  total cost {_total(self.initial_cost):.6e} -> {_total(self.cost):.6e}",
            "  terminations: " + ", ".join(f"{count} {t}" for t, count in sorted(counts.items(), key=lambda kv: -kv[1])),
        ]
        if failed:
            shown = ", ".join(str(b) for b in failed[:max_problems])
            lines.append(f"  not converged: problem{'s' if len(failed) > 1 else ''} {shown}"
                         + (f" and {len(failed) - max_problems} more" if len(failed) > max_problems else ""))
        return "\n".join(lines)


def _floats(t: Tensor) -> list[float]:
    return [float(x) for x in t.detach().reshape(-1).tolist()]


def _total(t: Tensor) -> float:
    return float(sum(_floats(t)))


def _span(iterations: Tensor) -> str:
    """``"6"`` or ``"3-50"``: the smallest and largest iteration count of a batch."""
    low, high = int(iterations.min()), int(iterations.max())
    return str(low) if low == high else f"{low}-{high}"


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
