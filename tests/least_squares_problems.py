"""Classic hard nonlinear least-squares test problems, with their published minima.

Two collections, each problem written exactly as in its source:

* Moré, Garbow & Hillstrom, "Testing unconstrained optimization software", ACM TOMS 7(1),
  17-41, 1981 ("MGH"), problems 1-10 and 12-19.  The residuals and standard starting points
  were checked against the authors' own Fortran (MINPACK-1 ``ssqfcn``/``initpt``, Argonne
  1980, as kept in fortran-lang/minpack ``test/test_lmder.f90``) where the problem is there.
  MGH print minima to six significant digits ("f = 8.21487...10^-3"); where the GNU
  Scientific Library's test suite (``multifit_nlinear/test_<name>.c``) records the same
  minimum and minimizer to ~16 digits, ``f_min``/``x_min`` take those digits and
  ``f_min_paper`` keeps the value as MGH print it (a test checks that the two agree).
* NIST StRD nonlinear regression (https://www.itl.nist.gov/div898/strd/nls/nls_main.shtml):
  data typed in from the ``.dat`` files, NIST's "Start 1" as ``x0``, and the certified
  residual sum of squares and parameters (11 significant digits) as ``f_min``/``x_min``.

Conventions
-----------
``F(x) = Σ f_i(x)²`` with **no** factor ½, as in MGH and as NIST's "residual sum of
squares".  ``slam.least_squares`` reports ``½ Σ f²``; compare ``2 * cost`` with ``f_min``.

``residuals(x)`` takes a 1-D float64 tensor of shape ``(n,)`` and returns ``(m,)``, using
torch operations only, so autograd (and ``torch.func.jacrev``) works through it.  Data
tensors are made with ``x.new_tensor`` so they follow ``x``'s dtype and device.

``f_rtol`` is the relative accuracy to which a good Levenberg-Marquardt solver reaches
``f_min`` from ``x0``; for ``f_min == 0`` use the absolute floor ``F_ZERO_ATOL`` instead.
``x_min_f_rtol`` is how closely ``F(x_min)`` reproduces ``f_min`` given the digits to which
both are published: ~16-digit references agree to 1e-12, NIST's 11-digit certified values to
1e-10 (half a unit in the 11th digit is up to 5e-11 relative).

MGH print six significant digits and mostly truncate ("48.9842..." for 48.98425...);
``f_min_paper`` is checked to agree with ``f_min`` within one unit of its last digit.

Where the standard start leads Levenberg-Marquardt somewhere other than the minimum MGH
print first, ``f_min``/``x_min`` record where LM goes and ``other_minima`` keeps the rest:
Freudenstein & Roth (LM goes to the local minimum 48.98..., the global one is 0 at (5, 4)) and
Biggs EXP6 with m = 13 (MGH print 5.65565e-3, a saddle of the full problem; LM goes on to 0).
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch

__all__ = ["F_ZERO_ATOL", "NIST_STRD", "PROBLEMS", "NistStrd", "Problem", "by_name", "log_relative_error",
           "nist_strd", "sum_of_squares"]

F_ZERO_ATOL = 1e-20
"""Absolute floor on F for problems whose minimum is F = 0."""


@dataclass(frozen=True)
class Problem:
    name: str
    residuals: Callable[[torch.Tensor], torch.Tensor]
    """x: (n,) float64 -> f(x): (m,); torch ops only."""
    x0: tuple[float, ...]
    """The source's standard starting point (NIST: Start 1)."""
    f_min: float
    """Minimum of F(x) = Σ f_i(x)² (no ½) reached from x0; see ``source`` for its origin."""
    x_min: tuple[float, ...] | None
    """Minimizer when a source gives one."""
    source: str
    """Citation for the definition and for f_min / x_min."""
    f_rtol: float = 1e-9
    """Relative tolerance to which a good solver reaches f_min from x0 (F_ZERO_ATOL when 0)."""
    f_min_paper: float | None = None
    """f_min as printed in the primary source, when f_min carries more digits from elsewhere."""
    x_min_f_rtol: float = 1e-12
    """Relative agreement of F(x_min) with f_min, limited by the digits published for x_min."""
    other_minima: tuple[tuple[float, tuple[float, ...] | None], ...] = ()
    """(F, x or None) of other minima the sources publish (global ones the standard start
    does not lead to, local ones, ones at infinity): a solver that stops at one of these has
    found a genuine stationary value, not a wrong one.  F as printed in the source."""

    @property
    def n(self) -> int:
        return len(self.x0)


def sum_of_squares(problem: Problem, x: torch.Tensor) -> torch.Tensor:
    """F(x) = Σ f_i(x)² (no ½)."""
    f = problem.residuals(x)
    return (f * f).sum()


def _arange1(x: torch.Tensor, m: int) -> torch.Tensor:
    """i = 1, ..., m as a tensor like x."""
    return torch.arange(1, m + 1, dtype=x.dtype, device=x.device)


# --------------------------------------------------------------------------------------
# Moré, Garbow & Hillstrom (1981)
# --------------------------------------------------------------------------------------

