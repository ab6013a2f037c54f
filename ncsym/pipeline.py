"""Feature pipeline: chunked, bounded-memory and distributed computation, ``ncsym features``.

Any *calculator* works here: an object with ``compute(frames) -> ncsym.BlockMap`` whose
blocks carry a ``system`` sample column counting the structures of one call from 0 (every
ncsym calculator, and e.g. :class:`CalculatorSpec`).  :func:`compute_chunked` feeds it
chunks of consecutive structures read lazily from a list or a file, re-labels each chunk's
``system`` column to the position of the structure in the whole input, and either joins the
chunks in memory (:func:`ncsym.blocks.concatenate_blocks`) or streams them to disk:

``OUTPUT/`` (any name without ``.mts``)
    one ``chunk-00000.npz`` per chunk (:meth:`ncsym.BlockMap.save` format) plus a
    ``manifest.json`` (written last) describing chunks, keys, skipped structures and the run.
``OUTPUT.mts``
    one metatensor file (``metatensor.load`` reads it), assembled block by block from the
    chunk files so that memory stays bounded by one chunk.

Output is written to a hidden temporary name next to ``OUTPUT`` and moved into place only
when complete: a failure (disk full, bad structure, lost workers, Ctrl-C) leaves nothing
behind.  Chunks run in this process or on a Dask cluster (:mod:`ncsym.distributed`); the
results are identical and in input order either way.

Command line (``ncsym features --help``)::

    ncsym features water.xyz -o water.mts --kind acdc --nu 2 --max-angular 4 --max-radial 4
    ncsym features md.traj@::10 -o feats/ --kind density --hypers hypers.yaml --workers 2
    ncsym features big.xyz -o feats/ --kind acdc --nu 2 --scheduler tcp://10.0.0.1:8786
    ncsym features big.xyz --kind acdc --nu 2 --dry-run --memory-budget 1GiB

Structures are numbered by their position in the selected input (``system`` = 0, 1, ...),
whatever the chunking.  With ``on_error="skip"`` an unreadable or failing structure is
reported (a :class:`SkippedStructureWarning` naming its position and file frame) and its
``system`` number is left unused, so the numbering never shifts.
"""

from __future__ import annotations

import contextlib
import dataclasses
import errno
import hashlib
import importlib
import inspect
import io
import itertools
import json
import math
import os
import re
import shutil
import sys
import tempfile
import time
import tracemalloc
import warnings
import zipfile
import zlib
from collections import deque
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ._checks import check_int
from .blocks import Block, BlockMap, Labels, concatenate_blocks, merge_key_order

__all__ = [
    "CalculatorSpec",
    "ChunkError",
    "ResourceEstimate",
    "RunSummary",
    "SkippedStructureWarning",
    "StructureError",
    "add_cli",
    "compute_chunked",
    "estimate_resources",
    "iter_chunks",
    "load_features",
    "load_metatensor",
    "parse_memory",
    "save_metatensor",
    "scan_species",
]

#: Per-chunk memory budget used when neither ``chunk_size`` nor ``memory_budget`` is given.
DEFAULT_MEMORY_BUDGET = 512 * 2**20

#: Safety factor applied to the measured per-atom peak memory of the calculator.
MEMORY_SAFETY = 1.5

#: Structures computed to measure time and memory per atom (dry run, automatic chunk size).
PROBE_STRUCTURES = 8

#: Version of the per-chunk directory layout (``manifest.json``).
MANIFEST_VERSION = 1

_ON_ERROR = ("raise", "skip")
#: Exceptions a calculator raises for bad input: located structure by structure, never retried.
_INPUT_ERRORS = (ValueError, TypeError, KeyError, IndexError, ArithmeticError)
_DISK_FULL = {errno.ENOSPC, errno.EFBIG, getattr(errno, "EDQUOT", errno.ENOSPC)}


# --------------------------------------------------------------------------- errors
class StructureError(ValueError):
    """A structure could not be read, or the calculator failed on it.

    Attributes
    ----------
    system : int
        Position of the structure in the selected input (its ``system`` number).
    frame : int or None
        Index of the structure in the input file or list (differs from ``system`` when an
        ``index`` selection is used).
    source : str
        The input (file name or ``"<list>"``).
    reason : str
        What went wrong.
    stage : {"read", "compute"}
        Whether reading or computing failed.
    """

    def __init__(self, system: int, frame: int | None, source: str, reason: str, stage: str) -> None:
        self.system = int(system)
        self.frame = None if frame is None else int(frame)
        self.source = str(source)
        self.reason = str(reason)
        self.stage = str(stage)
        where = f"structure {self.system}"
        if self.frame is not None:
            where += f" (frame {self.frame} of {self.source})"
        verb = "could not be read" if self.stage == "read" else "failed"
        super().__init__(f"{where} {verb}: {self.reason}")

    def __reduce__(self):
        return (type(self), (self.system, self.frame, self.source, self.reason, self.stage))

    @classmethod
    def from_dict(cls, record: dict, source: str) -> StructureError:
        """Rebuild from :meth:`as_dict`."""
        return cls(record["system"], record["frame"], source, record["error"], record["stage"])

    def as_dict(self) -> dict:
        """JSON-serialisable record (kept in manifests and ``BlockMap.info["skipped"]``)."""
        return {
            "system": self.system,
            "frame": self.frame,
            "stage": self.stage,
            "error": self.reason,
        }


class SkippedStructureWarning(UserWarning):
    """A structure was skipped (``on_error="skip"``); the message names it."""


class ChunkError(RuntimeError):
    """A chunk could not be computed (worker lost too often, or failure after retries)."""


# --------------------------------------------------------------------------- small helpers
_MEMORY_RE = re.compile(r"^\s*([0-9]*\.?[0-9]+(?:[eE][+-]?[0-9]+)?)\s*([kKmMgGtT]?)(i?)([bB]?)\s*$")


def parse_memory(value: int | float | str, name: str = "memory_budget") -> int:
    """Parse a memory size into bytes.

    Parameters
    ----------
    value : int, float or str
        Bytes, or a string such as ``"512MiB"``, ``"2 GiB"``, ``"1.5G"``, ``"800MB"``
        (``k/M/G/T`` are powers of 1000, ``Ki/Mi/Gi/Ti`` powers of 1024).
    name : str
        Argument name used in error messages.

    Returns
    -------
    int
        Number of bytes (> 0).

    Raises
    ------
    TypeError
        If ``value`` is neither a number nor a string.
    ValueError
        If ``value`` cannot be parsed or is not positive.
    """
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating, str)):
        raise TypeError(
            f"`{name}` must be a number of bytes or a string like '2GiB', got {type(value).__name__}"
        )
    if isinstance(value, str):
        match = _MEMORY_RE.match(value)
        if match is None:
            raise ValueError(f"`{name}` must look like '512MiB', '2 GiB' or '1.5G', got {value!r}")
        number, prefix, binary, _ = match.groups()
        power = " KMGT".index(prefix.upper()) if prefix else 0
        if binary and not prefix:
            raise ValueError(f"`{name}` must look like '512MiB', '2 GiB' or '1.5G', got {value!r}")
        out = float(number) * (1024 if binary else 1000) ** power
    else:
        out = float(value)
    if not math.isfinite(out) or out < 1:
        raise ValueError(f"`{name}` must be a positive number of bytes, got {value!r}")
    return int(out)


