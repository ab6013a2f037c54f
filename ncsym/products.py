"""Clebsch-Gordan (CG) tensor products of equivariant arrays and blocks.

Two layers, both on the kernels of :mod:`ncsym.kernels`:

* :func:`couple_arrays` couples two plain arrays ``a`` (order ``l1``) and ``b`` (order ``l2``)
  into order ``lam``: full property outer product or channel-wise product, rows gathered with
  index arrays, optionally summed over the pairs of each centre (message passing);
* :class:`CGProduct` couples two :class:`ncsym.BlockMap` block by block, with all allowed
  ``(l1, l2) -> lam``, the parity rule ``sigma = sigma1 sigma2 (-1)^(l1 + l2 + lam)``, key and
  sample matching and selections, in one fused kernel call per pair of blocks.

Convention (:mod:`ncsym.cg`): ``out[s, mu, p * Pb + q] = sum_{m1, m2} cg[m1, m2, mu]
a[s, m1, p] b[s, m2, q]``; the first input's property is the slow index.  A product of blocks
``(l1, sigma1)`` and ``(l2, sigma2)`` is equivariant of order ``lam`` with parity ``sigma``: it
transforms as ``X(R A) = det(R)^((1 - sigma) / 2) D_lam(R) X(A)`` on the ``mu`` axis.

The plan helpers at the bottom (:class:`PlanBuilder`, :func:`run_plan`) describe many
products over flat buffers for :func:`ncsym.kernels.cg_cpu.outer_product_plan`; the ACDC
iterations of :mod:`ncsym.acdc` use them too.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from ._checks import check_angular, check_array, check_int
from .blocks import Block, BlockMap, Labels
from .conventions import product_parity

__all__ = ["cg_terms", "couple_arrays", "CGProduct", "PlanBuilder", "Plan", "run_plan", "check_plan_bounds"]


# ---------------------------------------------------------------------------- CG terms


@functools.lru_cache(maxsize=8192)
def cg_terms(l1: int, l2: int, lam: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Nonzero real CG coefficients of one ``(l1, l2, lam)`` as flat kernel arrays.

    Parameters
    ----------
    l1, l2 : int
        Input orders, ``0 <= l <= MAX_ANGULAR``.
    lam : int
        Output order, ``|l1 - l2| <= lam <= l1 + l2``.

    Returns
    -------
    m1, m2, mu : ndarray of int32, shape (nnz,)
        Components counted from zero (``m + l``), sorted by ``(mu, m1, m2)``.
    coef : ndarray of float64, shape (nnz,)
        Coefficients of :func:`ncsym.clebsch_gordan` (effective sign included).

    All four arrays are read-only and shared between calls.
    """
    from .cg import clebsch_gordan

    table = clebsch_gordan(l1, l2, lam)
    coords = np.asarray(table.coords)
    order = np.lexsort((coords[1], coords[0], coords[2]))
    m1 = np.ascontiguousarray(coords[0][order], dtype=np.int32)
    m2 = np.ascontiguousarray(coords[1][order], dtype=np.int32)
    mu = np.ascontiguousarray(coords[2][order], dtype=np.int32)
    coef = np.ascontiguousarray(np.asarray(table.data)[order], dtype=np.float64)
    for x in (m1, m2, mu, coef):
        x.flags.writeable = False
    return m1, m2, mu, coef


def _check_triple(l1, l2, lam) -> tuple[int, int, int]:
    l1 = check_angular(l1, "l1")
    l2 = check_angular(l2, "l2")
    lam = check_int(lam, "lam", minimum=0)
    if not abs(l1 - l2) <= lam <= l1 + l2:
        raise ValueError(
            f"`lam` must satisfy |l1 - l2| <= lam <= l1 + l2, got (l1, l2, lam) = ({l1}, {l2}, {lam})"
        )
    return l1, l2, lam


def _check_index(idx, name: str, size: int, n_rows: int | None) -> np.ndarray:
    idx = np.asarray(idx)
    if idx.ndim != 1:
        raise ValueError(f"`{name}` must be a 1-D integer array, got shape {idx.shape}")
    if idx.size and idx.dtype.kind not in "iu":
        raise TypeError(f"`{name}` must hold integers, got dtype {idx.dtype}")
    idx = np.ascontiguousarray(idx, dtype=np.int64)
    if n_rows is not None and idx.shape[0] != n_rows:
        raise ValueError(f"`{name}` must have {n_rows} entries, got {idx.shape[0]}")
    if idx.size and (idx.min() < 0 or idx.max() >= size):
        raise ValueError(f"`{name}` must hold row indices in [0, {size}), got values in [{idx.min()}, {idx.max()}]")
    return idx


