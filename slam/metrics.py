"""Trajectory accuracy: timestamp association, Umeyama alignment, ATE and RPE, as evo computes them.

* ``ate``: absolute trajectory error, evo's APE "translation part": after aligning
  the estimate to the reference (``align``), the error of pose k is
  ``‖p_est_aligned(k) - p_ref(k)‖`` (metres).
* ``rpe``: relative pose error, evo's RPE with its defaults: for each pose pair
  (i, j) the error pose is ``E = (Q_i⁻¹ Q_j)⁻¹ (P_i⁻¹ P_j)`` (Q reference, P
  estimate); translation error ``‖t(E)‖`` (metres), rotation error the angle of
  ``R(E)`` in radians (``|Log R(E)|`` in ``[0, π]``).  The pairs (``rpe_pairs``) are
  evo's for a delta in frames, metres travelled, or degrees / radians turned.
* ``ape``: evo's APE for any pose relation: ``E = P⁻¹ Q`` per aligned pose.
* ``evaluate``: both, from two files, and ``format_report`` for a table.

Pose relations (``POSE_RELATIONS``; evo's ``--pose_relation`` name in brackets) of an error
pose E: ``trans`` (``trans_part``) ``‖t(E)‖`` in metres (APE: ``‖p_est - p_ref‖``), ``rot``
(``angle_deg`` / ``angle_rad``) the rotation angle ``|Log R(E)|``, ``rot_part``
(``rot_part``) ``‖R(E) - I₃‖_F`` and ``full`` (``full``) ``‖E - I₄‖_F``, both unitless.

Everything is computed in float64.  Statistics are those of evo: ``rmse`` =
``sqrt(mean(e²))``, ``std`` is the population standard deviation, ``median``
averages the two middle values.
"""

from __future__ import annotations

import logging
import math
import os
from typing import Any, Literal

import torch
from torch import Tensor

from liegeo import SE3, SO3, _math

from .io.trajectory import PLANES, Plane, declared_plane, detect_format, read_trajectory

__all__ = [
    "associate", "umeyama", "alignment", "align", "summarize", "ate", "ape", "pose_errors", "rpe_pairs", "rpe",
    "check_delta", "coordinate_plane", "evaluate", "format_report", "relation_label", "relation_unit", "DELTA_UNITS",
    "POSE_RELATIONS",
]

logger = logging.getLogger(__name__)

AlignMode = Literal["se3", "sim3", "se2", "none"]
DeltaUnit = Literal["frames", "meters", "degrees", "radians"]
PathStart = Literal["first_pose", "delta"]
PoseRelation = Literal["trans", "rot", "rot_part", "full"]
AngleUnit = Literal["deg", "rad"]
STATISTICS = ("rmse", "mean", "median", "std", "min", "max")

DELTA_UNITS: dict[str, DeltaUnit] = {"f": "frames", "m": "meters", "d": "degrees", "r": "radians"}
"""evo's ``--delta_unit`` letters."""

POSE_RELATIONS: dict[str, str] = {
    "trans": "translation",
    "rot": "rotation angle",
    "rot_part": "rotation part",
    "full": "full transformation",
}
"""Our pose relations and how the report names them (see the module docstring for evo's names)."""

PLANAR_SPREAD = 0.1
"""``coordinate_plane``: a trajectory lies in a plane when its spread (standard deviation) along one
axis is at most this fraction of the next smallest one (KITTI 00: 0.047, TUM freiburg1_xyz: 0.8)."""


# ------------------------------------------------------------------------------ association


