"""Benchmark: feature pipeline scaling — throughput vs work, 1 vs 2 Dask workers, memory vs chunk.

Prints two tables.

1. Throughput: for each number of structures (distorted water molecules, default 10 to
   10,000), the wall time of :func:`ncsym.pipeline.compute_chunked` writing per-chunk
   ``.npz`` files, in process and on a Dask ``LocalCluster`` with 1 and 2 worker processes
   (1 thread each; clusters started and kernels compiled before timing).  ``busy`` is the
   summed per-chunk compute time over the wall time: the average number of chunks in
   progress (close to 2 with two workers when Dask keeps both busy; if the wall time does not
   drop, the CPUs are saturated).  The cost growth exponent is the slope of log(time) vs
   log(structures) over the two largest sizes (1 = linear); the speed-up is
   time(1 worker) / time(2 workers).
2. Peak memory vs chunk size: each configuration runs in a fresh Python process (in-process
   pipeline, output to disk); peak RSS of that process, and RSS after imports and warm-up.

Calculators: ``--kind acdc`` (``ncsym.DensityCorrelations``, nu=2, max_angular=4: the target
of issue 9), ``--kind density`` (``ncsym.SphericalExpansion``) or ``--kind histogram`` (the
radial-histogram x spherical-harmonics calculator of the test suite, a stand-in while the
density module is not available).  Default: ``acdc`` if importable, else ``histogram``.

Usage::

    python benchmarks/bench_scale.py [--kind acdc] [--sizes 10 100 1000 10000]
        [--workers 0 1 2] [--memory-n 2000] [--chunks 10 100 1000] [--memory-check]

``--memory-check`` runs 10,000 water molecules with the default memory budget in a fresh
process and reports its peak RSS (target < 2 GiB).  Timings on a shared machine are noisy:
the table prints the CPU count and load average.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))  # the stand-in calculator lives with the tests


def water_frames(n: int, seed: int = 0):
    from _pipeline_calculators import water_frames as frames

    return frames(n, seed)


def make_calculator(kind: str, max_angular: int, max_radial: int):
    """Build the calculator of ``kind`` (species fixed to H and O)."""
    if kind == "histogram":
        from _pipeline_calculators import HistogramHarmonics

        return HistogramHarmonics(species=(1, 8), max_angular=max_angular, n_bins=max_radial + 1)
    from ncsym.pipeline import CalculatorSpec

    hypers = {"cutoff": 4.0, "max_radial": max_radial, "max_angular": max_angular, "species": [1, 8]}
    if kind == "acdc":
        hypers["nu"] = 2
    return CalculatorSpec(kind, hypers)


def default_kind() -> str:
    try:
        import ncsym.acdc  # noqa: F401
        import ncsym.density  # noqa: F401
    except ImportError:
        return "histogram"
    return "acdc"


def throughput(args) -> list[dict]:
    from ncsym.pipeline import compute_chunked

    calc = make_calculator(args.kind, args.max_angular, args.max_radial)
    rows = []
    for workers in args.workers:
        client = None
        if workers:
            from ncsym.distributed import connect

            client = connect(n_workers=workers, threads_per_worker=1, timeout=60)
        try:
            with tempfile.TemporaryDirectory(dir=args.tmpdir) as tmp:
                # warm-up: kernels compiled in every process, tables built
                compute_chunked(
                    calc,
                    water_frames(4 * max(workers, 1)),
                    chunk_size=1,
                    client=client,
                    output=Path(tmp) / "warm",
                    progress=False,
                )
                for n in args.sizes:
                    frames = water_frames(n)
                    t0 = time.perf_counter()
                    summary = compute_chunked(
                        calc,
                        frames,
                        client=client,
                        chunk_size=args.chunk_size,
                        output=Path(tmp) / f"out-{n}",
                        progress=False,
                    )
                    dt = time.perf_counter() - t0
                    size = sum(p.stat().st_size for p in (Path(tmp) / f"out-{n}").iterdir())
                    shutil.rmtree(Path(tmp) / f"out-{n}")
                    worker_rss = None
                    if client is not None:
                        worker_rss = max(client.run(_max_rss).values())
                    rows.append(
                        {
                            "workers": workers,
                            "n": n,
                            "seconds": dt,
                            "chunk_size": summary.chunk_size,
                            "concurrency": summary.compute_seconds / dt,
                            "n_chunks": summary.n_chunks,
                            "bytes": size,
                            "atoms": summary.n_atoms,
                            "client_rss": _max_rss(),
                            "worker_rss": worker_rss,
                        }
                    )
                    print(f"  workers={workers} n={n}: {dt:.2f} s", file=sys.stderr)
        finally:
            if client is not None:
                client.close()
    return rows


def _max_rss() -> int:
    """Peak resident memory of this process in bytes (Linux ``VmHWM``: unlike ``ru_maxrss``
    it is not inherited from the parent across ``exec``)."""
    try:
        with open("/proc/self/status") as fd:
            for line in fd:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024
    except OSError:  # pragma: no cover - not Linux
        pass
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


_MEMORY_SNIPPET = """
import json, resource, sys, tempfile, time
sys.path.insert(0, {bench!r})
import bench_scale as b
from ncsym.pipeline import compute_chunked
calc = b.make_calculator({kind!r}, {lmax}, {nmax})
frames = b.water_frames({n})
with tempfile.TemporaryDirectory(dir={tmpdir!r}) as tmp:
    compute_chunked(calc, frames[:2], chunk_size=1, output=tmp + "/warm", progress=False)
    base = b._max_rss()
    t0 = time.perf_counter()
    s = compute_chunked(calc, frames, chunk_size={chunk}, memory_budget={budget}, output=tmp + "/out", progress=False)
    dt = time.perf_counter() - t0
