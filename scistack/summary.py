"""One-line previews of values: the `value` column of the SQL views and `scistack ls/log`.

Scalars and short strings appear as themselves (so `SELECT value FROM MaxActivation` reads
0.82), everything else as a type-and-shape description such as ``float64[1000]``.
"""

from __future__ import annotations

from typing import Any

import numpy as np

MAX_TEXT = 60
_DTYPE_NAMES: dict = {}


def _dtype_name(dtype: np.dtype) -> str:
    name = _DTYPE_NAMES.get(dtype)
    if name is None:
        name = _DTYPE_NAMES[dtype] = str(dtype)
    return name


def described(value: Any) -> tuple[str, tuple] | None:
    """(dtype or type name, shape) of a value with a shape, as `summarize` shows it and the
    SQL views' `dtype` and `shape` columns say it (`inline`): a Series of float64 is
    `float64[5000]` as an array is, a DataFrame `DataFrame[5000x2]`, an Arrow table `Table`,
    a Series of text `Series[5000]`; None for a value without a shape."""
    shape = getattr(value, "shape", None)
    if shape is None:
        return None
    dtype = getattr(value, "dtype", None)  # (numpy's, or a dask, zarr or lazy array's: a name)
    return (_dtype_name(dtype) if isinstance(dtype, np.dtype) else type(value).__name__), tuple(shape)


def summarize(value: Any) -> str:
    """A short, human-readable preview of `value`."""
    if isinstance(value, np.ndarray):
        if value.ndim == 0:
            return summarize(value[()])
        return f"{_dtype_name(value.dtype)}[{'x'.join(map(str, value.shape))}]"
    if isinstance(value, (bool, np.bool_)):
        return "true" if value else "false"
    if isinstance(value, (np.datetime64, np.timedelta64)):  # (a timedelta64 is an np.integer)
        return str(value)
    if isinstance(value, (int, float, np.integer, np.floating)):
        return repr(float(value)) if isinstance(value, (float, np.floating)) else str(int(value))
    if isinstance(value, (complex, np.complexfloating)):
        return repr(complex(value)).strip("()")  # 1+2j (a numpy complex read as "complex128[]")
    if isinstance(value, (bytes, np.bytes_)):
        return f"bytes[{len(value)}]"
    if isinstance(value, str):
        return value if len(value) <= MAX_TEXT else value[: MAX_TEXT - 1] + "…"
    if value is None:
        return "None"
    found = described(value)
    if found is not None:
        return f"{found[0]}[{'x'.join(str(n) for n in found[1])}]"
    if hasattr(value, "__len__"):
        return f"{type(value).__name__}[{len(value)}]"
    return type(value).__name__
