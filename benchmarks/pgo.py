"""Pose-graph optimization: our LM against GTSAM's on the standard datasets, in one run.

    python benchmarks/pgo.py [--data-dir ../shared/data/pose_graph] [--repeats 3] [names ...]

For each graph: the same file initialization, first pose fixed, LM until the relative
cost decrease falls below 1e-6 (GTSAM: relativeErrorTol 1e-6), median wall time of
``--repeats`` solves (ours: ``slam.pgo.optimize``'s ``solve_seconds``, which includes
building the problem; GTSAM: constructing and running ``LevenbergMarquardtOptimizer``),
final chi2 of both (ours evaluated by our chi2, GTSAM's by ``2 * graph.error``) and the
ratio GTSAM time / our time (> 1: ours faster).  Our solves and GTSAM's alternate (``alternating``), so
that the drifts of a shared machine's speed fall on both.  Our first solve of a structure also
pays one-off costs (symbolic analysis, loading the compiled kernels); the median hides them,
the ``first`` column shows them.

Theseus (``theseus-ai``, optional: ``pip install --no-build-isolation theseus-ai==0.2.3``)
runs where it imports, unless ``--no-theseus``: the same graph as ``th.Between`` costs with the
sqrt-information as a full cost weight, pose 0 held by a stiff prior, LM with
``CholmodSparseSolver`` on the CPU (its only sparse CPU solver; it allows no adaptive damping,
so the damping stays at ``--theseus-damping``), relative error tolerance 1e-6, at most
``--theseus-max-iterations`` iterations, one timed run (``TheseusLayer.forward``; building the
objective is not timed).  Its chi2 is evaluated by our ``chi2`` on the poses it returns.

Synthetic graphs (small-graph ms per iteration, an 800-pose 2D graph from a poor start):
``benchmarks/pgo_latency.py``; batches of graphs: ``benchmarks/pgo_batched.py``.
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

from slam.io import read_g2o
from slam.pgo import optimize

from _table import print_table

DEFAULT_DIR = Path(__file__).resolve().parents[2] / "shared" / "data" / "pose_graph"
DEFAULT_NAMES = ["smallGrid3D", "intel", "manhattan", "parking-garage", "sphere2500", "city10000"]


def gtsam_problem(path: Path, is3d: bool):  # type: ignore[no-untyped-def]
    """GTSAM's ``(graph, initial)`` read from ``path``, the first pose held by a constrained prior."""
    import gtsam

    graph, initial = gtsam.readG2o(str(path), is3d)
    if is3d:
        graph.add(gtsam.PriorFactorPose3(0, initial.atPose3(0), gtsam.noiseModel.Constrained.All(6)))
    else:
        graph.add(gtsam.PriorFactorPose2(0, initial.atPose2(0), gtsam.noiseModel.Constrained.All(3)))
    return graph, initial


def gtsam_runner(path: Path, is3d: bool):  # type: ignore[no-untyped-def]
    """GTSAM's problem read from ``path`` (``gtsam_problem``) and a function that runs one timed LM solve
    of it: ``() -> (seconds, chi2, iterations)``."""
    graph, initial = gtsam_problem(path, is3d)
    from _gtsam_timing import timed_levenberg_marquardt

    def run() -> tuple[float, float, int]:
        seconds, result, iterations = timed_levenberg_marquardt(graph, initial, max_iterations=100, repeats=1)
        return seconds, 2.0 * graph.error(result), iterations

    return run


def alternating(ours, theirs, repeats: int):  # type: ignore[no-untyped-def]
    """``repeats`` calls of each, ours and theirs in turn (a phase of a shared machine, whose speed drifts
    by up to ~1.5x within minutes, then slows both alike): ``(our results, their results)``."""
    mine, other = [], []
    for _ in range(repeats):
        mine.append(ours())
        other.append(theirs())
    return mine, other


