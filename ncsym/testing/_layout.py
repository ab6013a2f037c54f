"""Descriptor outputs brought to one form: a dict of equivariant blocks with named samples.

The kit accepts three kinds of descriptor output (see :func:`normalise_output`):

- :class:`ncsym.BlockMap`,
- ``metatensor.TensorMap`` (featomic's calculators return these),
- plain arrays (numpy, or anything with ``__array__``/``.detach()``) described by an
  :class:`ArrayLayout`, or a ``dict`` of such arrays.

Every output becomes a dict ``key -> _Block`` where ``key`` is a tuple of ``(name, value)``
pairs and a ``_Block`` holds ``values`` of shape ``(n_samples, 2 lambda + 1, n_properties)``.
Problems with an output (wrong shape, NaN, missing ``o3_lambda``) raise :class:`OutputError`,
which the asserts turn into a :class:`ncsym.testing.DescriptorError` with the structure attached.
"""

from __future__ import annotations

import numbers
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np

__all__ = ["ArrayLayout", "OutputError", "normalise_output"]

#: Sample columns holding one atom index, the two atoms of a pair and the third atom of a triple.
ATOM_COLUMNS = ("atom", "center")
PAIR_COLUMNS = ("first_atom", "second_atom")
THIRD_ATOM_COLUMN = "third_atom"
#: Sample columns holding the cell shift of a pair (metatensor / featomic names).
SHIFT_COLUMNS = ("cell_shift_a", "cell_shift_b", "cell_shift_c")
#: Groups of cell-shift columns and the atoms they join: ``(shift columns, origin, image)``.
#: A group describes the vector ``x_image - x_origin + shift @ cell``.  Three-centre samples
#: (:class:`ncsym.pairs.ThreeCentreFeatures`) carry the shifts of ``second_atom`` (``_2``) and of
#: ``third_atom`` (``_3``) relative to ``first_atom``.
SHIFT_GROUPS = (
    (SHIFT_COLUMNS, "first_atom", "second_atom"),
    (tuple(f"{c}_2" for c in SHIFT_COLUMNS), "first_atom", "second_atom"),
    (tuple(f"{c}_3" for c in SHIFT_COLUMNS), "first_atom", THIRD_ATOM_COLUMN),
)


class OutputError(Exception):
    """A descriptor output that cannot be used (wrong shape, NaN, missing metadata)."""


@dataclass
class _Block:
    """One equivariant block in the kit's own form (internal)."""

    key: tuple
    o3_lambda: int
    o3_sigma: int
    values: np.ndarray  # (n_samples, 2 lambda + 1, n_properties)
    sample_names: tuple
    samples: np.ndarray  # (n_samples, len(sample_names)) int64
    properties: np.ndarray  # (n_properties, n_columns) int64
    block_type: int | None = None
    _cache: dict = field(default_factory=dict, repr=False)

    @property
    def atom_columns(self) -> tuple[int, ...]:
        """Positions of the sample columns that hold atom indices."""
        names = ATOM_COLUMNS + PAIR_COLUMNS + (THIRD_ATOM_COLUMN,)
        return tuple(i for i, n in enumerate(self.sample_names) if n in names)

    @property
    def is_pair(self) -> bool:
        return all(n in self.sample_names for n in PAIR_COLUMNS)

    @property
    def is_triple(self) -> bool:
        return self.is_pair and THIRD_ATOM_COLUMN in self.sample_names

    @property
    def shift_groups(self) -> tuple[tuple[tuple[str, ...], str, str], ...]:
        """The :data:`SHIFT_GROUPS` present in full (with both of their atom columns)."""
        names = self.sample_names
        return tuple(
            group
            for group in SHIFT_GROUPS
            if all(n in names for n in group[0]) and group[1] in names and group[2] in names
        )

    @property
    def shift_columns(self) -> tuple[int, ...]:
        """Positions of the sample columns that hold cell shifts (matched through vectors)."""
        return tuple(self.sample_names.index(n) for group in self.shift_groups for n in group[0])

    @property
    def has_shifts(self) -> bool:
        return bool(self.shift_groups)


def format_key(key: tuple) -> str:
    """``(o3_lambda=1, o3_sigma=-1, center_type=6)``."""
    return "(" + ", ".join(f"{name}={value}" for name, value in key) + ")"