def _format_bytes(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(n) < 1024 or unit == "TiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} TiB"  # pragma: no cover


def _check_calculator(calculator) -> None:
    if not callable(getattr(calculator, "compute", None)):
        raise TypeError(
            "`calculator` must have a `compute(frames)` method returning an ncsym.BlockMap, "
            f"got {type(calculator).__name__}"
        )


def _check_on_error(on_error) -> str:
    if on_error not in _ON_ERROR:
        raise ValueError(f"`on_error` must be 'raise' or 'skip', got {on_error!r}")
    return on_error


def _unset_species(calculator) -> bool:
    """True if the calculator (or its density expansion) takes species from each call."""
    if isinstance(calculator, CalculatorSpec):
        return calculator.species_unset()
    expansions = [getattr(calculator, name, None) for name in ("expansion", "_expansion")]
    for obj in (calculator, *expansions):
        if obj is not None and getattr(obj, "species", 0) is None:
            return True
    hypers = getattr(calculator, "hypers", None)
    if any(e is not None for e in expansions) or hasattr(calculator, "_expansion"):
        if isinstance(hypers, dict) and hypers.get("species") is None:
            return True
    return False


# --------------------------------------------------------------------------- reading
@dataclasses.dataclass
class _Frame:
    system: int
    frame: int | None
    atoms: Any
    error: str | None = None


def _as_slice(index) -> slice:
    """``None``, an int, a slice or an ase-style string (``":"``, ``"10:100:2"``, ``"-5"``)."""
    if index is None:
        return slice(None)
    if isinstance(index, slice):
        return index
    if isinstance(index, (int, np.integer)) and not isinstance(index, bool):
        i = int(index)
        return slice(i, i + 1 if i != -1 else None)
    if isinstance(index, str):
        text = index.strip()
        try:
            if ":" not in text:
                return _as_slice(int(text))
            parts = text.split(":")
            if len(parts) > 3:
                raise ValueError
            return slice(*[int(p) if p.strip() else None for p in parts])
        except ValueError:
            raise ValueError(
                f"`index` must be an integer or a slice like ':', '10:100' or '::2', got {index!r}"
            ) from None
    raise TypeError(
        f"`index` must be an int, a slice or a string like '10:100:2', got {type(index).__name__}"
    )


def _is_streamable(sl: slice) -> bool:
    return (
        (sl.start is None or sl.start >= 0)
        and (sl.stop is None or sl.stop >= 0)
        and (sl.step is None or sl.step > 0)
    )


_INT_LINE = re.compile(r"^\s*\d+\s*$")


class _XYZSplitter:
    """Split an (extended) XYZ file into frames, resynchronising after corrupt frames.

    A frame is a line holding the number of atoms, a comment line, that many atom lines and
    up to three ``VEC`` lines.  When a header is not an integer, the file ends early or a
    frame does not parse, the frame is reported and reading resumes at the next line that
    holds a bare integer (the next plausible header), so one corrupt frame never hides the
    frames after it.
    """

    def __init__(self, path: str) -> None:
        self.path = path

    def frames(self, select=None, parse: bool = True) -> Iterator[tuple[int, Any, str | None, int]]:
        """Yield ``(frame number, atoms or None, error or None, n_atoms)``.

        ``select(frame) -> bool | None`` decides which frames are parsed (``None`` stops).
        With ``parse=False`` no frame is parsed: ``atoms`` is ``None`` and only structural
        errors are reported (used to count frames and atoms cheaply).
        """
        from ase.io.formats import open_with_compression

        with open_with_compression(self.path, "r") as fd:
            pending: deque[str] = deque()

            def readline() -> str:
                return pending.popleft() if pending else fd.readline()

            def resync(lines: list[str]) -> None:
                # push back everything after a bad header, then skip to the next bare integer
                pending.extendleft(reversed(lines))
                while True:
                    line = readline()
                    if line == "":
                        return
                    if _INT_LINE.match(line):
                        pending.appendleft(line)
                        return

            frame = 0
            while True:
                line = readline()
                if line == "":
                    return
                if not line.strip():
                    continue
                wanted = True if select is None else select(frame)
                if wanted is None:
                    return
                if not _INT_LINE.match(line):
                    if wanted:
                        yield frame, None, f"expected the number of atoms, got {line.strip()[:60]!r}", 0
                    frame += 1
                    resync([])
                    continue
                natoms = int(line)
                body: list[str] = []
                truncated = False
                for _ in range(natoms + 1):  # comment + atoms
                    nxt = readline()
                    if nxt == "":
                        truncated = True
                        break
                    body.append(nxt)
                if truncated:
                    if wanted:
                        got = max(len(body) - 1, 0)
                        yield (
                            frame,
                            None,
                            f"file ends after {got} of {natoms} atom lines (truncated frame)",
                            0,
                        )
                    frame += 1
                    resync(body)
                    continue
                while True:  # optional VEC lines
                    nxt = readline()
                    if nxt.lstrip().startswith("VEC") and len(body) < natoms + 4:
                        body.append(nxt)
                        continue
                    if nxt != "":
                        pending.appendleft(nxt)
                    break
                if not wanted or not parse:
                    if wanted:
                        yield frame, None, None, natoms
                    frame += 1
                    continue
                try:
                    import ase.io

                    atoms = ase.io.read(io.StringIO(line + "".join(body)), format="extxyz")
                except Exception as exc:  # any parse failure is this frame's problem
                    yield frame, None, f"{type(exc).__name__}: {exc}", 0
                    frame += 1
                    resync(body)
                    continue
                yield frame, atoms, None, natoms
                frame += 1


class _FrameSource:
    """Frames of a list, an iterable or a file, with an ``index`` selection, read lazily."""

    def __init__(self, frames, index=None) -> None:
        from ase import Atoms

        self._slice = _as_slice(index)
        self.index = index
        self.path: str | None = None
        self.format: str | None = None
        self.length: int | None = None
        self._list = None
        self._iterable = None
        if isinstance(frames, Atoms):
            frames = [frames]
        if isinstance(frames, (str, os.PathLike)):
            path = os.fspath(frames)
            if not os.path.exists(path) and index is None and "@" in os.path.basename(path):
                path, _, text = path.rpartition("@")
                self._slice = _as_slice(text)
                self.index = text
            if not os.path.exists(path):
                raise FileNotFoundError(f"`frames` file {path!r} does not exist")
            if os.path.isdir(path):
                raise ValueError(f"`frames` must be a file ase can read, got the directory {path!r}")
            from ase.io.formats import filetype

            try:
                self.format = filetype(path, read=True)
            except Exception as exc:
                raise ValueError(
                    f"`frames` file {path!r}: ase cannot tell its format ({type(exc).__name__}: {exc})"
                ) from None
            self.path = path
            self.description = repr(path)
            if self.format == "traj":
                self.length = self._traj_length()
            elif self.format in ("extxyz", "xyz") and os.path.getsize(path) < 256 * 2**20:
                if _is_streamable(self._slice) or (self._slice.step or 1) > 0:
                    self.length = self._xyz_selection_length()
        elif isinstance(frames, (list, tuple)):
            for i, atoms in enumerate(frames):
                if not isinstance(atoms, Atoms):
                    raise TypeError(
                        f"`frames` must contain ase.Atoms, got {type(atoms).__name__} at position {i}"
                    )
            self._list = frames
            self.description = "<list>"
            self.length = len(range(*self._slice.indices(len(frames))))
        elif isinstance(frames, Iterable):
            if not _is_streamable(self._slice):
                raise ValueError(
                    f"`index` {index!r} needs the length of `frames`: pass a list or a file, "
                    "or use a non-negative slice"
                )
            self._iterable = frames
            self.description = "<iterable>"
        else:
            raise TypeError(
                "`frames` must be an ase.Atoms, a list of ase.Atoms, an iterable of ase.Atoms or "
                f"a path to a file ase can read, got {type(frames).__name__}"
            )

    # -- helpers for files
    def _traj_length(self) -> int:
        from ase.io.trajectory import Trajectory

        try:
            with Trajectory(self.path) as traj:
                n = len(traj)
        except Exception as exc:
            raise ValueError(
                f"`frames` file {self.path!r} cannot be opened as an ASE trajectory "
                f"({type(exc).__name__}: {exc})"
            ) from None
        return len(range(*self._slice.indices(n)))

    def _xyz_count(self) -> int:
        return sum(1 for _ in _XYZSplitter(self.path).frames(parse=False))

    def _xyz_slice(self) -> slice:
        sl = self._slice
        if _is_streamable(sl):
            return slice(sl.start or 0, sl.stop, sl.step or 1)
        if (sl.step or 1) < 0:
            raise ValueError(
                f"`index` must have a positive step to read {self.path!r} in order, got {self.index!r}"
            )
        start, stop, step = sl.indices(self._xyz_count())
        return slice(start, stop, step)

    def _xyz_selection_length(self) -> int:
        sl = self._xyz_slice()
        n = self._xyz_count()
        return len(range(*slice(sl.start, sl.stop, sl.step).indices(n)))

    @staticmethod
    def _selector(sl: slice):
        start, stop, step = sl.start, sl.stop, sl.step

        def select(f: int):
            if stop is not None and f >= stop:
                return None
            return f >= start and (f - start) % step == 0

        return select

    # -- iteration
    def _raw(self) -> Iterator[tuple[int | None, Any, str | None]]:
        if self._list is not None:
            for f in range(*self._slice.indices(len(self._list))):
                yield f, self._list[f], None
        elif self._iterable is not None:
            from ase import Atoms

            sl = self._slice
            for f, atoms in itertools.islice(enumerate(self._iterable), sl.start, sl.stop, sl.step):
                if not isinstance(atoms, Atoms):
                    raise TypeError(
                        f"`frames` must contain ase.Atoms, got {type(atoms).__name__} at position {f}"
                    )
                yield f, atoms, None
        elif self.format in ("extxyz", "xyz"):
            sl = self._xyz_slice()
            for f, atoms, err, _ in _XYZSplitter(self.path).frames(self._selector(sl)):
                yield f, atoms, err
        elif self.format == "traj":
            from ase.io.trajectory import Trajectory

            with Trajectory(self.path) as traj:
                for f in range(*self._slice.indices(len(traj))):
                    try:
                        atoms = traj[f]
                    except Exception as exc:
                        yield f, None, f"{type(exc).__name__}: {exc}"
                        continue
                    yield f, atoms, None
        else:
            yield from self._iread()

    def _iread(self) -> Iterator[tuple[int | None, Any, str | None]]:
        """Any other ase format: ``ase.io.iread``, restarted after the frame that failed."""
        import ase.io

        sl = self._slice
        if not _is_streamable(sl):
            # negative indices need the number of frames: read everything (not streamed)
            try:
                frames = ase.io.read(self.path, index=":", format=self.format)
            except Exception as exc:
                raise ValueError(
                    f"`frames` file {self.path!r} could not be read: {type(exc).__name__}: {exc}"
                ) from None
            for f in range(*sl.indices(len(frames))):
                yield f, frames[f], None
            return
        f, stop, step = sl.start or 0, sl.stop, sl.step or 1
        restarted = False
        while stop is None or f < stop:
            yielded = False
            try:
                for atoms in ase.io.iread(self.path, index=slice(f, stop, step), format=self.format):
                    yielded = True
                    yield f, atoms, None
                    f += step
                return
            except Exception as exc:
                if restarted and not yielded:
                    yield f, None, f"{type(exc).__name__}: {exc} (the rest of the file is unreadable)"
                    return
                yield f, None, f"{type(exc).__name__}: {exc}"
                f += step
                restarted = True

    def __iter__(self) -> Iterator[_Frame]:
        for system, (frame, atoms, error) in enumerate(self._raw()):
            yield _Frame(system, frame, atoms, error)

    def count(self) -> tuple[int, int, int]:
        """``(n_structures, n_atoms, n_unreadable)`` of the selection (reads the input once)."""
        if self.format in ("extxyz", "xyz"):
            sl = self._xyz_slice()
            n = n_atoms = bad = 0
            for _, _, err, natoms in _XYZSplitter(self.path).frames(self._selector(sl), parse=False):
                n += 1
                n_atoms += natoms
                bad += err is not None
            return n, n_atoms, bad
        n = n_atoms = bad = 0
        for fr in self:
            n += 1
            if fr.error is None:
                n_atoms += len(fr.atoms)
            else:
                bad += 1
        return n, n_atoms, bad


def scan_species(frames, index=None) -> list[int]:
    """Sorted atomic numbers present in ``frames`` (unreadable structures are ignored).

    Parameters
    ----------
    frames : ase.Atoms, list of ase.Atoms, iterable or path
        As in :func:`compute_chunked`.
    index : int, slice or str, optional
        Selection (``"10:100"``, ``"::2"``).

    Returns
    -------
    list of int
    """
    species: set[int] = set()
    for fr in _FrameSource(frames, index):
        if fr.error is None:
            species.update(int(z) for z in np.unique(fr.atoms.numbers))
    return sorted(species)


# --------------------------------------------------------------------------- chunks
@dataclasses.dataclass
class ChunkTask:
    """Structures of one chunk: what a worker needs to compute it.

    Attributes
    ----------
    index : int
        Chunk number (0, 1, ...), in input order.
    systems : list of int
        Position of each structure in the selected input.
    frames : list of int or None
        Index of each structure in the input file or list.
    atoms : list of ase.Atoms
    source : str
        Description of the input, for messages.
    error : dict, optional
        A structure that could not be read (``on_error="raise"``): the task carries it, in
        input order, instead of structures.
    """

    index: int
    systems: list[int]
    frames: list[int | None]
    atoms: list
    source: str
    error: dict | None = None

    @property
    def n_atoms(self) -> int:
        return int(sum(len(a) for a in self.atoms))


@dataclasses.dataclass
class ChunkResult:
    """Result of :func:`compute_chunk`.

    ``blockmap`` has global ``system`` numbers (``None`` if nothing was computed or if the
    worker saved it: then ``saved`` describes the chunk file, see :func:`_save_chunk`);
    ``bad`` lists the structures that failed (dicts of :meth:`StructureError.as_dict`).
    """

    index: int
    blockmap: BlockMap | None
    systems: list[int]
    bad: list[dict]
    n_atoms: int
    seconds: float
    pid: int
    saved: dict | None = None


def _block_signature(block: Block) -> str:
    """Digest of the metadata that must agree between chunks (not samples, not values)."""
    h = hashlib.sha1()
    h.update(json.dumps([block.samples.names, block.properties.names, block.values.shape[1]]).encode())
    h.update(np.ascontiguousarray(block.properties.values).tobytes())
    return h.hexdigest()


def _chunk_meta(bm: BlockMap) -> dict:
    return {
        "key_names": list(bm.keys.names),
        "keys": bm.keys.values.tolist(),
        "n_samples": [len(b.samples) for b in bm.blocks],
        "signatures": [_block_signature(b) for b in bm.blocks],
        "info": _jsonable(bm.info),
    }


def _save_chunk(bm: BlockMap, directory: Path, index: int, systems: list[int], n_atoms: int) -> dict:
    """Write one chunk file (``BlockMap.save``, atomic) and describe it for the manifest."""
    name = f"chunk-{index:05d}.npz"
    path = Path(directory) / name
    if not Path(directory).is_dir():  # the run was aborted meanwhile: write nothing
        raise FileNotFoundError(f"chunk directory {str(directory)!r} no longer exists")
    bm.save(path)
    return {
        "file": name,
        "index": index,
        "systems": [int(systems[0]), int(systems[-1]) + 1],
        "n_systems": len(systems),
        "n_atoms": n_atoms,
        **_chunk_meta(bm),
        "bytes": path.stat().st_size,
        "crc32": _crc32(path),
    }


class _ContractError(TypeError):
    """The calculator broke the ``compute(frames) -> BlockMap`` protocol (not a bad structure)."""


def _checked_compute(calculator, atoms: list) -> BlockMap:
    result = calculator.compute(atoms)
    if not isinstance(result, BlockMap):
        raise _ContractError(
            f"`calculator.compute` must return an ncsym.BlockMap, got {type(result).__name__}"
        )
    n = len(atoms)
    for key, block in result.items():
        if "system" not in block.samples.names:
            raise _ContractError(
                f"`calculator.compute` must return blocks with a `system` sample column, block {key} "
                f"has samples {block.samples.names}"
            )
        col = block.samples.column("system")
        if len(col) and (col.min() < 0 or col.max() >= n):
            raise _ContractError(
                f"`calculator.compute` returned `system` values in [{col.min()}, {col.max()}] for "
                f"{n} structures; systems must count the structures of the call from 0"
            )
    return result


def _relabel_systems(bm: BlockMap, systems: np.ndarray) -> BlockMap:
    blocks = []
    for block in bm.blocks:
        values = block.samples.values.copy()
        col = block.samples.names.index("system")
        values[:, col] = systems[values[:, col]]
        blocks.append(Block(block.values, Labels(block.samples.names, values), block.properties))
    return BlockMap(bm.keys, blocks, bm.info)


def compute_chunk(
    calculator, task: ChunkTask, on_error: str = "raise", save_dir: str | None = None
) -> ChunkResult:
    """Compute one chunk; locate failing structures instead of failing the chunk.

    The calculator runs once on all structures of ``task``.  If it raises an input error
    (``ValueError``, ``TypeError``, ``KeyError``, ``IndexError``, ``ArithmeticError``), each
    structure is computed alone to find the bad ones; with ``on_error="skip"`` the chunk is
    then recomputed without them.  Other exceptions (lost memory, I/O) propagate, so that a
    scheduler can retry the chunk.  This function never raises :class:`StructureError`: bad
    structures are returned in ``ChunkResult.bad`` and reported, in input order, by the
    caller.

    Parameters
    ----------
    calculator : object with ``compute(frames) -> BlockMap``
    task : ChunkTask
    on_error : {"raise", "skip"}
    save_dir : str, optional
        Write the chunk's features there (``chunk-NNNNN.npz``) and return only their
        description, instead of returning the features (Dask workers on a filesystem shared
        with the client: no result transfer).

    Returns
    -------
    ChunkResult
    """
    t0 = time.perf_counter()
    if task.error is not None:
        return ChunkResult(task.index, None, [], [task.error], 0, 0.0, os.getpid())
    systems = np.asarray(task.systems, dtype=np.int64)
    keep = list(range(len(task.atoms)))
    bad: list[dict] = []
    try:
        bm = _checked_compute(calculator, task.atoms) if task.atoms else None
    except _ContractError:
        raise
    except _INPUT_ERRORS as first_error:
        for k, atoms in enumerate(task.atoms):
            try:
                _checked_compute(calculator, [atoms])
            except _INPUT_ERRORS as exc:
                err = StructureError(
                    task.systems[k], task.frames[k], task.source, f"{type(exc).__name__}: {exc}", "compute"
                )
                bad.append(err.as_dict())
                if on_error != "skip":
                    break
        if not bad:
            raise first_error  # not tied to one structure: let the caller (or Dask) handle it
        bad_systems = {b["system"] for b in bad}
        keep = [k for k in keep if task.systems[k] not in bad_systems]
        bm = None
        if on_error == "skip" and keep:
            bm = _checked_compute(calculator, [task.atoms[k] for k in keep])
    done = [task.systems[k] for k in keep] if bm is not None else []
    n_atoms = int(sum(len(task.atoms[k]) for k in keep)) if bm is not None else 0
    saved = None
    if bm is not None:
        bm = _relabel_systems(bm, systems[keep])
        if save_dir is not None:
            saved = _save_chunk(bm, Path(save_dir), task.index, done, n_atoms)
            bm = None
    return ChunkResult(
        index=task.index,
        blockmap=bm,
        systems=done,
        bad=bad,
        n_atoms=n_atoms,
        seconds=time.perf_counter() - t0,
        pid=os.getpid(),
        saved=saved,
    )


# --------------------------------------------------------------------------- calculators by name
#: Feature kinds of the command line: name -> (module, attribute).
FEATURE_KINDS = {
    "density": ("ncsym.density", "SphericalExpansion"),
    "acdc": ("ncsym.acdc", "DensityCorrelations"),
    "pair": ("ncsym.pairs", "PairFeatures"),
    "hamiltonian": ("ncsym.pairs", "hamiltonian_features"),
}
_EXPANSION = ("ncsym.density", "SphericalExpansion")  # built for kinds taking `expansion`


def _import_factory(kind: str):
    if kind in FEATURE_KINDS:
        module, attr = FEATURE_KINDS[kind]
    elif ":" in kind:
        module, _, attr = kind.partition(":")
    else:
        raise ValueError(f"`kind` must be one of {sorted(FEATURE_KINDS)} or 'module:attribute', got {kind!r}")
    try:
        mod = importlib.import_module(module)
    except ImportError as exc:
        raise ImportError(
            f"feature kind {kind!r} needs {module}.{attr}, which cannot be imported in this "
            f"installation ({exc})"
        ) from None
    try:
        return getattr(mod, attr)
    except AttributeError:
        raise ImportError(f"feature kind {kind!r}: {module} has no attribute {attr!r}") from None


def _parameters(factory) -> dict[str, inspect.Parameter]:
    """Keyword parameters of a factory.  For a class whose ``__init__`` forwards ``**kwargs``
    to its base class, the base class parameters are included; a ``**kwargs`` entry remains
    only if no class in the chain names its parameters."""
    if isinstance(factory, type):
        targets = [c.__init__ for c in factory.__mro__ if "__init__" in vars(c) and c is not object]
    else:
        targets = [factory]
    params: dict[str, inspect.Parameter] = {}
    forward = None
    for target in targets:
        try:
            signature = inspect.signature(target).parameters
        except (TypeError, ValueError):  # pragma: no cover - builtins
            break
        forward = None
        for name, p in signature.items():
            if p.kind is inspect.Parameter.VAR_KEYWORD:
                forward = p
            elif p.kind is not inspect.Parameter.VAR_POSITIONAL and name != "self":
                params.setdefault(name, p)
        if forward is None:
            return params
    if forward is not None:
        params["**" + forward.name] = forward
    return params


def _accepts_any(params: dict) -> bool:
    return any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values())