def associate(t_est: Tensor, t_ref: Tensor, max_difference: float = 0.01) -> tuple[Tensor, Tensor]:
    """Pair timestamps one-to-one, each with its nearest counterpart within ``max_difference``.

    As evo's ``associate_trajectories``, every stamp of the shorter sequence takes the
    nearest stamp of the longer one (ties: the earlier); pairs further apart than
    ``max_difference`` are dropped.  Unlike evo, the pairing is then made one-to-one:
    where several stamps took the same partner, only the nearest (then the earliest)
    keeps it.  Neither input needs to be sorted.

    Args:
        t_est: ``(N,)`` estimate timestamps.
        t_ref: ``(M,)`` reference timestamps.
        max_difference: largest accepted ``|t_est - t_ref|`` (seconds).

    Returns:
        ``(idx_est, idx_ref)``: ``(K,)`` int64 indices, ``t_est[idx_est] ≈ t_ref[idx_ref]``,
        sorted by ``t_est``.
    """
    t_est, t_ref = t_est.detach().double().flatten(), t_ref.detach().double().flatten()
    swap = len(t_est) > len(t_ref)
    short, long = (t_ref, t_est) if swap else (t_est, t_ref)
    if len(short) == 0:
        empty = torch.zeros(0, dtype=torch.long, device=t_est.device)
        return empty, empty.clone()
    order = torch.argsort(long, stable=True)
    sorted_long = long[order]
    # The nearest stamp is one of the two neighbours of the insertion point.
    right = torch.searchsorted(sorted_long, short).clamp(max=len(long) - 1)
    left = (right - 1).clamp(min=0)
    d_left, d_right = (short - sorted_long[left]).abs(), (sorted_long[right] - short).abs()
    take_left = d_left <= d_right
    partner = torch.where(take_left, left, right)
    gap = torch.where(take_left, d_left, d_right)
    mine = torch.nonzero(gap <= max_difference).squeeze(1)
    partner, gap = partner[mine], gap[mine]
    # One-to-one: within each partner, keep the smallest gap (stable sorts keep the earliest).
    by_gap = torch.argsort(gap, stable=True)
    by_partner = by_gap[torch.argsort(partner[by_gap], stable=True)]
    sorted_partner = partner[by_partner]
    first = torch.ones_like(sorted_partner, dtype=torch.bool)
    first[1:] = sorted_partner[1:] != sorted_partner[:-1]
    kept = by_partner[first]
    idx_short, idx_long = mine[kept], order[partner[kept]]
    idx_est, idx_ref = (idx_long, idx_short) if swap else (idx_short, idx_long)
    by_time = torch.argsort(t_est[idx_est], stable=True)
    logger.debug("associated %d of %d estimate / %d reference stamps (max difference %g s)",
                 len(by_time), len(t_est), len(t_ref), max_difference)
    return idx_est[by_time], idx_ref[by_time]


# ------------------------------------------------------------------------------ alignment


def umeyama(source: Tensor, target: Tensor, *, with_scale: bool = False) -> tuple[Tensor, Tensor, Tensor]:
    """The similarity ``(R, t, s)`` minimizing ``Σ ‖target_k - (s R source_k + t)‖²`` (Umeyama 1991).

    ``R`` is a proper rotation (det +1) even where the SVD alone would give a
    reflection (coplanar points, noise): Umeyama's sign fix ``S = diag(1, .., det(U Vᵀ))``.

    Args:
        source: ``(N, d)`` points, d = 2 or 3.
        target: ``(N, d)`` corresponding points.
        with_scale: fit ``s`` too (Sim(d)); otherwise ``s = 1`` (SE(d)).

    Returns:
        ``R: (d, d)``, ``t: (d,)``, ``s: ()``, all float64.

    Raises:
        ValueError: shapes differ, d is not 2 or 3, or the points are degenerate
            (cross-covariance of rank < d - 1: the rotation is not unique).
    """
    if source.ndim != 2 or source.shape != target.shape or source.shape[1] not in (2, 3) or len(source) == 0:
        raise ValueError(f"umeyama needs two (N, 2) or (N, 3) point sets of the same shape, "
                         f"got {tuple(source.shape)} and {tuple(target.shape)}")
    x, y = source.double(), target.double()
    n, d = x.shape
    mean_x, mean_y = x.mean(0), y.mean(0)
    xc, yc = x - mean_x, y - mean_y
    u, sigma, vh = torch.linalg.svd(yc.T @ xc / n)
    rank = int((sigma > sigma[0] * 1e-12).sum()) if sigma[0] > 0 else 0
    if rank < d - 1:
        raise ValueError(f"umeyama: degenerate point sets (cross-covariance rank {rank} < {d - 1}); "
                         "the alignment is not unique")
    sign = torch.where(torch.linalg.det(u) * torch.linalg.det(vh) < 0, -1.0, 1.0).to(x)
    s_diag = torch.cat([torch.ones(d - 1, dtype=x.dtype, device=x.device), sign.reshape(1)])
    r = (u * s_diag) @ vh
    scale = (sigma * s_diag).sum() / xc.square().sum().div(n) if with_scale else x.new_ones(())
    t = mean_y - scale * (r @ mean_x)
    return r, t, scale


