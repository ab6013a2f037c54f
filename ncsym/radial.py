"""GTO radial basis, exact Gaussian-density radial integrals and their cubic Hermite splines.

Radial basis (featomic 0.6 ``Gto``)
    Primitives ``phi_k(r) = N_k r^k exp(-r^2 / (2 sigma_k^2))`` for ``k = 0 .. max_radial``
    with ``sigma_k = cutoff * max(sqrt(k), 1) / (max_radial + 1)`` and ``N_k`` normalising
    ``int_0^inf r^2 phi_k^2 dr = 1``.  The basis is Loewdin-orthonormalised on ``[0, inf)``:
    ``R_n = sum_k (S^-1/2)_nk phi_k`` with ``S`` the analytic overlap of the ``phi_k``.

Radial integral (Gaussian density of width ``sigma``, ``c = 1 / (2 sigma^2)``)
    For a neighbour at distance ``d`` (Angstrom), with ``b_k = 1 / (2 sigma_k^2)``,
    ``a = (k + l + 3) / 2`` and ``beta = l + 3 / 2``::

        P_kl(d) = (pi / sigma^2)^(3/4) exp(-c d^2) (c d)^l (c + b_k)^(-a)
                  Gamma(a) / Gamma(beta) 1F1(a; beta; c^2 d^2 / (c + b_k))

    so that ``int d^3x R_n(|x|) Y_l^m(x/|x|) g(x - d) = I_nl(d) Y_l^m(d/|d|)`` with
    ``I_nl = sum_k (S^-1/2)_nk N_k' P_kl`` (``N_k'`` the normalisation of the bare
    ``r^k exp(...)``) and ``g`` the L2-normalised Gaussian of :mod:`ncsym.density`.
    ``1F1`` comes from ``scipy.special.hyp1f1`` (combined in log space, so large cutoffs
    or narrow Gaussians cannot overflow) or, for very large arguments, from its asymptotic
    series.  This runs only when tables are built.

Splines
    :class:`RadialSpline` tabulates ``I_nl`` and ``dI_nl/dd`` on a uniform grid over
    ``[0, cutoff]`` and interpolates with cubic Hermite polynomials; the grid is refined
    until the largest absolute error at every interval midpoint is below ``accuracy``.
"""

from __future__ import annotations

import math

import numpy as np
import scipy.special
from numpy.typing import ArrayLike, NDArray

from ._checks import check_angular, check_array, check_int, check_positive_float
from .conventions import MAX_ANGULAR

__all__ = [
    "gto_widths",
    "gto_orthonormalization",
    "gto_basis",
    "radial_integral",
    "RadialSpline",
]

#: Smallest eigenvalue of the normalised GTO overlap accepted when orthonormalising (it does
#: not depend on the cutoff; max_radial <= 20 passes).  Smaller ones amplify rounding errors
#: beyond 1e-9 (featomic accepts down to machine epsilon, i.e. a few more functions).
OVERLAP_EIGENVALUE_MIN = 1e-14

#: Above this argument, 1F1 is evaluated from its large-z asymptotic series.
_ASYMPTOTIC_Z = 500.0

#: Errors that stop decreasing below this (relative to the largest integral) are rounding.
_ROUNDING_FLOOR = 1e-10

#: Largest number of spline intervals tried before giving up on ``accuracy``.
_MAX_INTERVALS = 1 << 16


def _check_basis_args(cutoff, max_radial):
    cutoff = check_positive_float(cutoff, "cutoff")
    max_radial = check_int(max_radial, "max_radial", minimum=0)
    return cutoff, max_radial


