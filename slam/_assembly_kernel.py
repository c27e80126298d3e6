"""The last step every fused linearization kernel shares: adding one instance's packed normal-equation
blocks into the assembled ``H`` and ``g`` at the slots the problem's structure gives them
(``slam.structure.CostLayout``), rather than storing the blocks for ``Structure.assemble``'s
``index_add`` (which then reads them back: on a batch of 64 small graphs, half as much again as the
kernel's own time).  Used by ``Cost.accumulate_normal`` in ``_se2_kernels`` and ``_se3_kernels``."""

from __future__ import annotations

try:
    import numba
except ImportError:  # the kernels that would call it are not used either
    numba = None

if numba is not None:

    @numba.njit(cache=True, nogil=True, inline="always")  # (inlined: called once per instance)
    def add_blocks(h_row, g_row, slots, gradient_slots, h, g, instance):  # type: ignore[no-untyped-def]
        """``h_row[slots[i·P + k]] += h[k]`` and ``g_row[gradient_slots[i·D + k]] += g[k]`` for instance ``i``
        (``P = h.size`` packed lower-triangle entries, ``D = g.size``; a slot past the end of the
        structure's values, ``nnz`` or ``n``, is the discarded column of a fixed variable)."""
        p, d = h.size, g.size
        for k in range(p):
            h_row[slots[instance * p + k]] += h[k]
        for k in range(d):
            g_row[gradient_slots[instance * d + k]] += g[k]
