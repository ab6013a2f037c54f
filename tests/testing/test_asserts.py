"""Tests for the ncsym.testing asserts: correct descriptors pass, broken ones are caught.

Following e3nn's ``tests/util/test_test.py``, the kit is tested on deliberately broken
descriptors (tests/testing/_descriptors.py), each violating one rule: the check for that rule
must fail clearly and every other check must still pass.
"""

import re

import _descriptors as desc
import ase
import numpy as np
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from ncsym.blocks import Block, BlockMap, Labels
from ncsym.rotations import random_rotation
from ncsym.testing import (
    DEFAULT_RTOL,
    ArrayLayout,
    DescriptorError,
    EquivarianceError,
    assert_equivariant,
    assert_inversion_parity,
    assert_periodic_invariant,
    assert_permutation_equivariant,
    assert_rotation_equivariant,
    assert_translation_invariant,
    equivariance_error,
)
from ncsym.testing import strategies as nst

#: A broken rule shows up as an O(1) relative error; anything above this counts as caught.
CAUGHT = 1e-3


def molecule():
    positions = [
        [0.0, 0.0, 0.1],
        [1.2, 0.1, -0.2],
        [-0.4, 1.1, 0.3],
        [0.3, -0.5, 1.2],
        [1.5, 1.3, 0.9],
        [-1.1, -0.6, -0.7],
        [0.8, -1.4, -0.9],
    ]
    return ase.Atoms("CH3OHO", positions=positions)


def crystal():
    cell = [[3.4, 0.0, 0.0], [0.4, 3.2, 0.0], [-0.2, 0.3, 3.6]]
    positions = [[0.1, 0.0, 0.2], [1.2, 0.3, 0.2], [0.4, 1.6, 1.1], [2.0, 2.1, 2.3], [2.6, 1.1, 0.5]]
    return ase.Atoms("SiO2H2", positions=positions, cell=cell, pbc=True)


FRAMES = {"molecule": molecule, "crystal": crystal}


def _errors(descriptor, frame, **kwargs):
    return {name: float(r) for name, r in equivariance_error(descriptor, frame, **kwargs).items()}


# ---------------------------------------------------------------------- correct descriptors
DENSITY_LAYOUT = {f"l{l}": ArrayLayout(o3_lambda=l, m_axis=1, atom_axis=0) for l in range(4)}


@pytest.mark.parametrize("frame", sorted(FRAMES))
@pytest.mark.parametrize(
    "descriptor, layout",
    [
        (desc.density, None),
        (desc.pair_features, None),
        (desc.density_arrays, DENSITY_LAYOUT),
        (desc.density_flat, ArrayLayout(o3_lambda=[0, 1, 2, 3], m_axis=2, atom_axis=1)),
        (desc.invariants, ArrayLayout(o3_lambda=0, atom_axis=0)),
        (lambda f: desc.invariants(f).sum(axis=0), ArrayLayout(o3_lambda=0)),
        (lambda f: desc.density(f).to_metatensor(), None),
    ],
    ids=["blockmap", "pairs", "dict", "flat", "invariant", "global", "tensormap"],
)
def test_correct_descriptors_pass(descriptor, layout, frame, rng):
    seed = int(rng.integers(2**31))
    frame = FRAMES[frame]()
    results = assert_equivariant(descriptor, frame, layout=layout, seed=seed)
    expected = {"rotation", "inversion", "permutation", "translation"}
    assert set(results) == expected | ({"periodic"} if frame.pbc.any() else set())
    if frame.pbc.any():
        result = assert_periodic_invariant(descriptor, frame, layout=layout, supercell=True)
        assert result["supercell"].max_error <= DEFAULT_RTOL


def test_dense_pair_layout(rng):
    frame = molecule()

    def pair_vectors(f):
        delta = f.positions[None, :, :] - f.positions[:, None, :]
        return delta[..., [1, 2, 0]] * np.exp(-np.sum(delta**2, axis=-1))[..., None]

    layout = ArrayLayout(o3_lambda=1, m_axis=2, pair_axes=(0, 1))
    assert_equivariant(pair_vectors, frame, layout=layout, seed=int(rng.integers(2**31)))


