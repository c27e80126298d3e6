"""Bundle-adjustment problems in BAL text files (plain or bzip2): ``read_bal`` and ``write_bal``.

Layout (Agarwal et al., "Bundle Adjustment in the Large", ECCV 2010):

- line 1: ``num_cameras num_points num_observations``;
- one line per observation: ``camera_index point_index x y``;
- then ``9 · num_cameras`` numbers (per camera: Rodrigues rotation, translation, f, k1, k2) and
  ``3 · num_points`` point coordinates, whitespace separated (the files put one per line).

Every malformed line raises ``FormatError`` naming the file, the line and the field: wrong token
counts, non-numbers, non-finite values, indices out of range, a truncated file or trailing data,
and cameras or points that no observation sees (their parameters would be undetermined).
"""

from __future__ import annotations

import bz2
import os
from pathlib import Path

import numpy as np
import torch

from ..ba.bal_problem import BALProblem
from .errors import FormatError, parse_number
from .files import atomic_write_text

__all__ = ["read_bal", "write_bal"]

_CAMERA_FIELDS = ("rx", "ry", "rz", "tx", "ty", "tz", "f", "k1", "k2")


def _read_text(path: Path) -> str:
    with open(path, "rb") as f:
        compressed = f.read(3) == b"BZh"
    if compressed or path.suffix == ".bz2":
        try:
            with bz2.open(path, "rt") as f:
                return f.read()
        except OSError as error:
            raise FormatError(str(path), 0, f"not a readable bzip2 file ({error})") from None
    return path.read_text()


def read_bal(path: str | os.PathLike[str]) -> BALProblem:
    """Read a BAL file (``.bz2`` or plain text) into a float64 ``BALProblem``."""
    path = Path(path)
    name = str(path)
    all_lines = _read_text(path).splitlines()
    # Blank lines are skipped (some BAL files separate their sections with them); numbers[k] is the
    # file's line number of the k-th non-blank line.
    numbers = [k + 1 for k, line in enumerate(all_lines) if line.strip()]
    lines = [all_lines[k - 1] for k in numbers]
    if not lines:
        raise FormatError(name, 1, "empty file; expected the header 'num_cameras num_points num_observations'")
    header = lines[0].split()
    if len(header) != 3:
        raise FormatError(name, numbers[0], f"header needs 3 fields (num_cameras num_points num_observations), got {len(header)}")
    counts = []
    for token, field in zip(header, ("num_cameras", "num_points", "num_observations")):
        if not token.isdigit() or int(token) == 0:
            raise FormatError(name, numbers[0], f"field {field} must be a positive integer, got {token!r}")
        counts.append(int(token))
    num_cameras, num_points, num_observations = counts

    observation_lines = lines[1 : 1 + num_observations]
    observation_numbers = numbers[1 : 1 + num_observations]
    if len(observation_lines) < num_observations:
        raise FormatError(name, len(all_lines), f"truncated: {num_observations} observation lines announced, "
                                            f"{len(observation_lines)} present")
    tokens = " ".join(observation_lines).split()
    if len(tokens) != 4 * num_observations:
        _raise_at_bad_line(name, observation_lines, observation_numbers, 4, "observation (camera_index point_index x y)")
    table = np.array(tokens, dtype=object).reshape(num_observations, 4)
    try:
        camera_index = table[:, 0].astype(np.int64)
        point_index = table[:, 1].astype(np.int64)
        pixels = table[:, 2:].astype(np.float64)
    except ValueError:
        _raise_at_bad_value(name, observation_lines, observation_numbers, ("camera_index", "point_index", "x", "y"))
    if not np.isfinite(pixels).all():
        row = int(np.flatnonzero(~np.isfinite(pixels).all(1))[0])
        _raise_at_bad_value(name, observation_lines[row : row + 1], observation_numbers[row : row + 1],
                            ("camera_index", "point_index", "x", "y"))
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
    if parameters is None or not np.isfinite(parameters).all():
        for k, token in enumerate(tokens):  # the slow search runs only on failure
            try:
                ok = np.isfinite(float(token))
            except ValueError:
                ok = False
            if not ok:
                line = _line_of_token(parameter_lines, parameter_numbers, k)
                parse_number(name, line, token, _parameter_name(k, num_cameras))
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


def _line_of_token(lines: list[str], numbers: list[int], k: int) -> int:
    """File line number of the k-th whitespace token of ``lines`` (at file lines ``numbers``)."""
    counts = np.cumsum([len(line.split()) for line in lines])
    return numbers[min(int(np.searchsorted(counts, k, side="right")), len(numbers) - 1)]


def _raise_at_bad_line(name: str, lines: list[str], numbers: list[int], width: int, what: str) -> None:
    for line, number in zip(lines, numbers):
        if len(line.split()) != width:
            raise FormatError(name, number, f"{what} needs {width} fields, got {len(line.split())}")
    raise FormatError(name, numbers[0], f"{what}: unexpected token count")


def _raise_at_bad_value(name: str, lines: list[str], numbers: list[int], fields: tuple[str, ...]) -> None:
    for line, number in zip(lines, numbers):
        for token, field in zip(line.split(), fields):
            if field.endswith("index"):
                if not token.isdigit():
                    raise FormatError(name, number, f"field {field} is not a non-negative integer: {token!r}")
            else:
                parse_number(name, number, token, field)
    raise FormatError(name, numbers[0], "malformed observation")
