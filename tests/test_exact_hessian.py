"""The exact Hessian the implicit backward factorizes directly (``Problem.exact_hessian``, ``Cost.exact_blocks``,
the fused SE(3) kernel ``slam._se3_kernels.exact_blocks``) against autograd's dense Hessian of the whole cost,
and the direct implicit backward against conjugate gradients on double-backward products."""

import logging

import pytest
import torch

import slam
from liegeo import SE2, SE3, Euclidean
from slam.costs import Between
from slam.costs.base import Cost

TIGHT = slam.LevenbergMarquardt(max_iterations=200, function_tolerance=0.0, parameter_tolerance=1e-15,
                                gradient_tolerance=1e-13)


def _dense(problem, values):
    """``H`` of ``problem.exact_hessian`` as a dense symmetric ``(B, n, n)``."""
    h = problem.exact_hessian(values)
    pattern = problem.structure.pattern
    n = problem.structure.n
    dense = torch.zeros(h.shape[0], n, n, dtype=h.dtype)
    dense[:, pattern.rows, pattern.cols] = h
    dense[:, pattern.cols, pattern.rows] = h
    return dense


def _autograd_hessian(problem, values):
    """Autograd's Hessian of ``F(x ⊕ δ)`` in the global tangent ``δ`` at 0, per problem of the batch."""
    out = []
    for b in range(problem.batch_size):
        def cost(delta, b=b):
            full = torch.zeros(problem.batch_size, problem.structure.n, dtype=delta.dtype)
            full[b] = delta
            return problem.cost(problem.retract(values, full))[b]

        out.append(torch.autograd.functional.hessian(cost, torch.zeros(problem.structure.n, dtype=torch.float64)))
    return torch.stack(out)


def _off_optimum(problem, generator, scale=0.1):
    step = scale * torch.randn(problem.batch_size, problem.structure.n, generator=generator, dtype=torch.float64)
    return problem.retract([v.detach() for v in problem.initial_values()], step)


def _problems():
    from slam.pgo import synthetic_graph

    generator = torch.Generator().manual_seed(3)
    yield "SE3", synthetic_graph(SE3, 12, 4, rotation_noise=0.3)[0].problem()[0]
    yield "SE3 Cauchy", synthetic_graph(SE3, 12, 4, rotation_noise=0.3)[0].problem(loss=slam.Cauchy(3.0))[0]
    yield "SE3 Huber", synthetic_graph(SE3, 12, 4, rotation_noise=0.3)[0].problem(loss=slam.Huber(3.0))[0]
    yield "SE3 Tukey", synthetic_graph(SE3, 12, 4, rotation_noise=0.3)[0].problem(loss=slam.Tukey(10.0))[0]
    yield "SE2", synthetic_graph(SE2, 12, 4, rotation_noise=0.3)[0].problem()[0]
    init = SE2.exp(torch.randn(5, 3, generator=generator, dtype=torch.float64))
    poses = slam.Variable(init, fixed=[0])
    points = slam.Variable(Euclidean(torch.randn(3, 2, generator=generator, dtype=torch.float64)))

    @slam.residual
    def offset(pose, point, *, target):  # an autodiff cost coupling a Euclidean variable to SE(2) poses
        return pose.act(point.data) - target

    i, j = torch.tensor([0, 1, 2, 3, 0]), torch.tensor([1, 2, 3, 4, 4])
    z = init[i].between(init[j]).retract(0.2 * torch.randn(5, 3, generator=generator, dtype=torch.float64))
    yield "SE2 + R2 autodiff", slam.Problem([
        Between(poses[i], poses[j], measurement=z),
        offset(poses[torch.tensor([1, 2, 3])], points[torch.arange(3)],
               target=torch.randn(3, 2, generator=generator, dtype=torch.float64), loss=slam.Cauchy(0.5))])


@pytest.mark.parametrize("name,problem", list(_problems()), ids=lambda x: x if isinstance(x, str) else "")
def test_exact_hessian_equals_autograd(name, problem, generator):
    """Off the optimum (g ≠ 0, second-order terms large), with robust losses' ρ'' terms and a fixed pose."""
    point = _off_optimum(problem, generator)
    expected = _autograd_hessian(problem, point)
    got = _dense(problem, point)
    scale = expected.abs().max()
    assert ((got - expected).abs().max() / scale).item() < 1e-11, name
    gauss_newton = torch.zeros_like(got)
    h, _, _ = problem.linearize(point)
    pattern = problem.structure.pattern
    gauss_newton[:, pattern.rows, pattern.cols] = h
    gauss_newton[:, pattern.cols, pattern.rows] = h
    assert ((gauss_newton - expected).abs().max() / scale).item() > 1e-4, name  # the test can fail


