"""The solver core: dense/sparse/CG agreement, scipy and closed-form references, batching, weights,
robust losses, fixed variables and bad input."""

import math

import numpy as np
import pytest
import torch

import slam
from liegeo import SE2, SE3, Euclidean
from slam.costs import Between, Prior

TIGHT = dict(max_iterations=200, function_tolerance=1e-15, parameter_tolerance=1e-15, gradient_tolerance=1e-13)
SOLVERS = ["dense", "cholmod", "cg"]


def random_pose_graph(group, n, loops, generator, noise=0.05, init_noise=0.3):
    """Odometry chain plus random loop closures, noisy measurements and a perturbed initial guess."""
    truth = group.exp(torch.randn(n, group.tangent_dim, generator=generator, dtype=torch.float64))
    i = torch.cat([torch.arange(n - 1), torch.randint(0, n, (loops,), generator=generator)])
    j = torch.cat([torch.arange(1, n), torch.randint(0, n, (loops,), generator=generator)])
    keep = i != j
    i, j = i[keep], j[keep]
    z = truth[i].between(truth[j]).retract(noise * torch.randn(len(i), group.tangent_dim, generator=generator,
                                                               dtype=torch.float64))
    init = truth.retract(init_noise * torch.randn(n, group.tangent_dim, generator=generator, dtype=torch.float64))
    return truth, init, i, j, z


# ---------------------------------------------------------------------- linear problems: exact in one step

@pytest.mark.parametrize("linear_solver", SOLVERS)
def test_linear_problem_matches_normal_equations(linear_solver, generator):
    """Residual A_k x_{i_k} + B_k x_{j_k} - b_k over Euclidean blocks: one Gauss-Newton step is the solution."""
    n, e, d, m = 12, 30, 3, 4
    a = torch.randn(e, m, d, generator=generator, dtype=torch.float64)
    b = torch.randn(e, m, d, generator=generator, dtype=torch.float64)
    rhs = torch.randn(e, m, generator=generator, dtype=torch.float64)
    i = torch.randint(0, n, (e,), generator=generator)
    j = (i + 1 + torch.randint(0, n - 1, (e,), generator=generator)) % n

    @slam.residual
    def linear(x, y, *, a, b, rhs):
        return (a @ x.data.unsqueeze(-1) + b @ y.data.unsqueeze(-1)).squeeze(-1) - rhs

    x = slam.Variable(Euclidean(torch.zeros(n, d, dtype=torch.float64)))
    prior = slam.residual(lambda x: x.data)  # a weak prior keeps it well posed
    problem = slam.Problem([linear(x[i], x[j], a=a, b=b, rhs=rhs), prior(x.all(), weight=slam.ScalarWeight(0.1))])
    result = slam.solve(problem, slam.GaussNewton(max_iterations=1, linear_solver=linear_solver))

    jac = torch.zeros(e * m + n * d, n * d, dtype=torch.float64)
    for k in range(e):
        jac[k * m:(k + 1) * m, i[k] * d:(i[k] + 1) * d] += a[k]
        jac[k * m:(k + 1) * m, j[k] * d:(j[k] + 1) * d] += b[k]
    jac[e * m:, :] = 0.1 * torch.eye(n * d, dtype=torch.float64)
    target = torch.cat([rhs.reshape(-1), torch.zeros(n * d, dtype=torch.float64)])
    expected = torch.linalg.lstsq(jac, target.unsqueeze(-1)).solution.squeeze(-1)
    torch.testing.assert_close(result[x].data.reshape(-1), expected, atol=1e-9, rtol=0)


# ---------------------------------------------------------------------- nonlinear: scipy and solver agreement

def range_problem(generator, n=4, anchors=7, noise=0.3):
    """Points in the plane from noisy ranges to known anchors: nonlinear, non-zero residual at the optimum."""
    anchor = 3.0 * torch.randn(anchors, 2, generator=generator, dtype=torch.float64)
    truth = torch.randn(n, 2, generator=generator, dtype=torch.float64)
    i, k = torch.arange(n).repeat_interleave(anchors), torch.arange(anchors).repeat(n)
    dist = (truth[i] - anchor[k]).norm(dim=-1) + noise * torch.randn(len(i), generator=generator, dtype=torch.float64)
    return truth, anchor, i, k, dist


