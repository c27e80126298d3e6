"""Batched dense Cholesky, with LU and then least-squares fallbacks for matrices that are not positive definite."""

from __future__ import annotations

import torch
from torch import Tensor

from ..structure import Structure
from .base import Factorization, LinearSolver


def to_dense(structure: Structure, values: Tensor) -> Tensor:
    """The symmetric matrices ``(B, n, n)`` from lower-triangle values ``(B, nnz)`` (differentiable)."""
    n, pattern = structure.n, structure.pattern
    rows, cols = pattern.rows.to(values.device), pattern.cols.to(values.device)
    off = rows != cols
    dense = torch.zeros(values.shape[0], n * n, dtype=values.dtype, device=values.device)
    dense = dense.index_add(1, rows * n + cols, values)
    dense = dense.index_add(1, (cols * n + rows)[off], values[:, off])
    return dense.view(-1, n, n)


class DenseFactorization(Factorization):
    def __init__(self, matrices: Tensor):
        self.matrices = matrices
        self.lower, info = torch.linalg.cholesky_ex(matrices)
        self.positive_definite = info == 0
        # The fallbacks keep a batch solvable (Gauss-Newton on a rank-deficient problem):
        # LU where Cholesky fails, then a least-squares (QR / SVD) solution where LU fails too.
        self.ok = torch.ones_like(self.positive_definite)

    def solve(self, rhs: Tensor) -> Tensor:
        b = rhs.unsqueeze(-1)
        x = torch.cholesky_solve(b, self.lower)
        if bool(self.positive_definite.all()):
            return x.squeeze(-1)
        lu_x, info = torch.linalg.solve_ex(self.matrices, b)
        lu_ok = (info == 0) & torch.isfinite(lu_x).flatten(1).all(-1)
        fallback = torch.where(lu_ok.view(-1, 1, 1), lu_x, torch.linalg.lstsq(self.matrices, b).solution)
        return torch.where(self.positive_definite.view(-1, 1, 1), x, fallback).squeeze(-1)


class DenseCholesky(LinearSolver):
    """Dense batched Cholesky on any device; ``O(n³)`` per problem, for small n or many small problems."""

    name = "dense"

    def factorize(self, structure: Structure, values: Tensor) -> DenseFactorization:
        return DenseFactorization(to_dense(structure, values))
