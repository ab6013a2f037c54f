"""N-centre (pair, three-centre) symmetry-adapted features and their i <-> j symmetrisation.

Implements the two- and three-centre density correlations of Nigam, Willatt and Ceriotti
(2022) on top of the atom-centred expansion ``<a n l m|rho_i>`` and the pair expansion
``<n l m|g_ij>`` of :mod:`ncsym.density`:

``rho_ij^(nu)`` (:class:`PairCorrelations`)
    ``rho_ij^(0) = g_ij``; ``rho_ij^(nu) = rho_i^(nu) ⊗ g_ij`` for ``nu = 1, 2`` with every
    ``(l1, l2)`` (the two factors differ, so ``l1 > l2`` is not redundant), ``rho_i^(2)`` the
    lambda-SOAP (``l1 <= l2``, DESIGN.md point 3).  Pairs come from their own cutoff (``pair_cutoff``),
    periodic pairs carry cell shifts, and the self pair ``(i, i)`` is kept as on-site
    information.  Variants decorated with ``j``'s environment: ``rho_j^(1) ⊗ g_ij``
    (``variant="j"``) and ``rho_i^(1) ⊗ (rho_j^(1) ⊗ g_ij)`` (``variant="ij"``).
``rho_i^[nu <- nu']`` (:class:`MessagePassingFeatures`)
    ``sum_{j in a} rho_i^(nu) ⊗ g_ij ⊗ rho_j^(nu')``, one channel per neighbour species ``a``.
``rho_i^(nu) ⊗ g_ij ⊗ g_ik`` (:class:`ThreeCentreFeatures`)
    Triples within the pair cutoff of ``i``, coupled in sequence, optionally symmetrised over the
    exchange ``j <-> k`` of like atoms.
Hamiltonian feature sets (:class:`PairFeatures`, :func:`hamiltonian_features`)
    One :class:`ncsym.BlockMap` with on-site blocks ``rho_i^(nu) ⊕ sum_{j in a} rho_ij`` and
    symmetrised pair blocks (:func:`symmetrise_pairs`), with optional PCA contraction.

Conventions
    Real spherical harmonics and CG coefficients of :mod:`ncsym.conventions` /
    :mod:`ncsym.cg`; a product of blocks ``(l1, sigma1)`` and ``(l2, sigma2)`` coupled to
    ``lambda`` has ``sigma = sigma1 sigma2 (-1)^(l1 + l2 + lambda)``, and every block
    ``(lambda, sigma)`` transforms as ``X(R A) = det(R)^((1 - sigma) / 2) D_lambda(R) X(A)`` on
    its middle (``o3_mu``) axis.  Lengths in Angstrom.  In a product the properties of the
    first factor run slowest.  Pair vectors point from ``i`` to ``j``:
    ``r_ij = x_j - x_i + cell_shift @ cell``.
Symmetrisation (DESIGN.md point 5)
    Same species: ``i < j`` stored once as ``(rho_ij ± rho_ji) / sqrt(2)`` (``block_type``
    ``+1 / -1``, ``sigma`` unchanged); different species: the atom with the lower atomic number
    first, ``rho_ij`` and ``rho_ji`` concatenated on properties (``block_type = 2``); on-site
    ``block_type = 0``.
Memory
    Every calculator takes ``memory_budget`` (bytes of feature values held at once, outputs
    included).  Intermediates are computed in chunks of samples that fit the budget; when the
    requested output alone does not fit, a ``ValueError`` says how much is needed and how to
    reduce it (contraction, smaller bases, fewer frames per call).

References
----------
J. Nigam, M. J. Willatt, M. Ceriotti, "Equivariant representations for molecular Hamiltonians
and N-center atomic-scale properties", J. Chem. Phys. 156, 014115 (2022), arXiv:2109.12083.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import cached_property

import numpy as np

from . import buffers
from ._checks import (
    check_angular,
    check_frames,
    check_int,
    check_positive_float,
    check_species,
)
from .blocks import Block, BlockMap, Labels

__all__ = [
    "DEFAULT_MEMORY_BUDGET",
    "PairCorrelations",
    "MessagePassingFeatures",
    "ThreeCentreFeatures",
    "PairFeatures",
    "hamiltonian_features",
    "symmetrise_pairs",
]

#: Default ``memory_budget``: bytes of feature values a calculator may hold at once (4 GiB).
DEFAULT_MEMORY_BUDGET = 4 * 1024**3

#: ``1 / sqrt(2)`` of the ``(rho_ij ± rho_ji) / sqrt(2)`` combinations.
_INV_SQRT2 = 1.0 / math.sqrt(2.0)

#: Output rows handled by one task of the parallel kernel loop.
_KERNEL_CHUNK = 8

#: PCA: largest eigenproblem solved per block (see :class:`_PCA`); one row = one sample and
#: one ``mu`` component.
_PCA_MAX_ROWS = 2048

#: PCA: eigenvalues below this fraction of the largest are treated as zero (rank deficiency).
_EIGENVALUE_FLOOR = 1e-12

#: Fraction of ``memory_budget`` left to intermediates when the output is kept in memory.
_INTERMEDIATE_SHARE = 0.25

#: Smallest number of samples per chunk, whatever the budget.
_MIN_CHUNK = 16

_BYTES = 8  # float64

Key = tuple[int, int]  # (lambda, sigma)


# ============================================================================ validation


def _check_hypers(
    cutoff,
    pair_cutoff,
    cutoff_width,
    density_width,
    center_atom_weight,
    max_radial,
    max_angular,
) -> dict:
    cutoff = check_positive_float(cutoff, "cutoff")
    pair_cutoff = cutoff if pair_cutoff is None else check_positive_float(pair_cutoff, "pair_cutoff")
    cutoff_width = check_positive_float(cutoff_width, "cutoff_width", allow_zero=True)
    if cutoff_width >= min(cutoff, pair_cutoff):
        raise ValueError(
            f"`cutoff_width` must be smaller than `cutoff` and `pair_cutoff`, got cutoff_width="
            f"{cutoff_width} for cutoff={cutoff} and pair_cutoff={pair_cutoff} (Angstrom)"
        )
    density_width = check_positive_float(density_width, "density_width")
    if isinstance(center_atom_weight, bool) or not isinstance(center_atom_weight, numbers.Real):
        raise TypeError(
            f"`center_atom_weight` must be a real number, got {center_atom_weight!r} "
            f"({type(center_atom_weight).__name__})"
        )
    if not math.isfinite(center_atom_weight):
        raise ValueError(f"`center_atom_weight` must be finite, got {center_atom_weight}")
    return dict(
        cutoff=cutoff,
        pair_cutoff=pair_cutoff,
        cutoff_width=cutoff_width,
        density_width=density_width,
        center_atom_weight=float(center_atom_weight),
        max_radial=check_int(max_radial, "max_radial", minimum=0),
        max_angular=check_angular(max_angular, "max_angular"),
    )


def _check_max_lambda(max_lambda, default: int, largest: int, name: str = "max_lambda") -> int:
    if max_lambda is None:
        return min(default, largest)
    return check_int(max_lambda, name, minimum=0, maximum=largest)


def _check_memory_budget(value) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"`memory_budget` must be a number of bytes, got {value!r} ({type(value).__name__})")
    if not math.isfinite(value) or value <= 0:
        raise ValueError(f"`memory_budget` must be a positive number of bytes, got {value}")
    return int(value)


def _check_contraction(value, name: str):
    """``None``, a number of components (int >= 1) or a fraction of variance in (0, 1]."""
    if value is None:
        return None
    if isinstance(value, bool):
        raise TypeError(f"`{name}` must be None, an int >= 1 or a float in (0, 1], got {value!r}")
    if isinstance(value, numbers.Integral):
        return check_int(value, name, minimum=1)
    if isinstance(value, numbers.Real):
        value = float(value)
        if not (0.0 < value <= 1.0):
            raise ValueError(
                f"`{name}` as a float is the fraction of variance kept and must be in (0, 1], got {value}"
            )
        return value
    raise TypeError(
        f"`{name}` must be None, an int >= 1 or a float in (0, 1], got {value!r} ({type(value).__name__})"
    )


def _resolve_species(species, frames) -> np.ndarray:
    present = np.unique(np.concatenate([np.asarray(f.numbers, dtype=np.int64) for f in frames]))
    if species is None:
        return present
    missing = np.setdiff1d(present, species)
    if missing.size:
        raise ValueError(
            f"frames contain species {missing.tolist()} that are not in `species` {species.tolist()}: "
            "add them to `species`"
        )
    return species


def _format_bytes(n: float) -> str:
    return f"{n / 1024**3:.2f} GiB" if n >= 1024**3 / 10 else f"{n / 1024**2:.1f} MiB"


def _too_big(what: str, needed: float, budget: int, advice: str) -> ValueError:
    return ValueError(
        f"{what} need {_format_bytes(needed)}, more than `memory_budget` = {_format_bytes(budget)}: "
        f"{advice}, or raise `memory_budget`"
    )


# ============================================================================ factors


class _Equi:
    """Dense equivariant blocks over the same rows: ``values[(lam, sigma)]`` has shape
    ``(n_rows, 2 lam + 1, P)`` and ``props[(lam, sigma)]`` its ``P`` property labels."""

    __slots__ = ("n_rows", "values", "props")

    def __init__(self, n_rows: int, values: dict, props: dict) -> None:
        self.n_rows = int(n_rows)
        self.values = values
        self.props = props

    @property
    def keys(self) -> list[Key]:
        return sorted(self.props, key=lambda k: (k[0], -k[1]))

    @property
    def meta(self) -> dict[Key, Labels]:
        return dict(self.props)

    def renamed(self, names: Sequence[str]) -> _Equi:
        """Same values with property columns renamed to ``names``."""
        props = {k: Labels(tuple(names), p.values) for k, p in self.props.items()}
        return _Equi(self.n_rows, self.values, props)

    def take(self, rows: np.ndarray) -> _Equi:
        return _Equi(len(rows), {k: v[rows] for k, v in self.values.items()}, self.props)

    def flat(self) -> np.ndarray:
        """``(n_rows, width)`` with the blocks side by side in :attr:`keys` order."""
        parts = [self.values[k].reshape(self.n_rows, -1) for k in self.keys]
        if not parts:
            return np.zeros((self.n_rows, 0))
        return np.ascontiguousarray(np.concatenate(parts, axis=1))


def _layout(meta: dict[Key, Labels]) -> dict[Key, tuple[int, int, int]]:
    """Column offset, ``2 l + 1`` and ``P`` of each block in :meth:`_Equi.flat` order."""
    out = {}
    offset = 0
    for key in sorted(meta, key=lambda k: (k[0], -k[1])):
        size = 2 * key[0] + 1
        width = len(meta[key])
        out[key] = (offset, size, width)
        offset += size * width
    return out


def _meta_names(meta: dict[Key, Labels]) -> tuple[str, ...]:
    names = {p.names for p in meta.values()}
    if len(names) > 1:  # pragma: no cover - internal invariant
        raise RuntimeError(f"inconsistent property names {names}")
    return names.pop() if names else ()


def _bytes_per_row(meta: dict[Key, Labels]) -> int:
    return _BYTES * sum((2 * k[0] + 1) * len(p) for k, p in meta.items())


class _Plan:
    """All CG products ``a ⊗ b -> (lam, sigma)`` with ``lam <= max_lambda``, from metadata.

    Output properties of the term ``(ka, kb)`` are ``prefix(ka, kb) + a_props + b_props`` with
    ``a`` properties running slowest.  ``l_filter(l1, l2)`` drops terms (e.g. ``l1 <= l2``).
    """

    def __init__(
        self,
        meta_a: dict[Key, Labels],
        meta_b: dict[Key, Labels],
        *,
        max_lambda: int,
        prefix_names: Sequence[str],
        prefix: Callable[[Key, Key], tuple[int, ...]],
        l_filter: Callable[[int, int], bool] | None = None,
    ) -> None:
        from .cg import cg_tables

        self.layout_a = _layout(meta_a)
        self.layout_b = _layout(meta_b)
        names = tuple(prefix_names) + _meta_names(meta_a) + _meta_names(meta_b)
        lmax_in = max([k[0] for k in meta_a] + [k[0] for k in meta_b] + [0])
        self.tables = cg_tables(lmax_in, min(2 * lmax_in, max(max_lambda, 0)))
        widths: dict[Key, int] = {}
        parts: dict[Key, list[np.ndarray]] = {}
        pairs = []
        terms = []
        b_orders = []
        for ka, (a_off, a_size, pa) in self.layout_a.items():
            for kb, (b_off, b_size, pb) in self.layout_b.items():
                l1, s1 = ka
                l2, s2 = kb
                if pa == 0 or pb == 0 or (l_filter is not None and not l_filter(l1, l2)):
                    continue
                start = len(terms)
                pre = np.asarray(prefix(ka, kb), dtype=np.int64)
                props_ab = None
                for lam in range(abs(l1 - l2), min(l1 + l2, max_lambda) + 1):
                    sigma = s1 * s2 * (-1 if (l1 + l2 + lam) % 2 else 1)
                    key = (lam, sigma)
                    offset = widths.get(key, 0)
                    widths[key] = offset + pa * pb
                    terms.append([int(self.tables.index[l1, l2, lam]), key, offset])
                    if props_ab is None:
                        va, vb = meta_a[ka].values, meta_b[kb].values
                        props_ab = np.hstack(
                            [
                                np.broadcast_to(pre, (pa * pb, pre.size)),
                                np.repeat(va, pb, axis=0),
                                np.tile(vb, (pa, 1)),
                            ]
                        )
                    parts.setdefault(key, []).append(props_ab)
                if len(terms) > start:
                    pairs.append([a_off, a_size, pa, b_off, b_size, pb, start, len(terms)])
                    b_orders.append(l2)
        self.keys = sorted(widths, key=lambda k: (k[0], -k[1]))
        index = {k: i for i, k in enumerate(self.keys)}
        self.terms = np.array(
            [[t[0], index[t[1]], t[2], widths[t[1]]] for t in terms], dtype=np.int64
        ).reshape(-1, 4)
        self.pairs = np.array(pairs, dtype=np.int64).reshape(-1, 8)
        # terms grouped by output block, and the block pair of every term (row-staged kernel)
        self.term_pair = np.zeros(len(self.terms), dtype=np.int64)
        for t, (start, stop) in enumerate(self.pairs[:, 6:8]):
            self.term_pair[start:stop] = t
        self.block_terms = np.argsort(self.terms[:, 1], kind="stable").astype(np.int64)
        self.block_ptr = np.searchsorted(
            self.terms[self.block_terms, 1], np.arange(len(self.keys) + 1)
        ).astype(np.int64)
        # the same table for a separable second factor: column 3 holds l2 instead of an offset
        self.pairs_separable = self.pairs.copy()
        self.pairs_separable[:, 3] = np.array(b_orders, dtype=np.int64)
        self.b_is_density = all(k[1] == 1 for k in meta_b) and len({len(p) for p in meta_b.values()}) <= 1
        self.props = {k: Labels(names, np.vstack(parts[k])) for k in self.keys}

    @property
    def meta(self) -> dict[Key, Labels]:
        return dict(self.props)

    def allocate(self, n_rows: int, zero: bool = True, pooled: bool = False) -> dict[Key, np.ndarray]:
        """Output blocks for ``n_rows`` rows, zeroed unless ``zero=False``.

        ``pooled=False``: one fresh array per block.  ``pooled=True`` (outputs returned to the
        caller): views of one buffer that is reused between calls (:mod:`ncsym.buffers`);
        ``zero=False`` only for runs that :meth:`separable_with` says assign every entry.
        """
        shapes = {k: (n_rows, 2 * k[0] + 1, len(self.props[k])) for k in self.keys}
        if not pooled:
            return {k: np.zeros(shape) for k, shape in shapes.items()}
        sizes = [math.prod(shapes[k]) for k in self.keys]
        flat = buffers.empty(sum(sizes))
        if zero:
            flat.fill(0.0)
        outs, start = {}, 0
        for k, size in zip(self.keys, sizes, strict=True):
            outs[k] = flat[start : start + size].reshape(shapes[k])
            start += size
        return outs

    def separable_with(self, b, seg=None) -> bool:
        """Whether :meth:`run` with this second factor takes the separable kernel, which
        *assigns* every entry of this plan's blocks (no zeroed output needed)."""
        return isinstance(b, _SeparablePairs) and seg is None and self.b_is_density

    def run(
        self,
        a: _Equi | np.ndarray,
        b: _Equi | np.ndarray,
        idx_a: np.ndarray,
        idx_b: np.ndarray,
        outs: dict[Key, np.ndarray],
        seg: np.ndarray | None = None,
        column_offset: int | dict = 0,
    ) -> dict[Key, np.ndarray]:
        """Accumulate the products of rows ``(idx_a[s], idx_b[s])`` into ``outs``.

        ``a`` and ``b`` are factors (or their :meth:`_Equi.flat` arrays); ``seg`` sums samples
        ``seg[r]:seg[r+1]`` into output row ``r`` (default: one sample per row).  ``outs`` may
        be wider than the plan's blocks: the products then fill the properties
        ``column_offset : column_offset + width`` of each block (``column_offset`` may be a
        dict per key).
        """
        from .kernels.pairs_cpu import (
            cg_product_segments,
            cg_product_separable,
            cg_product_separable_rows,
            output_addresses,
        )
        from .kernels.simd import STREAM_MIN_BYTES

        a_flat = a.flat() if isinstance(a, _Equi) else a
        separable = self.separable_with(b, seg)
        if isinstance(b, _SeparablePairs) and not separable:
            b = b.flat
        b_flat = b.flat() if isinstance(b, _Equi) else b
        idx_a = np.ascontiguousarray(idx_a, dtype=np.int64)
        idx_b = np.ascontiguousarray(idx_b, dtype=np.int64)
        if seg is None:
            seg = np.arange(idx_a.shape[0] + 1, dtype=np.int64)
        seg = np.ascontiguousarray(seg, dtype=np.int64)
        if not self.keys or seg.shape[0] <= 1 or idx_a.shape[0] == 0 or self.terms.shape[0] == 0:
            return outs
        blocks = []
        widths = np.zeros(len(self.keys), dtype=np.int64)
        offsets = np.zeros(len(self.keys), dtype=np.int64)
        for i, k in enumerate(self.keys):
            out = outs[k]
            offsets[i] = column_offset.get(k, 0) if isinstance(column_offset, dict) else column_offset
            if not out.flags.c_contiguous or out.shape[2] < offsets[i] + len(self.props[k]):
                raise RuntimeError("output blocks must be C-contiguous and wide enough")  # pragma: no cover
            widths[i] = out.shape[2]
            blocks.append(out)
        # `blocks` (the caller's arrays) stay alive through the kernel calls below
        out_address, out_row = output_addresses(blocks)
        n_out = idx_a.shape[0] if separable else seg.shape[0] - 1
        if blocks[0].shape[0] < n_out:
            raise RuntimeError("output blocks have fewer rows than the product")  # pragma: no cover
        terms = self.terms
        if np.any(offsets) or np.any(widths[terms[:, 1]] != terms[:, 3]):
            terms = terms.copy()
            terms[:, 2] += offsets[terms[:, 1]]
            terms[:, 3] = widths[terms[:, 1]]
        t = self.tables
        cg = (t.offsets, t.m1, t.m2, t.mu, t.coef, out_address, out_row, _KERNEL_CHUNK)
        if not separable:
            cg_product_segments(a_flat, idx_a, b_flat, idx_b, seg, self.pairs, terms, *cg)
            return outs
        # the separable kernels read these by address
        if not all(x.dtype == np.int32 and x.flags.c_contiguous for x in (t.m1, t.m2, t.mu)):
            raise RuntimeError("CG tables must hold C-contiguous int32 indices")  # pragma: no cover
        factors = (
            np.ascontiguousarray(a_flat, dtype=np.float64),
            idx_a,
            np.ascontiguousarray(b.y),
            np.ascontiguousarray(b.radial),
            idx_b,
            self.pairs_separable,
            terms,
        )
        if terms is self.terms:
            # the plan's terms fill every row of every block: stage rows, stream large outputs
            streamed = sum(blk.nbytes for blk in blocks) >= STREAM_MIN_BYTES
            grouping = (self.term_pair, self.block_ptr, self.block_terms)
            cg_product_separable_rows(*factors, *grouping, *cg, streamed)
        else:
            cg_product_separable(*factors, *cg)
        return outs

    def __call__(self, a, b, idx_a, idx_b, seg=None, n_rows=None) -> _Equi:
        if n_rows is None:
            n_rows = len(idx_a) if seg is None else len(seg) - 1
        outs = self.allocate(n_rows)
        self.run(a, b, idx_a, idx_b, outs, seg)
        return _Equi(n_rows, outs, self.meta)


