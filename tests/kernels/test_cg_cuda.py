"""CUDA CG kernels (ncsym.kernels.cg_cuda) against the CPU kernels, under the CUDA simulator.

Run with ``NUMBA_ENABLE_CUDASIM=1`` set before Numba is imported (a separate pytest
invocation: ``NUMBA_ENABLE_CUDASIM=1 pytest -m cudasim tests/kernels/test_cg_cuda.py``).  The
simulator runs every CUDA thread in Python, so inputs are tiny.
"""

import os

import numpy as np
import pytest

pytestmark = [
    pytest.mark.cudasim,
    pytest.mark.skipif(
        os.environ.get("NUMBA_ENABLE_CUDASIM") != "1",
        reason="CUDA kernels are tested under the simulator: set NUMBA_ENABLE_CUDASIM=1 before numba is imported",
    ),
]

#: CPU and CUDA kernels sum in different orders: agreement to round-off.
CPU_CUDA_TOL = 1e-12


def _backends():
    from ncsym.kernels import get_backend

    return get_backend("cpu"), get_backend("cuda")


def _close(got, ref):
    scale = max(float(np.abs(ref).max()), 1e-300)
    assert float(np.abs(got - ref).max()) <= CPU_CUDA_TOL * scale


def _inputs(rng, l1, l2, pa, pb, n=3):
    a = rng.normal(size=(2, 2 * l1 + 1, pa))
    b = rng.normal(size=(3, 2 * l2 + 1, pb))
    ia = rng.integers(0, 2, size=n).astype(np.int64)
    ib = rng.integers(0, 3, size=n).astype(np.int64)
    return a, b, ia, ib


@pytest.mark.parametrize("l1,l2,lam", [(1, 1, 1), (2, 1, 3)])
def test_outer_and_channelwise_products(rng, l1, l2, lam):
    from ncsym.products import cg_terms

    cpu, gpu = _backends()
    terms = cg_terms(l1, l2, lam)
    a, b, ia, ib = _inputs(rng, l1, l2, 2, 2)
    for name in ("outer_product", "channelwise_product"):
        width = 4 if name == "outer_product" else 2
        ref = np.zeros((3, 2 * lam + 1, width))
        got = np.zeros_like(ref)
        getattr(cpu, name)(a, b, ia, ib, *terms, ref)
        getattr(gpu, name)(a, b, ia, ib, *terms, got)
        _close(got, ref)


def test_segment_products(rng):
    from ncsym.products import cg_terms

    cpu, gpu = _backends()
    terms = cg_terms(1, 2, 2)
    a, b, ia, ib = _inputs(rng, 1, 2, 2, 2, n=4)
    segments = np.array([0, 1, 1, 4], dtype=np.int64)
    for name, width in (("outer_product_segments", 4), ("channelwise_product_segments", 2)):
        ref = np.zeros((3, 5, width))
        got = np.zeros_like(ref)
        getattr(cpu, name)(a, b, ia, ib, segments, *terms, ref)
        getattr(gpu, name)(a, b, ia, ib, segments, *terms, got)
        _close(got, ref)


def test_plan_kernel_with_device_arrays(rng):
    from numba import cuda

    from ncsym.products import PlanBuilder

    cpu, gpu = _backends()
    a, b, ia, ib = _inputs(rng, 2, 1, 2, 2)
    ia[1] = -1
    builder = PlanBuilder()
    builder.add(
        l1=2, a_base=0, a_sstride=10, a_p=2, l2=1, b_base=0, b_sstride=6, b_p=2,
        outputs=[(1, 0, 12, 4, 0), (3, 36, 28, 4, 0)],
    )  # fmt: skip
    plan = builder.build()
    args = (plan.groups, plan.pair_m1, plan.pair_m2, plan.rows, plan.nz_pair, plan.nz_coef, plan.buf_size)
    ref = np.full(36 + 3 * 28, np.nan)
    cpu.outer_product_plan(a.reshape(-1), b.reshape(-1), ia, ib, *args, ref)
    d_out = cuda.device_array(ref.shape[0])
    gpu.outer_product_plan(cuda.to_device(a.reshape(-1)), cuda.to_device(b.reshape(-1)), ia, ib, *args, d_out)
    _close(d_out.copy_to_host(), ref)


def test_density_correlations_cuda_backend(rng):
    import types

    import ncsym

    lmax, n_species, n_radial = 1, 1, 2
    dens = types.SimpleNamespace(
        values=rng.normal(size=(2, (lmax + 1) ** 2, n_species, n_radial)),
        system=np.zeros(2, dtype=np.int32),
        atom=np.arange(2, dtype=np.int32),
        center_type=np.array([1, 1], dtype=np.int32),
        species=np.array([1]),
    )
    kwargs = dict(expansion={"max_angular": lmax}, correlation_order=2, max_lambda=1)
    cpu = ncsym.DensityCorrelations(**kwargs).compute(density=dens)
    gpu = ncsym.DensityCorrelations(**kwargs, backend="cuda").compute(density=dens)
    assert cpu.keys == gpu.keys
    for x, y in zip(cpu.blocks, gpu.blocks, strict=True):
        _close(y.values, x.values)


def test_couple_arrays_cuda_backend(rng):
    from ncsym.products import couple_arrays

    a, b, ia, ib = _inputs(rng, 1, 1, 2, 2)
    ref = couple_arrays(a, b, 1, 1, 2, idx_a=ia, idx_b=ib)
    got = couple_arrays(a, b, 1, 1, 2, idx_a=ia, idx_b=ib, backend="cuda")
    _close(got, ref)
