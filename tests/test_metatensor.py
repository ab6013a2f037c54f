"""metatensor interop: BlockMap <-> TensorMap round trips for every block set, ``.mts`` files,
and layouts that featomic / metatensor-operations users can consume directly."""

import json

import numpy as np
import pytest
from _pipeline_calculators import HistogramHarmonics, assert_blockmaps_equal, mixed_frames, water_frames

from ncsym.blocks import Block, BlockMap, Labels, concatenate_blocks
from ncsym.pipeline import compute_chunked, iter_chunks, load_features, load_metatensor, save_metatensor

metatensor = pytest.importorskip("metatensor")

#: Metadata names of DESIGN.md ("Data layout"), shared with metatensor/featomic.
KEY_NAMES = {
    "o3_lambda",
    "o3_sigma",
    "center_type",
    "neighbor_type",
    "first_atom_type",
    "second_atom_type",
    "block_type",
}
SAMPLE_NAMES = {"system", "atom", "first_atom", "second_atom", "cell_shift_a", "cell_shift_b", "cell_shift_c"}


def roundtrip(bm: BlockMap) -> BlockMap:
    return BlockMap.from_metatensor(bm.to_metatensor())


def check_tensor_layout(bm: BlockMap, tensor) -> None:
    """The TensorMap carries exactly the BlockMap's metadata, with an ``o3_mu`` component."""
    assert tensor.keys.names == list(bm.keys.names)
    np.testing.assert_array_equal(np.asarray(tensor.keys.values), bm.keys.values)
    for block, ours in zip(tensor.blocks(), bm.blocks, strict=True):
        lam = ours.o3_lambda
        assert block.samples.names == list(ours.samples.names)
        assert block.properties.names == list(ours.properties.names)
        assert [c.names for c in block.components] == [["o3_mu"]]
        np.testing.assert_array_equal(
            np.asarray(block.components[0].values).ravel(), np.arange(-lam, lam + 1)
        )
        np.testing.assert_array_equal(np.asarray(block.values), ours.values)


@pytest.fixture
def features():
    return HistogramHarmonics(species=(1, 6, 7, 8)).compute(mixed_frames(7))


def test_roundtrip_density_like(features):
    tensor = features.to_metatensor()
    check_tensor_layout(features, tensor)
    assert_blockmaps_equal(features, roundtrip(features))
    assert set(features.keys.names) <= KEY_NAMES
    assert all(set(b.samples.names) <= SAMPLE_NAMES for b in features.blocks)


def test_layout_matches_featomic():
    """Key, sample, component and property names are featomic's SphericalExpansion ones."""
    featomic = pytest.importorskip("featomic")
    frames = water_frames(2)
    ref = featomic.SphericalExpansion(
        cutoff={"radius": 3.0, "smoothing": {"type": "ShiftedCosine", "width": 0.5}},
        density={"type": "Gaussian", "width": 0.3},
        basis={"type": "TensorProduct", "max_angular": 2, "radial": {"type": "Gto", "max_radial": 3}},
    ).compute(frames)
    ours = HistogramHarmonics(species=(1, 8), n_bins=4).compute(frames).to_metatensor()
    assert ours.keys.names == ref.keys.names
    assert len(ours.keys) == len(ref.keys)  # the same blocks (featomic orders them differently)
    for key, b in ref.items():
        a = ours.block(key)
        assert a.samples == b.samples
        assert a.components == b.components
        assert a.properties.names == b.properties.names
        assert a.values.shape == b.values.shape


def test_roundtrip_edge_cases():
    keys = Labels(("o3_lambda", "o3_sigma", "center_type"), [[0, 1, 1], [2, -1, 8]])
    props = ("neighbor_1_type", "n_1", "l_1")
    blocks = [
        Block(np.zeros((0, 1, 1)), Labels(("system", "atom"), np.zeros((0, 2))), Labels(props, [[1, 0, 0]])),
        Block(
            np.random.default_rng(0).normal(size=(4, 5, 2)),
            Labels(("system", "atom"), [[0, 0], [0, 2], [3, 1], [3, 5]]),
            Labels(props, [[1, 0, 2], [8, 3, 1]]),
        ),
    ]
    bm = BlockMap(keys, blocks, {"note": "edge"})
    assert_blockmaps_equal(bm, roundtrip(bm))


def test_roundtrip_pair_like_samples():
    """Pair blocks: samples (system, first_atom, second_atom, cell shifts)."""
    rng = np.random.default_rng(1)
    names = ("system", "first_atom", "second_atom", "cell_shift_a", "cell_shift_b", "cell_shift_c")
    samples = Labels(names, [[0, 0, 1, 0, 0, 0], [0, 1, 0, -1, 0, 2], [2, 3, 3, 1, 1, 1]])
    keys = Labels(
        ("o3_lambda", "o3_sigma", "first_atom_type", "second_atom_type", "block_type"), [[1, 1, 1, 8, 2]]
    )
    bm = BlockMap(keys, [Block(rng.normal(size=(3, 3, 4)), samples, Labels.range("n", 4))])
    assert_blockmaps_equal(bm, roundtrip(bm))
    check_tensor_layout(bm, bm.to_metatensor())


