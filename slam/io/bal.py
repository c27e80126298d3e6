"""Bundle-adjustment problems in BAL text files (plain or bzip2): ``read_bal`` and ``write_bal``.

Layout (Agarwal et al., "Bundle Adjustment in the Large", ECCV 2010):

- line 1: ``num_cameras num_points num_observations``;
- one line per observation: ``camera_index point_index x y``;
- then ``9 · num_cameras`` numbers (per camera: Rodrigues rotation, translation, f, k1, k2) and
  ``3 · num_points`` point coordinates, whitespace separated (the files put one per line).

Every malformed line raises ``FormatError`` naming the file, the line and the field: wrong token
counts, non-numbers, non-finite values, indices out of range, a truncated file or trailing data,
and cameras or points that no observation sees (their parameters would be undetermined).
Numbers are ASCII (``slam.io.errors.NUMBER``), indices and counts fit int64; the text is UTF-8
(a leading byte-order mark and CRLF line ends are fine).

bzip2 files (by content or a ``.bz2`` suffix) may decompress to at most ``max_bytes`` (a
``read_bal`` keyword); by default ``$SLAM_BAL_MAX_BYTES`` if set, else
``max(MIN_MAX_BYTES, MAX_EXPANSION · compressed size)`` = max(16 MiB, 50x).  Beyond it, and for
truncated or corrupt bzip2 data, ``FormatError`` names the file (and the limit).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Sequence

import numpy as np
import torch

from ..ba.bal_problem import BALProblem
from .errors import FormatError, parse_integer, parse_number, shorten
from .files import atomic_write_text
from .text import bunzip2, decode, read_bytes, split_lines, strict_tokens_ok

__all__ = ["read_bal", "write_bal"]

_CAMERA_FIELDS = ("rx", "ry", "rz", "tx", "ty", "tz", "f", "k1", "k2")


MAX_EXPANSION = 50
"""Default cap on a ``.bz2`` file's decompressed size, as a multiple of its compressed size.  BAL
text compresses 3-5x (Ladybug-49: 1.8 MB to ~0.45 MB); 50x leaves a tenfold margin for real
files, while a bomb (~300,000x) stops after ``max(MIN_MAX_BYTES, 50 x compressed)`` bytes."""
MIN_MAX_BYTES = 16 * 2**20
"""The cap is never below this (16 MiB, ~0.1 s of decompression): small files may compress
better than big ones, and stopping there is cheap."""
MAX_BYTES_ENV = "SLAM_BAL_MAX_BYTES"
"""Environment variable: a positive number of bytes that replaces the default cap."""

_OBSERVATION_FIELDS = ("camera_index", "point_index", "x", "y")


def _read_text(name: str, max_bytes: int | None) -> str:
    data = read_bytes(name)
    if data.startswith(b"BZh") or name.endswith(".bz2"):
        limit = _decompressed_limit(len(data), max_bytes)
        data = bunzip2(name, data, limit, raise_hint=f"; to allow more pass read_bal(..., max_bytes=N) or set "
                                                     f"{MAX_BYTES_ENV}=N")
    return decode(name, data)


def _decompressed_limit(compressed: int, max_bytes: int | None) -> int:
    """``max_bytes``, else ``$SLAM_BAL_MAX_BYTES``, else ``max(MIN_MAX_BYTES, MAX_EXPANSION · compressed)``."""
    if max_bytes is None:
        setting = os.environ.get(MAX_BYTES_ENV, "").strip()
        if not setting:
            return max(MIN_MAX_BYTES, MAX_EXPANSION * compressed)
        if not (setting.isascii() and setting.isdigit() and int(setting) > 0):
            raise ValueError(f"{MAX_BYTES_ENV}={setting!r}: not a positive whole number of bytes")
        return int(setting)
    if isinstance(max_bytes, bool) or not isinstance(max_bytes, int) or max_bytes <= 0:
        raise ValueError(f"read_bal: max_bytes must be a positive int, got {max_bytes!r}")
    return max_bytes


def read_bal(path: str | os.PathLike[str], *, max_bytes: int | None = None) -> BALProblem:
    """Read a BAL file (``.bz2`` or plain text) into a float64 ``BALProblem``.

    Args:
        path: The file; bzip2 data (by content or a ``.bz2`` suffix) is decompressed.
        max_bytes: The most bytes a bzip2 file may decompress to; None: ``$SLAM_BAL_MAX_BYTES`` if
            set, else ``max(MIN_MAX_BYTES, MAX_EXPANSION · compressed size)``.
    """
    path = Path(path)
    name = str(path)
    text = _read_text(name, max_bytes)
    # ASCII without "_" or ";": numpy's casts then take exactly our number grammar (text.py), and
    # ";" is free to mark line ends below; other text is checked token by token
    plain = strict_tokens_ok(text) and ";" not in text
    all_lines = split_lines(text)
    # Blank lines are skipped (some BAL files separate their sections with them); numbers[k] is the
    # file's line number of lines[k].  Files without blank lines skip the filtering (see below).
    if all_lines and all_lines[0].strip():
        lines, numbers = all_lines, range(1, len(all_lines) + 1)
    else:
        lines, numbers = _non_blank(all_lines)
    if not lines:
        raise FormatError(name, 1, "empty file; expected the header 'num_cameras num_points num_observations'")
    header = lines[0].split()
    if len(header) != 3:
        raise FormatError(name, numbers[0], f"header needs 3 fields (num_cameras num_points num_observations), got {len(header)}")
    counts = []
    for token, field in zip(header, ("num_cameras", "num_points", "num_observations")):
        if not (token.isascii() and token.isdigit()) or not token.strip("0"):
            raise FormatError(name, numbers[0], f"field {field} must be a positive integer, got {shorten(token)}")
        counts.append(parse_integer(name, numbers[0], token, field, minimum=1))
    num_cameras, num_points, num_observations = counts

    if not plain:  # the slow path from here: blank lines dropped, every observation field checked
        lines, numbers = _non_blank(all_lines)
        _check_observations(name, lines[1 : 1 + num_observations], numbers[1 : 1 + num_observations])
    for attempt in range(2):
        observation_lines = lines[1 : 1 + num_observations]
        observation_numbers = numbers[1 : 1 + num_observations]
        if len(observation_lines) < num_observations:
            raise FormatError(name, len(all_lines), f"truncated: {num_observations} observation lines announced, "
                                                    f"{len(observation_lines)} present")
        # One split for all lines, with ";" between them: the lines have 4 fields each exactly when
        # every 5th token is a ";" (a count over the whole would miss a 3- next to a 5-field line).
        tokens = " ; ".join(observation_lines).split()
        if len(tokens) == 5 * num_observations - 1 and tokens[4::5].count(";") == num_observations - 1:
            break
        if attempt or isinstance(numbers, list):
            _check_observations(name, observation_lines, observation_numbers)
            raise AssertionError("unreachable: a bad observation line passed the check")  # pragma: no cover
        lines, numbers = _non_blank(all_lines)  # a blank line among them, perhaps
    tokens.append(";")
    table = np.array(tokens, dtype=object).reshape(num_observations, 5)  # the last column is ";"
    try:  # object -> int64 / float64 casts call int() / float(): exactly our grammar on plain text
        index = table[:, :2].astype(np.int64)
        pixels = table[:, 2:4].astype(np.float64, order="C")
        ok = bool(np.isfinite(pixels).all())
    except (ValueError, OverflowError):
        ok = False
    if not ok:
        _check_observations(name, observation_lines, observation_numbers)
        raise AssertionError("unreachable: a bad observation passed the check")  # pragma: no cover
    camera_index, point_index = np.ascontiguousarray(index[:, 0]), np.ascontiguousarray(index[:, 1])
    for values, count, field in ((camera_index, num_cameras, "camera_index"), (point_index, num_points, "point_index")):
        bad = np.flatnonzero((values < 0) | (values >= count))
        if bad.size:
            raise FormatError(name, observation_numbers[int(bad[0])], f"field {field} = {values[bad[0]]} is out of range "
                                                       f"[0, {count}) (header line 1)")

    parameter_lines = lines[1 + num_observations :]
    parameter_numbers = numbers[1 + num_observations :]
    expected = 9 * num_cameras + 3 * num_points
    tokens = " ".join(parameter_lines).split()
    if len(tokens) != expected:
        what = "truncated" if len(tokens) < expected else "trailing data"
        raise FormatError(name, len(all_lines) if len(tokens) < expected else
                          _line_of_token(parameter_lines, parameter_numbers, expected),
                          f"{what}: expected {9 * num_cameras} camera and {3 * num_points} point values after the "
                          f"observations, found {len(tokens)}")
    try:
        parameters = np.array(tokens, dtype=np.float64)
    except ValueError:
        parameters = None
    if not plain or parameters is None or not np.isfinite(parameters).all():
        _check_parameters(name, tokens, parameter_lines, parameter_numbers, num_cameras)
    cameras = parameters[: 9 * num_cameras].reshape(num_cameras, 9)
    points = parameters[9 * num_cameras :].reshape(num_points, 3)

    for values, count, what in ((camera_index, num_cameras, "camera"), (point_index, num_points, "point")):
        unseen = np.flatnonzero(np.bincount(values, minlength=count) == 0)
        if unseen.size:
            raise FormatError(name, 0, f"{unseen.size} {what}(s) are in no observation (first: {what} {unseen[0]}); "
                                       "their parameters would be undetermined")
    return BALProblem(cameras=torch.from_numpy(cameras), points=torch.from_numpy(points),
                      camera_index=torch.from_numpy(camera_index), point_index=torch.from_numpy(point_index),
                      observations=torch.from_numpy(pixels), source=name)


def write_bal(path: str | os.PathLike[str], problem: BALProblem) -> Path:
    """Write ``problem`` in BAL layout (17 significant digits: reading it back gives the same numbers).
    Refuses (``OutputPathError``) to write over ``problem.source``, also through a link; the file
    appears whole or not at all (a temporary renamed into place)."""
    path = Path(path)
    rows = np.column_stack([problem.camera_index.numpy(), problem.point_index.numpy()])
    pixels = problem.observations.detach().double().numpy()
    parameters = np.concatenate([problem.cameras.detach().double().numpy().ravel(),
                                 problem.points.detach().double().numpy().ravel()])
    text = "".join([f"{problem.num_cameras} {problem.num_points} {problem.num_observations}\n",
                    *(f"{c} {p} {x:.17g} {y:.17g}\n" for (c, p), (x, y) in zip(rows.tolist(), pixels.tolist())),
                    *(f"{v:.17g}\n" for v in parameters.tolist())])
    return atomic_write_text(path, text, inputs=[problem.source] if problem.source else [])


def _parameter_name(k: int, num_cameras: int) -> str:
    if k < 9 * num_cameras:
        return f"camera {k // 9} {_CAMERA_FIELDS[k % 9]}"
    k -= 9 * num_cameras
    return f"point {k // 3} {'xyz'[k % 3]}"


def _non_blank(all_lines: list[str]) -> tuple[list[str], list[int]]:
    """The lines with a token, and their 1-based line numbers."""
    numbers = [k + 1 for k, line in enumerate(all_lines) if line.strip()]
    return [all_lines[k - 1] for k in numbers], numbers


def _line_of_token(lines: list[str], numbers: Sequence[int], k: int) -> int:
    """File line number of the k-th whitespace token of ``lines`` (at file lines ``numbers``)."""
    counts = np.cumsum([len(line.split()) for line in lines])
    return numbers[min(int(np.searchsorted(counts, k, side="right")), len(numbers) - 1)]


def _check_observations(name: str, lines: list[str], numbers: Sequence[int]) -> None:
    """Raise ``FormatError`` at the first observation line without 4 fields, an index that is not an
    int64, or a coordinate that is not a finite number of ``errors.NUMBER``."""
    for line, number in zip(lines, numbers):
        tokens = line.split()
        if len(tokens) != 4:
            raise FormatError(name, number, f"observation (camera_index point_index x y) needs 4 fields, "
                                            f"got {len(tokens)}")
        for token, field in zip(tokens, _OBSERVATION_FIELDS):
            if field.endswith("index"):
                parse_integer(name, number, token, field)  # a negative one is out of range, reported later
            else:
                parse_number(name, number, token, field)


def _check_parameters(name: str, tokens: list[str], lines: list[str], numbers: Sequence[int],
                      num_cameras: int) -> None:
    """Raise ``FormatError`` naming the line and the camera or point field of the first parameter
    token that is not a finite number of ``errors.NUMBER``."""
    for k, token in enumerate(tokens):
        try:
            parse_number(name, 0, token, "")
        except FormatError:  # now with the line and the field, found only on failure
            parse_number(name, _line_of_token(lines, numbers, k), token, _parameter_name(k, num_cameras))
