"""Tests for ncsym.kernels.cg_cpu: every CG kernel against np.einsum on dense CG tables."""

import numpy as np
import pytest

import ncsym
from ncsym.kernels import cg_cpu, get_backend
from ncsym.products import PlanBuilder, cg_terms, run_plan

#: Kernels reorder sums of O(1) products: agreement to round-off, relative to the largest entry.
KERNEL_TOL = 1e-13

TRIPLES = [(0, 0, 0), (1, 1, 0), (1, 1, 1), (1, 1, 2), (2, 1, 2), (3, 2, 4), (4, 4, 8), (2, 4, 3)]


def _dense(l1, l2, lam):
    return ncsym.clebsch_gordan(l1, l2, lam).todense()


def _close(got, ref):
    scale = max(float(np.abs(ref).max()), 1e-300)
    assert got.shape == ref.shape
    assert float(np.abs(got - ref).max()) <= KERNEL_TOL * scale


def _inputs(rng, l1, l2, pa=3, pb=4, na=5, nb=6, n=7):
    a = rng.normal(size=(na, 2 * l1 + 1, pa))
    b = rng.normal(size=(nb, 2 * l2 + 1, pb))
    idx_a = rng.integers(0, na, size=n).astype(np.int64)
    idx_b = rng.integers(0, nb, size=n).astype(np.int64)
    return a, b, idx_a, idx_b


@pytest.mark.parametrize("l1,l2,lam", TRIPLES)
def test_outer_product_matches_einsum(rng, l1, l2, lam):
    a, b, ia, ib = _inputs(rng, l1, l2)
    ref = np.einsum("abc,sap,sbq->scpq", _dense(l1, l2, lam), a[ia], b[ib]).reshape(len(ia), 2 * lam + 1, -1)
    out = np.zeros_like(ref)
    cg_cpu.outer_product(a, b, ia, ib, *cg_terms(l1, l2, lam), out)
    _close(out, ref)
    # the kernel accumulates
    cg_cpu.outer_product(a, b, ia, ib, *cg_terms(l1, l2, lam), out)
    _close(out, 2 * ref)


@pytest.mark.parametrize("l1,l2,lam", TRIPLES)
def test_channelwise_product_matches_einsum(rng, l1, l2, lam):
    a, b, ia, ib = _inputs(rng, l1, l2, pa=4, pb=4)
    ref = np.einsum("abc,sap,sbp->scp", _dense(l1, l2, lam), a[ia], b[ib])
    out = np.zeros_like(ref)
    cg_cpu.channelwise_product(a, b, ia, ib, *cg_terms(l1, l2, lam), out)
    _close(out, ref)


@pytest.mark.parametrize("channelwise", [False, True])
@pytest.mark.parametrize("l1,l2,lam", [(1, 1, 1), (2, 3, 4), (4, 2, 2)])
def test_segment_sums_match_einsum(rng, l1, l2, lam, channelwise):
    a, b, ia, ib = _inputs(rng, l1, l2, pa=3, pb=3 if channelwise else 5, n=9)
    segments = np.array([0, 3, 3, 4, 9], dtype=np.int64)  # includes an empty segment
    cg = _dense(l1, l2, lam)
    if channelwise:
        pairs = np.einsum("abc,sap,sbp->scp", cg, a[ia], b[ib])
    else:
        pairs = np.einsum("abc,sap,sbq->scpq", cg, a[ia], b[ib]).reshape(len(ia), 2 * lam + 1, -1)
    ref = np.stack([pairs[segments[i] : segments[i + 1]].sum(axis=0) for i in range(4)])
    out = np.zeros_like(ref)
    kernel = cg_cpu.channelwise_product_segments if channelwise else cg_cpu.outer_product_segments
    kernel(a, b, ia, ib, segments, *cg_terms(l1, l2, lam), out)
    _close(out, ref)


