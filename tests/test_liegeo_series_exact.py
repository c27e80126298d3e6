"""Every small-angle branch is exact to the dtype's rounding, on both sides of every series switch.

References are mpmath with 50 significant digits (more guard digits where a closed form
cancels).  Errors are counted in units of the dtype's machine epsilon ``eps`` (2.2e-16 in
float64, 1.2e-7 in float32), i.e. in ulps of a value in [1, 2):

* the ``_math`` helpers, as functions of the argument ``t = θ²`` they are given: relative error
  at most ``HELPER_ULPS`` = 4 eps (8.9e-16 in float64), absolute instead next to the zeros of
  ``sinc`` (θ = π), ``cos_sqrt`` (θ = π/2) and ``half_cot_half`` (θ = π);
* the group-level results (SO3/SE3 exp and log, SE2.exp(...).matrix(), SE2.log, the right and
  left Jacobians and their inverses) in float64, against references built independently of our
  formulas (``mpmath.expm`` of the hat matrix, ``J_r = Σ (-ad ξ)^k / (k+1)!``, matrix inverses):
  normwise relative error, max |got - ref| / max |ref|, of each block of the output
  (translation and rotation parts, the blocks of a Jacobian), at most
  ``GROUP_ULPS`` = 8 eps (1.8e-15).

The angles cover a dense logarithmic grid from 1e-12 to π, the approach to π (π - 1e-12 ..
π - 1e-3), and each series threshold ± a few ulps (the series is worst just below its switch,
from truncation; the closed form just above, from cancellation).
"""

from __future__ import annotations

import math

import mpmath
import pytest
import torch

from liegeo import SE2, SE3, SO3, _math

DIGITS = 50
HELPER_ULPS = 4.0
GROUP_ULPS = 8.0
DTYPES = [torch.float64, torch.float32]

SERIES = {  # helper -> the series objects whose thresholds it switches at
    "cos_sqrt": [_math._COS],
    "sinc": [_math._SINC],
    "cosc": [_math._COSC],
    "sinc3": [_math._SINC3],
    "cos4": [_math._COS4],
    "q5": [_math._Q5],
    "jinv": [_math._JINV],
    "half_cot_half": [_math._JINV],
}
ZERO_NEAR = {"sinc", "cos_sqrt", "half_cot_half"}  # these vanish in [0, π]: absolute error there


def _neighbours(x: float, dtype: torch.dtype, ulps: int = 4) -> list[float]:
    """``x`` as the dtype rounds it and its ``ulps`` representable neighbours on each side."""
    out, centre = [], torch.tensor(x, dtype=dtype)
    for direction in (-math.inf, math.inf):
        y = centre
        for _ in range(ulps + 1):
            out.append(float(y))
            y = torch.nextafter(y, torch.tensor(direction, dtype=dtype))
    return out


def _angles() -> list[float]:
    """θ from 1e-12 to π: a log grid, fixed points, and the approach to π."""
    grid = torch.logspace(-12, math.log10(math.pi), 120, dtype=torch.float64).tolist()
    fixed = [1e-12, 1e-9, 1e-6, 1e-4, 1e-3, 0.01, 0.1, 0.3, 0.5, 1.0, 1.5, 2.0, 2.5, 3.0]
    near_pi = [math.pi - d for d in (1e-3, 1e-4, 1e-6, 1e-9, 1e-12, 0.0)]
    return grid + fixed + near_pi


def _thresholds(dtype: torch.dtype) -> list[float]:
    """Every series switch in ``t``, now and as it was (0.1, 1, 9), and the zero of ``cos`` (π²/4)."""
    current = {s.threshold(dtype) for series in SERIES.values() for s in series}
    return sorted(current | {0.1, 1.0, 9.0, math.pi**2 / 4})


def _arguments(dtype: torch.dtype) -> torch.Tensor:
    """Arguments ``t = θ²`` of the helpers, as the dtype represents them, plus 0."""
    ts = [0.0] + [th * th for th in _angles()]
    for t in _thresholds(dtype):
        ts += _neighbours(t, dtype)
    return torch.tensor(ts, dtype=torch.float64).to(dtype).unique()


