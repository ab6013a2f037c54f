"""numba.cuda kernels for Clebsch-Gordan products, mirroring :mod:`ncsym.kernels.cg_cpu`.

The public functions have the names, arguments and semantics of their CPU counterparts
(``outer_product``, ``channelwise_product``, ``outer_product_segments``,
``channelwise_product_segments``, ``outer_product_plan``).  They accept NumPy arrays or CUDA
device arrays: device arrays are used in place (``out`` is updated on the device), NumPy
arrays are copied to the device and ``out`` is copied back into the same NumPy array.

Parallelisation: one thread per output entry (``sample, property``), grid-stride loops so any
grid size is valid; each thread loops over the nonzeros sorted by ``mu`` and keeps the running
sum in a register, so every output entry is written once per ``mu`` with no atomics (the
segment kernels own their output row, so message passing needs no atomics either).
Consecutive threads handle consecutive properties, so loads of ``b`` and stores of ``out`` are
coalesced.

This module imports ``numba.cuda``; it is only imported by
``ncsym.kernels.get_backend("cuda")``.  Tests run it under the CUDA simulator
(``NUMBA_ENABLE_CUDASIM=1``, set before Numba is imported) on tiny inputs.
"""

from __future__ import annotations

import math

import numpy as np
from numba import cuda

#: Threads per block of every launch.
THREADS_PER_BLOCK = 128
#: Upper bound on blocks per grid dimension (grid-stride loops cover the rest).
MAX_BLOCKS = 4096


def require_device() -> None:
    """Raise ``RuntimeError`` unless a CUDA device (or the simulator) is available."""
    if not cuda.is_available():
        raise RuntimeError(
            "backend='cuda' needs a CUDA device and numba-cuda (pip install 'ncsym[cuda]'); "
            "for testing without a GPU set NUMBA_ENABLE_CUDASIM=1 before importing numba"
        )


def _blocks(total: int) -> int:
    return max(1, min(MAX_BLOCKS, math.ceil(max(total, 1) / THREADS_PER_BLOCK)))


def _is_device(array) -> bool:
    """True for a numba.cuda device array (real or simulated)."""
    return bool(cuda.devicearray.is_cuda_ndarray(array))


def _to_device(array):
    return array if _is_device(array) else cuda.to_device(np.ascontiguousarray(array))


def _run(kernel, grid, inputs, out):
    """Launch ``kernel[grid](*inputs, out)``; copy ``out`` back when it is a NumPy array."""
    d_inputs = [_to_device(x) if isinstance(x, np.ndarray) or _is_device(x) else x for x in inputs]
    if _is_device(out):
        kernel[grid, THREADS_PER_BLOCK](*d_inputs, out)
        return out
    d_out = cuda.to_device(out)
    kernel[grid, THREADS_PER_BLOCK](*d_inputs, d_out)
    d_out.copy_to_host(out)
    return out


# --------------------------------------------------------------------------- kernels


@cuda.jit(device=True)
def _entry(e, pb, diagonal):  # pragma: no cover - device code
    """Properties ``(p, q)`` of output entry ``e``: ``e = p * pb + q``, or ``p = q = e`` (channel-wise)."""
    if diagonal:
        return e, e
    p = e // pb
    return p, e - p * pb


@cuda.jit
def _product_kernel(a, b, idx_a, idx_b, m1, m2, mu, coef, diagonal, out):  # pragma: no cover - device code
    """Outer (``diagonal`` false) or channel-wise (true) product, one thread per output entry."""
    n = idx_a.shape[0]
    width = out.shape[2]
    pb = b.shape[2]
    nnz = coef.shape[0]
    start = cuda.grid(1)
    stride = cuda.gridsize(1)
    for t in range(start, n * width, stride):
        s = t // width
        e = t - s * width
        p, q = _entry(e, pb, diagonal)
        ia = idx_a[s]
        ib = idx_b[s]
        if nnz == 0:
            continue
        current = mu[0]
        acc = 0.0
        for k in range(nnz):
            if mu[k] != current:
                out[s, current, e] += acc
                acc = 0.0
                current = mu[k]
            acc += coef[k] * a[ia, m1[k], p] * b[ib, m2[k], q]
        out[s, current, e] += acc


@cuda.jit
def _product_segments_kernel(
    a, b, idx_a, idx_b, segments, m1, m2, mu, coef, diagonal, out
):  # pragma: no cover - device code
    """Segment sums of :func:`_product_kernel`; each thread owns one entry of one output row."""
    n_out = segments.shape[0] - 1
    width = out.shape[2]
    pb = b.shape[2]
    nnz = coef.shape[0]
    start = cuda.grid(1)
    stride = cuda.gridsize(1)
    for t in range(start, n_out * width, stride):
        i = t // width
        e = t - i * width
        p, q = _entry(e, pb, diagonal)
        k0 = 0
        while k0 < nnz:
            k1 = k0
            while k1 < nnz and mu[k1] == mu[k0]:
                k1 += 1
            acc = 0.0
            for s in range(segments[i], segments[i + 1]):
                ia = idx_a[s]
                ib = idx_b[s]
                for k in range(k0, k1):
                    acc += coef[k] * a[ia, m1[k], p] * b[ib, m2[k], q]
            out[i, mu[k0], e] += acc
            k0 = k1


