"""Numba kernels for real spherical harmonics on plain arrays.

Conventions (see :mod:`ncsym.conventions`): ``m = -l .. l``, flattened index
``l * l + l + m``, orthonormal on the unit sphere, no Condon-Shortley phase, ``l = 1`` is
``sqrt(3 / (4 pi)) (y, z, x) / r``.

Method
    For a unit vector ``(x, y, z)`` write ``Y_l^m = p_l^|m|(z) C_m(x, y)`` for ``m > 0``,
    ``Y_l^-m = p_l^m(z) S_m(x, y)`` and ``Y_l^0 = p_l^0(z)``, where
    ``C_m + i S_m = (x + i y)^m`` (computed by complex multiplication, exact zero on the
    z axis) and ``p_l^m`` is the normalised associated Legendre polynomial divided by
    ``sin(theta)^m`` (a polynomial in ``z``).  The ``p_l^m`` obey the usual stable
    recursions with normalisation folded into their coefficients::

        p_0^0     = 1 / sqrt(4 pi)
        p_1^1     = sqrt(3) p_0^0                    (includes the sqrt(2) of m != 0)
        p_m^m     = sqrt((2m + 1) / (2m)) p_{m-1}^{m-1}            (m >= 2)
        p_l^m     = a_lm z p_{l-1}^m - b_lm p_{l-2}^m              (l > m)
        a_lm      = sqrt((4 l^2 - 1) / (l^2 - m^2))
        b_lm      = sqrt((2l + 1) ((l - 1)^2 - m^2) / ((2l - 3) (l^2 - m^2)))

    The coefficients are tabulated once by :func:`sph_coefficients` so that the hot routine
    :func:`sph_into_tab` does no square roots or divisions per ``(l, m)``.

Zero vector
    The direction of ``(0, 0, 0)`` is undefined; ncsym defines ``Y_0^0 = 1 / sqrt(4 pi)`` and
    every other harmonic ``0`` there (the value of the l = 0 term of an atom's own density).
"""

from __future__ import annotations

import math

import numba
import numpy as np

__all__ = ["sph_coefficients", "sph_into_tab", "sph_into", "sph_batch"]

_INV_SQRT_4PI = 1.0 / math.sqrt(4.0 * math.pi)


@numba.njit(cache=True)
def sph_coefficients(lmax):  # pragma: no cover - compiled
    """Recursion coefficients, shape ((lmax + 1)**2, 2), float64.

    Row ``l * l + l + m`` (for ``m >= 0``) holds ``(a_lm, b_lm)`` when ``l > m``; row
    ``m * m + 2 m`` (that is ``(l, m) = (m, m)``) holds the diagonal step factor in column 0
    (``1 / sqrt(4 pi)`` for ``m = 0``, ``sqrt(3)`` for ``m = 1``, ``sqrt((2m + 1) / (2m))``
    above).  Rows with ``m < 0`` are unused (zero).
    """
    coefs = np.zeros(((lmax + 1) * (lmax + 1), 2))
    for m in range(lmax + 1):
        diag = m * m + 2 * m
        if m == 0:
            coefs[diag, 0] = _INV_SQRT_4PI
        elif m == 1:
            coefs[diag, 0] = math.sqrt(3.0)
        else:
            coefs[diag, 0] = math.sqrt((2.0 * m + 1.0) / (2.0 * m))
        for l in range(m + 1, lmax + 1):
            lm = l * l + l + m
            l2m2 = float(l * l - m * m)
            coefs[lm, 0] = math.sqrt((4.0 * l * l - 1.0) / l2m2)
            if l >= m + 2:
                coefs[lm, 1] = math.sqrt(
                    (2.0 * l + 1.0) * ((l - 1.0) * (l - 1.0) - m * m) / ((2.0 * l - 3.0) * l2m2)
                )
    return coefs


