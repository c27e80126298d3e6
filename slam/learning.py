"""Helpers for training networks through the solver: losses on solutions, and learned edge weights.

Any tensor a problem is built from may come from a network: measurements, initial values,
information or per-edge weights (``PoseGraph.problem(edge_weights=...)``), robust scales.  Build the
problem from them, ``slam.solve`` it with a backward mode (``Implicit()`` keeps memory independent
of the iteration count), and put one of the losses below on the solution.

- ``pose_loss(estimate, truth)``: mean squared ``‖Log(truth⁻¹ · estimate)‖²`` over poses (``liegeo``).
- ``translation_rmse(estimate, truth)``: the ATE of gauge-fixed estimates (no alignment: the first
  pose is fixed at its true value, as in ``slam.pgo.synthetic``); differentiable.
- ``EdgeWeightNet``: a small MLP from per-edge features to positive weights.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from liegeo import LieGroup


def pose_loss(estimate: LieGroup, truth: LieGroup) -> Tensor:
    """Mean over all poses (and the batch) of ``‖Log(truth⁻¹ estimate)‖²``."""
    return truth.local(estimate).square().sum(-1).mean()


def translation_rmse(estimate: LieGroup, truth: LieGroup) -> Tensor:
    """``sqrt(mean ‖t_est - t_true‖²)`` over the poses of each graph: ``(*batch,)``."""
    difference = estimate.translation() - truth.translation()
    return difference.square().sum(-1).mean(-1).sqrt()


class EdgeWeightNet(nn.Module):
    """``features (..., F) -> weights (...,)`` in ``(floor, floor + 1)``: a two-layer MLP with a sigmoid,
    so a weight can go to (nearly) zero for an outlier but never below ``floor`` (the system stays
    well posed)."""

    def __init__(self, features: int, hidden: int = 32, floor: float = 1e-4):
        super().__init__()
        self.mlp = nn.Sequential(nn.Linear(features, hidden), nn.Tanh(), nn.Linear(hidden, 1))
        self.floor = floor

    def forward(self, features: Tensor) -> Tensor:
        return self.floor + torch.sigmoid(self.mlp(features).squeeze(-1))
