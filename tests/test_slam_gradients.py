"""Differentiating through the solver: every backward mode against central differences of the whole
solve (float64), implicit = unroll at convergence, and memory that does not grow with iterations."""

import pytest
import torch

import slam
from liegeo import SE2, Euclidean
from slam.costs import Between

TIGHT = slam.LevenbergMarquardt(max_iterations=200, function_tolerance=0.0, parameter_tolerance=1e-15,
                                gradient_tolerance=1e-13)
FD_STEP = 1e-3  # with Richardson extrapolation: truncation O(h⁴); smaller steps drown in the solve's own noise


def graph(generator, noise=0.1):
    truth = SE2.exp(torch.randn(6, 3, generator=generator, dtype=torch.float64))
    i = torch.tensor([0, 1, 2, 3, 4, 0, 1, 2])
    j = torch.tensor([1, 2, 3, 4, 5, 3, 4, 5])
    z = truth[i].between(truth[j]).retract(noise * torch.randn(len(i), 3, generator=generator, dtype=torch.float64))
    init = truth.retract(0.2 * torch.randn(6, 3, generator=generator, dtype=torch.float64))
    return init, i, j, z.log()


def solve_graph(init, i, j, z_log, backward, *, sqrt_weight=None, cauchy=None, optimizer=TIGHT, init_tangent=None):
    start = init if init_tangent is None else init.retract(init_tangent)
    poses = slam.Variable(start, fixed=[0])
    weight = slam.DiagonalWeight(sqrt_weight) if sqrt_weight is not None else None
    loss = slam.Cauchy(cauchy) if cauchy is not None else None
    cost = Between(poses[i], poses[j], measurement=SE2.exp(z_log), weight=weight, loss=loss)
    return slam.solve(slam.Problem([cost]), optimizer, backward)[poses]


def central_differences(fn, x):
    """Richardson-extrapolated central differences of the whole solve, entry by entry."""

    def difference(k, h):
        step = torch.zeros_like(x).view(-1)
        step[k] = h
        with torch.no_grad():
            return (fn(x + step.view_as(x)) - fn(x - step.view_as(x))) / (2 * h)

    grad = torch.zeros_like(x)
    for k in range(x.numel()):
        grad.view(-1)[k] = (4 * difference(k, FD_STEP / 2) - difference(k, FD_STEP)) / 3
    return grad


def relative_error(a, b):
    return ((a - b).norm() / b.norm()).item()


MODES = [slam.Implicit(), slam.Unroll(), slam.Truncated(50)]


@pytest.mark.parametrize("backward", MODES, ids=lambda m: repr(m))
def test_gradient_wrt_measurements(backward, generator):
    init, i, j, z = graph(generator)
    target = torch.randn(6, 3, generator=generator, dtype=torch.float64)

    def loss(z_log):
        return (solve_graph(init, i, j, z_log, backward).log() * target).sum()

    z_param = z.clone().requires_grad_(True)
    (grad,) = torch.autograd.grad(loss(z_param), z_param)
    assert relative_error(grad, central_differences(loss, z)) < 1e-4


@pytest.mark.parametrize("backward", MODES, ids=lambda m: repr(m))
def test_gradient_wrt_weights_and_robust_scale(backward, generator):
    init, i, j, z = graph(generator, noise=0.3)
    target = torch.randn(6, 3, generator=generator, dtype=torch.float64)
    weights = 1.0 + torch.rand(len(i), 3, generator=generator, dtype=torch.float64)
    scale = torch.tensor(0.4, dtype=torch.float64)

    # Cauchy, not Huber: a block sitting at Huber's kink has no second derivative, and the
    # solution none with respect to the scale.
    def loss(w, k):
        return (solve_graph(init, i, j, z, backward, sqrt_weight=w, cauchy=k).log() * target).sum()

    w_param, k_param = weights.clone().requires_grad_(True), scale.clone().requires_grad_(True)
    grad_w, grad_k = torch.autograd.grad(loss(w_param, k_param), [w_param, k_param])
    assert relative_error(grad_w, central_differences(lambda w: loss(w, scale), weights)) < 1e-4
    assert relative_error(grad_k, central_differences(lambda k: loss(weights, k), scale)) < 1e-4


