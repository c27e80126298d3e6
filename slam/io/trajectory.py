"""Pose trajectories in TUM and KITTI text files: ``read_tum``, ``write_tum``, ``read_kitti``, ``write_kitti``.

=========  ======================================================================
TUM        ``timestamp tx ty tz qx qy qz qw`` per line: columns 1..7 are the SE3
           storage vector of ``liegeo.conventions``.
KITTI      12 numbers per line: the row-major top 3 x 4 block ``[R | t]`` of
           ``SE3.matrix()``; no timestamps.
=========  ======================================================================

In both formats ``#`` starts a comment running to the end of the line, blank lines
are skipped, and fields are separated by whitespace or commas (as in TUM's own
``associate.py``).  Values are read as float64.

Planar trajectories: ``write_tum`` adds a comment line ``# plane: xy`` (or ``xz``,
``yz``) when every position lies exactly in that coordinate plane and every rotation
turns about its normal, as a 2D pose graph lifted to SE(3) does; ``declared_plane``
reads it back (readers skip it as any other comment).  KITTI trajectories, in the
camera frame (x right, y down, z forward), lie about the x-z plane instead.

Tolerances: a TUM quaternion must have a norm within ``UNIT_TOLERANCE`` (1e-3) of 1
and is then normalized (TUM files print 4 to 6 digits, so |q| is off by up to
~1e-4); a KITTI rotation block must satisfy ``max |R Rᵀ - I| <= UNIT_TOLERANCE`` and
``det R > 0`` and is then projected onto the nearest rotation (SVD).  Quaternions
already unit to a few ulp are kept bit for bit, so ``write_tum`` then ``read_tum``
gives back exactly the same numbers (numbers are printed with ``repr``, the
shortest string that reads back to the same float64).

Every malformed line raises ``FormatError`` naming the file, the 1-based line and
the reason: wrong field count, a field that is not a number or not finite, a
quaternion or rotation far from unit / orthonormal, a timestamp not greater than
the previous one.  Numbers are ASCII (``slam.io.errors.NUMBER``: no ``1_0``, no ``٣``);
text is UTF-8 (a leading byte-order mark and CRLF line ends are fine, other bytes are
an error naming the line and the byte offset).  Input files are only ever opened for
reading.
"""

from __future__ import annotations

import dataclasses
import os
import re
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
from torch import Tensor

from liegeo import SE3, SO3

from .errors import FormatError, parse_number
from .files import atomic_write_text
from .text import read_text, split_lines, strict_tokens_ok

__all__ = ["Trajectory", "read_tum", "write_tum", "read_kitti", "write_kitti", "read_trajectory", "detect_format",
           "declared_plane", "exact_plane", "PLANES"]

UNIT_TOLERANCE = 1e-3
"""How far a quaternion norm (TUM) or ``R Rᵀ`` (KITTI) may be from unit before it is an error."""

_TUM_FIELDS = ("timestamp", "tx", "ty", "tz", "qx", "qy", "qz", "qw")
_KITTI_FIELDS = ("r11", "r12", "r13", "tx", "r21", "r22", "r23", "ty", "r31", "r32", "r33", "tz")
_KEEP_ULPS = 8 * float(np.finfo(np.float64).eps)
"""Quaternions whose norm is this close to 1 are stored unchanged (exact round trips)."""

Format = Literal["tum", "kitti"]
PathLike = str | os.PathLike[str]
Plane = Literal["xy", "xz", "yz"]

PLANES: dict[str, int] = {"xy": 2, "xz": 1, "yz": 0}
"""Each coordinate plane and the index of its normal axis (x 0, y 1, z 2)."""

_PLANE_COMMENT = re.compile(r"#\s*plane\s*:\s*(xy|xz|yz)\s*$", re.IGNORECASE)


@dataclasses.dataclass(frozen=True, eq=False)
class Trajectory:
    """A sequence of N poses, with optional timestamps.

    Attributes:
        timestamps: ``(N,)`` float64 seconds, strictly increasing when read from a file;
            ``None`` for KITTI files.
        poses: ``SE3`` of batch shape ``(N,)``: the pose of the body in the world frame.
    """

    timestamps: Tensor | None
    poses: SE3

    def __post_init__(self) -> None:
        if not isinstance(self.poses, SE3) or self.poses.ndim != 1:
            raise ValueError(f"Trajectory.poses must be an SE3 batch of shape (N,), got {self.poses!r:.80}")
        if self.timestamps is not None and tuple(self.timestamps.shape) != (len(self.poses),):
            raise ValueError(f"Trajectory.timestamps must have shape ({len(self.poses)},), "
                             f"got {tuple(self.timestamps.shape)}")

    def __len__(self) -> int:
        return len(self.poses)

    def __getitem__(self, index: Any) -> Trajectory:
        """The sub-trajectory at ``index`` (a slice or an index tensor over the N poses)."""
        stamps = None if self.timestamps is None else self.timestamps[index]
        return Trajectory(stamps, self.poses[index])


