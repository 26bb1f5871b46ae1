"""Canonical JSON: one byte string per Python value (docs/format.md §1.2).

Plain JSON cannot tell a tuple from a list, bytes from str, or carry nan, complex or numpy
scalars, so those are written as one-key tag objects (``{"$tuple": [...]}``). Every tag key
starts with ``$``; a user dict that itself has such a key is written as ``{"$dict": pairs}``,
so a tag can never be forged by data. Arrays and tables inside a container are stored as
child objects and referenced by oid (``{"$ref": oid}``): a Merkle tree, as git trees are.
"""

from __future__ import annotations

import base64
import json
import math
import os
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import numpy as np
import orjson

from scistack.address import NOT_TEXT, is_text, shown
from scistack.errors import UnsupportedValueError

PutChild = Callable[[Any], str]
GetChild = Callable[[str], Any]

_dumps = json.JSONEncoder(
    sort_keys=True, separators=(",", ":"), ensure_ascii=True, allow_nan=False
).encode
_NAT = -(2**63)


def is_child_value(value: object) -> bool:
    """Whether `value` is stored as a child object rather than inline JSON."""
    if isinstance(value, np.ndarray) or getattr(type(value), "__scistack_chunked__", False):
        return True  # (a lazily loaded value, inside a dict loaded lazily: stored as it equals)
    kind = type(value).__module__.split(".")[0]
    if kind in ("dask", "zarr"):  # stored as the numpy array they equal (chunked when large)
        return type(value).__name__ == "Array"
    return kind in ("pandas", "pyarrow") and type(value).__name__ in ("DataFrame", "Series", "Table")


def dumps_canonical(tree: Any) -> bytes:
    """Canonical text of an already-tagged JSON tree (records, journal lines)."""
    return _dumps(tree).encode("ascii")


def encode_json(value: Any, put_child: PutChild) -> bytes:
    """Canonical JSON bytes of `value`; arrays/tables go through `put_child` and become refs."""
    try:
        return dumps_canonical(to_tree(value, put_child))
    except RecursionError:
        raise UnsupportedValueError(
            "this value contains itself (a cyclic or extremely deep list/dict) and has no "
            "canonical form; store an acyclic copy"
        ) from None


def to_tree(value: Any, put_child: PutChild) -> Any:
    """The JSON tree (tags applied) for `value`."""
    if value is None or value is True or value is False:
        return value
    if isinstance(value, np.generic):
        return {"$np": _np_scalar(value)}
    kind = type(value)
    if kind is int:
        return value
    if kind is str:
        return value if value.isascii() or is_text(value) else _refuse_text(value)
    if kind is float:
        return float_tree(value)
    if kind is list:
        return [to_tree(v, put_child) for v in value]
    if kind is tuple:
        return {"$tuple": [to_tree(v, put_child) for v in value]}
    if kind is dict:
        return _dict(value, put_child)
    if kind is bytes:
        return {"$bytes": base64.b64encode(value).decode("ascii")}
    if kind is complex:
        return {"$complex": [float_tree(value.real), float_tree(value.imag)]}
    if is_child_value(value):
        return {"$ref": put_child(value)}
    raise unsupported(value)


def strict_json_data(value: Any, other: Callable[[Any], Any], *, string_keys: bool = False) -> Any:
    """`value` as data any JSON parser reads, for the open files export writes (a bundle's
    .json, a CSV's array cells): numpy scalars as Python's, tuples as lists, NaN and the
    infinities as null (as pandas and MATLAB write them; JavaScript, R's jsonlite and jq refuse
    Python's `NaN`). A numpy datetime64 is ISO text at its own unit, a timedelta64 its text
    (`1500 nanoseconds`), NaT null, as a CSV writes them outside a cell: `.item()` gave an int
    of nanoseconds for a ns unit (written as 1577872800000000001) and a `datetime` for the
    others, which no JSON writer takes. Anything else is `other(value)`, converted in turn
    (kept as it is when `other` returns it unchanged); with `string_keys` a dict keyed
    otherwise raises TypeError. For export only: stored bytes use `to_tree`."""
    if isinstance(value, (np.datetime64, np.timedelta64)):
        if np.isnat(value):
            return None
        return str(np.datetime_as_string(value)) if isinstance(value, np.datetime64) else str(value)
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, (list, tuple)):
        return [strict_json_data(v, other, string_keys=string_keys) for v in value]
    if isinstance(value, dict):
        if string_keys and not all(isinstance(k, str) for k in value):
            raise TypeError("non-string keys")
        return {k: strict_json_data(v, other, string_keys=string_keys) for k, v in value.items()}
    converted = other(value)
    return converted if converted is value else strict_json_data(converted, other, string_keys=string_keys)


