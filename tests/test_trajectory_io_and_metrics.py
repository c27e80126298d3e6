"""Trajectory files (TUM, KITTI) and the evo-style metrics (association, Umeyama, ATE, RPE)."""

import hashlib
import math
from pathlib import Path

import numpy as np
import pytest
import torch

from liegeo import SE3, SO3
from slam.io import FormatError, Trajectory, detect_format, read_kitti, read_tum, write_kitti, write_tum
from slam.metrics import align, alignment, associate, ate, evaluate, format_report, rpe, rpe_pairs, umeyama

DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "trajectories"
needs_data = pytest.mark.skipif(not DATA.is_dir(), reason=f"shared trajectory data not found at {DATA}")

# evo's orb_ape.zip stats.json (KITTI_00_ORB vs KITTI_00_gt, SE(3) Umeyama, translation part), see the data README.
EVO_APE = {"rmse": 1.3034497145650266, "mean": 1.1569971285389768, "max": 3.587949120678954,
           "min": 0.06931322021483087, "median": 1.065624769555848, "std": 0.6002822693968323}
# evo's orb_rpe.zip: translation RPE, delta = 10 m, consecutive pairs, no alignment.
EVO_RPE_10M_RMSE = 0.22626134329310163


def random_walk(n: int, generator: torch.Generator, step: float = 1.0) -> SE3:
    """A smooth-ish trajectory: the product of n small random motions."""
    xi = torch.randn(n, 6, generator=generator, dtype=torch.float64) * torch.tensor([step, step, step, .1, .1, .1],
                                                                                    dtype=torch.float64)
    data = [SE3.identity(dtype=torch.float64)]
    for k in range(1, n):
        data.append(data[-1].compose(SE3.exp(xi[k])))
    return SE3.stack(data)


def perturb(poses: SE3, generator: torch.Generator, sigma: float = 0.05) -> SE3:
    return poses.retract(torch.randn(*poses.shape, 6, generator=generator, dtype=torch.float64) * sigma)


def assert_same_poses(a: SE3, b: SE3, atol: float) -> None:
    torch.testing.assert_close(a.matrix(), b.matrix(), atol=atol, rtol=0)


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


# ------------------------------------------------------------------------------ reading and writing


def test_tum_round_trip_is_exact(tmp_path, generator):
    poses = SE3.random(40, generator=generator, dtype=torch.float64)
    stamps = 1.3e9 + torch.rand(40, generator=generator, dtype=torch.float64).add(0.01).cumsum(0)
    path = write_tum(tmp_path / "a.txt", Trajectory(stamps, poses))
    back = read_tum(path)
    assert torch.equal(back.timestamps, stamps)
    assert torch.equal(back.poses.data, poses.data)
    write_tum(tmp_path / "b.txt", back)
    assert (tmp_path / "a.txt").read_bytes() == (tmp_path / "b.txt").read_bytes()


def test_kitti_round_trip(tmp_path, generator):
    poses = SE3.random(40, generator=generator, dtype=torch.float64)
    back = read_kitti(write_kitti(tmp_path / "a.txt", Trajectory(None, poses)))
    assert back.timestamps is None
    assert_same_poses(back.poses, poses, atol=1e-15)


@needs_data
@pytest.mark.parametrize("name", ["freiburg1_xyz-groundtruth.txt", "KITTI_00_gt.txt"])
def test_shared_files_read_and_round_trip(tmp_path, name):
    source = DATA / name
    digest = sha256(source)
    first = read_tum(source) if detect_format(source) == "tum" else read_kitti(source)
    assert sha256(source) == digest  # reading never touches the input
    writer, reader = (write_tum, read_tum) if first.timestamps is not None else (write_kitti, read_kitti)
    second = reader(writer(tmp_path / name, first))
    if first.timestamps is not None:
        assert len(first) == 3000 and torch.equal(second.timestamps, first.timestamps)
        assert torch.equal(second.poses.data, first.poses.data)
    else:
        assert len(first) == 4541
        assert_same_poses(second.poses, first.poses, atol=1e-14)
    q_norm = torch.linalg.vector_norm(first.poses.rotation().data, dim=-1)
    torch.testing.assert_close(q_norm, torch.ones_like(q_norm), atol=1e-15, rtol=0)


