"""Trajectory smoothing: a Panda joint trajectory through end-effector waypoints, smoothed by least squares.

    python examples/trajectory_smoothing.py [--steps 40] [--waypoints 4] [--seed 0] [--margin 0.05]
        [--deviation-weight 1] [--limit-weight 0.1] [--png trajectory.png]

T configurations ``q_0 .. q_{T-1}`` are variables of one problem.  The initial trajectory interpolates
linearly (in joint space) between IK solutions of the waypoints, which has kinks at every waypoint;
LM on the sparse solver removes them.  The costs (all vectorized over the steps):

- ``LinkPose`` at the waypoint steps: the end effector keeps the waypoint poses (the task);
- ``JointAcceleration`` (and a light ``JointVelocity``): the motion becomes smooth;
- ``Prior`` on every ``q_t`` towards the initial ``q_t`` (a deviation term): the smoothed path stays near
  the one planned.  Without it (``--deviation-weight 0``) the smoother uses the arm's redundancy (7
  joints for a 6-dof pose) to buy smaller accelerations with much longer joint travel, e.g. to the end
  of a joint's range.  It discourages travel, it does not bound it: at the defaults (seeds 0-19) no
  joint's travel grew by more than 0.12 rad;
- ``LimitMargin``: a barrier that is zero while a joint is more than ``2 · margin`` inside its limits and
  grows as ``margin / d - 1`` as the distance ``d`` to the limits shrunk by ``margin`` goes to 0 (then
  steeply, linearly, beyond).  While one angle at the margin costs more than the whole initial
  trajectory (the script prints both), no LM iterate gets that close: LM never raises the cost
  (beyond rounding).  ``--limit-weight 0`` drops it, to show what it prevents.

The limits are the URDF's soft limits (``<safety_controller soft_lower_limit/soft_upper_limit>``) where
it gives them, inside the hard limits, else the hard ``<limit>``; the margin is taken inside those.
The script prints, per joint, the travel ``Σ_t |q_{t+1} - q_t|`` and the closest approach to each hard
and soft limit before and after, Σ‖acceleration‖², and how many angles lie outside each set of limits.
"""

from __future__ import annotations

import argparse
import dataclasses
import math
from pathlib import Path
from typing import Sequence

import torch
from torch import Tensor

import slam
from liegeo import Euclidean
from slam.costs import Cost, JointAcceleration, JointVelocity, LinkPose, Prior
from slam.kinematics import Kinematics, inverse_kinematics, read_urdf
from slam.variables import VariableRef
from slam.weights import ScalarWeight

DATA = Path(__file__).resolve().parents[1] / "slam" / "data"  # package data (slam.data.path)
LINK = "panda_virtual_ee_link"
WEIGHTS = {"pose": 1000.0, "acceleration": 10.0, "velocity": 0.1}
"""Scalar weights of the other cost terms (whitening: the cost is ``½ Σ (weight · r)²``)."""


class LimitMargin(Cost):
    """A barrier keeping each joint at least ``margin`` inside ``[lower, upper]`` (``(dof,)``, ±inf: free).

    Per joint the residual is ``b(q - lower - margin) + b(upper - margin - q)``, with ``b(d) = band / d - 1``
    for ``d`` in ``[floor, band)``, ``floor = band / 100``, 0 for ``d ≥ band``, and ``b``'s tangent line
    at ``floor`` below it: finite everywhere (a trial step past the margin is a large cost, not a NaN),
    decreasing, and ``b²`` is C¹ at ``band``.  At the margin ``b(0) = AT_MARGIN = 2 band / floor - 1 = 199``.
    """

    AT_MARGIN = 199.0

    def __init__(self, q: VariableRef, *, lower: Tensor, upper: Tensor, margin: float, band: float,
                 weight: ScalarWeight | None = None):
        super().__init__(q, weight=weight, name="limit margin")
        self.lower, self.upper, self.band = lower + margin, upper - margin, band

    def _side(self, d: Tensor) -> tuple[Tensor, Tensor]:
        """``b(d)`` and ``db/dd`` (0 for ``d = inf``, a joint without that limit); autograd through it
        is finite too: every branch sees a finite ``d``."""
        floor = self.band / 100.0
        near = d < self.band
        d = torch.where(near, d, torch.full_like(d, self.band))  # b(band) = 0 exactly
        clamped = d.clamp(min=floor)
        slope = torch.where(near, -self.band / clamped.square(), torch.zeros_like(d))
        below = torch.where(d < floor, slope * (d - floor), torch.zeros_like(d))  # the tangent line
        return self.band / clamped - 1.0 + below, slope

    def residual_and_jacobians(self, q: Euclidean) -> tuple[Tensor, list[Tensor]]:
        below, d_below = self._side(q.data - self.lower.to(q.data))
        above, d_above = self._side(self.upper.to(q.data) - q.data)
        return below + above, [torch.diag_embed(d_below - d_above)]

    def residual(self, q: Euclidean) -> Tensor:
        return self.residual_and_jacobians(q)[0]


