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
