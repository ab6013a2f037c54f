"""Numba kernels for the neighbour density expansion ``<a n l m | rho_i>`` and ``g_ij``.

Every pair ``(i, j)`` with vector ``r_ij`` contributes
``f_c(r_ij) I_nl(r_ij) Y_l^m(r_ij / r_ij)``: the radial integrals ``I_nl`` come from a cubic
Hermite spline table (:class:`ncsym.radial.RadialSpline`), the harmonics from
:func:`ncsym.kernels.sph.sph_into_tab`, and ``f_c`` is the shifted-cosine cutoff.  For each
pair the spline is evaluated once for all ``(l, n)`` and the harmonics once for all
``(l, m)``; then the products are accumulated.  The atom-centred kernel runs in parallel
over chunks of centres (pairs grouped by centre, so no two threads write the same row); the
pair kernel in parallel over chunks of pairs.  Scratch buffers are allocated once per chunk,
never per pair.
"""

from __future__ import annotations

import math

import numba
import numpy as np

from .sph import sph_into_tab

__all__ = ["cutoff_function", "spline_into", "expansion_by_center", "expansion_by_pair"]

_INV_SQRT_4PI = 1.0 / math.sqrt(4.0 * math.pi)


@numba.njit(cache=True)
def cutoff_function(r, cutoff, width):  # pragma: no cover - compiled
    """Shifted cosine: 1 below ``cutoff - width``, ``(1 + cos(pi (r - cutoff + width) / width)) / 2``
    up to ``cutoff``, 0 from ``cutoff`` on."""
    if r >= cutoff:
        return 0.0
    start = cutoff - width
    if r <= start:
        return 1.0
    return 0.5 * (1.0 + math.cos(math.pi * (r - start) / width))


@numba.njit(cache=True)
def spline_into(r, inv_step, values, scaled_derivatives, out):  # pragma: no cover - compiled
    """Cubic Hermite interpolation of every column of the table at distance ``r``.

    ``values`` and ``scaled_derivatives`` have shape (n_knots, n_columns) on the grid
    ``k / inv_step``; ``scaled_derivatives`` is ``step * d values / dr``.  ``out`` has shape
    (n_columns,).  ``r`` must lie in ``[0, (n_knots - 1) / inv_step]``.
    """
    x = r * inv_step
    k = int(x)
    last = values.shape[0] - 2
    if k > last:
        k = last
    t = x - k
    t2 = t * t
    t3 = t2 * t
    h00 = 2.0 * t3 - 3.0 * t2 + 1.0
    h10 = t3 - 2.0 * t2 + t
    h01 = 3.0 * t2 - 2.0 * t3
    h11 = t3 - t2
    v0 = values[k]
    v1 = values[k + 1]
    d0 = scaled_derivatives[k]
    d1 = scaled_derivatives[k + 1]
    for q in range(out.shape[0]):
        out[q] = h00 * v0[q] + h10 * d0[q] + h01 * v1[q] + h11 * d1[q]


@numba.njit(cache=True, parallel=True)
def expansion_by_center(  # pragma: no cover - compiled
    pair_start, vectors, neighbor_species, center_species, center_weight, cutoff, width,
    lmax, n_radial, inv_step, spline_values, spline_derivatives, sph_coefs, n_chunks, out,
):
    """Atom-centred density coefficients, accumulated into ``out``.

    Parameters
    ----------
    pair_start : int64 (n_centers + 1,)
        Pairs of centre ``c`` are ``pair_start[c]:pair_start[c + 1]`` (no self pairs).
    vectors : float64 (n_pairs, 3)
        ``r_ij`` (Angstrom).
    neighbor_species : int64 (n_pairs,)
        Species index of the neighbour.
    center_species : int64 (n_centers,)
        Species index of the centre (its own density, weight ``center_weight``).
    center_weight, cutoff, width : float
        Weight of the centre's own density; cutoff radius and smoothing width (Angstrom).
    lmax, n_radial : int
    inv_step : float
        Inverse spline grid spacing (1/Angstrom).
    spline_values, spline_derivatives : float64 (n_knots, (lmax + 1) * n_radial)
        Radial integral table (see :class:`ncsym.radial.RadialSpline`).
    sph_coefs : float64
        Table from :func:`ncsym.kernels.sph.sph_coefficients` for at least ``lmax``.
    n_chunks : int
        Number of work chunks (a few per thread); each allocates its scratch once.
    out : float64 (n_centers, (lmax + 1)**2, n_species, n_radial)
        Zero-initialised output, ``out[c, l * l + l + m, a, n]``.
    """
    n_centers = pair_start.shape[0] - 1
    n_ln = (lmax + 1) * n_radial
    n_lm = (lmax + 1) * (lmax + 1)
    n_chunks = max(1, min(n_centers, n_chunks))
    for chunk in numba.prange(n_chunks):
        radial = np.empty(n_ln)
        ylm = np.empty(n_lm)
        first = chunk * n_centers // n_chunks
        stop = (chunk + 1) * n_centers // n_chunks
        for c in range(first, stop):
            self_factor = center_weight * _INV_SQRT_4PI
            cs = center_species[c]
            for n in range(n_radial):
                out[c, 0, cs, n] += self_factor * spline_values[0, n]
            for p in range(pair_start[c], pair_start[c + 1]):
                x = vectors[p, 0]
                y = vectors[p, 1]
                z = vectors[p, 2]
                r = math.sqrt(x * x + y * y + z * z)
                fc = cutoff_function(r, cutoff, width)
                if fc == 0.0:
                    continue
                spline_into(r, inv_step, spline_values, spline_derivatives, radial)
                sph_into_tab(x, y, z, lmax, sph_coefs, ylm)
                s = neighbor_species[p]
                for l in range(lmax + 1):
                    rl = l * n_radial
                    for lm in range(l * l, (l + 1) * (l + 1)):
                        f = fc * ylm[lm]
                        for n in range(n_radial):
                            out[c, lm, s, n] += f * radial[rl + n]