def _guard(t: mpmath.mpf) -> int:
    """Working digits for closed forms that cancel like ``θ⁴``..``θ⁵`` relative to their terms."""
    return DIGITS + 10 + (0 if t >= 1 else int(-3 * mpmath.log10(t)) if t > 0 else 0)


def helper_reference(name: str, t: float) -> mpmath.mpf:
    """The helper's exact value at the (exactly represented) argument ``t = θ²``."""
    t = mpmath.mpf(t)
    if t == 0:
        return {"cos_sqrt": 1, "sinc": 1, "cosc": 0.5, "sinc3": mpmath.mpf(1) / 6, "cos4": mpmath.mpf(1) / 24,
                "q5": mpmath.mpf(1) / 120, "jinv": mpmath.mpf(1) / 12, "half_cot_half": 1}[name]
    with mpmath.workdps(_guard(t)):
        th = mpmath.sqrt(t)
        value = {
            "cos_sqrt": lambda: mpmath.cos(th),
            "sinc": lambda: mpmath.sin(th) / th,
            "cosc": lambda: (1 - mpmath.cos(th)) / t,
            "sinc3": lambda: (th - mpmath.sin(th)) / (t * th),
            "cos4": lambda: (mpmath.cos(th) - 1 + t / 2) / (t * t),
            "q5": lambda: (2 * th - 3 * mpmath.sin(th) + th * mpmath.cos(th)) / (2 * t * t * th),
            "jinv": lambda: (1 - th / 2 * mpmath.cot(th / 2)) / t,
            "half_cot_half": lambda: th / 2 * mpmath.cot(th / 2),
        }[name]()
    return +value


def _helper_errors(name: str, dtype: torch.dtype, one_at_a_time: bool = False) -> list[tuple[float, float]]:
    """``(error in eps, θ)`` at every test argument: all in one tensor (their ``t`` straddle every switch,
    so both branches run and are merged), or one element per call (only the branch it takes runs, the
    series to the terms it needs: ``_math._terms``)."""
    ts = _arguments(dtype)
    helper = getattr(_math, name)
    got = ([float(helper(t.reshape(1))) for t in ts] if one_at_a_time else helper(ts).double().tolist())
    eps, out = torch.finfo(dtype).eps, []
    for t, value in zip(ts.double().tolist(), got):
        ref = helper_reference(name, t)
        scale = max(abs(ref), 1) if name in ZERO_NEAR else abs(ref)
        out.append((float(abs(mpmath.mpf(value) - ref) / scale) / eps, math.sqrt(t)))
    return out


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("name", sorted(SERIES))
def test_helpers_exact_to_rounding(name, dtype):
    with mpmath.workdps(DIGITS):
        errors = _helper_errors(name, dtype)
    worst = max(errors)
    assert worst[0] <= HELPER_ULPS, f"{name} in {dtype}: {worst[0]:.1f} eps at θ = {worst[1]!r}"


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("name", sorted(SERIES))
def test_helpers_exact_to_rounding_on_one_branch(name, dtype):
    with mpmath.workdps(DIGITS):
        errors = _helper_errors(name, dtype, one_at_a_time=True)
    worst = max(errors)
    assert worst[0] <= HELPER_ULPS, f"{name} in {dtype}: {worst[0]:.1f} eps at θ = {worst[1]!r}"


