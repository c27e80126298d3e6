"""Vectorized cost terms: E instances of one residual function, evaluated as one batched call.

A cost is a residual function of some variables (``liegeo`` groups) and data
(tensors or groups).  Define one by subclassing ``Cost`` and writing
``residual``, or, shorter, by decorating a function::

    @slam.residual
    def between(x_i: SE3, x_j: SE3, *, measurement: SE3) -> Tensor:
        return measurement.local(x_i.between(x_j))

    cost = between(poses[i], poses[j], measurement=z, weight=SqrtInformation(l))

The function receives the referenced elements as batches of shape ``(B, E)``
(B = 1 for an unbatched problem) and the data as given (``(E, ...)`` or
``(B, E, ...)``; broadcasting does the rest), and returns residuals
``(B, E, m)`` (or anything that broadcasts to it).

Jacobians come from autograd through ``retract`` at zero (right perturbations,
as in ``liegeo.conventions``) unless the cost provides them: override
``residual_and_jacobians`` (or pass ``jacobians=`` to the decorator) to return
``(r, [J_1, ..., J_k])`` with ``J_i: (B, E, m, tangent_dim_i)``.

A fast path (a fused kernel) belongs to its cost: the cost's module overrides ``whitened_residual``
and ``linearize`` for the inputs its kernel takes (``kernel_inputs_ok``) and calls ``super()`` for
the rest (see ``pose_graph.Between``); nothing outside that module changes.
"""

from __future__ import annotations

import functools
from typing import TYPE_CHECKING, Any, Callable, ClassVar, Literal, NamedTuple, Sequence

import torch
from torch import Tensor

from liegeo import LieGroup, _math
from liegeo._kernels import kernel_inputs_ok, numba_available  # noqa: F401  (the cost modules' rule for their kernels)

from ..robust import RobustLoss
from ..variables import VariableRef
from ..weights import Weight

if TYPE_CHECKING:
    from ..structure import CostLayout

JacobianMode = Literal["auto", "reverse", "forward"]


def _fused_inputs(dtype: torch.dtype, device: torch.device | str) -> bool:
    """Whether values of this dtype and device can take a fused CPU kernel (``kernel_inputs_ok`` for
    tensors that need no autograd)."""
    return dtype == torch.float64 and torch.device(device).type == "cpu" and numba_available()


class Linearization(NamedTuple):
    """One cost's E instances linearized, whitened, before any robust loss (B: the problem's batch,
    m: residual size, D: the sum of the arguments' tangent dimensions)."""

    r: Tensor
    """``(B, E, m)`` whitened residuals."""
    j: Tensor
    """``(B, E, m, D)`` whitened Jacobians, the arguments' columns side by side."""
    jtj: Tensor
    """``JᵀJ``: ``(B, E, D, D)``, or its lower triangle packed row by row (``torch.tril_indices``
    order) as ``(B, E, D(D+1)/2)``."""
    jtr: Tensor
    """``Jᵀr``: ``(B, E, D)``."""


def pack_lower(blocks: Tensor) -> Tensor:
    """``(..., D, D)`` blocks as their lower triangles packed row by row (``Linearization.jtj``'s packing):
    ``(..., D(D+1)/2)``."""
    a, b = torch.tril_indices(blocks.shape[-1], blocks.shape[-1], device=blocks.device)
    return blocks[..., a, b]


