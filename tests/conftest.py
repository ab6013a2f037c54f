"""Shared test configuration: hypothesis profiles and a seeded random generator.

Select the hypothesis profile with the ``HYPOTHESIS_PROFILE`` environment variable
(``dev`` by default, ``ci`` in continuous integration) or ``--hypothesis-profile``.  The
profiles are those of :mod:`ncsym.testing.pytest_plugin` (one definition).
"""

import os

import numpy as np
import pytest
from hypothesis import settings

from ncsym.testing.pytest_plugin import register_profiles

#: Seed of the autouse ``rng`` fixture (and of numpy's legacy global generator).
TEST_SEED = 20240611

register_profiles()
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "dev"))


@pytest.fixture(autouse=True)
def rng() -> np.random.Generator:
    """A seeded generator for every test; also seeds numpy's global generator."""
    np.random.seed(TEST_SEED)
    return np.random.default_rng(TEST_SEED)
