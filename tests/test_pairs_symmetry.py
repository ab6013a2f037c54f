"""Symmetries of N-centre features: O(3) equivariance, i <-> j exchange, atom permutations,
translations and periodic images (hypothesis), and a completeness check on environments that
the nu = 2 power spectrum cannot tell apart."""

import ase
import numpy as np
import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from ncsym.pairs import (
    MessagePassingFeatures,
    PairCorrelations,
    PairFeatures,
    symmetrise_pairs,
)
from ncsym.testing import (
    assert_inversion_parity,
    assert_periodic_invariant,
    assert_permutation_equivariant,
    assert_rotation_equivariant,
    assert_translation_invariant,
)
from ncsym.testing import strategies as nst

#: Relative block error allowed under rotations and inversion (issue 6: 1e-12).
EQUIVARIANCE_RTOL = 1e-12
#: Relative error allowed under permutations, translations and lattice shifts (the neighbour
#: sums run in another order, so results agree to rounding only).
INVARIANCE_RTOL = 1e-12
#: For these invariance checks every block is measured against the descriptor's largest block
#: (``norm_floor=1``): a block that vanishes by symmetry holds round-off of its (non-zero) terms,
#: at the scale of the whole descriptor, not at its own (zero) scale.  Seen: 4.3e-16 absolute in
#: a zero block of MessagePassingFeatures under a lattice shift.
INVARIANCE_NORM_FLOOR = 1.0
#: The completeness check requires the two environments' rho_i^[1<-1] to differ by at least this
#: much (relative), while their nu = 2 invariants agree to POWER_SPECTRUM_RTOL.
DISTINCT_MIN = 1e-3
POWER_SPECTRUM_RTOL = 1e-10

SPECIES = (1, 6, 8)
SMALL = dict(cutoff=3.0, cutoff_width=0.5, density_width=0.3, max_radial=2, max_angular=2, species=SPECIES)
TINY = dict(SMALL, max_radial=1, max_angular=1)

CALCULATORS = {
    "pairs_nu1": PairCorrelations(**SMALL, max_lambda=4),
    "pairs_nu2": PairCorrelations(**TINY, correlation_order=2, max_lambda=3),
    "pairs_ij": PairCorrelations(**TINY, variant="ij", max_lambda=2),
    "message_passing": MessagePassingFeatures(**TINY, max_lambda=2),
    "hamiltonian": PairFeatures(**SMALL, pair_cutoff=3.5, pair_terms=("i", "j")),
    "hamiltonian_nu2_mp": PairFeatures(**TINY, nu_pair=2, message_passing=True),
}
MOLECULE_CALCULATORS = sorted(CALCULATORS)


def _descriptor(name):
    """``compute`` of a calculator, without blocks that have no property.

    PairFeatures keeps every ``(lambda, sigma)`` (e.g. ``sigma = -1, lambda = 0`` has no
    ``nu <= 1`` feature and zero properties); ncsym.testing cannot normalise such blocks yet.
    """
    from ncsym.blocks import BlockMap

    calc = CALCULATORS[name]

    def compute(frame):
        out = calc.compute(frame)
        keep = [i for i, b in enumerate(out.blocks) if b.values.shape[2] > 0]
        return BlockMap(
            out.keys.__class__(out.keys.names, out.keys.values[keep]), [out.blocks[i] for i in keep]
        )

    compute.__qualname__ = f"{type(calc).__name__}.compute"
    return compute


PERIODIC_CALCULATORS = ["pairs_nu1", "pairs_ij", "message_passing"]

molecules = nst.molecules(species=SPECIES, min_atoms=2, max_atoms=5)
periodic = nst.periodic_cells(species=SPECIES, min_atoms=1, max_atoms=3)


@pytest.mark.parametrize("name", MOLECULE_CALCULATORS)
@given(frame=molecules, rotation=nst.rotations(improper=None))
@example(frame=nst.atoms_on_axis(), rotation=nst.HALF_TURNS["z"])
@example(frame=nst.atoms_on_axis(), rotation=nst.INVERSION)
def test_rotation_and_inversion_equivariance(name, frame, rotation):
    compute = _descriptor(name)
    assert_rotation_equivariant(compute, frame, rotation, rtol=EQUIVARIANCE_RTOL)
    assert_inversion_parity(compute, frame, rtol=EQUIVARIANCE_RTOL)


@pytest.mark.parametrize("name", PERIODIC_CALCULATORS)
@given(frame=periodic, rotation=nst.rotations(improper=None))
def test_periodic_rotation_translation_and_images(name, frame, rotation):
    compute = _descriptor(name)
    assert_rotation_equivariant(compute, frame, rotation, rtol=EQUIVARIANCE_RTOL)
    assert_translation_invariant(
        compute, frame, seed=0, rtol=INVARIANCE_RTOL, norm_floor=INVARIANCE_NORM_FLOOR
    )
    assert_periodic_invariant(compute, frame, seed=0, rtol=INVARIANCE_RTOL, norm_floor=INVARIANCE_NORM_FLOOR)


