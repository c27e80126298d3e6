"""Pose-graph initialization: exact recovery of noise-free graphs, the translation step's optimality,
disconnected graphs, and agreement with GTSAM's chordal initializer (3D) and LAGO (2D).

What is compared with GTSAM, and why:

* ``InitializePose3`` solves the same chordal relaxation as ``chordal_initialization`` with two
  differences: it weights an edge by ``sqrt(Ω[0, 0])`` (its rotation-first information's whitened
  first unit vector) where we use ``tr(Ω_RR) / 3``, and it holds the anchor through a fictitious node
  whose relaxed 3 x 3 block has a unit-precision prior, a *soft* anchor.  The tests that expect equal
  rotations therefore give our function GTSAM's weights and give GTSAM the information scaled by
  1e-16, which makes its soft anchor hard; the rotations then agree to ~1e-8.  With each library's own
  weighting and anchor, sphere2500's rotations differ by up to 4e-3 rad (7e-5 rad of it from the
  weights), and the tests compare χ² after a few Levenberg-Marquardt iterations instead.
* ``lago.initialize`` estimates 2D rotations differently (angles along a spanning tree with the loop
  closures' 2kπ wrap removed, then linear least squares on the angles) and refines translations and
  angles together in one linear step, so its estimate is a different one; the test compares the
  final χ² after a few LM iterations and bounds the rotation difference loosely.  LAGO accepts only
  diagonal noise models, so it is given the diagonal of intel's information; χ² uses the full one.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from liegeo import SE2, SE3, SO3
from slam.pgo import DisconnectedGraphError, chordal_initialization, odometry_initialization

DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "pose_graph"


# ----------------------------------------------------------------------------------------- helpers


def _initialize(method, group, n, i, j, z, info, **kwargs):
    if method == "chordal":
        return chordal_initialization(group, n, i, j, z, info, **kwargs)
    return odometry_initialization(group, n, i, j, z, **kwargs)


def _random_information(e, d, generator, dtype=torch.float64):
    """Dense SPD information matrices: translation and rotation blocks coupled."""
    a = torch.randn(e, d, d, generator=generator, dtype=dtype)
    return a @ a.transpose(-1, -2) + d * torch.eye(d, dtype=dtype)


def _graph(group, n, loops, generator, noise=0.0):
    """Random truth (Haar rotations), an odometry chain plus random loop closures, and measurements.

    Every fourth chain step is a rotation by an angle in {π, π - 1e-9, π - 1e-6, 3}, so the
    measurements include relative rotations at and next to π.
    """
    truth = group.random(n, generator=generator, dtype=torch.float64)
    at = torch.arange(1, n, 4)
    k = group.tangent_dim - group.point_dim
    axis = torch.randn(len(at), k, generator=generator, dtype=torch.float64)
    angle = torch.tensor([torch.pi, torch.pi - 1e-9, torch.pi - 1e-6, 3.0], dtype=torch.float64).repeat(len(at))
    xi = torch.cat([torch.randn(len(at), group.point_dim, generator=generator, dtype=torch.float64),
                    axis / axis.norm(dim=-1, keepdim=True) * angle[: len(at), None]], dim=-1)
    truth.data[at] = truth[at - 1].compose(group.exp(xi)).data
    i = torch.cat([torch.arange(n - 1), torch.randint(0, n, (loops,), generator=generator)])
    j = torch.cat([torch.arange(1, n), torch.randint(0, n, (loops,), generator=generator)])
    keep = i != j
    i, j = i[keep], j[keep]
    z = truth[i].between(truth[j])
    if noise:
        z = z.retract(noise * torch.randn(len(i), group.tangent_dim, generator=generator, dtype=torch.float64))
    return truth, i, j, z, _random_information(len(i), group.tangent_dim, generator)


def _read_g2o(path):
    """``(group, num_poses, i, j, measurements, information)`` of a g2o file (ids are 0..N-1)."""
    i, j, values, group, n = [], [], [], None, 0
    for line in path.read_text().splitlines():
        tokens = line.split()
        if tokens and tokens[0].startswith("VERTEX"):
            n = max(n, int(tokens[1]) + 1)
        if tokens and tokens[0] in ("EDGE_SE3:QUAT", "EDGE_SE2"):
            group = SE3 if tokens[0] == "EDGE_SE3:QUAT" else SE2
            i.append(int(tokens[1]))
            j.append(int(tokens[2]))
            values.append([float(t) for t in tokens[3:]])
    values = torch.tensor(values, dtype=torch.float64)
    p, d = (7, 6) if group is SE3 else (3, 3)
    upper = torch.zeros(len(values), d, d, dtype=torch.float64)
    rows, cols = torch.triu_indices(d, d)
    upper[:, rows, cols] = values[:, p:]
    info = upper + upper.triu(1).transpose(-1, -2)
    z = SE3(values[:, :7]).normalize() if group is SE3 else SE2.from_xytheta(values[:, :3])
    return group, n, torch.tensor(i), torch.tensor(j), z, info


def _gtsam_pose(gtsam, p):
    if len(p) == 7:
        return gtsam.Pose3(gtsam.Rot3.Quaternion(p[6], p[3], p[4], p[5]), np.asarray(p[:3]))
    return gtsam.Pose2(p[0], p[1], float(np.arctan2(p[3], p[2])))


def _gtsam_values(gtsam, poses):
    values = gtsam.Values()
    for k, p in enumerate(poses.data.double().numpy()):
        values.insert(k, _gtsam_pose(gtsam, p))
    return values


def _gtsam_graph(gtsam, i, j, z, info, *, diagonal=False):
    """BetweenFactors from our arrays plus a tight prior on pose 0 at the identity.

    GTSAM's Pose3 tangent is (ω, v), so the 3D information blocks are swapped.
    """
    graph = gtsam.NonlinearFactorGraph()
    is3d = isinstance(z, SE3)
    perm = [3, 4, 5, 0, 1, 2] if is3d else [0, 1, 2]
    info = info[:, perm][:, :, perm].numpy()
    between = gtsam.BetweenFactorPose3 if is3d else gtsam.BetweenFactorPose2
    for e, p in enumerate(z.data.numpy()):
        model = (gtsam.noiseModel.Diagonal.Precisions(np.diag(info[e])) if diagonal
                 else gtsam.noiseModel.Gaussian.Information(info[e]))
        graph.add(between(int(i[e]), int(j[e]), _gtsam_pose(gtsam, p), model))
    return _add_prior(gtsam, graph, is3d)


def _add_prior(gtsam, graph, is3d):
    d = 6 if is3d else 3
    prior = gtsam.PriorFactorPose3(0, gtsam.Pose3(), gtsam.noiseModel.Isotropic.Sigma(6, 1e-6)) if is3d \
        else gtsam.PriorFactorPose2(0, gtsam.Pose2(), gtsam.noiseModel.Diagonal.Sigmas(np.full(d, 1e-6)))
    graph.add(prior)
    return graph


def _with_gtsam_rotation_weights(info):
    """Information whose rotation block gives our ``tr(Ω_RR)/3`` the weight GTSAM's InitializePose3 uses,
    ``sqrt`` of the first diagonal entry of its rotation-first matrix (our entry (3, 3))."""
    out = info.clone()
    out[:, 3:, 3:] = info[:, 3, 3].sqrt()[:, None, None] * torch.eye(3, dtype=info.dtype)
    return out


def _lm_error(gtsam, graph, values, iterations=5):
    """GTSAM's error (χ²/2) after a few Levenberg-Marquardt iterations."""
    params = gtsam.LevenbergMarquardtParams()
    params.setMaxIterations(iterations)
    return graph.error(gtsam.LevenbergMarquardtOptimizer(graph, values, params).optimize())