def couple_arrays(
    a: npt.ArrayLike,
    b: npt.ArrayLike,
    l1: int,
    l2: int,
    lam: int,
    *,
    idx_a: npt.ArrayLike | None = None,
    idx_b: npt.ArrayLike | None = None,
    channelwise: bool = False,
    segments: npt.ArrayLike | None = None,
    backend: str = "cpu",
) -> npt.NDArray[np.float64]:
    """CG product of two equivariant arrays into order ``lam``.

    Parameters
    ----------
    a : array_like of float64, shape (Na, 2 l1 + 1, Pa)
        First input, middle axis ``m1 = -l1 .. l1``.
    b : array_like of float64, shape (Nb, 2 l2 + 1, Pb)
        Second input.
    l1, l2, lam : int
        Orders; ``|l1 - l2| <= lam <= l1 + l2``.
    idx_a, idx_b : array_like of int, shape (n,), optional
        Row of ``a`` and of ``b`` used for output row (or pair) ``s``.  Default: ``arange``
        (then ``Na == Nb`` is required).
    channelwise : bool
        Multiply matching properties only (``Pa == Pb == P``) instead of the full outer
        product.
    segments : array_like of int, shape (n_out + 1,), optional
        Message passing: pairs ``segments[i]:segments[i + 1]`` (rows of ``idx_a``/``idx_b``,
        sorted by centre) are summed into output row ``i``, without storing the pair products.
        Must start at 0, end at ``n`` and be non-decreasing.
    backend : {"cpu", "cuda"}
        Kernels to use (see :func:`ncsym.kernels.get_backend`).

    Returns
    -------
    ndarray of float64
        Shape ``(n, 2 lam + 1, Pa * Pb)`` (outer; property ``p * Pb + q``) or
        ``(n, 2 lam + 1, P)`` (channel-wise); ``n_out`` rows with ``segments``.

    Raises
    ------
    TypeError, ValueError
        Wrong dtypes, shapes, orders, indices or segments, with the expected value.

    Examples
    --------
    >>> import numpy as np
    >>> from ncsym.products import couple_arrays
    >>> a = np.random.default_rng(0).normal(size=(4, 3, 2))
    >>> couple_arrays(a, a, 1, 1, 0).shape
    (4, 1, 4)
    """
    from .kernels import get_backend

    l1, l2, lam = _check_triple(l1, l2, lam)
    a = check_array(a, "a", shape=(None, 2 * l1 + 1, None))
    b = check_array(b, "b", shape=(None, 2 * l2 + 1, None))
    if idx_a is None and idx_b is None:
        if a.shape[0] != b.shape[0]:
            raise ValueError(
                f"`a` and `b` have {a.shape[0]} and {b.shape[0]} rows: pass `idx_a` and `idx_b` to pair them"
            )
        idx_a = idx_b = np.arange(a.shape[0], dtype=np.int64)
    elif idx_a is None or idx_b is None:
        raise ValueError("pass both `idx_a` and `idx_b`, or neither")
    idx_a = _check_index(idx_a, "idx_a", a.shape[0], None)
    idx_b = _check_index(idx_b, "idx_b", b.shape[0], idx_a.shape[0])
    if channelwise and a.shape[2] != b.shape[2]:
        raise ValueError(
            f"channel-wise products need as many properties in `a` as in `b`, got {a.shape[2]} and {b.shape[2]}"
        )
    width = a.shape[2] if channelwise else a.shape[2] * b.shape[2]
    m1, m2, mu, coef = cg_terms(l1, l2, lam)
    kernels = get_backend(backend)
    if segments is None:
        out = np.zeros((idx_a.shape[0], 2 * lam + 1, width))
        fn = kernels.channelwise_product if channelwise else kernels.outer_product
        fn(a, b, idx_a, idx_b, m1, m2, mu, coef, out)
        return out
    segments = np.ascontiguousarray(np.asarray(segments), dtype=np.int64)
    if (
        segments.ndim != 1
        or segments.shape[0] < 1
        or segments[0] != 0
        or segments[-1] != idx_a.shape[0]
        or np.any(np.diff(segments) < 0)
    ):
        raise ValueError(
            f"`segments` must be a non-decreasing 1-D array from 0 to the number of pairs "
            f"({idx_a.shape[0]}), got {segments if segments.size < 10 else segments.shape}"
        )
    out = np.zeros((segments.shape[0] - 1, 2 * lam + 1, width))
    fn = kernels.channelwise_product_segments if channelwise else kernels.outer_product_segments
    fn(a, b, idx_a, idx_b, segments, m1, m2, mu, coef, out)
    return out


# ---------------------------------------------------------------------------- plans


@dataclass(frozen=True)
class Plan:
    """Arrays describing many products for :func:`ncsym.kernels.cg_cpu.outer_product_plan`.

    Attributes mirror the kernel arguments: ``groups`` (n_groups, 13) int64, ``pair_m1``,
    ``pair_m2`` (n_pairs,) int32, ``rows`` (n_rows, 5) int64, ``nz_pair`` (nnz,) int32,
    ``nz_coef`` (nnz,) float64 and ``buf_size``.  ``flops`` counts the multiply-adds per
    sample (for benchmarks).
    """

    groups: np.ndarray
    pair_m1: np.ndarray
    pair_m2: np.ndarray
    rows: np.ndarray
    nz_pair: np.ndarray
    nz_coef: np.ndarray
    buf_size: int
    flops: int

    def shifted(self, samples: int) -> Plan:
        """The same plan writing output sample ``s`` at output sample ``s + samples``."""
        rows = self.rows.copy()
        rows[:, 0] += samples * rows[:, 1]
        return Plan(
            self.groups, self.pair_m1, self.pair_m2, rows, self.nz_pair, self.nz_coef, self.buf_size, self.flops
        )


@functools.lru_cache(maxsize=4096)
def _group_terms(l1: int, l2: int, lams: tuple[int, ...]):
    """Products ``(m1, m2)`` needed for ``lams`` and, per output row ``(lam, mu)``, their nonzeros.

    Returns read-only arrays ``pair_m1, pair_m2`` (n_pairs,), ``row_ptr`` (n_rows + 1,),
    ``nz_pair`` (nnz,) (index into the pairs), ``nz_coef`` (nnz,), ``row_lam`` (position of the
    row's ``lam`` in ``lams``) and ``row_mu`` (n_rows,); rows are ordered by ``lam`` then ``mu``.
    """
    used: dict[tuple[int, int], int] = {}
    row_ptr = [0]
    nz_pair, nz_coef, row_lam, row_mu = [], [], [], []
    for i, lam in enumerate(lams):
        m1, m2, mu, coef = cg_terms(l1, l2, lam)
        for m in range(2 * lam + 1):
            for k in np.nonzero(mu == m)[0]:
                key = (int(m1[k]), int(m2[k]))
                if key not in used:
                    used[key] = len(used)
                nz_pair.append(used[key])
                nz_coef.append(float(coef[k]))
            row_ptr.append(len(nz_pair))
            row_lam.append(i)
            row_mu.append(m)
    pairs = sorted(used, key=used.get)
    out = (
        np.array([p[0] for p in pairs], dtype=np.int32),
        np.array([p[1] for p in pairs], dtype=np.int32),
        np.array(row_ptr, dtype=np.int64),
        np.array(nz_pair, dtype=np.int32),
        np.array(nz_coef, dtype=np.float64),
        np.array(row_lam, dtype=np.int64),
        np.array(row_mu, dtype=np.int64),
    )
    for x in out:
        x.flags.writeable = False
    return out


