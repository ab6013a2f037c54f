"""Bad input and corner cases of the N-centre features: clear errors, never a crash.

Covers invalid hyperparameters, frames and species, periodic frames where only molecules are
supported, a single atom (no pairs), pair cutoffs larger than the density cutoff, and inputs
larger than ``memory_budget`` (an error when the output itself does not fit, chunked work with
identical results when only the intermediates do not).
"""

import math

import ase
import ase.build
import numpy as np
import pytest

import ncsym.pairs as pairs_module
from ncsym.pairs import (
    MessagePassingFeatures,
    PairCorrelations,
    PairFeatures,
    ThreeCentreFeatures,
    hamiltonian_features,
    symmetrise_pairs,
)

SMALL = dict(cutoff=3.0, cutoff_width=0.5, density_width=0.3, max_radial=1, max_angular=1)


def _water():
    return ase.Atoms("OH2", positions=[[0.0, 0.0, 0.1], [0.0, 0.76, -0.45], [0.05, -0.74, -0.5]])


# ----------------------------------------------------------------------------- hypers


@pytest.mark.parametrize(
    "kwargs, error, match",
    [
        (dict(cutoff=-1.0), ValueError, "`cutoff` must be > 0"),
        (dict(cutoff=math.nan), ValueError, "`cutoff` must be finite"),
        (dict(cutoff="4"), TypeError, "`cutoff` must be a real number"),
        (dict(pair_cutoff=0.0), ValueError, "`pair_cutoff` must be > 0"),
        (dict(pair_cutoff=0.4), ValueError, "`cutoff_width` must be smaller than `cutoff` and `pair_cutoff`"),
        (dict(density_width=0.0), ValueError, "`density_width` must be > 0"),
        (dict(center_atom_weight=math.inf), ValueError, "`center_atom_weight` must be finite"),
        (dict(max_radial=-1), ValueError, "`max_radial` must be >= 0"),
        (dict(max_angular=2.0), TypeError, "`max_angular` must be an integer"),
        (dict(max_angular=99), ValueError, "`max_angular` must be <= 20"),
        (dict(species=[1, 1]), ValueError, "`species` must contain unique atomic numbers"),
        (dict(memory_budget=0), ValueError, "`memory_budget` must be a positive number of bytes"),
        (dict(memory_budget="1GB"), TypeError, "`memory_budget` must be a number of bytes"),
    ],
)
def test_invalid_hypers(kwargs, error, match):
    for cls in (PairCorrelations, PairFeatures, ThreeCentreFeatures, MessagePassingFeatures):
        with pytest.raises(error, match=match):
            cls(**{**SMALL, **kwargs})


@pytest.mark.parametrize(
    "cls, kwargs, error, match",
    [
        (PairCorrelations, dict(correlation_order=3), ValueError, "`correlation_order` must be <= 2"),
        (PairCorrelations, dict(variant="k"), ValueError, "`variant` must be 'i', 'j' or 'ij'"),
        (PairCorrelations, dict(variant="j", correlation_order=2), ValueError, "needs correlation_order=1"),
        (PairCorrelations, dict(max_lambda=3), ValueError, "`max_lambda` must be <= 2"),
        (
            PairCorrelations,
            dict(max_lambda_intermediate=-1),
            ValueError,
            "`max_lambda_intermediate` must be >= 0",
        ),
        (ThreeCentreFeatures, dict(correlation_order=2), ValueError, "`correlation_order` must be <= 1"),
        (MessagePassingFeatures, dict(neighbor_correlation_order=0), ValueError, "must be >= 1"),
        (PairFeatures, dict(nu_onsite=0), ValueError, "`nu_onsite` must be >= 1"),
        (PairFeatures, dict(nu_pair=3), ValueError, "`nu_pair` must be <= 2"),
        (PairFeatures, dict(contraction=0), ValueError, "`contraction` must be >= 1"),
        (PairFeatures, dict(contraction=1.5), ValueError, "fraction of variance kept and must be in"),
        (PairFeatures, dict(contraction="pca"), TypeError, "`contraction` must be None, an int"),
        (PairFeatures, dict(inner_contraction=True), TypeError, "`inner_contraction` must be None"),
        (PairFeatures, dict(pair_terms="i"), ValueError, "`pair_terms` must be a sequence"),
        (PairFeatures, dict(pair_terms=()), ValueError, "`pair_terms` must contain at least one"),
        (PairFeatures, dict(max_lambda=5), ValueError, "`max_lambda` must be <= 2"),
    ],
)
def test_invalid_options(cls, kwargs, error, match):
    with pytest.raises(error, match=match):
        cls(**SMALL, **kwargs)


