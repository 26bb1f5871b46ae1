"""Canonical bytes for the immutable values a function reads (module constants, closure cells).

A function's identity covers the *values* of the constants it reads, so editing
``THRESHOLD = 3`` to ``THRESHOLD = 4`` invalidates cached results. Only values that cannot
change behind our back qualify: ``None``, ``bool``, ``int``, ``float``, ``complex``, ``str``,
``bytes``, tuples and frozensets of those, numpy scalars, enum members and frozen
dataclass instances whose fields qualify. Anything else (lists, dicts, arrays, objects)
is mutable, so its value at hashing time says nothing about its value at call time: it is
digested again on every call instead (``_data``).

The encoding is type-tagged and length-prefixed, like redun's ``hash_struct``, so ``1``,
``1.0``, ``True``, ``"1"`` and ``b"1"`` never collide. Types are compared exactly
(``type(v) is int``), so subclasses such as ``np.float64`` or an ``IntEnum`` take their own,
more specific branch. Frozenset members are sorted by their encoded bytes, which keeps the
result independent of ``PYTHONHASHSEED``.
"""

from __future__ import annotations

import dataclasses
import datetime
import decimal
import enum
import fractions
import os
import pathlib
import re
import sys
import uuid
from typing import Any

import blake3

_SCALAR_TAGS: dict[type, bytes] = {int: b"i", float: b"f", complex: b"c", str: b"s", bytes: b"y"}


def imported(name: str) -> object | None:
    """Module `name` if it is fully imported, else None (not imported, or still importing).

    Which branch encodes a value is chosen by ``isinstance`` against the classes of numpy,
    pandas and pyarrow, looked up in ``sys.modules`` so that identity never imports them. A
    module another thread is still importing is in ``sys.modules`` already, half built: the
    background DuckDB sync imports pandas (seconds on a busy machine) while the main thread
    digests module data, and ``pandas.Index`` raised AttributeError, which had made a plain
    dataclass or a bound method's object "unverifiable" at random. No value of one of its
    classes can be in this thread's hands before its package finished importing (a submodule
    is imported only after its package), so such a module counts as not imported.
    """
    module = sys.modules.get(name)
    if module is None or getattr(getattr(module, "__spec__", None), "_initializing", False):
        return None
    return module


def frame(data: bytes) -> bytes:
    """Length-prefix `data` so that concatenated fields stay unambiguous."""
    return len(data).to_bytes(8, "little") + data


def hash_fields(tag: str, *fields: str) -> str:
    """Blake3 hex digest of a tag and text fields, each length-prefixed (never ``hash()``)."""
    hasher = blake3.blake3()
    for text in (tag, *fields):
        hasher.update(frame(text.encode("utf-8", "surrogatepass")))
    return hasher.hexdigest()


def value_digest(encoded: bytes) -> str:
    """Digest of a constant's canonical bytes (as produced by `encode_constant`)."""
    return blake3.blake3(frame(b"const") + frame(encoded)).hexdigest()


def encode_constant(value: object) -> bytes | None:
    """Return tagged canonical bytes for an immutable `value`, or None if it is not one.

    Parameters
    ----------
    value
        Any Python object.

    Returns
    -------
    bytes or None
        Canonical bytes; None means "mutable or unknown: do not hash by value".
    """
    kind = type(value)
    if value is None:
        return b"N"
    if kind is bool:
        return b"T" if value else b"F"
    if kind is type(Ellipsis):
        return b"E"
    tag = _SCALAR_TAGS.get(kind)
    if tag is not None:
        return tag + _scalar_bytes(value)
    if isinstance(value, tuple):
        return _encode_tuple(value)
    if kind is frozenset:
        return _encode_items(b"z", sorted(encode_constant(v) or b"" for v in value), len(value))
    return _encode_special(value)


def _scalar_bytes(value: int | float | complex | str | bytes) -> bytes:
    """Exact text of an int/float/complex (hex: no rounding, -0.0 kept), or str/bytes content."""
    if isinstance(value, bytes):
        return value
    if isinstance(value, str):
        return value.encode("utf-8", "surrogatepass")
    if isinstance(value, int):
        return hex(value).encode()  # hex, not str(): no int_max_str_digits limit
    if isinstance(value, float):
        return value.hex().encode()
    return f"{value.real.hex()},{value.imag.hex()}".encode()


def _encode_items(tag: bytes, encoded: list[bytes | None], count: int) -> bytes | None:
    """Join already-encoded members; any unencodable (None or empty) member poisons the whole."""
    if len(encoded) != count or any(not item for item in encoded):
        return None
    return tag + frame(str(count).encode()) + b"".join(frame(item) for item in encoded)


def _encode_tuple(value: tuple) -> bytes | None:
    """Tuples and named tuples (the latter tagged with their class so fields cannot alias)."""
    items = _encode_items(b"t", [encode_constant(v) for v in value], len(value))
    if items is None or type(value) is tuple:
        return items
    return b"n" + frame(_type_path(type(value))) + items


