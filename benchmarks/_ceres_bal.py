"""Ceres peer for the BAL benchmark: pyceres + pycolmap's C++ reprojection cost.

    pip install pyceres==2.6 pycolmap==4.2.1      (CPU wheels; both only require numpy)

``ceres_bal_solve`` runs Ceres' Levenberg-Marquardt on a BAL problem and returns the result in
BAL's parameterization, so the caller can judge it by its own BAL cost like every other solver.

Mapping BAL onto COLMAP (checked to ~1e-15 relative on the initial costs of the BAL files):

* BAL projects ``p = -P[:2] / P[2]`` with ``P = R(r) X + t``; COLMAP projects ``P'[:2] / P'[2]``.
  With ``F = diag(-1, 1, -1)`` (a rotation of pi about the camera y axis), ``R' = F R`` and
  ``t' = F t`` give ``P' = F P``, so COLMAP's ``p'`` is BAL's ``p`` with ``u`` negated: the
  observations enter as ``(-x, y)``.
* BAL's ``f (1 + k1 |p|^2 + k2 |p|^4) p`` is COLMAP's ``RADIAL`` model ``(f, cx, cy, k1, k2)`` with
  the principal point held at 0 (BAL pixels are relative to the image centre).
* A camera's pose is COLMAP's 7-vector ``cam_from_world`` (quaternion xyzw, translation) on
  Ceres' product manifold (quaternion x Euclidean), not BAL's angle-axis: the same cost, a
  different parameterization of the step, so the LM path differs slightly from Ceres' own BAL
  example (``SnavelyReprojectionError``), but not the cost being minimized.

One difference in the cost itself is handled here: COLMAP's ``ReprojErrorCost`` returns a zero
residual (and Jacobian) when the point is behind the camera (``P'[2] < eps``), while BAL's model
has no cheirality test (Ladybug's file has 31 such observations, worth 110.37 of its initial
cost).  Observations behind their camera at the start therefore get a Python ``CostFunction``
with BAL's formula (a handful of residual blocks; the others stay in C++).  An observation that
crosses behind its camera during the solve would be zeroed by COLMAP's cost, and the optimizer
can exploit that (seen on Ladybug with ``cauchy:1``: 25 observations, final cost 1.2% below
BAL's): after each solve the returned parameters are checked, every observation of a point that
crossed goes to the Python cost, and the solve starts over (``rounds``; ``seconds`` is the last
solve's).  ``"behind_camera_cxx"`` counts C++ observations behind their camera at the end: 0
means Ceres' final cost is BAL's cost of the returned parameters.

Robust losses ``"huber:s"`` / ``"cauchy:s"`` are Ceres' ``HuberLoss(s)`` / ``CauchyLoss(s)`` on
each observation's 2-vector (``s`` a threshold on the pixel-error norm), the convention of
``slam.robust``; Ceres' costs are ``0.5 * sum rho(|r|^2)``.
"""

from __future__ import annotations

import time

import numpy as np

__all__ = ["ceres_bal_solve", "bal_cost"]

_INSTALL_HINT = "the Ceres peer needs pyceres and pycolmap: pip install pyceres==2.6 pycolmap==4.2.1"

_F = np.array([-1.0, 1.0, -1.0])  # pi about the camera y axis: BAL camera frame -> COLMAP's


def _import():
    try:
        import pyceres
        import pycolmap
        from pycolmap import cost_functions  # noqa: F401  (pycolmap >= 3.12)
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise ImportError(f"{_INSTALL_HINT} ({exc})") from exc
    return pyceres, pycolmap


def _rodrigues(r: np.ndarray) -> np.ndarray:
    """Rotation matrices (N,3,3) of angle-axis vectors (N,3)."""
    theta = np.linalg.norm(r, axis=1)
    small = theta < 1e-12
    safe = np.where(small, 1.0, theta)
    k = r / safe[:, None]
    kx = np.zeros((len(r), 3, 3))
    kx[:, 0, 1], kx[:, 0, 2], kx[:, 1, 2] = -k[:, 2], k[:, 1], -k[:, 0]
    kx[:, 1, 0], kx[:, 2, 0], kx[:, 2, 1] = k[:, 2], -k[:, 1], k[:, 0]
    s, c = np.sin(theta)[:, None, None], np.cos(theta)[:, None, None]
    rot = np.eye(3) + s * kx + (1 - c) * (kx @ kx)
    # first order near 0 (what Ceres' AngleAxisRotatePoint does there)
    rx = np.zeros((len(r), 3, 3))
    rx[:, 0, 1], rx[:, 0, 2], rx[:, 1, 2] = -r[:, 2], r[:, 1], -r[:, 0]
    rx[:, 1, 0], rx[:, 2, 0], rx[:, 2, 1] = r[:, 2], -r[:, 1], r[:, 0]
    return np.where(small[:, None, None], np.eye(3) + rx, rot)


