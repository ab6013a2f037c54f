"""Tests of the neighbour density expansion (ncsym.density, ncsym.kernels.density).

Agreement with featomic 0.6 (exact, unsplined radial integrals on featomic's side) on a
periodic water box, bulk silicon in its primitive cell (smaller than the cutoff) and an
ethanol molecule; the pair expansion summing to the atom-centred one; layouts; and
hypothesis checks of rotations (with Wigner matrices fitted on ncsym's own harmonics),
inversion, translations, permutations and periodic images.
"""

import ase
import ase.build
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ncsym import BlockMap, PairExpansion, SphericalExpansion
from ncsym.conventions import n_lm
from ncsym.density import DenseExpansion, DensePairExpansion
from ncsym.neighbors import neighbor_list
from ncsym.sph import spherical_harmonics
from ncsym.testing import strategies as nst

#: Largest difference to featomic, relative to the largest coefficient of the structure.
FEATOMIC_TOLERANCE = 1e-8
#: Sum over neighbours of g_ij vs the atom-centred expansion, relative.
PAIR_SUM_TOLERANCE = 1e-13
#: Rotations, inversion, translations, images: relative to the largest coefficient.
SYMMETRY_TOLERANCE = 1e-12

SPECIES = (1, 6, 8)
HYPERS = dict(cutoff=4.0, cutoff_width=0.5, density_width=0.3, max_radial=6, max_angular=6)
SMALL_HYPERS = dict(cutoff=3.5, cutoff_width=0.6, density_width=0.35, max_radial=3,
                    max_angular=4, species=SPECIES)


# ----------------------------------------------------------------------------- structures
def _water_box():
    """Eight randomly oriented water molecules on a 2x2x2 grid of a 6.2 A periodic box."""
    rng = np.random.default_rng(1234)
    water = ase.build.molecule("H2O")
    water.positions -= water.positions[0]
    frames = []
    for corner in np.ndindex(2, 2, 2):
        q = rng.normal(size=4)
        q /= np.linalg.norm(q)
        w, x, y, z = q
        rotation = np.array([
            [1 - 2 * (y * y + z * z), 2 * (x * y - z * w), 2 * (x * z + y * w)],
            [2 * (x * y + z * w), 1 - 2 * (x * x + z * z), 2 * (y * z - x * w)],
            [2 * (x * z - y * w), 2 * (y * z + x * w), 1 - 2 * (x * x + y * y)],
        ])
        molecule = water.copy()
        molecule.positions = molecule.positions @ rotation.T + 3.1 * np.array(corner) + 0.8
        frames.append(molecule)
    box = frames[0]
    for molecule in frames[1:]:
        box += molecule
    box.cell = np.diag([6.2, 6.2, 6.2])
    box.pbc = True
    return box


STRUCTURES = {
    "water_box": _water_box,
    "silicon": lambda: ase.build.bulk("Si", "diamond", 5.43),
    "ethanol": lambda: ase.build.molecule("CH3CH2OH"),
}


def _featomic_hypers(hypers, center_atom_weight=1.0):
    return {
        "cutoff": {
            "radius": hypers["cutoff"],
            "smoothing": {"type": "ShiftedCosine", "width": hypers["cutoff_width"]},
        },
        "density": {
            "type": "Gaussian",
            "width": hypers["density_width"],
            "center_atom_weight": center_atom_weight,
        },
        "basis": {
            "type": "TensorProduct",
            "max_angular": hypers["max_angular"],
            "radial": {"type": "Gto", "max_radial": hypers["max_radial"]},
            "spline_accuracy": None,
        },
    }


