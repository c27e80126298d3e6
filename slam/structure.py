"""The sparsity structure of a problem's normal equations, analyzed once and reused.

Free variables are laid out one table after another in a global tangent vector
of length ``n`` (fixed elements get no columns).  Each cost instance touches the
columns of its variables; the lower triangle of ``H = JᵀJ`` is stored in CSC
order (``slam.linear.sparse_cholesky.SparsePattern``), and for every cost this
module precomputes where each of its per-instance contributions lands, so that
assembling ``H`` and ``g = Jᵀr`` each iteration is one ``index_add_`` per cost.

A structure depends only on the problem's shape (variable types, sizes, fixed
masks, index arrays), not on any values: ``Structure.key`` fingerprints it, and
problems with equal keys share one analysis (and one symbolic factorization).
"""

from __future__ import annotations

import dataclasses
import hashlib
from typing import Sequence

import torch
from torch import Tensor

from .linear.sparse_cholesky import SparsePattern


@dataclasses.dataclass
class TableLayout:
    """Columns of one variable table: ``offset`` + position among free elements x ``dim``."""

    offset: int
    dim: int
    num: int
    free: Tensor
    """int64 ``(num_free,)``: indices of the free elements."""
    ordinal: Tensor
    """int64 ``(num,)``: position among the free elements, -1 when fixed."""

    @property
    def num_free(self) -> int:
        return self.free.shape[0]

    def columns(self, index: Tensor) -> Tensor:
        """Global columns ``(E, dim)`` of elements ``index: (E,)``; -1 for fixed elements."""
        ordinal = self.ordinal[index].unsqueeze(-1)
        cols = self.offset + ordinal * self.dim + torch.arange(self.dim)
        return torch.where(ordinal >= 0, cols, torch.full_like(cols, -1))


@dataclasses.dataclass
class CostLayout:
    """Where one cost's per-instance contributions go."""

    dims: list[int]
    """Tangent dimension of each argument; their sum D is the width of the cost's Jacobian."""
    pairs: Tensor
    """int64 ``(P,)``: flat indices ``a·D + b`` (a >= b) of the local lower-triangle entries."""
    hessian_slots: Tensor
    """int64 ``(E·P,)``: position of each contribution in the values of H (``nnz`` = discard)."""
    gradient_slots: Tensor
    """int64 ``(E·D,)``: position of each contribution in g (``n`` = discard)."""
    multiplicity: Tensor | None
    """``(E, P)`` factor 2 where both entries of an off-diagonal local pair are the same
    global column (an instance that uses one variable twice); None when there are none."""


@dataclasses.dataclass
class Structure:
    """Layout of the free variables and the sparsity of ``H`` (lower triangle, CSC)."""

    n: int
    tables: list[TableLayout]
    costs: list[CostLayout]
    pattern: SparsePattern
    key: str
    solver_cache: dict = dataclasses.field(default_factory=dict)
    """Per linear-solver state of one problem (objects holding numeric factors, Schur layouts with
    their reduced factor), keyed by the solver: never shared between problems (``for_problem``)."""
    shared_cache: dict = dataclasses.field(default_factory=dict)
    """Stateless analyses that depend on the shape only (symbolic factorizations, block positions),
    shared by every problem of this structure."""

    def for_problem(self) -> Structure:
        """This analysis with a fresh ``solver_cache`` (the same ``shared_cache``): what one problem
        owns, so that two problems of one shape never share a stateful factor."""
        return dataclasses.replace(self, solver_cache={})

    @property
    def nnz(self) -> int:
        return self.pattern.rows.shape[0]

    def assemble(self, contributions: Sequence[tuple[Tensor, Tensor]], batch: int) -> tuple[Tensor, Tensor]:
        """Sum per-instance blocks into ``H`` values ``(B, nnz)`` and ``g`` ``(B, n)``.

        ``contributions[c] = (h, g)`` with ``h: (B, E, D, D)`` (or its lower triangle packed row by
        row, ``(B, E, D(D+1)/2)``) and ``g: (B, E, D)`` for cost c.  Differentiable (``index_add`` into fresh tensors).
        """
        ref = contributions[0][0]
        values = torch.zeros(batch, self.nnz + 1, dtype=ref.dtype, device=ref.device)
        for layout, (h, _) in zip(self.costs, contributions):
            values = self.add_hessian_blocks(values, layout, h, batch)
        return values[:, : self.nnz], self.assemble_gradient([g for _, g in contributions], batch)

    @staticmethod
    def add_hessian_blocks(values: Tensor, layout: CostLayout, h: Tensor, batch: int) -> Tensor:
        """``values (B, nnz + 1)`` plus one cost's per-instance blocks ``h`` (as ``assemble`` takes them),
        out of place (differentiable)."""
        if h.dim() == 3:  # already the packed lower triangle, in tril_indices order
            lower = h
        else:
            d = h.shape[-1]
            lower = h.reshape(*h.shape[:-2], d * d).index_select(-1, layout.pairs.to(h.device))
        if layout.multiplicity is not None:
            lower = lower * layout.multiplicity.to(lower)
        return values.index_add(1, layout.hessian_slots.to(h.device), lower.expand(batch, -1, -1).reshape(batch, -1))

    @staticmethod
    def add_gradient_blocks(gradient: Tensor, layout: CostLayout, g: Tensor, batch: int) -> Tensor:
        """``gradient (B, n + 1)`` plus one cost's per-instance ``g (B, E, D)``, out of place."""
        return gradient.index_add(1, layout.gradient_slots.to(g.device), g.expand(batch, -1, -1).reshape(batch, -1))

    def assemble_gradient(self, contributions: Sequence[Tensor], batch: int) -> Tensor:
        """Sum per-instance ``g: (B, E, D)`` (one per cost) into ``g`` ``(B, n)``, as ``assemble`` does."""
        ref = contributions[0]
        gradient = torch.zeros(batch, self.n + 1, dtype=ref.dtype, device=ref.device)
        for layout, g in zip(self.costs, contributions):
            gradient = self.add_gradient_blocks(gradient, layout, g, batch)
        return gradient[:, : self.n]


