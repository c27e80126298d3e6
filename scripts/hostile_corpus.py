"""Run the ``slam`` command (and the URDF reader) over a corpus of hostile and careless inputs.

Builds small real inputs (a 40-pose piece of intel.g2o, tinyGrid3D.g2o, both also as TORO files, the
BAL Dubrovnik-3-7 problem plain and bzip2, a TUM and a KITTI trajectory, the UR5 URDF), derives
several hundred seeded mutations and output-path abuses from them, runs each through
``slam.cli.main`` in this process (the URDF through ``read_urdf``), and counts:

- tracebacks: an exception escaping, or an ``internal error`` line (exit 1 from a bug);
- silent non-finite results: a run that exits 0/1 with NaN/Inf (or JSON null) in an output;
- inputs modified: any input whose sha256 changed;
- errors not naming their file: exit 2 whose message names neither the input nor the output
  concerned (nor the option, for --device).

    .venv/bin/python scripts/hostile_corpus.py [--out slam-output/hostile] [--seed 0]

Writes ``cases.json`` (every case: kind, arguments, exit code, first error line, findings) and
prints one line per failing case and a summary.  Exit code 1 if any case fails.
"""

from __future__ import annotations

import argparse
import bz2
import contextlib
import hashlib
import io
import json
import logging
import math
import os
import random
import re
import shutil
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT / "slam" / "data"  # package data (slam.data)
SHARED = ROOT.parent / "shared" / "data"

NUMBER = re.compile(r"^[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?$")
BAD_NUMBERS = ["abc", "1_0.5", "\u0663", "\uff13", "nan", "inf", "-inf", "1e400", "1e200", "-1e200", "-0",
               "1e-320", "0x10", "1,5", "+", "."]
BAD_IDS = [str(2**63), str(2**64), "-1", "999999", "1.5", "\u0663", "1_0"]


# ------------------------------------------------------------------------------ base inputs


def _sha(path: Path) -> str | None:
    return hashlib.sha256(path.read_bytes()).hexdigest() if path.is_file() else None


def build_inputs(folder: Path) -> dict[str, Path]:
    """The clean base files, written into ``folder``."""
    import numpy as np
    import torch

    from liegeo import SE3

    base: dict[str, Path] = {}
    lines = (DATA / "intel.g2o").read_text().splitlines()
    keep = [ln for ln in lines if ln.startswith("VERTEX_SE2") and int(ln.split()[1]) < 40]
    keep += [ln for ln in lines if ln.startswith("EDGE_SE2") and max(int(ln.split()[1]), int(ln.split()[2])) < 40]
    (folder / "g2o2d.g2o").write_text("\n".join(keep) + "\n")
    base["g2o2d"] = folder / "g2o2d.g2o"
    shutil.copy(DATA / "tinyGrid3D.g2o", folder / "g2o3d.g2o")
    base["g2o3d"] = folder / "g2o3d.g2o"

    toro = []  # TORO 2D: EDGE2 information order I11 I12 I22 I33 I13 I23
    for ln in keep:
        t = ln.split()
        if t[0] == "VERTEX_SE2":
            toro.append(" ".join(["VERTEX2", *t[1:]]))
        else:
            i11, i12, i13, i22, i23, i33 = t[6:12]
            toro.append(" ".join(["EDGE2", *t[1:6], i11, i12, i22, i33, i13, i23]))
    (folder / "toro2d.graph").write_text("\n".join(toro) + "\n")
    base["toro2d"] = folder / "toro2d.graph"

    def rpy(q: list[str]) -> list[str]:  # R = Rz(yaw) Ry(pitch) Rx(roll)
        m = SE3(torch.tensor([0, 0, 0, *map(float, q)], dtype=torch.float64)).matrix().numpy()
        roll, pitch, yaw = math.atan2(m[2, 1], m[2, 2]), -math.asin(np.clip(m[2, 0], -1, 1)), math.atan2(m[1, 0], m[0, 0])
        return [repr(roll), repr(pitch), repr(yaw)]

    toro = []
    for ln in (DATA / "tinyGrid3D.g2o").read_text().splitlines():
        t = ln.split()
        if not t:
            continue
        if t[0] == "VERTEX_SE3:QUAT":
            toro.append(" ".join(["VERTEX3", t[1], *t[2:5], *rpy(t[5:9])]))
        elif t[0] == "EDGE_SE3:QUAT":
            toro.append(" ".join(["EDGE3", t[1], t[2], *t[3:6], *rpy(t[6:10]), *t[10:]]))
        else:
            toro.append(ln)
    (folder / "toro3d.graph").write_text("\n".join(toro) + "\n")
    base["toro3d"] = folder / "toro3d.graph"

    shutil.copy(DATA / "dubrovnik-3-7-pre.txt", folder / "bal.txt")
    base["bal"] = folder / "bal.txt"
    (folder / "bal.txt.bz2").write_bytes(bz2.compress((DATA / "dubrovnik-3-7-pre.txt").read_bytes()))
    base["bal_bz2"] = folder / "bal.txt.bz2"

    tum = SHARED / "trajectories" / "freiburg1_xyz-groundtruth.txt"
    if tum.exists():
        text = [ln for ln in tum.read_text().splitlines() if ln and not ln.startswith("#")][:200]
    else:  # a synthetic one where the shared data are absent
        text = [f"{k * 0.1:.4f} {0.01 * k:.4f} {math.sin(k / 9):.4f} 0.1 0 0 {math.sin(k / 40):.6f} "
                f"{math.cos(k / 40):.6f}" for k in range(200)]
    (folder / "traj.tum").write_text("\n".join(text) + "\n")
    base["tum"] = folder / "traj.tum"
    kitti = SHARED / "trajectories" / "KITTI_00_gt.txt"
    if kitti.exists():
        text = kitti.read_text().splitlines()[:100]
    else:
        text = [f"1 0 0 {k} 0 1 0 {0.1 * k} 0 0 1 0" for k in range(100)]
    (folder / "traj.kitti").write_text("\n".join(text) + "\n")
    base["kitti"] = folder / "traj.kitti"
    shutil.copy(DATA / "ur5.urdf", folder / "robot.urdf")
    base["urdf"] = folder / "robot.urdf"
    return base