def _compare_with_featomic(reference, ours: BlockMap, is_pair: bool,
                           tolerance: float = FEATOMIC_TOLERANCE):
    """Every featomic sample must be in ours with the same values; our extra samples are 0."""
    scale = max(np.abs(block.values).max() for block in reference.blocks() if block.values.size)
    worst = 0.0
    for index, key in enumerate(reference.keys):
        block = reference.block(index)
        mine = ours.block(**dict(zip(key.names, (int(v) for v in key.values), strict=True)))
        assert block.samples.names == list(mine.samples.names)
        positions = [mine.samples.position(tuple(s)) for s in block.samples.values.tolist()]
        assert None not in positions
        diff = np.abs(mine.values[positions] - block.values).max() if positions else 0.0
        worst = max(worst, diff / scale)
        extra = np.setdiff1d(np.arange(len(mine.samples)), positions)
        if extra.size:
            assert np.all(mine.values[extra] == 0.0)
            if is_pair:
                # featomic drops the self pairs (zero for l > 0) from l > 0 blocks
                samples = mine.samples.values[extra]
                assert key.values[0] > 0
                assert np.all(samples[:, 1] == samples[:, 2]) and np.all(samples[:, 3:] == 0)
    assert worst <= tolerance, worst


@pytest.mark.parametrize("name", sorted(STRUCTURES))
@pytest.mark.parametrize("center_atom_weight", [1.0, 0.6])
def test_matches_featomic_spherical_expansion(name, center_atom_weight):
    featomic = pytest.importorskip("featomic")
    frame = STRUCTURES[name]()
    reference = featomic.SphericalExpansion(**_featomic_hypers(HYPERS, center_atom_weight))
    ours = SphericalExpansion(center_atom_weight=center_atom_weight, **HYPERS)
    _compare_with_featomic(reference.compute(frame), ours.compute(frame), is_pair=False)


@pytest.mark.parametrize("name", sorted(STRUCTURES))
def test_matches_featomic_by_pair(name):
    featomic = pytest.importorskip("featomic")
    frame = STRUCTURES[name]()
    hypers = dict(HYPERS, max_angular=4)
    reference = featomic.SphericalExpansionByPair(**_featomic_hypers(hypers, 0.8))
    ours = PairExpansion(center_atom_weight=0.8, **hypers)
    _compare_with_featomic(reference.compute(frame), ours.compute(frame), is_pair=True)


def test_matches_featomic_several_frames_large_cutoff():
    featomic = pytest.importorskip("featomic")
    frames = [STRUCTURES[name]() for name in sorted(STRUCTURES)]
    hypers = dict(cutoff=5.5, cutoff_width=1.0, density_width=0.45, max_radial=8, max_angular=5)
    reference = featomic.SphericalExpansion(**_featomic_hypers(hypers)).compute(frames)
    _compare_with_featomic(reference, SphericalExpansion(**hypers).compute(frames), False)


def test_matches_featomic_with_default_splines():
    featomic = pytest.importorskip("featomic")
    frame = STRUCTURES["water_box"]()
    fe_hypers = _featomic_hypers(HYPERS)
    del fe_hypers["basis"]["spline_accuracy"]  # featomic's default: splines at 1e-8 too
    reference = featomic.SphericalExpansion(**fe_hypers).compute(frame)
    ours = SphericalExpansion(**HYPERS)
    # both sides interpolate I_nl(r) within `spline_accuracy`; a centre sums those errors over
    # its neighbours, each weighted by |f_c Y_lm| <= sqrt((2 l + 1) / (4 pi))
    neighbors = np.bincount(neighbor_list(frame, HYPERS["cutoff"]).first_atom).max()
    max_y = np.sqrt((2 * HYPERS["max_angular"] + 1) / (4 * np.pi))
    scale = max(np.abs(b.values).max() for b in reference.blocks() if b.values.size)
    bound = 2 * ours.spline_accuracy * neighbors * max_y / scale
    _compare_with_featomic(reference, ours.compute(frame), False, tolerance=bound)


try:
    import featomic as _featomic  # noqa: F401

    HAS_FEATOMIC = True
except ImportError:  # pragma: no cover - depends on environment
    HAS_FEATOMIC = False