_MGH = 'Moré, Garbow & Hillstrom (1981), "Testing unconstrained optimization software", ACM TOMS 7(1)'
_GSL = "GNU GSL multifit_nlinear/test_{}.c"
_MINPACK = "MINPACK-1 ssqfcn/initpt (Argonne 1980; fortran-lang/minpack test/test_lmder.f90)"


def _rosenbrock(x: torch.Tensor) -> torch.Tensor:
    x1, x2 = x[0], x[1]
    return torch.stack([10.0 * (x2 - x1**2), 1.0 - x1])


def _freudenstein_roth(x: torch.Tensor) -> torch.Tensor:
    x1, x2 = x[0], x[1]
    return torch.stack(
        [
            -13.0 + x1 + ((5.0 - x2) * x2 - 2.0) * x2,
            -29.0 + x1 + ((x2 + 1.0) * x2 - 14.0) * x2,
        ]
    )


def _powell_badly_scaled(x: torch.Tensor) -> torch.Tensor:
    x1, x2 = x[0], x[1]
    return torch.stack([1e4 * x1 * x2 - 1.0, torch.exp(-x1) + torch.exp(-x2) - 1.0001])


def _brown_badly_scaled(x: torch.Tensor) -> torch.Tensor:
    x1, x2 = x[0], x[1]
    return torch.stack([x1 - 1e6, x2 - 2e-6, x1 * x2 - 2.0])


def _beale(x: torch.Tensor) -> torch.Tensor:
    x1, x2 = x[0], x[1]
    y = x.new_tensor([1.5, 2.25, 2.625])
    i = _arange1(x, 3)
    return y - x1 * (1.0 - x2**i)


def _jennrich_sampson(x: torch.Tensor) -> torch.Tensor:
    i = _arange1(x, 10)  # m = 10
    return 2.0 + 2.0 * i - (torch.exp(i * x[0]) + torch.exp(i * x[1]))


def _helical_valley(x: torch.Tensor) -> torch.Tensor:
    x1, x2, x3 = x[0], x[1], x[2]
    # θ = atan(x2/x1)/(2π), + 1/2 when x1 < 0.  At x1 = 0, atan(±inf) gives the ±1/4 that
    # MINPACK's sign(0.25, x2) gives; the origin itself is outside the domain.
    theta = torch.atan(x2 / x1) / (2.0 * math.pi) + torch.where(x1 < 0, 0.5, 0.0)
    return torch.stack(
        [10.0 * (x3 - 10.0 * theta), 10.0 * (torch.sqrt(x1**2 + x2**2) - 1.0), x3]
    )


_BARD_Y = (0.14, 0.18, 0.22, 0.25, 0.29, 0.32, 0.35, 0.39,
           0.37, 0.58, 0.73, 0.96, 1.34, 2.10, 4.39)  # fmt: skip


def _bard(x: torch.Tensor) -> torch.Tensor:
    u = _arange1(x, 15)
    v = 16.0 - u
    w = torch.minimum(u, v)
    y = x.new_tensor(_BARD_Y)
    return y - (x[0] + u / (v * x[1] + w * x[2]))


_GAUSSIAN_Y = (0.0009, 0.0044, 0.0175, 0.0540, 0.1295, 0.2420, 0.3521, 0.3989,
               0.3521, 0.2420, 0.1295, 0.0540, 0.0175, 0.0044, 0.0009)  # fmt: skip


def _gaussian(x: torch.Tensor) -> torch.Tensor:
    t = (8.0 - _arange1(x, 15)) / 2.0
    y = x.new_tensor(_GAUSSIAN_Y)
    return x[0] * torch.exp(-x[1] * (t - x[2]) ** 2 / 2.0) - y


_MEYER_Y = (34780.0, 28610.0, 23650.0, 19630.0, 16370.0, 13720.0, 11540.0, 9744.0,
            8261.0, 7030.0, 6005.0, 5147.0, 4427.0, 3820.0, 3307.0, 2872.0)  # fmt: skip


def _meyer(x: torch.Tensor) -> torch.Tensor:
    t = 45.0 + 5.0 * _arange1(x, 16)
    y = x.new_tensor(_MEYER_Y)
    return x[0] * torch.exp(x[1] / (t + x[2])) - y


def _box_3d(x: torch.Tensor) -> torch.Tensor:
    t = 0.1 * _arange1(x, 10)  # m = 10
    return (
        torch.exp(-t * x[0])
        - torch.exp(-t * x[1])
        - x[2] * (torch.exp(-t) - torch.exp(-10.0 * t))
    )


def _powell_singular(x: torch.Tensor) -> torch.Tensor:
    x1, x2, x3, x4 = x[0], x[1], x[2], x[3]
    return torch.stack(
        [
            x1 + 10.0 * x2,
            math.sqrt(5.0) * (x3 - x4),
            (x2 - 2.0 * x3) ** 2,
            math.sqrt(10.0) * (x1 - x4) ** 2,
        ]
    )


