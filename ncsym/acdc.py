"""Atom-centred density correlations (ACDC) of any order, and lambda-SOAP.

The order-``nu`` correlations of the neighbour density are built one Clebsch-Gordan (CG)
increment at a time (DESIGN.md, Science 3; Nigam, Willatt and Ceriotti, J. Chem. Phys. 156,
014115 (2022))::

    <q; k; a n l | rho_i^(nu+1); sigma; lam mu>
        = sum_{q', m} <q | rho_i^(nu); sigma'; k q'> <a n l m | rho_i> <k q'; l m | lam mu>,
    sigma = sigma' (-1)^(k + l + lam),

starting from ``rho_i^(1)`` = the density expansion (``lambda = l``, ``sigma = +1``).  The
result is equivariant: a block ``(lam, sigma)`` transforms as
``X(R A) = det(R)^((1 - sigma) / 2) D_lam(R) X(A)`` on the ``mu`` axis.

Implementation
    For each centre type the centres are processed in chunks.  Every iteration is one call of
    the fused kernel :func:`ncsym.kernels.cg_cpu.outer_product_plan`, which reads the previous
    order and the density from flat *sample-major* buffers (each centre's data contiguous,
    parallel over centres) and writes all ``(lam, sigma)`` blocks of the next order at once;
    the last iteration writes straight into the output blocks.  Intermediate orders only exist
    for one chunk at a time, so memory is the output plus a bounded work buffer.
Redundancy
    With ``skip_redundant=True`` (default, as featomic) only sorted ``l_1 <= l_2 <= ... <= l_nu``
    are formed; this is exact for auto-correlations (the other orderings are linear
    combinations of these).
Contraction
    The number of properties grows like ``(n_species n_radial)^nu``.  With ``contraction``, each
    intermediate ``(lam, sigma)`` block (orders ``2 .. nu-1``) is projected on its leading
    principal directions (uncentred PCA over samples and ``mu``, fitted by :meth:`fit` on
    training frames and reused on new frames).  A linear map on properties commutes with
    rotations, so the output stays exactly equivariant.

Output layout: keys ``(o3_lambda, o3_sigma, center_type)``, samples ``(system, atom)``,
properties ``(l_1, l_2, [k_2, l_3, ...], neighbor_1_type, n_1, neighbor_2_type, n_2, ...)``
as featomic's ``keys_to_properties`` output; with contraction the properties of order ``nu``
are ``(k_{nu-1}, l_nu, pc_{nu-1}, neighbor_nu_type, n_nu)`` where ``pc`` counts principal
components of the contracted block ``(k_{nu-1}, sigma)`` (``sigma`` follows from the key).
"""

from __future__ import annotations

import numbers
from dataclasses import dataclass, field

import numpy as np

from . import buffers
from ._checks import check_angular, check_int
from .blocks import Block, BlockMap, Labels
from .conventions import product_parity
from .products import (
    Plan,
    PlanBuilder,
    _normalise_selection,
    check_selection,
    run_plan,
    run_plan_blocks,
    selection_mask,
)

__all__ = ["DensityCorrelations", "EquivariantPowerSpectrum", "DenseDensity"]

#: Bytes of work buffer (intermediate orders) aimed at per chunk of centres.
CHUNK_BYTES = 256 * 2**20
#: Default memory budget when /proc/meminfo is unreadable.
DEFAULT_BUDGET = 8 * 2**30
#: Pipelines (plans and property labels) kept per calculator, for repeated calls.
PIPELINE_CACHE_SIZE = 16
#: CPU: assemble each sample of the last step in cache and copy it to its blocks
#: (:func:`ncsym.products.run_plan_blocks`) instead of writing the blocks row by row, when one
#: sample's output takes at most STAGE_MAX_BYTES.  Measured on a 1 MiB L2: Si216 lambda-SOAP
#: 155 KiB (L4) and 550 KiB (L6) per sample, +25 %; ethanol 0.7 MiB even, 1.4 MiB -15 %.
STAGED_LAST_STEP = True
STAGE_MAX_BYTES = 640 * 2**10
#: Eigenvalues below this fraction of the largest are dropped from a contraction.
RANK_TOLERANCE = 1e-12


def _available_memory() -> int:
    try:
        with open("/proc/meminfo") as fd:
            for line in fd:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):  # pragma: no cover - depends on the OS
        pass
    return DEFAULT_BUDGET  # pragma: no cover - depends on the OS


def _gib(n: float) -> str:
    return f"{n / 2**30:.3g} GiB"


# ---------------------------------------------------------------------------- density input


