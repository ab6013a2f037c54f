"""Benchmark: ncsym density expansions vs featomic 0.6, side by side.

Workloads (cutoff 4 A, cutoff width 0.5 A, density width 0.3 A, max_radial 6, max_angular 4
and 6, default spline accuracy 1e-8 on both sides):

* 100 randomly rotated ethanol molecules (900 atoms);
* a 216-atom cubic diamond silicon supercell.

Rows compare ``SphericalExpansion.compute`` with featomic's ``SphericalExpansion`` and
``PairExpansion.compute`` with featomic's ``SphericalExpansionByPair`` (both build their full
block containers); ``dense`` is ncsym's ``compute_dense`` alone.  Throughput is atoms/s
(centres) and pairs/s (ordered neighbour pairs ``i != j`` within the cutoff); ``ratio`` is
ncsym/featomic throughput (>= 1 means ncsym is at least as fast).  Best of ``--repeats``
timings after one warm-up call.  ncsym runs on ``NUMBA_NUM_THREADS`` threads (2 unless set);
featomic uses its own thread pool.

First-call (compile) times are measured in fresh subprocesses: ``cold`` with an empty
temporary ``NUMBA_CACHE_DIR``, ``warm`` with that cache filled.

Usage::

    python benchmarks/bench_density.py [--repeats 10] [--no-compile-times]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import textwrap
import time

os.environ.setdefault("NUMBA_NUM_THREADS", "2")

import numpy as np  # noqa: E402

CUTOFF = 4.0
CUTOFF_WIDTH = 0.5
DENSITY_WIDTH = 0.3
MAX_RADIAL = 6
MAX_ANGULARS = (4, 6)


def ethanol_frames(n=100, seed=0):
    """``n`` ethanol molecules with random rotations (uniform quaternions)."""
    import ase.build

    rng = np.random.default_rng(seed)
    frames = []
    for _ in range(n):
        q = rng.normal(size=4)
        w, x, y, z = q / np.linalg.norm(q)
        rotation = np.array([
            [1 - 2 * (y * y + z * z), 2 * (x * y - z * w), 2 * (x * z + y * w)],
            [2 * (x * y + z * w), 1 - 2 * (x * x + z * z), 2 * (y * z - x * w)],
            [2 * (x * z - y * w), 2 * (y * z + x * w), 1 - 2 * (x * x + y * y)],
        ])
        molecule = ase.build.molecule("CH3CH2OH")
        molecule.positions = molecule.positions @ rotation.T
        frames.append(molecule)
    return frames


def silicon_frames():
    from _workloads import si216_frames

    return si216_frames(1)


def featomic_hypers(max_angular):
    return {
        "cutoff": {"radius": CUTOFF, "smoothing": {"type": "ShiftedCosine", "width": CUTOFF_WIDTH}},
        "density": {"type": "Gaussian", "width": DENSITY_WIDTH},
        "basis": {
            "type": "TensorProduct",
            "max_angular": max_angular,
            "radial": {"type": "Gto", "max_radial": MAX_RADIAL},
        },
    }


def ncsym_hypers(max_angular):
    return dict(cutoff=CUTOFF, cutoff_width=CUTOFF_WIDTH, density_width=DENSITY_WIDTH,
                max_radial=MAX_RADIAL, max_angular=max_angular)


def best_time(function, repeats):
    function()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        function()
        times.append(time.perf_counter() - start)
    return min(times)


def run_throughput(repeats):
    import featomic

    import ncsym
    from ncsym.neighbors import neighbor_list

    workloads = {"ethanol x100": ethanol_frames(), "Si 216": silicon_frames()}
    rows = []
    for max_angular in MAX_ANGULARS:
        for name, frames in workloads.items():
            n_atoms = sum(len(f) for f in frames)
            n_pairs = len(neighbor_list(frames, CUTOFF))
            ours_centre = ncsym.SphericalExpansion(**ncsym_hypers(max_angular))
            ours_pair = ncsym.PairExpansion(**ncsym_hypers(max_angular))
            fe_centre = featomic.SphericalExpansion(**featomic_hypers(max_angular))
            fe_pair = featomic.SphericalExpansionByPair(**featomic_hypers(max_angular))
            cases = [
                ("SphericalExpansion", ours_centre, fe_centre),
                ("PairExpansion", ours_pair, fe_pair),
            ]
            for label, ours, reference in cases:
                t_ours = best_time(lambda o=ours, f=frames: o.compute(f), repeats)
                t_dense = best_time(lambda o=ours, f=frames: o.compute_dense(f), repeats)
                t_ref = best_time(lambda r=reference, f=frames: r.compute(f), repeats)
                rows.append((label, name, max_angular, n_atoms, n_pairs, t_ours, t_dense, t_ref))
    return rows


def print_throughput(rows):
    header = (
        f"{'calculator':<19}{'system':<14}{'lmax':>5}{'ncsym atoms/s':>15}{'ncsym pairs/s':>15}"
        f"{'dense atoms/s':>15}{'featomic atoms/s':>18}{'featomic pairs/s':>18}{'ratio':>7}"
    )
    print(header)
    print("-" * len(header))
    for label, name, lmax, n_atoms, n_pairs, t_ours, t_dense, t_ref in rows:
        print(
            f"{label:<19}{name:<14}{lmax:>5}{n_atoms / t_ours:>15.3g}{n_pairs / t_ours:>15.3g}"
            f"{n_atoms / t_dense:>15.3g}{n_atoms / t_ref:>18.3g}{n_pairs / t_ref:>18.3g}"
            f"{t_ref / t_ours:>7.2f}"
        )


_FIRST_CALL = textwrap.dedent(
    """
    import time
    start = time.perf_counter()
    import ase.build
    import ncsym
    imported = time.perf_counter()
    frames = [ase.build.molecule("CH3CH2OH"), ase.build.bulk("Si", "diamond", 5.43)]
    hypers = dict(cutoff={cutoff}, cutoff_width={width}, density_width={sigma},
                  max_radial={nmax}, max_angular=4)
    t0 = time.perf_counter()
    centre = ncsym.SphericalExpansion(**hypers)
    t1 = time.perf_counter()
    centre.compute(frames)
    t2 = time.perf_counter()
    ncsym.PairExpansion(**hypers).compute(frames)
    t3 = time.perf_counter()
    print(imported - start, t1 - t0, t2 - t1, t3 - t2)
    """
).format(cutoff=CUTOFF, width=CUTOFF_WIDTH, sigma=DENSITY_WIDTH, nmax=MAX_RADIAL)


def first_call_times():
    """(import, constructor, first SphericalExpansion.compute, first PairExpansion.compute)."""
    results = {}
    with tempfile.TemporaryDirectory() as cache:
        env = dict(os.environ, NUMBA_CACHE_DIR=cache)
        repo = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
        env["PYTHONPATH"] = repo + os.pathsep + env.get("PYTHONPATH", "")
        for label in ("cold", "warm"):
            out = subprocess.run(
                [sys.executable, "-c", _FIRST_CALL], env=env, check=True, capture_output=True,
                text=True,
            ).stdout.split()
            results[label] = [float(v) for v in out[-4:]]
    return results


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=10, help="timed calls per row (best)")
    parser.add_argument("--no-compile-times", action="store_true",
                        help="skip the cold/warm first-call subprocesses")
    args = parser.parse_args(argv)

    import featomic
    import numba

    print(f"ncsym threads: {numba.get_num_threads()} (NUMBA_NUM_THREADS); featomic "
          f"{featomic.__version__}, own thread pool; cpu count {os.cpu_count()}")
    print(f"cutoff {CUTOFF} A, width {CUTOFF_WIDTH} A, density width {DENSITY_WIDTH} A, "
          f"max_radial {MAX_RADIAL}, best of {args.repeats}\n")
    print_throughput(run_throughput(args.repeats))
    if not args.no_compile_times:
        print("\nfirst call in a fresh process (seconds): import, constructor, "
              "SphericalExpansion.compute, PairExpansion.compute")
        for label, (imp, ctor, centre, pair) in first_call_times().items():
            print(f"  {label:<5} cache: import {imp:6.2f}  constructor {ctor:6.2f}  "
                  f"SphericalExpansion {centre:6.2f}  PairExpansion {pair:6.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