class Cost:
    """E instances of one residual function of ``len(variables)`` variables.

    Args:
        *variables: one ``VariableRef`` per argument of the residual, each of length E.
        weight: whitening of the residuals (``slam.weights``); none means identity.
        loss: a robust loss applied to each instance's squared whitened norm.
        name: used in messages; defaults to the class name.
        **data: tensors or groups with a leading instance axis ``E`` (after an optional
            outer batch axis), passed to the residual by keyword.
    """

    jacobian_mode: ClassVar[JacobianMode] = "auto"
    """Autograd mode for Jacobians: reverse (one pass per residual component), forward (one
    per tangent direction), or auto (the cheaper of the two)."""

    def __init__(
        self,
        *variables: VariableRef,
        weight: Weight | None = None,
        loss: RobustLoss | None = None,
        name: str | None = None,
        **data: Any,
    ):
        if not variables:
            raise ValueError(f"{type(self).__name__}: a cost needs at least one variable")
        for v in variables:
            if not isinstance(v, VariableRef):
                raise TypeError(f"{type(self).__name__}: variables are given as table[index], got {type(v).__name__}")
        sizes = {len(v) for v in variables}
        if len(sizes) != 1:
            raise ValueError(f"{type(self).__name__}: every variable reference needs the same length, got {sorted(sizes)}")
        self.variables = variables
        self.data = data
        self.weight = weight
        self.loss = loss
        self.name = name or type(self).__name__
        self.num = sizes.pop()

    def residual(self, *values: LieGroup, **data: Any) -> Tensor:
        """Residuals ``(B, E, m)`` of the instances at ``values`` (each ``(B, E)``)."""
        raise NotImplementedError(f"{type(self).__name__} defines no residual")

    def residual_and_jacobians(self, *values: LieGroup, **data: Any) -> tuple[Tensor, list[Tensor]]:
        """Residuals and analytic Jacobians; by default, autograd through ``retract``."""
        return autodiff_jacobians(self.residual, values, data, self.jacobian_mode)

    def whitened_residual(self, values: Sequence[LieGroup]) -> Tensor:
        """``W r``: whitened residuals ``(B, E, m)`` at ``values`` (one ``(B, E)`` batch per argument),
        before any robust loss.

        A cost with a fast path (a fused kernel) overrides this and ``linearize`` in its own module,
        takes the inputs its kernel handles and hands the rest to ``super()``; the problem only ever
        calls these two methods.
        """
        r = self.residual(*values, **self.data)
        return self.weight.whiten(r) if self.weight is not None else r

    def linearize(self, values: Sequence[LieGroup], batch_size: int) -> Linearization:
        """The instances' whitened residuals and Jacobians and their normal-equation blocks at
        ``values``, before any robust loss (the problem applies it, once, for every cost).

        ``batch_size`` is the problem's B; instances that do not depend on the batch are expanded
        to it.  See ``Linearization`` for the shapes.
        """
        r, jacobians = self.residual_and_jacobians(*values, **self.data)
        r = r.expand(batch_size, self.num, r.shape[-1])
        weight = self.weight
        if weight is not None:
            r = weight.whiten(r)
        parts = [x.expand(*r.shape, x.shape[-1]) for x in jacobians]
        j = torch.cat([weight.whiten_jacobian(x) for x in parts] if weight is not None else parts, dim=-1)
        jt = j.mT
        return Linearization(r, j, jt @ j, (jt @ r.unsqueeze(-1)).squeeze(-1))

    def accumulate_normal(self, values: Sequence[LieGroup], batch_size: int, layout: CostLayout, h: Tensor,
                          g: Tensor) -> Tensor | None:
        """A fused path's shortcut for ``linearize`` where the cost has no robust loss: add the instances'
        ``JᵀJ`` and ``Jᵀr`` blocks in place into the assembled ``h (B, nnz + 1)`` and ``g (B, n + 1)`` at
        ``layout``'s slots, and return the whitened residuals ``(B, E, m)``.  ``None`` (nothing added) where
        the cost has no such path for ``values``; the problem then linearizes and assembles it itself.
        A kernel that does this stores neither the blocks nor the Jacobians (the default: None)."""
        return None

    def directional_residual(self, values: Sequence[LieGroup], direction: Tensor) -> tuple[Tensor, Tensor, Tensor] | None:
        """A smaller graph for the implicit backward's ``wᵀ ∂g/∂θ`` (``Problem.directional_gradient``):
        ``(point, velocity, r)``, ``r (B, E, m)`` the whitened residual as a function of ``point`` (a leaf
        that requires grad) and of the cost's tensors by its torch path, such that at ``point``'s value
        ``∂r/∂point · velocity`` is the derivative of ``r`` along ``δ = direction (B, E, D)`` (each instance's
        stacked argument tangents) at ``values``.  None (the default): the problem differentiates the
        cost along every variable's retraction."""
        return None

    def exact_blocks(self, values: Sequence[LieGroup], batch_size: int) -> tuple[Tensor, Tensor, Tensor]:
        """``(r, H, g)`` per instance, before any robust loss: the whitened residual ``r (B, E, m)``, the
        exact Hessian of ``½‖W r(x ⊕ δ)‖²`` in the arguments' stacked right tangents ``δ`` at 0, ``H = JᵀJ +
        Σ_k r_k ∇²r_k`` (``(B, E, D, D)``, or packed like ``Linearization.jtj``), and ``g = Jᵀr (B, E, D)``.

        By default ``linearize`` plus the second-order part by autograd (``autodiff_curvature``); a cost
        with a fused kernel overrides it in its module (``exact_blocks_path`` names it)."""
        r, _, jtj, jtr = self.linearize(values, batch_size)
        curvature = autodiff_curvature(self.whitened_residual, values, r)
        return r, jtj + (pack_lower(curvature) if jtj.dim() == jtr.dim() else curvature), jtr

    def exact_blocks_path(self, dtype: torch.dtype, device: torch.device | str) -> str:
        """How ``exact_blocks`` runs for values of this dtype and device: ``"autodiff"``, or the fused
        kernel a cost with one names (``Implicit(exact_solve="auto")`` solves the exact Hessian directly only
        where every cost's is fused)."""
        return "autodiff"

    def linearization_path(self, dtype: torch.dtype, device: torch.device | str) -> str:
        """How ``linearize`` runs for values of this dtype and device when nothing needs autograd:
        ``"analytic Jacobians"``, ``"autodiff"``, or the fused kernel a cost with a fast path names
        (its module overrides this with ``linearize``).  With inputs that require grad, the torch path."""
        return "analytic Jacobians" if self.has_analytic_jacobians else f"autodiff ({self.jacobian_mode})"

    def prepare(self) -> None:
        """Load what this cost's fast path needs (compiled kernels), so that a timed solve does not
        pay it (``Problem.prepare``); nothing by default."""

    @property
    def has_analytic_jacobians(self) -> bool:
        return type(self).residual_and_jacobians is not Cost.residual_and_jacobians

    def __repr__(self) -> str:
        args = ", ".join(v.variable.name for v in self.variables)
        return f"{self.name}({args}; {self.num} instances)"


