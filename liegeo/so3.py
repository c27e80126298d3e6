"""SO(3): 3D rotations stored as unit quaternions ``(qx, qy, qz, qw)``; tangent ``ω`` (rad).

Conventions: ``liegeo.conventions``.  The functions over raw quaternion tensors
are public because SE(3) and the cost libraries use them directly.
"""

from __future__ import annotations

import math
from typing import Any, ClassVar

import torch
from torch import Tensor

from . import _math
from ._base import SOBase, batch_shape


def quaternion_multiply_parts(q1: Tensor, q2: Tensor) -> list[Tensor]:
    """Hamilton product of ``(x, y, z, w)`` quaternions as ``[xyz, w]`` pieces; batch axes broadcast."""
    v1, w1 = q1[..., :3], q1[..., 3:]
    v2, w2 = q2[..., :3], q2[..., 3:]
    # (v1 × v2 + w1 v2 + w2 v1,  w1 w2 - v1·v2), updating fresh temporaries in place
    v = _math.cross(v1, v2).add_(w1 * v2).add_(w2 * v1)
    w = (w1 * w2).sub_(_math.dot(v1, v2))
    return [v, w]


def quaternion_multiply(q1: Tensor, q2: Tensor) -> Tensor:
    """Hamilton product of ``(x, y, z, w)`` quaternions: ``(*batch, 4)`` each, broadcast."""
    return torch.cat(quaternion_multiply_parts(q1, q2), dim=-1)


def quaternion_rotate(q: Tensor, p: Tensor) -> Tensor:
    """Rotate points ``p: (*batch, 3)`` by unit quaternions ``q: (*batch, 4)`` (batch axes broadcast)."""
    # R p = p + 2w u + 2 v × u with u = v × p: two cross products, no matrix.
    v, w = q[..., :3], q[..., 3:]
    u = _math.cross(v, p)
    return torch.addcmul(p, w, u, value=2.0).add_(_math.cross(v, u), alpha=2.0)


def quaternion_rotate_inverse(q: Tensor, p: Tensor) -> Tensor:
    """``R⁻¹ p`` for unit quaternions ``q`` (the conjugate's rotation), batch axes broadcast."""
    # Rᵀ p = p - 2w u + 2 v × u with u = v × p
    v, w = q[..., :3], q[..., 3:]
    u = _math.cross(v, p)
    return torch.addcmul(p, w, u, value=-2.0).add_(_math.cross(v, u), alpha=2.0)


def exp_quaternion(omega: Tensor, theta2: Tensor) -> Tensor:
    """``Exp(ω)`` as a quaternion, given ``theta2 = |ω|²``: ``(*batch, 3), (*batch,) -> (*batch, 4)``."""
    # q = (sin(θ/2)/θ · ω, cos(θ/2)), both as functions of θ² so θ = 0 is safe.
    quarter_t = 0.25 * theta2
    half_sinc = 0.5 * _math.sinc(quarter_t)
    return torch.cat([half_sinc.unsqueeze(-1) * omega, _math.cos_sqrt(quarter_t).unsqueeze(-1)], dim=-1)


def quaternion_to_matrix(q: Tensor) -> Tensor:
    """Rotation matrices of unit quaternions: ``(*batch, 4) -> (*batch, 3, 3)``."""
    x, y, z, w = q.unbind(-1)
    xx, yy, zz = x * x, y * y, z * z
    xy, xz, yz = x * y, x * z, y * z
    wx, wy, wz = w * x, w * y, w * z
    rows = [
        1 - 2 * (yy + zz), 2 * (xy - wz), 2 * (xz + wy),
        2 * (xy + wz), 1 - 2 * (xx + zz), 2 * (yz - wx),
        2 * (xz - wy), 2 * (yz + wx), 1 - 2 * (xx + yy),
    ]
    return torch.stack(rows, dim=-1).unflatten(-1, (3, 3))


