"""Batched forward kinematics and Jacobians: ours against pytorch-kinematics, in one run.

    python benchmarks/kinematics.py [--batch 10000] [--repeats 7] [--dtype float32|float64]

For each robot (Panda, KUKA iiwa, UR5 from ../shared/data/kinematics, or slam/data/ for the Panda):
B random configurations, the end-effector pose (ours: ``Kinematics.link_pose``; theirs:
``chain.forward_kinematics``) and its Jacobian (ours: the body-frame ``Kinematics.jacobian``, which
also returns the pose; theirs: the base-frame ``chain.jacobian``), median wall time of
``--repeats`` runs after one warm-up.  Ratios are their time / ours (> 1: ours faster).
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

import torch

from slam.kinematics import Kinematics, read_urdf

from _table import print_table

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared" / "data" / "kinematics"
ROBOTS = [("panda_no_gripper.urdf", "panda_virtual_ee_link"), ("kuka_iiwa.urdf", "lbr_iiwa_link_7"),
          ("ur5.urdf", "ee_link")]


def _median_time(fn, repeats: int) -> float:
    fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--batch", type=int, default=10_000)
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--dtype", choices=["float32", "float64"], default="float32")
    args = parser.parse_args()
    dtype = getattr(torch, args.dtype)
    import pytorch_kinematics as pk

    rows = []
    for urdf, ee in ROBOTS:
        path = SHARED / urdf if (SHARED / urdf).exists() else ROOT / "slam" / "data" / urdf
        if not path.exists():
            continue
        ours = Kinematics(read_urdf(path), dtype=dtype)
        chain = pk.build_serial_chain_from_urdf(path.read_bytes(), ee).to(dtype=dtype)
        q = ours.random_configurations(args.batch, generator=torch.Generator().manual_seed(0)).to(dtype)
        with torch.no_grad():
            fk_ours = _median_time(lambda: ours.link_pose(q, ee), args.repeats)
            fk_theirs = _median_time(lambda: chain.forward_kinematics(q), args.repeats)
            jac_ours = _median_time(lambda: ours.jacobian(q, ee), args.repeats)
            jac_theirs = _median_time(lambda: chain.jacobian(q), args.repeats)
        rows.append([path.stem, ours.dof, f"{1e3 * fk_ours:.2f}", f"{1e3 * fk_theirs:.2f}", f"{fk_theirs / fk_ours:.2f}x",
                     f"{1e3 * jac_ours:.2f}", f"{1e3 * jac_theirs:.2f}", f"{jac_theirs / jac_ours:.2f}x"])
    header = ["robot", "dof", "FK ours ms", "FK pk ms", "pk/ours", "J ours ms", "J pk ms", "pk/ours"]
    print_table(header, rows, title=f"B = {args.batch}, {args.dtype}, {torch.get_num_threads()} threads")


if __name__ == "__main__":
    main()
