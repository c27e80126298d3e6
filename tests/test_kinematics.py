"""Kinematics: URDF parsing (and its errors), forward kinematics against the reference poses and
pytorch-kinematics, body-frame Jacobians against autograd, finite differences and pytorch-kinematics."""

from __future__ import annotations

import json
import math

import pytest
import torch

from conftest import data_file
from liegeo import SE3, Euclidean
from liegeo.testing import check_jacobians
from slam.kinematics import Kinematics, URDFError, read_urdf

ROBOTS = {  # urdf, reference file, tolerance on the pose (tangent norm), dtype of the check
    "panda": ("panda_no_gripper.urdf", "panda_fk_dataset.json", 1e-6),  # the file holds float32 values
    "kuka": ("kuka_iiwa.urdf", "kuka_iiwa_fk_reference.json", 1e-9),
    "ur5": ("ur5.urdf", "ur5_fk_reference.json", 1e-9),
}
END_EFFECTORS = {"panda": "panda_virtual_ee_link", "kuka": "lbr_iiwa_link_7", "ur5": "ee_link"}


def _robot(name: str) -> Kinematics:
    return Kinematics(read_urdf(data_file(ROBOTS[name][0], "kinematics")))


@pytest.mark.parametrize("name", sorted(ROBOTS))
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_forward_kinematics_equals_the_reference_poses(name, dtype):
    urdf, reference, tolerance = ROBOTS[name]
    kinematics = Kinematics(read_urdf(data_file(urdf, "kinematics")), dtype=dtype)
    data = json.loads(data_file(reference, "kinematics").read_text())
    q = torch.tensor(data["joint_states"], dtype=dtype)
    if "joint_names" in data:
        assert list(kinematics.robot.joint_names) == data["joint_names"]
        assert data["base_name"] == kinematics.robot.root
    pose = kinematics.link_pose(q, data["ee_name"])
    expected = SE3(torch.tensor([p[0] + p[1] for p in data["ee_poses"]], dtype=torch.float64))
    error = expected.local(SE3(pose.data.double())).norm(dim=-1).max()
    assert pose.dtype == dtype
    assert float(error) < (tolerance if dtype == torch.float64 else 2e-6)


@pytest.mark.parametrize("name", sorted(ROBOTS))
def test_forward_kinematics_and_jacobians_equal_pytorch_kinematics(name):
    pk = pytest.importorskip("pytorch_kinematics")
    kinematics = _robot(name)
    ee = END_EFFECTORS[name]
    chain = pk.build_serial_chain_from_urdf(data_file(ROBOTS[name][0], "kinematics").read_bytes(), ee)
    chain = chain.to(dtype=torch.float64)
    assert list(chain.get_joint_parameter_names()) == list(kinematics.robot.joint_names)
    q = kinematics.random_configurations(200, generator=torch.Generator().manual_seed(1))
    pose, jacobian = kinematics.jacobian(q, ee)
    # pytorch-kinematics parses the URDF in float32 (its origins carry ~1e-7 rounding), hence 1e-6.
    assert torch.allclose(pose.matrix(), chain.forward_kinematics(q).get_matrix(), atol=1e-6)
    # Its Jacobian is in the base frame: [v; ω] = blockdiag(R, R) · ours.
    rotation = pose.rotation().matrix()
    world = torch.cat([rotation @ jacobian[:, :3], rotation @ jacobian[:, 3:]], dim=-2)
    assert torch.allclose(world, chain.jacobian(q), atol=1e-6)


@pytest.mark.parametrize("name", sorted(ROBOTS))
def test_jacobians_equal_autograd_and_finite_differences(name):
    kinematics = _robot(name)
    q = kinematics.random_configurations(20, generator=torch.Generator().manual_seed(2))
    for link in (END_EFFECTORS[name], kinematics.robot.links[2]):
        _, jacobian = kinematics.jacobian(q, link)
        errors = check_jacobians(lambda x: kinematics.link_pose(x.data, link), [Euclidean(q)], [jacobian], atol=1e-6)
        assert max(errors.values()) < 1e-6


