"""Graduated non-convexity (Yang, Antonante, Tzoumas, Carlone, RA-L 2020) around any optimizer config.

``gnc_solve(problem, GNC(loss="tls" | "gm"))`` follows GTSAM's ``GncOptimizer`` (``GncOptimizer.h``):
every instance k of every cost has an error ``u_k = ½‖W r_k‖²`` (GTSAM's ``factor.error``) and an
inlier threshold ``c̄²_k = ½ χ²⁻¹(p, m_k)`` (``setInlierCostThresholdsAtProbability(p)``, p = 0.99 by
default; m_k the residual size).  Then, per problem of the batch:

1. solve with every weight 1 (known inliers 1 forever); ``prev = ½ Σ w u`` there;
2. μ₀ from the errors at the *initial* values: GM ``max_k 2 u_k / c̄²_k``; TLS ``min_k c̄²_k / (2 u_k − c̄²_k)``
   over the instances with ``2 u_k > c̄²_k``, at least 1e-6, and −1 where none is (GTSAM's
   ``initializeMu``, known inliers included); μ₀ ≤ 0, or no instance left to weigh, ends GNC here
   ("small residuals" / "all known"), with the plain least-squares solution;
3. repeat at most ``max_iterations`` times: weights from the errors at the current solution (GM
   ``w = (μ c̄² / (u + μ c̄²))²``; TLS ``w = 1`` for ``u ≤ μ/(μ+1) c̄²``, ``0`` for ``u ≥ (μ+1)/μ c̄²``, else
   ``clamp(√(c̄² μ (μ+1) / u) − μ, 0, 1)``); solve the problem whose instances' information is scaled by
   w (whitened residuals by √w, GTSAM's ``makeWeightedGraph``); ``cost = ½ Σ w u`` there; stop when
   ``|cost − prev| / max(prev, 1e-7) < cost_tolerance`` ("cost"), or (TLS) every weight is within
   ``weight_tolerance`` of 0 or 1 ("weights"), or (GM) ``|μ − 1| < 1e-9`` ("mu"); else μ ← max(1, μ/step)
   (GM) or μ ← step·μ (TLS, GTSAM's linear scheduler) and ``prev = cost``.

A problem that has stopped keeps its weights and its solution while the others go on.  Every inner
solve starts from the initial values (GTSAM's rule, default); ``warm_start=True`` starts it from the
current solution instead: fewer inner iterations, the same answer where the weighted problems have
one minimum near both, but on real graphs with gross false loops the early solutions are pulled
towards the outliers and a warm start can stay in their basin (intel with 10 % random false loops:
3 true loops dropped, ATE 5e-3 of the extent, where the cold rule recovers the clean optimum to
6e-7; ``benchmarks/outliers.py``).

The solve is not differentiable (the weights are a discrete choice): it runs under ``torch.no_grad``.
"""

from __future__ import annotations

import copy
import dataclasses
import time
from typing import TYPE_CHECKING, Any, Literal, Mapping, Sequence

import torch
from torch import Tensor

from .._docs import document_fields
from ..problem import Problem
from ..variables import Variable, VariableRef
from ..weights import ScalarWeight, Weight
from .config import Dogleg, GaussNewton, LevenbergMarquardt

if TYPE_CHECKING:
    from liegeo import LieGroup

    from ..costs import Cost
    from .result import IterationRecord, SolveResult

__all__ = ["GNC", "GncResult", "gnc_solve", "gnc_weights"]


