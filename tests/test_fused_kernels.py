"""The fused SE(3) and SE(2) kernels (``slam._se3_kernels``, ``slam._se2_kernels``, ``liegeo._se3_kernels``) against the torch path they replace: between
residuals, normal-equation blocks (plain, robust, batched) and the retraction, on random poses whose
relative errors include near-identity and near-π rotations."""

from __future__ import annotations

import math

import pytest
import torch

import slam
from liegeo import SE2, SE3
from slam import _se3_kernels
from slam.costs import Between
from slam.problem import Problem
from slam.robust import Huber
from slam.weights import SqrtInformation

pytestmark = pytest.mark.skipif(not _se3_kernels.available(), reason="numba is not installed")


def _errors(kind: str, e: int, generator: torch.Generator) -> torch.Tensor:
    """Tangent errors ``(e, 6)`` whose rotation angles are small, ordinary, or within 1e-7 of π."""
    xi = torch.randn(e, 6, generator=generator, dtype=torch.float64)
    axis = xi[:, 3:] / xi[:, 3:].norm(dim=-1, keepdim=True)
    angle = {"identity": 1e-9, "small": 1e-3, "ordinary": 1.0, "pi": math.pi - 1e-7}[kind]
    xi[:, 3:] = angle * axis
    if kind == "identity":
        xi[:, :3] *= 1e-9
    return xi


def _problem(kind: str, generator: torch.Generator, *, batch: int | None = None, loss=None, group=SE3):
    """A random graph of 12 poses and 30 edges whose errors are of the chosen size, with a full (not
    triangular) sqrt-information; returns the problem, the measurements and the errors."""
    n, e, d = 12, 30, group.tangent_dim
    poses = group.random(*((batch,) if batch else ()), n, generator=generator, dtype=torch.float64)
    i = torch.randint(0, n, (e,), generator=generator)
    j = (i + 1 + torch.randint(0, n - 1, (e,), generator=generator)) % n
    xi, xj = poses[..., i], poses[..., j]
    errors = (_errors if group is SE3 else _se2_errors)(kind, e, generator)
    # Z = D · Exp(-ξ) makes the residual Log(Z⁻¹ D) = ξ, of the chosen size.
    measurement = xi.between(xj).retract(-errors)
    a = torch.randn(e, d, d, generator=generator, dtype=torch.float64)
    weight = SqrtInformation(a + 3.0 * torch.eye(d, dtype=torch.float64))
    variable = slam.Variable(poses, fixed=[0])
    cost = Between(variable[i], variable[j], measurement=measurement, weight=weight, loss=loss)
    return Problem([cost]), measurement, errors


def _counting(monkeypatch, module, names=("residuals", "normal_blocks")):
    calls = []
    for name in names:
        original = getattr(module, name)
        monkeypatch.setattr(module, name, lambda *a, _f=original, _n=name: (calls.append(_n), _f(*a))[1])
    return calls


def _torch_path(monkeypatch, fn):
    import liegeo._kernels
    import slam.costs.pose_graph

    with monkeypatch.context() as m:
        for module in (slam.costs.pose_graph, liegeo._kernels):  # the costs' kernels, the groups' retractions
            m.setattr(module, "kernel_inputs_ok", lambda *tensors: False)
        return fn()


