"""The problem doctor (``slam.diagnose``): one test per finding on small hand-made problems, a clean
problem with none, and a disconnected copy of a real pose graph, by the API and through ``slam pgo``."""

from __future__ import annotations

import dataclasses
import logging
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

import slam
import slam.data
from liegeo import SE2, Euclidean
from slam.costs import Between
from slam.io import read_g2o, write_g2o

REPO = Path(__file__).resolve().parents[1]


def _chain(n: int = 6, *, fixed=(0,), loops=((0, 3),), seed: int = 0, name: str = "pose"):
    """An SE2 odometry chain with loop closures, noisy: poses, edges (i, j) and measurements."""
    g = torch.Generator().manual_seed(seed)
    truth = SE2.exp(torch.randn(n, 3, generator=g, dtype=torch.float64))
    i = torch.tensor([k for k in range(n - 1)] + [a for a, _ in loops])
    j = torch.tensor([k + 1 for k in range(n - 1)] + [b for _, b in loops])
    z = truth[i].between(truth[j]).retract(0.05 * torch.randn(len(i), 3, generator=g, dtype=torch.float64))
    init = truth.retract(0.1 * torch.randn(n, 3, generator=g, dtype=torch.float64))
    poses = slam.Variable(init, fixed=list(fixed) or None, name=name)
    return poses, i, j, z


def _codes(findings):
    return [(f.severity, f.code) for f in findings]


def test_a_well_posed_problem_has_no_findings():
    poses, i, j, z = _chain()
    weight = slam.SqrtInformation(torch.eye(3, dtype=torch.float64).expand(len(i), 3, 3) * 10.0)
    problem = slam.Problem([Between(poses[i], poses[j], measurement=z, weight=weight)])
    assert slam.diagnose(problem) == []
    assert slam.doctor.check(problem) == []


def test_gauge_freedom_with_nothing_fixed_is_a_warning(caplog):
    poses, i, j, z = _chain(fixed=())
    problem = slam.Problem([Between(poses[i], poses[j], measurement=z)])
    findings = slam.diagnose(problem)
    assert _codes(findings) == [("warning", "gauge")]
    assert "singular in 3 direction(s)" in findings[0].message and "pose[0]" in findings[0].message
    assert "\n" not in findings[0].message
    with caplog.at_level(logging.WARNING, logger="slam"):
        slam.doctor.check(problem)  # warnings do not stop
    assert [r.getMessage() for r in caplog.records] == [f"warning: {findings[0].message}"]
    # A full prior on one pose pins the gauge: no finding.
    pinned = slam.Problem([Between(poses[i], poses[j], measurement=z), slam.Prior(poses[[2]], measurement=z[:1])])
    assert slam.diagnose(pinned) == []


def test_disconnected_parts_are_an_error():
    a, i, j, z = _chain(n=5, name="pose")
    problem = slam.Problem([Between(a[i], a[j], measurement=z),
                            Between(a[torch.tensor([3])], a[torch.tensor([4])], measurement=z[:1])])
    assert slam.diagnose(problem) == []  # one part, fixed
    poses, i, j, z = _chain(n=8, loops=((0, 2), (4, 7)))
    keep = (i < 4) == (j < 4)  # cut the chain between pose 3 and pose 4
    problem = slam.Problem([Between(poses[i[keep]], poses[j[keep]], measurement=z[keep])])
    findings = slam.diagnose(problem)
    assert _codes(findings) == [("error", "disconnected")]
    message = findings[0].message
    assert "2 disconnected parts (sizes 4, 3 free elements)" in message and "1 of them" in message
    assert "pose[4]" in message and "pose[1]" not in message and "\n" not in message
    with pytest.raises(slam.ProblemError, match="disconnected parts") as raised:
        slam.doctor.check(problem)
    assert isinstance(raised.value, ValueError) and raised.value.findings == findings
    # Fixing one pose of the second part makes it well posed again (two parts, each pinned).
    poses.fix(5)
    assert slam.diagnose(slam.Problem([Between(poses[i[keep]], poses[j[keep]], measurement=z[keep])])) == []


