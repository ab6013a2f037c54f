"""Tests for ncsym.acdc: density correlations, lambda-SOAP, contraction, errors.

Equivariance is checked on random equivariant densities rotated with Wigner matrices
(hypothesis), agreement with featomic on featomic's own density (so that only the CG part is
compared), and end to end on structures with ncsym's SphericalExpansion.
"""

import types

import ase
import ase.build
import numpy as np
import pytest
from hypothesis import example, given
from hypothesis import strategies as st

import ncsym
from ncsym.products import match_rows
from ncsym.rotations import wigner_d
from ncsym.testing import strategies as nst

#: Relative equivariance error of every block (Frobenius norms).
EQUIVARIANCE_TOL = 1e-12
#: Relative agreement with featomic given the same density.
FEATOMIC_TOL = 1e-10
#: Norm change of a full-rank (variance fraction 1) contraction on its training data.
ISOMETRY_TOL = 1e-10
#: Blocks smaller than this fraction of the largest are compared against it (zero by symmetry).
NORM_FLOOR = 1e-3

featomic = pytest.importorskip("featomic")


# ----------------------------------------------------------------------------- helpers


def _random_density(rng, lmax=2, n_radial=1, species=(1, 8), center_types=(1, 8, 8), system=0):
    n = len(center_types)
    return types.SimpleNamespace(
        values=rng.normal(size=(n, (lmax + 1) ** 2, len(species), n_radial)),
        system=np.full(n, system),
        atom=np.arange(n),
        center_type=np.array(center_types),
        species=np.array(species),
    )


def _rotate_density(dens, rotation):
    """The density of the rotated structure: ``D_l(R)`` on each ``l`` (sigma = +1)."""
    lmax = int(round(np.sqrt(dens.values.shape[1]))) - 1
    d = wigner_d(rotation, lmax)
    values = dens.values.copy()
    for l in range(lmax + 1):
        sl = slice(l * l, (l + 1) ** 2)
        values[:, sl] = np.einsum("mk,ik...->im...", d[l], dens.values[:, sl])
    return types.SimpleNamespace(**{**vars(dens), "values": values})


def _block_errors(got_map, ref_map, transform=None):
    """Relative error of every block of ``got_map`` against ``ref_map`` (matched by labels)."""
    norms = [np.linalg.norm(b.values) for b in ref_map.blocks]
    top = max(norms) if norms else 0.0
    errors = {}
    for i, (key, ref) in enumerate(ref_map.items()):
        got = got_map.block(**key)
        rows = match_rows(got.samples.values, ref.samples.values)
        cols = match_rows(got.properties.values, ref.properties.values)
        assert np.all(rows >= 0) and np.all(cols >= 0), f"labels of {key} differ"
        values = got.values[rows][:, :, cols]
        expected = ref.values if transform is None else transform(key, ref.values)
        scale = max(norms[i], NORM_FLOOR * top, 1e-300)
        errors[tuple(key.values())] = float(np.linalg.norm(values - expected) / scale)
    return errors


def _equivariance_transform(rotation):
    det = float(np.sign(np.linalg.det(rotation)))
    d = wigner_d(rotation, 12)

    def transform(key, values):
        factor = det if key["o3_sigma"] == -1 else 1.0
        return factor * np.einsum("mk,skp->smp", d[key["o3_lambda"]], values)

    return transform


def _featomic_hypers(lmax, max_radial, cutoff=4.0):
    return {
        "cutoff": {"radius": cutoff, "smoothing": {"type": "ShiftedCosine", "width": 0.5}},
        "density": {"type": "Gaussian", "width": 0.3},
        "basis": {"type": "TensorProduct", "max_angular": lmax, "radial": {"type": "Gto", "max_radial": max_radial}},
    }