@dataclasses.dataclass(frozen=True)
class Limits:
    """Per-joint limits ``(dof,)``: hard (``<limit>``), soft (``<safety_controller>``, NaN where the
    URDF gives none) and the ones the smoother keeps to (soft within hard, else hard), ``margin`` inside."""

    hard_lower: Tensor
    hard_upper: Tensor
    soft_lower: Tensor
    soft_upper: Tensor
    margin: float

    @classmethod
    def of(cls, kinematics: Kinematics, margin: float) -> "Limits":
        def soft(values: list[float | None]) -> Tensor:
            return torch.tensor([math.nan if v is None else v for v in values], dtype=kinematics.dtype)

        joints = kinematics.robot.movable_joints
        return cls(kinematics.lower, kinematics.upper, soft([j.soft_lower for j in joints]),
                   soft([j.soft_upper for j in joints]), margin)

    @property
    def lower(self) -> Tensor:
        """The lower limit kept to (before the margin)."""
        return torch.where(torch.isnan(self.soft_lower), self.hard_lower, torch.maximum(self.soft_lower, self.hard_lower))

    @property
    def upper(self) -> Tensor:
        return torch.where(torch.isnan(self.soft_upper), self.hard_upper, torch.minimum(self.soft_upper, self.hard_upper))

    @property
    def has_soft(self) -> bool:
        return bool((~torch.isnan(self.soft_lower) | ~torch.isnan(self.soft_upper)).any())


@dataclasses.dataclass(frozen=True)
class Figures:
    """What the script reports about one trajectory ``(T, dof)``."""

    waypoint_position_error: float
    """Largest end-effector position error at the waypoints (metres)."""
    waypoint_rotation_error: float
    """Largest rotation error there (radians)."""
    acceleration: float
    """``Σ_t ‖q_{t+1} - 2 q_t + q_{t-1}‖²`` (rad²)."""
    largest_step: float
    """Largest ``‖q_{t+1} - q_t‖`` (rad)."""
    travel: Tensor
    """Per joint ``Σ_t |q_{t+1} - q_t|`` (rad), ``(dof,)``."""
    to_hard_lower: Tensor
    """Per joint ``min_t (q_t - hard lower)`` (rad; negative: past it); likewise the three below."""
    to_hard_upper: Tensor
    to_soft_lower: Tensor
    """NaN for a joint without that soft limit."""
    to_soft_upper: Tensor
    outside_hard: int
    """Angles ``q_t[j]`` outside the hard limits; likewise the soft (where given) and the kept limits
    shrunk by the margin."""
    outside_soft: int
    outside_margin: int

    @property
    def closest_to_kept(self) -> Tensor:
        """Per joint, the closest approach to the limits kept to (soft where given, else hard)."""
        lower = torch.where(torch.isnan(self.to_soft_lower), self.to_hard_lower, torch.minimum(self.to_soft_lower, self.to_hard_lower))
        upper = torch.where(torch.isnan(self.to_soft_upper), self.to_hard_upper, torch.minimum(self.to_soft_upper, self.to_hard_upper))
        return torch.minimum(lower, upper)


