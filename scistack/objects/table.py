"""Canonical `table` payloads: an Arrow IPC stream (docs/format.md §1.3).

Arrow keeps what users care about in a DataFrame (index, column names, categorical,
tz-aware datetimes, nullable integers, strings) through pandas' schema metadata. That
metadata also names library versions, which would move an oid on every upgrade, so those
fields are removed; a `scistack` entry records which Python type to rebuild.
"""

from __future__ import annotations

import json
from typing import Any

import pyarrow as pa

from scistack.objects.canonical_json import dumps_canonical

_VOLATILE_PANDAS_FIELDS = ("creator", "pandas_version")


def encode_table(value: Any) -> list[Any]:
    """The payload of a DataFrame, Series or Arrow table, as buffers."""
    import pandas as pd

    extra: dict[bytes, bytes] = {}
    if isinstance(value, pa.Table):
        table, kind = value, "arrow"
    elif isinstance(value, pd.Series):
        extra[b"scistack.series_name"] = dumps_canonical(_name_tree(value.name))
        table, kind = pa.Table.from_pandas(value.to_frame(name="__series__")), "series"
    else:
        table, kind = pa.Table.from_pandas(value), "dataframe"
    metadata = dict(table.schema.metadata or {})
    if b"pandas" in metadata:
        pandas_meta = json.loads(metadata[b"pandas"])
        for field in _VOLATILE_PANDAS_FIELDS:
            pandas_meta.pop(field, None)
        metadata[b"pandas"] = dumps_canonical(pandas_meta)
    metadata.update(extra)
    metadata[b"scistack"] = kind.encode()
    table = table.replace_schema_metadata(dict(sorted(metadata.items()))).combine_chunks()
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, table.schema) as writer:
        if table.num_rows:
            writer.write_table(table)
    return [memoryview(sink.getvalue())]


def decode_table(payload: bytes | bytearray | memoryview) -> Any:
    """The DataFrame, Series or Arrow table a `table` payload was made from."""
    table = pa.ipc.open_stream(pa.py_buffer(payload)).read_all()
    metadata = dict(table.schema.metadata or {})
    kind = metadata.pop(b"scistack", b"arrow").decode()
    if kind == "arrow":
        return table.replace_schema_metadata(metadata or None)
    frame = table.to_pandas()
    if kind == "series":
        series = frame["__series__"]
        series.name = _name_value(json.loads(metadata[b"scistack.series_name"]))
        return series
    return frame


def _name_tree(name: Any) -> Any:
    """Series names are usually None, str or int; keep the type through JSON."""
    if name is None or isinstance(name, (str, bool, int, float)):
        return {"v": name}
    return {"v": str(name)}


def _name_value(tree: dict) -> Any:
    return tree["v"]