def _featomic_density(frames, lmax, max_radial):
    """featomic's SphericalExpansion as a dense density (the layout of ncsym.DenseExpansion)."""
    tensor = featomic.SphericalExpansion(**_featomic_hypers(lmax, max_radial)).compute(frames)
    species = sorted({int(t) for t in tensor.keys.column("neighbor_type")})
    centres = np.array([(s, a, z) for s, f in enumerate(frames) for a, z in enumerate(f.numbers)])
    index = {(int(s), int(a)): i for i, (s, a, _) in enumerate(centres)}
    values = np.zeros((len(centres), (lmax + 1) ** 2, len(species), max_radial + 1))
    for key, block in tensor.items():
        l = int(key["o3_lambda"])
        rows = [index[(int(s), int(a))] for s, a in np.asarray(block.samples.values)[:, :2]]
        cols = np.asarray(block.properties.column("n"))
        values[np.ix_(rows, range(l * l, (l + 1) ** 2), [species.index(int(key["neighbor_type"]))], cols)] = (
            np.asarray(block.values)[:, :, None, :]
        )
    return types.SimpleNamespace(
        values=values, system=centres[:, 0], atom=centres[:, 1], center_type=centres[:, 2], species=np.array(species)
    )


def _from_featomic(tensor):
    return ncsym.BlockMap.from_metatensor(tensor)


MOLECULE = ase.build.molecule("CH3CH2OH")
PERIODIC = ase.build.bulk("Si", "diamond", 5.43, cubic=True)
PERIODIC.positions += np.random.default_rng(7).normal(scale=0.1, size=PERIODIC.positions.shape)


# ----------------------------------------------------------------------------- featomic


@pytest.mark.parametrize("frame", [MOLECULE, PERIODIC], ids=["ethanol", "Si8"])
def test_power_spectrum_matches_featomic(frame):
    from featomic.clebsch_gordan import EquivariantPowerSpectrum as FeaturesPS

    lmax, max_radial = 3, 3
    dens = _featomic_density([frame], lmax, max_radial)
    ours = ncsym.EquivariantPowerSpectrum({"max_angular": lmax}).compute(density=dens)
    calc = featomic.SphericalExpansion(**_featomic_hypers(lmax, max_radial))
    ref = _from_featomic(FeaturesPS(calc).compute([frame], neighbors_to_properties=True))
    assert len(ours) == len(ref)
    assert ours.blocks[0].properties.names == ref.blocks[0].properties.names
    errors = _block_errors(ours, ref)
    assert max(errors.values()) <= FEATOMIC_TOL, max(errors.items(), key=lambda kv: kv[1])


@pytest.mark.parametrize(
    "frame",
    [ase.build.molecule("H2O"), ase.build.bulk("Si", "diamond", 5.43)],
    ids=["water", "Si2"],
)
def test_density_correlations_nu3_matches_featomic(frame):
    from featomic.clebsch_gordan import DensityCorrelations as FeaturesDC

    lmax, max_radial = 2, 2
    dens = _featomic_density([frame], lmax, max_radial)
    ours = ncsym.DensityCorrelations(expansion={"max_angular": lmax}, correlation_order=3).compute(density=dens)
    calc = featomic.SphericalExpansion(**_featomic_hypers(lmax, max_radial))
    density = calc.compute([frame]).keys_to_properties("neighbor_type")
    ref = FeaturesDC(n_correlations=2, max_angular=3 * lmax).compute(density)
    ref = _from_featomic(ref.keys_to_properties(["l_1", "l_2", "k_2", "l_3"]))
    assert len(ours) == len(ref)
    for key, block in ref.items():
        assert len(ours.block(**key).properties) == len(block.properties)
    errors = _block_errors(ours, ref)
    assert max(errors.values()) <= FEATOMIC_TOL, max(errors.items(), key=lambda kv: kv[1])


# ----------------------------------------------------------------------------- equivariance


