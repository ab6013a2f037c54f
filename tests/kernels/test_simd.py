"""Masked vector rows and streaming copies (ncsym.kernels.simd) against plain NumPy."""

import numba
import numpy as np
import pytest

from ncsym.kernels.simd import (
    accumulate_cg8,
    axpy_padded,
    copy_to_address,
    outer_rows8,
    padded,
    scale_to,
    store_fence,
    zero_padded,
)


@numba.njit
def _scale(dst, d0, src, s0, x, n):
    scale_to(dst.ctypes.data + 8 * d0, src.ctypes.data + 8 * s0, x, n)


@numba.njit
def _axpy_padded(dst, src, s0, x, n):
    zero_padded(dst.ctypes.data, n)
    for _ in range(3):
        axpy_padded(dst.ctypes.data, src.ctypes.data + 8 * s0, x, n)
    return padded(n)


@numba.njit
def _copy(dst, d0, src, s0, n, nontemporal):
    copy_to_address(dst.ctypes.data + 8 * d0, src, s0, n, nontemporal)
    store_fence()


@pytest.mark.parametrize("n", [0, 1, 5, 7, 8, 9, 15, 16, 23])
@pytest.mark.parametrize("offset", [0, 3])
def test_scaled_rows_equal_scalar_arithmetic(n, offset):
    rng = np.random.default_rng(n)
    src = rng.normal(size=40)
    x = float(rng.normal())
    dst = np.full(40, -7.0)
    _scale(dst, offset, src, 2, x, n)
    want = np.full(40, -7.0)
    want[offset : offset + n] = x * src[2 : 2 + n]
    np.testing.assert_array_equal(dst, want)  # bit for bit; nothing written outside the row


@pytest.mark.parametrize("n", [1, 7, 8, 9, 17])
def test_padded_axpy_keeps_padding_zero_and_reads_only_the_row(n):
    src = np.arange(1.0, 41.0)
    # the row ends at the last element: masked loads must not read past it
    s0 = src.size - n
    dst = np.full(32, np.nan)
    width = _axpy_padded(dst, src, s0, 0.5, n)
    assert width == -(-n // 8) * 8
    want = np.zeros(width)
    for _ in range(3):
        want[:n] = want[:n] + 0.5 * src[s0:]
    np.testing.assert_array_equal(dst[:width], want)
    assert np.all(np.isnan(dst[width:]))


@pytest.mark.parametrize("nontemporal", [False, True])
@pytest.mark.parametrize("n", [0, 1, 7, 8, 13, 64, 301])
@pytest.mark.parametrize("d0", [0, 1, 5, 8])
def test_copy_to_address_writes_exactly_the_range(nontemporal, n, d0):
    src = np.random.default_rng(n + d0).normal(size=n + 11)
    dst = np.full(n + 40, -1.0)
    _copy(dst, d0, src, 3, n, nontemporal)
    want = np.full(n + 40, -1.0)
    want[d0 : d0 + n] = src[3 : 3 + n]
    np.testing.assert_array_equal(dst, want)


@numba.njit
def _outer(dst, stride, src, src_stride, n_rows, n_cols, vec, n):
    outer_rows8(dst.ctypes.data, stride, src.ctypes.data, src_stride, n_rows, n_cols, vec.ctypes.data, n)


@numba.njit
def _accumulate(tmp, stride, a, n, y, m1, m2, mu, coef, e0, e1):
    accumulate_cg8(
        tmp.ctypes.data, stride, a.ctypes.data, n, y.ctypes.data, m1.ctypes.data, m2.ctypes.data,
        mu.ctypes.data, coef.ctypes.data, e0, e1,
    )


@pytest.mark.parametrize("n", [1, 5, 7, 8])
def test_outer_rows_equal_scalar_arithmetic(n):
    rng = np.random.default_rng(n)
    n_rows, n_cols, stride, src_stride = 3, 4, 4 * n + 5, 8
    src = rng.normal(size=n_rows * src_stride)
    vec = rng.normal(size=n)
    dst = np.full(n_rows * stride + 8, -3.0)
    _outer(dst, stride, src, src_stride, n_rows, n_cols, vec, n)
    want = np.full_like(dst, -3.0)
    for i in range(n_rows):
        for j in range(n_cols):
            want[i * stride + j * n : i * stride + j * n + n] = src[i * src_stride + j] * vec
    np.testing.assert_array_equal(dst, want)


@pytest.mark.parametrize("n", [1, 7, 8])
def test_accumulated_cg_rows_equal_scalar_arithmetic(n):
    rng = np.random.default_rng(10 + n)
    n_m1, n_m2, n_mu, nnz = 5, 3, 4, 23
    a = rng.normal(size=n_m1 * n)  # the last row ends the array: no read past it
    y = rng.normal(size=n_m2)
    y[1] = 0.0  # terms with a zero factor are skipped
    m1 = rng.integers(0, n_m1, nnz).astype(np.int32)
    m2 = rng.integers(0, n_m2, nnz).astype(np.int32)
    mu = rng.integers(0, n_mu, nnz).astype(np.int32)
    coef = rng.normal(size=nnz)
    tmp = np.zeros(n_mu * 8)
    _accumulate(tmp, 8, a, n, y, m1, m2, mu, coef, 2, nnz - 1)
    want = np.zeros((n_mu, 8))
    for e in range(2, nnz - 1):
        cy = coef[e] * y[m2[e]]
        if cy != 0.0:
            want[mu[e], :n] = want[mu[e], :n] + cy * a[m1[e] * n : m1[e] * n + n]
    np.testing.assert_array_equal(tmp.reshape(n_mu, 8), want)
