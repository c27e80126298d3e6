"""Variables: tables of manifold elements, one tensor per table, each element fixed or free.

A ``Variable`` holds N elements of one ``liegeo`` group (or ``Euclidean``) as a
single batch, ``value.shape == (N,)``, or ``(B, N)`` for B independent problems
that share their structure.  Costs refer to elements by indexing the table:
``poses[i]`` with an int64 index tensor of shape ``(E,)`` gives a
``VariableRef`` to E elements (repeats allowed).
"""

from __future__ import annotations

import dataclasses
import itertools
from typing import Any, Sequence

import torch
from torch import Tensor

from liegeo import LieGroup

_ids = itertools.count()


class Variable:
    """A table of N elements of one manifold, optionally batched over B independent problems.

    Args:
        value: the initial values, a ``LieGroup`` batch of shape ``(N,)`` or ``(B, N)``.
        fixed: elements held constant: a bool mask ``(N,)`` or a sequence of indices.
        name: for messages and logs.

    Hashes by identity: results are keyed by the ``Variable`` object.
    """

    def __init__(self, value: LieGroup, *, fixed: Tensor | Sequence[int] | None = None, name: str | None = None):
        if not isinstance(value, LieGroup):
            raise TypeError(f"Variable needs a liegeo group batch (SE3, SO3, ..., Euclidean), got {type(value).__name__}")
        if value.ndim not in (1, 2):
            raise ValueError(f"Variable values have batch shape (N,) or (B, N), got {tuple(value.shape)}")
        self.value = value
        self.name = name or f"{type(value).__name__.lower()}_{next(_ids)}"
        self.fixed = torch.zeros(self.num, dtype=torch.bool)
        if fixed is not None:
            self.fix(fixed)

    @property
    def num(self) -> int:
        """Number of elements N."""
        return self.value.shape[-1]

    @property
    def batch_size(self) -> int | None:
        """B for a batched table, None for ``(N,)``."""
        return self.value.shape[0] if self.value.ndim == 2 else None

    @property
    def tangent_dim(self) -> int:
        return int(self.value.tangent_dim)

    def fix(self, index: Tensor | Sequence[int] | int) -> Variable:
        """Hold the given elements constant (a bool mask ``(N,)`` or indices); returns self."""
        index = torch.as_tensor(index)
        if index.dtype == torch.bool:
            if index.shape != (self.num,):
                raise ValueError(f"{self.name}: fixed mask must have shape ({self.num},), got {tuple(index.shape)}")
            self.fixed = self.fixed | index.cpu()
        else:
            index = index.reshape(-1).long().cpu()
            _check_range(self, index)
            self.fixed = self.fixed.clone()
            self.fixed[index] = True
        return self

    def __getitem__(self, index: Any) -> VariableRef:
        if isinstance(index, slice):
            index = torch.arange(self.num)[index]
        index = torch.as_tensor(index).reshape(-1).long()
        _check_range(self, index.cpu())
        return VariableRef(self, index)

    def all(self) -> VariableRef:
        """A reference to every element, in order."""
        return self[:]

    def __repr__(self) -> str:
        return f"Variable({self.name}: {type(self.value).__name__} x {self.num}, batch={self.batch_size}, fixed={int(self.fixed.sum())})"


def _check_range(variable: Variable, index: Tensor) -> None:
    if index.numel() and (index.min() < 0 or index.max() >= variable.num):
        bad = index[(index < 0) | (index >= variable.num)][0].item()
        raise IndexError(f"{variable.name} has {variable.num} elements; index {bad} is out of range")


@dataclasses.dataclass(frozen=True, eq=False)
class VariableRef:
    """E elements of a ``Variable``: ``index`` is an int64 tensor ``(E,)``."""

    variable: Variable
    index: Tensor

    def __len__(self) -> int:
        return self.index.shape[0]
