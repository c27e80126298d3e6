"""The supernodal block Cholesky (``slam.linear._supernodal``) against dense numpy and ``BlockPattern``."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp

from slam.linear._block_cholesky import BlockPattern, block_structure
from slam.linear._supernodal import SupernodalPattern


def _grid_mask(side: int) -> np.ndarray:
    """The block graph of a side x side grid with diagonals (many mid-sized supernodes with rows below)."""
    nb = side * side
    mask = np.eye(nb, dtype=bool)
    for i in range(side):
        for j in range(side):
            for di, dj in ((0, 1), (1, 0), (1, 1), (1, -1)):
                if 0 <= i + di < side and 0 <= j + dj < side:
                    a, b = i * side + j, (i + di) * side + j + dj
                    mask[a, b] = mask[b, a] = True
    return mask


def _random_spd(nb: int, d: int, density: float, rng: np.random.Generator, batch: int = 1, mask=None):
    """``(indptr, indices, values (batch, nnz), dense (batch, n, n))`` of block-sparse SPD matrices of one
    random block pattern (a chain, so the graph is connected, plus random blocks), or of ``mask``'s."""
    n = nb * d
    if mask is None:
        mask = rng.random((nb, nb)) < density
        mask |= np.eye(nb, k=-1, dtype=bool)
    mask = np.tril(mask | mask.T, -1) | np.eye(nb, dtype=bool)
    scalar = np.kron(mask, np.ones((d, d), dtype=bool))
    lower = sp.csc_matrix(np.tril(scalar).astype(float))
    lower.sort_indices()
    indptr, indices = lower.indptr.astype(np.int64), lower.indices.astype(np.int64)
    cols = np.repeat(np.arange(n), np.diff(indptr))
    values, dense = [], []
    full = np.kron(mask | mask.T, np.ones((d, d)))
    for _ in range(batch):
        m = rng.standard_normal((n, n)) * full
        a = (m + m.T) * full  # symmetric on the pattern, then diagonally shifted to be SPD
        a += np.eye(n) * (np.abs(a).sum(1).max() + 1.0)
        values.append(a[indices, cols])
        dense.append(a)
    return indptr, indices, np.array(values), np.array(dense)


def _orderings(indptr, indices, d, rng):
    bindptr, bindices = block_structure(indptr, indices, d)
    nb = bindptr.size - 1
    graph = sp.csc_matrix((np.ones(bindices.size), bindices, bindptr), (nb, nb))
    full = sp.csc_matrix(graph + graph.T + sp.eye(nb) * (2.0 * nb))
    lu = sp.linalg.splu(full, permc_spec="MMD_AT_PLUS_A", diag_pivot_thresh=0.0, options={"SymmetricMode": True})
    return {"identity": np.arange(nb), "random": rng.permutation(nb),
            "min-degree": np.argsort(lu.perm_c).astype(np.int64)}


def _check(indptr, indices, d, perm, values, dense, rhs, tol=1e-10):
    pattern = SupernodalPattern(indptr, indices, d, perm)
    block = BlockPattern(indptr, indices, d, perm)
    factor = pattern.factorize(values)
    ok = factor[-1]
    x = pattern.solve(*factor, rhs)
    y = block.solve(*block.factorize(values), rhs)
    assert x.shape == rhs.shape
    for b in range(values.shape[0]):
        expected = np.linalg.solve(dense[b], rhs[b])
        assert ok[b]
        assert np.abs(x[b] - expected).max() <= tol * np.abs(expected).max()
        assert np.abs(x[b] - y[b]).max() <= tol * np.abs(y[b]).max()
    return pattern


