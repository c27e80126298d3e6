"""No wrong answer reported as right: singular systems, solver breakdowns, non-finite values at every
entry point, raw group data off the group, non-finite joint values and JSON summaries."""

from __future__ import annotations

import dataclasses
import json
import logging
import math

import numpy as np
import pytest
import torch

import slam
from conftest import data_file
from liegeo import SE2, SE3, SO2, SO3, Euclidean
from slam.ba import BAResult, optimize as ba_optimize, synthetic_bal
from slam.kinematics import Kinematics, inverse_kinematics, read_urdf
from slam.linear.cg import ConjugateGradient, preconditioned_cg
from slam.linear.dense import DenseFactorization, minimum_norm_solve
from slam.optim.implicit import _checked_solve
from slam.pgo import PgoResult, PoseGraph, optimize as pgo_optimize, synthetic_batch, synthetic_graph


# ---------------------------------------------------------------------- singular systems

def _vector_problem(residual, n):
    """A ``Problem`` over one Euclidean variable of ``n`` components, from zero."""

    @slam.residual
    def fun(x):
        return residual(x.data)

    x = slam.Variable(Euclidean(torch.zeros(1, n, dtype=torch.float64)), name="x")
    return slam.Problem([fun(x.all(), name="fun")]), x


# x0 is free (no residual depends on it), and x3 + x4 is the only combination the last residual sees
# (the default CPU driver of torch.linalg.lstsq, gelsy, returns x = 0 for such systems).
SINGULAR_A = torch.tensor([[0, 1, 0, 0, 0], [0, 0, 1, 0, 0], [0, 0, 0, 1, 1.0]], dtype=torch.float64)
SINGULAR_B = torch.tensor([1.0, 5.0, 2.0], dtype=torch.float64)


def _singular(d):
    return (SINGULAR_A @ d.unsqueeze(-1)).squeeze(-1) - SINGULAR_B


def test_gauss_newton_dense_takes_the_minimum_norm_step_and_does_not_claim_convergence():
    problem, x = _vector_problem(_singular, 5)
    result = slam.solve(problem, slam.GaussNewton(linear_solver="dense"))
    expected = np.linalg.lstsq(SINGULAR_A.numpy(), SINGULAR_B.numpy(), rcond=None)[0]  # minimum norm
    np.testing.assert_allclose(result[x].data.reshape(-1).numpy(), expected, atol=1e-12)
    np.testing.assert_allclose(expected, [0.0, 1.0, 5.0, 1.0, 1.0], atol=1e-12)
    assert float(result.cost[0]) < 1e-20
    assert not bool(result.converged[0])
    assert "rank-deficient" in result.termination[0] and "minimum-norm" in result.termination[0]
    # the same through slam.least_squares
    fit = slam.least_squares(lambda d: _singular(d), torch.zeros(5, dtype=torch.float64), method="gn")
    np.testing.assert_allclose(fit.x.numpy(), expected, atol=1e-12)
    assert not fit.converged and "rank-deficient" in fit.termination


@pytest.mark.parametrize("method", ["gelsd", "eigh", "auto"])
def test_minimum_norm_solve_equals_the_pseudo_inverse(method):
    generator = torch.Generator().manual_seed(3)
    matrices, rhs = [torch.diag(torch.tensor([0.0, 1.0], dtype=torch.float64))], [torch.tensor([0.0, -3.0])]
    for n, k in [(3, 2), (6, 5), (4, 1), (5, 5)]:
        j = torch.randn(n + 2, k, generator=generator, dtype=torch.float64) @ torch.randn(k, n, generator=generator,
                                                                                         dtype=torch.float64)
        matrices.append(j.mT @ j)
        rhs.append(j.mT @ torch.randn(n + 2, generator=generator, dtype=torch.float64))
    for h, b in zip(matrices, rhs):
        b = b.to(torch.float64)
        x = minimum_norm_solve(h.unsqueeze(0), b.view(1, -1, 1), method=method).reshape(-1)
        expected = np.linalg.pinv(h.numpy(), rcond=1e-10, hermitian=True) @ b.numpy()
        np.testing.assert_allclose(x.numpy(), expected, atol=1e-9)