def gto_widths(cutoff: float, max_radial: int) -> NDArray[np.float64]:
    """Gaussian widths ``sigma_k = cutoff * max(sqrt(k), 1) / (max_radial + 1)`` (Angstrom).

    Parameters
    ----------
    cutoff : float
        Basis radius (Angstrom), the spherical cutoff.
    max_radial : int
        Largest radial index (``max_radial + 1`` functions).

    Returns
    -------
    ndarray of float64, shape (max_radial + 1,)
    """
    cutoff, max_radial = _check_basis_args(cutoff, max_radial)
    k = np.arange(max_radial + 1, dtype=np.float64)
    return cutoff * np.maximum(np.sqrt(k), 1.0) / (max_radial + 1)


def _log_norms(widths: np.ndarray) -> np.ndarray:
    """``log N_k`` with ``N_k = sqrt(2 / (sigma_k^(2k + 3) Gamma(k + 3/2)))``."""
    k = np.arange(widths.size, dtype=np.float64)
    return 0.5 * (math.log(2.0) - (2 * k + 3) * np.log(widths) - scipy.special.gammaln(k + 1.5))


def gto_orthonormalization(cutoff: float, max_radial: int) -> NDArray[np.float64]:
    """Matrix ``O`` with ``R_n(r) = sum_k O[n, k] r^k exp(-r^2 / (2 sigma_k^2))``.

    Parameters
    ----------
    cutoff : float
        Basis radius (Angstrom).
    max_radial : int
        Largest radial index.

    Returns
    -------
    ndarray of float64, shape (max_radial + 1, max_radial + 1)
        ``O = S^(-1/2) diag(N)``: normalisation ``N`` of the bare primitives then symmetric
        (Loewdin) orthonormalisation with the overlap ``S`` of the normalised primitives.
        The ``R_n`` are orthonormal with weight ``r^2`` on ``[0, inf)`` (units
        Angstrom^(-3/2)).

    Raises
    ------
    ValueError
        If ``S`` is numerically singular (``max_radial`` too large).
    """
    cutoff, max_radial = _check_basis_args(cutoff, max_radial)
    widths = gto_widths(cutoff, max_radial)
    log_norm = _log_norms(widths)
    k = np.arange(max_radial + 1, dtype=np.float64)
    k1 = k[:, None]
    k2 = k[None, :]
    alpha = 0.5 / widths[:, None] ** 2 + 0.5 / widths[None, :] ** 2
    s = 0.5 * (k1 + k2 + 3)
    log_overlap = (
        log_norm[:, None] + log_norm[None, :] + scipy.special.gammaln(s) - s * np.log(alpha)
        - math.log(2.0)
    )
    overlap = np.exp(log_overlap)
    overlap = 0.5 * (overlap + overlap.T)
    eigenvalues, eigenvectors = np.linalg.eigh(overlap)
    if eigenvalues[0] < OVERLAP_EIGENVALUE_MIN:
        raise ValueError(
            f"`max_radial` is too large: the GTO overlap matrix for max_radial={max_radial} is "
            f"singular (smallest eigenvalue {eigenvalues[0]:.3e} < {OVERLAP_EIGENVALUE_MIN:g}); "
            "use a smaller `max_radial`"
        )
    inv_sqrt = (eigenvectors / np.sqrt(eigenvalues)) @ eigenvectors.T
    return inv_sqrt * np.exp(log_norm)[None, :]


def gto_basis(r: ArrayLike, cutoff: float, max_radial: int) -> NDArray[np.float64]:
    """Orthonormal GTO radial functions ``R_n(r)``.

    Parameters
    ----------
    r : array_like of float, shape (n_points,)
        Distances (Angstrom), ``>= 0``.
    cutoff : float
        Basis radius (Angstrom).
    max_radial : int
        Largest radial index.

    Returns
    -------
    ndarray of float64, shape (n_points, max_radial + 1)
        Values in Angstrom^(-3/2).
    """
    r = check_array(r, "r", ndim=1)
    orth = gto_orthonormalization(cutoff, max_radial)
    widths = gto_widths(cutoff, max_radial)
    k = np.arange(max_radial + 1)
    prim = r[:, None] ** k[None, :] * np.exp(-0.5 * (r[:, None] / widths[None, :]) ** 2)
    return prim @ orth.T


