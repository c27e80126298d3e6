"""Helpers for training networks through the solver: losses on solutions, and learned edge weights.

Any tensor a problem is built from may come from a network: measurements, initial values,
information or per-edge weights (``PoseGraph.problem(edge_weights=...)``), robust scales.  Build the
problem from them, ``slam.solve`` it with a backward mode (``Implicit()`` keeps memory independent
of the iteration count), and put one of the losses below on the solution.

- ``pose_loss(estimate, truth)``: mean squared ``‖Log(truth⁻¹ · estimate)‖²`` over poses (``liegeo``).
- ``translation_rmse(estimate, truth)``: the ATE of gauge-fixed estimates (no alignment: the first
  pose is fixed at its true value, as in ``slam.pgo.synthetic``); differentiable.
- ``EdgeWeightNet``: a small MLP from per-edge features to positive weights.
- ``edge_chi2(graph, poses, edges)``: each edge's whitened squared residual ``eᵀ Ω e`` at some poses
  (e.g. a robust pre-solve), a per-edge input that tells a network how well the edge fits.
- ``ResidualEdgeWeightNet``: weights from a descriptor and that residual, as the sum of two log-odds
  (a linear one of the descriptor, a learned 1-D curve of ``log(1 + χ²)``, i.e. a learned kernel).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch
from torch import Tensor, nn

from liegeo import LieGroup

if TYPE_CHECKING:
    from .pgo import PoseGraph


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


def edge_chi2(graph: PoseGraph, poses: LieGroup | None = None, edges: Tensor | None = None) -> Tensor:
    """Per-edge ``χ² = eᵀ Ω e`` (the whitened squared residual, no robust kernel) at ``poses`` (default: the
    graph's): ``(E,)`` or ``(B, E)``; only the edges ``edges: (L,)`` (indices) when given, ``(..., L)``.
    No gradient is cut: detach ``poses`` to use it as a network's input."""
    e = graph.errors(poses)
    information = graph.information.to(e.dtype)
    if edges is not None:
        e, information = e[..., edges, :], information[..., edges, :, :]
    return torch.einsum("...ea,...eab,...eb->...e", e, information, e)


class ResidualEdgeWeightNet(nn.Module):
    """``(descriptors (..., F), chi2 (...)) -> weights (...)`` in ``(floor, floor + 1)``:
    ``floor + sigmoid(a·descriptor + g(log(1 + χ²)))`` with ``a`` linear (the log-odds of two Gaussian
    classes of descriptors is linear) and ``g`` a one-hidden-layer MLP of the residual (a learned kernel
    shape and scale).  The sum keeps the two pieces of evidence separate, so each trains on its own scale;
    ``g`` starts at ``initial_logit`` (weights ≈ ``sigmoid(initial_logit)``, near fixed weights)."""

    def __init__(self, features: int, hidden: int = 16, floor: float = 1e-4, initial_logit: float = 2.0):
        super().__init__()
        self.descriptor = nn.Linear(features, 1)
        self.residual = nn.Sequential(nn.Linear(1, hidden), nn.Tanh(), nn.Linear(hidden, 1))
        with torch.no_grad():
            self.residual[-1].bias.fill_(initial_logit)
        self.floor = floor

    def logits(self, descriptors: Tensor, chi2: Tensor) -> Tensor:
        """The two log-odds summed, ``(...)``."""
        residual = torch.log1p(chi2.to(descriptors.dtype)).unsqueeze(-1)  # χ² spans decades: its log
        return self.descriptor(descriptors).squeeze(-1) + self.residual(residual).squeeze(-1)

    def forward(self, descriptors: Tensor, chi2: Tensor) -> Tensor:
        return self.floor + torch.sigmoid(self.logits(descriptors, chi2))
