"""Left-looking supernodal Cholesky (Ng and Peyton) for block-sparse SPD matrices whose unknowns come in
blocks of one size d, in numba, for a whole batch of matrices of one pattern in one call.

Supernodes are maximal chains of block columns ``j, j + 1`` of L with ``parent[j] == j + 1`` and the same
row structure below, up to the explicit zeros ``RELAX`` allows (relaxed amalgamation).
Each supernode is a dense row-major panel (its own block rows first, then the rows of its structure
below, x its scalar columns); the panels of one matrix lie back to back in one flat array.  Factorizing
supernode K: scatter C = P A Pᵀ's entries into its panel; subtract the update ``L_J[rows >= K] L_J[rows
in K]ᵀ`` of every descendant supernode J whose structure meets K's columns (lower part only): unrolled
d x d loops where J is one block column and the product is small, else BLAS (syrk for the square, gemm
for the rectangle below, straight into the panel where J's rows are K's consecutive rows and all its
columns, else into a buffer scattered through a relative row map); then the dense Cholesky of the
diagonal square and the triangular solve of the rows below (unrolled loops for one block column, else
LAPACK potrf and BLAS trsm).  BLAS and LAPACK are SciPy's (``scipy.linalg.cython_blas/_lapack``), called
through ctypes function pointers passed as arguments, which keeps the kernels cacheable on disk.

Compared with ``_block_cholesky.BlockPattern`` (up-looking, one d x d block at a time) the arithmetic is
about the same; what changes is that most of it runs in dense products of whole panels, which pays
where the fill is high (sphere2500: about 2.2x) and does not cost where it is low.
"""

from __future__ import annotations

import ctypes
import functools
import types

import numba
import numpy as np

from . import _block_cholesky
from ._block_cholesky import _symbolic, all_finite, checked_blocks

_JIT = dict(cache=True, nogil=True, error_model="numpy", fastmath={"reassoc", "contract", "arcp"})

def blas_min_work(d: int) -> int:
    """Multiply-adds of an update product from a one-block-column supernode from which it is made by BLAS
    rather than by unrolled d x d loops (measured on pose graphs: loops always for d = 3, BLAS from
    about ten 6 x 6 block products for d = 6, where the two are within noise of each other; sources of
    more than one block column always go to BLAS)."""
    return 10 * d**3 if d >= 6 else 1 << 62


RELAX = (0.0, 0.0, 0.1)
"""Relaxed amalgamation: the fraction of explicit zero blocks a supernode of w block columns may hold,
``RELAX[w]`` (the last entry for wider ones); ``(0.0,)``: fundamental supernodes only.  Measured
(interleaved, 1 thread): 10 % zeros from two block columns on is 2-7 % faster on smallGrid3D,
sphere2500 and city10000 (fewer, wider BLAS products); 20 % and more is slower on the larger two."""

SYRK_MIN = 24
"""Target columns of an update product from which its symmetric square is made by syrk (half the
work) and the rest by gemm, rather than all of it by one gemm."""


