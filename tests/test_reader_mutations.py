"""Seeded mutations of small real files, fed to every reader: each call returns a result without a
non-finite value in it, or raises the reader's documented error naming the file; anything else
(another exception type, a message without the file, a nan or inf in the result) fails the test
with the mutation that caused it.

Base files: the first vertices and edges of intel.g2o (2D, also as edges only and as TORO), the
whole tinyGrid3D.g2o (3D, also as TORO with rpy angles), dubrovnik-3-7 (BAL, plain and bzip2), the
first poses of freiburg1_xyz (TUM) and KITTI 00 (KITTI) and ur5.urdf.
"""

from __future__ import annotations

import bz2
import math
import random
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import pytest
import torch

from slam.io import FormatError, read_bal, read_g2o, read_kitti, read_tum
from slam.kinematics import Kinematics, URDFError, read_urdf
from slam.pgo import DisconnectedGraphError

DATA = Path(__file__).resolve().parents[1] / "slam" / "data"  # package data, as conftest.PACKAGE_DATA
TRAJECTORIES = Path(__file__).resolve().parents[2] / "shared" / "data" / "trajectories"
SEED = 20261201
MUTATIONS = 500
"""Per base file; every mutation is one to three random edits."""

TOKENS = [  # replacements for a token
    "abc", "", "1e308", "-1e308", "1.7976931348623157e308", "1e200", "-1e200", "1e-200", "4.9e-324", "1e400",
    "-1e400", "1e-400", "nan", "-nan", "NaN", "inf", "-inf", "Infinity", "-0", "+0", "0", "-1", "-5", "1.5", "0.0",
    str(2**63), str(2**63 - 1), str(-(2**63)), str(-(2**63) - 1), str(2**64), "9" * 400, "1_0", "1_000.5",
    "\u0663", "\u0661\u0662", "\uff13", "1\u0660", "0x10", "1e", "--1", "1..2", ".", "+", "e5", "1,5", "\x00", "\u00b2",
]


@dataclass(frozen=True)
class Base:
    name: str
    """File name, with the suffix the reader looks at (``.bz2``)."""
    text: str
    read: Callable[[Path], object]
    errors: tuple[type[BaseException], ...]
    compress: bool = False


def _intel_small() -> str:
    lines = (DATA / "intel.g2o").read_text().splitlines()
    keep = [line for line in lines if line.split()[0] == "VERTEX_SE2" and int(line.split()[1]) < 8]
    keep += [line for line in lines if line.split()[0] == "EDGE_SE2" and max(map(int, line.split()[1:3])) < 8]
    keep.insert(3, "# a comment")
    return "\n".join(keep + ["FIX 0"]) + "\n"


def _toro_2d(text: str) -> str:
    out = []
    for line in text.splitlines():
        t = line.split()
        if t[0] == "VERTEX_SE2":
            out.append(" ".join(["VERTEX2", *t[1:]]))
        elif t[0] == "EDGE_SE2":  # TORO orders the information I11 I12 I22 I33 I13 I23
            i11, i12, i13, i22, i23, i33 = t[6:]
            out.append(" ".join(["EDGE2", *t[1:6], i11, i12, i22, i33, i13, i23]))
        else:
            out.append(line)
    return "\n".join(out) + "\n"


def _toro_3d(text: str) -> str:
    from scipy.spatial.transform import Rotation

    out = []
    for line in text.splitlines():
        t = line.split()
        ids = 3 if t[0].startswith("EDGE") else 2
        yaw, pitch, roll = Rotation.from_quat([float(v) for v in t[ids + 3 : ids + 7]]).as_euler("ZYX")
        tag = "EDGE3" if ids == 3 else "VERTEX3"
        out.append(" ".join([tag, *t[1 : ids + 3], *(f"{float(a):.9g}" for a in (roll, pitch, yaw)), *t[ids + 7 :]]))
    return "\n".join(out) + "\n"


def _head(path: Path, lines: int) -> str:
    return "".join(path.read_text().splitlines(keepends=True)[:lines])


