"""Marginal covariances: selected inversion against the dense inverse, the marginals against GTSAM's
``Marginals``, batches, fixed elements and gauge errors, bundle adjustment's Schur ordering, and gradients
of a covariance loss against central finite differences."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

import slam
from conftest import data_file
from gtsam_pose_graphs import gtsam_factors, gtsam_values
from liegeo import SE2, SE3
from slam.io import read_g2o
from slam.linear.selected_inverse import SelectedInverse
from slam.linear.sparse_cholesky import SparsePattern
from slam.marginals import Marginals, SingularInformationError
from slam.pgo import synthetic_graph

pytest.importorskip("numba")

TIGHT = slam.LevenbergMarquardt(max_iterations=100, function_tolerance=1e-15, gradient_tolerance=1e-14,
                                parameter_tolerance=1e-15)


def _random_system(d: int, blocks: int, couplings: int, batch: int, seed: int):
    """A batch of SPD matrices ``(B, n, n)`` with one random block sparsity (``d x d`` blocks; d = 1 gives
    a scalar pattern with no block structure), their pattern and lower-triangle values ``(B, nnz)``."""
    rng = np.random.default_rng(seed)
    n = d * blocks
    pairs = rng.integers(0, blocks, size=(couplings, 2))
    mask = np.kron(np.eye(blocks), np.ones((d, d))) > 0
    for a, b in pairs:
        mask[a * d : (a + 1) * d, b * d : (b + 1) * d] = mask[b * d : (b + 1) * d, a * d : (a + 1) * d] = True
    if d == 1:  # break any accidental block structure: a scalar pattern
        mask[n - 1, 0] = mask[0, n - 1] = True
    matrices = []
    for _ in range(batch):
        a = rng.standard_normal((n, n)) * mask
        h = (a @ a.T) * mask + np.diag(rng.uniform(1.0, 3.0, n)) * n  # keeps the pattern, well posed
        matrices.append(h)
    rows, cols = np.nonzero(np.tril(mask))
    pattern, slot = SparsePattern.from_coordinates(n, torch.from_numpy(rows), torch.from_numpy(cols))
    values = np.zeros((batch, pattern.nnz))
    for b, h in enumerate(matrices):
        values[b, slot.numpy()] = h[rows, cols]
    return np.stack(matrices), pattern, values


@pytest.mark.parametrize("d", [1, 2, 3, 6])
@pytest.mark.parametrize("eliminate", [False, True])
def test_selected_inverse_equals_the_dense_inverse(d, eliminate):
    """Every entry on the pattern of L (so every entry of H's pattern) from the recurrences, and entries
    off it from solves, equal ``inv(H)`` for each matrix of a batch; with the first blocks ordered first too."""
    blocks = 31
    dense, pattern, values = _random_system(d, blocks, couplings=40, batch=3, seed=d)
    first = np.arange(5 * d) if eliminate else None
    analysis = SelectedInverse(pattern, first)
    assert analysis.d == d
    if eliminate:
        assert set(analysis.blocks.perm[:5].tolist()) == set(range(5))
    factors = analysis.factorize(values)
    assert factors.ok.all()
    inverse = np.linalg.inv(dense)
    rows, cols = pattern.rows.numpy(), pattern.cols.numpy()
    got = factors.entries(rows, cols)
    np.testing.assert_allclose(got, inverse[:, rows, cols], rtol=0, atol=1e-12 * np.abs(inverse).max())
    n = pattern.n
    everything = np.repeat(np.arange(n), n), np.tile(np.arange(n), n)  # also off the pattern: solves
    got = factors.entries(*everything, chunk=7)
    np.testing.assert_allclose(got, inverse.reshape(3, -1), rtol=0, atol=1e-12 * np.abs(inverse).max())
    _, _, _, kind = analysis.locate(*everything)
    assert (kind < 0).any() and (kind >= 0).any()  # both paths ran


def test_a_matrix_that_is_not_positive_definite_gives_nan_entries():
    dense, pattern, values = _random_system(3, 10, couplings=10, batch=2, seed=0)
    values[1, pattern.diagonal.numpy()] *= -1.0
    factors = SelectedInverse(pattern).factorize(values)
    assert factors.ok.tolist() == [True, False]
    got = factors.entries(np.array([0, 4]), np.array([0, 1]))
    assert np.isfinite(got[0]).all() and np.isnan(got[1]).all()


def _dense_inverse(problem, h: torch.Tensor) -> np.ndarray:
    pattern = problem.structure.pattern
    full = np.zeros((h.shape[0], pattern.n, pattern.n))
    full[:, pattern.rows.numpy(), pattern.cols.numpy()] = h.detach().numpy()
    full = full + np.tril(full, -1).transpose(0, 2, 1)
    return np.linalg.inv(full)


@pytest.mark.parametrize("group", [SE2, SE3])
def test_covariance_and_joint_blocks_equal_the_dense_inverse_with_fixed_elements_zero(group):
    graph, _ = synthetic_graph(group, num_poses=30, num_loop_closures=8)
    problem, poses = graph.problem()
    result = slam.solve(problem, TIGHT)
    covariance = result.covariance(poses)
    marginals = result.marginals()
    inverse = _dense_inverse(problem, marginals.h)[0]
    table = problem.structure.tables[0]
    d = table.dim
    assert covariance.shape == (30, d, d)
    for i in range(30):
        columns = table.columns(torch.tensor([i]))[0].numpy()
        if bool(poses.fixed[i]):
            assert not covariance[i].any()
            continue
        block = inverse[np.ix_(columns, columns)]
        np.testing.assert_allclose(covariance[i].numpy(), block, rtol=0, atol=1e-10 * np.abs(block).max())
    assert result.covariance(poses, 7).shape == (d, d)
    assert torch.equal(result.covariance(poses, [3, 7])[1], result.covariance(poses, 7))
    joint = marginals.joint((poses, 4), (poses, 21), (poses, 0))  # 0 is fixed: zero rows and columns
    columns = np.concatenate([table.columns(torch.tensor([k]))[0].numpy() for k in (4, 21)])
    block = inverse[np.ix_(columns, columns)]
    np.testing.assert_allclose(joint[: 2 * d, : 2 * d].numpy(), block, rtol=0, atol=1e-10 * np.abs(block).max())
    assert not joint[2 * d :].any() and not joint[:, 2 * d :].any()
    assert torch.allclose(joint[:d, :d], covariance[4])
    with pytest.raises(IndexError):
        result.covariance(poses, 30)
    with pytest.raises(ValueError, match="not one of this problem's"):
        result.covariance(slam.Variable(graph.poses, name="other"))


def test_a_gauge_freedom_is_a_clear_error():
    graph, _ = synthetic_graph(SE2, num_poses=10, num_loop_closures=2)
    problem, poses = dataclasses.replace(graph, fixed=graph.fixed[:0]).problem()
    with pytest.raises(SingularInformationError, match="gauge freedom"):
        Marginals(problem)


def test_a_batch_equals_its_problems_one_by_one():
    graphs = [synthetic_graph(SE3, num_poses=20, num_loop_closures=6, noise_seed=s)[0] for s in range(3)]
    batched = dataclasses.replace(graphs[0], measurements=SE3(torch.stack([g.measurements.data for g in graphs])),
                                  poses=SE3(torch.stack([g.poses.data for g in graphs])))
    problem, poses = batched.problem()
    together = slam.solve(problem, TIGHT).covariance(poses)
    assert together.shape == (3, 20, 6, 6)
    for b, graph in enumerate(graphs):
        single, variable = graph.problem()
        alone = slam.solve(single, TIGHT).covariance(variable)
        torch.testing.assert_close(together[b], alone, rtol=1e-7, atol=1e-12)


GTSAM_GRAPHS = ["intel", "manhattan", "parking-garage", "sphere2500"]


def _solved(name: str):
    graph = read_g2o(data_file(f"{name}.g2o", "pose_graph"))
    problem, poses = graph.problem()
    result = slam.solve(problem)
    return graph, problem, poses, result


def _tangent_order(graph) -> np.ndarray:
    """Our tangent components in GTSAM's order: its Pose3 tangent is ``(ω, v)``, ours ``(v, ω)``."""
    return np.r_[3:6, 0:3] if graph.group is SE3 else np.arange(3)


def _refined_columns(marginals: Marginals, columns: np.ndarray) -> np.ndarray:
    """``H⁻¹[:, columns]`` to about float64's last digit: iterative refinement of the factor's solves with
    residuals in extended precision (the reference the float64 methods are measured against)."""
    import scipy.sparse as sp

    pattern = marginals.problem.structure.pattern
    lower = sp.csr_matrix((marginals.h[0].detach().numpy(), (pattern.rows.numpy(), pattern.cols.numpy())),
                          shape=(pattern.n, pattern.n))
    h = (lower + sp.tril(lower, -1).T).astype(np.longdouble)
    unit = np.zeros((pattern.n, columns.size))
    unit[columns, np.arange(columns.size)] = 1.0
    x = marginals.factors.solve(unit[None])[0]
    for _ in range(3):
        x = x + marginals.factors.solve((unit - h @ x.astype(np.longdouble)).astype(np.float64)[None])[0]
    return x


def _compare(gtsam, graph, ours: slam.SolveResult, poses, reference) -> None:
    """40 marginals spread over the graph and the joint block of two loop closures' ends, ours against
    ``reference`` (a GTSAM ``Marginals``): equal to 1e-8 relative where float64 determines them that well,
    else as close to the exact inverse as GTSAM's (within 5x: manhattan's and parking-garage's H are
    conditioned so that GTSAM's own marginals are 3e-8 from the exact inverse, and CHOLMOD's are 2e-8 to
    2e-7 by the ordering)."""
    order, d = _tangent_order(graph), graph.poses.tangent_dim
    marginals = ours.marginals()
    table = marginals.problem.structure.tables[0]
    chosen = np.unique(np.linspace(1, graph.num_poses - 1, 40).astype(int))
    mine = ours.covariance(poses, chosen.tolist()).numpy()
    columns = table.columns(torch.from_numpy(chosen)).reshape(-1).numpy()
    exact = _refined_columns(marginals, columns)[columns].reshape(len(chosen), d, len(chosen), d)
    worst_ours = worst_gtsam = 0.0
    for k, i in enumerate(chosen):
        truth = exact[k, :, k, :]
        theirs = reference.marginalCovariance(int(graph.ids[i]))[np.ix_(order, order)]
        scale = np.abs(truth).max()
        worst_ours = max(worst_ours, np.abs(mine[k] - truth).max() / scale)
        worst_gtsam = max(worst_gtsam, np.abs(theirs - truth).max() / scale)
        if np.abs(theirs - truth).max() <= 1e-9 * scale:  # where GTSAM's is exact, ours equals it to 1e-8
            assert np.abs(mine[k] - theirs).max() <= 1e-8 * scale, (i, mine[k], theirs)
    assert worst_ours <= max(1e-8, 5.0 * worst_gtsam), (worst_ours, worst_gtsam)
    for e in (graph.num_edges // 3, graph.num_edges - 1):
        a, b = int(graph.i[e]), int(graph.j[e])
        keys = gtsam.KeyVector([int(graph.ids[a]), int(graph.ids[b])])
        joint = reference.jointMarginalCovariance(keys)
        both = np.concatenate([order, order + d])
        theirs = np.block([[joint.at(keys[0], keys[0]), joint.at(keys[0], keys[1])],
                           [joint.at(keys[1], keys[0]), joint.at(keys[1], keys[1])]])[np.ix_(both, both)]
        mine = marginals.joint((poses, a), (poses, b)).numpy()
        assert np.abs(mine - theirs).max() <= max(1e-8, 5.0 * worst_gtsam) * np.abs(theirs).max()


@pytest.mark.parametrize("name", GTSAM_GRAPHS)
def test_marginals_equal_gtsams_on_the_real_graph_where_the_residuals_vanish(name):
    """GTSAM's nonlinear ``Marginals`` of the graph (its information matrices and structure) with each
    measurement replaced by the relative pose of our optimum, at that optimum: the residuals vanish, where
    GTSAM's Pose2 between-factor Jacobian is exact (it is not at small nonzero rotation residuals:
    ``test_between_jacobians_at_small_rotation_residuals_equal_central_differences``), and the marginals
    agree to 1e-8 relative (our Jacobians, tangent order, information and inversion against GTSAM's)."""
    gtsam = pytest.importorskip("gtsam")
    graph, _, solved_poses, solved = _solved(name)
    optimum = solved[solved_poses]
    consistent = dataclasses.replace(graph.with_poses(optimum), measurements=optimum[..., graph.i].between(optimum[..., graph.j]))
    problem, poses = consistent.problem()
    result = slam.solve(problem)  # already at the minimum (zero residuals): nothing moves
    assert torch.allclose(result[poses].data, optimum.data)
    reference = gtsam.Marginals(gtsam_factors(gtsam, consistent), gtsam_values(gtsam, consistent))
    _compare(gtsam, consistent, result, poses, reference)


@pytest.mark.parametrize("name", GTSAM_GRAPHS)
def test_marginals_equal_gtsams_inverse_of_our_linearization_at_the_optimum(name):
    """At the real optimum (residuals not zero): our whitened Jacobians as a GTSAM ``GaussianFactorGraph``
    (one ``JacobianFactor`` per edge; the fixed pose's columns left out), inverted by GTSAM's
    ``Marginals``, equal ours to 1e-8 relative.  (GTSAM's own nonlinear marginals of the 2D graphs differ
    from both by what its Pose2 Jacobian's error at small rotation residuals changes in H: 1.2e-5
    relative of H on intel, 1.6e-7 of the marginals; ``benchmarks/covariance.py``.)"""
    gtsam = pytest.importorskip("gtsam")
    graph, problem, poses, result = _solved(name)
    cost = problem.costs[0]
    _, r, jacobian, _, _ = problem._linearize_cost(cost, problem._gather(cost, [result[poses].unsqueeze(0)]))
    order, d = _tangent_order(graph), graph.poses.tangent_dim
    linear = gtsam.GaussianFactorGraph()
    unit = gtsam.noiseModel.Unit.Create(d)
    fixed = set(poses.fixed.nonzero().flatten().tolist())
    for e, (i, j) in enumerate(zip(graph.i.tolist(), graph.j.tolist())):
        a, b = jacobian[0, e, :, :d].numpy()[:, order], jacobian[0, e, :, d:].numpy()[:, order]
        rhs = -r[0, e].numpy()
        if i in fixed:
            linear.add(gtsam.JacobianFactor(int(graph.ids[j]), b, rhs, unit))
        elif j in fixed:
            linear.add(gtsam.JacobianFactor(int(graph.ids[i]), a, rhs, unit))
        else:
            linear.add(gtsam.JacobianFactor(int(graph.ids[i]), a, int(graph.ids[j]), b, rhs, unit))
    keys = gtsam.Values()
    for k in range(graph.num_poses):
        if k not in fixed:
            keys.insert(int(graph.ids[k]), np.zeros(d))
    _compare(gtsam, graph, result, poses, gtsam.Marginals(linear, keys))


@pytest.mark.parametrize("group", [SE2, SE3])
@pytest.mark.parametrize("rotation_residual", [1e-2, 1e-4, 1e-6])
def test_between_jacobians_at_small_rotation_residuals_equal_central_differences(group, rotation_residual):
    """The H the marginals invert is exact: the between cost's Jacobian at a residual with a sizeable
    translation and a small rotation (where GTSAM 4.3's Pose2 Jacobian is off by 1.6e-5 against central
    differences of its own error, which makes its intel marginals differ from the exact ones by 1.6e-7)
    equals central differences of the residual to 1e-8."""
    from slam.costs import Between

    d = group.tangent_dim
    xi = group.exp(torch.linspace(0.1, 0.4, d, dtype=torch.float64))
    offset = torch.zeros(d, dtype=torch.float64)
    offset[: d // 2 if d == 6 else 2] = torch.tensor([0.3, 0.2, -0.1][: 3 if d == 6 else 2], dtype=torch.float64)
    offset[d // 2 if d == 6 else 2 :] = rotation_residual
    z = group.exp(torch.tensor([1.0, 0.5, 0.3, 0.2, -0.1, 0.4][:d], dtype=torch.float64))
    xj = xi.compose(z).compose(group.exp(offset))
    poses = slam.Variable(group(torch.stack([xi.data, xj.data])), name="x")
    cost = Between(poses[[0]], poses[[1]], measurement=group(z.data[None]))
    problem = slam.Problem([cost])
    values = problem.initial_values()
    _, _, jacobian, _, _ = problem._linearize_cost(cost, problem._gather(cost, values))
    eps, numeric = 1e-6, torch.zeros(d, 2 * d, dtype=torch.float64)
    for k in range(2 * d):
        step = torch.zeros(1, 2 * d, dtype=torch.float64)
        step[0, k] = eps
        plus = problem.residuals(problem.retract(values, step))[0][0, 0]
        minus = problem.residuals(problem.retract(values, -step))[0][0, 0]
        numeric[:, k] = (plus - minus) / (2 * eps)
    assert (jacobian[0, 0] - numeric).abs().max() <= 1e-8


def test_bundle_adjustment_cameras_on_the_schur_ordering_equal_the_dense_inverse():
    """Points ordered first (the Schur path): camera, intrinsics and point marginals equal the dense inverse."""
    from slam.ba import build, synthetic_bal

    scene, _ = synthetic_bal(6, 40, seed=2)
    problem, (cameras, intrinsics, points) = build(scene, fix_cameras=[0, 1])  # two cameras fix the gauge
    result = slam.solve(problem, TIGHT)
    marginals = result.marginals(eliminate=points)
    analysis = marginals._analysis
    point_table = problem.structure.tables[problem.position(points)]
    leading = analysis.blocks.perm[: point_table.num_free * point_table.dim // analysis.d]
    assert (leading * analysis.d >= point_table.offset).all()  # every point block before any camera block
    inverse = _dense_inverse(problem, marginals.h)[0]
    for variable in (cameras, intrinsics, points):
        table = problem.structure.tables[problem.position(variable)]
        covariance = marginals.covariance(variable).numpy()
        for i in range(variable.num):
            columns = table.columns(torch.tensor([i]))[0].numpy()
            if (columns < 0).any():
                assert not covariance[i].any()
                continue
            np.testing.assert_allclose(covariance[i], inverse[np.ix_(columns, columns)], rtol=1e-8,
                                       atol=1e-10 * np.abs(inverse).max())


def test_gradients_of_a_covariance_loss_equal_central_differences():
    """A loss on several poses' covariances (a trace, an off-diagonal entry, a log-determinant) depends on
    the measurements and edge weights directly and through the solution; its gradient through an implicit
    solve and the covariance equals central differences of re-solved problems to 1e-4."""
    graph, _ = synthetic_graph(SE2, num_poses=12, num_loop_closures=4)
    edges = graph.num_edges

    def loss(delta: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
        perturbed = dataclasses.replace(graph, measurements=graph.measurements.retract(delta))
        problem, poses = perturbed.problem(edge_weights=weights)
        covariance = slam.solve(problem, TIGHT, slam.Implicit(tolerance=1e-12)).covariance(poses)
        return (covariance[-1] @ covariance[-1]).trace() + 100.0 * covariance[5, 0, 1] + torch.logdet(covariance[7])

    delta = torch.zeros(edges, 3, dtype=torch.float64, requires_grad=True)
    weights = torch.ones(edges, dtype=torch.float64, requires_grad=True)
    loss(delta, weights).backward()
    assert delta.grad.abs().max() > 0 and weights.grad.abs().max() > 0
    eps = 1e-4
    generator = torch.Generator().manual_seed(0)
    for k in torch.randperm(edges * 3, generator=generator)[:6].tolist():
        step = torch.zeros(edges * 3, dtype=torch.float64)
        step[k] = eps
        step = step.reshape(edges, 3)
        numeric = (loss(step, weights.detach()) - loss(-step, weights.detach())) / (2 * eps)
        assert float(delta.grad.reshape(-1)[k]) == pytest.approx(float(numeric), rel=1e-4, abs=1e-7)
    for k in torch.randperm(edges, generator=generator)[:4].tolist():
        up, down = weights.detach().clone(), weights.detach().clone()
        up[k] += eps
        down[k] -= eps
        numeric = (loss(delta.detach(), up) - loss(delta.detach(), down)) / (2 * eps)
        assert float(weights.grad[k]) == pytest.approx(float(numeric), rel=1e-4, abs=1e-7)


def test_slam_pgo_covariance_writes_the_marginals_and_draws_ellipses(tmp_path):
    """``slam pgo --covariance``: the ``.npz`` holds every pose's marginal (equal to ``Marginals`` at the
    written optimum), zeros for the fixed pose, its ids and tangent names; the JSON times it; the PNG is
    written (with the ellipses: checked by eye, and below by the world-frame rotation they are drawn with)."""
    import json

    import slam.cli
    from slam.io import write_g2o
    from slam.pgo import optimize

    graph, _ = synthetic_graph(SE2, num_poses=40, num_loop_closures=10)
    path = write_g2o(tmp_path / "small.g2o", graph)
    out = tmp_path / "out"
    assert slam.cli.main(["pgo", str(path), "--covariance", "--output-dir", str(out), "-q"]) == 0
    saved = np.load(out / "small_covariance.npz")
    assert saved["covariance"].shape == (40, 3, 3) and saved["ids"].tolist() == graph.ids.tolist()
    assert str(saved["tangent"]).startswith("vx vy w")
    assert saved["fixed"].tolist() == poses_fixed(graph) and not saved["covariance"][saved["fixed"]].any()
    expected = optimize(read_g2o(path), covariance=True)
    np.testing.assert_allclose(saved["covariance"], expected.covariance.numpy(), rtol=1e-9, atol=1e-15)
    assert json.loads((out / "small.json").read_text())["covariance_seconds"] > 0
    assert (out / "small.png").stat().st_size > 0


def poses_fixed(graph) -> list[bool]:
    mask = np.zeros(graph.num_poses, dtype=bool)
    mask[graph.fixed.numpy()] = True
    return mask.tolist()


def test_position_ellipses_are_drawn_in_the_world_frame():
    """A body-frame translation covariance diag(4, 1) of a pose turned by 90° is diag(1, 4) in the world."""
    from slam.viz.plot import position_covariances

    pose = SE2.exp(torch.tensor([[0.0, 0.0, np.pi / 2]], dtype=torch.float64))
    covariance = torch.diag(torch.tensor([4.0, 1.0, 0.3], dtype=torch.float64))[None]
    np.testing.assert_allclose(position_covariances(pose, covariance)[0], np.diag([1.0, 4.0]), atol=1e-12)
    turned = SE3.exp(torch.tensor([[0.0, 0.0, 0.0, 0.0, 0.0, np.pi / 2]], dtype=torch.float64))
    covariance = torch.diag(torch.tensor([4.0, 1.0, 9.0, 0.1, 0.1, 0.1], dtype=torch.float64))[None]
    np.testing.assert_allclose(position_covariances(turned, covariance)[0], np.diag([1.0, 4.0]), atol=1e-12)


def test_gnc_covariances_are_those_of_the_finally_weighted_graph():
    """``GncResult.covariance`` (and ``optimize(gnc=..., covariance=True)``): the marginals of the graph
    with each edge's information scaled by its final GNC weight, at the GNC solution."""
    from slam.optim.gnc import GNC, gnc_solve
    from slam.pgo import optimize

    graph, _ = synthetic_graph(SE2, num_poses=30, num_loop_closures=8)
    false = dataclasses.replace(graph, i=torch.cat([graph.i, torch.tensor([2, 5])]), j=torch.cat([graph.j, torch.tensor([20, 27])]),
                                measurements=SE2(torch.cat([graph.measurements.data, SE2.exp(
                                    torch.tensor([[3.0, -2.0, 1.0], [-4.0, 1.0, -2.0]], dtype=torch.float64)).data])),
                                information=torch.cat([graph.information, graph.information[-2:]]))
    problem, poses = false.problem()
    result = gnc_solve(problem, GNC(loss="tls"), known_inliers={problem.costs[0]: false.odometry})
    weights = result.weights[0]
    assert float(weights[-2:].max()) < 0.5  # the two false loops are rejected
    reference_problem, reference_poses = false.problem(edge_weights=weights.clamp_min(0.0))
    expected = Marginals(reference_problem, {reference_poses: result[poses]}).covariance(reference_poses)
    torch.testing.assert_close(result.covariance(poses), expected, rtol=1e-9, atol=1e-14)
    record = optimize(false, gnc="tls", covariance=True)  # its own LM settings: its own solution
    weighted, variable = false.problem(edge_weights=torch.tensor(record.gnc["weights"], dtype=torch.float64))
    torch.testing.assert_close(record.covariance, Marginals(weighted, {variable: record.graph.poses}).covariance(variable),
                               rtol=1e-9, atol=1e-14)


def test_the_covariance_backward_is_the_same_for_any_chunk_of_solves():
    """``information_gradient`` solves for the needed columns of H⁻¹ in chunks (bounded memory): any
    chunk size, even one column, gives the same gradient, which equals ``-(Σ G Σ)`` read off the dense inverse."""
    from slam.marginals import information_gradient

    graph, _ = synthetic_graph(SE2, num_poses=15, num_loop_closures=4)
    problem, poses = graph.problem()
    marginals = Marginals(problem, slam.solve(problem, TIGHT))
    pattern = problem.structure.pattern
    rng = np.random.default_rng(0)
    rows, cols = rng.integers(0, pattern.n, 30), rng.integers(0, pattern.n, 30)
    g = rng.standard_normal((1, 30))
    inverse = _dense_inverse(problem, marginals.h)[0]
    m = np.zeros((pattern.n, pattern.n))
    for k in range(30):
        m -= g[0, k] * np.outer(inverse[:, rows[k]], inverse[cols[k], :])
    expected = (m + m.T)[pattern.rows.numpy(), pattern.cols.numpy()]
    expected[pattern.diagonal.numpy()] *= 0.5
    for chunk in (1, 3, None):
        got = information_gradient(marginals.factors, pattern, rows, cols, g, chunk=chunk)
        np.testing.assert_allclose(got[0], expected, rtol=1e-9, atol=1e-12 * np.abs(expected).max())


def test_a_float32_problem_gets_float32_covariances_of_the_float64_ones():
    """The inversion runs in float64 whatever the problem's dtype; a float32 problem gets its covariances
    in float32, equal to the float64 problem's to float32's accuracy of the solution."""
    graph, _ = synthetic_graph(SE2, num_poses=20, num_loop_closures=5)
    double, poses = graph.problem()
    single, poses32 = graph.to(dtype=torch.float32).problem()
    expected = slam.solve(double, TIGHT).covariance(poses)
    got = slam.solve(single).covariance(poses32)
    assert got.dtype == torch.float32
    torch.testing.assert_close(got.double(), expected, rtol=1e-3, atol=1e-3 * float(expected.abs().max()))


def test_marginals_with_a_robust_kernel_equal_gtsams_robust_noise_model():
    """With a Huber kernel on every edge, H is the iteratively reweighted one (ρ'(s) on each edge, no ρ''
    term), as GTSAM's ``noiseModel.Robust`` linearizes: at our optimum of a 3D graph with two gross false
    loops (so that some edges sit in Huber's linear part), every marginal equals GTSAM's to 1e-8."""
    gtsam = pytest.importorskip("gtsam")
    graph, _ = synthetic_graph(SE3, num_poses=30, num_loop_closures=8)
    false = SE3.exp(torch.tensor([[2.0, -1.0, 0.5, 0.3, -0.2, 0.4], [-1.5, 2.0, 1.0, -0.5, 0.1, 0.2]], dtype=torch.float64))
    graph = dataclasses.replace(graph, i=torch.cat([graph.i, torch.tensor([3, 8])]), j=torch.cat([graph.j, torch.tensor([20, 26])]),
                                measurements=SE3(torch.cat([graph.measurements.data, false.data])),
                                information=torch.cat([graph.information, graph.information[-2:]]))
    problem, poses = graph.problem(loss=slam.Huber(1.0))
    result = slam.solve(problem, TIGHT)
    solved = graph.with_poses(result[poses])
    whitened = problem.residuals([result[poses].unsqueeze(0)])[0].norm(dim=-1)
    assert int((whitened > 1.0).sum()) >= 2  # some edges are in the kernel's linear part (weight < 1)
    reference = gtsam.Marginals(gtsam_factors(gtsam, solved, robust=gtsam.noiseModel.mEstimator.Huber.Create(1.0)),
                                gtsam_values(gtsam, solved))
    order = _tangent_order(graph)
    ours = result.covariance(poses).numpy()
    for k in range(1, graph.num_poses):
        theirs = reference.marginalCovariance(int(graph.ids[k]))[np.ix_(order, order)]
        assert np.abs(ours[k] - theirs).max() <= 1e-8 * np.abs(theirs).max(), k


def test_slam_ba_covariance_writes_camera_and_point_marginals(tmp_path, capsys):
    """``slam ba --fix-cameras 0,1 --covariance``: the ``.npz`` holds each camera pose's, intrinsics' and
    point's marginal (equal to ``slam.ba.optimize(..., covariance=True)``'s, zeros for the fixed poses);
    without two fixed cameras the gauge is free: one line, exit 2, before any work, and no outputs."""
    import slam.cli
    import slam.data
    from slam.ba import optimize as ba_optimize
    from slam.io import read_bal

    path = slam.data.path("dubrovnik-3-7-pre.txt")
    out = tmp_path / "out"
    assert slam.cli.main(["ba", str(path), "--fix-cameras", "0,1", "--covariance", "--output-dir", str(out), "-q"]) == 0
    saved = np.load(out / "dubrovnik-3-7-pre_covariance.npz")
    expected = ba_optimize(read_bal(path), fix_cameras=[0, 1], covariance=True)
    for name in ("camera_pose", "intrinsics", "point"):
        np.testing.assert_allclose(saved[name], expected.covariance[name].numpy(), rtol=1e-9, atol=1e-15)
    assert saved["camera_pose"].shape == (3, 6, 6) and saved["point"].shape == (7, 3, 3)
    assert not saved["camera_pose"][:2].any() and saved["camera_pose"][2].diagonal().min() > 0
    capsys.readouterr()
    assert slam.cli.main(["ba", str(path), "--covariance", "--output-dir", str(tmp_path / "free"), "-q"]) == 2
    assert "--fix-cameras" in capsys.readouterr().err and not (tmp_path / "free").exists()
    with pytest.raises(SingularInformationError, match="fix two cameras"):
        ba_optimize(read_bal(path), covariance=True)
