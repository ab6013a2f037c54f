"""Tests of :mod:`ncsym.pipeline`: chunked computation, file input, outputs, bad input, CLI."""

import json
import os
import subprocess
import sys
import textwrap
import warnings

import ase.io
import numpy as np
import pytest
from _pipeline_calculators import (
    HistogramHarmonics,
    assert_blockmaps_equal,
    mixed_frames,
    water_frames,
)

import ncsym
from ncsym.blocks import Block, BlockMap, Labels
from ncsym.cli import main
from ncsym.pipeline import (
    CalculatorSpec,
    ResourceEstimate,
    RunSummary,
    SkippedStructureWarning,
    StructureError,
    compute_chunked,
    estimate_resources,
    iter_chunks,
    load_features,
    parse_memory,
    scan_species,
)

MIXED_SPECIES = (1, 6, 7, 8)


def relabel(bm: BlockMap, systems) -> BlockMap:
    """Independent re-labelling of the ``system`` column: local i -> systems[i]."""
    systems = np.asarray(systems)
    blocks = []
    for b in bm.blocks:
        values = b.samples.values.copy()
        values[:, 0] = systems[values[:, 0]]
        blocks.append(Block(b.values, Labels(b.samples.names, values), b.properties))
    return BlockMap(bm.keys, blocks, bm.info)


@pytest.fixture
def calc():
    return HistogramHarmonics(species=MIXED_SPECIES)


@pytest.fixture
def frames():
    return mixed_frames(17)


# ----------------------------------------------------------------------------- reference calculator
def test_calculator_harmonics_match_sphericart():
    """The test calculator's harmonics are the real ones (independent reference)."""
    sphericart = pytest.importorskip("sphericart")
    xyz = np.random.default_rng(3).normal(size=(20, 3))
    ref = sphericart.SphericalHarmonics(3).compute(xyz)
    np.testing.assert_allclose(ncsym.spherical_harmonics(xyz, 3), ref, atol=1e-13)


def test_calculator_is_equivariant_under_rotation():
    """HistogramHarmonics is a genuine equivariant descriptor (l=1 block rotates like a vector)."""
    from scipy.spatial.transform import Rotation

    frame = water_frames(1)[0]
    rot = Rotation.from_rotvec([0.3, -1.1, 0.7]).as_matrix()
    rotated = frame.copy()
    rotated.positions = frame.positions @ rot.T
    calc = HistogramHarmonics(species=(1, 8))
    a = calc.compute([frame]).block(o3_lambda=1, center_type=8, neighbor_type=1).values
    b = calc.compute([rotated]).block(o3_lambda=1, center_type=8, neighbor_type=1).values
    perm = [1, 2, 0]  # (y, z, x)
    r_yzx = rot[np.ix_(perm, perm)]
    np.testing.assert_allclose(b, np.einsum("mk,skp->smp", r_yzx, a), atol=1e-12)


# ----------------------------------------------------------------------------- chunking
@pytest.mark.parametrize("chunk_size", [1, 3, 7, 17, 100])
def test_chunked_equals_in_process(calc, frames, chunk_size):
    ref = calc.compute(frames)
    out = compute_chunked(calc, frames, chunk_size=chunk_size, progress=False)
    assert_blockmaps_equal(ref, out)  # bitwise, same key order, samples in input order


def test_automatic_chunk_size_and_order(calc, frames):
    ref = calc.compute(frames)
    out = compute_chunked(calc, frames, progress=False)
    assert_blockmaps_equal(ref, out)
    for b in out.blocks:
        systems = b.samples.column("system")
        assert np.all(np.diff(systems) >= 0)


def test_chunks_with_different_keys_are_merged_in_order(calc):
    # chunk 0 is only water (no C or N centres): keys appear in later chunks
    frames = water_frames(3) + mixed_frames(6)
    ref = calc.compute(frames)
    out = compute_chunked(calc, frames, chunk_size=2, progress=False)
    assert_blockmaps_equal(ref, out)


def test_inputs_single_atoms_iterable_and_index(calc, frames):
    assert_blockmaps_equal(calc.compute(frames[:1]), compute_chunked(calc, frames[0], progress=False))
    gen = (a for a in frames)
    assert_blockmaps_equal(calc.compute(frames), compute_chunked(calc, gen, chunk_size=4, progress=False))
    for index, expected in [
        ("::2", frames[::2]),
        (-3, frames[-3:-2]),
        (slice(1, 5), frames[1:5]),
        ("4:", frames[4:]),
    ]:
        out = compute_chunked(calc, frames, index=index, chunk_size=2, progress=False)
        assert_blockmaps_equal(calc.compute(expected), out)
    gen = (a for a in frames)
    out = compute_chunked(calc, gen, index="2:9:3", chunk_size=2, progress=False)
    assert_blockmaps_equal(calc.compute(frames[2:9:3]), out)


