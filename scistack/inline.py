"""Values made readable in SQL: the step of the background sync that is allowed to read objects.

The index never decodes a value; DuckDB's views still name content by oid. When the sync
meets an oid it has not seen, it asks this module (handed to the index by the database) for
that object's *inline form*: a row keyed by the oid with the value as a real SQL type
(BIGINT/DOUBLE/BOOLEAN/VARCHAR scalars, TIMESTAMP/INTERVAL for numpy times, LIST columns for
1-D arrays and lists (numpy times as text the view casts), nested lists as JSON cast by the
view, JSON for dicts and mixed lists), or, above `INLINE_LIMIT` bytes, only its shape, dtype
and size. A DataFrame gives one JSON row per frame row. Objects are
immutable, so an oid's inline row never goes stale; it is derived, and rebuilt with DuckDB.
"""

from __future__ import annotations

import functools
import json
import math
import warnings
from json.encoder import encode_basestring_ascii as _quoted
from typing import Any

import numpy as np

from scistack.address import has_surrogate_escape, is_text
from scistack.lazy_import import lazy_module
from scistack.objects.lazy import LazyArray, LazyTable
from scistack.objects.npy import MAGIC as NPY_MAGIC
from scistack.objects.npy import decode_npy
from scistack.objects.store import ObjectStore
from scistack.records import read_call
from scistack.summary import described

pa = lazy_module("pyarrow", globals(), "pa")

INLINE_LIMIT = 1 << 20  # bytes: larger values show their oid, kind, shape, dtype and summary


@functools.cache
def _vals_schema() -> pa.Schema:
    return pa.schema([
        ("oid", pa.string()), ("sqltype", pa.string()), ("shape", pa.list_(pa.int64())),
        ("dtype", pa.string()), ("nbytes", pa.int64()),
        ("i", pa.int64()), ("d", pa.float64()), ("b", pa.bool_()), ("s", pa.string()), ("j", pa.string()),
        ("li", pa.list_(pa.int64())), ("ld", pa.list_(pa.float64())), ("lb", pa.list_(pa.bool_())),
        ("ls", pa.list_(pa.string())),
    ])


@functools.cache
def _rows_schema() -> pa.Schema:
    return pa.schema([("oid", pa.string()), ("row_n", pa.int64()), ("row", pa.string())])


@functools.cache
def _calls_schema() -> pa.Schema:
    return pa.schema([("call", pa.string()), ("fn_name", pa.string()), ("fn_module", pa.string())])


# the list column an array of each numpy dtype kind goes to
_LIST_COLUMN = {"b": ("lb", "BOOLEAN"), "i": ("li", "BIGINT"), "u": ("li", "BIGINT"),
                "f": ("ld", "DOUBLE"), "U": ("ls", "VARCHAR")}


