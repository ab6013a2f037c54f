"""Input validation shared by every public entry point.

Messages follow one shape: the argument in backticks, what was expected, what was received.
"""

from __future__ import annotations

import numbers

import numpy as np

from .conventions import MAX_ANGULAR


def check_int(value, name: str, *, minimum: int | None = None, maximum: int | None = None) -> int:
    """Return ``value`` as an ``int`` or raise ``TypeError``/``ValueError``."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        if isinstance(value, numbers.Real) and float(value).is_integer():
            raise TypeError(f"`{name}` must be an integer, got {value!r} ({type(value).__name__})")
        raise TypeError(f"`{name}` must be an integer, got {value!r} ({type(value).__name__})")
    value = int(value)
    if minimum is not None and value < minimum:
        raise ValueError(f"`{name}` must be >= {minimum}, got {value}")
    if maximum is not None and value > maximum:
        raise ValueError(f"`{name}` must be <= {maximum}, got {value}")
    return value


def check_angular(value, name: str = "max_angular", maximum: int = MAX_ANGULAR) -> int:
    """An angular order in ``[0, maximum]``."""
    return check_int(value, name, minimum=0, maximum=maximum)


def check_positive_float(value, name: str, *, allow_zero: bool = False) -> float:
    """A finite float > 0 (or >= 0 with ``allow_zero``)."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"`{name}` must be a real number, got {value!r} ({type(value).__name__})")
    value = float(value)
    if not np.isfinite(value):
        raise ValueError(f"`{name}` must be finite, got {value}")
    if value < 0 or (value == 0 and not allow_zero):
        bound = ">= 0" if allow_zero else "> 0"
        raise ValueError(f"`{name}` must be {bound}, got {value}")
    return value


def check_array(
    array,
    name: str,
    *,
    ndim: int | None = None,
    shape: tuple | None = None,
    dtype=np.float64,
    finite: bool = True,
) -> np.ndarray:
    """Convert to a C-contiguous array of ``dtype`` and check dimensions, shape and values.

    ``shape`` may hold ``None`` for free axes.
    """
    try:
        out = np.ascontiguousarray(array, dtype=dtype)
    except (TypeError, ValueError) as exc:
        raise TypeError(f"`{name}` must be convertible to a {np.dtype(dtype)} array: {exc}") from None
    if ndim is not None and out.ndim != ndim:
        raise ValueError(f"`{name}` must have {ndim} dimensions, got shape {out.shape}")
    if shape is not None:
        if out.ndim != len(shape) or any(
            s is not None and s != o for s, o in zip(shape, out.shape, strict=False)
        ):
            want = "(" + ", ".join("n" if s is None else str(s) for s in shape) + ")"
            raise ValueError(f"`{name}` must have shape {want}, got {out.shape}")
    if finite and out.dtype.kind == "f" and not np.all(np.isfinite(out)):
        raise ValueError(f"`{name}` contains NaN or infinite values")
    return out