def _wood(x: torch.Tensor) -> torch.Tensor:
    x1, x2, x3, x4 = x[0], x[1], x[2], x[3]
    return torch.stack(
        [
            10.0 * (x2 - x1**2),
            1.0 - x1,
            math.sqrt(90.0) * (x4 - x3**2),
            1.0 - x3,
            math.sqrt(10.0) * (x2 + x4 - 2.0),
            (x2 - x4) / math.sqrt(10.0),
        ]
    )


_KOWALIK_Y = (0.1957, 0.1947, 0.1735, 0.1600, 0.0844, 0.0627,
              0.0456, 0.0342, 0.0323, 0.0235, 0.0246)  # fmt: skip
_KOWALIK_U = (4.0, 2.0, 1.0, 0.5, 0.25, 0.167, 0.125, 0.1, 0.0833, 0.0714, 0.0625)


def _kowalik_osborne(x: torch.Tensor) -> torch.Tensor:
    y = x.new_tensor(_KOWALIK_Y)
    u = x.new_tensor(_KOWALIK_U)
    return y - x[0] * (u**2 + u * x[1]) / (u**2 + u * x[2] + x[3])


def _brown_dennis(x: torch.Tensor) -> torch.Tensor:
    t = _arange1(x, 20) / 5.0  # m = 20
    a = x[0] + t * x[1] - torch.exp(t)
    b = x[2] + x[3] * torch.sin(t) - torch.cos(t)
    return a**2 + b**2


_OSBORNE1_Y = (0.844, 0.908, 0.932, 0.936, 0.925, 0.908, 0.881, 0.850, 0.818, 0.784, 0.751,
               0.718, 0.685, 0.658, 0.628, 0.603, 0.580, 0.558, 0.538, 0.522, 0.506, 0.490,
               0.478, 0.467, 0.457, 0.448, 0.438, 0.431, 0.424, 0.420, 0.414, 0.411, 0.406)  # fmt: skip


def _osborne1(x: torch.Tensor) -> torch.Tensor:
    t = 10.0 * (_arange1(x, 33) - 1.0)
    y = x.new_tensor(_OSBORNE1_Y)
    return y - (x[0] + x[1] * torch.exp(-t * x[3]) + x[2] * torch.exp(-t * x[4]))


def _biggs_exp6(x: torch.Tensor) -> torch.Tensor:
    t = 0.1 * _arange1(x, 13)  # m = 13
    y = torch.exp(-t) - 5.0 * torch.exp(-10.0 * t) + 3.0 * torch.exp(-4.0 * t)
    return (
        x[2] * torch.exp(-t * x[0])
        - x[3] * torch.exp(-t * x[1])
        + x[5] * torch.exp(-t * x[4])
        - y
    )


_OSBORNE2_Y = (1.366, 1.191, 1.112, 1.013, 0.991, 0.885, 0.831, 0.847, 0.786, 0.725, 0.746,
               0.679, 0.608, 0.655, 0.616, 0.606, 0.602, 0.626, 0.651, 0.724, 0.649, 0.649,
               0.694, 0.644, 0.624, 0.661, 0.612, 0.558, 0.533, 0.495, 0.500, 0.423, 0.395,
               0.375, 0.372, 0.391, 0.396, 0.405, 0.428, 0.429, 0.523, 0.562, 0.607, 0.653,
               0.672, 0.708, 0.633, 0.668, 0.645, 0.632, 0.591, 0.559, 0.597, 0.625, 0.739,
               0.710, 0.729, 0.720, 0.636, 0.581, 0.428, 0.292, 0.162, 0.098, 0.054)  # fmt: skip


def _osborne2(x: torch.Tensor) -> torch.Tensor:
    t = (_arange1(x, 65) - 1.0) / 10.0
    y = x.new_tensor(_OSBORNE2_Y)
    return y - (
        x[0] * torch.exp(-t * x[4])
        + x[1] * torch.exp(-((t - x[8]) ** 2) * x[5])
        + x[2] * torch.exp(-((t - x[9]) ** 2) * x[6])
        + x[3] * torch.exp(-((t - x[10]) ** 2) * x[7])
    )