@slam.residual
def range_residual(p, *, anchor, dist):
    return ((p.data - anchor).norm(dim=-1) - dist).unsqueeze(-1)


@pytest.mark.parametrize("loss", [None, "huber", "cauchy"])
def test_matches_scipy_least_squares(loss, generator):
    scipy_optimize = pytest.importorskip("scipy.optimize")
    truth, anchor, i, k, dist = range_problem(generator)
    dist = dist.clone()
    dist[3] += 5.0  # an outlier, so the robust losses matter
    scale = 0.5
    robust = {None: None, "huber": slam.Huber(scale), "cauchy": slam.Cauchy(scale)}[loss]
    start = truth + 0.2
    points = slam.Variable(Euclidean(start.clone()))
    problem = slam.Problem([range_residual(points[i], anchor=anchor[k], dist=dist, loss=robust)])
    ours = slam.solve(problem, slam.LevenbergMarquardt(**TIGHT))

    def fun(x):
        p = torch.from_numpy(x).view(-1, 2)
        return ((p[i] - anchor[k]).norm(dim=-1) - dist).numpy()

    ref = scipy_optimize.least_squares(fun, start.numpy().ravel(), loss=loss or "linear", f_scale=scale,
                                       xtol=1e-15, ftol=1e-15, gtol=1e-15, method="trf")
    np.testing.assert_allclose(ours[points].data.numpy().ravel(), ref.x, atol=1e-7)
    np.testing.assert_allclose(float(ours.cost[0]), ref.cost, rtol=1e-10)


@pytest.mark.parametrize("group", [SE2, SE3])
def test_linear_solvers_agree_on_pose_graphs(group, generator):
    truth, init, i, j, z = random_pose_graph(group, 30, 20, generator)
    results = {}
    for linear_solver in SOLVERS:
        poses = slam.Variable(init, fixed=[0])
        problem = slam.Problem([Between(poses[i], poses[j], measurement=z)])
        results[linear_solver] = slam.solve(problem, slam.LevenbergMarquardt(linear_solver=linear_solver, **TIGHT))[poses]
    for name in ("cholmod", "cg"):
        torch.testing.assert_close(results[name].matrix(), results["dense"].matrix(), atol=1e-8, rtol=0)


def test_analytic_and_autodiff_jacobians_agree(generator):
    """The analytic Between Jacobians equal autograd's, in reverse and forward mode, as assembled H and g."""
    truth, init, i, j, z = random_pose_graph(SE3, 10, 6, generator)
    poses = slam.Variable(init, fixed=[0])

    def between(x_i, x_j, *, measurement):
        return measurement.local(x_i.between(x_j))

    analytic_problem = slam.Problem([Between(poses[i], poses[j], measurement=z)])
    values = analytic_problem.initial_values()
    analytic = analytic_problem.linearize(values)
    for mode in ("reverse", "forward"):
        cost = slam.residual(between, jacobian_mode=mode)(poses[i], poses[j], measurement=z)
        assert not Between(poses[i], poses[j], measurement=z).has_analytic_jacobians is cost.has_analytic_jacobians
        for a, b in zip(analytic, slam.Problem([cost]).linearize(values)):
            torch.testing.assert_close(a, b, atol=1e-10, rtol=0)


# ---------------------------------------------------------------------- batches, fixed variables, weights