# ------------------------------------------------------------------------------ mutations


def _data_lines(text: str) -> list[int]:
    return [k for k, ln in enumerate(text.split("\n")) if ln.strip() and not ln.lstrip().startswith(("#", "<"))]


def _replace_token(text: str, rng: random.Random, value: str, numeric_only: bool = True, position: int | None = None
                   ) -> str:
    lines = text.split("\n")
    candidates = _data_lines(text)
    k = rng.choice(candidates)
    tokens = lines[k].split()
    places = [i for i, t in enumerate(tokens) if NUMBER.match(t)] if numeric_only else list(range(len(tokens)))
    if not places:
        return text
    i = places[position] if position is not None and position < len(places) else rng.choice(places)
    tokens[i] = value
    lines[k] = " ".join(tokens)
    return "\n".join(lines)


def _with_field(lines: list[str], k: int, i: int, value: str) -> bytes:
    """The file with field ``i`` of line ``k`` set to ``value``."""
    mutated = list(lines)
    tokens = mutated[k].split()
    tokens[i] = value
    mutated[k] = " ".join(tokens)
    return "\n".join(mutated).encode()


def text_mutations(kind: str, text: str, rng: random.Random) -> list[tuple[str, bytes]]:
    """(name, content) pairs for a line-oriented text input."""
    out: list[tuple[str, bytes]] = []
    data = text.encode()
    lines = text.split("\n")
    rows = _data_lines(text)
    for n in range(4):
        cut = rng.randrange(1, len(data))
        out.append((f"truncated at byte {cut}", data[:cut]))
    out.append(("empty file", b""))
    out.append(("only comments", b"# nothing here\n# at all\n"))
    for n in range(2):
        k = rng.choice(rows)
        out.append((f"line {k + 1} deleted", "\n".join(lines[:k] + lines[k + 1:]).encode()))
        out.append((f"line {k + 1} duplicated", "\n".join(lines[:k + 1] + lines[k:]).encode()))
    a, b = rng.sample(rows, 2)
    swapped = list(lines)
    swapped[a], swapped[b] = swapped[b], swapped[a]
    out.append((f"lines {a + 1} and {b + 1} swapped", "\n".join(swapped).encode()))
    for n in range(2):
        k = rng.choice(rows)
        fewer, more = list(lines), list(lines)
        fewer[k] = " ".join(lines[k].split()[:-1])
        more[k] = lines[k] + " 1.0"
        out.append((f"line {k + 1} one field short", "\n".join(fewer).encode()))
        out.append((f"line {k + 1} one field extra", "\n".join(more).encode()))
    for value in BAD_NUMBERS:
        out.append((f"a number replaced by {value!r}", _replace_token(text, rng, value).encode()))
    out.append(("byte-order mark", b"\xef\xbb\xbf" + data))
    out.append(("CRLF line ends", text.replace("\n", "\r\n").encode()))
    out.append(("UTF-16", text.encode("utf-16")))
    out.append(("latin-1 byte in a number", _replace_token(text, rng, "1.5\xe9").encode("latin-1")))
    junk = bytes(rng.randrange(256) for _ in range(64))
    cut = rng.randrange(len(data))
    out.append(("random bytes inserted", data[:cut] + junk + data[cut:]))
    out.append(("NUL bytes", data.replace(b" ", b"\x00", 3)))
    if kind in ("g2o2d", "g2o3d", "toro2d", "toro3d"):
        edge_rows = [k for k in rows if lines[k].startswith("EDGE")]
        vertex_rows = [k for k in rows if lines[k].startswith("VERTEX")]
        for value in BAD_IDS:
            out.append((f"edge id replaced by {value}", _with_field(lines, rng.choice(edge_rows), 1, value)))
            out.append((f"vertex id replaced by {value}", _with_field(lines, rng.choice(vertex_rows), 1, value)))
        k = rng.choice(edge_rows)
        out.append(("self-loop", _with_field(lines, k, 2, lines[k].split()[1])))
        k, other = rng.sample(vertex_rows, 2)
        out.append(("duplicate vertex id", _with_field(lines, k, 1, lines[other].split()[1])))
        out.append(("no vertex lines", "\n".join(lines[k] for k in edge_rows).encode()))
        out.append(("FIX of a missing vertex", (text + "FIX 424242\n").encode()))
        out.append(("unknown tag", (text + "EDGE_FOO 1 2 3\n").encode()))
        mutated = list(lines)
        k = rng.choice(edge_rows)
        t = mutated[k].split()
        info_start = {"g2o2d": 6, "toro2d": 6, "g2o3d": 10, "toro3d": 9}[kind]
        t[info_start] = "-" + t[info_start].lstrip("-")
        mutated[k] = " ".join(t)
        out.append(("negative information diagonal", "\n".join(mutated).encode()))
        mutated = list(lines)
        t = mutated[k].split()
        t[info_start + 1] = "1e9"  # I12 far larger than the diagonal: indefinite
        mutated[k] = " ".join(t)
        out.append(("indefinite information", "\n".join(mutated).encode()))
        other = {"g2o2d": "VERTEX_SE3:QUAT 900 0 0 0 0 0 0 1", "toro2d": "VERTEX_SE3:QUAT 900 0 0 0 0 0 0 1",
                 "g2o3d": "VERTEX_SE2 900 0 0 0", "toro3d": "VERTEX_SE2 900 0 0 0"}[kind]
        out.append(("2D and 3D lines mixed", (text + other + "\n").encode()))
        if kind == "g2o3d":
            for scale, name in ((5.0, "quaternion of norm 5"), (0.0, "zero quaternion")):
                mutated = list(lines)
                k = rng.choice(vertex_rows + edge_rows)
                t = mutated[k].split()
                q0 = 5 if t[0].startswith("VERTEX") else 6
                t[q0:q0 + 4] = [repr(float(x) * scale) for x in t[q0:q0 + 4]]
                mutated[k] = " ".join(t)
                out.append((name, "\n".join(mutated).encode()))
            toro_edge = "EDGE3 0 1 1 0 0 0 0 0 " + " ".join(["1"] + ["0"] * 5 + ["1"] + ["0"] * 4 + ["1"] + ["0"] * 3
                                                            + ["1", "0", "0", "1", "0", "1"])
            out.append(("EDGE3 mixed with EDGE_SE3:QUAT", (text + toro_edge + "\n").encode()))
    if kind == "tum":
        k = rng.choice(rows[1:])
        mutated = list(lines)
        t = mutated[k].split()
        t[0] = mutated[k - 1].split()[0]
        mutated[k] = " ".join(t)
        out.append(("repeated timestamp", "\n".join(mutated).encode()))
        mutated = list(lines)
        t = mutated[k].split()
        t[4:8] = ["0", "0", "0", "5"]
        mutated[k] = " ".join(t)
        out.append(("quaternion of norm 5", "\n".join(mutated).encode()))
    if kind == "kitti":
        mutated = list(lines)
        k = rng.choice(rows)
        t = mutated[k].split()
        t[0] = "-" + t[0]
        mutated[k] = " ".join(t)
        out.append(("reflection", "\n".join(mutated).encode()))
        mutated = list(lines)
        t = mutated[k].split()
        t[1] = "0.5"
        mutated[k] = " ".join(t)
        out.append(("rotation not orthonormal", "\n".join(mutated).encode()))
    if kind == "bal":
        header = lines[0].split()
        for name, value in (("num_points huge", str(2**62)), ("num_points zero", "0"), ("num_cameras overflow",
                                                                                          str(2**64))):
            mutated = list(lines)
            t = list(header)
            t[1 if "points" in name else 0] = value
            mutated[0] = " ".join(t)
            out.append((f"header {name}", "\n".join(mutated).encode()))
        obs = [k for k in rows[1:] if len(lines[k].split()) == 4]
        mutated = list(lines)
        k = rng.choice(obs)
        t = mutated[k].split()
        t[0] = "7"
        mutated[k] = " ".join(t)
        out.append(("camera index out of range", "\n".join(mutated).encode()))
        # rows[k]: the k-th non-blank line; after the header and the observations, one value per line
        values = rows[1 + int(header[2]):]
        for slot, name in ((3, "camera translation 1e40"), (6, "focal length 1e200"), (0, "rotation 1e40")):
            mutated = list(lines)
            mutated[values[slot]] = "1e40" if "1e40" in name else "1e200"
            out.append((name, "\n".join(mutated).encode()))
        mutated = list(lines)  # camera 0 at the origin, unrotated, and point 0 at the origin: zero depth
        point_start = 9 * int(header[0])
        for slot in (*range(6), *range(point_start, point_start + 3)):
            mutated[values[slot]] = "0"
        out.append(("point at a camera centre", "\n".join(mutated).encode()))
    return out


