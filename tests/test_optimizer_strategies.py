"""The optimizers as step strategies around one loop: Powell's dogleg against GTSAM's and against LM,
one factorization per linearization, termination reasons, per-iteration subscribers, and stopping
tolerances that scale with the dtype."""

from __future__ import annotations

import json
import logging

import pytest
import torch

import slam
from liegeo import SE2, SE3
from slam.costs import Between
from slam.linear.dense import DenseCholesky
from slam.pgo import optimize, synthetic_graph
from slam.optim.loop import tolerance_floors

TIGHT = dict(max_iterations=200, function_tolerance=1e-15, parameter_tolerance=1e-15, gradient_tolerance=1e-12)


def _graph(group, poses=60, loops=15, **noise):
    graph, _ = synthetic_graph(group, poses, loops, **noise)
    return graph


class CountingSolver(DenseCholesky):
    def __init__(self):
        self.calls = 0

    def factorize(self, structure, values):
        self.calls += 1
        return super().factorize(structure, values)


@pytest.mark.parametrize("group", [SE2, SE3])
def test_dogleg_reaches_the_levenberg_marquardt_optimum(group):
    graph = _graph(group, translation_noise=0.1, rotation_noise=0.1)
    problem, poses = graph.problem()
    lm = slam.solve(problem, slam.LevenbergMarquardt(**TIGHT))
    problem, poses = graph.problem()
    dogleg = slam.solve(problem, slam.Dogleg(**TIGHT))
    assert bool(dogleg.converged[0]), dogleg.termination
    torch.testing.assert_close(dogleg.cost, lm.cost, rtol=1e-9, atol=0)
    # the radius is recorded, the damping is not used
    assert all(r.radius is not None and bool((r.damping == 0).all()) for r in dogleg.history)


def test_dogleg_equals_gtsam_dogleg_on_a_pose_graph(tmp_path):
    gtsam = pytest.importorskip("gtsam")
    from slam.io import write_g2o

    graph = _graph(SE3, translation_noise=0.1, rotation_noise=0.1)
    path = tmp_path / "graph.g2o"
    write_g2o(path, graph)
    factors, initial = gtsam.readG2o(str(path), True)
    factors.add(gtsam.PriorFactorPose3(0, initial.atPose3(0), gtsam.noiseModel.Constrained.All(6)))
    params = gtsam.DoglegParams()
    params.setRelativeErrorTol(1e-10)
    params.setMaxIterations(200)
    theirs = 2.0 * factors.error(gtsam.DoglegOptimizer(factors, initial, params).optimize())
    problem, _ = graph.problem()
    ours = slam.solve(problem, slam.Dogleg(function_tolerance=1e-10, max_iterations=200))
    assert 2.0 * float(ours.cost[0]) == pytest.approx(theirs, rel=1e-7)


def test_dogleg_factorizes_once_per_linearization_point():
    def rosenbrock(x):
        return torch.stack([10.0 * (x[1] - x[0] ** 2), 1.0 - x[0]])

    solver = CountingSolver()
    fit = slam.least_squares(rosenbrock, [-1.2, 1.0], method="dogleg", linear_solver=solver)
    accepted = sum(int(r.accepted[0]) for r in fit.history)
    assert fit.converged and len(fit.history) > accepted, "the test needs a rejected step"
    # the start and every accepted point a step is taken from (not the solution, where the solve
    # stopped); a rejected step reuses both steps (no refactorization)
    assert solver.calls == accepted + 1 - int(fit.history[-1].accepted[0])


def test_levenberg_marquardt_factorizes_once_per_trial():
    graph = _graph(SE2)
    problem, _ = graph.problem()
    solver = CountingSolver()
    result = slam.solve(problem, slam.LevenbergMarquardt(linear_solver=solver))
    assert solver.calls == len(result.history) == int(result.iterations[0])


def test_dogleg_handles_a_free_gauge():
    """Nothing fixed: H is singular; the regularized Gauss-Newton step inside the region still converges."""
    graph = _graph(SE2, poses=20, loops=5)
    poses = slam.Variable(graph.poses.clone())
    between = Between(poses[graph.i], poses[graph.j], measurement=graph.measurements,
                      weight=slam.SqrtInformation.from_information(graph.information))
    free = slam.solve(slam.Problem([between]), slam.Dogleg(**TIGHT))
    anchored, _ = graph.problem()
    reference = slam.solve(anchored, slam.LevenbergMarquardt(**TIGHT))
    torch.testing.assert_close(free.cost, reference.cost, rtol=1e-8, atol=1e-12)