class Inliner:
    """Reads objects from the store and gives their inline rows as Arrow tables."""

    def __init__(self, store: ObjectStore, limit: int = INLINE_LIMIT) -> None:
        self.store = store
        self.limit = limit

    def values(self, oids: list[str]) -> tuple[pa.Table, pa.Table]:
        """(one row per oid for `scistack.vals`, the frame rows for `scistack.frame_rows`).

        Small uncompressed objects are first taken as stored bytes (`get_many_stored`): those
        of one length whose object and NPY headers are byte-identical (arrays of one dtype and
        shape: canonical headers) are one matrix, their data one column slice of it, with no
        Python object per value. The rest are read in one `get_many` (larger ones one at a
        time, so at most one is in memory beyond what is inlined); the 1-D numeric arrays
        among them are inlined a header at a time likewise, every other object one by one.
        """
        stored = self.store.get_many_stored(oids)
        by_length: dict[int, list[int]] = {}
        rest: list[int] = []
        for n, data in enumerate(stored):
            if data is None:
                rest.append(n)
            else:
                by_length.setdefault(len(data), []).append(n)
        tables = []
        for length, members in by_length.items():
            table, left = self._stored_group([stored[n] for n in members], [oids[n] for n in members], length)
            if table is not None:
                tables.append(table)
            rest.extend(members[i] for i in left)
        if rest or not tables:
            vals, rows = self._read([oids[n] for n in sorted(rest)])
            tables.append(vals)
        else:
            rows = pa.table({name: [] for name in _rows_schema().names}, schema=_rows_schema())
        return (tables[0] if len(tables) == 1 else pa.concat_tables(tables)), rows

    def _stored_group(self, datas: list[bytes], oids: list[str], length: int) -> tuple[pa.Table | None, list[int]]:
        """The rows of stored objects of one length that share the first one's object and NPY
        headers (as one matrix), and the positions of the others (read as usual)."""
        first = datas[0]
        end = first.find(b"\x00", 0, 40) + 1
        kind, _, size = first[:max(end - 1, 0)].partition(b" ")
        head = _npy_head_of(first[end:]) if kind == b"npy" and size.isdigit() and int(size) == length - end else None
        if head is None:
            return None, list(range(len(datas)))
        whole = np.frombuffer(b"".join(datas), np.uint8).reshape(len(datas), length)
        prefix = end + len(head)
        same = (whole[:, :prefix] == whole[0, :prefix]).all(axis=1)
        taken = np.flatnonzero(same)
        table = self._npy_group(head, [oids[i] for i in taken.tolist()], whole[taken, end:])
        if table is None:
            return None, list(range(len(datas)))
        return table, np.flatnonzero(~same).tolist()

    def _read(self, oids: list[str]) -> tuple[pa.Table, pa.Table]:
        """Objects read with `get_many`; arrays of one NPY header together, the rest one by one."""
        stored = self.store.get_many(oids, small_only=True)  # the others are read one by one
        groups: dict[bytes, list[int]] = {}
        single: list[int] = []
        for n, obj in enumerate(stored):
            head = _npy_head(obj)
            if head is None:
                single.append(n)
            else:
                groups.setdefault(head, []).append(n)
        tables = []
        for head, members in groups.items():
            payloads = [stored[n].payload for n in members]
            size = len(payloads[0])
            table = None
            if all(len(p) == size for p in payloads):  # else malformed: reported one by one
                whole = np.frombuffer(b"".join(payloads), np.uint8).reshape(len(payloads), size)
                table = self._npy_group(head, [oids[n] for n in members], whole)
            if table is None:
                single.extend(members)
            else:
                tables.append(table)
        rows: dict[str, list] = {name: [] for name in _rows_schema().names}
        if single or not tables:
            tables.append(self._one_by_one([oids[n] for n in single], [stored[n] for n in single], rows))
        vals = tables[0] if len(tables) == 1 else pa.concat_tables(tables)
        return vals, pa.table(rows, schema=_rows_schema())

    def _npy_group(self, head: bytes, oids: list[str], whole: np.ndarray) -> pa.Table | None:
        """The rows of arrays sharing one NPY header, given as a matrix of their NPY payloads
        (one row each), built column-wise; None when they are not small 1-D arrays of a LIST
        dtype (then they go one by one)."""
        try:
            first = decode_npy(whole[0].tobytes())
        except Exception:  # noqa: BLE001 - malformed: reported one by one
            return None
        column = _LIST_COLUMN.get(first.dtype.kind)
        if first.ndim != 1 or column is None or column[0] not in _NUMPY_LISTS or first.nbytes > self.limit:
            return None
        start, size = len(head), first.nbytes
        if whole.shape[1] != start + size:  # malformed: reported one by one
            return None
        flat = whole[:, start:].copy().view(first.dtype).reshape(-1)
        name, base = column
        if first.dtype.kind == "u" and first.dtype.itemsize == 8 and flat.size and flat.max() > np.iinfo(np.int64).max:
            name, base = "ld", "DOUBLE"
        m, k = len(oids), len(first)
        cols = {field.name: pa.nulls(m, field.type) for field in _vals_schema()}
        dtype = _DTYPE_NAMES.get(first.dtype) or _DTYPE_NAMES.setdefault(first.dtype, str(first.dtype))
        cols.update({
            "oid": pa.array(oids, pa.string()), "sqltype": pa.array([base + "[]"] * m, pa.string()),
            "shape": pa.ListArray.from_arrays(pa.array(np.arange(m + 1, dtype=np.int32)),
                                              pa.array(np.full(m, k, np.int64)), type=pa.list_(pa.int64())),
            "dtype": pa.array([dtype] * m, pa.string()), "nbytes": pa.array(np.full(m, size, np.int64)),
            name: pa.ListArray.from_arrays(pa.array((np.arange(m + 1, dtype=np.int64) * k).astype(np.int32)),
                                           pa.array(flat.astype(_NUMPY_LISTS[name], copy=False)),
                                           type=_vals_schema().field(name).type),
        })
        return pa.table(cols, schema=_vals_schema())

    def _one_by_one(self, oids: list[str], stored: list[Any], rows: dict[str, list]) -> pa.Table:
        cols: dict[str, list] = {name: [None] * len(oids) for name in _vals_schema().names}
        cols["oid"] = list(oids)
        for n, (oid, obj) in enumerate(zip(oids, stored)):
            try:
                if isinstance(obj, Exception):
                    raise obj
                # a chunked value stays lazy: only its manifest is read
                value = self.store.open_value(oid) if obj is None else self.store.open_stored(oid, obj)
            except Exception:  # a damaged or missing object: shown without a value (fsck names it)
                cols["sqltype"][n] = "UNREADABLE"
                continue
            try:
                row = self._row(value, oid, rows)
                _opaque_if_not_text(row)
            except Exception:  # noqa: BLE001 - a value no rule foresaw: shown by its summary, never
                row = {"sqltype": "OPAQUE"}  # a sync that fails on every try (the views would stay old)
            for name, item in row.items():
                cols[name][n] = item
        arrays = {name: _list_array(cols[name], _vals_schema().field(name).type)
                  if name in _NUMPY_LISTS else pa.array(cols[name], _vals_schema().field(name).type)
                  for name in _vals_schema().names}
        return pa.table(arrays, schema=_vals_schema())

    def calls(self, call_oids: list[str]) -> pa.Table:
        """The function name and module of each call record (for the views' `fn` column)."""
        names, modules = [], []
        for oid in call_oids:
            try:
                function = read_call(self.store, oid).function
                names.append(function.name)
                modules.append(function.module)
            except Exception:  # damaged: the view shows NULL, fsck reports it
                names.append(None)
                modules.append(None)
        return pa.table({"call": call_oids, "fn_name": names, "fn_module": modules}, schema=_calls_schema())

    # -- one value -------------------------------------------------------------------------
    def _row(self, value: Any, oid: str, rows: dict[str, list]) -> dict[str, Any]:
        if isinstance(value, np.ndarray):
            return self._array(value)
        if isinstance(value, LazyArray):  # chunked: above any inline limit, described only
            dtype = _DTYPE_NAMES.get(value.dtype) or _DTYPE_NAMES.setdefault(value.dtype, str(value.dtype))
            listed = value.dtype.kind in _LIST_COLUMN or value.dtype.kind in _TIME_LISTS
            return {"shape": list(value.shape), "dtype": dtype, "nbytes": value.nbytes,
                    "sqltype": "LARGE" if listed else "OPAQUE"}
        if isinstance(value, LazyTable):
            dtype, shape = value.described()
            return {"shape": list(shape), "dtype": dtype, "nbytes": value.nbytes, "sqltype": "LARGE"}
        if isinstance(value, (np.datetime64, np.timedelta64)):
            return _time(value)
        if isinstance(value, np.generic):
            value = value.item()
        scalar = _scalar(value)
        if scalar is not None and (scalar.get("nbytes") or 0) > self.limit:
            return {"sqltype": "LARGE", "nbytes": scalar["nbytes"], "dtype": "str"}
        if scalar is not None:
            return scalar
        if isinstance(value, (list, tuple)):
            return self._list(list(value))
        if isinstance(value, dict):
            return self._json(value, "JSON")
        frame = _as_frame(value)
        if frame is not None:
            return self._frame(frame, oid, rows, described(value))
        return {"sqltype": "OPAQUE", "nbytes": len(value) if isinstance(value, bytes) else None}

    def _array(self, a: np.ndarray) -> dict[str, Any]:
        if a.ndim == 0:
            return self._row(a[()], "", {})
        dtype = _DTYPE_NAMES.get(a.dtype) or _DTYPE_NAMES.setdefault(a.dtype, str(a.dtype))
        head = {"shape": list(a.shape), "dtype": dtype, "nbytes": a.nbytes}
        if a.dtype.kind in _TIME_LISTS:
            if a.nbytes > self.limit:
                return {**head, "sqltype": "LARGE"}
            return {**head, **_times(a)}
        column = _LIST_COLUMN.get(a.dtype.kind)
        if a.nbytes > self.limit or column is None:
            return {**head, "sqltype": "LARGE" if column else "OPAQUE"}
        name, base = column
        if a.dtype.kind == "u" and a.dtype.itemsize == 8 and a.size and a.max() > np.iinfo(np.int64).max:
            name, base = "ld", "DOUBLE"
        if a.ndim == 1:  # kept as an array: `_list_array` builds the column without Python floats
            return {**head, "sqltype": base + "[]", name: a if name in _NUMPY_LISTS else a.tolist()}
        # NaN and the infinities written as NaN/Infinity, which DuckDB's cast to DOUBLE[][] reads
        # (and its `to_json` of a 1-D list writes): nulls would have hidden them
        return {**head, "sqltype": base + "[]" * a.ndim, "j": json.dumps(a.tolist(), separators=(",", ":"))}

    def _list(self, items: list) -> dict[str, Any]:
        kinds = {type(x) for x in items}
        if items and kinds == {bool}:
            return {"sqltype": "BOOLEAN[]", "lb": items, "nbytes": len(items)}
        if items and kinds == {int} and all(-(1 << 63) <= x < (1 << 63) for x in items):
            return {"sqltype": "BIGINT[]", "li": items, "nbytes": 8 * len(items)}
        if items and kinds <= {int, float} and float in kinds:
            return {"sqltype": "DOUBLE[]", "ld": [float(x) for x in items], "nbytes": 8 * len(items)}
        if items and kinds == {str}:
            nbytes = sum(map(len, items))
            if nbytes <= self.limit:
                return {"sqltype": "VARCHAR[]", "ls": items, "nbytes": nbytes}
        return self._json(items, "JSON")

    def _json(self, value: Any, sqltype: str) -> dict[str, Any]:
        try:
            text = json.dumps(_finite(value), default=_plain, allow_nan=False, separators=(",", ":"))
        except _Chunked:  # a chunked value inside: above any inline limit, as it is alone
            return {"sqltype": "LARGE"}
        except (TypeError, ValueError):
            return {"sqltype": "OPAQUE"}
        if len(text) > self.limit:
            return {"sqltype": "LARGE", "nbytes": len(text)}
        return {"sqltype": sqltype, "j": text, "nbytes": len(text)}

    def _frame(self, frame: Any, oid: str, rows: dict[str, list],
               what: tuple[str, tuple]) -> dict[str, Any]:
        """`what`: the value's (dtype or type name, shape) as its summary says them (a Series is
        not the one-column frame its rows are written from)."""
        head = {"shape": list(what[1]), "dtype": what[0]}
        text = _frame_json(frame) if len(frame) and frame.shape[1] else ""
        if len(text) > self.limit:
            return {**head, "sqltype": "LARGE", "nbytes": len(text)}
        lines = text.splitlines() or ["{}"] * len(frame)  # pandas writes no columns as one ""
        rows["oid"].extend([oid] * len(lines))
        rows["row_n"].extend(range(1, len(lines) + 1))
        rows["row"].extend(lines)
        return {**head, "sqltype": "TABLE", "nbytes": len(text)}


