"""``SO3.from_euler`` / ``from_rpy`` and ``SE3.from_rpy`` / ``from_euler`` against scipy's ``Rotation.from_euler``
(every order it accepts, gimbal lock, angles near ±π, float32 and float64), and the URDF reader's origins
built by the same code."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
import torch

from conftest import data_file
from liegeo import SE3, SO3

Rotation = pytest.importorskip("scipy.spatial.transform").Rotation

TAIT_BRYAN = ["".join(p) for p in itertools.permutations("xyz")]
PROPER = [a + b + a for a in "xyz" for b in "xyz" if a != b]
EXTRINSIC = TAIT_BRYAN + PROPER  # the 12 three-axis orders scipy accepts, lowercase
ORDERS = EXTRINSIC + [s.upper() for s in EXTRINSIC]  # + the 12 intrinsic ones
TOLERANCE = {torch.float64: 1e-13, torch.float32: 2e-6}


def _angles(order: str, n: int = 64, seed: int = 0) -> np.ndarray:
    """Random angles in [-π, π], plus the hard cases: the middle angle at its singularity (±π/2 for
    Tait-Bryan orders, 0 and π for proper ones: gimbal lock) and every angle within 1e-9 of ±π."""
    rng = np.random.default_rng(seed)
    random = rng.uniform(-math.pi, math.pi, size=(n, 3))
    proper = order[0].lower() == order[2].lower()
    lock = [0.0, math.pi, -math.pi] if proper else [math.pi / 2, -math.pi / 2]
    locked = rng.uniform(-math.pi, math.pi, size=(len(lock) * 4, 3))
    locked[:, 1] = np.repeat(lock, 4)
    near_pi = np.array(list(itertools.product([math.pi - 1e-9, -math.pi + 1e-9, math.pi, -math.pi], repeat=3)))
    return np.concatenate([random, locked, near_pi])


def _assert_same_rotation(q: torch.Tensor, expected: np.ndarray, atol: float) -> None:
    """Quaternions ``(x, y, z, w)`` equal up to their sign (q and -q are one rotation)."""
    q = q.double().numpy()
    distance = np.minimum(np.abs(q - expected).max(-1), np.abs(q + expected).max(-1))
    assert distance.max() < atol, f"worst quaternion difference {distance.max():.3e} at {distance.argmax()}"


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize("order", ORDERS)
def test_from_euler_matches_scipy_for_every_order(order, dtype):
    angles = _angles(order)
    r = SO3.from_euler(torch.tensor(angles, dtype=dtype), order)
    assert r.dtype == dtype and r.shape == (len(angles),)
    expected = Rotation.from_euler(order, angles)
    _assert_same_rotation(r.data, expected.as_quat(), TOLERANCE[dtype])
    np.testing.assert_allclose(r.matrix().double().numpy(), expected.as_matrix(), atol=4 * TOLERANCE[dtype])
    # unit quaternions as stored, without any renormalization
    assert float((torch.linalg.vector_norm(r.data.double(), dim=-1) - 1).abs().max()) < TOLERANCE[dtype]


@pytest.mark.parametrize("order", ["x", "Z", "xy", "YZ", "zx", "XZ"])
def test_from_euler_with_one_or_two_axes(order):
    angles = _angles("xyz")[:, : len(order)]
    r = SO3.from_euler(torch.tensor(angles), order)
    _assert_same_rotation(r.data, Rotation.from_euler(order, angles).as_quat(), 1e-13)


def test_extrinsic_is_reversed_intrinsic_and_the_matrices_are_the_products():
    angles = torch.tensor(_angles("xyz", seed=1))
    a, b, c = angles.unbind(-1)
    zero = torch.zeros_like(a)

    def about(axis: int, angle: torch.Tensor) -> torch.Tensor:
        return SO3.exp(torch.stack([angle if k == axis else zero for k in range(3)], -1)).matrix()

    rx, ry, rz = about(0, a), about(1, b), about(2, c)
    torch.testing.assert_close(SO3.from_euler(angles, "xyz").matrix(), rz @ ry @ rx, atol=1e-13, rtol=0)
    torch.testing.assert_close(SO3.from_euler(angles, "XYZ").matrix(), rx @ ry @ rz, atol=1e-13, rtol=0)
    torch.testing.assert_close(SO3.from_euler(angles.flip(-1), "ZYX").data, SO3.from_euler(angles, "xyz").data,
                               atol=1e-15, rtol=0)


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_from_rpy_is_urdf_rpy(dtype):
    rpy = torch.tensor(_angles("xyz", seed=2), dtype=dtype)
    one = SO3.from_rpy(rpy)
    three = SO3.from_rpy(*rpy.unbind(-1))
    assert one.dtype == three.dtype == dtype
    assert torch.equal(one.data, three.data) and torch.equal(one.data, SO3.from_euler(rpy, "xyz").data)
    # URDF: fixed-axis roll about x, then pitch about y, then yaw about z
    _assert_same_rotation(one.data, Rotation.from_euler("xyz", rpy.double().numpy()).as_quat(), TOLERANCE[dtype])
    # rpy() inverts it away from gimbal lock
    regular = rpy[:64]
    torch.testing.assert_close(SO3.from_rpy(SO3.from_rpy(regular).rpy()).matrix(), one[:64].matrix(),
                               atol=50 * TOLERANCE[dtype], rtol=0)


def test_from_rpy_broadcasts_numbers_and_batches():
    r = SO3.from_rpy(torch.zeros(2, 5, dtype=torch.float64), 0.5, torch.linspace(-3, 3, 5, dtype=torch.float64))
    assert r.shape == (2, 5) and r.dtype == torch.float64
    batched = SO3.from_rpy(torch.randn(4, 6, 3, dtype=torch.float64, generator=torch.Generator().manual_seed(0)))
    assert batched.shape == (4, 6)
    assert SO3.from_rpy(0.1, 0.2, 0.3).dtype == torch.get_default_dtype()
    assert SO3.from_rpy([0, 0, 1]).dtype == torch.get_default_dtype()  # integers take the default dtype
    torch.testing.assert_close(SO3.from_euler([90.0, 0.0, 0.0], "xyz", degrees=True).data,
                               SO3.from_euler([math.pi / 2, 0.0, 0.0], "xyz").data)


def test_from_euler_refuses_bad_orders_and_shapes():
    with pytest.raises(ValueError, match="1 to 3 of x, y, z"):
        SO3.from_euler(torch.zeros(3), "xYz")
    with pytest.raises(ValueError, match="1 to 3 of x, y, z"):
        SO3.from_euler(torch.zeros(4), "xyzx")
    with pytest.raises(ValueError, match="1 to 3 of x, y, z"):
        SO3.from_euler(torch.zeros(3), "abc")
    with pytest.raises(ValueError, match="twice in a row"):
        SO3.from_euler(torch.zeros(3), "xxy")
    with pytest.raises(ValueError, match=r"shape \(\*batch, 3\)"):
        SO3.from_euler(torch.zeros(5, 2), "xyz")
    with pytest.raises(TypeError, match="angles first"):
        SO3.from_euler("xyz", torch.zeros(3))
    with pytest.raises(TypeError, match="all three"):
        SO3.from_rpy(torch.zeros(3), torch.zeros(3))


def test_from_euler_is_differentiable():
    angles = torch.tensor(_angles("zyx", n=4)[:6], requires_grad=True)
    assert torch.autograd.gradcheck(lambda a: SO3.from_euler(a, "ZXZ").data, (angles,))
    assert torch.autograd.gradcheck(lambda a: SO3.from_rpy(a).matrix(), (angles,))


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_se3_from_rpy_and_from_euler(dtype):
    rpy = torch.tensor(_angles("xyz", seed=3), dtype=dtype)
    xyz = torch.randn(len(rpy), 3, dtype=dtype, generator=torch.Generator().manual_seed(1))
    pose = SE3.from_rpy(xyz, rpy)
    assert pose.dtype == dtype and pose.shape == (len(rpy),)
    assert torch.equal(pose.translation(), xyz) and torch.equal(pose.rotation().data, SO3.from_rpy(rpy).data)
    euler = SE3.from_euler(xyz, rpy.flip(-1), "ZYX")
    _assert_same_rotation(euler.rotation().data, Rotation.from_euler("xyz", rpy.double().numpy()).as_quat(),
                          TOLERANCE[dtype])
    # batch axes broadcast: one rotation for many translations
    many = SE3.from_rpy(torch.zeros(7, 3, dtype=dtype), rpy[0])
    assert many.shape == (7,) and torch.equal(many.rotation().data, SO3.from_rpy(rpy[0]).data.expand(7, 4))
    with pytest.raises(ValueError):
        SE3.from_rpy(torch.zeros(2), rpy[0])


@pytest.mark.parametrize("urdf", ["panda_no_gripper.urdf", "kuka_iiwa.urdf", "ur5.urdf"])
def test_urdf_origins_are_se3_from_rpy(urdf):
    from slam.kinematics import Kinematics, read_urdf
    from slam.kinematics.forward import _rpy_quaternion

    robot = read_urdf(data_file(urdf, "kinematics"))
    kinematics = Kinematics(robot)
    xyz = torch.tensor([j.xyz for j in robot.joints], dtype=torch.float64)
    rpy = torch.tensor([j.rpy for j in robot.joints], dtype=torch.float64)
    assert torch.equal(kinematics.origins.data, SE3.from_rpy(xyz, rpy).data)  # one implementation
    assert torch.equal(_rpy_quaternion(rpy), SO3.from_rpy(rpy).data)
    _assert_same_rotation(kinematics.origins.rotation().data, Rotation.from_euler("xyz", rpy.numpy()).as_quat(), 1e-15)
