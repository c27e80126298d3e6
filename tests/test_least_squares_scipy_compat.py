"""``slam.least_squares`` as a drop-in for ``scipy.optimize.least_squares``: NumPy callables and arrays,
scipy's keywords, and scipy's result fields with scipy's meanings, checked against scipy itself.

The problems are ``least_squares_problems.py``'s (torch residuals; a NumPy view of them is a NumPy
function) and a NumPy Rosenbrock.  scipy runs with the exact Jacobian (autograd) or its own finite
differences, the tolerances tight on both sides; with the exact Jacobian ours keeps ``ftol`` off (its
default) so that it stops on x, not on a small decrease; with finite differences it takes scipy's settings.
"""

from __future__ import annotations

import warnings

import least_squares_problems
import numpy as np
import pytest
import torch
from least_squares_problems import Problem, by_name
from scipy.optimize import least_squares as scipy_least_squares
from scipy.optimize._numdiff import approx_derivative

import slam
from slam.least_squares import SCIPY_STATUS

OURS = dict(xtol=1e-15, gtol=1e-15)
# With finite differences neither x nor the gradient cosine resolve to 1e-15 (the Jacobian is good to
# ~1e-8): ours then runs to its iteration limit; scipy stops on ftol, and so does ours with scipy's settings.
OURS_FINITE_DIFFERENCES = dict(xtol=1e-15, gtol=1e-15, ftol=1e-15)
SCIPY = dict(xtol=1e-15, ftol=1e-15, gtol=1e-15, max_nfev=20000)
SCIPY_CODES = {-2, -1, 0, 1, 2, 3, 4}

# Problems from the standard start where scipy's LM and TRF and ours reach the same minimum (scipy's LM
# misses BoxBOD from Start 1: test_least_squares_problems.py says why; its TRF does not).
SAME_MINIMUM = ["mgh01_rosenbrock", "mgh06_jennrich_sampson", "mgh08_bard", "mgh10_meyer", "mgh19_osborne2",
                "nist_misra1a", "nist_thurber"]
TRF_ONLY = ["nist_boxbod"]


def numpy_rosenbrock(x: np.ndarray) -> np.ndarray:
    return np.array([10.0 * (x[1] - x[0] ** 2), 1.0 - x[0]])


def numpy_rosenbrock_jac(x: np.ndarray) -> np.ndarray:
    return np.array([[-20.0 * x[0], 10.0], [-1.0, 0.0]])


def _numpy(p: Problem):
    """p's residuals and exact Jacobian as NumPy functions, as a scipy user would write them."""
    jacrev = torch.func.jacrev(p.residuals)

    def fun(x: np.ndarray) -> np.ndarray:
        with torch.no_grad():
            return p.residuals(torch.as_tensor(x, dtype=torch.float64)).numpy()

    def jac(x: np.ndarray) -> np.ndarray:
        return jacrev(torch.as_tensor(x, dtype=torch.float64)).detach().numpy()

    return fun, jac


def _scipy(fun, x0, method: str, jac="2-point"):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return scipy_least_squares(fun, np.asarray(x0, dtype=np.float64), jac=jac, method=method, **SCIPY)


def _assert_same_minimum(ours, reference, f_min_is_zero: bool):
    x = ours.x.numpy() if isinstance(ours.x, torch.Tensor) else ours.x
    if f_min_is_zero:
        assert ours.cost <= 1e-20 and reference.cost <= 1e-20, (ours.cost, reference.cost)
        np.testing.assert_allclose(x, reference.x, rtol=1e-8, atol=1e-10)
    else:
        assert ours.cost == pytest.approx(reference.cost, rel=1e-10)
        np.testing.assert_allclose(x, reference.x, rtol=1e-6, atol=0)


def _cases():
    for name in SAME_MINIMUM + TRF_ONLY:
        for method in ("lm", "trf"):
            if name in TRF_ONLY and method == "lm":
                continue
            yield pytest.param(name, method, id=f"{name}-{method}")


# ------------------------------------------------------------------ against scipy


