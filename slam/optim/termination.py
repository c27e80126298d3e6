"""Why a solve stopped: one enum member per reason, with its message and whether it means convergence."""

from __future__ import annotations

import enum


class Termination(str, enum.Enum):
    """Why one problem of a solve stopped.

    A ``str`` whose value is the message (``Termination.FUNCTION_TOLERANCE == "function tolerance"``),
    so that logs, JSON summaries and comparisons with the message read naturally; ``converged``
    says whether the reason is a success.
    """

    GRADIENT_TOLERANCE = "gradient tolerance"
    FUNCTION_TOLERANCE = "function tolerance"
    ABSOLUTE_TOLERANCE = "absolute tolerance"
    PARAMETER_TOLERANCE = "parameter tolerance"
    COST_TOLERANCE = "cost tolerance"
    NO_FREE_VARIABLES = "no free variables"
    MAX_ITERATIONS = "maximum iterations"
    NO_DECREASE = "no decrease possible (damping exceeded its maximum)"
    TRUST_REGION_COLLAPSED = "no decrease possible (the trust region shrank below the smallest positive radius)"
    LINEAR_SOLVER_FAILED = ("the linear solver failed (not positive definite, non-finite, or an iterative breakdown) "
                            "at every damping up to the maximum")
    RANK_DEFICIENT = ("not converged: the last Gauss-Newton system was rank-deficient; its minimum-norm step was "
                      "taken and the solution is not unique")

    @property
    def converged(self) -> bool:
        return self in _CONVERGED

    @property
    def message(self) -> str:
        return self.value

    def __str__(self) -> str:
        return self.value

    def __format__(self, spec: str) -> str:
        return format(self.value, spec)


_CONVERGED = frozenset({Termination.GRADIENT_TOLERANCE, Termination.FUNCTION_TOLERANCE, Termination.ABSOLUTE_TOLERANCE,
                        Termination.PARAMETER_TOLERANCE, Termination.COST_TOLERANCE, Termination.NO_FREE_VARIABLES})
