"""When a fused CPU kernel (numba) may replace a torch path: one rule for the groups' kernels
(``liegeo._se3_kernels``) and the cost kernels of ``slam``."""

from __future__ import annotations

import functools
import hashlib
import importlib.util
from pathlib import Path

import torch
from torch import Tensor

__all__ = ["kernel_inputs_ok", "numba_available", "drop_stale_cache", "fused_retract", "group_kernel"]


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


@functools.cache
def group_kernel(module: str):  # type: ignore[no-untyped-def]
    """The numba ``retract`` of ``liegeo.<module>`` (imported on first use: it imports numba), or None
    where numba is missing."""
    import importlib

    return getattr(importlib.import_module(f"liegeo.{module}"), "retract", None)


def fused_retract(kernel, x: Tensor, delta: Tensor, tangent_dim: int) -> Tensor | None:  # type: ignore[no-untyped-def]
    """``x · Exp(δ)`` by a group's numba ``kernel(x (M, P), delta (M, T), out (M, P))`` over storage
    ``x: (*b, P)`` and ``delta: (*b', T)`` broadcast, or None where a kernel may not take the inputs
    (``kernel_inputs_ok``)."""
    if not kernel_inputs_ok(x, delta):
        return None
    import numpy as np

    # (np.broadcast_shapes: torch.broadcast_shapes imports sympy, 0.5 s, on its first call)
    shape = np.broadcast_shapes(tuple(x.shape[:-1]), tuple(delta.shape[:-1]))
    flat = x.expand(*shape, x.shape[-1]).reshape(-1, x.shape[-1]).contiguous()
    out = torch.empty_like(flat)
    kernel(flat.numpy(), delta.expand(*shape, tangent_dim).reshape(-1, tangent_dim).contiguous().numpy(), out.numpy())
    return out.reshape(*shape, x.shape[-1])


def drop_stale_cache(module_file: str, constants: object) -> None:
    """Delete a kernel module's numba cache when the constants compiled into it have changed.

    Numba keys its on-disk cache by the kernel's own source file only, so a kernel that bakes in
    constants from elsewhere (``liegeo._math``'s series coefficients and switch points) would keep
    running a stale build after they change.  A fingerprint of ``constants`` beside the cache
    (``__pycache__/<module>.constants``) tells; where the folder is not writable (an installed
    package, whose constants cannot change) this does nothing.
    """
    source = Path(module_file)
    cache = source.parent / "__pycache__"
    stamp = cache / f"{source.stem}.constants"
    fingerprint = hashlib.sha256(repr(constants).encode()).hexdigest()
    try:
        if stamp.exists() and stamp.read_text() == fingerprint:
            return
        for path in (*cache.glob(f"{source.stem}.*.nbi"), *cache.glob(f"{source.stem}.*.nbc")):
            path.unlink(missing_ok=True)
        cache.mkdir(exist_ok=True)
        stamp.write_text(fingerprint)
    except OSError:
        pass
