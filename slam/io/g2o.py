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
do duplicate vertex ids, edges to missing vertices, self-loops and mixed 2D/3D lines.

Information matrices that are not positive definite (TORO's as g2o's) are an error by default
(``information="strict"``): it names the file, the line, the eigenvalues and the two ways out,

* ``information="nearest-pd"``: each matrix that fails Cholesky is replaced by
  ``V diag(max(λ, f)) Vᵀ`` (its symmetric eigen-decomposition with the eigenvalues clipped to the
  floor ``f = NEAREST_PD_FLOOR × λ_max`` of that matrix: the nearest matrix, in the Frobenius norm,
  whose eigenvalues are all ≥ f).  A matrix with no positive eigenvalue has no scale to clip to and
  stays an error.  Matrices that pass Cholesky keep every bit.
* ``information="isotropic"``: every edge (not only the bad ones) gets SE-Sync's isotropic weights
  (Rosen et al. 2019, ``read_g2o_file``): with Ω_t the translation block and Ω_R the rotation block
  of our tangent order, ``τ = d_t / tr(Ω_t⁻¹)`` and ``ω = d_R / tr(Ω_R⁻¹)`` (d_t, d_R = 2, 1 in 2D and
  3, 3 in 3D), and Ω becomes ``diag(τ I_t, ω I_R)``.  SE-Sync's κ is ``ω`` in 2D (its ``kappa = I33``)
  and ``ω / 2`` in 3D (its ``kappa = 3 / (2 tr(Ω_R⁻¹))``, the Langevin concentration of a cost
  ``κ‖R_j − R_i R̃‖_F² ≈ 2κ‖θ‖²``); ω is chosen so that an isotropic Ω is kept as it is.  An edge whose
  τ or ω is not positive and finite (a block with a zero eigenvalue, or indefinite enough) is an error.

The graph then carries an ``InformationRepair`` record (``PoseGraph.information_repair``: method,
edges repaired and changed, the smallest eigenvalue seen); ``write_g2o`` writes it as a ``#``
comment line, the first (the last for 2D graphs: GTSAM's 2D ``readG2o`` reads no edge after a
leading comment), and writes the repaired matrices.  A file with edges
but no vertices gets its initial guess by chaining odometry along a spanning tree (a
disconnected one raises ``DisconnectedGraphError`` naming the file).

Input: UTF-8 (a leading byte-order mark and CRLF line ends are fine; other bytes are an error
naming the line and the byte offset); numbers are ASCII (``slam.io.errors.NUMBER``: no ``1_0``,
no ``٣``), ids fit int64.  TORO and g2o tags of one dimension may be mixed line by line
(``EDGE3`` beside ``EDGE_SE3:QUAT``).  Huge but finite numbers are read; no conversion may turn
them into inf or nan (such a graph is refused).
"""

from __future__ import annotations

import dataclasses
import math
import os
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from liegeo import SE2, SE3, SO3

from ..pgo.graph import PoseGraph
from .errors import FormatError, parse_integer, parse_number, shorten
from .files import atomic_write_text
from .text import read_text, split_lines

__all__ = ["InformationRepair", "read_g2o", "write_g2o"]

QUATERNION_TOLERANCE = 1e-3
NEAREST_PD_FLOOR = 1e-6
"""``information="nearest-pd"`` clips each bad matrix's eigenvalues to this times its largest one."""
INFORMATION_MODES = ("strict", "nearest-pd", "isotropic")
_WAY_OUT = ("read it with --information nearest-pd (clip the eigenvalues) or --information isotropic "
            "(SE-Sync's tau/kappa weights), read_g2o(..., information=...) in Python")


