"""Code generation: standalone Numba modules with the CG couplings unrolled as constants.

:func:`generate_coupling_module` writes a plain Python module with one kernel per pair of input
orders ``(l1, l2)`` needed by density correlations of a given order: every nonzero real
Clebsch-Gordan coefficient appears as a float literal (with its exact value as a comment) in
straight-line code, so the compiler sees constants instead of table look-ups.  The module
imports only NumPy and Numba (no SymPy, no ncsym), keeps the conventions of
:mod:`ncsym.cg`, and is byte-for-byte reproducible (no dates, sorted loops), so it can be
committed next to the command that regenerates it (e3nn's ``_spherical_harmonics_generator``
pattern).

The command line ``ncsym generate --max-l L --correlation-order NU -o coupling.py`` calls the
same function (see :func:`add_cli`).

Generated API
    ``couple_<l1>_<l2>(a, b, idx_a, idx_b, out)``: ``a`` (Na, 2 l1 + 1, Pa), ``b``
    (Nb, 2 l2 + 1, Pb), ``idx_a``/``idx_b`` int64 (n,), ``out`` (n, n_rows, Pa * Pb) assigned
    with ``out[s, ROW_OFFSETS[(l1, l2)][i] + mu, p * Pb + q]`` = the order-``lam`` product for
    ``lam = LAMBDAS[(l1, l2)][i]``.  ``KERNELS[(l1, l2)]`` maps to the function and
    ``couple(a, b, l1, l2, idx_a=None, idx_b=None)`` returns ``{lam: (n, 2 lam + 1, Pa * Pb)}``.
    With ``cuda=True`` the module also defines ``cuda_kernels()`` returning numba.cuda kernels
    with the same arguments (``numba.cuda`` imported on first call).
"""

from __future__ import annotations

import os
from pathlib import Path

from ._checks import check_angular, check_int

__all__ = ["generate_coupling_module", "coupling_pairs", "add_cli"]

#: Bump when the layout of generated modules changes.
GENERATOR_VERSION = 1