@pytest.mark.skipif(not HAS_FEATOMIC, reason="featomic is not installed")
@settings(deadline=None, max_examples=12)
@given(frame=st.one_of(nst.molecules(max_atoms=6), nst.periodic_cells(max_atoms=4)),
       hypers=nst.hyperparameters(max_angular=(0, 5)), weight=st.floats(0.0, 2.0))
def test_random_structures_match_featomic(frame, hypers, weight):
    import featomic

    reference = featomic.SphericalExpansion(**_featomic_hypers(hypers, weight)).compute(frame)
    ours = SphericalExpansion(center_atom_weight=weight, **hypers).compute(frame)
    if any(block.values.size and np.abs(block.values).max() > 0 for block in reference.blocks()):
        _compare_with_featomic(reference, ours, is_pair=False)


@pytest.mark.slow
@pytest.mark.parametrize("lmax", [8, 12])
def test_matches_featomic_large_systems(lmax):
    featomic = pytest.importorskip("featomic")
    frames = [ase.build.bulk("Si", "diamond", 5.43, cubic=True) * (3, 3, 3), _water_box() * (2, 2, 2)]
    # max_radial 8: at 10 featomic's own radial integrals drift ~1e-8 (relative) from an
    # adaptive quadrature at l >= 9, where ncsym's agree with it to ~3e-13 (test_radial.py)
    hypers = dict(cutoff=5.0, cutoff_width=0.8, density_width=0.4, max_radial=8, max_angular=lmax)
    # ~100 neighbours per centre: the default 1e-8 spline error per pair can add up beyond
    # 1e-8 of the largest coefficient, so tighten ours (featomic's side is exact)
    spline = dict(spline_accuracy=1e-10)
    for calculator, reference_class, is_pair in (
        (SphericalExpansion, featomic.SphericalExpansion, False),
        (PairExpansion, featomic.SphericalExpansionByPair, True),
    ):
        reference = reference_class(**_featomic_hypers(hypers)).compute(frames)
        _compare_with_featomic(reference, calculator(**hypers, **spline).compute(frames), is_pair)


# ----------------------------------------------------------------------------- layout
def test_pair_reversal_parity():
    # g_ji is the expansion of r_ji = -r_ij: (-1)^l g_ij
    frame = _water_box()
    dense = PairExpansion(**HYPERS).compute_dense(frame)
    index = {
        (i, j, *shift): p
        for p, (i, j, shift) in enumerate(
            zip(dense.first_atom.tolist(), dense.second_atom.tolist(), dense.cell_shift.tolist(),
                strict=True)
        )
    }
    reverse = np.array([
        index[(j, i, *(-np.array(shift)).tolist())]
        for i, j, shift in zip(dense.first_atom.tolist(), dense.second_atom.tolist(),
                               dense.cell_shift.tolist(), strict=True)
    ])
    lmax = HYPERS["max_angular"]
    sign = np.array([(-1.0) ** l for l in range(lmax + 1) for _ in range(2 * l + 1)])
    scale = np.abs(dense.values).max()
    np.testing.assert_allclose(dense.values[reverse], dense.values * sign[None, :, None], rtol=0,
                               atol=SYMMETRY_TOLERANCE * scale)


def test_pair_sum_gives_spherical_expansion():
    frames = [STRUCTURES[name]() for name in sorted(STRUCTURES)]
    dense = SphericalExpansion(**HYPERS).compute_dense(frames)
    pairs = PairExpansion(**HYPERS).compute_dense(frames)
    n_atoms = dense.values.shape[0]
    frame_start = np.concatenate([[0], np.cumsum([len(f) for f in frames])])
    centre = frame_start[pairs.system] + pairs.first_atom
    species_index = np.searchsorted(dense.species, pairs.second_type)
    summed = np.zeros_like(dense.values)
    np.add.at(summed, (centre, slice(None), species_index), pairs.values)
    scale = np.abs(dense.values).max()
    assert summed.shape[0] == n_atoms
    np.testing.assert_allclose(summed, dense.values, rtol=0, atol=PAIR_SUM_TOLERANCE * scale)