def _bases() -> dict[str, Base]:
    g2o_errors = (FormatError, DisconnectedGraphError)
    intel = _intel_small()
    tiny = (DATA / "tinyGrid3D.g2o").read_text()
    bal = (DATA / "dubrovnik-3-7-pre.txt").read_text()
    bases = [
        Base("small.g2o", intel, read_g2o, g2o_errors),
        Base("edges-only.g2o", "".join(line + "\n" for line in intel.splitlines() if not line.startswith("VERTEX")),
             read_g2o, g2o_errors),
        Base("tiny3d.g2o", tiny, read_g2o, g2o_errors),
        Base("small.toro", _toro_2d(intel), read_g2o, g2o_errors),
        Base("tiny3d.toro", _toro_3d(tiny), read_g2o, g2o_errors),
        Base("dubrovnik.txt", bal, read_bal, (FormatError,)),
        Base("dubrovnik.txt.bz2", bal, read_bal, (FormatError,), compress=True),
        Base("ur5.urdf", (DATA / "ur5.urdf").read_text(), read_urdf, (URDFError,)),
    ]
    if TRAJECTORIES.is_dir():
        bases += [Base("fr1.tum", _head(TRAJECTORIES / "freiburg1_xyz-groundtruth.txt", 15), read_tum, (FormatError,)),
                  Base("kitti00.kitti", _head(TRAJECTORIES / "KITTI_00_gt.txt", 10), read_kitti, (FormatError,))]
    return {base.name: base for base in bases}


BASES = _bases()


# ------------------------------------------------------------------------------ mutations


def _tokens_of(line: str) -> list[str]:
    return line.split(" ")


_READ_ATTRIBUTE = re.compile(r'\b(?:xyz|rpy|lower|upper)="([^"]*)"')
"""The numeric attributes ``read_urdf`` reads (in a joint's origin, axis and limit)."""


def _joint_number_lines(lines: list[str]) -> list[int]:
    """Indices of the lines with a numeric attribute that ``read_urdf`` reads (not in links, not commented)."""
    inside, found = False, []
    for k, line in enumerate(lines):
        inside = inside or "<joint" in line
        if inside and "<!--" not in line and re.search(r"<(origin|axis|limit)\b", line) and _READ_ATTRIBUTE.search(line):
            found.append(k)
        inside = inside and "</joint>" not in line
    return found


def _foreign_digit(rng: random.Random, digit: str) -> str:
    """``digit`` as an Arabic-Indic, extended Arabic-Indic or fullwidth digit (``int()`` reads each)."""
    return chr(rng.choice([0x0660, 0x06F0, 0xFF10]) + int(digit))


