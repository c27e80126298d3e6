"""The slam core measured: linear solvers, backward-mode memory, and whole solves against GTSAM and PyPose.

    python benchmarks/solver.py [--sizes 100 400 1600 6400] [--repeats 5] [--skip-peers]

Three tables, all on synthetic SE(3) pose graphs (a k x k grid of poses on a wavy
surface, odometry along rows, loop closures to the row below: the sparsity of
sphere2500-like graphs), float64, CPU:

1. Linear solvers: median seconds to factorize and solve one LM system ``H + λD``
   (the same matrix for every solver) with our dense Cholesky, CHOLMOD
   (symbolic analysis reused, as in a solve), PCG, and, as alternatives for the
   sparse factorization, cholespy and scipy's SuperLU; and one linearization.
2. Backward memory: bytes autograd keeps for the backward pass (counted with
   ``saved_tensors_hooks``) and backward seconds, for Unroll, Truncated(5) and
   Implicit, as the number of LM iterations grows.
3. Whole solves, same graph and start, a fixed number of LM iterations:
   ours vs GTSAM's LevenbergMarquardtOptimizer (pip ``gtsam``) and PyPose's
   ``optim.LM`` (dense); seconds per iteration, ratios, and each result's cost
   evaluated by our one cost function.
"""

from __future__ import annotations

import argparse
import math
import statistics
import time
from typing import Callable

import numpy as np
import torch

import slam
from liegeo import SE3
from slam.costs import Between
from slam.linear import ConjugateGradient, DenseCholesky, SparseCholesky

from _table import print_table

DTYPE = torch.float64


def grid_graph(k: int, noise: float = 0.02, init_noise: float = 0.05, seed: int = 0):
    """Ground truth, noisy start, edge indices and measurements for a k x k grid of SE(3) poses."""
    g = torch.Generator().manual_seed(seed)
    rows, cols = torch.meshgrid(torch.arange(k), torch.arange(k), indexing="ij")
    x, y = rows.flatten().to(DTYPE), cols.flatten().to(DTYPE)
    xi = torch.stack([x, y, 0.3 * torch.sin(0.5 * x) * torch.cos(0.5 * y),
                      0.1 * torch.sin(0.3 * y), 0.1 * torch.cos(0.3 * x), 0.2 * x], dim=-1)
    truth = SE3.exp(xi)
    index = torch.arange(k * k).view(k, k)
    i = torch.cat([index[:, :-1].flatten(), index[:-1, :].flatten()])
    j = torch.cat([index[:, 1:].flatten(), index[1:, :].flatten()])
    z = truth[i].between(truth[j]).retract(noise * torch.randn(len(i), 6, generator=g, dtype=DTYPE))
    init = truth.retract(init_noise * torch.randn(k * k, 6, generator=g, dtype=DTYPE))
    return truth, init, i, j, z


def make_problem(init: SE3, i, j, z) -> tuple[slam.Problem, slam.Variable]:
    poses = slam.Variable(init, fixed=[0])
    return slam.Problem([Between(poses[i], poses[j], measurement=z)]), poses


def median_seconds(fn: Callable[[], object], repeats: int) -> float:
    fn()  # warm-up (and any one-off analysis)
    samples = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        samples.append(time.perf_counter() - start)
    return statistics.median(samples)


def table(title: str, header: list[str], rows: list[list[str]]) -> None:
    print_table(header, rows, title=title)


def fmt(seconds: float | None) -> str:
    return "-" if seconds is None or math.isnan(seconds) else f"{seconds * 1e3:.2f}"


# ------------------------------------------------------------------------------ 1. linear solvers


def linear_solvers(sizes: list[int], repeats: int) -> None:
    rows = []
    for n in sizes:
        k = int(round(math.sqrt(n)))
        _, init, i, j, z = grid_graph(k)
        problem, _ = make_problem(init, i, j, z)
        values = problem.initial_values()
        structure = problem.structure
        linearize = median_seconds(lambda: problem.linearize(values), repeats)
        h, g, _ = problem.linearize(values)
        h = h.index_add(1, structure.pattern.diagonal, 1e-4 * h[:, structure.pattern.diagonal])
        times: dict[str, float | None] = {}
        solvers = {"dense": DenseCholesky(), "cholmod": SparseCholesky(), "pcg": ConjugateGradient()}
        for name, solver in solvers.items():
            if name == "dense" and structure.n > 12_000:
                times[name] = None
                continue
            times[name] = median_seconds(lambda s=solver: s.factorize(structure, h).solve(-g), repeats)
        times["cholespy"], times["splu"] = _alternative_sparse(structure, h, g, repeats)
        best = times["cholmod"]
        rows.append([str(k * k), str(structure.n), str(structure.pattern.nnz), fmt(linearize)]
                    + [fmt(times[name]) for name in ("dense", "cholmod", "pcg", "cholespy", "splu")]
                    + [f"{times['dense'] / best:.1f}x" if times["dense"] else "-",
                       f"{times['cholespy'] / best:.1f}x" if times["cholespy"] else "-"])
    table("1. one LM system: factorize + solve, ms (median); linearize = JᵀJ, Jᵀr of all edges",
          ["poses", "dims", "nnz(L)", "linearize", "dense", "cholmod", "pcg", "cholespy", "splu",
           "dense/cholmod", "cholespy/cholmod"], rows)


