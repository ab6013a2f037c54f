"""Pair features rho_ij^(nu), their variants and the Hamiltonian feature set: values and layout.

Values are checked against independent references (dense CG tables and ``np.einsum`` over the
expansions of :mod:`ncsym.density`) and against featomic's ``EquivariantPowerSpectrumByPair``.
"""

import ase
import ase.build
import numpy as np
import pytest

import ncsym
from ncsym.pairs import (
    MessagePassingFeatures,
    PairCorrelations,
    PairFeatures,
    hamiltonian_features,
    symmetrise_pairs,
)

#: Relative agreement with featomic (issue 6 acceptance criterion).
FEATOMIC_RTOL = 1e-10
#: Radial-integral spline accuracy of the featomic comparison (featomic runs unsplined).
SPLINE_ACCURACY = 1e-12
#: Agreement with the einsum references (same expansion, different summation order).
REFERENCE_RTOL = 1e-12

SMALL = dict(cutoff=3.0, cutoff_width=0.5, density_width=0.3, max_radial=2, max_angular=2)


def _water():
    return ase.Atoms("OH2", positions=[[0.0, 0.0, 0.1], [0.0, 0.76, -0.45], [0.05, -0.74, -0.5]], pbc=False)


def _expansions(frames, species, **hypers):
    from ncsym.density import PairExpansion, SphericalExpansion

    pair_cutoff = hypers.pop("pair_cutoff", hypers["cutoff"])
    dense = SphericalExpansion(species=species, **hypers).compute_dense(frames)
    hypers = dict(hypers, cutoff=pair_cutoff)
    pair = PairExpansion(**hypers).compute_dense(frames)
    return dense, pair


def _row_of(dense, system, atom):
    lookup = {(int(s), int(a)): r for r, (s, a) in enumerate(zip(dense.system, dense.atom, strict=True))}
    return np.array([lookup[(int(s), int(a))] for s, a in zip(system, atom, strict=True)])


def _cg(l1, l2, lam):
    return ncsym.clebsch_gordan(l1, l2, lam).todense()


def _sl(l):
    return slice(l * l, (l + 1) * (l + 1))


def _rel(a, b):
    scale = max(np.abs(b).max(initial=0.0), 1e-300)
    return np.abs(a - b).max(initial=0.0) / scale


def _pair_rows(block, pair):
    """Row of the pair expansion for each sample of a PairCorrelations block."""
    keys = {
        (int(s), int(i), int(j), *map(int, c)): r
        for r, (s, i, j, c) in enumerate(
            zip(pair.system, pair.first_atom, pair.second_atom, pair.cell_shift, strict=True)
        )
    }
    return np.array([keys[tuple(int(v) for v in row)] for row in block.samples.values])


# ----------------------------------------------------------------------------- featomic


def _featomic_by_pair(frames, hypers, lmax):
    featomic = pytest.importorskip("featomic")
    from featomic.clebsch_gordan import EquivariantPowerSpectrumByPair

    fh = {
        "cutoff": {
            "radius": hypers["cutoff"],
            "smoothing": {"type": "ShiftedCosine", "width": hypers["cutoff_width"]},
        },
        "density": {"type": "Gaussian", "width": hypers["density_width"]},
        "basis": {
            "type": "TensorProduct",
            "max_angular": lmax,
            "radial": {"type": "Gto", "max_radial": hypers["max_radial"]},
            # exact radial integrals: featomic's default splines (1e-8) would dominate the error
            "spline_accuracy": None,
        },
    }
    calc = EquivariantPowerSpectrumByPair(
        featomic.SphericalExpansion(**fh), featomic.SphericalExpansionByPair(**fh)
    )
    return calc.compute(frames, neighbors_to_properties=True)