@pytest.mark.parametrize("d", [2, 3, 6])
@pytest.mark.parametrize("ordering", ["identity", "random", "min-degree"])
@pytest.mark.parametrize("density", [0.01, 0.05])
def test_random_block_sparse(d, ordering, density):
    rng = np.random.default_rng(d * 100 + int(density * 1000) + len(ordering))
    nb = 200 if d == 6 else 300
    indptr, indices, values, dense = _random_spd(nb, d, density, rng, batch=2)
    perm = _orderings(indptr, indices, d, rng)[ordering]
    rhs = rng.standard_normal((2, nb * d, 3))
    pattern = _check(indptr, indices, d, perm, values, dense, rhs)
    assert pattern.n == nb * d and pattern.nb == nb and pattern.d == d
    assert np.array_equal(pattern.perm, perm)
    # the factor's panels hold L: L Lᵀ reproduces the permuted matrix
    assert pattern.widths.sum() == nb


@pytest.mark.parametrize("d", [2, 3, 6])
@pytest.mark.parametrize("ordering", ["identity", "random", "min-degree"])
def test_grid(d, ordering):
    """Wide supernodes with rows below (LAPACK/BLAS paths of factorize and solve) and wide sources."""
    rng = np.random.default_rng(d + len(ordering))
    side = 14
    indptr, indices, values, dense = _random_spd(side * side, d, 0.0, rng, batch=2, mask=_grid_mask(side))
    perm = _orderings(indptr, indices, d, rng)[ordering]
    pattern = _check(indptr, indices, d, perm, values, dense, rng.standard_normal((2, side * side * d, 2)))
    widths, heights = pattern.widths, np.diff(pattern.sp)
    if ordering == "min-degree":
        assert np.any((widths > 1) & (heights > widths)) and np.any(widths[pattern.uj] > 1)


def test_relaxed_amalgamation(monkeypatch):
    import slam.linear._supernodal as supernodal

    rng = np.random.default_rng(9)
    side, d = 12, 3
    indptr, indices, values, dense = _random_spd(side * side, d, 0.0, rng, batch=1, mask=_grid_mask(side))
    perm = _orderings(indptr, indices, d, rng)["min-degree"]
    fundamental = SupernodalPattern(indptr, indices, d, perm).ns
    monkeypatch.setattr(supernodal, "RELAX", (0.0, 0.0, 0.8, 0.5, 0.3, 0.1))
    pattern = _check(indptr, indices, d, perm, values, dense, rng.standard_normal((1, side * side * d, 1)))
    assert pattern.ns < fundamental


def test_factor_is_cholesky_of_permuted_matrix():
    rng = np.random.default_rng(7)
    d, nb = 3, 60
    indptr, indices, values, dense = _random_spd(nb, d, 0.1, rng)
    perm = rng.permutation(nb)
    pattern = SupernodalPattern(indptr, indices, d, perm)
    lx, ok = pattern.factorize(values)
    assert ok.all()
    n = nb * d
    lower = np.zeros((n, n))
    for s in range(pattern.ns):
        f, l = pattern.sfirst[s], pattern.sfirst[s + 1]
        width, rows = (l - f) * d, pattern.srows[pattern.sp[s]:pattern.sp[s + 1]]
        panel = lx[0, pattern.poff[s]:pattern.poff[s + 1]].reshape(-1, width)
        scalar_rows = (rows[:, None] * d + np.arange(d)).ravel()
        lower[scalar_rows, f * d:l * d] = panel
    scalar_perm = (perm[:, None] * d + np.arange(d)).ravel()
    c = dense[0][np.ix_(scalar_perm, scalar_perm)]
    assert np.allclose(np.tril(lower), lower)
    assert np.allclose(lower, np.linalg.cholesky(c), atol=1e-10)


