"""Batched forward kinematics on ``liegeo.SE3``, and geometric Jacobians in its tangent convention.

For joint ``i`` with parent link pose ``T_p``, origin ``O_i`` and axis ``a_i``, the child link's pose is
``T_c = T_p · O_i · M_i(q_i)`` with ``M_i = Exp((0, a_i q_i))`` (revolute, continuous),
``Exp((a_i q_i, 0))`` (prismatic: a translation) or the identity (fixed).  Link poses are in the
root link's frame.

The Jacobian of a link pose ``T_L(q)`` is the right (body-frame) one of ``liegeo.conventions``:
``T_L(q + dq) ≈ T_L(q) · Exp(J dq)``, ``J: (..., 6, dof)`` with rows ``(v, ω)``.  Column ``i``
is ``Ad(T_L⁻¹ T_i) ξ_i`` for each movable joint ``i`` between the root and ``L`` (``T_i`` the joint
frame after its motion, ``ξ_i = (0, a_i)`` or ``(a_i, 0)``), zero for the others.  Everything is
differentiable by autograd as well.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from liegeo import SE3, SO3

from .urdf import Robot


def _rpy_quaternion(rpy: Tensor) -> Tensor:
    """Quaternions ``(x, y, z, w)`` of ``Rz(yaw) Ry(pitch) Rx(roll)``: ``(J, 3) -> (J, 4)``."""
    unit = torch.eye(3, dtype=rpy.dtype)
    rx = SO3.exp(unit[0] * rpy[:, 0:1])
    ry = SO3.exp(unit[1] * rpy[:, 1:2])
    rz = SO3.exp(unit[2] * rpy[:, 2:3])
    return rz.compose(ry).compose(rx).data


class Kinematics:
    """Forward kinematics of a ``Robot``; ``q: (..., dof)`` in ``robot.joint_names`` order."""

    def __init__(self, robot: Robot, *, dtype: torch.dtype = torch.float64, device: str | torch.device = "cpu"):
        self.robot, self.dtype, self.device = robot, dtype, torch.device(device)
        joints = robot.joints
        xyz = torch.tensor([j.xyz for j in joints], dtype=torch.float64).reshape(-1, 3)
        rpy = torch.tensor([j.rpy for j in joints], dtype=torch.float64).reshape(-1, 3)
        # Origins are built in float64 (rpy to quaternion) and only then cast.
        self.origins = SE3(torch.cat([xyz, _rpy_quaternion(rpy)], dim=-1).to(dtype=dtype, device=self.device))
        self.axes = torch.tensor([j.axis for j in joints], dtype=dtype, device=self.device).reshape(-1, 3)
        movable = [j.name for j in robot.movable_joints]
        self.q_index = [movable.index(j.name) if j.movable else -1 for j in joints]
        self.link_index = {name: k for k, name in enumerate(robot.links)}
        joint_of_child = {j.child: k for k, j in enumerate(joints)}
        self.parent_link = [self.link_index[j.parent] for j in joints]
        self.child_link = [self.link_index[j.child] for j in joints]
        # The movable joints between the root and each link (for the Jacobians).
        self.chain: dict[str, list[int]] = {}
        for name in robot.links:
            path, link = [], name
            while link in joint_of_child:
                k = joint_of_child[link]
                if joints[k].movable:
                    path.append(k)
                link = joints[k].parent
            self.chain[name] = path[::-1]
        self.lower = torch.tensor([j.lower for j in robot.movable_joints], dtype=dtype, device=self.device)
        self.upper = torch.tensor([j.upper for j in robot.movable_joints], dtype=dtype, device=self.device)

    @property
    def dof(self) -> int:
        return self.robot.dof

    def _motion_twist(self, k: int, q: Tensor) -> Tensor:
        """``(..., 6)`` twist of joint ``k`` at its position ``q: (...,)``."""
        axis = self.axes[k] * q.unsqueeze(-1)
        zero = torch.zeros_like(axis)
        return torch.cat([zero, axis] if self.robot.joints[k].type != "prismatic" else [axis, zero], dim=-1)

    def _joint_frames(self, q: Tensor) -> tuple[list[SE3], list[SE3]]:
        """Link poses (by link index) and joint frames after their motion (by joint index)."""
        if q.shape[-1] != self.dof:
            raise ValueError(f"q must be (..., {self.dof}) for {self.robot.name or 'this robot'}, got {tuple(q.shape)}")
        batch = q.shape[:-1]
        links: list[SE3 | None] = [None] * len(self.robot.links)
        links[self.link_index[self.robot.root]] = SE3.identity(*batch, dtype=q.dtype, device=q.device)
        frames: list[SE3] = []
        for k, joint in enumerate(self.robot.joints):
            frame = links[self.parent_link[k]].compose(self.origins[k].expand(*batch))
            if joint.movable:
                frame = frame.compose(SE3.exp(self._motion_twist(k, q[..., self.q_index[k]])))
            frames.append(frame)
            links[self.child_link[k]] = frame
        return links, frames

    def forward(self, q: Tensor) -> SE3:
        """Poses of every link, ``(..., num_links)`` in ``robot.links`` order."""
        links, _ = self._joint_frames(q)
        return SE3(torch.stack([x.data for x in links], dim=-2))

    def link_pose(self, q: Tensor, link: str) -> SE3:
        """Pose ``(...,)`` of one link."""
        return self.forward(q)[..., self._index(link)]

    def _index(self, link: str) -> int:
        if link not in self.link_index:
            raise KeyError(f"no link {link!r} in {self.robot.name or 'the robot'} (links: {', '.join(self.robot.links)})")
        return self.link_index[link]

    def jacobian(self, q: Tensor, link: str) -> tuple[SE3, Tensor]:
        """Pose ``(...,)`` of ``link`` and its body-frame Jacobian ``(..., 6, dof)`` (see the module)."""
        index = self._index(link)
        links, frames = self._joint_frames(q)
        pose = links[index]
        columns = torch.zeros(*q.shape[:-1], 6, self.dof, dtype=q.dtype, device=q.device)
        inverse = pose.inverse()
        for k in self.chain[link]:
            relative = inverse.compose(frames[k])  # joint frame in the link's frame
            twist = self._motion_twist(k, torch.ones_like(q[..., 0]))
            columns[..., :, self.q_index[k]] = (relative.adjoint() @ twist.unsqueeze(-1)).squeeze(-1)
        return pose, columns

    def random_configurations(self, n: int, *, generator: torch.Generator | None = None) -> Tensor:
        """``(n, dof)`` uniform within the limits (continuous joints in ``[-π, π]``)."""
        lower = torch.where(torch.isfinite(self.lower), self.lower, torch.full_like(self.lower, -math.pi))
        upper = torch.where(torch.isfinite(self.upper), self.upper, torch.full_like(self.upper, math.pi))
        u = torch.rand(n, self.dof, generator=generator, dtype=self.dtype).to(self.device)
        return lower + (upper - lower) * u
