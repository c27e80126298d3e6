"""Our two block factorizations (``slam.linear._block_cholesky``, up-looking; ``slam.linear._supernodal``,
supernodal with BLAS panels) against CHOLMOD's simplicial and supernodal ones on pose-graph normal equations.

    python benchmarks/sparse_factorization.py [--data-dir ../shared/data/pose_graph] [--repeats 10] [names ...]

For each graph: ``H`` at the file's initial poses (plus 1e-3 I); the median seconds of ``--repeats``
numeric factorizations by each (the symbolic analyses are not timed; CHOLMOD with its default
ordering, ours on the block ordering the solver uses, ``_block_ordering``); ``flops / nnz(L)`` of
CHOLMOD's ordering and ``d·flops / nnz(L)`` of the block ordering (``slam.linear._fill.cholesky_work``);
the factorization ``auto`` takes from the latter (``BLOCK_SUPERNODES``, ``SUPERNODAL_SWITCH``, as the
sparse solver does) and CHOLMOD's faster time over that one's (> 1: ours faster).
Run with ``OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1`` for the 1-thread figures the switches were set from.
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

import scipy.sparse as sp
import torch

from slam.io import read_g2o
from slam.linear._block_cholesky import BlockPattern, block_structure
from slam.linear._supernodal import SupernodalPattern
from slam.linear._fill import BLOCK_SUPERNODES, SUPERNODAL_SWITCH, cholesky_work
from slam.linear.sparse_cholesky import _block_ordering, _cholmod

from _table import print_table

DEFAULT_DIR = Path(__file__).resolve().parents[2] / "shared" / "data" / "pose_graph"
DEFAULT_NAMES = ["smallGrid3D", "intel", "manhattan", "parking-garage", "sphere2500", "city10000"]


def factorization_seconds(cholmod, matrix: sp.csc_matrix, mode: str, repeats: int) -> float:
    factor = cholmod.analyze(matrix, mode=mode)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        factor.cholesky_inplace(matrix)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("names", nargs="*", default=DEFAULT_NAMES)
    parser.add_argument("--data-dir", type=Path, default=DEFAULT_DIR)
    parser.add_argument("--repeats", type=int, default=10)
    args = parser.parse_args()
    cholmod = _cholmod()
    if cholmod is None:
        raise SystemExit("this benchmark needs scikit-sparse (CHOLMOD)")
    header = ["graph", "n", "nnz(L)", "flops/nnz(L)", "block d·flops/nnz", "up-looking ms", "supernodal block ms",
              "CHOLMOD simplicial ms", "CHOLMOD supernodal ms", "up-looking/supernodal block",
              "CHOLMOD best/ours (auto)", "auto"]
    rows = []
    for name in args.names:
        graph = read_g2o(args.data_dir / f"{name}.g2o")
        problem, _ = graph.problem()
        with torch.no_grad():
            h, _, _ = problem.linearize(problem.initial_values())
        pattern = problem.structure.pattern
        matrix = sp.csc_matrix((h[0].numpy(), pattern.indices, pattern.indptr), (pattern.n, pattern.n))
        matrix = sp.csc_matrix(matrix + 1e-3 * sp.eye(pattern.n))
        lnz, flops = cholesky_work(pattern.indptr, pattern.indices, cholmod.analyze(matrix, mode="simplicial").P())
        simplicial = factorization_seconds(cholmod, matrix, "simplicial", args.repeats)
        supernodal = factorization_seconds(cholmod, matrix, "supernodal", args.repeats)
        d = problem.structure.tables[0].dim
        bindptr, bindices = block_structure(pattern.indptr, pattern.indices, d)
        block_perm = _block_ordering(cholmod, bindptr, bindices)
        block_lnz, block_flops = cholesky_work(bindptr, bindices, block_perm)
        block_ratio = d * block_flops / block_lnz  # what the solver's choice reads (_block_analysis)
        values = matrix.data[None, :].copy()
        kinds = [kind(pattern.indptr, pattern.indices, d, block_perm) for kind in (BlockPattern, SupernodalPattern)]
        times: list[list[float]] = [[], []]
        for blocks in kinds:
            blocks.factorize(values)  # compiles (once per machine) or loads the kernels
        for _ in range(args.repeats):  # interleaved, so that a load on the machine meets both alike
            for blocks, record in zip(kinds, times):
                start = time.perf_counter()
                blocks.factorize(values)
                record.append(time.perf_counter() - start)
        up_looking, supernodal_block = (statistics.median(t) for t in times)
        auto = ("CHOLMOD supernodal" if block_ratio >= SUPERNODAL_SWITCH else
                "supernodal block" if block_ratio >= BLOCK_SUPERNODES else "up-looking")
        ours = {"up-looking": up_looking, "supernodal block": supernodal_block, "CHOLMOD supernodal": supernodal}[auto]
        rows.append([name, pattern.n, lnz, f"{flops / lnz:.0f}", f"{block_ratio:.0f}", f"{1e3 * up_looking:.2f}",
                     f"{1e3 * supernodal_block:.2f}", f"{1e3 * simplicial:.2f}", f"{1e3 * supernodal:.2f}",
                     f"{up_looking / supernodal_block:.2f}", f"{min(simplicial, supernodal) / ours:.2f}", auto])
        print(" ".join(str(c) for c in rows[-1]), flush=True)
    print_table(header, rows)


if __name__ == "__main__":
    main()