# ------------------------------------------------------------------------------ reading


def read_tum(path: PathLike) -> Trajectory:
    """Read a TUM file ``timestamp tx ty tz qx qy qz qw`` (float64; timestamps strictly increasing)."""
    path = str(path)
    values, lines = _read_table(path, _TUM_FIELDS, other=("KITTI", len(_KITTI_FIELDS)))
    stamps, q = values[:, 0], values[:, 4:]
    step = np.diff(stamps)
    if (bad := np.flatnonzero(~(step > 0))).size:
        k = bad[0] + 1
        raise FormatError(path, lines[k], f"timestamp {float(stamps[k])!r} is not greater than the previous one "
                                          f"({float(stamps[k - 1])!r} on line {lines[k - 1]})")
    with np.errstate(over="ignore"):  # |q| of huge components is inf: refused below
        norm = np.linalg.norm(q, axis=1)
    if (bad := np.flatnonzero(~(np.abs(norm - 1.0) <= UNIT_TOLERANCE))).size:
        k = bad[0]
        raise FormatError(path, lines[k], f"quaternion (qx, qy, qz, qw) has norm {norm[k]:.6g}, "
                                          f"not within {UNIT_TOLERANCE:g} of 1")
    rescale = np.abs(norm - 1.0) > _KEEP_ULPS
    values[rescale, 4:] /= norm[rescale, None]
    data = torch.from_numpy(values)
    return Trajectory(data[:, 0].clone(), SE3(data[:, 1:].clone()))


def read_kitti(path: PathLike) -> Trajectory:
    """Read a KITTI file (12 numbers per line, row-major ``[R | t]``); float64, no timestamps."""
    path = str(path)
    values, lines = _read_table(path, _KITTI_FIELDS, other=("TUM", len(_TUM_FIELDS)))
    m = values.reshape(-1, 3, 4)
    r = m[:, :, :3]
    with np.errstate(over="ignore", invalid="ignore"):  # huge entries give inf or nan here: refused below
        off = np.abs(r @ r.transpose(0, 2, 1) - np.eye(3)).max(axis=(1, 2))
    if (bad := np.flatnonzero(~(off <= UNIT_TOLERANCE))).size:
        k = bad[0]
        raise FormatError(path, lines[k], f"rotation block is not orthonormal: max |R Rᵀ - I| = {off[k]:.3g} "
                                          f"> {UNIT_TOLERANCE:g}")
    det = np.linalg.det(r)
    if (bad := np.flatnonzero(det <= 0)).size:
        k = bad[0]
        raise FormatError(path, lines[k], f"rotation block has determinant {det[k]:.6g}: a reflection, not a rotation")
    rotation = SO3.from_matrix(torch.from_numpy(r), project=True)
    return Trajectory(None, SE3.from_rotation_translation(rotation, torch.from_numpy(m[:, :, 3].copy())))


def detect_format(path: PathLike) -> Format:
    """``"tum"`` if the first data line has 8 fields, ``"kitti"`` if it has 12."""
    path = str(path)
    for number, text in enumerate(split_lines(read_text(path)), start=1):
        tokens = _tokens(text)
        if not tokens:
            continue
        if len(tokens) == len(_TUM_FIELDS):
            return "tum"
        if len(tokens) == len(_KITTI_FIELDS):
            return "kitti"
        raise FormatError(path, number, f"{len(tokens)} fields: neither TUM (8: {' '.join(_TUM_FIELDS)}) "
                                        f"nor KITTI (12: row-major 3 x 4 pose)")
    raise FormatError(path, 0, "no poses: the file is empty or only comments")


def declared_plane(path: PathLike) -> Plane | None:
    """The plane named by a ``# plane: xy`` (``xz``, ``yz``) comment line of ``path`` (as ``write_tum``
    writes for planar trajectories), or ``None`` when it has none.  Other comments are ignored."""
    for line in split_lines(read_text(str(path))):
        if (match := _PLANE_COMMENT.match(line.strip())) is not None:
            return match.group(1).lower()  # type: ignore[return-value]
    return None


def exact_plane(poses: SE3) -> Plane | None:
    """The coordinate plane in which ``poses (N,)`` lie exactly: one position coordinate is the same
    for all and every rotation turns about that axis (its two other quaternion components are 0),
    as for SE(2) poses lifted to SE(3).  ``None`` otherwise (or for no poses)."""
    data = poses.data.detach()
    if data.ndim != 2 or len(data) == 0:
        return None
    for name, k in PLANES.items():
        others = [3 + a for a in range(3) if a != k]
        if bool((data[:, k] == data[0, k]).all()) and bool((data[:, others] == 0).all()):
            return name  # type: ignore[return-value]
    return None


