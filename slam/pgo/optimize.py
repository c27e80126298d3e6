"""Pose-graph optimization from a ``PoseGraph``: initialization, then Levenberg-Marquardt."""

from __future__ import annotations

import dataclasses
import logging
import time
from typing import Literal

import torch

from liegeo import SE3

from ..optim import LevenbergMarquardt, IterationRecord, solve
from ..robust import RobustLoss
from .graph import PoseGraph

log = logging.getLogger("slam.pgo")

Initialization = Literal["file", "odometry", "chordal"]

# λ0 relative to diag(JᵀJ).  Pose graphs are locally near-quadratic, but their slowest (global)
# modes have eigenvalues ~1e-6 of the largest: Ceres' usual 1e-4 damps exactly those and costs
# 5-8 extra iterations on sphere2500/parking-garage/city10000 (measured); 1e-8 takes GTSAM's
# iteration counts (6, 6, 6) with the same optimum.
POSE_GRAPH_DAMPING = 1e-8


@dataclasses.dataclass(frozen=True)
class PgoResult:
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

    def summary(self) -> dict[str, object]:
        return {
            "source": self.graph.source, "num_poses": self.graph.num_poses, "num_edges": self.graph.num_edges,
            "initial_chi2": self.initial_chi2, "final_chi2": self.final_chi2, "iterations": self.iterations,
            "converged": self.converged, "termination": self.termination, "init_seconds": self.init_seconds,
            "solve_seconds": self.solve_seconds,
            **({"batch_size": self.graph.batch_size, "per_graph": self.per_graph} if self.per_graph else {}),
        }


def initialize(graph: PoseGraph, method: Initialization) -> PoseGraph:
    """The graph with its poses from the file, from chained odometry, or from chordal relaxation."""
    if method == "file":
        return graph
    from .initialization import chordal_initialization, odometry_initialization

    anchor = int(graph.fixed[0])
    if method == "odometry":
        poses = odometry_initialization(graph.group, graph.num_poses, graph.i, graph.j, graph.measurements,
                                        anchor=anchor)
    elif method == "chordal":
        poses = chordal_initialization(graph.group, graph.num_poses, graph.i, graph.j, graph.measurements,
                                       graph.information, anchor=anchor)
    else:
        raise ValueError(f"init must be file, odometry or chordal, got {method!r}")
    # Keep the anchor where the file put it (both initializers place it at the identity).
    offset = graph.poses[anchor].compose(poses[anchor].inverse())
    return graph.with_poses(type(poses)(offset.unsqueeze(0).compose(poses).data.to(graph.poses.data.dtype)))


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
) -> PgoResult:
    """Initialize (timed as ``init_seconds``) and solve (``solve_seconds``) a pose graph by LM.

    A batch of graphs (``PoseGraph.stack``) is solved in one batched call, each graph with its own
    damping and stopping test; its result reports the sums of the chi2 values, the largest iteration
    count, ``converged`` if every graph converged, and the per-graph values in ``per_graph``.
    """
    if graph.batch_size is not None and init != "file":
        raise ValueError(f"init={init!r} is not available for a batch of graphs; initialize each graph and stack them")
    graph = graph.to(dtype=dtype, device=device)
    start = time.perf_counter()
    graph = initialize(graph, init)
    init_seconds = time.perf_counter() - start
    initial_chi2 = graph.chi2()
    if graph.group is SE3:
        from .. import _se3_kernels

        _se3_kernels.warm_up()  # loading compiled code is start-up, like an import: not solve time
    start = time.perf_counter()
    problem, poses = graph.problem(loss=loss)
    config = LevenbergMarquardt(max_iterations=max_iterations, function_tolerance=function_tolerance,
                                initial_damping=POSE_GRAPH_DAMPING, progress=progress)
    result = solve(problem, config)
    solve_seconds = time.perf_counter() - start
    optimized = graph.with_poses(result[poses])
    per_graph = None
    if graph.batch_size is not None:
        per_graph = {"initial_chi2": graph.chi2_per_graph().tolist(), "final_chi2": optimized.chi2_per_graph().tolist(),
                     "iterations": result.iterations.tolist(), "converged": result.converged.tolist(),
                     "termination": list(result.termination)}
    return PgoResult(
        graph=optimized, initial_chi2=initial_chi2, final_chi2=optimized.chi2(), iterations=int(result.iterations.max()),
        converged=bool(result.converged.all()), termination=result.termination[0], init_seconds=init_seconds,
        solve_seconds=solve_seconds, history=result.history, per_graph=per_graph,
    )
