"""Cost terms: the ``Cost`` base class, the ``residual`` decorator, and the cost libraries."""

from .base import Cost, autodiff_jacobians, residual
from .kinematics import JointAcceleration, JointLimits, JointVelocity, LinkPose
from .pose_graph import Between, Prior
from .reprojection import BALReprojection, PinholeReprojection

__all__ = ["Cost", "residual", "autodiff_jacobians", "Between", "Prior", "BALReprojection", "PinholeReprojection",
           "LinkPose", "JointLimits", "JointVelocity", "JointAcceleration"]
