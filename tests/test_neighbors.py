"""Tests of the cell-list neighbour search (ncsym.neighbors, ncsym.kernels.neighbors).

Reference: ASE's own neighbour list (``ase.neighborlist.neighbor_list``), an independent
implementation.  Pairs are compared as sets of ``(i, j, shift)`` and the vectors are
recomputed from the positions.
"""

import ase
import ase.build
import numpy as np
import pytest
from ase.neighborlist import neighbor_list as ase_neighbor_list
from hypothesis import given, settings
from hypothesis import strategies as st

from ncsym.neighbors import neighbor_list
from ncsym.testing import strategies as nst

#: Pair vectors vs ``r_j - r_i + S @ cell`` recomputed with NumPy (Angstrom).
VECTOR_TOLERANCE = 1e-12


def _as_tuples(first, second, shifts):
    return list(zip(first.tolist(), second.tolist(), map(tuple, shifts.tolist()), strict=True))


def _assert_matches_ase(atoms, cutoff):
    nl = neighbor_list(atoms, cutoff)
    i, j, shifts = ase_neighbor_list("ijS", atoms, cutoff)
    got = _as_tuples(nl.first_atom, nl.second_atom, nl.cell_shift)
    assert got == sorted(got), "pairs are not sorted"
    assert got == sorted(_as_tuples(i, j, shifts))
    cell = atoms.cell.array if np.all(atoms.pbc) else np.zeros((3, 3))
    expected = atoms.positions[nl.second_atom] - atoms.positions[nl.first_atom] + nl.cell_shift @ cell
    np.testing.assert_allclose(nl.vectors, expected, rtol=0, atol=VECTOR_TOLERANCE)
    assert np.all(nl.distances < cutoff)
    assert np.all(nl.system == 0)
    return nl


@pytest.mark.parametrize("cutoff", [2.0, 4.0, 9.0])
def test_silicon_primitive_cell(cutoff):
    # the primitive cell (3.84 A) is smaller than the cutoff and twice the cutoff
    _assert_matches_ase(ase.build.bulk("Si", "diamond", 5.43), cutoff)


def test_silicon_supercell():
    atoms = ase.build.bulk("Si", "diamond", 5.43, cubic=True) * (3, 3, 3)
    nl = _assert_matches_ase(atoms, 4.0)
    assert len(nl) == 216 * 16


@pytest.mark.parametrize("cutoff", [1.5, 5.0, 11.0])
def test_skewed_triclinic_cell(cutoff, rng):
    # strongly sheared cell: binned in a Minkowski-reduced basis internally
    cell = np.array([[4.0, 0.0, 0.0], [3.9, 1.1, 0.0], [3.5, 0.7, 1.8]])
    atoms = ase.Atoms("H3O", scaled_positions=rng.uniform(-2, 3, size=(4, 3)), cell=cell, pbc=True)
    _assert_matches_ase(atoms, cutoff)


def test_positions_outside_the_cell(rng):
    cell = np.array([[5.0, 0.3, 0.0], [-0.4, 4.5, 0.2], [0.1, 0.5, 6.0]])
    atoms = ase.Atoms("CH4", scaled_positions=rng.uniform(-5, 5, size=(5, 3)), cell=cell, pbc=True)
    _assert_matches_ase(atoms, 4.5)


@pytest.mark.parametrize("name", ["CH3CH2OH", "C6H6", "CO2", "H"])
def test_molecules(name):
    # ethanol, a planar and a linear molecule, and a single atom
    atoms = ase.build.molecule(name)
    for cutoff in (1.2, 3.0, 20.0):
        nl = _assert_matches_ase(atoms, cutoff)
        assert np.all(nl.cell_shift == 0)


def test_molecule_cell_is_ignored():
    atoms = ase.build.molecule("H2O")
    atoms.cell = [0.5, 0.5, 0.5]
    atoms.pbc = False
    nl = neighbor_list(atoms, 3.0)
    assert len(nl) == 6 and np.all(nl.cell_shift == 0)


