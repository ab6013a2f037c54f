"""Tests for ncsym.testing.strategies: validity of every draw, shrinking, pinned examples."""

import numpy as np
import pytest
from hypothesis import HealthCheck, find, given, settings
from hypothesis import strategies as st

from ncsym.testing import strategies as nst

#: Orthogonality and determinant of generated matrices, absolute.
MATRIX_TOLERANCE = 1e-12


def _assert_orthogonal(matrix, det):
    assert matrix.shape == (3, 3)
    assert np.max(np.abs(matrix.T @ matrix - np.eye(3))) < MATRIX_TOLERANCE
    assert np.linalg.det(matrix) == pytest.approx(det, abs=MATRIX_TOLERANCE)


@given(q=nst.quaternions())
def test_quaternions_are_unit(q):
    assert q.shape == (4,)
    assert np.linalg.norm(q) == pytest.approx(1.0, abs=MATRIX_TOLERANCE)


@given(proper=nst.rotations(), improper=nst.improper_rotations())
def test_rotations_proper_and_improper(proper, improper):
    _assert_orthogonal(proper, 1.0)
    _assert_orthogonal(improper, -1.0)


def test_rotations_either_kind_and_shrinking():
    assert np.linalg.det(find(nst.rotations(improper=None), lambda r: np.linalg.det(r) < 0)) < 0
    assert np.linalg.det(find(nst.rotations(improper=None), lambda r: np.linalg.det(r) > 0)) > 0
    # shrinking goes to the identity (a readable counterexample)
    np.testing.assert_array_equal(find(nst.rotations(), lambda r: True), np.eye(3))
    np.testing.assert_array_equal(find(nst.improper_rotations(), lambda r: True), -np.eye(3))


def test_pinned_rotations():
    for name, matrix in nst.PINNED_ROTATIONS.items():
        det = -1.0 if name in ("inversion", "mirror_z") else 1.0
        _assert_orthogonal(matrix, det)
    for matrix in nst.HALF_TURNS.values():
        np.testing.assert_allclose(matrix @ matrix, np.eye(3), atol=MATRIX_TOLERANCE)
        assert np.trace(matrix) == pytest.approx(-1.0)
    assert 0 < np.max(np.abs(nst.PINNED_ROTATIONS["tiny"] - np.eye(3))) < 1e-7
    drawn = find(nst.pinned_rotations(), lambda r: True)
    assert any(np.array_equal(drawn, m) for m in nst.PINNED_ROTATIONS.values())


def _min_distance(frame):
    if len(frame) < 2:
        return np.inf
    distances = frame.get_all_distances(mic=bool(frame.pbc.any()))
    return distances[np.triu_indices(len(frame), 1)].min()


@given(frame=nst.molecules(species=[1, 8], min_atoms=2, max_atoms=5, min_distance=1.0))
def test_molecules(frame):
    assert 2 <= len(frame) <= 5
    assert set(frame.numbers) <= {1, 8}
    assert not frame.pbc.any()
    assert _min_distance(frame) >= 1.0


@given(frame=nst.periodic_cells(species=[14], max_atoms=3, max_skew=0.15))
@settings(suppress_health_check=[HealthCheck.filter_too_much, HealthCheck.too_slow])
def test_periodic_cells(frame):
    assert 1 <= len(frame) <= 3
    assert set(frame.numbers) == {14}
    assert frame.pbc.all()
    cell = np.asarray(frame.cell)
    assert np.linalg.det(cell) > 0
    diagonal = np.diag(cell)
    assert np.all((diagonal >= 3.5) & (diagonal <= 6.0))
    assert np.max(np.abs(cell - np.diag(diagonal)) / diagonal[:, None]) <= 0.15
    assert _min_distance(frame) >= nst.DEFAULT_MIN_DISTANCE
    # periodic images of an atom are far from it as well
    assert np.min(np.linalg.norm(cell, axis=1)) >= nst.DEFAULT_MIN_DISTANCE


