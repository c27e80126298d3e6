"""Batched sparse Cholesky: pattern assembly, solves against dense references, failure masks,
symbolic reuse, and gradients of ``sparse_solve`` against autograd through a dense solve."""

import numpy as np
import pytest
import scipy.sparse as sp
import torch

import slam.data
from liegeo import SE3
from slam.linear import sparse_cholesky as sc
from slam.linear.sparse_cholesky import BatchedSparseCholesky, SparsePattern, sparse_solve

HAS_CHOLMOD = sc._cholmod() is not None
BACKENDS = [
    pytest.param("cholmod", marks=pytest.mark.skipif(not HAS_CHOLMOD, reason="scikit-sparse not installed")),
    "scipy",
]
EPS = 1e-2  # H = JᵀJ + EPS I


def graph_edges(kind: str, size: int, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor, int]:
    """Edges ``(i, j)`` of a chain or a ``size x size`` grid, each randomly oriented (so that half
    of the off-diagonal blocks come in upper order), plus one repeated edge (duplicate pairs)."""
    if kind == "chain":
        i, j, nodes = torch.arange(size - 1), torch.arange(1, size), size
    else:
        idx = torch.arange(size * size).reshape(size, size)
        i = torch.cat([idx[:, :-1].flatten(), idx[:-1].flatten()])
        j = torch.cat([idx[:, 1:].flatten(), idx[1:].flatten()])
        nodes = size * size
    flip = torch.rand(i.shape, generator=generator) < 0.5
    i, j = torch.where(flip, j, i), torch.where(flip, i, j)
    return torch.cat([i, j[:1]]), torch.cat([j, i[:1]]), nodes


def block_problem(kind: str, size: int, d: int, batch: int, generator: torch.Generator):
    """Random SPD block-sparse ``H = JᵀJ + EPS I`` with one residual block ``(d, 2d)`` per edge.

    Returns ``pattern, values (batch, nnz), dense (batch, n, n)``: ``values`` is assembled through
    ``from_coordinates``' slots, ``dense`` straight from the dense ``J``.
    """
    ei, ej, nodes = graph_edges(kind, size, generator)
    n, edges = nodes * d, ei.numel()
    jac = torch.randn(batch, edges, d, 2 * d, generator=generator, dtype=torch.float64)
    var = torch.cat([ei[:, None] * d + torch.arange(d), ej[:, None] * d + torch.arange(d)], dim=1)  # (E, 2d)
    J = torch.zeros(batch, edges, d, n, dtype=torch.float64)
    J.scatter_(-1, var[None, :, None, :].expand(batch, edges, d, 2 * d), jac)
    J = J.reshape(batch, edges * d, n)
    dense = J.mT @ J + EPS * torch.eye(n, dtype=torch.float64)

    # Each edge contributes its (2d, 2d) block JᵀJ; the local lower triangle holds every symmetric pair
    # once (the i-j block in upper global order when j < i).
    local = torch.tril_indices(2 * d, 2 * d)
    rows, cols = var[:, local[0]], var[:, local[1]]  # (E, 2d(2d+1)/2)
    contrib = (jac.mT @ jac)[..., local[0], local[1]]  # (batch, E, 2d(2d+1)/2)
    pattern, slot = SparsePattern.from_coordinates(n, rows, cols)
    assert slot.shape == rows.shape
    values = torch.zeros(batch, pattern.nnz, dtype=torch.float64)
    values.index_add_(-1, slot.flatten(), contrib.reshape(batch, -1))
    values[:, pattern.diagonal] += EPS
    return pattern, values, dense


def dense_from_values(pattern: SparsePattern, values: torch.Tensor) -> torch.Tensor:
    """Differentiable symmetric ``(B, n, n)`` from lower-triangular values ``(B, nnz)``."""
    lower = values.new_zeros(values.shape[0], pattern.n, pattern.n)
    lower = lower.index_put((torch.arange(values.shape[0])[:, None], pattern.rows, pattern.cols), values)
    return lower + lower.mT - torch.diag_embed(torch.diagonal(lower, dim1=-2, dim2=-1))


