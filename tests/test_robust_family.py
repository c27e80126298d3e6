"""Every robust kernel (GTSAM's and Ceres' union, and Barron's adaptive loss): ρ and ρ' against
closed forms written here (mpmath), ρ' = autograd and differences of ρ, GTSAM's mEstimator, safe
gradients, the problem's IRLS gradient, Barron's limits and its shape α learned through a solve."""

import math

import mpmath
import numpy as np
import pytest
import torch

import slam
from liegeo import SE2
from slam.costs import Between
from slam.robust import (DCS, Arctan, Barron, Cauchy, Fair, GemanMcClure, Huber, L2WithDeadZone, PseudoHuber,
                         Tolerant, TruncatedLeastSquares, Tukey, Welsch, _LOSSES, parse_robust, robust_spec)

K = 1.3


@pytest.fixture(autouse=True)
def _forty_digits():
    """mpmath at 40 digits for these tests only (a module-level ``mp.dps =`` would change every later
    module's precision: tests/test_liegeo_numerics.py needs 100)."""
    with mpmath.workdps(40):
        yield


def _mp(fn):
    return lambda s, k: fn(mpmath.mpf(s), mpmath.mpf(k))


def _barron_mp(alpha):
    def rho(s, c):
        z = s / c**2
        if alpha == 2:
            return s
        if alpha == 0:
            return 2 * c**2 * mpmath.log(z / 2 + 1)
        b = abs(mpmath.mpf(alpha) - 2)
        return 2 * c**2 * b / alpha * ((z / b + 1) ** (mpmath.mpf(alpha) / 2) - 1)
    return rho


# name -> (constructor of k, closed-form ρ(s, k) in mpmath, kinks on s as a function of k)
CLOSED = {
    "huber": (Huber, lambda s, k: s if s <= k * k else 2 * k * mpmath.sqrt(s) - k * k, lambda k: [k * k]),
    "cauchy": (Cauchy, lambda s, k: k * k * mpmath.log(1 + s / k**2), lambda k: []),
    "geman_mcclure": (GemanMcClure, lambda s, k: k * k * s / (k * k + s), lambda k: []),
    "tukey": (Tukey, lambda s, k: k * k / 3 * (1 - (1 - s / k**2) ** 3) if s <= k * k else k * k / 3, lambda k: [k * k]),
    "fair": (Fair, lambda s, k: 2 * k * k * (mpmath.sqrt(s) / k - mpmath.log(1 + mpmath.sqrt(s) / k)), lambda k: [0.0]),
    "welsch": (Welsch, lambda s, k: k * k * (1 - mpmath.exp(-s / k**2)), lambda k: []),
    "dcs": (DCS, lambda s, k: s if s <= k * k else k * k * (3 * s - k * k) / (k * k + s), lambda k: [k * k]),
    "dead_zone": (L2WithDeadZone, lambda s, k: max(mpmath.sqrt(s) - k, 0) ** 2, lambda k: [k * k]),
    "truncated": (TruncatedLeastSquares, lambda s, k: min(s, k * k), lambda k: [k * k]),
    "pseudo_huber": (PseudoHuber, lambda s, k: 2 * k * k * (mpmath.sqrt(1 + s / k**2) - 1), lambda k: []),
    "arctan": (Arctan, lambda s, k: k * k * mpmath.atan(s / k**2), lambda k: []),
    "tolerant": (lambda k: Tolerant(k, 0.7),
                 lambda s, a: 0.7 * mpmath.log(1 + mpmath.exp((s - a) / 0.7)) - 0.7 * mpmath.log(1 + mpmath.exp(-a / 0.7)),
                 lambda k: []),
    "barron_1.5": (lambda k: Barron(k, 1.5), _barron_mp(1.5), lambda k: []),
    "barron_0": (lambda k: Barron(k, 0.0), _barron_mp(0), lambda k: []),
    "barron_-3": (lambda k: Barron(k, -3.0), _barron_mp(-3.0), lambda k: []),
    "barron_2": (lambda k: Barron(k, 2.0), _barron_mp(2), lambda k: []),
    "barron_4": (lambda k: Barron(k, 4.0), _barron_mp(4.0), lambda k: []),
}
kernels = pytest.mark.parametrize("name", sorted(CLOSED))
NOT_LS_AT_ZERO = {"dead_zone", "tolerant"}


def grid(k):
    e = k * np.array([1e-6, 1e-3, 0.05, 0.3, 0.7, 0.99, 1.01, 1.5, 2.0, 5.0, 30.0, 1e3])
    return torch.tensor(e * e, dtype=torch.float64)


