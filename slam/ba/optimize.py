"""Bundle adjustment of a ``BALProblem`` by Levenberg-Marquardt."""

from __future__ import annotations

import dataclasses
import os
import time
from typing import Sequence

import torch

from liegeo import Euclidean

from .._docs import document_fields
from .._verbose import verbose_option
from ..costs import BALReprojection
from ..linear import SchurComplement
from ..optim import IterationRecord, LevenbergMarquardt, solve
from ..optim.callbacks import chi2_quantity, reporting, settings_record
from ..optim.result import json_safe
from ..optim.solve import prepare
from ..problem import Problem
from ..robust import RobustLoss, robust_spec
from ..variables import Variable
from .bal_problem import BALProblem


@document_fields
@dataclasses.dataclass(frozen=True)
class BAResult:
    """What ``optimize`` returns.  ``initial_cost`` / ``final_cost`` are Ceres' cost ``½ Σ ρ(‖r‖²)``, which
    the BAL references quote; what the iteration lines, ``summary()`` and ``slam ba``'s JSON report is
    ``chi2 = Σ ‖r‖²`` (pixels²; twice the cost without a kernel), with ``robust chi2 = Σ ρ(‖r‖²)``
    (twice the cost, what the solver lowers) beside it where a robust kernel is set."""

    problem: BALProblem
    """The input problem with the adjusted cameras and points."""
    initial_cost: float
    """``½ Σ ρ(‖r‖²)`` at the start (pixels²; without a kernel ``½ Σ ‖r‖²``, as Ceres reports)."""
    final_cost: float
    iterations: int
    converged: bool
    termination: str
    solve_seconds: float
    history: list[IterationRecord]
    initial_chi2: float | None = None
    """``Σ ‖r‖²`` (pixels², no kernel) at the start; None: ``2 · initial_cost`` (a result without a kernel)."""
    final_chi2: float | None = None
    robust: bool = False
    """A robust kernel was set: ``initial_cost`` / ``final_cost`` are then robust."""
    config: dict[str, object] | None = None
    """The run's settings, enough to repeat it: ``robust`` (as ``--robust`` takes it), ``fix_intrinsics``,
    ``fix_cameras``, ``linear_solver``, ``dtype``, ``device`` and ``solver`` (every field of the LM config)."""
    covariance: dict[str, torch.Tensor] | None = None
    """With ``covariance=True``: the marginal covariances at the optimum of each ``"camera_pose"`` ``(C, 6, 6)``
    (SE(3) tangent ``(v, ω)`` of ``x · Exp(δ)``), ``"intrinsics"`` ``(C, 3, 3)`` (``f, k1, k2``) and ``"point"``
    ``(P, 3, 3)``, on the Schur ordering (points first; ``slam.marginals``); zeros for fixed elements."""
    covariance_seconds: float | None = None

    def summary(self) -> dict[str, object]:
        """The record as plain JSON values: no NaN or Infinity (``slam.optim.result.json_safe``): chi2 before
        and after (``robust chi2`` beside it with a kernel), iterations, termination, time, sizes, config."""
        initial = self.initial_chi2 if self.initial_chi2 is not None else 2.0 * self.initial_cost
        final = self.final_chi2 if self.final_chi2 is not None else 2.0 * self.final_cost
        return json_safe({
            "source": self.problem.source, "num_cameras": self.problem.num_cameras,
            "num_points": self.problem.num_points, "num_observations": self.problem.num_observations,
            "initial_chi2": initial, "final_chi2": final,
            **({"initial_robust_chi2": 2.0 * self.initial_cost, "final_robust_chi2": 2.0 * self.final_cost}
               if self.robust else {}),
            "iterations": self.iterations,
            "converged": self.converged, "termination": self.termination, "solve_seconds": self.solve_seconds,
            **({"config": self.config} if self.config is not None else {}),
            **({"covariance_seconds": self.covariance_seconds} if self.covariance_seconds is not None else {}),
        })

    def __repr__(self) -> str:
        """One line: the problem's size, how the solve ended, iterations, cost before and after, seconds."""
        p = self.problem
        name = f"{os.path.basename(p.source)}: " if p.source else ""
        return (f"BAResult({name}{p.num_cameras} cameras, {p.num_points} points, {p.num_observations} observations; "
                f"{self.termination}, {'converged' if self.converged else 'not converged'}, {self.iterations} iterations, "
                f"cost {self.initial_cost:.6e} -> {self.final_cost:.6e}, {self.solve_seconds:.3f} s)")


