"""Generate the Hamiltonian data sets (distorted water and ethanol, RHF/def2-SVP).

``water``: 300 randomly rotated water molecules, every coordinate displaced by N(0, 0.08 A),
seed 0 -- the set shipped as ``ncsym/data/water_def2svp.npz`` (read it with
:func:`ncsym.hamiltonian.load_water_dataset`).  ``ethanol``: 200 frames, sigma 0.06 A,
seed 0 (not shipped: too large; regenerate it, ~3 minutes on one core).

Each frame's SCF result is cached (``--cache-dir``, default ``$NCSYM_CACHE_DIR/datasets`` or
``~/.cache/ncsym/datasets``), so an interrupted run resumes and a larger ``--frames`` reuses
earlier frames.  Frame ``k`` depends only on ``(seed, k)``.

Usage::

    python benchmarks/make_datasets.py water                 # writes ncsym/data/water_def2svp.npz
    python benchmarks/make_datasets.py ethanol --out ethanol_def2svp.npz
    python benchmarks/make_datasets.py water --frames 20 --out /tmp/w.npz --no-cache
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

PRESETS = {
    "water": dict(molecule="H2O", n_frames=300, sigma=0.08,
                  out=ROOT / "ncsym" / "data" / "water_def2svp.npz"),
    "ethanol": dict(molecule="CH3CH2OH", n_frames=200, sigma=0.06,
                    out=Path("ethanol_def2svp.npz")),
}


def default_cache_dir() -> Path:
    env = os.environ.get("NCSYM_CACHE_DIR")
    base = Path(env) if env else Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "ncsym"
    return base / "datasets"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("name", choices=sorted(PRESETS))
    parser.add_argument("--frames", type=int, help="number of frames (default: preset)")
    parser.add_argument("--sigma", type=float, help="displacement width, Angstrom")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--basis", default="def2-svp")
    parser.add_argument("--method", default="RHF", choices=["RHF", "RKS"])
    parser.add_argument("--xc", default="PBE", help="functional for RKS")
    parser.add_argument("--out", type=Path, help="output .npz (default: preset)")
    parser.add_argument("--cache-dir", type=Path, default=None)
    parser.add_argument("--no-cache", action="store_true", help="do not read or write a cache")
    parser.add_argument("--threads", type=int, default=1, help="PySCF (OpenMP) threads")
    parser.add_argument("--quiet", action="store_true")
    args = parser.parse_args(argv)

    from pyscf import lib

    from ncsym.hamiltonian import make_distorted_dataset

    lib.num_threads(args.threads)
    preset = PRESETS[args.name]
    n_frames = args.frames or preset["n_frames"]
    sigma = preset["sigma"] if args.sigma is None else args.sigma
    out = args.out or preset["out"]
    cache = None if args.no_cache else (args.cache_dir or default_cache_dir())

    start = time.perf_counter()
    data = make_distorted_dataset(
        preset["molecule"], n_frames, sigma=sigma, seed=args.seed, basis=args.basis,
        method=args.method, xc=args.xc, progress=not args.quiet, cache_dir=cache,
    )
    elapsed = time.perf_counter() - start
    out.parent.mkdir(parents=True, exist_ok=True)
    data.save(out)
    size = out.stat().st_size
    n_ao = len(data.mo_energy[0])
    print(f"{args.name}: {len(data)} frames {args.method}/{args.basis} ({n_ao} AOs), "
          f"sigma {sigma} A, seed {args.seed}: {elapsed:.1f} s "
          f"({elapsed / len(data):.2f} s/frame, cache {'off' if cache is None else cache}) "
          f"-> {out} ({size / 1e6:.2f} MB)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