@given(frame=nst.structures(species=[6]))
def test_structures_mix_molecules_and_cells(frame):
    assert set(frame.numbers) == {6}
    assert frame.pbc.all() or not frame.pbc.any()


def test_structures_shrink_to_small_readable_examples():
    frame = find(nst.molecules(species=[8, 1]), lambda f: len(f) >= 3)
    assert len(frame) == 3
    assert set(frame.numbers) == {8}
    # no jitter left: positions are grid points, i.e. multiples of half the grid spacing
    spacing = nst.GRID_SPACING_FACTOR * nst.DEFAULT_MIN_DISTANCE
    steps = frame.positions / (0.5 * spacing)
    np.testing.assert_allclose(steps, np.round(steps), atol=1e-12)
    cell = find(nst.periodic_cells(), lambda f: len(f) >= 2)
    assert len(cell) == 2
    assert np.count_nonzero(cell.cell - np.diag(np.diag(cell.cell))) == 0


@given(data=st.data(), frame=nst.molecules(max_atoms=5))
def test_atom_permutations(data, frame):
    perm = data.draw(nst.atom_permutations(len(frame)))
    assert perm.dtype == np.int64
    np.testing.assert_array_equal(np.sort(perm), np.arange(len(frame)))


def test_atom_permutations_shrink_to_identity():
    np.testing.assert_array_equal(find(nst.atom_permutations(4), lambda p: True), np.arange(4))


@given(shifts=nst.lattice_shifts(4, max_shift=3, pbc=(True, False, True)))
def test_lattice_shifts(shifts):
    assert shifts.shape == (4, 3)
    assert shifts.dtype == np.int64
    assert np.all(np.abs(shifts) <= 3)
    assert not shifts[:, 1].any()


@given(hypers=nst.hyperparameters(max_angular=(0, 3)))
def test_hyperparameters(hypers):
    assert 2.5 <= hypers["cutoff"] <= 5.0
    assert 0 < hypers["cutoff_width"] <= 0.5 * hypers["cutoff"]
    assert 0.2 <= hypers["density_width"] <= 0.5
    assert 1 <= hypers["max_radial"] <= 4
    assert 0 <= hypers["max_angular"] <= 3


def test_featomic_hypers_build_a_calculator():
    featomic = pytest.importorskip("featomic")
    hypers = find(nst.hyperparameters(), lambda h: True)
    calculator = featomic.SphericalExpansion(**nst.featomic_hypers(hypers))
    frame = nst.PINNED_MOLECULES["water"]()
    descriptor = calculator.compute(frame)
    lambdas = set(np.asarray(descriptor.keys.column("o3_lambda")).tolist())
    assert lambdas == set(range(hypers["max_angular"] + 1))


def test_pinned_molecules():
    chain = nst.atoms_on_axis((1.0, 1.0, 0.0))
    direction = np.array([1.0, 1.0, 0.0]) / np.sqrt(2.0)
    np.testing.assert_allclose(np.cross(chain.positions, direction), 0.0, atol=1e-15)
    assert len(nst.single_atom()) == 1
    for build in nst.PINNED_MOLECULES.values():
        first, second = build(), build()
        assert first is not second
        assert len(first) >= 1


@pytest.mark.parametrize(
    "strategy, match",
    [
        (nst.molecules(species=[]), "`species` must be atomic numbers"),
        (nst.molecules(species=[0]), "`species` must be atomic numbers"),
        (nst.molecules(min_atoms=3, max_atoms=2), "min_atoms <= max_atoms"),
        (nst.periodic_cells(max_skew=0.9), "`max_skew` must be in"),
        (nst.periodic_cells(min_length=5.0, max_length=4.0), "min_length <= max_length"),
    ],
)
def test_strategy_argument_errors(strategy, match):
    with pytest.raises(ValueError, match=match):
        find(strategy, lambda x: True)