def build(problem: BALProblem, *, loss: RobustLoss | None = None, fix_intrinsics: bool = False,
          fix_cameras: Sequence[int] = (), observations: torch.Tensor | None = None,
          intrinsics: torch.Tensor | None = None,
          dtype: torch.dtype = torch.float64,
          device: str | torch.device = "cpu") -> tuple[Problem, tuple[Variable, ...]]:
    """The least-squares problem (one vectorized ``BALReprojection`` cost) and its variables
    ``(poses, intrinsics, points)``.

    ``fix_cameras`` holds those camera poses fixed (e.g. two of them remove the 7-dof similarity
    gauge, which implicit differentiation needs); ``observations`` replaces the problem's pixels
    ``(O, 2)`` and ``intrinsics`` its ``(C, 3)`` values of ``(f, k1, k2)`` (initial values, or the
    fixed values with ``fix_intrinsics``) by tensors that may require grad: gradients of the solution
    flow to them.
    """
    def move(t: torch.Tensor) -> torch.Tensor:
        return t.to(dtype=dtype, device=device)

    fixed_poses = torch.as_tensor(list(fix_cameras), dtype=torch.long) if len(fix_cameras) else None
    poses = Variable(type(problem.poses())(move(problem.poses().data)), fixed=fixed_poses, name="camera_pose")
    fixed = torch.arange(problem.num_cameras) if fix_intrinsics else None
    k = problem.cameras[:, 6:9].clone() if intrinsics is None else intrinsics
    intrinsics_variable = Variable(Euclidean(move(k)), fixed=fixed, name="intrinsics")
    points = Variable(Euclidean(move(problem.points.clone())), name="point")
    c, p = problem.camera_index.to(device), problem.point_index.to(device)
    pixels = problem.observations if observations is None else observations
    cost = BALReprojection(poses[c], intrinsics_variable[c], points[p], observation=move(pixels), loss=loss,
                           name="reprojection")
    return Problem([cost]), (poses, intrinsics_variable, points)


