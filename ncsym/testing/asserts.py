"""Equivariance checks for any atomistic descriptor: numbers and readable assertion failures.

A *descriptor* is any callable taking one ``ase.Atoms`` and returning an ``ncsym.BlockMap``, a
``metatensor.TensorMap`` or arrays described by an :class:`ncsym.testing.ArrayLayout`.  Each check
computes the descriptor for a structure ``A`` and for a transformed copy ``T A`` and compares
block by block with the transformation rule of :mod:`ncsym.conventions`:

========================  =====================================================================
check                     rule for a block ``(lambda, sigma)``
========================  =====================================================================
``rotation``              ``X(R A)[s, :, p] = det(R)^((1 - sigma) / 2) D_lambda(R) X(A)[s, :, p]``
``inversion``             ``X(-A) = sigma (-1)^lambda X(A)``
``permutation``           ``X(P A)[p(s)] = X(A)[s]``: atom ``i`` becomes ``p(i)``, pair ``(i, j)``
                          becomes ``(p(i), p(j))``
``translation``           ``X(A + t) = X(A)``
``periodic``              ``X(A') = X(A)`` when atoms move by lattice vectors
``supercell`` (optional)  atom and pair samples of a supercell equal those of their image
                          in ``A`` (structure-level samples are skipped)
========================  =====================================================================

Samples are matched by their labels: ``system`` and other columns unchanged, atom columns
(``atom``, ``first_atom``, ``second_atom``, ``third_atom``) relabelled by the permutation.  Pairs
with ``cell_shift_a/b/c`` samples are matched by ``(first_atom, second_atom, r_ij)`` with
``r_ij = x_j - x_i + shift @ cell`` (featomic/metatensor convention, Angstrom) rather than by raw
shift labels, so a descriptor may legitimately relabel shifts when atoms are wrapped or the cell
is inverted.  Three-centre samples ``(first_atom, second_atom, third_atom)`` with
``cell_shift_a/b/c_2`` (of ``second_atom``) and ``cell_shift_a/b/c_3`` (of ``third_atom``) are
matched the same way by ``(i, j, k, r_ij, r_ik)``.  A pair ``(i, j)`` that appears only as
``(j, i)`` after a permutation (a triple ``(i, j, k)`` only as ``(i, k, j)``) is compared with
the exchanged sample times the block's ``block_type`` when it is +1 or -1 (DESIGN.md
symmetrised pairs ``(rho_ij ± rho_ji) / sqrt 2``, three-centre ``(T_ijk ± T_ikj) / sqrt 2``),
and times +1 otherwise.

Errors
------
The error of a block is ``|Delta|_F / max(|X|_F, norm_floor * max_b |X_b|_F)``: the Frobenius
norm of the difference between computed and expected values, relative to the block norm, with
near-empty blocks (e.g. odd-lambda blocks of centrosymmetric structures, which are zero up to
rounding) measured against a small fraction of the largest block instead.  A check passes when
every block error is at most ``rtol``.  Missing or extra blocks or samples count as an infinite
error.
"""

from __future__ import annotations

import numbers
import sys
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

import numpy as np

from ..rotations import check_rotation, random_rotation, wigner_d
from ._frames import (
    check_frame,
    describe_frame,
    pair_vectors,
    permute_frame,
    rotate_frame,
    shift_atoms,
    translate_frame,
)
from ._layout import (
    PAIR_COLUMNS,
    THIRD_ATOM_COLUMN,
    OutputError,
    _Block,
    format_key,
    normalise_output,
)

__all__ = [
    "DEFAULT_RTOL",
    "DEFAULT_NORM_FLOOR",
    "VECTOR_MATCH_TOLERANCE",
    "CHECKS",
    "EquivarianceError",
    "DescriptorError",
    "BlockError",
    "CheckResult",
    "equivariance_error",
    "assert_equivariant",
    "assert_rotation_equivariant",
    "assert_inversion_parity",
    "assert_permutation_equivariant",
    "assert_translation_invariant",
    "assert_periodic_invariant",
]

#: Default largest accepted block error (relative to the block norm).
DEFAULT_RTOL = 1e-10
#: Blocks whose norm is below this fraction of the largest block norm are measured against it.
DEFAULT_NORM_FLOOR = 1e-3
#: Two pair separation vectors (Angstrom) closer than this describe the same pair.
VECTOR_MATCH_TOLERANCE = 1e-6
#: Samples found on one side of a comparison only are accepted when all their values are below
#: this fraction of the block's norm (or of the norm floor): a pair exactly at a smooth cutoff
#: enters or leaves a neighbour list by round-off, which a rotation changes, and its features
#: vanish there.  Samples with non-vanishing values still fail the check.
VANISHING_SAMPLE = 1e-12
#: Largest translation drawn when none is given (Angstrom, per Cartesian component).
DEFAULT_MAX_TRANSLATION = 5.0
#: Largest lattice shift (per cell vector) drawn when none is given.
DEFAULT_MAX_LATTICE_SHIFT = 2

#: Checks run by :func:`assert_equivariant` (when applicable to the structure).
CHECKS = ("rotation", "inversion", "permutation", "translation", "periodic")
_ALL_CHECKS = CHECKS + ("supercell",)

