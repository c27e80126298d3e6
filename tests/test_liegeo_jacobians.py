"""Every analytic Jacobian against autograd through retract and against central differences (float64)."""

import pytest
import torch

from liegeo import SE2, SE3, SO2, SO3, Euclidean
from liegeo.testing import REGIMES, check_jacobians, sample, sample_tangent

from conftest import BATCH_SHAPES, GROUPS

ATOL = 1e-6
ALL = GROUPS + [Euclidean]


def draw(group, regime, batch, generator):
    if group is Euclidean:
        return Euclidean.random(*batch, dim=4, generator=generator, dtype=torch.float64)
    return sample(group, regime, *batch, generator=generator)


def draw_tangent(group, regime, batch, generator):
    if group is Euclidean:
        return torch.randn(*batch, 4, generator=generator, dtype=torch.float64)
    return sample_tangent(group, regime, *batch, generator=generator)


def points(group, batch, generator):
    dim = 4 if group is Euclidean else group.point_dim
    return torch.randn(*batch, dim, generator=generator, dtype=torch.float64)


cases = pytest.mark.parametrize("group", ALL, ids=lambda g: g.__name__)
regimes = pytest.mark.parametrize("regime", REGIMES)
batches = pytest.mark.parametrize("batch", BATCH_SHAPES, ids=str)


@cases
@regimes
@batches
def test_compose(group, regime, batch, generator):
    a, b = draw(group, "uniform", batch, generator), draw(group, regime, batch, generator)
    value, (j_a, j_b) = a.compose(b, jacobians=True)
    assert j_a.shape == j_b.shape == (*batch, a.tangent_dim, a.tangent_dim)
    check_jacobians(lambda x, y: x.compose(y), [a, b], [j_a, j_b], atol=ATOL)


@cases
@regimes
@batches
def test_inverse(group, regime, batch, generator):
    x = draw(group, regime, batch, generator)
    _, j = x.inverse(jacobians=True)
    check_jacobians(lambda y: y.inverse(), [x], [j], atol=ATOL)


@cases
@regimes
@batches
def test_between(group, regime, batch, generator):
    a = draw(group, "uniform", batch, generator)
    b = a.compose(draw(group, regime, batch, generator))  # a⁻¹b lies in the regime
    _, (j_a, j_b) = a.between(b, jacobians=True)
    check_jacobians(lambda x, y: x.between(y), [a, b], [j_a, j_b], atol=ATOL)


@cases
@regimes
@batches
def test_act(group, regime, batch, generator):
    x, p = draw(group, regime, batch, generator), points(group, batch, generator)
    value, (j_x, j_p) = x.act(p, jacobians=True)
    assert j_x.shape == (*batch, p.shape[-1], x.tangent_dim)
    check_jacobians(lambda y, q: y.act(q), [x, p], [j_x, j_p], atol=ATOL)


@cases
@regimes
@batches
def test_log(group, regime, batch, generator):
    x = draw(group, regime, batch, generator)
    _, j = x.log(jacobians=True)
    check_jacobians(lambda y: y.log(), [x], [j], atol=ATOL)


@cases
@regimes
@batches
def test_exp(group, regime, batch, generator):
    xi = draw_tangent(group, regime, batch, generator)
    cls = Euclidean if group is Euclidean else group
    _, j = cls.exp(xi, jacobians=True)
    check_jacobians(lambda v: cls.exp(v), [xi], [j], atol=ATOL)


@cases
@regimes
@batches
def test_retract(group, regime, batch, generator):
    x = draw(group, "uniform", batch, generator)
    delta = draw_tangent(group, regime, batch, generator)
    _, (j_x, j_d) = x.retract(delta, jacobians=True)
    check_jacobians(lambda y, d: y.retract(d), [x, delta], [j_x, j_d], atol=ATOL)


@cases
@regimes
@batches
def test_local(group, regime, batch, generator):
    a = draw(group, "uniform", batch, generator)
    b = a.compose(draw(group, regime, batch, generator))
    _, (j_a, j_b) = a.local(b, jacobians=True)
    check_jacobians(lambda x, y: x.local(y), [a, b], [j_a, j_b], atol=ATOL)