def test_progress_bar_is_silenceable(calc, frames, capsys):
    compute_chunked(calc, frames, chunk_size=5, progress=True)
    assert "ncsym features" in capsys.readouterr().err
    compute_chunked(calc, frames, chunk_size=5, progress=False)
    assert capsys.readouterr().err == ""


def _real_calculators(species):
    """ncsym's feature calculators (skipped where a module is not available yet)."""
    density = pytest.importorskip("ncsym.density")
    calcs = [density.SphericalExpansion(cutoff=3.0, max_radial=3, max_angular=3, species=species)]
    try:
        from ncsym.acdc import DensityCorrelations
    except ImportError:
        return calcs
    expansion = dict(cutoff=3.0, max_radial=2, max_angular=2, species=species)
    calcs.append(DensityCorrelations(expansion=expansion, correlation_order=2))
    calcs.append(DensityCorrelations(expansion=expansion, correlation_order=3, max_lambda=1))
    return calcs


def test_real_calculators_chunked_equal_in_process():
    """SphericalExpansion and ACDC (nu = 2, 3): chunked results bitwise equal, in order,
    even when chunks hold different species (keys merged in the calculator's order)."""
    species = list(MIXED_SPECIES)
    frames = water_frames(4) + mixed_frames(9)
    for calc in _real_calculators(species):
        ref = calc.compute(frames)
        for chunk_size in (1, 4):
            assert_blockmaps_equal(ref, compute_chunked(calc, frames, chunk_size=chunk_size, progress=False))


def test_pair_features_chunked_equal_in_process():
    """Pair / Hamiltonian features (samples system, first_atom, second_atom) by kind name."""
    pytest.importorskip("ncsym.pairs")
    frames = water_frames(3) + mixed_frames(6)
    hypers = dict(species=list(MIXED_SPECIES), cutoff=3.0, max_radial=2, max_angular=1, nu_onsite=1)
    for spec in [
        CalculatorSpec("pair", {**hypers, "nu_pair": 1}),
        CalculatorSpec("hamiltonian", {**hypers, "nu_pair": 0}),
    ]:
        ref = spec.compute(frames)
        assert ref.blocks[0].samples.names == ("system", "first_atom", "second_atom")
        for chunk_size in (1, 4):
            assert_blockmaps_equal(ref, compute_chunked(spec, frames, chunk_size=chunk_size, progress=False))
    assert CalculatorSpec("hamiltonian", {"cutoff": 3.0, "max_radial": 2, "max_angular": 1}).species_unset()
    with pytest.raises(ValueError, match="kind 'hamiltonian' with `contraction` fits a PCA"):
        CalculatorSpec("hamiltonian", {**hypers, "contraction": 10})


def test_real_density_species_none_rejected_for_chunks():
    density = pytest.importorskip("ncsym.density")
    calc = density.SphericalExpansion(cutoff=3.0, max_radial=2, max_angular=2)
    with pytest.raises(ValueError, match="`calculator` has species=None"):
        compute_chunked(calc, mixed_frames(4), chunk_size=2, progress=False)


# ----------------------------------------------------------------------------- file input
@pytest.mark.parametrize("suffix", [".xyz", ".traj"])
def test_file_input_with_slices(tmp_path, calc, frames, suffix):
    path = tmp_path / f"frames{suffix}"
    ase.io.write(path, frames)
    for index in [None, "3:11:2", "-4:", 5]:
        expected = ase.io.read(path, ":" if index is None else index)
        expected = expected if isinstance(expected, list) else [expected]
        out = compute_chunked(calc, path, index=index, chunk_size=3, progress=False)
        assert_blockmaps_equal(calc.compute(expected), out)
    out = compute_chunked(calc, f"{path}@1:6", chunk_size=2, progress=False)
    assert_blockmaps_equal(calc.compute(ase.io.read(path, "1:6")), out)


def test_other_formats_through_ase_iread(tmp_path, calc, frames):
    path = tmp_path / "frames.json"  # ase database format: generic reader
    ase.io.write(path, frames[:5])
    out = compute_chunked(calc, path, chunk_size=2, progress=False)
    assert_blockmaps_equal(calc.compute(ase.io.read(path, ":")), out)


def test_scan_species(tmp_path, frames):
    assert scan_species(frames) == [1, 6, 7, 8]
    assert scan_species(water_frames(3)) == [1, 8]
    path = tmp_path / "w.xyz"
    ase.io.write(path, frames)
    assert scan_species(path, index="0:1") == [1, 8]


def _corrupt_xyz(tmp_path, frames):
    """Frames 2 (bad float), 5 (garbled header) and the last (truncated) are corrupt."""
    clean = tmp_path / "clean.xyz"
    ase.io.write(clean, frames)
    lines = clean.read_text().splitlines(keepends=True)
    starts, k = [], 0
    while k < len(lines):
        starts.append(k)
        k += int(lines[k]) + 2
    bad = list(lines)
    atom_line = starts[2] + 3
    parts = bad[atom_line].split()
    parts[2] = "1.2.3abc"
    bad[atom_line] = " ".join(parts) + "\n"
    bad[starts[5]] = "x" + bad[starts[5]]
    bad = bad[: starts[-1] + 3]  # last frame: header, comment and one atom line
    path = tmp_path / "corrupt.xyz"
    path.write_text("".join(bad))
    return path, ase.io.read(clean, ":")


