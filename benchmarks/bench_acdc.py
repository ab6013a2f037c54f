"""Benchmark: ncsym density correlations (nu = 2, 3) side by side with featomic.

Datasets (same hyperparameters as the density benchmark): 100 randomly rotated ethanols and
Si216 = ``ase.build.bulk('Si', 'diamond', 5.43, cubic=True) * (3, 3, 3)`` (``--si-frames``
copies for nu = 2, rattled by 0.01 A, one per call, so that a pass is not a single 30 ms call;
one for nu = 3); cutoff 4 Angstrom,
cutoff width 0.5, density width 0.3, max_radial 6, max_angular 4 and 6; all lambda and
lambda <= max_angular.  Every measurement runs in its own process on ``--threads`` threads
(Numba, Rayon and BLAS), after a warm-up on one frame (compilation excluded), and reports

* atoms/s (wall clock) of the whole computation from ``ase.Atoms``, density included: the best
  of ``--repeat`` passes over all frames, and the first pass apart ("cold": memory the process
  touches for the first time is slow to fault in on virtual machines, up to 10x slower than
  reused pages);
* atoms/s of the CG part only (ncsym: from a precomputed density; featomic: total minus its
  SphericalExpansion time), best pass;
* peak memory: the rise of the process' peak RSS during the timed run (``/proc/self/clear_refs``
  resets the peak after the warm-up), i.e. output plus every temporary.

Frames are processed in batches (``--batch`` ethanols) so that lambda-SOAP at max_angular 6
fits in memory; nu = 3 without contraction produces ~126 MB per ethanol centre at
max_angular 4, lambda <= 4, so featomic nu = 3 runs on ``--nu3-frames`` ethanols only and
configurations whose estimated output exceeds the available memory are skipped (and said so).
``ncsym (contracted)`` keeps ``--components`` principal components of every nu = 2 block
(fitted on 5 other ethanols, fit time reported apart).

The last table compares the kernels of a generated module (``ncsym generate``) with the
generic plan kernel on the same lambda-SOAP products, and puts the achieved rates next to
two measured limits: the machine's write bandwidth (fresh and reused memory) and the kernel
rate with its output kept in cache (compute bound).

Usage::

    python benchmarks/bench_acdc.py            # full run (about 10-20 minutes on 2 cores)
    python benchmarks/bench_acdc.py --quick    # small smoke run
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time

import numpy as np
from _workloads import si216_frames

HYPERS = {"cutoff": 4.0, "cutoff_width": 0.5, "density_width": 0.3, "max_radial": 6}


# ----------------------------------------------------------------------------- helpers


def _rss_kib(field: str) -> int:
    with open("/proc/self/status") as fd:
        for line in fd:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    return 0


def _reset_peak() -> None:
    try:
        with open("/proc/self/clear_refs", "w") as fd:
            fd.write("5")
    except OSError:  # pragma: no cover - depends on the kernel
        pass


def _available_bytes() -> int:
    with open("/proc/meminfo") as fd:
        for line in fd:
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    return 8 * 2**30


def ethanols(n: int, seed: int = 0):
    import ase.build
    from scipy.spatial.transform import Rotation

    mol = ase.build.molecule("CH3CH2OH")
    frames = []
    for i in range(n):
        frame = mol.copy()
        frame.positions = frame.positions @ Rotation.random(random_state=seed + i).as_matrix().T
        frames.append(frame)
    return frames


def dataset(name: str, n_frames: int):
    return ethanols(n_frames) if name == "ethanol" else si216_frames(n_frames)


def featomic_hypers(lmax: int) -> dict:
    return {
        "cutoff": {"radius": HYPERS["cutoff"], "smoothing": {"type": "ShiftedCosine", "width": HYPERS["cutoff_width"]}},
        "density": {"type": "Gaussian", "width": HYPERS["density_width"]},
        "basis": {"type": "TensorProduct", "max_angular": lmax, "radial": {"type": "Gto", "max_radial": HYPERS["max_radial"]}},
    }


def batches(frames, size):
    return [frames[i : i + size] for i in range(0, len(frames), size)]


# ----------------------------------------------------------------------------- workers


def _featomic_runner(case):
    import featomic
    from featomic.clebsch_gordan import DensityCorrelations, EquivariantPowerSpectrum

    lmax, nu, lam = case["lmax"], case["nu"], case["max_lambda"]
    calc = featomic.SphericalExpansion(**featomic_hypers(lmax))
    if nu == 2:
        from metatensor import Labels

        eps = EquivariantPowerSpectrum(calc)
        sel = None
        if lam is not None:
            sel = Labels(["o3_lambda"], np.arange(lam + 1, dtype=np.int32).reshape(-1, 1))

        def run(frames):
            return eps.compute(frames, neighbors_to_properties=True, selected_keys=sel)

    else:
        dc = DensityCorrelations(n_correlations=nu - 1, max_angular=nu * lmax)

        def run(frames):
            density = calc.compute(frames).keys_to_properties("neighbor_type")
            return dc.compute(density, angular_cutoff=lam)

    def density_only(frames):
        return calc.compute(frames)

    return run, density_only


def _ncsym_runner(case, frames_fit=None):
    import ncsym

    lmax, nu, lam = case["lmax"], case["nu"], case["max_lambda"]
    expansion = ncsym.SphericalExpansion(**HYPERS, max_angular=lmax, species=case["species"])
    kwargs = dict(expansion=expansion, correlation_order=nu, max_lambda=lam, memory_budget=int(0.9 * _available_bytes()))
    if nu >= 3:
        kwargs["angular_cutoff"] = lam
    if case.get("components"):
        kwargs["contraction"] = case["components"]
    calc = ncsym.DensityCorrelations(**kwargs)
    fit_time = None
    if case.get("components"):
        t0 = time.perf_counter()
        calc.fit(frames_fit)
        fit_time = time.perf_counter() - t0

    def run(frames):
        return calc.compute(frames)

    def from_density(dense):
        return calc.compute(density=dense)

    return run, from_density, expansion, fit_time


def _warmup_frames(name: str):
    """Tiny frames with every species: compile everything without warming the allocator."""
    import ase
    import ase.build

    if name == "ethanol":
        return [ase.Atoms("HCO", positions=[[0, 0, 0], [1.1, 0, 0], [2.3, 0, 0]])]
    return [ase.build.bulk("Si", "diamond", 5.43)]


def _pass_times(repeat: int, one_pass) -> list[float]:
    """Wall times of ``repeat`` calls of ``one_pass()``."""
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        one_pass()
        times.append(time.perf_counter() - t0)
    return times


def worker(case: dict) -> dict:
    """One measurement (in a fresh process): the timed run with peak memory comes first."""
    frames = dataset(case["dataset"], case["n_frames"])
    groups = batches(frames, case["batch"])
    n_atoms = sum(len(f) for f in frames)
    warm = _warmup_frames(case["dataset"])
    result = {"atoms": n_atoms}
    if case["library"] == "featomic":
        run, density_only = _featomic_runner(case)
        run(warm)
        density_only(warm)
    else:
        fit_frames = ethanols(5, seed=1000) if case["dataset"] == "ethanol" else [frames[0][:64]]
        run, from_density, expansion, fit_time = _ncsym_runner(case, fit_frames)
        result["fit"] = fit_time
        run(warm)
        from_density(expansion.compute_dense(warm))
    _reset_peak()
    base = _rss_kib("VmRSS")
    # the timed run is repeated: the first pass is also reported apart ("cold": on this kind of
    # virtual machine, memory the process touches for the first time is slow to fault in), the
    # rates are the best pass, the same rule for both libraries
    repeat = case.get("repeat", 1)

    def over_groups():
        for g in groups:
            out = run(g)
            del out

    totals = _pass_times(repeat, over_groups)
    result["cold"] = totals[0]
    result["total"] = min(totals)
    result["peak_bytes"] = max(_rss_kib("VmHWM") - base, 0) * 1024
    if case["library"] == "featomic":
        result["density"] = min(_pass_times(repeat, lambda: [density_only(g) for g in groups]))
        result["cg"] = max(result["total"] - result["density"], 1e-9)
    else:
        t0 = time.perf_counter()
        dense = [expansion.compute_dense(g) for g in groups]
        result["density"] = time.perf_counter() - t0

        def over_densities():
            for d in dense:
                out = from_density(d)
                del out

        result["cg"] = min(_pass_times(repeat, over_densities))
    return result


def codegen_worker(case: dict) -> dict:
    """Generated-module kernels vs the generic plan kernel on lambda-SOAP products."""
    import importlib.util

    import numba

    import ncsym
    from ncsym.acdc import DenseDensity, _build_plan, _density_layout, _plan_step
    from ncsym.products import Plan, run_plan

    lmax = case["lmax"]
    frames = dataset("ethanol", case["n_frames"])
    dense = DenseDensity.from_expansion(
        ncsym.SphericalExpansion(**HYPERS, max_angular=lmax).compute_dense(frames)
    )
    x = dense.values
    n, _, p = x.shape
    out = {"atoms": n}
    # generic: one plan over all (l1 <= l2) -> every lambda, block-major output
    left = _density_layout(lmax, p, ("a", "b"), None)
    step = _plan_step(left, 1, lmax, p, ("a", "b"), None, lambda lam, sigma: True, True, False, False)
    plan = _build_plan(step, left, p, lmax, n).build()
    size = n * sum((2 * b.lam + 1) * b.width for b in step.blocks)
    idx = np.arange(n, dtype=np.int64)
    flat = x.reshape(-1)
    run_plan(plan, flat, flat, idx, idx, np.empty(size))
    best = 1e9
    for _ in range(3):
        t0 = time.perf_counter()
        buf = np.empty(size)
        run_plan(plan, flat, flat, idx, idx, buf)
        best = min(best, time.perf_counter() - t0)
        del buf
    out["generic"] = best
    out["bytes"] = size * 8
    out["fma"] = plan.flops * n
    reuse = np.empty(size)
    run_plan(plan, flat, flat, idx, idx, reuse)
    t0 = time.perf_counter()
    run_plan(plan, flat, flat, idx, idx, reuse)
    out["generic_reused"] = time.perf_counter() - t0
    # compute bound: every sample writes the same rows (output stays in cache), one thread
    one = _build_plan(step, left, p, lmax, 1).build()
    rows = one.rows.copy()
    rows[:, 1] = 0
    hot = Plan(one.groups, one.pair_m1, one.pair_m2, rows, one.nz_pair, one.nz_coef, one.buf_size, one.flops)
    small = np.empty(sum((2 * b.lam + 1) * b.width for b in step.blocks))
    sub = idx[: min(n, 200)]
    numba.set_num_threads(1)
    run_plan(hot, flat, flat, sub, sub, small)
    t0 = time.process_time()
    run_plan(hot, flat, flat, sub, sub, small)
    out["in_cache_per_atom_1thread"] = (time.process_time() - t0) / len(sub)
    numba.set_num_threads(case["threads"])
    # generated module, kept in the cache directory so that Numba's cache survives runs (the
    # file is only rewritten when its content changes: Numba keys its cache on the mtime)
    from ncsym._cache import cache_dir

    directory = cache_dir() / "bench"
    directory.mkdir(parents=True, exist_ok=True)
    path = str(directory / f"coupling_l{lmax}_nu2.py")
    t0 = time.perf_counter()
    source = ncsym.generate_coupling_module(lmax, 2)
    out["generate_s"] = time.perf_counter() - t0
    if not os.path.exists(path) or open(path).read() != source:
        ncsym.generate_coupling_module(lmax, 2, path)
    name = f"coupling_l{lmax}_nu2"
    spec = importlib.util.spec_from_file_location(name, path)
    mod = importlib.util.module_from_spec(spec)
    sys.modules[name] = mod  # Numba's on-disk cache locates jitted functions by module name
    spec.loader.exec_module(mod)
    blocks = [np.ascontiguousarray(x[:, l * l : (l + 1) ** 2]) for l in range(lmax + 1)]
    pairs = [(l1, l2) for l1 in range(lmax + 1) for l2 in range(l1, lmax + 1)]
    rows_of = {pr: sum(2 * lam + 1 for lam in mod.LAMBDAS[pr]) for pr in pairs}
    t0 = time.perf_counter()
    for l1, l2 in pairs:
        mod.KERNELS[(l1, l2)](blocks[l1][:1], blocks[l2][:1], idx[:1], idx[:1], np.empty((1, rows_of[(l1, l2)], p * p)))
    out["compile_s"] = time.perf_counter() - t0
    best = 1e9
    for _ in range(3):
        t0 = time.perf_counter()
        for l1, l2 in pairs:
            o = np.empty((n, rows_of[(l1, l2)], p * p))
            mod.KERNELS[(l1, l2)](blocks[l1], blocks[l2], idx, idx, o)
            del o
        best = min(best, time.perf_counter() - t0)
    out["generated"] = best
    # machine write bandwidth: fresh and reused memory, all threads
    from numba import njit, prange

    @njit(parallel=True, cache=False)
    def fill(a):  # pragma: no cover - jitted
        for i in prange(a.shape[0]):
            row = a[i]
            for j in range(row.shape[0]):
                row[j] = 1.0

    shape = (max(n, 64), size // max(n, 64))
    fill(np.empty((2, 8)))
    t0 = time.perf_counter()
    arr = np.empty(shape)
    fill(arr)
    out["bw_fresh"] = arr.nbytes / (time.perf_counter() - t0)
    t0 = time.perf_counter()
    fill(arr)
    out["bw_reused"] = arr.nbytes / (time.perf_counter() - t0)
    return out


# ----------------------------------------------------------------------------- driver


def _spawn(kind: str, case: dict, threads: int, timeout: float) -> dict:
    env = dict(os.environ)
    for var in ("NUMBA_NUM_THREADS", "RAYON_NUM_THREADS", "OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        env[var] = str(threads)
    cmd = [sys.executable, os.path.abspath(__file__), "--worker", kind, json.dumps(case)]
    try:
        res = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=timeout)
    except subprocess.TimeoutExpired:
        return {"error": f"timeout after {timeout:.0f} s"}
    if res.returncode != 0:
        tail = (res.stderr or res.stdout).strip().splitlines()[-1:] or ["?"]
        return {"error": tail[0][:160]}
    return json.loads(res.stdout.strip().splitlines()[-1])


def _estimate_nu3_bytes(lmax: int, lam: int | None, dataset_name: str, n_frames: int) -> float:
    """Output bytes of uncontracted nu = 3 (from ncsym's layout, no computation)."""
    import types

    import ncsym
    from ncsym.acdc import DenseDensity

    species = [1, 6, 8] if dataset_name == "ethanol" else [14]
    atoms = 9 * n_frames if dataset_name == "ethanol" else 216
    calc = ncsym.DensityCorrelations(
        expansion={"max_angular": lmax}, correlation_order=3, max_lambda=lam, angular_cutoff=lam
    )
    d = types.SimpleNamespace(
        values=np.zeros((1, (lmax + 1) ** 2, len(species), HYPERS["max_radial"] + 1)),
        system=np.zeros(1),
        atom=np.zeros(1),
        center_type=np.array([species[0]]),
        species=np.array(species),
    )
    pipe = calc._pipeline(species[0], DenseDensity.from_expansion(d), None, 3, False)
    return 8.0 * pipe.final_size() * atoms


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--frames", type=int, default=100, help="ethanols for nu = 2")
    parser.add_argument("--batch", type=int, default=10, help="ethanols per batch")
    parser.add_argument("--nu3-frames", type=int, default=1, help="ethanols for nu = 3")
    parser.add_argument("--si-frames", type=int, default=5, help="Si216 structures for nu = 2 (one per call)")
    parser.add_argument("--nu", type=int, nargs="+", default=[2, 3], choices=[2, 3])
    parser.add_argument("--datasets", nargs="+", default=["ethanol", "Si216"], choices=["ethanol", "Si216"])
    parser.add_argument("--no-codegen", action="store_true", help="skip the generated-module table")
    parser.add_argument("--components", type=int, default=64, help="PCA components (contracted nu = 3)")
    parser.add_argument("--lmax", type=int, nargs="+", default=[4, 6])
    parser.add_argument("--repeat", type=int, default=3, help="timed passes (best reported; first also shown)")
    parser.add_argument("--timeout", type=float, default=900)
    parser.add_argument("--quick", action="store_true", help="small smoke run")
    parser.add_argument("--worker", nargs=2, metavar=("KIND", "CASE"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        kind, case = args.worker
        fn = worker if kind == "acdc" else codegen_worker
        print(json.dumps(fn(json.loads(case))))
        return 0
    if args.quick:
        args.frames, args.batch, args.nu3_frames, args.lmax, args.si_frames = 4, 2, 1, [2], 1

    print(f"# ACDC benchmark: {args.threads} threads, hypers {HYPERS}, max_angular {args.lmax}")
    print(f"# available memory {_available_bytes() / 2**30:.1f} GiB; ethanols: {args.frames} (nu=2), "
          f"{args.nu3_frames} (nu=3), batches of {args.batch}")
    rows = []
    for nu in args.nu:
        for name in args.datasets:
            for lmax in args.lmax:
                for lam in (None, lmax):
                    if name == "ethanol":
                        n_frames = args.frames if nu == 2 else args.nu3_frames
                    else:
                        n_frames = args.si_frames if nu == 2 else 1
                    base = dict(
                        dataset=name, n_frames=n_frames, batch=args.batch if name == "ethanol" else 1,
                        lmax=lmax, nu=nu, max_lambda=lam, threads=args.threads, repeat=args.repeat,
                        species=[1, 6, 8] if name == "ethanol" else [14],
                    )  # fmt: skip
                    variants = [("featomic", {}), ("ncsym", {})]
                    note = ""
                    if nu == 3:
                        need = _estimate_nu3_bytes(lmax, lam, name, n_frames)
                        if lam is None or need > 0.3 * _available_bytes():
                            note = f"uncontracted output {need / 2**30:.1f} GiB: skipped"
                            variants = []
                        variants.append(("ncsym (contracted)", {"components": args.components}))
                    results = {}
                    for label, extra in variants:
                        lib = "featomic" if label == "featomic" else "ncsym"
                        case = {**base, **extra, "library": lib}
                        results[label] = _spawn("acdc", case, args.threads, args.timeout)
                    rows.append((nu, name, lmax, lam, results, note))
                    _print_row(rows[-1])
    if args.no_codegen:
        return 0
    print()
    print("# generated-module kernels vs generic plan kernel (lambda-SOAP, all lambda, 100 ethanols, kernel only)")
    for lmax in [lm for lm in args.lmax if lm <= 4]:
        res = _spawn("codegen", {"lmax": lmax, "n_frames": args.frames, "threads": args.threads}, args.threads, args.timeout)
        _print_codegen(lmax, res)
    return 0


def _fmt_rate(res: dict, key: str) -> str:
    if "error" in res:
        return "error"
    rate = res["atoms"] / res[key]
    return f"{rate:9.0f}" if rate >= 100 else f"{rate:9.2f}" if rate < 10 else f"{rate:9.1f}"


def _print_row(row) -> None:
    nu, name, lmax, lam, results, note = row
    lam_s = "all" if lam is None else f"<={lam}"
    if not getattr(_print_row, "header", False):
        print()
        print(f"{'nu':>2} {'dataset':8} {'L':>2} {'lambda':>6} {'library':20} {'atoms/s':>9} {'CG atoms/s':>10} "
              f"{'peak MiB':>9} {'x featomic':>10} {'CG x':>9} {'mem ratio':>9} {'cold atoms/s':>12} {'cold x':>7}")
        _print_row.header = True
    ref = results.get("featomic")
    for label, res in results.items():
        if "error" in res:
            print(f"{nu:>2} {name:8} {lmax:>2} {lam_s:>6} {label:20} {res['error']}")
            continue
        speed = cg_speed = mem = cold = ""
        if ref and "error" not in ref and label != "featomic":
            speed = f"{ref['total'] / res['total']:8.1f}x"
            cold = f"{ref['cold'] / res['cold']:6.1f}x"
            cg_speed = f"{ref['cg'] / res['cg']:8.1f}x"
            mem = f"{res['peak_bytes'] / max(ref['peak_bytes'], 1):8.2f}"
        extra = f"  (fit {res['fit']:.1f} s)" if res.get("fit") else ""
        print(f"{nu:>2} {name:8} {lmax:>2} {lam_s:>6} {label:20} {_fmt_rate(res, 'total')} {_fmt_rate(res, 'cg'):>10} "
              f"{res['peak_bytes'] / 2**20:9.0f} {speed:>10} {cg_speed:>9} {mem:>9} {_fmt_rate(res, 'cold'):>12} {cold:>7}{extra}")
    if note:
        print(f"{nu:>2} {name:8} {lmax:>2} {lam_s:>6} {'featomic / ncsym':20} {note}")
    sys.stdout.flush()


def _print_codegen(lmax: int, res: dict) -> None:
    if "error" in res:
        print(f"L={lmax}: error {res['error']}")
        return
    n = res["atoms"]
    gb = res["bytes"] / 1e9
    print(f"L={lmax}: {n} atoms, output {gb:.2f} GB, {res['fma'] / n / 1e6:.2f} M multiply-adds per atom")
    print(f"  generic plan kernel : {n / res['generic']:8.0f} atoms/s  {res['fma'] / res['generic'] / 1e9:6.2f} GFMA/s  "
          f"{gb / res['generic']:6.2f} GB/s written (fresh output)")
    print(f"  generic, reused out : {n / res['generic_reused']:8.0f} atoms/s  {gb / res['generic_reused']:6.2f} GB/s")
    print(f"  generated module    : {n / res['generated']:8.0f} atoms/s  ({res['generic'] / res['generated']:.2f}x generic; "
          f"generate {res['generate_s']:.1f} s, compile or cache load {res['compile_s']:.0f} s)")
    per_atom = res["in_cache_per_atom_1thread"]
    print(f"  limits: write bandwidth {res['bw_fresh'] / 1e9:.1f} GB/s fresh / {res['bw_reused'] / 1e9:.1f} GB/s reused "
          f"-> {res['bw_fresh'] / (res['bytes'] / n):.0f} / {res['bw_reused'] / (res['bytes'] / n):.0f} atoms/s; "
          f"compute (output in cache, 1 thread) {1 / per_atom:.0f} atoms/s/thread "
          f"= {res['fma'] / n / per_atom / 1e9:.1f} GFMA/s")


if __name__ == "__main__":
    sys.exit(main())