@pytest.mark.parametrize("linear_solver", ["cholmod", "cg"])
def test_unrolled_gradient_through_sparse_solvers(linear_solver, generator):
    init, i, j, z = graph(generator)
    target = torch.randn(6, 3, generator=generator, dtype=torch.float64)
    optimizer = slam.LevenbergMarquardt(linear_solver=linear_solver, max_iterations=200, function_tolerance=1e-16,
                                        parameter_tolerance=1e-16, gradient_tolerance=1e-13)

    def loss(z_log):
        return (solve_graph(init, i, j, z_log, slam.Unroll(), optimizer=optimizer).log() * target).sum()

    z_param = z.clone().requires_grad_(True)
    (grad,) = torch.autograd.grad(loss(z_param), z_param)
    assert relative_error(grad, central_differences(loss, z)) < 1e-4


def test_implicit_equals_unroll_at_convergence(generator):
    init, i, j, z = graph(generator, noise=0.3)
    target = torch.randn(6, 3, generator=generator, dtype=torch.float64)
    grads = []
    for backward in (slam.Implicit(), slam.Unroll()):
        z_param = z.clone().requires_grad_(True)
        (grad,) = torch.autograd.grad((solve_graph(init, i, j, z_param, backward).log() * target).sum(), z_param)
        grads.append(grad)
    assert relative_error(grads[0], grads[1]) < 1e-7


def test_gauss_newton_implicit_is_exact_for_zero_residual_problems(generator):
    init, i, j, z = graph(generator, noise=0.0)  # consistent measurements: r = 0 at the optimum
    target = torch.randn(6, 3, generator=generator, dtype=torch.float64)
    grads = []
    for backward in (slam.Implicit(hessian="gauss_newton"), slam.Implicit()):
        z_param = z.clone().requires_grad_(True)
        (grad,) = torch.autograd.grad((solve_graph(init, i, j, z_param, backward).log() * target).sum(), z_param)
        grads.append(grad)
    assert relative_error(grads[0], grads[1]) < 1e-8
    # with noise it is only an approximation: the exact mode is not the Gauss-Newton one
    init, i, j, z = graph(generator, noise=0.3)
    grads = []
    for backward in (slam.Implicit(hessian="gauss_newton"), slam.Implicit()):
        z_param = z.clone().requires_grad_(True)
        (grad,) = torch.autograd.grad((solve_graph(init, i, j, z_param, backward).log() * target).sum(), z_param)
        grads.append(grad)
    assert relative_error(grads[0], grads[1]) > 1e-4


def test_gradient_wrt_initial_values(generator):
    """At a unique minimum the free solution does not depend on where the solve started; a fixed
    element is its own input, and the free ones depend on it."""
    init, i, j, z = graph(generator)
    target = torch.randn(6, 3, generator=generator, dtype=torch.float64)
    grads = []
    for backward in (slam.Implicit(), slam.Unroll(), slam.Truncated(25)):
        start = torch.zeros(6, 3, dtype=torch.float64, requires_grad=True)
        (grad,) = torch.autograd.grad((solve_graph(init, i, j, z, backward, init_tangent=start).log() * target).sum(),
                                      start)
        assert grad[1:].abs().max() < 1e-6
        grads.append(grad[0])
    # pose 0 is fixed: moving it moves the whole solution rigidly, which the loss sees
    assert grads[0].abs().max() > 1e-3
    torch.testing.assert_close(grads[1], grads[0], atol=1e-6, rtol=1e-6)
    torch.testing.assert_close(grads[2], grads[0], atol=1e-6, rtol=1e-6)


def _graph_size(tensor):
    seen, stack = set(), [tensor.grad_fn]
    while stack:
        node = stack.pop()
        if node is None or node in seen:
            continue
        seen.add(node)
        stack.extend(n for n, _ in node.next_functions)
    return len(seen)


def test_implicit_graph_does_not_grow_with_iterations(generator):
    """The implicit backward graph is one cost evaluation, however many iterations the solve took;
    the unrolled graph grows with them."""
    init, i, j, z = graph(generator)
    sizes = {}
    for name, backward in (("implicit", slam.Implicit()), ("unroll", slam.Unroll())):
        for iterations in (2, 8):
            z_param = z.clone().requires_grad_(True)
            optimizer = slam.GaussNewton(max_iterations=iterations, function_tolerance=0, parameter_tolerance=0,
                                         gradient_tolerance=0)
            sizes[name, iterations] = _graph_size(solve_graph(init, i, j, z_param, backward, optimizer=optimizer).data)
    assert sizes["implicit", 2] == sizes["implicit", 8]
    assert sizes["unroll", 8] > sizes["unroll", 2] + 100


