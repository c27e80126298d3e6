"""slam.viz.style and the figures built on it: one palette read by every plot when it draws, equal
3D scaling from the data's extents, vector output by suffix, the bundle-adjustment figure, and
distinct colours for the file's guess, a computed start and the optimum.

Figures are inspected through their artists: ``Figure.savefig`` is wrapped so each test gets the
figures that were saved, and the colours of every line, collection and patch are read back.
"""

import math

import numpy as np
import pytest
import torch

pytest.importorskip("matplotlib")

import slam.cli  # noqa: E402
from liegeo import SE2, SE3, SO3  # noqa: E402
from slam import viz  # noqa: E402
from slam.ba import optimize as ba_optimize  # noqa: E402
from slam.ba import synthetic_bal  # noqa: E402
from slam.io import Trajectory, write_bal, write_g2o, write_tum  # noqa: E402
from slam.viz import ba_plot, eval_plot, plot, style  # noqa: E402


@pytest.fixture
def figures(monkeypatch):
    """The figures saved during the test, in order."""
    from matplotlib.figure import Figure

    saved = []
    original = Figure.savefig

    def savefig(self, *args, **kwargs):
        saved.append(self)
        return original(self, *args, **kwargs)

    monkeypatch.setattr(Figure, "savefig", savefig)
    return saved


def _hex_colors(value) -> set[str]:
    import matplotlib.colors as mc

    if value is None or (isinstance(value, str) and value == "none"):
        return set()
    try:
        rgba = mc.to_rgba_array(value)
    except (ValueError, TypeError):
        return set()
    return {mc.to_hex(c[:3]) for c in np.atleast_2d(rgba) if c.size}


def _artist_colors(fig) -> set[str]:
    """Every colour a line, collection or patch of ``fig``'s axes is drawn in (``#rrggbb``)."""
    out: set[str] = set()
    for ax in fig.axes:
        for artist in ax.get_children():
            for getter in ("get_color", "get_edgecolor", "get_facecolor"):
                if getter == "get_facecolor" and getattr(artist, "get_fill", lambda: True)() is False:
                    continue  # an unfilled patch (a histogram's steps) draws no face
                method = getattr(artist, getter, None)
                if method is None:
                    continue
                try:
                    out |= _hex_colors(method())
                except (AttributeError, TypeError, ValueError):
                    continue
    return out