@given(rotation=nst.rotations(improper=None), seed=st.integers(0, 2**16))
@example(rotation=nst.INVERSION, seed=0)
@example(rotation=nst.HALF_TURNS["xyz"], seed=1)
def test_every_block_equivariant_up_to_nu4(rotation, seed):
    rng = np.random.default_rng(seed)
    dens = _random_density(rng)
    rotated = _rotate_density(dens, rotation)
    transform = _equivariance_transform(rotation)
    for nu in (1, 2, 3, 4):
        calc = ncsym.DensityCorrelations(
            expansion={"max_angular": 2}, correlation_order=nu, max_lambda=min(6, 2 * nu)
        )
        errors = _block_errors(calc.compute(density=rotated), calc.compute(density=dens), transform)
        assert max(errors.values()) <= EQUIVARIANCE_TOL, (nu, max(errors.items(), key=lambda kv: kv[1]))


@given(rotation=nst.rotations(improper=None))
@example(rotation=nst.INVERSION)
def test_contracted_nu4_equivariant_on_new_frames(rotation):
    rng = np.random.default_rng(3)
    train = _random_density(rng, n_radial=2, center_types=(1, 8, 8, 1, 8))
    calc = ncsym.DensityCorrelations(
        expansion={"max_angular": 2}, correlation_order=4, max_lambda=6, contraction=6
    ).fit(density=train)
    new = _random_density(rng, n_radial=2, center_types=(8, 1), system=3)
    out = calc.compute(density=new)
    errors = _block_errors(calc.compute(density=_rotate_density(new, rotation)), out, _equivariance_transform(rotation))
    assert max(errors.values()) <= EQUIVARIANCE_TOL
    assert out.blocks[0].properties.names == ("k_3", "l_4", "pc_3", "neighbor_4_type", "n_4")


@pytest.mark.parametrize("nu", [2, 3])
def test_structures_end_to_end_equivariant(nu):
    from ncsym.testing import assert_equivariant

    expansion = ncsym.SphericalExpansion(cutoff=3.5, max_radial=2, max_angular=2, species=[1, 6, 8])
    calc = ncsym.DensityCorrelations(expansion=expansion, correlation_order=nu, max_lambda=4)
    assert_equivariant(calc.compute, MOLECULE, checks=("rotation", "inversion", "permutation"), rtol=EQUIVARIANCE_TOL)
    # frames and their precomputed density give identical results
    a = calc.compute([MOLECULE])
    b = calc.compute(density=expansion.compute_dense([MOLECULE]))
    for x, y in zip(a.blocks, b.blocks, strict=True):
        np.testing.assert_array_equal(x.values, y.values)


# ----------------------------------------------------------------------------- features


def test_order_one_and_metadata(rng):
    dens = _random_density(rng, n_radial=2)
    out = ncsym.DensityCorrelations(expansion={"max_angular": 2}, correlation_order=1).compute(density=dens)
    blk = out.block(o3_lambda=2, o3_sigma=1, center_type=8)
    np.testing.assert_array_equal(blk.values, dens.values[1:, 4:9].reshape(2, 5, 4))
    assert blk.properties.names == ("neighbor_1_type", "n_1")
    for nu in (1, 2, 3):
        calc = ncsym.DensityCorrelations(expansion={"max_angular": 2}, correlation_order=nu)
        full, meta = calc.compute(density=dens), calc.compute_metadata(density=dens)
        assert full.keys == meta.keys
        for x, y in zip(full.blocks, meta.blocks, strict=True):
            assert x.samples == y.samples and x.properties == y.properties
            assert x.values.shape == y.values.shape and y.values.strides == (0, 0, 0)


def test_chunking_and_selection(rng):
    dens = _random_density(rng, n_radial=2, center_types=(1, 1, 8, 8, 1))
    whole = ncsym.DensityCorrelations(expansion={"max_angular": 2}, correlation_order=3, max_lambda=3)
    chunked = ncsym.DensityCorrelations(
        expansion={"max_angular": 2}, correlation_order=3, max_lambda=3, chunk_size=1
    )
    a, b = whole.compute(density=dens), chunked.compute(density=dens)
    for x, y in zip(a.blocks, b.blocks, strict=True):
        np.testing.assert_array_equal(x.values, y.values)
    sel = ncsym.DensityCorrelations(
        expansion={"max_angular": 2}, correlation_order=3, selected_keys=[(1, -1), (3, 1)]
    ).compute(density=dens)
    assert {(int(k[0]), int(k[1])) for k in sel.keys.values} == {(1, -1), (3, 1)}
    np.testing.assert_array_equal(
        sel.block(o3_lambda=3, o3_sigma=1, center_type=8).values, a.block(o3_lambda=3, o3_sigma=1, center_type=8).values
    )


