"""g2o / TORO pose-graph files: reading against GTSAM's reader, exact round trips, and errors that
name the file, the line and the field."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

import slam.cli
from liegeo import SE2, SE3
from slam.io import FormatError, read_g2o, write_g2o
from slam.io.files import OutputPathError
from slam.pgo import DisconnectedGraphError, optimize

from conftest import PACKAGE_DATA, data_file

DATA = Path(__file__).resolve().parents[1] / "data"
GRAPHS = ["tinyGrid3D.g2o", "smallGrid3D.g2o", "intel.g2o", "sphere2500.g2o"]


@pytest.mark.parametrize("name", GRAPHS)
def test_initial_chi2_equals_gtsam(name):
    gtsam = pytest.importorskip("gtsam")
    graph = read_g2o(data_file(name))
    factors, initial = gtsam.readG2o(str(data_file(name)), graph.group is SE3)
    assert graph.chi2() == pytest.approx(2.0 * factors.error(initial), rel=1e-12)
    assert graph.num_edges == factors.size() and graph.num_poses == initial.size()


@pytest.mark.parametrize("name", ["tinyGrid3D.g2o", "intel.g2o"])
def test_write_then_read_gives_the_same_graph(name, tmp_path):
    graph = read_g2o(data_file(name))
    again = read_g2o(write_g2o(tmp_path / name, graph))
    assert torch.equal(again.ids, graph.ids) and torch.equal(again.i, graph.i) and torch.equal(again.j, graph.j)
    assert torch.equal(again.fixed, graph.fixed) and again.group is graph.group
    torch.testing.assert_close(again.information, graph.information, rtol=0, atol=0)
    for a, b in [(again.poses, graph.poses), (again.measurements, graph.measurements)]:
        torch.testing.assert_close(a.local(b), torch.zeros_like(a.local(b)), rtol=0, atol=1e-14)


def test_edges_only_file_is_initialized_from_odometry(tmp_path):
    graph = read_g2o(DATA / "manhattan.g2o")
    assert not graph.has_vertices and graph.num_poses == 3500 and graph.num_edges == 5453
    # the poses chain measurements along a spanning tree: N - 1 edges are met exactly
    exact = graph.errors().abs().amax(-1) < 1e-10
    assert int(exact.sum()) >= graph.num_poses - 1


def test_toro_and_g2o_tags_agree(tmp_path):
    text = ("VERTEX2 0 0 0 0\nVERTEX2 1 1 0 0.1\nVERTEX2 2 2 0.1 0.2\n"
            "EDGE2 0 1 1 0 0.1 10 1 20 30 2 3\nEDGE2 1 2 1 0.1 0.1 10 0 10 10 0 0\nFIX 0\n")
    (tmp_path / "toro.graph").write_text(text)
    toro = read_g2o(tmp_path / "toro.graph")
    # TORO orders the information I11 I12 I22 I33 I13 I23
    expected = torch.tensor([[10.0, 1, 2], [1, 20, 3], [2, 3, 30]], dtype=torch.float64)
    torch.testing.assert_close(toro.information[0], expected)
    g2o = read_g2o(write_g2o(tmp_path / "same.g2o", toro))
    torch.testing.assert_close(g2o.information, toro.information)


BAD = {
    "unknown tag": ("VERTEX_SE2 0 0 0 0\nVERTEX_XY 1 0 0\n", 2, "unknown tag 'VERTEX_XY'"),
    "field count": ("VERTEX_SE2 0 0 0\n", 1, "needs 4 fields"),
    "non-numeric": ("VERTEX_SE2 0 0 0 0\nVERTEX_SE2 1 1 zero 0\n", 2, "field y is not a number"),
    "nan": ("VERTEX_SE2 0 0 0 0\nVERTEX_SE2 1 1 nan 0\n", 2, "field y is not finite"),
    "bad id": ("VERTEX_SE2 a 0 0 0\n", 1, "field id is not an integer"),
    "missing vertex": ("VERTEX_SE2 0 0 0 0\nVERTEX_SE2 1 1 0 0\nEDGE_SE2 0 7 1 0 0 1 0 0 1 0 1\n", 3,
                       "refers to vertex 7"),
    "not PD": ("VERTEX_SE2 0 0 0 0\nVERTEX_SE2 1 1 0 0\nEDGE_SE2 0 1 1 0 0 1 0 0 -1 0 1\n", 3,
               "not positive definite"),
    "duplicate": ("VERTEX_SE2 0 0 0 0\nVERTEX_SE2 1 0 0 0\nVERTEX_SE2 0 1 0 0\nEDGE_SE2 0 1 1 0 0 1 0 0 1 0 1\n", 3,
                  "vertex 0 already defined on line 1"),
    "self loop": ("VERTEX_SE2 0 0 0 0\nEDGE_SE2 0 0 1 0 0 1 0 0 1 0 1\n", 2, "to itself"),
    "mixed": ("VERTEX_SE2 0 0 0 0\nVERTEX_SE3:QUAT 1 0 0 0 0 0 0 1\n", 2, "is 3D but line 1"),
    "quaternion": ("VERTEX_SE3:QUAT 0 0 0 0 0 0 0 1\nVERTEX_SE3:QUAT 1 0 0 0 0 0 0 2\n"
                   "EDGE_SE3:QUAT 0 1 0 0 0 0 0 0 1 " + " ".join(["1 0 0 0 0 0", "1 0 0 0 0", "1 0 0 0", "1 0 0",
                                                                   "1 0", "1"]) + "\n", 2, "has norm 2"),
    "no edges": ("VERTEX_SE2 0 0 0 0\n", 0, "no edges"),
}


@pytest.mark.parametrize("case", BAD, ids=list(BAD))
def test_bad_input_names_file_line_and_reason(case, tmp_path):
    text, line, reason = BAD[case]
    path = tmp_path / "bad.g2o"
    path.write_text(text)
    with pytest.raises(FormatError) as error:
        read_g2o(path)
    assert error.value.line == line and reason in str(error.value), str(error.value)
    assert str(path) in str(error.value)
    assert path.read_text() == text  # the input is untouched


def test_disconnected_edges_only_graph_names_its_components(tmp_path):
    path = tmp_path / "two.g2o"
    path.write_text("EDGE_SE2 0 1 1 0 0 1 0 0 1 0 1\nEDGE_SE2 5 6 1 0 0 1 0 0 1 0 1\n")
    with pytest.raises(DisconnectedGraphError, match="2"):
        read_g2o(path)


def test_refuses_to_overwrite_the_input(tmp_path):
    path = tmp_path / "g.g2o"
    path.write_text((PACKAGE_DATA / "tinyGrid3D.g2o").read_text())
    graph = read_g2o(path)
    with pytest.raises(OutputPathError, match="is the input"):
        write_g2o(path, graph)


def test_cli_pgo_writes_its_outputs(tmp_path):
    code = slam.cli.main(["-q", "pgo", str(DATA / "smallGrid3D.g2o"), "--output-dir", str(tmp_path)])
    assert code == 0
    summary = json.loads((tmp_path / "smallGrid3D.json").read_text())
    for key in ("initial_chi2", "final_chi2", "iterations", "solve_seconds", "converged", "num_poses", "num_edges"):
        assert key in summary
    assert summary["final_chi2"] < summary["initial_chi2"] and summary["num_poses"] == 125
    again = read_g2o(tmp_path / "smallGrid3D_optimized.g2o")
    assert again.chi2() == pytest.approx(summary["final_chi2"], rel=1e-9)
    assert (tmp_path / "smallGrid3D.png").stat().st_size > 0
    from slam.io import read_tum
    assert len(read_tum(tmp_path / "smallGrid3D_optimized.tum").poses) == 125


@pytest.mark.parametrize("optimizer", ["dogleg", "gn"])
def test_cli_pgo_optimizers_reach_the_lm_optimum(tmp_path, optimizer):
    lm, other = tmp_path / "lm", tmp_path / optimizer
    assert slam.cli.main(["-q", "pgo", str(PACKAGE_DATA / "intel.g2o"), "--output-dir", str(lm)]) == 0
    assert slam.cli.main(["-q", "pgo", str(PACKAGE_DATA / "intel.g2o"), "--optimizer", optimizer, "--output-dir", str(other)]) == 0
    reference = json.loads((lm / "intel.json").read_text())
    summary = json.loads((other / "intel.json").read_text())
    assert summary["converged"] and summary["final_chi2"] == pytest.approx(reference["final_chi2"], rel=1e-6)


def test_cli_reports_bad_input_without_traceback(tmp_path, capsys):
    path = tmp_path / "bad.g2o"
    path.write_text("VERTEX_SE2 0 0 0 0\nVERTEX_SE2 1 1 zero 0\n")
    assert slam.cli.main(["pgo", str(path), "--output-dir", str(tmp_path)]) == 2
    assert f"{path}:2: field y is not a number" in capsys.readouterr().err


def test_se2_graph_uses_se2():
    assert read_g2o(PACKAGE_DATA / "intel.g2o").group is SE2


def test_cli_view_renders_the_graph_headless(tmp_path):
    pytest.importorskip("open3d")
    import matplotlib.image

    from slam.viz.open3d_view import LOOP_CLOSURE_COLOR, ODOMETRY_COLOR

    png = tmp_path / "grid.png"
    assert slam.cli.main(["-q", "view", str(DATA / "smallGrid3D.g2o"), "--png", str(png),
                          "--ply", str(tmp_path / "grid")]) == 0
    pixels = torch.from_numpy(matplotlib.image.imread(png)[..., :3].copy()).reshape(-1, 3).double()
    for colour in (ODOMETRY_COLOR, LOOP_CLOSURE_COLOR):
        distance = (pixels - torch.tensor(colour, dtype=torch.float64)).abs().amax(-1)
        assert int((distance < 0.1).sum()) > 50, colour
    assert (tmp_path / "grid_edges.ply").exists() and (tmp_path / "grid_frames.ply").exists()
