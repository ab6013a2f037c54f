"""End-to-end tests of the per-block Hamiltonian model (ncsym.hamiltonian.model)."""

import numpy as np
import pytest
from scipy.linalg import block_diag, eigh

import ncsym
from ncsym.hamiltonian import load_water_dataset
from ncsym.hamiltonian.model import HamiltonianModel

EQUIVARIANCE_TOL = 1e-10  # relative, float64 through features, ridge and reassembly
SMALL = dict(max_radial=2, max_angular=2, cutoff=3.0, pair_cutoff=3.5)


@pytest.fixture(scope="module")
def water():
    return load_water_dataset()


KERNEL_OPTIONS = {
    "linear": {},
    "kernel": dict(kernel=True, zeta=2, n_active=15),
    "exact-select": dict(kernel="select", zeta=2, n_active=None),
    "exact-blend": dict(kernel="blend", zeta=2, n_active=None),
    "exact-projected": dict(kernel=True, zeta=2, n_active=None, kernel_components=3),
}


@pytest.fixture(scope="module", params=list(KERNEL_OPTIONS))
def model(water, request):
    kernel = KERNEL_OPTIONS[request.param]
    m = HamiltonianModel(orbitals=water.orbitals, basis=water.basis, features=SMALL, progress=False, **kernel)
    return m.fit(water.frames[:20], water.fock[:20])


def _ao_wigner(frame, orbitals, rot):
    d = ncsym.wigner_d(rot, 4)
    return block_diag(*[d[l] for z in frame.numbers for _, l in orbitals[int(z)]])


def _ao_permutation(frame, orbitals, perm):
    sizes = [sum(2 * l + 1 for _, l in orbitals[int(z)]) for z in frame.numbers]
    starts = np.concatenate([[0], np.cumsum(sizes)[:-1]])
    return np.concatenate([np.arange(starts[p], starts[p] + sizes[p]) for p in perm])


def test_fit_beats_constant_model(model, water):
    pred = model.predict(water.frames[20:25])
    ref = water.fock[20:25]
    err = np.mean([np.abs(p - r).mean() for p, r in zip(pred, ref, strict=True)])
    mean = np.mean(water.fock[:20], axis=0)
    base = np.mean([np.abs(mean - r).mean() for r in ref])
    assert err < 0.2 * base
    for p in pred:
        np.testing.assert_array_equal(p, p.T)


@pytest.mark.parametrize("improper", [False, True])
def test_rotation_equivariance(model, water, improper):
    frame = water.frames[30].copy()
    rng = np.random.default_rng(7)
    rot = ncsym.random_rotation(rng, improper=improper)
    rotated = frame.copy()
    rotated.positions = frame.positions @ rot.T
    f0, f1 = model.predict([frame, rotated])
    d = _ao_wigner(frame, water.orbitals, rot)
    expected = d @ f0 @ d.T
    assert np.abs(f1 - expected).max() <= EQUIVARIANCE_TOL * np.abs(f0).max()
    s = water.overlap[30]
    e0 = eigh(f0, s, eigvals_only=True)
    e1 = eigh(f1, d @ s @ d.T, eigvals_only=True)
    np.testing.assert_allclose(e1, e0, atol=EQUIVARIANCE_TOL * np.abs(e0).max())


def test_permutation_equivariance(model, water):
    frame = water.frames[31]
    perm = np.array([2, 0, 1])
    permuted = frame[perm]
    f0, f1 = model.predict([frame, permuted])
    idx = _ao_permutation(frame, water.orbitals, perm)
    np.testing.assert_array_equal(f1, f0[np.ix_(idx, idx)])


def test_translation_invariance(model, water):
    frame = water.frames[32]
    moved = frame.copy()
    moved.positions += np.array([3.1, -2.0, 0.7])
    f0, f1 = model.predict([frame, moved])
    assert np.abs(f1 - f0).max() <= EQUIVARIANCE_TOL * np.abs(f0).max()


def _with_meta(src, dst, **changes):
    import json

    with np.load(src) as data:
        arrays = {k: np.array(data[k]) for k in data.files}
    meta = json.loads(str(arrays["meta"]))
    meta.update(changes)
    arrays["meta"] = np.array(json.dumps(meta))
    np.savez(dst, **arrays)


