"""Public checkers: samplers for hard regimes and tangent-space Jacobian checks.

Used by the project's own tests and meant for users who write cost functions:
``check_jacobians`` compares an analytic Jacobian against both autograd and
central finite differences, reading every group argument and output through
its right tangent (``liegeo.conventions``).
"""

from __future__ import annotations

import math
from typing import Any, Callable, Literal, Sequence

import torch
from torch import Tensor

from ._base import LieGroup, SEBase
from .euclidean import Euclidean
from .so2 import SO2
from .so3 import SO3

Regime = Literal["uniform", "identity", "near_identity", "small", "near_pi"]
REGIMES: tuple[Regime, ...] = ("uniform", "identity", "near_identity", "small", "near_pi")


def _rotation_angles(regime: Regime, shape: tuple[int, ...], generator: torch.Generator, dtype: torch.dtype) -> Tensor:
    u = torch.rand(shape, generator=generator, dtype=dtype)
    if regime == "identity":
        return torch.zeros(shape, dtype=dtype)
    if regime == "near_identity":  # 1e-9 .. 1e-4 rad
        return 10.0 ** (-9.0 + 5.0 * u)
    if regime == "small":  # up to 0.5 rad
        return 0.5 * u
    if regime == "near_pi":  # π - (1e-6 .. 1e-4): close to the cut of Log, but not across it
        return math.pi - 10.0 ** (-6.0 + 2.0 * u)
    return math.pi * u  # "uniform" angle; used for tangent samples


def sample_tangent(
    group: type[LieGroup] | LieGroup,
    regime: Regime,
    *batch: int,
    generator: torch.Generator,
    dtype: torch.dtype = torch.float64,
) -> Tensor:
    """Tangent vectors whose rotation part has an angle in the given regime: ``(*batch, tangent_dim)``.

    Translation parts are standard normal.  For ``Euclidean`` pass an instance
    (its dimension is not a class property).
    """
    if isinstance(group, Euclidean) or group is Euclidean:
        if not isinstance(group, Euclidean):
            raise TypeError("sample_tangent(Euclidean, ...) needs an instance to know the dimension")
        return torch.randn(*batch, group.tangent_dim, generator=generator, dtype=dtype)
    cls = group if isinstance(group, type) else type(group)
    angle = _rotation_angles(regime, batch, generator, dtype)
    if cls is SO2:
        sign = torch.where(torch.rand(batch, generator=generator, dtype=dtype) < 0.5, -1.0, 1.0)
        return (sign * angle).unsqueeze(-1)
    if cls is SO3:
        axis = torch.randn(*batch, 3, generator=generator, dtype=dtype)
        return axis / torch.linalg.vector_norm(axis, dim=-1, keepdim=True) * angle.unsqueeze(-1)
    if issubclass(cls, SEBase):
        rotation = sample_tangent(cls.rotation_type, regime, *batch, generator=generator, dtype=dtype)
        translation = torch.randn(*batch, cls.point_dim, generator=generator, dtype=dtype)
        return torch.cat([translation, rotation], dim=-1)
    raise TypeError(f"no sampler for {cls.__name__}")


def sample(
    group: type[LieGroup],
    regime: Regime,
    *batch: int,
    generator: torch.Generator,
    dtype: torch.dtype = torch.float64,
) -> LieGroup:
    """Group elements in a regime: Haar-uniform, exactly identity, near identity, small, or near π."""
    if regime == "uniform":
        return group.random(*batch, generator=generator, dtype=dtype)
    return group.exp(sample_tangent(group, regime, *batch, generator=generator, dtype=dtype))


# ---------------------------------------------------------------------- Jacobians in tangent space

Argument = Any  # a LieGroup (perturbed by retract) or a Tensor (perturbed additively)
Function = Callable[..., Any]  # arguments -> LieGroup or Tensor


def _dim(x: Argument) -> int:
    return int(x.tangent_dim) if isinstance(x, LieGroup) else x.shape[-1]


