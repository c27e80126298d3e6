"""numba kernels of ``slam.linear.schur``: the reduced system of a block-diagonal elimination, and
the back-substitution.  Every array index below comes from ``SchurLayout``; ``values`` is one
problem's ``H`` lower-triangle values with a trailing 0 (the slot of absent entries).  The blocks
``C_e`` (``c: (P, d, d)``) and the coupling rows ``w: (nW, d)`` arrive already gathered into
contiguous arrays: read in place they are scattered over all of ``H``'s values (tens of MB for
bundle adjustment) and every read would miss the cache."""

from __future__ import annotations

import numba
import numpy as np

_jit = numba.njit(cache=True, nogil=True, error_model="numpy")
_inline = numba.njit(cache=True, nogil=True, error_model="numpy", inline="always")


@_inline
def _invert_spd(c, out):
    """``out = c⁻¹`` for a small SPD ``c`` by Cholesky; False if ``c`` is not positive definite."""
    d = c.shape[0]
    low = np.zeros((d, d))
    for j in range(d):
        s = c[j, j]
        for k in range(j):
            s -= low[j, k] * low[j, k]
        if not s > 0.0:
            return False
        low[j, j] = np.sqrt(s)
        for i in range(j + 1, d):
            s = c[i, j]
            for k in range(j):
                s -= low[i, k] * low[j, k]
            low[i, j] = s / low[j, j]
    # columns of out: solve L Lᵀ x = e_col
    for col in range(d):
        y = np.zeros(d)
        for i in range(d):
            s = 1.0 if i == col else 0.0
            for k in range(i):
                s -= low[i, k] * y[k]
            y[i] = s / low[i, i]
        for i in range(d - 1, -1, -1):
            s = y[i]
            for k in range(i + 1, d):
                s -= low[k, i] * out[k, col]
            out[i, col] = s / low[i, i]
    return True


@_jit
def reduce_matrix(values, a_row, a_col, a_slot, c_blocks, ptr, keep, w_rows, s_out, cinv_out):
    """``S = A - Σ_e W_e C_e⁻¹ W_eᵀ`` into the dense ``s_out (nk, nk)``, and ``C_e⁻¹`` into
    ``cinv_out (P, d, d)``.  Returns False if some ``C_e`` is not positive definite."""
    nk = s_out.shape[0]
    for i in range(nk):
        for j in range(nk):
            s_out[i, j] = 0.0
    for k in range(a_row.shape[0]):
        s_out[a_row[k], a_col[k]] += values[a_slot[k]]  # lower triangle only; mirrored at the end
    d = c_blocks.shape[1]
    widest = 0
    for e in range(ptr.shape[0] - 1):
        widest = max(widest, ptr[e + 1] - ptr[e])
    y = np.empty((widest, d))
    for e in range(ptr.shape[0] - 1):
        if not _invert_spd(c_blocks[e], cinv_out[e]):
            return False
        start, m = ptr[e], ptr[e + 1] - ptr[e]
        w = w_rows[start : start + m]
        for i in range(m):  # y_i = C⁻¹ w_i
            for a in range(d):
                acc = 0.0
                for b in range(d):
                    acc += cinv_out[e, a, b] * w[i, b]
                y[i, a] = acc
        # An element's coupling rows are sorted by kept column (SchurLayout), so j <= i is the lower triangle.
        if d == 3:  # bundle adjustment's points: the inner product written out
            for i in range(m):
                row = s_out[keep[start + i]]
                y0, y1, y2 = y[i, 0], y[i, 1], y[i, 2]
                for j in range(i + 1):
                    row[keep[start + j]] -= y0 * w[j, 0] + y1 * w[j, 1] + y2 * w[j, 2]
        else:
            for i in range(m):
                row = s_out[keep[start + i]]
                for j in range(i + 1):
                    acc = 0.0
                    for a in range(d):
                        acc += y[i, a] * w[j, a]
                    row[keep[start + j]] -= acc
    for i in range(nk):
        for j in range(i):
            s_out[j, i] = s_out[i, j]
    return True


@_jit
def reduce_sparse(values, a_slot, a_target, c_blocks, ptr, w_rows, pair_slot, s_values, cinv_out):
    """As ``reduce_matrix``, into the values ``s_values (nnz_S,)`` of ``S``'s sparse lower triangle:
    ``a_target`` is each ``A`` entry's slot there, ``pair_slot`` each row pair's, in the order
    visited below (``SchurLayout.row_pairs``)."""
    for k in range(s_values.shape[0]):
        s_values[k] = 0.0
    for k in range(a_slot.shape[0]):
        s_values[a_target[k]] += values[a_slot[k]]
    d = c_blocks.shape[1]
    widest = 0
    for e in range(ptr.shape[0] - 1):
        widest = max(widest, ptr[e + 1] - ptr[e])
    y = np.empty((widest, d))
    pair = 0
    for e in range(ptr.shape[0] - 1):
        if not _invert_spd(c_blocks[e], cinv_out[e]):
            return False
        start, m = ptr[e], ptr[e + 1] - ptr[e]
        w = w_rows[start : start + m]
        for i in range(m):
            for a in range(d):
                acc = 0.0
                for b in range(d):
                    acc += cinv_out[e, a, b] * w[i, b]
                y[i, a] = acc
        for i in range(m):
            for j in range(i + 1):
                acc = 0.0
                for a in range(d):
                    acc += y[i, a] * w[j, a]
                s_values[pair_slot[pair]] -= acc
                pair += 1
    return True


@_jit
def reduce_rhs(w_rows, ptr, keep, cinv, rhs_keep, rhs_elim, out):
    """``out = rhs_keep - Σ_e W_e C_e⁻¹ rhs_e`` (``rhs_elim: (P, d)``)."""
    d = cinv.shape[1]
    for k in range(out.shape[0]):
        out[k] = rhs_keep[k]
    z = np.empty(d)
    for e in range(ptr.shape[0] - 1):
        for a in range(d):
            acc = 0.0
            for b in range(d):
                acc += cinv[e, a, b] * rhs_elim[e, b]
            z[a] = acc
        for i in range(ptr[e], ptr[e + 1]):
            acc = 0.0
            for a in range(d):
                acc += w_rows[i, a] * z[a]
            out[keep[i]] -= acc


@_jit
def back_substitute(w_rows, ptr, keep, cinv, x_keep, rhs_elim, out):
    """``out_e = C_e⁻¹ (rhs_e - W_eᵀ x_keep)`` for every eliminated element: ``out (P, d)``."""
    d = cinv.shape[1]
    r = np.empty(d)
    for e in range(ptr.shape[0] - 1):
        for a in range(d):
            r[a] = rhs_elim[e, a]
        for i in range(ptr[e], ptr[e + 1]):
            x = x_keep[keep[i]]
            for a in range(d):
                r[a] -= w_rows[i, a] * x
        for a in range(d):
            acc = 0.0
            for b in range(d):
                acc += cinv[e, a, b] * r[b]
            out[e, a] = acc