@given(frame=nst.structures(species=[1, 8], max_atoms=4), rotation=nst.rotations(improper=None))
@example(frame=nst.atoms_on_axis(), rotation=nst.HALF_TURNS["z"])
@example(frame=nst.atoms_on_axis(), rotation=nst.INVERSION)
@example(frame=nst.single_atom(), rotation=nst.PINNED_ROTATIONS["tiny"])
@settings(suppress_health_check=[HealthCheck.filter_too_much, HealthCheck.too_slow])
def test_property_based_rotation(frame, rotation):
    assert_rotation_equivariant(desc.density, frame, rotation)
    assert_rotation_equivariant(desc.pair_features, frame, rotation)


@given(frame=nst.periodic_cells(species=[1, 8], max_atoms=3), data=st.data())
@settings(suppress_health_check=[HealthCheck.filter_too_much, HealthCheck.too_slow])
def test_property_based_permutation_and_shifts(frame, data):
    permutation = data.draw(nst.atom_permutations(len(frame)))
    shifts = data.draw(nst.lattice_shifts(len(frame)))
    for descriptor in (desc.density, desc.pair_features):
        assert_permutation_equivariant(descriptor, frame, permutation)
        assert_periodic_invariant(descriptor, frame, shifts)


def test_near_empty_blocks_use_the_norm_floor():
    # centrosymmetric chain: odd-lambda blocks of the centre atom cancel to rounding level
    frame = nst.atoms_on_axis((1.0, 2.0, 0.5))
    values, _ = desc.density_values(frame)
    assert np.max(np.abs(values[1][1])) < 1e-15 < np.max(np.abs(values[1]))
    assert_equivariant(desc.density, frame, seed=3)


# ---------------------------------------------------------------------- broken descriptors
BROKEN = [
    # descriptor, frame, the checks that must fail
    (desc.wrong_sigma, "molecule", {"inversion"}),
    (desc.unrotated_component, "molecule", {"rotation"}),
    (desc.wrong_m_order, "molecule", {"rotation"}),
    (desc.non_symmetrised_pairs, "molecule", {"permutation"}),
    (desc.translation_dependent, "molecule", {"translation"}),
    (desc.index_dependent, "molecule", {"permutation"}),
    (desc.ignores_periodic_images, "crystal", {"periodic", "supercell"}),
    (desc.size_normalised, "crystal", {"supercell"}),
]


@pytest.mark.parametrize(
    "descriptor, frame, failing", BROKEN, ids=[b[0].__name__ for b in BROKEN]
)
def test_broken_descriptors_are_caught(descriptor, frame, failing):
    frame = FRAMES[frame]()
    # a permutation that reverses the atom order swaps every pair
    permutation = np.arange(len(frame))[::-1]
    supercell = True if frame.pbc.any() else None
    errors = _errors(descriptor, frame, seed=11, permutation=permutation, supercell=supercell)
    for check, error in errors.items():
        if check in failing:
            assert error > CAUGHT, (check, error)
        else:
            assert error <= DEFAULT_RTOL, (check, error)
    with pytest.raises(EquivarianceError):
        assert_equivariant(descriptor, frame, permutation=permutation, supercell=supercell)


def test_failure_report_names_block_error_rotation_seed_and_structure():
    frame = molecule()
    with pytest.raises(EquivarianceError) as info:
        assert_rotation_equivariant(desc.wrong_m_order, frame, seed=1234)
    message = str(info.value)
    assert "rotation check failed for descriptor `wrong_m_order`" in message
    assert re.search(r"worst block \(o3_lambda=1, o3_sigma=1\) has relative error \d", message)
    assert "rotation = np.array([[" in message
    assert "seed=1234" in message
    assert "ase.Atoms(numbers=[6, 1, 1, 1, 8, 1, 8]"[:30] in message
    assert "pbc=[False, False, False]" in message
    # the failure carries the numbers, and the printed rotation reproduces it
    (result,) = info.value.results
    assert result.worst.o3_lambda == 1 and result.worst.o3_sigma == 1
    assert result.max_error > CAUGHT
    assert result.seed == 1234
    rotation = result.transform["rotation"]
    again = equivariance_error(desc.wrong_m_order, frame, checks="rotation", rotation=rotation)
    assert float(again["rotation"]) == result.max_error


