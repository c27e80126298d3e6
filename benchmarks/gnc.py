"""GNC against GTSAM's ``GncLMOptimizer`` on the outlier graph of ``tests/test_gnc.py`` (issue #17).

    OMP_NUM_THREADS=1 python benchmarks/gnc.py [--repeats 5] [--profile tls|gm]

The graph is ``tests/test_gnc.py``'s ``_outlier_graph()`` (60 SE(2) poses, 20 true loops, 24 false
ones), built by importing that module; both solvers use its settings (ours: its ``LM``, odometry
known inliers, cold start (default, GTSAM's rule) and ``warm_start=True``; GTSAM: inner LM relative tolerance
1e-10, absolute 1e-12, 100 iterations, odometry and the prior known inliers).  Ours is timed from the
problem's construction to the result, GTSAM from the optimizer's construction to ``optimize``'s
return; median of ``--repeats`` after one discarded run each.  Printed per loss: seconds, GNC rounds,
inner LM iterations (ours), the ratio ours / GTSAM (issue #17 asks for <= 1.0)."""

from __future__ import annotations

import argparse
import importlib.util
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _test_module():
    spec = importlib.util.spec_from_file_location("_test_gnc", ROOT / "tests" / "test_gnc.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def ours(t, graph, loss: str, warm_start: bool):
    from slam.optim.gnc import GNC, gnc_solve

    start = time.perf_counter()
    problem, _ = graph.problem()
    result = gnc_solve(problem, GNC(inner=t.LM, loss=loss, warm_start=warm_start),
                       known_inliers={"between": graph.odometry})
    return time.perf_counter() - start, result


def theirs(t, gtsam, graph, loss: str):
    factors, values = t._gtsam_graph(gtsam, graph)
    params = t._gtsam_gnc_params(gtsam, graph, loss)
    start = time.perf_counter()
    optimizer = gtsam.GncLMOptimizer(factors, values, params)
    solution = optimizer.optimize()
    seconds = time.perf_counter() - start
    weights = optimizer.getWeights()
    cost = sum(weights[k] * factors.at(k).error(solution) for k in range(factors.size()))
    return seconds, weights, cost


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--profile", choices=["tls", "gm"], help="cProfile one warm-start solve of this loss")
    args = parser.parse_args()
    import gtsam
    import numpy as np

    t = _test_module()
    graph, _ = t._outlier_graph()
    if args.profile:
        import cProfile
        import pstats

        ours(t, graph, args.profile, True)
        profiler = cProfile.Profile()
        profiler.enable()
        ours(t, graph, args.profile, True)
        profiler.disable()
        pstats.Stats(profiler).sort_stats("cumulative").print_stats(45)
        return
    rows = []
    for loss in ("tls", "gm"):
        theirs(t, gtsam, graph, loss)
        their_times, their_weights, their_cost = [], None, 0.0
        for _ in range(args.repeats):
            s, their_weights, their_cost = theirs(t, gtsam, graph, loss)
            their_times.append(s)
        g = statistics.median(their_times)
        for warm in (True, False):
            ours(t, graph, loss, warm)
            times = []
            for _ in range(args.repeats):
                s, result = ours(t, graph, loss, warm)
                times.append(s)
            o = statistics.median(times)
            same = bool(np.array_equal(result.inliers[0].numpy(), np.asarray(their_weights)[:-1] > 0.5))
            rows.append((loss, "warm" if warm else "cold", o, g, o / g, int(result.iterations[0]),
                         int(result.inner_iterations[0]), same,
                         abs(float(result.cost[0]) - their_cost) / their_cost))
    print(f"{'loss':4} {'start':5} {'ours s':>8} {'gtsam s':>8} {'ratio':>6} {'rounds':>6} {'inner':>6} "
          f"{'inliers=':>8} {'cost rel diff':>13}")
    for loss, start, o, g, ratio, rounds, inner, same, diff in rows:
        print(f"{loss:4} {start:5} {o:8.4f} {g:8.4f} {ratio:6.2f} {rounds:6d} {inner:6d} {str(same):>8} {diff:13.2e}")


if __name__ == "__main__":
    sys.exit(main())
