"""The abstract group and the operations every group shares.

A group subclass supplies the value-level primitives (``_exp``, ``_log``,
``_compose``, ``_inverse``, ``_act``, ``adjoint``, ``jr``/``jl`` and their
inverses, matrix conversions); this module turns them into the public API with
the right-perturbation Jacobians of ``liegeo.conventions``, written once for all
groups.
"""

from __future__ import annotations

import abc
import dataclasses
from typing import Any, ClassVar, Iterable

import torch
from torch import Tensor
from typing_extensions import Self

from . import _math


def batch_shape(args: tuple[Any, ...]) -> tuple[int, ...]:
    """Accept ``f(2, 3)``, ``f((2, 3))`` and ``f(torch.Size([2, 3]))`` alike."""
    if len(args) == 1 and not isinstance(args[0], int):
        return tuple(int(a) for a in args[0])
    return tuple(int(a) for a in args)


@dataclasses.dataclass(frozen=True, eq=False, repr=False)
class LieGroup(abc.ABC):
    """A batch of elements of a matrix Lie group, stored as ``data: (*batch, param_dim)``.

    See ``liegeo.conventions`` for storage, tangent order and Jacobian definitions.
    """

    data: Tensor

    param_dim: ClassVar[int]
    """Length of the storage vector."""
    tangent_dim: ClassVar[int]
    """Dimension of the tangent space (degrees of freedom)."""
    matrix_dim: ClassVar[int]
    """Size of the square matrix representation."""
    point_dim: ClassVar[int]
    """Dimension of the points that ``act`` transforms."""

    def __post_init__(self) -> None:
        if not isinstance(self.data, Tensor):
            raise TypeError(f"{type(self).__name__} wraps a torch.Tensor, got {type(self.data).__name__}")
        if self.data.ndim == 0 or self.data.shape[-1] != self.param_dim:
            raise ValueError(
                f"{type(self).__name__} data must have shape (*batch, {self.param_dim}), got {tuple(self.data.shape)}"
            )
        if not self.data.is_floating_point():
            raise TypeError(f"{type(self).__name__} data must be floating point, got {self.data.dtype}")
        start = self._unit_start()
        if start is not None and _checkable(self.data):
            object.__setattr__(self, "data", _normalized(type(self).__name__, self.data, start))

    @classmethod
    def _wrap(cls, data: Tensor) -> Self:
        """An element around ``data`` without any check: for results of the group's own operations.

        The public constructor ``cls(data)`` checks the storage (see ``liegeo.conventions``,
        "Construction"); operations whose results are on the group by construction use this
        instead, so hot loops and traced code (vmap, jacrev, compile) never pay for or trip on it.
        """
        out = object.__new__(cls)
        object.__setattr__(out, "data", data)
        return out

    @classmethod
    def _unit_start(cls) -> int | None:
        """Where the unit-norm part of the storage (a rotation's) begins, or None."""
        return None

    # ------------------------------------------------------------------ primitives (per group)

    @classmethod
    @abc.abstractmethod
    def identity(cls, *batch: int, dtype: torch.dtype | None = None, device: Any = None) -> Self:
        """The identity, broadcast to ``batch``."""

    @classmethod
    @abc.abstractmethod
    def random(
        cls,
        *batch: int,
        generator: torch.Generator | None = None,
        dtype: torch.dtype | None = None,
        device: Any = None,
    ) -> Self:
        """Random elements: rotations uniform (Haar), translations standard normal."""

    @classmethod
    @abc.abstractmethod
    def _exp(cls, xi: Tensor) -> Self: ...

    @abc.abstractmethod
    def _log(self) -> Tensor: ...

    @abc.abstractmethod
    def _compose(self, other: Self) -> Self: ...

    @abc.abstractmethod
    def _inverse(self) -> Self: ...

    @abc.abstractmethod
    def _act(self, p: Tensor) -> Tensor: ...

    @abc.abstractmethod
    def _act_generators(self, p: Tensor) -> Tensor:
        """``∂(Exp(δ) p)/∂δ`` at ``δ = 0``: ``(*batch, point_dim, tangent_dim)``."""

    @abc.abstractmethod
    def _linear_part(self) -> Tensor:
        """The matrix ``∂(x p)/∂p`` (the rotation for SO/SE): ``(*batch, point_dim, point_dim)``."""

    @abc.abstractmethod
    def adjoint(self) -> Tensor:
        """``Ad(x)`` with ``x Exp(ξ) x⁻¹ = Exp(Ad(x) ξ)``: ``(*batch, tangent_dim, tangent_dim)``."""

    @abc.abstractmethod
    def matrix(self) -> Tensor:
        """The homogeneous matrix: ``(*batch, matrix_dim, matrix_dim)``."""

    @abc.abstractmethod
    def normalize(self) -> Self:
        """Project the storage back onto the group (unit quaternion / unit complex number)."""

    @classmethod
    @abc.abstractmethod
    def jr(cls, xi: Tensor) -> Tensor:
        """Right Jacobian of Exp, ``Exp(ξ+ε) ≈ Exp(ξ) Exp(J_r(ξ) ε)``: ``(*batch, k) -> (*batch, k, k)``."""

    @classmethod
    @abc.abstractmethod
    def jr_inv(cls, xi: Tensor) -> Tensor:
        """Inverse of ``jr``: ``(*batch, k) -> (*batch, k, k)``."""

    @classmethod
    def jl(cls, xi: Tensor) -> Tensor:
        """Left Jacobian of Exp, ``Exp(ξ+ε) ≈ Exp(J_l(ξ) ε) Exp(ξ)``; equals ``J_r(-ξ)``."""
        return cls.jr(-xi)

    @classmethod
    def jl_inv(cls, xi: Tensor) -> Tensor:
        """Inverse of ``jl``; equals ``J_r⁻¹(-ξ)``."""
        return cls.jr_inv(-xi)

    @classmethod
    def ad(cls, xi: Tensor) -> Tensor:
        """The Lie algebra's adjoint ``ad(ξ) = d/dt Ad(Exp(tξ))`` at ``t = 0``, so that the bracket is
        ``[ξ, η] = ad(ξ) η`` and ``Exp(ξ) Exp(η) = Exp(ξ + η + ½ ad(ξ) η + …)``: ``(*batch, k) -> (*batch, k, k)``.
        A group without it (NotImplementedError) gets autograd where it is needed (``slam.Implicit``)."""
        raise NotImplementedError(f"{cls.__name__}.ad")

    @classmethod
    def has_ad(cls) -> bool:
        """Whether the group provides ``ad``."""
        return cls.ad.__func__ is not LieGroup.ad.__func__  # type: ignore[attr-defined]

    # ------------------------------------------------------------------ public operations

    @classmethod
    def exp(cls, xi: Tensor, *, jacobians: bool = False) -> Any:
        """``Exp(ξ)`` for ``xi: (*batch, tangent_dim)``; Jacobian ``J_r(ξ)``."""
        cls._check_tangent(xi)
        x = cls._exp(xi)
        return (x, cls.jr(xi)) if jacobians else x

    def log(self, *, jacobians: bool = False) -> Any:
        """``Log(x): (*batch, tangent_dim)`` on the principal branch; Jacobian ``J_r⁻¹(Log x)``."""
        xi = self._log()
        return (xi, self.jr_inv(xi)) if jacobians else xi

    def compose(self, other: Self, *, jacobians: bool = False) -> Any:
        """``x · y``; Jacobians ``(Ad(y⁻¹), I)``."""
        self._check_same_type(other)
        out = self._compose(other)
        if not jacobians:
            return out
        j_self = other._inverse().adjoint().expand(*out.shape, self.tangent_dim, self.tangent_dim)
        return out, (j_self, _math.eye(self.tangent_dim, out.shape, out.data))

    def inverse(self, *, jacobians: bool = False) -> Any:
        """``x⁻¹``; Jacobian ``-Ad(x)``."""
        out = self._inverse()
        return (out, -self.adjoint()) if jacobians else out

    def between(self, other: Self, *, jacobians: bool = False) -> Any:
        """``x⁻¹ · y``; Jacobians ``(-Ad((x⁻¹y)⁻¹), I)``."""
        self._check_same_type(other)
        out = self._inverse()._compose(other)
        if not jacobians:
            return out
        return out, (-out._inverse().adjoint(), _math.eye(self.tangent_dim, out.shape, out.data))

    def act(self, p: Tensor, *, jacobians: bool = False) -> Any:
        """Transform points ``p: (*batch, point_dim)`` (batch axes broadcast); Jacobians ``(R·G(p), R)``.

        To move many points by each element, add a point axis: ``x[..., None].act(p)``
        with ``p: (*batch, n, point_dim)``.
        """
        if p.shape[-1:] != (self.point_dim,):
            raise ValueError(f"{type(self).__name__}.act expects points (*, {self.point_dim}), got {tuple(p.shape)}")
        out = self._act(p)
        if not jacobians:
            return out
        lin = self._linear_part()
        j_x = lin @ self._act_generators(p)
        batch = out.shape[:-1]
        return out, (j_x.expand(*batch, *j_x.shape[-2:]), lin.expand(*batch, *lin.shape[-2:]))

    def retract(self, delta: Tensor, *, jacobians: bool = False) -> Any:
        """``x · Exp(δ)``; Jacobians ``(Ad(Exp(-δ)), J_r(δ))``."""
        self._check_tangent(delta)
        step = self._exp(delta)
        out = self._compose(step)
        if not jacobians:
            return out
        batch = out.shape
        j_x = step._inverse().adjoint().expand(*batch, self.tangent_dim, self.tangent_dim)
        j_d = self.jr(delta).expand(*batch, self.tangent_dim, self.tangent_dim)
        return out, (j_x, j_d)

    retraction_kernel: ClassVar[str | None] = None
    """The ``liegeo`` module of the group's fused retraction (one numba pass per element), None without
    one; the module's ``retract(x (M, P), delta (M, T), out (M, P))`` computes ``retract``'s formulas."""

    @classmethod
    def retraction_path(cls, dtype: torch.dtype, device: torch.device | str) -> str:
        """How ``retract_step`` runs for values of this dtype and device (when nothing needs autograd):
        ``"torch"``, or the fused kernel a group supplies (``retraction_kernel``)."""
        from ._kernels import numba_available

        fused = (cls.retraction_kernel is not None and dtype == torch.float64
                 and torch.device(device).type == "cpu" and numba_available())
        return f"fused kernel (liegeo.{cls.retraction_kernel})" if fused else "torch"

    def retract_step(self, delta: Tensor) -> Self:
        """``x · Exp(δ)`` for an optimizer's step over a whole table: the value of ``retract`` (to
        rounding), by the group's fused kernel where it has one and the inputs allow it (CPU float64,
        nothing autograd or a ``torch.func`` transform must see); ``retract`` otherwise."""
        kernel = self.retraction_kernel
        if kernel is not None and self.data.dtype == torch.float64 and self.data.device.type == "cpu":
            from ._kernels import fused_retract, group_kernel

            function = group_kernel(kernel)
            if function is not None:
                out = fused_retract(function, self.data, delta, self.tangent_dim)
                if out is not None:
                    return self._wrap(out)
        return self.retract(delta)

    def retract_velocity(self, delta: Tensor) -> Tensor:
        """``d/dt (x · Exp(t δ))`` of the storage at ``t = 0``: ``(*batch, param_dim)``, the direction in which
        the tangent ``δ: (*batch, tangent_dim)`` moves the storage of ``x``.  Closed forms in every group
        here (each composition is linear in its right factor's storage); this default is a forward-mode
        derivative of ``retract`` (correct for any group, ~100x slower)."""
        self._check_tangent(delta)
        return torch.func.jvp(lambda d: self._compose(self._exp(d)).data, (torch.zeros_like(delta),), (delta,))[1]

    def local(self, other: Self, *, jacobians: bool = False) -> Any:
        """``Log(x⁻¹ · y)``, the tangent at ``x`` that reaches ``y``; Jacobians ``(-J_l⁻¹(d), J_r⁻¹(d))``."""
        self._check_same_type(other)
        d = self._inverse()._compose(other)._log()
        if not jacobians:
            return d
        return d, (-self.jl_inv(d), self.jr_inv(d))

    def __matmul__(self, other: Any) -> Any:
        """``x @ y`` composes two elements; ``x @ p`` transforms points ``p``."""
        if isinstance(other, LieGroup):
            return self.compose(other)
        if isinstance(other, Tensor):
            return self.act(other)
        return NotImplemented

    # ------------------------------------------------------------------ tensor-like plumbing

    @property
    def shape(self) -> torch.Size:
        """The batch shape (``data.shape`` without the last axis)."""
        return self.data.shape[:-1]

    @property
    def ndim(self) -> int:
        return self.data.ndim - 1

    @property
    def dtype(self) -> torch.dtype:
        return self.data.dtype

    @property
    def device(self) -> torch.device:
        return self.data.device

    @property
    def requires_grad(self) -> bool:
        return self.data.requires_grad

    def __len__(self) -> int:
        if self.ndim == 0:
            raise TypeError(f"len() of an unbatched {type(self).__name__}")
        return self.data.shape[0]

    def __getitem__(self, index: Any) -> Self:
        if not isinstance(index, tuple):
            index = (index,)
        return self._new(self.data[(*index, slice(None))])

    def _new(self, data: Tensor) -> Self:
        """A new element of the same type (and, for Euclidean, dimension) around ``data``, which comes
        from this element's storage (indexed, reshaped, moved, selected): not checked again."""
        return self._wrap(data)

    def reshape(self, *batch: int) -> Self:
        return self._new(self.data.reshape(*batch_shape(batch), self.data.shape[-1]))

    def expand(self, *batch: int) -> Self:
        return self._new(self.data.expand(*batch_shape(batch), self.data.shape[-1]))

    def unsqueeze(self, dim: int) -> Self:
        # Negative dims count from the end of the batch shape, before the storage axis.
        return self._new(self.data.unsqueeze(dim if dim >= 0 else dim - 1))

    def to(self, *args: Any, **kwargs: Any) -> Self:
        return self._new(self.data.to(*args, **kwargs))

    def detach(self) -> Self:
        return self._new(self.data.detach())

    def clone(self) -> Self:
        return self._new(self.data.clone())

    def requires_grad_(self, requires_grad: bool = True) -> Self:
        self.data.requires_grad_(requires_grad)
        return self

    @classmethod
    def stack(cls, elements: Iterable[Self], dim: int = 0) -> Self:
        items = list(elements)
        return items[0]._new(torch.stack([e.data for e in items], dim=dim if dim >= 0 else dim - 1))

    @classmethod
    def cat(cls, elements: Iterable[Self], dim: int = 0) -> Self:
        items = list(elements)
        return items[0]._new(torch.cat([e.data for e in items], dim=dim if dim >= 0 else dim - 1))

    def __repr__(self) -> str:
        return f"{type(self).__name__}(shape={tuple(self.shape)}, dtype={self.dtype}, data={self.data})"

    # ------------------------------------------------------------------ checks

    @classmethod
    def _check_tangent(cls, xi: Tensor) -> None:
        if xi.ndim == 0 or xi.shape[-1] != cls.tangent_dim:
            raise ValueError(f"{cls.__name__} tangent vectors have shape (*, {cls.tangent_dim}), got {tuple(xi.shape)}")

    def _check_same_type(self, other: Any) -> None:
        if type(other) is not type(self):
            raise TypeError(f"cannot combine {type(self).__name__} with {type(other).__name__}")


