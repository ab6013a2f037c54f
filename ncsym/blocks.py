"""Equivariant block containers shared by every ncsym feature.

A :class:`Block` holds ``values`` of shape ``(n_samples, 2 lambda + 1, n_properties)``
(float64) with named integer :class:`Labels` for samples and properties; the middle axis is
``o3_mu = -lambda .. lambda``.  A :class:`BlockMap` is a list of blocks addressed by key
:class:`Labels` (``o3_lambda``, ``o3_sigma``, ``center_type``, ...), mirroring metatensor's
``TensorMap`` so that features can be exported with :meth:`BlockMap.to_metatensor`.
"""

from __future__ import annotations

import json
import os
import zipfile
from collections.abc import Iterable, Iterator, Sequence

import numpy as np

from ._cache import atomic_save

__all__ = ["Labels", "Block", "BlockMap"]

_FORMAT_VERSION = 1


class Labels:
    """Named integer columns (like metatensor's ``Labels``).

    Parameters
    ----------
    names : sequence of str
        Column names, e.g. ``("system", "atom")``.
    values : array_like of int, shape (n_entries, len(names))
        One row per entry.
    """

    __slots__ = ("names", "values", "_index")

    def __init__(self, names: Sequence[str] | str, values) -> None:
        if isinstance(names, str):
            names = (names,)
        names = tuple(str(n) for n in names)
        if len(set(names)) != len(names):
            raise ValueError(f"`names` must be unique, got {names}")
        arr = np.asarray(values)
        if arr.size == 0:
            arr = np.zeros((0, len(names)), dtype=np.int32)
        if arr.ndim == 1 and len(names) == 1:
            arr = arr.reshape(-1, 1)
        if arr.ndim != 2 or arr.shape[1] != len(names):
            raise ValueError(f"`values` must have shape (n, {len(names)}) for names {names}, got {arr.shape}")
        if arr.dtype.kind not in "iu":
            if arr.dtype.kind == "f" and np.all(arr == np.round(arr)):
                arr = arr.astype(np.int64)
            else:
                raise TypeError(f"`values` must be integers, got dtype {arr.dtype}")
        if arr.size and (arr.min() < np.iinfo(np.int32).min or arr.max() > np.iinfo(np.int32).max):
            raise ValueError(
                f"`values` must fit in int32, got values in [{arr.min()}, {arr.max()}] for names {names}"
            )
        arr = np.ascontiguousarray(arr, dtype=np.int32)
        arr.flags.writeable = False
        self.names = names
        self.values = arr
        self._index = None

    @classmethod
    def single(cls) -> Labels:
        """One entry ``_ = 0``, for blocks without meaningful properties."""
        return cls(("_",), np.zeros((1, 1), dtype=np.int32))

    @classmethod
    def range(cls, name: str, n: int) -> Labels:
        """``name = 0 .. n-1``."""
        return cls((name,), np.arange(n, dtype=np.int32).reshape(-1, 1))

    def __len__(self) -> int:
        return self.values.shape[0]

    def __iter__(self) -> Iterator[tuple[int, ...]]:
        for row in self.values:
            yield tuple(int(v) for v in row)

    def __getitem__(self, name: str) -> np.ndarray:
        return self.column(name)

    def column(self, name: str) -> np.ndarray:
        """The column called ``name``, shape (n_entries,)."""
        try:
            return self.values[:, self.names.index(name)]
        except ValueError:
            raise KeyError(f"no column `{name}` in labels with names {self.names}") from None

    def position(self, entry: Sequence[int]) -> int | None:
        """Row index of ``entry`` (a tuple of ints), or ``None``."""
        if self._index is None:
            self._index = {tuple(int(v) for v in row): i for i, row in enumerate(self.values)}
        return self._index.get(tuple(int(v) for v in entry))

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Labels):
            return NotImplemented
        return self.names == other.names and np.array_equal(self.values, other.values)

    def __hash__(self):  # pragma: no cover - labels are not hashable containers
        raise TypeError("Labels are not hashable")

    def __repr__(self) -> str:
        return f"Labels(names={self.names}, n={len(self)})"

    def append_column(self, name: str, value) -> Labels:
        """A copy with one more column (scalar broadcast or array)."""
        col = np.broadcast_to(np.asarray(value, dtype=np.int32), (len(self),)).reshape(-1, 1)
        return Labels(self.names + (name,), np.hstack([self.values, col]))

    def select_columns(self, names: Sequence[str]) -> Labels:
        """A copy with only ``names`` (in that order)."""
        return Labels(
            tuple(names),
            np.stack([self.column(n) for n in names], axis=1)
            if len(self)
            else np.zeros((0, len(names)), dtype=np.int32),
        )

    def as_dict(self, i: int) -> dict:
        """Entry ``i`` as ``{name: value}``."""
        return {n: int(v) for n, v in zip(self.names, self.values[i], strict=True)}