def test_variables_without_costs_are_an_error():
    poses, i, j, z = _chain(n=6)
    inner = (i < 5) & (j < 5)  # pose 5 loses its only edge
    findings = slam.diagnose(slam.Problem([Between(poses[i[inner]], poses[j[inner]], measurement=z[inner])]))
    assert ("error", "unused") in _codes(findings)
    unused = next(f for f in findings if f.code == "unused")
    assert "variable 'pose': 1 free element(s)" in unused.message and "pose[5]" in unused.message
    assert "pose[4]" not in unused.message


@slam.residual
def _bearing(point: Euclidean, *, center):
    """A direction seen from ``center``: two numbers of a 3D point (a landmark seen once is rank 2 of 3)."""
    d = point.data - center
    return d[..., :2] / d[..., 2:]


@slam.residual
def _position(pose: SE2, *, measurement):
    return pose.translation() - measurement


def test_rank_deficient_blocks_at_the_initial_guess_are_a_warning():
    points = slam.Variable(Euclidean(torch.tensor([[0.1, 0.2, 5.0], [0.3, -0.1, 4.0]], dtype=torch.float64)),
                           name="landmark")
    centers = torch.tensor([[0.0, 0.0, 0.0], [1.0, 0.0, 0.0], [0.0, 0.0, 0.0]], dtype=torch.float64)
    seen = torch.tensor([0, 0, 1])  # landmark 0 seen from two centers, landmark 1 once
    problem = slam.Problem([_bearing(points[seen], center=centers)])
    findings = [f for f in slam.diagnose(problem) if f.code == "rank-deficient"]
    assert len(findings) == 1 and findings[0].severity == "warning"
    assert "variable 'landmark': 1 element(s)" in findings[0].message and "rank 2 of 3" in findings[0].message
    assert "landmark[1]" in findings[0].message and "landmark[0]" not in findings[0].message
    # A pose with only a position prior (besides a fixed neighbour's edge it has none).
    poses, i, j, z = _chain(n=4)
    extra = slam.Variable(SE2.exp(torch.zeros(1, 3, dtype=torch.float64)), name="loose")
    problem = slam.Problem([Between(poses[i], poses[j], measurement=z),
                            _position(extra[[0]], measurement=torch.zeros(1, 2, dtype=torch.float64))])
    block = [f for f in slam.diagnose(problem) if f.code == "rank-deficient"]
    assert len(block) == 1 and "variable 'loose'" in block[0].message and "rank 2 of 3" in block[0].message


def test_information_off_by_orders_of_magnitude_is_a_warning():
    poses, i, j, z = _chain(n=8, loops=((0, 4), (2, 7)))
    information = torch.eye(3, dtype=torch.float64).repeat(len(i), 1, 1) * 100.0
    information[5] *= 1e5  # one edge 10^5 times its neighbours (e.g. a covariance read as information)
    weight = slam.SqrtInformation.from_information(information)
    problem = slam.Problem([Between(poses[i], poses[j], measurement=z, weight=weight, name="between")])
    findings = slam.diagnose(problem)
    assert _codes(findings) == [("warning", "information-scale")]
    message = findings[0].message
    assert "cost 'between' (cost 0): instance(s) 5 (pose[5], pose[6]; 10^+5.0)" in message
    information[5] /= 1e2  # 10^3: within the tolerance
    weight = slam.SqrtInformation.from_information(information)
    assert slam.diagnose(slam.Problem([Between(poses[i], poses[j], measurement=z, weight=weight)])) == []