@document_fields
@dataclasses.dataclass(frozen=True)
class GNC:
    """Graduated non-convexity around ``inner`` (``gnc_solve``; GTSAM's ``GncParams``)."""

    inner: GaussNewton | LevenbergMarquardt | Dogleg = dataclasses.field(default_factory=LevenbergMarquardt)
    """The optimizer of every weighted solve (GTSAM's ``baseOptimizerParams``)."""
    loss: Literal["tls", "gm"] = "tls"
    """``"tls"``: truncated least squares; ``"gm"``: Geman-McClure (GTSAM's ``GncLossType``)."""
    inlier_probability: float = 0.99
    """p of the inlier thresholds ``c̄² = ½ χ²⁻¹(p, m)`` per instance (GTSAM's default, 0.99)."""
    inlier_threshold: float | None = None
    """One threshold ``c̄²`` on ``½‖W r‖²`` for every instance instead (``setInlierCostThresholds``)."""
    mu_step: float = 1.4
    """GTSAM's ``muStep`` (``lambdaStep`` in 4.3's Python)."""
    max_iterations: int = 100
    """The most GNC rounds (weight update + weighted solve) after the first plain solve."""
    cost_tolerance: float = 1e-5
    """GTSAM's ``relativeCostTol``."""
    weight_tolerance: float = 1e-4
    """GTSAM's ``weightsTol`` (TLS only)."""
    warm_start: bool = False
    """Start each weighted solve from the current solution instead of the initial values (GTSAM's rule;
    faster, less robust: see the module's docstring)."""
    inlier_weight: float = 0.5
    """``GncResult.inliers`` are the instances whose final weight exceeds this."""

    def __post_init__(self) -> None:
        if self.loss not in ("tls", "gm"):
            raise ValueError(f"GNC loss must be tls or gm, got {self.loss!r}")
        if not isinstance(self.inner, (GaussNewton, LevenbergMarquardt, Dogleg)):
            raise TypeError(f"GNC inner must be GaussNewton, LevenbergMarquardt or Dogleg, got {type(self.inner).__name__}")
        if not 0.0 < self.inlier_probability < 1.0:
            raise ValueError(f"inlier_probability must be in (0, 1), got {self.inlier_probability}")
        if self.inlier_threshold is not None and not self.inlier_threshold > 0:
            raise ValueError(f"inlier_threshold must be > 0, got {self.inlier_threshold}")
        if not self.mu_step > 1.0:
            raise ValueError(f"mu_step must be > 1, got {self.mu_step}")
        if self.max_iterations < 0:
            raise ValueError(f"max_iterations must be >= 0, got {self.max_iterations}")
        for name in ("cost_tolerance", "weight_tolerance"):
            if not getattr(self, name) >= 0:
                raise ValueError(f"{name} must be >= 0, got {getattr(self, name)}")

    def solve(self, problem: Problem, *, known_inliers: KnownInliers | None = None) -> GncResult:
        """``gnc_solve(problem, self, known_inliers=...)``."""
        return gnc_solve(problem, self, known_inliers=known_inliers)


KnownInliers = Mapping["Cost | str", "Tensor | Sequence[int]"]
"""Per cost (the object or its name): a bool mask ``(E,)`` or indices of instances whose weight stays 1."""


