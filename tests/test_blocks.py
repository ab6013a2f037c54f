"""Tests of the block containers (:mod:`ncsym.blocks`): labels, blocks, block maps, save/load,
concatenation of chunked results, and their error messages."""

import zipfile

import numpy as np
import pytest

from ncsym.blocks import Block, BlockMap, Labels, concatenate_blocks, concatenate_labels, merge_key_order

KEY_NAMES = ("o3_lambda", "o3_sigma", "center_type")


def make_map(n_systems=3, keys=((0, 1, 1), (1, 1, 1), (1, -1, 8)), seed=0, n_props=2, info=None):
    """Blocks with one sample per (system, atom) and random values."""
    rng = np.random.default_rng(seed)
    blocks = []
    for lam, _, center in keys:
        atoms = 2 if center == 1 else 1
        samples = np.array([(s, a) for s in range(n_systems) for a in range(atoms)], dtype=np.int32)
        samples = samples.reshape(-1, 2)
        blocks.append(
            Block(
                rng.normal(size=(len(samples), 2 * lam + 1, n_props)),
                Labels(("system", "atom"), samples),
                Labels.range("n", n_props),
            )
        )
    return BlockMap(Labels(KEY_NAMES, np.array(keys, dtype=np.int32).reshape(-1, 3)), blocks, info)


def assert_maps_equal(a, b):
    assert a.keys == b.keys
    for x, y in zip(a.blocks, b.blocks, strict=True):
        assert x.samples == y.samples and x.properties == y.properties
        np.testing.assert_array_equal(x.values, y.values)


# ----------------------------------------------------------------------------- Labels
def test_labels_basics():
    lab = Labels(("system", "atom"), [[0, 1], [0, 2], [3, 0]])
    assert len(lab) == 3 and lab.names == ("system", "atom")
    assert lab.values.dtype == np.int32 and not lab.values.flags.writeable
    np.testing.assert_array_equal(lab["atom"], [1, 2, 0])
    assert list(lab) == [(0, 1), (0, 2), (3, 0)]
    assert lab.position((0, 2)) == 1 and lab.position((9, 9)) is None
    assert lab.as_dict(2) == {"system": 3, "atom": 0}
    assert lab == Labels(("system", "atom"), np.array([[0, 1], [0, 2], [3, 0]]))
    assert lab != Labels(("system", "other"), [[0, 1], [0, 2], [3, 0]])
    assert "n=3" in repr(lab)
    assert Labels("n", [0, 1, 2]) == Labels.range("n", 3)
    assert Labels.single().names == ("_",) and len(Labels.single()) == 1
    assert Labels(("a", "b"), []).values.shape == (0, 2)
    assert Labels(("a",), np.array([[1.0], [2.0]])).values.tolist() == [[1], [2]]


def test_labels_columns():
    lab = Labels(("system", "atom"), [[0, 1], [2, 3]])
    more = lab.append_column("shift", 5)
    assert more.names == ("system", "atom", "shift") and more["shift"].tolist() == [5, 5]
    swapped = lab.select_columns(["atom", "system"])
    assert swapped.values.tolist() == [[1, 0], [3, 2]]
    assert Labels(("a", "b"), []).select_columns(["b"]).values.shape == (0, 1)
    joined = concatenate_labels([lab, Labels(("system", "atom"), [[5, 5]])])
    assert joined.values.tolist() == [[0, 1], [2, 3], [5, 5]]


def test_labels_errors():
    with pytest.raises(ValueError, match="`names` must be unique, got \\('a', 'a'\\)"):
        Labels(("a", "a"), [[1, 2]])
    with pytest.raises(ValueError, match="`values` must have shape \\(n, 2\\)"):
        Labels(("a", "b"), [[1, 2, 3]])
    with pytest.raises(TypeError, match="`values` must be integers, got dtype float64"):
        Labels(("a",), [[1.5]])
    with pytest.raises(KeyError, match="no column `b` in labels with names \\('a',\\)"):
        Labels(("a",), [[1]]).column("b")
    with pytest.raises(ValueError, match="cannot concatenate labels with names"):
        concatenate_labels([Labels(("a",), [[1]]), Labels(("b",), [[1]])])
    with pytest.raises(TypeError, match="not hashable"):
        hash(Labels(("a",), [[1]]))


def test_labels_reject_values_outside_int32():
    with pytest.raises(ValueError, match="must fit in int32"):
        Labels(("a",), np.array([[2**40]], dtype=np.int64))