def test_version_1_files_load_unless_their_kernel_weights_changed_layout(water, tmp_path):
    # format 1 stored exact kernel weights over the plain tensor power of the invariants: the
    # same layout as now for zeta <= 2, another one for zeta >= 3
    m = HamiltonianModel(
        orbitals=water.orbitals, basis=water.basis, features=SMALL, progress=False, kernel=True, zeta=2,
        n_active=None, kernel_components=3,
    ).fit(water.frames[:10], water.fock[:10])
    m.save(tmp_path / "m.npz")
    _with_meta(tmp_path / "m.npz", tmp_path / "v1.npz", format_version=1)
    old = HamiltonianModel.load(tmp_path / "v1.npz")
    np.testing.assert_array_equal(old.predict(water.frames[40:41])[0], m.predict(water.frames[40:41])[0])
    _with_meta(tmp_path / "m.npz", tmp_path / "v1z3.npz", format_version=1, zeta=3)
    with pytest.raises(ValueError, match="older ncsym"):
        HamiltonianModel.load(tmp_path / "v1z3.npz")


def test_save_load_round_trip(model, water, tmp_path):
    path = tmp_path / "model.npz"
    model.save(path)
    loaded = HamiltonianModel.load(path)
    a = model.predict(water.frames[40:42])
    b = loaded.predict(water.frames[40:42])
    for x, y in zip(a, b, strict=True):
        np.testing.assert_array_equal(x, y)


def test_intercept_only_for_onsite_scalars(model):
    for key, m in model.models_.items():
        block_type, _, _, lam, _ = key
        if not (block_type == 0 and lam == 0):
            np.testing.assert_array_equal(m["intercept"], 0.0)


def test_errors(model, water, tmp_path):
    import ase

    with pytest.raises(ValueError, match="not fitted"):
        HamiltonianModel(orbitals=water.orbitals).predict(water.frames[:1])
    with pytest.raises(ValueError, match=r"species \[6\] were not in the training frames"):
        model.predict([ase.Atoms("CO", positions=[[0, 0, 0], [0, 0, 1.2]])])
    with pytest.raises(ValueError, match="matrices for"):
        HamiltonianModel(orbitals=water.orbitals, features=SMALL).fit(water.frames[:3], water.fock[:2])
    bad = [f.copy() for f in water.fock[:3]]
    bad[1] = bad[1][:-1, :-1]
    with pytest.raises(ValueError, match="AO"):
        HamiltonianModel(orbitals=water.orbitals, features=SMALL).fit(water.frames[:3], bad)
    asym = [f.copy() for f in water.fock[:3]]
    asym[0][0, 1] += 1e-3
    with pytest.raises(ValueError, match="symmetric"):
        HamiltonianModel(orbitals=water.orbitals, features=SMALL).fit(water.frames[:3], asym)
    with pytest.raises(TypeError, match=r"`frames\[0\]` must be ase.Atoms"):
        model.predict(["H2O"])
    with pytest.raises(ValueError, match="either `basis`"):
        HamiltonianModel(basis=None)
    (tmp_path / "junk.npz").write_bytes(b"junk")
    with pytest.raises(ValueError, match="not a saved HamiltonianModel"):
        HamiltonianModel.load(tmp_path / "junk.npz")
    with pytest.raises(ValueError, match="zeta"):
        HamiltonianModel(orbitals=water.orbitals, kernel=True, zeta=0)
    with pytest.raises(ValueError, match="n_active"):
        HamiltonianModel(orbitals=water.orbitals, kernel=True, n_active=0)
    with pytest.raises(ValueError, match="`kernel` must be"):
        HamiltonianModel(orbitals=water.orbitals, kernel="rbf")
    with pytest.raises(ValueError, match="needs `cv`"):
        HamiltonianModel(orbitals=water.orbitals, kernel="select", cv=1)


