"""Preconditioned conjugate gradients with a block-Jacobi preconditioner: matrix-free, any device.

The matrix-vector product runs straight on the lower-triangle values (two
``index_add``s), and the preconditioner inverts each free variable's diagonal
block, so nothing is factorized: the choice for the GPU and for problems whose
Cholesky factor would not fit.  Differentiable by unrolling its iterations.
"""

from __future__ import annotations

import dataclasses
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
    """Nothing is factorized but the preconditioner's diagonal blocks.

    ``definite`` (and ``ok``) is False from the start where ``H`` has a non-finite value or a diagonal
    block that is not positive definite (then ``H`` is not either); each ``solve`` then sets
    ``ok = definite & ~breakdown & converged`` for its own outcome: ``breakdown`` where PCG met
    non-positive or non-finite curvature or a non-finite residual, ``converged`` where it reached
    its tolerance within its iterations.  ``inexact`` marks the problems whose only failure is the
    missed tolerance: their (finite) iterate is an inexact solution, which Levenberg-Marquardt
    may still take (its gain ratio judges the step, as with Ceres' inexact Newton steps).  Where a
    block is not positive definite, the preconditioner uses that block's diagonal instead.
    """

    def __init__(self, structure: Structure, values: Tensor, blocks: list, max_iterations: int, tolerance: float):
        self.values, self.max_iterations, self.tolerance = values, max_iterations, tolerance
        self.pattern = structure.pattern
        self.preconditioners = []
        ok = torch.isfinite(values.detach()).all(-1)
        for offset, d, slots in blocks:
            block = values[:, slots.to(values.device)]  # (B, num_free, d, d)
            chol, info = torch.linalg.cholesky_ex(block)
            failed = (info != 0) | ~torch.isfinite(chol).flatten(2).all(-1)
            if bool(failed.any()):
                # A failed block proves H is not positive definite; precondition it by its |diagonal|.
                diag = torch.diagonal(block, dim1=-2, dim2=-1).abs()
                diag = torch.where(torch.isfinite(diag) & (diag > 0), diag, torch.ones_like(diag))
                chol = torch.where(failed[..., None, None], torch.diag_embed(diag.sqrt()), chol)
                ok = ok & ~failed.any(-1)
            self.preconditioners.append((offset, d, chol))
        self.definite = self.ok = ok
        self.breakdown = torch.zeros_like(ok)
        self.converged = torch.ones_like(ok)
        self.inexact = torch.zeros_like(ok)

    def matvec(self, x: Tensor) -> Tensor:
        return self.pattern.matvec(self.values, x)

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
        """PCG's solution; where it failed (``ok`` False) its last finite iterate, not to be trusted."""
        x, self.breakdown, self.converged = preconditioned_cg(self.matvec, self.precondition, rhs, self.tolerance,
                                                              self.max_iterations)
        self.ok = self.definite & ~self.breakdown & self.converged
        self.inexact = self.definite & ~self.breakdown & ~self.converged
        return x


def preconditioned_cg(
    matvec: Callable[[Tensor], Tensor],
    precondition: Callable[[Tensor], Tensor],
    rhs: Tensor,
    tolerance: float,
    max_iterations: int,
) -> tuple[Tensor, Tensor, Tensor]:
    """Batched PCG for ``H x = rhs: (B, n)`` to ``‖r‖ <= tolerance·‖rhs‖`` per problem.

    Returns ``(x, breakdown, converged)``, the flags ``(B,)`` bool.  ``breakdown``: a search
    direction met non-positive or non-finite curvature ``pᵀHp`` (``H`` not positive definite, or
    not finite), the preconditioned residual ``rᵀz`` was not positive and finite (a preconditioner
    that is not positive definite), or ``rhs`` was not finite; such a problem stops where it was,
    with a finite ``x``.  ``converged``: the tolerance was reached (False for a breakdown).
    """
    x = torch.zeros_like(rhs)
    finite_rhs = torch.isfinite(rhs).all(-1)
    r = torch.where(finite_rhs.unsqueeze(-1), rhs, torch.zeros_like(rhs))
    z = precondition(r)
    p, rz = z, (r * z).sum(-1)
    target = tolerance * r.norm(dim=-1)
    breakdown = ~finite_rhs
    done = r.norm(dim=-1) <= target
    for _ in range(max_iterations):
        done = done | (r.norm(dim=-1) <= target)
        live = ~done & ~breakdown
        if not bool(live.any()):
            break
        hp = matvec(p)
        php = (p * hp).sum(-1)
        good = (php > 0) & torch.isfinite(php) & (rz > 0) & torch.isfinite(rz)
        breakdown = breakdown | (live & ~good)
        step = live & good
        alpha = torch.where(step, rz / torch.where(step, php, torch.ones_like(php)), torch.zeros_like(php))
        r_new = r - alpha.unsqueeze(-1) * hp
        z_new = precondition(r_new)
        rz_new = (r_new * z_new).sum(-1)
        # An overflow shows in rᵀz; such a problem keeps its last (finite) iterate.
        finite = torch.isfinite(rz_new)
        breakdown = breakdown | (step & ~finite)
        step = step & finite
        keep = step.unsqueeze(-1)
        x = torch.where(keep, x + alpha.unsqueeze(-1) * p, x)
        r, z = torch.where(keep, r_new, r), torch.where(keep, z_new, z)
        beta = torch.where(step, rz_new / torch.where(step, rz, torch.ones_like(rz)), torch.zeros_like(rz))
        p = torch.where(keep, z + beta.unsqueeze(-1) * p, p)
        rz = torch.where(step, rz_new, rz)
    done = done | (r.norm(dim=-1) <= target)
    return x, breakdown, done & ~breakdown


class ConjugateGradient(LinearSolver):
    """PCG to ``‖H x - b‖ <= tolerance·‖b‖`` (or ``max_iterations``), block-Jacobi preconditioned."""

    name = "cg"

    @dataclasses.dataclass(frozen=True)
    class Options:
        max_iterations: int = 500
        tolerance: float = 1e-10

        def __post_init__(self) -> None:
            if self.max_iterations < 1 or not self.tolerance > 0:
                raise ValueError(f"ConjugateGradient needs max_iterations >= 1 and tolerance > 0, got {self}")

    def __init__(self, max_iterations: int = 500, tolerance: float = 1e-10, *, options: Options | None = None):
        self.options = options if options is not None else self.Options(max_iterations, tolerance)

    def analyze(self, structure: Structure) -> ConjugateGradient:
        key = ("cg-blocks",)
        if key not in structure.shared_cache:  # positions only: shared by problems of one shape
            structure.shared_cache[key] = _block_positions(structure)
        return self

    def factorize(self, structure: Structure, values: Tensor) -> CGFactorization:
        self.analyze(structure)
        return CGFactorization(structure, values, structure.shared_cache[("cg-blocks",)], self.max_iterations,
                               self.tolerance)