def test_nan_or_inf_anywhere_is_an_error():
    poses, i, j, z = _chain()
    data = z.data.clone()
    data[2, 0] = float("nan")
    findings = slam.diagnose(slam.Problem([Between(poses[i], poses[j], measurement=SE2(data), name="between")]))
    assert _codes(findings) == [("error", "non-finite")]
    assert "cost 'between' (cost 0) has non-finite data 'measurement' at instance(s) 2" in findings[0].message
    weight = slam.DiagonalWeight(torch.ones(len(i), 3, dtype=torch.float64))
    weight.sqrt_weights[4, 1] = float("inf")
    findings = slam.diagnose(slam.Problem([Between(poses[i], poses[j], measurement=z, weight=weight)]))
    assert _codes(findings) == [("error", "non-finite")] and "weight at instance(s) 4" in findings[0].message
    values = poses.value.data.clone()
    values[3, 0] = float("inf")  # a translation (the group refuses a non-finite rotation itself)
    bad = slam.Variable(SE2(values), fixed=[0], name="pose")
    findings = slam.diagnose(slam.Problem([Between(bad[i], bad[j], measurement=z)]))
    assert _codes(findings) == [("error", "non-finite")] and "variable 'pose'" in findings[0].message
    assert "pose[3]" in findings[0].message


# ------------------------------------------------------------------ a disconnected copy of a real graph


@pytest.fixture(scope="module")
def intel_cut():
    """intel.g2o without the edges that cross pose 0.8 N: two parts, the second with nothing fixed."""
    graph = read_g2o(slam.data.path("intel.g2o"))
    cut = int(0.8 * graph.num_poses)
    keep = (graph.i < cut) == (graph.j < cut)
    assert not bool(keep.all())
    return graph, dataclasses.replace(graph, i=graph.i[keep], j=graph.j[keep],
                                      measurements=graph.measurements[keep], information=graph.information[keep]), cut


def test_a_disconnected_copy_of_a_real_graph(intel_cut):
    graph, cut_graph, cut = intel_cut
    assert slam.diagnose(graph.problem()[0]) == []
    findings = slam.diagnose(cut_graph.problem()[0])
    assert _codes(findings) == [("error", "disconnected")]
    assert f"2 disconnected parts (sizes {cut - 1}, {graph.num_poses - cut} free elements)" in findings[0].message
    assert f"pose[{cut}]" in findings[0].message and "singular in 3 direction(s)" in findings[0].message
    with pytest.raises(slam.ProblemError, match="disconnected"):
        slam.pgo.optimize(cut_graph, max_iterations=2)
    result = slam.pgo.optimize(cut_graph, max_iterations=1, diagnose=False)  # the old way: no word
    assert result.iterations == 1


@pytest.mark.parametrize("init", [None, "file"])
def test_slam_pgo_refuses_a_disconnected_graph(intel_cut, tmp_path, init):
    _, cut_graph, cut = intel_cut
    path = write_g2o(tmp_path / "cut.g2o", cut_graph)
    environment = {"PYTHONPATH": str(REPO), "PATH": os.environ.get("PATH", "/usr/bin:/bin"), "OMP_NUM_THREADS": "1",
                   "HOME": os.environ.get("HOME", "/tmp")}
    extra = ["--init", init] if init else []
    done = subprocess.run([sys.executable, "-m", "slam.cli", "-q", "pgo", str(path), *extra, "--output-dir",
                           str(tmp_path)], capture_output=True, text=True, timeout=180, env=environment, cwd=tmp_path)
    assert done.returncode == 2, done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in done.stderr, done.stderr
    assert "2 disconnected parts" in lines[0] and f"pose[{cut}]" in lines[0]
    assert not (tmp_path / "cut_optimized.g2o").exists()


def test_bundle_adjustment_has_a_seven_dof_gauge_that_ba_optimize_expects(caplog):
    from slam.ba import synthetic_bal
    from slam.ba.optimize import build

    scene = synthetic_bal()
    scene = scene[0] if isinstance(scene, tuple) else scene
    findings = slam.diagnose(build(scene)[0])
    assert _codes(findings) == [("warning", "gauge")] and "singular in 7 direction(s)" in findings[0].message
    assert slam.diagnose(build(scene, fix_cameras=(0, 1))[0]) == []
    with caplog.at_level(logging.WARNING, logger="slam"):
        slam.ba.optimize(scene, max_iterations=1)
    assert not [r for r in caplog.records if "nothing is fixed" in r.getMessage()]