def _edge_batch(group, generator, edges=140):
    """Edges whose relative rotation error spans 0, 1e-9 … 1 rad and π - 1e-7, and a full (not
    triangular) sqrt-information matrix per edge."""
    dim, rotation = group.tangent_dim, group.tangent_dim - group.point_dim

    def random(scale=1.0):
        return scale * torch.randn(edges, dim, generator=generator, dtype=torch.float64)

    xi, xj = group.exp(random()), group.exp(random())
    relative = xi.inverse().compose(xj)
    scales = torch.tensor([0.0, 1e-9, 1e-6, 1e-3, 0.1, 1.0, 3.0], dtype=torch.float64)[torch.arange(edges) % 7]
    noise = random() * scales.unsqueeze(-1)
    axis = torch.nn.functional.normalize(torch.randn(edges, rotation, generator=generator, dtype=torch.float64), dim=-1)
    if rotation == 1:
        axis = axis.abs()
    near_pi = torch.cat([random()[:, :group.point_dim], axis * (torch.pi - 1e-7)], dim=-1)
    pi_edges = (torch.arange(edges) % 5 == 0).unsqueeze(-1)
    z = group(torch.where(pi_edges, relative.compose(group.exp(near_pi)).data, relative.compose(group.exp(noise)).data))
    sqrt_info = torch.randn(edges, dim, dim, generator=generator, dtype=torch.float64) + 3 * torch.eye(dim, dtype=torch.float64)
    return xi, xj, z, sqrt_info


@pytest.mark.parametrize("group", [SE2, SE3], ids=lambda g: g.__name__)
def test_fused_exact_blocks_equal_autodiff(group, generator):
    """The kernel's ``(r, JᵀJ + Σ r_k ∇²r_k, Jᵀr)`` against ``Cost.exact_blocks``' autodiff, batched (B = 2
    with shared measurements)."""
    xi, xj, z, sqrt_info = _edge_batch(group, generator)
    edges, d = xi.shape[0], 2 * group.tangent_dim
    poses = slam.Variable(group(torch.cat([xi.data, xj.data])))
    cost = Between(poses[torch.arange(edges)], poses[torch.arange(edges) + edges], measurement=z,
                   weight=slam.SqrtInformation(sqrt_info))
    assert cost.exact_blocks_path(torch.float64, "cpu").startswith("fused")
    assert cost.exact_blocks_path(torch.float32, "cpu") == "autodiff"
    second = group.exp(0.3 * torch.randn(edges, group.tangent_dim, generator=generator, dtype=torch.float64))
    values = [group(torch.stack([xi.data, xi.compose(second).data])), group(torch.stack([xj.data, xj.data]))]
    with torch.no_grad():
        r, h, g = cost.exact_blocks(values, 2)
    # The autodiff path: the same cost on the torch path (inputs that autograd sees take no kernel).
    leaves = [v._new(v.data.clone().requires_grad_(True)) for v in values]
    r_ref, h_ref, g_ref = (x.detach() for x in Cost.exact_blocks(cost, leaves, 2))
    a, b = torch.tril_indices(d, d)
    h_ref = h_ref[..., a, b] if h_ref.dim() == 4 else h_ref
    torch.testing.assert_close(r, r_ref, rtol=1e-12, atol=1e-13)
    torch.testing.assert_close(g, g_ref, rtol=1e-11, atol=1e-12)
    error = (h - h_ref).abs().amax(-1) / h_ref.abs().amax(-1)
    assert error.max().item() < 1e-12
    # The second-order part is not negligible on these edges (the test can fail).
    jtj = cost.linearize(values, 2).jtj
    assert ((h - jtj).abs().amax(-1) / h.abs().amax(-1)).max().item() > 1e-2


