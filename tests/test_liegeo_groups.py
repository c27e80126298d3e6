"""Group axioms, round trips, conversions, broadcasting and the container API."""

import math

import pytest
import torch

from liegeo import SE2, SE3, SO2, SO3, Euclidean
from liegeo.testing import REGIMES, assert_same_elements, sample, sample_tangent

from conftest import BATCH_SHAPES, GROUPS

groups = pytest.mark.parametrize("group", GROUPS, ids=lambda g: g.__name__)
regimes = pytest.mark.parametrize("regime", REGIMES)
batches = pytest.mark.parametrize("batch", BATCH_SHAPES, ids=str)


@groups
@regimes
@batches
def test_axioms(group, regime, batch, generator):
    a = sample(group, regime, *batch, generator=generator)
    b = sample(group, "uniform", *batch, generator=generator)
    c = sample(group, "uniform", *batch, generator=generator)
    e = group.identity(*batch, dtype=torch.float64)
    assert_same_elements(a @ e, a)
    assert_same_elements(e @ a, a)
    assert_same_elements(a @ a.inverse(), e)
    assert_same_elements(a.inverse() @ a, e)
    assert_same_elements((a @ b) @ c, a @ (b @ c))
    assert_same_elements(a.between(b), a.inverse() @ b)
    torch.testing.assert_close((a @ b).matrix(), a.matrix() @ b.matrix(), atol=1e-12, rtol=0)
    torch.testing.assert_close(a.inverse().matrix(), torch.linalg.inv(a.matrix()), atol=1e-12, rtol=0)


@groups
@regimes
@batches
def test_retract_velocity_is_the_derivative_of_retract(group, regime, batch, generator):
    """``retract_velocity``'s closed form against the generic forward-mode default (``LieGroup``'s) and
    Richardson central differences of ``retract`` along the tangent, at elements in every regime."""
    from liegeo._base import LieGroup

    x = sample(group, regime, *batch, generator=generator)
    delta = torch.randn(*batch, group.tangent_dim, generator=generator, dtype=torch.float64)
    got = x.retract_velocity(delta)
    torch.testing.assert_close(got, LieGroup.retract_velocity(x, delta), rtol=0, atol=1e-15)
    h = 1e-4

    def difference(step):
        return (x.retract(step * delta).data - x.retract(-step * delta).data) / (2 * step)

    torch.testing.assert_close(got, (4 * difference(h / 2) - difference(h)) / 3, rtol=0, atol=1e-10)


def test_euclidean_retract_velocity_is_the_tangent(generator):
    x = Euclidean(torch.randn(4, 3, generator=generator, dtype=torch.float64))
    delta = torch.randn(3, generator=generator, dtype=torch.float64)
    assert torch.equal(x.retract_velocity(delta), delta.expand(4, 3))


@groups
@regimes
def test_act_is_the_matrix_action(group, regime, generator):
    x = sample(group, regime, 9, generator=generator)
    p = torch.randn(9, group.point_dim, generator=generator, dtype=torch.float64)
    m = x.matrix()
    if group in (SE2, SE3):
        expected = (m[..., :-1, :-1] @ p.unsqueeze(-1)).squeeze(-1) + m[..., :-1, -1]
    else:
        expected = (m @ p.unsqueeze(-1)).squeeze(-1)
    torch.testing.assert_close(x.act(p), expected, atol=1e-12, rtol=0)
    torch.testing.assert_close(x @ p, expected, atol=1e-12, rtol=0)


@groups
@regimes
def test_exp_log_round_trips(group, regime, generator):
    xi = sample_tangent(group, regime, 50, generator=generator)
    torch.testing.assert_close(group.exp(xi).log(), xi, atol=1e-9, rtol=0)
    x = sample(group, regime, 50, generator=generator)
    assert_same_elements(group.exp(x.log()), x, atol=1e-12)


@groups
def test_log_at_exactly_pi_is_a_valid_preimage(group, generator):
    xi = sample_tangent(group, "uniform", 20, generator=generator)
    rotation = xi[..., group.tangent_dim - (3 if group in (SO3, SE3) else 1) :]
    xi = torch.cat([xi[..., : xi.shape[-1] - rotation.shape[-1]],
                    rotation / torch.linalg.vector_norm(rotation, dim=-1, keepdim=True) * math.pi], -1)
    x = group.exp(xi)
    out = x.log()
    assert torch.isfinite(out).all()
    angle = torch.linalg.vector_norm(out[..., -rotation.shape[-1]:], dim=-1)
    torch.testing.assert_close(angle, torch.full_like(angle, math.pi), atol=1e-9, rtol=0)
    assert_same_elements(group.exp(out), x, atol=1e-9)


