"""The trajectory smoother (``examples/trajectory_smoothing.py``, issue #16 item 9): it lowers the
accelerations while no joint's travel grows much and every angle keeps the margin inside the URDF's
soft limits; its ``LimitMargin`` barrier; the soft limits ``read_urdf`` now reads; and the figures
the script prints are the ones it computed."""

from __future__ import annotations

import contextlib
import io
import sys
from pathlib import Path

import pytest
import torch

import slam
from liegeo import Euclidean
from liegeo.testing import check_jacobians
from slam.costs import Prior
from slam.kinematics import URDFError, read_urdf
from slam.weights import ScalarWeight

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "examples"))
import trajectory_smoothing as ts  # noqa: E402

PANDA = ROOT / "slam" / "data" / "panda_no_gripper.urdf"
PANDA_SOFT = [(-2.8973, 2.8973), (-1.7628, 1.7628), (-2.8973, 2.8973), (-3.0718, 0.0175),
              (-2.8973, 2.8973), (-0.0175, 3.7525), (-2.8973, 2.8973)]
"""``<safety_controller soft_lower_limit soft_upper_limit>`` of the Panda's joints 1-7."""


def travel_kept(outcome: ts.Outcome) -> torch.Tensor:
    """Per joint: smoothed travel ≤ 1.1 × initial travel + 0.1 rad.  The deviation term discourages
    travel, it does not bound it, so this is what the defaults deliver (seeds 0-19: at most +0.12 rad
    per joint, 0.07 rad beyond 1.1×), with an absolute part because a joint that barely moves (0.01 rad)
    can multiply its travel while moving no further than the others."""
    return outcome.after.travel <= 1.1 * outcome.before.travel + 0.1


def run(*argv: str) -> tuple[ts.Outcome, str]:
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        outcome = ts.main(list(argv))
    return outcome, out.getvalue()


@pytest.fixture(scope="module")
def default_run(tmp_path_factory) -> tuple[ts.Outcome, str, Path]:
    png = tmp_path_factory.mktemp("smoothing") / "trajectory.png"
    return (*run("--png", str(png)), png)


def test_the_smoother_lowers_accelerations_keeps_the_task_travel_and_the_margin(default_run):
    outcome, _, _ = default_run
    before, after, limits = outcome.before, outcome.after, outcome.limits
    assert after.acceleration < before.acceleration / 4  # 5.5× less at the defaults
    assert after.waypoint_position_error < 1e-4 and after.waypoint_rotation_error < 1e-4  # metres, radians
    assert bool(travel_kept(outcome).all()), (before.travel, after.travel)
    # The limits kept are the soft ones (all the Panda's joints have them), with the margin inside.
    assert torch.allclose(torch.stack([limits.lower, limits.upper], -1), torch.tensor(PANDA_SOFT, dtype=torch.float64))
    smoothed = outcome.smoothed
    assert bool(((smoothed > limits.lower + limits.margin) & (smoothed < limits.upper - limits.margin)).all())
    assert after.outside_margin == after.outside_soft == after.outside_hard == 0
    assert float(after.closest_to_kept.min()) > limits.margin
    # Why that holds for every iterate, not just this run: one angle at the margin costs more than the start.
    assert float(outcome.result.initial_cost[0]) < outcome.at_margin_cost


def test_without_the_deviation_term_travel_grows_past_the_bound_while_the_barrier_still_holds():
    """The travel check can fail: the smoother without its deviation term (the script before the fix,
    plus the barrier) trades accelerations for joint travel (panda_joint5: 0.47 → 1.50 rad)."""
    outcome, _ = run("--deviation-weight", "0")
    assert outcome.after.acceleration < outcome.before.acceleration / 4
    assert not bool(travel_kept(outcome).all())
    assert float((outcome.after.travel - outcome.before.travel).max()) > 0.5
    assert outcome.after.outside_margin == 0 and float(outcome.after.closest_to_kept.min()) > outcome.limits.margin


def test_without_the_barrier_angles_cross_the_margin_and_with_it_none_do():
    """The margin check can fail: in this run (no deviation term, so the joints roam) the smoother
    without its barrier brings 9 angles within the margin (one 8 mrad from the soft limit); with it the
    closest is 91 mrad."""
    case = ("--steps", "24", "--seed", "8", "--deviation-weight", "0")
    free, text = run(*case, "--limit-weight", "0")
    assert free.before.outside_margin == 0 and free.after.outside_margin > 0
    assert float(free.after.closest_to_kept.min()) < free.limits.margin
    assert "so nothing stops an iterate from crossing it" in text
    held, text = run(*case)
    assert held.after.outside_margin == 0 and float(held.after.closest_to_kept.min()) > held.limits.margin
    assert float(held.result.initial_cost[0]) < held.at_margin_cost and "so no LM iterate can reach it" in text
    assert held.after.acceleration < held.before.acceleration / 4


