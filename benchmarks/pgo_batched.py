"""Batched pose graphs: B graphs of one structure solved in one call, against GTSAM one by one.

    python benchmarks/pgo_batched.py [--batch 64] [--poses 64] [--loops 20] [--group SE3] [--repeats 3]

The graphs come from ``slam.pgo.synthetic_batch`` (same edges, different noise; first pose fixed).
Both solvers start from the chained odometry and run LM until the relative cost decrease falls
below 1e-6.  GTSAM reads the very same graphs from g2o files written by ``slam.io.write_g2o`` (so
both see the same measurements and information) and solves them one after the other; its time
covers constructing and running ``LevenbergMarquardtOptimizer`` for each graph.  Ours is
``slam.pgo.optimize`` on the stacked batch (problem construction included).  Printed: milliseconds
per graph (median of ``--repeats``), the ratio GTSAM / ours (> 1: ours faster) and the largest
relative difference between the per-graph final chi2 values.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

from liegeo import SE2, SE3
from slam.io import write_g2o
from slam.pgo import optimize, synthetic_batch


def gtsam_solve_each(paths: list[Path], is3d: bool, repeats: int) -> tuple[float, list[float]]:
    import gtsam

    problems = []
    for path in paths:
        graph, initial = gtsam.readG2o(str(path), is3d)
        prior = (gtsam.PriorFactorPose3(0, initial.atPose3(0), gtsam.noiseModel.Constrained.All(6)) if is3d
                 else gtsam.PriorFactorPose2(0, initial.atPose2(0), gtsam.noiseModel.Constrained.All(3)))
        graph.add(prior)
        problems.append((graph, initial))
    params = gtsam.LevenbergMarquardtParams()
    params.setRelativeErrorTol(1e-6)
    params.setMaxIterations(100)
    times, chi2 = [], []
    for _ in range(repeats):
        start = time.perf_counter()
        results = [gtsam.LevenbergMarquardtOptimizer(g, v, params).optimize() for g, v in problems]
        times.append(time.perf_counter() - start)
        chi2 = [2.0 * g.error(r) for (g, _), r in zip(problems, results)]
    return statistics.median(times), chi2


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--poses", type=int, default=64)
    parser.add_argument("--loops", type=int, default=20)
    parser.add_argument("--group", choices=["SE2", "SE3"], default="SE3")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    group = SE3 if args.group == "SE3" else SE2
    batch, _ = synthetic_batch(args.batch, group, args.poses, args.loops)
    print(batch.describe())

    runs = [optimize(batch) for _ in range(args.repeats + 1)]  # the first pays symbolic analysis and warm-up
    ours = statistics.median(r.solve_seconds for r in runs[1:])
    result = runs[-1]

    with tempfile.TemporaryDirectory() as tmp:
        paths = []
        for b, graph in enumerate(batch.unstack()):
            paths.append(Path(tmp) / f"graph{b}.g2o")
            write_g2o(paths[-1], graph)
        g_time, g_chi2 = gtsam_solve_each(paths, group is SE3, args.repeats)

    ours_chi2 = result.per_graph["final_chi2"]
    worst = max(abs(a - b) / b for a, b in zip(ours_chi2, g_chi2))
    header = ["B", "poses", "edges", "ours ms/graph", "first ms/graph", "ours it (max)", "gtsam ms/graph",
              "gtsam/ours", "max chi2 rel diff"]
    row = [args.batch, batch.num_poses, batch.num_edges, f"{1e3 * ours / args.batch:.2f}",
           f"{1e3 * runs[0].solve_seconds / args.batch:.2f}", result.iterations,
           f"{1e3 * g_time / args.batch:.2f}", f"{g_time / ours:.2f}x", f"{worst:.1e}"]
    widths = [max(len(str(h)), len(str(c))) for h, c in zip(header, row)]
    print("  ".join(h.rjust(w) for h, w in zip(header, widths)))
    print("  ".join(str(c).rjust(w) for c, w in zip(row, widths)))


if __name__ == "__main__":
    main()