PROBLEMS = [("chain", 6, 3), ("grid", 3, 6), ("grid", 4, 3)]


def test_from_coordinates_small_example():
    # Pairs in any order, an upper pair, duplicates, diagonal entries missing (added) and repeated.
    rows = torch.tensor([[0, 2, 1], [3, 2, 1]])
    cols = torch.tensor([[1, 0, 1], [0, 0, 0]])
    pattern, slot = SparsePattern.from_coordinates(4, rows, cols)
    expected = [(0, 0), (1, 0), (2, 0), (3, 0), (1, 1), (2, 2), (3, 3)]  # (row, col), CSC order
    assert list(zip(pattern.rows.tolist(), pattern.cols.tolist())) == expected
    assert slot.tolist() == [[1, 2, 4], [3, 2, 1]]
    assert pattern.diagonal.tolist() == [0, 4, 5, 6]
    assert pattern.indptr.tolist() == [0, 4, 5, 6, 7]
    assert pattern.indices.tolist() == [0, 1, 2, 3, 1, 2, 3]
    with pytest.raises(ValueError):
        SparsePattern.from_coordinates(4, torch.tensor([4]), torch.tensor([0]))


@pytest.mark.parametrize("kind,size,d", PROBLEMS)
def test_from_coordinates_assembles_dense(kind, size, d, generator):
    pattern, values, dense = block_problem(kind, size, d, 2, generator)
    n = pattern.n
    torch.testing.assert_close(dense_from_values(pattern, values), dense)
    # Canonical pattern: lower, strictly increasing CSC keys, exactly the structural nonzeros of H.
    assert (pattern.rows >= pattern.cols).all()
    keys = pattern.cols * n + pattern.rows
    assert (keys[1:] > keys[:-1]).all()
    assert pattern.nnz == int((torch.tril(dense[0]) != 0).sum())
    assert (pattern.rows[pattern.diagonal] == torch.arange(n)).all()
    assert (pattern.cols[pattern.diagonal] == torch.arange(n)).all()
    csc = sp.csc_matrix((np.ones(pattern.nnz), pattern.indices, pattern.indptr), shape=(n, n))
    coo = csc.tocoo()
    assert np.array_equal(coo.row, pattern.rows.numpy()) and np.array_equal(coo.col, pattern.cols.numpy())


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("kind,size,d", PROBLEMS)
@pytest.mark.parametrize("batch", [1, 3])
@pytest.mark.parametrize("k", [None, 2])
def test_solve_matches_dense(backend, kind, size, d, batch, k, generator):
    pattern, values, dense = block_problem(kind, size, d, batch, generator)
    shape = (batch, pattern.n) if k is None else (batch, pattern.n, k)
    rhs = torch.randn(shape, generator=generator, dtype=torch.float64)
    factor = BatchedSparseCholesky(pattern, backend)
    assert factor.factorize(values).tolist() == [True] * batch
    x = factor.solve(rhs)
    expected = torch.linalg.solve(dense, rhs if k else rhs[..., None])
    torch.testing.assert_close(x, expected if k else expected[..., 0], rtol=1e-9, atol=1e-9)
    # float32 in, float32 out, close to float64 (the computation itself is float64).
    ok32 = factor.factorize(values.float())
    assert ok32.dtype == torch.bool and ok32.all()
    x32 = factor.solve(rhs.float())
    assert x32.dtype == torch.float32
    torch.testing.assert_close(x32.double(), x, rtol=1e-3, atol=1e-3)