def _log_scaled_1f1(a: np.ndarray, b: np.ndarray, z: np.ndarray) -> np.ndarray:
    """``log(exp(-z) 1F1(a; b; z))`` for ``a, b > 0``, ``z >= 0`` (broadcast arrays)."""
    a, b, z = np.broadcast_arrays(a, b, z)
    out = np.empty(z.shape, dtype=np.float64)
    small = z < _ASYMPTOTIC_Z
    if np.any(small):
        out[small] = np.log(scipy.special.hyp1f1(a[small], b[small], z[small])) - z[small]
    large = ~small
    if np.any(large):
        # 1F1(a; b; z) ~ Gamma(b) / Gamma(a) e^z z^(a - b) sum_s (b - a)_s (1 - a)_s / (s! z^s)
        al, bl, zl = a[large], b[large], z[large]
        term = np.ones_like(zl)
        total = np.ones_like(zl)
        for s in range(200):
            term = term * (bl - al + s) * (1.0 - al + s) / ((s + 1.0) * zl)
            total += term
            if np.all(np.abs(term) <= 1e-17 * np.abs(total)):
                break
        out[large] = (
            scipy.special.gammaln(bl) - scipy.special.gammaln(al) + (al - bl) * np.log(zl)
            + np.log(total)
        )
    return out


def _primitive_integrals(d: np.ndarray, sigma: float, widths: np.ndarray, max_angular: int):
    """``P_kl(d)`` and ``dP_kl/dd`` of the module docstring, shape (n, lmax + 1, n_k)."""
    c = 0.5 / sigma**2
    b = 0.5 / widths**2  # (n_k,)
    n_k = widths.size
    lmax = max_angular
    d = d[:, None, None]
    k = np.arange(n_k, dtype=np.float64)[None, None, :]
    l = np.arange(lmax + 1, dtype=np.float64)[None, :, None]
    cb = (c + b)[None, None, :]
    a = 0.5 * (k + l + 3.0)
    beta = l + 1.5
    z = c * c * d * d / cb
    # log of (pi/sigma^2)^(3/4) (c + b)^(-a) Gamma(a)/Gamma(beta) exp(z - c d^2), all positive
    log_e = (
        0.75 * math.log(math.pi / sigma**2) - a * np.log(cb)
        + scipy.special.gammaln(a) - scipy.special.gammaln(beta)
        - c * (b[None, None, :] / cb) * d * d
    )
    log_s0 = _log_scaled_1f1(a, beta, z)
    log_s1 = _log_scaled_1f1(a + 1.0, beta + 1.0, z)
    with np.errstate(divide="ignore"):
        log_cd = np.log(c * d)
    # (c d)^l, with 0^0 = 1
    log_cdl = np.where(l == 0, 0.0, l * np.where(d > 0, log_cd, 0.0))
    zero_power = (d == 0) & (l > 0)
    values = np.where(zero_power, 0.0, np.exp(log_e + log_cdl + log_s0))
    # derivative: d/dd [(cd)^l e^{-c d^2} M(a, beta, z)] with dM/dz = a / beta M(a+1, beta+1, z)
    # = (l c (cd)^(l-1) - 2 c d (cd)^l) M + (cd)^l (a / beta) M' 2 c^2 d / (c + b)
    safe_d = np.where(d > 0, d, 1.0)
    deriv_main = np.where(d > 0, values * (l / safe_d - 2.0 * c * d), 0.0)
    deriv_m1 = np.where(
        zero_power, 0.0, np.exp(log_e + log_cdl + log_s1) * (a / beta) * 2.0 * c * c * d / cb
    )
    derivs = deriv_main + deriv_m1
    # at d = 0 only l = 1 has a non-zero slope: c (pi/sigma^2)^(3/4) (c+b)^-a Gamma(a)/Gamma(beta)
    at_zero = (d == 0) & (l == 1)
    derivs = np.where(at_zero, c * np.exp(log_e + log_s0), derivs)
    return values, derivs


