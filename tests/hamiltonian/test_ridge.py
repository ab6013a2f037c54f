"""Tests for the grouped-CV multi-target ridge solver of the Hamiltonian model."""

import numpy as np

from ncsym.hamiltonian._ridge import fit_ridge_cv

TOL = 1e-10


def test_matches_closed_form_single_alpha():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(60, 8))
    y = rng.normal(size=(60, 3))
    fit = fit_ridge_cv(x, y, np.arange(60), alphas=[1e-2])
    scale = np.trace(x.T @ x) / 8
    ref = np.linalg.solve(x.T @ x + 1e-2 * scale * np.eye(8), x.T @ y)
    np.testing.assert_allclose(fit.weights, ref, atol=TOL)
    np.testing.assert_array_equal(fit.intercept, 0.0)


def test_intercept_recovered():
    rng = np.random.default_rng(1)
    x = rng.normal(size=(100, 4))
    w = rng.normal(size=(4, 2))
    y = x @ w + np.array([3.0, -2.0])
    fit = fit_ridge_cv(x, y, np.arange(100), alphas=[1e-12], intercept=True)
    np.testing.assert_allclose(fit.weights, w, atol=1e-8)
    np.testing.assert_allclose(fit.intercept, [3.0, -2.0], atol=1e-8)


def test_cv_prefers_regularisation_for_noise_and_not_for_signal():
    rng = np.random.default_rng(2)
    x = rng.normal(size=(40, 30))
    clean = x @ rng.normal(size=30)
    noise = rng.normal(size=40)
    groups = np.repeat(np.arange(20), 2)  # two rows per sample, never split
    fit = fit_ridge_cv(x, np.stack([clean, noise], axis=1), groups)
    assert fit.alpha[0] < fit.alpha[1]
    assert fit.cv_rmse[0] < 1e-3 * np.std(clean)


def test_groups_are_not_split():
    # rows of one group are identical copies: if folds split groups, the validation rows
    # would be predicted exactly and CV would choose the smallest alpha on pure noise
    rng = np.random.default_rng(3)
    x0 = rng.normal(size=(15, 20))
    y0 = rng.normal(size=(15, 1))
    x = np.repeat(x0, 3, axis=0)
    y = np.repeat(y0, 3, axis=0)
    groups = np.repeat(np.arange(15), 3)
    fit = fit_ridge_cv(x, y, groups)
    assert fit.alpha[0] > 1e-6 * np.trace(x.T @ x) / 20


def test_dual_and_primal_agree():
    rng = np.random.default_rng(4)
    x = rng.normal(size=(30, 50))  # fewer rows than features: Gram form
    y = rng.normal(size=(30, 2))
    groups = np.repeat(np.arange(10), 3)
    fit = fit_ridge_cv(x, y, groups, alphas=[1e-3, 1e-1])
    scale = np.trace(x @ x.T) / 50
    for t in range(2):
        a = fit.alpha[t]
        assert np.isclose(a / scale, 1e-3) or np.isclose(a / scale, 1e-1)
        ref = np.linalg.solve(x.T @ x + a * np.eye(50), x.T @ y[:, t])
        np.testing.assert_allclose(fit.weights[:, t], ref, atol=1e-10)
    # the same problem padded with rows of zeros switches to the primal form
    xp = np.vstack([x, np.zeros((30, 50))])
    yp = np.vstack([y, np.zeros((30, 2))])
    fitp = fit_ridge_cv(xp, yp, np.arange(60), alphas=[1e-3], cv=1)
    fitd = fit_ridge_cv(x, y, np.arange(30), alphas=[1e-3], cv=1)
    np.testing.assert_allclose(fitp.weights, fitd.weights, atol=1e-10)


def _brute_force_loo(x, y, groups, alpha):
    err = np.zeros(y.shape[1])
    for g in np.unique(groups):
        tr = groups != g
        w = np.linalg.solve(x[tr].T @ x[tr] + alpha * np.eye(x.shape[1]), x[tr].T @ y[tr])
        err += ((x[~tr] @ w - y[~tr]) ** 2).sum(axis=0)
    return np.sqrt(err / len(y))


