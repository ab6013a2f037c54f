"""Learning curves of the Hamiltonian model: error vs training size for feature variants.

Prints one table per molecule: for each feature variant (body order of on-site and pair
features, message passing) and training size, the test element-wise MAE (micro-Hartree),
the orbital-normalised RMSE, the occupied-orbital-energy MAE (meV) and fit time.

Data: the shipped water set (RHF/def2-SVP, 300 structures) and, with ``--ethanol PATH``, an
ethanol set made by ``python benchmarks/make_datasets.py ethanol --out PATH`` (200 structures,
sigma 0.06 A).  The last ``--n-test`` structures are the test set.

Usage::

    python benchmarks/bench_hamiltonian.py --water-sizes 25 50 100 250
    python benchmarks/bench_hamiltonian.py --ethanol ethanol.npz --ethanol-sizes 25 50 150
    python benchmarks/bench_hamiltonian.py --water-sizes --ethanol ethanol.npz \
        --variants "nu=2/1, rc 5, L 4" "nu=2/2 (PCA 32), rc 5, L 4"

The variants after the first four change the density cutoff (rc, Angstrom) and max_angular
(L), use pair features of body order nu = 2 with the atom-centred rho_i^(2) PCA-contracted to
16 or 32 components per block before the coupling with g_ij (fitted on the training set, and
fitted one atom-pair family at a time: ``low_memory``), optionally with the j-centred term
rho_j^(1) (x) g_ij added to the pair features (``pair_terms=("i", "j")``: three-body terms
next to the PCA-truncated four-body ones), optionally learning ``F - F0`` with ``F0`` the Fock
matrix of PySCF's minao initial guess (``baseline="minao"``), optionally in the Löwdin-orthogonal
basis (``orthogonalize=True``: ``S^-1/2 (F - F0) S^-1/2``), or the equivariant polynomial kernel.
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from ncsym.hamiltonian import load_dataset, load_water_dataset, metrics
from ncsym.hamiltonian.model import DEFAULT_FEATURES, HamiltonianModel

#: HamiltonianModel options of the kernel-select variants
KERNEL_SELECT = dict(
    low_memory=True,
    basis="def2-svp",
    baseline="minao",
    kernel="select",
    n_active=None,
    kernel_components=48,
    cv_groups="structure",
)

#: name -> (feature hyperparameters over DEFAULT_FEATURES, HamiltonianModel options)
VARIANTS = {
    "nu=1 on-site, nu=1 pair": (dict(nu_onsite=1, nu_pair=1), {}),
    "nu=2 on-site, nu=0 pair": (dict(nu_onsite=2, nu_pair=0), {}),
    "nu=2 on-site, nu=1 pair": (dict(nu_onsite=2, nu_pair=1), {}),
    "nu=2 on-site, nu=1 pair + MP": (dict(nu_onsite=2, nu_pair=1, message_passing=True), {}),
    "nu=2/1, kernel zeta=2": (dict(nu_onsite=2, nu_pair=1), dict(kernel=True, zeta=2, n_active=300)),
    "nu=2/1, rc 5, L 4": (dict(nu_pair=1, cutoff=5.0, max_angular=4), {}),
    "nu=2/2 (PCA 16), rc 5, L 4": (
        dict(nu_pair=2, inner_contraction=16, cutoff=5.0, max_angular=4),
        dict(low_memory=True),
    ),
    "nu=2/2 (PCA 32), rc 5, L 4": (
        dict(nu_pair=2, inner_contraction=32, cutoff=5.0, max_angular=4),
        dict(low_memory=True),
    ),
    "nu=2/2 (PCA 32) + j term, rc 5, L 4": (
        dict(nu_pair=2, inner_contraction=32, cutoff=5.0, max_angular=4, pair_terms=("i", "j")),
        dict(low_memory=True),
    ),
    # delta-learning on the Fock matrix of PySCF's minao initial guess (one Fock build per frame)
    "nu=2/2 (PCA 32) + j term, minao baseline": (
        dict(nu_pair=2, inner_contraction=32, cutoff=5.0, max_angular=4, pair_terms=("i", "j")),
        dict(low_memory=True, basis="def2-svp", baseline="minao"),
    ),
    # 20 GB peak at 150 ethanols
    "nu=2/2 (PCA 48) + j term, rc 5, L 4": (
        dict(nu_pair=2, inner_contraction=48, cutoff=5.0, max_angular=4, pair_terms=("i", "j")),
        dict(low_memory=True),
    ),
    "nu=2/2 (PCA 48) + j term, minao baseline": (
        dict(nu_pair=2, inner_contraction=48, cutoff=5.0, max_angular=4, pair_terms=("i", "j")),
        dict(low_memory=True, basis="def2-svp", baseline="minao"),
    ),
    # exact zeta = 2 kernel ridge (every training sample active, invariants projected on 48
    # principal axes per block) or the linear model, whichever the structure-grouped LOO
    # prefers per target
    "nu=2/2 (PCA 32) + j, minao, kernel select": (
        dict(nu_pair=2, inner_contraction=32, cutoff=5.0, max_angular=4, pair_terms=("i", "j")),
        KERNEL_SELECT,
    ),
    # the same with rho_i^(2) contracted to 40 components (ethanol 150: 18.7 GB peak)
    "nu=2/2 (PCA 40) + j, minao, kernel select": (
        dict(nu_pair=2, inner_contraction=40, cutoff=5.0, max_angular=4, pair_terms=("i", "j")),
        KERNEL_SELECT,
    ),
    # both models mixed per target with the LOO-optimal weight
    "nu=2/2 (PCA 40) + j, minao, kernel blend": (
        dict(nu_pair=2, inner_contraction=40, cutoff=5.0, max_angular=4, pair_terms=("i", "j")),
        dict(KERNEL_SELECT, kernel="blend"),
    ),
    # rho_i^(2) contracted to 48 components (ethanol 150: 59.9 uHa, 31 min, 21.4 GB peak before the
    # feature blocks were released during the fit)
    "nu=2/2 (PCA 48) + j, minao, kernel blend": (
        dict(nu_pair=2, inner_contraction=48, cutoff=5.0, max_angular=4, pair_terms=("i", "j")),
        dict(KERNEL_SELECT, kernel="blend"),
    ),
    # rho_i^(2) contracted to 56 components (ethanol 150: 58.7 uHa, 32 min, 19.4 GB peak)
    "nu=2/2 (PCA 56) + j, minao, kernel blend": (
        dict(nu_pair=2, inner_contraction=56, cutoff=5.0, max_angular=4, pair_terms=("i", "j")),
        dict(KERNEL_SELECT, kernel="blend"),
    ),
    # the same, learning the Löwdin-orthogonalised residual S^-1/2 (F - F0) S^-1/2 (ethanol 150:
    # 46.0 uHa, 37 min, 20.8 GB peak)
    "nu=2/2 (PCA 56) + j, minao, orthogonal, kernel blend": (
        dict(nu_pair=2, inner_contraction=56, cutoff=5.0, max_angular=4, pair_terms=("i", "j")),
        dict(KERNEL_SELECT, kernel="blend", orthogonalize=True),
    ),
}
DEFAULT_VARIANTS = list(VARIANTS)[:4]


def curve(name, data, sizes, n_test, variants, base):
    frames = data.frames
    test = slice(len(frames) - n_test, len(frames))
    print(f"\n{name}: {len(frames)} structures, {data.method}/{data.basis}, test = last {n_test}")
    head = f"{'features':<32}{'n_train':>8}{'MAE uHa':>10}{'RMSE/orb uHa':>14}{'occ MAE meV':>13}{'median frame uHa':>18}{'fit s':>8}"
    print(head)
    print("-" * len(head))
    for vname in variants:
        hypers = dict(base, **VARIANTS[vname][0])
        options = VARIANTS[vname][1]
        for n in sizes:
            t0 = time.perf_counter()
            try:
                model = HamiltonianModel(
                    orbitals=data.orbitals, features=hypers, progress=False, chunk_size=10, **options
                )
                model.fit(frames[:n], data.fock[:n])
            except Exception as exc:  # report and go on with the next row
                print(f"{vname:<32}{n:>8}  failed: {type(exc).__name__}: {exc}")
                continue
            fit_s = time.perf_counter() - t0
            pred = model.predict(frames[test])
            m = metrics(pred, data.fock[test], data.overlap[test], data.n_occupied[test])
            per_frame = [np.abs(p - r).mean() * 1e6 for p, r in zip(pred, data.fock[test], strict=True)]
            print(
                f"{vname:<32}{n:>8}{m['mae_uha']:>10.2f}{m['rmse_uha']:>14.1f}"
                f"{m['occupied_mae_mev']:>13.3f}{np.median(per_frame):>18.2f}{fit_s:>8.1f}"
            )


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--water-sizes", type=int, nargs="*", default=[25, 50, 100, 250])
    p.add_argument("--n-test", type=int, default=50)
    p.add_argument("--ethanol", help="ethanol data set (.npz from make_datasets.py)")
    p.add_argument("--ethanol-sizes", type=int, nargs="*", default=[25, 50, 100, 150])
    p.add_argument("--variants", nargs="*", default=DEFAULT_VARIANTS, choices=list(VARIANTS))
    args = p.parse_args()
    base = dict(DEFAULT_FEATURES)
    print(f"base feature hyperparameters: {base}")
    if args.water_sizes:
        curve("water", load_water_dataset(), args.water_sizes, args.n_test, args.variants, base)
    if args.ethanol:
        curve("ethanol", load_dataset(args.ethanol), args.ethanol_sizes, args.n_test, args.variants, base)


if __name__ == "__main__":
    main()