@dataclass
class DenseDensity:
    """Density coefficients of many centres, as kernels read them.

    Attributes
    ----------
    values : ndarray of float64, shape (n_centers, (lmax + 1)**2, n_species * n_radial)
        ``<a n l m | rho_i>`` with ``(l, m)`` flattened as ``l*l + l + m`` and property
        ``species_index * n_radial + n``.
    system, atom, center_type : ndarray of int32, shape (n_centers,)
    species : ndarray of int32, shape (n_species,)
        Neighbour species (atomic numbers) of the species axis.
    n_radial : int
    hypers : dict or None
        Hyperparameters of the expansion that produced it, when known.
    """

    values: np.ndarray
    system: np.ndarray
    atom: np.ndarray
    center_type: np.ndarray
    species: np.ndarray
    n_radial: int
    hypers: dict | None = None

    @property
    def max_angular(self) -> int:
        return int(round(np.sqrt(self.values.shape[1]))) - 1

    @classmethod
    def from_expansion(cls, dense, name: str = "density") -> DenseDensity:
        """Wrap a ``DenseExpansion`` (``values`` of shape (n, (lmax+1)**2, n_species, n_radial))."""
        if isinstance(dense, DenseDensity):
            return dense
        missing = [a for a in ("values", "system", "atom", "center_type", "species") if not hasattr(dense, a)]
        if missing:
            raise TypeError(
                f"`{name}` must be a DenseExpansion (from SphericalExpansion.compute_dense) with "
                f"values, system, atom, center_type and species; missing {missing}"
            )
        values = np.asarray(dense.values)
        if values.dtype != np.float64:
            raise TypeError(f"`{name}.values` must be float64, got {values.dtype}")
        if values.ndim != 4:
            raise ValueError(
                f"`{name}.values` must have shape (n_centers, (max_angular+1)**2, n_species, n_radial), "
                f"got {values.shape}"
            )
        n, n_lm, n_species, n_radial = values.shape
        lmax = int(round(np.sqrt(n_lm))) - 1
        if (lmax + 1) ** 2 != n_lm:
            raise ValueError(f"`{name}.values` axis 1 must have (max_angular+1)**2 entries, got {n_lm}")
        arrays = {}
        for attr in ("system", "atom", "center_type"):
            arr = np.asarray(getattr(dense, attr))
            if arr.shape != (n,):
                raise ValueError(f"`{name}.{attr}` must have shape ({n},), got {arr.shape}")
            arrays[attr] = arr.astype(np.int32)
        species = np.asarray(dense.species).astype(np.int32).reshape(-1)
        if species.shape[0] != n_species:
            raise ValueError(f"`{name}.species` has {species.shape[0]} entries for {n_species} species channels")
        if not np.all(np.isfinite(values)):
            raise ValueError(f"`{name}.values` contains NaN or infinite values")
        hypers = getattr(dense, "hypers", None)
        return cls(
            values=np.ascontiguousarray(values.reshape(n, n_lm, n_species * n_radial)),
            system=arrays["system"],
            atom=arrays["atom"],
            center_type=arrays["center_type"],
            species=species,
            n_radial=int(n_radial),
            hypers=dict(hypers) if isinstance(hypers, dict) else None,
        )

    def right_labels(self, order: int) -> tuple[tuple[str, str], np.ndarray]:
        """Names and values ``(neighbor_<order>_type, n_<order>)`` of the property axis."""
        sp = np.repeat(self.species, self.n_radial)
        nn = np.tile(np.arange(self.n_radial, dtype=np.int32), len(self.species))
        return (f"neighbor_{order}_type", f"n_{order}"), np.stack([sp, nn], axis=1)

    def with_species(self, species: np.ndarray, name: str = "density") -> DenseDensity:
        """The same coefficients on the species axis ``species`` (zeros for absent species)."""
        species = np.asarray(species, dtype=np.int32)
        if np.array_equal(species, self.species):
            return self
        extra = sorted(set(self.species.tolist()) - set(species.tolist()))
        if extra:
            raise ValueError(
                f"`{name}` has neighbour species {extra} that were not present when the contraction "
                f"was fitted (species {species.tolist()}): fit on frames containing them, or pass "
                "`species=` explicitly to the expansion"
            )
        n, n_lm, _ = self.values.shape
        new = np.zeros((n, n_lm, len(species), self.n_radial))
        old = self.values.reshape(n, n_lm, len(self.species), self.n_radial)
        for i, sp in enumerate(self.species):
            new[:, :, int(np.nonzero(species == sp)[0][0])] = old[:, :, i]
        return DenseDensity(
            new.reshape(n, n_lm, -1), self.system, self.atom, self.center_type, species, self.n_radial, self.hypers
        )


# ---------------------------------------------------------------------------- layouts


@dataclass
class _Segment:
    """A property range of one block of a sample-major buffer (one CG history)."""

    lam: int
    sigma: int
    offset: int  # per-sample offset of the block's (mu=0, p=0) entry, plus the range start
    mstride: int  # distance between components (the block's width)
    width: int
    labels: np.ndarray | None  # (width, n_cols)
    last_l: int | None  # last density order in the history (None: contracted / unknown)


@dataclass
class _OutBlock:
    lam: int
    sigma: int
    width: int = 0
    contribs: list = field(default_factory=list)  # (segment index, l, property offset)
    labels: list = field(default_factory=list)


@dataclass
class _Layout:
    """Segments of one order in a sample-major buffer of ``size`` floats per sample."""

    segments: list
    size: int
    names: tuple  # property names


@dataclass
class _Step:
    """One CG iteration ``order -> order + 1``: output blocks and their property names."""

    order: int  # order of the left operand
    blocks: list  # of _OutBlock, sorted by (lam, -sigma)
    names: tuple


@dataclass(frozen=True)
class _BlockTarget:
    """Last step writes samples ``sample0 ..`` of block-major blocks of ``n_total`` samples."""

    sample0: int
    n_total: int


@dataclass
class _Pipeline:
    """Steps of one centre type, the sample-major layouts of intermediate orders and their plans."""

    steps: list  # of (left _Layout, _Step)
    mids: list  # _Layout of the (uncontracted) output of steps[:-1]
    right_width: int
    right_lmax: int
    _plans: list | None = None
    _final_one: Plan | None = None  # last step, block-major output for one sample
    _starts_one: np.ndarray | None = None
    labels: list | None = None  # property Labels of the output blocks (filled by the caller)

    @property
    def plans(self) -> list:
        if self._plans is None:
            self._plans = [
                _build_plan(step, left, self.right_width, self.right_lmax, None).build()
                for left, step in self.steps[:-1]
            ]
        return self._plans

    def final_plan(self, n: int) -> Plan:
        """Plan of the last step writing block-major output blocks of ``n`` samples.

        Built once for one sample; for ``n`` samples block ``i`` starts at ``n * start_i``
        instead of ``start_i``, so only the row offsets change.
        """
        if self._final_one is None:
            left, step = self.steps[-1]
            self._final_one = _build_plan(step, left, self.right_width, self.right_lmax, 1).build()
            sizes = [(2 * b.lam + 1) * b.width for b in step.blocks]
            self._starts_one = np.concatenate([[0], np.cumsum(sizes)[:-1]]).astype(np.int64)
        one = self._final_one
        rows = one.rows.copy()
        block = np.searchsorted(self._starts_one, rows[:, 0], side="right") - 1
        rows[:, 0] += (n - 1) * self._starts_one[block]
        return Plan(one.groups, one.pair_m1, one.pair_m2, rows, one.nz_pair, one.nz_coef, one.buf_size, one.flops)

    def final_blocks(self) -> tuple[Plan, np.ndarray, np.ndarray]:
        """The last step's plan for one sample, and the start and size of each of its blocks
        in that sample's output (for :func:`ncsym.products.run_plan_blocks`)."""
        self.final_plan(1)
        sizes = np.array([(2 * b.lam + 1) * b.width for b in self.steps[-1][1].blocks], dtype=np.int64)
        return self._final_one, self._starts_one, sizes

    def work_bytes(self, x1: np.ndarray) -> int:
        """Work-buffer bytes per centre (density row, intermediate orders and projections)."""
        mids = sum(lay.size for lay in self.mids) + sum(left.size for left, _ in self.steps[1:])
        return 8 * (mids + x1.shape[1] * x1.shape[2])

    def final_size(self) -> int:
        """Floats per centre of the output."""
        return sum((2 * b.lam + 1) * b.width for b in self.steps[-1][1].blocks) if self.steps else 0


def _lambda_name(order: int) -> str:
    return "l_1" if order == 1 else f"k_{order}"


