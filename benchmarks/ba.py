"""Bundle adjustment on BAL problems: our LM (Schur complement) against GTSAM's and Ceres's, in one run.

    python benchmarks/ba.py [--data-dir ../shared/data/bundle_adjustment] [--max-iterations 50]
                            [--repeats 3] [--peer-repeats 1] [--no-gtsam] [--no-ceres] [names ...]

Every solver starts from the file's parameters, without a robust kernel, for at most
``--max-iterations`` LM iterations (relative cost decrease 1e-6 stops earlier), and every
solver's output is judged by one and the same evaluation: ``BALProblem.cost()`` (½ Σ ‖r‖², BAL
model) of the cameras and points it returns.  GTSAM: ``GeneralSFMFactorCal3Bundler`` factors
from ``SfmData.FromBalFile`` (no gauge priors: stiff ones stop its LM early), its result written
back with ``gtsam.writeBAL`` and read by our reader.  Ceres: ``benchmarks/_ceres_bal.py`` where
pyceres is installed (SPARSE_SCHUR, 2 threads).  Times: ours the median of ``--repeats``
(problem construction included), peers the median of ``--peer-repeats`` (their optimizer runs).
Ratios are peer time / our time (> 1: ours faster).

Our first solve in a process also loads the compiled kernels (~0.5 s); an untimed 1-iteration
solve does that before the timed ones, as the peers' code is compiled ahead of time.

``--dense-vs-schur`` adds a table for small problems: our LM with the Schur complement against
dense Cholesky and CHOLMOD on the full system.  ``--memory`` adds each solver's peak resident
memory during one solve, above the resident memory just before it (sampled every millisecond in
a fresh process per solver, ``multiprocessing`` spawn).
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
from pathlib import Path

from slam.ba import BALProblem, optimize, synthetic_bal
from slam.io import read_bal

from _table import print_table

DEFAULT_DIR = Path(__file__).resolve().parents[2] / "shared" / "data" / "bundle_adjustment"
DEFAULT_NAMES = ["problem-49-7776-pre", "problem-39-18060-pre"]


def gtsam_solve(path: Path, max_iterations: int, repeats: int) -> tuple[float, float, int]:
    """Median seconds, BAL cost of GTSAM's result, iterations."""
    import gtsam
    from gtsam.symbol_shorthand import P

    data = gtsam.SfmData.FromBalFile(str(path))
    graph = data.generalSfmFactors()
    initial = gtsam.Values()
    for i in range(data.numberCameras()):
        initial.insert(i, data.camera(i))
    for j in range(data.numberTracks()):
        initial.insert(P(j), data.track(j).point3())
    from _gtsam_timing import timed_levenberg_marquardt

    seconds, result, iterations = timed_levenberg_marquardt(graph, initial, max_iterations=max_iterations,
                                                             repeats=repeats)
    adjusted = gtsam.SfmData()
    for i in range(data.numberCameras()):
        adjusted.addCamera(result.atPinholeCameraCal3Bundler(i))
    for j in range(data.numberTracks()):
        track = data.track(j)
        track.p = result.atPoint3(P(j))
        adjusted.addTrack(track)
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "gtsam.txt"
        gtsam.writeBAL(str(out), adjusted)
        cost = read_bal(out).cost()
    return seconds, cost, iterations


def ceres_solve(problem: BALProblem, max_iterations: int, repeats: int) -> tuple[float, float, int] | None:
    try:
        from _ceres_bal import ceres_bal_solve
    except ImportError:
        return None
    runs = []
    for _ in range(repeats):
        try:
            runs.append(ceres_bal_solve(problem.cameras.numpy(), problem.points.numpy(), problem.camera_index.numpy(),
                                        problem.point_index.numpy(), problem.observations.numpy(),
                                        max_iterations=max_iterations))
        except ImportError:
            return None
    import torch

    last = runs[-1]
    judged = BALProblem(torch.from_numpy(last["cameras"]), torch.from_numpy(last["points"]), problem.camera_index,
                        problem.point_index, problem.observations).cost()
    return statistics.median(r["seconds"] for r in runs), judged, int(last["iterations"])


def _current_rss_mib() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def _peak_rss_child(which: str, path: str, max_iterations: int) -> tuple[float, float]:
    """Runs in a fresh process: the resident memory before one solve and its peak during the solve
    (sampled every millisecond), in MiB.  Ours loads its compiled kernels before (on a tiny problem)."""
    import sys
    import threading

    sys.path.insert(0, str(Path(__file__).resolve().parent))
    problem = read_bal(path)
    if which == "ours":
        optimize(synthetic_bal(2, 10)[0], max_iterations=1)  # load the compiled kernels first (start-up)
    before = _current_rss_mib()
    peak, done = [before], threading.Event()

    def sample() -> None:
        while not done.is_set():
            peak[0] = max(peak[0], _current_rss_mib())
            done.wait(1e-3)

    sampler = threading.Thread(target=sample)
    sampler.start()
    if which == "ours":
        optimize(problem, max_iterations=max_iterations)
    elif which == "gtsam":
        gtsam_solve(Path(path), max_iterations, 1)
    elif which == "ceres":
        ceres_solve(problem, max_iterations, 1)
    done.set()
    sampler.join()
    return before, max(peak[0], _current_rss_mib())