KEEP_ULPS = 8
"""Rotation parts within ``KEEP_ULPS`` machine epsilons of unit norm are kept bit for bit by the
constructor; others are divided by their norm (``liegeo.conventions``, "Construction")."""


def _checkable(data: Tensor) -> bool:
    """Whether ``data`` is a plain tensor whose values may be read: not under ``vmap``/``grad``
    (functorch wrappers), tracing, ``torch.compile``, or a meta/fake tensor."""
    if data.device.type == "meta" or data.numel() == 0:
        return False
    if torch._C._functorch.is_functorch_wrapped_tensor(data) or torch.jit.is_tracing():
        return False
    compiler = getattr(torch, "compiler", None)
    if compiler is not None and compiler.is_compiling():
        return False
    return type(data) is Tensor or type(data) is torch.nn.Parameter


GRAD_UNIT_TOLERANCE: dict[torch.dtype, float] = {torch.float64: 1e-5, torch.float32: 1e-3}
"""For data that requires grad, which is never rescaled: how far ``|‖q‖ - 1|`` may be from 0
(other dtypes: 1e-2).  Finite-difference checks perturb by ~1e-6 and pass."""


def _normalized(name: str, data: Tensor, start: int) -> Tensor:
    """``data`` with its rotation part ``data[..., start:]`` of unit norm (see ``KEEP_ULPS``).

    Raises ``ValueError`` where that part is zero or not finite (no rotation to normalize to), and,
    for data that requires grad (not rescaled: that would change what autograd differentiates),
    where it is off unit by more than ``GRAD_UNIT_TOLERANCE``.  The common case, storage already on
    the group, costs one norm and one read, and returns ``data`` itself (the same tensor: a leaf
    that requires grad stays that leaf).
    """
    unit = data[..., start:]
    with torch.no_grad():
        norm = torch.linalg.vector_norm(unit.detach(), dim=-1, keepdim=True)
        off = ~((norm - 1.0).abs() <= KEEP_ULPS * torch.finfo(data.dtype).eps)  # True for NaN too
        if not bool(off.any()):
            return data
        bad = ~(torch.isfinite(norm) & (norm > 0))
        problem = "not a rotation (it must be finite and non-zero)"
        if data.requires_grad and not bool(bad.any()):
            tolerance = GRAD_UNIT_TOLERANCE.get(data.dtype, 1e-2)
            bad = ~((norm - 1.0).abs() <= tolerance)
            problem = (f"not 1 (tolerance {tolerance:g} for {data.dtype} data that requires grad, which is not "
                       "rescaled; normalize it differentiably first, e.g. with SO3.from_quaternion or "
                       "SE3.from_translation_quaternion)")
        if bool(bad.any()):
            index = tuple(int(i) for i in torch.nonzero(bad.squeeze(-1))[0])
            what = "quaternion (qx, qy, qz, qw)" if unit.shape[-1] == 4 else "rotation (cos θ, sin θ)"
            where = f" at index {index}" if index else ""
            raise ValueError(f"{name}: the {what}{where} is {unit.detach()[index].tolist()}, with norm "
                             f"{float(norm[index]):.6g}: {problem}")
        if data.requires_grad:
            return data
    scaled = torch.where(off, unit / torch.linalg.vector_norm(unit, dim=-1, keepdim=True), unit)
    return torch.cat([data[..., :start], scaled], dim=-1) if start else scaled


