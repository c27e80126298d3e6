"""Levenberg-Marquardt steps: ``(H + λD) δ = -g`` with Nielsen's damping update (as in Ceres)."""

from __future__ import annotations

import torch
from torch import Tensor

from .steps import Linearization, Proposal, StepStrategy, gain_ratio_accepts, masked, solved_step
from .termination import Termination


class LevenbergMarquardtSteps(StepStrategy):
    """One factorization per trial: an accepted step relinearizes, a rejected one refactorizes at a
    larger damping.  ``D`` follows ``LevenbergMarquardt.damping``."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        cfg = self.config
        self.lam = torch.full_like(self._zeros, cfg.initial_damping)
        self.nu = torch.full_like(self._zeros, 2.0)
        self.floor = torch.zeros_like(self._zeros)
        """``(B,)`` the largest λ at which the linear solve has failed: λ never returns below it."""
        self.lam_used = self.lam
        self.d_max: Tensor | None = None

    def _scaling(self, h: Tensor, *, remember: bool) -> Tensor:
        cfg = self.config
        if cfg.damping == "levenberg":
            return torch.ones(h.shape[0], self.structure.n, dtype=h.dtype, device=h.device)
        d = h.detach()[:, self.diagonal].clamp(cfg.min_diagonal, cfg.max_diagonal)
        if cfg.damping == "marquardt":  # the running maximum (see LevenbergMarquardt.damping)
            d = d if self.d_max is None else torch.maximum(d, self.d_max)
            if remember:
                self.d_max = d
        return d

    def _step(self, lin: Linearization, lam: Tensor, d: Tensor) -> Proposal:
        damped = lin.h.index_add(1, self.diagonal, lam.unsqueeze(-1) * d)
        step, ok, _ = solved_step(self.solver, self.problem, damped, lin.g)
        step = masked(step, ok)
        with torch.no_grad():
            predicted = 0.5 * ((lam.unsqueeze(-1) * d * step - lin.g) * step).sum(-1)
        return Proposal(step, ok, predicted)

    def propose(self, lin: Linearization, active: Tensor) -> Proposal:
        self.lam_used = self.lam
        return self._step(lin, self.lam, self._scaling(lin.h, remember=True))

    def judge(self, proposal: Proposal, lin: Linearization, new_cost: Tensor, active: Tensor) -> Tensor:
        cfg = self.config
        with torch.no_grad():
            accept, quality, noise = gain_ratio_accepts(lin.cost.detach(), new_cost.detach(), proposal.predicted,
                                                        cfg.min_step_quality)
            accept = accept & active & proposal.ok
            shrink = torch.clamp(1.0 - (2.0 * quality - 1.0) ** 3, min=cfg.min_damping_decrease)
            shrink = torch.where(noise, torch.ones_like(shrink), torch.nan_to_num(shrink, nan=1.0))
            self.lam = torch.where(accept, self.lam * shrink, torch.where(active, self.lam * self.nu, self.lam))
            # A damping at which the linear solve failed (H + λD not positive definite: in float32 the
            # rounding of H makes its flat directions indefinite) is never returned to: the next λ is
            # the least the solve has worked with.  Otherwise every accepted step shrinks λ back into
            # failure, and every other iteration is lost.
            failed = active & ~proposal.ok
            self.floor = torch.where(failed, torch.maximum(self.floor, self.lam), self.floor)
            self.lam = torch.maximum(self.lam, self.floor)
            self.nu = torch.where(accept, torch.full_like(self.nu, 2.0), torch.where(active, 2.0 * self.nu, self.nu))
        return accept

    def stops(self, proposal: Proposal, accepted: Tensor, active: Tensor) -> list[tuple[Tensor, Termination]]:
        exceeded = self.lam > self.config.max_damping
        return [(exceeded & ~proposal.ok, Termination.LINEAR_SOLVER_FAILED), (exceeded, Termination.NO_DECREASE)]

    def probe(self, lin: Linearization) -> Proposal:
        with torch.no_grad():
            return self._step(lin, torch.full_like(self.lam, self.config.initial_damping),
                              self._scaling(lin.h, remember=False))

    def parameter(self) -> tuple[Tensor, Tensor | None]:
        return self.lam_used, None