@dataclasses.dataclass(frozen=True)
class InformationRepair:
    """What ``read_g2o(..., information="nearest-pd" | "isotropic")`` did to the information matrices."""

    method: str
    """``"nearest-pd"`` or ``"isotropic"``."""
    num_edges: int
    not_positive_definite: int
    """How many edges' matrices failed Cholesky (all replaced)."""
    changed: int
    """How many edges' matrices were replaced (``not_positive_definite`` for nearest-pd; every edge whose
    matrix was not already isotropic for isotropic)."""
    worst_eigenvalue: float | None
    """The smallest eigenvalue of the matrices that were not positive definite (None when all were)."""
    first_lines: tuple[int, ...] = ()
    """The file lines of the first (up to 10) edges that were not positive definite."""
    floor: float | None = None
    """nearest-pd's relative eigenvalue floor (``NEAREST_PD_FLOOR``)."""

    def summary(self) -> dict[str, object]:
        return dataclasses.asdict(self) | {"first_lines": list(self.first_lines)}

    def describe(self) -> str:
        worst = "" if self.worst_eigenvalue is None else f", smallest eigenvalue {self.worst_eigenvalue:.6g}"
        lines = f" (lines {', '.join(map(str, self.first_lines))}{', ...' if self.not_positive_definite > len(self.first_lines) else ''})" \
            if self.first_lines else ""
        floor = f", eigenvalue floor {self.floor:g} x the largest" if self.method == "nearest-pd" else ""
        return (f"information {self.method}: {self.not_positive_definite} of {self.num_edges} edges not positive "
                f"definite{lines}{worst}; {self.changed} matrices replaced{floor}")


@dataclasses.dataclass(frozen=True)
class _Tag:
    group: type[SE2] | type[SE3]
    fields: tuple[str, ...]
    """Names of the numeric fields after the ids (for messages)."""
    ids: int
    """How many integer ids lead the line."""

    @property
    def pose_width(self) -> int:
        """How many of ``fields`` are the pose (the rest is the information matrix)."""
        return sum(not name.startswith("I") for name in self.fields)

    def field_name(self, k: int) -> str:
        """The name of the k-th field after the tag (ids included), for messages."""
        if k < self.ids:
            return "id" if self.ids == 1 else f"id{k + 1}"
        return self.fields[k - self.ids]


_INFO2 = ("I11", "I12", "I13", "I22", "I23", "I33")
_INFO2_TORO = ("I11", "I12", "I22", "I33", "I13", "I23")
_TORO_TO_G2O = [_INFO2_TORO.index(name) for name in _INFO2]
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
    """What the vertex (or the edge) lines contributed, in file order: tag, fields after it, line number."""

    tags: list[str] = dataclasses.field(default_factory=list)
    fields: list[list[str]] = dataclasses.field(default_factory=list)
    lines: list[int] = dataclasses.field(default_factory=list)


