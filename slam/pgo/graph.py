"""``PoseGraph``: the data of a pose-graph problem, and its least-squares form.

A pose graph holds N poses of one group (``SE2`` or ``SE3``) and E relative-pose
measurements ``Z_e`` of pose ``j_e`` in the frame of pose ``i_e`` with information
matrices ``Ω_e`` in our tangent order (``liegeo.conventions``).  Its cost is
``½ Σ_e ρ(eᵀ Ω e)`` with the between error ``e = Log(Z⁻¹ X_i⁻¹ X_j)``;
``chi2 = Σ eᵀ Ω e`` (twice the cost without a robust kernel), as GTSAM's
``graph.error`` × 2 and g2o's ``chi2`` report it.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import torch
from torch import Tensor

from liegeo import SE2, SE3, LieGroup

from ..costs import Between
from ..problem import Problem
from ..robust import RobustLoss
from ..variables import Variable
from ..weights import SqrtInformation


@dataclasses.dataclass(frozen=True)
class PoseGraph:
    """Poses, edges, measurements and information of one pose graph (float64 as read)."""

    group: type[SE2] | type[SE3]
    ids: Tensor
    """``(N,)`` int64: the vertex ids of the file, in the order of ``poses``."""
    poses: LieGroup
    """``(N,)``: the initial guess (the file's vertices, or chained odometry when it has none)."""
    i: Tensor
    """``(E,)`` int64 index of each edge's first pose (into ``poses``, not ids)."""
    j: Tensor
    """``(E,)`` int64 index of each edge's second pose."""
    measurements: LieGroup
    """``(E,)``: ``Z_e ≈ X_i⁻¹ X_j``."""
    information: Tensor
    """``(E, d, d)``: symmetric positive definite, tangent order (translation, then rotation)."""
    fixed: Tensor
    """``(K,)`` int64 indices of poses held fixed (``FIX`` lines; else the first pose, the gauge)."""
    source: str | None = None
    """Where the graph was read from (for messages)."""
    has_vertices: bool = True
    """False when the file had no vertex lines and ``poses`` came from the odometry."""

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
        if type(poses) is not self.group or tuple(poses.shape) != (self.num_poses,):
            raise ValueError(f"expected {self.group.__name__} poses of shape ({self.num_poses},), "
                             f"got {type(poses).__name__} {tuple(poses.shape)}")
        return dataclasses.replace(self, poses=poses)

    def to(self, dtype: torch.dtype | None = None, device: torch.device | str | None = None) -> PoseGraph:
        device = torch.device(device) if device is not None else self.information.device
        dtype = dtype or self.information.dtype

        def move(x: LieGroup) -> LieGroup:
            return type(x)(x.data.to(device=device, dtype=dtype))

        return dataclasses.replace(
            self, poses=move(self.poses), measurements=move(self.measurements),
            information=self.information.to(device=device, dtype=dtype), i=self.i.to(device), j=self.j.to(device),
            ids=self.ids.to(device), fixed=self.fixed.to(device),
        )

    def problem(self, poses: LieGroup | None = None, *, loss: RobustLoss | None = None) -> tuple[Problem, Variable]:
        """The least-squares problem (one vectorized ``Between`` cost) and its pose variable."""
        variable = Variable(self.poses if poses is None else poses, fixed=self.fixed, name="pose")
        weight = SqrtInformation.from_information(self.information, what=f"{self.source or 'pose graph'}: information")
        cost = Between(variable[self.i], variable[self.j], measurement=self.measurements, weight=weight, loss=loss,
                       name="between")
        return Problem([cost]), variable

    def errors(self, poses: LieGroup | None = None) -> Tensor:
        """``(E, d)`` between errors ``Log(Z⁻¹ X_i⁻¹ X_j)`` at ``poses`` (default: the graph's)."""
        poses = self.poses if poses is None else poses
        return self.measurements.local(poses[self.i].between(poses[self.j]))

    def chi2(self, poses: LieGroup | None = None) -> float:
        """``Σ eᵀ Ω e`` over all edges (no robust kernel)."""
        e = self.errors(poses)
        return float(torch.einsum("ea,eab,eb->", e, self.information.to(e.dtype), e))

    def describe(self) -> str:
        dims = "2D" if self.group is SE2 else "3D"
        name = Path(self.source).name if self.source else "pose graph"
        loops = self.num_edges - int(self.odometry.sum())
        return (f"{name}: {dims}, {self.num_poses} poses, {self.num_edges} edges ({loops} loop closures), "
                f"{int(self.fixed.numel())} fixed")
