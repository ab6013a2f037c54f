"""Small real calculators for the pipeline, Dask and metatensor tests.

:class:`HistogramHarmonics` is a genuine (if crude) equivariant descriptor: for each centre
atom and neighbour species, a radial histogram of the neighbours within the cutoff times
the real spherical harmonics of their directions (ncsym's Numba harmonics, checked against
sphericart in ``test_pipeline.py``).  Blocks follow DESIGN.md: keys ``o3_lambda, o3_sigma,
center_type, neighbor_type``, samples ``system, atom``, properties ``n``.  The wrappers add
behaviour needed to test failure handling (slowness, a worker killing itself once, a
transient error once) around real results; none of them fakes a result.
"""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import numpy as np
from ase.neighborlist import neighbor_list

import ncsym
from ncsym.blocks import Block, BlockMap, Labels


class HistogramHarmonics:
    """``c[i, a, l, m, n] = sum_{j in a, |r_ij| in bin n} Y_l^m(r_ij)`` for every atom ``i``."""

    def __init__(self, *, cutoff=3.0, n_bins=4, max_angular=2, species=(1, 8)):
        self.cutoff = float(cutoff)
        self.n_bins = int(n_bins)
        self.max_angular = int(max_angular)
        self.species = None if species is None else [int(z) for z in species]

    def __repr__(self):
        return (
            f"HistogramHarmonics(cutoff={self.cutoff}, n_bins={self.n_bins}, "
            f"max_angular={self.max_angular}, species={self.species})"
        )

    def compute(self, frames) -> BlockMap:
        frames = list(frames)
        if self.species is None:
            species = sorted({int(z) for a in frames for z in a.numbers})
        else:
            species = self.species
        index = {z: k for k, z in enumerate(species)}
        lmax, nb = self.max_angular, self.n_bins
        rows: dict[tuple, list] = {}
        for s, atoms in enumerate(frames):
            pos = atoms.positions
            if not np.all(np.isfinite(pos)):
                bad = np.nonzero(~np.isfinite(pos).all(axis=1))[0].tolist()
                raise ValueError(f"positions contain NaN or inf for atoms {bad}")
            unknown = sorted(set(int(z) for z in atoms.numbers) - set(species))
            if unknown:
                raise ValueError(f"`frames` contain species {unknown} not in `species` {species}")
            i, j, d = neighbor_list("ijD", atoms, self.cutoff)
            r = np.linalg.norm(d, axis=1)
            bins = np.minimum((r / self.cutoff * nb).astype(np.int64), nb - 1)
            y = ncsym.spherical_harmonics(d, lmax) if len(d) else np.zeros((0, (lmax + 1) ** 2))
            coef = np.zeros((len(atoms), len(species), (lmax + 1) ** 2, nb))
            a = np.array([index[int(z)] for z in atoms.numbers[j]], dtype=np.int64)
            for lm in range((lmax + 1) ** 2):
                np.add.at(coef[:, :, lm, :], (i, a, bins), y[:, lm])
            for c, zc in enumerate(atoms.numbers):
                for ka, za in enumerate(species):
                    for lam in range(lmax + 1):
                        rows.setdefault((lam, 1, int(zc), za), []).append(
                            (s, c, coef[c, ka, lam * lam : (lam + 1) * (lam + 1), :])
                        )
        keys = sorted(rows)
        blocks = []
        for key in keys:
            entries = rows[key]
            samples = Labels(("system", "atom"), np.array([(s, c) for s, c, _ in entries], dtype=np.int32))
            values = np.stack([v for _, _, v in entries])
            blocks.append(Block(values, samples, Labels.range("n", nb)))
        names = ("o3_lambda", "o3_sigma", "center_type", "neighbor_type")
        key_labels = Labels(names, np.array(keys, dtype=np.int32).reshape(-1, 4))
        return BlockMap(key_labels, blocks, {"calculator": "HistogramHarmonics", "species": species})