def read_g2o(path: str | os.PathLike[str], *, information: str = "strict") -> PoseGraph:
    """Read a 2D or 3D pose graph from a g2o or TORO file (float64).

    ``information``: ``"strict"`` (default: a matrix that is not positive definite is a ``FormatError``),
    ``"nearest-pd"`` or ``"isotropic"`` (see the module's text); the graph's ``information_repair``
    then says what was done.
    """
    if information not in INFORMATION_MODES:
        raise ValueError(f"information must be one of {', '.join(INFORMATION_MODES)}, got {information!r}")
    path = str(path)
    text = read_text(path)
    ascii_text = text.isascii()
    vertices, edges = _Rows(), _Rows()
    fixed: list[tuple[int, int]] = []  # (id, line)
    group: type[SE2] | type[SE3] | None = None
    group_line = 0
    for number, line in enumerate(split_lines(text), start=1):
        tokens = line.split()
        if not tokens or tokens[0].startswith("#"):
            continue
        tag = tokens[0]
        if tag == "FIX":
            if len(tokens) < 2:
                raise FormatError(path, number, "FIX needs at least one vertex id")
            fixed += [(parse_integer(path, number, tok, f"id {k + 1}"), number) for k, tok in enumerate(tokens[1:])]
            continue
        spec = _TAGS.get(tag)
        if spec is None:
            raise FormatError(path, number, f"unknown tag {shorten(tag)} (known: {', '.join(_TAGS)}, FIX)")
        if group is None:
            group, group_line = spec.group, number
        elif spec.group is not group:
            raise FormatError(path, number, f"{tag} is {_dims(spec.group)} but line {group_line} made the "
                                            f"graph {_dims(group)}")
        expected = 1 + spec.ids + len(spec.fields)
        if len(tokens) != expected:
            raise FormatError(path, number, f"{tag} needs {expected - 1} fields after the tag "
                                            f"({spec.ids} id(s), {', '.join(spec.fields)}), got {len(tokens) - 1}")
        # numpy's casts below accept "1_0" and non-ASCII digits: lines that could hold them are
        # checked token by token (C-speed tests first, so ordinary files skip this)
        if not (ascii_text or line.isascii()) or line.count("_") != tag.count("_"):
            _check_fields(path, number, tokens[1:], spec)
        rows = edges if spec.ids == 2 else vertices
        rows.tags.append(tag)
        rows.fields.append(tokens[1:])
        rows.lines.append(number)
    vertex_numbers, edge_numbers = _numbers(vertices), _numbers(edges)
    if vertex_numbers is None or edge_numbers is None:  # name the first bad field (slow, only on failure)
        for fields, number, tag in sorted(zip(vertices.fields + edges.fields, vertices.lines + edges.lines,
                                              vertices.tags + edges.tags), key=lambda row: row[1]):
            _check_fields(path, number, fields, _TAGS[tag])
        raise AssertionError("unreachable: numpy refused fields that all parse")  # pragma: no cover
    if group is None or not edges.lines:
        raise FormatError(path, 0, "no edges: not a pose graph (expected EDGE_SE2 / EDGE_SE3:QUAT / EDGE2 / EDGE3 lines)")
    return _assemble(path, group, vertices, vertex_numbers, edges, edge_numbers, fixed, information)


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
    repair = getattr(graph, "information_repair", None)
    note = [f"# {repair.describe()} (liegeo-slam read_g2o; the matrices below are the repaired ones)\n"] \
        if repair is not None and repair.changed else []
    lines = [f"{vertex_tag} {k} {_join(v)}\n" for k, v in zip(ids, vertex_values)]
    lines += [f"{edge_tag} {a} {b} {_join(z)} {_join(o)}\n"
              for a, b, z, o in zip(i, j, edge_values, information)]
    # FIX last: GTSAM's 2D readG2o stops reading edges at the first line it does not know
    lines += [f"FIX {k}\n" for k in ids[graph.fixed.cpu().numpy()]]
    # the repair note first; last in 2D, where GTSAM's readG2o reads no edge after a leading comment
    lines = note + lines if graph.group is SE3 else lines + note
    # Written to a temporary beside it and renamed into place: never half a graph, never the source.
    return atomic_write_text(path, "".join(lines), inputs=[graph.source] if graph.source else [])


# ------------------------------------------------------------------------------ assembling


_Numbers = tuple[np.ndarray, dict[str, tuple[np.ndarray, np.ndarray]]]


def _assemble(path: str, group: type[SE2] | type[SE3], vertices: _Rows, vertex_numbers: _Numbers, edges: _Rows,
              edge_numbers: _Numbers, fixed: list[tuple[int, int]], mode: str = "strict") -> PoseGraph:
    edge_lines = np.asarray(edges.lines)
    edge_ids, edge_values = edge_numbers  # (E, 2), {tag: (rows, values)}
    self_loops = np.nonzero(edge_ids[:, 0] == edge_ids[:, 1])[0]
    if self_loops.size:
        k = self_loops[0]
        raise FormatError(path, int(edge_lines[k]), f"edge from vertex {edge_ids[k, 0]} to itself")

    if vertices.lines:
        vertex_ids, vertex_values = vertex_numbers
        ids = vertex_ids[:, 0]
        order = np.argsort(ids, kind="stable")
        sorted_ids = ids[order]
        duplicate = np.nonzero(sorted_ids[1:] == sorted_ids[:-1])[0]
        if duplicate.size:
            first, second = sorted(order[duplicate[0]:duplicate[0] + 2])
            raise FormatError(path, vertices.lines[second], f"vertex {ids[second]} already defined on line "
                                                            f"{vertices.lines[first]}")
        index = _lookup(path, sorted_ids, order, edge_ids, edge_lines)
        poses = _poses(path, group, vertices, vertex_values)
    else:
        ids = np.unique(edge_ids)
        index = np.searchsorted(ids, edge_ids)
        poses = None

    measurements = _poses(path, group, edges, edge_values)
    information, repair = _information(path, group, edges, edge_values, mode)

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

        poses = odometry_initialization(group, len(ids), i, j, measurements, anchor=anchor, source=path)
        if not bool(torch.isfinite(poses.data).all()):
            raise FormatError(path, 0, "chaining the odometry (the file has no vertices) overflows float64: "
                                       "the edges' translations are too large")
    return PoseGraph(
        group=group, ids=torch.from_numpy(np.asarray(ids, dtype=np.int64)), poses=poses, i=i, j=j,
        measurements=measurements, information=information,
        fixed=fixed_index if fixed_index.numel() else torch.tensor([anchor]), source=path,
        has_vertices=bool(vertices.lines), information_repair=repair,
    )


