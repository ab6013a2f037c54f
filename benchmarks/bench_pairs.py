"""Benchmark: pair features rho_ij^(1) against featomic's EquivariantPowerSpectrumByPair.

Every measurement runs in a fresh subprocess, so that its peak resident memory (``ru_maxrss``)
belongs to that calculation alone; the table reports the peak and the peak above the process's
footprint after imports and a warm-up call (JIT compilation, CG tables).  Throughput counts the
pairs of the whole workload (self pairs included) over the wall time of the timed calls,
density expansions included.

Workloads (issue 6): 100 randomly rotated ethanol molecules and Si216 (diamond, 3x3x3 cubic
cells; ``--si-frames`` copies rattled by 0.01 A, one per call, so that a repetition is more
than one call), cutoff 4 A, cutoff width 0.5 A, Gaussian width 0.3 A, max_radial 6, max_angular 4 and
6, every ``lambda`` up to ``2 max_angular`` (featomic's default).  featomic keeps only
``l_1 <= l_2``; ncsym is timed on that same output (``ordered_l=True``) and on its default,
every ``(l_1, l_2)`` (twice the output).  Ethanols are processed in batches of ``--batch``
molecules by both codes (outputs of 100 ethanols at max_angular 6 would need ~12 GB);
Si216 in one call.  Then nu = 2 pairs and three-centre features of ncsym on their own.

The nu = 2 pairs rows use ``max_radial=3``, ``max_angular=2``, ``max_lambda=2`` and the
three-centre rows ``max_radial=2``, ``max_angular=2``, ``max_lambda=1`` (their widths grow as
``(n_species n_radial)^2 n_radial`` per angular path); their "items" are pairs and ordered
triples.  Timings are the best of ``--repeat`` runs.

Usage::

    python benchmarks/bench_pairs.py               # full table (several minutes, ~5 GB peak)
    python benchmarks/bench_pairs.py --threads 1   # single-threaded comparison
    python benchmarks/bench_pairs.py --quick       # small smoke run
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time

import numpy as np
from _workloads import si216_frames

HYPERS = dict(cutoff=4.0, cutoff_width=0.5, density_width=0.3, max_radial=6)


def _frames(system: str, n_ethanol: int, seed: int = 0, n_si: int = 1):
    import ase.build

    from ncsym.rotations import random_rotation

    if system == "si216":
        return si216_frames(n_si)
    rng = np.random.default_rng(seed)
    base = ase.build.molecule("CH3CH2OH")
    frames = []
    for _ in range(n_ethanol):
        atoms = base.copy()
        atoms.positions = atoms.positions @ random_rotation(rng).T
        frames.append(atoms)
    return frames


def _batches(frames, size):
    for start in range(0, len(frames), size):
        yield frames[start : start + size]


def _rss_mb() -> float:
    with open("/proc/self/statm") as fd:
        return int(fd.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 1024**2


def _featomic_calc(lmax):
    import featomic
    from featomic.clebsch_gordan import EquivariantPowerSpectrumByPair

    h = {
        "cutoff": {
            "radius": HYPERS["cutoff"],
            "smoothing": {"type": "ShiftedCosine", "width": HYPERS["cutoff_width"]},
        },
        "density": {"type": "Gaussian", "width": HYPERS["density_width"]},
        "basis": {
            "type": "TensorProduct",
            "max_angular": lmax,
            "radial": {"type": "Gto", "max_radial": HYPERS["max_radial"]},
        },
    }
    calc = EquivariantPowerSpectrumByPair(
        featomic.SphericalExpansion(**h), featomic.SphericalExpansionByPair(**h)
    )

    def run(frames):
        out = calc.compute(frames, neighbors_to_properties=True)
        return sum(b.values.nbytes for b in out.blocks()), max(len(b.samples) for b in out.blocks())

    return run


def _ncsym_calc(kind, lmax, options):
    from ncsym.pairs import PairCorrelations, ThreeCentreFeatures

    hypers = {**HYPERS, **options}
    if kind == "three_centre":
        calc = ThreeCentreFeatures(**hypers, max_angular=lmax)
    else:
        calc = PairCorrelations(**hypers, max_angular=lmax)

    def run(frames):
        out = calc.compute(frames)
        return sum(b.values.nbytes for b in out.blocks), 0

    return run


def _count_pairs(frames, cutoff):
    from ncsym.neighbors import neighbor_list

    return len(neighbor_list(frames, cutoff, self_pairs=True))


def _count_triples(frames, cutoff):
    from ncsym.neighbors import neighbor_list

    nl = neighbor_list(frames, cutoff)
    start = np.concatenate([[0], np.cumsum([len(f) for f in frames])])
    counts = np.bincount(start[nl.system] + nl.first_atom, minlength=start[-1])
    return int(np.sum(counts * (counts - 1)))


def worker(spec: dict) -> dict:
    """Run one measurement (in its own process) and return its numbers."""
    frames = _frames(spec["system"], spec["n_ethanol"], n_si=spec.get("n_si", 1))
    if spec["code"] == "featomic":
        run = _featomic_calc(spec["lmax"])
    else:
        run = _ncsym_calc(spec["kind"], spec["lmax"], spec["options"])
    warm = _frames("ethanol", 1, seed=99)
    run(warm)
    base = _rss_mb()
    elapsed = float("inf")
    for _ in range(spec["repeat"]):
        t0 = time.perf_counter()
        nbytes = 0
        for batch in _batches(frames, spec["batch"]):
            nbytes = max(nbytes, run(batch)[0])
        elapsed = min(elapsed, time.perf_counter() - t0)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    if spec["kind"] == "three_centre":
        count = _count_triples(frames, HYPERS["cutoff"])
    else:
        count = _count_pairs(frames, HYPERS["cutoff"])
    return dict(count=count, seconds=elapsed, peak_mb=peak, base_mb=base, output_mb=nbytes / 1024**2)


def _measure(spec: dict, threads: int | None) -> dict:
    env = dict(os.environ)
    if threads is not None:
        env.update(
            NUMBA_NUM_THREADS=str(threads), RAYON_NUM_THREADS=str(threads), OMP_NUM_THREADS=str(threads)
        )
    proc = subprocess.run(
        [sys.executable, __file__, "--worker", json.dumps(spec)], capture_output=True, text=True, env=env
    )
    if proc.returncode != 0:
        return {"error": proc.stderr.strip().splitlines()[-1] if proc.stderr else f"exit {proc.returncode}"}
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    parser.add_argument("--quick", action="store_true", help="10 ethanols, max_angular 2 and 4, no Si216")
    parser.add_argument("--batch", type=int, default=10, help="ethanols per call (default 10)")
    parser.add_argument("--skip-featomic", action="store_true")
    parser.add_argument("--repeat", type=int, default=3, help="timed repetitions, best kept (default 3)")
    parser.add_argument(
        "--si-frames", type=int, default=3, help="Si216 structures per repetition, one per call (default 3)"
    )
    parser.add_argument(
        "--threads",
        type=int,
        default=None,
        help="threads of both codes (NUMBA_NUM_THREADS, RAYON_NUM_THREADS); default: all cores",
    )
    args = parser.parse_args(argv)
    if args.worker:
        print(json.dumps(worker(json.loads(args.worker))))
        return 0

    n_ethanol = 10 if args.quick else 100
    lmaxes = (2, 4) if args.quick else (4, 6)
    systems = ("ethanol",) if args.quick else ("ethanol", "si216")
    # the default memory_budget (4 GiB) would stop "all l" of Si216 at max_angular 6; peaks are measured
    big = dict(memory_budget=16 * 1024**3)
    print(
        f"# {os.cpu_count()} CPUs, threads={args.threads or 'all'}, best of {args.repeat}, "
        f"ethanol batches of {args.batch}; 'items' are pairs (self pairs included) or ordered triples"
    )
    rows = []
    for system in systems:
        batch = args.batch if system == "ethanol" else 1
        for lmax in lmaxes:
            common = dict(
                system=system, n_ethanol=n_ethanol, lmax=lmax, batch=batch, kind="pairs", repeat=args.repeat,
                n_si=args.si_frames,
            )
            variants = [
                (
                    "ncsym l1<=l2",
                    dict(common, code="ncsym", options=dict(big, max_lambda=2 * lmax, ordered_l=True)),
                ),
                ("ncsym all l", dict(common, code="ncsym", options=dict(big, max_lambda=2 * lmax))),
            ]
            if not args.skip_featomic:
                variants.insert(0, ("featomic", dict(common, code="featomic")))
            results = {}
            for name, spec in variants:
                res = _measure(spec, args.threads)
                results[name] = res
                rows.append((system, lmax, name, res, results.get("featomic")))
                _print_row(rows[-1])
    # ncsym-only features: smaller bases (their widths grow much faster), 8 GiB budget
    nu2 = dict(max_radial=3, max_lambda=2, memory_budget=8 * 1024**3, correlation_order=2)
    three = dict(max_radial=2, max_lambda=1, memory_budget=8 * 1024**3)
    common = dict(n_ethanol=n_ethanol, lmax=2, kind="pairs", code="ncsym", repeat=args.repeat)
    extra = [
        ("nu=2 pairs", dict(common, system="ethanol", batch=args.batch, options=nu2)),
        (
            "three-centre",
            dict(common, system="ethanol", batch=args.batch, kind="three_centre", options=three),
        ),
    ]
    if not args.quick:
        extra.append(
            ("three-centre", dict(common, system="si216", batch=1, kind="three_centre", options=three))
        )
    for name, spec in extra:
        res = _measure(spec, args.threads)
        rows.append((spec["system"], spec["lmax"], name, res, None))
        _print_row(rows[-1])
    return 0


_HEADER_PRINTED = False


def _print_row(row):
    global _HEADER_PRINTED
    if not _HEADER_PRINTED:
        print(
            f"{'system':8s} {'lmax':>4s} {'code':14s} {'items':>8s} {'time s':>8s} {'items/s':>10s} "
            f"{'speedup':>8s} {'peak MB':>8s} {'+MB':>8s} {'out MB':>8s}"
        )
        _HEADER_PRINTED = True
    system, lmax, name, res, ref = row
    if "error" in res:
        print(f"{system:8s} {lmax:4d} {name:14s} ERROR {res['error']}")
        return
    rate = res["count"] / res["seconds"]
    speed = ""
    if ref is not None and "error" not in ref and name != "featomic":
        speed = f"{rate / (ref['count'] / ref['seconds']):7.1f}x"
    print(
        f"{system:8s} {lmax:4d} {name:14s} {res['count']:8d} {res['seconds']:8.2f} {rate:10.0f} {speed:>8s} "
        f"{res['peak_mb']:8.0f} {res['peak_mb'] - res['base_mb']:8.0f} {res['output_mb']:8.0f}",
        flush=True,
    )


if __name__ == "__main__":
    sys.exit(main())