def matrix_to_quaternion(m: Tensor) -> Tensor:
    """Unit quaternions of rotation matrices: ``(*batch, 3, 3) -> (*batch, 4)``.

    Shepperd's method: of the four candidate formulas, each row takes the one
    built around its largest diagonal term, which is well conditioned for every
    rotation, near π included.  A slightly non-orthogonal input gives the
    normalized quaternion of a nearby rotation.
    """
    m00, m01, m02 = m[..., 0, 0], m[..., 0, 1], m[..., 0, 2]
    m10, m11, m12 = m[..., 1, 0], m[..., 1, 1], m[..., 1, 2]
    m20, m21, m22 = m[..., 2, 0], m[..., 2, 1], m[..., 2, 2]
    candidates = torch.stack(
        [  # each is 4·q_k·q for the k it is built around: (x, y, z, w)
            torch.stack([1 + m00 - m11 - m22, m01 + m10, m02 + m20, m21 - m12], -1),
            torch.stack([m01 + m10, 1 - m00 + m11 - m22, m12 + m21, m02 - m20], -1),
            torch.stack([m02 + m20, m12 + m21, 1 - m00 - m11 + m22, m10 - m01], -1),
            torch.stack([m21 - m12, m02 - m20, m10 - m01, 1 + m00 + m11 + m22], -1),
        ],
        dim=-2,
    )
    diagonal = torch.stack([m00 - m11 - m22, m11 - m00 - m22, m22 - m00 - m11, m00 + m11 + m22], -1)
    best = diagonal.argmax(-1, keepdim=True).unsqueeze(-1).expand(*diagonal.shape[:-1], 1, 4)
    q = candidates.gather(-2, best).squeeze(-2)
    return q / torch.linalg.vector_norm(q, dim=-1, keepdim=True)


def project_to_rotation(m: Tensor) -> Tensor:
    """Nearest rotation matrix in the Frobenius norm (SVD): ``(*batch, 3, 3) -> (*batch, 3, 3)``."""
    u, _, vh = torch.linalg.svd(m)
    det = torch.linalg.det(u @ vh)
    ones = torch.ones_like(det)
    d = torch.stack([ones, ones, det], dim=-1)
    return (u * d.unsqueeze(-2)) @ vh


