"""What an install from the wheel needs: the package data the product reads at run time (``slam.data``,
declared in ``pyproject.toml``), the default job's input inside the package, the README's kinematics
snippet from any folder, and a fast direct sparse solver, named in one log line, where scikit-sparse
(CHOLMOD, which has no Linux wheel) cannot be imported."""

from __future__ import annotations

import fnmatch
import importlib
import logging
import re
import sys
from importlib import resources
from pathlib import Path

import pytest
import torch

import slam
import slam.data
from liegeo import SE3
from slam.pgo.synthetic import synthetic_graph

ROOT = Path(__file__).resolve().parents[1]
BUNDLED = ["dubrovnik-3-7-pre.txt", "intel.g2o", "kuka_iiwa.urdf", "panda_no_gripper.urdf", "tinyGrid3D.g2o", "ur5.urdf"]


def test_the_package_data_is_there_and_loads():
    from slam.io import read_bal, read_g2o
    from slam.kinematics import read_urdf

    assert slam.data.names() == BUNDLED
    folder = resources.files("slam.data")
    for name in BUNDLED:
        assert folder.joinpath(name).is_file() and slam.data.path(name).is_file()
        assert slam.data.path(name).parent == Path(slam.__file__).resolve().parent / "data"
    assert folder.joinpath("README.md").is_file()  # the files' origins and terms travel with them
    readme = folder.joinpath("README.md").read_text(encoding="utf-8")
    assert all(f"| {name} |" in readme for name in BUNDLED)
    graph = read_g2o(slam.data.path("intel.g2o"))
    assert (graph.num_poses, graph.num_edges) == (1728, 2512)
    assert read_g2o(slam.data.path("tinyGrid3D.g2o")).num_poses == 9
    assert read_bal(slam.data.path("dubrovnik-3-7-pre.txt")).num_cameras == 3
    assert {len(read_urdf(slam.data.path(f"{robot}.urdf")).joints) >= 6 for robot in ("panda_no_gripper", "kuka_iiwa", "ur5")} == {True}
    with pytest.raises(FileNotFoundError, match="intel.g2o"):
        slam.data.path("missing.g2o")
    with pytest.raises(ValueError):
        slam.data.path("../cli.py")


def test_the_wheel_declares_every_bundled_file():
    tomllib = pytest.importorskip("tomllib")
    config = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["tool"]["setuptools"]
    patterns = config["package-data"]["slam.data"]
    for name in [*BUNDLED, "README.md"]:
        assert any(fnmatch.fnmatch(name, pattern) for pattern in patterns), name
    assert any(fnmatch.fnmatch("slam.data", pattern) for pattern in config["packages"]["find"]["include"])
    # only what the product needs ships in every install (test-only data stays in data/)
    assert sum(p.stat().st_size for p in (ROOT / "slam" / "data").iterdir() if p.is_file()) < 1_000_000


def test_the_default_job_reads_the_packaged_graph():
    import slam.cli

    assert slam.cli.DEFAULT_GRAPH == slam.data.path("intel.g2o")
    assert slam.cli.DEFAULT_GRAPH.is_relative_to(Path(slam.__file__).resolve().parent)


def test_the_readme_kinematics_snippet_runs_from_any_folder(tmp_path, monkeypatch):
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    code = re.search(r"```python\n(.*?)```", text.split("## Kinematics in eight lines", 1)[1], re.S).group(1)
    assert "data/" not in code  # nothing relative to the checkout
    monkeypatch.chdir(tmp_path)
    namespace: dict[str, object] = {}
    torch.manual_seed(0)
    small = code.replace("random_configurations(1000)", "random_configurations(16)").replace("print(", "(lambda *a: None)(")
    exec(compile(small, "README.md", "exec"), namespace)
    assert float(namespace["ik"].success().float().mean()) > 0.5


@pytest.fixture
def without_sksparse(monkeypatch):
    """``import sksparse`` fails in this test, as where scikit-sparse is not installed."""
    monkeypatch.setitem(sys.modules, "sksparse", None)
    monkeypatch.setitem(sys.modules, "sksparse.cholmod", None)
    solve_module = importlib.import_module("slam.optim.solve")  # (slam.optim.solve is also the function)
    solve_module._log_choice_once.cache_clear()
    yield solve_module
    solve_module._log_choice_once.cache_clear()


