"""``slam eval`` with evo's options: --delta/--delta-unit f|m|d|r, --all-pairs, --max-diff, --pose-relation,
--angle-unit, --plot, and the plane of 2D trajectories.

The metrics are checked against a direct numpy transcription of evo's definitions (evo 1.38,
``evo.core.filters`` and ``evo.core.metrics``) on small synthetic trajectories; the optional tests
at the end compare with evo itself (skipped when evo is not installed) on the shared KITTI and TUM files.
"""

from __future__ import annotations

import copy
import json
import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

import slam.cli
from liegeo import SE3, SO3
from slam.io import Trajectory, read_tum, write_kitti, write_tum
from slam.io.trajectory import declared_plane, exact_plane
from slam.metrics import ape, check_delta, coordinate_plane, evaluate, rpe, rpe_pairs

TRAJECTORIES = Path(__file__).resolve().parents[2] / "shared" / "data" / "trajectories"
REPO = Path(__file__).resolve().parents[1]
STATISTICS = ("rmse", "mean", "median", "std", "min", "max")


# ------------------------------------------------------------------------------ synthetic trajectories


def wobbly_walk(n: int, generator: torch.Generator, step: float = 0.4, turn: float = 0.15) -> SE3:
    """A smooth 3D trajectory: the product of n small random motions (float64)."""
    xi = torch.randn(n, 6, generator=generator, dtype=torch.float64)
    xi *= torch.tensor([step, step / 3, step / 3, turn, turn, turn], dtype=torch.float64)
    xi[:, 0] += step  # mostly forward
    poses = [SE3.identity(dtype=torch.float64)]
    for k in range(1, n):
        poses.append(poses[-1].compose(SE3.exp(xi[k])))
    return SE3.stack(poses)


def noisy(poses: SE3, generator: torch.Generator, sigma: float = 0.03) -> SE3:
    return poses.retract(torch.randn(*poses.shape, 6, generator=generator, dtype=torch.float64) * sigma)


def lifted_se2(xytheta: torch.Tensor) -> SE3:
    """SE(2) poses as the SE(3) poses of a 2D graph's TUM output: z = 0, rotations about z."""
    half = 0.5 * xytheta[:, 2]
    zero = torch.zeros_like(half)
    return SE3(torch.stack([xytheta[:, 0], xytheta[:, 1], zero, zero, zero, half.sin(), half.cos()], dim=-1))


def write_pair(tmp_path: Path, generator: torch.Generator, n: int = 80, offset: float = 0.0) -> tuple[Path, Path]:
    """A reference and a noisy, moved estimate as TUM files (estimate stamps shifted by ``offset`` s)."""
    ref = wobbly_walk(n, generator)
    est = SE3.exp(torch.tensor([1.0, -2.0, 0.5, 0.1, 0.2, -0.3], dtype=torch.float64)).compose(noisy(ref, generator))
    stamps = 100.0 + torch.arange(n, dtype=torch.float64) / 10
    write_tum(tmp_path / "ref.tum", Trajectory(stamps, ref))
    write_tum(tmp_path / "est.tum", Trajectory(stamps + offset, est))
    return tmp_path / "est.tum", tmp_path / "ref.tum"


# ------------------------------------------------------------------------------ evo's definitions in numpy


def matrices(poses: SE3) -> np.ndarray:
    return poses.matrix().detach().double().numpy()


def angle_of(r: np.ndarray) -> float:
    """The rotation angle of a 3 x 3 rotation matrix (scipy's rotvec norm, as evo's so3_log_angle)."""
    from scipy.spatial.transform import Rotation

    return float(np.linalg.norm(Rotation.from_matrix(r).as_rotvec()))