TREE = """<?xml version="1.0"?>
<robot name="tree">
  <link name="base"/> <link name="slider"/> <link name="left"/> <link name="right"/> <link name="tool"/>
  <joint name="rail" type="prismatic">
    <parent link="base"/> <child link="slider"/>
    <origin xyz="0.1 0 0.2" rpy="0 0 0.3"/> <axis xyz="1 1 0"/> <limit lower="-0.5" upper="0.5"/>
  </joint>
  <joint name="left_spin" type="continuous">
    <parent link="slider"/> <child link="left"/> <origin xyz="0 0.2 0" rpy="0.4 -0.2 0.1"/> <axis xyz="0 0 1"/>
  </joint>
  <joint name="right_hinge" type="revolute">
    <parent link="slider"/> <child link="right"/> <origin xyz="0 -0.2 0"/> <axis xyz="0 1 0"/>
    <limit lower="-1" upper="1"/>
  </joint>
  <joint name="tool_mount" type="fixed">
    <parent link="right"/> <child link="tool"/> <origin xyz="0.3 0 0" rpy="0 1.2 0"/>
  </joint>
</robot>
"""


def test_tree_robot_with_prismatic_continuous_and_fixed_joints(tmp_path):
    path = tmp_path / "tree.urdf"
    path.write_text(TREE)
    robot = read_urdf(path)
    assert robot.root == "base" and robot.joint_names == ("rail", "left_spin", "right_hinge") and robot.dof == 3
    kinematics = Kinematics(robot)
    q = torch.tensor([[0.2, 1.0, -0.5], [0.0, 0.0, 0.0]], dtype=torch.float64)
    poses = kinematics.forward(q)
    assert poses.shape == (2, 5)
    # Independently: the tool is base · O_rail · Trans(a·0.2) · O_right · Ry(-0.5) · O_tool
    axis = torch.tensor([1.0, 1.0, 0.0], dtype=torch.float64) / math.sqrt(2)

    def pose(xyz, rpy=(0.0, 0.0, 0.0)):
        from slam.kinematics.forward import _rpy_quaternion

        return SE3(torch.cat([torch.tensor(xyz, dtype=torch.float64), _rpy_quaternion(torch.tensor([rpy], dtype=torch.float64))[0]]))

    expected = (pose((0.1, 0, 0.2), (0, 0, 0.3)).compose(SE3.exp(torch.cat([0.2 * axis, torch.zeros(3)])))
                .compose(pose((0, -0.2, 0))).compose(SE3.exp(torch.tensor([0, 0, 0, 0, -0.5, 0.0], dtype=torch.float64)))
                .compose(pose((0.3, 0, 0), (0, 1.2, 0))))
    assert float(expected.local(poses[0, robot.links.index("tool")]).norm()) < 1e-12
    # The left branch does not depend on the right hinge, and vice versa.
    _, jacobian = kinematics.jacobian(q, "left")
    assert torch.equal(jacobian[..., 2], torch.zeros_like(jacobian[..., 2]))
    errors = check_jacobians(lambda x: kinematics.link_pose(x.data, "tool"), [Euclidean(q)],
                             [kinematics.jacobian(q, "tool")[1]], atol=1e-6)
    assert max(errors.values()) < 1e-6
    samples = kinematics.random_configurations(1000, generator=torch.Generator().manual_seed(0))
    assert bool(((samples[:, 0] >= -0.5) & (samples[:, 0] <= 0.5)).all()) and float(samples[:, 1].abs().max()) <= math.pi