@pytest.mark.parametrize("backend", BACKENDS)
def test_failed_matrices_are_masked(backend, generator):
    pattern, values, dense = block_problem("grid", 3, 3, 4, generator)
    values = values.clone()
    values[2] = 0.0  # singular: every backend must flag it
    values[3, 5] = float("nan")
    rhs = torch.randn(4, pattern.n, generator=generator, dtype=torch.float64)
    factor = BatchedSparseCholesky(pattern, backend)
    assert factor.factorize(values).tolist() == [True, True, False, False]
    x = factor.solve(rhs)
    torch.testing.assert_close(x[:2], torch.linalg.solve(dense[:2], rhs[:2]), rtol=1e-9, atol=1e-9)
    assert (x[2:] == 0).all()


@pytest.mark.skipif(not HAS_CHOLMOD, reason="scikit-sparse not installed")
@pytest.mark.parametrize("mode", ["simplicial", "supernodal", "block", "auto"])
def test_cholmod_detects_indefinite(generator, mode):
    # simplicial CHOLMOD factorizes LDLᵀ, which succeeds on this matrix: its pivots must be checked
    pattern, values, dense = block_problem("chain", 6, 3, 3, generator)
    values = values.clone()
    values[1, pattern.diagonal[4]] = -1.0  # a negative diagonal entry: nonsingular but not PD
    rhs = torch.randn(3, pattern.n, generator=generator, dtype=torch.float64)
    factor = BatchedSparseCholesky(pattern, "cholmod", mode=mode)
    assert factor.factorize(values).tolist() == [True, False, True]
    x = factor.solve(rhs)
    torch.testing.assert_close(x[0::2], torch.linalg.solve(dense[0::2], rhs[0::2]), rtol=1e-9, atol=1e-9)
    assert (x[1] == 0).all()
    # The factor that failed is reused: a PD matrix in that slot now factorizes.
    assert factor.factorize(values[0::2].flip(0).repeat(2, 1)).all()


@pytest.mark.skipif(not HAS_CHOLMOD, reason="scikit-sparse not installed")
@pytest.mark.parametrize("kind, size, d, mode", [("grid", 3, 6, "simplicial"), ("grid", 3, 6, "supernodal"),
                                                 ("grid", 4, 6, "block"), ("chain", 6, 3, "block"),
                                                 ("chain", 6, 3, "auto"), ("grid", 4, 3, "auto")])
