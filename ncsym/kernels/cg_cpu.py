"""Numba CPU kernels for Clebsch-Gordan (CG) products of equivariant arrays.

Every kernel is a pure function of plain arrays (no Python objects), compiled with
``@numba.njit(cache=True, parallel=True)`` and parallel (``prange``) over output rows; the
output is allocated by the caller (:mod:`ncsym.products`), which also validates every input.
``fastmath`` stays off so that results are reproducible to the last bit and equivariant to
round-off.

CG nonzeros are passed as flat COO arrays, exactly as :func:`ncsym.cg.cg_tables` stores them:
``m1, m2, mu`` (int32, components counted from zero) and ``coef`` (float64), **sorted by**
``mu`` (see :func:`ncsym.products.cg_terms`).  With ``a`` of shape ``(Na, 2 l1 + 1, Pa)`` and
``b`` of shape ``(Nb, 2 l2 + 1, Pb)``:

``outer_product(a, b, idx_a, idx_b, m1, m2, mu, coef, out)``
    ``out[s, mu, p * Pb + q] += coef * a[idx_a[s], m1, p] * b[idx_b[s], m2, q]``,
    ``out`` of shape ``(n, 2 lam + 1, Pa * Pb)``.
``channelwise_product(a, b, idx_a, idx_b, m1, m2, mu, coef, out)``
    ``out[s, mu, p] += coef * a[idx_a[s], m1, p] * b[idx_b[s], m2, p]`` (``Pa == Pb == P``).
``outer_product_segments(a, b, idx_a, idx_b, segments, m1, m2, mu, coef, out)``
    Message passing: ``out[i] += sum_{s in segments[i]:segments[i+1]} outer(s)``, the sum over
    all pairs ``s`` of centre ``i`` (pairs sorted by centre), without materialising the pair
    products.  ``channelwise_product_segments`` is the channel-wise analogue.
``outer_product_plan(a, b, idx_a, idx_b, groups, pair_m1, pair_m2, rows, nz_pair, nz_coef,
buf_size, out)``
    Fused kernel for ACDC iterations: many ``(block_a, block_b) -> lam`` products written in one
    pass over the samples into one flat output buffer (assignment, not accumulation).  The
    plan layout is described in :func:`outer_product_plan`.
``outer_product_plan_blocks(..., rows, nz_pair, nz_coef, buf_size, block_start, block_size,
out_base, sample0, chunk, out, nontemporal)``
    The same for block-major outputs (the last ACDC iteration), assembling each sample in a
    cached scratch and copying it out block by block (non-temporal stores for large outputs).

Loop order.  For each output row ``s`` (one thread) and a tile of ``p`` values, the products
``a[m1, p] * b[m2, :]`` of every ``(m1, m2)`` pair are formed once in a small buffer
``T`` (L2 resident; in the plan kernel as ``a_exp[m1] * b_rep[m2]`` over the flattened tile so
that this loop is long too), then each ``(mu, p-tile)`` output row is built by
``row = sum_k coef_k * T[(m1, m2)_k]`` over its nonzeros, four at a time (one load and one
store of the row per four multiply-adds): long, contiguous, vectorisable loops on a row that
stays in L1.  The tile keeps ``T`` under about 192 KiB and an output row tile under 4 KiB
whatever the number of properties (``Pa`` reaches thousands at correlation order 3 without
contraction); smaller tiles measured slower (shorter loops), larger ones no faster.  Inner loops index flat buffers with ``uint64`` offsets: Numba then emits no
negative-index wraparound code (which stopped LLVM from vectorising, about 6x slower) and no
array views are created in hot loops (a view's reference count is an atomic operation that
two threads fight over).
"""

from __future__ import annotations

import numba
import numpy as np
from numba import prange

from .simd import copy_to_address, store_fence

#: Target number of float64 entries in the per-thread product buffer ``T`` (192 KiB, in L2).
TILE_BUFFER = 24576
#: Target length of one output row tile (4 KiB of float64).
TILE_ROW = 512