def test_dense_layout():
    frames = [ase.build.molecule("H2O"), ase.build.bulk("Si", "diamond", 5.43)]
    calc = SphericalExpansion(species=[1, 8, 14], **HYPERS)
    dense = calc.compute_dense(frames)
    assert isinstance(dense, DenseExpansion)
    assert dense.values.shape == (5, n_lm(6), 3, 7)
    assert dense.values.dtype == np.float64
    np.testing.assert_array_equal(dense.system, [0, 0, 0, 1, 1])
    np.testing.assert_array_equal(dense.atom, [0, 1, 2, 0, 1])
    np.testing.assert_array_equal(dense.center_type, [8, 1, 1, 14, 14])
    np.testing.assert_array_equal(dense.species, [1, 8, 14])
    # no cross-frame density: water sees no Si, silicon sees no H or O
    assert np.all(dense.values[:3, :, 2] == 0) and np.all(dense.values[3:, :, :2] == 0)


def test_dense_pair_layout():
    frames = [ase.build.molecule("H2O"), ase.build.bulk("Si", "diamond", 5.43)]
    pairs = PairExpansion(**HYPERS).compute_dense(frames)
    assert isinstance(pairs, DensePairExpansion)
    n = pairs.values.shape[0]
    assert pairs.values.shape == (n, n_lm(6), 7)
    assert pairs.cell_shift.shape == (n, 3) and pairs.vectors.shape == (n, 3)
    rows = list(zip(pairs.system, pairs.first_atom, pairs.second_atom, *pairs.cell_shift.T,
                    strict=True))
    assert rows == sorted(rows)
    atoms = frames[1]
    si = pairs.system == 1
    expected = (atoms.positions[pairs.second_atom[si]] - atoms.positions[pairs.first_atom[si]]
                + pairs.cell_shift[si] @ atoms.cell.array)
    np.testing.assert_allclose(pairs.vectors[si], expected, rtol=0, atol=1e-12)
    np.testing.assert_array_equal(pairs.first_type[~si], np.array([8, 1, 1])[pairs.first_atom[~si]])
    np.testing.assert_array_equal(pairs.second_type[si], 14)


def test_blocks_layout_and_values():
    frames = [ase.build.molecule("H2O"), ase.build.molecule("CH4")]
    calc = SphericalExpansion(**HYPERS)
    blocks = calc.compute(frames)
    dense = calc.compute_dense(frames)
    assert blocks.keys.names == ("o3_lambda", "o3_sigma", "center_type", "neighbor_type")
    assert len(blocks) == 7 * 3 * 3
    assert np.all(blocks.keys.column("o3_sigma") == 1)
    block = blocks.block(o3_lambda=2, center_type=1, neighbor_type=8)
    assert block.samples.names == ("system", "atom")
    assert block.properties.names == ("n",)
    rows = np.nonzero(dense.center_type == 1)[0]
    np.testing.assert_array_equal(block.samples.values, np.stack([dense.system[rows], dense.atom[rows]], 1))
    np.testing.assert_array_equal(block.values, dense.values[rows, 4:9, 2, :])
    assert blocks.info["hypers"]["species"] == [1, 6, 8]


def test_neighbors_to_properties():
    frames = [ase.build.molecule("CH3CH2OH")]
    split = SphericalExpansion(**HYPERS).compute(frames)
    merged = SphericalExpansion(neighbors_to_properties=True, **HYPERS).compute(frames)
    assert merged.keys.names == ("o3_lambda", "o3_sigma", "center_type")
    assert len(merged) == 7 * 3
    block = merged.block(o3_lambda=3, center_type=6)
    assert block.properties.names == ("neighbor_type", "n")
    assert block.values.shape[2] == 3 * 7
    for a, neighbor in enumerate((1, 6, 8)):
        part = split.block(o3_lambda=3, center_type=6, neighbor_type=neighbor)
        np.testing.assert_array_equal(block.values[:, :, 7 * a:7 * (a + 1)], part.values)
        np.testing.assert_array_equal(block.properties.values[7 * a:7 * (a + 1), 0], neighbor)