def test_solve_matches_dense_in_every_cholmod_mode(generator, kind, size, d, mode):
    pattern, values, dense = block_problem(kind, size, d, 2, generator)
    rhs = torch.randn(2, pattern.n, 3, generator=generator, dtype=torch.float64)
    factor = BatchedSparseCholesky(pattern, "cholmod", mode=mode)
    assert factor.factorize(values).all()
    assert factor.mode == (mode if mode != "auto" else "block")  # d x d blocks with little fill
    torch.testing.assert_close(factor.solve(rhs), torch.linalg.solve(dense, rhs), rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(factor.solve(rhs[..., 0]), torch.linalg.solve(dense, rhs[..., 0]), rtol=1e-10,
                               atol=1e-12)


@pytest.mark.parametrize("backend", BACKENDS)
def test_block_factorization_without_and_with_cholmod_orderings(generator, backend):
    """The block factorization takes its ordering from CHOLMOD, or from SuperLU where CHOLMOD is
    missing; a scalar pattern that is not made of complete blocks falls back to the scalar factorizers."""
    pattern, values, dense = block_problem("grid", 4, 3, 2, generator)
    factor = BatchedSparseCholesky(pattern, backend)
    rhs = torch.randn(2, pattern.n, generator=generator, dtype=torch.float64)
    assert factor.factorize(values).all() and factor.mode == "block"
    torch.testing.assert_close(factor.solve(rhs), torch.linalg.solve(dense, rhs), rtol=1e-10, atol=1e-12)
    ragged, _ = SparsePattern.from_coordinates(5, torch.tensor([1, 4]), torch.tensor([0, 2]))  # n = 5, no blocks
    lone = BatchedSparseCholesky(ragged, backend)
    v = torch.zeros(1, ragged.nnz, dtype=torch.float64)
    v[0, ragged.diagonal] = 2.0
    assert lone.factorize(v).all() and lone.mode != "block"


@pytest.mark.skipif(not HAS_CHOLMOD, reason="scikit-sparse not installed")
@pytest.mark.parametrize("kind, size, d", [("chain", 9, 3), ("grid", 5, 3), ("grid", 4, 6)])
def test_cholesky_work_counts_the_factor_cholmod_makes(generator, kind, size, d):
    from slam.linear._fill import cholesky_work

    pattern, values, _ = block_problem(kind, size, d, 1, generator)
    matrix = sp.csc_matrix((values[0].numpy(), pattern.indices, pattern.indptr), (pattern.n, pattern.n))
    factor = sc._cholmod().analyze(matrix, mode="simplicial")
    factor.cholesky_inplace(matrix)
    counts = np.diff(factor.L().indptr).astype(float)
    for perm in (factor.P(), np.arange(pattern.n), np.random.default_rng(0).permutation(pattern.n)):
        lnz, flops = cholesky_work(pattern.indptr, pattern.indices, perm)
        if perm is factor.P():
            assert (lnz, flops) == (factor.L().nnz, float(np.square(counts).sum()))
        else:  # against a dense factorization of the permuted matrix (no numerical cancellation here)
            full = (matrix + matrix.T - sp.diags(matrix.diagonal())).toarray()[np.ix_(perm, perm)]
            lower = np.abs(np.linalg.cholesky(full)) > 1e-300
            assert lnz == int(lower.sum()) and flops == float(np.square(lower.sum(0)).sum())


@pytest.mark.skipif(not HAS_CHOLMOD, reason="scikit-sparse not installed")
def test_symbolic_analysis_runs_once(monkeypatch, generator):
    calls = []
    analyze = sc._cholmod().analyze
    monkeypatch.setattr(sc._cholmod(), "analyze", lambda *a, **kw: calls.append(1) or analyze(*a, **kw))
    pattern, values, dense = block_problem("grid", 3, 6, 3, generator)
    rhs = torch.randn(3, pattern.n, generator=generator, dtype=torch.float64)
    factor = BatchedSparseCholesky(pattern, "cholmod", mode="simplicial")
    for rows in [slice(0, 1), slice(0, 3), slice(1, 3), slice(0, 3)]:  # batch size changes
        assert factor.factorize(values[rows]).all()
        torch.testing.assert_close(factor.solve(rhs[rows]), torch.linalg.solve(dense[rows], rhs[rows]))
    assert len(calls) == 1


@pytest.mark.parametrize("backend", BACKENDS)
def test_gradcheck(backend, generator):
    pattern, values, _ = block_problem("chain", 3, 3, 2, generator)
    assert (pattern.rows != pattern.cols).any()
    rhs = torch.randn(2, pattern.n, generator=generator, dtype=torch.float64)
    factor = BatchedSparseCholesky(pattern, backend)

    def fn(v, b):
        factor.factorize(v)
        return sparse_solve(v, b, factor)

    assert torch.autograd.gradcheck(fn, (values.requires_grad_(), rhs.requires_grad_()))


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("k", [None, 2])
def test_gradients_match_dense(backend, k, generator):
    """Also pins the off-diagonal convention: a value stands for two symmetric entries."""
    pattern, values, _ = block_problem("grid", 3, 3, 2, generator)
    shape = (2, pattern.n) if k is None else (2, pattern.n, k)
    rhs = torch.randn(shape, generator=generator, dtype=torch.float64)
    weight = torch.randn(shape, generator=generator, dtype=torch.float64)
    factor = BatchedSparseCholesky(pattern, backend)

    v1, b1 = values.clone().requires_grad_(), rhs.clone().requires_grad_()
    factor.factorize(v1)
    x = sparse_solve(v1, b1, factor)
    factor.factorize(values * 2.0)  # a later factorization must not disturb this backward pass
    (x * weight).sum().backward()

    v2, b2 = values.clone().requires_grad_(), rhs.clone().requires_grad_()
    dense = dense_from_values(pattern, v2)
    x2 = torch.linalg.solve(dense, b2 if k else b2[..., None])
    (x2 * (weight if k else weight[..., None])).sum().backward()

    torch.testing.assert_close(x.detach(), x2.detach() if k else x2.detach()[..., 0])
    torch.testing.assert_close(b1.grad, b2.grad)
    torch.testing.assert_close(v1.grad, v2.grad)
    off = pattern.rows != pattern.cols
    assert off.any() and (v1.grad[:, off].abs() > 1e-8).any()


@pytest.mark.parametrize("backend", BACKENDS)
def test_sparse_solve_finds_the_factorization_of_its_values(backend, generator):
    """A factorization kept for later (an implicit backward pass) survives other factorize calls;
    values that were not factorized are refused rather than solved with stale factors."""
    pattern, values, dense = block_problem("grid", 3, 3, 2, generator)
    rhs = torch.randn(2, pattern.n, generator=generator, dtype=torch.float64)
    factor = BatchedSparseCholesky(pattern, backend)
    kept = values.clone()
    factor.factorize(kept)
    factor.factorize(values * 3.0)
    factor.factorize(values * 5.0)
    torch.testing.assert_close(sparse_solve(kept, rhs, factor), torch.linalg.solve(dense, rhs))
    with pytest.raises(ValueError):
        sparse_solve(values * 7.0, rhs, factor)
    kept[:, pattern.diagonal] += 1.0  # modified in place after its factorization
    with pytest.raises(ValueError):
        sparse_solve(kept, rhs, factor)


def test_float32_gradients(generator):
    pattern, values, _ = block_problem("chain", 4, 3, 2, generator)
    rhs = torch.randn(2, pattern.n, generator=generator)
    v = values.float().requires_grad_()
    b = rhs.clone().requires_grad_()
    factor = BatchedSparseCholesky(pattern)
    factor.factorize(v)
    x = sparse_solve(v, b, factor)
    assert x.dtype == torch.float32
    x.square().sum().backward()
    assert v.grad.dtype == torch.float32 and b.grad.dtype == torch.float32

    v64, b64 = values.clone().requires_grad_(), rhs.double().requires_grad_()
    factor.factorize(v64)
    sparse_solve(v64, b64, factor).square().sum().backward()
    torch.testing.assert_close(v.grad.double(), v64.grad, rtol=1e-3, atol=1e-4)
    torch.testing.assert_close(b.grad.double(), b64.grad, rtol=1e-3, atol=1e-4)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")
def test_cuda_round_trip(generator):
    pattern, values, dense = block_problem("grid", 3, 3, 2, generator)
    rhs = torch.randn(2, pattern.n, generator=generator, dtype=torch.float64)
    factor = BatchedSparseCholesky(pattern)
    v, b = values.cuda().requires_grad_(), rhs.cuda().requires_grad_()
    assert factor.factorize(v).device == v.device
    x = sparse_solve(v, b, factor)
    assert x.device == b.device
    torch.testing.assert_close(x.cpu().detach(), torch.linalg.solve(dense, rhs))
    x.sum().backward()
    assert v.grad.device == v.device and b.grad.device == b.device


@pytest.mark.parametrize("backend", BACKENDS)
def test_block_factorization_by_fill_up_looking_or_supernodal(backend):
    """Below ``BLOCK_SUPERNODES`` the up-looking block factorization, at or above it the supernodal one
    (dense panels): both solve like dense, the supernodal one on a pose graph with high fill."""
    from slam.io import read_g2o
    from slam.linear._block_cholesky import BlockPattern
    from slam.linear._fill import BLOCK_SUPERNODES
    from slam.linear._supernodal import SupernodalPattern

    for name, kind in (("intel.g2o", BlockPattern), ("tinyGrid3D.g2o", BlockPattern)):
        problem, _ = read_g2o(slam.data.path(name)).problem()
        h, _, _ = problem.linearize(problem.initial_values())
        factor = BatchedSparseCholesky(problem.structure.pattern, backend)
        assert factor.factorize(h).all() and factor.mode == "block" and type(factor._symbolic) is kind
    # A 3D grid of poses with long loop closures: high fill.
    from slam.pgo import synthetic_graph

    problem, _ = synthetic_graph(SE3, 300, 150, rotation_noise=0.1)[0].problem()
    h, g, _ = problem.linearize(problem.initial_values())
    factor = BatchedSparseCholesky(problem.structure.pattern, backend)
    assert factor.factorize(h).all() and type(factor._symbolic) is SupernodalPattern
    blocks = factor._symbolic
    dense = torch.zeros(problem.structure.n, problem.structure.n, dtype=torch.float64)
    pattern = problem.structure.pattern
    dense[pattern.rows, pattern.cols] = h[0]
    dense[pattern.cols, pattern.rows] = h[0]
    x, reference = factor.solve(g)[0], torch.linalg.solve(dense, g[0])
    assert ((dense @ x - g[0]).norm() / g[0].norm()).item() < 1e-12  # as small a residual as dense's
    assert ((dense @ reference - g[0]).norm() / g[0].norm()).item() < 1e-12
    assert ((x - reference).norm() / reference.norm()).item() < 1e-8  # (H: condition number ~5e10)
    assert blocks.widths.max() > 1 and blocks.nb == problem.structure.n // 6 and BLOCK_SUPERNODES > 0


def test_block_structure_in_one_pass_equals_the_sort():
    """``block_structure``'s one pass over sorted rows against a sort of every entry's block (the way it
    is computed for unsorted patterns): complete blocks of several sizes, patterns that are not, unsorted rows."""
    from slam.linear._block_cholesky import block_structure

    def by_sorting(indptr, indices, d):
        n = indptr.size - 1
        nb = n // d
        cols = np.repeat(np.arange(n), np.diff(indptr))
        blocks, counts = np.unique((cols // d) * nb + indices // d, return_counts=True)
        diagonal = blocks // nb == blocks % nb
        if not np.array_equal(counts, np.where(diagonal, d * (d + 1) // 2, d * d)) or int(diagonal.sum()) != nb:
            return None
        return np.concatenate([[0], np.cumsum(np.bincount(blocks // nb, minlength=nb))]), blocks % nb

    rng = np.random.default_rng(4)
    for d in (2, 3, 6):
        for trial in range(6):
            nb = int(rng.integers(1, 12))
            mask = np.tril(rng.random((nb, nb)) < 0.4, -1) | np.eye(nb, dtype=bool)
            scalar = np.tril(np.kron(mask | mask.T, np.ones((d, d), dtype=bool)))
            if trial % 3 == 1:  # one entry missing: not complete blocks
                r, c = np.nonzero(scalar)
                k = int(rng.integers(r.size))
                scalar[r[k], c[k]] = False
            lower = sp.csc_matrix(scalar.astype(float))
            lower.sort_indices()
            indptr, indices = lower.indptr.astype(np.int64), lower.indices.astype(np.int64)
            if trial % 3 == 2 and indptr[1] - indptr[0] > 1:  # unsorted rows in the first column
                indices = indices.copy()
                indices[indptr[0]:indptr[1]] = indices[indptr[0]:indptr[1]][::-1]
            for size in (d, 2, 3):
                got, expected = block_structure(indptr, indices, size), by_sorting(indptr, indices, size) \
                    if (indptr.size - 1) % size == 0 else None
                assert (got is None) == (expected is None), (d, trial, size)
                if got is not None:
                    assert np.array_equal(got[0], expected[0]) and np.array_equal(got[1], expected[1])
