"""Error metrics for predicted Hamiltonians (matrix elements and orbital energies).

All inputs in Hartree; the returned numbers are in micro-Hartree (matrix elements) and meV
(orbital energies), as the keys say.  Orbital energies come from the generalised
eigenproblem with the *reference* overlap, ``scipy.linalg.eigh(F, S)``, for both the
prediction and the reference (pass ``overlaps=None`` for orthogonalised targets such as
``S^-1/2 F S^-1/2`` or the SAPH).

The orbital-normalised RMSE follows Nigam, Willatt, Ceriotti (2022) (and their reference
code, lab-cosmo/ncenter-reps): the squared Frobenius error of each matrix divided by its
number of orbitals, averaged over structures, square-rooted::

    RMSE = sqrt( (1 / N) sum_A ||H_pred(A) - H_ref(A)||_F^2 / n_orb(A) ).

As DESIGN.md notes for def2-SVP, small errors in ``F`` can pull diffuse virtual orbitals
down, so HOMO-LUMO gap errors are noisy: report the occupied-orbital MAE as the primary
eigenvalue metric.
"""

from __future__ import annotations

import numbers

import numpy as np
import scipy.linalg

from ..conventions import HARTREE_TO_MEV
from .blocks import _check_symmetric

__all__ = ["HARTREE_TO_MICROHARTREE", "metrics"]

#: Hartree -> micro-Hartree.
HARTREE_TO_MICROHARTREE = 1e6


def _as_list(matrices, name: str) -> list[np.ndarray]:
    if isinstance(matrices, np.ndarray) and matrices.ndim == 2:
        matrices = [matrices]
    elif isinstance(matrices, np.ndarray) and matrices.ndim != 3:
        raise ValueError(f"`{name}` must be a matrix, a stack (n, n_ao, n_ao) or a list of "
                         f"matrices, got an array of shape {matrices.shape}")
    out = []
    for i, m in enumerate(matrices):
        m = np.asarray(m, dtype=np.float64)
        if m.ndim != 2 or m.shape[0] != m.shape[1]:
            raise ValueError(f"`{name}[{i}]` must be a square matrix, got shape {m.shape}")
        if not np.all(np.isfinite(m)):
            raise ValueError(f"`{name}[{i}]` contains NaN or infinite values")
        _check_symmetric(m, f"{name}[{i}]")
        out.append(m)
    return out


def metrics(pred, ref, overlaps=None, n_occupied=None) -> dict[str, float]:
    """Matrix and orbital-energy errors of predicted Hamiltonians.

    Parameters
    ----------
    pred, ref : ndarray (n_ao, n_ao), ndarray (n_structures, n_ao, n_ao) or list of ndarray
        Predicted and reference symmetric matrices, Hartree; sizes may differ between
        structures but must match between ``pred`` and ``ref``.
    overlaps : same layout as ``ref``, optional
        Reference AO overlaps; ``None`` means an orthonormal basis (identity overlap).
    n_occupied : int or sequence of int, optional
        Occupied orbitals per structure (one int for all).  Without it only the matrix
        metrics are returned.

    Returns
    -------
    dict
        ``mae_uha``: element-wise mean absolute error over every matrix element of every
        structure, micro-Hartree.
        ``rmse_uha``: orbital-normalised RMSE (module docstring), micro-Hartree.
        ``max_abs_uha``: largest absolute element error, micro-Hartree.
        With ``n_occupied``: ``occupied_mae_mev`` (MAE of all occupied orbital energies),
        ``homo_mae_mev``, ``gap_mae_mev`` (MAE of the HOMO-LUMO gap), ``gap_me_mev`` (mean
        signed gap error, prediction minus reference), all meV.
        ``n_structures``: number of structures.

    Raises
    ------
    ValueError
        Mismatched counts or shapes, non-symmetric or non-finite matrices, an overlap that
        is not positive definite, ``n_occupied`` out of ``[1, n_ao - 1]``.
    """
    pred_list = _as_list(pred, "pred")
    ref_list = _as_list(ref, "ref")
    if len(pred_list) != len(ref_list):
        raise ValueError(f"`pred` has {len(pred_list)} matrices, `ref` has {len(ref_list)}")
    if not ref_list:
        raise ValueError("`ref` holds no matrices")
    for i, (p, r) in enumerate(zip(pred_list, ref_list, strict=True)):
        if p.shape != r.shape:
            raise ValueError(f"`pred[{i}]` has shape {p.shape} but `ref[{i}]` has {r.shape}")
    if overlaps is None:
        s_list = [None] * len(ref_list)
    else:
        s_list = _as_list(overlaps, "overlaps")
        if len(s_list) != len(ref_list):
            raise ValueError(f"`overlaps` has {len(s_list)} matrices, `ref` has {len(ref_list)}")
        for i, (s, r) in enumerate(zip(s_list, ref_list, strict=True)):
            if s.shape != r.shape:
                raise ValueError(f"`overlaps[{i}]` has shape {s.shape} but `ref[{i}]` has "
                                 f"{r.shape}")

    abs_err = np.concatenate([np.abs(p - r).ravel() for p, r in zip(pred_list, ref_list,
                                                                      strict=True)])
    per_orbital = [np.sum((p - r) ** 2) / r.shape[0] for p, r in zip(pred_list, ref_list,
                                                                      strict=True)]
    result = {
        "mae_uha": float(np.mean(abs_err)) * HARTREE_TO_MICROHARTREE,
        "rmse_uha": float(np.sqrt(np.mean(per_orbital))) * HARTREE_TO_MICROHARTREE,
        "max_abs_uha": float(np.max(abs_err)) * HARTREE_TO_MICROHARTREE,
        "n_structures": len(ref_list),
    }
    if n_occupied is None:
        return result

    if isinstance(n_occupied, numbers.Integral) and not isinstance(n_occupied, bool):
        n_occ = [int(n_occupied)] * len(ref_list)
    else:
        n_occ = [int(n) for n in n_occupied]
        if len(n_occ) != len(ref_list):
            raise ValueError(f"`n_occupied` has {len(n_occ)} entries, `ref` has "
                             f"{len(ref_list)} matrices")
    occ_err, homo_err, gap_err = [], [], []
    for i, (p, r, s, n) in enumerate(zip(pred_list, ref_list, s_list, n_occ, strict=True)):
        if not 1 <= n < r.shape[0]:
            raise ValueError(f"`n_occupied[{i}]` must be in [1, {r.shape[0] - 1}] to define a "
                             f"HOMO and a LUMO, got {n}")
        try:
            e_pred = scipy.linalg.eigh(p, s, eigvals_only=True)
            e_ref = scipy.linalg.eigh(r, s, eigvals_only=True)
        except np.linalg.LinAlgError as exc:
            raise ValueError(f"`overlaps[{i}]` is not positive definite: {exc}") from None
        occ_err.append(e_pred[:n] - e_ref[:n])
        homo_err.append(e_pred[n - 1] - e_ref[n - 1])
        gap_err.append((e_pred[n] - e_pred[n - 1]) - (e_ref[n] - e_ref[n - 1]))
    gap_err = np.asarray(gap_err)
    result.update(
        occupied_mae_mev=float(np.mean(np.abs(np.concatenate(occ_err)))) * HARTREE_TO_MEV,
        homo_mae_mev=float(np.mean(np.abs(homo_err))) * HARTREE_TO_MEV,
        gap_mae_mev=float(np.mean(np.abs(gap_err))) * HARTREE_TO_MEV,
        gap_me_mev=float(np.mean(gap_err)) * HARTREE_TO_MEV,
    )
    return result
