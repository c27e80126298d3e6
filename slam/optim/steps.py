"""What an optimizer is to the iteration loop (``slam.optim.loop``): a step strategy.

The loop linearizes, asks the strategy for a step, evaluates the cost at the trial point, lets the
strategy accept or reject it, relinearizes where accepted and applies the common stopping tests.
A strategy holds its own state per problem of the batch (LM's damping, dogleg's trust radius) and
adds its own stops.  Gauss-Newton, Levenberg-Marquardt and Powell's dogleg are the three here; a
new one is one module with a ``StepStrategy`` subclass and a config whose ``strategy`` returns it.

Steps are tensors on the problem's device; what a step is judged by and the strategy's state (one
number per problem) are numpy arrays on the host (``Trial``): the loop brings them over in one
transfer per iteration (no further syncs on a GPU), and the tests and judgement run in numpy.
"""

from __future__ import annotations

import abc
import dataclasses
from typing import Any

import numpy as np
import torch
from torch import Tensor

from ..linear.base import Factorization, LinearSolver
from ..problem import Problem
from .termination import Termination


_HOST_FLOATS = {torch.float16: np.dtype(np.float16), torch.float32: np.dtype(np.float32),
                torch.float64: np.dtype(np.float64)}


def host_dtype(dtype: torch.dtype) -> np.dtype:
    """The numpy dtype that holds per-problem numbers of a ``dtype`` problem exactly (float16, float32
    and float64 as they are; others, which numpy lacks, in float64)."""
    return _HOST_FLOATS.get(dtype, np.dtype(np.float64))


def to_host(*tensors: Tensor) -> list[np.ndarray]:
    """``(B,)`` tensors as numpy arrays on the host (bool stays bool; floating in ``host_dtype``), with
    one transfer for all where they are not on the CPU.  On the CPU the arrays share the tensors'
    memory: neither may be modified in place afterwards."""
    if all(t.device.type == "cpu" for t in tensors):
        return [_cpu_array(t.detach()) for t in tensors]
    floating = next((t.dtype for t in tensors if t.is_floating_point()), torch.float64)
    rows = torch.stack([t.detach().to(floating) for t in tensors]).cpu()
    return [_cpu_array(row.bool() if t.dtype == torch.bool else row.to(t.dtype)) for row, t in zip(rows, tensors)]


def _cpu_array(t: Tensor) -> np.ndarray:
    return t.numpy() if t.dtype == torch.bool or t.dtype in _HOST_FLOATS else t.to(torch.float64).numpy()


def to_device(values: np.ndarray, device: torch.device | str, dtype: torch.dtype | None = None) -> Tensor:
    """A host array (a mask, or per-problem numbers) as a tensor on ``device`` (in ``dtype`` if given)."""
    return torch.from_numpy(values).to(device=device, dtype=dtype)


@dataclasses.dataclass(frozen=True)
class Trial:
    """A trial step as the strategy judges it: ``(B,)`` host arrays (``to_host``)."""

    cost: np.ndarray
    """The cost at the current point."""
    new_cost: np.ndarray
    """The cost at the trial point (may be non-finite)."""
    predicted: np.ndarray | None
    """The decrease the strategy's model predicted (``Proposal.predicted``; None if it has none)."""
    ok: np.ndarray
    """bool: the step could be computed (``Proposal.ok``)."""
    active: np.ndarray
    """bool: the problems still iterating."""
    step_norm: np.ndarray
    """``‖δ‖`` of the step in the tangent space."""


@dataclasses.dataclass(frozen=True)
class Linearization:
    """The normal equations at the current point of every problem: ``h: (B, nnz)`` (lower triangle of
    ``H`` on the structure's pattern), ``g = Jᵀr: (B, n)``, ``cost: (B,)``."""

    h: Tensor
    g: Tensor
    cost: Tensor


@dataclasses.dataclass(frozen=True)
class Proposal:
    """A trial step for every problem of the batch."""

    step: Tensor
    """``(B, n)`` tangent step; zeros where ``ok`` is False (nothing non-finite is retracted)."""
    ok: Tensor
    """bool ``(B,)``: the step could be computed (the linear solve succeeded, the step is finite)."""
    predicted: Tensor | None
    """``(B,)`` decrease of the local quadratic model (None: the strategy does not judge steps)."""


