"""Tests of the real spherical harmonics (ncsym.sph, ncsym.kernels.sph).

References: sphericart (optional), an independent mpmath evaluation from the textbook
definition, exact quadrature on the sphere, and the closed form of l = 1.
"""

import math

import numba
import numpy as np
import pytest
from hypothesis import given, settings

from ncsym.conventions import MAX_ANGULAR, lm_index, n_lm
from ncsym.kernels.sph import sph_coefficients, sph_into, sph_into_tab
from ncsym.sph import spherical_harmonics
from ncsym.testing import strategies as nst

#: Agreement with sphericart (its own error is ~2e-14 at l = 20).
SPHERICART_TOLERANCE = 1e-13
#: Agreement with the 50-digit reference, absolute.
MPMATH_TOLERANCE = 1e-14
#: Orthonormality on the sphere with an exact quadrature.
ORTHONORMALITY_TOLERANCE = 1e-13
#: Rotation closure Y(R r) = D Y(r).
ROTATION_TOLERANCE = 1e-12


def _points(rng, n=200):
    special = np.array(
        [
            [0.0, 0.0, 1.0],
            [0.0, 0.0, -2.0],
            [1.0, 0.0, 0.0],
            [0.0, -1.0, 0.0],
            [1.0, 1.0, 1.0],
            [1e-3, 0.0, 1.0],
            [0.0, 1e-9, -1.0],
        ]
    )
    return np.vstack([special, rng.normal(size=(n, 3))])


