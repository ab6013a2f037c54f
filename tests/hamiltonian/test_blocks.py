"""matrix_to_blocks / blocks_to_matrix: exact round trips, block layout, bad input."""

from __future__ import annotations

import ase
import numpy as np
import pytest
from ase.build import molecule
from hypothesis import given, settings
from hypothesis import strategies as st

from ncsym.hamiltonian import (
    BlockKey,
    MatrixBlock,
    MatrixBlocks,
    blocks_to_matrix,
    check_orbitals,
    matrix_to_blocks,
    orbital_labels,
)

from ._ham_utils import random_orbitals, random_symmetric

#: matrix -> blocks -> matrix, absolute, for O(1) (random) or O(20) Hartree (Fock) entries.
ROUND_TRIP_TOLERANCE = 1e-14

WATER_SVP = {8: [(1, 0), (2, 0), (3, 0), (2, 1), (3, 1), (3, 2)], 1: [(1, 0), (2, 0), (2, 1)]}


def n_ao(numbers, orbitals) -> int:
    return len(orbital_labels(numbers, orbitals))


def structure(numbers) -> ase.Atoms:
    numbers = list(numbers)
    return ase.Atoms(numbers=numbers, positions=np.arange(3 * len(numbers)).reshape(-1, 3))


@settings(deadline=None)
@given(
    seed=st.integers(0, 2**32 - 1),
    compositions=st.lists(st.lists(st.sampled_from([1, 6, 8]), min_size=1, max_size=5),
                          min_size=1, max_size=4),
)
def test_round_trip_random_symmetric(seed, compositions):
    rng = np.random.default_rng(seed)
    orbitals = random_orbitals(rng, [1, 6, 8])
    frames = [structure(c) for c in compositions]
    matrices = [random_symmetric(rng, n_ao(f.numbers, orbitals)) for f in frames]
    blocks = matrix_to_blocks(matrices, frames, orbitals)
    back = blocks_to_matrix(blocks, frames, orbitals)
    for m, b in zip(matrices, back, strict=True):
        assert np.max(np.abs(m - b)) < ROUND_TRIP_TOLERANCE
        assert np.array_equal(b, b.T)


def test_round_trip_pyscf_water():
    pytest.importorskip("pyscf")
    from ncsym.hamiltonian.pyscf_data import distort

    from ._ham_utils import scf

    rng = np.random.default_rng(0)
    frames = [distort(molecule("H2O"), 0.08, rng) for _ in range(3)]
    focks = [scf(f, "def2-svp").fock[0] for f in frames]
    orbitals = scf(frames[0], "def2-svp").orbitals
    assert orbitals == WATER_SVP
    back = blocks_to_matrix(matrix_to_blocks(focks, frames, orbitals), frames, orbitals)
    for m, b in zip(focks, back, strict=True):
        assert np.max(np.abs(m - b)) < ROUND_TRIP_TOLERANCE


def test_h2_known_values():
    orbitals = {1: [(1, 0)]}
    h = np.array([[-0.5, -0.3], [-0.3, -0.4]])
    blocks = matrix_to_blocks(h, structure([1, 1]), orbitals)
    assert set(blocks) == {BlockKey(t, 1, 1, 1, 0, 1, 0) for t in (0, 1, -1)}
    on_site = blocks[(0, 1, 1, 1, 0, 1, 0)]
    assert on_site.samples.tolist() == [[0, 0, 0], [0, 1, 1]]
    np.testing.assert_array_equal(on_site.values[:, 0, 0], [-0.5, -0.4])
    plus, minus = blocks[(1, 1, 1, 1, 0, 1, 0)], blocks[(-1, 1, 1, 1, 0, 1, 0)]
    assert plus.samples.tolist() == [[0, 0, 1]]
    assert plus.values[0, 0, 0] == pytest.approx(-0.6 / np.sqrt(2), abs=1e-16)
    assert minus.values[0, 0, 0] == 0.0


