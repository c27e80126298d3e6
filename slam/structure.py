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

import numpy as np
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

    blocks = _Blocks(layouts)
    per_cost = [blocks.of_cost(layouts, arguments) for arguments in costs]
    pattern = blocks.pattern(n)
    cost_layouts = []
    for arguments, element_blocks in zip(costs, per_cost):
        columns = torch.cat([layouts[t].columns(index.cpu()) for t, index in arguments], dim=-1)  # (E, D)
        dims = [layouts[t].dim for t, _ in arguments]
        d = sum(dims)
        a, b = torch.tril_indices(d, d)
        hessian_slots, twice = blocks.slots(element_blocks, dims, a.numpy(), b.numpy(), pattern.nnz)
        gradient_slots = torch.where(columns >= 0, columns, torch.full_like(columns, n))
        multiplicity = (1.0 + torch.from_numpy(twice).double()) if bool(twice.any()) else None
        cost_layouts.append(CostLayout(dims, a * d + b, torch.from_numpy(hessian_slots).reshape(-1),
                                       gradient_slots.reshape(-1), multiplicity))

    return Structure(n, layouts, cost_layouts, pattern, key=structure_key(tables, costs))


class _Blocks:
    """The pattern of ``H`` block by block: one block per free element (its ``dim`` columns), the pairs of
    blocks that some cost instance couples, and from them the scalar pattern in CSC order and each
    instance's slots, without sorting the scalar entries (``E·D(D+1)/2`` of them: 490k on
    parking-garage, whose block pairs number 6k).  Column ``c`` of block ``C`` holds, in order, the rows
    ``c..`` of ``C``'s diagonal block (just ``c`` where no instance touches the element: the diagonal
    must be there) and then every row of each block ``R > C`` coupled with ``C``, ``R`` increasing."""

    def __init__(self, layouts: Sequence[TableLayout]):
        self.first = np.cumsum([0] + [t.num_free for t in layouts[:-1]]).astype(np.int64)  # first block of each table
        self.start = np.concatenate([t.offset + np.arange(t.num_free, dtype=np.int64) * t.dim for t in layouts]
                                    + [np.zeros(0, dtype=np.int64)])
        self.dim = np.concatenate([np.full(t.num_free, t.dim, dtype=np.int64) for t in layouts]
                                  + [np.zeros(0, dtype=np.int64)])
        self.touched = np.zeros(self.start.size, dtype=bool)
        self._keys: list[np.ndarray] = []

    def of_cost(self, layouts: Sequence[TableLayout], arguments: Sequence[tuple[int, Tensor]]) -> np.ndarray:
        """``(E, m)`` the block of each argument of each instance (-1: fixed); records the couplings."""
        nb = self.start.size
        columns = []
        for t, index in arguments:
            ordinal = layouts[t].ordinal[index.cpu()].numpy()
            columns.append(np.where(ordinal >= 0, self.first[t] + ordinal, -1))
        blocks = np.stack(columns, axis=1) if columns else np.zeros((0, 0), dtype=np.int64)
        self.touched[blocks[blocks >= 0]] = True
        a, b = np.tril_indices(blocks.shape[1], -1)
        ba, bb = blocks[:, a], blocks[:, b]
        coupled = (ba >= 0) & (bb >= 0) & (ba != bb)
        self._keys.append((np.minimum(ba, bb) * nb + np.maximum(ba, bb))[coupled])
        return blocks

    def pattern(self, n: int) -> SparsePattern:
        """The scalar pattern; keeps the block layout ``slots`` needs."""
        nb = self.start.size
        keys = np.unique(np.concatenate(self._keys + [np.zeros(0, dtype=np.int64)]))  # by (C, R)
        self.keys, pair_col, pair_row = keys, keys // max(nb, 1), keys % max(nb, 1)
        height = self.dim[pair_row]
        below = np.bincount(pair_col, weights=height, minlength=nb).astype(np.int64)  # rows of R > C in C's columns
        group_start = np.searchsorted(pair_col, np.arange(nb))
        before = np.cumsum(height) - height  # rows of the pairs before, all columns
        self.prefix = before - (before[group_start[pair_col]] if keys.size else 0)
        # per scalar column: the diagonal block's rows from the diagonal down, then the coupled blocks'
        block_of_column = np.repeat(np.arange(nb), self.dim)
        k = np.arange(n, dtype=np.int64) - self.start[block_of_column]
        self.diagonal_rows = np.where(self.touched[block_of_column], self.dim[block_of_column] - k, 1)
        count = self.diagonal_rows + below[block_of_column]
        self.colptr = np.concatenate([[0], np.cumsum(count)]).astype(np.int64)
        # Segments of consecutive rows: (position, first row, length, column).
        columns = np.arange(n, dtype=np.int64)
        widths = self.dim[pair_col]
        pair_of = np.repeat(np.arange(keys.size), widths)
        pair_k = np.arange(pair_of.size, dtype=np.int64) - np.repeat(np.cumsum(widths) - widths, widths)
        pair_column = self.start[pair_col[pair_of]] + pair_k
        position = np.concatenate([self.colptr[:-1], self.colptr[pair_column] + self.diagonal_rows[pair_column]
                                   + self.prefix[pair_of]])
        first = np.concatenate([columns, self.start[pair_row[pair_of]]])
        length = np.concatenate([self.diagonal_rows, height[pair_of]])
        column = np.concatenate([columns, pair_column])
        within = np.arange(int(length.sum()), dtype=np.int64) - np.repeat(np.cumsum(length) - length, length)
        entry = np.repeat(position, length) + within
        rows, cols = np.empty(entry.size, dtype=np.int64), np.empty(entry.size, dtype=np.int64)
        rows[entry], cols[entry] = np.repeat(first, length) + within, np.repeat(column, length)
        return SparsePattern(n, torch.from_numpy(rows), torch.from_numpy(cols))

    def slots(self, blocks: np.ndarray, dims: Sequence[int], a: np.ndarray, b: np.ndarray,
              nnz: int) -> tuple[np.ndarray, np.ndarray]:
        """Each instance's position in H's values of each local lower-triangle pair ``(a, b)`` (``nnz``
        where a variable is fixed) and where a pair lands twice (an element used by two arguments).

        Per pair of arguments ``(s, t)`` and instance, the two blocks are one block (``C = R``), or ``C <
        R`` with ``C`` the block of ``s`` or of ``t``; in each of those three cases a local entry's slot is
        ``first + prefix + k · below + c`` with ``first`` ``C``'s first position, ``below`` the rows of
        ``C``'s columns under its diagonal block, ``prefix`` the place of ``R``'s rows there (instance
        numbers) and ``k`` (the entry's column within ``C``) and ``c`` constants of the entry and the case.
        Column ``k`` of ``C`` starts at ``first + k (below + d_C) - k (k - 1) / 2``: its diagonal part is
        ``d_C - k`` rows long (``C`` is touched), then the pairs' rows at their prefix."""
        nb, m, total = self.start.size, blocks.shape[1], len(a)
        dims = np.asarray(dims, dtype=np.int64)
        argument = np.repeat(np.arange(m), dims)
        offset_in = np.arange(int(dims.sum())) - np.repeat(np.cumsum(dims) - dims, dims)  # within its argument
        slots = np.full((blocks.shape[0], total), nnz, dtype=np.int64)
        twice = np.zeros((blocks.shape[0], total), dtype=bool)
        arg_a, arg_b = argument[a], argument[b]
        for s_arg in range(m):
            for t_arg in range(m):
                entries = np.flatnonzero((arg_a == s_arg) & (arg_b == t_arg))
                if entries.size == 0:
                    continue
                ia, ib = offset_in[a[entries]], offset_in[b[entries]]
                bs, bt = blocks[:, s_arg], blocks[:, t_arg]
                valid = (bs >= 0) & (bt >= 0)
                low, high = np.where(valid, np.minimum(bs, bt), 0), np.where(valid, np.maximum(bs, bt), 0)
                state = np.where(bs == bt, 0, np.where(bs < bt, 1, 2))  # one block; C is s's; C is t's
                d_s, d_t = dims[s_arg], dims[t_arg]
                k = np.stack([np.minimum(ia, ib), ia, ib])  # (3, P_q) per case
                row = np.stack([np.abs(ia - ib), ib, ia])  # the row within C's diagonal block, or within R
                d_c = np.array([d_s, d_s, d_t])[:, None]
                tail = np.where(np.arange(3)[:, None] == 0, row, d_c - k + row)
                constant = k * d_c - (k * (k - 1)) // 2 + tail
                first = self.colptr[self.start[low]]
                below = self.colptr[self.start[low] + 1] - first - self.dim[low]
                if self.keys.size:
                    pairs = np.minimum(np.searchsorted(self.keys, low * nb + high), self.keys.size - 1)
                    prefix = np.where(state == 0, 0, self.prefix[pairs])
                else:
                    prefix = np.zeros_like(low)
                value = (first + prefix)[:, None] + k[state] * below[:, None] + constant[state]
                slots[:, entries] = np.where(valid[:, None], value, nnz)
                if s_arg != t_arg:  # one element in two arguments: the diagonal entries of its block twice
                    twice[:, entries] = (valid & (state == 0))[:, None] & (ia == ib)[None, :]
        return slots, twice


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
