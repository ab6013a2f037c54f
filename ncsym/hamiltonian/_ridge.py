"""Multi-target ridge regression with grouped cross-validation of the regularisation.

Used by :mod:`ncsym.hamiltonian.model`: one design matrix ``X`` (rows = samples x m
components of one feature block) is shared by every target block with the same key, so all
targets are solved together from one eigendecomposition of ``X^T X`` (or of the Gram matrix
``X X^T`` when there are fewer rows than features; both give the same weights).

Cross-validation never splits the ``2 lambda + 1`` rows of one sample (``groups``), so the
validation error measures generalisation to new atom pairs, not to missing m components.
The default is exact grouped leave-one-out: with ``H(alpha) = X (X^T X + alpha)^-1 X^T`` the
residual of group ``g`` left out is ``(I - H_gg)^-1 (y_g - yhat_g)``, which needs only the
small diagonal blocks ``H_gg`` of the single decomposition.  ``cv=K`` runs grouped K-fold
instead (one decomposition per fold).
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
    cv_residuals : ndarray, shape (n_rows, n_targets), or None
        Grouped leave-one-out residuals at the chosen alpha (``residuals=True`` with
        ``cv="loo"``), else None.
    """

    weights: np.ndarray
    intercept: np.ndarray
    alpha: np.ndarray
    cv_rmse: np.ndarray
    cv_residuals: np.ndarray | None = None


class _Decomposition:
    """``X`` in the eigenbasis: ``H(alpha) = A diag(1 / (e + alpha)) A^T``, weights from ``W``."""

    def __init__(self, x: np.ndarray | None, y: np.ndarray, gram: np.ndarray | None = None) -> None:
        if gram is not None:  # kernel ridge: only the Gram matrix is known
            n_rows, n_feat = gram.shape[0], None
            self.dual = True
        else:
            n_rows, n_feat = x.shape
            self.dual = n_rows < n_feat
        if self.dual:
            e, q = np.linalg.eigh(x @ x.T if gram is None else 0.5 * (gram + gram.T))
            e = np.clip(e, 0.0, None)
            self.a = q * np.sqrt(e)  # A = Q sqrt(e): A A^T = K
            self.qty = q.T @ y
            self.q = q
        else:
            e, v = np.linalg.eigh(x.T @ x)
            e = np.clip(e, 0.0, None)
            self.a = x @ v
            self.vxty = v.T @ (x.T @ y)
            self.v = v
        self.e = e
        self.x = x

    def fitted(self, alpha: float) -> np.ndarray:
        if self.dual:
            return self.q @ (self.qty * (self.e / (self.e + alpha))[:, None])
        return self.a @ (self.vxty / (self.e + alpha)[:, None])

    def dual_coefficients(self, alpha: float, cols) -> np.ndarray:
        """``(K + alpha)^-1 y`` for the columns ``cols`` of ``y`` (dual form only)."""
        return self.q @ (self.qty[:, cols] / (self.e + alpha)[:, None])

    def weights(self, alpha: float, cols) -> np.ndarray:
        if self.dual:
            return self.x.T @ (self.q @ (self.qty[:, cols] / (self.e + alpha)[:, None]))
        return self.v @ (self.vxty[:, cols] / (self.e + alpha)[:, None])


def _group_batches(groups: np.ndarray) -> list:
    """``(size, rows)`` per group size: ``rows`` lists the rows of every group of that size,
    group after group (the usual case is one batch: every sample has 2 lambda + 1 rows)."""
    order = np.argsort(groups, kind="stable")
    _, sizes = np.unique(groups[order], return_counts=True)
    batches = []
    starts = np.concatenate([[0], np.cumsum(sizes)[:-1]])
    for size in np.unique(sizes):
        rows = np.concatenate([order[s : s + size] for s in starts[sizes == size]])
        batches.append((size, rows))
    return batches


def _loo_batch(dec: _Decomposition, alpha: float, resid: np.ndarray, size: int, rows: np.ndarray) -> np.ndarray:
    """Left-out residuals ``(I - H_gg)^-1 r_g`` of the groups in ``rows``, shape (len(rows), n_targets)."""
    d = 1.0 / (dec.e + alpha)
    a = dec.a[rows].reshape(-1, size, dec.a.shape[1])
    m = np.eye(size) - np.matmul(a * d, a.transpose(0, 2, 1))
    r = resid[rows].reshape(-1, size, resid.shape[1])
    with np.errstate(all="ignore"):
        return np.linalg.solve(m, r).reshape(len(rows), resid.shape[1])


def _loo_errors(dec: _Decomposition, y: np.ndarray, groups: np.ndarray, abs_alphas) -> np.ndarray:
    """Sum of squared grouped leave-one-out residuals, shape (n_alphas, n_targets)."""
    errors = np.zeros((len(abs_alphas), y.shape[1]))
    batches = _group_batches(groups)
    for ia, alpha in enumerate(abs_alphas):
        resid = y - dec.fitted(alpha)
        for size, rows in batches:
            try:
                loo = _loo_batch(dec, alpha, resid, size, rows)
            except np.linalg.LinAlgError:
                errors[ia] = np.inf
                break
            err = (loo**2).sum(axis=0)
            errors[ia] += np.where(np.isfinite(err), err, np.inf)
    return errors


