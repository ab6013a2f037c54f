"""Run chunked feature computations on Dask (``pip install 'ncsym[distributed]'``).

:func:`ncsym.pipeline.compute_chunked` with ``client=`` (or ``ncsym features --scheduler``)
uses :class:`ChunkRunner`: each chunk of structures becomes one Dask task, a pure function
of the pickled calculator and the chunk's structures.  Tasks are submitted a few at a time
(at most ``2 x worker threads`` in flight, so memory stays bounded whatever the input size),
their results are consumed in input order (when writing to disk on a filesystem the workers
share, workers write their chunk files themselves and send back only a description), and:

- a task whose worker dies (killed, out of memory) is resubmitted by the scheduler; the
  result of each chunk is taken exactly once, so nothing is lost or duplicated;
- a task that raises an unexpected error is retried ``retries`` times;
- a structure the calculator rejects is located inside the task and reported with its
  index (never retried: the error is deterministic).

Each worker process unpickles the calculator once (cached by content hash) and compiles the
Numba kernels it uses once; kernels are compiled with ``cache=True``, so workers started
later (or restarted) load them from the on-disk cache (``NUMBA_CACHE_DIR`` if set).
:func:`numba_kernel_stats` reports signatures and cache hits per worker.
"""

from __future__ import annotations

import hashlib
import logging
import os
import socket
import uuid
from collections import deque
from collections.abc import Iterable, Iterator

from .pipeline import ChunkError, ChunkResult, ChunkTask, compute_chunk

__all__ = ["ChunkRunner", "NoTaskProfiler", "connect", "disable_task_profiler", "numba_kernel_stats"]

_INSTALL_HINT = "distributed execution needs dask.distributed: pip install 'ncsym[distributed]'"

#: Calculators unpickled in this (worker) process, by content hash.
_CALCULATORS: dict[str, object] = {}
_MAX_CACHED = 4


def _import_distributed():
    try:
        import distributed
    except ImportError:  # pragma: no cover - depends on environment
        raise ImportError(_INSTALL_HINT) from None
    return distributed


def _check_reachable(address: str, timeout: float) -> None:
    """Fail fast with a clear message when a TCP scheduler address does not answer."""
    from distributed.comm import parse_address
    from distributed.comm.addressing import parse_host_port

    scheme, location = parse_address(address)
    if scheme not in ("tcp", "tls"):
        return
    host, port = parse_host_port(location)
    try:
        with socket.create_connection((host, port), timeout=timeout):
            pass
    except OSError as exc:
        raise ConnectionError(
            f"cannot reach the Dask scheduler at `scheduler` {address!r} "
            f"({type(exc).__name__}: {exc}); check the address and that `dask scheduler` is "
            "running there, or omit the address to start a local cluster"
        ) from None


def connect(
    scheduler: str | None = None,
    *,
    n_workers: int | None = None,
    threads_per_worker: int = 1,
    timeout: float = 10.0,
    memory_limit: str | int = "auto",
):
    """A ``dask.distributed.Client`` for a scheduler address, or on a new local cluster.

    Parameters
    ----------
    scheduler : str, optional
        Address such as ``"tcp://10.0.0.1:8786"``.  ``None`` or ``"local"`` starts a
        :class:`distributed.LocalCluster` of worker processes on this machine, closed with
        the client.
    n_workers : int, optional
        Local cluster only: worker processes (default ``min(cpu count, 4)``).
    threads_per_worker : int
        Local cluster only: threads per worker (also Numba's thread count in the worker).
    timeout : float
        Seconds to wait for the scheduler.
    memory_limit : str or int
        Local cluster only: memory limit per worker (Dask restarts a worker above it).

    Returns
    -------
    distributed.Client

    Raises
    ------
    ImportError
        If dask.distributed is not installed.
    ConnectionError
        If the scheduler cannot be reached within ``timeout``.
    TypeError, ValueError
        Invalid arguments (e.g. a malformed address).
    """
    dist = _import_distributed()
    if not isinstance(timeout, (int, float)) or isinstance(timeout, bool) or timeout <= 0:
        raise ValueError(f"`timeout` must be a positive number of seconds, got {timeout!r}")
    if scheduler is None or scheduler == "local":
        if n_workers is None:
            n_workers = max(1, min(os.cpu_count() or 1, 4))
        if isinstance(n_workers, bool) or not isinstance(n_workers, int) or n_workers < 1:
            raise ValueError(f"`n_workers` must be a positive integer, got {n_workers!r}")
        if (
            isinstance(threads_per_worker, bool)
            or not isinstance(threads_per_worker, int)
            or threads_per_worker < 1
        ):
            raise ValueError(f"`threads_per_worker` must be a positive integer, got {threads_per_worker!r}")
        env = {"NUMBA_NUM_THREADS": str(threads_per_worker)}
        if "NUMBA_CACHE_DIR" in os.environ:
            env["NUMBA_CACHE_DIR"] = os.environ["NUMBA_CACHE_DIR"]
        client = dist.Client(
            n_workers=n_workers,
            threads_per_worker=threads_per_worker,
            processes=True,
            dashboard_address=None,
            # the scheduler's HTTP routes on a free port: no clash with other clusters on 8787
            scheduler_kwargs={"dashboard": False, "dashboard_address": ":0"},
            memory_limit=memory_limit,
            silence_logs=logging.ERROR,
            env=env,
        )
        disable_task_profiler(client)
        return client
    if not isinstance(scheduler, str):
        raise TypeError(
            f"`scheduler` must be an address string like 'tcp://host:8786', got {type(scheduler).__name__}"
        )
    if n_workers is not None:
        raise ValueError(
            "`n_workers` only applies to a local cluster; a remote scheduler has its own workers"
        )
    try:
        _check_reachable(scheduler, timeout)
    except ValueError as exc:
        raise ValueError(f"`scheduler` {scheduler!r} is not a valid Dask address: {exc}") from None
    try:
        return dist.Client(scheduler, timeout=timeout, set_as_default=False)
    except ValueError as exc:
        raise ValueError(f"`scheduler` {scheduler!r} is not a valid Dask address: {exc}") from None
    except (OSError, TimeoutError) as exc:
        raise ConnectionError(
            f"cannot connect to the Dask scheduler at `scheduler` {scheduler!r} within {timeout} s "
            f"({type(exc).__name__}: {exc})"
        ) from None