def smooth_grid(name, k):
    """Points at least 1% away from every kink (central differences straddling one are wrong)."""
    kinks = CLOSED[name][2](k)
    s = grid(k)
    return s[[all(abs(float(x) - q) > 0.01 * max(q, 1e-3) for q in kinks) for x in s]]


@kernels
@pytest.mark.parametrize("k", [0.4, K, 3.0])
def test_rho_and_weight_match_closed_form(name, k):
    make, closed, _ = CLOSED[name]
    loss, s = make(k), grid(k)
    fn = _mp(closed)
    expected_rho = [float(fn(x, k)) for x in s.tolist()]
    np.testing.assert_allclose(loss.rho(s).numpy(), expected_rho, rtol=1e-11, atol=1e-300)
    s_smooth = smooth_grid(name, k)
    expected_w = [float(mpmath.diff(lambda t: fn(t, k), mpmath.mpf(x))) for x in s_smooth.tolist()]
    np.testing.assert_allclose(loss.weight(s_smooth).numpy(), expected_w, rtol=1e-9, atol=1e-14)


@kernels
def test_zero(name):
    loss = CLOSED[name][0](K)
    zero = torch.zeros(2, dtype=torch.float64)
    assert torch.equal(loss.rho(zero), zero)
    if name not in NOT_LS_AT_ZERO:
        torch.testing.assert_close(loss.weight(zero), torch.ones_like(zero), rtol=1e-12, atol=0)
        tiny = torch.tensor([1e-300, 1e-20, 1e-14], dtype=torch.float64)
        torch.testing.assert_close(loss.rho(tiny) / tiny, torch.ones_like(tiny), rtol=1e-6, atol=0)


@kernels
def test_weight_is_autograd_and_differences_of_rho(name):
    loss = CLOSED[name][0](K)
    s = smooth_grid(name, K).requires_grad_()
    (grad,) = torch.autograd.grad(loss.rho(s).sum(), s)
    torch.testing.assert_close(grad, loss.weight(s.detach()), rtol=1e-10, atol=1e-14)
    x = s.detach()
    h = 1e-6 * torch.clamp(x, min=1e-6)
    central = (loss.rho(x + h) - loss.rho(x - h)) / (2 * h)
    torch.testing.assert_close(central, loss.weight(x), rtol=1e-6, atol=1e-9)
    # and ρ' at s = 0 (one-sided): ρ'(0⁺)
    if name not in ("fair",):
        zero = torch.zeros(1, dtype=torch.float64, requires_grad=True)
        (g0,) = torch.autograd.grad(loss.rho(zero).sum(), zero)
        torch.testing.assert_close(g0, loss.weight(zero.detach()), rtol=1e-12, atol=1e-15)


def _tensor_loss(name, k):
    if name == "tolerant":
        return Tolerant(k, 0.5 * k)
    if name.startswith("barron"):
        return Barron(k, torch.full_like(k, float(name.split("_")[1])))
    return CLOSED[name][0](k)


@kernels
@pytest.mark.parametrize("where", ["zero", "kink"])
def test_finite_gradients_with_tensor_scale(name, where):
    k = torch.tensor([0.7, 1.0, 2.5], dtype=torch.float64, requires_grad=True)
    loss = _tensor_loss(name, k)
    s0 = torch.zeros(3, dtype=torch.float64) if where == "zero" else k.detach() ** 2
    s = s0.clone().requires_grad_()
    for fn in (loss.rho, loss.weight):
        value = fn(s)
        assert torch.isfinite(value).all()
        if not value.requires_grad:  # piecewise-constant weights (truncated): nothing to differentiate
            continue
        grads = torch.autograd.grad(value.sum(), (s, k), create_graph=True, allow_unused=True)
        assert torch.isfinite(value).all() and all(g is None or torch.isfinite(g).all() for g in grads), (fn, grads)
        for g in grads:
            if g is not None and g.requires_grad:
                second = torch.autograd.grad(g.sum(), (s, k), allow_unused=True, retain_graph=True)
                assert all(h is None or torch.isfinite(h).all() for h in second)


@kernels
def test_gradcheck_tensor_scale(name):
    s = torch.tensor([0.3, 1.2, 4.0, 30.0], dtype=torch.float64)
    k = torch.tensor([0.9, 1.4, 1.7, 2.2], dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda k: _tensor_loss(name, k).rho(s), (k,))
    assert torch.autograd.gradcheck(lambda k: _tensor_loss(name, k).weight(s), (k,))


GTSAM = {"huber": "Huber", "cauchy": "Cauchy", "geman_mcclure": "GemanMcClure", "tukey": "Tukey", "fair": "Fair",
         "welsch": "Welsch", "dcs": "DCS", "dead_zone": "L2WithDeadZone", "truncated": "TruncatedLeastSquares"}


