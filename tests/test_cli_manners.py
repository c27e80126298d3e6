"""The ``slam`` command's manners (issue 16, items 2-4): exit codes, one-line errors, one cost name,
help texts with defaults, and a JSON record that repeats the run.

Most checks run the command as a user does (a subprocess) and assert the exit code, exactly one line
on stderr for an error, and no traceback."""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch

import slam
import slam.cli

REPO = Path(__file__).resolve().parents[1]
ITERATION = re.compile(r"^iter +(\d+)  (chi2|robust chi2|cost) ([0-9.e+-]+)  ", re.M)


def run(*args: str, cwd: Path, env: dict[str, str] | None = None, program: str | None = None,
        timeout: float = 180) -> subprocess.CompletedProcess:
    """``slam ARGS`` in a fresh interpreter (or ``program``, Python code that calls ``slam.cli.main``)."""
    environment = {"PYTHONPATH": str(REPO), "PATH": os.environ.get("PATH", "/usr/bin:/bin"), "OMP_NUM_THREADS": "1",
                   "HOME": os.environ.get("HOME", "/tmp"), **(env or {})}
    command = [sys.executable, "-c", program, *args] if program else [sys.executable, "-m", "slam.cli", *args]
    return subprocess.run(command, cwd=cwd, capture_output=True, text=True, timeout=timeout, env=environment)


def one_line_error(done: subprocess.CompletedProcess, code: int = 2, fragment: str = "") -> str:
    """The single stderr line of a failed run, checked: exit ``code``, one line, no traceback."""
    assert done.returncode == code, (done.returncode, done.stderr)
    assert "Traceback" not in done.stderr, done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    assert fragment in lines[0], lines[0]
    return lines[0]


