"""Linear solvers for the normal equations, behind one interface (see ``base``)."""

from .base import Factorization, LinearSolver, LinearSolveSummary
from .cg import ConjugateGradient
from .dense import DenseCholesky
from .schur import SchurComplement
from .sparse import SparseCholesky

__all__ = ["ConjugateGradient", "DenseCholesky", "Factorization", "LinearSolver", "LinearSolveSummary", "SchurComplement", "SparseCholesky"]
