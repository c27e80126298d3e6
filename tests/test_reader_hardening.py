"""Hostile or careless input to every reader (g2o, TORO, BAL plain and bz2, TUM, KITTI, URDF) gives one
clear error naming the file (and the line and field where there is one), never another exception
type and never a silently wrong value."""

from __future__ import annotations

import bz2
import dataclasses
import errno
import os
from pathlib import Path

import numpy as np
import pytest
import torch

from slam.io import FormatError, read_bal, read_g2o, read_kitti, read_tum, write_g2o
from slam.io import bal as bal_module
from slam.kinematics import URDFError, read_urdf
from slam.metrics import evaluate
from slam.pgo import DisconnectedGraphError, optimize

DATA = Path(__file__).resolve().parents[1] / "slam" / "data"  # package data, as conftest.PACKAGE_DATA

G2O = ("VERTEX_SE2 0 0 0 0\nVERTEX_SE2 1 1 0 0.1\nVERTEX_SE2 2 2 0 0.2\n"
       "EDGE_SE2 0 1 1 0 0.1 10 0 0 10 0 5\nEDGE_SE2 1 2 1 0 0.1 10 0 0 10 0 5\n")
TORO = ("VERTEX2 0 0 0 0\nVERTEX2 1 1 0 0.1\nVERTEX2 2 2 0 0.2\n"
        "EDGE2 0 1 1 0 0.1 10 0 10 5 0 0\nEDGE2 1 2 1 0 0.1 10 0 10 5 0 0\n")
INFO3 = "10 0 0 0 0 0 10 0 0 0 0 10 0 0 0 5 0 0 5 0 5"
TORO3 = ("VERTEX3 0 0 0 0 0 0 0\nVERTEX3 1 1 0 0 0 0 0.1\n"
         f"EDGE3 0 1 1 0 0 0 0 0.1 {INFO3}\n")
BAL = "1 1 1\n0 0 1.5 2.5\n" + "".join(f"{v}\n" for v in [0.1, 0.2, 0.3, 1, 2, -10, 500, 0, 0, 0.1, 0.2, 0.3])
TUM = "# timestamp tx ty tz qx qy qz qw\n0.0 0 0 0 0 0 0 1\n1.0 1 0 0 0 0 0 1\n2.0 2 0 0 0 0 0 1\n"
KITTI = "1 0 0 0 0 1 0 0 0 0 1 0\n1 0 0 1 0 1 0 0 0 0 1 0\n1 0 0 2 0 1 0 0 0 0 1 0\n"
URDF = (DATA / "ur5.urdf").read_text()

# (reader, good text, a line and the index of the token on it to corrupt, the field the message names)
READERS = {
    "g2o": (read_g2o, G2O, 2, 2, "x"),
    "toro": (read_g2o, TORO, 2, 2, "x"),
    "bal": (read_bal, BAL, 9, 0, "camera 0 f"),
    "tum": (read_tum, TUM, 3, 1, "tx"),
    "kitti": (read_kitti, KITTI, 2, 3, "tx"),
}


def _write(tmp_path: Path, name: str, text: str | bytes) -> Path:
    path = tmp_path / name
    if isinstance(text, str):
        path.write_bytes(text.encode("utf-8"))
    else:
        path.write_bytes(text)
    return path


def _replace_on_line(text: str, line: int, k: int, new: str) -> str:
    lines = text.split("\n")
    tokens = lines[line - 1].split(" ")
    tokens[k] = new
    lines[line - 1] = " ".join(tokens)
    return "\n".join(lines)


def _finite(result) -> bool:
    tensors = [v for v in vars(result).values() if isinstance(v, torch.Tensor)]
    tensors += [v.data for v in vars(result).values() if hasattr(v, "data") and isinstance(v.data, torch.Tensor)]
    return all(bool(torch.isfinite(t.double()).all()) for t in tensors if t.is_floating_point())


@pytest.mark.parametrize("fmt", READERS)
@pytest.mark.parametrize("token", ["1_0", "\u0663", "\uff11", "1\u0660", "0x10", "1e400"],
                         ids=["underscore", "arabic-indic", "fullwidth", "mixed-digits", "hex", "overflow"])
def test_numbers_outside_the_ascii_grammar_name_file_line_and_field(tmp_path, fmt, token):
    reader, text, line, k, field = READERS[fmt]
    path = _write(tmp_path, f"bad.{fmt}", _replace_on_line(text, line, k, token))
    with pytest.raises(FormatError) as error:
        reader(path)
    assert (error.value.path, error.value.line) == (str(path), line), str(error.value)
    assert f"field {field} " in error.value.reason and (token in str(error.value) or repr(token) in str(error.value))