def _plan_step(
    left: _Layout,
    order: int,
    right_lmax: int,
    right_width: int,
    right_names: tuple,
    right_labels: np.ndarray | None,
    keep,
    skip_redundant: bool,
    contracted_left: bool,
    with_labels: bool,
) -> _Step:
    """Enumerate the output blocks of one iteration (all allowed ``(k, l) -> lam``)."""
    blocks: dict[tuple[int, int], _OutBlock] = {}
    new_l_names = (_lambda_name(order), f"l_{order + 1}")
    if contracted_left:
        names = new_l_names + left.names + right_names
        n_l_cols = 0
    else:
        n_l_cols = 2 * (order - 1)
        names = left.names[:n_l_cols] + new_l_names + left.names[n_l_cols:] + right_names
    for si, seg in enumerate(left.segments):
        for l in range(right_lmax + 1):
            if skip_redundant and seg.last_l is not None and l < seg.last_l:
                continue
            for lam in range(abs(seg.lam - l), seg.lam + l + 1):
                sigma = product_parity(seg.sigma, 1, seg.lam, l, lam)
                if not keep(lam, sigma):
                    continue
                blk = blocks.setdefault((lam, sigma), _OutBlock(lam, sigma))
                w = seg.width * right_width
                blk.contribs.append((si, l, blk.width))
                blk.width += w
                if with_labels:
                    left_lab = seg.labels
                    lc = np.repeat(left_lab, right_width, axis=0)
                    rc = np.tile(right_labels, (seg.width, 1))
                    kl = np.tile(np.array([[seg.lam, l]], dtype=np.int32), (w, 1))
                    blk.labels.append(np.hstack([lc[:, :n_l_cols], kl, lc[:, n_l_cols:], rc]).astype(np.int32))
    ordered = [blocks[k] for k in sorted(blocks, key=lambda k: (k[0], -k[1]))]
    return _Step(order=order, blocks=ordered, names=names)


def _sample_major(step: _Step, last_l_from_contrib: bool) -> _Layout:
    """Layout of the step's output as a sample-major buffer (intermediate orders).

    With ``last_l_from_contrib`` every contribution ``(k, l)`` is its own segment, keeping the
    last ``l`` of its CG history (for ``skip_redundant``); otherwise one segment per block.
    """
    segments = []
    offset = 0
    for blk in step.blocks:
        labels = np.vstack(blk.labels) if blk.labels else None
        if last_l_from_contrib:
            for k, (_si, l, off) in enumerate(blk.contribs):
                end = blk.contribs[k + 1][2] if k + 1 < len(blk.contribs) else blk.width
                lab = None if labels is None else labels[off:end]
                segments.append(_Segment(blk.lam, blk.sigma, offset + off, blk.width, end - off, lab, l))
        else:
            segments.append(_Segment(blk.lam, blk.sigma, offset, blk.width, blk.width, labels, None))
        offset += (2 * blk.lam + 1) * blk.width
    return _Layout(segments=segments, size=offset, names=step.names)


def _density_layout(dens_lmax: int, width: int, names: tuple, labels: np.ndarray | None) -> _Layout:
    """The density ``(n, (lmax+1)**2, P)`` as order-1 segments (``lambda = l``, ``sigma = +1``)."""
    segs = [_Segment(l, 1, l * l * width, width, width, labels, l) for l in range(dens_lmax + 1)]
    return _Layout(segments=segs, size=(dens_lmax + 1) ** 2 * width, names=names)


def _build_plan(step: _Step, left: _Layout, right_width: int, right_lmax: int, final_n: int | None) -> PlanBuilder:
    """Kernel plan of one step; ``final_n``: block-major output for that many samples."""
    builder = PlanBuilder()
    # output addressing
    bases = []
    offset = 0
    for blk in step.blocks:
        size = (2 * blk.lam + 1) * blk.width
        if final_n is None:
            bases.append((offset, None))
            offset += size
        else:
            bases.append((offset, size))
            offset += final_n * size
    sample_size = offset if final_n is None else None
    by_group: dict[tuple[int, int], list] = {}
    for bi, blk in enumerate(step.blocks):
        base, size = bases[bi]
        sstride = sample_size if final_n is None else size
        for si, l, off in blk.contribs:
            by_group.setdefault((si, l), []).append((blk.lam, base, sstride, blk.width, off))
    n_lm_width = (right_lmax + 1) ** 2 * right_width
    for (si, l), outputs in by_group.items():
        seg = left.segments[si]
        outputs.sort(key=lambda o: o[0])
        builder.add(
            l1=seg.lam,
            a_base=seg.offset,
            a_sstride=left.size,
            a_mstride=seg.mstride,
            a_p=seg.width,
            l2=l,
            b_base=l * l * right_width,
            b_sstride=n_lm_width,
            b_mstride=right_width,
            b_p=right_width,
            outputs=outputs,
        )
    return builder


# ---------------------------------------------------------------------------- contraction


def _fit_projection(stat: np.ndarray, is_gram: bool, n_components) -> tuple[np.ndarray, np.ndarray]:
    """Leading principal directions from a Gram matrix or stacked rows.

    Returns the projection ``V`` (width, n_kept) and the eigenvalues kept.
    """
    if is_gram:
        evals, evecs = np.linalg.eigh(stat)
        evals, evecs = evals[::-1], evecs[:, ::-1]
        vecs = evecs
    else:
        x = stat
        gram = x @ x.T
        evals, u = np.linalg.eigh(gram)
        evals, u = evals[::-1], u[:, ::-1]
        positive = evals > 0
        vecs = np.zeros((x.shape[1], len(evals)))
        vecs[:, positive] = (x.T @ u[:, positive]) / np.sqrt(evals[positive])
    evals = np.maximum(evals, 0.0)
    top = evals[0] if evals.size else 0.0
    rank = int(np.sum(evals > RANK_TOLERANCE * top)) if top > 0 else 0
    if isinstance(n_components, float):
        if rank == 0:
            keep = 0
        else:
            frac = np.cumsum(evals[:rank]) / np.sum(evals[:rank])
            keep = int(np.searchsorted(frac, n_components - 1e-15) + 1)
    elif n_components is None:
        keep = rank
    else:
        keep = min(int(n_components), rank)
    vecs = vecs[:, :keep]
    # deterministic signs: largest entry of each direction positive
    if keep:
        pivot = np.argmax(np.abs(vecs), axis=0)
        signs = np.sign(vecs[pivot, np.arange(keep)])
        signs[signs == 0] = 1.0
        vecs = vecs * signs
    return np.ascontiguousarray(vecs), evals[:keep]


# ---------------------------------------------------------------------------- calculator


