"""Exact real-basis Clebsch-Gordan (CG) coupling tables.

The coefficients are computed exactly (each is ``±sqrt(rational)``) by the integer Racah
formula in :mod:`ncsym._exact_cg`, converted once to float64, and served as sparse tables:

* :func:`clebsch_gordan` returns one ``sparse.COO`` table ``cg[m1, m2, mu]`` of shape
  ``(2 l1 + 1, 2 l2 + 1, 2 lam + 1)``;
* :func:`cg_tables` returns every table with ``l1, l2 <= lmax`` and ``lam <= max_lambda``
  as flat COO arrays (:class:`CGTables`) ready for kernels, cached in memory and on disk.

Convention (DESIGN.md; featomic's *effective* table).  Coupling two real spherical tensors
``a`` (order ``l1``) and ``b`` (order ``l2``) into order ``lam`` is

    out[mu] = sum_{m1, m2} cg[m1, m2, mu] a[m1] b[m2],

with ``cg = (-1)^(l1 + l2 + lam) raw`` and ``raw`` the real (``l1 + l2 + lam`` even) or
imaginary (odd) part of ``U_lam C U_l1^* U_l2^*`` (``C`` complex Condon-Shortley CG, ``U``
the complex-to-real matrices of :mod:`ncsym.conventions`).  Checks: ``(1, 1) -> 1`` gives
``-(a x b) / sqrt(2)`` in ``(y, z, x)`` order and ``(l, l) -> 0`` gives
``(-1)^l (a . b) / sqrt(2 l + 1)``.  The product of blocks ``(l1, sigma1)`` and
``(l2, sigma2)`` has parity ``sigma1 sigma2 (-1)^(l1 + l2 + lam)``.

Notes
-----
Selection rules: a table is non-zero only if ``|l1 - l2| <= lam <= l1 + l2``; within it,
``cg[m1, m2, mu]`` vanishes unless ``|mu| = |m1| + |m2|`` or ``|mu| = ||m1| - |m2||``.
Symmetries: swapping the two inputs gives ``cg_{l2 l1 lam}[m2, m1, mu] =
(-1)^(l1 + l2 + lam) cg_{l1 l2 lam}[m1, m2, mu]``; the table is orthogonal,
``sum_{m1 m2} cg[m1, m2, mu] cg[m1, m2, mu'] = delta(mu, mu')`` and
``sum_{lam, mu} cg[m1, m2, mu] cg[m1', m2', mu] = delta(m1, m1') delta(m2, m2')``.
The largest supported order is :data:`ncsym.conventions.MAX_ANGULAR`.

References
----------
A. R. Edmonds, *Angular Momentum in Quantum Mechanics* (1974), eq. (3.6.11) (Racah).
"""

from __future__ import annotations

import functools
import threading
import warnings
from dataclasses import dataclass

import numpy as np

from . import _cache
from ._checks import check_angular, check_int
from ._exact_cg import exact_to_float, exact_to_sympy, real_cg_exact
from .conventions import CONVENTION_TAG, MAX_ANGULAR

__all__ = ["clebsch_gordan", "cg_tables", "CGTables", "clear_memory_cache"]

_FLOAT_NAMES = ["lmax", "max_lambda", "triples", "offsets", "m1", "m2", "mu", "coef"]
_EXACT_NAMES = ["exact_sign", "exact_p", "exact_q"]


def _check_triple(l1, l2, lam) -> tuple[int, int, int]:
    l1 = check_angular(l1, "l1")
    l2 = check_angular(l2, "l2")
    lam = check_int(lam, "lam", minimum=0, maximum=2 * MAX_ANGULAR)
    if not abs(l1 - l2) <= lam <= l1 + l2:
        raise ValueError(
            f"(l1, l2, lam) = ({l1}, {l2}, {lam}) violates the triangle rule |l1 - l2| <= lam <= l1 + l2"
        )
    return l1, l2, lam


@functools.lru_cache(maxsize=4096)
def _triple_exact(l1: int, l2: int, lam: int) -> tuple[np.ndarray, ...]:
    """Sorted COO arrays ``(m1, m2, mu, coef, sign, p, q)`` for one triple (read-only)."""
    exact = real_cg_exact(l1, l2, lam)
    keys = sorted(exact)
    m1 = np.array([k[0] for k in keys], dtype=np.int32)
    m2 = np.array([k[1] for k in keys], dtype=np.int32)
    mu = np.array([k[2] for k in keys], dtype=np.int32)
    coef = np.array([exact_to_float(*exact[k]) for k in keys], dtype=np.float64)
    sign = np.array([exact[k][0] for k in keys], dtype=np.int8)
    p = np.array([str(exact[k][1]).encode() for k in keys], dtype=np.bytes_)
    q = np.array([str(exact[k][2]).encode() for k in keys], dtype=np.bytes_)
    out = (m1, m2, mu, coef, sign, p, q)
    for a in out:
        a.flags.writeable = False
    return out


