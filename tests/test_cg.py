"""Tests for ncsym.cg: exact real Clebsch-Gordan tables and their disk cache."""

import multiprocessing
import os
import warnings

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import ncsym
from ncsym import cg as cgmod
from ncsym._exact_cg import complex_cg_squared

TOL = 1e-14  # float64 round-off on O(1) coefficients
EQUIVARIANCE_TOL = 1e-12


@pytest.fixture
def cache_dir(tmp_path, monkeypatch):
    monkeypatch.setenv("NCSYM_CACHE_DIR", str(tmp_path))
    cgmod.clear_memory_cache()
    yield tmp_path
    cgmod.clear_memory_cache()


def _u_matrix(l):
    """Complex -> real change of basis from DESIGN.md (rows real m, columns complex m)."""
    u = np.zeros((2 * l + 1, 2 * l + 1), dtype=complex)
    s2 = 1 / np.sqrt(2)
    for m in range(-l, l + 1):
        if m < 0:
            u[m + l, m + l] = 1j * s2
            u[m + l, -m + l] = -1j * (-1) ** m * s2
        elif m == 0:
            u[l, l] = 1
        else:
            u[m + l, -m + l] = s2
            u[m + l, m + l] = (-1) ** m * s2
    return u


def _sympy_real_cg(l1, l2, lam):
    from sympy.physics.wigner import clebsch_gordan as sympy_cg

    c = np.zeros((2 * l1 + 1, 2 * l2 + 1, 2 * lam + 1))
    for m1 in range(-l1, l1 + 1):
        for m2 in range(-l2, l2 + 1):
            if abs(m1 + m2) <= lam:
                c[m1 + l1, m2 + l2, m1 + m2 + lam] = float(sympy_cg(l1, l2, lam, m1, m2, m1 + m2))
    raw = np.einsum("Mk,ijk,ai,bj->abM", _u_matrix(lam), c, _u_matrix(l1).conj(), _u_matrix(l2).conj())
    raw = raw.imag if (l1 + l2 + lam) % 2 else raw.real
    return (-1) ** (l1 + l2 + lam) * raw


def _triples(lmax):
    for l1 in range(lmax + 1):
        for l2 in range(lmax + 1):
            for lam in range(abs(l1 - l2), l1 + l2 + 1):
                yield l1, l2, lam


def test_known_values_cross_product():
    cg = ncsym.clebsch_gordan(1, 1, 1).todense()
    rng = np.random.default_rng(0)
    a, b = rng.normal(size=3), rng.normal(size=3)
    out = np.einsum("abc,a,b->c", cg, a, b)
    xyz = [2, 0, 1]  # (y, z, x) -> (x, y, z)
    expected = -np.cross(a[xyz], b[xyz])[[1, 2, 0]] / np.sqrt(2)
    np.testing.assert_allclose(out, expected, atol=TOL)


@pytest.mark.parametrize("l", range(7))
def test_known_values_scalar_product(l):
    cg = ncsym.clebsch_gordan(l, l, 0).todense()
    rng = np.random.default_rng(l)
    a, b = rng.normal(size=2 * l + 1), rng.normal(size=2 * l + 1)
    out = np.einsum("abc,a,b->c", cg, a, b)[0]
    assert abs(out - (-1) ** l * (a @ b) / np.sqrt(2 * l + 1)) < TOL * (1 + abs(out))


@pytest.mark.parametrize("l1,l2,lam", list(_triples(4)))
def test_agrees_with_sympy_wigner(l1, l2, lam):
    ours = ncsym.clebsch_gordan(l1, l2, lam).todense()
    np.testing.assert_allclose(ours, _sympy_real_cg(l1, l2, lam), atol=TOL)


def test_exact_values_are_sympy_exact():
    import sympy
    from sympy.physics.wigner import clebsch_gordan as sympy_cg

    # complex coefficients, exact
    for l1, l2, lam in [(2, 3, 4), (4, 4, 2), (5, 3, 6)]:
        for m1 in range(-l1, l1 + 1):
            for m2 in range(-l2, l2 + 1):
                if abs(m1 + m2) > lam:
                    continue
                s, p, q = complex_cg_squared(l1, m1, l2, m2, lam)
                ref = sympy_cg(l1, l2, lam, m1, m2, m1 + m2)
                assert sympy.simplify(s * sympy.sqrt(sympy.Rational(p, q)) - ref) == 0
    exact = cgmod.clebsch_gordan_exact(1, 1, 0)
    assert exact[(0, 0, 0)] == -1 / sympy.sqrt(3)


