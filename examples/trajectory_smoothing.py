"""Trajectory smoothing: a Panda joint trajectory through end-effector waypoints, smoothed by least squares.

    python examples/trajectory_smoothing.py [--steps 40] [--waypoints 4] [--seed 0] [--png trajectory.png]

T configurations ``q_0 .. q_{T-1}`` are variables of one problem: ``LinkPose`` costs pin the end
effector to waypoint poses at evenly spaced steps, ``JointAcceleration`` (and a light
``JointVelocity``) costs make the motion smooth, and ``JointLimits`` keep it inside the limits.
The initial trajectory interpolates linearly (in joint space) between IK solutions of the waypoints,
which has kinks at every waypoint; LM on the sparse solver removes them while keeping the waypoints.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch

import slam
from liegeo import Euclidean
from slam.costs import JointAcceleration, JointLimits, JointVelocity, LinkPose
from slam.kinematics import Kinematics, inverse_kinematics, read_urdf
from slam.weights import ScalarWeight

DATA = Path(__file__).resolve().parents[1] / "data"
LINK = "panda_virtual_ee_link"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--urdf", type=Path, default=DATA / "panda_no_gripper.urdf")
    parser.add_argument("--steps", type=int, default=40)
    parser.add_argument("--waypoints", type=int, default=4)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--png", type=Path, help="joint angles before and after")
    args = parser.parse_args()

    kinematics = Kinematics(read_urdf(args.urdf))
    generator = torch.Generator().manual_seed(args.seed)
    # Waypoints: poses of nearby configurations (a random walk), so a smooth path between them exists.
    anchor = kinematics.random_configurations(1, generator=generator)[0] * 0.5
    walk = anchor + torch.cumsum(0.4 * torch.randn(args.waypoints, kinematics.dof, generator=generator,
                                                    dtype=torch.float64), dim=0)
    walk = torch.maximum(torch.minimum(walk, kinematics.upper - 0.1), kinematics.lower + 0.1)
    waypoints = kinematics.link_pose(walk, LINK)
    at = torch.linspace(0, args.steps - 1, args.waypoints).round().long()

    solved = inverse_kinematics(kinematics, LINK, waypoints, walk + 0.05).q.detach()
    segment = torch.clamp(torch.searchsorted(at, torch.arange(args.steps), right=True) - 1, max=args.waypoints - 2)
    local = (torch.arange(args.steps) - at[segment]) / (at[segment + 1] - at[segment])
    initial = solved[segment] + local.unsqueeze(-1).double() * (solved[segment + 1] - solved[segment])

    q = slam.Variable(Euclidean(initial.clone()), name="q")
    t = torch.arange(args.steps)
    costs = [
        LinkPose(q[at], kinematics=kinematics, link=LINK, target=waypoints, weight=ScalarWeight(100.0)),
        JointAcceleration(q[t[:-2]], q[t[1:-1]], q[t[2:]], weight=ScalarWeight(10.0)),
        JointVelocity(q[t[:-1]], q[t[1:]], weight=ScalarWeight(0.1)),
        JointLimits(q[t], kinematics=kinematics, weight=ScalarWeight(100.0)),
    ]
    problem = slam.Problem(costs)
    result = slam.solve(problem, slam.LevenbergMarquardt(max_iterations=100))
    smoothed = result[q].data

    def report(name: str, trajectory: torch.Tensor) -> None:
        reached = kinematics.link_pose(trajectory[at], LINK)
        position = (reached.translation() - waypoints.translation()).norm(dim=-1).max()
        rotation = waypoints.rotation().local(reached.rotation()).norm(dim=-1).max()
        acceleration = trajectory[2:] - 2 * trajectory[1:-1] + trajectory[:-2]
        outside = ((trajectory < kinematics.lower) | (trajectory > kinematics.upper)).sum()
        print(f"{name:>9}: waypoint error max {1e3 * float(position):.3f} mm / {float(rotation):.2e} rad, "
              f"Σ‖acceleration‖² {float(acceleration.square().sum()):.4e}, "
              f"largest step {float((trajectory[1:] - trajectory[:-1]).norm(dim=-1).max()):.3f} rad, "
              f"{int(outside)} angles outside the limits")

    print(f"{kinematics.robot.name}: {args.steps} steps, {args.waypoints} waypoints at steps {at.tolist()}; "
          f"LM {int(result.iterations[0])} iterations ({result.termination[0]})")
    report("initial", initial)
    report("smoothed", smoothed)
    if args.png:
        from matplotlib.figure import Figure

        fig = Figure(figsize=(8, 5), dpi=110)
        ax = fig.add_subplot()
        for k in range(kinematics.dof):
            line, = ax.plot(initial[:, k].numpy(), "--", linewidth=0.8)
            ax.plot(smoothed[:, k].numpy(), color=line.get_color(), label=kinematics.robot.joint_names[k])
        ax.vlines(at.numpy(), *ax.get_ylim(), colors="0.7", linewidths=0.5)
        ax.set_xlabel("step")
        ax.set_ylabel("joint angle (rad)")
        ax.set_title("initial (dashed) and smoothed joint trajectories; waypoints in grey")
        ax.legend(fontsize="x-small", ncol=2)
        fig.savefig(args.png)
        print(f"plot: {args.png}")


if __name__ == "__main__":
    main()