_TEXT_TYPES: tuple[type, ...] = (
    pathlib.PurePath, datetime.date, datetime.time, datetime.timedelta, decimal.Decimal,
    fractions.Fraction, uuid.UUID,
)


class InProject:
    """A constant path inside the project's folder (a project module's ``__file__``, a str or
    `pathlib.PurePath` built from it), by its text after that folder (``/step.py``; "" for the
    folder itself): what `_graph.Walk.classify` records in its place, so that checkouts of one
    project at other absolute paths (a lab's machines, a project moved whole) agree on the
    code's identity. `kind`: ``str``, or the PurePath class's ``module.qualname``."""

    __slots__ = ("kind", "rel")

    def __init__(self, kind: str, rel: str) -> None:
        self.kind, self.rel = kind, rel

    def __eq__(self, other: object) -> bool:
        return isinstance(other, InProject) and (self.kind, self.rel) == (other.kind, other.rel)

    def __hash__(self) -> int:
        return hash((InProject, self.kind, self.rel))

    def __repr__(self) -> str:  # (`why`: "value changed: '/a/proj/step.py' -> '<project>/step.py'")
        text = repr("<project>" + self.rel)
        return text if self.kind == "str" else f"{self.kind.rpartition('.')[2]}({text})"


def in_project(value: object, roots: tuple[str, ...]) -> object:
    """`value` with each absolute path inside one of the folders `roots` (a str, a PurePath, in
    a tuple or frozenset too) an `InProject`; `value` itself when it holds none. A path is
    matched by its text (a folder's absolute or real path, then its own separator or its end),
    never followed: the text a checkout elsewhere reads has the same suffix."""
    if not roots:
        return value
    kind = type(value)
    if kind is str or isinstance(value, pathlib.PurePath):
        text = value if kind is str else str(value)
        if len(text) > 4096:
            return value
        for root in roots:
            if text.startswith(root) and (len(text) == len(root) or text[len(root)] in _SEPARATORS):
                name = "str" if kind is str else _type_path(kind).decode()
                return InProject(name, text[len(root):].replace(os.sep, "/"))
        return value
    if isinstance(value, (tuple, frozenset)):
        items = [in_project(item, roots) for item in value]
        if all(new is old for new, old in zip(items, value)):
            return value
        if kind is frozenset:
            return frozenset(items)
        return kind._make(items) if hasattr(kind, "_make") else tuple(items)  # type: ignore[attr-defined]
    return value


def holds_in_project(value: object) -> bool:
    """Whether `value` is an `InProject` or a tuple or frozenset holding one."""
    if isinstance(value, (tuple, frozenset)):
        return any(holds_in_project(item) for item in value)
    return type(value) is InProject


_SEPARATORS = os.sep + (os.altsep or "")


def _encode_special(value: object) -> bytes | None:
    """Numpy scalars, enum members, frozen dataclass instances and immutable library values
    (paths, dates and times, decimals, fractions, UUIDs, ranges, compiled regexes)."""
    if type(value) is InProject:
        return b"P" + frame(value.kind.encode()) + frame(value.rel.encode("utf-8", "surrogatepass"))
    if isinstance(value, _TEXT_TYPES) and not isinstance(value, enum.Enum):
        dated = isinstance(value, (datetime.date, datetime.time))
        text = value.isoformat() if dated else str(value)  # type: ignore[union-attr]
        if isinstance(value, (datetime.datetime, datetime.time)) and value.tzinfo is not None:
            text += "|" + repr(value.tzinfo)
        return b"x" + frame(_type_path(type(value))) + frame(text.encode("utf-8", "surrogatepass"))
    if type(value) is range:
        return b"r" + frame(f"{value.start},{value.stop},{value.step}".encode())
    if isinstance(value, re.Pattern):
        raw = value.pattern
        pattern = raw if isinstance(raw, bytes) else raw.encode("utf-8", "surrogatepass")
        return b"p" + frame(pattern) + frame(str(value.flags).encode())
    numpy: Any = imported("numpy")
    if numpy is not None and isinstance(value, numpy.generic):
        array = numpy.asarray(value)
        if array.dtype.hasobject:
            return None
        little = array.dtype.newbyteorder("<")  # one byte order for every machine
        return b"a" + frame(little.str.encode()) + frame(array.astype(little).tobytes())
    if isinstance(value, enum.Enum):
        inner = encode_constant(value.value)
        if inner is None:
            return None
        return b"e" + frame(_type_path(type(value))) + frame(value.name.encode()) + frame(inner)
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        if not type(value).__dataclass_params__.frozen:  # type: ignore[attr-defined]
            return None
        fields = [
            (f.name, encode_constant(getattr(value, f.name))) for f in dataclasses.fields(value)
        ]
        if any(enc is None for _, enc in fields):
            return None
        body = b"".join(frame(name.encode()) + frame(enc or b"") for name, enc in fields)
        return b"d" + frame(_type_path(type(value))) + frame(body)
    return None


def _type_path(kind: type) -> bytes:
    """``module.qualname`` of a class, as bytes."""
    return f"{kind.__module__}.{kind.__qualname__}".encode()