@pytest.mark.parametrize("name", MOLECULE_CALCULATORS)
@given(frame=molecules, data=st.data())
def test_permuting_atoms_permutes_samples(name, frame, data):
    permutation = data.draw(nst.atom_permutations(len(frame)))
    compute = _descriptor(name)
    assert_permutation_equivariant(
        compute, frame, permutation, rtol=INVARIANCE_RTOL, norm_floor=INVARIANCE_NORM_FLOOR
    )
    assert_translation_invariant(
        compute, frame, seed=0, rtol=INVARIANCE_RTOL, norm_floor=INVARIANCE_NORM_FLOOR
    )


# ----------------------------------------------------------------------------- exchange


def _swap_roles(features):
    """The same pair features with every sample (i, j, S) relabelled (j, i, -S)."""
    from ncsym.blocks import Block, BlockMap, Labels

    keys, blocks = [], []
    for key, block in features.items():
        s = block.samples.values.astype(np.int64)
        swapped = np.column_stack([s[:, 0], s[:, 2], s[:, 1], -s[:, 3:6]])
        keys.append((key["o3_lambda"], key["o3_sigma"], key["second_atom_type"], key["first_atom_type"]))
        blocks.append(Block(block.values, Labels(block.samples.names, swapped), block.properties))
    return BlockMap(Labels(features.keys.names, np.array(keys)), blocks)


@given(frame=st.one_of(molecules, periodic))
def test_exchange_maps_plus_minus_blocks_to_themselves_exactly(frame):
    features = CALCULATORS["pairs_nu1"].compute(frame)
    sym = symmetrise_pairs(features)
    exchanged = symmetrise_pairs(_swap_roles(features))
    for key, block in sym.items():
        other = exchanged.block(**key)
        if key["block_type"] in (1, -1):
            rows = [other.samples.position(tuple(s)) for s in block.samples.values]
            assert None not in rows
            got = other.values[np.array(rows, dtype=np.int64)] if rows else other.values
            # bit for bit: + unchanged, - negated
            np.testing.assert_array_equal(got, key["block_type"] * block.values)


def test_swapping_like_atoms_flips_minus_blocks():
    frame = ase.Atoms("OH2", positions=[[0.0, 0.0, 0.1], [0.0, 0.76, -0.45], [0.05, -0.74, -0.5]], pbc=False)
    calc = CALCULATORS["hamiltonian"]
    ref = calc.compute(frame)
    swapped = calc.compute(frame[[0, 2, 1]])
    n_checked = 0
    for key, block in ref.items():
        if key["block_type"] not in (1, -1) or key["first_atom_type"] != 1:
            continue
        other = swapped.block(**key)
        assert block.samples == other.samples  # the H-H pair is (1, 2) in both
        scale = max(np.abs(block.values).max(initial=0.0), 1e-300)
        err = np.abs(other.values - key["block_type"] * block.values).max(initial=0.0) / scale
        assert err < INVARIANCE_RTOL, key
        n_checked += block.values.size
    assert n_checked > 0


def test_plus_minus_is_exact_under_exchange(rng):
    from ncsym.pairs import _plus_minus

    a, b = rng.normal(size=(2, 7, 5, 11))
    plus, minus = _plus_minus(a, b)
    plus2, minus2 = _plus_minus(b, a)
    np.testing.assert_array_equal(plus, plus2)
    np.testing.assert_array_equal(minus, -minus2)


# ----------------------------------------------------------------------------- completeness


def _ring_environment(steps, radius=1.2):
    """A carbon centre with four hydrogens on a circle at octagon positions ``steps * 45 deg``.

    {0, 1, 2, 5} and {0, 1, 3, 4} are homometric: the same multiset of pairwise angles (steps
    1, 1, 2, 3, 3, 4), hence the same centre-centred 3-body (nu = 2) correlations, but they are
    not related by any rotation or reflection (the first holds three consecutive sites).  This
    is the kind of nu = 2-degenerate pair of environments of Pozdnyakov et al., PRL 125, 166001
    (2020).
    """
    angles = np.asarray(steps) * np.pi / 4
    ring = np.column_stack([radius * np.cos(angles), radius * np.sin(angles), np.zeros(4)])
    return ase.Atoms("CH4", positions=np.vstack([[0.0, 0.0, 0.0], ring]), pbc=False)


def _invariants(features, center_type=6):
    block = features.block(o3_lambda=0, o3_sigma=1, center_type=center_type)
    return block.values[block.samples["atom"] == 0].ravel()


def test_message_passing_tells_apart_nu2_degenerate_environments():
    from ncsym import EquivariantPowerSpectrum, SphericalExpansion

    a, b = _ring_environment([0, 1, 2, 5]), _ring_environment([0, 1, 3, 4])
    hypers = dict(cutoff=4.0, cutoff_width=0.5, density_width=0.3, max_radial=3, max_angular=3)

    # the public lambda-SOAP (nu = 2) invariants of the centre agree ...
    soap = EquivariantPowerSpectrum(SphericalExpansion(**hypers, species=[1, 6]), max_lambda=0)
    pa, pb = _invariants(soap.compute(a)), _invariants(soap.compute(b))
    assert np.abs(pa - pb).max() <= POWER_SPECTRUM_RTOL * np.abs(pa).max()

    # ... while rho_i^[1 <- 1] differs
    calc = MessagePassingFeatures(**hypers, species=[1, 6], max_lambda=0)
    ma, mb = _invariants(calc.compute(a)), _invariants(calc.compute(b))
    assert np.abs(ma - mb).max() > DISTINCT_MIN * np.abs(ma).max()
