"""Whole tables in and out: one record per DataFrame row, and CSV/Parquet export.

`Var.save_from_dataframe(df, value_column="force")` saves each row at the address given by
the schema-key columns the frame has, in one batch (one pack, one journal append). Every row
is checked before anything is written, so a row with a missing key saves nothing at all.
`Var.to_csv(path)` / `Var.to_parquet(path)` write `load_all(as_df=True)`; `export_frame`
writes any such frame (a `scistack.join(...)` result too).
"""

from __future__ import annotations

import contextlib
import json
import math
import os
from typing import Any

import numpy as np

from scistack._atomic import temporary_sibling
from scistack.address import address_value, checked_label, plain, shown_address
from scistack.database import Database
from scistack.errors import InvalidMetadataError, UnsupportedValueError
from scistack.index import key_of
from scistack.objects.canonical_json import strict_json_data
from scistack.objects.codec import value_kind
from scistack.summary import summarize


def rows_to_save(db: Database, var: str, frame: Any, value_columns: str | list[str] | None
                 ) -> list[tuple[dict[str, Any], Any]]:
    """(address, value) per row, every row checked first.

    One value column gives its cell; several give a dict of their cells per row; None takes
    the only non-key column (or all of them, as a dict).
    """
    if not hasattr(frame, "columns") or not hasattr(frame, "itertuples"):
        raise InvalidMetadataError(f"{var}.save_from_dataframe takes a pandas DataFrame, got {type(frame).__name__}")
    named = [n for n in frame.index.names if n is not None and str(n) in db.schema_keys
             and str(n) not in map(str, frame.columns)]
    if named:  # keys in the index, as `groupby([...]).mean()` leaves them: columns like the others
        frame = frame.reset_index(level=named)
    columns = [str(c) for c in frame.columns]
    keys = [k for k in db.schema_keys if k in columns]
    if not keys:
        raise InvalidMetadataError(
            f"{var}.save_from_dataframe: the frame has none of the schema keys {db.schema_keys} as a "
            f"column (its columns: {columns}); name the address columns after the schema keys")
    others = [c for c in columns if c not in keys]
    chosen = [value_columns] if isinstance(value_columns, str) else list(value_columns or others)
    unknown = [c for c in chosen if c not in columns or c in keys]
    if unknown or not chosen:
        raise InvalidMetadataError(
            f"{var}.save_from_dataframe: value column(s) {unknown or chosen} are not value columns of the "
            f"frame (columns {columns}, schema keys {keys}); name one or more of {others}")
    single = isinstance(value_columns, str) or (value_columns is None and len(chosen) == 1)
    rows = []
    positions = {c: columns.index(c) for c in columns}
    fills = {c: fill for c in chosen if (fill := _missing_as(frame.iloc[:, positions[c]])) is not _AS_IS}
    seen: dict[str, Any] = {}  # address -> the label of its first row
    for label, row in zip(frame.index, frame.itertuples(index=False, name=None)):
        addr = {}
        for key in keys:
            value = address_value(_cell(row[positions[key]]))
            if value is None or (isinstance(value, float) and math.isnan(value)):
                raise InvalidMetadataError(
                    f"{var}.save_from_dataframe: row {label!r} has no {key!r} (the schema-key columns "
                    f"{keys} address each row); fill it or drop the row. Nothing was saved")
            addr[key] = checked_label(value, f"{var}.save_from_dataframe: row {label!r}: {key}",
                                      then=". Nothing was saved")
        text = key_of(addr)
        if text in seen:  # one would silently replace the other (as a newer version)
            raise InvalidMetadataError(
                f"{var}.save_from_dataframe: rows {seen[text]!r} and {label!r} both address "
                f"{shown_address(addr)}; drop the duplicates, or tell "
                "them apart by a version key (a keyword argument, or one call per group). Nothing was saved")
        seen[text] = label
        cells = {c: _cell(row[positions[c]]) for c in chosen}
        for c, fill in fills.items():
            if _is_missing(cells[c]):
                cells[c] = fill
        rows.append((addr, cells[chosen[0]] if single else cells))
    return rows


_AS_IS = object()  # a column whose missing cells are saved as `_cell` gives them


def _missing_as(column: Any) -> Any:
    """What a value column's missing cells are saved as: a datetime or timedelta column's NaT
    in the column's unit (pandas' NaT is numpy's in nanoseconds, so a column of seconds with a
    NaT loaded back as nanoseconds, and a timedelta column's NaT was a datetime's); a text
    column's None, as a nullable column's NA is (pandas' `str` dtype, and `read_csv`'s object
    column of strings, hold a missing cell as NaN: it was saved as a float among strings). A
    float column's NaN is a float, and stays one."""
    import pandas as pd

    dtype = column.dtype
    if isinstance(dtype, pd.StringDtype):
        return None
    if isinstance(dtype, pd.CategoricalDtype) or dtype == object:
        values = dtype.categories if isinstance(dtype, pd.CategoricalDtype) else column
        if pd.api.types.infer_dtype(values, skipna=True) == "string":
            return None
    if getattr(dtype, "kind", None) in ("M", "m"):
        unit = getattr(dtype, "unit", None) or getattr(getattr(dtype, "pyarrow_dtype", None), "unit", None)
        if unit is None and isinstance(dtype, np.dtype):
            unit = np.datetime_data(dtype)[0]
        if unit is not None:
            return np.datetime64("NaT", unit) if dtype.kind == "M" else np.timedelta64("NaT", unit)
    return _AS_IS