# ----------------------------------------------------------------------------- frames


@pytest.mark.parametrize("cls", [PairCorrelations, PairFeatures, ThreeCentreFeatures, MessagePassingFeatures])
def test_invalid_frames(cls):
    calc = cls(**SMALL)
    with pytest.raises(ValueError, match="`frames` is empty"):
        calc.compute([])
    with pytest.raises(TypeError, match=r"`frames\[1\]` must be an ase.Atoms"):
        calc.compute([_water(), "H2O"])
    bad = _water()
    bad.positions[1, 0] = np.nan
    with pytest.raises(ValueError, match="contain NaN"):
        calc.compute(bad)
    close = ase.Atoms("H2", positions=[[0, 0, 0], [0, 0, 1e-10]])
    with pytest.raises(ValueError, match="Angstrom apart"):
        calc.compute(close)


def test_unknown_species():
    for cls in (PairCorrelations, PairFeatures, ThreeCentreFeatures, MessagePassingFeatures):
        with pytest.raises(ValueError, match=r"species \[8\] that are not in `species` \[1, 6\]"):
            cls(**SMALL, species=[1, 6]).compute(_water())
    fitted = PairFeatures(**SMALL).fit([_water()])
    with pytest.raises(ValueError, match=r"species \[6\] that are not in `species`"):
        fitted.compute(ase.build.molecule("CH4"))


def test_hamiltonian_features_reject_periodic_frames():
    crystal = ase.build.bulk("Si", "diamond", 5.43)
    with pytest.raises(ValueError, match="molecules \\(pbc=False\\) only.*PairCorrelations"):
        hamiltonian_features(crystal, **SMALL)
    # the pair features themselves handle periodic frames, with cell shifts
    out = symmetrise_pairs(PairCorrelations(**SMALL).compute(crystal))
    assert out.keys.names[0] == "block_type"


def test_symmetrise_pairs_rejects_foreign_maps():
    feats = PairFeatures(**SMALL).compute(_water())
    with pytest.raises(ValueError, match="`features` keys must be"):
        symmetrise_pairs(feats)
    with pytest.raises(TypeError, match="must be an ncsym.BlockMap"):
        symmetrise_pairs({})


# ----------------------------------------------------------------------------- corner cases


def test_single_atom_has_no_pairs():
    atom = ase.Atoms("C", positions=[[0.0, 0.0, 0.0]])
    pc = PairCorrelations(**SMALL).compute(atom)
    assert all(len(b.samples) == 1 for b in pc.blocks)  # only the self pair
    none = PairCorrelations(**SMALL, self_pairs=False).compute(atom)
    assert all(len(b.samples) == 0 for b in none.blocks)
    three = ThreeCentreFeatures(**SMALL).compute(atom)
    assert all(len(b.samples) == 0 for b in three.blocks)
    mp = MessagePassingFeatures(**SMALL).compute(atom)
    assert all(len(b.samples) == 1 for b in mp.blocks)
    ham = hamiltonian_features([atom, ase.Atoms("C", positions=[[1.0, 2.0, 3.0]])], **SMALL)
    for key, block in ham.items():
        assert len(block.samples) == (2 if key["block_type"] == 0 else 0)


