"""Pose graphs in g2o and TORO text files: ``read_g2o`` and ``write_g2o``.

Lines understood (blank lines and ``#`` comments are skipped; anything else is an error):

=================  =====================================================================
``VERTEX_SE2``     ``id x y θ``
``EDGE_SE2``       ``i j x y θ`` + upper triangle of Ω over (x, y, θ): I11 I12 I13 I22 I23 I33
``VERTEX_SE3:QUAT`` ``id x y z qx qy qz qw``
``EDGE_SE3:QUAT``  ``i j x y z qx qy qz qw`` + 21 upper-triangle entries of Ω, row by row
``FIX``            ``id [id ...]``: vertices held fixed
``VERTEX2``        TORO 2D vertex, as ``VERTEX_SE2``
``EDGE2``          TORO 2D edge ``i j x y θ`` + Ω in TORO's order: I11 I12 I22 I33 I13 I23
``VERTEX3``        TORO 3D vertex ``id x y z roll pitch yaw`` (R = Rz(yaw) Ry(pitch) Rx(roll))
``EDGE3``          TORO 3D edge ``i j x y z roll pitch yaw`` + 21 upper-triangle entries of Ω
=================  =====================================================================

Information matrices are taken in our tangent order (translation, then rotation) and
used unchanged on the full-angle between error of ``liegeo.conventions``, as GTSAM's
``readG2o`` does (GTSAM swaps the blocks into its own [ω, v] order), so chi² values and
optima equal GTSAM's.  Quaternions within 1e-3 of unit norm are normalized (files print
~6 digits); others are errors.

Every malformed line raises ``FormatError`` naming the file, the line and the field; so
do duplicate vertex ids, edges to missing vertices, self-loops, mixed 2D/3D lines and
information matrices that are not positive definite.  A file with edges but no vertices
gets its initial guess by chaining odometry along a spanning tree.
"""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from liegeo import SE2, SE3, SO3

from ..pgo.graph import PoseGraph
from .errors import FormatError, parse_number
from .files import atomic_write_text

__all__ = ["read_g2o", "write_g2o"]

QUATERNION_TOLERANCE = 1e-3


@dataclasses.dataclass(frozen=True)
class _Tag:
    group: type[SE2] | type[SE3]
    fields: tuple[str, ...]
    """Names of the numeric fields after the ids (for messages)."""
    ids: int
    """How many integer ids lead the line."""


_INFO2 = ("I11", "I12", "I13", "I22", "I23", "I33")
_INFO2_TORO = ("I11", "I12", "I22", "I33", "I13", "I23")
_INFO3 = tuple(f"I{r}{c}" for r in range(1, 7) for c in range(r, 7))
_TAGS = {
    "VERTEX_SE2": _Tag(SE2, ("x", "y", "theta"), 1),
    "VERTEX2": _Tag(SE2, ("x", "y", "theta"), 1),
    "EDGE_SE2": _Tag(SE2, ("x", "y", "theta") + _INFO2, 2),
    "EDGE2": _Tag(SE2, ("x", "y", "theta") + _INFO2_TORO, 2),
    "VERTEX_SE3:QUAT": _Tag(SE3, ("x", "y", "z", "qx", "qy", "qz", "qw"), 1),
    "VERTEX3": _Tag(SE3, ("x", "y", "z", "roll", "pitch", "yaw"), 1),
    "EDGE_SE3:QUAT": _Tag(SE3, ("x", "y", "z", "qx", "qy", "qz", "qw") + _INFO3, 2),
    "EDGE3": _Tag(SE3, ("x", "y", "z", "roll", "pitch", "yaw") + _INFO3, 2),
}


@dataclasses.dataclass
class _Rows:
    """What one kind of line contributed: ids, numbers and line numbers, in file order."""

    tags: list[str] = dataclasses.field(default_factory=list)
    ids: list[list[int]] = dataclasses.field(default_factory=list)
    values: list[list[float]] = dataclasses.field(default_factory=list)
    lines: list[int] = dataclasses.field(default_factory=list)


