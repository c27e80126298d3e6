"""Robust losses: GTSAM's values, ρ' = weight, safe gradients at 0 and at the kink, parsing."""

import dataclasses

import numpy as np
import pytest
import torch

from slam.robust import Cauchy, GemanMcClure, Huber, RobustLoss, Tukey, parse_robust

LOSSES = [Huber, Cauchy, GemanMcClure, Tukey]
SCALES = [0.1, 1.0, 1.345, 4.685]
losses = pytest.mark.parametrize("cls", LOSSES, ids=lambda c: c.__name__)


def s_grid(k: float) -> torch.Tensor:
    """Squared norms from 0 through the kink s = k² (and just either side) to far tails."""
    e = k * torch.tensor([0.0, 1e-8, 1e-4, 0.1, 0.5, 1 - 1e-9, 1.0, 1 + 1e-9, 1.5, 2.0, 10.0, 1e3, 1e6], dtype=torch.float64)
    return e * e


@losses
@pytest.mark.parametrize("k", SCALES)
def test_matches_gtsam(cls, k):
    gtsam = pytest.importorskip("gtsam")
    ref = getattr(gtsam.noiseModel.mEstimator, cls.__name__).Create(k)
    s = s_grid(k)
    e = s.sqrt().numpy()
    loss = cls(k)
    # GTSAM's Tukey evaluates 1 − (1 − s/k²)³ as written, which loses ~eps·k² to cancellation
    # at tiny s (ours is expanded; test_least_squares_near_zero checks it against s).
    atol = 1e-15 * k * k if cls is Tukey else 1e-300
    np.testing.assert_allclose(0.5 * loss.rho(s).numpy(), [ref.loss(x) for x in e], rtol=1e-12, atol=atol)
    np.testing.assert_allclose(loss.weight(s).numpy(), [ref.weight(x) for x in e], rtol=1e-12, atol=1e-300)


@losses
@pytest.mark.parametrize("k", SCALES)
def test_least_squares_near_zero(cls, k):
    loss = cls(k)
    s = k * k * torch.tensor([1e-300, 1e-16, 1e-12, 1e-9], dtype=torch.float64)
    torch.testing.assert_close(loss.rho(s) / s, torch.ones_like(s), rtol=1e-8, atol=0)
    torch.testing.assert_close(loss.weight(s), torch.ones_like(s), rtol=1e-8, atol=0)
    zero = torch.zeros(3, dtype=torch.float64)
    assert torch.equal(loss.rho(zero), zero) and torch.equal(loss.weight(zero), torch.ones_like(zero))


@losses
def test_weight_is_derivative_of_rho(cls):
    k = 1.3
    s = torch.cat([s_grid(k), torch.linspace(0, 3 * k * k, 101, dtype=torch.float64)]).requires_grad_()
    loss = cls(k)
    (grad,) = torch.autograd.grad(loss.rho(s).sum(), s)
    torch.testing.assert_close(grad, loss.weight(s.detach()), rtol=1e-10, atol=1e-14)


@losses
@pytest.mark.parametrize("where", ["zero", "kink"])
def test_finite_gradients_at_zero_and_kink(cls, where):
    k = torch.tensor([0.7, 1.0, 2.5], dtype=torch.float64, requires_grad=True)
    s0 = torch.zeros(3, dtype=torch.float64) if where == "zero" else k.detach() ** 2
    s = s0.clone().requires_grad_()
    loss = cls(k)
    for fn in (loss.rho, loss.weight):
        value = fn(s)
        grads = torch.autograd.grad(value.sum(), (s, k), create_graph=True)
        assert torch.isfinite(value).all() and all(torch.isfinite(g).all() for g in grads)
        # Second derivatives too: a learned scale trains through the solver's Jacobians.
        for g in grads:
            assert all(torch.isfinite(h).all() for h in torch.autograd.grad(g.sum(), (s, k), allow_unused=True, retain_graph=True) if h is not None)


@losses
def test_gradcheck_scale_and_s(cls):
    # s away from the kinks (finite differences straddling one would be wrong), 0 included.
    s = torch.tensor([0.0, 0.3, 1.2, 4.0, 30.0], dtype=torch.float64, requires_grad=True)
    k = torch.tensor([0.9, 1.1, 1.5, 1.7, 2.2], dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda k: cls(k).rho(s.detach()), (k,))
    assert torch.autograd.gradcheck(lambda k: cls(k).weight(s.detach()), (k,))
    s_pos = s.detach()[1:].requires_grad_()  # central differences need s > 0
    assert torch.autograd.gradcheck(lambda s, k: cls(k).rho(s), (s_pos, k[1:]))
    assert torch.autograd.gradcheck(lambda s, k: cls(k).weight(s), (s_pos, k[1:]))


@losses
@pytest.mark.parametrize("scale_shape", [(5,), (4, 5), (4, 1)])
def test_per_block_scale_broadcasts(cls, scale_shape):
    g = torch.Generator().manual_seed(0)
    s = 3 * torch.rand(4, 5, generator=g, dtype=torch.float64) ** 2
    k = 0.5 + torch.rand(scale_shape, generator=g, dtype=torch.float64)
    loss = cls(k)
    k_full = k.expand(4, 5)
    for fn in ("rho", "weight"):
        out = getattr(loss, fn)(s)
        assert out.shape == (4, 5)
        expected = torch.stack([getattr(cls(float(kk)), fn)(ss) for ss, kk in zip(s.flatten(), k_full.flatten())])
        torch.testing.assert_close(out.flatten(), expected, rtol=1e-14, atol=0)


def test_float32_follows_s():
    s = torch.tensor([0.0, 1.0, 9.0], dtype=torch.float32)
    for cls in LOSSES:
        assert cls(torch.tensor(2.0, dtype=torch.float64)).rho(s).dtype == torch.float32


@pytest.mark.parametrize(
    "spec, cls, k",
    [("huber:1.345", Huber, 1.345), ("cauchy:0.5", Cauchy, 0.5), ("geman_mcclure:1", GemanMcClure, 1.0),
     ("Geman-McClure:2", GemanMcClure, 2.0), ("TUKEY:4.685", Tukey, 4.685), (" huber : 1e-2 ", Huber, 0.01)],
)
def test_parse_robust(spec, cls, k):
    loss = parse_robust(spec)
    assert type(loss) is cls and loss.scale == k
    assert isinstance(loss, RobustLoss)


@pytest.mark.parametrize(
    "spec, match",
    [("huber", "no ':'"), ("blah:1", "'blah'"), ("huber:abc", "'abc'"), ("huber:", "''"),
     ("huber:1:2", "'1:2'"), ("huber:0", "'0'.*positive"), ("cauchy:-1", "'-1'.*positive"),
     ("tukey:nan", "'nan'.*positive"), ("tukey:inf", "'inf'.*positive")],
)
def test_parse_robust_rejects(spec, match):
    with pytest.raises(ValueError, match=match):
        parse_robust(spec)


def test_scale_validation():
    with pytest.raises(ValueError, match="-1"):
        Huber(torch.tensor([1.0, -1.0]))
    with pytest.raises(ValueError, match="nan"):
        Cauchy(torch.tensor(float("nan")))
    with pytest.raises(ValueError, match="'1'"):
        Tukey("1")  # type: ignore[arg-type]
    Huber(torch.tensor([-1.0], requires_grad=True))  # a network's output: not checked (no sync)
    with pytest.raises(ValueError, match="got 0.0"):
        GemanMcClure(0.0)
    with pytest.raises(dataclasses.FrozenInstanceError):
        Huber(1.0).scale = 2.0  # type: ignore[misc]