MGH_PROBLEMS: list[Problem] = [
    Problem(
        name="mgh01_rosenbrock",
        residuals=_rosenbrock,
        x0=(-1.2, 1.0),
        f_min=0.0,
        x_min=(1.0, 1.0),
        source=f"{_MGH}, problem 1; f = 0 at (1, 1)",
    ),
    Problem(
        name="mgh02_freudenstein_roth",
        residuals=_freudenstein_roth,
        x0=(0.5, -2.0),
        f_min=48.9842536792400,
        x_min=(11.4127789869021, -0.896805253274477),
        source=(
            f"{_MGH}, problem 2: f = 0 at (5, 4) (global) and f = 48.9842... at "
            "(11.41..., -0.8968...) (local).  Levenberg-Marquardt from the standard start goes "
            "to the LOCAL minimum, which is what is recorded here; 15-digit f and x from "
            + _GSL.format("roth")
        ),
        f_min_paper=48.9842,
        other_minima=((0.0, (5.0, 4.0)),),
    ),
    Problem(
        name="mgh03_powell_badly_scaled",
        residuals=_powell_badly_scaled,
        x0=(0.0, 1.0),
        f_min=0.0,
        x_min=(1.09815932969975976e-05, 9.10614673986700218),
        source=(
            f"{_MGH}, problem 3: f = 0 at (1.098...e-5, 9.106...); 18-digit x_min from "
            + _GSL.format("powell3")
        ),
    ),
    Problem(
        name="mgh04_brown_badly_scaled",
        residuals=_brown_badly_scaled,
        x0=(1.0, 1.0),
        f_min=0.0,
        x_min=(1e6, 2e-6),
        source=f"{_MGH}, problem 4: f = 0 at (1e6, 2e-6)",
    ),
    Problem(
        name="mgh05_beale",
        residuals=_beale,
        x0=(1.0, 1.0),
        f_min=0.0,
        x_min=(3.0, 0.5),
        source=f"{_MGH}, problem 5: f = 0 at (3, 0.5)",
    ),
    Problem(
        name="mgh06_jennrich_sampson",
        residuals=_jennrich_sampson,
        x0=(0.3, 0.4),
        f_min=1.243621823556148e02,
        x_min=(2.578252139935855e-01, 2.578252133471426e-01),
        source=(
            f"{_MGH}, problem 6 with m = 10: f = 124.362 at x1 = x2 = 0.2578; 16-digit f and x "
            "from " + _GSL.format("jennrich")
        ),
        f_min_paper=124.362,
    ),
    Problem(
        name="mgh07_helical_valley",
        residuals=_helical_valley,
        x0=(-1.0, 0.0, 0.0),
        f_min=0.0,
        x_min=(1.0, 0.0, 0.0),
        source=f"{_MGH}, problem 7: f = 0 at (1, 0, 0); θ branch as in {_MINPACK}",
    ),
    Problem(
        name="mgh08_bard",
        residuals=_bard,
        x0=(1.0, 1.0, 1.0),
        f_min=8.214877306578963e-03,
        x_min=(8.241055975623580e-02, 1.133036092245175, 2.343695178435405),
        source=(
            f"{_MGH}, problem 8: f = 8.21487e-3 (also f = 17.4286 at (0.8406..., -inf, -inf)); "
            "16-digit f and x from " + _GSL.format("bard")
        ),
        f_min_paper=8.21487e-3,
        other_minima=((17.4286, None),),  # at (0.8406..., -inf, -inf)
    ),
    Problem(
        name="mgh09_gaussian",
        residuals=_gaussian,
        x0=(0.4, 1.0, 0.0),
        f_min=1.12793276961871985e-08,
        x_min=(0.398956137838762825, 1.00001908448786647, 0.0),
        source=(
            f"{_MGH}, problem 9: f = 1.12793e-8; 18-digit f and x from "
            + _GSL.format("gaussian")
        ),
        f_min_paper=1.12793e-8,
    ),
    Problem(
        name="mgh10_meyer",
        residuals=_meyer,
        x0=(0.02, 4000.0, 250.0),
        f_min=8.794585517053883e01,
        x_min=(5.609636471049458e-03, 6.181346346283188e03, 3.452236346240292e02),
        source=(
            f"{_MGH}, problem 10: f = 87.9458; 16-digit f and x from "
            + _GSL.format("meyer")
            + " (NIST StRD MGH10 certifies RSS 8.7945855171E+01 at "
            "(5.6096364710E-03, 6.1813463463E+03, 3.4522363462E+02))"
        ),
        # Hard (exponential fit, parameters spanning six decades, a long curved valley: LM
        # from x0 takes ~130 evaluations) but the minimum itself is well determined.
        f_min_paper=87.9458,
    ),
    Problem(
        name="mgh12_box_3d",
        residuals=_box_3d,
        x0=(0.0, 10.0, 20.0),
        f_min=0.0,
        x_min=(1.0, 10.0, 1.0),
        source=(
            f"{_MGH}, problem 12 with m = 10: f = 0 at (1, 10, 1), (10, 1, -1) and wherever "
            "x1 = x2 with x3 = 0; LM from the standard start reaches (1, 10, 1)"
        ),
        other_minima=((0.0, (10.0, 1.0, -1.0)), (0.0, (2.0, 2.0, 0.0))),
    ),
    Problem(
        name="mgh13_powell_singular",
        residuals=_powell_singular,
        x0=(3.0, -1.0, 0.0, 1.0),
        f_min=0.0,
        x_min=(0.0, 0.0, 0.0, 0.0),
        source=(
            f"{_MGH}, problem 13: f = 0 at the origin, where the Jacobian is singular (rank 2), "
            "so convergence is only linear"
        ),
    ),
    Problem(
        name="mgh14_wood",
        residuals=_wood,
        x0=(-3.0, -1.0, -3.0, -1.0),
        f_min=0.0,
        x_min=(1.0, 1.0, 1.0, 1.0),
        source=f"{_MGH}, problem 14: f = 0 at (1, 1, 1, 1)",
    ),
    Problem(
        name="mgh15_kowalik_osborne",
        residuals=_kowalik_osborne,
        x0=(0.25, 0.39, 0.415, 0.39),
        f_min=3.075056038492370e-04,
        x_min=(
            1.928069345723978e-01,
            1.912823290344599e-01,
            1.230565070690708e-01,
            1.360623308065148e-01,
        ),
        source=(
            f"{_MGH}, problem 15: f = 3.07505e-4 (also f = 1.02734e-3 at (+inf, -14.07..., "
            "-inf, -inf)); 16-digit f and x from " + _GSL.format("kowalik") + " (NIST StRD "
            "MGH09 certifies RSS 3.0750560385E-04)"
        ),
        f_min_paper=3.07505e-4,
        other_minima=((1.02734e-3, None),),  # at (+inf, -14.07..., -inf, -inf)
    ),
    Problem(
        name="mgh16_brown_dennis",
        residuals=_brown_dennis,
        x0=(25.0, 5.0, -5.0, -1.0),
        f_min=8.582220162635628e04,
        x_min=(
            -1.159443990239263e01,
            1.320363005221244e01,
            -4.034395456782477e-01,
            2.367789088597534e-01,
        ),
        source=(
            f"{_MGH}, problem 16 with m = 20: f = 85822.2; x0 = (25, 5, -5, -1) as in "
            f"{_MINPACK}; 16-digit f and x from " + _GSL.format("brown1")
        ),
        f_min_paper=85822.2,
    ),
    Problem(
        name="mgh17_osborne1",
        residuals=_osborne1,
        x0=(0.5, 1.5, -1.0, 0.01, 0.02),
        f_min=5.464894697482687e-05,
        x_min=None,
        source=(
            f"{_MGH}, problem 17: f = 5.46489e-5 (no minimizer printed); 16-digit f from "
            + _GSL.format("osborne")
            + " (MINPACK-2 'exponential fitting', as quoted in scipy's benchmarks/lsq_problems.py, "
            "gives 5.464895e-5)"
        ),
        f_min_paper=5.46489e-5,
    ),
    Problem(
        name="mgh18_biggs_exp6",
        residuals=_biggs_exp6,
        x0=(1.0, 2.0, 1.0, 1.0, 1.0, 1.0),
        f_min=0.0,
        x_min=(1.0, 10.0, 1.0, 5.0, 4.0, 3.0),
        source=(
            f"{_MGH}, problem 18 with m = 13: MGH print f = 5.65565e-3, but the data are "
            "generated by the model, so f = 0 at (1, 10, 1, 5, 4, 3) (and at (4, 10, 3, 5, 1, 1), "
            "the same point with the first and third exponentials swapped) for every m.  "
            "x0 has x1 = x5 and x3 = x6, which makes the two exponentials identical and the "
            "Jacobian rank 4; 5.65565e-3 is the minimum over that symmetric subspace "
            "(checked in tests/test_least_squares_problems.py), a saddle of the full problem.  "
            "scipy.optimize.least_squares(method='lm') from x0 passes it and reaches F = 0, which "
            "is recorded here.  A method whose steps keep x1 = x5, x3 = x6 exactly (exact "
            "Jacobian, step rules symmetric in the two terms) can stop at the saddle instead"
        ),
        other_minima=((5.65565e-3, None),),  # at x1 = x5 ≈ 1.7114, x3 = x6 ≈ 1.1631
    ),
    Problem(
        name="mgh19_osborne2",
        residuals=_osborne2,
        x0=(1.3, 0.65, 0.65, 0.7, 0.6, 3.0, 5.0, 7.0, 2.0, 4.5, 5.5),
        f_min=4.013773629354807e-02,
        x_min=None,
        source=(
            f"{_MGH}, problem 19: f = 4.01377e-2 (no minimizer printed); MINPACK-2 "
            "'Gaussian fitting' (Averick et al. 1992, as quoted in scipy's "
            "benchmarks/lsq_problems.py) gives 4.013772e-2.  The 16-digit f_min "
            "is the value recorded in dune-nonlinopt's Osborne 2 test problem; scipy LM from "
            "x0 reaches it to ~1e-14 relative (tests/test_least_squares_problems.py)"
        ),
        f_min_paper=4.01377e-2,
    ),
]


