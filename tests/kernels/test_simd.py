"""Masked vector rows and streaming copies (ncsym.kernels.simd) against plain NumPy."""

import numba
import numpy as np
import pytest

from ncsym.kernels.simd import (
    axpy_padded,
    axpy_to,
    copy_to_address,
    padded,
    scale_to,
    store_fence,
    zero_padded,
)


@numba.njit
def _scale(dst, d0, src, s0, x, n):
    scale_to(dst.ctypes.data + 8 * d0, src.ctypes.data + 8 * s0, x, n)


@numba.njit
def _axpy(dst, d0, src, s0, x, n):
    axpy_to(dst.ctypes.data + 8 * d0, src.ctypes.data + 8 * s0, x, n)


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
def test_scale_and_axpy_rows_equal_scalar_arithmetic(n, offset):
    rng = np.random.default_rng(n)
    src = rng.normal(size=40)
    x = float(rng.normal())
    dst = np.full(40, -7.0)
    _scale(dst, offset, src, 2, x, n)
    want = np.full(40, -7.0)
    want[offset : offset + n] = x * src[2 : 2 + n]
    np.testing.assert_array_equal(dst, want)  # bit for bit; nothing written outside the row
    before = rng.normal(size=40)
    dst = before.copy()
    _axpy(dst, offset, src, 2, x, n)
    want = before.copy()
    want[offset : offset + n] = before[offset : offset + n] + x * src[2 : 2 + n]
    np.testing.assert_array_equal(dst, want)


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