# ----------------------------------------------------------------------------- Block and BlockMap
def test_block_errors():
    s, p = Labels.range("s", 2), Labels.range("n", 1)
    with pytest.raises(
        ValueError, match="`values` must have shape \\(n_samples, 2 lambda \\+ 1, n_properties\\)"
    ):
        Block(np.zeros((2, 1)), s, p)
    with pytest.raises(ValueError, match="component axis must have odd size 2 lambda \\+ 1, got 2"):
        Block(np.zeros((2, 2, 1)), s, p)
    with pytest.raises(TypeError, match="`samples` and `properties` must be ncsym.Labels"):
        Block(np.zeros((2, 1, 1)), [[0], [1]], p)
    with pytest.raises(ValueError, match="3 samples for values of shape \\(2, 1, 1\\)"):
        Block(np.zeros((2, 1, 1)), Labels.range("s", 3), p)
    with pytest.raises(ValueError, match="2 properties for values of shape \\(2, 1, 1\\)"):
        Block(np.zeros((2, 1, 1)), s, Labels.range("n", 2))
    b = Block(np.ones((2, 5, 1)), s, p)
    assert b.o3_lambda == 2 and "Block(values=(2, 5, 1)" in repr(b)
    c = b.copy()
    c.values[0, 0, 0] = 7
    assert b.values[0, 0, 0] == 1


def test_blockmap_selection():
    bm = make_map()
    assert len(bm) == 3 and "3 blocks" in repr(bm)
    assert bm.find(o3_lambda=1) == [1, 2]
    assert bm.block(o3_lambda=1, center_type=8) is bm.blocks[2]
    assert bm.get(o3_lambda=5) is None and bm.get(o3_lambda=1) is None
    assert [key for key, _ in bm.items()][0] == {"o3_lambda": 0, "o3_sigma": 1, "center_type": 1}
    assert len(list(bm)) == 3
    with pytest.raises(
        ValueError, match="selection \\{'o3_lambda': 1\\} matches 2 blocks, expected exactly one"
    ):
        bm.block(o3_lambda=1)
    with pytest.raises(KeyError, match="no column `q`"):
        bm.find(q=1)


def test_blockmap_errors():
    bm = make_map()
    with pytest.raises(TypeError, match="`keys` must be ncsym.Labels"):
        BlockMap([[0]], bm.blocks[:1])
    with pytest.raises(ValueError, match="3 keys for 2 blocks"):
        BlockMap(bm.keys, bm.blocks[:2])
    with pytest.raises(TypeError, match="every block must be ncsym.Block, got ndarray"):
        BlockMap(Labels(("k",), [[0]]), [np.zeros((1, 1, 1))])


# ----------------------------------------------------------------------------- save / load
def test_save_load_roundtrip(tmp_path):
    bm = make_map(info={"cutoff": 4.0, "species": [1, 8]})
    bm.save(tmp_path / "f.npz")
    back = BlockMap.load(tmp_path / "f.npz")
    assert_maps_equal(bm, back)
    assert back.info == {"cutoff": 4.0, "species": [1, 8]}
    bm.save(tmp_path / "g")  # the suffix is added
    assert_maps_equal(bm, BlockMap.load(tmp_path / "g.npz"))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["f.npz", "g.npz"]  # no temporaries


def test_save_load_empty_blocks_and_no_keys(tmp_path):
    empty = BlockMap(
        Labels(KEY_NAMES, [[0, 1, 1]]),
        [Block(np.zeros((0, 1, 3)), Labels(("system", "atom"), []), Labels.range("n", 3))],
    )
    empty.save(tmp_path / "e.npz")
    back = BlockMap.load(tmp_path / "e.npz")
    assert back.blocks[0].values.shape == (0, 1, 3) and back.blocks[0].samples.names == ("system", "atom")
    none = BlockMap(Labels(KEY_NAMES, []), [])
    none.save(tmp_path / "n.npz")
    assert len(BlockMap.load(tmp_path / "n.npz")) == 0