@pytest.mark.parametrize("l1,l2", [(l1, l2) for l1 in range(6) for l2 in range(6)])
def test_orthonormal_and_complete(l1, l2):
    lams = range(abs(l1 - l2), l1 + l2 + 1)
    full = np.concatenate([ncsym.clebsch_gordan(l1, l2, lam).todense() for lam in lams], axis=2).reshape(
        (2 * l1 + 1) * (2 * l2 + 1), -1
    )
    n = full.shape[0]
    assert full.shape == (n, n)
    np.testing.assert_allclose(full.T @ full, np.eye(n), atol=TOL * 10)
    np.testing.assert_allclose(full @ full.T, np.eye(n), atol=TOL * 10)


@given(l1=st.integers(0, 6), l2=st.integers(0, 6), data=st.data())
@settings(max_examples=40, deadline=None)
def test_swap_symmetry(l1, l2, data):
    lam = data.draw(st.integers(abs(l1 - l2), l1 + l2))
    a = ncsym.clebsch_gordan(l1, l2, lam).todense()
    b = ncsym.clebsch_gordan(l2, l1, lam).todense()
    np.testing.assert_allclose(b, (-1) ** (l1 + l2 + lam) * a.transpose(1, 0, 2), atol=TOL)


def _fitted_wigner(rot, lmax, rng):
    """Real Wigner matrices fitted from sphericart harmonics (independent reference)."""
    sphericart = pytest.importorskip("sphericart")
    calc = sphericart.SphericalHarmonics(lmax)
    pts = rng.normal(size=(200, 3))
    y = calc.compute(pts)
    yr = calc.compute(pts @ rot.T)
    out = []
    for l in range(lmax + 1):
        s = slice(l * l, (l + 1) ** 2)
        d, *_ = np.linalg.lstsq(y[:, s], yr[:, s], rcond=None)
        out.append(d.T)
    return out


@given(seed=st.integers(0, 2**32 - 1), l1=st.integers(0, 5), l2=st.integers(0, 5), data=st.data())
@settings(max_examples=30, deadline=None)
def test_coupling_is_equivariant(seed, l1, l2, data):
    lam = data.draw(st.integers(abs(l1 - l2), l1 + l2))
    rng = np.random.default_rng(seed)
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
    d = _fitted_wigner(rot, max(l1, l2, lam), rng)
    cg = ncsym.clebsch_gordan(l1, l2, lam).todense()
    a, b = rng.normal(size=2 * l1 + 1), rng.normal(size=2 * l2 + 1)
    lhs = np.einsum("abc,a,b->c", cg, d[l1] @ a, d[l2] @ b)
    rhs = d[lam] @ np.einsum("abc,a,b->c", cg, a, b)
    scale = np.linalg.norm(a) * np.linalg.norm(b)
    assert np.abs(lhs - rhs).max() <= 1e-10 * scale  # fitted D carries lstsq round-off


def test_flat_tables_match_single(cache_dir):
    tables = ncsym.cg_tables(5)
    assert tables.index.shape == (6, 6, 6)
    for l1, l2, lam in tables.triples.tolist():
        np.testing.assert_array_equal(
            tables.dense(l1, l2, lam),
            cgmod._to_coo(l1, l2, lam, *cgmod._triple_exact(l1, l2, lam)[:4]).todense(),
        )
    assert not tables.coef.flags.writeable
    assert tables.index[0, 3, 1] == -1
    t = tables.index[2, 3, 4]
    s = slice(tables.offsets[t], tables.offsets[t + 1])
    assert np.all(tables.m1[s] <= 4) and np.all(tables.mu[s] <= 8)


def test_single_table_is_a_copy():
    a = ncsym.clebsch_gordan(2, 2, 2)
    a.data[:] = 0.0
    assert ncsym.clebsch_gordan(2, 2, 2).nnz > 0 and np.abs(ncsym.clebsch_gordan(2, 2, 2).data).max() > 0


def test_max_lambda_above_lmax(cache_dir):
    tables = ncsym.cg_tables(2, max_lambda=4)
    np.testing.assert_array_equal(tables.dense(2, 2, 4), ncsym.clebsch_gordan(2, 2, 4).todense())
    with pytest.raises(ValueError, match="max_lambda"):
        ncsym.cg_tables(2, max_lambda=5)


def test_cache_round_trip(cache_dir):
    fresh = ncsym.cg_tables(4)
    path = cgmod.cache_path(4, 4)
    assert path.exists()
    cgmod.clear_memory_cache()
    loaded = ncsym.cg_tables(4)
    assert loaded is not fresh
    for name in ["triples", "offsets", "m1", "m2", "mu", "coef", "index"]:
        np.testing.assert_array_equal(getattr(loaded, name), getattr(fresh, name))
    exact = cgmod.load_exact(4)
    assert set(exact) == {tuple(t) for t in fresh.triples.tolist()}
    for key, table in exact.items():
        dense = fresh.dense(*key)
        for (m1, m2, mu), value in table.items():
            l1, l2, lam = key
            assert abs(float(value) - dense[m1 + l1, m2 + l2, mu + lam]) < TOL