def figures(kinematics: Kinematics, limits: Limits, trajectory: Tensor, at: Tensor, waypoints) -> Figures:
    reached = kinematics.link_pose(trajectory[at], LINK)
    position = (reached.translation() - waypoints.translation()).norm(dim=-1).max()
    rotation = waypoints.rotation().local(reached.rotation()).norm(dim=-1).max()
    acceleration = trajectory[2:] - 2 * trajectory[1:-1] + trajectory[:-2]
    steps = trajectory[1:] - trajectory[:-1]
    outside_soft = (trajectory < limits.soft_lower) | (trajectory > limits.soft_upper)  # False against NaN: none
    return Figures(
        waypoint_position_error=float(position), waypoint_rotation_error=float(rotation),
        acceleration=float(acceleration.square().sum()), largest_step=float(steps.norm(dim=-1).max()),
        travel=steps.abs().sum(0),
        to_hard_lower=(trajectory - limits.hard_lower).amin(0), to_hard_upper=(limits.hard_upper - trajectory).amin(0),
        to_soft_lower=(trajectory - limits.soft_lower).amin(0), to_soft_upper=(limits.soft_upper - trajectory).amin(0),
        outside_hard=int(((trajectory < limits.hard_lower) | (trajectory > limits.hard_upper)).sum()),
        outside_soft=int(outside_soft.sum()),
        outside_margin=int(((trajectory < limits.lower + limits.margin) | (trajectory > limits.upper - limits.margin)).sum()),
    )


@dataclasses.dataclass(frozen=True)
class Outcome:
    kinematics: Kinematics
    limits: Limits
    at: Tensor
    """The waypoint steps."""
    initial: Tensor
    smoothed: Tensor
    """``(T, dof)`` trajectories."""
    before: Figures
    after: Figures
    result: slam.SolveResult
    at_margin_cost: float
    """The cost of one angle at the margin, ``½ (w · LimitMargin.AT_MARGIN)²``: while it exceeds
    ``result.initial_cost`` no iterate of LM (which never raises the cost) reaches the margin."""


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--urdf", type=Path, default=DATA / "panda_no_gripper.urdf")
    parser.add_argument("--steps", type=int, default=40)
    parser.add_argument("--waypoints", type=int, default=4)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--margin", type=float, default=0.05,
                        help="radians (metres for a prismatic joint) every angle keeps inside the soft limits "
                             "(the hard ones where the URDF has no soft limit); the barrier starts at twice "
                             "that (default 0.05, about 3°)")
    parser.add_argument("--deviation-weight", type=float, default=1.0,
                        help="weight of q_t - initial q_t (rad⁻¹; 0: no deviation term; default 1)")
    parser.add_argument("--limit-weight", type=float, default=0.1,
                        help="weight of the limit-margin barrier (0: none, to see what it prevents; default 0.1)")
    parser.add_argument("--png", type=Path, help="joint angles before and after, with the limits")
    return parser.parse_args(argv)


def smooth(args: argparse.Namespace) -> Outcome:
    if not args.margin > 0:
        raise SystemExit(f"--margin must be positive, got {args.margin}")
    kinematics = Kinematics(read_urdf(args.urdf))
    limits = Limits.of(kinematics, args.margin)
    generator = torch.Generator().manual_seed(args.seed)
    # Waypoints: poses of nearby configurations (a random walk), so a smooth path between them exists;
    # the walk keeps 0.05 rad more than the margin inside the limits, which leaves the IK solutions room.
    anchor = kinematics.random_configurations(1, generator=generator)[0] * 0.5
    walk = anchor + torch.cumsum(0.4 * torch.randn(args.waypoints, kinematics.dof, generator=generator,
                                                    dtype=torch.float64), dim=0)
    inset = args.margin + 0.05
    walk = torch.maximum(torch.minimum(walk, limits.upper - inset), limits.lower + inset)
    waypoints = kinematics.link_pose(walk, LINK)
    at = torch.linspace(0, args.steps - 1, args.waypoints).round().long()

    solved = inverse_kinematics(kinematics, LINK, waypoints, walk + 0.05).q.detach()
    segment = torch.clamp(torch.searchsorted(at, torch.arange(args.steps), right=True) - 1, max=args.waypoints - 2)
    local = (torch.arange(args.steps) - at[segment]) / (at[segment + 1] - at[segment])
    initial = solved[segment] + local.unsqueeze(-1).double() * (solved[segment + 1] - solved[segment])
    before = figures(kinematics, limits, initial, at, waypoints)
    if before.outside_margin:
        raise SystemExit(f"the initial trajectory has {before.outside_margin} angles within {args.margin} of the "
                         f"limits; the barrier needs a start inside them (try a smaller --margin or another --seed)")

    q = slam.Variable(Euclidean(initial.clone()), name="q")
    t = torch.arange(args.steps)
    costs = [
        LinkPose(q[at], kinematics=kinematics, link=LINK, target=waypoints, weight=ScalarWeight(WEIGHTS["pose"])),
        JointAcceleration(q[t[:-2]], q[t[1:-1]], q[t[2:]], weight=ScalarWeight(WEIGHTS["acceleration"])),
        JointVelocity(q[t[:-1]], q[t[1:]], weight=ScalarWeight(WEIGHTS["velocity"])),
    ]
    if args.limit_weight > 0:
        costs.append(LimitMargin(q[t], lower=limits.lower, upper=limits.upper, margin=args.margin, band=args.margin,
                                 weight=ScalarWeight(args.limit_weight)))
    if args.deviation_weight > 0:
        costs.append(Prior(q[t], measurement=Euclidean(initial), weight=ScalarWeight(args.deviation_weight)))
    result = slam.solve(slam.Problem(costs), slam.LevenbergMarquardt(max_iterations=100))
    smoothed = result[q].data
    return Outcome(kinematics, limits, at, initial, smoothed, before, figures(kinematics, limits, smoothed, at, waypoints),
                   result, 0.5 * (args.limit_weight * LimitMargin.AT_MARGIN) ** 2)


