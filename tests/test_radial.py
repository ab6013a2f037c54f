"""Tests of the GTO radial basis, the exact radial integrals and their splines (ncsym.radial).

The integrals are checked against an independent numerical quadrature of their definition
(``4 pi int r^2 R_n(r) g_l(r, d) dr`` with the modified spherical Bessel function), the
derivatives against finite differences, and the splines against the exact values.
"""

import math

import numpy as np
import pytest
import scipy.integrate
import scipy.special

from ncsym.radial import (
    RadialSpline,
    gto_basis,
    gto_orthonormalization,
    gto_widths,
    radial_integral,
)

#: Orthonormality of the basis by adaptive quadrature.
ORTHONORMALITY_TOLERANCE = 1e-10
#: Closed form vs adaptive quadrature of the defining integral, absolute.
QUADRATURE_TOLERANCE = 1e-11
#: Derivative vs central finite differences (step 1e-5 Angstrom), absolute.
FINITE_DIFFERENCE_TOLERANCE = 1e-7

HYPERS = dict(cutoff=4.0, density_width=0.3, max_radial=6, max_angular=6)


def _quadrature_integral(d, l, n, *, cutoff, density_width, max_radial, upper=None):
    """``4 pi (pi sigma^2)^(-3/4) int r^2 R_n(r) exp(-(r - d)^2 / 2 sigma^2) i_l(r d / sigma^2)
    exp(-r d / sigma^2) dr`` (the angular integral of a Gaussian done analytically)."""
    sigma2 = density_width**2
    upper = upper if upper is not None else max(5 * cutoff, d + 12 * density_width)
    coefs = gto_orthonormalization(cutoff, max_radial)[n]
    inv_two_widths2 = 0.5 / gto_widths(cutoff, max_radial) ** 2
    powers = np.arange(max_radial + 1)

    def integrand(r):
        radial = float(coefs @ (r**powers * np.exp(-inv_two_widths2 * r * r)))
        x = r * d / sigma2
        if x > 0:
            bessel = scipy.special.ive(l + 0.5, x) * math.sqrt(math.pi / (2 * x))
        else:
            bessel = 1.0 if l == 0 else 0.0
        return r * r * radial * math.exp(-((r - d) ** 2) / (2 * sigma2)) * bessel

    value = scipy.integrate.quad(integrand, 0, upper, points=[d], limit=400, epsabs=1e-15,
                                 epsrel=1e-13)[0]
    return 4 * math.pi * (math.pi * sigma2) ** -0.75 * value


def test_gto_widths():
    widths = gto_widths(4.0, 6)
    expected = 4.0 * np.maximum(np.sqrt(np.arange(7)), 1.0) / 7
    np.testing.assert_allclose(widths, expected, rtol=1e-15)


@pytest.mark.parametrize("max_radial", [0, 3, 8])
def test_basis_orthonormal(max_radial):
    cutoff = 3.5
    # Gauss-Legendre on [0, 10 cutoff] (the functions are negligible beyond): 600 nodes
    # integrate these smooth functions to rounding level
    nodes, weights = np.polynomial.legendre.leggauss(600)
    r = 5 * cutoff * (nodes + 1)
    w = 5 * cutoff * weights * r * r
    basis = gto_basis(r, cutoff, max_radial)
    gram = (basis * w[:, None]).T @ basis
    np.testing.assert_allclose(gram, np.eye(max_radial + 1), rtol=0, atol=ORTHONORMALITY_TOLERANCE)


def test_orthonormalization_is_symmetric_loewdin():
    # O = S^-1/2 diag(N): O diag(N)^-1 is symmetric
    widths = gto_widths(4.0, 5)
    k = np.arange(6)
    norm = np.sqrt(2 / (widths ** (2 * k + 3) * scipy.special.gamma(k + 1.5)))
    sym = gto_orthonormalization(4.0, 5) / norm[None, :]
    np.testing.assert_allclose(sym, sym.T, rtol=1e-12, atol=0)


@pytest.mark.parametrize("d", [0.0, 0.4, 1.3, 2.7, 3.99])
def test_integral_matches_quadrature(d):
    values = radial_integral(np.array([d]), **HYPERS)[0]
    hyp = {k: HYPERS[k] for k in ("cutoff", "density_width", "max_radial")}
    for l in range(HYPERS["max_angular"] + 1):
        for n in range(HYPERS["max_radial"] + 1):
            ref = _quadrature_integral(d, l, n, **hyp)
            assert abs(values[l, n] - ref) <= QUADRATURE_TOLERANCE, (l, n, values[l, n], ref)