@pytest.mark.parametrize("name", sorted(SERIES))
def test_one_branch_derivatives_equal_the_merged_ones(name):
    """First and second derivatives in ``t`` (autograd, what the implicit backward's double backward
    takes) of the one-branch evaluation, with its shortened series, against the merged evaluation with
    the full series (an argument past the switch appended forces the merge), float64, below every
    switch: within 1e-13 relative to the largest of the two (1e-13 absolute where they vanish)."""
    helper = getattr(_math, name)
    threshold = min(s.threshold(torch.float64) for s in SERIES[name])
    ts = [t for t in _arguments(torch.float64).tolist() if t < threshold]

    def derivatives(t: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        t = t.clone().requires_grad_(True)
        (first,) = torch.autograd.grad(helper(t).sum(), t, create_graph=True)
        (second,) = torch.autograd.grad(first.sum(), t)
        return first.detach(), second

    for t in ts:
        alone = derivatives(torch.tensor([t], dtype=torch.float64))
        merged = derivatives(torch.tensor([t, 10.0 * threshold], dtype=torch.float64))
        for a, m, order in zip(alone, merged, ("first", "second")):
            a, m = float(a[0]), float(m[0])
            assert abs(a - m) <= 1e-13 * max(abs(a), abs(m), 1.0), f"{name}'s {order} derivative at t = {t!r}: {a!r} vs {m!r}"


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
def test_atan_ratio_exact_to_rounding(dtype):
    """``atan2(√y2, x)/√y2`` on unit quaternions (``y2 = sin²(θ/2)``, ``x = cos(θ/2)``) and at its
    series switch ``y2 = threshold · x²`` ± a few ulps, for several ``x``."""
    half = [0.5 * th for th in _angles()]
    y2 = [math.sin(h) ** 2 for h in half] + [0.0]
    x = [math.cos(h) for h in half] + [1.0]
    for x0 in (1.0, 0.75, 1.5):
        for r in _neighbours(_math._ATAN_OVER_X.threshold(dtype) * x0 * x0, dtype):
            y2.append(r)
            x.append(x0)
    y2_t, x_t = torch.tensor(y2, dtype=dtype), torch.tensor(x, dtype=dtype)
    got = _math.atan2_sqrt_over_sqrt(y2_t, x_t).double().tolist()
    eps, worst = torch.finfo(dtype).eps, (0.0, None)
    with mpmath.workdps(DIGITS):
        for a, b, value in zip(y2_t.double().tolist(), x_t.double().tolist(), got):
            a, b = mpmath.mpf(a), mpmath.mpf(b)
            ref = 1 / b if a == 0 else mpmath.atan2(mpmath.sqrt(a), b) / mpmath.sqrt(a)
            worst = max(worst, (float(abs(value - ref) / ref) / eps, (float(a), float(b))))
    assert worst[0] <= HELPER_ULPS, f"{worst[0]:.1f} eps at (y2, x) = {worst[1]}"


# ---------------------------------------------------------------------- group level, float64

def _group_angles() -> list[float]:
    """θ for the group-level checks: a coarser grid, and every switch as the groups reach it
    (``θ² = threshold``, and ``θ²/4 = threshold`` where the half angle is used)."""
    grid = torch.logspace(-12, math.log10(math.pi), 24, dtype=torch.float64).tolist()
    fixed = [1e-9, 1e-6, 1e-3, 0.3, 1.0, 2.0, 3.0] + [math.pi - d for d in (1e-3, 1e-6, 1e-9, 1e-12, 0.0)]
    switches = []
    for t in _thresholds(torch.float64):
        switches += _neighbours(math.sqrt(t), torch.float64, 2) + _neighbours(2 * math.sqrt(t), torch.float64, 2)
    r = _math._ATAN_OVER_X.threshold(torch.float64)  # tan²(θ/2) = r in SO3.log
    switches += _neighbours(2 * math.atan(math.sqrt(r)), torch.float64, 2)
    return sorted({th for th in grid + fixed + switches if 0 < th <= math.pi})


def _mp(x: torch.Tensor) -> mpmath.matrix:
    return mpmath.matrix([[mpmath.mpf(v) for v in row] for row in x.reshape(x.shape[0], -1).tolist()])


def _skew(w) -> mpmath.matrix:
    return mpmath.matrix([[0, -w[2], w[1]], [w[2], 0, -w[0]], [-w[1], w[0], 0]])


def _hat(group, xi) -> mpmath.matrix:
    if group is SO3:
        return _skew(xi)
    if group is SE2:
        return mpmath.matrix([[0, -xi[2], xi[0]], [xi[2], 0, xi[1]], [0, 0, 0]])
    m = mpmath.zeros(4, 4)
    m[:3, :3] = _skew(xi[3:])
    for i in range(3):
        m[i, 3] = xi[i]
    return m


def _vee(group, m) -> list:
    if group is SO3:
        return [m[2, 1], m[0, 2], m[1, 0]]
    if group is SE2:
        return [m[0, 2], m[1, 2], m[1, 0]]
    return [m[0, 3], m[1, 3], m[2, 3], m[2, 1], m[0, 2], m[1, 0]]


def _ad(group, xi) -> mpmath.matrix:
    """``ad ξ``, column by column from ``[ξ^, e_j^]``, so no convention is typed twice."""
    n, x = len(xi), _hat(group, xi)
    out = mpmath.zeros(n, n)
    for j in range(n):
        e = [1 if i == j else 0 for i in range(n)]
        column = _vee(group, x * _hat(group, e) - _hat(group, e) * x)
        for i in range(n):
            out[i, j] = column[i]
    return out


def _phi(a: mpmath.matrix) -> mpmath.matrix:
    """``Σ a^k / (k+1)!`` (``(e^a - 1)/a``), summed to far below the working precision."""
    total, term, k = mpmath.eye(a.rows), mpmath.eye(a.rows), 1
    while True:
        term = term * a / (k + 1)
        total += term
        k += 1
        if mpmath.mnorm(term, 1) < mpmath.mpf(10) ** (-DIGITS - 10):
            return total


def _quaternion(omega) -> list:
    th = mpmath.sqrt(sum(w * w for w in omega))
    half_sinc = mpmath.mpf(1) / 2 if th == 0 else mpmath.sin(th / 2) / th
    return [half_sinc * w for w in omega] + [mpmath.cos(th / 2)]


def _quaternion_log(q) -> list:
    v, w = q[:3], q[3]
    norm = mpmath.sqrt(sum(x * x for x in v))
    sign = -1 if w < 0 else 1
    scale = 2 / abs(w) if norm == 0 else 2 * mpmath.atan2(norm, abs(w)) / norm
    return [sign * scale * x for x in v]


def _tangents(group, generator) -> torch.Tensor:
    """One tangent per angle: random unit axis (SO3, SE3), random sign (SE2), standard normal v."""
    theta = torch.tensor(_group_angles(), dtype=torch.float64)
    n = len(theta)
    if group is SE2:
        sign = torch.where(torch.rand(n, generator=generator, dtype=torch.float64) < 0.5, -1.0, 1.0)
        rotation = (sign * theta).unsqueeze(-1)
    else:
        axis = torch.randn(n, 3, generator=generator, dtype=torch.float64)
        rotation = axis / torch.linalg.vector_norm(axis, dim=-1, keepdim=True) * theta.unsqueeze(-1)
    if group is SO3:
        return rotation
    v = torch.randn(n, group.point_dim, generator=generator, dtype=torch.float64)
    return torch.cat([v, rotation], dim=-1)


def _exp_reference(group, xi) -> mpmath.matrix:
    """The storage of ``Exp ξ`` (SO3, SE3) or its homogeneous matrix (SE2)."""
    if group is SO3:
        return mpmath.matrix(_quaternion(xi))
    m = mpmath.expm(_hat(group, xi))
    if group is SE2:
        return m
    return mpmath.matrix([m[0, 3], m[1, 3], m[2, 3]] + _quaternion(xi[3:]))


def _log_reference(group, data) -> mpmath.matrix:
    """``Log`` of the element stored as ``data``, exactly: the rotation's angle, then ``V⁻¹ t``."""
    if group is SO3:
        return mpmath.matrix(_quaternion_log(data))
    if group is SE2:
        omega = [mpmath.atan2(data[3], data[2])]
        rotation = mpmath.matrix([[0, -omega[0]], [omega[0], 0]])
    else:
        omega = _quaternion_log(data[3:])
        rotation = _skew(omega)
    n = group.point_dim
    v = mpmath.lu_solve(_phi(rotation), mpmath.matrix(data[:n]))
    return mpmath.matrix([v[i] for i in range(n)] + omega)


JACOBIANS = {
    "jr": lambda group, xi: _phi(-_ad(group, xi)),
    "jl": lambda group, xi: _phi(_ad(group, xi)),
    "jr_inv": lambda group, xi: mpmath.inverse(_phi(-_ad(group, xi))),
    "jl_inv": lambda group, xi: mpmath.inverse(_phi(_ad(group, xi))),
}

GROUP_CASES = [
    ("SO3.exp", SO3, lambda g, xi: SO3.exp(xi).data, _exp_reference),
    ("SE3.exp", SE3, lambda g, xi: SE3.exp(xi).data, _exp_reference),
    ("SE2.exp.matrix", SE2, lambda g, xi: SE2.exp(xi).matrix(), _exp_reference),
    ("SO3.exp.matrix", SO3, lambda g, xi: SO3.exp(xi).matrix(), lambda g, xi: mpmath.expm(_hat(g, xi))),
    ("SE3.exp.matrix", SE3, lambda g, xi: SE3.exp(xi).matrix(), lambda g, xi: mpmath.expm(_hat(g, xi))),
] + [
    (f"{group.__name__}.{name}", group, (lambda name: lambda g, xi: getattr(g, name)(xi))(name), reference)
    for group in (SO3, SE2, SE3)
    for name, reference in JACOBIANS.items()
]


def _blockwise_error(group, got: torch.Tensor, ref: mpmath.matrix) -> float:
    """Normwise relative error of each block, ``max |got - ref| / max |ref|``, the worst of them.

    The blocks are the translation and rotation parts (split at ``point_dim``: ``t | q``,
    ``v | ω``, the 3 x 3 blocks of an SE(3) Jacobian, the rotation and translation of a
    homogeneous matrix); a block that is exactly zero is measured against the whole output."""
    got = got.reshape(ref.rows, ref.cols)
    error = [[abs(mpmath.mpf(got[i, j].item()) - ref[i, j]) for j in range(ref.cols)] for i in range(ref.rows)]
    size = max(abs(ref[i, j]) for i in range(ref.rows) for j in range(ref.cols))
    cuts = 0 if group is SO3 else group.point_dim

    def parts(n: int) -> list[range]:
        return [range(n)] if cuts == 0 or n == 1 else [range(cuts), range(cuts, n)]

    worst = 0.0
    for rows in parts(ref.rows):
        for cols in parts(ref.cols):
            scale = max(abs(ref[i, j]) for i in rows for j in cols) or size
            worst = max(worst, float(max(error[i][j] for i in rows for j in cols) / scale))
    return worst


@pytest.mark.parametrize("case", GROUP_CASES, ids=lambda c: c[0])
def test_group_results_exact_to_rounding(case, generator):
    label, group, fn, reference = case
    xis = _tangents(group, generator)
    got = fn(group, xis)
    eps, worst = torch.finfo(torch.float64).eps, (0.0, None)
    with mpmath.workdps(DIGITS):
        for k in range(len(xis)):
            xi = [mpmath.mpf(v) for v in xis[k].tolist()]
            error = _blockwise_error(group, got[k], reference(group, xi)) / eps
            worst = max(worst, (error, xis[k].tolist()))
    assert worst[0] <= GROUP_ULPS, f"{label}: {worst[0]:.1f} eps at ξ = {worst[1]}"


@pytest.mark.parametrize("group", [SO3, SE2, SE3], ids=lambda g: g.__name__)
def test_group_log_exact_to_rounding(group, generator):
    """``Log`` of stored elements ``Exp ξ`` (rounded to float64), against the exact log of that storage."""
    xis = _tangents(group, generator)
    x = group(group.exp(xis).data)  # the public constructor: storage as a user would pass it
    data, got = x.data, x.log()
    eps, worst = torch.finfo(torch.float64).eps, (0.0, None)
    with mpmath.workdps(DIGITS):
        for k in range(len(xis)):
            ref = _log_reference(group, [mpmath.mpf(v) for v in data[k].tolist()])
            error = _blockwise_error(group, got[k], ref) / eps
            worst = max(worst, (error, xis[k].tolist()))
    assert worst[0] <= GROUP_ULPS, f"{group.__name__}.log: {worst[0]:.1f} eps at ξ = {worst[1]}"