print(json.dumps({{"base": base, "peak": b._max_rss(), "seconds": dt, "chunk_size": s.chunk_size}}))
"""


def memory(args, n: int, chunk: int | None, budget: str | None = None) -> dict:
    code = _MEMORY_SNIPPET.format(
        bench=str(Path(__file__).parent),
        kind=args.kind,
        lmax=args.max_angular,
        nmax=args.max_radial,
        n=n,
        chunk=chunk,
        budget=repr(budget),
        tmpdir=args.tmpdir,
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=3600)
    if out.returncode != 0:
        raise RuntimeError(out.stderr[-2000:])
    return json.loads(out.stdout.strip().splitlines()[-1])


def mib(n: float) -> str:
    return f"{n / 2**20:8.0f}"


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--kind", choices=("acdc", "density", "histogram"), default=None)
    p.add_argument("--max-angular", type=int, default=4)
    p.add_argument("--max-radial", type=int, default=4)
    p.add_argument("--sizes", type=int, nargs="+", default=[10, 100, 1000, 10000])
    p.add_argument("--workers", type=int, nargs="+", default=[0, 1, 2], help="0 = in process")
    p.add_argument("--chunk-size", type=int, default=None, help="structures per chunk (default: automatic)")
    p.add_argument("--memory-n", type=int, default=2000, help="structures for the memory table")
    p.add_argument("--chunks", type=int, nargs="*", default=[10, 100, 1000], help="chunk sizes (none: skip)")
    p.add_argument("--memory-check", action="store_true", help="10,000 waters, default budget, peak RSS")
    p.add_argument("--skip-throughput", action="store_true")
    p.add_argument(
        "--tmpdir", default=None, help="where outputs are written (e.g. /dev/shm to take the disk out)"
    )
    args = p.parse_args(argv)
    args.kind = args.kind or default_kind()
    load = os.getloadavg()
    print(
        f"kind={args.kind} max_angular={args.max_angular} max_radial={args.max_radial}; "
        f"{os.cpu_count()} CPUs, load average {load[0]:.1f} {load[1]:.1f} {load[2]:.1f}; "
        f"output in {args.tmpdir or tempfile.gettempdir()}"
    )

    if not args.skip_throughput:
        rows = throughput(args)
        print("\nthroughput (output: per-chunk .npz; workers 0 = in process)")
        print(
            f"{'structures':>10} {'workers':>7} {'chunk':>6} {'seconds':>8} {'busy':>5} {'struct/s':>9} "
            f"{'us/atom':>8} {'output MiB':>10} {'client MiB':>10} {'worker MiB':>10}"
        )
        for r in rows:
            print(
                f"{r['n']:>10} {r['workers']:>7} {r['chunk_size']:>6} {r['seconds']:>8.2f} {r['concurrency']:>5.2f} "
                f"{r['n'] / r['seconds']:>9.1f} {1e6 * r['seconds'] / r['atoms']:>8.1f} {mib(r['bytes']):>10} "
                f"{mib(r['client_rss']):>10} {mib(r['worker_rss']) if r['worker_rss'] else '-':>10}"
            )
        print()
        for w in args.workers:
            mine = sorted((r for r in rows if r["workers"] == w), key=lambda r: r["n"])
            if len(mine) >= 2:
                a, b = mine[-2], mine[-1]
                slope = math.log(b["seconds"] / a["seconds"]) / math.log(b["n"] / a["n"])
                print(f"workers={w}: time ~ n^{slope:.2f} between {a['n']} and {b['n']} structures")
        one = {r["n"]: r["seconds"] for r in rows if r["workers"] == 1}
        two = {r["n"]: r["seconds"] for r in rows if r["workers"] == 2}
        for n in sorted(set(one) & set(two)):
            print(f"speed-up 2 vs 1 worker at {n} structures: {one[n] / two[n]:.2f}x")

    if args.chunks:
        print(f"\npeak memory vs chunk size ({args.memory_n} structures, in process, fresh process each)")
        print(f"{'chunk':>6} {'seconds':>8} {'base MiB':>9} {'peak MiB':>9}")
        for chunk in args.chunks:
            r = memory(args, args.memory_n, chunk)
            print(f"{chunk:>6} {r['seconds']:>8.2f} {mib(r['base']):>9} {mib(r['peak']):>9}")
    if args.memory_check:
        r = memory(args, 10_000, None)
        print(
            f"\n10,000 water molecules, default memory budget (chunk {r['chunk_size']}): "
            f"peak RSS {r['peak'] / 2**30:.2f} GiB in {r['seconds']:.1f} s (target < 2 GiB)"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