def alignment(est: SE3, ref: SE3, mode: AlignMode = "se3") -> tuple[Tensor, Tensor, Tensor]:
    """The transform ``p ↦ s R p + t`` that best maps the estimate's positions onto the reference's.

    ``mode``: ``"se3"`` (rotation + translation), ``"sim3"`` (and scale), ``"se2"``
    (rotation about z and translation in x-y only, for planar trajectories; z is left
    as is), ``"none"`` (identity).  Positions are paired by index.

    Returns:
        ``R: (3, 3)``, ``t: (3,)``, ``s: ()``, float64.
    """
    p, q = _positions(est), _positions(ref)
    if p.shape != q.shape:
        raise ValueError(f"alignment pairs poses by index: {len(p)} estimate vs {len(q)} reference poses")
    if mode in ("se3", "sim3"):
        return umeyama(p, q, with_scale=mode == "sim3")
    if mode == "se2":
        r2, t2, s = umeyama(p[:, :2], q[:, :2])
        r = torch.eye(3, dtype=torch.float64, device=p.device)
        r[:2, :2] = r2
        return r, torch.cat([t2, t2.new_zeros(1)]), s
    if mode == "none":
        return torch.eye(3, dtype=p.dtype, device=p.device), p.new_zeros(3), p.new_ones(())
    raise ValueError(f"unknown alignment {mode!r} (se3, sim3, se2, none)")


def align(est: SE3, ref: SE3, mode: AlignMode = "se3") -> SE3:
    """The estimate ``(N,)`` moved onto ``ref (N,)``: positions ``s R p + t``, orientations ``R R_est`` (float64)."""
    r, t, s = alignment(est, ref, mode)
    positions = s * _positions(est) @ r.T + t
    return SE3.from_rotation_translation(SO3.from_matrix(r).compose(est.rotation().to(torch.float64)), positions)


_align_poses = align  # for functions whose ``align`` argument hides this one


def _positions(poses: SE3) -> Tensor:
    return poses.translation().detach().double()


# ------------------------------------------------------------------------------ errors


def summarize(errors: Tensor) -> dict[str, float]:
    """evo's statistics of ``errors: (K,)``: rmse, mean, median, std (population), min, max."""
    if errors.numel() == 0:
        raise ValueError("no errors to summarize")
    e = errors.detach().double()
    return {
        "rmse": math.sqrt(float(e.square().mean())),
        "mean": float(e.mean()),
        "median": _median(e),
        "std": float(e.std(correction=0)),
        "min": float(e.min()),
        "max": float(e.max()),
    }