def test_assert_equivariant_lists_every_failing_check():
    with pytest.raises(EquivarianceError) as info:
        assert_equivariant(desc.translation_dependent, molecule(), seed=5)
    assert [r.check for r in info.value.results] == ["translation"]
    with pytest.raises(EquivarianceError) as info:
        assert_equivariant(lambda f: desc.wrong_sigma(f), molecule(), rotation=-random_rotation(2))
    assert {r.check for r in info.value.results} == {"rotation", "inversion"}
    assert "(det -1)" in str(info.value)


def test_seed_reproduces_random_transformations():
    first = equivariance_error(desc.density, crystal(), seed=99)
    second = equivariance_error(desc.density, crystal(), seed=99)
    other = equivariance_error(desc.density, crystal(), seed=100)
    for check in ("rotation", "permutation", "translation", "periodic"):
        for name, value in first[check].transform.items():
            np.testing.assert_array_equal(value, second[check].transform[name])
    assert not np.array_equal(first["rotation"].transform["rotation"],
                              other["rotation"].transform["rotation"])
    # a single assert draws the same rotation as assert_equivariant with the same seed
    single = assert_rotation_equivariant(desc.density, crystal(), seed=99)
    np.testing.assert_array_equal(single.transform["rotation"], first["rotation"].transform["rotation"])


def test_equivariance_error_returns_numbers():
    results = equivariance_error(desc.density, molecule(), seed=0, checks=["rotation", "inversion"])
    assert set(results) == {"rotation", "inversion"}
    rotation = results["rotation"]
    assert isinstance(float(rotation), float)
    assert len(rotation.blocks) == desc.LMAX + 1
    assert rotation.passed()
    assert all(b.error <= DEFAULT_RTOL and b.norm > 0 for b in rotation.blocks)


def test_individual_asserts_pass_on_a_correct_descriptor():
    frame = crystal()
    assert assert_rotation_equivariant(desc.density, frame, random_rotation(4, improper=True)).passed()
    assert assert_inversion_parity(desc.density, frame).passed()
    assert assert_permutation_equivariant(desc.density, frame, [4, 2, 0, 1, 3]).passed()
    assert assert_translation_invariant(desc.density, frame, [0.3, -2.0, 7.5]).passed()
    shifts = np.array([[1, 0, 0], [0, -2, 1], [0, 0, 0], [1, 1, 1], [-1, 0, 3]])
    assert assert_periodic_invariant(desc.pair_features, frame, shifts).passed()


def test_tolerance_is_explicit():
    # a tiny deliberate error passes a loose tolerance and fails the default one
    def slightly_off(frame):
        result = desc.density(frame)
        result.blocks[1].values[:, 0, :] *= 1.0 + 1e-7 * (frame.positions[0, 0] > 0)
        return result

    rotation = np.diag([-1.0, -1.0, 1.0])
    frame = molecule()
    frame.positions[0, 0] = 0.5
    assert_rotation_equivariant(slightly_off, frame, rotation, rtol=1e-6)
    with pytest.raises(EquivarianceError, match="rtol=1.0e-10"):
        assert_rotation_equivariant(slightly_off, frame, rotation)


