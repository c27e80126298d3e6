"""Learned measurement weighting for pose graphs, trained through the PGO layer.

    python examples/learned_edge_weights.py [--seeds 3] [--steps 60] [--batch 16] [--png curve.png] [--memory]
    torchrun --nproc_per_node 2 examples/learned_edge_weights.py --ddp [--seeds 1] ...

With ``--ddp`` (under ``torchrun``) every process solves its share of each batch of graphs and
``DistributedDataParallel`` (gloo, CPU) averages the gradients, so the run gives the same network as
one process with the same global batch (``tests/test_ddp.py`` checks that).

Data (``slam.pgo.synthetic_outlier_batch``): 2D graphs of 40 poses with 20 loop closures, ~30 % of
which are outliers (relative poses off by ~2 units and ~1 rad); each loop closure comes with an
8-dim descriptor whose mean differs between inliers and outliers (unit noise, so one descriptor
alone is an unreliable vote).  A small MLP (``slam.learning.EdgeWeightNet``) maps the descriptor to
a weight on that edge's information; LM solves the weighted graph (implicit backward); the loss is
the trajectory error (translation RMSE against the truth) of the solution.  Nothing tells the
network which edges are outliers: it learns that only from the trajectory error.

Held-out evaluation on 64 fresh graphs compares: fixed weights (all 1), a robust kernel (Cauchy,
scale 1 on each edge's chi), and the learned weights, for each training seed.  ``--memory`` also
prints the bytes autograd saves for the backward pass of one solve against the LM iteration
count, implicit against unrolled.
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

import torch

import slam
from slam.learning import EdgeWeightNet, translation_rmse
from slam.pgo import OutlierBatch, synthetic_outlier_batch
from slam.robust import Cauchy
from slam.viz import plot_learning_curves


def solve(data: OutlierBatch, weights: torch.Tensor | None = None, loss=None, *, iterations: int = 30,
          backward=None) -> torch.Tensor:
    """Per-graph translation RMSE ``(B,)`` of the LM solution."""
    problem, poses = data.graph.problem(edge_weights=weights, loss=loss)
    result = slam.solve(problem, slam.LevenbergMarquardt(max_iterations=iterations), backward or slam.Implicit())
    return translation_rmse(result[poses], data.truth)


def edge_weights(net: torch.nn.Module, data: OutlierBatch) -> torch.Tensor:
    """``(B, E)``: 1 on odometry edges, the network's weight on loop closures (``net`` may be the
    ``DistributedDataParallel`` wrapper)."""
    batch = data.graph.batch_size
    weights = torch.ones(batch, data.graph.num_edges, dtype=torch.float64)
    return weights.index_put((torch.arange(batch)[:, None], data.loops[None, :]), net(data.features))


def train(seed: int, steps: int, batch: int, learning_rate: float, *,
          distributed: bool = False) -> tuple[EdgeWeightNet, list[float]]:
    """Adam on the mean trajectory error of each batch; under ``distributed`` (an initialized process
    group) each process takes the graphs ``rank, rank + world, ...`` of every batch and
    ``DistributedDataParallel`` averages the gradients."""
    torch.manual_seed(seed)
    net = EdgeWeightNet(8).double()
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
    curve = []
    try:
        from tqdm.auto import trange
    except ImportError:
        trange = range
    for step in trange(steps, desc=f"seed {seed}", leave=False, disable=rank != 0):
        data = synthetic_outlier_batch(batch, seed=1000 * seed + step).select(torch.arange(rank, batch, world))
        loss = solve(data, edge_weights(model, data)).mean()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        curve.append(loss.item())
    return net, curve


def saved_bytes(iterations: int, backward) -> int:
    """Bytes autograd keeps for the backward pass of one weighted solve."""
    data = synthetic_outlier_batch(16, seed=5)
    net = EdgeWeightNet(8).double()
    total = [0]

    def pack(tensor: torch.Tensor) -> torch.Tensor:
        total[0] += tensor.numel() * tensor.element_size()
        return tensor

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        solve(data, edge_weights(net, data), iterations=iterations, backward=backward).mean()
    return total[0]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--steps", type=int, default=60)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--learning-rate", type=float, default=3e-2)
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

    test = synthetic_outlier_batch(64, seed=999_999)
    with torch.no_grad():
        fixed = float(solve(test).mean())
        robust = float(solve(test, loss=Cauchy(1.0)).mean())
    if rank == 0:
        print(f"held-out: 64 graphs, {int(test.outlier.sum())} of {test.outlier.numel()} loop closures are outliers")
    rows, curves = [], []
    start = time.perf_counter()
    for seed in range(args.seeds):
        net, curve = train(seed, args.steps, args.batch, args.learning_rate, distributed=args.ddp)
        if rank != 0:
            continue
        curves.append(curve)
        with torch.no_grad():
            learned = float(solve(test, edge_weights(net, test)).mean())
            w = net(test.features)
        rows.append((seed, learned, float(w[~test.outlier].mean()), float(w[test.outlier].mean())))
        print(f"seed {seed}: ATE learned {learned:.4f} (fixed {fixed:.4f}, Cauchy {robust:.4f}); mean weight "
              f"inliers {rows[-1][2]:.3f}, outliers {rows[-1][3]:.3f}")
    if args.save and rank == 0:
        torch.save(net.state_dict(), args.save)
    if rank != 0:
        return
    learned = [r[1] for r in rows]
    print(f"training: {time.perf_counter() - start:.1f} s for {args.seeds} seeds x {args.steps} steps of "
          f"{args.batch} graphs")
    print(f"held-out translation RMSE: fixed weights {fixed:.4f}, Cauchy {robust:.4f}, learned "
          f"{statistics.mean(learned):.4f} ± {statistics.pstdev(learned):.4f} over {args.seeds} seeds")
    print(f"learned vs fixed: {100 * (1 - statistics.mean(learned) / fixed):.1f} % lower (each seed: "
          + ", ".join(f"{100 * (1 - x / fixed):.1f} %" for x in learned) + f"); vs Cauchy: "
          f"{100 * (1 - statistics.mean(learned) / robust):.1f} % lower")
    if args.png:
        plot_learning_curves(args.png, {f"seed {seed}": curve for seed, curve in enumerate(curves)},
                             ylabel="translation RMSE of the solution",
                             baselines={"fixed weights (held-out)": fixed, "Cauchy (held-out)": robust})
        print(f"learning curves: {args.png}")
    if args.memory:
        for iterations in (5, 10, 20, 40):
            implicit = saved_bytes(iterations, slam.Implicit())
            unrolled = saved_bytes(iterations, slam.Unroll())
            print(f"saved for backward, {iterations:2d} LM iterations: implicit {implicit / 2**20:.2f} MiB, "
                  f"unrolled {unrolled / 2**20:.2f} MiB")


if __name__ == "__main__":
    main()
