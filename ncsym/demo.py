"""``ncsym demo``: learn water Fock matrices end to end and report errors.

Loads the water data set shipped with the package (RHF/def2-SVP, 300 randomly rotated water
molecules with every coordinate displaced by N(0, 0.08 A); regenerate it with
``benchmarks/make_datasets.py``), computes N-center features, fits one ridge model per
(block type, species pair, orbital pair, lambda), predicts the test matrices, prints a table
of matrix and orbital-energy errors for train and test, and writes a PNG parity plot.
"""

from __future__ import annotations

import time

import numpy as np


def _table(rows: list[tuple[str, dict]]) -> str:
    cols = [
        ("mae_uha", "MAE (uHa)"),
        ("rmse_uha", "RMSE/orb (uHa)"),
        ("occupied_mae_mev", "occ. eps MAE (meV)"),
        ("homo_mae_mev", "HOMO MAE (meV)"),
        ("gap_mae_mev", "gap MAE (meV)"),
    ]
    head = f"{'set':<6}" + "".join(f"{title:>20}" for _, title in cols)
    lines = [head, "-" * len(head)]
    for name, m in rows:
        lines.append(f"{name:<6}" + "".join(f"{m[key]:>20.3f}" for key, _ in cols))
    return "\n".join(lines)


def _plot(path: str, pred, ref, overlaps, n_occ) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from scipy.linalg import eigh

    from .conventions import HARTREE_TO_EV

    fig, axes = plt.subplots(1, 2, figsize=(10, 4.5))
    p = np.concatenate([m.ravel() for m in pred])
    r = np.concatenate([m.ravel() for m in ref])
    axes[0].plot(r, p, ".", ms=2)
    lim = [r.min(), r.max()]
    axes[0].plot(lim, lim, "k-", lw=0.5)
    axes[0].set_xlabel("reference F element (Ha)")
    axes[0].set_ylabel("predicted F element (Ha)")
    axes[0].set_title("test-set Fock matrix elements")
    ep = np.concatenate(
        [eigh(a, s, eigvals_only=True)[:n] for a, s, n in zip(pred, overlaps, n_occ, strict=True)]
    )
    er = np.concatenate(
        [eigh(a, s, eigvals_only=True)[:n] for a, s, n in zip(ref, overlaps, n_occ, strict=True)]
    )
    axes[1].plot(er * HARTREE_TO_EV, ep * HARTREE_TO_EV, "o", ms=3)
    lim = [er.min() * HARTREE_TO_EV, er.max() * HARTREE_TO_EV]
    axes[1].plot(lim, lim, "k-", lw=0.5)
    axes[1].set_xlabel("reference occupied orbital energy (eV)")
    axes[1].set_ylabel("predicted (eV)")
    axes[1].set_title("occupied orbital energies (test)")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def run_demo(
    *, n_train: int = 250, n_test: int = 50, output: str | None = "ncsym-demo.png", progress: bool = True
) -> int:
    """Run the water demo; returns a process exit status.

    Parameters
    ----------
    n_train, n_test : int
        Training and test structures taken from the shipped set (300 in total).
    output : str or None
        Path of the PNG parity plot (``None``: no plot).
    progress : bool
        Show progress bars.
    """
    from .hamiltonian import load_water_dataset, metrics
    from .hamiltonian.model import HamiltonianModel

    t0 = time.perf_counter()
    data = load_water_dataset()
    frames = data.frames
    if n_train + n_test > len(frames):
        raise ValueError(f"`n_train + n_test` must be <= {len(frames)}, got {n_train + n_test}")
    train = slice(0, n_train)
    test = slice(len(frames) - n_test, len(frames))
    print(
        f"water, {data.method}/{data.basis}: {len(frames)} structures "
        f"({n_train} train, {n_test} test), {data.fock[0].shape[0]} AOs"
    )
    model = HamiltonianModel(orbitals=data.orbitals, basis=data.basis, progress=progress)
    model.fit(frames[train], data.fock[train])
    t_fit = time.perf_counter() - t0
    rows = []
    test_pred = None
    for name, sl in [("train", train), ("test", test)]:
        pred = model.predict(frames[sl])
        m = metrics(pred, data.fock[sl], data.overlap[sl], data.n_occupied[sl])
        rows.append((name, m))
        if name == "test":
            test_pred = pred
    print()
    print("Raw Fock target; energies from eigh(F_pred, S_ref); 1 Ha = 27.211 eV")
    print(_table(rows))
    if output:
        _plot(output, test_pred, data.fock[test], data.overlap[test], data.n_occupied[test])
        print(f"\nparity plot written to {output}")
    print(f"total time {time.perf_counter() - t0:.1f} s (fit {t_fit:.1f} s)")
    return 0