# ------------------------------------------------------------------ descriptor failures
@pytest.mark.parametrize(
    "descriptor, layout, match",
    [
        (desc.nan_for_two_atoms_or_more, None, "contains 1 NaN or infinite values"),
        (desc.raises_for_hydrogen, None, "raised RuntimeError: hydrogen is not supported"),
        (desc.wrong_lambda, None, r"expected \(n_samples, 5, n_properties\) for o3_lambda=2"),
        (desc.drops_last_atom, ArrayLayout(o3_lambda=1, m_axis=1, atom_axis=0),
         "should have one entry per atom"),
        (desc.drops_last_atom, ArrayLayout(o3_lambda=2, m_axis=1), r"should have size 5"),
        (lambda f: {"a": np.zeros(3)}, {"b": ArrayLayout(o3_lambda=0)}, "missing"),
        (lambda f: "not an output", ArrayLayout(o3_lambda=0), "must hold real numbers"),
    ],
    ids=["nan", "raises", "wrong-lambda", "atoms", "m-size", "dict-names", "dtype"],
)
def test_descriptor_failures_are_reported_with_the_structure(descriptor, layout, match):
    frame = molecule()
    with pytest.raises(DescriptorError, match=match) as info:
        assert_equivariant(descriptor, frame, layout=layout)
    message = str(info.value)
    assert "ase.Atoms(numbers=[6, 1, 1, 1, 8, 1, 8]" in message
    for word in ("positions=", "cell=", "pbc="):
        assert word in message
    assert info.value.frame is not None
    assert isinstance(info.value, AssertionError)


def test_descriptor_exception_is_chained():
    with pytest.raises(DescriptorError) as info:
        assert_equivariant(desc.raises_for_hydrogen, molecule())
    assert isinstance(info.value.__cause__, RuntimeError)
    assert info.value.check is None


def test_failure_on_transformed_structure_names_the_check():
    def fails_when_moved(frame):
        if frame.positions[0, 0] != 0.0:
            raise ValueError("moved")
        return desc.density(frame)

    with pytest.raises(DescriptorError, match="structure of the translation check") as info:
        assert_translation_invariant(fails_when_moved, molecule(), [1.0, 0.0, 0.0])
    assert info.value.check == "translation"


def test_hypothesis_shrinks_descriptor_failures_to_a_small_structure():
    found = []

    @given(frame=nst.molecules(species=[6, 8], max_atoms=5))
    @settings(max_examples=50, database=None, derandomize=True)
    def check(frame):
        try:
            assert_equivariant(desc.nan_for_two_atoms_or_more, frame, checks="rotation", seed=0)
        except DescriptorError as exc:
            found.append(exc)
            raise

    with pytest.raises(DescriptorError) as info:
        check()
    assert len(info.value.frame) == 2
    assert "ase.Atoms(numbers=[6, 6]" in str(info.value)
    assert found


# ------------------------------------------------------------------------- usage errors
def test_usage_errors():
    frame = molecule()
    with pytest.raises(TypeError, match="`layout=ArrayLayout"):
        assert_equivariant(desc.density_flat, frame)
    with pytest.raises(TypeError, match="`layout=\\{name: ArrayLayout"):
        assert_equivariant(desc.density_arrays, frame)
    with pytest.raises(TypeError, match="`descriptor` must be callable"):
        equivariance_error(desc.density(frame), frame)
    with pytest.raises(TypeError, match="`frame` must be an ase.Atoms"):
        equivariance_error(desc.density, frame.positions)
    with pytest.raises(ValueError, match="`permutation` must be a permutation of range"):
        assert_permutation_equivariant(desc.density, frame, [0, 0, 1, 2, 3, 4, 5])
    with pytest.raises(ValueError, match="needs a periodic `frame`"):
        assert_periodic_invariant(desc.density, frame)
    with pytest.raises(ValueError, match="unknown check 'reflection'"):
        equivariance_error(desc.density, frame, checks=["reflection"])
    with pytest.raises(ValueError, match="`rotation` must be an orthogonal matrix"):
        assert_rotation_equivariant(desc.density, frame, np.ones((3, 3)))
    with pytest.raises(ValueError, match="`rtol` must be finite and >= 0"):
        assert_equivariant(desc.density, frame, rtol=-1.0)
    with pytest.raises(TypeError, match="`seed` must be a non-negative integer"):
        assert_equivariant(desc.density, frame, seed=1.5)
    with pytest.raises(ValueError, match="`lattice_shifts` must be integers of shape"):
        assert_periodic_invariant(desc.density, crystal(), np.zeros((2, 3), dtype=int))
    bad_positions = molecule()
    bad_positions.positions[2, 1] = np.nan
    with pytest.raises(ValueError, match=r"positions contain NaN or infinite values for atoms \[2\]"):
        assert_equivariant(desc.density, bad_positions)


