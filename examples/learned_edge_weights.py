"""Learned measurement weighting for pose graphs, trained through the PGO layer, against tuned baselines.

    python examples/learned_edge_weights.py [--seeds 3] [--steps 100] [--batch 16] [--png curve.png] [--memory]
    torchrun --nproc_per_node 2 examples/learned_edge_weights.py --ddp [--seeds 1] ...

With ``--ddp`` (under ``torchrun``) every process solves its share of each batch of graphs and
``DistributedDataParallel`` (gloo, CPU) averages the gradients, so the run gives the same network as
one process with the same global batch (``tests/test_ddp.py`` checks that).

Data (``slam.pgo.synthetic_outlier_batch``): 2D graphs of 40 poses with 20 loop closures, ~30 % of
which are outliers (relative poses off by ~2 units and ~1 rad); each loop closure comes with an
8-dim descriptor whose mean differs between inliers and outliers (unit noise, so one descriptor
alone is an unreliable vote).

Learned method: a robust pre-solve (Cauchy, scale 1, fixed, not learned, no gradient) gives each loop
closure's residual ``χ² = eᵀ Ω e``; ``slam.learning.ResidualEdgeWeightNet`` maps (descriptor, χ²) to a
weight on that edge's information, as the sum of a linear log-odds of the descriptor and a learned
curve of ``log(1 + χ²)`` (a learned kernel); LM solves the weighted graph from the pre-solve's poses
(implicit backward); the loss is the trajectory error (translation RMSE against the truth) of that
solution.  Adam, cosine-decayed learning rate.  Nothing tells the network which edges are outliers:
it learns that only from the trajectory error.

Compared on the same held-out graphs (256 fresh ones: noise and outlier seeds used neither in
training nor in tuning): fixed weights (all 1); Cauchy, scale 1 on each edge's chi; the best tuned
kernel, i.e. the kernel and scale (Cauchy, Geman-McClure, Huber over a grid of scales) with the lowest
error on a separate validation set of 256 graphs, then evaluated on the held-out ones; GNC-TLS
(``slam.optim.gnc``, GTSAM's defaults, odometry as known inliers); and the learned weights, for each
training seed.  Two references that are *not* baselines follow the table, since they peek at the
held-out graphs: the kernel scale that would have been best on them, and perfect outlier rejection
(the true labels).  ``--memory`` also prints the bytes autograd saves for the backward pass of one
solve against the LM iteration count, implicit against unrolled.
"""

from __future__ import annotations

import argparse
import math
import statistics
import time
from pathlib import Path

import torch

import slam
from liegeo import LieGroup
from slam.learning import ResidualEdgeWeightNet, edge_chi2, translation_rmse
from slam.optim.gnc import GNC, gnc_solve
from slam.pgo import OutlierBatch, synthetic_outlier_batch
from slam.robust import Cauchy, GemanMcClure, Huber, RobustLoss, parse_robust, robust_spec
from slam.viz import plot_learning_curves

ITERATIONS = 30
PRESOLVE = Cauchy(1.0)
"""The fixed kernel of the pre-solve whose residuals the network sees (Cauchy at scale 1: untuned)."""
SWEEP: dict[str, tuple[type[RobustLoss], tuple[float, ...]]] = {
    "Cauchy": (Cauchy, (0.5, 1.0, 1.5, 2.0, 3.0, 5.0)),
    "Geman-McClure": (GemanMcClure, (2.0, 3.0, 4.0, 5.0, 7.0, 10.0)),
    "Huber": (Huber, (1.0, 2.0, 5.0)),
}
"""The kernel scales the tuned baseline picks from, on the validation graphs."""
VALIDATION_SEED, TEST_SEED = 888_888, 999_999  # training uses seeds 1000·seed + step < 10⁵


def solve_poses(data: OutlierBatch, weights: torch.Tensor | None = None, loss: RobustLoss | None = None, *,
                poses: LieGroup | None = None, iterations: int = ITERATIONS, backward=None) -> LieGroup:
    """``(B, N)`` LM solution of the graphs with edge weights ``(B, E)`` and/or a kernel, from ``poses``
    (default: the odometry initialization)."""
    problem, variable = data.graph.problem(poses, edge_weights=weights, loss=loss)
    result = slam.solve(problem, slam.LevenbergMarquardt(max_iterations=iterations), backward or slam.Implicit())
    return result[variable]


def solve(data: OutlierBatch, weights: torch.Tensor | None = None, loss: RobustLoss | None = None, *,
          iterations: int = ITERATIONS, backward=None) -> torch.Tensor:
    """Per-graph translation RMSE ``(B,)`` of the LM solution from the odometry initialization."""
    return translation_rmse(solve_poses(data, weights, loss, iterations=iterations, backward=backward), data.truth)