class Slow:
    """Sleep ``delay`` seconds per structure, then compute with ``inner``."""

    def __init__(self, inner, delay):
        self.inner, self.delay = inner, float(delay)

    def compute(self, frames):
        time.sleep(self.delay * len(frames))
        return self.inner.compute(frames)


def _in_dask_worker() -> bool:
    try:
        from distributed import get_worker

        get_worker()
    except (ImportError, ValueError):
        return False
    return True


class KillWorkerOnce:
    """On a Dask worker, SIGKILL the worker process the first time a structure tagged
    ``atoms.info["kill_here"]`` is computed (``marker`` records that it happened)."""

    def __init__(self, inner, marker):
        self.inner, self.marker = inner, str(marker)

    def compute(self, frames):
        frames = list(frames)
        if any(a.info.get("kill_here") for a in frames) and _in_dask_worker():
            if not os.path.exists(self.marker):
                Path(self.marker).write_text(str(os.getpid()))
                os.kill(os.getpid(), signal.SIGKILL)
        return self.inner.compute(frames)


class FailOnce:
    """Raise ``RuntimeError`` (a transient failure) the first time a structure tagged
    ``atoms.info["fail_here"]`` is computed."""

    def __init__(self, inner, marker):
        self.inner, self.marker = inner, str(marker)

    def compute(self, frames):
        frames = list(frames)
        if any(a.info.get("fail_here") for a in frames) and not os.path.exists(self.marker):
            Path(self.marker).write_text("failed once")
            raise RuntimeError("transient failure (first attempt)")
        return self.inner.compute(frames)


def water_frames(n, seed=0, box=None):
    """``n`` distorted water molecules (optionally in a periodic box of side ``box``)."""
    from ase import Atoms

    rng = np.random.default_rng(seed)
    base = np.array([[0.0, 0.0, 0.119], [0.0, 0.763, -0.477], [0.0, -0.763, -0.477]])
    frames = []
    for k in range(n):
        pos = base + 0.05 * rng.normal(size=(3, 3))
        atoms = Atoms("OH2", positions=pos)
        if box is not None:
            atoms.cell = np.eye(3) * box
            atoms.pbc = True
        atoms.info["k"] = k
        frames.append(atoms)
    return frames


def mixed_frames(n, seed=1):
    """Water, methane and ammonia-like molecules of varied size (species 1, 6, 7, 8)."""
    from ase.build import molecule

    rng = np.random.default_rng(seed)
    names = ["H2O", "CH4", "NH3", "CH3OH", "H2O"]
    frames = []
    for k in range(n):
        atoms = molecule(names[k % len(names)])
        atoms.positions += 0.03 * rng.normal(size=atoms.positions.shape)
        atoms.info["k"] = k
        frames.append(atoms)
    return frames


def assert_blockmaps_equal(a: BlockMap, b: BlockMap, *, atol=0.0):
    """Same keys (in order), samples, properties; values equal (bitwise when ``atol=0``)."""
    assert a.keys == b.keys, f"keys differ: {a.keys.values.tolist()} vs {b.keys.values.tolist()}"
    for k, (ba, bb) in enumerate(zip(a.blocks, b.blocks, strict=True)):
        assert ba.samples == bb.samples, f"block {k}: samples differ"
        assert ba.properties == bb.properties, f"block {k}: properties differ"
        assert ba.values.shape == bb.values.shape, f"block {k}: shapes {ba.values.shape} {bb.values.shape}"
        if atol == 0.0:
            assert np.array_equal(ba.values, bb.values), f"block {k}: values differ"
        else:
            np.testing.assert_allclose(ba.values, bb.values, rtol=0, atol=atol)


def histogram_features(frames, *, n_bins=4, species=(1, 8)):
    """The same features from a plain function ``f(frames, **hypers) -> BlockMap``."""
    return HistogramHarmonics(n_bins=n_bins, species=species).compute(frames)