def test_batched_gradients_equal_separate(generator):
    init, i, j, z = graph(generator)
    batch = 3
    zs = z + 0.05 * torch.randn(batch, *z.shape, generator=generator, dtype=torch.float64)
    target = torch.randn(batch, 6, 3, generator=generator, dtype=torch.float64)
    z_param = zs.clone().requires_grad_(True)
    poses = slam.Variable(init.unsqueeze(0).expand(batch, 6), fixed=[0])
    solution = slam.solve(slam.Problem([Between(poses[i], poses[j], measurement=SE2.exp(z_param))]), TIGHT)[poses]
    (grad,) = torch.autograd.grad((solution.log() * target).sum(), z_param)
    for b in range(batch):
        single = zs[b].clone().requires_grad_(True)
        (expected,) = torch.autograd.grad((solve_graph(init, i, j, single, slam.Implicit()).log() * target[b]).sum(), single)
        torch.testing.assert_close(grad[b], expected, atol=1e-10, rtol=1e-8)


def test_solver_layer_trains(generator):
    """One optimizer step on a parameter upstream of the layer lowers a loss on the solution."""
    init, i, j, z = graph(generator, noise=0.0)
    truth = solve_graph(init, i, j, z, None)
    bias = torch.nn.Parameter(0.3 * torch.ones(3, dtype=torch.float64))
    layer = slam.SolverLayer(TIGHT, slam.Implicit())
    sgd = torch.optim.SGD([bias], lr=0.1)

    def loss():
        poses = slam.Variable(init, fixed=[0])
        solution = layer(slam.Problem([Between(poses[i], poses[j], measurement=SE2.exp(z + bias))]))[poses]
        return truth.local(solution).square().sum()

    before = loss()
    sgd.zero_grad()
    before.backward()
    assert bias.grad is not None and bias.grad.abs().sum() > 0
    for group in sgd.param_groups:  # a small step along the gradient must go downhill
        group["lr"] = 1e-2 / float(bias.grad.norm())
    sgd.step()
    assert loss() < before


def test_first_exact_implicit_backward_pays_no_torch_compiler_import():
    """torch's double backward of ``abs`` imports torch._dynamo (~1 s, once per process), and
    ``torch.autograd.grad(..., grad_outputs=...)`` imports sympy (~1.2 s): the exact-Hessian backward
    through SE(3) costs must take neither (a fresh process, so that nothing imported them before)."""
    import subprocess
    import sys

    script = """
import dataclasses, sys, torch, slam
from liegeo import SE3
from slam.pgo import synthetic_graph
graph, _ = synthetic_graph(SE3, 20, 5)
graph = dataclasses.replace(graph, measurements=SE3(graph.measurements.data.clone().requires_grad_(True)))
problem, poses = graph.problem()
slam.solve(problem, backward=slam.Implicit(hessian="exact"))[poses].data.sum().backward()
assert graph.measurements.data.grad is not None and bool(torch.isfinite(graph.measurements.data.grad).all())
print("torch._dynamo" in sys.modules, "sympy" in sys.modules)
"""
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True)
    assert out.stdout.strip().splitlines()[-1] == "False False", out.stdout + out.stderr


