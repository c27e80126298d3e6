"""Batched dense Cholesky, with a minimum-norm least-squares fallback for matrices that are not positive definite."""

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


def minimum_norm_solve(matrices: Tensor, rhs: Tensor, *, method: str = "auto") -> Tensor:
    """The minimum-norm least-squares solution of ``H x = b`` for symmetric ``H: (B, n, n)``, ``b: (B, n, k)``.

    Singular values below ``n·eps·σ_max`` count as zero (the rank ``numpy.linalg.lstsq`` and
    ``matrix_rank`` use).  ``method``: ``"gelsd"`` (LAPACK's SVD-based ``lstsq``, CPU only),
    ``"eigh"`` (a symmetric eigendecomposition, any device) or ``"auto"``: gelsd on the CPU, eigh
    elsewhere (CUDA's ``lstsq`` has only ``gels``, which assumes full rank).  Not ``lstsq``'s default
    CPU driver ``gelsy``: on exactly singular matrices such as ``diag(0, 1)`` it returns zeros.
    """
    n = matrices.shape[-1]
    rcond = n * torch.finfo(matrices.dtype).eps
    if method == "auto":
        method = "gelsd" if matrices.device.type == "cpu" else "eigh"
    if method == "gelsd":
        return torch.linalg.lstsq(matrices, rhs, rcond=rcond, driver="gelsd").solution
    if method != "eigh":
        raise ValueError(f"method must be auto, gelsd or eigh, got {method!r}")
    w, v = torch.linalg.eigh(matrices)
    keep = w.abs() > rcond * w.abs().amax(-1, keepdim=True)
    inverse = torch.where(keep, 1.0 / torch.where(keep, w, torch.ones_like(w)), torch.zeros_like(w))
    return v @ (inverse.unsqueeze(-1) * (v.mT @ rhs))


class DenseFactorization(Factorization):
    """``ok`` is True exactly where Cholesky succeeded (``H`` numerically positive definite, finite).

    Elsewhere ``solve`` still answers, and ``minimum_norm`` says where: for finite matrices that are
    not positive definite (Gauss-Newton on a rank-deficient problem) it returns the minimum-norm
    least-squares solution (see ``minimum_norm_solve``); for non-finite matrices, zeros.
    """

    def __init__(self, matrices: Tensor):
        self.matrices = matrices
        self.lower, info = torch.linalg.cholesky_ex(matrices)
        finite = torch.isfinite(matrices.detach()).flatten(1).all(-1)
        self.ok = (info == 0) & finite
        self.minimum_norm = ~self.ok & finite
        """bool ``(B,)``: rows that ``solve`` answers by the minimum-norm least-squares fallback."""

    def solve(self, rhs: Tensor) -> Tensor:
        b = rhs.unsqueeze(-1)
        x = torch.cholesky_solve(b, self.lower)
        if bool(self.ok.all()):
            return x.squeeze(-1)
        # The fallback runs on every row (batched), with placeholders where the matrix is not finite
        # (LAPACK rejects NaN input); rows that Cholesky factorized keep their Cholesky solution.
        eye = torch.eye(self.matrices.shape[-1], dtype=self.matrices.dtype, device=self.matrices.device)
        safe = torch.where(self.minimum_norm.view(-1, 1, 1), self.matrices, eye)
        fallback = torch.where(self.minimum_norm.view(-1, 1, 1), minimum_norm_solve(safe, b), torch.zeros_like(b))
        return torch.where(self.ok.view(-1, 1, 1), x, fallback).squeeze(-1)


class DenseCholesky(LinearSolver):
    """Dense batched Cholesky on any device; ``O(n³)`` per problem, for small n or many small problems."""

    name = "dense"

    def factorize(self, structure: Structure, values: Tensor) -> DenseFactorization:
        return DenseFactorization(to_dense(structure, values))