@pytest.mark.parametrize("group", [SE3, SE2])
@pytest.mark.parametrize("kind", ["identity", "small", "ordinary", "pi"])
@pytest.mark.parametrize("batch", [None, 3])
@pytest.mark.parametrize("robust", [False, True])
def test_linearization_equals_the_torch_path(group, kind, batch, robust, generator, monkeypatch):
    from slam import _se2_kernels

    problem, measurement, _ = _problem(kind, generator, batch=batch, loss=Huber(0.5) if robust else None,
                                       group=group)
    if kind == "pi":  # the residual really is near π (or the test would not test that branch)
        a, b = problem.costs[0].variables
        r = measurement.local(a.variable.value[..., a.index].between(b.variable.value[..., b.index]))
        rotation = r[..., 3:].norm(dim=-1) if group is SE3 else r[..., 2].abs()
        assert float(rotation.min()) > math.pi - 1e-6
    values = problem.initial_values()
    calls = _counting(monkeypatch, _se3_kernels if group is SE3 else _se2_kernels, ("normal_blocks", "accumulate_normal"))
    fused = problem.linearize(values)
    # Without a robust loss the kernel adds its blocks straight into H and g; with one, the problem
    # reweights the blocks and assembles them.
    assert calls == ["normal_blocks" if robust else "accumulate_normal"], "the fused kernel did not run"
    reference = _torch_path(monkeypatch, lambda: problem.linearize(values))
    (h, g, f), (h_ref, g_ref, f_ref) = fused, reference
    # Tolerances in units of the problem's scale: rounding of r (~1e-16 absolute, whatever its size)
    # limits g to ~|J| 1e-16 and f to ~|r| 1e-16.
    jacobian_scale = float(h_ref.abs().max()) ** 0.5
    assert torch.allclose(h, h_ref, rtol=0, atol=1e-12 * jacobian_scale**2), float((h - h_ref).abs().max())
    assert torch.allclose(g, g_ref, rtol=1e-11, atol=1e-13 * jacobian_scale), float((g - g_ref).abs().max())
    assert torch.allclose(f, f_ref, rtol=1e-9, atol=1e-20)
    assert torch.allclose(problem.cost(values), _torch_path(monkeypatch, lambda: problem.cost(values)),
                          rtol=1e-9, atol=1e-20)


@pytest.mark.parametrize("group", [SE3, SE2])
@pytest.mark.parametrize("batch", [None, 3])
def test_blocks_added_in_place_equal_the_assembled_blocks(group, batch, generator, monkeypatch):
    """``Cost.accumulate_normal`` (the kernel adds into H and g at the structure's slots) gives H, g and F
    equal to the bit to the kernel's blocks assembled by ``Structure.assemble`` (same additions in the same
    order), with fixed poses (their discarded slots).  Mixed with a robust cost and an edge from a pose to
    itself (blocks counted twice), which take the blocks path after the in-place ones: equal up to the
    order of the sums."""
    from slam import _se2_kernels

    problem, measurement, _ = _problem("ordinary", generator, batch=batch, group=group)
    between = problem.costs[0]
    a, b = between.variables
    a.variable.fixed[[0, 5]] = True
    problem = Problem([between])
    loop = Between(a.variable[[3]], a.variable[[3]], measurement=group.identity(1, dtype=torch.float64))
    robust = Between(a, b, measurement=measurement, weight=between.weight, loss=Huber(0.5))
    mixed = Problem([between, robust, loop, Between(b, a, measurement=measurement.inverse())])
    calls = _counting(monkeypatch, _se3_kernels if group is SE3 else _se2_kernels, ("normal_blocks", "accumulate_normal"))
    for p, expected, exact in ((problem, ["accumulate_normal"], True),
                               (mixed, ["accumulate_normal", "accumulate_normal", "normal_blocks", "normal_blocks"], False)):
        values = p.initial_values()
        calls.clear()
        h, g, f = p.linearize(values)
        assert calls == expected
        contributions, total = p._blocks(values)
        h_ref, g_ref = p.structure.assemble(contributions, p.batch_size)
        if exact:
            assert torch.equal(h, h_ref) and torch.equal(g, g_ref) and torch.equal(f, total)
        else:
            assert p.structure.costs[2].multiplicity is not None
            scale = float(h_ref.abs().max())
            torch.testing.assert_close(h, h_ref, rtol=0, atol=1e-14 * scale)
            torch.testing.assert_close(g, g_ref, rtol=0, atol=1e-14 * float(g_ref.abs().max()))
            assert torch.equal(f, total)  # F is summed in the costs' order either way
        assert torch.equal(f, p.cost(values))


@pytest.mark.parametrize("scale", [1e-10, 1e-3, 0.5, 2.0, 3.1])
def test_retract_equals_se3_retract(scale, generator):
    x = SE3.random(2, 50, generator=generator, dtype=torch.float64)
    delta = scale * torch.randn(2, 50, 6, generator=generator, dtype=torch.float64)
    assert torch.allclose(x.retract_step(delta).data, x.retract(delta).data, rtol=0, atol=1e-14)
    assert torch.allclose(x.retract_step(delta[0]).data, x.retract(delta[0]).data, rtol=0, atol=1e-14)  # broadcast


