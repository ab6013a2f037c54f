"""Split atomic-orbital matrices into atom-pair, shell-pair blocks and assemble them back.

An AO matrix ``H`` (Fock, Kohn-Sham, overlap, ...) of a structure is indexed by atomic
orbitals ``(atom, n, l, m)``: atoms in structure order, for each atom the shells ``(n, l)`` of
its species in the order given by ``orbitals``, for each shell ``m = -l .. l`` (ncsym's real
spherical harmonics; PySCF p shells must already be reordered, see
:mod:`ncsym.hamiltonian.pyscf_data`).

The blocks ``H_ij^{nl, n'l'}`` (shape ``(2l+1, 2l'+1)``, atom ``i`` shell ``(n, l)`` rows,
atom ``j`` shell ``(n', l')`` columns) are grouped by :class:`BlockKey`
``(block_type, first_atom_type, second_atom_type, n_i, l_i, n_j, l_j)``:

``block_type = 0``
    on-site, ``i == j``; only shell pairs with the first shell not after the second one in
    the species' shell list (the others are transposes).
``block_type = +1 / -1``
    same species, ``i < j``, stored as ``H^± = (H_ij ± H_ji) / sqrt(2)`` (same shell-pair
    rule as on-site: ``H^±`` of the swapped shell pair is ``±`` the transpose).
``block_type = 2``
    different species, the first atom has the lower atomic number; all shell pairs.

Samples are ``(system, first_atom, second_atom)`` with ``system`` the index of the structure
in the list given to :func:`matrix_to_blocks`, so many structures are handled at once.
Uncoupled blocks have two ``m`` axes and are therefore kept in the small
:class:`MatrixBlocks` container; :func:`ncsym.hamiltonian.couple_blocks` turns them into
``ncsym.BlockMap`` equivariant blocks.

References
----------
J. Nigam, M. J. Willatt, M. Ceriotti, "Equivariant representations for molecular
Hamiltonians and N-center atomic-scale properties", J. Chem. Phys. 156, 014115 (2022).
"""

from __future__ import annotations

import numbers
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np
import numpy.typing as npt

__all__ = [
    "BLOCK_KEY_NAMES",
    "BLOCK_SAMPLE_NAMES",
    "SYMMETRY_TOLERANCE",
    "BlockKey",
    "MatrixBlock",
    "MatrixBlocks",
    "check_orbitals",
    "orbital_labels",
    "matrix_to_blocks",
    "blocks_to_matrix",
]

#: Relative tolerance for "symmetric": ``max|H - H^T| <= SYMMETRY_TOLERANCE * max(1, max|H|)``.
SYMMETRY_TOLERANCE = 1e-10

#: Names of the key columns of uncoupled (and, plus ``o3_lambda, o3_sigma``, coupled) blocks.
BLOCK_KEY_NAMES = ("block_type", "first_atom_type", "second_atom_type", "n_i", "l_i", "n_j", "l_j")

#: Names of the sample columns of every Hamiltonian block.
BLOCK_SAMPLE_NAMES = ("system", "first_atom", "second_atom")

_BLOCK_TYPES = (0, 1, -1, 2)


class BlockKey(NamedTuple):
    """Key of one uncoupled block: block type, species pair and shell pair."""

    block_type: int
    first_atom_type: int
    second_atom_type: int
    n_i: int
    l_i: int
    n_j: int
    l_j: int


