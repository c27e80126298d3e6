"""When a fused CPU kernel (numba) may replace a torch path: one rule for the groups' kernels
(``liegeo._se3_kernels``) and the cost kernels of ``slam``."""

from __future__ import annotations

import functools
import importlib.util

import torch
from torch import Tensor

__all__ = ["kernel_inputs_ok", "numba_available"]


@functools.cache
def numba_available() -> bool:
    """Whether numba is installed (probed without importing it: that takes ~0.2 s)."""
    return importlib.util.find_spec("numba") is not None


def kernel_inputs_ok(*tensors: Tensor) -> bool:
    """Whether a fused CPU kernel may take these tensors: numba installed, all on the CPU, float64,
    plain (not inside a ``torch.func`` transform) and none that autograd has to see (kernels are not
    differentiable; the torch path is used instead)."""
    if any(t.device.type != "cpu" or t.dtype != torch.float64 for t in tensors):
        return False
    if torch.is_grad_enabled() and any(t.requires_grad for t in tensors):
        return False
    if any(torch._C._functorch.is_functorch_wrapped_tensor(t) for t in tensors):
        return False
    return numba_available()