_DTYPE_NAMES: dict[np.dtype, str] = {}  # str(dtype) costs ~10 µs
_NUMPY_LISTS = {"li": np.int64, "ld": np.float64, "lb": np.bool_}


def sql_type(value: Any) -> str | None:
    """The type of `value`'s inline row (`BIGINT`, `VARCHAR`, `JSON`, `LARGE`, ...), as a sync
    would write it: what `views.value_type` types a variable's value column by, and `where=`
    too. Meant for the small values SQL compares (a frame's rows are written, then dropped)."""
    kind = type(value)  # (the common ones without building a row: `_scalar`'s answers)
    if kind is float:
        return "DOUBLE"
    if kind is str:
        return "VARCHAR" if len(value) <= INLINE_LIMIT else "LARGE"
    if kind is int:
        return "BIGINT" if -(1 << 63) <= value < (1 << 63) else "DOUBLE"
    return Inliner(None, INLINE_LIMIT)._row(value, "", {}).get("sqltype")  # type: ignore[arg-type]


def inline_row(value: Any) -> dict[str, Any]:
    """`value`'s inline row as a sync writes it to `scistack.vals` (`Inliner._one_by_one`): its
    `sqltype` and the column holding it (`i`, `d`, `b`, `s`, `j`, `li`, `ld`, `lb`, `ls`; a 1-D
    numeric array as the array). `where=` makes a JSON value column of the values at hand
    from these, as the view makes it from `scistack.vals`."""
    try:
        row = Inliner(None, INLINE_LIMIT)._row(value, "", {})  # type: ignore[arg-type]
        _opaque_if_not_text(row)
    except Exception:  # noqa: BLE001 - as the sync: a value no rule foresaw is OPAQUE (no value)
        return {"sqltype": "OPAQUE"}
    return row


