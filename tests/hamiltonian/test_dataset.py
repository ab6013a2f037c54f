"""The shipped RHF/def2-SVP water data set (needs no PySCF)."""

from __future__ import annotations

from importlib.resources import files

import numpy as np
import pytest
import scipy.linalg

from ncsym.hamiltonian import (
    blocks_to_matrix,
    couple_blocks,
    decouple_blocks,
    load_water_dataset,
    matrix_to_blocks,
)

#: eigh(F, S) of the stored matrices against the stored orbital energies (Hartree).
EIGEN_TOLERANCE = 1e-10
#: matrix -> blocks -> coupled -> blocks -> matrix (Hartree, entries up to ~20).
ROUND_TRIP_TOLERANCE = 1e-14
#: The shipped file must stay small.
MAX_BYTES = 4_000_000


@pytest.fixture(scope="module")
def water():
    return load_water_dataset()


def test_file_size():
    resource = files("ncsym") / "data" / "water_def2svp.npz"
    with resource.open("rb") as fd:
        assert len(fd.read()) < MAX_BYTES


def test_contents(water):
    assert len(water) == 300
    assert (water.basis, water.method) == ("def2-svp", "RHF")
    assert water.info == {"molecule": "H2O", "sigma": 0.08, "seed": 0}
    assert water.orbitals == {8: [(1, 0), (2, 0), (3, 0), (2, 1), (3, 1), (3, 2)],
                              1: [(1, 0), (2, 0), (2, 1)]}
    assert set(water.n_occupied) == {5}
    for k in (0, 150, 299):
        assert water.fock[k].shape == (24, 24)
        assert np.array_equal(water.numbers[k], [8, 1, 1])
        eps = scipy.linalg.eigh(water.fock[k], water.overlap[k], eigvals_only=True)
        assert np.max(np.abs(eps - water.mo_energy[k])) < EIGEN_TOLERANCE
    # O-H bonds: every coordinate moved by N(0, 0.08 A), so the bond length spreads by
    # about sqrt(2) * 0.08 = 0.113 A around ase's 0.968 A
    bonds = np.concatenate([np.linalg.norm(p[1:] - p[0], axis=1) for p in water.positions])
    assert abs(bonds.mean() - 0.968) < 0.03
    assert 0.09 < bonds.std() < 0.14


def test_round_trip_whole_set(water):
    frames = water.frames
    coupled = couple_blocks(matrix_to_blocks(water.fock, frames, water.orbitals))
    back = blocks_to_matrix(decouple_blocks(coupled), frames, water.orbitals)
    err = max(np.max(np.abs(a - b)) for a, b in zip(back, water.fock, strict=True))
    assert err < ROUND_TRIP_TOLERANCE
