"""Cost terms: the ``Cost`` base class, the ``residual`` decorator, and the cost libraries."""

from .base import Cost, Linearization, autodiff_jacobians, kernel_inputs_ok, residual
from .kinematics import JointAcceleration, JointLimits, JointVelocity, LinkPose
from .pose_graph import Between, Prior
from .reprojection import BALReprojection, PinholeReprojection

__all__ = ["Cost", "Linearization", "residual", "autodiff_jacobians", "kernel_inputs_ok", "Between", "Prior", "BALReprojection", "PinholeReprojection",
           "LinkPose", "JointLimits", "JointVelocity", "JointAcceleration"]