def residual(
    fn: Callable[..., Tensor] | None = None,
    *,
    jacobians: Callable[..., tuple[Tensor, list[Tensor]]] | None = None,
    jacobian_mode: JacobianMode = "auto",
) -> Any:
    """Make a ``Cost`` subclass from a residual function (and optionally its analytic Jacobians).

    Usable bare (``@residual``) or with options (``@residual(jacobians=f)``).  The
    returned class is called like ``Cost``: ``cls(*refs, weight=..., loss=..., **data)``.
    """

    def make(f: Callable[..., Tensor]) -> type[Cost]:
        attrs: dict[str, Any] = {
            "residual": lambda self, *v, **d: f(*v, **d),
            "jacobian_mode": jacobian_mode,
            "__doc__": f.__doc__,
            "__module__": f.__module__,
            "__qualname__": f.__qualname__,
        }
        if jacobians is not None:
            attrs["residual_and_jacobians"] = lambda self, *v, **d: jacobians(*v, **d)
        cls = type(f.__name__, (Cost,), attrs)
        functools.update_wrapper(cls.residual, f, assigned=("__doc__",), updated=())  # type: ignore[arg-type]
        return cls

    return make(fn) if fn is not None else make


_SCALAR_BACKWARDS = 16
"""Up to this many residual components, reverse-mode Jacobians take one plain backward per component
(fast for the few components of geometric residuals); above it, one batched backward."""


