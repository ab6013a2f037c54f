"""Neighbour density expansion ``<a n l m | rho_i>`` and single-neighbour expansions ``g_ij``.

Science (DESIGN.md, items 1-2; Nigam, Willatt, Ceriotti, J. Chem. Phys. 156, 014115 (2022))
    ``<a; x | rho_i> = sum_{j in a} f_c(r_ij) g(x - r_ij)`` with the L2-normalised Gaussian
    ``g(x) = (pi sigma^2)^(-3/4) exp(-|x|^2 / (2 sigma^2))``, all periodic images within the
    cutoff, and the centre itself as a neighbour of weight ``center_atom_weight``.  ``f_c``
    is a shifted cosine of width ``cutoff_width`` below ``cutoff``.  The expansion
    ``<a n l m | rho_i> = int R_n(r) Y_l^m(r^) <a; r | rho_i> d^3r`` uses featomic 0.6's
    orthonormal GTO radial basis (:mod:`ncsym.radial`) and real spherical harmonics
    (:mod:`ncsym.sph`), so the values equal featomic's ``SphericalExpansion`` and
    ``SphericalExpansionByPair`` with the same hyperparameters.

Layout
    :class:`SphericalExpansion` gives blocks keyed by ``(o3_lambda, o3_sigma, center_type,
    neighbor_type)`` with samples ``(system, atom)`` and properties ``(n,)``;
    :class:`PairExpansion` gives ``g_ij`` keyed by ``(o3_lambda, o3_sigma, first_atom_type,
    second_atom_type)`` with samples ``(system, first_atom, second_atom, cell_shift_a,
    cell_shift_b, cell_shift_c)``.  Both have ``o3_sigma = 1`` and dense low-level outputs
    (:class:`DenseExpansion`, :class:`DensePairExpansion`) for the kernels built on them.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from ._checks import check_angular, check_int, check_positive_float, check_species
from .blocks import Block, BlockMap, Labels
from .conventions import MAX_ANGULAR, n_lm
from .neighbors import FrameArrays, _pairs_from_arrays, frames_to_arrays, single_thread_below
from .radial import RadialSpline

__all__ = ["SphericalExpansion", "PairExpansion", "DenseExpansion", "DensePairExpansion"]

#: Expansions with less work (pairs x (max_angular + 1)**2 x n_radial multiply-adds, about
#: 0.1 ms on one core, some 20 parallel-region launches) run on one thread; larger ones in
#: parallel over all Numba threads.  (It was 2e7, ~10 ms, to spare busy machines; but the CG
#: kernels that follow a density are parallel at any size anyway, and Si216 at max_angular 4,
#: 6e5 multiply-adds, gained 10 % overall in lambda-SOAP from a parallel density.)
PARALLEL_MIN_WORK = 2e5


@dataclass(frozen=True)
class DenseExpansion:
    """Atom-centred density coefficients of all atoms in all frames, as dense arrays.

    Attributes
    ----------
    values : ndarray of float64, shape (n_centers, (max_angular + 1)**2, n_species, n_radial)
        ``values[i, l * l + l + m, a, n] = <a n l m | rho_i>`` (dimensionless), ``(l, m)`` in
        the flattened order of :func:`ncsym.conventions.lm_index`, ``a`` indexing
        ``species``.
    system : ndarray of int64, shape (n_centers,)
        Frame of every centre (frames in input order, atoms in frame order).
    atom : ndarray of int64, shape (n_centers,)
        Index of the centre inside its frame.
    center_type : ndarray of int64, shape (n_centers,)
        Atomic number of the centre.
    species : ndarray of int64, shape (n_species,)
        Neighbour species (atomic numbers, ascending).
    """

    values: NDArray[np.float64]
    system: NDArray[np.int64]
    atom: NDArray[np.int64]
    center_type: NDArray[np.int64]
    species: NDArray[np.int64]


@dataclass(frozen=True)
class DensePairExpansion:
    """Single-neighbour expansions ``g_ij`` of every pair, as dense arrays.

    Pairs are sorted by ``(system, first_atom, second_atom, cell_shift)``; both ``(i, j)``
    and ``(j, i)`` are present, and so is every self pair ``(i, i)`` at zero shift.

    Attributes
    ----------
    values : ndarray of float64, shape (n_pairs, (max_angular + 1)**2, n_radial)
        ``values[p, l * l + l + m, n] = <n l m | g_ij>``.
    system, first_atom, second_atom : ndarray of int64, shape (n_pairs,)
        Frame and frame-local indices of ``i`` and ``j``.
    cell_shift : ndarray of int64, shape (n_pairs, 3)
        Lattice shift ``S`` of ``j``.
    first_type, second_type : ndarray of int64, shape (n_pairs,)
        Atomic numbers of ``i`` and ``j``.
    vectors : ndarray of float64, shape (n_pairs, 3)
        ``r_ij = r_j - r_i + S @ cell`` (Angstrom).
    """

    values: NDArray[np.float64]
    system: NDArray[np.int64]
    first_atom: NDArray[np.int64]
    second_atom: NDArray[np.int64]
    cell_shift: NDArray[np.int64]
    first_type: NDArray[np.int64]
    second_type: NDArray[np.int64]
    vectors: NDArray[np.float64]
    #: Separable factors (internal, ``PairExpansion._compute_factors``; ``values`` is then
    #: ``None``): ``values[p, lm, n] = angular[p, lm] * radial[p, l(lm), n]`` bit for bit.
    angular: NDArray[np.float64] | None = None
    radial: NDArray[np.float64] | None = None


def _n_chunks() -> int:
    """Work chunks for the parallel kernels: a few per Numba thread (load balance)."""
    import numba

    return 8 * numba.get_num_threads()


def _placeholder(shape) -> np.ndarray:
    """Read-only zeros of ``shape`` that take no memory (for ``compute_metadata``)."""
    return np.broadcast_to(np.zeros((), dtype=np.float64), shape)


class _DensityCalculator:
    """Hyperparameters, validation and tables shared by both calculators."""

    def __init__(
        self,
        *,
        cutoff: float = 4.0,
        cutoff_width: float = 0.5,
        density_width: float = 0.3,
        max_radial: int,
        max_angular: int,
        center_atom_weight: float = 1.0,
        species: Sequence[int] | None = None,
        spline_accuracy: float = 1e-8,
    ) -> None:
        self.cutoff = check_positive_float(cutoff, "cutoff")
        self.cutoff_width = check_positive_float(cutoff_width, "cutoff_width")
        if self.cutoff_width > self.cutoff:
            raise ValueError(
                f"`cutoff_width` must be <= `cutoff`, got cutoff_width={self.cutoff_width} and "
                f"cutoff={self.cutoff}"
            )
        self.density_width = check_positive_float(density_width, "density_width")
        self.max_radial = check_int(max_radial, "max_radial", minimum=0)
        self.max_angular = check_angular(max_angular, "max_angular", MAX_ANGULAR)
        if isinstance(center_atom_weight, bool) or not isinstance(
            center_atom_weight, (int, float, np.integer, np.floating)
        ):
            raise TypeError(
                f"`center_atom_weight` must be a real number, got {center_atom_weight!r}"
            )
        self.center_atom_weight = float(center_atom_weight)
        if not np.isfinite(self.center_atom_weight):
            raise ValueError(f"`center_atom_weight` must be finite, got {self.center_atom_weight}")
        self.species = None if species is None else check_species(species)
        self.spline_accuracy = check_positive_float(spline_accuracy, "spline_accuracy")
        self._spline = RadialSpline(
            cutoff=self.cutoff,
            density_width=self.density_width,
            max_radial=self.max_radial,
            max_angular=self.max_angular,
            accuracy=self.spline_accuracy,
        )
        from .kernels.sph import sph_coefficients

        self._sph_coefs = sph_coefficients(self.max_angular)

    @property
    def n_radial(self) -> int:
        """Number of radial functions, ``max_radial + 1``."""
        return self.max_radial + 1

    @property
    def hypers(self) -> dict:
        """Hyperparameters as a JSON-serialisable dict (lengths in Angstrom)."""
        return {
            "cutoff": self.cutoff,
            "cutoff_width": self.cutoff_width,
            "density_width": self.density_width,
            "max_radial": self.max_radial,
            "max_angular": self.max_angular,
            "center_atom_weight": self.center_atom_weight,
            "species": None if self.species is None else self.species.tolist(),
            "spline_accuracy": self.spline_accuracy,
        }

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.hypers.items())
        return f"{type(self).__name__}({args})"

    def _species_for(self, numbers: np.ndarray) -> np.ndarray:
        present = np.unique(numbers)
        if self.species is None:
            return present.astype(np.int64)
        # plain sets: np.setdiff1d costs ~0.1 ms on these few-element arrays
        unknown = sorted(set(present.tolist()) - set(self.species.tolist()))
        if unknown:
            raise ValueError(
                f"the frames contain species {unknown} that are not in `species` "
                f"{self.species.tolist()}"
            )
        return self.species

    def _prepare(self, frames) -> tuple[FrameArrays, np.ndarray, np.ndarray]:
        arrays = frames_to_arrays(frames)
        species = self._species_for(arrays.numbers)
        lookup = np.full(int(max(species.max(), arrays.numbers.max())) + 1, -1, dtype=np.int64)
        lookup[species] = np.arange(species.size)
        return arrays, species, lookup

    def _info(self, species: np.ndarray) -> dict:
        hypers = self.hypers
        hypers["species"] = species.tolist()
        return {"calculator": type(self).__name__, "hypers": hypers}

    def _work(self, n_pairs: int) -> float:
        """Multiply-adds of the expansion kernels for ``n_pairs`` pairs."""
        return float(n_pairs) * n_lm(self.max_angular) * self.n_radial

    def _kernel_tables(self):
        spline = self._spline
        return (
            1.0 / spline.step,
            spline.values,
            spline.scaled_derivatives,
            self._sph_coefs,
        )


class SphericalExpansion(_DensityCalculator):
    """Atom-centred neighbour density expansion ``<a n l m | rho_i>`` (featomic 0.6 compatible).

    Parameters
    ----------
    cutoff : float, optional
        Spherical cutoff ``r_c`` (Angstrom), also the GTO basis radius.  Default 4.0.
    cutoff_width : float, optional
        Width of the shifted-cosine smoothing below the cutoff (Angstrom), ``0 < w <= r_c``.
        Default 0.5.
    density_width : float, optional
        Width ``sigma`` of the Gaussian atomic density (Angstrom).  Default 0.3.
    max_radial : int
        Largest radial index; ``max_radial + 1`` GTO functions (featomic's meaning).
    max_angular : int
        Largest angular order ``l`` (inclusive), at most
        :data:`ncsym.conventions.MAX_ANGULAR`.
    center_atom_weight : float, optional
        Weight of the centre's own Gaussian in its density.  Default 1.0.
    species : sequence of int, optional
        Atomic numbers spanning the keys (centre and neighbour types).  Default: the species
        present in the frames given to each call; pass a fixed list so that training and
        prediction share the same blocks.  Frames with other species raise ``ValueError``.
    spline_accuracy : float, optional
        Largest absolute error of the splined radial integrals (see
        :class:`ncsym.radial.RadialSpline`).  Default 1e-8 (featomic's).
    neighbors_to_properties : bool, optional
        Move the neighbour type from the keys to the properties ``(neighbor_type, n)``.

    Raises
    ------
    TypeError, ValueError
        For hyperparameters of the wrong type or out of range (non-positive lengths,
        ``cutoff_width > cutoff``, ``max_angular`` above ``MAX_ANGULAR``,
        ``max_radial < 0`` or too large for the GTO orthonormalisation, bad ``species``).

    Notes
    -----
    ``compute`` returns blocks for every ``(o3_lambda, center_type, neighbor_type)`` with
    ``center_type`` and ``neighbor_type`` in the species list, ``o3_sigma = 1``, samples
    ``(system, atom)`` for every atom of ``center_type`` (zeros where it has no neighbour of
    ``neighbor_type``), properties ``(n,)``.  Under a rotation ``R`` the ``m`` axis
    transforms with ``D_l(R)``; under inversion a block picks up ``(-1)^l``.

    Examples
    --------
    >>> import ase.build, ncsym
    >>> calc = ncsym.SphericalExpansion(cutoff=4.0, max_radial=6, max_angular=4)
    >>> features = calc.compute(ase.build.molecule("H2O"))
    >>> features.block(o3_lambda=1, center_type=8, neighbor_type=1).values.shape
    (1, 3, 7)
    """

    def __init__(
        self,
        *,
        cutoff: float = 4.0,
        cutoff_width: float = 0.5,
        density_width: float = 0.3,
        max_radial: int,
        max_angular: int,
        center_atom_weight: float = 1.0,
        species: Sequence[int] | None = None,
        spline_accuracy: float = 1e-8,
        neighbors_to_properties: bool = False,
    ) -> None:
        if not isinstance(neighbors_to_properties, (bool, np.bool_)):
            raise TypeError(
                "`neighbors_to_properties` must be a bool, got "
                f"{type(neighbors_to_properties).__name__}"
            )
        self.neighbors_to_properties = bool(neighbors_to_properties)
        super().__init__(
            cutoff=cutoff,
            cutoff_width=cutoff_width,
            density_width=density_width,
            max_radial=max_radial,
            max_angular=max_angular,
            center_atom_weight=center_atom_weight,
            species=species,
            spline_accuracy=spline_accuracy,
        )

    @property
    def hypers(self) -> dict:
        """Hyperparameters as a JSON-serialisable dict (lengths in Angstrom)."""
        hypers = super().hypers
        hypers["neighbors_to_properties"] = self.neighbors_to_properties
        return hypers

    # ------------------------------------------------------------------ dense
    def compute_dense(self, frames) -> DenseExpansion:
        """Coefficients of every atom as one dense array (no per-atom Python loop).

        Parameters
        ----------
        frames : ase.Atoms or list of ase.Atoms
            Molecules (``pbc=False``) or periodic structures (``pbc=True``).

        Returns
        -------
        DenseExpansion
            ``values`` of shape ``(n_atoms_total, (max_angular + 1)**2, n_species,
            max_radial + 1)``.

        Raises
        ------
        TypeError, ValueError
            For invalid structures (see :func:`ncsym.neighbors.neighbor_list`) or species
            missing from ``species``.
        """
        from .kernels.density import expansion_by_center

        arrays, species, lookup = self._prepare(frames)
        first, _second, _shifts, vectors = _pairs_from_arrays(arrays, self.cutoff, False)
        n_atoms = arrays.positions.shape[0]
        pair_start = np.zeros(n_atoms + 1, dtype=np.int64)
        np.cumsum(np.bincount(first, minlength=n_atoms), out=pair_start[1:])
        neighbor_species = lookup[arrays.numbers[_second]]
        center_species = lookup[arrays.numbers]
        values = np.zeros((n_atoms, n_lm(self.max_angular), species.size, self.n_radial))
        inv_step, spline_values, spline_derivatives, sph_coefs = self._kernel_tables()
        with single_thread_below(self._work(first.size), PARALLEL_MIN_WORK):
            expansion_by_center(
                pair_start, vectors, neighbor_species, center_species, self.center_atom_weight,
                self.cutoff, self.cutoff_width, self.max_angular, self.n_radial, inv_step,
                spline_values, spline_derivatives, sph_coefs, _n_chunks(), values,
            )
        return DenseExpansion(
            values=values,
            system=arrays.atom_frame,
            atom=arrays.local_index,
            center_type=arrays.numbers,
            species=species,
        )

    # ------------------------------------------------------------------ blocks
    def compute(self, frames) -> BlockMap:
        """Expansion coefficients as a :class:`ncsym.BlockMap`.

        Parameters
        ----------
        frames : ase.Atoms or list of ase.Atoms
            Structures (positions in Angstrom).

        Returns
        -------
        BlockMap
            Keys ``(o3_lambda, o3_sigma, center_type, neighbor_type)`` (or ``(o3_lambda,
            o3_sigma, center_type)`` with ``neighbors_to_properties``); block values of
            shape ``(n_samples, 2 l + 1, n_properties)``.
        """
        dense = self.compute_dense(frames)
        return self._to_blocks(dense.system, dense.atom, dense.center_type, dense.species,
                               dense.values)

    def compute_metadata(self, frames) -> BlockMap:
        """Dry run of :meth:`compute`: same keys, samples and properties, no computation.

        Block values are read-only zero placeholders that take no memory.  Structures are
        validated, but overlapping atoms are only detected by :meth:`compute`.
        """
        arrays = frames_to_arrays(frames)
        species = self._species_for(arrays.numbers)
        return self._to_blocks(arrays.atom_frame, arrays.local_index, arrays.numbers, species,
                               None)

    def _to_blocks(self, system, atom, center_type, species, values) -> BlockMap:
        lmax = self.max_angular
        n_radial = self.n_radial
        radial_props = Labels.range("n", n_radial)
        if self.neighbors_to_properties:
            props = Labels(
                ("neighbor_type", "n"),
                np.stack(
                    [np.repeat(species, n_radial), np.tile(np.arange(n_radial), species.size)],
                    axis=1,
                ),
            )
        key_rows = []
        blocks = []
        for ct in species:
            rows = np.nonzero(center_type == ct)[0]
            samples = Labels(("system", "atom"), np.stack([system[rows], atom[rows]], axis=1))
            neighbor_loop = [None] if self.neighbors_to_properties else list(enumerate(species))
            for item in neighbor_loop:
                for lam in range(lmax + 1):
                    shape_m = 2 * lam + 1
                    lm = slice(lam * lam, (lam + 1) * (lam + 1))
                    if item is None:
                        key_rows.append((lam, 1, int(ct)))
                        n_props = species.size * n_radial
                        if values is None:
                            block_values = _placeholder((rows.size, shape_m, n_props))
                        else:
                            block_values = values[rows, lm].reshape(rows.size, shape_m, n_props)
                        blocks.append(Block(block_values, samples, props))
                    else:
                        a, nt = item
                        key_rows.append((lam, 1, int(ct), int(nt)))
                        if values is None:
                            block_values = _placeholder((rows.size, shape_m, n_radial))
                        else:
                            # one gather straight into a contiguous (rows, 2l+1, n) array
                            block_values = values[rows, lm, a, :]
                        blocks.append(Block(block_values, samples, radial_props))
        names = ("o3_lambda", "o3_sigma", "center_type")
        if not self.neighbors_to_properties:
            names = names + ("neighbor_type",)
        keys = Labels(names, np.array(key_rows, dtype=np.int64).reshape(-1, len(names)))
        return BlockMap(keys, blocks, self._info(species))


class PairExpansion(_DensityCalculator):
    """Single-neighbour expansions ``<n l m | g_ij>`` of every pair within the pair cutoff.

    ``g_ij`` is the density of neighbour ``j`` alone seen from ``i`` (weighted by the cutoff
    function), expanded on the same basis as :class:`SphericalExpansion`; the self pair
    ``(i, i)`` at zero shift carries the centre's own density (weight
    ``center_atom_weight``).  Summing ``g_ij`` over ``j`` (and shifts) of one neighbour type
    gives the atom-centred expansion exactly.  Equal to featomic's
    ``SphericalExpansionByPair``.

    Parameters
    ----------
    cutoff, cutoff_width, density_width, max_radial, max_angular, center_atom_weight, species,
    spline_accuracy
        As in :class:`SphericalExpansion`; ``cutoff`` is the pair cutoff (Angstrom).

    Notes
    -----
    Keys ``(o3_lambda, o3_sigma, first_atom_type, second_atom_type)`` for every pair of
    species, ``o3_sigma = 1``; samples ``(system, first_atom, second_atom, cell_shift_a,
    cell_shift_b, cell_shift_c)`` sorted in that order; properties ``(n,)``.  Both ``(i, j)``
    and ``(j, i)`` are listed.
    """

    def compute_dense(self, frames) -> DensePairExpansion:
        """``g_ij`` of every pair as one dense array.

        Parameters
        ----------
        frames : ase.Atoms or list of ase.Atoms

        Returns
        -------
        DensePairExpansion
            ``values`` of shape ``(n_pairs, (max_angular + 1)**2, max_radial + 1)``, pairs
            sorted by ``(system, first_atom, second_atom, cell_shift)``.
        """
        arrays, _species, _lookup = self._prepare(frames)
        return self._dense(arrays, compute_values=True)

    def _compute_factors(self, frames) -> DensePairExpansion:
        """:meth:`compute_dense` with the separable factors ``angular`` and ``radial`` of
        ``g_ij`` instead of ``values`` (internal: the pair features need only the factors)."""
        arrays, _species, _lookup = self._prepare(frames)
        return self._dense(arrays, compute_values=True, factors=True)

    def _dense(self, arrays: FrameArrays, compute_values: bool, factors: bool = False) -> DensePairExpansion:
        from .kernels.density import expansion_by_pair, expansion_by_pair_factors

        first, second, shifts, vectors = _pairs_from_arrays(arrays, self.cutoff, True)
        local = arrays.local_index
        if not compute_values:
            return DensePairExpansion(
                values=None,
                system=arrays.atom_frame[first],
                first_atom=local[first],
                second_atom=local[second],
                cell_shift=shifts,
                first_type=arrays.numbers[first],
                second_type=arrays.numbers[second],
                vectors=vectors,
            )
        is_self = (first == second) & ~np.any(shifts != 0, axis=1)
        inv_step, spline_values, spline_derivatives, sph_coefs = self._kernel_tables()
        common = (
            vectors, is_self, self.center_atom_weight, self.cutoff, self.cutoff_width, self.max_angular,
            self.n_radial, inv_step, spline_values, spline_derivatives, sph_coefs, _n_chunks(),
        )
        values = angular = radial = None
        if factors:
            angular = np.empty((first.size, n_lm(self.max_angular)))
            radial = np.empty((first.size, self.max_angular + 1, self.n_radial))
            if first.size:
                with single_thread_below(self._work(first.size), PARALLEL_MIN_WORK):
                    expansion_by_pair_factors(*common, angular, radial)
        else:
            values = np.empty((first.size, n_lm(self.max_angular), self.n_radial))
            if first.size:
                with single_thread_below(self._work(first.size), PARALLEL_MIN_WORK):
                    expansion_by_pair(*common, values)
        return DensePairExpansion(
            values=values,
            angular=angular,
            radial=radial,
            system=arrays.atom_frame[first],
            first_atom=local[first],
            second_atom=local[second],
            cell_shift=shifts,
            first_type=arrays.numbers[first],
            second_type=arrays.numbers[second],
            vectors=vectors,
        )

    def compute(self, frames) -> BlockMap:
        """``g_ij`` as a :class:`ncsym.BlockMap` (see the class Notes for the layout).

        Parameters
        ----------
        frames : ase.Atoms or list of ase.Atoms

        Returns
        -------
        BlockMap
        """
        arrays, species, _lookup = self._prepare(frames)
        return self._to_blocks(self._dense(arrays, compute_values=True), species)

    def compute_metadata(self, frames) -> BlockMap:
        """Dry run of :meth:`compute`: keys, samples and properties, placeholder values.

        Runs the neighbour search (the samples are the pairs) but not the expansion.
        """
        arrays, species, _lookup = self._prepare(frames)
        return self._to_blocks(self._dense(arrays, compute_values=False), species)

    def _to_blocks(self, dense: DensePairExpansion, species: np.ndarray) -> BlockMap:
        lmax = self.max_angular
        props = Labels.range("n", self.n_radial)
        lookup = np.full(int(species.max()) + 1, -1, dtype=np.int64)
        lookup[species] = np.arange(species.size)
        code = lookup[dense.first_type] * species.size + lookup[dense.second_type]
        order = np.argsort(code, kind="stable")
        bounds = np.searchsorted(code[order], np.arange(species.size**2 + 1))
        sample_columns = np.column_stack(
            [dense.system, dense.first_atom, dense.second_atom, dense.cell_shift]
        )
        names = (
            "system", "first_atom", "second_atom", "cell_shift_a", "cell_shift_b", "cell_shift_c"
        )
        key_rows = []
        blocks = []
        for a, ft in enumerate(species):
            for b, st in enumerate(species):
                group = a * species.size + b
                rows = order[bounds[group]:bounds[group + 1]]
                samples = Labels(names, sample_columns[rows])
                for lam in range(lmax + 1):
                    key_rows.append((lam, 1, int(ft), int(st)))
                    shape = (rows.size, 2 * lam + 1, self.n_radial)
                    if dense.values is None:
                        block_values = _placeholder(shape)
                    else:
                        block_values = dense.values[rows, lam * lam:(lam + 1) * (lam + 1)]
                    blocks.append(Block(block_values, samples, props))
        keys = Labels(
            ("o3_lambda", "o3_sigma", "first_atom_type", "second_atom_type"),
            np.array(key_rows, dtype=np.int64).reshape(-1, 4),
        )
        return BlockMap(keys, blocks, self._info(species))
