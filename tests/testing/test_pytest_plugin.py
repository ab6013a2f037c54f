"""Tests for ncsym.testing.pytest_plugin, run the way a user enables it: ``pytest_plugins``."""

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import ncsym

#: Wall-clock limit for the inner pytest run, seconds.
INNER_RUN_TIMEOUT = 120

CONFTEST = 'pytest_plugins = ["ncsym.testing.pytest_plugin"]\n'

USER_TESTS = textwrap.dedent(
    """
    import os

    import ase
    import numpy as np
    from hypothesis import given, settings

    from ncsym.testing import assert_equivariant
    from ncsym.testing import strategies as nst


    def invariant(frame):
        return np.linalg.norm(frame.positions - frame.positions.mean(axis=0), axis=1)


    def test_profile():
        expected = os.environ["EXPECTED_PROFILE"]
        assert settings.get_current_profile_name() == expected
        assert settings.default.deadline is None


    def test_fixtures(equivariance_tolerance, equivariance_seed, rng):
        assert set(equivariance_tolerance) == {"rtol", "norm_floor"}
        assert isinstance(equivariance_seed, int)
        assert isinstance(rng, np.random.Generator)
        frame = ase.Atoms("H2O", positions=rng.normal(size=(3, 3)))
        from ncsym.testing import ArrayLayout

        layout = ArrayLayout(o3_lambda=0, atom_axis=0)
        assert_equivariant(invariant, frame, layout=layout, seed=equivariance_seed,
                           **equivariance_tolerance)


    def test_seed_is_stable(equivariance_seed):
        import zlib

        base = int(os.environ.get("NCSYM_TEST_SEED", "0"))
        nodeid = "test_user.py::test_seed_is_stable"
        assert equivariance_seed == (base + zlib.crc32(nodeid.encode())) % 2**32


    @given(frame=nst.molecules())
    def test_with_strategies(frame):
        assert len(frame) >= 1
    """
)


def _run_user_suite(tmp_path: Path, profile: str | None, extra_args=()) -> subprocess.CompletedProcess:
    (tmp_path / "conftest.py").write_text(CONFTEST)
    (tmp_path / "test_user.py").write_text(USER_TESTS)
    env = dict(os.environ)
    package_root = str(Path(ncsym.__file__).resolve().parent.parent)
    env["PYTHONPATH"] = os.pathsep.join([package_root, env.get("PYTHONPATH", "")])
    env.pop("HYPOTHESIS_PROFILE", None)
    # hypothesis loads its built-in "ci" profile by default when it detects a CI environment
    for name in ("CI", "TF_BUILD"):
        env.pop(name, None)
    if profile is not None:
        env["HYPOTHESIS_PROFILE"] = profile
    env["EXPECTED_PROFILE"] = extra_args[-1].split("=")[-1] if extra_args else (profile or "dev")
    command = [
        sys.executable,
        "-m",
        "pytest",
        "-q",
        "-p",
        "no:cacheprovider",
        str(tmp_path),
        "--rootdir",
        str(tmp_path),
        *extra_args,
    ]
    return subprocess.run(
        command, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=INNER_RUN_TIMEOUT
    )


def test_plugin_registers_profiles_and_fixtures(tmp_path):
    default = _run_user_suite(tmp_path, None)
    assert default.returncode == 0, default.stdout + default.stderr
    assert "4 passed" in default.stdout
    from_environment = _run_user_suite(tmp_path, "ci")
    assert from_environment.returncode == 0, from_environment.stdout + from_environment.stderr
    # the command-line option of hypothesis' own plugin still wins over the environment
    chosen = _run_user_suite(tmp_path, "dev", ["--hypothesis-profile=ci"])
    assert chosen.returncode == 0, chosen.stdout + chosen.stderr
