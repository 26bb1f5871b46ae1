"""Value <-> (kind, payload): the one place that decides how a Python value is stored.

Top-level arrays are `npy`, DataFrames/Series/Arrow tables are `table`, `bytes` are
`bytes`, and everything else goes through canonical JSON (which stores any arrays or tables
it contains as child objects). Nothing is ever pickled: an unknown type is refused.

The table modules (pyarrow, ~55 ms to import) are imported where a table is met, so that a
process that never stores or reads one (`scistack status`, most pipelines) does not pay.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import numpy as np

from scistack.objects.canonical_json import (
    decode_json,
    encode_json,
    is_child_value,
    json_ref_paths,
    unsupported,
)
from scistack.objects.chunked import (
    array_manifest,
    chunk_labels,
    decode_chunked_array,
    encode_chunked_array,
    is_array_source,
    measure_unknown_chunks,
    parse_manifest,
    should_chunk,
)
from scistack.objects.chunking import current_policy
from scistack.objects.npy import decode_npy, encode_npy

Put = Callable[[str, list], str]
Get = Callable[[str], tuple[str, Any]]


def encode_value(value: Any, put: Put) -> tuple[str, list]:
    """`(kind, payload buffers)` for `value`; children are stored through `put(kind, parts)`.

    An array above the chunking threshold (numpy, memmap, dask or zarr) becomes a `chunked`
    manifest whose chunks are stored through `put` first; a smaller dask or zarr array is
    read into memory and stored as the numpy array it equals (one value, one oid).
    """
    if hasattr(value, "row_groups") and getattr(type(value), "__scistack_chunked__", False):
        value = value.read()  # a lazily loaded table: stored as the table it is
    if isinstance(value, np.ndarray) or is_array_source(value):
        policy = current_policy()
        measure_unknown_chunks(value)
        if should_chunk(value, policy):
            return "chunked", encode_chunked_array(value, put, policy)
        return "npy", encode_npy(value if isinstance(value, np.ndarray) else np.asarray(value))
    if is_child_value(value):
        from scistack.objects.chunked_table import encode_chunked_table, should_chunk_table
        from scistack.objects.table import table_payload, to_arrow

        table, num_rows = to_arrow(value)
        policy = current_policy()
        if should_chunk_table(value, policy):
            return "chunked", encode_chunked_table(table, put, policy)
        return "table", table_payload(table, num_rows)
    if type(value) is bytes:
        return "bytes", [value]
    if isinstance(value, (bytearray, memoryview)):
        raise unsupported(value)

    def put_child(child: Any) -> str:
        return put(*encode_value(child, put))

    return "json", [encode_json(value, put_child)]


def value_kind(value: Any) -> str:
    """The kind `encode_value` picks for `value` (without encoding it)."""
    if isinstance(value, np.ndarray) or is_array_source(value):
        measure_unknown_chunks(value)
        return "chunked" if should_chunk(value, current_policy()) else "npy"
    if is_child_value(value):
        from scistack.objects.chunked_table import should_chunk_table

        return "chunked" if should_chunk_table(value, current_policy()) else "table"
    return "bytes" if type(value) is bytes else "json"


def decode_value(kind: str, payload: Any, get: Get, oid: str = "?") -> Any:
    """The value of object `oid`; `get(oid) -> (kind, payload)` fetches children and chunks."""
    if kind == "npy":
        return decode_npy(payload)
    if kind == "chunked":
        tree = parse_manifest(payload)
        if tree["type"] == "table":
            from scistack.objects.chunked_table import decode_chunked_table

            return decode_chunked_table(tree, get, oid)
        return decode_chunked_array(tree, get, oid)
    if kind == "json":
        return decode_json(payload, lambda child: decode_value(*get(child), get, child))
    if kind == "table":
        from scistack.objects.table import decode_table

        return decode_table(payload)
    if kind == "bytes":
        return bytes(payload)
    if kind == "code":
        return bytes(payload).decode("utf-8")
    if kind == "call":
        return decode_json(payload, lambda oid: oid)
    raise ValueError(f"unknown object kind {kind!r}")


def open_chunked(payload: Any, get: Get, oid: str) -> Any:
    """The lazy view of a `chunked` manifest (its chunks are read on demand)."""
    from scistack.objects.lazy import LazyArray, LazyTable

    tree = parse_manifest(payload)
    if tree["type"] == "table":
        from scistack.objects.chunked_table import TableChunks

        return LazyTable(TableChunks(tree, get, oid), oid)
    return LazyArray(array_manifest(tree), get, oid)


def child_oids(kind: str, payload: Any) -> list[tuple[str, str]]:
    """`(oid, what)` of every object a json or chunked object names (gc, ls and fsck walk these)."""
    if kind == "json":
        return [(oid, f"value{where}" if where else "child") for oid, where in json_ref_paths(json.loads(bytes(payload)))]
    if kind == "chunked":
        return chunk_labels(parse_manifest(payload))
    return []