@pytest.mark.parametrize("token", ["1_0", "\u0663", "\uff11", "inf"])
def test_urdf_numbers_follow_the_grammar(tmp_path, token):
    path = _write(tmp_path, "bad.urdf", URDF.replace('<axis xyz="0 0 1"/>', f'<axis xyz="0 0 {token}"/>', 1))
    with pytest.raises(URDFError, match="attribute xyz") as error:
        read_urdf(path)
    assert error.value.path == str(path) and error.value.line


@pytest.mark.parametrize("text, line, field", [
    (G2O.replace("VERTEX_SE2 1 ", f"VERTEX_SE2 {2**63} ").replace("EDGE_SE2 0 1 ", f"EDGE_SE2 0 {2**63} "), 2, "id"),
    (G2O.replace("EDGE_SE2 1 2 ", f"EDGE_SE2 1 {2**64} "), 5, "id2"),
    (G2O.replace("EDGE_SE2 1 2 ", f"EDGE_SE2 {-(2**63) - 1} 2 "), 5, "id1"),
    (G2O + f"FIX {10**30}\n", 6, "id 1"),
    (G2O.replace("VERTEX_SE2 2 ", "VERTEX_SE2 " + "9" * 5000 + " "), 3, "id"),
])
def test_g2o_ids_must_fit_int64(tmp_path, text, line, field):
    path = _write(tmp_path, "big.g2o", text)
    with pytest.raises(FormatError, match=f"field {field} = .* does not fit a 64-bit integer") as error:
        read_g2o(path)
    assert (error.value.path, error.value.line) == (str(path), line)
    assert len(str(error.value)) < 300  # a 5000-digit token is shortened in the message


@pytest.mark.parametrize("text, line, words", [
    (BAL.replace("0 0 1.5", f"0 {2**63} 1.5"), 2, "field point_index = 9223372036854775808 does not fit"),
    (BAL.replace("0 0 1.5", f"{2**64} 0 1.5"), 2, "field camera_index = 18446744073709551616 does not fit"),
    (BAL.replace("1 1 1\n", f"1 {2**63} 1\n"), 1, "field num_points = 9223372036854775808 does not fit"),
    (BAL.replace("1 1 1\n", "1 \u0661 1\n"), 1, "num_points must be a positive integer"),  # isdigit() is True
    (BAL.replace("1 1 1\n", "1 \u00b2 1\n"), 1, "num_points must be a positive integer"),  # so is superscript 2
    (BAL.replace("0 0 1.5", "0 -1 1.5"), 2, "point_index = -1 is out of range"),
])
def test_bal_indices_and_counts_must_fit_int64(tmp_path, text, line, words):
    path = _write(tmp_path, "big.txt", text)
    with pytest.raises(FormatError, match=words) as error:
        read_bal(path)
    assert (error.value.path, error.value.line) == (str(path), line)


def _bz2(text: str) -> bytes:
    return bz2.compress(text.encode("utf-8"))


FORMATS = {  # name: (reader, file name, bytes of a good file)
    "g2o": (read_g2o, "a.g2o", G2O.encode()),
    "toro2d": (read_g2o, "a.graph", TORO.encode()),
    "toro3d": (read_g2o, "b.graph", TORO3.encode()),
    "bal": (read_bal, "a.txt", BAL.encode()),
    "bal.bz2": (read_bal, "a.txt.bz2", None),
    "tum": (read_tum, "a.tum", TUM.encode()),
    "kitti": (read_kitti, "a.kitti", KITTI.encode()),
    "urdf": (read_urdf, "a.urdf", URDF.encode()),
}


def _same(a, b) -> None:
    if hasattr(a, "joints"):
        assert a.joints == b.joints
        return
    for key, value in vars(a).items():
        value = getattr(value, "data", value)
        if isinstance(value, torch.Tensor):
            assert torch.equal(value, getattr(getattr(b, key), "data", getattr(b, key))), key


@pytest.mark.parametrize("fmt", FORMATS)
@pytest.mark.parametrize("change", ["bom", "crlf", "bom+crlf"])
def test_byte_order_mark_and_crlf_are_accepted(tmp_path, fmt, change):
    reader, name, data = FORMATS[fmt]
    text = (BAL.encode() if data is None else data).decode()
    if "crlf" in change:
        text = text.replace("\n", "\r\n")
    raw = ("\ufeff" if "bom" in change else "").encode() + text.encode()
    plain = (BAL.encode() if data is None else data)
    if data is None:
        raw, plain = bz2.compress(raw), bz2.compress(plain)
    expected = reader(_write(tmp_path, "plain-" + name, plain))
    _same(reader(_write(tmp_path, name, raw)), expected)