@dataclasses.dataclass(frozen=True)
class GncResult:
    """What ``gnc_solve`` returns; ``result[variable]`` is that table's solution."""

    values: dict[Variable, LieGroup]
    """The solution per variable of the input problem (shapes as ``slam.solve`` returns them)."""
    weights: list[Tensor]
    """Per cost of the problem: the final weights ``(B, E)`` (``(E,)`` for an unbatched problem)."""
    inliers: list[Tensor]
    """Per cost: bool, weight > ``GNC.inlier_weight``; shapes as ``weights``."""
    thresholds: list[Tensor]
    """Per cost: the inlier thresholds ``c̄²`` ``(E,)`` on ``½‖W r‖²``."""
    mu: Tensor
    """``(B,)`` μ when each problem stopped (−1: TLS's degenerate start)."""
    iterations: Tensor
    """``(B,)`` int64: GNC rounds (weighted solves after the first plain one) of each problem."""
    inner_iterations: Tensor
    """``(B,)`` int64: the inner optimizer's iterations over all solves of each problem."""
    termination: list[str]
    """Per problem: ``"cost"``, ``"weights"``, ``"mu"`` (the stopping rules), ``"max iterations"``,
    ``"small residuals"`` (μ₀ ≤ 0) or ``"all known"`` (no instance to weigh)."""
    cost: Tensor
    """``(B,)`` the weighted cost ``½ Σ w ‖W r‖²`` at the solution."""
    initial_cost: Tensor
    """``(B,)`` the plain cost at the initial values."""
    last_solve: SolveResult
    """The last inner solve (of the whole batch)."""
    history: list[IterationRecord]
    """The inner solves' iteration records, one solve after another."""
    solve_seconds: float

    @property
    def converged(self) -> Tensor:
        """``(B,)`` bool: GNC stopped by a rule (not the round limit) and its last inner solve converged."""
        rule = torch.tensor([t != "max iterations" for t in self.termination])
        return rule & self.last_solve.converged.reshape(-1).cpu()

    def covariance(self, variable: Variable, indices: Any = None) -> Tensor:
        """Marginal covariances of ``variable``'s elements at the GNC solution, of the problem weighted by
        the final weights (``SolveResult.covariance``'s shapes; ``slam.marginals``)."""
        from ..marginals import Marginals

        weighted = self.last_solve.problem  # its variables in the input problem's order, ours in self.values
        mine = dict(zip(weighted.variables, self.values.values()))
        out = Marginals(weighted, mine).covariance(weighted.variables[list(self.values).index(variable)], indices)
        return out[0] if self.values[variable].ndim == 1 and weighted.batched else out  # an unbatched input

    def __getitem__(self, variable: Variable) -> LieGroup:
        return self.values[variable]


def gnc_weights(loss: str, u: Tensor, threshold: Tensor, mu: Tensor) -> Tensor:
    """GNC's weights for errors ``u = ½‖W r‖²`` at thresholds ``c̄²`` and μ (broadcast together):
    GTSAM's ``calculateWeights`` (GM: eq. 12 of the paper; TLS: eq. 14, the linear scheduler)."""
    if loss == "gm":
        c2 = mu * threshold
        return (c2 / (u + c2)) ** 2
    if loss == "tls":
        upper = (mu + 1.0) / mu * threshold
        lower = mu / (mu + 1.0) * threshold
        transition = (torch.sqrt(threshold * mu * (mu + 1.0) / u.clamp_min(torch.finfo(u.dtype).tiny)) - mu).clamp(0.0, 1.0)
        return torch.where(u <= lower, torch.ones_like(transition),
                           torch.where(u >= upper, torch.zeros_like(transition), transition))
    raise ValueError(f"GNC loss must be tls or gm, got {loss!r}")


def _scaled(weight: Weight | None, s: Tensor) -> Weight:
    """``weight`` with each instance's whitening scaled by ``s: (B, E)`` (``Weight.scaled``)."""
    return ScalarWeight(s) if weight is None else weight.scaled(s)


class _WeightedProblem:
    """The problem with each instance's information scaled by its weight (GTSAM's ``makeWeightedGraph``),
    built once: its own variables (fresh ones, same order, same fixed elements) and copies of the costs,
    whose weights ``set`` replaces between rounds (same form, so the plan's linearization paths hold)
    and whose variables' values ``start`` sets.  One ``Problem`` for every round keeps its plan, its
    structure and its linear solver's state (ordering, symbolic analysis); the numeric factorizations
    are keyed on the very ``H`` tensor and its version (``BatchedSparseCholesky._numeric_of``), and
    every linearization makes a new ``H``, so none is reused across rounds."""

    def __init__(self, problem: Problem, values: list[LieGroup]):
        self.base = problem
        fresh: dict[int, Variable] = {}
        self.variables = []
        for variable, value in zip(problem.variables, values):
            v = Variable(value, name=variable.name)
            v.fixed = variable.fixed.clone()
            fresh[id(variable)] = v
            self.variables.append(v)
        self.costs = []
        for cost in problem.costs:
            c = copy.copy(cost)
            c.variables = tuple(VariableRef(fresh[id(ref.variable)], ref.index) for ref in cost.variables)
            self.costs.append(c)
        self.problem = Problem(self.costs)

    def set(self, weights: list[Tensor], values: list[LieGroup]) -> Problem:
        for c, cost, w in zip(self.costs, self.base.costs, weights):
            c.weight = _scaled(cost.weight, w.sqrt())
        for v, value in zip(self.variables, values):
            v.value = value
        return self.problem