def _to_coo(l1, l2, lam, m1, m2, mu, coef):
    import sparse

    return sparse.COO(
        np.stack([m1, m2, mu]).astype(np.int64),
        np.array(coef, dtype=np.float64),
        shape=(2 * l1 + 1, 2 * l2 + 1, 2 * lam + 1),
        has_duplicates=False,
        sorted=True,
    )


def clebsch_gordan(l1: int, l2: int, lam: int):
    """Real Clebsch-Gordan coupling table for one ``(l1, l2, lam)``.

    Parameters
    ----------
    l1, l2 : int
        Orders of the two inputs, ``0 <= l <= MAX_ANGULAR`` (20).
    lam : int
        Output order, ``|l1 - l2| <= lam <= l1 + l2``.

    Returns
    -------
    sparse.COO
        Shape ``(2 l1 + 1, 2 l2 + 1, 2 lam + 1)``, float64, indexed ``[m1 + l1, m2 + l2,
        mu + lam]``, such that ``out[mu] = sum cg[m1, m2, mu] a[m1] b[m2]`` (a fresh copy).

    Raises
    ------
    TypeError
        Non-integer orders.
    ValueError
        Negative or too large orders, or the triangle rule violated.

    Examples
    --------
    >>> import numpy as np, ncsym
    >>> cg = ncsym.clebsch_gordan(1, 1, 0).todense()
    >>> a, b = np.array([1.0, 2.0, 3.0]), np.array([0.5, -1.0, 2.0])
    >>> bool(np.isclose(np.einsum("abc,a,b->c", cg, a, b)[0], -(a @ b) / np.sqrt(3)))
    True
    """
    l1, l2, lam = _check_triple(l1, l2, lam)
    tables = _largest_loaded(max(l1, l2), lam)
    if tables is not None:
        return tables.get(l1, l2, lam)
    m1, m2, mu, coef, *_ = _triple_exact(l1, l2, lam)
    return _to_coo(l1, l2, lam, m1, m2, mu, coef)


def clebsch_gordan_exact(l1: int, l2: int, lam: int) -> dict:
    """Exact table as ``{(m1, m2, mu): sympy expression}`` (``m`` from ``-l`` to ``l``)."""
    l1, l2, lam = _check_triple(l1, l2, lam)
    m1, m2, mu, _, sign, p, q = _triple_exact(l1, l2, lam)
    return {
        (int(a) - l1, int(b) - l2, int(c) - lam): exact_to_sympy(int(s), int(pp), int(qq))
        for a, b, c, s, pp, qq in zip(m1, m2, mu, sign, p, q, strict=True)
    }