def evo_pairs(m: np.ndarray, delta: float, unit: str, all_pairs: bool, rel_tol: float = 0.1) -> list[tuple[int, int]]:
    """evo 1.38's ``id_pairs_from_delta``, transcribed loop by loop from ``evo.core.filters``."""
    n = len(m)
    if unit == "frames":
        if all_pairs:
            return [(i, i + delta) for i in range(n) if i + delta < n]
        ids = list(range(0, n, delta))
        return list(zip(ids, ids[1:]))
    if unit == "meters":
        tol = delta * rel_tol
        if all_pairs:
            c = np.concatenate([[0.0], np.cumsum(np.linalg.norm(m[:-1, :3, 3] - m[1:, :3, 3], axis=1))])
            pairs = []
            for i in range(n - 1):
                here = c[i + 1:] - c[i]
                k = int(np.argmin(np.abs(here - delta)))
                if np.abs(here[k] - delta) <= tol:
                    pairs.append((i, k + i + 1))
            return pairs
        ids, path = [0], 0.0
        for i in range(1, n):
            path += float(np.linalg.norm(m[i, :3, 3] - m[i - 1, :3, 3]))
            if path >= delta:
                ids.append(i)
                path = 0.0
        return list(zip(ids, ids[1:]))
    degrees = unit == "degrees"
    tol = np.deg2rad(delta * rel_tol) if degrees else delta * rel_tol
    target = np.deg2rad(delta) if degrees else delta
    if all_pairs:
        return [(i, j) for i in range(n - 1) for j in range(i + 1, n)
                if target - tol <= angle_of(m[i, :3, :3].T @ m[j, :3, :3]) <= target + tol]
    pairs, turned, start = [], 0.0, 0
    for i in range(n - 1):
        turned += angle_of(m[i, :3, :3].T @ m[i + 1, :3, :3])
        if turned >= target:
            pairs.append((start, i + 1))
            turned, start = 0.0, i + 1
    return pairs


def evo_error(e: np.ndarray, relation: str, angle_unit: str = "deg") -> float:
    """evo's per-pose error of an error pose ``E (4, 4)`` for our relation names."""
    if relation == "trans":
        return float(np.linalg.norm(e[:3, 3]))
    if relation == "rot":
        angle = angle_of(e[:3, :3])
        return float(np.rad2deg(angle)) if angle_unit == "deg" else angle
    if relation == "rot_part":
        return float(np.linalg.norm(e[:3, :3] - np.eye(3)))
    return float(np.linalg.norm(e - np.eye(4)))


def evo_statistics(errors: np.ndarray) -> dict[str, float]:
    return {"rmse": math.sqrt(np.mean(errors ** 2)), "mean": float(np.mean(errors)), "median": float(np.median(errors)),
            "std": float(np.std(errors)), "min": float(np.min(errors)), "max": float(np.max(errors))}


