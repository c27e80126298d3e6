"""The right-aligned text table every benchmark prints."""

from __future__ import annotations

from typing import Sequence


def print_table(header: Sequence[str], rows: Sequence[Sequence[object]], *, title: str | None = None) -> None:
    """``header`` and ``rows`` as columns as wide as their widest cell, after a blank line (and ``title``)."""
    widths = [max(len(str(c)) for c in col) for col in zip(header, *rows)]
    print()
    if title:
        print(title)
    print("  ".join(str(h).rjust(w) for h, w in zip(header, widths)))
    for row in rows:
        print("  ".join(str(c).rjust(w) for c, w in zip(row, widths)))
