"""Tests of :mod:`ncsym.distributed`: Dask LocalCluster runs equal in-process runs, in order,
with workers killed, transient failures retried, bad structures reported, and clear errors
for unreachable schedulers."""

import os
import signal
import threading
import time
import warnings

import numpy as np
import pytest
from _pipeline_calculators import (
    FailOnce,
    HistogramHarmonics,
    KillWorkerOnce,
    Slow,
    assert_blockmaps_equal,
    mixed_frames,
    water_frames,
)

from ncsym.blocks import BlockMap
from ncsym.cli import main
from ncsym.pipeline import ChunkError, SkippedStructureWarning, StructureError, compute_chunked, load_features

distributed = pytest.importorskip("distributed")

from ncsym.distributed import ChunkRunner, connect, numba_kernel_stats  # noqa: E402

SPECIES = (1, 6, 7, 8)
#: An address where nothing listens (TCP discard port).
UNREACHABLE = "tcp://127.0.0.1:9"


@pytest.fixture(scope="module")
def client():
    """A LocalCluster of 2 worker processes, 1 thread each, shared by this module's quick tests."""
    c = connect(n_workers=2, threads_per_worker=1, timeout=30)
    yield c
    c.close()


@pytest.fixture
def calc():
    return HistogramHarmonics(species=SPECIES)


# ----------------------------------------------------------------------------- connection errors
def test_unreachable_scheduler_fails_fast(calc):
    t0 = time.perf_counter()
    with pytest.raises(
        ConnectionError, match=r"cannot reach the Dask scheduler at `scheduler` 'tcp://127.0.0.1:9'"
    ):
        connect(UNREACHABLE, timeout=2)
    with pytest.raises(ConnectionError, match="cannot reach the Dask scheduler"):
        compute_chunked(calc, water_frames(3), client=UNREACHABLE, progress=False)
    assert time.perf_counter() - t0 < 10


def test_unreachable_scheduler_cli(tmp_path, capsys):
    import ase.io

    path = tmp_path / "in.xyz"
    ase.io.write(path, water_frames(3))
    argv = [
        "features",
        str(path),
        "-o",
        str(tmp_path / "out"),
        "--kind",
        "_pipeline_calculators:HistogramHarmonics",
    ]
    assert main(argv + ["--scheduler", UNREACHABLE, "--scheduler-timeout", "1", "--quiet"]) == 1
    assert "cannot reach the Dask scheduler" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


def test_connect_argument_errors():
    with pytest.raises(ValueError, match="`scheduler` 'http://host:1' is not a valid Dask address"):
        connect("http://host:1")
    with pytest.raises(ValueError, match="`n_workers` must be a positive integer, got 0"):
        connect(n_workers=0)
    with pytest.raises(ValueError, match="`threads_per_worker` must be a positive integer"):
        connect(threads_per_worker=0)
    with pytest.raises(ValueError, match="`n_workers` only applies to a local cluster"):
        connect(UNREACHABLE, n_workers=2)
    with pytest.raises(ValueError, match="`timeout` must be a positive number of seconds"):
        connect(UNREACHABLE, timeout=-1)
    with pytest.raises(TypeError, match="`scheduler` must be an address string"):
        connect(8786)


# ----------------------------------------------------------------------------- LocalCluster runs
def test_dask_equals_in_process_and_chunked(client, calc, tmp_path):
    """Bitwise identical results, in input order: in-process, chunked, Dask (memory and disk)."""
    frames = water_frames(4) + mixed_frames(19)
    ref = calc.compute(frames)
    assert_blockmaps_equal(ref, compute_chunked(calc, frames, chunk_size=5, progress=False))
    out = compute_chunked(calc, frames, chunk_size=3, client=client, progress=False)
    assert_blockmaps_equal(ref, out)
    summary = compute_chunked(
        calc, frames, chunk_size=2, client=client, output=tmp_path / "f", progress=False
    )
    assert summary.workers == 2 and summary.n_chunks == 12
    assert_blockmaps_equal(ref, load_features(tmp_path / "f"))
    # automatic chunk size: at least 4 chunks per worker thread
    summary = compute_chunked(calc, frames, client=client, output=tmp_path / "g.mts", progress=False)
    assert summary.chunk_size == 3
    assert_blockmaps_equal(ref, load_features(tmp_path / "g.mts"))