class CalculatorSpec:
    """A calculator named by kind and hyperparameters, built once per process.

    Picklable and small, so Dask ships it to workers cheaply; each worker builds the real
    calculator (tables, kernels) once and reuses it.

    Parameters
    ----------
    kind : str
        ``"density"``, ``"acdc"``, ``"pair"``, ``"hamiltonian"`` (see
        :data:`FEATURE_KINDS`) or ``"module:attribute"`` naming any factory whose result has
        ``compute(frames) -> BlockMap``.
    hypers : dict
        Keyword arguments.  For factories taking an ``expansion`` (ACDC, pair features) the
        keys accepted by :class:`ncsym.SphericalExpansion` build the expansion and the rest
        go to the factory; ``nu`` is an alias of ``correlation_order``.  A nested
        ``"density"`` dict gives the expansion's arguments explicitly.

    Raises
    ------
    ImportError
        If the kind's module is not available.
    ValueError
        If a hyperparameter is not accepted by the factory.
    """

    def __init__(self, kind: str, hypers: dict | None = None) -> None:
        if not isinstance(kind, str):
            raise TypeError(f"`kind` must be a string, got {type(kind).__name__}")
        if hypers is not None and not isinstance(hypers, dict):
            raise TypeError(f"`hypers` must be a dict, got {type(hypers).__name__}")
        self.kind = kind
        self.hypers = dict(hypers or {})
        if kind == "hamiltonian" and any(
            self.hypers.get(k) is not None for k in ("contraction", "inner_contraction")
        ):
            raise ValueError(
                "kind 'hamiltonian' with `contraction` fits a PCA on the structures of each call, so "
                "the features would depend on the chunking; fit ncsym.PairFeatures on representative "
                "structures in Python and pass the fitted calculator to compute_chunked"
            )
        self._factory_args, self._expansion_args = self._split()
        self._built = None
        self.build()  # invalid hyperparameters fail here, not in the first chunk

    def _split(self) -> tuple[dict, dict | None]:
        factory = _import_factory(self.kind)
        params = _parameters(factory)
        hypers = dict(self.hypers)
        if "nu" in hypers and "correlation_order" in params:
            hypers["correlation_order"] = hypers.pop("nu")
        nested = hypers.pop("density", None)
        if nested is not None and not isinstance(nested, dict):
            raise TypeError(f"hyperparameter `density` must be a dict of expansion arguments, got {nested!r}")
        expansion_args = None
        if "expansion" in params and "expansion" not in hypers:
            # everything the factory does not take describes the density expansion
            expansion_args = dict(nested or {})
            for name in list(hypers):
                if name == "species" and "species" in params:
                    expansion_args.setdefault(name, hypers[name])  # the same species everywhere
                elif name not in params:
                    expansion_args[name] = hypers.pop(name)
            try:
                expansion_params = _parameters(_import_factory(":".join(_EXPANSION)))
            except ImportError:
                expansion_params = None  # the factory validates the dict itself
            if expansion_params is not None and not _accepts_any(expansion_params):
                unknown = sorted(set(expansion_args) - set(expansion_params))
                if unknown:
                    raise ValueError(
                        f"unknown hyperparameter(s) {unknown} for kind {self.kind!r}; accepted: "
                        f"{sorted((set(params) - {'expansion'}) | set(expansion_params))}"
                    )
        elif nested is not None:
            raise ValueError(
                f"hyperparameter `density` is only used by kinds taking an expansion, not {self.kind!r}"
            )
        params.pop("frames", None)
        if not _accepts_any(params):
            unknown = sorted(set(hypers) - set(params))
            if unknown:
                accepted = sorted(set(params) | ({"nu"} if "correlation_order" in params else set()))
                raise ValueError(
                    f"unknown hyperparameter(s) {unknown} for kind {self.kind!r}; accepted: {accepted}"
                )
        return hypers, expansion_args

    def species_unset(self) -> bool:
        """True if the built calculator would pick species from each call's structures."""
        if self._expansion_args is not None and self._expansion_args.get("species") is None:
            return True
        params = _parameters(_import_factory(self.kind))
        if "species" in params:
            default = params["species"].default
            default = None if default is inspect.Parameter.empty else default
            return self._factory_args.get("species", default) is None
        if _accepts_any(params):  # forwards **kwargs (e.g. hamiltonian_features)
            return self._factory_args.get("species") is None
        return False

    def build(self):
        """The calculator (built once per process)."""
        if self._built is None:
            factory = _import_factory(self.kind)
            args = dict(self._factory_args)
            if not isinstance(factory, type) and "frames" in _parameters(factory):
                # a feature function ``f(frames, **hypers) -> BlockMap``
                self._built = _FunctionCalculator(factory, args)
                return self._built
            if self._expansion_args is not None:
                try:
                    expansion = _import_factory(":".join(_EXPANSION))(**self._expansion_args)
                except ImportError:
                    expansion = dict(self._expansion_args)  # factories also accept hypers
                args["expansion"] = expansion
            calc = factory(**args)
            if not callable(getattr(calc, "compute", None)):
                raise TypeError(
                    f"feature kind {self.kind!r} built a {type(calc).__name__}, which has no "
                    "`compute(frames)` method"
                )
            self._built = calc
        return self._built

    def compute(self, frames) -> BlockMap:
        """``build().compute(frames)``."""
        return self.build().compute(frames)

    def __getstate__(self):
        return {"kind": self.kind, "hypers": self.hypers}

    def __setstate__(self, state):
        self.__init__(state["kind"], state["hypers"])

    def __repr__(self) -> str:
        return f"CalculatorSpec({self.kind!r}, {self.hypers!r})"

    def describe(self) -> dict:
        """JSON-serialisable description (kept in manifests)."""
        return {"kind": self.kind, "hypers": _jsonable(self.hypers)}


