"""Dogfooding: the ``ncsym.testing`` asserts run on every feature type ncsym computes (issue 7).

Each calculator is checked on real structures (a distorted water, ethanol, bulk silicon and a
four-atom skewed cell with a lattice vector shorter than the cutoff, so that atoms see their
own periodic images) under proper and improper rotations, inversion, an atom permutation that
reverses the order of like atoms (so symmetrised pairs ``i < j`` come back as ``j > i`` and the
``block_type`` sign rule is exercised), translations and, for periodic frames, lattice-vector
moves of single atoms and supercells (doubling the short vector of the four-atom cell turns
self-images into pairs of distinct atoms).  Hypothesis drives the
density expansions, the density correlations and every pair calculator over random
molecules, cells, hyperparameters, rotations, permutations and lattice shifts.  Tolerances are the kit's defaults
(:data:`ncsym.testing.DEFAULT_RTOL`), never widened here.

Three-centre samples ``(first_atom, second_atom, third_atom)`` with the cell shifts of
``second_atom`` (``cell_shift_*_2``) and ``third_atom`` (``cell_shift_*_3``) reach the kit as they
are: it relabels all three atoms, matches both shift groups through their separation vectors
and applies the ``j <-> k`` exchange sign of ``block_type = +1 / -1`` blocks.
"""

from __future__ import annotations

import functools
from collections.abc import Callable

import ase
import ase.build
import numpy as np
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