@pytest.mark.parametrize("nu, chunk_size", [(2, None), (3, 2)])
def test_staged_last_step_equals_direct_plan(rng, monkeypatch, nu, chunk_size):
    # the CPU last step assembles each sample in a scratch and copies it to the blocks; the
    # arithmetic is the same as writing the blocks directly, so results agree bit for bit
    from ncsym import acdc

    dens = _random_density(rng, n_radial=2, center_types=(1, 8, 8, 1, 1))
    calc = ncsym.DensityCorrelations(
        expansion={"max_angular": 2}, correlation_order=nu, max_lambda=3, chunk_size=chunk_size
    )
    staged = calc.compute(density=dens)
    staged = [b.values.copy() for b in staged.blocks]
    # and copied out with non-temporal stores, as for outputs larger than the caches
    monkeypatch.setattr("ncsym.kernels.simd.STREAM_MIN_BYTES", 0)
    streamed = [b.values.copy() for b in calc.compute(density=dens).blocks]
    monkeypatch.setattr(acdc, "STAGED_LAST_STEP", False)
    direct = calc.compute(density=dens)
    for x, z, y in zip(staged, streamed, direct.blocks, strict=True):
        assert np.all(np.isfinite(x))
        np.testing.assert_array_equal(x, y.values)
        np.testing.assert_array_equal(z, y.values)


def test_remembered_pipelines_follow_changed_settings(rng):
    # pipelines are remembered per centre type, density layout and settings: changing a
    # setting between calls must not reuse the old plan
    from ncsym.products import _normalise_selection

    dens = _random_density(rng, n_radial=2)
    calc = ncsym.DensityCorrelations(expansion={"max_angular": 2}, correlation_order=2, max_lambda=3)
    full = calc.compute(density=dens)
    calc.max_lambda = 1
    assert {int(k[0]) for k in calc.compute(density=dens).keys.values} == {0, 1}
    calc.max_lambda = 3
    calc.selected_keys = _normalise_selection([(2, 1)])
    sel = calc.compute(density=dens)
    assert {(int(k[0]), int(k[1])) for k in sel.keys.values} == {(2, 1)}
    calc.selected_keys = _normalise_selection([(3, 1)])
    assert {(int(k[0]), int(k[1])) for k in calc.compute(density=dens).keys.values} == {(3, 1)}
    calc.selected_keys = None
    again = calc.compute(density=dens)
    assert again.keys == full.keys
    for x, y in zip(again.blocks, full.blocks, strict=True):
        np.testing.assert_array_equal(x.values, y.values)


def test_run_plan_blocks_rejects_bad_layouts():
    from ncsym.products import PlanBuilder, run_plan_blocks

    builder = PlanBuilder()
    builder.add(l1=1, a_base=0, a_sstride=3, a_p=1, l2=1, b_base=0, b_sstride=3, b_p=1,
                outputs=[(0, 0, 1, 1, 0), (2, 1, 5, 1, 0)])
    plan = builder.build()
    a = np.arange(6.0)
    idx = np.arange(2)
    out = np.full(12, np.nan)
    start, size = np.array([0, 1]), np.array([1, 5])
    run_plan_blocks(plan, a, a, idx, idx, start, size, np.array([0, 2]), 0, out)
    assert np.all(np.isfinite(out))
    with pytest.raises(ValueError, match="tile one sample"):
        run_plan_blocks(plan, a, a, idx, idx, np.array([0, 2]), size, np.array([0, 2]), 0, out)
    with pytest.raises(ValueError, match="blocks reach entry"):
        run_plan_blocks(plan, a, a, idx, idx, start, size, np.array([0, 2]), 1, out)
    with pytest.raises(ValueError, match="reads beyond"):
        run_plan_blocks(plan, a, a, idx + 1, idx, start, size, np.array([0, 2]), 0, out)
    with pytest.raises(ValueError, match="C-contiguous 1-D float64"):
        run_plan_blocks(plan, a, a, idx, idx, start, size, np.array([0, 2]), 0, np.full(24, np.nan)[::2])