@dataclass(frozen=True)
class CGTables:
    """All real CG tables with ``l1, l2 <= lmax`` and ``lam <= max_lambda`` as flat COO arrays.

    Attributes
    ----------
    lmax, max_lambda : int
        Largest input and output orders.
    triples : ndarray of int32, shape (n_triples, 3)
        ``(l1, l2, lam)`` of each table, lexicographic order.
    offsets : ndarray of int64, shape (n_triples + 1,)
        Entries of table ``t`` are ``offsets[t]:offsets[t + 1]`` in the arrays below.
    m1, m2, mu : ndarray of int32, shape (nnz,)
        Component indices counted from zero (``m1 + l1``, ``m2 + l2``, ``mu + lam``).
    coef : ndarray of float64, shape (nnz,)
        Coefficients (effective sign included).
    index : ndarray of int32, shape (lmax + 1, lmax + 1, max_lambda + 1)
        ``index[l1, l2, lam]`` is the table number, or -1 when the triangle rule fails.

    All arrays are read-only.
    """

    lmax: int
    max_lambda: int
    triples: np.ndarray
    offsets: np.ndarray
    m1: np.ndarray
    m2: np.ndarray
    mu: np.ndarray
    coef: np.ndarray
    index: np.ndarray

    @property
    def nnz(self) -> int:
        """Total number of non-zero coefficients."""
        return int(self.coef.shape[0])

    def _slice(self, l1: int, l2: int, lam: int) -> slice:
        if l1 > self.lmax or l2 > self.lmax or lam > self.max_lambda:
            raise ValueError(
                f"(l1, l2, lam) = ({l1}, {l2}, {lam}) outside these tables "
                f"(lmax={self.lmax}, max_lambda={self.max_lambda})"
            )
        t = int(self.index[l1, l2, lam])
        if t < 0:
            raise ValueError(f"(l1, l2, lam) = ({l1}, {l2}, {lam}) violates the triangle rule")
        return slice(int(self.offsets[t]), int(self.offsets[t + 1]))

    def get(self, l1: int, l2: int, lam: int):
        """One table as a fresh ``sparse.COO`` (see :func:`clebsch_gordan`)."""
        s = self._slice(l1, l2, lam)
        return _to_coo(l1, l2, lam, self.m1[s], self.m2[s], self.mu[s], self.coef[s])

    def dense(self, l1: int, l2: int, lam: int) -> np.ndarray:
        """One table as a dense ``(2 l1 + 1, 2 l2 + 1, 2 lam + 1)`` array."""
        s = self._slice(l1, l2, lam)
        out = np.zeros((2 * l1 + 1, 2 * l2 + 1, 2 * lam + 1))
        out[self.m1[s], self.m2[s], self.mu[s]] = self.coef[s]
        return out


_LOCK = threading.Lock()
_MEMORY: dict[tuple[int, int], CGTables] = {}


def clear_memory_cache() -> None:
    """Forget tables held in memory (the disk cache is untouched)."""
    with _LOCK:
        _MEMORY.clear()
    _triple_exact.cache_clear()


def _largest_loaded(lmax: int, max_lambda: int) -> CGTables | None:
    with _LOCK:
        for (a, b), t in _MEMORY.items():
            if a >= lmax and b >= max_lambda:
                return t
    return None


def cache_path(lmax: int, max_lambda: int):
    """Path of the disk-cache file for ``(lmax, max_lambda)``."""
    return _cache.cache_dir() / (f"cg-v{_cache.CACHE_FORMAT_VERSION}-lmax{lmax}-lam{max_lambda}.npz")


def _build_arrays(lmax: int, max_lambda: int, progress: bool = False) -> dict[str, np.ndarray]:
    triples = [
        (l1, l2, lam)
        for l1 in range(lmax + 1)
        for l2 in range(lmax + 1)
        for lam in range(abs(l1 - l2), min(l1 + l2, max_lambda) + 1)
    ]
    iterator = triples
    if progress:
        from tqdm.auto import tqdm

        iterator = tqdm(triples, desc=f"CG tables lmax={lmax}", unit="table")
    parts = [_triple_exact(*t) for t in iterator]
    sizes = np.array([len(p[0]) for p in parts], dtype=np.int64)
    offsets = np.zeros(len(parts) + 1, dtype=np.int64)
    np.cumsum(sizes, out=offsets[1:])

    def cat(i, dtype):
        if not parts:
            return np.zeros(0, dtype=dtype)
        return np.concatenate([p[i] for p in parts]).astype(dtype, copy=False)

    arrays = {
        "lmax": np.array(lmax, dtype=np.int64),
        "max_lambda": np.array(max_lambda, dtype=np.int64),
        "triples": np.array(triples, dtype=np.int32).reshape(-1, 3),
        "offsets": offsets,
        "m1": cat(0, np.int32),
        "m2": cat(1, np.int32),
        "mu": cat(2, np.int32),
        "coef": cat(3, np.float64),
        "exact_sign": cat(4, np.int8),
        "exact_p": cat(5, np.bytes_),
        "exact_q": cat(6, np.bytes_),
    }
    return arrays


def _tables_from_arrays(arrays: dict[str, np.ndarray]) -> CGTables:
    lmax = int(arrays["lmax"])
    max_lambda = int(arrays["max_lambda"])
    triples = np.ascontiguousarray(arrays["triples"], dtype=np.int32).reshape(-1, 3)
    index = np.full((lmax + 1, lmax + 1, max_lambda + 1), -1, dtype=np.int32)
    if len(triples):
        index[triples[:, 0], triples[:, 1], triples[:, 2]] = np.arange(len(triples), dtype=np.int32)
    fields = {
        "triples": triples,
        "offsets": np.ascontiguousarray(arrays["offsets"], dtype=np.int64),
        "m1": np.ascontiguousarray(arrays["m1"], dtype=np.int32),
        "m2": np.ascontiguousarray(arrays["m2"], dtype=np.int32),
        "mu": np.ascontiguousarray(arrays["mu"], dtype=np.int32),
        "coef": np.ascontiguousarray(arrays["coef"], dtype=np.float64),
        "index": index,
    }
    for a in fields.values():
        a.flags.writeable = False
    return CGTables(lmax=lmax, max_lambda=max_lambda, **fields)