def _opaque_if_not_text(row: dict[str, Any]) -> None:
    """Raise ValueError when a text of `row` holds a lone surrogate (a non-UTF-8 file name's
    byte as Python reads it), or a JSON text its escape (DuckDB's JSON refuses it): saves
    refuse such text now, but a value saved before may hold it, and Arrow refused the whole
    batch, so every later sync failed; the value is OPAQUE instead (shown by its summary)."""
    for item in row.values():
        if type(item) is str:
            if not is_text(item) or (has_surrogate_escape(item) and not _json_is_text(item)):
                raise ValueError("not UTF-8")
        elif type(item) is list and not all(is_text(x) for x in item if type(x) is str):
            raise ValueError("not UTF-8")


def _json_is_text(text: str) -> bool:
    """Whether every str of the JSON `text` (keys too) is UTF-8 (True for a text no JSON)."""
    try:
        tree = json.loads(text)
    except ValueError:
        return True
    stack = [tree]
    while stack:
        item = stack.pop()
        if type(item) is str:
            if not is_text(item):
                return False
        elif type(item) is list:
            stack.extend(item)
        elif type(item) is dict:
            stack.extend(item)
            stack.extend(item.values())
    return True


def _npy_head(obj: Any) -> bytes | None:
    """The NPY header bytes of an `npy` object (None for anything else)."""
    if obj is None or isinstance(obj, Exception) or obj.kind != "npy":
        return None
    payload = obj.payload
    return _npy_head_of(payload) if isinstance(payload, (bytes, bytearray)) else None