@pytest.mark.parametrize("fmt", ["g2o", "toro2d", "bal", "bal.bz2", "tum", "kitti"])
def test_non_utf8_bytes_name_the_line_and_the_byte_offset(tmp_path, fmt):
    reader, name, data = FORMATS[fmt]
    good = BAL.encode() if data is None else data
    offset = good.index(b"\n", good.index(b"\n") + 1) + 1  # the start of line 3
    raw = good[:offset] + b"\xe9" + good[offset:]  # latin-1 e-acute
    if data is None:
        raw = bz2.compress(raw)
    path = _write(tmp_path, name, raw)
    with pytest.raises(FormatError, match=f"not UTF-8 text: byte 0xe9 at byte offset {offset}") as error:
        reader(path)
    assert (error.value.path, error.value.line) == (str(path), 3)


def test_gzip_input_is_named_as_such(tmp_path):
    path = _write(tmp_path, "a.g2o", b"\x1f\x8b\x08\x00\x00\x00\x00\x00")
    with pytest.raises(FormatError, match="byte 0x8b at byte offset 1.*gzip"):
        read_g2o(path)


@pytest.mark.parametrize("fmt", FORMATS)
def test_a_directory_or_a_missing_file_is_named(tmp_path, fmt):
    reader = FORMATS[fmt][0]
    folder = tmp_path / "folder.in"
    folder.mkdir()
    error_type = URDFError if fmt == "urdf" else FormatError
    with pytest.raises(error_type, match="is a directory") as error:
        reader(folder)
    assert error.value.path == str(folder) and str(folder) in str(error.value)
    with pytest.raises(FileNotFoundError, match="missing.in"):
        reader(tmp_path / "missing.in")


@pytest.mark.parametrize("fmt", FORMATS)
def test_a_device_is_refused_not_read_forever(fmt):
    if not Path("/dev/zero").exists():
        pytest.skip("no /dev/zero")
    with pytest.raises(URDFError if fmt == "urdf" else FormatError, match="/dev/zero: .*is a device"):
        FORMATS[fmt][0]("/dev/zero")


@pytest.mark.parametrize("error_type, words", [(PermissionError, "permission denied"),
                                                (OSError, "cannot be read: Input/output error")])
def test_an_unreadable_file_is_named(tmp_path, monkeypatch, error_type, words):
    path = _write(tmp_path, "secret.g2o", G2O)

    def refuse(*args, **kwargs):  # as chmod 000 would (which root ignores), or a failing disk
        raise error_type(errno.EACCES if error_type is PermissionError else errno.EIO,
                         os.strerror(errno.EACCES if error_type is PermissionError else errno.EIO), str(path))

    monkeypatch.setattr("slam.io.text.open", refuse, raising=False)
    for reader in (read_g2o, read_bal, read_tum, read_kitti):
        with pytest.raises(FormatError, match=words) as error:
            reader(path)
        assert error.value.path == str(path)
    with pytest.raises(URDFError, match=words):
        read_urdf(path)


def test_bz2_bomb_stops_at_the_limit(tmp_path):
    text = b"1 1 1\n" + b"0 " * (2**20)  # 2 MiB that compress to a few hundred bytes
    path = _write(tmp_path, "bomb.txt.bz2", bz2.compress(text))
    with pytest.raises(FormatError, match=r"decompresses to more than 100000 bytes.*max_bytes") as error:
        read_bal(path, max_bytes=100_000)
    assert error.value.path == str(path)
    with pytest.raises(ValueError, match="max_bytes must be a positive int"):
        read_bal(path, max_bytes=0)


def test_bz2_default_limit_is_a_ratio_with_a_floor_and_an_environment_override(tmp_path, monkeypatch):
    text = b"1 1 1\n" + b"0 " * (2**20)
    path = _write(tmp_path, "bomb.txt.bz2", bz2.compress(text))
    compressed = path.stat().st_size
    monkeypatch.setattr(bal_module, "MIN_MAX_BYTES", 1000)
    limit = bal_module.MAX_EXPANSION * compressed
    assert limit < len(text)
    with pytest.raises(FormatError, match=f"more than {limit} bytes.*SLAM_BAL_MAX_BYTES"):
        read_bal(path)
    monkeypatch.setenv("SLAM_BAL_MAX_BYTES", str(4 * 2**20))  # enough: the bytes are then parsed as BAL
    with pytest.raises(FormatError, match="needs 4 fields, got 1048576"):
        read_bal(path)
    monkeypatch.setenv("SLAM_BAL_MAX_BYTES", "lots")
    with pytest.raises(ValueError, match="SLAM_BAL_MAX_BYTES='lots'"):
        read_bal(path)


