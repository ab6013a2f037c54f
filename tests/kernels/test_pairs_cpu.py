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