def test_plus_minus_and_transposes():
    """H^± = (H_ij ± H_ji)/sqrt2 and the on-site / pair shell-pair transposes."""
    rng = np.random.default_rng(5)
    orbitals = {1: [(1, 0), (2, 1)]}
    h = random_symmetric(rng, 8)
    blocks = matrix_to_blocks(h, structure([1, 1]), orbitals)
    # atom 0 AOs 0..3 (s, p), atom 1 AOs 4..7
    s_p = blocks[(1, 1, 1, 1, 0, 2, 1)].values[0]
    np.testing.assert_allclose(s_p, (h[0:1, 5:8] + h[4:5, 1:4]) / np.sqrt(2), atol=1e-15)
    p_p_minus = blocks[(-1, 1, 1, 2, 1, 2, 1)].values[0]
    np.testing.assert_allclose(p_p_minus, (h[1:4, 5:8] - h[5:8, 1:4]) / np.sqrt(2), atol=1e-15)
    np.testing.assert_allclose(p_p_minus, -p_p_minus.T, atol=1e-15)
    # only first-shell <= second-shell keys for equal species
    assert (0, 1, 1, 2, 1, 1, 0) not in blocks and (1, 1, 1, 2, 1, 1, 0) not in blocks


def test_hetero_blocks_lower_z_first():
    orbitals = {8: [(1, 0), (2, 1)], 1: [(1, 0)]}
    rng = np.random.default_rng(2)
    frame = structure([8, 1, 1])  # O first in the structure
    h = random_symmetric(rng, n_ao(frame.numbers, orbitals))
    blocks = matrix_to_blocks(h, frame, orbitals)
    assert all(k.first_atom_type < k.second_atom_type for k in blocks if k.block_type == 2)
    h_p = blocks[(2, 1, 8, 1, 0, 2, 1)]
    assert h_p.samples.tolist() == [[0, 1, 0], [0, 2, 0]]  # first atom = the H
    np.testing.assert_array_equal(h_p.values[0], h[4:5, 1:4])  # H atom 1 s row, O p columns


def test_many_frames_match_single_frames():
    rng = np.random.default_rng(3)
    orbitals = {8: [(1, 0), (2, 1)], 1: [(1, 0), (2, 1)], 6: [(1, 0)]}
    frames = [structure(c) for c in ([8, 1, 1], [1, 6, 1, 8], [8, 1, 1])]
    matrices = [random_symmetric(rng, n_ao(f.numbers, orbitals)) for f in frames]
    together = matrix_to_blocks(matrices, frames, orbitals)
    for s, (f, m) in enumerate(zip(frames, matrices, strict=True)):
        alone = matrix_to_blocks(m, f, orbitals)
        for key, block in alone.items():
            rows = together[key].samples[:, 0] == s
            np.testing.assert_array_equal(together[key].samples[rows, 1:], block.samples[:, 1:])
            np.testing.assert_array_equal(together[key].values[rows], block.values)
    for block in together.values():
        order = np.lexsort(block.samples.T[::-1])
        np.testing.assert_array_equal(order, np.arange(len(block)))


def test_missing_pairs_are_zero():
    orbitals = {1: [(1, 0)]}
    h = np.array([[-0.5, -0.3], [-0.3, -0.4]])
    frame = structure([1, 1])
    blocks = matrix_to_blocks(h, frame, orbitals)
    on_site = {k: b for k, b in blocks.items() if k.block_type == 0}
    np.testing.assert_array_equal(blocks_to_matrix(MatrixBlocks(on_site), frame, orbitals),
                                  np.diag([-0.5, -0.4]))