def radial_integral(
    distances: ArrayLike,
    *,
    cutoff: float,
    density_width: float,
    max_radial: int,
    max_angular: int,
    derivative: bool = False,
):
    """Exact radial integrals ``I_nl(d)`` of a Gaussian density on the orthonormal GTO basis.

    Parameters
    ----------
    distances : array_like of float, shape (n_points,)
        Centre-neighbour distances ``d >= 0`` (Angstrom).
    cutoff : float
        GTO basis radius (Angstrom).
    density_width : float
        Gaussian width ``sigma`` of the atomic density (Angstrom).
    max_radial, max_angular : int
        Largest radial index ``n`` and angular order ``l`` (inclusive).
    derivative : bool, optional
        Also return ``dI_nl/dd`` (Angstrom^-1).

    Returns
    -------
    values : ndarray of float64, shape (n_points, max_angular + 1, max_radial + 1)
        ``values[i, l, n] = I_nl(distances[i])`` (dimensionless).
    derivatives : ndarray of float64, same shape
        Only with ``derivative=True``.

    Notes
    -----
    Uses ``scipy.special.hyp1f1``: meant for building tables and for tests, not for hot
    loops (see :class:`RadialSpline`).
    """
    cutoff, max_radial = _check_basis_args(cutoff, max_radial)
    density_width = check_positive_float(density_width, "density_width")
    max_angular = check_angular(max_angular, "max_angular", MAX_ANGULAR)
    d = check_array(distances, "distances", ndim=1)
    if np.any(d < 0):
        raise ValueError("`distances` must be >= 0")
    orth = gto_orthonormalization(cutoff, max_radial)
    widths = gto_widths(cutoff, max_radial)
    # the primitives of P_kl are the bare r^k exp(...): O already holds their normalisation
    values, derivs = _primitive_integrals(d, density_width, widths, max_angular)
    values = values @ orth.T
    if derivative:
        return values, derivs @ orth.T
    return values


