"""The tensors a solution may depend on: what ``slam.solve`` differentiates with respect to."""

from __future__ import annotations

import dataclasses
from typing import Any, Iterator

from torch import Tensor

from liegeo import LieGroup

from ..problem import Problem


def problem_tensors(problem: Problem) -> Iterator[Tensor]:
    """Every tensor the solution may depend on: values, data, weights, robust scales."""
    for variable in problem.variables:
        yield variable.value.data
    yield from cost_tensors(problem)


def cost_tensors(problem: Problem) -> Iterator[Tensor]:
    """The tensors the costs hold: data, weights, robust scales."""
    for cost in problem.costs:
        for item in (*cost.data.values(), cost.weight, cost.loss):
            yield from tensors_in(item)


def tensors_in(item: Any) -> Iterator[Tensor]:
    if isinstance(item, Tensor):
        yield item
    elif isinstance(item, LieGroup):
        yield item.data
    elif dataclasses.is_dataclass(item) and not isinstance(item, type):
        for field in dataclasses.fields(item):
            yield from tensors_in(getattr(item, field.name))
    elif isinstance(item, (list, tuple)):
        for x in item:
            yield from tensors_in(x)
    elif isinstance(item, dict):
        for x in item.values():
            yield from tensors_in(x)
