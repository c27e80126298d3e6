"""``slam.solve``: Gauss-Newton / Levenberg-Marquardt / dogleg over a batch of problems, differentiable.

The optimizer is a step strategy (``slam.optim.steps``) run by the shared loop
(``slam.optim.loop``).  Every problem b of the batch keeps its own damping or trust radius,
acceptance decisions and termination (``Termination``); the iteration stops when all have stopped.  How gradients reach the
inputs (measurements, weights, robust scales, initial values) is the backward
mode: ``Unroll``, ``Truncated(k)`` or ``Implicit`` (the default).  When nothing
requires grad, the solve runs without recording a graph.

Failures are never reported as convergence:

* A non-finite cost, residual, Jacobian or normal-equation entry at the initial point or at an
  accepted point raises ``NonFiniteError`` naming the cost, instance, problem and variables.
  Levenberg-Marquardt and dogleg reject a trial point whose cost is not finite (the damping grows
  or the region shrinks, as in Ceres), but raise ``NonFiniteError`` (naming the term at the last such trial) when a problem
  then ends without converging after such rejections, or meets a step or cost-change tolerance
  at the edge of the non-finite region (checked by one more step from the solution at the initial
  damping or radius: finite at a minimum, non-finite at such an edge).  Gauss-Newton takes every step, so a
  non-finite cost there raises at once.
* A linear solve that fails (``Factorization.ok`` False: not positive definite, non-finite, an
  iterative solve that broke down) or returns a non-finite step is never taken: LM rejects it;
  Gauss-Newton raises ``SingularSystemError``.  (An iterative solve that only missed its
  tolerance, ``inexact``, gives an inexact Newton step, which is taken.)  Where the solver has
  a minimum-norm fallback (``DenseCholesky``), GN takes the minimum-norm step of the
  rank-deficient system, and a problem whose last system was rank-deficient ends with
  ``converged`` False and a termination that says so (its solution is not unique).
"""

from __future__ import annotations

import functools
import logging
import time
from typing import Any, Sequence

import torch
from ..linear.base import LinearSolver
from ..problem import Problem, Values
from .callbacks import History, LogIterations, ProgressBar, reported_quantity
from .config import BackwardMode, Dogleg, GaussNewton, Implicit, LevenbergMarquardt, Truncated, Unroll
from .gauss_newton import SingularSystemError, gauss_newton_tail
from .implicit import implicit_solution
from .inputs import problem_tensors
from .loop import Subscriber, make_strategy, run
from .result import SolveResult

log = logging.getLogger("slam")

Optimizer = GaussNewton | LevenbergMarquardt | Dogleg

__all__ = ["solve", "prepare", "make_linear_solver", "SingularSystemError"]


def make_linear_solver(choice: Any, problem: Problem) -> LinearSolver:
    """The ``LinearSolver`` for a config's ``linear_solver`` field (see ``_Common.linear_solver``)."""
    if isinstance(choice, LinearSolver):
        return choice.prepare(problem)
    if choice == "auto":
        structure, have_cholmod = problem.structure, _have_cholmod()
        solver, reason = choose_linear_solver(structure.n, problem.device, have_cholmod=have_cholmod)
        from ..linear.sparse import SparseCholesky

        if reason and isinstance(solver, SparseCholesky):
            # Name the factorization that will run: the block one where the unknowns come in complete
            # blocks of one size (what BatchedSparseCholesky._block_analysis tests), once per shape.
            key = ("auto-linear-solver", "block-size")
            if key not in structure.shared_cache:
                from liegeo._kernels import numba_available

                found = None
                if numba_available():
                    from ..linear._block_cholesky import find_blocks

                    found = find_blocks(structure.pattern.indptr, structure.pattern.indices)
                structure.shared_cache[key] = found[0] if found is not None else 1
            solver, reason = choose_linear_solver(structure.n, problem.device, have_cholmod=have_cholmod,
                                                  block_size=structure.shared_cache[key])
        if reason:
            _log_choice_once(reason)
        return solver
    from ..linear.cg import ConjugateGradient
    from ..linear.dense import DenseCholesky
    from ..linear.sparse import SparseCholesky

    return {"dense": DenseCholesky, "cholmod": SparseCholesky, "cg": ConjugateGradient}[choice]()