def test_tum_comments_blank_lines_commas_and_normalization(tmp_path):
    path = tmp_path / "t.txt"
    path.write_text("# header\n\n  1.0 1 2 3 0 0 0 1  # inline comment\n\t\n2.5,4,5,6,0.6132,0.5962,-0.3311,-0.3986\n")
    traj = read_tum(path)
    assert traj.timestamps.tolist() == [1.0, 2.5]
    assert traj.poses.data[0].tolist() == [1, 2, 3, 0, 0, 0, 1]
    q = torch.tensor([0.6132, 0.5962, -0.3311, -0.3986], dtype=torch.float64)
    torch.testing.assert_close(traj.poses.data[1, 3:], q / q.norm(), atol=1e-16, rtol=0)


def test_write_tum_needs_timestamps(tmp_path):
    with pytest.raises(ValueError, match="timestamps"):
        write_tum(tmp_path / "x.txt", Trajectory(None, SE3.identity(3, dtype=torch.float64)))


TUM_OK = "0.0 0 0 0 0 0 0 1"
KITTI_OK = "1 0 0 0 0 1 0 0 0 0 1 0"

BAD_FILES = [  # (reader, lines, bad line (1-based), words the reason must contain)
    (read_tum, ["# c", TUM_OK, "1.0 0 0 0 0 0 1"], 3, "expected 8 fields"),
    (read_tum, [TUM_OK, KITTI_OK], 2, "KITTI"),
    (read_tum, [TUM_OK, "1.0 0 abc 0 0 0 0 1"], 2, "field ty is not a number: 'abc'"),
    (read_tum, [TUM_OK, "1.0 0 0 nan 0 0 0 1"], 2, "field tz is not finite"),
    (read_tum, [TUM_OK, "", "1.0 0 0 0 0 0 0 inf"], 3, "field qw is not finite"),
    (read_tum, [TUM_OK, "1.0 0 0 0 0 0 0 0.5"], 2, "norm 0.5"),
    (read_tum, [TUM_OK, "1.0 0 0 0 0 0 0 0"], 2, "quaternion"),
    (read_tum, [TUM_OK, "1.0 0 0 0 0 0 0 1.002"], 2, "not within 0.001 of 1"),
    (read_tum, [TUM_OK, "1.0 0 0 0 0 0 0 1", "1.0 0 0 0 0 0 0 1"], 3,
     "not greater than the previous one (1.0 on line 2)"),
    (read_tum, [TUM_OK, "2.0 0 0 0 0 0 0 1", "# c", "1.5 0 0 0 0 0 0 1"], 4, "timestamp 1.5 is not greater"),
    (read_tum, ["# only a comment", ""], 0, "no poses"),
    (read_kitti, [KITTI_OK, "1 0 0 0 0 1 0 0 0 0 1"], 2, "expected 12 fields"),
    (read_kitti, [KITTI_OK, TUM_OK], 2, "TUM"),
    (read_kitti, [KITTI_OK, KITTI_OK, "1 0 0 0 0 1 0 0 0 0 1 x"], 3, "field tz is not a number"),
    (read_kitti, ["1 0 0 0 0 1 0 0 0 0 -inf 0"], 1, "field r33 is not finite"),
    (read_kitti, [KITTI_OK, "1 0.1 0 0 0 1 0 0 0 0 1 0"], 2, "not orthonormal"),
    (read_kitti, [KITTI_OK, "1 0 0 0 0 1 0 0 0 0 -1 0"], 2, "reflection"),
    (read_kitti, [], 0, "no poses"),
]


@pytest.mark.parametrize("reader, lines, line, reason", BAD_FILES)
def test_bad_input_names_file_line_and_reason(tmp_path, reader, lines, line, reason):
    path = tmp_path / "bad.txt"
    path.write_text("\n".join(lines) + "\n")
    before = path.read_bytes()
    with pytest.raises(FormatError) as info:
        reader(path)
    error = info.value
    assert isinstance(error, ValueError)
    assert (error.path, error.line) == (str(path), line)
    assert reason in error.reason
    assert str(error).startswith(f"{path}:{line}: " if line else f"{path}: ")
    assert path.read_bytes() == before