def bal_cost(cameras, points, camera_index, point_index, observations) -> float:
    """0.5 * sum of squared BAL pixel residuals (plain numpy, no cheirality test)."""
    cameras, points = np.asarray(cameras, np.float64), np.asarray(points, np.float64)
    ci, pi = np.asarray(camera_index), np.asarray(point_index)
    rot = _rodrigues(cameras[:, :3])
    p_cam = np.einsum("oij,oj->oi", rot[ci], points[pi]) + cameras[ci, 3:6]
    p = -p_cam[:, :2] / p_cam[:, 2:3]
    r2 = np.einsum("oi,oi->o", p, p)
    cam = cameras[ci]
    pix = (cam[:, 6] * (1.0 + r2 * (cam[:, 7] + cam[:, 8] * r2)))[:, None] * p
    res = pix - np.asarray(observations, np.float64)
    return 0.5 * float(np.einsum("oi,oi->", res, res))


def _aa_to_quat(r: np.ndarray) -> np.ndarray:
    """Unit quaternions (N,4), xyzw, of angle-axis vectors (N,3)."""
    theta = np.linalg.norm(r, axis=1)
    half = 0.5 * theta
    # sin(theta/2)/theta, with its series near 0
    s = np.where(theta > 1e-8, np.sin(half) / np.where(theta > 1e-8, theta, 1.0), 0.5 - theta**2 / 48.0)
    return np.concatenate([r * s[:, None], np.cos(half)[:, None]], axis=1)


def _quat_to_aa(q: np.ndarray) -> np.ndarray:
    """Angle-axis vectors (N,3) of quaternions (N,4) xyzw (normalized here; angle in [0, pi])."""
    q = q / np.linalg.norm(q, axis=1, keepdims=True)
    q = np.where(q[:, 3:4] < 0, -q, q)
    v, w = q[:, :3], q[:, 3]
    sin_half = np.linalg.norm(v, axis=1)
    theta = 2.0 * np.arctan2(sin_half, w)
    scale = np.where(sin_half > 1e-12, theta / np.where(sin_half > 1e-12, sin_half, 1.0), 2.0 / np.maximum(w, 1e-300))
    return v * scale[:, None]