def test_pair_cutoff_larger_than_density_cutoff_is_supported():
    frame = ase.Atoms("OO", positions=[[0.0, 0.0, 0.0], [0.0, 0.0, 4.0]])
    short = hamiltonian_features(frame, **SMALL)
    assert (
        len(short.block(block_type=1, first_atom_type=8, second_atom_type=8, o3_lambda=0, o3_sigma=1).samples)
        == 0
    )
    long = hamiltonian_features(frame, **SMALL, pair_cutoff=5.0)
    block = long.block(block_type=1, first_atom_type=8, second_atom_type=8, o3_lambda=0, o3_sigma=1)
    assert block.samples.values.tolist() == [[0, 0, 1]]
    assert np.abs(block.values).max() > 0  # rho_i sees only i itself, g_ij carries the pair


# ----------------------------------------------------------------------------- memory


def test_output_larger_than_budget_is_a_clear_error():
    frame = ase.build.molecule("CH3CH2OH")
    with pytest.raises(ValueError, match=r"pair features of \d+ pairs need .* more than `memory_budget`"):
        PairCorrelations(**SMALL, memory_budget=1000).compute(frame)
    with pytest.raises(ValueError, match="the features of these frames need .*request `contraction`"):
        PairFeatures(**SMALL, memory_budget=1000).compute(frame)
    with pytest.raises(ValueError, match=r"message-passing features of \d+ atoms need"):
        MessagePassingFeatures(**SMALL, memory_budget=1000).compute(frame)


@pytest.fixture
def tiny_chunks(monkeypatch):
    """Leave no room for intermediates beyond the output: every chunk holds a single row."""
    monkeypatch.setattr(pairs_module, "_MIN_CHUNK", 1)
    monkeypatch.setattr(pairs_module, "_INTERMEDIATE_SHARE", 0.0)
    sizes = []
    chunks = pairs_module._chunks

    def recording(n, bytes_per_row, budget):
        for sl in chunks(n, bytes_per_row, budget):
            sizes.append(sl.stop - sl.start)
            yield sl

    monkeypatch.setattr(pairs_module, "_chunks", recording)
    return sizes


def _total_bytes(features):
    return sum(b.values.nbytes for b in features.blocks)


def test_intermediates_larger_than_budget_are_chunked(tiny_chunks):
    frame = ase.build.molecule("CH3CH2OH")
    for calc_cls, kwargs in [
        (PairCorrelations, dict(variant="ij")),
        (MessagePassingFeatures, dict()),
    ]:
        full = calc_cls(**SMALL, **kwargs).compute(frame)
        tiny_chunks.clear()
        budget = _total_bytes(full) + 1
        chunked = calc_cls(**SMALL, **kwargs, memory_budget=budget).compute(frame)
        assert max(tiny_chunks) == 1 and len(tiny_chunks) >= len(frame)
        for b1, b2 in zip(full.blocks, chunked.blocks, strict=True):
            np.testing.assert_array_equal(b1.values, b2.values)


def test_hamiltonian_features_chunk_pairs(tiny_chunks):
    frame = ase.build.molecule("CH3CH2OH")
    kwargs = dict(SMALL, pair_terms=("i", "j", "ij"), message_passing=True)
    full = hamiltonian_features(frame, **kwargs)
    tiny_chunks.clear()
    budget = 2 * _total_bytes(full)
    chunked = hamiltonian_features(frame, **kwargs, memory_budget=budget)
    assert max(tiny_chunks) == 1
    for b1, b2 in zip(full.blocks, chunked.blocks, strict=True):
        np.testing.assert_array_equal(b1.values, b2.values)


def test_message_passing_output_checked_before_allocation():
    """Wide message-passing features are refused up front instead of exhausting memory."""
    import ase.build

    import ncsym

    calc = ncsym.PairFeatures(
        species=[1, 8],
        max_radial=4,
        max_angular=6,
        max_lambda=4,
        message_passing=True,
        memory_budget=200 * 2**20,
    )
    with pytest.raises(ValueError, match="message-passing features of these frames need"):
        calc.compute([ase.build.molecule("H2O")] * 4)