def test_several_frames():
    frames = [
        ase.build.molecule("H2O"),
        ase.build.bulk("Si", "diamond", 5.43),
        ase.build.molecule("CH4"),
        ase.build.bulk("Cu", "fcc", 3.6, orthorhombic=True),
    ]
    cutoff = 3.2
    nl = neighbor_list(frames, cutoff)
    assert np.all(np.diff(nl.system) >= 0)
    for f, atoms in enumerate(frames):
        single = neighbor_list(atoms, cutoff)
        mask = nl.system == f
        np.testing.assert_array_equal(nl.first_atom[mask], single.first_atom)
        np.testing.assert_array_equal(nl.second_atom[mask], single.second_atom)
        np.testing.assert_array_equal(nl.cell_shift[mask], single.cell_shift)
        np.testing.assert_array_equal(nl.vectors[mask], single.vectors)


def test_self_pairs():
    atoms = ase.build.bulk("Si", "diamond", 5.43)
    plain = neighbor_list(atoms, 4.0)
    with_self = neighbor_list(atoms, 4.0, self_pairs=True)
    is_self = (with_self.first_atom == with_self.second_atom) & np.all(with_self.cell_shift == 0, 1)
    assert is_self.sum() == len(atoms)
    assert np.all(with_self.vectors[is_self] == 0.0)
    keep = ~is_self
    np.testing.assert_array_equal(with_self.second_atom[keep], plain.second_atom)
    got = _as_tuples(with_self.first_atom, with_self.second_atom, with_self.cell_shift)
    assert got == sorted(got)


def test_pair_symmetry():
    atoms = ase.build.bulk("Si", "diamond", 5.43) * (2, 1, 1)
    nl = neighbor_list(atoms, 5.0)
    forward = set(_as_tuples(nl.first_atom, nl.second_atom, nl.cell_shift))
    backward = set(_as_tuples(nl.second_atom, nl.first_atom, -nl.cell_shift))
    assert forward == backward


def test_pair_exactly_at_the_cutoff_is_listed_in_both_directions_or_neither():
    # found by Hypothesis: the image of atom 1 seen from atom 0 lies exactly at the cutoff
    # (the b axis is 3.5 A long); the wrapped-position distances of the two directions round
    # differently, and (1, 0, (0, -1, 0)) used to be listed without (0, 1, (0, 1, 0))
    atoms = ase.Atoms(
        numbers=[1, 1],
        positions=[[0.0, 0.0, 0.0], [-2.0, -2.0762674054048915, 0.0]],
        cell=[[4.0, 0.6525348108097835, 0.0], [0.0, 3.5, 0.0], [0.0, 0.0, 5.0]],
        pbc=True,
    )
    for cutoff in (3.5, np.nextafter(3.5, 4.0), np.nextafter(3.5, 0.0)):
        nl = neighbor_list(atoms, cutoff)
        forward = set(_as_tuples(nl.first_atom, nl.second_atom, nl.cell_shift))
        backward = set(_as_tuples(nl.second_atom, nl.first_atom, -nl.cell_shift))
        assert forward == backward
        assert np.all(np.linalg.norm(nl.vectors, axis=1) < cutoff)


@settings(deadline=None, max_examples=30)
@given(
    atoms=nst.periodic_cells(max_atoms=4, min_length=2.5, max_length=5.0, max_skew=0.4),
    data=st.data(),
)
def test_pairs_at_a_cell_length_cutoff_are_symmetric(atoms, data):
    # cutoffs equal to a lattice vector's length put images exactly at the cutoff
    lengths = np.linalg.norm(atoms.cell.array, axis=1)
    cutoff = float(data.draw(st.sampled_from(sorted(set(lengths.tolist())))))
    nl = neighbor_list(atoms, cutoff)
    forward = set(_as_tuples(nl.first_atom, nl.second_atom, nl.cell_shift))
    assert forward == set(_as_tuples(nl.second_atom, nl.first_atom, -nl.cell_shift))


@settings(deadline=None, max_examples=20)
@given(
    atoms=nst.periodic_cells(max_atoms=5, min_length=2.5, max_length=5.0, max_skew=0.4),
    cutoff=st.floats(0.5, 7.5),
)
def test_random_periodic_cells(atoms, cutoff):
    _assert_matches_ase(atoms, cutoff)


@settings(deadline=None, max_examples=15)
@given(atoms=nst.molecules(max_atoms=8), cutoff=st.floats(0.5, 6.0))
def test_random_molecules(atoms, cutoff):
    _assert_matches_ase(atoms, cutoff)
