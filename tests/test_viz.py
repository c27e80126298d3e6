"""slam.viz: matplotlib plots and Open3D geometry, PLY export and headless render.

Images are checked by reading the PNG back and looking for pixels of each drawn colour;
a negative control shows the check fails when a colour was not drawn.  The palette, 3D scaling,
vector formats and the bundle-adjustment figure are tested in ``test_viz_style.py``.
"""

import math
import sys

import numpy as np
import pytest
import torch

from liegeo import SE2, SE3, SO3
from slam import viz
from slam.viz import open3d_view, plot

pytest.importorskip("matplotlib")


def _count_color(png, rgb, *, tol=0.08) -> int:
    """Pixels of the PNG within ``tol`` of ``rgb`` in every channel."""
    import matplotlib.colors
    import matplotlib.image

    image = matplotlib.image.imread(str(png))[..., :3].astype(np.float64)
    target = np.asarray(matplotlib.colors.to_rgb(rgb))
    return int(np.all(np.abs(image - target) < tol, axis=-1).sum())


def _has_color(png, rgb, *, tol=0.08, min_pixels=20) -> bool:
    return _count_color(png, rgb, tol=tol) >= min_pixels


def _circle_graph(n=60, three_d=False, z_scale=3.0):
    """Poses on a circle (a helix when ``three_d``), odometry chain plus three loop closures."""
    th = torch.linspace(0, 2 * math.pi, n + 1, dtype=torch.float64)[:-1]
    if three_d:
        t = torch.stack([10 * torch.cos(th), 10 * torch.sin(th), z_scale * th], -1)
        omega = torch.stack([torch.zeros_like(th), 0.1 * torch.sin(th), th + math.pi / 2], -1)
        poses = SE3.from_rotation_translation(SO3.exp(omega), t)
    else:
        poses = SE2.from_xytheta(torch.stack([10 * torch.cos(th), 10 * torch.sin(th), th + math.pi / 2], -1))
    i = torch.cat([torch.arange(n - 1), torch.tensor([0, 10, 20])])
    j = torch.cat([torch.arange(1, n), torch.tensor([n - 10, n - 20, n - 5])])
    return poses, i, j


def _perturbed(poses, scale=0.3):
    g = torch.Generator().manual_seed(0)
    return poses.retract(scale * torch.randn(*poses.shape, poses.tangent_dim, generator=g, dtype=poses.dtype))


# ----------------------------------------------------------------------------- matplotlib


@pytest.mark.parametrize("three_d", [False, True], ids=["se2", "se3"])
def test_plot_trajectories_draws_every_trajectory(tmp_path, three_d):
    poses, i, j = _circle_graph(three_d=three_d)
    path = viz.plot_trajectories(tmp_path / "traj.png", {"initial": _perturbed(poses), "optimized": poses},
                                 edges=(i, j), title="test")
    assert path == tmp_path / "traj.png" and path.stat().st_size > 0
    assert _has_color(path, viz.PALETTE["initial"])  # the labels name their roles: one colour per meaning
    assert _has_color(path, viz.PALETTE["optimized"])
    # Loop closures: grey also appears in the axes and legend, so compare with a plot without edges.
    bare = viz.plot_trajectories(tmp_path / "bare.png", {"initial": _perturbed(poses), "optimized": poses},
                                 title="test")
    grey = [_count_color(p, plot.LOOP_CLOSURE_GREY, tol=0.15) for p in (path, bare)]
    assert grey[0] > grey[1] + 50, grey


def test_plot_color_check_fails_for_an_undrawn_colour(tmp_path):
    poses, _, _ = _circle_graph()
    path = viz.plot_trajectories(tmp_path / "one.png", {"only": poses})
    assert _has_color(path, viz.TRAJECTORY_COLORS[0])
    assert not _has_color(path, viz.TRAJECTORY_COLORS[1])  # the second colour was never drawn


def test_planar_se3_gets_a_top_view(tmp_path):
    helix, _, _ = _circle_graph(three_d=True)
    flat, _, _ = _circle_graph(three_d=True, z_scale=0.0)
    assert not plot._is_planar(plot.pose_arrays(helix)[0])
    assert plot._is_planar(plot.pose_arrays(flat)[0])
    path = viz.plot_trajectories(tmp_path / "flat.png", {"flat": flat})
    assert _has_color(path, viz.TRAJECTORY_COLORS[0])


