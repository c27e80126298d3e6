"""Training speed (issue 15): forward and backward of a pose-graph solve per backward mode, with memory.

    python benchmarks/backward.py [--graphs parking-garage sphere2500] [--modes implicit implicit-cg implicit-differences implicit-gn truncated unroll]
                                  [--repeats 3] [--threads 1] [--truncated-iterations 3] [--no-memory]
                                  [--data-dir ../shared/data/pose_graph]

Every solve is the one ``slam.pgo.optimize`` runs: float64 on the CPU, the file's initial guess,
first pose fixed, ``LevenbergMarquardt(max_iterations=100, function_tolerance=1e-6,
initial_damping=POSE_GRAPH_DAMPING)``.  Every timed "solve" or "forward" is building the problem
(``PoseGraph.problem``, a few ms) plus ``slam.solve``, as a training step does both.

Per graph, first the no-grad solve (nothing requires grad): the median of ``--repeats`` solves after
one untimed ``Problem.prepare`` (loading the compiled kernels is start-up, as in ``optimize``), its
iterations, and "one no-grad LM iteration" = that median / iterations.  Then, for each backward mode
(``implicit``: ``Implicit()``, the default, exact Hessian, here factorized directly from the fused kernels'
exact blocks; ``implicit-cg``: ``Implicit(exact_solve="cg")``, the exact system by conjugate gradients on
double-backward products; ``implicit-differences``:
``Implicit(products="differences")``, the exact Hessian's products by central differences of the fused
gradients; ``implicit-gn``:
``Implicit(hessian="gauss_newton")``; ``truncated``: ``Truncated(--truncated-iterations)``;
``unroll``: ``Unroll()``) the measurement tensor (``graph.measurements.data``, the ``(E, 7)`` SE(3)
storage the ``Between`` cost holds) is a leaf that requires grad, and one training step is timed in
two parts: forward = build + ``slam.solve``; backward = ``loss.backward()`` of
``loss = Σ probe * solution.data`` (a fixed random probe, seed 0: a random vector-Jacobian
product through every component of the solution; the loss itself is not timed).  Each mode runs
once cold (its first call in this process; modes run in the order given, so process-wide one-offs
such as autograd's first use fall on the first mode of the first graph), then ``--repeats`` times
warm (medians).  The gradient's norm is printed, and its relative difference from ``implicit``'s
(where it ran): a broken backward shows as non-finite (the run stops) or far off.  Both leave out
each quaternion's radial component (along the unit quaternion itself): it differentiates the cost
off the group, which the modes extend differently (on parking-garage its norm is ~140 for the
implicit modes, ~68 for truncated and unroll), so it says nothing about the gradient on the group.
At this tolerance (1e-6) the modes' gradients differ by up to ~1e-3 (implicit-gn ~4e-3: it drops
the second-order terms); with tighter solves all but implicit-gn agree to ~1e-7 with each other and
with central differences (checked on parking-garage).

Peak memory (``--no-memory`` skips it): the peak resident memory of one step (for the no-grad row,
one solve) above the resident memory just before it, in a fresh process per graph and mode
(``multiprocessing`` spawn) where the graph is read and the kernels loaded but nothing solved yet,
so it counts all a step needs, its one-off first-call allocations included.  Sampled every
millisecond by a background thread with psutil where it is installed; without psutil, the growth
of ``ru_maxrss`` over the step (a lower bound: the process's earlier peak, e.g. while reading the
file, may lie above the resident memory before the step).

Columns: fwd/solve = forward / no-grad solve; bwd/LM it = backward / one no-grad LM iteration;
first/later = the cold (forward + backward) / the median of the warm ones.  Each warm step of a mode
alternates with a no-grad solve, and its two ratios are against the median of those (the speed of a
shared machine drifts by up to ~1.5x within minutes; measured side by side, both see the same phase);
the no-grad row's solve is the median of its own ``--repeats``.  The issue's targets
(ratios over them are marked ``!``; the backward target concerns the default ``Implicit()`` only):

* default implicit backward <= 3x one no-grad LM iteration,
* forward with grad <= 1.2x the no-grad solve,
* first call <= 2x later calls.

For scale: Theseus 0.2.3 took 42 s and 12.4 GB for its implicit backward on parking-garage on this
machine (not run here).
"""

from __future__ import annotations

import argparse
import dataclasses
import gc
import resource
import statistics
import threading
import time
from pathlib import Path

import torch

from _table import print_table

