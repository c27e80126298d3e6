"""A learned keypoint front end for bundle adjustment, trained through the BA layer.

    python examples/learned_keypoints.py [--seeds 3] [--steps 200] [--batch 8] [--png curve.png]

Data (simulated, ``make_scenes``): scenes of 40 points seen by 6 pinhole cameras on an arc (known
intrinsics, every camera sees every point).  The keypoint detector that produced the 2D observations
is flawed in two ways a real one is: its pixels carry a systematic bias (up to ~3 px) that depends on
the local image appearance, and ~20 % of its matches are wrong (off by up to 40 px).  Each
observation comes with a 6-dim appearance descriptor: the first three components drive the bias
(a nonlinear function of them), the last three hint, noisily, whether the match is right.

Front end: an MLP maps each descriptor to a confidence (a weight on that observation's squared
reprojection error) and a 2D correction subtracted from the pixel.  BA layer: LM with a Cauchy kernel
(scale 2 px) over the free camera poses and the points (two cameras with known poses fix the gauge),
implicit backward.  Loss: the 3D point RMSE of the solution against the truth: the network never sees
a true 2D keypoint, it learns the detector's bias and which matches to trust from the reconstruction
error alone.

Held-out evaluation on 32 fresh scenes, for each training seed: plain BA (no kernel, all weights 1,
no correction), robust BA (the same Cauchy kernel, no network), and robust BA fed by the front end,
whole and with each of its two outputs alone.
"""

from __future__ import annotations

import argparse
import dataclasses
import statistics
import time
from pathlib import Path

import torch
from torch import Tensor, nn

import slam
from liegeo import SE3, SO3, Euclidean
from slam import Cauchy, RobustLoss, ScalarWeight
from slam.costs import PinholeReprojection
from slam.costs.reprojection import pinhole_project
from slam.optim.config import BackwardMode
from slam.viz import plot_learning_curves

CAMERAS, POINTS, DESCRIPTOR = 6, 40, 6
INTRINSICS = (500.0, 500.0, 320.0, 240.0)
KNOWN = (0, 1)
"""Cameras whose poses are known (they fix the 7-dof similarity gauge)."""
CAMERA_INDEX = torch.arange(CAMERAS).repeat_interleave(POINTS)
POINT_INDEX = torch.arange(POINTS).repeat(CAMERAS)
"""Observation ``o`` is camera ``CAMERA_INDEX[o]`` seeing point ``POINT_INDEX[o]`` (every camera sees every point)."""


@dataclasses.dataclass(frozen=True)
class Scenes:
    """``B`` scenes of one structure (``CAMERA_INDEX``, ``POINT_INDEX``)."""

    cameras: SE3
    """``(B, C)`` true world-to-camera poses."""
    points: Tensor
    """``(B, P, 3)`` true points."""
    start_cameras: SE3
    """``(B, C)`` initial guess (the known cameras exact)."""
    start_points: Tensor
    """``(B, P, 3)``."""
    pixels: Tensor
    """``(B, O, 2)`` detected keypoints."""
    descriptors: Tensor
    """``(B, O, D)``."""
    wrong: Tensor
    """``(B, O)`` bool: the wrong matches (for reporting only)."""


def detector_bias(descriptors: Tensor) -> Tensor:
    """``(..., 2)`` pixels: the detector's systematic error, a smooth function of the appearance."""
    a, b, c = descriptors[..., 0], descriptors[..., 1], descriptors[..., 2]
    return 3.0 * torch.stack([torch.tanh(2.0 * a - b), torch.tanh(b + a * c)], dim=-1)


def look_at(centers: Tensor) -> SE3:
    """World-to-camera poses ``(..., )`` of +z-looking cameras at ``centers (..., 3)`` aimed at the origin."""
    z = -centers / centers.norm(dim=-1, keepdim=True)
    up = torch.tensor([0.0, 1.0, 0.0], dtype=centers.dtype).expand_as(z)
    x = torch.linalg.cross(up, z)
    x = x / x.norm(dim=-1, keepdim=True)
    y = torch.linalg.cross(z, x)
    rotation = torch.stack([x, y, z], dim=-2)  # rows: camera axes in the world
    translation = -(rotation @ centers.unsqueeze(-1)).squeeze(-1)
    return SE3.from_translation_quaternion(translation, SO3.from_matrix(rotation).data)