# --------------------------------------------------------------------------------------
# NIST StRD nonlinear regression
# --------------------------------------------------------------------------------------

_NIST = "NIST StRD nonlinear regression, {} (https://www.itl.nist.gov/div898/strd/nls/data/{}.shtml)"

# Misra1a: y = b1*(1 - exp(-b2*x)), 14 observations, lower difficulty.
_MISRA1A_Y = (10.07, 14.73, 17.94, 23.93, 29.61, 35.18, 40.02,
              44.82, 50.76, 55.05, 61.01, 66.40, 75.47, 81.78)  # fmt: skip
_MISRA1A_X = (77.6, 114.9, 141.1, 190.8, 239.9, 289.0, 332.8,
              378.4, 434.8, 477.3, 536.8, 593.1, 689.1, 760.0)  # fmt: skip


def _misra1a(b: torch.Tensor) -> torch.Tensor:
    x = b.new_tensor(_MISRA1A_X)
    y = b.new_tensor(_MISRA1A_Y)
    return y - b[0] * (1.0 - torch.exp(-b[1] * x))


# MGH09: y = b1*(x**2 + x*b2) / (x**2 + x*b3 + b4), 11 observations, higher difficulty
# (Kowalik & Osborne's data; NIST Start 1 is 100 x MGH's start).
_MGH09_Y = (1.957000e-01, 1.947000e-01, 1.735000e-01, 1.600000e-01, 8.440000e-02,
            6.270000e-02, 4.560000e-02, 3.420000e-02, 3.230000e-02, 2.350000e-02,
            2.460000e-02)  # fmt: skip
