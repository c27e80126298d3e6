"""Conversions to and from pypose ``LieTensor``s.

pypose stores SO3 as ``(qx, qy, qz, qw)`` and SE3 as ``(tx, ty, tz, qx, qy, qz, qw)``,
exactly our storage, and orders its tangents ``(τ, φ)`` like ours, so values
convert without permutation.  Its perturbations are on the *left* (``Exp(δ)·X``),
so pypose's Jacobians are not ours; convert values, not derivatives.  pypose has
no SO(2)/SE(2).
"""

from __future__ import annotations

from typing import Any

from ._base import LieGroup
from .se3 import SE3
from .so3 import SO3


def _pypose() -> Any:
    import pypose  # imported lazily: pypose is only needed for interop

    return pypose


def to_pypose(x: LieGroup) -> Any:
    """An SO3 or SE3 batch as a pypose ``LieTensor`` of the same shape (shares memory)."""
    pp = _pypose()
    if isinstance(x, SE3):
        return pp.SE3(x.data)
    if isinstance(x, SO3):
        return pp.SO3(x.data)
    raise TypeError(f"pypose has no counterpart for {type(x).__name__}; only SO3 and SE3 convert")


def from_pypose(t: Any) -> LieGroup:
    """A pypose SO3/SE3 ``LieTensor`` (or so3/se3 algebra tensor, through ``Exp``) as SO3/SE3."""
    pp = _pypose()
    name = t.ltype.__class__.__name__
    groups = {"SO3Type": SO3, "SE3Type": SE3}
    algebras = {"so3Type": SO3, "se3Type": SE3}
    if name in groups:
        return groups[name](t.tensor())
    if name in algebras:
        return algebras[name].exp(t.tensor())
    raise TypeError(f"cannot convert a pypose {name} LieTensor; only SO3/SE3 and so3/se3 convert")
