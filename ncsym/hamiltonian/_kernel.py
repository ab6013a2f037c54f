"""Equivariant polynomial (lambda-SOAP) kernels for the per-block Hamiltonian models.

A sample ``A`` of a feature block has equivariant features ``x_A`` (shape ``(2 lambda + 1,
n_properties)``) and invariant features ``u_A`` (the ``lambda = 0, sigma = +1`` features of the
same atom pair, scaled, normalised to unit length and extended by a constant).  The kernel

    K(A, B)[mu, mu'] = (x_A x_B^T)[mu, mu'] * k0(A, B) ** (zeta - 1),
    k0(A, B) = (u_A . u_B + 1) / 2,

is the symmetry-adapted polynomial kernel of Grisafi et al. (Phys. Rev. Lett. 120, 036002,
2018): ``x_A x_B^T`` transforms as ``D(R) K D(R')^T`` and ``k0`` is invariant, so a model
``y_A = sum_M K(A, M) w_M`` is exactly equivariant.  ``zeta = 2`` multiplies every feature by
every invariant: it doubles the body order that a linear model on the same features reaches
(a linear model on ``rho_i (x) g_ij`` is three-body; products of displacements of two
different neighbours need four-body terms).

Two ways to fit:

* exact (``n_active=None`` in the model): kernel ridge regression over every training sample,
  solved in the dual (:func:`ncsym.hamiltonian._ridge.fit_kernel_ridge_cv`) and turned into
  primal weights (:func:`primal_weights`): ``k0 ** (zeta - 1)`` is the dot product of the
  explicit rows ``psi`` (:func:`invariant_power`), so the model is the linear model on
  ``psi_A (x) x_A``, stored as ``(d, p, n_targets)`` weights and evaluated without the
  training samples;
* projected process (Nystrom): ``M`` active samples chosen by farthest-point sampling on ``u``,
  ``K_MM = U diag(e) U^T``, and the features ``Phi_A = K(A, M) U diag(e)^{-1/2}`` (eigenvalues
  below ``EIGENVALUE_FLOOR e_max`` dropped).  Ridge regression on ``Phi`` with penalty
  ``alpha |w|^2`` is kernel ridge regression with the usual ``alpha w^T K_MM w`` regulariser,
  so :func:`ncsym.hamiltonian._ridge.fit_ridge_cv` (grouped leave-one-out) is reused unchanged.
"""

from __future__ import annotations

import numpy as np

#: Relative floor below which eigenvalues of ``K_MM`` are dropped from the Nystrom basis.
EIGENVALUE_FLOOR = 1e-10

#: Smallest relative ridge regularisation of the Nystrom kernel models.  Their prediction is
#: a sum over the active samples whose terms grow as ``1 / alpha`` and cancel, so round-off in
#: the features of a new (e.g. rotated) structure is amplified by about ``1 / alpha``.  Measured
#: on water with the dual form ``K(A, M) c`` of an exact model (100 structures): equivariant
#: to 4e-9 relative at ``alpha = 1e-12``, 4e-12 at ``1e-6``.  The exact models sum over the
#: training samples once, at fit time (:func:`primal_weights`), and need no floor: 1.3e-13
#: at ``alpha = 1e-12``.
MIN_KERNEL_ALPHA = 1e-6


def invariant_rows(x0: np.ndarray) -> np.ndarray:
    """Unit-normalised invariant features with a constant appended, shape (n, p0 + 1).

    Parameters
    ----------
    x0 : ndarray, shape (n_samples, p0)
        Scaled invariant features (``lambda = 0``, ``sigma = +1``; the single ``mu``).
    """
    x0 = np.asarray(x0, dtype=np.float64).reshape(len(x0), -1)
    norm = np.sqrt((x0**2).sum(axis=1, keepdims=True))
    u = np.divide(x0, norm, out=np.zeros_like(x0), where=norm > 0)
    return np.hstack([u, np.ones((len(x0), 1))]) / np.sqrt(2.0)


def farthest_points(u: np.ndarray, n_active: int) -> np.ndarray:
    """Indices of ``n_active`` rows of ``u`` picked by farthest-point sampling (deterministic).

    Starts from the row farthest from the mean; ties go to the lowest index.
    """
    n = len(u)
    if n_active >= n:
        return np.arange(n)
    first = int(np.argmax(((u - u.mean(axis=0)) ** 2).sum(axis=1)))
    chosen = [first]
    dist = ((u - u[first]) ** 2).sum(axis=1)
    for _ in range(n_active - 1):
        nxt = int(np.argmax(dist))
        chosen.append(nxt)
        dist = np.minimum(dist, ((u - u[nxt]) ** 2).sum(axis=1))
    return np.sort(np.array(chosen, dtype=np.int64))