DEFAULT_DIR = Path(__file__).resolve().parents[2] / "shared" / "data" / "pose_graph"
DEFAULT_GRAPHS = ["parking-garage", "sphere2500"]
MODES = ["implicit", "implicit-cg", "implicit-differences", "implicit-gn", "truncated", "unroll"]
TARGETS = {"fwd": 1.2, "bwd": 3.0, "first": 2.0}


def _backward_mode(name: str, truncated_iterations: int):
    import slam

    return {"implicit": lambda: slam.Implicit(),
            "implicit-cg": lambda: slam.Implicit(exact_solve="cg"),
            "implicit-differences": lambda: slam.Implicit(products="differences", exact_solve="cg"),
            "implicit-gn": lambda: slam.Implicit(hessian="gauss_newton"),
            "truncated": lambda: slam.Truncated(truncated_iterations), "unroll": lambda: slam.Unroll()}[name]()


def _optimizer():
    import slam
    from slam.pgo.optimize import POSE_GRAPH_DAMPING

    return slam.LevenbergMarquardt(max_iterations=100, function_tolerance=1e-6, initial_damping=POSE_GRAPH_DAMPING)


def _load(path: Path):
    from slam.io import read_g2o
    from slam.optim.solve import prepare

    graph = read_g2o(path).to(dtype=torch.float64, device="cpu")
    problem, _ = graph.problem()
    prepare(problem)  # loading the compiled kernels is start-up, not solve time (as in slam.pgo.optimize)
    return graph


def _no_grad_solve(graph) -> tuple[float, int]:
    import slam

    start = time.perf_counter()
    problem, _ = graph.problem()
    result = slam.solve(problem, _optimizer())
    return time.perf_counter() - start, int(result.iterations.max())


class _Step:
    """One training step of a mode: the measurements as a leaf that requires grad, a fixed probe."""

    def __init__(self, graph, mode):
        self.data = graph.measurements.data.detach().clone().requires_grad_(True)
        self.graph = dataclasses.replace(graph, measurements=graph.group(self.data))
        self.mode = mode
        generator = torch.Generator().manual_seed(0)
        self.probe = torch.randn(graph.poses.data.shape, generator=generator, dtype=torch.float64)

    def __call__(self) -> tuple[float, float, int, torch.Tensor]:
        """Forward seconds, backward seconds, LM iterations and the gradient of the measurements."""
        import slam

        self.data.grad = None
        start = time.perf_counter()
        problem, poses = self.graph.problem()
        result = slam.solve(problem, _optimizer(), self.mode)
        forward = time.perf_counter() - start
        loss = (result[poses].data * self.probe).sum()
        start = time.perf_counter()
        loss.backward()
        backward = time.perf_counter() - start
        grad = self.data.grad
        if grad is None or not bool(torch.isfinite(grad).all()):
            raise RuntimeError(f"{type(self.mode).__name__}: the gradient of the measurements is "
                               f"{'missing' if grad is None else 'not finite'}")
        return forward, backward, int(result.iterations.max()), _on_group(self.graph.group, self.data.detach(), grad)


def _on_group(group, data: torch.Tensor, grad: torch.Tensor) -> torch.Tensor:
    """``grad`` without its component along each unit rotation part (``data[..., point_dim:]``, the
    quaternion or (cos, sin)): that radial part differentiates the cost off the group, where each
    path extends it its own way (it differs between modes), so it is left out of norms and comparisons."""
    grad = grad.clone()
    unit, g = data[..., group.point_dim:], grad[..., group.point_dim:]
    grad[..., group.point_dim:] = g - (g * unit).sum(-1, keepdim=True) * unit
    return grad


# ------------------------------------------------------------------------------ peak memory


def _memory_child(path: str, mode_name: str | None, threads: int, truncated_iterations: int) -> tuple[float, str]:
    """In a fresh process: MiB of peak resident memory above the resident memory before one step."""
    torch.set_num_threads(threads)
    graph = _load(Path(path))
    if mode_name is None:
        def work() -> object:
            return _no_grad_solve(graph)
    else:
        work = _Step(graph, _backward_mode(mode_name, truncated_iterations))
    gc.collect()
    try:
        import psutil
    except ImportError:
        psutil = None
    if psutil is None:
        before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux
        work()
        return (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) / 1024, "ru_maxrss growth"
    process = psutil.Process()
    before = process.memory_info().rss
    peak, done = [before], threading.Event()

    def sample() -> None:
        while not done.is_set():
            peak[0] = max(peak[0], process.memory_info().rss)
            done.wait(1e-3)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    try:
        work()
    finally:
        done.set()
        sampler.join()
    peak[0] = max(peak[0], process.memory_info().rss)
    return (peak[0] - before) / 2**20, "psutil RSS sampled every ms"