try:  # only to subclass it: dask stays an optional dependency
    from distributed.diagnostics.plugin import WorkerPlugin as _WorkerPlugin
except ImportError:  # pragma: no cover - depends on environment
    _WorkerPlugin = object


class NoTaskProfiler(_WorkerPlugin):
    """Worker plugin stopping Dask's statistical task profiler.

    The profiler samples the stack of every task thread every 10 ms (holding the GIL); on
    Python-heavy chunks it halved worker throughput in our measurements.  Registered on the
    clusters :func:`connect` starts; applied to workers that join or restart later too.
    """

    name = "ncsym-no-task-profiler"

    def setup(self, worker) -> None:
        for name in ("profile", "profile-cycle"):
            callback = worker.periodic_callbacks.pop(name, None)
            if callback is not None:
                callback.stop()


def disable_task_profiler(client) -> None:
    """Stop Dask's task profiler on every current and future worker of ``client``."""
    client.register_plugin(NoTaskProfiler(), name=NoTaskProfiler.name)


def _remote_compute(
    payload: bytes, digest: str, task: ChunkTask, on_error: str, save_dir: str | None = None
) -> ChunkResult:
    """Dask task: compute one chunk with the calculator pickled in ``payload`` (and write it
    to ``save_dir`` if given)."""
    calc = _CALCULATORS.get(digest)
    if calc is None:
        import cloudpickle

        calc = cloudpickle.loads(payload)
        while len(_CALCULATORS) >= _MAX_CACHED:
            _CALCULATORS.pop(next(iter(_CALCULATORS)))
        _CALCULATORS[digest] = calc
    return compute_chunk(calc, task, on_error, save_dir)


def _sees_file(path: str) -> bool:
    return os.path.exists(path)


def _kernel_stats() -> dict:
    import sys

    try:
        from numba.core.registry import CPUDispatcher
    except ImportError:  # pragma: no cover - numba is a dependency
        return {}
    out = {"pid": os.getpid(), "kernels": {}}
    for name, mod in list(sys.modules.items()):
        if not (name == "ncsym" or name.startswith("ncsym.")) or mod is None:
            continue
        for attr, obj in list(vars(mod).items()):
            if isinstance(obj, CPUDispatcher) and obj.signatures:
                stats = obj.stats
                out["kernels"][f"{name}.{attr}"] = {
                    "signatures": len(obj.signatures),
                    "cache_hits": int(sum(stats.cache_hits.values())),
                    "cache_misses": int(sum(stats.cache_misses.values())),
                }
    return out


def numba_kernel_stats(client) -> dict[str, dict]:
    """Numba kernels of ncsym used on each worker: compiled signatures and cache use.

    Parameters
    ----------
    client : distributed.Client

    Returns
    -------
    dict
        ``{worker address: {"pid": int, "kernels": {"module.name": {"signatures": int,
        "cache_hits": int, "cache_misses": int}}}}``.  ``cache_misses`` counts compilations
        in that worker process; ``cache_hits`` counts kernels loaded from the disk cache.
    """
    return client.run(_kernel_stats)


