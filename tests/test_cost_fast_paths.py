"""A cost's fast path lives in the cost: a custom cost that overrides ``whitened_residual`` and
``linearize`` with its own kernel is run by the unchanged core, robust losses included, and gives the
solve of the plain cost; a group's fused retraction is the group's ``retract_step``."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import slam
from liegeo import SE3, Euclidean
from slam.costs import Cost, Linearization


class Offset(Cost):
    """``r = x - target`` (Euclidean), the plain way: autodiff Jacobians."""

    def residual(self, x, *, target):  # type: ignore[no-untyped-def]
        return x.data - target


class KernelOffset(Offset):
    """The same residual with a hand-written "kernel" (numpy, one pass) for its whitened residuals
    and normal-equation blocks; it records its calls."""

    calls: list[str] = []

    def whitened_residual(self, values):  # type: ignore[no-untyped-def]
        (x,) = values
        if x.data.requires_grad:
            return super().whitened_residual(values)
        KernelOffset.calls.append("residual")
        return torch.from_numpy(x.data.numpy() - self.data["target"].numpy())

    def linearize(self, values, batch_size):  # type: ignore[no-untyped-def]
        (x,) = values
        if x.data.requires_grad:
            return super().linearize(values, batch_size)
        KernelOffset.calls.append("linearize")
        r = x.data.numpy() - self.data["target"].numpy()  # (B, E, 2)
        b, e, m = r.shape
        j = np.broadcast_to(np.eye(m), (b, e, m, m)).copy()
        lower = np.broadcast_to(np.array([1.0, 0.0, 1.0]), (b, e, 3)).copy()  # packed tril of I₂
        return Linearization(*(torch.from_numpy(a) for a in (r, j, lower, r.copy())))


def _solve(cls, loss=None):  # type: ignore[no-untyped-def]
    generator = torch.Generator().manual_seed(0)
    target = torch.randn(6, 2, generator=generator, dtype=torch.float64)
    target[2] += 40.0  # an outlier for the robust case
    x = slam.Variable(Euclidean(torch.zeros(6, 2, dtype=torch.float64)), name="x")
    problem = slam.Problem([cls(x.all(), target=target, loss=loss, name="offset")])
    return slam.solve(problem, slam.LevenbergMarquardt()), x


@pytest.mark.parametrize("loss", [None, slam.Huber(1.0), slam.Cauchy(0.5)])
def test_a_custom_cost_runs_its_own_kernel_through_the_unchanged_core(loss):
    KernelOffset.calls.clear()
    fast, x_fast = _solve(KernelOffset, loss)
    assert "linearize" in KernelOffset.calls and "residual" in KernelOffset.calls
    plain, x_plain = _solve(Offset, loss)
    torch.testing.assert_close(fast[x_fast].data, plain[x_plain].data, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(fast.cost, plain.cost, rtol=1e-12, atol=1e-15)
    assert int(fast.iterations[0]) == int(plain.iterations[0])


def test_the_kernel_is_not_used_where_autograd_must_see_the_inputs():
    KernelOffset.calls.clear()
    target = torch.zeros(3, 2, dtype=torch.float64)
    x0 = torch.ones(3, 2, dtype=torch.float64, requires_grad=True)
    x = slam.Variable(Euclidean(x0), name="x")
    problem = slam.Problem([KernelOffset(x.all(), target=target)])
    result = slam.solve(problem, slam.GaussNewton(max_iterations=3), slam.Unroll())
    result[x].data.sum().backward()
    assert x0.grad is not None and "linearize" not in KernelOffset.calls


def test_the_core_names_no_group_or_cost():
    import importlib
    import inspect
    import pkgutil

    import slam.linear
    import slam.optim

    names = ["slam.problem", "slam.structure"] + [
        f"{package.__name__}.{info.name}" for package in (slam.optim, slam.linear)
        for info in pkgutil.iter_modules(package.__path__)]
    assert len(names) > 8
    for name in names:
        source = inspect.getsource(importlib.import_module(name))
        for word in ("SE3", "SE2", "SO3", "SO2", "Between", "BALReprojection", "_se3_kernels", "fused_"):
            assert word not in source, (name, word)


def test_retract_step_is_retract():
    generator = torch.Generator().manual_seed(1)
    x = SE3.random(5, 3, generator=generator, dtype=torch.float64)
    delta = torch.randn(5, 3, 6, generator=generator, dtype=torch.float64)
    torch.testing.assert_close(x.retract_step(delta).data, x.retract(delta).data, rtol=0, atol=1e-14)
    y = Euclidean(torch.randn(4, 3, dtype=torch.float64))  # a group without a kernel: retract itself
    assert torch.equal(y.retract_step(torch.ones(4, 3, dtype=torch.float64)).data, y.data + 1)
    with torch.enable_grad():  # inputs autograd must see take the torch path and keep the graph
        d = delta.clone().requires_grad_(True)
        assert x.retract_step(d).data.requires_grad


def test_kernel_cache_is_dropped_when_its_constants_change(tmp_path):
    from liegeo._kernels import drop_stale_cache

    source = tmp_path / "kern.py"
    source.write_text("")
    cache = tmp_path / "__pycache__"
    cache.mkdir()
    built = [cache / "kern.f-10.py311.nbi", cache / "kern.f-10.py311.1.nbc"]
    other = cache / "other.f-3.py311.nbi"
    for path in (*built, other):
        path.write_text("x")
    drop_stale_cache(str(source), (1.0, (2.0, 3.0)))  # first sight: nothing known about the build
    assert not any(p.exists() for p in built) and other.exists()
    for path in built:
        path.write_text("x")
    drop_stale_cache(str(source), (1.0, (2.0, 3.0)))  # same constants: the cache stays
    assert all(p.exists() for p in built)
    drop_stale_cache(str(source), (9.0, (2.0, 3.0)))  # a switch point moved: the stale build goes
    assert not any(p.exists() for p in built) and other.exists()
