"""Our pose graphs as GTSAM sees them (for the tests that use GTSAM as the oracle)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from liegeo import SE3
from slam.pgo import PoseGraph


def gtsam_problem(gtsam, path: Path, is3d: bool):  # type: ignore[no-untyped-def]
    """GTSAM's reading of a g2o file, with pose 0 held by a constrained prior (our fixed first vertex)."""
    factors, initial = gtsam.readG2o(str(path), is3d)
    prior = gtsam.PriorFactorPose3 if is3d else gtsam.PriorFactorPose2
    at = initial.atPose3 if is3d else initial.atPose2
    factors.add(prior(0, at(0), gtsam.noiseModel.Constrained.All(6 if is3d else 3)))
    return factors, initial


def gtsam_values(gtsam, graph: PoseGraph):  # type: ignore[no-untyped-def]
    """``graph``'s poses as GTSAM ``Values`` keyed by the graph's vertex ids."""
    values = gtsam.Values()
    for k, m in zip(graph.ids.tolist(), graph.poses.matrix().numpy()):
        values.insert(k, gtsam_pose(gtsam, graph.group, m))
    return values


def gtsam_pose(gtsam, group: type, matrix):  # type: ignore[no-untyped-def]
    """One ``(d+1, d+1)`` homogeneous matrix as a GTSAM Pose2 / Pose3."""
    if group is SE3:
        return gtsam.Pose3(matrix)
    return gtsam.Pose2(matrix[0, 2], matrix[1, 2], float(np.arctan2(matrix[1, 0], matrix[0, 0])))


def gtsam_factors(gtsam, graph: PoseGraph, robust=None):  # type: ignore[no-untyped-def]
    """``graph``'s edges as GTSAM between factors with its information matrices (SE(3)'s reordered to
    GTSAM's ``(ω, v)`` tangent), each wrapped in ``noiseModel.Robust`` with the mEstimator ``robust`` when
    given, and its fixed poses as constrained priors at their values."""
    is3d = graph.group is SE3
    order = np.r_[3:6, 0:3] if is3d else np.arange(3)
    between = gtsam.BetweenFactorPose3 if is3d else gtsam.BetweenFactorPose2
    prior = gtsam.PriorFactorPose3 if is3d else gtsam.PriorFactorPose2
    factors = gtsam.NonlinearFactorGraph()
    ids, poses = graph.ids.tolist(), graph.poses.matrix().numpy()
    for i, j, z, info in zip(graph.i.tolist(), graph.j.tolist(), graph.measurements.matrix().numpy(),
                             graph.information.numpy()):
        noise = gtsam.noiseModel.Gaussian.Information(info[np.ix_(order, order)])
        if robust is not None:
            noise = gtsam.noiseModel.Robust.Create(robust, noise)
        factors.add(between(ids[i], ids[j], gtsam_pose(gtsam, graph.group, z), noise))
    for k in graph.fixed.tolist():
        factors.add(prior(ids[k], gtsam_pose(gtsam, graph.group, poses[k]), gtsam.noiseModel.Constrained.All(6 if is3d else 3)))
    return factors