def _npy_head_of(payload: bytes | bytearray) -> bytes | None:
    """The NPY header bytes at the start of `payload` (None when it has none)."""
    if len(payload) < 10 or payload[:8] != NPY_MAGIC:
        return None
    start = 10 + int.from_bytes(payload[8:10], "little")
    return bytes(payload[:start]) if len(payload) >= start else None


def _list_array(items: list, type_: pa.DataType) -> pa.Array:
    """A LIST column from numpy arrays, Python lists and Nones, in one concatenation."""
    dtype = {pa.int64(): np.int64, pa.float64(): np.float64, pa.bool_(): np.bool_}[type_.value_type]
    parts = [np.asarray(x, dtype=dtype) for x in items if x is not None]
    lengths = np.fromiter((0 if x is None else len(x) for x in items), np.int64, len(items))
    offsets = np.zeros(len(items) + 1, np.int32)
    np.cumsum(lengths, out=offsets[1:])
    values = np.concatenate(parts) if parts else np.zeros(0, dtype)
    mask = pa.array(np.fromiter((x is None for x in items), np.bool_, len(items)))
    return pa.ListArray.from_arrays(pa.array(offsets), pa.array(values), type=type_, mask=mask)


def _time(value: np.datetime64 | np.timedelta64) -> dict[str, Any]:
    """A numpy time as text DuckDB casts to TIMESTAMP or INTERVAL (`_value_expr`), in
    microseconds, DuckDB's precision (`.item()` of a nanosecond one is a bare integer):
    written as `_times` writes an array's."""
    return {"sqltype": _TIME_LISTS[value.dtype.kind], "s": _times(np.array([value]))["ls"][0], "nbytes": 8}


