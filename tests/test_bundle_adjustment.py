"""Bundle adjustment: BAL files (initial costs against the published references, exact round trips,
errors naming file, line and field), reprojection Jacobians, LM against scipy, and gradients
through the solve."""

from __future__ import annotations

import bz2
import math

import numpy as np
import pytest
import torch

import slam
from conftest import data_file
from liegeo import SE3, Euclidean
from liegeo.testing import check_jacobians
from slam.ba import build, optimize, synthetic_bal
from slam.costs.reprojection import _reprojection, _reprojection_jacobians
from slam.io import FormatError, read_bal, write_bal
from slam.io.files import OutputPathError

# ½‖r(x0)‖² from ../shared/data/README.md (an independent float64 implementation; for Ladybug also
# JuliaSmoothOptimizers/BundleAdjustmentModels.jl's 8.50912460680839605629e+05).
REFERENCE_COSTS = {"problem-49-7776-pre": 8.509124606808404e+05, "problem-39-18060-pre": 8.408808598878710e+06}


def _independent_cost(path) -> float:
    """½‖r‖² by a separate numpy/scipy implementation of the BAL model (scipy's Rodrigues)."""
    from scipy.spatial.transform import Rotation

    tokens = open(path).read().split()
    c, p, o = (int(t) for t in tokens[:3])
    table = np.array(tokens[3 : 3 + 4 * o], dtype=float).reshape(o, 4)
    parameters = np.array(tokens[3 + 4 * o :], dtype=float)
    cameras, points = parameters[: 9 * c].reshape(c, 9), parameters[9 * c :].reshape(p, 3)
    cam, pt = table[:, 0].astype(int), table[:, 1].astype(int)
    rotated = Rotation.from_rotvec(cameras[cam, :3]).apply(points[pt]) + cameras[cam, 3:6]
    q = -rotated[:, :2] / rotated[:, 2:]
    r2 = (q * q).sum(1, keepdims=True)
    pixels = cameras[cam, 6:7] * (1 + cameras[cam, 7:8] * r2 + cameras[cam, 8:9] * r2 * r2) * q
    return 0.5 * float(((pixels - table[:, 2:]) ** 2).sum())


@pytest.mark.parametrize("name", sorted(REFERENCE_COSTS))
def test_initial_cost_equals_the_published_reference(name):
    problem = read_bal(data_file(f"{name}.txt", "bundle_adjustment"))
    assert problem.cost() == pytest.approx(REFERENCE_COSTS[name], rel=1e-9)
    least_squares, _ = build(problem)
    assert float(least_squares.cost(least_squares.initial_values())[0]) == pytest.approx(REFERENCE_COSTS[name], rel=1e-9)


def test_small_file_against_an_independent_implementation():
    path = data_file("dubrovnik-3-7-pre.txt", "bundle_adjustment")
    problem = read_bal(path)
    assert (problem.num_cameras, problem.num_points, problem.num_observations) == (3, 7, 19)
    assert problem.cost() == pytest.approx(_independent_cost(path), rel=1e-13)
    # The README's 10-digit figure (2.764219980e+03) is 1.6e-9 away from both implementations.
    assert problem.cost() == pytest.approx(2.764219980e+03, rel=2e-9)


def test_reprojection_jacobians_equal_autograd_and_finite_differences(generator):
    n = 50
    pose = SE3.random(n, generator=generator, dtype=torch.float64)
    # points 5-15 units in front of their camera (camera z < 0), expressed in the world
    in_camera = torch.cat([torch.randn(n, 2, generator=generator, dtype=torch.float64),
                           -5.0 - 10.0 * torch.rand(n, 1, generator=generator, dtype=torch.float64)], -1)
    point = Euclidean(pose.inverse().act(in_camera))
    intrinsics = Euclidean(torch.stack([500 + torch.rand(n, generator=generator, dtype=torch.float64),
                                        0.1 * torch.randn(n, generator=generator, dtype=torch.float64),
                                        0.01 * torch.randn(n, generator=generator, dtype=torch.float64)], -1))
    uv = torch.randn(n, 2, generator=generator, dtype=torch.float64)
    r, jacobians = _reprojection_jacobians(pose, intrinsics, point, observation=uv)
    assert torch.allclose(r, _reprojection(pose, intrinsics, point, observation=uv))
    errors = check_jacobians(lambda x, k, p: _reprojection(x, k, p, observation=uv), [pose, intrinsics, point],
                             jacobians, atol=1e-6)
    assert max(errors.values()) < 1e-6