def test_kernel_model_uses_nystrom_features(water):
    """With every training sample active, the Nystrom basis has one row per active (sample, mu)
    (no truncation of the active set); the model stays finite and its error stays within 2x
    of the linear model's (a sanity bound, not a claim that the kernel is better)."""
    m = HamiltonianModel(
        orbitals=water.orbitals, basis=water.basis, features=SMALL, progress=False, kernel=True, n_active=1000
    ).fit(water.frames[:12], water.fock[:12])
    for m_ in m.models_.values():
        n_active = m_["kernel_x"].shape[0]
        assert m_["kernel_basis"].shape[0] == n_active * m_["kernel_x"].shape[1]
    pred = m.predict(water.frames[12:16])
    lin = HamiltonianModel(orbitals=water.orbitals, basis=water.basis, features=SMALL, progress=False)
    lin.fit(water.frames[:12], water.fock[:12])
    ref = water.fock[12:16]
    err_k = np.mean([np.abs(p - r).mean() for p, r in zip(pred, ref, strict=True)])
    err_l = np.mean([np.abs(p - r).mean() for p, r in zip(lin.predict(water.frames[12:16]), ref, strict=True)])
    assert np.isfinite(err_k) and err_k < 2.0 * err_l


@pytest.mark.parametrize("kernel", [False, True])
def test_low_memory_gives_the_same_model(water, kernel):
    """Fitting and predicting one atom-pair family at a time changes nothing but the memory."""
    opts = dict(orbitals=water.orbitals, basis=water.basis, features=SMALL, progress=False, chunk_size=4)
    if kernel:
        opts.update(kernel=True, n_active=10)
    a = HamiltonianModel(**opts).fit(water.frames[:10], water.fock[:10])
    b = HamiltonianModel(low_memory=True, **opts).fit(water.frames[:10], water.fock[:10])
    assert a.models_.keys() == b.models_.keys()
    for x, y in zip(a.predict(water.frames[10:13]), b.predict(water.frames[10:13]), strict=True):
        np.testing.assert_array_equal(x, y)


def test_fit_frees_all_but_the_invariant_feature_blocks(water, monkeypatch):
    """Each fitted feature block is emptied once copied (peak memory); the lambda = 0,
    sigma = +1 blocks, which the kernels of the other blocks read, are kept."""
    seen = []
    fit_blocks = HamiltonianModel._fit_blocks

    def spy(self, feats, targets, family=None):
        models = fit_blocks(self, feats, targets, family)
        seen.append((feats, models))
        return models

    monkeypatch.setattr(HamiltonianModel, "_fit_blocks", spy)
    m = HamiltonianModel(
        orbitals=water.orbitals, basis=water.basis, features=SMALL, progress=False, chunk_size=3,
        low_memory=True, kernel="blend", n_active=None,
    ).fit(water.frames[:6], water.fock[:6])
    assert len(seen) == len(m._families(m.models_)) > 1
    n_emptied = 0
    for feats, models in seen:
        for i, key in enumerate(feats.keys.values):
            block, fkey = feats.blocks[i], tuple(int(v) for v in key)
            if fkey[3:] == (0, 1):
                assert len(block.samples) > 0
            elif fkey in models:
                assert block.values.shape[0] == len(block.samples) == 0
                n_emptied += 1
    assert n_emptied > 0


def test_feature_scaling_option(water):
    with pytest.raises(ValueError, match="feature_scaling"):
        HamiltonianModel(orbitals=water.orbitals, feature_scaling="none")
    m = HamiltonianModel(
        orbitals=water.orbitals, basis=water.basis, features=SMALL, progress=False, feature_scaling="property"
    ).fit(water.frames[:10], water.fock[:10])
    assert any(np.unique(mm["scale"]).size > 1 for mm in m.models_.values())
    b = HamiltonianModel(orbitals=water.orbitals, basis=water.basis, features=SMALL, progress=False)
    b.fit(water.frames[:10], water.fock[:10])
    assert all(np.unique(mm["scale"]).size <= 1 for mm in b.models_.values())


