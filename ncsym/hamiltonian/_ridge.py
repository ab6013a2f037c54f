"""Multi-target ridge regression with grouped cross-validation of the regularisation.

Used by :mod:`ncsym.hamiltonian.model`: one design matrix ``X`` (rows = samples x m
components of one feature block) is shared by every target block with the same key, so all
targets are solved together from one eigendecomposition of ``X^T X`` (or of the Gram matrix ``X X^T`` when there are fewer
rows than features; the two give the same weights) per fold.  Folds never
split the ``2 lambda + 1`` rows of one sample (``groups``), so the validation error measures
generalisation to new atom pairs, not to missing m components.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

#: Default regularisation grid, relative to the mean eigenvalue of ``X^T X``.
DEFAULT_ALPHAS = tuple(10.0 ** np.arange(-12, 1, 1.0))


@dataclass
class RidgeFit:
    """Result of :func:`fit_ridge_cv`.

    Attributes
    ----------
    weights : ndarray, shape (n_features, n_targets)
    intercept : ndarray, shape (n_targets,)
        Zero unless fitted with ``intercept=True``.
    alpha : ndarray, shape (n_targets,)
        Chosen absolute regularisation per target.
    cv_rmse : ndarray, shape (n_targets,)
        Cross-validated RMSE at the chosen alpha (NaN when no CV was possible).
    """

    weights: np.ndarray
    intercept: np.ndarray
    alpha: np.ndarray
    cv_rmse: np.ndarray


def _solve(mat: np.ndarray, rhs: np.ndarray):
    """Eigendecomposition of a symmetric PSD matrix: returns (eigvals, V, V^T rhs)."""
    e, v = np.linalg.eigh(mat)
    e = np.clip(e, 0.0, None)
    return e, v, v.T @ rhs


def fit_ridge_cv(
    x: np.ndarray,
    y: np.ndarray,
    groups: np.ndarray,
    *,
    alphas=DEFAULT_ALPHAS,
    n_folds: int = 5,
    intercept: bool = False,
    seed: int = 0,
) -> RidgeFit:
    """Ridge regression ``y ~ x w (+ b)`` with ``alpha`` chosen per target by grouped K-fold CV.

    Parameters
    ----------
    x : ndarray, shape (n_rows, n_features)
    y : ndarray, shape (n_rows, n_targets)
    groups : ndarray of int, shape (n_rows,)
        Group label of each row (one per sample); a fold holds whole groups.
    alphas : sequence of float
        Candidate regularisations relative to ``trace(X^T X) / n_features``.
    n_folds : int
        Number of folds (reduced to the number of groups when fewer).
    intercept : bool
        Fit an intercept (columns and targets are centred).
    seed : int
        Seed of the fold assignment.
    """
    x = np.asarray(x, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
    if y.ndim == 1:
        y = y[:, None]
    n_rows, n_feat = x.shape
    n_targets = y.shape[1]
    if intercept:
        x_mean = x.mean(axis=0)
        y_mean = y.mean(axis=0)
        x = x - x_mean
        y = y - y_mean
    unique_groups = np.unique(groups)
    n_folds = min(n_folds, len(unique_groups))
    dual = n_rows < n_feat  # Gram form is cheaper with fewer rows than features
    if dual:
        gram = x @ x.T
        scale = max(np.trace(gram) / max(n_feat, 1), 1e-300)
    else:
        xtx = x.T @ x
        xty = x.T @ y
        scale = max(np.trace(xtx) / max(n_feat, 1), 1e-300)
    rel = np.asarray(alphas, dtype=np.float64)
    abs_alphas = rel * scale

    errors = np.zeros((len(rel), n_targets))
    if n_folds >= 2:
        rng = np.random.default_rng(seed)
        fold_of_group = rng.permutation(len(unique_groups)) % n_folds
        fold = fold_of_group[np.searchsorted(unique_groups, groups)]
        for k in range(n_folds):
            val = fold == k
            yv = y[val]
            if dual:
                tr = ~val
                e, q, b = _solve(gram[np.ix_(tr, tr)], y[tr])
                a = gram[np.ix_(val, tr)] @ q
            else:
                xv = x[val]
                e, q, b = _solve(xtx - xv.T @ xv, xty - xv.T @ yv)
                a = xv @ q
            for ia, alpha in enumerate(abs_alphas):
                pred = a @ (b / (e + alpha)[:, None])
                errors[ia] += ((pred - yv) ** 2).sum(axis=0)
        errors = np.sqrt(errors / n_rows)
        best = np.argmin(errors, axis=0)
        cv = errors[best, np.arange(n_targets)]
    else:
        best = np.full(n_targets, len(rel) // 2)
        cv = np.full(n_targets, np.nan)

    weights = np.empty((n_feat, n_targets))
    if dual:
        e, q, b = _solve(gram, y)
        for ia in np.unique(best):
            cols = best == ia
            weights[:, cols] = x.T @ (q @ (b[:, cols] / (e + abs_alphas[ia])[:, None]))
    else:
        e, q, b = _solve(xtx, xty)
        for ia in np.unique(best):
            cols = best == ia
            weights[:, cols] = q @ (b[:, cols] / (e + abs_alphas[ia])[:, None])
    if intercept:
        b0 = y_mean - x_mean @ weights
    else:
        b0 = np.zeros(n_targets)
    return RidgeFit(weights=weights, intercept=b0, alpha=abs_alphas[best], cv_rmse=cv)
