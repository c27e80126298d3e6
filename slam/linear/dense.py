"""Batched dense Cholesky, with a minimum-norm least-squares fallback for matrices that are not positive definite.

Memory: a dense solve of B systems of n unknowns holds about ``DENSE_COPIES = 3`` arrays of
``B · n²`` numbers at its peak (the assembled matrix, its Cholesky factor, and the assembly's
out-of-place temporary), and ``FALLBACK_COPIES = 5`` when the minimum-norm fallback runs (measured
by peak RSS at n = 3,990: 3.1-3.2 and 5.1-5.2 copies).  ``DenseCholesky`` refuses, with the
estimate, a system whose estimate exceeds its memory budget (``memory_budget`` bytes; default the
environment variable ``SLAM_DENSE_MEMORY_BUDGET`` if set, e.g. ``8GiB``, ``500MB`` or a byte count,
else ``DEFAULT_MEMORY_BUDGET`` = 4 GiB) before allocating any of it: BAL Ladybug-49 (n = 23,769)
would need 13.6 GB in float64.
"""

from __future__ import annotations

import dataclasses
import os
import re

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


MEMORY_BUDGET_ENV = "SLAM_DENSE_MEMORY_BUDGET"
DEFAULT_MEMORY_BUDGET = 4 * 2**30
"""4 GiB: the dense solver's memory budget where neither ``memory_budget`` nor the environment sets one."""
DENSE_COPIES = 3
FALLBACK_COPIES = 5

_UNITS = {"": 1, "b": 1, "k": 10**3, "kb": 10**3, "m": 10**6, "mb": 10**6, "g": 10**9, "gb": 10**9, "t": 10**12,
          "tb": 10**12, "kib": 2**10, "mib": 2**20, "gib": 2**30, "tib": 2**40}


class MemoryBudgetError(ValueError):
    """A dense solve that would need more memory than its budget; the message gives the estimate."""


def parse_size(text: str) -> int:
    """Bytes from ``"4GiB"``, ``"500MB"``, ``"1.5G"`` or ``"123456"`` (k, M, G, T decimal; KiB, MiB, GiB,
    TiB binary; any case).  Raises ``ValueError`` naming ``text``."""
    match = re.fullmatch(r"\s*([0-9]+(?:\.[0-9]*)?|\.[0-9]+)\s*([A-Za-z]*)\s*", str(text))
    unit = match.group(2).lower() if match else ""
    if match is None or unit not in _UNITS:
        raise ValueError(f"{text!r} is not a size (a number of bytes, or e.g. 500MB, 4GiB)")
    return int(float(match.group(1)) * _UNITS[unit])


def memory_budget(budget: int | None = None) -> int:
    """``budget`` if given, else ``$SLAM_DENSE_MEMORY_BUDGET`` if set, else ``DEFAULT_MEMORY_BUDGET`` (bytes)."""
    if budget is not None:
        return int(budget)
    text = os.environ.get(MEMORY_BUDGET_ENV)
    if not text:
        return DEFAULT_MEMORY_BUDGET
    try:
        size = parse_size(text)
    except ValueError as error:
        raise ValueError(f"{MEMORY_BUDGET_ENV}: {error}") from None
    if size <= 0:
        raise ValueError(f"{MEMORY_BUDGET_ENV}: {text!r} must be more than 0 bytes")
    return size


def dense_memory(n: int, batch: int = 1, dtype: torch.dtype = torch.float64, copies: int = DENSE_COPIES) -> int:
    """Bytes a dense solve of ``batch`` systems of ``n`` unknowns holds at its peak: ``copies · batch · n² ·``
    the dtype's size."""
    itemsize = torch.empty((), dtype=dtype).element_size()
    return copies * batch * n * n * itemsize


def check_dense_memory(n: int, batch: int, dtype: torch.dtype, budget: int | None = None, *,
                       copies: int = DENSE_COPIES, what: str = "the dense solve") -> None:
    """Raise ``MemoryBudgetError`` (with the estimate) when ``dense_memory(n, batch, dtype, copies)`` exceeds
    ``memory_budget(budget)``."""
    limit = memory_budget(budget)
    need = dense_memory(n, batch, dtype, copies)
    if need > limit:
        systems = f"{batch} systems" if batch > 1 else "a system"
        raise MemoryBudgetError(
            f"{what} of {systems} of {n} unknowns would need about {_size(need)} ({copies} copies of n² "
            f"{str(dtype).removeprefix('torch.')} numbers), more than its memory budget of {_size(limit)}: use a "
            f"sparse solver (linear_solver='cholmod'; slam ba --linear-solver schur), or raise the budget "
            f"(DenseCholesky(memory_budget=...), {MEMORY_BUDGET_ENV}, slam ba --dense-memory-budget)")


def _size(n: int) -> str:
    for unit, factor in (("GiB", 2**30), ("MiB", 2**20), ("KiB", 2**10)):
        if n >= factor:
            return f"{n / factor:.1f} {unit}"
    return f"{n} bytes"


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

    def __init__(self, matrices: Tensor, *, memory_budget: int | None = None):
        self.matrices = matrices
        self.memory_budget = memory_budget
        """Bytes the fallback may hold (``slam.linear.dense.memory_budget``); checked before it runs."""
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
        b_, n = self.matrices.shape[0], self.matrices.shape[-1]
        check_dense_memory(n, b_, self.matrices.dtype, self.memory_budget, copies=FALLBACK_COPIES,
                           what="the minimum-norm fallback of the dense solve")
        eye = torch.eye(self.matrices.shape[-1], dtype=self.matrices.dtype, device=self.matrices.device)
        safe = torch.where(self.minimum_norm.view(-1, 1, 1), self.matrices, eye)
        fallback = torch.where(self.minimum_norm.view(-1, 1, 1), minimum_norm_solve(safe, b), torch.zeros_like(b))
        return torch.where(self.ok.view(-1, 1, 1), x, fallback).squeeze(-1)


class DenseCholesky(LinearSolver):
    """Dense batched Cholesky on any device; ``O(n³)`` per problem, for small n or many small problems.

    ``memory_budget``: bytes the solve may hold (default ``$SLAM_DENSE_MEMORY_BUDGET``, else 4 GiB); a
    system whose estimate (see the module) is larger raises ``MemoryBudgetError`` before anything
    of its size is allocated.
    """

    name = "dense"

    @dataclasses.dataclass(frozen=True)
    class Options:
        memory_budget: int | None = None
        """Bytes; None: ``$SLAM_DENSE_MEMORY_BUDGET`` if set, else ``DEFAULT_MEMORY_BUDGET`` (read per solve)."""

        def __post_init__(self) -> None:
            if self.memory_budget is not None and not self.memory_budget > 0:
                raise ValueError(f"DenseCholesky needs memory_budget > 0 bytes, got {self.memory_budget}")

    options: Options = Options()  # also for subclasses that do not call __init__

    def __init__(self, memory_budget: int | None = None, *, options: Options | None = None):
        self.options = options if options is not None else self.Options(memory_budget)

    def factorize(self, structure: Structure, values: Tensor) -> DenseFactorization:
        budget = self.options.memory_budget
        check_dense_memory(structure.n, values.shape[0], values.dtype, budget)
        return DenseFactorization(to_dense(structure, values), memory_budget=budget)