@pytest.mark.parametrize(
    "kwargs, error, match",
    [
        ({"o3_lambda": -1}, ValueError, "`o3_lambda` must be >= 0"),
        ({"o3_lambda": 1.5}, TypeError, "`o3_lambda` must be an integer"),
        ({"o3_lambda": 1, "o3_sigma": 0, "m_axis": 0}, ValueError, "`o3_sigma` must be"),
        ({"o3_lambda": [1, 2], "o3_sigma": [1, 1, 1], "m_axis": 0}, ValueError, "one per"),
        ({"o3_lambda": 2}, ValueError, "`m_axis` is required"),
        ({"o3_lambda": 0, "atom_axis": 0, "pair_axes": (1, 2)}, ValueError, "not both"),
        ({"o3_lambda": 0, "pair_axes": (1,)}, ValueError, "two axes"),
        ({"o3_lambda": 0, "atom_axis": 1.0}, TypeError, "`atom_axis` must be an integer"),
    ],
)
def test_array_layout_validation(kwargs, error, match):
    with pytest.raises(error, match=match):
        ArrayLayout(**kwargs)


# ------------------------------------------------------------------------------ featomic
@pytest.fixture(scope="module")
def featomic_hypers():
    pytest.importorskip("featomic")
    hypers = {"cutoff": 3.5, "cutoff_width": 0.5, "density_width": 0.3, "max_radial": 3,
              "max_angular": 3}
    return nst.featomic_hypers(hypers)


@pytest.mark.parametrize("frame", sorted(FRAMES))
@pytest.mark.parametrize("name", ["SphericalExpansion", "SphericalExpansionByPair",
                                  "SoapPowerSpectrum"])
def test_featomic_calculators(featomic_hypers, name, frame):
    import featomic

    calculator = getattr(featomic, name)(**featomic_hypers)
    frame = FRAMES[frame]()
    assert_equivariant(calculator.compute, frame, seed=17)
    if frame.pbc.any():
        assert_periodic_invariant(calculator.compute, frame, supercell=True, seed=17)


def test_featomic_equivariant_power_spectrum(featomic_hypers):
    import featomic

    clebsch_gordan = pytest.importorskip("featomic.clebsch_gordan")
    power_spectrum = clebsch_gordan.EquivariantPowerSpectrum(
        featomic.SphericalExpansion(**featomic_hypers)
    )

    def descriptor(frame):
        return power_spectrum.compute(frame, neighbors_to_properties=True)

    results = assert_equivariant(descriptor, crystal(), seed=23)
    assert results["rotation"].passed()
    # a mislabelled parity in a featomic output is caught too
    def flipped(frame):
        tensor = descriptor(frame)
        import metatensor

        keys = np.array(tensor.keys.values)
        odd = keys[:, 0] % 2 == 1
        keys[odd, 1] *= -1
        blocks = [b.copy() for b in tensor.blocks()]
        return metatensor.TensorMap(metatensor.Labels(tensor.keys.names, keys), blocks)

    with pytest.raises(EquivarianceError, match="inversion check failed"):
        assert_inversion_parity(flipped, crystal())


@given(frame=nst.structures(species=[1, 6, 8], max_atoms=4), rotation=nst.rotations(improper=None))
@settings(suppress_health_check=[HealthCheck.filter_too_much, HealthCheck.too_slow])
def test_featomic_property_based(frame, rotation):
    featomic = pytest.importorskip("featomic")
    hypers = nst.featomic_hypers({"cutoff": 3.0, "cutoff_width": 0.5, "density_width": 0.3,
                                  "max_radial": 2, "max_angular": 3})
    calculator = featomic.SphericalExpansion(**hypers)
    assert_rotation_equivariant(calculator.compute, frame, rotation)
    if len(frame) > 1:
        assert_permutation_equivariant(calculator.compute, frame, np.arange(len(frame))[::-1])