def _loo_residuals(dec: _Decomposition, y: np.ndarray, groups: np.ndarray, abs_alphas, best) -> np.ndarray:
    """Grouped leave-one-out residuals of each target at its alpha ``abs_alphas[best]``,
    shape (n_rows, n_targets) (NaN where the left-out system is singular)."""
    out = np.full(y.shape, np.nan)
    batches = _group_batches(groups)
    for ia in np.unique(best):
        cols = np.flatnonzero(best == ia)
        resid = y[:, cols] - dec.fitted(abs_alphas[ia])[:, cols]
        for size, rows in batches:
            try:
                out[np.ix_(rows, cols)] = _loo_batch(dec, abs_alphas[ia], resid, size, rows)
            except np.linalg.LinAlgError:
                pass
    return out


def fit_ridge_cv(
    x: np.ndarray,
    y: np.ndarray,
    groups: np.ndarray,
    *,
    alphas=DEFAULT_ALPHAS,
    cv: str | int = "loo",
    intercept: bool = False,
    seed: int = 0,
    residuals: bool = False,
) -> RidgeFit:
    """Ridge regression ``y ~ x w (+ b)`` with ``alpha`` chosen per target by grouped CV.

    Parameters
    ----------
    x : ndarray, shape (n_rows, n_features)
    y : ndarray, shape (n_rows, n_targets)
    groups : ndarray of int, shape (n_rows,)
        Group label of each row (one per sample); validation sets hold whole groups.
    alphas : sequence of float
        Candidate regularisations relative to ``trace(X^T X) / n_features``.
    cv : "loo" or int
        ``"loo"``: exact grouped leave-one-out (one decomposition); an int ``K >= 2``:
        grouped K-fold; ``1``: no cross-validation (the middle alpha is used).
    intercept : bool
        Fit an intercept (columns and targets are centred; with ``"loo"`` the centring uses
        all rows, a negligible leak).
    seed : int
        Seed of the K-fold assignment.
    residuals : bool
        Also return the grouped leave-one-out residuals at the chosen alphas
        (``cv_residuals``; ``cv="loo"`` only).
    """
    x = np.asarray(x, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
    if y.ndim == 1:
        y = y[:, None]
    groups = np.asarray(groups)
    n_rows, n_feat = x.shape
    n_targets = y.shape[1]
    if intercept:
        x_mean = x.mean(axis=0)
        y_mean = y.mean(axis=0)
        x = x - x_mean
        y = y - y_mean
    if n_feat == 0 or not np.any(x):
        # no information in the features: the model is the intercept (or zero)
        b0 = y_mean if intercept else np.zeros(n_targets)
        return RidgeFit(
            weights=np.zeros((n_feat, n_targets)),
            intercept=b0,
            alpha=np.zeros(n_targets),
            cv_rmse=np.full(n_targets, np.nan),
        )
    dec = _Decomposition(x, y)
    scale = float(dec.e.sum()) / n_feat
    rel = np.asarray(alphas, dtype=np.float64)
    abs_alphas = rel * scale

    def fold_predictions(train, val):
        sub = _Decomposition(x[train], y[train])
        return [x[val] @ sub.weights(alpha, slice(None)) for alpha in abs_alphas]

    errors = _cv_errors(dec, y, groups, abs_alphas, cv, seed, fold_predictions)
    best, cv_rmse = _select(errors, n_targets, len(rel))
    weights = np.empty((n_feat, n_targets))
    for ia in np.unique(best):
        cols = best == ia
        weights[:, cols] = dec.weights(abs_alphas[ia], cols)
    b0 = y_mean - x_mean @ weights if intercept else np.zeros(n_targets)
    res = _residuals_if(residuals, errors, cv, dec, y, groups, abs_alphas, best)
    return RidgeFit(weights=weights, intercept=b0, alpha=abs_alphas[best], cv_rmse=cv_rmse, cv_residuals=res)


def _residuals_if(wanted, errors, cv, dec, y, groups, abs_alphas, best):
    """LOO residuals at the chosen alphas when ``wanted`` and leave-one-out was run, else None."""
    if not wanted or errors is None or cv != "loo":
        return None
    return _loo_residuals(dec, y, groups, abs_alphas, best)


def _cv_errors(dec, y, groups, abs_alphas, cv, seed, fold_predictions):
    """Cross-validated RMSE, shape (n_alphas, n_targets), or None without CV.

    ``"loo"``: exact grouped leave-one-out from ``dec``; an int ``K >= 2``: grouped K-fold, with
    ``fold_predictions(train_rows, val_rows)`` giving the validation predictions of a model
    fitted on the training rows, one array per alpha.
    """
    n_groups = len(np.unique(groups))
    if cv == "loo" and n_groups >= 2:
        return np.sqrt(_loo_errors(dec, y, groups, abs_alphas) / len(y))
    if isinstance(cv, (int, np.integer)) and not isinstance(cv, bool) and cv >= 2 and n_groups >= 2:
        fold = _fold_of_rows(groups, cv, seed)
        errors = np.zeros((len(abs_alphas), y.shape[1]))
        for k in np.unique(fold):
            val = fold == k
            for ia, pred in enumerate(fold_predictions(~val, val)):
                errors[ia] += ((pred - y[val]) ** 2).sum(axis=0)
        return np.sqrt(errors / len(y))
    if cv in ("loo", 1) or isinstance(cv, (int, np.integer)):
        return None
    raise ValueError(f"`cv` must be 'loo' or an integer >= 1, got {cv!r}")


def _select(errors, n_targets, n_alphas):
    """Index of the best alpha per target (the middle one without CV) and its CV RMSE."""
    if errors is None:
        return np.full(n_targets, n_alphas // 2), np.full(n_targets, np.nan)
    best = np.argmin(errors, axis=0)
    return best, errors[best, np.arange(n_targets)]


def _fold_of_rows(groups: np.ndarray, cv: int, seed: int) -> np.ndarray:
    unique_groups = np.unique(groups)
    n_folds = min(int(cv), len(unique_groups))
    fold_of_group = np.random.default_rng(seed).permutation(len(unique_groups)) % n_folds
    return fold_of_group[np.searchsorted(unique_groups, groups)]


def fit_kernel_ridge_cv(
    gram: np.ndarray,
    y: np.ndarray,
    groups: np.ndarray,
    *,
    alphas=DEFAULT_ALPHAS,
    cv: str | int = "loo",
    intercept: bool = False,
    seed: int = 0,
    residuals: bool = False,
) -> RidgeFit:
    """Kernel ridge regression ``y ~ K c (+ b)`` with ``alpha`` chosen per target by grouped CV.

    The dual counterpart of :func:`fit_ridge_cv` for a model that is known only through its
    Gram (kernel) matrix between the training rows: the same grouped leave-one-out or K-fold
    cross-validation, with ``alphas`` relative to the mean eigenvalue of ``K``.

    Parameters
    ----------
    gram : ndarray, shape (n_rows, n_rows)
        Symmetric positive semi-definite kernel matrix of the training rows.
    y : ndarray, shape (n_rows, n_targets)
    groups : ndarray of int, shape (n_rows,)
    alphas, cv, seed, residuals
        As in :func:`fit_ridge_cv`.
    intercept : bool
        Fit the targets' mean as the intercept (the kernel then models the centred targets).

    Returns
    -------
    RidgeFit
        ``weights`` are the dual coefficients, shape (n_rows, n_targets): a new sample ``A``
        is predicted as ``K(A, train) @ weights + intercept``.
    """
    gram = np.asarray(gram, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
    if y.ndim == 1:
        y = y[:, None]
    groups = np.asarray(groups)
    n_rows = gram.shape[0]
    if gram.shape != (n_rows, n_rows) or y.shape[0] != n_rows or groups.shape != (n_rows,):
        raise ValueError(
            f"inconsistent shapes: gram {gram.shape}, y {y.shape}, groups {groups.shape}"
        )
    n_targets = y.shape[1]
    y_mean = y.mean(axis=0) if intercept else np.zeros(n_targets)
    y = y - y_mean
    if n_rows == 0 or not np.any(gram):
        return RidgeFit(
            weights=np.zeros((n_rows, n_targets)),
            intercept=y_mean,
            alpha=np.zeros(n_targets),
            cv_rmse=np.full(n_targets, np.nan),
        )
    dec = _Decomposition(None, y, gram=gram)
    abs_alphas = np.asarray(alphas, dtype=np.float64) * (float(dec.e.sum()) / n_rows)

    def fold_predictions(train, val):
        sub = _Decomposition(None, y[train], gram=gram[np.ix_(train, train)])
        k_val = gram[np.ix_(val, train)]
        return [k_val @ sub.dual_coefficients(alpha, slice(None)) for alpha in abs_alphas]

    errors = _cv_errors(dec, y, groups, abs_alphas, cv, seed, fold_predictions)
    best, cv_rmse = _select(errors, n_targets, len(abs_alphas))
    coef = np.empty((n_rows, n_targets))
    for ia in np.unique(best):
        cols = best == ia
        coef[:, cols] = dec.dual_coefficients(abs_alphas[ia], cols)
    res = _residuals_if(residuals, errors, cv, dec, y, groups, abs_alphas, best)
    return RidgeFit(weights=coef, intercept=y_mean, alpha=abs_alphas[best], cv_rmse=cv_rmse, cv_residuals=res)
