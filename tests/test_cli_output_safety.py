"""The ``slam`` command never writes over its inputs, never puts two outputs in one file, checks every
output path before any work, and leaves no partial output behind when a run fails."""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

import slam.cli
from slam.io.files import OutputPathError, StagedOutputs, atomic_write_text, check_outputs, same_file

DATA = Path(__file__).resolve().parents[1] / "slam" / "data"  # package data, as conftest.PACKAGE_DATA


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _listing(folder: Path) -> set[str]:
    return {str(p.relative_to(folder)) for p in folder.rglob("*")}


@pytest.fixture
def workdir(tmp_path, monkeypatch):
    """A folder holding a copy of a small 3D graph, a hard link and a symlink to it, a directory,
    and a small TUM trajectory; the tests run inside it."""
    shutil.copy(DATA / "tinyGrid3D.g2o", tmp_path / "in.g2o")
    os.link(tmp_path / "in.g2o", tmp_path / "hard.g2o")
    (tmp_path / "sym.g2o").symlink_to("in.g2o")
    (tmp_path / "adir").mkdir()
    lines = [f"{k} {0.1 * k} 0 0 0 0 0 1\n" for k in range(10)]
    (tmp_path / "traj.tum").write_text("".join(lines))
    monkeypatch.chdir(tmp_path)
    return tmp_path


def _run(argv: list[str], capsys) -> tuple[int, str]:
    code = slam.cli.main(["-q", *argv])
    err = capsys.readouterr().err
    return code, err


# Each case: arguments that must be refused before any work, and a fragment of the one-line error.
REFUSED = {
    "tum over input": (["pgo", "in.g2o", "--tum", "in.g2o"], "is the input"),
    "json over input": (["pgo", "in.g2o", "--json", "in.g2o"], "is the input"),
    "out over a hard link of the input": (["pgo", "in.g2o", "--out", "hard.g2o"], "is the input"),
    "out over a symlink to the input": (["pgo", "in.g2o", "--out", "sym.g2o"], "is the input"),
    "png over input": (["pgo", "in.g2o", "--png", "in.g2o"], "is the input"),
    "two outputs in one file": (["pgo", "in.g2o", "--out", "X.g2o", "--tum", "X.g2o"], "is also output"),
    "json in a missing folder": (["pgo", "in.g2o", "--json", "missing/x.json"], "does not exist"),
    "json onto a directory": (["pgo", "in.g2o", "--json", "adir"], "is a directory"),
    "tum onto a directory": (["pgo", "in.g2o", "--tum", "adir"], "is a directory"),
    "png in a missing folder": (["pgo", "in.g2o", "--png", "missing/x.png"], "does not exist"),
    "output-dir is a file": (["pgo", "in.g2o", "--output-dir", "traj.tum"], "not a directory"),
    "eval json over the estimate": (["eval", "traj.tum", "traj.tum", "--json", "traj.tum"], "is the input"),
    "eval json in a missing folder": (["eval", "traj.tum", "traj.tum", "--json", "no/x.json"], "does not exist"),
    "view png onto a directory": (["view", "in.g2o", "--png", "adir"], "is a directory"),
    "view ply in a missing folder": (["view", "in.g2o", "--ply", "missing/graph"], "does not exist"),
    "unknown device": (["pgo", "in.g2o", "--device", "banana"], "not a device"),
}
if Path("/dev/full").exists():
    REFUSED["json onto /dev/full"] = (["pgo", "in.g2o", "--json", "/dev/full"], "not a regular file")


@pytest.mark.parametrize("case", sorted(REFUSED))
def test_refused_before_any_work(workdir, capsys, case):
    argv, fragment = REFUSED[case]
    before = {p: _sha(workdir / p) for p in ("in.g2o", "traj.tum")}
    listing = _listing(workdir)
    code, err = _run(argv, capsys)
    assert code == 2, err
    assert fragment in err and "Traceback" not in err
    assert len(err.strip().splitlines()) == 1, err
    assert {p: _sha(workdir / p) for p in before} == before  # inputs unchanged
    assert _listing(workdir) == listing  # nothing written, not even the default output folder


def test_bad_cuda_device_refused_before_reading(workdir, capsys):
    import torch

    if torch.cuda.is_available() and torch.cuda.device_count() > 7:  # pragma: no cover
        pytest.skip("this machine has a cuda:7")
    code, err = _run(["pgo", "missing.g2o", "--device", "cuda:7"], capsys)
    assert code == 2 and "cuda:7" in err and "missing.g2o" not in err


def test_failure_after_the_solve_leaves_no_output(workdir, capsys):
    # An unknown image format fails in matplotlib after the graph and the TUM file were written:
    # those temporaries must go too, and the run must not leave its default folder behind.
    listing = _listing(workdir)
    code, err = _run(["pgo", "in.g2o", "--png", "plot.notaformat"], capsys)
    assert code == 2, err
    assert _listing(workdir) == listing, sorted(_listing(workdir) - listing)