def _known_masks(problem: Problem, known_inliers: KnownInliers | None) -> list[Tensor]:
    masks = [torch.zeros(c.num, dtype=torch.bool) for c in problem.costs]
    for key, which in (known_inliers or {}).items():
        matches = [k for k, c in enumerate(problem.costs) if c is key or (isinstance(key, str) and c.name == key)]
        if not matches:
            raise ValueError(f"known_inliers names {key!r}, which is no cost of the problem")
        for k in matches:
            index = torch.as_tensor(which).cpu()
            if index.dtype == torch.bool:
                if index.shape != (problem.costs[k].num,):
                    raise ValueError(f"known_inliers of {problem.costs[k].name}: mask of shape {tuple(index.shape)}, "
                                     f"expected ({problem.costs[k].num},)")
                masks[k] = masks[k] | index
            else:
                index = index.reshape(-1).long()
                if index.numel() and (int(index.min()) < 0 or int(index.max()) >= problem.costs[k].num):
                    raise ValueError(f"known_inliers of {problem.costs[k].name}: an index outside [0, {problem.costs[k].num})")
                masks[k] = masks[k].clone()
                masks[k][index] = True
    return masks


def _errors(problem: Problem, values: list[LieGroup]) -> list[Tensor]:
    """``u = ½‖W r‖²`` ``(B, E)`` per cost (GTSAM's ``factor.error``)."""
    return [0.5 * (r * r).sum(-1).expand(problem.batch_size, -1) for r in problem.residuals(values)]


