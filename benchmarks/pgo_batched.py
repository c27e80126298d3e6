"""Batched pose graphs: B graphs of one structure solved in one call, against GTSAM one by one.

    python benchmarks/pgo_batched.py [--batch 64 [256 ...]] [--poses 64] [--loops 20] [--group SE3] [--repeats 3]
    python benchmarks/pgo_batched.py --preset theseus-cube [--batch 16] [--repeats 3]

The graphs come from ``slam.pgo.synthetic_batch`` (same edges, different noise; first pose fixed).
``--preset theseus-cube`` takes instead B = 16 SE(3) graphs of 2,048 poses on a cube-like grid, the
shape of the Theseus paper's batched benchmark (``cube_batch`` below: a lawn-mower walk over a
13 x 13 x 13 grid of unit spacing cut at 2,048 poses, each pose with a random rotation, odometry
edges along the walk and ``--loop-ratio`` x poses loop closures drawn among the grid neighbours that
are not consecutive on the walk; noise 0.05 per translation axis and 0.02 rad per rotation axis, as
``synthetic_graph``'s; its LM takes 5-6 iterations, as GTSAM's).  ``--batch`` may list several
sizes (``--batch 64 256`` or ``--batch 64 --batch 256``): one row each.
Both solvers start from the chained odometry and run LM until the relative cost decrease falls
below 1e-6.  GTSAM reads the very same graphs from g2o files written by ``slam.io.write_g2o`` (so
both see the same measurements and information) and solves them one after the other; its time
covers constructing and running ``LevenbergMarquardtOptimizer`` for each graph.  Ours is
``slam.pgo.optimize`` on the stacked batch (problem construction included); the two alternate, one
batch solve then GTSAM's round of solves (``pgo.alternating``).  Printed: milliseconds
per graph (median of ``--repeats``), the ratio GTSAM / ours (> 1: ours faster), the largest
relative difference between the per-graph final chi2 values of ours and GTSAM's, and (the batch
must not change the answer) the largest relative difference between our batched per-graph chi2 and
our solves of ``--alone`` of the graphs (the first, the last, and between) each on its own.
"""

from __future__ import annotations

import argparse
import math
import statistics
import tempfile
import time
from pathlib import Path

import torch

from liegeo import SE2, SE3, SO3
from slam.io import write_g2o
from slam.pgo import PoseGraph, optimize, synthetic_batch
from slam.pgo.synthetic import _chain

from _table import print_table
from pgo import alternating, gtsam_problem


def lawnmower(num_poses: int) -> torch.Tensor:
    """``(num_poses, 3)`` integer cells of a walk over a cube grid (side ``ceil(num_poses^(1/3))``):
    rows along x in alternating directions, layers along z, each step to a grid neighbour."""
    side = math.ceil(round(num_poses ** (1 / 3), 9))
    cells, row = [], 0
    for z in range(side):
        for y in (range(side) if z % 2 == 0 else reversed(range(side))):
            cells += [(x, y, z) for x in (range(side) if row % 2 == 0 else reversed(range(side)))]
            row += 1
    return torch.tensor(cells[:num_poses])


def cube_graph(num_poses: int = 2048, loop_ratio: float = 0.2, *, translation_noise: float = 0.05,
               rotation_noise: float = 0.02, structure_seed: int = 0, noise_seed: int = 0) -> PoseGraph:
    """An SE(3) pose graph on ``lawnmower(num_poses)``: odometry along the walk, ``round(loop_ratio *
    num_poses)`` loop closures among grid-neighbour pairs not consecutive on the walk, measurements and
    initial guess (chained odometry) as ``synthetic_graph`` makes them.  Rotations and loop closures
    depend on ``structure_seed`` only, so graphs of one structure seed stack."""
    cells = lawnmower(num_poses)
    structure = torch.Generator().manual_seed(structure_seed)
    rotation = SO3.exp(0.3 * torch.randn(num_poses, 3, generator=structure, dtype=torch.float64))
    truth = SE3.from_rotation_translation(rotation, cells.to(torch.float64))
    index = {c: k for k, c in enumerate(map(tuple, cells.tolist()))}
    pairs = torch.tensor([(k, index[n]) for c, k in index.items() for axis in range(3)
                          for n in [tuple(v + (a == axis) for a, v in enumerate(c))]
                          if n in index and abs(index[n] - k) > 1])
    pick = torch.randperm(len(pairs), generator=structure)[: round(loop_ratio * num_poses)].sort().values
    i = torch.cat([torch.arange(num_poses - 1), pairs[pick].min(1).values])
    j = torch.cat([torch.arange(1, num_poses), pairs[pick].max(1).values])
    noise = torch.Generator().manual_seed(noise_seed)
    sigma = torch.tensor([translation_noise] * 3 + [rotation_noise] * 3, dtype=torch.float64)
    measurements = truth[i].between(truth[j]).retract(sigma * torch.randn(i.numel(), 6, generator=noise,
                                                                          dtype=torch.float64))
    information = torch.diag_embed(sigma.pow(-2)).expand(i.numel(), 6, 6).clone()
    initial = _chain(SE3, measurements[: num_poses - 1], truth[0])  # slam.pgo.synthetic's odometry chain
    return PoseGraph(group=SE3, ids=torch.arange(num_poses), poses=initial, i=i, j=j, measurements=measurements,
                     information=information, fixed=torch.zeros(1, dtype=torch.long),
                     source=f"cube grid SE3 (structure {structure_seed}, noise {noise_seed})")