def make_scenes(batch: int, seed: int, *, wrong_share: float = 0.2, pixel_noise: float = 0.5) -> Scenes:
    g = torch.Generator().manual_seed(seed)
    rand = lambda *shape: torch.rand(*shape, generator=g, dtype=torch.float64)  # noqa: E731
    randn = lambda *shape: torch.randn(*shape, generator=g, dtype=torch.float64)  # noqa: E731
    points = 2.0 * rand(batch, POINTS, 3) - 1.0
    angle = torch.linspace(-0.6, 0.6, CAMERAS, dtype=torch.float64) + 0.05 * randn(batch, CAMERAS)
    centers = torch.stack([6.0 * angle.sin(), 0.5 * randn(batch, CAMERAS), -6.0 * angle.cos()], dim=-1)
    cameras = look_at(centers)
    intrinsics = torch.tensor(INTRINSICS, dtype=torch.float64)
    projections = pinhole_project(cameras[:, CAMERA_INDEX].act(points[:, POINT_INDEX]), intrinsics)
    observations = CAMERAS * POINTS
    wrong = rand(batch, observations) < wrong_share
    descriptors = torch.cat([2.0 * rand(batch, observations, 3) - 1.0,
                             torch.where(wrong, -0.7, 0.7).unsqueeze(-1) + randn(batch, observations, 3)], dim=-1)
    pixels = (projections + detector_bias(descriptors) + pixel_noise * randn(batch, observations, 2)
              + wrong.unsqueeze(-1) * 40.0 * (2.0 * rand(batch, observations, 2) - 1.0))
    known = torch.zeros(CAMERAS, dtype=torch.bool)
    known[list(KNOWN)] = True
    perturbation = torch.cat([0.1 * randn(batch, CAMERAS, 3), 0.02 * randn(batch, CAMERAS, 3)], dim=-1)
    start_cameras = cameras.retract(perturbation * ~known[:, None])
    start_points = points + 0.1 * randn(batch, POINTS, 3)
    return Scenes(cameras, points, start_cameras, start_points, pixels, descriptors, wrong)


class KeypointFrontEnd(nn.Module):
    """``descriptors (..., D) -> (confidence (...,), correction (..., 2))``; at initialization every
    confidence is ~1 and every correction ~0 (plain BA)."""

    def __init__(self, hidden: int = 32, floor: float = 1e-3):
        super().__init__()
        self.mlp = nn.Sequential(nn.Linear(DESCRIPTOR, hidden), nn.Tanh(), nn.Linear(hidden, hidden), nn.Tanh(),
                                 nn.Linear(hidden, 3))
        nn.init.zeros_(self.mlp[-1].weight)
        nn.init.zeros_(self.mlp[-1].bias)
        self.floor = floor

    def forward(self, descriptors: Tensor) -> tuple[Tensor, Tensor]:
        out = self.mlp(descriptors)
        return self.floor + 2.0 * torch.sigmoid(out[..., 0]), 4.0 * out[..., 1:]


ROBUST = Cauchy(2.0)
TRAINING = slam.LevenbergMarquardt(max_iterations=30)
EVALUATION = slam.LevenbergMarquardt(max_iterations=200)
"""With the Cauchy kernel LM (reweighted least squares) converges linearly, in 13 to 37 iterations on
these scenes where plain BA takes 5 to 7: evaluations run it to convergence."""


def point_rmse(scenes: Scenes, confidence: Tensor | None = None, correction: Tensor | None = None, *,
               loss: RobustLoss | None = ROBUST, optimizer: slam.LevenbergMarquardt | None = None,
               backward: BackwardMode | None = None) -> Tensor:
    """``(B,)`` 3D point RMSE of the BA solution with per-observation confidences ``(B, O)`` and pixel
    corrections ``(B, O, 2)`` (``loss=None``: no robust kernel; default: LM to convergence, implicit
    backward)."""
    poses = slam.Variable(scenes.start_cameras, fixed=KNOWN, name="camera_pose")
    intrinsics = slam.Variable(Euclidean(torch.tensor([INTRINSICS], dtype=torch.float64)), fixed=[0], name="intrinsics")
    points = slam.Variable(Euclidean(scenes.start_points), name="point")
    pixels = scenes.pixels if correction is None else scenes.pixels - correction
    weight = None if confidence is None else ScalarWeight(confidence.sqrt())
    cost = PinholeReprojection(poses[CAMERA_INDEX], intrinsics[torch.zeros_like(CAMERA_INDEX)], points[POINT_INDEX],
                               observation=pixels, weight=weight, loss=loss)
    result = slam.solve(slam.Problem([cost]), optimizer or EVALUATION,
                        backward or slam.Implicit())
    return (result[points].data - scenes.points).square().sum(-1).mean(-1).sqrt()