def choose_linear_solver(n: int, device: torch.device | str, *, have_cholmod: bool,
                         block_size: int | None = None) -> tuple[LinearSolver, str]:
    """``linear_solver="auto"``: the solver for ``n`` unknowns on ``device``, and the line to log naming it
    and why ("" when the choice is the obvious one: dense Cholesky of a small system).  ``block_size``:
    the size d of the complete d x d blocks the unknowns come in where the numba block factorization
    applies (6 or 3 for pose graphs), 1 where it does not, None where not known (the line then names
    both).  A function of its arguments only, so that the choice for a GPU can be checked on a
    machine without one."""
    from ..linear.cg import ConjugateGradient
    from ..linear.dense import DenseCholesky
    from ..linear.sparse import SparseCholesky

    # Measured (benchmarks/solver.py, SE(3) grids): CHOLMOD equals dense Cholesky at 90 free
    # dimensions and is 6x faster at 594; dense stays the choice off the CPU up to 1,000.
    device = torch.device(device)
    cpu = device.type == "cpu"
    if n <= (100 if cpu else 1000):
        return DenseCholesky(), ""
    if not cpu:
        return ConjugateGradient(), (f"the sparse system is not on the CPU: preconditioned conjugate gradients on {device} "
                                     "(a direct sparse factorization would run on the CPU)")
    blocks = f"the numba block sparse Cholesky ({block_size}x{block_size} blocks)" if block_size and block_size > 1 else ""
    if not have_cholmod:
        # From wheels only: the block factorization on SuperLU's minimum-degree ordering (pose graphs),
        # SciPy's SuperLU with symmetric pivots otherwise; never PCG on the CPU (sphere2500: ~500x
        # CHOLMOD's time with it).  Whole solves of the shared pose graphs in 0.8-1.5x CHOLMOD's
        # time (benchmarks/solvers_without_cholmod.py, 1 thread).
        what = (f"{blocks} on SuperLU's minimum-degree ordering" if blocks else
                "SciPy's SuperLU with symmetric pivots" if block_size == 1 else
                "the numba block sparse Cholesky on SuperLU's ordering for block patterns, else SciPy's SuperLU")
        return SparseCholesky(), (f"{what}, from wheels: CHOLMOD (scikit-sparse, an optional accelerator built "
                                  "against SuiteSparse) is not installed")
    what = (f"{blocks} on CHOLMOD's ordering where the fill is low, else CHOLMOD's supernodal factorization"
            if blocks else "CHOLMOD's sparse Cholesky, simplicial or supernodal by the fill")
    return SparseCholesky(), f"{what} (scikit-sparse is installed)"


def prepare(problem: Problem) -> Problem:
    """Load every compiled kernel a solve of ``problem`` may run (its costs' and groups', ``Problem.prepare``,
    and the sparse factorizations'), so that timed solves (``slam.pgo.optimize``, ``slam.ba.optimize``)
    leave out this start-up work, as they leave out imports.  Analyses (structure, orderings) stay in
    the solve.  Returns the problem."""
    from ..linear.sparse import SparseCholesky

    problem.prepare()
    SparseCholesky.warm_up()
    _have_cholmod()  # the import of scikit-sparse (~10 ms on a process's first solve)
    return problem


@functools.cache
def _log_choice_once(message: str) -> None:
    """One log line per distinct choice per process (a training loop solves thousands of times)."""
    log.info("linear solver: %s", message)


def _have_cholmod() -> bool:
    try:
        import sksparse.cholmod  # noqa: F401
    except ImportError:
        return False
    return True


