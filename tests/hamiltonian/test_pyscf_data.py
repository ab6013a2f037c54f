"""PySCF adapter: AO order and phases, SCF data, data set generation and I/O."""

from __future__ import annotations

import os
import warnings

import numpy as np
import pytest
import scipy.linalg

pytest.importorskip("pyscf")
pytest.importorskip("sphericart")

from ase.build import molecule  # noqa: E402

from ncsym.hamiltonian import (  # noqa: E402
    HamiltonianData,
    SCFNotConvergedError,
    ao_labels,
    cross_overlap,
    load_dataset,
    make_distorted_dataset,
    orbital_labels,
    run_scf,
    save_dataset,
)
from ncsym.hamiltonian.pyscf_data import pyscf_ao_permutation  # noqa: E402
from ncsym.rotations import random_rotation  # noqa: E402

from ._ham_utils import ao_wigner, rotated, scf  # noqa: E402

#: F(R A) = D F(A) D^T holds to the SCF convergence (conv_tol_grad = 1e-8 Hartree).
ROTATION_TOLERANCE = 1e-8
#: eigh(F, S) of the stored matrices against the stored orbital energies (Hartree).
EIGEN_TOLERANCE = 1e-10
#: Our orbital energies (from the final-density Fock matrix) against PySCF's own, which come
#: from the Fock matrix of the previous iteration (Hartree).
PYSCF_MO_TOLERANCE = 1e-6
#: Angular part of PySCF AOs against sphericart harmonics (dimensionless).
HARMONICS_TOLERANCE = 1e-12

WATER_STO3G = {8: [(1, 0), (2, 0), (2, 1)], 1: [(1, 0)]}
DEF2SVP_HEAVY = [(1, 0), (2, 0), (3, 0), (2, 1), (3, 1), (3, 2)]
DEF2SVP_H = [(1, 0), (2, 0), (2, 1)]


def test_ao_labels_water_sto3g():
    assert ao_labels(molecule("H2O"), "sto-3g") == WATER_STO3G


def test_ao_labels_ethanol_def2svp():
    ethanol = molecule("CH3CH2OH")
    layout = ao_labels(ethanol, "def2-svp")
    assert layout == {6: DEF2SVP_HEAVY, 8: DEF2SVP_HEAVY, 1: DEF2SVP_H}
    labels = orbital_labels(ethanol.numbers, layout)
    assert labels.shape == (72, 4)  # 2 C + 1 O (14 AOs each) + 6 H (5 AOs each)
    # first atom's p shells: m = -1, 0, 1
    first = labels[labels[:, 0] == 0]
    assert first[first[:, 2] == 1][:, 3].tolist() == [-1, 0, 1, -1, 0, 1]


def test_pyscf_harmonics_match_ncsym_convention():
    """After the p reorder every PySCF shell (up to g) is ncsym's real Y_lm, m = -l..l."""
    import sphericart
    from pyscf import gto

    mol = gto.M(atom="O 0 0 0", basis="cc-pvqz", unit="Angstrom", verbose=0)
    numbers = np.array([8])
    layout = ao_labels(molecule("O"), "cc-pvqz")
    perm = pyscf_ao_permutation(numbers, layout)
    rng = np.random.default_rng(1)
    points = rng.normal(size=(100, 3))
    ao = mol.eval_gto("GTOval_sph", points / 0.529177210903)[:, perm]
    y = sphericart.SphericalHarmonics(4).compute(points)
    start = 0
    for _, l in layout[8]:
        block = ao[:, start:start + 2 * l + 1]
        y_l = y[:, l * l:(l + 1) ** 2]
        radial = np.sum(block * y_l, axis=1) / np.sum(y_l * y_l, axis=1)
        scale = np.max(np.abs(block))
        assert np.max(np.abs(block - radial[:, None] * y_l)) < HARMONICS_TOLERANCE * scale, l
        start += 2 * l + 1
    assert max(l for _, l in layout[8]) == 4


@pytest.mark.parametrize("basis", ["sto-3g", "def2-svp"])
def test_fock_rotates_with_wigner_matrices(basis):
    water = molecule("H2O")
    rotation = random_rotation(7)
    ref = scf(water, basis)
    rot = scf(rotated(water, rotation), basis)
    d = ao_wigner(rotation, water.numbers, ref.orbitals)
    for name in ("fock", "overlap"):
        expected = d @ getattr(ref, name)[0] @ d.T
        assert np.max(np.abs(getattr(rot, name)[0] - expected)) < ROTATION_TOLERANCE, name