def train(seed: int, steps: int, batch: int, learning_rate: float) -> tuple[KeypointFrontEnd, list[float]]:
    torch.manual_seed(seed)
    front_end = KeypointFrontEnd().double()
    optimizer = torch.optim.Adam(front_end.parameters(), lr=learning_rate)
    try:
        from tqdm.auto import trange
    except ImportError:
        trange = range
    curve = []
    for step in trange(steps, desc=f"seed {seed}", leave=False):
        scenes = make_scenes(batch, seed=1000 * seed + step)
        confidence, correction = front_end(scenes.descriptors)
        loss = point_rmse(scenes, confidence, correction, optimizer=TRAINING).mean()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        curve.append(loss.item())
    return front_end, curve


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--steps", type=int, default=200)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--learning-rate", type=float, default=3e-2)
    parser.add_argument("--png", type=Path, help="learning curves")
    args = parser.parse_args()

    test = make_scenes(32, seed=999_999)
    with torch.no_grad():
        plain = float(point_rmse(test, loss=None).mean())
        robust = float(point_rmse(test).mean())
    print(f"held-out: 32 scenes, {int(test.wrong.sum())} of {test.wrong.numel()} matches wrong; point RMSE "
          f"plain BA {plain:.4f}, Cauchy {robust:.4f}")
    learned, confidences_only, corrections_only, curves = [], [], [], []
    start = time.perf_counter()
    for seed in range(args.seeds):
        front_end, curve = train(seed, args.steps, args.batch, args.learning_rate)
        curves.append(curve)
        with torch.no_grad():
            confidence, correction = front_end(test.descriptors)
            learned.append(float(point_rmse(test, confidence, correction).mean()))
            confidences_only.append(float(point_rmse(test, confidence).mean()))
            corrections_only.append(float(point_rmse(test, correction=correction).mean()))
            bias_left = (detector_bias(test.descriptors) - correction)[~test.wrong].norm(dim=-1).mean()
        print(f"seed {seed}: point RMSE {learned[-1]:.4f} (confidences alone {confidences_only[-1]:.4f}, "
              f"corrections alone {corrections_only[-1]:.4f}); mean "
              f"confidence right matches {float(confidence[~test.wrong].mean()):.3f}, wrong "
              f"{float(confidence[test.wrong].mean()):.3f}; detector bias left {float(bias_left):.2f} px "
              f"(before {float(detector_bias(test.descriptors)[~test.wrong].norm(dim=-1).mean()):.2f})")
    print(f"training: {time.perf_counter() - start:.1f} s for {args.seeds} seeds x {args.steps} steps of "
          f"{args.batch} scenes")
    mean = statistics.mean(learned)
    def spread(values: list[float]) -> str:
        return f"{statistics.mean(values):.4f} ± {statistics.pstdev(values):.4f}"

    print(f"held-out point RMSE over {args.seeds} seeds: plain {plain:.4f}, Cauchy {robust:.4f}; Cauchy with the "
          f"learned confidences alone {spread(confidences_only)}, corrections alone {spread(corrections_only)}, "
          f"both {spread(learned)}")
    print(f"learned vs plain: {100 * (1 - mean / plain):.1f} % lower; vs Cauchy: {100 * (1 - mean / robust):.1f} % "
          "lower (each seed: " + ", ".join(f"{100 * (1 - x / robust):.1f} %" for x in learned) + ")")
    if args.png:
        plot_learning_curves(args.png, {f"seed {seed}": curve for seed, curve in enumerate(curves)},
                             ylabel="3D point RMSE of the solution", log_scale=True,
                             baselines={"plain BA (held-out)": plain, "Cauchy (held-out)": robust})
        print(f"learning curves: {args.png}")


if __name__ == "__main__":
    main()