def _median(e: Tensor) -> float:
    """The mean of the two middle values for an even count, as ``np.median`` (``torch.median`` takes the lower)."""
    s, n = e.sort().values, e.numel()
    return float(s[n // 2]) if n % 2 else float(0.5 * (s[n // 2 - 1] + s[n // 2]))


def ate(est: SE3, ref: SE3, *, align: AlignMode = "se3") -> dict[str, Any]:
    """Absolute trajectory error of translation (evo APE, translation part) of poses paired by index.

    Args:
        est, ref: ``(N,)`` poses, already associated.
        align: see ``alignment``.

    Returns:
        ``rmse, mean, median, std, min, max`` (metres), ``errors: (N,)`` the per-pose
        distances after alignment, ``scale`` (1 unless ``sim3``) and ``align``.
    """
    r, t, s = alignment(est, ref, align)
    errors = torch.linalg.vector_norm(s * _positions(est) @ r.T + t - _positions(ref), dim=-1)
    return {**summarize(errors), "errors": errors, "scale": float(s), "align": align}


def pose_errors(error: SE3, relation: PoseRelation = "trans", angle_unit: AngleUnit = "deg") -> Tensor:
    """The size of error poses ``E (*batch)`` under a pose relation (see the module docstring): ``(*batch,)``.

    ``rot`` is in degrees or radians (``angle_unit``, as evo's ``angle_deg`` / ``angle_rad``).
    """
    if relation == "trans":
        return torch.linalg.vector_norm(error.translation(), dim=-1)
    if relation == "rot":
        angle = torch.linalg.vector_norm(error.rotation().log(), dim=-1)
        if angle_unit not in ("deg", "rad"):
            raise ValueError(f"unknown angle unit {angle_unit!r} (deg, rad)")
        return angle * (180.0 / math.pi) if angle_unit == "deg" else angle  # np.rad2deg's factor
    if relation in ("rot_part", "full"):
        m = error.matrix()
        if relation == "rot_part":
            m = m[..., :3, :3]
        return torch.linalg.matrix_norm(m - torch.eye(m.shape[-1], dtype=m.dtype, device=m.device))
    raise ValueError(f"unknown pose relation {relation!r} ({', '.join(POSE_RELATIONS)})")


def relation_unit(relation: PoseRelation, angle_unit: AngleUnit = "deg") -> str:
    """The unit of ``pose_errors``: ``m``, ``deg``, ``rad`` or ``""`` (unitless)."""
    return {"trans": "m", "rot": angle_unit}.get(relation, "")


def ape(est: SE3, ref: SE3, *, align: AlignMode = "se3", relation: PoseRelation = "trans",
        angle_unit: AngleUnit = "deg") -> dict[str, Any]:
    """Absolute pose error (evo APE) of poses paired by index, for any pose relation.

    The estimate is aligned (``align``), then each pose's error is ``E = P⁻¹ Q`` (evo's
    ``ape_base``: P aligned estimate, Q reference) measured by ``pose_errors``; for
    ``trans`` it is ``‖p_est - p_ref‖``, as evo (and ``ate``) compute it.

    Returns:
        The statistics, ``errors: (N,)``, ``relation``, ``unit``, ``scale`` and ``align``.
    """
    if relation == "trans":
        result = ate(est, ref, align=align)
    else:
        r, t, s = alignment(est, ref, align)
        moved = SE3.from_rotation_translation(SO3.from_matrix(r).compose(est.rotation().to(torch.float64)),
                                              s * _positions(est) @ r.T + t)
        errors = pose_errors(moved.between(ref.detach().to(torch.float64)), relation, angle_unit)
        result = {**summarize(errors), "errors": errors, "scale": float(s), "align": align}
    return {**result, "relation": relation, "unit": relation_unit(relation, angle_unit)}


def check_delta(delta: float, unit: DeltaUnit) -> float:
    """``delta`` if it is a valid RPE delta in ``unit`` (as evo requires), else ``ValueError``:
    frames a positive integer, metres positive, degrees in (0, 180], radians in (0, π]."""
    bounds = {"meters": math.inf, "degrees": 180.0, "radians": math.pi}
    if unit == "frames":
        if not (isinstance(delta, (int, float)) and math.isfinite(delta) and delta >= 1 and float(delta).is_integer()):
            raise ValueError(f"RPE delta in frames must be a positive integer, got {delta!r}")
        return int(delta)
    if unit not in bounds:
        raise ValueError(f"unknown RPE delta unit {unit!r} ({', '.join(DELTA_UNITS.values())})")
    if not (isinstance(delta, (int, float)) and math.isfinite(delta) and 0 < delta <= bounds[unit]):
        extent = "positive and finite" if unit == "meters" else f"in (0, {bounds[unit]:g}]"
        raise ValueError(f"RPE delta in {unit} must be {extent}, got {delta!r}")
    return float(delta)


def rpe_pairs(poses: SE3, delta: float = 1, unit: DeltaUnit = "frames", *, all_pairs: bool = False,
              rel_tol: float = 0.1, path_start: PathStart = "delta") -> Tensor:
    """The index pairs ``(K, 2)`` that evo's RPE compares (``evo.core.filters``), sorted by i then j.

    * ``frames``, consecutive (default): ``(0, δ), (δ, 2δ), (2δ, 3δ), …`` (evo's
      ``filter_pairs_by_index``); ``all_pairs``: ``(i, i + δ)`` for every i.
    * ``meters``, consecutive: along the path length ``c`` (``c_0 = 0``), a chain of
      indices each the first with ``c_j - c_i ≥ δ`` after the one before (evo's
      ``filter_pairs_by_path``).  It starts at pose 0 with ``path_start="first_pose"``, as
      evo 1.38 (PyPI) does; with ``"delta"`` at the first index with ``c ≥ δ``, as older
      evo releases did (the ``orb_rpe.zip`` result of the shared data).  ``all_pairs``:
      for each i, the first j > i whose ``c_j - c_i`` is nearest δ, kept if within
      ``rel_tol · δ`` (evo 1.38's argmin; before, evo searched locally and could differ).
    * ``degrees`` / ``radians``, consecutive: the same chain from pose 0 over the
      accumulated turning angle (the sum of the angles of ``R_k⁻¹ R_{k+1}``); ``all_pairs``:
      every (i, j), j > i, whose relative rotation angle ``|Log R_i⁻¹ R_j|`` lies within
      ``δ ± rel_tol · δ`` (evo's ``filter_pairs_by_angle``; it is O(N²), done in blocks of rows).

    Pair selection by accumulated sums compares ``c_j - c_i`` where evo sums the steps since
    the last pair: the two round differently, which matters only at exact ties.
    """
    delta = check_delta(delta, unit)
    n = len(poses)
    device = poses.device
    if unit == "frames":
        step = int(delta)
        if all_pairs:
            i = torch.arange(max(n - step, 0), device=device)
            return torch.stack([i, i + step], dim=1)
        ids = torch.arange(0, n, step, device=device)
        return torch.stack([ids[:-1], ids[1:]], dim=1)
    if n < 2:
        return torch.zeros(0, 2, dtype=torch.long, device=device)
    if unit in ("degrees", "radians"):
        # evo converts δ and its tolerance with np.deg2rad (x · (π / 180), as math.radians)
        target = math.radians(delta) if unit == "degrees" else delta
        tol = math.radians(delta * rel_tol) if unit == "degrees" else delta * rel_tol
        q = poses.rotation().data.detach().double()
        if all_pairs:
            return _angle_pairs(q, target - tol, target + tol)
        turned = torch.cat([q.new_zeros(1), _relative_angle(q[:-1], q[1:]).cumsum(0)])
        return _chain(torch.searchsorted(turned, turned + target), 0, n)
    if path_start not in ("first_pose", "delta"):
        raise ValueError(f"unknown path_start {path_start!r} (first_pose, delta)")
    p = _positions(poses)
    length = torch.cat([p.new_zeros(1), torch.linalg.vector_norm(p.diff(dim=0), dim=-1).cumsum(0)])
    nxt = torch.searchsorted(length, length + delta)  # first j with c_j ≥ c_i + δ (n: none)
    if all_pairs:
        index = torch.arange(n, device=device)
        below = (nxt - 1).clamp(min=0)
        # evo's argmin takes the first of equal path lengths
        below = torch.maximum(torch.searchsorted(length, length[below]), index + 1).clamp(max=n - 1)
        up = nxt.clamp(max=n - 1)
        miss_up = (length[up] - length - delta).abs()
        miss_below = torch.where(below < nxt, (length[below] - length - delta).abs(), torch.full_like(length, math.inf))
        j = torch.where(miss_below <= miss_up, below, up)
        ok = (torch.minimum(miss_up, miss_below) <= delta * rel_tol) & (j > index)
        i = torch.nonzero(ok).squeeze(1)
        return torch.stack([i, j[i]], dim=1)
    start = 0 if path_start == "first_pose" else int(torch.searchsorted(length, length.new_tensor([delta])))
    return _chain(nxt, start, n)


def _relative_angle(qa: Tensor, qb: Tensor) -> Tensor:
    """The angle of ``R(qa)⁻¹ R(qb)`` in [0, π] for unit quaternions ``(x, y, z, w)`` (broadcast): ``2 atan2(|v|, |w|)``
    of ``q = qa* qb``, whose vector part ``v = w_a v_b - w_b v_a - v_a × v_b`` keeps small angles exact."""
    shape = _math.broadcast_shapes(qa.shape, qb.shape)
    qa, qb = qa.expand(shape), qb.expand(shape)
    va, wa, vb, wb = qa[..., :3], qa[..., 3:], qb[..., :3], qb[..., 3:]
    v = wa * vb - wb * va - torch.linalg.cross(va, vb, dim=-1)
    w = (qa * qb).sum(-1)
    return 2.0 * torch.atan2(torch.linalg.vector_norm(v, dim=-1), w.abs())


def _angle_pairs(q: Tensor, lower: float, upper: float, block_elements: int = 1 << 20) -> Tensor:
    """All (i, j), j > i, with ``lower ≤ angle(R_i⁻¹ R_j) ≤ upper``: ``(K, 2)``, rows of i at a time."""
    n = len(q)
    rows = max(1, block_elements // n)
    found = []
    for start in range(0, n - 1, rows):  # blocks of rows, each vectorized over all j
        i = torch.arange(start, min(start + rows, n - 1), device=q.device)
        angle = _relative_angle(q[i, None, :], q[None, :, :])
        later = torch.arange(n, device=q.device)[None, :] > i[:, None]
        ii, jj = torch.nonzero(later & (angle >= lower) & (angle <= upper), as_tuple=True)
        found.append(torch.stack([i[ii], jj], dim=1))
    return torch.cat(found) if found else torch.zeros(0, 2, dtype=torch.long, device=q.device)


def _chain(nxt: Tensor, start: int, n: int) -> Tensor:
    """Consecutive pairs along ``start, nxt[start], nxt[nxt[start]], …`` (stop at n): ``(K, 2)``.

    Pointer doubling: after round k the mask holds the first 2^k chain members, so
    log2(n) vectorized rounds replace a loop over the poses.
    """
    jump = torch.cat([nxt, nxt.new_tensor([n])])  # n is the sentinel: it jumps to itself
    member = torch.zeros(n + 1, dtype=torch.bool, device=nxt.device)
    if start < n:
        member[start] = True
        for _ in range(max(1, math.ceil(math.log2(n + 1)))):
            member[jump[member]] = True
            jump = jump[jump]
    ids = torch.nonzero(member[:n]).squeeze(1)
    return torch.stack([ids[:-1], ids[1:]], dim=1)


def rpe(est: SE3, ref: SE3, *, delta: float = 1, unit: DeltaUnit = "frames", all_pairs: bool = False,
        pairs_from: Literal["estimate", "reference"] = "estimate", rel_tol: float = 0.1,
        path_start: PathStart = "delta", relation: PoseRelation | None = None,
        angle_unit: AngleUnit = "deg") -> dict[str, Any]:
    """Relative pose error (evo RPE; its defaults: δ = 1 frame, consecutive pairs, no alignment).

    For each pair (i, j) of ``rpe_pairs`` (chosen on the ``pairs_from`` trajectory, as
    evo's ``pairs_from_reference``; ``rel_tol`` is evo's ``delta_tol``, ``path_start`` see
    there), ``E = (Q_i⁻¹ Q_j)⁻¹ (P_i⁻¹ P_j)`` with Q = ``ref`` and P = ``est``.

    Returns:
        ``translation``: statistics of ``‖t(E)‖`` (metres, evo's "translation part") with
        ``errors: (K,)``; ``rotation``: the same for the angle of ``R(E)`` in **radians**
        (evo's "rotation angle"); ``pairs: (K, 2)``; ``delta``, ``unit``, ``all_pairs``;
        with a ``relation``, ``relation``: the statistics of ``pose_errors(E, relation,
        angle_unit)`` with ``errors``, ``relation`` and ``unit``.
    """
    if len(est) != len(ref):
        raise ValueError(f"RPE pairs poses by index: {len(est)} estimate vs {len(ref)} reference poses")
    est, ref = est.detach().to(torch.float64), ref.detach().to(torch.float64)
    pairs = rpe_pairs(ref if pairs_from == "reference" else est, delta, unit, all_pairs=all_pairs, rel_tol=rel_tol,
                      path_start=path_start)
    if len(pairs) == 0:
        raise ValueError(f"RPE: delta = {delta} {unit} gives no pose pairs among {len(est)} poses"
                         + (f" within the tolerance {rel_tol:g} · delta" if all_pairs and unit != "frames" else ""))
    i, j = pairs[:, 0], pairs[:, 1]
    error = ref[i].between(ref[j]).between(est[i].between(est[j]))
    t_err = pose_errors(error, "trans")
    r_err = pose_errors(error, "rot", "rad")
    result = {
        "translation": {**summarize(t_err), "errors": t_err},
        "rotation": {**summarize(r_err), "errors": r_err},
        "pairs": pairs,
        "delta": delta,
        "unit": unit,
        "all_pairs": all_pairs,
    }
    if relation is not None:
        errors = pose_errors(error, relation, angle_unit)
        result["relation"] = {**summarize(errors), "errors": errors, "relation": relation,
                              "unit": relation_unit(relation, angle_unit)}
    return result


def coordinate_plane(positions: Tensor, ratio: float = PLANAR_SPREAD) -> Plane | None:
    """The coordinate plane a trajectory lies about, from its positions ``(N, 3)``: ``"xy"``, ``"xz"``
    or ``"yz"`` when the spread (standard deviation) along the plane's normal axis is at most
    ``ratio`` times the smaller of the two others; ``None`` for a spatial trajectory, a line or a point.

    A 2D graph lifted to SE(3) lies in x-y (z = 0); KITTI's camera frame (y down) in x-z.
    """
    p = positions.detach().double().reshape(-1, 3)
    if len(p) < 2:
        return None
    spread = p.std(dim=0, correction=0)
    order = torch.argsort(spread).tolist()
    low, mid = float(spread[order[0]]), float(spread[order[1]])
    if not (mid > 0 and low <= ratio * mid):
        return None
    return next(name for name, normal in PLANES.items() if normal == order[0])  # type: ignore[return-value]


# ------------------------------------------------------------------------------ files


def evaluate(est_path: str | os.PathLike[str], ref_path: str | os.PathLike[str], *,
             format: Literal["auto", "tum", "kitti"] = "auto", align: AlignMode = "se3",
             max_difference: float = 0.01, delta: float = 1, unit: DeltaUnit = "frames", all_pairs: bool = False,
             rel_tol: float = 0.1, path_start: PathStart = "first_pose", pose_relation: PoseRelation = "trans",
             angle_unit: AngleUnit = "deg", return_poses: bool = False) -> dict[str, Any]:
    """ATE and RPE of the trajectory in ``est_path`` against ``ref_path`` (what ``slam eval`` prints).

    Files are TUM (8 columns) or KITTI (12); ``"auto"`` decides per file.  When both
    have timestamps the poses are paired by ``associate`` (within ``max_difference``
    seconds, evo's ``t_max_diff``); otherwise by index (equal lengths required).  RPE is
    computed on the aligned estimate (pairs chosen on it, as evo); it is unchanged by
    ``se3``/``se2`` alignment, while ``sim3`` corrects its scale.  ``delta``, ``unit``,
    ``all_pairs``, ``rel_tol`` and ``path_start`` choose the RPE pairs (``rpe_pairs``; the
    default ``path_start`` is evo 1.38's), ``pose_relation`` and ``angle_unit`` the
    APE and RPE measure reported beside the translation figures.

    Logs one warning when the two trajectories lie in different coordinate planes
    (``# plane:`` header of a TUM file, else ``coordinate_plane`` of its positions).

    Returns:
        ``ate`` (see ``ate``), ``rpe`` (see ``rpe``, with ``relation``), ``ape`` (see ``ape``),
        ``pose_relation``, ``planes`` (est, ref: a plane or None), ``est_path``, ``ref_path``,
        ``formats`` (est, ref), ``num_est``, ``num_ref``, ``num_matched``, ``paired_by``
        (``"timestamps"`` or ``"index"``), ``max_difference``, ``align``; with ``return_poses``
        also ``matched``: ``estimate`` (aligned) and ``reference`` SE3 ``(K,)`` and the
        estimate's ``timestamps (K,)`` (or None).
    """
    formats = tuple(detect_format(p) if format == "auto" else format for p in (est_path, ref_path))
    est, ref = read_trajectory(est_path, formats[0]), read_trajectory(ref_path, formats[1])
    planes = tuple((declared_plane(path) if kind == "tum" else None) or coordinate_plane(traj.poses.translation())
                   for path, kind, traj in zip((est_path, ref_path), formats, (est, ref)))
    if planes[0] and planes[1] and planes[0] != planes[1]:
        remedy = ("the alignment turns one onto the other" if align in ("se3", "sim3") else
                  f"--align {align} does not turn one onto the other; use se3 or sim3")
        logger.warning("warning: the estimate %s lies in the %s plane and the reference %s in the %s plane "
                       "(KITTI's camera frame is x-z, a 2D graph's TUM output x-y); %s",
                       est_path, "-".join(planes[0]), ref_path, "-".join(planes[1]), remedy)
    if est.timestamps is not None and ref.timestamps is not None:
        idx_est, idx_ref = associate(est.timestamps, ref.timestamps, max_difference)
        paired_by = "timestamps"
        if len(idx_est) < 3:
            raise ValueError(f"{est_path} against {ref_path}: only {len(idx_est)} of {len(est)} estimate timestamps "
                             f"lie within {max_difference} s of a reference timestamp; use a larger max_difference "
                             f"or check the time bases")
        matched_est, matched_ref = est[idx_est], ref[idx_ref]
    else:
        if len(est) != len(ref):
            raise ValueError(f"without timestamps on both sides poses are paired by index, but {est_path} has "
                             f"{len(est)} poses and {ref_path} has {len(ref)}")
        matched_est, matched_ref, paired_by = est, ref, "index"
    if len(matched_est) < min(len(est), len(ref)) // 2:
        logger.warning("only %d of %d estimate poses were associated", len(matched_est), len(est))
    try:  # degenerate alignments, too few RPE pairs: say which two files
        aligned = _align_poses(matched_est.poses, matched_ref.poses, align)
        ate_ = ate(matched_est.poses, matched_ref.poses, align=align)
        ape_ = ate_ if pose_relation == "trans" else ape(matched_est.poses, matched_ref.poses, align=align,
                                                         relation=pose_relation, angle_unit=angle_unit)
        rpe_ = rpe(aligned, matched_ref.poses, delta=delta, unit=unit, all_pairs=all_pairs, rel_tol=rel_tol,
                   path_start=path_start, relation=pose_relation, angle_unit=angle_unit)
    except ValueError as error:
        raise ValueError(f"{est_path} against {ref_path}: {error}") from error
    unit_name = relation_unit(pose_relation, angle_unit)
    result = {
        "ate": ate_,
        "ape": {**ape_, "relation": pose_relation, "unit": unit_name},
        "rpe": rpe_,
        "pose_relation": {"name": pose_relation, "evo": _evo_relation(pose_relation, angle_unit), "unit": unit_name},
        "planes": planes,
        "est_path": str(est_path),
        "ref_path": str(ref_path),
        "formats": formats,
        "num_est": len(est),
        "num_ref": len(ref),
        "num_matched": len(matched_est),
        "paired_by": paired_by,
        "max_difference": max_difference,
        "align": align,
    }
    if return_poses:
        result["matched"] = {"estimate": aligned, "reference": matched_ref.poses.detach().to(torch.float64),
                             "timestamps": matched_est.timestamps}
    return result


def _evo_relation(relation: PoseRelation, angle_unit: AngleUnit) -> str:
    """evo's ``--pose_relation`` name for ours."""
    return {"trans": "trans_part", "rot": f"angle_{angle_unit}", "rot_part": "rot_part", "full": "full"}[relation]


def relation_label(pose_relation: dict[str, str]) -> str:
    """An ``evaluate`` result's ``pose_relation`` as ``"rotation angle (deg)"``, ``"full transformation"``."""
    unit = pose_relation["unit"]
    return POSE_RELATIONS[pose_relation["name"]] + (f" ({unit})" if unit else "")


def format_report(result: dict[str, Any]) -> str:
    """A short table of an ``evaluate`` result (RPE rotation shown in degrees)."""
    ate_, rpe_ = result["ate"], result["rpe"]
    pairing = (f"by timestamps (max difference {result['max_difference']:g} s)" if result["paired_by"] == "timestamps"
               else "by index")
    scale = f", scale {ate_['scale']:.6g}" if result["align"] == "sim3" else ""
    header = [
        f"estimate : {result['est_path']} ({result['formats'][0].upper()}, {result['num_est']} poses)",
        f"reference: {result['ref_path']} ({result['formats'][1].upper()}, {result['num_ref']} poses)",
        f"matched  : {result['num_matched']} poses {pairing}; alignment {result['align']}{scale}",
        "",
        f"{'metric':<24}" + "".join(f"{name:>11}" for name in STATISTICS),
    ]
    rows = [
        ("ATE translation (m)", ate_, 1.0),
        ("RPE translation (m)", rpe_["translation"], 1.0),
        ("RPE rotation (deg)", rpe_["rotation"], 180.0 / math.pi),
    ]
    relation = result.get("pose_relation", {"name": "trans"})
    if relation["name"] != "trans":  # the measure asked for, as evo_ape / evo_rpe -r print it
        label = relation_label(relation)
        rows = [(f"APE {label}", result["ape"], 1.0), (f"RPE {label}", rpe_["relation"], 1.0)]
    width = max(24, *(len(label) + 2 for label, _, _ in rows))
    header[-1] = f"{'metric':<{width}}" + "".join(f"{name:>11}" for name in STATISTICS)
    table = [f"{label:<{width}}" + "".join(f"{stats[name] * factor:>11.6f}" for name in STATISTICS)
             for label, stats, factor in rows]
    pairing = "all" if rpe_.get("all_pairs") else "consecutive"
    footer = [f"RPE over {len(rpe_['pairs'])} pairs ({pairing}), delta = {rpe_['delta']:g} {rpe_['unit']}"]
    if "pose_relation" in result:
        footer.append(f"pose relation {relation['name']} (evo --pose_relation {relation['evo']})")
    return "\n".join(header + table + footer)