@cuda.jit
def _outer_product_plan_kernel(
    a, b, idx_a, idx_b, groups, pair_m1, pair_m2, rows, nz_pair, nz_coef, buf_size, out
):  # pragma: no cover - device code
    n = idx_a.shape[0]
    n_rows = rows.shape[0]
    x0 = cuda.grid(1)
    x_stride = cuda.gridsize(1)
    # grid axis y runs over output rows; axis x over (sample, property) of that row
    for r in range(cuda.blockIdx.y, n_rows, cuda.gridDim.y):
        g = rows[r, 4]
        a_ms = groups[g, 2]
        a_p = groups[g, 3]
        b_ms = groups[g, 6]
        b_p = groups[g, 7]
        pr0 = groups[g, 8]
        width = a_p * b_p
        k0 = rows[r, 2]
        k1 = rows[r, 3]
        for t in range(x0, n * width, x_stride):
            s = t // width
            e = t - s * width
            p = e // b_p
            q = e - p * b_p
            ia = idx_a[s]
            ib = idx_b[s]
            acc = 0.0
            if ia >= 0 and ib >= 0:
                a0 = groups[g, 0] + ia * groups[g, 1] + p
                b0 = groups[g, 4] + ib * groups[g, 5] + q
                for k in range(k0, k1):
                    u = pr0 + nz_pair[k]
                    acc += nz_coef[k] * a[a0 + pair_m1[u] * a_ms] * b[b0 + pair_m2[u] * b_ms]
            out[rows[r, 0] + s * rows[r, 1] + e] = acc


# --------------------------------------------------------------------------- host wrappers


def _product(a, b, idx_a, idx_b, m1, m2, mu, coef, out, diagonal):
    total = out.shape[0] * out.shape[2]
    inputs = (a, b, idx_a, idx_b, m1, m2, mu, coef, np.bool_(diagonal))
    return _run(_product_kernel, _blocks(total), inputs, out)


def _product_segments(a, b, idx_a, idx_b, segments, m1, m2, mu, coef, out, diagonal):
    total = out.shape[0] * out.shape[2]
    inputs = (a, b, idx_a, idx_b, segments, m1, m2, mu, coef, np.bool_(diagonal))
    return _run(_product_segments_kernel, _blocks(total), inputs, out)


def outer_product(a, b, idx_a, idx_b, m1, m2, mu, coef, out):
    """CUDA version of :func:`ncsym.kernels.cg_cpu.outer_product` (same arguments)."""
    return _product(a, b, idx_a, idx_b, m1, m2, mu, coef, out, False)


def channelwise_product(a, b, idx_a, idx_b, m1, m2, mu, coef, out):
    """CUDA version of :func:`ncsym.kernels.cg_cpu.channelwise_product` (same arguments)."""
    return _product(a, b, idx_a, idx_b, m1, m2, mu, coef, out, True)


def outer_product_segments(a, b, idx_a, idx_b, segments, m1, m2, mu, coef, out):
    """CUDA version of :func:`ncsym.kernels.cg_cpu.outer_product_segments` (same arguments)."""
    return _product_segments(a, b, idx_a, idx_b, segments, m1, m2, mu, coef, out, False)


def channelwise_product_segments(a, b, idx_a, idx_b, segments, m1, m2, mu, coef, out):
    """CUDA version of :func:`ncsym.kernels.cg_cpu.channelwise_product_segments`."""
    return _product_segments(a, b, idx_a, idx_b, segments, m1, m2, mu, coef, out, True)


def outer_product_plan(a, b, idx_a, idx_b, groups, pair_m1, pair_m2, rows, nz_pair, nz_coef, buf_size, out):
    """CUDA version of :func:`ncsym.kernels.cg_cpu.outer_product_plan` (same arguments).

    ``buf_size`` is accepted for signature compatibility; the CUDA kernel needs no buffer.
    """
    n_rows = rows.shape[0]
    if n_rows == 0 or idx_a.shape[0] == 0:
        return out
    widths = np.asarray(groups[:, 3] * groups[:, 7]) if isinstance(groups, np.ndarray) else None
    max_width = int(widths.max()) if widths is not None and widths.size else 1
    grid = (_blocks(idx_a.shape[0] * max_width), max(1, min(n_rows, 65535)))
    return _run(
        _outer_product_plan_kernel,
        grid,
        (a, b, idx_a, idx_b, groups, pair_m1, pair_m2, rows, nz_pair, nz_coef, np.int64(buf_size)),
        out,
    )