def test_integral_high_orders_match_quadrature():
    # large l and n: the orthonormalisation cancels primitives ~1e4 down to ~0.1
    hyp = dict(cutoff=5.0, density_width=0.4, max_radial=10)
    d = np.array([1.7, 3.913657316101673])
    values = radial_integral(d, max_angular=12, **hyp)
    for i, dist in enumerate(d):
        for l in (9, 12):
            for n in (7, 10):
                ref = _quadrature_integral(dist, l, n, **hyp)
                assert abs(values[i, l, n] - ref) <= QUADRATURE_TOLERANCE, (dist, l, n)


def test_integral_large_arguments():
    # narrow density and large cutoff: 1F1 arguments above 500 use the asymptotic series,
    # and exp(-c d^2) alone would underflow
    hyp = dict(cutoff=12.0, density_width=0.2, max_radial=4)
    d = np.array([6.0, 11.0])
    values = radial_integral(d, max_angular=5, **hyp)
    assert np.all(np.isfinite(values))
    for i, dist in enumerate(d):
        for l in (0, 3, 5):
            for n in (0, 2, 4):
                ref = _quadrature_integral(dist, l, n, **hyp)
                assert abs(values[i, l, n] - ref) <= QUADRATURE_TOLERANCE, (dist, l, n)


def test_integral_zero_distance():
    values = radial_integral(np.array([0.0]), **HYPERS)[0]
    assert np.all(values[1:] == 0.0)
    assert np.all(np.isfinite(values[0]))


def test_derivative_matches_finite_differences():
    d = np.array([0.3, 1.1, 2.2, 3.5])
    h = 1e-5
    values, derivs = radial_integral(d, derivative=True, **HYPERS)
    plus = radial_integral(d + h, **HYPERS)
    minus = radial_integral(d - h, **HYPERS)
    np.testing.assert_allclose(derivs, (plus - minus) / (2 * h), rtol=0,
                               atol=FINITE_DIFFERENCE_TOLERANCE)


def test_derivative_at_zero():
    h = 1e-5
    _, derivs = radial_integral(np.array([0.0]), derivative=True, **HYPERS)
    plus = radial_integral(np.array([h, 2 * h]), **HYPERS)
    zero = radial_integral(np.array([0.0]), **HYPERS)[0]
    one_sided = (4 * plus[0] - plus[1] - 3 * zero) / (2 * h)  # second order
    np.testing.assert_allclose(derivs[0], one_sided, rtol=0, atol=FINITE_DIFFERENCE_TOLERANCE)
    assert np.all(derivs[0, [0, *range(2, HYPERS["max_angular"] + 1)]] == 0.0)


@pytest.mark.parametrize("accuracy", [1e-6, 1e-8, 1e-10])
def test_spline_accuracy(accuracy, rng):
    spline = RadialSpline(accuracy=accuracy, **HYPERS)
    assert spline.max_error <= accuracy
    d = np.concatenate([rng.uniform(0, HYPERS["cutoff"], 400), [0.0, HYPERS["cutoff"]]])
    error = np.abs(spline(d) - radial_integral(d, **HYPERS)).max()
    assert error <= accuracy


def test_spline_knots_are_exact():
    spline = RadialSpline(**HYPERS)
    knots = np.arange(spline.n_knots) * spline.step
    exact, derivs = radial_integral(knots, derivative=True, **HYPERS)
    np.testing.assert_array_equal(spline.values, exact.reshape(spline.n_knots, -1))
    np.testing.assert_allclose(spline.scaled_derivatives, spline.step * derivs.reshape(spline.n_knots, -1),
                               rtol=1e-15, atol=0)


def test_spline_refines_with_accuracy():
    coarse = RadialSpline(accuracy=1e-6, **HYPERS)
    fine = RadialSpline(accuracy=1e-10, **HYPERS)
    assert fine.n_knots > coarse.n_knots
    assert not fine.values.flags.writeable


# ------------------------------------------------------------------------------ errors
def test_error_max_radial_too_large():
    with pytest.raises(ValueError, match="`max_radial` is too large: the GTO overlap matrix"):
        gto_orthonormalization(4.0, 25)


def test_error_unreachable_accuracy():
    with pytest.raises(ValueError, match="`spline_accuracy` 1e-20 cannot be reached"):
        RadialSpline(accuracy=1e-20, **HYPERS)


def test_error_negative_distances():
    with pytest.raises(ValueError, match="`distances` must be >= 0"):
        radial_integral(np.array([-1.0]), **HYPERS)


def test_error_spline_out_of_range():
    spline = RadialSpline(**HYPERS)
    with pytest.raises(ValueError, match=r"`distances` must lie in \[0, cutoff=4.0\]"):
        spline(np.array([4.5]))
