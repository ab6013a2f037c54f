"""metrics(): hand-made cases with known values, and bad input."""

from __future__ import annotations

import numpy as np
import pytest

from ncsym.conventions import HARTREE_TO_MEV
from ncsym.hamiltonian import metrics

#: Relative tolerance on the hand-computed values (pure float rounding).
VALUE_RTOL = 1e-9

DELTA = 1e-3  # Hartree


def two_level():
    ref = np.diag([-1.0, 1.0])
    pred = np.array([[-1.0, DELTA], [DELTA, 1.0]])
    return pred, ref


def test_two_level_known_values():
    pred, ref = two_level()
    out = metrics(pred, ref, n_occupied=1)
    # |errors| = 0, DELTA, DELTA, 0 over 4 elements
    assert out["mae_uha"] == pytest.approx(DELTA / 2 * 1e6, rel=VALUE_RTOL)
    # sqrt(2 DELTA^2 / 2 orbitals)
    assert out["rmse_uha"] == pytest.approx(DELTA * 1e6, rel=VALUE_RTOL)
    assert out["max_abs_uha"] == pytest.approx(DELTA * 1e6, rel=VALUE_RTOL)
    # eigenvalues of pred: -+sqrt(1 + DELTA^2)
    shift = np.sqrt(1 + DELTA**2) - 1
    assert out["occupied_mae_mev"] == pytest.approx(shift * HARTREE_TO_MEV, rel=VALUE_RTOL)
    assert out["homo_mae_mev"] == pytest.approx(shift * HARTREE_TO_MEV, rel=VALUE_RTOL)
    assert out["gap_mae_mev"] == pytest.approx(2 * shift * HARTREE_TO_MEV, rel=VALUE_RTOL)
    assert out["gap_me_mev"] == pytest.approx(2 * shift * HARTREE_TO_MEV, rel=VALUE_RTOL)
    assert out["n_structures"] == 1


def test_overlap_scales_eigenvalues():
    ref = np.diag([-1.0, -0.5, 2.0])
    pred = np.diag([-1.1, -0.5, 2.3])
    overlap = 2.0 * np.eye(3)
    out = metrics(pred, ref, overlap, n_occupied=2)
    # generalised eigenvalues are halved by S = 2: errors (-0.05, 0) occupied, gap +0.15
    assert out["occupied_mae_mev"] == pytest.approx(0.025 * HARTREE_TO_MEV, rel=VALUE_RTOL)
    assert out["homo_mae_mev"] == pytest.approx(0.0, abs=1e-9)
    assert out["gap_mae_mev"] == pytest.approx(0.15 * HARTREE_TO_MEV, rel=VALUE_RTOL)
    # matrix metrics do not use the overlap
    assert out["mae_uha"] == pytest.approx(0.4 / 9 * 1e6, rel=VALUE_RTOL)


def test_several_structures_of_different_sizes():
    pred_a, ref_a = two_level()
    ref_b = np.diag([-2.0, -1.0, 0.5])
    pred_b = ref_b + np.diag([0.0, 0.0, 3 * DELTA])
    out = metrics([pred_a, pred_b], [ref_a, ref_b], n_occupied=[1, 2])
    assert out["mae_uha"] == pytest.approx((2 * DELTA + 3 * DELTA) / 13 * 1e6, rel=VALUE_RTOL)
    # per-structure squared error per orbital: DELTA^2 and 9 DELTA^2 / 3
    assert out["rmse_uha"] == pytest.approx(np.sqrt((DELTA**2 + 3 * DELTA**2) / 2) * 1e6,
                                            rel=VALUE_RTOL)
    shift = np.sqrt(1 + DELTA**2) - 1
    # occupied errors: [shift] for a, [0, 0] for b -> mean over 3 orbitals
    assert out["occupied_mae_mev"] == pytest.approx(shift / 3 * HARTREE_TO_MEV, rel=VALUE_RTOL)
    assert out["gap_mae_mev"] == pytest.approx((2 * shift + 3 * DELTA) / 2 * HARTREE_TO_MEV,
                                               rel=VALUE_RTOL)
    stacked = metrics(np.stack([pred_a, pred_a]), np.stack([ref_a, ref_a]))
    assert set(stacked) == {"mae_uha", "rmse_uha", "max_abs_uha", "n_structures"}


def test_perfect_prediction_is_zero():
    rng = np.random.default_rng(0)
    a = rng.normal(size=(6, 6))
    h = a + a.T
    s = a @ a.T + 6 * np.eye(6)
    out = metrics(h, h.copy(), s, n_occupied=3)
    assert all(v == 0 for k, v in out.items() if k != "n_structures")


def test_bad_input():
    pred, ref = two_level()
    asym = pred.copy()
    asym[0, 1] = 0.5
    with pytest.raises(ValueError, match=r"`pred\[0\]` must be symmetric"):
        metrics(asym, ref)
    with pytest.raises(ValueError, match="has shape"):
        metrics(np.eye(3), ref)
    with pytest.raises(ValueError, match="`pred` has 2 matrices, `ref` has 1"):
        metrics([pred, pred], ref)
    with pytest.raises(ValueError, match="must be a square matrix"):
        metrics([np.ones((2, 3))], [np.ones((2, 3))])
    with pytest.raises(ValueError, match="HOMO and a LUMO"):
        metrics(pred, ref, n_occupied=2)
    with pytest.raises(ValueError, match="not positive definite"):
        metrics(pred, ref, -np.eye(2), n_occupied=1)
    with pytest.raises(ValueError, match="`n_occupied` has 2 entries"):
        metrics(pred, ref, n_occupied=[1, 1])
    with pytest.raises(ValueError, match="NaN"):
        metrics(np.full((2, 2), np.nan), ref)