def _numbers(rows: _Rows) -> _Numbers | None:
    """The ids ``(K, m)`` int64 of the K rows, and per tag the indices of its rows and their numbers
    ``(k, fields)`` float64; None if some field is not an int64 id or a finite number.  Tags of one
    kind may mix (``EDGE3`` and ``EDGE_SE3:QUAT``): each is converted on its own, as their fields differ."""
    if not rows.lines:
        return np.zeros((0, 1), dtype=np.int64), {}
    m = _TAGS[rows.tags[0]].ids
    values: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    try:
        ids = np.array([f[:m] for f in rows.fields], dtype=np.int64)
        tags = list(dict.fromkeys(rows.tags))
        for tag in tags:
            if len(tags) == 1:
                where, fields = np.arange(len(rows.fields)), rows.fields
            else:
                where = np.flatnonzero(np.asarray(rows.tags) == tag)
                fields = [rows.fields[k] for k in where]
            numbers = np.array(fields, dtype=np.float64)[:, m:]  # ids parse as floats too; dropped
            if not np.isfinite(numbers).all():
                raise ValueError("not finite")
            values[tag] = (where, numbers)
    except (ValueError, OverflowError):
        return None
    return ids, values


def _lookup(path: str, sorted_ids: np.ndarray, order: np.ndarray, wanted: np.ndarray, lines: np.ndarray,
            what: str = "edge") -> np.ndarray:
    """Indices (into the vertex list) of the ids in ``wanted: (K, m)``; an unknown id is an error."""
    position = np.clip(np.searchsorted(sorted_ids, wanted), 0, len(sorted_ids) - 1)
    missing = sorted_ids[position] != wanted
    if missing.any():
        k, c = (int(x) for x in np.argwhere(missing)[0])
        raise FormatError(path, int(lines[k]), f"{what} refers to vertex {wanted[k, c]}, which no VERTEX line defines")
    return order[position]


def _poses(path: str, group: type[SE2] | type[SE3], rows: _Rows,
           values: dict[str, tuple[np.ndarray, np.ndarray]]) -> SE2 | SE3:
    """The poses ``(K,)`` of the rows, each tag's fields converted by its own rule."""
    # numpy where it can: under CPU contention torch's threaded kernels (> 32k elements) cost ~20 ms each
    data = np.empty((len(rows.lines), 4 if group is SE2 else 7))
    lines = np.asarray(rows.lines)
    for tag, (where, numbers) in values.items():
        data[where] = _poses_from_fields(path, group, numbers[:, :_TAGS[tag].pose_width], lines[where]).data.numpy()
    bad = ~np.isfinite(data).all(axis=-1)
    if bad.any():  # a safety net: the conversions above should keep finite numbers finite
        raise FormatError(path, int(lines[np.flatnonzero(bad)[0]]), "the pose is not finite after conversion")
    return group(torch.from_numpy(data))