@dataclass(frozen=True)
class MatrixBlock:
    """Uncoupled blocks of one :class:`BlockKey` for many atom pairs.

    Attributes
    ----------
    samples : ndarray of int32, shape (n_samples, 3)
        ``(system, first_atom, second_atom)`` per sample.
    values : ndarray of float64, shape (n_samples, 2 l_i + 1, 2 l_j + 1)
        ``H_ij^{n_i l_i, n_j l_j}`` (or ``H^±``), rows ``m_i = -l_i .. l_i``, columns
        ``m_j = -l_j .. l_j``, in Hartree when built from a Fock matrix.
    """

    samples: np.ndarray
    values: np.ndarray

    def __post_init__(self) -> None:
        samples = np.asarray(self.samples)
        values = np.asarray(self.values)
        if samples.ndim != 2 or samples.shape[1] != 3:
            raise ValueError(f"`samples` must have shape (n, 3), got {samples.shape}")
        if samples.size and samples.dtype.kind not in "iu":
            raise TypeError(f"`samples` must be integers, got dtype {samples.dtype}")
        if values.ndim != 3 or values.shape[0] != samples.shape[0]:
            raise ValueError(
                f"`values` must have shape (n_samples={samples.shape[0]}, 2 l_i + 1, 2 l_j + 1), "
                f"got {values.shape}"
            )
        object.__setattr__(self, "samples", samples.astype(np.int32, copy=False))
        object.__setattr__(self, "values", values)

    def __len__(self) -> int:
        return self.samples.shape[0]


class MatrixBlocks(Mapping):
    """Uncoupled Hamiltonian blocks: a read-only mapping :class:`BlockKey` -> :class:`MatrixBlock`.

    Parameters
    ----------
    blocks : mapping
        ``{BlockKey (or 7-tuple): MatrixBlock}``.
    orbitals : dict, optional
        The orbital layout the blocks were built with (see :func:`check_orbitals`).
    """

    key_names = BLOCK_KEY_NAMES
    sample_names = BLOCK_SAMPLE_NAMES

    def __init__(self, blocks: Mapping, orbitals: Mapping | None = None) -> None:
        self._blocks: dict[BlockKey, MatrixBlock] = {}
        for key, block in blocks.items():
            key = BlockKey(*(int(k) for k in key))
            if key.block_type not in _BLOCK_TYPES:
                raise ValueError(
                    f"`block_type` must be one of {_BLOCK_TYPES}, got {key.block_type} in {key}"
                )
            if not isinstance(block, MatrixBlock):
                raise TypeError(f"blocks must be MatrixBlock, got {type(block).__name__}")
            want = (2 * key.l_i + 1, 2 * key.l_j + 1)
            if block.values.shape[1:] != want:
                raise ValueError(
                    f"block {tuple(key)} must have values of shape (n, {want[0]}, {want[1]}), "
                    f"got {block.values.shape}"
                )
            self._blocks[key] = block
        self.orbitals = None if orbitals is None else check_orbitals(orbitals)

    def __getitem__(self, key) -> MatrixBlock:
        return self._blocks[BlockKey(*key)]

    def __iter__(self) -> Iterator[BlockKey]:
        return iter(self._blocks)

    def __len__(self) -> int:
        return len(self._blocks)

    def __repr__(self) -> str:
        n = sum(len(b) for b in self._blocks.values())
        return f"MatrixBlocks({len(self)} blocks, {n} samples)"


# ----------------------------------------------------------------------------- orbitals
def check_orbitals(orbitals: Mapping) -> dict[int, tuple[tuple[int, int], ...]]:
    """Validate an orbital layout and return it keyed by atomic number.

    Parameters
    ----------
    orbitals : mapping
        ``{species: [(n, l), ...]}``: for every species (atomic number or chemical symbol)
        its shells in AO order; shell ``(n, l)`` holds ``2 l + 1`` functions
        ``m = -l .. l``.  ``(n, l)`` pairs must be unique within a species.

    Returns
    -------
    dict
        ``{atomic_number: ((n, l), ...)}``.

    Raises
    ------
    TypeError, ValueError
        For a non-mapping, unknown symbols, negative or non-integer ``n``/``l``, duplicated
        shells.
    """
    if not isinstance(orbitals, Mapping):
        raise TypeError(f"`orbitals` must be a mapping species -> [(n, l), ...], got "
                        f"{type(orbitals).__name__}")
    out: dict[int, tuple[tuple[int, int], ...]] = {}
    for species, shells in orbitals.items():
        z = _atomic_number(species)
        if z in out:
            raise ValueError(f"`orbitals` lists species {species!r} (Z={z}) twice")
        try:
            shells = [tuple(s) for s in shells]
        except TypeError:
            raise TypeError(
                f"`orbitals[{species!r}]` must be a sequence of (n, l) pairs, got {shells!r}"
            ) from None
        clean = []
        for shell in shells:
            if len(shell) != 2 or not all(
                isinstance(v, numbers.Integral) and not isinstance(v, bool) for v in shell
            ):
                raise TypeError(f"`orbitals[{species!r}]` entries must be (n, l) integer pairs, "
                                f"got {shell!r}")
            n, l = int(shell[0]), int(shell[1])
            if n < 0 or l < 0:
                raise ValueError(f"`orbitals[{species!r}]` has a negative n or l: {shell!r}")
            clean.append((n, l))
        if len(set(clean)) != len(clean):
            raise ValueError(f"`orbitals[{species!r}]` repeats a shell (n, l): {clean}")
        out[z] = tuple(clean)
    return out