def cube_batch(batch_size: int, *args, noise_seed: int = 0, **kwargs) -> PoseGraph:
    """``batch_size`` cube graphs of one structure, noise seeds ``noise_seed, noise_seed + 1, ...``, stacked."""
    return PoseGraph.stack([cube_graph(*args, noise_seed=noise_seed + b, **kwargs) for b in range(batch_size)])


def gtsam_each_runner(paths: list[Path], is3d: bool):  # type: ignore[no-untyped-def]
    """GTSAM's problems read from ``paths`` and a function that solves them one by one, timed as one:
    ``() -> (seconds, [chi2 of each])``."""
    import gtsam

    problems = [gtsam_problem(path, is3d) for path in paths]
    params = gtsam.LevenbergMarquardtParams()
    params.setRelativeErrorTol(1e-6)
    params.setMaxIterations(100)

    def run() -> tuple[float, list[float]]:
        start = time.perf_counter()
        results = [gtsam.LevenbergMarquardtOptimizer(g, v, params).optimize() for g, v in problems]
        seconds = time.perf_counter() - start
        return seconds, [2.0 * g.error(r) for (g, _), r in zip(problems, results)]

    return run


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--batch", type=int, nargs="+", action="extend",
                        help="batch sizes B, one row each (default: 64; the preset's 16)")
    parser.add_argument("--preset", choices=["theseus-cube"], help="B = 16 cube-grid SE(3) graphs of 2,048 poses")
    parser.add_argument("--poses", type=int, help="poses per graph (default: 64; the preset's 2048)")
    parser.add_argument("--loops", type=int, default=20, help="loop closures (synthetic_batch graphs)")
    parser.add_argument("--loop-ratio", type=float, default=0.2, help="loop closures per pose (cube graphs)")
    parser.add_argument("--group", choices=["SE2", "SE3"], default="SE3")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--alone", type=int, default=3, help="graphs of each batch also solved on their own")
    args = parser.parse_args()
    if args.preset and args.group != "SE3":
        parser.error("--preset theseus-cube is SE3")
    batches = args.batch or [16 if args.preset else 64]
    poses = args.poses or (2048 if args.preset else 64)
    group = SE3 if args.group == "SE3" else SE2
    header = ["B", "poses", "edges", "ours ms/graph", "first ms/graph", "ours it (max)", "gtsam ms/graph",
              "gtsam/ours", "gtsam chi2 rel diff", "alone chi2 rel diff"]
    rows = []
    for size in batches:
        if args.preset:
            batch = cube_batch(size, poses, args.loop_ratio)
        else:
            batch, _ = synthetic_batch(size, group, poses, args.loops)
        print(batch.describe(), flush=True)

        first = optimize(batch)  # pays the symbolic analysis and warm-up
        graphs = batch.unstack()
        with tempfile.TemporaryDirectory() as tmp:
            paths = []
            for b, graph in enumerate(graphs):
                paths.append(Path(tmp) / f"graph{b}.g2o")
                write_g2o(paths[-1], graph)
            runs, gtsam_runs = alternating(lambda: optimize(batch), gtsam_each_runner(paths, group is SE3), args.repeats)
        runs = [first] + runs
        ours = statistics.median(r.solve_seconds for r in runs[1:])
        result = runs[-1]
        g_time, g_chi2 = statistics.median(run[0] for run in gtsam_runs), gtsam_runs[-1][1]

        ours_chi2 = result.per_graph["final_chi2"]
        worst = max(abs(a - b) / b for a, b in zip(ours_chi2, g_chi2))
        alone = sorted({round(k * (size - 1) / max(args.alone - 1, 1)) for k in range(min(args.alone, size))})
        alone_worst = max((abs(ours_chi2[b] - optimize(graphs[b]).final_chi2) / ours_chi2[b] for b in alone),
                          default=float("nan"))
        rows.append([size, batch.num_poses, batch.num_edges, f"{1e3 * ours / size:.2f}",
                     f"{1e3 * runs[0].solve_seconds / size:.2f}", result.iterations,
                     f"{1e3 * g_time / size:.2f}", f"{g_time / ours:.2f}x", f"{worst:.1e}", f"{alone_worst:.1e}"])
    print_table(header, rows)

if __name__ == "__main__":
    main()