# ------------------------------------------------------------ malformed labelled outputs
def _relabel(frame, keys=None, samples=None, blocks=None):
    """desc.density with replaced key rows, sample labels or blocks."""
    from ncsym.blocks import BlockMap, Labels

    result = desc.density(frame)
    names = result.keys.names
    key_values = np.asarray(result.keys.values)
    if keys is not None:
        names, key_values = keys
    out_blocks = result.blocks if blocks is None else blocks(result.blocks)
    if samples is not None:
        out_blocks = [type(b)(b.values, samples(b), b.properties) for b in out_blocks]
    return BlockMap(Labels(names, key_values), out_blocks)


def _labels(names, values):
    from ncsym.blocks import Labels

    return Labels(names, np.asarray(values))


@pytest.mark.parametrize(
    "descriptor, match",
    [
        (lambda f: _relabel(f, keys=(("o3_lambda",), [[0], [1], [2], [3]])),
         "must include `o3_sigma`"),
        (lambda f: _relabel(f, keys=(("o3_sigma", "x"), [[1, 0], [1, 1], [1, 2], [1, 3]])),
         "must include `o3_lambda`"),
        (lambda f: _relabel(f, keys=(("o3_lambda", "o3_sigma"), [[0, 1], [1, 0], [2, 1], [3, 1]])),
         "has invalid o3_lambda or o3_sigma"),
        (lambda f: _relabel(f, keys=(("o3_lambda", "o3_sigma"), [[0, 1], [1, 1], [1, 1], [3, 1]]),
                            blocks=lambda b: [b[0], b[1], b[1], b[3]]),
         "duplicate keys"),
        (lambda f: _relabel(f, samples=lambda b: _labels(("system", "atom"),
                                                         [[0, a + 1] for a in range(len(f))])),
         r"samples `atom` up to 7 \(min 1\), but the structure has 7 atoms"),
        (lambda f: _relabel(f, samples=lambda b: _labels(
            ("system", "first_atom", "second_atom", "cell_shift_a"),
            [[0, a, a, 0] for a in range(len(f))])),
         "has only some of the samples"),
    ],
    ids=["no-sigma", "no-lambda", "bad-sigma", "duplicates", "atom-range", "partial-shifts"],
)
def test_malformed_outputs_are_descriptor_errors(descriptor, match):
    with pytest.raises(DescriptorError, match=match):
        assert_equivariant(descriptor, molecule())


def _moved(frame):
    return frame.positions[0, 0] != molecule().positions[0, 0]


@pytest.mark.parametrize(
    "descriptor, reason",
    [
        (lambda f: _relabel(f, blocks=lambda b: b[:3] + [b[3]] * (not _moved(f)),
                            keys=None if not _moved(f) else
                            (("o3_lambda", "o3_sigma"), [[0, 1], [1, 1], [2, 1]])),
         "block missing"),
        (lambda f: _relabel(f, keys=(("o3_lambda", "o3_sigma"),
                                     [[0, 1], [1, 1], [2, 1], [3, 1 if _moved(f) else -1]])),
         "block only in the transformed output"),
        (lambda f: _relabel(f, samples=lambda b: _labels(
            ("system", "atom") if not _moved(f) else ("system", "center"),
            [[0, a] for a in range(len(f))])),
         "sample names changed"),
        (lambda f: _relabel(f, samples=lambda b: _labels(
            ("system", "atom"), [[0, a] for a in range(len(f))] if not _moved(f)
            else [[0, max(a, 1)] for a in range(len(f))])),
         "no counterpart"),
    ],
    ids=["missing-block", "extra-block", "sample-names", "samples"],
)
def test_structural_changes_are_equivariance_failures(descriptor, reason):
    with pytest.raises(EquivarianceError, match=reason) as info:
        assert_translation_invariant(descriptor, molecule(), [0.5, 0.0, 0.0])
    assert not isinstance(info.value, DescriptorError)
    assert info.value.results[0].max_error == np.inf


