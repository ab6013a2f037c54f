"""Neighbour lists: ``ase.Atoms`` -> flat pair arrays ``(i, j, cell shift, r_ij)`` in Angstrom.

The search runs in one Numba call over all frames (:mod:`ncsym.kernels.neighbors`): a cell
list per structure, every periodic image within the cutoff (also for cutoffs larger than the
cell, and for any triclinic cell), molecules with ``pbc=False``.  The list is full (``(i, j)``
and ``(j, i)``), and sorted by ``(system, first_atom, second_atom, cell_shift)``.
"""

from __future__ import annotations

import math
from contextlib import contextmanager
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from ._checks import check_frames, check_pair_distances, check_positive_float

__all__ = ["NeighborList", "neighbor_list"]

#: Upper bound on cell-list bins per structure, as a multiple of its number of atoms.
_BINS_PER_ATOM = 4

#: Cells with ``|a| |b| |c| / volume`` above this are binned in a Minkowski-reduced basis.
_MAX_ORTHOGONALITY_DEFECT = 2.0

#: Structures with fewer atoms (all frames together) are searched on one thread: a parallel
#: region costs more than it saves on small inputs, and far more on a busy machine, where
#: waiting for a descheduled worker thread can take a whole scheduler time slice.  From 128
#: atoms on (~0.1 ms of search, some 20 region launches) the search is parallel.
PARALLEL_MIN_ATOMS = 128

#: Largest expected number of pairs (``n^2 * sphere volume / cell volume`` summed over
#: periodic frames) before the search is refused: ~64 bytes per pair in the list alone.
MAX_EXPECTED_PAIRS = 1e8


@dataclass(frozen=True)
class FrameArrays:
    """Structures flattened into arrays (internal).

    Attributes
    ----------
    positions : float64 (n_atoms_total, 3)
        Concatenated positions (Angstrom).
    numbers : int64 (n_atoms_total,)
        Atomic numbers.
    atom_frame : int64 (n_atoms_total,)
        Frame of every atom.
    frame_start : int64 (n_frames + 1,)
        First row of every frame.
    cells : float64 (n_frames, 3, 3)
        Cell vectors as rows (zero for non-periodic frames).
    periodic : bool (n_frames,)
    """

    positions: np.ndarray
    numbers: np.ndarray
    atom_frame: np.ndarray
    frame_start: np.ndarray
    cells: np.ndarray
    periodic: np.ndarray

    @property
    def n_frames(self) -> int:
        return self.cells.shape[0]

    @property
    def local_index(self) -> np.ndarray:
        """Index of every atom inside its frame, int64 (n_atoms_total,)."""
        return np.arange(self.positions.shape[0], dtype=np.int64) - self.frame_start[self.atom_frame]


def frames_to_arrays(frames) -> FrameArrays:
    """Validate ``frames`` (see :func:`ncsym._checks.check_frames`) and flatten them."""
    frames = check_frames(frames)
    sizes = np.fromiter((len(a) for a in frames), dtype=np.int64, count=len(frames))
    frame_start = np.zeros(len(frames) + 1, dtype=np.int64)
    np.cumsum(sizes, out=frame_start[1:])
    positions = np.ascontiguousarray(np.concatenate([a.positions for a in frames]), dtype=np.float64)
    numbers = np.concatenate([a.numbers for a in frames]).astype(np.int64)
    periodic = np.fromiter((all(a.pbc) for a in frames), dtype=bool, count=len(frames))
    cells = np.zeros((len(frames), 3, 3), dtype=np.float64)
    for f in np.nonzero(periodic)[0]:
        cells[f] = frames[f].cell.array
    atom_frame = np.repeat(np.arange(len(frames), dtype=np.int64), sizes)
    return FrameArrays(positions, numbers, atom_frame, frame_start, cells, periodic)


