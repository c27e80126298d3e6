"""The one error for malformed input files: it names the file, the line and the reason."""

from __future__ import annotations

import math


class FormatError(ValueError):
    """A malformed or inconsistent input file; ``line`` is 1-based (0: the file as a whole)."""

    def __init__(self, path: str, line: int, reason: str):
        self.path, self.line, self.reason = str(path), int(line), reason
        super().__init__(f"{self.path}:{self.line}: {reason}" if line else f"{self.path}: {reason}")


def parse_number(path: str, line: int, token: str, name: str) -> float:
    """``float(token)``, or a ``FormatError`` naming the field when it is not a finite number."""
    try:
        value = float(token)
    except ValueError:
        raise FormatError(path, line, f"field {name} is not a number: {token!r}") from None
    if not math.isfinite(value):
        raise FormatError(path, line, f"field {name} is not finite: {token!r}")
    return value