def _quat_mul(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Hamilton products (N,4) of xyzw quaternions (broadcasting)."""
    ax, ay, az, aw = np.moveaxis(np.broadcast_to(a, np.broadcast_shapes(a.shape, b.shape)), -1, 0)
    bx, by, bz, bw = np.moveaxis(np.broadcast_to(b, np.broadcast_shapes(a.shape, b.shape)), -1, 0)
    return np.stack([aw * bx + ax * bw + ay * bz - az * by,
                     aw * by - ax * bz + ay * bw + az * bx,
                     aw * bz + ax * by - ay * bx + az * bw,
                     aw * bw - ax * bx - ay * by - az * bz], axis=-1)


_Q_FLIP = np.array([0.0, 1.0, 0.0, 0.0])  # pi about y, xyzw (its own inverse as a rotation)


def _skew(v: np.ndarray) -> np.ndarray:
    return np.array([[0.0, -v[2], v[1]], [v[2], 0.0, -v[0]], [-v[1], v[0], 0.0]])


def _bal_cost_function(pyceres, observed: np.ndarray):
    """BAL's residual on COLMAP's blocks (point 3, cam_from_world 7, RADIAL params 5), in Python.

    The same formula as COLMAP's RADIAL ``ReprojErrorCost`` (the quaternion rotation written as
    Eigen's ``q * v``) without its cheirality test, with analytic Jacobians in the ambient
    coordinates (Ceres applies the manifolds)."""

    class BALResidual(pyceres.CostFunction):
        def __init__(self):
            pyceres.CostFunction.__init__(self)
            self.set_num_residuals(2)
            self.set_parameter_block_sizes([3, 7, 5])
            self.observed = observed

        def Evaluate(self, parameters, residuals, jacobians):  # noqa: N802 (Ceres' name)
            x, pose, cam = parameters
            qv, w, t = pose[:3], pose[3], pose[4:7]
            u = np.cross(qv, x)
            pc = x + 2.0 * w * u + 2.0 * np.cross(qv, u) + t
            iz = 1.0 / pc[2]
            a, b = pc[0] * iz, pc[1] * iz
            f, cx, cy, k1, k2 = cam
            r2 = a * a + b * b
            d = 1.0 + k1 * r2 + k2 * r2 * r2
            residuals[0] = f * d * a + cx - self.observed[0]
            residuals[1] = f * d * b + cy - self.observed[1]
            if jacobians is None:
                return True
            dd_dr2 = k1 + 2.0 * k2 * r2
            # d pixel / d (a, b)
            jab = f * (d * np.eye(2) + 2.0 * dd_dr2 * np.outer([a, b], [a, b]))
            # d (a, b) / d pc
            jproj = np.array([[iz, 0.0, -a * iz], [0.0, iz, -b * iz]])
            jpc = jab @ jproj  # 2x3
            if jacobians[0] is not None:  # d pc / d x = R(q)
                rot = np.eye(3) + 2.0 * w * _skew(qv) + 2.0 * _skew(qv) @ _skew(qv)
                jacobians[0][:] = (jpc @ rot).ravel()
            if jacobians[1] is not None:
                sx = _skew(x)
                d_qv = -2.0 * w * sx - 2.0 * _skew(u) - 2.0 * _skew(qv) @ sx
                d_w = 2.0 * u
                jpose = np.concatenate([jpc @ d_qv, (jpc @ d_w)[:, None], jpc], axis=1)
                jacobians[1][:] = jpose.ravel()
            if jacobians[2] is not None:
                jcam = np.array([[d * a, 1.0, 0.0, f * r2 * a, f * r2 * r2 * a],
                                 [d * b, 0.0, 1.0, f * r2 * b, f * r2 * r2 * b]])
                jacobians[2][:] = jcam.ravel()
            return True

    return BALResidual()


def _loss(pyceres, pycolmap, loss: str | None):
    """(pyceres loss or None, pycolmap LossFunctionType, scale) of ``"huber:s"``/``"cauchy:s"``/None."""
    if loss is None:
        return None, pycolmap.LossFunctionType.TRIVIAL, 1.0
    name, sep, scale = loss.partition(":")
    name = name.strip().lower()
    if not sep or name not in ("huber", "cauchy"):
        raise ValueError(f"loss {loss!r}: expected None, 'huber:s' or 'cauchy:s'")
    s = float(scale)
    if not (np.isfinite(s) and s > 0):
        raise ValueError(f"loss {loss!r}: scale must be positive and finite")
    if name == "huber":
        return pyceres.HuberLoss(s), pycolmap.LossFunctionType.HUBER, s
    return pyceres.CauchyLoss(s), pycolmap.LossFunctionType.CAUCHY, s


def ceres_bal_solve(cameras: np.ndarray, points: np.ndarray, camera_index: np.ndarray, point_index: np.ndarray,
                    observations: np.ndarray, *, max_iterations: int = 50, loss: str | None = None,
                    num_threads: int = 2, linear_solver: str = "SPARSE_SCHUR", max_rounds: int = 5) -> dict:
    """Ceres LM on a BAL problem (inputs and outputs in BAL's parameterization).

    Args:
        cameras: (C, 9) angle-axis r, translation t, f, k1, k2.
        points: (P, 3).
        camera_index, point_index: (O,) observation -> camera / point.
        observations: (O, 2) pixels relative to the image centre.
        max_iterations: Ceres' ``max_num_iterations``.
        loss: None, ``"huber:s"`` or ``"cauchy:s"``.
        num_threads: Ceres' ``num_threads``.
        linear_solver: a ``pyceres.LinearSolverType`` name (``SPARSE_SCHUR``, ``DENSE_SCHUR``,
            ``ITERATIVE_SCHUR``, ``SPARSE_NORMAL_CHOLESKY``, ...); the Schur elimination
            ordering is Ceres' automatic one (the points).
        max_rounds: solves from the start at most (see ``rounds`` below).

    Returns:
        dict with ``seconds`` (the ``pyceres.solve`` call only), ``initial_cost`` and
        ``final_cost`` (Ceres' own, 0.5 * sum rho), ``iterations`` (LM iterations after
        iteration 0, successful or not), ``successful_steps``, ``termination`` (Ceres' message),
        ``cameras`` (C, 9) and ``points`` (P, 3) in BAL convention, and the bookkeeping of the
        cheirality fix: ``python_blocks`` (observations on BAL's Python cost: those behind their
        camera at the start, plus every observation of a point that crossed behind a camera on
        COLMAP's cost in an earlier round), ``rounds`` (solves from the start; ``seconds`` and
        the costs are the last one's), ``seconds_all`` (all rounds' solves) and
        ``behind_camera_cxx`` (C++ observations behind their camera at the end, whose residual
        COLMAP zeroed: 0 unless ``max_rounds`` ran out, and then ``final_cost`` is not BAL's).

    Raises:
        ImportError: pyceres / pycolmap missing (with the pip command).
    """
    pyceres, pycolmap = _import()
    cameras = np.ascontiguousarray(cameras, np.float64)
    points = np.ascontiguousarray(points, np.float64)
    ci = np.asarray(camera_index, np.int64)
    pi = np.asarray(point_index, np.int64)
    obs = np.asarray(observations, np.float64)
    n_cam, n_pt, n_obs = len(cameras), len(points), len(obs)
    if cameras.shape != (n_cam, 9) or points.shape != (n_pt, 3) or obs.shape != (n_obs, 2):
        raise ValueError("expected cameras (C,9), points (P,3), observations (O,2)")
    if ci.shape != (n_obs,) or pi.shape != (n_obs,):
        raise ValueError("camera_index and point_index must be (O,)")
    loss_py, loss_type, loss_scale = _loss(pyceres, pycolmap, loss)
    solver_type = getattr(pyceres.LinearSolverType, linear_solver)

    # Cheirality at the start: BAL's P[2] >= 0 is COLMAP's P'[2] <= 0, a zero residual there.
    in_python = _behind(_depth(cameras, points, ci, pi))
    seconds_all, rounds = 0.0, 0
    while True:
        rounds += 1
        result = _solve_once(pyceres, pycolmap, cameras, points, ci, pi, obs, in_python, loss_py, loss_type,
                             loss_scale, solver_type, max_iterations, num_threads)
        seconds_all += result["seconds"]
        crossed = ~in_python & _behind(_depth(result["cameras"], result["points"], ci, pi))
        if not crossed.any() or rounds >= max_rounds:
            break
        # a point that went behind a camera on COLMAP's cost (whose residual is then zero): all
        # observations of such points go to BAL's Python cost, and the solve starts over
        in_python = in_python | np.isin(pi, pi[crossed])
    result.update(seconds_all=seconds_all, rounds=rounds, python_blocks=int(in_python.sum()),
                  behind_camera_cxx=int(crossed.sum()))
    return result


def _behind(depth: np.ndarray) -> np.ndarray:
    """Where COLMAP's cost zeroes the residual: ``P'[2] < DBL_EPSILON`` (or NaN)."""
    return ~(depth >= np.finfo(np.float64).eps)


def _depth(cameras, points, ci, pi) -> np.ndarray:
    """COLMAP's depth P'[2] = -(BAL's P[2]) of every observation."""
    rot = _rodrigues(cameras[:, :3])
    return -(np.einsum("oj,oj->o", rot[ci, 2], points[pi]) + cameras[ci, 5])


def _solve_once(pyceres, pycolmap, cameras, points, ci, pi, obs, in_python, loss_py, loss_type, loss_scale,
                solver_type, max_iterations, num_threads) -> dict:
    """Build COLMAP's problem (C++ cost where ``~in_python``, BAL's Python cost elsewhere) and solve."""
    n_cam, n_pt, n_obs = len(cameras), len(points), len(obs)

    quats = _quat_mul(_Q_FLIP, _aa_to_quat(cameras[:, :3]))
    obs_colmap = obs * np.array([-1.0, 1.0])
    rec = pycolmap.Reconstruction()
    order = np.argsort(ci, kind="stable")
    starts = np.searchsorted(ci[order], np.arange(n_cam + 1))
    keypoint = np.empty(n_obs, np.int64)
    for c in range(n_cam):
        sel = order[starts[c]:starts[c + 1]]
        keypoint[sel] = np.arange(len(sel))
        rec.add_camera_with_trivial_rig(pycolmap.Camera(
            camera_id=c + 1, model="RADIAL", width=2, height=2,
            params=[cameras[c, 6], 0.0, 0.0, cameras[c, 7], cameras[c, 8]]))
        image = pycolmap.Image(name=str(c), keypoints=obs_colmap[sel], camera_id=c + 1, image_id=c + 1)
        pose = pycolmap.Rigid3d(pycolmap.Rotation3d(quats[c]), _F * cameras[c, 3:6])
        rec.add_image_with_trivial_frame(image, pose)
    porder = np.argsort(pi, kind="stable")
    pstarts = np.searchsorted(pi[porder], np.arange(n_pt + 1))
    point_ids = np.empty(n_pt, np.int64)
    for j in range(n_pt):
        track = pycolmap.Track()
        for o in porder[pstarts[j]:pstarts[j + 1]]:
            if not in_python[o]:
                track.add_element(int(ci[o]) + 1, int(keypoint[o]))
        point_ids[j] = rec.add_point3D(points[j], track)

    options = pycolmap.BundleAdjustmentOptions()
    options.print_summary = False
    options.refine_focal_length = True
    options.refine_extra_params = True
    options.refine_principal_point = False
    options.ceres.loss_function_type = loss_type
    options.ceres.loss_function_scale = loss_scale
    config = pycolmap.BundleAdjustmentConfig()
    for c in range(n_cam):
        config.add_image(c + 1)
    adjuster = pycolmap.create_default_ceres_bundle_adjuster(options, config, rec)
    problem = adjuster.problem

    # Views onto the reconstruction's storage: the very parameter blocks COLMAP registered.
    pts3d, frames, cams = rec.points3D, rec.frames, rec.cameras
    point_blocks, keep_alive = {}, []
    for o in np.flatnonzero(in_python):
        c, j = int(ci[o]), int(pi[o])
        xyz = point_blocks.setdefault(j, pts3d[int(point_ids[j])].xyz)
        pose = frames[c + 1].rig_from_world.params
        intr = cams[c + 1].params
        if not problem.has_parameter_block(pose):  # every observation of this camera is behind it
            raise NotImplementedError(
                f"camera {c}: all its observations are behind it, and pyceres has no product manifold "
                "for COLMAP's quaternion+translation block (COLMAP sets one only with a C++ observation)")
        fresh_intrinsics = not problem.has_parameter_block(intr)
        keep_alive.append(_bal_cost_function(pyceres, obs_colmap[o].copy()))
        problem.add_residual_block(keep_alive[-1], loss_py, [xyz, pose, intr])
        if fresh_intrinsics:  # unreachable given the check above; kept for the principal point
            problem.set_manifold(intr, pyceres.SubsetManifold(5, [1, 2]))

    solver = pyceres.SolverOptions()
    solver.minimizer_type = pyceres.MinimizerType.TRUST_REGION
    solver.trust_region_strategy_type = pyceres.TrustRegionStrategyType.LEVENBERG_MARQUARDT
    solver.linear_solver_type = solver_type
    solver.function_tolerance = 1e-6
    solver.max_num_iterations = int(max_iterations)
    solver.num_threads = int(num_threads)
    solver.minimizer_progress_to_stdout = False
    solver.logging_type = pyceres.LoggingType.SILENT
    summary = pyceres.SolverSummary()
    start = time.perf_counter()
    pyceres.solve(solver, problem, summary)
    seconds = time.perf_counter() - start

    out_cams = np.empty_like(cameras)
    q_out = np.empty((n_cam, 4))
    for c in range(n_cam):
        params = np.asarray(frames[c + 1].rig_from_world.params)
        q_out[c] = params[:4]
        out_cams[c, 3:6] = _F * params[4:7]
        intr = np.asarray(cams[c + 1].params)
        out_cams[c, 6], out_cams[c, 7], out_cams[c, 8] = intr[0], intr[3], intr[4]
    out_cams[:, :3] = _quat_to_aa(_quat_mul(_Q_FLIP, q_out))
    out_pts = np.stack([np.asarray(pts3d[int(point_ids[j])].xyz) for j in range(n_pt)]) if n_pt else points.copy()
    return {
        "seconds": seconds,
        "initial_cost": float(summary.initial_cost),
        "final_cost": float(summary.final_cost),
        "iterations": int(summary.num_successful_steps + summary.num_unsuccessful_steps - 1),
        "successful_steps": int(summary.num_successful_steps - 1),
        "termination": summary.message,
        "cameras": out_cams,
        "points": out_pts,
    }

