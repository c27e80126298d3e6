"""Nonlinear optimizers (Gauss-Newton, Levenberg-Marquardt) and their differentiation modes."""

from .config import GaussNewton, Implicit, LevenbergMarquardt, Truncated, Unroll
from .result import IterationRecord, SolveResult
from .solve import SingularSystemError, solve

__all__ = ["GaussNewton", "LevenbergMarquardt", "Unroll", "Truncated", "Implicit", "IterationRecord", "SolveResult",
           "SingularSystemError", "solve"]
