"""Three-centre features rho_i^(nu) ⊗ g_ij ⊗ g_ik: values, metadata, symmetries, memory."""

import ase
import ase.build
import numpy as np
import pytest
from hypothesis import example, given

import ncsym
import ncsym.pairs as pairs_module
from ncsym.pairs import ThreeCentreFeatures
from ncsym.testing import assert_inversion_parity, assert_rotation_equivariant
from ncsym.testing import strategies as nst

#: Issue 6: equivariance to 1e-12 (relative block error).
EQUIVARIANCE_RTOL = 1e-12
#: Agreement with the einsum reference and under atom permutations.
REFERENCE_RTOL = 1e-12

SPECIES = (1, 6, 8)
TINY = dict(cutoff=3.0, cutoff_width=0.5, density_width=0.3, max_radial=1, max_angular=1, species=SPECIES)


def _methanol():
    return ase.build.molecule("CH3OH")


def _cg(l1, l2, lam):
    return ncsym.clebsch_gordan(l1, l2, lam).todense()


def _sl(l):
    return slice(l * l, (l + 1) * (l + 1))


def _rel(a, b):
    return np.abs(a - b).max(initial=0.0) / max(np.abs(b).max(initial=0.0), 1e-300)


def _expansions(frame, hypers):
    from ncsym.density import PairExpansion, SphericalExpansion

    h = {k: v for k, v in hypers.items() if k != "species"}
    dense = SphericalExpansion(**h, species=list(SPECIES)).compute_dense([frame])
    pair = PairExpansion(**h).compute_dense([frame])
    return dense, pair


def _pair_row(pair, i, j):
    rows = np.nonzero(
        (pair.first_atom == i) & (pair.second_atom == j) & np.all(pair.cell_shift == 0, axis=1)
    )[0]
    assert rows.size == 1
    return int(rows[0])


def test_values_match_sequential_einsum():
    frame = _methanol()
    calc = ThreeCentreFeatures(**TINY, symmetrise=False, max_lambda=2)
    out = calc.compute(frame)
    dense, pair = _expansions(frame, TINY)
    block = out.block(center_type=6, second_atom_type=1, third_atom_type=8, o3_lambda=2, o3_sigma=1)
    assert block.samples.names == (
        "system",
        "first_atom",
        "second_atom",
        "third_atom",
        "cell_shift_a_2",
        "cell_shift_b_2",
        "cell_shift_c_2",
        "cell_shift_a_3",
        "cell_shift_b_3",
        "cell_shift_c_3",
    )
    p = block.properties
    assert p.names == ("k_12", "sigma_12", "l_3", "l_1", "l_2", "neighbor_1_type", "n_1", "n_2", "n_3")
    checked = 0
    for row, s in enumerate(block.samples.values):
        _, i, j, k = s[:4]
        ci = int(np.nonzero(dense.atom == i)[0][0])
        gij = pair.values[_pair_row(pair, i, j)]
        gik = pair.values[_pair_row(pair, i, k)]
        for l1, l2, k12, l3 in [(1, 1, 2, 1), (1, 1, 1, 1), (0, 1, 1, 1), (1, 0, 1, 1), (1, 1, 0, 1)]:
            s12 = (-1) ** (l1 + l2 + k12)
            if s12 * (-1) ** (k12 + l3 + 2) != 1 or not abs(k12 - l3) <= 2 <= k12 + l3:
                continue
            x = np.einsum(
                "abc,ap,bq->cpq",
                _cg(l1, l2, k12),
                dense.values[ci][_sl(l1)].reshape(2 * l1 + 1, -1),
                gij[_sl(l2)],
            ).reshape(2 * k12 + 1, -1)
            ref = np.einsum("abc,ap,bq->cpq", _cg(k12, l3, 2), x, gik[_sl(l3)]).reshape(5, -1)
            mask = (p["l_1"] == l1) & (p["l_2"] == l2) & (p["k_12"] == k12) & (p["l_3"] == l3)
            assert _rel(block.values[row][:, mask], ref) < REFERENCE_RTOL
            checked += 1
    assert checked > 3


def test_triple_counts_and_symmetrised_layout():
    frame = _methanol()
    plain = ThreeCentreFeatures(**TINY, symmetrise=False).compute(frame)
    sym = ThreeCentreFeatures(**TINY).compute(frame)
    d = frame.get_all_distances()
    neighbours = [(d[i] < TINY["cutoff"]).sum() - 1 for i in range(len(frame))]
    n_ordered = sum(n * (n - 1) for n in neighbours)

    def count(features, **selection):
        return sum(
            len(features.blocks[i].samples) for i in features.find(o3_lambda=0, o3_sigma=1, **selection)
        )

    assert count(plain) == n_ordered
    assert count(sym, block_type=1) + count(sym, block_type=2) == n_ordered // 2
    assert count(sym, block_type=1) == count(sym, block_type=-1)
    for key, block in sym.items():
        s = block.samples.values
        z = frame.numbers
        if len(s):
            assert np.all(z[s[:, 2]] == key["second_atom_type"]) and np.all(
                z[s[:, 3]] == key["third_atom_type"]
            )
        if key["block_type"] == 2:
            assert key["second_atom_type"] < key["third_atom_type"]
            assert block.properties.names[0] == "direction"
        else:
            assert key["second_atom_type"] == key["third_atom_type"]
            assert np.all(s[:, 2] < s[:, 3])
        assert np.array_equal(s, s[np.lexsort(s.T[::-1])])


