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
from typing import Any

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
        where ``ok`` is False and no fallback applies)."""


class LinearSolver(abc.ABC):
    """Factorizes ``H`` given as its lower-triangle values ``(B, nnz)`` in ``structure.pattern``."""

    name: str = "linear solver"

    @abc.abstractmethod
    def factorize(self, structure: Structure, values: Tensor) -> Factorization: ...

    def prepare(self, problem: Any) -> LinearSolver:
        """This solver bound to ``problem`` (the optimizers call it once per solve); solvers that need
        to know the problem's variables (``SchurComplement``) return a bound copy."""
        return self

    def __repr__(self) -> str:
        return type(self).__name__