@numba.njit(cache=True)
def _pair_factors_into(  # pragma: no cover - compiled
    p, vectors, is_self, center_weight, cutoff, width, lmax, inv_step, spline_values, spline_derivatives,
    sph_coefs, radial, ylm,
):
    """Factors of pair ``p``: ``ylm[lm] = w Y_lm(r_ij)`` and ``radial[l n_radial + n] = I_nl(r_ij)``
    (both zero where the weight ``w``, cutoff function or ``center_weight``, is zero)."""
    x = vectors[p, 0]
    y = vectors[p, 1]
    z = vectors[p, 2]
    r = math.sqrt(x * x + y * y + z * z)
    weight = center_weight if is_self[p] else cutoff_function(r, cutoff, width)
    if weight == 0.0:
        radial[:] = 0.0
        ylm[:] = 0.0
        return
    spline_into(r, inv_step, spline_values, spline_derivatives, radial)
    sph_into_tab(x, y, z, lmax, sph_coefs, ylm)
    for lm in range(ylm.shape[0]):
        ylm[lm] = weight * ylm[lm]


@numba.njit(cache=True, parallel=True)
def expansion_by_pair(  # pragma: no cover - compiled
    vectors, is_self, center_weight, cutoff, width, lmax, n_radial, inv_step,
    spline_values, spline_derivatives, sph_coefs, n_chunks, out,
):
    """Single-neighbour expansions ``g_ij``, one row per pair.

    Parameters
    ----------
    vectors : float64 (n_pairs, 3)
        ``r_ij`` (Angstrom).
    is_self : bool (n_pairs,)
        ``True`` for the pair of an atom with itself at zero shift: weight ``center_weight``
        instead of the cutoff function.
    center_weight, cutoff, width, lmax, n_radial, inv_step, spline_values,
    spline_derivatives, sph_coefs, n_chunks
        As in :func:`expansion_by_center`.
    out : float64 (n_pairs, (lmax + 1)**2, n_radial)
        Output, fully overwritten: ``(w Y_lm) I_nl``, the products of
        :func:`expansion_by_pair_factors`.
    """
    n_pairs = vectors.shape[0]
    n_chunks = max(1, min(n_pairs, n_chunks))
    for chunk in numba.prange(n_chunks):
        radial = np.empty((lmax + 1) * n_radial)
        ylm = np.empty((lmax + 1) * (lmax + 1))
        for p in range(chunk * n_pairs // n_chunks, (chunk + 1) * n_pairs // n_chunks):
            _pair_factors_into(
                p, vectors, is_self, center_weight, cutoff, width, lmax, inv_step, spline_values,
                spline_derivatives, sph_coefs, radial, ylm,
            )
            for l in range(lmax + 1):
                for lm in range(l * l, (l + 1) * (l + 1)):
                    for n in range(n_radial):
                        out[p, lm, n] = ylm[lm] * radial[l * n_radial + n]


@numba.njit(cache=True, parallel=True)
def expansion_by_pair_factors(  # pragma: no cover - compiled
    vectors, is_self, center_weight, cutoff, width, lmax, n_radial, inv_step,
    spline_values, spline_derivatives, sph_coefs, n_chunks, angular, radial_out,
):
    """Separable factors of the single-neighbour expansions ``g_ij``, one row per pair.

    ``<n l m | g_ij> = angular[p, l * l + l + m] * radial_out[p, l, n]``, exactly the products
    :func:`expansion_by_pair` forms, so the two agree bit for bit.

    Parameters
    ----------
    vectors, is_self, center_weight, cutoff, width, lmax, n_radial, inv_step, spline_values,
    spline_derivatives, sph_coefs, n_chunks
        As in :func:`expansion_by_pair`.
    angular : float64 (n_pairs, (lmax + 1)**2)
        Output: weight times the real spherical harmonics of ``r_ij``.
    radial_out : float64 (n_pairs, lmax + 1, n_radial)
        Output: splined radial integrals ``I_nl(r_ij)`` (zero where the weight is zero).
    """
    n_pairs = vectors.shape[0]
    n_chunks = max(1, min(n_pairs, n_chunks))
    for chunk in numba.prange(n_chunks):
        radial = np.empty((lmax + 1) * n_radial)
        ylm = np.empty((lmax + 1) * (lmax + 1))
        for p in range(chunk * n_pairs // n_chunks, (chunk + 1) * n_pairs // n_chunks):
            _pair_factors_into(
                p, vectors, is_self, center_weight, cutoff, width, lmax, inv_step, spline_values,
                spline_derivatives, sph_coefs, radial, ylm,
            )
            angular[p, :] = ylm
            for l in range(lmax + 1):
                for n in range(n_radial):
                    radial_out[p, l, n] = radial[l * n_radial + n]
