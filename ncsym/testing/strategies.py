"""Hypothesis strategies for equivariance tests: rotations, structures, permutations, shifts.

Every strategy shrinks towards a small, readable counterexample: rotations towards the
identity, structures towards few atoms of the first species on grid points, permutations
towards the identity, lattice shifts towards zero.  The module constants (``IDENTITY``,
``INVERSION``, ``HALF_TURNS``, :func:`atoms_on_axis`, ...) are plain values meant for
``@example`` to pin the cases random draws rarely hit.

Examples
--------
>>> from hypothesis import example, given
>>> from ncsym.testing import assert_rotation_equivariant
>>> from ncsym.testing import strategies as nst
>>> @given(frame=nst.molecules(species=[1, 8]), rotation=nst.rotations(improper=None))
... @example(frame=nst.atoms_on_axis(), rotation=nst.HALF_TURNS["z"])
... def test_my_descriptor(frame, rotation):
...     assert_rotation_equivariant(my_descriptor, frame, rotation)
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from hypothesis import assume
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from ..rotations import quaternion_to_matrix

__all__ = [
    "IDENTITY",
    "INVERSION",
    "HALF_TURNS",
    "PINNED_ROTATIONS",
    "MIN_QUATERNION_NORM",
    "quaternions",
    "rotations",
    "improper_rotations",
    "pinned_rotations",
    "molecules",
    "periodic_cells",
    "structures",
    "atom_permutations",
    "lattice_shifts",
    "hyperparameters",
    "featomic_hypers",
    "atoms_on_axis",
    "single_atom",
    "PINNED_MOLECULES",
]

#: Draws whose quaternion is shorter than this are rejected with ``assume`` (0 / 0 otherwise).
MIN_QUATERNION_NORM = 1e-3
#: Grid spacing of structure strategies, in units of ``min_distance``.
GRID_SPACING_FACTOR = 1.6
#: Largest displacement of an atom from its grid point, in units of ``min_distance``.
JITTER_FACTOR = 0.3
#: Default chemical species (H, C, O) and smallest interatomic distance (Angstrom).
DEFAULT_SPECIES = (1, 6, 8)
DEFAULT_MIN_DISTANCE = 0.9

IDENTITY = np.eye(3)
INVERSION = -np.eye(3)


def _half_turn(axis) -> np.ndarray:
    n = np.asarray(axis, dtype=np.float64)
    n = n / np.linalg.norm(n)
    return 2.0 * np.outer(n, n) - np.eye(3)


#: 180-degree rotations about x, y, z and the diagonals ``(1, 1, 0)`` and ``(1, 1, 1)``.
HALF_TURNS = {
    "x": _half_turn([1, 0, 0]),
    "y": _half_turn([0, 1, 0]),
    "z": _half_turn([0, 0, 1]),
    "xy": _half_turn([1, 1, 0]),
    "xyz": _half_turn([1, 1, 1]),
}

#: Special orthogonal matrices for ``@example``: identity, inversion, half turns, a quarter turn
#: about z, a mirror plane (z -> -z) and a tiny rotation (about 1e-8 rad).
PINNED_ROTATIONS = {
    "identity": IDENTITY,
    "inversion": INVERSION,
    **{f"half_turn_{k}": v for k, v in HALF_TURNS.items()},
    "quarter_turn_z": np.array([[0.0, -1.0, 0.0], [1.0, 0.0, 0.0], [0.0, 0.0, 1.0]]),
    "mirror_z": np.diag([1.0, 1.0, -1.0]),
    "tiny": quaternion_to_matrix([1.0, 1e-8, -2e-8, 3e-8]),
}


@st.composite
def quaternions(draw) -> np.ndarray:
    """Unit quaternions ``(w, x, y, z)``, shrinking towards ``(1, 0, 0, 0)``.

    Four components are drawn in ``[-1, 1]`` (``w = 1 - u`` with ``u`` in ``[0, 2]`` so that
    shrinking ``u`` to 0 gives the identity) and normalised; draws shorter than
    :data:`MIN_QUATERNION_NORM` are rejected with ``assume``.  Normalised independent
    components give every unit quaternion, hence every rotation.
    """
    u = draw(st.floats(0.0, 2.0, allow_nan=False))
    xyz = [draw(st.floats(-1.0, 1.0, allow_nan=False)) for _ in range(3)]
    q = np.array([1.0 - u, *xyz])
    norm = float(np.linalg.norm(q))
    assume(norm > MIN_QUATERNION_NORM)
    return q / norm


@st.composite
def rotations(draw, improper: bool | None = False) -> np.ndarray:
    """3x3 orthogonal matrices acting on column vectors.

    Parameters
    ----------
    improper : bool or None, default False
        False: proper rotations (det +1); True: improper ones ``-R`` (det -1); None: either.

    Returns
    -------
    strategy of ndarray of float64, shape (3, 3)
        Shrinks towards the identity (or the inversion for improper ones).
    """
    rot = quaternion_to_matrix(draw(quaternions()))
    flip = improper if improper is not None else draw(st.booleans())
    return -rot if flip else rot


def improper_rotations():
    """Rotations combined with inversion (det -1); see :func:`rotations`."""
    return rotations(improper=True)


def pinned_rotations():
    """One of :data:`PINNED_ROTATIONS` (identity, inversion, half turns, ...)."""
    return st.sampled_from(list(PINNED_ROTATIONS.values()))


def _check_species(species) -> tuple[int, ...]:
    values = tuple(int(z) for z in species)
    if not values or any(z < 1 or z > 118 for z in values):
        raise ValueError(f"`species` must be atomic numbers in 1..118, got {species!r}")
    return values


def _min_distance_ok(positions: np.ndarray, cell, min_distance: float) -> bool:
    """Whether all atoms (and, with a ``cell``, their periodic images) are far enough apart."""
    if len(positions) < 2:
        return True
    if cell is None:
        delta = positions[:, None, :] - positions[None, :, :]
        dist = np.linalg.norm(delta, axis=-1)
    else:
        from ase.geometry import get_distances

        _, dist = get_distances(positions, cell=cell, pbc=True)
    dist = dist[np.triu_indices(len(positions), 1)]
    return bool(dist.min() >= min_distance)


@st.composite
def molecules(
    draw,
    species: Sequence[int] = DEFAULT_SPECIES,
    min_atoms: int = 1,
    max_atoms: int = 6,
    min_distance: float = DEFAULT_MIN_DISTANCE,
):
    """Non-periodic ``ase.Atoms`` with atoms at least ``min_distance`` apart.

    Atoms sit on distinct points of a cubic grid of spacing ``GRID_SPACING_FACTOR *
    min_distance`` (centred on the origin), each displaced by up to ``JITTER_FACTOR *
    min_distance`` per Cartesian component; draws that end up too close are rejected.

    Parameters
    ----------
    species : sequence of int
        Atomic numbers to draw from.
    min_atoms, max_atoms : int
        Number of atoms (inclusive bounds).
    min_distance : float
        Smallest interatomic distance, Angstrom.

    Returns
    -------
    strategy of ase.Atoms
        Shrinks towards few atoms of ``species[0]`` on grid points.
    """
    import ase

    species = _check_species(species)
    if not 0 <= min_atoms <= max_atoms:
        raise ValueError(f"need 0 <= min_atoms <= max_atoms, got {min_atoms}, {max_atoms}")
    spacing = GRID_SPACING_FACTOR * min_distance
    side = max(2, int(np.ceil(max_atoms ** (1.0 / 3.0))) + 1)
    cells = draw(
        st.lists(
            st.integers(0, side**3 - 1), min_size=min_atoms, max_size=max_atoms, unique=True
        )
    )
    n = len(cells)
    grid = np.array([np.unravel_index(c, (side, side, side)) for c in cells], dtype=np.float64)
    grid = grid.reshape(n, 3)
    jitter = JITTER_FACTOR * min_distance
    offsets = draw(hnp.arrays(np.float64, (n, 3), elements=st.floats(-jitter, jitter)))
    positions = (grid - 0.5 * (side - 1)) * spacing + offsets
    numbers = draw(st.lists(st.sampled_from(species), min_size=n, max_size=n))
    assume(_min_distance_ok(positions, None, min_distance))
    return ase.Atoms(numbers=numbers, positions=positions, pbc=False)


@st.composite
def periodic_cells(
    draw,
    species: Sequence[int] = DEFAULT_SPECIES,
    min_atoms: int = 1,
    max_atoms: int = 4,
    min_distance: float = DEFAULT_MIN_DISTANCE,
    min_length: float = 3.5,
    max_length: float = 6.0,
    max_skew: float = 0.2,
):
    """Fully periodic ``ase.Atoms`` in a mildly skewed cell.

    Cell vectors are ``a_i = L_i e_i + sum_{j != i} s_ij L_i e_j`` with ``L_i`` in
    ``[min_length, max_length]`` and ``|s_ij| <= max_skew`` (right-handed, far from
    degenerate).  Atoms sit on distinct points of a fractional grid, displaced by up to
    ``JITTER_FACTOR * min_distance``; draws with two atoms (or periodic images) closer than
    ``min_distance`` are rejected.

    Parameters
    ----------
    species : sequence of int
        Atomic numbers to draw from.
    min_atoms, max_atoms : int
        Number of atoms (inclusive bounds).
    min_distance : float
        Smallest distance between atoms and periodic images, Angstrom.
    min_length, max_length : float
        Range of cell-vector lengths along their axis, Angstrom.
    max_skew : float
        Largest off-diagonal cell entry relative to the diagonal, in ``[0, 0.4]``.

    Returns
    -------
    strategy of ase.Atoms
        ``pbc = (True, True, True)``; shrinks towards few atoms of ``species[0]`` on grid
        points of a cubic cell with round side lengths.
    """
    import ase

    species = _check_species(species)
    if not 0.0 <= max_skew <= 0.4:
        raise ValueError(f"`max_skew` must be in [0, 0.4], got {max_skew}")
    if not 0 < min_length <= max_length:
        raise ValueError(f"need 0 < min_length <= max_length, got {min_length}, {max_length}")
    lengths = [draw(st.floats(min_length, max_length)) for _ in range(3)]
    skew = draw(hnp.arrays(np.float64, (3, 3), elements=st.floats(-max_skew, max_skew)))
    np.fill_diagonal(skew, 1.0)
    cell = skew * np.asarray(lengths)[:, None]
    spacing = GRID_SPACING_FACTOR * min_distance
    side = [max(1, int(np.floor(length / spacing))) for length in lengths]
    n_grid = int(np.prod(side))
    assume(n_grid >= min_atoms)
    cells = draw(
        st.lists(
            st.integers(0, n_grid - 1),
            min_size=min_atoms,
            max_size=min(max_atoms, n_grid),
            unique=True,
        )
    )
    n = len(cells)
    fractional = np.array([np.unravel_index(c, side) for c in cells], dtype=np.float64)
    fractional = fractional.reshape(n, 3) / np.asarray(side, dtype=np.float64)
    jitter = JITTER_FACTOR * min_distance
    offsets = draw(hnp.arrays(np.float64, (n, 3), elements=st.floats(-jitter, jitter)))
    positions = fractional @ cell + offsets
    numbers = draw(st.lists(st.sampled_from(species), min_size=n, max_size=n))
    assume(_min_distance_ok(positions, cell, min_distance))
    return ase.Atoms(numbers=numbers, positions=positions, cell=cell, pbc=True)


def structures(species: Sequence[int] = DEFAULT_SPECIES, periodic: bool | None = None, **kwargs):
    """Molecules, periodic cells or either (``periodic=None``); ``kwargs`` go to both."""
    if periodic is True:
        return periodic_cells(species, **kwargs)
    if periodic is False:
        return molecules(species, **kwargs)
    return st.one_of(molecules(species, **kwargs), periodic_cells(species, **kwargs))


def atom_permutations(n_atoms: int):
    """Permutations of ``range(n_atoms)`` as int64 arrays, shrinking towards the identity.

    Atom ``k`` of ``frame[permutation]`` is atom ``permutation[k]`` of ``frame``.
    """
    return st.permutations(list(range(int(n_atoms)))).map(lambda p: np.asarray(p, dtype=np.int64))


def lattice_shifts(n_atoms: int, max_shift: int = 2, pbc: Sequence[bool] = (True, True, True)):
    """Integer shifts ``(n_atoms, 3)`` in ``[-max_shift, max_shift]``, zero along non-periodic axes.

    Atom ``i`` moves by ``shifts[i] @ cell``; shrinks towards all zeros.
    """
    mask = np.asarray(pbc, dtype=bool)

    def zero_open(shifts: np.ndarray) -> np.ndarray:
        shifts = shifts.copy()
        shifts[:, ~mask] = 0
        return shifts

    return hnp.arrays(
        np.int64, (int(n_atoms), 3), elements=st.integers(-max_shift, max_shift)
    ).map(zero_open)


@st.composite
def hyperparameters(
    draw,
    cutoff: tuple[float, float] = (2.5, 5.0),
    cutoff_width: tuple[float, float] = (0.1, 1.0),
    density_width: tuple[float, float] = (0.2, 0.5),
    max_radial: tuple[int, int] = (1, 4),
    max_angular: tuple[int, int] = (0, 4),
) -> dict:
    """Spherical-expansion hyperparameters with ncsym's names (DESIGN.md).

    Each argument is an inclusive ``(low, high)`` range.  Returns a dict with ``cutoff``
    (Angstrom), ``cutoff_width`` (Angstrom, smaller than the cutoff), ``density_width``
    (Gaussian sigma, Angstrom), ``max_radial`` and ``max_angular``.  Shrinks towards the lower
    ends; :func:`featomic_hypers` converts to featomic's nested form.
    """
    radius = draw(st.floats(*cutoff))
    width = draw(st.floats(cutoff_width[0], min(cutoff_width[1], 0.5 * radius)))
    return {
        "cutoff": radius,
        "cutoff_width": width,
        "density_width": draw(st.floats(*density_width)),
        "max_radial": draw(st.integers(*max_radial)),
        "max_angular": draw(st.integers(*max_angular)),
    }


def featomic_hypers(hypers: dict) -> dict:
    """featomic ``SphericalExpansion`` keyword arguments from :func:`hyperparameters` output.

    featomic's ``max_radial = N`` means ``N + 1`` radial functions, as in ncsym.
    """
    return {
        "cutoff": {
            "radius": float(hypers["cutoff"]),
            "smoothing": {"type": "ShiftedCosine", "width": float(hypers["cutoff_width"])},
        },
        "density": {"type": "Gaussian", "width": float(hypers["density_width"])},
        "basis": {
            "type": "TensorProduct",
            "max_angular": int(hypers["max_angular"]),
            "radial": {"type": "Gto", "max_radial": int(hypers["max_radial"])},
        },
    }


# ----------------------------------------------------------------------------- pinned frames
def atoms_on_axis(axis: Sequence[float] = (0.0, 0.0, 1.0), numbers: Sequence[int] = (8, 6, 8)):
    """A linear molecule on a line through the origin (every atom on the rotation axis).

    Atoms sit at ``-1.16, 0, 1.16`` Angstrom along ``axis`` (a CO2-like chain by default), so
    half turns and rotations about ``axis`` map the structure onto itself.
    """
    import ase

    direction = np.asarray(axis, dtype=np.float64)
    direction = direction / np.linalg.norm(direction)
    n = len(numbers)
    offsets = (np.arange(n) - 0.5 * (n - 1)) * 1.16
    return ase.Atoms(numbers=list(numbers), positions=offsets[:, None] * direction, pbc=False)


def single_atom(number: int = 6):
    """One atom at the origin."""
    import ase

    return ase.Atoms(numbers=[number], positions=[[0.0, 0.0, 0.0]], pbc=False)


def _water():
    import ase

    return ase.Atoms(
        "OH2", positions=[[0.0, 0.0, 0.119], [0.0, 0.763, -0.477], [0.0, -0.763, -0.477]]
    )


#: Small named structures for ``@example``: built on access, each call returns a new Atoms.
PINNED_MOLECULES = {
    "single_atom": single_atom,
    "atoms_on_z_axis": atoms_on_axis,
    "dimer_on_x_axis": lambda: atoms_on_axis((1.0, 0.0, 0.0), (1, 1)),
    "water": _water,
}