@groups
@regimes
def test_adjoint_moves_tangents_across(group, regime, generator):
    x = sample(group, regime, 20, generator=generator)
    xi = sample_tangent(group, "small", 20, generator=generator)
    assert_same_elements(x @ group.exp(xi) @ x.inverse(), group.exp((x.adjoint() @ xi.unsqueeze(-1)).squeeze(-1)))
    torch.testing.assert_close((x @ x).adjoint(), x.adjoint() @ x.adjoint(), atol=1e-12, rtol=0)


@groups
def test_retract_local_are_inverse(group, generator):
    a = group.random(30, generator=generator, dtype=torch.float64)
    d = sample_tangent(group, "small", 30, generator=generator)
    torch.testing.assert_close(a.local(a.retract(d)), d, atol=1e-12, rtol=0)
    b = group.random(30, generator=generator, dtype=torch.float64)
    assert_same_elements(a.retract(a.local(b)), b)


@groups
@regimes
def test_matrix_round_trip(group, regime, generator):
    x = sample(group, regime, 40, generator=generator)
    assert_same_elements(group.from_matrix(x.matrix()), x, atol=1e-12)


@groups
def test_from_matrix_projects_noisy_input(group, generator):
    x = group.random(10, generator=generator, dtype=torch.float64)
    noisy = x.matrix().clone()
    n = group.point_dim
    noisy[..., :n, :n] += 1e-4 * torch.randn(10, n, n, generator=generator, dtype=torch.float64)
    y = group.from_matrix(noisy, project=True)
    r = y.matrix()[..., :n, :n] if group in (SE2, SE3) else y.matrix()
    torch.testing.assert_close(r @ r.transpose(-1, -2), torch.eye(n, dtype=r.dtype).expand_as(r), atol=1e-12, rtol=0)
    assert_same_elements(y, x, atol=1e-3)


@groups
def test_normalize(group, generator):
    x = group.random(10, generator=generator, dtype=torch.float64)
    scaled = group(torch.cat([x.data[..., : x.param_dim - x.rotation().param_dim],
                              3.0 * x.data[..., x.param_dim - x.rotation().param_dim :]], -1)
                   ) if group in (SE2, SE3) else group(3.0 * x.data)
    assert_same_elements(scaled.normalize(), x, atol=1e-12)


def test_so3_conversions(generator):
    q = torch.randn(25, 4, generator=generator, dtype=torch.float64)
    r = SO3.from_quaternion(q)
    unit = q / q.norm(dim=-1, keepdim=True)
    torch.testing.assert_close(r.quaternion(), unit)
    aa = r.axis_angle()
    assert_same_elements(SO3.from_axis_angle(aa), r)
    angle = aa.norm(dim=-1)
    assert_same_elements(SO3.from_axis_angle(7.0 * aa, angle), r)
    rpy = r.rpy()
    assert_same_elements(SO3.from_rpy(*rpy.unbind(-1)), r)
    with pytest.raises(ValueError, match=r"\(x, y, z, w\)"):
        SO3.from_quaternion(torch.zeros(3))


@pytest.mark.parametrize("pitch", [math.pi / 2, -math.pi / 2])
def test_rpy_at_gimbal_lock(pitch, generator):
    roll, yaw = (torch.rand(2, 20, generator=generator, dtype=torch.float64) * 2 - 1) * math.pi
    r = SO3.from_rpy(roll, torch.full_like(roll, pitch), yaw)
    rpy = r.rpy()
    assert torch.isfinite(rpy).all() and (rpy[:, 0] == 0).all()
    assert_same_elements(SO3.from_rpy(*rpy.unbind(-1)), r, atol=1e-7)


def test_se_conversions(generator):
    xyt = torch.randn(10, 3, generator=generator, dtype=torch.float64)
    xyt[:, 2] = torch.remainder(xyt[:, 2] + math.pi, 2 * math.pi) - math.pi
    torch.testing.assert_close(SE2.from_xytheta(xyt).xytheta(), xyt)
    t = torch.randn(10, 3, generator=generator, dtype=torch.float64)
    q = torch.randn(10, 4, generator=generator, dtype=torch.float64)
    x = SE3.from_translation_quaternion(t, q)
    torch.testing.assert_close(x.translation(), t)
    assert_same_elements(x.rotation(), SO3.from_quaternion(q))
    angles = torch.randn(10, generator=generator, dtype=torch.float64)
    torch.testing.assert_close(SO2.from_angle(angles).angle(), torch.atan2(angles.sin(), angles.cos()))