def test_corrupt_xyz_stop_reports_frame(tmp_path, calc):
    frames = water_frames(9)
    path, _ = _corrupt_xyz(tmp_path, frames)
    with pytest.raises(
        StructureError, match=r"structure 2 \(frame 2 of .*corrupt.xyz'\) could not be read"
    ) as info:
        compute_chunked(calc, path, chunk_size=4, progress=False)
    assert info.value.system == 2 and info.value.frame == 2 and info.value.stage == "read"


def test_corrupt_xyz_skip_continues(tmp_path, calc):
    frames = water_frames(9)
    path, clean = _corrupt_xyz(tmp_path, frames)
    good = [0, 1, 3, 4, 6, 7]
    with pytest.warns(SkippedStructureWarning) as record:
        out = compute_chunked(calc, path, chunk_size=4, progress=False, on_error="skip")
    messages = [str(w.message) for w in record]
    assert any("structure 5 (frame 5" in m and "expected the number of atoms" in m for m in messages)
    assert any("structure 8 (frame 8" in m and "truncated" in m for m in messages)
    expected = relabel(calc.compute([clean[i] for i in good]), good)
    assert_blockmaps_equal(expected, BlockMap(out.keys, out.blocks))
    assert [s["system"] for s in out.info["skipped"]] == [2, 5, 8]


def test_wrong_atom_count_resynchronises(tmp_path, calc):
    frames = water_frames(6)
    clean = tmp_path / "clean.xyz"
    ase.io.write(clean, frames)
    lines = clean.read_text().splitlines(keepends=True)
    lines[3 * 5] = "30\n"  # frame 3 claims 30 atoms: it swallows frames 4 and 5
    path = tmp_path / "bad.xyz"
    path.write_text("".join(lines))
    with pytest.warns(SkippedStructureWarning, match="structure 3"):
        out = compute_chunked(calc, path, chunk_size=2, progress=False, on_error="skip")
    good = [0, 1, 2, 4, 5]
    ref = ase.io.read(clean, ":")
    assert_blockmaps_equal(
        relabel(calc.compute([ref[i] for i in good]), good), BlockMap(out.keys, out.blocks)
    )


def test_truncated_trajectory(tmp_path, calc):
    frames = water_frames(6)
    path = tmp_path / "w.traj"
    ase.io.write(path, frames)
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * 0.7)])
    with pytest.raises(StructureError, match=r"structure 3 \(frame 3 of .*w.traj'\) could not be read"):
        compute_chunked(calc, path, chunk_size=2, progress=False)
    with pytest.warns(SkippedStructureWarning):
        out = compute_chunked(calc, path, chunk_size=2, progress=False, on_error="skip")
    assert_blockmaps_equal(calc.compute(frames[:3]), BlockMap(out.keys, out.blocks), atol=0)
    assert [s["system"] for s in out.info["skipped"]] == [3, 4, 5]


def test_unreadable_file(tmp_path, calc):
    path = tmp_path / "garbage.traj"
    path.write_bytes(b"\x00" * 100)
    with pytest.raises(ValueError, match="cannot be opened as an ASE trajectory"):
        compute_chunked(calc, path, progress=False)
    with pytest.raises(FileNotFoundError, match="does not exist"):
        compute_chunked(calc, tmp_path / "missing.xyz", progress=False)
    with pytest.raises(ValueError, match="selects no structure"):
        compute_chunked(calc, water_frames(3), index="5:", progress=False)


# ----------------------------------------------------------------------------- bad structures
def test_bad_structure_reported_with_index(calc):
    frames = water_frames(10)
    frames[7].positions[1, 0] = np.nan
    with pytest.raises(
        StructureError, match=r"structure 7 \(frame 7 of <list>\) failed: ValueError: positions contain NaN"
    ) as info:
        compute_chunked(calc, frames, chunk_size=3, progress=False)
    assert info.value.system == 7 and info.value.stage == "compute"


def test_bad_structure_skipped_keeps_numbering(calc):
    frames = water_frames(10)
    frames[4].numbers[0] = 9  # species not in the calculator's list
    frames[7].positions[1, 0] = np.inf
    with pytest.warns(SkippedStructureWarning) as record:
        out = compute_chunked(calc, frames, chunk_size=3, progress=False, on_error="skip")
    assert len(record) == 2
    good = [0, 1, 2, 3, 5, 6, 8, 9]
    assert_blockmaps_equal(
        relabel(calc.compute([frames[i] for i in good]), good), BlockMap(out.keys, out.blocks)
    )
    assert [(s["system"], s["stage"]) for s in out.info["skipped"]] == [(4, "compute"), (7, "compute")]
    assert "not in `species`" in out.info["skipped"][0]["error"]