def unsupported(value: Any) -> UnsupportedValueError:
    """The error for a value with no canonical form, naming its type and the way out."""
    name = f"{type(value).__module__}.{type(value).__qualname__}"
    way = _WAYS.get(name, _PATH_WAY if isinstance(value, os.PathLike)
                    else _DASK_FRAME_WAY if name.startswith(("dask.dataframe.", "dask_expr."))
                    else "e.g. a dict of its fields or a numpy array")
    return UnsupportedValueError(
        f"cannot store a value of type {name}: scistack stores numbers, strings, bytes, None, "
        "lists, tuples, dicts with str keys, numpy arrays and scalars, pandas DataFrames/Series "
        f"and Arrow tables (never pickle). Convert it to one of these, {way}"
    )


_TIME = "np.datetime64(value) (kept as a time) or value.isoformat() (text)"
# (any path: pathlib's classes live in pathlib._local from Python 3.13 on)
_PATH_WAY = "e.g. str(path); to follow a file's content, pass PathInput(path) to for_each"
_WAYS = {  # the conversion a scientist most likely wants, by type
    "datetime.datetime": f"e.g. {_TIME}",
    "datetime.date": f"e.g. {_TIME}",
    "pandas.Timestamp": "e.g. value.to_datetime64() or value.isoformat()",
    "datetime.timedelta": "e.g. np.timedelta64(value) or value.total_seconds()",
    "pandas.Timedelta": "e.g. value.to_timedelta64() or value.total_seconds()",
    "builtins.set": "e.g. sorted(value) (a list)",
    "builtins.frozenset": "e.g. sorted(value) (a list)",
}
_DASK_FRAME_WAY = ("e.g. value.compute() (a pandas DataFrame or Series: a large one is stored in "
                   "row-group chunks, and loads back lazily); only dask arrays are saved chunk by "
                   "chunk without computing them whole")
_FUNCTION_WAY = ("e.g. its name as a string; a function a step takes counts by its code when it "
                 "is the parameter's default (def step(x, fn=np.sqrt)) or a for_each constant "
                 "(inputs={\"fn\": np.sqrt})")
_WAYS.update(dict.fromkeys(("builtins.function", "builtins.builtin_function_or_method",
                            "numpy.ufunc", "functools.partial"), _FUNCTION_WAY))


def float_tree(x: float) -> Any:
    """A float as canonical JSON holds it: itself, or tagged when NaN or infinite."""
    if math.isfinite(x):
        return x
    return {"$float": "nan" if math.isnan(x) else ("inf" if x > 0 else "-inf")}


def _refuse_text(text: str, what: str = "") -> Any:
    """Refuse a str that cannot be UTF-8: JSON escapes it, but the summary, the index and the
    SQL views could not hold it (a save journalled it, then failed, and every later process
    failed to open the project)."""
    raise UnsupportedValueError(f"cannot store {what}{shown(text)}: {NOT_TEXT}")


def _dict(value: dict, put_child: PutChild) -> Any:
    for key in value:
        if type(key) is not str:
            raise UnsupportedValueError(
                f"dict keys must be str to be stored, found key {key!r} of type "
                f"{type(key).__name__}; convert keys with {{str(k): v for k, v in d.items()}} "
                "or store the pairs as a list"
            )
        if not (key.isascii() or is_text(key)):
            _refuse_text(key, "a dict key ")
    if any(key.startswith("$") for key in value):
        pairs = sorted(value.items())
        return {"$dict": [[k, to_tree(v, put_child)] for k, v in pairs]}
    return {k: to_tree(v, put_child) for k, v in value.items()}


def _np_scalar(x: np.generic) -> list:
    dtype = x.dtype
    descr = dtype.str if dtype.str[0] != ">" and dtype.str[0] != "=" else "<" + dtype.str[1:]
    kind = dtype.kind
    if kind in "fc" and dtype.itemsize > (16 if kind == "c" else 8):
        raise UnsupportedValueError(
            f"numpy scalars of type {type(x).__name__} (long double) cannot be stored "
            "exactly: JSON holds float64 at most. Convert with `np.float64(x)` (or complex128)"
        )
    if kind == "b":
        return [descr, bool(x)]
    if kind in "iu":
        return [descr, int(x)]
    if kind == "f":
        return [descr, float_tree(float(x))]
    if kind == "c":
        return [descr, [float_tree(float(x.real)), float_tree(float(x.imag))]]
    if kind in "Mm":
        return [descr, int(np.array(x).view("<i8"))]
    if kind == "U":
        return [descr, to_tree(str(x), None)]
    if kind == "S":
        return [descr, base64.b64encode(bytes(x)).decode("ascii")]
    raise unsupported(x)


