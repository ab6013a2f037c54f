"""ncsym: symmetry-adapted N-center features for atomistic machine learning.

Importing ncsym compiles nothing and writes nothing: the public names below are resolved
lazily on first use.  Conventions (real spherical harmonics, real Clebsch-Gordan, parity,
units) are documented in :mod:`ncsym.conventions`.
"""

from __future__ import annotations

import importlib

from ._version import __version__

_LAZY = {
    # foundation
    "clebsch_gordan": "ncsym.cg",
    "cg_tables": "ncsym.cg",
    "CGTables": "ncsym.cg",
    "spherical_harmonics": "ncsym.sph",
    "wigner_d": "ncsym.rotations",
    "random_rotation": "ncsym.rotations",
    # containers
    "Labels": "ncsym.blocks",
    "Block": "ncsym.blocks",
    "BlockMap": "ncsym.blocks",
    # features
    "SphericalExpansion": "ncsym.density",
    "PairExpansion": "ncsym.density",
    "CGProduct": "ncsym.products",
    "DensityCorrelations": "ncsym.acdc",
    "EquivariantPowerSpectrum": "ncsym.acdc",
    "PairFeatures": "ncsym.pairs",
    "hamiltonian_features": "ncsym.pairs",
    "generate_coupling_module": "ncsym.codegen",
    # pipeline
    "compute_chunked": "ncsym.pipeline",
    "load_features": "ncsym.pipeline",
}

__all__ = ["__version__", *_LAZY]


def __getattr__(name: str):
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'ncsym' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__():
    return sorted(__all__)