@numba.njit(cache=True)
def _sph_unit(x, y, z, lmax, coefs, out):  # pragma: no cover - compiled
    """Harmonics of a unit vector ``(x, y, z)`` into ``out[:(lmax + 1)**2]``."""
    # m = 0 column (no sin(theta) factor)
    p_mm = coefs[0, 0]
    out[0] = p_mm
    p_lm2 = 0.0
    p_lm1 = p_mm
    for l in range(1, lmax + 1):
        lm = l * l + l
        p_l = coefs[lm, 0] * z * p_lm1 - coefs[lm, 1] * p_lm2
        out[lm] = p_l
        p_lm2 = p_lm1
        p_lm1 = p_l
    # m > 0 columns, C_m + i S_m = (x + i y)^m
    c_m = 1.0
    s_m = 0.0
    for m in range(1, lmax + 1):
        c_new = x * c_m - y * s_m
        s_m = x * s_m + y * c_m
        c_m = c_new
        p_mm = coefs[m * m + 2 * m, 0] * p_mm
        base = m * m + m
        out[base + m] = p_mm * c_m
        out[base - m] = p_mm * s_m
        p_lm2 = 0.0
        p_lm1 = p_mm
        for l in range(m + 1, lmax + 1):
            lm = l * l + l + m
            p_l = coefs[lm, 0] * z * p_lm1 - coefs[lm, 1] * p_lm2
            centre = l * l + l
            out[centre + m] = p_l * c_m
            out[centre - m] = p_l * s_m
            p_lm2 = p_lm1
            p_lm1 = p_l


@numba.njit(cache=True)
def sph_into_tab(x, y, z, lmax, coefs, out):  # pragma: no cover - compiled
    """Real spherical harmonics of the direction of ``(x, y, z)``, table version.

    Parameters
    ----------
    x, y, z : float
        Cartesian vector (any length; only its direction matters).
    lmax : int
        Largest angular order.
    coefs : ndarray, shape ((lmax' + 1)**2, 2), lmax' >= lmax
        Table from :func:`sph_coefficients`.
    out : ndarray, shape (>= (lmax + 1)**2,)
        Written in the flattened ``(l, m)`` order; entries past ``(lmax + 1)**2`` untouched.
    """
    scale = max(abs(x), abs(y), abs(z))
    if scale == 0.0:
        out[0] = _INV_SQRT_4PI
        for i in range(1, (lmax + 1) * (lmax + 1)):
            out[i] = 0.0
        return
    x = x / scale
    y = y / scale
    z = z / scale
    inv_r = 1.0 / math.sqrt(x * x + y * y + z * z)
    _sph_unit(x * inv_r, y * inv_r, z * inv_r, lmax, coefs, out)


@numba.njit(cache=True)
def sph_into(x, y, z, lmax, out):  # pragma: no cover - compiled
    """Real spherical harmonics of the direction of ``(x, y, z)`` into ``out``.

    Self-contained (builds its coefficient table on every call); hot loops should build the
    table once with :func:`sph_coefficients` and call :func:`sph_into_tab`.

    Parameters
    ----------
    x, y, z : float
        Cartesian vector; the zero vector gives ``Y_0^0 = 1 / sqrt(4 pi)``, all others 0.
    lmax : int
        Largest angular order.
    out : ndarray of float64, shape (>= (lmax + 1)**2,)
        Output in the flattened ``(l, m)`` order ``(0, 0), (1, -1), (1, 0), (1, 1), ...``.
    """
    coefs = sph_coefficients(lmax)
    sph_into_tab(x, y, z, lmax, coefs, out)


@numba.njit(cache=True, parallel=True)
def sph_batch(xyz, lmax, out):  # pragma: no cover - compiled
    """Real spherical harmonics for many points, parallel over points.

    Parameters
    ----------
    xyz : ndarray of float64, shape (n_points, 3)
    lmax : int
    out : ndarray of float64, shape (n_points, (lmax + 1)**2)
        Filled in place.
    """
    coefs = sph_coefficients(lmax)
    for i in numba.prange(xyz.shape[0]):
        sph_into_tab(xyz[i, 0], xyz[i, 1], xyz[i, 2], lmax, coefs, out[i])