@pytest.mark.parametrize("change, line, words", [  # lines of TREE: the element named in the message
    (("<robot", "<robo"), None, "XML"),
    (('type="continuous"', 'type="floating"'), 8, "unsupported type 'floating'"),
    (('<limit lower="-1" upper="1"/>', ""), 11, "needs <limit"),
    (('<child link="tool"/>', '<child link="tol"/>'), 16, "link 'tol' is not defined"),
    (('xyz="0.3 0 0"', 'xyz="0.3 0"'), 16, "attribute xyz: needs 3 finite numbers"),
    (('rpy="0.4 -0.2 0.1"', 'rpy="0.4 x 0.1"'), 9, "attribute rpy: is not 3 numbers"),
    (('<axis xyz="0 1 0"/>', '<axis xyz="0 0 0"/>'), 12, "zero vector"),
    (('<limit lower="-1" upper="1"/>', '<limit lower="1" upper="-1"/>'), 13, "lower 1.0 is above upper"),
    (('<parent link="right"/>', '<parent link="tool"/>'), None, "root"),
    (('<axis xyz="0 1 0"/>', '<axis xyz="0 1 0"/> <mimic joint="rail"/>'), 12, "mimic joints are not supported"),
])
def test_bad_urdf_names_the_element(tmp_path, change, line, words):
    path = tmp_path / "bad.urdf"
    path.write_text(TREE.replace(*change))
    with pytest.raises(URDFError, match=words) as error:
        read_urdf(path)
    assert error.value.path == str(path)
    assert TREE.replace(*change).splitlines()[(error.value.line or 1) - 1]  # a real line of the file
    if line is not None:
        assert error.value.line == line, str(error.value)


def test_unknown_link_and_wrong_shape_are_refused():
    kinematics = _robot("ur5")
    with pytest.raises(KeyError, match="no link 'hand'"):
        kinematics.link_pose(torch.zeros(6, dtype=torch.float64), "hand")
    with pytest.raises(ValueError, match=r"q must be \(\.\.\., 6\)"):
        kinematics.forward(torch.zeros(7, dtype=torch.float64))


# ----------------------------------------------------------------------------- costs and inverse kinematics


def _check_cost_jacobians(cost, values):
    from slam.costs.base import autodiff_jacobians

    r, analytic = cost.residual_and_jacobians(*values, **cost.data)
    r_auto, automatic = autodiff_jacobians(cost.residual, tuple(values), cost.data, "reverse")
    assert torch.allclose(r, r_auto, atol=1e-12)
    for a, b in zip(analytic, automatic):
        assert torch.allclose(a.expand_as(b), b, atol=1e-9), float((a - b).abs().max())


@pytest.mark.parametrize("position_only", [False, True])
@pytest.mark.parametrize("with_frame", [False, True])
def test_link_pose_cost_jacobians_equal_autograd(position_only, with_frame):
    import slam
    from slam.costs import LinkPose

    kinematics = _robot("panda")
    generator = torch.Generator().manual_seed(3)
    q = kinematics.random_configurations(6, generator=generator)
    target = SE3.random(6, generator=generator, dtype=torch.float64)
    configurations = slam.Variable(Euclidean(q))
    index = torch.arange(6)
    refs = [configurations[index]]
    values = [Euclidean(q.unsqueeze(0))]
    if with_frame:
        frame = SE3.random(6, generator=generator, dtype=torch.float64)
        refs.append(slam.Variable(frame)[index])
        values.append(SE3(frame.data.unsqueeze(0)))
    cost = LinkPose(*refs, kinematics=kinematics, link="panda_link6", target=target, position_only=position_only)
    _check_cost_jacobians(cost, values)


