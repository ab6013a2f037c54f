"""Input validation shared by every public entry point.

Messages follow one shape: the argument in backticks, what was expected, what was received.
"""

from __future__ import annotations

import math
import numbers

import numpy as np

from .conventions import MAX_ANGULAR


def check_int(value, name: str, *, minimum: int | None = None, maximum: int | None = None) -> int:
    """Return ``value`` as an ``int`` or raise ``TypeError``/``ValueError``."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        if isinstance(value, numbers.Real) and float(value).is_integer():
            raise TypeError(f"`{name}` must be an integer, got {value!r} ({type(value).__name__})")
        raise TypeError(f"`{name}` must be an integer, got {value!r} ({type(value).__name__})")
    value = int(value)
    if minimum is not None and value < minimum:
        raise ValueError(f"`{name}` must be >= {minimum}, got {value}")
    if maximum is not None and value > maximum:
        raise ValueError(f"`{name}` must be <= {maximum}, got {value}")
    return value


def check_angular(value, name: str = "max_angular", maximum: int = MAX_ANGULAR) -> int:
    """An angular order in ``[0, maximum]``."""
    return check_int(value, name, minimum=0, maximum=maximum)


def check_positive_float(value, name: str, *, allow_zero: bool = False) -> float:
    """A finite float > 0 (or >= 0 with ``allow_zero``)."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"`{name}` must be a real number, got {value!r} ({type(value).__name__})")
    value = float(value)
    if not np.isfinite(value):
        raise ValueError(f"`{name}` must be finite, got {value}")
    if value < 0 or (value == 0 and not allow_zero):
        bound = ">= 0" if allow_zero else "> 0"
        raise ValueError(f"`{name}` must be {bound}, got {value}")
    return value


def check_array(
    array,
    name: str,
    *,
    ndim: int | None = None,
    shape: tuple | None = None,
    dtype=np.float64,
    finite: bool = True,
) -> np.ndarray:
    """Convert to a C-contiguous array of ``dtype`` and check dimensions, shape and values.

    ``shape`` may hold ``None`` for free axes.
    """
    try:
        out = np.ascontiguousarray(array, dtype=dtype)
    except (TypeError, ValueError) as exc:
        raise TypeError(f"`{name}` must be convertible to a {np.dtype(dtype)} array: {exc}") from None
    if ndim is not None and out.ndim != ndim:
        raise ValueError(f"`{name}` must have {ndim} dimensions, got shape {out.shape}")
    if shape is not None:
        if out.ndim != len(shape) or any(
            s is not None and s != o for s, o in zip(shape, out.shape, strict=False)
        ):
            want = "(" + ", ".join("n" if s is None else str(s) for s in shape) + ")"
            raise ValueError(f"`{name}` must have shape {want}, got {out.shape}")
    if finite and out.dtype.kind == "f" and not np.all(np.isfinite(out)):
        raise ValueError(f"`{name}` contains NaN or infinite values")
    return out


# ------------------------------------------------------------------ structures (ase.Atoms)
#: Two atoms (or an atom and a periodic image) closer than this (Angstrom) are an error.
MIN_ATOM_DISTANCE = 1e-8


def check_frames(frames) -> list:
    """Validate structures: one ``ase.Atoms`` or a list/tuple of them; returns a list.

    Checks the type of every frame, that it has atoms, finite positions, periodic boundary
    conditions all ``True`` or all ``False``, and, for periodic frames, a finite, non-zero,
    non-singular cell.  Overlapping atoms are found by the neighbour search
    (:func:`check_pair_distances`).
    """
    import ase

    if isinstance(frames, ase.Atoms):
        frames = [frames]
    elif isinstance(frames, (list, tuple)):
        frames = list(frames)
    else:
        raise TypeError(
            f"`frames` must be an ase.Atoms or a list of ase.Atoms, got {type(frames).__name__}"
        )
    if len(frames) == 0:
        raise ValueError("`frames` is empty: expected at least one ase.Atoms")
    for index, atoms in enumerate(frames):
        if not isinstance(atoms, ase.Atoms):
            raise TypeError(f"`frames[{index}]` must be an ase.Atoms, got {type(atoms).__name__}")
        if len(atoms) == 0:
            raise ValueError(f"frame {index} has no atoms: every structure needs at least one atom")
        positions = atoms.positions
        # one reduction on the usual path (per-frame cost matters for batches of molecules)
        with np.errstate(over="ignore", invalid="ignore"):
            total = float(np.add.reduce(positions, axis=None))
        if not math.isfinite(total):
            finite = np.isfinite(positions).all(axis=1)
            if not finite.all():
                bad = np.nonzero(~finite)[0].tolist()
                raise ValueError(
                    f"positions of frame {index} contain NaN or infinite values for atoms {bad}"
                )
            raise ValueError(  # finite values whose sum overflows
                f"positions of frame {index} are too large (their sum is not finite)"
            )
        pbc = [bool(p) for p in atoms.pbc]
        if any(pbc) and not all(pbc):
            raise ValueError(
                f"frame {index} has mixed periodic boundary conditions pbc={pbc}: only "
                "fully periodic (pbc=True) or non-periodic (pbc=False) structures are supported"
            )
        if all(pbc):
            _check_cell(atoms.cell.array, index)
    return frames