@pytest.mark.parametrize("name, method", list(_cases()))
def test_torch_function_reaches_scipys_minimum(name: str, method: str):
    p = by_name(name)
    fun, jac = _numpy(p)
    reference = _scipy(fun, p.x0, method, jac=jac)
    ours = slam.least_squares(p.residuals, torch.tensor(p.x0, dtype=torch.float64), **OURS)
    assert isinstance(ours.x, torch.Tensor)
    assert ours.success and reference.success, (ours.message, reference.message)
    _assert_same_minimum(ours, reference, p.f_min == 0.0)
    torch.testing.assert_close(ours.jac, torch.func.jacrev(p.residuals)(ours.x.detach()), rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("jacobian", ["2-point", "exact"])
@pytest.mark.parametrize("name, method", list(_cases()))
def test_numpy_function_reaches_scipys_minimum(name: str, method: str, jacobian: str):
    """NumPy in, NumPy out: scipy's call, our solver; finite differences on both sides, or the same jac."""
    p = by_name(name)
    fun, jac = _numpy(p)
    given = jac if jacobian == "exact" else None  # None: scipy's default, "2-point"
    reference = _scipy(fun, p.x0, method, jac=jac if jacobian == "exact" else "2-point")
    ours = slam.least_squares(fun, list(p.x0), jac=given, **(OURS if jacobian == "exact" else OURS_FINITE_DIFFERENCES))
    assert isinstance(ours.x, np.ndarray) and isinstance(ours.fun, np.ndarray) and isinstance(ours.jac, np.ndarray)
    assert ours.success and reference.success, (ours.message, reference.message)
    _assert_same_minimum(ours, reference, p.f_min == 0.0)


@pytest.mark.parametrize("method", ["lm", "trf"])
@pytest.mark.parametrize("jac", ["2-point", "3-point", "cs", "exact"])
def test_numpy_rosenbrock(method: str, jac: str):
    given = numpy_rosenbrock_jac if jac == "exact" else jac
    reference = _scipy(numpy_rosenbrock, [-1.2, 1.0], method, jac=given)
    ours = slam.least_squares(numpy_rosenbrock, [-1.2, 1.0], jac=given,
                              **(OURS if jac == "exact" else OURS_FINITE_DIFFERENCES))
    _assert_same_minimum(ours, reference, f_min_is_zero=True)
    np.testing.assert_allclose(ours.x, [1.0, 1.0], rtol=1e-10)


def test_fields_have_scipys_types_and_shapes():
    p = by_name("nist_misra1a")  # m = 14, n = 2
    fun, jac = _numpy(p)
    reference = _scipy(fun, p.x0, "trf", jac=jac)
    ours = slam.least_squares(fun, np.array(p.x0), jac=jac)
    m, n = reference.fun.shape[0], reference.x.shape[0]
    for name in ("x", "fun", "jac", "grad", "active_mask"):
        ours_value, scipy_value = getattr(ours, name), getattr(reference, name)
        assert isinstance(ours_value, np.ndarray), name
        assert ours_value.shape == scipy_value.shape, name
        if name != "active_mask":  # scipy's is int for lm, float for trf
            assert ours_value.dtype == scipy_value.dtype == np.float64, name
    assert ours.x.dtype == np.float64 and ours.fun.shape == (m,) and ours.jac.shape == (m, n)
    for name in ("cost", "optimality"):
        assert isinstance(getattr(ours, name), float), name
    for name in ("nfev", "njev", "status"):
        assert type(getattr(ours, name)) is int, name
    assert isinstance(ours.message, str) and type(ours.success) is bool
    assert ours.status in SCIPY_CODES and reference.status in SCIPY_CODES
    assert ours.success == (ours.status > 0) == ours.converged
    # scipy's meanings, at our x
    assert ours.cost == pytest.approx(0.5 * float(ours.fun @ ours.fun), rel=1e-15)
    np.testing.assert_allclose(ours.fun, fun(ours.x), rtol=0, atol=0)
    np.testing.assert_allclose(ours.jac, jac(ours.x), rtol=1e-15, atol=0)
    # grad ≈ 0 here: Jᵀf cancels, so compare at the rounding of its terms
    terms = np.abs(ours.jac).T @ np.abs(ours.fun)
    np.testing.assert_allclose(ours.grad, ours.jac.T @ ours.fun, rtol=0, atol=1e-14 * float(terms.max()))
    assert np.abs(ours.grad).max() > 1e-16 * terms.max()  # not trivially zero: the check above has teeth
    assert ours.optimality == float(np.abs(ours.grad).max())
    assert not ours.active_mask.any()
    # and close to scipy's at its x
    np.testing.assert_allclose(ours.fun, reference.fun, rtol=1e-6, atol=1e-9)
    np.testing.assert_allclose(ours.jac, reference.jac, rtol=1e-6, atol=0)
    assert ours.optimality < 1e-6 * float(np.abs(ours.jac).max() * np.linalg.norm(ours.fun))


def test_torch_fields_are_tensors():
    p = by_name("mgh19_osborne2")
    ours = slam.least_squares(p.residuals, torch.tensor(p.x0, dtype=torch.float64))
    m, n = ours.fun.shape[0], len(p.x0)
    assert all(isinstance(getattr(ours, k), torch.Tensor) for k in ("x", "fun", "jac", "grad"))
    assert ours.x.shape == (n,) and ours.jac.shape == (m, n) and ours.grad.shape == (n,)
    torch.testing.assert_close(ours.grad, ours.jac.T @ ours.fun, rtol=1e-14, atol=1e-300)
    assert ours.cost == pytest.approx(0.5 * float(ours.fun @ ours.fun), rel=1e-15)
    assert ours.optimality == float(ours.grad.abs().max())


def test_finite_differences_are_scipys():
    p = by_name("mgh10_meyer")  # |x| from 0.02 to 1e4: the steps scale with max(1, |x|)
    fun, _ = _numpy(p)
    for method in ("2-point", "3-point"):
        ours = slam.least_squares(fun, np.array(p.x0), jac=method, max_iterations=3)
        expected = approx_derivative(fun, ours.x, method=method)
        np.testing.assert_allclose(ours.jac, expected, rtol=1e-13, atol=0, err_msg=method)

    def complex_meyer(x):  # the complex step needs a function of complex x
        t = 45.0 + 5.0 * np.arange(1, 17)
        return x[0] * np.exp(x[1] / (t + x[2])) - np.array(least_squares_problems._MEYER_Y)

    ours = slam.least_squares(complex_meyer, np.array(p.x0), jac="cs", max_iterations=3)
    np.testing.assert_allclose(ours.jac, approx_derivative(complex_meyer, ours.x, method="cs"), rtol=1e-13, atol=0)
    np.testing.assert_allclose(ours.jac, _numpy(p)[1](ours.x), rtol=1e-9)
    with pytest.raises(ValueError, match="complex"), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torch: casting complex values to real discards the imaginary part
        slam.least_squares(fun, np.array(p.x0), jac="cs")  # real residuals of a complex x


def test_diff_step_is_scipys():
    p = by_name("nist_misra1a")
    fun, _ = _numpy(p)
    ours = slam.least_squares(fun, np.array(p.x0), diff_step=1e-6, max_iterations=2)
    np.testing.assert_allclose(ours.jac, approx_derivative(fun, ours.x, method="2-point", rel_step=1e-6), rtol=1e-13)
    default = slam.least_squares(fun, np.array(p.x0), max_iterations=2)
    assert not np.array_equal(ours.jac, default.jac)


# ------------------------------------------------------------------ conventions


def test_numpy_and_torch_functions_take_the_same_path():
    """The same engine: a NumPy function with the exact jac, and the torch one, iterate alike."""
    p = by_name("mgh19_osborne2")
    fun, jac = _numpy(p)
    from_numpy = slam.least_squares(fun, np.array(p.x0), jac=jac)
    from_torch = slam.least_squares(p.residuals, torch.tensor(p.x0, dtype=torch.float64),
                                    jac=torch.func.jacrev(p.residuals))
    assert from_numpy.iterations == from_torch.iterations and from_numpy.nfev == from_torch.nfev
    np.testing.assert_allclose(from_numpy.x, from_torch.x.numpy(), rtol=1e-12)
    assert from_numpy.status == from_torch.status


def test_output_type_follows_the_input():
    p = by_name("mgh01_rosenbrock")
    from_list = slam.least_squares(p.residuals, list(p.x0))  # a torch function from a list: tensors, as before
    from_ndarray = slam.least_squares(p.residuals, np.array(p.x0))  # an ndarray: NumPy out
    numpy_from_tuple = slam.least_squares(numpy_rosenbrock, (-1.2, 1.0))  # a NumPy function: NumPy out
    assert isinstance(from_list.x, torch.Tensor) and isinstance(from_list.jac, torch.Tensor)
    assert isinstance(from_ndarray.x, np.ndarray) and isinstance(from_ndarray.grad, np.ndarray)
    assert isinstance(numpy_from_tuple.x, np.ndarray)
    np.testing.assert_allclose(from_ndarray.x, from_list.x.numpy(), rtol=0, atol=0)  # the same (autograd) solve
    np.testing.assert_allclose(numpy_from_tuple.x, [1.0, 1.0], rtol=1e-10)
    x0 = np.array([-1.2, 1.0])
    slam.least_squares(numpy_rosenbrock, x0)
    assert x0.tolist() == [-1.2, 1.0]  # the caller's start is not modified


def test_nfev_and_njev_count_calls_as_scipy_does():
    """nfev: calls of fun, finite differences excluded; njev: Jacobians."""
    calls = {"fun": 0, "jac": 0}

    def fun(x):
        calls["fun"] += 1
        return numpy_rosenbrock(x)

    def jac(x):
        calls["jac"] += 1
        return numpy_rosenbrock_jac(x)

    ours = slam.least_squares(fun, [-1.2, 1.0], jac=jac)
    assert (calls["fun"], calls["jac"]) == (ours.nfev, ours.njev)
    assert ours.nfev == ours.iterations + 1 and 1 <= ours.njev <= ours.nfev
    calls.update(fun=0, jac=0)
    finite = slam.least_squares(fun, [-1.2, 1.0])  # 2-point: n calls per Jacobian besides nfev
    assert calls["fun"] == finite.nfev + 2 * finite.njev


def test_max_nfev_is_the_evaluation_budget():
    ours = slam.least_squares(numpy_rosenbrock, [-1.2, 1.0], max_nfev=5)
    reference = _scipy(numpy_rosenbrock, [-1.2, 1.0], "trf")
    assert reference.nfev > 5  # the budget binds
    assert ours.nfev <= 5 and ours.status == 0 and not ours.success and not ours.converged
    assert "maximum number of function evaluations" in ours.message


def test_args_and_kwargs_reach_fun_and_jac():
    t = np.linspace(0.0, 2.0, 9)
    y = 3.0 * np.exp(-1.3 * t) + 0.01 * np.sin(7 * t)

    def fun(b, t, y, *, weight):
        return weight * (b[0] * np.exp(-b[1] * t) - y)

    def jac(b, t, y, *, weight):
        e = np.exp(-b[1] * t)
        return weight * np.stack([e, -b[0] * t * e], axis=1)

    ours = slam.least_squares(fun, [1.0, 1.0], jac=jac, args=(t, y), kwargs={"weight": 2.0}, **OURS)
    reference = _scipy(lambda b: fun(b, t, y, weight=2.0), [1.0, 1.0], "lm", jac=lambda b: jac(b, t, y, weight=2.0))
    _assert_same_minimum(ours, reference, f_min_is_zero=False)


def test_status_table_covers_every_termination():
    assert set(SCIPY_STATUS) == set(slam.Termination)
    for termination, status in SCIPY_STATUS.items():
        assert status in SCIPY_CODES
        assert (status > 0) == termination.converged, termination


def test_status_follows_the_stop():
    p = by_name("nist_misra1a")
    fun, _ = _numpy(p)
    x0 = np.array(p.x0)
    assert slam.least_squares(fun, x0).status in (1, 3)  # the defaults: gtol or xtol, whichever first
    assert slam.least_squares(fun, x0, gtol=0.0).status == 3  # xtol
    assert slam.least_squares(fun, x0, ftol=1e-6).status == 2  # ftol, met first
    assert slam.least_squares(fun, x0, xtol=0.0, gtol=1e-3).status == 1  # gtol
    powell = by_name("mgh13_powell_singular")
    zero = slam.least_squares(powell.residuals, torch.tensor(powell.x0, dtype=torch.float64))
    assert zero.termination == slam.Termination.COST_TOLERANCE and zero.status == 1
    singular = slam.least_squares(lambda x: torch.stack([x[0] + x[1] - 1.0]), torch.zeros(2, dtype=torch.float64),
                                  method="gn")
    assert singular.status == 0 and not singular.success and "rank-deficient" in singular.message


def test_repr_is_short():
    ours = slam.least_squares(numpy_rosenbrock, [-1.2, 1.0])
    text = repr(ours)
    assert len(text.splitlines()) <= 3 and len(text) < 400
    for part in (f"status={ours.status}", "success=True", f"nfev={ours.nfev}", "(2,)", "cost=", "xtol"):
        assert part in text, part
    assert "history" not in text and "IterationRecord" not in text


# ------------------------------------------------------------------ scipy's keywords we do not support


@pytest.mark.parametrize("keyword, value, error, match", [
    ("bounds", (0.0, 10.0), ValueError, "bounds"),
    ("loss", "soft_l1", ValueError, "loss"),
    ("f_scale", 0.1, ValueError, "f_scale"),
    ("verbose", 2, ValueError, "verbose"),
    ("tr_solver", "lsmr", ValueError, "tr_solver"),
    ("jac_sparsity", np.ones((2, 2)), ValueError, "jac_sparsity"),
    ("callback", print, ValueError, "callback"),
    ("workers", 4, ValueError, "workers"),
    ("method", "trf", ValueError, "trf"),
    ("method", "dogbox", ValueError, "dogbox"),
    ("x_scale", "jac", ValueError, "x_scale"),
    ("jac", "4-point", ValueError, "jac"),
    ("no_such_option", 1, TypeError, "no_such_option"),
])
def test_unsupported_keyword_raises_naming_it(keyword, value, error, match):
    with pytest.raises(error, match=match):
        slam.least_squares(numpy_rosenbrock, [-1.2, 1.0], **{keyword: value})


def test_unsupported_keywords_raise_before_any_evaluation():
    calls = []
    with pytest.raises(ValueError, match="bounds.*loss|loss.*bounds"):
        slam.least_squares(lambda x: calls.append(x) or numpy_rosenbrock(x), [-1.2, 1.0], bounds=(0, 1), loss="huber")
    assert not calls


def test_inconsistent_keywords_raise():
    with pytest.raises(ValueError, match="max_nfev"):
        slam.least_squares(numpy_rosenbrock, [-1.2, 1.0], max_nfev=10, max_iterations=10)
    with pytest.raises(ValueError, match="diff_step"):  # autograd: no finite differences to step
        slam.least_squares(by_name("mgh01_rosenbrock").residuals, torch.tensor([-1.2, 1.0], dtype=torch.float64),
                           diff_step=1e-6)
    with pytest.raises(ValueError, match="jac must return"):
        slam.least_squares(numpy_rosenbrock, [-1.2, 1.0], jac=lambda x: np.eye(3))
    with pytest.raises(ValueError, match="1-D"):
        slam.least_squares(numpy_rosenbrock, np.zeros((2, 2)))


def test_scipys_no_op_values_are_accepted():
    plain = slam.least_squares(numpy_rosenbrock, [-1.2, 1.0])
    same = slam.least_squares(numpy_rosenbrock, [-1.2, 1.0], bounds=(-np.inf, np.inf), loss="linear", f_scale=1.0,
                              verbose=0, tr_options={}, jac="2-point", x_scale=None, ftol=None)
    np.testing.assert_array_equal(plain.x, same.x)
    assert plain.nfev == same.nfev


def test_a_function_failing_on_both_conventions_reports_both():
    def broken(x):
        raise KeyError("no")

    with pytest.raises(KeyError) as info:
        slam.least_squares(broken, [1.0])
    assert any("ndarray" in note for note in getattr(info.value, "__notes__", []))


def test_a_numpy_function_from_a_tensor_start_raises():
    with pytest.raises(TypeError, match="NumPy function takes an ndarray or list x0"):
        slam.least_squares(numpy_rosenbrock, torch.tensor([-1.2, 1.0], dtype=torch.float64))