def _data(name):
    path = DATA / name
    if not path.exists():
        pytest.skip(f"{path} is missing (the shared pose-graph data set is not installed)")
    return path


# ------------------------------------------------------------------------------- synthetic graphs


@pytest.mark.parametrize("method", ["chordal", "odometry"])
@pytest.mark.parametrize("group", [SE2, SE3])
def test_noise_free_graph_is_recovered_exactly(group, method, generator):
    n, anchor = 60, 7
    truth, i, j, z, info = _graph(group, n, 40, generator)
    angles = z.rotation().log().norm(dim=-1)
    assert angles.max() > torch.pi - 1e-6  # the graph does hold relative rotations at π

    poses = _initialize(method, group, n, i, j, z, info, anchor=anchor, initial=truth)
    assert type(poses) is group and poses.shape == (n,) and poses.dtype == torch.float64
    assert truth.local(poses).abs().max() < 1e-9

    # Without ``initial`` the anchor is the identity: the truth seen from the anchor.
    at_identity = _initialize(method, group, n, i, j, z, info, anchor=anchor)
    expected = truth[anchor].inverse().expand(n).compose(truth)
    assert expected.local(at_identity).abs().max() < 1e-9
    assert at_identity[anchor].local(group.identity(dtype=torch.float64)).abs().max() < 1e-12