def test_plot_errors(tmp_path):
    errors = torch.rand(50, generator=torch.Generator().manual_seed(1))
    path = viz.plot_errors(tmp_path / "ate.png", errors, "ATE")
    assert _has_color(path, viz.PALETTE["error"], min_pixels=50)
    assert _has_color(path, viz.PALETTE["rmse"], min_pixels=50)
    assert not _has_color(path, viz.PALETTE["optimized"])


def test_plot_learning_curves_draws_each_run_and_baseline(tmp_path):
    steps = torch.arange(1, 41, dtype=torch.float64)
    curves = {"seed 0": (1 / steps).tolist(), "seed 1": (2 / steps).tolist()}
    path = viz.plot_learning_curves(tmp_path / "curves.png", curves, ylabel="loss", baselines={"fixed": 0.5},
                                    log_scale=True)
    assert _has_color(path, viz.TRAJECTORY_COLORS[0], min_pixels=50)
    assert _has_color(path, viz.TRAJECTORY_COLORS[1], min_pixels=50)
    assert not _has_color(path, viz.TRAJECTORY_COLORS[2])


def test_pose_arrays_lifts_se2():
    poses, _, _ = _circle_graph(n=8)
    positions, rotations = viz.pose_arrays(poses)
    assert positions.shape == (8, 3) and rotations.shape == (8, 3, 3)
    np.testing.assert_allclose(positions[:, 2], 0.0)
    np.testing.assert_allclose(rotations[:, :2, :2], poses.rotation().matrix().numpy())
    np.testing.assert_allclose(rotations[:, 2], np.tile([0.0, 0.0, 1.0], (8, 1)))
    with pytest.raises(ValueError, match="one batch axis"):
        viz.pose_arrays(poses.reshape(2, 4))


# ----------------------------------------------------------------------------- Open3D


@pytest.fixture
def o3d():
    return pytest.importorskip("open3d")


@pytest.mark.parametrize("three_d", [False, True], ids=["se2", "se3"])
def test_graph_geometry(o3d, three_d):
    poses, i, j = _circle_graph(n=40, three_d=three_d)
    lineset, mesh = viz.graph_geometry(poses, i, j, frame_size=0.5)
    positions, rotations = viz.pose_arrays(poses)
    np.testing.assert_allclose(np.asarray(lineset.points), positions)
    np.testing.assert_array_equal(np.asarray(lineset.lines), torch.stack([i, j], 1).numpy())
    colors = np.asarray(lineset.colors)
    odometry = (i - j).abs().numpy() == 1
    assert odometry.sum() == 39 and (~odometry).sum() == 3
    np.testing.assert_array_equal(colors[odometry], np.tile(viz.ODOMETRY_COLOR, (39, 1)))
    np.testing.assert_array_equal(colors[~odometry], np.tile(viz.LOOP_CLOSURE_COLOR, (3, 1)))

    frame = o3d.geometry.TriangleMesh.create_coordinate_frame(size=0.5)
    nv, nt = len(frame.vertices), len(frame.triangles)
    assert len(mesh.vertices) == 40 * nv and len(mesh.triangles) == 40 * nt
    assert len(mesh.vertex_colors) == 40 * nv and len(mesh.vertex_normals) == 40 * nv
    # Frame k is Open3D's own frame moved by pose k.
    k = 17
    transform = np.eye(4)
    transform[:3, :3], transform[:3, 3] = rotations[k], positions[k]
    frame.transform(transform)
    np.testing.assert_allclose(np.asarray(mesh.vertices)[k * nv:(k + 1) * nv], np.asarray(frame.vertices), atol=1e-12)
    np.testing.assert_allclose(np.asarray(mesh.vertex_normals)[k * nv:(k + 1) * nv], np.asarray(frame.vertex_normals),
                               atol=1e-12)
    np.testing.assert_array_equal(np.asarray(mesh.triangles)[k * nt:(k + 1) * nt], np.asarray(frame.triangles) + k * nv)


