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

The models use a projected-process (Nystrom) approximation: ``M`` active samples chosen by
farthest-point sampling on ``u``, ``K_MM = U diag(e) U^T``, and the features
``Phi_A = K(A, M) U diag(e)^{-1/2}`` (eigenvalues below ``EIGENVALUE_FLOOR e_max`` dropped).
Ridge regression on ``Phi`` with penalty ``alpha |w|^2`` is kernel ridge regression with the
usual ``alpha w^T K_MM w`` regulariser, so :func:`ncsym.hamiltonian._ridge.fit_ridge_cv`
(grouped leave-one-out) is reused unchanged.
"""

from __future__ import annotations

import numpy as np

#: Relative floor below which eigenvalues of ``K_MM`` are dropped from the Nystrom basis.
EIGENVALUE_FLOOR = 1e-10


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
    """

    def __init__(self, x_active: np.ndarray, u_active: np.ndarray, zeta: int, basis: np.ndarray | None = None):
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