def report(args: argparse.Namespace, outcome: Outcome) -> None:
    kinematics, limits, before, after = outcome.kinematics, outcome.limits, outcome.before, outcome.after
    names = kinematics.robot.joint_names
    print(f"{kinematics.robot.name}: {args.steps} steps, {args.waypoints} waypoints at steps {outcome.at.tolist()}; "
          f"LM {int(outcome.result.iterations[0])} iterations ({outcome.result.termination[0]})")
    kept = "soft limits (hard where none)" if limits.has_soft else "hard limits"
    print(f"kept: {args.margin} rad inside the {kept}; weights: deviation {args.deviation_weight}, "
          f"limit margin {args.limit_weight}")
    for name, f in (("initial", before), ("smoothed", after)):
        print(f"{name:>9}: waypoint error max {1e3 * f.waypoint_position_error:.3f} mm / {f.waypoint_rotation_error:.2e} rad, "
              f"Σ‖acceleration‖² {f.acceleration:.4e} rad², largest step {f.largest_step:.3f} rad; of "
              f"{outcome.initial.numel()} angles {f.outside_hard} outside the hard limits, {f.outside_soft} outside the "
              f"soft ones, {f.outside_margin} outside the {kept} shrunk by the margin")

    def pair(x: Tensor, y: Tensor, j: int) -> str:
        return f"{'-':>15}" if math.isnan(float(x[j])) else f"{float(x[j]):6.3f} → {float(y[j]):6.3f}"

    print("per joint, initial → smoothed (rad): travel Σ_t |Δq|, and closest approach to each limit, "
          "min_t (q - lower) and min_t (upper - q)")
    print(f"{'joint':<13} {'kept limits':>17} {'travel':>15} {'hard lower':>15} {'hard upper':>15} "
          f"{'soft lower':>15} {'soft upper':>15}")
    for j, name in enumerate(names):
        print(f"{name:<13} [{float(limits.lower[j]):7.4f}, {float(limits.upper[j]):6.4f}] "
              f"{pair(before.travel, after.travel, j)} {pair(before.to_hard_lower, after.to_hard_lower, j)} "
              f"{pair(before.to_hard_upper, after.to_hard_upper, j)} {pair(before.to_soft_lower, after.to_soft_lower, j)} "
              f"{pair(before.to_soft_upper, after.to_soft_upper, j)}")
    growth = after.travel - before.travel
    worst, nearest = int(growth.argmax()), int(after.closest_to_kept.argmin())
    print(f"Σ‖acceleration‖² {before.acceleration:.4e} → {after.acceleration:.4e} rad² "
          f"({before.acceleration / after.acceleration:.1f}× less); travel grows by at most {float(growth[worst]):+.3f} rad "
          f"({names[worst]}: {float(before.travel[worst]):.3f} → {float(after.travel[worst]):.3f}), total "
          f"{float(before.travel.sum()):.3f} → {float(after.travel.sum()):.3f} rad; closest approach to the {kept} "
          f"{float(after.closest_to_kept[nearest]):.4f} rad ({names[nearest]}; margin {args.margin})")
    initial_cost = float(outcome.result.initial_cost[0])
    held = ("so no LM iterate can reach it" if initial_cost < outcome.at_margin_cost
            else "so nothing stops an iterate from crossing it")
    print(f"one angle at the margin would cost {outcome.at_margin_cost:.1f}; the initial trajectory costs "
          f"{initial_cost:.4g}, {held}")