class SO3(SOBase):
    """3D rotations.  ``data: (*batch, 4)`` holds ``(qx, qy, qz, qw)``; tangent ``ω: (*batch, 3)``."""

    param_dim: ClassVar[int] = 4
    tangent_dim: ClassVar[int] = 3
    matrix_dim: ClassVar[int] = 3
    point_dim: ClassVar[int] = 3

    # ------------------------------------------------------------------ construction

    @classmethod
    def identity(cls, *batch: int, dtype: torch.dtype | None = None, device: Any = None) -> SO3:
        data = torch.zeros(*batch_shape(batch), 4, dtype=dtype, device=device)
        data[..., 3] = 1.0
        return cls._wrap(data)

    @classmethod
    def random(
        cls,
        *batch: int,
        generator: torch.Generator | None = None,
        dtype: torch.dtype | None = None,
        device: Any = None,
    ) -> SO3:
        # A normalized 4D Gaussian is uniform on S³, hence Haar-uniform on SO(3).
        q = torch.randn(*batch_shape(batch), 4, generator=generator, dtype=dtype, device=device)
        return cls._wrap(q / torch.linalg.vector_norm(q, dim=-1, keepdim=True))

    @classmethod
    def from_quaternion(cls, q: Tensor) -> SO3:
        """From quaternions ``(x, y, z, w)``: ``(*batch, 4)``; normalized (a zero quaternion gives NaN)."""
        if q.shape[-1:] != (4,):
            raise ValueError(f"quaternions have shape (*, 4) in (x, y, z, w) order, got {tuple(q.shape)}")
        return cls._wrap(q / torch.linalg.vector_norm(q, dim=-1, keepdim=True))

    @classmethod
    def from_matrix(cls, m: Tensor, *, project: bool = False) -> SO3:
        """From rotation matrices ``(*batch, 3, 3)``; ``project=True`` first takes the nearest rotation (SVD)."""
        if m.shape[-2:] != (3, 3):
            raise ValueError(f"SO3.from_matrix expects (*, 3, 3), got {tuple(m.shape)}")
        return cls._wrap(matrix_to_quaternion(project_to_rotation(m) if project else m))

    @classmethod
    def from_axis_angle(cls, axis: Tensor, angle: Tensor | None = None) -> SO3:
        """From a rotation vector ``θ·n: (*batch, 3)``, or from an axis ``(*batch, 3)`` and ``angle: (*batch,)``."""
        if angle is None:
            return cls.exp(axis)
        unit = axis / torch.linalg.vector_norm(axis, dim=-1, keepdim=True)
        return cls.exp(unit * angle.unsqueeze(-1))

    @classmethod
    def from_rpy(cls, roll: Tensor | Any, pitch: Tensor | Any = None, yaw: Tensor | Any = None) -> SO3:
        """``R = Rz(yaw) · Ry(pitch) · Rx(roll)``: URDF's ``<origin rpy>`` (fixed axes: roll about x, then
        pitch about y, then yaw about z), also TORO's and GTSAM's ``Rot3.RzRyRx``; radians.

        Either ``SO3.from_rpy(rpy)`` with ``rpy: (*batch, 3)`` holding ``(roll, pitch, yaw)``, or
        ``SO3.from_rpy(roll, pitch, yaw)`` with three ``(*batch,)`` tensors (or numbers; they broadcast).
        The same as ``from_euler(rpy, "xyz")``; ``rpy()`` is the inverse.
        """
        if pitch is None and yaw is None:
            return cls.from_euler(roll, "xyz")
        if pitch is None or yaw is None:
            raise TypeError("SO3.from_rpy takes one (*batch, 3) tensor or all three of roll, pitch and yaw")
        parts = [torch.as_tensor(a) for a in (roll, pitch, yaw)]
        dtype = _angle_dtype(*parts)
        return cls.from_euler(torch.stack(torch.broadcast_tensors(*(a.to(dtype) for a in parts)), -1), "xyz")

    @classmethod
    def from_euler(cls, angles: Tensor | Any, order: str = "xyz", *, degrees: bool = False) -> SO3:
        """From Euler angles ``angles: (*batch, len(order))`` about the axes named by ``order``, with
        scipy's convention (``scipy.spatial.transform.Rotation.from_euler(order, angles)``).

        ``order`` is 1 to 3 of ``x, y, z`` (no axis twice in a row): lowercase is **extrinsic** (each
        rotation about the fixed frame's axis: ``"xyz"`` with ``(a, b, c)`` is ``Rz(c) Ry(b) Rx(a)``,
        URDF's rpy, the default), uppercase is **intrinsic** (about the axes rotated so far: ``"ZYX"``
        with ``(a, b, c)`` is ``Rz(a) Ry(b) Rx(c)``, yaw-pitch-roll); ``"zxz"``-type proper Euler
        orders are accepted too.  Radians, or degrees with ``degrees=True``.  Float32 and float64 (other
        inputs take the default dtype); no singularity: gimbal lock only matters for ``rpy()``.
        Differentiable.
        """
        if isinstance(angles, str):
            raise TypeError(f"SO3.from_euler takes the angles first: SO3.from_euler(angles, {angles!r}) "
                            "(scipy's from_euler takes the order first)")
        axes = _euler_axes(order)
        angles = torch.as_tensor(angles)
        angles = angles.to(_angle_dtype(angles))
        if angles.ndim == 0 or angles.shape[-1] != len(axes):
            raise ValueError(f"SO3.from_euler({order!r}) needs angles of shape (*batch, {len(axes)}), "
                             f"got {tuple(angles.shape)}")
        half = angles * (math.pi / 360.0 if degrees else 0.5)
        sin, cos, zero = torch.sin(half), torch.cos(half), torch.zeros_like(half[..., 0])
        elementary = []  # the quaternion (sin(θ/2) e_k, cos(θ/2)) of each single-axis rotation
        for i, k in enumerate(axes):
            vector = [zero, zero, zero]
            vector[k] = sin[..., i]
            elementary.append(torch.stack([*vector, cos[..., i]], -1))
        if order.islower():  # extrinsic: the later rotations apply on the left
            elementary.reverse()
        q = elementary[0]
        for factor in elementary[1:]:
            q = quaternion_multiply(q, factor)
        return cls._wrap(q)

    # ------------------------------------------------------------------ conversion

    def quaternion(self) -> Tensor:
        """``(x, y, z, w)``: ``(*batch, 4)``, as stored (sign not canonicalized)."""
        return self.data

    def axis_angle(self) -> Tensor:
        """The rotation vector ``θ·n`` with ``θ ∈ [0, π]``: ``(*batch, 3)``; same as ``log()``."""
        return self._log()

    def rpy(self) -> Tensor:
        """``(roll, pitch, yaw)`` with ``R = Rz(yaw) Ry(pitch) Rx(roll)``: ``(*batch, 3)``.

        At gimbal lock (pitch = ±π/2) only yaw ∓ roll is defined; roll is set to 0 there.
        """
        m = self.matrix()
        cos_pitch = torch.hypot(m[..., 0, 0], m[..., 1, 0])
        pitch = torch.atan2(-m[..., 2, 0], cos_pitch)
        lock = cos_pitch < torch.finfo(m.dtype).eps ** 0.5
        roll = _math.select(lock, torch.zeros_like(pitch), torch.atan2(m[..., 2, 1], m[..., 2, 2]))
        yaw = _math.select(lock, torch.atan2(-m[..., 0, 1], m[..., 1, 1]), torch.atan2(m[..., 1, 0], m[..., 0, 0]))
        return torch.stack([roll, pitch, yaw], dim=-1)

    def matrix(self) -> Tensor:
        return quaternion_to_matrix(self.data)

    def normalize(self) -> SO3:
        return SO3._wrap(self.data / torch.linalg.vector_norm(self.data, dim=-1, keepdim=True))

    # ------------------------------------------------------------------ group primitives

    @classmethod
    def _exp(cls, xi: Tensor) -> SO3:
        return cls._wrap(exp_quaternion(xi, _math.squared_norm(xi)))

    @staticmethod
    def _exp_velocity(delta: Tensor) -> Tensor:
        return torch.cat([0.5 * delta, torch.zeros_like(delta[..., :1])], dim=-1)  # (sin(θ/2) axis, cos(θ/2))

    def _log(self) -> Tensor:
        # ω = ±2 atan2(|v|, |w|) / |v| · v: taking |w| (and flipping the sign of ω when w < 0)
        # is log(±q) on the principal branch, θ ∈ [0, π].
        v, w = self.data[..., :3], self.data[..., 3]
        sign = 1.0 - 2.0 * (w < 0).to(w.dtype)
        # sign · w, not w.abs(): the same value, and torch's double backward of abs imports torch._dynamo
        # (~1 s on the first exact-Hessian implicit backward of a process; torch 2.13)
        scale = 2.0 * sign * _math.atan2_sqrt_over_sqrt(_math.squared_norm(v), sign * w)
        return scale.unsqueeze(-1) * v

    _multiply_parts = staticmethod(quaternion_multiply_parts)
    _rotate = staticmethod(quaternion_rotate)
    _rotate_inverse = staticmethod(quaternion_rotate_inverse)

    @staticmethod
    def _conjugate_parts(q: Tensor) -> list[Tensor]:
        return [-q[..., :3], q[..., 3:]]

    def _act_generators(self, p: Tensor) -> Tensor:
        return -_math.skew(p)

    @classmethod
    def ad(cls, xi: Tensor) -> Tensor:
        return _math.skew(xi)  # [ω, η] = ω × η

    @classmethod
    def jr(cls, xi: Tensor) -> Tensor:
        # J_r(ω) = I - (1 - cos θ)/θ² [ω]× + (θ - sin θ)/θ³ [ω]×²
        return _so3_jacobian(xi, -_math.cosc(_math.squared_norm(xi)), _math.sinc3(_math.squared_norm(xi)))

    @classmethod
    def jr_inv(cls, xi: Tensor) -> Tensor:
        # J_r⁻¹(ω) = I + ½ [ω]× + (1 - (θ/2) cot(θ/2))/θ² [ω]×²
        return _so3_jacobian(xi, torch.full_like(xi[..., 0], 0.5), _math.jinv(_math.squared_norm(xi)))