def test_property_order_may_change_but_not_the_property_set():
    from ncsym.blocks import Block

    def reordered(frame):
        result = desc.density(frame)
        if not _moved(frame):
            return result
        blocks = [Block(b.values[:, :, ::-1], b.samples,
                        _labels(b.properties.names, np.asarray(b.properties.values)[::-1]))
                  for b in result.blocks]
        return _relabel(frame, blocks=lambda _: blocks)

    def extra_property(frame):
        result = desc.density(frame)
        if not _moved(frame):
            return result
        blocks = [Block(np.concatenate([b.values, b.values[:, :, :1]], axis=2), b.samples,
                        _labels(("neighbor_type",),
                                np.append(np.asarray(b.properties.values)[:, 0], 99)))
                  for b in result.blocks]
        return _relabel(frame, blocks=lambda _: blocks)

    assert_translation_invariant(reordered, molecule(), [0.5, 0.0, 0.0])
    with pytest.raises(EquivarianceError, match="properties changed"):
        assert_translation_invariant(extra_property, molecule(), [0.5, 0.0, 0.0])


def test_more_usage_errors():
    frame, cell = molecule(), crystal()
    with pytest.raises(TypeError, match="`layout` must be an ArrayLayout or a dict"):
        assert_equivariant(desc.density_arrays, frame, layout=[1, 2])
    with pytest.raises(TypeError, match=r"`layout\['l0'\]` must be an ArrayLayout"):
        assert_equivariant(desc.density_arrays, frame, layout={f"l{l}": 1 for l in range(4)})
    with pytest.raises(TypeError, match="a single array, `layout` must be an ArrayLayout"):
        assert_equivariant(desc.density_flat, frame, layout={"x": ArrayLayout(o3_lambda=0)})
    with pytest.raises(ValueError, match="must be distinct"):
        assert_equivariant(desc.invariants, frame, layout=ArrayLayout(o3_lambda=0, pair_axes=(0, 0)))
    with pytest.raises(ValueError, match="`supercell` must be three positive integers"):
        assert_periodic_invariant(desc.density, cell, supercell=(2, 0, 1))
    open_direction = cell.copy()
    open_direction.pbc = [True, True, False]
    with pytest.raises(ValueError, match="must be zero along non-periodic directions"):
        assert_periodic_invariant(desc.density, open_direction, np.ones((5, 3), dtype=int))
    with pytest.raises(ValueError, match="`translation` must have shape"):
        assert_translation_invariant(desc.density, frame, [1.0, 2.0])


def test_hypothesis_assume_inside_a_descriptor_passes_through():
    from hypothesis import assume

    def needs_two_atoms(frame):
        assume(len(frame) >= 2)
        return desc.density(frame)

    @given(frame=nst.molecules(max_atoms=3))
    @settings(database=None)
    def check(frame):
        assert_rotation_equivariant(needs_two_atoms, frame, seed=0)

    check()


# ---------------------------------------------------------------------- three-centre samples
def three_centre(frame, *, symmetrise: bool = True, shift_k: bool = True) -> BlockMap:
    """Toy three-centre features ``x_ijk = w_ij w_ik (Y_1(r_ij) + 2 Y_1(r_ik))``.

    Samples ``(system, first_atom=i, second_atom=j, third_atom=k, cell_shift_*_2, cell_shift_*_3)``
    as in :class:`ncsym.pairs.ThreeCentreFeatures`.  Like ``j, k``: stored once per unordered
    ``(j, S_j), (k, S_k)`` as ``(x_ijk ± x_ikj) / sqrt 2`` with block_type ±1 (``symmetrise=False``:
    ``x_ijk`` under block_type +1, the bug to catch).  Unlike ``j, k``: lower atomic number of
    ``j`` first, block_type 2.  ``shift_k=False`` writes zero shifts for ``k`` (the bug to catch).
    """
    i, j, vectors, shifts = desc._neighbours(frame)
    y = desc.harmonics(vectors, 1)[:, 1:4] * desc._weights(np.linalg.norm(vectors, axis=1))[:, None]
    numbers = frame.numbers
    rows = {}  # block_type -> list of (sample, features)
    for p in range(len(i)):
        for q in range(len(i)):
            if p == q or i[p] != i[q]:
                continue
            b, c = int(j[p]), int(j[q])
            s_b, s_c = tuple(int(s) for s in shifts[p]), tuple(int(s) for s in shifts[q])
            sample = [0, int(i[p]), b, c, *s_b, *(s_c if shift_k else (0, 0, 0))]
            x_ijk = y[p] + 2.0 * y[q]
            x_ikj = y[q] + 2.0 * y[p]
            if numbers[b] != numbers[c]:
                if numbers[b] < numbers[c]:
                    rows.setdefault(2, []).append((sample, x_ijk))
                continue
            if (b, s_b) > (c, s_c):
                continue
            if symmetrise:
                rows.setdefault(1, []).append((sample, (x_ijk + x_ikj) / np.sqrt(2.0)))
                rows.setdefault(-1, []).append((sample, (x_ijk - x_ikj) / np.sqrt(2.0)))
            else:
                rows.setdefault(1, []).append((sample, x_ijk))
    names = ("system", "first_atom", "second_atom", "third_atom")
    names += tuple(f"cell_shift_{a}_{n}" for n in (2, 3) for a in "abc")
    keys, blocks = [], []
    for block_type in sorted(rows):
        samples = Labels(names, [s for s, _ in rows[block_type]])
        values = np.array([f for _, f in rows[block_type]])[:, :, None]
        keys.append([1, 1, block_type])
        blocks.append(Block(values, samples, Labels.single()))
    return BlockMap(Labels(("o3_lambda", "o3_sigma", "block_type"), keys), blocks)


