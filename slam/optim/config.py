"""Optimizer and backward-mode configurations: frozen dataclasses, validated on creation.

Field names map one-to-one onto command-line flags and benchmark logs.
"""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING, Literal, Union

from .._docs import document_fields
from ..linear.base import LinearSolver

if TYPE_CHECKING:
    from .steps import StepStrategy

SolverChoice = Union[Literal["auto", "dense", "cholmod", "cg"], LinearSolver]


@dataclasses.dataclass(frozen=True)
class _Common:
    max_iterations: int = 50
    """Upper bound on iterations (linearizations)."""
    function_tolerance: float = 1e-6
    """Converged when an accepted step lowers the cost by at most this fraction of it (at least
    128 eps of the dtype: float32 stops where float64 does; ``slam.optim.loop.tolerance_floors``)."""
    absolute_tolerance: float = 0.0
    """Converged when an accepted step lowers the cost by at most this much."""
    gradient_tolerance: float = 1e-10
    """Converged when ``max |Jᵀr| <=`` this."""
    gradient_cosine_tolerance: float = 0.0
    """Converged when ``max_j |gⱼ| / sqrt(Hⱼⱼ · 2 cost) <=`` this: the largest cosine between the residual
    vector and a column of the Jacobian (``‖Jⱼ‖² = Hⱼⱼ``, ``‖r‖² = 2 cost``), MINPACK's and scipy's ``gtol``.
    Unlike ``gradient_tolerance`` it does not depend on the units of the parameters or the residuals,
    and it does not call a point converged where a direction has lost its influence (``Jⱼ`` tiny but
    still along ``r``: a plateau).  Columns with ``Hⱼⱼ = 0`` are skipped; 0 (default) disables it."""
    parameter_tolerance: float = 1e-8
    """Converged when ``‖δ‖ <= tol · (‖x‖ + tol)`` (x: the storage of the free variables; tol at least
    32 eps of the dtype)."""
    cost_tolerance: float = 0.0
    """Converged when the cost is at most this."""
    linear_solver: SolverChoice = "auto"
    """``"dense"`` (batched Cholesky), ``"cholmod"`` (sparse direct, CPU: CHOLMOD, or SciPy's SuperLU
    where scikit-sparse is missing), ``"cg"`` (PCG, any device), a ``LinearSolver`` instance, or
    ``"auto"``: on the CPU dense up to 100 free dimensions and sparse direct above (one log line says
    when it is SuperLU); elsewhere dense up to 1,000 and PCG above (logged once)."""
    progress: bool = False
    """Show a progress bar (tqdm) besides the per-iteration log lines."""

    def __post_init__(self) -> None:
        if self.max_iterations < 0:
            raise ValueError(f"max_iterations must be >= 0, got {self.max_iterations}")
        for name in ("function_tolerance", "absolute_tolerance", "gradient_tolerance", "gradient_cosine_tolerance",
                     "parameter_tolerance", "cost_tolerance"):
            if not getattr(self, name) >= 0:
                raise ValueError(f"{name} must be >= 0, got {getattr(self, name)}")
        if isinstance(self.linear_solver, str) and self.linear_solver not in ("auto", "dense", "cholmod", "cg"):
            raise ValueError(f"linear_solver must be auto, dense, cholmod, cg or a LinearSolver; got {self.linear_solver!r}")


@document_fields
@dataclasses.dataclass(frozen=True)
class GaussNewton(_Common):
    """Undamped Gauss-Newton: every step ``δ = -H⁻¹ g`` is taken (times ``step_size``).

    A singular ``H`` (e.g. an unfixed gauge) raises ``SingularSystemError`` with the sparse and
    iterative solvers; with the dense solver the minimum-norm least-squares step is taken, and a
    solve whose last system was rank-deficient ends with ``converged`` False (its solution is not
    unique).
    """

    step_size: float = 1.0

    def strategy(self) -> type[StepStrategy]:
        from .gauss_newton import GaussNewtonSteps

        return GaussNewtonSteps