class _FunctionCalculator:
    """Adapter: a function ``f(frames, **hypers) -> BlockMap`` as a calculator."""

    def __init__(self, function, hypers: dict) -> None:
        self.function = function
        self.hypers = hypers

    def compute(self, frames) -> BlockMap:
        return self.function(frames, **self.hypers)

    def __repr__(self) -> str:
        return f"{self.function.__name__}(frames, **{self.hypers!r})"


def _jsonable(value):
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, (str, int, float, bool)) or value is None:
        return value
    return repr(value)


def _describe(calculator) -> dict:
    if isinstance(calculator, CalculatorSpec):
        return calculator.describe()
    return {
        "class": f"{type(calculator).__module__}.{type(calculator).__qualname__}",
        "repr": repr(calculator)[:500],
    }


# --------------------------------------------------------------------------- estimates
@dataclasses.dataclass
class ResourceEstimate:
    """Output size, memory and time expected for a feature computation (from a probe).

    The calculator runs on one and on the first few structures (after one warm-up call that
    compiles kernels); peak memory (NumPy allocations, traced with :mod:`tracemalloc`) and
    time are fitted as ``per_chunk + per_atom * n_atoms``, output bytes as
    ``per_atom * n_atoms``.  Estimates assume the probed structures are representative of the
    input; the chunk peak includes a safety factor :data:`MEMORY_SAFETY`.
    """

    n_structures: int | None
    n_atoms: int | None
    probe_structures: int
    probe_atoms: int
    n_blocks: int
    n_features_per_atom: float
    output_bytes_per_atom: float
    peak_bytes_per_atom: float
    peak_bytes_fixed: float
    seconds_per_atom: float
    seconds_per_chunk: float
    memory_budget: int
    chunk_size: int
    n_chunks: int | None
    chunk_peak_bytes: float
    output_bytes: float | None
    seconds: float | None

    def as_dict(self) -> dict:
        return dataclasses.asdict(self)

    def __str__(self) -> str:
        n = "?" if self.n_structures is None else str(self.n_structures)
        a = "?" if self.n_atoms is None else str(self.n_atoms)
        out = "?" if self.output_bytes is None else _format_bytes(self.output_bytes)
        t = "?" if self.seconds is None else f"{self.seconds:.1f} s"
        chunks = "?" if self.n_chunks is None else str(self.n_chunks)
        return "\n".join(
            [
                f"input      {n} structures, {a} atoms",
                f"probe      {self.probe_structures} structures, {self.probe_atoms} atoms: "
                f"{self.n_blocks} blocks, {self.n_features_per_atom:.0f} values per atom",
                f"output     ~{out} ({_format_bytes(self.output_bytes_per_atom)} per atom)",
                f"memory     ~{_format_bytes(self.chunk_peak_bytes)} peak per chunk of {self.chunk_size} "
                f"structures (budget {_format_bytes(self.memory_budget)}), {chunks} chunks",
                f"time       ~{t} on one worker ({self.seconds_per_atom * 1e3:.3f} ms per atom + "
                f"{self.seconds_per_chunk * 1e3:.0f} ms per chunk; compilation and writing excluded)",
            ]
        )


def _blockmap_bytes(bm: BlockMap) -> int:
    return int(sum(b.values.nbytes + b.samples.values.nbytes for b in bm.blocks))


def _measure(calculator, atoms: list) -> dict:
    """Warm up, then trace peak NumPy memory and time on 1 and on all ``atoms``."""
    _checked_compute(calculator, atoms[:1])  # compile kernels, build tables
    points = []
    for sub in ([atoms[0]], atoms) if len(atoms) > 1 else ([atoms[0]],):
        was_tracing = tracemalloc.is_tracing()
        if not was_tracing:
            tracemalloc.start()
        try:
            tracemalloc.reset_peak()
            base, _ = tracemalloc.get_traced_memory()
            t0 = time.perf_counter()
            bm = _checked_compute(calculator, sub)
            seconds = time.perf_counter() - t0
            _, peak = tracemalloc.get_traced_memory()
        finally:
            if not was_tracing:
                tracemalloc.stop()
        points.append((sum(len(a) for a in sub), max(peak - base, 1), seconds, _blockmap_bytes(bm), bm))
    n1, p1, t1, o1, bm = points[0]
    if len(points) == 2:
        n2, p2, t2, o2, bm = points[1]
        if n2 > n1:
            per_atom = max((p2 - p1) / (n2 - n1), p2 / n2 / 4, 1.0)
            fixed = max(p2 - per_atom * n2, 0.0)
        else:
            per_atom, fixed = p2 / n2, 0.0
        if n2 > n1 and t2 > t1:
            seconds_per_atom = (t2 - t1) / (n2 - n1)
            seconds_fixed = max(t2 - seconds_per_atom * n2, 0.0)
        else:
            seconds_per_atom, seconds_fixed = t2 / max(n2, 1), 0.0
        out_per_atom = o2 / max(n2, 1)
    else:
        n2 = n1
        per_atom, fixed = p1 / max(n1, 1), 0.0
        seconds_per_atom, seconds_fixed = t1 / max(n1, 1), 0.0
        out_per_atom = o1 / max(n1, 1)
    n_values = sum(b.values.size for b in bm.blocks)
    return {
        "atoms": n2,
        "structures": len(atoms),
        "peak_per_atom": per_atom,
        "peak_fixed": fixed,
        "seconds_per_atom": seconds_per_atom,
        "seconds_fixed": seconds_fixed,
        "out_per_atom": out_per_atom,
        "n_blocks": len(bm),
        "values_per_atom": n_values / max(n2, 1),
    }