# Column layout of the ``groups`` and ``rows`` tables of :func:`outer_product_plan`.
G_A_BASE, G_A_SSTRIDE, G_A_MSTRIDE, G_A_P = 0, 1, 2, 3
G_B_BASE, G_B_SSTRIDE, G_B_MSTRIDE, G_B_P = 4, 5, 6, 7
G_PAIR_START, G_PAIR_END, G_ROW_START, G_ROW_END, G_TILE_P = 8, 9, 10, 11, 12
N_GROUP_COLUMNS = 13
R_O_BASE, R_O_SSTRIDE, R_NZ_START, R_NZ_END, R_GROUP = 0, 1, 2, 3, 4
N_ROW_COLUMNS = 5


def tile_p(n_pairs: int, pa: int, pb: int) -> int:
    """Number of ``p`` values handled at once so that ``T`` and an output row fit in cache.

    Parameters
    ----------
    n_pairs : int
        Number of ``(m1, m2)`` products kept in ``T``.
    pa, pb : int
        Properties of the two inputs.

    Returns
    -------
    int
        Between 1 and ``pa``.
    """
    pb = max(pb, 1)
    by_buffer = TILE_BUFFER // max(n_pairs * pb, 1)
    by_row = TILE_ROW // pb
    return int(max(1, min(pa, by_buffer, by_row)))


@numba.njit(cache=True)
def _combine_at(out, o, buf, w, coef, pair, k0, k1, assign):  # pragma: no cover - jitted
    """``out[o : o + w] (= or +=) sum_{k0 <= k < k1} coef[k] * buf[pair[k] * w : pair[k] * w + w]``.

    Offsets are ``uint64`` so that Numba emits no negative-index wraparound code and no array
    views (whose reference counts are atomic operations) are created in the loop.
    """
    uw = np.uint64(w)
    uo = np.uint64(o)
    k = k0
    first = assign
    if k0 == k1 and assign:
        for e in range(uw):
            out[uo + e] = 0.0
    while k < k1:
        left = k1 - k
        if left >= 4:
            c0 = coef[k]
            c1 = coef[k + 1]
            c2 = coef[k + 2]
            c3 = coef[k + 3]
            t0 = np.uint64(pair[k]) * uw
            t1 = np.uint64(pair[k + 1]) * uw
            t2 = np.uint64(pair[k + 2]) * uw
            t3 = np.uint64(pair[k + 3]) * uw
            if first:
                for e in range(uw):
                    out[uo + e] = c0 * buf[t0 + e] + c1 * buf[t1 + e] + c2 * buf[t2 + e] + c3 * buf[t3 + e]
            else:
                for e in range(uw):
                    out[uo + e] += c0 * buf[t0 + e] + c1 * buf[t1 + e] + c2 * buf[t2 + e] + c3 * buf[t3 + e]
            k += 4
        elif left == 3:
            c0 = coef[k]
            c1 = coef[k + 1]
            c2 = coef[k + 2]
            t0 = np.uint64(pair[k]) * uw
            t1 = np.uint64(pair[k + 1]) * uw
            t2 = np.uint64(pair[k + 2]) * uw
            if first:
                for e in range(uw):
                    out[uo + e] = c0 * buf[t0 + e] + c1 * buf[t1 + e] + c2 * buf[t2 + e]
            else:
                for e in range(uw):
                    out[uo + e] += c0 * buf[t0 + e] + c1 * buf[t1 + e] + c2 * buf[t2 + e]
            k += 3
        elif left == 2:
            c0 = coef[k]
            c1 = coef[k + 1]
            t0 = np.uint64(pair[k]) * uw
            t1 = np.uint64(pair[k + 1]) * uw
            if first:
                for e in range(uw):
                    out[uo + e] = c0 * buf[t0 + e] + c1 * buf[t1 + e]
            else:
                for e in range(uw):
                    out[uo + e] += c0 * buf[t0 + e] + c1 * buf[t1 + e]
            k += 2
        else:
            c0 = coef[k]
            t0 = np.uint64(pair[k]) * uw
            if first:
                for e in range(uw):
                    out[uo + e] = c0 * buf[t0 + e]
            else:
                for e in range(uw):
                    out[uo + e] += c0 * buf[t0 + e]
            k += 1
        first = False



