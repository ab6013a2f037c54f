"""Reuse of large output buffers between calls.

Features of big structures fill hundreds of megabytes per call (pair features of Si216 at
``max_angular=4``: ~0.5 GB).  NumPy hands out such arrays as freshly mapped memory, and the
operating system zeroes every page again on its first write; on the 2-core virtual machines
ncsym is benchmarked on, that costs as much as computing the features (fresh memory is
written at ~10 GB/s, reused memory at ~26 GB/s).

This module keeps a few large buffers (at most :data:`MAX_BUFFERS`) and lends them again once
every array the caller got from them has been dropped.  "Dropped" is read from the buffer's
reference count: an array (or a view of it) handed to the caller holds a reference to the
buffer, so a buffer is free exactly when the pool's own reference is the only one left.  A
loop that computes features, uses them and drops them therefore touches the same memory on
every call.  Buffers still in use are never lent; when all pooled buffers are in use, a plain
``np.empty`` array (not pooled) is returned.  The blocks of one output are views of one
buffer: keeping a single block keeps the whole buffer (copy the block to keep it alone).
Only reference counting tells when a buffer is free, so the pool is off on interpreters
without a GIL-protected CPython reference count.

The pool retains at most :data:`MAX_BUFFERS` buffers and :data:`MAX_POOLED_BYTES` (a quarter of
the physical memory) after their arrays are dropped;
:func:`release_buffers` hands them back to the system, and ``NCSYM_BUFFER_POOL=0`` (read on
each call) turns the pool off.
"""

from __future__ import annotations

import os
import sys
import threading

import numpy as np

__all__ = ["empty", "release_buffers", "pooled_bytes", "MIN_POOLED_BYTES", "MAX_BUFFERS", "MAX_POOLED_BYTES"]

#: Requests smaller than this (bytes) are plain ``np.empty``: the C allocator already reuses them.
MIN_POOLED_BYTES = 32 * 2**20
#: Most buffers kept by the pool (in use or free).
MAX_BUFFERS = 2
#: Most bytes kept by the pool (in use or free): a quarter of the physical memory.
MAX_POOLED_BYTES = (
    os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") // 4 if hasattr(os, "sysconf") else 2**30
)

_LOCK = threading.Lock()
_POOL: list[np.ndarray] = []


def _refs(items: list, i: int) -> int:
    return sys.getrefcount(items[i])


#: What :func:`_refs` reports for an array held by a list alone (2 on CPython up to 3.13:
#: the list and getrefcount's argument).  Measured rather than assumed, since interpreters
#: may skip the argument's reference; any array lent from a buffer (views included: their
#: base is the buffer) adds one.
_ALONE = _refs([np.empty(0)], 0)

#: Reference counts say when a buffer is free only on CPython with the GIL.
_COUNTS_RELIABLE = sys.implementation.name == "cpython" and getattr(sys, "_is_gil_enabled", lambda: True)()


def _enabled() -> bool:
    if not _COUNTS_RELIABLE:
        return False
    return os.environ.get("NCSYM_BUFFER_POOL", "1").strip().lower() not in ("0", "false", "no", "off")


def _free(i: int) -> bool:
    return _refs(_POOL, i) == _ALONE


def empty(n: int) -> np.ndarray:
    """A 1-D float64 array of ``n`` uninitialised values, reusing a pooled buffer when one is free.

    Parameters
    ----------
    n : int
        Number of float64 values.

    Returns
    -------
    ndarray of float64, shape (n,)
        Contents undefined (possibly values of an earlier call), like ``np.empty``.  It is a
        view of a pooled buffer when ``8 n >= MIN_POOLED_BYTES``.
    """
    n = int(n)
    if 8 * n < MIN_POOLED_BYTES or not _enabled():
        return np.empty(n)
    with _LOCK:
        best = -1
        for i in range(len(_POOL)):
            # a free buffer that fits without wasting more than half of it
            if _free(i) and n <= _POOL[i].shape[0] <= 2 * n:
                if best < 0 or _POOL[i].shape[0] < _POOL[best].shape[0]:
                    best = i
        if best >= 0:
            return _POOL[best][:n]
        # make room: drop free buffers that did not fit, then add a new one if there is space
        for i in reversed(range(len(_POOL))):
            if _free(i):
                del _POOL[i]
        buf = np.empty(n)
        if len(_POOL) < MAX_BUFFERS and sum(b.nbytes for b in _POOL) + buf.nbytes <= MAX_POOLED_BYTES:
            _POOL.append(buf)
        return buf[:n]


def release_buffers() -> int:
    """Drop the pooled buffers that no array uses any more; returns the bytes released."""
    with _LOCK:
        released = 0
        for i in reversed(range(len(_POOL))):
            if _free(i):
                released += _POOL[i].nbytes
                del _POOL[i]
        return released


def pooled_bytes() -> int:
    """Bytes held by the pool (buffers in use included)."""
    with _LOCK:
        return sum(buf.nbytes for buf in _POOL)
