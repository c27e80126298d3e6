"""Graduated non-convexity (``slam.optim.gnc``): outlier rejection on a 2D pose graph with false loop
closures, against GTSAM's ``GncLMOptimizer`` on the same factors, per problem inside a batch, and
``slam pgo --gnc``'s JSON."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest
import torch

import slam
import slam.cli
from liegeo import SE2
from slam.optim.gnc import GNC, gnc_solve, gnc_weights
from slam.pgo import PoseGraph, synthetic_graph

NUM_POSES, NUM_LOOPS, NUM_FALSE = 60, 20, 24  # 24 false loops: 30 % of the 79 true edges
LM = slam.LevenbergMarquardt(initial_damping=1e-8, max_iterations=100, function_tolerance=1e-10)


def _outlier_graph(noise_seed: int = 2, structure_seed: int = 2) -> tuple[PoseGraph, PoseGraph]:
    """``(graph with false loops appended, the same graph without them)``: the false loops join random
    pairs (not consecutive) with random relative poses (translation ~ 4 m per axis, any heading up to
    ±1.5 rad) and the true loops' information."""
    clean, _ = synthetic_graph(SE2, NUM_POSES, NUM_LOOPS, structure_seed=structure_seed, noise_seed=noise_seed)
    structure = torch.Generator().manual_seed(100 + structure_seed)
    a = torch.randint(0, NUM_POSES, (NUM_FALSE,), generator=structure)
    b = torch.randint(0, NUM_POSES, (NUM_FALSE,), generator=structure)
    b = torch.where((a - b).abs() < 2, (a + NUM_POSES // 2) % NUM_POSES, b)
    noise = torch.Generator().manual_seed(200 + noise_seed)
    false = SE2.exp(torch.cat([4.0 * torch.randn(NUM_FALSE, 2, generator=noise, dtype=torch.float64),
                               3.0 * (torch.rand(NUM_FALSE, 1, generator=noise, dtype=torch.float64) - 0.5)], -1))
    graph = dataclasses.replace(
        clean, i=torch.cat([clean.i, a]), j=torch.cat([clean.j, b]),
        measurements=SE2(torch.cat([clean.measurements.data, false.data])),
        information=torch.cat([clean.information, clean.information[-1:].expand(NUM_FALSE, 3, 3)]))
    return graph, clean


def _true_edges(graph: PoseGraph) -> torch.Tensor:
    return torch.arange(graph.num_edges) < graph.num_edges - NUM_FALSE


def _translations(poses) -> torch.Tensor:
    return poses.matrix()[..., :2, 2]


def _gnc(graph: PoseGraph, loss: str, **options):
    problem, poses = graph.problem()
    result = gnc_solve(problem, GNC(inner=LM, loss=loss, **options), known_inliers={"between": graph.odometry})
    return result, result[poses]


@pytest.mark.parametrize("loss", ["tls", "gm"])
def test_gnc_rejects_exactly_the_false_loops_and_recovers_the_clean_optimum(loss):
    graph, clean = _outlier_graph()
    problem, poses = clean.problem()
    optimum = slam.solve(problem, LM)[poses]
    reference = _translations(optimum)
    extent = float((reference.amax(0) - reference.amin(0)).norm())
    # precondition: at the clean optimum every true edge is below the 99 % threshold (else GNC rightly drops it)
    e = clean.errors(optimum)
    assert bool((0.5 * torch.einsum("ea,eab,eb->e", e, clean.information, e) < result_threshold()).all())

    result, solution = _gnc(graph, loss)
    assert result.termination == [{"tls": "weights", "gm": "mu"}[loss]]
    assert torch.equal(result.inliers[0], _true_edges(graph)), torch.nonzero(result.inliers[0] != _true_edges(graph))
    difference = float((_translations(solution) - reference).norm(dim=-1).max())
    assert difference <= 1e-3 * extent, (difference, extent)
    if loss == "tls":  # binary weights: exactly the clean problem
        assert difference <= 1e-7 * extent

    problem, poses = graph.problem()
    plain = float((_translations(slam.solve(problem, LM)[poses]) - reference).norm(dim=-1).max())
    assert plain > 0.05 * extent, plain  # plain least squares is pulled away by the false loops


def result_threshold() -> float:
    from scipy.stats import chi2

    return 0.5 * float(chi2.ppf(0.99, 3))


def test_weight_formulas():
    threshold, mu = torch.tensor(2.0, dtype=torch.float64), torch.tensor(3.0, dtype=torch.float64)
    u = torch.tensor([0.0, 1.0, 1.5, 2.0, 2.5, 2.66, 2.7, 10.0], dtype=torch.float64)
    tls = gnc_weights("tls", u, threshold, mu)
    lower, upper = mu / (mu + 1) * threshold, (mu + 1) / mu * threshold  # 1.5, 2.667
    expected = torch.where(u <= lower, 1.0, torch.where(u >= upper, 0.0,
                                                      (torch.sqrt(threshold * mu * (mu + 1) / u) - mu).clamp(0, 1)))
    torch.testing.assert_close(tls, expected.to(torch.float64))
    assert tls[0] == 1 and tls[-1] == 0 and 0 < float(tls[4]) < 1
    # continuous at both ends of the transition
    for edge, value in ((lower, 1.0), (upper, 0.0)):
        assert float(gnc_weights("tls", edge * (1 + 1e-9), threshold, mu)) == pytest.approx(value, abs=1e-6)
    gm = gnc_weights("gm", u, threshold, mu)
    torch.testing.assert_close(gm, (mu * threshold / (u + mu * threshold)) ** 2)
    gtsam = pytest.importorskip("gtsam")
    # GTSAM's GemanMcClure kernel: w(e) = c⁴ / (c² + e²)² with c² = μ c̄² and e² = u
    kernel = gtsam.noiseModel.mEstimator.GemanMcClure.Create(float(torch.sqrt(mu * threshold)))
    np.testing.assert_allclose([kernel.weight(float(np.sqrt(x))) for x in u.tolist()], gm.numpy(), rtol=1e-12)


def _gtsam_graph(gtsam, graph: PoseGraph):
    def pose2(m):
        return gtsam.Pose2(m[0, 2], m[1, 2], float(np.arctan2(m[1, 0], m[0, 0])))

    factors = gtsam.NonlinearFactorGraph()
    z = graph.measurements.matrix().numpy()
    for e in range(graph.num_edges):
        factors.add(gtsam.BetweenFactorPose2(int(graph.i[e]), int(graph.j[e]), pose2(z[e]),
                                             gtsam.noiseModel.Gaussian.Information(graph.information[e].numpy())))
    p = graph.poses.matrix().numpy()
    factors.add(gtsam.PriorFactorPose2(0, pose2(p[0]), gtsam.noiseModel.Isotropic.Sigma(3, 1e-6)))  # our fixed pose 0
    values = gtsam.Values()
    for k in range(graph.num_poses):
        values.insert(k, pose2(p[k]))
    return factors, values


def _gtsam_gnc_params(gtsam, graph, loss: str):  # type: ignore[no-untyped-def]
    """GTSAM's GNC settings for ``graph``: its inner LM at tight tolerances, odometry and the prior
    (the last factor of ``_gtsam_graph``) known inliers (also benchmarks/gnc.py's)."""
    params = gtsam.GncLMParams()
    params.setLossType(gtsam.GncLossType.TLS if loss == "tls" else gtsam.GncLossType.GM)
    inner = gtsam.LevenbergMarquardtParams()
    inner.setRelativeErrorTol(1e-10)
    inner.setAbsoluteErrorTol(1e-12)
    inner.setMaxIterations(100)
    params.baseOptimizerParams = inner
    params.setKnownInliers([e for e in range(graph.num_edges) if bool(graph.odometry[e])] + [graph.num_edges])
    return params


@pytest.mark.parametrize("loss", ["tls", "gm"])
def test_gnc_equals_gtsam_gnc(loss):
    """GTSAM's GncLMOptimizer on the same factors (its inner LM at tight tolerances, odometry and the
    prior known inliers): the same weights, inlier set and final weighted cost.  ``warm_start=False``
    (default) is GTSAM's rule (every weighted solve from the initial values); the warm start finds the
    same set here."""
    gtsam = pytest.importorskip("gtsam")
    graph, _ = _outlier_graph()
    factors, values = _gtsam_graph(gtsam, graph)
    optimizer = gtsam.GncLMOptimizer(factors, values, _gtsam_gnc_params(gtsam, graph, loss))
    solution = optimizer.optimize()
    theirs = np.asarray(optimizer.getWeights())
    assert theirs[-1] == 1.0
    their_cost = sum(theirs[k] * factors.at(k).error(solution) for k in range(factors.size()))
    np.testing.assert_allclose(np.asarray(optimizer.getInlierCostThresholds())[:-1], result_threshold(), rtol=1e-9)

    cold, _ = _gnc(graph, loss)
    np.testing.assert_array_equal(cold.inliers[0].numpy(), theirs[:-1] > 0.5)
    np.testing.assert_allclose(cold.weights[0].numpy(), theirs[:-1], atol=1e-5)  # GM: 1.1e-6 measured
    assert float(cold.cost[0]) == pytest.approx(their_cost, rel=1e-6)
    warm, _ = _gnc(graph, loss, warm_start=True)
    np.testing.assert_array_equal(warm.inliers[0].numpy(), theirs[:-1] > 0.5)
    assert float(warm.cost[0]) == pytest.approx(their_cost, rel=1e-6)


def test_known_inliers_are_never_downweighted():
    graph, _ = _outlier_graph()
    result, _ = _gnc(graph, "tls")
    odometry = graph.odometry
    assert bool((result.weights[0][odometry] == 1).all())
    false = graph.num_edges - 1
    assert float(result.weights[0][false]) == 0.0
    problem, _ = graph.problem()
    known = odometry.clone()
    known[false] = True
    forced = gnc_solve(problem, GNC(inner=LM, loss="gm"), known_inliers={problem.costs[0]: known})
    assert float(forced.weights[0][false]) == 1.0 and bool((forced.weights[0][odometry] == 1).all())
    assert float(forced.weights[0][false - 1]) < 0.5  # the other false loops still go
    with pytest.raises(ValueError, match="no cost"):
        gnc_solve(problem, GNC(), known_inliers={"nothing": [0]})


def test_batch_equals_each_graph_alone():
    graphs = [_outlier_graph(noise_seed=s)[0] for s in (2, 3)]
    batch = PoseGraph.stack(graphs)
    for loss in ("tls", "gm"):
        together, poses = _gnc(batch, loss)
        assert together.weights[0].shape == (2, batch.num_edges)
        for b, graph in enumerate(graphs):
            alone, solution = _gnc(graph, loss)
            torch.testing.assert_close(together.weights[0][b], alone.weights[0], atol=1e-9, rtol=0)
            assert torch.equal(together.inliers[0][b], alone.inliers[0])
            assert int(together.iterations[b]) == int(alone.iterations[0])
            assert together.termination[b] == alone.termination[0]
            torch.testing.assert_close(poses.data[b], solution.data, atol=1e-9, rtol=0)


def test_pgo_optimize_and_cli_write_the_inlier_set(tmp_path):
    from slam.io import write_g2o

    graph, _ = _outlier_graph()
    result = slam.pgo.optimize(graph, gnc="tls", diagnose=False)
    assert result.gnc["inliers"] == torch.nonzero(_true_edges(graph)).reshape(-1).tolist()
    assert result.converged and result.config["gnc"] == "tls"
    with pytest.raises(ValueError, match="exclude"):
        slam.pgo.optimize(graph, gnc="tls", loss=slam.Huber(1.0))

    path = tmp_path / "outliers.g2o"
    write_g2o(path, graph)
    assert slam.cli.main(["pgo", str(path), "--gnc", "gm", "--output-dir", str(tmp_path / "out"), "-q"]) == 0
    record = json.loads((tmp_path / "out" / "outliers.json").read_text())
    assert record["gnc"]["loss"] == "gm"
    assert record["gnc"]["inliers"] == torch.nonzero(_true_edges(graph)).reshape(-1).tolist()
    assert len(record["gnc"]["weights"]) == graph.num_edges and record["gnc"]["iterations"] > 0


def test_every_round_solves_one_weighted_problem(monkeypatch):
    """The weighted problem is built once (its plan, structure and linear-solver state shared by every
    round); only its weights and starting values change between rounds."""
    import importlib

    solve_module = importlib.import_module("slam.optim.solve")
    seen, original = [], solve_module.solve

    def recording(problem, *args, **kwargs):
        seen.append((problem, problem.structure))
        return original(problem, *args, **kwargs)

    monkeypatch.setattr(solve_module, "solve", recording)
    graph, _ = _outlier_graph()
    result, _ = _gnc(graph, "tls")
    assert len(seen) == int(result.iterations[0]) + 1 > 2
    assert len({id(p) for p, _ in seen}) == 1 and len({id(s) for _, s in seen}) == 1