def test_cv_groups_option(water, monkeypatch, tmp_path):
    """``cv_groups='structure'`` leaves out every sample of one structure together."""
    import ncsym.hamiltonian.model as model_module

    with pytest.raises(ValueError, match="cv_groups"):
        HamiltonianModel(orbitals=water.orbitals, cv_groups="frame")
    seen = []
    real = model_module.fit_ridge_cv

    def spy(x, y, groups, **kwargs):
        seen.append(np.asarray(groups).copy())
        return real(x, y, groups, **kwargs)

    monkeypatch.setattr(model_module, "fit_ridge_cv", spy)
    opts = dict(orbitals=water.orbitals, basis=water.basis, features=SMALL, progress=False)
    n = 8
    by_sample = HamiltonianModel(**opts).fit(water.frames[:n], water.fock[:n])
    sample_groups, seen[:] = list(seen), []
    by_structure = HamiltonianModel(cv_groups="structure", **opts).fit(water.frames[:n], water.fock[:n])
    assert len(seen) == len(sample_groups) > 0
    for g_sample, g_structure in zip(sample_groups, seen, strict=True):
        # same rows; each structure group is a union of whole sample groups
        assert g_sample.shape == g_structure.shape
        assert set(np.unique(g_structure)) <= set(range(n))
        for s in np.unique(g_sample):
            assert np.unique(g_structure[g_sample == s]).size == 1
    # two on-site H samples per water: structure groups are fewer than sample groups there
    assert any(np.unique(a).size < np.unique(b).size for a, b in zip(seen, sample_groups, strict=True))
    by_structure.save(tmp_path / "m.npz")
    assert HamiltonianModel.load(tmp_path / "m.npz").cv_groups == "structure"
    assert by_sample.cv_groups == "sample"


def _pin_pyscf(monkeypatch, *names):
    """Replace the PySCF helpers ``names`` of ``pyscf_data`` by versions that compute each
    (frame, arguments) once: PySCF's threaded integrals may differ in the last bit between
    calls, and the ridge fits with tiny regularisations amplify that, so the comparisons of
    the tests below must be between the same numbers."""
    import ncsym.hamiltonian.pyscf_data as pyscf_data

    cache = {}

    def pinned(name, real):
        def call(frame, *args, **kwargs):
            key = (name, frame.numbers.tobytes(), frame.positions.tobytes(), args, tuple(sorted(kwargs.items())))
            if key not in cache:
                cache[key] = real(frame, *args, **kwargs)
            return cache[key].copy()

        return call

    for name in names:
        monkeypatch.setattr(pyscf_data, name, pinned(name, getattr(pyscf_data, name)))
    return pyscf_data


def test_baseline_option(water, tmp_path, monkeypatch):
    """``baseline='minao'`` learns F - F0 and adds F0 back: the same as a plain model fitted on
    F - F0; it stays rotation equivariant and survives save/load."""
    pytest.importorskip("pyscf")
    pyscf_data = _pin_pyscf(monkeypatch, "guess_fock")

    with pytest.raises(ValueError, match="baseline"):
        HamiltonianModel(basis="def2-svp", baseline="sad")
    with pytest.raises(ValueError, match="basis"):
        HamiltonianModel(basis=None, orbitals=water.orbitals, baseline="minao")
    with pytest.raises(ValueError, match="method"):
        HamiltonianModel(basis="def2-svp", baseline="minao", method="UHF")
    with pytest.raises(ValueError, match=r"matrices\[0\] has shape \(23, 23\) but the def2-svp baseline"):
        HamiltonianModel(basis=water.basis, orbitals=water.orbitals, baseline="minao", progress=False).fit(
            water.frames[:2], [m[:-1, :-1] for m in water.fock[:2]]
        )
    n = 8
    opts = dict(orbitals=water.orbitals, features=SMALL, progress=False)
    delta = HamiltonianModel(basis=water.basis, baseline="minao", **opts).fit(water.frames[:n], water.fock[:n])
    base = [pyscf_data.guess_fock(f, water.basis) for f in water.frames[: n + 2]]
    plain = HamiltonianModel(basis=water.basis, **opts).fit(
        water.frames[:n], [f - b for f, b in zip(water.fock[:n], base[:n], strict=True)]
    )
    test = water.frames[n : n + 2]
    pred = delta.predict(test)
    from ncsym.hamiltonian import blocks_to_matrix, decouple_blocks

    learned = blocks_to_matrix(decouple_blocks(delta.predict_coupled(test)), test, water.orbitals)
    for p, d, q, b in zip(pred, learned, plain.predict(test), base[n:], strict=True):
        np.testing.assert_allclose(p, d + b, rtol=0, atol=1e-12 * np.abs(b).max())
        # two separate ridge fits on the same numbers: the smallest regularisations (1e-12
        # relative) amplify last-bit differences of numpy's summation order to ~1e-10 Hartree
        np.testing.assert_allclose(d, q, rtol=0, atol=1e-8 * np.abs(q).max())
    # the baseline helps on water too: the model of F - F0 beats the model of F at n = 8
    direct = HamiltonianModel(basis=water.basis, **opts).fit(water.frames[:n], water.fock[:n])
    err = lambda preds: np.mean([np.abs(p - r).mean() for p, r in zip(preds, water.fock[n : n + 2], strict=True)])  # noqa: E731
    assert err(pred) < err(direct.predict(test))

    frame = water.frames[30].copy()
    rot = ncsym.random_rotation(np.random.default_rng(3), improper=True)
    rotated = frame.copy()
    rotated.positions = frame.positions @ rot.T
    f0, f1 = delta.predict([frame, rotated])
    d = _ao_wigner(frame, water.orbitals, rot)
    assert np.abs(f1 - d @ f0 @ d.T).max() <= EQUIVARIANCE_TOL * np.abs(f0).max()

    delta.save(tmp_path / "delta.npz")
    loaded = HamiltonianModel.load(tmp_path / "delta.npz")
    assert loaded.baseline == "minao" and loaded.method == "RHF"
    np.testing.assert_allclose(loaded.predict(test)[0], pred[0], rtol=0, atol=1e-12 * np.abs(pred[0]).max())


