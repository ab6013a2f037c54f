"""Tests for ncsym.products: couple_arrays and the block-level CGProduct."""

import numpy as np
import pytest
from hypothesis import example, given
from hypothesis import strategies as st

import ncsym
from ncsym.blocks import Block, BlockMap, Labels
from ncsym.conventions import product_parity
from ncsym.products import CGProduct, cg_terms, couple_arrays, match_rows
from ncsym.rotations import wigner_d
from ncsym.testing import strategies as nst

#: Equivariance of products of random equivariant arrays (relative Frobenius norm).
EQUIVARIANCE_TOL = 1e-12
#: Kernels against np.einsum on dense tables.
KERNEL_TOL = 1e-13


def _rel(got, ref):
    return float(np.linalg.norm(got - ref) / max(np.linalg.norm(ref), 1e-300))


def _rotate(x, d_l, det, sigma):
    """Apply ``det^((1 - sigma)/2) D_l`` on the component axis of ``x`` (n, 2l+1, p)."""
    factor = det if sigma == -1 else 1.0
    return factor * np.einsum("mk,skp->smp", d_l, x)


def test_cg_terms_sorted_read_only_and_exact():
    m1, m2, mu, coef = cg_terms(2, 3, 4)
    assert np.all(np.diff(mu) >= 0)
    assert not coef.flags.writeable
    dense = np.zeros((5, 7, 9))
    dense[m1, m2, mu] = coef
    np.testing.assert_array_equal(dense, ncsym.clebsch_gordan(2, 3, 4).todense())


@given(
    rotation=nst.rotations(improper=None),
    l1=st.integers(0, 4),
    l2=st.integers(0, 4),
    data=st.data(),
    sigmas=st.tuples(st.sampled_from([1, -1]), st.sampled_from([1, -1])),
)
@example(rotation=-np.eye(3), l1=1, l2=2, data=None, sigmas=(1, -1)).via("inversion")
def test_couple_arrays_equivariant(rotation, l1, l2, data, sigmas):
    lam = data.draw(st.integers(abs(l1 - l2), l1 + l2)) if data is not None else 2
    rng = np.random.default_rng(l1 * 100 + l2 * 10 + lam)
    s1, s2 = sigmas
    a = rng.normal(size=(3, 2 * l1 + 1, 2))
    b = rng.normal(size=(3, 2 * l2 + 1, 3))
    d = wigner_d(rotation, max(l1, l2, lam))
    det = float(np.sign(np.linalg.det(rotation)))
    sigma = product_parity(s1, s2, l1, l2, lam)
    for channelwise in (False, True):
        bb = b[:, :, :2] if channelwise else b
        out = couple_arrays(a, bb, l1, l2, lam, channelwise=channelwise)
        rotated = couple_arrays(
            _rotate(a, d[l1], det, s1), _rotate(bb, d[l2], det, s2), l1, l2, lam, channelwise=channelwise
        )
        assert _rel(rotated, _rotate(out, d[lam], det, sigma)) <= EQUIVARIANCE_TOL


def test_couple_arrays_segments_sum_pairs(rng):
    a = rng.normal(size=(4, 3, 2))
    b = rng.normal(size=(6, 5, 2))
    ia = np.array([0, 0, 1, 3, 3, 3])
    ib = np.array([1, 2, 0, 5, 4, 3])
    pairs = couple_arrays(a, b, 1, 2, 2, idx_a=ia, idx_b=ib)
    summed = couple_arrays(a, b, 1, 2, 2, idx_a=ia, idx_b=ib, segments=[0, 2, 3, 3, 6])
    np.testing.assert_allclose(summed[0], pairs[:2].sum(0), atol=KERNEL_TOL)
    np.testing.assert_allclose(summed[2], 0.0)
    np.testing.assert_allclose(summed[3], pairs[3:].sum(0), atol=KERNEL_TOL)


def test_couple_arrays_errors(rng):
    a = rng.normal(size=(4, 3, 2))
    b = rng.normal(size=(4, 5, 3))
    with pytest.raises(ValueError, match="triangle|must satisfy"):
        couple_arrays(a, b, 1, 2, 4)
    with pytest.raises(ValueError, match=r"`a` must have shape \(n, 5, n\)"):
        couple_arrays(a, b, 2, 2, 2)
    with pytest.raises(ValueError, match="channel-wise products need as many properties"):
        couple_arrays(a, b, 1, 2, 2, channelwise=True)
    with pytest.raises(ValueError, match="pass both `idx_a` and `idx_b`"):
        couple_arrays(a, b, 1, 2, 2, idx_a=[0])
    with pytest.raises(ValueError, match=r"`idx_b` must hold row indices in \[0, 4\)"):
        couple_arrays(a, b, 1, 2, 2, idx_a=[0, 1], idx_b=[0, 9])
    with pytest.raises(ValueError, match="`segments` must be a non-decreasing"):
        couple_arrays(a, b, 1, 2, 2, segments=[0, 3, 2, 4])
    with pytest.raises(ValueError, match="have 4 and 2 rows"):
        couple_arrays(a, b[:2], 1, 2, 2)
    with pytest.raises(TypeError, match="`idx_a` must hold integers"):
        couple_arrays(a, b, 1, 2, 2, idx_a=[0.5], idx_b=[0])
    with pytest.raises(ValueError, match="only 'cpu' and 'cuda'"):
        couple_arrays(a, b, 1, 2, 2, backend="tpu")


