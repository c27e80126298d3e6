"""``verbose=True`` for the drivers: the ``slam`` logger's INFO lines on stderr for one call, without
``logging.basicConfig`` and without touching the application's logging setup.

Where INFO records of ``slam`` already reach a handler (the application configured logging at INFO or
below), nothing changes: the lines go where the application sends them, once.  Otherwise, for the call,
the ``slam`` logger is set to INFO and a stderr handler is attached to it; records that the old setting
would have let through (warnings, errors) still travel up to the application's handlers exactly as
before (or to ``logging.lastResort``), and the INFO lines go to stderr only, so no line is printed twice.
Level, propagation and handlers are restored afterwards, also when the call raises.
"""

from __future__ import annotations

import contextlib
import functools
import inspect
import logging
import sys
from typing import Callable, Iterator, ParamSpec, TypeVar

P = ParamSpec("P")
R = TypeVar("R")

LOGGER = "slam"
FORMAT = "%(message)s"


class _StderrHandler(logging.Handler):
    """Writes the INFO records below ``threshold`` (the ones ``verbose`` turned on) to the current
    ``sys.stderr`` and hands the others to the parent logger's handlers, as propagation would have."""

    def __init__(self, threshold: int, parent: logging.Logger | None):
        super().__init__(logging.INFO)
        self.threshold, self.parent = threshold, parent
        self.setFormatter(logging.Formatter(FORMAT))

    def emit(self, record: logging.LogRecord) -> None:
        if record.levelno < self.threshold or self.parent is None:
            try:
                stream = sys.stderr  # looked up per record: pytest's capsys and contextlib.redirect_stderr swap it
                stream.write(self.format(record) + "\n")
                stream.flush()
            except Exception:  # noqa: BLE001 - logging's own contract: never raise out of a handler
                self.handleError(record)
        else:
            self.parent.callHandlers(record)


@contextlib.contextmanager
def verbose_logging(enabled: bool = True, logger_name: str = LOGGER) -> Iterator[None]:
    """Within the block, INFO lines of ``logger_name`` (and its children) reach stderr (see the module)."""
    logger = logging.getLogger(logger_name)
    if not enabled or (logger.isEnabledFor(logging.INFO) and _reaches_a_handler(logger)):
        yield
        return
    # INFO lines were not shown before (off, or no handler takes them): they are ours.  What was shown
    # before (at or above the old level, and above INFO) goes on to the application's handlers.
    threshold = max(logger.getEffectiveLevel(), logging.INFO + 1)
    parent = logger.parent if logger.propagate else None
    saved = logger.level, logger.propagate
    handler = _StderrHandler(threshold, parent)
    logger.addHandler(handler)
    if logger.getEffectiveLevel() > logging.INFO:
        logger.setLevel(logging.INFO)
    logger.propagate = False  # the handler forwards what the application would have seen
    try:
        yield
    finally:
        logger.removeHandler(handler)
        logger.setLevel(saved[0])
        logger.propagate = saved[1]


def _reaches_a_handler(logger: logging.Logger) -> bool:
    """Whether an INFO record of ``logger`` would be handled (a handler at INFO or below on its way up)."""
    current: logging.Logger | None = logger
    while current is not None:
        if any(h.level <= logging.INFO for h in current.handlers):
            return True
        current = current.parent if current.propagate else None
    return False


def verbose_option(function: Callable[P, R]) -> Callable[P, R]:
    """Runs ``function`` within ``verbose_logging(verbose)``, ``verbose`` being its own keyword argument
    (declared and documented in its signature; the body need not use it)."""
    default = inspect.signature(function).parameters["verbose"].default

    @functools.wraps(function)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        with verbose_logging(bool(kwargs.get("verbose", default))):
            return function(*args, **kwargs)

    return wrapper
