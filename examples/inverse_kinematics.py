"""Batched inverse kinematics: 1,000 random reachable targets for the Panda in one call, with a report.

    python examples/inverse_kinematics.py [--urdf slam/data/panda_no_gripper.urdf] [--link panda_virtual_ee_link]
                                          [--targets 1000] [--seed 0] [--restarts 8] [--png iterations.png]

Targets are the link poses of configurations drawn uniformly within the joint limits (so each is
reachable); every solve starts from the middle of the joint ranges, and the targets it misses are
re-solved from seeded random configurations (``slam.kinematics.inverse_kinematics``).  Success:
position error < 1 mm and orientation error < 1e-3 rad.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch

from slam.kinematics import Kinematics, inverse_kinematics, read_urdf

DATA = Path(__file__).resolve().parents[1] / "slam" / "data"  # package data (slam.data.path)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--urdf", type=Path, default=DATA / "panda_no_gripper.urdf")
    parser.add_argument("--link", default="panda_virtual_ee_link")
    parser.add_argument("--targets", type=int, default=1000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--restarts", type=int, default=8)
    parser.add_argument("--png", type=Path, help="histogram of the iterations per target")
    args = parser.parse_args()

    kinematics = Kinematics(read_urdf(args.urdf))
    truth = kinematics.random_configurations(args.targets, generator=torch.Generator().manual_seed(args.seed))
    targets = kinematics.link_pose(truth, args.link)
    print(f"{kinematics.robot.name}: {kinematics.dof} joints, {args.targets} targets for {args.link}")

    start = time.perf_counter()
    result = inverse_kinematics(kinematics, args.link, targets, restarts=args.restarts)
    seconds = time.perf_counter() - start
    success = result.success()
    iterations = result.iterations.double()
    quantiles = torch.quantile(iterations, torch.tensor([0.5, 0.9, 0.99, 1.0], dtype=torch.float64)).tolist()
    print(f"success: {int(success.sum())}/{args.targets} = {100 * float(success.double().mean()):.1f} % "
          f"(position < 1 mm, rotation < 1e-3 rad) in {seconds:.2f} s")
    print("LM iterations per target (all rounds): median {:.0f}, 90 % {:.0f}, 99 % {:.0f}, max {:.0f}".format(*quantiles))
    edges = [0, 10, 20, 30, 50, 100, 200, 400, 10**9]
    counts = [int(((iterations >= a) & (iterations < b)).sum()) for a, b in zip(edges[:-1], edges[1:])]
    print("  histogram: " + ", ".join(f"[{a}, {b if b < 10**9 else 'inf'}): {c}" for a, b, c in
                                     zip(edges[:-1], edges[1:], counts)))
    reached = success.nonzero().squeeze(1)
    print(f"errors of the successes: position max {float(result.position_error[reached].max()):.2e} m, "
          f"rotation max {float(result.rotation_error[reached].max()):.2e} rad")
    if args.png:
        from matplotlib.figure import Figure

        fig = Figure(figsize=(6, 4), dpi=110)
        ax = fig.add_subplot()
        ax.hist(iterations.numpy(), bins=50)
        ax.set_xlabel("LM iterations per target")
        ax.set_ylabel("targets")
        ax.set_title(f"{kinematics.robot.name} IK: {100 * float(success.double().mean()):.1f} % success")
        fig.savefig(args.png)
        print(f"histogram: {args.png}")


if __name__ == "__main__":
    main()