# ----------------------------------------------------------------------------- CGProduct


def _density_map(rng, lmax=2, n=5, centers=(1, 8), neighbors=(1, 8), n_radial=2, system=0):
    """A density-like BlockMap: keys (o3_lambda, o3_sigma, center_type, neighbor_type)."""
    keys, blocks = [], []
    for ct in centers:
        samples = Labels(("system", "atom"), np.array([[system, i] for i in range(n)]))
        for nt in neighbors:
            for l in range(lmax + 1):
                keys.append((l, 1, ct, nt))
                blocks.append(Block(rng.normal(size=(n, 2 * l + 1, n_radial)), samples, Labels.range("n", n_radial)))
    names = ("o3_lambda", "o3_sigma", "center_type", "neighbor_type")
    return BlockMap(Labels(names, np.array(keys)), blocks, {"species": list(neighbors)})


def test_cg_product_keys_properties_and_values(rng):
    dens = _density_map(rng)
    product = CGProduct(max_angular=2, max_lambda=3, match_keys=["center_type"], skip_redundant=True)
    out = product.compute(dens, dens)
    assert out.keys.names == ("o3_lambda", "o3_sigma", "center_type", "neighbor_1_type", "neighbor_2_type")
    assert int(out.keys.column("o3_lambda").max()) == 3
    blk = out.block(o3_lambda=1, o3_sigma=-1, center_type=8, neighbor_1_type=1, neighbor_2_type=8)
    assert blk.properties.names == ("l_1", "l_2", "n_1", "n_2")
    # sigma = -1 for lam = 1 needs l1 + l2 even (l1 <= l2 <= 2, triangle rule): (1, 1), (2, 2)
    pairs = {tuple(r) for r in blk.properties.values[:, :2]}
    assert pairs == {(1, 1), (2, 2)}
    for l1, l2 in pairs:
        a = dens.block(o3_lambda=l1, center_type=8, neighbor_type=1).values
        b = dens.block(o3_lambda=l2, center_type=8, neighbor_type=8).values
        cols = np.all(blk.properties.values[:, :2] == [l1, l2], axis=1)
        ref = couple_arrays(a, b, l1, l2, 1)
        np.testing.assert_allclose(blk.values[:, :, cols], ref, atol=KERNEL_TOL)
    # without skip_redundant, l1 > l2 appears too
    full = CGProduct(max_angular=2, max_lambda=3, match_keys=["center_type"]).compute(dens, dens)
    assert sum(len(b.properties) for b in full.blocks) > sum(len(b.properties) for b in out.blocks)
    lab = full.block(o3_lambda=1, o3_sigma=1, center_type=1, neighbor_1_type=1, neighbor_2_type=1).properties
    assert {tuple(r) for r in lab.values[:, :2]} >= {(1, 2), (2, 1)}


def test_cg_product_matching_all_shared_keys_and_selection(rng):
    dens = _density_map(rng)
    product = CGProduct(max_angular=2, selected_keys=[(0, 1), (2, -1)])
    out = product.compute(dens, dens)
    assert out.keys.names == ("o3_lambda", "o3_sigma", "center_type", "neighbor_type")
    assert {(int(k[0]), int(k[1])) for k in out.keys.values} == {(0, 1), (2, -1)}
    meta = product.compute_metadata(dens, dens)
    assert meta.keys == out.keys
    for x, y in zip(meta.blocks, out.blocks, strict=True):
        assert x.values.shape == y.values.shape
        assert x.samples == y.samples and x.properties == y.properties
        assert not np.any(x.values)


def test_cg_product_channelwise(rng):
    dens = _density_map(rng, neighbors=(1,))
    out = CGProduct(max_angular=2, channelwise=True).compute(dens, dens)
    blk = out.block(o3_lambda=2, o3_sigma=-1, center_type=1)  # 1 + 2 + 2 odd
    assert blk.properties.names == ("l_1", "l_2", "n")
    cols = np.all(blk.properties.values[:, :2] == [1, 2], axis=1)
    a = dens.block(o3_lambda=1, center_type=1).values
    b = dens.block(o3_lambda=2, center_type=1).values
    np.testing.assert_allclose(blk.values[:, :, cols], couple_arrays(a, b, 1, 2, 2, channelwise=True), atol=KERNEL_TOL)