def read_g2o(path: str | os.PathLike[str]) -> PoseGraph:
    """Read a 2D or 3D pose graph from a g2o or TORO file (float64)."""
    path = str(path)
    vertices, edges = _Rows(), _Rows()
    fixed: list[tuple[int, int]] = []  # (id, line)
    group: type[SE2] | type[SE3] | None = None
    group_line = 0
    with open(path, encoding="utf-8") as f:
        for number, text in enumerate(f, start=1):
            tokens = text.split()
            if not tokens or tokens[0].startswith("#"):
                continue
            tag = tokens[0]
            if tag == "FIX":
                if len(tokens) < 2:
                    raise FormatError(path, number, "FIX needs at least one vertex id")
                fixed += [(_integer(path, number, tok, f"id {k + 1}"), number) for k, tok in enumerate(tokens[1:])]
                continue
            spec = _TAGS.get(tag)
            if spec is None:
                raise FormatError(path, number, f"unknown tag {tag!r} (known: {', '.join(_TAGS)}, FIX)")
            if group is None:
                group, group_line = spec.group, number
            elif spec.group is not group:
                raise FormatError(path, number, f"{tag} is {_dims(spec.group)} but line {group_line} made the "
                                                f"graph {_dims(group)}")
            expected = 1 + spec.ids + len(spec.fields)
            if len(tokens) != expected:
                raise FormatError(path, number, f"{tag} needs {expected - 1} fields after the tag "
                                                f"({spec.ids} id(s), {', '.join(spec.fields)}), got {len(tokens) - 1}")
            rows = edges if tag.startswith("EDGE") else vertices
            rows.tags.append(tag)
            rows.ids.append([_integer(path, number, tok, "id" if spec.ids == 1 else f"id{k + 1}")
                             for k, tok in enumerate(tokens[1:1 + spec.ids])])
            rows.values.append([parse_number(path, number, tok, name)
                                for tok, name in zip(tokens[1 + spec.ids:], spec.fields)])
            rows.lines.append(number)
    if group is None or not edges.lines:
        raise FormatError(path, 0, "no edges: not a pose graph (expected EDGE_SE2 / EDGE_SE3:QUAT / EDGE2 / EDGE3 lines)")
    return _assemble(path, group, vertices, edges, fixed)


def write_g2o(path: str | os.PathLike[str], graph: PoseGraph) -> Path:
    """Write ``graph`` (its current poses as vertices) in g2o's SE2 or SE3:QUAT tags, exactly:
    numbers are printed with 17 significant digits, so reading gives back the same graph.

    Refuses (``OutputPathError``) to write over ``graph.source``, the file it was read from (also
    through a hard or symbolic link); the file appears whole or not at all.
    """
    path = Path(path)
    if graph.batch_size is not None:
        raise ValueError(f"{path}: a g2o file holds one graph; write each of the batch's {graph.batch_size} "
                         "(graph.unstack())")
    poses, measurements = graph.poses, graph.measurements
    d = graph.information.shape[-1]
    upper = torch.triu_indices(d, d)
    information = graph.information.detach().cpu().double()[:, upper[0], upper[1]].numpy()
    ids = graph.ids.cpu().numpy()
    if graph.group is SE2:
        vertex_tag, edge_tag = "VERTEX_SE2", "EDGE_SE2"
        vertex_values = poses.xytheta().detach().cpu().double().numpy()
        edge_values = measurements.xytheta().detach().cpu().double().numpy()
    else:
        vertex_tag, edge_tag = "VERTEX_SE3:QUAT", "EDGE_SE3:QUAT"
        vertex_values = poses.data.detach().cpu().double().numpy()
        edge_values = measurements.data.detach().cpu().double().numpy()
    i, j = ids[graph.i.cpu().numpy()], ids[graph.j.cpu().numpy()]
    lines = [f"{vertex_tag} {k} {_join(v)}\n" for k, v in zip(ids, vertex_values)]
    lines += [f"FIX {k}\n" for k in ids[graph.fixed.cpu().numpy()]]
    lines += [f"{edge_tag} {a} {b} {_join(z)} {_join(o)}\n"
              for a, b, z, o in zip(i, j, edge_values, information)]
    # Written to a temporary beside it and renamed into place: never half a graph, never the source.
    return atomic_write_text(path, "".join(lines), inputs=[graph.source] if graph.source else [])


# ------------------------------------------------------------------------------ assembling


def _assemble(path: str, group: type[SE2] | type[SE3], vertices: _Rows, edges: _Rows,
              fixed: list[tuple[int, int]]) -> PoseGraph:
    edge_ids = np.asarray(edges.ids, dtype=np.int64)  # (E, 2)
    edge_lines = np.asarray(edges.lines)
    edge_values = torch.tensor(edges.values, dtype=torch.float64)
    self_loops = np.nonzero(edge_ids[:, 0] == edge_ids[:, 1])[0]
    if self_loops.size:
        k = self_loops[0]
        raise FormatError(path, int(edge_lines[k]), f"edge from vertex {edge_ids[k, 0]} to itself")

    if vertices.lines:
        ids = np.asarray([v[0] for v in vertices.ids], dtype=np.int64)
        order = np.argsort(ids, kind="stable")
        sorted_ids = ids[order]
        duplicate = np.nonzero(sorted_ids[1:] == sorted_ids[:-1])[0]
        if duplicate.size:
            first, second = sorted(order[duplicate[0]:duplicate[0] + 2])
            raise FormatError(path, vertices.lines[second], f"vertex {ids[second]} already defined on line "
                                                            f"{vertices.lines[first]}")
        index = _lookup(path, sorted_ids, order, edge_ids, edge_lines)
        poses = _vertex_poses(path, group, vertices)
    else:
        ids = np.unique(edge_ids)
        index = np.searchsorted(ids, edge_ids)
        poses = None

    tag_of_edges = edges.tags[0]
    spec = _TAGS[tag_of_edges]
    pose_fields = 3 if group is SE2 else (7 if "QUAT" in tag_of_edges else 6)
    measurements = _poses_from_fields(path, group, edge_values[:, :pose_fields], edges, spec)
    information = _information(path, group, edge_values[:, pose_fields:], edges)

    fixed_index = torch.zeros(0, dtype=torch.int64)
    if fixed:
        fixed_ids = np.asarray([f[0] for f in fixed], dtype=np.int64)
        fixed_index = torch.from_numpy(np.unique(_lookup(path, np.sort(ids), np.argsort(ids, kind="stable"),
                                                         fixed_ids[:, None], np.asarray([f[1] for f in fixed]),
                                                         what="FIX")[:, 0]))
    anchor = int(fixed_index[0]) if fixed_index.numel() else 0
    i, j = torch.from_numpy(index[:, 0].copy()), torch.from_numpy(index[:, 1].copy())
    if poses is None:
        from ..pgo.initialization import odometry_initialization

        poses = odometry_initialization(group, len(ids), i, j, measurements, anchor=anchor)
    return PoseGraph(
        group=group, ids=torch.from_numpy(np.asarray(ids, dtype=np.int64)), poses=poses, i=i, j=j,
        measurements=measurements, information=information,
        fixed=fixed_index if fixed_index.numel() else torch.tensor([anchor]), source=path,
        has_vertices=bool(vertices.lines),
    )


