"""Pose-graph optimization from a ``PoseGraph``: initialization, then Levenberg-Marquardt."""

from __future__ import annotations

import dataclasses
import logging
import math
import os
import time
from typing import Literal

import torch

from liegeo import LieGroup

from ..optim import Dogleg, GaussNewton, IterationRecord, LevenbergMarquardt, solve
from ..optim.callbacks import chi2_quantity, reporting, settings_record
from ..optim.solve import prepare
from ..optim.result import json_safe
from .._docs import document_fields
from .._verbose import verbose_option
from ..problem import NonFiniteError
from ..robust import RobustLoss, robust_spec
from .graph import PoseGraph

log = logging.getLogger("slam.pgo")

Initialization = Literal["file", "odometry", "chordal"]

# λ0 relative to diag(JᵀJ).  Pose graphs are locally near-quadratic, but their slowest (global)
# modes have eigenvalues ~1e-6 of the largest: Ceres' usual 1e-4 damps exactly those and costs
# 5-8 extra iterations on sphere2500/parking-garage/city10000 (measured); 1e-8 takes GTSAM's
# iteration counts (6, 6, 6) with the same optimum.
POSE_GRAPH_DAMPING = 1e-8


@document_fields
@dataclasses.dataclass(frozen=True)
class PgoResult:
    """What ``optimize`` returns.  Its one reported quantity is ``chi2 = Σ eᵀ Ω e`` (g2o's chi2, twice the
    solver's cost without a robust kernel), in the iteration lines, ``summary()`` and ``slam pgo``'s
    JSON alike; with a robust kernel ``robust chi2 = Σ ρ(eᵀ Ω e)``, what the solver lowers, beside it."""

    graph: PoseGraph
    """The input graph with the optimized poses."""
    initial_chi2: float
    """chi2 at the initialization used (after ``init``)."""
    final_chi2: float
    iterations: int
    converged: bool
    termination: str
    init_seconds: float
    solve_seconds: float
    history: list[IterationRecord]
    per_graph: dict[str, list] | None = None
    """For a batch of graphs: ``initial_chi2``, ``final_chi2``, ``iterations``, ``converged`` and
    ``termination`` of each graph; None for a single graph."""
    initial_robust_chi2: float | None = None
    """With a robust kernel, ``Σ ρ(eᵀ Ω e)`` at the initialization (g2o's ``activeRobustChi2``; twice the
    solver's cost); None without one."""
    final_robust_chi2: float | None = None
    initial_poses: LieGroup | None = None
    """The poses the solve started from: the file's, or the odometry / chordal initialization."""
    config: dict[str, object] | None = None
    """The run's settings, enough to repeat it: ``init``, ``optimizer``, ``robust`` (as ``--robust``
    takes it), ``dtype``, ``device`` and ``solver`` (every field of the optimizer config)."""
    covariance: torch.Tensor | None = None
    """With ``covariance=True``: each pose's marginal covariance at the optimum ``(N, d, d)`` (``(B, N, d, d)``
    for a batch), in the tangent order ``(v, ω)`` of ``x · Exp(δ)`` (body frame, translation first); zeros
    for fixed poses (``slam.marginals``).  With ``gnc=``, of the final GNC-weighted problem."""
    covariance_seconds: float | None = None
    gnc: dict[str, object] | None = None
    """With ``gnc=``: ``loss``, ``inliers`` (edge indices whose final weight > 0.5), ``weights`` (per edge),
    ``iterations`` (GNC rounds), ``termination``, ``mu``, ``known_inliers`` ("odometry") and
    ``weighted_chi2`` (``Σ w eᵀΩe``, what GNC lowered); per graph (lists of those) for a batch."""

    def summary(self) -> dict[str, object]:
        """The record as plain JSON values: no NaN or Infinity (``json.dumps(..., allow_nan=False)``
        works).  ``optimize`` raises ``NonFiniteError`` rather than return a non-finite chi2 (an edge
        that a robust loss ignores, e.g. Tukey's, may have ``eᵀΩe = inf``); should a record hold one
        anyway, it is ``None`` here, with ``non_finite`` naming such fields."""
        out = {
            "source": self.graph.source, "num_poses": self.graph.num_poses, "num_edges": self.graph.num_edges,
            "initial_chi2": self.initial_chi2, "final_chi2": self.final_chi2,
            **({"initial_robust_chi2": self.initial_robust_chi2, "final_robust_chi2": self.final_robust_chi2}
               if self.initial_robust_chi2 is not None else {}),
            "iterations": self.iterations,
            "converged": self.converged, "termination": self.termination, "init_seconds": self.init_seconds,
            "solve_seconds": self.solve_seconds,
            **({"batch_size": self.graph.batch_size, "per_graph": self.per_graph} if self.per_graph else {}),
            **({"config": self.config} if self.config is not None else {}),
            **({"gnc": self.gnc} if self.gnc is not None else {}),
            **({"covariance_seconds": self.covariance_seconds} if self.covariance_seconds is not None else {}),
            **({"information_repair": self.graph.information_repair.summary()}
               if getattr(self.graph, "information_repair", None) is not None else {}),
        }
        return json_safe(out)

    def __repr__(self) -> str:
        """One line: the graph, how the solve ended, iterations, chi2 before and after, seconds."""
        name = os.path.basename(self.graph.source) if self.graph.source else "pose graph"
        batch = f"{self.graph.batch_size} x " if self.graph.batch_size is not None else ""
        return (f"PgoResult({name}: {batch}{self.graph.num_poses} poses, {self.graph.num_edges} edges; {self.termination}, "
                f"{'converged' if self.converged else 'not converged'}, {self.iterations} iterations, "
                f"chi2 {self.initial_chi2:.6e} -> {self.final_chi2:.6e}, {self.solve_seconds:.3f} s)")


def _chi2_error(graph: PoseGraph, when: str) -> NonFiniteError:
    """The ``NonFiniteError`` naming the first edge whose ``eᵀΩe`` is not finite (or the sum's overflow)."""
    e = graph.errors()
    per_edge = torch.einsum("...ea,...eab,...eb->...e", e, graph.information.to(e.dtype), e)
    bad = ~torch.isfinite(per_edge)
    if not bool(bad.any()):
        return NonFiniteError(f"the {when} chi2 of {graph.source or 'the pose graph'} overflows (every edge's is finite)")
    where = [int(k) for k in torch.nonzero(bad)[0]]
    k = where[-1]
    variables = (f"pose[{int(graph.i[k])}]", f"pose[{int(graph.j[k])}]")
    of = f" of problem {where[0]}" if len(where) > 1 else ""
    return NonFiniteError(
        f"cost 'between' has a non-finite {when} chi2 eᵀΩe at instance {k}{of} (variables: {', '.join(variables)}): "
        "the solve may have ignored it by its robust loss, but the result cannot report it",
        cost="between", instance=k, problem=where[0] if len(where) > 1 else 0, variables=variables, quantity="chi2")


def initialize(graph: PoseGraph, method: Initialization) -> PoseGraph:
    """The graph with its poses from the file, from chained odometry, or from chordal relaxation."""
    if method == "file":
        return graph
    from .initialization import chordal_initialization, odometry_initialization

    anchor = int(graph.fixed[0])
    if method == "odometry":
        poses = odometry_initialization(graph.group, graph.num_poses, graph.i, graph.j, graph.measurements,
                                        anchor=anchor, source=graph.source)
    elif method == "chordal":
        poses = chordal_initialization(graph.group, graph.num_poses, graph.i, graph.j, graph.measurements,
                                       graph.information, anchor=anchor, source=graph.source)
    else:
        raise ValueError(f"init must be file, odometry or chordal, got {method!r}")
    # Keep the anchor where the file put it (both initializers place it at the identity).
    offset = graph.poses[anchor].compose(poses[anchor].inverse())
    return graph.with_poses(type(poses)(offset.unsqueeze(0).compose(poses).data.to(graph.poses.data.dtype)))


@verbose_option
def optimize(
    graph: PoseGraph,
    *,
    init: Initialization = "file",
    max_iterations: int = 100,
    loss: RobustLoss | None = None,
    function_tolerance: float = 1e-6,
    dtype: torch.dtype = torch.float64,
    device: str | torch.device = "cpu",
    progress: bool = False,
    optimizer: Literal["lm", "dogleg", "gn"] = "lm",
    verbose: bool = False,
    diagnose: bool = True,
    gnc: Literal["tls", "gm"] | None = None,
    covariance: bool = False,
) -> PgoResult:
    """Initialize (timed as ``init_seconds``) and solve (``solve_seconds``) a pose graph by LM (or by
    Powell's dogleg, ``optimizer="dogleg"``, or Gauss-Newton, ``"gn"``; the first pose fixes the gauge).

    A batch of graphs (``PoseGraph.stack``) is solved in one batched call, each graph with its own
    damping and stopping test; its result reports the sums of the chi2 values, the largest iteration
    count, ``converged`` if every graph converged, and the per-graph values in ``per_graph``.

    ``verbose=True`` prints the solver's log lines (one per iteration, then the outcome) to stderr for
    this call, without configuring ``logging`` (``slam._verbose``; where the application already logs
    ``slam`` at INFO, they go there instead, once).

    ``diagnose=True`` runs the problem doctor (``slam.doctor.check``) on the built problem first: its
    errors raise ``slam.doctor.ProblemError`` (a ``ValueError``), its warnings are logged.

    ``gnc="tls" | "gm"`` solves by graduated non-convexity (``slam.optim.gnc``, GTSAM's ``GncOptimizer``
    schedule) around the chosen optimizer, with the odometry edges (``PoseGraph.odometry``) as known
    inliers; ``PgoResult.gnc`` holds each edge's final weight and the inlier set, ``iterations`` the inner
    iterations of all solves, ``history`` their records one solve after another.

    ``covariance=True`` also computes every pose's marginal covariance at the optimum
    (``PgoResult.covariance``, by selected inversion: ``slam.marginals``; timed as ``covariance_seconds``).
    """
    if gnc is not None and loss is not None:
        raise ValueError("gnc and a robust loss exclude each other (GNC replaces the robust kernel)")
    if graph.batch_size is not None and init != "file":
        raise ValueError(f"init={init!r} is not available for a batch of graphs; initialize each graph and stack them")
    graph = graph.to(dtype=dtype, device=device)
    start = time.perf_counter()
    graph = initialize(graph, init)
    init_seconds = time.perf_counter() - start
    initial_chi2 = graph.chi2()
    start = time.perf_counter()
    problem, poses = graph.problem(loss=loss)
    build_seconds = time.perf_counter() - start
    if diagnose:  # slam.doctor: errors raise ProblemError, warnings are logged (one line each)
        from ..doctor import check

        check(problem)
    prepare(problem)  # loading compiled kernels is start-up, like an import: not solve time
    start = time.perf_counter()
    common = dict(max_iterations=max_iterations, function_tolerance=function_tolerance, progress=progress)
    if optimizer == "lm":
        config = LevenbergMarquardt(initial_damping=POSE_GRAPH_DAMPING, **common)
    elif optimizer == "dogleg":
        config = Dogleg(**common)
    elif optimizer == "gn":
        config = GaussNewton(**common)
    else:
        raise ValueError(f"optimizer must be lm, dogleg or gn, got {optimizer!r}")
    gnc_result = None
    with reporting(chi2_quantity(loss is not None)):  # iteration lines in chi2, as this result reports
        if gnc is None:
            result = solve(problem, config)
        else:
            from ..optim.gnc import GNC, gnc_solve

            gnc_result = gnc_solve(problem, GNC(inner=config, loss=gnc), known_inliers={problem.costs[0]: graph.odometry})
            result = gnc_result.last_solve
    solve_seconds = build_seconds + time.perf_counter() - start
    optimized = graph.with_poses(result[poses] if gnc_result is None else gnc_result[poses])
    final_chi2 = optimized.chi2()
    for when, which, chi2 in (("initial", graph, initial_chi2), ("final", optimized, final_chi2)):
        if not math.isfinite(chi2):  # a robust loss may have ignored the edge; chi2 does not
            raise _chi2_error(which, when)
    covariances, covariance_seconds = None, None
    if covariance:
        start = time.perf_counter()
        covariances = (gnc_result if gnc_result is not None else result).covariance(poses)
        covariance_seconds = time.perf_counter() - start
    per_graph = None
    if graph.batch_size is not None:
        per_graph = {"initial_chi2": graph.chi2_per_graph().tolist(), "final_chi2": optimized.chi2_per_graph().tolist(),
                     "iterations": result.iterations.tolist(), "converged": result.converged.tolist(),
                     "termination": list(result.termination)}
    robust = {"initial_robust_chi2": 2.0 * float(result.initial_cost.sum()),
              "final_robust_chi2": 2.0 * float(result.cost.sum())} if loss is not None else {}
    settings = {"init": init, "optimizer": optimizer, "robust": robust_spec(loss),
                "dtype": str(dtype).removeprefix("torch."), "device": str(torch.device(device)),
                "solver": settings_record(config)}
    iterations, converged, history, gnc_record = int(result.iterations.max()), bool(result.converged.all()), result.history, None
    if gnc_result is not None:
        settings["gnc"] = gnc
        iterations, converged, history = int(gnc_result.inner_iterations.max()), bool(gnc_result.converged.all()), gnc_result.history
        weights = gnc_result.weights[0].reshape(-1, graph.num_edges)
        records = [{"loss": gnc, "inliers": torch.nonzero(w > 0.5).reshape(-1).tolist(), "weights": w.tolist(),
                    "iterations": int(gnc_result.iterations[b]), "termination": gnc_result.termination[b],
                    "mu": float(gnc_result.mu[b]), "known_inliers": "odometry",
                    "weighted_chi2": 2.0 * float(gnc_result.cost[b])} for b, w in enumerate(weights)]
        gnc_record = records[0] if graph.batch_size is None else {"loss": gnc, "per_graph": records}
        if per_graph is not None:
            per_graph["iterations"] = gnc_result.inner_iterations.tolist()
            per_graph["converged"] = gnc_result.converged.tolist()
    return PgoResult(
        graph=optimized, initial_chi2=initial_chi2, final_chi2=final_chi2, iterations=iterations,
        converged=converged, termination=result.termination[0], init_seconds=init_seconds,
        solve_seconds=solve_seconds, history=history, per_graph=per_graph, initial_poses=graph.poses,
        config=settings, gnc=gnc_record, covariance=covariances, covariance_seconds=covariance_seconds, **robust,
    )
