"""Canonical `table` payloads: an Arrow IPC stream (docs/format.md §1.3).

Arrow keeps what users care about in a DataFrame (index, column names, categorical,
tz-aware datetimes, nullable integers, strings) through pandas' schema metadata. That
metadata also names library versions, which would move an oid on every upgrade, so those
fields are removed; a `scistack` entry records which Python type to rebuild.

Hazards, each refused or normalised here rather than silently changed on the way back:
- pyarrow turns mixed-type column labels and non-str index names into strings; refused.
- object columns holding lists, dicts, mixed types... come back as something else; only
  str / bytes / None / datetime.date objects are accepted there.
- the bytes under a null slot of a nullable column are undefined (pandas keeps whatever
  was there); they are zeroed so that equal tables get equal oids.
- pandas 3 reads Arrow strings as its `str` dtype; the saved dtype (object, `string` with
  python storage, `ArrowDtype(string)`) is restored from the metadata on decode.
- pyarrow gives an index level the dtype of its Arrow type, not the pandas extension dtype
  the metadata names (an Int64 index came back float64, rounded); it is rebuilt with it.
- big-endian numpy columns are byte-swapped (as npy does). The `freq` of a DatetimeIndex
  is not kept (Arrow has no place for it); the values are.
"""

from __future__ import annotations

import json
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from scistack.address import NOT_TEXT, shown
from scistack.errors import UnsupportedValueError
from scistack.objects.canonical_json import dumps_canonical, from_tree, to_tree

_VOLATILE_PANDAS_FIELDS = ("creator", "pandas_version")
_OBJECT_COLUMN_TYPES = (pa.types.is_string, pa.types.is_large_string, pa.types.is_binary,
                        pa.types.is_large_binary, pa.types.is_null, pa.types.is_date32)


def encode_table(value: Any) -> list[Any]:
    """The payload of a DataFrame, Series or Arrow table, as buffers."""
    return table_payload(*to_arrow(value))


def to_arrow(value: Any) -> tuple[pa.Table, int]:
    """The Arrow table stored for a DataFrame, Series or Arrow table, with canonical metadata,
    and its row count (a table without columns forgets it when its metadata is replaced)."""
    import pandas as pd

    extra: dict[bytes, bytes] = {}
    if isinstance(value, pa.Table):
        table, kind = value, "arrow"
    elif isinstance(value, pd.Series):
        extra[b"scistack.series_name"] = dumps_canonical(_name_tree(value.name))
        table, kind = _from_pandas(value.to_frame(name="__series__"), value), "series"
    else:
        table, kind = _from_pandas(value, value), "dataframe"
    metadata = dict(table.schema.metadata or {})
    if b"pandas" in metadata:
        pandas_meta = json.loads(metadata[b"pandas"])
        for field in _VOLATILE_PANDAS_FIELDS:
            pandas_meta.pop(field, None)
        metadata[b"pandas"] = _dumps_pandas_meta(pandas_meta)
    metadata.update(extra)
    metadata[b"scistack"] = kind.encode()
    return table.replace_schema_metadata(dict(sorted(metadata.items()))), table.num_rows


def table_payload(table: pa.Table, num_rows: int) -> list[Any]:
    """An Arrow table as a canonical `table` payload (one batch, nulls zeroed)."""
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, table.schema) as writer:
        writer.write_batch(_single_batch(table, num_rows))
    return [memoryview(sink.getvalue())]


def _dumps_pandas_meta(meta: dict) -> bytes:
    """Canonical spelling of pandas' metadata; it may hold NaN (a NaN label), as pandas wrote it."""
    text = json.dumps(meta, sort_keys=True, separators=(",", ":"), ensure_ascii=True, allow_nan=True)
    return text.encode("ascii")


def decode_table(payload: bytes | bytearray | memoryview) -> Any:
    """The DataFrame, Series or Arrow table a `table` payload was made from."""
    return from_arrow(read_arrow(payload))


def read_arrow(payload: bytes | bytearray | memoryview) -> pa.Table:
    """The Arrow table in a `table` payload, as stored (metadata included)."""
    return pa.ipc.open_stream(pa.py_buffer(payload)).read_all()