def _lookup(path: str, sorted_ids: np.ndarray, order: np.ndarray, wanted: np.ndarray, lines: np.ndarray,
            what: str = "edge") -> np.ndarray:
    """Indices (into the vertex list) of the ids in ``wanted: (K, m)``; an unknown id is an error."""
    position = np.clip(np.searchsorted(sorted_ids, wanted), 0, len(sorted_ids) - 1)
    missing = sorted_ids[position] != wanted
    if missing.any():
        k, c = (int(x) for x in np.argwhere(missing)[0])
        raise FormatError(path, int(lines[k]), f"{what} refers to vertex {wanted[k, c]}, which no VERTEX line defines")
    return order[position]


def _vertex_poses(path: str, group: type[SE2] | type[SE3], vertices: _Rows):
    values = torch.tensor(vertices.values, dtype=torch.float64)
    return _poses_from_fields(path, group, values, vertices, _TAGS[vertices.tags[0]])


def _poses_from_fields(path: str, group, values: Tensor, rows: _Rows, spec: _Tag):
    if group is SE2:
        return SE2.from_xytheta(values)
    if values.shape[-1] == 6:  # TORO: x y z roll pitch yaw
        rotation = SO3.from_rpy(values[:, 3], values[:, 4], values[:, 5])
        return SE3.from_rotation_translation(rotation, values[:, :3])
    norm = values[:, 3:].norm(dim=-1)
    bad = (norm - 1).abs() > QUATERNION_TOLERANCE
    if bool(bad.any()):
        k = int(torch.nonzero(bad)[0])
        raise FormatError(path, rows.lines[k], f"quaternion (qx, qy, qz, qw) has norm {float(norm[k]):.6g}, "
                                               f"not 1 (tolerance {QUATERNION_TOLERANCE})")
    return SE3(torch.cat([values[:, :3], values[:, 3:] / norm.unsqueeze(-1)], dim=-1))


def _information(path: str, group, upper_values: Tensor, edges: _Rows) -> Tensor:
    d = 3 if group is SE2 else 6
    if group is SE2:
        # per line, the positions of (I11 I12 I13 I22 I23 I33) among its fields
        toro = torch.tensor([tag == "EDGE2" for tag in edges.tags])
        g2o_order = torch.arange(6)
        toro_order = torch.tensor([_INFO2_TORO.index(name) for name in _INFO2])
        upper_values = torch.where(toro.unsqueeze(-1), upper_values[:, toro_order], upper_values[:, g2o_order])
    rows, cols = torch.triu_indices(d, d)
    information = torch.zeros(len(edges.lines), d, d, dtype=torch.float64)
    information[:, rows, cols] = upper_values
    information[:, cols, rows] = upper_values
    _, status = torch.linalg.cholesky_ex(information)
    bad = status > 0
    if bool(bad.any()):
        k = int(torch.nonzero(bad)[0])
        eigenvalues = torch.linalg.eigvalsh(information[k])
        raise FormatError(path, edges.lines[k], f"information matrix is not positive definite "
                                                f"(eigenvalues {', '.join(f'{float(v):.4g}' for v in eigenvalues)})")
    return information


# ------------------------------------------------------------------------------ fields


def _dims(group: type) -> str:
    return "2D" if group is SE2 else "3D"


def _integer(path: str, line: int, token: str, name: str) -> int:
    try:
        return int(token)
    except ValueError:
        raise FormatError(path, line, f"field {name} is not an integer id: {token!r}") from None


def _join(values: np.ndarray) -> str:
    return " ".join(repr(float(v)) for v in values)
