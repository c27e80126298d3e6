"""Sparse solvers from wheels only against CHOLMOD: whole solves of the shared pose graphs and BAL problems.

    python benchmarks/solvers_without_cholmod.py [--pose-graph-dir ../shared/data/pose_graph]
        [--ba FILE ...] [--repeats 5] [--no-candidates] [--no-ba] [names ...]

``pip install liegeo-slam`` without the ``[sparse]`` extra has no CHOLMOD: scikit-sparse has no wheel
for Linux (it builds against the system SuiteSparse).  This script runs, in one process and
interleaved (each repeat runs every configuration once), the same whole solve in each configuration:

* ``cholmod``: ``linear_solver="auto"`` with scikit-sparse importable (the column is "-" where it is
  not installed);
* ``wheels``: ``"auto"`` with ``sksparse`` made unimportable (``sys.modules["sksparse"] = None``):
  what a wheels-only install runs.  Its log line says what: on pose graphs the numba block Cholesky
  on SuperLU's minimum-degree ordering; SciPy's SuperLU on other patterns; for BA the Schur
  complement, whose reduced system is dense up to 4,000 camera dimensions either way;
* other wheels, where they import (``pip install qdldl cholespy pypardiso``), put in place of the sparse
  solver ``"auto"`` picks (the rest of the solve unchanged, no gradients needed):
  ``superlu`` (SciPy's SuperLU with symmetric pivots alone, without the block factorization),
  ``qdldl`` (QDLDL's LDLᵀ on its AMD ordering, the symbolic factorization reused by ``update``),
  ``cholespy`` (CHOLMOD inside the cholespy wheel; its API has no refactorization, so every
  factorization analyzes anew), ``pypardiso`` (MKL PARDISO, SPD mode, analysis once, then numeric
  factorizations; x86 only, with the ~230 MB mkl wheel).
  (``scikit-sparse`` has no Linux wheel; ``suitesparse-amd`` takes dense matrices only.)

Times are ``solve_seconds`` of ``slam.pgo.optimize`` / ``slam.ba.optimize`` (problem construction and
the symbolic analysis included, compiled-kernel loading not), the median of ``--repeats`` after one
untimed solve per configuration; every configuration's final chi2 (BA: cost) and iterations are
printed beside it, and ``X/cholmod`` is its time over CHOLMOD's (< 1: faster than CHOLMOD).  Run
with ``OMP_NUM_THREADS=1`` for 1-thread figures (CHOLMOD's supernodal BLAS, MKL and numba otherwise
use every core).
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import logging
import statistics
import sys
from pathlib import Path
from typing import Any, Callable, Iterator

import numpy as np
import scipy.sparse as sp
import torch

from slam.ba import optimize as ba_optimize
from slam.io import read_bal, read_g2o
from slam.linear.base import Factorization, LinearSolver
from slam.linear.sparse import SparseCholesky
from slam.pgo import optimize as pgo_optimize

from _table import print_table

solve_module = importlib.import_module("slam.optim.solve")  # (slam.optim.solve is also the function)

ROOT = Path(__file__).resolve().parents[1]
POSE_GRAPH_DIR = ROOT.parent / "shared" / "data" / "pose_graph"
BA_DIR = ROOT.parent / "shared" / "data" / "bundle_adjustment"
POSE_GRAPHS = ["smallGrid3D", "intel", "manhattan", "parking-garage", "sphere2500", "city10000"]
BA_PROBLEMS = [BA_DIR / "problem-49-7776-pre.txt", BA_DIR / "problem-39-18060-pre.txt",
               ROOT / "data" / "problem-49-7776-pre.txt", ROOT / "slam" / "data" / "dubrovnik-3-7-pre.txt"]


@contextlib.contextmanager
def without_sksparse() -> Iterator[None]:
    """``import sksparse`` fails inside (as where scikit-sparse is not installed); restored after."""
    saved = {name: sys.modules.get(name) for name in ("sksparse", "sksparse.cholmod")}
    sys.modules["sksparse"] = sys.modules["sksparse.cholmod"] = None  # type: ignore[assignment]
    try:
        yield
    finally:
        for name, module in saved.items():
            if module is None:
                sys.modules.pop(name, None)
            else:
                sys.modules[name] = module


def have_sksparse() -> bool:
    try:
        import sksparse.cholmod  # noqa: F401
    except ImportError:
        return False
    return True


@contextlib.contextmanager
def sparse_solver_replaced(make: Callable[[], LinearSolver]) -> Iterator[None]:
    """``linear_solver="auto"`` gives ``make()`` wherever it would give a ``SparseCholesky``."""
    original = solve_module.choose_linear_solver

    def choose(*args: Any, **kwargs: Any) -> tuple[LinearSolver, str]:
        solver, reason = original(*args, **kwargs)
        return (make(), "") if isinstance(solver, SparseCholesky) else (solver, reason)

    solve_module.choose_linear_solver = choose
    try:
        with without_sksparse():
            yield
    finally:
        solve_module.choose_linear_solver = original


# ------------------------------------------------------------------ candidates from other wheels


class WheelSolver(LinearSolver):
    """A sparse direct solver from another wheel behind the ``LinearSolver`` protocol, for this benchmark
    (forward solves only: ``solve`` is not differentiable).  ``backend(pattern)`` is made once per problem;
    its ``factorize(values: (nnz,))`` returns a function ``b -> H⁻¹ b`` (None where it fails)."""

    def __init__(self, name: str, backend: Callable[[Any], Any]):
        self.name, self.backend = name, backend

    def factorize(self, structure: Any, values: torch.Tensor) -> Factorization:
        key = ("wheel-solver", self.name)
        if key not in structure.solver_cache:
            structure.solver_cache[key] = self.backend(structure.pattern)
        return _WheelFactorization(structure.solver_cache[key], values)


class _WheelFactorization(Factorization):
    def __init__(self, backend: Any, values: torch.Tensor):
        rows = values.detach().to("cpu", torch.float64).contiguous().numpy()
        self.solvers = []
        for row in rows:
            try:
                self.solvers.append(backend.factorize(row.copy()) if np.isfinite(row).all() else None)
            except Exception:  # noqa: BLE001 - a solver's own "not positive definite" error
                self.solvers.append(None)
        self.ok = torch.tensor([s is not None for s in self.solvers], device=values.device)

    def solve(self, rhs: torch.Tensor) -> torch.Tensor:
        b = rhs.detach().to("cpu", torch.float64).numpy()
        out = np.zeros_like(b)
        for i, solver in enumerate(self.solvers):
            if solver is not None:
                out[i] = solver(np.ascontiguousarray(b[i]))
        if not np.isfinite(out).all():
            self.ok = self.ok & torch.from_numpy(np.isfinite(out).reshape(len(out), -1).all(1)).to(self.ok.device)
            out = np.nan_to_num(out, nan=0.0, posinf=0.0, neginf=0.0)
        return torch.from_numpy(out).to(device=rhs.device, dtype=rhs.dtype)


class QDLDL:
    """``qdldl.Solver`` on the upper triangle (our lower CSC read as CSR), refactorized by ``update``."""

    def __init__(self, pattern: Any):
        import qdldl

        self.qdldl, self.n, self.pattern, self.solver = qdldl, pattern.n, pattern, None

    def factorize(self, data: np.ndarray) -> Callable[[np.ndarray], np.ndarray]:
        upper = sp.csr_matrix((data, self.pattern.indices, self.pattern.indptr), (self.n, self.n)).tocsc()
        if self.solver is None:
            self.solver = self.qdldl.Solver(upper, upper=True)
        else:
            self.solver.update(upper, upper=True)
        return self.solver.solve


class Cholespy:
    """``cholespy.CholeskySolverD`` on the lower triangle (CSC); a new solver, so a new analysis, each time."""

    def __init__(self, pattern: Any):
        import cholespy

        self.cholespy, self.n = cholespy, pattern.n
        self.indptr, self.indices = pattern.indptr.astype(np.int32), pattern.indices.astype(np.int32)

    def factorize(self, data: np.ndarray) -> Callable[[np.ndarray], np.ndarray]:
        solver = self.cholespy.CholeskySolverD(self.n, self.indptr, self.indices, data, self.cholespy.MatrixType.CSC)

        def solve(b: np.ndarray) -> np.ndarray:
            x = np.zeros_like(b)
            solver.solve(b, x)
            return x

        return solve


class Pardiso:
    """MKL PARDISO through pypardiso, real SPD (mtype 2) on the upper triangle (our lower CSC read as CSR):
    phase 11 (analysis) once, 22 (numeric factorization) per matrix, 33 (solve) per right-hand side."""

    def __init__(self, pattern: Any):
        import pypardiso

        self.solver = pypardiso.PyPardisoSolver(mtype=2)
        self.matrix = sp.csr_matrix((np.zeros(pattern.nnz), pattern.indices, pattern.indptr), (pattern.n, pattern.n))
        self.matrix.has_sorted_indices = True
        self.analyzed = False

    def _call(self, phase: int, b: np.ndarray) -> np.ndarray:
        self.solver.set_phase(phase)
        return self.solver._call_pardiso(self.matrix, np.asfortranarray(b.reshape(-1, 1)))

    def factorize(self, data: np.ndarray) -> Callable[[np.ndarray], np.ndarray]:
        self.matrix.data = data
        zero = np.zeros(self.matrix.shape[0])
        if not self.analyzed:
            self.solver._check_A(self.matrix)  # sets CSR input (iparm 12)
            self._call(11, zero)
            self.analyzed = True
        self._call(22, zero)  # raises PyPardisoError on a non-positive pivot
        return lambda b: self._call(33, b)[:, 0]


def candidates() -> dict[str, Callable[[], LinearSolver]]:
    """The configurations beside ``cholmod`` and ``wheels`` whose packages import here."""
    found: dict[str, Callable[[], LinearSolver]] = {
        # A mode other than auto/block: BatchedSparseCholesky runs SuperLU alone, without the block factorization.
        "superlu": lambda: SparseCholesky(backend="scipy", mode="simplicial"),
    }
    for name, module, backend in (("qdldl", "qdldl", QDLDL), ("cholespy", "cholespy", Cholespy),
                                  ("pypardiso", "pypardiso", Pardiso)):
        try:
            importlib.import_module(module)
        except Exception:  # noqa: BLE001 - not installed, or pypardiso without MKL's library
            continue
        if name == "pypardiso":
            try:  # the wrapper finds mkl_rt only when it builds a solver
                importlib.import_module(module).PyPardisoSolver()
            except Exception:  # noqa: BLE001
                continue
        found[name] = lambda name=name, backend=backend: WheelSolver(name, backend)
    return found


# ------------------------------------------------------------------ the runs


class LinearSolverLine(logging.Handler):
    """Keeps the last ``linear solver: ...`` log line."""

    def __init__(self) -> None:
        super().__init__(logging.INFO)
        self.line = ""

    def emit(self, record: logging.LogRecord) -> None:
        if record.getMessage().startswith("linear solver:"):
            self.line = record.getMessage()


def configurations(with_candidates: bool) -> dict[str, Callable[[], contextlib.AbstractContextManager]]:
    configs: dict[str, Callable[[], contextlib.AbstractContextManager]] = {}
    if have_sksparse():
        configs["cholmod"] = contextlib.nullcontext
    configs["wheels"] = without_sksparse
    if with_candidates:
        for name, make in candidates().items():
            configs[name] = lambda make=make: sparse_solver_replaced(make)
    return configs


def measure(label: str, run: Callable[[], Any], configs: dict, repeats: int, lines: LinearSolverLine,
            cost: Callable[[Any], float]) -> tuple[list[object], list[str]]:
    """One row: per configuration the median seconds, its ratio to CHOLMOD's, the iterations (joined by
    "/"), CHOLMOD's (else the first configuration's) final cost and the largest relative difference of
    the others' from it; and the log lines of the automatic choice."""
    times: dict[str, list[float]] = {name: [] for name in configs}
    results: dict[str, Any] = {}
    notes = []
    for name, context in configs.items():  # untimed first solves (and each configuration's log line)
        solve_module._log_choice_once.cache_clear()
        lines.line = ""
        with context():
            results[name] = run()
        if name in ("cholmod", "wheels"):
            notes.append(f"{label} [{name}] {lines.line or '(no log line: dense or Schur)'}")
    for _ in range(repeats):
        for name, context in configs.items():
            with context():
                result = run()
            times[name].append(result.solve_seconds)
            results[name] = result
    median = {name: statistics.median(t) for name, t in times.items()}
    base = median.get("cholmod")
    reference = cost(next(iter(results.values())))
    spread = max(abs(cost(r) - reference) / abs(reference) for r in results.values())
    row: list[object] = [label, *(f"{median[name]:.3f}" for name in configs)]
    row += [f"{median[name] / base:.2f}" if base else "-" for name in configs if name != "cholmod"]
    row += ["/".join(str(results[name].iterations) for name in configs), f"{reference:.6e}", f"{spread:.1e}"]
    return row, notes