def urdf_mutations(text: str, rng: random.Random) -> list[tuple[str, bytes]]:
    data = text.encode()
    out = [(f"truncated at byte {c}", data[:c]) for c in sorted(rng.sample(range(1, len(data)), 6))]
    out.append(("empty", b""))
    out.append(("not XML", b"robot name=x"))
    out.append(("billion laughs", b'<?xml version="1.0"?><!DOCTYPE r [<!ENTITY a "aaaaaaaaaa">'
                + b"".join(b'<!ENTITY %s "%s">' % (bytes([98 + i]), (b"&" + bytes([97 + i]) + b";") * 10)
                           for i in range(8)) + b']><robot name="&i;"/>'))
    out.append(("external entity", b'<?xml version="1.0"?><!DOCTYPE r [<!ENTITY x SYSTEM "file:///etc/passwd">]>'
                b'<robot name="&x;"/>'))
    for attribute, value in (("xyz", "nan 0 0"), ("xyz", "1_0 0 0"), ("rpy", "inf 0 0"), ("axis", "0 0 0"),
                             ("lower", "abc"), ("xyz", "1 2"), ("xyz", "\u0663 0 0")):
        pattern = re.compile(rf'{attribute}="[^"]*"')
        matches = list(pattern.finditer(text))
        if matches:
            m = rng.choice(matches)
            out.append((f"{attribute}={value!r}", (text[:m.start()] + f'{attribute}="{value}"' + text[m.end():]).encode()))
    out.append(("joint with a missing parent link", text.replace('<parent link="', '<parent link="nowhere_', 1).encode()))
    out.append(("byte-order mark", b"\xef\xbb\xbf" + data))
    out.append(("latin-1 byte", text.replace("robot", "rob\xe9t", 1).encode("latin-1")))
    return out


