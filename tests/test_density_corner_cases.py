"""Corner cases of the density expansion: one atom, atoms at the cutoff, tiny cells,
``max_angular = 0``, ``max_radial = 0``, absent species, zero centre weight.

The reference is a brute-force NumPy evaluation: explicit loops over atoms and lattice
images, exact radial integrals (:func:`ncsym.radial.radial_integral`) and harmonics.
"""

import math

import ase
import ase.build
import numpy as np
import pytest

from ncsym import PairExpansion, SphericalExpansion
from ncsym.conventions import n_lm
from ncsym.radial import radial_integral
from ncsym.sph import spherical_harmonics

#: Brute force (exact integrals) vs the splined kernels: the spline error (1e-8 per pair,
#: weighted by |Y_lm| <= 1) summed over the few neighbours of these small structures.
BRUTE_FORCE_TOLERANCE = 1e-7

HYPERS = dict(cutoff=4.0, cutoff_width=0.5, density_width=0.3, max_radial=4, max_angular=3)


def _cutoff_function(r, cutoff, width):
    if r >= cutoff:
        return 0.0
    if r <= cutoff - width:
        return 1.0
    return 0.5 * (1 + math.cos(math.pi * (r - cutoff + width) / width))


def _brute_force(frame, species, center_atom_weight=1.0, **hypers):
    """Dense <a n l m|rho_i> by explicit enumeration of neighbours and images."""
    cutoff, width = hypers["cutoff"], hypers["cutoff_width"]
    lmax, nmax = hypers["max_angular"], hypers["max_radial"]
    integral = dict(cutoff=cutoff, density_width=hypers["density_width"], max_radial=nmax,
                    max_angular=lmax)
    species = list(species)
    positions = frame.positions
    out = np.zeros((len(frame), n_lm(lmax), len(species), nmax + 1))
    if np.all(frame.pbc):
        cell = frame.cell.array
        heights = abs(np.linalg.det(cell)) / np.linalg.norm(np.cross(cell[[1, 2, 0]], cell[[2, 0, 1]]), axis=1)
        reach = np.ceil(cutoff / heights).astype(int) + 1
        shifts = np.array(list(np.ndindex(*(2 * reach + 1)))) - reach
    else:
        cell = np.zeros((3, 3))
        shifts = np.zeros((1, 3), dtype=int)
    for i in range(len(frame)):
        a_i = species.index(frame.numbers[i])
        values = radial_integral(np.array([0.0]), **integral)[0]
        out[i, 0, a_i] += center_atom_weight * values[0] / math.sqrt(4 * math.pi)
        for j in range(len(frame)):
            a = species.index(frame.numbers[j])
            for shift in shifts:
                if i == j and not shift.any():
                    continue
                vector = positions[j] - positions[i] + shift @ cell
                r = float(np.linalg.norm(vector))
                fc = _cutoff_function(r, cutoff, width)
                if fc == 0.0:
                    continue
                radial = radial_integral(np.array([r]), **integral)[0]
                harmonics = spherical_harmonics(vector[None], lmax)[0]
                for l in range(lmax + 1):
                    sl = slice(l * l, (l + 1) ** 2)
                    out[i, sl, a] += fc * harmonics[sl, None] * radial[l][None, :]
    return out


def _assert_brute_force(frame, species, **kwargs):
    hypers = dict(HYPERS, **kwargs)
    weight = hypers.pop("center_atom_weight", 1.0)
    dense = SphericalExpansion(species=species, center_atom_weight=weight, **hypers)
    values = dense.compute_dense(frame).values
    reference = _brute_force(frame, species, center_atom_weight=weight, **hypers)
    np.testing.assert_allclose(values, reference, rtol=0, atol=BRUTE_FORCE_TOLERANCE)
    return values


def test_single_atom_molecule():
    frame = ase.Atoms("C", positions=[[1.0, -2.0, 0.5]])
    values = _assert_brute_force(frame, [6])
    assert np.all(values[:, 1:] == 0.0)
    assert np.any(values[0, 0, 0] != 0)
    pairs = PairExpansion(**HYPERS).compute_dense(frame)
    assert pairs.values.shape[0] == 1
    assert pairs.first_atom[0] == pairs.second_atom[0] == 0
    np.testing.assert_array_equal(pairs.values[0], values[0, :, 0])


def test_single_atom_zero_center_weight():
    frame = ase.Atoms("O", positions=[[0.0, 0.0, 0.0]])
    calc = SphericalExpansion(center_atom_weight=0.0, **HYPERS)
    assert np.all(calc.compute_dense(frame).values == 0.0)
    assert np.all(PairExpansion(center_atom_weight=0.0, **HYPERS).compute_dense(frame).values == 0)


@pytest.mark.parametrize("side", [1.3, 2.5, 3.9])
def test_single_atom_in_small_periodic_cell(side):
    # every neighbour is a periodic image of the atom itself (cell smaller than the cutoff)
    frame = ase.Atoms("Si", positions=[[0.2, 0.1, 0.0]],
                      cell=[[side, 0, 0], [0.3, side, 0], [0.1, -0.2, side]], pbc=True)
    values = _assert_brute_force(frame, [14])
    pairs = PairExpansion(**HYPERS).compute_dense(frame)
    assert np.all(pairs.first_atom == 0) and np.all(pairs.second_atom == 0)
    np.testing.assert_allclose(pairs.values.sum(axis=0), values[0, :, 0], rtol=0, atol=1e-13)