@groups
def test_broadcasting(group, generator):
    a = group.random(5, 1, generator=generator, dtype=torch.float64)
    b = group.random(1, 4, generator=generator, dtype=torch.float64)
    c, (j_a, j_b) = a.compose(b, jacobians=True)
    assert c.shape == (5, 4) and j_a.shape == j_b.shape == (5, 4, group.tangent_dim, group.tangent_dim)
    for i in range(5):
        for k in range(4):
            assert_same_elements(c[i, k], a[i, 0] @ b[0, k])
    # many points per element: insert a point axis
    p = torch.randn(5, 11, group.point_dim, generator=generator, dtype=torch.float64)
    moved, (j_x, j_p) = a[:, 0][:, None].act(p, jacobians=True)
    assert moved.shape == p.shape and j_x.shape == (5, 11, group.point_dim, group.tangent_dim)
    torch.testing.assert_close(moved[2, 3], a[2, 0].act(p[2, 3]))


@groups
def test_container_api(group, generator):
    x = group.random(2, 3, generator=generator)
    assert x.shape == (2, 3) and x.ndim == 2 and len(x) == 2 and x.dtype == torch.float32
    assert x[1].shape == (3,) and x[..., 0].shape == (2,) and x[:, None].shape == (2, 1, 3)
    assert x.reshape(6).shape == (6,) and x.reshape((3, 2)).shape == (3, 2)
    assert x.unsqueeze(0).shape == (1, 2, 3) and x.unsqueeze(-1).shape == (2, 3, 1)
    assert group.stack([x, x], dim=0).shape == (2, 2, 3) and group.cat([x, x], dim=-1).shape == (2, 6)
    assert x.to(torch.float64).dtype == torch.float64
    assert group.identity((4, 5)).shape == (4, 5) and group.identity().shape == ()
    with pytest.raises(ValueError, match=group.__name__):
        group(torch.zeros(3, group.param_dim + 1))
    with pytest.raises(ValueError, match="tangent"):
        group.exp(torch.zeros(group.tangent_dim + 1))
    other = SO3 if group is not SO3 else SO2
    with pytest.raises(TypeError, match="cannot combine"):
        x[0, 0].compose(other.identity())
    with pytest.raises(dataclasses_frozen_error()):
        x.data = torch.zeros(1)


def dataclasses_frozen_error():
    import dataclasses

    return dataclasses.FrozenInstanceError


def test_random_is_seeded():
    a = SE3.random(4, generator=torch.Generator().manual_seed(3))
    b = SE3.random(4, generator=torch.Generator().manual_seed(3))
    assert torch.equal(a.data, b.data)


def test_so3_random_is_haar_uniform(generator):
    """The angle of a Haar-uniform rotation has density (1 - cos θ)/π, mean π/2 + 2/π."""
    angle = SO3.random(200_000, generator=generator, dtype=torch.float64).log().norm(dim=-1)
    assert abs(angle.mean().item() - (math.pi / 2 + 2 / math.pi)) < 5e-3


def test_euclidean():
    x = Euclidean(torch.tensor([[1.0, 2.0], [3.0, 4.0]]))
    d = torch.tensor([[0.5, -1.0], [0.0, 1.0]])
    torch.testing.assert_close(x.retract(d).data, x.data + d)
    torch.testing.assert_close(x.local(x.retract(d)), d)
    assert x.tangent_dim == 2 and x.point_dim == 2 and x.matrix().shape == (2, 3, 3)
    torch.testing.assert_close(x.act(torch.zeros(2)), x.data)
    with pytest.raises(ValueError, match="R\\^2 with R\\^3"):
        x.compose(Euclidean(torch.zeros(2, 3)))


@groups
def test_broadcasting_across_ranks(group, generator):
    """A per-instance batch (E,) combines with a (B, E) batch, as the solvers do with measurements."""
    z = group.random(5, generator=generator, dtype=torch.float64)
    x = group.random(3, 5, generator=generator, dtype=torch.float64)
    p = torch.randn(5, group.point_dim, generator=generator, dtype=torch.float64)
    d, (j_z, j_x) = z.local(x, jacobians=True)
    assert d.shape == (3, 5, group.tangent_dim) and j_z.shape == (3, 5, group.tangent_dim, group.tangent_dim)
    torch.testing.assert_close(d[1], z.local(x[1]))
    assert_same_elements((z @ x)[2], z @ x[2])
    assert_same_elements((x @ z)[2], x[2] @ z)
    torch.testing.assert_close(x.act(p)[0], x[0].act(p))
    assert z.act(torch.randn(3, 5, group.point_dim, dtype=torch.float64)).shape == (3, 5, group.point_dim)