class DensityCorrelations:
    """Atom-centred density correlations of order ``nu`` (``nu = 2`` is lambda-SOAP).

    Parameters
    ----------
    expansion : SphericalExpansion or dict
        The density: an :class:`ncsym.SphericalExpansion` (anything with ``compute_dense`` and
        ``max_angular``), or its hyperparameters as a dict (``max_angular`` required; the
        expansion is built on first use).
    correlation_order : int
        ``nu >= 1`` (body order ``nu + 1``).
    max_lambda : int, optional
        Largest output ``o3_lambda`` (default ``nu * max_angular``, every reachable order).
    selected_keys : ncsym.Labels or sequence of (o3_lambda, o3_sigma), optional
        Output keys to compute (names among ``o3_lambda, o3_sigma, center_type``).
    angular_cutoff : int, optional
        Largest ``lambda`` kept at intermediate orders ``2 .. nu-1`` (default: every order
        that can still reach ``max_lambda``).  Lowering it loses information, like featomic's.
    contraction : int, float or dict, optional
        PCA of every intermediate ``(lambda, sigma)`` block: an ``int`` number of components,
        a ``float`` in (0, 1] fraction of the variance kept, or a dict
        ``{(lambda, sigma): int or float}`` (missing blocks keep every component).  Needs
        :meth:`fit`.  Default: no contraction.
    skip_redundant : bool
        Keep only sorted ``l_1 <= l_2 <= ...`` (featomic's default).  With contraction only
        the first iteration can use it.
    backend : {"cpu", "cuda"}
        Kernel backend (default CPU).
    memory_budget : int, optional
        Bytes the output plus work buffers may use; default half of the available memory.
        Larger requests raise ``ValueError`` before allocating anything.
    chunk_size : int, optional
        Centres per chunk (default: chosen from the budget).
    progress : bool, optional
        Show tqdm progress bars for long work; default (None): only on a terminal.
    expansion_2 : SphericalExpansion or dict, optional
        Second density for a cross-correlation (``correlation_order=2`` only; prefer
        :class:`EquivariantPowerSpectrum`).

    Raises
    ------
    TypeError, ValueError
        Invalid hyperparameters (with the accepted range).

    Examples
    --------
    >>> import ncsym
    >>> hypers = dict(cutoff=4.0, density_width=0.3, max_radial=6, max_angular=4)
    >>> calc = ncsym.DensityCorrelations(expansion=hypers, correlation_order=2, max_lambda=4)
    """

    def __init__(
        self,
        *,
        expansion,
        correlation_order: int,
        max_lambda: int | None = None,
        selected_keys=None,
        angular_cutoff: int | None = None,
        contraction=None,
        skip_redundant: bool = True,
        backend: str = "cpu",
        memory_budget: int | None = None,
        chunk_size: int | None = None,
        progress: bool | None = None,
        expansion_2=None,
    ) -> None:
        from .kernels import check_backend

        self._expansion, self.hypers, self.max_angular = self._parse_expansion(expansion, "expansion")
        self._expansion_2 = None
        self.hypers_2 = None
        self.max_angular_2 = self.max_angular
        if expansion_2 is not None:
            self._expansion_2, self.hypers_2, self.max_angular_2 = self._parse_expansion(expansion_2, "expansion_2")
            sp1 = self.hypers.get("species") if self.hypers else None
            sp2 = self.hypers_2.get("species") if self.hypers_2 else None
            if sp1 is not None and sp2 is not None and list(sp1) != list(sp2):
                raise ValueError(
                    f"`expansion` and `expansion_2` have different species {list(sp1)} and {list(sp2)}: "
                    "pass the same `species=` to both"
                )
        self.correlation_order = check_int(correlation_order, "correlation_order", minimum=1)
        if expansion_2 is not None and self.correlation_order != 2:
            raise ValueError("`expansion_2` (cross-correlation) is only supported with correlation_order=2")
        nu = self.correlation_order
        reach = self.max_angular + (nu - 1) * self.max_angular_2
        if max_lambda is None:
            max_lambda = reach
        self.max_lambda = check_int(max_lambda, "max_lambda", minimum=0)
        if self.max_lambda > reach:
            raise ValueError(
                f"`max_lambda` must be <= correlation_order * max_angular = {reach} (the largest "
                f"reachable order), got {self.max_lambda}"
            )
        self.selected_keys = _normalise_selection(selected_keys)
        check_selection(self.selected_keys, ("o3_lambda", "o3_sigma", "center_type"), self.max_lambda)
        if angular_cutoff is not None:
            angular_cutoff = check_int(angular_cutoff, "angular_cutoff", minimum=0)
        self.angular_cutoff = angular_cutoff
        self.contraction = self._parse_contraction(contraction)
        if self.contraction is not None and self.correlation_order < 3:
            raise ValueError(
                "`contraction` acts on the intermediate orders 2 .. correlation_order - 1; "
                f"correlation_order={self.correlation_order} has none: drop `contraction` or use "
                "correlation_order >= 3"
            )
        self.skip_redundant = bool(skip_redundant)
        self.backend = check_backend(backend)
        if memory_budget is not None:
            if isinstance(memory_budget, bool) or not isinstance(memory_budget, numbers.Real) or memory_budget <= 0:
                raise ValueError(f"`memory_budget` must be a positive number of bytes, got {memory_budget!r}")
        self.memory_budget = memory_budget
        if chunk_size is not None:
            chunk_size = check_int(chunk_size, "chunk_size", minimum=1)
        self.chunk_size = chunk_size
        self.progress = None if progress is None else bool(progress)
        self.components_: dict | None = None
        self.explained_variance_: dict | None = None
        self._fit_species: np.ndarray | None = None

    # ------------------------------------------------------------------ parsing
    @staticmethod
    def _parse_expansion(expansion, name):
        if isinstance(expansion, dict):
            hypers = dict(expansion)
            if "max_angular" not in hypers:
                raise ValueError(f"`{name}` hyperparameters must include `max_angular`, got keys {sorted(hypers)}")
            lmax = check_angular(hypers["max_angular"], f"{name}['max_angular']")
            return None, hypers, lmax
        if hasattr(expansion, "compute_dense") and hasattr(expansion, "max_angular"):
            hypers = getattr(expansion, "hypers", None)
            if callable(hypers):
                hypers = hypers()
            hypers = dict(hypers) if isinstance(hypers, dict) else None
            return expansion, hypers, check_angular(expansion.max_angular, f"{name}.max_angular")
        raise TypeError(
            f"`{name}` must be a SphericalExpansion or a dict of its hyperparameters, got {type(expansion).__name__}"
        )

    @staticmethod
    def _parse_contraction(contraction):
        def one(value, what):
            if isinstance(value, bool):
                raise TypeError(f"{what} must be an int or a float, got {value!r}")
            if isinstance(value, numbers.Integral):
                if value < 1:
                    raise ValueError(f"{what} must be >= 1 components, got {value}")
                return int(value)
            if isinstance(value, numbers.Real):
                if not 0 < value <= 1:
                    raise ValueError(f"{what} must be a variance fraction in (0, 1], got {value}")
                return float(value)
            raise TypeError(f"{what} must be an int or a float, got {value!r}")

        if contraction is None:
            return None
        if isinstance(contraction, dict):
            out = {}
            for key, value in contraction.items():
                if not (isinstance(key, tuple) and len(key) == 2):
                    raise ValueError(f"`contraction` keys must be (lambda, sigma) tuples, got {key!r}")
                out[(int(key[0]), int(key[1]))] = one(value, f"`contraction[{key}]`")
            return out
        return one(contraction, "`contraction`")

    def _no_progress(self):
        """tqdm's ``disable``: with ``progress=None``, hidden unless stderr is a terminal.

        Decided here rather than by ``disable=None``, for which tqdm wraps the stream before it
        asks (0.14 ms, a tenth of a Si216 density).
        """
        if self.progress is None:
            import sys

            isatty = getattr(sys.stderr, "isatty", None)
            return not (isatty is not None and isatty())
        return not self.progress

    def _keep_fn(self, order_out: int, center_type: int):
        """Which ``(lam, sigma)`` to form at output order ``order_out``."""
        nu = self.correlation_order
        if order_out == nu:
            sel = self.selected_keys
            names = ("o3_lambda", "o3_sigma", "center_type")

            def keep(lam, sigma):
                if lam > self.max_lambda:
                    return False
                if sel is None:
                    return True
                return bool(selection_mask(sel, names, np.array([[lam, sigma, center_type]]))[0])

            return keep
        reach = self.max_lambda + (nu - order_out) * self.max_angular_2
        cap = reach if self.angular_cutoff is None else min(reach, self.angular_cutoff)

        def keep_mid(lam, sigma):
            return lam <= cap

        return keep_mid

    def _n_components(self, lam: int, sigma: int):
        c = self.contraction
        if isinstance(c, dict):
            return c.get((lam, sigma))
        return c

    # ------------------------------------------------------------------ density
    def _densities(self, frames, density, density_2=None):
        if (frames is None) == (density is None):
            raise ValueError("pass exactly one of `frames` and `density=`")
        if density is None:
            d1 = DenseDensity.from_expansion(self._get_expansion(1).compute_dense(frames))
            d2 = None
            if self._expansion_2 is not None or self.hypers_2 is not None:
                d2 = DenseDensity.from_expansion(self._get_expansion(2).compute_dense(frames), "density_2")
        else:
            d1 = DenseDensity.from_expansion(density)
            d2 = None if density_2 is None else DenseDensity.from_expansion(density_2, "density_2")
        self._check_density(d1, self.hypers, self.max_angular, "density", "expansion")
        if self.hypers_2 is not None or self._expansion_2 is not None:
            if d2 is None:
                raise ValueError("this calculator correlates two expansions: pass `density_2=` too")
            self._check_density(d2, self.hypers_2, self.max_angular_2, "density_2", "expansion_2")
            if not (np.array_equal(d1.system, d2.system) and np.array_equal(d1.atom, d2.atom)):
                raise ValueError(
                    "the two expansions describe different centres (system, atom): compute them on the same "
                    "frames with the same centre selection"
                )
            if not np.array_equal(d1.species, d2.species):
                raise ValueError(
                    f"the two expansions have different species {d1.species.tolist()} and "
                    f"{d2.species.tolist()}: pass the same `species=` to both"
                )
        elif d2 is not None:
            raise ValueError("`density_2` is only accepted by calculators built with `expansion_2`")
        return d1, d2

    def _get_expansion(self, which: int):
        if which == 1:
            if self._expansion is None:
                from .density import SphericalExpansion

                self._expansion = SphericalExpansion(**self.hypers)
            return self._expansion
        if self._expansion_2 is None:
            from .density import SphericalExpansion

            self._expansion_2 = SphericalExpansion(**self.hypers_2)
        return self._expansion_2

    @staticmethod
    def _check_density(d: DenseDensity, hypers, lmax: int, name: str, source: str):
        if d.max_angular != lmax:
            raise ValueError(
                f"`{name}` was computed with max_angular={d.max_angular} but `{source}` has "
                f"max_angular={lmax}: compute the density with the same expansion, or build the "
                f"calculator from the density's hyperparameters"
            )
        if hypers is not None and d.hypers is not None:
            diff = [
                f"{k}: {d.hypers[k]!r} != {hypers[k]!r}"
                for k in sorted(set(hypers) & set(d.hypers))
                if k != "species" and _differs(d.hypers[k], hypers[k])
            ]
            if diff:
                raise ValueError(
                    f"`{name}` was computed with other hyperparameters than `{source}` ("
                    + "; ".join(diff)
                    + f"): recompute the density with `{source}`, or build the calculator with the "
                    "density's hyperparameters"
                )

    # ------------------------------------------------------------------ layouts
    def _pipeline(self, ct: int, d1: DenseDensity, d2: DenseDensity | None, order_out: int, with_labels: bool):
        """Steps ``1 -> 2 -> ... -> order_out`` for centre type ``ct``.

        Intermediate orders (``< order_out``) are contracted when ``contraction`` is set
        (they must be fitted).  Returns a :class:`_Pipeline`.
        """
        right = d2 if d2 is not None else d1
        names1, lab1 = d1.right_labels(1)
        left = _density_layout(d1.max_angular, d1.values.shape[2], names1, lab1 if with_labels else None)
        contracted = False
        steps, mids = [], []
        for order in range(1, order_out):
            rnames, rlab = right.right_labels(order + 1)
            step = _plan_step(
                left,
                order,
                right.max_angular,
                right.values.shape[2],
                rnames,
                rlab if with_labels else None,
                self._keep_fn(order + 1, ct),
                self.skip_redundant and not contracted,
                contracted,
                with_labels,
            )
            steps.append((left, step))
            if order + 1 == order_out:
                break
            mids.append(_sample_major(step, last_l_from_contrib=False))
            if self.contraction is not None:
                left = self._contracted_layout(ct, order + 1, step)
                contracted = True
            else:
                left = _sample_major(step, last_l_from_contrib=True)
        return _Pipeline(steps=steps, mids=mids, right_width=right.values.shape[2], right_lmax=right.max_angular)

    def _cached_pipeline(self, ct: int, d1: DenseDensity, d2: DenseDensity | None) -> _Pipeline:
        """The pipeline of :meth:`_pipeline` up to ``correlation_order``, shared between calls.

        Pipelines with the same layout (e.g. every centre type without contraction, and every
        batch of frames) share one object, hence their plans and property labels.
        """
        # planning itself costs ~0.2 ms per call: remember which pipeline a given centre type,
        # density layout and configuration led to (forgotten by `fit`)
        quick = (
            ct,
            _density_key(d1),
            None if d2 is None else _density_key(d2),
            self.correlation_order,
            self.max_lambda,
            self.max_angular_2,
            self.angular_cutoff,
            self.skip_redundant,
            None if self.selected_keys is None else (self.selected_keys.names, self.selected_keys.values.tobytes()),
            repr(self.contraction),
            id(self.components_),
        )
        known = self.__dict__.setdefault("_pipeline_keys", {})
        cache = self.__dict__.setdefault("_pipelines", {})
        if quick in known and known[quick] in cache:
            return cache[known[quick]]
        pipe = self._pipeline(ct, d1, d2, self.correlation_order, with_labels=False)
        names = (d1.right_labels(1)[1].tobytes(), None if d2 is None else d2.right_labels(1)[1].tobytes())
        key = (_signature(pipe), names)
        if len(known) >= 4 * PIPELINE_CACHE_SIZE:
            known.clear()
        known[quick] = key
        if key not in cache:
            if len(cache) >= PIPELINE_CACHE_SIZE:
                cache.pop(next(iter(cache)))
            cache[key] = pipe
        return cache[key]

    def _contracted_layout(self, ct: int, order: int, step: _Step) -> _Layout:
        """Layout after projecting the blocks of ``step`` (order ``order``) on their components."""
        if self.components_ is None:
            raise ValueError(
                "this DensityCorrelations uses `contraction`: call `fit(frames)` on training frames "
                "before `compute`"
            )
        segs = []
        offset = 0
        for blk in step.blocks:
            comp = self.components_.get((order, ct, blk.lam, blk.sigma))
            if comp is None:
                raise ValueError(
                    f"no contraction fitted for order {order}, center_type {ct}, (lambda, sigma) = "
                    f"({blk.lam}, {blk.sigma}): fit on frames that contain this centre type"
                )
            w = comp.shape[1]
            if w == 0:
                continue
            lab = np.arange(w, dtype=np.int32).reshape(-1, 1)
            segs.append(_Segment(blk.lam, blk.sigma, offset, w, w, lab, None))
            offset += (2 * blk.lam + 1) * w
        return _Layout(segments=segs, size=offset, names=(f"pc_{order}",))

    # ------------------------------------------------------------------ memory
    def _budget(self) -> int:
        return int(self.memory_budget) if self.memory_budget is not None else _available_memory() // 2

    def _chunking(self, per_sample_work: int, final_bytes: int, n_max: int) -> int:
        budget = self._budget()
        nu = self.correlation_order
        if final_bytes > budget:
            advice = (
                "pass `contraction=` (e.g. 64 components) to shrink intermediate orders, "
                if nu >= 3 and self.contraction is None
                else ""
            )
            raise ValueError(
                f"correlation_order={nu} output needs {_gib(final_bytes)} but `memory_budget` is "
                f"{_gib(budget)}: {advice}lower `max_lambda`, `angular_cutoff` or the expansion's "
                "max_radial/max_angular, compute fewer frames at a time, or raise `memory_budget`"
            )
        if self.chunk_size is not None:
            return self.chunk_size
        if per_sample_work == 0:
            return max(1, n_max)
        room = (budget - final_bytes) // 2
        if per_sample_work > room:
            raise ValueError(
                f"correlation_order={nu} needs {_gib(per_sample_work)} of intermediate features per centre, "
                f"more than the {_gib(room)} left in `memory_budget`={_gib(budget)}: pass `contraction=`, "
                "lower `angular_cutoff`, or raise `memory_budget`"
            )
        return int(max(1, min(n_max, min(room, CHUNK_BYTES) // per_sample_work)))

    # ------------------------------------------------------------------ public
    def fit(self, frames=None, *, density=None, density_2=None) -> DensityCorrelations:
        """Fit the contraction of every intermediate block on training frames.

        Parameters
        ----------
        frames : ase.Atoms or list of ase.Atoms, optional
            Training structures (their density is computed with ``expansion``).
        density : DenseExpansion, optional
            Precomputed density instead of ``frames``.
        density_2 : DenseExpansion, optional
            Second density (calculators built with ``expansion_2``).

        Returns
        -------
        self

        Notes
        -----
        Each block ``X`` (rows: centres x ``mu``, columns: properties) is reduced with the
        eigenvectors of ``X^T X`` (or of ``X X^T`` when there are fewer rows than columns), i.e.
        an uncentred PCA; eigenvector signs are fixed (largest entry positive) so fits are
        reproducible.  The cost grows like ``min(rows, properties)^3`` per block: fit on a
        representative subset of frames.
        """
        if self.contraction is None:
            raise ValueError("`fit` is only needed with `contraction=`; this calculator has none")
        d1, d2 = self._densities(frames, density, density_2)
        nu = self.correlation_order
        from tqdm.auto import tqdm

        self._fit_species = d1.species.copy()
        self.__dict__.pop("_pipeline_keys", None)
        self.components_ = {}
        self.explained_variance_ = {}
        cts = [int(c) for c in np.unique(d1.center_type)]
        for order in range(2, nu):
            bar = tqdm(total=len(cts), desc=f"ACDC fit order {order}", disable=self._no_progress())
            for ct in cts:
                rows = np.nonzero(d1.center_type == ct)[0]
                n = len(rows)
                x1 = np.ascontiguousarray(d1.values[rows])
                x2 = None if d2 is None else np.ascontiguousarray(d2.values[rows])
                pipe = self._pipeline(ct, d1, d2, order, with_labels=False)
                last_left, last_step = pipe.steps[-1]
                layout = _sample_major(last_step, last_l_from_contrib=False)
                plan = _build_plan(last_step, last_left, pipe.right_width, pipe.right_lmax, None).build()
                # per block: Gram matrix X^T X when rows >= columns, else the stacked rows
                stats = {
                    (b.lam, b.sigma): [n * (2 * b.lam + 1) >= b.width, None] for b in last_step.blocks
                }
                stat_bytes = sum(8 * min(n * (2 * b.lam + 1), b.width) * b.width for b in last_step.blocks)
                chunk = self._chunking(pipe.work_bytes(x1) + 8 * layout.size, stat_bytes, n)
                for i0 in range(0, n, chunk):
                    i1 = min(n, i0 + chunk)
                    buf = np.empty((i1 - i0) * layout.size)
                    self._forward(pipe, x1[i0:i1], None if x2 is None else x2[i0:i1], ct, plan, buf)
                    for seg in layout.segments:
                        x = np.ascontiguousarray(_block_view(buf, layout.size, seg)).reshape(-1, seg.width)
                        entry = stats[(seg.lam, seg.sigma)]
                        if entry[0]:
                            g = x.T @ x
                            entry[1] = g if entry[1] is None else entry[1] + g
                        else:
                            entry[1] = x if entry[1] is None else np.vstack([entry[1], x])
                for (lam, sigma), (is_gram, stat) in stats.items():
                    vecs, evals = _fit_projection(stat, is_gram, self._n_components(lam, sigma))
                    self.components_[(order, ct, lam, sigma)] = vecs
                    self.explained_variance_[(order, ct, lam, sigma)] = evals
                bar.update(1)
            bar.close()
        return self

    def compute(self, frames=None, *, density=None, density_2=None) -> BlockMap:
        """Density correlations of order ``correlation_order``.

        Parameters
        ----------
        frames : ase.Atoms or list of ase.Atoms, optional
            Structures (positions in Angstrom); the density is computed with ``expansion``.
        density : DenseExpansion, optional
            A precomputed density (``SphericalExpansion.compute_dense``) instead of ``frames``;
            it must come from the same hyperparameters.
        density_2 : DenseExpansion, optional
            Second density for cross-correlations (calculators built with ``expansion_2``).

        Returns
        -------
        ncsym.BlockMap
            Keys ``(o3_lambda, o3_sigma, center_type)``, samples ``(system, atom)``,
            properties described in the module docstring; ``info`` holds the hyperparameters.
            For ``correlation_order >= 2`` the block values are views of one buffer, lent again by
            :mod:`ncsym.buffers` once every block is dropped (copy a block to keep it alone).

        Raises
        ------
        ValueError
            Mismatched density, unfitted contraction, or a memory need above
            ``memory_budget`` (the message says what to change).
        """
        return self._compute(frames, density, density_2, metadata_only=False)

    def compute_metadata(self, frames=None, *, density=None, density_2=None) -> BlockMap:
        """Keys, samples and properties of :meth:`compute`, with zero-memory placeholder values."""
        return self._compute(frames, density, density_2, metadata_only=True)

    # ------------------------------------------------------------------ internals
    def _forward(self, pipe, x1, x2, ct, last_plan, out):
        """Run a pipeline on one chunk of centres; the last step writes ``out`` with ``last_plan``."""
        n = x1.shape[0]
        idx = np.arange(n, dtype=np.int64)
        right_flat = (x1 if x2 is None else x2).reshape(-1)
        left_flat = x1.reshape(-1)
        for i, layout in enumerate(pipe.mids):
            buf = np.empty(n * layout.size)
            run_plan(pipe.plans[i], left_flat, right_flat, idx, idx, buf, self.backend)
            if self.contraction is None:
                left_flat = buf
                continue
            order_out = pipe.steps[i][1].order + 1
            new_left = pipe.steps[i + 1][0]
            projected = np.empty(n * new_left.size)
            by_key = {(s.lam, s.sigma): s for s in new_left.segments}
            for seg in layout.segments:
                target = by_key.get((seg.lam, seg.sigma))
                if target is None:
                    continue
                comp = self.components_[(order_out, ct, seg.lam, seg.sigma)]
                dst = _block_view(projected, new_left.size, target)
                dst[...] = np.matmul(_block_view(buf, layout.size, seg), comp)
            del buf
            left_flat = projected
        if isinstance(last_plan, _BlockTarget):
            # CPU: each sample assembled in cache, then copied to its blocks (see run_plan_blocks)
            plan_one, starts, sizes = pipe.final_blocks()
            run_plan_blocks(
                plan_one, left_flat, right_flat, idx, idx, starts, sizes, last_plan.n_total * starts,
                last_plan.sample0, out,
            )
        else:
            run_plan(last_plan, left_flat, right_flat, idx, idx, out, self.backend)
        return out

    def _compute(self, frames, density, density_2, metadata_only):
        from tqdm.auto import tqdm

        d1, d2 = self._densities(frames, density, density_2)
        if self.contraction is not None and self.correlation_order > 2:
            if self.components_ is None:
                raise ValueError(
                    "this DensityCorrelations uses `contraction`: call `fit(frames)` on training frames "
                    "before `compute`"
                )
            d1 = d1.with_species(self._fit_species)
            if d2 is not None:
                d2 = d2.with_species(self._fit_species, "density_2")
        nu = self.correlation_order
        cts = [int(c) for c in np.unique(d1.center_type)]
        if nu == 1:
            return self._order_one(d1, cts, metadata_only)
        counts = {ct: int(np.sum(d1.center_type == ct)) for ct in cts}
        # dry run (widths only) for the memory check, before any allocation
        final_bytes, work = 0, 0
        pipes = {}
        for ct in cts:
            pipes[ct] = pipe = self._cached_pipeline(ct, d1, d2)
            final_bytes += 8 * counts[ct] * pipe.final_size()
            work = max(work, pipe.work_bytes(d1.values))
        chunk = self._chunking(work, 0 if metadata_only else final_bytes, max(counts.values(), default=1))
        keys, blocks = [], []
        n_chunks = sum(-(-counts[ct] // chunk) for ct in cts)
        bar = tqdm(total=n_chunks, desc=f"ACDC nu={nu}", disable=True if metadata_only else self._no_progress())
        # one output buffer for every centre type, reused between calls (see ncsym.buffers)
        all_out = None if metadata_only else buffers.empty(final_bytes // 8)
        out_start = 0
        for ct in cts:
            rows = np.nonzero(d1.center_type == ct)[0]
            n = len(rows)
            pipe = pipes[ct]
            last_step = pipe.steps[-1][1]
            if pipe.labels is None:
                labelled = self._pipeline(ct, d1, d2, nu, with_labels=True).steps[-1][1]
                pipe.labels = [Labels(labelled.names, np.vstack(b.labels)) for b in labelled.blocks]
            properties = pipe.labels
            samples = Labels(("system", "atom"), np.stack([d1.system[rows], d1.atom[rows]], axis=1))
            sizes = [(2 * b.lam + 1) * b.width for b in last_step.blocks]
            out = None
            if not metadata_only:
                out = all_out[out_start : out_start + n * sum(sizes)]
                out_start += n * sum(sizes)
                x1 = np.ascontiguousarray(d1.values[rows])
                x2 = None if d2 is None else np.ascontiguousarray(d2.values[rows])
                staged = self.backend == "cpu" and STAGED_LAST_STEP and 8 * pipe.final_size() <= STAGE_MAX_BYTES
                final_plan = None if staged else pipe.final_plan(n)
                target = out
                if self.backend == "cuda":
                    from numba import cuda

                    target = cuda.device_array(out.shape[0])
                for i0 in range(0, n, chunk):
                    i1 = min(n, i0 + chunk)
                    sub2 = None if x2 is None else x2[i0:i1]
                    last = _BlockTarget(i0, n) if final_plan is None else final_plan.shifted(i0)
                    self._forward(pipe, x1[i0:i1], sub2, ct, last, target)
                    bar.update(1)
                if target is not out:
                    target.copy_to_host(out)
            base = 0
            for blk, size, props in zip(last_step.blocks, sizes, properties, strict=True):
                shape = (n, 2 * blk.lam + 1, blk.width)
                if metadata_only:
                    values = np.broadcast_to(np.zeros((), dtype=np.float64), shape)
                else:
                    values = out[base : base + n * size].reshape(shape)
                base += n * size
                blocks.append(Block(values, samples, props))
                keys.append((blk.lam, blk.sigma, ct))
        bar.close()
        return self._assemble(keys, blocks, d1)

    def _order_one(self, d1: DenseDensity, cts, metadata_only):
        """``correlation_order=1``: the density itself, as blocks ``(l, +1)``."""
        keys, blocks = [], []
        names, lab = d1.right_labels(1)
        for ct in cts:
            rows = np.nonzero(d1.center_type == ct)[0]
            samples = Labels(("system", "atom"), np.stack([d1.system[rows], d1.atom[rows]], axis=1))
            keep = self._keep_fn(1, ct)
            for l in range(d1.max_angular + 1):
                if not keep(l, 1):
                    continue
                shape = (len(rows), 2 * l + 1, d1.values.shape[2])
                if metadata_only:
                    values = np.broadcast_to(np.zeros((), dtype=np.float64), shape)
                else:
                    values = np.ascontiguousarray(d1.values[rows, l * l : (l + 1) ** 2])
                blocks.append(Block(values, samples, Labels(names, lab)))
                keys.append((l, 1, ct))
        return self._assemble(keys, blocks, d1)

    def _assemble(self, keys, blocks, d1):
        order = sorted(range(len(keys)), key=lambda i: (keys[i][0], -keys[i][1], keys[i][2]))
        key_labels = Labels(
            ("o3_lambda", "o3_sigma", "center_type"),
            np.array([keys[i] for i in order], dtype=np.int32).reshape(-1, 3),
        )
        info = {
            "calculator": type(self).__name__,
            "correlation_order": self.correlation_order,
            "max_lambda": self.max_lambda,
            "species": [int(s) for s in d1.species],
        }
        if self.hypers is not None:
            info["hypers"] = {k: v for k, v in self.hypers.items() if _jsonable(v)}
        return BlockMap(key_labels, [blocks[i] for i in order], info)


def _density_key(d: DenseDensity) -> tuple:
    """What a pipeline takes from a density: its shape per centre and its property labels."""
    return (d.values.shape[1:], d.species.tobytes(), int(d.n_radial))


def _signature(pipe: _Pipeline) -> tuple:
    """Hashable description of a pipeline's layouts (equal signatures: equal property labels)."""
    return tuple(
        (left.names, tuple((s.lam, s.sigma, s.width) for s in left.segments))
        + tuple((b.lam, b.sigma, b.width, tuple(b.contribs)) for b in step.blocks)
        for left, step in pipe.steps
    )


def _block_view(buf: np.ndarray, sample_size: int, seg: _Segment) -> np.ndarray:
    """View ``(n, 2 lam + 1, width)`` of one segment of a sample-major buffer."""
    n = buf.shape[0] // sample_size if sample_size else 0
    two_d = buf.reshape(n, sample_size)
    span = (2 * seg.lam + 1) * seg.mstride
    view = two_d[:, seg.offset : seg.offset + span].reshape(n, 2 * seg.lam + 1, seg.mstride)
    return view[:, :, : seg.width]


def _differs(a, b) -> bool:
    try:
        if isinstance(a, numbers.Real) and isinstance(b, numbers.Real):
            return not np.isclose(float(a), float(b), rtol=1e-12, atol=0)
        return a != b
    except Exception:  # pragma: no cover - exotic hyperparameter types
        return True


def _jsonable(v) -> bool:
    return isinstance(v, (int, float, str, bool, type(None), list, tuple, dict))


class EquivariantPowerSpectrum(DensityCorrelations):
    """Lambda-SOAP: density correlations of order 2, comparable with featomic's.

    Parameters
    ----------
    expansion : SphericalExpansion or dict
        First density.
    expansion_2 : SphericalExpansion or dict, optional
        Second density for a cross-correlation (same centres and species; other
        hyperparameters may differ).  Default: auto-correlation of ``expansion``.
    max_lambda : int, optional
        Largest output order (default ``max_angular + max_angular_2``).
    selected_keys : optional
        Output keys to compute.
    skip_redundant : bool, optional
        Keep only ``l_1 <= l_2`` (featomic's ``EquivariantPowerSpectrum`` does); default True
        for an auto-correlation, False for a cross-correlation.
    backend : {"cpu", "cuda"}
    memory_budget, chunk_size, progress
        As :class:`DensityCorrelations`.

    Notes
    -----
    Output keys ``(o3_lambda, o3_sigma, center_type)`` and properties
    ``(l_1, l_2, neighbor_1_type, n_1, neighbor_2_type, n_2)`` match featomic's
    ``EquivariantPowerSpectrum(...).compute(..., neighbors_to_properties=True)``: same
    values and property labels (possibly in another order).
    """

    def __init__(
        self,
        expansion,
        expansion_2=None,
        *,
        max_lambda: int | None = None,
        selected_keys=None,
        skip_redundant: bool | None = None,
        backend: str = "cpu",
        memory_budget: int | None = None,
        chunk_size: int | None = None,
        progress: bool | None = None,
    ) -> None:
        if skip_redundant is None:
            skip_redundant = expansion_2 is None
        super().__init__(
            expansion=expansion,
            expansion_2=expansion_2,
            correlation_order=2,
            max_lambda=max_lambda,
            selected_keys=selected_keys,
            skip_redundant=skip_redundant,
            backend=backend,
            memory_budget=memory_budget,
            chunk_size=chunk_size,
            progress=progress,
        )