class PlanBuilder:
    """Collect products of flat-buffer blocks into a :class:`Plan`.

    Each :meth:`add` call is one *group*: a block ``A`` of order ``l1`` in the left buffer
    (component ``m`` of sample ``i`` at ``a_base + i * a_sstride + m * a_mstride``, ``a_p``
    properties; ``a_mstride`` defaults to ``a_p``), a block ``B`` of order ``l2`` in the
    right buffer, and the outputs ``(lam, o_base, o_sstride, o_mstride, o_off)``: the
    ``Pa * Pb`` products of ``lam`` go to
    ``out[o_base + s * o_sstride + mu * o_mstride + o_off + p * Pb + q]``.
    """

    def __init__(self) -> None:
        self._groups: list[list[int]] = []
        self._pair_m1: list[np.ndarray] = []
        self._pair_m2: list[np.ndarray] = []
        self._rows: list[np.ndarray] = []
        self._nz_pair: list[np.ndarray] = []
        self._nz_coef: list[np.ndarray] = []
        self._n_pairs = 0
        self._n_rows = 0
        self._nnz = 0
        self._buf = 1
        self._flops = 0

    def add(
        self,
        *,
        l1: int,
        a_base: int,
        a_sstride: int,
        a_p: int,
        l2: int,
        b_base: int,
        b_sstride: int,
        b_p: int,
        outputs: Sequence[tuple[int, int, int, int, int]],
        a_mstride: int | None = None,
        b_mstride: int | None = None,
    ) -> None:
        from .kernels.cg_cpu import tile_p

        if not outputs or a_p == 0 or b_p == 0:
            return
        lams = tuple(int(o[0]) for o in outputs)
        pm1, pm2, row_ptr, nz_pair, nz_coef, row_lam, row_mu = _group_terms(int(l1), int(l2), lams)
        o = np.array([o[1:] for o in outputs], dtype=np.int64)  # o_base, o_sstride, o_mstride, o_off
        g = len(self._groups)
        n_rows = row_lam.shape[0]
        rows = np.empty((n_rows, 5), dtype=np.int64)
        rows[:, 0] = o[row_lam, 0] + row_mu * o[row_lam, 2] + o[row_lam, 3]
        rows[:, 1] = o[row_lam, 1]
        rows[:, 2] = self._nnz + row_ptr[:-1]
        rows[:, 3] = self._nnz + row_ptr[1:]
        rows[:, 4] = g
        self._rows.append(rows)
        self._nz_pair.append(nz_pair)
        self._nz_coef.append(nz_coef)
        self._nnz += nz_pair.shape[0]
        tp = tile_p(len(pm1), a_p, b_p)
        rows_needed = max(len(pm1), int(pm1.max()) + 1, int(pm2.max()) + 1)
        self._buf = max(self._buf, rows_needed * tp * b_p)
        self._flops += nz_pair.shape[0] * a_p * b_p + len(pm1) * a_p * b_p // 2
        self._pair_m1.append(pm1)
        self._pair_m2.append(pm2)
        pair_start = self._n_pairs
        self._n_pairs += len(pm1)
        self._groups.append(
            [
                a_base,
                a_sstride,
                a_p if a_mstride is None else a_mstride,
                a_p,
                b_base,
                b_sstride,
                b_p if b_mstride is None else b_mstride,
                b_p,
                pair_start,
                self._n_pairs,
                self._n_rows,
                self._n_rows + n_rows,
                tp,
            ]
        )
        self._n_rows += n_rows

    def build(self) -> Plan:
        """Freeze the collected groups into kernel arrays."""

        def cat(parts, dtype, width=None):
            if parts:
                return np.ascontiguousarray(np.concatenate(parts), dtype=dtype)
            return np.zeros((0, width) if width else 0, dtype=dtype)

        return Plan(
            groups=np.array(self._groups, dtype=np.int64).reshape(-1, 13),
            pair_m1=cat(self._pair_m1, np.int32),
            pair_m2=cat(self._pair_m2, np.int32),
            rows=cat(self._rows, np.int64, 5),
            nz_pair=cat(self._nz_pair, np.int32),
            nz_coef=cat(self._nz_coef, np.float64),
            buf_size=int(self._buf),
            flops=int(self._flops),
        )