@pytest.mark.parametrize("name", sorted(GTSAM))
@pytest.mark.parametrize("k", [0.5, K, 4.685])
def test_matches_gtsam(name, k):
    gtsam = pytest.importorskip("gtsam")
    cls = getattr(gtsam.noiseModel.mEstimator, GTSAM[name], None)
    if cls is None:
        pytest.skip(f"this GTSAM has no mEstimator.{GTSAM[name]}")
    ref = cls.Create(k * k if name == "dcs" else k)  # GTSAM's DCS Φ is on e², ours on e
    loss = CLOSED[name][0](k)
    s = smooth_grid(name, k)
    e = s.sqrt().numpy()
    atol = 1e-14 * k * k  # GTSAM evaluates some forms as written (cancellation at tiny s)
    np.testing.assert_allclose(0.5 * loss.rho(s).numpy(), [ref.loss(x) for x in e], rtol=1e-10, atol=atol)
    np.testing.assert_allclose(loss.weight(s).numpy(), [ref.weight(x) for x in e], rtol=1e-10, atol=1e-14)


@pytest.mark.parametrize("c", [0.5, 2.0])
def test_barron_limits(c):
    s = grid(c)
    close = lambda a, b, rtol=1e-12: torch.testing.assert_close(a, b, rtol=rtol, atol=1e-300)  # noqa: E731
    close(Barron(c, 2.0).rho(s), s)
    close(Barron(c, 2.0).weight(s), torch.ones_like(s))
    for alpha, ref, rtol in [(0.0, Cauchy(math.sqrt(2) * c), 1e-12), (-2.0, GemanMcClure(2 * c), 1e-12),
                             (1.0, PseudoHuber(c), 1e-12), (-1e13, Welsch(math.sqrt(2) * c), 1e-7)]:
        close(Barron(c, alpha).rho(s), ref.rho(s), rtol)
        close(Barron(c, alpha).weight(s), ref.weight(s), rtol)
    # continuous through α = 0 and α = 2 (series / floor there, no NaN)
    for a0 in (0.0, 2.0):
        for d in (1e-9, 1e-7):  # (near α = 2 the true change is ~ z δ log(z/δ): no looser δ)
            close(Barron(c, a0 + d).rho(s), Barron(c, a0).rho(s), 1e-5)
            close(Barron(c, a0 - d).rho(s), Barron(c, a0).rho(s), 1e-5)


def test_barron_alpha_gradients():
    s = torch.tensor([0.0, 0.3, 1.2, 4.0, 30.0], dtype=torch.float64)
    for a0 in (-4.0, -1.0, 0.0, 0.5, 1.0, 3.0):
        alpha = torch.full((5,), a0, dtype=torch.float64, requires_grad=True)
        c = torch.full((5,), 1.1, dtype=torch.float64, requires_grad=True)
        assert torch.autograd.gradcheck(lambda a, c: Barron(c, a).rho(s), (alpha, c))
        assert torch.autograd.gradcheck(lambda a, c: Barron(c, a).weight(s), (alpha, c))
    alpha = torch.tensor(2.0, dtype=torch.float64, requires_grad=True)  # infinite true slope: finite here
    (g,) = torch.autograd.grad(Barron(1.0, alpha).rho(s).sum(), alpha)
    assert torch.isfinite(g)


def _problem(loss, generator, noise=0.5):
    truth = SE2.exp(torch.randn(5, 3, generator=generator, dtype=torch.float64))
    i = torch.tensor([0, 1, 2, 3, 0, 1])
    j = torch.tensor([1, 2, 3, 4, 2, 4])
    z = truth[i].between(truth[j]).retract(noise * torch.randn(len(i), 3, generator=generator, dtype=torch.float64))
    init = truth.retract(0.3 * torch.randn(5, 3, generator=generator, dtype=torch.float64))
    return init, i, j, z


@kernels
def test_irls_gradient_is_gradient_of_cost(name, generator):
    init, i, j, z = _problem(None, generator)
    poses = slam.Variable(init, fixed=[0])
    plain = slam.Problem([Between(poses[i], poses[j], measurement=z)])
    norms = plain.residuals(plain.initial_values())[0].norm(dim=-1)
    middle = norms.flatten().sort().values[2:4]
    k = float(middle.mean())  # between the middle residual norms: instances inside and outside, none at a kink
    problem = slam.Problem([Between(poses[i], poses[j], measurement=z, loss=CLOSED[name][0](k))])
    values = problem.initial_values()
    g, total = problem.gradient(values)
    delta = torch.zeros_like(g, requires_grad=True)
    cost = problem.cost(problem.retract(values, delta))
    torch.testing.assert_close(cost.detach(), total.detach(), rtol=1e-12, atol=0)
    (autograd,) = torch.autograd.grad(cost.sum(), delta)
    assert autograd.abs().max() > 0
    torch.testing.assert_close(g, autograd, rtol=1e-9, atol=1e-11)