def _compare_featomic(ours, ref):
    worst = 0.0
    for key, block in ref.items():
        selection = {name: int(key[name]) for name in key.names}
        mine = ours.block(**selection)
        rows = [mine.samples.position(tuple(int(v) for v in s)) for s in block.samples.values]
        cols = [mine.properties.position(tuple(int(v) for v in p)) for p in block.properties.values]
        assert None not in rows and None not in cols, selection
        assert tuple(block.properties.names) == mine.properties.names
        if rows:
            got = mine.values[np.array(rows)][:, :, np.array(cols)]
            worst = max(worst, _rel(got, np.asarray(block.values)))
        # samples featomic omits are self pairs, whose l2 > 0 pair expansion vanishes
        extra = np.setdiff1d(np.arange(len(mine.samples)), np.array(rows, dtype=np.int64))
        if extra.size:
            s = mine.samples.values[extra]
            assert np.all(s[:, 1] == s[:, 2]) and np.all(s[:, 3:] == 0)
            assert np.abs(mine.values[extra][:, :, np.array(cols)]).max() == 0.0
    return worst


@pytest.mark.parametrize("periodic", [False, True])
def test_agrees_with_featomic_equivariant_power_spectrum_by_pair(periodic):
    if periodic:
        frame = ase.build.bulk("Si", "diamond", 5.43)
        frame.positions[1] += [0.11, -0.07, 0.05]
        frame = frame.copy()
        frame.numbers[1] = 6
    else:
        frame = ase.build.molecule("CH3CH2OH")
    hypers = dict(cutoff=3.5, cutoff_width=0.5, density_width=0.3, max_radial=3)
    lmax = 3
    ours = PairCorrelations(
        **hypers, max_angular=lmax, max_lambda=2 * lmax, ordered_l=True, spline_accuracy=SPLINE_ACCURACY
    ).compute(frame)
    ref = _featomic_by_pair([frame], hypers, lmax)
    assert _compare_featomic(ours, ref) < FEATOMIC_RTOL


def test_all_l_pairs_contain_ordered_subset():
    frame = ase.build.molecule("CH3OH")
    full = PairCorrelations(**SMALL, max_lambda=4).compute(frame)
    ordered = PairCorrelations(**SMALL, max_lambda=4, ordered_l=True).compute(frame)
    assert full.keys == ordered.keys
    n_swapped = 0
    for (key, block), other in zip(full.items(), ordered.blocks, strict=True):
        l1, l2 = block.properties["l_1"], block.properties["l_2"]
        n_swapped += int(np.sum(l1 > l2))
        cols = [block.properties.position(tuple(p)) for p in other.properties.values]
        np.testing.assert_array_equal(block.values[:, :, cols], other.values)
        assert np.all(other.properties["l_1"] <= other.properties["l_2"]), key
    assert n_swapped > 0


# ----------------------------------------------------------------------------- references


def test_nu1_matches_einsum_reference_all_l():
    frame = _water()
    species = [1, 8]
    calc = PairCorrelations(**SMALL, species=species, max_lambda=4)
    out = calc.compute(frame)
    dense, pair = _expansions([frame], species, **SMALL)
    n_radial = SMALL["max_radial"] + 1
    for key, block in out.items():
        rows = _pair_rows(block, pair)
        ci = _row_of(dense, pair.system[rows], pair.first_atom[rows])
        lam = key["o3_lambda"]
        props = block.properties
        for l1 in range(3):
            for l2 in range(3):
                mask = (props["l_1"] == l1) & (props["l_2"] == l2)
                if not mask.any():
                    continue
                assert abs(l1 - l2) <= lam <= l1 + l2
                assert key["o3_sigma"] == (-1) ** (l1 + l2 + lam)
                rho = dense.values[ci][:, _sl(l1)].reshape(len(ci), 2 * l1 + 1, -1)
                g = pair.values[rows][:, _sl(l2)]
                ref = np.einsum("abc,sap,sbq->scpq", _cg(l1, l2, lam), rho, g).reshape(
                    len(rows), 2 * lam + 1, -1
                )
                assert _rel(block.values[:, :, mask], ref) < REFERENCE_RTOL
                # property order: neighbour type, then n_1, then n_2 fastest
                expected = [(z, n1, n2) for z in species for n1 in range(n_radial) for n2 in range(n_radial)]
                got = list(
                    zip(props["neighbor_1_type"][mask], props["n_1"][mask], props["n_2"][mask], strict=True)
                )
                assert got == expected