# --------------------------------------------------------------------------- array layout
def _as_int_tuple(value, name: str) -> tuple[int, ...]:
    if isinstance(value, (bool, np.bool_)):
        raise TypeError(f"`{name}` must be an integer or a sequence of integers, got {value!r}")
    if isinstance(value, numbers.Integral):
        return (int(value),)
    if isinstance(value, Sequence) or isinstance(value, np.ndarray):
        out = []
        for v in value:
            if isinstance(v, (bool, np.bool_)) or not isinstance(v, numbers.Integral):
                raise TypeError(f"`{name}` must contain integers, got {v!r}")
            out.append(int(v))
        if not out:
            raise ValueError(f"`{name}` must not be empty")
        return tuple(out)
    raise TypeError(f"`{name}` must be an integer or a sequence of integers, got {value!r}")


@dataclass(frozen=True)
class ArrayLayout:
    """Where the symmetry information sits in a plain array returned by a descriptor.

    Parameters
    ----------
    o3_lambda : int or sequence of int
        Angular order of the ``m`` axis.  A sequence means the ``m`` axis is a concatenation of
        segments of length ``2 lambda + 1`` in that order, e.g. ``(0, 1, 2)`` for a flattened
        ``(l, m)`` axis of size 9 (``m = -lambda .. lambda`` within each segment).
    o3_sigma : int or sequence of int, default 1
        Parity label (+1 or -1) of each segment; one value applies to all.  Under inversion a
        segment picks up ``sigma (-1)^lambda``.
    m_axis : int or None, default None
        Axis holding ``m``.  ``None`` is allowed only when every ``o3_lambda`` is 0: the array
        then has no component axis (an invariant).
    atom_axis : int or None, default None
        Axis indexed by atoms (size ``len(frame)``), giving samples named ``atom``.
    pair_axes : (int, int) or None, default None
        Two axes indexed by the first and second atom of every ordered pair (both of size
        ``len(frame)``), giving samples ``first_atom, second_atom``.  Pairs are identified by
        their atoms only (minimum image); use a BlockMap with ``cell_shift_a/b/c`` samples for
        periodic images.

    Notes
    -----
    All remaining axes are flattened, in C order, into properties.  With neither
    ``atom_axis`` nor ``pair_axes`` the array describes the whole structure (one sample) and
    must be invariant under atom permutations.  Negative axes count from the end.

    Examples
    --------
    Per-atom vectors of shape ``(n_atoms, 3)`` in (y, z, x) order:

    >>> ArrayLayout(o3_lambda=1, m_axis=1, atom_axis=0)
    ArrayLayout(o3_lambda=1, o3_sigma=1, m_axis=1, atom_axis=0, pair_axes=None)
    """

    o3_lambda: int | tuple[int, ...]
    o3_sigma: int | tuple[int, ...] = 1
    m_axis: int | None = None
    atom_axis: int | None = None
    pair_axes: tuple[int, int] | None = None

    def __post_init__(self) -> None:
        lams = _as_int_tuple(self.o3_lambda, "o3_lambda")
        if any(lam < 0 for lam in lams):
            raise ValueError(f"`o3_lambda` must be >= 0, got {self.o3_lambda!r}")
        sigmas = _as_int_tuple(self.o3_sigma, "o3_sigma")
        if any(s not in (-1, 1) for s in sigmas):
            raise ValueError(f"`o3_sigma` must be +1 or -1, got {self.o3_sigma!r}")
        if len(sigmas) not in (1, len(lams)):
            raise ValueError(
                f"`o3_sigma` must have one value or one per `o3_lambda` ({len(lams)}), "
                f"got {len(sigmas)}"
            )
        if self.m_axis is None and any(lam != 0 for lam in lams):
            raise ValueError("`m_axis` is required when `o3_lambda` is not 0")
        for name in ("m_axis", "atom_axis"):
            value = getattr(self, name)
            if value is not None and (
                isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Integral)
            ):
                raise TypeError(f"`{name}` must be an integer or None, got {value!r}")
        if self.pair_axes is not None:
            pair = _as_int_tuple(self.pair_axes, "pair_axes")
            if len(pair) != 2:
                raise ValueError(f"`pair_axes` must hold two axes, got {self.pair_axes!r}")
            if self.atom_axis is not None:
                raise ValueError("give either `atom_axis` or `pair_axes`, not both")
        if isinstance(self.o3_lambda, (list, np.ndarray)):
            object.__setattr__(self, "o3_lambda", lams)
        if isinstance(self.o3_sigma, (list, np.ndarray)):
            object.__setattr__(self, "o3_sigma", sigmas)
        if isinstance(self.pair_axes, (list, np.ndarray)):
            object.__setattr__(self, "pair_axes", tuple(int(a) for a in self.pair_axes))

    @property
    def lambdas(self) -> tuple[int, ...]:
        return _as_int_tuple(self.o3_lambda, "o3_lambda")

    @property
    def sigmas(self) -> tuple[int, ...]:
        sig = _as_int_tuple(self.o3_sigma, "o3_sigma")
        return sig * len(self.lambdas) if len(sig) == 1 else sig

    def to_blocks(self, array, n_atoms: int, prefix: tuple = ()) -> dict[tuple, _Block]:
        """Split ``array`` into blocks (raises :class:`OutputError` on a shape mismatch)."""
        arr = _to_numpy(array, "array" if not prefix else f"array {prefix[0][1]!r}")
        where = "" if not prefix else f" {prefix[0][1]!r}"
        sample_axes = []
        if self.atom_axis is not None:
            sample_axes = [self.atom_axis]
        elif self.pair_axes is not None:
            sample_axes = list(self.pair_axes)
        named = ([self.m_axis] if self.m_axis is not None else []) + sample_axes
        resolved = []
        for axis in named:
            if not -arr.ndim <= axis < arr.ndim:
                raise OutputError(
                    f"array{where} has shape {arr.shape}, which has no axis {axis} "
                    f"declared in {self}"
                )
            resolved.append(axis % arr.ndim)
        if len(set(resolved)) != len(resolved):
            raise ValueError(f"axes of {self} must be distinct for an array with {arr.ndim} axes")
        m_ax = resolved[0] if self.m_axis is not None else None
        s_axes = resolved[1:] if self.m_axis is not None else resolved
        for axis in s_axes:
            if arr.shape[axis] != n_atoms:
                raise OutputError(
                    f"array{where} has shape {arr.shape}: axis {axis} should have one entry per "
                    f"atom ({n_atoms}) according to {self}"
                )
        sizes = [2 * lam + 1 for lam in self.lambdas]
        if m_ax is None:
            arr = arr[..., None]
            m_ax = arr.ndim - 1
        elif arr.shape[m_ax] != sum(sizes):
            raise OutputError(
                f"array{where} has shape {arr.shape}: axis {m_ax} should have size "
                f"{sum(sizes)} = sum of 2 lambda + 1 for o3_lambda={self.o3_lambda}"
            )
        rest = [a for a in range(arr.ndim) if a != m_ax and a not in s_axes]
        moved = np.transpose(arr, s_axes + [m_ax] + rest)
        n_samples = int(np.prod([arr.shape[a] for a in s_axes], dtype=np.int64))
        n_props = int(np.prod([arr.shape[a] for a in rest], dtype=np.int64))
        flat = moved.reshape(n_samples, arr.shape[m_ax], n_props)
        if self.pair_axes is not None:
            ii, jj = np.meshgrid(np.arange(n_atoms), np.arange(n_atoms), indexing="ij")
            names = ("system",) + PAIR_COLUMNS
            samples = np.stack([np.zeros(ii.size, dtype=np.int64), ii.ravel(), jj.ravel()], axis=1)
        elif self.atom_axis is not None:
            names = ("system", "atom")
            samples = np.stack(
                [np.zeros(n_atoms, dtype=np.int64), np.arange(n_atoms, dtype=np.int64)], axis=1
            )
        else:
            names = ("system",)
            samples = np.zeros((1, 1), dtype=np.int64)
        properties = np.arange(n_props, dtype=np.int64).reshape(-1, 1)
        blocks = {}
        start = 0
        for segment, (lam, sigma, size) in enumerate(
            zip(self.lambdas, self.sigmas, sizes, strict=True)
        ):
            key = prefix + (("o3_lambda", lam), ("o3_sigma", sigma))
            if len(sizes) > 1:
                key = key + (("segment", segment),)
            values = np.ascontiguousarray(flat[:, start : start + size, :], dtype=np.float64)
            start += size
            blocks[key] = _Block(key, lam, sigma, values, names, samples, properties)
        return blocks