def test_detect_format(tmp_path):
    (tmp_path / "t.txt").write_text(f"# x\n{TUM_OK}\n")
    (tmp_path / "k.txt").write_text(f"{KITTI_OK}\n")
    (tmp_path / "b.txt").write_text("\n1 2 3\n")
    assert detect_format(tmp_path / "t.txt") == "tum" and detect_format(tmp_path / "k.txt") == "kitti"
    with pytest.raises(FormatError, match=r"b\.txt:2: 3 fields"):
        detect_format(tmp_path / "b.txt")


# ------------------------------------------------------------------------------ Umeyama and alignment


@pytest.mark.parametrize("with_scale", [False, True])
@pytest.mark.parametrize("d", [2, 3])
def test_umeyama_recovers_a_known_transform(generator, d, with_scale):
    x = torch.randn(50, d, generator=generator, dtype=torch.float64) * 3
    r = SO3.random(generator=generator, dtype=torch.float64).matrix()[:d, :d] if d == 3 else \
        torch.tensor([[math.cos(0.7), -math.sin(0.7)], [math.sin(0.7), math.cos(0.7)]], dtype=torch.float64)
    t = torch.randn(d, generator=generator, dtype=torch.float64) * 10
    s = 2.5 if with_scale else 1.0
    r_hat, t_hat, s_hat = umeyama(x, s * x @ r.T + t, with_scale=with_scale)
    torch.testing.assert_close(r_hat, r, atol=1e-10, rtol=0)
    torch.testing.assert_close(t_hat, t, atol=1e-10, rtol=0)
    assert abs(float(s_hat) - s) < 1e-10


@pytest.mark.parametrize("with_scale", [False, True])
def test_umeyama_fixes_the_reflection_of_coplanar_points(with_scale):
    """With coplanar points the third singular vectors have arbitrary signs: U Vᵀ alone is often a reflection."""
    reflections = 0
    for seed in range(20):
        g = torch.Generator().manual_seed(seed)
        x = torch.randn(30, 3, generator=g, dtype=torch.float64)
        x[:, 2] = 0
        r = SO3.random(generator=g, dtype=torch.float64).matrix()
        t = torch.randn(3, generator=g, dtype=torch.float64)
        s = 0.3 if with_scale else 1.0
        y = s * x @ r.T + t
        u, _, vh = torch.linalg.svd((y - y.mean(0)).T @ (x - x.mean(0)))
        reflections += bool(torch.linalg.det(u @ vh) < 0)
        r_hat, t_hat, s_hat = umeyama(x, y, with_scale=with_scale)
        torch.testing.assert_close(r_hat, r, atol=1e-10, rtol=0)
        torch.testing.assert_close(t_hat, t, atol=1e-10, rtol=0)
        assert abs(float(s_hat) - s) < 1e-10
        assert abs(float(torch.linalg.det(r_hat)) - 1) < 1e-12
    assert reflections > 0, "no seed made the naive SVD solution a reflection; the test checks nothing"


def test_umeyama_rejects_degenerate_points():
    line = torch.linspace(0, 1, 10, dtype=torch.float64)[:, None] * torch.tensor([[1.0, 2.0, 3.0]], dtype=torch.float64)
    with pytest.raises(ValueError, match="degenerate"):
        umeyama(line, line + 1)


def test_align_se3_and_sim3_recover_poses(generator):
    ref = random_walk(60, generator)
    offset = SE3.random(generator=generator, dtype=torch.float64)
    est = offset.compose(ref)
    assert_same_poses(align(est, ref, "se3"), ref, atol=1e-10)
    # Scaled: positions shrink by 0.5 around the origin, orientations unchanged.
    scaled = SE3.from_rotation_translation(est.rotation(), 0.5 * est.translation())
    aligned = align(scaled, ref, "sim3")
    assert_same_poses(aligned, ref, atol=1e-10)
    assert ate(scaled, ref, align="sim3")["scale"] == pytest.approx(2.0, abs=1e-12)
    assert ate(scaled, ref, align="sim3")["rmse"] < 1e-10