def test_nu0_is_the_pair_expansion():
    frame = _water()
    out = PairCorrelations(**SMALL, correlation_order=0, species=[1, 8]).compute(frame)
    _, pair = _expansions([frame], [1, 8], **SMALL)
    for key, block in out.items():
        rows = _pair_rows(block, pair)
        np.testing.assert_array_equal(block.values, pair.values[rows][:, _sl(key["o3_lambda"])])
        assert key["o3_sigma"] == 1
        assert block.properties.names == ("n_2",)


def test_nu2_matches_lambda_soap_times_g():
    frame = _water()
    species = [1, 8]
    hypers = dict(SMALL, max_radial=1)
    out = PairCorrelations(**hypers, correlation_order=2, species=species, max_lambda=2).compute(frame)
    dense, pair = _expansions([frame], species, **hypers)
    block = out.block(o3_lambda=1, o3_sigma=-1, first_atom_type=8, second_atom_type=1)
    rows = _pair_rows(block, pair)
    ci = _row_of(dense, pair.system[rows], pair.first_atom[rows])
    props = block.properties
    assert props.names[:3] == ("k_12", "sigma_12", "l_3")
    checked = 0
    for la in range(3):
        for lb in range(la, 3):
            for k in range(abs(la - lb), la + lb + 1):
                a = dense.values[ci][:, _sl(la)].reshape(len(ci), 2 * la + 1, -1)
                b = dense.values[ci][:, _sl(lb)].reshape(len(ci), 2 * lb + 1, -1)
                soap = np.einsum("abc,sap,sbq->scpq", _cg(la, lb, k), a, b).reshape(len(ci), 2 * k + 1, -1)
                for l3 in range(3):
                    if not abs(k - l3) <= 1 <= k + l3:
                        continue
                    mask = (
                        (props["l_1"] == la)
                        & (props["l_2"] == lb)
                        & (props["k_12"] == k)
                        & (props["l_3"] == l3)
                    )
                    g = pair.values[rows][:, _sl(l3)]
                    ref = np.einsum("abc,sap,sbq->scpq", _cg(k, l3, 1), soap, g).reshape(len(rows), 3, -1)
                    if (-1) ** (la + lb + k) * (-1) ** (k + l3 + 1) != -1:
                        assert not mask.any()
                        continue
                    assert mask.sum() == ref.shape[2]
                    assert _rel(block.values[:, :, mask], ref) < REFERENCE_RTOL
                    checked += 1
    assert checked > 5


def test_j_decorated_variants_match_references():
    frame = _water()
    species = [1, 8]
    dense, pair = _expansions([frame], species, **SMALL)
    j_feat = PairCorrelations(**SMALL, species=species, variant="j", max_lambda=2).compute(frame)
    block = j_feat.block(o3_lambda=2, o3_sigma=1, first_atom_type=1, second_atom_type=8)
    rows = _pair_rows(block, pair)
    cj = _row_of(dense, pair.system[rows], pair.second_atom[rows])
    mask = (block.properties["l_1"] == 1) & (block.properties["l_2"] == 1)
    rho_j = dense.values[cj][:, _sl(1)].reshape(len(cj), 3, -1)
    ref = np.einsum("abc,sap,sbq->scpq", _cg(1, 1, 2), rho_j, pair.values[rows][:, _sl(1)])
    assert _rel(block.values[:, :, mask], ref.reshape(len(rows), 5, -1)) < REFERENCE_RTOL

    ij = PairCorrelations(**SMALL, species=species, variant="ij", max_lambda=1).compute(frame)
    block = ij.block(o3_lambda=1, o3_sigma=-1, first_atom_type=8, second_atom_type=1)
    rows = _pair_rows(block, pair)
    ci = _row_of(dense, pair.system[rows], pair.first_atom[rows])
    cj = _row_of(dense, pair.system[rows], pair.second_atom[rows])
    p = block.properties
    mask = (p["l_1"] == 1) & (p["k_23"] == 2) & (p["l_2"] == 1) & (p["l_3"] == 2)
    inner = np.einsum(
        "abc,sap,sbq->scpq",
        _cg(1, 2, 2),
        dense.values[cj][:, _sl(1)].reshape(len(cj), 3, -1),
        pair.values[rows][:, _sl(2)],
    ).reshape(len(rows), 5, -1)
    rho_i = dense.values[ci][:, _sl(1)].reshape(len(ci), 3, -1)
    ref = np.einsum("abc,sap,sbq->scpq", _cg(1, 2, 1), rho_i, inner).reshape(len(rows), 3, -1)
    assert _rel(block.values[:, :, mask], ref) < REFERENCE_RTOL