class SOBase(LieGroup):
    """Rotations; the group operations come from four kernels over raw storage tensors.

    The kernels are what ``SEBase`` builds rigid transforms from, so each rotation
    formula is written once.  The product and conjugate return the storage as a
    list of pieces along the last axis, so an SE operation concatenates its
    result once instead of twice.
    """

    @staticmethod
    @abc.abstractmethod
    def _multiply_parts(a: Tensor, b: Tensor) -> list[Tensor]:
        """Storage of ``R_a R_b`` in pieces along the last axis, batch axes broadcast."""

    @staticmethod
    @abc.abstractmethod
    def _conjugate_parts(a: Tensor) -> list[Tensor]:
        """Storage of ``R_a⁻¹`` in pieces along the last axis."""

    @staticmethod
    @abc.abstractmethod
    def _rotate(a: Tensor, p: Tensor) -> Tensor:
        """``R_a p`` for points ``p: (*batch, point_dim)``, batch axes broadcast."""

    @staticmethod
    @abc.abstractmethod
    def _rotate_inverse(a: Tensor, p: Tensor) -> Tensor:
        """``R_a⁻¹ p``, batch axes broadcast."""

    @classmethod
    def _multiply(cls, a: Tensor, b: Tensor) -> Tensor:
        return torch.cat(cls._multiply_parts(a, b), dim=-1)

    @classmethod
    def _conjugate(cls, a: Tensor) -> Tensor:
        return torch.cat(cls._conjugate_parts(a), dim=-1)

    def _compose(self, other: Self) -> Self:
        return self._wrap(self._multiply(self.data, other.data))

    @staticmethod
    @abc.abstractmethod
    def _exp_velocity(delta: Tensor) -> Tensor:
        """``d/dt Exp(t δ)`` of the storage at ``t = 0`` (the identity's storage moved along ``δ``)."""

    def retract_velocity(self, delta: Tensor) -> Tensor:
        self._check_tangent(delta)
        return self._multiply(self.data, self._exp_velocity(delta))  # the product is linear in its right factor

    def _inverse(self) -> Self:
        return self._wrap(self._conjugate(self.data))

    @classmethod
    def _unit_start(cls) -> int:
        return 0

    def _act(self, p: Tensor) -> Tensor:
        return self._rotate(self.data, p)

    def _linear_part(self) -> Tensor:
        return self.matrix()

    def adjoint(self) -> Tensor:
        """The rotation matrix itself for SO(3); ``[[1]]`` for SO(2)."""
        return self.matrix()