def test_orbital_labels_and_check():
    labels = orbital_labels([8, 1], {"O": [(1, 0), (2, 1)], "H": [(1, 0)]})
    assert labels.tolist() == [[0, 1, 0, 0], [0, 2, 1, -1], [0, 2, 1, 0], [0, 2, 1, 1],
                               [1, 1, 0, 0]]
    assert check_orbitals({"C": [(1, 0)]}) == {6: ((1, 0),)}
    with pytest.raises(ValueError, match="repeats a shell"):
        check_orbitals({1: [(1, 0), (1, 0)]})
    with pytest.raises(ValueError, match="unknown chemical symbol"):
        check_orbitals({"Xx": [(1, 0)]})
    with pytest.raises(ValueError, match="negative"):
        check_orbitals({1: [(1, -1)]})
    with pytest.raises(TypeError, match="integer pairs"):
        check_orbitals({1: [(1.5, 0)]})
    with pytest.raises(TypeError, match="mapping"):
        check_orbitals([(1, 0)])


def test_bad_input():
    orbitals = {8: [(1, 0), (2, 1)], 1: [(1, 0)]}
    frame = structure([8, 1, 1])
    rng = np.random.default_rng(4)
    h = random_symmetric(rng, 6)
    with pytest.raises(ValueError, match=r"must have shape \(6, 6\)"):
        matrix_to_blocks(h[:5, :5], frame, orbitals)
    asym = h.copy()
    asym[0, 1] += 1e-3
    with pytest.raises(ValueError, match="must be symmetric"):
        matrix_to_blocks(asym, frame, orbitals)
    with pytest.raises(ValueError, match=r"species \[6\] .* no entry in `orbitals`"):
        matrix_to_blocks(h, structure([8, 1, 6]), orbitals)
    with pytest.raises(ValueError, match="got 1 matrices for 2 structures"):
        matrix_to_blocks([h], [frame, frame], orbitals)
    with pytest.raises(ValueError, match="NaN"):
        matrix_to_blocks(np.full((6, 6), np.nan), frame, orbitals)
    with pytest.raises(TypeError, match="ase.Atoms"):
        matrix_to_blocks(h, "H2O", orbitals)

    blocks = matrix_to_blocks(h, frame, orbitals)
    with pytest.raises(ValueError, match="holds 1 structures"):
        key = (0, 8, 8, 1, 0, 1, 0)
        bad = dict(blocks)
        bad[key] = MatrixBlock(np.array([[3, 0, 0]]), np.ones((1, 1, 1)))
        blocks_to_matrix(MatrixBlocks(bad), frame, orbitals)
    with pytest.raises(ValueError, match="do not match the key"):
        bad = dict(blocks)
        bad[(0, 8, 8, 1, 0, 1, 0)] = MatrixBlock(np.array([[0, 1, 1]]), np.ones((1, 1, 1)))
        blocks_to_matrix(MatrixBlocks(bad), frame, orbitals)
    with pytest.raises(ValueError, match="duplicated samples"):
        bad = dict(blocks)
        bad[(0, 8, 8, 1, 0, 1, 0)] = MatrixBlock(np.array([[0, 0, 0], [0, 0, 0]]),
                                                 np.ones((2, 1, 1)))
        blocks_to_matrix(MatrixBlocks(bad), frame, orbitals)
    with pytest.raises(ValueError, match="shell \\(n, l\\) not in `orbitals`"):
        blocks_to_matrix(MatrixBlocks({(0, 8, 8, 5, 0, 5, 0): MatrixBlock(
            np.array([[0, 0, 0]]), np.ones((1, 1, 1)))}), frame, orbitals)
    with pytest.raises(ValueError, match="lower Z first"):
        blocks_to_matrix(MatrixBlocks({(2, 8, 1, 1, 0, 1, 0): MatrixBlock(
            np.array([[0, 0, 1]]), np.ones((1, 1, 1)))}), frame, orbitals)
    with pytest.raises(ValueError, match=r"must have values of shape \(n, 1, 3\)"):
        MatrixBlocks({(0, 8, 8, 1, 0, 2, 1): MatrixBlock(np.zeros((1, 3), int),
                                                         np.ones((1, 1, 1)))})
    with pytest.raises(ValueError, match="`block_type` must be one of"):
        MatrixBlocks({(3, 8, 8, 1, 0, 1, 0): MatrixBlock(np.zeros((1, 3), int),
                                                         np.ones((1, 1, 1)))})