def _atomic_number(species) -> int:
    if isinstance(species, numbers.Integral) and not isinstance(species, bool):
        if species <= 0:
            raise ValueError(f"atomic numbers must be positive, got {species}")
        return int(species)
    if isinstance(species, str):
        from ase.data import atomic_numbers

        if species not in atomic_numbers:
            raise ValueError(f"unknown chemical symbol {species!r} in `orbitals`")
        return int(atomic_numbers[species])
    raise TypeError(f"species must be an atomic number or a symbol, got {species!r}")


def _shell_offsets(shells) -> np.ndarray:
    sizes = np.array([2 * l + 1 for _, l in shells], dtype=np.int64)
    return np.concatenate([[0], np.cumsum(sizes)[:-1]]) if len(sizes) else sizes


def _atom_offsets(numbers_: np.ndarray, orbitals) -> tuple[np.ndarray, int]:
    sizes = np.array([sum(2 * l + 1 for _, l in orbitals[int(z)]) for z in numbers_],
                     dtype=np.int64)
    offsets = np.concatenate([[0], np.cumsum(sizes)[:-1]]).astype(np.int64)
    return offsets, int(sizes.sum())


def orbital_labels(numbers_: npt.ArrayLike, orbitals: Mapping) -> np.ndarray:
    """AO labels ``(atom, n, l, m)`` of a structure, one row per atomic orbital.

    Parameters
    ----------
    numbers_ : array_like of int, shape (n_atoms,)
        Atomic numbers in structure order.
    orbitals : mapping
        Orbital layout (see :func:`check_orbitals`).

    Returns
    -------
    ndarray of int64, shape (n_ao, 4)
        Columns ``atom, n, l, m``; ``m = -l .. l`` within each shell.
    """
    orbitals = check_orbitals(orbitals)
    numbers_ = np.asarray(numbers_, dtype=np.int64).reshape(-1)
    _check_species(numbers_, orbitals, "numbers")
    rows = [
        (atom, n, l, m)
        for atom, z in enumerate(numbers_)
        for n, l in orbitals[int(z)]
        for m in range(-l, l + 1)
    ]
    return np.array(rows, dtype=np.int64).reshape(-1, 4)


def _check_species(numbers_: np.ndarray, orbitals, what: str) -> None:
    missing = sorted({int(z) for z in numbers_} - set(orbitals))
    if missing:
        atoms = [int(a) for a in np.flatnonzero(np.isin(numbers_, missing))]
        raise ValueError(
            f"species {missing} (atoms {atoms} of `{what}`) have no entry in `orbitals`, "
            f"which lists {sorted(orbitals)}"
        )