@pytest.mark.parametrize("d", [3, 6])
def test_batch_with_indefinite_and_non_finite(d):
    rng = np.random.default_rng(11)
    nb = 120
    indptr, indices, values, dense = _random_spd(nb, d, 0.05, rng, batch=4)
    cols = np.repeat(np.arange(nb * d), np.diff(indptr))
    diagonal = np.nonzero(indices == cols)[0]
    values[1, diagonal[nb * d // 2]] = -1e6  # indefinite
    values[3, 5] = np.nan  # non-finite
    perm = _orderings(indptr, indices, d, rng)["min-degree"]
    pattern = SupernodalPattern(indptr, indices, d, perm)
    factor = pattern.factorize(values)
    ok = factor[-1]
    assert ok.tolist() == [True, False, True, False]
    rhs = rng.standard_normal((4, nb * d, 2))
    x = pattern.solve(*factor, rhs)
    for b in (0, 2):
        expected = np.linalg.solve(dense[b], rhs[b])
        assert np.abs(x[b] - expected).max() <= 1e-10 * np.abs(expected).max()
    assert not x[1].any() and not x[3].any()
    values[3, 5] = np.inf
    assert pattern.factorize(values)[-1].tolist() == [True, False, True, False]


@pytest.mark.parametrize("d", [2, 3, 6])
def test_one_block(d):
    rng = np.random.default_rng(d)
    indptr, indices, values, dense = _random_spd(1, d, 0.0, rng, batch=2)
    pattern = SupernodalPattern(indptr, indices, d, np.zeros(1, dtype=np.int64))
    rhs = rng.standard_normal((2, d, 1))
    x = pattern.solve(*pattern.factorize(values), rhs)
    assert np.allclose(x, np.linalg.solve(dense, rhs), rtol=1e-12, atol=1e-12)


def test_dense_matrix_one_supernode():
    rng = np.random.default_rng(3)
    d, nb = 6, 40
    indptr, indices, values, dense = _random_spd(nb, d, 1.0, rng)
    pattern = _check(indptr, indices, d, rng.permutation(nb), values, dense, rng.standard_normal((1, nb * d, 2)))
    assert pattern.ns == 1


def test_warm_up_and_nnz():
    from slam.linear._supernodal import warm_up

    warm_up((2, 3))
    rng = np.random.default_rng(5)
    indptr, indices, values, dense = _random_spd(30, 2, 0.1, rng)
    pattern = SupernodalPattern(indptr, indices, 2, np.arange(30))
    assert pattern.factorize(values)[0].shape == (1, pattern.nnz)


def test_wrong_pattern_raises():
    indptr = np.array([0, 2, 3]); indices = np.array([0, 1, 1])
    with pytest.raises(ValueError):
        SupernodalPattern(indptr, indices, 3, np.zeros(1, dtype=np.int64))


@pytest.mark.parametrize("name", ["tinyGrid3D.g2o", "intel.g2o"])
def test_pose_graph(name):
    torch = pytest.importorskip("torch")
    from importlib import resources

    from slam.io import read_g2o
    from slam.linear._block_cholesky import find_blocks
    from slam.linear.sparse_cholesky import _block_ordering, _cholmod

    path = resources.files("slam.data") / name
    g = read_g2o(str(path))
    problem, _ = g.problem()
    with torch.no_grad():
        h, _, _ = problem.linearize(problem.initial_values())
    pat = problem.structure.pattern
    h = h.clone()
    h[:, pat.diagonal] += 1e-3
    values = h.numpy().copy()
    d, (bindptr, bindices) = find_blocks(pat.indptr, pat.indices)
    perm = _block_ordering(_cholmod(), bindptr, bindices)
    block = BlockPattern(pat.indptr, pat.indices, d, perm, (bindptr, bindices))
    pattern = SupernodalPattern(pat.indptr, pat.indices, d, perm, (bindptr, bindices))
    rhs = np.random.default_rng(0).standard_normal((1, pattern.n, 2))
    factor = pattern.factorize(values)
    assert factor[-1].all()
    x = pattern.solve(*factor, rhs)
    y = block.solve(*block.factorize(values), rhs)
    assert np.abs(x - y).max() <= 1e-10 * np.abs(y).max()
    # and the residual against H itself
    n = pattern.n
    rows, cols = pat.indices.astype(np.int64), np.repeat(np.arange(n), np.diff(pat.indptr))
    hs = sp.coo_matrix((values[0], (rows, cols)), (n, n)).tocsr()
    hs = hs + sp.triu(hs.T, 1)
    assert np.abs(hs @ x[0] - rhs[0]).max() <= 1e-8 * np.abs(rhs[0]).max() * max(1.0, np.abs(values).max())
