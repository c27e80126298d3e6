"""``slam.least_squares``: a scipy-compatible entry point for a plain vector of parameters.

    result = slam.least_squares(fun, x0, method="lm")

``fun`` is a torch function (a 1-D float64 tensor of n parameters to a 1-D tensor of m residuals;
the Jacobian from autograd, forward mode when n < m, reverse otherwise) or a NumPy one, as scipy's
``fun(x, *args, **kwargs)`` (the Jacobian by scipy's finite differences unless ``jac`` gives it).
The result carries ``scipy.optimize.least_squares``'s fields with scipy's meanings (``x``, ``cost``
= ``½ Σ r²``, ``fun``, ``jac``, ``grad``, ``optimality``, ``active_mask``, ``nfev``, ``njev``,
``status``, ``message``, ``success``) beside ours (``iterations``, ``converged``, ``termination``,
``history``).  The solve is the same engine as ``slam.solve`` (one Euclidean variable, one residual
instance, the dense solver), so with a torch ``fun`` it is differentiable in whatever ``fun`` closes over.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any, Callable, Literal

import numpy as np
import torch
from torch import Tensor

from liegeo import Euclidean

from ._docs import document_fields
from .costs.base import Cost, autodiff_jacobians
from .optim.config import BackwardMode, Dogleg, GaussNewton, LevenbergMarquardt
from .optim.result import IterationRecord, SolveResult
from .optim.solve import solve
from .optim.termination import Termination
from .problem import Problem
from .variables import Variable

Array = Any
"""A ``numpy.ndarray`` or a ``torch.Tensor``: ``LeastSquaresResult``'s arrays are NumPy's when ``x0``
was an ndarray or ``fun`` is a NumPy function, tensors otherwise."""

# scipy's status of each of our terminations: one table.  scipy's codes are -1 (improper input; ours
# raise instead), 0 (the evaluation budget), 1 (gtol), 2 (ftol), 3 (xtol) and 4 (ftol and xtol: never
# here, the loop stops at the first test met); success is status > 0, as ``Termination.converged``.
# Our unconverged stops that scipy has no code for are 0, scipy's only unconverged stop; the message
# (``_message``) names the reason.
SCIPY_STATUS: dict[Termination, int] = {
    Termination.GRADIENT_TOLERANCE: 1,  # the gradient cosine (MINPACK's gtol), or max |g| <= gradient_tolerance
    Termination.COST_TOLERANCE: 1,  # ‖r‖ <= eps ‖r(x0)‖: zero residuals, zero gradient (MINPACK's lmder: gtol)
    Termination.NO_FREE_VARIABLES: 1,  # n = 0: the gradient is empty
    Termination.FUNCTION_TOLERANCE: 2,  # a relative decrease of the cost <= ftol
    Termination.ABSOLUTE_TOLERANCE: 2,  # a decrease of the cost <= absolute_tolerance
    Termination.PARAMETER_TOLERANCE: 3,  # a step in z <= xtol (‖z‖ + xtol)
    Termination.MAX_ITERATIONS: 0,  # max_iterations = max_nfev - 1
    Termination.NO_DECREASE: 0,
    Termination.TRUST_REGION_COLLAPSED: 0,
    Termination.LINEAR_SOLVER_FAILED: 0,
    Termination.RANK_DEFICIENT: 0,
}

_SCIPY_MESSAGES = {
    0: "The maximum number of function evaluations is exceeded.",
    1: "`gtol` termination condition is satisfied.",
    2: "`ftol` termination condition is satisfied.",
    3: "`xtol` termination condition is satisfied.",
}


def _message(termination: Termination) -> str:
    """scipy's message for ``termination``'s status, ours in parentheses; a stop scipy has no words for in ours."""
    status = SCIPY_STATUS[termination]
    if status == 0 and termination is not Termination.MAX_ITERATIONS:
        return f"Stopped without convergence: {termination}."
    return f"{_SCIPY_MESSAGES[status][:-1]} ({termination})."


_FINITE_DIFFERENCES = ("2-point", "3-point", "cs")

# scipy.optimize.least_squares keywords with no counterpart here: accepted at the value that means
# nothing to do (``None`` where not listed), otherwise a ValueError naming them.
_SCIPY_NO_OPS: dict[str, tuple[Callable[[Any], bool], str]] = {
    "bounds": (lambda v: v is None or bool(np.all(np.isneginf(np.asarray(v[0], dtype=float)))
                                          and np.all(np.isposinf(np.asarray(v[1], dtype=float)))),
               "the problem is unconstrained: bounds must be (-inf, inf)"),
    "loss": (lambda v: v is None or v == "linear",
             "robust losses are slam.solve's (slam.robust); loss must be 'linear'"),
    "verbose": (lambda v: not v, "verbose must be 0 (progress=True shows a progress bar; the solve logs to 'slam')"),
    "tr_solver": (lambda v: v is None, "tr_solver is trf's; the linear solver is linear_solver= (default 'dense')"),
    "tr_options": (lambda v: not v, "tr_options are trf's"),
    "jac_sparsity": (lambda v: v is None, "jac_sparsity is not supported (the Jacobian is dense)"),
    "callback": (lambda v: v is None,
                 "scipy's callback is not supported (slam.solve takes callbacks= of IterationRecord)"),
    "workers": (lambda v: v is None, "workers is not supported"),
}


@document_fields
@dataclasses.dataclass(frozen=True, repr=False)
class LeastSquaresResult:
    """The outcome of ``least_squares``: scipy's ``OptimizeResult`` fields, with scipy's meanings, and ours.

    Arrays are NumPy's (float64) when ``x0`` was an ndarray or ``fun`` is a NumPy function, tensors
    otherwise: then ``x`` carries the solve's graph (differentiable, see ``least_squares``) and ``fun``,
    ``jac`` and ``grad`` are detached.
    """

    x: Array
    """The solution ``(n,)``."""
    cost: float
    """``½ Σ fun(x)²`` (scipy's cost; ``2 * cost`` is NIST's residual sum of squares)."""
    fun: Array
    """The residuals at ``x``, ``(m,)``."""
    iterations: int
    """Iterations (trial steps) of the solve: ``nfev = iterations + 1``, one more where a solve that met a
    tolerance beside a non-finite region probed a last step."""
    converged: bool
    """A tolerance was met (``Termination.converged``); equal to ``success``."""
    termination: Termination
    """Why the solve stopped (a ``str`` enum); ``status`` and ``message`` are its scipy reading."""
    history: list[IterationRecord]
    """The dimensionless solve, restarts included (steps in each run's z, costs in units of ``‖fun(x0)‖²``:
    0.5 at the start)."""
    jac: Array
    """The Jacobian ``∂fun/∂x`` at ``x``, ``(m, n)`` (the solver's: autograd, ``jac=`` or finite differences)."""
    grad: Array
    """The gradient of the cost at ``x``, ``jacᵀ fun``, ``(n,)``."""
    optimality: float
    """``max |grad|`` (scipy's first-order optimality of an unconstrained problem)."""
    active_mask: np.ndarray
    """Zeros ``(n,)`` of int (scipy's: no bounds are active; there are none)."""
    nfev: int
    """Evaluations of ``fun`` for the cost: the start and every trial point, not those of a Jacobian (autograd's or
    finite differences', as scipy does not count finite differences)."""
    njev: int
    """Jacobian evaluations (linearizations: the start and every accepted point); scipy's ``lm`` says None
    when its Jacobian is finite differences, here it is the count of finite-difference Jacobians."""
    status: int
    """scipy's code: 0 stopped unconverged (the budget, or one of ours: ``message``), 1 gtol, 2 ftol, 3 xtol
    (``SCIPY_STATUS`` maps every ``Termination``)."""
    message: str
    """scipy's words for ``status``, ours in parentheses (``"`xtol` termination condition is satisfied
    (parameter tolerance)."``); for a stop scipy has no code for, ours."""
    success: bool
    """``status > 0``."""

    def __repr__(self) -> str:
        shape = tuple(self.x.shape)
        kind = "ndarray" if isinstance(self.x, np.ndarray) else "tensor"
        return (f"LeastSquaresResult(status={self.status}, success={self.success}, message={self.message!r},\n"
                f"    cost={self.cost:.6g}, optimality={self.optimality:.3g}, x: {kind} {shape}, "
                f"nfev={self.nfev}, njev={self.njev}, iterations={self.iterations})")


class _VectorCost(Cost):
    """``fun(scale * z) / unit``, the variable holding z (see ``least_squares``: the dimensionless problem).

    ``jacobian(x, f)`` (x-units, ``(m, n)``; f = fun(x)) is the user's ``jac`` or finite differences; None:
    autograd in z.
    Counts the solver's cost evaluations (``nfev``) and linearizations (``njev``)."""

    def __init__(self, ref, fun, jacobian, scale, unit, name):  # type: ignore[no-untyped-def]
        super().__init__(ref, name=name)
        self.fun, self.jacobian, self.scale, self.unit = fun, jacobian, scale, unit
        self.nfev = self.njev = 0
        self.last: tuple[Tensor, Tensor] | None = None
        """(x, jacobian(x)) of the last linearization, detached: the report's Jacobian at the solution."""

    def _residual(self, z: Euclidean) -> Tensor:  # z: (1, 1, n)
        return (self.fun(self.scale * z.data.reshape(-1)) / self.unit).reshape(1, 1, -1)

    def residual(self, z: Euclidean) -> Tensor:
        self.nfev += 1
        return self._residual(z)

    def residual_and_jacobians(self, z: Euclidean) -> tuple[Tensor, list[Tensor]]:
        self.njev += 1
        if self.jacobian is None:
            return autodiff_jacobians(self._residual, (z,), {})
        x = self.scale * z.data.reshape(-1)
        f = self.fun(x)
        jacobian = self.jacobian(x, f)
        self.last = x.detach().clone(), jacobian.detach().clone()
        jacobian = jacobian * (self.scale / self.unit)  # (d fun / dx) diag(scale) / unit
        return (f / self.unit).reshape(1, 1, -1), [jacobian.reshape(1, 1, -1, x.shape[0])]


def least_squares(
    fun: Callable[..., Any],
    x0: Tensor | np.ndarray | list[float] | tuple[float, ...],
    *,
    method: Literal["lm", "gn", "dogleg"] = "lm",
    jac: Callable[..., Any] | Literal["2-point", "3-point", "cs"] | None = None,
    max_iterations: int | None = None,
    max_nfev: int | None = None,
    ftol: float | None = 0.0,
    xtol: float | None = 1e-8,
    gtol: float | None = 1e-8,
    x_scale: Literal["start"] | float | Tensor | np.ndarray | None = "start",
    diff_step: float | None = None,
    args: tuple[Any, ...] = (),
    kwargs: dict[str, Any] | None = None,
    backward: BackwardMode | None = None,
    **options: Any,
) -> LeastSquaresResult:
    """Minimize ``½ Σ fun(x)²`` from ``x0`` by Levenberg-Marquardt (``"lm"``), Gauss-Newton (``"gn"``) or
    Powell's dogleg (``"dogleg"``, its trust region a ball in z from radius 1: every parameter may
    change by its own magnitude at first).

    ``fun`` and ``x0``, as torch or as scipy:

    * a tensor ``x0``: ``fun`` takes and returns tensors (1-D, float64 ``x0`` usually); the Jacobian is
      autograd's, the solve differentiable in what ``fun`` closes over, and the result's arrays tensors.
    * an ndarray, list or tuple ``x0`` (float64, as scipy converts it): ``fun`` is first called with an
      ndarray, scipy's contract.  A function that returns a tensor there, or raises, is taken for a torch
      function (the solve then runs as with a tensor ``x0``); one that returns an array (or list) is a
      NumPy function: the solver calls it with ndarrays, without autograd (a function that works on both
      is NumPy's: pass a tensor ``x0`` for autograd).  The result's arrays are NumPy's when ``x0`` is an
      ndarray or ``fun`` is a NumPy function, tensors for a torch function started from a list (as before).

    ``jac``: None (autograd for a torch function; scipy's ``"2-point"`` for a NumPy one), a callable
    ``jac(x, *args, **kwargs) -> (m, n)`` in ``fun``'s convention (a dense array; a scipy sparse matrix is
    densified), or scipy's finite differences ``"2-point"``, ``"3-point"`` (central) or ``"cs"`` (complex
    step; ``fun`` must accept complex x), with scipy's steps: ``h = r sign(x) max(1, |x|)``, ``r = sqrt(eps)``
    (``eps^(1/3)`` for 3-point), or ``h = diff_step sign(x) |x|`` where that is not zero.

    scipy's other keywords: ``args``/``kwargs`` (extra arguments of ``fun`` and ``jac``), ``ftol``, ``xtol``,
    ``gtol`` (None disables, as 0 does), ``max_nfev`` (``max_iterations = max_nfev - 1``: one evaluation
    per trial step after the start's; give one of the two), ``x_scale`` (an array, or ``"start"``; scipy's
    ``"jac"`` is not supported), ``method`` (``"trf"`` and ``"dogbox"`` are not implemented).  ``bounds``,
    ``loss``, ``f_scale``, ``verbose``, ``tr_solver``, ``tr_options``, ``jac_sparsity``, ``callback`` and
    ``workers`` are accepted only at values that ask for nothing (``bounds=(-inf, inf)``, ``loss="linear"``,
    ``verbose=0``, ...); otherwise a ValueError names them.  Any other keyword must be a field of the
    optimizer's config (below), or a TypeError names it.  The defaults are ours, not scipy's (``ftol`` 0,
    ``max_iterations`` 1000; the reasons below).

    The solve runs on the dimensionless problem: parameters ``z = x / x_scale`` (the default
    ``x_scale="start"`` is the start's magnitudes ``|x0|``, 1 where ``x0`` is 0; a positive float or
    ``(n,)`` array gives it) and residuals in units of ``‖fun(x0)‖``.  In z, LM damps as Levenberg,
    ``(JᵀJ + λI) δ = -g`` from ``λ = 1e-3``: an isotropic trust region on the *relative* change of
    each parameter (scipy's ``x_scale``, MINPACK's ``diag``), and every tolerance and damping bound
    is free of the units of x and of the residuals.

    Stopping, all converged (a tolerance of 0 disables its test; ``result.status`` is scipy's code,
    the table ``SCIPY_STATUS``):

    * ``xtol`` (status 3): the parameters have settled: a step changes z by at most ``xtol · (‖z‖ + xtol)``
      (``parameter_tolerance``); for LM a rejected step counts too, since every later trial from
      that point is shorter still (``rejected_step_tolerance``, MINPACK's ``xtol``).
    * ``gtol`` (status 1): the largest cosine between the residual vector and a column of the Jacobian is
      at most this (``gradient_cosine_tolerance``, MINPACK's and scipy's ``lm`` ``gtol``; scipy's ``trf``
      tests ``max |g|`` instead); the optimizer's absolute ``gradient_tolerance`` is 0 (an exactly zero gradient).
    * ``ftol`` (status 2): a step lowered the cost by at most this fraction (``function_tolerance``); off
      by default, because a small decrease does not mean the parameters have settled (below).
    * ``‖r‖ <= eps ‖fun(x0)‖`` (``cost_tolerance``, status 1): a residual that is zero in working precision,
      the stop of a zero-residual fit converging linearly to x = 0 (Powell's singular function).

    A stop on ``xtol`` that the ``gtol`` test does not confirm (a column's cosine is still above
    ``gtol``) is checked by a restart: the same solve from that x, the problem made dimensionless
    there (``‖fun(x)‖``, and ``|x|`` for ``x_scale="start"``) and the damping (LM) or trust radius
    (dogleg) fresh.  Restarts continue while they end on ``xtol`` short of ``gtol`` and move x by
    more than ``xtol``, within ``max_iterations`` in all (``iterations``, ``nfev``, ``njev`` and
    ``history`` count every run).  A restart whose steps are all rejected confirms the stop before
    it, which is then the result.  Gauss-Newton, with no damping to renew, is never restarted.
    A restart is ``least_squares`` called again from x: what is defined on the dimensionless problem
    (``cost_tolerance``'s ``eps ‖fun(x)‖``, absolute options such as ``gradient_tolerance``) is x's.

    Why, measured on the NIST StRD suite (27 problems x 2 starts; ``tests/test_nist_strd.py``,
    ``benchmarks/nist_strd.py``; the earlier defaults reached LRE >= 4 from 46 of the 54 starts, 49
    with 1,000 iterations; these reach all 54):

    * ENSO stopped with 3 correct digits in b8 when a step lowered the cost by less than 1e-8 of it:
      a cost ε above the minimum leaves a parameter off by ~``sqrt(ε (m - n))`` standard errors, and
      b8's standard error is 2.4 times b8.  The parameter and cosine tests wait for x itself.
    * The absolute gradient test (1e-8) stopped the small-residual Lanczos and Roszman1 fits with
      4-5 digits: its scale is the residuals' units.  The cosine test has none.
    * Marquardt's ``D = diag(JᵀJ)`` lets a parameter whose Jacobian column is small take a huge
      relative step: from BoxBOD's Start 1 b2 goes from 1 to ~90, where ``exp(-b2 x)`` vanishes and F
      stays on the plateau Σ(y - ȳ)²; MINPACK's guard, the running maximum of D, remembers the
      start's curvature instead: from MGH10's Start 1 (b1 -> 1e-47 along the curved valley) it
      took 6,186 iterations.  Levenberg damping in z takes ~220 there, 20 on BoxBOD.
    * ``max_iterations`` 1000 leaves room for those valleys (MGH10 ~220, Bennett5 ~300).
    * MGH17 from Start 1 met ``xtol`` after 72 iterations on the plateau F = 0.0245 (certified
      5.46e-5), where b5's Jacobian column (norm ~4e-9) still has cosine 0.57 with the residuals.
      λ is in units of ``‖fun(x0)‖²``: its 3.4e-5 there is ~120 in units of the plateau's
      ``‖fun(x)‖²``, and the steps shrank below ``xtol`` (3e-9 in z) with b5 in place (with
      ``xtol=0`` λ freezes once the predicted decrease is below the cost's rounding: 1,000
      iterations on the plateau).  The restart's first step, at λ = 1e-3, is 1e4 times longer,
      Nielsen's update lowers λ from there, and b5 leaves the plateau: the certified values
      (LRE >= 7.2) after 139 iterations in all (scipy's ``lm``: 594 evaluations).  Of the other 53
      starts three restart, once each, for one more iteration (Lanczos1's two, BoxBOD's Start 1).

    Other keyword options go to the optimizer's config and override these choices (e.g.
    ``damping="marquardt"``, ``initial_damping=1e-4``, ``gradient_tolerance=1e-10`` or
    ``linear_solver="cg"``; default ``"dense"``).  ``result.history`` records the dimensionless
    solve (steps in the z of each run, costs in units of ``‖fun(x0)‖²``, iterations numbered on
    across restarts); ``result.cost`` is in ``fun``'s units.

    A non-finite residual or Jacobian raises ``slam.NonFiniteError`` (see ``slam.solve``); with
    ``method="gn"`` a rank-deficient Jacobian gives minimum-norm steps and ``converged=False``.
    """
    if method not in ("lm", "gn", "dogleg"):
        hint = (" (scipy's 'trf' and 'dogbox' are not implemented: there are no bounds here)"
                if method in ("trf", "dogbox") else "")
        raise ValueError(f"method must be 'lm', 'gn' or 'dogleg', got {method!r}{hint}")
    optimizer = {"lm": LevenbergMarquardt, "gn": GaussNewton, "dogleg": Dogleg}[method]
    _check_options(options, optimizer)
    if jac is not None and not callable(jac) and jac not in _FINITE_DIFFERENCES:
        raise ValueError(f"jac must be None, a callable, '2-point', '3-point' or 'cs', got {jac!r}")
    if max_nfev is not None:
        if max_iterations is not None:
            raise ValueError("give max_iterations or max_nfev, not both (max_iterations = max_nfev - 1)")
        if not max_nfev >= 1:
            raise ValueError(f"max_nfev must be >= 1, got {max_nfev}")
        max_iterations = int(max_nfev) - 1
    max_iterations = 1000 if max_iterations is None else max_iterations
    ftol, xtol, gtol = (0.0 if t is None else float(t) for t in (ftol, xtol, gtol))
    x_scale = "start" if x_scale is None else x_scale
    kwargs = {} if kwargs is None else kwargs
    name = getattr(fun, "__name__", "fun")

    def user_fun(x: Any) -> Any:
        return fun(x, *args, **kwargs)

    # Which convention fun follows: a tensor x0 says torch; otherwise fun itself, asked with an ndarray.
    given_ndarray, numpy_fun, probe, failure = isinstance(x0, np.ndarray), False, None, None
    if not isinstance(x0, Tensor):
        start = np.asarray(x0)
        if np.iscomplexobj(start):
            raise ValueError("x0 must be real")
        start = np.atleast_1d(start.astype(np.float64))
        if start.ndim != 1:
            raise ValueError(f"x0 must be a 1-D array, got shape {start.shape}")
        try:
            probe = user_fun(start.copy())
        except Exception as error:  # e.g. a torch function given an ndarray: called again with a tensor below
            failure = error
        numpy_fun = failure is None and not isinstance(probe, Tensor)
        x0 = torch.from_numpy(start)
    if x0.ndim != 1:
        raise ValueError(f"x0 must be a 1-D tensor, got shape {tuple(x0.shape)}")
    if diff_step is not None and not (isinstance(jac, str) or (jac is None and numpy_fun)):
        raise ValueError("diff_step is the relative step of finite differences; the Jacobian here is "
                         + ("the given jac" if callable(jac) else "autograd's (jac='2-point' is finite differences)"))
    if numpy_fun:
        evaluate, raw = _numpy_functions(user_fun, start, _residual_array(probe))
        jacobian = _numpy_jacobian(jac, args, kwargs, raw, diff_step)
    else:
        evaluate = raw = user_fun
        jacobian = _torch_jacobian(jac, args, kwargs, raw, diff_step)
    try:
        r0 = evaluate(x0.detach())
    except Exception as error:
        if failure is not None:
            error.add_note(f"least_squares called fun first with an ndarray x0 (scipy's contract), which raised "
                           f"{type(failure).__name__}: {failure}")
        raise
    if not isinstance(r0, Tensor):
        raise TypeError(f"fun returned {type(r0).__name__} for a tensor x0: a torch function returns tensors; "
                        "a NumPy function takes an ndarray or list x0")
    # ``fun`` may close over tensors that require grad (data, network outputs); the problem
    # cannot see them, so ask ``fun`` itself: does its value at a constant x carry a graph?
    closes_over_grad = torch.is_grad_enabled() and bool(r0.requires_grad)
    # A residual vector shorter than eps times the starting one is zero in working precision: the
    # stop for zero-residual problems whose iterates shrink toward x = 0 (no step is small relative to z).
    zero_cost = 0.5 * torch.finfo(x0.dtype).eps ** 2
    settings: dict[str, object] = dict(
        function_tolerance=ftol, parameter_tolerance=xtol, gradient_tolerance=0.0,
        gradient_cosine_tolerance=gtol, cost_tolerance=zero_cost, linear_solver="dense",
    )
    if method == "lm":
        settings.update(damping="levenberg", initial_damping=1e-3, rejected_step_tolerance=True)
    settings.update(options)

    def solve_from(start: Tensor, f0: Tensor) -> _Run:
        left = max_iterations - sum(r.iterations for r in runs)
        config = optimizer(max_iterations=left, **settings)  # type: ignore[arg-type]
        return _solve_dimensionless(evaluate, jacobian, start, f0, x_scale, name, config, backward,
                                    closes_over_grad or start.requires_grad)

    runs: list[_Run] = []
    runs.append(solve_from(x0, r0.detach()))
    # Gauss-Newton has no damping to renew: its restart would take the step it stopped on.
    while method != "gn" and _restart(runs[-1], len(runs) > 1, max_iterations - sum(r.iterations for r in runs),
                                      gtol, xtol):
        runs.append(solve_from(runs[-1].x, runs[-1].f))
    # A restart that could not move x (every step rejected) confirms the stop before it.
    last = runs[-2] if len(runs) > 1 and not runs[-1].converged and _settled(runs[-1], xtol) else runs[-1]
    x, f, J = last.x, last.f, last.J
    grad = J.mT @ f
    termination = last.termination
    status, message = SCIPY_STATUS[termination], _message(termination)
    numpy_out = given_ndarray or numpy_fun
    out: Callable[[Tensor], Array] = (lambda t: t.detach().cpu().numpy()) if numpy_out else (lambda t: t)
    return LeastSquaresResult(
        x=out(x), cost=0.5 * float(f @ f), fun=out(f), iterations=sum(r.iterations for r in runs),
        converged=last.converged, termination=termination, history=_history(runs), jac=out(J),
        grad=out(grad), optimality=float(grad.abs().max()) if grad.numel() else 0.0,
        active_mask=np.zeros(x.shape[0], dtype=int), nfev=1 + sum(r.nfev for r in runs),
        njev=sum(r.njev for r in runs), status=status, message=message, success=status > 0,
    )


@dataclasses.dataclass(frozen=True)
class _Run:
    """One solve of the dimensionless problem set up at its start (``_solve_dimensionless``)."""

    start: Tensor
    x: Tensor
    """The solution, with the solve's graph."""
    f: Tensor
    """``fun(x)``, detached."""
    J: Tensor
    """``(m, n)`` Jacobian at x, detached."""
    result: SolveResult
    scale: Tensor
    unit: float
    nfev: int
    """The solver's evaluations of ``fun`` (not the start's)."""
    njev: int

    @property
    def iterations(self) -> int:
        return int(self.result.iterations[0])

    @property
    def termination(self) -> Termination:
        return self.result.termination[0]

    @property
    def converged(self) -> bool:
        return bool(self.result.converged[0])


def _solve_dimensionless(evaluate: Callable[[Tensor], Tensor], jacobian: Callable[[Tensor, Tensor], Tensor] | None,
                         x0: Tensor, r0: Tensor, x_scale: object, name: str, config: Any,
                         backward: BackwardMode | None, differentiable: bool) -> _Run:
    """Solve from ``x0`` (where ``fun`` is ``r0``) in z = x / scale, residuals in units of ``‖r0‖``, and
    evaluate the report's residuals and Jacobian at the solution."""
    scale = _scale(x_scale, x0)
    unit = float(r0.norm())
    unit = unit if 0.0 < unit < float("inf") else 1.0
    variable = Variable(Euclidean((x0 / scale).unsqueeze(0)), name="x")  # holds z; errors name "x[0]"
    cost = _VectorCost(variable[[0]], evaluate, jacobian, scale, unit, name)
    result = solve(Problem([cost]), config, backward, differentiable=differentiable)
    x = scale * result[variable].data.reshape(-1)
    with torch.no_grad():  # scipy's fields at x (not counted: they are the report, not the solve)
        at = x.detach()
        f = evaluate(at).detach()
        if cost.last is not None and torch.equal(cost.last[0], at):  # the last linearization's (always, today)
            J = cost.last[1]
        elif jacobian is not None:
            J = jacobian(at, f)
        else:
            _, (J,) = autodiff_jacobians(lambda v: evaluate(v.data.reshape(-1)).reshape(1, -1),
                                         (Euclidean(at.unsqueeze(0)),), {})
        J = J.reshape(f.shape[0], at.shape[0]).detach()
    return _Run(x0, x, f, J, result, scale, unit, cost.nfev, cost.njev)


def _restart(run: _Run, restarted: bool, iterations_left: int, gtol: float, xtol: float) -> bool:
    """Whether to solve again from ``run``'s solution: it stopped on the parameter tolerance short of the
    gradient test (a column of the Jacobian still has a cosine above ``gtol`` with the residuals), and
    it is not itself a restart that left x where it was (within ``xtol``)."""
    if run.termination is not Termination.PARAMETER_TOLERANCE or iterations_left <= 0 or gtol <= 0:
        return False
    if restarted and _settled(run, xtol):
        return False
    return _gradient_cosine(run.J, run.f) > gtol


def _settled(run: _Run, xtol: float) -> bool:
    """``run`` moved x by at most ``xtol`` (the parameter test, on the whole run, in its z)."""
    z, moved = run.x.detach() / run.scale, (run.x.detach() - run.start.detach()) / run.scale
    return float(moved.norm()) <= xtol * (float(z.norm()) + xtol)


def _gradient_cosine(J: Tensor, f: Tensor) -> float:
    """``max_j |Jⱼᵀ f| / (‖Jⱼ‖ ‖f‖)`` over nonzero columns (``gradient_cosine_tolerance``'s test)."""
    norms = J.norm(dim=0) * f.norm()
    positive = norms > 0
    return float(((J.mT @ f).abs()[positive] / norms[positive]).max()) if bool(positive.any()) else 0.0


def _history(runs: list[_Run]) -> list[IterationRecord]:
    """The runs' records in one list: iterations numbered on, costs in the first run's units."""
    records, offset, seconds = [], 0, 0.0
    for run in runs:
        ratio = (run.unit / runs[0].unit) ** 2
        for record in run.result.history:
            records.append(dataclasses.replace(
                record, iteration=record.iteration + offset, cost=record.cost * ratio, seconds=record.seconds + seconds,
                decrease=None if record.decrease is None else record.decrease * ratio))
        offset += run.iterations
        seconds = records[-1].seconds if records else seconds
    return records


def _check_options(options: dict[str, Any], optimizer: type) -> None:
    """Drop scipy's keywords given at values that ask for nothing; raise one error naming any other
    keyword that is neither scipy's (supported) nor a field of ``optimizer``'s config."""
    fields = {f.name for f in dataclasses.fields(optimizer)}
    unknown = sorted(k for k in options if k not in fields and k not in _SCIPY_NO_OPS and k != "f_scale")
    if unknown:
        raise TypeError(f"least_squares() got unexpected keyword argument(s) {', '.join(map(repr, unknown))}: neither "
                        f"scipy's nor a field of {optimizer.__name__} ({', '.join(sorted(fields))})")
    unsupported = [f"{k}={options[k]!r} ({why})" for k, (ok, why) in _SCIPY_NO_OPS.items()
                   if k in options and not ok(options[k])]
    if "f_scale" in options and options["f_scale"] != 1.0:
        unsupported.append(f"f_scale={options['f_scale']!r} (f_scale scales a robust loss; loss is 'linear')")
    if unsupported:
        raise ValueError("least_squares does not support scipy's " + "; ".join(unsupported))
    for k in [*_SCIPY_NO_OPS, "f_scale"]:
        options.pop(k, None)


def _residual_array(value: Any) -> np.ndarray:
    """A NumPy function's residuals as a 1-D float64 array of our own (complex kept, for the complex step)."""
    a = np.atleast_1d(np.array(value))  # a copy: fun may reuse its output buffer
    if a.ndim != 1:
        raise ValueError(f"fun must return a 1-D array of residuals, got shape {a.shape}")
    return a if np.iscomplexobj(a) else a.astype(np.float64, copy=False)


def _numpy_functions(user_fun: Callable[[np.ndarray], Any], start: np.ndarray,
                     f0: np.ndarray) -> tuple[Callable[[Tensor], Tensor], Callable[[Tensor], Tensor]]:
    """A NumPy ``fun`` as the solver's tensor functions: ``evaluate`` remembers the last point (the
    solver evaluates an accepted trial point again with its Jacobian: one call of ``fun``, as scipy
    makes), ``raw`` is for finite differences."""
    last = [start.tobytes(), torch.from_numpy(f0)]

    def raw(x: Tensor) -> Tensor:
        return torch.from_numpy(_residual_array(user_fun(x.detach().cpu().numpy().copy())))

    def evaluate(x: Tensor) -> Tensor:
        key = x.detach().cpu().numpy().tobytes()
        if key != last[0]:
            last[:] = key, raw(x)
        return last[1]

    return evaluate, raw


def _dense_jacobian(value: Any, f: Tensor, x: Tensor) -> Tensor:
    """``jac``'s value as an ``(m, n)`` tensor like ``x`` (a scipy sparse matrix densified)."""
    if isinstance(value, Tensor):
        J = value.to(dtype=x.dtype, device=x.device)
    else:
        value = value.toarray() if hasattr(value, "toarray") else value
        J = torch.tensor(np.array(value, dtype=np.float64), dtype=x.dtype, device=x.device)  # a copy
    J = J.reshape(1, -1) if J.ndim == 1 and f.shape[0] == 1 else J
    if tuple(J.shape) != (f.shape[0], x.shape[0]):
        raise ValueError(f"jac must return the (m, n) = {(f.shape[0], x.shape[0])} Jacobian, "
                         f"got shape {tuple(J.shape)}")
    return J


def _torch_jacobian(jac: Any, args: tuple[Any, ...], kwargs: dict[str, Any], raw: Callable[[Tensor], Tensor],
                    diff_step: Any) -> Callable[[Tensor, Tensor], Tensor] | None:
    """A torch ``fun``'s ``(x, f) -> (m, n)`` Jacobian: None (autograd), the user's, or finite differences."""
    if jac is None:
        return None
    if callable(jac):
        return lambda x, f: _dense_jacobian(jac(x, *args, **kwargs), f, x)
    return lambda x, f: _finite_differences(raw, x, f, jac, diff_step)


def _numpy_jacobian(jac: Any, args: tuple[Any, ...], kwargs: dict[str, Any], raw: Callable[[Tensor], Tensor],
                    diff_step: Any) -> Callable[[Tensor, Tensor], Tensor]:
    """A NumPy ``fun``'s ``(x, f) -> (m, n)`` Jacobian: the user's ``jac`` on ndarrays, or finite differences
    (scipy's default ``"2-point"``)."""
    if callable(jac):
        return lambda x, f: _dense_jacobian(jac(x.detach().cpu().numpy().copy(), *args, **kwargs), f, x)
    method = "2-point" if jac is None else jac
    return lambda x, f: _finite_differences(raw, x, f, method, diff_step)


def _finite_differences(fun: Callable[[Tensor], Tensor], x: Tensor, f: Tensor, method: str, diff_step: Any) -> Tensor:
    """scipy's dense finite-difference Jacobian ``(m, n)`` (``scipy.optimize._numdiff``, no bounds): steps
    ``h = r sign(x) max(1, |x|)`` (``sign(0) = 1``) with ``r = sqrt(eps)`` for ``"2-point"`` (forward) and
    ``"cs"`` (complex step, ``Im fun(x + ih) / h``) and ``eps^(1/3)`` for ``"3-point"`` (central); a
    ``diff_step`` gives ``h = diff_step sign(x) |x|`` where that is not zero.  The divisor is the step
    as represented, ``(x + h) - x``."""
    eps = torch.finfo(x.dtype).eps
    rel = eps ** (1.0 / 3.0) if method == "3-point" else math.sqrt(eps)
    sign = torch.where(x >= 0, 1.0, -1.0).to(x.dtype)
    h = rel * sign * x.abs().clamp_min(1.0)
    if diff_step is not None:
        given = torch.as_tensor(diff_step, dtype=x.dtype, device=x.device) * sign * x.abs()
        h = torch.where((x + given) - x == 0, h, given)
    columns = []
    for j in range(x.shape[0]):
        if method == "cs":
            xc = x.to(torch.complex128 if x.dtype == torch.float64 else torch.complex64).clone()
            xc[j] = xc[j] + 1j * h[j]
            value = fun(xc)
            if not value.is_complex():
                raise ValueError("jac='cs' (the complex step) needs fun to take complex x and return complex residuals")
            columns.append(value.imag.to(x.dtype) / h[j])
            continue
        upper = x.clone()
        upper[j] = x[j] + h[j]
        if method == "2-point":
            columns.append((fun(upper) - f) / (upper[j] - x[j]))
        else:
            lower = x.clone()
            lower[j] = x[j] - h[j]
            columns.append((fun(upper) - fun(lower)) / (upper[j] - lower[j]))
    return torch.stack(columns, dim=-1) if columns else f.new_zeros(f.shape[0], 0)


def _scale(x_scale: object, x0: Tensor) -> Tensor:
    """The ``(n,)`` positive scale of ``least_squares``'s parameters (constant: no graph)."""
    if isinstance(x_scale, str):
        if x_scale != "start":
            raise ValueError(f"x_scale must be 'start', a positive float or an (n,) array, got {x_scale!r}")
        magnitude = x0.detach().abs()
        return torch.where(magnitude > 0, magnitude, torch.ones_like(magnitude))
    scale = torch.as_tensor(np.asarray(x_scale, dtype=np.float64) if not isinstance(x_scale, Tensor) else x_scale,
                            dtype=x0.dtype, device=x0.device).detach().expand(x0.shape).clone()
    if not bool((scale > 0).all()) or not bool(torch.isfinite(scale).all()):
        raise ValueError("x_scale must be positive and finite")
    return scale