def test_dense_ok_means_positive_definite():
    singular = torch.diag(torch.tensor([0.0, 1.0], dtype=torch.float64))
    indefinite = torch.diag(torch.tensor([-1.0, 1.0], dtype=torch.float64))
    spd = torch.eye(2, dtype=torch.float64)
    nan = torch.full((2, 2), math.nan, dtype=torch.float64)
    f = DenseFactorization(torch.stack([singular, indefinite, spd, nan]))
    assert f.ok.tolist() == [False, False, True, False]
    assert f.minimum_norm.tolist() == [True, True, False, False]
    x = f.solve(torch.tensor([[0.0, -3.0], [2.0, 2.0], [1.0, 2.0], [1.0, 1.0]], dtype=torch.float64))
    np.testing.assert_allclose(x.numpy(), [[0.0, -3.0], [-2.0, 2.0], [1.0, 2.0], [0.0, 0.0]], atol=1e-12)


def test_gauss_newton_cg_on_a_singular_system_raises_and_never_returns_nan():
    problem, x = _vector_problem(_singular, 5)
    with pytest.raises(slam.SingularSystemError, match="cg"):
        slam.solve(problem, slam.GaussNewton(linear_solver="cg"))
    # Levenberg-Marquardt's damping makes the system definite: a finite minimizer
    result = slam.solve(problem, slam.LevenbergMarquardt(linear_solver="cg"))
    assert torch.isfinite(result[x].data).all() and float(result.cost[0]) < 1e-12


def test_conjugate_gradients_report_breakdown_and_missed_tolerance():
    def matvec_of(h):
        return lambda v: (h @ v.unsqueeze(-1)).squeeze(-1)

    identity = lambda r: r  # noqa: E731
    indefinite = torch.diag(torch.tensor([[1.0, -1.0, 2.0]], dtype=torch.float64).squeeze(0)).unsqueeze(0)
    x, breakdown, converged = preconditioned_cg(matvec_of(indefinite), identity, torch.ones(1, 3, dtype=torch.float64),
                                                1e-12, 50)
    assert bool(breakdown[0]) and not bool(converged[0]) and torch.isfinite(x).all()
    spd = torch.diag(torch.tensor([1.0, 10.0, 100.0], dtype=torch.float64)).unsqueeze(0)
    x, breakdown, converged = preconditioned_cg(matvec_of(spd), identity, torch.ones(1, 3, dtype=torch.float64), 1e-12, 1)
    assert not bool(breakdown[0]) and not bool(converged[0])
    x, breakdown, converged = preconditioned_cg(matvec_of(spd), identity, torch.ones(1, 3, dtype=torch.float64), 1e-12, 10)
    assert not bool(breakdown[0]) and bool(converged[0])
    nan_rhs = torch.tensor([[1.0, math.nan, 1.0]], dtype=torch.float64)
    x, breakdown, converged = preconditioned_cg(matvec_of(spd), identity, nan_rhs, 1e-12, 10)
    assert bool(breakdown[0]) and torch.isfinite(x).all()


def _cg_factorization(problem, values, **options):
    h, _, _ = problem.linearize(values)
    return ConjugateGradient(**options).factorize(problem.structure, h), h


def _chain_problem():
    """Three scalars with priors and couplings: well posed, and not solved by one block-Jacobi CG step."""
    x = slam.Variable(Euclidean(torch.zeros(3, 1, dtype=torch.float64)), name="x")
    prior = slam.residual(lambda v: v.data - torch.tensor([[1.0], [2.0], [3.0]], dtype=torch.float64))
    couple = slam.residual(lambda a, b: 10.0 * (a.data - b.data))
    return slam.Problem([prior(x.all()), couple(x[[0, 1]], x[[1, 2]])])


def test_cg_ok_after_factorize_and_after_solve():
    problem, x = _vector_problem(_singular, 5)
    factorization, h = _cg_factorization(problem, problem.initial_values())
    assert not bool(factorization.ok[0])  # its one diagonal block (the whole variable) is singular
    assert torch.isfinite(factorization.solve(torch.ones(1, 5, dtype=torch.float64))).all()
    assert not bool(factorization.ok[0]) and not bool(factorization.inexact[0])
    well_posed = _chain_problem()
    factorization, _ = _cg_factorization(well_posed, well_posed.initial_values(), max_iterations=1, tolerance=1e-14)
    assert bool(factorization.ok[0])
    factorization.solve(torch.ones(1, 3, dtype=torch.float64))
    assert not bool(factorization.ok[0]) and not bool(factorization.breakdown[0]) and not bool(factorization.converged[0])
    assert bool(factorization.inexact[0])  # only the tolerance was missed: an inexact step, not a breakdown


