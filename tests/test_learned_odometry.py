"""The learned odometry front end (``examples/learned_odometry.py``): its scan alignment, its data,
its confidence calibration, and gradients of the trajectory error through PGO with
respect to the network's parameters against finite differences (implicit and unrolled)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch

import slam

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "examples"))
from learned_odometry import FrontEnd, calibrate, make_scans, odometry_residuals, trajectory_error  # noqa: E402


def _front_end(seed: int | None) -> FrontEnd:
    """Zero parameters (uniform point weights, confidence 1) or random ones (every parameter has a
    gradient)."""
    front_end = FrontEnd(hidden=4).double()
    generator = torch.Generator().manual_seed(seed or 0)
    with torch.no_grad():
        for p in front_end.parameters():
            p.copy_(0.3 * torch.randn(p.shape, generator=generator, dtype=p.dtype) if seed is not None else 0.0)
    return front_end


def test_alignment_recovers_the_true_relative_poses_from_noiseless_static_points():
    scans = make_scans(2, seed=3, max_moving=0.0, noise=(1e-12, 1e-12))
    e, _ = odometry_residuals(_front_end(seed=1), scans)
    assert e.abs().max() < 1e-9


def test_moving_points_and_sensor_noise_perturb_the_alignment():
    """The premise the network has something to learn: with uniform weights the odometry is off."""
    e, _ = odometry_residuals(_front_end(None), make_scans(2, seed=3))
    assert e[..., :2].norm(dim=-1).median() > 0.02


def test_calibration_makes_the_odometry_chi2_match_its_dimension():
    scans = make_scans(4, seed=6)
    front_end = _front_end(seed=2)
    calibrate(front_end, scans)
    with torch.no_grad():
        e, chi2 = odometry_residuals(front_end, scans)
        confidence = front_end.confidence(scans.first, scans.second, scans.descriptors)
    assert torch.allclose(confidence, confidence[0, 0].expand_as(confidence))
    assert float((confidence * chi2).mean()) == pytest.approx(e.shape[-1], rel=1e-9)


@pytest.mark.parametrize("backward", [slam.Implicit(), slam.Unroll()], ids=["implicit", "unroll"])
def test_trajectory_error_gradients_equal_finite_differences(backward):
    scans = make_scans(1, seed=8, num_poses=8, loops=4)
    front_end = _front_end(seed=4)
    trajectory_error(front_end, scans, backward).sum().backward()
    parameters = list(front_end.parameters())
    assert all(p.grad is not None and float(p.grad.abs().sum()) > 0 for p in parameters)
    eps = 1e-5
    for parameter, index in [(parameters[0], (1, 2)), (parameters[2], (0, 3)), (parameters[3], (0,)),
                             (parameters[4], (0, 1)), (parameters[5], (0,))]:
        with torch.no_grad():
            parameter[index] += eps
            plus = float(trajectory_error(front_end, scans, backward).sum())
            parameter[index] -= 2 * eps
            minus = float(trajectory_error(front_end, scans, backward).sum())
            parameter[index] += eps
        assert float(parameter.grad[index]) == pytest.approx((plus - minus) / (2 * eps), rel=1e-4, abs=1e-9)


def test_one_end_to_end_step_reduces_the_trajectory_error_on_a_fixed_batch():
    scans = make_scans(4, seed=9)
    front_end = _front_end(None)
    optimizer = torch.optim.SGD(front_end.parameters(), lr=0.05)
    before = trajectory_error(front_end, scans).mean()
    optimizer.zero_grad()
    before.backward()
    optimizer.step()
    with torch.no_grad():
        after = trajectory_error(front_end, scans).mean()
    assert float(after) < float(before.detach())
