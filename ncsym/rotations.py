"""Real Wigner matrices and random rotations.

A real Wigner matrix ``D_l(R)`` is the ``(2l + 1, 2l + 1)`` matrix that moves the real spherical
harmonics of :mod:`ncsym.conventions` (``m = -l .. l``, no Condon-Shortley phase, ``l = 1``
proportional to ``(y, z, x)``) with a rotation::

    Y_l(R r) = D_l(R) Y_l(r)

for every proper or improper orthogonal ``R``.  For an improper ``R = -R'`` (``det R = -1``) this
gives ``D_l(R) = (-1)^l D_l(R')``, since ``Y_l`` is a homogeneous polynomial of degree ``l``.

The matrices are built with the recursion of Ivanic and Ruedenberg for real harmonics, which
works directly on the entries of ``R`` (no Euler angles, hence no gimbal lock) and is stable to
machine precision for the angular orders used in atomistic learning.

References
----------
.. [IR96] J. Ivanic and K. Ruedenberg, "Rotation Matrices for Real Spherical Harmonics. Direct
   Determination by Recursion", J. Phys. Chem. 100, 6342 (1996); additions and corrections in
   J. Phys. Chem. A 102, 9099 (1998).
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from ._checks import check_array, check_int

__all__ = [
    "wigner_d",
    "wigner_d_matrix",
    "random_rotation",
    "check_rotation",
    "quaternion_to_matrix",
]

#: Largest tolerated entry of ``R^T R - 1`` for a matrix to count as orthogonal.
ORTHOGONALITY_TOLERANCE = 1e-10

#: Quaternions shorter than this are redrawn in :func:`random_rotation` (avoids 0 / 0).
_MIN_QUATERNION_NORM = 1e-8

#: Row/column order of ``D_1``: m = -1, 0, 1 correspond to y, z, x.
_L1_ORDER = (1, 2, 0)


def check_rotation(rotation, name: str = "rotation") -> np.ndarray:
    """Validate a 3x3 orthogonal matrix and return it as a float64 array.

    Parameters
    ----------
    rotation : array_like, shape (3, 3)
        Proper (``det = +1``) or improper (``det = -1``) orthogonal matrix acting on column
        vectors, ``r' = R r``.
    name : str
        Argument name used in error messages.

    Returns
    -------
    ndarray of float64, shape (3, 3)

    Raises
    ------
    TypeError
        If ``rotation`` cannot be converted to a float array.
    ValueError
        If the shape is not (3, 3), entries are not finite, or ``R^T R`` differs from the identity
        by more than :data:`ORTHOGONALITY_TOLERANCE`.
    """
    out = check_array(rotation, name, shape=(3, 3))
    deviation = float(np.max(np.abs(out.T @ out - np.eye(3))))
    if deviation > ORTHOGONALITY_TOLERANCE:
        raise ValueError(
            f"`{name}` must be an orthogonal matrix (|R^T R - 1| <= {ORTHOGONALITY_TOLERANCE:g}), "
            f"got a deviation of {deviation:.3g}"
        )
    return out


def _next_order(d1: np.ndarray, prev: np.ndarray, l: int) -> np.ndarray:
    """``D_l`` from ``D_1`` and ``D_{l-1}`` (Ivanic-Ruedenberg recursion, l >= 2).

    ``d1`` and ``prev`` are indexed with an offset: entry ``[m + l, m' + l]`` holds ``(m, m')``.
    """
    size_prev = 2 * l - 1
    # p[i][a, b] is the auxiliary function P_i(l, a, b) for i = -1, 0, 1 (index i + 1),
    # a = -(l-1) .. l-1 (row a + l - 1) and b = -l .. l (column b + l).
    p = np.empty((3, size_prev, 2 * l + 1))
    for i in range(3):
        r_plus, r_zero, r_minus = d1[i, 2], d1[i, 1], d1[i, 0]
        p[i, :, 1:-1] = r_zero * prev
        p[i, :, -1] = r_plus * prev[:, -1] - r_minus * prev[:, 0]
        p[i, :, 0] = r_plus * prev[:, 0] + r_minus * prev[:, -1]

    def row(i: int, a: int) -> np.ndarray:
        return p[i + 1, a + l - 1]

    mp = np.arange(-l, l + 1)
    # denominators of the coefficients u, v, w depend on m' only
    denom = np.where(np.abs(mp) < l, (l + mp) * (l - mp), 2 * l * (2 * l - 1)).astype(np.float64)
    out = np.empty((2 * l + 1, 2 * l + 1))
    for m in range(-l, l + 1):
        am = abs(m)
        value = np.zeros(2 * l + 1)
        # u term: P_0(m, m'), vanishes for |m| = l
        if am < l:
            u = np.sqrt((l + m) * (l - m) / denom)
            value += u * row(0, m)
        # v term
        v = 0.5 * np.sqrt((1.0 + (m == 0)) * (l + am - 1) * (l + am) / denom) * (1 - 2 * (m == 0))
        if m == 0:
            v_fun = row(1, 1) + row(-1, -1)
        elif m > 0:
            v_fun = row(1, m - 1) * np.sqrt(1.0 + (m == 1))
            if m != 1:
                v_fun = v_fun - row(-1, -m + 1)
        else:
            v_fun = row(-1, -m - 1) * np.sqrt(1.0 + (m == -1))
            if m != -1:
                v_fun = v_fun + row(1, m + 1)
        value += v * v_fun
        # w term, vanishes for m = 0 and |m| >= l - 1
        if m != 0 and am < l - 1:
            w = -0.5 * np.sqrt((l - am - 1) * (l - am) / denom)
            if m > 0:
                w_fun = row(1, m + 1) + row(-1, -m - 1)
            else:
                w_fun = row(1, m - 1) - row(-1, -m + 1)
            value += w * w_fun
        out[m + l] = value
    return out


def wigner_d(rotation: npt.ArrayLike, lmax: int) -> list[npt.NDArray[np.float64]]:
    """Real Wigner matrices ``D_0(R), ..., D_lmax(R)``.

    Parameters
    ----------
    rotation : array_like, shape (3, 3)
        Orthogonal matrix ``R`` (proper or improper) acting on column vectors, ``r' = R r``
        (Cartesian axes x, y, z).  Orthogonality is checked to
        :data:`ORTHOGONALITY_TOLERANCE`.
    lmax : int
        Largest angular order, ``>= 0``.

    Returns
    -------
    list of ndarray of float64
        ``D[l]`` has shape ``(2l + 1, 2l + 1)``, rows and columns ordered ``m = -l .. l``, and
        satisfies ``Y_l(R r) = D[l] @ Y_l(r)`` for the real spherical harmonics of
        :mod:`ncsym.conventions`.  Each ``D[l]`` is orthogonal; ``D[1]`` is ``R`` with rows and
        columns reordered to ``(y, z, x)``.  For improper ``R``, ``D[l](R) = (-1)^l D[l](-R)``.

    Raises
    ------
    TypeError
        If ``lmax`` is not an integer or ``rotation`` is not numeric.
    ValueError
        If ``lmax < 0`` or ``rotation`` is not a finite orthogonal 3x3 matrix.

    Notes
    -----
    An equivariant block ``(lambda, sigma)`` of a structure ``A`` transforms as
    ``X(R A)[s, :, p] = det(R)^((1 - sigma) / 2) D_lambda(R) X(A)[s, :, p]``.
    The recursion follows [IR96]_: each ``D_l`` is a linear combination of products of entries
    of ``D_1`` and ``D_{l-1}``; it involves no trigonometric functions or Euler angles.

    Examples
    --------
    >>> import numpy as np
    >>> from ncsym.rotations import wigner_d
    >>> D = wigner_d(np.eye(3), 2)
    >>> [d.shape for d in D]
    [(1, 1), (3, 3), (5, 5)]
    """
    lmax = check_int(lmax, "lmax", minimum=0)
    rot = check_rotation(rotation)
    det = float(np.linalg.det(rot))
    improper = det < 0
    proper = -rot if improper else rot
    order = list(_L1_ORDER)
    d1 = np.ascontiguousarray(proper[np.ix_(order, order)])
    result = [np.ones((1, 1))]
    if lmax >= 1:
        result.append(d1)
    prev = d1
    for l in range(2, lmax + 1):
        prev = _next_order(d1, prev, l)
        result.append(prev)
    if improper:
        result = [d if l % 2 == 0 else -d for l, d in enumerate(result)]
    else:
        result = [d.copy() for d in result]
    return result


def wigner_d_matrix(rotation: npt.ArrayLike, lmax: int) -> npt.NDArray[np.float64]:
    """Block-diagonal real Wigner matrix over all ``l <= lmax``.

    Parameters
    ----------
    rotation : array_like, shape (3, 3)
        Orthogonal matrix, as in :func:`wigner_d`.
    lmax : int
        Largest angular order, ``>= 0``.

    Returns
    -------
    ndarray of float64, shape ((lmax + 1)**2, (lmax + 1)**2)
        Rows and columns in the flattened order ``(l, m) = (0, 0), (1, -1), (1, 0), (1, 1), ...``
        (:func:`ncsym.conventions.lm_index`), so that ``Y(R r) = D @ Y(r)`` for the stacked
        harmonics ``Y`` of all orders up to ``lmax``.
    """
    blocks = wigner_d(rotation, lmax)
    size = (lmax + 1) ** 2
    out = np.zeros((size, size))
    start = 0
    for d in blocks:
        stop = start + d.shape[0]
        out[start:stop, start:stop] = d
        start = stop
    return out


def random_rotation(rng=None, improper: bool = False) -> npt.NDArray[np.float64]:
    """A rotation matrix drawn uniformly (Haar measure) from SO(3), or from its improper coset.

    Parameters
    ----------
    rng : None, int or numpy.random.Generator, optional
        Source of randomness; an ``int`` seeds a new generator, ``None`` uses fresh entropy.
    improper : bool, default False
        If True, return ``-R`` (``det = -1``): a rotation combined with inversion.

    Returns
    -------
    ndarray of float64, shape (3, 3)
        Orthogonal matrix with determinant ``+1`` (or ``-1`` when ``improper``), acting on column
        vectors.

    Notes
    -----
    A quaternion with four independent standard normal components, normalised, is uniform on the
    unit 3-sphere; its rotation matrix is then uniform on SO(3).
    """
    if not isinstance(improper, (bool, np.bool_)):
        raise TypeError(f"`improper` must be a bool, got {improper!r}")
    generator = np.random.default_rng(rng)
    while True:
        q = generator.standard_normal(4)
        norm = float(np.linalg.norm(q))
        if norm > _MIN_QUATERNION_NORM:
            break
    rot = quaternion_to_matrix(q / norm)
    return -rot if improper else rot


def quaternion_to_matrix(quaternion: npt.ArrayLike) -> npt.NDArray[np.float64]:
    """Rotation matrix of a unit quaternion ``(w, x, y, z)``.

    Parameters
    ----------
    quaternion : array_like, shape (4,)
        Scalar part first.  It is normalised here; a zero quaternion raises ``ValueError``.

    Returns
    -------
    ndarray of float64, shape (3, 3)
        Proper rotation matrix acting on column vectors.
    """
    q = check_array(quaternion, "quaternion", shape=(4,))
    norm = float(np.linalg.norm(q))
    if norm < _MIN_QUATERNION_NORM:
        raise ValueError(f"`quaternion` must have a non-zero norm, got {norm:.3g}")
    w, x, y, z = q / norm
    return np.array(
        [
            [1 - 2 * (y * y + z * z), 2 * (x * y - w * z), 2 * (x * z + w * y)],
            [2 * (x * y + w * z), 1 - 2 * (x * x + z * z), 2 * (y * z - w * x)],
            [2 * (x * z - w * y), 2 * (y * z + w * x), 1 - 2 * (x * x + y * y)],
        ]
    )