@pytest.mark.parametrize("hessian", ["exact", "gauss_newton"])
def test_implicit_backward_built_lazily_equals_the_eager_graph(hessian):
    """Inputs the problem holds: the gradient's graph is built in the backward pass (``lazy``); with
    ``differentiable=True`` (closures the problem cannot see) it is built in the forward.  Both give the
    same gradients, through ``torch.autograd.grad`` as through ``.backward()``, for measurements,
    per-edge weights and a fixed pose's initial value."""
    import dataclasses

    from liegeo import SE3
    from slam.pgo import synthetic_graph

    graph, _ = synthetic_graph(SE3, 12, 4)
    results = []
    for differentiable in (None, True):
        measurements = graph.measurements.data.clone().requires_grad_(True)
        weights = torch.ones(graph.num_edges, dtype=torch.float64, requires_grad=True)
        start = graph.poses.data.clone().requires_grad_(True)
        g = dataclasses.replace(graph, measurements=SE3(measurements), poses=SE3(start))
        problem, poses = g.problem(edge_weights=weights)
        result = slam.solve(problem, backward=slam.Implicit(hessian=hessian), differentiable=differentiable)
        loss = (result[poses].data[..., :3] ** 2).sum()
        results.append(torch.autograd.grad(loss, (measurements, weights, start)))
    for lazy, eager in zip(*results):
        torch.testing.assert_close(lazy, eager, rtol=1e-10, atol=1e-12)
    assert results[0][2][graph.fixed].abs().sum() > 0  # the fixed pose's value moves the solution


def _off_optimum(problem, generator, scale=0.05):
    """A point near the problem's start where the gradient does not vanish (the ``ad`` correction of
    ``_difference_hvp`` is then not negligible), and its gradient."""
    values = problem.initial_values()
    step = scale * torch.randn(problem.batch_size, problem.structure.n, generator=generator, dtype=torch.float64)
    point = problem.retract([v.detach() for v in values], step)
    with torch.no_grad():
        g, _ = problem.gradient(point)
    return point, g


def _problems(generator):
    from liegeo import SE3
    from slam.pgo import synthetic_graph

    yield "SE2", synthetic_graph(SE2, 16, 5, rotation_noise=0.3)[0].problem()[0]
    yield "SE3", synthetic_graph(SE3, 16, 5, rotation_noise=0.3)[0].problem()[0]
    yield "SE3 Cauchy", synthetic_graph(SE3, 16, 5, rotation_noise=0.3)[0].problem(loss=slam.Cauchy(0.5))[0]
    init, i, j, z = graph(generator)
    poses = slam.Variable(init, fixed=[0])
    points = slam.Variable(Euclidean(torch.randn(4, 2, generator=generator, dtype=torch.float64)))
    anchor = torch.randn(4, 2, generator=generator, dtype=torch.float64)

    @slam.residual
    def offset(pose, point, *, target):  # a Euclidean variable coupled to SE(2) poses
        return pose.act(point.data) - target

    yield "SE2 + R2", slam.Problem([Between(poses[i], poses[j], measurement=SE2.exp(z)),
                                    offset(poses[torch.arange(4)], points[torch.arange(4)], target=anchor)])
    from slam.ba import build, synthetic_bal

    yield "BA", build(synthetic_bal(4, 20, seed=2, pixel_noise=0.5)[0], fix_cameras=[0])[0]  # fused reprojections


def test_hessian_products_by_differences_equal_double_backward(generator):
    """``H p`` by central differences of the (fused) gradient along the retraction, with the ``ad``
    correction, against double backward through the torch graph, off the optimum where ``g ≠ 0``."""
    from slam.optim.implicit import _autograd_hvp, _difference_hvp

    for name, problem in _problems(generator):
        point, g = _off_optimum(problem, generator)
        delta = torch.zeros(problem.batch_size, problem.structure.n, dtype=torch.float64, requires_grad=True)
        cost = problem.cost(problem.retract(point, delta)).sum()
        (gradient,) = torch.autograd.grad(cost, delta, create_graph=True)
        p = torch.randn(gradient.shape, generator=generator, dtype=torch.float64)
        expected = _autograd_hvp(gradient, delta)(p)
        got = _difference_hvp(problem, point, g, p)
        assert relative_error(got, expected) < 2e-8, name
        if name.startswith("SE"):  # without the correction the products are off (the test can fail)
            correction = 0.5 * problem.tangent_bracket(p, g)
            assert relative_error(got + correction, expected) > 1e-5, name


def test_exact_implicit_gradients_equal_with_either_products():
    import dataclasses

    from liegeo import SE3
    from slam.pgo import synthetic_graph

    graph_, _ = synthetic_graph(SE3, 24, 8, rotation_noise=0.1)
    grads = []
    for products in ("differences", "autograd"):
        measurements = graph_.measurements.data.clone().requires_grad_(True)
        problem, poses = dataclasses.replace(graph_, measurements=SE3(measurements)).problem()
        mode = slam.Implicit(products=products, tolerance=1e-13)  # tight: CG amplifies the products' error
        loss = (slam.solve(problem, TIGHT, mode)[poses].data[..., :3] ** 2).sum()
        grads.append(torch.autograd.grad(loss, measurements)[0])
    assert relative_error(*grads) < 1e-8


