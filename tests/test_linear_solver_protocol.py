"""The linear-solver protocol: frozen options, ``analyze``, one meaning of ``ok`` with a solve summary,
and the Schur complement's reduced system given as a solver object."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from slam.ba import build, synthetic_bal
from slam.linear import (ConjugateGradient, DenseCholesky, LinearSolver, LinearSolveSummary, SchurComplement,
                         SparseCholesky)
from slam.pgo import synthetic_graph
from slam.linear.sparse_cholesky import _cholmod

SOLVERS = [DenseCholesky(), SparseCholesky(), SparseCholesky(backend="scipy"), ConjugateGradient(tolerance=1e-13)]


def _system(batch: int = 3):
    graph, _ = synthetic_graph(num_poses=12, num_loop_closures=4)
    problem, _ = graph.problem()
    h, g, _ = problem.linearize(problem.initial_values())
    h = h.expand(batch, -1).clone()
    return problem.structure, h, -g.expand(batch, -1)


@pytest.mark.parametrize("solver", SOLVERS, ids=repr)
def test_options_are_frozen_and_analyze_is_idempotent(solver):
    assert dataclasses.is_dataclass(solver.options)
    field = next(iter(dataclasses.fields(solver.options)), None)
    if field is not None:
        with pytest.raises(dataclasses.FrozenInstanceError):
            setattr(solver.options, field.name, getattr(solver.options, field.name))
    structure, h, b = _system()
    assert solver.analyze(structure) is solver and solver.analyze(structure) is solver
    x, summary = solver.factorize(structure, h).solve_with_summary(b)
    assert isinstance(summary, LinearSolveSummary) and bool(summary.ok.all()) and not bool(summary.failed.any())
    reference = torch.linalg.solve(DenseCholesky().factorize(structure, h).matrices, b.unsqueeze(-1)).squeeze(-1)
    torch.testing.assert_close(x, reference, rtol=1e-7, atol=1e-9)


@pytest.mark.parametrize("solver", SOLVERS, ids=repr)
def test_a_failed_row_is_failed_in_the_summary(solver):
    structure, h, b = _system()
    h[1] = 0.0  # singular
    h[1, structure.pattern.diagonal[0]] = -1.0  # and indefinite
    x, summary = solver.factorize(structure, h).solve_with_summary(b)
    assert summary.ok.tolist() == [True, False, True]
    assert not bool(summary.ok[1] | summary.inexact[1])
    assert bool(torch.isfinite(x).all())


def test_invalid_options_are_refused():
    with pytest.raises(ValueError):
        ConjugateGradient(tolerance=0.0)
    with pytest.raises(ValueError):
        SparseCholesky(mode="fast")


@pytest.mark.parametrize("reduced, name", [(DenseCholesky(), "dense"), (ConjugateGradient(2000, 1e-13), "pcg"),
                                           pytest.param(SparseCholesky(), "sparse", marks=pytest.mark.skipif(
                                               _cholmod() is None, reason="scikit-sparse not installed"))])
def test_schur_takes_its_reduced_solver_as_an_object(reduced, name):
    pytest.importorskip("numba")
    scene, _ = synthetic_bal(4, 20, seed=1)
    problem, (_, _, points) = build(scene)
    h, g, _ = problem.linearize(problem.initial_values())
    h[:, problem.structure.pattern.diagonal] *= 1.01
    by_object = SchurComplement(points, reduced=reduced).prepare(problem)
    assert by_object.reduced == name
    if name == "pcg":  # the settings come from the solver object
        assert (by_object.tolerance, by_object.max_iterations) == (1e-13, 2000)
    x = by_object.factorize(problem.structure, h).solve(-g)
    reference = DenseCholesky().factorize(problem.structure, h).solve(-g)
    torch.testing.assert_close(x, reference, rtol=1e-8, atol=1e-8 * float(reference.abs().max()))
    with pytest.raises(TypeError, match="reduced solver"):
        SchurComplement(points, reduced=SchurComplement(points))


def test_every_solver_is_a_linear_solver():
    assert all(isinstance(s, LinearSolver) for s in SOLVERS)
    assert "tolerance=1e-13" in repr(ConjugateGradient(tolerance=1e-13))