# ------------------------------------------------------------------------------ running


def run_cli(argv: list[str]) -> tuple[int, str, str]:
    import slam.cli

    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            code = slam.cli.main(argv)
        except SystemExit as stop:  # argparse usage errors
            code = int(stop.code or 0)
        except BaseException as error:  # noqa: BLE001 - this is what the corpus looks for
            import traceback

            return -1, out.getvalue(), err.getvalue() + "Traceback (escaped main)\n" + "".join(
                traceback.format_exception(error))
    return code, out.getvalue(), err.getvalue()


def _outputs_non_finite_file(path: Path) -> bool:
    """Whether a text output holds NaN/Inf (JSON: also null, which stands for one)."""
    if path.suffix in (".png", ".ply", ".pdf", ".svg"):
        return False
    data = path.read_bytes()
    if path.suffix == ".json":
        return bool(re.search(rb"\bNaN\b|Infinity|: null", data))
    return bool(re.search(rb"(?<![A-Za-z_])(nan|inf|infinity)(?![A-Za-z_])", data, re.IGNORECASE))


def _outputs_non_finite(folder: Path) -> list[str]:
    return [str(p) for p in folder.rglob("*") if p.is_file() and _outputs_non_finite_file(p)]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=Path("slam-output/hostile"))
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    logging.disable(logging.WARNING)  # the CLI's log lines are not what is judged
    rng = random.Random(args.seed)
    work = Path(tempfile.mkdtemp(prefix="slam-hostile-"))
    base_dir = work / "base"
    base_dir.mkdir()
    base = build_inputs(base_dir)
    cases: list[dict] = []
    command = {"g2o2d": "pgo", "g2o3d": "pgo", "toro2d": "pgo", "toro3d": "pgo", "bal": "ba", "bal_bz2": "ba",
               "tum": "eval", "kitti": "eval"}
    start = time.perf_counter()

    def judge(kind: str, name: str, argv: list[str] | None, inputs: list[Path], case_dir: Path,
              named: list[str], run=None) -> None:
        before = {p: _sha(p) for p in inputs}
        if run is None:
            code, out, err = run_cli(argv)
        else:
            code, out, err = run()
        after = {p: _sha(p) for p in inputs}
        findings = []
        if code == -1 or "Traceback" in err or "internal error" in err:
            findings.append("traceback")
        if before != after:
            findings.append("input modified")
        if code in (0, 3) and "internal error" not in err:  # ran (3: did not converge; slam --help)
            if run is not None:  # the URDF reader: its own check of the model it returned
                bad = [str(inputs[0])] if "non-finite" in err else []
            else:  # the command's outputs (the inputs may hold NaN on purpose)
                out_dir, summary = case_dir / "out", case_dir / "eval.json"
                bad = _outputs_non_finite(out_dir) if out_dir.is_dir() else []
                bad += [str(summary)] if summary.is_file() and _outputs_non_finite_file(summary) else []
            if bad:
                findings.append(f"non-finite output {bad}")
        if code == 2 and not any(n in err for n in named):
            findings.append("error does not name its file")
        if code == 2 and len(err.strip().splitlines()) != 1:
            findings.append("error is not one line")
        first = err.strip().splitlines()[0] if err.strip() else ""
        cases.append({"kind": kind, "case": name, "argv": argv, "exit": code, "error": first[:300],
                      "findings": findings})
        if findings:
            print(f"FAIL {kind}: {name}: exit {code}: {findings}: {first[:200]}")

    for kind, path in base.items():
        if kind == "bal_bz2":
            continue
        text = path.read_text()
        mutations = urdf_mutations(text, rng) if kind == "urdf" else text_mutations(kind, text, rng)
        if kind == "bal":
            raw = path.read_bytes()
            packed = bz2.compress(raw)
            mutations += [("bzip2 (valid)", packed), ("bzip2 truncated", packed[: len(packed) // 2]),
                          ("bzip2 header only", b"BZh9"),
                          ("bzip2 bomb", bz2.compress(b"0 " * (150 * 2**20)))]
        for k, (name, content) in enumerate(mutations):
            case_dir = work / f"{kind}-{k:03d}"
            case_dir.mkdir()
            suffix = ".bz2" if name.startswith("bzip2") else ""
            target = case_dir / (path.name + suffix)
            target.write_bytes(content)
            if kind == "urdf":
                def run(target=target):  # noqa: ANN001
                    import torch

                    from slam.kinematics import Kinematics, read_urdf

                    try:
                        robot = Kinematics(read_urdf(target))
                        pose = robot.forward(robot.random_configurations(4))
                        poses = pose.values() if isinstance(pose, dict) else [pose]
                        if not all(bool(torch.isfinite(p.data).all()) for p in poses):
                            return 0, "", "non-finite forward kinematics\n"
                        return 0, "", ""
                    except ValueError as error:
                        return 2, "", str(error) + "\n"
                    except Exception as error:  # noqa: BLE001
                        return -1, "", f"Traceback: {type(error).__name__}: {error}\n"

                judge(kind, name, None, [target], case_dir, [target.name], run=run)
                continue
            if command[kind] == "eval":
                argv = ["-q", "eval", str(target), str(path), "--json", str(case_dir / "eval.json")]
            else:
                argv = ["-q", command[kind], str(target), "--output-dir", str(case_dir / "out"),
                        "--max-iterations", "20"]
            judge(kind, name, argv, [target, path], case_dir, [target.name])

    # Paths: directories, links, missing files, and outputs that must be refused.
    g = base["g2o2d"]
    paths_dir = work / "paths"
    paths_dir.mkdir()
    (paths_dir / "adir").mkdir()
    os.link(g, paths_dir / "hard.g2o")
    (paths_dir / "sym.g2o").symlink_to(g)
    out = str(paths_dir / "out")
    path_cases = [
        ("directory as the graph", ["-q", "pgo", str(paths_dir / "adir")], ["adir"]),
        ("directory as a BAL file", ["-q", "ba", str(paths_dir / "adir")], ["adir"]),
        ("directory as a trajectory", ["-q", "eval", str(paths_dir / "adir"), str(base["tum"])], ["adir"]),
        ("missing graph", ["-q", "pgo", str(paths_dir / "missing.g2o")], ["missing.g2o"]),
        ("symlink to the graph (valid)", ["-q", "pgo", str(paths_dir / "sym.g2o"), "--output-dir", out], ["sym.g2o"]),
        ("--out onto a hard link of the input", ["-q", "pgo", str(g), "--out", str(paths_dir / "hard.g2o"),
                                                 "--output-dir", out], ["hard.g2o"]),
        ("--out onto a symlink of the input", ["-q", "pgo", str(g), "--out", str(paths_dir / "sym.g2o"),
                                               "--output-dir", out], ["sym.g2o"]),
        ("--json onto the input", ["-q", "pgo", str(g), "--json", str(g)], [g.name]),
        ("--tum onto the input", ["-q", "pgo", str(g), "--tum", str(g)], [g.name]),
        ("--out and --tum one file", ["-q", "pgo", str(g), "--out", str(paths_dir / "x"), "--tum",
                                      str(paths_dir / "x")], ["x"]),
        ("--json into a missing folder", ["-q", "pgo", str(g), "--json", str(paths_dir / "no/x.json")], ["x.json"]),
        ("--json onto a directory", ["-q", "pgo", str(g), "--json", str(paths_dir / "adir")], ["adir"]),
        ("--json onto /dev/full", ["-q", "pgo", str(g), "--json", "/dev/full"], ["/dev/full"]),
        ("--png into a missing folder", ["-q", "pgo", str(g), "--png", str(paths_dir / "no/x.png")], ["x.png"]),
        ("ba --json onto the input", ["-q", "ba", str(base["bal"]), "--json", str(base["bal"])], ["bal.txt"]),
        ("ba --ply onto a directory", ["-q", "ba", str(base["bal"]), "--ply", str(paths_dir / "adir")], ["adir"]),
        ("eval --json onto the estimate", ["-q", "eval", str(base["tum"]), str(base["tum"]), "--json",
                                           str(base["tum"])], ["traj.tum"]),
        ("view --png onto a directory", ["-q", "view", str(g), "--png", str(paths_dir / "adir")], ["adir"]),
        ("view --ply into a missing folder", ["-q", "view", str(g), "--ply", str(paths_dir / "no/p")], ["p_edges"]),
        ("--device cuda:7", ["-q", "pgo", str(g), "--device", "cuda:7"], ["--device"]),
        ("--device banana", ["-q", "pgo", str(g), "--device", "banana"], ["--device"]),
        ("--output-dir is a file", ["-q", "pgo", str(g), "--output-dir", str(g)], [g.name]),
    ]
    for name, argv, named in path_cases:
        judge("paths", name, argv, [g, base["bal"], base["tum"]], paths_dir, named)

    seconds = time.perf_counter() - start
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "cases.json").write_text(json.dumps(cases, indent=1) + "\n")
    summary: dict[str, int] = {"cases": len(cases)}
    for label in ("traceback", "input modified", "non-finite output", "error does not name its file",
                  "error is not one line"):
        summary[label] = sum(any(f.startswith(label) for f in c["findings"]) for c in cases)
    summary["exit 0"] = sum(c["exit"] == 0 for c in cases)
    summary["exit 1"] = sum(c["exit"] == 1 for c in cases)
    summary["exit 2"] = sum(c["exit"] == 2 for c in cases)
    print(json.dumps(summary), f"({seconds:.0f} s; cases in {args.out / 'cases.json'})")
    shutil.rmtree(work, ignore_errors=True)
    return 1 if any(c["findings"] for c in cases) else 0


if __name__ == "__main__":
    sys.exit(main())