def test_implicit_products_choice():
    from slam.optim.implicit import _checked_products
    from slam.pgo import synthetic_graph

    problem64 = synthetic_graph(SE2, 8, 2)[0].problem()[0]
    problem32 = synthetic_graph(SE2, 8, 2, dtype=torch.float32)[0].problem()[0]
    assert slam.Implicit().products == "autograd"  # exact by default
    assert _checked_products(problem64, slam.Implicit(products="differences")) == "differences"
    with pytest.raises(ValueError, match="float64"):
        _checked_products(problem32, slam.Implicit(products="differences"))
    with pytest.raises(ValueError, match="products"):
        slam.Implicit(products="finite")


@pytest.mark.parametrize("group", ["SE3", "SE2"])
@pytest.mark.parametrize("batch", [None, 2])
@pytest.mark.parametrize("inputs", ["fused", "torch"])
def test_directional_gradient_by_the_between_graph_equals_the_retraction_path(group, batch, inputs, generator,
                                                                              monkeypatch):
    """``Problem.directional_gradient`` (what the implicit backward differentiates for ``wᵀ ∂g/∂θ``): the
    ``Between`` cost's graph on ``D = X_i⁻¹ X_j``'s storage gives the same gradients, with respect to the
    raw measurement storage (its off-group component too), a full sqrt-information and a robust scale,
    as differentiating ``g`` along every pose's retraction; with fixed poses, batched.  ``D`` and its
    velocity from the fused kernel (``directional_inputs``) and from the torch path alike."""
    from liegeo import SE3
    import slam.costs.pose_graph as pose_graph

    if inputs == "torch":
        monkeypatch.setattr(pose_graph, "kernel_inputs_ok", lambda *tensors: False)

    G = SE3 if group == "SE3" else SE2
    d = G.tangent_dim
    shape = (batch,) if batch else ()
    poses = G.random(*shape, 7, generator=generator, dtype=torch.float64)
    i = torch.tensor([0, 1, 2, 3, 4, 5, 0, 2])
    j = torch.tensor([1, 2, 3, 4, 5, 6, 3, 6])
    noise = 0.3 * torch.randn(*shape, len(i), d, generator=generator, dtype=torch.float64)
    z = G(poses[..., i].between(poses[..., j]).retract(noise).data.clone().requires_grad_(True))
    a = torch.randn(len(i), d, d, generator=generator, dtype=torch.float64)
    sqrt_info = (a + 3.0 * torch.eye(d, dtype=torch.float64)).requires_grad_(True)
    scale = torch.tensor(0.7, dtype=torch.float64, requires_grad=True)
    variable = slam.Variable(poses, fixed=[0, 4])
    cost = Between(variable[i], variable[j], measurement=z, weight=slam.SqrtInformation(sqrt_info),
                   loss=slam.Cauchy(scale))
    problem = slam.Problem([cost])
    values = problem.initial_values()
    w = torch.randn(problem.batch_size, problem.structure.n, generator=generator, dtype=torch.float64)
    targets = [z.data, sqrt_info, scale]
    direction = torch.zeros(problem.batch_size, len(i), 2 * d, dtype=torch.float64)
    assert cost.directional_residual(problem._gather(cost, values), direction) is not None  # the graph on D is used
    with torch.enable_grad():
        fast = torch.autograd.grad(problem.directional_gradient(values, w), targets)
        monkeypatch.setattr(Between, "directional_residual", lambda self, values, direction: None)
        reference = torch.autograd.grad(problem.directional_gradient(values, w), targets)
    for got, want in zip(fast, reference):
        assert relative_error(got, want) < 1e-12
    unit = z.data.detach()[..., G.point_dim:]
    radial = (reference[0][..., G.point_dim:] * unit).sum(-1)
    assert float(radial.abs().max()) > 1e-3 * float(reference[0].abs().max())  # the off-group part is there to compare