def _check_cell(cell, index: int) -> None:
    """Finite, non-zero, non-singular 3x3 cell (plain floats: a few microseconds)."""
    c = [[float(x) for x in row] for row in np.asarray(cell, dtype=np.float64)]
    if not all(math.isfinite(x) for row in c for x in row):
        raise ValueError(f"the cell of frame {index} contains NaN or infinite values")
    if all(abs(x) < 1e-9 for row in c for x in row):
        raise ValueError(
            f"frame {index} is periodic but its cell is zero: set `pbc=False` for a "
            "molecule, or give the cell"
        )
    lengths = [math.sqrt(sum(x * x for x in row)) for row in c]
    (a0, a1, a2), (b0, b1, b2), (d0, d1, d2) = c
    volume = abs(a0 * (b1 * d2 - b2 * d1) - a1 * (b0 * d2 - b2 * d0) + a2 * (b0 * d1 - b1 * d0))
    if min(lengths) == 0 or volume <= 1e-10 * lengths[0] * lengths[1] * lengths[2]:
        raise ValueError(
            f"the cell of frame {index} is singular (volume {volume:.3g} Angstrom^3, "
            f"vector lengths {[round(x, 6) for x in lengths]}): periodic structures need three "
            "linearly independent cell vectors"
        )


def check_pair_distances(system, first, second, distances, minimum: float = MIN_ATOM_DISTANCE):
    """Raise ``ValueError`` if two atoms (or an atom and a periodic image) overlap.

    ``system``, ``first``, ``second`` (frame-local indices) and ``distances`` (Angstrom) are
    arrays over the pairs of a neighbour list.
    """
    close = np.nonzero(distances < minimum)[0]
    if close.size == 0:
        return
    p = int(close[0])
    i, j, f, d = int(first[p]), int(second[p]), int(system[p]), float(distances[p])
    if i == j:
        raise ValueError(
            f"atom {i} of frame {f} is {d:.3g} Angstrom from its own periodic image "
            f"(minimum {minimum:g}): check the cell"
        )
    raise ValueError(
        f"atoms {min(i, j)} and {max(i, j)} of frame {f} are {d:.3g} Angstrom apart "
        f"(minimum {minimum:g}): remove duplicated or overlapping atoms"
    )


def check_species(species, name: str = "species") -> np.ndarray:
    """A non-empty list of unique atomic numbers (integers >= 0), returned sorted (int64)."""
    if isinstance(species, (str, bytes)) or not hasattr(species, "__iter__"):
        raise TypeError(f"`{name}` must be a list of atomic numbers, got {species!r}")
    values = list(species)
    for value in values:
        if isinstance(value, bool) or not isinstance(value, (numbers.Integral, np.integer)):
            raise TypeError(
                f"`{name}` must contain integer atomic numbers, got {value!r} "
                f"({type(value).__name__})"
            )
    out = np.asarray(values, dtype=np.int64)
    if out.size == 0:
        raise ValueError(f"`{name}` must contain at least one atomic number, got []")
    if np.any(out < 0):
        raise ValueError(f"`{name}` must contain atomic numbers >= 0, got {out.tolist()}")
    if np.unique(out).size != out.size:
        raise ValueError(f"`{name}` must contain unique atomic numbers, got {out.tolist()}")
    return np.sort(out)