class Block:
    """One equivariant block.

    Parameters
    ----------
    values : ndarray of float64, shape (n_samples, 2 lambda + 1, n_properties)
        Middle axis is ``o3_mu = -lambda .. lambda``.
    samples : Labels
        One entry per sample (e.g. ``system, atom``).
    properties : Labels
        One entry per property (e.g. ``n``).
    """

    __slots__ = ("values", "samples", "properties")

    def __init__(self, values: np.ndarray, samples: Labels, properties: Labels) -> None:
        values = np.asarray(values)
        if values.ndim != 3:
            raise ValueError(
                f"`values` must have shape (n_samples, 2 lambda + 1, n_properties), got {values.shape}"
            )
        if values.shape[1] % 2 != 1:
            raise ValueError(f"component axis must have odd size 2 lambda + 1, got {values.shape[1]}")
        if not isinstance(samples, Labels) or not isinstance(properties, Labels):
            raise TypeError("`samples` and `properties` must be ncsym.Labels")
        if len(samples) != values.shape[0]:
            raise ValueError(f"{len(samples)} samples for values of shape {values.shape}")
        if len(properties) != values.shape[2]:
            raise ValueError(f"{len(properties)} properties for values of shape {values.shape}")
        self.values = values
        self.samples = samples
        self.properties = properties

    @property
    def o3_lambda(self) -> int:
        """Angular order, from the component axis."""
        return (self.values.shape[1] - 1) // 2

    def __repr__(self) -> str:
        return (
            f"Block(values={self.values.shape}, samples={self.samples.names}, "
            f"properties={self.properties.names})"
        )

    def copy(self) -> Block:
        return Block(self.values.copy(), self.samples, self.properties)