def test_all_structures_bad(calc):
    frames = water_frames(3)
    for f in frames:
        f.positions[0, 0] = np.nan
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", SkippedStructureWarning)
        with pytest.raises(ValueError, match="no structure of `frames` <list> could be computed: all 3"):
            compute_chunked(calc, frames, progress=False, on_error="skip")
    with pytest.raises(StructureError, match="structure 0 .* failed: ValueError: positions contain NaN"):
        compute_chunked(calc, frames, progress=False)
    with pytest.raises(ValueError, match="the calculator fails on every one of the first 3 structures"):
        estimate_resources(calc, frames)


# ----------------------------------------------------------------------------- outputs
def test_npz_directory_output(tmp_path, calc, frames):
    out = tmp_path / "feats"
    summary = compute_chunked(calc, frames, chunk_size=5, output=out, progress=False)
    assert isinstance(summary, RunSummary)
    assert summary.n_structures == 17 and summary.n_chunks == 4 and summary.workers == 0
    assert "wrote 17 structures" in str(summary)
    assert sorted(p.name for p in out.iterdir()) == [
        "chunk-00000.npz",
        "chunk-00001.npz",
        "chunk-00002.npz",
        "chunk-00003.npz",
        "manifest.json",
    ]
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["complete"] and manifest["n_structures"] == 17
    assert [c["systems"] for c in manifest["chunks"]] == [[0, 5], [5, 10], [10, 15], [15, 17]]
    assert manifest["keys"]["names"] == ["o3_lambda", "o3_sigma", "center_type", "neighbor_type"]
    ref = calc.compute(frames)
    assert_blockmaps_equal(ref, load_features(out))
    chunks = list(iter_chunks(out))
    assert len(chunks) == 4
    assert_blockmaps_equal(ref, ncsym.blocks.concatenate_blocks(chunks))
    assert [p.name for p in tmp_path.iterdir()] == ["feats"]  # no temporary left behind


def test_output_exists_and_overwrite(tmp_path, calc, frames):
    out = tmp_path / "feats"
    compute_chunked(calc, frames[:4], output=out, progress=False)
    with pytest.raises(ValueError, match="already exists; pass overwrite=True"):
        compute_chunked(calc, frames, output=out, progress=False)
    compute_chunked(calc, frames, output=out, overwrite=True, chunk_size=6, progress=False)
    assert_blockmaps_equal(calc.compute(frames), load_features(out))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["feats"]