def test_without_cholmod_auto_is_the_block_cholesky_and_says_so(without_sksparse, caplog):
    from liegeo._kernels import numba_available
    from slam.linear.sparse import SparseCholesky
    from slam.linear.sparse_cholesky import _cholmod

    solve_module = without_sksparse
    assert not solve_module._have_cholmod() and _cholmod() is None
    graph, _ = synthetic_graph(SE3, 60, 20, noise_seed=4)
    problem, _ = graph.problem()
    with caplog.at_level(logging.INFO, logger="slam"):
        solver = solve_module.make_linear_solver("auto", problem)
        again = solve_module.make_linear_solver("auto", graph.problem()[0])
    assert isinstance(solver, SparseCholesky) and isinstance(again, SparseCholesky)  # a direct solver, not PCG
    lines = [r.getMessage() for r in caplog.records if r.getMessage().startswith("linear solver:")]
    assert len(lines) == 1, lines  # once per process, however many solves
    assert "not installed" in lines[0] and "scikit-sparse" in lines[0]
    solver.analyze(problem.structure)
    factorizer = next(iter(problem.structure.solver_cache.values()))
    assert factorizer.backend == "scipy"
    if numba_available():  # the line names what runs
        assert factorizer.mode == "block" and "block sparse Cholesky (6x6 blocks)" in lines[0] and "SuperLU" in lines[0]
    else:
        assert factorizer.mode == "superlu" and "SciPy's SuperLU" in lines[0]
    result = slam.solve(problem, slam.LevenbergMarquardt(linear_solver=solver))
    reference = slam.solve(graph.problem()[0], slam.LevenbergMarquardt(linear_solver="dense"))
    torch.testing.assert_close(result.cost, reference.cost, rtol=1e-9, atol=1e-12)


def test_the_log_line_names_superlu_where_the_pattern_has_no_blocks(without_sksparse):
    solver, line = without_sksparse.choose_linear_solver(5000, "cpu", have_cholmod=False, block_size=1)
    assert type(solver).__name__ == "SparseCholesky" and "SciPy's SuperLU" in line and "block" not in line
    solver, line = without_sksparse.choose_linear_solver(5000, "cpu", have_cholmod=True, block_size=3)
    assert type(solver).__name__ == "SparseCholesky" and "3x3 blocks" in line and "CHOLMOD" in line


def test_the_default_job_and_a_ba_sample_run_without_cholmod(without_sksparse, tmp_path, monkeypatch, caplog):
    import slam.cli

    monkeypatch.chdir(tmp_path)  # not the checkout: the inputs come from the package
    with caplog.at_level(logging.INFO, logger="slam"):
        assert slam.cli.main(["pgo", "--output-dir", str(tmp_path / "pgo")]) == 0
    assert (tmp_path / "pgo" / "intel.json").is_file()
    lines = [r.getMessage() for r in caplog.records if r.getMessage().startswith("linear solver:")]
    assert len(lines) == 1 and "not installed" in lines[0], lines
    sample = str(slam.data.path("dubrovnik-3-7-pre.txt"))
    assert slam.cli.main(["-q", "ba", sample, "--fix-intrinsics", "--output-dir", str(tmp_path / "ba")]) == 0
    assert (tmp_path / "ba" / "dubrovnik-3-7-pre.json").is_file()


def test_slam_ba_writes_its_ply_without_open3d(tmp_path, monkeypatch):
    """A bare install has no Open3D: the BA scene's PLY is written with numpy (``slam.io.ply``), and
    reads back (through Open3D where it is installed) as the points and camera centres it holds."""
    import numpy as np

    from slam.ba import synthetic_bal
    from slam.viz.scene import camera_centers, save_scene_ply

    problem, _ = synthetic_bal(3, 10, seed=9)
    with monkeypatch.context() as patch:
        patch.setitem(sys.modules, "open3d", None)  # import open3d now raises ImportError
        path = save_scene_ply(tmp_path / "scene.ply", problem.points, problem.poses())
    expected = np.concatenate([problem.points.double().numpy(), camera_centers(problem.poses())])
    header, _, body = path.read_bytes().partition(b"end_header\n")
    assert f"element vertex {len(expected)}".encode() in header
    vertices = np.frombuffer(body, dtype=[("xyz", "<f8", 3), ("rgb", "u1", 3)])
    np.testing.assert_array_equal(vertices["xyz"], expected)
    o3d = pytest.importorskip("open3d")
    np.testing.assert_array_equal(np.asarray(o3d.io.read_point_cloud(str(path)).points), expected)
