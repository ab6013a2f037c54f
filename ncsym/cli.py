"""Command-line interface: ``ncsym info | cg | generate | demo | features``.

A thin layer over the public API (argparse, ``main(argv=None) -> int``).  Every subcommand
accepts ``--quiet`` to silence progress bars.
"""

from __future__ import annotations

import argparse
import importlib
import os
import platform
import sys
import time


def _add_info(sub) -> None:
    p = sub.add_parser("info", help="versions, cache location, kernels available")
    p.set_defaults(func=_cmd_info)


def _cmd_info(args) -> int:
    import numpy as np

    from . import __version__
    from ._cache import cache_dir

    print(f"ncsym      {__version__}")
    print(f"python     {platform.python_version()} ({sys.executable})")
    print(f"numpy      {np.__version__}")
    for name in ["numba", "sympy", "sparse", "ase", "featomic", "metatensor", "pyscf", "dask"]:
        try:
            mod = importlib.import_module(name)
            print(f"{name:<10} {getattr(mod, '__version__', '?')}")
        except ImportError:
            print(f"{name:<10} not installed")
    cdir = cache_dir()
    files = sorted(cdir.glob("*.npz")) if cdir.exists() else []
    size = sum(f.stat().st_size for f in files)
    print(f"cache dir  {cdir} ({len(files)} files, {size / 1e6:.1f} MB)")
    import numba

    print(f"CPU kernels: numba {numba.__version__}, {numba.config.NUMBA_NUM_THREADS} threads")
    if os.environ.get("NUMBA_ENABLE_CUDASIM") == "1":
        print("CUDA kernels: Numba CUDA simulator (NUMBA_ENABLE_CUDASIM=1)")
    else:
        try:
            from numba import cuda

            if cuda.is_available():
                dev = cuda.get_current_device()
                print(
                    f"CUDA kernels: device {dev.name.decode() if isinstance(dev.name, bytes) else dev.name}"
                )
            else:
                print("CUDA kernels: no CUDA device (set NUMBA_ENABLE_CUDASIM=1 for the simulator)")
        except Exception as exc:  # pragma: no cover - depends on the machine
            print(f"CUDA kernels: unavailable ({type(exc).__name__}: {exc})")
    return 0


def _add_cg(sub) -> None:
    p = sub.add_parser("cg", help="build, show or clear the Clebsch-Gordan table cache")
    csub = p.add_subparsers(dest="cg_command", required=True)
    b = csub.add_parser("build", help="build (or load) tables up to --lmax and report timings")
    b.add_argument("--lmax", type=int, default=8)
    b.add_argument("--max-lambda", type=int, default=None)
    b.add_argument("--quiet", action="store_true")
    b.set_defaults(func=_cmd_cg_build)
    s = csub.add_parser("show", help="list cache files, or print one table with --triple")
    s.add_argument("--triple", type=int, nargs=3, metavar=("L1", "L2", "LAM"))
    s.add_argument("--exact", action="store_true", help="print exact values (SymPy)")
    s.set_defaults(func=_cmd_cg_show)
    c = csub.add_parser("clear", help="delete ncsym's cache files")
    c.set_defaults(func=_cmd_cg_clear)


def _cmd_cg_build(args) -> int:
    from . import cg

    path = cg.cache_path(args.lmax, args.lmax if args.max_lambda is None else args.max_lambda)
    existed = path.exists()
    t0 = time.perf_counter()
    tables = cg.cg_tables(args.lmax, args.max_lambda, progress=not args.quiet)
    dt = time.perf_counter() - t0
    how = "loaded from cache" if existed else "built exactly"
    print(
        f"lmax={tables.lmax} max_lambda={tables.max_lambda}: {len(tables.triples)} tables, "
        f"{tables.nnz} non-zeros, {how} in {dt * 1e3:.1f} ms"
    )
    if path.exists():
        print(f"cache file {path} ({path.stat().st_size / 1e6:.2f} MB)")
    return 0


def _cmd_cg_show(args) -> int:
    from . import cg
    from ._cache import cache_dir

    if args.triple:
        l1, l2, lam = args.triple
        if args.exact:
            for (m1, m2, mu), v in sorted(cg.clebsch_gordan_exact(l1, l2, lam).items()):
                print(f"m1={m1:+d} m2={m2:+d} mu={mu:+d}  {v}")
        else:
            t = cg.clebsch_gordan(l1, l2, lam)
            for (a, b, c), v in zip(t.coords.T, t.data, strict=True):
                print(f"m1={a - l1:+d} m2={b - l2:+d} mu={c - lam:+d}  {v:+.16f}")
        return 0
    cdir = cache_dir()
    files = sorted(cdir.glob("*.npz")) if cdir.exists() else []
    print(f"cache dir {cdir}")
    for f in files:
        print(f"  {f.name}  {f.stat().st_size / 1e6:.2f} MB")
    if not files:
        print("  (empty)")
    return 0


def _cmd_cg_clear(args) -> int:
    from ._cache import cache_dir

    cdir = cache_dir()
    n = 0
    if cdir.exists():
        for f in cdir.glob("*.npz"):
            f.unlink()
            n += 1
    print(f"removed {n} files from {cdir}")
    return 0


def _add_demo(sub) -> None:
    p = sub.add_parser("demo", help="learn water Hamiltonians end to end and print metrics")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.add_argument("--output", default="ncsym-demo.png", help="parity plot (PNG)")
    p.add_argument("--n-train", type=int, default=250)
    p.add_argument("--n-test", type=int, default=50)
    p.set_defaults(func=_cmd_demo)


def _cmd_demo(args) -> int:
    from .demo import run_demo

    return run_demo(n_train=args.n_train, n_test=args.n_test, output=args.output, progress=not args.quiet)


def _optional(sub, module: str) -> None:
    """Register a subcommand that lives in its own module (``add_cli(subparsers)``)."""
    try:
        mod = importlib.import_module(module)
    except ImportError:
        return
    add = getattr(mod, "add_cli", None)
    if add is not None:
        add(sub)


def build_parser() -> argparse.ArgumentParser:
    """The ``ncsym`` argument parser."""
    from . import __version__

    parser = argparse.ArgumentParser(
        prog="ncsym", description="Symmetry-adapted N-center features and Hamiltonian learning."
    )
    parser.add_argument("--version", action="version", version=f"ncsym {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)
    _add_info(sub)
    _add_cg(sub)
    _optional(sub, "ncsym.codegen")
    _add_demo(sub)
    _optional(sub, "ncsym.pipeline")
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``ncsym`` console script; returns the exit status."""
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except BrokenPipeError:  # output piped into e.g. `head`: stop quietly
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    except (ValueError, TypeError, FileNotFoundError, ImportError) as exc:
        print(f"ncsym {args.command}: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