@dataclass(frozen=True)
class NeighborList:
    """Pairs of atoms closer than a cutoff, one row per pair.

    Sorted by ``(system, first_atom, second_atom, cell_shift)``; both ``(i, j)`` and
    ``(j, i)`` are listed.

    Attributes
    ----------
    system : ndarray of int64, shape (n_pairs,)
        Frame index.
    first_atom, second_atom : ndarray of int64, shape (n_pairs,)
        Atom indices inside the frame (``i`` and ``j``).
    cell_shift : ndarray of int64, shape (n_pairs, 3)
        Integer lattice shift ``S`` (zero for molecules).
    vectors : ndarray of float64, shape (n_pairs, 3)
        ``r_ij = r_j - r_i + S @ cell`` (Angstrom; ``cell`` rows are lattice vectors).
    """

    system: NDArray[np.int64]
    first_atom: NDArray[np.int64]
    second_atom: NDArray[np.int64]
    cell_shift: NDArray[np.int64]
    vectors: NDArray[np.float64]

    def __len__(self) -> int:
        return self.system.shape[0]

    @property
    def distances(self) -> NDArray[np.float64]:
        """``|r_ij|`` (Angstrom), shape (n_pairs,)."""
        return np.sqrt(np.einsum("ij,ij->i", self.vectors, self.vectors))


def _boxes(arrays: FrameArrays, cutoff: float):
    """Binning boxes, bins and search ranges for every frame (vectorised over frames)."""
    from .kernels.neighbors import box_geometry

    n_frames = arrays.n_frames
    boxes = np.zeros((n_frames, 3, 3))
    origins = np.zeros((n_frames, 3))
    transforms = np.broadcast_to(np.eye(3, dtype=np.int64), (n_frames, 3, 3)).copy()
    periodic = arrays.periodic
    if periodic.any():
        c = arrays.cells[periodic].copy()
        volume, lengths, _, _ = box_geometry(c)
        n_per_frame = np.diff(arrays.frame_start)[periodic].astype(np.float64)
        expected = n_per_frame**2 * (4.0 / 3.0 * math.pi * cutoff**3) / volume
        if expected.sum() > MAX_EXPECTED_PAIRS:
            worst = int(np.argmax(expected))
            frame = int(np.nonzero(periodic)[0][worst])
            raise ValueError(
                f"`cutoff` {cutoff:g} Angstrom is too large for the cell of frame {frame} "
                f"(volume {volume[worst]:.3g} Angstrom^3, {int(n_per_frame[worst])} atoms): about "
                f"{expected.sum():.2g} pairs expected, more than {MAX_EXPECTED_PAIRS:.0e}"
            )
        # skewed cells make the fractional search box much larger than the cutoff sphere:
        # bin them in a Minkowski-reduced basis of the same lattice instead
        defect = np.prod(lengths, axis=1) / volume
        skewed = np.nonzero(defect > _MAX_ORTHOGONALITY_DEFECT)[0]
        if skewed.size:
            from ase.geometry import minkowski_reduce

            idx = np.nonzero(periodic)[0]
            for s in skewed:
                reduced, op = minkowski_reduce(c[s])
                c[s] = reduced
                transforms[idx[s]] = op
        boxes[periodic] = c
    molecules = ~periodic
    if molecules.any():
        lower = np.minimum.reduceat(arrays.positions, arrays.frame_start[:-1], axis=0)[molecules]
        upper = np.maximum.reduceat(arrays.positions, arrays.frame_start[:-1], axis=0)[molecules]
        lengths = np.maximum(upper - lower, cutoff)
        origins[molecules] = lower
        idx = np.nonzero(molecules)[0]
        for k in range(3):
            boxes[idx, k, k] = lengths[:, k]
    # plane distances of an axis-aligned box are its side lengths
    _, _, plane_distances, inv_boxes = box_geometry(boxes)
    n_bins = np.maximum(np.floor(plane_distances / cutoff), 1.0)
    n_atoms = np.diff(arrays.frame_start).astype(np.float64)
    limit = np.maximum(_BINS_PER_ATOM * n_atoms, 27.0)
    total = np.prod(n_bins, axis=1)
    too_many = total > limit
    if too_many.any():
        scale = (limit[too_many] / total[too_many]) ** (1.0 / 3.0)
        n_bins[too_many] = np.maximum(np.floor(n_bins[too_many] * scale[:, None]), 1.0)
    n_search = np.ceil(cutoff * n_bins / plane_distances + 1e-9)
    return (
        np.ascontiguousarray(boxes),
        np.ascontiguousarray(inv_boxes),
        transforms,
        origins,
        n_bins.astype(np.int64),
        n_search.astype(np.int64),
    )