def test_graph_geometry_subsamples_frames(o3d):
    poses, i, j = _circle_graph(n=500)
    lineset, mesh = viz.graph_geometry(poses, i, j)
    nv = len(o3d.geometry.TriangleMesh.create_coordinate_frame().vertices)
    assert len(lineset.points) == 500 and len(lineset.lines) == len(i)
    assert len(mesh.vertices) == 200 * nv
    _, mesh = viz.graph_geometry(poses, i, j, max_frames=7)
    assert len(mesh.vertices) == 7 * nv
    with pytest.raises(ValueError, match=r"\[0, 500\)"):
        viz.graph_geometry(poses, i, j + 1)


def test_save_ply_round_trip(o3d, tmp_path):
    poses, i, j = _circle_graph(n=30, three_d=True)
    lineset, mesh = viz.graph_geometry(poses, i, j)
    edges_path, frames_path = viz.save_ply(tmp_path / "graph", lineset, mesh)
    assert edges_path == tmp_path / "graph_edges.ply" and frames_path == tmp_path / "graph_frames.ply"
    back = o3d.io.read_line_set(str(edges_path))
    np.testing.assert_allclose(np.asarray(back.points), np.asarray(lineset.points), atol=1e-6)
    np.testing.assert_array_equal(np.asarray(back.lines), np.asarray(lineset.lines))
    np.testing.assert_allclose(np.asarray(back.colors), np.asarray(lineset.colors), atol=1 / 255)
    back_mesh = o3d.io.read_triangle_mesh(str(frames_path))
    assert len(back_mesh.vertices) == len(mesh.vertices) and len(back_mesh.triangles) == len(mesh.triangles)


@pytest.mark.parametrize("three_d", [False, True], ids=["se2", "se3"])
def test_render_png_headless(o3d, tmp_path, three_d):
    poses, i, j = _circle_graph(n=40, three_d=three_d)
    lineset, mesh = viz.graph_geometry(poses, i, j)
    try:
        edges_only = viz.render_png(tmp_path / "edges.png", [lineset], width=480, height=360)
    except viz.RenderError as exc:
        pytest.skip(f"Open3D cannot create a headless window here: {exc}")
    import matplotlib.image

    image = matplotlib.image.imread(str(edges_only))[..., :3]
    assert image.shape == (360, 480, 3)
    assert np.mean(np.all(image > 0.98, axis=-1)) > 0.5  # white background
    assert _has_color(edges_only, viz.LOOP_CLOSURE_COLOR, tol=0.1)  # grey loop closures
    assert _has_color(edges_only, viz.ODOMETRY_COLOR, tol=0.1)  # odometry in the colour of the file's poses
    assert not _has_color(edges_only, (0.0, 1.0, 0.0), tol=0.2)  # no green: only the frames have it
    both = viz.render_png(tmp_path / "both.png", [lineset, mesh], width=480, height=360)
    assert _has_color(both, (0.0, 1.0, 0.0), tol=0.3, min_pixels=5)  # the frames' y axes


def test_missing_open3d_names_the_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "open3d", None)
    with pytest.raises(ImportError, match=r"viz.*extra"):
        open3d_view._open3d()


def test_show_without_display_suggests_png(monkeypatch):
    if not sys.platform.startswith("linux"):
        pytest.skip("the display check applies to Linux")
    monkeypatch.delenv("DISPLAY", raising=False)
    monkeypatch.delenv("WAYLAND_DISPLAY", raising=False)
    with pytest.raises(viz.RenderError, match="--png"):
        viz.show([])


def test_plot_graph_draws_odometry_and_loop_closures(tmp_path):
    poses, i, j = _circle_graph()
    path = viz.plot_graph(tmp_path / "graph.png", poses, i, j, name="circle")
    bare = viz.plot_graph(tmp_path / "chain.png", poses, i[:-3], j[:-3], name="chain")
    assert _has_color(path, viz.PALETTE["initial"], min_pixels=200)
    grey = [_count_color(p, viz.PALETTE["loop_closure"], tol=0.15) for p in (path, bare)]
    assert grey[0] > grey[1] + 50, grey  # the three loop closures
    assert not _has_color(path, viz.PALETTE["optimized"])