def header(configs: dict) -> list[str]:
    others = [name for name in configs if name != "cholmod"]
    return (["problem", *(f"{name} s" for name in configs), *(f"{name}/cholmod" for name in others),
             "iterations", "final cost", "max rel diff"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("names", nargs="*", default=POSE_GRAPHS, help="pose graphs (FILE.g2o in --pose-graph-dir)")
    parser.add_argument("--pose-graph-dir", type=Path, default=POSE_GRAPH_DIR)
    parser.add_argument("--ba", type=Path, action="append", help="a BAL problem (repeat the option for more; "
                                                                  "default: the shared ones and the bundled samples)")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--no-candidates", action="store_true", help="only cholmod and wheels")
    parser.add_argument("--no-ba", action="store_true")
    args = parser.parse_args()

    lines = LinearSolverLine()
    slam_log = logging.getLogger("slam")
    slam_log.addHandler(lines)
    slam_log.setLevel(logging.INFO)
    slam_log.propagate = False  # the per-iteration lines stay quiet; the handler keeps the solver's line

    configs = configurations(not args.no_candidates)
    rows, notes = [], []
    for name in args.names:
        path = args.pose_graph_dir / f"{name}.g2o"
        if not path.exists():
            print(f"skipped {path}: missing", flush=True)
            continue
        graph = read_g2o(path)
        row, note = measure(name, lambda: pgo_optimize(graph), configs, args.repeats, lines,
                            lambda r: r.final_chi2)
        rows.append(row)
        notes += note
        print(" ".join(str(c) for c in row), flush=True)
    if not args.no_ba:
        ba_configs = {k: v for k, v in configs.items() if k in ("cholmod", "wheels")}  # Schur: no sparse solver
        ba_rows = []
        for path in (p.resolve() for p in args.ba or BA_PROBLEMS):
            if not path.exists():
                print(f"skipped {path}: missing", flush=True)
                continue
            problem = read_bal(path)
            label = str(path.relative_to(ROOT)) if path.is_relative_to(ROOT) else f"shared: {path.name}"
            row, note = measure(label, lambda: ba_optimize(problem), ba_configs, args.repeats, lines,
                                lambda r: r.final_cost)
            ba_rows.append(row)
            notes += note
            print(" ".join(str(c) for c in row), flush=True)
    print(f"configurations: {', '.join(configs)}")
    print_table(header(configs), rows, title=f"Pose graphs: slam.pgo.optimize, median of {args.repeats} solves (s); "
                                             "cost: final chi2 (max rel diff: the other configurations' from it)")
    if not args.no_ba and ba_rows:
        print_table(header(ba_configs), ba_rows, title=f"BAL: slam.ba.optimize (Schur complement), median of "
                                                       f"{args.repeats} solves (s); cost: final ½Σ‖r‖²")
    print("\nThe automatic choice's log line per configuration:")
    for note in notes:
        print(" ", note)


if __name__ == "__main__":
    main()