def _measure_good(calculator, atoms: list) -> dict | None:
    """:func:`_measure` on the structures the calculator accepts (``None`` if none)."""
    try:
        return _measure(calculator, atoms)
    except _ContractError:
        raise
    except _INPUT_ERRORS:
        good = []
        for a in atoms:
            try:
                _checked_compute(calculator, [a])
            except _INPUT_ERRORS:
                continue
            good.append(a)
        return _measure(calculator, good) if good else None


def _chunk_size_for(measure: dict, budget: int, atoms_per_structure: float) -> int:
    per_structure = MEMORY_SAFETY * measure["peak_per_atom"] * max(atoms_per_structure, 1.0)
    room = budget - MEMORY_SAFETY * measure["peak_fixed"]
    if room < per_structure:
        warnings.warn(
            f"`memory_budget` {_format_bytes(budget)} is below the estimated peak of one structure "
            f"({_format_bytes(per_structure + MEMORY_SAFETY * measure['peak_fixed'])}); using chunks of 1",
            stacklevel=3,
        )
        return 1
    return max(1, int(room // per_structure))


def estimate_resources(
    calculator,
    frames,
    *,
    index=None,
    chunk_size: int | None = None,
    memory_budget: int | str | None = None,
    count: bool = True,
) -> ResourceEstimate:
    """Dry run: expected output size, peak memory per chunk and time, from a probe.

    Parameters
    ----------
    calculator : object with ``compute(frames) -> BlockMap``
    frames : ase.Atoms, list of ase.Atoms, iterable or path
        As in :func:`compute_chunked`.
    index : int, slice or str, optional
        Selection of ``frames``.
    chunk_size : int, optional
        Structures per chunk; chosen from ``memory_budget`` when omitted.
    memory_budget : int or str, optional
        Peak memory allowed per chunk (default :data:`DEFAULT_MEMORY_BUDGET`).
    count : bool
        Read the whole input to count structures and atoms (cheap for XYZ files, a full read
        for other formats).  Without it, totals are ``None``.

    Returns
    -------
    ResourceEstimate
    """
    _check_calculator(calculator)
    budget = DEFAULT_MEMORY_BUDGET if memory_budget is None else parse_memory(memory_budget)
    if chunk_size is not None:
        chunk_size = check_int(chunk_size, "chunk_size", minimum=1)
    source = _FrameSource(frames, index)
    probe = _probe_frames(iter(source), PROBE_STRUCTURES)[0]
    if not probe:
        raise ValueError(f"`frames` {source.description} selects no readable structure")
    m = _measure_good(calculator, probe)
    if m is None:
        try:
            _checked_compute(calculator, probe[:1])
        except _INPUT_ERRORS as exc:
            raise ValueError(
                f"the calculator fails on every one of the first {len(probe)} structures of "
                f"`frames` {source.description}; first error: {type(exc).__name__}: {exc}"
            ) from None
    atoms_per_structure = m["atoms"] / m["structures"]
    n_structures = n_atoms = None
    if count:
        n_structures, n_atoms, _ = source.count()
    size = chunk_size or _chunk_size_for(m, budget, atoms_per_structure)
    if n_structures is not None:
        size = min(size, max(n_structures, 1))
    chunk_peak = MEMORY_SAFETY * (m["peak_fixed"] + m["peak_per_atom"] * atoms_per_structure * size)
    return ResourceEstimate(
        n_structures=n_structures,
        n_atoms=n_atoms,
        probe_structures=m["structures"],
        probe_atoms=m["atoms"],
        n_blocks=m["n_blocks"],
        n_features_per_atom=m["values_per_atom"],
        output_bytes_per_atom=m["out_per_atom"],
        peak_bytes_per_atom=m["peak_per_atom"],
        peak_bytes_fixed=m["peak_fixed"],
        seconds_per_atom=m["seconds_per_atom"],
        seconds_per_chunk=m["seconds_fixed"],
        memory_budget=budget,
        chunk_size=size,
        n_chunks=None if n_structures is None else math.ceil(n_structures / size),
        chunk_peak_bytes=chunk_peak,
        output_bytes=None if n_atoms is None else m["out_per_atom"] * n_atoms,
        seconds=None
        if n_atoms is None
        else m["seconds_per_atom"] * n_atoms + m["seconds_fixed"] * math.ceil(n_structures / size),
    )


def _probe_frames(it: Iterator[_Frame], n: int) -> tuple[list, list[_Frame]]:
    """Read frames until ``n`` readable ones; return them and everything read."""
    head: list[_Frame] = []
    good = []
    for fr in it:
        head.append(fr)
        if fr.error is None:
            good.append(fr.atoms)
            if len(good) >= n:
                break
    return good, head


# --------------------------------------------------------------------------- sinks
def _is_disk_full(exc: BaseException) -> bool:
    return isinstance(exc, OSError) and exc.errno in _DISK_FULL


def _fsync_write(path: Path, data: bytes) -> None:
    with open(path, "wb") as fd:
        fd.write(data)
        fd.flush()
        os.fsync(fd.fileno())


def _crc32(path: Path) -> str:
    """CRC-32 of a file (detects corruption; 2x faster than SHA-256 on large outputs)."""
    crc = 0
    with open(path, "rb") as fd:
        for block in iter(lambda: fd.read(4 * 2**20), b""):
            crc = zlib.crc32(block, crc)
    return f"{crc:08x}"


class _Sink:
    """Collects chunk results in order; ``finish`` or ``abort`` ends it."""

    def __init__(self) -> None:
        self.ref: dict[tuple, tuple] = {}
        self.key_names: tuple | None = None
        self.key_lists: list[np.ndarray] = []

    def _check(self, meta: dict, index: int) -> None:
        """Chunks must agree on key names and, per key, on sample names, components and
        properties (``meta`` from :func:`_chunk_meta`)."""
        names = tuple(meta["key_names"])
        if self.key_names is None:
            self.key_names = names
        elif names != self.key_names:
            raise ValueError(
                f"chunk {index} has key names {names}, earlier chunks {self.key_names}; "
                "the calculator must return the same layout for every chunk"
            )
        keys = np.array(meta["keys"], dtype=np.int64).reshape(-1, len(names))
        if not self.key_lists or not np.array_equal(self.key_lists[-1], keys):
            self.key_lists.append(keys)
        for key, signature in zip(keys.tolist(), meta["signatures"], strict=True):
            ref = self.ref.setdefault(tuple(key), signature)
            if ref != signature:
                raise ValueError(
                    f"chunk {index}: block {dict(zip(names, key, strict=True))} has other "
                    "samples, components or properties than in earlier chunks; compute every "
                    "chunk with the same hyperparameters (fix `species` so that each chunk sees "
                    "the same species channels)"
                )

    def ordered_keys(self) -> list[tuple]:
        if not self.key_lists:
            return []
        return [tuple(int(x) for x in row) for row in merge_key_order(self.key_lists)]

    def add(self, result: ChunkResult) -> None:  # pragma: no cover - interface
        raise NotImplementedError

    def finish(self, meta: dict):  # pragma: no cover - interface
        raise NotImplementedError

    def abort(self) -> None:
        pass


class _MemorySink(_Sink):
    def __init__(self) -> None:
        super().__init__()
        self.maps: list[BlockMap] = []

    save_dir = None  # results come back to this process

    def add(self, result: ChunkResult) -> None:
        if result.blockmap is not None:
            self._check(_chunk_meta(result.blockmap), result.index)
            self.maps.append(result.blockmap)

    def finish(self, meta: dict) -> BlockMap:
        out = concatenate_blocks(self.maps)
        info = dict(out.info)
        if meta["skipped"]:
            info["skipped"] = meta["skipped"]
        return BlockMap(out.keys, out.blocks, info)


class _DirectorySink(_Sink):
    """Per-chunk ``.npz`` files in a hidden temporary directory, moved into place at the end."""

    def __init__(self, output: Path, overwrite: bool) -> None:
        super().__init__()
        self.output = output
        self.overwrite = overwrite
        parent = output.parent
        if not parent.is_dir():
            raise FileNotFoundError(f"`output` directory {str(parent)!r} does not exist")
        if output.exists() and not overwrite:
            raise ValueError(
                f"`output` {str(output)!r} already exists; pass overwrite=True (--overwrite) to replace it"
            )
        self.tmp = Path(tempfile.mkdtemp(prefix=f".{output.name}.partial-", dir=parent))
        self.chunks: list[dict] = []
        self.info: dict | None = None

    @property
    def save_dir(self) -> str:
        """Where workers may write chunk files directly."""
        return str(self.tmp)

    def add(self, result: ChunkResult) -> None:
        entry = result.saved
        if entry is None:
            if result.blockmap is None:
                return
            entry = _save_chunk(result.blockmap, self.tmp, result.index, result.systems, result.n_atoms)
        self._check(entry, result.index)
        if self.info is None:
            self.info = entry["info"]
        entry = {k: v for k, v in entry.items() if k not in ("info", "signatures", "key_names")}
        self.chunks.append(entry)

    def _manifest(self, meta: dict) -> dict:
        keys = self.ordered_keys()
        return {
            "format": "ncsym-features",
            "format_version": MANIFEST_VERSION,
            "complete": True,
            **meta,
            "info": _jsonable(self.info or {}),
            "keys": {"names": list(self.key_names or ()), "values": [list(k) for k in keys]},
            "chunks": self.chunks,
        }

    def _move_into_place(self, src: Path) -> None:
        dst = self.output
        backup = None
        if dst.exists() or dst.is_symlink():
            backup = dst.parent / f".{dst.name}.old-{os.getpid()}"
            os.replace(dst, backup)
        try:
            os.replace(src, dst)
        except BaseException:
            if backup is not None:
                os.replace(backup, dst)
            raise
        if backup is not None:
            if backup.is_dir() and not backup.is_symlink():
                shutil.rmtree(backup, ignore_errors=True)
            else:
                backup.unlink(missing_ok=True)

    def _tidy(self) -> None:
        """Remove temporary files left by writers that died (a killed Dask worker)."""
        listed = {c["file"] for c in self.chunks}
        for p in self.tmp.iterdir():
            if p.name not in listed:
                p.unlink(missing_ok=True)

    def finish(self, meta: dict) -> dict:
        self._tidy()
        manifest = self._manifest(meta)
        _fsync_write(self.tmp / "manifest.json", json.dumps(manifest, indent=1).encode())
        self._move_into_place(self.tmp)
        return manifest

    def abort(self) -> None:
        # rename first: a worker still finishing a chunk then finds no directory to write in
        trash = self.tmp.with_name(self.tmp.name.replace(".partial-", ".aborted-"))
        try:
            os.replace(self.tmp, trash)
        except OSError:
            trash = self.tmp
        for _ in range(3):
            shutil.rmtree(trash, ignore_errors=True)
            if not trash.exists():
                break
            time.sleep(0.2)


class _MetatensorSink(_DirectorySink):
    """Chunks in a temporary directory, assembled block by block into one ``.mts`` file."""

    def finish(self, meta: dict) -> dict:
        self._tidy()
        manifest = self._manifest(meta)
        fd, tmp_file = tempfile.mkstemp(
            prefix=f".{self.output.name}.partial-", suffix=".mts", dir=self.output.parent
        )
        os.close(fd)
        try:
            _write_mts_from_chunks(Path(tmp_file), self.tmp, manifest)
            self._move_into_place(Path(tmp_file))
        except BaseException:
            Path(tmp_file).unlink(missing_ok=True)
            raise
        shutil.rmtree(self.tmp, ignore_errors=True)
        return manifest


def _labels_record(names: Sequence[str], values: np.ndarray) -> np.ndarray:
    """Labels as metatensor stores them: a structured int32 array."""
    dtype = np.dtype([(str(n), "<i4") for n in names])
    values = np.ascontiguousarray(values, dtype="<i4").reshape(-1, len(names))
    return values.view(dtype).reshape(values.shape[0])


def _npy_header(f, dtype: np.dtype, shape: tuple) -> None:
    np.lib.format.write_array_header_2_0(
        f, {"descr": np.lib.format.dtype_to_descr(dtype), "fortran_order": False, "shape": tuple(shape)}
    )


def _zip_array(zf: zipfile.ZipFile, name: str, array: np.ndarray) -> None:
    with zf.open(name + ".npy", "w", force_zip64=True) as f:
        np.lib.format.write_array(f, np.ascontiguousarray(array), allow_pickle=False)


def _write_mts_from_chunks(path: Path, directory: Path, manifest: dict) -> None:
    """Write metatensor's ``.mts`` format (an uncompressed NPZ) one chunk slice at a time.

    Layout (as ``metatensor.save``): ``keys``, then per block ``blocks/{i}/values``,
    ``samples``, ``components/0`` (``o3_mu``) and ``properties``; labels are structured
    int32 arrays; ``info.json`` holds ``{"ncsym": json of BlockMap.info}``.
    """
    names = manifest["keys"]["names"]
    keys = [tuple(k) for k in manifest["keys"]["values"]]
    positions = []  # per chunk: key -> (position in file, n_samples)
    for chunk in manifest["chunks"]:
        positions.append(
            {tuple(k): (i, n) for i, (k, n) in enumerate(zip(chunk["keys"], chunk["n_samples"], strict=True))}
        )
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_STORED, allowZip64=True) as zf:
        _zip_array(
            zf, "keys", _labels_record(names, np.array(keys, dtype=np.int32).reshape(len(keys), len(names)))
        )
        for bi, key in enumerate(keys):
            parts = [
                (directory / chunk["file"], pos[key][0], pos[key][1])
                for chunk, pos in zip(manifest["chunks"], positions, strict=True)
                if key in pos
            ]
            n_samples = sum(p[2] for p in parts)
            with np.load(parts[0][0], allow_pickle=False) as data:
                i0 = parts[0][1]
                first_shape = data[f"b{i0}_values"].shape
                sample_names = json.loads(str(data[f"b{i0}_samples_names"]))
                prop_names = json.loads(str(data[f"b{i0}_properties_names"]))
                properties = data[f"b{i0}_properties"]
            lam = (first_shape[1] - 1) // 2
            prefix = f"blocks/{bi}/"
            samples = []  # small: kept while the values stream through
            with zf.open(prefix + "values.npy", "w", force_zip64=True) as f:
                _npy_header(f, np.dtype("<f8"), (n_samples, first_shape[1], first_shape[2]))
                for file, i, _ in parts:
                    with np.load(file, allow_pickle=False) as data:
                        arr = np.ascontiguousarray(data[f"b{i}_values"], dtype="<f8")
                        samples.append(data[f"b{i}_samples"])
                    f.write(memoryview(arr).cast("B"))
                    del arr
            _zip_array(zf, prefix + "samples", _labels_record(sample_names, np.concatenate(samples, axis=0)))
            _zip_array(zf, prefix + "components/0", _labels_record(["o3_mu"], np.arange(-lam, lam + 1)))
            _zip_array(zf, prefix + "properties", _labels_record(prop_names, properties))
        with zf.open("info.json", "w", force_zip64=True) as f:
            f.write(json.dumps({"ncsym": json.dumps(manifest["info"])}, indent=2).encode())
    with open(path, "rb+") as fd:
        os.fsync(fd.fileno())


# --------------------------------------------------------------------------- summary
@dataclasses.dataclass
class RunSummary:
    """What :func:`compute_chunked` wrote to disk.

    Attributes
    ----------
    output : pathlib.Path
    format : {"npz-chunks", "mts"}
    n_structures : int
        Structures in the selected input, skipped ones included.
    n_computed : int
    n_atoms : int
        Atoms of the computed structures.
    n_chunks : int
    chunk_size : int
    skipped : list of dict
        ``{"system", "frame", "stage", "error"}`` per skipped structure, in input order.
    seconds : float
        Wall-clock time of the run.
    workers : int
        Dask worker threads (0 for in-process runs).
    compute_seconds : float
        Sum over chunks of the time spent computing (and, on Dask, writing) each chunk;
        ``compute_seconds / seconds`` is the average number of chunks in progress.
    """

    output: Path
    format: str
    n_structures: int
    n_computed: int
    n_atoms: int
    n_chunks: int
    chunk_size: int
    skipped: list
    seconds: float
    workers: int
    compute_seconds: float = 0.0

    def __str__(self) -> str:
        where = "in process" if self.workers == 0 else f"on {self.workers} Dask worker threads"
        rate = self.n_computed / self.seconds if self.seconds > 0 else float("inf")
        text = (
            f"wrote {self.n_computed} structures ({self.n_atoms} atoms) in {self.n_chunks} chunks of "
            f"<= {self.chunk_size} to {self.output} ({self.format}) in {self.seconds:.2f} s {where} "
            f"({rate:.1f} structures/s)"
        )
        if self.skipped:
            text += f"; skipped {len(self.skipped)}: systems {[s['system'] for s in self.skipped][:20]}"
        return text


# --------------------------------------------------------------------------- main entry point
def _tasks(
    frames: Iterable[_Frame], chunk_size: int, source: str, on_error: str, on_skip, counter: list
) -> Iterator[ChunkTask]:
    """Group readable frames into tasks; unreadable ones are skipped or become error tasks."""
    buf: list[_Frame] = []
    index = 0

    def task() -> ChunkTask:
        return ChunkTask(
            index, [f.system for f in buf], [f.frame for f in buf], [f.atoms for f in buf], source
        )

    for fr in frames:
        counter[0] += 1
        if fr.error is not None:
            err = StructureError(fr.system, fr.frame, source, fr.error, "read")
            if on_error == "skip":
                on_skip(err)
                continue
            if buf:
                yield task()
                index += 1
            yield ChunkTask(index, [fr.system], [fr.frame], [], source, error=err.as_dict())
            return
        buf.append(fr)
        if len(buf) == chunk_size:
            yield task()
            index += 1
            buf = []
    if buf:
        yield task()


def _output_kind(output) -> tuple[Path, str]:
    if not isinstance(output, (str, os.PathLike)):
        raise TypeError(f"`output` must be a path, got {type(output).__name__}")
    path = Path(os.fspath(output))
    if path.suffix == ".mts":
        return path, "mts"
    if path.suffix == ".npz":
        raise ValueError(
            f"`output` {str(path)!r}: use a directory name for per-chunk .npz files "
            "(e.g. 'features/') or a '.mts' file for one metatensor file"
        )
    return path, "npz-chunks"


def compute_chunked(
    calculator,
    frames,
    *,
    index=None,
    chunk_size: int | None = None,
    memory_budget: int | str | None = None,
    output: str | os.PathLike | None = None,
    overwrite: bool = False,
    client=None,
    progress: bool = True,
    on_error: str = "raise",
    retries: int = 2,
):
    """Compute features chunk by chunk, in this process or on a Dask cluster.

    Parameters
    ----------
    calculator : object with ``compute(frames) -> BlockMap``
        Any ncsym calculator (or :class:`CalculatorSpec`).  Its blocks must have a
        ``system`` sample column counting the structures of one call from 0; species
        channels must not depend on the structures of a call (set ``species``).
    frames : ase.Atoms, list of ase.Atoms, iterable of ase.Atoms or path
        Structures, or a file ase can read (extxyz, ASE trajectory, ...; ``path@10:100``
        selects frames).  Files are read lazily, one chunk at a time.
    index : int, slice or str, optional
        Selection (``":"``, ``"10:100"``, ``"::2"``, ``-5``).
    chunk_size : int, optional
        Structures per chunk.  When omitted it is chosen from ``memory_budget`` by computing
        the first few structures (see :func:`estimate_resources`).
    memory_budget : int or str, optional
        Peak memory allowed per chunk (per worker with Dask), e.g. ``"1GiB"``.  Default
        :data:`DEFAULT_MEMORY_BUDGET`.
    output : path, optional
        ``None``: return the features as one :class:`~ncsym.BlockMap`.  A path ending in
        ``.mts``: one metatensor file.  Any other path: a directory of per-chunk ``.npz``
        files plus ``manifest.json``.  Written atomically (nothing is left on failure).
    overwrite : bool
        Replace an existing ``output``.
    client : dask.distributed.Client, str or None
        ``None`` computes in this process; a ``Client``, a scheduler address
        (``"tcp://host:8786"``) or ``"local"`` (start a :class:`distributed.LocalCluster`)
        runs the chunks as Dask tasks (see :mod:`ncsym.distributed`).
    progress : bool
        Show a tqdm progress bar on stderr.
    on_error : {"raise", "skip"}
        What to do with a structure that cannot be read or computed: raise
        :class:`StructureError`, or warn (:class:`SkippedStructureWarning`), record it and go
        on.  Either way the message names the structure's position and file frame.
    retries : int
        Dask only: times a chunk is retried after an unexpected failure (bad structures are
        located, never retried; a chunk on a worker that dies is always resubmitted).

    Returns
    -------
    BlockMap or RunSummary
        The features (``output=None``; ``info["skipped"]`` lists skipped structures), or a
        summary of what was written.

    Raises
    ------
    StructureError
        A structure could not be read or computed (``on_error="raise"``).
    ChunkError
        A chunk kept failing on the Dask cluster.
    ConnectionError
        The scheduler cannot be reached.
    OSError
        Writing failed (e.g. the disk is full); the partial output has been removed.
    TypeError, ValueError
        Invalid arguments.

    Notes
    -----
    Results are identical (bitwise, for calculators that work structure by structure) to
    ``calculator.compute(all_frames)`` whatever the chunking or the number of workers, and
    in input order; keys missing from some chunks are merged in the calculator's order
    (:func:`ncsym.blocks.merge_key_order`).  Peak memory is bounded by one chunk (per
    worker) when writing to ``output``: Dask workers that share a filesystem with this
    process write their chunk files themselves, otherwise at most ``2 x worker threads``
    finished chunks wait here.  With ``output=None`` the result itself must fit in memory.

    Examples
    --------
    >>> import ncsym
    >>> from ncsym.pipeline import compute_chunked, load_features
    >>> calc = ncsym.SphericalExpansion(cutoff=4.0, max_radial=4, max_angular=3, species=[1, 8])
    >>> features = compute_chunked(calc, "water.xyz", chunk_size=100)  # doctest: +SKIP
    >>> compute_chunked(calc, "md.traj@::10", output="feats/", client="local")  # doctest: +SKIP
    >>> features = load_features("feats/")  # doctest: +SKIP
    """
    _check_calculator(calculator)
    on_error = _check_on_error(on_error)
    retries = check_int(retries, "retries", minimum=0)
    if chunk_size is not None:
        chunk_size = check_int(chunk_size, "chunk_size", minimum=1)
    budget = DEFAULT_MEMORY_BUDGET if memory_budget is None else parse_memory(memory_budget)
    if not isinstance(progress, bool):
        raise TypeError(f"`progress` must be True or False, got {progress!r}")
    out_path, out_format = (None, "memory") if output is None else _output_kind(output)
    source = _FrameSource(frames, index)

    t0 = time.perf_counter()
    stack = contextlib.ExitStack()
    sink: _Sink | None = None
    try:
        executor = None
        n_workers = 0
        if client is not None:
            from . import distributed as _dist

            executor = stack.enter_context(_dist.ChunkRunner(client, calculator, retries=retries))
            n_workers = executor.n_workers

        frame_iter: Iterator[_Frame] = iter(source)
        if chunk_size is None:
            probe, head = _probe_frames(frame_iter, PROBE_STRUCTURES)
            frame_iter = itertools.chain(head, frame_iter)
            m = _measure_good(calculator, probe) if probe else None
            if m is not None:
                chunk_size = _chunk_size_for(m, budget, m["atoms"] / m["structures"])
            else:  # nothing to measure: the chunks will report the bad structures
                chunk_size = PROBE_STRUCTURES
            if n_workers and source.length:
                chunk_size = min(chunk_size, max(1, math.ceil(source.length / (4 * n_workers))))
        if source.length:
            chunk_size = min(chunk_size, source.length)
        if _unset_species(calculator) and (source.length is None or source.length > chunk_size):
            raise ValueError(
                "`calculator` has species=None, so each chunk would only get the species "
                "channels of its own structures; pass the species of the whole input "
                "(e.g. species=ncsym.pipeline.scan_species(frames)) or a `chunk_size` covering "
                "every structure"
            )

        if out_format == "memory":
            sink = _MemorySink()
        elif out_format == "mts":
            sink = _MetatensorSink(out_path, overwrite)
        else:
            sink = _DirectorySink(out_path, overwrite)

        from tqdm.auto import tqdm

        bar = stack.enter_context(
            tqdm(
                total=source.length,
                unit="structure",
                desc="ncsym features",
                disable=not progress,
                file=sys.stderr,
                leave=False,
            )
        )
        skipped: list[dict] = []

        def skip(err: StructureError) -> None:
            warnings.warn(str(err), SkippedStructureWarning, stacklevel=2)
            skipped.append(err.as_dict())
            bar.update(1)

        counter = [0]
        tasks = _tasks(frame_iter, chunk_size, source.description, on_error, skip, counter)
        if executor is None:
            results = (compute_chunk(calculator, task, on_error) for task in tasks)
        else:
            results = executor.run(tasks, on_error, save_dir=sink.save_dir)
        n_computed = n_atoms = 0
        compute_seconds = 0.0
        for result in results:
            for bad in result.bad:
                err = StructureError.from_dict(bad, source.description)
                if on_error == "raise":
                    raise err
                skip(err)
            sink.add(result)
            n_computed += len(result.systems)
            n_atoms += result.n_atoms
            compute_seconds += result.seconds
            bar.update(len(result.systems))
            del result  # free this chunk before the next one is computed
        if counter[0] == 0:
            raise ValueError(f"`frames` {source.description} (index {source.index!r}) selects no structure")
        if n_computed == 0:
            raise ValueError(
                f"no structure of `frames` {source.description} could be computed: all {counter[0]} "
                "were skipped"
            )
        skipped.sort(key=lambda s: s["system"])
        meta = {
            "ncsym_version": _version(),
            "calculator": _describe(calculator),
            "input": {"source": source.path or source.description, "index": _jsonable(source.index)},
            "n_structures": counter[0],
            "n_computed": n_computed,
            "n_atoms": n_atoms,
            "chunk_size": chunk_size,
            "skipped": skipped,
        }
        final = sink.finish(meta)
        sink = None
    except BaseException as exc:
        stack.close()  # cancel outstanding Dask tasks first
        if sink is not None:
            sink.abort()
        if _is_disk_full(exc) and out_path is not None:
            raise OSError(
                exc.errno,
                f"writing `output` {str(out_path)!r} failed: {exc.strerror} (is the disk full?); "
                "the partial output was removed",
            ) from exc
        raise
    stack.close()
    if out_format == "memory":
        return final
    return RunSummary(
        output=out_path,
        format=out_format,
        n_structures=counter[0],
        n_computed=n_computed,
        n_atoms=n_atoms,
        n_chunks=len(final["chunks"]),
        chunk_size=chunk_size,
        skipped=skipped,
        seconds=time.perf_counter() - t0,
        workers=n_workers,
        compute_seconds=compute_seconds,
    )


def _version() -> str:
    from ._version import __version__

    return __version__


# --------------------------------------------------------------------------- reading outputs
def _read_manifest(path: Path) -> dict:
    manifest_path = path / "manifest.json"
    if not manifest_path.exists():
        raise ValueError(f"`path` {str(path)!r} is not an ncsym feature directory (no manifest.json)")
    try:
        manifest = json.loads(manifest_path.read_text())
    except json.JSONDecodeError as exc:
        raise ValueError(f"`path` {str(path)!r}: manifest.json is not valid JSON ({exc})") from None
    if manifest.get("format") != "ncsym-features" or manifest.get("format_version") != MANIFEST_VERSION:
        raise ValueError(
            f"`path` {str(path)!r}: unsupported manifest (format {manifest.get('format')!r}, "
            f"version {manifest.get('format_version')!r}, expected 'ncsym-features' {MANIFEST_VERSION})"
        )
    return manifest


def iter_chunks(path: str | os.PathLike, *, verify: bool = True) -> Iterator[BlockMap]:
    """Read a per-chunk feature directory one chunk at a time, in input order.

    Parameters
    ----------
    path : path
        A directory written by :func:`compute_chunked` (``output`` without ``.mts``).
    verify : bool
        Check each chunk file against the size and CRC-32 recorded in the manifest.

    Yields
    ------
    BlockMap
        Features of one chunk, with global ``system`` numbers.

    Raises
    ------
    ValueError
        If the directory has no valid manifest or a chunk file is missing or corrupt.
    """
    path = Path(os.fspath(path))
    manifest = _read_manifest(path)
    for chunk in manifest["chunks"]:
        file = path / chunk["file"]
        if not file.exists():
            raise ValueError(f"`path` {str(path)!r}: chunk file {chunk['file']} is missing")
        if verify and (file.stat().st_size != chunk["bytes"] or _crc32(file) != chunk["crc32"]):
            raise ValueError(
                f"`path` {str(path)!r}: chunk file {chunk['file']} is corrupt (checksum mismatch)"
            )
        yield BlockMap.load(file)


def load_features(path: str | os.PathLike, *, verify: bool = True) -> BlockMap:
    """Load features written by :func:`compute_chunked` or ``ncsym features``.

    Parameters
    ----------
    path : path
        A per-chunk directory, a ``.mts`` metatensor file or a single ``.npz`` block file.
    verify : bool
        Check chunk checksums (directories only).

    Returns
    -------
    BlockMap
        All structures; ``info["skipped"]`` lists skipped structures, if any.

    Raises
    ------
    FileNotFoundError
        If ``path`` does not exist.
    ValueError
        If ``path`` is not a feature file or directory.
    """
    p = Path(os.fspath(path))
    if not p.exists():
        raise FileNotFoundError(f"`path` {str(p)!r} does not exist")
    if p.is_dir():
        manifest = _read_manifest(p)
        maps = list(iter_chunks(p, verify=verify))
        if not maps:
            raise ValueError(f"`path` {str(p)!r} holds no chunk")
        bm = concatenate_blocks(maps)
        info = dict(bm.info)
        if manifest["skipped"]:
            info["skipped"] = manifest["skipped"]
        return BlockMap(bm.keys, bm.blocks, info)
    if p.suffix == ".mts":
        return load_metatensor(p)
    return BlockMap.load(p)


def save_metatensor(blockmap: BlockMap, path: str | os.PathLike) -> Path:
    """Write ``blockmap`` to a metatensor ``.mts`` file atomically (``metatensor.save``).

    ``BlockMap.info`` is kept as the TensorMap info entry ``"ncsym"`` (JSON).

    Parameters
    ----------
    blockmap : BlockMap
    path : path
        Must end in ``.mts``.

    Returns
    -------
    pathlib.Path
        The file written.

    Raises
    ------
    TypeError
        If ``blockmap`` is not a BlockMap.
    ValueError
        If ``path`` does not end in ``.mts``.
    ImportError
        If metatensor-core is not installed.
    """
    if not isinstance(blockmap, BlockMap):
        raise TypeError(f"`blockmap` must be an ncsym.BlockMap, got {type(blockmap).__name__}")
    p = Path(os.fspath(path))
    if p.suffix != ".mts":
        raise ValueError(f"`path` must end in '.mts', got {str(p)!r}")
    tensor = blockmap.to_metatensor()
    tensor.set_info("ncsym", json.dumps(_jsonable(blockmap.info)))
    import metatensor

    fd, tmp = tempfile.mkstemp(
        prefix=f".{p.name}.partial-", suffix=".mts", dir=p.parent if str(p.parent) else "."
    )
    os.close(fd)
    try:
        metatensor.save(tmp, tensor)
        os.replace(tmp, p)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return p


def load_metatensor(path: str | os.PathLike) -> BlockMap:
    """Read a ``.mts`` file (from :func:`save_metatensor`, ``ncsym features`` or metatensor).

    Returns
    -------
    BlockMap
        ``info`` restored from the ``"ncsym"`` info entry when present.

    Raises
    ------
    ValueError
        If the file cannot be read by metatensor.
    """
    try:
        import metatensor
    except ImportError:  # pragma: no cover - depends on environment
        raise ImportError(
            "reading .mts files needs metatensor-core: pip install 'ncsym[metatensor]'"
        ) from None
    p = os.fspath(path)
    try:
        tensor = metatensor.load(p)
    except Exception as exc:
        raise ValueError(
            f"`path` {p!r} is not a readable metatensor file ({type(exc).__name__}: {exc})"
        ) from None
    bm = BlockMap.from_metatensor(tensor)
    raw = tensor.info().get("ncsym")
    info = json.loads(raw) if raw else {}
    return BlockMap(bm.keys, bm.blocks, info)


# --------------------------------------------------------------------------- command line
_HYPER_FLAGS = {
    # flag dest: hyperparameter name
    "cutoff": "cutoff",
    "cutoff_width": "cutoff_width",
    "density_width": "density_width",
    "center_atom_weight": "center_atom_weight",
    "max_radial": "max_radial",
    "max_angular": "max_angular",
    "species": "species",
    "nu": "nu",
    "max_lambda": "max_lambda",
}


def _load_hypers_file(path: str) -> dict:
    p = Path(path)
    if not p.exists():
        raise FileNotFoundError(f"`--hypers` file {path!r} does not exist")
    text = p.read_text()
    if p.suffix in (".yaml", ".yml"):
        try:
            import yaml
        except ImportError:  # pragma: no cover - depends on environment
            raise ImportError(
                "YAML hyperparameter files need pyyaml: pip install 'ncsym[distributed]'"
            ) from None
        try:
            data = yaml.safe_load(text)
        except yaml.YAMLError as exc:
            raise ValueError(f"`--hypers` file {path!r} is not valid YAML: {exc}") from None
    else:
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise ValueError(f"`--hypers` file {path!r} is not valid JSON: {exc}") from None
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ValueError(f"`--hypers` file {path!r} must hold a mapping, got {type(data).__name__}")
    return data


def _parse_set(items: list[str]) -> dict:
    out = {}
    for item in items:
        name, sep, text = item.partition("=")
        if not sep or not name.strip():
            raise ValueError(f"`--set` must look like NAME=VALUE, got {item!r}")
        try:
            value = json.loads(text)
        except json.JSONDecodeError:
            value = text
        out[name.strip()] = value
    return out


def _build_spec(args, frames, index) -> tuple[CalculatorSpec, str | None]:
    hypers = _load_hypers_file(args.hypers) if args.hypers else {}
    kind = args.kind or hypers.pop("kind", None) or "density"
    hypers.pop("kind", None)
    for dest, name in _HYPER_FLAGS.items():
        value = getattr(args, dest, None)
        if value is not None:
            hypers[name] = value
    hypers.update(_parse_set(args.set or []))
    spec = CalculatorSpec(kind, hypers)
    note = None
    if spec.species_unset():
        species = scan_species(frames, index)
        hypers["species"] = species
        if isinstance(hypers.get("density"), dict):
            hypers["density"] = {**hypers["density"], "species": species}
        spec = CalculatorSpec(kind, hypers)
        note = f"species {species} (found in the input; pass --species to fix them)"
    return spec, note


def add_cli(subparsers) -> None:
    """Register ``ncsym features`` on an ``argparse`` sub-parser collection."""
    p = subparsers.add_parser(
        "features",
        help="compute features for every structure of a file (chunked, optionally on Dask)",
        description=(
            "Compute features for the structures of INPUT (any file ase can read; "
            "INPUT@10:100 or --index select frames) and write them to OUTPUT: a directory of "
            "per-chunk .npz files plus manifest.json, or one metatensor .mts file."
        ),
    )
    p.add_argument(
        "input", metavar="INPUT", help="structures (extxyz, ASE .traj, ...), optionally FILE@SLICE"
    )
    p.add_argument("-o", "--output", metavar="OUTPUT", help="directory (per-chunk .npz) or FILE.mts")
    p.add_argument("--index", default=None, help="frames to use, e.g. ':', '10:100', '::2' (default all)")
    p.add_argument(
        "--kind",
        default=None,
        help="density, acdc, pair, hamiltonian, or module:attribute of any calculator factory (default density)",
    )
    p.add_argument("--hypers", metavar="FILE", help="hyperparameters (YAML or JSON mapping; may set 'kind')")
    g = p.add_argument_group("hyperparameters (override --hypers)")
    g.add_argument("--cutoff", type=float, help="cutoff radius (Angstrom)")
    g.add_argument("--cutoff-width", type=float, help="width of the cutoff smoothing (Angstrom)")
    g.add_argument("--density-width", type=float, help="Gaussian width sigma of the density (Angstrom)")
    g.add_argument("--center-atom-weight", type=float, help="weight of the central atom in its own density")
    g.add_argument("--max-radial", type=int, help="largest radial index n")
    g.add_argument("--max-angular", type=int, help="largest angular order l")
    g.add_argument(
        "--species", type=int, nargs="+", metavar="Z", help="atomic numbers (default: those in INPUT)"
    )
    g.add_argument("--nu", type=int, help="correlation order of ACDC features")
    g.add_argument("--max-lambda", type=int, help="largest output angular order")
    g.add_argument(
        "--set", action="append", metavar="NAME=VALUE", help="any other hyperparameter (JSON value)"
    )
    r = p.add_argument_group("execution")
    r.add_argument("--chunk-size", type=int, help="structures per chunk (default: from --memory-budget)")
    r.add_argument(
        "--memory-budget", default=None, help="peak memory per chunk/worker, e.g. 1GiB (default 512MiB)"
    )
    r.add_argument(
        "--scheduler",
        nargs="?",
        const="local",
        default=None,
        metavar="ADDRESS",
        help="run on Dask: a scheduler address (tcp://host:8786), or no value to start a local "
        "cluster (then put it after INPUT, or use --workers N)",
    )
    r.add_argument("--workers", type=int, help="workers of the local Dask cluster (implies --scheduler)")
    r.add_argument("--scheduler-timeout", type=float, default=10.0, help="seconds to wait for the scheduler")
    r.add_argument("--retries", type=int, default=2, help="retries of a failing chunk on Dask")
    r.add_argument(
        "--on-error",
        choices=("stop", "skip"),
        default="stop",
        help="unreadable or failing structure: stop (default) or skip it and go on (reported either way)",
    )
    r.add_argument("--overwrite", action="store_true", help="replace OUTPUT if it exists")
    r.add_argument(
        "--dry-run", action="store_true", help="print expected output size, memory and time; write nothing"
    )
    r.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=_cmd_features)