def test_grouped_loo_is_exact():
    rng = np.random.default_rng(5)
    for n_rows, n_feat in [(45, 12), (30, 40)]:  # primal and dual forms
        x = rng.normal(size=(n_rows, n_feat))
        y = x @ rng.normal(size=(n_feat, 2)) + 0.1 * rng.normal(size=(n_rows, 2))
        groups = np.repeat(np.arange(n_rows // 3), 3)[rng.permutation(n_rows)]  # not contiguous
        fit = fit_ridge_cv(x, y, groups, alphas=[1e-2])
        ref = _brute_force_loo(x, y, groups, fit.alpha[0])
        np.testing.assert_allclose(fit.cv_rmse, ref, rtol=1e-8)


def test_kfold_and_bad_cv():
    rng = np.random.default_rng(6)
    x = rng.normal(size=(40, 5))
    y = x @ rng.normal(size=5)
    fit = fit_ridge_cv(x, y, np.arange(40), cv=4)
    assert fit.cv_rmse[0] < 1e-6
    import pytest

    with pytest.raises(ValueError, match="`cv` must be"):
        fit_ridge_cv(x, y, np.arange(40), cv="bogus")


def test_all_zero_features_give_intercept_only():
    y = np.arange(12.0).reshape(6, 2)
    fit = fit_ridge_cv(np.zeros((6, 3)), y, np.arange(6), intercept=True)
    np.testing.assert_array_equal(fit.weights, 0.0)
    np.testing.assert_allclose(fit.intercept, y.mean(axis=0))
    fit = fit_ridge_cv(np.zeros((6, 0)), y, np.arange(6))
    assert fit.weights.shape == (0, 2)
    np.testing.assert_array_equal(fit.intercept, 0.0)


# --------------------------------------------------------------------------- kernel ridge


def test_kernel_ridge_with_linear_kernel_equals_ridge():
    """Dual kernel ridge on K = X X^T predicts what primal ridge on X predicts, with the same
    grouped-LOO errors (the relative alphas are scaled by n_features vs n_rows)."""
    from ncsym.hamiltonian._ridge import fit_kernel_ridge_cv

    rng = np.random.default_rng(8)
    x = rng.normal(size=(45, 10))
    x_new = rng.normal(size=(7, 10))
    y = x @ rng.normal(size=(10, 3)) + 0.1 * rng.normal(size=(45, 3))
    groups = np.repeat(np.arange(15), 3)
    rel = np.array([1e-3, 1e-2, 1e-1])
    lin = fit_ridge_cv(x, y, groups, alphas=rel)
    ker = fit_kernel_ridge_cv(x @ x.T, y, groups, alphas=rel * 45 / 10)
    np.testing.assert_allclose(ker.alpha, lin.alpha, rtol=1e-12)
    np.testing.assert_allclose(ker.cv_rmse, lin.cv_rmse, rtol=1e-8)
    np.testing.assert_allclose((x_new @ x.T) @ ker.weights, x_new @ lin.weights, atol=1e-10)


def test_kernel_ridge_intercept_kfold_and_errors():
    import pytest

    from ncsym.hamiltonian._ridge import fit_kernel_ridge_cv

    rng = np.random.default_rng(9)
    x = rng.normal(size=(40, 3))
    gram = (x @ x.T + 1.0) ** 2
    y = (x[:, :1] ** 2 - x[:, 1:2] * x[:, 2:3]) + 5.0
    fit = fit_kernel_ridge_cv(gram, y, np.arange(40), cv=5, intercept=True)
    np.testing.assert_allclose(fit.intercept, y.mean(axis=0))
    assert fit.cv_rmse[0] < 1e-3 * y.std()  # a quadratic kernel represents a quadratic target
    fit1 = fit_kernel_ridge_cv(gram, y, np.arange(40), cv=1)
    assert np.isnan(fit1.cv_rmse).all()
    with pytest.raises(ValueError, match="inconsistent shapes"):
        fit_kernel_ridge_cv(gram[:, :-1], y, np.arange(40))
    with pytest.raises(ValueError, match="`cv` must be"):
        fit_kernel_ridge_cv(gram, y, np.arange(40), cv="bogus")
    zero = fit_kernel_ridge_cv(np.zeros((4, 4)), np.ones((4, 1)), np.arange(4), intercept=True)
    np.testing.assert_array_equal(zero.weights, 0.0)
    np.testing.assert_array_equal(zero.intercept, 1.0)


# --------------------------------------------------------------------------- LOO residuals


def test_loo_residuals_equal_refits_without_each_group():
    """``residuals=True`` returns, per target at its chosen alpha, the residual of each row
    predicted by the model refitted without that row's group (primal, dual and kernel forms)."""
    from ncsym.hamiltonian._ridge import fit_kernel_ridge_cv

    rng = np.random.default_rng(11)
    for n_rows, n_feat in [(45, 12), (30, 40)]:
        x = rng.normal(size=(n_rows, n_feat))
        # two targets with different noise: they pick different alphas
        y = x @ rng.normal(size=(n_feat, 2)) + np.array([0.01, 1.0]) * rng.normal(size=(n_rows, 2))
        groups = np.repeat(np.arange(n_rows // 3), 3)[rng.permutation(n_rows)]
        rel = [1e-4, 1e-2, 1.0]
        for fit in (
            fit_ridge_cv(x, y, groups, alphas=rel, residuals=True),
            fit_kernel_ridge_cv(x @ x.T, y, groups, alphas=np.array(rel) * n_rows / n_feat, residuals=True),
        ):
            assert fit.cv_residuals.shape == y.shape
            for t in range(2):
                ref = np.empty(n_rows)
                for g in np.unique(groups):
                    tr = groups != g
                    w = np.linalg.solve(x[tr].T @ x[tr] + fit.alpha[t] * np.eye(n_feat), x[tr].T @ y[tr, t])
                    ref[~tr] = y[~tr, t] - x[~tr] @ w
                np.testing.assert_allclose(fit.cv_residuals[:, t], ref, rtol=1e-7, atol=1e-10)
                np.testing.assert_allclose(np.sqrt((ref**2).mean()), fit.cv_rmse[t], rtol=1e-7)
    # only with leave-one-out
    assert fit_ridge_cv(x, y, groups, cv=3, residuals=True).cv_residuals is None
    assert fit_ridge_cv(x, y, groups).cv_residuals is None
