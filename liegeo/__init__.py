"""Batched Lie groups for optimization: SO(2), SE(2), SO(3), SE(3) and R^n in PyTorch.

Every element is a frozen dataclass over one tensor ``data: (*batch, param_dim)``,
with analytic Jacobians with respect to right tangent perturbations.  All
conventions (storage, quaternion order (x, y, z, w), tangent order (translation,
rotation), ``x ⊕ δ = x · Exp(δ)``, Jacobian shapes, file layouts) are stated in
``liegeo.conventions``.
"""

from ._base import LieGroup, SEBase
from .euclidean import Euclidean
from .se2 import SE2
from .se3 import SE3
from .so2 import SO2
from .so3 import SO3

__all__ = ["LieGroup", "SEBase", "SO2", "SE2", "SO3", "SE3", "Euclidean"]
__version__ = "0.1.0"