def plot(path: Path, outcome: Outcome) -> None:
    from matplotlib.figure import Figure

    kinematics, limits, at = outcome.kinematics, outcome.limits, outcome.at
    dof = kinematics.dof
    cols = min(dof, 4)
    rows = -(-dof // cols)
    fig = Figure(figsize=(3.2 * cols, 2.5 * rows + 0.5), dpi=110, layout="constrained")
    axes = fig.subplots(rows, cols, sharex=True, squeeze=False).ravel()
    steps = torch.arange(outcome.initial.shape[0]).numpy()
    lines = ((limits.hard_lower, limits.hard_upper, dict(color="C3", linewidth=1.0), "hard limit"),
             (limits.soft_lower, limits.soft_upper, dict(color="C1", linewidth=1.0, linestyle="-."), "soft limit"),
             (limits.lower + limits.margin, limits.upper - limits.margin, dict(color="C2", linewidth=1.0, linestyle=":"),
              f"{'soft' if limits.has_soft else 'hard'} limit ∓ margin ({limits.margin} rad)"))
    for j, ax in enumerate(axes[:dof]):
        ax.plot(steps, outcome.initial[:, j].numpy(), "--", color="0.45", linewidth=1.0, label="initial")
        ax.plot(steps, outcome.smoothed[:, j].numpy(), color="C0", linewidth=1.5, label="smoothed")
        # The trajectory's own range, and the limits within 0.3 rad of it (not the whole range, up to 6 rad).
        both = torch.cat([outcome.initial[:, j], outcome.smoothed[:, j]])
        low, high = float(both.min()), float(both.max())
        shown = [low, high]
        for lower, upper, style, label in lines:
            for value in (float(lower[j]), float(upper[j])):
                if math.isfinite(value) and low - 0.3 <= value <= high + 0.3:
                    ax.axhline(value, label=label, **style)
                    shown.append(value)
        pad = max(0.05, 0.08 * (max(shown) - min(shown)))
        ax.set_ylim(min(shown) - pad, max(shown) + pad)
        for k in at.tolist():
            ax.axvline(k, color="0.85", linewidth=0.6, zorder=0)
        ax.set_title(f"{kinematics.robot.joint_names[j]}: travel {float(outcome.before.travel[j]):.2f} → "
                     f"{float(outcome.after.travel[j]):.2f} rad", fontsize="small")
        ax.tick_params(labelsize="x-small", labelbottom=j >= dof - cols)
        if j % cols == 0:
            ax.set_ylabel("joint angle (rad)", fontsize="small")
        if j >= dof - cols:
            ax.set_xlabel("step", fontsize="small")
    labels: dict[str, object] = {}
    for ax in axes[:dof]:  # each line style once, from whichever joint shows it
        for handle, label in zip(*ax.get_legend_handles_labels()):
            labels.setdefault(label, handle)
    labels["waypoint step"] = axes[0].get_lines()[-1]
    for ax in axes[dof:]:
        ax.axis("off")
    if len(axes) > dof:
        axes[dof].legend(list(labels.values()), list(labels), loc="center", fontsize="small")
    else:
        fig.legend(list(labels.values()), list(labels), loc="outside lower center", ncol=len(labels), fontsize="small")
    fig.suptitle(f"{kinematics.robot.name}: joint trajectories, initial and smoothed (Σ‖acceleration‖² "
                 f"{outcome.before.acceleration:.2e} → {outcome.after.acceleration:.2e} rad²)", fontsize="medium")
    fig.savefig(path)


def main(argv: Sequence[str] | None = None) -> Outcome:
    args = parse_args(argv)
    outcome = smooth(args)
    report(args, outcome)
    if args.png:
        plot(args.png, outcome)
        print(f"plot: {args.png}")
    return outcome


if __name__ == "__main__":
    main()
