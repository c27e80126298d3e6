"""The solver as a ``torch.nn.Module``: problems in, differentiable solutions out."""

from __future__ import annotations

import torch

from .optim.config import BackwardMode, GaussNewton, LevenbergMarquardt
from .optim.result import SolveResult
from .optim.solve import solve
from .problem import Problem


class SolverLayer(torch.nn.Module):
    """Holds an optimizer configuration and a backward mode; ``layer(problem)`` solves.

    Problems of the same shape (a training loop that rebuilds its costs from new network
    outputs every step) share one structure analysis and one symbolic factorization.
    """

    def __init__(self, optimizer: GaussNewton | LevenbergMarquardt | None = None, backward: BackwardMode | None = None):
        super().__init__()
        self.optimizer = optimizer if optimizer is not None else LevenbergMarquardt()
        self.backward = backward

    def forward(self, problem: Problem) -> SolveResult:
        return solve(problem, self.optimizer, self.backward)

    def extra_repr(self) -> str:
        return f"optimizer={self.optimizer}, backward={self.backward}"
