"""Validates the definitions in least_squares_problems.py with scipy, before any solver of ours.

(a) F(x_min) reproduces f_min to the published digits, and f_min agrees with the value as
    MGH print it; other published minima are reproduced where a point is given.
(b) scipy.optimize.least_squares(method="lm") (MINPACK) from x0, with the residuals evaluated
    through the torch function, reaches f_min within f_rtol (F < F_ZERO_ATOL when f_min = 0):
    once with scipy's finite-difference Jacobian and once with the autograd Jacobian.
(c) The autograd Jacobian at x0 matches central finite differences.

F(x) = Σ f_i(x)² throughout (no ½).
"""

from __future__ import annotations

import dataclasses
import math
from decimal import Decimal

import numpy as np
import pytest
import torch
from least_squares_problems import F_ZERO_ATOL, PROBLEMS, Problem, by_name, sum_of_squares
from scipy.optimize import least_squares

IDS = [p.name for p in PROBLEMS]


def _t(x) -> torch.Tensor:
    return torch.as_tensor(np.asarray(x, dtype=np.float64), dtype=torch.float64)


def _F(p: Problem, x) -> float:
    with torch.no_grad():
        return float(sum_of_squares(p, _t(x)))


def _printed_ulp(value: float) -> float:
    """One unit in the last printed digit of a decimal literal (8.21487e-3 -> 1e-8)."""
    return float(Decimal(1).scaleb(Decimal(repr(value)).normalize().as_tuple().exponent))


def _agrees_with_printed(value: float, printed: float) -> bool:
    """value is within one unit of printed's last digit (MGH truncate, some sources round)."""
    if printed == 0.0:
        return abs(value) <= F_ZERO_ATOL
    return abs(value - printed) < _printed_ulp(printed)


# --------------------------------------------------------------------------------------
# The registry itself
# --------------------------------------------------------------------------------------


def test_registry_is_well_formed():
    names = [p.name for p in PROBLEMS]
    assert len(names) == len(set(names))
    for p in PROBLEMS:
        assert p.f_min >= 0.0 and p.f_rtol > 0.0 and p.source
        if p.x_min is not None:
            assert len(p.x_min) == p.n, p.name
        for _, x in p.other_minima:
            assert x is None or len(x) == p.n, p.name
        f = p.residuals(_t(p.x0))
        assert f.dtype == torch.float64 and f.ndim == 1 and f.shape[0] >= p.n, p.name
        assert torch.isfinite(f).all(), p.name
    with pytest.raises(dataclasses.FrozenInstanceError):
        PROBLEMS[0].f_min = 1.0  # type: ignore[misc]


# --------------------------------------------------------------------------------------
# (a) published values
# --------------------------------------------------------------------------------------


@pytest.mark.parametrize("p", PROBLEMS, ids=IDS)
def test_f_at_x_min_matches_f_min(p: Problem):
    if p.x_min is None:
        pytest.skip("the sources print no minimizer")
    F = _F(p, p.x_min)
    if p.f_min == 0.0:
        assert F <= F_ZERO_ATOL, F
    else:
        assert abs(F - p.f_min) <= p.x_min_f_rtol * p.f_min, (F, p.f_min)


@pytest.mark.parametrize("p", [p for p in PROBLEMS if p.f_min_paper is not None],
                         ids=[p.name for p in PROBLEMS if p.f_min_paper is not None])  # fmt: skip
def test_f_min_agrees_with_the_value_as_printed(p: Problem):
    assert _agrees_with_printed(p.f_min, p.f_min_paper), (p.f_min, p.f_min_paper)


_WITH_POINTS = [(p, F, x) for p in PROBLEMS for F, x in p.other_minima if x is not None]


@pytest.mark.parametrize("p, F, x", _WITH_POINTS, ids=[f"{p.name}-{x}" for p, _, x in _WITH_POINTS])
def test_other_published_minima(p: Problem, F: float, x):
    assert _agrees_with_printed(_F(p, x), F), (_F(p, x), F)


def test_bard_minimum_at_infinity():
    # MGH: f = 17.4286... at (0.8406..., -inf, -inf).  There u/(v x2 + w x3) -> 0, so the
    # best x1 is the mean of y, and F -> Σ (y - ȳ)².
    p = by_name("mgh08_bard")
    y = p.residuals(torch.tensor([0.0, -1e300, -1e300], dtype=torch.float64))  # = y
    x1 = float(y.mean())
    assert str(x1).startswith("0.8406")  # MGH: x1 = 0.8406...
    assert _agrees_with_printed(_F(p, [x1, -1e300, -1e300]), 17.4286)


def test_biggs_printed_value_is_the_symmetric_saddle():
    # MGH's f = 5.65565e-3 for Biggs EXP6 (m = 13) is the minimum over x1 = x5, x3 = x6 (the
    # subspace containing x0, where the two exponentials coincide).  Minimize over it.
    p = by_name("mgh18_biggs_exp6")

    def f_sym(z):
        with torch.no_grad():
            return p.residuals(_t([z[0], z[1], z[2], z[3], z[0], z[2]])).numpy()

    x0 = np.array(p.x0)[[0, 1, 2, 3]]
    r = least_squares(f_sym, x0, method="lm", xtol=1e-15, ftol=1e-15, gtol=1e-15, max_nfev=5000)
    F = float(np.sum(r.fun**2))
    assert _agrees_with_printed(F, 5.65565e-3), F
    assert _agrees_with_printed(F, p.other_minima[0][0])
    # ...and it is a saddle of the full problem: breaking the symmetry lowers F.
    z = r.x
    x = np.array([z[0], z[1], z[2], z[3], z[0], z[2]])
    x_broken = x + np.array([-1e-3, 0, 0, 0, 1e-3, 0])
    assert _F(p, x_broken) < F