@pytest.mark.parametrize("group", GROUPS, ids=lambda g: g.__name__)
@regimes
def test_exp_jacobians_are_inverse_pairs(group, regime, generator):
    xi = sample_tangent(group, regime, 16, generator=generator)
    eye = torch.eye(group.tangent_dim, dtype=xi.dtype)
    torch.testing.assert_close(group.jr(xi) @ group.jr_inv(xi), eye.expand(16, -1, -1), atol=1e-10, rtol=0)
    torch.testing.assert_close(group.jl(xi) @ group.jl_inv(xi), eye.expand(16, -1, -1), atol=1e-10, rtol=0)
    # J_l(ξ) = Ad(Exp ξ) J_r(ξ)
    torch.testing.assert_close(group.jl(xi), group.exp(xi).adjoint() @ group.jr(xi), atol=1e-10, rtol=0)


@pytest.mark.parametrize("group", GROUPS, ids=lambda g: g.__name__)
@regimes
def test_left_jacobian_definition(group, regime, generator):
    """Exp(ξ + ε) ≈ Exp(J_l(ξ) ε) Exp(ξ): differentiate Log(Exp(ξ+ε) Exp(ξ)⁻¹) by autograd."""
    xi = sample_tangent(group, regime, 5, generator=generator)
    eps = torch.zeros_like(xi, requires_grad=True)
    out = group.exp(xi + eps).compose(group.exp(xi).inverse()).log()
    rows = [torch.autograd.grad(out[..., i].sum(), eps, retain_graph=True)[0] for i in range(group.tangent_dim)]
    torch.testing.assert_close(torch.stack(rows, -2), group.jl(xi), atol=1e-8, rtol=0)


@pytest.mark.parametrize("group", GROUPS, ids=lambda g: g.__name__)
def test_jacobians_match_vmap_jacrev(group, generator):
    """The torch.func path the solvers use (vmap of jacrev through retract) gives the same Jacobians."""
    a, b = group.random(6, generator=generator, dtype=torch.float64), group.random(6, generator=generator, dtype=torch.float64)

    def residual(delta_a, a_data, b_data):
        return group(a_data).retract(delta_a).local(group(b_data))

    zero = torch.zeros(6, group.tangent_dim, dtype=torch.float64)
    j_auto = torch.func.vmap(torch.func.jacrev(residual))(zero, a.data, b.data)
    _, (j_a, _) = a.local(b, jacobians=True)
    torch.testing.assert_close(j_auto, j_a, atol=1e-9, rtol=0)


def test_checker_rejects_a_wrong_jacobian(generator):
    """check_jacobians is public API for users' costs: it must catch a wrong Jacobian."""
    a, b = SE3.random(4, generator=generator, dtype=torch.float64), SE3.random(4, generator=generator, dtype=torch.float64)
    _, (j_a, j_b) = a.local(b, jacobians=True)
    wrong = j_a.clone()
    wrong[..., 0, 3] += 1e-4
    with pytest.raises(AssertionError, match="argument 0 differs from autograd"):
        check_jacobians(lambda x, y: x.local(y), [a, b], [wrong, j_b])
    with pytest.raises(AssertionError, match="argument 1"):
        check_jacobians(lambda x, y: x.local(y), [a, b], [None, j_b.transpose(-1, -2)])


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
@pytest.mark.parametrize("group", GROUPS, ids=lambda g: g.__name__)
def test_cuda_matches_cpu(group, generator):
    a, b = group.random(64, generator=generator, dtype=torch.float64), group.random(64, generator=generator, dtype=torch.float64)
    p = torch.randn(64, group.point_dim, generator=generator, dtype=torch.float64)
    on_cpu = [a.local(b, jacobians=True)[1][0], a.act(p), a.compose(b).data, a.log()]
    ac, bc = a.to("cuda"), b.to("cuda")
    on_gpu = [ac.local(bc, jacobians=True)[1][0], ac.act(p.cuda()), ac.compose(bc).data, ac.log()]
    for x, y in zip(on_cpu, on_gpu):
        torch.testing.assert_close(y.cpu(), x, atol=1e-12, rtol=0)