def _calendar_span(dtype: np.dtype) -> bool:
    """Whether a timedelta dtype counts months or years (no fixed length: "2 months")."""
    return dtype.kind == "m" and np.datetime_data(dtype)[0] in ("Y", "M")


_TIME_LISTS = {"M": "TIMESTAMP", "m": "INTERVAL"}


def _times(a: np.ndarray) -> dict[str, Any]:
    """A datetime64/timedelta64 array as text DuckDB casts to TIMESTAMP[] or INTERVAL[]
    (nested for N-D, `views._value_expr`), as `_time` writes one; NaT is NULL."""
    if a.dtype.kind == "M":
        text = np.datetime_as_string(a.astype("datetime64[us]")).astype(object)
    elif _calendar_span(a.dtype):
        text = np.array([str(x) for x in a.reshape(-1)], dtype=object).reshape(a.shape)
    else:
        text = a.astype("timedelta64[us]").astype(np.int64).astype(str).astype(object) + " microseconds"
    text[np.isnat(a)] = None
    sqltype = _TIME_LISTS[a.dtype.kind] + "[]" * a.ndim
    if a.ndim == 1:
        return {"sqltype": sqltype, "ls": text.tolist()}
    return {"sqltype": sqltype, "j": json.dumps(text.tolist(), separators=(",", ":"))}


def _scalar(value: Any) -> dict[str, Any] | None:
    if value is None:
        return {"sqltype": "NULL"}
    if isinstance(value, bool):
        return {"sqltype": "BOOLEAN", "b": value, "nbytes": 1}
    if isinstance(value, int):
        if -(1 << 63) <= value < (1 << 63):
            return {"sqltype": "BIGINT", "i": value, "nbytes": 8}
        return {"sqltype": "DOUBLE", "d": float(value), "nbytes": 8}
    if isinstance(value, float):
        return {"sqltype": "DOUBLE", "d": value, "nbytes": 8}
    if isinstance(value, str):
        return {"sqltype": "VARCHAR", "s": value, "nbytes": len(value)}
    return None


def _as_frame(value: Any) -> Any:
    """A DataFrame for the `table` kinds (DataFrame, Series, Arrow table), else None."""
    if isinstance(value, pa.Table):
        return value.to_pandas()
    to_frame = getattr(value, "to_frame", None)  # a Series
    if callable(to_frame) and hasattr(value, "index"):
        return to_frame()
    return value if hasattr(value, "to_json") and hasattr(value, "columns") else None