class BlockMap:
    """A set of :class:`Block` addressed by key labels.

    Parameters
    ----------
    keys : Labels
        One entry per block, e.g. ``(o3_lambda, o3_sigma, center_type, neighbor_type)``.
    blocks : list of Block
        Same length and order as ``keys``.
    info : dict, optional
        JSON-serialisable metadata (hyperparameters, species list) kept on save/load.
    """

    def __init__(self, keys: Labels, blocks: Sequence[Block], info: dict | None = None) -> None:
        if not isinstance(keys, Labels):
            raise TypeError("`keys` must be ncsym.Labels")
        blocks = list(blocks)
        if len(keys) != len(blocks):
            raise ValueError(f"{len(keys)} keys for {len(blocks)} blocks")
        for b in blocks:
            if not isinstance(b, Block):
                raise TypeError(f"every block must be ncsym.Block, got {type(b).__name__}")
        self.keys = keys
        self.blocks = blocks
        self.info = dict(info or {})

    def __len__(self) -> int:
        return len(self.blocks)

    def __iter__(self) -> Iterator[tuple[dict, Block]]:
        return self.items()

    def items(self) -> Iterator[tuple[dict, Block]]:
        """Iterate over ``(key as dict, block)``."""
        for i, b in enumerate(self.blocks):
            yield self.keys.as_dict(i), b

    def __repr__(self) -> str:
        return f"BlockMap({len(self)} blocks, keys={self.keys.names})"

    def find(self, **selection: int) -> list[int]:
        """Indices of blocks whose keys match every ``name=value`` in ``selection``."""
        mask = np.ones(len(self), dtype=bool)
        for name, value in selection.items():
            mask &= self.keys.column(name) == value
        return [int(i) for i in np.nonzero(mask)[0]]

    def block(self, **selection: int) -> Block:
        """The single block matching ``selection``; ``ValueError`` if not exactly one."""
        found = self.find(**selection)
        if len(found) != 1:
            raise ValueError(
                f"selection {selection} matches {len(found)} blocks, expected exactly one "
                f"(keys names {self.keys.names})"
            )
        return self.blocks[found[0]]

    def get(self, **selection: int) -> Block | None:
        """The block matching ``selection`` or ``None``."""
        found = self.find(**selection)
        return self.blocks[found[0]] if len(found) == 1 else None

    # ------------------------------------------------------------------ I/O
    def save(self, path: str | os.PathLike) -> None:
        """Write to an ``.npz`` file atomically (temporary file + rename)."""
        arrays = {
            "format_version": np.array(_FORMAT_VERSION),
            "keys_names": np.array(json.dumps(self.keys.names)),
            "keys_values": self.keys.values,
            "info": np.array(json.dumps(self.info)),
        }
        for i, b in enumerate(self.blocks):
            arrays[f"b{i}_values"] = b.values
            arrays[f"b{i}_samples_names"] = np.array(json.dumps(b.samples.names))
            arrays[f"b{i}_samples"] = b.samples.values
            arrays[f"b{i}_properties_names"] = np.array(json.dumps(b.properties.names))
            arrays[f"b{i}_properties"] = b.properties.values
        path = os.fspath(path)
        if not path.endswith(".npz"):
            path += ".npz"
        atomic_save(path, arrays)

    @classmethod
    def load(cls, path: str | os.PathLike) -> BlockMap:
        """Read a file written by :meth:`save`."""
        try:
            with np.load(path, allow_pickle=False) as data:
                version = int(data["format_version"])
                if version != _FORMAT_VERSION:
                    raise ValueError(f"unsupported block file format version {version}")
                keys = Labels(tuple(json.loads(str(data["keys_names"]))), data["keys_values"])
                info = json.loads(str(data["info"]))
                blocks = []
                for i in range(len(keys)):
                    samples = Labels(
                        tuple(json.loads(str(data[f"b{i}_samples_names"]))), data[f"b{i}_samples"]
                    )
                    props = Labels(
                        tuple(json.loads(str(data[f"b{i}_properties_names"]))),
                        data[f"b{i}_properties"],
                    )
                    blocks.append(Block(np.array(data[f"b{i}_values"]), samples, props))
        except (KeyError, OSError, EOFError, json.JSONDecodeError, zipfile.BadZipFile) as exc:
            raise ValueError(f"`path` {os.fspath(path)!r} is not a valid ncsym block file: {exc}") from None
        return cls(keys, blocks, info)

    # ----------------------------------------------------------- metatensor
    def to_metatensor(self):
        """Export to a ``metatensor.TensorMap`` (needs the ``metatensor`` extra)."""
        try:
            import metatensor
        except ImportError:  # pragma: no cover - depends on environment
            raise ImportError(
                "to_metatensor needs metatensor-core: pip install 'ncsym[metatensor]'"
            ) from None

        def mt_labels(lab: Labels):
            return metatensor.Labels(list(lab.names), np.asarray(lab.values, dtype=np.int32))

        blocks = []
        for b in self.blocks:
            lam = b.o3_lambda
            comp = metatensor.Labels(["o3_mu"], np.arange(-lam, lam + 1, dtype=np.int32).reshape(-1, 1))
            blocks.append(
                metatensor.TensorBlock(
                    values=np.ascontiguousarray(b.values),
                    samples=mt_labels(b.samples),
                    components=[comp],
                    properties=mt_labels(b.properties),
                )
            )
        return metatensor.TensorMap(mt_labels(self.keys), blocks)

    @classmethod
    def from_metatensor(cls, tensor) -> BlockMap:
        """Import a ``metatensor.TensorMap`` whose blocks have one ``o3_mu`` component axis."""

        def labels(lab) -> Labels:
            return Labels(tuple(lab.names), np.asarray(lab.values))

        blocks = []
        for block in tensor.blocks():
            if len(block.components) != 1:
                raise ValueError(
                    f"blocks must have exactly one component axis (o3_mu), got {len(block.components)}"
                )
            blocks.append(Block(np.asarray(block.values), labels(block.samples), labels(block.properties)))
        return cls(labels(tensor.keys), blocks)