def _is_missing(cell: Any) -> bool:
    """None, NaN, or NaT (of any unit)."""
    if cell is None or (type(cell) is float and math.isnan(cell)):
        return True
    return isinstance(cell, (np.datetime64, np.timedelta64)) and bool(np.isnat(cell))


def save_rows(db: Database, var: str, rows: list[tuple[dict[str, Any], Any]], vkeys: dict[str, Any]) -> int:
    """Save checked rows in one batch; the number of records that changed or were added.
    Every value is stored before the first name is written: a value that cannot be stored
    saves nothing (its rows' objects are left for gc)."""
    changed = 0
    with db.batch():
        stored = []
        for addr, value in rows:
            try:
                stored.append((db.store.put_value(value), value_kind(value)))
            except UnsupportedValueError as exc:
                where = shown_address(addr)
                raise UnsupportedValueError(f"{var}.save_from_dataframe: the row at {where}: {exc}. "
                                            "Nothing was saved") from None
        for (addr, value), (oid, kind) in zip(rows, stored):
            before = db.index.current_at(var, key_of(addr), key_of(vkeys))
            db.index.put_ref(var, addr, vkeys, oid, kind, summary=summarize(value))
            changed += before is None or before.oid != oid or before.call is not None
    return changed


def _cell(value: Any) -> Any:
    """A frame's cell as a value: numpy scalars unwrapped, and pandas' own scalars (of datetime
    and nullable columns) as numpy's: a Timestamp as np.datetime64, a Timedelta as
    np.timedelta64, NA as None."""
    for convert in ("to_datetime64", "to_timedelta64"):  # (NaT too: numpy's NaT)
        if hasattr(value, convert) and not isinstance(value, (np.generic, np.ndarray)):
            return getattr(value, convert)()
    if type(value).__name__ == "NAType":
        return None
    return plain(value)


def export_frame(frame: Any, path: str | os.PathLike, fmt: str) -> str:
    """Write a frame as CSV or Parquet: arrays and containers in cells become JSON text (CSV) or
    lists (Parquet), a DataFrame a JSON object of its columns, and a Parquet column whose
    cells mix kinds (1.0, "text", [1, 2]) JSON text each, so the file opens anywhere.
    Written to a temporary file, then renamed."""
    import pandas as pd

    frame = frame.copy()
    for column in frame.columns:
        if frame[column].dtype == object:
            values = [_exported(v, fmt) for v in frame[column]]
            if fmt == "parquet" and not _one_arrow_type(values):  # e.g. 1.0, "text", [1, 2]
                values = [None if v is None else _json_text(v) for v in frame[column]]
            frame[column] = pd.Series(values, index=frame.index, dtype=_exported_dtype(values))
    if fmt not in ("csv", "parquet"):
        raise InvalidMetadataError(f"export format {fmt!r}: use 'csv' or 'parquet'")
    target = os.fspath(path)
    temp = temporary_sibling(target)  # (a fixed `<target>.scistack-tmp` had two exports of one
    try:  # file at once write into one temporary file, and rename each other's half-written bytes)
        if fmt == "csv":
            frame.to_csv(temp, index=False)
        else:
            frame.to_parquet(temp, index=False)
        os.replace(temp, target)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(temp)
        raise
    return target


def _exported_dtype(values: list[Any]) -> str:
    """object, as the cells are (a list was inferred float64: ints beside None were written as
    9007199254740992.0 for 2**53 + 1, and 7.0), but nullable Int64 for int64 ints beside None,
    so pandas reads a Parquet file back as ints too (its int64 with nulls is else float64)."""
    ints = [v for v in values if v is not None]
    if len(ints) < len(values) and ints and all(type(v) is int and -(1 << 63) <= v < (1 << 63) for v in ints):
        return "Int64"
    return "object"


def _one_arrow_type(values: list[Any]) -> bool:
    """Whether Parquet can hold the values as one column type (else they go as JSON text)."""
    import pyarrow as pa

    try:
        pa.array(values)
    except (OverflowError, pa.ArrowInvalid, pa.ArrowTypeError, pa.ArrowNotImplementedError):
        return False  # (OverflowError: an int beyond 64 bits, kept exact as JSON text)
    return True


def _plain(value: Any) -> Any:
    """A cell as plain data: an array or a Series as a list, a DataFrame as a dict of column
    lists (not its printed text), bytes as hex."""
    if isinstance(value, np.ndarray) or (hasattr(value, "tolist") and hasattr(value, "index")):
        return value.tolist()
    if hasattr(value, "to_dict") and hasattr(value, "columns"):
        return {str(k): v for k, v in value.to_dict(orient="list").items()}
    if isinstance(value, bytes):
        return value.hex()
    return value


def _nested(value: Any) -> Any:
    """What `strict_json_data` makes of anything but JSON's own types inside a cell: arrays
    and frames as plain data, anything else (a period, a date) as its text."""
    plain = _plain(value)
    return str(value) if plain is value else plain


def _json_text(value: Any) -> str:
    """A cell as JSON text, strict as the bundle's .json files are: a NaN or an infinity is
    null, which any parser reads (Python's `NaN` is refused by R's jsonlite, jq, JavaScript)."""
    return json.dumps(strict_json_data(_plain(value), _nested), allow_nan=False)


def _exported(value: Any, fmt: str) -> Any:
    value = _plain(value)
    if isinstance(value, (list, tuple, dict)):
        return _json_text(value) if fmt == "csv" or isinstance(value, dict) else list(value)
    return value