def _frame_json(frame: Any, **options: Any) -> str:
    """One JSON object a row (`lines=False`: a JSON array of them). Float columns are written
    with `repr`, the shortest text that reads back as the very same double, as `load()` gives
    it (pandas' `to_json` keeps at most 15 digits, 10 by default: 1.5e-12 was 0.0), and so
    are floats in an object column (an Arrow table's lists and structs, a categorical of
    floats). Beside them, integer, bool and text columns are written here too (a pandas call
    costs more than a small frame's cells), the rest by pandas (`_pandas_json`)."""
    lines = options.pop("lines", True)
    columns = [column for _, column in frame.items()]  # (the cheapest way to the dtypes too)
    names = [_quoted(str(name)) + ":" for name in frame.columns]
    if all(map(_exact_in_pandas, columns)) or len(set(names)) < len(names):
        return _pandas_json(frame, lines=lines, **options)  # (names not unique: pandas refuses)
    cells = [_cells(key, column) for key, column in zip(names, columns)]
    for start, stop in _runs([n for n, c in enumerate(cells) if c is None]):
        text = _pandas_json(frame.iloc[:, start:stop], lines=True, **options)
        cells[start] = [line[1:-1] for line in text.split("\n")[:len(frame)]]  # "{...}" -> "..."
    rows = ["{" + ",".join(row) + "}" for row in zip(*(c for c in cells if c is not None))]
    return "\n".join(rows) if lines else "[" + ",".join(rows) + "]"


def _cells(key: str, column: Any) -> list[str] | None:
    """A float, integer, bool or text column, or an object column of numbers, lists and str-keyed
    dicts, as `"name":value` JSON members (floats of any width widened exactly, nested ones
    too; NaN, the infinities and missing values null, as pandas writes them); None for any
    other column."""
    kind = column.dtype.kind
    if kind == "f":
        values = column.to_numpy(dtype=np.float64, na_value=np.nan)
        cells = [key + text for text in map(float.__repr__, values.tolist())]
        for i in np.flatnonzero(~np.isfinite(values)).tolist():
            cells[i] = key + "null"
        return cells
    if isinstance(column.dtype, np.dtype) and kind in "iu":
        return [key + text for text in map(int.__repr__, column.to_numpy().tolist())]
    if isinstance(column.dtype, np.dtype) and kind == "b":
        return [key + ("true" if v else "false") for v in column.to_numpy().tolist()]
    if kind in "OU" or type(column.dtype).__name__ == "StringDtype":
        values = column.to_numpy(dtype=object, na_value=None).tolist()
        if all(type(v) is str or v is None for v in values):
            return [key + ("null" if v is None else _quoted(v)) for v in values]
        try:  # lists, arrays, dicts and numbers, floats in them exact
            return [key + json.dumps(_exact(v), separators=_COMPACT, allow_nan=False) for v in values]
        except (TypeError, ValueError):
            return None  # (a Decimal, a date, bytes...: as pandas writes them)
    return None


_COMPACT = (",", ":")
_PANDAS_EXACT = frozenset({"string", "empty", "integer", "boolean", "bytes"})  # (infer_dtype's names)


def _exact_in_pandas(column: Any) -> bool:
    """Whether pandas' `to_json` writes this column exactly: it holds no float anywhere (pandas
    rounds floats, nested ones too), judged by its dtype, or an object or categorical column
    by what its values (or categories) are."""
    dtype = column.dtype
    if dtype.kind == "f":
        return False
    if dtype.kind != "O":
        return True
    values = getattr(dtype, "categories", column)  # (a categorical's values are its categories)
    return _infer_dtype(values, skipna=True) in _PANDAS_EXACT


def _infer_dtype(values: Any, skipna: bool) -> str:
    from pandas.api.types import infer_dtype as infer  # pandas is loaded: a frame is at hand

    return infer(values, skipna=skipna)