def solve(
    problem: Problem,
    optimizer: Optimizer | None = None,
    backward: BackwardMode | None = None,
    *,
    differentiable: bool | None = None,
    callbacks: Sequence[Subscriber] = (),
) -> SolveResult:
    """Minimize ``problem``'s cost from its variables' current values.

    Args:
        problem: the costs and variables.
        optimizer: ``LevenbergMarquardt()`` (default), ``GaussNewton()`` or ``Dogleg()`` with its settings.
        backward: how gradients flow to the inputs: ``Implicit()`` (default), ``Unroll()``
            or ``Truncated(k)``.  Irrelevant (and free) when no input requires grad.
        differentiable: build the backward graph.  ``None`` (default) decides from the tensors
            the costs and variables hold; pass ``True`` when a residual closes over tensors
            that require grad, which the problem cannot see.
        callbacks: called with every ``IterationRecord`` (besides the log lines, the progress bar
            of ``progress=True`` and the history, which are subscribers too; ``slam.optim.callbacks``).

    Returns:
        A ``SolveResult``; ``result[variable]`` is that table's solution, differentiable
        with respect to every input that requires grad.  With ``optimizer=slam.GNC(...)``, graduated
        non-convexity around its inner optimizer: ``slam.gnc_solve``'s ``GncResult`` (no known inliers;
        call ``gnc_solve`` to name some).
    """
    from .gnc import GNC, gnc_solve

    if isinstance(optimizer, GNC):
        if backward is not None or callbacks or differentiable:
            raise ValueError("slam.solve with GNC takes no backward, callbacks or differentiable= "
                             "(GNC runs its inner solves itself: slam.gnc_solve)")
        return gnc_solve(problem, optimizer)  # type: ignore[return-value]
    optimizer = optimizer if optimizer is not None else LevenbergMarquardt()
    backward = backward if backward is not None else Implicit()
    solver = make_linear_solver(optimizer.linear_solver, problem)
    start = time.perf_counter()
    solver.analyze(problem.structure)  # the sparsity-only work, once per structure
    values = problem.initial_values()
    # Inputs the problem can see: the implicit backward finds them itself (and builds its graph only
    # when a backward pass runs); a residual closing over others (differentiable=True) needs the graph now.
    visible = differentiable is None
    if differentiable is None:
        differentiable = any(t.requires_grad for t in problem_tensors(problem))
    differentiable = differentiable and torch.is_grad_enabled()

    history = History()
    subscribers: list[Subscriber] = [history, LogIterations(), *callbacks]
    bar = ProgressBar(optimizer.max_iterations) if optimizer.progress else None
    if bar is not None:
        subscribers.append(bar)
    strategy = make_strategy(optimizer, problem, solver)
    try:
        if not differentiable or not isinstance(backward, Unroll):
            with torch.no_grad():
                state = run(problem, strategy, [v.detach() for v in values], start, subscribers)
        else:
            state = run(problem, strategy, values, start, subscribers)
    finally:
        if bar is not None:
            bar.close()
    solution = state.values
    if differentiable and not isinstance(backward, Unroll):
        # Restart the graph at the solution, but keep fixed elements as the inputs they are: the
        # solution depends on them, and they are part of the output.
        restart = _with_fixed_inputs(problem, [v.detach() for v in solution], values)
        if isinstance(backward, Truncated):
            solution = gauss_newton_tail(problem, solver, restart, backward.iterations)
        else:
            solution = implicit_solution(problem, restart, solver, backward, h=state.h, g=state.g, lazy=visible)

    with torch.no_grad():
        final_cost = problem.cost(solution) if solution is not state.values else state.cost
    seconds = time.perf_counter() - start
    quantity = reported_quantity()  # the name (cost, chi2, robust chi2) the iteration lines used
    for b in range(problem.batch_size) if problem.batch_size <= 4 else ():  # "problem b:" only for a batch
        log.info("%s: %s after %d iterations, %s %.6e -> %.6e", f"problem {b}" if problem.batch_size > 1 else "solve",
                 state.termination[b], int(state.iterations[b]), quantity.name,
                 quantity.of(float(state.initial_cost[b])), quantity.of(float(final_cost[b])))
    out = {}
    for variable, value in zip(problem.variables, solution):
        out[variable] = value if variable.batch_size is not None or problem.batched else value[0]
    return SolveResult(
        values=out, cost=final_cost, initial_cost=state.initial_cost, iterations=state.iterations,
        converged=state.converged, termination=state.termination, history=list(history), solve_seconds=seconds,
        problem=problem,
    )


def _with_fixed_inputs(problem: Problem, solution: Values, inputs: Values) -> Values:
    """``solution`` with its fixed elements taken from ``inputs`` (equal values, inputs' graph)."""
    out = []
    for variable, value, original in zip(problem.variables, solution, inputs):
        if bool(variable.fixed.any()):
            mask = variable.fixed.to(value.device).view(1, -1, 1)
            value = value._new(torch.where(mask, original.data, value.data))
        out.append(value)
    return out