def test_the_printed_figures_are_the_computed_ones(default_run):
    outcome, text, png = default_run
    lines = text.splitlines()
    assert "kept: 0.05 rad inside the soft limits (hard where none)" in text
    smoothed_line = next(line for line in lines if line.lstrip().startswith("smoothed:"))
    assert "0 outside the hard limits, 0 outside the soft ones, 0 outside the soft limits (hard where none) " \
           "shrunk by the margin" in smoothed_line
    for j, name in enumerate(outcome.kinematics.robot.joint_names):
        row = next(line for line in lines if line.startswith(name + " "))
        travel = f"{float(outcome.before.travel[j]):6.3f} → {float(outcome.after.travel[j]):6.3f}"
        upper = f"{float(outcome.before.to_soft_upper[j]):6.3f} → {float(outcome.after.to_soft_upper[j]):6.3f}"
        assert travel in row and upper in row, row
    assert f"{outcome.before.acceleration:.4e} → {outcome.after.acceleration:.4e}" in text
    assert "so no LM iterate can reach it" in text
    assert png.stat().st_size > 10_000


def test_limit_margin_is_zero_inside_grows_towards_the_margin_and_stays_finite_beyond():
    lower, upper = torch.tensor([-1.0, 0.0]).double(), torch.tensor([1.0, torch.inf]).double()  # joint 2: no upper
    cost = ts.LimitMargin(slam.Variable(Euclidean(torch.zeros(1, 2)))[[0]], lower=lower, upper=upper,
                          margin=0.1, band=0.1)
    d = torch.tensor([1.0, 0.1001, 0.05, 0.01, 0.001, 0.0, -0.05]).double()  # to upper - margin (joint 1)
    q = torch.stack([0.9 - d, torch.full_like(d, 5.0)], -1)
    r = cost.residual(Euclidean(q))
    assert r[:2].abs().max() == 0 and bool((r[:, 1] == 0).all())  # ≥ band inside; the free side adds nothing
    assert torch.allclose(r[2:5, 0], 0.1 / d[2:5] - 1)
    assert float(r[5, 0]) == pytest.approx(ts.LimitMargin.AT_MARGIN) and bool(torch.isfinite(r).all())
    assert bool((r[1:, 0].diff() > 0).all())  # grows all the way, past the margin too
    for point in ([0.83, 0.15], [0.895, -0.5], [-0.99, 3.0], [0.95, 0.07]):  # in the band, on the line, beyond
        x = Euclidean(torch.tensor([point], dtype=torch.float64))
        _, (jacobian,) = cost.residual_and_jacobians(x)
        check_jacobians(lambda v: cost.residual(v), [x], [jacobian], atol=1e-3, eps=1e-6)  # slopes up to 1e5


def test_limit_margin_stops_a_joint_pulled_past_its_limit_outside_the_margin():
    """A prior pulls two joints 0.5 rad past their upper limit 1: they stop inside ``1 - margin``,
    in the barrier's band (pulled there), while without the barrier they would reach the target."""
    target = torch.full((3, 2), 1.5, dtype=torch.float64)
    q = slam.Variable(Euclidean(torch.zeros(3, 2, dtype=torch.float64)), name="q")
    margin = 0.05
    lower, upper = torch.full((2,), -1.0, dtype=torch.float64), torch.ones(2, dtype=torch.float64)
    barrier = ts.LimitMargin(q[[0, 1, 2]], lower=lower, upper=upper, margin=margin, band=margin,
                             weight=ScalarWeight(0.1))
    pull = Prior(q[[0, 1, 2]], measurement=Euclidean(target), weight=ScalarWeight(1.0))
    result = slam.solve(slam.Problem([pull, barrier]), slam.LevenbergMarquardt(max_iterations=100))
    reached = result[q].data
    assert float(result.initial_cost[0]) < 0.5 * (0.1 * ts.LimitMargin.AT_MARGIN) ** 2
    assert bool((reached < upper - margin).all()) and bool((reached > upper - 2 * margin).all()), reached
    free = slam.solve(slam.Problem([pull]), slam.LevenbergMarquardt(max_iterations=100))[q].data
    assert torch.allclose(free, target)


def test_read_urdf_reads_the_soft_limits_of_the_safety_controller(tmp_path):
    panda = read_urdf(PANDA)
    assert [(j.soft_lower, j.soft_upper) for j in panda.movable_joints] == PANDA_SOFT
    assert all(j.soft_lower is None and j.soft_upper is None for j in read_urdf(ROOT / "slam" / "data" / "ur5.urdf").joints)

    def robot(safety: str) -> Path:
        path = tmp_path / "robot.urdf"
        path.write_text(f"""<robot name="r"><link name="a"/><link name="b"/>
<joint name="j" type="revolute"><parent link="a"/><child link="b"/>{safety}
<limit lower="-1" upper="1"/></joint></robot>""")
        return path

    only_upper = read_urdf(robot('<safety_controller k_position="10" soft_upper_limit="0.9"/>')).joints[0]
    assert (only_upper.soft_lower, only_upper.soft_upper) == (None, 0.9)
    with pytest.raises(URDFError, match="soft_lower_limit 0.5 is above soft_upper_limit 0.4"):
        read_urdf(robot('<safety_controller soft_lower_limit="0.5" soft_upper_limit="0.4"/>'))
    with pytest.raises(URDFError, match="soft_lower_limit"):
        read_urdf(robot('<safety_controller soft_lower_limit="nan" soft_upper_limit="0.4"/>'))