def presolve(data: OutlierBatch) -> tuple[LieGroup, torch.Tensor]:
    """The Cauchy pre-solve's poses ``(B, N)`` and each loop closure's ``χ²`` there ``(B, L)``; inputs, so
    no gradient."""
    with torch.no_grad():
        poses = solve_poses(data, loss=PRESOLVE)
        return poses, edge_chi2(data.graph, poses, data.loops)


def edge_weights(net: torch.nn.Module, data: OutlierBatch, chi2: torch.Tensor) -> torch.Tensor:
    """``(B, E)``: 1 on odometry edges, the network's weight on loop closures (``net`` may be the
    ``DistributedDataParallel`` wrapper); ``chi2: (B, L)`` from ``presolve``."""
    batch = data.graph.batch_size
    weights = torch.ones(batch, data.graph.num_edges, dtype=torch.float64)
    return weights.index_put((torch.arange(batch)[:, None], data.loops[None, :]), net(data.features, chi2))


def learned_rmse(net: torch.nn.Module, data: OutlierBatch, *, iterations: int = ITERATIONS,
                 backward=None) -> torch.Tensor:
    """``(B,)`` translation RMSE of the weighted solve, started from the pre-solve (so it needs fewer
    iterations; the implicit gradient depends only on the solution)."""
    poses, chi2 = presolve(data)
    solution = solve_poses(data, edge_weights(net, data, chi2), poses=poses, iterations=iterations,
                           backward=backward)
    return translation_rmse(solution, data.truth)


def new_network() -> ResidualEdgeWeightNet:
    return ResidualEdgeWeightNet(8).double()


def train(seed: int, steps: int, batch: int, learning_rate: float, *,
          distributed: bool = False) -> tuple[ResidualEdgeWeightNet, list[float]]:
    """Adam (cosine-decayed step size: the last steps average out the batch noise) on the mean trajectory
    error of each batch; under ``distributed`` (an initialized process group) each process takes the
    graphs ``rank, rank + world, ...`` of every batch and ``DistributedDataParallel`` averages the
    gradients."""
    torch.manual_seed(seed)
    net = new_network()
    rank, world = 0, 1
    model = net
    if distributed:
        import torch.distributed as dist
        from torch.nn.parallel import DistributedDataParallel

        rank, world = dist.get_rank(), dist.get_world_size()
        if batch % world:
            raise ValueError(f"--batch {batch} must be a multiple of the {world} processes")
        model = DistributedDataParallel(net)
    optimizer = torch.optim.Adam(model.parameters(), lr=learning_rate)
    schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: 0.5 * (1 + math.cos(math.pi * step / steps)))
    curve = []
    try:
        from tqdm.auto import trange
    except ImportError:
        trange = range
    for step in trange(steps, desc=f"seed {seed}", leave=False, disable=rank != 0):
        data = synthetic_outlier_batch(batch, seed=1000 * seed + step).select(torch.arange(rank, batch, world))
        loss = learned_rmse(model, data).mean()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        schedule.step()
        curve.append(loss.item())
    return net, curve


def gnc_rmse(data: OutlierBatch) -> float:
    """Mean translation RMSE of GNC-TLS (odometry known inliers, as ``slam.pgo.optimize(gnc="tls")``)."""
    problem, poses = data.graph.problem()
    config = GNC(inner=slam.LevenbergMarquardt(max_iterations=ITERATIONS), loss="tls")
    result = gnc_solve(problem, config, known_inliers={problem.costs[0]: data.graph.odometry})
    return float(translation_rmse(result[poses], data.truth).mean())


def tune(data: OutlierBatch) -> tuple[RobustLoss, dict[str, float]]:
    """The kernel of ``SWEEP`` with the lowest mean error on ``data``, and every kernel's error there."""
    errors = {}
    for kind, scales in SWEEP.values():
        for scale in scales:
            errors[robust_spec(kind(scale))] = float(solve(data, loss=kind(scale)).mean())
    best = min(errors, key=errors.get)
    return parse_robust(best), errors


