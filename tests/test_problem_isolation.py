"""Two problems of one structure share the shape analysis but never a stateful factor: solving them
alternately (forward, forward, backward, backward) gives what each gives alone."""

from __future__ import annotations

import pytest
import torch

import slam
from liegeo import SE3
from slam.pgo.synthetic import synthetic_graph


def _graph(seed: int):
    graph, _ = synthetic_graph(SE3, 40, 12, noise_seed=seed)
    return graph


def _forward(graph, solver: str, weights: torch.Tensor):
    problem, poses = graph.problem(edge_weights=weights)
    result = slam.solve(problem, slam.LevenbergMarquardt(linear_solver=solver), slam.Implicit())
    return problem, result[poses]


@pytest.mark.parametrize("solver", ["cholmod", "dense", "cg"])
def test_alternating_solves_equal_solves_alone(solver):
    if solver == "cholmod":
        pytest.importorskip("sksparse.cholmod")
    graphs = [_graph(1), _graph(2)]  # one structure (same edges), different measurements
    assert torch.equal(graphs[0].i, graphs[1].i) and torch.equal(graphs[0].j, graphs[1].j)

    alone = []
    for graph in graphs:
        weights = torch.ones(graph.num_edges, dtype=torch.float64, requires_grad=True)
        _, solution = _forward(graph, solver, weights)
        (solution.data[..., :3] ** 2).sum().backward()
        alone.append((solution.data.detach(), weights.grad.clone()))

    weights = [torch.ones(g.num_edges, dtype=torch.float64, requires_grad=True) for g in graphs]
    runs = [_forward(g, solver, w) for g, w in zip(graphs, weights)]  # both forwards first
    assert runs[0][0].structure.pattern is runs[1][0].structure.pattern  # the analysis is shared
    assert runs[0][0].structure.solver_cache is not runs[1][0].structure.solver_cache  # the state is not
    for (_, solution), w in reversed(list(zip(runs, weights))):  # then the backward passes, B before A
        (solution.data[..., :3] ** 2).sum().backward()
    for (solution_alone, grad_alone), (_, solution), w in zip(alone, runs, weights):
        torch.testing.assert_close(solution.data.detach(), solution_alone, rtol=0, atol=1e-12)
        torch.testing.assert_close(w.grad, grad_alone, rtol=1e-9, atol=1e-12)


def test_auto_without_cholmod_takes_superlu_and_says_so(monkeypatch, caplog):
    import importlib
    import logging

    from slam.linear.sparse import SparseCholesky

    solve_module = importlib.import_module("slam.optim.solve")  # (slam.optim.solve is also the function)

    graph = _graph(3)
    problem, _ = graph.problem()
    monkeypatch.setattr(solve_module, "_have_cholmod", lambda: False)
    monkeypatch.setattr("slam.linear.sparse_cholesky._cholmod", lambda: None)
    solve_module._log_choice_once.cache_clear()
    with caplog.at_level(logging.INFO, logger="slam"):
        solver = solve_module.make_linear_solver("auto", problem)
        again = solve_module.make_linear_solver("auto", problem)
    assert isinstance(solver, SparseCholesky) and isinstance(again, SparseCholesky)  # never PCG on the CPU
    assert [r.getMessage() for r in caplog.records].count(
        next(r.getMessage() for r in caplog.records if "SuperLU" in r.getMessage())) == 1  # logged once
    result = slam.solve(problem, slam.LevenbergMarquardt(linear_solver=solver))
    reference = slam.solve(graph.problem()[0], slam.LevenbergMarquardt(linear_solver="dense"))
    torch.testing.assert_close(result.cost, reference.cost, rtol=1e-9, atol=1e-12)
    assert solver.factorize(problem.structure, problem.linearize(problem.initial_values())[0]).ok.all()
    assert next(iter(problem.structure.solver_cache.values())).backend == "scipy"


def test_the_plan_is_made_once_and_names_what_runs():
    graph = _graph(3)
    problem, _ = graph.problem()
    plan = problem.analyze()
    assert problem.analyze() is plan and problem.structure is plan.structure
    slam.solve(problem)
    assert problem.analyze() is plan  # the solve ran this plan, it did not make another
    assert plan.unknowns == problem.structure.n and plan.batch_size == 1 and plan.dtype == torch.float64
    (cost,), (variable,) = plan.costs, plan.variables
    assert cost.instances == graph.num_edges and variable.free == graph.num_poses - 1
    from liegeo._kernels import numba_available

    if numba_available():
        assert "fused kernel" in cost.linearization and "fused kernel" in variable.retraction
        assert "fused kernel" in cost.exact_hessian  # SE(3) between edges
    float32, _ = graph.to(dtype=torch.float32).problem()
    plan32 = float32.analyze()
    assert plan32.costs[0].linearization == "analytic Jacobians" and plan32.variables[0].retraction == "torch"
    assert plan32.costs[0].exact_hessian == "autodiff"
    assert plan32.structure.pattern is plan.structure.pattern  # one analysis per shape
    assert "between" in plan.describe()


@pytest.mark.parametrize("device, n, expected", [("cpu", 50, "DenseCholesky"), ("cpu", 5000, "SparseCholesky"),
                                                 ("cuda", 500, "DenseCholesky"), ("cuda", 5000, "ConjugateGradient")])
def test_the_automatic_linear_solver_follows_the_device(device, n, expected):
    from slam.optim.solve import choose_linear_solver

    solver, reason = choose_linear_solver(n, device, have_cholmod=True)
    assert type(solver).__name__ == expected
    assert ("not on the CPU" in reason) == (expected == "ConjugateGradient")
    without, why = choose_linear_solver(n, device, have_cholmod=False)
    assert type(without).__name__ == expected  # SuperLU behind SparseCholesky on the CPU, never PCG there
    assert ("SuperLU" in why) == (expected == "SparseCholesky")