def _mpmath_reference(points, lmax):
    """Real Y_lm from the textbook formula, 50 digits, no Condon-Shortley phase."""
    mp = pytest.importorskip("mpmath")
    mp.mp.dps = 50

    def legendre(l, m, z):  # P_l^m(z) without the (-1)^m phase, explicit sum
        total = mp.mpf(0)
        for k in range(l // 2 + 1):
            p = l - 2 * k
            if p < m:
                continue
            c = (-1) ** k * mp.binomial(l, k) * mp.binomial(2 * l - 2 * k, l)
            total += c * mp.factorial(p) / mp.factorial(p - m) * z ** (p - m)
        return total / mp.mpf(2) ** l * (1 - z * z) ** (mp.mpf(m) / 2)

    out = np.empty((len(points), n_lm(lmax)))
    for i, point in enumerate(points):
        x, y, z = (mp.mpf(float(v)) for v in point)
        r = mp.sqrt(x * x + y * y + z * z)
        z = z / r
        phi = mp.atan2(y, x)
        for l in range(lmax + 1):
            for m in range(-l, l + 1):
                am = abs(m)
                norm = mp.sqrt((2 * l + 1) / (4 * mp.pi) * mp.factorial(l - am) / mp.factorial(l + am))
                value = norm * legendre(l, am, z)
                if m > 0:
                    value *= mp.sqrt(2) * mp.cos(am * phi)
                elif m < 0:
                    value *= mp.sqrt(2) * mp.sin(am * phi)
                out[i, lm_index(l, m)] = float(value)
    return out


@pytest.mark.parametrize("lmax", [0, 1, 2, 5, 10, MAX_ANGULAR])
def test_matches_sphericart(lmax, rng):
    sphericart = pytest.importorskip("sphericart")
    xyz = _points(rng)
    ours = spherical_harmonics(xyz, lmax)
    ref = sphericart.SphericalHarmonics(lmax).compute(xyz)
    assert ours.shape == (len(xyz), n_lm(lmax))
    np.testing.assert_allclose(ours, ref, rtol=0, atol=SPHERICART_TOLERANCE)


def test_matches_high_precision_reference(rng):
    lmax = 8
    xyz = _points(rng, n=12)
    ref = _mpmath_reference(xyz, lmax)
    np.testing.assert_allclose(spherical_harmonics(xyz, lmax), ref, rtol=0, atol=MPMATH_TOLERANCE)


def test_l1_closed_form(rng):
    xyz = rng.normal(size=(50, 3))
    r = np.linalg.norm(xyz, axis=1, keepdims=True)
    expected = math.sqrt(3 / (4 * math.pi)) * xyz[:, [1, 2, 0]] / r
    np.testing.assert_allclose(spherical_harmonics(xyz, 1)[:, 1:4], expected, rtol=0, atol=1e-15)


def test_orthonormal_on_sphere():
    lmax = 10
    # Gauss-Legendre in cos(theta) x uniform phi: exact for polynomials of degree 2 lmax
    nodes, weights = np.polynomial.legendre.leggauss(lmax + 2)
    n_phi = 2 * lmax + 3
    phi = 2 * np.pi * np.arange(n_phi) / n_phi
    z = np.repeat(nodes, n_phi)
    w = np.repeat(weights, n_phi) * 2 * np.pi / n_phi
    s = np.sqrt(1 - z * z)
    xyz = np.stack([s * np.cos(np.tile(phi, nodes.size)), s * np.sin(np.tile(phi, nodes.size)), z], 1)
    y = spherical_harmonics(xyz, lmax)
    gram = (y * w[:, None]).T @ y
    np.testing.assert_allclose(gram, np.eye(n_lm(lmax)), rtol=0, atol=ORTHONORMALITY_TOLERANCE)


def test_zero_vector_definition():
    y = spherical_harmonics(np.zeros((2, 3)), 4)
    expected = np.zeros(n_lm(4))
    expected[0] = 1 / math.sqrt(4 * math.pi)
    assert np.array_equal(y, np.vstack([expected, expected]))


@pytest.mark.parametrize("sign", [1.0, -1.0])
def test_exact_at_poles(sign):
    lmax = 12
    y = spherical_harmonics(np.array([[0.0, 0.0, sign * 3.0]]), lmax)[0]
    for l in range(lmax + 1):
        for m in range(-l, l + 1):
            value = y[lm_index(l, m)]
            if m != 0:
                assert value == 0.0
            else:
                expected = sign**l * math.sqrt((2 * l + 1) / (4 * math.pi))
                assert abs(value - expected) <= MPMATH_TOLERANCE


@pytest.mark.parametrize("scale", [1e-300, 1e-150, 1e150, 1e300])
def test_direction_only(scale, rng):
    xyz = rng.normal(size=(20, 3))
    np.testing.assert_allclose(
        spherical_harmonics(scale * xyz, 6), spherical_harmonics(xyz, 6), rtol=0, atol=1e-15
    )


def test_parity(rng):
    xyz = rng.normal(size=(30, 3))
    lmax = 9
    sign = np.array([(-1.0) ** l for l in range(lmax + 1) for _ in range(2 * l + 1)])
    np.testing.assert_allclose(
        spherical_harmonics(-xyz, lmax), sign * spherical_harmonics(xyz, lmax), rtol=0, atol=1e-15
    )


def test_parallel_path_agrees(rng, monkeypatch):
    import ncsym.sph

    xyz = rng.normal(size=(3000, 3))
    serial = spherical_harmonics(xyz, 8)
    monkeypatch.setattr(ncsym.sph, "PARALLEL_MIN_VALUES", 0)
    assert np.array_equal(spherical_harmonics(xyz, 8), serial)


def test_empty_input():
    assert spherical_harmonics(np.zeros((0, 3)), 3).shape == (0, 16)


@numba.njit(cache=True)
def _call_from_kernel(xyz, lmax):  # pragma: no cover - compiled
    out = np.empty((xyz.shape[0], (lmax + 1) ** 2))
    coefs = sph_coefficients(lmax)
    tab = np.empty((lmax + 1) ** 2)
    for i in range(xyz.shape[0]):
        sph_into(xyz[i, 0], xyz[i, 1], xyz[i, 2], lmax, out[i])
        sph_into_tab(xyz[i, 0], xyz[i, 1], xyz[i, 2], lmax, coefs, tab)
        for k in range(tab.shape[0]):
            if tab[k] != out[i, k]:
                out[i, k] = np.nan
    return out


def test_scalar_routine_callable_from_njit(rng):
    xyz = _points(rng, n=10)
    np.testing.assert_array_equal(_call_from_kernel(xyz, 7), spherical_harmonics(xyz, 7))


def _fit_wigner(rotation, lmax, rng):
    """Least-squares D with Y(R r) = D Y(r), block by block."""
    points = rng.normal(size=(4 * n_lm(lmax), 3))
    y = spherical_harmonics(points, lmax)
    y_rot = spherical_harmonics(points @ rotation.T, lmax)
    blocks = []
    for l in range(lmax + 1):
        sl = slice(l * l, (l + 1) ** 2)
        d_t, *_ = np.linalg.lstsq(y[:, sl], y_rot[:, sl], rcond=None)
        blocks.append(d_t.T)
    return blocks


@settings(deadline=None, max_examples=15)
@given(rotation=nst.rotations(improper=None))
def test_rotation_closure(rotation):
    rng = np.random.default_rng(7)
    lmax = 6
    blocks = _fit_wigner(rotation, lmax, rng)
    test_points = rng.normal(size=(40, 3))
    y = spherical_harmonics(test_points, lmax)
    y_rot = spherical_harmonics(test_points @ rotation.T, lmax)
    det = np.linalg.det(rotation)
    for l, d in enumerate(blocks):
        sl = slice(l * l, (l + 1) ** 2)
        np.testing.assert_allclose(d @ d.T, np.eye(2 * l + 1), rtol=0, atol=ROTATION_TOLERANCE)
        np.testing.assert_allclose(y[:, sl] @ d.T, y_rot[:, sl], rtol=0, atol=ROTATION_TOLERANCE)
        # D_l(-R) = (-1)^l D_l(R) and det D_l(R) = 1 for proper R, so det D_l = det(R)^l
        assert np.isclose(np.linalg.det(d), det**l, rtol=0, atol=ROTATION_TOLERANCE)


# ------------------------------------------------------------------------------ errors
def test_error_bad_shape():
    with pytest.raises(ValueError, match=r"`xyz` must have shape \(n, 3\)"):
        spherical_harmonics(np.zeros((4, 2)), 2)
    with pytest.raises(ValueError, match=r"`xyz` must have shape \(n, 3\)"):
        spherical_harmonics(np.zeros(3), 2)


def test_error_not_finite():
    xyz = np.zeros((3, 3))
    xyz[1, 2] = np.nan
    with pytest.raises(ValueError, match="`xyz` contains NaN or infinite values"):
        spherical_harmonics(xyz, 2)


def test_error_lmax_range():
    with pytest.raises(ValueError, match="`lmax` must be >= 0"):
        spherical_harmonics(np.ones((1, 3)), -1)
    with pytest.raises(ValueError, match=f"`lmax` must be <= {MAX_ANGULAR}"):
        spherical_harmonics(np.ones((1, 3)), MAX_ANGULAR + 1)


def test_error_types():
    with pytest.raises(TypeError, match="`lmax` must be an integer"):
        spherical_harmonics(np.ones((1, 3)), 2.0)
    with pytest.raises(TypeError, match="`xyz` must be convertible to a float64 array"):
        spherical_harmonics([["a", "b", "c"]], 2)