# ------------------------------------------------------------------------ frames helpers
def _as_frames(frame) -> tuple[list[np.ndarray], bool]:
    """Atomic-number arrays of one structure or a sequence of them; flag for 'single'."""
    if hasattr(frame, "get_atomic_numbers"):
        return [np.asarray(frame.get_atomic_numbers(), dtype=np.int64)], True
    if isinstance(frame, Sequence) and not isinstance(frame, str):
        out = []
        for f in frame:
            if not hasattr(f, "get_atomic_numbers"):
                raise TypeError(f"`frame` must be ase.Atoms or a sequence of them, got an item "
                                f"of type {type(f).__name__}")
            out.append(np.asarray(f.get_atomic_numbers(), dtype=np.int64))
        return out, False
    raise TypeError(f"`frame` must be ase.Atoms or a sequence of them, got {type(frame).__name__}")


def _groups(all_numbers: list[np.ndarray]) -> dict[tuple, np.ndarray]:
    """Systems grouped by identical atomic-number sequence (same AO layout)."""
    groups: dict[tuple, list[int]] = {}
    for s, nums in enumerate(all_numbers):
        groups.setdefault(tuple(int(z) for z in nums), []).append(s)
    return {k: np.array(v, dtype=np.int64) for k, v in groups.items()}


def _check_symmetric(matrix: np.ndarray, name: str) -> None:
    scale = max(1.0, float(np.max(np.abs(matrix)))) if matrix.size else 1.0
    asym = float(np.max(np.abs(matrix - np.swapaxes(matrix, -1, -2)))) if matrix.size else 0.0
    if asym > SYMMETRY_TOLERANCE * scale:
        raise ValueError(
            f"`{name}` must be symmetric: max |H - H^T| = {asym:.3e} exceeds "
            f"{SYMMETRY_TOLERANCE:g} * {scale:.3g}"
        )


def _pairs(numbers_: np.ndarray, zi: int, zj: int, block_type: int):
    """Atom index pairs (I, J) of one block type and species pair, in sample order."""
    atoms_i = np.flatnonzero(numbers_ == zi)
    if block_type == 0:
        return atoms_i, atoms_i
    if block_type in (1, -1):
        iu, ju = np.triu_indices(len(atoms_i), 1)
        return atoms_i[iu], atoms_i[ju]
    atoms_j = np.flatnonzero(numbers_ == zj)
    return np.repeat(atoms_i, len(atoms_j)), np.tile(atoms_j, len(atoms_i))


def _block_keys(species: list[int], orbitals) -> list[tuple[BlockKey, int, int]]:
    """All keys for ``species`` (sorted), with the shell positions of both shells."""
    keys = []
    for block_type in (0, 1, -1):
        for z in species:
            shells = orbitals[z]
            for a in range(len(shells)):
                for b in range(a, len(shells)):
                    keys.append((BlockKey(block_type, z, z, *shells[a], *shells[b]), a, b))
    for p, zi in enumerate(species):
        for zj in species[p + 1:]:
            for a, sa in enumerate(orbitals[zi]):
                for b, sb in enumerate(orbitals[zj]):
                    keys.append((BlockKey(2, zi, zj, *sa, *sb), a, b))
    return keys


def _index_grids(offsets: np.ndarray, atoms: np.ndarray, shell_offset: int, l: int) -> np.ndarray:
    """AO indices ``(n_pairs, 2l+1)`` of shell at ``shell_offset`` on ``atoms``."""
    return offsets[atoms][:, None] + shell_offset + np.arange(2 * l + 1)[None, :]