def from_arrow(table: pa.Table) -> Any:
    """The value a stored Arrow table stands for (its `scistack` metadata says which type)."""
    metadata = dict(table.schema.metadata or {})
    kind = metadata.pop(b"scistack", b"arrow").decode()
    if kind == "arrow":
        return table.replace_schema_metadata(metadata or None)
    frame = table.to_pandas()
    if b"pandas" in metadata:
        pandas_meta = json.loads(metadata[b"pandas"])
        _restore_string_dtypes(frame, pandas_meta, table.schema)
        _restore_index_dtypes(frame, pandas_meta, table)
    if kind == "series":
        series = frame["__series__"]
        series.name = series_name(metadata)
        return series
    return frame


def _from_pandas(frame: Any, original: Any) -> pa.Table:
    """`pa.Table.from_pandas`, refusing what would not come back as it went in."""
    _check_labels(frame, original)
    frame = _native_byte_order(frame)
    try:
        table = pa.Table.from_pandas(frame)
    except UnicodeEncodeError as exc:  # a str with a lone surrogate (a non-UTF-8 file name)
        raise _unsupported_table(original, f"a text cell or label {shown(exc.object)} {NOT_TEXT[3:]}",
                                 fixed=True) from None
    except (pa.ArrowException, ValueError, TypeError) as exc:
        raise _unsupported_table(original, str(exc)) from None
    meta = json.loads(table.schema.metadata[b"pandas"])
    for field, column in zip(table.schema, meta["columns"]):
        if column["numpy_type"] == "object" and not any(t(field.type) for t in _OBJECT_COLUMN_TYPES):
            raise _unsupported_table(
                original, f"object column {column['name']!r} holds values Arrow stores as "
                f"{field.type}, which would come back as a different type; object columns may "
                "hold only str, bytes, datetime.date or None. Give the column a real dtype "
                "(e.g. `.astype('Int64')`), or store nested values as separate variables", fixed=True,
            )
    return table


def _check_labels(frame: Any, original: Any) -> None:
    import pandas as pd

    for axis, labels in (("index", frame.index), ("columns", frame.columns)):
        for name in labels.names:
            if name is not None and type(name) is not str:
                raise _unsupported_table(
                    original, f"its {axis} has a name of type {type(name).__name__} ({name!r}); "
                    "Arrow keeps only str names. Rename it with `.rename_axis(str(name))`", fixed=True,
                )
    if not frame.columns.is_unique:
        twice = sorted({str(c) for c in frame.columns[frame.columns.duplicated()]})
        raise _unsupported_table(
            original, f"column names appear twice ({', '.join(twice)}), and a stored table names "
            "each column once; rename them, e.g. `df.columns = [f'{c}_{i}' for i, c in enumerate(df.columns)]`",
            fixed=True)
    complex_columns = [str(c) for c, dtype in zip(frame.columns, frame.dtypes)
                       if isinstance(dtype, np.dtype) and dtype.kind == "c"]
    if complex_columns:
        where = "it" if complex_columns == ["__series__"] else f"column {complex_columns[0]!r}"
        raise _unsupported_table(
            original, f"{where} holds complex numbers, which Arrow has no type for; store the real "
            "and imaginary parts apart (`.real`, `.imag`: two columns or two variables), or the "
            "values as a numpy array (`.to_numpy()`: complex arrays are stored as they are)", fixed=True)
    levels = frame.columns.levels if isinstance(frame.columns, pd.MultiIndex) else [frame.columns]
    for level in levels:
        if "mixed" in pd.api.types.infer_dtype(level, skipna=False):
            raise _unsupported_table(
                original, "its column labels mix types (e.g. int and str), which Arrow turns "
                "into strings; use labels of one type, e.g. `df.columns = df.columns.map(str)`", fixed=True,
            )


def _native_byte_order(frame: Any) -> Any:
    """Big-endian numpy columns byte-swapped (Arrow refuses them), as npy normalises."""
    swap = {
        col: dtype.newbyteorder("<")
        for col, dtype in zip(frame.columns, frame.dtypes)
        if isinstance(dtype, np.dtype) and dtype.byteorder == ">"
    }
    if not swap or not frame.columns.is_unique:
        return frame
    return frame.astype(swap)


