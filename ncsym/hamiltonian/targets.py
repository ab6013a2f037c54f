"""Learning targets built from a converged AO Fock / Kohn-Sham matrix.

Three targets, all symmetric AO matrices in Hartree that rotate like ``D F D^T`` with the
block-diagonal real Wigner matrix ``D`` of the AO basis:

raw Fock ``F``
    as returned by :mod:`ncsym.hamiltonian.pyscf_data`; orbital energies need the overlap,
    ``F C = S C eps``.
Löwdin-orthogonalised ``S^-1/2 F S^-1/2`` (:func:`lowdin_orthogonalize`, back with
:func:`lowdin_deorthogonalize`)
    same eigenvalues as ``(F, S)``, ordinary eigenproblem.
SAPH (:func:`saph`)
    symmetry-adapted projected Hamiltonian (Nigam, Willatt, Ceriotti 2022, Sec. V): a small
    matrix on a minimal, atom-centred basis whose eigenvalues are exactly selected orbital
    energies of the large-basis calculation.

SAPH construction (as implemented here)
---------------------------------------
Given the large-basis generalised eigenproblem ``F C = S C eps`` (columns of ``C``
S-orthonormal MOs ``psi_k``) and a minimal basis ``chi_a`` (either a subset of the large
basis, :func:`subbasis_projection`, or another basis such as STO-3G with the cross overlap
from :func:`ncsym.hamiltonian.pyscf_data.cross_overlap`):

1. ``P = <chi_a | phi_mu>`` (cross overlap, ``(n_min, n_ao)``) and ``S_min = <chi_a|chi_b>``;
   the Löwdin-orthonormalised minimal functions ``chi~ = chi S_min^-1/2`` give the projection
   coefficients of every MO, ``V = S_min^-1/2 P C`` (column ``k`` = components of the
   projection of ``psi_k`` on span(chi); its squared norm is the MO's weight in the minimal
   basis, between 0 and 1).
2. Select ``n_min`` MOs: skip the ``n_core`` lowest, then walk up in energy and keep an MO
   when the part of its projection not already spanned by the kept MOs has squared norm
   ``>= min_weight`` (so nearly-orthogonal diffuse virtuals are skipped and the kept
   projections are linearly independent).  ``mo_indices`` overrides the selection.
3. Polar decomposition of the kept projections ``V_sel = U s W^T``; ``O = U W^T`` is the
   orthogonal matrix closest to ``V_sel`` (symmetric orthonormalisation of the projected
   MOs).  ``H_SAPH = O diag(eps_sel) O^T`` in the Löwdin-orthonormalised minimal basis: its
   eigenvalues are exactly ``eps_sel`` and its eigenvectors are the orthonormalised
   projections of the selected MOs.

Each step commutes with rotations (``P -> D_min P D^T``, ``C -> D C``), so ``H_SAPH``
transforms with the minimal basis' Wigner matrices, and its blocks can be learned with the
same equivariant machinery as ``F``.  Differences from the reference implementation of
lab-cosmo/ncenter-reps: it projects with ``P C`` (no ``S_min^-1/2``) and selects MOs with a
near-zero linear-dependence threshold on whitened projections; the Löwdin factor makes
``H_SAPH`` equal to the exact projected Hamiltonian when the selected MOs lie in span(chi),
and the weight criterion makes the choice of virtual MOs explicit.  The selection is made per
structure: a virtual MO whose weight crosses ``min_weight`` between two geometries changes
which energy is reproduced, so check ``SAPHResult.weights`` over a data set.

References
----------
J. Nigam, M. J. Willatt, M. Ceriotti, J. Chem. Phys. 156, 014115 (2022).
E. Cignoni, D. Suman, J. Nigam, L. Cupellini, B. Mennucci, M. Ceriotti, ACS Cent. Sci. 10,
637 (2024) (minimal-basis effective Hamiltonians reproducing large-basis orbital energies).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from .._checks import check_array
from .blocks import _check_symmetric, check_orbitals

__all__ = [
    "OVERLAP_MIN_EIGENVALUE",
    "SAPH_MIN_WEIGHT",
    "SAPHResult",
    "inverse_sqrt",
    "lowdin_deorthogonalize",
    "lowdin_orthogonalize",
    "subbasis_projection",
    "saph",
]

#: Overlap matrices with an eigenvalue below this are rejected as (numerically) singular.
OVERLAP_MIN_EIGENVALUE = 1e-10

#: Default minimal-basis weight a new MO must add to be selected for the SAPH.
SAPH_MIN_WEIGHT = 0.1


def _overlap_power(overlap: npt.ArrayLike, power: float) -> np.ndarray:
    """``S**power`` of a symmetric positive-definite matrix via its eigendecomposition
    (symmetrised), with the checks of :func:`inverse_sqrt`."""
    s = check_array(overlap, "overlap", ndim=2)
    if s.shape[0] != s.shape[1]:
        raise ValueError(f"`overlap` must be square, got shape {s.shape}")
    _check_symmetric(s, "overlap")
    w, v = np.linalg.eigh(0.5 * (s + s.T))
    if w.size and w[0] < OVERLAP_MIN_EIGENVALUE:
        raise ValueError(
            f"`overlap` must be positive definite: smallest eigenvalue {w[0]:.3e} < "
            f"{OVERLAP_MIN_EIGENVALUE:g}"
        )
    out = (v * w**power) @ v.T
    return 0.5 * (out + out.T)


def inverse_sqrt(overlap: npt.ArrayLike) -> np.ndarray:
    """``S^-1/2`` of a symmetric positive-definite matrix via its eigendecomposition.

    Parameters
    ----------
    overlap : array_like, shape (n, n)

    Returns
    -------
    ndarray of float64, shape (n, n)
        Symmetric.

    Raises
    ------
    ValueError
        Non-square, non-symmetric or not positive definite (smallest eigenvalue below
        :data:`OVERLAP_MIN_EIGENVALUE`).
    """
    return _overlap_power(overlap, -0.5)


def lowdin_orthogonalize(fock, overlap):
    """Löwdin-orthogonalised matrix ``S^-1/2 F S^-1/2``.

    Parameters
    ----------
    fock : array_like, shape (n_ao, n_ao), or a sequence of them
        Symmetric AO matrices, Hartree.
    overlap : array_like, shape (n_ao, n_ao), or a sequence of them
        Matching overlap matrices.

    Returns
    -------
    ndarray of float64, shape (n_ao, n_ao), or list of them
        Symmetric; its ordinary eigenvalues are the generalised eigenvalues of ``(F, S)``.
        Under a rotation ``D`` of the AO basis it transforms as ``D X D^T`` (``S^-1/2`` is a
        matrix function of ``S``), so its blocks are learned like those of ``F``.
    """
    return _sandwich(fock, overlap, -0.5, "fock")


def lowdin_deorthogonalize(matrix, overlap):
    """Back from the Löwdin-orthogonal basis: ``S^1/2 X S^1/2``, the inverse of
    :func:`lowdin_orthogonalize`.

    Parameters
    ----------
    matrix : array_like, shape (n_ao, n_ao), or a sequence of them
        Symmetric matrices in the Löwdin-orthogonalised AO basis, Hartree.
    overlap : array_like, shape (n_ao, n_ao), or a sequence of them
        Matching AO overlap matrices.

    Returns
    -------
    ndarray of float64, shape (n_ao, n_ao), or list of them
        Symmetric AO matrices (e.g. ``F``), transforming as ``D X D^T`` like ``matrix``.
    """
    return _sandwich(matrix, overlap, 0.5, "matrix")


def _sandwich(matrix, overlap, power: float, name: str):
    """``S**power X S**power`` (symmetrised) for one matrix or a sequence of them."""
    if isinstance(matrix, np.ndarray) and matrix.ndim == 2:
        x = check_array(matrix, name, ndim=2)
        s_pow = _overlap_power(overlap, power)
        if x.shape != s_pow.shape:
            raise ValueError(f"`{name}` has shape {x.shape} but `overlap` has {s_pow.shape}")
        _check_symmetric(x, name)
        out = s_pow @ x @ s_pow
        return 0.5 * (out + out.T)
    matrix, overlap = list(matrix), list(overlap)
    if len(matrix) != len(overlap):
        raise ValueError(f"got {len(matrix)} `{name}` matrices and {len(overlap)} overlaps")
    return [_sandwich(np.asarray(x), s, power, name) for x, s in zip(matrix, overlap, strict=True)]


def subbasis_projection(
    overlap: npt.ArrayLike, numbers: npt.ArrayLike, orbitals: Mapping, selection: Mapping
) -> tuple[np.ndarray, np.ndarray, dict]:
    """Projection onto a subset of the large basis' shells (e.g. valence ``2s, 2p`` of O).

    Parameters
    ----------
    overlap : array_like, shape (n_ao, n_ao)
        Large-basis overlap in ncsym AO order.
    numbers : array_like of int, shape (n_atoms,)
    orbitals : mapping
        Large-basis shell layout ``{Z: [(n, l), ...]}``.
    selection : mapping
        ``{Z or symbol: [(n, l), ...]}``: the shells kept for each species (all species of
        the structure must be listed).

    Returns
    -------
    projection : ndarray, shape (n_min, n_ao)
        ``<chi_a | phi_mu>``: the selected rows of ``overlap``.
    minimal_overlap : ndarray, shape (n_min, n_min)
    minimal_orbitals : dict
        ``{Z: [(n, l), ...]}`` layout of the minimal basis (order of the large basis).
    """
    orbitals = check_orbitals(orbitals)
    selection = check_orbitals(selection)
    numbers = np.asarray(numbers, dtype=np.int64).reshape(-1)
    s = check_array(overlap, "overlap", ndim=2)
    keep = []
    start = 0
    minimal = {}
    for atom, z in enumerate(numbers):
        z = int(z)
        if z not in orbitals or z not in selection:
            raise ValueError(f"species {z} of atom {atom} must appear in `orbitals` and "
                             f"`selection`")
        unknown = set(selection[z]) - set(orbitals[z])
        if unknown:
            raise ValueError(f"`selection` shells {sorted(unknown)} of species {z} are not in "
                             f"`orbitals` ({orbitals[z]})")
        minimal[z] = [sh for sh in orbitals[z] if sh in selection[z]]
        for sh in orbitals[z]:
            size = 2 * sh[1] + 1
            if sh in selection[z]:
                keep.extend(range(start, start + size))
            start += size
    if s.shape != (start, start):
        raise ValueError(f"`overlap` must have shape ({start}, {start}) for these `orbitals`, "
                         f"got {s.shape}")
    keep = np.asarray(keep, dtype=np.int64)
    return s[keep], s[np.ix_(keep, keep)], minimal


@dataclass
class SAPHResult:
    """Result of :func:`saph`.

    Attributes
    ----------
    hamiltonian : ndarray, shape (n_min, n_min)
        ``H_SAPH`` in the Löwdin-orthonormalised minimal basis, Hartree (symmetric).
    energies : ndarray, shape (n_min,)
        The reproduced orbital energies ``eps_sel`` (ascending), Hartree.
    mo_indices : ndarray of int, shape (n_min,)
        Indices of the selected MOs in the large-basis spectrum (ascending energy).
    weights : ndarray, shape (n_min,)
        Squared norm of each selected MO's projection on the minimal basis (0..1).
    """

    hamiltonian: np.ndarray
    energies: np.ndarray
    mo_indices: np.ndarray
    weights: np.ndarray


def saph(
    fock: npt.ArrayLike,
    overlap: npt.ArrayLike,
    projection: npt.ArrayLike,
    minimal_overlap: npt.ArrayLike,
    *,
    n_core: int = 0,
    mo_indices: npt.ArrayLike | None = None,
    min_weight: float = SAPH_MIN_WEIGHT,
) -> SAPHResult:
    """Symmetry-adapted projected Hamiltonian of one structure (see the module docstring).

    Parameters
    ----------
    fock : array_like, shape (n_ao, n_ao)
        Large-basis Fock / KS matrix, Hartree, ncsym AO order.
    overlap : array_like, shape (n_ao, n_ao)
        Large-basis overlap.
    projection : array_like, shape (n_min, n_ao)
        Cross overlap ``<chi_a | phi_mu>`` between minimal and large basis.
    minimal_overlap : array_like, shape (n_min, n_min)
        Overlap of the minimal basis.
    n_core : int
        Number of lowest MOs never selected (core MOs, when the minimal basis has no core
        functions).
    mo_indices : array_like of int, shape (n_min,), optional
        Explicit MO selection (overrides the weight criterion).
    min_weight : float
        Minimal new weight (squared norm, 0..1) a projected MO must add to be selected.

    Returns
    -------
    SAPHResult

    Raises
    ------
    ValueError
        Shape mismatches, non-symmetric matrices, singular overlaps, fewer than ``n_min``
        selectable MOs, or an explicit selection whose projections are linearly dependent.
    """
    f = check_array(fock, "fock", ndim=2)
    s = check_array(overlap, "overlap", ndim=2)
    p = check_array(projection, "projection", ndim=2)
    s_min = check_array(minimal_overlap, "minimal_overlap", ndim=2)
    n_ao = f.shape[0]
    if f.shape != (n_ao, n_ao) or s.shape != (n_ao, n_ao):
        raise ValueError(f"`fock` {f.shape} and `overlap` {s.shape} must be square and equal")
    n_min = s_min.shape[0]
    if p.shape != (n_min, n_ao):
        raise ValueError(f"`projection` must have shape (n_min={n_min}, n_ao={n_ao}), got "
                         f"{p.shape}")
    _check_symmetric(f, "fock")
    if not 0.0 < float(min_weight) <= 1.0:
        raise ValueError(f"`min_weight` must be in (0, 1], got {min_weight}")

    s_half = inverse_sqrt(s)
    eps, c_orth = np.linalg.eigh(s_half @ f @ s_half)
    c = s_half @ c_orth  # S-orthonormal MO coefficients, columns ascending in energy
    v = inverse_sqrt(s_min) @ p @ c  # (n_min, n_ao) projections, orthonormal minimal basis

    if mo_indices is not None:
        selected = np.asarray(mo_indices, dtype=np.int64).reshape(-1)
        if selected.shape != (n_min,) or len(set(selected.tolist())) != n_min:
            raise ValueError(f"`mo_indices` must hold {n_min} distinct indices, got {selected}")
        if selected.min() < 0 or selected.max() >= n_ao:
            raise ValueError(f"`mo_indices` must be in [0, {n_ao}), got {selected}")
        selected = np.sort(selected)
        sv = np.linalg.svd(v[:, selected], compute_uv=False)
        if sv[-1] ** 2 < OVERLAP_MIN_EIGENVALUE:
            raise ValueError("the projections of the MOs in `mo_indices` are linearly dependent")
    else:
        if not 0 <= int(n_core) < n_ao:
            raise ValueError(f"`n_core` must be in [0, {n_ao}), got {n_core}")
        basis = np.zeros((n_min, 0))
        chosen = []
        for k in range(int(n_core), n_ao):
            residual = v[:, k] - basis @ (basis.T @ v[:, k])
            weight = float(residual @ residual)
            if weight >= min_weight:
                chosen.append(k)
                basis = np.column_stack([basis, residual / np.sqrt(weight)])
                if len(chosen) == n_min:
                    break
        if len(chosen) < n_min:
            raise ValueError(
                f"only {len(chosen)} MOs above index {n_core} add a minimal-basis weight >= "
                f"{min_weight}; {n_min} are needed (lower `min_weight` or pass `mo_indices`)"
            )
        selected = np.asarray(chosen, dtype=np.int64)

    u, _, wt = np.linalg.svd(v[:, selected])
    orth = u @ wt
    h = (orth * eps[selected]) @ orth.T
    weights = np.einsum("ak,ak->k", v[:, selected], v[:, selected])
    return SAPHResult(
        hamiltonian=0.5 * (h + h.T),
        energies=eps[selected].copy(),
        mo_indices=selected,
        weights=weights,
    )

