"""Compiled kernels on plain arrays, and dispatch between CPU and CUDA backends.

:func:`get_backend` maps a backend name to the module of Clebsch-Gordan product kernels:
``"cpu"`` -> :mod:`ncsym.kernels.cg_cpu` (Numba, parallel over samples),
``"cuda"`` -> :mod:`ncsym.kernels.cg_cuda` (numba.cuda, same function names and argument
order).  Nothing is imported or compiled until a backend is requested; the CUDA module (and
``numba.cuda``) is only imported by ``get_backend("cuda")``.
"""

from __future__ import annotations

import importlib

__all__ = ["BACKENDS", "get_backend", "check_backend"]

#: Backend names accepted by :func:`get_backend`.
BACKENDS = ("cpu", "cuda")

_MODULES = {"cpu": "ncsym.kernels.cg_cpu", "cuda": "ncsym.kernels.cg_cuda"}


def check_backend(backend) -> str:
    """Validate a backend name and return it.

    Raises
    ------
    TypeError
        If ``backend`` is not a string.
    ValueError
        If ``backend`` is not one of :data:`BACKENDS`.
    """
    if not isinstance(backend, str):
        raise TypeError(f"`backend` must be a string, got {backend!r} ({type(backend).__name__})")
    if backend not in _MODULES:
        raise ValueError(f"invalid `backend`, got {backend!r}, only 'cpu' and 'cuda' are supported")
    return backend


def get_backend(backend: str = "cpu"):
    """Module holding the CG product kernels of ``backend``.

    Parameters
    ----------
    backend : {"cpu", "cuda"}
        ``"cuda"`` needs numba-cuda and a CUDA device, or ``NUMBA_ENABLE_CUDASIM=1`` set
        before Numba is first imported (the simulator, for tests).

    Returns
    -------
    module
        With ``outer_product``, ``channelwise_product``, ``outer_product_segments``,
        ``channelwise_product_segments`` and ``outer_product_plan`` (same names and argument
        order in both backends; see :mod:`ncsym.kernels.cg_cpu`).

    Raises
    ------
    ValueError
        Unknown backend name.
    RuntimeError
        ``"cuda"`` requested but no CUDA device (nor the simulator) is available.
    """
    backend = check_backend(backend)
    module = importlib.import_module(_MODULES[backend])
    if backend == "cuda":
        module.require_device()
    return module