def _peak_memory(path: Path, mode_name: str | None, threads: int, truncated_iterations: int) -> tuple[float, str]:
    import multiprocessing

    pool = multiprocessing.get_context("spawn").Pool(1)
    try:
        return pool.apply(_memory_child, (str(path), mode_name, threads, truncated_iterations))
    finally:
        pool.close()
        pool.join()


# ------------------------------------------------------------------------------ the run


def _mark(ratio: float, target: float | None) -> str:
    return f"{ratio:.2f}x" + ("!" if target is not None and ratio > target else "")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--graphs", nargs="+", default=DEFAULT_GRAPHS)
    parser.add_argument("--modes", nargs="+", choices=MODES, default=MODES)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1, help="torch.set_num_threads")
    parser.add_argument("--truncated-iterations", type=int, default=3)
    parser.add_argument("--no-memory", action="store_true", help="skip the peak-memory runs (a process each)")
    parser.add_argument("--data-dir", type=Path, default=DEFAULT_DIR)
    args = parser.parse_args()
    if args.repeats < 1:
        parser.error("--repeats must be >= 1")
    torch.set_num_threads(args.threads)  # before any solve, and in every memory process
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, float64 CPU, "
          f"median of {args.repeats} warm calls", flush=True)

    header = ["graph", "mode", "it", "fwd s", "fwd/solve", "bwd s", "bwd/LM it", "first s", "first/later",
              "peak MiB", "grad norm", "grad vs implicit"]
    rows, memory_how = [], None
    for name in args.graphs:
        path = args.data_dir / f"{name}.g2o"
        graph = _load(path)
        print(graph.describe(), flush=True)
        first, iterations = _no_grad_solve(graph)
        runs = [_no_grad_solve(graph) for _ in range(args.repeats)]
        solve = statistics.median(s for s, _ in runs)
        lm_iteration = solve / iterations
        peak = "-"
        if not args.no_memory:
            mib, memory_how = _peak_memory(path, None, args.threads, args.truncated_iterations)
            peak = f"{mib:.0f}"
        rows.append([name, "no grad", iterations, f"{solve:.3f}", "1.00x", "-", "-", f"{first:.3f}",
                     _mark(first / solve, TARGETS["first"]), peak, "-", "-"])
        print("  ".join(str(c) for c in rows[-1]), f"(one LM iteration {1e3 * lm_iteration:.1f} ms)", flush=True)
        reference = None
        for mode_name in args.modes:
            step = _Step(graph, _backward_mode(mode_name, args.truncated_iterations))
            cold_fwd, cold_bwd, it, grad = step()
            warm, paired = [], []
            for _ in range(args.repeats):  # each warm step beside a no-grad solve: both see the same phase
                paired.append(_no_grad_solve(graph)[0])
                warm.append(step())
            solve_here = statistics.median(paired)
            fwd = statistics.median(w[0] for w in warm)
            bwd = statistics.median(w[1] for w in warm)
            later = statistics.median(w[0] + w[1] for w in warm)
            grad = warm[-1][3]
            if mode_name == "implicit":
                reference = grad
            diff = "-" if reference is None else f"{float((grad - reference).norm() / reference.norm()):.1e}"
            peak = "-"
            if not args.no_memory:
                mib, memory_how = _peak_memory(path, mode_name, args.threads, args.truncated_iterations)
                peak = f"{mib:.0f}"
            rows.append([name, mode_name, it, f"{fwd:.3f}", _mark(fwd / solve_here, TARGETS["fwd"]), f"{bwd:.3f}",
                         _mark(bwd / (solve_here / iterations), TARGETS["bwd"] if mode_name == "implicit" else None),
                         f"{cold_fwd + cold_bwd:.3f}", _mark((cold_fwd + cold_bwd) / later, TARGETS["first"]),
                         peak, f"{float(grad.norm()):.4e}", diff])
            print("  ".join(str(c) for c in rows[-1]), flush=True)
            del step
            gc.collect()

    print_table(header, rows)
    print(f"\ntargets: implicit bwd/LM it <= {TARGETS['bwd']:g}x, fwd/solve <= {TARGETS['fwd']:g}x, first/later <= "
          f"{TARGETS['first']:g}x ('!' marks a miss); Theseus 0.2.3: 42 s, 12.4 GB implicit backward on parking-garage")
    if memory_how:
        print(f"peak MiB: above the RSS before the step, fresh process per row ({memory_how})")


if __name__ == "__main__":
    main()