def test_cg_product_sample_matching_with_pairs(rng):
    centres = _density_map(rng, lmax=1, centers=(1,), neighbors=(1,), n=3)
    pair_samples = Labels(
        ("system", "first_atom", "second_atom"), np.array([[0, 0, 1], [0, 0, 2], [0, 2, 1], [0, 5, 0]])
    )
    pair_blocks = [Block(rng.normal(size=(4, 2 * l + 1, 2)), pair_samples, Labels.range("n", 2)) for l in range(2)]
    pairs = BlockMap(Labels(("o3_lambda", "o3_sigma"), np.array([[0, 1], [1, 1]])), pair_blocks)
    out = CGProduct(max_angular=1).compute(centres, pairs, sample_match={"atom": "first_atom"})
    blk = out.block(o3_lambda=1, o3_sigma=1, center_type=1, neighbor_type=1)
    # the pair (5, 0) has no centre 5: dropped
    assert blk.samples.names == ("system", "first_atom", "second_atom")
    np.testing.assert_array_equal(blk.samples.values, pair_samples.values[:3])
    a = centres.block(o3_lambda=1, center_type=1).values
    b = pair_blocks[0].values
    cols = np.all(blk.properties.values[:, :2] == [1, 0], axis=1)
    ref = couple_arrays(a, b, 1, 0, 1, idx_a=[0, 0, 2], idx_b=[0, 1, 2])
    np.testing.assert_allclose(blk.values[:, :, cols], ref, atol=KERNEL_TOL)
    with pytest.raises(ValueError, match="cannot match samples"):
        CGProduct(max_angular=1).compute(centres, pairs)


def test_cg_product_union_of_samples(rng):
    a = _density_map(rng, lmax=1, centers=(1,), neighbors=(1,), n=3)
    b = _density_map(rng, lmax=1, centers=(1,), neighbors=(1,), n=4)
    # b's samples are atoms 0..3, a's 0..2: atom 3 has no partner in a -> zero rows
    out = CGProduct(max_angular=1).compute(a, b)
    blk = out.block(o3_lambda=0, o3_sigma=1, center_type=1, neighbor_type=1)
    assert len(blk.samples) == 4
    assert np.all(blk.values[3] == 0.0)
    where = match_rows(blk.samples.values, a.blocks[0].samples.values)
    ref = couple_arrays(a.blocks[0].values, b.blocks[0].values[:3], 0, 0, 0)
    cols = np.all(blk.properties.values[:, :2] == [0, 0], axis=1)
    np.testing.assert_allclose(blk.values[where][:, :, cols], ref, atol=KERNEL_TOL)


def test_cg_product_errors(rng):
    dens = _density_map(rng)
    with pytest.raises(ValueError, match="built for max_angular=1: construct it with max_angular >= 2"):
        CGProduct(max_angular=1).compute(dens, dens)
    with pytest.raises(ValueError, match="`max_lambda` must be <= 4"):
        CGProduct(max_angular=2, max_lambda=5)
    with pytest.raises(ValueError, match="o3_lambda=7, outside the reachable range 0..4"):
        CGProduct(max_angular=2, selected_keys=[(7, 1)])
    with pytest.raises(ValueError, match="o3_sigma values must be -1 or 1"):
        CGProduct(max_angular=2, selected_keys=[(1, 0)])
    with pytest.raises(ValueError, match="`selected_keys` has dimension `foo`"):
        CGProduct(max_angular=2).compute(dens, dens, selected_keys=Labels(("foo",), np.array([[1]])))
    with pytest.raises(TypeError, match="`a` must be an ncsym.BlockMap"):
        CGProduct(max_angular=2).compute(dens.blocks[0], dens)
    no_sigma = BlockMap(Labels(("o3_lambda",), np.array([[0]])), [dens.blocks[0]])
    with pytest.raises(ValueError, match="keys must have a `o3_sigma` dimension"):
        CGProduct(max_angular=2).compute(no_sigma, dens)
    with pytest.raises(ValueError, match="`match_keys` \\['foo'\\] must be key dimensions of both"):
        CGProduct(max_angular=2, match_keys=["foo"]).compute(dens, dens)
    with pytest.raises(ValueError, match="output property names .* are not unique"):
        CGProduct(max_angular=2, property_suffixes=(None, None)).compute(dens, dens)
    other = _density_map(rng, neighbors=(1, 6))
    other.info["hypers"] = {"cutoff": 4.0}
    dens.info["hypers"] = {"cutoff": 4.0}
    with pytest.raises(ValueError, match="different species lists \\[1, 8\\] and \\[1, 6\\]"):
        CGProduct(max_angular=2).compute(dens, other)
