"""Real spherical harmonics ``Y_l^m`` of Cartesian directions (public API).

The values match sphericart's normalised ``SphericalHarmonics`` and featomic: ``m = -l .. l``,
orthonormal on the unit sphere, no Condon-Shortley phase, ``l = 1`` is
``sqrt(3 / (4 pi)) (y, z, x) / r``.  The computation runs in the Numba kernels of
:mod:`ncsym.kernels.sph`.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import ArrayLike, NDArray

from ._checks import check_angular, check_array
from .conventions import MAX_ANGULAR, n_lm

__all__ = ["spherical_harmonics"]

#: Fewer output values than this are computed on one thread (a parallel region costs more
#: than it saves on small inputs, especially on a busy machine).
PARALLEL_MIN_VALUES = 1_000_000


def spherical_harmonics(xyz: ArrayLike, lmax: int) -> NDArray[np.float64]:
    """Real spherical harmonics of the directions of ``xyz`` up to order ``lmax``.

    Parameters
    ----------
    xyz : array_like of float, shape (n_points, 3)
        Cartesian vectors (Angstrom or any unit: only the direction matters).
    lmax : int
        Largest angular order, ``0 <= lmax <=`` :data:`ncsym.conventions.MAX_ANGULAR`.

    Returns
    -------
    ndarray of float64, shape (n_points, (lmax + 1)**2)
        ``Y[i, l * l + l + m] = Y_l^m(xyz[i] / |xyz[i]|)`` with
        ``(l, m) = (0, 0), (1, -1), (1, 0), (1, 1), (2, -2), ...``.

    Raises
    ------
    TypeError
        If ``lmax`` is not an integer or ``xyz`` is not numeric.
    ValueError
        If ``xyz`` is not of shape ``(n_points, 3)``, contains NaN/inf, or ``lmax`` is out of
        range.

    Notes
    -----
    The zero vector has no direction: ncsym returns ``Y_0^0 = 1 / sqrt(4 pi)`` and ``0`` for
    every ``l > 0`` there.  On the z axis the ``m != 0`` harmonics are exactly zero.

    Examples
    --------
    >>> import numpy as np, ncsym
    >>> y = ncsym.spherical_harmonics(np.array([[0.0, 0.0, 2.0]]), 1)
    >>> np.allclose(y, [[0.5 / np.sqrt(np.pi), 0.0, np.sqrt(3 / (4 * np.pi)), 0.0]])
    True
    """
    lmax = check_angular(lmax, "lmax", MAX_ANGULAR)
    xyz = check_array(xyz, "xyz", shape=(None, 3))
    from .kernels.sph import sph_batch
    from .neighbors import single_thread_below

    out = np.empty((xyz.shape[0], n_lm(lmax)), dtype=np.float64)
    if xyz.shape[0] > 0:
        with single_thread_below(out.size, PARALLEL_MIN_VALUES):
            sph_batch(xyz, lmax, out)
    return out
