"""Pose-graph latency: small synthetic graphs per LM iteration, and an 800-pose 2D graph from a poor start.

    python benchmarks/pgo_latency.py [--repeats 5] [names ...]

The graphs (``slam.pgo.synthetic_graph``, structure and noise seed 0, first pose fixed, the initial
guess the chained noisy odometry):

* ``se3-16``, ``se3-100``, ``se3-400``: SE(3) with 16, 100 and 400 poses and ``synthetic_graph``'s
  defaults otherwise (20 loop closures, noise 0.05 per translation axis and 0.02 rad per rotation
  axis); the small-graph latency of issue #3.
* ``synthetic2d-800``: SE(2), 800 poses, 20 loop closures, noise 0.15 and 0.15 rad per step.  The
  odometry chained with that rotation noise drifts far (the initial chi2 is ~4e6 against a final
  ~54), so LM needs many iterations: 16 ours, 20 GTSAM (at 0.05 / 0.02 both need 5; at 0.2 / 0.2 or
  with other seeds the two may stop in different local minima, which is no timing comparison).

For each graph, both solvers in one run, the same start, LM until the relative cost decrease falls
below 1e-6 (GTSAM: relativeErrorTol 1e-6), at most 100 iterations.  GTSAM reads the very graph from a
g2o file written by ``slam.io.write_g2o`` (as ``pgo_batched.py`` does) and is timed as in ``pgo.py``
(constructing and running ``LevenbergMarquardtOptimizer``, median of ``--repeats``).  Ours is
``slam.pgo.optimize``'s ``solve_seconds`` (problem construction included), median of ``--repeats``
after one discarded solve that pays the one-off costs (symbolic analysis, kernel loading; shown as
``first``); the two solvers' repeats alternate (``pgo.alternating``).  Printed: milliseconds per solve and per iteration (median solve time / iterations) of
both, iterations, final chi2 (ours by our chi2, GTSAM's by ``2 * graph.error``), and the ratios GTSAM /
ours per solve and per iteration (> 1: ours faster).
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
from pathlib import Path

from liegeo import SE2, SE3
from slam.io import write_g2o
from slam.pgo import optimize, synthetic_graph

from _table import print_table
from pgo import alternating, gtsam_runner

GRAPHS = {
    "se3-16": dict(group=SE3, num_poses=16),
    "se3-100": dict(group=SE3, num_poses=100),
    "se3-400": dict(group=SE3, num_poses=400),
    "synthetic2d-800": dict(group=SE2, num_poses=800, num_loop_closures=20, translation_noise=0.15,
                            rotation_noise=0.15),
}
DEFAULT_NAMES = list(GRAPHS)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("names", nargs="*", default=DEFAULT_NAMES, help=f"graphs to run (default: {' '.join(GRAPHS)})")
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    unknown = [name for name in args.names if name not in GRAPHS]
    if unknown:
        parser.error(f"unknown graph(s) {', '.join(unknown)} (known: {', '.join(GRAPHS)})")
    header = ["graph", "poses", "edges", "ours ms", "first ms", "ours it", "ours ms/it", "ours chi2", "gtsam ms",
              "gtsam it", "gtsam ms/it", "gtsam chi2", "chi2 rel diff", "gtsam/ours", "gtsam/ours per it"]
    rows = []
    for name in args.names:
        graph, _ = synthetic_graph(**GRAPHS[name])
        first = optimize(graph)  # pays the symbolic analysis and warm-up
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / f"{name}.g2o"
            write_g2o(path, graph)
            runs, gtsam_runs = alternating(lambda: optimize(graph), gtsam_runner(path, graph.group is SE3), args.repeats)
        runs = [first] + runs
        ours = statistics.median(r.solve_seconds for r in runs[1:])
        result = runs[-1]
        g_time = statistics.median(run[0] for run in gtsam_runs)
        _, g_chi2, g_it = gtsam_runs[-1]
        ours_per_it, g_per_it = ours / result.iterations, g_time / g_it
        rows.append([name, graph.num_poses, graph.num_edges, f"{1e3 * ours:.2f}", f"{1e3 * runs[0].solve_seconds:.2f}",
                     result.iterations, f"{1e3 * ours_per_it:.3f}", f"{result.final_chi2:.8e}", f"{1e3 * g_time:.2f}",
                     g_it, f"{1e3 * g_per_it:.3f}", f"{g_chi2:.8e}", f"{(result.final_chi2 - g_chi2) / g_chi2:+.1e}",
                     f"{g_time / ours:.2f}x", f"{g_per_it / ours_per_it:.2f}x"])
        print(" ".join(str(c) for c in rows[-1]), flush=True)
    print_table(header, rows)


if __name__ == "__main__":
    main()