def test_align_se2_only_turns_about_z_and_shifts_xy(generator):
    xy = torch.randn(40, 2, generator=generator, dtype=torch.float64).cumsum(0)
    z = 0.1 * torch.randn(40, 1, generator=generator, dtype=torch.float64)
    yaw = torch.randn(40, generator=generator, dtype=torch.float64)
    ref = SE3.from_rotation_translation(SO3.from_rpy(0 * yaw, 0 * yaw, yaw), torch.cat([xy, z], 1))
    zero, turn = torch.zeros((), dtype=torch.float64), torch.full((), 1.2, dtype=torch.float64)
    planar = SE3.from_rotation_translation(SO3.from_rpy(zero, zero, turn),
                                           torch.tensor([3.0, -4.0, 0.0], dtype=torch.float64))
    est = planar.compose(ref)
    r, t, _ = alignment(est, ref, "se2")
    assert float(t[2]) == 0 and torch.equal(r[2], torch.tensor([0.0, 0.0, 1.0], dtype=torch.float64))
    assert_same_poses(align(est, ref, "se2"), ref, atol=1e-10)
    # A z offset is not removed by se2 but is by se3.
    lifted = SE3.from_rotation_translation(est.rotation(), est.translation() + torch.tensor([0, 0, 2.0]).double())
    assert ate(lifted, ref, align="se2")["rmse"] == pytest.approx(2.0, abs=1e-10)
    assert ate(lifted, ref, align="se3")["rmse"] < 1e-10
    assert ate(est, ref, align="none")["min"] > 0.1


@needs_data
def test_ate_of_kitti_00_orb_equals_evo():
    est, ref = read_kitti(DATA / "KITTI_00_ORB.txt"), read_kitti(DATA / "KITTI_00_gt.txt")
    result = ate(est.poses, ref.poses, align="se3")
    assert result["errors"].shape == (4541,)
    for name, value in EVO_APE.items():
        assert result[name] == pytest.approx(value, rel=1e-9), name
    from_files = evaluate(DATA / "KITTI_00_ORB.txt", DATA / "KITTI_00_gt.txt")
    assert from_files["paired_by"] == "index" and from_files["num_matched"] == 4541
    assert from_files["ate"]["rmse"] == pytest.approx(EVO_APE["rmse"], rel=1e-9)


# ------------------------------------------------------------------------------ association


def greedy_associate(t_est, t_ref, max_difference):
    """TUM's associate.py: all pairs within max_difference, taken greedily by increasing difference."""
    candidates = sorted((abs(a - b), i, j) for i, a in enumerate(t_est) for j, b in enumerate(t_ref)
                        if abs(a - b) <= max_difference)
    used_i, used_j, pairs = set(), set(), []
    for _, i, j in candidates:
        if i not in used_i and j not in used_j:
            used_i.add(i), used_j.add(j), pairs.append((i, j))
    return sorted(pairs)


@pytest.mark.parametrize("est_longer", [False, True])
def test_associate_with_jitter_and_dropped_frames(generator, est_longer):
    n = 400
    true = 100.0 + torch.arange(n, dtype=torch.float64) / 30
    ref = true + (torch.rand(n, generator=generator, dtype=torch.float64) - 0.5) * 0.004
    kept = torch.nonzero(torch.rand(n, generator=generator) > 0.2).squeeze(1)
    est = true[kept] + (torch.rand(len(kept), generator=generator, dtype=torch.float64) - 0.5) * 0.006
    # Stamps half-way between frames have no partner within 10 ms.
    stray = true[:50:7] + 0.5 / 30
    est_all = torch.cat([est, stray])
    shuffle = torch.randperm(len(est_all), generator=generator)
    est_all = est_all[shuffle]
    if est_longer:  # drop reference frames instead
        est_all, ref = ref, est_all
    idx_est, idx_ref = associate(est_all, ref, 0.01)
    pairs = sorted(zip(idx_est.tolist(), idx_ref.tolist()))
    assert pairs == greedy_associate(est_all.tolist(), ref.tolist(), 0.01)
    assert len(pairs) == len(kept)
    assert torch.all(est_all[idx_est].diff() > 0)  # sorted by estimate time
    assert float((est_all[idx_est] - ref[idx_ref]).abs().max()) <= 0.01


