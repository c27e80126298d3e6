"""Bundle adjustment: the ``BALProblem`` data (BAL camera model) the LM driver, synthetic problems."""

from .bal_problem import BALProblem
from .optimize import BAResult, build, optimize
from .synthetic import synthetic_bal

__all__ = ["BALProblem", "BAResult", "build", "optimize", "synthetic_bal"]
