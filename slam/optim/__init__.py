"""Nonlinear optimizers (Gauss-Newton, Levenberg-Marquardt, dogleg) and their differentiation modes."""

from .callbacks import History, LogIterations, ProgressBar
from .config import Dogleg, GaussNewton, Implicit, LevenbergMarquardt, Truncated, Unroll
from .gauss_newton import SingularSystemError
from .gnc import GNC, GncResult, gnc_solve
from .result import IterationRecord, SolveResult
from .solve import prepare, solve
from .termination import Termination

__all__ = ["GaussNewton", "LevenbergMarquardt", "Dogleg", "Unroll", "Truncated", "Implicit", "IterationRecord",
           "SolveResult", "SingularSystemError", "Termination", "History", "LogIterations", "ProgressBar", "solve",
           "prepare", "GNC", "GncResult", "gnc_solve"]