@pytest.mark.parametrize("linear_solver", SOLVERS)
def test_batch_equals_separate_solves(linear_solver, generator):
    """B problems with one structure and different data, solved together, equal B separate solves."""
    truth, init, i, j, _ = random_pose_graph(SE2, 12, 8, generator)
    batch = 4
    zs = SE2.stack([truth[i].between(truth[j]).retract(0.2 * torch.randn(len(i), 3, generator=generator,
                                                                          dtype=torch.float64)) for _ in range(batch)])
    inits = SE2.stack([init.retract(0.1 * torch.randn(12, 3, generator=generator, dtype=torch.float64))
                       for _ in range(batch)])
    cfg = slam.LevenbergMarquardt(linear_solver=linear_solver, **TIGHT)
    poses = slam.Variable(inits, fixed=[0])
    together = slam.solve(slam.Problem([Between(poses[i], poses[j], measurement=zs)]), cfg)
    assert together[poses].shape == (batch, 12)
    for b in range(batch):
        single = slam.Variable(inits[b], fixed=[0])
        alone = slam.solve(slam.Problem([Between(single[i], single[j], measurement=zs[b])]), cfg)
        torch.testing.assert_close(together[poses][b].matrix(), alone[single].matrix(), atol=1e-9, rtol=0)
        torch.testing.assert_close(together.cost[b], alone.cost[0], atol=1e-12, rtol=1e-9)
        assert together.iterations[b] == alone.iterations[0]


def test_fixed_variables_stay_exactly(generator):
    truth, init, i, j, z = random_pose_graph(SE3, 15, 10, generator)
    poses = slam.Variable(init, fixed=[0, 7])
    result = slam.solve(slam.Problem([Between(poses[i], poses[j], measurement=z)]))
    assert torch.equal(result[poses].data[[0, 7]], init.data[[0, 7]])
    assert not torch.equal(result[poses].data[1], init.data[1])


def test_weight_forms_are_equivalent(generator):
    """Scalar, diagonal and full square-root information giving the same Ω give the same solve."""
    truth, init, i, j, z = random_pose_graph(SE2, 10, 5, generator)
    e = len(i)
    sigma = 0.5
    forms = [
        slam.ScalarWeight(1 / sigma),
        slam.DiagonalWeight(torch.full((e, 3), 1 / sigma, dtype=torch.float64)),
        slam.SqrtInformation.from_information(torch.eye(3, dtype=torch.float64).expand(e, 3, 3) / sigma**2),
    ]
    costs = []
    for w in forms:
        poses = slam.Variable(init, fixed=[0])
        costs.append(slam.solve(slam.Problem([Between(poses[i], poses[j], measurement=z, weight=w)]),
                                slam.LevenbergMarquardt(**TIGHT)).cost)
    torch.testing.assert_close(costs[1], costs[0])
    torch.testing.assert_close(costs[2], costs[0])
    # chi² of a full information matrix is rᵀΩr: check against a direct evaluation
    omega = torch.tensor([[4.0, 1.0, 0.5], [1.0, 3.0, 0.2], [0.5, 0.2, 2.0]], dtype=torch.float64)
    poses = slam.Variable(init)
    problem = slam.Problem([Between(poses[i], poses[j], measurement=z,
                                    weight=slam.SqrtInformation.from_information(omega.expand(e, 3, 3)))])
    r = z.local(init[i].between(init[j]))
    torch.testing.assert_close(problem.cost(problem.initial_values())[0], 0.5 * torch.einsum("ei,ij,ej->", r, omega, r))


def test_information_must_be_positive_definite():
    omega = torch.eye(3, dtype=torch.float64).repeat(4, 1, 1)
    omega[2, 1, 1] = -1.0
    with pytest.raises(ValueError, match="instance 2 is not positive definite"):
        slam.SqrtInformation.from_information(omega)


def test_robust_loss_reduces_to_least_squares_for_small_residuals(generator):
    truth, init, i, j, z = random_pose_graph(SE2, 12, 8, generator, noise=1e-3)
    solutions = []
    for loss in [None, slam.Huber(10.0), slam.Cauchy(1e3), slam.GemanMcClure(1e3), slam.Tukey(1e3)]:
        poses = slam.Variable(init, fixed=[0])
        solutions.append(slam.solve(slam.Problem([Between(poses[i], poses[j], measurement=z, loss=loss)]),
                                    slam.LevenbergMarquardt(**TIGHT))[poses].log())
    for s in solutions[1:]:
        torch.testing.assert_close(s, solutions[0], atol=1e-7, rtol=0)