@document_fields
@dataclasses.dataclass(frozen=True)
class LevenbergMarquardt(_Common):
    """Levenberg-Marquardt with a trust-region damping update (Nielsen 1999, as in Ceres).

    Steps solve ``(H + λD) δ = -g``; a step is accepted when the actual cost decrease is at
    least ``min_step_quality`` times the decrease the linear model predicted (ratio ρ), and
    then ``λ ← λ · max(1/3, 1 - (2ρ - 1)³)``; a rejected step multiplies λ by ν and doubles ν.
    """

    initial_damping: float = 1e-4
    damping: Literal["marquardt", "marquardt-current", "levenberg"] = "marquardt"
    """``"marquardt"``: ``D`` = the largest ``diag(H)`` seen so far in the solve, clamped to
    ``[min_diagonal, max_diagonal]`` (ellipsoidal and scale invariant; the running maximum, as in
    MINPACK, keeps a direction whose curvature collapses from taking huge steps: without it LM
    crawls on Brown-Dennis); ``"marquardt-current"``: the current ``diag(H)``, clamped, as Ceres does
    (measured on BAL Ladybug-49: 32 iterations to the optimum, where the running maximum needs more
    than 50); ``"levenberg"``: ``D = I``."""
    min_diagonal: float = 1e-6
    max_diagonal: float = 1e32
    min_step_quality: float = 1e-3
    min_damping_decrease: float = 1.0 / 3.0
    """The most an accepted step may divide λ by (Nielsen's update caps the factor at 1/3)."""
    max_damping: float = 1e16
    """A problem whose λ grows past this stops ("no decrease possible")."""
    rejected_step_tolerance: bool = False
    """Also apply ``parameter_tolerance`` to rejected steps (with a finite trial cost): once a rejected
    step is that short, every later trial from the same point is shorter still, so x can no longer
    change by more than the tolerance, and the solve stops converged ("parameter tolerance"), as
    MINPACK's ``xtol`` test on its trust-region radius and Ceres' ``min_trust_region_radius`` do.
    Off by default: GTSAM, whose stopping rules ``slam.solve`` follows, tests accepted steps only."""

    def strategy(self) -> type[StepStrategy]:
        from .levenberg_marquardt import LevenbergMarquardtSteps

        return LevenbergMarquardtSteps

    def __post_init__(self) -> None:
        super().__post_init__()
        if not self.initial_damping > 0:
            raise ValueError(f"initial_damping must be > 0, got {self.initial_damping}")
        if self.damping not in ("marquardt", "marquardt-current", "levenberg"):
            raise ValueError(f"damping must be marquardt, marquardt-current or levenberg, got {self.damping!r}")


@document_fields
@dataclasses.dataclass(frozen=True)
class Dogleg(_Common):
    """Powell's dogleg in a trust region (GTSAM's ``DoglegOptimizer``, Ceres' ``DOGLEG``).

    One factorization of ``H`` per linearization point gives the Gauss-Newton step; with the
    Cauchy point (steepest descent to the model's minimum along ``-g``) it spans the dogleg path,
    cut at the trust radius Δ.  Accepted when the gain ratio ρ exceeds ``min_step_quality``; ρ > 0.75
    grows Δ to at least 3‖δ‖, ρ < 0.25 or a rejection shrinks it to ‖δ‖/2; a rejected step reuses
    both steps (no refactorization).  Where ``H`` is singular (a free gauge) the Gauss-Newton step
    of a slightly regularized ``H`` is used; the region bounds it.  Stops converged
    ("parameter tolerance") once Δ is within ``parameter_tolerance`` of ``‖x‖`` (the next step is no
    longer: MINPACK's and Ceres' stop on the trust radius).
    """

    initial_radius: float = 1.0
    """Δ₀ in tangent units (GTSAM's ``deltaInitial``)."""
    min_step_quality: float = 1e-3

    def strategy(self) -> type[StepStrategy]:
        from .dogleg import DoglegSteps

        return DoglegSteps

    def __post_init__(self) -> None:
        super().__post_init__()
        if not self.initial_radius > 0:
            raise ValueError(f"initial_radius must be > 0, got {self.initial_radius}")


@document_fields
@dataclasses.dataclass(frozen=True)
class Unroll:
    """Backpropagate through every iteration (memory grows with the iterations)."""