def test_message_passing_matches_brute_force_sum():
    frame = _water()
    species = [1, 8]
    hypers = dict(SMALL, max_radial=1, max_angular=1)
    out = MessagePassingFeatures(**hypers, species=species, max_lambda=1).compute(frame)
    dense, pair = _expansions([frame], species, **hypers)
    block = out.block(o3_lambda=1, o3_sigma=1, center_type=8)
    (i,) = block.samples["atom"]
    p = block.properties
    for zj in species:
        for l1, l2, l3, k in [(1, 1, 1, 0), (0, 1, 1, 1), (1, 0, 1, 1), (1, 1, 1, 2)]:
            s3 = 1
            sk = (-1) ** (l2 + l3 + k)
            if (-1) ** (l1 + k + 1) * sk != 1:
                continue
            mask = (
                (p["lambda_1"] == l1)
                & (p["lambda_23"] == k)
                & (p["sigma_23"] == sk)
                & (p["l_2"] == l2)
                & (p["lambda_3"] == l3)
                & (p["sigma_3"] == s3)
                & (p["neighbor_2_type"] == zj)
            )
            ref = 0.0
            ci = _row_of(dense, [0], [i])[0]
            for r in np.nonzero((pair.first_atom == i) & (pair.second_type == zj))[0]:
                cj = _row_of(dense, [0], [pair.second_atom[r]])[0]
                msg = np.einsum(
                    "abc,ap,bq->cpq",
                    _cg(l2, l3, k),
                    pair.values[r][_sl(l2)],
                    dense.values[cj][_sl(l3)].reshape(2 * l3 + 1, -1),
                ).reshape(2 * k + 1, -1)
                ref = ref + np.einsum(
                    "abc,ap,bq->cpq", _cg(l1, k, 1), dense.values[ci][_sl(l1)].reshape(2 * l1 + 1, -1), msg
                ).reshape(3, -1)
            assert mask.sum() == np.shape(ref)[1]
            assert _rel(block.values[0][:, mask], ref) < REFERENCE_RTOL


# ----------------------------------------------------------------------------- Hamiltonian set


HAM = dict(SMALL, pair_cutoff=3.5)


def test_hamiltonian_features_layout():
    frames = [_water(), ase.build.molecule("CH3OH")]
    species = [1, 6, 8]
    feats = hamiltonian_features(frames, species=species, **HAM)
    assert feats.keys.names == ("block_type", "first_atom_type", "second_atom_type", "o3_lambda", "o3_sigma")
    expected = set()
    for lam in range(SMALL["max_angular"] + 1):
        for sigma in (1, -1):
            for z in species:
                expected |= {(0, z, z, lam, sigma), (1, z, z, lam, sigma), (-1, z, z, lam, sigma)}
            expected |= {(2, a, b, lam, sigma) for a in species for b in species if a < b}
    assert {tuple(k) for k in feats.keys} == expected
    for key, block in feats.items():
        s = block.samples.values
        assert block.samples.names == ("system", "first_atom", "second_atom")
        assert block.values.shape[:2] == (len(s), 2 * key["o3_lambda"] + 1)
        assert np.array_equal(s, s[np.lexsort(s.T[::-1])]), "samples must be sorted"
        numbers = [frames[k].numbers for k in s[:, 0]]
        zi = np.array([n[i] for n, i in zip(numbers, s[:, 1], strict=True)], dtype=np.int64)
        zj = np.array([n[j] for n, j in zip(numbers, s[:, 2], strict=True)], dtype=np.int64)
        if len(s):
            assert np.all(zi == key["first_atom_type"]) and np.all(zj == key["second_atom_type"])
        if key["block_type"] == 0:
            assert np.all(s[:, 1] == s[:, 2])
        elif key["block_type"] in (1, -1):
            assert np.all(s[:, 1] < s[:, 2])
        else:
            assert key["first_atom_type"] < key["second_atom_type"]
    # every atom has one on-site sample; every pair within the pair cutoff one pair sample
    onsite = sum(
        len(feats.block(**dict(zip(feats.keys.names, k, strict=True))).samples)
        for k in feats.keys
        if k[0] == 0 and k[3] == 0 and k[4] == 1
    )
    assert onsite == sum(len(f) for f in frames)
    n_pairs = sum(int(np.sum(np.triu(f.get_all_distances() < HAM["pair_cutoff"], 1))) for f in frames)
    pairs = sum(
        len(feats.blocks[i].samples)
        for i, k in enumerate(feats.keys)
        if k[0] in (1, 2) and k[3] == 0 and k[4] == 1
    )
    assert pairs == n_pairs