def test_write_then_read_is_exact_plain_and_bz2(tmp_path):
    problem, _ = synthetic_bal(3, 12, seed=4)
    path = write_bal(tmp_path / "scene.txt", problem)
    again = read_bal(path)
    for field in ("cameras", "points", "camera_index", "point_index", "observations"):
        assert torch.equal(getattr(again, field), getattr(problem, field)), field
    packed = tmp_path / "scene.txt.bz2"
    packed.write_bytes(bz2.compress(path.read_bytes()))
    assert torch.equal(read_bal(packed).cameras, problem.cameras)
    with pytest.raises(OutputPathError, match="is the input"):
        write_bal(path, again)


def _file(tmp_path, text: str):
    path = tmp_path / "bad.txt"
    path.write_text(text)
    return path


GOOD = "1 1 1\n0 0 1.5 2.5\n" + "".join(f"{v}\n" for v in [0.1, 0.2, 0.3, 1, 2, -10, 500, 0, 0, 0.1, 0.2, 0.3])


@pytest.mark.parametrize("text, line, words", [
    ("", 1, "empty file"),
    ("1 1\n", 1, "header needs 3 fields"),
    ("1 x 1\n", 1, "num_points"),
    ("1 1 2\n0 0 1.5 2.5\n", 2, "truncated"),  # the last line there is
    (GOOD.replace("0 0 1.5 2.5", "0 0 1.5"), 2, "needs 4 fields"),
    (GOOD.replace("0 0 1.5 2.5", "0 0 1.5 nan"), 2, "field y is not finite"),
    (GOOD.replace("0 0 1.5 2.5", "0 a 1.5 2.5"), 2, "field point_index"),
    (GOOD.replace("0 0 1.5 2.5", "0 3 1.5 2.5"), 2, "point_index = 3 is out of range"),
    (GOOD.replace("500\n", "5x0\n"), 9, "camera 0 f"),
    (GOOD.replace("0.3\n", "inf\n", 2).replace("inf\n", "0.3\n", 1), 14, "point 0 z"),
    (GOOD + "7\n", 15, "trailing data"),
    (GOOD.rsplit("0.3\n", 1)[0], 13, "truncated"),
])
def test_bad_input_names_file_line_and_field(tmp_path, text, line, words):
    path = _file(tmp_path, text)
    with pytest.raises(FormatError, match=words) as error:
        read_bal(path)
    assert error.value.path == str(path) and error.value.line == line, str(error.value)


def test_unobserved_points_are_rejected(tmp_path):
    text = GOOD.replace("1 1 1\n", "1 2 1\n") + "0.4\n0.5\n0.6\n"
    with pytest.raises(FormatError, match="point 1"):
        read_bal(_file(tmp_path, text))


def test_lm_reaches_scipy_optimum():
    problem, truth = synthetic_bal(5, 40, seed=1)
    result = optimize(problem, max_iterations=100, function_tolerance=1e-12)
    assert result.final_cost < truth.cost()  # the optimum fits the noise better than the truth
    assert result.problem.cost() == pytest.approx(result.final_cost, rel=1e-12)

    from scipy.optimize import least_squares

    least, variables = build(problem)
    start = torch.cat([problem.cameras.flatten(), problem.points.flatten()]).numpy()
    c, p = problem.camera_index, problem.point_index

    def residuals(x):
        x = torch.from_numpy(x)
        cams, pts = x[: 9 * problem.num_cameras].reshape(-1, 9), x[9 * problem.num_cameras :].reshape(-1, 3)
        return (type(problem)(cams, pts, c, p, problem.observations).residuals()).flatten().numpy()

    reference = least_squares(residuals, start, method="trf", xtol=1e-15, ftol=1e-15, gtol=1e-15, x_scale="jac")
    assert result.final_cost == pytest.approx(reference.cost, rel=1e-6)


@pytest.mark.parametrize("wrt", ["observations", "intrinsics"])
def test_gradients_flow_through_the_implicit_solve(wrt):
    """Gradients of the adjusted points with respect to the observed pixels and to the (fixed)
    intrinsics equal central differences of the whole solve."""
    problem, _ = synthetic_bal(4, 20, seed=2, pixel_noise=0.5)
    given = (problem.observations if wrt == "observations" else problem.cameras[:, 6:9]).clone()

    def solved_points(tensor):
        least, (_, _, points) = build(problem, fix_cameras=[0, 1], fix_intrinsics=True, **{wrt: tensor})
        result = slam.solve(least, slam.LevenbergMarquardt(max_iterations=30, function_tolerance=1e-14),
                            slam.Implicit())
        return result[points].data

    weights = torch.linspace(-1, 1, problem.num_points * 3, dtype=torch.float64).reshape(-1, 3)
    leaf = given.clone().requires_grad_(True)
    (solved_points(leaf) * weights).sum().backward()
    grad = leaf.grad
    assert torch.isfinite(grad).all() and grad.abs().sum() > 0
    eps = 1e-4 if wrt == "observations" else 1e-6
    for index in ([(0, 0), (17, 1), (63, 0)] if wrt == "observations" else [(0, 0), (2, 1), (3, 2)]):
        plus, minus = given.clone(), given.clone()
        plus[index] += eps
        minus[index] -= eps
        with torch.no_grad():
            numeric = float(((solved_points(plus) - solved_points(minus)) * weights).sum()) / (2 * eps)
        assert grad[index].item() == pytest.approx(numeric, rel=1e-4, abs=1e-8)