_MGH09_X = (4.000000e00, 2.000000e00, 1.000000e00, 5.000000e-01, 2.500000e-01,
            1.670000e-01, 1.250000e-01, 1.000000e-01, 8.330000e-02, 7.140000e-02,
            6.250000e-02)  # fmt: skip


def _nist_mgh09(b: torch.Tensor) -> torch.Tensor:
    x = b.new_tensor(_MGH09_X)
    y = b.new_tensor(_MGH09_Y)
    return y - b[0] * (x**2 + x * b[1]) / (x**2 + x * b[2] + b[3])


# MGH10: y = b1 * exp(b2/(x + b3)), 16 observations, higher difficulty (Meyer's data).
_MGH10_X = tuple(50.0 + 5.0 * k for k in range(16))  # 5.000000E+01 ... 1.250000E+02


def _nist_mgh10(b: torch.Tensor) -> torch.Tensor:
    x = b.new_tensor(_MGH10_X)
    y = b.new_tensor(_MEYER_Y)
    return y - b[0] * torch.exp(b[1] / (x + b[2]))


# Thurber: y = (b1 + b2*x + b3*x**2 + b4*x**3) / (1 + b5*x + b6*x**2 + b7*x**3),
# 37 observations, higher difficulty.
_THURBER_Y = (80.574, 84.248, 87.264, 87.195, 89.076, 89.608, 89.868, 90.101, 92.405,
              95.854, 100.696, 101.060, 401.672, 390.724, 567.534, 635.316, 733.054,
              759.087, 894.206, 990.785, 1090.109, 1080.914, 1122.643, 1178.351, 1260.531,
              1273.514, 1288.339, 1327.543, 1353.863, 1414.509, 1425.208, 1421.384,
              1442.962, 1464.350, 1468.705, 1447.894, 1457.628)  # fmt: skip
_THURBER_X = (-3.067, -2.981, -2.921, -2.912, -2.840, -2.797, -2.702, -2.699, -2.633,
              -2.481, -2.363, -2.322, -1.501, -1.460, -1.274, -1.212, -1.100, -1.046,
              -0.915, -0.714, -0.566, -0.545, -0.400, -0.309, -0.109, -0.103, 0.010,
              0.119, 0.377, 0.790, 0.963, 1.006, 1.115, 1.572, 1.841, 2.047, 2.200)  # fmt: skip


def _thurber(b: torch.Tensor) -> torch.Tensor:
    x = b.new_tensor(_THURBER_X)
    y = b.new_tensor(_THURBER_Y)
    num = b[0] + b[1] * x + b[2] * x**2 + b[3] * x**3
    den = 1.0 + b[4] * x + b[5] * x**2 + b[6] * x**3
    return y - num / den


# BoxBOD: y = b1*(1 - exp(-b2*x)), 6 observations, higher difficulty.
_BOXBOD_Y = (109.0, 149.0, 149.0, 191.0, 213.0, 224.0)
_BOXBOD_X = (1.0, 2.0, 3.0, 5.0, 7.0, 10.0)


def _boxbod(b: torch.Tensor) -> torch.Tensor:
    x = b.new_tensor(_BOXBOD_X)
    y = b.new_tensor(_BOXBOD_Y)
    return y - b[0] * (1.0 - torch.exp(-b[1] * x))


