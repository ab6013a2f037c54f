"""Tests for the ``ncsym`` command line."""

import pytest

from ncsym import cg as cgmod
from ncsym.cli import main


@pytest.fixture(autouse=True)
def _cache(tmp_path, monkeypatch):
    monkeypatch.setenv("NCSYM_CACHE_DIR", str(tmp_path))
    cgmod.clear_memory_cache()
    yield
    cgmod.clear_memory_cache()


def test_info(capsys):
    assert main(["info"]) == 0
    out = capsys.readouterr().out
    assert "ncsym" in out and "cache dir" in out and "CUDA kernels" in out


def test_cg_build_show_clear(capsys, tmp_path):
    assert main(["cg", "build", "--lmax", "3", "--quiet"]) == 0
    assert "built exactly" in capsys.readouterr().out
    cgmod.clear_memory_cache()
    assert main(["cg", "build", "--lmax", "3", "--quiet"]) == 0
    assert "loaded from cache" in capsys.readouterr().out
    assert main(["cg", "show"]) == 0
    assert "cg-v1-lmax3-lam3.npz" in capsys.readouterr().out
    assert main(["cg", "show", "--triple", "1", "1", "0", "--exact"]) == 0
    assert "-sqrt(3)/3" in capsys.readouterr().out
    assert main(["cg", "clear"]) == 0
    assert "removed 1 files" in capsys.readouterr().out
    assert list(tmp_path.glob("*.npz")) == []


def test_cg_bad_input(capsys):
    assert main(["cg", "show", "--triple", "1", "1", "5"]) == 2
    assert "triangle rule" in capsys.readouterr().err


def test_unknown_command():
    with pytest.raises(SystemExit):
        main(["nope"])