import ncsym
from ncsym import pairs
from ncsym.blocks import BlockMap, Labels
from ncsym.rotations import random_rotation
from ncsym.testing import (
    DEFAULT_RTOL,
    ArrayLayout,
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

#: Seed of the kit's random transformations (translations, lattice shifts).
SEED = 20240611
#: Density cutoff (Angstrom) of every calculator: the four-atom cell has a shorter lattice vector.
CUTOFF = 3.0
#: Small bases: the file must stay fast on one core.
DENSITY = {"cutoff": CUTOFF, "max_radial": 2, "max_angular": 3}
SMALL = {"cutoff": CUTOFF, "max_radial": 2, "max_angular": 2}
TINY = {"cutoff": CUTOFF, "max_radial": 1, "max_angular": 2}
TINIEST = {"cutoff": CUTOFF, "max_radial": 1, "max_angular": 1}
#: Hypothesis budgets of the fast tests and of their ``slow`` variants.
FAST_EXAMPLES = 10
SLOW_EXAMPLES = 150
HEALTH = [HealthCheck.too_slow, HealthCheck.filter_too_much, HealthCheck.data_too_large]

PROPER = "rotation"
IMPROPER = "improper_rotation"
CHECKS = (PROPER, IMPROPER, "inversion", "permutation", "translation", "periodic", "supercell")


# ============================================================================ structures
def water() -> ase.Atoms:
    """Water without its mirror planes (no symmetry hides a sign error)."""
    return ase.Atoms("OH2", positions=[[0.02, -0.01, 0.12], [0.05, 0.77, -0.46], [-0.03, -0.74, -0.50]])


def ethanol() -> ase.Atoms:
    frame = ase.build.molecule("CH3CH2OH")
    frame.rattle(0.05, seed=1)
    return frame


def silicon() -> ase.Atoms:
    """Primitive diamond-Si cell (2 atoms), rattled."""
    frame = ase.build.bulk("Si", "diamond", a=5.43)
    frame.rattle(0.1, seed=3)
    return frame


def cell4() -> ase.Atoms:
    """H, C, O, H in a skewed cell with a 2.8 A vector: atoms see their own periodic images."""
    cell = np.array([[2.8, 0.3, -0.2], [0.1, 4.3, 0.2], [-0.3, 0.2, 3.9]])
    return ase.Atoms(
        numbers=[1, 6, 8, 1],
        scaled_positions=[[0.1, 0.2, 0.05], [0.6, 0.55, 0.3], [0.3, 0.1, 0.6], [0.85, 0.8, 0.85]],
        cell=cell,
        pbc=True,
    )


FRAMES = {"water": water, "ethanol": ethanol, "silicon": silicon, "cell4": cell4}
MOLECULES = ("water", "ethanol")
CRYSTALS = ("silicon", "cell4")


# ============================================================================ helpers
def _fitted(calculator, frame) -> Callable:
    """``calculator.compute`` after fitting its PCA on the untransformed ``frame``."""
    calculator.fit(frame)
    return calculator.compute


# ============================================================================ calculators
#: name -> (builder(frame) -> descriptor, frames, {check: skip reason on periodic frames})
CASES: dict[str, tuple[Callable, tuple[str, ...], dict[str, str]]] = {
    # ---------------------------------------------------------------- ncsym.density
    "spherical_expansion": (
        lambda frame: ncsym.SphericalExpansion(**DENSITY).compute,
        MOLECULES + CRYSTALS,
        {},
    ),
    "spherical_expansion_neighbors_to_properties": (
        lambda frame: ncsym.SphericalExpansion(**DENSITY, neighbors_to_properties=True).compute,
        ("water", "cell4"),
        {},
    ),
    "spherical_expansion_dense": (
        lambda frame: lambda f: ncsym.SphericalExpansion(**DENSITY).compute_dense(f).values,
        ("water", "cell4"),
        {},
    ),
    "pair_expansion": (
        lambda frame: ncsym.PairExpansion(**DENSITY).compute,
        MOLECULES + CRYSTALS,
        {},
    ),
    # ---------------------------------------------------------------- ncsym.acdc
    "density_correlations_nu1": (
        lambda frame: ncsym.DensityCorrelations(expansion=DENSITY, correlation_order=1).compute,
        ("water", "cell4"),
        {},
    ),
    "density_correlations_nu2": (
        lambda frame: ncsym.DensityCorrelations(expansion=SMALL, correlation_order=2).compute,
        MOLECULES + CRYSTALS,
        {},
    ),
    "density_correlations_nu2_all_l": (
        lambda frame: (
            ncsym.DensityCorrelations(expansion=SMALL, correlation_order=2, skip_redundant=False).compute
        ),
        ("water", "cell4"),
        {},
    ),
    "density_correlations_nu3": (
        lambda frame: ncsym.DensityCorrelations(expansion=TINY, correlation_order=3).compute,
        ("water", "cell4"),
        {},
    ),
    "density_correlations_nu3_contracted": (
        lambda frame: _fitted(
            ncsym.DensityCorrelations(expansion=TINY, correlation_order=3, contraction=4), frame
        ),
        ("ethanol", "cell4"),
        {},
    ),
    "density_correlations_nu4": (
        lambda frame: ncsym.DensityCorrelations(expansion=TINIEST, correlation_order=4).compute,
        ("water", "cell4"),
        {},
    ),
    "equivariant_power_spectrum": (
        lambda frame: ncsym.EquivariantPowerSpectrum(SMALL).compute,
        ("water", "cell4"),
        {},
    ),
    "equivariant_power_spectrum_cross": (
        lambda frame: (
            ncsym.EquivariantPowerSpectrum(SMALL, {**TINY, "density_width": 0.5, "cutoff_width": 0.8}).compute
        ),
        ("water", "cell4"),
        {},
    ),
    # ---------------------------------------------------------------- ncsym.pairs
    "pair_correlations_nu0": (
        lambda frame: pairs.PairCorrelations(correlation_order=0, **SMALL).compute,
        MOLECULES + CRYSTALS,
        {},
    ),
    "pair_correlations_nu1": (
        lambda frame: pairs.PairCorrelations(correlation_order=1, **TINY).compute,
        MOLECULES + CRYSTALS,
        {},
    ),
    "pair_correlations_nu2": (
        lambda frame: pairs.PairCorrelations(correlation_order=2, **TINIEST).compute,
        ("water", "cell4"),
        {},
    ),
    "pair_correlations_variant_j": (
        lambda frame: pairs.PairCorrelations(correlation_order=1, variant="j", **TINY).compute,
        ("water", "cell4"),
        {},
    ),
    "pair_correlations_variant_ij": (
        lambda frame: pairs.PairCorrelations(correlation_order=1, variant="ij", **TINIEST).compute,
        ("water", "cell4"),
        {},
    ),
    "pair_correlations_longer_pair_cutoff": (
        lambda frame: pairs.PairCorrelations(correlation_order=1, pair_cutoff=3.6, **TINY).compute,
        ("cell4",),
        {},
    ),
    "symmetrised_pair_correlations": (
        lambda frame: (
            lambda f: pairs.symmetrise_pairs(pairs.PairCorrelations(correlation_order=1, **TINY).compute(f))
        ),
        MOLECULES + CRYSTALS,
        {},
    ),
    "message_passing_1_1": (
        lambda frame: (
            pairs.MessagePassingFeatures(correlation_order=1, neighbor_correlation_order=1, **TINIEST).compute
        ),
        ("water", "cell4"),
        {},
    ),
    "message_passing_2_1": (
        lambda frame: (
            pairs.MessagePassingFeatures(correlation_order=2, neighbor_correlation_order=1, **TINIEST).compute
        ),
        ("water", "cell4"),
        {},
    ),
    "message_passing_1_2": (
        lambda frame: (
            pairs.MessagePassingFeatures(correlation_order=1, neighbor_correlation_order=2, **TINIEST).compute
        ),
        ("water", "cell4"),
        {},
    ),
    "three_centre_nu0": (
        lambda frame: pairs.ThreeCentreFeatures(correlation_order=0, symmetrise=False, **TINY).compute,
        ("water", "cell4"),
        {},
    ),
    "three_centre_nu1": (
        lambda frame: pairs.ThreeCentreFeatures(correlation_order=1, symmetrise=False, **TINIEST).compute,
        ("water", "cell4"),
        {},
    ),
    "three_centre_symmetrised": (
        lambda frame: pairs.ThreeCentreFeatures(correlation_order=1, symmetrise=True, **TINIEST).compute,
        ("ethanol", "cell4"),
        {},
    ),
    "pair_features": (
        lambda frame: (ncsym.PairFeatures(**TINY).compute),
        MOLECULES,
        {},
    ),
    "pair_features_nu0_onsite1": (
        lambda frame: (ncsym.PairFeatures(nu_pair=0, nu_onsite=1, **SMALL).compute),
        MOLECULES,
        {},
    ),
    "pair_features_nu2": (
        lambda frame: (ncsym.PairFeatures(nu_pair=2, **TINIEST).compute),
        ("water",),
        {},
    ),
    "pair_features_all_terms_message_passing": (
        lambda frame: (
            ncsym.PairFeatures(pair_terms=("i", "j", "ij"), message_passing=True, **TINIEST).compute
        ),
        MOLECULES,
        {},
    ),
    "pair_features_contracted": (
        lambda frame: (
            _fitted(ncsym.PairFeatures(contraction=3, inner_contraction=4, nu_pair=2, **TINY), frame)
        ),
        ("ethanol",),
        {},
    ),
    "hamiltonian_features": (
        lambda frame: (
            functools.partial(ncsym.hamiltonian_features, species=[1, 6, 8], **TINY)
        ),
        MOLECULES,
        {},
    ),
}

#: Layouts of the calculators that return plain arrays.
LAYOUTS = {
    # values[i, l * l + l + m, a, n]: every l on one flattened (l, m) axis
    "spherical_expansion_dense": ArrayLayout(
        o3_lambda=tuple(range(DENSITY["max_angular"] + 1)), m_axis=1, atom_axis=0
    ),
}
#: Repetitions of the supercell check: doubling the 2.8 A vector of ``cell4`` turns self-images
#: into pairs of distinct atoms.
SUPERCELLS = {"silicon": (2, 2, 2), "cell4": (2, 1, 1)}


@functools.cache
def _descriptor(case: str, frame_name: str) -> Callable:
    build, _, _ = CASES[case]
    return build(FRAMES[frame_name]())


def _params():
    for case, (_, frames, skips) in CASES.items():
        for frame_name in frames:
            periodic = frame_name in CRYSTALS
            for check in (c for c in CHECKS if periodic or c not in ("periodic", "supercell")):
                skip = check in skips and frame_name in CRYSTALS
                marks = [pytest.mark.skip(reason=skips[check])] if skip else []
                yield pytest.param(case, frame_name, check, id=f"{case}-{frame_name}-{check}", marks=marks)


def _check(descriptor, frame_name: str, check: str, rng: np.random.Generator, layout=None) -> None:
    __tracebackhide__ = True
    frame = FRAMES[frame_name]()
    if check == PROPER:
        assert_rotation_equivariant(descriptor, frame, random_rotation(rng), layout=layout)
    elif check == IMPROPER:
        rotation = random_rotation(rng, improper=True)
        assert_rotation_equivariant(descriptor, frame, rotation, layout=layout)
    elif check == "inversion":
        assert_inversion_parity(descriptor, frame, layout=layout)
    elif check == "permutation":
        # reversed order: like atoms i < j become p(i) > p(j), symmetrised pairs swap
        reverse = np.arange(len(frame))[::-1].copy()
        assert_permutation_equivariant(descriptor, frame, reverse, layout=layout)
    elif check == "translation":
        assert_translation_invariant(descriptor, frame, seed=SEED, layout=layout)
    elif check == "periodic":
        assert_periodic_invariant(descriptor, frame, seed=SEED, layout=layout)
    elif check == "supercell":
        supercell = SUPERCELLS[frame_name]
        assert_periodic_invariant(descriptor, frame, supercell=supercell, seed=SEED, layout=layout)
    else:  # pragma: no cover - a typo in CHECKS
        raise ValueError(check)


@pytest.mark.parametrize("case, frame_name, check", list(_params()))
def test_pinned_structures(case, frame_name, check, rng):
    _check(_descriptor(case, frame_name), frame_name, check, rng, LAYOUTS.get(case))


def test_every_public_calculator_is_covered():
    """A new public calculator must get a case here."""
    covered = {
        "SphericalExpansion": "spherical_expansion",
        "PairExpansion": "pair_expansion",
        "DensityCorrelations": "density_correlations_nu2",
        "EquivariantPowerSpectrum": "equivariant_power_spectrum",
        "PairFeatures": "pair_features",
        "hamiltonian_features": "hamiltonian_features",
        "PairCorrelations": "pair_correlations_nu1",
        "MessagePassingFeatures": "message_passing_1_1",
        "ThreeCentreFeatures": "three_centre_nu1",
        "symmetrise_pairs": "symmetrised_pair_correlations",
    }
    assert all(case in CASES for case in covered.values())
    feature_modules = ("ncsym.density", "ncsym.acdc", "ncsym.pairs")
    features = {n for n in ncsym.__all__ if getattr(getattr(ncsym, n), "__module__", "") in feature_modules}
    features |= {n for n in pairs.__all__ if n[0].isupper() or n.endswith("_pairs")}
    features -= {"DEFAULT_MEMORY_BUDGET"}
    assert features <= set(covered), f"no dogfood case for {sorted(features - set(covered))}"


def test_results_are_far_below_the_tolerance():
    """The numbers behind a pass: rounding-level errors, not errors just below rtol."""
    results = equivariance_error(_descriptor("pair_correlations_nu1", "cell4"), cell4(), seed=SEED)
    assert set(results) == {"rotation", "inversion", "permutation", "translation", "periodic"}
    assert all(float(r) < 1e-3 * DEFAULT_RTOL for r in results.values()), {
        k: float(r) for k, r in results.items()
    }


def test_a_broken_real_descriptor_is_caught():
    """The kit catches a real feature with one wrong label (sigma flipped on lambda = 1)."""
    compute = _descriptor("density_correlations_nu2", "water")

    def flipped(frame):
        features = compute(frame)
        keys = np.array(features.keys.values)
        column = features.keys.names.index("o3_sigma")
        lam = keys[:, features.keys.names.index("o3_lambda")]
        keys[lam == 1, column] *= -1
        return BlockMap(Labels(features.keys.names, keys), features.blocks)

    with pytest.raises(EquivarianceError, match="inversion check failed"):
        assert_inversion_parity(flipped, water())


def test_pair_features_zero_property_blocks_reach_the_kit():
    assert_equivariant(ncsym.PairFeatures(**TINY).compute, water(), seed=SEED)


@pytest.mark.parametrize("frame_name", ["ethanol", "cell4"])
def test_three_centre_exchange_sign_is_checked(frame_name):
    """+1 / -1 exchange blocks with swapped labels fail the permutation check."""
    compute = pairs.ThreeCentreFeatures(correlation_order=1, symmetrise=True, **TINIEST).compute

    def swapped_block_types(frame):
        features = compute(frame)
        keys = np.array(features.keys.values)
        column = features.keys.names.index("block_type")
        keys[np.isin(keys[:, column], (1, -1)), column] *= -1
        return BlockMap(Labels(features.keys.names, keys), features.blocks)

    frame = FRAMES[frame_name]()
    reverse = np.arange(len(frame))[::-1].copy()
    assert_permutation_equivariant(compute, frame, reverse)
    with pytest.raises(EquivarianceError, match="permutation check failed"):
        assert_permutation_equivariant(swapped_block_types, frame, reverse)


def test_three_centre_samples_reach_the_kit():
    """Raw three-centre output: ``third_atom`` is relabelled, both shift groups are followed."""
    frame = water()
    compute = pairs.ThreeCentreFeatures(correlation_order=0, symmetrise=False, **TINY).compute
    result = assert_permutation_equivariant(compute, frame, np.arange(len(frame))[::-1].copy())
    assert float(result) < 1e-3 * DEFAULT_RTOL


def test_three_centre_periodic_images_reach_the_kit():
    """Both shift groups are matched through r_ij and r_ik under improper rotations and supercells."""
    frame = cell4()
    compute = pairs.ThreeCentreFeatures(correlation_order=1, symmetrise=True, **TINIEST).compute
    results = assert_equivariant(
        compute,
        frame,
        rotation=random_rotation(np.random.default_rng(SEED), improper=True),
        supercell=SUPERCELLS["cell4"],
        seed=SEED,
    )
    assert set(results) == {
        "rotation", "inversion", "permutation", "translation", "periodic", "supercell"
    }  # fmt: skip


# ============================================================================ hypothesis
def _random_checks(descriptor, frame, data, rotation, checks=None) -> None:
    """Every applicable check (or ``checks``) with hypothesis-drawn transformations."""
    __tracebackhide__ = True
    permutation = data.draw(nst.atom_permutations(len(frame)), label="permutation")
    shifts = None
    if np.any(frame.pbc):
        shifts = data.draw(nst.lattice_shifts(len(frame)), label="lattice_shifts")
    assert_equivariant(
        descriptor,
        frame,
        checks=checks,
        rotation=rotation,
        permutation=permutation,
        lattice_shifts=shifts,
        seed=SEED,
    )


def _density(hypers, frame, data, rotation) -> None:
    __tracebackhide__ = True
    for calculator in (ncsym.SphericalExpansion(**hypers), ncsym.PairExpansion(**hypers)):
        _random_checks(calculator.compute, frame, data, rotation)


def _correlations(hypers, frame, data, rotation) -> None:
    __tracebackhide__ = True
    kind = data.draw(st.sampled_from(["nu2", "nu1", "nu3", "nu4", "cross"]), label="correlations")
    if kind == "cross":
        second = {**hypers, "density_width": 0.5, "max_radial": 1}
        calculator = ncsym.EquivariantPowerSpectrum(hypers, second)
    else:
        nu = int(kind[2])
        if nu >= 3:  # feature counts grow as (n_species n_radial)^nu
            hypers = {**hypers, "max_radial": 1, "max_angular": min(hypers["max_angular"], 4 - nu)}
        calculator = ncsym.DensityCorrelations(expansion=hypers, correlation_order=nu)
    _random_checks(calculator.compute, frame, data, rotation)


def _pair_correlations(hypers, frame, data, rotation) -> None:
    __tracebackhide__ = True
    variant = data.draw(st.sampled_from(["i", "j", "ij"]), label="variant")
    calculator = pairs.PairCorrelations(correlation_order=1, variant=variant, **hypers)
    _random_checks(lambda f: pairs.symmetrise_pairs(calculator.compute(f)), frame, data, rotation)


def _pair_features(hypers, frame, data, rotation) -> None:
    __tracebackhide__ = True
    nu_pair = data.draw(st.integers(0, 1), label="nu_pair")
    calculator = ncsym.PairFeatures(species=[1, 6, 8], nu_pair=nu_pair, **hypers)
    _random_checks((calculator.compute), frame, data, rotation)


def _message_passing(hypers, frame, data, rotation) -> None:
    __tracebackhide__ = True
    orders = data.draw(st.sampled_from([(1, 1), (2, 1), (1, 2)]), label="orders")
    calculator = pairs.MessagePassingFeatures(
        correlation_order=orders[0],
        neighbor_correlation_order=orders[1],
        **{**hypers, "max_radial": 1, "max_angular": min(hypers["max_angular"], 1)},
    )
    _random_checks(calculator.compute, frame, data, rotation)


def _three_centre(hypers, frame, data, rotation) -> None:
    __tracebackhide__ = True
    symmetrise = data.draw(st.booleans(), label="symmetrise")
    nu = data.draw(st.integers(0, 1), label="nu")
    calculator = pairs.ThreeCentreFeatures(
        correlation_order=nu,
        symmetrise=symmetrise,
        **{**hypers, "max_radial": 1, "max_angular": min(hypers["max_angular"], 1 + (nu == 0))},
    )
    _random_checks(calculator.compute, frame, data, rotation)


_SMALL_HYPERS = nst.hyperparameters(cutoff=(2.5, 4.0), max_radial=(1, 3), max_angular=(0, 3))
_TINY_HYPERS = nst.hyperparameters(cutoff=(2.5, 3.5), max_radial=(1, 2), max_angular=(0, 2))
_PINNED_HYPERS = {
    "cutoff": CUTOFF,
    "cutoff_width": 0.5,
    "density_width": 0.3,
    "max_radial": 1,
    "max_angular": 2,
}


class _PinnedData:
    """Stand-in for ``st.data()`` in ``@example``: fixed choices (the kit draws the rest)."""

    CHOICES = {
        "permutation": None,
        "lattice_shifts": None,
        "correlations": "nu2",
        "variant": "ij",
        "nu_pair": 1,
        "orders": (1, 1),
        "symmetrise": True,
        "nu": 1,
    }

    def draw(self, strategy, label=None):
        return self.CHOICES[label]


def _pinned_examples(test):
    """Cases random draws rarely hit: atoms on the rotation axis, one atom, a mirror plane."""
    for frame, rotation in (
        (nst.atoms_on_axis(), nst.HALF_TURNS["z"]),
        (nst.single_atom(8), nst.INVERSION),
        (water(), nst.PINNED_ROTATIONS["mirror_z"]),
    ):
        test = example(hypers=_PINNED_HYPERS, frame=frame, rotation=rotation, data=None)(test)
    return test


_ANY_STRUCTURE = nst.structures(species=[1, 6, 8], max_atoms=4)
#: Two species only, so that like-atom (block_type +1 / -1) pairs are frequent.
_MOLECULES = nst.molecules(species=[1, 6], max_atoms=4)
_ROTATIONS = nst.rotations(improper=None)
_FAST = settings(max_examples=FAST_EXAMPLES, deadline=None, suppress_health_check=HEALTH)
_SLOW = settings(max_examples=SLOW_EXAMPLES, deadline=None, suppress_health_check=HEALTH)


def _fast(hypers, frames):
    """A fast hypothesis test: small budget plus the pinned examples."""

    def decorate(test):
        return given(hypers=hypers, frame=frames, rotation=_ROTATIONS, data=st.data())(
            _pinned_examples(_FAST(test))
        )

    return decorate


def _slow(hypers, frames):
    """The ``slow`` variant: a larger budget on the same calculators."""

    def decorate(test):
        return pytest.mark.slow(
            given(hypers=hypers, frame=frames, rotation=_ROTATIONS, data=st.data())(_SLOW(test))
        )

    return decorate


def _data(data):
    return _PinnedData() if data is None else data


@_fast(_SMALL_HYPERS, _ANY_STRUCTURE)
def test_density_hypothesis(hypers, frame, rotation, data):
    _density(hypers, frame, _data(data), rotation)


@_fast(_TINY_HYPERS, _ANY_STRUCTURE)
def test_correlations_hypothesis(hypers, frame, rotation, data):
    _correlations(hypers, frame, _data(data), rotation)


@_fast(_TINY_HYPERS, _ANY_STRUCTURE)
def test_pair_correlations_hypothesis(hypers, frame, rotation, data):
    _pair_correlations(hypers, frame, _data(data), rotation)


@_fast(_TINY_HYPERS, _MOLECULES)
def test_pair_features_hypothesis(hypers, frame, rotation, data):
    _pair_features(hypers, frame, _data(data), rotation)


@_fast(_TINY_HYPERS, _ANY_STRUCTURE)
def test_message_passing_hypothesis(hypers, frame, rotation, data):
    _message_passing(hypers, frame, _data(data), rotation)


@_fast(_TINY_HYPERS, _ANY_STRUCTURE)
def test_three_centre_hypothesis(hypers, frame, rotation, data):
    _three_centre(hypers, frame, _data(data), rotation)


@_slow(_SMALL_HYPERS, _ANY_STRUCTURE)
def test_density_hypothesis_slow(hypers, frame, rotation, data):
    _density(hypers, frame, data, rotation)


@_slow(_TINY_HYPERS, _ANY_STRUCTURE)
def test_correlations_hypothesis_slow(hypers, frame, rotation, data):
    _correlations(hypers, frame, data, rotation)


@_slow(_TINY_HYPERS, _ANY_STRUCTURE)
def test_pair_correlations_hypothesis_slow(hypers, frame, rotation, data):
    _pair_correlations(hypers, frame, data, rotation)


@_slow(_TINY_HYPERS, _MOLECULES)
def test_pair_features_hypothesis_slow(hypers, frame, rotation, data):
    _pair_features(hypers, frame, data, rotation)


@_slow(_TINY_HYPERS, _ANY_STRUCTURE)
def test_message_passing_hypothesis_slow(hypers, frame, rotation, data):
    _message_passing(hypers, frame, data, rotation)


@_slow(_TINY_HYPERS, _ANY_STRUCTURE)
def test_three_centre_hypothesis_slow(hypers, frame, rotation, data):
    _three_centre(hypers, frame, data, rotation)
