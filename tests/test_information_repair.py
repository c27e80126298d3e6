"""Information matrices that are not positive definite (issue #17, item 4): strict mode's error names
the file, the line, the eigenvalues and the way out; ``nearest-pd`` clips the bad matrices'
eigenvalues and counts them; ``isotropic`` gives SE-Sync's τ/κ weights; ``slam pgo --out`` carries
the repaired matrices under a comment line, and GTSAM reaches our chi2 on that file."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

import slam.cli
from liegeo import SE2, SE3
from slam.io import FormatError, read_g2o, write_g2o
from slam.io.g2o import NEAREST_PD_FLOOR
from slam.pgo import synthetic_graph

BAD_EDGES = (2, 9, 30)
"""Indices (in file order) of the edges given indefinite information."""


def _indefinite(d: int, k: int) -> np.ndarray:
    """An indefinite symmetric d×d matrix: a random rotation of eigenvalues down to -1.6e5."""
    rng = np.random.default_rng(k)
    q, _ = np.linalg.qr(rng.normal(size=(d, d)))
    eigenvalues = {6: [-1.6e5, -2.0, 50.0, 100.0, 400.0, 900.0], 3: [-1.6e5, 80.0, 300.0]}[d]
    eigenvalues = np.asarray(eigenvalues) / (1.0 + 0.1 * (k - BAD_EDGES[0]))  # -1.6e5 the worst, on the first
    return (q * eigenvalues) @ q.T


def _coupled(d: int) -> np.ndarray:
    """Indefinite by a translation-rotation coupling only: the diagonal blocks stay positive definite."""
    matrix = np.diag([100.0] * (d // 2) + [50.0] * (d - d // 2))
    matrix[0, d - 1] = matrix[d - 1, 0] = 1000.0
    return matrix


def _bad_file(tmp_path: Path, group=SE3, matrices=None) -> tuple[Path, Path, list[int], dict[int, np.ndarray]]:
    """A synthetic graph written by ``write_g2o`` (``good``) and the same with ``BAD_EDGES``' information
    replaced (``bad``); also the bad edges' file lines and their matrices."""
    graph, _ = synthetic_graph(group, 40, 12, structure_seed=3, noise_seed=4)
    good = write_g2o(tmp_path / "good.g2o", graph)
    lines = good.read_text().splitlines()
    edge_lines = [n for n, line in enumerate(lines) if line.startswith("EDGE")]
    d = graph.information.shape[-1]
    width = 1 + 2 + (3 if group is SE2 else 7)  # tag, ids, pose
    rows, cols = np.triu_indices(d)
    replaced = {}
    for k in BAD_EDGES:
        matrix = matrices(k) if matrices else _indefinite(d, k)
        tokens = lines[edge_lines[k]].split()
        lines[edge_lines[k]] = " ".join(tokens[:width] + [repr(float(v)) for v in matrix[rows, cols]])
        replaced[k] = matrix
    bad = tmp_path / "bad.g2o"
    bad.write_text("\n".join(lines) + "\n")
    return good, bad, [edge_lines[k] + 1 for k in BAD_EDGES], replaced


def test_strict_error_names_file_line_eigenvalues_and_the_flags(tmp_path):
    _, bad, lines, matrices = _bad_file(tmp_path)
    with pytest.raises(FormatError) as error:
        read_g2o(bad)
    message = str(error.value)
    assert (error.value.path, error.value.line) == (str(bad), lines[0])
    assert message.startswith(f"{bad}:{lines[0]}: information matrix is not positive definite"), message
    smallest = np.linalg.eigvalsh(matrices[BAD_EDGES[0]])[0]
    assert f"smallest {smallest:.6g}" in message and "-1.6" in message
    assert "--information nearest-pd" in message and "--information isotropic" in message
    assert f"{len(BAD_EDGES)} of " in message and "\n" not in message
    with pytest.raises(FormatError):  # the default is strict
        read_g2o(bad, information="strict")
    with pytest.raises(ValueError, match="information must be one of"):
        read_g2o(bad, information="clip")