def saved_bytes(iterations: int, backward) -> int:
    """Bytes autograd keeps for the backward pass of one weighted solve."""
    data = synthetic_outlier_batch(16, seed=5)
    net = new_network()
    total = [0]

    def pack(tensor: torch.Tensor) -> torch.Tensor:
        total[0] += tensor.numel() * tensor.element_size()
        return tensor

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        learned_rmse(net, data, iterations=iterations, backward=backward).mean()
    return total[0]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--steps", type=int, default=100)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--learning-rate", type=float, default=3e-2)
    parser.add_argument("--graphs", type=int, default=256, help="validation and held-out graphs (each)")
    parser.add_argument("--png", type=Path, help="learning curves")
    parser.add_argument("--memory", action="store_true")
    parser.add_argument("--ddp", action="store_true", help="data parallel under torchrun (gloo)")
    parser.add_argument("--save", type=Path, help="save the trained network of the last seed (state_dict)")
    args = parser.parse_args()
    rank = 0
    if args.ddp:
        import torch.distributed as dist

        dist.init_process_group("gloo")
        rank = dist.get_rank()

    start = time.perf_counter()
    baselines: dict[str, float] = {}
    if rank == 0:  # the baselines are the same for every seed and need no gradient
        validation = synthetic_outlier_batch(args.graphs, seed=VALIDATION_SEED)
        test = synthetic_outlier_batch(args.graphs, seed=TEST_SEED)
        with torch.no_grad():
            tuned, validation_errors = tune(validation)
            baselines["fixed"] = float(solve(test).mean())
            baselines["Cauchy 1"] = float(solve(test, loss=Cauchy(1.0)).mean())
            tuned_spec = robust_spec(tuned)
            baselines[f"tuned {tuned_spec}"] = float(solve(test, loss=tuned).mean())
            baselines["GNC-TLS"] = gnc_rmse(test)
            # References that look at the held-out graphs (not baselines): hindsight tuning, true labels.
            hindsight = {spec: float(solve(test, loss=parse_robust(spec)).mean()) for spec in validation_errors}
            oracle = torch.ones(args.graphs, test.graph.num_edges, dtype=torch.float64)
            oracle[:, test.loops] = torch.where(test.outlier, 1e-4, 1.0).double()
            oracle_rmse = float(solve(test, oracle).mean())
        print(f"validation: {args.graphs} graphs; held-out: {args.graphs} other graphs, {int(test.outlier.sum())} of "
              f"{test.outlier.numel()} loop closures are outliers")
        print("kernel sweep on validation (translation RMSE): "
              + ", ".join(f"{spec} {value:.4f}" for spec, value in validation_errors.items()))
        print(f"baselines: {time.perf_counter() - start:.1f} s")
    rows, curves = [], []
    train_start = time.perf_counter()
    for seed in range(args.seeds):
        net, curve = train(seed, args.steps, args.batch, args.learning_rate, distributed=args.ddp)
        if rank != 0:
            continue
        curves.append(curve)
        with torch.no_grad():
            learned = float(learned_rmse(net, test).mean())
            w = net(test.features, presolve(test)[1])
        rows.append((seed, learned, float(w[~test.outlier].mean()), float(w[test.outlier].mean())))
    if args.save and rank == 0:
        torch.save(net.state_dict(), args.save)
    if rank != 0:
        return
    print(f"training: {time.perf_counter() - train_start:.1f} s for {args.seeds} seeds x {args.steps} steps of "
          f"{args.batch} graphs")
    best_name = min(baselines, key=baselines.get)
    best = baselines[best_name]
    names = ["fixed", "Cauchy 1", "tuned", "GNC-TLS", "learned", "vs best"]
    print(f"\nheld-out translation RMSE ({args.graphs} graphs; lower is better); tuned = {tuned_spec}, picked on "
          f"the validation graphs; best non-learned: {best_name}")
    print("seed".ljust(6) + "".join(n.rjust(10) for n in names) + "  mean weight inliers / outliers")
    for seed, learned, w_in, w_out in rows:
        cells = [f"{v:.4f}" for v in baselines.values()] + [f"{learned:.4f}", f"{100 * (learned / best - 1):+.2f} %"]
        print(f"{seed:<6}" + "".join(c.rjust(10) for c in cells) + f"  {w_in:.3f} / {w_out:.3f}")
    learned = [r[1] for r in rows]
    mean = statistics.mean(learned)
    print(f"{'mean':<6}" + "".join(f"{v:.4f}".rjust(10) for v in baselines.values())
          + f"{mean:.4f}".rjust(10) + f"{100 * (mean / best - 1):+.2f} %".rjust(10)
          + f"  (± {statistics.pstdev(learned):.4f} over seeds)")
    print(f"learned below the best non-learned method in {sum(x < best for x in learned)} of {len(learned)} seeds")
    spec = min(hindsight, key=hindsight.get)
    print(f"references, not baselines (they look at the held-out graphs): kernel tuned on them {spec} "
          f"{hindsight[spec]:.4f}; true outlier labels (weight 0 / 1) {oracle_rmse:.4f}")
    print(f"total: {time.perf_counter() - start:.1f} s")
    if args.png:
        plot_learning_curves(args.png, {f"seed {seed}": curve for seed, curve in enumerate(curves)},
                             ylabel="translation RMSE of the solution",
                             baselines={f"{name} (held-out)": value for name, value in baselines.items()
                                        if name != "fixed"})
        print(f"learning curves: {args.png}")
    if args.memory:
        for iterations in (5, 10, 20, 40):
            implicit = saved_bytes(iterations, slam.Implicit())
            unrolled = saved_bytes(iterations, slam.Unroll())
            print(f"saved for backward, {iterations:2d} LM iterations: implicit {implicit / 2**20:.2f} MiB, "
                  f"unrolled {unrolled / 2**20:.2f} MiB")


if __name__ == "__main__":
    main()