def test_orthogonalize_option(water, tmp_path, monkeypatch):
    """``orthogonalize=True`` learns ``S^-1/2 (F - F0) S^-1/2`` and maps the prediction back
    with ``S^1/2``: the same as a plain model fitted on the orthogonalised residuals; it stays
    rotation and permutation equivariant and survives save/load."""
    pytest.importorskip("pyscf")
    from ncsym.hamiltonian import (
        blocks_to_matrix,
        decouple_blocks,
        lowdin_deorthogonalize,
        lowdin_orthogonalize,
    )

    pyscf_data = _pin_pyscf(monkeypatch, "guess_fock", "cross_overlap")

    with pytest.raises(ValueError, match="`orthogonalize` needs the overlap"):
        HamiltonianModel(basis=None, orbitals=water.orbitals, orthogonalize=True)
    n = 8
    opts = dict(orbitals=water.orbitals, basis=water.basis, features=SMALL, progress=False)
    orth = HamiltonianModel(baseline="minao", orthogonalize=True, **opts).fit(water.frames[:n], water.fock[:n])
    frames = water.frames[: n + 2]
    base = [pyscf_data.guess_fock(f, water.basis) for f in frames]
    overlaps = [pyscf_data.cross_overlap(f, water.basis, water.basis) for f in frames]
    np.testing.assert_allclose(overlaps[0], water.overlap[0], rtol=0, atol=1e-12)
    residuals = lowdin_orthogonalize(
        [f - b for f, b in zip(water.fock[:n], base[:n], strict=True)], overlaps[:n]
    )
    plain = HamiltonianModel(**opts).fit(water.frames[:n], residuals)
    test = water.frames[n : n + 2]
    learned = blocks_to_matrix(decouple_blocks(orth.predict_coupled(test)), test, water.orbitals)
    pred = orth.predict(test)
    for p, d, q, b, s in zip(pred, learned, plain.predict(test), base[n:], overlaps[n:], strict=True):
        np.testing.assert_allclose(p, b + lowdin_deorthogonalize(d, s), rtol=0, atol=1e-12 * np.abs(b).max())
        np.testing.assert_allclose(d, q, rtol=0, atol=1e-8 * np.abs(q).max())
        assert np.array_equal(p, p.T)
    assert np.mean([np.abs(p - r).mean() for p, r in zip(pred, water.fock[n : n + 2], strict=True)]) < 1e-3

    frame = water.frames[30].copy()
    rot = ncsym.random_rotation(np.random.default_rng(4), improper=True)
    rotated = frame.copy()
    rotated.positions = frame.positions @ rot.T
    perm = np.array([2, 0, 1])
    permuted = frame[perm]
    f0, f1, f2 = orth.predict([frame, rotated, permuted])
    d = _ao_wigner(frame, water.orbitals, rot)
    assert np.abs(f1 - d @ f0 @ d.T).max() <= EQUIVARIANCE_TOL * np.abs(f0).max()
    idx = _ao_permutation(frame, water.orbitals, perm)
    assert np.abs(f2 - f0[np.ix_(idx, idx)]).max() <= EQUIVARIANCE_TOL * np.abs(f0).max()

    with pytest.raises(ValueError, match="overlap of its frame"):
        HamiltonianModel(orthogonalize=True, **opts).fit(water.frames[:2], [m[:-1, :-1] for m in water.fock[:2]])
    with pytest.raises(ValueError, match=r"`matrices\[1\]` must be symmetric"):
        HamiltonianModel(orthogonalize=True, **opts).fit(
            water.frames[:2], [water.fock[0], water.fock[1] + np.triu(np.ones_like(water.fock[1]), 1)]
        )
    orth.save(tmp_path / "orth.npz")
    loaded = HamiltonianModel.load(tmp_path / "orth.npz")
    assert loaded.orthogonalize and loaded.baseline == "minao"
    np.testing.assert_allclose(loaded.predict(test)[0], pred[0], rtol=0, atol=1e-12 * np.abs(pred[0]).max())