@pytest.fixture(scope="module")
def work(tmp_path_factory) -> Path:
    """A folder with a small 3D pose graph ``g.g2o``, a BAL problem ``scene.txt``, a curved TUM trajectory
    ``a.tum`` and a noisy copy ``b.tum``, and a directory ``adir``."""
    from slam.ba import synthetic_bal
    from slam.io import Trajectory, write_bal, write_g2o, write_tum
    from liegeo import SE3

    folder = tmp_path_factory.mktemp("manners")
    graph, _ = slam.pgo.synthetic_graph(num_poses=12, num_loop_closures=4)
    write_g2o(folder / "g.g2o", graph)
    problem, _ = synthetic_bal(4, 40, seed=5)
    write_bal(folder / "scene.txt", problem)
    t = torch.arange(40, dtype=torch.float64)
    a = 0.2 * t
    data = torch.stack([a.cos(), a.sin(), 0.05 * t, 0 * t, 0 * t, (a / 2).sin(), (a / 2).cos()], -1)
    write_tum(folder / "a.tum", Trajectory(t, SE3(data)))
    noisy = data.clone()
    noisy[:, :3] += 0.01 * torch.randn(40, 3, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    write_tum(folder / "b.tum", Trajectory(t, SE3(noisy)))
    (folder / "adir").mkdir()
    return folder


def _json(path: Path) -> dict:
    return json.loads(path.read_text())


def _numbers(line: str, name: str) -> tuple[float, float]:
    match = re.search(rf"(?<![a-z] ){re.escape(name)} ([0-9.e+-]+) -> ([0-9.e+-]+)", line)
    assert match, (name, line)
    return float(match.group(1)), float(match.group(2))


# ------------------------------------------------------------------------------------------------ exit codes


def test_the_exit_codes_are_one_table_in_the_docstring_the_help_and_the_constants():
    table = dict(re.findall(r"^  (\d+) +(\S.*)$", slam.cli.__doc__, re.M))
    assert sorted(map(int, table)) == [0, 1, 2, 3, 130, 141]
    assert (slam.cli.EXIT_OK, slam.cli.EXIT_INTERNAL, slam.cli.EXIT_USAGE, slam.cli.EXIT_NOT_CONVERGED,
            slam.cli.EXIT_INTERRUPTED, slam.cli.EXIT_BROKEN_PIPE) == (0, 1, 2, 3, 130, 141)
    assert "max-iterations" in table["0"] and "did not converge" in table["3"] and "internal" in table["1"]
    parser = slam.cli.build_parser()
    for each in (parser, *_subparsers(parser).values()):
        text = each.format_help()
        assert all(f"  {code} " in text for code in table), each.prog


def test_exit_0_for_a_converged_solve_without_warnings(work, tmp_path):
    done = run("pgo", str(work / "g.g2o"), "--output-dir", str(tmp_path), cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert "warning" not in done.stderr and "Traceback" not in done.stderr
    record = _json(tmp_path / "g.json")
    assert record["converged"] and record["exit_code"] == 0


def test_exit_0_at_the_iteration_limit_with_one_warning_line(work, tmp_path):
    done = run("-q", "pgo", str(work / "g.g2o"), "--max-iterations", "1", "--output-dir", str(tmp_path), cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    line = one_line_error(done, code=0, fragment="warning")
    assert "--max-iterations 1" in line
    record = _json(tmp_path / "g.json")
    assert record["termination"] == "maximum iterations" and not record["converged"] and record["exit_code"] == 0
    assert (tmp_path / "g_optimized.g2o").is_file()  # the work ran: every output written


_STALL = """
import functools, importlib, sys
module = importlib.import_module(sys.argv[1])
# A damping ceiling below the start: the solve stops "no decrease possible" after one iteration,
# the stall that a real problem reaches when no step lowers its cost.
module.LevenbergMarquardt = functools.partial(module.LevenbergMarquardt, max_damping=float(sys.argv[2]))
import slam.cli
sys.exit(slam.cli.main(sys.argv[3:]))
"""


@pytest.mark.parametrize("command", ["pgo", "ba"])
def test_exit_3_when_the_solve_stops_without_converging(work, tmp_path, command):
    module, ceiling, source = {"pgo": ("slam.pgo.optimize", "1e-9", "g.g2o"),
                               "ba": ("slam.ba.optimize", "1e-5", "scene.txt")}[command]
    done = run(module, ceiling, "-q", command, str(work / source), "--output-dir", str(tmp_path), cwd=tmp_path,
               program=_STALL)
    line = one_line_error(done, code=3, fragment="warning: did not converge")
    assert "no decrease possible" in line
    record = _json(next(tmp_path.glob("*.json")))
    assert record["exit_code"] == 3 and not record["converged"]
    expected = {"pgo": {"g_optimized.g2o", "g_optimized.tum", "g_initial.tum", "g.png", "g.json"},
                "ba": {"scene_adjusted.txt", "scene.png", "scene.ply", "scene.json"}}[command]
    names = {p.name for p in tmp_path.iterdir()}
    assert expected <= names and not [n for n in names if ".partial" in n]  # every output written


_BUG = """
import importlib, sys
module = importlib.import_module("slam.pgo.optimize")
def solve(*args, **kwargs):
    raise RuntimeError("a simulated bug in the solver")
module.solve = solve
import slam.cli
sys.exit(slam.cli.main(sys.argv[1:]))
"""


def test_exit_1_only_for_an_internal_failure_in_one_line(work, tmp_path):
    quiet = run("-q", "pgo", str(work / "g.g2o"), "--output-dir", str(tmp_path / "out"), cwd=tmp_path, program=_BUG)
    line = one_line_error(quiet, code=1, fragment="internal error: RuntimeError: a simulated bug")
    assert "SLAM_TRACEBACK" in line and not (tmp_path / "out").exists()  # its default folder removed again


def _devices() -> list[str]:
    out = []
    if not torch.cuda.is_available():
        out += ["cuda", "cuda:0"]
    if not torch.backends.mps.is_available():
        out.append("mps")
    return out + ["gpu"]


@pytest.mark.parametrize("device", _devices())
def test_a_missing_device_is_refused_before_any_work(tmp_path, device):
    # The input does not exist: an error about it would mean the file was looked at first.
    done = run("pgo", "missing.g2o", "--device", device, cwd=tmp_path)
    line = one_line_error(done, fragment=f"--device {device}")
    assert "missing.g2o" not in line and list(tmp_path.iterdir()) == []  # not even the default output folder


# Each case: arguments (in the work folder) refused with exit code 2, before any work, and a fragment of
# the one line.  They run without -q: any work done (reading, iterating) would print more lines.
REFUSED = {
    "unknown option": (["pgo", "g.g2o", "--bogus"], "unrecognized arguments: --bogus"),
    "negative iterations": (["pgo", "g.g2o", "--max-iterations", "-1"], "--max-iterations"),
    "unknown kernel": (["ba", "scene.txt", "--robust", "blah:1"], "unknown robust loss"),
    "bad budget": (["ba", "scene.txt", "--dense-memory-budget", "lots"], "not a size"),
    "-q with -v": (["-q", "pgo", "g.g2o", "-v"], "-q and -v"),
    "no command": ([], "COMMAND"),
    "pgo of a directory": (["pgo", "adir", "--output-dir", "{tmp}"], "adir: is a directory"),
    "ba of a directory": (["ba", "adir", "--output-dir", "{tmp}"], "adir: is a directory"),
    "eval of a directory": (["eval", "adir", "a.tum"], "adir: is a directory"),
    "view of a directory": (["view", "adir", "--png", "{tmp}/x.png"], "adir: is a directory"),
    "pgo json in a missing folder": (["pgo", "g.g2o", "--json", "{tmp}/missing/x.json", "--output-dir", "{tmp}"],
                                     "does not exist"),
    "ba out in a missing folder": (["ba", "scene.txt", "--out", "{tmp}/missing/x.txt", "--output-dir", "{tmp}"],
                                   "does not exist"),
    "eval json in a missing folder": (["eval", "a.tum", "b.tum", "--json", "{tmp}/missing/x.json"], "does not exist"),
    "output-dir under a file": (["pgo", "g.g2o", "--output-dir", "a.tum/sub"], "--output-dir a.tum/sub: cannot create"),
}


@pytest.mark.parametrize("case", sorted(REFUSED))
def test_usage_and_input_errors_are_one_line_with_exit_2(work, tmp_path, case):
    argv, fragment = REFUSED[case]
    before = sorted(p.name for p in work.iterdir())
    done = run(*[a.format(tmp=tmp_path) for a in argv], cwd=work)
    line = one_line_error(done, fragment=fragment)
    assert line.startswith("slam")
    assert sorted(p.name for p in work.iterdir()) == before and list(tmp_path.iterdir()) == []  # nothing written


def _unwritable_folder(tmp_path: Path) -> Path:
    folder = tmp_path / "readonly"
    folder.mkdir()
    folder.chmod(0o500)
    if not os.access(folder, os.W_OK):
        return folder
    folder.chmod(0o700)  # root writes anywhere: a read-only kernel folder instead
    for candidate in (Path("/proc/sys"), Path("/sys/kernel")):
        if candidate.is_dir() and not os.access(candidate, os.W_OK):
            return candidate
    pytest.skip("no unwritable folder to try (root, and no read-only system folder)")


@pytest.mark.parametrize("command", ["pgo", "ba"])
def test_an_unwritable_output_folder_is_refused_before_the_solve(work, tmp_path, command):
    folder = _unwritable_folder(tmp_path)
    source = {"pgo": "g.g2o", "ba": "scene.txt"}[command]
    try:
        done = run(command, source, "--json", str(folder / "x.json"), "--output-dir", str(tmp_path / "out"), cwd=work)
    finally:
        if folder.is_relative_to(tmp_path):
            folder.chmod(0o700)
    one_line_error(done, fragment="not writable")  # one line: not even the input was read
    assert not (tmp_path / "out").exists()


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="the display variables are Linux's")
def test_view_without_a_display_is_one_line_with_exit_2(work):
    environment = {k: v for k, v in os.environ.items() if k not in ("DISPLAY", "WAYLAND_DISPLAY")}
    environment["PYTHONPATH"] = str(REPO)
    # No --png: the interactive window path.
    done = subprocess.run([sys.executable, "-m", "slam.cli", "view", "g.g2o"], cwd=work, capture_output=True,
                          text=True, timeout=180, env=environment)
    line = one_line_error(done, fragment="no display")
    assert "--png" in line


@pytest.mark.parametrize("consumer", ["head -c 0", "head -1"])
def test_a_closed_pipe_is_not_a_traceback(work, consumer):
    script = (f"{sys.executable} -m slam.cli eval a.tum b.tum | {consumer} > /dev/null; "
              "echo \"status ${PIPESTATUS[0]}\" >&2")
    done = subprocess.run(["bash", "-c", script], cwd=work, capture_output=True, text=True, timeout=180,
                          env={"PYTHONPATH": str(REPO), "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
                               "OMP_NUM_THREADS": "1"})
    lines = done.stderr.strip().splitlines()
    assert "Traceback" not in done.stderr and "Broken pipe" not in done.stderr and "Exception" not in done.stderr
    assert lines[-1] in ("status 141", "status 0") and len(lines) == 1, done.stderr
    if consumer == "head -c 0":  # the reader is gone before the first write
        assert lines[-1] == "status 141"


def test_a_dense_solve_over_its_memory_budget_is_refused_with_the_estimate(work, tmp_path):
    from slam.io import read_bal

    problem = read_bal(work / "scene.txt")
    n = 9 * problem.num_cameras + 3 * problem.num_points
    estimate = 3 * n * n * 8  # the matrix, its Cholesky factor and the assembly's temporary, float64
    done = run("-q", "ba", "scene.txt", "--linear-solver", "dense", "--dense-memory-budget", "64KiB",
               "--output-dir", str(tmp_path), cwd=work)
    line = one_line_error(done, fragment="memory budget of 64.0 KiB")
    assert f"{estimate / 1024:.1f} KiB" in line and f"{n} unknowns" in line
    assert list(tmp_path.iterdir()) == []
    # Within the budget the same solve runs.
    fits = run("-q", "ba", "scene.txt", "--linear-solver", "dense", "--dense-memory-budget", str(estimate),
               "--output-dir", str(tmp_path), cwd=work)
    assert fits.returncode == 0, fits.stderr
    # The environment variable sets it too (a pose graph's small system is dense by default).
    env = run("-q", "pgo", "g.g2o", "--output-dir", str(tmp_path / "env"), cwd=work,
              env={"SLAM_DENSE_MEMORY_BUDGET": "1KiB"})
    one_line_error(env, fragment="SLAM_DENSE_MEMORY_BUDGET")


def test_the_dense_solver_checks_its_budget_before_allocating(monkeypatch):
    from slam.linear.dense import (DEFAULT_MEMORY_BUDGET, DenseCholesky, MemoryBudgetError, dense_memory,
                                   memory_budget, parse_size)

    graph, _ = slam.pgo.synthetic_graph(num_poses=6, num_loop_closures=2)
    problem, _ = graph.problem()
    h, _, _ = problem.linearize(problem.initial_values())
    n = problem.structure.n
    assert dense_memory(n, 2, torch.float32) == 3 * 2 * n * n * 4
    calls = []
    monkeypatch.setattr("slam.linear.dense.to_dense", lambda *a: calls.append(a))
    with pytest.raises(MemoryBudgetError, match=f"{n} unknowns"):
        DenseCholesky(memory_budget=1000).factorize(problem.structure, h)
    assert calls == []  # refused before the matrix was built
    monkeypatch.delenv("SLAM_DENSE_MEMORY_BUDGET", raising=False)
    assert memory_budget() == DEFAULT_MEMORY_BUDGET == 4 * 2**30
    monkeypatch.setenv("SLAM_DENSE_MEMORY_BUDGET", "1.5GB")
    assert memory_budget() == 1_500_000_000 and parse_size("2KiB") == 2048 and memory_budget(10) == 10
    monkeypatch.setenv("SLAM_DENSE_MEMORY_BUDGET", "0")
    with pytest.raises(ValueError, match="SLAM_DENSE_MEMORY_BUDGET"):
        memory_budget()


# ------------------------------------------------------------------------------------------ one cost name


def test_pgo_reports_chi2_under_one_name_in_lines_summary_and_json(work, tmp_path):
    from slam.io import read_g2o

    done = run("pgo", "g.g2o", "--output-dir", str(tmp_path), cwd=work)
    assert done.returncode == 0, done.stderr
    lines = ITERATION.findall(done.stderr)
    assert lines and {name for _, name, _ in lines} == {"chi2"}
    assert " cost " not in done.stderr and "problem 0:" not in done.stderr
    record = _json(tmp_path / "g.json")
    assert not [key for key in record if "cost" in key]
    final_line = next(line for line in done.stdout.splitlines() if line.startswith("g:"))
    initial, final = _numbers(final_line, "chi2")
    assert initial == pytest.approx(record["initial_chi2"], rel=1e-6)
    assert final == pytest.approx(record["final_chi2"], rel=1e-6) == pytest.approx(float(lines[-1][2]), rel=1e-6)
    solve_line = next(line for line in done.stderr.splitlines() if line.startswith("solve: "))
    assert _numbers(solve_line, "chi2") == pytest.approx((initial, final), rel=1e-6)
    assert read_g2o(tmp_path / "g_optimized.g2o").chi2() == pytest.approx(record["final_chi2"], rel=1e-9)


def test_with_a_robust_kernel_the_robust_chi2_is_labelled_beside_chi2(work, tmp_path):
    from slam.io import read_g2o

    done = run("pgo", "g.g2o", "--robust", "cauchy:0.5", "--output-dir", str(tmp_path), cwd=work)
    assert done.returncode == 0, done.stderr
    lines = ITERATION.findall(done.stderr)
    assert lines and {name for _, name, _ in lines} == {"robust chi2"}
    record = _json(tmp_path / "g.json")
    final_line = next(line for line in done.stdout.splitlines() if line.startswith("g:"))
    assert _numbers(final_line, "chi2")[1] == pytest.approx(record["final_chi2"], rel=1e-6)
    robust = _numbers(final_line, "robust chi2")
    assert robust[1] == pytest.approx(record["final_robust_chi2"], rel=1e-6) == pytest.approx(float(lines[-1][2]),
                                                                                                rel=1e-6)
    assert record["final_robust_chi2"] < record["final_chi2"]  # Cauchy's ρ(s) < s: two different numbers
    assert read_g2o(tmp_path / "g_optimized.g2o").chi2() == pytest.approx(record["final_chi2"], rel=1e-9)


def test_ba_reports_chi2_too(work, tmp_path):
    from slam.io import read_bal

    done = run("ba", "scene.txt", "--output-dir", str(tmp_path), cwd=work)
    assert done.returncode == 0, done.stderr
    lines = ITERATION.findall(done.stderr)
    assert lines and {name for _, name, _ in lines} == {"chi2"} and "problem 0:" not in done.stderr
    record = _json(tmp_path / "scene.json")
    assert not [key for key in record if "cost" in key]
    assert record["initial_chi2"] == pytest.approx(2 * read_bal(work / "scene.txt").cost(), rel=1e-12)
    assert record["final_chi2"] == pytest.approx(2 * read_bal(tmp_path / "scene_adjusted.txt").cost(), rel=1e-9)
    assert record["final_chi2"] == pytest.approx(float(lines[-1][2]), rel=1e-6)


def test_the_solve_line_names_problems_only_for_a_batch(caplog):
    from slam.pgo import optimize, synthetic_batch, synthetic_graph

    with caplog.at_level("INFO", logger="slam"):
        one = optimize(synthetic_graph(num_poses=8, num_loop_closures=2)[0])
    messages = caplog.messages
    assert not [m for m in messages if m.startswith("problem")]
    assert f"solve: {one.termination} after {one.iterations} iterations, chi2 " in "\n".join(messages)
    caplog.clear()
    with caplog.at_level("INFO", logger="slam"):
        optimize(synthetic_batch(2, num_poses=8, num_loop_closures=2)[0])
    assert [m[:10] for m in caplog.messages if m.startswith("problem")] == ["problem 0:", "problem 1:"]
    assert all(" mean chi2 " in m for m in caplog.messages if m.startswith("iter"))
    caplog.clear()
    graph, _ = synthetic_graph(num_poses=8, num_loop_closures=2)
    with caplog.at_level("INFO", logger="slam"):  # the generic solve reports its own cost, as SolveResult does
        result = slam.solve(graph.problem()[0])
    assert ITERATION.findall("\n".join(caplog.messages))[0][1] == "cost"
    assert f"cost {float(result.initial_cost[0]):.6e} -> {float(result.cost[0]):.6e}" in caplog.messages[-1]


class _Record:
    def __init__(self, cost: float):
        self.cost = torch.tensor([cost])


def test_the_progress_bar_total_is_what_ran():
    pytest.importorskip("tqdm")
    from slam.optim.callbacks import ProgressBar

    bar = ProgressBar(total=100)
    for k in range(6):
        bar(_Record(10.0 - k))
    bar.close()
    assert bar.bar.n == 6 and bar.bar.total == 6


def test_log_lines_go_through_the_bar_while_it_is_open(capsys):
    import logging

    pytest.importorskip("tqdm")
    root = logging.getLogger()
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(message)s"))
    root.addHandler(handler)
    seen: list[list[str]] = []
    logger = logging.getLogger("slam")
    level = logger.level
    logger.setLevel(logging.INFO)
    try:
        graph, _ = slam.pgo.synthetic_graph(num_poses=8, num_loop_closures=2)
        result = slam.solve(graph.problem()[0], slam.LevenbergMarquardt(progress=True),
                            callbacks=[lambda record: seen.append([type(h).__name__ for h in root.handlers])])
        restored = [type(h).__name__ for h in root.handlers]
    finally:
        root.removeHandler(handler)
        logger.setLevel(level)
    assert seen and all("_TqdmHandler" in names and "StreamHandler" not in names for names in seen)
    assert "StreamHandler" in restored and "_TqdmHandler" not in restored  # put back when the bar closed
    err = capsys.readouterr().err
    assert len(ITERATION.findall(err.replace("\r", "\n"))) == len(result.history)


def test_progress_in_the_command_ends_at_the_iterations_that_ran(work, tmp_path):
    pytest.importorskip("tqdm")
    done = run("pgo", "g.g2o", "--progress", "--output-dir", str(tmp_path), cwd=work)
    assert done.returncode == 0, done.stderr
    iterations = _json(tmp_path / "g.json")["iterations"]
    assert iterations < 100
    states = re.findall(r"(\d+)/(\d+) \[", done.stderr)
    assert states[-1] == (str(iterations), str(iterations))
    # Every iteration line starts a line of its own (tqdm.write clears the bar first).
    assert len(re.findall(r"(?:^|[\r\n])iter +\d+  chi2 ", done.stderr)) == iterations


# --------------------------------------------------------------------------------------- help, reproducing


def _subparsers(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    action = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return dict(action.choices)


def _expanded_help(parser: argparse.ArgumentParser, action: argparse.Action) -> str:
    return parser._get_formatter()._expand_help(action)


def test_every_option_has_help_with_its_default():
    parser = slam.cli.build_parser()
    checked = 0
    for name, sub in {"slam": parser, **_subparsers(parser)}.items():
        for action in sub._actions:
            if isinstance(action, (argparse._HelpAction, argparse._VersionAction, argparse._SubParsersAction)):
                continue
            label = f"{name} {'/'.join(action.option_strings) or action.dest}"
            assert action.help and action.help is not argparse.SUPPRESS, label
            text = _expanded_help(sub, action)
            default = action.default
            if default in (None, False, argparse.SUPPRESS):
                continue
            shown = {str(default)} | ({f"{default:g}"} if isinstance(default, float) else set())
            assert "default" in text and any(s in text for s in shown), (label, text)
            checked += 1
    assert checked >= 15
    subs = _subparsers(parser)
    max_iterations = {n: next(a for a in subs[n]._actions if a.dest == "max_iterations") for n in ("pgo", "ba")}
    assert "(default: 100)" in _expanded_help(subs["pgo"], max_iterations["pgo"])
    assert "(default: 50)" in _expanded_help(subs["ba"], max_iterations["ba"])
    from slam.robust import _LOSSES

    for n in ("pgo", "ba"):
        robust = next(a for a in subs[n]._actions if a.dest == "robust")
        assert all(kernel in robust.help for kernel in _LOSSES), robust.help
    init = next(a for a in subs["pgo"]._actions if a.dest == "init").help
    assert all(choice in init for choice in ("file", "odometry", "chordal"))
    align = next(a for a in subs["eval"]._actions if a.dest == "align").help
    assert "se2 (a rotation about z and a translation in the x-y plane" in align


def test_help_has_no_rst_markup(tmp_path):
    parser = slam.cli.build_parser()
    for each in (parser, *_subparsers(parser).values()):
        text = each.format_help()
        assert not re.search(r"``|:(class|func|meth|mod):`|^\.\. ", text, re.M), each.prog
    done = run("--help", cwd=tmp_path)
    assert done.returncode == 0 and "Exit codes:" in done.stdout and "``" not in done.stdout


def test_version(tmp_path):
    import importlib.metadata

    try:
        installed = importlib.metadata.version("liegeo-slam")
    except importlib.metadata.PackageNotFoundError:
        installed = "0+unknown"
    assert slam.__version__ == installed
    done = run("--version", cwd=tmp_path)
    assert done.returncode == 0 and done.stdout.strip() == f"slam (liegeo-slam) {slam.__version__}"


def test_quiet_and_verbose_after_the_command_too(work, tmp_path):
    parser = slam.cli.build_parser()
    assert parser.parse_args(["pgo", "-v"]).verbose and parser.parse_args(["-v", "pgo"]).verbose
    assert not parser.parse_args(["pgo"]).verbose and parser.parse_args(["eval", "a", "b", "-q"]).quiet
    verbose = run("eval", "a.tum", "b.tum", "-v", cwd=work)
    assert verbose.returncode == 0 and "associated 40 of 40" in verbose.stderr, verbose.stderr
    quiet = run("pgo", "g.g2o", "-q", "--output-dir", str(tmp_path), cwd=work)
    assert quiet.returncode == 0 and quiet.stderr == "", quiet.stderr


def test_the_json_records_the_configuration_and_repeats_the_run(work, tmp_path, monkeypatch):
    from liegeo import SE3
    from slam.io import read_g2o, read_tum

    argv = ["-q", "pgo", "g.g2o", "--init", "chordal", "--robust", "huber:1", "--dtype", "float64",
            "--max-iterations", "7", "--optimizer", "dogleg", "--output-dir", str(tmp_path / "first")]
    done = run(*argv, cwd=work)
    assert done.returncode == 0, done.stderr
    record = _json(tmp_path / "first" / "g.json")
    config = record["config"]
    assert {k: config[k] for k in ("init", "optimizer", "robust", "dtype", "device")} == {
        "init": "chordal", "optimizer": "dogleg", "robust": "huber:1.0", "dtype": "float64", "device": "cpu"}
    solver = config["solver"]
    assert solver["type"] == "Dogleg" and solver["max_iterations"] == 7
    assert {"function_tolerance", "parameter_tolerance", "gradient_tolerance", "linear_solver"} <= set(solver)
    assert record["versions"]["liegeo-slam"] == slam.__version__ and record["versions"]["torch"] == torch.__version__
    assert record["input"]["sha256"] == hashlib.sha256((work / "g.g2o").read_bytes()).hexdigest()
    assert record["command"] == ["slam", *argv]
    # Repeated from the record alone (another output folder), the run gives the same numbers.
    repeat = record["command"][1:]
    repeat[repeat.index("--output-dir") + 1] = str(tmp_path / "again")
    monkeypatch.chdir(work)
    assert slam.cli.main(repeat) == record["exit_code"]
    again = _json(tmp_path / "again" / "g.json")
    assert again["final_chi2"] == pytest.approx(record["final_chi2"], rel=1e-9)
    assert again["iterations"] == record["iterations"] and again["config"] == record["config"]
    # The initial trajectory (after --init chordal) is written as TUM: its chi2 is the initial chi2.
    graph = read_g2o(work / "g.g2o")
    initial = read_tum(tmp_path / "first" / "g_initial.tum")
    assert isinstance(initial.poses, SE3) and initial.timestamps.tolist() == graph.ids.double().tolist()
    assert graph.with_poses(initial.poses).chi2() == pytest.approx(record["initial_chi2"], rel=1e-9)
    assert not math.isclose(graph.chi2(), record["initial_chi2"], rel_tol=1e-6)  # not the file's poses


def test_the_initial_trajectory_of_init_file_is_the_files(work, tmp_path):
    from slam.io import read_g2o, read_tum

    assert slam.cli.main(["-q", "pgo", str(work / "g.g2o"), "--output-dir", str(tmp_path)]) == 0
    initial = read_tum(tmp_path / "g_initial.tum")
    torch.testing.assert_close(initial.poses.data, read_g2o(work / "g.g2o").poses.data, rtol=0, atol=1e-15)
    assert "g_initial.tum" in _json(tmp_path / "g.json")["outputs"]["initial_tum"]


def test_slam_output_is_ignored_by_git():
    assert "slam-output/" in (REPO / ".gitignore").read_text().split()