def autodiff_jacobians(
    fn: Callable[..., Tensor], values: tuple[LieGroup, ...], data: dict[str, Any], mode: JacobianMode = "auto"
) -> tuple[Tensor, list[Tensor]]:
    """``fn(*values, **data)`` and its Jacobians in the right tangents of ``values``.

    Instances are independent (instance e of the output depends on instance e of the
    inputs only), so one backward pass per residual component (reverse mode, batched
    with ``is_grads_batched``) or one forward pass per tangent direction gives every
    instance's Jacobian at once.  The graph is kept (``create_graph``) when autograd is
    recording, so the Jacobians stay differentiable in everything ``fn`` depends on.
    """
    create_graph = torch.is_grad_enabled()
    with torch.enable_grad():
        deltas = [
            torch.zeros(*v.shape, v.tangent_dim, dtype=v.dtype, device=v.device, requires_grad=True) for v in values
        ]
        r = fn(*[v.retract(d) for v, d in zip(values, deltas)], **data)
        batch = _math.broadcast_shapes(*(v.shape for v in values))
        r = r.expand(*batch, r.shape[-1])
        m, total = r.shape[-1], sum(d.shape[-1] for d in deltas)
        # "auto": few components (geometric residuals) take one plain backward each; many components
        # of few tangent directions take forward mode (torch.func, whose first use in a process imports
        # torch's compiler stack, ~1.3 s); the rest one batched backward.
        if mode == "forward" or (mode == "auto" and total < m and m > _SCALAR_BACKWARDS):
            jacobians = _forward_jacobians(fn, values, data, deltas, r)
        else:
            if m <= _SCALAR_BACKWARDS:
                # One backward of a scalar per component: no grad_outputs, whose shape check imports
                # sympy in torch 2.13 (~1.2 s on a process's first solve with an autodiff cost).
                rows = [torch.autograd.grad(r[..., k].sum(), deltas, retain_graph=True, create_graph=create_graph,
                                            allow_unused=True) for k in range(m)]
                grads = tuple(None if rows[0][i] is None else torch.stack([row[i] for row in rows])
                              for i in range(len(deltas)))
            else:
                basis = torch.eye(m, dtype=r.dtype, device=r.device).reshape(m, *([1] * (r.ndim - 1)), m)
                grads = torch.autograd.grad(
                    r, deltas, grad_outputs=basis.expand(m, *r.shape), is_grads_batched=True,
                    create_graph=create_graph, allow_unused=True,
                )
            jacobians = [
                torch.zeros(*r.shape, d.shape[-1], dtype=r.dtype, device=r.device) if g is None else g.movedim(0, -2)
                for g, d in zip(grads, deltas)
            ]
            jacobians = [j.expand(*r.shape, j.shape[-1]) for j in jacobians]
    if not create_graph:
        r, jacobians = r.detach(), [j.detach() for j in jacobians]
    return r, jacobians


def _forward_jacobians(
    fn: Callable[..., Tensor], values: tuple[LieGroup, ...], data: dict[str, Any], deltas: list[Tensor], r: Tensor
) -> list[Tensor]:
    """One JVP per tangent direction, vectorized over directions with ``torch.func``."""
    zeros = [d.detach() for d in deltas]

    def moved(*ds: Tensor) -> Tensor:
        return fn(*[v.retract(d) for v, d in zip(values, ds)], **data).expand_as(r)

    jacobians = []
    for k, d in enumerate(zeros):
        dim = d.shape[-1]
        basis = torch.eye(dim, dtype=d.dtype, device=d.device).reshape(dim, *([1] * (d.ndim - 1)), dim).expand(dim, *d.shape)

        def column(t: Tensor, k: int = k) -> Tensor:
            tangents = [t if i == k else torch.zeros_like(z) for i, z in enumerate(zeros)]
            return torch.func.jvp(moved, tuple(zeros), tuple(tangents))[1]

        jacobians.append(torch.func.vmap(column)(basis).movedim(0, -1))
    return jacobians


def autodiff_curvature(whitened: Callable[[list[LieGroup]], Tensor], values: Sequence[LieGroup],
                       multipliers: Tensor) -> Tensor:
    """``Σ_k μ_k ∇²(W r)_k`` per instance ``(B, E, D, D)``: the Hessian of ``μᵀ whitened(x ⊕ δ)`` in the
    stacked right tangents ``δ`` at 0, for fixed ``multipliers μ: (B, E, m)``.  Instances are independent,
    so one double backward per tangent column gives every instance's row at once."""
    with torch.enable_grad():
        deltas = [torch.zeros(*v.shape, v.tangent_dim, dtype=v.dtype, device=v.device, requires_grad=True)
                  for v in values]
        rw = whitened([v.retract(d) for v, d in zip(values, deltas)])
        grads = torch.autograd.grad((rw * multipliers.detach()).sum(), deltas, create_graph=True, allow_unused=True)
        gradient = torch.cat([torch.zeros_like(d) if g is None else g for g, d in zip(grads, deltas)], dim=-1)
        rows = []
        for c in range(gradient.shape[-1]):
            row = (torch.autograd.grad(gradient[..., c].sum(), deltas, retain_graph=True, allow_unused=True)
                   if gradient.requires_grad else (None,) * len(deltas))
            rows.append(torch.cat([torch.zeros_like(d) if g is None else g for g, d in zip(row, deltas)], dim=-1))
    hessian = torch.stack(rows, dim=-2).detach()
    return hessian.expand(*multipliers.shape[:-1], *hessian.shape[-2:])