class SEBase(LieGroup):
    """Rigid transforms ``x = (R, t)`` stored as ``[t, rotation params]``; the shared operations.

    ``x · y = (R_x R_y, R_x t_y + t_x)``, ``x⁻¹ = (R⁻¹, -R⁻¹ t)`` and ``x p = R p + t`` are
    written once here, from ``rotation()`` and ``translation()``.
    """

    rotation_type: ClassVar[type[SOBase]]
    """The SO(n) type of the rotation part."""

    def rotation(self) -> Any:
        """The rotation part, a batch of ``rotation_type``."""
        return self.rotation_type._wrap(self.data[..., self.point_dim :])

    @classmethod
    def _unit_start(cls) -> int:
        return cls.point_dim

    def translation(self) -> Tensor:
        """The translation part: ``(*batch, point_dim)``."""
        return self.data[..., : self.point_dim]

    @classmethod
    def from_rotation_translation(cls, rotation: LieGroup, translation: Tensor) -> Self:
        """From a rotation batch and translations ``(*batch, point_dim)``; batch axes broadcast."""
        if type(rotation) is not cls.rotation_type:
            raise TypeError(f"{cls.__name__} needs a {cls.rotation_type.__name__} rotation")
        if translation.shape[-1:] != (cls.point_dim,):
            raise ValueError(f"{cls.__name__} translations have shape (*, {cls.point_dim}), got {tuple(translation.shape)}")
        shape = _math.broadcast_shapes(rotation.shape, translation.shape[:-1])
        r = rotation.data.expand(*shape, rotation.data.shape[-1])
        t = translation.expand(*shape, cls.point_dim)
        return cls._wrap(torch.cat([t, r], dim=-1))  # the rotation is an element already

    @classmethod
    def identity(cls, *batch: int, dtype: torch.dtype | None = None, device: Any = None) -> Self:
        rotation = cls.rotation_type.identity(*batch, dtype=dtype, device=device)
        return cls.from_rotation_translation(
            rotation, torch.zeros(*batch_shape(batch), cls.point_dim, dtype=rotation.dtype, device=device)
        )

    @classmethod
    def random(
        cls,
        *batch: int,
        generator: torch.Generator | None = None,
        dtype: torch.dtype | None = None,
        device: Any = None,
    ) -> Self:
        rotation = cls.rotation_type.random(*batch, generator=generator, dtype=dtype, device=device)
        translation = torch.randn(
            *batch_shape(batch), cls.point_dim, generator=generator, dtype=rotation.dtype, device=device
        )
        return cls.from_rotation_translation(rotation, translation)

    @classmethod
    def from_matrix(cls, m: Tensor, *, project: bool = False) -> Self:
        """From homogeneous matrices ``(*batch, n+1, n+1)`` (the bottom row is not read)."""
        n = cls.point_dim
        if m.shape[-2:] != (n + 1, n + 1):
            raise ValueError(f"{cls.__name__}.from_matrix expects (*, {n + 1}, {n + 1}), got {tuple(m.shape)}")
        rotation = cls.rotation_type.from_matrix(m[..., :n, :n], project=project)
        return cls.from_rotation_translation(rotation, m[..., :n, n])

    def matrix(self) -> Tensor:
        n = self.point_dim
        top = torch.cat([self.rotation().matrix(), self.translation().unsqueeze(-1)], dim=-1)
        bottom = torch.zeros(n + 1, dtype=self.dtype, device=self.device)
        bottom[n] = 1.0
        return torch.cat([top, bottom.expand(*self.shape, 1, n + 1)], dim=-2)

    def normalize(self) -> Self:
        return self.from_rotation_translation(self.rotation().normalize(), self.translation())

    def retract_velocity(self, delta: Tensor) -> Tensor:
        # x · Exp(tδ) = (R_x R(t), R_x t(t) + t_x) with t(t) = t δ_ρ + O(t²)
        self._check_tangent(delta)
        n, rot = self.point_dim, self.rotation_type
        r = self.data[..., n:]
        return torch.cat([rot._rotate(r, delta[..., :n]), rot._multiply(r, rot._exp_velocity(delta[..., n:]))], dim=-1)

    def _compose(self, other: Self) -> Self:
        n, rot = self.point_dim, self.rotation_type
        ta, ra = self.data[..., :n], self.data[..., n:]
        tb, rb = other.data[..., :n], other.data[..., n:]
        # In-place updates of fresh temporaries: each saves an allocation (and its page
        # faults, which dominate at 10^6 elements) and none overwrites a value autograd keeps.
        t = rot._rotate(ra, tb).add_(ta)
        return self._wrap(torch.cat([t, *rot._multiply_parts(ra, rb)], dim=-1))

    def _inverse(self) -> Self:
        n, rot = self.point_dim, self.rotation_type
        t, r = self.data[..., :n], self.data[..., n:]
        return self._wrap(torch.cat([rot._rotate_inverse(r, t).neg_(), *rot._conjugate_parts(r)], dim=-1))

    def _act(self, p: Tensor) -> Tensor:
        n = self.point_dim
        return self.rotation_type._rotate(self.data[..., n:], p).add_(self.data[..., :n])

    def _linear_part(self) -> Tensor:
        return self.rotation().matrix()
