"""Reading and writing files: pose graphs (g2o, TORO), trajectories (TUM, KITTI), bundle adjustment (BAL); every malformed
line raises ``FormatError`` naming the file, the line and the field."""

from .bal import read_bal, write_bal
from .errors import FormatError
from .g2o import read_g2o, write_g2o
from .trajectory import Trajectory, detect_format, read_kitti, read_trajectory, read_tum, write_kitti, write_tum

__all__ = [
    "FormatError", "read_g2o", "write_g2o", "read_bal", "write_bal",
    "Trajectory", "read_tum", "write_tum", "read_kitti", "write_kitti", "read_trajectory", "detect_format",
]