def test_associate_is_one_to_one():
    idx_est, idx_ref = associate(torch.tensor([0.996, 1.002, 1.007, 5.0]).double(), torch.tensor([1.0, 2.0]).double())
    assert idx_est.tolist() == [1] and idx_ref.tolist() == [0]
    empty = associate(torch.tensor([0.0]).double(), torch.tensor([1.0]).double())
    assert [len(x) for x in empty] == [0, 0]


@needs_data
def test_associate_tum_files_like_evo():
    est, ref = read_tum(DATA / "freiburg1_xyz-rgbdslam.txt"), read_tum(DATA / "freiburg1_xyz-groundtruth.txt")
    idx_est, idx_ref = associate(est.timestamps, ref.timestamps, 0.01)
    # evo's matching_time_indices: nearest reference stamp for each stamp of the shorter trajectory.
    t_ref = ref.timestamps.numpy()
    evo = [(i, int(np.argmin(np.abs(t_ref - t)))) for i, t in enumerate(est.timestamps.numpy())]
    evo = [(i, j) for i, j in evo if abs(t_ref[j] - est.timestamps[i].item()) <= 0.01]
    assert list(zip(idx_est.tolist(), idx_ref.tolist())) == evo


# ------------------------------------------------------------------------------ RPE


def brute_force_rpe(est: SE3, ref: SE3, pairs):
    """evo's rpe_base with 4 x 4 matrices, one pair at a time."""
    p, q = est.matrix().numpy(), ref.matrix().numpy()
    inv = np.linalg.inv
    trans, rot = [], []
    for i, j in pairs:
        e = inv(inv(q[i]) @ q[j]) @ (inv(p[i]) @ p[j])
        trans.append(np.linalg.norm(e[:3, 3]))
        rot.append(math.acos(min(1.0, max(-1.0, (np.trace(e[:3, :3]) - 1) / 2))))
    return np.array(trans), np.array(rot)


def evo_path_pairs(positions: np.ndarray, delta: float):
    """evo's filter_pairs_by_path, consecutive pairs."""
    ids, previous, current = [], positions[0], 0.0
    for i, p in enumerate(positions):
        current += np.linalg.norm(p - previous)
        previous = p
        if current >= delta:
            ids.append(i)
            current = 0.0
    return list(zip(ids, ids[1:]))


@pytest.mark.parametrize("delta, unit, all_pairs", [(1, "frames", False), (3, "frames", False), (3, "frames", True),
                                                    (0.7, "meters", False), (4.0, "meters", False),
                                                    (2.0, "meters", True)])
def test_rpe_matches_brute_force(generator, delta, unit, all_pairs):
    ref = random_walk(120, generator, step=0.3)
    est = perturb(ref, generator)
    result = rpe(est, ref, delta=delta, unit=unit, all_pairs=all_pairs)
    pairs = result["pairs"].tolist()
    n = len(ref)
    if unit == "frames":
        expected = [(i, i + delta) for i in range(n - delta)] if all_pairs else \
            list(zip(range(0, n, delta), range(delta, n, delta)))
    elif not all_pairs:
        expected = evo_path_pairs(est.translation().numpy(), delta)
    else:  # the j nearest the target path length, within 10 %
        c = np.concatenate([[0.0], np.cumsum(np.linalg.norm(np.diff(est.translation().numpy(), axis=0), axis=1))])
        expected = []
        for i in range(n):
            misses = [(abs(c[j] - c[i] - delta), j) for j in range(i + 1, n)]
            if misses and min(misses)[0] <= 0.1 * delta:
                expected.append((i, min(misses)[1]))
    assert [tuple(p) for p in pairs] == [tuple(p) for p in expected] and len(pairs) > 5
    trans, rot = brute_force_rpe(est, ref, pairs)
    np.testing.assert_allclose(result["translation"]["errors"].numpy(), trans, atol=1e-10, rtol=0)
    np.testing.assert_allclose(result["rotation"]["errors"].numpy(), rot, atol=1e-7, rtol=0)  # acos loses digits
    assert result["translation"]["rmse"] == pytest.approx(math.sqrt(np.mean(trans ** 2)), rel=1e-10)
    assert result["translation"]["median"] == pytest.approx(float(np.median(trans)), rel=1e-12)
    assert result["translation"]["std"] == pytest.approx(float(np.std(trans)), rel=1e-10)