def test_pair_factors_reproduce_the_expansion_bit_for_bit():
    """The pair features' separable factors give exactly the values of compute_dense."""
    from ncsym.pairs import _pair_values

    frames = [ase.build.molecule("CH3CH2OH"), ase.build.bulk("Si", "diamond", 5.43)]
    calc = PairExpansion(**HYPERS, center_atom_weight=0.7)
    dense = calc.compute_dense(frames)
    factors = calc._compute_factors(frames)
    assert factors.values is None and dense.angular is None
    np.testing.assert_array_equal(factors.vectors, dense.vectors)
    np.testing.assert_array_equal(factors.first_atom, dense.first_atom)
    assert factors.angular.shape == (len(dense.vectors), n_lm(6))
    assert factors.radial.shape == (len(dense.vectors), 7, 7)
    np.testing.assert_array_equal(_pair_values(factors.angular, factors.radial), dense.values)


def test_pair_blocks_layout():
    frame = ase.build.molecule("CH3CH2OH")
    calc = PairExpansion(**HYPERS)
    blocks = calc.compute(frame)
    dense = calc.compute_dense(frame)
    assert blocks.keys.names == ("o3_lambda", "o3_sigma", "first_atom_type", "second_atom_type")
    assert len(blocks) == 7 * 9
    total = 0
    for key, block in blocks.items():
        if key["o3_lambda"] != 0:
            continue
        total += len(block.samples)
        assert block.samples.names == ("system", "first_atom", "second_atom", "cell_shift_a",
                                       "cell_shift_b", "cell_shift_c")
        rows = block.samples.values
        assert [tuple(r) for r in rows] == sorted(tuple(r) for r in rows)
    assert total == dense.values.shape[0]


@pytest.mark.parametrize("calculator", [SphericalExpansion, PairExpansion])
def test_compute_metadata_matches_compute(calculator):
    frames = [_water_box(), ase.build.molecule("CH3CH2OH")]
    calc = calculator(**HYPERS)
    full = calc.compute(frames)
    meta = calc.compute_metadata(frames)
    assert meta.keys == full.keys
    assert meta.info == full.info
    for (_, a), (_, b) in zip(full.items(), meta.items(), strict=True):
        assert a.samples == b.samples and a.properties == b.properties
        assert a.values.shape == b.values.shape
        assert not b.values.flags.writeable and np.all(b.values == 0)


def test_fixed_species_gives_stable_keys():
    calc = SphericalExpansion(species=[1, 6, 8], **HYPERS)
    water = calc.compute(ase.build.molecule("H2O"))
    methane = calc.compute(ase.build.molecule("CH4"))
    assert water.keys == methane.keys
    assert len(water.block(o3_lambda=0, center_type=6, neighbor_type=1).samples) == 0
    default = SphericalExpansion(**HYPERS).compute(ase.build.molecule("H2O"))
    assert set(default.keys.column("center_type").tolist()) == {1, 8}


def test_save_load_and_metatensor(tmp_path):
    blocks = SphericalExpansion(**dict(HYPERS, max_angular=2)).compute(_water_box())
    path = tmp_path / "expansion.npz"
    blocks.save(path)
    loaded = BlockMap.load(path)
    assert loaded.keys == blocks.keys and loaded.info == blocks.info
    for (_, a), (_, b) in zip(blocks.items(), loaded.items(), strict=True):
        np.testing.assert_array_equal(a.values, b.values)
    pytest.importorskip("metatensor")
    tensor = blocks.to_metatensor()
    assert len(tensor.keys) == len(blocks)
    np.testing.assert_array_equal(tensor.block(3).values, blocks.blocks[3].values)