def _measurement_gradients(group, exact_solve, generator, loss=None):
    import dataclasses

    from slam.pgo import synthetic_graph

    graph, _ = synthetic_graph(group, 24, 8, rotation_noise=0.1)
    measurements = graph.measurements.data.clone().requires_grad_(True)
    problem, poses = dataclasses.replace(graph, measurements=group(measurements)).problem(loss=loss)
    mode = slam.Implicit(exact_solve=exact_solve, tolerance=1e-13)
    probe = torch.randn(poses.value.data.shape, generator=generator, dtype=torch.float64)
    loss_value = (slam.solve(problem, TIGHT, mode)[poses].data * probe).sum()
    return torch.autograd.grad(loss_value, measurements)[0]


@pytest.mark.parametrize("group", [SE2, SE3], ids=lambda g: g.__name__)
@pytest.mark.parametrize("loss", [None, slam.Cauchy(0.05)], ids=["plain", "Cauchy"])
def test_direct_implicit_equals_conjugate_gradients(group, loss):
    direct = _measurement_gradients(group, "direct", torch.Generator().manual_seed(0), loss)
    cg = _measurement_gradients(group, "cg", torch.Generator().manual_seed(0), loss)
    assert ((direct - cg).norm() / cg.norm()).item() < 1e-9


def test_direct_implicit_on_autodiff_costs_equals_conjugate_gradients(generator):
    """``exact_solve="direct"`` where a cost has no fused kernel (an autodiff cost, SE(2))."""
    from slam.optim.implicit import _uses_direct

    grads = []
    for exact_solve in ("direct", "cg"):
        name, problem = list(_problems())[-1]
        target = problem.costs[1].data["target"].clone().requires_grad_(True)
        problem.costs[1].data["target"] = target
        assert _uses_direct(problem, slam.Implicit(exact_solve=exact_solve)) == (exact_solve == "direct")
        assert not _uses_direct(problem, slam.Implicit())  # auto: an autodiff cost takes CG
        result = slam.solve(problem, TIGHT, slam.Implicit(exact_solve=exact_solve, tolerance=1e-13))
        loss = sum((value.data ** 2).sum() for value in result.values.values())
        grads.append(torch.autograd.grad(loss, target)[0])
    assert ((grads[0] - grads[1]).norm() / grads[1].norm()).item() < 1e-9


def test_auto_takes_the_direct_solve_where_every_cost_is_fused():
    from slam.optim.implicit import _uses_direct
    from slam.pgo import synthetic_graph

    problem = synthetic_graph(SE3, 8, 2)[0].problem()[0]
    assert _uses_direct(problem, slam.Implicit())
    assert _uses_direct(synthetic_graph(SE2, 8, 2)[0].problem()[0], slam.Implicit())
    assert not _uses_direct(problem, slam.Implicit(hessian="gauss_newton"))
    assert not _uses_direct(problem, slam.Implicit(exact_solve="cg"))
    assert not _uses_direct(problem, slam.Implicit(products="differences"))  # CG's products: CG
    problem32 = synthetic_graph(SE3, 8, 2, dtype=torch.float32)[0].problem()[0]
    assert not _uses_direct(problem32, slam.Implicit())  # no float32 kernel
    with pytest.raises(ValueError, match="exact_solve"):
        slam.Implicit(exact_solve="lu")


def test_indefinite_exact_hessian_falls_back(caplog):
    """At a stationary point that is not a minimum the exact H is indefinite: the direct factorization
    fails, CG breaks down, and the Gauss-Newton solve answers (with a warning), as before."""

    @slam.residual
    def saddle(x, *, c):
        return torch.stack([x.data[..., 0] ** 2 - c, x.data[..., 0]], dim=-1)  # F''(0) = -2c + 1 < 0

    c = torch.tensor([2.0], dtype=torch.float64, requires_grad=True)
    x = slam.Variable(Euclidean(torch.zeros(1, 1, dtype=torch.float64)))
    problem = slam.Problem([saddle(x[torch.tensor([0])], c=c)])
    with caplog.at_level(logging.INFO, logger="slam"):
        result = slam.solve(problem, TIGHT, slam.Implicit(exact_solve="direct"))
        (grad,) = torch.autograd.grad(result[x].data.sum() + 0.0 * c.sum(), c, allow_unused=True)
    assert grad is not None and torch.isfinite(grad).all()
    text = caplog.text
    assert "not positive definite" in text and "Gauss-Newton" in text