def _poses_from_fields(path: str, group, values: np.ndarray, lines: np.ndarray):
    if group is SE2:
        return SE2.from_xytheta(torch.from_numpy(np.ascontiguousarray(values)))
    if values.shape[-1] == 6:  # TORO: x y z roll pitch yaw
        # SO3.exp squares the angle (nan beyond ~1e154): bring angles beyond a turn into [0, 2π) first
        # (only those, so that ordinary files keep every bit)
        angles = values[:, 3:]
        angles = torch.from_numpy(np.where(np.abs(angles) > 2 * math.pi, np.remainder(angles, 2 * math.pi), angles))
        rotation = SO3.from_rpy(angles[:, 0], angles[:, 1], angles[:, 2])
        return SE3.from_rotation_translation(rotation, torch.from_numpy(np.ascontiguousarray(values[:, :3])))
    # the largest component first, so that |q| neither overflows nor underflows for any finite q
    q = values[:, 3:]
    scale = np.abs(q).max(axis=-1, keepdims=True)
    norm = scale[:, 0] * np.linalg.norm(q / np.where(scale > 0, scale, 1.0), axis=-1)
    bad = ~(np.abs(norm - 1) <= QUATERNION_TOLERANCE)
    if bad.any():
        k = int(np.flatnonzero(bad)[0])
        raise FormatError(path, int(lines[k]), f"quaternion (qx, qy, qz, qw) has norm {float(norm[k]):.6g}, "
                                               f"not 1 (tolerance {QUATERNION_TOLERANCE})")
    return SE3(torch.from_numpy(np.concatenate([values[:, :3], q / norm[:, None]], axis=-1)))


