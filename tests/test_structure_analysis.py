"""``slam.structure.analyze`` (block by block: block pairs, then the scalar CSC pattern and each instance's
slots by formula) against the plain scalar analysis it replaces, written out here: every local entry of every
instance as a coordinate pair, de-duplicated by ``SparsePattern.from_coordinates`` with the full diagonal.
Equal patterns, slots, gradient slots and multiplicities on random shapes (several tables of dimensions 1-6,
fixed elements, elements no cost touches, costs of 1-3 arguments, an element used twice by one instance) and
on real pose graphs; and the slots assemble H as a dense reference does."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from slam.linear.sparse_cholesky import SparsePattern
from slam.structure import TableLayout, analyze

DATA = Path(__file__).resolve().parents[1] / "slam" / "data"


def scalar_analysis(tables, costs):
    """``(pattern, [(hessian_slots, gradient_slots, multiplicity)])`` entry by entry."""
    layouts, offset = [], 0
    for num, dim, fixed in tables:
        free = torch.nonzero(~fixed).squeeze(-1)
        ordinal = torch.full((num,), -1, dtype=torch.long)
        ordinal[free] = torch.arange(free.shape[0])
        layouts.append(TableLayout(offset, dim, num, free, ordinal))
        offset += free.shape[0] * dim
    n, rows, cols, per_cost = offset, [], [], []
    for arguments in costs:
        columns = torch.cat([layouts[t].columns(index) for t, index in arguments], dim=-1)
        d = columns.shape[-1]
        a, b = torch.tril_indices(d, d)
        ga, gb = columns[:, a], columns[:, b]
        valid = (ga >= 0) & (gb >= 0)
        rows.append(torch.maximum(ga, gb)[valid])
        cols.append(torch.minimum(ga, gb)[valid])
        per_cost.append((valid, columns, (ga == gb) & (a != b) & valid))
    pattern, slot = SparsePattern.from_coordinates(n, torch.cat(rows), torch.cat(cols))
    out, start = [], 0
    for valid, columns, twice in per_cost:
        count = int(valid.sum())
        slots = torch.full(valid.shape, pattern.nnz, dtype=torch.long)
        slots[valid] = slot[start:start + count]
        start += count
        multiplicity = (1.0 + twice.double()) if bool(twice.any()) else None
        out.append((slots.reshape(-1), torch.where(columns >= 0, columns, n).reshape(-1), multiplicity))
    return pattern, out


def assert_same(tables, costs):
    structure = analyze(tables, costs)
    pattern, layouts = scalar_analysis(tables, costs)
    assert structure.n == pattern.n and structure.nnz == pattern.nnz
    assert torch.equal(structure.pattern.rows, pattern.rows) and torch.equal(structure.pattern.cols, pattern.cols)
    for got, (slots, gradient_slots, multiplicity) in zip(structure.costs, layouts):
        assert torch.equal(got.hessian_slots, slots)
        assert torch.equal(got.gradient_slots, gradient_slots)
        assert (got.multiplicity is None) == (multiplicity is None)
        if multiplicity is not None:
            assert torch.equal(got.multiplicity, multiplicity)
    return structure


def random_shape(generator):
    def draw(low, high):
        return int(torch.randint(low, high, (1,), generator=generator))

    tables = []
    for _ in range(draw(1, 4)):
        num = draw(1, 9)
        tables.append((num, draw(1, 7), torch.rand(num, generator=generator) < 0.25))
    costs = []
    for _ in range(draw(1, 4)):
        arguments = []
        count = draw(0, 12)
        for _ in range(draw(1, 4)):
            t = draw(0, len(tables))
            arguments.append((t, torch.randint(0, tables[t][0], (count,), generator=generator)))
        costs.append(arguments)
    return tables, costs


def test_random_shapes_equal_the_scalar_analysis():
    generator = torch.Generator().manual_seed(0)
    checked = twice = untouched = 0
    for _ in range(400):
        tables, costs = random_shape(generator)
        if sum(int((~fixed).sum()) * dim for _, dim, fixed in tables) == 0:
            continue
        structure = assert_same(tables, costs)
        checked += 1
        twice += any(c.multiplicity is not None for c in structure.costs)
        used = torch.zeros(structure.n, dtype=torch.bool)
        for c in structure.costs:
            used[c.gradient_slots[c.gradient_slots < structure.n]] = True
        untouched += not bool(used.all())
    assert checked > 300 and twice > 20 and untouched > 20  # the cases the block formulas special-case


@pytest.mark.parametrize("name", ["intel.g2o", "tinyGrid3D.g2o"])
def test_bundled_graphs_equal_the_scalar_analysis(name):
    from slam.io import read_g2o

    path = DATA / name
    if not path.exists():
        pytest.skip(f"{name} is not bundled")
    problem, _ = read_g2o(path).problem()
    tables = [(v.num, v.tangent_dim, v.fixed) for v in problem.variables]
    costs = [[(problem.position(r.variable), r.index) for r in c.variables] for c in problem.costs]
    assert_same(tables, costs)


def test_slots_assemble_the_dense_matrix():
    """Blocks of ones added at the slots give, per entry of H, how many local entries land there: the same
    count a dense scatter of every instance's local lower triangle gives."""
    generator = torch.Generator().manual_seed(1)
    for _ in range(50):
        tables, costs = random_shape(generator)
        if sum(int((~fixed).sum()) * dim for _, dim, fixed in tables) == 0:
            continue
        structure = analyze(tables, costs)
        values = torch.zeros(structure.nnz + 1, dtype=torch.float64)
        dense = torch.zeros(structure.n + 1, structure.n + 1, dtype=torch.float64)
        for c in structure.costs:
            values.index_add_(0, c.hessian_slots, torch.ones(c.hessian_slots.shape, dtype=torch.float64))
            columns = c.gradient_slots.reshape(-1, sum(c.dims))
            d = columns.shape[-1]
            a, b = torch.tril_indices(d, d)
            r, s = torch.maximum(columns[:, a], columns[:, b]), torch.minimum(columns[:, a], columns[:, b])
            fixed = (columns[:, a] == structure.n) | (columns[:, b] == structure.n)
            dense.index_put_((torch.where(fixed, structure.n, r).reshape(-1), torch.where(fixed, structure.n, s).reshape(-1)),
                             torch.ones(r.numel(), dtype=torch.float64), accumulate=True)
        p = structure.pattern
        assert torch.equal(values[: structure.nnz], dense[p.rows, p.cols])
