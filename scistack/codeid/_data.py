"""Canonical digests of the *mutable* module data a function reads, taken at call time.

A list, dict, set, numpy array or configuration object at module level (``WEIGHTS = [1, 2]``,
``KERNEL = np.array(...)``, ``CONFIG = json.load(...)``, a dataclass instance) is an input of
every function that reads it. Unlike an immutable constant its value can change without the
name being rebound, so it cannot be frozen into the memoised identity: it is digested again on
every call (``identity.function_identity``), which costs about a microsecond per small
container and blake3 speed for arrays.

The encoding is a prefix-free stream of tagged, length-prefixed items fed to one blake3
hasher (no intermediate bytes: a 100 MB array is hashed in place). Dicts keep their
insertion order (iteration order can change a result); sets are sorted by their members'
digests. Functions and classes inside data (a registry ``OPS = {"x": scale}``) are encoded by
their code identity, through the `code_of` callback, so editing a registered function changes
the digest of the dict that holds it.

A value with no canonical encoding (an open file, a random generator, an object of a library
class scistack cannot hash) raises `Unverifiable`: the caller records it as such and `why`
and `status` report the value as unverifiable (``?``) instead of pretending to know it.
Objects that are state rather than input (loggers, streams, locks) are `is_state` and not
read at all.
"""

from __future__ import annotations

import argparse
import collections
import dataclasses
import types
import enum
import io
import logging
import os
import threading
from collections.abc import Callable
from typing import Any
from types import BuiltinFunctionType, FunctionType, MappingProxyType, MethodType, ModuleType

import blake3

from scistack.codeid._values import encode_constant, frame, imported

_MAX_DEPTH = 64
_STATE_TYPES: tuple[type, ...] = (
    logging.Logger,
    logging.LoggerAdapter,
    io.IOBase,
    threading.local,
    type(threading.Lock()),
    type(threading.RLock()),
    threading.Event,
    threading.Condition,
    threading.Semaphore,
    threading.Thread,
)


_CODE_TYPES = (FunctionType, type, MethodType, BuiltinFunctionType)
_ATTRIBUTE_BAGS = (types.SimpleNamespace, argparse.Namespace)  # configuration objects


class EnvironmentVariable:
    """One environment variable a function reads by name; its value is read at call time."""

    __slots__ = ("name",)

    def __init__(self, name: str) -> None:
        self.name = name

    def __repr__(self) -> str:
        return repr(os.environ.get(self.name))


class Unverifiable(Exception):
    """A value read by a function has no canonical encoding; the message says what it is."""


def is_state(value: object) -> bool:
    """True for a function's side channels, not its inputs (loggers, streams, locks)."""
    return isinstance(value, _STATE_TYPES)


def data_digest(value: object, code_of: Callable[[object], str]) -> str:
    """Blake3 digest of `value`'s canonical content, now.

    Parameters
    ----------
    value
        The object a function reads (a module global or a closure cell).
    code_of
        Identity digest of a function or class found inside the data.

    Raises
    ------
    Unverifiable
        Some part of `value` has no canonical encoding.
    """
    hasher = blake3.blake3()
    hasher.update(frame(b"data"))
    if type(value) in _PLAIN_CONTAINERS and _is_plain(value, 0):
        # Lists/tuples/dicts of exact ints, floats, strs, bools and None: their repr is
        # canonical (shortest round-trip floats, insertion-ordered dicts) and 30x cheaper.
        hasher.update(b"R" + frame(repr(value).encode("utf-8", "surrogatepass")))
        return hasher.hexdigest()
    _feed(hasher, value, code_of, set(), 0)
    return hasher.hexdigest()


_PLAIN_SCALARS = frozenset({int, float, str, bool, type(None)})
_PLAIN_CONTAINERS = frozenset({list, tuple, dict})


def _is_plain(value: object, depth: int) -> bool:
    """True for a list/tuple/dict tree of exact plain scalars (no subclasses, no sets)."""
    if depth > 8:
        return False
    items = list(value.items()) if type(value) is dict else value  # type: ignore[attr-defined]
    for item in items:  # type: ignore[attr-defined]
        kind = type(item)
        if kind in _PLAIN_SCALARS:
            continue
        if kind in _PLAIN_CONTAINERS and _is_plain(item, depth + 1):
            continue
        return False
    return True


