"""Synthetic BAL problems with known ground truth, for tests and examples.

Points are drawn in a unit cube around the origin; each camera sits ~10 units away, rotated a
little, and sees every point in front of it (BAL cameras look down their -z axis).  Observations
are the true projections plus Gaussian pixel noise; the initial guess perturbs the true cameras
and points.
"""

from __future__ import annotations

import torch

from liegeo import SO3

from .bal_problem import BALProblem


def synthetic_bal(
    num_cameras: int = 4,
    num_points: int = 30,
    *,
    pixel_noise: float = 1.0,
    pose_noise: float = 1e-2,
    point_noise: float = 5e-2,
    seed: int = 0,
) -> tuple[BALProblem, BALProblem]:
    """``(problem, truth)``: a perturbed problem and the same problem at the true parameters."""
    g = torch.Generator().manual_seed(seed)
    rand = lambda *shape: torch.randn(*shape, generator=g, dtype=torch.float64)  # noqa: E731
    points = 2.0 * torch.rand(num_points, 3, generator=g, dtype=torch.float64) - 1.0
    rotation = 0.2 * rand(num_cameras, 3)
    translation = torch.cat([0.5 * rand(num_cameras, 2), torch.full((num_cameras, 1), -10.0, dtype=torch.float64)], -1)
    intrinsics = torch.stack([500.0 + 20.0 * rand(num_cameras), 1e-2 * rand(num_cameras), 1e-3 * rand(num_cameras)], -1)
    cameras = torch.cat([rotation, translation, intrinsics], dim=-1)
    camera_index = torch.arange(num_cameras).repeat_interleave(num_points)
    point_index = torch.arange(num_points).repeat(num_cameras)
    truth = BALProblem(cameras, points, camera_index, point_index, torch.zeros(camera_index.numel(), 2,
                                                                                 dtype=torch.float64),
                       source=f"synthetic BAL (seed {seed})")
    observed = truth.residuals() + pixel_noise * rand(camera_index.numel(), 2)  # residuals = projections here
    truth = BALProblem(cameras, points, camera_index, point_index, observed, source=truth.source)
    rotation = (SO3.exp(rotation).compose(SO3.exp(pose_noise * rand(num_cameras, 3)))).log()
    noisy = torch.cat([rotation, translation + pose_noise * rand(num_cameras, 3), intrinsics], dim=-1)
    problem = BALProblem(noisy, points + point_noise * rand(num_points, 3), camera_index, point_index, observed,
                         source=truth.source)
    return problem, truth