@pytest.mark.parametrize("cut", [1, 10, 40])
def test_truncated_or_trailing_bz2_is_named(tmp_path, cut):
    data = bz2.compress(BAL.encode())
    path = _write(tmp_path, "cut.txt.bz2", data[:-cut])
    with pytest.raises(FormatError, match="truncated bzip2|not a readable bzip2") as error:
        read_bal(path)
    assert error.value.path == str(path)
    path = _write(tmp_path, "trailing.txt.bz2", data + b"junk")
    with pytest.raises(FormatError, match="after the end of the bzip2 data"):
        read_bal(path)
    two_streams = _write(tmp_path, "two.txt.bz2", bz2.compress(BAL[:9].encode()) + bz2.compress(BAL[9:].encode()))
    assert read_bal(two_streams).num_observations == 1  # as pbzip2 writes them


@pytest.mark.parametrize("text, line", [
    # TORO order I11 I12 I22 I33 I13 I23: [[1, 0, 0], [0, 1, 2], [0, 2, 1]] is indefinite, while the
    # same six numbers in g2o order would be positive definite
    ("VERTEX2 0 0 0 0\nVERTEX2 1 1 0 0\nEDGE2 0 1 1 0 0 1 0 1 1 0 2\n", 3),
    ("EDGE2 0 1 1 0 0 1 2 1 1 0 0\n", 1),  # edges only: the same check
    ("VERTEX_SE2 0 0 0 0\nVERTEX_SE2 1 1 0 0\nEDGE_SE2 0 1 1 0 0 1 0 0 1 0 1\nEDGE2 0 1 1 0 0 1 0 1 1 0 2\n", 4),
    ("VERTEX3 0 0 0 0 0 0 0\nVERTEX3 1 1 0 0 0 0 0\nEDGE3 0 1 1 0 0 0 0 0 "
     + INFO3.replace("5 0 0 5 0 5", "5 0 0 -5 0 5") + "\n", 3),
])
def test_toro_information_must_be_positive_definite(tmp_path, text, line):
    path = _write(tmp_path, "toro.graph", text)
    with pytest.raises(FormatError, match="not positive definite") as error:
        read_g2o(path)
    assert (error.value.path, error.value.line) == (str(path), line)


def _as_toro(line: str) -> str:
    """An ``EDGE_SE3:QUAT`` / ``VERTEX_SE3:QUAT`` line as TORO's ``EDGE3`` / ``VERTEX3`` (rpy angles)."""
    from scipy.spatial.transform import Rotation

    tokens = line.split()
    ids = 3 if tokens[0].startswith("EDGE") else 2
    x = tokens[ids : ids + 3]
    yaw, pitch, roll = Rotation.from_quat([float(v) for v in tokens[ids + 3 : ids + 7]]).as_euler("ZYX")
    tag = "EDGE3" if ids == 3 else "VERTEX3"
    return " ".join([tag, *tokens[1:ids], *x, *(repr(float(a)) for a in (roll, pitch, yaw)), *tokens[ids + 7 :]])


def test_mixed_toro_and_g2o_3d_lines_are_read_line_by_line(tmp_path):
    lines = (DATA / "tinyGrid3D.g2o").read_text().splitlines()
    mixed = [_as_toro(line) if k % 2 and line.split()[0] in ("EDGE_SE3:QUAT", "VERTEX_SE3:QUAT") else line
             for k, line in enumerate(lines)]
    assert {line.split()[0] for line in mixed} >= {"EDGE3", "EDGE_SE3:QUAT", "VERTEX3", "VERTEX_SE3:QUAT"}
    graph = read_g2o(DATA / "tinyGrid3D.g2o")
    again = read_g2o(_write(tmp_path, "mixed.g2o", "\n".join(mixed) + "\n"))
    assert torch.equal(again.i, graph.i) and torch.equal(again.j, graph.j)
    torch.testing.assert_close(again.information, graph.information, rtol=0, atol=0)
    for a, b in [(again.poses, graph.poses), (again.measurements, graph.measurements)]:
        torch.testing.assert_close(a.local(b), torch.zeros_like(a.local(b)), rtol=0, atol=1e-12)