def kernel(xa: np.ndarray, ua: np.ndarray, xb: np.ndarray, ub: np.ndarray, zeta: int) -> np.ndarray:
    """Equivariant kernel between two sets of samples.

    Parameters
    ----------
    xa, xb : ndarray, shape (n_a, 2 lambda + 1, p), (n_b, 2 lambda + 1, p)
    ua, ub : ndarray, shape (n_a, p0 + 1), (n_b, p0 + 1)
        Output of :func:`invariant_rows`.
    zeta : int
        Polynomial order (``1``: linear kernel).

    Returns
    -------
    ndarray, shape (n_a, 2 lambda + 1, n_b, 2 lambda + 1)
    """
    n_a, c, p = xa.shape
    n_b = xb.shape[0]
    # stacked (one product per sample of ``a``) rather than one big GEMM: every sample goes
    # through the same BLAS code path wherever it sits, so permuting atoms permutes the
    # predictions bit for bit
    lin = np.matmul(xa, xb.reshape(n_b * c, p).T).reshape(n_a, c, n_b, c)
    if zeta == 1:
        return lin
    # ((u.u' + 1) / 2) ** (zeta - 1): invariant_rows carries the constant and the 1/sqrt(2)
    k0 = np.matmul(ua[:, None, :], ub.T)[:, 0, :] ** (zeta - 1)
    return lin * k0[:, None, :, None]


class NystromKernel:
    """Active set and Nystrom basis of one feature block.

    Parameters
    ----------
    x_active : ndarray, shape (M, 2 lambda + 1, p)
    u_active : ndarray, shape (M, p0 + 1)
    zeta : int
    basis : ndarray, optional
        A previously computed Nystrom basis (computed from ``K_MM`` when omitted).
    """

    def __init__(
        self,
        x_active: np.ndarray,
        u_active: np.ndarray,
        zeta: int,
        basis: np.ndarray | None = None,
    ):
        self.x_active = np.ascontiguousarray(x_active, dtype=np.float64)
        self.u_active = np.ascontiguousarray(u_active, dtype=np.float64)
        self.zeta = int(zeta)
        if basis is None:
            m, c, _ = self.x_active.shape
            kmm = kernel(self.x_active, self.u_active, self.x_active, self.u_active, self.zeta)
            kmm = kmm.reshape(m * c, m * c)
            e, vecs = np.linalg.eigh(0.5 * (kmm + kmm.T))
            keep = e > EIGENVALUE_FLOOR * max(float(e[-1]), 0.0) if e.size else np.zeros(0, bool)
            if e.size and e[-1] <= 0:
                keep[:] = False
            basis = vecs[:, keep] / np.sqrt(e[keep])
        self.basis = np.ascontiguousarray(basis)

    @property
    def width(self) -> int:
        """Number of Nystrom features."""
        return self.basis.shape[1]

    def features(self, x: np.ndarray, u: np.ndarray) -> np.ndarray:
        """Nystrom features, shape (n, 2 lambda + 1, width)."""
        n, c, _ = x.shape
        k = kernel(x, u, self.x_active, self.u_active, self.zeta).reshape(n, c, -1)
        return np.matmul(k, self.basis)  # stacked per sample, see kernel()


def principal_axes(x: np.ndarray, n_components: int) -> np.ndarray:
    """The ``n_components`` leading principal axes of the rows of ``x`` (uncentred), shape
    ``(n_features, n_components)`` with orthonormal columns (fewer when ``x`` has lower rank).

    Projecting the properties of an equivariant block on them (``x @ axes``, the same for
    every ``mu``) keeps the equivariance; the kernel then costs and stores ``n_components``
    numbers per ``(sample, mu)`` instead of ``n_features``.

    Parameters
    ----------
    x : ndarray, shape (n_rows, n_features)
    n_components : int
    """
    x = np.asarray(x, dtype=np.float64)
    n_rows, n_feat = x.shape
    if n_rows >= n_feat:
        e, v = np.linalg.eigh(x.T @ x)
    else:  # through the smaller Gram matrix: right singular vectors x^T u / s
        e, u = np.linalg.eigh(x @ x.T)
        keep = e > EIGENVALUE_FLOOR * max(float(e[-1]), 0.0) if e.size else np.zeros(0, bool)
        e, u = e[keep], u[:, keep]
        v = (x.T @ u) / np.sqrt(e)
    order = np.argsort(e)[::-1][:n_components]
    return np.ascontiguousarray(v[:, order])