def test_exact_kernel_and_selection(water):
    """``n_active=None`` solves kernel ridge exactly in the dual (every training sample active,
    no Nystrom basis); ``kernel="select"`` keeps per target the model with the lower CV error,
    and its predictions are the kernel part plus the linear part."""
    opts = dict(orbitals=water.orbitals, basis=water.basis, features=SMALL, progress=False)
    exact = HamiltonianModel(kernel=True, n_active=None, **opts).fit(water.frames[:12], water.fock[:12])
    sel = HamiltonianModel(kernel="select", n_active=None, **opts).fit(water.frames[:12], water.fock[:12])
    lin = HamiltonianModel(**opts).fit(water.frames[:12], water.fock[:12])
    for key, m in exact.models_.items():
        # primal form: (d, p, n_targets) weights, d = p0 + 1 invariants for zeta = 2; no
        # training features are stored
        assert "kernel_basis" not in m and "kernel_x" not in m
        p0 = m["scale0"].shape[0]
        assert m["kernel_weights"].shape == (p0 + 1, m["scale"].shape[0], len(m["target_keys"]))
        s, ml = sel.models_[key], lin.models_[key]
        use = s["uses_kernel"]
        np.testing.assert_array_equal(s["kernel_weights"][:, :, ~use], 0.0)
        # per target: the kernel fit of `exact` or the linear fit of `lin`, whichever CV preferred
        np.testing.assert_allclose(s["cv_rmse"], np.where(use, m["cv_rmse"], ml["cv_rmse"]), rtol=1e-8)
        assert np.all(s["cv_rmse"] <= np.maximum(m["cv_rmse"], ml["cv_rmse"]) * (1 + 1e-8))
        np.testing.assert_array_equal(s["linear_weights"][:, use], 0.0)
    assert 0 < sum(int(m["uses_kernel"].sum()) for m in sel.models_.values()) < sum(
        len(m["target_keys"]) for m in sel.models_.values()
    )
    ref = water.fock[12:16]
    err = {
        name: np.mean([np.abs(p - r).mean() for p, r in zip(mod.predict(water.frames[12:16]), ref, strict=True)])
        for name, mod in (("exact", exact), ("select", sel), ("linear", lin))
    }
    assert all(np.isfinite(e) for e in err.values())
    assert err["select"] < 2.0 * min(err["exact"], err["linear"])