def test_cli_ba_writes_its_outputs(tmp_path):
    import json

    import matplotlib.image

    import slam.cli

    problem, _ = synthetic_bal(4, 40, seed=5)
    source = write_bal(tmp_path / "scene.txt", problem)
    code = slam.cli.main(["-q", "ba", str(source), "--output-dir", str(tmp_path / "out")])
    assert code == 0
    summary = json.loads((tmp_path / "out" / "scene.json").read_text())
    for key in ("initial_chi2", "final_chi2", "iterations", "solve_seconds", "converged", "num_cameras",
                "num_points", "num_observations"):
        assert key in summary
    assert summary["initial_chi2"] == pytest.approx(2 * problem.cost(), rel=1e-12)  # chi2 = 2 x Ceres' cost
    adjusted = read_bal(summary["outputs"]["out"])
    assert 2 * adjusted.cost() == pytest.approx(summary["final_chi2"], rel=1e-9) and adjusted.cost() < problem.cost() / 2
    image = matplotlib.image.imread(summary["outputs"]["png"])
    red = (image[..., 0] > 0.8) & (image[..., 1] < 0.2) & (image[..., 2] < 0.2)
    assert red.sum() > 10  # the camera centres are drawn
    o3d = pytest.importorskip("open3d")
    cloud = o3d.io.read_point_cloud(summary["outputs"]["ply"])
    assert len(cloud.points) == problem.num_points + problem.num_cameras


def test_cli_ba_reports_bad_input_without_traceback(tmp_path, capsys):
    import slam.cli

    path = _file(tmp_path, GOOD.replace("500\n", "5x0\n"))
    assert slam.cli.main(["-q", "ba", str(path)]) == 2
    assert f"{path}:9: field camera 0 f is not a number" in capsys.readouterr().err


def test_points_behind_a_camera_are_kept_and_counted():
    problem, _ = synthetic_bal(3, 10, seed=9)
    points = problem.points.clone()
    points[0] = problem.poses()[0].inverse().act(torch.tensor([0.1, 0.2, 5.0], dtype=torch.float64))  # z > 0
    moved = type(problem)(problem.cameras, points, problem.camera_index, problem.point_index, problem.observations)
    assert "(3 of them behind their camera)" in moved.describe()  # point 0 is behind all three cameras
    assert math.isfinite(moved.cost())  # evaluated by the same formula, as BAL's tools and Ceres do


@pytest.mark.parametrize("distortion", [False, True])
def test_pinhole_jacobians_equal_autograd_and_finite_differences(distortion, generator):
    from slam.costs.reprojection import _pinhole, _pinhole_jacobians, pinhole_project

    n = 40
    pose = SE3.random(n, generator=generator, dtype=torch.float64)
    in_camera = torch.cat([torch.randn(n, 2, generator=generator, dtype=torch.float64),
                           5.0 + 10.0 * torch.rand(n, 1, generator=generator, dtype=torch.float64)], -1)  # +z: in front
    point = Euclidean(pose.inverse().act(in_camera))
    values = [500 + torch.rand(n, generator=generator, dtype=torch.float64), 480 + torch.rand(n, dtype=torch.float64),
              torch.full((n,), 320.0, dtype=torch.float64), torch.full((n,), 240.0, dtype=torch.float64)]
    if distortion:
        values += [0.1 * torch.randn(n, generator=generator, dtype=torch.float64),
                   0.01 * torch.randn(n, generator=generator, dtype=torch.float64)]
    intrinsics = Euclidean(torch.stack(values, -1))
    uv = pinhole_project(in_camera, intrinsics.data) + torch.randn(n, 2, generator=generator, dtype=torch.float64)
    r, jacobians = _pinhole_jacobians(pose, intrinsics, point, observation=uv)
    assert torch.allclose(r, _pinhole(pose, intrinsics, point, observation=uv))
    # an independent projection: OpenCV's model written out for one point
    x, y = (in_camera[0, :2] / in_camera[0, 2]).tolist()
    k = intrinsics.data[0].tolist()
    radial = 1 + (k[4] * (x * x + y * y) + k[5] * (x * x + y * y) ** 2 if distortion else 0.0)
    assert r[0].tolist() == pytest.approx([k[0] * radial * x + k[2] - float(uv[0, 0]),
                                           k[1] * radial * y + k[3] - float(uv[0, 1])], rel=1e-12)
    check_jacobians(lambda a, b, c: _pinhole(a, b, c, observation=uv), [pose, intrinsics, point], jacobians, atol=1e-6)
