"""Initial guesses for pose graphs: chordal relaxation, and odometry composed along a spanning tree.

``chordal_initialization`` follows Carlone, Tron, Daniilidis and Dellaert, *Initialization
techniques for 3D SLAM: a survey on rotation estimation and its use in pose graph
optimization* (ICRA 2015), as GTSAM's ``InitializePose3`` does in 3D:

1. **Rotations** by the chordal relaxation: minimize ``Σ w_e ‖R_j - R_i Z_e‖²_F`` over
   unconstrained ``n x n`` matrices (``Z_e`` the measured relative rotation), with the anchor's
   rotation fixed.  Transposed, an edge reads ``R_jᵀ - Z_eᵀ R_iᵀ = 0``: the ``n`` columns of the
   ``R_pᵀ`` are independent unknowns with one shared normal matrix, so one sparse Cholesky
   factorization of size ``n (N - 1)`` is solved for ``n`` right-hand sides (GTSAM stacks the
   ``n²`` entries into one system ``n`` times larger).
2. **Projection** of each solution block onto SO(n): the nearest rotation in the Frobenius norm
   (SVD, the last singular vector's sign flipped where the determinant is negative).
3. **Translations** with the rotations fixed, by linear least squares.  Once the rotations are
   fixed, the translation part of the relative-pose error ``Log(Z⁻¹ X_i⁻¹ X_j)`` of
   ``liegeo.conventions`` is *linear* in the translations: ``v_e = M_e (t_j - t_i - R_i t_e)``
   with ``M_e = V(ω_e)⁻¹ (R_i R_Z)ᵀ``, where ``ω_e`` is the edge's remaining rotation error and
   ``V(ω_e)⁻¹`` the translation block of ``Log`` (``J_l⁻¹(ω)`` in 3D).  The translations are
   therefore the *exact* minimizer of the full ``χ² = Σ eᵀ Ω e`` over translations for the given
   rotations, the rotation-translation blocks of ``Ω`` included.  For block-diagonal ``Ω`` and
   consistent rotations this is ``t_j - t_i - R_i t_e = 0`` weighted by ``Ω_tt`` expressed in the
   world frame.

The rotation weight of an edge, ``w_e = tr(Ω_RR) / k`` (``k`` = 3 in 3D, 1 in 2D), is the mean
eigenvalue of the rotation block of its information.  The chordal residual is isotropic
(``‖R_i Z (Exp(ω) - I)‖²_F ≈ 2 |ω|²`` for every direction of ``ω``), so a single scalar per edge
must stand in for ``Ω_RR``; the mean eigenvalue is exactly ``κ`` for the isotropic ``κ I`` the
relaxation models, does not depend on the frame the block is written in, and is the precision a
uniformly random direction of ``ω`` sees on average.  The smallest eigenvalue would instead let the
weakest axis decide (on sphere2500, yaw at ≈ 100 against roll and pitch at ≈ 400).

GTSAM's ``InitializePose3`` (chordal mode) solves the same relaxation with two differences: it
weights an edge by ``sqrt(Ω[0, 0])`` of its rotation-first information (the whitened first unit
vector: the square root of the ``ω_x`` precision, not a precision), and it holds the anchor softly,
through a fictitious node whose relaxed 3 x 3 block has a unit-precision prior.  Given GTSAM's
weights, and information scaled down far enough that its anchor is effectively hard, the two agree
to 1e-8 (tests/test_pgo_initialization.py); as each library ships, sphere2500's rotations differ by
up to 4e-3 rad, and both lead Levenberg-Marquardt to the same optimum.  GTSAM then refines rotations
and translations together by one Gauss-Newton step from zero translations, where step 3 above
keeps the rotations.  In 2D GTSAM offers LAGO instead, which estimates angles rather than 2 x 2
matrices (regularized along a spanning tree), so the two 2D estimates differ (by ≈ 0.03 rad on
intel) but again reach the same optimum.

``odometry_initialization`` composes the measurements along a breadth-first spanning tree rooted
at the anchor.  Both functions fix the anchor at the identity, or at ``initial[anchor]`` when
``initial`` is given (the whole result is then left-multiplied by that pose, which the two problems
are invariant to), and raise ``DisconnectedGraphError`` when some pose cannot be reached from the
anchor.  They work in float64 on the CPU, return the dtype and device of ``measurements``, and are
not differentiable (they are meant to start a solve, not to sit inside one).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import scipy.sparse as sp
import scipy.sparse.csgraph as csgraph
import scipy.sparse.linalg as spla
import torch
from torch import Tensor

from liegeo import SE2, SE3, SEBase

__all__ = ["chordal_initialization", "odometry_initialization", "DisconnectedGraphError"]


class DisconnectedGraphError(ValueError):
    """Some poses are not connected to the anchor by any chain of edges.

    Attributes:
        num_components: Number of connected components of the undirected edge graph.
        labels: ``(N,)`` numpy int array, the component of each pose (the anchor's is 0).
        source: The file the graph came from (it then leads the message), or None.
    """

    def __init__(self, num_components: int, labels: np.ndarray, anchor: int, *, shown: int = 5,
                 source: str | None = None):
        self.num_components, self.labels, self.source = int(num_components), labels, source
        order = np.argsort(labels, kind="stable")
        sizes = np.bincount(labels, minlength=num_components)
        starts = np.concatenate([[0], np.cumsum(sizes)[:-1]])
        parts = []
        for c in range(min(num_components, shown)):  # a few components, never all poses
            first = order[starts[c] : starts[c] + min(shown, sizes[c])].tolist()
            more = ", ..." if sizes[c] > shown else ""
            plural = "" if sizes[c] == 1 else "s"
            parts.append(f"{{{', '.join(map(str, first))}{more}}} ({sizes[c]} pose{plural})")
        if num_components > shown:
            parts.append(f"and {num_components - shown} more")
        where = f"{source}: " if source else ""  # the file, when the graph came from one
        super().__init__(
            f"{where}the pose graph has {num_components} connected components, so some of its {labels.size} poses "
            f"cannot be reached from the anchor {anchor}; components: {'; '.join(parts)}"
        )


def chordal_initialization(
    group: type[SEBase],
    num_poses: int,
    i: Tensor,
    j: Tensor,
    measurements: SEBase,
    information: Tensor,
    *,
    anchor: int = 0,
    initial: SEBase | None = None,
    source: str | None = None,
) -> SEBase:
    """Poses from relative-pose measurements by chordal relaxation (rotations), then translations.

    Args:
        group: ``liegeo.SE2`` or ``liegeo.SE3``.
        num_poses: Number of poses ``N``.
        i, j: ``(E,)`` integer edge endpoints, 0-based indices into the poses.
        measurements: ``group`` of shape ``(E,)``, the relative poses ``X_i⁻¹ X_j``.
        information: ``(E, d, d)`` information matrices in our tangent order (translation, then
            rotation), as in the g2o files.  Only the rotation block's trace is read for the
            rotations; the whole matrix is used for the translations.
        anchor: The pose held fixed, which removes the gauge freedom.
        initial: Optional poses ``group (N,)``; only ``initial[anchor]`` is read: the anchor takes
            that value instead of the identity, so the result lives in the same frame.
        source: The file the graph came from, named by ``DisconnectedGraphError``; or None.

    Returns:
        ``group (N,)``, in the dtype and on the device of ``measurements``.

    Raises:
        DisconnectedGraphError: Some pose is not connected to the anchor.
        ValueError, TypeError: Inconsistent shapes or types, or an information matrix whose rotation
            block has a non-positive trace.
    """
    ii, jj, z = _check_inputs(group, num_poses, i, j, measurements, anchor, initial)
    e, d, n = len(ii), group.tangent_dim, group.point_dim
    if information.shape != (e, d, d):
        raise ValueError(f"information must have shape ({e}, {d}, {d}), got {tuple(information.shape)}")
    _connected_adjacency(num_poses, ii, jj, anchor, source)
    omega = information.detach().to("cpu", torch.float64)
    omega = 0.5 * (omega + omega.transpose(-1, -2))
    k = d - n  # rotation dimension
    weight = torch.diagonal(omega[:, n:, n:], dim1=-2, dim2=-1).sum(-1) / k
    if not bool(torch.all(weight > 0)) or not bool(torch.isfinite(omega).all()):
        raise ValueError("every information matrix must be finite with a rotation block of positive trace")
    ti, tj = torch.from_numpy(ii), torch.from_numpy(jj)

    # (1) Chordal rotations.  Unknowns Y_p = R_pᵀ; edge residual Y_j - Z_eᵀ Y_i, i.e. A_e = [-Z_eᵀ, I]
    # on (Y_i, Y_j), so w AᵀA has blocks (i,i) = (j,j) = w I (Z orthogonal) and (i,j) = -w Z_e.
    r_z = z.rotation().matrix()
    eye = torch.eye(n, dtype=torch.float64).expand(e, n, n)
    w = weight[:, None, None]
    y = _solve_anchored(num_poses, n, anchor, ti, tj, w * eye, w * eye, -w * r_z,
                        rhs=torch.zeros(num_poses, n, n, dtype=torch.float64), anchor_value=torch.eye(n))
    # (2) Nearest rotations, the anchor's set exactly.
    rotations = _nearest_rotation(y.transpose(-1, -2))
    rotations[anchor] = torch.eye(n, dtype=torch.float64)

    # (3) Translations: v_e = M_e r_e with r_e = t_j - t_i - R_i t_e, M_e = P_e Q_eᵀ, Q_e = R_i R_Z and
    # P_e = ∂v/∂t of Log at the rotation error R_e = Q_eᵀ R_j.  The cost (v, ω)ᵀ Ω (v, ω) is then
    # rᵀ W r + 2 rᵀ Mᵀ Ω_tR ω + const with W = Mᵀ Ω_tt M; its normal equations are
    # Σ A_eᵀ W_e A_e t = Σ A_eᵀ g_e with A_e t = t_j - t_i and g_e = W_e R_i t_e - M_eᵀ Ω_tR ω_e.
    r_i = rotations[ti]
    q = r_i @ r_z
    p, omega_e = _log_translation_jacobian(group, q.transpose(-1, -2) @ rotations[tj])
    m = p @ q.transpose(-1, -2)
    w_t = m.transpose(-1, -2) @ omega[:, :n, :n] @ m
    c = (r_i @ z.translation().unsqueeze(-1)).squeeze(-1)
    g = (w_t @ c.unsqueeze(-1) - m.transpose(-1, -2) @ omega[:, :n, n:] @ omega_e.unsqueeze(-1)).squeeze(-1)
    rhs = torch.zeros(num_poses, n, dtype=torch.float64)
    rhs.index_add_(0, tj, g).index_add_(0, ti, -g)
    t = _solve_anchored(num_poses, n, anchor, ti, tj, w_t, w_t, -w_t, rhs=rhs.unsqueeze(-1),
                        anchor_value=torch.zeros(n, 1)).squeeze(-1)

    poses = group.from_rotation_translation(group.rotation_type.from_matrix(rotations), t)
    return _finish(poses, anchor, initial, measurements)


def odometry_initialization(
    group: type[SEBase],
    num_poses: int,
    i: Tensor,
    j: Tensor,
    measurements: SEBase,
    *,
    anchor: int = 0,
    initial: SEBase | None = None,
    source: str | None = None,
) -> SEBase:
    """Poses by composing the measurements along a breadth-first spanning tree rooted at the anchor.

    Every pose ``v`` gets ``X_v = X_parent · Z`` (or ``· Z⁻¹`` when the tree edge points from ``v``
    to its parent), where the parent is ``v``'s predecessor in a BFS of the undirected edge graph,
    so poses are reached in as few hops as possible.  The products along the tree are formed by
    pointer jumping: each round composes every pose's transform to its current ancestor with that
    ancestor's own, halving the remaining depth, so ``ceil(log2(depth))`` batched compositions
    replace one per tree level (a 10,000-pose chain needs 14, not 10,000).

    Args:
        group, num_poses, i, j, measurements, anchor, initial, source: As for ``chordal_initialization``.

    Returns:
        ``group (N,)``, in the dtype and on the device of ``measurements``.

    Raises:
        DisconnectedGraphError: Some pose is not connected to the anchor.
    """
    ii, jj, z = _check_inputs(group, num_poses, i, j, measurements, anchor, initial)
    adjacency = _connected_adjacency(num_poses, ii, jj, anchor, source)
    _, parent = csgraph.breadth_first_order(adjacency, anchor, directed=False, return_predecessors=True)
    parent = parent.astype(np.int64)
    parent[anchor] = anchor

    # The edge joining each pose to its parent: look the unordered pair up among the sorted edge keys.
    child = np.flatnonzero(np.arange(num_poses) != anchor)
    edge_keys = np.minimum(ii, jj) * num_poses + np.maximum(ii, jj)
    by_key = np.argsort(edge_keys, kind="stable")
    tree_keys = np.minimum(parent[child], child) * num_poses + np.maximum(parent[child], child)
    edge = by_key[np.searchsorted(edge_keys[by_key], tree_keys)]
    forward = torch.from_numpy(ii[edge] == parent[child])

    step = z[torch.from_numpy(edge)]
    step = group(torch.where(forward[:, None], step.data, step.inverse().data))
    relative = group.identity(num_poses, dtype=torch.float64)  # pose v in the frame of ancestor[v]
    relative.data[torch.from_numpy(child)] = step.data
    ancestor = torch.from_numpy(parent)
    while bool((ancestor != anchor).any()):  # O(log depth) rounds, each over all poses at once
        relative = relative[ancestor].compose(relative)
        ancestor = ancestor[ancestor]
    return _finish(relative.normalize(), anchor, initial, measurements)


# ---------------------------------------------------------------------------------------- helpers


def _check_inputs(
    group: Any, num_poses: int, i: Tensor, j: Tensor, measurements: Any, anchor: int, initial: Any
) -> tuple[np.ndarray, np.ndarray, SEBase]:
    """Validates the shared arguments; returns the endpoints as int64 numpy arrays and the
    measurements in float64 on the CPU."""
    if group not in (SE2, SE3):
        raise TypeError(f"group must be liegeo.SE2 or liegeo.SE3, got {group!r}")
    if type(measurements) is not group or measurements.ndim != 1:
        raise TypeError(f"measurements must be a 1-D batch of {group.__name__}, got {measurements!r:.80}")
    e = len(measurements)
    ii = torch.as_tensor(i).detach().cpu().numpy()
    jj = torch.as_tensor(j).detach().cpu().numpy()
    if any(a.shape != (e,) or not np.issubdtype(a.dtype, np.integer) for a in (ii, jj)):
        raise ValueError(f"i and j must be integer arrays of shape ({e},), got {ii.shape} {ii.dtype} "
                         f"and {jj.shape} {jj.dtype}")
    num_poses = int(num_poses)
    if num_poses < 1 or not 0 <= anchor < num_poses:
        raise ValueError(f"need num_poses >= 1 and 0 <= anchor < num_poses, got {num_poses} and {anchor}")
    if e and (min(ii.min(), jj.min()) < 0 or max(ii.max(), jj.max()) >= num_poses):
        raise ValueError(f"edge endpoints must lie in [0, {num_poses})")
    if initial is not None and (type(initial) is not group or initial.shape != (num_poses,)):
        raise TypeError(f"initial must be {group.__name__} of shape ({num_poses},), got {initial!r:.80}")
    z = measurements.detach().to("cpu", torch.float64)
    return ii.astype(np.int64), jj.astype(np.int64), z


def _connected_adjacency(num_poses: int, ii: np.ndarray, jj: np.ndarray, anchor: int,
                         source: str | None = None) -> sp.csr_matrix:
    """The (symmetrizable) adjacency matrix of the edges; raises if the graph is not connected."""
    ones = np.ones(len(ii), dtype=np.int8)
    adjacency = sp.csr_matrix((ones, (ii, jj)), shape=(num_poses, num_poses))
    count, labels = csgraph.connected_components(adjacency, directed=False)
    if count > 1:
        # Relabel so that the anchor's component is 0 and the others keep their order.
        order = np.concatenate([[labels[anchor]], np.delete(np.arange(count), labels[anchor])])
        rank = np.empty(count, dtype=np.int64)
        rank[order] = np.arange(count)
        raise DisconnectedGraphError(count, rank[labels], anchor, source=source)
    return adjacency


def _solve_anchored(
    num_poses: int, n: int, anchor: int, ti: Tensor, tj: Tensor,
    h_ii: Tensor, h_jj: Tensor, h_ij: Tensor, *, rhs: Tensor, anchor_value: Tensor,
) -> Tensor:
    """Solves ``H x = b`` for ``x: (N, n, k)`` with ``x[anchor]`` fixed to ``anchor_value: (n, k)``.

    ``H`` is the symmetric block matrix summed over edges ``e`` from the ``(E, n, n)`` blocks
    ``h_ii`` at ``(i, i)``, ``h_jj`` at ``(j, j)``, ``h_ij`` at ``(i, j)`` and ``h_ijᵀ`` at ``(j, i)``;
    ``rhs: (N, n, k)``.
    """
    r, c = torch.arange(n)[:, None].expand(n, n), torch.arange(n)[None, :].expand(n, n)  # within a block
    at_i, at_j = ti[:, None, None] * n, tj[:, None, None] * n  # first row/column of each block
    rows = torch.cat([at_i + r, at_j + r, at_i + r, at_j + r]).flatten().numpy()
    cols = torch.cat([at_i + c, at_j + c, at_j + c, at_i + c]).flatten().numpy()
    vals = torch.cat([h_ii, h_jj, h_ij, h_ij.transpose(1, 2)]).flatten().numpy()
    size = num_poses * n
    h = sp.csr_matrix((vals, (rows, cols)), shape=(size, size))  # duplicates are summed
    free = np.ones(size, dtype=bool)
    free[anchor * n : (anchor + 1) * n] = False
    x = torch.zeros(num_poses, n, rhs.shape[-1], dtype=torch.float64)
    x[anchor] = anchor_value.to(torch.float64)
    if free.any():
        h_free = h[free]
        b = rhs.reshape(size, -1).numpy()[free] - h_free[:, ~free] @ x[anchor].numpy()
        sol = _spd_solve(h_free[:, free].tocsc(), b)
        x.reshape(size, -1)[torch.from_numpy(free)] = torch.from_numpy(np.asarray(sol).reshape(b.shape))
    return x


def _spd_solve(h: sp.csc_matrix, b: np.ndarray) -> np.ndarray:
    """``H⁻¹ b`` for symmetric positive definite ``H``: CHOLMOD where installed, else SuperLU."""
    try:
        from sksparse import cholmod
    except ImportError:
        return spla.spsolve(h, b)
    return cholmod.cholesky(h)(b)


def _nearest_rotation(m: Tensor) -> Tensor:
    """The rotations nearest in the Frobenius norm to ``m: (N, n, n)`` (``U diag(1, .., det) Vᵀ``)."""
    u, _, vh = torch.linalg.svd(m)
    sign = torch.ones(m.shape[:-1], dtype=m.dtype)
    sign[..., -1] = torch.linalg.det(u @ vh).sign()
    return (u * sign.unsqueeze(-2)) @ vh


def _log_translation_jacobian(group: type[SEBase], rotation: Tensor) -> tuple[Tensor, Tensor]:
    """For rotation matrices ``(E, n, n)``: ``P`` with ``Log((R, t))[:n] = P t``, and ``Log(R)``.

    The translation part of ``Log`` is linear in ``t`` (``J_l⁻¹(ω) t`` in 3D, ``V(θ)⁻¹ t`` in 2D), so
    ``P``'s columns are the logs of the unit translations; the log of ``(R, 0)`` gives ``ω``.
    """
    e, n = rotation.shape[0], group.point_dim
    rot = group.rotation_type.from_matrix(rotation)
    translations = torch.cat([torch.zeros(1, n, dtype=rotation.dtype), torch.eye(n, dtype=rotation.dtype)])
    xi = group.from_rotation_translation(rot.unsqueeze(-1), translations.expand(e, n + 1, n)).log()
    return xi[:, 1:, :n].transpose(1, 2), xi[:, 0, n:]


def _finish(poses: SEBase, anchor: int, initial: SEBase | None, like: SEBase) -> SEBase:
    """Moves the anchor to ``initial[anchor]`` if given, and casts to ``like``'s dtype and device."""
    if initial is not None:
        poses = initial[anchor].detach().to("cpu", torch.float64).expand(len(poses)).compose(poses)
    return poses.to(device=like.device, dtype=like.dtype)
