"""Robot kinematics: URDF trees (``read_urdf``), batched forward kinematics and body-frame Jacobians
(``Kinematics``)."""

from .forward import Kinematics
from .urdf import Joint, Robot, URDFError, read_urdf

__all__ = ["Kinematics", "Joint", "Robot", "URDFError", "read_urdf"]