def _mutate_text(text: str, rng: random.Random, is_xml: bool) -> tuple[str, str, bool]:
    """One random edit of ``text``: the new text, a description, and whether the edit put a number
    outside the ASCII grammar into a field the reader reads (which it must then refuse)."""
    lines = text.split("\n")
    k = rng.randrange(len(lines))
    ops = ["delete line", "duplicate line", "swap lines", "drop token", "add token", "replace token",
           "replace token", "replace token", "same id", "quaternion", "information", "bom", "crlf",
           "cr", "unicode digit", "underscore", "tag", "blank line"]
    op = rng.choice(ops + ["xml", "xml", "joint number"] if is_xml else ops)
    before = lines[k]
    if op == "delete line":
        del lines[k]
    elif op == "duplicate line":
        lines.insert(k, lines[k])
    elif op == "blank line":
        lines.insert(k, rng.choice(["", "  ", "\t", "\u00a0"]))
    elif op == "swap lines":
        m = rng.randrange(len(lines))
        lines[k], lines[m] = lines[m], lines[k]
    elif op in ("drop token", "add token", "replace token", "unicode digit", "underscore"):
        tokens = _tokens_of(lines[k])
        at = rng.randrange(len(tokens))
        if op == "drop token":
            del tokens[at]
        elif op == "add token":
            tokens.insert(at, rng.choice(TOKENS + ["1", "0.5"]))
        elif op == "replace token":
            tokens[at] = rng.choice(TOKENS)
        elif op == "unicode digit":  # an ASCII digit of the token becomes an Arabic-Indic or fullwidth one
            digits = [i for i, c in enumerate(tokens[at]) if c in "0123456789"]
            if digits:
                i = rng.choice(digits)
                tokens[at] = tokens[at][:i] + _foreign_digit(rng, tokens[at][i]) + tokens[at][i + 1 :]
        else:
            i = rng.randrange(1, len(tokens[at])) if len(tokens[at]) > 1 else 0
            tokens[at] = tokens[at][:i] + "_" + tokens[at][i:]
        lines[k] = " ".join(tokens)
        # every token of a data line is read (a tag or a number): the edit must be refused
        strict = not is_xml and lines[k] != before and not before.lstrip().startswith("#")
        return "\n".join(lines), f"{op} at line {k + 1}: {lines[k][:120]!r}", strict and op in ("unicode digit",
                                                                                             "underscore")
    elif op == "joint number":
        candidates = _joint_number_lines(lines)
        k = rng.choice(candidates)
        match = rng.choice(list(_READ_ATTRIBUTE.finditer(lines[k])))
        digits = [match.start(1) + i for i, c in enumerate(match.group(1)) if c in "0123456789"]
        i = rng.choice(digits)
        new = _foreign_digit(rng, lines[k][i]) if rng.random() < 0.5 else lines[k][i] + "_"
        lines[k] = lines[k][:i] + new + lines[k][i + 1 :]
        return "\n".join(lines), f"{op} at line {k + 1}: {lines[k].strip()!r}", True
    elif op == "same id":  # duplicate ids, self-loops, dangling ids
        tokens = _tokens_of(lines[k])
        if len(tokens) > 2:
            tokens[rng.choice([1, 2])] = rng.choice([tokens[1], tokens[2], "999", "-1", str(2**63)])
        lines[k] = " ".join(tokens)
    elif op == "quaternion":  # the last four pose numbers of a pose line (TUM, g2o 3D)
        tokens = _tokens_of(lines[k])
        value = rng.choice(["0 0 0 0", "1e200 1e200 1e200 1e200", "1e-200 0 0 0", "0 0 0 2", "nan 0 0 1"]).split()
        for offset, v in zip(range(4), value):
            spot = min(len(tokens) - 1, rng.choice([5, 6, 8, 9]) + offset)
            tokens[spot] = v
        lines[k] = " ".join(tokens)
    elif op == "information":  # an entry of a g2o information matrix
        tokens = _tokens_of(lines[k])
        if len(tokens) > 6:
            tokens[rng.randrange(len(tokens) - 6, len(tokens))] = rng.choice(["-1", "0", "1e10", "1e300", "-1e300"])
        lines[k] = " ".join(tokens)
    elif op == "bom":
        lines[k] = "\ufeff" + lines[k]
    elif op == "crlf":
        return text.replace("\n", "\r\n"), op, False
    elif op == "cr":
        lines[k] = lines[k] + "\r"
    elif op == "tag":
        tokens = _tokens_of(lines[k])
        tokens[0] = rng.choice(["VERTEX_SE2", "VERTEX2", "EDGE_SE2", "EDGE2", "VERTEX_SE3:QUAT", "VERTEX3",
                                "EDGE_SE3:QUAT", "EDGE3", "FIX", "#", "VERTEX_XY"])
        lines[k] = " ".join(tokens)
    else:  # XML
        snippet = rng.choice(['<!DOCTYPE r [<!ENTITY a "aa">]>', "&a;", "</joint>", "<joint>", "<link/>",
                              '<link name="base_link"/>', 'type="floating"', 'xyz="1e400 0 0"', 'rpy="nan 0 0"',
                              '<mimic joint="x"/>', "<![CDATA[x]]>", "<?pi x?>", "<!-- c -->", '"', "<", ">"])
        at = rng.randrange(len(lines[k]) + 1)
        lines[k] = lines[k][:at] + snippet + lines[k][at:]
        return "\n".join(lines), f"{op} {snippet!r} at line {k + 1} column {at}", False
    return "\n".join(lines), f"{op} at line {k + 1}", False


def _mutate_bytes(data: bytes, rng: random.Random) -> tuple[bytes, str]:
    op = rng.choice(["truncate", "random bytes", "latin-1", "flip byte", "bom"])
    at = rng.randrange(len(data) + 1)
    if op == "truncate":
        return data[:at], f"truncate at byte {at}"
    if op == "random bytes":
        junk = bytes(rng.randrange(256) for _ in range(rng.randrange(1, 5)))
        return data[:at] + junk + data[at:], f"insert {junk!r} at byte {at}"
    if op == "latin-1":
        junk = rng.choice(["é", "ü", "°", "µ"]).encode("latin-1")
        return data[:at] + junk + data[at:], f"insert latin-1 {junk!r} at byte {at}"
    if op == "flip byte" and data:
        at = min(at, len(data) - 1)
        return data[:at] + bytes([data[at] ^ (1 << rng.randrange(8))]) + data[at + 1 :], f"flip a bit of byte {at}"
    return b"\xef\xbb\xbf" + data, "bom at the start"