def test_load_errors(tmp_path):
    with pytest.raises(ValueError, match="is not a valid ncsym block file"):
        BlockMap.load(tmp_path / "missing.npz")
    np.savez(tmp_path / "other.npz", a=np.zeros(3))
    with pytest.raises(ValueError, match="other.npz' is not a valid ncsym block file"):
        BlockMap.load(tmp_path / "other.npz")
    np.savez(tmp_path / "v2.npz", format_version=np.array(2))
    with pytest.raises(ValueError, match="unsupported block file format version 2"):
        BlockMap.load(tmp_path / "v2.npz")
    make_map().save(tmp_path / "cut.npz")
    data = (tmp_path / "cut.npz").read_bytes()
    (tmp_path / "cut.npz").write_bytes(data[: len(data) // 2])
    with pytest.raises((ValueError, zipfile.BadZipFile)):
        BlockMap.load(tmp_path / "cut.npz")


def test_load_truncated_file_raises_value_error(tmp_path):
    make_map().save(tmp_path / "cut.npz")
    data = (tmp_path / "cut.npz").read_bytes()
    (tmp_path / "cut.npz").write_bytes(data[: len(data) // 2])
    with pytest.raises(ValueError, match="is not a valid ncsym block file"):
        BlockMap.load(tmp_path / "cut.npz")


# ----------------------------------------------------------------------------- concatenation
def test_concatenate_with_offsets_equals_one_map():
    whole = make_map(n_systems=5, seed=3)
    # split by system: 0-1, 2-4, re-numbered from 0 in each part (as a calculator would)
    parts = []
    for lo, hi in [(0, 2), (2, 5)]:
        blocks = []
        for b in whole.blocks:
            mask = (b.samples["system"] >= lo) & (b.samples["system"] < hi)
            s = b.samples.values[mask].copy()
            s[:, 0] -= lo
            blocks.append(Block(b.values[mask], Labels(b.samples.names, s), b.properties))
        parts.append(BlockMap(whole.keys, blocks, whole.info))
    assert_maps_equal(whole, concatenate_blocks(parts, system_offsets=[0, 2]))
    # consume=True gives the same result and empties the inputs (their blocks are released)
    assert_maps_equal(whole, concatenate_blocks(parts, system_offsets=[0, 2], consume=True))
    assert all(len(p) == 0 and p.blocks == [] for p in parts)


def test_concatenate_key_union_order():
    a = make_map(keys=((0, 1, 1), (1, 1, 1)))
    b = make_map(keys=((0, 1, 1), (0, 1, 8), (1, 1, 1)))
    out = concatenate_blocks([a, b], system_offsets=[0, 3])
    assert out.keys.values.tolist() == [[0, 1, 1], [0, 1, 8], [1, 1, 1]]  # sorted union
    assert out.block(o3_lambda=0, center_type=8).samples["system"].tolist() == [3, 4, 5]
    assert out.block(o3_lambda=0, center_type=1).samples["system"].tolist() == [
        0,
        0,
        1,
        1,
        2,
        2,
        3,
        3,
        4,
        4,
        5,
        5,
    ]
    # unsorted inputs: order of first appearance
    c = make_map(keys=((1, 1, 1), (0, 1, 1)))
    d = make_map(keys=((0, 1, 8),))
    assert concatenate_blocks([c, d]).keys.values.tolist() == [[1, 1, 1], [0, 1, 1], [0, 1, 8]]
    # one map: unchanged
    assert_maps_equal(a, concatenate_blocks([a]))


def test_merge_key_order():
    # the calculator's order (lambda up, sigma down, centre up) is recovered from subsets
    full = [(0, 1, 1), (0, 1, 8), (1, 1, 1), (1, 1, 8), (1, -1, 1), (1, -1, 8), (2, 1, 8)]
    parts = [[full[i] for i in idx] for idx in ([0, 2, 4], [1, 3, 5, 6], [2, 3, 4])]
    assert merge_key_order([np.array(p) for p in parts]).tolist() == [list(k) for k in full]
    # no lexicographic order fits: each list's relative order is kept
    assert merge_key_order([np.array([[3], [1]]), np.array([[1], [2]])]).tolist() == [[3], [1], [2]]
    # contradictory lists: first appearance
    assert merge_key_order([np.array([[1, 0], [2, 0]]), np.array([[2, 0], [1, 0]])]).tolist() == [
        [1, 0],
        [2, 0],
    ]
    same = np.array([[5, 1], [2, 2]])
    assert merge_key_order([same, same]).tolist() == same.tolist()
    with pytest.raises(ValueError, match="at least one key array"):
        merge_key_order([])


def test_concatenate_errors():
    a = make_map()
    with pytest.raises(ValueError, match="`blockmaps` must contain at least one BlockMap"):
        concatenate_blocks([])
    with pytest.raises(TypeError, match="`blockmaps` must contain ncsym.BlockMap, got dict at position 1"):
        concatenate_blocks([a, {}])
    with pytest.raises(ValueError, match="`system_offsets` must have one entry per block map \\(2\\), got 1"):
        concatenate_blocks([a, a], system_offsets=[0])
    other = BlockMap(Labels(("o3_lambda",), [[0]]), a.blocks[:1])
    with pytest.raises(ValueError, match="cannot concatenate block maps with key names"):
        concatenate_blocks([a, other])
    more_props = make_map(n_props=3)
    with pytest.raises(ValueError, match="properties differ between map 0 and map 1"):
        concatenate_blocks([a, more_props])
    renamed = BlockMap(
        a.keys,
        [Block(b.values, Labels(("structure", "atom"), b.samples.values), b.properties) for b in a.blocks],
    )
    with pytest.raises(ValueError, match="sample names \\('system', 'atom'\\) and \\('structure', 'atom'\\)"):
        concatenate_blocks([a, renamed])
    with pytest.raises(ValueError, match="has no `system` sample column"):
        concatenate_blocks([renamed, renamed], system_offsets=[0, 3])
    wrong_lambda = BlockMap(
        Labels(KEY_NAMES, [[0, 1, 1]]),
        [Block(np.zeros((1, 3, 2)), Labels(("system", "atom"), [[0, 0]]), Labels.range("n", 2))],
    )
    with pytest.raises(ValueError, match="component sizes 1 and 3"):
        concatenate_blocks([a, wrong_lambda])
