"""Targets: Löwdin orthogonalisation and the symmetry-adapted projected Hamiltonian."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.linalg

from ncsym.hamiltonian import (
    inverse_sqrt,
    lowdin_deorthogonalize,
    lowdin_orthogonalize,
    saph,
    subbasis_projection,
)

from ._ham_utils import random_symmetric

#: Eigenvalues / matrix identities that hold up to float rounding of O(20 Hartree) matrices.
EXACT_TOLERANCE = 1e-12
#: Covariance under rotation, limited by the SCF convergence (conv_tol_grad = 1e-8 Hartree).
ROTATION_TOLERANCE = 1e-8

WATER_VALENCE = {8: [(2, 0), (2, 1)], 1: [(1, 0)]}


def spd(rng, n):
    a = rng.normal(size=(n, n))
    return a @ a.T + n * np.eye(n)


def test_inverse_sqrt_and_lowdin_random():
    rng = np.random.default_rng(0)
    s = spd(rng, 7)
    x = inverse_sqrt(s)
    assert np.max(np.abs(x @ s @ x - np.eye(7))) < EXACT_TOLERANCE
    f = random_symmetric(rng, 7)
    lo = lowdin_orthogonalize(f, s)
    np.testing.assert_allclose(np.linalg.eigvalsh(lo), scipy.linalg.eigh(f, s, eigvals_only=True),
                               atol=EXACT_TOLERANCE)
    many = lowdin_orthogonalize([f, f], [s, s])
    assert len(many) == 2 and np.array_equal(many[0], lo)
    with pytest.raises(ValueError, match="positive definite"):
        inverse_sqrt(-s)
    with pytest.raises(ValueError, match="must be symmetric"):
        lowdin_orthogonalize(f + np.triu(np.ones((7, 7)), 1), s)
    with pytest.raises(ValueError, match="got 2 `fock` matrices and 1 overlaps"):
        lowdin_orthogonalize([f, f], [s])


def test_lowdin_deorthogonalize_inverts_lowdin_orthogonalize():
    rng = np.random.default_rng(5)
    s = spd(rng, 6)
    f = random_symmetric(rng, 6)
    lo = lowdin_orthogonalize(f, s)
    back = lowdin_deorthogonalize(lo, s)
    assert np.max(np.abs(back - f)) < EXACT_TOLERANCE * np.abs(f).max()
    assert np.array_equal(back, back.T)
    # S^1/2 S^1/2 = S: the identity in the orthogonal basis is the overlap
    assert np.max(np.abs(lowdin_deorthogonalize(np.eye(6), s) - s)) < EXACT_TOLERANCE * np.abs(s).max()
    many = lowdin_deorthogonalize([lo, lo], [s, s])
    assert len(many) == 2 and np.array_equal(many[0], back)
    with pytest.raises(ValueError, match="`matrix` has shape"):
        lowdin_deorthogonalize(np.eye(5), s)
    with pytest.raises(ValueError, match="positive definite"):
        lowdin_deorthogonalize(lo, -s)


def test_saph_random_exact_subspace():
    """When the selected MOs lie in span(chi), the SAPH is the exact projected Hamiltonian."""
    rng = np.random.default_rng(1)
    n, n_min = 8, 3
    s = spd(rng, n)
    f = random_symmetric(rng, n)
    eps, c = scipy.linalg.eigh(f, s)
    # minimal functions = 3 fixed mixtures of the 3 lowest MOs
    mix = rng.normal(size=(3, n_min))
    chi = c[:, :3] @ mix  # AO coefficients of chi, (n, n_min)
    projection = chi.T @ s
    s_min = chi.T @ s @ chi
    result = saph(f, s, projection, s_min)
    assert result.mo_indices.tolist() == [0, 1, 2]
    np.testing.assert_allclose(result.weights, 1.0, atol=EXACT_TOLERANCE)
    np.testing.assert_allclose(result.energies, eps[:3], atol=0)
    # exact: Löwdin-orthonormalised chi~ = chi S_min^-1/2, H = chi~^T F chi~
    chi_l = chi @ inverse_sqrt(s_min)
    np.testing.assert_allclose(result.hamiltonian, chi_l.T @ f @ chi_l, atol=EXACT_TOLERANCE)


def test_saph_water_sto3g_and_subbasis():
    pytest.importorskip("pyscf")
    pytest.importorskip("sphericart")
    from ase.build import molecule

    from ncsym.hamiltonian import cross_overlap
    from ncsym.rotations import random_rotation

    from ._ham_utils import ao_wigner, rotated, scf

    water = molecule("H2O")
    water.positions += np.array([[0.03, 0.0, -0.02], [0.0, -0.04, 0.05], [0.02, 0.01, 0.0]])
    data = scf(water, "def2-svp")
    f, s = data.fock[0], data.overlap[0]

    # full STO-3G minimal basis: 5 occupied + 2 valence virtuals
    result = saph(f, s, cross_overlap(water, "sto-3g", "def2-svp"),
                  cross_overlap(water, "sto-3g", "sto-3g"))
    assert result.mo_indices.tolist() == list(range(7))
    np.testing.assert_allclose(np.linalg.eigvalsh(result.hamiltonian), data.mo_energy[0][:7],
                               atol=EXACT_TOLERANCE)
    assert np.all(result.weights[:5] > 0.9)  # occupied MOs live in the minimal basis

    # covariance under rotation, with the minimal basis' Wigner matrices
    rotation = random_rotation(5)
    moved = rotated(water, rotation)
    data_rot = scf(moved, "def2-svp")
    result_rot = saph(data_rot.fock[0], data_rot.overlap[0],
                      cross_overlap(moved, "sto-3g", "def2-svp"),
                      cross_overlap(moved, "sto-3g", "sto-3g"))
    d = ao_wigner(rotation, water.numbers, {8: [(1, 0), (2, 0), (2, 1)], 1: [(1, 0)]})
    assert np.max(np.abs(result_rot.hamiltonian - d @ result.hamiltonian @ d.T)) < \
        ROTATION_TOLERANCE

    # valence sub-basis of def2-SVP (Nigam et al.'s choice): O 2s 2p, H 1s, core MO skipped
    projection, s_min, minimal = subbasis_projection(s, water.numbers, data.orbitals,
                                                     WATER_VALENCE)
    assert minimal == {8: [(2, 0), (2, 1)], 1: [(1, 0)]} and projection.shape == (6, 24)
    valence = saph(f, s, projection, s_min, n_core=1)
    assert valence.mo_indices.tolist() == [1, 2, 3, 4, 5, 6]
    np.testing.assert_allclose(np.linalg.eigvalsh(valence.hamiltonian),
                               data.mo_energy[0][1:7], atol=EXACT_TOLERANCE)
    explicit = saph(f, s, projection, s_min, mo_indices=[1, 2, 3, 4, 5, 6])
    np.testing.assert_allclose(explicit.hamiltonian, valence.hamiltonian, atol=EXACT_TOLERANCE)


def test_saph_bad_input():
    rng = np.random.default_rng(2)
    s = spd(rng, 5)
    f = random_symmetric(rng, 5)
    p = s[:2]
    s_min = s[:2, :2]
    with pytest.raises(ValueError, match=r"`projection` must have shape \(n_min=2, n_ao=5\)"):
        saph(f, s, s[:3], s_min)
    with pytest.raises(ValueError, match="`mo_indices` must hold 2 distinct"):
        saph(f, s, p, s_min, mo_indices=[1, 1])
    with pytest.raises(ValueError, match="only 0 MOs"):
        saph(f, s, np.zeros((2, 5)), s_min)
    with pytest.raises(ValueError, match="`min_weight`"):
        saph(f, s, p, s_min, min_weight=0.0)
    with pytest.raises(ValueError, match="`n_core`"):
        saph(f, s, p, s_min, n_core=5)
    with pytest.raises(ValueError, match="not in `orbitals`"):
        subbasis_projection(s, [1], {1: [(1, 0), (2, 0), (3, 0), (4, 0), (5, 0)]},
                            {1: [(2, 1)]})