def test_roundtrip_coupled_hamiltonian_blocks():
    """Coupled Hamiltonian blocks (ncsym.hamiltonian) survive the round trip."""
    coupling = pytest.importorskip("ncsym.hamiltonian.coupling")
    from ncsym.hamiltonian.blocks import matrix_to_blocks

    frame = water_frames(1)[0]
    orbitals = {1: [(1, 0), (2, 0)], 8: [(1, 0), (2, 0), (2, 1)]}
    n_ao = 5 + 2 * 2
    a = np.random.default_rng(2).normal(size=(n_ao, n_ao))
    coupled = coupling.couple_blocks(matrix_to_blocks(a + a.T, frame, orbitals))
    assert {"o3_lambda", "o3_sigma", "block_type", "first_atom_type", "second_atom_type"} <= set(
        coupled.keys.names
    )
    assert all(b.samples.names == ("system", "first_atom", "second_atom") for b in coupled.blocks)
    back = roundtrip(coupled)
    assert_blockmaps_equal(coupled, back)
    check_tensor_layout(coupled, coupled.to_metatensor())


def _real_calculators():
    """ncsym's own calculators, when their modules are available."""
    frames = water_frames(3)
    out = []
    try:
        from ncsym.density import SphericalExpansion
    except ImportError:
        return out
    hypers = dict(cutoff=3.0, max_radial=2, max_angular=2, species=[1, 8])
    out.append(("density", SphericalExpansion(**hypers), frames))
    try:
        from ncsym.acdc import DensityCorrelations

        out.append(
            ("acdc", DensityCorrelations(expansion=SphericalExpansion(**hypers), correlation_order=2), frames)
        )
    except ImportError:
        pass
    try:
        from ncsym.pairs import PairFeatures, hamiltonian_features
    except ImportError:
        return out
    small = dict(cutoff=3.0, max_radial=2, max_angular=1, species=[1, 8])
    out.append(("pair", PairFeatures(nu_onsite=2, nu_pair=1, **small), frames))

    class Hamiltonian:
        def compute(self, frames):
            return hamiltonian_features(frames, nu_onsite=1, nu_pair=0, **small)

    out.append(("hamiltonian", Hamiltonian(), frames))
    return out


def test_roundtrip_real_calculators():
    calcs = _real_calculators()
    if not calcs:
        pytest.skip("ncsym.density is not available yet")
    for name, calc, frames in calcs:
        bm = calc.compute(frames)
        assert set(bm.keys.names) <= KEY_NAMES, name
        assert all(set(b.samples.names) <= SAMPLE_NAMES for b in bm.blocks), name
        check_tensor_layout(bm, bm.to_metatensor())
        assert_blockmaps_equal(bm, roundtrip(bm))


def test_save_load_metatensor(tmp_path, features):
    path = save_metatensor(features, tmp_path / "f.mts")
    assert path.exists() and [p.name for p in tmp_path.iterdir()] == ["f.mts"]
    tensor = metatensor.load(path)
    assert json.loads(tensor.info()["ncsym"]) == features.info
    loaded = load_metatensor(path)
    assert_blockmaps_equal(features, loaded)
    assert loaded.info == features.info
    with pytest.raises(ValueError, match="`path` must end in '.mts', got"):
        save_metatensor(features, tmp_path / "f.npz")
    with pytest.raises(TypeError, match="`blockmap` must be an ncsym.BlockMap, got dict"):
        save_metatensor({}, tmp_path / "g.mts")
    (tmp_path / "bad.mts").write_bytes(b"not a zip")
    with pytest.raises(ValueError, match="is not a readable metatensor file"):
        load_metatensor(tmp_path / "bad.mts")


def test_from_metatensor_rejects_extra_components(features):
    block = metatensor.TensorBlock(
        values=np.zeros((1, 1, 1, 1)),
        samples=metatensor.Labels(["system"], np.array([[0]], dtype=np.int32)),
        components=[metatensor.Labels([n], np.array([[0]], dtype=np.int32)) for n in ("a", "b")],
        properties=metatensor.Labels(["n"], np.array([[0]], dtype=np.int32)),
    )
    tensor = metatensor.TensorMap(metatensor.Labels(["k"], np.array([[0]], dtype=np.int32)), [block])
    with pytest.raises(ValueError, match="exactly one component axis"):
        BlockMap.from_metatensor(tensor)


def test_streamed_mts_equals_metatensor_save(tmp_path):
    """The block-by-block .mts writer produces what metatensor.save writes for the same data."""
    ops = pytest.importorskip("metatensor.operations")
    calc = HistogramHarmonics(species=(1, 6, 7, 8))
    frames = water_frames(3) + mixed_frames(9)
    compute_chunked(calc, frames, chunk_size=4, output=tmp_path / "streamed.mts", progress=False)
    save_metatensor(calc.compute(frames), tmp_path / "direct.mts")
    a = metatensor.load(tmp_path / "streamed.mts")
    b = metatensor.load(tmp_path / "direct.mts")
    assert ops.equal(a, b)
    assert json.loads(a.info()["ncsym"]) == json.loads(b.info()["ncsym"])


def test_chunks_join_like_metatensor_operations(tmp_path):
    """Per-chunk outputs joined by metatensor-operations equal ncsym's concatenation."""
    ops = pytest.importorskip("metatensor.operations")
    calc = HistogramHarmonics(species=(1, 6, 7, 8))
    frames = water_frames(2) + mixed_frames(8)
    compute_chunked(calc, frames, chunk_size=3, output=tmp_path / "d", progress=False)
    chunks = list(iter_chunks(tmp_path / "d"))
    joined = ops.join([c.to_metatensor() for c in chunks], axis="samples", different_keys="union")
    ours = concatenate_blocks(chunks).to_metatensor()
    joined = ops.sort(joined)
    assert ops.equal(joined, ops.sort(ours))
    assert_blockmaps_equal(load_features(tmp_path / "d"), BlockMap.from_metatensor(ours))