@verbose_option
def optimize(
    problem: BALProblem,
    *,
    max_iterations: int = 50,
    loss: RobustLoss | None = None,
    fix_intrinsics: bool = False,
    fix_cameras: Sequence[int] = (),
    function_tolerance: float = 1e-6,
    initial_damping: float = 1e-4,
    linear_solver: str = "schur",
    dtype: torch.dtype = torch.float64,
    device: str | torch.device = "cpu",
    progress: bool = False,
    verbose: bool = False,
    diagnose: bool = True,
    covariance: bool = False,
) -> BAResult:
    """Adjust cameras (pose and, unless fixed, ``f, k1, k2``) and points; ``solve_seconds`` includes
    building the problem, not loading the compiled kernels (``Problem.prepare``).

    ``linear_solver``: ``"schur"`` (points eliminated, ``slam.linear.SchurComplement``; reduced system
    by dense Cholesky), ``"iterative-schur"`` (the same, reduced system by block-Jacobi PCG), or any
    choice of ``LevenbergMarquardt.linear_solver`` (``"cholmod"``, ``"dense"``: the full system).

    ``verbose=True`` prints the solver's log lines (one per iteration, then the outcome) to stderr for
    this call, without configuring ``logging`` (``slam._verbose``; where the application already logs
    ``slam`` at INFO, they go there instead, once).

    ``diagnose=True`` runs the problem doctor (``slam.doctor.check``) on the built problem first: its
    errors raise ``slam.doctor.ProblemError`` (a ``ValueError``), its warnings are logged.

    ``covariance=True`` also computes every camera's and point's marginal covariance at the optimum
    (``BAResult.covariance``; timed as ``covariance_seconds``).  It needs the similarity gauge fixed
    (``fix_cameras``: two cameras), else ``slam.marginals.SingularInformationError``: checked before the solve.
    """
    if covariance and len(fix_cameras) < 2:
        from ..marginals import SingularInformationError

        raise SingularInformationError(
            "covariance needs the similarity gauge of bundle adjustment fixed: fix two cameras "
            "(fix_cameras=[0, 1]; slam ba --fix-cameras 0,1)", [0])
    start = time.perf_counter()
    least_squares, (poses, intrinsics, points) = build(problem, loss=loss, fix_intrinsics=fix_intrinsics,
                                                       fix_cameras=fix_cameras, dtype=dtype, device=device)
    solver = {"schur": lambda: SchurComplement(points),
              "iterative-schur": lambda: SchurComplement(points, reduced="pcg")}.get(linear_solver, lambda: linear_solver)()
    # Ceres' scaling (the current diag(JᵀJ)): on Ladybug-49 it reaches the optimum in 32 iterations,
    # the running maximum takes more than 50 (measured).
    config = LevenbergMarquardt(max_iterations=max_iterations, function_tolerance=function_tolerance,
                                initial_damping=initial_damping, damping="marquardt-current", progress=progress,
                                linear_solver=solver)
    build_seconds = time.perf_counter() - start
    if diagnose:  # slam.doctor: errors raise ProblemError, warnings are logged (one line each)
        from ..doctor import check

        # BAL leaves the similarity gauge free and LM's damping handles it (fix_cameras pins it): expected.
        check(least_squares, ignore=("gauge",))
    prepare(least_squares)  # loading compiled kernels is start-up, like an import: not solve time
    start = time.perf_counter()
    with reporting(chi2_quantity(loss is not None)):  # iteration lines in chi2, as summary() reports
        result = solve(least_squares, config)
    solve_seconds = build_seconds + time.perf_counter() - start
    adjusted = problem.with_parameters(type(result[poses])(result[poses].data.cpu().double()),
                                       result[intrinsics].data.cpu().double(), result[points].data.cpu().double())
    initial_cost, final_cost = float(result.initial_cost[0]), float(result.cost[0])
    # chi2 without the kernel: the solver's own 2 · cost where there is none, else evaluated (float64, CPU).
    chi2 = (2.0 * problem.cost(), 2.0 * adjusted.cost()) if loss is not None else (2.0 * initial_cost, 2.0 * final_cost)
    settings = {"robust": robust_spec(loss), "fix_intrinsics": fix_intrinsics,
                "fix_cameras": [int(c) for c in fix_cameras], "linear_solver": linear_solver if isinstance(linear_solver, str) else repr(linear_solver),
                "dtype": str(dtype).removeprefix("torch."), "device": str(torch.device(device)),
                "solver": settings_record(config)}
    covariances, covariance_seconds = None, None
    if covariance:
        start = time.perf_counter()
        marginals = result.marginals(eliminate=points)
        covariances = {v.name: marginals.covariance(v) for v in (poses, intrinsics, points)}
        covariance_seconds = time.perf_counter() - start
    return BAResult(problem=adjusted, initial_cost=initial_cost, final_cost=final_cost,
                    iterations=int(result.iterations[0]), converged=bool(result.converged[0]),
                    termination=result.termination[0], solve_seconds=solve_seconds, history=result.history,
                    initial_chi2=chi2[0], final_chi2=chi2[1], robust=loss is not None, config=settings,
                    covariance=covariances, covariance_seconds=covariance_seconds)
