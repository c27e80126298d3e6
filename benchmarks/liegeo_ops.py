"""SE(3) operation throughput: liegeo against pypose on the same inputs, in one run.

    python benchmarks/liegeo_ops.py [--n 1000000] [--repeats 11] [--dtype float32] [--device cpu]

Prints the median wall time of each operation for both libraries and the ratio
pypose / liegeo (> 1 means liegeo is faster).  Inputs are drawn once; each
operation runs once untimed first, then ``--repeats`` timed times, alternating
with pypose's run, without autograd recording.
"""

from __future__ import annotations

import argparse
import statistics
import time
from typing import Callable

import torch

from liegeo import SE3


def paired_medians(
    ours: Callable[[], object], theirs: Callable[[], object], repeats: int, device: torch.device
) -> tuple[float, float]:
    """Median seconds of two callables, timed alternately so machine noise hits both alike."""

    def timed(fn: Callable[[], object]) -> float:
        start = time.perf_counter()
        fn()
        if device.type == "cuda":
            torch.cuda.synchronize()
        return time.perf_counter() - start

    timed(ours), timed(theirs)  # warm-up
    samples = [(timed(ours), timed(theirs)) for _ in range(repeats)]
    return statistics.median(s[0] for s in samples), statistics.median(s[1] for s in samples)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=1_000_000, help="number of poses")
    parser.add_argument("--repeats", type=int, default=11)
    parser.add_argument("--dtype", choices=["float32", "float64"], default="float32")
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()

    import pypose as pp

    dtype, device = getattr(torch, args.dtype), torch.device(args.device)
    generator = torch.Generator().manual_seed(0)
    a = SE3.random(args.n, generator=generator, dtype=dtype).to(device)
    b = SE3.random(args.n, generator=generator, dtype=dtype).to(device)
    points = torch.randn(args.n, 3, generator=generator, dtype=dtype).to(device)
    xi = (0.5 * torch.randn(args.n, 6, generator=generator, dtype=dtype)).to(device)
    pa, pb, pxi = pp.SE3(a.data), pp.SE3(b.data), pp.se3(xi)

    operations = {
        "compose": (lambda: a @ b, lambda: pa @ pb),
        "act": (lambda: a.act(points), lambda: pa.Act(points)),
        "log": (lambda: a.log(), lambda: pa.Log()),
        "exp": (lambda: SE3.exp(xi), lambda: pxi.Exp()),
        "inverse": (lambda: a.inverse(), lambda: pa.Inv()),
    }
    print(f"SE3, {args.n:,} poses, {args.dtype}, {device}, torch {torch.__version__}, "
          f"pypose {pp.__version__}, {torch.get_num_threads()} threads, median of {args.repeats}")
    print(f"{'operation':<10} {'liegeo ms':>10} {'pypose ms':>10} {'pypose/liegeo':>14}")
    with torch.no_grad():
        for name, (ours, theirs) in operations.items():
            t_ours, t_theirs = paired_medians(ours, theirs, args.repeats, device)
            print(f"{name:<10} {1e3 * t_ours:>10.2f} {1e3 * t_theirs:>10.2f} {t_theirs / t_ours:>13.2f}x")


if __name__ == "__main__":
    main()