NIST_PROBLEMS: list[Problem] = [
    Problem(
        name="nist_misra1a",
        residuals=_misra1a,
        x0=(500.0, 1e-4),
        f_min=1.2455138894e-01,
        x_min=(2.3894212918e02, 5.5015643181e-04),
        source=_NIST.format("Misra1a", "misra1a") + ", lower difficulty; certified values, Start 1",
        x_min_f_rtol=1e-10,
    ),
    Problem(
        name="nist_mgh09",
        residuals=_nist_mgh09,
        x0=(25.0, 39.0, 41.5, 39.0),
        f_min=3.0750560385e-04,
        x_min=(1.9280693458e-01, 1.9128232873e-01, 1.2305650693e-01, 1.3606233068e-01),
        source=(
            _NIST.format("MGH09", "mgh09")
            + ", higher difficulty; certified values, Start 1 (NIST notes a local minimum "
            "0.00102734 at (+inf, -14.07..., -inf, -inf))"
        ),
        x_min_f_rtol=1e-10,
        other_minima=((1.02734e-3, None),),
    ),
    Problem(
        name="nist_mgh10",
        residuals=_nist_mgh10,
        x0=(2.0, 400000.0, 25000.0),
        f_min=8.7945855171e01,
        x_min=(5.6096364710e-03, 6.1813463463e03, 3.4522363462e02),
        source=_NIST.format("MGH10", "mgh10") + ", higher difficulty; certified values, Start 1",
        x_min_f_rtol=1e-10,
    ),
    Problem(
        name="nist_thurber",
        residuals=_thurber,
        x0=(1000.0, 1000.0, 400.0, 40.0, 0.7, 0.3, 0.03),
        f_min=5.6427082397e03,
        x_min=(
            1.2881396800e03,
            1.4910792535e03,
            5.8323836877e02,
            7.5416644291e01,
            9.6629502864e-01,
            3.9797285797e-01,
            4.9727297349e-02,
        ),
        source=_NIST.format("Thurber", "thurber") + ", higher difficulty; certified values, Start 1",
        x_min_f_rtol=1e-10,
    ),
    Problem(
        name="nist_boxbod",
        residuals=_boxbod,
        x0=(1.0, 1.0),
        f_min=1.1680088766e03,
        x_min=(2.1380940889e02, 5.4723748542e-01),
        source=(
            _NIST.format("BoxBOD", "boxbod")
            + ", higher difficulty; certified values, Start 1.  From (1, 1) MINPACK's LM "
            "(initial step bound 100 |D x0|) jumps to b2 ~ 90, where exp(-b2 x) makes the b2 "
            "column of the Jacobian negligible (~1e-36) and F sits on the plateau "
            "9771.5 = Σ(y - ȳ)² (b1 = ȳ = 172.5); a smaller first step (MINPACK factor 10 with "
            "the exact Jacobian, as in Eigen's NIST test) or scipy's 'trf' reaches the "
            "certified value"
        ),
        x_min_f_rtol=1e-10,
    ),
]

PROBLEMS: list[Problem] = MGH_PROBLEMS + NIST_PROBLEMS


def by_name(name: str) -> Problem:
    for p in PROBLEMS:
        if p.name == name:
            return p
    raise KeyError(name)


# --------------------------------------------------------------------------------------
# The whole NIST StRD nonlinear regression suite, read from the .dat files
# --------------------------------------------------------------------------------------
# tests/data/nist_strd/*.dat are NIST's files unchanged (provenance in the README there).
# The models below are written from each file's "Model:" block; b is (p,), x the file's
# predictor columns as (m,) tensors.  Nelson's model is for log(y) (its certified RSS is on
# that scale), so its response is transformed before the residual is taken.

NIST_STRD_DIR = Path(__file__).resolve().parent / "data" / "nist_strd"

_PI = math.pi


def _exp_class_lanczos(b, x):
    return b[0] * torch.exp(-b[1] * x) + b[2] * torch.exp(-b[3] * x) + b[4] * torch.exp(-b[5] * x)


def _gauss(b, x):
    return (b[0] * torch.exp(-b[1] * x) + b[2] * torch.exp(-((x - b[3]) ** 2) / b[4] ** 2)
            + b[5] * torch.exp(-((x - b[6]) ** 2) / b[7] ** 2))


def _chwirut(b, x):
    return torch.exp(-b[0] * x) / (b[1] + b[2] * x)


def _rational33(b, x):  # Hahn1, Thurber
    return (b[0] + b[1] * x + b[2] * x**2 + b[3] * x**3) / (1.0 + b[4] * x + b[5] * x**2 + b[6] * x**3)


def _enso(b, x):
    w = 2.0 * _PI * x
    return (b[0] + b[1] * torch.cos(w / 12.0) + b[2] * torch.sin(w / 12.0)
            + b[4] * torch.cos(w / b[3]) + b[5] * torch.sin(w / b[3])
            + b[7] * torch.cos(w / b[6]) + b[8] * torch.sin(w / b[6]))


