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
from liegeo._base import _checkable
from liegeo.so3 import quaternion_multiply, quaternion_rotate, quaternion_rotate_inverse

from .urdf import Robot


def _rpy_quaternion(rpy: Tensor) -> Tensor:
    """Quaternions ``(x, y, z, w)`` of ``Rz(yaw) Ry(pitch) Rx(roll)``: ``(J, 3) -> (J, 4)`` (``SO3.from_rpy``)."""
    return SO3.from_rpy(rpy).data


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
        # The joints between the root and each link (fixed ones included: forward kinematics needs them),
        # and the movable ones among them, root first (the Jacobian's columns).
        self.ancestors: dict[str, set[int]] = {}
        for name in robot.links:
            path, link = set(), name
            while link in joint_of_child:
                path.add(joint_of_child[link])
                link = joints[joint_of_child[link]].parent
            self.ancestors[name] = path
        self.chain = {name: [k for k in range(len(joints)) if k in path and joints[k].movable]
                      for name, path in self.ancestors.items()}  # joints are in topological order
        self.lower = torch.tensor([j.lower for j in robot.movable_joints], dtype=dtype, device=self.device)
        self.upper = torch.tensor([j.upper for j in robot.movable_joints], dtype=dtype, device=self.device)

    @property
    def dof(self) -> int:
        return self.robot.dof

    def _local_transform(self, k: int, q: Tensor) -> SE3:
        """``O_k · M_k(q)`` for joint ``k`` at ``q: (...,)``, in closed form: a revolute motion only turns
        the origin's rotation (``q_O ⊗ (sin(q/2) a, cos(q/2))``), a prismatic one only moves its
        translation (``t_O + R_O a q``)."""
        origin = self.origins[k].data
        kind = self.robot.joints[k].type
        if kind == "fixed":
            return SE3._wrap(origin.expand(*q.shape, 7))
        if kind == "prismatic":
            shift = quaternion_rotate(origin[3:], self.axes[k] * q.unsqueeze(-1))
            return SE3._wrap(torch.cat([origin[:3] + shift, origin[3:].expand(*q.shape, 4)], dim=-1))
        half = 0.5 * q.unsqueeze(-1)
        motion = torch.cat([self.axes[k] * torch.sin(half), torch.cos(half)], dim=-1)
        return SE3._wrap(torch.cat([origin[:3].expand(*q.shape, 3), quaternion_multiply(origin[3:], motion)], dim=-1))

    def _joint_frames(self, q: Tensor, link: str | None = None) -> tuple[list[SE3 | None], list[SE3 | None]]:
        """Link poses (by link index) and joint frames after their motion (by joint index); with
        ``link``, only the joints between the root and that link are computed."""
        if q.shape[-1] != self.dof:
            raise ValueError(f"q must be (..., {self.dof}) for {self.robot.name or 'this robot'}, got {tuple(q.shape)}")
        self._check_finite(q)
        batch = q.shape[:-1]
        needed = None if link is None else self.ancestors[self.robot.links[self._index(link)]]
        links: list[SE3 | None] = [None] * len(self.robot.links)
        frames: list[SE3 | None] = [None] * len(self.robot.joints)
        for k, joint in enumerate(self.robot.joints):
            if needed is not None and k not in needed:
                continue
            position = q[..., self.q_index[k]] if joint.movable else torch.zeros(batch, dtype=q.dtype, device=q.device)
            local = self._local_transform(k, position)
            parent = links[self.parent_link[k]]
            frames[k] = local if parent is None else parent.compose(local)  # the root's pose is the identity
            links[self.child_link[k]] = frames[k]
        links[self.link_index[self.robot.root]] = SE3.identity(*batch, dtype=q.dtype, device=q.device)
        return links, frames

    def _check_finite(self, q: Tensor) -> None:
        """``ValueError`` naming the joint and configuration of the first NaN/Inf joint value (plain tensors
        only: one reduction; skipped under vmap/jacrev, tracing and compile, where values cannot be read)."""
        if not _checkable(q) or bool(torch.isfinite(q.detach()).all()):
            return
        bad = torch.nonzero(~torch.isfinite(q.detach()))[0].tolist()
        where = f" of configuration {tuple(bad[:-1]) if len(bad) > 2 else bad[0]}" if len(bad) > 1 else ""
        name = self.robot.movable_joints[bad[-1]].name
        raise ValueError(f"joint '{name}' (index {bad[-1]}){where} is {float(q.detach()[tuple(bad)])}: joint values "
                         f"must be finite ({self.robot.name or 'robot'})")

    def forward(self, q: Tensor) -> SE3:
        """Poses of every link, ``(..., num_links)`` in ``robot.links`` order."""
        links, _ = self._joint_frames(q)
        return SE3._wrap(torch.stack([x.data for x in links], dim=-2))

    def link_pose(self, q: Tensor, link: str) -> SE3:
        """Pose ``(...,)`` of one link (only the joints between the root and it are evaluated)."""
        links, _ = self._joint_frames(q, link)
        return links[self._index(link)]

    def _index(self, link: str) -> int:
        if link not in self.link_index:
            raise KeyError(f"no link {link!r} in {self.robot.name or 'the robot'} (links: {', '.join(self.robot.links)})")
        return self.link_index[link]

    def jacobian(self, q: Tensor, link: str) -> tuple[SE3, Tensor]:
        """Pose ``(...,)`` of ``link`` and its body-frame Jacobian ``(..., 6, dof)`` (see the module).

        Column ``k`` = ``Ad(T_L⁻¹ T_k) ξ_k``, computed for all chain joints at once from world-frame axes
        ``w_k = R_k a_k`` and offsets ``d_k = p_k - p_L``: revolute ``(R_Lᵀ (d_k × w_k), R_Lᵀ w_k)``,
        prismatic ``(R_Lᵀ w_k, 0)``.
        """
        index = self._index(link)
        links, frames = self._joint_frames(q, link)
        pose = links[index]
        columns = torch.zeros(*q.shape[:-1], self.dof, 6, dtype=q.dtype, device=q.device)
        chain = self.chain[link]
        if chain:
            data = torch.stack([frames[k].data for k in chain], dim=-2)  # (..., n, 7)
            axes = quaternion_rotate(data[..., 3:], self.axes[chain])  # w_k, world frame
            offsets = data[..., :3] - pose.data[..., None, :3]
            prismatic = torch.tensor([self.robot.joints[k].type == "prismatic" for k in chain], device=q.device)
            linear = torch.where(prismatic.unsqueeze(-1), axes, torch.linalg.cross(offsets, axes, dim=-1))
            angular = torch.where(prismatic.unsqueeze(-1), torch.zeros_like(axes), axes)
            body = quaternion_rotate_inverse(pose.data[..., None, 3:], torch.cat([linear, angular], dim=-2)
                                             .reshape(*linear.shape[:-2], 2 * len(chain), 3))
            body = body.reshape(*linear.shape[:-2], 2, len(chain), 3)
            columns[..., [self.q_index[k] for k in chain], :] = torch.cat([body[..., 0, :, :], body[..., 1, :, :]], -1)
        return pose, columns.mT

    def random_configurations(self, n: int, *, generator: torch.Generator | None = None) -> Tensor:
        """``(n, dof)`` uniform within the limits (continuous joints in ``[-π, π]``)."""
        lower = torch.where(torch.isfinite(self.lower), self.lower, torch.full_like(self.lower, -math.pi))
        upper = torch.where(torch.isfinite(self.upper), self.upper, torch.full_like(self.upper, math.pi))
        u = torch.rand(n, self.dof, generator=generator, dtype=self.dtype).to(self.device)
        return lower + (upper - lower) * u