TIGHT = slam.LevenbergMarquardt(max_iterations=200, function_tolerance=0.0, parameter_tolerance=1e-15,
                                gradient_tolerance=1e-13)


def test_barron_alpha_learned_through_solve(generator):
    init, i, j, z = _problem(None, generator, noise=0.4)
    target = torch.randn(5, 3, generator=generator, dtype=torch.float64)

    def outer(alpha, scale):
        poses = slam.Variable(init, fixed=[0])
        cost = Between(poses[i], poses[j], measurement=z, loss=Barron(scale, alpha))
        return (slam.solve(slam.Problem([cost]), TIGHT, slam.Implicit())[poses].log() * target).sum()

    for a0 in (0.5, -1.0):
        alpha = torch.tensor(a0, dtype=torch.float64, requires_grad=True)
        scale = torch.tensor(0.5, dtype=torch.float64, requires_grad=True)
        ga, gc = torch.autograd.grad(outer(alpha, scale), (alpha, scale))

        def fd(fn, x, h=1e-3):
            with torch.no_grad():
                d = lambda h: (fn(x + h) - fn(x - h)) / (2 * h)  # noqa: E731
                return (4 * d(h / 2) - d(h)) / 3

        fa = fd(lambda a: outer(a, scale.detach()), alpha.detach())
        fc = fd(lambda c: outer(alpha.detach(), c), scale.detach())
        assert abs(fa) > 1e-6
        assert abs(ga - fa) <= 1e-4 * abs(fa), (a0, ga, fa)
        assert abs(gc - fc) <= 1e-4 * abs(fc), (a0, gc, fc)


SPECS = [("welsch:1", Welsch(1.0)), ("fair:2", Fair(2.0)), ("DCS:0.5", DCS(0.5)), ("dead_zone:0.1", L2WithDeadZone(0.1)),
         ("l2-dead-zone:0.1", L2WithDeadZone(0.1)), ("truncated:3", TruncatedLeastSquares(3.0)),
         ("soft_l1:1", PseudoHuber(1.0)), ("pseudo-huber:1", PseudoHuber(1.0)), ("arctan:2", Arctan(2.0)),
         ("tolerant:0,1", Tolerant(0.0, 1.0)), ("tolerant:2.5,0.5", Tolerant(2.5, 0.5)),
         ("barron:1,0.5", Barron(1.0, 0.5)), ("barron: 2 , -3", Barron(2.0, -3.0))]


@pytest.mark.parametrize("spec, expected", SPECS, ids=[s for s, _ in SPECS])
def test_parse_and_round_trip(spec, expected):
    loss = parse_robust(spec)
    assert loss == expected
    assert parse_robust(robust_spec(loss)) == loss


@pytest.mark.parametrize("spec, match", [("barron:1", "SCALE,ALPHA"), ("tolerant:1", "SCALE,WIDTH"),
                                         ("welsch:1,2", "one number"), ("tolerant:-1,1", "non-negative"),
                                         ("tolerant:1,0", "width '0'"), ("barron:1,inf", "alpha 'inf'"),
                                         ("barron:0,1", "'0'.*positive"), ("barron:1,x", "'x'")])
def test_parse_rejects(spec, match):
    with pytest.raises(ValueError, match=match):
        parse_robust(spec)


def test_every_kernel_registered_and_in_help():
    assert set(_LOSSES) >= {"huber", "cauchy", "geman_mcclure", "tukey", "fair", "welsch", "dcs", "dead_zone",
                            "pseudo_huber", "soft_l1", "arctan", "tolerant", "barron"}
    from slam.cli import build_parser
    sub = next(a for a in build_parser()._actions if a.dest == "command").choices["pgo"]
    text = next(a for a in sub._actions if a.dest == "robust").help
    assert all(kernel in text for kernel in _LOSSES), text
    assert robust_spec(Barron(torch.tensor(1.0), 0.5)).startswith("Barron(")


@pytest.mark.parametrize("spec", ["welsch:1", "barron:1,0.5"])
def test_cli_pgo_runs(spec, tmp_path):
    from slam import data
    from slam.cli import main
    code = main(["pgo", str(data.path("tinyGrid3D.g2o")), "--robust", spec, "--max-iterations", "5",
                 "--output-dir", str(tmp_path), "-q"])
    assert code == 0
    assert spec.split(":")[0] in (tmp_path / "tinyGrid3D.json").read_text()