def test_real_calculators_on_dask(client):
    """SphericalExpansion and lambda-SOAP on Dask equal the in-process results."""
    density = pytest.importorskip("ncsym.density")
    from ncsym.pipeline import CalculatorSpec

    frames = water_frames(3) + mixed_frames(8)
    hypers = dict(cutoff=3.0, max_radial=2, max_angular=2, species=list(SPECIES))
    calcs = [density.SphericalExpansion(**hypers)]
    try:
        calcs.append(CalculatorSpec("acdc", {**hypers, "nu": 2}))
    except ImportError:
        pass
    for calc in calcs:
        ref = calc.compute(frames)
        out = compute_chunked(calc, frames, chunk_size=2, client=client, progress=False)
        assert_blockmaps_equal(ref, out, atol=1e-14)  # bitwise in practice; 1e-14 allowed


def test_worker_killed_mid_run(client, calc, tmp_path):
    """A worker process dies (SIGKILL) while computing a chunk: nothing lost or duplicated."""
    frames = water_frames(24)
    frames[13].info["kill_here"] = True
    marker = tmp_path / "killed"
    killer = KillWorkerOnce(Slow(calc, 0.02), marker)
    out = compute_chunked(killer, frames, chunk_size=2, client=client, progress=False)
    assert marker.exists(), "the worker was not killed"
    assert_blockmaps_equal(calc.compute(frames), out)
    for b in out.blocks:  # each (system, atom) exactly once, in order
        s = b.samples.values
        assert len(np.unique(s, axis=0)) == len(s)
    client.wait_for_workers(2, timeout=60)


def test_worker_killed_while_writing_chunks(client, calc, tmp_path):
    """Workers write chunk files themselves (shared filesystem); one dies: the output holds
    every structure once, and only the chunk files and the manifest."""
    frames = water_frames(20)
    frames[9].info["kill_here"] = True
    with ChunkRunner(client, calc) as runner:
        assert runner.shared_directory(str(tmp_path)) == str(tmp_path)
        assert not list(tmp_path.iterdir())  # the probe file is gone
    killer = KillWorkerOnce(Slow(calc, 0.02), tmp_path / "killed")
    summary = compute_chunked(
        killer, frames, chunk_size=3, client=client, output=tmp_path / "out", progress=False
    )
    assert (tmp_path / "killed").exists() and summary.n_computed == 20
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == [
        f"chunk-{i:05d}.npz" for i in range(7)
    ] + ["manifest.json"]
    assert_blockmaps_equal(calc.compute(frames), load_features(tmp_path / "out"))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["killed", "out"]
    client.wait_for_workers(2, timeout=60)


def test_transient_failure_is_retried(client, calc, tmp_path):
    frames = water_frames(10)
    frames[6].info["fail_here"] = True
    out = compute_chunked(
        FailOnce(calc, tmp_path / "m1"), frames, chunk_size=3, client=client, progress=False, retries=1
    )
    assert (tmp_path / "m1").exists()
    assert_blockmaps_equal(calc.compute(frames), out)
    with pytest.raises(
        ChunkError, match=r"chunk 2 \(structures 6..8\) failed after 0 retries: RuntimeError: transient"
    ):
        compute_chunked(
            FailOnce(calc, tmp_path / "m2"), frames, chunk_size=3, client=client, progress=False, retries=0
        )


def test_bad_structure_on_dask(client, calc):
    frames = water_frames(12)
    frames[9].positions[0] = np.nan
    with pytest.raises(
        StructureError, match=r"structure 9 \(frame 9 of <list>\) failed: ValueError: positions contain NaN"
    ):
        compute_chunked(calc, frames, chunk_size=4, client=client, progress=False)
    with pytest.warns(SkippedStructureWarning, match="structure 9"):
        out = compute_chunked(calc, frames, chunk_size=4, client=client, progress=False, on_error="skip")
    good = [i for i in range(12) if i != 9]
    ref = calc.compute([frames[i] for i in good])
    systems = np.array(good)
    for b_ref, b_out in zip(ref.blocks, out.blocks, strict=True):
        np.testing.assert_array_equal(b_ref.values, b_out.values)
        np.testing.assert_array_equal(systems[b_ref.samples.column("system")], b_out.samples.column("system"))
    assert out.info["skipped"][0]["system"] == 9