# --------------------------------------------------------------------------- main API
def matrix_to_blocks(matrix, frame, orbitals: Mapping) -> MatrixBlocks:
    """Split AO matrices into uncoupled atom-pair, shell-pair blocks.

    Parameters
    ----------
    matrix : ndarray of float64, shape (n_ao, n_ao), or a sequence of them
        Symmetric AO matrix per structure (Hartree for Fock/Kohn-Sham matrices), AO order
        as described in the module docstring.
    frame : ase.Atoms or sequence of ase.Atoms
        The structures, one per matrix (only atomic numbers and their order are used).
    orbitals : mapping
        ``{species: [(n, l), ...]}`` shell layout per species (see :func:`check_orbitals`).

    Returns
    -------
    MatrixBlocks
        One :class:`MatrixBlock` per :class:`BlockKey` that has at least one atom pair;
        samples sorted by ``(system, first_atom, second_atom)``.

    Raises
    ------
    ValueError
        Mismatched number of matrices and structures, wrong AO count, non-symmetric or
        non-finite matrix, species missing from ``orbitals``.
    """
    orbitals = check_orbitals(orbitals)
    all_numbers, single = _as_frames(frame)
    if single:
        matrices = [matrix]
    elif isinstance(matrix, np.ndarray) and matrix.ndim == 2:
        raise ValueError(
            f"`matrix` is one matrix of shape {matrix.shape} but `frame` is a sequence of "
            f"{len(all_numbers)} structures"
        )
    else:
        matrices = list(matrix)
    if len(matrices) != len(all_numbers):
        raise ValueError(
            f"got {len(matrices)} matrices for {len(all_numbers)} structures in `frame`"
        )
    checked = []
    for s, (nums, mat) in enumerate(zip(all_numbers, matrices, strict=True)):
        _check_species(nums, orbitals, "frame" if single else f"frame[{s}]")
        _, n_ao = _atom_offsets(nums, orbitals)
        name = "matrix" if single else f"matrix[{s}]"
        mat = np.asarray(mat, dtype=np.float64)
        if mat.shape != (n_ao, n_ao):
            raise ValueError(
                f"`{name}` must have shape ({n_ao}, {n_ao}) (AO count of the structure with "
                f"the given `orbitals`), got {mat.shape}"
            )
        if not np.all(np.isfinite(mat)):
            raise ValueError(f"`{name}` contains NaN or infinite values")
        _check_symmetric(mat, name)
        checked.append(mat)

    species = sorted({int(z) for nums in all_numbers for z in nums})
    keys = _block_keys(species, orbitals)
    collected: dict[BlockKey, list[tuple[np.ndarray, np.ndarray]]] = {k: [] for k, _, _ in keys}
    for nums_key, systems in _groups(all_numbers).items():
        nums = np.array(nums_key, dtype=np.int64)
        offsets, _ = _atom_offsets(nums, orbitals)
        stack = np.stack([checked[s] for s in systems])  # (n_frames, n_ao, n_ao)
        present = set(nums_key)
        for key, a, b in keys:
            if key.first_atom_type not in present or key.second_atom_type not in present:
                continue
            I, J = _pairs(nums, key.first_atom_type, key.second_atom_type, key.block_type)
            if len(I) == 0:
                continue
            off_a = _shell_offsets(orbitals[key.first_atom_type])[a]
            off_b = _shell_offsets(orbitals[key.second_atom_type])[b]
            rows = _index_grids(offsets, I, off_a, key.l_i)[:, :, None]
            cols = _index_grids(offsets, J, off_b, key.l_j)[:, None, :]
            values = stack[:, rows, cols]  # (n_frames, n_pairs, 2l_i+1, 2l_j+1)
            if key.block_type in (1, -1):
                rows_j = _index_grids(offsets, J, off_a, key.l_i)[:, :, None]
                cols_i = _index_grids(offsets, I, off_b, key.l_j)[:, None, :]
                values = (values + key.block_type * stack[:, rows_j, cols_i]) / np.sqrt(2.0)
            samples = np.stack(
                [
                    np.repeat(systems, len(I)),
                    np.tile(I, len(systems)),
                    np.tile(J, len(systems)),
                ],
                axis=1,
            )
            collected[key].append((samples, values.reshape(-1, *values.shape[2:])))

    blocks = {}
    for key, _, _ in keys:
        parts = collected[key]
        if not parts:
            continue
        samples = np.concatenate([p[0] for p in parts])
        values = np.concatenate([p[1] for p in parts])
        order = np.lexsort((samples[:, 2], samples[:, 1], samples[:, 0]))
        blocks[key] = MatrixBlock(samples[order], np.ascontiguousarray(values[order]))
    return MatrixBlocks(blocks, orbitals)


