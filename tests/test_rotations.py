"""Tests for ncsym.rotations: real Wigner matrices and random rotations."""

import numpy as np
import pytest
from hypothesis import example, given

from ncsym.rotations import (
    ORTHOGONALITY_TOLERANCE,
    check_rotation,
    quaternion_to_matrix,
    random_rotation,
    wigner_d,
    wigner_d_matrix,
)
from ncsym.testing import strategies as nst

#: Agreement of exact identities (orthogonality, group law, closed forms), absolute.
WIGNER_TOLERANCE = 1e-13
#: Agreement with a least-squares fit of D from sampled harmonics (the fit adds rounding).
FIT_TOLERANCE = 1e-12
#: Angular order of the accuracy tests (the brief asks for l = 12 at least).
LMAX = 16
#: Sample size and tolerance of the statistical check of uniformity (E[R] = 0 under Haar).
N_HAAR_SAMPLES = 4000
HAAR_MEAN_TOLERANCE = 0.06


def _axis_angle(axis, angle):
    n = np.asarray(axis, dtype=float)
    n = n / np.linalg.norm(n)
    return quaternion_to_matrix([np.cos(angle / 2), *(np.sin(angle / 2) * n)])


def _special_rotations():
    """Rotations where angle-based constructions break down."""
    return {
        "identity": np.eye(3),
        "near_identity": _axis_angle([0.3, -0.2, 0.9], 1e-9),
        "half_turn_x": np.diag([1.0, -1.0, -1.0]),
        "half_turn_z": np.diag([-1.0, -1.0, 1.0]),
        "half_turn_diagonal": _axis_angle([1, 1, 1], np.pi),
        "near_half_turn": _axis_angle([0.1, 0.7, -0.2], np.pi - 1e-9),
        "about_z": _axis_angle([0, 0, 1], 0.7),
        "about_minus_z": _axis_angle([0, 0, -1], 2.1),
        "about_x": _axis_angle([1, 0, 0], 1.3),
        "random": random_rotation(7),
        "improper": random_rotation(8, improper=True),
        "mirror": np.diag([1.0, -1.0, 1.0]),
    }


def _sphericart_harmonics(xyz, lmax):
    sphericart = pytest.importorskip("sphericart")
    return sphericart.SphericalHarmonics(lmax).compute(np.ascontiguousarray(xyz))


def _harmonics(xyz, lmax):
    """ncsym's own real harmonics when ncsym/sph.py exists, sphericart's otherwise."""
    try:
        from ncsym.sph import spherical_harmonics
    except ImportError:
        return _sphericart_harmonics(xyz, lmax)
    return np.asarray(spherical_harmonics(xyz, lmax))


def _fit_wigner(harmonics, xyz, rotation, lmax):
    """D_l fitted by least squares from Y_l(R r) = D_l Y_l(r) on sample points."""
    y = harmonics(xyz, lmax)
    y_rot = harmonics(xyz @ rotation.T, lmax)
    fitted = []
    for l in range(lmax + 1):
        sl = slice(l * l, (l + 1) ** 2)
        solution, *_ = np.linalg.lstsq(y[:, sl], y_rot[:, sl], rcond=None)
        fitted.append(solution.T)
    return fitted


def _unit_points(rng, n):
    xyz = rng.normal(size=(n, 3))
    return xyz / np.linalg.norm(xyz, axis=1)[:, None]


@pytest.mark.parametrize("name", sorted(_special_rotations()))
def test_wigner_d_agrees_with_fit_of_harmonics(name, rng):
    rotation = _special_rotations()[name]
    xyz = _unit_points(rng, 1500)
    fitted = _fit_wigner(_harmonics, xyz, rotation, 12)
    for l, (d, d_fit) in enumerate(zip(wigner_d(rotation, 12), fitted, strict=True)):
        assert np.max(np.abs(d - d_fit)) < FIT_TOLERANCE, (name, l)


def test_wigner_d_agrees_with_sphericart_fit(rng):
    rotation = random_rotation(rng)
    xyz = _unit_points(rng, 800)
    fitted = _fit_wigner(_sphericart_harmonics, xyz, rotation, 8)
    for d, d_fit in zip(wigner_d(rotation, 8), fitted, strict=True):
        assert np.max(np.abs(d - d_fit)) < FIT_TOLERANCE


def test_orthogonal_and_group_law(rng):
    r1, r2 = random_rotation(rng), random_rotation(rng, improper=True)
    d1, d2, d12 = wigner_d(r1, LMAX), wigner_d(r2, LMAX), wigner_d(r1 @ r2, LMAX)
    for l in range(LMAX + 1):
        eye = np.eye(2 * l + 1)
        assert np.max(np.abs(d1[l] @ d1[l].T - eye)) < WIGNER_TOLERANCE
        assert np.max(np.abs(d2[l].T @ d2[l] - eye)) < WIGNER_TOLERANCE
        assert np.max(np.abs(d1[l] @ d2[l] - d12[l])) < WIGNER_TOLERANCE
        # inverse rotation gives the transpose
        assert np.max(np.abs(wigner_d(r1.T, l)[l] - d1[l].T)) < WIGNER_TOLERANCE