def _feed(
    h: blake3.blake3, value: object, code_of: Callable[[object], str], seen: set[int], depth: int
) -> None:
    """Append the tagged encoding of `value` to `h` (recursively for containers)."""
    encoded = encode_constant(value)
    if encoded is not None:
        h.update(b"C" + frame(encoded))
        return
    if id(value) in seen:
        raise Unverifiable(f"a {type(value).__name__} that contains itself")
    if depth > _MAX_DEPTH:
        raise Unverifiable(f"a {type(value).__name__} nested over {_MAX_DEPTH} levels deep")
    seen.add(id(value))
    try:
        _feed_container(h, value, code_of, seen, depth + 1)
    finally:
        seen.discard(id(value))


def _feed_container(
    h: blake3.blake3, value: object, code_of: Callable[[object], str], seen: set[int], depth: int
) -> None:
    kind = type(value)
    if kind in _PLAIN_CONTAINERS and _is_plain(value, 0):
        h.update(b"R" + frame(repr(value).encode("utf-8", "surrogatepass")))
        return
    if kind is EnvironmentVariable:
        now = os.environ.get(value.name)  # type: ignore[attr-defined]
        text = b"\0unset" if now is None else now.encode("utf-8", "surrogateescape")
        h.update(b"N" + frame(value.name.encode()) + frame(text))  # type: ignore[attr-defined]
        return
    if value is os.environ:
        raise Unverifiable("the whole process environment (read by a name known only at run time, iterated or copied)")
    if kind in (list, tuple) or isinstance(value, (list, tuple, collections.deque)):
        count = str(len(value)).encode()  # type: ignore[arg-type]
        h.update(b"L" + frame(_type_path(kind)) + frame(count))
        for item in value:  # type: ignore[attr-defined]
            _feed(h, item, code_of, seen, depth)
        return
    if isinstance(value, (dict, MappingProxyType)):
        h.update(b"D" + frame(_type_path(kind)) + frame(str(len(value)).encode()))
        for key, item in list(value.items()):
            _feed(h, key, code_of, seen, depth)
            _feed(h, item, code_of, seen, depth)
        return
    if isinstance(value, bytearray):
        h.update(b"B" + frame(bytes(value)))
        return
    if isinstance(value, (set, frozenset)):
        members = sorted(_sub_digest(item, code_of, seen, depth) for item in list(value))
        h.update(b"S" + frame(str(len(members)).encode()) + b"".join(map(frame, members)))
        return
    if isinstance(value, _CODE_TYPES) or _is_code_like(value):
        h.update(b"F" + frame(code_of(value).encode()))
        return
    if isinstance(value, ModuleType):
        h.update(b"M" + frame(value.__name__.encode()))
        return
    numpy: Any = imported("numpy")
    if numpy is not None and isinstance(value, numpy.ndarray):
        _feed_array(h, value, numpy, code_of, seen, depth)
        return
    if numpy is not None and isinstance(value, numpy.dtype):
        h.update(b"Q" + frame(str(value.descr).encode()) + frame(value.str.encode()))
        return
    if _feed_library(h, value, code_of, seen, depth):
        return
    if isinstance(value, enum.Enum):
        h.update(b"e" + frame(_type_path(kind)) + frame(value.name.encode()))
        return
    stored = _saved_oid(value)
    if stored is not None:  # a loaded variable or a result: its stored content, as the value itself
        h.update(b"V" + frame(stored.encode()))
        return
    if dataclasses.is_dataclass(value):
        h.update(b"O" + frame(_type_path(kind)))
        fields = dataclasses.fields(value)
        h.update(frame(str(len(fields)).encode()))
        for f in fields:
            h.update(frame(f.name.encode()))
            _feed(h, getattr(value, f.name), code_of, seen, depth)
        return
    if _is_project_object(value) or isinstance(value, _ATTRIBUTE_BAGS):
        attrs = sorted(vars(value).items())
        h.update(b"P" + frame(_type_path(kind)) + frame(str(len(attrs)).encode()))
        for name, item in attrs:
            h.update(frame(name.encode()))
            _feed(h, item, code_of, seen, depth)
        return
    try:
        h.update(b"V" + frame(_stored_digest(value).encode()))
    except Unverifiable:
        attrs = getattr(value, "__dict__", None)
        if not isinstance(attrs, dict):
            raise
        if not pure_python(kind):
            raise  # C state behind __dict__ (random.Random, a subclass of array.array...)
        if not attrs:
            h.update(b"Z" + frame(_type_path(kind)))  # a sentinel: no state but its class
            return
        # A library object scistack cannot store (interp1d, a fitted estimator): its attributes.
        items = sorted(attrs.items())
        h.update(b"G" + frame(_type_path(kind)) + frame(str(len(items)).encode()))
        for name, item in items:
            h.update(frame(name.encode()))
            _feed(h, item, code_of, seen, depth)