def umeyama_numpy(x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """evo's ``geometry.umeyama_alignment`` without scale: (R, t) minimizing Σ |y - (R x + t)|²."""
    mx, my = x.mean(0), y.mean(0)
    u, _, vh = np.linalg.svd((y - my).T @ (x - mx) / len(x))
    s = np.eye(3)
    if np.linalg.det(u) * np.linalg.det(vh) < 0:
        s[2, 2] = -1
    r = u @ s @ vh
    return r, my - r @ mx


# ------------------------------------------------------------------------------ metrics against numpy


PAIR_CASES = [(1, "frames", False), (4, "frames", False), (4, "frames", True), (1.5, "meters", False),
              (3.0, "meters", True), (20.0, "degrees", False), (12.0, "degrees", True), (0.3, "radians", False),
              (0.25, "radians", True)]


@pytest.mark.parametrize("delta, unit, all_pairs", PAIR_CASES)
def test_rpe_pairs_are_evos(generator, delta, unit, all_pairs):
    poses = wobbly_walk(70, generator)
    pairs = rpe_pairs(poses, delta, unit, all_pairs=all_pairs, path_start="first_pose").tolist()
    expected = evo_pairs(matrices(poses), delta, unit, all_pairs)
    assert [tuple(p) for p in pairs] == expected
    assert len(pairs) >= 5  # the case is not vacuous


def test_rpe_pairs_meters_start_at_pose_0_like_evo_138_or_at_delta_like_older_evo():
    poses = SE3.from_rotation_translation(SO3.identity(8, dtype=torch.float64),
                                          torch.tensor([[float(k), 0, 0] for k in range(8)], dtype=torch.float64))
    assert rpe_pairs(poses, 3, "meters", path_start="first_pose").tolist() == [[0, 3], [3, 6]]
    assert rpe_pairs(poses, 3, "meters", path_start="delta").tolist() == [[3, 6]]


def test_all_pairs_meters_takes_the_first_of_equal_path_lengths_as_evos_argmin():
    # Pose 2 repeats pose 1: both are 1 m along the path from pose 0, 0.05 m short of the 1.05 m asked.
    x = torch.tensor([0.0, 1.0, 1.0, 2.0, 3.0, 4.0], dtype=torch.float64)
    poses = SE3.from_rotation_translation(SO3.identity(6, dtype=torch.float64),
                                          torch.stack([x, torch.zeros_like(x), torch.zeros_like(x)], -1))
    pairs = rpe_pairs(poses, 1.05, "meters", all_pairs=True).tolist()
    assert [tuple(p) for p in pairs] == evo_pairs(matrices(poses), 1.05, "meters", True)
    assert pairs[0] == [0, 1]


@pytest.mark.parametrize("relation, angle_unit", [("trans", "deg"), ("rot", "deg"), ("rot", "rad"), ("rot_part", "deg"),
                                                  ("full", "deg")])
@pytest.mark.parametrize("delta, unit, all_pairs", [(3, "frames", False), (2.0, "meters", True), (15.0, "degrees", False)])
def test_rpe_errors_are_evos(generator, relation, angle_unit, delta, unit, all_pairs):
    ref = wobbly_walk(60, generator)
    est = noisy(ref, generator)
    result = rpe(est, ref, delta=delta, unit=unit, all_pairs=all_pairs, path_start="first_pose", relation=relation,
                 angle_unit=angle_unit)
    p, q = matrices(est), matrices(ref)
    pairs = evo_pairs(p, delta, unit, all_pairs)
    inv = np.linalg.inv
    expected = np.array([evo_error(inv(inv(q[i]) @ q[j]) @ (inv(p[i]) @ p[j]), relation, angle_unit) for i, j in pairs])
    assert [tuple(x) for x in result["pairs"].tolist()] == pairs
    np.testing.assert_allclose(result["relation"]["errors"].numpy(), expected, rtol=1e-9, atol=1e-12)
    for name, value in evo_statistics(expected).items():
        assert result["relation"][name] == pytest.approx(value, rel=1e-9), name
    assert result["relation"]["unit"] == {"trans": "m", "rot": angle_unit}.get(relation, "")


@pytest.mark.parametrize("relation, angle_unit", [("trans", "deg"), ("rot", "deg"), ("rot", "rad"), ("rot_part", "deg"),
                                                  ("full", "deg")])
def test_ape_errors_are_evos(generator, relation, angle_unit):
    ref = wobbly_walk(50, generator)
    moved = SE3.exp(torch.tensor([3.0, -1.0, 2.0, 0.4, -0.2, 1.0], dtype=torch.float64))
    est = moved.compose(noisy(ref, generator, sigma=0.05))
    result = ape(est, ref, align="se3", relation=relation, angle_unit=angle_unit)
    p, q = matrices(est), matrices(ref)
    r, t = umeyama_numpy(p[:, :3, 3], q[:, :3, 3])
    aligned = np.einsum("ab,nbc->nac", np.block([[r, t[:, None]], [np.zeros((1, 3)), np.ones((1, 1))]]), p)
    if relation == "trans":  # evo: the distance of the positions
        expected = np.linalg.norm(aligned[:, :3, 3] - q[:, :3, 3], axis=1)
    else:  # evo's ape_base: E = P⁻¹ Q
        expected = np.array([evo_error(np.linalg.inv(a) @ b, relation, angle_unit) for a, b in zip(aligned, q)])
    np.testing.assert_allclose(result["errors"].numpy(), expected, rtol=1e-9, atol=1e-12)
    for name, value in evo_statistics(expected).items():
        assert result[name] == pytest.approx(value, rel=1e-9), name


def test_angle_relations_differ_by_the_unit_only(generator):
    ref = wobbly_walk(40, generator)
    est = noisy(ref, generator)
    deg = rpe(est, ref, relation="rot", angle_unit="deg")["relation"]
    rad = rpe(est, ref, relation="rot", angle_unit="rad")
    np.testing.assert_allclose(deg["errors"].numpy(), np.rad2deg(rad["relation"]["errors"].numpy()), rtol=1e-15)
    # The default rotation row is in radians, the same angle.
    np.testing.assert_allclose(rad["relation"]["errors"].numpy(), rad["rotation"]["errors"].numpy(), rtol=0, atol=0)


@pytest.mark.parametrize("delta, unit, message", [(2.5, "frames", "positive integer"), (0, "frames", "positive integer"),
                                                  (0.0, "meters", "positive"), (math.inf, "meters", "positive"),
                                                  (181.0, "degrees", r"\(0, 180\]"), (3.2, "radians", r"\(0, 3.14"),
                                                  (1.0, "furlongs", "unknown")])
def test_check_delta_refuses_what_evo_refuses(delta, unit, message):
    with pytest.raises(ValueError, match=message):
        check_delta(delta, unit)


# ------------------------------------------------------------------------------ planes


def test_a_2d_graphs_tum_output_names_its_plane_and_reads_back_exactly(tmp_path, generator):
    xytheta = torch.randn(30, 3, generator=generator, dtype=torch.float64).cumsum(0)
    traj = Trajectory(torch.arange(30, dtype=torch.float64), lifted_se2(xytheta))
    path = write_tum(tmp_path / "graph.tum", traj)
    lines = path.read_text().splitlines()
    assert lines[:2] == ["# timestamp tx ty tz qx qy qz qw", "# plane: xy"]
    assert declared_plane(path) == "xy"
    back = read_tum(path)
    assert torch.equal(back.poses.data, traj.poses.data) and torch.equal(back.timestamps, traj.timestamps)
    # A spatial trajectory gets no plane line; plane=None never writes one, an explicit plane always.
    spatial = write_tum(tmp_path / "3d.tum", Trajectory(traj.timestamps, wobbly_walk(30, generator)))
    assert declared_plane(spatial) is None and "plane" not in spatial.read_text()
    assert declared_plane(write_tum(tmp_path / "none.tum", traj, plane=None)) is None
    assert declared_plane(write_tum(tmp_path / "xz.tum", traj, plane="xz")) == "xz"
    with pytest.raises(ValueError, match="unknown plane"):
        write_tum(tmp_path / "bad.tum", traj, plane="xw")


def test_exact_and_approximate_planes(generator):
    flat = lifted_se2(torch.randn(20, 3, generator=generator, dtype=torch.float64).cumsum(0))
    assert exact_plane(flat) == "xy" and coordinate_plane(flat.translation()) == "xy"
    walk = wobbly_walk(40, generator)
    assert exact_plane(walk) is None and coordinate_plane(walk.translation()) is None
    # KITTI-like: x right, y down (a few per cent of the extent), z forward.
    g = torch.Generator().manual_seed(3)
    xz = torch.randn(200, 2, generator=g, dtype=torch.float64).cumsum(0) * 5
    kitti = torch.stack([xz[:, 0], 0.02 * torch.randn(200, generator=g, dtype=torch.float64).cumsum(0), xz[:, 1]], -1)
    assert coordinate_plane(kitti) == "xz"
    line = torch.stack([torch.arange(10.0), torch.zeros(10), torch.zeros(10)], -1).double()
    assert coordinate_plane(line) is None


def run_slam(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "slam.cli", *args], cwd=cwd, capture_output=True, text=True,
                          timeout=120, env={"PYTHONPATH": str(REPO), "PATH": "/usr/bin:/bin"})