def _unsupported_table(value: Any, problem: str, *, fixed: bool = False) -> UnsupportedValueError:
    """`problem` says what Arrow refused; `fixed` when it also says what to do."""
    name = f"{type(value).__module__}.{type(value).__qualname__}"
    fix = "" if fixed else ("; scistack never pickles: convert the offending columns to numeric, bool, "
                            "string, categorical or datetime dtypes")
    return UnsupportedValueError(f"cannot store this {name} as an Arrow table: {problem.rstrip('.')}{fix}")


def _single_batch(table: pa.Table, num_rows: int) -> pa.RecordBatch:
    """The table as exactly one record batch, with the undefined bytes under nulls zeroed.

    Always one batch: an empty table still writes its dictionaries (a categorical's
    categories), and a table without columns still records its row count.
    """
    if table.num_columns == 0:
        rows = pa.repeat(pa.scalar({}, type=pa.struct([])), num_rows)
        return pa.RecordBatch.from_struct_array(rows).replace_schema_metadata(table.schema.metadata)
    if table.num_rows == 0:  # (a slice of nothing still holds its parent's string bytes)
        arrays = [_zero_nulls(c.chunk(0)) if c.num_chunks else pa.array([], type=c.type)
                  for c in table.columns]
    else:
        arrays = [_zero_nulls(column.chunk(0)) for column in table.combine_chunks().columns]
    return pa.RecordBatch.from_arrays(arrays, schema=table.schema)


def _zero_nulls(arr: pa.Array) -> pa.Array:
    if _is_binary(arr.type):
        return _compact_binary(arr)
    if arr.null_count == 0 or arr.type.num_buffers != 2 or pa.types.is_dictionary(arr.type):
        return arr
    try:
        width = arr.type.bit_width
    except ValueError:  # not a fixed-width type (lists...)
        return arr
    valid = pc.is_valid(arr)
    if width == 1:
        data = pa.concat_arrays([pc.fill_null(arr, False)]).buffers()[1]
    elif width % 8:
        return arr
    else:
        size = width // 8
        raw = np.frombuffer(arr.buffers()[1], dtype=np.uint8)
        raw = raw[arr.offset * size : (arr.offset + len(arr)) * size].copy()
        raw.reshape(len(arr), size)[~valid.to_numpy(zero_copy_only=False)] = 0
        data = pa.py_buffer(raw)
    return pa.Array.from_buffers(arr.type, len(arr), [valid.buffers()[1], data], arr.null_count)


def _is_binary(arrow_type: pa.DataType) -> bool:
    return any(t(arrow_type) for t in _OBJECT_COLUMN_TYPES[:4])


def _compact_binary(arr: pa.Array) -> pa.Array:
    """A string/binary array with offsets from 0, exactly its own bytes, '' under nulls.

    Arrow's IPC writer keeps part of a sliced array's layout, so a slice and a fresh copy of
    the same strings would otherwise get different oids.
    """
    large = pa.types.is_large_string(arr.type) or pa.types.is_large_binary(arr.type)
    values = pc.fill_null(arr, pa.scalar(b"" if pa.types.is_binary(arr.type) or
                                         pa.types.is_large_binary(arr.type) else "", arr.type))
    bufs = values.buffers()
    offsets = np.frombuffer(bufs[1], dtype=np.int64 if large else np.int32)
    offsets = offsets[values.offset : values.offset + len(values) + 1]
    if not arr.null_count and offsets[0] == 0 and (bufs[2] is None or bufs[2].size == offsets[-1]):
        return arr
    data = b"" if bufs[2] is None else bufs[2].to_pybytes()[offsets[0] : offsets[-1]]
    validity = pc.is_valid(arr).buffers()[1] if arr.null_count else None
    return pa.Array.from_buffers(
        arr.type, len(arr),
        [validity, pa.py_buffer((offsets - offsets[0]).tobytes()), pa.py_buffer(data)],
        arr.null_count,
    )