@pytest.mark.parametrize("calculator", [SphericalExpansion, PairExpansion])
def test_parallel_and_serial_paths_agree(calculator, monkeypatch):
    import numba

    import ncsym.density
    import ncsym.neighbors

    frames = [_water_box(), ase.build.bulk("Si", "diamond", 5.43), ase.build.molecule("CH4")]
    calc = calculator(**HYPERS)
    threads = numba.get_num_threads()
    try:
        numba.set_num_threads(1)
        serial = calc.compute_dense(frames)
    finally:
        numba.set_num_threads(threads)
    # force the parallel kernels even for this small input
    monkeypatch.setattr(ncsym.density, "PARALLEL_MIN_WORK", 0)
    monkeypatch.setattr(ncsym.neighbors, "PARALLEL_MIN_ATOMS", 0)
    parallel = calc.compute_dense(frames)
    # one thread owns each centre (or pair): the same operations in the same order
    assert np.array_equal(parallel.values, serial.values)
    assert np.array_equal(parallel.system, serial.system)


# ----------------------------------------------------------------------------- symmetries
def _fitted_wigner(rotation, lmax):
    """Least-squares D_l with Y(R r) = D_l Y(r), from ncsym's own harmonics."""
    rng = np.random.default_rng(99)
    points = rng.normal(size=(4 * n_lm(lmax), 3))
    y = spherical_harmonics(points, lmax)
    y_rot = spherical_harmonics(points @ rotation.T, lmax)
    blocks = []
    for l in range(lmax + 1):
        sl = slice(l * l, (l + 1) ** 2)
        d_t, *_ = np.linalg.lstsq(y[:, sl], y_rot[:, sl], rcond=None)
        blocks.append(d_t.T)
    return blocks


def _rotate_values(values, wigner):
    """Apply D_l on axis 1 (the flattened (l, m) axis)."""
    out = np.empty_like(values)
    for l, d in enumerate(wigner):
        sl = slice(l * l, (l + 1) ** 2)
        out[:, sl] = np.einsum("mk,ik...->im...", d, values[:, sl])
    return out


def _transformed(frame, rotation=None, translation=None):
    out = frame.copy()
    if rotation is not None:
        out.positions = frame.positions @ rotation.T
        if np.all(frame.pbc):
            out.set_cell(frame.cell.array @ rotation.T, scale_atoms=False)
    if translation is not None:
        out.positions = out.positions + translation
    return out


def _assert_close(actual, expected):
    scale = max(1.0, np.abs(expected).max())
    np.testing.assert_allclose(actual, expected, rtol=0, atol=SYMMETRY_TOLERANCE * scale)


STRUCTURE_STRATEGY = st.one_of(
    nst.molecules(species=SPECIES, max_atoms=6),
    nst.periodic_cells(species=SPECIES, max_atoms=4),
)


@settings(deadline=None, max_examples=15)
@given(frame=STRUCTURE_STRATEGY, rotation=nst.rotations(improper=None))
def test_rotation_equivariance(frame, rotation):
    wigner = _fitted_wigner(rotation, SMALL_HYPERS["max_angular"])
    rotated = _transformed(frame, rotation=rotation)
    centre = SphericalExpansion(**SMALL_HYPERS)
    _assert_close(centre.compute_dense(rotated).values,
                  _rotate_values(centre.compute_dense(frame).values, wigner))
    pairs = PairExpansion(**SMALL_HYPERS)
    before = pairs.compute_dense(frame)
    after = pairs.compute_dense(rotated)
    # a pair exactly at the cutoff (e.g. a lattice vector as long as the cutoff) is in or out
    # of the list by round-off, which the rotation changes; its weight, hence its values, are
    # zero either way
    key_before = {_pair_key(before, p): p for p in range(len(before.vectors))}
    key_after = {_pair_key(after, p): p for p in range(len(after.vectors))}
    common = sorted(set(key_before) & set(key_after))
    for key in set(key_before) ^ set(key_after):
        pair = before if key in key_before else after
        row = (key_before if key in key_before else key_after)[key]
        assert abs(np.linalg.norm(pair.vectors[row]) - SMALL_HYPERS["cutoff"]) < 1e-9
        assert np.all(pair.values[row] == 0.0)
    rows_before = [key_before[k] for k in common]
    rows_after = [key_after[k] for k in common]
    _assert_close(after.values[rows_after], _rotate_values(before.values[rows_before], wigner))


