"""Conventions used throughout ncsym: one source for every index and sign rule.

Real spherical harmonics
    ``m = -l, ..., l`` in that order, orthonormal on the unit sphere, no Condon-Shortley
    phase.  ``l = 1`` is ``sqrt(3 / (4 pi)) (y, z, x) / r``.  Identical to featomic,
    sphericart and PySCF's spherical AOs except that PySCF orders p shells
    ``(px, py, pz)``: apply :data:`PYSCF_P_ORDER` to get ``m = -1, 0, 1``.
Flattened (l, m) index
    ``lm_index(l, m) = l * l + l + m``; ``(l, m) = (0, 0), (1, -1), (1, 0), (1, 1), ...``.
Parity
    A block with angular order ``lambda`` and label ``sigma`` picks up ``sigma (-1)^lambda``
    under inversion.  Products follow ``sigma = sigma1 sigma2 (-1)^(l1 + l2 + lambda)``.
Rotations
    A real Wigner matrix ``D_l(R)`` acts as ``Y_l(R r) = D_l(R) Y_l(r)`` (improper ``R``
    included, so ``D_l(-1) = (-1)^l``).  An equivariant block of a structure ``A`` obeys
    ``X(R A)[s, :, p] = det(R)^((1 - sigma) / 2) D_lambda(R) X(A)[s, :, p]``.
Units
    Angstrom for positions and lengths, Hartree for energies and matrices.
"""

from __future__ import annotations

#: Largest angular order for which ncsym builds Clebsch-Gordan tables and harmonics.
MAX_ANGULAR = 20

#: PySCF orders p shells (x, y, z); ``p_pyscf[PYSCF_P_ORDER]`` gives m = -1, 0, 1 (y, z, x).
PYSCF_P_ORDER = (1, 2, 0)

#: Conversion factor used only in printed summaries.
HARTREE_TO_EV = 27.211386245988
HARTREE_TO_MEV = 1000.0 * HARTREE_TO_EV

#: Tag stored with cached tables: changes whenever a sign/order convention changes.
CONVENTION_TAG = "real-Y(-l..l,noCS);cg=featomic-effective;v1"


def lm_index(l: int, m: int) -> int:
    """Position of ``(l, m)`` in the flattened ``(lmax + 1)**2`` layout."""
    return l * l + l + m


def n_lm(lmax: int) -> int:
    """Number of ``(l, m)`` pairs with ``l <= lmax``."""
    return (lmax + 1) * (lmax + 1)


def product_parity(sigma1: int, sigma2: int, l1: int, l2: int, lam: int) -> int:
    """Parity label of the CG product of blocks ``(l1, sigma1)`` and ``(l2, sigma2)``."""
    return sigma1 * sigma2 * (-1 if (l1 + l2 + lam) % 2 else 1)


def inversion_factor(lam: int, sigma: int) -> int:
    """Factor ``sigma (-1)^lambda`` a block picks up under inversion."""
    return sigma * (-1 if lam % 2 else 1)
