"""PLY point clouds written with numpy (no Open3D needed: ``slam ba`` runs from a bare install).

Binary little-endian, as Open3D, CloudCompare and MeshLab read it: ``x y z`` as doubles, then
``red green blue`` as bytes.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np


def write_point_cloud(path: str | os.PathLike, xyz: np.ndarray, rgb: np.ndarray) -> Path:
    """Write ``xyz: (N, 3)`` points with colours ``rgb: (N, 3)`` in [0, 1] to ``path``; returns it."""
    xyz, rgb = np.asarray(xyz, dtype=np.float64), np.asarray(rgb, dtype=np.float64)
    if xyz.ndim != 2 or xyz.shape[1] != 3 or rgb.shape != xyz.shape:
        raise ValueError(f"a point cloud needs xyz and rgb of shape (N, 3), got {xyz.shape} and {rgb.shape}")
    vertex = np.empty(len(xyz), dtype=[("x", "<f8"), ("y", "<f8"), ("z", "<f8"),
                                       ("red", "u1"), ("green", "u1"), ("blue", "u1")])
    for k, axis in enumerate("xyz"):
        vertex[axis] = xyz[:, k]
    for k, channel in enumerate(("red", "green", "blue")):
        vertex[channel] = np.clip(np.rint(rgb[:, k] * 255.0), 0, 255).astype(np.uint8)
    header = "\n".join([
        "ply", "format binary_little_endian 1.0", f"element vertex {len(xyz)}",
        "property double x", "property double y", "property double z",
        "property uchar red", "property uchar green", "property uchar blue", "end_header", "",
    ])
    path = Path(path)
    with open(path, "wb") as f:
        f.write(header.encode("ascii"))
        f.write(vertex.tobytes())
    return path
