"""Value <-> (kind, payload): the one place that decides how a Python value is stored.

Top-level arrays are `npy`, DataFrames/Series/Arrow tables are `table`, `bytes` are
`bytes`, and everything else goes through canonical JSON (which stores any arrays or tables
it contains as child objects). Nothing is ever pickled: an unknown type is refused.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from scistack.objects.canonical_json import (
    decode_json,
    encode_json,
    is_child_value,
    unsupported,
)
from scistack.objects.npy import decode_npy, encode_npy
from scistack.objects.table import decode_table, encode_table

Put = Callable[[str, list], str]
Get = Callable[[str], tuple[str, Any]]


def encode_value(value: Any, put: Put) -> tuple[str, list]:
    """`(kind, payload buffers)` for `value`; children are stored through `put(kind, parts)`."""
    if isinstance(value, np.ndarray):
        return "npy", encode_npy(value)
    if is_child_value(value):
        return "table", encode_table(value)
    if type(value) is bytes:
        return "bytes", [value]
    if isinstance(value, (bytearray, memoryview)):
        raise unsupported(value)

    def put_child(child: Any) -> str:
        return put(*encode_value(child, put))

    return "json", [encode_json(value, put_child)]


def value_kind(value: Any) -> str:
    """The kind `encode_value` picks for `value` (without encoding it)."""
    if isinstance(value, np.ndarray):
        return "npy"
    if is_child_value(value):
        return "table"
    return "bytes" if type(value) is bytes else "json"


def decode_value(kind: str, payload: Any, get: Get) -> Any:
    """The value of an object; `get(oid) -> (kind, payload)` fetches children."""
    if kind == "npy":
        return decode_npy(payload)
    if kind == "json":
        return decode_json(payload, lambda oid: decode_value(*get(oid), get))
    if kind == "table":
        return decode_table(payload)
    if kind == "bytes":
        return bytes(payload)
    if kind == "code":
        return bytes(payload).decode("utf-8")
    if kind == "call":
        return decode_json(payload, lambda oid: oid)
    raise ValueError(f"unknown object kind {kind!r}")