def blocks_to_matrix(blocks: Mapping, frame, orbitals: Mapping):
    """Assemble AO matrices from uncoupled blocks (inverse of :func:`matrix_to_blocks`).

    Parameters
    ----------
    blocks : MatrixBlocks or mapping BlockKey -> MatrixBlock
        Uncoupled blocks, e.g. from :func:`matrix_to_blocks` or
        :func:`ncsym.hamiltonian.decouple_blocks`.  Atom pairs without a sample (for instance
        pairs a model does not predict) are left at zero.
    frame : ase.Atoms or sequence of ase.Atoms
        The structures the ``system`` sample column refers to.
    orbitals : mapping
        ``{species: [(n, l), ...]}`` shell layout per species.

    Returns
    -------
    ndarray of float64, shape (n_ao, n_ao), or list of them
        One symmetric matrix per structure (a single array when ``frame`` is one
        ``ase.Atoms``).

    Raises
    ------
    ValueError
        Keys whose species or shells are not in ``orbitals``, values of the wrong shape,
        samples pointing to missing structures or atoms, atoms of the wrong species or an
        atom order that does not match the block type.
    """
    orbitals = check_orbitals(orbitals)
    all_numbers, single = _as_frames(frame)
    for s, nums in enumerate(all_numbers):
        _check_species(nums, orbitals, "frame" if single else f"frame[{s}]")
    if not isinstance(blocks, Mapping):
        raise TypeError(f"`blocks` must be MatrixBlocks, got {type(blocks).__name__}")
    n_systems = len(all_numbers)
    groups = _groups(all_numbers)
    group_of = np.empty(n_systems, dtype=np.int64)
    position = np.empty(n_systems, dtype=np.int64)
    outputs = []
    layouts = []
    for g, (nums_key, systems) in enumerate(groups.items()):
        nums = np.array(nums_key, dtype=np.int64)
        offsets, n_ao = _atom_offsets(nums, orbitals)
        group_of[systems] = g
        position[systems] = np.arange(len(systems))
        outputs.append(np.zeros((len(systems), n_ao, n_ao)))
        layouts.append((nums, offsets))

    for raw_key, block in blocks.items():
        key = BlockKey(*(int(k) for k in raw_key))
        a, b = _shell_positions(key, orbitals)
        values = np.asarray(block.values, dtype=np.float64)
        samples = np.asarray(block.samples)
        if values.shape[1:] != (2 * key.l_i + 1, 2 * key.l_j + 1):
            raise ValueError(f"block {tuple(key)} has values of shape {values.shape}, expected "
                             f"(n, {2 * key.l_i + 1}, {2 * key.l_j + 1})")
        if len(samples) == 0:
            continue
        system = samples[:, 0]
        if system.min() < 0 or system.max() >= n_systems:
            raise ValueError(
                f"block {tuple(key)} has samples for system {int(system.max())} but `frame` "
                f"holds {n_systems} structures"
            )
        if len(np.unique(samples, axis=0)) != len(samples):
            raise ValueError(f"block {tuple(key)} has duplicated samples")
        off_a = _shell_offsets(orbitals[key.first_atom_type])[a]
        off_b = _shell_offsets(orbitals[key.second_atom_type])[b]
        for g, (nums, offsets) in enumerate(layouts):
            mask = group_of[system] == g
            if not np.any(mask):
                continue
            pos = position[system[mask]][:, None, None]
            I = samples[mask, 1].astype(np.int64)
            J = samples[mask, 2].astype(np.int64)
            _check_pairs(key, I, J, nums)
            vals = values[mask]
            ia = _index_grids(offsets, I, off_a, key.l_i)
            jb = _index_grids(offsets, J, off_b, key.l_j)
            out = outputs[g]
            if key.block_type in (1, -1):
                # H^+ and H^- live in separate keys: each adds its part of H_ij and H_ji,
                # H_ij = (H^+ + H^-) / sqrt2 and H_ji = (H^+ - H^-) / sqrt2
                ja = _index_grids(offsets, J, off_a, key.l_i)
                ib = _index_grids(offsets, I, off_b, key.l_j)
                h_ij = vals / np.sqrt(2.0)
                h_ji = key.block_type * h_ij
                if a == b:
                    # same shell: H_ji^{aa} = (H_ij^{aa})^T, symmetrise the two estimates
                    h_ij, h_ji = (
                        0.5 * (h_ij + np.swapaxes(h_ji, 1, 2)),
                        0.5 * (h_ji + np.swapaxes(h_ij, 1, 2)),
                    )
                out[pos, ia[:, :, None], jb[:, None, :]] += h_ij
                out[pos, ja[:, :, None], ib[:, None, :]] += h_ji
                if a != b:
                    out[pos, jb[:, :, None], ia[:, None, :]] += np.swapaxes(h_ij, 1, 2)
                    out[pos, ib[:, :, None], ja[:, None, :]] += np.swapaxes(h_ji, 1, 2)
            elif key.block_type == 0 and a == b:
                out[pos, ia[:, :, None], jb[:, None, :]] = 0.5 * (vals + np.swapaxes(vals, 1, 2))
            else:
                out[pos, ia[:, :, None], jb[:, None, :]] = vals
                out[pos, jb[:, :, None], ia[:, None, :]] = np.swapaxes(vals, 1, 2)

    result = [outputs[group_of[s]][position[s]] for s in range(n_systems)]
    return result[0] if single else result