def _restore_string_dtypes(frame: Any, pandas_meta: dict, schema: pa.Schema) -> None:
    """Give string columns back the dtype they were saved with (pandas 3 reads `str`). The
    frame's columns are the table's but its index columns, in the table's order, which is the
    metadata's only for a table read whole: each is matched to its metadata by name (a read of
    some columns, in the order asked, `LazyTable.read(columns=)`)."""
    index_columns = [c for c in pandas_meta.get("index_columns", []) if isinstance(c, str)]
    saved = {c.get("field_name"): c for c in pandas_meta.get("columns", [])}
    data = [name for name in schema.names if name not in index_columns]
    if len(data) != frame.shape[1]:
        return
    for i, name in enumerate(data):
        meta = saved.get(name)
        target = _saved_string_dtype(meta, schema.field(name), frame.dtypes.iloc[i]) if meta else None
        if target is not None:
            frame.isetitem(i, _as_dtype(frame.iloc[:, i], target))


def _restore_index_dtypes(frame: Any, pandas_meta: dict, table: pa.Table) -> None:
    """Give each index level back the dtype it was saved with. pyarrow rebuilds a column of a
    pandas extension dtype (Int64, boolean, Float64, string...) from the dtype its metadata
    names, but an index level only from its Arrow type: an Int64 index came back float64 (ids
    above 2**53 rounded to another id, NA as NaN), a boolean one object, a `string` one `str`.
    The stored values are exact, so a level is rebuilt from its Arrow column with the saved
    dtype (`__from_arrow__`, as pyarrow does for columns); text levels as the columns are."""
    import pandas as pd

    descriptors = pandas_meta.get("index_columns", [])
    if len(descriptors) != frame.index.nlevels or not any(isinstance(d, str) for d in descriptors):
        return
    saved = {c.get("field_name"): c for c in pandas_meta.get("columns", [])}
    levels = [frame.index.get_level_values(i) for i in range(frame.index.nlevels)]
    changed = False
    for i, name in enumerate(descriptors):
        meta = saved.get(name) if isinstance(name, str) else None
        if meta is None or name not in table.schema.names:
            continue
        field, current = table.schema.field(name), levels[i].dtype
        target = _saved_string_dtype(meta, field, current)
        if target is not None:
            levels[i], changed = _as_dtype(levels[i], target), True
            continue
        target = _saved_extension_dtype(meta)
        if target is not None and target != current:
            levels[i] = pd.Index(target.__from_arrow__(table.column(name)), name=levels[i].name)
            changed = True
    if changed:
        frame.index = levels[0] if len(levels) == 1 else pd.MultiIndex.from_arrays(levels, names=frame.index.names)


def _saved_extension_dtype(meta: dict) -> Any:
    """The pandas extension dtype a column's metadata names (its `numpy_type`), if it has one
    that can be built from Arrow; None for numpy dtypes and what pandas does not know."""
    import pandas as pd

    try:
        dtype = pd.api.types.pandas_dtype(meta.get("numpy_type"))
    except (TypeError, ValueError):
        return None
    if isinstance(dtype, pd.api.extensions.ExtensionDtype) and hasattr(dtype, "__from_arrow__"):
        return dtype
    return None


def _saved_string_dtype(meta: dict, field: pa.Field | None, current: Any) -> Any:
    import pandas as pd

    if not isinstance(current, pd.StringDtype) or field is None:
        return None
    saved = meta.get("numpy_type")
    if saved == "object":
        return object
    if saved == "string" and field.type == pa.string() and current.storage != "python":
        return pd.StringDtype("python")
    if saved == "string[pyarrow]":
        return pd.ArrowDtype(field.type)
    return None


def _as_dtype(values: Any, dtype: Any) -> Any:
    if dtype is object:  # missing strings are None in an object column, as Arrow gives them
        return values.astype(object).where(values.notna(), None)
    return values.astype(dtype)


def _name_tree(name: Any) -> Any:
    """A Series name as canonical JSON (tuples, numpy scalars... keep their type)."""

    def refuse(child: Any) -> str:
        raise UnsupportedValueError(
            f"a Series name cannot be a {type(child).__name__}; use a str, number or tuple"
        )

    return {"v": to_tree(name, refuse)}


def series_name(metadata: dict[bytes, bytes]) -> Any:
    """The name of the Series a stored table's schema metadata describes."""
    return _name_value(json.loads(metadata[b"scistack.series_name"]))


def _name_value(tree: dict) -> Any:
    return from_tree(tree["v"], lambda oid: oid)