def test_skip_redundant_false_keeps_every_ordering(rng):
    dens = _random_density(rng)
    keep = ncsym.EquivariantPowerSpectrum({"max_angular": 2}, skip_redundant=False).compute(density=dens)
    skip = ncsym.EquivariantPowerSpectrum({"max_angular": 2}).compute(density=dens)
    lab = keep.block(o3_lambda=1, o3_sigma=1, center_type=1).properties
    pairs = {tuple(r) for r in lab.values[:, :2]}
    assert (2, 1) in pairs and (1, 2) in pairs
    assert all(r[0] <= r[1] for r in skip.block(o3_lambda=1, o3_sigma=1, center_type=1).properties.values)


def test_cross_correlation_of_two_expansions(rng):
    d1 = _random_density(rng, lmax=2, n_radial=2)
    d2 = _random_density(rng, lmax=1, n_radial=3)
    calc = ncsym.EquivariantPowerSpectrum({"max_angular": 2}, {"max_angular": 1})
    out = calc.compute(density=d1, density_2=d2)
    blk = out.block(o3_lambda=1, o3_sigma=1, center_type=8)
    cols = np.all(blk.properties.values[:, :2] == [2, 1], axis=1)
    a = d1.values[1:, 4:9].reshape(2, 5, -1)
    b = d2.values[1:, 1:4].reshape(2, 3, -1)
    np.testing.assert_allclose(blk.values[:, :, cols], ncsym.products.couple_arrays(a, b, 2, 1, 1), atol=1e-14)


def test_contraction_fit_and_reuse(rng):
    train = _random_density(rng, n_radial=3, center_types=(1, 8, 8, 1, 1, 8))
    calc = ncsym.DensityCorrelations(
        expansion={"max_angular": 2}, correlation_order=3, max_lambda=2, contraction={(0, 1): 2}
    )
    with pytest.raises(ValueError, match="call `fit\\(frames\\)`"):
        calc.compute(density=train)
    calc.fit(density=train)
    for (order, _ct, lam, sigma), comp in calc.components_.items():
        assert order == 2
        np.testing.assert_allclose(comp.T @ comp, np.eye(comp.shape[1]), atol=1e-12)
        if (lam, sigma) == (0, 1):
            assert comp.shape[1] == 2
    # new frames with fewer species: channels padded with zeros
    new = _random_density(rng, n_radial=3, species=(8,), center_types=(8,), system=5)
    out = calc.compute(density=new)
    assert out.blocks[0].samples.values.tolist() == [[5, 0]]
    # a variance fraction of 1 keeps every nonzero direction: on the training data the
    # contraction is an isometry, so every order-3 block keeps its norm
    kwargs = dict(expansion={"max_angular": 2}, correlation_order=3, max_lambda=2, skip_redundant=False)
    exact = ncsym.DensityCorrelations(**kwargs).compute(density=train)
    full = ncsym.DensityCorrelations(**kwargs, contraction=1.0).fit(density=train)
    for key, blk in full.compute(density=train).items():
        ref = np.linalg.norm(exact.block(**key).values)
        assert abs(np.linalg.norm(blk.values) - ref) <= ISOMETRY_TOL * ref
    with pytest.raises(ValueError, match="not present when the contraction was fitted"):
        calc.compute(density=_random_density(rng, n_radial=3, species=(1, 6, 8), center_types=(1,)))
    with pytest.raises(ValueError, match="no contraction fitted for order 2, center_type 6"):
        calc.compute(density=_random_density(rng, n_radial=3, center_types=(6,)))