def cg_tables(
    lmax: int, max_lambda: int | None = None, *, use_disk: bool = True, progress: bool = False
) -> CGTables:
    """Every real CG table with ``l1, l2 <= lmax`` and ``lam <= max_lambda``.

    Served from memory, else from the disk cache (see :func:`ncsym._cache.cache_dir`;
    ``NCSYM_CACHE_DIR`` overrides), else built exactly and written atomically.  A corrupt,
    foreign or outdated cache file is reported with a warning and rebuilt.

    Parameters
    ----------
    lmax : int
        Largest input order, ``0 <= lmax <= MAX_ANGULAR`` (20).
    max_lambda : int, optional
        Largest output order (default ``lmax``), at most ``2 lmax``.
    use_disk : bool
        Read and write the disk cache (default True).
    progress : bool
        Show a progress bar while building.

    Returns
    -------
    CGTables
        Flat read-only COO arrays for kernels.
    """
    lmax = check_angular(lmax, "lmax")
    if max_lambda is None:
        max_lambda = lmax
    max_lambda = check_int(max_lambda, "max_lambda", minimum=0, maximum=2 * lmax)
    key = (lmax, max_lambda)
    with _LOCK:
        if key in _MEMORY:
            return _MEMORY[key]
    tables = None
    path = cache_path(lmax, max_lambda)
    if use_disk and path.exists():
        try:
            tables = _tables_from_arrays(_cache.load_checked(path, tag=CONVENTION_TAG, names=_FLOAT_NAMES))
        except _cache.CacheError as exc:
            warnings.warn(f"rebuilding Clebsch-Gordan cache: {exc}", RuntimeWarning, stacklevel=2)
    if tables is None:
        arrays = _build_arrays(lmax, max_lambda, progress=progress)
        tables = _tables_from_arrays(arrays)
        if use_disk:
            arrays["format_version"] = np.array(_cache.CACHE_FORMAT_VERSION)
            arrays["tag"] = np.array(CONVENTION_TAG)
            arrays["checksum"] = np.array(_cache.checksum(arrays, _FLOAT_NAMES))
            arrays["exact_checksum"] = np.array(_cache.checksum(arrays, _EXACT_NAMES))
            try:
                _cache.atomic_save(path, arrays)
            except OSError as exc:
                warnings.warn(
                    f"could not write Clebsch-Gordan cache {path}: {exc}", RuntimeWarning, stacklevel=2
                )
    with _LOCK:
        _MEMORY[key] = tables
    return tables


def load_exact(lmax: int, max_lambda: int | None = None) -> dict[tuple[int, int, int], dict]:
    """Exact tables from the disk cache: ``{(l1, l2, lam): {(m1, m2, mu): sympy expr}}``.

    Builds (and caches) the file first if needed.  ``m`` run from ``-l`` to ``l``.
    """
    lmax = check_angular(lmax, "lmax")
    max_lambda = lmax if max_lambda is None else max_lambda
    tables = cg_tables(lmax, max_lambda)
    path = cache_path(lmax, max_lambda)
    try:
        ex = _cache.load_checked(path, tag=CONVENTION_TAG, names=_EXACT_NAMES, checksum_key="exact_checksum")
    except _cache.CacheError:
        arrays = _build_arrays(lmax, max_lambda)
        ex = {k: arrays[k] for k in _EXACT_NAMES}
    out = {}
    for t, (l1, l2, lam) in enumerate(tables.triples.tolist()):
        s = slice(int(tables.offsets[t]), int(tables.offsets[t + 1]))
        out[(l1, l2, lam)] = {
            (int(a) - l1, int(b) - l2, int(c) - lam): exact_to_sympy(int(sg), int(p), int(q))
            for a, b, c, sg, p, q in zip(
                tables.m1[s],
                tables.m2[s],
                tables.mu[s],
                ex["exact_sign"][s],
                ex["exact_p"][s],
                ex["exact_q"][s],
                strict=True,
            )
        }
    return out
