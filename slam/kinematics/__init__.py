"""Robot kinematics: URDF trees (``read_urdf``), batched forward kinematics and body-frame Jacobians
(``Kinematics``), inverse kinematics by LM (``inverse_kinematics``)."""

from .forward import Kinematics
from .ik import IKResult, inverse_kinematics
from .urdf import Joint, Robot, URDFError, read_urdf

__all__ = ["Kinematics", "IKResult", "inverse_kinematics", "Joint", "Robot", "URDFError", "read_urdf"]