def test_outer_product_tiles_large_property_counts(rng):
    # Pa * Pb far above one tile: the p-tiling must cover every property exactly once
    l1, l2, lam = 2, 2, 2
    a, b, ia, ib = _inputs(rng, l1, l2, pa=300, pb=40, n=3)
    assert cg_cpu.tile_p(25, 300, 40) < 300
    ref = np.einsum("abc,sap,sbq->scpq", _dense(l1, l2, lam), a[ia], b[ib]).reshape(3, 5, -1)
    out = np.zeros_like(ref)
    cg_cpu.outer_product(a, b, ia, ib, *cg_terms(l1, l2, lam), out)
    _close(out, ref)


def _plan_case(rng, pa, pb, lams=(1, 2, 3), l1=2, l2=1):
    """One group writing into property slices of a flat output, from a strided left block."""
    n, na, nb = 6, 4, 5
    # left operand: a (na, 2 l1 + 1, pa) block stored inside wider rows (mstride > pa)
    mstride = pa + 3
    a_full = rng.normal(size=(na, 2 * l1 + 1, mstride))
    a = a_full[:, :, 1 : 1 + pa]
    b = rng.normal(size=(nb, 2 * l2 + 1, pb))
    ia = rng.integers(0, na, size=n).astype(np.int64)
    ib = rng.integers(0, nb, size=n).astype(np.int64)
    ia[2] = -1  # no partner: zero output
    width = pa * pb + 2  # the products plus one untouched column on each side
    builder = PlanBuilder()
    bases, offset = {}, 0
    for lam in lams:
        bases[lam] = offset
        offset += n * (2 * lam + 1) * width
    outputs = [(lam, bases[lam], (2 * lam + 1) * width, width, 1) for lam in lams]
    builder.add(
        l1=l1,
        a_base=1,
        a_sstride=(2 * l1 + 1) * mstride,
        a_mstride=mstride,
        a_p=pa,
        l2=l2,
        b_base=0,
        b_sstride=(2 * l2 + 1) * pb,
        b_p=pb,
        outputs=outputs,
    )
    plan = builder.build()
    return plan, a_full, a, b, ia, ib, bases, width, offset, n


@pytest.mark.parametrize("pa,pb", [(3, 4), (200, 30)])
def test_plan_kernel_matches_einsum(rng, pa, pb):
    plan, a_full, a, b, ia, ib, bases, width, total, n = _plan_case(rng, pa, pb)
    out = np.full(total, np.nan)
    run_plan(plan, a_full.reshape(-1), b.reshape(-1), ia, ib, out)
    for lam in (1, 2, 3):
        view = out[bases[lam] : bases[lam] + n * (2 * lam + 1) * width].reshape(n, 2 * lam + 1, width)
        got = view[:, :, 1 : 1 + pa * pb]
        ref = np.einsum("abc,sap,sbq->scpq", _dense(2, 1, lam), a[ia], b[ib]).reshape(n, 2 * lam + 1, -1)
        ref[ia < 0] = 0.0
        _close(got, ref)
        # columns outside the written slice are untouched
        assert np.all(np.isnan(view[:, :, 0]))
        assert np.all(np.isnan(view[:, :, 1 + pa * pb :]))


def test_plan_flops_and_buffer_are_consistent(rng):
    plan, *_ = _plan_case(rng, 3, 4)
    assert plan.buf_size >= (plan.groups[:, 9] - plan.groups[:, 8]).max() * plan.groups[:, 12].max() * 4
    assert plan.flops > 0
    assert plan.rows.shape[1] == cg_cpu.N_ROW_COLUMNS
    assert plan.groups.shape[1] == cg_cpu.N_GROUP_COLUMNS


def test_get_backend_names():
    assert get_backend("cpu") is cg_cpu
    assert get_backend() is cg_cpu
    with pytest.raises(ValueError, match="invalid `backend`, got 'gpu'"):
        get_backend("gpu")
    with pytest.raises(TypeError, match="`backend` must be a string"):
        get_backend(1)


def test_importing_ncsym_compiles_no_kernels():
    import subprocess
    import sys

    code = "import sys, ncsym; assert 'numba' not in sys.modules, 'numba imported'; print('ok')"
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr
