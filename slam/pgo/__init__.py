"""Pose-graph optimization: the ``PoseGraph`` data, initial guesses, and the LM driver."""

from .graph import PoseGraph
from .initialization import DisconnectedGraphError, chordal_initialization, odometry_initialization
from .optimize import PgoResult, initialize, optimize
from .synthetic import OutlierBatch, synthetic_batch, synthetic_graph, synthetic_outlier_batch

__all__ = ["PoseGraph", "chordal_initialization", "odometry_initialization", "DisconnectedGraphError",
           "PgoResult", "initialize", "optimize", "synthetic_graph", "synthetic_batch",
           "OutlierBatch", "synthetic_outlier_batch"]