def _prefix_l(ka: Key, kb: Key) -> tuple[int, int]:
    return (ka[0], kb[0])


def _prefix_ls(ka: Key, kb: Key) -> tuple[int, int, int]:
    return (ka[0], ka[1], kb[0])


def _prefix_lls(ka: Key, kb: Key) -> tuple[int, int, int]:
    return (ka[0], kb[0], kb[1])


# ============================================================================ expansions


def _density_calculators(hypers: dict, species: np.ndarray):
    """Atom-centred and pair expansion calculators of :mod:`ncsym.density` (built once)."""
    from .density import PairExpansion, SphericalExpansion

    common = dict(
        cutoff_width=hypers["cutoff_width"],
        density_width=hypers["density_width"],
        center_atom_weight=hypers["center_atom_weight"],
        max_radial=hypers["max_radial"],
        max_angular=hypers["max_angular"],
    )
    if "spline_accuracy" in hypers:
        common["spline_accuracy"] = hypers["spline_accuracy"]
    atoms = SphericalExpansion(cutoff=hypers["cutoff"], species=[int(z) for z in species], **common)
    pairs = PairExpansion(cutoff=hypers["pair_cutoff"], **common)
    return atoms, pairs


def _rho1(dense, species: np.ndarray, names=("neighbor_1_type", "n_1")) -> _Equi:
    """``rho_i^(1)``: blocks ``(l, +1)``, properties ``(neighbor type, n)``."""
    values = np.asarray(dense.values)
    n, n_lm, n_species, n_radial = values.shape
    lmax = int(round(math.sqrt(n_lm))) - 1
    props = Labels(
        tuple(names),
        np.array([[z, r] for z in species for r in range(n_radial)], dtype=np.int64).reshape(-1, 2),
    )
    out, meta = {}, {}
    for l in range(lmax + 1):
        block = values[:, l * l : (l + 1) * (l + 1)].reshape(n, 2 * l + 1, n_species * n_radial)
        out[(l, 1)] = np.ascontiguousarray(block)
        meta[(l, 1)] = props
    return _Equi(n, out, meta)


def _g_meta(lmax: int, n_radial: int, name: str = "n_2") -> dict[Key, Labels]:
    """Metadata of :func:`_g` without the values."""
    props = Labels((name,), np.arange(n_radial, dtype=np.int64).reshape(-1, 1))
    return {(l, 1): props for l in range(lmax + 1)}


def _g(values: np.ndarray, name: str = "n_2") -> _Equi:
    """Pair expansion ``g_ij`` as blocks ``(l, +1)`` with properties ``(n,)``."""
    n, n_lm, n_radial = values.shape
    lmax = int(round(math.sqrt(n_lm))) - 1
    props = Labels((name,), np.arange(n_radial, dtype=np.int64).reshape(-1, 1))
    out = {(l, 1): np.ascontiguousarray(values[:, l * l : (l + 1) * (l + 1)]) for l in range(lmax + 1)}
    return _Equi(n, out, {k: props for k in out})


class _SeparablePairs:
    """Pair expansion in separable form ``<n l m|g_ij> = y[lm] radial[l, n]`` (internal).

    One neighbour's Gaussian density has the coefficients ``w I_nl(r_ij) Y_l^m(r_ij / r_ij)``
    (``w`` the cutoff weight), which lets
    :func:`ncsym.kernels.pairs_cpu.cg_product_separable` contract the CG table with the
    angular factor first.  :attr:`flat` gives the plain ``(n_pairs, width)`` layout for the
    other products, computed when first needed.
    """

    def __init__(self, y: np.ndarray, radial: np.ndarray, values: Callable[[], np.ndarray] | None = None) -> None:
        self.y = y  # (n_pairs, (lmax + 1)**2), weight included
        self.radial = radial  # (n_pairs, lmax + 1, n_radial)
        self._values = values  # the (n_pairs, n_lm, n_radial) values when someone holds them

    @cached_property
    def flat(self) -> np.ndarray:
        """``(n_pairs, width)``: ``_g(values).flat()``, the blocks ``l = 0 .. lmax`` side by side."""
        values = self._values() if self._values is not None else _pair_values(self.y, self.radial)
        return values.reshape(self.y.shape[0], -1)


def _pair_values(y: np.ndarray, radial: np.ndarray) -> np.ndarray:
    """``values[p, lm, n] = y[p, lm] radial[p, l, n]``: the same products as the expansion kernel."""
    lmax = radial.shape[1] - 1
    l_of_lm = np.repeat(np.arange(lmax + 1), 2 * np.arange(lmax + 1) + 1)
    return y[:, :, None] * radial[:, l_of_lm, :]


@dataclass
class _Pairs:
    """Sorted pair list with the expansion rows of both atoms (internal)."""

    system: np.ndarray
    first: np.ndarray
    second: np.ndarray
    shift: np.ndarray  # (n, 3)
    first_type: np.ndarray
    second_type: np.ndarray
    y: np.ndarray  # (n, n_lm): separable factors of g_ij, see _SeparablePairs
    radial: np.ndarray  # (n, lmax + 1, n_radial)
    vectors: np.ndarray  # (n, 3), r_ij in Angstrom
    ci: np.ndarray  # row of (system, first) in the atom expansion
    cj: np.ndarray  # row of (system, second)

    def __len__(self) -> int:
        return self.system.shape[0]

    @cached_property
    def values(self) -> np.ndarray:
        """``g_ij`` of every pair, ``(n, n_lm, n_radial)``."""
        return _pair_values(self.y, self.radial)

    @cached_property
    def separable(self) -> _SeparablePairs:
        # its flat layout is a view of :attr:`values` (formed once)
        return _SeparablePairs(self.y, self.radial, lambda: self.values)

    @property
    def is_self(self) -> np.ndarray:
        return (self.first == self.second) & np.all(self.shift == 0, axis=1)

    def samples(self, rows: np.ndarray) -> np.ndarray:
        return np.column_stack(
            [self.system[rows], self.first[rows], self.second[rows], self.shift[rows]]
        ).astype(np.int64)


def _center_rows(dense, system: np.ndarray, atom: np.ndarray) -> np.ndarray:
    d_system = np.asarray(dense.system, dtype=np.int64)
    d_atom = np.asarray(dense.atom, dtype=np.int64)
    stride = int(max(d_atom.max(initial=0), np.max(atom, initial=0))) + 1
    keys = d_system * stride + d_atom
    order = np.argsort(keys, kind="stable")
    query = np.asarray(system, dtype=np.int64) * stride + np.asarray(atom, dtype=np.int64)
    pos = np.searchsorted(keys[order], query)
    pos = np.minimum(pos, max(len(keys) - 1, 0))
    if len(keys) == 0 or np.any(keys[order][pos] != query):  # pragma: no cover - internal invariant
        raise RuntimeError("pair atoms missing from the atom-centred expansion")
    return order[pos]


