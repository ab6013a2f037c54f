"""Numba CPU kernels for gathered, segment-summed Clebsch-Gordan products (N-centre features).

:func:`cg_product_segments` serves every product of :mod:`ncsym.pairs`: pair features
``rho_i ⊗ g_ij``, lambda-SOAP ``rho_i ⊗ rho_i``, j-decorated terms ``rho_j ⊗ g_ij``,
three-centre terms ``(rho_i ⊗ g_ij) ⊗ g_ik`` and message-passing sums
``sum_j g_ij ⊗ rho_j``.  :func:`cg_product_separable` is the fast path for products with one
neighbour's expansion ``g_ij``, whose coefficients factor as ``I_nl(r_ij) Y_l^m(r_ij / r_ij)``.

Data layout
    A *flat factor* is a 2-D float64 array ``(n_rows, width)`` holding several equivariant blocks
    side by side: block ``b`` of order ``l`` with ``P`` properties occupies the columns
    ``offset_b + m * P + p`` for ``m = 0 .. 2l`` (that is ``m = -l .. l``) and ``p = 0 .. P-1``,
    exactly ``values.reshape(n_rows, -1)`` of a ``(n_rows, 2l + 1, P)`` block.
Product
    Output row ``r`` sums the samples ``s = seg[r] .. seg[r + 1] - 1``; each sample reads row
    ``idx_a[s]`` of ``a`` and row ``idx_b[s]`` of ``b``.  For a *term* coupling block ``(l1, P1)``
    of ``a`` with block ``(l2, P2)`` of ``b`` through the CG table ``(l1, l2, lam)``::

        out[r, mu, out_offset + p * P2 + q] += sum_s sum_{m1, m2} cg[m1, m2, mu]
                                               a[idx_a[s], m1, p] b[idx_b[s], m2, q]

    Properties of ``a`` run slowest, those of ``b`` fastest.  Output blocks are passed by data
    address (:func:`output_addresses`, C-contiguous ``(n_out, 2 lam + 1, P)`` arrays), so entry
    ``(mu, p)`` of row ``r`` is float ``r * (2 lam + 1) * P + mu * P + p`` of the block.  Raw
    addresses, not a typed list of arrays: fetching an array from a list per row and term cost
    atomic reference counts that the two threads fought over (12 ms per Si216 structure).
Method
    For each sample and each pair of input blocks the outer product
    ``u[m1, m2, p, q] = a[m1, p] b[m2, q]`` is formed once in a per-thread buffer and reused by
    every output order ``lam``; each CG non-zero then adds one contiguous ``P1 * P2`` vector into
    the output (vectorisable).  Rows are independent, so the outer loop is parallel; every row is
    written by one thread in a fixed order, which makes results independent of the thread count.
    No ``fastmath``: equivariance to 1e-12 and exact exchange symmetry need IEEE arithmetic.
Large outputs
    :func:`cg_product_separable_rows` (used when a product fills whole output blocks) assembles
    each row of a block in a cached scratch and copies it out in one run, with non-temporal
    stores when the output is larger than the caches.  Both separable kernels work on rows of
    up to 8 properties as single masked vectors (:mod:`ncsym.kernels.simd`: the loop over CG
    nonzeros and the rank-one output rows each run inside one intrinsic; 7 radial channels are
    one vector, not a 7-iteration scalar remainder).  Pair features of Si216 at max_angular 4
    (542 MB) went from 80 to 26-33 ms per structure on two threads: ~12-17 ms of arithmetic
    and ~14 ms of writing, the floor with non-temporal stores at ~40 GB/s.
"""

from __future__ import annotations

import numba
import numpy as np

from .simd import (
    accumulate_cg8,
    axpy_padded,
    copy_to_address,
    float_pointer,
    outer_rows8,
    padded,
    scale_to,
    store_fence,
    zero_padded,
)

__all__ = [
    "cg_product_segments",
    "cg_product_separable",
    "cg_product_separable_rows",
    "output_addresses",
    "PAIR_COLUMNS",
    "TERM_COLUMNS",
]

#: Columns of the ``pairs`` table: ``a_offset, 2 l1 + 1, P1, b_offset, 2 l2 + 1, P2,
#: first_term, stop_term`` (terms ``first_term .. stop_term - 1`` use this pair of blocks).
PAIR_COLUMNS = ("a_offset", "a_size", "a_props", "b_offset", "b_size", "b_props", "start", "stop")