_NIST_MODELS: dict[str, Callable[..., torch.Tensor]] = {
    "Misra1a": lambda b, x: b[0] * (1.0 - torch.exp(-b[1] * x)),
    "Chwirut2": _chwirut,
    "Chwirut1": _chwirut,
    "Lanczos3": _exp_class_lanczos,
    "Gauss1": _gauss,
    "Gauss2": _gauss,
    "DanWood": lambda b, x: b[0] * x ** b[1],
    "Misra1b": lambda b, x: b[0] * (1.0 - (1.0 + b[1] * x / 2.0) ** (-2)),
    "Kirby2": lambda b, x: (b[0] + b[1] * x + b[2] * x**2) / (1.0 + b[3] * x + b[4] * x**2),
    "Hahn1": _rational33,
    "Nelson": lambda b, x1, x2: b[0] - b[1] * x1 * torch.exp(-b[2] * x2),  # models log(y)
    "MGH17": lambda b, x: b[0] + b[1] * torch.exp(-x * b[3]) + b[2] * torch.exp(-x * b[4]),
    "Lanczos1": _exp_class_lanczos,
    "Lanczos2": _exp_class_lanczos,
    "Gauss3": _gauss,
    "Misra1c": lambda b, x: b[0] * (1.0 - (1.0 + 2.0 * b[1] * x) ** (-0.5)),
    "Misra1d": lambda b, x: b[0] * b[1] * x * (1.0 + b[1] * x) ** (-1),
    "Roszman1": lambda b, x: b[0] - b[1] * x - torch.atan(b[2] / (x - b[3])) / _PI,
    "ENSO": _enso,
    "MGH09": lambda b, x: b[0] * (x**2 + x * b[1]) / (x**2 + x * b[2] + b[3]),
    "Thurber": _rational33,
    "BoxBOD": lambda b, x: b[0] * (1.0 - torch.exp(-b[1] * x)),
    "Rat42": lambda b, x: b[0] / (1.0 + torch.exp(b[1] - b[2] * x)),
    "MGH10": lambda b, x: b[0] * torch.exp(b[1] / (x + b[2])),
    "Eckerle4": lambda b, x: (b[0] / b[1]) * torch.exp(-0.5 * ((x - b[2]) / b[1]) ** 2),
    "Rat43": lambda b, x: b[0] / (1.0 + torch.exp(b[1] - b[2] * x)) ** (1.0 / b[3]),
    "Bennett5": lambda b, x: b[0] * (b[1] + x) ** (-1.0 / b[2]),
}
"""NIST's order: lower (Misra1a ... Misra1b), average (Kirby2 ... Roszman1), higher difficulty."""


@dataclass(frozen=True)
class NistStrd:
    """One NIST StRD nonlinear regression problem as its ``.dat`` file states it."""

    name: str
    difficulty: str
    """``"lower"``, ``"average"`` or ``"higher"``, as the file says."""
    starts: tuple[tuple[float, ...], tuple[float, ...]]
    """NIST's Start 1 and Start 2."""
    certified: tuple[float, ...]
    """The certified parameters (11 significant digits)."""
    certified_sd: tuple[float, ...]
    rss: float
    """The certified residual sum of squares Σ r² (no ½)."""
    y: tuple[float, ...]
    x: tuple[tuple[float, ...], ...]
    """The predictor columns (one for all but Nelson, which has two)."""

    def residuals(self, b: torch.Tensor) -> torch.Tensor:
        """(p,) -> (m,): y - f(x; b) (Nelson: log y - f), in b's dtype and device."""
        y = b.new_tensor(self.y)
        if self.name == "Nelson":
            y = torch.log(y)
        return y - _NIST_MODELS[self.name](b, *(b.new_tensor(column) for column in self.x))


_FLOAT = r"[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?"
_PARAMETER = re.compile(rf"^\s*b(\d+)\s*=\s*({_FLOAT})\s+({_FLOAT})\s+({_FLOAT})\s+({_FLOAT})\s*$")


def nist_strd(name: str) -> NistStrd:
    """Parse ``tests/data/nist_strd/<name>.dat`` (NIST's layout: parameters as ``b1 = start1 start2
    certified sd``, ``Residual Sum of Squares:``, the data after the last line starting ``Data:``)."""
    lines = (NIST_STRD_DIR / f"{name}.dat").read_text(encoding="ascii").splitlines()
    parameters = [m.groups() for m in map(_PARAMETER.match, lines) if m]
    assert [int(k) for k, *_ in parameters] == list(range(1, len(parameters) + 1)), name
    columns = list(zip(*(tuple(float(v) for v in fields) for _, *fields in parameters)))
    (rss,) = [float(line.split(":")[1]) for line in lines if line.startswith("Residual Sum of Squares:")]
    (difficulty,) = [line.split()[0].lower() for line in lines if line.strip().endswith("Level of Difficulty")]
    start = max(i for i, line in enumerate(lines) if line.startswith("Data:")) + 1
    rows = [tuple(float(v) for v in line.split()) for line in lines[start:] if line.strip()]
    y, *x = zip(*rows)
    return NistStrd(name=name, difficulty=difficulty, starts=(columns[0], columns[1]), certified=columns[2],
                    certified_sd=columns[3], rss=rss, y=y, x=tuple(x))


NIST_STRD: list[NistStrd] = [nist_strd(name) for name in _NIST_MODELS]
"""The 27 problems in NIST's order (lower, average, higher difficulty)."""


def log_relative_error(x: float, certified: float, digits: float = 11.0) -> float:
    """NIST's LRE = -log10(|x - c| / |c|): the number of digits of c that x reproduces, capped at
    ``digits`` (the certified values carry 11 significant digits) and floored at 0."""
    if not math.isfinite(x):
        return 0.0
    if x == certified:
        return digits
    return min(digits, max(0.0, -math.log10(abs(x - certified) / abs(certified))))
