"""couple_blocks / decouple_blocks: round trips, selection rules, equivariance, bad input."""

from __future__ import annotations

import ase
import numpy as np
import pytest
from ase.build import molecule
from hypothesis import given, settings
from hypothesis import strategies as st

from ncsym import Block, BlockMap, Labels
from ncsym.hamiltonian import (
    COUPLED_KEY_NAMES,
    BlockKey,
    blocks_to_matrix,
    couple_blocks,
    decouple_blocks,
    kept_lambdas,
    matrix_to_blocks,
    orbital_labels,
)
from ncsym.testing.strategies import rotations

from ._ham_utils import ao_wigner, random_orbitals, random_symmetric, wigner_from_sphericart

pytest.importorskip("sphericart")

#: blocks -> coupled -> blocks -> matrix, absolute, O(1) random or O(20) Hartree entries.
ROUND_TRIP_TOLERANCE = 1e-14
#: Coupled components that vanish by symmetry, relative to the largest block entry.
SELECTION_TOLERANCE = 1e-14
#: Equivariance of coupled blocks, X(R A) = D_lambda X(A) (absolute).
EQUIVARIANCE_TOLERANCE = 1e-10
#: Two independent SCF runs (original and rotated molecule) converged to gradient <= 1e-8 agree
#: only to that level: the comparison of their coupled blocks is bounded by the SCF, not by the
#: coupling (whose exact equivariance is checked on exactly rotated matrices above).
SCF_TOLERANCE = 1e-8


def structure(numbers) -> ase.Atoms:
    numbers = list(numbers)
    return ase.Atoms(numbers=numbers, positions=np.arange(3 * len(numbers)).reshape(-1, 3))


def random_case(seed: int, compositions):
    rng = np.random.default_rng(seed)
    orbitals = random_orbitals(rng, [1, 6, 8])
    frames = [structure(c) for c in compositions]
    matrices = [random_symmetric(rng, len(orbital_labels(f.numbers, orbitals))) for f in frames]
    return orbitals, frames, matrices


COMPOSITIONS = st.lists(st.lists(st.sampled_from([1, 6, 8]), min_size=1, max_size=4),
                        min_size=1, max_size=3)


def dropped_components(blocks):
    """Largest coupled component that couple_blocks drops (computed directly)."""
    from ncsym.cg import clebsch_gordan

    worst, scale = 0.0, 0.0
    for key, block in blocks.items():
        scale = max(scale, float(np.max(np.abs(block.values))))
        every = range(abs(key.l_i - key.l_j), key.l_i + key.l_j + 1)
        for lam in set(every) - set(kept_lambdas(key)):
            cg = clebsch_gordan(key.l_i, key.l_j, lam).todense()
            worst = max(worst, float(np.max(np.abs(np.einsum("sab,abm->sm", block.values, cg)))))
    return worst, scale


@settings(deadline=None)
@given(seed=st.integers(0, 2**32 - 1), compositions=COMPOSITIONS)
def test_round_trip_and_selection_rules_random(seed, compositions):
    orbitals, frames, matrices = random_case(seed, compositions)
    blocks = matrix_to_blocks(matrices, frames, orbitals)
    coupled = couple_blocks(blocks)
    back = decouple_blocks(coupled)
    for key, block in blocks.items():
        got = back[key].values if key in back else np.zeros_like(block.values)
        assert np.max(np.abs(got - block.values)) < ROUND_TRIP_TOLERANCE
    rebuilt = blocks_to_matrix(back, frames, orbitals)
    for m, r in zip(matrices, rebuilt, strict=True):
        assert np.max(np.abs(m - r)) < ROUND_TRIP_TOLERANCE
    worst, scale = dropped_components(blocks)
    assert worst <= SELECTION_TOLERANCE * max(scale, 1.0)


@settings(deadline=None)
@given(seed=st.integers(0, 2**32 - 1), compositions=COMPOSITIONS,
       rotation=rotations(improper=None))
def test_coupled_blocks_equivariant_random(seed, compositions, rotation):
    """Universal: rotating the AO basis by D rotates every coupled block by D_lambda.

    For improper rotations blocks with sigma = -1 pick up an extra det(R) = -1
    (DESIGN.md: X(R A) = det(R)^((1 - sigma) / 2) D_lambda(R) X(A)).
    """
    orbitals, frames, matrices = random_case(seed, compositions)
    rotated = [ao_wigner(rotation, f.numbers, orbitals) @ m
               @ ao_wigner(rotation, f.numbers, orbitals).T for f, m in zip(frames, matrices,
                                                                             strict=True)]
    ref = couple_blocks(matrix_to_blocks(matrices, frames, orbitals))
    rot = couple_blocks(matrix_to_blocks(rotated, frames, orbitals))
    d = wigner_from_sphericart(rotation, 6)
    det = round(np.linalg.det(rotation))
    assert ref.keys == rot.keys
    for (key, a), b in zip(ref.items(), rot.blocks, strict=True):
        factor = det if key["o3_sigma"] == -1 else 1
        expected = factor * np.einsum("mn,snp->smp", d[key["o3_lambda"]], a.values)
        assert np.max(np.abs(b.values - expected)) < EQUIVARIANCE_TOLERANCE