def decode_json(payload: bytes | bytearray | memoryview, get_child: GetChild) -> Any:
    """The Python value of a canonical JSON payload; refs are resolved with `get_child`."""
    tree = loads(payload)
    return from_tree(tree, get_child) if isinstance(tree, (list, dict)) else tree


def loads(payload: bytes | bytearray | memoryview) -> Any:
    """JSON text parsed by orjson (~5x faster on a scalar: `load_all` of 10k values), and by
    `json` whatever orjson refuses (1e400, lone surrogates) or would read differently (it
    makes an integer beyond 64 bits a float: any run of 19 digits goes to `json`), so every
    payload means what it always did (invalid UTF-8 still raises). Where a run of 19 digits
    is found, orjson's answer still stands when it is an int (within 64 bits it is exact;
    beyond, orjson gives a float) or a str (read exactly): a saved integer of 19 digits (any
    above 10**18) took `json`'s Python-level decoder, ~5 frames, on every load of it."""
    if not maybe_big_int(payload):
        try:
            return orjson.loads(payload)
        except orjson.JSONDecodeError:
            pass
    else:
        try:
            value = orjson.loads(payload)
        except orjson.JSONDecodeError:
            pass
        else:  # (a float, list or dict may hold an integer made a float: `json` reads those)
            if type(value) is int or type(value) is str:
                return value
    return json.loads(bytes(payload))


_SCALAR_TYPES = frozenset({int, float, str, bool, type(None)})


def loads_scalars(payloads: Sequence[bytes | bytearray | memoryview]) -> list[Any] | None:
    """Many payloads that are each a plain JSON number, `true`/`false`/`null` or escape-free
    string, parsed in one orjson call (`load_all` of 10k scalars: ~2 ms instead of ~15); None
    when any payload is something else, so the caller decodes one by one as before.

    First without a look at each payload: joined, the text has one comma per join only when no
    payload holds one, and then the i-th element parsed is exactly the i-th payload (a string
    spanning payloads would take a join's comma: one element too few); each must be a scalar.
    Else (commas in strings, escapes, 19 digits) payload by payload."""
    joined = b"[" + b",".join(payloads) + b"]"
    if (joined.count(b",") == len(payloads) - 1 and joined.find(b"\\") < 0 and len(payloads)
            and not maybe_big_int(joined)):
        try:
            values = orjson.loads(joined)
        except orjson.JSONDecodeError:
            values = None
        if values is not None and len(values) == len(payloads) and set(map(type, values)) <= _SCALAR_TYPES:
            return values
    texts = []
    for payload in payloads:
        text = bytes(payload)
        if text[:1] == b'"':
            if text.count(b'"') != 2 or text[-1:] != b'"' or text.find(b"\\") >= 0:
                return None
        elif not text or (text.translate(None, _NUMBER_CHARS) and text not in _WORDS):
            return None
        texts.append(text)
    joined = b"[" + b",".join(texts) + b"]"
    if maybe_big_int(joined):
        return None
    try:
        values = orjson.loads(joined)
    except orjson.JSONDecodeError:
        return None
    return values if len(values) == len(texts) else None


_NUMBER_CHARS = b"0123456789-+.eE"
_WORDS = frozenset((b"true", b"false", b"null"))
# digits become 0 and what may come just before a JSON number's first digit (a sign, `:`,
# `,`, `[`, whitespace) becomes `|`: a number of 19 digits or more is then `|` and 19 zeros
_NUMBER_STARTS = bytes.maketrans(b"123456789-:,[ \t\n\r", b"000000000" + b"|" * 8)
_NINETEEN_DIGITS = b"0" * 19  # 18 digits always fit in an int64
_BIG_NUMBER = b"|" + _NINETEEN_DIGITS


