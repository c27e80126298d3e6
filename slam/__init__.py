"""Differentiable nonlinear least squares on Lie groups, for SLAM and robotics.

Build a ``Problem`` from vectorized ``Cost`` terms over ``Variable`` tables of
``liegeo`` groups, then ``solve`` it with Gauss-Newton, Levenberg-Marquardt or Powell's dogleg on a
dense, sparse (CHOLMOD) or conjugate-gradient linear solver; gradients of the
solution flow back to every input by unrolling, truncation or the implicit
function theorem.  Conventions: ``liegeo.conventions``.
"""

from importlib.metadata import PackageNotFoundError as _PackageNotFoundError, version as _version

try:
    __version__ = _version("liegeo-slam")
    """The installed distribution's version (``importlib.metadata``), as ``slam --version`` prints it."""
except _PackageNotFoundError:  # a source tree that was never installed
    __version__ = "0+unknown"
del _PackageNotFoundError, _version

from .costs import Cost, Prior, residual
from .doctor import Finding, ProblemError, diagnose
from .layer import SolverLayer
from .least_squares import LeastSquaresResult, least_squares
from .optim import (GNC, Dogleg, GaussNewton, GncResult, Implicit, IterationRecord, LevenbergMarquardt, SingularSystemError,
                    SolveResult, Termination, Truncated, Unroll, gnc_solve, solve)
from .problem import NonFiniteError, Problem
from .robust import (DCS, Arctan, Barron, Cauchy, Fair, GemanMcClure, Huber, L2WithDeadZone, PseudoHuber, RobustLoss,
                     Tolerant, TruncatedLeastSquares, Tukey, Welsch, parse_robust)
from .variables import Variable, VariableRef
from .weights import DiagonalWeight, ScalarWeight, SqrtInformation, Weight

__all__ = [
    "Variable", "VariableRef", "Cost", "residual", "Prior", "Problem", "NonFiniteError",
    "Weight", "ScalarWeight", "DiagonalWeight", "SqrtInformation",
    "RobustLoss", "Huber", "Cauchy", "GemanMcClure", "Tukey", "Fair", "Welsch", "DCS", "L2WithDeadZone",
    "TruncatedLeastSquares", "PseudoHuber", "Arctan", "Tolerant", "Barron", "parse_robust",
    "GaussNewton", "LevenbergMarquardt", "Dogleg", "Unroll", "Truncated", "Implicit",
    "solve", "GNC", "gnc_solve", "GncResult", "SolveResult", "IterationRecord", "Termination", "SingularSystemError", "SolverLayer",
    "least_squares", "LeastSquaresResult",
    "diagnose", "Finding", "ProblemError",
]