def peak_memory(path: Path, max_iterations: int, solvers: list[str]) -> dict[str, tuple[float, float]]:
    import multiprocessing

    context = multiprocessing.get_context("spawn")
    out = {}
    for which in solvers:
        pool = context.Pool(1)
        out[which] = pool.apply(_peak_rss_child, (which, str(path), max_iterations))
        pool.close()
        pool.join()
    return out


def _table(header: list[str], rows: list[list[object]]) -> None:
    print_table(header, rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("names", nargs="*", default=DEFAULT_NAMES)
    parser.add_argument("--data-dir", type=Path, default=DEFAULT_DIR)
    parser.add_argument("--max-iterations", type=int, default=50)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--peer-repeats", type=int, default=1)
    parser.add_argument("--no-gtsam", action="store_true")
    parser.add_argument("--no-ceres", action="store_true")
    parser.add_argument("--dense-vs-schur", action="store_true")
    parser.add_argument("--memory", action="store_true", help="peak RSS of each solver in a fresh process")
    args = parser.parse_args()

    rows = []
    for name in args.names:
        path = args.data_dir / f"{name}.txt"
        problem = read_bal(path)
        print(problem.describe(), flush=True)
        optimize(problem, max_iterations=1)  # load the compiled kernels (untimed)
        runs = [optimize(problem, max_iterations=args.max_iterations) for _ in range(args.repeats)]
        ours = statistics.median(r.solve_seconds for r in runs)
        our_cost = runs[-1].problem.cost()
        row: list[object] = [name, f"{problem.cost():.6e}", f"{ours:.2f}", runs[-1].iterations, f"{our_cost:.6e}"]
        for label, solve in (("gtsam", None if args.no_gtsam else lambda: gtsam_solve(path, args.max_iterations,
                                                                                       args.peer_repeats)),
                             ("ceres", None if args.no_ceres else lambda: ceres_solve(problem, args.max_iterations,
                                                                                      args.peer_repeats))):
            peer = solve() if solve else None
            if peer is None:
                row += ["-"] * 5
                continue
            seconds, cost, iterations = peer
            row += [f"{seconds:.2f}", iterations, f"{cost:.6e}", f"{(our_cost - cost) / cost:+.1e}",
                    f"{seconds / ours:.2f}x"]
            print(f"  {label}: {seconds:.2f} s, {iterations} iterations, BAL cost {cost:.6e}", flush=True)
        rows.append(row)
    print()
    _table(["problem", "initial cost", "ours s", "ours it", "ours cost", "gtsam s", "gtsam it", "gtsam cost",
            "ours vs gtsam", "gtsam/ours", "ceres s", "ceres it", "ceres cost", "ours vs ceres", "ceres/ours"], rows)

    if args.memory:
        print()
        solvers = ["ours"] + ([] if args.no_gtsam else ["gtsam"]) + ([] if args.no_ceres else ["ceres"])
        rows = []
        for name in args.names:
            peaks = peak_memory(args.data_dir / f"{name}.txt", args.max_iterations, solvers)
            rows.append([name, *(f"{peaks[s][1] - peaks[s][0]:.0f}" for s in solvers)])
        _table(["problem", *(f"{s}: peak MiB above the RSS before the solve" for s in solvers)], rows)

    if args.dense_vs_schur:
        print()
        small = [("dubrovnik-3-7-pre", read_bal(args.data_dir / "dubrovnik-3-7-pre.txt")),
                 ("synthetic 10 cameras x 300 points", synthetic_bal(10, 300, seed=0)[0])]
        rows = []
        for label, problem in small:
            timings = {}
            for solver in ("schur", "dense", "cholmod"):
                runs = [optimize(problem, max_iterations=args.max_iterations, linear_solver=solver)
                        for _ in range(args.repeats)]
                timings[solver] = (statistics.median(r.solve_seconds for r in runs), runs[-1].final_cost,
                                   runs[-1].iterations)
            rows.append([label, *(f"{timings[s][0]:.3f} ({timings[s][2]} it, {timings[s][1]:.4e})"
                                  for s in ("schur", "dense", "cholmod")),
                         f"{timings['dense'][0] / timings['schur'][0]:.1f}x"])
        _table(["problem", "schur s (it, cost)", "dense s", "cholmod s", "dense/schur"], rows)


if __name__ == "__main__":
    main()
