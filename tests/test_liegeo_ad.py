"""The Lie algebra adjoint ``ad(ξ)``: against ``Ad(Exp(ξ)) = expm(ad(ξ))`` and the bracket of the
matrix generators, in every sampling regime (near identity and near π included)."""

import pytest
import torch

from liegeo import Euclidean, LieGroup
from liegeo.testing import REGIMES, sample_tangent

from conftest import GROUPS

groups = pytest.mark.parametrize("group", GROUPS, ids=lambda g: g.__name__)


@groups
@pytest.mark.parametrize("regime", REGIMES)
def test_the_adjoint_of_exp_is_the_exponential_of_ad(group, regime, generator):
    xi = sample_tangent(group, regime, 16, generator=generator)
    expected = group.exp(xi).adjoint()
    torch.testing.assert_close(torch.linalg.matrix_exp(group.ad(xi)), expected, atol=1e-12, rtol=1e-12)


def _hat(group, xi: torch.Tensor) -> torch.Tensor:
    """``d/dt Exp(t ξ).matrix()`` at 0, by autograd (an independent route to the generators)."""
    return torch.func.jvp(lambda t: group.exp(t * xi).matrix(), (torch.zeros(xi.shape[:-1] + (1,), dtype=xi.dtype),),
                          (torch.ones(xi.shape[:-1] + (1,), dtype=xi.dtype),))[1]


@groups
def test_ad_is_the_bracket_of_the_generators(group, generator):
    xi = sample_tangent(group, "uniform", 8, generator=generator)
    eta = sample_tangent(group, "uniform", 8, generator=generator)
    bracket = _hat(group, xi) @ _hat(group, eta) - _hat(group, eta) @ _hat(group, xi)
    torch.testing.assert_close(_hat(group, torch.einsum("...ij,...j->...i", group.ad(xi), eta)), bracket,
                               atol=1e-12, rtol=1e-12)


@groups
def test_ad_gives_the_second_order_term_of_composed_exponentials(group, generator):
    """``Log(Exp(sξ) Exp(sη)) = s(ξ + η) + ½ s² ad(ξ) η + O(s³)``: the term the implicit backward's
    Hessian-vector products correct for (``slam.optim.implicit``)."""
    xi = sample_tangent(group, "uniform", 8, generator=generator)
    eta = sample_tangent(group, "uniform", 8, generator=generator)
    s = 1e-3
    composed = (group.exp(s * xi) @ group.exp(s * eta)).log()
    second = (composed - s * (xi + eta)) / s**2
    expected = 0.5 * torch.einsum("...ij,...j->...i", group.ad(xi), eta)
    torch.testing.assert_close(second, expected, atol=1e-2 * (1 + expected.abs().max()), rtol=0)


def test_euclidean_ad_is_zero_and_every_group_has_one():
    xi = torch.randn(5, 4, dtype=torch.float64)
    assert torch.equal(Euclidean.ad(xi), torch.zeros(5, 4, 4, dtype=torch.float64))
    assert all(g.has_ad() for g in (*GROUPS, Euclidean))
    assert not LieGroup.has_ad()