# ----------------------------------------------------------------------------- errors


def test_memory_budget_error_says_what_to_change(rng):
    dens = _random_density(rng, lmax=2, n_radial=4, species=(1, 6, 8))
    calc = ncsym.DensityCorrelations(expansion={"max_angular": 2}, correlation_order=4, memory_budget=2**20)
    with pytest.raises(ValueError, match="needs .* GiB but `memory_budget` is .*pass `contraction=`"):
        calc.compute(density=dens)


def test_mismatched_hyperparameters(rng):
    dens = _random_density(rng, lmax=2)
    with pytest.raises(ValueError, match="computed with max_angular=2 but `expansion` has max_angular=3"):
        ncsym.EquivariantPowerSpectrum({"max_angular": 3}).compute(density=dens)
    dens.hypers = {"max_angular": 2, "cutoff": 5.0}
    with pytest.raises(ValueError, match="other hyperparameters than `expansion` \\(cutoff: 5.0 != 4.0\\)"):
        ncsym.EquivariantPowerSpectrum({"max_angular": 2, "cutoff": 4.0}).compute(density=dens)
    with pytest.raises(ValueError, match="different species \\[1, 8\\] and \\[1, 6\\]"):
        ncsym.EquivariantPowerSpectrum({"max_angular": 2, "species": [1, 8]}, {"max_angular": 2, "species": [1, 6]})
    d1, d2 = _random_density(rng), _random_density(rng, species=(1, 6))
    with pytest.raises(ValueError, match="different species \\[1, 8\\] and \\[1, 6\\]"):
        ncsym.EquivariantPowerSpectrum({"max_angular": 2}, {"max_angular": 2}).compute(density=d1, density_2=d2)
    with pytest.raises(ValueError, match="pass `density_2=` too"):
        ncsym.EquivariantPowerSpectrum({"max_angular": 2}, {"max_angular": 2}).compute(density=d1)


def test_invalid_arguments(rng):
    hypers = {"max_angular": 2}
    with pytest.raises(ValueError, match="`max_lambda` must be <= correlation_order \\* max_angular = 4"):
        ncsym.DensityCorrelations(expansion=hypers, correlation_order=2, max_lambda=5)
    with pytest.raises(ValueError, match="asks for o3_lambda=9, outside the reachable range 0..6"):
        ncsym.DensityCorrelations(expansion=hypers, correlation_order=3, selected_keys=[(9, 1)])
    with pytest.raises(ValueError, match="`correlation_order` must be >= 1"):
        ncsym.DensityCorrelations(expansion=hypers, correlation_order=0)
    with pytest.raises(ValueError, match="correlation_order=2 has none"):
        ncsym.DensityCorrelations(expansion=hypers, correlation_order=2, contraction=4)
    with pytest.raises(ValueError, match="variance fraction in \\(0, 1\\]"):
        ncsym.DensityCorrelations(expansion=hypers, correlation_order=3, contraction=1.5)
    with pytest.raises(ValueError, match="must include `max_angular`"):
        ncsym.DensityCorrelations(expansion={"cutoff": 4.0}, correlation_order=2)
    with pytest.raises(TypeError, match="must be a SphericalExpansion or a dict"):
        ncsym.DensityCorrelations(expansion=4, correlation_order=2)
    with pytest.raises(ValueError, match="invalid `backend`"):
        ncsym.DensityCorrelations(expansion=hypers, correlation_order=2, backend="gpu")
    calc = ncsym.DensityCorrelations(expansion=hypers, correlation_order=2)
    with pytest.raises(ValueError, match="exactly one of `frames` and `density=`"):
        calc.compute()
    with pytest.raises(TypeError, match="must be a DenseExpansion"):
        calc.compute(density=np.zeros((2, 9, 1, 1)))
    with pytest.raises(ValueError, match="`fit` is only needed with `contraction=`"):
        calc.fit(density=_random_density(rng))
