"""Gauss-Newton steps: ``δ = -H⁻¹ g`` (times the step size), every step taken."""

from __future__ import annotations

import numpy as np
import torch

from .steps import Linearization, Proposal, StepStrategy, masked, solved_step, to_host
from .termination import Termination


class SingularSystemError(RuntimeError):
    """The Gauss-Newton system could not be factorized (a rank-deficient problem)."""


class GaussNewtonSteps(StepStrategy):
    """Takes the solver's minimum-norm fallback (dense) on a rank-deficient system and remembers it:
    such a solve never reports convergence (the solution is not unique).  Raises
    ``SingularSystemError`` where the system cannot be solved at all."""

    rejects_steps = False

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.rank_deficient = np.zeros(self._zeros.shape, dtype=bool)
        """bool ``(B,)``: the last system of each problem was singular."""

    def propose(self, lin: Linearization, active: np.ndarray) -> Proposal:
        step, ok, factorization = solved_step(self.solver, self.problem, lin.h, lin.g)
        fallback = getattr(factorization, "minimum_norm", None)
        usable = ok | (fallback.to(ok.device) & torch.isfinite(step.detach()).all(-1)) if fallback is not None else ok
        ok_host, usable_host = to_host(ok, usable)
        if not usable_host[active].all():
            raise SingularSystemError(
                f"the Gauss-Newton system could not be solved by the {self.solver.name} solver (singular, not positive "
                "definite, or a failed iterative solve): some direction may be unconstrained (an unfixed gauge or a "
                "variable no cost determines); fix a variable, add a prior, or use LevenbergMarquardt"
            )
        self.rank_deficient = np.where(active, ~ok_host, self.rank_deficient)
        return Proposal(masked(self.config.step_size * step, usable), usable, None)

    def finish(self, converged: np.ndarray, reasons: list[Termination]) -> np.ndarray:
        for b in np.flatnonzero(self.rank_deficient & converged).tolist():
            reasons[b] = Termination.RANK_DEFICIENT
        return converged & ~self.rank_deficient


def gauss_newton_tail(problem, solver, values, iterations: int):  # type: ignore[no-untyped-def]
    """Exactly ``iterations`` undamped Gauss-Newton steps from ``values``, every one taken, on the
    autograd graph (the truncated backward mode: at a solution LM's damping may have grown huge while
    rejecting steps that cannot lower the cost).  A singular ``JᵀJ`` (a free gauge) is regularized
    slightly.  Returns the values."""
    structure = problem.structure
    diagonal = structure.pattern.diagonal.to(problem.device)
    for _ in range(iterations):
        h, g, _ = problem.linearize(values)
        factorization = solver.factorize(structure, h)
        if not bool(factorization.ok.all()):
            scale = 1e-9 * h.detach()[:, diagonal].abs().amax(-1, keepdim=True).clamp_min(1e-30)
            factorization = solver.factorize(structure, h.index_add(1, diagonal, scale.expand(-1, structure.n)))
        step = factorization.solve(-g)
        values = problem.retract(values, masked(step, torch.isfinite(step.detach()).all(-1)))
    return values