def gnc_solve(problem: Problem, config: GNC | None = None, *,
              known_inliers: KnownInliers | None = None) -> GncResult:
    """Solve ``problem`` by graduated non-convexity (see the module's docstring for the schedule and the
    stopping rules).  Costs must have no robust loss (GTSAM drops a factor's robust kernel; here it is an
    error).  ``known_inliers``: per cost (object or name), a bool mask ``(E,)`` or instance indices whose
    weight stays 1 (odometry, priors)."""
    from scipy.stats import chi2

    from .solve import solve

    config = config if config is not None else GNC()
    for cost in problem.costs:
        if cost.loss is not None:
            raise ValueError(f"GNC: cost {cost.name!r} has a robust loss; GNC replaces it (build it without one)")
    start = time.perf_counter()
    with torch.no_grad():
        B, dtype, device = problem.batch_size, problem.dtype, problem.device
        known = [m.to(device) for m in _known_masks(problem, known_inliers)]
        initial = [v.detach() for v in problem.initial_values()]
        u0 = _errors(problem, initial)
        dims = [int(r.shape[-1]) for r in problem.residuals(initial)]
        thresholds = [torch.full((c.num,), config.inlier_threshold if config.inlier_threshold is not None
                                 else 0.5 * float(chi2.ppf(config.inlier_probability, m)), dtype=dtype, device=device)
                      for c, m in zip(problem.costs, dims)]
        weights = [torch.ones(B, c.num, dtype=dtype, device=device) for c in problem.costs]
        history: list = []
        inner_iterations = torch.zeros(B, dtype=torch.long)

        weighted = _WeightedProblem(problem, initial)

        def weighted_solve(x_start: list[LieGroup]) -> SolveResult:
            result = solve(weighted.set(weights, x_start), config.inner)
            history.extend(result.history)
            return result

        result = weighted_solve(initial)
        inner_iterations += result.iterations.reshape(-1).cpu()
        x = [result.values[v] if result.values[v].ndim == 2 else result.values[v].unsqueeze(0)
             for v in _weighted_variables(result)]
        x = [value.expand(B, value.shape[-1]) if value.shape[0] != B else value for value in x]
        prev = result.cost.reshape(B).clone()
        cost = prev.clone()

        # μ₀ (GTSAM's initializeMu), from the errors at the initial values, every instance included.
        if config.loss == "gm":
            mu = torch.stack([(2.0 * u / t).amax(-1) for u, t in zip(u0, thresholds)]).amax(0)
        else:
            candidates = []
            for u, t in zip(u0, thresholds):
                excess = 2.0 * u - t
                candidates.append(torch.where(excess > 0, t / excess.where(excess > 0, torch.ones_like(excess)),
                                              torch.full_like(u, float("inf"))).amin(-1))
            mu = torch.stack(candidates).amin(0)
            mu = torch.where((mu >= 0) & (mu < 1e-6), torch.full_like(mu, 1e-6), mu)
            mu = torch.where((mu > 0) & torch.isfinite(mu), mu, torch.full_like(mu, -1.0))
        unknown = sum(int((~m).sum()) for m in known)
        termination = ["" for _ in range(B)]
        for b in range(B):
            if unknown == 0:
                termination[b] = "all known"
            elif float(mu[b]) <= 0:
                termination[b] = "small residuals"
        active = torch.tensor([not t for t in termination], device=device)
        iterations = torch.zeros(B, dtype=torch.long)
        for _ in range(config.max_iterations):
            if not bool(active.any()):
                break
            safe_mu = torch.where(active, mu, torch.ones_like(mu)).unsqueeze(-1)
            for k, u in enumerate(_errors(problem, x)):
                w = gnc_weights(config.loss, u, thresholds[k], safe_mu)
                w = torch.where(known[k], torch.ones_like(w), w)
                weights[k] = torch.where(active.unsqueeze(-1), w, weights[k])
            result = weighted_solve(x if config.warm_start else initial)
            inner_iterations += torch.where(active.cpu(), result.iterations.reshape(-1).cpu(), 0)
            new = [result.values[v] if result.values[v].ndim == 2 else result.values[v].unsqueeze(0)
                   for v in _weighted_variables(result)]
            x = problem.select(active, new, x)
            cost = torch.where(active, result.cost.reshape(B), cost)
            iterations += active.cpu().long()
            by_cost = (cost - prev).abs() / prev.clamp_min(1e-7) < config.cost_tolerance
            if config.loss == "tls":
                by_weights = torch.stack([((w - w.round()).abs() <= config.weight_tolerance).all(-1)
                                          for w in weights]).all(0)
                by_mu = torch.zeros_like(by_cost)
            else:
                by_weights = torch.zeros_like(by_cost)
                by_mu = (mu - 1.0).abs() < 1e-9
            stop = active & (by_cost | by_weights | by_mu)
            for b in torch.nonzero(stop).reshape(-1).tolist():
                termination[b] = "cost" if bool(by_cost[b]) else "weights" if bool(by_weights[b]) else "mu"
            active = active & ~stop
            updated = (mu / config.mu_step).clamp_min(1.0) if config.loss == "gm" else mu * config.mu_step
            mu = torch.where(active, updated, mu)
            prev = torch.where(active, cost, prev)
        termination = [t or "max iterations" for t in termination]

    unbatched = not problem.batched
    values = {v: (value[0] if unbatched else value) for v, value in zip(problem.variables, x)}
    shape = (lambda t: t[0]) if unbatched else (lambda t: t)
    return GncResult(
        values=values, weights=[shape(w) for w in weights],
        inliers=[shape(w > config.inlier_weight) for w in weights], thresholds=thresholds, mu=mu,
        iterations=iterations, inner_iterations=inner_iterations, termination=termination, cost=cost,
        initial_cost=sum(u.sum(-1) for u in u0), last_solve=result, history=history,
        solve_seconds=time.perf_counter() - start,
    )


def _weighted_variables(result: SolveResult) -> list[Variable]:
    """The variables of an inner solve, in the problem's order (its ``values`` dict keeps it)."""
    return list(result.values)