def _feed_library(
    h: blake3.blake3, value: object, code_of: Callable[[object], str], seen: set[int], depth: int
) -> bool:
    """pandas indexes and categorical dtypes, pyarrow schemas and types (False: not one)."""
    pandas: Any = imported("pandas")
    if pandas is not None and isinstance(value, pandas.Index):
        h.update(b"I" + frame(_type_path(type(value))))
        _feed(h, value.name, code_of, seen, depth)
        _feed(h, value.to_numpy(), code_of, seen, depth)
        return True
    if pandas is not None and isinstance(value, pandas.CategoricalDtype):
        h.update(b"K" + frame(str(value.ordered).encode()))
        _feed(h, value.categories, code_of, seen, depth)
        return True
    pyarrow: Any = imported("pyarrow")
    if pyarrow is not None and isinstance(value, (pyarrow.Schema, pyarrow.DataType, pyarrow.Field)):
        h.update(b"W" + frame(_type_path(type(value))) + frame(str(value).encode()))
        return True
    return False


def _sub_digest(
    value: object, code_of: Callable[[object], str], seen: set[int], depth: int
) -> bytes:
    """Digest of one member on its own (set members are sorted by it)."""
    inner = blake3.blake3()
    _feed(inner, value, code_of, seen, depth)
    return inner.digest()


def _feed_array(
    h: blake3.blake3, array: Any, numpy: Any, code_of: Callable[[object], str], seen: set[int],
    depth: int,
) -> None:
    """Class, dtype, shape and C-order little-endian bytes of an array (a masked array's mask
    too); an array of Python objects by its elements."""
    dtype = array.dtype
    little = dtype.newbyteorder("<") if dtype.byteorder != "|" else dtype
    shape = repr(array.shape).encode()
    h.update(b"A" + frame(_type_path(type(array))) + frame(str(little.descr).encode()) + frame(shape))
    if dtype.hasobject:
        _feed(h, array.tolist(), code_of, seen, depth)
        return
    data = numpy.ascontiguousarray(numpy.asarray(array), dtype=little)
    h.update(frame(little.str.encode()) + frame(str(data.nbytes).encode()))
    h.update(memoryview(data).cast("B") if data.nbytes else b"")
    if isinstance(array, numpy.ma.MaskedArray):
        _feed_array(h, numpy.ma.getmaskarray(array), numpy, code_of, seen, depth)


_PLAIN_SIZE = type("_Plain", (), {}).__basicsize__  # an instance with nothing but __dict__


def pure_python(kind: type) -> bool:
    """True when instances of `kind` keep all their state in ``__dict__`` (no C fields, no
    slots: a subclass of ``array.array`` or a C extension type is bigger than a plain one)."""
    return kind.__basicsize__ <= _PLAIN_SIZE


def _is_code_like(value: object) -> bool:
    """functools.partial, np.vectorize and the like: code, identified through `code_of`."""
    return callable(value) and any(hasattr(value, a) for a in ("__wrapped__", "pyfunc", "func"))


def _is_project_object(value: object) -> bool:
    """An instance of a class of the user's project (its attributes are its configuration)."""
    from scistack.codeid._packages import is_project_module

    kind = type(value)
    return (
        hasattr(value, "__dict__")
        and is_project_module(kind.__module__)
        and not hasattr(kind, "__slots__")
        and pure_python(kind)  # a subclass of a C type keeps state outside __dict__
    )


def _saved_oid(value: object) -> str | None:
    """The oid of a loaded variable's or a result's value (what lineage keys it by), else None.
    Its attributes are this process's bookkeeping (the index holding a batch's save, the store
    it was loaded from, what a use as an input remembered): fed as a project object's, they
    would make the digest differ between projects and after such a use."""
    hook = None if isinstance(value, type) else getattr(value, "__scistack_input__", None)
    if not callable(hook):
        return None
    try:
        oid = hook()[1]
    except Exception:  # noqa: BLE001 - an empty variable: its attributes, as any object's
        return None
    return oid if isinstance(oid, str) else None


def _stored_digest(value: object) -> str:
    """A library value scistack can store (a DataFrame, an Arrow table): its object id."""
    from scistack.errors import ScistackError
    from scistack.objects.store import hash_value

    try:
        return hash_value(value)
    except (ScistackError, TypeError, ValueError, AttributeError) as exc:
        raise Unverifiable(f"a {type(value).__module__}.{type(value).__qualname__}") from exc


def _type_path(kind: type) -> bytes:
    return f"{kind.__module__}.{kind.__qualname__}".encode()
