"""Powell's dogleg steps in a trust region (as GTSAM's ``DoglegOptimizer`` and Ceres' ``DOGLEG``).

At each linearization point the Gauss-Newton step ``δ_gn = -H⁻¹ g`` (one factorization) and the
Cauchy point ``δ_sd = -(gᵀg / gᵀHg) g`` (the minimizer of the model along the gradient) are
computed once.  The step is ``δ_gn`` if it lies inside the trust region ``‖δ‖ <= Δ``; else the
Cauchy point shortened to the boundary if that lies outside too; else the point where the segment
from ``δ_sd`` to ``δ_gn`` leaves the region.  A rejected step shrinks Δ and reuses both steps: no
refactorization until a step is accepted.  Norms are Euclidean in the tangent space (GTSAM's choice).
"""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor

from .steps import Linearization, Proposal, StepStrategy, Trial, gain_ratio_accepts, masked, solved_step, to_device
from .termination import Termination


class DoglegSteps(StepStrategy):
    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.radius = np.full_like(self._zeros, self.config.initial_radius)
        self.radius_used = self.radius
        self._steps: tuple[Tensor, Tensor, Tensor] | None = None  # (gauss-newton, cauchy, gn ok) per problem
        self._stale = np.ones(self._zeros.shape, dtype=bool)

    def _gauss_newton_and_cauchy(self, lin: Linearization) -> tuple[Tensor, Tensor, Tensor]:
        h, g = lin.h, lin.g
        gn, ok, _ = solved_step(self.solver, self.problem, h, g)
        if not bool(ok.all()):  # a singular H (a free gauge): regularize slightly; the region bounds the step
            scale = 1e-10 * h.detach()[:, self.diagonal].abs().amax(-1, keepdim=True).clamp_min(1e-30)
            retry, retry_ok, _ = solved_step(self.solver, self.problem, h.index_add(1, self.diagonal,
                                                                                     scale.expand_as(g)), g)
            gn, ok = torch.where(ok.unsqueeze(-1), gn, retry), ok | retry_ok
        gn = masked(gn, ok)
        curvature = (g * self.structure.pattern.matvec(h, g)).sum(-1)
        gg = (g * g).sum(-1)
        positive = curvature > 0
        # Along a direction of non-positive curvature the model decreases without bound: go to the boundary.
        alpha = torch.where(positive, gg / torch.where(positive, curvature, torch.ones_like(curvature)),
                            torch.full_like(gg, float("inf")))
        cauchy = -alpha.unsqueeze(-1) * g
        return gn, cauchy, ok

    def propose(self, lin: Linearization, active: np.ndarray) -> Proposal:
        if self._steps is None or (self._stale & active).any():
            fresh = self._gauss_newton_and_cauchy(lin)
            if self._steps is None:
                self._steps = fresh
            else:
                keep = to_device(~self._stale, lin.g.device)
                self._steps = tuple(torch.where(keep.view(-1, *([1] * (new.dim() - 1))), old, new)
                                    for old, new in zip(self._steps, fresh))
            self._stale = np.zeros_like(self._stale)
        self.radius_used = self.radius
        return self._dogleg(lin, *self._steps, self.on_device(self.radius))

    def _dogleg(self, lin: Linearization, gn: Tensor, cauchy: Tensor, gn_ok: Tensor, radius: Tensor) -> Proposal:
        g = lin.g
        r = radius.unsqueeze(-1)
        gn_norm = gn.norm(dim=-1, keepdim=True)
        g_norm = g.norm(dim=-1, keepdim=True).clamp_min(torch.finfo(g.dtype).tiny)
        cauchy_finite = torch.isfinite(cauchy).all(-1, keepdim=True)
        cauchy_norm = torch.where(cauchy_finite, cauchy.norm(dim=-1, keepdim=True), torch.full_like(r, float("inf")))
        to_boundary = -(r / g_norm) * g
        # Where ‖δ_sd‖ < Δ < ‖δ_gn‖: β in [0, 1] with ‖δ_sd + β(δ_gn - δ_sd)‖ = Δ.
        safe_cauchy = torch.where(cauchy_finite, cauchy, torch.zeros_like(cauchy))
        diff = gn - safe_cauchy
        a = (diff * diff).sum(-1, keepdim=True)
        b = 2.0 * (safe_cauchy * diff).sum(-1, keepdim=True)
        c = (safe_cauchy * safe_cauchy).sum(-1, keepdim=True) - r * r
        beta = (-b + torch.sqrt((b * b - 4.0 * a * c).clamp_min(0.0))) / (2.0 * a).clamp_min(torch.finfo(g.dtype).tiny)
        blend = safe_cauchy + beta.clamp(0.0, 1.0) * diff
        use_gn = gn_ok.unsqueeze(-1) & (gn_norm <= r)
        use_boundary = (cauchy_norm >= r) | ~gn_ok.unsqueeze(-1)
        step = torch.where(use_gn, gn, torch.where(use_boundary, to_boundary, blend))
        ok = torch.isfinite(step).all(-1)
        step = masked(step, ok)
        with torch.no_grad():
            predicted = -(g * step).sum(-1) - 0.5 * (step * self.structure.pattern.matvec(lin.h.detach(), step)).sum(-1)
        return Proposal(step, ok, predicted)

    def judge(self, trial: Trial) -> np.ndarray:
        accept, quality, _ = gain_ratio_accepts(trial.cost, trial.new_cost, trial.predicted, self.config.min_step_quality)
        accept = accept & trial.active & trial.ok
        norm = trial.step_norm
        grow = accept & (quality > 0.75)  # (a nan ρ, from a zero prediction, neither grows nor keeps Δ)
        shrink = trial.active & (~accept | (quality < 0.25))
        radius = np.where(grow, np.maximum(self.radius, 3.0 * norm), self.radius)
        # Shrink below the step just tried, so that a rejected Gauss-Newton step is not tried again.
        self.radius = np.where(shrink, 0.5 * np.minimum(radius, norm), radius)
        return accept

    def relinearized(self, accepted: np.ndarray, lin: Linearization) -> None:
        self._stale = self._stale | accepted

    def stops(self, trial: Trial, accepted: np.ndarray) -> list[tuple[np.ndarray, Termination]]:
        return [(self.radius <= np.finfo(self.radius.dtype).tiny, Termination.TRUST_REGION_COLLAPSED)]

    def next_step_bound(self) -> np.ndarray | None:
        return self.radius

    def probe(self, lin: Linearization) -> Proposal:
        with torch.no_grad():
            return self._dogleg(lin, *self._gauss_newton_and_cauchy(lin),
                                self.on_device(np.full_like(self.radius, self.config.initial_radius)))

    def parameter(self) -> tuple[np.ndarray, np.ndarray | None]:
        return self._zeros, self.radius_used
