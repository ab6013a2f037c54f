"""Benchmark: exact real Clebsch-Gordan tables, cold build vs cache load vs peers.

Prints a table: for lmax in (4, 8, 12), the cold exact build (fresh process, empty cache),
the cache load (fresh process, warm cache), ``sympy.physics.wigner.clebsch_gordan`` on the
same triples (complex coefficients only, i.e. less work than ours) and ``wigners`` (if
installed).  Each timing runs in a fresh Python process so nothing is shared in memory.

Usage: ``python benchmarks/bench_cg.py [--lmax 4 8 12] [--sympy-max 8]``
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile

_SNIPPETS = {
    "ncsym": """
import time, json
t0 = time.perf_counter()
from ncsym import cg
t1 = time.perf_counter()
t = cg.cg_tables({lmax})
print(json.dumps({{"time": time.perf_counter() - t1, "import": t1 - t0, "nnz": t.nnz}}))
""",
    "sympy": """
import time, json
from sympy.physics.wigner import clebsch_gordan
t0 = time.perf_counter()
n = 0
for l1 in range({lmax} + 1):
    for l2 in range({lmax} + 1):
        for lam in range(abs(l1 - l2), min(l1 + l2, {lmax}) + 1):
            for m1 in range(-l1, l1 + 1):
                for m2 in range(-l2, l2 + 1):
                    if abs(m1 + m2) <= lam:
                        n += clebsch_gordan(l1, l2, lam, m1, m2, m1 + m2) != 0
print(json.dumps({{"time": time.perf_counter() - t0, "nnz": int(n)}}))
""",
    "wigners": """
import time, json
import wigners
t0 = time.perf_counter()
n = 0
for l1 in range({lmax} + 1):
    for l2 in range({lmax} + 1):
        for lam in range(abs(l1 - l2), min(l1 + l2, {lmax}) + 1):
            n += int((wigners.clebsch_gordan_array(l1, l2, lam) != 0).sum())
print(json.dumps({{"time": time.perf_counter() - t0, "nnz": n}}))
""",
}


def run(kind: str, lmax: int, cache: str) -> dict:
    env = dict(os.environ, NCSYM_CACHE_DIR=cache)
    out = subprocess.run(
        [sys.executable, "-c", _SNIPPETS[kind].format(lmax=lmax)],
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lmax", type=int, nargs="+", default=[4, 8, 12])
    parser.add_argument("--sympy-max", type=int, default=8, help="skip sympy above this lmax")
    args = parser.parse_args()
    try:
        import wigners  # noqa: F401

        have_wigners = True
    except ImportError:
        have_wigners = False
    print("All tables l1, l2, lambda <= lmax; times in seconds, each in a fresh process")
    print("(ncsym columns exclude `import ncsym`, reported last).")
    print(
        f"{'lmax':>4} {'nnz':>8} {'ncsym cold':>11} {'ncsym cache':>12} {'sympy (complex)':>16} {'wigners':>9} {'import':>7}"
    )
    for lmax in args.lmax:
        with tempfile.TemporaryDirectory() as cache:
            cold = run("ncsym", lmax, cache)
            warm = run("ncsym", lmax, cache)
        sym = run("sympy", lmax, cache) if lmax <= args.sympy_max else None
        wig = run("wigners", lmax, cache) if have_wigners else None
        sym_s = f"{sym['time']:16.3f}" if sym else f"{'skipped':>16}"
        wig_s = f"{wig['time']:9.3f}" if wig else f"{'n/a':>9}"
        print(
            f"{lmax:>4} {cold['nnz']:>8} {cold['time']:11.3f} {warm['time']:12.4f} {sym_s} {wig_s} {cold['import']:7.3f}"
        )


if __name__ == "__main__":
    main()
