"""Tests of the equivariant polynomial kernel (ncsym.hamiltonian._kernel)."""

import numpy as np
import pytest

import ncsym
from ncsym.hamiltonian._kernel import NystromKernel, farthest_points, invariant_rows, kernel


def _samples(rng, n, lam, p, p0):
    return rng.normal(size=(n, 2 * lam + 1, p)), rng.normal(size=(n, p0))


@pytest.mark.parametrize("lam", [0, 1, 3])
@pytest.mark.parametrize("zeta", [1, 2, 3])
def test_kernel_is_equivariant(lam, zeta):
    rng = np.random.default_rng(lam + 10 * zeta)
    xa, x0a = _samples(rng, 4, lam, 6, 3)
    xb, x0b = _samples(rng, 5, lam, 6, 3)
    ua, ub = invariant_rows(x0a), invariant_rows(x0b)
    d = ncsym.wigner_d(ncsym.random_rotation(rng), lam)[lam]
    k = kernel(xa, ua, xb, ub, zeta)
    k_rot = kernel(np.einsum("ij,njp->nip", d, xa), ua, xb, ub, zeta)
    np.testing.assert_allclose(k_rot, np.einsum("ij,njmk->nimk", d, k), atol=1e-12 * np.abs(k).max())
    # symmetric positive semi-definite on one set
    kaa = kernel(xa, ua, xa, ua, zeta).reshape(4 * (2 * lam + 1), -1)
    np.testing.assert_allclose(kaa, kaa.T, atol=1e-12 * np.abs(kaa).max())
    assert np.linalg.eigvalsh(kaa).min() > -1e-10 * np.abs(kaa).max()


def test_polynomial_factor():
    rng = np.random.default_rng(0)
    xa, x0a = _samples(rng, 3, 0, 4, 2)
    ua = invariant_rows(x0a)
    k1 = kernel(xa, ua, xa, ua, 1)[:, 0, :, 0]
    k3 = kernel(xa, ua, xa, ua, 3)[:, 0, :, 0]
    unit = x0a / np.linalg.norm(x0a, axis=1, keepdims=True)
    k0 = (unit @ unit.T + 1.0) / 2.0
    np.testing.assert_allclose(k3, k1 * k0**2, rtol=1e-13)
    np.testing.assert_allclose(np.diag(k0), 1.0)


def test_invariant_rows_handles_zero_and_empty():
    u = invariant_rows(np.zeros((2, 3)))
    np.testing.assert_allclose(u[:, :3], 0.0)
    np.testing.assert_allclose(u[:, 3], 1 / np.sqrt(2))
    assert invariant_rows(np.zeros((2, 1, 0))).shape == (2, 1)


def test_farthest_points():
    u = np.array([[0.0, 0.0], [0.01, 0.0], [1.0, 0.0], [0.0, 1.0]])
    assert list(farthest_points(u, 10)) == [0, 1, 2, 3]
    picked = farthest_points(u, 3)
    assert len(picked) == 3 and 2 in picked and 3 in picked
    np.testing.assert_array_equal(picked, np.sort(picked))


def test_nystrom_reproduces_kernel_on_active_set():
    rng = np.random.default_rng(3)
    x, x0 = _samples(rng, 6, 1, 8, 3)
    u = invariant_rows(x0)
    nk = NystromKernel(x, u, 2)
    phi = nk.features(x, u).reshape(18, -1)
    k = kernel(x, u, x, u, 2).reshape(18, 18)
    np.testing.assert_allclose(phi @ phi.T, k, atol=1e-10 * np.abs(k).max())
    # rank-deficient active sets (duplicate samples) drop the null space instead of dividing by 0
    dup = NystromKernel(np.concatenate([x, x]), np.concatenate([u, u]), 2)
    assert dup.width == nk.width
    assert np.all(np.isfinite(dup.basis))


@pytest.mark.parametrize("shape", [(40, 6), (5, 12)])  # through X^T X and through X X^T
def test_principal_axes(shape):
    from ncsym.hamiltonian._kernel import principal_axes

    rng = np.random.default_rng(3)
    x = rng.normal(size=shape) * np.geomspace(10.0, 0.1, shape[1])
    full = principal_axes(x, 100)
    assert full.shape == (shape[1], min(shape))
    np.testing.assert_allclose(full.T @ full, np.eye(min(shape)), atol=1e-12)
    # every row of x lies in the span of all its axes
    np.testing.assert_allclose((x @ full) @ full.T, x, atol=1e-10 * np.abs(x).max())
    two = principal_axes(x, 2)
    # the leading axes: the best rank-2 approximation (Eckart-Young)
    s = np.linalg.svd(x, compute_uv=False)
    resid = np.linalg.norm(x - (x @ two) @ two.T)
    np.testing.assert_allclose(resid, np.sqrt((s[2:] ** 2).sum()), rtol=1e-10)


@pytest.mark.parametrize("zeta", [1, 2, 3, 4])
def test_primal_weights_reproduce_the_dual_model(zeta):
    """sum_B K(A, B) c_B (dual) == sum_k psi_Ak x_A W_k (primal), for the kernel of kernel()."""
    from ncsym.hamiltonian._kernel import (
        invariant_power,
        invariant_power_width,
        primal_predict,
        primal_weights,
    )

    rng = np.random.default_rng(11)
    lam, p = 2, 5
    x, x0 = _samples(rng, 9, lam, p, 4)
    xn, x0n = _samples(rng, 3, lam, p, 4)
    u, un = invariant_rows(x0), invariant_rows(x0n)
    coef = rng.normal(size=(9 * (2 * lam + 1), 2))
    dual = kernel(xn, un, x, u, zeta).reshape(3 * (2 * lam + 1), -1) @ coef
    w = primal_weights(x, invariant_power(u, zeta), coef)
    # one column per monomial of degree zeta - 1 in the d = 5 invariant columns
    width = {1: 1, 2: 5, 3: 15, 4: 35}[zeta]
    assert invariant_power_width(u.shape[1], zeta) == width
    assert w.shape == (width, p, 2)
    primal = primal_predict(xn, invariant_power(un, zeta), w)
    np.testing.assert_allclose(primal.reshape(-1, 2), dual, atol=1e-12 * np.abs(dual).max())
    np.testing.assert_allclose(
        invariant_power(un, zeta) @ invariant_power(u, zeta).T, (un @ u.T) ** (zeta - 1), atol=1e-14
    )


def test_exact_kernel_fit_too_large_for_memory_is_refused(monkeypatch):
    """An exact kernel fit whose Gram matrix or primal weights exceed the memory gets a clear
    ValueError naming what to change, before anything large is allocated."""
    from ncsym.hamiltonian import HamiltonianModel, load_water_dataset

    water = load_water_dataset()
    monkeypatch.setattr("ncsym.acdc._available_memory", lambda: 2**20)
    model = HamiltonianModel(orbitals=water.orbitals, kernel=True, zeta=3, n_active=None, progress=False)
    with pytest.raises(ValueError, match="exact kernel model .* needs about .* lower `zeta`"):
        model.fit(water.frames[:6], water.fock[:6])