def theseus_solve(graph, max_iterations: int, damping: float) -> tuple[float, float, int] | None:
    """Seconds, chi2 (ours, of its poses) and iterations of Theseus's LM, or None without theseus."""
    try:
        import theseus as th
    except ImportError:
        return None
    import torch

    from liegeo import SE3

    if graph.group is not SE3:
        return None  # th.SE2 graphs would need their own conversion; the 3D sets are the slow ones

    class SqrtInformationWeight(th.CostWeight):
        """A full ``m x m`` weight ``W e`` (Theseus has none for generic costs)."""

        def __init__(self, matrix: torch.Tensor, name: str | None = None):
            super().__init__(name=name)
            self.matrix = th.Variable(matrix, name=f"{name}_matrix" if name else None)
            self.register_aux_vars(["matrix"])

        def is_zero(self) -> torch.Tensor:
            return torch.zeros(self.matrix.shape[0], dtype=torch.bool)

        def weight_error(self, error: torch.Tensor) -> torch.Tensor:
            return (self.matrix.tensor @ error.unsqueeze(2)).squeeze(2)

        def weight_jacobians_and_error(self, jacobians, error):
            return [self.matrix.tensor @ j for j in jacobians], self.weight_error(error)

        def _copy_impl(self, new_name=None):
            return SqrtInformationWeight(self.matrix.tensor.clone(), name=new_name)

    matrices = graph.poses.matrix()[:, :3, :].unsqueeze(1)  # (N, 1, 3, 4)
    measured = graph.measurements.matrix()[:, :3, :].unsqueeze(1)
    sqrt_info = torch.linalg.cholesky(graph.information).mT.unsqueeze(1)
    poses = [th.SE3(tensor=m.clone(), name=f"x{k}") for k, m in enumerate(matrices)]
    objective = th.Objective(dtype=torch.float64)
    for e, (a, b) in enumerate(zip(graph.i.tolist(), graph.j.tolist())):
        objective.add(th.Between(poses[a], poses[b], th.SE3(tensor=measured[e].clone(), name=f"z{e}"),
                                 SqrtInformationWeight(sqrt_info[e].clone(), name=f"w{e}"), name=f"edge{e}"))
    anchor = int(graph.fixed[0])
    objective.add(th.Difference(poses[anchor], th.SE3(tensor=matrices[anchor].clone(), name="anchor"),
                                th.ScaleCostWeight(torch.tensor(1e6, dtype=torch.float64)), name="gauge"))
    optimizer = th.LevenbergMarquardt(objective, linear_solver_cls=th.CholmodSparseSolver,
                                      max_iterations=max_iterations, abs_err_tolerance=1e-12,
                                      rel_err_tolerance=1e-6)
    layer = th.TheseusLayer(optimizer)
    inputs = {f"x{k}": m.clone() for k, m in enumerate(matrices)}
    start = time.perf_counter()
    with torch.no_grad():
        solution, info = layer.forward(inputs, optimizer_kwargs={"damping": damping})
    seconds = time.perf_counter() - start
    solved = torch.cat([solution[f"x{k}"] for k in range(graph.num_poses)])
    bottom = torch.tensor([0.0, 0.0, 0.0, 1.0], dtype=torch.float64).expand(graph.num_poses, 1, 4)
    ours = SE3.from_matrix(torch.cat([solved, bottom], dim=1), project=True)
    iterations = int(info.converged_iter[0]) if int(info.converged_iter[0]) >= 0 else max_iterations
    return seconds, graph.chi2(ours), iterations


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("names", nargs="*", default=DEFAULT_NAMES)
    parser.add_argument("--data-dir", type=Path, default=DEFAULT_DIR)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--no-theseus", action="store_true", help="skip Theseus even where it is installed")
    parser.add_argument("--theseus-max-iterations", type=int, default=100)
    parser.add_argument("--theseus-damping", type=float, default=1e-3, help="Theseus's default")
    args = parser.parse_args()
    header = ["graph", "poses", "edges", "ours s", "first s", "ours it", "ours chi2", "gtsam s", "gtsam it",
              "gtsam chi2", "chi2 rel diff", "gtsam/ours", "theseus s", "theseus it", "theseus chi2",
              "theseus/ours"]
    rows = []
    for name in args.names:
        path = args.data_dir / f"{name}.g2o"
        graph = read_g2o(path)
        results, gtsam_runs = alternating(lambda: optimize(graph), gtsam_runner(path, graph.group.__name__ == "SE3"),
                                          args.repeats)
        ours = statistics.median(r.solve_seconds for r in results)
        result = results[-1]
        g_time = statistics.median(run[0] for run in gtsam_runs)
        _, g_chi2, g_it = gtsam_runs[-1]
        theseus = None if args.no_theseus else theseus_solve(graph, args.theseus_max_iterations, args.theseus_damping)
        t_cols = (["-"] * 4 if theseus is None else
                  [f"{theseus[0]:.2f}", theseus[2], f"{theseus[1]:.8e}", f"{theseus[0] / ours:.0f}x"])
        rows.append([name, graph.num_poses, graph.num_edges, f"{ours:.3f}", f"{results[0].solve_seconds:.3f}",
                     result.iterations, f"{result.final_chi2:.8e}", f"{g_time:.3f}", g_it, f"{g_chi2:.8e}",
                     f"{(result.final_chi2 - g_chi2) / g_chi2:+.1e}", f"{g_time / ours:.2f}x", *t_cols])
        print(" ".join(str(c) for c in rows[-1]), flush=True)
    print_table(header, rows)


if __name__ == "__main__":
    main()