# --------------------------------------------------------------------------- conversion
def _to_numpy(array, what: str) -> np.ndarray:
    """numpy view of a numpy/torch/array-like object (float64)."""
    if hasattr(array, "detach") and callable(array.detach):
        array = array.detach()
        if hasattr(array, "cpu"):
            array = array.cpu()
    try:
        out = np.asarray(array)
    except Exception as exc:  # noqa: BLE001 - any conversion failure is an output problem
        raise OutputError(f"{what} could not be converted to a numpy array: {exc}") from None
    if out.dtype.kind not in "biuf":
        raise OutputError(f"{what} must hold real numbers, got dtype {out.dtype}")
    return out.astype(np.float64, copy=False)


def _is_tensor_map(output) -> bool:
    return type(output).__name__ == "TensorMap" and callable(getattr(output, "blocks", None))


def _key_value(value):
    return int(value) if isinstance(value, (numbers.Integral, np.integer)) else value


def _from_labelled(keys_names, keys_values, blocks_data) -> dict[tuple, _Block]:
    """Blocks from ``(values, sample_names, samples, properties)`` tuples and key rows."""
    names = tuple(keys_names)
    if "o3_lambda" not in names:
        raise OutputError(f"output keys must include `o3_lambda`, got key names {names}")
    if "o3_sigma" not in names:
        raise OutputError(f"output keys must include `o3_sigma`, got key names {names}")
    out = {}
    for row, (values, sample_names, samples, properties) in zip(
        keys_values, blocks_data, strict=True
    ):
        key = tuple((n, _key_value(v)) for n, v in zip(names, row, strict=True))
        info = dict(key)
        lam, sigma = int(info["o3_lambda"]), int(info["o3_sigma"])
        if lam < 0 or sigma not in (-1, 1):
            raise OutputError(f"block {format_key(key)} has invalid o3_lambda or o3_sigma")
        if values.ndim == 2 and lam == 0:
            values = values[:, None, :]
        if values.ndim != 3 or values.shape[1] != 2 * lam + 1:
            raise OutputError(
                f"block {format_key(key)} has values of shape {values.shape}, expected "
                f"(n_samples, {2 * lam + 1}, n_properties) for o3_lambda={lam}"
            )
        block_type = info.get("block_type")
        out[key] = _Block(
            key,
            lam,
            sigma,
            np.asarray(values, dtype=np.float64),
            tuple(sample_names),
            np.asarray(samples, dtype=np.int64).reshape(values.shape[0], len(sample_names)),
            _property_rows(properties, values.shape[2]),
            int(block_type) if block_type is not None else None,
        )
    if len(out) != len(blocks_data):
        raise OutputError("output has duplicate keys")
    return out