def mutate(base: Base, rng: random.Random) -> tuple[bytes, list[str], bool]:
    """The bytes of one mutated file (compressed for ``.bz2`` bases), what was done, and whether
    the reader must refuse it (a single edit that put a foreign digit or "_" into a read number)."""
    text, done, must_fail = base.text, [], []
    for _ in range(rng.choice([1, 1, 1, 2, 3])):
        text, what, strict = _mutate_text(text, rng, base.name.endswith(".urdf"))
        done.append(what)
        must_fail.append(strict)
    data = text.encode("utf-8")
    if rng.random() < 0.25:
        data, what = _mutate_bytes(data, rng)
        done.append(what)
    if base.compress:
        data = bz2.compress(data)
        if rng.random() < 0.3:  # damage the compressed stream too
            data, what = _mutate_bytes(data, rng)
            done.append(f"compressed: {what}")
    return data, done, len(done) == 1 and must_fail[0]


# ------------------------------------------------------------------------------ checks


def _non_finite(result: object) -> str | None:
    """The name of a field of ``result`` holding a non-finite number, or None."""
    if hasattr(result, "joints"):  # a URDF Robot: floats, ±inf limits only where documented
        for joint in result.joints:
            values = [*joint.xyz, *joint.rpy, *joint.axis]
            if joint.type in ("revolute", "prismatic"):
                values += [joint.lower, joint.upper]
            if not all(math.isfinite(v) for v in values):
                return f"joint {joint.name}"
            if joint.movable and abs(math.hypot(*joint.axis) - 1) > 1e-12:
                return f"joint {joint.name} axis is not unit"
        try:  # usable as read
            poses = Kinematics(result).forward(torch.zeros(1, result.dof, dtype=torch.float64))
        except Exception as error:
            return f"robot (Kinematics raised {type(error).__name__}: {error})"
        return None if bool(torch.isfinite(poses.data).all()) else "forward kinematics"
    for key, value in vars(result).items():
        value = getattr(value, "data", value)
        if isinstance(value, torch.Tensor) and value.is_floating_point() and not bool(torch.isfinite(value).all()):
            return key
    return None


@pytest.mark.parametrize("name", list(BASES))
def test_mutated_files_give_a_finite_result_or_a_named_error(tmp_path, name):
    base = BASES[name]
    path = tmp_path / base.name
    path.write_bytes(bz2.compress(base.text.encode()) if base.compress else base.text.encode())
    assert _non_finite(base.read(path)) is None  # the base file itself reads
    rng = random.Random(f"{SEED}-{name}")
    failures, outcomes = [], {"read": 0, "refused": 0, "must refuse": 0}
    for trial in range(MUTATIONS):
        data, done, must_fail = mutate(base, rng)
        outcomes["must refuse"] += must_fail
        path.write_bytes(data)
        try:
            result = base.read(path)
        except base.errors as error:
            outcomes["refused"] += 1
            if str(path) not in str(error):
                failures.append(f"#{trial} {done}: message without the file: {error}")
        except Exception as error:  # the point of the test: no other type may escape
            failures.append(f"#{trial} {done}: {type(error).__name__}: {str(error)[:300]}")
        else:
            outcomes["read"] += 1
            if (field := _non_finite(result)) is not None:
                failures.append(f"#{trial} {done}: accepted with a non-finite {field}")
            if must_fail:
                failures.append(f"#{trial} {done}: accepted a number outside the ASCII grammar")
    assert not failures, f"{len(failures)} of {MUTATIONS} mutations of {name} failed:\n" + "\n".join(failures[:15])
    # the mutations do bite, and some of them test the number grammar
    assert outcomes["refused"] > MUTATIONS // 4 and outcomes["read"] > 0 and outcomes["must refuse"] > 10, outcomes
