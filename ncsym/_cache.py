"""On-disk cache: location, versioned ``.npz`` files, atomic writes, checksums.

Location: ``$NCSYM_CACHE_DIR`` if set, else ``$XDG_CACHE_HOME/ncsym`` (``~/.cache/ncsym``);
never inside the package.  Files are written to a temporary name in the same directory and
moved into place with :func:`os.replace`, so concurrent writers and a kill mid-write never
leave a partial file behind.  Every file carries a format version, a convention tag and a
SHA-256 checksum of its payload; anything that does not match is reported as
:class:`CacheError` so callers can warn and rebuild.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import tempfile
from pathlib import Path

import numpy as np

#: Bump when the layout of cached files changes.
CACHE_FORMAT_VERSION = 1


class CacheError(Exception):
    """A cached file is missing, corrupt, foreign or from another format version."""


def cache_dir() -> Path:
    """Directory of ncsym's on-disk cache (not created)."""
    env = os.environ.get("NCSYM_CACHE_DIR")
    if env:
        return Path(env).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME")
    base = Path(xdg).expanduser() if xdg else Path.home() / ".cache"
    return base / "ncsym"


def checksum(arrays: dict[str, np.ndarray], names: list[str]) -> str:
    """SHA-256 over dtype, shape and bytes of ``arrays[name]`` for ``name`` in ``names``."""
    h = hashlib.sha256()
    for name in names:
        a = np.ascontiguousarray(arrays[name])
        h.update(name.encode())
        h.update(str(a.dtype).encode())
        h.update(str(a.shape).encode())
        h.update(a.tobytes())
    return h.hexdigest()


@contextlib.contextmanager
def atomic_writer(path, mode: str = "wb", **kwargs):
    """Open a temporary file next to ``path``; on success fsync it and rename it to ``path``.

    The directory is created.  On any error (or interrupt) the temporary file is removed and
    ``path`` is left as it was, so readers never see a partial file.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, mode, **kwargs) as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.remove(tmp)
        except FileNotFoundError:
            pass
        raise


def atomic_save(path: Path, arrays: dict[str, np.ndarray], *, compress: bool = False) -> None:
    """Write ``arrays`` to ``path`` (``.npz``) atomically; creates the directory."""
    with atomic_writer(path) as f:
        (np.savez_compressed if compress else np.savez)(f, **arrays)


def load_checked(
    path: Path, *, tag: str, names: list[str], checksum_key: str = "checksum"
) -> dict[str, np.ndarray]:
    """Load ``names`` from ``path`` and verify version, tag and the checksum ``checksum_key``.

    Raises
    ------
    CacheError
        If the file is missing, unreadable, from another format or convention, or its
        checksum does not match.
    """
    path = Path(path)
    if not path.exists():
        raise CacheError(f"no cache file {path}")
    try:
        with np.load(path, allow_pickle=False) as data:
            version = int(data["format_version"])
            if version != CACHE_FORMAT_VERSION:
                raise CacheError(f"{path}: format version {version}, expected {CACHE_FORMAT_VERSION}")
            if str(data["tag"]) != tag:
                raise CacheError(f"{path}: convention tag {str(data['tag'])!r}, expected {tag!r}")
            out = {name: data[name] for name in names}
            stored = str(data[checksum_key])
    except CacheError:
        raise
    except Exception as exc:  # zipfile.BadZipFile, KeyError, ValueError, OSError, EOFError...
        raise CacheError(f"{path}: unreadable cache file ({type(exc).__name__}: {exc})") from None
    if checksum(out, names) != stored:
        raise CacheError(f"{path}: checksum mismatch (corrupt file)")
    return out
