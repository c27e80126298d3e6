"""Training through the solver: gradients of a loss on the solution with respect to network
parameters (implicit and unrolled, against finite differences), and a training step that helps."""

from __future__ import annotations

import pytest
import torch

import slam
from slam.learning import EdgeWeightNet, ResidualEdgeWeightNet, edge_chi2, pose_loss, translation_rmse
from slam.pgo import synthetic_outlier_batch


def _loss(net: EdgeWeightNet, data, backward) -> torch.Tensor:
    weights = torch.ones(data.graph.batch_size, data.graph.num_edges, dtype=torch.float64)
    weights = weights.index_put((torch.arange(data.graph.batch_size)[:, None], data.loops[None, :]),
                                net(data.features))
    problem, poses = data.graph.problem(edge_weights=weights)
    config = slam.LevenbergMarquardt(max_iterations=50, function_tolerance=1e-14)
    result = slam.solve(problem, config, backward)
    return translation_rmse(result[poses], data.truth).mean() + 0.1 * pose_loss(result[poses], data.truth)


@pytest.mark.parametrize("backward", [slam.Implicit(), slam.Unroll()], ids=["implicit", "unroll"])
def test_parameter_gradients_equal_finite_differences(backward):
    data = synthetic_outlier_batch(2, num_poses=10, num_loop_closures=4, outlier_ratio=0.5, feature_dim=3, seed=1)
    torch.manual_seed(0)
    net = EdgeWeightNet(3, hidden=4).double()
    _loss(net, data, backward).backward()
    parameters = list(net.parameters())
    assert all(p.grad is not None for p in parameters)
    assert sum(float(p.grad.abs().sum()) for p in parameters) > 0
    eps = 1e-6
    for parameter, index in [(parameters[0], (1, 2)), (parameters[2], (0, 3)), (parameters[3], (0,))]:
        analytic = float(parameter.grad[index])
        with torch.no_grad():
            parameter[index] += eps
            plus = float(_loss(net, data, backward))
            parameter[index] -= 2 * eps
            minus = float(_loss(net, data, backward))
            parameter[index] += eps
        assert analytic == pytest.approx((plus - minus) / (2 * eps), rel=1e-4, abs=1e-9)


def test_implicit_and_unrolled_gradients_agree_at_convergence():
    data = synthetic_outlier_batch(3, num_poses=12, num_loop_closures=5, seed=2)
    grads = []
    for backward in (slam.Implicit(), slam.Unroll()):
        torch.manual_seed(0)
        net = EdgeWeightNet(8, hidden=6).double()
        _loss(net, data, backward).backward()
        grads.append(torch.cat([p.grad.flatten() for p in net.parameters()]))
    assert torch.allclose(grads[0], grads[1], rtol=1e-5, atol=1e-9)


def test_one_training_step_reduces_the_loss_on_a_fixed_batch():
    data = synthetic_outlier_batch(8, seed=3)
    torch.manual_seed(0)
    net = EdgeWeightNet(8).double()
    optimizer = torch.optim.SGD(net.parameters(), lr=1e-2)
    before = _loss(net, data, slam.Implicit())
    optimizer.zero_grad()
    before.backward()
    optimizer.step()
    with torch.no_grad():
        after = _loss(net, data, slam.Implicit())
    assert after.item() < before.item()


def test_edge_chi2_is_each_edges_whitened_squared_residual():
    data = synthetic_outlier_batch(2, num_poses=8, num_loop_closures=3, seed=4)
    graph = data.graph
    chi2 = edge_chi2(graph)
    assert chi2.shape == (2, graph.num_edges)
    # odometry edges fit the odometry initialization exactly; the per-edge values sum to the graph's chi2
    assert float(chi2[:, graph.odometry].abs().max()) < 1e-12
    assert torch.allclose(chi2.sum(-1), graph.chi2_per_graph())
    e, info = graph.errors()[1, 9], graph.information[1, 9]
    assert edge_chi2(graph, edges=data.loops)[1, 9 - (graph.num_poses - 1)] == pytest.approx(float(e @ info @ e))
    # outliers fit the truth far worse than inliers
    at_truth = edge_chi2(graph, type(data.truth)(data.truth.data.expand(2, -1, -1)), data.loops)
    assert float(at_truth[data.outlier].min()) > float(at_truth[~data.outlier].max())


def test_residual_edge_weight_net_is_additive_in_its_log_odds_and_bounded():
    torch.manual_seed(0)
    net = ResidualEdgeWeightNet(3, hidden=4, floor=1e-3, initial_logit=2.0).double()
    descriptors = torch.randn(5, 7, 3, dtype=torch.float64)
    chi2 = torch.rand(5, 7, dtype=torch.float64) * 100
    weights = net(descriptors, chi2)
    assert weights.shape == (5, 7)
    assert bool(((weights > 1e-3) & (weights < 1 + 1e-3)).all())
    # log-odds of the descriptor and of the residual add: changing one shifts the logit by the same amount
    # whatever the other is
    other = torch.randn(5, 7, 3, dtype=torch.float64)
    shift = net.logits(other, chi2) - net.logits(descriptors, chi2)
    assert torch.allclose(net.logits(other, chi2 + 5) - net.logits(descriptors, chi2 + 5), shift)
    # the residual curve starts at initial_logit (weights near fixed weights) up to its random hidden layer
    fresh = ResidualEdgeWeightNet(3, initial_logit=2.0).double()
    assert float(fresh.residual[-1].bias.detach()) == 2.0
    # gradients reach both parts through a weighted solve
    data = synthetic_outlier_batch(2, num_poses=10, num_loop_closures=4, feature_dim=3, seed=1)
    w = torch.ones(2, data.graph.num_edges, dtype=torch.float64)
    w = w.index_put((torch.arange(2)[:, None], data.loops[None, :]),
                    net(data.features, edge_chi2(data.graph, edges=data.loops)))
    problem, poses = data.graph.problem(edge_weights=w)
    translation_rmse(slam.solve(problem, slam.LevenbergMarquardt(max_iterations=20))[poses], data.truth).mean().backward()
    assert all(p.grad is not None and bool(p.grad.abs().sum() > 0) for p in net.parameters())
