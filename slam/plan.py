"""What ``Problem.analyze`` returns: the frozen plan every iteration, solve and batch of a problem runs.

The plan is made once per problem (implicitly by the first solve) from the problem's shape, dtype
and device: the sparsity structure (itself shared by every problem of the same shape, with this
problem's own linear-solver state, ``Structure.for_problem``), and for each cost and variable table
what linearizes and retracts it.  Each cost and group decides its own path (``Cost.linearization_path``,
``LieGroup.retraction_path``: a fused kernel that lives in the cost's or group's module, analytic
Jacobians, or autodiff); the core only records the decisions.  Inputs that require grad take the
torch path of the same cost (kernels are not differentiable).
"""

from __future__ import annotations

import dataclasses

import torch

from .structure import Structure


@dataclasses.dataclass(frozen=True)
class CostPlan:
    name: str
    instances: int
    linearization: str
    """``"fused kernel (module)"``, ``"analytic Jacobians"`` or ``"autodiff (mode)"``."""
    exact_hessian: str = "autodiff"
    """What gives the exact Hessian blocks (``Cost.exact_blocks``) for the implicit backward: ``"fused kernel
    (module)"`` or ``"autodiff"``."""

    @property
    def fused(self) -> bool:
        """Whether a fused kernel linearizes the cost (residuals and Jacobians in one pass, at a few times
        the cost of the residuals alone; ``slam.optim.loop`` then linearizes trial points directly)."""
        return self.linearization.startswith("fused kernel")


@dataclasses.dataclass(frozen=True)
class VariablePlan:
    name: str
    group: str
    elements: int
    free: int
    retraction: str
    """``"fused kernel (module)"`` or ``"torch"``."""


@dataclasses.dataclass(frozen=True)
class Plan:
    """The frozen analysis of one problem (``Problem.analyze``)."""

    structure: Structure
    costs: tuple[CostPlan, ...]
    variables: tuple[VariablePlan, ...]
    batch_size: int
    dtype: torch.dtype
    device: torch.device

    @property
    def unknowns(self) -> int:
        """Free tangent dimensions ``n`` (the size of the normal equations)."""
        return self.structure.n

    def describe(self) -> str:
        """A few lines for a person: sizes, and what runs each cost and variable table."""
        lines = [f"{self.unknowns} unknowns, {self.structure.nnz} nonzeros in the lower triangle of H, batch "
                 f"{self.batch_size}, {str(self.dtype).removeprefix('torch.')} on {self.device}"]
        lines += [f"  cost {c.name}: {c.instances} instances, {c.linearization}; exact Hessian {c.exact_hessian}"
                  for c in self.costs]
        lines += [f"  variable {v.name}: {v.elements} {v.group} ({v.free} free), retraction {v.retraction}"
                  for v in self.variables]
        return "\n".join(lines)