@numba.njit(cache=True)
def _fill_products(buf, a_block, b_block, p0, p1):  # pragma: no cover - jitted
    """``buf[(i1 * n2 + i2) * w + (p - p0) * Pb + q] = a_block[i1, p] * b_block[i2, q]``.

    ``a_block`` (2 l1 + 1, Pa) and ``b_block`` (2 l2 + 1, Pb) are one sample of each input;
    ``w = (p1 - p0) * Pb``.
    """
    n1 = a_block.shape[0]
    n2 = b_block.shape[0]
    ub_p = np.uint64(b_block.shape[1])
    uw = np.uint64(p1 - p0) * ub_p
    for i1 in range(n1):
        for i2 in range(n2):
            t0 = np.uint64(i1 * n2 + i2) * uw
            for pp in range(np.uint64(p1 - p0)):
                ap = a_block[i1, np.uint64(p0) + pp]
                tt = t0 + pp * ub_p
                for q in range(ub_p):
                    buf[tt + q] = ap * b_block[i2, q]


@numba.njit(cache=True)
def _pair_index(m1, m2, n2):  # pragma: no cover - jitted
    out = np.empty(m1.shape[0], dtype=np.int64)
    for k in range(m1.shape[0]):
        out[k] = m1[k] * n2 + m2[k]
    return out