_RULES = {
    "rotation": "X(R A)[s, :, p] = det(R)^((1 - sigma)/2) D_lambda(R) X(A)[s, :, p]",
    "inversion": "X(-A) = sigma (-1)^lambda X(A)",
    "permutation": "X(P A) = X(A) with atom i relabelled p(i), pair (i, j) -> (p(i), p(j))",
    "translation": "X(A + t) = X(A)",
    "periodic": "X(A) unchanged when atoms move by lattice vectors (pairs matched by (i, j, r_ij))",
    "supercell": "samples of a supercell equal those of their periodic image in A",
}

_ASSERT_NAMES = {
    "rotation": "assert_rotation_equivariant",
    "inversion": "assert_inversion_parity",
    "permutation": "assert_permutation_equivariant",
    "translation": "assert_translation_invariant",
    "periodic": "assert_periodic_invariant",
    "supercell": "assert_periodic_invariant",
}


# =========================================================================== errors and results
class EquivarianceError(AssertionError):
    """A descriptor violates a symmetry rule.

    Attributes
    ----------
    results : list of CheckResult
        The failing checks, with the numbers behind the message.
    frame : ase.Atoms or None
        The structure the failure was found for.
    """

    def __init__(self, message: str, results=(), frame=None) -> None:
        super().__init__(message)
        self.results = list(results)
        self.frame = frame


class DescriptorError(EquivarianceError):
    """The descriptor failed outright (raised, returned NaN or a wrong shape) for a structure.

    Attributes
    ----------
    frame : ase.Atoms
        The structure given to the descriptor (printed in the message as a line of Python).
    check : str or None
        Which check was running, ``None`` for the reference structure.
    """

    def __init__(self, message: str, frame=None, check: str | None = None) -> None:
        super().__init__(message, (), frame)
        self.check = check


@dataclass
class BlockError:
    """Error of one block in one check.

    Attributes
    ----------
    key : tuple of (str, value)
        Block key, e.g. ``(("o3_lambda", 1), ("o3_sigma", 1), ("center_type", 8))``.
    error : float
        ``|Delta|_F / max(|X|_F, floor)``; ``inf`` for structural problems.
    abs_error : float
        ``|Delta|_F``, in the descriptor's units.
    norm : float
        ``|X|_F`` of the block for the untransformed structure.
    worst_sample : dict or None
        Labels of the sample with the largest difference.
    reason : str or None
        Structural problem (missing block, unmatched samples, changed properties), if any.
    """

    key: tuple
    error: float
    abs_error: float
    norm: float
    worst_sample: dict | None = None
    reason: str | None = None

    @property
    def o3_lambda(self) -> int | None:
        return dict(self.key).get("o3_lambda")

    @property
    def o3_sigma(self) -> int | None:
        return dict(self.key).get("o3_sigma")


@dataclass
class CheckResult:
    """Outcome of one check; ``float(result)`` is the largest block error.

    Attributes
    ----------
    check : str
        One of ``"rotation"``, ``"inversion"``, ``"permutation"``, ``"translation"``,
        ``"periodic"``, ``"supercell"``.
    max_error : float
        Largest block error (0 when there are no blocks).
    blocks : list of BlockError
        One entry per block, in the order of the reference output.
    transform : dict
        What was applied: ``rotation`` (3x3), ``permutation``, ``translation`` (Angstrom),
        ``lattice_shifts`` or ``supercell``.
    seed : int or None
        Seed that reproduces the random parts of ``transform``.
    frame : ase.Atoms
        The untransformed structure.
    """

    check: str
    max_error: float
    blocks: list[BlockError]
    transform: dict
    seed: int | None
    frame: object = field(repr=False, default=None)

    def __float__(self) -> float:
        return float(self.max_error)

    @property
    def worst(self) -> BlockError | None:
        """The block with the largest error."""
        if not self.blocks:
            return None
        return max(self.blocks, key=lambda b: b.error)

    def passed(self, rtol: float = DEFAULT_RTOL) -> bool:
        """Whether every block error is at most ``rtol``."""
        return bool(self.max_error <= rtol)


# =========================================================================== helpers
def _descriptor_name(descriptor) -> str:
    for attr in ("__qualname__", "__name__"):
        name = getattr(descriptor, attr, None)
        if isinstance(name, str):
            return name
    return type(descriptor).__name__


def _is_control_exception(exc: BaseException) -> bool:
    """Exceptions that must pass through (hypothesis' ``assume`` inside a descriptor)."""
    errors = sys.modules.get("hypothesis.errors")
    return errors is not None and isinstance(exc, errors.HypothesisException)


def _resolve_seed(seed) -> int:
    if seed is None:
        return int(np.random.SeedSequence().generate_state(1)[0])
    if isinstance(seed, (bool, np.bool_)) or not isinstance(seed, numbers.Integral) or seed < 0:
        raise TypeError(f"`seed` must be a non-negative integer or None, got {seed!r}")
    return int(seed)


def _check_rng(seed: int, check: str) -> np.random.Generator:
    """Independent stream per check so that every assert reproduces from the same seed."""
    return np.random.default_rng([seed, _ALL_CHECKS.index(check)])


def _check_tolerance(value, name: str) -> float:
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"`{name}` must be a real number, got {value!r}")
    if not np.isfinite(value) or value < 0:
        raise ValueError(f"`{name}` must be finite and >= 0, got {value}")
    return float(value)