def invariant_power(phi: np.ndarray, zeta: int) -> np.ndarray:
    """Rows ``psi`` with ``psi_A . psi_B = (phi_A . phi_B) ** (zeta - 1)``.

    One column per monomial of degree ``zeta - 1`` in the ``d`` columns of ``phi`` (symmetric
    tensor power), weighted by the square root of its multinomial coefficient: shape
    ``(n, C(d + zeta - 2, zeta - 1))`` (``d`` columns for ``zeta = 2``, ``d (d + 1) / 2`` for
    ``zeta = 3`` instead of the ``d**2`` of the plain tensor power; a column of ones for
    ``zeta = 1``).
    """
    from itertools import combinations_with_replacement
    from math import factorial

    phi = np.asarray(phi, dtype=np.float64)
    degree = int(zeta) - 1
    if degree == 0:
        return np.ones((len(phi), 1))
    monomials = list(combinations_with_replacement(range(phi.shape[1]), degree))
    psi = np.ones((len(phi), len(monomials)))
    for t, idx in enumerate(monomials):
        weight = factorial(degree)
        for i in set(idx):
            weight //= factorial(idx.count(i))
        psi[:, t] = np.sqrt(weight) * np.prod(phi[:, list(idx)], axis=1)
    return psi


def invariant_power_width(d: int, zeta: int) -> int:
    """Number of columns of :func:`invariant_power` for ``d`` invariant columns."""
    from math import comb

    return comb(int(d) + int(zeta) - 2, int(zeta) - 1)


def exact_kernel_bytes(n_samples: int, n_components: int, n_features: int, d: int, zeta: int, n_targets: int) -> int:
    """A lower bound on the peak bytes of one exact kernel fit: the Gram matrix and its
    eigendecomposition (at least three ``(n_samples n_components)**2`` arrays), the rows
    ``psi`` and the primal weights ``(width, n_features, n_targets)``."""
    width = invariant_power_width(d, zeta)
    n_rows = n_samples * n_components
    return 8 * (3 * n_rows * n_rows + n_samples * width + width * n_features * n_targets)


def primal_weights(x: np.ndarray, psi: np.ndarray, coef: np.ndarray) -> np.ndarray:
    """Primal weights of an exact kernel ridge model, shape ``(d, p, n_targets)``.

    The kernel ``K(A, B) = (x_A x_B^T) (psi_A . psi_B)`` is the linear kernel of the features
    ``psi_A (x) x_A``, so the dual model ``y_A = sum_B K(A, B) c_B`` equals
    ``y_A = sum_k psi_Ak x_A W_k`` with ``W_k = sum_B psi_Bk x_B^T c_B``.  The sum over the
    training samples, whose terms are large and cancel at small regularisation, is done here
    once; predictions (:func:`primal_predict`) then carry only the round-off of ``x_A`` and
    ``psi_A`` times the (small) weights, which keeps them equivariant to ~1e-13.

    Parameters
    ----------
    x : ndarray, shape (n, 2 lambda + 1, p)
    psi : ndarray, shape (n, d)
        :func:`invariant_power` of the invariant rows.
    coef : ndarray, shape (n (2 lambda + 1), n_targets)
        Dual coefficients.
    """
    n, c, p = x.shape
    flat = x.reshape(n * c, p)
    w = np.empty((psi.shape[1], p, coef.shape[1]))
    for k in range(psi.shape[1]):
        w[k] = flat.T @ (coef * np.repeat(psi[:, k], c)[:, None])
    return w


def primal_predict(x: np.ndarray, psi: np.ndarray, w: np.ndarray) -> np.ndarray:
    """``y_A = sum_k psi_Ak x_A W_k``, shape ``(n, 2 lambda + 1, n_targets)`` (see
    :func:`primal_weights`)."""
    out = np.zeros(x.shape[:2] + (w.shape[2],))
    for k in range(w.shape[0]):
        out += psi[:, k, None, None] * np.matmul(x, w[k])
    return out
