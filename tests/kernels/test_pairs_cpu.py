"""Direct tests of the N-centre product kernels against a dense einsum reference."""

import numpy as np
import pytest

from ncsym.cg import cg_tables
from ncsym.kernels.pairs_cpu import cg_product_segments, cg_product_separable, output_addresses

L1, L2, PA, PB = 2, 1, 3, 2
LAMS = (1, 2, 3)


def _tables_and_terms(widths):
    """Pair (l1=2, P=3) x (l2=1, P=2) -> lam 1, 2, 3; one output block per lam."""
    t = cg_tables(max(L1, L2), max(LAMS))
    terms = np.array([[t.index[L1, L2, lam], b, 0, widths[b]] for b, lam in enumerate(LAMS)], dtype=np.int64)
    pairs = np.array([[0, 2 * L1 + 1, PA, 0, 2 * L2 + 1, PB, 0, len(LAMS)]], dtype=np.int64)
    return t, pairs, terms


def _reference(a, b, idx_a, idx_b, seg, n_out):
    outs = []
    for lam in LAMS:
        cg = cg_tables(max(L1, L2), max(LAMS)).get(L1, L2, lam).todense()
        prod = np.einsum("xyz,sxp,syq->szpq", cg, a[idx_a], b[idx_b]).reshape(len(idx_a), 2 * lam + 1, PA * PB)
        out = np.zeros((n_out, 2 * lam + 1, PA * PB))
        for r in range(n_out):
            out[r] = prod[seg[r] : seg[r + 1]].sum(axis=0)
        outs.append(out)
    return outs


def test_segments_kernel_sums_gathered_products():
    rng = np.random.default_rng(0)
    a = rng.normal(size=(5, 2 * L1 + 1, PA))
    b = rng.normal(size=(4, 2 * L2 + 1, PB))
    idx_a = rng.integers(0, 5, 11)
    idx_b = rng.integers(0, 4, 11)
    seg = np.array([0, 3, 3, 7, 11])
    n_out = len(seg) - 1
    t, pairs, terms = _tables_and_terms([PA * PB] * len(LAMS))
    outs = [np.zeros((n_out, 2 * lam + 1, PA * PB)) for lam in LAMS]
    address, row = output_addresses(outs)
    cg_product_segments(
        a.reshape(5, -1), idx_a, b.reshape(4, -1), idx_b, seg, pairs, terms, t.offsets, t.m1, t.m2, t.mu,
        t.coef, address, row, 2,
    )
    for got, want in zip(outs, _reference(a, b, idx_a, idx_b, seg, n_out), strict=True):
        np.testing.assert_allclose(got, want, rtol=1e-13, atol=1e-13)


def test_separable_kernel_writes_wider_blocks_at_an_offset():
    rng = np.random.default_rng(1)
    a = rng.normal(size=(5, 2 * L1 + 1, PA))
    y = rng.normal(size=(6, (L2 + 1) ** 2))
    radial = rng.normal(size=(6, L2 + 1, PB))
    b = y[:, L2 * L2 :, None] * radial[:, L2][:, None, :]
    idx_a = rng.integers(0, 5, 7)
    idx_b = rng.integers(0, 6, 7)
    width, offset = PA * PB + 4, 3
    t, pairs, terms = _tables_and_terms([width] * len(LAMS))
    terms[:, 2] = offset
    pairs[:, 3] = L2  # the separable kernel reads l2 from column 3
    outs = [np.full((7, 2 * lam + 1, width), -1.0) for lam in LAMS]
    address, row = output_addresses(outs)
    cg_product_separable(
        a.reshape(5, -1), idx_a, y, radial, idx_b, pairs, terms, t.offsets, t.m1, t.m2, t.mu, t.coef,
        address, row, 3,
    )
    want = _reference(a, b, idx_a, idx_b, np.arange(8), 7)
    for got, ref in zip(outs, want, strict=True):
        np.testing.assert_allclose(got[:, :, offset : offset + PA * PB], ref, rtol=1e-13, atol=1e-13)
        assert np.all(got[:, :, :offset] == -1.0) and np.all(got[:, :, offset + PA * PB :] == -1.0)


