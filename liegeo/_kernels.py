"""When a fused CPU kernel (numba) may replace a torch path: one rule for the groups' kernels
(``liegeo._se3_kernels``) and the cost kernels of ``slam``."""

from __future__ import annotations

import functools
import hashlib
import importlib.util
from pathlib import Path

import torch
from torch import Tensor

__all__ = ["kernel_inputs_ok", "numba_available", "drop_stale_cache"]


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
