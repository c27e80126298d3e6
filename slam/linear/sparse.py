"""Sparse Cholesky (CHOLMOD through scikit-sparse, on the CPU) as a ``LinearSolver``."""

from __future__ import annotations

import dataclasses

import numpy as np
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

    @dataclasses.dataclass(frozen=True)
    class Options:
        backend: str = "auto"
        """``"cholmod"``, ``"scipy"`` (SuperLU) or ``"auto"`` (CHOLMOD where installed)."""
        mode: str = "auto"
        """CHOLMOD's ``"simplicial"`` or ``"supernodal"`` factorization, or ``"auto"`` by the fill."""

        def __post_init__(self) -> None:
            if self.backend not in ("auto", "cholmod", "scipy") or self.mode not in ("auto", "simplicial", "supernodal"):
                raise ValueError(f"unknown SparseCholesky options {self}")

    def __init__(self, backend: str = "auto", *, mode: str = "auto", options: Options | None = None):
        self.options = options if options is not None else self.Options(backend, mode)

    @staticmethod
    def warm_up() -> None:
        """Load the compiled kernels of the block factorization and of the fill analysis (start-up work
        that timed solves leave out: ``slam.optim.prepare``)."""
        from liegeo._kernels import numba_available

        if numba_available():
            from . import _block_cholesky, _fill, _supernodal

            _block_cholesky.warm_up()
            _supernodal.warm_up()
            _fill.cholesky_work(np.array([0, 1]), np.array([0]), np.array([0]))

    def analyze(self, structure: Structure) -> SparseCholesky:
        """Build this problem's factorizer and the symbolic analysis (shared by problems of one shape)."""
        self._factorizer(structure).analyze()
        return self

    def _factorizer(self, structure: Structure) -> BatchedSparseCholesky:
        key = ("sparse-cholesky", self.options)
        if key not in structure.solver_cache:
            structure.solver_cache[key] = BatchedSparseCholesky(structure.pattern, backend=self.backend,
                                                                symbolic_cache=structure.shared_cache,
                                                                mode=self.options.mode)
        return structure.solver_cache[key]

    def factorize(self, structure: Structure, values: Tensor) -> SparseFactorization:
        return SparseFactorization(self._factorizer(structure), values)