def test_p_order_matters():
    """Negative control: without the (x, y, z) -> (y, z, x) reorder, rotation fails."""
    water = molecule("H2O")
    rotation = random_rotation(8)
    ref = scf(water)
    rot = scf(rotated(water, rotation))
    undo = np.argsort(pyscf_ao_permutation(water.numbers, ref.orbitals))
    d = ao_wigner(rotation, water.numbers, ref.orbitals)
    wrong = rot.fock[0][undo][:, undo] - d @ ref.fock[0][undo][:, undo] @ d.T
    assert np.max(np.abs(wrong)) > 1e-3


def test_mo_energies_reproduced_by_generalised_eigh():
    from pyscf import gto
    from pyscf import scf as pyscf_scf

    water = molecule("H2O")
    data = scf(water, "def2-svp")
    eps = scipy.linalg.eigh(data.fock[0], data.overlap[0], eigvals_only=True)
    assert np.max(np.abs(eps - data.mo_energy[0])) < EIGEN_TOLERANCE
    assert data.n_occupied == [5]
    assert data.mo_occ[0].sum() == 10
    mol = gto.M(atom=[(s, p) for s, p in zip(water.get_chemical_symbols(), water.positions,
                                            strict=True)],
                basis="def2-svp", unit="Angstrom", verbose=0)
    mf = pyscf_scf.RHF(mol)
    mf.conv_tol, mf.conv_tol_grad = 1e-12, 1e-8
    mf.kernel()
    assert np.max(np.abs(mf.mo_energy - data.mo_energy[0])) < PYSCF_MO_TOLERANCE
    assert abs(mf.e_tot - data.energy[0]) < PYSCF_MO_TOLERANCE


def test_rks():
    water = molecule("H2O")
    dft = run_scf(water, "sto-3g", "RKS", xc="PBE")
    hf = scf(water, "sto-3g")
    assert dft.method == "RKS" and dft.xc == "PBE"
    eps = scipy.linalg.eigh(dft.fock[0], dft.overlap[0], eigvals_only=True)
    assert np.max(np.abs(eps - dft.mo_energy[0])) < EIGEN_TOLERANCE
    assert abs(dft.energy[0] - hf.energy[0]) > 1e-3


def test_unconverged_scf_raises_or_warns():
    water = molecule("H2O")
    with pytest.raises(SCFNotConvergedError, match="did not converge in 1 cycles"):
        run_scf(water, "def2-svp", max_cycle=1)
    with pytest.warns(RuntimeWarning, match="did not converge"):
        data = run_scf(water, "def2-svp", max_cycle=1, on_unconverged="warn")
    assert data.fock[0].shape == (24, 24)


def test_scf_bad_input():
    water = molecule("H2O")
    with pytest.raises(ValueError, match="`method` must be one of"):
        run_scf(water, "sto-3g", "UHF")
    with pytest.raises(ValueError, match="odd"):
        run_scf(molecule("OH"), "sto-3g")
    with pytest.raises(ValueError, match="could not build basis"):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            ao_labels(water, "no-such-basis")
    periodic = water.copy()
    periodic.cell = [10, 10, 10]
    periodic.pbc = True
    with pytest.raises(ValueError, match="set pbc to False"):
        run_scf(periodic, "sto-3g")
    with pytest.raises(ValueError, match="`on_unconverged`"):
        run_scf(water, "sto-3g", on_unconverged="ignore")


def test_cross_overlap():
    water = molecule("H2O")
    data = scf(water, "def2-svp")
    s_same = cross_overlap(water, "def2-svp", "def2-svp")
    assert np.max(np.abs(s_same - data.overlap[0])) < EIGEN_TOLERANCE
    s_cross = cross_overlap(water, "sto-3g", "def2-svp")
    assert s_cross.shape == (7, 24)
    rotation = random_rotation(3)
    d_min = ao_wigner(rotation, water.numbers, WATER_STO3G)
    d_big = ao_wigner(rotation, water.numbers, data.orbitals)
    s_rot = cross_overlap(rotated(water, rotation), "sto-3g", "def2-svp")
    assert np.max(np.abs(s_rot - d_min @ s_cross @ d_big.T)) < ROTATION_TOLERANCE