def concatenate_labels(labels: Iterable[Labels]) -> Labels:
    """Stack labels with identical names."""
    labels = list(labels)
    names = labels[0].names
    for lab in labels[1:]:
        if lab.names != names:
            raise ValueError(f"cannot concatenate labels with names {names} and {lab.names}")
    return Labels(names, np.vstack([lab.values for lab in labels]))


def concatenate_blocks(
    blockmaps: Sequence[BlockMap], system_offsets: Sequence[int] | None = None, *, consume: bool = False
) -> BlockMap:
    """Stack block maps computed on consecutive sets of structures into one.

    Used to join the results of chunked or distributed computations: the blocks of equal key
    are concatenated along the sample axis, in the order of ``blockmaps``.

    Parameters
    ----------
    blockmaps : sequence of BlockMap
        One map per chunk of structures.  All maps must share key names; blocks of equal key
        must share sample names, component size (``2 lambda + 1``) and properties (names and
        values).  A key missing from some maps contributes no samples from them.
    system_offsets : sequence of int, optional
        One integer per map, added to the ``system`` sample column of its blocks (e.g. the
        index of the chunk's first structure, for calculators that count structures from 0
        within each call).  ``None`` keeps sample labels as they are.
    consume : bool
        Release each input block as soon as it has been copied into the result (the input
        maps are left empty), so that the peak memory is the result plus one key's blocks
        instead of twice the features.  Keyword only.

    Returns
    -------
    BlockMap
        Keys: the union of the keys of ``blockmaps``, ordered by :func:`merge_key_order`
        (the calculator's own order when the maps reveal it).  ``info`` is the ``info`` of
        the first map.

    Raises
    ------
    TypeError
        If ``blockmaps`` holds something other than :class:`BlockMap`.
    ValueError
        If ``blockmaps`` is empty, metadata disagree between maps, ``system_offsets`` has the
        wrong length or offsets are given for blocks without a ``system`` sample column.
    """
    maps = list(blockmaps)
    if not maps:
        raise ValueError("`blockmaps` must contain at least one BlockMap, got an empty sequence")
    for i, m in enumerate(maps):
        if not isinstance(m, BlockMap):
            raise TypeError(
                f"`blockmaps` must contain ncsym.BlockMap, got {type(m).__name__} at position {i}"
            )
    if system_offsets is not None:
        offsets = [int(o) for o in system_offsets]
        if len(offsets) != len(maps):
            raise ValueError(
                f"`system_offsets` must have one entry per block map ({len(maps)}), got {len(offsets)}"
            )
    else:
        offsets = None
    names = maps[0].keys.names
    for i, m in enumerate(maps[1:], start=1):
        if m.keys.names != names:
            raise ValueError(
                f"cannot concatenate block maps with key names {names} and {m.keys.names} (map {i})"
            )

    union = merge_key_order([m.keys.values for m in maps])

    blocks = []
    for row in union:
        key = tuple(int(v) for v in row)
        parts: list[tuple[int, Block]] = []
        for i, m in enumerate(maps):
            pos = m.keys.position(key)
            if pos is not None:
                parts.append((i, m.blocks[pos]))
        ref = parts[0][1]
        for i, b in parts[1:]:
            if b.samples.names != ref.samples.names:
                raise ValueError(
                    f"block {dict(zip(names, key, strict=True))}: sample names {ref.samples.names} "
                    f"and {b.samples.names} (map {i}) differ"
                )
            if b.values.shape[1] != ref.values.shape[1]:
                raise ValueError(
                    f"block {dict(zip(names, key, strict=True))}: component sizes {ref.values.shape[1]} "
                    f"and {b.values.shape[1]} (map {i}) differ"
                )
            if b.properties != ref.properties:
                raise ValueError(
                    f"block {dict(zip(names, key, strict=True))}: properties differ between map "
                    f"{parts[0][0]} and map {i}; every chunk must be computed with the same "
                    "hyperparameters and species list"
                )
        samples = []
        for i, b in parts:
            values = b.samples.values
            if offsets is not None and offsets[i] != 0:
                if "system" not in b.samples.names:
                    raise ValueError(
                        f"`system_offsets` given but block {dict(zip(names, key, strict=True))} has no "
                        f"`system` sample column (sample names {b.samples.names})"
                    )
                values = values.copy()
                values[:, b.samples.names.index("system")] += offsets[i]
            samples.append(values)
        if len(parts) == 1 and (offsets is None or offsets[parts[0][0]] == 0):
            blocks.append(Block(ref.values, ref.samples, ref.properties))
        else:
            blocks.append(
                Block(
                    np.concatenate([b.values for _, b in parts], axis=0),
                    Labels(ref.samples.names, np.concatenate(samples, axis=0)),
                    ref.properties,
                )
            )
        if consume:
            del parts, ref, samples
            for m in maps:
                pos = m.keys.position(key)
                if pos is not None:
                    m.blocks[pos] = None
    info = maps[0].info
    if consume:
        for m in maps:
            m.keys, m.blocks = Labels(names, np.zeros((0, len(names)), dtype=np.int64)), []
    return BlockMap(Labels(names, union), blocks, info)


