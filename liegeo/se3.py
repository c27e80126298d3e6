"""SE(3): 3D rigid transforms stored as ``(tx, ty, tz, qx, qy, qz, qw)``; tangent ``(v, ω)``.

Conventions: ``liegeo.conventions``.  Jacobian formulas follow Barfoot, *State
Estimation for Robotics* (2017), §7.1.5, rewritten for the (v, ω) order.
"""

from __future__ import annotations

from typing import ClassVar

import torch
from torch import Tensor

from . import _math
from ._base import SEBase
from .so3 import SO3, _angle_dtype, exp_quaternion


class SE3(SEBase):
    """3D rigid transforms.  ``data: (*batch, 7)``; tangent ``(v, ω): (*batch, 6)``; ``T p = R p + t``."""

    param_dim: ClassVar[int] = 7
    tangent_dim: ClassVar[int] = 6
    matrix_dim: ClassVar[int] = 4
    point_dim: ClassVar[int] = 3
    rotation_type: ClassVar[type[SO3]] = SO3
    retraction_kernel: ClassVar[str | None] = "_se3_kernels"

    def rotation(self) -> SO3:
        return SO3._wrap(self.data[..., 3:])

    @classmethod
    def from_translation_quaternion(cls, translation: Tensor, quaternion: Tensor) -> SE3:
        """From ``t: (*batch, 3)`` and ``(x, y, z, w)`` quaternions ``(*batch, 4)`` (normalized);
        ``torch.cat([t, q], -1)`` is the g2o / TUM pose layout."""
        return cls.from_rotation_translation(SO3.from_quaternion(quaternion), translation)

    @classmethod
    def from_rpy(cls, xyz: Tensor, rpy: Tensor) -> SE3:
        """A URDF ``<origin xyz="..." rpy="...">``: translation ``xyz: (*batch, 3)`` and rotation
        ``Rz(yaw) Ry(pitch) Rx(roll)`` from ``rpy: (*batch, 3)`` = ``(roll, pitch, yaw)`` in radians
        (``SO3.from_rpy``); batch axes broadcast.  Translation first, as in the storage."""
        xyz, rpy = torch.as_tensor(xyz), torch.as_tensor(rpy)
        dtype = _angle_dtype(xyz, rpy)
        return cls.from_rotation_translation(SO3.from_rpy(rpy.to(dtype)), xyz.to(dtype))

    @classmethod
    def from_euler(cls, translation: Tensor, angles: Tensor, order: str = "xyz", *, degrees: bool = False) -> SE3:
        """Translation ``(*batch, 3)`` and the rotation of Euler ``angles: (*batch, len(order))`` in ``order``
        (scipy's convention: lowercase extrinsic, uppercase intrinsic; ``SO3.from_euler``); batch axes broadcast."""
        translation, angles = torch.as_tensor(translation), torch.as_tensor(angles)
        dtype = _angle_dtype(translation, angles)
        return cls.from_rotation_translation(SO3.from_euler(angles.to(dtype), order, degrees=degrees), translation.to(dtype))

    @classmethod
    def _exp(cls, xi: Tensor) -> SE3:
        # t = J_l(ω) v = v + a ω×v + b ω×(ω×v)
        v, omega = xi[..., :3], xi[..., 3:]
        theta2 = _math.squared_norm(omega)
        w_v = _math.cross(omega, v)
        w_w_v = _math.cross(omega, w_v)
        a, b = _math.cosc(theta2).unsqueeze(-1), _math.sinc3(theta2).unsqueeze(-1)
        t = torch.addcmul(v, a, w_v).add_(b * w_w_v)
        return cls._wrap(torch.cat([t, exp_quaternion(omega, theta2)], dim=-1))

    def _log(self) -> Tensor:
        # v = J_l⁻¹(ω) t = t - ½ ω×t + c ω×(ω×t)
        omega = self.rotation()._log()
        t = self.data[..., :3]
        w_t = _math.cross(omega, t)
        w_w_t = _math.cross(omega, w_t)
        c = _math.jinv(_math.squared_norm(omega)).unsqueeze(-1)
        v = torch.add(t, w_t, alpha=-0.5).add_(c * w_w_t)
        return torch.cat([v, omega], dim=-1)

    def _act_generators(self, p: Tensor) -> Tensor:
        # Exp(δ) p ≈ p + δ_v + δ_ω × p
        eye = _math.eye(3, p.shape[:-1], p)
        return torch.cat([eye, -_math.skew(p)], dim=-1)

    def adjoint(self) -> Tensor:
        r = self.rotation().matrix()
        top = torch.cat([r, _math.skew(self.translation()) @ r], dim=-1)
        bottom = torch.cat([torch.zeros_like(r), r], dim=-1)
        return torch.cat([top, bottom], dim=-2)

    @classmethod
    def ad(cls, xi: Tensor) -> Tensor:
        # [[ω×, v×], [0, ω×]] for ξ = (v, ω): the derivative of Ad = [[R, t× R], [0, R]]
        w, v = _math.skew(xi[..., 3:]), _math.skew(xi[..., :3])
        return torch.cat([torch.cat([w, v], dim=-1), torch.cat([torch.zeros_like(w), w], dim=-1)], dim=-2)

    @classmethod
    def jr(cls, xi: Tensor) -> Tensor:
        return _se3_jl(-xi)

    @classmethod
    def jr_inv(cls, xi: Tensor) -> Tensor:
        return _se3_jl_inv(-xi)


def _q_matrix(xi: Tensor) -> Tensor:
    """Barfoot's ``Q(v, ω)``, the top-right block of ``J_l(ξ)``: ``(*batch, 6) -> (*batch, 3, 3)``."""
    v, w = _math.skew(xi[..., :3]), _math.skew(xi[..., 3:])
    theta2 = _math.squared_norm(xi[..., 3:])[..., None, None]
    wv, vw, wvw = w @ v, v @ w, w @ v @ w
    return (
        0.5 * v
        + _math.sinc3(theta2) * (wv + vw + wvw)
        + _math.cos4(theta2) * (w @ wv + vw @ w - 3.0 * wvw)
        + _math.q5(theta2) * (wvw @ w + w @ wvw)
    )


def _blocks(diagonal: Tensor, top_right: Tensor) -> Tensor:
    """``[[D, B], [0, D]]`` from 3 x 3 blocks."""
    top = torch.cat([diagonal, top_right], dim=-1)
    bottom = torch.cat([torch.zeros_like(diagonal), diagonal], dim=-1)
    return torch.cat([top, bottom], dim=-2)


def _se3_jl(xi: Tensor) -> Tensor:
    return _blocks(SO3.jl(xi[..., 3:]), _q_matrix(xi))


def _se3_jl_inv(xi: Tensor) -> Tensor:
    j_inv = SO3.jl_inv(xi[..., 3:])
    return _blocks(j_inv, -j_inv @ _q_matrix(xi) @ j_inv)
