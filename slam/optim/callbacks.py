"""What a solve reports: subscribers to its per-iteration records (logging, a progress bar, the
history), the one quantity they name, and a plain record of the settings.

``slam.solve(..., callbacks=[...])`` calls each with every ``IterationRecord``; the numerics know
nothing of them.  Any callable taking a record is a subscriber (e.g. to stop-watch, plot or
early-abort by raising).

The quantity.  The solver minimizes ``cost = ½ Σ ρ(‖W r‖²)`` (``SolveResult.cost``; without a
robust kernel ``ρ(s) = s``), and its log lines report that by default, as ``cost``.  The pose-graph
and bundle-adjustment drivers (and so ``slam pgo`` / ``slam ba``) report what g2o prints every
iteration instead, by running the solve inside ``reporting(chi2_quantity(robust))``:

- ``chi2 = Σ ‖W r‖² = 2 · cost`` without a robust kernel (for a pose graph ``Σ eᵀ Ω e``);
- ``robust chi2 = Σ ρ(‖W r‖²) = 2 · cost`` with one (g2o's ``activeRobustChi2``), which is what
  the solver lowers: the same scale as chi2, equal to it where every residual is inside the
  kernel's quadratic zone.  The drivers' summaries give the plain chi2 beside it.
"""

from __future__ import annotations

import contextlib
import contextvars
import dataclasses
import logging
import sys
from typing import Any, Iterator

from torch import Tensor

from .result import IterationRecord

log = logging.getLogger("slam")


@dataclasses.dataclass(frozen=True)
class Quantity:
    """What the log lines and the progress bar call the solver's cost, and its factor."""

    name: str
    """``"cost"``, ``"chi2"`` or ``"robust chi2"``."""
    scale: float
    """The reported value is ``scale · cost`` (cost ``= ½ Σ ρ(‖W r‖²)``)."""

    def of(self, cost: Tensor | float) -> Any:
        return self.scale * cost


COST = Quantity("cost", 1.0)
CHI2 = Quantity("chi2", 2.0)
ROBUST_CHI2 = Quantity("robust chi2", 2.0)

_REPORTED: contextvars.ContextVar[Quantity] = contextvars.ContextVar("slam_reported_quantity", default=COST)


def chi2_quantity(robust: bool) -> Quantity:
    """``ROBUST_CHI2`` where a robust kernel is set, else ``CHI2``."""
    return ROBUST_CHI2 if robust else CHI2


def reported_quantity() -> Quantity:
    """The quantity the log lines name now (``COST`` outside any ``reporting`` block)."""
    return _REPORTED.get()


@contextlib.contextmanager
def reporting(quantity: Quantity) -> Iterator[Quantity]:
    """Within the block (this thread or task), the iteration lines, the progress bar and the solve's
    final line report ``quantity``."""
    token = _REPORTED.set(quantity)
    try:
        yield quantity
    finally:
        _REPORTED.reset(token)


class History(list):
    """Keeps every record (``SolveResult.history``)."""

    def __call__(self, record: IterationRecord) -> None:
        self.append(record)


class LogIterations:
    """One ``logging`` INFO line per iteration on the ``slam`` logger (nothing when INFO is off), naming
    the cost as ``quantity`` (default: the ``reporting`` block's, ``cost`` outside one)."""

    def __init__(self, logger: logging.Logger = log, quantity: Quantity | None = None):
        self.logger = logger
        self.quantity = quantity

    def __call__(self, record: IterationRecord) -> None:
        if not self.logger.isEnabledFor(logging.INFO):
            return
        quantity = self.quantity or reported_quantity()
        batch = record.cost.shape[0]
        if batch == 1:
            accepted = bool(record.accepted[0])
            decrease = float(record.decrease[0]) if record.decrease is not None else 0.0
            before = float(record.cost[0]) + (decrease if accepted else 0.0)
            relative = decrease / before if before else 0.0
            setting = (f"radius {float(record.radius[0]):.1e}" if record.radius is not None
                       else f"damping {float(record.damping[0]):.1e}")
            self.logger.info("iter %3d  %s %.6e  rel. decrease %+.2e  %s  step %.2e  %s  %.3f s", record.iteration,
                             quantity.name, quantity.of(float(record.cost[0])), relative, setting,
                             float(record.step_norm[0]), "accepted" if accepted else "rejected", record.seconds)
        else:
            active = int(record.active.sum()) if record.active is not None else batch
            self.logger.info("iter %3d  mean %s %.6e  accepted %d/%d  active %d/%d  %.3f s", record.iteration,
                             quantity.name, quantity.of(float(record.cost.mean())), int(record.accepted.sum()), batch,
                             active, batch, record.seconds)