def test_width_does_not_depend_on_frames():
    calc = PairFeatures(species=[1, 6, 8], **HAM)
    a = calc.compute([_water()])
    b = calc.compute([ase.build.molecule("CH3CH2OH")])
    assert a.keys == b.keys
    for block_a, block_b in zip(a.blocks, b.blocks, strict=True):
        assert block_a.properties == block_b.properties
        assert block_a.values.shape[2] == block_b.values.shape[2]


def test_pair_blocks_are_symmetrised_rho_ij():
    frame = ase.build.molecule("CH3OH")
    species = [1, 6, 8]
    feats = PairFeatures(species=species, **HAM, nu_onsite=1, onsite_pair_sum=False).compute(frame)
    pc = PairCorrelations(**HAM, species=species, max_lambda=2).compute(frame)
    sym = symmetrise_pairs(pc)
    for key, block in feats.items():
        if key["block_type"] == 0:
            continue
        if block.values.shape[2] == 0:  # e.g. (lambda, sigma) = (0, -1) has no nu = 1 pair feature
            assert not sym.find(**key)
            continue
        other = sym.block(**key)
        s = other.samples.values
        keep = s[:, 1] != s[:, 2]
        np.testing.assert_array_equal(block.samples.values, s[keep][:, :3])
        assert _rel(block.values, other.values[keep]) < REFERENCE_RTOL


def test_onsite_pair_sum_is_sum_over_neighbours():
    frame = _water()
    species = [1, 8]
    calc = PairFeatures(species=species, **HAM, nu_onsite=1)
    feats = calc.compute(frame)
    pc = PairCorrelations(**HAM, species=species, max_lambda=2).compute(frame)
    for lam, sigma in [(0, 1), (1, 1), (1, -1), (2, 1)]:
        block = feats.block(
            block_type=0, first_atom_type=8, second_atom_type=8, o3_lambda=lam, o3_sigma=sigma
        )
        terms = calc.term_properties(0, lam, sigma)
        assert [t[0] for t in terms] == ([0, 1] if sigma == 1 else [1])  # rho_i^(1) has sigma = +1 only
        labels = terms[-1][2]
        assert labels.names == ("l_1", "l_3", "neighbor_1_type", "n_1", "neighbor_3_type", "n_3")
        part = block.values[0][:, block.properties["term"] == 1]
        assert part.shape[1] == len(labels)
        for za in species:
            ref = pc.block(o3_lambda=lam, o3_sigma=sigma, first_atom_type=8, second_atom_type=za)
            total = ref.values.sum(axis=0)  # the single oxygen is first_atom of every sample
            cols = [
                ref.properties.position((l1, l3, a1, n1, n3))
                for (l1, l3, a1, n1, a3, n3) in labels
                if a3 == za
            ]
            mine = part[:, labels["neighbor_3_type"] == za]
            assert _rel(mine, total[:, cols]) < REFERENCE_RTOL