def _perturb(x: Argument, delta: Tensor) -> Argument:
    return x.retract(delta) if isinstance(x, LieGroup) else x + delta


def _difference(base: Any, moved: Any) -> Tensor:
    return base.local(moved) if isinstance(base, LieGroup) else moved - base


def _with(args: Sequence[Argument], index: int, value: Argument) -> list[Argument]:
    out = list(args)
    out[index] = value
    return out


def numerical_jacobian(fn: Function, args: Sequence[Argument], wrt: int, eps: float = 1e-6) -> Tensor:
    """Central differences of ``fn`` in the tangent of ``args[wrt]``: ``(*batch, out_dim, in_dim)``.

    Batch elements must be independent (element b of the output depends only on
    element b of the inputs), as in every batched group operation.
    """
    x = args[wrt]
    base = fn(*args)
    batch = (x.shape if isinstance(x, LieGroup) else x.shape[:-1])
    columns = []
    for k in range(_dim(x)):
        delta = torch.zeros(*batch, _dim(x), dtype=x.dtype, device=x.device)
        delta[..., k] = eps
        plus = _difference(base, fn(*_with(args, wrt, _perturb(x, delta))))
        minus = _difference(base, fn(*_with(args, wrt, _perturb(x, -delta))))
        columns.append((plus - minus) / (2.0 * eps))
    return torch.stack(columns, dim=-1)


def autograd_jacobian(fn: Function, args: Sequence[Argument], wrt: int) -> Tensor:
    """Autograd Jacobian of ``fn`` through ``retract`` at ``δ = 0``: ``(*batch, out_dim, in_dim)``."""
    x = args[wrt]
    batch = (x.shape if isinstance(x, LieGroup) else x.shape[:-1])
    delta = torch.zeros(*batch, _dim(x), dtype=x.dtype, device=x.device, requires_grad=True)
    with torch.no_grad():
        base = fn(*args)
    out = _difference(base, fn(*_with(args, wrt, _perturb(x, delta))))
    rows = []
    for i in range(out.shape[-1]):
        (grad,) = torch.autograd.grad(out[..., i].sum(), delta, retain_graph=True, allow_unused=True)
        rows.append(torch.zeros_like(delta) if grad is None else grad)
    return torch.stack(rows, dim=-2).expand(*out.shape, _dim(x))


def check_jacobians(
    fn: Function,
    args: Sequence[Argument],
    analytic: Sequence[Tensor | None],
    atol: float = 1e-6,
    eps: float = 1e-6,
) -> dict[str, float]:
    """Compare analytic Jacobians of ``fn(*args)`` against autograd and central differences.

    ``analytic[k]`` is the Jacobian with respect to ``args[k]`` (``None`` skips
    it).  Raises ``AssertionError`` naming the argument and the worst error; returns
    the largest errors found, keyed ``"autograd[k]"`` and ``"numerical[k]"``.
    """
    errors: dict[str, float] = {}
    for k, expected in enumerate(analytic):
        if expected is None:
            continue
        for name, reference in (
            ("autograd", autograd_jacobian(fn, args, k)),
            ("numerical", numerical_jacobian(fn, args, k, eps)),
        ):
            err = (expected - reference).abs().max().item()
            errors[f"{name}[{k}]"] = err
            if not err <= atol:
                raise AssertionError(f"Jacobian wrt argument {k} differs from {name} by {err:.3e} > {atol:.1e}")
    return errors


def assert_same_elements(a: LieGroup, b: LieGroup, atol: float = 1e-9) -> None:
    """Assert two batches are the same elements (compares matrices, so ``q`` and ``-q`` agree)."""
    if type(a) is not type(b):
        raise AssertionError(f"{type(a).__name__} vs {type(b).__name__}")
    err = (a.matrix() - b.matrix()).abs().max().item()
    if not err <= atol:
        raise AssertionError(f"elements differ: max matrix error {err:.3e} > {atol:.1e}")