@pytest.mark.parametrize("method", ["chordal", "odometry"])
@pytest.mark.parametrize("group", [SE2, SE3])
def test_float32_in_float32_out(group, method, generator):
    n = 30
    truth, i, j, z, info = _graph(group, n, 20, generator)
    poses = _initialize(method, group, n, i, j, z.to(dtype=torch.float32), info.float(), anchor=3,
                        initial=truth.to(dtype=torch.float32))
    assert poses.dtype == torch.float32
    assert truth.local(poses.to(dtype=torch.float64)).abs().max() < 1e-4


def test_odometry_long_chain_anchored_in_the_middle(generator):
    """A 3,000-pose chain, half of it walked against the edge direction (measurement inverses)."""
    n = 3000
    truth = SE2.random(n, generator=generator, dtype=torch.float64)
    i, j = torch.arange(n - 1), torch.arange(1, n)
    poses = odometry_initialization(SE2, n, i, j, truth[i].between(truth[j]), anchor=n // 2, initial=truth)
    assert truth.local(poses).abs().max() < 1e-9


def test_single_pose_without_edges():
    empty = SE3.identity(0, dtype=torch.float64)
    none = torch.zeros(0, dtype=torch.int64)
    for method in ("chordal", "odometry"):
        poses = _initialize(method, SE3, 1, none, none, empty, torch.zeros(0, 6, 6, dtype=torch.float64))
        assert poses.shape == (1,) and torch.equal(poses.data, SE3.identity(1, dtype=torch.float64).data)


@pytest.mark.parametrize("group", [SE2, SE3])
def test_chordal_translations_minimize_chi2_for_their_rotations(group, generator):
    """Step 3 is the exact minimizer of Σ eᵀΩe over the translations (coupled Ω blocks included)."""
    n = 40
    _, i, j, z, info = _graph(group, n, 30, generator, noise=0.1)
    poses = chordal_initialization(group, n, i, j, z, info)
    rotation = poses.data[:, group.point_dim:]

    def chi2_gradient(t):
        t = t.clone().requires_grad_(True)
        x = group(torch.cat([t, rotation], dim=-1))
        e = z.local(x[i].between(x[j]))
        return torch.autograd.grad(torch.einsum("ea,eab,eb->", e, info, e), t)[0]

    t = poses.translation()
    assert chi2_gradient(t).abs().max() < 1e-9
    assert chi2_gradient(t + 0.01 * torch.randn(t.shape, generator=generator, dtype=t.dtype)).abs().max() > 1e-2


@pytest.mark.parametrize("method", ["chordal", "odometry"])
def test_disconnected_graph_names_its_components(method):
    # Components {0..6}, {7, 8, 9}, {10, 11} and the lone pose 12; the anchor (8) is in the second.
    i = torch.tensor([0, 1, 2, 3, 4, 5, 7, 8, 10])
    j = torch.tensor([1, 2, 3, 4, 5, 6, 8, 9, 11])
    z = SE2.identity(len(i), dtype=torch.float64)
    info = torch.eye(3, dtype=torch.float64).expand(len(i), 3, 3)
    with pytest.raises(DisconnectedGraphError) as raised:
        _initialize(method, SE2, 13, i, j, z, info, anchor=8)
    err = raised.value
    assert isinstance(err, ValueError) and err.num_components == 4
    assert err.labels.tolist() == [1] * 7 + [0] * 3 + [2] * 2 + [3]
    message = str(err)
    assert "4 connected components" in message and "anchor 8" in message
    assert "{7, 8, 9} (3 poses)" in message and "{0, 1, 2, 3, 4, ...} (7 poses)" in message
    assert "{10, 11} (2 poses)" in message and "{12} (1 pose)" in message

    # Many components: a few are listed, the rest counted.
    with pytest.raises(DisconnectedGraphError, match=r"19 connected components.*\{0, 1\}.*and 14 more"):
        _initialize(method, SE2, 20, i[:1], j[:1], z[:1], info[:1])


def test_bad_arguments_are_rejected():
    z = SE3.identity(2, dtype=torch.float64)
    i, j = torch.tensor([0, 1]), torch.tensor([1, 2])
    info = torch.eye(6, dtype=torch.float64).expand(2, 6, 6)
    with pytest.raises(TypeError):
        chordal_initialization(SO3, 3, i, j, z, info)
    with pytest.raises(TypeError):
        odometry_initialization(SE2, 3, i, j, z)
    with pytest.raises(ValueError, match="endpoints"):
        odometry_initialization(SE3, 2, i, j, z)
    with pytest.raises(ValueError, match="information"):
        chordal_initialization(SE3, 3, i, j, z, info[:, :3, :3])
    with pytest.raises(ValueError, match="positive trace"):
        chordal_initialization(SE3, 3, i, j, z, torch.zeros(2, 6, 6, dtype=torch.float64))


# ------------------------------------------------------------------------------------ against GTSAM


def test_chordal_rotations_equal_gtsam_on_a_random_se3_graph(generator):
    gtsam = pytest.importorskip("gtsam")
    n = 60
    _, i, j, z, info = _graph(SE3, n, 40, generator, noise=0.1)
    ours = chordal_initialization(SE3, n, i, j, z, _with_gtsam_rotation_weights(info)).rotation().matrix()
    rotations = gtsam.InitializePose3.initializeOrientations(_gtsam_graph(gtsam, i, j, z, 1e-16 * info))
    expected = np.stack([rotations.atRot3(k).matrix() for k in range(n)])
    assert np.abs(ours.numpy() - expected).max() < 1e-6


def test_chordal_on_sphere2500_against_gtsam():
    gtsam = pytest.importorskip("gtsam")
    path = _data("sphere2500.g2o")
    group, n, i, j, z, info = _read_g2o(path)
    assert group is SE3 and (n, len(i)) == (2500, 4949)

    # The same problem (GTSAM's weights, hard anchor): the same rotations.
    ours = chordal_initialization(SE3, n, i, j, z, _with_gtsam_rotation_weights(info)).rotation().matrix()
    rotations = gtsam.InitializePose3.initializeOrientations(_gtsam_graph(gtsam, i, j, z, 1e-16 * info))
    expected = np.stack([rotations.atRot3(k).matrix() for k in range(n)])
    assert np.abs(ours.numpy() - expected).max() < 1e-6

    # Each with its own weights and anchor, on GTSAM's own reading of the file: nearby rotations, and the
    # same optimum after a few LM steps from either initialization.
    graph, initial = gtsam.readG2o(str(path), True)
    assert graph.size() == len(i) and initial.size() == n
    graph = _add_prior(gtsam, graph, True)
    poses = chordal_initialization(SE3, n, i, j, z, info)
    rotations = gtsam.InitializePose3.initializeOrientations(graph)
    their_rotations = SO3.from_matrix(torch.from_numpy(np.stack([rotations.atRot3(k).matrix() for k in range(n)])))
    assert their_rotations.local(poses.rotation()).norm(dim=-1).max() < 1e-2  # measured 4e-3 rad
    theirs = gtsam.InitializePose3.initialize(graph)  # the rotations above, then one Gauss-Newton step on poses
    ours_error, their_error = graph.error(_gtsam_values(gtsam, poses)), graph.error(theirs)
    assert ours_error < graph.error(initial) / 100 and their_error < graph.error(initial) / 100
    assert _lm_error(gtsam, graph, _gtsam_values(gtsam, poses)) == pytest.approx(
        _lm_error(gtsam, graph, theirs), rel=1e-6)


def test_chordal_on_intel_against_lago():
    gtsam = pytest.importorskip("gtsam")
    path = _data("intel.g2o")
    group, n, i, j, z, info = _read_g2o(path)
    assert group is SE2
    graph, initial = gtsam.readG2o(str(path), False)
    assert graph.size() == len(i) and initial.size() == n
    graph = _add_prior(gtsam, graph, False)

    poses = chordal_initialization(SE2, n, i, j, z, info)
    lago = gtsam.lago.initialize(_gtsam_graph(gtsam, i, j, z, info, diagonal=True))
    their_angle = torch.tensor([lago.atPose2(k).theta() for k in range(n)], dtype=torch.float64)
    difference = torch.remainder(poses.rotation().angle() - their_angle + torch.pi, 2 * torch.pi) - torch.pi
    assert difference.abs().max() < 0.05  # two different estimators; measured 0.027 rad

    ours_error = graph.error(_gtsam_values(gtsam, poses))
    odometry = odometry_initialization(SE2, n, i, j, z)
    assert ours_error < graph.error(_gtsam_values(gtsam, odometry)) / 5
    assert _lm_error(gtsam, graph, _gtsam_values(gtsam, poses)) == pytest.approx(
        _lm_error(gtsam, graph, lago), rel=1e-6)
