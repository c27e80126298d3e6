"""Subscribers to a solve's per-iteration records: logging, a progress bar, the history.

``slam.solve(..., callbacks=[...])`` calls each with every ``IterationRecord``; the numerics know
nothing of them.  Any callable taking a record is a subscriber (e.g. to stop-watch, plot or
early-abort by raising).
"""

from __future__ import annotations

import logging
from typing import Any

from .result import IterationRecord

log = logging.getLogger("slam")


class History(list):
    """Keeps every record (``SolveResult.history``)."""

    def __call__(self, record: IterationRecord) -> None:
        self.append(record)


class LogIterations:
    """One ``logging`` INFO line per iteration on the ``slam`` logger (nothing when INFO is off)."""

    def __init__(self, logger: logging.Logger = log):
        self.logger = logger

    def __call__(self, record: IterationRecord) -> None:
        if not self.logger.isEnabledFor(logging.INFO):
            return
        batch = record.cost.shape[0]
        if batch == 1:
            accepted = bool(record.accepted[0])
            decrease = float(record.decrease[0]) if record.decrease is not None else 0.0
            before = float(record.cost[0]) + (decrease if accepted else 0.0)
            relative = decrease / before if before else 0.0
            setting = (f"radius {float(record.radius[0]):.1e}" if record.radius is not None
                       else f"damping {float(record.damping[0]):.1e}")
            self.logger.info("iter %3d  cost %.6e  rel. decrease %+.2e  %s  step %.2e  %s  %.3f s", record.iteration,
                             float(record.cost[0]), relative, setting, float(record.step_norm[0]),
                             "accepted" if accepted else "rejected", record.seconds)
        else:
            active = int(record.active.sum()) if record.active is not None else batch
            self.logger.info("iter %3d  mean cost %.6e  accepted %d/%d  active %d/%d  %.3f s", record.iteration,
                             float(record.cost.mean()), int(record.accepted.sum()), batch, active, batch, record.seconds)


class ProgressBar:
    """A tqdm bar over the iteration budget (``progress=True`` in the optimizer config); a warning and
    no bar where tqdm is missing."""

    def __init__(self, total: int):
        self.bar: Any = None
        try:
            from tqdm.auto import tqdm
        except ImportError:
            log.warning("progress=True needs tqdm (pip install tqdm); continuing without a bar")
            return
        self.bar = tqdm(total=total, desc="solve", unit="it")

    def __call__(self, record: IterationRecord) -> None:
        if self.bar is not None:
            self.bar.update(1)
            self.bar.set_postfix(cost=f"{float(record.cost.mean()):.4e}")

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