class RadialSpline:
    """Cubic Hermite spline of the radial integrals ``I_nl(d)`` on ``[0, cutoff]``.

    Parameters
    ----------
    cutoff : float
        Spherical cutoff and GTO radius (Angstrom).
    density_width : float
        Gaussian width of the atomic density (Angstrom).
    max_radial, max_angular : int
        Largest radial index and angular order (inclusive).
    accuracy : float, optional
        Largest absolute error accepted at the midpoint of every grid interval (where the
        cubic Hermite error peaks), for every ``(l, n)``.  Default ``1e-8`` (featomic's).

    Attributes
    ----------
    n_knots : int
        Number of grid points ``d_k = k * step`` (the last one is ``cutoff``).
    step : float
        Grid spacing (Angstrom).
    values : ndarray of float64, shape (n_knots, (max_angular + 1) * (max_radial + 1))
        ``I_nl(d_k)`` at index ``[k, l * (max_radial + 1) + n]``.
    scaled_derivatives : ndarray of float64, same shape
        ``step * dI_nl/dd (d_k)`` (pre-scaled for the Hermite formula).
    max_error : float
        Largest absolute midpoint error measured on the final grid.

    Raises
    ------
    ValueError
        If ``accuracy`` cannot be reached (below the rounding error of the integrals, about
        1e-13 for typical hyperparameters, or more than ``2**16`` intervals needed).
    """

    def __init__(
        self,
        *,
        cutoff: float,
        density_width: float,
        max_radial: int,
        max_angular: int,
        accuracy: float = 1e-8,
    ) -> None:
        self.cutoff, self.max_radial = _check_basis_args(cutoff, max_radial)
        self.density_width = check_positive_float(density_width, "density_width")
        self.max_angular = check_angular(max_angular, "max_angular", MAX_ANGULAR)
        self.accuracy = check_positive_float(accuracy, "spline_accuracy")
        orth = gto_orthonormalization(self.cutoff, self.max_radial)
        widths = gto_widths(self.cutoff, self.max_radial)
        n_ln = (self.max_angular + 1) * (self.max_radial + 1)

        def exact(d):
            v, dv = _primitive_integrals(d, self.density_width, widths, self.max_angular)
            return (v @ orth.T).reshape(d.size, n_ln), (dv @ orth.T).reshape(d.size, n_ln)

        n_int = 16
        knots = np.linspace(0.0, self.cutoff, n_int + 1)
        values, derivs = exact(knots)
        previous_error = math.inf
        while True:
            step = self.cutoff / n_int
            mids = knots[:-1] + 0.5 * step
            mid_values, mid_derivs = exact(mids)
            interp = 0.5 * (values[:-1] + values[1:]) + 0.125 * step * (derivs[:-1] - derivs[1:])
            error = float(np.max(np.abs(interp - mid_values)))
            if error <= self.accuracy:
                break
            # the cubic Hermite error drops ~16x per halving until rounding errors dominate
            scale = max(1.0, float(np.max(np.abs(values))))
            stalled = error > 0.5 * previous_error and error < _ROUNDING_FLOOR * scale
            if stalled or 2 * n_int > _MAX_INTERVALS:
                reason = "rounding errors" if stalled else f"at most {_MAX_INTERVALS} intervals"
                raise ValueError(
                    f"`spline_accuracy` {self.accuracy:g} cannot be reached (error "
                    f"{error:.2e} with {n_int} intervals, limited by {reason}); use a larger "
                    "value"
                )
            previous_error = error
            # interleave the midpoints: the new grid has twice as many intervals
            knots = np.linspace(0.0, self.cutoff, 2 * n_int + 1)
            new_values = np.empty((2 * n_int + 1, n_ln))
            new_derivs = np.empty((2 * n_int + 1, n_ln))
            new_values[0::2], new_values[1::2] = values, mid_values
            new_derivs[0::2], new_derivs[1::2] = derivs, mid_derivs
            values, derivs = new_values, new_derivs
            n_int *= 2
        self.n_knots = n_int + 1
        self.step = self.cutoff / n_int
        self.max_error = error
        self.values = np.ascontiguousarray(values)
        self.scaled_derivatives = np.ascontiguousarray(derivs * self.step)
        self.values.flags.writeable = False
        self.scaled_derivatives.flags.writeable = False

    def __repr__(self) -> str:
        return (
            f"RadialSpline(cutoff={self.cutoff}, density_width={self.density_width}, "
            f"max_radial={self.max_radial}, max_angular={self.max_angular}, "
            f"n_knots={self.n_knots}, max_error={self.max_error:.1e})"
        )

    def __call__(self, distances: ArrayLike) -> NDArray[np.float64]:
        """Evaluate the spline (NumPy, for tests and small inputs).

        Parameters
        ----------
        distances : array_like of float, shape (n_points,)
            In ``[0, cutoff]`` (Angstrom).

        Returns
        -------
        ndarray of float64, shape (n_points, max_angular + 1, max_radial + 1)
        """
        d = check_array(distances, "distances", ndim=1)
        if np.any(d < 0) or np.any(d > self.cutoff):
            raise ValueError(f"`distances` must lie in [0, cutoff={self.cutoff}]")
        x = d / self.step
        k = np.minimum(x.astype(np.int64), self.n_knots - 2)
        t = (x - k)[:, None]
        t2 = t * t
        t3 = t2 * t
        h00 = 2 * t3 - 3 * t2 + 1
        h10 = t3 - 2 * t2 + t
        h01 = -2 * t3 + 3 * t2
        h11 = t3 - t2
        out = (
            h00 * self.values[k] + h10 * self.scaled_derivatives[k]
            + h01 * self.values[k + 1] + h11 * self.scaled_derivatives[k + 1]
        )
        return out.reshape(d.size, self.max_angular + 1, self.max_radial + 1)