def test_kernels_compiled_once_per_worker(client, calc):
    compute_chunked(calc, water_frames(8), chunk_size=1, client=client, progress=False)
    stats = numba_kernel_stats(client)
    assert len(stats) == 2
    for worker in stats.values():
        sph = worker["kernels"]["ncsym.kernels.sph.sph_batch"]
        assert sph["signatures"] == 1  # eight chunks, one compilation (or cache load)
        assert sph["cache_hits"] + sph["cache_misses"] == 1


def _has_profiler(dask_worker):
    return "profile" in dask_worker.periodic_callbacks


def _numba_threads():
    import numba

    return numba.config.NUMBA_NUM_THREADS


def test_local_cluster_settings(client):
    """Clusters started by ncsym: no task profiler, one Numba thread per worker thread."""
    assert not any(client.run(_has_profiler).values())
    assert set(client.run(_numba_threads).values()) == {1}


def test_chunk_runner_arguments(client, calc):
    with pytest.raises(TypeError, match="`client` must be a dask.distributed.Client"):
        ChunkRunner(3.0, calc)
    with ChunkRunner(client, calc, max_in_flight=3) as runner:
        assert runner.n_workers == 2 and runner.max_in_flight == 3


# ----------------------------------------------------------------------------- slow
@pytest.mark.slow
def test_numba_cache_on_disk_across_worker_restarts(tmp_path, monkeypatch, calc):
    """Fresh cache: workers compile (misses) and write it; restarted workers load it (hits)."""
    cache = tmp_path / "numba-cache"
    monkeypatch.setenv("NUMBA_CACHE_DIR", str(cache))
    c = connect(n_workers=2, timeout=60)
    try:
        frames = water_frames(6)
        compute_chunked(calc, frames, chunk_size=1, client=c, progress=False)
        first = numba_kernel_stats(c)
        assert sum(w["kernels"]["ncsym.kernels.sph.sph_batch"]["cache_misses"] for w in first.values()) >= 1
        assert any(p.suffix == ".nbi" for p in cache.rglob("*"))
        c.restart()
        compute_chunked(calc, frames, chunk_size=1, client=c, progress=False)
        second = numba_kernel_stats(c)
        for w in second.values():
            sph = w["kernels"]["ncsym.kernels.sph.sph_batch"]
            assert sph["cache_hits"] == 1 and sph["cache_misses"] == 0
    finally:
        c.close()


@pytest.mark.slow
def test_cli_local_cluster(tmp_path, capsys):
    import ase.io

    frames = mixed_frames(15)
    path = tmp_path / "in.xyz"
    ase.io.write(path, frames)
    argv = [
        "features",
        str(path),
        "-o",
        str(tmp_path / "out.mts"),
        "--kind",
        "_pipeline_calculators:HistogramHarmonics",
    ]
    argv += ["--species", "1", "6", "7", "8", "--workers", "2", "--chunk-size", "2", "--quiet"]
    assert main(argv) == 0
    assert "on 2 Dask worker threads" in capsys.readouterr().out
    ref = HistogramHarmonics(species=SPECIES).compute(ase.io.read(path, ":"))
    assert_blockmaps_equal(ref, load_features(tmp_path / "out.mts"))


@pytest.mark.slow
def test_worker_killed_from_outside(tmp_path, calc):
    """SIGKILL a busy worker process from the test while chunks are in flight."""
    c = connect(n_workers=2, timeout=60)
    try:
        frames = water_frames(40)
        pids = list(c.run(os.getpid).values())
        timer = threading.Timer(1.5, os.kill, (pids[0], signal.SIGKILL))
        timer.start()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            out = compute_chunked(Slow(calc, 0.1), frames, chunk_size=2, client=c, progress=False)
        timer.join()
        assert pids[0] not in c.run(os.getpid).values()
        assert_blockmaps_equal(calc.compute(frames), BlockMap(out.keys, out.blocks, out.info))
    finally:
        c.close()