def test_failure_keeps_the_previous_outputs(workdir, capsys):
    assert _run(["pgo", "in.g2o", "--output-dir", "out"], capsys)[0] == 0
    before = {p.name: _sha(p) for p in (workdir / "out").iterdir()}
    assert set(before) == {"in_optimized.g2o", "in_optimized.tum", "in_initial.tum", "in.png", "in.json"}
    code, _ = _run(["pgo", "in.g2o", "--output-dir", "out", "--png", "plot.notaformat"], capsys)
    assert code == 2
    assert {p.name: _sha(p) for p in (workdir / "out").iterdir()} == before  # old results intact, no temporaries


def test_successful_run_writes_every_output_and_no_temporary(workdir, capsys):
    code, err = _run(["pgo", "in.g2o", "--out", "a.g2o", "--tum", "a.tum", "--png", "a.png", "--json", "a.json"],
                     capsys)
    assert code in (0, 1), err
    for name in ("a.g2o", "a.tum", "a.png", "a.json"):
        assert (workdir / name).is_file() and (workdir / name).stat().st_size > 0
    assert not [p for p in workdir.iterdir() if ".partial" in p.name]
    mode = (workdir / "a.json").stat().st_mode & 0o777
    umask = os.umask(0)
    os.umask(umask)
    assert mode == 0o666 & ~umask  # the permissions of a plain open(), not tempfile's 0600


def test_symlinked_output_is_written_through(workdir, capsys):
    (workdir / "target.json").write_text("old")
    (workdir / "link.json").symlink_to("target.json")
    assert _run(["pgo", "in.g2o", "--json", "link.json", "--output-dir", "out"], capsys)[0] in (0, 1)
    assert (workdir / "link.json").is_symlink()
    assert '"final_chi2"' in (workdir / "target.json").read_text()


def test_same_file_sees_links(tmp_path):
    a = tmp_path / "a"
    a.write_text("x")
    os.link(a, tmp_path / "b")
    (tmp_path / "c").symlink_to(a)
    assert same_file(a, tmp_path / "b") and same_file(a, tmp_path / "c")
    assert same_file(tmp_path / "missing", tmp_path / "." / "missing")
    assert not same_file(a, tmp_path / "missing")


def test_check_outputs_refuses_unwritable_folder(tmp_path):
    if os.geteuid() == 0:
        pytest.skip("root may write anywhere")
    folder = tmp_path / "ro"
    folder.mkdir()
    folder.chmod(0o500)
    try:
        with pytest.raises(OutputPathError, match="not writable"):
            check_outputs({"json": folder / "x.json"})
    finally:
        folder.chmod(0o700)


def test_atomic_write_keeps_the_old_file_on_failure(tmp_path, monkeypatch):
    target = tmp_path / "x.txt"
    target.write_text("old")

    def fail(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(os, "replace", fail)
    with pytest.raises(OSError, match="disk full"):
        atomic_write_text(target, "new")
    assert target.read_text() == "old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["x.txt"]


def test_staged_outputs_commit_together_or_not_at_all(tmp_path):
    paths = {"a": tmp_path / "a.txt", "b": tmp_path / "b.txt"}
    with pytest.raises(RuntimeError):
        with StagedOutputs(paths) as staged:
            staged["a"].write_text("1")
            raise RuntimeError("later step failed")
    assert sorted(p.name for p in tmp_path.iterdir()) == []
    with StagedOutputs(paths) as staged:
        staged["a"].write_text("1")
        staged["b"].write_text("2")
        assert not paths["a"].exists()  # nothing visible before the end
    assert paths["a"].read_text() == "1" and paths["b"].read_text() == "2"


def test_library_writers_refuse_their_source(tmp_path):
    from slam.io import read_g2o, write_g2o

    shutil.copy(DATA / "tinyGrid3D.g2o", tmp_path / "g.g2o")
    os.link(tmp_path / "g.g2o", tmp_path / "h.g2o")
    before = _sha(tmp_path / "g.g2o")
    graph = read_g2o(tmp_path / "g.g2o")
    with pytest.raises(ValueError, match="input"):
        write_g2o(tmp_path / "h.g2o", graph)
    assert _sha(tmp_path / "g.g2o") == before


def test_subprocess_errors_are_one_line_without_traceback(workdir):
    result = subprocess.run([sys.executable, "-m", "slam.cli", "pgo", "in.g2o", "--json", "in.g2o"],
                            capture_output=True, text=True, cwd=workdir, timeout=120)
    assert result.returncode == 2
    assert "Traceback" not in result.stderr and len(result.stderr.strip().splitlines()) == 1
    assert _sha(workdir / "in.g2o") == _sha(DATA / "tinyGrid3D.g2o")