@given(r1=nst.rotations(improper=None), r2=nst.rotations(improper=None))
@example(r1=nst.IDENTITY, r2=nst.INVERSION)
@example(r1=nst.HALF_TURNS["z"], r2=nst.HALF_TURNS["x"])
@example(r1=nst.PINNED_ROTATIONS["tiny"], r2=nst.HALF_TURNS["xyz"])
def test_group_law_property(r1, r2):
    lmax = 8
    d1, d2, d12 = wigner_d(r1, lmax), wigner_d(r2, lmax), wigner_d(r1 @ r2, lmax)
    for l in range(lmax + 1):
        assert np.max(np.abs(d1[l] @ d2[l] - d12[l])) < WIGNER_TOLERANCE


def test_identity_and_inversion():
    for l, d in enumerate(wigner_d(np.eye(3), LMAX)):
        assert d.shape == (2 * l + 1, 2 * l + 1)
        assert d.dtype == np.float64
        np.testing.assert_array_equal(d, np.eye(2 * l + 1))
    for l, d in enumerate(wigner_d(-np.eye(3), LMAX)):
        np.testing.assert_array_equal(d, (-1) ** l * np.eye(2 * l + 1))


def test_improper_is_parity_times_proper(rng):
    rotation = random_rotation(rng)
    proper, improper = wigner_d(rotation, LMAX), wigner_d(-rotation, LMAX)
    for l in range(LMAX + 1):
        np.testing.assert_allclose(improper[l], (-1) ** l * proper[l], rtol=0, atol=0)


def test_l1_is_rotation_in_yzx_order(rng):
    rotation = random_rotation(rng)
    order = [1, 2, 0]
    np.testing.assert_array_equal(wigner_d(rotation, 1)[1], rotation[np.ix_(order, order)])


def test_rotation_about_z_closed_form():
    # real harmonics with m > 0 go as cos(m phi), m < 0 as sin(|m| phi)
    angle = 0.83
    rotation = _axis_angle([0, 0, 1], angle)
    for l, d in enumerate(wigner_d(rotation, LMAX)):
        expected = np.zeros((2 * l + 1, 2 * l + 1))
        expected[l, l] = 1.0
        for m in range(1, l + 1):
            c, s = np.cos(m * angle), np.sin(m * angle)
            expected[l + m, l + m] = expected[l - m, l - m] = c
            expected[l + m, l - m] = -s
            expected[l - m, l + m] = s
        assert np.max(np.abs(d - expected)) < WIGNER_TOLERANCE, l


def test_wigner_d_matrix_is_block_diagonal(rng):
    rotation = random_rotation(rng)
    full = wigner_d_matrix(rotation, 3)
    assert full.shape == (16, 16)
    for l, d in enumerate(wigner_d(rotation, 3)):
        sl = slice(l * l, (l + 1) ** 2)
        np.testing.assert_array_equal(full[sl, sl], d)
    mask = np.zeros_like(full, dtype=bool)
    for l in range(4):
        mask[l * l : (l + 1) ** 2, l * l : (l + 1) ** 2] = True
    assert not np.any(full[~mask])


def test_random_rotation(rng):
    for improper, det in ((False, 1.0), (True, -1.0)):
        rotation = random_rotation(rng, improper=improper)
        assert rotation.shape == (3, 3)
        assert np.max(np.abs(rotation.T @ rotation - np.eye(3))) < WIGNER_TOLERANCE
        assert np.linalg.det(rotation) == pytest.approx(det, abs=WIGNER_TOLERANCE)
    np.testing.assert_array_equal(random_rotation(3), random_rotation(3))
    # Haar measure: every matrix entry has zero mean and variance 1/3
    samples = np.array([random_rotation(rng) for _ in range(N_HAAR_SAMPLES)])
    assert np.max(np.abs(samples.mean(axis=0))) < HAAR_MEAN_TOLERANCE
    assert np.max(np.abs((samples**2).mean(axis=0) - 1.0 / 3.0)) < HAAR_MEAN_TOLERANCE


def test_check_rotation_accepts_small_deviation():
    rotation = random_rotation(1) + 0.1 * ORTHOGONALITY_TOLERANCE
    assert check_rotation(rotation).dtype == np.float64


@pytest.mark.parametrize(
    "rotation, error, match",
    [
        (np.eye(3) * 1.1, ValueError, "must be an orthogonal matrix"),
        (np.eye(4), ValueError, r"must have shape \(3, 3\)"),
        (np.full((3, 3), np.nan), ValueError, "NaN or infinite"),
        ([["a", "b", "c"]] * 3, TypeError, "must be convertible"),
    ],
)
def test_wigner_d_rejects_bad_rotations(rotation, error, match):
    with pytest.raises(error, match=match):
        wigner_d(rotation, 2)


def test_wigner_d_rejects_bad_lmax():
    with pytest.raises(ValueError, match="`lmax` must be >= 0"):
        wigner_d(np.eye(3), -1)
    with pytest.raises(TypeError, match="`lmax` must be an integer"):
        wigner_d(np.eye(3), 2.0)


def test_quaternion_and_random_rotation_errors():
    with pytest.raises(ValueError, match="non-zero norm"):
        quaternion_to_matrix([0.0, 0.0, 0.0, 0.0])
    with pytest.raises(TypeError, match="`improper` must be a bool"):
        random_rotation(0, improper="yes")