def _from_block_map(output) -> dict[tuple, _Block]:
    data = [
        (
            _to_numpy(b.values, "block values"),
            b.samples.names,
            np.asarray(b.samples.values),
            np.asarray(b.properties.values),
        )
        for b in output.blocks
    ]
    return _from_labelled(output.keys.names, np.asarray(output.keys.values), data)


def _from_tensor_map(output) -> dict[tuple, _Block]:
    from ..blocks import BlockMap

    blocks = list(output.blocks())
    if all(len(b.components) == 1 for b in blocks):
        return _from_block_map(BlockMap.from_metatensor(output))
    # invariants without a component axis (e.g. featomic's SoapPowerSpectrum): lambda = 0
    key_names = list(output.keys.names)
    key_values = np.asarray(output.keys.values)
    if any(len(b.components) > 1 for b in blocks):
        raise OutputError("TensorMap blocks must have at most one component axis (o3_mu)")
    if any(len(b.components) == 0 for b in blocks) and any(len(b.components) for b in blocks):
        raise OutputError("TensorMap mixes blocks with and without an o3_mu component axis")
    if "o3_lambda" not in key_names:
        key_names = key_names + ["o3_lambda", "o3_sigma"]
        extra = np.tile(np.array([[0, 1]]), (key_values.shape[0], 1))
        key_values = np.hstack([key_values.reshape(len(blocks), -1), extra])
    data = [
        (
            _to_numpy(b.values, "block values")[:, None, :],
            tuple(b.samples.names),
            np.asarray(b.samples.values),
            np.asarray(b.properties.values),
        )
        for b in blocks
    ]
    return _from_labelled(key_names, key_values, data)