def test_eval_warns_once_when_the_trajectories_lie_in_different_planes(tmp_path, generator):
    xytheta = torch.randn(60, 3, generator=generator, dtype=torch.float64).cumsum(0)
    graph = lifted_se2(xytheta)  # a 2D graph's output: x-y
    write_tum(tmp_path / "graph.tum", Trajectory(torch.arange(60, dtype=torch.float64), graph))
    # The same track in KITTI's camera frame: x-y of the graph is x-z there (y down), a proper rotation.
    to_camera = SE3.from_rotation_translation(SO3.from_axis_angle(torch.tensor([1.0, 0, 0], dtype=torch.float64),
                                                                  torch.tensor(-math.pi / 2, dtype=torch.float64)),
                                              torch.zeros(3, dtype=torch.float64))
    write_kitti(tmp_path / "gt.txt", Trajectory(None, to_camera.compose(graph)))
    done = run_slam("-q", "eval", "graph.tum", "gt.txt", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    warnings = done.stderr.strip().splitlines()
    assert len(warnings) == 1 and "x-y plane" in warnings[0] and "x-z plane" in warnings[0], done.stderr
    assert "ATE translation" in done.stdout
    ate = float(done.stdout.split("ATE translation (m)")[1].split()[0])
    assert ate < 1e-9  # se3 alignment turns one plane onto the other
    same = run_slam("-q", "eval", "graph.tum", "graph.tum", cwd=tmp_path)
    assert same.returncode == 0 and same.stderr == ""


# ------------------------------------------------------------------------------ the command


def eval_json(tmp_path: Path, est: Path, ref: Path, *options: str) -> dict:
    out = tmp_path / "eval.json"
    assert slam.cli.main(["-q", "eval", str(est), str(ref), *options, "--json", str(out)]) == 0
    return json.loads(out.read_text())


@pytest.mark.parametrize("options, delta, unit, all_pairs", [
    (["--delta", "3"], 3, "frames", False),
    (["--delta", "1.5", "--delta-unit", "m"], 1.5, "meters", False),
    (["--delta", "2", "--delta-unit", "m", "--all-pairs"], 2.0, "meters", True),
    (["--delta", "20", "--delta-unit", "d"], 20.0, "degrees", False),
    (["--delta", "0.2", "--delta-unit", "r", "--all-pairs"], 0.2, "radians", True),
    (["--delta", "2", "--all-pairs"], 2, "frames", True),
])
def test_eval_delta_options_give_the_metrics_figures(tmp_path, generator, capsys, options, delta, unit, all_pairs):
    est, ref = write_pair(tmp_path, generator)
    out = eval_json(tmp_path, est, ref, *options)
    direct = evaluate(est, ref, delta=delta, unit=unit, all_pairs=all_pairs)
    assert out["rpe"]["pairs"] == direct["rpe"]["pairs"].tolist() and len(out["rpe"]["pairs"]) >= 3
    for name in STATISTICS:
        assert out["rpe"]["translation"][name] == direct["rpe"]["translation"][name]
    assert out["rpe"]["unit"] == unit and out["rpe"]["all_pairs"] == all_pairs
    report = capsys.readouterr().out
    assert f"pairs ({'all' if all_pairs else 'consecutive'}), delta = {delta:g} {unit}" in report


@pytest.mark.parametrize("options, relation, evo_name, unit", [
    ([], "trans", "trans_part", "m"),
    (["--pose-relation", "rot"], "rot", "angle_deg", "deg"),
    (["--pose-relation", "rot", "--angle-unit", "rad"], "rot", "angle_rad", "rad"),
    (["--pose-relation", "angle_rad"], "rot", "angle_rad", "rad"),
    (["--pose-relation", "full"], "full", "full", ""),
    (["--pose-relation", "rot_part"], "rot_part", "rot_part", ""),
    (["--pose-relation", "trans_part"], "trans", "trans_part", "m"),
])
def test_eval_pose_relations(tmp_path, generator, capsys, options, relation, evo_name, unit):
    est, ref = write_pair(tmp_path, generator)
    out = eval_json(tmp_path, est, ref, *options)
    assert out["pose_relation"] == {"name": relation, "evo": evo_name, "unit": unit}
    direct = ape(*(read_tum(p).poses for p in (est, ref)), relation=relation, angle_unit=unit or "deg")
    for name in STATISTICS:
        assert out["ape"][name] == pytest.approx(direct[name], rel=1e-12)
    assert out["rpe"]["relation"]["unit"] == unit
    report = capsys.readouterr().out
    assert f"evo --pose_relation {evo_name}" in report
    if relation == "trans":
        assert "ATE translation (m)" in report and "RPE rotation (deg)" in report
    else:
        assert "APE " in report and "RPE " in report and "ATE translation" not in report


def test_eval_max_diff_associates_within_the_given_seconds(tmp_path, generator, capsys):
    est, ref = write_pair(tmp_path, generator, offset=0.015)  # 15 ms late: beyond evo's default 0.01 s
    assert slam.cli.main(["-q", "eval", str(est), str(ref)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "within 0.01 s" in err
    out = eval_json(tmp_path, est, ref, "--max-diff", "0.02")
    assert out["num_matched"] == 80 and out["max_difference"] == 0.02


@pytest.mark.parametrize("options, message", [
    (["--delta", "2.5"], "--delta 2.5 --delta-unit f: RPE delta in frames must be a positive integer"),
    (["--delta", "0"], "argument --delta: expected a positive number"),
    (["--delta", "nan"], "argument --delta: expected a finite number"),
    (["--delta", "ten"], "argument --delta: expected a number"),
    (["--delta-unit", "km"], "argument --delta-unit: invalid choice"),
    (["--delta", "200", "--delta-unit", "d"], "must be in (0, 180]"),
    (["--delta", "4", "--delta-unit", "r"], "must be in (0, 3.14159]"),
    (["--max-diff", "-1"], "argument --max-diff: expected a number >= 0"),
    (["--pose-relation", "speed"], "argument --pose-relation: invalid choice"),
    (["--angle-unit", "rad"], "--angle-unit is for --pose-relation rot"),
    (["--pose-relation", "angle_deg", "--angle-unit", "rad"], "is in deg, not --angle-unit rad"),
    (["--plot", "out.jpg"], "--plot out.jpg: the file name must end in .png, .pdf, .svg"),
    (["--delta", "500", "--delta-unit", "m", "--all-pairs"], "gives no pose pairs"),
    (["--plot", "missing/out.png"], "does not exist"),
])
def test_eval_bad_options_are_one_line_with_exit_code_2(tmp_path, generator, capsys, options, message):
    est, ref = write_pair(tmp_path, generator)
    try:
        code = slam.cli.main(["eval", str(est), str(ref), *options])
    except SystemExit as exit:  # argparse's own checks end the process
        code = exit.code
    captured = capsys.readouterr()
    assert code == 2
    assert captured.err.count("\n") == 1 and captured.err.startswith("slam eval: error: "), captured.err
    assert message in captured.err and "Traceback" not in captured.err
    assert not (tmp_path / "eval.json").exists() and not list(tmp_path.glob("*.jpg"))


def test_eval_bad_option_in_a_process_prints_one_line(tmp_path, generator):
    est, ref = write_pair(tmp_path, generator)
    for options in (["--delta-unit", "x"], ["--delta", "1.5"]):
        done = run_slam("eval", est.name, ref.name, *options, cwd=tmp_path)
        assert done.returncode == 2 and done.stdout == ""
        assert len(done.stderr.splitlines()) == 1 and "Traceback" not in done.stderr, done.stderr


def test_eval_help_names_evos_options():
    done = subprocess.run([sys.executable, "-m", "slam.cli", "eval", "--help"], capture_output=True, text=True,
                          timeout=120, env={"PYTHONPATH": str(REPO), "PATH": "/usr/bin:/bin", "COLUMNS": "200"})
    assert done.returncode == 0
    for text in ("--delta-unit", "--all-pairs", "--max-diff", "--pose-relation", "--angle-unit", "--plot",
                 "trans_part", "angle_deg", "angle_rad", "--t_max_diff", "evo -a"):
        assert text in done.stdout, text


@pytest.mark.parametrize("suffix", [".png", ".pdf", ".svg"])
def test_eval_plot_is_written(tmp_path, generator, capsys, suffix):
    pytest.importorskip("matplotlib")
    est, ref = write_pair(tmp_path, generator)
    out = tmp_path / f"eval{suffix}"
    assert slam.cli.main(["-q", "eval", str(est), str(ref), "--plot", str(out), "--pose-relation", "rot"]) == 0
    data = out.read_bytes()
    assert {".png": data[:8] == b"\x89PNG\r\n\x1a\n", ".pdf": data[:5] == b"%PDF-", ".svg": b"<svg" in data[:2000]}[suffix]
    assert f"plot: {out}" in capsys.readouterr().out
    assert [p.name for p in tmp_path.iterdir() if "partial" in p.name] == []
    if suffix == ".png":
        import matplotlib.colors
        import matplotlib.image

        from slam.viz.eval_plot import ESTIMATE_COLOR, REFERENCE_COLOR, STATISTIC_COLORS

        image = matplotlib.image.imread(str(out))[..., :3].astype(np.float64)

        def pixels(color) -> int:
            return int(np.all(np.abs(image - np.asarray(matplotlib.colors.to_rgb(color))) < 0.08, axis=-1).sum())

        for color in (ESTIMATE_COLOR, REFERENCE_COLOR, *STATISTIC_COLORS.values()):
            assert pixels(color) > 30, color
        assert pixels("tab:red") < 5  # negative control: a colour never drawn


# ------------------------------------------------------------------------------ against evo itself (optional)


def _evo_files(kind: str):
    """evo's trajectories for ``kind`` ("kitti" or "tum"), synchronized as evo_ape/evo_rpe do, and our paths."""
    file_interface = pytest.importorskip("evo.tools.file_interface")
    names = {"kitti": ("KITTI_00_ORB.txt", "KITTI_00_gt.txt"),
             "tum": ("freiburg1_xyz-rgbdslam.txt", "freiburg1_xyz-groundtruth.txt")}[kind]
    est_path, ref_path = (TRAJECTORIES / name for name in names)
    if not est_path.exists() or not ref_path.exists():
        pytest.skip(f"{TRAJECTORIES} does not hold {names}")
    if kind == "kitti":
        ref, est = (file_interface.read_kitti_poses_file(str(p)) for p in (ref_path, est_path))
    else:
        ref, est = (file_interface.read_tum_trajectory_file(str(p)) for p in (ref_path, est_path))
        ref, est = ref.sync_with(est, max_diff=0.01)
    return est_path, ref_path, est, ref


def _evo_rpe(est, ref, relation: str, delta: float, unit: str):
    from evo.core import metrics
    from evo.core.units import Unit

    metric = metrics.RPE(metrics.PoseRelation[relation], delta, Unit[unit])
    est = copy.deepcopy(est)
    est.align(ref)  # evo_rpe -a, as slam eval's default se3 alignment
    metric.process_data((ref, est))
    return metric


def _evo_ape(est, ref, relation: str):
    from evo.core import metrics

    metric = metrics.APE(metrics.PoseRelation[relation])
    est = copy.deepcopy(est)
    est.align(ref)  # evo_ape -a
    metric.process_data((ref, est))
    return metric


def _assert_same_statistics(ours: dict, evo, rel: float) -> None:
    theirs = evo.get_all_statistics()
    for name in STATISTICS:
        assert ours[name] == pytest.approx(float(theirs[name]), rel=rel, abs=0), name


@pytest.mark.parametrize("kind", ["kitti", "tum"])
def test_pose_relation_rot_equals_evo(tmp_path, kind):
    """``--pose-relation rot``: evo_ape -a -r angle_deg and evo_rpe -a -r angle_deg."""
    est_path, ref_path, est, ref = _evo_files(kind)
    out = eval_json(tmp_path, est_path, ref_path, "--pose-relation", "rot")
    _assert_same_statistics(out["ape"], _evo_ape(est, ref, "rotation_angle_deg"), rel=1e-9)
    _assert_same_statistics(out["rpe"]["relation"], _evo_rpe(est, ref, "rotation_angle_deg", 1, "frames"), rel=1e-9)
    # and --angle-unit rad is evo's angle_rad
    out = eval_json(tmp_path, est_path, ref_path, "--pose-relation", "rot", "--angle-unit", "rad")
    _assert_same_statistics(out["ape"], _evo_ape(est, ref, "rotation_angle_rad"), rel=1e-9)


def test_delta_10_m_equals_evo_on_kitti(tmp_path):
    """``--delta 10 --delta-unit m`` on KITTI 00: evo_rpe -a --delta 10 --delta_unit m."""
    est_path, ref_path, est, ref = _evo_files("kitti")
    out = eval_json(tmp_path, est_path, ref_path, "--delta", "10", "--delta-unit", "m")
    evo = _evo_rpe(est, ref, "translation_part", 10, "meters")
    assert [j for _, j in out["rpe"]["pairs"]] == list(evo.delta_ids)  # the same 354 pairs, from pose 0
    assert out["rpe"]["pairs"][0][0] == 0 and len(out["rpe"]["pairs"]) == 354
    # Rotation angles agree to rounding; translations to ~4e-6 only: we project the files' rotation blocks
    # onto SO(3) (KITTI_00_ORB's are float32-precise, |R Rᵀ - I| ~ 1e-7), evo inverts them as Rᵀ unprojected.
    _assert_same_statistics(out["rpe"]["translation"], evo, rel=1e-5)
    raw = [np.loadtxt(p).reshape(-1, 3, 4) for p in (est_path, ref_path)]

    def relative(m, i, j):  # evo's relative_se3 with se3_inverse = [Rᵀ, -Rᵀ t], on the raw matrices
        return m[i, :, :3].T @ m[j, :, :3], m[i, :, :3].T @ (m[j, :, 3] - m[i, :, 3])

    errors = []
    for i, j in out["rpe"]["pairs"]:
        (_, tp), (rq, tq) = relative(raw[0], i, j), relative(raw[1], i, j)
        errors.append(np.linalg.norm(rq.T @ (tp - tq)))
    for name, value in evo_statistics(np.array(errors)).items():  # evo's figures, to rounding, from our pairs
        assert value == pytest.approx(float(evo.get_all_statistics()[name]), rel=1e-9), name
    # The same pairs with rotation angles: no projection effect.
    out = eval_json(tmp_path, est_path, ref_path, "--delta", "10", "--delta-unit", "m", "--pose-relation", "rot")
    _assert_same_statistics(out["rpe"]["relation"], _evo_rpe(est, ref, "rotation_angle_deg", 10, "meters"), rel=1e-9)
    _assert_same_statistics(out["ate"], _evo_ape(est, ref, "translation_part"), rel=1e-9)


def test_delta_in_meters_equals_evo_on_tum(tmp_path, capsys):
    """freiburg1_xyz is 9.16 m long: evo and slam eval both find no 10 m pair; at 1 m they agree."""
    est_path, ref_path, est, ref = _evo_files("tum")
    from evo.core.filters import FilterException

    with pytest.raises(FilterException):
        _evo_rpe(est, ref, "translation_part", 10, "meters")
    assert slam.cli.main(["-q", "eval", str(est_path), str(ref_path), "--delta", "10", "--delta-unit", "m"]) == 2
    assert "gives no pose pairs" in capsys.readouterr().err
    for options, relation in [(["--delta", "1", "--delta-unit", "m"], "translation_part"),
                              (["--delta", "1", "--delta-unit", "m", "--pose-relation", "rot"], "rotation_angle_deg"),
                              (["--delta", "5", "--delta-unit", "d", "--pose-relation", "full"], "full_transformation")]:
        out = eval_json(tmp_path, est_path, ref_path, *options)
        unit = {"m": "meters", "d": "degrees"}[options[3]]
        evo = _evo_rpe(est, ref, relation, float(options[1]), unit)
        stats = out["rpe"]["relation"]
        assert [j for _, j in out["rpe"]["pairs"]] == list(evo.delta_ids)
        _assert_same_statistics(stats, evo, rel=1e-9)
    _assert_same_statistics(out["ate"], _evo_ape(est, ref, "translation_part"), rel=1e-9)