def test_inversion_parity():
    """Under inversion a coupled block picks up sigma (-1)^lambda = (-1)^(l_i + l_j)."""
    orbitals, frames, matrices = random_case(11, [[8, 1, 1], [6, 8]])
    inverted = []
    for f, m in zip(frames, matrices, strict=True):
        d = ao_wigner(-np.eye(3), f.numbers, orbitals)
        inverted.append(d @ m @ d.T)
    ref = couple_blocks(matrix_to_blocks(matrices, frames, orbitals))
    inv = couple_blocks(matrix_to_blocks(inverted, frames, orbitals))
    for (key, a), b in zip(ref.items(), inv.blocks, strict=True):
        factor = key["o3_sigma"] * (-1) ** key["o3_lambda"]
        assert factor == (-1) ** (key["l_i"] + key["l_j"])
        np.testing.assert_allclose(b.values, factor * a.values, atol=EQUIVARIANCE_TOLERANCE)


def test_layout_of_coupled_blocks():
    orbitals = {8: [(1, 0), (2, 1)], 1: [(1, 0), (2, 1)]}
    frame = structure([8, 1, 1])
    rng = np.random.default_rng(0)
    m = random_symmetric(rng, len(orbital_labels(frame.numbers, orbitals)))
    coupled = couple_blocks(matrix_to_blocks(m, frame, orbitals))
    assert coupled.keys.names == COUPLED_KEY_NAMES
    assert coupled.info["orbitals"] == {"8": [[1, 0], [2, 1]], "1": [[1, 0], [2, 1]]}
    for key, block in coupled.items():
        assert key["o3_sigma"] == (-1) ** (key["l_i"] + key["l_j"] + key["o3_lambda"])
        assert block.samples.names == ("system", "first_atom", "second_atom")
        assert block.properties.names == ("_",) and block.values.shape[2] == 1
    # H p-p same shell: types 0, +1 keep lambda 0, 2; type -1 keeps lambda 1
    pp = [(k["block_type"], k["o3_lambda"]) for k, _ in coupled.items()
          if k["first_atom_type"] == 1 and k["l_i"] == k["l_j"] == 1 and k["block_type"] != 2]
    assert sorted(pp) == [(-1, 1), (0, 0), (0, 2), (1, 0), (1, 2)]
    # O-H hetero p-p: all of lambda 0, 1, 2
    assert sorted(k["o3_lambda"] for k, _ in coupled.items()
                  if k["block_type"] == 2 and k["l_i"] == k["l_j"] == 1) == [0, 1, 2]
    assert kept_lambdas(BlockKey(-1, 1, 1, 1, 0, 1, 0)) == []
    assert kept_lambdas(BlockKey(1, 1, 1, 1, 0, 2, 1)) == [1]
    assert kept_lambdas(BlockKey(0, 8, 8, 3, 2, 3, 2)) == [0, 2, 4]


def test_pyscf_water_selection_rules_and_rotation():
    pytest.importorskip("pyscf")
    from ncsym.rotations import random_rotation

    from ._ham_utils import rotated, scf

    water = molecule("H2O")
    water.positions += np.array([[0.02, -0.01, 0.03], [0.0, 0.05, -0.02], [-0.03, 0.0, 0.01]])
    rotation = random_rotation(21)
    ref = scf(water, "def2-svp")
    rot = scf(rotated(water, rotation), "def2-svp")
    blocks = matrix_to_blocks(ref.fock[0], water, ref.orbitals)
    worst, scale = dropped_components(blocks)
    assert worst <= SELECTION_TOLERANCE * scale
    coupled = couple_blocks(blocks)
    back = blocks_to_matrix(decouple_blocks(coupled), water, ref.orbitals)
    assert np.max(np.abs(back - ref.fock[0])) < ROUND_TRIP_TOLERANCE
    coupled_rot = couple_blocks(matrix_to_blocks(rot.fock[0], water, ref.orbitals))
    d = wigner_from_sphericart(rotation, 4)
    for (key, a), b in zip(coupled.items(), coupled_rot.blocks, strict=True):
        expected = np.einsum("mn,snp->smp", d[key["o3_lambda"]], a.values)
        assert np.max(np.abs(b.values - expected)) < SCF_TOLERANCE


def test_decouple_bad_input():
    orbitals = {1: [(1, 0), (2, 1)]}
    frame = structure([1, 1])
    m = random_symmetric(np.random.default_rng(1), 8)
    coupled = couple_blocks(matrix_to_blocks(m, frame, orbitals))
    with pytest.raises(TypeError, match="BlockMap"):
        decouple_blocks({})
    renamed = BlockMap(Labels(tuple(f"k{i}" for i in range(9)), coupled.keys.values),
                       coupled.blocks)
    with pytest.raises(ValueError, match="keys must be named"):
        decouple_blocks(renamed)
    values = coupled.keys.values.copy()
    values[0, 8] *= -1
    with pytest.raises(ValueError, match="o3_sigma must be"):
        decouple_blocks(BlockMap(Labels(COUPLED_KEY_NAMES, values), coupled.blocks))
    values = coupled.keys.values.copy()
    values[0, 7] = 5
    with pytest.raises(ValueError, match="violates"):
        decouple_blocks(BlockMap(Labels(COUPLED_KEY_NAMES, values), coupled.blocks))
    # the lambda = 0 and 2 blocks of one key must share their samples
    frame3 = structure([1, 1, 1])
    m3 = random_symmetric(np.random.default_rng(2), 12)
    coupled3 = couple_blocks(matrix_to_blocks(m3, frame3, orbitals))
    lam2 = coupled3.find(block_type=0, n_i=2, l_i=1, n_j=2, l_j=1, o3_lambda=2)[0]
    blocks = list(coupled3.blocks)
    b = blocks[lam2]
    blocks[lam2] = Block(b.values, Labels(b.samples.names, b.samples.values[::-1].copy()),
                         b.properties)
    with pytest.raises(ValueError, match="different samples"):
        decouple_blocks(BlockMap(coupled3.keys, blocks))
