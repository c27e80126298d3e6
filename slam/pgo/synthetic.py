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

import dataclasses

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


@dataclasses.dataclass(frozen=True)
class OutlierBatch:
    """``synthetic_outlier_batch``'s data: B graphs of one structure whose loop closures are partly
    outliers, with a noisy descriptor per loop closure that hints (imperfectly) at which."""

    graph: PoseGraph
    """The stacked graphs (``batch_size`` B): odometry initial guess, corrupted loop closures."""
    truth: SE2 | SE3
    """``(N,)`` true poses (shared by the batch)."""
    loops: Tensor
    """``(L,)`` indices of the loop-closure edges among the graph's edges."""
    features: Tensor
    """``(B, L, F)`` descriptors: inliers drawn around ``+separation/2``, outliers around ``-separation/2``."""
    outlier: Tensor
    """``(B, L)`` bool: which loop closures were corrupted."""

    def select(self, index: Tensor) -> OutlierBatch:
        """The graphs ``index`` of the batch (e.g. one process's shard under data parallelism)."""
        graph = self.graph
        information = graph.information[index] if graph.information.dim() == 4 else graph.information
        graph = dataclasses.replace(graph, poses=graph.poses[index], measurements=graph.measurements[index],
                                    information=information)
        return dataclasses.replace(self, graph=graph, features=self.features[index], outlier=self.outlier[index])


def synthetic_outlier_batch(
    batch: int,
    group: type[SE2] | type[SE3] = SE2,
    num_poses: int = 40,
    num_loop_closures: int = 20,
    *,
    outlier_ratio: float = 0.3,
    feature_dim: int = 8,
    separation: float = 1.0,
    outlier_translation: float = 2.0,
    outlier_rotation: float = 1.0,
    structure_seed: int = 0,
    seed: int = 0,
) -> OutlierBatch:
    """Graphs as ``synthetic_graph`` (noise seeds ``seed·batch + b``) whose loop closures are replaced,
    each with probability ``outlier_ratio``, by a relative pose perturbed by Gaussian tangent noise of
    ``outlier_translation`` (per translation axis) and ``outlier_rotation`` (rad per axis); each loop
    closure also gets a ``feature_dim``-vector descriptor with unit Gaussian noise around a class mean
    (``±separation/2`` per component)."""
    graphs, truth = [], None
    for b in range(batch):
        graph, truth = synthetic_graph(group, num_poses, num_loop_closures, structure_seed=structure_seed,
                                       noise_seed=seed * batch + b)
        graphs.append(graph)
    stacked = PoseGraph.stack(graphs)
    loops = torch.arange(num_poses - 1, stacked.num_edges)
    g = torch.Generator().manual_seed(10_000 + seed)
    outlier = torch.rand(batch, loops.numel(), generator=g) < outlier_ratio
    d = group.tangent_dim
    rotation_dims = 1 if group is SE2 else 3
    scale = torch.full((d,), outlier_rotation, dtype=torch.float64)
    scale[: d - rotation_dims] = outlier_translation
    corruption = scale * torch.randn(batch, loops.numel(), d, generator=g, dtype=torch.float64)
    measurements = stacked.measurements.data.clone()
    corrupted = stacked.measurements[:, loops].retract(corruption).data
    measurements[:, loops] = torch.where(outlier.unsqueeze(-1), corrupted, measurements[:, loops])
    mean = torch.where(outlier, -0.5 * separation, 0.5 * separation).to(torch.float64)
    features = mean.unsqueeze(-1) + torch.randn(batch, loops.numel(), feature_dim, generator=g, dtype=torch.float64)
    graph = dataclasses.replace(stacked, measurements=group(measurements),
                                source=f"synthetic {group.__name__} with outliers (structure {structure_seed}, seed {seed})")
    return OutlierBatch(graph, truth, loops, features, outlier)