def merge_key_order(key_values: Sequence[np.ndarray]) -> np.ndarray:
    """Union of several key lists, in an order consistent with every one of them.

    Calculators list their keys in a fixed order (sorted on some columns, ascending or
    descending, e.g. ``o3_lambda`` up then ``o3_sigma`` down); chunks of structures may hold
    different subsets of the keys.  The union is sorted by the first lexicographic order
    (columns in their given priority first, ascending before descending) under which every
    list is sorted, which recovers the calculator's order of the full key set.  If no such
    order exists, keys are merged preserving each list's relative order (first appearance
    breaks ties).

    Parameters
    ----------
    key_values : sequence of ndarray of int, shape (n_keys_i, n_columns)
        Key rows of each map, in the map's order.

    Returns
    -------
    ndarray of int32, shape (n_union, n_columns)
    """
    import itertools

    lists = [np.asarray(v, dtype=np.int64).reshape(len(v), -1) for v in key_values]
    if not lists:
        raise ValueError("`key_values` must contain at least one key array")
    n_cols = lists[0].shape[1]
    first = lists[0]
    if all(v.shape == first.shape and np.array_equal(v, first) for v in lists):
        return first.astype(np.int32)
    seen: dict[tuple[int, ...], None] = {}
    for v in lists:
        for row in v:
            seen.setdefault(tuple(int(x) for x in row), None)
    union = list(seen)

    for perm in itertools.permutations(range(n_cols)):
        for signs in itertools.product((1, -1), repeat=n_cols):

            def rank(row, perm=perm, signs=signs):
                return tuple(signs[c] * int(row[c]) for c in perm)

            if all(all(rank(v[i]) < rank(v[i + 1]) for i in range(len(v) - 1)) for v in lists):
                union.sort(key=rank)
                return np.array(union, dtype=np.int32).reshape(-1, n_cols)

    # no lexicographic order fits: keep every list's relative order (Kahn, stable)
    position = {key: i for i, key in enumerate(union)}
    successors: dict[tuple, set] = {key: set() for key in union}
    indegree = dict.fromkeys(union, 0)
    for v in lists:
        rows = [tuple(int(x) for x in row) for row in v]
        for a, b in zip(rows, rows[1:], strict=False):
            if b not in successors[a]:
                successors[a].add(b)
                indegree[b] += 1
    import heapq

    ready = [(position[k], k) for k in union if indegree[k] == 0]
    heapq.heapify(ready)
    out = []
    while ready:
        _, key = heapq.heappop(ready)
        out.append(key)
        for nxt in successors[key]:
            indegree[nxt] -= 1
            if indegree[nxt] == 0:
                heapq.heappush(ready, (position[nxt], nxt))
    if len(out) != len(union):  # contradictory orders: first appearance
        out = union
    return np.array(out, dtype=np.int32).reshape(-1, n_cols)