@pytest.mark.parametrize("frame", sorted(FRAMES))
def test_three_centre_samples_pass(frame, rng):
    frame = FRAMES[frame]()
    supercell = (2, 1, 1) if frame.pbc.any() else None
    results = assert_equivariant(
        three_centre,
        frame,
        rotation=random_rotation(rng, improper=True),
        permutation=np.arange(len(frame))[::-1].copy(),
        supercell=supercell,
        seed=int(rng.integers(2**31)),
    )
    assert all(float(r) < CAUGHT * DEFAULT_RTOL for r in results.values())


@pytest.mark.parametrize("frame", sorted(FRAMES))
def test_three_centre_exchange_sign_is_checked(frame):
    frame = FRAMES[frame]()
    reverse = np.arange(len(frame))[::-1].copy()
    with pytest.raises(EquivarianceError, match="permutation check failed"):
        assert_permutation_equivariant(
            lambda f: three_centre(f, symmetrise=False), frame, reverse
        )


def test_three_centre_shifts_of_the_third_atom_are_checked():
    with pytest.raises(EquivarianceError, match="periodic check failed"):
        assert_periodic_invariant(lambda f: three_centre(f, shift_k=False), crystal(), seed=1)


def test_pairs_exactly_at_the_cutoff_may_appear_with_zero_features():
    """Found by Hypothesis: one H in a cell whose b axis equals the pair cutoff.  After the
    rotation the image at the cutoff enters the pair list by round-off, with zero features
    (smooth cutoff); the check accepts that, and still refuses extra samples that carry values."""
    from ncsym.pairs import PairCorrelations, symmetrise_pairs

    frame = ase.Atoms("H", positions=[[0.0, 0.0, 0.0]], cell=[4.0, 3.5, 4.0], pbc=True)
    rotation = np.array([[0.28, -0.96, 0.0], [0.96, 0.28, 0.0], [0.0, 0.0, 1.0]])
    calc = PairCorrelations(cutoff=3.5, cutoff_width=1.0, density_width=0.5, max_radial=1, max_angular=0)
    result = assert_rotation_equivariant(lambda f: symmetrise_pairs(calc.compute(f)), frame, rotation)
    assert result.max_error <= 1e-12

    reference = {tuple(row) for b in calc.compute(frame).blocks for row in np.asarray(b.samples.values)}

    def extra_values(f):
        # the pairs that the rotation brings in carry values: no longer acceptable
        out = calc.compute(f)
        blocks = []
        for b in out.blocks:
            new = np.array([tuple(row) not in reference for row in np.asarray(b.samples.values)], dtype=bool)
            values = b.values.copy()
            values[new] = 1.0
            blocks.append(type(b)(values, b.samples, b.properties))
        return BlockMap(out.keys, blocks)

    with pytest.raises(EquivarianceError, match="no counterpart in the reference"):
        assert_rotation_equivariant(extra_values, frame, rotation)

