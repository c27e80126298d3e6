"""Preconditioned conjugate gradients with a block-Jacobi preconditioner: matrix-free, any device.

The matrix-vector product runs straight on the lower-triangle values (two
``index_add``s), and the preconditioner inverts each free variable's diagonal
block, so nothing is factorized: the choice for the GPU and for problems whose
Cholesky factor would not fit.  Differentiable by unrolling its iterations.
"""

from __future__ import annotations

from typing import Callable

import torch
from torch import Tensor

from ..structure import Structure
from .base import Factorization, LinearSolver


def _block_positions(structure: Structure) -> list[tuple[int, int, Tensor]]:
    """Per table: ``(offset, dim, slots)`` with ``slots: (num_free, dim, dim)`` positions of each
    diagonal block's entries in the values (upper entries mapped to their lower twins)."""
    pattern, n = structure.pattern, structure.n
    keys = pattern.cols * n + pattern.rows  # CSC order sorts these ascending
    out = []
    for table in structure.tables:
        if table.num_free == 0:
            continue
        d = table.dim
        base = table.offset + torch.arange(table.num_free).view(-1, 1, 1) * d
        a = torch.arange(d).view(1, -1, 1).expand(1, d, d)
        b = torch.arange(d).view(1, 1, -1).expand(1, d, d)
        r, c = base + torch.maximum(a, b), base + torch.minimum(a, b)
        out.append((table.offset, d, torch.searchsorted(keys, (c * n + r).reshape(-1)).view(-1, d, d)))
    return out


class CGFactorization(Factorization):
    def __init__(self, structure: Structure, values: Tensor, blocks: list, max_iterations: int, tolerance: float):
        self.values, self.max_iterations, self.tolerance = values, max_iterations, tolerance
        pattern = structure.pattern
        self.rows, self.cols = pattern.rows.to(values.device), pattern.cols.to(values.device)
        self.off = self.rows != self.cols
        self.preconditioners = []
        for offset, d, slots in blocks:
            block = values[:, slots.to(values.device)]  # (B, num_free, d, d)
            chol, info = torch.linalg.cholesky_ex(block)
            self.preconditioners.append((offset, d, chol))
        self.ok = torch.ones(values.shape[0], dtype=torch.bool, device=values.device)

    def matvec(self, x: Tensor) -> Tensor:
        v = self.values
        y = torch.zeros_like(x).index_add(1, self.rows, v * x[:, self.cols])
        return y.index_add(1, self.cols[self.off], v[:, self.off] * x[:, self.rows[self.off]])

    def precondition(self, r: Tensor) -> Tensor:
        z = torch.zeros_like(r)
        for offset, d, chol in self.preconditioners:
            count = chol.shape[1]
            part = r[:, offset : offset + count * d].reshape(-1, count, d, 1)
            z = z.index_copy(
                1, torch.arange(offset, offset + count * d, device=r.device),
                torch.cholesky_solve(part, chol).reshape(-1, count * d),
            )
        return z

    def solve(self, rhs: Tensor) -> Tensor:
        x, failed = preconditioned_cg(self.matvec, self.precondition, rhs, self.tolerance, self.max_iterations)
        self.ok = self.ok & ~failed
        return x


def preconditioned_cg(
    matvec: Callable[[Tensor], Tensor],
    precondition: Callable[[Tensor], Tensor],
    rhs: Tensor,
    tolerance: float,
    max_iterations: int,
) -> tuple[Tensor, Tensor]:
    """Batched PCG for ``H x = rhs: (B, n)`` to ``‖r‖ <= tolerance·‖rhs‖`` per problem.

    Returns ``x`` and ``failed: (B,)``, True where a search direction met non-positive curvature
    (``H`` not positive definite there); a failed problem stops where it was.
    """
    x = torch.zeros_like(rhs)
    r = rhs
    z = precondition(r)
    p, rz = z, (r * z).sum(-1)
    target = tolerance * rhs.norm(dim=-1)
    failed = torch.zeros(rhs.shape[0], dtype=torch.bool, device=rhs.device)
    for _ in range(max_iterations):
        live = (r.norm(dim=-1) > target) & ~failed
        if not bool(live.any()):
            break
        hp = matvec(p)
        php = (p * hp).sum(-1)
        failed = failed | (live & (php <= 0))
        step = live & (php > 0)
        alpha = torch.where(step, rz / torch.where(step, php, torch.ones_like(php)), torch.zeros_like(php))
        x = x + alpha.unsqueeze(-1) * p
        r = r - alpha.unsqueeze(-1) * hp
        z = precondition(r)
        rz_new = (r * z).sum(-1)
        beta = torch.where(step, rz_new / torch.where(step, rz, torch.ones_like(rz)), torch.zeros_like(rz))
        p, rz = z + beta.unsqueeze(-1) * p, rz_new
    return x, failed


class ConjugateGradient(LinearSolver):
    """PCG to ``‖H x - b‖ <= tolerance·‖b‖`` (or ``max_iterations``), block-Jacobi preconditioned."""

    name = "cg"

    def __init__(self, max_iterations: int = 500, tolerance: float = 1e-10):
        self.max_iterations, self.tolerance = max_iterations, tolerance

    def factorize(self, structure: Structure, values: Tensor) -> CGFactorization:
        key = ("cg-blocks",)
        if key not in structure.solver_cache:
            structure.solver_cache[key] = _block_positions(structure)
        return CGFactorization(structure, values, structure.solver_cache[key], self.max_iterations, self.tolerance)
