"""Levenberg-Marquardt steps: ``(H + λD) δ = -g`` with Nielsen's damping update (as in Ceres)."""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor

from .steps import Linearization, Proposal, StepStrategy, Trial, gain_ratio_accepts, masked, solved_step
from .termination import Termination


class LevenbergMarquardtSteps(StepStrategy):
    """One factorization per trial: an accepted step relinearizes, a rejected one refactorizes at a
    larger damping.  ``D`` follows ``LevenbergMarquardt.damping``."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        cfg = self.config
        self.lam = np.full_like(self._zeros, cfg.initial_damping)
        self.nu = np.full_like(self._zeros, 2.0)
        self.floor = np.zeros_like(self._zeros)
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

    def propose(self, lin: Linearization, active: np.ndarray) -> Proposal:
        self.lam_used = self.lam
        return self._step(lin, self.on_device(self.lam), self._scaling(lin.h, remember=True))

    def judge(self, trial: Trial) -> np.ndarray:
        cfg, active = self.config, trial.active
        accept, quality, noise = gain_ratio_accepts(trial.cost, trial.new_cost, trial.predicted, cfg.min_step_quality)
        accept = accept & active & trial.ok
        with np.errstate(all="ignore"):  # ρ may be ±inf or nan: the shrink factor is then clamped or 1
            shrink = np.maximum(1.0 - (2.0 * quality - 1.0) ** 3, cfg.min_damping_decrease)
        shrink = np.where(noise, 1.0, np.nan_to_num(shrink, nan=1.0))
        self.lam = np.where(accept, self.lam * shrink, np.where(active, self.lam * self.nu, self.lam))
        # A damping at which the linear solve failed (H + λD not positive definite: in float32 the
        # rounding of H makes its flat directions indefinite) is never returned to: the next λ is
        # the least the solve has worked with.  Otherwise every accepted step shrinks λ back into
        # failure, and every other iteration is lost.
        failed = active & ~trial.ok
        self.floor = np.where(failed, np.maximum(self.floor, self.lam), self.floor)
        self.lam = np.maximum(self.lam, self.floor)
        self.nu = np.where(accept, 2.0, np.where(active, 2.0 * self.nu, self.nu))
        return accept

    def stops(self, trial: Trial, accepted: np.ndarray) -> list[tuple[np.ndarray, Termination]]:
        exceeded = self.lam > self.config.max_damping
        return [(exceeded & ~trial.ok, Termination.LINEAR_SOLVER_FAILED), (exceeded, Termination.NO_DECREASE)]

    def probe(self, lin: Linearization) -> Proposal:
        with torch.no_grad():
            return self._step(lin, self.on_device(np.full_like(self.lam, self.config.initial_damping)),
                              self._scaling(lin.h, remember=False))

    def parameter(self) -> tuple[np.ndarray, np.ndarray | None]:
        return self.lam_used, None
