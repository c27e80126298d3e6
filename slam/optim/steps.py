"""What an optimizer is to the iteration loop (``slam.optim.loop``): a step strategy.

The loop linearizes, asks the strategy for a step, evaluates the cost at the trial point, lets the
strategy accept or reject it, relinearizes where accepted and applies the common stopping tests.
A strategy holds its own state per problem of the batch (LM's damping, dogleg's trust radius) and
adds its own stops.  Gauss-Newton, Levenberg-Marquardt and Powell's dogleg are the three here; a
new one is one module with a ``StepStrategy`` subclass and a config whose ``strategy`` returns it.
"""

from __future__ import annotations

import abc
import dataclasses
from typing import Any

import torch
from torch import Tensor

from ..linear.base import Factorization, LinearSolver
from ..problem import Problem
from .termination import Termination


@dataclasses.dataclass(frozen=True)
class Linearization:
    """The normal equations at the current point of every problem: ``h: (B, nnz)`` (lower triangle of
    ``H`` on the structure's pattern), ``g = Jᵀr: (B, n)``, ``cost: (B,)``."""

    h: Tensor
    g: Tensor
    cost: Tensor


@dataclasses.dataclass(frozen=True)
class Proposal:
    """A trial step for every problem of the batch."""

    step: Tensor
    """``(B, n)`` tangent step; zeros where ``ok`` is False (nothing non-finite is retracted)."""
    ok: Tensor
    """bool ``(B,)``: the step could be computed (the linear solve succeeded, the step is finite)."""
    predicted: Tensor | None
    """``(B,)`` decrease of the local quadratic model (None: the strategy does not judge steps)."""


def solved_step(solver: LinearSolver, problem: Problem, matrix: Tensor, g: Tensor) -> tuple[Tensor, Tensor, Factorization]:
    """``-matrix⁻¹ g`` and where it is usable: ``(step (B, n), ok (B,), factorization)``.

    Usable: the factorization succeeded and the step is finite (from finite ``H`` and ``g`` a
    non-finite step is a failed solve), or an iterative solve only missed its tolerance (an inexact
    Newton step, as in Ceres, which a gain ratio then judges).
    """
    factorization = solver.factorize(problem.structure, matrix)
    step = factorization.solve(-g)
    finite = torch.isfinite(step.detach()).all(-1)
    ok = factorization.ok & finite
    inexact = getattr(factorization, "inexact", None)
    if inexact is not None:
        ok = ok | (inexact.to(ok.device) & finite)
    return step, ok, factorization


def masked(step: Tensor, ok: Tensor) -> Tensor:
    """``step`` with zeros where ``ok: (B,)`` is False."""
    return step if bool(ok.all()) else torch.where(ok.unsqueeze(-1), step, torch.zeros_like(step))


def gain_ratio_accepts(cost: Tensor, new_cost: Tensor, predicted: Tensor, min_quality: float) -> tuple[Tensor, Tensor, Tensor]:
    """``(accept, quality, noise)`` for trust-region methods, per problem.

    ``quality`` ρ = actual / predicted decrease.  Near a minimum the predicted decrease falls below
    the cost's rounding error and ρ is noise; such a step is still the model's best, so it is taken
    (``noise``) unless the cost rose by more than rounding (otherwise the solve stalls ~sqrt(eps)
    short of the minimum).  A non-finite trial cost is never accepted.
    """
    decrease = cost - new_cost
    quality = decrease / predicted
    rounding = 16.0 * torch.finfo(cost.dtype).eps * cost.abs()
    noise = (predicted.abs() <= rounding) & (decrease >= -rounding)
    accept = torch.isfinite(new_cost) & ((quality > min_quality) | noise)
    return accept, quality, noise


class StepStrategy(abc.ABC):
    """One optimizer's step rule, with its state for each problem of the batch."""

    rejects_steps: bool = True
    """Whether steps are judged (and non-finite trial points rejected); Gauss-Newton takes every step."""

    def __init__(self, config: Any, problem: Problem, solver: LinearSolver):
        self.config, self.problem, self.solver = config, problem, solver
        self.structure = problem.structure
        self.diagonal = self.structure.pattern.diagonal.to(problem.device)
        batch, dtype, device = problem.batch_size, problem.dtype, problem.device
        self._zeros = torch.zeros(batch, dtype=dtype, device=device)

    @abc.abstractmethod
    def propose(self, lin: Linearization, active: Tensor) -> Proposal:
        """A step from the current point (``active: (B,)``: the problems still iterating)."""

    def judge(self, proposal: Proposal, lin: Linearization, new_cost: Tensor, active: Tensor) -> Tensor:
        """Which active problems take the step (bool ``(B,)``); updates the strategy's state."""
        return active & proposal.ok

    def relinearized(self, accepted: Tensor, lin: Linearization) -> None:
        """The problems in ``accepted`` moved and were linearized anew (``lin``)."""

    def stops(self, proposal: Proposal, accepted: Tensor, active: Tensor) -> list[tuple[Tensor, Termination]]:
        """The strategy's own stops after an iteration: ``(mask, why)`` pairs (none by default)."""
        return []

    def next_step_bound(self) -> Tensor | None:
        """``(B,)`` an upper bound on the length of the next step, where the strategy knows one (a trust
        radius), else None."""
        return None

    def probe(self, lin: Linearization) -> Proposal:
        """The step a fresh solve would take from ``lin`` (the initial damping or radius); used to tell
        a minimum from the edge of a region where the cost is not finite."""
        return self.propose(lin, torch.ones_like(lin.cost, dtype=torch.bool))

    def finish(self, converged: Tensor, reasons: list[Termination]) -> Tensor:
        """Final say on convergence (e.g. Gauss-Newton's rank-deficient systems); returns ``converged``."""
        return converged

    def parameter(self) -> tuple[Tensor, Tensor | None]:
        """``(damping, radius)`` for the iteration record: λ (0 where there is none) and the trust
        radius (None where there is none)."""
        return self._zeros, None