def test_implicit_backward_sees_linear_solver_failures(caplog):
    well_posed = _chain_problem()
    v = torch.ones(1, 3, dtype=torch.float64)
    short, _ = _cg_factorization(well_posed, well_posed.initial_values(), max_iterations=1, tolerance=1e-14)
    with caplog.at_level(logging.WARNING, logger="slam"):
        w = _checked_solve(short, v)  # approximate: said so, not raised
    assert torch.isfinite(w).all() and "did not reach its tolerance" in caplog.text
    problem, _ = _vector_problem(_singular, 5)
    singular, _ = _cg_factorization(problem, problem.initial_values())
    with pytest.raises(slam.SingularSystemError, match="implicit backward"):
        _checked_solve(singular, torch.ones(1, 5, dtype=torch.float64))


class _NaNSolver(slam.linear.LinearSolver):
    """A solver whose every step is NaN while it claims success."""

    name = "nan"

    def factorize(self, structure, values):
        class Broken(slam.linear.Factorization):
            ok = torch.ones(values.shape[0], dtype=torch.bool)

            def solve(self, rhs):
                return torch.full_like(rhs, math.nan)

        return Broken()


def test_a_non_finite_step_is_a_failed_solve_never_a_step():
    problem, x = _vector_problem(lambda d: d - 1.0, 3)
    result = slam.solve(problem, slam.LevenbergMarquardt(linear_solver=_NaNSolver()))
    assert not bool(result.converged[0]) and "linear solver failed" in result.termination[0]
    assert torch.equal(result[x].data, torch.zeros(1, 3, dtype=torch.float64))
    with pytest.raises(slam.SingularSystemError):
        slam.solve(problem, slam.GaussNewton(linear_solver=_NaNSolver()))


# ---------------------------------------------------------------------- non-finite costs

def _rosenbrock_beyond(limit):
    """Rosenbrock's residuals, NaN where x0 > ``limit`` (its minimum (1, 1) lies there when limit < 1)."""

    def fun(x):
        r = torch.stack([10.0 * (x[1] - x[0] ** 2), 1.0 - x[0]])
        return torch.where(x[0] > limit, torch.full_like(r, math.nan), r)

    return fun


def test_levenberg_marquardt_stalled_at_a_non_finite_region_raises_naming_the_cost():
    with pytest.raises(slam.NonFiniteError, match=r"cost 'fun' produced a non-finite residual at instance 0") as info:
        slam.least_squares(_rosenbrock_beyond(0.5), [-1.2, 1.0])
    assert info.value.cost == "fun" and info.value.instance == 0 and info.value.variables == ("x[0]",)


def test_levenberg_marquardt_reaches_the_optimum_through_rejected_non_finite_trials():
    result = slam.least_squares(_rosenbrock_beyond(1.5), [-1.2, 1.0], max_iterations=500)
    assert result.converged, result.termination
    np.testing.assert_allclose(result.x.numpy(), [1.0, 1.0], atol=1e-6)

    def logs(x):  # the first step (to x < 0) is NaN: rejected, then the damping finds the way
        return torch.stack([torch.log(x[0]) - math.log(0.5), torch.log(x[1]) - math.log(3.0)])

    for ftol in (1e-2, 1e-8):
        result = slam.least_squares(logs, [10.0, 100.0], ftol=ftol, gtol=0.0)
        assert result.converged and not result.history[0].accepted[0]
        np.testing.assert_allclose(result.x.numpy(), [0.5, 3.0], rtol=1e-6)


def test_non_finite_cost_at_the_start_raises_at_once():
    for method in ("lm", "gn"):
        with pytest.raises(slam.NonFiniteError, match="cost 'log' produced a non-finite residual"):
            slam.least_squares(torch.log, [-1.0, 1.0], method=method)


def test_gauss_newton_step_into_a_non_finite_region_raises():
    def shifted_log(x):
        return torch.log(x) - math.log(0.5)

    with pytest.raises(slam.NonFiniteError, match="cost 'shifted_log' produced a non-finite residual"):
        slam.least_squares(shifted_log, [10.0], method="gn")


def test_overflowing_finite_residuals_raise_non_finite_error_not_index_error():
    problem, _ = _vector_problem(lambda d: 1e308 * (1.0 + d), 2)  # r finite, Σr and r·r overflow
    with pytest.raises(slam.NonFiniteError, match=r"cost ½ρ\(‖r‖²\) \(r·r overflows\) at instance 0") as info:
        slam.solve(problem)
    assert info.value.quantity.startswith("cost")


def test_large_finite_sums_are_no_false_alarm():
    # Each H entry is ~1e308 (finite), their sum overflows: the quick check flags, the exact one passes.
    x = slam.Variable(Euclidean(torch.zeros(2, 1, dtype=torch.float64)), name="x")
    big = slam.residual(lambda v: 1e154 * (v.data - 1.0))
    problem = slam.Problem([big(x.all(), name="big")])
    h, g, cost = problem.linearize(problem.initial_values())
    assert not torch.isfinite(h.sum()) and torch.isfinite(h).all()
    result = slam.solve(problem, slam.GaussNewton(linear_solver="dense"))
    np.testing.assert_allclose(result[x].data.reshape(-1).numpy(), [1.0, 1.0])


@pytest.mark.parametrize("group", [SE3, SE2])
@pytest.mark.parametrize("field", ["poses", "measurements"])
def test_pose_graph_with_a_huge_value_raises_naming_the_edge(group, field):
    graph, _ = synthetic_graph(group, 20, 5)
    k = 5 if field == "poses" else 3  # vertex 5 (edges 4 -> 5, 5 -> 6) or edge 3 (3 -> 4)
    data = getattr(graph, field).data.clone()
    data[k, 0] = 1e200
    with pytest.raises(slam.NonFiniteError, match=r"cost 'between' produced a non-finite .* at instance \d+ ") as info:
        pgo_optimize(dataclasses.replace(graph, **{field: group(data)}))
    error = info.value
    assert error.cost == "between"
    if field == "poses":
        assert f"pose[{k}]" in error.variables
        assert (int(graph.i[error.instance]), int(graph.j[error.instance])) in ((4, 5), (5, 6))
    else:
        assert error.instance == k and error.variables == ("pose[3]", "pose[4]")


def test_batched_pose_graph_names_the_problem():
    graph, _ = synthetic_batch(3, SE3, 12, 3)
    data = graph.poses.data.clone()
    data[2, 7, 1] = 1e200
    with pytest.raises(slam.NonFiniteError, match="of problem 2") as info:
        pgo_optimize(graph.with_poses(SE3(data)))
    assert info.value.problem == 2 and "pose[7]" in info.value.variables


@pytest.mark.parametrize("linear_solver", ["schur", "dense", "iterative-schur"])
def test_bundle_adjustment_with_a_huge_camera_raises_naming_the_observation(linear_solver):
    problem, _ = synthetic_bal(3, 10)
    cameras = problem.cameras.clone()
    cameras[1, 3] = 1e40  # x translation of camera 1: the distortion polynomial overflows
    with pytest.raises(slam.NonFiniteError, match=r"cost 'reprojection' produced a non-finite") as info:
        ba_optimize(dataclasses.replace(problem, cameras=cameras), linear_solver=linear_solver)
    assert info.value.cost == "reprojection" and info.value.variables[0] == "camera_pose[1]"
    assert int(problem.camera_index[info.value.instance]) == 1


def test_inverse_kinematics_with_a_non_finite_target_or_start_is_refused():
    kinematics = Kinematics(read_urdf(data_file("panda_no_gripper.urdf", "kinematics")))
    target = kinematics.link_pose(torch.zeros(1, kinematics.dof, dtype=torch.float64), "panda_link7")
    bad = target.data.clone()
    bad[0, 0] = math.nan
    with pytest.raises(ValueError, match="target 0 is not finite"):
        inverse_kinematics(kinematics, "panda_link7", SE3._wrap(bad), restarts=0)
    q0 = torch.zeros(kinematics.dof, dtype=torch.float64)
    q0[2] = math.inf
    with pytest.raises(ValueError, match=f"joint '{kinematics.robot.joint_names[2]}'"):
        inverse_kinematics(kinematics, "panda_link7", target, q0, restarts=0)


# ---------------------------------------------------------------------- raw group data

@pytest.mark.parametrize("group", [SO2, SE2, SO3, SE3])
def test_raw_data_off_the_group_is_normalized(group):
    element = group.random(6, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    k = group.rotation_type.param_dim if group in (SE2, SE3) else group.param_dim
    scaled = element.data.clone()
    scaled[..., -k:] *= 5.0
    rebuilt = group(scaled)
    torch.testing.assert_close(rebuilt.data, element.data, atol=1e-15, rtol=0)
    # data on the group is kept bit for bit, as the very tensor
    assert group(element.data).data is element.data


def test_the_issue_quaternion_is_the_identity():
    assert torch.equal(SE3(torch.tensor([0, 0, 0, 0, 0, 0, 5.0])).data, torch.tensor([0, 0, 0, 0, 0, 0, 1.0]))


@pytest.mark.parametrize("group", [SO3, SE3, SO2, SE2])
@pytest.mark.parametrize("value", [0.0, math.nan, math.inf])
def test_raw_data_with_no_rotation_is_refused(group, value):
    data = group.identity(3, dtype=torch.float64).data.clone()
    start = data.shape[-1] - (group.rotation_type.param_dim if group in (SE2, SE3) else group.param_dim)
    data[1, start:] = value
    with pytest.raises(ValueError, match=r"at index \(1,\) .* not a rotation"):
        group(data)


def test_data_that_requires_grad_is_refused_not_rescaled():
    data = torch.tensor([0, 0, 0, 0, 0, 0, 5.0], dtype=torch.float64, requires_grad=True)
    with pytest.raises(ValueError, match="requires grad"):
        SE3(data)
    unit = SE3.identity(dtype=torch.float64).data.clone().requires_grad_(True)
    assert SE3(unit).data is unit  # and a leaf on the group stays that leaf


def test_traced_construction_is_not_checked():
    off = torch.tensor([[0, 0, 0, 0, 0, 0, 5.0], [1, 0, 0, 0, 0, 0, 1.0]], dtype=torch.float64)
    # under vmap (values cannot be read) the data is taken as given
    out = torch.func.vmap(lambda d: SE3(d).data)(off)
    torch.testing.assert_close(out, off)
    jac = torch.func.jacrev(lambda d: SE3(d).act(torch.ones(3, dtype=torch.float64)))(off[1])
    assert torch.isfinite(jac).all()


def test_pose_graph_from_unnormalized_quaternions_has_the_unit_optimum():
    graph, _ = synthetic_graph(SE3, 30, 10)
    reference = pgo_optimize(graph)
    poses, measurements = graph.poses.data.clone(), graph.measurements.data.clone()
    poses[:, 3:] *= 5.0
    measurements[:, 3:] *= 5.0
    scaled = dataclasses.replace(graph, poses=SE3(poses), measurements=SE3(measurements))
    result = pgo_optimize(scaled)
    assert result.converged
    assert result.final_chi2 == pytest.approx(reference.final_chi2, rel=1e-9)


# ---------------------------------------------------------------------- kinematics

def test_non_finite_joint_values_are_refused_naming_joint_and_configuration():
    kinematics = Kinematics(read_urdf(data_file("panda_no_gripper.urdf", "kinematics")))
    q = torch.zeros(4, kinematics.dof, dtype=torch.float64)
    q[2, 3] = math.nan
    name = kinematics.robot.joint_names[3]
    for call in (lambda: kinematics.forward(q), lambda: kinematics.jacobian(q, "panda_link7"),
                 lambda: kinematics.link_pose(q, "panda_link7")):
        with pytest.raises(ValueError, match=rf"joint '{name}' \(index 3\) of configuration 2 is nan"):
            call()
    # traced inputs are not read (vmap over configurations still works on finite values)
    poses = torch.func.vmap(lambda c: kinematics.link_pose(c, "panda_link7").data)(torch.zeros(2, kinematics.dof,
                                                                                             dtype=torch.float64))
    assert torch.isfinite(poses).all()


# ---------------------------------------------------------------------- JSON summaries

def test_summaries_hold_no_bare_nan_or_infinity():
    graph, _ = synthetic_graph(SE3, 10, 2)
    pgo = pgo_optimize(graph)
    json.dumps(pgo.summary(), allow_nan=False)
    broken = dataclasses.replace(pgo, initial_chi2=math.inf, final_chi2=math.nan)
    summary = broken.summary()
    json.dumps(summary, allow_nan=False)
    assert summary["initial_chi2"] is None and summary["non_finite"] == ["initial_chi2", "final_chi2"]
    batch, _ = synthetic_batch(2, SE3, 10, 2)
    result = pgo_optimize(batch)
    json.dumps(result.summary(), allow_nan=False)
    per_graph = dict(result.per_graph, final_chi2=[1.0, math.inf])
    summary = dataclasses.replace(result, per_graph=per_graph).summary()
    assert summary["per_graph"]["final_chi2"] == [1.0, None] and summary["non_finite"] == ["per_graph.final_chi2[1]"]
    problem, _ = synthetic_bal(2, 8)
    ba = ba_optimize(problem)
    json.dumps(ba.summary(), allow_nan=False)
    summary = dataclasses.replace(ba, final_chi2=math.inf).summary()
    json.dumps(summary, allow_nan=False)
    assert summary["final_chi2"] is None and isinstance(ba, BAResult) and isinstance(pgo, PgoResult)
    assert isinstance(graph, PoseGraph)


def test_levenberg_marquardt_takes_inexact_conjugate_gradient_steps():
    """A CG solve that only misses its tolerance is an inexact Newton step (as in Ceres): not ok,
    but taken, so truncated CG still reaches the optimum."""
    graph, _ = synthetic_graph(SE3, 40, 15)
    problem, _ = graph.problem()
    reference = slam.solve(problem, slam.LevenbergMarquardt(linear_solver="dense"))
    truncated = slam.solve(problem, slam.LevenbergMarquardt(linear_solver=ConjugateGradient(max_iterations=40),
                                                            max_iterations=200))
    assert bool(truncated.converged[0]), truncated.termination
    assert float(truncated.cost[0]) == pytest.approx(float(reference.cost[0]), rel=1e-5)


@pytest.mark.parametrize("hessian", ["gauss_newton", "exact"])
def test_implicit_gradient_on_a_singular_system_is_the_pseudo_inverse_one(hessian, caplog):
    theta = torch.tensor(2.0, dtype=torch.float64, requires_grad=True)

    def fun(x):  # x0 is free: H = diag(0, 1) at the solution
        return torch.stack([x[1] - theta, 0.0 * x[0]])

    with caplog.at_level(logging.WARNING, logger="slam"):
        fit = slam.least_squares(fun, torch.tensor([0.5, 0.0], dtype=torch.float64),
                                 backward=slam.Implicit(hessian=hessian))
        (grad,) = torch.autograd.grad(fit.x.sum(), theta)
    assert float(grad) == pytest.approx(1.0, abs=1e-9)  # dx1*/dθ = 1; the free x0 gets the minimum-norm 0
    assert "pseudo-inverse" in caplog.text


def test_every_solver_reports_an_indefinite_or_singular_matrix_as_not_ok():
    from slam.linear import SparseCholesky
    from slam.linear.sparse_cholesky import BatchedSparseCholesky, SparsePattern

    n = 4
    rows, cols = torch.tril_indices(n, n)
    pattern, slot = SparsePattern.from_coordinates(n, rows, cols)
    matrices = [torch.diag(torch.tensor([2.0, 3.0, 1.0, 4.0])), torch.diag(torch.tensor([2.0, -3.0, 1.0, 4.0])),
                torch.diag(torch.tensor([2.0, 0.0, 1.0, 4.0]))]
    matrices[0][3, 0] = matrices[0][0, 3] = 0.5
    values = torch.zeros(3, pattern.nnz, dtype=torch.float64)
    for b, m in enumerate(matrices):
        values[b].index_add_(0, slot, m[rows, cols].double())
    for backend in ["scipy"] + (["cholmod"] if SparseCholesky is not None else []):
        try:
            ok = BatchedSparseCholesky(pattern, backend).factorize(values)
        except ImportError:
            continue
        assert ok.tolist() == [True, False, False], backend
    dense = DenseFactorization(torch.stack([m.double() for m in matrices]))
    assert dense.ok.tolist() == [True, False, False]


def test_pose_graph_with_an_edge_a_robust_loss_ignores_but_chi2_cannot_report_raises():
    graph, _ = synthetic_graph(SE3, 20, 5)
    data = graph.measurements.data.clone()
    data[3, 0] = 1e160  # eᵀΩe overflows; Tukey's ρ saturates, so the solve itself stays finite
    with pytest.raises(slam.NonFiniteError, match=r"non-finite initial chi2 .* at instance 3 .*pose\[3\], pose\[4\]"):
        pgo_optimize(dataclasses.replace(graph, measurements=SE3(data)), loss=slam.Tukey(1.0))


@pytest.mark.parametrize("theta", [1e3, 1e20, 1e40, 1e100])
def test_exp_of_a_huge_finite_angle_is_the_reduced_rotation(theta):
    # The small-angle series is evaluated even where it is not selected; it must not overflow into
    # the result (it did at θ = 1e40: the BAL reader then saw a nan quaternion).
    axis = torch.tensor([0.6, 0.0, 0.8], dtype=torch.float64)
    q = SO3.exp(theta * axis).data
    expected = torch.tensor([*(math.sin(theta / 2) * axis).tolist(), math.cos(theta / 2)], dtype=torch.float64)
    torch.testing.assert_close(q, expected, rtol=0, atol=1e-12)