@pytest.mark.parametrize("scale", [0.0, 1e-10, 1e-3, 0.5, 2.0, 3.14159])
def test_retract_equals_se2_retract(scale, generator):
    """The fused SE(2) retraction against the torch one, near identity and near π too, broadcast."""
    x = SE2.random(2, 50, generator=generator, dtype=torch.float64)
    delta = scale * torch.randn(2, 50, 3, generator=generator, dtype=torch.float64)
    delta[0, 0, 2] = scale if scale else 0.0
    delta[0, 1, 2] = math.pi - 1e-9 if scale > 3 else delta[0, 1, 2]
    assert SE2.retraction_path(torch.float64, "cpu").startswith("fused")
    assert torch.allclose(x.retract_step(delta).data, x.retract(delta).data, rtol=0, atol=1e-14)
    assert torch.allclose(x.retract_step(delta[0]).data, x.retract(delta[0]).data, rtol=0, atol=1e-14)  # broadcast


@pytest.mark.parametrize("group", [SE3, SE2])
def test_autograd_and_float32_take_the_torch_path(group, generator, monkeypatch):
    from slam import _se2_kernels

    calls = _counting(monkeypatch, _se3_kernels if group is SE3 else _se2_kernels)
    problem, measurement, _ = _problem("ordinary", generator, group=group)
    cost = problem.costs[0]
    gathered = problem._gather(cost, problem.initial_values())
    fused = cost.whitened_residual(gathered), cost.linearize(gathered, 1)
    assert calls == ["residuals", "normal_blocks"]
    z = group(measurement.data.clone().requires_grad_(True))
    torch_path = Between(*cost.variables, measurement=z, weight=cost.weight)
    with torch.enable_grad():
        reference = torch_path.whitened_residual(gathered), torch_path.linearize(gathered, 1)
    assert calls == ["residuals", "normal_blocks"]  # the kernel did not run for inputs that need autograd
    assert reference[0].requires_grad and reference[1].jtr.requires_grad
    torch.testing.assert_close(fused[0], reference[0].detach(), rtol=1e-12, atol=1e-12)
    rows, cols = torch.tril_indices(2 * group.tangent_dim, 2 * group.tangent_dim)
    torch.testing.assert_close(fused[1].j, reference[1].j.detach(), rtol=1e-10, atol=1e-10)
    torch.testing.assert_close(fused[1].jtj, reference[1].jtj.detach()[..., rows, cols], rtol=1e-10, atol=1e-10)
    torch.testing.assert_close(fused[1].jtr, reference[1].jtr.detach(), rtol=1e-10, atol=1e-10)
    single = [group(x.data.float()) for x in gathered]
    float32 = Between(*cost.variables, measurement=group(measurement.data.float()),
                      weight=SqrtInformation(cost.weight.matrix.float()))
    assert float32.linearize(single, 1).r.dtype == torch.float32
    assert calls == ["residuals", "normal_blocks"]  # nor for float32
    x = group.random(4, generator=generator)
    zero = torch.zeros(4, group.tangent_dim)
    assert torch.equal(x.retract_step(zero).data, x.retract(zero).data)


def test_gradients_flow_through_a_solve_that_uses_the_kernels_elsewhere(generator):
    """With measurements that require grad the solve differentiates through the torch path."""
    problem, measurement, _ = _problem("small", generator)
    z = measurement.data.clone().requires_grad_(True)
    cost = problem.costs[0]
    variable = cost.variables[0].variable
    differentiable = Problem([Between(cost.variables[0], cost.variables[1], measurement=SE3(z), weight=cost.weight)])
    result = slam.solve(differentiable, slam.LevenbergMarquardt(max_iterations=5))
    result[variable].data.sum().backward()
    assert z.grad is not None and torch.isfinite(z.grad).all() and z.grad.abs().sum() > 0