def read_trajectory(path: PathLike, format: Literal["auto", "tum", "kitti"] = "auto") -> Trajectory:
    """Read a TUM or KITTI file; ``"auto"`` decides by ``detect_format``."""
    kind = detect_format(path) if format == "auto" else format
    if kind == "tum":
        return read_tum(path)
    if kind == "kitti":
        return read_kitti(path)
    raise ValueError(f"unknown trajectory format {format!r} (auto, tum, kitti)")


def _tokens(text: str) -> list[str]:
    return text.split("#", 1)[0].replace(",", " ").split()


def _read_table(path: str, fields: tuple[str, ...], other: tuple[str, int]) -> tuple[np.ndarray, np.ndarray]:
    """The data lines of ``path`` as ``(M, len(fields))`` float64 values and their 1-based line numbers ``(M,)``."""
    rows: list[list[str]] = []
    lines: list[int] = []
    text = read_text(path)
    for number, line in enumerate(split_lines(text), start=1):
        tokens = _tokens(line)
        if not tokens:
            continue
        if len(tokens) != len(fields):
            hint = f" (a {other[0]} line?)" if len(tokens) == other[1] else ""
            raise FormatError(path, number, f"expected {len(fields)} fields ({' '.join(fields)}), "
                                            f"got {len(tokens)}{hint}")
        rows.append(tokens)
        lines.append(number)
    if not rows:
        raise FormatError(path, 0, "no poses: the file is empty or only comments")
    if not strict_tokens_ok(text):  # numpy's cast takes "1_0" and non-ASCII digits: check each token
        _check_fields(path, rows, lines, fields)
    try:
        values = np.array(rows, dtype=np.float64)
    except ValueError:
        values = None  # one bad token somewhere: find it for the message below
    if values is None or not np.isfinite(values).all():
        _check_fields(path, rows, lines, fields)
        raise AssertionError("unreachable: numpy rejected a table whose every field parses")  # pragma: no cover
    return values, np.asarray(lines)


def _check_fields(path: str, rows: list[list[str]], lines: list[int], fields: tuple[str, ...]) -> None:
    """Raise ``FormatError`` at the first field that is not a finite number of ``errors.NUMBER``."""
    for tokens, number in zip(rows, lines):
        for token, name in zip(tokens, fields):
            parse_number(path, number, token, name)


# ------------------------------------------------------------------------------ writing


def write_tum(path: PathLike, trajectory: Trajectory, *, plane: Plane | Literal["auto"] | None = "auto") -> Path:
    """Write ``timestamp tx ty tz qx qy qz qw`` lines (exact: ``read_tum`` gives back the same numbers).

    Args:
        path: output file.
        trajectory: poses with timestamps.
        plane: the plane named in a ``# plane: ..`` header line: ``"auto"`` (default) names the
            one the poses lie in exactly (``exact_plane``: a 2D graph's poses lifted to SE(3) give
            ``xy``) and writes no such line for others; ``None`` never writes it.

    Raises ``ValueError`` if the trajectory has no timestamps or holds non-finite values.
    """
    if trajectory.timestamps is None:
        raise ValueError("TUM files need timestamps; this trajectory has none (write_kitti needs none)")
    if plane == "auto":
        plane = exact_plane(trajectory.poses)
    elif plane is not None and plane not in PLANES:
        raise ValueError(f"unknown plane {plane!r} ({', '.join(PLANES)}, auto or None)")
    stamps = trajectory.timestamps.detach().cpu().double()
    values = torch.cat([stamps[:, None], trajectory.poses.data.detach().cpu().double()], dim=1).numpy()
    header = "# timestamp tx ty tz qx qy qz qw\n" + (f"# plane: {plane}\n" if plane else "")
    return _write_table(path, values, header)


def write_kitti(path: PathLike, trajectory: Trajectory) -> Path:
    """Write the row-major top 3 x 4 of each pose matrix, 12 numbers per line; timestamps are dropped.

    ``read_kitti`` gives back the same poses up to rounding (~1e-16): the matrix is
    converted back to a quaternion, whose sign may flip.
    """
    m = trajectory.poses.matrix().detach().cpu().double()[:, :3, :].reshape(-1, 12).numpy()
    return _write_table(path, m, "")


def _write_table(path: PathLike, values: np.ndarray, header: str) -> Path:
    path = Path(path)
    if not np.isfinite(values).all():
        raise ValueError(f"{path}: refusing to write non-finite values (the file could not be read back)")
    # repr is the shortest string that reads back to the same float64.
    body = "".join(" ".join(map(repr, row)) + "\n" for row in values.tolist())
    return atomic_write_text(path, header + body)