def solved_step(solver: LinearSolver, problem: Problem, matrix: Tensor, g: Tensor) -> tuple[Tensor, Tensor, Factorization]:
    """``-matrix⁻¹ g`` and where it is usable: ``(step (B, n), ok (B,), factorization)``.

    Usable: the factorization succeeded and the step is finite (from finite ``H`` and ``g`` a
    non-finite step is a failed solve), or an iterative solve only missed its tolerance (an inexact
    Newton step, as in Ceres, which a gain ratio then judges).
    """
    factorization = solver.factorize(problem.structure, matrix)
    step = factorization.solve(-g)
    finite = torch.isfinite(step.detach()).all(-1)
    ok = factorization.ok & finite
    inexact = getattr(factorization, "inexact", None)
    if inexact is not None:
        ok = ok | (inexact.to(ok.device) & finite)
    return step, ok, factorization


def masked(step: Tensor, ok: Tensor) -> Tensor:
    """``step`` with zeros where ``ok: (B,)`` is False."""
    return step if bool(ok.all()) else torch.where(ok.unsqueeze(-1), step, torch.zeros_like(step))


def gain_ratio_accepts(cost: np.ndarray, new_cost: np.ndarray, predicted: np.ndarray,
                       min_quality: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(accept, quality, noise)`` for trust-region methods, per problem (host arrays, ``Trial``).

    ``quality`` ρ = actual / predicted decrease.  Near a minimum the predicted decrease falls below
    the cost's rounding error and ρ is noise; such a step is still the model's best, so it is taken
    (``noise``) unless the cost rose by more than rounding (otherwise the solve stalls ~sqrt(eps)
    short of the minimum).  A non-finite trial cost is never accepted.
    """
    with np.errstate(all="ignore"):  # ρ of a zero or non-finite prediction is judged, not warned about
        decrease = cost - new_cost
        quality = decrease / predicted
        rounding = 16.0 * np.finfo(cost.dtype).eps * np.abs(cost)
        noise = (np.abs(predicted) <= rounding) & (decrease >= -rounding)
        accept = np.isfinite(new_cost) & ((quality > min_quality) | noise)
    return accept, quality, noise


class StepStrategy(abc.ABC):
    """One optimizer's step rule, with its state for each problem of the batch (host arrays)."""

    rejects_steps: bool = True
    """Whether steps are judged (and non-finite trial points rejected); Gauss-Newton takes every step."""

    def __init__(self, config: Any, problem: Problem, solver: LinearSolver):
        self.config, self.problem, self.solver = config, problem, solver
        self.structure = problem.structure
        self.diagonal = self.structure.pattern.diagonal.to(problem.device)
        self._zeros = np.zeros(problem.batch_size, dtype=host_dtype(problem.dtype))

    def on_device(self, values: np.ndarray) -> Tensor:
        """A ``(B,)`` host array of the strategy's state as a tensor in the problem's dtype and device."""
        return to_device(values, self.problem.device, self.problem.dtype)

    @abc.abstractmethod
    def propose(self, lin: Linearization, active: np.ndarray) -> Proposal:
        """A step from the current point (``active: (B,)`` bool: the problems still iterating)."""

    def judge(self, trial: Trial) -> np.ndarray:
        """Which active problems take the step (bool ``(B,)``); updates the strategy's state."""
        return trial.active & trial.ok

    def relinearized(self, accepted: np.ndarray, lin: Linearization) -> None:
        """The problems in ``accepted`` moved and were linearized anew (``lin``)."""

    def stops(self, trial: Trial, accepted: np.ndarray) -> list[tuple[np.ndarray, Termination]]:
        """The strategy's own stops after an iteration: ``(mask, why)`` pairs (none by default)."""
        return []

    def next_step_bound(self) -> np.ndarray | None:
        """``(B,)`` an upper bound on the length of the next step, where the strategy knows one (a trust
        radius), else None."""
        return None

    def probe(self, lin: Linearization) -> Proposal:
        """The step a fresh solve would take from ``lin`` (the initial damping or radius); used to tell
        a minimum from the edge of a region where the cost is not finite."""
        return self.propose(lin, np.ones(self.problem.batch_size, dtype=bool))

    def finish(self, converged: np.ndarray, reasons: list[Termination]) -> np.ndarray:
        """Final say on convergence (e.g. Gauss-Newton's rank-deficient systems); returns ``converged``."""
        return converged

    def parameter(self) -> tuple[np.ndarray, np.ndarray | None]:
        """``(damping, radius)`` for the iteration record: λ (0 where there is none) and the trust
        radius (None where there is none)."""
        return self._zeros, None