def _information(path: str, group, edges: _Rows, values: dict[str, tuple[np.ndarray, np.ndarray]],
                 mode: str = "strict") -> tuple[Tensor, InformationRepair | None]:
    d = 3 if group is SE2 else 6
    upper = np.empty((len(edges.lines), d * (d + 1) // 2))
    for tag, (where, numbers) in values.items():
        block = numbers[:, _TAGS[tag].pose_width:]
        # TORO's EDGE2 orders the entries I11 I12 I22 I33 I13 I23; take them as I11 I12 I13 I22 I23 I33
        upper[where] = block[:, _TORO_TO_G2O] if tag == "EDGE2" else block
    rows, cols = np.triu_indices(d)  # row by row, as the files list them
    information = np.zeros((len(edges.lines), d, d))
    information[:, rows, cols] = upper
    information[:, cols, rows] = upper
    try:
        np.linalg.cholesky(information)
        bad = np.zeros(len(information), dtype=bool)
    except np.linalg.LinAlgError:  # which ones: only on failure
        bad = torch.linalg.cholesky_ex(torch.from_numpy(information)).info.numpy() > 0
        if not bad.any():  # pragma: no cover - the two factorizations disagree at the margin
            bad = np.array([not _is_pd(m) for m in information])
    lines = np.asarray(edges.lines)
    worst = None
    if bad.any():
        eigenvalues = _eigenvalues(information[bad])
        if mode == "strict":
            k = int(np.flatnonzero(bad)[0])
            shown = "" if eigenvalues is None else (
                f" (eigenvalues {', '.join(f'{v:.4g}' for v in eigenvalues[0])}; smallest {eigenvalues[0, 0]:.6g})")
            others = f"; {int(bad.sum())} of {len(bad)} edges are not" if bad.sum() > 1 else ""
            raise FormatError(path, int(lines[k]), f"information matrix is not positive definite{shown}{others}: "
                                                   f"{_WAY_OUT}")
        if eigenvalues is not None:
            worst = float(eigenvalues[:, 0].min())
    if mode == "strict":
        return torch.from_numpy(information), None
    if mode == "nearest-pd":
        changed = int(bad.sum())
        if bad.any():
            information[bad] = _nearest_pd(path, information[bad], lines[bad])
    else:
        before = information.copy()
        information = _isotropic(path, group, information, lines)
        changed = int((information != before).any(axis=(-1, -2)).sum())
    repair = InformationRepair(method=mode, num_edges=len(bad), not_positive_definite=int(bad.sum()), changed=changed,
                               worst_eigenvalue=worst, first_lines=tuple(int(x) for x in lines[bad][:10]),
                               floor=NEAREST_PD_FLOOR if mode == "nearest-pd" else None)
    return torch.from_numpy(information), repair


def _is_pd(matrix: np.ndarray) -> bool:
    try:
        np.linalg.cholesky(matrix)
    except np.linalg.LinAlgError:
        return False
    return True


def _eigenvalues(matrices: np.ndarray) -> np.ndarray | None:
    """Ascending eigenvalues ``(K, d)`` of symmetric matrices; None if LAPACK did not converge."""
    try:
        return np.linalg.eigvalsh(matrices)
    except np.linalg.LinAlgError:
        return None


def _nearest_pd(path: str, matrices: np.ndarray, lines: np.ndarray) -> np.ndarray:
    """``V diag(max(λ, NEAREST_PD_FLOOR λ_max)) Vᵀ`` of each symmetric matrix ``(K, d, d)``."""
    try:
        eigenvalues, vectors = np.linalg.eigh(matrices)
    except np.linalg.LinAlgError:
        raise FormatError(path, int(lines[0]), "information matrix: the eigen-decomposition of the matrices that are "
                                               "not positive definite did not converge") from None
    largest = eigenvalues[:, -1]
    hopeless = ~(largest > 0)
    if hopeless.any():
        k = int(np.flatnonzero(hopeless)[0])
        raise FormatError(path, int(lines[k]), "information matrix has no positive eigenvalue (eigenvalues "
                                               f"{', '.join(f'{v:.4g}' for v in eigenvalues[k])}): --information "
                                               "nearest-pd has no scale to clip to; fix the edge in the file")
    clipped = np.maximum(eigenvalues, (NEAREST_PD_FLOOR * largest)[:, None])
    repaired = np.einsum("kab,kb,kcb->kac", vectors, clipped, vectors)
    repaired = 0.5 * (repaired + repaired.transpose(0, 2, 1))
    for k, matrix in enumerate(repaired):
        if not _is_pd(matrix):  # pragma: no cover - a floor of 1e-6 keeps the condition number at 1e6
            raise FormatError(path, int(lines[k]), "information matrix: still not positive definite after "
                                                   "clipping its eigenvalues")
    return repaired


def _isotropic(path: str, group, information: np.ndarray, lines: np.ndarray) -> np.ndarray:
    """SE-Sync's isotropic information ``diag(τ I_t, ω I_R)`` of each matrix (see the module's text)."""
    t = 2 if group is SE2 else 3
    d = information.shape[-1]
    weights = []
    for block, name in ((information[:, :t, :t], "translation (tau)"), (information[:, t:, t:], "rotation (kappa)")):
        with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
            try:
                trace = np.trace(np.linalg.inv(block), axis1=-2, axis2=-1)
            except np.linalg.LinAlgError:  # a singular block somewhere: one by one
                trace = np.array([np.trace(np.linalg.inv(b)) if np.linalg.matrix_rank(b) == b.shape[-1] else np.inf
                                  for b in block])
            weight = block.shape[-1] / trace
        bad = ~(np.isfinite(weight) & (weight > 0))
        if bad.any():
            k = int(np.flatnonzero(bad)[0])
            raise FormatError(path, int(lines[k]), f"information matrix: the isotropic {name} weight "
                                                   f"{block.shape[-1]} / trace(inverse block) = {weight[k]:.4g} is not "
                                                   "positive; read it with --information nearest-pd")
        weights.append(weight)
    diagonal = np.concatenate([np.repeat(weights[0][:, None], t, axis=1),
                               np.repeat(weights[1][:, None], d - t, axis=1)], axis=1)
    isotropic = np.zeros_like(information)
    isotropic[:, np.arange(d), np.arange(d)] = diagonal
    # matrices that are isotropic already keep their bits (τ = t / (t / τ) may differ in the last one)
    same = (np.abs(isotropic - information) <= 1e-12 * np.abs(information).max(axis=(-1, -2), keepdims=True)).all(
        axis=(-1, -2))
    isotropic[same] = information[same]
    return isotropic


# ------------------------------------------------------------------------------ fields


def _dims(group: type) -> str:
    return "2D" if group is SE2 else "3D"


def _check_fields(path: str, line: int, fields: list[str], spec: _Tag) -> None:
    """Raise ``FormatError`` for the first of a line's fields (after the tag) that is not an int64 id or
    a finite number of the ASCII grammar (``errors.NUMBER``)."""
    for k, token in enumerate(fields):
        if k < spec.ids:
            parse_integer(path, line, token, spec.field_name(k))
        else:
            parse_number(path, line, token, spec.field_name(k))


def _join(values: np.ndarray) -> str:
    return " ".join(repr(float(v)) for v in values)