def _exact(value: Any) -> Any:
    """A cell of an object column as JSON's own types for `json.dumps`, which writes a float
    as `repr` (exact); NaN and the infinities None (null, as pandas writes them); TypeError
    for anything else (pandas writes the column then)."""
    if value is None or type(value) in (str, int, bool):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, np.generic) and value.dtype.kind in "biuf":
        return _exact(value.item())
    if isinstance(value, np.ndarray) and value.dtype.kind in "biufO":
        return [_exact(v) for v in value.tolist()]
    if isinstance(value, (list, tuple)):
        return [_exact(v) for v in value]
    if isinstance(value, dict) and all(type(k) is str for k in value):
        return {k: _exact(v) for k, v in value.items()}
    return _refuse(value)


def _refuse(value: Any) -> Any:
    raise TypeError(type(value).__name__)


def _runs(positions: list[int]) -> list[tuple[int, int]]:
    """Sorted positions as (start, stop) runs of consecutive ones."""
    runs: list[tuple[int, int]] = []
    for n in positions:
        if runs and runs[-1][1] == n:
            runs[-1] = (runs[-1][0], n + 1)
        else:
            runs.append((n, n + 1))
    return runs


def _pandas_json(frame: Any, **options: Any) -> str:
    """`frame.to_json`, one JSON object a row; columns pandas cannot write (periods, bytes
    that are not UTF-8...) are written as text. Times to the nanosecond (pandas' default, the
    millisecond, made .123456 and .123999 one time)."""
    options = {"orient": "records", "lines": True, "date_format": "iso", "date_unit": "ns", **options}
    textual = [n for n, dtype in enumerate(frame.dtypes) if type(dtype).__name__ in _TEXT_DTYPES]
    if textual:  # known not to write as JSON (and pandas warns while it tries): text at once
        frame = frame.copy()
        for n in textual:
            frame.isetitem(n, frame.iloc[:, n].map(_text, na_action="ignore").astype(object))
    try:
        return frame.to_json(**options)
    except (ValueError, TypeError, OverflowError):
        with warnings.catch_warnings():  # pandas reads a period's deprecated attributes on the way
            warnings.simplefilter("ignore")
            refused = [n for n in range(frame.shape[1]) if not _writable(frame.iloc[:, [n]], options)]
        if not refused:
            raise
        frame = frame.copy()
        for n in refused:
            frame.isetitem(n, frame.iloc[:, n].map(_text, na_action="ignore").astype(object))
        return frame.to_json(**options)


_TEXT_DTYPES = frozenset({"PeriodDtype", "IntervalDtype"})


def _text(value: Any) -> str:
    """A cell pandas cannot write as JSON, as text (bytes as hex, as exports write them)."""
    return value.hex() if isinstance(value, bytes) else str(value)


def _writable(column: Any, options: dict[str, Any]) -> bool:
    """Whether pandas' `to_json` writes this one-column frame."""
    try:
        column.to_json(**options)
    except (ValueError, TypeError, OverflowError):
        return False
    return True


def _finite(value: Any) -> Any:
    """JSON has no NaN or infinity: they become null (the summary still tells)."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, (list, tuple)):
        return [_finite(x) for x in value]
    if isinstance(value, dict):
        return {str(k): _finite(v) for k, v in value.items()}
    return value


class _Chunked(Exception):
    """A chunked value inside a dict or list (opened lazily: never read to be inlined)."""


def _plain(value: Any) -> Any:
    if isinstance(value, (LazyArray, LazyTable)):
        raise _Chunked
    if isinstance(value, np.ndarray):
        return _finite(value.tolist())
    if isinstance(value, np.generic):
        return _finite(value.item())
    frame = _as_frame(value)
    if frame is not None:
        return json.loads(_frame_json(frame, lines=False))
    raise TypeError(type(value).__name__)
