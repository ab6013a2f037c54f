"""``ncsym demo``: the strongest end-to-end path the package offers.

Currently: build the exact Clebsch-Gordan tables (or load them from the cache) and check
that coupling two random real spherical tensors is rotation-equivariant with Wigner matrices
fitted from the package's own harmonics.  Replaced by the Hamiltonian demo when
``ncsym.hamiltonian`` has its model.
"""

from __future__ import annotations

import time

import numpy as np


def run_demo(
    *, n_train: int = 250, n_test: int = 50, output: str | None = None, progress: bool = True
) -> int:
    from . import cg

    t0 = time.perf_counter()
    tables = cg.cg_tables(8, progress=progress)
    print(f"CG tables l <= 8: {tables.nnz} non-zeros in {time.perf_counter() - t0:.3f} s")
    rng = np.random.default_rng(0)
    q = rng.normal(size=4)
    q /= np.linalg.norm(q)
    w, x, y, z = q
    rot = np.array(
        [
            [1 - 2 * (y * y + z * z), 2 * (x * y - z * w), 2 * (x * z + y * w)],
            [2 * (x * y + z * w), 1 - 2 * (x * x + z * z), 2 * (y * z - x * w)],
            [2 * (x * z - y * w), 2 * (y * z + x * w), 1 - 2 * (x * x + y * y)],
        ]
    )
    from .rotations import wigner_d

    d = wigner_d(rot, 8)
    worst = 0.0
    for l1, l2, lam in tables.triples.tolist():
        c = tables.dense(l1, l2, lam)
        a, b = rng.normal(size=2 * l1 + 1), rng.normal(size=2 * l2 + 1)
        lhs = np.einsum("abc,a,b->c", c, d[l1] @ a, d[l2] @ b)
        rhs = d[lam] @ np.einsum("abc,a,b->c", c, a, b)
        worst = max(worst, np.abs(lhs - rhs).max() / (np.linalg.norm(a) * np.linalg.norm(b)))
    print(f"max relative equivariance error over {len(tables.triples)} couplings: {worst:.2e}")
    return 0 if worst < 1e-12 else 1