def test_single_atom_has_only_onsite_samples():
    frame = ase.Atoms("O", positions=[[0.0, 0.0, 0.0]])
    feats = PairFeatures(species=[1, 8], **HAM).compute(frame)
    for key, block in feats.items():
        expected = 1 if (key["block_type"] == 0 and key["first_atom_type"] == 8) else 0
        assert len(block.samples) == expected
    pc = PairCorrelations(**SMALL, species=[8]).compute(frame)
    assert all(len(b.samples) == 1 for b in pc.blocks)  # the self pair only


def test_contraction_fit_compute_and_state_roundtrip():
    train = [ase.build.molecule(m) for m in ("H2O", "CH3OH", "CH3CH2OH")]
    calc = PairFeatures(species=[1, 6, 8], **HAM, nu_pair=2, contraction=6, inner_contraction=4)
    with pytest.raises(ValueError, match="call `fit"):
        calc.compute(train)
    calc.fit(train)
    out = calc.compute(train[:2])
    for block in out.blocks:
        assert block.values.shape[2] <= 6
        assert block.properties.names == ("pc",)
    again = PairFeatures(species=[1, 6, 8], **HAM, nu_pair=2, contraction=6, inner_contraction=4)
    again.set_state({k: np.array(v) for k, v in calc.get_state().items()})
    other = again.compute(train[:2])
    for b1, b2 in zip(out.blocks, other.blocks, strict=True):
        np.testing.assert_array_equal(b1.values, b2.values)
    # a fraction of variance, with blocks that have no feature at all (sigma = -1, lambda = 0)
    fraction = PairFeatures(species=[1, 6, 8], **HAM, contraction=0.999).fit(train)
    out = fraction.compute(train)
    empty = out.block(block_type=1, first_atom_type=1, second_atom_type=1, o3_lambda=0, o3_sigma=-1)
    assert empty.values.shape[2] == 0 and len(empty.samples) > 0
    full = PairFeatures(species=[1, 6, 8], **HAM).compute(train)
    for key, block in out.items():
        raw = full.block(**key)
        assert block.values.shape[2] <= raw.values.shape[2]
        if raw.values.size:  # the projection keeps >= 99.9 % of the (uncentred) variance
            kept = np.sum(block.values**2) / np.sum(raw.values**2)
            assert kept >= 0.999 - 1e-9, key
    # without contraction, fit only records the species and is optional
    plain = PairFeatures(**HAM).fit(train)
    assert plain.species_.tolist() == [1, 6, 8]
    assert plain.get_state()["species"].tolist() == [1, 6, 8]


@pytest.mark.parametrize("n_rows, width", [(4, 10), (40, 10)])
def test_pca_matches_svd_of_the_rows(rng, n_rows, width):
    from ncsym.pairs import _PCA

    values = rng.normal(size=(n_rows, 1, width)) * np.linspace(3.0, 0.1, width)
    pca = _PCA(3)
    for part in np.array_split(values, 3):  # streamed in pieces
        pca.update("k", part)
    w = pca.finish()["k"]
    _, _, vt = np.linalg.svd(values[:, 0], full_matrices=False)
    assert w.shape == (width, 3)
    np.testing.assert_allclose(np.abs(w.T @ vt[:3].T), np.eye(3), atol=1e-10)


def test_pca_keeps_a_bounded_random_subset_of_wide_blocks(monkeypatch, rng):
    import ncsym.pairs as pairs_module

    monkeypatch.setattr(pairs_module, "_PCA_MAX_ROWS", 8)
    pca = pairs_module._PCA(0.5)
    basis = np.linalg.qr(rng.normal(size=(20, 3)))[0]  # the data live in 3 dimensions
    for _ in range(5):
        pca.update("k", (rng.normal(size=(6, 3, 3)) @ basis.T))
    assert pca._rows["k"].shape == (8, 20)
    w = pca.finish()["k"]
    np.testing.assert_allclose(w.T @ w, np.eye(w.shape[1]), atol=1e-10)
    np.testing.assert_allclose(basis @ (basis.T @ w), w, atol=1e-10)  # inside the data's span