def test_mixed_lines_are_still_checked(tmp_path):
    text = (TORO3 + "VERTEX_SE3:QUAT 2 0 0 0 0 0 0 3\n"  # a quaternion of norm 3, after TORO lines
            f"EDGE_SE3:QUAT 1 2 1 0 0 0 0 0 1 {INFO3}\n")
    path = _write(tmp_path, "mixed.g2o", text)
    with pytest.raises(FormatError, match="norm 3") as error:
        read_g2o(path)
    assert error.value.line == 4


@pytest.mark.parametrize("text, words", [
    # no vertices: chaining 1e308 + 1e308 overflows to inf
    ("EDGE_SE2 0 1 1e308 0 0 1 0 0 1 0 1\nEDGE_SE2 1 2 1e308 0 0 1 0 0 1 0 1\n", "overflows float64"),
    ("VERTEX_SE3:QUAT 0 0 0 0 1e200 1e200 0 0\nVERTEX_SE3:QUAT 1 0 0 0 0 0 0 1\n"
     f"EDGE_SE3:QUAT 0 1 1 0 0 0 0 0 1 {INFO3}\n", r"has norm 1\.41421e\+200"),
    ("VERTEX_SE3:QUAT 0 0 0 0 1e-200 0 0 0\nVERTEX_SE3:QUAT 1 0 0 0 0 0 0 1\n"
     f"EDGE_SE3:QUAT 0 1 1 0 0 0 0 0 1 {INFO3}\n", "has norm 1e-200"),
])
def test_conversions_never_leave_non_finite_values(tmp_path, text, words):
    path = _write(tmp_path, "huge.g2o", text)
    with pytest.raises(FormatError, match=words) as error:
        read_g2o(path)
    assert error.value.path == str(path)


def test_huge_but_finite_values_are_read_finite(tmp_path):
    graph = read_g2o(_write(tmp_path, "huge.g2o", "VERTEX3 0 1e200 0 0 1e200 -1e200 1e200\nVERTEX3 1 0 0 0 0 0 0\n"
                                                  f"EDGE3 0 1 1e300 0 0 1e300 0 0 {INFO3}\n"))
    assert _finite(graph) and float(graph.poses.data[0, 0]) == 1e200


def test_kitti_rotation_with_huge_entries_is_refused(tmp_path):
    path = _write(tmp_path, "huge.kitti", KITTI + "1e200 1e200 0 0 -1e200 1e200 0 0 0 0 1 0\n")
    with pytest.raises(FormatError, match="not orthonormal") as error:  # R Rᵀ overflows to inf and nan
        read_kitti(path)
    assert error.value.line == 4


@pytest.mark.parametrize("doctype", [
    '<!DOCTYPE r [<!ENTITY a "aaaaaaaaaa"><!ENTITY b "&a;&a;&a;&a;&a;&a;&a;&a;&a;&a;">'
    '<!ENTITY c "&b;&b;&b;&b;&b;&b;&b;&b;&b;&b;">]>',  # billion laughs, small
    '<!DOCTYPE r [<!ENTITY x SYSTEM "file:///etc/passwd">]>',  # an external entity
    '<!DOCTYPE robot SYSTEM "http://example.invalid/robot.dtd">',  # an external DTD
])
def test_urdf_refuses_dtds_and_entities(tmp_path, doctype):
    body = URDF.split("?>", 1)[1] if URDF.startswith("<?xml") else URDF
    entity = "&c;" if "ENTITY c" in doctype else "&x;" if "ENTITY x" in doctype else ""
    text = '<?xml version="1.0"?>\n' + doctype + "\n" + body.replace('name="ur5"', f'name="ur5{entity}"', 1)
    path = _write(tmp_path, "evil.urdf", text)
    with pytest.raises(URDFError, match="DTDs and entity declarations are not allowed") as error:
        read_urdf(path)
    assert error.value.path == str(path) and error.value.line == 2


def test_urdf_axis_norm_neither_overflows_nor_underflows(tmp_path):
    for scale in ("1e200", "1e-200"):
        robot = read_urdf(_write(tmp_path, "axis.urdf", URDF.replace('<axis xyz="0 0 1"/>',
                                                                      f'<axis xyz="0 0 {scale}"/>', 1)))
        assert robot.movable_joints[0].axis == (0.0, 0.0, 1.0)


