"""``PoseGraph``: the data of a pose-graph problem, and its least-squares form.

A pose graph holds N poses of one group (``SE2`` or ``SE3``) and E relative-pose
measurements ``Z_e`` of pose ``j_e`` in the frame of pose ``i_e`` with information
matrices ``Ω_e`` in our tangent order (``liegeo.conventions``).  Its cost is
``½ Σ_e ρ(eᵀ Ω e)`` with the between error ``e = Log(Z⁻¹ X_i⁻¹ X_j)``;
``chi2 = Σ eᵀ Ω e`` (twice the cost without a robust kernel), as GTSAM's
``graph.error`` × 2 and g2o's ``chi2`` report it.

Batches: ``PoseGraph.stack`` makes one graph of B graphs with the same edges (same ``i``, ``j``,
``ids``, ``fixed``) and their own poses ``(B, N)``, measurements ``(B, E)`` and information
``(B, E, d, d)``; ``problem`` and ``slam.pgo.optimize`` then solve all B in one batched call.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import TYPE_CHECKING

import torch
from torch import Tensor

from liegeo import SE2, SE3, LieGroup

from ..costs import Between
from ..problem import Problem
from ..robust import RobustLoss
from ..variables import Variable
from ..weights import SqrtInformation

if TYPE_CHECKING:
    from ..io.g2o import InformationRepair


@dataclasses.dataclass(frozen=True)
class PoseGraph:
    """Poses, edges, measurements and information of one pose graph (float64 as read)."""

    group: type[SE2] | type[SE3]
    ids: Tensor
    """``(N,)`` int64: the vertex ids of the file, in the order of ``poses``."""
    poses: LieGroup
    """``(N,)`` or ``(B, N)``: the initial guess (the file's vertices, or chained odometry when it has none)."""
    i: Tensor
    """``(E,)`` int64 index of each edge's first pose (into ``poses``, not ids)."""
    j: Tensor
    """``(E,)`` int64 index of each edge's second pose."""
    measurements: LieGroup
    """``(E,)`` or ``(B, E)``: ``Z_e ≈ X_i⁻¹ X_j``."""
    information: Tensor
    """``(E, d, d)`` or ``(B, E, d, d)``: symmetric positive definite, tangent order (translation, then
    rotation)."""
    fixed: Tensor
    """``(K,)`` int64 indices of poses held fixed (``FIX`` lines; else the first pose, the gauge)."""
    source: str | None = None
    """Where the graph was read from (for messages)."""
    has_vertices: bool = True
    """False when the file had no vertex lines and ``poses`` came from the odometry."""
    information_repair: InformationRepair | None = None
    """What ``read_g2o(..., information="nearest-pd" | "isotropic")`` did to the information (None: as read)."""

    @property
    def batch_size(self) -> int | None:
        """B for a stack of graphs (``PoseGraph.stack``), None for a single graph."""
        return int(self.poses.shape[0]) if len(self.poses.shape) == 2 else None

    @classmethod
    def stack(cls, graphs: list[PoseGraph]) -> PoseGraph:
        """One batched graph of single graphs that share their edges and fixed poses."""
        if not graphs:
            raise ValueError("stack needs at least one graph")
        first = graphs[0]
        for k, g in enumerate(graphs):
            if g.batch_size is not None:
                raise ValueError(f"graph {k} is already a batch")
            same = (g.group is first.group and g.num_poses == first.num_poses and g.num_edges == first.num_edges
                    and all(torch.equal(a, b) for a, b in ((g.i, first.i), (g.j, first.j), (g.ids, first.ids),
                                                           (g.fixed, first.fixed))))
            if not same:
                raise ValueError(f"graph {k} ({g.source or 'unnamed'}) does not have the structure of graph 0 "
                                 "(group, vertex ids, edges and fixed poses must be equal)")
        group = first.group
        return dataclasses.replace(
            first, poses=group(torch.stack([g.poses.data for g in graphs])),
            measurements=group(torch.stack([g.measurements.data for g in graphs])),
            information=torch.stack([g.information for g in graphs]),
        )

    def unstack(self) -> list[PoseGraph]:
        """The single graphs of a batch (a single graph gives ``[self]``)."""
        if self.batch_size is None:
            return [self]
        info = self.information if self.information.dim() == 4 else self.information.expand(self.batch_size, -1, -1, -1)
        measurements = self.measurements.data.expand(self.batch_size, self.num_edges, -1)
        return [dataclasses.replace(self, poses=self.group(self.poses.data[b]),
                                    measurements=self.group(measurements[b]), information=info[b])
                for b in range(self.batch_size)]

    @property
    def num_poses(self) -> int:
        return int(self.ids.numel())

    @property
    def num_edges(self) -> int:
        return int(self.i.numel())

    @property
    def odometry(self) -> Tensor:
        """``(E,)`` bool: edges between consecutive vertex ids (the rest are loop closures)."""
        return (self.ids[self.j] - self.ids[self.i]).abs() == 1

    def with_poses(self, poses: LieGroup) -> PoseGraph:
        """The same graph with other poses (e.g. an optimized or re-initialized set)."""
        if type(poses) is not self.group or tuple(poses.shape) != tuple(self.poses.shape):
            raise ValueError(f"expected {self.group.__name__} poses of shape {tuple(self.poses.shape)}, "
                             f"got {type(poses).__name__} {tuple(poses.shape)}")
        return dataclasses.replace(self, poses=poses)

    def to(self, dtype: torch.dtype | None = None, device: torch.device | str | None = None) -> PoseGraph:
        """The graph in ``dtype`` on ``device``; itself where it is there already (so that what it keeps for
        the next ``problem``, the factorized information, stays with it)."""
        device = torch.device(device) if device is not None else self.information.device
        dtype = dtype or self.information.dtype
        floating = (self.poses.data, self.measurements.data, self.information)
        if (all(t.dtype == dtype and t.device == device for t in floating)
                and all(t.device == device for t in (self.i, self.j, self.ids, self.fixed))):
            return self

        def move(x: LieGroup) -> LieGroup:
            return type(x)(x.data.to(device=device, dtype=dtype))

        return dataclasses.replace(
            self, poses=move(self.poses), measurements=move(self.measurements),
            information=self.information.to(device=device, dtype=dtype), i=self.i.to(device), j=self.j.to(device),
            ids=self.ids.to(device), fixed=self.fixed.to(device),
        )

    def problem(self, poses: LieGroup | None = None, *, loss: RobustLoss | None = None,
                edge_weights: Tensor | None = None) -> tuple[Problem, Variable]:
        """The least-squares problem (one vectorized ``Between`` cost) and its pose variable.

        ``edge_weights: (E,)`` or ``(B, E)``, positive, scale each edge's information (``w_e Ω_e``); they
        may come from a network and require grad (``slam.learning``): gradients of the solution flow
        to them, as they do to ``measurements`` and ``poses`` that require grad.
        """
        variable = Variable(self.poses if poses is None else poses, fixed=self.fixed, name="pose")
        weight = self._sqrt_information()
        if edge_weights is not None:
            weight = weight.scaled(edge_weights.sqrt())
        cost = Between(variable[self.i], variable[self.j], measurement=self.measurements, weight=weight, loss=loss,
                       name="between")
        return Problem([cost]), variable

    def _sqrt_information(self) -> SqrtInformation:
        """``SqrtInformation.from_information`` of the edges' information, kept for the next ``problem``
        while the tensor is unchanged (its version counter) and has no graph (one that requires grad is
        factorized anew each time, so that every training step differentiates its own)."""
        information = self.information
        key = (information._version, information.dtype, information.device)
        cached = self.__dict__.get("_sqrt_information_cache")
        if cached is not None and cached[0] == key and not information.requires_grad:
            return cached[1]
        weight = SqrtInformation.from_information(information, what=f"{self.source or 'pose graph'}: information")
        if not information.requires_grad:
            self.__dict__["_sqrt_information_cache"] = (key, weight)  # (a frozen dataclass: not a field)
        return weight

    def errors(self, poses: LieGroup | None = None) -> Tensor:
        """``(E, d)`` (or ``(B, E, d)``) between errors ``Log(Z⁻¹ X_i⁻¹ X_j)`` at ``poses`` (default: the
        graph's)."""
        poses = self.poses if poses is None else poses
        return self.measurements.local(poses[..., self.i].between(poses[..., self.j]))

    def chi2_per_graph(self, poses: LieGroup | None = None) -> Tensor:
        """``Σ eᵀ Ω e`` over the edges of each graph (no robust kernel): ``()`` or ``(B,)``."""
        e = self.errors(poses)
        return torch.einsum("...ea,...eab,...eb->...", e, self.information.to(e.dtype), e)

    def chi2(self, poses: LieGroup | None = None) -> float:
        """``Σ eᵀ Ω e`` over all edges (of all graphs of a batch; no robust kernel)."""
        return float(self.chi2_per_graph(poses).sum())

    def describe(self) -> str:
        dims = "2D" if self.group is SE2 else "3D"
        name = Path(self.source).name if self.source else "pose graph"
        if self.batch_size is not None:
            name = f"{self.batch_size} x {name}"
        loops = self.num_edges - int(self.odometry.sum())
        return (f"{name}: {dims}, {self.num_poses} poses, {self.num_edges} edges ({loops} loop closures), "
                f"{int(self.fixed.numel())} fixed")