class ProgressBar:
    """A tqdm bar over the iterations (``progress=True`` in the optimizer config); a warning and no bar
    where tqdm is missing.

    ``total`` is the iteration limit, an upper bound while the solve runs; ``close`` sets the total to
    the iterations that ran, so a solve that stops at 6 of 100 ends as ``6/6``.  While the bar is open,
    console log handlers of the ``slam`` logger and of the root logger write through ``tqdm.write``
    (above the bar instead of through it); ``close`` puts them back.
    """

    def __init__(self, total: int):
        self.bar: Any = None
        self._swapped: list[tuple[logging.Logger, list[logging.Handler]]] = []
        try:
            from tqdm.auto import tqdm
        except ImportError:
            log.warning("progress=True needs tqdm (pip install tqdm); continuing without a bar")
            return
        self.quantity = reported_quantity()
        self.bar = tqdm(total=total, desc="solve", unit="it")
        self._route_logging(type(self.bar))

    def _route_logging(self, tqdm_class: Any) -> None:
        """Swap every console ``StreamHandler`` (on stdout or stderr) of the ``slam`` and root loggers
        for one that writes through ``tqdm_class.write``; loggers without one are left alone (no
        handler is added, so nothing is printed twice or that was not printed before)."""
        for logger in (logging.getLogger("slam"), logging.getLogger()):
            handlers = list(logger.handlers)
            if not any(_is_console(h) for h in handlers):
                continue
            self._swapped.append((logger, handlers))
            logger.handlers = [_TqdmHandler(h, tqdm_class) if _is_console(h) else h for h in handlers]

    def __call__(self, record: IterationRecord) -> None:
        if self.bar is not None:
            self.bar.update(1)
            self.bar.set_postfix({self.quantity.name: f"{self.quantity.of(float(record.cost.mean())):.4e}"})

    def close(self) -> None:
        if self.bar is not None:
            if self.bar.total != self.bar.n:  # stopped before the limit: an honest total
                self.bar.total = self.bar.n
                self.bar.refresh()
            self.bar.close()
        for logger, handlers in reversed(self._swapped):
            logger.handlers = handlers
        self._swapped.clear()


def _is_console(handler: logging.Handler) -> bool:
    return (isinstance(handler, logging.StreamHandler) and not isinstance(handler, logging.FileHandler)
            and handler.stream in (sys.stdout, sys.stderr))


class _TqdmHandler(logging.Handler):
    """A console handler's records (its level, filters and format) written through ``tqdm.write``."""

    def __init__(self, original: logging.StreamHandler, tqdm_class: Any):
        super().__init__(original.level)
        self.original, self.tqdm_class = original, tqdm_class
        self.setFormatter(original.formatter or logging.Formatter())
        for f in original.filters:
            self.addFilter(f)

    def emit(self, record: logging.LogRecord) -> None:
        try:
            self.tqdm_class.write(self.format(record), file=self.original.stream)
        except Exception:  # noqa: BLE001 - logging's contract: never raise out of a handler
            self.handleError(record)


def settings_record(config: Any) -> dict[str, Any]:
    """An optimizer config (``LevenbergMarquardt``, ``Dogleg``, ``GaussNewton``) as plain JSON values:
    its class name under ``"type"`` and every field (a linear solver object as its repr)."""
    out: dict[str, Any] = {"type": type(config).__name__}
    for field in dataclasses.fields(config):
        value = getattr(config, field.name)
        out[field.name] = value if value is None or isinstance(value, (bool, int, float, str)) else repr(value)
    return out
