"""Property tests for equivariant atomistic descriptors (ours and anyone else's).

A descriptor is any callable from one ``ase.Atoms`` to an ``ncsym.BlockMap``, a
``metatensor.TensorMap`` (featomic's calculators) or plain arrays described by an
:class:`ArrayLayout`.  The asserts check the transformation rules of :mod:`ncsym.conventions`
under rotations, inversion, atom permutations, translations and lattice-vector shifts, and
report the worst block, its relative error, the transformation, a reproducible seed and the
structure::

    from ncsym.testing import assert_equivariant
    assert_equivariant(calculator.compute, frame)

:mod:`ncsym.testing.strategies` holds hypothesis strategies for rotations, molecules, periodic
cells, permutations, lattice shifts and hyperparameters (it needs ``hypothesis``);
:mod:`ncsym.testing.pytest_plugin` registers hypothesis profiles and fixtures
(``pytest_plugins = ["ncsym.testing.pytest_plugin"]``).
"""

from __future__ import annotations

import importlib

from ._layout import ArrayLayout
from .asserts import (
    CHECKS,
    DEFAULT_NORM_FLOOR,
    DEFAULT_RTOL,
    VECTOR_MATCH_TOLERANCE,
    BlockError,
    CheckResult,
    DescriptorError,
    EquivarianceError,
    assert_equivariant,
    assert_inversion_parity,
    assert_periodic_invariant,
    assert_permutation_equivariant,
    assert_rotation_equivariant,
    assert_translation_invariant,
    equivariance_error,
)

__all__ = [
    "ArrayLayout",
    "BlockError",
    "CHECKS",
    "CheckResult",
    "DEFAULT_NORM_FLOOR",
    "DEFAULT_RTOL",
    "DescriptorError",
    "EquivarianceError",
    "VECTOR_MATCH_TOLERANCE",
    "assert_equivariant",
    "assert_inversion_parity",
    "assert_periodic_invariant",
    "assert_permutation_equivariant",
    "assert_rotation_equivariant",
    "assert_translation_invariant",
    "equivariance_error",
    "strategies",
]


def __getattr__(name: str):
    # strategies need hypothesis, an optional dependency: import on first use only
    if name == "strategies":
        module = importlib.import_module(".strategies", __name__)
        globals()[name] = module
        return module
    raise AttributeError(f"module 'ncsym.testing' has no attribute {name!r}")
