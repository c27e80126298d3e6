"""Reading and writing files: pose graphs (g2o, TORO), trajectories (TUM, KITTI), bundle adjustment (BAL); every malformed
line raises ``FormatError`` naming the file, the line and the field; every writer writes through a
temporary renamed into place and refuses (``OutputPathError``) to write over the file it read."""

from .bal import read_bal, write_bal
from .errors import FormatError
from .files import OutputPathError, atomic_write_text, same_file
from .g2o import read_g2o, write_g2o
from .trajectory import Trajectory, detect_format, read_kitti, read_trajectory, read_tum, write_kitti, write_tum

__all__ = [
    "FormatError", "OutputPathError", "atomic_write_text", "same_file", "read_g2o", "write_g2o", "read_bal", "write_bal",
    "Trajectory", "read_tum", "write_tum", "read_kitti", "write_kitti", "read_trajectory", "detect_format",
]