def _pair_list(pair, dense) -> _Pairs:
    system = np.asarray(pair.system, dtype=np.int64)
    first = np.asarray(pair.first_atom, dtype=np.int64)
    second = np.asarray(pair.second_atom, dtype=np.int64)
    shift = np.asarray(pair.cell_shift, dtype=np.int64).reshape(-1, 3)
    order = np.lexsort((shift[:, 2], shift[:, 1], shift[:, 0], second, first, system))
    if np.array_equal(order, np.arange(order.size)):
        order = slice(None)  # already sorted (the pair expansion's order): no copies
    system, first, second, shift = system[order], first[order], second[order], shift[order]
    return _Pairs(
        system=system,
        first=first,
        second=second,
        shift=shift,
        first_type=np.asarray(pair.first_type, dtype=np.int64)[order],
        second_type=np.asarray(pair.second_type, dtype=np.int64)[order],
        y=np.ascontiguousarray(np.asarray(pair.angular)[order]),
        radial=np.ascontiguousarray(np.asarray(pair.radial)[order]),
        vectors=np.ascontiguousarray(np.asarray(pair.vectors, dtype=np.float64).reshape(-1, 3)[order]),
        ci=_center_rows(dense, system, first),
        cj=_center_rows(dense, system, second),
    )


def _pair_density(pairs: _Pairs, n_centers: int, species: np.ndarray, rows=None) -> np.ndarray:
    """``sum_{j in a} g_ij`` per centre and species: shape ``(n_centers, n_lm, n_species, n)``."""
    rows = np.arange(len(pairs)) if rows is None else rows
    n_lm, n_radial = pairs.values.shape[1:]
    out = np.zeros((n_centers, n_lm, len(species), n_radial))
    species_index = np.searchsorted(species, pairs.second_type[rows])
    for a in range(len(species)):
        sel = rows[species_index == a]
        if sel.size:
            np.add.at(out[:, :, a, :], pairs.ci[sel], pairs.values[sel])
    return out


# ============================================================================ PCA


class _PCA:
    """Uncentred PCA of the property axis of equivariant blocks, fitted streaming.

    The covariance ``C = sum_{s, mu} X[s, mu]^T X[s, mu]`` is rotation invariant, so projecting
    ``X @ W`` keeps every block equivariant (no centring: it would break ``lambda > 0``).
    Rows (one sample and one ``mu``) are kept as they come while there are fewer than
    ``min(width, _PCA_MAX_ROWS)`` of them (the components then come from their Gram matrix);
    beyond that, narrow blocks (``width <= _PCA_MAX_ROWS``) switch to the exact covariance and
    wide ones keep a uniform random subset of ``_PCA_MAX_ROWS`` rows.  No eigenproblem is
    larger than ``_PCA_MAX_ROWS``.
    """

    def __init__(self, target, seed: int = 0) -> None:
        self.target = target
        self._cov: dict = {}
        self._rows: dict = {}
        self._prio: dict = {}
        self._rng = np.random.default_rng(seed)
        self.projections: dict = {}

    def update(self, key, values: np.ndarray) -> None:
        width = values.shape[2]
        rows = values.reshape(values.shape[0] * values.shape[1], width)
        if key in self._cov:
            self._cov[key] += rows.T @ rows
            return
        prio = self._rng.random(rows.shape[0])
        if key in self._rows:
            rows = np.vstack([self._rows[key], rows])
            prio = np.concatenate([self._prio[key], prio])
        if rows.shape[0] > min(width, _PCA_MAX_ROWS):
            if width <= _PCA_MAX_ROWS:
                self._cov[key] = rows.T @ rows
                self._rows.pop(key, None)
                self._prio.pop(key, None)
                return
            if rows.shape[0] > _PCA_MAX_ROWS:
                keep = np.argpartition(prio, _PCA_MAX_ROWS)[:_PCA_MAX_ROWS]
                rows, prio = rows[keep], prio[keep]
        self._rows[key], self._prio[key] = rows, prio

    def declare(self, key, width: int) -> None:
        """Make sure ``key`` gets a projection even without samples (zero components)."""
        if key not in self._cov and key not in self._rows:
            self._rows[key] = np.zeros((0, width))

    def finish(self) -> dict:
        for key, cov in self._cov.items():
            evals, evecs = np.linalg.eigh(cov)
            self.projections[key] = self._select(evals[::-1], evecs[:, ::-1])
        for key, rows in self._rows.items():
            evals, evecs = np.linalg.eigh(rows @ rows.T)
            evals, evecs = evals[::-1], evecs[:, ::-1]
            good = (
                evals > _EIGENVALUE_FLOOR * evals[0]
                if evals.size and evals[0] > 0
                else np.zeros(len(evals), bool)
            )
            vecs = rows.T @ (evecs[:, good] / np.sqrt(evals[good]))
            self.projections[key] = self._select(evals[good], vecs)
        self._cov, self._rows, self._prio = {}, {}, {}
        return self.projections

    def _select(self, evals: np.ndarray, vecs: np.ndarray) -> np.ndarray:
        if evals.size == 0 or evals[0] <= 0:
            return np.zeros((vecs.shape[0], 0))
        rank = int(np.sum(evals > _EIGENVALUE_FLOOR * evals[0]))
        if isinstance(self.target, float):
            fraction = np.cumsum(evals[:rank]) / np.sum(evals[:rank])
            n = int(np.searchsorted(fraction, self.target - 1e-12) + 1)
        else:
            n = int(self.target)
        n = min(n, rank)
        vecs = vecs[:, :n].copy()
        # deterministic signs: the largest entry of every component is positive
        idx = np.argmax(np.abs(vecs), axis=0)
        signs = np.sign(vecs[idx, np.arange(n)])
        signs[signs == 0] = 1.0
        return np.ascontiguousarray(vecs * signs)


def _project(values: np.ndarray, w: np.ndarray) -> np.ndarray:
    n, size, width = values.shape
    return (values.reshape(n * size, width) @ w).reshape(n, size, w.shape[1])


# ============================================================================ lambda-SOAP


def _lambda_soap(rho1: _Equi, max_lambda: int) -> _Equi:
    """``rho_i^(2) = rho_i^(1) ⊗ rho_i^(1)`` with ``l1 <= l2`` (DESIGN.md point 3).

    Parameters
    ----------
    rho1 : factor
        Blocks ``(l, +1)`` of shape ``(n_centers, 2 l + 1, n_species * n_radial)`` as built
        from :meth:`ncsym.SphericalExpansion.compute_dense` (internal factor type).
    max_lambda : int
        Largest output order.

    Returns
    -------
    factor
        Blocks ``(lambda, sigma)``, properties ``(l_1, l_2, neighbor_1_type, n_1,
        neighbor_2_type, n_2)``.
    """
    a = rho1.renamed(("neighbor_1_type", "n_1"))
    b = rho1.renamed(("neighbor_2_type", "n_2"))
    plan = _Plan(
        a.meta,
        b.meta,
        max_lambda=max_lambda,
        prefix_names=("l_1", "l_2"),
        prefix=_prefix_l,
        l_filter=lambda l1, l2: l1 <= l2,
    )
    idx = np.arange(rho1.n_rows)
    return plan(a, b, idx, idx)


# ============================================================================ helpers


