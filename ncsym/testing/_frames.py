"""Structure transformations used by the equivariance checks, and readable structure dumps.

Every function returns a new ``ase.Atoms``; the input is never modified.  Rotations act on
column vectors (``r' = R r``), so positions (rows) become ``positions @ R.T``.
"""

from __future__ import annotations

import numpy as np

__all__ = [
    "check_frame",
    "rotate_frame",
    "permute_frame",
    "translate_frame",
    "shift_atoms",
    "pair_vectors",
    "describe_frame",
]


def check_frame(frame, name: str = "frame"):
    """Raise ``TypeError``/``ValueError`` unless ``frame`` is a usable ``ase.Atoms``."""
    import ase

    if not isinstance(frame, ase.Atoms):
        raise TypeError(f"`{name}` must be an ase.Atoms, got {type(frame).__name__}")
    positions = np.asarray(frame.positions)
    if not np.all(np.isfinite(positions)):
        bad = sorted({int(i) for i in np.nonzero(~np.isfinite(positions))[0]})
        raise ValueError(f"`{name}` positions contain NaN or infinite values for atoms {bad}")
    if not np.all(np.isfinite(np.asarray(frame.cell))):
        raise ValueError(f"`{name}` cell contains NaN or infinite values")
    return frame


def rotate_frame(frame, rotation: np.ndarray):
    """Apply an orthogonal matrix to positions and cell.

    For an improper ``R = -R'`` the cell vectors are transformed with ``R'`` instead: the
    lattice spanned by ``-R' a, -R' b, -R' c`` is the same set of points as the one spanned by
    ``R' a, R' b, R' c``, and this keeps a right-handed cell.  Cell-shift labels of a given
    physical pair then change sign, which the checks handle by matching pairs on their
    separation vector.
    """
    rotation = np.asarray(rotation, dtype=np.float64)
    out = frame.copy()
    out.positions = np.asarray(frame.positions) @ rotation.T
    cell_map = rotation if np.linalg.det(rotation) > 0 else -rotation
    out.set_cell(np.asarray(frame.cell) @ cell_map.T, scale_atoms=False)
    return out


def permute_frame(frame, permutation: np.ndarray):
    """Reorder atoms: atom ``k`` of the result is atom ``permutation[k]`` of ``frame``."""
    return frame[np.asarray(permutation, dtype=np.int64)]


def translate_frame(frame, translation: np.ndarray):
    """Move every atom by the same vector (Angstrom)."""
    out = frame.copy()
    out.positions = np.asarray(frame.positions) + np.asarray(translation, dtype=np.float64)
    return out


def shift_atoms(frame, lattice_shifts: np.ndarray):
    """Move atom ``i`` by the lattice vector ``lattice_shifts[i] @ cell``."""
    out = frame.copy()
    shifts = np.asarray(lattice_shifts, dtype=np.float64)
    out.positions = np.asarray(frame.positions) + shifts @ np.asarray(frame.cell)
    return out


def pair_vectors(frame, first: np.ndarray, second: np.ndarray, shifts: np.ndarray) -> np.ndarray:
    """``r_ij = x_j - x_i + shift @ cell`` (featomic/metatensor convention), shape (n, 3)."""
    positions = np.asarray(frame.positions)
    cell = np.asarray(frame.cell)
    return positions[second] - positions[first] + np.asarray(shifts, dtype=np.float64) @ cell


def _floats(array) -> str:
    """Nested list of floats with round-trip precision."""
    return repr(np.asarray(array, dtype=np.float64).tolist())


def describe_frame(frame) -> str:
    """A line of Python that rebuilds ``frame`` exactly (numbers, positions, cell, pbc)."""
    numbers = [int(z) for z in frame.numbers]
    pbc = [bool(p) for p in frame.pbc]
    return (
        f"ase.Atoms(numbers={numbers}, positions={_floats(frame.positions)}, "
        f"cell={_floats(np.asarray(frame.cell))}, pbc={pbc})"
    )