@given(frame=nst.molecules(species=SPECIES, min_atoms=3, max_atoms=5), rotation=nst.rotations(improper=None))
@example(frame=nst.atoms_on_axis(), rotation=nst.HALF_TURNS["x"])
def test_rotation_and_inversion_equivariance(frame, rotation):
    calc = ThreeCentreFeatures(**TINY, max_lambda=2)
    assert_rotation_equivariant(calc.compute, frame, rotation, rtol=EQUIVARIANCE_RTOL)
    assert_inversion_parity(calc.compute, frame, rtol=EQUIVARIANCE_RTOL)


def _by_sample(features, key):
    block = features.block(**key)
    return {tuple(int(v) for v in s): block.values[r] for r, s in enumerate(block.samples.values)}


def test_exchange_of_like_neighbours_and_permutations():
    frame = _methanol()
    calc = ThreeCentreFeatures(**TINY, max_lambda=2)
    ref = calc.compute(frame)
    rng = np.random.default_rng(3)
    perm = rng.permutation(len(frame))  # new atom k is old atom perm[k]
    inverse = np.argsort(perm)  # old atom i is new atom inverse[i]
    out = calc.compute(frame[perm])
    n_flipped = 0
    for key, block in ref.items():
        if key["block_type"] == 2:
            continue
        other = _by_sample(out, key)
        for r, s in enumerate(block.samples.values):
            i, j, k = (int(inverse[a]) for a in s[1:4])
            sign = 1
            if j > k:  # the exchanged order is stored: + unchanged, - negated
                j, k, sign = k, j, key["block_type"]
                n_flipped += sign == -1
            got = other[(0, i, j, k, 0, 0, 0, 0, 0, 0)]
            assert _rel(got, sign * block.values[r]) < REFERENCE_RTOL
    assert n_flipped > 0


def test_periodic_triples_carry_both_shifts():
    frame = ase.build.bulk("Si", "diamond", 5.43)
    calc = ThreeCentreFeatures(
        cutoff=2.6, cutoff_width=0.5, density_width=0.3, max_radial=1, max_angular=1, symmetrise=False
    )
    out = calc.compute(frame)
    block = out.block(center_type=14, second_atom_type=14, third_atom_type=14, o3_lambda=0, o3_sigma=1)
    # 4 nearest neighbours per atom (2.35 A): 2 atoms x 4 x 3 ordered triples, all distinct
    assert len(block.samples) == 2 * 4 * 3
    s = block.samples.values
    vec_j = frame.positions[s[:, 2]] - frame.positions[s[:, 1]] + s[:, 4:7] @ frame.cell.array
    vec_k = frame.positions[s[:, 3]] - frame.positions[s[:, 1]] + s[:, 7:10] @ frame.cell.array
    np.testing.assert_allclose(np.linalg.norm(vec_j, axis=1), 5.43 * np.sqrt(3) / 4)
    np.testing.assert_allclose(np.linalg.norm(vec_k, axis=1), 5.43 * np.sqrt(3) / 4)
    assert np.all(np.linalg.norm(vec_j - vec_k, axis=1) > 1.0)


def test_nu0_and_memory_budget(monkeypatch):
    frame = _methanol()
    out = ThreeCentreFeatures(**TINY, correlation_order=0).compute(frame)
    block = out.block(
        block_type=1, center_type=6, second_atom_type=1, third_atom_type=1, o3_lambda=0, o3_sigma=1
    )
    assert block.properties.names == ("k_12", "sigma_12", "l_3", "n_2", "n_3")
    with pytest.raises(ValueError, match="three-centre features of .* ordered triples need"):
        ThreeCentreFeatures(**TINY, memory_budget=10_000).compute(frame)
    # a budget that holds the output but leaves one triple's intermediates: chunked, same values
    full = ThreeCentreFeatures(**TINY, symmetrise=False).compute(frame)
    needed = sum(b.values.nbytes for b in full.blocks)
    monkeypatch.setattr(pairs_module, "_MIN_CHUNK", 1)
    monkeypatch.setattr(pairs_module, "_INTERMEDIATE_SHARE", 0.0)
    sizes = []
    chunks = pairs_module._chunks

    def recording(n, bytes_per_row, budget):
        for sl in chunks(n, bytes_per_row, budget):
            sizes.append(sl.stop - sl.start)
            yield sl

    monkeypatch.setattr(pairs_module, "_chunks", recording)
    chunked = ThreeCentreFeatures(**TINY, symmetrise=False, memory_budget=needed + 1).compute(frame)
    assert max(sizes) == 1 and len(sizes) > 10
    for b1, b2 in zip(full.blocks, chunked.blocks, strict=True):
        np.testing.assert_array_equal(b1.values, b2.values)
