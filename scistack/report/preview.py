"""A value reduced to what a page can draw: a line for a 1-D array, an image for a 2-D one,
a table head for a DataFrame, text for anything else.

Bounded whatever the value's size: a long signal becomes a min/max envelope of at most
`max_points` points (peaks stay visible), a large matrix a block-averaged image of at most
`max_side` x `max_side`. Values are plain JSON: NaN and infinities become None.
"""

from __future__ import annotations

import math
import pprint
import warnings
from typing import Any

import numpy as np


def preview(value: Any, *, max_points: int = 2000, max_side: int = 120, head: int = 20) -> dict[str, Any]:
    """{"kind": "line" | "image" | "table" | "text", ...} for `value` (see the module docstring)."""
    import pandas as pd
    import pyarrow as pa

    if isinstance(value, pa.Table):
        value = value.to_pandas()
    if isinstance(value, np.ndarray) and _plottable(value):
        if value.ndim == 1 or (value.ndim == 2 and 1 in value.shape):
            return _line(value.reshape(-1).astype(np.float64), max_points)
        if value.ndim == 2:
            return _image(value.astype(np.float64), max_side)
    if isinstance(value, (pd.DataFrame, pd.Series)):
        frame = value.to_frame() if isinstance(value, pd.Series) else value
        rows = frame.head(head)
        return {
            "kind": "table",
            "shape": list(frame.shape),
            "columns": [str(c) for c in frame.columns],
            "rows": [[_cell(v) for v in row] for row in rows.itertuples(index=False)],
        }
    text = pprint.pformat(value, width=100, compact=True)
    return {"kind": "text", "text": text if len(text) <= 20_000 else text[:19_999] + "…"}


def _plottable(value: np.ndarray) -> bool:
    return value.size > 0 and (np.issubdtype(value.dtype, np.number) or value.dtype == bool) and not (
        np.issubdtype(value.dtype, np.complexfloating)
    )


def _line(y: np.ndarray, max_points: int) -> dict[str, Any]:
    n = y.size
    if n <= max_points:
        xs, ys = np.arange(n), y
    else:  # min and max of each bucket, in the order they occur
        buckets = max_points // 2
        edges = np.linspace(0, n, buckets + 1).astype(int)
        xs_list, ys_list = [], []
        for lo, hi in zip(edges[:-1], edges[1:]):
            part = y[lo:hi]
            if not np.isfinite(part).any():
                xs_list.append(lo)
                ys_list.append(math.nan)
                continue
            a, b = lo + int(np.nanargmin(part)), lo + int(np.nanargmax(part))
            for i in sorted({a, b}):
                xs_list.append(i)
                ys_list.append(y[i])
        xs, ys = np.array(xs_list), np.array(ys_list)
    return {"kind": "line", "n": int(n), "x": xs.tolist(), "y": [_number(v) for v in ys.tolist()]}


def _image(z: np.ndarray, max_side: int) -> dict[str, Any]:
    rows, cols = z.shape
    fr, fc = max(1, math.ceil(rows / max_side)), max(1, math.ceil(cols / max_side))
    if fr > 1 or fc > 1:  # block means; NaN-padded so every block is whole
        padded = np.full((math.ceil(rows / fr) * fr, math.ceil(cols / fc) * fc), np.nan)
        padded[:rows, :cols] = z
        blocks = padded.reshape(padded.shape[0] // fr, fr, padded.shape[1] // fc, fc)
        with warnings.catch_warnings():  # an all-NaN block is NaN, not a warning
            warnings.simplefilter("ignore", RuntimeWarning)
            z = np.nanmean(blocks, axis=(1, 3))
    finite = z[np.isfinite(z)]
    return {
        "kind": "image",
        "shape": [int(rows), int(cols)],
        "z": [[_number(v) for v in row] for row in z.tolist()],
        "min": _number(float(finite.min())) if finite.size else None,
        "max": _number(float(finite.max())) if finite.size else None,
    }


def _number(v: Any) -> float | None:
    v = float(v)
    return v if math.isfinite(v) else None


def _cell(v: Any) -> Any:
    if isinstance(v, (bool, int, str)) or v is None:
        return v
    if isinstance(v, float):
        return _number(v)
    if hasattr(v, "item") and np.ndim(v) == 0:
        return _cell(v.item())
    return str(v)