def _pair_key(dense, p):
    return (int(dense.system[p]), int(dense.first_atom[p]), int(dense.second_atom[p]), *map(int, dense.cell_shift[p]))


@settings(deadline=None, max_examples=10)
@given(frame=STRUCTURE_STRATEGY)
def test_inversion_flips_odd_l(frame):
    calc = SphericalExpansion(**SMALL_HYPERS)
    values = calc.compute_dense(frame).values
    inverted = calc.compute_dense(_transformed(frame, rotation=-np.eye(3))).values
    lmax = SMALL_HYPERS["max_angular"]
    sign = np.array([(-1.0) ** l for l in range(lmax + 1) for _ in range(2 * l + 1)])
    _assert_close(inverted, values * sign[None, :, None, None])


@settings(deadline=None, max_examples=10)
@given(
    frame=STRUCTURE_STRATEGY,
    translation=st.lists(st.floats(-20.0, 20.0), min_size=3, max_size=3).map(np.array),
)
def test_translation_invariance(frame, translation):
    calc = SphericalExpansion(**SMALL_HYPERS)
    _assert_close(calc.compute_dense(_transformed(frame, translation=translation)).values,
                  calc.compute_dense(frame).values)


@settings(deadline=None, max_examples=10)
@given(frame=STRUCTURE_STRATEGY, data=st.data())
def test_permutation(frame, data):
    permutation = data.draw(nst.atom_permutations(len(frame)))
    calc = SphericalExpansion(**SMALL_HYPERS)
    values = calc.compute_dense(frame).values
    permuted = calc.compute_dense(frame[permutation])
    _assert_close(permuted.values, values[permutation])
    np.testing.assert_array_equal(permuted.center_type, frame.numbers[permutation])


@settings(deadline=None, max_examples=10)
@given(frame=nst.periodic_cells(species=SPECIES, max_atoms=4), data=st.data())
def test_periodic_images(frame, data):
    shifts = np.array(data.draw(st.lists(
        st.lists(st.integers(-3, 3), min_size=3, max_size=3),
        min_size=len(frame), max_size=len(frame),
    )))
    calc = SphericalExpansion(**SMALL_HYPERS)
    values = calc.compute_dense(frame).values
    moved = frame.copy()
    moved.positions = frame.positions + shifts @ frame.cell.array
    _assert_close(calc.compute_dense(moved).values, values)
    wrapped = frame.copy()
    wrapped.wrap()
    _assert_close(calc.compute_dense(wrapped).values, values)
    # pair expansions: the same pairs up to relabelled shifts, so the per-centre sums agree
    pairs = PairExpansion(**SMALL_HYPERS)
    for variant in (moved, wrapped):
        sums = []
        for structure in (frame, variant):
            dense = pairs.compute_dense(structure)
            total = np.zeros((len(frame),) + dense.values.shape[1:])
            np.add.at(total, dense.first_atom, dense.values)
            sums.append(total)
        _assert_close(sums[1], sums[0])


@settings(deadline=None, max_examples=8)
@given(frame=nst.periodic_cells(species=SPECIES, max_atoms=3), axis=st.sampled_from([0, 1, 2]))
def test_supercell(frame, axis):
    repeat = [1, 1, 1]
    repeat[axis] = 2
    calc = SphericalExpansion(**SMALL_HYPERS)
    values = calc.compute_dense(frame).values
    supercell = calc.compute_dense(frame * repeat).values
    n = len(frame)
    _assert_close(supercell[:n], values)
    _assert_close(supercell[n:], values)