def _shell_positions(key: BlockKey, orbitals) -> tuple[int, int]:
    for z in (key.first_atom_type, key.second_atom_type):
        if z not in orbitals:
            raise ValueError(f"block {tuple(key)}: species {z} has no entry in `orbitals`")
    try:
        a = orbitals[key.first_atom_type].index((key.n_i, key.l_i))
        b = orbitals[key.second_atom_type].index((key.n_j, key.l_j))
    except ValueError:
        raise ValueError(
            f"block {tuple(key)}: shell (n, l) not in `orbitals` "
            f"({key.first_atom_type}: {orbitals[key.first_atom_type]}, "
            f"{key.second_atom_type}: {orbitals[key.second_atom_type]})"
        ) from None
    if key.block_type in (0, 1, -1):
        if key.first_atom_type != key.second_atom_type:
            raise ValueError(f"block {tuple(key)}: block type {key.block_type} needs equal species")
        if a > b:
            raise ValueError(
                f"block {tuple(key)}: for block type {key.block_type} the first shell must not "
                "come after the second one in the species' shell list"
            )
    elif key.first_atom_type >= key.second_atom_type:
        raise ValueError(
            f"block {tuple(key)}: block type 2 needs first_atom_type < second_atom_type (lower Z first)"
        )
    return a, b


def _check_pairs(key: BlockKey, I: np.ndarray, J: np.ndarray, nums: np.ndarray) -> None:
    n_atoms = len(nums)
    if I.min() < 0 or J.min() < 0 or max(I.max(), J.max()) >= n_atoms:
        raise ValueError(f"block {tuple(key)} has samples for atoms outside the structure "
                         f"({n_atoms} atoms)")
    bad = (nums[I] != key.first_atom_type) | (nums[J] != key.second_atom_type)
    if key.block_type == 0:
        bad |= I != J
    elif key.block_type in (1, -1):
        bad |= I >= J
    if np.any(bad):
        k = int(np.flatnonzero(bad)[0])
        raise ValueError(
            f"block {tuple(key)}: sample atoms ({int(I[k])}, {int(J[k])}) with species "
            f"({int(nums[I[k]])}, {int(nums[J[k]])}) do not match the key (block type "
            f"{key.block_type} needs " + {0: "i == j", 1: "i < j", -1: "i < j", 2: "i, j"}[
                key.block_type] + ")"
        )