def check_plan_bounds(plan: Plan, a_size: int, b_size: int, out_size: int, idx_a, idx_b) -> None:
    """Raise ``ValueError`` if ``plan`` would read or write outside its flat buffers.

    The kernels do no bounds checking (Numba's default), so this is checked once per call in
    Python, on the plan tables (cheap), before any compiled code runs.
    """
    n = idx_a.shape[0]
    if idx_b.shape[0] != n:
        raise ValueError(f"`idx_a` and `idx_b` must have the same length, got {n} and {idx_b.shape[0]}")
    g = plan.groups
    rows = plan.rows
    width = (g[:, 3] * g[:, 7])[rows[:, 4]]
    last_out = rows[:, 0] + (n - 1) * rows[:, 1] + width
    if rows[:, 0].min() < 0 or last_out.max() > out_size:
        raise ValueError(f"plan writes up to entry {int(last_out.max())} of an output of size {out_size}")
    ia = int(idx_a.max()) if n else 0
    ib = int(idx_b.max()) if n else 0
    # groups always own at least one (m1, m2) pair (PlanBuilder skips empty ones)
    m1 = np.maximum.reduceat(plan.pair_m1, g[:, 8]).astype(np.int64)
    m2 = np.maximum.reduceat(plan.pair_m2, g[:, 8]).astype(np.int64)
    last_a = g[:, 0] + max(ia, 0) * g[:, 1] + m1 * g[:, 2] + g[:, 3]
    last_b = g[:, 4] + max(ib, 0) * g[:, 5] + m2 * g[:, 6] + g[:, 7]
    if g[:, 0].min() < 0 or last_a.max() > a_size or g[:, 4].min() < 0 or last_b.max() > b_size:
        raise ValueError(
            f"plan reads beyond its inputs (left up to {int(last_a.max())} of {a_size}, right up to "
            f"{int(last_b.max())} of {b_size}): sample indices or block offsets out of range"
        )


def run_plan(
    plan: Plan,
    a: np.ndarray,
    b: np.ndarray,
    idx_a: np.ndarray,
    idx_b: np.ndarray,
    out,
    backend: str = "cpu",
):
    """Run ``plan`` on flat buffers (``a``, ``b``, ``out`` 1-D float64; ``out`` may be a device array)."""
    from .kernels import get_backend

    if plan.rows.shape[0] == 0 or idx_a.shape[0] == 0:
        return out
    check_plan_bounds(plan, a.shape[0], b.shape[0], out.shape[0], idx_a, idx_b)
    get_backend(backend).outer_product_plan(
        a,
        b,
        idx_a,
        idx_b,
        plan.groups,
        plan.pair_m1,
        plan.pair_m2,
        plan.rows,
        plan.nz_pair,
        plan.nz_coef,
        plan.buf_size,
        out,
    )
    return out