def _alternative_sparse(structure, h: torch.Tensor, g: torch.Tensor, repeats: int):
    """cholespy (its own ordering and analysis each time it is built) and SuperLU, same matrix."""
    import scipy.sparse as sp
    import scipy.sparse.linalg as spla

    pattern = structure.pattern
    rows, cols = pattern.rows.numpy(), pattern.cols.numpy()
    values = h[0].numpy()
    lower = sp.csc_matrix((values, (rows, cols)), shape=(structure.n, structure.n))
    full = (lower + sp.tril(lower, -1).T).tocsc()
    rhs = -g[0].numpy()
    splu = median_seconds(lambda: spla.splu(full, permc_spec="MMD_AT_PLUS_A").solve(rhs), repeats)
    try:
        from cholespy import CholeskySolverD, MatrixType
    except ImportError:
        return None, splu
    coo = full.tocoo()
    r, c, v = (torch.from_numpy(a.astype(t)) for a, t in ((coo.row, np.int32), (coo.col, np.int32), (coo.data, np.float64)))
    b = torch.from_numpy(rhs).unsqueeze(-1).contiguous()

    def run():
        solver = CholeskySolverD(structure.n, r, c, v, MatrixType.COO)
        x = torch.zeros_like(b)
        solver.solve(b, x)
        return x

    return median_seconds(run, repeats), splu


# ------------------------------------------------------------------------------ 2. backward memory


def saved_bytes(fn: Callable[[], torch.Tensor]) -> tuple[int, float, float]:
    """Bytes saved for backward while running ``fn``, then forward and backward seconds."""
    total = 0

    def pack(t: torch.Tensor) -> torch.Tensor:
        nonlocal total
        total += t.numel() * t.element_size()
        return t

    start = time.perf_counter()
    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        out = fn()
    forward = time.perf_counter() - start
    start = time.perf_counter()
    out.backward()
    return total, forward, time.perf_counter() - start


