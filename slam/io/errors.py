"""The one error for malformed input files (it names the file, the line and the reason), and the
number grammar every reader uses.

Numbers are ASCII only: an optional sign, digits with an optional point, an optional exponent
(``NUMBER``); integers (ids, indices, counts) are an optional sign and digits that fit int64.
Python's ``float()``/``int()`` accept more (``1_0.5`` is 10.5, ``٣`` and ``３`` are 3), which a
file should not get away with.
"""

from __future__ import annotations

import math
import re

NUMBER = re.compile(r"[+-]?(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][+-]?[0-9]+)?\Z")
INTEGER = re.compile(r"[+-]?[0-9]+\Z")
INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1
_GRAMMAR = "ASCII digits with an optional sign, point and exponent"


class FormatError(ValueError):
    """A malformed or inconsistent input file; ``line`` is 1-based (0: the file as a whole)."""

    def __init__(self, path: str, line: int, reason: str):
        self.path, self.line, self.reason = str(path), int(line), reason
        super().__init__(f"{self.path}:{self.line}: {reason}" if line else f"{self.path}: {reason}")


def parse_number(path: str, line: int, token: str, name: str) -> float:
    """``float(token)``, or a ``FormatError`` naming the field when it is not a finite number of ``NUMBER``."""
    try:
        value = float(token)
    except ValueError:
        value = None
    # float() agrees with NUMBER on ASCII tokens without "_", up to inf/nan (refused below)
    if value is None or not (token.isascii() and "_" not in token) and NUMBER.match(token) is None:
        raise FormatError(path, line, f"field {name} is not a number: {shorten(token)} (numbers are {_GRAMMAR})")
    if not math.isfinite(value):
        what = "overflows float64" if NUMBER.match(token) else "is not finite"
        raise FormatError(path, line, f"field {name} {what}: {shorten(token)}")
    return value


def parse_integer(path: str, line: int, token: str, name: str, *, minimum: int = INT64_MIN) -> int:
    """``int(token)`` for an ASCII integer in ``[minimum, INT64_MAX]``, else a ``FormatError`` naming the field."""
    if INTEGER.match(token) is None:
        raise FormatError(path, line, f"field {name} is not an integer (ASCII digits, optional sign): {shorten(token)}")
    # more than 19 significant digits cannot fit (and int() refuses over 4300 of them)
    value = int(token) if len(token.lstrip("+-0")) <= 19 else INT64_MAX + 1
    if not minimum <= value <= INT64_MAX:
        bounds = "a 64-bit integer" if minimum == INT64_MIN else f"[{minimum}, 2**63 - 1]"
        raise FormatError(path, line, f"field {name} = {shorten(token, quote=False)} does not fit {bounds}")
    return value


def shorten(token: str, limit: int = 40, *, quote: bool = True) -> str:
    """``repr(token)`` (or ``token``), cut to about ``limit`` characters (a hostile token may be
    megabytes long)."""
    cut = token if len(token) <= limit else token[: limit // 2]
    shown = repr(cut) if quote else cut
    return shown if cut is token else f"{shown}... ({len(token)} characters)"