def test_rpe_is_zero_for_a_rigidly_moved_copy(generator):
    ref = random_walk(30, generator)
    est = SE3.random(generator=generator, dtype=torch.float64).compose(ref)
    result = rpe(est, ref, delta=2)
    assert result["translation"]["max"] < 1e-10 and result["rotation"]["max"] < 1e-7


@needs_data
def test_rpe_of_kitti_00_orb_equals_evo():
    est, ref = read_kitti(DATA / "KITTI_00_ORB.txt"), read_kitti(DATA / "KITTI_00_gt.txt")
    result = rpe(est.poses, ref.poses, delta=10, unit="meters")
    # Our poses are the files' matrices projected onto SO(3) (the ORB file is float32-precise), evo uses them raw.
    assert result["translation"]["rmse"] == pytest.approx(EVO_RPE_10M_RMSE, rel=1e-6)
    # With the raw matrices and evo's inverse [Rᵀ, -Rᵀt], our pairs give evo's figure to the last digits.
    raw = [np.loadtxt(DATA / name).reshape(-1, 3, 4) for name in ("KITTI_00_ORB.txt", "KITTI_00_gt.txt")]

    def relative(m, i, j):
        r, t = m[i, :, :3].T @ m[j, :, :3], m[i, :, :3].T @ (m[j, :, 3] - m[i, :, 3])
        return r, t

    errors = []
    for i, j in result["pairs"].tolist():
        (rp, tp), (rq, tq) = relative(raw[0], i, j), relative(raw[1], i, j)
        errors.append(np.linalg.norm(rq.T @ (tp - tq)))
    assert math.sqrt(np.mean(np.square(errors))) == pytest.approx(EVO_RPE_10M_RMSE, rel=1e-12)


# ------------------------------------------------------------------------------ evaluate


@needs_data
def test_evaluate_tum_files_and_report():
    result = evaluate(DATA / "freiburg1_xyz-rgbdslam.txt", DATA / "freiburg1_xyz-groundtruth.txt")
    assert result["formats"] == ("tum", "tum") and result["paired_by"] == "timestamps"
    assert (result["num_est"], result["num_ref"]) == (788, 3000)
    assert 700 < result["num_matched"] <= 788
    assert 0 < result["ate"]["rmse"] < 0.05 and len(result["rpe"]["pairs"]) == result["num_matched"] - 1
    report = format_report(result)
    assert "ATE translation (m)" in report and "RPE rotation (deg)" in report
    assert f"{result['ate']['rmse']:.6f}" in report


def test_evaluate_mismatched_lengths_without_timestamps(tmp_path, generator):
    poses = random_walk(10, generator)
    write_kitti(tmp_path / "a.txt", Trajectory(None, poses))
    write_kitti(tmp_path / "b.txt", Trajectory(None, poses[:8]))
    with pytest.raises(ValueError, match="paired by index"):
        evaluate(tmp_path / "a.txt", tmp_path / "b.txt")
    same = evaluate(tmp_path / "a.txt", tmp_path / "a.txt", align="sim3")
    assert same["ate"]["max"] < 1e-12 and same["ate"]["scale"] == pytest.approx(1.0, abs=1e-12)
    assert rpe_pairs(poses, 4).tolist() == [[0, 4], [4, 8]]