#: Columns of the ``terms`` table: ``cg_table, out_block, out_offset, out_width``;
#: ``cg_table`` indexes ``cg_offsets``, ``out_block`` the output blocks (``out_address``), and
#: ``out_width`` is the number of properties ``P`` of that output block.
TERM_COLUMNS = ("cg_table", "out_block", "out_offset", "out_width")


@numba.njit(cache=True)
def _segments_chunk(
    r_start, r_stop, a, idx_a, b, idx_b, seg, pairs, terms, cg_offsets, cg_m1, cg_m2, cg_mu, cg_coef,
    out_address, out_row, max_u,
):  # pragma: no cover - compiled
    """Output rows ``r_start .. r_stop - 1`` of :func:`cg_product_segments`."""
    u = np.empty(max_u)
    n_pairs = pairs.shape[0]
    for r in range(r_start, r_stop):
        for s in range(seg[r], seg[r + 1]):
            ia = idx_a[s]
            ib = idx_b[s]
            for t in range(n_pairs):
                a_off = pairs[t, 0]
                da = pairs[t, 1]
                pa = pairs[t, 2]
                b_off = pairs[t, 3]
                db = pairs[t, 4]
                pb = pairs[t, 5]
                width = pa * pb
                for m1 in range(da):
                    for m2 in range(db):
                        base = (m1 * db + m2) * width
                        b_start = b_off + m2 * pb
                        for p in range(pa):
                            x = a[ia, a_off + m1 * pa + p]
                            row = base + p * pb
                            for q in range(pb):
                                u[np.uint64(row + q)] = x * b[ib, np.uint64(b_start + q)]
                for k in range(pairs[t, 6], pairs[t, 7]):
                    table = terms[k, 0]
                    block = terms[k, 1]
                    out = float_pointer(out_address[block] + 8 * r * out_row[block])
                    o_off = terms[k, 2]
                    stride = terms[k, 3]
                    for e in range(cg_offsets[table], cg_offsets[table + 1]):
                        coef = cg_coef[e]
                        ubase = (cg_m1[e] * db + cg_m2[e]) * width
                        obase = cg_mu[e] * stride + o_off
                        # unsigned indices: no negative-index wraparound test, so LLVM
                        # vectorises this axpy (several times faster)
                        for f in range(width):
                            out[np.uint64(obase + f)] += coef * u[np.uint64(ubase + f)]


@numba.njit(parallel=True, cache=True)
def cg_product_segments(
    a, idx_a, b, idx_b, seg, pairs, terms, cg_offsets, cg_m1, cg_m2, cg_mu, cg_coef, out_address,
    out_row, chunk,
):  # pragma: no cover - compiled
    """Accumulate gathered CG products into the output blocks (see the module docstring).

    Parameters
    ----------
    a : float64 (n_a, width_a)
        First flat factor.
    idx_a : int64 (n_samples,)
        Row of ``a`` read by each sample.
    b : float64 (n_b, width_b)
        Second flat factor.
    idx_b : int64 (n_samples,)
        Row of ``b`` read by each sample.
    seg : int64 (n_out + 1,)
        Output row ``r`` sums samples ``seg[r] .. seg[r + 1] - 1`` (non-decreasing).
    pairs : int64 (n_pairs, 8)
        Block pairs, columns :data:`PAIR_COLUMNS`.
    terms : int64 (n_terms, 4)
        Terms, columns :data:`TERM_COLUMNS`.
    cg_offsets : int64 (n_tables + 1,)
        Entries of table ``t`` are ``cg_offsets[t] .. cg_offsets[t + 1] - 1``.
    cg_m1, cg_m2, cg_mu : int32 (nnz,)
        Component indices counted from zero (C-contiguous int32: the separable kernels read them
        by address).
    cg_coef : float64 (nnz,)
        CG coefficients.
    out_address : int64 (n_blocks,)
        Data address of every output block, a C-contiguous float64 ``(n_out, 2 lam + 1,
        n_properties)`` array that the caller keeps alive and zeroes (accumulated in place).
        See :func:`output_addresses`.
    out_row : int64 (n_blocks,)
        Floats per row of every output block, ``(2 lam + 1) * n_properties``.
    chunk : int
        Output rows handled by one task of the parallel loop.
    """
    n_out = seg.shape[0] - 1
    n_pairs = pairs.shape[0]
    max_u = 1
    for t in range(n_pairs):
        size = pairs[t, 1] * pairs[t, 2] * pairs[t, 4] * pairs[t, 5]
        if size > max_u:
            max_u = size
    n_chunks = (n_out + chunk - 1) // chunk
    for c in numba.prange(n_chunks):
        # the rows are written by a function of their own: stores through raw addresses inside
        # the parallel loop body would be removed by Numba's dead-code elimination
        _segments_chunk(
            c * chunk, min((c + 1) * chunk, n_out), a, idx_a, b, idx_b, seg, pairs, terms, cg_offsets,
            cg_m1, cg_m2, cg_mu, cg_coef, out_address, out_row, max_u,
        )