def test_levenberg_marquardt_converges_to_rounding_level(generator):
    """Robust IRLS converges linearly, so the last steps predict decreases below the cost's rounding
    error; LM must still take them and end on the gradient test, not stall ~sqrt(eps) short."""
    truth, init, i, j, z = random_pose_graph(SE2, 8, 6, generator, noise=0.3)
    poses = slam.Variable(init, fixed=[0])
    problem = slam.Problem([Between(poses[i], poses[j], measurement=z, loss=slam.Cauchy(0.4))])
    result = slam.solve(problem, slam.LevenbergMarquardt(max_iterations=300, function_tolerance=0.0,
                                                         parameter_tolerance=0.0, gradient_tolerance=1e-13))
    assert result.termination == ["gradient tolerance"] and bool(result.converged.all())
    _, gradient, _ = problem.linearize([result[poses].unsqueeze(0)])
    assert gradient.abs().max() <= 1e-13


# ---------------------------------------------------------------------- bad input and singular systems

def test_non_finite_residual_names_the_cost(generator):
    truth, anchor, i, k, dist = range_problem(generator)
    dist = dist.clone()
    dist[5] = float("nan")
    points = slam.Variable(Euclidean(truth.clone()), name="points")
    problem = slam.Problem([range_residual(points[i], anchor=anchor[k], dist=dist, name="ranges")])
    with pytest.raises(slam.NonFiniteError, match=r"cost 'ranges' produced a non-finite residual at instance 5 .*points\[0\]"):
        slam.solve(problem)


def test_gauss_newton_on_an_unfixed_gauge(generator):
    truth, init, i, j, z = random_pose_graph(SE2, 20, 5, generator)
    poses = slam.Variable(init)  # nothing fixed: the whole graph can move
    with pytest.raises(slam.SingularSystemError, match="fix a variable"):
        slam.solve(slam.Problem([Between(poses[i], poses[j], measurement=z)]), slam.GaussNewton(linear_solver="cholmod"))
    # the dense solver falls back to a least-squares step and still reaches a minimum
    dense = slam.solve(slam.Problem([Between(poses[i], poses[j], measurement=z)]),
                       slam.GaussNewton(linear_solver="dense", max_iterations=20))
    fixed = slam.Variable(init, fixed=[0])
    reference = slam.solve(slam.Problem([Between(fixed[i], fixed[j], measurement=z)]), slam.LevenbergMarquardt(**TIGHT))
    torch.testing.assert_close(dense.cost, reference.cost, rtol=1e-6, atol=1e-12)
    # Levenberg-Marquardt handles the gauge by damping
    lm = slam.solve(slam.Problem([Between(poses[i], poses[j], measurement=z)]), slam.LevenbergMarquardt(linear_solver="cholmod"))
    torch.testing.assert_close(lm.cost, reference.cost, rtol=1e-5, atol=1e-12)


def test_result_record(generator):
    truth, init, i, j, z = random_pose_graph(SE2, 10, 5, generator)
    poses = slam.Variable(init, fixed=[0])
    result = slam.solve(slam.Problem([Between(poses[i], poses[j], measurement=z)]), slam.LevenbergMarquardt(max_iterations=2))
    assert result.termination == ["maximum iterations"] and not bool(result.converged[0])
    assert result.iterations[0] == 2 and len(result.history) == 2
    assert result.history[-1].cost[0] == result.cost[0] and result.cost[0] < result.initial_cost[0]
    full = slam.solve(slam.Problem([Between(poses[i], poses[j], measurement=z)]))
    assert bool(full.converged[0]) and full.termination[0] in ("function tolerance", "parameter tolerance", "gradient tolerance")


