"""Sparse Cholesky (CHOLMOD through scikit-sparse, on the CPU) as a ``LinearSolver``."""

from __future__ import annotations

from torch import Tensor

from ..structure import Structure
from .base import Factorization, LinearSolver
from .sparse_cholesky import BatchedSparseCholesky, sparse_solve


class SparseFactorization(Factorization):
    def __init__(self, factor: BatchedSparseCholesky, values: Tensor):
        self.factor, self.values = factor, values
        self.ok = factor.factorize(values).to(values.device)

    def solve(self, rhs: Tensor) -> Tensor:
        return sparse_solve(self.values, rhs, self.factor)


class SparseCholesky(LinearSolver):
    """CHOLMOD supernodal Cholesky; the symbolic analysis is done once per structure.

    Inputs on other devices or in float32 are factorized on the CPU in float64 and the
    solutions moved back.
    """

    name = "cholmod"

    def __init__(self, backend: str = "auto"):
        self.backend = backend

    def factorize(self, structure: Structure, values: Tensor) -> SparseFactorization:
        key = ("sparse-cholesky", self.backend)
        if key not in structure.solver_cache:
            structure.solver_cache[key] = BatchedSparseCholesky(structure.pattern, backend=self.backend,
                                                                symbolic_cache=structure.shared_cache)
        return SparseFactorization(structure.solver_cache[key], values)
