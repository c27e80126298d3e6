"""Training a keypoint front end through robust bundle adjustment (``examples/learned_keypoints.py``):
gradients of the 3D point error with respect to the network's parameters, through per-observation
weights, pixel corrections and a Cauchy kernel, against finite differences (implicit and unrolled);
one training step that helps."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch

import slam

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "examples"))
from learned_keypoints import ROBUST, KeypointFrontEnd, detector_bias, make_scenes, point_rmse  # noqa: E402

CONVERGED = slam.LevenbergMarquardt(max_iterations=300, function_tolerance=1e-15, parameter_tolerance=1e-14)


def _randomized_front_end(seed: int) -> KeypointFrontEnd:
    """A front end away from its (zero-output) initialization, so every parameter has a gradient."""
    torch.manual_seed(seed)
    front_end = KeypointFrontEnd(hidden=4).double()
    with torch.no_grad():
        front_end.mlp[-1].weight.normal_(0.0, 0.1)
        front_end.mlp[-1].bias.normal_(0.0, 0.1)
    return front_end


def _loss(front_end: KeypointFrontEnd, scenes, backward, kernel) -> torch.Tensor:
    confidence, correction = front_end(scenes.descriptors)
    return point_rmse(scenes, confidence, correction, loss=kernel, optimizer=CONVERGED, backward=backward).mean()


# LM stops on a relative cost decrease, which leaves ~1e-9 of noise in the loss of these solutions
# (cost ~1e5 px² with the wrong matches unweighted; with the Cauchy kernel reweighted least squares
# converges only linearly): a difference step of 1e-3 keeps it out of the comparison, and still tells
# the exact-Hessian gradient from the Gauss-Newton approximation, which is off by 10x with the kernel.
@pytest.mark.parametrize("kernel", [None, ROBUST], ids=["plain", "cauchy"])
@pytest.mark.parametrize("backward", [slam.Implicit(), slam.Unroll()], ids=["implicit", "unroll"])
def test_parameter_gradients_through_ba_equal_finite_differences(backward, kernel):
    eps = 1e-3
    scenes = make_scenes(1, seed=7, wrong_share=0.1)
    front_end = _randomized_front_end(0)
    _loss(front_end, scenes, backward, kernel).backward()
    parameters = list(front_end.parameters())
    assert all(p.grad is not None and float(p.grad.abs().sum()) > 0 for p in parameters)
    for parameter, index in [(parameters[0], (1, 4)), (parameters[2], (3, 0)), (parameters[4], (0, 2)),
                             (parameters[5], (2,))]:
        analytic = float(parameter.grad[index])
        with torch.no_grad():
            parameter[index] += eps
            plus = float(_loss(front_end, scenes, backward, kernel))
            parameter[index] -= 2 * eps
            minus = float(_loss(front_end, scenes, backward, kernel))
            parameter[index] += eps
        assert analytic == pytest.approx((plus - minus) / (2 * eps), rel=2e-3, abs=5e-7)


def test_the_true_detector_bias_as_correction_beats_none():
    # the premise of the example: removing the bias the network is meant to learn helps BA
    scenes = make_scenes(4, seed=3)
    with torch.no_grad():
        plain = point_rmse(scenes).mean()
        corrected = point_rmse(scenes, correction=detector_bias(scenes.descriptors)).mean()
    assert corrected < 0.7 * plain


def test_one_training_step_reduces_the_loss_on_a_fixed_batch():
    scenes = make_scenes(4, seed=5)
    front_end = KeypointFrontEnd().double()
    optimizer = torch.optim.SGD(front_end.parameters(), lr=1e-2)
    before = _loss(front_end, scenes, slam.Implicit(), ROBUST)
    optimizer.zero_grad()
    before.backward()
    optimizer.step()
    with torch.no_grad():
        after = _loss(front_end, scenes, slam.Implicit(), ROBUST)
    assert after.item() < before.item()