def test_cli_strict_is_one_line_exit_2(tmp_path, capsys):
    _, bad, lines, _ = _bad_file(tmp_path)
    assert slam.cli.main(["pgo", str(bad), "--output-dir", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and f"{bad}:{lines[0]}: information matrix is not positive definite" in err
    assert "--information nearest-pd" in err and "--information isotropic" in err
    assert not (tmp_path / "out").exists()


def test_help_names_the_default(capsys):
    with pytest.raises(SystemExit):
        slam.cli.main(["pgo", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "--information {strict,nearest-pd,isotropic}" in text and "(default: strict)" in text


@pytest.mark.parametrize("group", [SE3, SE2])
def test_nearest_pd_repairs_exactly_the_bad_edges(tmp_path, group):
    good, bad, lines, matrices = _bad_file(tmp_path, group)
    original = read_g2o(good)
    assert original.information_repair is None
    graph = read_g2o(bad, information="nearest-pd")
    repair = graph.information_repair
    assert (repair.method, repair.num_edges) == ("nearest-pd", graph.num_edges)
    assert repair.not_positive_definite == repair.changed == len(BAD_EDGES)
    assert repair.first_lines == tuple(lines) and repair.floor == NEAREST_PD_FLOOR
    worst = min(np.linalg.eigvalsh(m)[0] for m in matrices.values())
    assert repair.worst_eigenvalue == pytest.approx(worst, rel=1e-9) and repair.worst_eigenvalue < -1.5e5
    # the others keep every bit
    keep = torch.ones(graph.num_edges, dtype=torch.bool)
    keep[list(BAD_EDGES)] = False
    assert torch.equal(graph.information[keep], original.information[keep])
    assert torch.equal(graph.measurements.data, original.measurements.data)
    for k, matrix in matrices.items():  # an independent clip: V diag(max(λ, 1e-6 λ_max)) Vᵀ
        repaired = graph.information[k].numpy()
        eigenvalues, vectors = np.linalg.eigh(matrix)
        expected = (vectors * np.maximum(eigenvalues, NEAREST_PD_FLOOR * eigenvalues[-1])) @ vectors.T
        np.testing.assert_allclose(repaired, expected, rtol=0, atol=1e-9 * eigenvalues[-1])
        np.testing.assert_array_equal(repaired, repaired.T)
        np.linalg.cholesky(repaired)
        assert np.linalg.eigvalsh(repaired)[0] >= 0.999 * NEAREST_PD_FLOOR * eigenvalues[-1]
    graph.problem()  # the solver's own positive-definiteness check accepts them


def test_nearest_pd_refuses_a_matrix_without_a_positive_eigenvalue(tmp_path):
    _, bad, lines, _ = _bad_file(tmp_path, matrices=lambda k: -np.eye(6) * (k + 1))
    with pytest.raises(FormatError, match="no positive eigenvalue") as error:
        read_g2o(bad, information="nearest-pd")
    assert error.value.line == lines[0]


def _isotropic_reference(matrix: np.ndarray, group) -> np.ndarray:
    """SE-Sync's read_g2o_file, in our tangent order: 2D τ = 2 / tr(Ω_t⁻¹), κ = I33; 3D τ = 3 / tr(Ω_t⁻¹),
    κ = 3 / (2 tr(Ω_R⁻¹)); our rotation weight is κ in 2D and 2κ in 3D."""
    if group is SE2:
        tau, kappa = 2.0 / np.trace(np.linalg.inv(matrix[:2, :2])), matrix[2, 2]
        return np.diag([tau, tau, kappa])
    tau, kappa = 3.0 / np.trace(np.linalg.inv(matrix[:3, :3])), 3.0 / (2.0 * np.trace(np.linalg.inv(matrix[3:, 3:])))
    return np.diag([tau] * 3 + [2.0 * kappa] * 3)


@pytest.mark.parametrize("group", [SE3, SE2])
def test_isotropic_gives_se_sync_weights(tmp_path, group):
    d = 3 if group is SE2 else 6
    good, bad, lines, matrices = _bad_file(tmp_path, group, matrices=lambda k: _coupled(d) * (1 + k))
    original = read_g2o(good).information.numpy()
    graph = read_g2o(bad, information="isotropic")
    repair = graph.information_repair
    assert repair.method == "isotropic" and repair.not_positive_definite == len(BAD_EDGES)
    assert repair.first_lines == tuple(lines)
    for k in range(graph.num_edges):
        source = matrices.get(k, original[k])
        np.testing.assert_allclose(graph.information[k].numpy(), _isotropic_reference(source, group), rtol=1e-12)
    # synthetic information is diag(1/σ²), already isotropic: those edges keep their bits
    keep = [k for k in range(graph.num_edges) if k not in matrices]
    assert torch.equal(graph.information[keep], torch.from_numpy(original[keep]))
    assert repair.changed == len(BAD_EDGES)


def test_isotropic_refuses_a_block_without_a_positive_weight(tmp_path):
    _, bad, lines, _ = _bad_file(tmp_path, matrices=lambda k: np.diag([-1.0, -1.0, -1.0, 5.0, 5.0, 5.0]))
    with pytest.raises(FormatError, match="isotropic translation") as error:
        read_g2o(bad, information="isotropic")
    assert error.value.line == lines[0] and "nearest-pd" in str(error.value)


def test_repaired_graph_writes_a_comment_and_reads_back_equal(tmp_path):
    _, bad, _, _ = _bad_file(tmp_path)
    graph = read_g2o(bad, information="nearest-pd")
    out = write_g2o(tmp_path / "repaired.g2o", graph)
    first = out.read_text().splitlines()[0]
    assert first.startswith(f"# information nearest-pd: {len(BAD_EDGES)} of {graph.num_edges} edges not positive")
    again = read_g2o(out)  # strict: the repaired matrices are positive definite
    assert torch.equal(again.information, graph.information)  # 17 digits: every bit
    torch.testing.assert_close(again.poses.data, graph.poses.data, rtol=0, atol=1e-15)  # quaternions renormalized
    assert again.information_repair is None
    # nothing to repair: no comment
    clean = write_g2o(tmp_path / "clean.g2o", read_g2o(tmp_path / "good.g2o", information="nearest-pd"))
    assert not clean.read_text().startswith("#")


def test_cli_nearest_pd_reports_and_gtsam_agrees_on_its_out_file(tmp_path, caplog):
    _, bad, _, matrices = _bad_file(tmp_path)
    outdir = tmp_path / "run"
    with caplog.at_level("WARNING", logger="slam"):
        assert slam.cli.main(["-q", "pgo", str(bad), "--information", "nearest-pd", "--output-dir", str(outdir)]) == 0
    assert any(f"{len(BAD_EDGES)} of " in r.getMessage() and "nearest-pd" in r.getMessage() for r in caplog.records)
    summary = json.loads((outdir / "bad.json").read_text())
    record = summary["information_repair"]
    assert record["method"] == "nearest-pd" and record["not_positive_definite"] == len(BAD_EDGES)
    assert record["worst_eigenvalue"] == pytest.approx(min(np.linalg.eigvalsh(m)[0] for m in matrices.values()))
    out = outdir / "bad_optimized.g2o"
    assert out.read_text().startswith(f"# information nearest-pd: {len(BAD_EDGES)} of ")
    repaired = read_g2o(bad, information="nearest-pd")
    optimized = read_g2o(out)
    assert torch.equal(optimized.information, repaired.information)
    assert optimized.chi2() == pytest.approx(summary["final_chi2"], rel=1e-9)

    gtsam = pytest.importorskip("gtsam")
    factors, _ = gtsam.readG2o(str(out), True)  # the --out file's edges and repaired matrices
    _, initial = gtsam.readG2o(str(write_g2o(tmp_path / "start.g2o", repaired)), True)  # the file's vertices
    assert factors.size() == repaired.num_edges and initial.size() == repaired.num_poses
    assert 2.0 * factors.error(initial) == pytest.approx(summary["initial_chi2"], rel=1e-9)  # like with like
    factors.add(gtsam.PriorFactorPose3(0, initial.atPose3(0), gtsam.noiseModel.Constrained.All(6)))
    params = gtsam.LevenbergMarquardtParams()
    params.setRelativeErrorTol(1e-8)
    gtsam_chi2 = 2.0 * factors.error(gtsam.LevenbergMarquardtOptimizer(factors, initial, params).optimize())
    assert summary["final_chi2"] == pytest.approx(gtsam_chi2, rel=1e-3)
    assert summary["final_chi2"] < 0.5 * summary["initial_chi2"]  # a real solve, not a start at the optimum
