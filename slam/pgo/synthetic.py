"""Synthetic pose graphs with known ground truth, for tests, benchmarks and training data.

``synthetic_graph`` draws a ground-truth trajectory (a random walk that moves forward and turns a
little each step), odometry edges between consecutive poses and loop closures between random
non-consecutive pairs; measurements are the true relative poses perturbed by ``Exp`` of Gaussian
tangent noise, the information matrices ``diag(1/σ²)`` of that noise, and the initial guess the
chained noisy odometry.  The structure (which pairs are loop closures) depends on
``structure_seed`` only, so graphs drawn with one structure seed and different noise seeds stack
into a batch (``PoseGraph.stack``).
"""

from __future__ import annotations

import torch
from torch import Tensor

from liegeo import SE2, SE3

from .graph import PoseGraph


def synthetic_graph(
    group: type[SE2] | type[SE3] = SE3,
    num_poses: int = 64,
    num_loop_closures: int = 20,
    *,
    translation_noise: float = 0.05,
    rotation_noise: float = 0.02,
    structure_seed: int = 0,
    noise_seed: int = 0,
    dtype: torch.dtype = torch.float64,
) -> tuple[PoseGraph, SE2 | SE3]:
    """A pose graph with ``num_poses - 1`` odometry edges and ``num_loop_closures`` loop closures.

    Returns:
        ``(graph, ground_truth)`` with ``ground_truth: (num_poses,)`` poses; the graph's first pose is
        fixed at its true value.
    """
    if num_poses < 2:
        raise ValueError(f"num_poses must be at least 2, got {num_poses}")
    if num_loop_closures and num_poses < 3:
        raise ValueError("loop closures need at least 3 poses")
    structure = torch.Generator().manual_seed(structure_seed)
    d = group.tangent_dim
    rotation_dims = 1 if group is SE2 else 3
    steps = torch.zeros(num_poses - 1, d, dtype=dtype)
    steps[:, 0] = 1.0  # forward
    steps[:, d - rotation_dims:] = 0.3 * torch.randn(num_poses - 1, rotation_dims, generator=structure, dtype=dtype)
    if group is SE3:
        steps[:, 1:3] = 0.1 * torch.randn(num_poses - 1, 2, generator=structure, dtype=dtype)
    truth = _chain(group, group.exp(steps), group.identity(dtype=dtype))

    first = torch.randint(0, num_poses - 2, (num_loop_closures,), generator=structure)
    span = torch.randint(2, num_poses, (num_loop_closures,), generator=structure)
    second = torch.minimum(first + span, torch.full_like(first, num_poses - 1))
    second = torch.where(second - first < 2, first + 2, second)
    i = torch.cat([torch.arange(num_poses - 1), first])
    j = torch.cat([torch.arange(1, num_poses), second])

    noise = torch.Generator().manual_seed(noise_seed)
    sigma = torch.full((d,), translation_noise, dtype=dtype)
    sigma[d - rotation_dims:] = rotation_noise
    perturbation = sigma * torch.randn(i.numel(), d, generator=noise, dtype=dtype)
    measurements = truth[i].between(truth[j]).retract(perturbation)
    information = torch.diag_embed(sigma.pow(-2)).expand(i.numel(), d, d).clone()
    initial = _chain(group, measurements[: num_poses - 1], truth[0])
    graph = PoseGraph(group=group, ids=torch.arange(num_poses), poses=initial, i=i, j=j, measurements=measurements,
                      information=information, fixed=torch.zeros(1, dtype=torch.long),
                      source=f"synthetic {group.__name__} (structure {structure_seed}, noise {noise_seed})")
    return graph, truth


def _chain(group: type[SE2] | type[SE3], steps: SE2 | SE3, start: SE2 | SE3) -> SE2 | SE3:
    """``[start, start·s_0, start·s_0·s_1, ...]`` (a sequential scan: N is small here)."""
    poses = [start.data]
    current = start
    for k in range(steps.shape[0]):
        current = current.compose(steps[k])
        poses.append(current.data)
    return group(torch.stack(poses))


def synthetic_batch(batch_size: int, *args, noise_seed: int = 0, **kwargs) -> tuple[PoseGraph, Tensor]:
    """``batch_size`` graphs of one structure with noise seeds ``noise_seed, noise_seed + 1, ...``,
    stacked; returns ``(graph, ground_truth)`` with ``ground_truth`` the shared true poses."""
    pairs = [synthetic_graph(*args, noise_seed=noise_seed + b, **kwargs) for b in range(batch_size)]
    return PoseGraph.stack([g for g, _ in pairs]), pairs[0][1]