@numba.njit(cache=True)
def _outer_one(a_block, b_block, buf, pidx, coef, mu, out_rows):  # pragma: no cover - jitted
    """``out_rows[mu] += sum_k coef * a_block[m1] (x) b_block[m2]`` for one sample (all ``p``).

    ``out_rows`` is the C-contiguous ``(2 lam + 1, Pa * Pb)`` output of the sample.
    """
    n1 = a_block.shape[0]
    n2 = b_block.shape[0]
    pa = a_block.shape[1]
    pb = b_block.shape[1]
    nnz = coef.shape[0]
    width = pa * pb
    flat = out_rows.reshape(-1)
    tp = max(1, min(pa, TILE_BUFFER // max(n1 * n2 * pb, 1), TILE_ROW // max(pb, 1)))
    for p0 in range(0, pa, tp):
        p1 = min(p0 + tp, pa)
        w = (p1 - p0) * pb
        _fill_products(buf, a_block, b_block, p0, p1)
        k0 = 0
        while k0 < nnz:
            k1 = k0
            while k1 < nnz and mu[k1] == mu[k0]:
                k1 += 1
            _combine_at(flat, mu[k0] * width + p0 * pb, buf, w, coef, pidx, k0, k1, False)
            k0 = k1


@numba.njit(cache=True, parallel=True)
def outer_product(a, b, idx_a, idx_b, m1, m2, mu, coef, out):  # pragma: no cover - jitted
    """``out[s, mu, p*Pb + q] += sum coef * a[idx_a[s], m1, p] * b[idx_b[s], m2, q]``.

    Parameters
    ----------
    a : float64 (Na, 2 l1 + 1, Pa), C-contiguous
    b : float64 (Nb, 2 l2 + 1, Pb), C-contiguous
    idx_a, idx_b : int64 (n,)
        Input rows of output row ``s`` (all valid).
    m1, m2, mu : int32 (nnz,)
        CG nonzeros, sorted by ``mu``.
    coef : float64 (nnz,)
    out : float64 (n, 2 lam + 1, Pa * Pb), accumulated into.
    """
    n = idx_a.shape[0]
    n1 = a.shape[1]
    n2 = b.shape[1]
    pa = a.shape[2]
    pb = b.shape[2]
    pidx = _pair_index(m1, m2, n2)
    tp = max(1, min(pa, TILE_BUFFER // max(n1 * n2 * pb, 1), TILE_ROW // max(pb, 1)))
    for s in prange(n):
        buf = np.empty(n1 * n2 * tp * pb)
        _outer_one(a[idx_a[s]], b[idx_b[s]], buf, pidx, coef, mu, out[s])


@numba.njit(cache=True, parallel=True)
def channelwise_product(a, b, idx_a, idx_b, m1, m2, mu, coef, out):  # pragma: no cover - jitted
    """``out[s, mu, p] += sum coef * a[idx_a[s], m1, p] * b[idx_b[s], m2, p]``.

    Parameters
    ----------
    a : float64 (Na, 2 l1 + 1, P)
    b : float64 (Nb, 2 l2 + 1, P)
    idx_a, idx_b : int64 (n,)
    m1, m2, mu : int32 (nnz,), sorted by ``mu``
    coef : float64 (nnz,)
    out : float64 (n, 2 lam + 1, P), accumulated into.
    """
    n = idx_a.shape[0]
    p_count = a.shape[2]
    nnz = coef.shape[0]
    for s in prange(n):
        a_s = a[idx_a[s]]
        b_s = b[idx_b[s]]
        o_s = out[s]
        for k in range(nnz):
            c = coef[k]
            arow = a_s[m1[k]]
            brow = b_s[m2[k]]
            orow = o_s[mu[k]]
            for p in range(p_count):
                orow[p] += c * arow[p] * brow[p]


@numba.njit(cache=True, parallel=True)
def outer_product_segments(
    a, b, idx_a, idx_b, segments, m1, m2, mu, coef, out
):  # pragma: no cover - jitted
    """Sum of outer CG products over the pairs of each centre (message passing).

    ``out[i, mu, p*Pb + q] += sum_{s = segments[i]}^{segments[i+1]-1} sum coef *
    a[idx_a[s], m1, p] * b[idx_b[s], m2, q]``.

    Parameters
    ----------
    a : float64 (Na, 2 l1 + 1, Pa)
    b : float64 (Nb, 2 l2 + 1, Pb)
    idx_a, idx_b : int64 (n_pairs,)
        Pairs sorted by centre.
    segments : int64 (n_out + 1,)
        Pairs ``segments[i]:segments[i+1]`` belong to output row ``i`` (non-decreasing).
    m1, m2, mu : int32 (nnz,), sorted by ``mu``
    coef : float64 (nnz,)
    out : float64 (n_out, 2 lam + 1, Pa * Pb), accumulated into.
    """
    n_out = segments.shape[0] - 1
    n1 = a.shape[1]
    n2 = b.shape[1]
    pa = a.shape[2]
    pb = b.shape[2]
    pidx = _pair_index(m1, m2, n2)
    tp = max(1, min(pa, TILE_BUFFER // max(n1 * n2 * pb, 1), TILE_ROW // max(pb, 1)))
    for i in prange(n_out):
        buf = np.empty(n1 * n2 * tp * pb)
        for s in range(segments[i], segments[i + 1]):
            _outer_one(a[idx_a[s]], b[idx_b[s]], buf, pidx, coef, mu, out[i])


@numba.njit(cache=True, parallel=True)
def channelwise_product_segments(
    a, b, idx_a, idx_b, segments, m1, m2, mu, coef, out
):  # pragma: no cover - jitted
    """Channel-wise analogue of :func:`outer_product_segments`.

    ``out[i, mu, p] += sum_{s in segment i} sum coef * a[idx_a[s], m1, p] * b[idx_b[s], m2, p]``.

    Parameters
    ----------
    a : float64 (Na, 2 l1 + 1, P)
    b : float64 (Nb, 2 l2 + 1, P)
    idx_a, idx_b : int64 (n_pairs,)
    segments : int64 (n_out + 1,)
    m1, m2, mu : int32 (nnz,), sorted by ``mu``
    coef : float64 (nnz,)
    out : float64 (n_out, 2 lam + 1, P), accumulated into.
    """
    n_out = segments.shape[0] - 1
    p_count = a.shape[2]
    nnz = coef.shape[0]
    for i in prange(n_out):
        o_i = out[i]
        for s in range(segments[i], segments[i + 1]):
            a_s = a[idx_a[s]]
            b_s = b[idx_b[s]]
            for k in range(nnz):
                c = coef[k]
                arow = a_s[m1[k]]
                brow = b_s[m2[k]]
                orow = o_i[mu[k]]
                for p in range(p_count):
                    orow[p] += c * arow[p] * brow[p]


@numba.njit(cache=True)
def _plan_sample(
    a, b, ia, ib, s, groups, pair_m1, pair_m2, rows, nz_pair, nz_coef, buf, a_exp, b_rep, out
):  # pragma: no cover - jitted
    """All groups of :func:`outer_product_plan` for output sample ``s`` (one thread)."""
    n_groups = groups.shape[0]
    for g in range(n_groups):
        a_ms = groups[g, 2]
        a_p = groups[g, 3]
        b_ms = groups[g, 6]
        b_p = groups[g, 7]
        pr0 = groups[g, 8]
        pr1 = groups[g, 9]
        r0 = groups[g, 10]
        r1 = groups[g, 11]
        tp = groups[g, 12]
        if ia < 0 or ib < 0:
            width = a_p * b_p
            for r in range(r0, r1):
                _combine_at(out, rows[r, 0] + s * rows[r, 1], buf, width, nz_coef, nz_pair, 0, 0, True)
            continue
        a0 = groups[g, 0] + ia * groups[g, 1]
        b0 = groups[g, 4] + ib * groups[g, 5]
        n1 = 0
        n2 = 0
        for u in range(pr0, pr1):
            n1 = max(n1, pair_m1[u] + 1)
            n2 = max(n2, pair_m2[u] + 1)
        ufull = np.uint64(tp * b_p)
        ub_p = np.uint64(b_p)
        for i2 in range(n2):
            src = np.uint64(b0 + i2 * b_ms)
            dst0 = np.uint64(i2) * ufull
            for pp in range(np.uint64(tp)):
                dst = dst0 + pp * ub_p
                for q in range(ub_p):
                    b_rep[dst + q] = b[src + q]
        for p0 in range(0, a_p, tp):
            p1 = min(p0 + tp, a_p)
            w = (p1 - p0) * b_p
            uw = np.uint64(w)
            for i1 in range(n1):
                src = np.uint64(a0 + i1 * a_ms + p0)
                dst0 = np.uint64(i1) * ufull
                for pp in range(np.uint64(p1 - p0)):
                    v = a[src + pp]
                    dst = dst0 + pp * ub_p
                    for q in range(ub_p):
                        a_exp[dst + q] = v
            for u in range(pr1 - pr0):
                x0 = np.uint64(pair_m1[pr0 + u]) * ufull
                y0 = np.uint64(pair_m2[pr0 + u]) * ufull
                t0 = np.uint64(u) * uw
                for e in range(uw):
                    buf[t0 + e] = a_exp[x0 + e] * b_rep[y0 + e]
            for r in range(r0, r1):
                o = rows[r, 0] + s * rows[r, 1] + p0 * b_p
                _combine_at(out, o, buf, w, nz_coef, nz_pair, rows[r, 2], rows[r, 3], True)


@numba.njit(cache=True, parallel=True)
def outer_product_plan(
    a, b, idx_a, idx_b, groups, pair_m1, pair_m2, rows, nz_pair, nz_coef, buf_size, out
):  # pragma: no cover - jitted
    """Many outer CG products in one pass over the samples (ACDC iterations, CGProduct).

    A *group* is one pair of input blocks ``(A, B)`` (orders ``l1``, ``l2``) together with the
    output rows ``(lam, mu)`` it feeds.  Block ``A`` lives in the flat buffer ``a``: property
    ``p`` of component ``m`` of sample ``i`` is ``a[A_BASE + i * A_SSTRIDE + m * A_MSTRIDE + p]``,
    ``p < A_P`` (so ``(n, 2 l + 1, P)`` blocks, property slices of them, and slices
    ``[:, l*l:(l+1)**2, :]`` of a dense ``(n, (lmax + 1)**2, P)`` expansion are all described
    without copies); likewise ``B`` in ``b``.  Output row ``r`` of sample ``s`` is
    ``out[O_BASE + s * O_SSTRIDE : ... + A_P * B_P]`` with entry ``p * B_P + q``, and is
    **assigned** (not accumulated)::

        row(r, s)[p * B_P + q] = sum_{k in row r} nz_coef[k] A[idx_a[s], m1_k, p] B[idx_b[s], m2_k, q]

    where ``(m1_k, m2_k) = (pair_m1, pair_m2)[PAIR_START + nz_pair[k]]``.  Rows without nonzeros,
    and every row of a sample with ``idx_a[s] < 0`` or ``idx_b[s] < 0``, are set to zero.

    Parameters
    ----------
    a, b : float64 1-D
        Flat buffers holding the left and right input blocks.
    idx_a, idx_b : int64 (n,)
        Input sample of each output sample (negative: no partner, output zero).
    groups : int64 (n_groups, 13)
        Columns ``A_BASE, A_SSTRIDE, A_MSTRIDE, A_P, B_BASE, B_SSTRIDE, B_MSTRIDE, B_P,
        PAIR_START, PAIR_END, ROW_START, ROW_END, TILE_P`` (the ``G_*`` constants).
    pair_m1, pair_m2 : int32 (n_pairs,)
        ``(m1, m2)`` products needed by each group, ``PAIR_START:PAIR_END``.
    rows : int64 (n_rows, 5)
        Columns ``O_BASE, O_SSTRIDE, NZ_START, NZ_END, GROUP``; group ``g`` owns rows
        ``ROW_START:ROW_END`` (``GROUP`` repeats ``g``, for the CUDA kernel).
    nz_pair : int32 (nnz,)
        Pair index of each nonzero, relative to its group's ``PAIR_START``.
    nz_coef : float64 (nnz,)
    buf_size : int
        Size of each of the three per-thread work buffers: at least
        ``max_g max(n_pairs, max m1 + 1, max m2 + 1) * TILE_P * B_P`` over the groups.
    out : float64 1-D
        Flat output buffer.
    """
    n = idx_a.shape[0]
    for s in prange(n):
        buf = np.empty(buf_size)
        a_exp = np.empty(buf_size)
        b_rep = np.empty(buf_size)
        _plan_sample(
            a, b, idx_a[s], idx_b[s], s, groups, pair_m1, pair_m2, rows, nz_pair, nz_coef, buf, a_exp, b_rep, out
        )


@numba.njit(cache=True, parallel=True)
def outer_product_plan_blocks(
    a, b, idx_a, idx_b, groups, pair_m1, pair_m2, rows, nz_pair, nz_coef, buf_size, block_start,
    block_size, out_base, sample0, chunk, out, nontemporal,
):  # pragma: no cover - jitted
    """:func:`outer_product_plan` for block-major outputs, staged one sample at a time.

    ``rows`` describe **one** sample (``O_SSTRIDE`` unused): its output is the concatenation of
    its blocks, block ``k`` at ``block_start[k] : block_start[k] + block_size[k]``.  Each
    sample is first assembled in a per-thread scratch of that size, which stays in cache while
    the rows fill it piece by piece, and then copied block by block to
    ``out[out_base[k] + (sample0 + s) * block_size[k] : ... + block_size[k]]`` in long
    contiguous runs.  Writing the rows straight to the blocks instead scatters 8-byte-aligned
    pieces over every block of the sample, whose partly written cache lines cost a memory read
    each (Si216, lambda-SOAP at max_angular 6: 45.6 ms, against 26.8 ms with the output in
    cache, one thread).

    Parameters
    ----------
    a, b, idx_a, idx_b, groups, pair_m1, pair_m2, nz_pair, nz_coef, buf_size
        As in :func:`outer_product_plan`.
    rows : int64 (n_rows, 5)
        As in :func:`outer_product_plan`, for one sample written at offset 0.
    block_start, block_size : int64 (n_blocks,)
        Layout of one sample's output (``block_start[k + 1] = block_start[k] + block_size[k]``).
    out_base : int64 (n_blocks,)
        Offset of block ``k`` (its sample 0) in ``out``.
    sample0 : int
        Output sample of input sample 0.
    chunk : int
        Samples per task of the parallel loop (each task allocates its scratch once).
    out : float64 1-D
        Flat output buffer.
    nontemporal : bool
        Copy the samples out with non-temporal stores (outputs larger than the caches; see
        :mod:`ncsym.kernels.simd`).
    """
    n = idx_a.shape[0]
    n_blocks = block_size.shape[0]
    per_sample = 0
    for k in range(n_blocks):
        per_sample = max(per_sample, block_start[k] + block_size[k])
    n_chunks = (n + chunk - 1) // chunk
    for c in prange(n_chunks):
        buf = np.empty(buf_size)
        a_exp = np.empty(buf_size)
        b_rep = np.empty(buf_size)
        scratch = np.empty(per_sample)
        for s in range(c * chunk, min(n, (c + 1) * chunk)):
            _plan_sample(
                a, b, idx_a[s], idx_b[s], 0, groups, pair_m1, pair_m2, rows, nz_pair, nz_coef, buf, a_exp,
                b_rep, scratch,
            )
            t = sample0 + s
            for k in range(n_blocks):
                dst = out.ctypes.data + 8 * (out_base[k] + t * block_size[k])
                copy_to_address(dst, scratch, block_start[k], block_size[k], nontemporal)
        if nontemporal:
            store_fence()