def test_joint_limit_and_smoothness_jacobians_equal_autograd():
    import slam
    from slam.costs import JointAcceleration, JointLimits, JointVelocity

    kinematics = _robot("panda")
    q = 2.0 * kinematics.random_configurations(5, generator=torch.Generator().manual_seed(4))  # some outside
    trajectory = slam.Variable(Euclidean(q))
    values = [Euclidean(q[:3].unsqueeze(0)), Euclidean(q[1:4].unsqueeze(0)), Euclidean(q[2:].unsqueeze(0))]
    limits = JointLimits(trajectory[torch.arange(3)], kinematics=kinematics)
    r, _ = limits.residual_and_jacobians(values[0])
    inside = (q[:3] >= kinematics.lower) & (q[:3] <= kinematics.upper)
    assert bool((r[0][inside] == 0).all()) and bool((r[0][~inside] != 0).all())
    _check_cost_jacobians(limits, values[:1])
    _check_cost_jacobians(JointVelocity(trajectory[torch.arange(3)], trajectory[torch.arange(1, 4)]), values[:2])
    _check_cost_jacobians(JointAcceleration(trajectory[torch.arange(3)], trajectory[torch.arange(1, 4)],
                                            trajectory[torch.arange(2, 5)]), values)


@pytest.mark.parametrize("name", ["panda", "ur5"])
def test_batched_inverse_kinematics_reaches_random_reachable_targets(name):
    from slam.kinematics import inverse_kinematics

    kinematics = _robot(name)
    truth = kinematics.random_configurations(200, generator=torch.Generator().manual_seed(5))
    targets = kinematics.link_pose(truth, END_EFFECTORS[name])
    result = inverse_kinematics(kinematics, END_EFFECTORS[name], targets)
    assert float(result.success().double().mean()) >= 0.98  # measured: 1000 Panda targets, 99.3 %
    reached = kinematics.link_pose(result.q, END_EFFECTORS[name])
    assert torch.allclose(reached.translation()[result.success()], targets.translation()[result.success()], atol=1e-3)


def test_warm_start_converges_in_a_few_iterations():
    from slam.kinematics import inverse_kinematics

    kinematics = _robot("kuka")
    truth = kinematics.random_configurations(50, generator=torch.Generator().manual_seed(6))
    targets = kinematics.link_pose(truth, "lbr_iiwa_link_7")
    result = inverse_kinematics(kinematics, "lbr_iiwa_link_7", targets, truth + 0.01, restarts=0)
    assert bool(result.success().all()) and int(result.iterations.max()) <= 10


def test_ik_gradients_with_respect_to_targets_equal_finite_differences():
    from slam.kinematics import inverse_kinematics

    kinematics = _robot("ur5")
    truth = kinematics.random_configurations(3, generator=torch.Generator().manual_seed(7))
    targets = kinematics.link_pose(truth, "ee_link").data.clone()
    start = truth + 0.05
    weights = torch.linspace(-1.0, 1.0, 18, dtype=torch.float64).reshape(3, 6)

    def loss(target_data):
        result = inverse_kinematics(kinematics, "ee_link", SE3(target_data), start, restarts=0, limit_weight=0.0)
        return (result.q * weights).sum()

    leaf = targets.clone().requires_grad_(True)
    loss(leaf).backward()
    assert torch.isfinite(leaf.grad).all() and leaf.grad.abs().sum() > 0
    eps = 1e-6
    for index in [(0, 0), (1, 2), (2, 1)]:  # translation components (quaternion entries would leave the manifold)
        plus, minus = targets.clone(), targets.clone()
        plus[index] += eps
        minus[index] -= eps
        with torch.no_grad():
            numeric = (float(loss(plus)) - float(loss(minus))) / (2 * eps)
        assert float(leaf.grad[index]) == pytest.approx(numeric, rel=1e-5, abs=1e-8)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")
def test_cuda_forward_kinematics_and_jacobian_equal_cpu():
    cpu = _robot("panda")
    cuda = Kinematics(cpu.robot, device="cuda")
    q = cpu.random_configurations(64, generator=torch.Generator().manual_seed(8))
    pose, jacobian = cpu.jacobian(q, "panda_virtual_ee_link")
    pose_cuda, jacobian_cuda = cuda.jacobian(q.cuda(), "panda_virtual_ee_link")
    assert torch.allclose(pose_cuda.data.cpu(), pose.data, atol=1e-12)
    assert torch.allclose(jacobian_cuda.cpu(), jacobian, atol=1e-12)