@pytest.mark.parametrize("robust", [False, True])
@pytest.mark.parametrize("batch", [None, 2])
def test_bal_reprojection_linearization_equals_the_torch_path(robust, batch, monkeypatch):
    from slam.ba import build, synthetic_bal

    scene, _ = synthetic_bal(4, 25, seed=7, pixel_noise=3.0)
    problem, variables = build(scene, loss=Huber(2.0) if robust else None)
    if batch:  # the same cost over a batch of two slightly different parameter sets
        cost = problem.costs[0]
        batched = [slam.Variable(v.value._new(torch.stack([v.value.data, v.value.retract(
            1e-3 * torch.randn(*v.value.shape, v.value.tangent_dim, dtype=torch.float64)).data])), name=v.name)
            for v in variables]
        refs = [batched[variables.index(ref.variable)][ref.index] for ref in cost.variables]
        problem = Problem([type(cost)(*refs, loss=cost.loss, **cost.data)])
        assert problem.batch_size == 2
    values = problem.initial_values()
    import slam._bal_kernels as bal

    calls = []
    original = bal.normal_blocks
    monkeypatch.setattr(bal, "normal_blocks", lambda *a: (calls.append(1), original(*a))[1])
    fused = problem.linearize(values)
    assert calls, "the fused kernel did not run"
    cost = problem.costs[0]
    with monkeypatch.context() as m:
        m.setattr(type(cost), "_fusable", lambda *a, **k: False)
        reference = problem.linearize(values)
        reference_cost = problem.cost(values)
    for a, b in zip(fused, reference):
        assert torch.allclose(a, b, rtol=1e-11, atol=1e-11 * float(b.abs().max())), float((a - b).abs().max())
    assert torch.allclose(problem.cost(values), reference_cost, rtol=1e-12)


# SE(2): the kernels of ``slam._se2_kernels`` against the torch path on liegeo.SE2.

def _se2_errors(kind: str, e: int, generator: torch.Generator) -> torch.Tensor:
    """Tangent errors ``(e, 3)`` whose angles are tiny, small, ordinary, or within 1e-7 of ±π."""
    xi = torch.randn(e, 3, generator=generator, dtype=torch.float64)
    sign = torch.where(xi[:, 2] < 0, -1.0, 1.0).to(torch.float64)
    angle = {"identity": 1e-9, "small": 1e-3, "ordinary": 1.0, "pi": math.pi - 1e-7}[kind]
    xi[:, 2] = angle * sign if kind != "ordinary" else xi[:, 2].clamp(-3.0, 3.0)
    if kind == "identity":
        xi[:, :2] *= 1e-9
    return xi


@pytest.mark.parametrize("kind", ["identity", "small", "ordinary", "pi"])
@pytest.mark.parametrize("batch", [None, 3])
def test_se2_linearization_parts_equal_the_torch_path(kind, batch, generator, monkeypatch):
    from slam import _se2_kernels

    problem, _, errors = _problem(kind, generator, batch=batch, group=SE2)
    cost = problem.costs[0]
    values = problem.initial_values()
    gathered = problem._gather(cost, values)
    calls = _counting(monkeypatch, _se2_kernels)
    fused_r = cost.whitened_residual(gathered)
    fused = cost.linearize(gathered, problem.batch_size)
    assert calls == ["residuals", "normal_blocks"], "the fused kernel did not run"
    reference_r = _torch_path(monkeypatch, lambda: cost.whitened_residual(gathered))
    reference = _torch_path(monkeypatch, lambda: cost.linearize(gathered, problem.batch_size))
    assert calls == ["residuals", "normal_blocks"]
    # the residuals really are the chosen errors (near π: the branch is tested)
    raw = torch.linalg.solve(cost.weight.matrix, reference.r.unsqueeze(-1)).squeeze(-1)
    torch.testing.assert_close(raw, errors.expand_as(raw), rtol=1e-6, atol=1e-12)
    assert fused.r.shape == fused_r.shape == (problem.batch_size, cost.num, 3)
    torch.testing.assert_close(fused_r, reference_r, rtol=1e-12, atol=1e-14)
    torch.testing.assert_close(fused.r, reference.r, rtol=1e-12, atol=1e-14)
    torch.testing.assert_close(fused.j, reference.j, rtol=1e-12, atol=1e-13)
    rows, cols = torch.tril_indices(6, 6)
    assert fused.jtj.shape == (problem.batch_size, cost.num, 21)
    torch.testing.assert_close(fused.jtj, reference.jtj[..., rows, cols], rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(fused.jtr, reference.jtr, rtol=1e-12, atol=1e-13)