def test_distorted_dataset_reproducible_and_cached(tmp_path):
    kwargs = dict(basis="sto-3g", seed=3, progress=False)
    three = make_distorted_dataset("H2O", 3, cache_dir=tmp_path, **kwargs)
    assert len(three) == 3 and three.info == {"molecule": "H2O", "sigma": 0.08, "seed": 3}
    assert len(list(tmp_path.iterdir())) == 3
    # frame k depends only on (seed, k): a shorter set is a prefix, served from the cache
    two = make_distorted_dataset("H2O", 2, **kwargs)
    for a, b in zip(two.positions, three.positions, strict=False):
        np.testing.assert_array_equal(a, b)
    cached = make_distorted_dataset("H2O", 3, cache_dir=tmp_path, **kwargs)
    for a, b in zip(cached.fock, three.fock, strict=True):
        np.testing.assert_array_equal(a, b)
    other = make_distorted_dataset("H2O", 1, basis="sto-3g", seed=4, progress=False)
    assert not np.allclose(other.positions[0], three.positions[0])


def test_distortion_is_rotation_plus_noise():
    water = molecule("H2O")
    rigid = make_distorted_dataset("H2O", 2, sigma=0.0, basis="sto-3g", progress=False)

    def distances(p):
        return np.linalg.norm(p[:, None] - p[None], axis=-1)

    for p in rigid.positions:
        np.testing.assert_allclose(distances(p), distances(water.positions), atol=1e-12)
    with pytest.raises(ValueError, match="not known to ase"):
        make_distorted_dataset("NotAMolecule", 1, progress=False)
    with pytest.raises(ValueError, match="`n_frames` must be >= 1"):
        make_distorted_dataset("H2O", 0, progress=False)


def test_save_load_roundtrip(tmp_path):
    data = make_distorted_dataset("H2O", 2, basis="sto-3g", progress=False)
    path = tmp_path / "set.npz"
    save_dataset(data, path)
    assert sorted(os.listdir(tmp_path)) == ["set.npz"]  # no temporary file left behind
    back = HamiltonianData.load(path)
    assert back.orbitals == data.orbitals and back.basis == "sto-3g" and back.method == "RHF"
    for name in ("numbers", "positions", "fock", "overlap", "mo_energy", "mo_occ"):
        for a, b in zip(getattr(back, name), getattr(data, name), strict=True):
            np.testing.assert_array_equal(a, b)
    assert back.energy == data.energy and back.info == data.info
    assert back[1].n_occupied == [5] and len(back[:1]) == 1
    (tmp_path / "bad.npz").write_bytes(b"not a zip file")
    with pytest.raises(ValueError, match="not a valid ncsym Hamiltonian data set"):
        load_dataset(tmp_path / "bad.npz")
    with pytest.raises(TypeError, match="HamiltonianData"):
        save_dataset({"fock": []}, tmp_path / "x.npz")


@pytest.mark.parametrize("guess", ["minao", "1e"])
def test_guess_fock_rotates_and_differs_from_scf(guess):
    """The initial-guess Fock matrix is in ncsym's AO order (rotates with the Wigner
    matrices), symmetric, and is a baseline, not the converged matrix."""
    from ncsym.hamiltonian.pyscf_data import guess_fock

    water = molecule("H2O")
    rotation = random_rotation(11)
    ref = scf(water, "def2-svp")
    f0 = guess_fock(water, "def2-svp", guess=guess)
    f1 = guess_fock(rotated(water, rotation), "def2-svp", guess=guess)
    assert f0.shape == ref.fock[0].shape
    np.testing.assert_array_equal(f0, f0.T)
    d = ao_wigner(rotation, water.numbers, ref.orbitals)
    assert np.max(np.abs(f1 - d @ f0 @ d.T)) < 1e-10 * np.abs(f0).max()
    diff = np.abs(f0 - ref.fock[0]).max()
    assert 1e-4 < diff < 5.0, diff


def test_guess_fock_bad_input():
    from ncsym.hamiltonian.pyscf_data import guess_fock

    water = molecule("H2O")
    with pytest.raises(ValueError, match="guess"):
        guess_fock(water, "sto-3g", guess="sad")
    with pytest.raises(ValueError, match="method"):
        guess_fock(water, "sto-3g", method="UHF")
    with pytest.raises(ValueError, match="odd"):
        guess_fock(molecule("OH"), "sto-3g")