def normalise_output(output, layout, n_atoms: int) -> dict[tuple, _Block]:
    """Bring a descriptor output to ``{key: _Block}``.

    Parameters
    ----------
    output
        What the descriptor returned: ``ncsym.BlockMap``, ``metatensor.TensorMap``, an array or
        a dict of arrays.
    layout : ArrayLayout, dict of ArrayLayout or None
        Required for arrays; ignored for labelled outputs.
    n_atoms : int
        Number of atoms of the structure the output was computed for.

    Raises
    ------
    OutputError
        If the output does not match its declared layout, holds NaN/inf, refers to atoms that do
        not exist or lacks ``o3_lambda``/``o3_sigma`` keys.
    TypeError
        If arrays come without a ``layout`` or the layout has the wrong type (a usage error).
    """
    from ..blocks import BlockMap

    if isinstance(output, BlockMap):
        blocks = _from_block_map(output)
    elif _is_tensor_map(output):
        blocks = _from_tensor_map(output)
    elif isinstance(output, Mapping):
        if layout is None:
            raise TypeError(
                "the descriptor returned a dict of arrays: pass `layout={name: ArrayLayout(...)}`"
            )
        if isinstance(layout, ArrayLayout):
            layout = {name: layout for name in output}
        if not isinstance(layout, Mapping):
            raise TypeError(f"`layout` must be an ArrayLayout or a dict, got {type(layout).__name__}")
        missing = [n for n in layout if n not in output]
        extra = [n for n in output if n not in layout]
        if missing or extra:
            raise OutputError(
                f"the descriptor returned arrays {sorted(map(str, output))} but `layout` declares "
                f"{sorted(map(str, layout))} (missing {missing}, undeclared {extra})"
            )
        blocks = {}
        for name in layout:
            spec = layout[name]
            if not isinstance(spec, ArrayLayout):
                raise TypeError(f"`layout[{name!r}]` must be an ArrayLayout, got {spec!r}")
            blocks.update(spec.to_blocks(output[name], n_atoms, prefix=(("array", name),)))
    else:
        if layout is None:
            raise TypeError(
                f"the descriptor returned {type(output).__name__}: arrays need "
                "`layout=ArrayLayout(...)`; labelled outputs must be ncsym.BlockMap or "
                "metatensor.TensorMap"
            )
        if not isinstance(layout, ArrayLayout):
            raise TypeError(
                "the descriptor returned a single array, `layout` must be an ArrayLayout, "
                f"got {type(layout).__name__}"
            )
        blocks = layout.to_blocks(output, n_atoms)
    _validate_blocks(blocks, n_atoms)
    return blocks


def _validate_blocks(blocks: dict[tuple, _Block], n_atoms: int) -> None:
    for key, block in blocks.items():
        bad = ~np.isfinite(block.values)
        if bad.any():
            rows = sorted({int(r) for r in np.nonzero(bad)[0][:5]})
            raise OutputError(
                f"block {format_key(key)} contains {int(bad.sum())} NaN or infinite values "
                f"(samples {[tuple(int(v) for v in block.samples[r]) for r in rows]})"
            )
        for column in block.atom_columns:
            atoms = block.samples[:, column]
            if atoms.size and (atoms.min() < 0 or atoms.max() >= n_atoms):
                raise OutputError(
                    f"block {format_key(key)} has samples `{block.sample_names[column]}` up to "
                    f"{int(atoms.max())} (min {int(atoms.min())}), but the structure has "
                    f"{n_atoms} atoms"
                )
        for columns, _, _ in SHIFT_GROUPS:
            shift_present = [n in block.sample_names for n in columns]
            if any(shift_present) and not all(shift_present):
                raise OutputError(
                    f"block {format_key(key)} has only some of the samples {columns}"
                )


def _property_rows(properties, n_properties: int) -> np.ndarray:
    """Property labels as an ``(n_properties, n_columns)`` array (``n_properties`` may be 0)."""
    props = np.asarray(properties, dtype=np.int64)
    if props.ndim == 2 and props.shape[0] == n_properties:
        return props
    if props.size == 0:
        return np.zeros((n_properties, 0), dtype=np.int64)
    return props.reshape(n_properties, -1)