@document_fields
@dataclasses.dataclass(frozen=True)
class Truncated:
    """Solve without a graph, then backpropagate through ``iterations`` undamped Gauss-Newton steps
    taken from the solution (a truncated Neumann series of the implicit gradient)."""

    iterations: int = 3

    def __post_init__(self) -> None:
        if self.iterations < 1:
            raise ValueError(f"Truncated needs iterations >= 1, got {self.iterations}")


@document_fields
@dataclasses.dataclass(frozen=True)
class Implicit:
    """Implicit function theorem at the solution x*: ``dx*/dθ = -H⁻¹ ∂g/∂θ``; memory independent of iterations.

    ``hessian="exact"`` uses the true Hessian of the cost in the tangent chart (factorized directly, or
    solved by conjugate gradients on Hessian-vector products preconditioned with the Gauss-Newton
    factorization: ``exact_solve``): exact gradients at a minimum, matching unrolling at convergence.
    ``hessian="gauss_newton"`` uses ``JᵀJ`` only: one solve, exact when the residuals vanish.
    """

    hessian: Literal["exact", "gauss_newton"] = "exact"
    max_iterations: int = 50
    tolerance: float = 1e-8
    """CG's relative residual on the exact system: 1e-8 takes 6 Hessian-vector products on parking-garage and
    changes the gradient by 3e-12 relative to 1e-12 (8 products; benchmarks/backward.py).  The solution
    itself is only as exact as the forward solve's tolerances."""
    products: Literal["autograd", "differences"] = "autograd"
    """How the exact Hessian's vector products are taken.  ``"autograd"`` (default): double backward
    through the cost's torch graph, exact to rounding.  ``"differences"``: central differences, along
    the retraction, of the gradient each cost computes anyway (its fused kernel where it has one),
    corrected by the group's ``ad`` (``slam.optim.implicit``); float64 and groups with ``ad`` only.
    Each product is ~1e-9 relative of double backward's and 1.8x faster on parking-garage, but CG
    amplifies their error in the Hessian's weak directions: parking-garage's gradients move by 5e-5
    relative (the Gauss-Newton Hessian's by 4e-3), for a backward of 6.7 instead of ~10 LM iterations
    (``benchmarks/backward.py``, mode implicit-differences).  ``wᵀ ∂g/∂θ`` is one exact double backward
    either way."""

    exact_solve: Literal["auto", "direct", "cg"] = "auto"
    """How ``H w = v`` is solved with the exact Hessian.  ``"direct"``: ``H`` is assembled from every
    cost's Gauss-Newton blocks, second-order residual terms and robust ``ρ''`` terms
    (``Problem.exact_hessian``, ``Cost.exact_blocks``; it has ``JᵀJ``'s sparsity) and factorized once by
    the problem's linear solver: exact to rounding, about one LM iteration; where that ``H`` is not
    positive definite, CG (which then falls back to Gauss-Newton) takes over.  ``"cg"``: conjugate gradients on ``products``,
    preconditioned with the Gauss-Newton factorization.  ``"auto"`` (default): direct where every cost's
    second-order terms have a fused kernel (the plan's ``CostPlan.exact_hessian``, from
    ``Cost.exact_blocks_path``; autodiff takes one double backward per tangent column, more than CG's few
    products) and ``products`` is the default, else CG.  Measured on
    parking-garage (``benchmarks/backward.py``): direct 0.06-0.07 s against CG's 0.22 s, gradients equal
    to 1e-9 relative with a CG tolerance of 1e-13."""

    def __post_init__(self) -> None:
        if self.exact_solve not in ("auto", "direct", "cg"):
            raise ValueError(f"Implicit exact_solve must be auto, direct or cg, got {self.exact_solve!r}")
        if self.hessian not in ("exact", "gauss_newton"):
            raise ValueError(f"Implicit hessian must be exact or gauss_newton, got {self.hessian!r}")
        if self.products not in ("autograd", "differences"):
            raise ValueError(f"Implicit products must be autograd or differences, got {self.products!r}")


BackwardMode = Union[Unroll, Truncated, Implicit]