class ChunkRunner:
    """Submit chunks to a Dask cluster and yield their results in input order.

    Parameters
    ----------
    client : distributed.Client or str
        A client, a scheduler address, or ``"local"`` (a new local cluster, closed on exit).
    calculator : object with ``compute(frames) -> BlockMap``
        Pickled once with cloudpickle; unpickled once per worker process.
    retries : int
        Retries of a task that raises an unexpected exception.
    max_in_flight : int, optional
        Chunks submitted but not yet consumed (default ``2 x worker threads``).
    timeout : float
        Seconds to wait for the scheduler and for a first worker.

    Notes
    -----
    Use as a context manager: on exit, unfinished tasks are cancelled and an owned client
    is closed.
    """

    def __init__(
        self, client, calculator, *, retries: int = 2, max_in_flight: int | None = None, timeout: float = 10.0
    ):
        dist = _import_distributed()
        import cloudpickle

        self._owned = None
        if isinstance(client, dist.Client):
            self.client = client
        elif isinstance(client, str):
            self.client = connect(None if client == "local" else client, timeout=timeout)
            self._owned = self.client
        else:
            raise TypeError(
                "`client` must be a dask.distributed.Client, a scheduler address or 'local', "
                f"got {type(client).__name__}"
            )
        try:
            self.client.wait_for_workers(1, timeout=timeout)
        except (TimeoutError, OSError) as exc:
            self.close()
            raise ConnectionError(f"the Dask scheduler has no worker after {timeout} s ({exc})") from None
        self.n_workers = int(sum(self.client.nthreads().values())) or 1
        self.payload = cloudpickle.dumps(calculator)
        self.digest = hashlib.sha256(self.payload).hexdigest()
        self.retries = retries
        self.max_in_flight = max_in_flight or max(2, 2 * self.n_workers)
        self._run_id = uuid.uuid4().hex[:10]
        self._pending: deque = deque()

    def __enter__(self) -> ChunkRunner:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        """Cancel unfinished tasks; close the client if this runner created it."""
        if self._pending:
            try:
                self.client.cancel([f for _, f in self._pending])
            except Exception:  # pragma: no cover - best effort while shutting down
                pass
            self._pending.clear()
        if self._owned is not None:
            self._owned.close()
            self._owned = None

    def shared_directory(self, directory: str | None) -> str | None:
        """``directory`` if every worker sees it (shared filesystem), else ``None``."""
        if directory is None:
            return None
        probe = os.path.join(directory, f".probe-{uuid.uuid4().hex}")
        with open(probe, "w"):
            pass
        try:
            seen = self.client.run(_sees_file, probe)
        except Exception:  # pragma: no cover - a worker could not answer
            return None
        finally:
            os.remove(probe)
        return directory if seen and all(seen.values()) else None

    def _submit(self, task: ChunkTask, on_error: str, save_dir: str | None):
        return self.client.submit(
            _remote_compute,
            self.payload,
            self.digest,
            task,
            on_error,
            save_dir,
            key=f"ncsym-chunk-{self._run_id}-{task.index:06d}",
            retries=self.retries,
            pure=False,
        )

    def _collect(self, task: ChunkTask, future) -> ChunkResult:
        from distributed import KilledWorker

        try:
            result = future.result()
        except OSError:
            raise  # e.g. a full disk while a worker wrote its chunk: reported as such
        except KilledWorker as exc:
            raise ChunkError(
                f"chunk {task.index} (structures {task.systems[0]}..{task.systems[-1]}) was lost: "
                f"every worker that computed it died ({exc})"
            ) from None
        except Exception as exc:
            raise ChunkError(
                f"chunk {task.index} (structures {task.systems[0]}..{task.systems[-1]}) failed after "
                f"{self.retries} retries: {type(exc).__name__}: {exc}"
            ) from exc
        if result.index != task.index or not set(result.systems) <= set(task.systems):
            raise ChunkError(f"chunk {task.index}: the result does not belong to this chunk")
        return result

    def run(
        self, tasks: Iterable[ChunkTask], on_error: str, save_dir: str | None = None
    ) -> Iterator[ChunkResult]:
        """Submit ``tasks`` (lazily, bounded) and yield their results in order.

        With ``save_dir`` (a directory every worker can write, checked once), workers write
        their chunk files there and return only their description.
        """
        save_dir = self.shared_directory(save_dir)
        for task in tasks:
            if task.error is not None:
                self._pending.append((task, None))
            else:
                self._pending.append((task, self._submit(task, on_error, save_dir)))
            while len(self._pending) >= self.max_in_flight:
                yield self._pop()
        while self._pending:
            yield self._pop()

    def _pop(self) -> ChunkResult:
        task, future = self._pending[0]
        result = compute_chunk(None, task) if future is None else self._collect(task, future)
        self._pending.popleft()
        return result