def backward_memory(repeats: int) -> None:
    _, init, i, j, z = grid_graph(10)
    target = torch.randn(len(init), 6, generator=torch.Generator().manual_seed(1), dtype=DTYPE)
    rows = []
    for iterations in (5, 10, 20, 40):
        optimizer = slam.LevenbergMarquardt(max_iterations=iterations, function_tolerance=0.0,
                                            parameter_tolerance=0.0, gradient_tolerance=0.0, linear_solver="cholmod")
        row = [str(iterations)]
        for mode in (slam.Unroll(), slam.Truncated(5), slam.Implicit()):
            def run(mode=mode):
                measurement = SE3(z.data.clone().requires_grad_(True))
                problem, poses = make_problem(init, i, j, measurement)
                return (slam.solve(problem, optimizer, mode)[poses].log() * target).sum()

            run()  # warm-up: first-call costs (CHOLMOD analysis, torch kernels) are not the mode's
            results = [saved_bytes(run) for _ in range(max(1, repeats // 2))]
            nbytes = results[0][0]
            row += [f"{nbytes / 2**20:.1f}", fmt(statistics.median(r[2] for r in results))]
        rows.append(row)
    table("2. backward through a 100-pose SE(3) grid: MiB saved for backward, backward ms",
          ["LM iterations", "unroll MiB", "unroll ms", "trunc(5) MiB", "trunc(5) ms", "implicit MiB", "implicit ms"],
          rows)


# ------------------------------------------------------------------------------ 3. against peers


def peers(sizes: list[int], iterations: int, repeats: int, skip: bool) -> None:
    rows = []
    for n in sizes:
        k = int(round(math.sqrt(n)))
        _, init, i, j, z = grid_graph(k, init_noise=0.1)
        optimizer = slam.LevenbergMarquardt(max_iterations=iterations, function_tolerance=0.0,
                                            parameter_tolerance=0.0, gradient_tolerance=0.0)

        def ours():
            problem, poses = make_problem(init, i, j, z)
            return slam.solve(problem, optimizer)[poses]

        def cost_of(poses: SE3) -> float:
            problem, _ = make_problem(poses, i, j, z)
            return float(problem.cost(problem.initial_values())[0])

        t_ours = median_seconds(ours, repeats)
        c_ours = cost_of(ours())
        row = [str(k * k), str(len(i)), fmt(t_ours / iterations), f"{c_ours:.6e}"]
        if skip:
            rows.append(row + ["-"] * 6)
            continue
        t_gtsam, c_gtsam = _gtsam(init, i, j, z, iterations, repeats, cost_of)
        t_pp, c_pp = _pypose(init, i, j, z, iterations, repeats, cost_of) if k * k <= 100 else (None, None)
        row += [fmt(t_gtsam / iterations), f"{c_gtsam:.6e}", f"{t_gtsam / t_ours:.2f}x",
                fmt(t_pp / iterations) if t_pp else "-", f"{c_pp:.6e}" if c_pp else "-",
                f"{t_pp / t_ours:.2f}x" if t_pp else "-"]
        rows.append(row)
    table(f"3. {iterations} LM iterations, ms per iteration (median of {repeats}); cost ½Σ‖r‖² by our evaluation; "
          "ratio = peer time / ours (> 1: ours faster)",
          ["poses", "edges", "ours ms/it", "ours cost", "gtsam ms/it", "gtsam cost", "gtsam/ours",
           "pypose ms/it", "pypose cost", "pypose/ours"], rows)


def _gtsam(init, i, j, z, iterations, repeats, cost_of):
    import gtsam

    # GTSAM's Pose3 tangent is (rotation, translation); unit information is the same in both orders.
    noise = gtsam.noiseModel.Unit.Create(6)
    graph = gtsam.NonlinearFactorGraph()
    matrices = z.matrix().numpy()
    for e, (a, b) in enumerate(zip(i.tolist(), j.tolist())):
        graph.add(gtsam.BetweenFactorPose3(a, b, gtsam.Pose3(matrices[e]), noise))
    graph.add(gtsam.NonlinearEqualityPose3(0, gtsam.Pose3(init.matrix()[0].numpy())))
    initial = gtsam.Values()
    for n, m in enumerate(init.matrix().numpy()):
        initial.insert(n, gtsam.Pose3(m))
    params = gtsam.LevenbergMarquardtParams()
    params.setMaxIterations(iterations)
    params.setRelativeErrorTol(0.0)
    params.setAbsoluteErrorTol(0.0)
    params.setLinearSolverType("MULTIFRONTAL_CHOLESKY")

    def run():
        return gtsam.LevenbergMarquardtOptimizer(graph, initial, params).optimize()

    seconds = median_seconds(run, repeats)
    result = run()
    poses = SE3.from_matrix(torch.from_numpy(np.stack([result.atPose3(n).matrix() for n in range(len(init))])))
    return seconds, cost_of(poses)


def _pypose(init, i, j, z, iterations, repeats, cost_of):
    import pypose as pp
    from pypose.optim import LM
    from pypose.optim.strategy import TrustRegion

    class Graph(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.poses = pp.Parameter(pp.SE3(init.data.clone()))

        def forward(self, measurement):
            error = (measurement.Inv() @ self.poses[i].Inv() @ self.poses[j]).Log().tensor()
            anchor = 1e4 * (pp.SE3(init.data[:1]).Inv() @ self.poses[:1]).Log().tensor()
            return torch.cat([error, anchor], dim=0)

    measurement = pp.SE3(z.data)

    def run():
        graph = Graph()
        optimizer = LM(graph, strategy=TrustRegion())
        for _ in range(iterations):
            optimizer.step(measurement)
        return graph

    seconds = median_seconds(run, max(1, repeats // 2))
    graph = run()
    return seconds, cost_of(SE3(graph.poses.detach().tensor()))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", type=int, nargs="+", default=[16, 100, 400, 1600, 6400], help="poses (squares)")
    parser.add_argument("--iterations", type=int, default=10, help="LM iterations in table 3")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--skip-peers", action="store_true")
    args = parser.parse_args()
    torch.set_grad_enabled(True)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads")
    linear_solvers(args.sizes, args.repeats)
    backward_memory(args.repeats)
    peers(args.sizes, args.iterations, args.repeats, args.skip_peers)


if __name__ == "__main__":
    main()
