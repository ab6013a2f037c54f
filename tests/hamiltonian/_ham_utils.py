"""Shared builders for the Hamiltonian tests (plain functions, no fixtures)."""

from __future__ import annotations

import functools

import numpy as np
import scipy.linalg

#: Random points used to fit real Wigner matrices from spherical harmonics.
_N_FIT_POINTS = 200


def random_symmetric(rng: np.random.Generator, n: int) -> np.ndarray:
    """A random symmetric (n, n) matrix with O(1) entries."""
    a = rng.normal(size=(n, n))
    return a + a.T


def wigner_from_sphericart(rotation: np.ndarray, lmax: int) -> list[np.ndarray]:
    """Independent reference: ``D_l`` from ``Y_l(R r) = D_l Y_l(r)`` by least squares.

    Uses sphericart's real spherical harmonics (same convention as ncsym) on random points.
    """
    import sphericart

    rng = np.random.default_rng(12345)
    points = rng.normal(size=(_N_FIT_POINTS, 3))
    calc = sphericart.SphericalHarmonics(lmax)
    y = calc.compute(points)
    y_rot = calc.compute(points @ np.asarray(rotation).T)
    out = []
    for l in range(lmax + 1):
        sl = slice(l * l, (l + 1) ** 2)
        d_t, *_ = np.linalg.lstsq(y[:, sl], y_rot[:, sl], rcond=None)
        out.append(d_t.T)
    return out


def ao_wigner(rotation: np.ndarray, numbers, orbitals) -> np.ndarray:
    """Block-diagonal AO rotation matrix ``D`` (``F(R A) = D F(A) D^T``)."""
    lmax = max(l for shells in orbitals.values() for _, l in shells)
    d = wigner_from_sphericart(rotation, lmax)
    blocks = [d[l] for z in numbers for _, l in orbitals[int(z)]]
    return scipy.linalg.block_diag(*blocks)


def random_orbitals(rng: np.random.Generator, species, lmax: int = 3, max_shells: int = 4):
    """Random shell layouts ``{Z: [(n, l), ...]}`` with unique (n, l) per species."""
    orbitals = {}
    for z in species:
        shells = []
        counts: dict[int, int] = {}
        for _ in range(int(rng.integers(1, max_shells + 1))):
            l = int(rng.integers(0, lmax + 1))
            counts[l] = counts.get(l, 0) + 1
            shells.append((l + counts[l], l))
        orbitals[int(z)] = shells
    return orbitals


def rotated(frame, rotation: np.ndarray):
    """Copy of ``frame`` with positions ``R r``."""
    out = frame.copy()
    out.positions = frame.positions @ np.asarray(rotation).T
    return out


@functools.lru_cache(maxsize=32)
def _scf_cached(symbols: tuple, positions: tuple, basis: str, method: str):
    import ase

    from ncsym.hamiltonian import run_scf

    frame = ase.Atoms(symbols=list(symbols), positions=np.array(positions).reshape(-1, 3))
    return run_scf(frame, basis, method)


def scf(frame, basis: str = "sto-3g", method: str = "RHF"):
    """Cached :func:`ncsym.hamiltonian.run_scf` (tests reuse the same molecules)."""
    return _scf_cached(
        tuple(frame.get_chemical_symbols()),
        tuple(np.asarray(frame.positions).ravel().tolist()),
        basis,
        method,
    )