def _cmd_features(args) -> int:
    if args.output is None and not args.dry_run:
        raise ValueError("`--output` is required (a directory or a .mts file), or use --dry-run")
    frames, index = args.input, args.index
    spec, note = _build_spec(args, frames, index)
    if note and not args.quiet:
        print(note, file=sys.stderr)
    if args.dry_run:
        est = estimate_resources(
            spec, frames, index=index, chunk_size=args.chunk_size, memory_budget=args.memory_budget
        )
        print(f"calculator {spec!r}")
        print(est)
        if args.output:
            _, fmt = _output_kind(args.output)
            print(
                f"would write {args.output} ({'per-chunk .npz directory' if fmt == 'npz-chunks' else 'metatensor file'})"
            )
        return 0
    client = None
    try:
        if args.scheduler is not None or args.workers is not None:
            from . import distributed as _dist

            client = _dist.connect(
                None if args.scheduler in (None, "local") else args.scheduler,
                n_workers=args.workers,
                timeout=args.scheduler_timeout,
            )
        summary = compute_chunked(
            spec,
            frames,
            index=index,
            chunk_size=args.chunk_size,
            memory_budget=args.memory_budget,
            output=args.output,
            overwrite=args.overwrite,
            client=client,
            progress=not args.quiet,
            on_error="raise" if args.on_error == "stop" else "skip",
            retries=args.retries,
        )
    except FileNotFoundError:
        raise  # bad arguments: exit status 2 from ncsym.cli.main
    except (StructureError, ChunkError, OSError) as exc:
        # the run started and failed (bad structure, lost workers, disk full, network)
        print(f"ncsym features: error: {exc}", file=sys.stderr)
        return 1
    finally:
        if client is not None:
            client.close()
    print(summary)
    return 0