def test_blend_shares_minimise_the_blended_loo_error():
    from ncsym.hamiltonian.model import _blend_shares

    rng = np.random.default_rng(3)
    common = rng.normal(size=(60, 1))
    r_k = common + rng.normal(size=(60, 4))
    r_l = common + rng.normal(size=(60, 4))
    r_l[:, 2] = 3.0 * r_k[:, 2]  # the kernel is better on every row: w = 1
    r_k[:, 3] = 2.0 * r_l[:, 3]  # the linear model is: w = 0
    share0 = np.zeros(4)
    w, rmse = _blend_shares(r_k, r_l, share0, np.full(4, np.nan))
    grid = np.linspace(0.0, 1.0, 10001)
    for t in range(4):
        err = [np.sqrt(((g * r_k[:, t] + (1 - g) * r_l[:, t]) ** 2).mean()) for g in grid]
        assert abs(w[t] - grid[int(np.argmin(err))]) <= 1e-4
        assert rmse[t] <= min(err) * (1 + 1e-12)
        assert rmse[t] <= min(np.sqrt((r_k[:, t] ** 2).mean()), np.sqrt((r_l[:, t] ** 2).mean()))
    assert w[2] == 1.0 and w[3] == 0.0 and 0.0 < w[0] < 1.0
    # non-finite residuals (a singular left-out system) keep the select rule's share
    r_k[5, 1] = np.nan
    w2, rmse2 = _blend_shares(r_k, r_l, np.array([0.0, 1.0, 0.0, 0.0]), np.array([0.0, 7.0, 0.0, 0.0]))
    assert w2[1] == 1.0 and rmse2[1] == 7.0


def test_kernel_blend(water, tmp_path):
    """``kernel="blend"``: per target ``w kernel + (1 - w) linear`` with ``w`` from the LOO
    residuals; its CV error is at most that of either model and it survives save/load."""
    opts = dict(orbitals=water.orbitals, basis=water.basis, features=SMALL, progress=False, n_active=None)
    with pytest.raises(ValueError, match="kernel='blend'"):
        HamiltonianModel(kernel="blend", cv=3, **opts)
    blend = HamiltonianModel(kernel="blend", **opts).fit(water.frames[:12], water.fock[:12])
    exact = HamiltonianModel(kernel=True, **opts).fit(water.frames[:12], water.fock[:12])
    lin = HamiltonianModel(**{k: v for k, v in opts.items() if k != "n_active"}).fit(
        water.frames[:12], water.fock[:12]
    )
    shares = []
    for key, m in blend.models_.items():
        w = m["kernel_share"]
        shares.append(w)
        assert np.all((w >= 0) & (w <= 1))
        ok = np.isfinite(exact.models_[key]["cv_rmse"]) & np.isfinite(lin.models_[key]["cv_rmse"])
        best = np.minimum(exact.models_[key]["cv_rmse"], lin.models_[key]["cv_rmse"])
        assert np.all(m["cv_rmse"][ok] <= best[ok] * (1 + 1e-8))
        # the stored parts are the two fits scaled by w and 1 - w
        np.testing.assert_allclose(
            m["kernel_weights"], exact.models_[key]["kernel_weights"] * w, rtol=1e-8, atol=1e-14
        )
        np.testing.assert_allclose(
            m["linear_weights"], lin.models_[key]["weights"] * (1 - w), rtol=1e-8, atol=1e-14
        )
    shares = np.concatenate(shares)
    assert np.any((shares > 0) & (shares < 1))
    # equivariance: KERNEL_OPTIONS["exact-blend"] runs the rotation and permutation tests
    test = water.frames[20]
    f0 = blend.predict([test])[0]
    blend.save(tmp_path / "blend.npz")
    loaded = HamiltonianModel.load(tmp_path / "blend.npz")
    assert loaded.kernel == "blend"
    np.testing.assert_allclose(loaded.predict([test])[0], f0, rtol=0, atol=1e-12 * np.abs(f0).max())


def test_kernel_components_project_the_invariants(water):
    m = HamiltonianModel(
        orbitals=water.orbitals,
        basis=water.basis,
        features=SMALL,
        progress=False,
        kernel=True,
        n_active=None,
        kernel_components=3,
    ).fit(water.frames[:8], water.fock[:8])
    for m_ in m.models_.values():
        p0 = m_["scale0"].shape[0]
        d = min(p0, 3) + 1
        assert m_["kernel_weights"].shape == (d, m_["scale"].shape[0], len(m_["target_keys"]))
        if p0 > 3:
            assert m_["kernel_axes"].shape == (p0, 3)
        else:
            assert "kernel_axes" not in m_
    with pytest.raises(ValueError, match="kernel_components"):
        HamiltonianModel(orbitals=water.orbitals, kernel=True, kernel_components=0)
