"""A learned odometry front end, trained end to end through the PGO layer or on odometry error alone.

    python examples/learned_odometry.py [--seeds 3] [--steps 150] [--batch 8] [--png curve.png]

Sensor (simulated): between consecutive poses of a 2D trajectory the robot sees 16 points in both
frames, with known correspondences and a noise level that differs from scan to scan (0.5 cm to 50 cm,
log-uniform: near, well-textured structure against far or blurred returns); a share of the points,
different in every scan (0 to 80 %), belongs to moving objects (they move ~0.5 m between the two
frames), and every point carries a 4-dim descriptor that hints, noisily, whether it is static.  The
graphs have 30 poses and 30 loop closures (2 cm, 0.01 rad).  Front end: an MLP gives each point a
weight from its descriptor, a weighted 2D Procrustes alignment turns the two point sets into the
relative pose (differentiable, closed form), and a linear head turns two statistics of the
alignment into a confidence that scales that odometry edge's information.  The PGO layer fuses
these odometry measurements with the graph's loop closures.

Training, per seed, from the same initial network:
- ``odometry-mse``: the front end alone, on the squared error of its relative poses; its confidence
  head gets no signal, so afterwards one constant confidence is fitted on a fresh training batch
  (``d / mean chi2``: the odometry information calibrated as a whole, as a careful user would);
- ``odometry-nll``: the front end alone, on the Gaussian negative log-likelihood of the true relative
  poses (pose error weighted by the confidence, which it calibrates);
- ``end-to-end``: through LM (implicit gradients), on the translation RMSE of the optimized trajectory.
Held-out: ATE of the PGO solution with each trained front end, and with uniform point weights (their
confidence calibrated like the odometry-mse one).
"""

from __future__ import annotations

import argparse
import dataclasses
import statistics
import time
from pathlib import Path

try:
    from tqdm.auto import trange
except ImportError:  # the progress bar is optional
    trange = range

import torch
from torch import Tensor, nn

import slam
from liegeo import SE2
from slam.learning import translation_rmse
from slam.pgo import PoseGraph, synthetic_graph
from slam.viz import plot_learning_curves

POINTS, DESCRIPTOR = 16, 4


@dataclasses.dataclass(frozen=True)
class Scans:
    graphs: PoseGraph
    """B graphs of one structure; their odometry measurements are replaced by the front end's."""
    truth: SE2
    first: Tensor
    """``(B, M, K, 2)`` points in frame i of each odometry edge (M = N - 1 edges)."""
    second: Tensor
    """``(B, M, K, 2)`` the same points in frame i + 1 (moving ones have moved)."""
    descriptors: Tensor
    """``(B, M, K, D)``."""


def make_scans(batch: int, seed: int, *, max_moving: float = 0.8, num_poses: int = 30, loops: int = 30,
               noise: tuple[float, float] = (0.005, 0.5)) -> Scans:
    graphs, truth = [], None
    for b in range(batch):
        graph, truth = synthetic_graph(SE2, num_poses, loops, structure_seed=0, noise_seed=seed * batch + b,
                                       translation_noise=0.02, rotation_noise=0.01)
        graphs.append(graph)
    stacked = PoseGraph.stack(graphs)
    g = torch.Generator().manual_seed(50_000 + seed)
    m = num_poses - 1
    shape = (batch, m, POINTS)
    local = 4.0 * (torch.rand(*shape, 2, generator=g, dtype=torch.float64) - 0.5) + torch.tensor([2.0, 0.0],
                                                                                                  dtype=torch.float64)
    world = truth[:m].unsqueeze(-1).act(local)  # points near each pose i, in the world
    moving = max_moving * torch.rand(batch, m, 1, generator=g)  # each scan its own share of moving points
    is_moving = torch.rand(*shape, generator=g) < moving
    motion = 0.5 * torch.randn(*shape, 2, generator=g, dtype=torch.float64) * is_moving.unsqueeze(-1)
    low, high = noise
    sigma = low * (high / low) ** torch.rand(batch, m, 1, 1, generator=g, dtype=torch.float64)  # per scan
    first = truth[:m].unsqueeze(-1).inverse().act(world) + sigma * torch.randn(*shape, 2, generator=g,
                                                                               dtype=torch.float64)
    second = truth[1:].unsqueeze(-1).inverse().act(world + motion) + sigma * torch.randn(*shape, 2, generator=g,
                                                                                         dtype=torch.float64)
    mean = torch.where(is_moving, -0.5, 0.5).to(torch.float64)
    descriptors = mean.unsqueeze(-1) + torch.randn(*shape, DESCRIPTOR, generator=g, dtype=torch.float64)
    return Scans(stacked, truth, first, second, descriptors)