def coupling_pairs(max_l: int, correlation_order: int, max_lambda: int | None = None) -> list[tuple]:
    """Pairs ``(l1, l2)`` and their output orders needed for correlations up to ``nu``.

    Iteration ``o -> o + 1`` couples an intermediate order ``k <= o max_l`` with a density
    order ``l <= max_l``; all iterations up to ``correlation_order`` together need
    ``l1 <= (correlation_order - 1) max_l`` and ``l2 <= max_l``.  Outputs are kept up to
    the largest order that can still reach ``max_lambda`` at the end: ``max_lambda`` for the
    last iteration, ``max_lambda + (nu - o - 1) max_l`` for iteration ``o``; a pair serves the
    earliest iteration its ``l1`` can appear in.

    Parameters
    ----------
    max_l : int
        Largest density order.
    correlation_order : int
        ``nu >= 2``.
    max_lambda : int, optional
        Largest final output order (default ``correlation_order * max_l``).

    Returns
    -------
    list of (l1, l2, tuple of lam)
        Sorted by ``(l1, l2)``.
    """
    max_l = check_angular(max_l, "max_l")
    nu = check_int(correlation_order, "correlation_order", minimum=2)
    reach = nu * max_l
    if max_lambda is None:
        max_lambda = reach
    max_lambda = check_int(max_lambda, "max_lambda", minimum=0, maximum=reach)
    pairs = []
    for l1 in range((nu - 1) * max_l + 1):
        first_step = max(1, -(-l1 // max_l)) if max_l else 1
        cap = max_lambda + (nu - first_step - 1) * max_l
        for l2 in range(max_l + 1):
            lams = tuple(range(abs(l1 - l2), min(l1 + l2, cap) + 1))
            if lams:
                pairs.append((l1, l2, lams))
    return pairs


def _exact_repr(expr) -> str:
    return str(expr).replace(" ", "")


def _row_terms(l1: int, l2: int, lam: int):
    """``[(mu, [(m1, m2, coef, exact), ...]), ...]`` with components counted from zero."""
    from .cg import clebsch_gordan_exact
    from .products import cg_terms

    exact = clebsch_gordan_exact(l1, l2, lam)
    m1, m2, mu, coef = cg_terms(l1, l2, lam)
    rows = []
    for m in range(2 * lam + 1):
        sel = [k for k in range(len(coef)) if int(mu[k]) == m]
        terms = []
        for k in sel:
            key = (int(m1[k]) - l1, int(m2[k]) - l2, m - lam)
            terms.append((int(m1[k]), int(m2[k]), float(coef[k]), _exact_repr(exact[key])))
        rows.append((m, terms))
    return rows


def _expression(terms, indent: str, cuda: bool) -> list[str]:
    """Lines of ``(c * a_m1 * b_m2[q] + ...)``, one term per line with its exact value."""
    if not terms:
        return ["0.0"]
    lines = []
    for i, (i1, i2, c, exact) in enumerate(terms):
        bterm = f"b{i2}" if cuda else f"b{i2}[q]"
        mag = repr(abs(c))
        if i == 0:
            sign = "-" if c < 0 else ""
            text = f"{sign}{mag} * a{i1} * {bterm}"
        else:
            sign = "-" if c < 0 else "+"
            text = f"{sign} {mag} * a{i1} * {bterm}"
        lines.append(f"{indent}{text}  # {exact}")
    return lines


def _cpu_kernel(l1: int, l2: int, lams: tuple[int, ...]) -> str:
    rows = []
    offset = 0
    for lam in lams:
        for m, terms in _row_terms(l1, l2, lam):
            rows.append((offset + m, lam, m - lam, terms))
        offset += 2 * lam + 1
    out = []
    out.append("@numba.njit(cache=True, parallel=True)")
    out.append(f"def couple_{l1}_{l2}(a, b, idx_a, idx_b, out):  # pragma: no cover")
    desc = ", ".join(f"{lam} (rows {o}-{o + 2 * lam})" for lam, o in _offsets(lams))
    out.append(f'    """(l1, l2) = ({l1}, {l2}) -> lam = {desc}.')
    out.append("")
    out.append(f"    a: (Na, {2 * l1 + 1}, Pa), b: (Nb, {2 * l2 + 1}, Pb), idx_a/idx_b: int64 (n,),")
    out.append(f"    out: (n, {offset}, Pa * Pb), assigned.")
    out.append('    """')
    out.append("    n = idx_a.shape[0]")
    out.append("    pa = a.shape[2]")
    out.append("    pb = b.shape[2]")
    out.append("    for s in prange(n):")
    out.append("        a_s = a[idx_a[s]]")
    out.append("        b_s = b[idx_b[s]]")
    out.append("        o_s = out[s]")
    for i2 in range(2 * l2 + 1):
        out.append(f"        b{i2} = b_s[{i2}]")
    out.append("        for p in range(pa):")
    for i1 in range(2 * l1 + 1):
        out.append(f"            a{i1} = a_s[{i1}, p]")
    out.append("            base = p * pb")
    for r, _lam, _mu, _terms in rows:
        out.append(f"            o{r} = o_s[{r}, base : base + pb]")
    out.append("            for q in range(pb):")
    for r, lam, mu, terms in rows:
        out.append(f"                # lam = {lam}, mu = {mu}")
        expr = _expression(terms, "                    ", cuda=False)
        if len(expr) == 1 and not terms:
            out.append(f"                o{r}[q] = 0.0")
        else:
            out.append(f"                o{r}[q] = (")
            out.extend(expr)
            out.append("                )")
    return "\n".join(out) + "\n"


def _cuda_kernel(l1: int, l2: int, lams: tuple[int, ...]) -> str:
    rows = []
    offset = 0
    for lam in lams:
        for m, terms in _row_terms(l1, l2, lam):
            rows.append((offset + m, lam, m - lam, terms))
        offset += 2 * lam + 1
    ind = "    "
    out = []
    out.append(f"{ind}@cuda.jit")
    out.append(f"{ind}def couple_{l1}_{l2}(a, b, idx_a, idx_b, out):  # pragma: no cover")
    out.append(f'{ind}    """CUDA version of ``couple_{l1}_{l2}``: one thread per (sample, p, q)."""')
    out.append(f"{ind}    n = idx_a.shape[0]")
    out.append(f"{ind}    pa = a.shape[2]")
    out.append(f"{ind}    pb = b.shape[2]")
    out.append(f"{ind}    start = cuda.grid(1)")
    out.append(f"{ind}    stride = cuda.gridsize(1)")
    out.append(f"{ind}    for t in range(start, n * pa * pb, stride):")
    out.append(f"{ind}        s = t // (pa * pb)")
    out.append(f"{ind}        e = t - s * (pa * pb)")
    out.append(f"{ind}        p = e // pb")
    out.append(f"{ind}        q = e - p * pb")
    out.append(f"{ind}        ia = idx_a[s]")
    out.append(f"{ind}        ib = idx_b[s]")
    for i1 in range(2 * l1 + 1):
        out.append(f"{ind}        a{i1} = a[ia, {i1}, p]")
    for i2 in range(2 * l2 + 1):
        out.append(f"{ind}        b{i2} = b[ib, {i2}, q]")
    for r, lam, mu, terms in rows:
        out.append(f"{ind}        # lam = {lam}, mu = {mu}")
        if not terms:
            out.append(f"{ind}        out[s, {r}, e] = 0.0")
            continue
        out.append(f"{ind}        out[s, {r}, e] = (")
        out.extend(_expression(terms, f"{ind}            ", cuda=True))
        out.append(f"{ind}        )")
    return "\n".join(out) + "\n"


def _offsets(lams):
    offset = 0
    result = []
    for lam in lams:
        result.append((lam, offset))
        offset += 2 * lam + 1
    return result


_HELPERS = '''

def couple(a, b, l1, l2, idx_a=None, idx_b=None):
    """All orders ``LAMBDAS[(l1, l2)]`` of the product of ``a`` (Na, 2 l1 + 1, Pa) and ``b``.

    Returns ``{lam: array of shape (n, 2 lam + 1, Pa * Pb)}`` (views of one array), property
    ``p * Pb + q``.  ``idx_a``/``idx_b`` (int64, (n,)) pick the rows; default ``arange``.
    """
    if (l1, l2) not in KERNELS:
        raise ValueError(f"(l1, l2) = ({l1}, {l2}) is not in this module; available: {sorted(KERNELS)}")
    a = np.ascontiguousarray(a, dtype=np.float64)
    b = np.ascontiguousarray(b, dtype=np.float64)
    if a.ndim != 3 or a.shape[1] != 2 * l1 + 1 or b.ndim != 3 or b.shape[1] != 2 * l2 + 1:
        raise ValueError(
            f"`a` must have shape (n, {2 * l1 + 1}, Pa) and `b` (n, {2 * l2 + 1}, Pb), got {a.shape} and {b.shape}"
        )
    if idx_a is None and idx_b is None:
        if a.shape[0] != b.shape[0]:
            raise ValueError("`a` and `b` have different numbers of rows: pass `idx_a` and `idx_b`")
        idx_a = idx_b = np.arange(a.shape[0], dtype=np.int64)
    idx_a = np.ascontiguousarray(idx_a, dtype=np.int64)
    idx_b = np.ascontiguousarray(idx_b, dtype=np.int64)
    if idx_a.shape != idx_b.shape or idx_a.ndim != 1:
        raise ValueError("`idx_a` and `idx_b` must be 1-D arrays of the same length")
    if idx_a.size and (idx_a.min() < 0 or idx_a.max() >= a.shape[0] or idx_b.min() < 0 or idx_b.max() >= b.shape[0]):
        raise ValueError("`idx_a`/`idx_b` hold rows outside `a`/`b`")
    n_rows = sum(2 * lam + 1 for lam in LAMBDAS[(l1, l2)])
    out = np.empty((idx_a.shape[0], n_rows, a.shape[2] * b.shape[2]))
    KERNELS[(l1, l2)](a, b, idx_a, idx_b, out)
    return {
        lam: out[:, offset : offset + 2 * lam + 1]
        for lam, offset in zip(LAMBDAS[(l1, l2)], ROW_OFFSETS[(l1, l2)])
    }
'''


def generate_coupling_module(
    max_l: int,
    correlation_order: int,
    path: str | os.PathLike | None = None,
    *,
    max_lambda: int | None = None,
    cuda: bool = False,
) -> str:
    """Write (and return) a standalone module of unrolled CG coupling kernels.

    Parameters
    ----------
    max_l : int
        Largest density order ``l`` (the expansion's ``max_angular``).
    correlation_order : int
        Largest correlation order ``nu >= 2`` the module must serve (pairs
        ``l1 <= (nu - 1) max_l``, ``l2 <= max_l``, see :func:`coupling_pairs`).
    path : str or PathLike, optional
        Where to write the module (atomically); ``None``: only return the source.
    max_lambda : int, optional
        Largest output order (default ``nu * max_l``).
    cuda : bool
        Also emit numba.cuda kernels (``cuda_kernels()``).

    Returns
    -------
    str
        The module source.  Identical inputs give identical bytes.

    Raises
    ------
    TypeError, ValueError
        Invalid orders (e.g. ``correlation_order < 2``, ``max_lambda`` beyond ``nu max_l``).

    Examples
    --------
    >>> from ncsym.codegen import generate_coupling_module
    >>> src = generate_coupling_module(1, 2)
    >>> "def couple_1_1(" in src
    True
    """
    from . import __version__
    from .conventions import CONVENTION_TAG

    pairs = coupling_pairs(max_l, correlation_order, max_lambda)
    nu = int(correlation_order)
    max_lambda_eff = max((max(lams) for _, _, lams in pairs), default=0)
    command = f"ncsym generate --max-l {int(max_l)} --correlation-order {nu}"
    if max_lambda is not None:
        command += f" --max-lambda {int(max_lambda)}"
    if cuda:
        command += " --cuda"
    parts = []
    parts.append(
        f'''"""Unrolled real Clebsch-Gordan coupling kernels (max_l={int(max_l)}, correlation_order={nu}).

Generated by ncsym {__version__} (generator version {GENERATOR_VERSION}) with

    {command} -o <file>

or ``ncsym.generate_coupling_module({int(max_l)}, {nu}{"" if max_lambda is None else f", max_lambda={int(max_lambda)}"}{", cuda=True" if cuda else ""})``.
Do not edit by hand: regenerate instead.  Needs only NumPy and Numba.  Import it as a
module (``import coupling``; with ``importlib``, put it in ``sys.modules`` before calling the
kernels): Numba's on-disk cache (``cache=True``) finds the kernels by module name.

Conventions ({CONVENTION_TAG}):
real spherical harmonics with m = -l .. l, no Condon-Shortley phase;
``out[mu] = sum_(m1, m2) cg[m1, m2, mu] a[m1] b[m2]`` with featomic's effective real CG
(``(1, 1) -> 1`` gives ``-(a x b) / sqrt(2)`` in (y, z, x) order).  The product of blocks
``(l1, sigma1)`` and ``(l2, sigma2)`` has parity ``sigma1 sigma2 (-1)^(l1 + l2 + lam)``.

``couple_<l1>_<l2>(a, b, idx_a, idx_b, out)``: ``a`` (Na, 2 l1 + 1, Pa), ``b`` (Nb, 2 l2 + 1, Pb)
float64, ``idx_a``/``idx_b`` int64 (n,) rows of ``a``/``b`` for output row ``s``, ``out``
(n, n_rows, Pa * Pb) float64, assigned: row ``ROW_OFFSETS[(l1, l2)][i] + mu`` holds order
``LAMBDAS[(l1, l2)][i]``, property ``p * Pb + q``.  Comments give each coefficient exactly.
"""

import numba
import numpy as np
from numba import prange

MAX_L = {int(max_l)}
CORRELATION_ORDER = {nu}
MAX_LAMBDA = {max_lambda_eff}
GENERATOR_VERSION = {GENERATOR_VERSION}
'''
    )
    lam_lines = ["#: (l1, l2) -> output orders, in the row order of ``out``", "LAMBDAS = {"]
    off_lines = ["#: (l1, l2) -> first row of each order in ``out``", "ROW_OFFSETS = {"]
    for l1, l2, lams in pairs:
        lam_lines.append(f"    ({l1}, {l2}): {lams!r},")
        off_lines.append(f"    ({l1}, {l2}): {tuple(o for _, o in _offsets(lams))!r},")
    lam_lines.append("}")
    off_lines.append("}")
    parts.append("\n".join(lam_lines) + "\n")
    parts.append("\n".join(off_lines) + "\n")
    for l1, l2, lams in pairs:
        parts.append("\n" + _cpu_kernel(l1, l2, lams))
    kern = ["#: (l1, l2) -> CPU kernel", "KERNELS = {"]
    for l1, l2, _ in pairs:
        kern.append(f"    ({l1}, {l2}): couple_{l1}_{l2},")
    kern.append("}")
    parts.append("\n" + "\n".join(kern) + "\n")
    parts.append(_HELPERS)
    if cuda:
        cuda_parts = [
            "",
            "_CUDA_KERNELS = None",
            "",
            "",
            "def cuda_kernels():",
            '    """``{(l1, l2): numba.cuda kernel}`` with the CPU kernels\' arguments (launch with',
            "    ``kernel[blocks, threads](a, b, idx_a, idx_b, out)``, any grid size).  Imports",
            '    ``numba.cuda`` on first call."""',
            "    global _CUDA_KERNELS",
            "    if _CUDA_KERNELS is None:",
            "        _CUDA_KERNELS = _build_cuda_kernels()",
            "    return _CUDA_KERNELS",
            "",
            "",
            "def _build_cuda_kernels():",
            "    # a module global, so that the CUDA simulator can swap it inside kernels",
            "    global cuda",
            "    from numba import cuda",
            "",
        ]
        body = []
        for l1, l2, lams in pairs:
            body.append(_cuda_kernel(l1, l2, lams))
        cuda_parts.append("\n".join(body))
        ret = ["    return {"]
        for l1, l2, _ in pairs:
            ret.append(f"        ({l1}, {l2}): couple_{l1}_{l2},")
        ret.append("    }")
        parts.append("\n".join(cuda_parts) + "\n".join(ret) + "\n")
    source = "\n".join(parts)
    if path is not None:
        _atomic_write(Path(path), source)
    return source


def _atomic_write(path: Path, text: str) -> None:
    from ._cache import atomic_writer

    with atomic_writer(path, "w", encoding="utf-8", newline="\n") as f:
        f.write(text)


# ---------------------------------------------------------------------------- CLI


def add_cli(subparsers) -> None:
    """Register ``ncsym generate`` on an ``argparse`` sub-parsers object."""
    p = subparsers.add_parser(
        "generate",
        help="write a standalone module of unrolled Clebsch-Gordan coupling kernels",
        description=generate_coupling_module.__doc__.split("\n\n")[0],
    )
    p.add_argument("--max-l", type=int, required=True, help="largest density order (max_angular)")
    p.add_argument("--correlation-order", type=int, default=2, help="largest correlation order nu (>= 2)")
    p.add_argument("--max-lambda", type=int, default=None, help="largest output order (default nu * max_l)")
    p.add_argument("--cuda", action="store_true", help="also emit numba.cuda kernels")
    p.add_argument("-o", "--output", required=True, help="path of the module to write")
    p.add_argument("--quiet", action="store_true", help="print nothing on success")
    p.set_defaults(func=_cmd_generate)


def _cmd_generate(args) -> int:
    source = generate_coupling_module(
        args.max_l, args.correlation_order, args.output, max_lambda=args.max_lambda, cuda=args.cuda
    )
    if not args.quiet:
        n_kernels = source.count("@numba.njit")
        print(f"wrote {args.output}: {n_kernels} CPU kernels, {len(source.splitlines())} lines")
    return 0