def _euler_axes(order: str) -> list[int]:
    """The axis indices (x=0, y=1, z=2) of an Euler ``order`` as scipy accepts it (see ``SO3.from_euler``)."""
    if not isinstance(order, str) or not 1 <= len(order) <= 3 or not (order.islower() or order.isupper()) or any(
            c not in "xyz" for c in order.lower()):
        raise ValueError(f"Euler order must be 1 to 3 of x, y, z, all lowercase (extrinsic) or all uppercase "
                         f"(intrinsic), got {order!r}")
    if any(a == b for a, b in zip(order, order[1:])):
        raise ValueError(f"Euler order {order!r} names one axis twice in a row")
    return ["xyz".index(c) for c in order.lower()]


def _angle_dtype(*angles: Tensor) -> torch.dtype:
    """The floating dtype of angle tensors (promoted; the default dtype for integers and booleans)."""
    dtype = angles[0].dtype
    for a in angles[1:]:
        dtype = torch.promote_types(dtype, a.dtype)
    return dtype if dtype.is_floating_point else torch.get_default_dtype()


def _so3_jacobian(omega: Tensor, a: Tensor, b: Tensor) -> Tensor:
    """``I + a [ω]× + b [ω]×²`` for ``omega: (*batch, 3)``, ``a, b: (*batch,)``."""
    k = _math.skew(omega)
    k2 = omega.unsqueeze(-1) * omega.unsqueeze(-2) - _math.squared_norm(omega)[..., None, None] * _math.eye(
        3, omega.shape[:-1], omega
    )
    return _math.eye(3, omega.shape[:-1], omega) + a[..., None, None] * k + b[..., None, None] * k2