def test_config_validation():
    with pytest.raises(ValueError, match="max_iterations"):
        slam.LevenbergMarquardt(max_iterations=-1)
    with pytest.raises(ValueError, match="linear_solver"):
        slam.GaussNewton(linear_solver="qr")
    with pytest.raises(ValueError, match="damping"):
        slam.LevenbergMarquardt(damping="none")


def test_solve_with_a_gnc_config_runs_graduated_non_convexity():
    """``slam.solve(problem, slam.GNC(...))`` is ``slam.gnc_solve(problem, config)``: the same weights and
    solution; a backward mode or callbacks with it are refused (GNC runs its own inner solves)."""
    from slam.pgo import synthetic_graph

    graph, _ = synthetic_graph(SE2, 30, 8)
    problem, poses = graph.problem()
    config = slam.GNC(loss="tls")
    via_solve, direct = slam.solve(problem, config), slam.gnc_solve(problem, config)
    assert type(via_solve) is type(direct)
    assert torch.equal(via_solve[poses].data, direct[poses].data)
    assert all(torch.equal(a, b) for a, b in zip(via_solve.weights, direct.weights))
    with pytest.raises(ValueError, match="GNC"):
        slam.solve(problem, config, slam.Implicit())


def test_accepted_trial_points_are_linearized_once():
    """Where fused kernels linearize every cost and steps are accepted, a trial point's linearization
    gives its cost and becomes the next one (no separate cost evaluation); after a rejected step, and
    for costs without a fused kernel, a trial evaluates only its cost."""
    from liegeo import SE3, Euclidean
    from slam.pgo import synthetic_graph

    calls = {"cost": 0, "linearize": 0}

    def counting(problem):
        cost, linearize = problem.cost, problem.linearize

        def counted_cost(values):
            calls["cost"] += 1
            return cost(values)

        def counted_linearize(values, **kwargs):
            calls["linearize"] += 1
            return linearize(values, **kwargs)

        problem.cost, problem.linearize = counted_cost, counted_linearize
        calls.update(cost=0, linearize=0)
        return problem

    problem = counting(synthetic_graph(SE3, 30, 8, rotation_noise=0.2)[0].problem()[0])
    result = slam.solve(problem, slam.LevenbergMarquardt(function_tolerance=1e-10))
    assert all(bool(r.accepted.all()) for r in result.history) and len(result.history) >= 3
    assert calls == {"cost": 0, "linearize": 1 + len(result.history)}  # the start, then each trial

    problem = counting(synthetic_graph(SE3, 30, 8, rotation_noise=1.0)[0].problem()[0])
    result = slam.solve(problem, slam.LevenbergMarquardt(initial_damping=1e-9, function_tolerance=1e-10))
    accepted = [bool(r.accepted.all()) for r in result.history]
    assert not all(accepted)  # steps were rejected
    # A trial right after a rejection evaluates only its cost; an accepted one of those is linearized then.
    after_rejection = sum(1 for k in range(1, len(accepted)) if not accepted[k - 1])
    assert calls["cost"] == after_rejection
    assert calls["linearize"] == 1 + (len(accepted) - after_rejection) + sum(
        1 for k in range(1, len(accepted)) if not accepted[k - 1] and accepted[k])

    @slam.residual
    def rosenbrock(p):  # autodiff: a Jacobian costs more than a few residuals
        x, y = p.data[..., 0], p.data[..., 1]
        return torch.stack([10.0 * (y - x * x), 1.0 - x], dim=-1)

    point = slam.Variable(Euclidean(torch.tensor([[-1.2, 1.0]], dtype=torch.float64)))
    problem = counting(slam.Problem([rosenbrock(point[torch.tensor([0])])]))
    result = slam.solve(problem, slam.LevenbergMarquardt(max_iterations=200))
    accepted = [bool(r.accepted.all()) for r in result.history]
    assert calls == {"cost": len(accepted), "linearize": 1 + sum(accepted)}
    torch.testing.assert_close(result[point].data, torch.ones(1, 2, dtype=torch.float64))