@numba.njit(cache=True)
def _separable_scratch(pairs, terms, out_row):  # pragma: no cover - compiled
    """Floats of the ``T`` scratch of the separable kernels: the largest ``(2 lam + 1) padded(P1)``."""
    max_t = 1
    for t in range(pairs.shape[0]):
        for k in range(pairs[t, 6], pairs[t, 7]):
            max_t = max(max_t, (out_row[terms[k, 1]] // terms[k, 3]) * padded(pairs[t, 2]))
    return max_t


@numba.njit(cache=True)
def _term_rows(
    tmp_at, pa8, a_at, pa, y_at, e0, e1, m1_at, m2_at, mu_at, coef_at, cg_m1, cg_m2, cg_mu, cg_coef, out_at,
    stride, n_mu, rad_at, pb,
):  # pragma: no cover - compiled
    """One separable term at addresses: ``out[mu * stride + p * pb + q] = T[mu, p] rad[q]`` with
    ``T[mu, p] = sum_e cg_e y[m2_e] a[m1_e * pa + p]`` (``T`` in rows of ``pa8`` floats at ``tmp_at``)."""
    zero_padded(tmp_at, n_mu * pa8)
    if pa <= 8:
        # one vector per row: the loop over nonzeros runs inside one intrinsic
        accumulate_cg8(tmp_at, pa8, a_at, pa, y_at, m1_at, m2_at, mu_at, coef_at, e0, e1)
    else:
        y = float_pointer(y_at)
        for e in range(e0, e1):
            cy = cg_coef[e] * y[cg_m2[e]]
            if cy == 0.0:
                continue
            axpy_padded(tmp_at + 8 * cg_mu[e] * pa8, a_at + 8 * cg_m1[e] * pa, cy, pa)
    if pb <= 8:
        outer_rows8(out_at, stride, tmp_at, pa8, n_mu, pa, rad_at, pb)
    else:
        tmp = float_pointer(tmp_at)
        for mu in range(n_mu):
            for p in range(pa):
                scale_to(out_at + 8 * (mu * stride + p * pb), rad_at, tmp[mu * pa8 + p], pb)


@numba.njit(cache=True)
def _separable_chunk(
    r_start, r_stop, a, idx_a, y, radial, idx_b, pairs, terms, cg_offsets, cg_m1, cg_m2, cg_mu, cg_coef,
    out_address, out_row, max_t,
):  # pragma: no cover - compiled
    """Output rows ``r_start .. r_stop - 1`` of :func:`cg_product_separable`."""
    tmp = np.empty(max_t)
    tmp_at = tmp.ctypes.data
    n_pairs = pairs.shape[0]
    n_y = y.shape[1]
    n_l = radial.shape[1]
    n_q = radial.shape[2]
    m1_at = cg_m1.ctypes.data
    m2_at = cg_m2.ctypes.data
    mu_at = cg_mu.ctypes.data
    coef_at = cg_coef.ctypes.data
    for r in range(r_start, r_stop):
        ia = idx_a[r]
        ib = idx_b[r]
        a_at = a.ctypes.data + 8 * ia * a.shape[1]
        for t in range(n_pairs):
            a_off = pairs[t, 0]
            pa = pairs[t, 2]
            l2 = pairs[t, 3]
            pb = pairs[t, 5]
            y0 = l2 * l2
            pa8 = padded(pa)
            rad_at = radial.ctypes.data + 8 * (ib * n_l + l2) * n_q
            for k in range(pairs[t, 6], pairs[t, 7]):
                table = terms[k, 0]
                block = terms[k, 1]
                out_at = out_address[block] + 8 * r * out_row[block]
                o_off = terms[k, 2]
                stride = terms[k, 3]
                n_mu = out_row[block] // stride
                _term_rows(
                    tmp_at, pa8, a_at + 8 * a_off, pa, y.ctypes.data + 8 * (ib * n_y + y0), cg_offsets[table],
                    cg_offsets[table + 1], m1_at, m2_at, mu_at, coef_at, cg_m1, cg_m2, cg_mu, cg_coef,
                    out_at + 8 * o_off, stride, n_mu, rad_at, pb,
                )


@numba.njit(parallel=True, cache=True)
def cg_product_separable(
    a, idx_a, y, radial, idx_b, pairs, terms, cg_offsets, cg_m1, cg_m2, cg_mu, cg_coef, out_address,
    out_row, chunk,
):  # pragma: no cover - compiled
    """Gathered CG products with a separable second factor ``b[m2, q] = y[m2] radial[q]``.

    The expansion of one neighbour's density, ``<n l m|g_ij> = I_nl(r_ij) Y_l^m(r_ij / r_ij)``,
    is separable, so for each output order ``lam``::

        out[r, mu, p * P2 + q] = T[mu, p] radial[idx_b[r], l2, q],
        T[mu, p] = sum_{m1, m2} cg[m1, m2, mu] y[idx_b[r], l2^2 + m2] a[idx_a[r], m1, p],

    which costs ``nnz * P1 + (2 lam + 1) * P1 * P2`` per term instead of ``nnz * P1 * P2``.
    Outputs are **assigned** (every entry of a block belongs to exactly one term).

    Parameters
    ----------
    a, idx_a
        As in :func:`cg_product_segments`; ``a`` C-contiguous (rows are read by address).
    y : float64 (n_b, (lmax + 1)**2), C-contiguous
        Angular factor of each row of the second factor.
    radial : float64 (n_b, lmax + 1, P2), C-contiguous
        Radial factor of each row and order ``l2``.
    idx_b : int64 (n_out,)
        Row of ``y`` / ``radial`` for each output row.
    pairs : int64 (n_pairs, 8)
        As in :func:`cg_product_segments`, except that column 3 holds ``l2``.
    terms, cg_offsets, cg_m1, cg_m2, cg_mu, cg_coef, out_address, out_row, chunk
        As in :func:`cg_product_segments`.
    """
    n_out = idx_a.shape[0]
    max_t = _separable_scratch(pairs, terms, out_row)
    n_chunks = (n_out + chunk - 1) // chunk
    for c in numba.prange(n_chunks):
        _separable_chunk(
            c * chunk, min((c + 1) * chunk, n_out), a, idx_a, y, radial, idx_b, pairs, terms, cg_offsets,
            cg_m1, cg_m2, cg_mu, cg_coef, out_address, out_row, max_t,
        )


@numba.njit(cache=True)
def _separable_rows_chunk(
    r_start, r_stop, a, idx_a, y, radial, idx_b, pairs, terms, term_pair, block_ptr, block_terms, cg_offsets,
    cg_m1, cg_m2, cg_mu, cg_coef, out_address, out_row, max_t, nontemporal,
):  # pragma: no cover - compiled
    """Output rows ``r_start .. r_stop - 1`` of :func:`cg_product_separable_rows`."""
    tmp = np.empty(max_t)
    max_row = 1
    for blk in range(out_row.shape[0]):
        max_row = max(max_row, out_row[blk])
    stage = np.empty(max_row)
    tmp_at = tmp.ctypes.data
    stage_at = stage.ctypes.data
    n_l = radial.shape[1]
    n_q = radial.shape[2]
    n_y = y.shape[1]
    y_at = y.ctypes.data
    m1_at = cg_m1.ctypes.data
    m2_at = cg_m2.ctypes.data
    mu_at = cg_mu.ctypes.data
    coef_at = cg_coef.ctypes.data
    for r in range(r_start, r_stop):
        ia = idx_a[r]
        ib = idx_b[r]
        a_at = a.ctypes.data + 8 * ia * a.shape[1]
        for blk in range(out_row.shape[0]):
            row_len = out_row[blk]
            for kk in range(block_ptr[blk], block_ptr[blk + 1]):
                k = block_terms[kk]
                t = term_pair[k]
                a_off = pairs[t, 0]
                pa = pairs[t, 2]
                l2 = pairs[t, 3]
                pb = pairs[t, 5]
                y0 = l2 * l2
                table = terms[k, 0]
                o_off = terms[k, 2]
                stride = terms[k, 3]
                n_mu = row_len // stride
                _term_rows(
                    tmp_at, padded(pa), a_at + 8 * a_off, pa, y_at + 8 * (ib * n_y + y0), cg_offsets[table],
                    cg_offsets[table + 1], m1_at, m2_at, mu_at, coef_at, cg_m1, cg_m2, cg_mu, cg_coef,
                    stage_at + 8 * o_off, stride, n_mu, radial.ctypes.data + 8 * (ib * n_l + l2) * n_q, pb,
                )
            copy_to_address(out_address[blk] + 8 * r * row_len, stage, 0, row_len, nontemporal)
    if nontemporal:
        store_fence()


@numba.njit(parallel=True, cache=True)
def cg_product_separable_rows(
    a, idx_a, y, radial, idx_b, pairs, terms, term_pair, block_ptr, block_terms, cg_offsets, cg_m1, cg_m2,
    cg_mu, cg_coef, out_address, out_row, chunk, nontemporal,
):  # pragma: no cover - compiled
    """:func:`cg_product_separable` for outputs whose every row is written by this call.

    Each output row of each block is assembled in a per-thread scratch that stays in cache and
    then copied to the block in one contiguous run, with non-temporal stores if
    ``nontemporal`` (:func:`ncsym.kernels.simd.copy_to_address`): large outputs are then
    written without first being read into the caches.  The terms of every block must together
    fill its rows (``column_offset`` zero, blocks exactly as wide as the plan).

    Parameters
    ----------
    a, idx_a, y, radial, idx_b, pairs, terms, cg_offsets, cg_m1, cg_m2, cg_mu, cg_coef, out_address, out_row, chunk
        As in :func:`cg_product_separable`.
    term_pair : int64 (n_terms,)
        Row of ``pairs`` that each term belongs to.
    block_ptr : int64 (n_blocks + 1,)
        Terms of output block ``k`` are ``block_terms[block_ptr[k] : block_ptr[k + 1]]``.
    block_terms : int64 (n_terms,)
        Term indices grouped by output block.
    nontemporal : bool
        Write the output with non-temporal stores.
    """
    n_out = idx_a.shape[0]
    max_t = _separable_scratch(pairs, terms, out_row)
    n_chunks = (n_out + chunk - 1) // chunk
    for c in numba.prange(n_chunks):
        _separable_rows_chunk(
            c * chunk, min((c + 1) * chunk, n_out), a, idx_a, y, radial, idx_b, pairs, terms, term_pair,
            block_ptr, block_terms, cg_offsets, cg_m1, cg_m2, cg_mu, cg_coef, out_address, out_row, max_t,
            nontemporal,
        )


def output_addresses(blocks) -> tuple[np.ndarray, np.ndarray]:
    """``(out_address, out_row)`` of output blocks for the kernels of this module.

    Parameters
    ----------
    blocks : sequence of float64 arrays, each C-contiguous, shape (n_out, ...)
        The caller must keep them alive while a kernel writes them.

    Returns
    -------
    out_address, out_row : int64 (n_blocks,)
        Data address and floats per row of every block.
    """
    n_out = {int(blk.shape[0]) for blk in blocks}
    if len(n_out) > 1:
        raise ValueError(f"output blocks have different numbers of rows: {sorted(n_out)}")
    for blk in blocks:
        if blk.dtype != np.float64 or not blk.flags.c_contiguous or not blk.flags.writeable:
            raise ValueError("output blocks must be writeable, C-contiguous float64 arrays")
    address = np.array([blk.ctypes.data for blk in blocks], dtype=np.int64)
    row = np.array([blk[:1].size if blk.shape[0] else 0 for blk in blocks], dtype=np.int64)
    return address, row