def maybe_big_int(text: bytes | bytearray | memoryview) -> bool:
    """Whether `text` may hold a number of 19 digits or more (perhaps an integer beyond 64
    bits), i.e. 19 digits after a sign, `:`, `,`, `[`, whitespace or at the start: two C
    passes, ~10x faster than a regex. A run inside a string right after a quote or a letter
    is not a number: the 64 hex digits of an oid hold 19 decimal digits in a row about once
    in 170 oids, and that sent every line of a journal slice through the check again."""
    found = bytes(text).translate(_NUMBER_STARTS)
    # (`find`, not `in`: `bytes in bytes` first tries the needle as an int and builds and
    # drops a TypeError, ~3.5k instructions; a cache hit parses two payloads)
    return found.find(_BIG_NUMBER) >= 0 or found.startswith(_NINETEEN_DIGITS)


def from_tree(tree: Any, get_child: GetChild) -> Any:
    """Undo `to_tree`: tags back to tuples, bytes, numpy scalars, children..."""
    if isinstance(tree, list):
        return [from_tree(v, get_child) for v in tree]
    if not isinstance(tree, dict):
        return tree
    if len(tree) == 1:
        (key, inner), = tree.items()
        if key.startswith("$"):
            return _untag(key, inner, get_child)
    return {k: from_tree(v, get_child) for k, v in tree.items()}


def _untag(tag: str, inner: Any, get_child: GetChild) -> Any:
    if tag == "$float":
        return float(inner)
    if tag == "$tuple":
        return tuple(from_tree(v, get_child) for v in inner)
    if tag == "$bytes":
        return base64.b64decode(inner)
    if tag == "$complex":
        return complex(from_tree(inner[0], get_child), from_tree(inner[1], get_child))
    if tag == "$dict":
        return {k: from_tree(v, get_child) for k, v in inner}
    if tag == "$ref":
        return get_child(inner)
    if tag == "$np":
        return _np_from(inner[0], inner[1])
    raise ValueError(f"unknown canonical JSON tag {tag!r}")


def _np_from(descr: str, v: Any) -> np.generic:
    dtype = np.dtype(descr)
    if dtype.kind in "Mm":
        return np.array(v, dtype="<i8").view(dtype)[()]
    if dtype.kind == "S":
        return dtype.type(base64.b64decode(v))
    if dtype.kind == "f":
        return dtype.type(from_tree(v, None))  # type: ignore[arg-type]
    if dtype.kind == "c":
        return dtype.type(complex(from_tree(v[0], None), from_tree(v[1], None)))  # type: ignore[arg-type]
    return dtype.type(v)


REF_MARK = b'"$ref"'  # in the encoded bytes of every json object that names a child


def json_refs(tree: Any) -> Iterator[str]:
    """The child oids (`{"$ref": oid}`) anywhere in a parsed json object."""
    stack = [tree]
    while stack:
        node = stack.pop()
        if isinstance(node, dict):
            if len(node) == 1 and "$ref" in node:
                if isinstance(node["$ref"], str):
                    yield node["$ref"]
            else:
                stack.extend(node.values())
        elif isinstance(node, list):
            stack.extend(node)


def json_ref_paths(tree: Any) -> Iterator[tuple[str, str]]:
    """(oid, where) of each child (`{"$ref": oid}`) in a parsed json object, `where` the
    indexing that reaches it in the value as loaded: `["emg"]["left"]`, `[2][0]` ("" for a
    value that is itself a child). Messages name a lost child by it (fsck, gc). The way down
    is kept as a chain of (parent's chain, key) and spelt only for a child found."""
    stack: list[tuple[Any, Any]] = [(tree, None)]
    while stack:
        node, chain = stack.pop()
        if isinstance(node, list):
            stack.extend((item, (chain, i)) for i, item in enumerate(node))
        elif isinstance(node, dict):
            if len(node) == 1:
                (key, inner), = node.items()
                if key == "$ref":
                    if isinstance(inner, str):
                        yield inner, _spelt(chain)
                    continue
                if key == "$tuple" and isinstance(inner, list):
                    stack.extend((item, (chain, i)) for i, item in enumerate(inner))
                    continue
                if key == "$dict" and isinstance(inner, list):
                    stack.extend((pair[1], (chain, pair[0])) for pair in inner
                                 if isinstance(pair, list) and len(pair) == 2)
                    continue
                if key.startswith("$"):
                    continue  # (a number, bytes, a numpy scalar: no child)
            stack.extend((item, (chain, k)) for k, item in node.items())


def _spelt(chain: Any) -> str:
    keys = []
    while chain is not None:
        chain, key = chain
        keys.append(f"[{json.dumps(key, ensure_ascii=False)}]" if isinstance(key, str) else f"[{key!r}]")
    return "".join(reversed(keys))