def analyze(
    tables: Sequence[tuple[int, int, Tensor]],
    costs: Sequence[Sequence[tuple[int, Tensor]]],
) -> Structure:
    """Analyze a problem given only its shape.

    Args:
        tables: per variable table, ``(num, dim, fixed)`` with ``fixed`` a bool mask ``(num,)``.
        costs: per cost, its arguments as ``(table position, index (E,))``.
    """
    layouts, offset = [], 0
    for num, dim, fixed in tables:
        fixed = fixed.cpu()
        free = torch.nonzero(~fixed).squeeze(-1)
        ordinal = torch.full((num,), -1, dtype=torch.long)
        ordinal[free] = torch.arange(free.shape[0])
        layouts.append(TableLayout(offset, dim, num, free, ordinal))
        offset += free.shape[0] * dim
    n = offset

    rows, cols, per_cost = [], [], []
    for arguments in costs:
        columns = torch.cat([layouts[t].columns(index.cpu()) for t, index in arguments], dim=-1)  # (E, D)
        dims = [layouts[t].dim for t, _ in arguments]
        d = sum(dims)
        a, b = torch.tril_indices(d, d)
        ga, gb = columns[:, a], columns[:, b]  # (E, P)
        valid = (ga >= 0) & (gb >= 0)
        rows.append(torch.maximum(ga, gb)[valid])
        cols.append(torch.minimum(ga, gb)[valid])
        twice = (ga == gb) & (a != b) & valid
        per_cost.append((dims, a * d + b, valid, columns, twice))

    pattern, slot = SparsePattern.from_coordinates(n, torch.cat(rows), torch.cat(cols))
    nnz = pattern.rows.shape[0]

    cost_layouts, start = [], 0
    for dims, pairs, valid, columns, twice in per_cost:
        count = int(valid.sum())
        hessian_slots = torch.full(valid.shape, nnz, dtype=torch.long)
        hessian_slots[valid] = slot[start : start + count]
        start += count
        gradient_slots = torch.where(columns >= 0, columns, torch.full_like(columns, n))
        multiplicity = (1.0 + twice.double()) if bool(twice.any()) else None
        cost_layouts.append(CostLayout(dims, pairs, hessian_slots.reshape(-1), gradient_slots.reshape(-1), multiplicity))

    return Structure(n, layouts, cost_layouts, pattern, key=structure_key(tables, costs))


def structure_key(tables: Sequence[tuple[int, int, Tensor]], costs: Sequence[Sequence[tuple[int, Tensor]]]) -> str:
    """A fingerprint of a problem's shape: equal keys mean the same analysis applies."""
    digest = hashlib.blake2b(digest_size=16)
    for num, dim, fixed in tables:
        digest.update(f"t{num},{dim};".encode())
        digest.update(fixed.cpu().numpy().tobytes())
    for arguments in costs:
        digest.update(b"c")
        for t, index in arguments:
            digest.update(f"a{t},{index.shape[0]};".encode())
            digest.update(index.cpu().numpy().tobytes())
    return digest.hexdigest()
