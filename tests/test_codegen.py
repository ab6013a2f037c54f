"""Tests for ncsym.codegen: generated coupling modules are reproducible, standalone and exact."""

import importlib.util
import os
import subprocess
import sys

import numpy as np
import pytest

import ncsym
from ncsym.codegen import coupling_pairs, generate_coupling_module
from ncsym.products import couple_arrays

#: Unrolled and generic kernels sum the same terms in another order.
KERNEL_TOL = 1e-13


def _load(path, name):
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def generated(tmp_path_factory):
    path = tmp_path_factory.mktemp("gen") / "coupling_l1_nu3.py"
    source = generate_coupling_module(1, 3, path, cuda=True)
    return path, source


def test_reproducible_with_header(generated, tmp_path):
    path, source = generated
    assert path.read_text() == source
    assert generate_coupling_module(1, 3, cuda=True) == source
    again = tmp_path / "again.py"
    generate_coupling_module(1, 3, again, cuda=True)
    assert again.read_bytes() == path.read_bytes()
    head = source.splitlines()[:8]
    assert any(f"ncsym {ncsym.__version__}" in line for line in head)
    assert any("ncsym generate --max-l 1 --correlation-order 3 --cuda" in line for line in head)
    assert "cache=True" in source and "fastmath" not in source
    # exact values appear as comments next to the literals, e.g. -(a x b)/sqrt(2) for (1, 1) -> 1
    assert "# sqrt(2)/2" in source and "# -sqrt(2)/2" in source


def test_pairs_cover_every_iteration():
    pairs = {(l1, l2): lams for l1, l2, lams in coupling_pairs(2, 3, max_lambda=3)}
    # intermediate orders k <= 4 (first iteration, lam up to 3 + 2), then (k, l) -> lam <= 3
    assert (2, 2) in pairs and pairs[(2, 2)] == (0, 1, 2, 3, 4)
    assert pairs[(4, 2)] == (2, 3)
    assert (4, 0) not in pairs  # 4 x 0 -> 4 > max_lambda
    assert set(pairs) == {(k, l) for k in range(5) for l in range(3)} - {(4, 0)}


def test_generated_module_imports_without_sympy_or_ncsym(generated):
    path, _ = generated
    code = (
        "import sys, importlib.util\n"
        "sys.modules['sympy'] = None\n"
        "sys.modules['ncsym'] = None\n"
        f"spec = importlib.util.spec_from_file_location('gen', {str(path)!r})\n"
        "m = importlib.util.module_from_spec(spec); spec.loader.exec_module(m)\n"
        "print(sorted(m.KERNELS))\n"
    )
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr
    assert "(2, 1)" in res.stdout


def test_generated_kernels_match_generic_kernels(generated, rng):
    path, _ = generated
    module = _load(path, "ncsym_generated_l1_nu3")
    assert module.MAX_L == 1 and module.CORRELATION_ORDER == 3
    for (l1, l2), lams in module.LAMBDAS.items():
        a = rng.normal(size=(4, 2 * l1 + 1, 3))
        b = rng.normal(size=(5, 2 * l2 + 1, 2))
        ia = rng.integers(0, 4, size=6)
        ib = rng.integers(0, 5, size=6)
        result = module.couple(a, b, l1, l2, ia, ib)
        assert sorted(result) == list(lams)
        for lam in lams:
            ref = couple_arrays(a, b, l1, l2, lam, idx_a=ia, idx_b=ib)
            assert np.abs(result[lam] - ref).max() <= KERNEL_TOL * np.abs(ref).max()
    with pytest.raises(ValueError, match="is not in this module"):
        module.couple(a, b, 5, 0)
    with pytest.raises(ValueError, match="must have shape"):
        module.couple(a, b, 1, 1)


def test_cli_writes_the_same_module(tmp_path, capsys):
    from ncsym.cli import main

    out = tmp_path / "coupling.py"
    assert main(["generate", "--max-l", "1", "--correlation-order", "2", "-o", str(out)]) == 0
    assert out.read_text() == generate_coupling_module(1, 2)
    assert "CPU kernels" in capsys.readouterr().out


def test_errors():
    with pytest.raises(ValueError, match="`correlation_order` must be >= 2"):
        generate_coupling_module(2, 1)
    with pytest.raises(ValueError, match="`max_lambda` must be <= 4"):
        generate_coupling_module(2, 2, max_lambda=5)
    with pytest.raises(ValueError, match="`max_l` must be >= 0"):
        generate_coupling_module(-1, 2)


@pytest.mark.cudasim
@pytest.mark.skipif(os.environ.get("NUMBA_ENABLE_CUDASIM") != "1", reason="needs NUMBA_ENABLE_CUDASIM=1")
def test_generated_cuda_kernels_match_cpu(generated, rng):
    path, _ = generated
    module = _load(path, "ncsym_generated_l1_nu3_cuda")
    kernels = module.cuda_kernels()
    for l1, l2 in [(1, 1), (2, 1)]:
        a = rng.normal(size=(2, 2 * l1 + 1, 2))
        b = rng.normal(size=(2, 2 * l2 + 1, 2))
        idx = np.arange(2, dtype=np.int64)
        rows = sum(2 * lam + 1 for lam in module.LAMBDAS[(l1, l2)])
        ref = np.empty((2, rows, 4))
        got = np.empty((2, rows, 4))
        module.KERNELS[(l1, l2)](a, b, idx, idx, ref)
        kernels[(l1, l2)][4, 32](a, b, idx, idx, got)
        assert np.abs(got - ref).max() <= KERNEL_TOL * np.abs(ref).max()