def test_least_squares_dogleg_on_rosenbrock():
    def rosenbrock(x):
        return torch.stack([10.0 * (x[1] - x[0] ** 2), 1.0 - x[0]])

    fit = slam.least_squares(rosenbrock, [-1.2, 1.0], method="dogleg")
    assert fit.converged, fit.termination
    torch.testing.assert_close(fit.x, torch.ones(2, dtype=torch.float64), rtol=0, atol=1e-8)


def test_termination_is_an_enum_that_reads_as_its_message():
    graph = _graph(SE2)
    problem, _ = graph.problem()
    result = slam.solve(problem, slam.LevenbergMarquardt(max_iterations=1))
    reason = result.termination[0]
    assert reason is slam.Termination.MAX_ITERATIONS and not reason.converged
    assert reason == "maximum iterations" and f"{reason}" == "maximum iterations" and str(reason) == reason.message
    assert json.loads(json.dumps({"why": reason})) == {"why": "maximum iterations"}
    converged = slam.solve(graph.problem()[0], slam.LevenbergMarquardt())
    assert converged.termination[0].converged and bool(converged.converged[0])
    assert {t for t in slam.Termination if t.converged} == {
        slam.Termination.GRADIENT_TOLERANCE, slam.Termination.FUNCTION_TOLERANCE, slam.Termination.ABSOLUTE_TOLERANCE,
        slam.Termination.PARAMETER_TOLERANCE, slam.Termination.COST_TOLERANCE, slam.Termination.NO_FREE_VARIABLES}


def test_records_go_to_every_subscriber(caplog):
    graph = _graph(SE2)
    seen = []
    with caplog.at_level(logging.INFO, logger="slam"):
        result = slam.solve(graph.problem()[0], slam.LevenbergMarquardt(), callbacks=[seen.append])
    assert seen == result.history and len(seen) == int(result.iterations[0])
    assert [r.iteration for r in seen] == list(range(len(seen)))
    assert all(r.active is not None and bool(r.active[0]) for r in seen)
    iteration_lines = [m for m in caplog.messages if m.startswith("iter ")]
    assert len(iteration_lines) == len(seen)

    class Abort(Exception):
        pass

    def stop_after_two(record):
        if record.iteration == 1:
            raise Abort

    with pytest.raises(Abort):
        slam.solve(graph.problem()[0], slam.LevenbergMarquardt(), callbacks=[stop_after_two])


@pytest.mark.parametrize("group", [SE2, SE3])
def test_float32_stops_where_float64_stops(group):
    graph = _graph(group, poses=300, loops=20)
    f64 = optimize(graph, dtype=torch.float64)
    f32 = optimize(graph, dtype=torch.float32)
    assert f64.converged and f32.converged, (f64.termination, f32.termination)
    assert f32.iterations <= f64.iterations + 2, (f32.iterations, f64.iterations)
    assert f32.final_chi2 == pytest.approx(f64.final_chi2, rel=1e-4)


def test_float32_least_squares_stops_on_its_tolerances():
    """Without floors, xtol = 1e-8 is below float32's resolution and the fit runs to the iteration limit."""
    x = torch.linspace(0.0, 4.0, 40, dtype=torch.float32)
    y = 2.5 * torch.exp(-1.3 * x) + 0.01 * torch.sin(7.0 * x)

    def residual(b):
        return b[0] * torch.exp(-b[1] * x) - y

    f64 = slam.least_squares(lambda b: residual(b.float()).double(), [1.0, 1.0])
    f32 = slam.least_squares(residual, torch.tensor([1.0, 1.0], dtype=torch.float32))
    assert f32.converged and f32.iterations <= f64.iterations + 3, (f32.termination, f32.iterations, f64.iterations)
    torch.testing.assert_close(f32.x.double(), f64.x, rtol=1e-4, atol=0)


def test_tolerance_floors_leave_float64_defaults_alone():
    function, parameter = tolerance_floors(torch.float64)
    assert function < 1e-12 and parameter < 1e-12  # far below every default (1e-6, 1e-8)
    function32, parameter32 = tolerance_floors(torch.float32)
    assert function32 > 1e-6 and parameter32 > 1e-7  # above float32's rounding of a sum of many terms