class FrontEnd(nn.Module):
    """Per-point weights from descriptors, then weighted 2D Procrustes: ``(B, M)`` SE2 relative poses,
    and a confidence per scan (a scale on the odometry information) from two statistics of the
    alignment: the log of the total point weight and the log of the weighted residual (both shifted
    to be of order one, so the head starts in a useful range)."""

    def __init__(self, hidden: int = 16):
        super().__init__()
        self.mlp = nn.Sequential(nn.Linear(DESCRIPTOR, hidden), nn.Tanh(), nn.Linear(hidden, 1))
        self.confidence_head = nn.Linear(2, 1)
        nn.init.zeros_(self.confidence_head.weight)
        nn.init.zeros_(self.confidence_head.bias)

    def confidence(self, first: Tensor, second: Tensor, descriptors: Tensor) -> Tensor:
        """``(B, M)`` positive information scales (1 at initialization)."""
        w = torch.sigmoid(self.mlp(descriptors)).squeeze(-1) + 1e-6
        z = self(first, second, descriptors)
        predicted = z.unsqueeze(-1).act(second)
        residual = (w * (predicted - first).square().sum(-1)).sum(-1) / w.sum(-1)
        statistics = torch.stack([w.sum(-1).log() - 2.0, (residual + 1e-12).log() + 6.0], dim=-1)
        return torch.exp(self.confidence_head(statistics).squeeze(-1))

    def forward(self, first: Tensor, second: Tensor, descriptors: Tensor) -> SE2:
        w = torch.sigmoid(self.mlp(descriptors)).squeeze(-1) + 1e-6  # (B, M, K)
        total = w.sum(-1, keepdim=True)
        c1 = (w.unsqueeze(-1) * first).sum(-2) / total
        c2 = (w.unsqueeze(-1) * second).sum(-2) / total
        q1, q2 = first - c1.unsqueeze(-2), second - c2.unsqueeze(-2)
        # R maps frame i+1 into frame i: maximize Σ w q1ᵀ R q2 -> (cos, sin) ∝ (Σ w q2·q1, Σ w q2×q1)
        dot = (w * (q2 * q1).sum(-1)).sum(-1)
        cross = (w * (q2[..., 0] * q1[..., 1] - q2[..., 1] * q1[..., 0])).sum(-1)
        norm = torch.sqrt(dot * dot + cross * cross)
        cos, sin = dot / norm, cross / norm
        rotated = torch.stack([cos * c2[..., 0] - sin * c2[..., 1], sin * c2[..., 0] + cos * c2[..., 1]], -1)
        t = c1 - rotated
        return SE2(torch.stack([t[..., 0], t[..., 1], cos, sin], dim=-1))


def trajectory_error(front_end: FrontEnd, scans: Scans, backward=None) -> Tensor:
    """``(B,)`` translation RMSE of PGO with the front end's odometry and the graph's loop closures."""
    odometry = front_end(scans.first, scans.second, scans.descriptors)
    m = odometry.shape[-1]
    measurements = torch.cat([odometry.data, scans.graphs.measurements.data[:, m:]], dim=1)
    # Initial guess: the front end's odometry chained (no gradient needed through the start).
    with torch.no_grad():
        poses = [scans.truth[0].data.expand(odometry.shape[0], 4)]
        for k in range(m):
            poses.append(SE2(poses[-1]).compose(odometry[:, k]).data)
    graph = dataclasses.replace(scans.graphs, measurements=SE2(measurements), poses=SE2(torch.stack(poses, 1)))
    weights = torch.ones(odometry.shape[0], graph.num_edges, dtype=torch.float64)
    weights = torch.cat([front_end.confidence(scans.first, scans.second, scans.descriptors), weights[:, m:]], 1)
    problem, variable = graph.problem(edge_weights=weights)
    result = slam.solve(problem, slam.LevenbergMarquardt(max_iterations=20), backward or slam.Implicit())
    return translation_rmse(result[variable], scans.truth)


def odometry_residuals(front_end: FrontEnd, scans: Scans) -> tuple[Tensor, Tensor]:
    """``e = Log(Z_true⁻¹ Z)`` ``(B, M, d)`` of the front end's relative poses, and ``eᵀΩe`` ``(B, M)``
    with the odometry edges' information ``Ω``."""
    odometry = front_end(scans.first, scans.second, scans.descriptors)
    m = odometry.shape[-1]
    e = scans.truth[:m].between(scans.truth[1:m + 1]).local(odometry)
    return e, torch.einsum("bmi,bmij,bmj->bm", e, scans.graphs.information[:, :m], e)


