"""Kinematics cost terms over joint configurations ``q`` (``Euclidean(dof)`` variables), with analytic
Jacobians, vectorized over instances (and the outer batch):

- ``LinkPose(q[k], kinematics=, link=, target=)``: ``Log(target⁻¹ · T_link(q))`` (6), or with
  ``position_only=True`` the position error ``p_link(q) - p_target`` (3).  With ``frame=F[k]`` (an
  ``SE3`` variable) the target is expressed in that external frame, ``Log(target⁻¹ · F⁻¹ · T_link(q))``:
  a pose prior between a link and, e.g., a camera or a mocap frame that is estimated too.
- ``JointLimits(q[k], kinematics=)``: per joint ``max(q - upper, 0) + min(q - lower, 0)``, zero
  inside the limits (a hinge; weight it to taste).
- ``JointVelocity(q[t], q[t+1])``: ``q_{t+1} - q_t``; ``JointAcceleration(q[t-1], q[t], q[t+1])``:
  ``q_{t+1} - 2 q_t + q_{t-1}`` (smooth trajectories).

The Jacobian of ``T_link`` is ``Kinematics.jacobian`` (body frame), so the pose error's is
``J_r⁻¹(r) J_body`` and the position error's ``R J_body[:3]``.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from liegeo import SE3, Euclidean, _math

from ..robust import RobustLoss
from ..variables import VariableRef
from ..weights import Weight
from .base import Cost


class LinkPose(Cost):
    """Pose (or position) of one link against a target, optionally in an estimated external frame."""

    def __init__(self, q: VariableRef, frame: VariableRef | None = None, *, kinematics: Any, link: str, target: SE3,
                 position_only: bool = False, weight: Weight | None = None, loss: RobustLoss | None = None,
                 name: str | None = None):
        refs = (q,) if frame is None else (q, frame)
        super().__init__(*refs, weight=weight, loss=loss, name=name or f"pose of {link}", target=target)
        kinematics._index(link)  # fails early, naming the links, if there is no such link
        self.kinematics, self.link, self.position_only = kinematics, link, position_only

    def _pose(self, q: Euclidean, frame: SE3 | None) -> tuple[SE3, Tensor]:
        pose, jacobian = self.kinematics.jacobian(q.data, self.link)
        return (pose if frame is None else frame.inverse().compose(pose)), jacobian

    def residual(self, q: Euclidean, frame: SE3 | None = None, *, target: SE3) -> Tensor:
        pose, _ = self._pose(q, frame)
        if self.position_only:
            return pose.translation() - target.translation()
        return target.local(pose)

    def residual_and_jacobians(self, q: Euclidean, frame: SE3 | None = None, *,
                               target: SE3) -> tuple[Tensor, list[Tensor]]:
        pose, j_body = self._pose(q, frame)  # pose = F⁻¹ T (or T); its body Jacobian in q is j_body
        if self.position_only:
            rotation = pose.rotation().matrix()
            r = pose.translation() - target.translation()
            jacobians = [rotation @ j_body[..., :3, :]]
            if frame is not None:  # (F Exp(δ))⁻¹ t = Exp(-δ) p ≈ p - δ_v + [p]× δ_ω
                p = pose.translation()
                eye = torch.eye(3, dtype=p.dtype, device=p.device).expand(*p.shape[:-1], 3, 3)
                jacobians.append(torch.cat([-eye, _math.skew(p)], dim=-1))
            return r, jacobians
        r = target.local(pose)
        j_r_inv = SE3.jr_inv(r)
        jacobians = [j_r_inv @ j_body]
        if frame is not None:  # perturbing F moves F⁻¹ T by Exp(-δ) F⁻¹ T = (F⁻¹ T) Exp(-Ad((F⁻¹ T)⁻¹) δ)
            jacobians.append(-(j_r_inv @ pose.inverse().adjoint()))
        return r, jacobians


class JointLimits(Cost):
    """Hinge on the joint limits: zero inside, the overshoot outside."""

    def __init__(self, q: VariableRef, *, kinematics: Any, lower: Tensor | None = None, upper: Tensor | None = None,
                 weight: Weight | None = None, name: str | None = None):
        """``lower``/``upper`` ``(dof,)`` replace the URDF's limits (±inf: that joint is free)."""
        super().__init__(q, weight=weight, name=name or "joint limits")
        self.lower = kinematics.lower if lower is None else lower
        self.upper = kinematics.upper if upper is None else upper

    def residual_and_jacobians(self, q: Euclidean) -> tuple[Tensor, list[Tensor]]:
        lower, upper = self.lower.to(q.data), self.upper.to(q.data)
        above, below = q.data > upper, q.data < lower
        r = torch.where(above, q.data - upper, torch.where(below, q.data - lower, torch.zeros_like(q.data)))
        return r, [torch.diag_embed((above | below).to(q.data.dtype))]

    def residual(self, q: Euclidean) -> Tensor:
        return self.residual_and_jacobians(q)[0]


class JointVelocity(Cost):
    """``q_{t+1} - q_t`` (finite-difference velocity times the time step)."""

    def residual(self, q0: Euclidean, q1: Euclidean) -> Tensor:
        return q1.data - q0.data

    def residual_and_jacobians(self, q0: Euclidean, q1: Euclidean) -> tuple[Tensor, list[Tensor]]:
        r = self.residual(q0, q1)
        eye = torch.eye(r.shape[-1], dtype=r.dtype, device=r.device).expand(*r.shape, r.shape[-1])
        return r, [-eye, eye]


class JointAcceleration(Cost):
    """``q_{t+1} - 2 q_t + q_{t-1}`` (finite-difference acceleration times the step squared)."""

    def residual(self, q0: Euclidean, q1: Euclidean, q2: Euclidean) -> Tensor:
        return q2.data - 2.0 * q1.data + q0.data

    def residual_and_jacobians(self, q0: Euclidean, q1: Euclidean, q2: Euclidean) -> tuple[Tensor, list[Tensor]]:
        r = self.residual(q0, q1, q2)
        eye = torch.eye(r.shape[-1], dtype=r.dtype, device=r.device).expand(*r.shape, r.shape[-1])
        return r, [eye, -2.0 * eye, eye]