# --------------------------------------------------------------------------------------
# (b) scipy's MINPACK Levenberg-Marquardt reaches f_min from x0
# --------------------------------------------------------------------------------------

# Each xfail below is a failure of scipy's LM from x0, not of the definition: (a) shows the
# definition reproduces the published minimum, and the reason says what LM does instead.
_BOXBOD = (
    "NIST BoxBOD, Start 1 (1, 1): MINPACK LM's first step (initial trust radius "
    "factor*|D x0| with factor = 100, not exposed by least_squares) jumps to b2 ~ 90, where "
    "exp(-b2 x) makes the b2 column of J negligible (~1e-36); F stops on the plateau "
    "9771.5 = Σ(y - ȳ)² (b1 = ȳ = 172.5).  scipy.optimize.leastsq with factor=10 and the "
    "exact Jacobian (Eigen's NIST test also uses factor 10), and least_squares(method='trf'), "
    "reach the certified 1168.0088766"
)
# (problem, jacobian) -> (reason, strict)
XFAIL = {
    ("nist_boxbod", "2-point"): (_BOXBOD, True),
    ("nist_boxbod", "autograd"): (_BOXBOD, True),
    # Not strict: the outcome is not reproducible.  Seen in a fresh process: stops after 3
    # evaluations at F = 0.6474 (status 4); after other least_squares runs in the same process
    # (as under pytest), the identical call reaches F = 0 at (1, 10, 1, 5, 4, 3).
    ("mgh18_biggs_exp6", "autograd"): (
        "Biggs EXP6 with the exact Jacobian: at x0 (x1 = x5, x3 = x6) J has two pairs of "
        "bitwise identical/proportional columns (rank 4 of 6), and MINPACK lmder's path on an "
        "exactly rank-deficient J depends on process state: sometimes it moves only x3 and "
        "stops after 3 evaluations at F = 0.647 (status 4), sometimes it reaches F = 0.  The "
        "finite-difference run (rounding noise breaks the tie) reached F = 0 in every run made",
        False,
    ),
}

JACOBIANS = ["2-point", "autograd"]


def _scipy_lm(p: Problem, jac: str):
    def fun(x):
        with torch.no_grad():
            return p.residuals(_t(x)).numpy()

    jacrev = torch.func.jacrev(p.residuals)

    def jac_autograd(x):
        return jacrev(_t(x)).detach().numpy()

    return least_squares(
        fun,
        np.array(p.x0, dtype=np.float64),
        jac=jac_autograd if jac == "autograd" else "2-point",
        method="lm",
        xtol=1e-15,
        ftol=1e-15,
        gtol=1e-15,
        max_nfev=20000,
    )


def _cases_b():
    for p in PROBLEMS:
        for jac in JACOBIANS:
            xfail = XFAIL.get((p.name, jac))
            marks = [pytest.mark.xfail(reason=xfail[0], strict=xfail[1])] if xfail else []
            yield pytest.param(p, jac, marks=marks, id=f"{p.name}-{jac}")


@pytest.mark.parametrize("p, jac", list(_cases_b()))
def test_scipy_lm_reaches_f_min_from_x0(p: Problem, jac: str):
    r = _scipy_lm(p, jac)
    F = float(np.sum(r.fun**2))
    assert np.isclose(F, _F(p, r.x), rtol=1e-12, atol=1e-300)  # scipy's f is our F
    if p.f_min == 0.0:
        assert F < F_ZERO_ATOL, f"F = {F!r} at {r.x} (status {r.status}, {r.nfev} evaluations)"
    else:
        rel = abs(F - p.f_min) / p.f_min
        assert rel <= p.f_rtol, (
            f"F = {F!r}, f_min = {p.f_min!r}, rel {rel:.2e} > {p.f_rtol:.0e} at {r.x} "
            f"(status {r.status}, {r.nfev} evaluations)"
        )


# --------------------------------------------------------------------------------------
# (c) autograd Jacobian vs central differences at x0
# --------------------------------------------------------------------------------------


@pytest.mark.parametrize("p", PROBLEMS, ids=IDS)
def test_autograd_jacobian_matches_central_differences(p: Problem):
    x0 = _t(p.x0)
    J = torch.func.jacrev(p.residuals)(x0)
    assert J.shape == (p.residuals(x0).shape[0], p.n)
    J_fd = torch.empty_like(J)
    with torch.no_grad():
        for j in range(p.n):
            h = np.finfo(np.float64).eps ** (1 / 3) * (abs(p.x0[j]) or 1.0)
            e = torch.zeros_like(x0)
            e[j] = h
            J_fd[:, j] = (p.residuals(x0 + e) - p.residuals(x0 - e)) / (2 * h)
    # Central differences are good to ~eps^(2/3) ≈ 4e-11 relative to each column's scale.
    scale = J.abs().amax(dim=0, keepdim=True).clamp_min(1e-300)
    err = ((J - J_fd).abs() / scale).max().item()
    assert err < 1e-6, err
    assert math.isfinite(err)