def test_atom_exactly_at_cutoff():
    cutoff = HYPERS["cutoff"]
    frame = ase.Atoms("CO", positions=[[0.0, 0.0, 0.0], [cutoff, 0.0, 0.0]])
    pair = SphericalExpansion(**HYPERS).compute_dense(frame).values
    alone_c = SphericalExpansion(species=[6, 8], **HYPERS).compute_dense(frame[:1]).values
    alone_o = SphericalExpansion(species=[6, 8], **HYPERS).compute_dense(frame[1:]).values
    np.testing.assert_array_equal(pair[0], alone_c[0])
    np.testing.assert_array_equal(pair[1], alone_o[0])
    pairs = PairExpansion(**HYPERS).compute_dense(frame)
    assert pairs.values.shape[0] == 2  # only the self pairs


def test_atom_in_the_smoothing_region():
    cutoff, width = HYPERS["cutoff"], HYPERS["cutoff_width"]
    for r in (cutoff - 1e-9, cutoff - 0.5 * width, cutoff - width):
        frame = ase.Atoms("CO", positions=[[0.0, 0.0, 0.0], [0.0, r, 0.0]])
        _assert_brute_force(frame, [6, 8])


def test_atom_at_cutoff_in_periodic_cell():
    # neighbours along x exactly at the cutoff (lattice vector == cutoff): no contribution
    cutoff = HYPERS["cutoff"]
    frame = ase.Atoms("C", positions=[[0.0, 0.0, 0.0]], cell=np.diag([cutoff, 10.0, 10.0]),
                      pbc=True)
    values = SphericalExpansion(**HYPERS).compute_dense(frame).values
    alone = SphericalExpansion(**HYPERS).compute_dense(ase.Atoms("C")).values
    np.testing.assert_array_equal(values, alone)


def test_max_angular_zero():
    frame = ase.build.molecule("CH3CH2OH")
    blocks = SphericalExpansion(**dict(HYPERS, max_angular=0)).compute(frame)
    assert set(blocks.keys.column("o3_lambda").tolist()) == {0}
    assert all(block.values.shape[1] == 1 for block in blocks.blocks)
    _assert_brute_force(frame, [1, 6, 8], max_angular=0)
    pairs = PairExpansion(**dict(HYPERS, max_angular=0)).compute_dense(frame)
    assert pairs.values.shape[1:] == (1, 5)


def test_max_radial_zero():
    frame = ase.build.molecule("H2O")
    blocks = SphericalExpansion(**dict(HYPERS, max_radial=0)).compute(frame)
    assert all(block.values.shape[2] == 1 for block in blocks.blocks)
    _assert_brute_force(frame, [1, 8], max_radial=0)


def test_both_zero():
    frame = ase.build.molecule("NH3")
    _assert_brute_force(frame, [1, 7], max_radial=0, max_angular=0)


def test_cutoff_width_equal_to_cutoff():
    frame = ase.build.molecule("CH4")
    _assert_brute_force(frame, [1, 6], cutoff_width=HYPERS["cutoff"])


def test_isolated_atoms_far_apart():
    frame = ase.Atoms("HH", positions=[[0.0, 0.0, 0.0], [0.0, 0.0, 30.0]])
    values = SphericalExpansion(**HYPERS).compute_dense(frame).values
    np.testing.assert_array_equal(values[0], values[1])
    assert np.all(values[:, 1:] == 0.0)


def test_absent_species_give_empty_blocks():
    calc = SphericalExpansion(species=[1, 6, 8, 26], **HYPERS)
    blocks = calc.compute(ase.build.molecule("H2O"))
    empty = blocks.block(o3_lambda=2, center_type=26, neighbor_type=1)
    assert empty.values.shape == (0, 5, 5)
    assert np.all(blocks.block(o3_lambda=0, center_type=8, neighbor_type=26).values == 0)
    pair_blocks = PairExpansion(species=[1, 8, 26], **HYPERS).compute(ase.build.molecule("H2O"))
    assert pair_blocks.block(o3_lambda=1, first_atom_type=26, second_atom_type=8).values.shape == (0, 3, 5)


def test_tuple_of_frames_and_single_atom_frames():
    frames = (ase.Atoms("H"), ase.build.molecule("H2O"), ase.Atoms("O", positions=[[1, 1, 1]]))
    values = SphericalExpansion(**HYPERS).compute_dense(frames).values
    assert values.shape[0] == 5
    lone_h = SphericalExpansion(species=[1, 8], **HYPERS).compute_dense(ase.Atoms("H")).values
    np.testing.assert_array_equal(values[0], lone_h[0])
    assert np.all(values[0, :, 1] == 0) and np.all(values[4, :, 0] == 0)


def test_large_cutoff_small_cell_matches_featomic():
    featomic = pytest.importorskip("featomic")
    frame = ase.Atoms("CO", positions=[[0, 0, 0], [0.9, 0.3, 0.6]],
                      cell=[[2.0, 0.0, 0.0], [0.4, 1.9, 0.0], [0.2, 0.3, 2.1]], pbc=True)
    hypers = dict(cutoff=7.0, cutoff_width=1.5, density_width=0.5, max_radial=5, max_angular=4)
    fe = featomic.SphericalExpansion(
        cutoff={"radius": 7.0, "smoothing": {"type": "ShiftedCosine", "width": 1.5}},
        density={"type": "Gaussian", "width": 0.5},
        basis={"type": "TensorProduct", "max_angular": 4, "radial": {"type": "Gto", "max_radial": 5},
               "spline_accuracy": None},
    ).compute(frame)
    ours = SphericalExpansion(**hypers).compute(frame)
    scale = max(np.abs(b.values).max() for b in fe.blocks())
    for index, key in enumerate(fe.keys):
        block = fe.block(index)
        mine = ours.block(**{n: int(v) for n, v in zip(key.names, key.values, strict=True)})
        np.testing.assert_allclose(mine.values, block.values, rtol=0, atol=1e-8 * scale)