class SupernodalPattern:
    """The symbolic analysis: block ordering, elimination tree, supernodes, panel layout, the scalar
    destination of every value and the list of supernode-to-supernode updates.

    Args:
        indptr, indices: the scalar pattern (lower triangle, CSC, complete d x d blocks).
        d: the block size.
        perm: ``(n / d,)`` block ordering: block k of the factorized matrix is block ``perm[k]`` of A.
        blocks: ``block_structure(indptr, indices, d)`` where the caller has it.

    ``factorize(values)`` returns ``(lx, ok)``: ``lx (B, size)`` the panels of each L back to back,
    ``ok (B,)``; ``solve(lx, ok, rhs)`` takes them.
    """

    def __init__(self, indptr: np.ndarray, indices: np.ndarray, d: int, perm: np.ndarray,
                 blocks: tuple[np.ndarray, np.ndarray] | None = None):
        bindptr, bindices = checked_blocks(self, indptr, indices, d, perm, blocks)
        nb, n = self.nb, self.n
        _, _, _, _, _, parent, lp, li = _symbolic(nb, bindptr.astype(np.int64), bindices.astype(np.int64), self.perm)
        self.parent = parent
        (self.sfirst, self.snode, self.sp, self.srows, self.poff, self.uptr, self.uj, self.up0,
         self.up1) = _supernodes(nb, d, parent, lp, li, np.asarray(RELAX, dtype=np.float64))
        self.ns = self.sfirst.size - 1
        # Destination in the flat panels of every scalar value (lower triangle of C = P A Pᵀ).
        inverse = np.empty(nb, dtype=np.int64)
        inverse[self.perm] = np.arange(nb)
        rows = indices.astype(np.int64)
        cols = np.repeat(np.arange(n, dtype=np.int64), np.diff(indptr).astype(np.int64))
        pr = inverse[rows // d] * d + rows % d
        pc = inverse[cols // d] * d + cols % d
        r, c = np.maximum(pr, pc), np.minimum(pr, pc)
        s = self.snode[c // d]
        keys = np.repeat(np.arange(self.ns, dtype=np.int64), np.diff(self.sp)) * nb + self.srows
        index = np.searchsorted(keys, s * nb + r // d) - self.sp[s]
        width = (self.sfirst[s + 1] - self.sfirst[s]) * d
        dest = self.poff[s] + (index * d + r % d) * width + (c - self.sfirst[s] * d)
        order = np.argsort(dest, kind="stable")
        self.dest, self.src = dest[order], order.astype(np.int64)
        self.tptr = np.searchsorted(s[order], np.arange(self.ns + 1)).astype(np.int64)
        self.size = int(self.poff[-1])
        rows_below = np.diff(self.sp)[self.uj] - self.up0  # the work buffer: the largest update product
        self.max_update = max(int(np.max(rows_below * (self.up1 - self.up0), initial=0)) * d * d, 1)

    @property
    def nnz(self) -> int:
        """Scalars stored per factor (the panels; their diagonal squares whole, upper halves zero)."""
        return self.size

    @property
    def widths(self) -> np.ndarray:
        """Block columns of each supernode."""
        return np.diff(self.sfirst)

    def factorize(self, values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """``values (B, nnz) float64`` -> ``(lx (B, size), ok (B,))``."""
        values = np.ascontiguousarray(values, dtype=np.float64)
        batch = values.shape[0]
        lx = np.empty((batch, max(self.size, 1)))
        ok = np.zeros(batch, dtype=np.bool_)
        _kernels(self.d)[0](values, self.sfirst, self.sp, self.srows, self.poff, self.uptr, self.uj, self.up0,
                            self.up1, self.dest, self.src, self.tptr, self.max_update, lx, ok, *_lapack()[:4],
                            blas_min_work(self.d), SYRK_MIN)
        return lx, ok

    def solve(self, lx: np.ndarray, ok: np.ndarray, rhs: np.ndarray) -> np.ndarray:
        """``A_b⁻¹ rhs_b`` for ``rhs (B, n, k)`` (zeros where ``ok`` is False)."""
        out = np.zeros_like(rhs, dtype=np.float64)
        _kernels(self.d)[1](self.perm, self.sfirst, self.sp, self.srows, self.poff, lx, ok,
                            np.ascontiguousarray(rhs, dtype=np.float64), out, *_lapack()[4:])
        return out


@numba.njit(cache=True)
def _supernodes(nb, d, parent, lp, li, relax):  # type: ignore[no-untyped-def]
    """Supernodes (``sfirst``: first block column of each, ``snode``: the supernode of each block column),
    their block row structures (``sp, srows``: the supernode's own columns first, then the structure of
    its last column, rows increasing), the panel offsets ``poff`` and the updates sorted by target: for
    target K, ``uj[uptr[K]:uptr[K + 1]]`` the source supernodes and ``up0, up1`` the range of the
    source's structure in K's columns.

    A chain ``j, j + 1`` (``parent[j] == j + 1``) joins one supernode where the structures match, or
    (relaxed amalgamation) where the explicit zeros it brings stay under ``relax`` of the supernode's
    blocks: ``relax[w]`` for a supernode of w block columns (the last entry for wider ones)."""
    sfirst = np.empty(nb + 1, dtype=np.int64)
    snode = np.empty(nb, dtype=np.int64)
    ns = 0
    sfirst[0] = 0
    true = 0  # nonzero blocks of the current supernode's columns (diagonal blocks included)
    for j in range(nb):
        snode[j] = ns
        true += 1 + lp[j + 1] - lp[j]
        merge = False
        if j + 1 < nb and parent[j] == j + 1:
            if lp[j + 1] - lp[j] == lp[j + 2] - lp[j + 1] + 1:
                merge = True
            else:
                w = j + 2 - sfirst[ns]
                total = w * (w + 1) // 2 + w * (lp[j + 2] - lp[j + 1])
                zeros = total - true - (1 + lp[j + 2] - lp[j + 1])
                merge = zeros <= relax[min(w, relax.size - 1)] * total
        if not merge:
            ns += 1
            sfirst[ns] = j + 1
            true = 0
    sfirst = sfirst[:ns + 1].copy()
    sp = np.zeros(ns + 1, dtype=np.int64)
    poff = np.zeros(ns + 1, dtype=np.int64)
    for s in range(ns):
        f, last = sfirst[s], sfirst[s + 1] - 1
        rows = last + 1 - f + lp[last + 1] - lp[last]
        sp[s + 1] = sp[s] + rows
        poff[s + 1] = poff[s] + rows * d * (last + 1 - f) * d
    srows = np.empty(sp[ns], dtype=np.int64)
    for s in range(ns):
        f, last = sfirst[s], sfirst[s + 1] - 1
        for c in range(f, last + 1):
            srows[sp[s] + c - f] = c
        for p in range(lp[last], lp[last + 1]):
            srows[sp[s] + last + 1 - f + p - lp[last]] = li[p]
    # Updates: each run of the structure below J's columns that lies in one supernode K (at most one per row).
    target = np.empty(sp[ns], dtype=np.int64)
    uj = np.empty(sp[ns], dtype=np.int64)
    up0 = np.empty(sp[ns], dtype=np.int64)
    up1 = np.empty(sp[ns], dtype=np.int64)
    t = 0
    for j in range(ns):
        w = sfirst[j + 1] - sfirst[j]
        last = -1
        for p in range(sp[j] + w, sp[j + 1]):
            k = snode[srows[p]]
            if k != last:
                target[t] = k
                uj[t] = j
                up0[t] = p - sp[j]
                t += 1
                last = k
            up1[t - 1] = p - sp[j] + 1
    count = t
    target, uj, up0, up1 = target[:count], uj[:count], up0[:count], up1[:count]
    order = np.argsort(target, kind="mergesort")
    uptr = np.zeros(ns + 1, dtype=np.int64)
    for t in range(count):
        uptr[target[t] + 1] += 1
    for s in range(ns):
        uptr[s + 1] += uptr[s]
    return sfirst, snode, sp, srows, poff, uptr, uj[order].copy(), up0[order].copy(), up1[order].copy()


def _factorize(values, sfirst, sp, srows, poff, uptr, uj, up0, up1, dest, src, tptr, max_update, lx, ok,  # type: ignore[no-untyped-def]
               dgemm, dpotrf, dtrsm, dsyrk, blas_min_work, syrk_min):
    batch, d = values.shape[0], D
    ns = sfirst.size - 1
    nb = sfirst[ns]
    pos = np.empty(nb, dtype=np.int64)
    work = np.zeros(max_update)  # (the scatter reads whole diagonal d x d blocks; syrk fills their lower half)
    aa = np.empty(d * d)
    bb = np.empty(d * d)
    prod = np.empty(d * d)
    linv = np.empty(d * d)
    chars = np.array([ord("N"), ord("T"), ord("L"), ord("U"), ord("R")], dtype=np.uint8)
    ints = np.zeros(8, dtype=np.int32)  # m, n, k, lda, ldb, ldc, info
    reals = np.array([1.0, 0.0, -1.0])
    for b in range(batch):
        v = values[b]
        flat = lx[b]
        ok[b] = all_finite(v)
        if not ok[b]:
            continue
        for k in range(ns):
            f = sfirst[k]
            width = (sfirst[k + 1] - f) * d
            height = (sp[k + 1] - sp[k]) * d
            base = poff[k]
            flat[base:base + height * width] = 0.0
            for q in range(tptr[k], tptr[k + 1]):
                flat[dest[q]] = v[src[q]]
            for i in range(sp[k], sp[k + 1]):
                pos[srows[i]] = i - sp[k]
            for u in range(uptr[k], uptr[k + 1]):  # C[rows >= f, f:l] -= L_J[rows >= f] L_J[f:l]ᵀ
                j = uj[u]
                p0, p1 = up0[u], up1[u]
                wj = (sfirst[j + 1] - sfirst[j]) * d
                rj = sp[j + 1] - sp[j]
                rows_j = srows[sp[j]:sp[j + 1]]
                jbase = poff[j]
                m = (rj - p0) * d
                qn = (p1 - p0) * d
                if wj == d and m * qn * wj < blas_min_work:  # one block column: unrolled d x d products
                    for t in range(p0, p1):
                        rt = jbase + t * d * d
                        for ww in range(d):  # transposed: bb[z, ww] = L_J[t-block row ww, z]
                            for z in range(d):
                                bb[z * d + ww] = flat[rt + ww * d + z]
                        tcol = base + (rows_j[t] - f) * d
                        for i in range(t, rj):
                            ri = jbase + i * d * d
                            tc = tcol + pos[rows_j[i]] * d * width
                            for x in range(d * d):
                                aa[x] = flat[ri + x]
                            for uu in range(d):
                                for ww in range(d):
                                    prod[uu * d + ww] = 0.0
                                for z in range(d):
                                    a = aa[uu * d + z]
                                    for ww in range(d):
                                        prod[uu * d + ww] += a * bb[z * d + ww]
                            for uu in range(d):
                                for ww in range(d):
                                    flat[tc + uu * width + ww] -= prod[uu * d + ww]
                    continue
                start = jbase + p0 * d * wj
                first = pos[rows_j[p0]]
                # Column-major view: the source rows p0.. are S (wj x m), those in K's columns Sq (wj x qn);
                # the lower part of the product (row-major) is the upper triangle Sqᵀ Sq (syrk) above the
                # rectangle Sqᵀ S[:, qn:] (gemm).
                ints[0], ints[1], ints[2], ints[3] = qn, m - qn, wj, wj
                if qn == width and pos[rows_j[rj - 1]] - first == rj - 1 - p0:
                    # all of K's columns and consecutive rows of K (from its first): subtract in place
                    ints[4] = width
                    if qn < syrk_min:  # one gemm of the whole (also the unused upper part of the square)
                        ints[1] = m
                        dgemm(chars[1:].ctypes, chars[0:].ctypes, ints[0:].ctypes, ints[1:].ctypes,
                              ints[2:].ctypes, reals[2:].ctypes, flat[start:].ctypes, ints[3:].ctypes,
                              flat[start:].ctypes, ints[3:].ctypes, reals[0:].ctypes, flat[base:].ctypes,
                              ints[4:].ctypes)
                        continue
                    dsyrk(chars[3:].ctypes, chars[1:].ctypes, ints[0:].ctypes, ints[2:].ctypes, reals[2:].ctypes,
                          flat[start:].ctypes, ints[3:].ctypes, reals[0:].ctypes, flat[base:].ctypes,
                          ints[4:].ctypes)
                    if m > qn:
                        dgemm(chars[1:].ctypes, chars[0:].ctypes, ints[0:].ctypes, ints[1:].ctypes,
                              ints[2:].ctypes, reals[2:].ctypes, flat[start:].ctypes, ints[3:].ctypes,
                              flat[start + qn * wj:].ctypes, ints[3:].ctypes, reals[0:].ctypes,
                              flat[base + qn * width:].ctypes, ints[4:].ctypes)
                    continue
                ints[4] = qn  # into work (m x qn, row-major), then scattered
                if qn < syrk_min:
                    ints[1] = m
                    dgemm(chars[1:].ctypes, chars[0:].ctypes, ints[0:].ctypes, ints[1:].ctypes, ints[2:].ctypes,
                          reals[0:].ctypes, flat[start:].ctypes, ints[3:].ctypes, flat[start:].ctypes,
                          ints[3:].ctypes, reals[1:].ctypes, work.ctypes, ints[4:].ctypes)
                else:
                    dsyrk(chars[3:].ctypes, chars[1:].ctypes, ints[0:].ctypes, ints[2:].ctypes, reals[0:].ctypes,
                          flat[start:].ctypes, ints[3:].ctypes, reals[1:].ctypes, work.ctypes, ints[4:].ctypes)
                    if m > qn:
                        dgemm(chars[1:].ctypes, chars[0:].ctypes, ints[0:].ctypes, ints[1:].ctypes, ints[2:].ctypes,
                              reals[0:].ctypes, flat[start:].ctypes, ints[3:].ctypes, flat[start + qn * wj:].ctypes,
                              ints[3:].ctypes, reals[1:].ctypes, work[qn * qn:].ctypes, ints[4:].ctypes)
                for i in range(p0, rj):
                    ti = pos[rows_j[i]] * d
                    ci = (i - p0) * d
                    for t in range(p0, min(i + 1, p1)):
                        tc = base + ti * width + (rows_j[t] - f) * d
                        cc = (t - p0) * d
                        for uu in range(d):
                            trow = tc + uu * width
                            crow = (ci + uu) * qn + cc
                            for w in range(d):
                                flat[trow + w] -= work[crow + w]
            if width == d:  # one block column: unrolled Cholesky of the d x d block, then rows below
                for w in range(d):
                    acc = flat[base + w * d + w]
                    for z in range(w):
                        acc -= flat[base + w * d + z] * flat[base + w * d + z]
                    if not (acc > 0.0 and np.isfinite(acc)):
                        ok[b] = False
                        break
                    flat[base + w * d + w] = np.sqrt(acc)
                    inverse = 1.0 / flat[base + w * d + w]
                    for uu in range(w + 1, d):
                        acc = flat[base + uu * d + w]
                        for z in range(w):
                            acc -= flat[base + uu * d + z] * flat[base + w * d + z]
                        flat[base + uu * d + w] = acc * inverse
                    for uu in range(w):
                        flat[base + uu * d + w] = 0.0
                if not ok[b]:
                    break
                for w in range(d):  # linv = L11⁻¹ (lower), by forward substitution on the identity
                    for c in range(d):
                        acc = 1.0 if w == c else 0.0
                        for z in range(c, w):
                            acc -= flat[base + w * d + z] * linv[z * d + c]
                        linv[w * d + c] = acc / flat[base + w * d + w] if c <= w else 0.0
                for i in range(d, height):  # rows below: L21 = A21 L11⁻ᵀ, row by row, no division
                    ri = base + i * d
                    for z in range(d):
                        aa[z] = flat[ri + z]
                    for w in range(d):
                        acc = 0.0
                        for z in range(w + 1):
                            acc += aa[z] * linv[w * d + z]
                        flat[ri + w] = acc
                continue
            # Wider: LAPACK on the column-major view (the row-major lower triangle is its upper one).
            ints[0], ints[1], ints[3] = width, height - width, width
            dpotrf(chars[3:].ctypes, ints[0:].ctypes, flat[base:].ctypes, ints[3:].ctypes, ints[6:].ctypes)
            if ints[6] != 0:
                ok[b] = False
                break
            for w in range(width):
                if not np.isfinite(flat[base + w * width + w]):
                    ok[b] = False
                for uu in range(w):
                    flat[base + uu * width + w] = 0.0
            if not ok[b]:
                break
            if height > width:  # L21ᵀ = U⁻ᵀ A21ᵀ, U = L11ᵀ (column-major upper)
                dtrsm(chars[2:].ctypes, chars[3:].ctypes, chars[1:].ctypes, chars[0:].ctypes, ints[0:].ctypes,
                      ints[1:].ctypes, reals[0:].ctypes, flat[base:].ctypes, ints[3:].ctypes,
                      flat[base + width * width:].ctypes, ints[3:].ctypes)


def _solve(perm, sfirst, sp, srows, poff, lx, ok, rhs, out, dgemv, dtrsv):  # type: ignore[no-untyped-def]
    batch, n, nrhs, d = rhs.shape[0], rhs.shape[1], rhs.shape[2], D
    ns = sfirst.size - 1
    nb = n // d
    y = np.empty(n)
    x = np.empty(n)
    t = np.empty(n)
    chars = np.array([ord("N"), ord("T"), ord("L"), ord("U")], dtype=np.uint8)
    ints = np.array([0, 0, 1], dtype=np.int32)  # m, n, incx
    reals = np.array([1.0, 0.0, -1.0])
    for b in range(batch):
        if not ok[b]:
            continue
        flat = lx[b]
        for c in range(nrhs):
            for k in range(nb):
                for u in range(d):
                    y[k * d + u] = rhs[b, perm[k] * d + u, c]
            for k in range(ns):  # L y = P b
                f = sfirst[k]
                width = (sfirst[k + 1] - f) * d
                height = (sp[k + 1] - sp[k]) * d
                base = poff[k]
                c0 = f * d
                if width == d:
                    for i in range(width):
                        acc = y[c0 + i]
                        for z in range(i):
                            acc -= flat[base + i * width + z] * y[c0 + z]
                        y[c0 + i] = acc / flat[base + i * width + i]
                    for z in range(width):
                        x[z] = y[c0 + z]
                    for p in range(sp[k] + 1, sp[k + 1]):
                        r = srows[p] * d
                        ri = base + (p - sp[k]) * d * d
                        for uu in range(d):
                            acc = 0.0
                            for z in range(d):
                                acc += flat[ri + uu * d + z] * x[z]
                            y[r + uu] -= acc
                    continue
                for z in range(width):
                    x[z] = y[c0 + z]
                ints[0] = width  # L11 x = y: the column-major upper triangle U = L11ᵀ, solve Uᵀ x = y
                dtrsv(chars[3:].ctypes, chars[1:].ctypes, chars[0:].ctypes, ints[0:].ctypes, flat[base:].ctypes,
                      ints[0:].ctypes, x.ctypes, ints[2:].ctypes)
                for z in range(width):
                    y[c0 + z] = x[z]
                below = height - width  # wider: t = L21 x by BLAS (column-major: L21ᵀ is width x below)
                if below > 0:
                    ints[0], ints[1] = width, below
                    dgemv(chars[1:].ctypes, ints[0:].ctypes, ints[1:].ctypes, reals[0:].ctypes,
                          flat[base + width * width:].ctypes, ints[0:].ctypes, x.ctypes, ints[2:].ctypes,
                          reals[1:].ctypes, t.ctypes, ints[2:].ctypes)
                    for p in range(sp[k] + width // d, sp[k + 1]):
                        r = srows[p] * d
                        o = (p - sp[k]) * d - width
                        for uu in range(d):
                            y[r + uu] -= t[o + uu]
            for k in range(ns - 1, -1, -1):  # Lᵀ x = y
                f = sfirst[k]
                width = (sfirst[k + 1] - f) * d
                height = (sp[k + 1] - sp[k]) * d
                base = poff[k]
                c0 = f * d
                for z in range(width):
                    x[z] = y[c0 + z]
                if width == d:
                    for p in range(sp[k] + 1, sp[k + 1]):
                        r = srows[p] * d
                        ri = base + (p - sp[k]) * d * d
                        for uu in range(d):
                            a = y[r + uu]
                            for z in range(d):
                                x[z] -= flat[ri + uu * d + z] * a
                    for i in range(width - 1, -1, -1):
                        a = x[i] / flat[base + i * width + i]
                        x[i] = a
                        for z in range(i):
                            x[z] -= flat[base + i * width + z] * a
                else:
                    below = height - width
                    if below > 0:  # x -= L21ᵀ y_below
                        for p in range(sp[k] + width // d, sp[k + 1]):
                            r = srows[p] * d
                            o = (p - sp[k]) * d - width
                            for uu in range(d):
                                t[o + uu] = y[r + uu]
                        ints[0], ints[1] = width, below
                        dgemv(chars[0:].ctypes, ints[0:].ctypes, ints[1:].ctypes, reals[2:].ctypes,
                              flat[base + width * width:].ctypes, ints[0:].ctypes, t.ctypes, ints[2:].ctypes,
                              reals[0:].ctypes, x.ctypes, ints[2:].ctypes)
                    ints[0] = width  # U x = x
                    dtrsv(chars[3:].ctypes, chars[0:].ctypes, chars[0:].ctypes, ints[0:].ctypes,
                          flat[base:].ctypes, ints[0:].ctypes, x.ctypes, ints[2:].ctypes)
                for z in range(width):
                    y[c0 + z] = x[z]
            for k in range(nb):
                for u in range(d):
                    out[b, perm[k] * d + u, c] = y[k * d + u]


D = 0
"""The block size, a compile-time constant of each specialization (``_kernels``), so that numba unrolls
the d-long loops."""


@functools.cache
def _lapack() -> tuple:
    """``(dgemm, dpotrf, dtrsm, dsyrk, dgemv, dtrsv)`` of SciPy's BLAS and LAPACK as ctypes functions, passed to the kernel as
    arguments (first-class functions keep the kernel cacheable on disk; Fortran conventions: every
    argument by pointer, 32-bit integers)."""
    from numba.extending import get_cython_function_address

    def function(module: str, name: str, count: int):  # type: ignore[no-untyped-def]
        address = get_cython_function_address(f"scipy.linalg.cython_{module}", name)
        return ctypes.CFUNCTYPE(None, *([ctypes.c_void_p] * count))(address)

    return (function("blas", "dgemm", 13), function("lapack", "dpotrf", 5), function("blas", "dtrsm", 11),
            function("blas", "dsyrk", 10), function("blas", "dgemv", 11), function("blas", "dtrsv", 8))


@functools.cache
def _kernels(d: int) -> tuple:
    """``(factorize, solve)`` compiled for block size ``d`` (each cached on disk under its own name)."""
    out = []
    for template in (_factorize, _solve):
        scope = dict(template.__globals__, D=d)
        function = types.FunctionType(template.__code__, scope, f"{template.__name__}_d{d}")
        function.__qualname__ = f"{template.__qualname__}_d{d}"
        out.append(numba.njit(**_JIT)(function))
    return tuple(out)


def warm_up(sizes: tuple[int, ...] = (3, 6)) -> None:
    """Load (the first time on a machine: compile and cache, some seconds per block size) the kernels for
    these block sizes (``_block_cholesky.warm_up``)."""
    _block_cholesky.warm_up(sizes, SupernodalPattern)
