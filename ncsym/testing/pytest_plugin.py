"""pytest plugin for equivariance tests: hypothesis profiles and seeded fixtures.

Enable it in a project's top-level ``conftest.py``::

    pytest_plugins = ["ncsym.testing.pytest_plugin"]

On import it registers two hypothesis profiles and, unless a profile other than hypothesis'
``"default"`` is already loaded, loads the one named by the ``HYPOTHESIS_PROFILE`` environment
variable (default ``"dev"``); ``pytest --hypothesis-profile=ci`` still wins.

``dev``
    :data:`DEV_MAX_EXAMPLES` examples, no deadline (first calls compile Numba kernels).
``ci``
    :data:`CI_MAX_EXAMPLES` examples, ``derandomize=True`` (the same examples on every run),
    no deadline.

Fixtures
--------
``equivariance_tolerance``
    ``{"rtol": DEFAULT_RTOL, "norm_floor": DEFAULT_NORM_FLOOR}``, to pass as
    ``assert_equivariant(descriptor, frame, **equivariance_tolerance)``.
``equivariance_seed``
    An integer seed, stable per test: ``NCSYM_TEST_SEED`` (default 0) mixed with the test id.
``rng``
    ``numpy.random.Generator`` seeded with ``equivariance_seed``.
"""

from __future__ import annotations

import os
import zlib

import numpy as np
import pytest
from hypothesis import HealthCheck, settings

from .asserts import DEFAULT_NORM_FLOOR, DEFAULT_RTOL

__all__ = [
    "DEV_MAX_EXAMPLES",
    "CI_MAX_EXAMPLES",
    "register_profiles",
    "equivariance_tolerance",
    "equivariance_seed",
    "rng",
]

#: Examples per hypothesis test in the ``dev`` and ``ci`` profiles.
DEV_MAX_EXAMPLES = 10
CI_MAX_EXAMPLES = 50
#: Environment variables read by the plugin.
PROFILE_ENV = "HYPOTHESIS_PROFILE"
SEED_ENV = "NCSYM_TEST_SEED"


def register_profiles() -> None:
    """Register the ``dev`` and ``ci`` hypothesis profiles (idempotent)."""
    common = {"deadline": None, "suppress_health_check": [HealthCheck.too_slow]}
    settings.register_profile("dev", max_examples=DEV_MAX_EXAMPLES, **common)
    settings.register_profile(
        "ci", max_examples=CI_MAX_EXAMPLES, derandomize=True, print_blob=True, **common
    )


register_profiles()
if settings.get_current_profile_name() == "default":
    settings.load_profile(os.environ.get(PROFILE_ENV, "dev"))


@pytest.fixture
def equivariance_tolerance() -> dict:
    """Default tolerances of the asserts, as keyword arguments."""
    return {"rtol": DEFAULT_RTOL, "norm_floor": DEFAULT_NORM_FLOOR}


@pytest.fixture
def equivariance_seed(request) -> int:
    """Seed stable across runs for a given test (``NCSYM_TEST_SEED`` mixed with its id)."""
    base = int(os.environ.get(SEED_ENV, "0"))
    return (base + zlib.crc32(request.node.nodeid.encode())) % (2**32)


@pytest.fixture
def rng(equivariance_seed) -> np.random.Generator:
    """A numpy random generator seeded with ``equivariance_seed``."""
    return np.random.default_rng(equivariance_seed)