@contextmanager
def single_thread_below(work: float, threshold: float):
    """Run the Numba kernels called inside on one thread when ``work < threshold``.

    Uses ``numba.set_num_threads`` (thread-local) and restores the previous value on exit,
    so no setting outlives the call.
    """
    if work >= threshold:
        yield
        return
    import numba

    previous = numba.get_num_threads()
    if previous == 1:
        yield
        return
    numba.set_num_threads(1)
    try:
        yield
    finally:
        numba.set_num_threads(previous)


def _pairs_from_arrays(arrays: FrameArrays, cutoff: float, self_pairs: bool):
    """Global-index pair arrays ``(first, second, shifts, vectors)`` (internal)."""
    from .kernels.neighbors import neighbor_pairs

    boxes, inv_boxes, transforms, origins, n_bins, n_search = _boxes(arrays, cutoff)
    with single_thread_below(arrays.positions.shape[0], PARALLEL_MIN_ATOMS):
        first, second, shifts, vectors = neighbor_pairs(
            arrays.positions, arrays.atom_frame, arrays.cells, boxes, inv_boxes, transforms, origins,
            arrays.periodic, n_bins, n_search, float(cutoff), bool(self_pairs),
        )
    distances = np.sqrt(np.einsum("ij,ij->i", vectors, vectors))
    if self_pairs:
        real = (first != second) | np.any(shifts != 0, axis=1)
        check_distances = np.where(real, distances, math.inf)
    else:
        check_distances = distances
    if np.any(check_distances < 1.0):
        local = arrays.local_index
        check_pair_distances(
            arrays.atom_frame[first], local[first], local[second], check_distances
        )
    return first, second, shifts, vectors


def neighbor_list(frames, cutoff: float, *, self_pairs: bool = False) -> NeighborList:
    """Full neighbour list of one or several structures.

    Parameters
    ----------
    frames : ase.Atoms or list of ase.Atoms
        Molecules (``pbc=False``, the cell is ignored) or periodic structures (``pbc=True``,
        any non-singular cell; every periodic image within the cutoff is included).
    cutoff : float
        Pairs with ``|r_ij| < cutoff`` (Angstrom) are kept.
    self_pairs : bool, optional
        Also list every atom with itself at zero shift (``r_ii = 0``).

    Returns
    -------
    NeighborList
        Sorted by ``(system, first_atom, second_atom, cell_shift)``.

    Raises
    ------
    TypeError
        If ``frames`` are not ``ase.Atoms``.
    ValueError
        For empty structures, NaN/inf positions, mixed ``pbc``, zero or singular periodic
        cells, a non-positive ``cutoff``, or atoms closer than 1e-8 Angstrom (periodic
        images included).
    """
    cutoff = check_positive_float(cutoff, "cutoff")
    arrays = frames_to_arrays(frames)
    first, second, shifts, vectors = _pairs_from_arrays(arrays, cutoff, self_pairs)
    local = arrays.local_index
    return NeighborList(
        system=arrays.atom_frame[first],
        first_atom=local[first],
        second_atom=local[second],
        cell_shift=shifts,
        vectors=vectors,
    )
