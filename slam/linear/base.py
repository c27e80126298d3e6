"""The linear-solver interface: factorize the (damped) normal equations once, solve many right-hand sides.

The optimizers hand a solver the values of ``H`` (lower triangle, in the
``Structure``'s sparsity pattern) for a batch of B problems; the solver returns a
``Factorization`` that solves ``H x = b``, differentiably in both ``H``'s values
and ``b`` (so unrolled optimization can backpropagate through it), and that the
implicit backward pass reuses for its own solves.  A solver keeps whatever it
can reuse across iterations (orderings, symbolic factorizations) in
``structure.shared_cache`` (stateless, per shape) and its stateful objects in ``structure.solver_cache``
(per problem).
"""

from __future__ import annotations

import abc
import dataclasses
from typing import Any

import torch
from torch import Tensor

from ..structure import Structure


class Factorization(abc.ABC):
    """A factorized batch of matrices ``H_b``."""

    ok: Tensor
    """bool ``(B,)``, the same for every solver: True where ``H_b`` is finite, was factorized as
    positive definite and ``solve`` gives ``H_b⁻¹ rhs`` (for an iterative solver: without breakdown,
    to its tolerance).  Two optional masks say what ``solve`` returns where it is False:
    ``minimum_norm`` (dense: the minimum-norm least-squares solution of a singular ``H_b``) and
    ``inexact`` (iterative: a finite iterate that missed the tolerance)."""

    @abc.abstractmethod
    def solve(self, rhs: Tensor) -> Tensor:
        """``H⁻¹ rhs`` for ``rhs: (B, n)``; never non-finite where ``H`` and ``rhs`` are finite (zeros
        where ``ok`` is False and no fallback applies).  Differentiable in ``H``'s values and ``rhs``."""

    def solve_with_summary(self, rhs: Tensor) -> tuple[Tensor, LinearSolveSummary]:
        """``(solve(rhs), LinearSolveSummary)``: the solution and what it is (read after the solve, since
        an iterative solver knows its outcome only then)."""
        x = self.solve(rhs)
        ok = self.ok
        none = torch.zeros_like(ok)
        minimum_norm, inexact = getattr(self, "minimum_norm", none), getattr(self, "inexact", none)
        return x, LinearSolveSummary(ok=ok, minimum_norm=minimum_norm & ~ok, inexact=inexact & ~ok,
                                     iterations=getattr(self, "iterations", None))


@dataclasses.dataclass(frozen=True)
class LinearSolveSummary:
    """What one ``solve`` returned, per problem of the batch (bool tensors ``(B,)``).

    Exactly one of ``ok``, ``minimum_norm``, ``inexact`` or none is True for each problem: ``ok`` the
    exact solution of a positive-definite system; ``minimum_norm`` the minimum-norm least-squares
    solution of a singular one (dense); ``inexact`` a finite iterate that missed the tolerance
    (iterative); none: the solve failed (the returned rows are zeros or unusable).
    """

    ok: Tensor
    minimum_norm: Tensor
    inexact: Tensor
    iterations: Tensor | None = None
    """``(B,)`` iterations of an iterative solver (None for direct ones)."""

    @property
    def failed(self) -> Tensor:
        return ~(self.ok | self.minimum_norm | self.inexact)


class LinearSolver(abc.ABC):
    """Factorizes ``H`` given as its lower-triangle values ``(B, nnz)`` in ``structure.pattern``.

    The protocol, in the spirit of Ceres': a solver is configured by its frozen ``options`` (a
    dataclass of the solver's own ``Options`` type; the constructor's keywords build it);
    ``analyze(structure)`` does the work that depends on the sparsity only (orderings, symbolic
    factorizations, block layouts; otherwise the first ``factorize`` does it); ``factorize``
    returns a ``Factorization`` whose ``ok`` means the same for every solver; and
    ``Factorization.solve_with_summary`` returns the solution with a ``LinearSolveSummary``.
    """

    name: str = "linear solver"

    @dataclasses.dataclass(frozen=True)
    class Options:
        """A solver without settings."""

    options: Any = Options()

    @abc.abstractmethod
    def factorize(self, structure: Structure, values: Tensor) -> Factorization: ...

    def analyze(self, structure: Structure) -> LinearSolver:
        """Do the sparsity-only work for ``structure`` now (default: nothing to do).  Returns self."""
        return self

    def __getattr__(self, name: str) -> Any:
        """The options' fields read as the solver's attributes (``solver.tolerance``)."""
        options = self.__dict__.get("options")
        if options is not None and name in {f.name for f in dataclasses.fields(options)}:
            return getattr(options, name)
        raise AttributeError(f"{type(self).__name__!r} has no attribute {name!r}")

    def prepare(self, problem: Any) -> LinearSolver:
        """This solver bound to ``problem`` (the optimizers call it once per solve); solvers that need
        to know the problem's variables (``SchurComplement``) return a bound copy."""
        return self

    def __repr__(self) -> str:
        fields = ", ".join(f"{f.name}={getattr(self.options, f.name)!r}" for f in dataclasses.fields(self.options))
        return f"{type(self).__name__}({fields})"