def _evaluate(descriptor, frame, layout, check: str | None) -> dict[tuple, _Block]:
    """Call the descriptor and normalise its output; failures become DescriptorError."""
    __tracebackhide__ = True
    where = "the reference structure" if check is None else f"the structure of the {check} check"
    name = _descriptor_name(descriptor)
    try:
        output = descriptor(frame.copy())
    except Exception as exc:
        if _is_control_exception(exc):
            raise
        raise DescriptorError(
            f"descriptor `{name}` raised {type(exc).__name__}: {exc}\n"
            f"  for {where}: {describe_frame(frame)}",
            frame,
            check,
        ) from exc
    try:
        return normalise_output(output, layout, len(frame))
    except OutputError as exc:
        raise DescriptorError(
            f"descriptor `{name}` returned an unusable output: {exc}\n"
            f"  for {where}: {describe_frame(frame)}",
            frame,
            check,
        ) from None


def _sample_dict(block: _Block, row: int) -> dict:
    return {n: int(v) for n, v in zip(block.sample_names, block.samples[row], strict=True)}


def _target_index(block: _Block, frame) -> dict:
    """``discrete sample labels -> [(row, vectors or None), ...]`` for a transformed output."""
    cached = block._cache.get("index")
    if cached is not None:
        return cached
    shift_cols = block.shift_columns
    keep = [c for c in range(len(block.sample_names)) if c not in shift_cols]
    vectors = _block_vectors(block, frame)
    index: dict = {}
    for row in range(block.samples.shape[0]):
        label = tuple(int(v) for v in block.samples[row, keep])
        index.setdefault(label, []).append((row, None if vectors is None else vectors[row]))
    block._cache["index"] = index
    return index


def _block_vectors(block: _Block, frame) -> np.ndarray | None:
    """Physical vectors ``(n_samples, n_groups, 3)`` of every shift group, ``None`` without one.

    Group ``(shifts, origin, image)`` gives ``x_image - x_origin + shift @ cell``: ``r_ij`` for
    pairs, ``r_ij`` and ``r_ik`` for three-centre samples.
    """
    groups = block.shift_groups
    if not groups:
        return None
    names = block.sample_names
    vectors = [
        pair_vectors(
            frame,
            block.samples[:, names.index(origin)],
            block.samples[:, names.index(image)],
            block.samples[:, [names.index(n) for n in columns]],
        )
        for columns, origin, image in groups
    ]
    return np.stack(vectors, axis=1)


def _exchange(block: _Block):
    """How a sample looks after exchanging its two exchangeable atoms, ``None`` if it has none.

    Pairs exchange ``first_atom <-> second_atom`` (``r_ij -> r_ji = -r_ij``), three-centre
    samples ``second_atom <-> third_atom`` (``r_ij <-> r_ik``).  Returns the two sample columns
    and, for every shift group, the group whose vector it takes and the sign of that vector.
    """
    if block.is_triple:
        swap = (PAIR_COLUMNS[1], THIRD_ATOM_COLUMN)
    elif block.is_pair:
        swap = PAIR_COLUMNS
    else:
        return None
    exchanged = {swap[0]: swap[1], swap[1]: swap[0]}
    groups = block.shift_groups
    atoms = [(origin, image) for _, origin, image in groups]
    group_map = []
    for origin, image in atoms:
        origin, image = exchanged.get(origin, origin), exchanged.get(image, image)
        if (origin, image) in atoms:
            group_map.append((atoms.index((origin, image)), 1.0))
        elif (image, origin) in atoms:
            group_map.append((atoms.index((image, origin)), -1.0))
        else:
            return None
    return swap, group_map


@dataclass
class _Transform:
    """How samples and values of the source output map onto the target output."""

    check: str
    atom_map: np.ndarray  # source atom index -> target atom index
    vector_map: np.ndarray  # 3x3 acting on pair vectors
    rotation: np.ndarray | None  # acts on the m axis with det factor; None = identity


def _match_samples(source: _Block, source_frame, target: _Block, target_frame, transform):
    """Target row and sign for every source row (-1 where no counterpart exists)."""
    names = source.sample_names
    shift_cols = source.shift_columns
    keep = [c for c in range(len(names)) if c not in shift_cols]
    kept_names = [names[c] for c in keep]
    atom_cols = [i for i, c in enumerate(keep) if c in source.atom_columns]
    labels = source.samples[:, keep].copy()
    for col in atom_cols:
        labels[:, col] = transform.atom_map[labels[:, col]]
    vectors = _block_vectors(source, source_frame)
    if vectors is not None:
        vectors = vectors @ transform.vector_map.T
    exchange = _exchange(source)
    swap = None
    if exchange is not None:
        swap = [kept_names.index(exchange[0][0]), kept_names.index(exchange[0][1])]
        group_order = np.array([g for g, _ in exchange[1]], dtype=np.int64)
        group_signs = np.array([sign for _, sign in exchange[1]])[:, None]
    swap_sign = source.block_type if source.block_type in (-1, 1) else 1
    index = _target_index(target, target_frame)

    rows = np.full(labels.shape[0], -1, dtype=np.int64)
    signs = np.ones(labels.shape[0])

    def find(label, vector):
        for row, candidate in index.get(label, ()):
            if vector is None or candidate is None:
                return row
            if np.max(np.abs(candidate - vector)) < VECTOR_MATCH_TOLERANCE:
                return row
        return -1

    for s in range(labels.shape[0]):
        label = tuple(int(v) for v in labels[s])
        vector = None if vectors is None else vectors[s]
        row = find(label, vector)
        if row < 0 and swap is not None:
            swapped = list(label)
            swapped[swap[0]], swapped[swap[1]] = swapped[swap[1]], swapped[swap[0]]
            swapped_vector = None if vector is None else group_signs * vector[group_order]
            row = find(tuple(swapped), swapped_vector)
            signs[s] = swap_sign
        rows[s] = row
    return rows, signs