def run_plan_blocks(
    plan: Plan,
    a: np.ndarray,
    b: np.ndarray,
    idx_a: np.ndarray,
    idx_b: np.ndarray,
    block_start: np.ndarray,
    block_size: np.ndarray,
    out_base: np.ndarray,
    sample0: int,
    out: np.ndarray,
):
    """Run a one-sample ``plan`` on every sample into block-major ``out`` (CPU only).

    ``plan`` writes one sample whose output is its blocks side by side (block ``k`` at
    ``block_start[k]``, ``block_size[k]`` floats); sample ``s`` of block ``k`` goes to
    ``out[out_base[k] + (sample0 + s) * block_size[k]]`` onwards.  See
    :func:`ncsym.kernels.cg_cpu.outer_product_plan_blocks`.
    """
    from .kernels.cg_cpu import outer_product_plan_blocks

    n = idx_a.shape[0]
    if plan.rows.shape[0] == 0 or n == 0:
        return out
    block_start = np.ascontiguousarray(block_start, dtype=np.int64)
    block_size = np.ascontiguousarray(block_size, dtype=np.int64)
    out_base = np.ascontiguousarray(out_base, dtype=np.int64)
    per_sample = int((block_start + block_size).max())
    if np.any(block_start[1:] != block_start[:-1] + block_size[:-1]) or block_start[0] != 0:
        raise ValueError("`block_start` and `block_size` must tile one sample's output from 0")
    # bounds of one sample's scratch: the same rows with no per-sample stride
    unstrided = plan.rows.copy()
    unstrided[:, 1] = 0
    check_plan_bounds(dataclasses.replace(plan, rows=unstrided), a.shape[0], b.shape[0], per_sample, idx_a, idx_b)
    if out.dtype != np.float64 or out.ndim != 1 or not out.flags.c_contiguous or not out.flags.writeable:
        raise ValueError("`out` must be a writeable, C-contiguous 1-D float64 array (written by address)")
    last = out_base + (int(sample0) + n) * block_size
    if sample0 < 0 or out_base.min() < 0 or last.max() > out.shape[0]:
        raise ValueError(f"blocks reach entry {int(last.max())} of an output of size {out.shape[0]}")
    import numba

    from .kernels.simd import STREAM_MIN_BYTES

    chunk = max(1, min(64, n // (4 * numba.get_num_threads())))
    outer_product_plan_blocks(
        a, b, idx_a, idx_b, plan.groups, plan.pair_m1, plan.pair_m2, plan.rows, plan.nz_pair, plan.nz_coef,
        plan.buf_size, block_start, block_size, out_base, int(sample0), chunk, out,
        out.nbytes >= STREAM_MIN_BYTES,
    )
    return out


# ---------------------------------------------------------------------------- labels helpers


def suffixed_name(name: str, suffix: int | None) -> str:
    """``n`` -> ``n_1``, ``neighbor_type`` -> ``neighbor_1_type`` (``suffix=None``: unchanged)."""
    if suffix is None:
        return name
    if name.endswith("_type"):
        return f"{name[: -len('_type')]}_{suffix}_type"
    return f"{name}_{suffix}"


def _rows_as_keys(values: np.ndarray) -> np.ndarray:
    """A 1-D array of hashable row identifiers (void view) of an int array."""
    values = np.ascontiguousarray(values, dtype=np.int64)
    if values.ndim != 2:
        values = values.reshape(values.shape[0], -1)
    return values.view(np.dtype((np.void, values.dtype.itemsize * values.shape[1]))).ravel()


def match_rows(reference: np.ndarray, query: np.ndarray) -> np.ndarray:
    """Row of ``reference`` equal to each row of ``query`` (``-1`` when absent).

    Parameters
    ----------
    reference : int array (n_ref, k), rows unique
    query : int array (n_query, k)

    Returns
    -------
    ndarray of int64, shape (n_query,)
    """
    if reference.shape[0] == 0 or query.shape[0] == 0:
        return np.full(query.shape[0], -1, dtype=np.int64)
    ref = _rows_as_keys(reference)
    qry = _rows_as_keys(query)
    order = np.argsort(ref, kind="stable")
    pos = np.searchsorted(ref[order], qry)
    pos = np.minimum(pos, len(ref) - 1)
    found = ref[order][pos] == qry
    return np.where(found, order[pos], -1).astype(np.int64)


def _unique_rows_first_order(values: np.ndarray) -> np.ndarray:
    keys = _rows_as_keys(values)
    _, first = np.unique(keys, return_index=True)
    return values[np.sort(first)]


def _normalise_selection(selected_keys) -> Labels | None:
    if selected_keys is None:
        return None
    if isinstance(selected_keys, Labels):
        return selected_keys
    try:
        entries = [tuple(int(v) for v in e) for e in selected_keys]
    except TypeError:
        raise TypeError(
            "`selected_keys` must be ncsym.Labels or a sequence of (o3_lambda, o3_sigma) pairs, "
            f"got {selected_keys!r}"
        ) from None
    if any(len(e) != 2 for e in entries):
        raise ValueError(f"`selected_keys` entries must be (o3_lambda, o3_sigma) pairs, got {entries}")
    return Labels(("o3_lambda", "o3_sigma"), np.array(entries, dtype=np.int32).reshape(-1, 2))


def check_selection(selected: Labels | None, names: Sequence[str], max_lambda: int) -> None:
    """Validate a key selection against output key names and the largest reachable lambda."""
    if selected is None:
        return
    for name in selected.names:
        if name not in names:
            raise ValueError(f"`selected_keys` has dimension `{name}`, output keys are {tuple(names)}")
    if "o3_lambda" in selected.names:
        lams = selected.column("o3_lambda")
        if len(lams) and (lams.min() < 0 or lams.max() > max_lambda):
            raise ValueError(
                f"`selected_keys` asks for o3_lambda={int(lams.max()) if lams.max() > max_lambda else int(lams.min())}, "
                f"outside the reachable range 0..{max_lambda}: lower it or raise `max_lambda`/`max_angular`"
            )
    if "o3_sigma" in selected.names:
        sig = selected.column("o3_sigma")
        if len(sig) and not np.all(np.isin(sig, (-1, 1))):
            raise ValueError(f"`selected_keys` o3_sigma values must be -1 or 1, got {sorted(set(sig.tolist()))}")


def selection_mask(selected: Labels | None, names: Sequence[str], values: np.ndarray) -> np.ndarray:
    """Rows of ``values`` (keys with ``names``) matching at least one entry of ``selected``."""
    if selected is None:
        return np.ones(values.shape[0], dtype=bool)
    cols = [list(names).index(n) for n in selected.names]
    mask = np.zeros(values.shape[0], dtype=bool)
    for entry in selected.values:
        mask |= np.all(values[:, cols] == entry[None, :], axis=1)
    return mask


# ---------------------------------------------------------------------------- CGProduct


class CGProduct:
    """Block-wise CG tensor product of two :class:`ncsym.BlockMap`.

    Every pair of blocks ``(l1, sigma1)`` x ``(l2, sigma2)`` that agrees on the key dimensions
    both maps share (other than ``o3_lambda``, ``o3_sigma``) is coupled to every
    ``lam = |l1 - l2| .. min(l1 + l2, max_lambda)``, with parity
    ``sigma = sigma1 sigma2 (-1)^(l1 + l2 + lam)``.  Key dimensions present in only one map
    are kept (full product).  Contributions of different ``(l1, l2)`` to the same output key
    are concatenated along properties, labelled by ``l_1, l_2`` and the inputs' property
    names with suffixes (``n`` -> ``n_1`` / ``n_2``, ``neighbor_type`` -> ``neighbor_1_type``).

    Parameters
    ----------
    max_angular : int
        Largest input order ``l1, l2`` (CG tables are built for it once).
    max_lambda : int, optional
        Largest output order (default ``2 max_angular``).
    selected_keys : ncsym.Labels or sequence of (o3_lambda, o3_sigma), optional
        Output keys to compute (entries may use any subset of the output key names).
    skip_redundant : bool
        Keep only ``l1 <= l2`` (for self-products ``a x a``, where ``l1 > l2`` repeats
        ``l1 < l2`` up to a sign).  Default False.
    channelwise : bool
        Multiply matching properties only (inputs must have equal properties); output
        properties are ``l_1, l_2`` and the input property names.
    lambda_names : (str, str)
        Property names recording ``l1`` and ``l2`` (default ``("l_1", "l_2")``).
    property_suffixes : (int or None, int or None)
        Suffixes added to the property names of the first and second input (default
        ``(1, 2)``; ``None`` keeps names, e.g. when chaining products).
    match_keys : sequence of str, optional
        Key dimensions (other than ``o3_lambda``, ``o3_sigma``) on which blocks are paired.
        Default: every dimension both inputs have (featomic's rule).  Dimensions both have but
        not listed here are fully combined and renamed with the suffixes
        (``neighbor_type`` -> ``neighbor_1_type``, ``neighbor_2_type``), as featomic's
        power spectrum does.
    backend : {"cpu", "cuda"}
        Kernel backend.

    Examples
    --------
    >>> import ncsym
    >>> product = ncsym.CGProduct(max_angular=2, max_lambda=2)
    >>> # out = product.compute(density, density)
    """

    def __init__(
        self,
        *,
        max_angular: int,
        max_lambda: int | None = None,
        selected_keys=None,
        skip_redundant: bool = False,
        channelwise: bool = False,
        lambda_names: tuple[str, str] = ("l_1", "l_2"),
        property_suffixes: tuple[int | None, int | None] = (1, 2),
        match_keys: Sequence[str] | None = None,
        backend: str = "cpu",
    ) -> None:
        from .kernels import check_backend

        self.max_angular = check_angular(max_angular, "max_angular")
        if max_lambda is None:
            max_lambda = 2 * self.max_angular
        self.max_lambda = check_int(max_lambda, "max_lambda", minimum=0, maximum=2 * self.max_angular)
        self.selected_keys = _normalise_selection(selected_keys)
        check_selection(
            self.selected_keys,
            self.selected_keys.names if self.selected_keys is not None else (),
            self.max_lambda,
        )
        self.skip_redundant = bool(skip_redundant)
        self.channelwise = bool(channelwise)
        if len(lambda_names) != 2 or len(set(lambda_names)) != 2:
            raise ValueError(f"`lambda_names` must be two different names, got {lambda_names}")
        self.lambda_names = tuple(str(n) for n in lambda_names)
        if len(property_suffixes) != 2:
            raise ValueError(f"`property_suffixes` must have two entries, got {property_suffixes}")
        self.property_suffixes = tuple(property_suffixes)
        self.match_keys = None if match_keys is None else [str(n) for n in match_keys]
        self.backend = check_backend(backend)
        # build the CG tables once (memory and disk cache)
        from .cg import cg_tables

        self._tables = cg_tables(self.max_angular, self.max_lambda)

    # ------------------------------------------------------------------ public
    def compute(self, a: BlockMap, b: BlockMap, *, selected_keys=None, sample_match=None) -> BlockMap:
        """CG product of ``a`` and ``b``.

        Parameters
        ----------
        a, b : ncsym.BlockMap
            Keys with ``o3_lambda`` and ``o3_sigma``; blocks ``(n_samples, 2 l + 1, n_props)``.
        selected_keys : optional
            Overrides the constructor's selection for this call.
        sample_match : dict, optional
            Sample dimensions of ``a`` renamed before matching, e.g. ``{"atom": "first_atom"}``
            to pair centre features with pair features.  Samples are matched on the names
            both inputs share; the output samples are those of the input with more sample
            dimensions (``a`` when equal) that have a partner in the other (the union when
            both have the same dimensions; a missing partner contributes zero).

        Returns
        -------
        ncsym.BlockMap
            Keys ``(o3_lambda, o3_sigma, *matched, *others_a, *others_b)``; properties
            ``(l_1, l_2, *props_a_1, *props_b_2)``.
        """
        return self._compute(a, b, selected_keys, sample_match, metadata_only=False)

    def compute_metadata(self, a: BlockMap, b: BlockMap, *, selected_keys=None, sample_match=None) -> BlockMap:
        """Keys, samples and properties of :meth:`compute`, without computing values.

        Block values are read-only zero arrays of the right shape that take no memory.
        """
        return self._compute(a, b, selected_keys, sample_match, metadata_only=True)

    # ------------------------------------------------------------------ internals
    def _check_maps(self, a, b):
        for name, tensor in (("a", a), ("b", b)):
            if not isinstance(tensor, BlockMap):
                raise TypeError(f"`{name}` must be an ncsym.BlockMap, got {type(tensor).__name__}")
            for dim in ("o3_lambda", "o3_sigma"):
                if dim not in tensor.keys.names:
                    raise ValueError(f"`{name}` keys must have a `{dim}` dimension, got {tensor.keys.names}")
            if len(tensor):
                lmax = int(tensor.keys.column("o3_lambda").max())
                if lmax > self.max_angular:
                    raise ValueError(
                        f"`{name}` has blocks with o3_lambda={lmax} but this CGProduct was built for "
                        f"max_angular={self.max_angular}: construct it with max_angular >= {lmax}"
                    )
            for i, blk in enumerate(tensor.blocks):
                lam = int(tensor.keys.column("o3_lambda")[i])
                if blk.values.shape[1] != 2 * lam + 1:
                    raise ValueError(
                        f"block {tensor.keys.as_dict(i)} of `{name}` has {blk.values.shape[1]} components, "
                        f"expected 2 * o3_lambda + 1 = {2 * lam + 1}"
                    )
        info_a = a.info.get("hypers") if isinstance(a.info, dict) else None
        info_b = b.info.get("hypers") if isinstance(b.info, dict) else None
        if isinstance(info_a, dict) and isinstance(info_b, dict):
            species_a, species_b = a.info.get("species"), b.info.get("species")
            if species_a is not None and species_b is not None and list(species_a) != list(species_b):
                raise ValueError(
                    f"`a` and `b` were computed with different species lists {list(species_a)} and "
                    f"{list(species_b)}: pass the same `species=` to both expansions"
                )

    def _prop_names(self, a: BlockMap, b: BlockMap):
        pa = a.blocks[0].properties.names if len(a) else ()
        pb = b.blocks[0].properties.names if len(b) else ()
        if self.channelwise:
            names = self.lambda_names + tuple(pa)
        else:
            s1, s2 = self.property_suffixes
            names = (
                self.lambda_names
                + tuple(suffixed_name(n, s1) for n in pa)
                + tuple(suffixed_name(n, s2) for n in pb)
            )
        if len(set(names)) != len(names):
            raise ValueError(
                f"output property names {names} are not unique: rename the inputs' properties or pass "
                "other `property_suffixes`/`lambda_names`"
            )
        return names

    def _compute(self, a, b, selected_keys, sample_match, metadata_only):
        from .kernels import get_backend

        self._check_maps(a, b)
        selection = self.selected_keys if selected_keys is None else _normalise_selection(selected_keys)

        cg_names = ("o3_lambda", "o3_sigma")
        both = [n for n in a.keys.names if n not in cg_names and n in b.keys.names]
        if self.match_keys is None:
            shared = both
        else:
            missing = [n for n in self.match_keys if n not in both]
            if missing:
                raise ValueError(
                    f"`match_keys` {missing} must be key dimensions of both inputs, got "
                    f"{a.keys.names} and {b.keys.names}"
                )
            shared = list(self.match_keys)
        only_a = [n for n in a.keys.names if n not in cg_names and n not in shared]
        only_b = [n for n in b.keys.names if n not in cg_names and n not in shared]
        # key dimensions of both inputs that are not matched get the suffixes (1, 2 by default)
        s1 = 1 if self.property_suffixes[0] is None else self.property_suffixes[0]
        s2 = 2 if self.property_suffixes[1] is None else self.property_suffixes[1]
        names_a = [suffixed_name(n, s1) if n in both else n for n in only_a]
        names_b = [suffixed_name(n, s2) if n in both else n for n in only_b]
        out_names = list(cg_names) + shared + names_a + names_b
        if len(set(out_names)) != len(out_names):
            raise ValueError(f"output key names {out_names} are not unique: rename the inputs' keys")
        check_selection(selection, out_names, self.max_lambda)
        prop_names = self._prop_names(a, b)

        # enumerate contributions: group key (shared, only_a, only_b) -> list of (ia, ib, lam, sigma)
        contributions: dict[tuple, list] = {}
        group_order: list[tuple] = []
        for ia in range(len(a)):
            ka = a.keys.as_dict(ia)
            for ib in range(len(b)):
                kb = b.keys.as_dict(ib)
                if any(ka[n] != kb[n] for n in shared):
                    continue
                l1, l2 = ka["o3_lambda"], kb["o3_lambda"]
                if self.skip_redundant and l1 > l2:
                    continue
                gkey = tuple(ka[n] for n in shared) + tuple(ka[n] for n in only_a) + tuple(kb[n] for n in only_b)
                for lam in range(abs(l1 - l2), min(l1 + l2, self.max_lambda) + 1):
                    sigma = product_parity(ka["o3_sigma"], kb["o3_sigma"], l1, l2, lam)
                    key = np.array([[lam, sigma, *gkey]])
                    if not selection_mask(selection, out_names, key)[0]:
                        continue
                    if gkey not in contributions:
                        contributions[gkey] = []
                        group_order.append(gkey)
                    contributions[gkey].append((ia, ib, lam, sigma))

        out_keys: list[list[int]] = []
        out_blocks: list[Block] = []
        kernels = None if metadata_only else get_backend(self.backend)
        for gkey in group_order:
            contribs = contributions[gkey]
            pairs = list(dict.fromkeys((ia, ib) for ia, ib, _, _ in contribs))
            matched = {p: self._match_samples(a.blocks[p[0]], b.blocks[p[1]], sample_match) for p in pairs}
            samples = self._group_samples([matched[p][0] for p in pairs])
            n = len(samples)
            # output blocks of this group: (lam, sigma) -> property segments
            layout: dict[tuple[int, int], list] = {}
            for ia, ib, lam, sigma in contribs:
                layout.setdefault((lam, sigma), []).append((ia, ib))
            lam_sigma = sorted(layout, key=lambda k: (k[0], -k[1]))
            # property offsets and labels
            block_info = []
            total = 0
            for lam, sigma in lam_sigma:
                segs = []
                width = 0
                labels = []
                for ia, ib in layout[(lam, sigma)]:
                    ba, bb = a.blocks[ia], b.blocks[ib]
                    l1, l2 = int(a.keys.column("o3_lambda")[ia]), int(b.keys.column("o3_lambda")[ib])
                    if self.channelwise:
                        if ba.properties != bb.properties:
                            raise ValueError(
                                "channel-wise products need identical properties in both inputs, got "
                                f"{ba.properties.names} ({len(ba.properties)}) and "
                                f"{bb.properties.names} ({len(bb.properties)})"
                            )
                        w = len(ba.properties)
                        lab = np.hstack(
                            [np.tile([[l1, l2]], (w, 1)), ba.properties.values.astype(np.int64)]
                        )
                    else:
                        pa_, pb_ = len(ba.properties), len(bb.properties)
                        w = pa_ * pb_
                        lab = np.hstack(
                            [
                                np.tile([[l1, l2]], (w, 1)),
                                np.repeat(ba.properties.values, pb_, axis=0),
                                np.tile(bb.properties.values, (pa_, 1)),
                            ]
                        )
                    segs.append((ia, ib, l1, l2, width, w))
                    labels.append(lab)
                    width += w
                size = n * (2 * lam + 1) * width
                block_info.append((lam, sigma, segs, width, total, np.vstack(labels)))
                total += size
            if metadata_only:
                buffer = None
            else:
                buffer = np.empty(total)
                # one fused call per pair of blocks: every lam it feeds, into its property slice
                for ia, ib in pairs:
                    _, idx_a, idx_b = matched[(ia, ib)]
                    rows_a, rows_b = self._remap(samples, matched[(ia, ib)][0], idx_a, idx_b)
                    outputs = []
                    for lam, _sigma, segs, width, base, _ in block_info:
                        for sa, sb, l1, l2, off, _w in segs:
                            if (sa, sb) == (ia, ib):
                                outputs.append((lam, base, (2 * lam + 1) * width, width, off, l1, l2))
                    self._run_pair(kernels, a.blocks[ia], b.blocks[ib], rows_a, rows_b, outputs, buffer)
                # blocks of contributions without any samples are still zero-filled by the kernel
            for lam, sigma, _segs, width, base, labels in block_info:
                shape = (n, 2 * lam + 1, width)
                if metadata_only:
                    values = np.broadcast_to(np.zeros((), dtype=np.float64), shape)
                else:
                    values = buffer[base : base + n * (2 * lam + 1) * width].reshape(shape)
                props = Labels(prop_names, labels.astype(np.int32))
                out_blocks.append(Block(values, samples, props))
                out_keys.append([lam, sigma, *gkey])
        keys = Labels(tuple(out_names), np.array(out_keys, dtype=np.int32).reshape(-1, len(out_names)))
        info = {k: v for k, v in a.info.items()} if isinstance(a.info, dict) else {}
        return BlockMap(keys, out_blocks, info)

    def _run_pair(self, kernels, ba: Block, bb: Block, rows_a, rows_b, outputs, buffer):
        """Products of one pair of blocks into every ``(lam, property slice)`` of ``outputs``."""
        va = np.ascontiguousarray(ba.values, dtype=np.float64)
        vb = np.ascontiguousarray(bb.values, dtype=np.float64)
        if self.channelwise:
            # channel-wise products: one generic kernel call per lam into a temporary
            for lam, base, sstride, width, off, l1, l2 in outputs:
                m1, m2, mu, coef = cg_terms(l1, l2, lam)
                n = rows_a.shape[0]
                tmp = np.zeros((n, 2 * lam + 1, va.shape[2]))
                valid = (rows_a >= 0) & (rows_b >= 0)
                ra = np.where(valid, rows_a, 0)
                rb = np.where(valid, rows_b, 0)
                kernels.channelwise_product(va, vb, ra, rb, m1, m2, mu, coef, tmp)
                tmp[~valid] = 0.0
                view = buffer[base : base + n * sstride].reshape(n, 2 * lam + 1, width)
                view[:, :, off : off + va.shape[2]] = tmp
            return
        builder = PlanBuilder()
        l1, l2 = outputs[0][5], outputs[0][6]
        builder.add(
            l1=l1,
            a_base=0,
            a_sstride=va.shape[1] * va.shape[2],
            a_p=va.shape[2],
            l2=l2,
            b_base=0,
            b_sstride=vb.shape[1] * vb.shape[2],
            b_p=vb.shape[2],
            outputs=[(lam, base, sstride, width, off) for lam, base, sstride, width, off, _, _ in outputs],
        )
        run_plan(builder.build(), va.reshape(-1), vb.reshape(-1), rows_a, rows_b, buffer, self.backend)

    @staticmethod
    def _match_samples(ba: Block, bb: Block, sample_match):
        """Output samples of one pair of blocks and the rows of ``a`` and ``b`` they use."""
        names_a = list(ba.samples.names)
        if sample_match:
            for old, new in dict(sample_match).items():
                if old not in names_a:
                    raise ValueError(f"`sample_match` renames `{old}`, not a sample dimension of `a` {names_a}")
                names_a[names_a.index(old)] = new
        names_b = list(bb.samples.names)
        va, vb = np.asarray(ba.samples.values), np.asarray(bb.samples.values)
        if names_a == names_b:
            if np.array_equal(va, vb):
                idx = np.arange(len(va), dtype=np.int64)
                return Labels(tuple(names_b), vb), idx, idx
            union = _unique_rows_first_order(np.vstack([va, vb])) if len(va) + len(vb) else va
            return Labels(tuple(names_b), union), match_rows(va, union), match_rows(vb, union)
        if len(names_a) <= len(names_b):
            coarse, fine, coarse_vals, fine_vals, a_is_coarse = names_a, names_b, va, vb, True
        else:
            coarse, fine, coarse_vals, fine_vals, a_is_coarse = names_b, names_a, vb, va, False
        missing = [n for n in coarse if n not in fine]
        if missing:
            raise ValueError(
                f"cannot match samples {tuple(names_a)} with {tuple(names_b)}: dimensions {missing} are "
                "missing from the other input (use `sample_match` to rename, e.g. {'atom': 'first_atom'})"
            )
        cols = [fine.index(n) for n in coarse]
        found = match_rows(coarse_vals, fine_vals[:, cols])
        keep = np.nonzero(found >= 0)[0]
        fine_idx = keep.astype(np.int64)
        coarse_idx = found[keep]
        samples = Labels(tuple(fine), fine_vals[keep])
        if a_is_coarse:
            return samples, coarse_idx, fine_idx
        return samples, fine_idx, coarse_idx

    @staticmethod
    def _group_samples(sample_sets: Iterable[Labels]) -> Labels:
        sets = list(sample_sets)
        first = sets[0]
        if all(s == first for s in sets[1:]):
            return first
        names = first.names
        for s in sets[1:]:
            if s.names != names:
                raise ValueError(f"blocks of one output key have samples {names} and {s.names}")
        return Labels(names, _unique_rows_first_order(np.vstack([s.values for s in sets])))

    @staticmethod
    def _remap(samples: Labels, pair_samples: Labels, idx_a, idx_b):
        if pair_samples is samples or pair_samples == samples:
            return idx_a, idx_b
        where = match_rows(pair_samples.values, samples.values)
        rows_a = np.where(where >= 0, idx_a[np.maximum(where, 0)], -1).astype(np.int64)
        rows_b = np.where(where >= 0, idx_b[np.maximum(where, 0)], -1).astype(np.int64)
        return rows_a, rows_b