def odometry_error(front_end: FrontEnd, scans: Scans) -> Tensor:
    """Gaussian negative log-likelihood of the true relative poses under the front end's poses and
    information ``c Ω`` (c its confidence): ``½ c eᵀΩe - ½ d log c`` (so the confidence is calibrated
    on the odometry error alone, the strongest odometry-only baseline)."""
    e, chi2 = odometry_residuals(front_end, scans)
    confidence = front_end.confidence(scans.first, scans.second, scans.descriptors)
    return (0.5 * confidence * chi2 - 0.5 * e.shape[-1] * confidence.log()).mean()


def odometry_mse(front_end: FrontEnd, scans: Scans) -> Tensor:
    """Plain ``‖Log(Z_true⁻¹ Z)‖²`` of the relative poses (the confidence gets no training signal)."""
    e, _ = odometry_residuals(front_end, scans)
    return e.square().sum(-1).mean()


def train(mode: str, seed: int, steps: int, batch: int, learning_rate: float) -> tuple[FrontEnd, list[float]]:
    torch.manual_seed(seed)
    front_end = FrontEnd().double()
    optimizer = torch.optim.Adam(front_end.parameters(), lr=learning_rate)
    curve = []
    for step in trange(steps, desc=f"{mode}, seed {seed}", leave=False):
        scans = make_scans(batch, seed=1000 * seed + step)
        loss = {"end-to-end": lambda: trajectory_error(front_end, scans).mean(),
                "odometry-nll": lambda: odometry_error(front_end, scans),
                "odometry-mse": lambda: odometry_mse(front_end, scans)}[mode]()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        curve.append(loss.item())
    if mode == "odometry-mse":
        calibrate(front_end, make_scans(batch, seed=1000 * seed + steps))
    return front_end, curve


@torch.no_grad()
def calibrate(front_end: FrontEnd, scans: Scans) -> None:
    """One confidence for every scan: ``d / mean(eᵀΩe)`` of the front end's odometry on ``scans``."""
    e, chi2 = odometry_residuals(front_end, scans)
    front_end.confidence_head.weight.zero_()
    front_end.confidence_head.bias.fill_(float(torch.log(e.shape[-1] / chi2.mean())))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--steps", type=int, default=150)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--learning-rate", type=float, default=5e-2)
    parser.add_argument("--png", type=Path, help="learning curves")
    args = parser.parse_args()

    test = make_scans(32, seed=999_999)
    with torch.no_grad():
        untrained = FrontEnd().double()
        for p in untrained.parameters():
            p.zero_()  # every point weighs the same
        calibrate(untrained, make_scans(args.batch, seed=999_998))  # as fair as the odometry-mse baseline
        uniform = float(trajectory_error(untrained, test).mean())
    print(f"held-out: 32 graphs; uniform point weights with a calibrated confidence: ATE {uniform:.4f}")
    results: dict[str, list[float]] = {"odometry-mse": [], "odometry-nll": [], "end-to-end": []}
    curves = []
    start = time.perf_counter()
    for seed in range(args.seeds):
        for mode in results:
            front_end, curve = train(mode, seed, args.steps, args.batch, args.learning_rate)
            curves.append((mode, seed, curve))
            with torch.no_grad():
                results[mode].append(float(trajectory_error(front_end, test).mean()))
        print(f"seed {seed}: ATE after PGO with the front end trained on " +
              ", ".join(f"{mode} {results[mode][-1]:.4f}" for mode in results))
    print(f"training: {time.perf_counter() - start:.1f} s")
    mean = {mode: statistics.mean(values) for mode, values in results.items()}
    print(f"held-out ATE over {args.seeds} seeds: uniform weights {uniform:.4f}; " +
          ", ".join(f"{mode} {mean[mode]:.4f} ± {statistics.pstdev(results[mode]):.4f}" for mode in results))
    mean["uniform weights"] = uniform
    for baseline in ("uniform weights", "odometry-mse", "odometry-nll"):
        print(f"end to end vs {baseline}: {100 * (1 - mean['end-to-end'] / mean[baseline]):.1f} % lower")
    if args.png:
        plot_learning_curves(args.png, {f"seed {seed}": curve for mode, seed, curve in curves if mode == "end-to-end"},
                             ylabel="ATE of the solution (end-to-end training)",
                             baselines={f"{mode} (held-out)": mean[mode] for mode in
                                        ("uniform weights", "odometry-mse", "odometry-nll")})
        print(f"learning curves: {args.png}")


if __name__ == "__main__":
    main()
