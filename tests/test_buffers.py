"""The output buffer pool: reuse only of dropped buffers, bounded size, and no stale values."""

import ase.build
import numpy as np
import pytest

from ncsym import buffers


@pytest.fixture
def pool(monkeypatch):
    """An empty pool that lends buffers of any size."""
    monkeypatch.setattr(buffers, "MIN_POOLED_BYTES", 0)
    monkeypatch.setattr(buffers, "_POOL", [])
    monkeypatch.delenv("NCSYM_BUFFER_POOL", raising=False)
    return buffers


def _poison_pool(pool, n):
    """Fill every buffer the pool could lend for ``n`` values with NaN."""
    held = [pool.empty(n) for _ in range(pool.MAX_BUFFERS)]
    for h in held:
        h.fill(np.nan)


def test_a_buffer_is_lent_again_only_after_its_arrays_are_dropped(pool):
    a = pool.empty(1000)
    address = a.ctypes.data
    view = a[10:20].reshape(2, 5)
    del a
    b = pool.empty(1000)  # `view` still uses the first buffer
    assert b.ctypes.data != address
    del view
    c = pool.empty(900)  # the first buffer is free again and fits
    assert c.ctypes.data == address and c.shape == (900,)
    assert pool.pooled_bytes() == 2 * 8000


def test_the_pool_is_bounded_and_can_be_released(pool):
    held = [pool.empty(100) for _ in range(pool.MAX_BUFFERS + 2)]
    assert len(pool._POOL) == pool.MAX_BUFFERS
    assert pool.release_buffers() == 0  # all in use
    del held
    assert pool.release_buffers() == pool.MAX_BUFFERS * 800
    assert pool.pooled_bytes() == 0


def test_buffers_beyond_the_byte_cap_are_not_pooled(pool, monkeypatch):
    monkeypatch.setattr(pool, "MAX_POOLED_BYTES", 1000)
    x = pool.empty(100)
    y = pool.empty(200)
    assert np.shares_memory(x, pool._POOL[0]) and pool.pooled_bytes() == 800
    assert not any(np.shares_memory(y, b) for b in pool._POOL)


def test_buffers_much_larger_than_the_request_are_not_lent(pool):
    big = pool.empty(10_000)
    address = big.ctypes.data
    del big
    small = pool.empty(100)
    assert small.ctypes.data != address
    assert pool.pooled_bytes() == 800  # the free big buffer was dropped to make room


def test_environment_variable_turns_the_pool_off(pool, monkeypatch):
    monkeypatch.setenv("NCSYM_BUFFER_POOL", "0")
    x = pool.empty(100)
    assert x.base is None and pool.pooled_bytes() == 0


def test_small_requests_are_plain_arrays(monkeypatch):
    monkeypatch.setattr(buffers, "_POOL", [])
    x = buffers.empty(10)
    assert x.base is None and buffers.pooled_bytes() == 0


@pytest.mark.parametrize("variant", ["i", "j", "ij"])
def test_pair_features_from_a_poisoned_pool_equal_fresh_ones(pool, variant, monkeypatch):
    from ncsym.pairs import PairCorrelations

    frames = [ase.build.molecule("CH3CH2OH"), ase.build.molecule("H2O")]
    calc = PairCorrelations(cutoff=3.0, max_radial=2, max_angular=2, correlation_order=1, variant=variant)
    monkeypatch.setenv("NCSYM_BUFFER_POOL", "0")
    fresh = calc.compute(frames)
    monkeypatch.delenv("NCSYM_BUFFER_POOL")
    n = sum(b.values.size for b in fresh.blocks)
    _poison_pool(pool, n)
    pooled = calc.compute(frames)
    assert any(np.shares_memory(pooled.blocks[0].values, buf) for buf in pool._POOL)
    assert pooled.keys == fresh.keys
    for block, ref in zip(pooled.blocks, fresh.blocks, strict=True):
        np.testing.assert_array_equal(block.values, ref.values)


def test_density_correlations_from_a_poisoned_pool_equal_fresh_ones(pool, monkeypatch):
    from ncsym import DensityCorrelations, SphericalExpansion

    frames = [ase.build.molecule("CH3CH2OH"), ase.build.bulk("Si", "diamond", 5.43)]
    exp = SphericalExpansion(cutoff=3.0, max_radial=3, max_angular=2)
    calc = DensityCorrelations(expansion=exp, correlation_order=2, max_lambda=3)
    monkeypatch.setenv("NCSYM_BUFFER_POOL", "0")
    fresh = calc.compute(frames)
    monkeypatch.delenv("NCSYM_BUFFER_POOL")
    _poison_pool(pool, sum(b.values.size for b in fresh.blocks))
    pooled = calc.compute(frames)
    assert pooled.keys == fresh.keys
    for block, ref in zip(pooled.blocks, fresh.blocks, strict=True):
        np.testing.assert_array_equal(block.values, ref.values)


def test_the_pool_is_off_where_reference_counts_cannot_be_trusted(pool, monkeypatch):
    monkeypatch.setattr(pool, "_COUNTS_RELIABLE", False)
    x = pool.empty(100)
    assert x.base is None and pool.pooled_bytes() == 0


def test_reference_count_baseline_sees_one_view():
    items = [np.empty(3)]
    alone = buffers._refs(items, 0)
    view = items[0][1:]
    assert alone == buffers._ALONE and buffers._refs(items, 0) == alone + 1
    del view
    assert buffers._refs(items, 0) == alone


def test_threads_sharing_the_pool_get_correct_results(pool):
    from concurrent.futures import ThreadPoolExecutor

    from ncsym import DensityCorrelations, SphericalExpansion

    frames = [ase.build.molecule("CH3CH2OH"), ase.build.molecule("CH3CHO")]
    exp = SphericalExpansion(cutoff=3.0, max_radial=2, max_angular=2)
    calc = DensityCorrelations(expansion=exp, correlation_order=2, max_lambda=2)
    want = [calc.compute([f]) for f in frames]
    import numba

    if numba.threading_layer() == "workqueue":
        pytest.skip("Numba's workqueue threading layer does not take parallel calls from several threads")

    def run(i):
        got = calc.compute([frames[i % 2]])
        return all(np.array_equal(x.values, y.values) for x, y in zip(got.blocks, want[i % 2].blocks, strict=True))

    with ThreadPoolExecutor(4) as ex:
        assert all(ex.map(run, range(24)))


@pytest.mark.parametrize("variant", ["i", "j"])
def test_pair_features_streamed_to_memory_equal_cached_writes(variant, monkeypatch):
    # outputs over ncsym.kernels.simd.STREAM_MIN_BYTES are written with non-temporal stores
    from ncsym.pairs import PairCorrelations

    frames = [ase.build.molecule("CH3CH2OH"), ase.build.bulk("Si", "diamond", 5.43)]
    calc = PairCorrelations(cutoff=3.0, max_radial=6, max_angular=2, correlation_order=1, variant=variant)
    cached = [b.values.copy() for b in calc.compute(frames).blocks]
    monkeypatch.setattr("ncsym.kernels.simd.STREAM_MIN_BYTES", 0)
    streamed = calc.compute(frames)
    for block, ref in zip(streamed.blocks, cached, strict=True):
        assert np.all(np.isfinite(ref))
        np.testing.assert_array_equal(block.values, ref)
