"""The Schur-complement linear solver against dense Cholesky: solutions, failures, gradients."""

from __future__ import annotations

import pytest
import torch

import slam
from liegeo import SE3
from slam.ba import build, synthetic_bal
from slam.costs import Between
from slam.linear import DenseCholesky, SchurComplement

pytest.importorskip("numba")


def _damped_system(problem, batch: int = 1):
    h, g, _ = problem.linearize(problem.initial_values())
    diagonal = problem.structure.pattern.diagonal
    h = h.expand(batch, -1).clone()
    h[:, diagonal] *= 1.0 + torch.linspace(1e-3, 1e-1, batch, dtype=h.dtype).unsqueeze(-1)
    return h, -g.expand(batch, -1) * torch.linspace(1.0, 2.0, batch, dtype=h.dtype).unsqueeze(-1)


@pytest.mark.parametrize("backend, reduced", [("numba", "dense"), ("numba", "sparse"), ("numba", "pcg"),
                                              ("torch", "dense"), ("torch", "pcg")])
@pytest.mark.parametrize("fixed", [{}, {"fix_cameras": [0], "fix_intrinsics": True}])
def test_solution_equals_dense_cholesky(fixed, reduced, backend):
    scene, _ = synthetic_bal(5, 30, seed=3)
    problem, (_, _, points) = build(scene, **fixed)
    h, b = _damped_system(problem, batch=2)
    solver = SchurComplement(points, reduced=reduced, tolerance=1e-13, max_iterations=2000, backend=backend)
    schur = solver.prepare(problem).factorize(problem.structure, h)
    dense = DenseCholesky().factorize(problem.structure, h)
    assert bool(schur.ok.all())
    x, reference = schur.solve(b), dense.solve(b)
    assert torch.allclose(x, reference, rtol=1e-8, atol=1e-8 * float(reference.abs().max()))
    assert bool(schur.ok.all())


@pytest.mark.parametrize("backend, reduced", [("numba", "dense"), ("numba", "sparse"), ("torch", "dense")])
def test_a_singular_point_block_is_reported_not_ok(backend, reduced):
    scene, _ = synthetic_bal(3, 10, seed=0)
    problem, (_, _, points) = build(scene)
    h, b = _damped_system(problem)
    solver = SchurComplement(points, backend=backend, reduced=reduced).prepare(problem)
    layout_columns = problem.structure.tables[2].offset
    # zero the first point's diagonal entries: its 3x3 block is no longer positive definite
    rows, cols = problem.structure.pattern.rows, problem.structure.pattern.cols
    block = (rows >= layout_columns) & (rows < layout_columns + 3) & (cols >= layout_columns) & (cols < layout_columns + 3)
    h[:, block] = 0.0
    factorization = solver.factorize(problem.structure, h)
    assert not bool(factorization.ok.any())
    assert torch.equal(factorization.solve(b), torch.zeros_like(b))


def test_coupled_eliminated_elements_are_refused():
    poses = slam.Variable(SE3.random(4, dtype=torch.float64))
    i, j = torch.tensor([0, 1, 2]), torch.tensor([1, 2, 3])
    problem = slam.Problem([Between(poses[i], poses[j], measurement=SE3.random(3, dtype=torch.float64))])
    h, b = _damped_system(problem)
    with pytest.raises(ValueError, match="uncoupled"):
        SchurComplement(poses).prepare(problem).factorize(problem.structure, h)


def test_unrolled_gradients_equal_those_through_dense_cholesky():
    scene, _ = synthetic_bal(4, 12, seed=6, pixel_noise=0.3)
    gradients = []
    for solver in ("schur", "schur-torch", "dense"):
        observations = scene.observations.clone().requires_grad_(True)
        problem, (_, _, points) = build(scene, fix_cameras=[0, 1], fix_intrinsics=True, observations=observations)
        choice = {"schur": SchurComplement(points, reduced="sparse"),
                  "schur-torch": SchurComplement(points, backend="torch"), "dense": "dense"}[solver]
        config = slam.LevenbergMarquardt(max_iterations=5, linear_solver=choice)
        result = slam.solve(problem, config, slam.Unroll())
        result[points].data.square().sum().backward()
        gradients.append(observations.grad)
    assert gradients[0].abs().sum() > 0
    assert torch.allclose(gradients[0], gradients[2], rtol=1e-7, atol=1e-10)
    assert torch.allclose(gradients[1], gradients[2], rtol=1e-7, atol=1e-10)


def test_iterative_schur_lm_reaches_the_exact_schur_optimum():
    from slam.ba import optimize

    scene, _ = synthetic_bal(6, 60, seed=8)
    exact = optimize(scene, linear_solver="schur", function_tolerance=1e-10, max_iterations=100)
    iterative = optimize(scene, linear_solver="iterative-schur", function_tolerance=1e-10, max_iterations=100)
    assert iterative.converged and exact.converged
    assert iterative.final_cost == pytest.approx(exact.final_cost, rel=1e-8)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")
def test_cuda_bundle_adjustment_equals_cpu():
    from slam.ba import optimize

    scene, _ = synthetic_bal(5, 40, seed=4)
    cpu = optimize(scene, max_iterations=20)
    cuda = optimize(scene, max_iterations=20, device="cuda")
    assert cuda.final_cost == pytest.approx(cpu.final_cost, rel=1e-9)