def test_urdf_huge_angles_give_a_finite_robot(tmp_path):
    from slam.kinematics import Kinematics

    origin = '<origin rpy="0.0 0.0 0.0" xyz="0.0 0.0 0.089159"/>'
    assert origin in URDF
    robot = read_urdf(_write(tmp_path, "rpy.urdf", URDF.replace(origin, origin.replace('rpy="0.0', 'rpy="1e200'))))
    assert all(abs(a) <= np.pi for a in robot.joints[0].rpy)  # the same rotation, a finite quaternion
    poses = Kinematics(robot).forward(torch.zeros(1, robot.dof, dtype=torch.float64))
    assert bool(torch.isfinite(poses.data).all())


def _gtsam_information(factor) -> np.ndarray:
    r = np.asarray(factor.noiseModel().R())
    return r.T @ r


@pytest.mark.parametrize("name", ["intel.g2o", "tinyGrid3D.g2o"])
def test_written_graphs_read_into_gtsam_with_every_factor(tmp_path, name):
    gtsam = pytest.importorskip("gtsam")
    graph = read_g2o(DATA / name)
    graph = dataclasses.replace(graph, fixed=torch.tensor([0, 3]))  # two FIX lines
    path = write_g2o(tmp_path / name, graph)
    three_d = graph.group.__name__ == "SE3"
    assert "FIX" in path.read_text()
    factors, initial = gtsam.readG2o(str(path), three_d)
    assert factors.size() == graph.num_edges and initial.size() == graph.num_poses
    d = graph.information.shape[-1]
    # GTSAM's tangent order is [ω, v] in 3D ([x, y, θ], as ours, in 2D)
    order = np.r_[3:6, 0:3] if three_d else np.arange(d)
    ids = graph.ids.tolist()
    for k in range(graph.num_edges):
        factor = factors.at(k)
        assert list(factor.keys()) == [ids[int(graph.i[k])], ids[int(graph.j[k])]]
        np.testing.assert_allclose(_gtsam_information(factor), graph.information[k].numpy()[np.ix_(order, order)],
                                   rtol=1e-9, atol=1e-9)
        measured = factor.measured()
        if three_d:
            expected = graph.measurements[k].matrix().numpy()
            np.testing.assert_allclose(measured.matrix(), expected, atol=1e-12)
        else:
            x, y, theta = graph.measurements[k].xytheta().tolist()
            np.testing.assert_allclose([measured.x(), measured.y(), measured.theta()], [x, y, theta], atol=1e-12)
    for index, key in enumerate(ids):
        pose = initial.atPose3(key).matrix() if three_d else initial.atPose2(key).matrix()
        np.testing.assert_allclose(pose, graph.poses[index].matrix().numpy(), atol=1e-12)


def test_disconnected_graph_error_names_the_file(tmp_path):
    path = _write(tmp_path, "two-parts.g2o", "EDGE_SE2 0 1 1 0 0 1 0 0 1 0 1\nEDGE_SE2 5 6 1 0 0 1 0 0 1 0 1\n")
    with pytest.raises(DisconnectedGraphError, match=f"^{path}: the pose graph has 2 connected components"):
        read_g2o(path)
    # with vertices the file reads; initializing from the edges then fails, naming the file
    with_vertices = _write(tmp_path, "with-vertices.g2o", "".join(f"VERTEX_SE2 {k} {k} 0 0\n" for k in (0, 1, 5, 6))
                           + path.read_text())
    graph = read_g2o(with_vertices)
    for init in ("odometry", "chordal"):
        with pytest.raises(DisconnectedGraphError, match=f"^{with_vertices}: the pose graph has 2"):
            optimize(graph, init=init)


def test_evaluate_errors_name_both_files(tmp_path):
    est = _write(tmp_path, "est.tum", TUM)
    ref = _write(tmp_path, "ref.tum", TUM.replace("0.0 0", "100.0 0").replace("1.0 1", "101.0 1")
                 .replace("2.0 2", "102.0 2"))
    with pytest.raises(ValueError, match=f"{est} against {ref}: only 0 of 3"):
        evaluate(est, ref)
    kitti = _write(tmp_path, "ref.kitti", KITTI + KITTI.splitlines()[0] + "\n")
    with pytest.raises(ValueError, match=f"{est} has 3 poses and {kitti} has 4"):
        evaluate(est, kitti)
    line = _write(tmp_path, "line.kitti", KITTI)  # collinear points: no unique alignment
    with pytest.raises(ValueError, match=f"{est} against {line}: umeyama: degenerate"):
        evaluate(est, line)
