"""Accuracy goals of the Hamiltonian model on the shipped water set (issue 8), slow."""

import numpy as np
import pytest

from ncsym.hamiltonian import load_water_dataset, metrics
from ncsym.hamiltonian.model import HamiltonianModel


@pytest.mark.slow
def test_water_250_train_50_test_meets_the_goals():
    """RHF/def2-SVP raw Fock, 250 training / 50 test structures, default features:
    element-wise MAE <= 10 micro-Hartree and occupied-orbital-energy MAE <= 1 meV."""
    data = load_water_dataset()
    model = HamiltonianModel(orbitals=data.orbitals, basis=data.basis, progress=False)
    model.fit(data.frames[:250], data.fock[:250])
    pred = model.predict(data.frames[250:300])
    out = metrics(pred, data.fock[250:300], data.overlap[250:300], data.n_occupied[250:300])
    assert out["n_structures"] == 50
    assert out["mae_uha"] <= 10.0
    assert out["occupied_mae_mev"] <= 1.0
    for p in pred:
        assert np.all(np.isfinite(p))


@pytest.mark.slow
def test_water_kernel_select_with_100_structures():
    """The exact zeta = 2 kernel (chosen per target by structure-grouped LOO) learns water from
    100 structures better than the linear model does from 250: measured 1.29 micro-Hartree and
    0.034 meV (the linear model: 5.83 uHa at 100, 5.24 uHa at 250)."""
    data = load_water_dataset()
    model = HamiltonianModel(
        orbitals=data.orbitals,
        basis=data.basis,
        progress=False,
        kernel="select",
        n_active=None,
        cv_groups="structure",
    )
    model.fit(data.frames[:100], data.fock[:100])
    pred = model.predict(data.frames[250:300])
    out = metrics(pred, data.fock[250:300], data.overlap[250:300], data.n_occupied[250:300])
    assert out["mae_uha"] <= 2.0
    assert out["occupied_mae_mev"] <= 0.1
    assert 0 < sum(int(m["uses_kernel"].sum()) for m in model.models_.values())