def test_output_addresses_rejects_unusable_blocks():
    good = np.zeros((4, 3, 2))
    address, row = output_addresses([good, np.zeros((4, 5, 1))])
    assert address[0] == good.ctypes.data and list(row) == [6, 5]
    with pytest.raises(ValueError, match="numbers of rows"):
        output_addresses([good, np.zeros((3, 3, 2))])
    with pytest.raises(ValueError, match="C-contiguous float64"):
        output_addresses([np.zeros((4, 3, 4))[:, :, ::2]])
    with pytest.raises(ValueError, match="C-contiguous float64"):
        output_addresses([np.zeros((4, 3, 2), dtype=np.float32)])
    frozen = np.zeros((4, 3, 2))
    frozen.flags.writeable = False
    with pytest.raises(ValueError, match="writeable"):
        output_addresses([frozen])


def _separable_plan(la, pa, lb, pb, max_lambda):
    from ncsym.blocks import Labels
    from ncsym.pairs import _Plan

    meta_a = {(l, 1): Labels(("n_1",), np.arange(pa).reshape(-1, 1)) for l in range(la + 1)}
    meta_b = {(l, 1): Labels(("n_2",), np.arange(pb).reshape(-1, 1)) for l in range(lb + 1)}
    return _Plan(meta_a, meta_b, max_lambda=max_lambda, prefix_names=("l_1", "l_2"), prefix=lambda a, b: (a[0], b[0]))


@pytest.mark.parametrize("nontemporal", [False, True])
@pytest.mark.parametrize(("pa", "pb"), [(3, 2), (9, 7), (7, 10)])
def test_row_staged_separable_kernel_equals_the_direct_one(nontemporal, pa, pb):
    """Several terms per block, rows wider than a vector: bit-identical to cg_product_separable."""
    from ncsym.kernels.pairs_cpu import cg_product_separable_rows

    la, lb = 2, 3
    plan = _separable_plan(la, pa, lb, pb, max_lambda=4)
    rng = np.random.default_rng(pa * pb)
    n_a, n_b, n_out = 6, 9, 13
    a = rng.normal(size=(n_a, sum((2 * l + 1) * pa for l in range(la + 1))))
    y = rng.normal(size=(n_b, (lb + 1) ** 2))
    y[0] = 0.0  # a pair of zero weight
    radial = rng.normal(size=(n_b, lb + 1, pb))
    idx_a = rng.integers(0, n_a, n_out)
    idx_b = rng.integers(0, n_b, n_out)
    t = plan.tables
    results = []
    for staged in (False, True):
        outs = [np.full((n_out, 2 * k[0] + 1, len(plan.props[k])), np.nan) for k in plan.keys]
        address, row = output_addresses(outs)
        common = (a, idx_a, y, radial, idx_b, plan.pairs_separable, plan.terms)
        tables = (t.offsets, t.m1, t.m2, t.mu, t.coef, address, row, 4)
        if staged:
            cg_product_separable_rows(*common, plan.term_pair, plan.block_ptr, plan.block_terms, *tables, nontemporal)
        else:
            cg_product_separable(*common, *tables)
        results.append(outs)
    for direct, staged in zip(*results, strict=True):
        assert np.all(np.isfinite(staged))
        np.testing.assert_array_equal(staged, direct)
    # and both are the CG product of a with y (x) radial
    b = np.concatenate([y[:, l * l : (l + 1) ** 2, None] * radial[:, l, None, :] for l in range(lb + 1)], axis=1)
    block = plan.keys.index((1, -1)) if (1, -1) in plan.keys else 0
    lam = plan.keys[block][0]
    got = results[1][block]
    col = 0
    for k in range(plan.block_ptr[block], plan.block_ptr[block + 1]):
        term = plan.terms[plan.block_terms[k]]
        pair = plan.pairs[plan.term_pair[plan.block_terms[k]]]
        l1, l2 = (pair[1] - 1) // 2, (pair[4] - 1) // 2
        cg = cg_tables(max(la, lb), 4).get(l1, l2, lam).todense()
        a_l = a[:, pair[0] : pair[0] + (2 * l1 + 1) * pa].reshape(n_a, 2 * l1 + 1, pa)
        want = np.einsum("xyz,sxp,syq->szpq", cg, a_l[idx_a], b[idx_b, l2 * l2 : (l2 + 1) ** 2])
        np.testing.assert_allclose(
            got[:, :, term[2] : term[2] + pa * pb], want.reshape(n_out, 2 * lam + 1, -1), rtol=1e-12, atol=1e-12
        )
        col += pa * pb
    assert col == got.shape[2]