def _chunks(n: int, bytes_per_row: float, budget: float):
    """Slices of ``range(n)`` whose intermediates fit ``budget`` bytes (at least _MIN_CHUNK rows)."""
    size = n if bytes_per_row <= 0 else max(_MIN_CHUNK, int(budget // max(bytes_per_row, 1)))
    for start in range(0, n, max(size, 1)):
        yield slice(start, min(start + size, n))


def _all_keys(max_lambda: int) -> list[Key]:
    return [(lam, sigma) for lam in range(max_lambda + 1) for sigma in (1, -1)]


def _restrict(e: _Equi, max_lambda: int) -> _Equi:
    keep = [k for k in e.props if k[0] <= max_lambda]
    return _Equi(e.n_rows, {k: e.values[k] for k in keep}, {k: e.props[k] for k in keep})


def _sorted_groups(rows: np.ndarray, types: np.ndarray, combos) -> tuple[np.ndarray, list]:
    """``rows`` reordered group by group (``combos`` order, stable inside), and the
    ``(start, stop)`` of every group in the reordered array."""
    code = np.full(len(rows), len(combos), dtype=np.int64)
    for c, combo in enumerate(combos):
        code[np.all(types == np.asarray(combo, dtype=np.int64), axis=1)] = c
    order = np.argsort(code, kind="stable")
    edges = np.searchsorted(code[order], np.arange(len(combos) + 1))
    return rows[order], [(int(edges[c]), int(edges[c + 1])) for c in range(len(combos))]


_PAIR_SAMPLE_NAMES = ("system", "first_atom", "second_atom", "cell_shift_a", "cell_shift_b", "cell_shift_c")
_PAIR_KEY_NAMES = ("o3_lambda", "o3_sigma", "first_atom_type", "second_atom_type")


class _Base:
    """Shared hyperparameter handling."""

    def __init__(
        self,
        *,
        cutoff,
        pair_cutoff,
        cutoff_width,
        density_width,
        center_atom_weight,
        spline_accuracy,
        max_radial,
        max_angular,
        species,
        memory_budget,
    ) -> None:
        self.hypers = _check_hypers(
            cutoff, pair_cutoff, cutoff_width, density_width, center_atom_weight, max_radial, max_angular
        )
        if spline_accuracy is not None:
            self.hypers["spline_accuracy"] = check_positive_float(spline_accuracy, "spline_accuracy")
        self.species = None if species is None else check_species(species)
        self.memory_budget = _check_memory_budget(memory_budget)
        self._cache: dict = {}

    def _cached(self, name: str, species: np.ndarray, build):
        """``build()`` once per ``(name, species)`` (plans, density calculators)."""
        key = (name, tuple(int(z) for z in species))
        if key not in self._cache:
            self._cache[key] = build()
        return self._cache[key]

    def _expansions(self, frames, species: np.ndarray, *, pairs: bool = True):
        """Dense atom-centred and pair expansions of ``frames`` (:mod:`ncsym.density`)."""
        atoms, pair = self._cached("density", species, lambda: _density_calculators(self.hypers, species))
        dense = atoms.compute_dense(frames)
        return dense, (pair._compute_factors(frames) if pairs else None)

    @property
    def max_angular(self) -> int:
        return self.hypers["max_angular"]

    def _info(self, **extra) -> dict:
        info = {k: v for k, v in self.hypers.items()}
        info.update(extra)
        return info


# ============================================================================ pair ACDC


class PairCorrelations(_Base):
    """Pair features ``rho_ij^(nu)`` for every pair within ``pair_cutoff`` (periodic images too).

    Parameters
    ----------
    cutoff : float
        Cutoff of the atom-centred density ``rho_i`` (Angstrom).
    pair_cutoff : float, optional
        Cutoff of the pair expansion ``g_ij`` and of the pair list (Angstrom); default
        ``cutoff``.  It may be larger or smaller than ``cutoff``.
    cutoff_width : float
        Width of the shifted-cosine smoothing of both cutoffs (Angstrom).
    density_width : float
        Gaussian width ``sigma`` of the atomic densities (Angstrom).
    center_atom_weight : float
        Weight of the central atom in its own density and of the self pair ``g_ii``.
    spline_accuracy : float, optional
        Accuracy of the splined radial integrals (default: that of :mod:`ncsym.density`).
    max_radial, max_angular : int
        Radial basis ``n = 0 .. max_radial`` and angular ``l = 0 .. max_angular``.
    correlation_order : {0, 1, 2}
        ``nu``: ``rho_ij^(0) = g_ij``, ``rho_ij^(1) = rho_i^(1) ⊗ g_ij``,
        ``rho_ij^(2) = rho_i^(2) ⊗ g_ij`` (``rho_i^(2)`` the lambda-SOAP, ``l1 <= l2``).
    variant : {"i", "j", "ij"}
        ``"i"``: ``rho_i^(nu) ⊗ g_ij``; ``"j"``: ``rho_j^(1) ⊗ g_ij``; ``"ij"``:
        ``rho_i^(1) ⊗ (rho_j^(1) ⊗ g_ij)``.  ``"j"`` and ``"ij"`` need ``correlation_order=1``.
    max_lambda : int, optional
        Largest output order (default ``max_angular``).
    max_lambda_intermediate : int, optional
        Largest order kept for intermediate products (``rho_i^(2)`` for ``nu = 2``,
        ``rho_j^(1) ⊗ g_ij`` for ``"ij"``); default: everything that can reach ``max_lambda``
        (the result is then complete).
    species : list of int, optional
        Atomic numbers of the density channels and of the keys (default: those in the frames).
        Fix it so that the feature layout does not depend on the frames.
    ordered_l : bool
        Keep only ``l_1 <= l_2`` in the last coupling (featomic's choice; the default ``False``
        keeps every ``(l_1, l_2)``, which matters for pair targets, DESIGN.md).
    self_pairs : bool
        Keep the self pair ``(i, i)`` (zero shift), which carries on-site information.
    memory_budget : int
        Bytes of feature values held at once (default :data:`DEFAULT_MEMORY_BUDGET`).

    Notes
    -----
    Output (:meth:`compute`): keys ``(o3_lambda, o3_sigma, first_atom_type,
    second_atom_type)`` for every species pair of ``species`` and every ``(lambda, sigma)`` with
    at least one property; samples ``(system, first_atom, second_atom, cell_shift_a,
    cell_shift_b, cell_shift_c)`` sorted, both ``(i, j)`` and ``(j, i)``; values
    ``(n_pairs, 2 lambda + 1, n_properties)``.  Properties: ``nu = 0``: ``(n_2)``; ``nu = 1``
    (``"i"`` and ``"j"``): ``(l_1, l_2, neighbor_1_type, n_1, n_2)`` (featomic's
    ``EquivariantPowerSpectrumByPair`` names); ``nu = 2``: ``(k_12, sigma_12, l_3, l_1, l_2,
    neighbor_1_type, n_1, neighbor_2_type, n_2, n_3)``; ``"ij"``: ``(l_1, k_23, sigma_23,
    neighbor_1_type, n_1, l_2, l_3, neighbor_2_type, n_2, n_3)``.  For ``"j"`` the density
    properties are those of ``rho_j``.

    Examples
    --------
    >>> import ase.build, ncsym.pairs
    >>> calc = ncsym.pairs.PairCorrelations(cutoff=3.0, max_radial=2, max_angular=2)
    >>> calc.compute(ase.build.molecule("H2O"))
    BlockMap(20 blocks, keys=('o3_lambda', 'o3_sigma', 'first_atom_type', 'second_atom_type'))
    """

    def __init__(
        self,
        *,
        cutoff: float = 4.0,
        pair_cutoff: float | None = None,
        cutoff_width: float = 0.5,
        density_width: float = 0.3,
        center_atom_weight: float = 1.0,
        spline_accuracy: float | None = None,
        max_radial: int = 6,
        max_angular: int = 4,
        correlation_order: int = 1,
        variant: str = "i",
        max_lambda: int | None = None,
        max_lambda_intermediate: int | None = None,
        species: Sequence[int] | None = None,
        ordered_l: bool = False,
        self_pairs: bool = True,
        memory_budget: int = DEFAULT_MEMORY_BUDGET,
    ) -> None:
        super().__init__(
            cutoff=cutoff,
            pair_cutoff=pair_cutoff,
            cutoff_width=cutoff_width,
            density_width=density_width,
            center_atom_weight=center_atom_weight,
            spline_accuracy=spline_accuracy,
            max_radial=max_radial,
            max_angular=max_angular,
            species=species,
            memory_budget=memory_budget,
        )
        self.nu = check_int(correlation_order, "correlation_order", minimum=0, maximum=2)
        if variant not in ("i", "j", "ij"):
            raise ValueError(f"`variant` must be 'i', 'j' or 'ij', got {variant!r}")
        if variant != "i" and self.nu != 1:
            raise ValueError(
                f"`variant={variant!r}` decorates pairs with rho_j^(1) and needs correlation_order=1, "
                f"got {self.nu}"
            )
        self.variant = variant
        lmax = self.max_angular
        largest = {0: lmax, 1: 2 * lmax, 2: 3 * lmax}[self.nu]
        self.max_lambda = _check_max_lambda(max_lambda, lmax, largest)
        self.max_lambda_intermediate = _check_max_lambda(
            max_lambda_intermediate,
            min(2 * lmax, self.max_lambda + lmax),
            2 * lmax,
            "max_lambda_intermediate",
        )
        self.ordered_l = bool(ordered_l)
        self.self_pairs = bool(self_pairs)

    # ---------------------------------------------------------------- planning
    def _plans(self, rho1_meta, g_meta):
        """Plans of the intermediate and last products (from metadata only)."""
        last_filter = (lambda l1, l2: l1 <= l2) if self.ordered_l else None
        lmax = self.max_angular
        if self.nu == 0:
            return None, None
        if self.variant == "ij":
            a = {k: Labels(("neighbor_2_type", "n_2"), p.values) for k, p in rho1_meta.items()}
            b = {k: Labels(("n_3",), p.values) for k, p in g_meta.items()}
            inner = _Plan(
                a, b, max_lambda=self.max_lambda_intermediate, prefix_names=("l_2", "l_3"), prefix=_prefix_l
            )
            last = _Plan(
                rho1_meta,
                inner.meta,
                max_lambda=self.max_lambda,
                prefix_names=("l_1", "k_23", "sigma_23"),
                prefix=_prefix_lls,
                l_filter=last_filter,
            )
            return inner, last
        if self.nu == 1:
            last = _Plan(
                rho1_meta,
                g_meta,
                max_lambda=self.max_lambda,
                prefix_names=("l_1", "l_2"),
                prefix=_prefix_l,
                l_filter=last_filter,
            )
            return None, last
        # nu = 2: rho_i^(2) with orders up to max_lambda_intermediate
        soap_meta = _soap_meta(rho1_meta, min(self.max_lambda_intermediate, 2 * lmax))
        b = {k: Labels(("n_3",), p.values) for k, p in g_meta.items()}
        last = _Plan(
            soap_meta,
            b,
            max_lambda=self.max_lambda,
            prefix_names=("k_12", "sigma_12", "l_3"),
            prefix=_prefix_ls,
            l_filter=last_filter,
        )
        return None, last

    # ---------------------------------------------------------------- compute
    def compute(self, frames) -> BlockMap:
        """Pair features of ``frames`` (one ``ase.Atoms`` or a list).

        Returns
        -------
        BlockMap
            See the class Notes for keys, samples and properties.  For ``correlation_order``
            1 and 2 the block values are views of one buffer, lent again by
            :mod:`ncsym.buffers` once every block is dropped (copy a block to keep it alone).

        Raises
        ------
        TypeError, ValueError
            Invalid frames (see :func:`ncsym._checks.check_frames`), species missing from
            ``species``, or features larger than ``memory_budget``.
        """
        frames = check_frames(frames)
        species = _resolve_species(self.species, frames)
        dense, pair = self._expansions(frames, species)
        pairs = _pair_list(pair, dense)
        rho1 = _rho1(dense, species)
        g_meta = _g_meta(self.max_angular, pairs.radial.shape[2])
        inner, last = self._cached("plans", species, lambda: self._plans(rho1.meta, g_meta))

        rows_all = np.arange(len(pairs))
        if not self.self_pairs:
            rows_all = rows_all[~pairs.is_self[rows_all]]
        if last is None:
            g = _g(pairs.values)
            out_meta = _restrict(g, self.max_lambda).meta
        else:
            out_meta = last.meta
        needed = len(rows_all) * _bytes_per_row(out_meta)
        if needed > self.memory_budget:
            raise _too_big(
                f"pair features of {len(rows_all)} pairs",
                needed,
                self.memory_budget,
                "compute fewer frames at a time, lower max_angular, max_radial or max_lambda, "
                "or use PairFeatures with `contraction`",
            )
        inter_budget = max(self.memory_budget - needed, self.memory_budget * _INTERMEDIATE_SHARE)

        a_flat = None
        if self.nu == 2:
            a_flat = _lambda_soap(rho1, min(self.max_lambda_intermediate, 2 * self.max_angular)).flat()
        elif self.nu == 1:
            a_flat = rho1.flat()
        g_flat = pairs.separable
        # one pass over all pairs, grouped by species pair: blocks are row ranges (views)
        combos = [(int(za), int(zb)) for za in species for zb in species]
        rows, bounds = _sorted_groups(
            rows_all, np.column_stack([pairs.first_type[rows_all], pairs.second_type[rows_all]]), combos
        )
        if last is None:
            values = {k: np.ascontiguousarray(g.values[k][rows]) for k in out_meta}
        else:
            # the separable kernel assigns every entry: no zeroing of the (reused) buffer
            assigned = self.variant in ("i", "j") and last.separable_with(g_flat)
            values = last.allocate(len(rows), zero=not assigned, pooled=True)
            inter_row = 0 if inner is None else _bytes_per_row(inner.meta)
            for sl in _chunks(len(rows), inter_row, inter_budget):
                r = rows[sl]
                view = {k: v[sl] for k, v in values.items()}
                if self.variant == "i":
                    last.run(a_flat, g_flat, pairs.ci[r], r, view)
                elif self.variant == "j":
                    last.run(a_flat, g_flat, pairs.cj[r], r, view)
                else:
                    d = inner(a_flat, g_flat, pairs.cj[r], r)
                    last.run(a_flat, d.flat(), pairs.ci[r], np.arange(len(r)), view)
        keys, blocks = [], []
        for (za, zb), (lo, hi) in zip(combos, bounds, strict=True):
            samples = Labels(_PAIR_SAMPLE_NAMES, pairs.samples(rows[lo:hi]))
            for key in sorted(out_meta, key=lambda k: (k[0], -k[1])):
                keys.append((key[0], key[1], za, zb))
                blocks.append(Block(values[key][lo:hi], samples, out_meta[key]))
        info = self._info(
            correlation_order=self.nu,
            variant=self.variant,
            max_lambda=self.max_lambda,
            species=[int(z) for z in species],
        )
        return BlockMap(Labels(_PAIR_KEY_NAMES, np.array(keys, dtype=np.int64).reshape(-1, 4)), blocks, info)


def _soap_meta(rho1_meta: dict[Key, Labels], max_lambda: int) -> dict[Key, Labels]:
    """Metadata of :func:`_lambda_soap` without computing it."""
    a = {k: Labels(("neighbor_1_type", "n_1"), p.values) for k, p in rho1_meta.items()}
    b = {k: Labels(("neighbor_2_type", "n_2"), p.values) for k, p in rho1_meta.items()}
    return _Plan(
        a,
        b,
        max_lambda=max_lambda,
        prefix_names=("l_1", "l_2"),
        prefix=_prefix_l,
        l_filter=lambda l1, l2: l1 <= l2,
    ).meta


# ============================================================================ message passing


def _species_to_props(e: _Equi, n_centers: int, species: np.ndarray, name: str) -> _Equi:
    """Rows ``i * n_species + a`` -> rows ``i`` with ``a`` as the slowest property."""
    s = len(species)
    values, props = {}, {}
    for k, v in e.values.items():
        size, width = v.shape[1], v.shape[2]
        values[k] = np.ascontiguousarray(
            v.reshape(n_centers, s, size, width).transpose(0, 2, 1, 3).reshape(n_centers, size, s * width)
        )
    for k, p in e.props.items():
        props[k] = Labels(
            (name,) + p.names,
            np.hstack([np.repeat(species.reshape(-1, 1), len(p), axis=0), np.tile(p.values, (s, 1))]),
        )
    return _Equi(n_centers, values, props)


def _species_to_props_meta(meta: dict[Key, Labels], species: np.ndarray, name: str) -> dict[Key, Labels]:
    s = len(species)
    return {
        k: Labels(
            (name,) + p.names,
            np.hstack([np.repeat(species.reshape(-1, 1), len(p), axis=0), np.tile(p.values, (s, 1))]),
        )
        for k, p in meta.items()
    }


class _MessagePlan:
    """``rho_i^[nu <- nu'] = rho_i^(nu) ⊗ sum_{j in a} (g_ij ⊗ rho_j^(nu'))`` (internal)."""

    def __init__(self, meta_i, meta_g, meta_j, species, *, max_lambda, max_lambda_message):
        self.species = species
        self.message = _Plan(
            meta_g,
            meta_j,
            max_lambda=max_lambda_message,
            prefix_names=("l_2", "lambda_3", "sigma_3"),
            prefix=_prefix_lls,
        )
        meta_m = _species_to_props_meta(self.message.meta, species, "neighbor_2_type")
        self.last = _Plan(
            meta_i,
            meta_m,
            max_lambda=max_lambda,
            prefix_names=("lambda_1", "sigma_1", "lambda_23", "sigma_23"),
            prefix=lambda ka, kb: (ka[0], ka[1], kb[0], kb[1]),
        )

    @property
    def meta(self):
        return self.last.meta

    def message_bytes_per_center(self) -> int:
        return _bytes_per_row(self.message.meta) * len(self.species) * 2

    def run(self, flat_i, flat_g, flat_j, pairs: _Pairs, centers: np.ndarray, outs, pair_rows=None):
        """Fill ``outs`` (rows = ``centers``, sorted) with the message-passing features."""
        s = len(self.species)
        rows = np.arange(len(pairs)) if pair_rows is None else pair_rows
        # pairs of the chunk's centres, sorted by (centre, neighbour species)
        pos = np.searchsorted(centers, pairs.ci[rows])
        pos = np.minimum(pos, len(centers) - 1)
        mine = rows[centers[pos] == pairs.ci[rows]]
        local = np.searchsorted(centers, pairs.ci[mine])
        spec = np.searchsorted(self.species, pairs.second_type[mine])
        target = local * s + spec
        order = np.argsort(target, kind="stable")
        mine, target = mine[order], target[order]
        seg = np.searchsorted(target, np.arange(len(centers) * s + 1))
        msg = self.message(flat_g, flat_j, mine, pairs.cj[mine], seg=seg, n_rows=len(centers) * s)
        msg = _species_to_props(msg, len(centers), self.species, "neighbor_2_type")
        self.last.run(flat_i, msg.flat(), centers, np.arange(len(centers)), outs)
        return outs


class MessagePassingFeatures(_Base):
    """Message-passing contractions ``rho_i^[nu <- nu'] = sum_{j in a} rho_i^(nu) ⊗ g_ij ⊗ rho_j^(nu')``.

    The sum runs over the neighbours ``j`` of species ``a`` within ``pair_cutoff`` (periodic
    images and the self pair ``j = i`` included), one channel per species ``a``.  It is coupled
    as ``rho_i^(nu) ⊗ (sum_j g_ij ⊗ rho_j^(nu'))``; with every intermediate order kept (the
    default ``max_lambda_message``) this spans the same space as any other coupling order.

    Parameters
    ----------
    cutoff, pair_cutoff, cutoff_width, density_width, center_atom_weight, spline_accuracy, max_radial, max_angular, species, memory_budget
        As in :class:`PairCorrelations`.
    correlation_order : {1, 2}
        ``nu`` of the central atom's density correlation.
    neighbor_correlation_order : {1, 2}
        ``nu'`` of the neighbours' density correlation.
    max_lambda : int, optional
        Largest output order (default ``max_angular``).
    max_lambda_message : int, optional
        Largest order of the message ``g_ij ⊗ rho_j``; default: all orders that can reach
        ``max_lambda``.

    Notes
    -----
    Keys ``(o3_lambda, o3_sigma, center_type)``; samples ``(system, atom)``; properties
    ``(lambda_1, sigma_1, lambda_23, sigma_23, <rho_i properties>, neighbor_2_type, l_2,
    lambda_3, sigma_3, n_2, <rho_j properties>)``.  Widths grow as ``(n_species n_radial)^2
    n_species n_radial`` per angular path: keep bases small or contract.

    Examples
    --------
    >>> import ase.build, ncsym.pairs
    >>> calc = ncsym.pairs.MessagePassingFeatures(cutoff=3.0, max_radial=1, max_angular=1)
    >>> calc.compute(ase.build.molecule("H2O"))
    BlockMap(8 blocks, keys=('o3_lambda', 'o3_sigma', 'center_type'))
    """

    def __init__(
        self,
        *,
        cutoff: float = 4.0,
        pair_cutoff: float | None = None,
        cutoff_width: float = 0.5,
        density_width: float = 0.3,
        center_atom_weight: float = 1.0,
        spline_accuracy: float | None = None,
        max_radial: int = 6,
        max_angular: int = 4,
        correlation_order: int = 1,
        neighbor_correlation_order: int = 1,
        max_lambda: int | None = None,
        max_lambda_message: int | None = None,
        species: Sequence[int] | None = None,
        memory_budget: int = DEFAULT_MEMORY_BUDGET,
    ) -> None:
        super().__init__(
            cutoff=cutoff,
            pair_cutoff=pair_cutoff,
            cutoff_width=cutoff_width,
            density_width=density_width,
            center_atom_weight=center_atom_weight,
            spline_accuracy=spline_accuracy,
            max_radial=max_radial,
            max_angular=max_angular,
            species=species,
            memory_budget=memory_budget,
        )
        self.nu = check_int(correlation_order, "correlation_order", minimum=1, maximum=2)
        self.nu_neighbor = check_int(
            neighbor_correlation_order, "neighbor_correlation_order", minimum=1, maximum=2
        )
        lmax = self.max_angular
        self.max_lambda = _check_max_lambda(max_lambda, lmax, 4 * lmax)
        self.max_lambda_message = _check_max_lambda(
            max_lambda_message,
            4 * lmax,
            3 * lmax if self.nu_neighbor == 2 else 2 * lmax,
            "max_lambda_message",
        )

    def _factor(self, rho1: _Equi, nu: int, names1, names2) -> _Equi:
        if nu == 1:
            return rho1.renamed(names1)
        soap = _lambda_soap(rho1, 2 * self.max_angular)
        return soap.renamed(names2)

    def compute(self, frames) -> BlockMap:
        """Message-passing features of ``frames``; see the class Notes for the layout."""
        frames = check_frames(frames)
        species = _resolve_species(self.species, frames)
        dense, pair = self._expansions(frames, species)
        pairs = _pair_list(pair, dense)
        rho1 = _rho1(dense, species)
        rho_i = self._factor(
            rho1,
            self.nu,
            ("neighbor_1_type", "n_1"),
            ("l_1a", "l_1b", "neighbor_1a_type", "n_1a", "neighbor_1b_type", "n_1b"),
        )
        rho_j = self._factor(
            rho1,
            self.nu_neighbor,
            ("neighbor_3_type", "n_3"),
            ("l_3a", "l_3b", "neighbor_3a_type", "n_3a", "neighbor_3b_type", "n_3b"),
        )
        g_meta = _g_meta(self.max_angular, pairs.radial.shape[2], "n_2")
        plan = self._cached(
            "plans",
            species,
            lambda: _MessagePlan(
                rho_i.meta,
                g_meta,
                rho_j.meta,
                species,
                max_lambda=self.max_lambda,
                max_lambda_message=self.max_lambda_message,
            ),
        )
        center_type = np.asarray(dense.center_type, dtype=np.int64)
        needed = len(center_type) * _bytes_per_row(plan.meta)
        if needed > self.memory_budget:
            raise _too_big(
                f"message-passing features of {len(center_type)} atoms",
                needed,
                self.memory_budget,
                "compute fewer frames at a time or lower max_angular, max_radial or max_lambda",
            )
        inter_budget = max(self.memory_budget - needed, self.memory_budget * _INTERMEDIATE_SHARE)
        flat_i, flat_g, flat_j = rho_i.flat(), pairs.separable.flat, rho_j.flat()
        keys, blocks = [], []
        for z in species:
            centers = np.nonzero(center_type == z)[0]
            values = plan.last.allocate(len(centers))
            for sl in _chunks(len(centers), plan.message_bytes_per_center(), inter_budget):
                view = {k: v[sl] for k, v in values.items()}
                plan.run(flat_i, flat_g, flat_j, pairs, centers[sl], view)
            samples = Labels(
                ("system", "atom"),
                np.column_stack([np.asarray(dense.system)[centers], np.asarray(dense.atom)[centers]]),
            )
            for key in plan.last.keys:
                keys.append((key[0], key[1], int(z)))
                blocks.append(Block(values[key], samples, plan.meta[key]))
        info = self._info(
            correlation_order=self.nu,
            neighbor_correlation_order=self.nu_neighbor,
            species=[int(z) for z in species],
        )
        return BlockMap(
            Labels(("o3_lambda", "o3_sigma", "center_type"), np.array(keys, dtype=np.int64).reshape(-1, 3)),
            blocks,
            info,
        )


# ============================================================================ three centres


_TRIPLE_SAMPLE_NAMES = (
    "system",
    "first_atom",
    "second_atom",
    "third_atom",
    "cell_shift_a_2",
    "cell_shift_b_2",
    "cell_shift_c_2",
    "cell_shift_a_3",
    "cell_shift_b_3",
    "cell_shift_c_3",
)


class ThreeCentreFeatures(_Base):
    """Three-centre features ``rho_i^(nu) ⊗ g_ij ⊗ g_ik`` for triples within ``pair_cutoff``.

    For every centre ``i`` and every two different neighbours ``(j, S_j) != (k, S_k)`` within
    ``pair_cutoff`` of ``i`` (periodic images included, ``j, k != i``), the product is coupled
    in sequence, ``T_ijk = ((rho_i^(nu) ⊗ g_ij)_k12 ⊗ g_ik)_lambda``.

    Parameters
    ----------
    cutoff, pair_cutoff, cutoff_width, density_width, center_atom_weight, spline_accuracy, max_radial, max_angular, species, memory_budget
        As in :class:`PairCorrelations`.
    correlation_order : {0, 1}
        ``nu``: ``0`` couples ``g_ij ⊗ g_ik`` only, ``1`` includes ``rho_i^(1)``.
    max_lambda : int, optional
        Largest output order (default ``max_angular``).
    max_lambda_intermediate : int, optional
        Largest order ``k12`` of ``rho_i ⊗ g_ij`` (default: all that can reach ``max_lambda``).
    symmetrise : bool
        Symmetrise over the exchange ``j <-> k`` (default True): same-species neighbours are
        stored once (``(j, S_j) < (k, S_k)``) as ``(T_ijk ± T_ikj) / sqrt(2)``
        (``block_type = +1 / -1``); different species with the lower atomic number as
        ``second_atom`` and ``[T_ijk, T_ikj]`` concatenated on properties (``block_type = 2``).
        Without symmetrisation every ordered triple is listed.

    Notes
    -----
    Keys ``([block_type,] center_type, second_atom_type, third_atom_type, o3_lambda, o3_sigma)``;
    samples ``(system, first_atom, second_atom, third_atom, cell_shift_a_2, cell_shift_b_2,
    cell_shift_c_2, cell_shift_a_3, cell_shift_b_3, cell_shift_c_3)`` (shifts of ``j`` and ``k``
    relative to ``i``), sorted; properties ``(k_12, sigma_12, l_3, <rho_i ⊗ g_ij properties>,
    n_3)`` (and a leading ``direction`` column, 0 for ``T_ijk`` and 1 for ``T_ikj``, for
    ``block_type = 2``).  All triples are computed in one pass into one array per
    ``(lambda, sigma)``; blocks are row ranges of it, and the ``+1 / -1`` blocks are the two
    property halves (views, not C-contiguous: use ``np.ascontiguousarray`` where needed).
    The number of triples grows as the square of the number of neighbours: the output size is
    checked against ``memory_budget`` before any work, and the intermediate ``rho_i ⊗ g_ij`` is
    computed per chunk of triples.

    Examples
    --------
    >>> import ase.build, ncsym.pairs
    >>> calc = ncsym.pairs.ThreeCentreFeatures(cutoff=3.0, max_radial=1, max_angular=1)
    >>> calc.compute(ase.build.molecule("H2O")).keys.names[:4]
    ('block_type', 'center_type', 'second_atom_type', 'third_atom_type')
    """

    def __init__(
        self,
        *,
        cutoff: float = 4.0,
        pair_cutoff: float | None = None,
        cutoff_width: float = 0.5,
        density_width: float = 0.3,
        center_atom_weight: float = 1.0,
        spline_accuracy: float | None = None,
        max_radial: int = 6,
        max_angular: int = 4,
        correlation_order: int = 1,
        max_lambda: int | None = None,
        max_lambda_intermediate: int | None = None,
        species: Sequence[int] | None = None,
        symmetrise: bool = True,
        memory_budget: int = DEFAULT_MEMORY_BUDGET,
    ) -> None:
        super().__init__(
            cutoff=cutoff,
            pair_cutoff=pair_cutoff,
            cutoff_width=cutoff_width,
            density_width=density_width,
            center_atom_weight=center_atom_weight,
            spline_accuracy=spline_accuracy,
            max_radial=max_radial,
            max_angular=max_angular,
            species=species,
            memory_budget=memory_budget,
        )
        self.nu = check_int(correlation_order, "correlation_order", minimum=0, maximum=1)
        lmax = self.max_angular
        self.max_lambda = _check_max_lambda(max_lambda, lmax, (3 if self.nu else 2) * lmax)
        self.max_lambda_intermediate = _check_max_lambda(
            max_lambda_intermediate,
            min(2 * lmax, self.max_lambda + lmax) if self.nu else lmax,
            2 * lmax if self.nu else lmax,
            "max_lambda_intermediate",
        )
        self.symmetrise = bool(symmetrise)

    def _plans(self, rho1_meta, g_meta):
        if self.nu == 1:
            first = _Plan(
                rho1_meta,
                g_meta,
                max_lambda=self.max_lambda_intermediate,
                prefix_names=("l_1", "l_2"),
                prefix=_prefix_l,
            )
            meta_x = first.meta
        else:
            first = None
            meta_x = {k: p for k, p in g_meta.items() if k[0] <= self.max_lambda_intermediate}
        b = {k: Labels(("n_3",), p.values) for k, p in g_meta.items()}
        second = _Plan(
            meta_x,
            b,
            max_lambda=self.max_lambda,
            prefix_names=("k_12", "sigma_12", "l_3"),
            prefix=_prefix_ls,
        )
        return first, second

    def compute(self, frames) -> BlockMap:
        """Three-centre features of ``frames``; see the class Notes for the layout.

        Raises
        ------
        ValueError
            Invalid frames or species, or more triples than ``memory_budget`` allows.
        """
        frames = check_frames(frames)
        species = _resolve_species(self.species, frames)
        dense, pair = self._expansions(frames, species)
        pairs = _pair_list(pair, dense)
        keep = np.nonzero(~pairs.is_self)[0]
        rho1 = _rho1(dense, species)
        g_meta = _g_meta(self.max_angular, pairs.radial.shape[2], "n_2")
        first, second = self._cached("plans", species, lambda: self._plans(rho1.meta, g_meta))
        n_centers = rho1.n_rows
        # pair rows of every centre (pairs are sorted by centre row within a system)
        order = keep[np.argsort(pairs.ci[keep], kind="stable")]
        counts = np.bincount(pairs.ci[order], minlength=n_centers)
        starts = np.concatenate([[0], np.cumsum(counts)])
        n_triples = int(np.sum(counts * (counts - 1)))
        width = _bytes_per_row(second.meta)
        needed = n_triples * width
        if needed > self.memory_budget:
            raise _too_big(
                f"three-centre features of {n_triples} ordered triples",
                needed,
                self.memory_budget,
                "lower pair_cutoff, max_angular, max_radial or max_lambda, or compute fewer frames at a time",
            )
        # enumerate ordered triples (p1, p2) per centre, p1 != p2
        centre_of = np.repeat(np.arange(n_centers), counts * counts)
        pos = np.arange(centre_of.shape[0]) - np.repeat(
            np.cumsum(counts * counts) - counts * counts, counts * counts
        )
        n_c = counts[centre_of]
        u = pos // np.maximum(n_c, 1)
        v = pos % np.maximum(n_c, 1)
        p1 = order[starts[centre_of] + u]
        p2 = order[starts[centre_of] + v]
        distinct = u != v
        centre_of, p1, p2 = centre_of[distinct], p1[distinct], p2[distinct]
        if self.symmetrise:
            t1 = pairs.second_type[p1]
            t2 = pairs.second_type[p2]
            # same species: p1 < p2 (pairs are sorted by atom and shift); different species:
            # the lower atomic number first
            canon = np.where(t1 == t2, p1 < p2, t1 < t2)
            centre_of, p1, p2 = centre_of[canon], p1[canon], p2[canon]
        center_type = np.asarray(dense.center_type, dtype=np.int64)
        types = np.column_stack([center_type[centre_of], pairs.second_type[p1], pairs.second_type[p2]])

        flat_rho = rho1.flat() if self.nu == 1 else None
        g_sep = pairs.separable
        flat_g = g_sep.flat
        x_keys = list(second.layout_a)
        x_row_bytes = _BYTES * sum(s * w for (_, s, w) in second.layout_a.values())
        inter_budget = max(self.memory_budget - needed, self.memory_budget * _INTERMEDIATE_SHARE)

        def intermediate(prs):
            if first is None:
                cols = [
                    flat_g[prs][:, o : o + s * w] for k, (o, s, w) in _layout(g_meta).items() if k in x_keys
                ]
                return np.ascontiguousarray(np.concatenate(cols, axis=1))
            return first(flat_rho, g_sep, pairs.ci[prs], prs).flat()

        combos = sorted(
            {tuple(int(v) for v in row) for row in types}
            | {
                (int(zi), int(zj), int(zk))
                for zi in species
                for zj in species
                for zk in species
                if not self.symmetrise or zj <= zk
            }
        )
        code = np.zeros(len(p1), dtype=np.int64)
        for c, combo in enumerate(combos):
            code[np.all(types == np.asarray(combo, dtype=np.int64), axis=1)] = c
        samples_all = np.column_stack(
            [
                pairs.system[p1],
                pairs.first[p1],
                pairs.second[p1],
                pairs.second[p2],
                pairs.shift[p1],
                pairs.shift[p2],
            ]
        ).reshape(-1, 10)
        sort = np.lexsort(tuple(samples_all.T[::-1]) + (code,))
        p1, p2, code, samples_all = p1[sort], p2[sort], code[sort], samples_all[sort]
        bounds = np.searchsorted(code, np.arange(len(combos) + 1))

        # one pass over all triples; with symmetrisation T_ijk fills the first half of the
        # properties and T_ikj the second half
        halves = {k: len(p) for k, p in second.props.items()}
        n = len(p1)
        values = {
            k: np.zeros((n, 2 * k[0] + 1, (2 if self.symmetrise else 1) * w)) for k, w in halves.items()
        }
        for sl in _chunks(n, x_row_bytes, inter_budget):
            view = {k: v[sl] for k, v in values.items()}
            prs, inv = np.unique(p1[sl], return_inverse=True)
            second.run(intermediate(prs), g_sep, inv, p2[sl], view)
            if self.symmetrise:
                prs, inv = np.unique(p2[sl], return_inverse=True)
                second.run(intermediate(prs), g_sep, inv, p1[sl], view, column_offset=halves)

        keys, blocks = [], []
        for c, combo in enumerate(combos):
            lo, hi = int(bounds[c]), int(bounds[c + 1])
            samples = Labels(_TRIPLE_SAMPLE_NAMES, samples_all[lo:hi])
            zi, zj, zk = combo
            for key in second.keys:
                props, w, v = second.props[key], halves[key], values[key][lo:hi]
                if not self.symmetrise:
                    keys.append((*combo, *key))
                    blocks.append(Block(v, samples, props))
                elif zj == zk:
                    # in place, chunk by chunk: (T_ijk ± T_ikj) / sqrt 2 in the two halves
                    for part in _chunks(hi - lo, 2 * _bytes_per_row({key: props}), inter_budget):
                        plus, minus = _plus_minus(v[part, :, :w], v[part, :, w:])
                        v[part, :, :w] = plus
                        v[part, :, w:] = minus
                    keys.append((1, zi, zj, zk, *key))
                    blocks.append(Block(v[:, :, :w], samples, props))
                    keys.append((-1, zi, zj, zk, *key))
                    blocks.append(Block(v[:, :, w:], samples, props))
                else:
                    keys.append((2, zi, zj, zk, *key))
                    blocks.append(Block(v, samples, _two_directions(props)))
        names = ("center_type", "second_atom_type", "third_atom_type", "o3_lambda", "o3_sigma")
        if self.symmetrise:
            names = ("block_type",) + names
        info = self._info(
            correlation_order=self.nu, symmetrise=self.symmetrise, species=[int(z) for z in species]
        )
        keys_arr = np.array(keys, dtype=np.int64).reshape(-1, len(names))
        order = np.lexsort(keys_arr.T[::-1])
        return BlockMap(Labels(names, keys_arr[order]), [blocks[i] for i in order], info)


# ============================================================================ symmetrisation


def _plus_minus(f_ij: np.ndarray, f_ji: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``(f_ij + f_ji) / sqrt 2`` and ``(f_ij - f_ji) / sqrt 2``.

    IEEE addition is commutative and ``b - a = -(a - b)`` exactly, so exchanging the inputs
    leaves the first output unchanged and flips the sign of the second, bit for bit.
    """
    return (f_ij + f_ji) * _INV_SQRT2, (f_ij - f_ji) * _INV_SQRT2


def _two_directions(props: Labels) -> Labels:
    n = len(props)
    direction = np.repeat(np.array([0, 1], dtype=np.int64), n).reshape(-1, 1)
    return Labels(("direction",) + props.names, np.hstack([direction, np.tile(props.values, (2, 1))]))


def symmetrise_pairs(features: BlockMap) -> BlockMap:
    """Symmetrise pair features over the exchange ``i <-> j`` (DESIGN.md point 5).

    Parameters
    ----------
    features : BlockMap
        Output of :meth:`PairCorrelations.compute` (keys ``o3_lambda, o3_sigma,
        first_atom_type, second_atom_type``; samples ``system, first_atom, second_atom,
        cell_shift_a, cell_shift_b, cell_shift_c`` with both ``(i, j, S)`` and ``(j, i, -S)``).

    Returns
    -------
    BlockMap
        Keys ``(block_type, first_atom_type, second_atom_type, o3_lambda, o3_sigma)``:
        ``block_type = 0`` for self pairs ``(i, i, 0)``; ``+1 / -1`` for same-species pairs
        stored once (``i < j``, or ``i == j`` with the shift lexicographically positive) as
        ``(rho_ij ± rho_ji) / sqrt(2)``; ``2`` for different species with the lower atomic
        number first and ``[rho_ij, rho_ji]`` concatenated (leading property ``direction``).
        Samples keep the input names.

    Raises
    ------
    ValueError
        If the keys or samples do not have the expected names, or a pair has no partner
        ``(j, i, -S)`` (e.g. samples were selected asymmetrically).

    Examples
    --------
    >>> import ase.build, ncsym.pairs
    >>> pairs = ncsym.pairs.PairCorrelations(cutoff=3.0, max_radial=2, max_angular=2)
    >>> sym = ncsym.pairs.symmetrise_pairs(pairs.compute(ase.build.molecule("H2O")))
    >>> sorted(set(sym.keys["block_type"].tolist()))
    [-1, 0, 1, 2]
    """
    if not isinstance(features, BlockMap):
        raise TypeError(f"`features` must be an ncsym.BlockMap, got {type(features).__name__}")
    if tuple(features.keys.names) != _PAIR_KEY_NAMES:
        raise ValueError(f"`features` keys must be {_PAIR_KEY_NAMES}, got {features.keys.names}")
    out_keys, out_blocks = [], []
    for i, key in enumerate(features.keys):
        lam, sigma, za, zb = key
        if za > zb:
            continue
        block = features.blocks[i]
        if tuple(block.samples.names) != _PAIR_SAMPLE_NAMES:
            raise ValueError(f"pair samples must be {_PAIR_SAMPLE_NAMES}, got {block.samples.names}")
        partner_block = features.get(o3_lambda=lam, o3_sigma=sigma, first_atom_type=zb, second_atom_type=za)
        if partner_block is None:
            raise ValueError(f"no block for the exchanged species pair ({zb}, {za}) of key {key}")
        s = np.asarray(block.samples.values, dtype=np.int64)
        swapped = np.column_stack([s[:, 0], s[:, 2], s[:, 1], -s[:, 3:6]])
        partner = _match_rows(np.asarray(partner_block.samples.values, dtype=np.int64), swapped)
        if np.any(partner < 0):
            bad = s[np.nonzero(partner < 0)[0][0]].tolist()
            raise ValueError(f"pair {bad} has no exchanged partner (j, i, -shift) in `features`")
        if za == zb:
            is_self = (s[:, 1] == s[:, 2]) & np.all(s[:, 3:6] == 0, axis=1)
            shift_key = s[:, 3] * 0  # lexicographic sign of the shift
            for c in (5, 4, 3):
                shift_key = np.where(s[:, c] != 0, np.sign(s[:, c]), shift_key)
            canon = (s[:, 1] < s[:, 2]) | ((s[:, 1] == s[:, 2]) & (shift_key > 0))
            rows = np.nonzero(is_self)[0]
            out_keys.append((0, za, zb, lam, sigma))
            out_blocks.append(
                Block(block.values[rows], Labels(block.samples.names, s[rows]), block.properties)
            )
            rows = np.nonzero(canon)[0]
            plus, minus = _plus_minus(block.values[rows], partner_block.values[partner[rows]])
            labels = Labels(block.samples.names, s[rows])
            out_keys.append((1, za, zb, lam, sigma))
            out_blocks.append(Block(plus, labels, block.properties))
            out_keys.append((-1, za, zb, lam, sigma))
            out_blocks.append(Block(minus, labels, block.properties))
        else:
            values = np.concatenate([block.values, partner_block.values[partner]], axis=2)
            out_keys.append((2, za, zb, lam, sigma))
            out_blocks.append(Block(values, block.samples, _two_directions(block.properties)))
    keys_arr = np.array(out_keys, dtype=np.int64).reshape(-1, 5)
    order = np.lexsort(keys_arr.T[::-1])
    return BlockMap(
        Labels(
            ("block_type", "first_atom_type", "second_atom_type", "o3_lambda", "o3_sigma"), keys_arr[order]
        ),
        [out_blocks[i] for i in order],
        features.info,
    )


def _match_rows(reference: np.ndarray, query: np.ndarray) -> np.ndarray:
    """Row of ``reference`` equal to each row of ``query`` (-1 when absent)."""
    if len(reference) == 0:
        return np.full(len(query), -1, dtype=np.int64)
    ref = np.ascontiguousarray(reference, dtype=np.int64)
    qry = np.ascontiguousarray(query, dtype=np.int64)
    void = np.dtype((np.void, ref.dtype.itemsize * ref.shape[1]))
    rv, qv = ref.view(void).ravel(), qry.view(void).ravel()
    order = np.argsort(rv)
    pos = np.searchsorted(rv[order], qv)
    pos = np.minimum(pos, len(rv) - 1)
    found = rv[order][pos] == qv
    return np.where(found, order[pos], -1)


# ============================================================================ Hamiltonian features


_HAM_KEY_NAMES = ("block_type", "first_atom_type", "second_atom_type", "o3_lambda", "o3_sigma")
_HAM_SAMPLE_NAMES = ("system", "first_atom", "second_atom")

#: ``term`` property codes of on-site blocks.
ONSITE_TERMS = {"rho_i": 0, "pair_sum": 1, "message_passing": 2}
#: ``term`` property codes of pair blocks.
PAIR_TERMS = {"i": 0, "j": 1, "ij": 2}

#: Frames are processed in batches of about this many atoms.
_BATCH_ATOMS = 2048


@dataclass
class _Setup:
    """Plans and property widths of one :class:`PairFeatures` configuration (internal)."""

    keys: list  # (lambda, sigma)
    onsite_parts: list  # (term code, meta)
    pair_parts: list  # (term name, meta)
    soap_onsite: int | None
    soap_pair: int | None
    sum_plan: _Plan | None
    pair_plans: dict
    message: _MessagePlan | None

    def onsite_width(self, key) -> int:
        return sum(len(meta[key]) for _, meta in self.onsite_parts if key in meta)

    def pair_width(self, key) -> int:
        return sum(len(meta[key]) for _, meta in self.pair_parts if key in meta)

    def onsite_props(self, key) -> Labels:
        return _term_labels(
            [(code, len(meta[key]) if key in meta else 0) for code, meta in self.onsite_parts], 0
        )

    def pair_props(self, key, directions: int) -> Labels:
        parts = [(PAIR_TERMS[name], len(meta[key]) if key in meta else 0) for name, meta in self.pair_parts]
        return Labels(
            ("term", "direction", "index"),
            np.vstack([_term_labels(parts, d).values for d in range(directions)]),
        )


def _term_labels(parts, direction: int) -> Labels:
    rows = [
        np.column_stack([np.full(w, code), np.full(w, direction), np.arange(w)]) for code, w in parts if w > 0
    ]
    values = np.vstack(rows) if rows else np.zeros((0, 3), dtype=np.int64)
    return Labels(("term", "direction", "index"), values)


class PairFeatures(_Base):
    """Feature set for Hamiltonian-like targets: on-site and symmetrised pair blocks.

    One :class:`ncsym.BlockMap` with keys ``(block_type, first_atom_type, second_atom_type,
    o3_lambda, o3_sigma)`` for every species (pair) of ``species``, every ``lambda <=
    max_lambda`` and both ``sigma``; samples ``(system, first_atom, second_atom)`` sorted;
    values ``(n_samples, 2 lambda + 1, n_properties)``:

    ``block_type = 0`` (on-site, ``first_atom == second_atom``)
        ``rho_i^(nu_onsite) ⊕ [sum_{j in a} rho_ij^(nu_pair)]_a`` (the sum over neighbours of
        species ``a`` within ``pair_cutoff``, self pair included, computed as
        ``rho_i^(nu_pair) ⊗ sum_{j in a} g_ij``), optionally ``⊕ rho_i^[1 <- 1]``
        (``message_passing=True``).
    ``block_type = +1 / -1`` (same species, ``first_atom < second_atom``)
        ``(F_ij ± F_ji) / sqrt(2)``, ``F_ij`` the concatenation of the ``pair_terms``:
        ``"i"``: ``rho_ij^(nu_pair)`` (``rho_i^(nu_pair) ⊗ g_ij``, all ``(l1, l2)``),
        ``"j"``: ``rho_j^(1) ⊗ g_ij``, ``"ij"``: ``rho_i^(1) ⊗ (rho_j^(1) ⊗ g_ij)``.
    ``block_type = 2`` (different species, ``first_atom`` has the lower atomic number)
        ``[F_ij, F_ji]`` concatenated on properties.

    Properties are ``(term, direction, index)`` (term codes :data:`ONSITE_TERMS` /
    :data:`PAIR_TERMS`, direction 0 for ``ij`` and 1 for ``ji``), or ``(pc,)`` after PCA
    contraction.  Blocks without any feature of that ``(lambda, sigma)`` (e.g. ``sigma = -1``
    with ``nu_pair = 0``) have zero properties; blocks of absent species have zero samples.

    Parameters
    ----------
    species : list of int, optional
        Atomic numbers.  Fix it (or call :meth:`fit`) so that the layout does not depend on
        the frames; otherwise the species of each :meth:`compute` call are used.
    cutoff : float
        Density cutoff (Angstrom), for ``rho_i``.
    pair_cutoff : float, optional
        Cutoff of ``g_ij`` and of the pairs that get a sample (Angstrom, default ``cutoff``).
        Pairs farther apart get no sample: it must cover every pair whose block is learned.
        Larger than ``cutoff`` is supported.
    cutoff_width, density_width, center_atom_weight, spline_accuracy, max_radial, max_angular
        As in :class:`PairCorrelations`.
    nu_onsite : {1, 2}
        Body order of ``rho_i`` in on-site blocks.
    nu_pair : {0, 1, 2}
        Body order of ``rho_ij`` (``0``: ``g_ij`` alone).
    max_lambda : int, optional
        Largest ``lambda`` (default ``max_angular``, at most ``2 max_angular``).
    contraction : int or float, optional
        PCA contraction of every output block to at most this many components (int) or to
        this fraction of its variance (float in (0, 1]); needs :meth:`fit`.
    inner_contraction : int or float, optional
        PCA contraction of ``rho_i^(2)`` before it is coupled with ``g_ij`` (``nu_pair = 2``
        only); needs :meth:`fit`.  Keeps the width of ``rho_ij^(2)`` bounded.
    onsite_pair_sum : bool
        Include ``sum_{j in a} rho_ij`` in on-site blocks (default True).
    pair_terms : sequence of {"i", "j", "ij"}
        Terms of ``F_ij`` (default ``("i",)``).
    message_passing : bool
        Add ``rho_i^[1 <- 1]`` to on-site blocks.
    memory_budget : int
        Bytes of feature values held at once, outputs included.

    Notes
    -----
    Molecules only (``pbc=False``): pairs are between atoms, and periodic frames raise
    ``ValueError`` (blocks between periodic images are out of scope here; use
    :class:`PairCorrelations`, which keeps cell shifts, and :func:`symmetrise_pairs`).  PCA is
    uncentred and shared by all samples and ``mu`` components of a block, so contracted blocks
    stay exactly equivariant and exchange-(anti)symmetric.

    Examples
    --------
    >>> import ase.build, ncsym
    >>> calc = ncsym.PairFeatures(species=[1, 8], max_radial=3, max_angular=2)
    >>> feats = calc.compute(ase.build.molecule("H2O"))
    >>> feats.block(block_type=1, first_atom_type=1, second_atom_type=1,
    ...             o3_lambda=0, o3_sigma=1).values.shape
    (1, 1, 96)
    """

    def __init__(
        self,
        *,
        species: Sequence[int] | None = None,
        cutoff: float = 4.0,
        pair_cutoff: float | None = None,
        cutoff_width: float = 0.5,
        density_width: float = 0.3,
        center_atom_weight: float = 1.0,
        spline_accuracy: float | None = None,
        max_radial: int = 6,
        max_angular: int = 4,
        nu_onsite: int = 2,
        nu_pair: int = 1,
        max_lambda: int | None = None,
        contraction: int | float | None = None,
        inner_contraction: int | float | None = None,
        onsite_pair_sum: bool = True,
        pair_terms: Sequence[str] = ("i",),
        message_passing: bool = False,
        memory_budget: int = DEFAULT_MEMORY_BUDGET,
    ) -> None:
        super().__init__(
            cutoff=cutoff,
            pair_cutoff=pair_cutoff,
            cutoff_width=cutoff_width,
            density_width=density_width,
            center_atom_weight=center_atom_weight,
            spline_accuracy=spline_accuracy,
            max_radial=max_radial,
            max_angular=max_angular,
            species=species,
            memory_budget=memory_budget,
        )
        self.nu_onsite = check_int(nu_onsite, "nu_onsite", minimum=1, maximum=2)
        self.nu_pair = check_int(nu_pair, "nu_pair", minimum=0, maximum=2)
        self.max_lambda = _check_max_lambda(max_lambda, self.max_angular, 2 * self.max_angular)
        self.contraction = _check_contraction(contraction, "contraction")
        self.inner_contraction = _check_contraction(inner_contraction, "inner_contraction")
        if isinstance(pair_terms, str) or not all(t in PAIR_TERMS for t in pair_terms):
            raise ValueError(f"`pair_terms` must be a sequence of 'i', 'j', 'ij', got {pair_terms!r}")
        pair_terms = tuple(dict.fromkeys(pair_terms))
        if not pair_terms:
            raise ValueError("`pair_terms` must contain at least one of 'i', 'j', 'ij'")
        self.pair_terms = tuple(t for t in PAIR_TERMS if t in pair_terms)
        self.onsite_pair_sum = bool(onsite_pair_sum)
        self.message_passing = bool(message_passing)
        self.species_: np.ndarray | None = None
        self.inner_projections_: dict | None = None
        self.projections_: dict | None = None

    # ------------------------------------------------------------------ setup
    @property
    def _needs_inner(self) -> bool:
        return self.inner_contraction is not None and self.nu_pair == 2

    def _kmax_pair(self) -> int:
        return min(2 * self.max_angular, self.max_lambda + self.max_angular)

    def _setup(self, species: np.ndarray) -> _Setup:
        lmax, n_radial = self.max_angular, self.hypers["max_radial"] + 1
        dens = np.array([[z, n] for z in species for n in range(n_radial)], dtype=np.int64).reshape(-1, 2)
        radial = np.arange(n_radial, dtype=np.int64).reshape(-1, 1)
        rho1 = {(l, 1): Labels(("neighbor_1_type", "n_1"), dens) for l in range(lmax + 1)}
        g3 = {(l, 1): Labels(("n_3",), radial) for l in range(lmax + 1)}
        keys = _all_keys(self.max_lambda)

        # on-site
        if self.nu_onsite == 1:
            onsite = {k: p for k, p in rho1.items() if k[0] <= self.max_lambda}
            soap_onsite = None
        else:
            soap_onsite = self.max_lambda
            onsite = _soap_meta(rho1, soap_onsite)
        onsite_parts = [(ONSITE_TERMS["rho_i"], onsite)]

        # factor of rho_ij^(nu_pair)
        soap_pair = None
        if self.nu_pair == 1:
            pf = rho1
        elif self.nu_pair == 2:
            soap_pair = self._kmax_pair()
            pf = _soap_meta(rho1, soap_pair)
            if self.inner_projections_ is not None:
                pf = {
                    k: Labels(("pc_12",), np.arange(w.shape[1], dtype=np.int64).reshape(-1, 1))
                    for k, w in self.inner_projections_.items()
                    if w.shape[1] > 0
                }
        else:
            pf = None

        sum_plan = None
        if self.onsite_pair_sum:
            b = {(l, 1): Labels(("neighbor_3_type", "n_3"), dens) for l in range(lmax + 1)}
            if pf is None:
                onsite_parts.append(
                    (ONSITE_TERMS["pair_sum"], {k: p for k, p in b.items() if k[0] <= self.max_lambda})
                )
            else:
                prefix_names, prefix = (
                    (("l_1", "l_3"), _prefix_l)
                    if self.nu_pair == 1
                    else (("k_12", "sigma_12", "l_3"), _prefix_ls)
                )
                sum_plan = _Plan(pf, b, max_lambda=self.max_lambda, prefix_names=prefix_names, prefix=prefix)
                onsite_parts.append((ONSITE_TERMS["pair_sum"], sum_plan.meta))

        message = None
        if self.message_passing:
            g2 = {(l, 1): Labels(("n_2",), radial) for l in range(lmax + 1)}
            rho_j = {k: Labels(("neighbor_3_type", "n_3"), p.values) for k, p in rho1.items()}
            message = _MessagePlan(
                rho1, g2, rho_j, species, max_lambda=self.max_lambda, max_lambda_message=self._kmax_pair()
            )
            onsite_parts.append((ONSITE_TERMS["message_passing"], message.meta))

        pair_plans: dict = {}
        pair_parts = []
        for term in self.pair_terms:
            if term == "i":
                if pf is None:
                    meta = {k: p for k, p in g3.items() if k[0] <= self.max_lambda}
                    pair_plans["i"] = None
                else:
                    prefix_names, prefix = (
                        (("l_1", "l_3"), _prefix_l)
                        if self.nu_pair == 1
                        else (("k_12", "sigma_12", "l_3"), _prefix_ls)
                    )
                    pair_plans["i"] = _Plan(
                        pf, g3, max_lambda=self.max_lambda, prefix_names=prefix_names, prefix=prefix
                    )
                    meta = pair_plans["i"].meta
            elif term == "j":
                pair_plans["j"] = _Plan(
                    rho1, g3, max_lambda=self.max_lambda, prefix_names=("l_1", "l_3"), prefix=_prefix_l
                )
                meta = pair_plans["j"].meta
            else:
                rho2 = {k: Labels(("neighbor_2_type", "n_2"), p.values) for k, p in rho1.items()}
                inner = _Plan(
                    rho2, g3, max_lambda=self._kmax_pair(), prefix_names=("l_2", "l_3"), prefix=_prefix_l
                )
                last = _Plan(
                    rho1,
                    inner.meta,
                    max_lambda=self.max_lambda,
                    prefix_names=("l_1", "k_23", "sigma_23"),
                    prefix=_prefix_lls,
                )
                pair_plans["ij"] = (inner, last)
                meta = last.meta
            pair_parts.append((term, meta))
        return _Setup(keys, onsite_parts, pair_parts, soap_onsite, soap_pair, sum_plan, pair_plans, message)

    def _output_keys(self, species) -> list[tuple[int, ...]]:
        keys = []
        for lam, sigma in _all_keys(self.max_lambda):
            for z in species:
                keys += [(0, z, z, lam, sigma), (1, z, z, lam, sigma), (-1, z, z, lam, sigma)]
            for za in species:
                for zb in species:
                    if za < zb:
                        keys.append((2, za, zb, lam, sigma))
        return sorted((int(a), int(b), int(c), int(d), int(e)) for a, b, c, d, e in keys)

    def _raw_width(self, setup: _Setup, key5) -> int:
        bt, _, _, lam, sigma = key5
        if bt == 0:
            return setup.onsite_width((lam, sigma))
        return setup.pair_width((lam, sigma)) * (2 if bt == 2 else 1)

    def _raw_props(self, setup: _Setup, key5) -> Labels:
        bt, _, _, lam, sigma = key5
        if bt == 0:
            return setup.onsite_props((lam, sigma))
        return setup.pair_props((lam, sigma), 2 if bt == 2 else 1)

    # ------------------------------------------------------------------ checks
    def _frames(self, frames) -> list:
        frames = check_frames(frames)
        periodic = [i for i, f in enumerate(frames) if np.any(f.pbc)]
        if periodic:
            raise ValueError(
                f"PairFeatures/hamiltonian_features handle molecules (pbc=False) only, but frames "
                f"{periodic[:5]} are periodic: Hamiltonian blocks between periodic images are out of "
                "scope here; use ncsym.pairs.PairCorrelations (which keeps cell shifts) and "
                "ncsym.pairs.symmetrise_pairs, or set pbc=False for molecules"
            )
        return frames

    def _species_for(self, frames) -> np.ndarray:
        if self.species_ is not None:
            return _resolve_species(self.species_, frames)
        return _resolve_species(self.species, frames)

    # ------------------------------------------------------------------ batches
    def _batches(self, frames):
        start, atoms = 0, 0
        for i, f in enumerate(frames):
            atoms += len(f)
            if atoms >= _BATCH_ATOMS:
                yield start, frames[start : i + 1]
                start, atoms = i + 1, 0
        if start < len(frames):
            yield start, frames[start:]

    def _pair_factor_flat(self, rho1: _Equi, setup: _Setup):
        if self.nu_pair == 1:
            return rho1.flat()
        if self.nu_pair == 2:
            soap = _lambda_soap(rho1, setup.soap_pair)
            if self.inner_projections_ is not None:
                values = {
                    k: _project(soap.values[k], w)
                    for k, w in self.inner_projections_.items()
                    if w.shape[1] > 0 and k in soap.values
                }
                props = {
                    k: Labels(("pc_12",), np.arange(v.shape[2], dtype=np.int64).reshape(-1, 1))
                    for k, v in values.items()
                }
                soap = _Equi(soap.n_rows, values, props)
            return soap.flat()
        return None

    def _pieces(self, frames, setup: _Setup, species: np.ndarray):
        """Yield ``(key5, samples (n, 3), raw values)`` in sorted sample order per key."""
        for offset, batch in self._batches(frames):
            dense, pair = self._expansions(batch, species)
            pairs = _pair_list(pair, dense)
            rho1 = _rho1(dense, species)
            n_centers = rho1.n_rows
            system = np.asarray(dense.system, dtype=np.int64) + offset
            atom = np.asarray(dense.atom, dtype=np.int64)
            center_type = np.asarray(dense.center_type, dtype=np.int64)
            rho1_flat = rho1.flat()
            pf_flat = self._pair_factor_flat(rho1, setup)
            g = _g(pairs.values, "n_3")
            g_sep = pairs.separable
            g_flat = g_sep.flat
            centers = np.arange(n_centers)

            # ---------------------------------------------------------- on-site
            parts = []
            if self.nu_onsite == 1:
                parts.append(_restrict(rho1, self.max_lambda).values)
            else:
                parts.append(_lambda_soap(rho1, setup.soap_onsite).values)
            if self.onsite_pair_sum:
                b = _rho1(
                    _DenseLike(_pair_density(pairs, n_centers, species)), species, ("neighbor_3_type", "n_3")
                )
                if setup.sum_plan is None:
                    parts.append(_restrict(b, self.max_lambda).values)
                else:
                    parts.append(setup.sum_plan(pf_flat, b.flat(), centers, centers).values)
            if setup.message is not None:
                needed = n_centers * _bytes_per_row(setup.message.last.meta)
                if needed > self.memory_budget:  # checked before allocating the output
                    raise _too_big(
                        "the message-passing features of these frames",
                        needed,
                        self.memory_budget,
                        "lower max_angular, max_radial or max_lambda, request `contraction`, "
                        "or call `compute` on fewer frames at a time",
                    )
                outs = setup.message.last.allocate(n_centers)
                budget = self.memory_budget * _INTERMEDIATE_SHARE
                for sl in _chunks(n_centers, setup.message.message_bytes_per_center(), budget):
                    view = {k: v[sl] for k, v in outs.items()}
                    setup.message.run(rho1_flat, g_flat, rho1_flat, pairs, centers[sl], view)
                parts.append(outs)
            for z in species:
                rows = np.nonzero(center_type == z)[0]
                if rows.size == 0:
                    continue
                samples = np.column_stack([system[rows], atom[rows], atom[rows]])
                for key in setup.keys:
                    vals = [p[key][rows] for p in parts if key in p]
                    values = (
                        np.concatenate(vals, axis=2) if vals else np.zeros((len(rows), 2 * key[0] + 1, 0))
                    )
                    yield (0, int(z), int(z), *key), samples, values

            # ---------------------------------------------------------- pairs
            not_self = ~pairs.is_self
            samples_all = pairs.samples(np.arange(len(pairs)))
            swapped = np.column_stack(
                [samples_all[:, 0], samples_all[:, 2], samples_all[:, 1], -samples_all[:, 3:6]]
            )
            partner = _match_rows(samples_all, swapped)
            bytes_pair = (
                2 * sum(self._raw_width(setup, (1, 0, 0, *k)) * (2 * k[0] + 1) for k in setup.keys) * _BYTES
            )
            if "ij" in setup.pair_plans:
                bytes_pair += 2 * _bytes_per_row(setup.pair_plans["ij"][0].meta)
            budget = self.memory_budget * _INTERMEDIATE_SHARE
            combos = [(int(za), int(zb)) for za in species for zb in species if za <= zb]
            canonical = not_self & (
                (pairs.first_type < pairs.second_type)
                | ((pairs.first_type == pairs.second_type) & (pairs.first < pairs.second))
            )
            candidates = np.nonzero(canonical)[0]
            if np.any(partner[candidates] < 0):  # pragma: no cover - symmetric cutoffs
                raise RuntimeError("the pair list is not symmetric: a pair (i, j) has no (j, i)")
            ordered, bounds = _sorted_groups(
                candidates,
                np.column_stack([pairs.first_type[candidates], pairs.second_type[candidates]]),
                combos,
            )
            # one pass over every pair (all species pairs at once), chunked to the budget
            for sl in _chunks(len(ordered), bytes_pair, budget):
                rows = ordered[sl]
                f_ij = self._pair_terms(setup, rows, pairs, rho1_flat, pf_flat, g, g_sep)
                f_ji = self._pair_terms(setup, partner[rows], pairs, rho1_flat, pf_flat, g, g_sep)
                for (za, zb), (lo, hi) in zip(combos, bounds, strict=True):
                    lo, hi = max(lo, sl.start) - sl.start, min(hi, sl.stop) - sl.start
                    if hi <= lo:
                        continue
                    r = rows[lo:hi]
                    samples = np.column_stack([pairs.system[r] + offset, pairs.first[r], pairs.second[r]])
                    for key in setup.keys:
                        a, b = f_ij[key][lo:hi], f_ji[key][lo:hi]
                        if za == zb:
                            plus, minus = _plus_minus(a, b)
                            yield (1, za, zb, *key), samples, plus
                            yield (-1, za, zb, *key), samples, minus
                        else:
                            yield (2, za, zb, *key), samples, np.concatenate([a, b], axis=2)

    def _pair_terms(self, setup: _Setup, rows, pairs: _Pairs, rho1_flat, pf_flat, g: _Equi, g_flat) -> dict:
        """``F_ij`` of the pair rows ``rows``: every pair term concatenated, per key."""
        parts = []
        for term in self.pair_terms:
            plan = setup.pair_plans[term]
            if term == "i":
                if plan is None:
                    parts.append({k: g.values[k][rows] for k in g.values if k[0] <= self.max_lambda})
                else:
                    parts.append(plan(pf_flat, g_flat, pairs.ci[rows], rows))
                    parts[-1] = parts[-1].values
            elif term == "j":
                parts.append(plan(rho1_flat, g_flat, pairs.cj[rows], rows).values)
            else:
                inner, last = plan
                d = inner(rho1_flat, g_flat, pairs.cj[rows], rows)
                parts.append(last(rho1_flat, d.flat(), pairs.ci[rows], np.arange(len(rows))).values)
        out = {}
        for key in setup.keys:
            vals = [p[key] for p in parts if key in p]
            out[key] = np.concatenate(vals, axis=2) if vals else np.zeros((len(rows), 2 * key[0] + 1, 0))
        return out

    def term_properties(
        self, block_type: int, o3_lambda: int, o3_sigma: int
    ) -> list[tuple[int, int, Labels]]:
        """What the uncontracted columns of a block hold, term by term.

        Parameters
        ----------
        block_type : {0, 1, -1, 2}
        o3_lambda, o3_sigma : int
            Block symmetry.

        Returns
        -------
        list of (term, direction, Labels)
            In column order: the term code (:data:`ONSITE_TERMS` for ``block_type = 0``,
            :data:`PAIR_TERMS` otherwise), the direction (0: ``ij``, 1: ``ji``) and the labels
            of the term's columns (e.g. ``(l_1, l_3, neighbor_1_type, n_1, n_3)`` for
            ``rho_i^(1) ⊗ g_ij``; ``g_ij``'s radial index is called ``n_3``).

        Raises
        ------
        ValueError
            If no species are known yet (give ``species`` or call :meth:`fit`).
        """
        species = self.species_ if self.species_ is not None else self.species
        if species is None:
            raise ValueError("`species` is unknown: give `species` or call `fit(frames)` first")
        setup = self._setup(species)
        key = (int(o3_lambda), int(o3_sigma))
        if block_type == 0:
            return [(code, 0, meta[key]) for code, meta in setup.onsite_parts if key in meta]
        directions = 2 if block_type == 2 else 1
        return [
            (PAIR_TERMS[name], d, meta[key])
            for d in range(directions)
            for name, meta in setup.pair_parts
            if key in meta
        ]

    # ------------------------------------------------------------------ public
    def fit(self, frames) -> PairFeatures:
        """Fix the species and fit the requested PCA contractions on training ``frames``.

        Without ``contraction``/``inner_contraction`` this only records the species, and
        calling it is optional.

        Returns
        -------
        self
        """
        frames = self._frames(frames)
        species = _resolve_species(self.species, frames)
        self.species_ = species
        self.inner_projections_ = None
        self.projections_ = None
        self._forget_setup()
        if self._needs_inner:
            pca = _PCA(self.inner_contraction)
            kmax = self._kmax_pair()
            rho1_meta = None
            for _, batch in self._batches(frames):
                dense, _ = self._expansions(batch, species, pairs=False)
                rho1 = _rho1(dense, species)
                rho1_meta = rho1.meta
                soap = _lambda_soap(rho1, kmax)
                for k, v in soap.values.items():
                    pca.update(k, v)
            for k, p in _soap_meta(rho1_meta, kmax).items():
                pca.declare(k, len(p))
            self.inner_projections_ = pca.finish()
            self._forget_setup()
        if self.contraction is not None:
            setup = self._cached("setup", species, lambda: self._setup(species))
            pca = _PCA(self.contraction)
            for key5, _, values in self._pieces(frames, setup, species):
                if values.shape[0] and values.shape[2]:
                    pca.update(key5, values)
            for key5 in self._output_keys(species):
                pca.declare(key5, self._raw_width(setup, key5))
            self.projections_ = pca.finish()
        return self

    def compute(self, frames) -> BlockMap:
        """Features of ``frames`` (molecules).

        Returns
        -------
        BlockMap
            Keys ``(block_type, first_atom_type, second_atom_type, o3_lambda, o3_sigma)``,
            samples ``(system, first_atom, second_atom)``; see the class docstring.

        Raises
        ------
        ValueError
            Periodic or invalid frames, species outside the fitted/given ``species``, a
            contraction requested but not fitted, or features larger than ``memory_budget``.
        """
        frames = self._frames(frames)
        if (self.contraction is not None and self.projections_ is None) or (
            self._needs_inner and self.inner_projections_ is None
        ):
            raise ValueError(
                "PCA contraction was requested (`contraction` or `inner_contraction`) but is not "
                "fitted: call `fit(training_frames)` first"
            )
        species = self._species_for(frames)
        setup = self._cached("setup", species, lambda: self._setup(species))
        out_keys = self._output_keys(species)
        collected: dict = {k: ([], []) for k in out_keys}
        stored = 0
        for key5, samples, values in self._pieces(frames, setup, species):
            if self.projections_ is not None:
                values = _project(values, self.projections_[key5])
            stored += values.nbytes
            if stored > self.memory_budget:
                raise _too_big(
                    "the features of these frames",
                    stored,
                    self.memory_budget,
                    "request `contraction` (PCA, fitted with `fit`), lower max_angular, max_radial "
                    "or max_lambda, or call `compute` on fewer frames at a time",
                )
            collected[key5][0].append(samples)
            collected[key5][1].append(values)
        blocks = []
        for key5 in out_keys:
            sample_list, value_list = collected[key5]
            if self.projections_ is not None:
                width = self.projections_[key5].shape[1]
                props = Labels(("pc",), np.arange(width, dtype=np.int64).reshape(-1, 1))
            else:
                props = self._raw_props(setup, key5)
                width = len(props)
            if value_list:
                values = np.concatenate(value_list, axis=0) if len(value_list) > 1 else value_list[0]
                samples = np.concatenate(sample_list, axis=0)
            else:
                values = np.zeros((0, 2 * key5[3] + 1, width))
                samples = np.zeros((0, 3), dtype=np.int64)
            blocks.append(Block(values, Labels(_HAM_SAMPLE_NAMES, samples), props))
            collected[key5] = None
        info = self._info(
            species=[int(z) for z in species],
            nu_onsite=self.nu_onsite,
            nu_pair=self.nu_pair,
            max_lambda=self.max_lambda,
            pair_terms=list(self.pair_terms),
            onsite_pair_sum=self.onsite_pair_sum,
            message_passing=self.message_passing,
            contracted=self.projections_ is not None,
        )
        return BlockMap(
            Labels(_HAM_KEY_NAMES, np.array(out_keys, dtype=np.int64).reshape(-1, 5)), blocks, info
        )

    # ------------------------------------------------------------------ state
    def get_state(self) -> dict[str, np.ndarray]:
        """Fitted state as plain arrays (for ``np.savez``); empty before :meth:`fit`."""
        state: dict[str, np.ndarray] = {}
        if self.species_ is not None:
            state["species"] = np.asarray(self.species_, dtype=np.int64)
        for prefix, proj in (("inner", self.inner_projections_), ("final", self.projections_)):
            if proj is None:
                continue
            state[f"{prefix}_fitted"] = np.array(1)
            for key, w in proj.items():
                name = "_".join(str(int(v)).replace("-", "m") for v in key)
                state[f"{prefix}__{name}"] = w
        return state

    def _forget_setup(self) -> None:
        """Drop cached plans (they depend on the fitted inner contraction)."""
        self._cache = {k: v for k, v in self._cache.items() if k[0] == "density"}

    def set_state(self, state: dict) -> PairFeatures:
        """Restore the state returned by :meth:`get_state`."""
        self._forget_setup()
        self.species_ = (
            None if "species" not in state else check_species(np.asarray(state["species"]).tolist())
        )
        for prefix, attr in (("inner", "inner_projections_"), ("final", "projections_")):
            if f"{prefix}_fitted" not in state:
                setattr(self, attr, None)
                continue
            proj = {}
            for name, w in state.items():
                if name.startswith(f"{prefix}__"):
                    key = tuple(int(v.replace("m", "-")) for v in name[len(prefix) + 2 :].split("_"))
                    proj[key] = np.asarray(w, dtype=np.float64)
            setattr(self, attr, proj)
        return self


@dataclass
class _DenseLike:
    """Minimal stand-in with a ``values`` attribute for :func:`_rho1`."""

    values: np.ndarray


def hamiltonian_features(frames, **kwargs) -> BlockMap:
    """Features for Hamiltonian-like targets of molecules, in one call.

    Builds :class:`PairFeatures` with ``kwargs`` (``species``, ``cutoff``, ``pair_cutoff``,
    ``max_radial``, ``max_angular``, ``density_width``, ``cutoff_width``, ``nu_onsite``,
    ``nu_pair``, ``max_lambda``, ``contraction``, ...), fits it on ``frames`` when a PCA
    contraction is requested, and returns :meth:`PairFeatures.compute` of ``frames``.  To
    contract new frames with the same PCA, keep a fitted :class:`PairFeatures` instead.

    Parameters
    ----------
    frames : ase.Atoms or list of ase.Atoms
        Molecules (``pbc=False``), positions in Angstrom.
    **kwargs
        Keyword arguments of :class:`PairFeatures`.

    Returns
    -------
    BlockMap
        Keys ``(block_type, first_atom_type, second_atom_type, o3_lambda, o3_sigma)``,
        samples ``(system, first_atom, second_atom)``.

    Examples
    --------
    >>> import ase.build, ncsym
    >>> ncsym.hamiltonian_features(ase.build.molecule("H2O"), max_radial=3, max_angular=2)
    BlockMap(42 blocks, keys=('block_type', 'first_atom_type', 'second_atom_type', 'o3_lambda', 'o3_sigma'))
    """
    calc = PairFeatures(**kwargs)
    if calc.contraction is not None or calc._needs_inner:
        calc.fit(frames)
    return calc.compute(frames)