def _circle(n=60, three_d=False, scale=(10.0, 10.0, 3.0)):
    th = torch.linspace(0, 2 * math.pi, n + 1, dtype=torch.float64)[:-1]
    if three_d:
        t = torch.stack([scale[0] * torch.cos(th), scale[1] * torch.sin(th), scale[2] * th], -1)
        poses = SE3.from_rotation_translation(SO3.exp(torch.stack([0 * th, 0 * th, th], -1)), t)
    else:
        poses = SE2.from_xytheta(torch.stack([10 * torch.cos(th), 10 * torch.sin(th), th + math.pi / 2], -1))
    i = torch.cat([torch.arange(n - 1), torch.tensor([0, n // 6, n // 3])])  # odometry, then three loop closures
    j = torch.cat([torch.arange(1, n), torch.tensor([n - 2, n // 2 + n // 6, n - 3])])
    return poses, i, j


def _moved(poses, scale=0.3, seed=0):
    g = torch.Generator().manual_seed(seed)
    return poses.retract(scale * torch.randn(*poses.shape, poses.tangent_dim, generator=g, dtype=poses.dtype))


UNUSUAL = {role: f"#{(37 * k + 11) % 256:02x}{(91 * k + 3) % 256:02x}{(53 * k + 29) % 256:02x}"
           for k, role in enumerate(style.PALETTE)}
"""A colour per role that no default uses, to patch the palette with."""


@pytest.fixture
def patched(monkeypatch):
    assert not set(UNUSUAL.values()) & set(style.PALETTE.values()) and len(set(UNUSUAL.values())) == len(UNUSUAL)
    for role, value in UNUSUAL.items():
        monkeypatch.setitem(style.PALETTE, role, value)
    return UNUSUAL


# ----------------------------------------------------------------------------- the palette


def test_palette_gives_every_meaning_its_own_colour():
    values = list(style.PALETTE.values())
    assert len(set(values)) == len(values)
    for role in ("reference", "initial", "start", "optimized", "loop_closure", "error", "camera"):
        assert role in style.PALETTE
    assert not set(style.SERIES) & set(values)  # series without a meaning never look like one
    assert style.rgb("optimized") == pytest.approx((0x1F / 255, 0x77 / 255, 0xB4 / 255))
    with pytest.raises(ValueError, match="unknown colour role"):
        style.color("nonsense")
    assert [style.role_of(x) for x in ("initial (file)", "chordal start", "odometry start", "optimized",
                                       "reference", "seed 0")] == ["initial", "start", "start", "optimized",
                                                                   "reference", None]


def test_every_plot_reads_the_palette_when_it_draws(tmp_path, figures, patched):
    poses, i, j = _circle()
    viz.plot_trajectories(tmp_path / "t.png", {"initial (file)": _moved(poses), "chordal start": _moved(poses, 0.1),
                                               "optimized": poses, "reference": _moved(poses, 0.05, seed=3)},
                          edges=(i, j))
    viz.plot_graph(tmp_path / "g.png", poses, i, j, name="circle")
    viz.plot_errors(tmp_path / "e.png", torch.rand(30, dtype=torch.float64))
    viz.plot_learning_curves(tmp_path / "l.png", {"a": [3.0, 2.0, 1.0]}, ylabel="loss", baselines={"fixed": 1.5})
    problem, _ = synthetic_bal(3, 20, seed=1)
    viz.plot_bundle_adjustment(tmp_path / "b.png", problem, _moved_problem(problem))
    viz.plot_scene(tmp_path / "s.png", problem.points, problem.poses())
    eval_plot.plot_evaluation(tmp_path / "v.png", *_evaluation(tmp_path))
    expected = [("initial", "start", "optimized", "reference", "loop_closure"), ("initial", "loop_closure"),
                ("error", "rmse"), ("baseline",), ("initial", "optimized"), ("optimized", "camera"),
                ("reference", "optimized", "error", "rmse", "median", "mean")]
    assert len(figures) == len(expected)
    for fig, roles in zip(figures, expected):
        colors = _artist_colors(fig)
        for role in roles:
            assert patched[role] in colors, (fig.axes[0].get_title(), role)
        unused = set(patched) - set(roles)
        assert not {patched[r] for r in unused} & colors, roles  # nothing else takes a meaning's colour
    # The same test fails for a figure that kept a colour of its own:
    assert "#1f77b4" not in set().union(*(_artist_colors(f) for f in figures))


def test_open3d_geometry_reads_the_palette(patched):
    pytest.importorskip("open3d")
    poses, i, j = _circle(n=20)
    lineset, _ = viz.graph_geometry(poses, i, j)
    colors = np.asarray(lineset.colors)
    odometry = (i - j).abs().numpy() == 1
    np.testing.assert_allclose(colors[odometry], np.tile(style.rgb("initial"), (int(odometry.sum()), 1)))
    np.testing.assert_allclose(colors[~odometry], np.tile(style.rgb("loop_closure"), (int((~odometry).sum()), 1)))
    assert style.rgb("initial") != viz.ODOMETRY_COLOR  # the patched palette, not the constant of import time


def test_file_guess_start_and_optimum_get_three_distinct_colours(tmp_path, figures):
    poses, i, j = _circle()
    trajectories = {"initial (file)": _moved(poses, 0.5), "chordal start": _moved(poses, 0.1), "optimized": poses}
    path = viz.plot_trajectories(tmp_path / "three.png", trajectories, edges=(i, j))
    lines = {line.get_label(): line.get_color() for line in figures[-1].axes[0].get_lines()}
    assert lines == {"initial (file)": style.PALETTE["initial"], "chordal start": style.PALETTE["start"],
                     "optimized": style.PALETTE["optimized"]}
    assert len(set(lines.values())) == 3
    import matplotlib.colors
    import matplotlib.image

    image = matplotlib.image.imread(str(path))[..., :3]
    for color in lines.values():
        assert np.all(np.abs(image - matplotlib.colors.to_rgb(color)) < 0.08, axis=-1).sum() > 50, color
    # Explicit roles win over the label's words; a label without a role takes a series colour.
    viz.plot_trajectories(tmp_path / "roles.png", {"run A": poses, "odd": _moved(poses)}, roles={"run A": "reference"})
    lines = {line.get_label(): line for line in figures[-1].axes[0].get_lines()}
    assert lines["run A"].get_color() == style.PALETTE["reference"] and lines["run A"].get_linestyle() == "--"
    assert lines["odd"].get_color() == style.SERIES[0]
    with pytest.raises(ValueError, match="unknown colour role"):
        viz.plot_trajectories(tmp_path / "bad.png", {"x": poses}, roles={"x": "purple"})


# ----------------------------------------------------------------------------- 3D scaling


def _limits(ax) -> np.ndarray:
    return np.array([ax.get_xlim3d(), ax.get_ylim3d(), ax.get_zlim3d()])


@pytest.mark.parametrize("scale", [(10.0, 4.0, 6.0 / (2 * math.pi)), (10.0, 10.0, 0.05)], ids=["helix", "nearly-flat"])
def test_3d_axes_have_one_scale_from_the_data(tmp_path, figures, scale):
    poses, i, j = _circle(three_d=True, scale=scale)
    viz.plot_trajectories(tmp_path / "h.png", {"optimized": poses}, edges=(i, j))
    ax = figures[-1].axes[0]
    assert ax.name == "3d"
    limits = _limits(ax)
    ranges = limits[:, 1] - limits[:, 0]
    box = np.asarray(ax._box_aspect)  # matplotlib's stored box (z vertical: no roll)
    np.testing.assert_allclose(box / box[0], ranges / ranges[0], rtol=1e-9)  # a metre is as long on every axis
    xyz = viz.pose_arrays(poses)[0]
    assert np.all(limits[:, 0] <= xyz.min(0)) and np.all(limits[:, 1] >= xyz.max(0))  # nothing cut off
    assert ranges.min() >= 0.2 * ranges.max() - 1e-9  # a thin axis gets more range, not a squashed box
    data = np.ptp(xyz, axis=0)
    if data.min() > 0.2 * data.max():
        np.testing.assert_allclose(ranges, data + 0.06 * data.max(), rtol=1e-9)  # the data's extents, padded 3%


def test_equal_axes_3d_after_a_turned_view(figures, tmp_path):
    problem, _ = synthetic_bal(4, 60, seed=2)
    viz.plot_scene(tmp_path / "scene.png", problem.points, problem.poses())
    ax = figures[-1].axes[0]
    ranges = np.ptp(_limits(ax), axis=1)
    box = np.asarray(ax._roll_to_vertical(ax._box_aspect))  # back to x, y, z order
    np.testing.assert_allclose(box / box.sum(), ranges / ranges.sum(), rtol=1e-9)


# ----------------------------------------------------------------------------- vector formats


def _every_figure(tmp_path):
    """Name -> a function of the output path that draws that figure."""
    poses, i, j = _circle()
    problem, _ = synthetic_bal(3, 20, seed=1)
    evaluation = _evaluation(tmp_path)
    return {
        "trajectories": lambda p: viz.plot_trajectories(p, {"initial": _moved(poses), "optimized": poses},
                                                        edges=(i, j)),
        "graph": lambda p: viz.plot_graph(p, poses, i, j, name="circle"),
        "errors": lambda p: viz.plot_errors(p, torch.rand(20, dtype=torch.float64)),
        "learning": lambda p: viz.plot_learning_curves(p, {"a": [2.0, 1.0]}, ylabel="loss"),
        "scene": lambda p: viz.plot_scene(p, problem.points, problem.poses()),
        "ba": lambda p: viz.plot_bundle_adjustment(p, problem, _moved_problem(problem)),
        "eval": lambda p: eval_plot.plot_evaluation(p, *evaluation),
    }


@pytest.mark.parametrize("suffix", [".pdf", ".svg", ".png"])
def test_each_figure_is_written_in_the_format_of_its_suffix(tmp_path, suffix):
    for name, draw in _every_figure(tmp_path).items():
        path = tmp_path / f"{name}{suffix}"
        assert draw(path) == path
        data = path.read_bytes()
        kind = {".pdf": data[:5] == b"%PDF-", ".svg": b"<svg" in data[:4000], ".png": data[:8] == b"\x89PNG\r\n\x1a\n"}
        assert kind[suffix], (name, data[:40])
        if suffix == ".svg":
            assert data.count(b"<path") > 10  # lines and text are vector paths, not one embedded picture
            assert data.count(b"<image") <= 2  # at most the point clouds are pixels


def test_open3d_render_refuses_vector_formats(tmp_path):
    for name in ("graph.pdf", "graph.svg"):
        with pytest.raises(ValueError, match="raster images only"):
            viz.render_png(tmp_path / name, [])
    assert list(tmp_path.iterdir()) == []


def test_cli_view_draws_vector_files_with_title_and_legend(tmp_path, figures, capsys):
    poses, i, j = _circle(n=30, three_d=True)
    source = tmp_path / "helix.g2o"
    _write_graph(source, poses, i, j)
    for suffix in (".svg", ".pdf", ".png"):
        out = tmp_path / f"view{suffix}"
        assert slam.cli.main(["-q", "view", str(source), "--png", str(out)]) == 0, capsys.readouterr().err
        assert out.stat().st_size > 0
    assert out.read_bytes()[:4] == b"\x89PNG"
    assert (tmp_path / "view.svg").read_bytes().find(b"<svg") >= 0
    assert (tmp_path / "view.pdf").read_bytes()[:5] == b"%PDF-"
    fig = figures[-1]
    ax = fig.axes[0]
    assert ax.get_title() == "helix.g2o: 30 poses, 32 edges (3 loop closures)"
    assert ax.get_xlabel() == "x (m)" and ax.get_zlabel() == "z (m)"
    labels = [t.get_text() for t in fig.legends[0].get_texts()]
    assert labels == ["loop closures (3)", "odometry edges (29)", "first pose"]


def _write_graph(path, poses, i, j):
    from slam.pgo import PoseGraph

    n, e = poses.shape[0], i.numel()
    graph = PoseGraph(group=SE3, ids=torch.arange(n), poses=poses, i=i, j=j,
                      measurements=poses[i].inverse().compose(poses[j]),
                      information=torch.eye(6, dtype=torch.float64).expand(e, 6, 6).clone(), fixed=torch.tensor([0]))
    write_g2o(path, graph)


# ----------------------------------------------------------------------------- bundle adjustment


def _moved_problem(problem):
    """``problem`` with its points moved a little (an 'after' that differs from 'before')."""
    import dataclasses

    g = torch.Generator().manual_seed(4)
    return dataclasses.replace(problem, points=problem.points + 0.01 * torch.randn(problem.points.shape, generator=g,
                                                                                     dtype=torch.float64))


def test_ba_figure_has_both_panels_and_counts_every_observation(tmp_path, figures):
    problem, _ = synthetic_bal(5, 80, seed=3)
    after = ba_optimize(problem, max_iterations=10).problem
    path = viz.plot_bundle_adjustment(tmp_path / "ba.png", problem, after, title="synthetic")
    assert path.read_bytes()[:4] == b"\x89PNG"
    fig = figures[-1]
    scene, hist = fig.axes
    assert scene.name == "3d" and hist.name == "rectilinear"
    from matplotlib.patches import StepPatch

    steps = [p for p in hist.patches if isinstance(p, StepPatch)]
    assert len(steps) == 2
    for step, state in zip(steps, (problem, after)):
        values, edges, _ = step.get_data()
        assert int(values.sum()) == state.num_observations == 400
        errors = ba_plot.reprojection_errors(state)
        np.testing.assert_allclose(errors, state.residuals().norm(dim=-1).numpy())
        assert edges[0] <= errors.min() * (1 + 1e-12) and edges[-1] >= errors.max() * (1 - 1e-12)
    assert [s.get_edgecolor()[:3] for s in steps] == [pytest.approx(style.rgb("initial")),
                                                      pytest.approx(style.rgb("optimized"))]
    labels = [t.get_text() for t in hist.get_legend().get_texts()]
    e0, e1 = (ba_plot.reprojection_errors(s) for s in (problem, after))
    assert labels[0].startswith(f"before: median {np.median(e0):.3g} px, RMS {np.sqrt(np.mean(e0 ** 2)):.3g} px")
    assert labels[1].startswith(f"after: median {np.median(e1):.3g} px, RMS {np.sqrt(np.mean(e1 ** 2)):.3g} px")
    assert hist.get_xlabel().startswith("reprojection error") and "pixels" in hist.get_xlabel()
    # The 3D panel: the points and one frustum (8 segments) per camera, for both states.
    from mpl_toolkits.mplot3d.art3d import Line3DCollection

    frusta = [c for c in scene.collections if isinstance(c, Line3DCollection)]
    assert [len(c.get_segments()) for c in frusta] == [8 * 5, 8 * 5]
    assert fig.get_suptitle() == "synthetic"


def test_ba_frusta_sit_on_the_camera_centres_and_look_down_minus_z():
    problem, _ = synthetic_bal(4, 30, seed=6)
    segments = ba_plot.camera_frusta(problem, depth=0.5)  # (C, 8, 2, 3)
    assert segments.shape == (4, 8, 2, 3)
    rotation = SO3.exp(problem.cameras[:, :3]).matrix().numpy()
    t = problem.cameras[:, 3:6].numpy()
    centre = -np.einsum("cba,cb->ca", rotation, t)  # -Rᵀ t
    np.testing.assert_allclose(segments[:, :4, 0], np.repeat(centre[:, None], 4, axis=1), atol=1e-12)
    corners = segments[:, :4, 1]
    in_camera = np.einsum("cab,ckb->cka", rotation, corners) + t[:, None]  # R X + t
    np.testing.assert_allclose(in_camera[..., 2], -0.5, atol=1e-12)  # in front: BAL cameras look down -z
    # The image-plane rectangle holds every observed pixel direction of its camera.
    f = problem.cameras[:, 6].numpy()
    for c in range(4):
        seen = problem.observations[problem.camera_index == c].abs().numpy()
        np.testing.assert_allclose(np.abs(in_camera[c, :, :2]).max(0), seen.max(0) / f[c] * 0.5, rtol=1e-12)
    sides = segments[:, 4:]
    np.testing.assert_allclose(sides[:, :, 0], corners, atol=0)
    np.testing.assert_allclose(sides[:, :, 1], np.roll(corners, -1, axis=1), atol=0)


def test_ba_figure_refuses_problems_of_different_sizes(tmp_path):
    a, _ = synthetic_bal(3, 20, seed=1)
    b, _ = synthetic_bal(3, 21, seed=1)
    with pytest.raises(ValueError, match="differ in size"):
        viz.plot_bundle_adjustment(tmp_path / "x.png", a, b)


def test_cli_ba_writes_the_before_after_figure(tmp_path, figures, capsys):
    import json

    problem, _ = synthetic_bal(4, 40, seed=5)
    source = write_bal(tmp_path / "scene.txt", problem)
    code = slam.cli.main(["-q", "ba", str(source), "--output-dir", str(tmp_path / "out"),
                          "--plot", str(tmp_path / "ba.svg")])
    assert code == 0, capsys.readouterr().err
    assert b"<svg" in (tmp_path / "ba.svg").read_bytes()[:4000]
    summary = json.loads((tmp_path / "out" / "scene.json").read_text())
    assert summary["outputs"]["plot"] == str(tmp_path / "ba.svg")
    fig = figures[-1]
    assert len(fig.axes) == 2 and "scene.txt" in fig.get_suptitle()
    # By default it goes beside the other outputs.
    assert slam.cli.main(["-q", "ba", str(source), "--output-dir", str(tmp_path / "out2")]) == 0
    assert (tmp_path / "out2" / "scene_before_after.png").read_bytes()[:4] == b"\x89PNG"


# ----------------------------------------------------------------------------- helpers


def _evaluation(tmp_path):
    from slam.metrics import evaluate

    n = 40
    th = torch.linspace(0, 3, n, dtype=torch.float64)
    ref = SE3.from_rotation_translation(SO3.exp(torch.stack([0 * th, 0 * th, th], -1)),
                                        torch.stack([5 * torch.cos(th), 5 * torch.sin(th), 0.3 * th], -1))
    est = _moved(ref, 0.05, seed=8)
    stamps = torch.arange(n, dtype=torch.float64)
    write_tum(tmp_path / "ref_eval.tum", Trajectory(stamps, ref))
    write_tum(tmp_path / "est_eval.tum", Trajectory(stamps, est))
    result = evaluate(tmp_path / "est_eval.tum", tmp_path / "ref_eval.tum", return_poses=True)
    matched = result.pop("matched")
    return result, matched


def test_plot_module_keeps_its_names():
    assert plot.TRAJECTORY_COLORS == style.SERIES
    assert plot.LOOP_CLOSURE_GREY == style.PALETTE["loop_closure"]