def test_in_memory_cache_returns_same_object(cache_dir):
    assert ncsym.cg_tables(3) is ncsym.cg_tables(3)


@pytest.mark.parametrize("damage", ["truncate", "garbage", "flip", "foreign"])
def test_corrupt_cache_is_rebuilt(cache_dir, damage):
    fresh = ncsym.cg_tables(3)
    path = cgmod.cache_path(3, 3)
    raw = path.read_bytes()
    if damage == "truncate":
        path.write_bytes(raw[: len(raw) // 2])
    elif damage == "garbage":
        path.write_bytes(b"not a cache file")
    elif damage == "flip":
        with np.load(path) as data:
            arrays = dict(data)
        arrays["coef"] = arrays["coef"].copy()
        arrays["coef"][5] += 1e-3
        np.savez(path, **arrays)
    else:
        with np.load(path) as data:
            arrays = dict(data)
        arrays["tag"] = np.array("someone-else")
        np.savez(path, **arrays)
    cgmod.clear_memory_cache()
    with pytest.warns(RuntimeWarning, match="rebuilding Clebsch-Gordan cache"):
        rebuilt = ncsym.cg_tables(3)
    np.testing.assert_array_equal(rebuilt.coef, fresh.coef)
    cgmod.clear_memory_cache()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        again = ncsym.cg_tables(3)  # the rebuilt file is now valid: no warning
    np.testing.assert_array_equal(again.coef, fresh.coef)


def _worker(cache, lmax, queue):
    os.environ["NCSYM_CACHE_DIR"] = cache
    from ncsym import cg as cg_

    cg_.clear_memory_cache()
    t = cg_.cg_tables(lmax)
    queue.put(float(np.abs(t.coef).sum()))


def test_concurrent_writers(cache_dir):
    ctx = multiprocessing.get_context("spawn")
    queue = ctx.Queue()
    procs = [ctx.Process(target=_worker, args=(str(cache_dir), 6, queue)) for _ in range(2)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(120)
        assert p.exitcode == 0
    sums = [queue.get(timeout=5) for _ in procs]
    assert sums[0] == sums[1]
    leftovers = [p.name for p in cache_dir.iterdir() if p.name.endswith(".tmp")]
    assert leftovers == []
    cgmod.clear_memory_cache()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert float(np.abs(ncsym.cg_tables(6).coef).sum()) == sums[0]


def test_unwritable_cache_dir_still_works(tmp_path, monkeypatch):
    target = tmp_path / "file"
    target.write_text("x")  # a file where a directory should be
    monkeypatch.setenv("NCSYM_CACHE_DIR", str(target / "sub"))
    cgmod.clear_memory_cache()
    with pytest.warns(RuntimeWarning, match="could not write"):
        tables = ncsym.cg_tables(2)
    assert tables.nnz > 0
    cgmod.clear_memory_cache()


@pytest.mark.parametrize(
    "args,exc,match",
    [
        ((-1, 1, 1), ValueError, "`l1` must be >= 0"),
        ((1, 1, 3), ValueError, "triangle rule"),
        ((2, 0, 1), ValueError, "triangle rule"),
        ((1.5, 1, 1), TypeError, "`l1` must be an integer"),
        ((1, "2", 1), TypeError, "`l2` must be an integer"),
        ((21, 21, 0), ValueError, "must be <= 20"),
        ((1, 1, -1), ValueError, "`lam` must be >= 0"),
    ],
)
def test_bad_input(args, exc, match):
    with pytest.raises(exc, match=match):
        ncsym.clebsch_gordan(*args)


def test_bad_lmax():
    with pytest.raises(ValueError, match="`lmax` must be <= 20"):
        ncsym.cg_tables(25)
    with pytest.raises(TypeError, match="`lmax` must be an integer"):
        ncsym.cg_tables(2.0)


def test_featomic_agreement():
    coeffs = pytest.importorskip("featomic.clebsch_gordan._coefficients")
    tm = coeffs.calculate_cg_coefficients(5, "python-dense", "numpy", np.float64, "cpu")
    for key, block in tm.items():
        l1, l2, lam = (int(v) for v in key.values)
        ref = block.values.reshape(2 * l1 + 1, 2 * l2 + 1, 2 * lam + 1)
        # featomic stores raw; its products multiply by (-1)^(l1+l2+lam): ours is that table
        np.testing.assert_allclose(
            ncsym.clebsch_gordan(l1, l2, lam).todense(), (-1) ** (l1 + l2 + lam) * ref, atol=TOL
        )
