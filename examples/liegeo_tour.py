"""A five-minute tour of liegeo: batched groups, retraction-aware Jacobians, checks, interop.

    python examples/liegeo_tour.py
"""

import torch

from liegeo import SE2, SE3, SO3
from liegeo.interop import from_pypose, to_pypose
from liegeo.testing import check_jacobians


def main() -> None:
    generator = torch.Generator().manual_seed(0)

    # A batch of 4 x 3 poses and one pose per row of points.
    poses = SE3.random(4, 3, generator=generator, dtype=torch.float64)
    other = SE3.random(4, 3, generator=generator, dtype=torch.float64)
    print("batch shape:", tuple(poses.shape), "storage:", tuple(poses.data.shape), "(tx ty tz qx qy qz qw)")

    # Group operations, with Jacobians on request (right perturbations, tangent (v, ω)).
    relative, (j_a, j_b) = poses.between(other, jacobians=True)
    print("between:", tuple(relative.shape), "J_A:", tuple(j_a.shape), "J_B:", tuple(j_b.shape))
    points = torch.randn(4, 3, 10, 3, generator=generator, dtype=torch.float64)
    moved = poses[..., None].act(points)  # a point axis: 10 points per pose
    print("act on 10 points per pose:", tuple(moved.shape))

    # Every analytic Jacobian can be checked against autograd and central differences.
    errors = check_jacobians(lambda a, b: a.local(b), [poses, other], list(poses.local(other, jacobians=True)[1]))
    print("local() Jacobians, worst error vs autograd / finite differences: "
          f"{max(errors.values()):.1e}")

    # Conversions: quaternions are (x, y, z, w); SE(2) from (x, y, θ).
    r = SO3.from_quaternion(torch.tensor([0.0, 0.0, 0.7071068, 0.7071068]))
    print("90° about z, as rpy:", r.rpy().tolist())
    print("SE2 (1, 2, π/2) log:", SE2.from_xytheta(torch.tensor([1.0, 2.0, torch.pi / 2])).log().tolist())

    # pypose shares the SE3 storage layout, so values convert without copies.
    pp_poses = to_pypose(poses)
    print("pypose round trip exact:", torch.equal(from_pypose(pp_poses).data, poses.data))


if __name__ == "__main__":
    main()
