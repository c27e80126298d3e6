"""Pose-graph optimization: our LM against GTSAM's on the standard datasets, in one run.

    python benchmarks/pgo.py [--data-dir ../shared/data/pose_graph] [--repeats 3] [names ...]

For each graph: the same file initialization, first pose fixed, LM until the relative
cost decrease falls below 1e-6 (GTSAM: relativeErrorTol 1e-6), median wall time of
``--repeats`` solves (ours: ``slam.pgo.optimize``'s ``solve_seconds``, which includes
building the problem; GTSAM: constructing and running ``LevenbergMarquardtOptimizer``),
final chi2 of both (ours evaluated by our chi2, GTSAM's by ``2 * graph.error``) and the
ratio GTSAM time / our time (> 1: ours faster).  Our first solve of a structure also
pays one-off costs (symbolic analysis, torch kernel warm-up); the median hides them, the
``first`` column shows them.
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

from slam.io import read_g2o
from slam.pgo import optimize

DEFAULT_DIR = Path(__file__).resolve().parents[2] / "shared" / "data" / "pose_graph"
DEFAULT_NAMES = ["smallGrid3D", "intel", "manhattan", "parking-garage", "sphere2500", "city10000"]


def gtsam_solve(path: Path, is3d: bool, repeats: int) -> tuple[float, float, int]:
    import gtsam

    graph, initial = gtsam.readG2o(str(path), is3d)
    if is3d:
        graph.add(gtsam.PriorFactorPose3(0, initial.atPose3(0), gtsam.noiseModel.Constrained.All(6)))
    else:
        graph.add(gtsam.PriorFactorPose2(0, initial.atPose2(0), gtsam.noiseModel.Constrained.All(3)))
    params = gtsam.LevenbergMarquardtParams()
    params.setRelativeErrorTol(1e-6)
    params.setMaxIterations(100)
    times, result, iterations = [], None, 0
    for _ in range(repeats):
        start = time.perf_counter()
        optimizer = gtsam.LevenbergMarquardtOptimizer(graph, initial, params)
        result = optimizer.optimize()
        times.append(time.perf_counter() - start)
        iterations = optimizer.iterations()
    return statistics.median(times), 2.0 * graph.error(result), iterations


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("names", nargs="*", default=DEFAULT_NAMES)
    parser.add_argument("--data-dir", type=Path, default=DEFAULT_DIR)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    header = ["graph", "poses", "edges", "ours s", "first s", "ours it", "ours chi2", "gtsam s", "gtsam it",
              "gtsam chi2", "chi2 rel diff", "gtsam/ours"]
    rows = []
    for name in args.names:
        path = args.data_dir / f"{name}.g2o"
        graph = read_g2o(path)
        results = [optimize(graph) for _ in range(args.repeats)]
        ours = statistics.median(r.solve_seconds for r in results)
        result = results[-1]
        g_time, g_chi2, g_it = gtsam_solve(path, graph.group.__name__ == "SE3", args.repeats)
        rows.append([name, graph.num_poses, graph.num_edges, f"{ours:.3f}", f"{results[0].solve_seconds:.3f}",
                     result.iterations, f"{result.final_chi2:.8e}", f"{g_time:.3f}", g_it, f"{g_chi2:.8e}",
                     f"{(result.final_chi2 - g_chi2) / g_chi2:+.1e}", f"{g_time / ours:.2f}x"])
        print(" ".join(str(c) for c in rows[-1]), flush=True)
    widths = [max(len(str(c)) for c in col) for col in zip(header, *rows)]
    print()
    print("  ".join(h.rjust(w) for h, w in zip(header, widths)))
    for row in rows:
        print("  ".join(str(c).rjust(w) for c, w in zip(row, widths)))


if __name__ == "__main__":
    main()