def test_corrupt_chunk_detected(tmp_path, calc, frames):
    out = tmp_path / "feats"
    compute_chunked(calc, frames, output=out, chunk_size=9, progress=False)
    chunk = out / "chunk-00001.npz"
    data = bytearray(chunk.read_bytes())
    data[len(data) // 2] ^= 0xFF
    chunk.write_bytes(bytes(data))
    with pytest.raises(ValueError, match="chunk-00001.npz is corrupt"):
        load_features(out)
    (out / "manifest.json").unlink()
    with pytest.raises(ValueError, match="no manifest.json"):
        load_features(out)


def test_metatensor_file_output(tmp_path, calc, frames):
    metatensor = pytest.importorskip("metatensor")
    out = tmp_path / "feats.mts"
    frames = water_frames(3) + frames  # keys appear after the first chunk
    summary = compute_chunked(calc, frames, chunk_size=4, output=out, progress=False)
    assert summary.format == "mts"
    ref = calc.compute(frames)
    tensor = metatensor.load(out)  # metatensor's own reader
    assert tensor.keys.names == list(ref.keys.names)
    for k, block in enumerate(tensor.blocks()):
        np.testing.assert_array_equal(block.values, ref.blocks[k].values)
        assert block.samples.names == ["system", "atom"]
        assert block.components[0].names == ["o3_mu"]
    loaded = load_features(out)
    assert_blockmaps_equal(ref, loaded)
    assert loaded.info["species"] == list(MIXED_SPECIES)
    assert [p.name for p in tmp_path.iterdir()] == ["feats.mts"]


def test_output_argument_errors(tmp_path, calc, frames):
    with pytest.raises(ValueError, match="use a directory name for per-chunk .npz files"):
        compute_chunked(calc, frames, output=tmp_path / "x.npz", progress=False)
    with pytest.raises(FileNotFoundError, match="directory .* does not exist"):
        compute_chunked(calc, frames, output=tmp_path / "no" / "x", progress=False)
    with pytest.raises(TypeError, match="`output` must be a path"):
        compute_chunked(calc, frames, output=3, progress=False)


class _Interrupted(HistogramHarmonics):
    """Ctrl-C arrives while the third chunk is computed."""

    calls = 0

    def compute(self, frames):
        type(self).calls += 1
        if type(self).calls == 3:
            raise KeyboardInterrupt
        return super().compute(frames)


@pytest.mark.parametrize("name", ["feats", "feats.mts"])
def test_interrupt_leaves_nothing_behind(tmp_path, frames, name):
    _Interrupted.calls = 0
    with pytest.raises(KeyboardInterrupt):
        compute_chunked(
            _Interrupted(species=MIXED_SPECIES), frames, chunk_size=3, output=tmp_path / name, progress=False
        )
    assert list(tmp_path.iterdir()) == []


_DISK_FULL_SCRIPT = textwrap.dedent(
    """
    import resource, signal, sys
    sys.path.insert(0, {tests!r})
    from _pipeline_calculators import HistogramHarmonics, water_frames
    from ncsym.pipeline import compute_chunked
    calc = HistogramHarmonics(species=(1, 8))
    frames = water_frames(40)
    calc.compute(frames[:1])  # imports and kernels ready before the limit
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # exceeding the limit: EFBIG, as a full disk
    resource.setrlimit(resource.RLIMIT_FSIZE, ({limit}, {limit}))
    try:
        compute_chunked(calc, frames, chunk_size=10, output={output!r}, progress=False)
    except OSError as exc:
        print("OSError:", exc)
        sys.exit(3)
    print("no error")
    """
)


@pytest.mark.parametrize(("name", "limit"), [("feats", 8_000), ("feats.mts", 60_000)])
def test_disk_full_leaves_nothing_behind(tmp_path, name, limit):
    """A write fails half-way (file-size limit: the kernel refuses to grow the file)."""
    work = tmp_path / "work"
    work.mkdir()
    script = _DISK_FULL_SCRIPT.format(tests=os.path.dirname(__file__), limit=limit, output=str(work / name))
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 3, proc.stdout + proc.stderr
    assert "writing `output`" in proc.stdout and "the partial output was removed" in proc.stdout
    assert list(work.iterdir()) == []


# ----------------------------------------------------------------------------- memory and dry run
def test_parse_memory():
    assert parse_memory("512MiB") == 512 * 2**20
    assert parse_memory("2 GiB") == 2 * 2**30
    assert parse_memory("1.5G") == 1_500_000_000
    assert parse_memory("800MB") == 800_000_000
    assert parse_memory(4096) == 4096
    assert parse_memory("10kb") == 10_000
    with pytest.raises(ValueError, match="`memory_budget` must look like '512MiB'"):
        parse_memory("lots")
    with pytest.raises(ValueError, match="`memory_budget` must look like"):
        parse_memory("5i")
    with pytest.raises(ValueError, match="must be a positive number of bytes, got 0"):
        parse_memory(0)
    with pytest.raises(TypeError, match="`memory_budget` must be a number of bytes or a string"):
        parse_memory([1])


def test_estimate_resources(tmp_path, calc):
    frames = water_frames(60)
    path = tmp_path / "w.xyz"
    ase.io.write(path, frames)
    est = estimate_resources(calc, path, memory_budget="64MiB")
    assert isinstance(est, ResourceEstimate)
    assert est.n_structures == 60 and est.n_atoms == 180 and est.probe_structures == 8
    actual = sum(
        b.values.nbytes + b.samples.values.nbytes for b in calc.compute(ase.io.read(path, ":")).blocks
    )
    assert abs(est.output_bytes - actual) / actual < 0.25
    assert est.chunk_size == 60 and est.n_chunks == 1
    small = estimate_resources(calc, path, memory_budget="60KiB")
    assert 1 <= small.chunk_size < 60 and small.chunk_peak_bytes <= 60 * 1024 * 1.01
    text = str(small)
    assert "60 structures, 180 atoms" in text and "peak per chunk" in text
    fixed = estimate_resources(calc, frames, chunk_size=7, count=False)
    assert fixed.chunk_size == 7 and fixed.n_structures is None and "?" in str(fixed)


def test_memory_budget_sets_chunk_size(tmp_path, calc):
    frames = water_frames(30)
    small = compute_chunked(calc, frames, memory_budget="60KiB", output=tmp_path / "a", progress=False)
    large = compute_chunked(calc, frames, memory_budget="1GiB", output=tmp_path / "b", progress=False)
    assert small.chunk_size < large.chunk_size == 30
    assert_blockmaps_equal(load_features(tmp_path / "a"), load_features(tmp_path / "b"))
    with pytest.warns(UserWarning, match="below the estimated peak of one structure"):
        tiny = compute_chunked(calc, frames[:3], memory_budget=100, progress=False)
    assert_blockmaps_equal(calc.compute(frames[:3]), tiny)


def test_species_must_be_fixed_for_chunks():
    frames = mixed_frames(6)
    calc = HistogramHarmonics(species=None)
    with pytest.raises(ValueError, match="`calculator` has species=None"):
        compute_chunked(calc, frames, chunk_size=2, progress=False)
    # one chunk covering everything is fine
    assert_blockmaps_equal(calc.compute(frames), compute_chunked(calc, frames, chunk_size=6, progress=False))


# ----------------------------------------------------------------------------- argument errors
def test_argument_errors(calc, frames):
    with pytest.raises(TypeError, match="`calculator` must have a `compute\\(frames\\)` method"):
        compute_chunked(object(), frames)
    with pytest.raises(ValueError, match="`chunk_size` must be >= 1, got 0"):
        compute_chunked(calc, frames, chunk_size=0)
    with pytest.raises(TypeError, match="`chunk_size` must be an integer"):
        compute_chunked(calc, frames, chunk_size=2.5)
    with pytest.raises(ValueError, match="`on_error` must be 'raise' or 'skip', got 'ignore'"):
        compute_chunked(calc, frames, on_error="ignore")
    with pytest.raises(ValueError, match="`retries` must be >= 0"):
        compute_chunked(calc, frames, retries=-1)
    with pytest.raises(TypeError, match="`frames` must contain ase.Atoms, got int at position 1"):
        compute_chunked(calc, [frames[0], 3])
    with pytest.raises(TypeError, match="`frames` must be an ase.Atoms, a list of ase.Atoms"):
        compute_chunked(calc, 3.0)
    with pytest.raises(ValueError, match="`index` must be an integer or a slice like"):
        compute_chunked(calc, frames, index="a:b")
    with pytest.raises(TypeError, match="`index` must be an int, a slice or a string"):
        compute_chunked(calc, frames, index=2.0)
    with pytest.raises(ValueError, match="needs the length of `frames`"):
        compute_chunked(calc, iter(frames), index="-2:")
    with pytest.raises(TypeError, match="`progress` must be True or False"):
        compute_chunked(calc, frames, progress=None)
    with pytest.raises(TypeError, match="`client` must be a dask.distributed.Client"):
        compute_chunked(calc, frames, client=3, progress=False)


class _ReturnsDict:
    def compute(self, frames):
        return {"not": "a blockmap"}


class _NoSystem:
    def compute(self, frames):
        return BlockMap(
            Labels(("o3_lambda",), [[0]]),
            [Block(np.zeros((1, 1, 1)), Labels(("atom",), [[0]]), Labels.range("n", 1))],
        )


class _WrongSystems(HistogramHarmonics):
    def compute(self, frames):
        bm = super().compute(frames)
        blocks = [
            Block(b.values, Labels(b.samples.names, b.samples.values + [[5, 0]]), b.properties)
            for b in bm.blocks
        ]
        return BlockMap(bm.keys, blocks, bm.info)


def test_calculator_contract_errors(frames):
    """A calculator breaking the protocol is a TypeError, not a bad structure."""
    with pytest.raises(TypeError, match="`calculator.compute` must return an ncsym.BlockMap, got dict"):
        compute_chunked(_ReturnsDict(), frames[:2], chunk_size=1, progress=False)
    with pytest.raises(TypeError, match="must return blocks with a `system` sample column"):
        compute_chunked(_NoSystem(), frames[:2], progress=False)
    with pytest.raises(TypeError, match="systems must count the structures of the call from 0"):
        compute_chunked(_WrongSystems(species=MIXED_SPECIES), frames[:2], chunk_size=2, progress=False)


# ----------------------------------------------------------------------------- calculators by name
def test_calculator_spec_module_attribute(frames):
    spec = CalculatorSpec(
        "_pipeline_calculators:HistogramHarmonics", {"n_bins": 3, "species": list(MIXED_SPECIES)}
    )
    assert_blockmaps_equal(
        HistogramHarmonics(n_bins=3, species=MIXED_SPECIES).compute(frames), spec.compute(frames)
    )
    import pickle

    clone = pickle.loads(pickle.dumps(spec))
    assert clone.hypers == spec.hypers and clone.build() is not spec.build()  # rebuilt on unpickling
    assert not spec.species_unset()
    assert CalculatorSpec("_pipeline_calculators:HistogramHarmonics", {"species": None}).species_unset()
    with pytest.raises(ValueError, match=r"unknown hyperparameter\(s\) \['bins'\] for kind"):
        CalculatorSpec("_pipeline_calculators:HistogramHarmonics", {"bins": 3})
    with pytest.raises(ValueError, match="`kind` must be one of"):
        CalculatorSpec("soap")
    with pytest.raises(ImportError, match="cannot be imported"):
        CalculatorSpec("no_such_module_xyz:Calc")
    with pytest.raises(ImportError, match="has no attribute 'Nope'"):
        CalculatorSpec("_pipeline_calculators:Nope")
    with pytest.raises(TypeError, match="`hypers` must be a dict"):
        CalculatorSpec("_pipeline_calculators:HistogramHarmonics", [1])


def test_calculator_spec_feature_function(frames):
    """A function ``f(frames, **hypers) -> BlockMap`` is wrapped as a calculator."""
    spec = CalculatorSpec(
        "_pipeline_calculators:histogram_features", {"n_bins": 2, "species": list(MIXED_SPECIES)}
    )
    ref = HistogramHarmonics(n_bins=2, species=MIXED_SPECIES).compute(frames)
    assert_blockmaps_equal(ref, compute_chunked(spec, frames, chunk_size=5, progress=False))
    assert "histogram_features(frames" in repr(spec.build())
    with pytest.raises(ValueError, match=r"unknown hyperparameter\(s\) \['frames_per_chunk'\]"):
        CalculatorSpec("_pipeline_calculators:histogram_features", {"frames_per_chunk": 2})


def test_calculator_spec_acdc_splits_expansion_hypers():
    pytest.importorskip("ncsym.acdc")
    spec = CalculatorSpec(
        "acdc", {"nu": 2, "max_angular": 2, "max_radial": 2, "cutoff": 3.0, "species": [1, 8]}
    )
    assert spec._factory_args == {"correlation_order": 2}
    assert spec._expansion_args["max_angular"] == 2 and spec._expansion_args["species"] == [1, 8]
    assert not spec.species_unset()
    assert CalculatorSpec("acdc", {"nu": 2, "max_angular": 2, "max_radial": 2}).species_unset()


# ----------------------------------------------------------------------------- command line
KIND = "_pipeline_calculators:HistogramHarmonics"


def test_cli_features_npz_and_mts(tmp_path, capsys, frames):
    path = tmp_path / "in.xyz"
    ase.io.write(path, frames)
    out = tmp_path / "out"
    argv = ["features", str(path), "-o", str(out), "--kind", KIND, "--set", "n_bins=3"]
    argv += ["--species", "1", "6", "7", "8", "--chunk-size", "4", "--quiet"]
    assert main(argv) == 0
    assert "wrote 17 structures" in capsys.readouterr().out
    ref = HistogramHarmonics(n_bins=3, species=MIXED_SPECIES).compute(ase.io.read(path, ":"))
    assert_blockmaps_equal(ref, load_features(out))
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["calculator"]["kind"] == KIND
    argv = ["features", f"{path}@2:5", "-o", str(tmp_path / "o.mts"), "--kind", KIND, "--quiet"]
    assert main(argv + ["--species", "1", "6", "7", "8"]) == 0
    ref = HistogramHarmonics(species=MIXED_SPECIES).compute(ase.io.read(path, "2:5"))
    assert_blockmaps_equal(ref, load_features(tmp_path / "o.mts"))


def test_cli_hypers_file_and_species_scan(tmp_path, capsys):
    frames = water_frames(5)
    path = tmp_path / "in.xyz"
    ase.io.write(path, frames)
    (tmp_path / "h.yaml").write_text(f"kind: {KIND}\nn_bins: 5\nmax_angular: 1\nspecies: null\n")
    (tmp_path / "h.json").write_text(json.dumps({"kind": KIND, "n_bins": 2, "species": [1, 8]}))
    assert (
        main(
            [
                "features",
                str(path),
                "-o",
                str(tmp_path / "a"),
                "--hypers",
                str(tmp_path / "h.yaml"),
                "--max-angular",
                "2",
            ]
        )
        == 0
    )
    err = capsys.readouterr().err
    assert "species [1, 8] (found in the input" in err
    ref = HistogramHarmonics(n_bins=5, max_angular=2, species=(1, 8)).compute(ase.io.read(path, ":"))
    assert_blockmaps_equal(ref, load_features(tmp_path / "a"))
    assert (
        main(
            [
                "features",
                str(path),
                "-o",
                str(tmp_path / "b"),
                "--hypers",
                str(tmp_path / "h.json"),
                "--quiet",
            ]
        )
        == 0
    )
    ref = HistogramHarmonics(n_bins=2, species=(1, 8)).compute(ase.io.read(path, ":"))
    assert_blockmaps_equal(ref, load_features(tmp_path / "b"))


def test_cli_dry_run(tmp_path, capsys):
    path = tmp_path / "in.xyz"
    ase.io.write(path, water_frames(20))
    assert (
        main(
            [
                "features",
                str(path),
                "--kind",
                KIND,
                "--dry-run",
                "--memory-budget",
                "1MiB",
                "-o",
                str(tmp_path / "x.mts"),
            ]
        )
        == 0
    )
    out = capsys.readouterr().out
    assert "20 structures, 60 atoms" in out and "peak per chunk" in out and "metatensor file" in out
    assert not (tmp_path / "x.mts").exists()


def test_cli_errors(tmp_path, capsys):
    path = tmp_path / "in.xyz"
    frames = water_frames(9)
    corrupt, _ = _corrupt_xyz(tmp_path, frames)
    assert main(["features", str(corrupt), "-o", str(tmp_path / "a"), "--kind", KIND, "--quiet"]) == 1
    err = capsys.readouterr().err
    assert "structure 2 (frame 2" in err and "could not be read" in err
    assert not (tmp_path / "a").exists()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", SkippedStructureWarning)
        assert (
            main(
                [
                    "features",
                    str(corrupt),
                    "-o",
                    str(tmp_path / "b"),
                    "--kind",
                    KIND,
                    "--quiet",
                    "--on-error",
                    "skip",
                ]
            )
            == 0
        )
    assert "skipped 3: systems [2, 5, 8]" in capsys.readouterr().out
    ase.io.write(path, frames)
    assert main(["features", str(path), "--kind", KIND]) == 2
    assert "`--output` is required" in capsys.readouterr().err
    assert main(["features", str(path), "-o", str(tmp_path / "c"), "--kind", "soap"]) == 2
    assert "`kind` must be one of" in capsys.readouterr().err
    assert main(["features", str(path), "-o", str(tmp_path / "c"), "--kind", KIND, "--set", "foo=1"]) == 2
    assert "unknown hyperparameter(s) ['foo']" in capsys.readouterr().err
    assert main(["features", str(path), "-o", str(tmp_path / "c"), "--kind", KIND, "--set", "foo"]) == 2
    assert "`--set` must look like NAME=VALUE" in capsys.readouterr().err
    assert (
        main(["features", str(path), "-o", str(tmp_path / "c"), "--hypers", str(tmp_path / "none.yaml")]) == 2
    )
    assert "does not exist" in capsys.readouterr().err
    (tmp_path / "bad.json").write_text("[1, 2]")
    assert (
        main(["features", str(path), "-o", str(tmp_path / "c"), "--hypers", str(tmp_path / "bad.json")]) == 2
    )
    assert "must hold a mapping" in capsys.readouterr().err
    assert main(["features", str(tmp_path / "missing.xyz"), "-o", str(tmp_path / "c"), "--kind", KIND]) == 2
    assert "does not exist" in capsys.readouterr().err


def test_cli_density_and_acdc(tmp_path, capsys):
    density = pytest.importorskip("ncsym.density")
    acdc = pytest.importorskip("ncsym.acdc")
    frames = mixed_frames(6)
    path = tmp_path / "in.xyz"
    ase.io.write(path, frames)
    read = ase.io.read(path, ":")
    hypers = ["--cutoff", "3.0", "--max-radial", "2", "--max-angular", "2", "--quiet", "--chunk-size", "2"]
    assert main(["features", str(path), "-o", str(tmp_path / "d"), "--kind", "density", *hypers]) == 0
    ref = density.SphericalExpansion(cutoff=3.0, max_radial=2, max_angular=2, species=[1, 6, 7, 8]).compute(
        read
    )
    assert_blockmaps_equal(ref, load_features(tmp_path / "d"))
    (tmp_path / "h.yaml").write_text("kind: acdc\nnu: 2\nmax_lambda: 2\n")
    assert (
        main(
            [
                "features",
                str(path),
                "-o",
                str(tmp_path / "a.mts"),
                "--hypers",
                str(tmp_path / "h.yaml"),
                *hypers,
            ]
        )
        == 0
    )
    expansion = dict(cutoff=3.0, max_radial=2, max_angular=2, species=[1, 6, 7, 8])
    ref = acdc.DensityCorrelations(expansion=expansion, correlation_order=2, max_lambda=2).compute(read)
    assert_blockmaps_equal(ref, load_features(tmp_path / "a.mts"))
    assert (
        main(
            [
                "features",
                str(path),
                "-o",
                str(tmp_path / "x"),
                "--kind",
                "density",
                "--set",
                "sigma=1",
                *hypers,
            ]
        )
        == 2
    )
    assert "unknown hyperparameter(s) ['sigma'] for kind 'density'" in capsys.readouterr().err


def test_cli_pair_kind(tmp_path):
    pairs = pytest.importorskip("ncsym.pairs")
    frames = water_frames(4)
    path = tmp_path / "in.xyz"
    ase.io.write(path, frames)
    argv = ["features", str(path), "-o", str(tmp_path / "p"), "--kind", "pair", "--cutoff", "3.0"]
    argv += [
        "--max-radial",
        "2",
        "--max-angular",
        "1",
        "--set",
        "nu_onsite=1",
        "--chunk-size",
        "3",
        "--quiet",
    ]
    assert main(argv) == 0
    ref = pairs.PairFeatures(species=[1, 8], cutoff=3.0, max_radial=2, max_angular=1, nu_onsite=1)
    assert_blockmaps_equal(ref.compute(ase.io.read(path, ":")), load_features(tmp_path / "p"))


def test_cli_kind_module_missing(tmp_path, capsys):
    path = tmp_path / "in.xyz"
    ase.io.write(path, water_frames(3))
    assert main(["features", str(path), "-o", str(tmp_path / "x"), "--kind", "no_such_module_xyz:Calc"]) == 2
    assert "feature kind 'no_such_module_xyz:Calc' needs no_such_module_xyz.Calc" in capsys.readouterr().err