def _compare(
    reference: dict[tuple, _Block],
    source_frame,
    transformed: dict[tuple, _Block],
    target_frame,
    transform: _Transform,
    norm_floor: float,
) -> list[BlockError]:
    """Per-block errors of ``transformed`` against the transformed ``reference``."""
    norms = {key: float(np.linalg.norm(b.values)) for key, b in reference.items()}
    floor = norm_floor * max(norms.values(), default=0.0)
    lmax = max((b.o3_lambda for b in reference.values()), default=0)
    wigner = None
    det = 1.0
    if transform.rotation is not None:
        wigner = wigner_d(transform.rotation, lmax)
        det = float(np.sign(np.linalg.det(transform.rotation)))
    results = []
    matches: dict = {}
    for key, source in reference.items():
        if transform.check == "supercell" and not source.atom_columns:
            # structure-level samples may be extensive or intensive: no rule to check
            continue
        target = transformed.get(key)
        norm = norms[key]
        if target is None:
            if source.values.size == 0 or np.all(_vanish(source.values, VANISHING_SAMPLE * max(norm, floor))):
                continue
            results.append(BlockError(key, np.inf, np.inf, norm, None, "block missing"))
            continue
        if source.sample_names != target.sample_names:
            reason = f"sample names changed from {source.sample_names} to {target.sample_names}"
            results.append(BlockError(key, np.inf, np.inf, norm, None, reason))
            continue
        target_values = target.values
        if not np.array_equal(source.properties, target.properties):
            order = _property_order(source.properties, target.properties)
            if order is None:
                results.append(
                    BlockError(key, np.inf, np.inf, norm, None, "properties changed")
                )
                continue
            target_values = target_values[:, :, order]
        # blocks often share their samples: match each distinct pair of sample sets once
        cache_key = (
            source.samples.tobytes(),
            target.samples.tobytes(),
            source.sample_names,
            source.block_type,
        )
        if cache_key not in matches:
            matches[cache_key] = _match_samples(
                source, source_frame, target, target_frame, transform
            )
        rows, signs = matches[cache_key]
        vanishing = VANISHING_SAMPLE * max(norm, floor)
        missing = np.nonzero(rows < 0)[0]
        missing = missing[~_vanish(source.values[missing], vanishing)]
        if missing.size:
            example = _sample_dict(source, int(missing[0]))
            reason = (
                f"{missing.size} of {rows.size} samples have no counterpart after the "
                f"transformation, e.g. {example}"
            )
            results.append(BlockError(key, np.inf, np.inf, norm, example, reason))
            continue
        unused = np.setdiff1d(np.arange(target.samples.shape[0]), rows)
        unused = unused[~_vanish(target_values[unused], vanishing)]
        if unused.size:
            example = _sample_dict(target, int(unused[0]))
            reason = (
                f"{unused.size} samples of the transformed output have no counterpart in the "
                f"reference, e.g. {example}"
            )
            results.append(BlockError(key, np.inf, np.inf, norm, example, reason))
            continue
        # samples on one side only (vanishing values) drop out of the comparison
        found = np.nonzero(rows >= 0)[0]
        expected = source.values[found] * signs[found, None, None]
        if wigner is not None:
            factor = det ** ((1 - source.o3_sigma) // 2)
            expected = factor * np.einsum("mn,snp->smp", wigner[source.o3_lambda], expected)
        delta = target_values[rows[found]] - expected
        abs_error = float(np.linalg.norm(delta))
        scale = max(norm, floor)
        if abs_error == 0.0:
            error = 0.0
        elif scale > 0.0:
            error = abs_error / scale
        else:
            error = np.inf
        worst = None
        if delta.size:
            per_sample = np.linalg.norm(delta.reshape(delta.shape[0], -1), axis=1)
            worst = _sample_dict(source, int(found[np.argmax(per_sample)]))
        results.append(BlockError(key, error, abs_error, norm, worst))
    for key, target in transformed.items():
        only_new = key not in reference and target.values.size
        if only_new and not np.all(_vanish(target.values, VANISHING_SAMPLE * floor)):
            results.append(
                BlockError(key, np.inf, np.inf, 0.0, None, "block only in the transformed output")
            )
    return results


def _vanish(values: np.ndarray, bound: float) -> np.ndarray:
    """Per sample: are all values at most ``bound`` in magnitude (exactly zero if ``bound`` is 0)?"""
    values = np.abs(np.asarray(values))
    if values.size == 0:
        return np.ones(len(values), dtype=bool)
    return np.all(values.reshape(len(values), -1) <= bound, axis=1)


def _property_order(source: np.ndarray, target: np.ndarray) -> np.ndarray | None:
    """Permutation of target properties that reproduces the source order, if any."""
    if source.shape != target.shape:
        return None
    positions = {tuple(row): i for i, row in enumerate(target.tolist())}
    order = [positions.get(tuple(row)) for row in source.tolist()]
    if any(o is None for o in order) or len(set(order)) != len(order):
        return None
    return np.asarray(order, dtype=np.int64)


# =========================================================================== transformations
def _draw_permutation(rng: np.random.Generator, n: int) -> np.ndarray:
    perm = rng.permutation(n)
    if n > 1 and np.array_equal(perm, np.arange(n)):
        perm = np.roll(perm, 1)
    return perm


def _check_permutation(permutation, n: int) -> np.ndarray:
    perm = np.asarray(permutation)
    if perm.dtype.kind not in "iu":
        raise TypeError(f"`permutation` must hold integers, got dtype {perm.dtype}")
    if perm.shape != (n,) or not np.array_equal(np.sort(perm), np.arange(n)):
        raise ValueError(f"`permutation` must be a permutation of range({n}), got {perm.tolist()}")
    return perm.astype(np.int64)


def _draw_lattice_shifts(rng: np.random.Generator, frame) -> np.ndarray:
    pbc = np.asarray(frame.pbc, dtype=bool)
    shifts = rng.integers(
        -DEFAULT_MAX_LATTICE_SHIFT, DEFAULT_MAX_LATTICE_SHIFT + 1, size=(len(frame), 3)
    )
    shifts[:, ~pbc] = 0
    if len(frame) and not shifts.any():
        shifts[0, int(np.nonzero(pbc)[0][0])] = 1
    return shifts


def _prepare(check: str, frame, seed: int, options: dict):
    """The transformed structure, the sample/value map and the description of a check."""
    rng = _check_rng(seed, check)
    n = len(frame)
    identity = np.arange(n)
    if check in ("rotation", "inversion"):
        if check == "inversion":
            rotation = -np.eye(3)
        elif options.get("rotation") is not None:
            rotation = check_rotation(options["rotation"])
        else:
            rotation = random_rotation(rng)
        transform = _Transform(check, identity, rotation, rotation)
        return rotate_frame(frame, rotation), transform, {"rotation": rotation}
    if check == "permutation":
        perm = options.get("permutation")
        perm = _draw_permutation(rng, n) if perm is None else _check_permutation(perm, n)
        new_index = np.empty(n, dtype=np.int64)
        new_index[perm] = np.arange(n)
        transform = _Transform(check, new_index, np.eye(3), None)
        return permute_frame(frame, perm), transform, {"permutation": perm}
    if check == "translation":
        translation = options.get("translation")
        if translation is None:
            translation = rng.uniform(-DEFAULT_MAX_TRANSLATION, DEFAULT_MAX_TRANSLATION, 3)
        from .._checks import check_array

        translation = check_array(translation, "translation", shape=(3,))
        transform = _Transform(check, identity, np.eye(3), None)
        return translate_frame(frame, translation), transform, {"translation": translation}
    if check == "periodic":
        _require_periodic(frame, check)
        shifts = options.get("lattice_shifts")
        if shifts is None:
            shifts = _draw_lattice_shifts(rng, frame)
        shifts = np.asarray(shifts)
        if shifts.shape != (n, 3) or shifts.dtype.kind not in "iu":
            raise ValueError(
                f"`lattice_shifts` must be integers of shape ({n}, 3), got {shifts.dtype} "
                f"{shifts.shape}"
            )
        if np.any(shifts[:, ~np.asarray(frame.pbc, dtype=bool)]):
            raise ValueError("`lattice_shifts` must be zero along non-periodic directions")
        transform = _Transform(check, identity, np.eye(3), None)
        return shift_atoms(frame, shifts), transform, {"lattice_shifts": shifts}
    if check == "supercell":
        _require_periodic(frame, check)
        reps = options.get("supercell")
        if reps is None:
            reps = tuple(2 if p else 1 for p in frame.pbc)
        reps = tuple(int(r) for r in reps)
        if len(reps) != 3 or min(reps) < 1:
            raise ValueError(f"`supercell` must be three positive integers, got {reps}")
        big = frame.repeat(reps)
        transform = _Transform(check, np.arange(len(big)) % max(n, 1), np.eye(3), None)
        return big, transform, {"supercell": reps}
    raise ValueError(f"unknown check {check!r}, expected one of {_ALL_CHECKS}")


def _require_periodic(frame, check: str) -> None:
    if not np.any(frame.pbc):
        raise ValueError(f"the {check} check needs a periodic `frame` (pbc is {list(frame.pbc)})")
    if abs(np.linalg.det(np.asarray(frame.cell))) < 1e-12 and np.all(frame.pbc):
        raise ValueError(f"the {check} check needs a `frame` with a non-degenerate cell")


def _applicable_checks(frame, checks) -> tuple[str, ...]:
    if checks is None:
        selected = [c for c in CHECKS if c != "permutation" or len(frame) > 1]
        if not np.any(frame.pbc):
            selected.remove("periodic")
        return tuple(selected)
    if isinstance(checks, str):
        checks = (checks,)
    checks = tuple(checks)
    for c in checks:
        if c not in _ALL_CHECKS:
            raise ValueError(f"unknown check {c!r} in `checks`, expected some of {_ALL_CHECKS}")
    return checks


def _run_check(descriptor, frame, check, reference, seed, layout, norm_floor, options):
    __tracebackhide__ = True
    transformed_frame, transform, description = _prepare(check, frame, seed, options)
    transformed = _evaluate(descriptor, transformed_frame, layout, check)
    if check == "supercell":
        # every sample of the supercell must equal its image in the reference output
        blocks = _compare(transformed, transformed_frame, reference, frame, transform, norm_floor)
    else:
        blocks = _compare(reference, frame, transformed, transformed_frame, transform, norm_floor)
    max_error = max((b.error for b in blocks), default=0.0)
    return CheckResult(check, float(max_error), blocks, description, seed, frame)


# =========================================================================== public API
def equivariance_error(
    descriptor: Callable,
    frame,
    *,
    checks: Iterable[str] | str | None = None,
    rotation=None,
    permutation=None,
    translation=None,
    lattice_shifts=None,
    supercell=None,
    seed: int | None = None,
    layout=None,
    norm_floor: float = DEFAULT_NORM_FLOOR,
) -> dict[str, CheckResult]:
    """Measure how far a descriptor is from equivariance, check by check.

    Parameters
    ----------
    descriptor : callable
        ``descriptor(frame)`` returns an ``ncsym.BlockMap``, a ``metatensor.TensorMap``, an
        array or a dict of arrays (arrays need ``layout``).  Bound methods such as
        ``calculator.compute`` work as they are.
    frame : ase.Atoms
        Structure to test (positions in Angstrom).  Never modified.
    checks : str or iterable of str, optional
        Subset of ``"rotation", "inversion", "permutation", "translation", "periodic",
        "supercell"``.  Default: :data:`CHECKS` that apply (permutation needs two atoms,
        periodic a periodic frame; supercell only on request).
    rotation : array_like (3, 3), optional
        Orthogonal matrix (proper or improper) for the rotation check; random proper if omitted.
    permutation : array_like of int, optional
        New order of atoms (atom ``k`` of the permuted frame is atom ``permutation[k]``).
    translation : array_like (3,), optional
        Translation in Angstrom.
    lattice_shifts : array_like of int (n_atoms, 3), optional
        Atom ``i`` moves by ``lattice_shifts[i] @ cell`` in the periodic check.
    supercell : (int, int, int), optional
        Repetitions for the supercell check (default 2 along each periodic direction).
    seed : int, optional
        Seed for the random parts; ``None`` draws one.  It is stored in every result, and the
        same seed reproduces the same transformations in every assert.
    layout : ArrayLayout or dict of ArrayLayout, optional
        Layout of array outputs.
    norm_floor : float, default DEFAULT_NORM_FLOOR
        Block norms below ``norm_floor`` times the largest block norm are replaced by that value
        when computing relative errors.

    Returns
    -------
    dict of str to CheckResult
        One result per check; ``float(result)`` is the largest relative block error and
        ``result.blocks`` lists every block.

    Raises
    ------
    DescriptorError
        If the descriptor raises, returns NaN/inf or an output that does not fit its layout.
    TypeError, ValueError
        For invalid arguments.

    Examples
    --------
    >>> errors = equivariance_error(calculator.compute, frame)  # doctest: +SKIP
    >>> {name: float(result) for name, result in errors.items()}  # doctest: +SKIP
    {'rotation': 3.1e-16, 'inversion': 0.0, 'permutation': 0.0, 'translation': 2.2e-16}
    """
    __tracebackhide__ = True
    check_frame(frame)
    if not callable(descriptor):
        raise TypeError(f"`descriptor` must be callable, got {type(descriptor).__name__}")
    norm_floor = _check_tolerance(norm_floor, "norm_floor")
    seed = _resolve_seed(seed)
    selected = _applicable_checks(frame, checks)
    if supercell is not None and supercell is not False:
        if checks is None:
            selected = selected + ("supercell",)
        if supercell is True:
            supercell = None
    options = {
        "rotation": rotation,
        "permutation": permutation,
        "translation": translation,
        "lattice_shifts": lattice_shifts,
        "supercell": supercell,
    }
    reference = _evaluate(descriptor, frame, layout, None)
    return {
        check: _run_check(descriptor, frame, check, reference, seed, layout, norm_floor, options)
        for check in selected
    }


def _format_matrix(matrix) -> str:
    # adding 0.0 turns -0.0 into 0.0 for a cleaner printout
    return "np.array(" + repr((np.asarray(matrix, dtype=np.float64) + 0.0).tolist()) + ")"


def _format_failure(result: CheckResult, rtol: float, name: str) -> str:
    worst = result.worst
    lines = []
    head = f"{result.check} check failed for descriptor `{name}`"
    if worst is not None and worst.reason is not None:
        lines.append(f"{head}: block {format_key(worst.key)}: {worst.reason}")
    elif worst is not None:
        lines.append(
            f"{head}: worst block {format_key(worst.key)} has relative error "
            f"{worst.error:.3e} > rtol={rtol:.1e} "
            f"(|difference| {worst.abs_error:.3e}, block norm {worst.norm:.3e})"
        )
        if worst.worst_sample is not None:
            lines.append(f"  worst sample: {worst.worst_sample}")
    lines.append(f"  rule: {_RULES[result.check]}")
    others = sorted(
        (b for b in result.blocks if b.error > rtol and b is not worst),
        key=lambda b: -b.error,
    )
    if others:
        shown = ", ".join(
            f"{format_key(b.key)} {b.reason if b.reason else f'{b.error:.1e}'}"
            for b in others[:5]
        )
        more = f" and {len(others) - 5} more" if len(others) > 5 else ""
        lines.append(f"  other blocks above rtol: {shown}{more}")
    transform = result.transform
    if "rotation" in transform:
        det = np.linalg.det(transform["rotation"])
        lines.append(f"  rotation = {_format_matrix(transform['rotation'])}  (det {det:+.0f})")
    if "permutation" in transform:
        lines.append(f"  permutation = {transform['permutation'].tolist()}")
    if "translation" in transform:
        lines.append(f"  translation = {transform['translation'].tolist()} Angstrom")
    if "lattice_shifts" in transform:
        lines.append(f"  lattice_shifts = {transform['lattice_shifts'].tolist()}")
    if "supercell" in transform:
        lines.append(f"  supercell = {transform['supercell']}")
    if result.check == "inversion":
        lines.append("  reproduce: assert_inversion_parity(descriptor, frame)")
    else:
        lines.append(
            f"  reproduce: {_ASSERT_NAMES[result.check]}(descriptor, frame, seed={result.seed})"
        )
    lines.append(f"  frame = {describe_frame(result.frame)}")
    return "\n".join(lines)


def _assert(descriptor, frame, checks, rtol, norm_floor, seed, layout, **options) -> dict:
    __tracebackhide__ = True
    rtol = _check_tolerance(rtol, "rtol")
    results = equivariance_error(
        descriptor,
        frame,
        checks=checks,
        seed=seed,
        layout=layout,
        norm_floor=norm_floor,
        **options,
    )
    failed = [r for r in results.values() if not r.passed(rtol)]
    if failed:
        name = _descriptor_name(descriptor)
        message = "\n".join(_format_failure(r, rtol, name) for r in failed)
        raise EquivarianceError(message, failed, frame)
    return results


def assert_rotation_equivariant(
    descriptor: Callable,
    frame,
    rotation=None,
    *,
    seed: int | None = None,
    layout=None,
    rtol: float = DEFAULT_RTOL,
    norm_floor: float = DEFAULT_NORM_FLOOR,
) -> CheckResult:
    """Assert ``X(R A)[s, :, p] = det(R)^((1 - sigma)/2) D_lambda(R) X(A)[s, :, p]``.

    Parameters
    ----------
    descriptor, frame, layout, seed, norm_floor
        As in :func:`equivariance_error`.
    rotation : array_like (3, 3), optional
        Proper or improper orthogonal matrix; a uniformly random proper rotation if omitted.
        Positions become ``positions @ R.T``; the cell is rotated too (see Notes).
    rtol : float, default DEFAULT_RTOL
        Largest accepted relative block error.

    Returns
    -------
    CheckResult

    Raises
    ------
    EquivarianceError
        With the worst block, its ``(o3_lambda, o3_sigma)``, the relative error, the rotation
        matrix, the seed and the structure.
    DescriptorError
        If the descriptor raises or returns NaN/inf or a wrong shape.

    Notes
    -----
    For improper ``R = -R'`` the cell vectors are transformed with ``R'`` (same lattice,
    right-handed cell); pairs are matched on their separation vectors, so the changed sign of
    cell-shift labels is accounted for.
    """
    __tracebackhide__ = True
    results = _assert(
        descriptor, frame, ("rotation",), rtol, norm_floor, seed, layout, rotation=rotation
    )
    return results["rotation"]


def assert_inversion_parity(
    descriptor: Callable,
    frame,
    *,
    layout=None,
    rtol: float = DEFAULT_RTOL,
    norm_floor: float = DEFAULT_NORM_FLOOR,
) -> CheckResult:
    """Assert that every block ``(lambda, sigma)`` picks up ``sigma (-1)^lambda`` under inversion.

    The inverted structure has positions ``-positions`` and the same lattice.  Parameters,
    returns and raises as in :func:`assert_rotation_equivariant`.
    """
    __tracebackhide__ = True
    results = _assert(descriptor, frame, ("inversion",), rtol, norm_floor, 0, layout)
    return results["inversion"]


def assert_permutation_equivariant(
    descriptor: Callable,
    frame,
    permutation=None,
    *,
    seed: int | None = None,
    layout=None,
    rtol: float = DEFAULT_RTOL,
    norm_floor: float = DEFAULT_NORM_FLOOR,
) -> CheckResult:
    """Assert that relabelling atoms only relabels samples.

    Parameters
    ----------
    descriptor, frame, seed, layout, rtol, norm_floor
        As in :func:`assert_rotation_equivariant`.
    permutation : array_like of int, optional
        Atom ``k`` of the permuted structure is atom ``permutation[k]`` of ``frame``; a random
        non-identity permutation if omitted.

    Notes
    -----
    Sample ``atom = i`` must become ``atom = p(i)`` with ``p = argsort(permutation)``, pair
    ``(i, j)`` must become ``(p(i), p(j))``.  A pair stored once per unordered pair (e.g.
    ``i < j``) that appears as ``(p(j), p(i))`` is compared with ``block_type`` times the
    swapped sample when the key has ``block_type`` +1 or -1, else +1.  Cell shifts are unchanged
    (matched on the separation vector).
    """
    __tracebackhide__ = True
    results = _assert(
        descriptor,
        frame,
        ("permutation",),
        rtol,
        norm_floor,
        seed,
        layout,
        permutation=permutation,
    )
    return results["permutation"]


def assert_translation_invariant(
    descriptor: Callable,
    frame,
    translation=None,
    *,
    seed: int | None = None,
    layout=None,
    rtol: float = DEFAULT_RTOL,
    norm_floor: float = DEFAULT_NORM_FLOOR,
) -> CheckResult:
    """Assert that moving every atom by the same vector changes nothing.

    Parameters
    ----------
    translation : array_like (3,), optional
        Translation in Angstrom; random components in ``[-5, 5]`` if omitted.

    Other parameters, returns and raises as in :func:`assert_rotation_equivariant`.  For
    periodic structures atoms are not wrapped back into the cell.
    """
    __tracebackhide__ = True
    results = _assert(
        descriptor,
        frame,
        ("translation",),
        rtol,
        norm_floor,
        seed,
        layout,
        translation=translation,
    )
    return results["translation"]


def assert_periodic_invariant(
    descriptor: Callable,
    frame,
    lattice_shifts=None,
    *,
    supercell=None,
    seed: int | None = None,
    layout=None,
    rtol: float = DEFAULT_RTOL,
    norm_floor: float = DEFAULT_NORM_FLOOR,
) -> CheckResult | dict[str, CheckResult]:
    """Assert that moving atoms by lattice vectors (and optionally repeating the cell) changes nothing.

    Parameters
    ----------
    lattice_shifts : array_like of int (n_atoms, 3), optional
        Atom ``i`` moves by ``lattice_shifts[i] @ cell``; random in ``[-2, 2]`` along periodic
        directions if omitted.
    supercell : (int, int, int) or True, optional
        Also check that every sample of ``frame.repeat(supercell)`` equals the sample of its
        periodic image in ``frame`` (``True``: two repetitions along each periodic direction).
        Per-atom samples map ``k -> k % n_atoms``; pairs are matched on ``(i % n, j % n, r_ij)``;
        structure-level samples (no atom column) are skipped.

    Returns
    -------
    CheckResult, or dict of str to CheckResult when ``supercell`` is given.

    Notes
    -----
    Pair samples with cell shifts are matched by ``(first_atom, second_atom, r_ij)``: moving atom
    ``j`` by a lattice vector changes the shift label of pair ``(i, j)`` but not its separation
    vector or its features.  Other parameters as in :func:`assert_rotation_equivariant`.
    """
    __tracebackhide__ = True
    checks = ("periodic",) if supercell is None else ("periodic", "supercell")
    results = _assert(
        descriptor,
        frame,
        checks,
        rtol,
        norm_floor,
        seed,
        layout,
        lattice_shifts=lattice_shifts,
        supercell=supercell,
    )
    return results["periodic"] if supercell is None else results


def assert_equivariant(
    descriptor: Callable,
    frame,
    *,
    checks: Iterable[str] | str | None = None,
    rotation=None,
    permutation=None,
    translation=None,
    lattice_shifts=None,
    supercell=None,
    seed: int | None = None,
    layout=None,
    rtol: float = DEFAULT_RTOL,
    norm_floor: float = DEFAULT_NORM_FLOOR,
) -> dict[str, CheckResult]:
    """Run every applicable check and raise one error listing all failures.

    Checks: rotation (random proper rotation), inversion, permutation (two atoms or more),
    translation, periodic (periodic frames).  The descriptor is computed once for ``frame``
    and once per check.

    Parameters
    ----------
    descriptor : callable
        ``descriptor(frame)``, e.g. ``ncsym.SphericalExpansion(...).compute`` or a featomic
        calculator's ``compute``.
    frame : ase.Atoms
        Structure to test.
    rtol : float, default DEFAULT_RTOL
        Largest accepted relative block error (see the module docstring).
    checks, rotation, permutation, translation, lattice_shifts, supercell, seed, layout, norm_floor
        As in :func:`equivariance_error`.

    Returns
    -------
    dict of str to CheckResult
        The passing results, for inspection.

    Raises
    ------
    EquivarianceError
        Listing, for each failing check, the worst block with its ``(o3_lambda, o3_sigma)`` and
        relative error, the transformation, the seed and the structure.
    DescriptorError
        If the descriptor raises, returns NaN/inf or a wrongly shaped output.

    Examples
    --------
    >>> import ase, featomic  # doctest: +SKIP
    >>> calculator = featomic.SphericalExpansion(**hypers)  # doctest: +SKIP
    >>> assert_equivariant(calculator.compute, ase.Atoms("H2O", ...))  # doctest: +SKIP
    """
    __tracebackhide__ = True
    return _assert(
        descriptor,
        frame,
        checks,
        rtol,
        norm_floor,
        seed,
        layout,
        rotation=rotation,
        permutation=permutation,
        translation=translation,
        lattice_shifts=lattice_shifts,
        supercell=supercell,
    )
