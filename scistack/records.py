"""Typed call records (an object of kind ``call``, docs/format.md §1.5).

A call record is stored as canonical JSON. `CallRecord.from_value` parses the JSON tree (as
`json.loads` gives it: tags such as ``{"$tuple": ...}`` left in place) and validates its
shape; `CallRecord.to_value` gives the tree back, so that

    dumps_canonical(CallRecord.from_value(tree).to_value()) == dumps_canonical(tree)

for every record scistack writes (an optional key that was absent stays absent, unknown keys
are kept), and the record's oid never moves. Writers build a `CallRecord` and store
``to_value()``; readers use `read_call` and attribute access instead of indexing dicts.

One rule says which inputs are constants: `CallInput.is_constant`. One method says which
objects a record needs: `CallRecord.child_refs` (what gc keeps, what fsck checks).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any, NamedTuple

from scistack.errors import CorruptObjectError, CorruptRecordError, ScistackError
from scistack.objects import ObjectStore
from scistack.objects.canonical_json import dumps_canonical, json_refs

__all__ = [
    "CALL_FORMAT", "CallInput", "CallRecord", "ChildRef", "FunctionInfo", "HelperInfo",
    "read_call",
]

CALL_FORMAT = 1


class ChildRef(NamedTuple):
    """One object a call record references.

    `kind` is the object's kind when the record implies it (None: read it from the store);
    `optional` objects may legitimately be absent (a constant that was never stored);
    `in_json`: named by a ``{"$ref": oid}`` inside the record's JSON (an array, table or
    chunked value inside a constant recorded inline, an address or the parameters), so it
    is what a json value's child is, never a call record or a dict of its own.
    """

    oid: str
    kind: str | None
    what: str
    optional: bool = False
    in_json: bool = False


# -- helpers ---------------------------------------------------------------------------------
def _fail(oid: str | None, problem: str) -> CorruptRecordError:
    return CorruptRecordError(oid, problem)


def _copy(tree: Any) -> Any:
    """A fresh copy of a JSON tree (records never share mutable parts with callers)."""
    if isinstance(tree, dict):
        return {k: _copy(v) for k, v in tree.items()}
    if isinstance(tree, list):
        return [_copy(v) for v in tree]
    return tree


class _Reader:
    """Reads the keys of one JSON object, naming the record and the path in every error."""

    def __init__(self, tree: Any, where: str, oid: str | None) -> None:
        if not isinstance(tree, dict):
            raise _fail(oid, f"{where} is {type(tree).__name__}, not an object")
        self.tree, self.where, self.oid = tree, where, oid
        self.absent: set[str] = set()
        self.used: set[str] = set()

    def _type_error(self, key: str, expected: str) -> CorruptRecordError:
        got = type(self.tree[key]).__name__
        return _fail(self.oid, f"{self.where}[{key!r}] is {got}, expected {expected}")

    def get(self, key: str, *, required: bool = False, default: Any = None) -> Any:
        self.used.add(key)
        if key not in self.tree:
            if required:
                raise _fail(self.oid, f"{self.where} lacks the key {key!r}")
            self.absent.add(key)
            return default
        return self.tree[key]

    def typed(self, key: str, types: type | tuple[type, ...], expected: str, *,
              required: bool = False, nullable: bool = False, default: Any = None) -> Any:
        value = self.get(key, required=required, default=default)
        if key not in self.tree or (nullable and value is None):
            return value
        if not isinstance(value, types) or (isinstance(value, bool) and bool not in _tuple(types)):
            raise self._type_error(key, expected + (" or null" if nullable else ""))
        return value

    def string(self, key: str, **kw: Any) -> Any:
        return self.typed(key, str, "a string", **kw)

    def oid_list(self, key: str, **kw: Any) -> tuple[str, ...] | None:
        value = self.typed(key, list, "a list of oids", **kw)
        if value is None:
            return None
        if not all(isinstance(v, str) for v in value):
            raise _fail(self.oid, f"{self.where}[{key!r}] holds a non-string oid")
        return tuple(value)

    def extra(self) -> dict[str, Any]:
        return {k: _copy(v) for k, v in self.tree.items() if k not in self.used}


def _tuple(types: type | tuple[type, ...]) -> tuple[type, ...]:
    return types if isinstance(types, tuple) else (types,)


def _put(out: dict[str, Any], absent: frozenset[str], key: str, value: Any) -> None:
    if key not in absent:
        out[key] = value


# -- parts -----------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class CallInput:
    """One input of a call (or one item inside a container input, or one part of a merge).

    ``var``/``addr``: where it was loaded from; ``call``: the call that computed it; ``const``:
    the inline canonical tree of a small constant (`has_const` tells a ``null`` constant from
    none); ``items``: the inputs inside a list/tuple/dict argument; ``members``: the oids an
    aggregated input handed over; ``merge``: the records a ``Merge(A, B)`` input joined.
    """

    oid: str
    var: str | None = None
    addr: dict[str, Any] | None = None
    call: str | None = None
    const: Any = None
    items: dict[str, CallInput] | None = None
    members: tuple[str, ...] | None = None
    merge: tuple[CallInput, ...] | None = None
    extra: dict[str, Any] = field(default_factory=dict)
    absent: frozenset[str] = field(default=frozenset(), repr=False)

    @classmethod
    def make(cls, oid: str, **parts: Any) -> CallInput:
        """An input with exactly the given keys (the others absent)."""
        keys = ("var", "addr", "call", "const", "items", "members", "merge")
        return cls(oid, **parts, absent=frozenset(k for k in keys if k not in parts))

    @classmethod
    def from_value(cls, tree: Any, *, where: str = "input", oid: str | None = None) -> CallInput:
        r = _Reader(tree, where, oid)
        value_oid = r.string("oid", required=True)
        var = r.string("var", nullable=True)
        addr = r.typed("addr", dict, "an object", nullable=True)
        call = r.string("call", nullable=True)
        const = r.get("const")
        items = r.typed("items", dict, "an object", nullable=True)
        if items is not None:
            items = {
                str(path): cls.from_value(item, where=f"{where}.items[{path!r}]", oid=oid)
                for path, item in items.items()
            }
        members = r.oid_list("members", nullable=True)
        merge = r.typed("merge", list, "a list of input records", nullable=True)
        if merge is not None:
            merge = tuple(
                cls.from_value(part, where=f"{where}.merge[{i}]", oid=oid)
                for i, part in enumerate(merge)
            )
        return cls(
            value_oid, var, _copy(addr), call, _copy(const), items, members, merge,
            r.extra(), frozenset(r.absent),
        )

    def to_value(self) -> dict[str, Any]:
        out: dict[str, Any] = {"oid": self.oid}
        a = self.absent
        _put(out, a, "var", self.var)
        _put(out, a, "addr", _copy(self.addr))
        _put(out, a, "call", self.call)
        _put(out, a, "const", _copy(self.const))
        if "items" not in a:
            out["items"] = (
                None if self.items is None else {p: i.to_value() for p, i in self.items.items()}
            )
        if "members" not in a:
            out["members"] = None if self.members is None else list(self.members)
        if "merge" not in a:
            out["merge"] = None if self.merge is None else [m.to_value() for m in self.merge]
        out.update(_copy(self.extra))
        return out

    @property
    def has_const(self) -> bool:
        """Whether the record carries an inline constant (which may be ``null``)."""
        return "const" not in self.absent

    @property
    def is_constant(self) -> bool:
        """THE rule: a constant has an inline value and came from no variable, call or container.

        An input recorded by oid alone (a large constant stored as an object) is not a
        constant here: `Database.call_record` has always listed it among the inputs.
        """
        return self.has_const and not (
            self.var is not None
            or self.call is not None
            or self.items is not None
            or self.members is not None
            or self.merge is not None
        )

    @property
    def names_tree(self) -> bool:
        """Whether a container input's record says its tree was stored with the call: it has
        ``refs`` (the objects the tree names besides its items, as ``{"$ref": oid}``), which
        records written since 2026-12 have; a record from before may name a tree never stored."""
        return self.items is not None and "refs" in self.extra

    @property
    def is_aggregate(self) -> bool:
        """An input whose oid is a key over several records (``members`` or ``merge``)."""
        return self.members is not None or self.merge is not None

    def records(self) -> tuple[tuple[str, CallInput], ...]:
        """``("", self)`` and each item of a container input as ``(path, item)``."""
        return (("", self), *((p, i) for p, i in (self.items or {}).items()))

    def child_refs(self, what: str) -> Iterator[ChildRef]:
        """Every object this input references (see `CallRecord.child_refs`)."""
        if self.call:
            yield ChildRef(self.call, "call", what)
        for member in self.members or ():
            yield ChildRef(member, None, what)
        if not self.is_aggregate:
            # A saved input's value; for a constant, the oid of a stored non-scalar
            # (scalar constants are inline in the record and have no object).
            # A raw file (`PathInput`: its content hash) and a file to write (`PathOutput`:
            # the hash of its path) are keyed by oids that are never stored. A container of
            # inputs is stored as its tree since 2026-12: optional only in a record without
            # `refs` (written before, it may name a tree the store never had; its items are
            # named one by one below). A record with `refs` names a stored tree, which names
            # the arrays among its constants: lost, gc must refuse rather than delete them.
            yield ChildRef(self.oid, None, what, optional=self.has_const or "path" in self.extra
                           or "writes" in self.extra or (self.items is not None and not self.names_tree))
        for path, item in (self.items or {}).items():
            yield from item.child_refs(f"{what} item {path!r}")
        for i, part in enumerate(self.merge or ()):
            yield from part.child_refs(f"{what} merge part {i}")


@dataclass(frozen=True, slots=True)
class HelperInfo:
    """A project helper (or class) the function reaches: its identity, code and own deps."""

    identity: str | None
    code: str | None
    deps: tuple[tuple[Any, ...], ...] = ()
    extra: dict[str, Any] = field(default_factory=dict)
    absent: frozenset[str] = field(default=frozenset(), repr=False)

    @classmethod
    def from_value(cls, tree: Any, *, where: str = "helper", oid: str | None = None) -> HelperInfo:
        r = _Reader(tree, where, oid)
        identity = r.string("identity", nullable=True)
        code = r.string("code", nullable=True)
        deps = _deps(r, "deps", oid)
        return cls(identity, code, deps, r.extra(), frozenset(r.absent))

    def to_value(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        _put(out, self.absent, "identity", self.identity)
        _put(out, self.absent, "code", self.code)
        _put(out, self.absent, "deps", [list(_copy(list(d))) for d in self.deps])
        out.update(_copy(self.extra))
        return out


def _deps(r: _Reader, key: str, oid: str | None) -> tuple[tuple[Any, ...], ...]:
    deps = r.typed(key, list, "a list of [label, digest] pairs", default=[])
    if not all(isinstance(d, list) for d in deps):
        raise _fail(oid, f"{r.where}[{key!r}] holds an entry that is not a [label, digest] pair")
    return tuple(tuple(_copy(d)) for d in deps)


@dataclass(frozen=True, slots=True)
class FunctionInfo:
    """The function a call ran: names, identity, code oid, dependencies and helpers."""

    name: str
    module: str
    identity: str
    code: str | None = None
    has_source: bool | None = None
    version: str | None = None
    deps: tuple[tuple[Any, ...], ...] = ()
    note: str | None = None
    file: str | None = None
    helpers: dict[str, HelperInfo] = field(default_factory=dict)
    constants: dict[str, Any] = field(default_factory=dict)
    extra: dict[str, Any] = field(default_factory=dict)
    absent: frozenset[str] = field(default=frozenset(), repr=False)
    # a partial or a bound method: the identity of its code alone, without the bound
    # arguments or object (what `status` and `why` in another process can compare)
    code_identity: str | None = None
    # `file` relative to the project's root folder, when inside it: another checkout of the
    # project (a colleague's, a copied folder) reads its own copy of the script
    project_file: str | None = None
    # the id of the project that made the record (`Database.project_ids`): `project_file` is
    # resolved in this checkout only for a record of this project, not one imported from another
    project: str | None = None

    @classmethod
    def from_value(cls, tree: Any, *, oid: str | None = None) -> FunctionInfo:
        r = _Reader(tree, "function", oid)
        name = r.string("name", required=True)
        module = r.string("module", required=True)
        identity = r.string("identity", required=True)
        code = r.string("code", nullable=True)
        has_source = r.typed("has_source", bool, "a boolean", nullable=True)
        version = r.get("version")  # a pinned version: a string, but never refuse one
        deps = _deps(r, "deps", oid)
        note = r.get("note")
        file = r.string("file", nullable=True)
        helpers = r.typed("helpers", dict, "an object", default={})
        helpers = {
            label: HelperInfo.from_value(h, where=f"function.helpers[{label!r}]", oid=oid)
            for label, h in helpers.items()
        }
        constants = r.typed("constants", dict, "an object", default={})
        code_identity = r.string("code_identity", nullable=True)
        project_file = r.string("project_file", nullable=True)
        project = r.string("project", nullable=True)
        return cls(
            name, module, identity, code, has_source, _copy(version), deps, _copy(note), file,
            helpers, _copy(constants), r.extra(), frozenset(r.absent - {"code_identity", "project_file", "project"}),
            code_identity, project_file, project,
        )

    def to_value(self) -> dict[str, Any]:
        out: dict[str, Any] = {"name": self.name, "module": self.module, "identity": self.identity}
        a = self.absent
        _put(out, a, "code", self.code)
        _put(out, a, "has_source", self.has_source)
        _put(out, a, "version", _copy(self.version))
        _put(out, a, "deps", [list(_copy(list(d))) for d in self.deps])
        _put(out, a, "note", _copy(self.note))
        _put(out, a, "file", self.file)
        _put(out, a, "helpers", {label: h.to_value() for label, h in self.helpers.items()})
        _put(out, a, "constants", _copy(self.constants))
        if self.code_identity is not None:
            out["code_identity"] = self.code_identity
        if self.project_file is not None:
            out["project_file"] = self.project_file
        if self.project is not None:
            out["project"] = self.project
        out.update(_copy(self.extra))
        return out

    @property
    def has_helpers(self) -> bool:
        """Whether the record kept the helper tree (records from before it did not)."""
        return "helpers" not in self.absent

    def all_deps(self) -> tuple[tuple[Any, ...], ...]:
        """The function's own dependencies, then each helper's."""
        return (*self.deps, *(d for h in self.helpers.values() for d in h.deps))


# -- the record ------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class CallRecord:
    """One function call: function, arguments, outputs, parameters, environment, timing."""

    function: FunctionInfo
    arguments: dict[str, CallInput]
    outputs: tuple[str, ...]
    multi: bool | None = False
    params: dict[str, Any] = field(default_factory=dict)
    env: dict[str, Any] = field(default_factory=dict)
    started: str | None = None
    duration: float | None = None
    format: int = CALL_FORMAT
    extra: dict[str, Any] = field(default_factory=dict)
    absent: frozenset[str] = field(default=frozenset(), repr=False)

    @classmethod
    def from_value(cls, tree: Any, *, oid: str | None = None) -> CallRecord:
        """Parse a record's JSON tree; raises `CorruptRecordError` naming what is wrong."""
        r = _Reader(tree, "the record", oid)
        kind = r.get("type", required=True)
        if kind != "call":
            raise _fail(oid, f"its type is {kind!r}, not 'call'")
        fmt = r.typed("format", int, "an integer", required=True)
        if fmt != CALL_FORMAT:
            raise _fail(oid, f"it has format {fmt}; this scistack reads format {CALL_FORMAT}")
        function = FunctionInfo.from_value(r.get("function", required=True), oid=oid)
        arguments = r.typed("inputs", dict, "an object", required=True)
        arguments = {
            name: CallInput.from_value(item, where=f"inputs[{name!r}]", oid=oid)
            for name, item in arguments.items()
        }
        outputs = r.oid_list("outputs", required=True)
        multi = r.typed("multi", bool, "a boolean", nullable=True)
        params = r.typed("params", dict, "an object", default={})
        env = r.typed("env", dict, "an object", default={})
        git = env.get("git")
        if git is not None and not isinstance(git, dict):
            raise _fail(oid, f"env['git'] is {type(git).__name__}, expected an object")
        if isinstance(git, dict) and git.get("diff") is not None and not isinstance(git["diff"], str):
            raise _fail(oid, "env['git']['diff'] is not an oid string")
        started = r.string("started", nullable=True)
        duration = r.typed("duration", (int, float), "a number", nullable=True)
        return cls(
            function, arguments, outputs or (), multi, _copy(params), _copy(env), started,
            duration, fmt, r.extra(), frozenset(r.absent),
        )

    def to_value(self) -> dict[str, Any]:
        """The JSON tree to store (``dumps_canonical`` of it is the object's payload)."""
        return self._tree(self.function.to_value())

    def _tree(self, function: Any) -> dict[str, Any]:
        a = self.absent
        out: dict[str, Any] = {
            "type": "call",
            "format": self.format,
            "function": function,
            "inputs": {name: item.to_value() for name, item in self.arguments.items()},
            "outputs": list(self.outputs),
        }
        _put(out, a, "multi", self.multi)
        _put(out, a, "params", _copy(self.params))
        _put(out, a, "env", _copy(self.env))
        _put(out, a, "started", self.started)
        _put(out, a, "duration", self.duration)
        out.update(_copy(self.extra))
        return out

    def to_bytes(self) -> bytes:
        """The canonical payload of the ``call`` object: ``dumps_canonical(self.to_value())``,
        with the function's part encoded once per `FunctionInfo` (a run's records share one,
        `LineageFunction._function_info`) and put in at its place. Any value equal to the
        stand-in elsewhere in the record (it appears twice) takes the plain way."""
        text = dumps_canonical(self._tree(_STAND_IN))
        if text.count(_STAND_IN_TEXT) != 1:
            return dumps_canonical(self.to_value())
        return text.replace(_STAND_IN_TEXT, b'"function":' + _function_bytes(self.function))

    # -- what readers ask -------------------------------------------------------------------
    @property
    def inputs(self) -> dict[str, CallInput]:
        """The arguments that are not constants (variables, results, containers, aggregates)."""
        return {n: i for n, i in self.arguments.items() if not i.is_constant}

    @property
    def constants(self) -> dict[str, CallInput]:
        """The arguments that are constants (`CallInput.is_constant`); `.const` is the value."""
        return {n: i for n, i in self.arguments.items() if i.is_constant}

    @property
    def input_oids(self) -> dict[str, str]:
        """Every argument's oid by name: with the function identity, the call key."""
        return {name: item.oid for name, item in self.arguments.items()}

    @property
    def git(self) -> dict[str, Any]:
        """The recorded git state (commit, dirty, diff, untracked), or {}."""
        return self.env.get("git") or {}

    @property
    def git_diff(self) -> str | None:
        """The oid of the ``bytes`` object holding ``git diff HEAD`` (only when dirty)."""
        return self.git.get("diff")

    def child_refs(self, tree: Any = None) -> tuple[ChildRef, ...]:
        """Every object the record references, with its kind when known (what gc keeps).

        The function's code, each helper's code, the git diff, each output, each argument's
        value (its items, merge parts and aggregate members; optional for a constant: an
        inline one has no object), the calls that computed arguments, and every
        ``{"$ref": oid}`` anywhere in the record (inside constants, addresses, parameters).
        `tree`: the JSON tree to search for ``{"$ref": oid}``: the one the record was parsed
        from, if at hand (else `to_value()` is built: a third of gc's time per call record),
        or `{}` when the caller knows its text holds no `$ref`.
        """
        refs: list[ChildRef] = []
        fn = self.function
        if fn.code:
            refs.append(ChildRef(fn.code, "code", "code"))
        for label, helper in fn.helpers.items():
            if helper.code:
                refs.append(ChildRef(helper.code, "code", f"code of {label}", optional=True))
        if self.git_diff:
            refs.append(ChildRef(self.git_diff, "bytes", "git diff"))
        refs += [ChildRef(out, None, "output") for out in self.outputs]
        for name, item in self.arguments.items():
            refs += item.child_refs(f"input {name!r}")
        named = {ref.oid for ref in refs}
        refs += [ChildRef(o, None, "child", in_json=True)
                 for o in json_refs(self.to_value() if tree is None else tree) if o not in named]
        return tuple(refs)

    def child_oids(self) -> frozenset[str]:
        """The oids of `child_refs`: every object id the record references."""
        return frozenset(ref.oid for ref in self.child_refs())


def parse_call(payload: bytes | bytearray | memoryview, oid: str | None = None) -> CallRecord:
    """A `CallRecord` from a ``call`` object's payload."""
    return CallRecord.from_value(call_tree(payload, oid), oid=oid)


def call_tree(payload: bytes | bytearray | memoryview, oid: str | None = None) -> Any:
    """A ``call`` object's payload parsed as JSON (what `parse_call` reads)."""
    try:
        return json.loads(bytes(payload))
    except (ValueError, UnicodeDecodeError) as exc:
        raise CorruptObjectError(oid or "?", f"its call payload is not JSON ({exc})") from exc


def function_name_of(tree: Any, oid: str | None = None) -> str:
    """The function's name in a call record's JSON tree, reading only that (a column of many
    records' function names; `CallRecord.from_value` reads and checks the whole record)."""
    r = _Reader(tree, "the record", oid)
    if r.get("type", required=True) != "call":
        raise _fail(oid, f"its type is {tree.get('type')!r}, not 'call'")
    return _Reader(r.get("function", required=True), "the record's function", oid).string("name", required=True)


_STAND_IN = "\x00function\x00"  # where `CallRecord.to_bytes` puts the function's text
_STAND_IN_TEXT = b'"function":' + dumps_canonical(_STAND_IN)
_FUNCTION_BYTES: dict[int, tuple[FunctionInfo, bytes]] = {}  # id -> (the info, kept alive; its text)


def _function_bytes(info: FunctionInfo) -> bytes:
    """``dumps_canonical(info.to_value())``, remembered for the same object."""
    found = _FUNCTION_BYTES.get(id(info))
    if found is None or found[0] is not info:
        if len(_FUNCTION_BYTES) >= 256:
            _FUNCTION_BYTES.clear()
        found = _FUNCTION_BYTES[id(info)] = (info, dumps_canonical(info.to_value()))
    return found[1]


def read_call(store: ObjectStore, oid: str) -> CallRecord:
    """The call record `oid` from `store`.

    Raises
    ------
    ObjectNotFoundError
        The store does not hold it.
    CorruptObjectError
        Its bytes are damaged; `CorruptRecordError` when it is not a well-formed call record.
    """
    obj = store.get(oid)
    if obj.kind != "call":
        raise CorruptRecordError(oid, f"it is a {obj.kind} object, not a call record")
    return parse_call(obj.payload, oid)


def same_arguments(store: ObjectStore, a: str, b: str) -> bool:
    """Whether call records `a` and `b` name the same inputs from the same places (variable,
    address, the call that made each, the file read) and read the same files (by content):
    two records of one call key name the same values, but a value may have come from
    elsewhere (the same value at another address, another variable's, or made by another
    call), and a call run again because a file it read changed may return the same value
    (its value kept naming the old record, and so the file as it was: `status` called it
    stale on every later run, which said cached). True when either cannot be read."""
    try:
        first, second = read_call(store, a), read_call(store, b)
    except (ScistackError, LookupError):
        return True
    return first.arguments == second.arguments and _files_read(first) == _files_read(second)


def _files_read(record: CallRecord) -> set[tuple[Any, Any, Any]]:
    """The files a record says its call read, by kind, content and place: not their stat (it
    differs between two processes' records of one call). The place is the path relative to
    the project's folder when the record names one (`project_path`: two lab checkouts, or a
    moved project, read the same files at other absolute paths, and the second's save of the
    same value must not be a new version), else the absolute path: the same content read
    from another folder is another input (compared by file name only, a value computed in a
    second folder kept naming the first folder's record, and `status` called it stale for
    ever once that folder was gone)."""
    files = record.extra.get("files")
    if not isinstance(files, list):
        return set()
    return {(_place(f), f.get("kind", "file"), f.get("blake3")) for f in files if isinstance(f, dict)}


def _place(entry: dict) -> Any:
    """Where a recorded file was read: ("project", its path relative to the project's folder)
    when recorded, else ("path", the absolute path as recorded)."""
    rel = entry.get("project_path")
    return ("project", rel) if isinstance(rel, str) else ("path", entry.get("path"))


def read_splits(store: ObjectStore, oids: list[str]) -> list[list | None]:
    """The `split` field (fan-out labels, docs/format.md) of many call records, read in bulk:
    a fully cached `Split` run needs only this of each record, and parsing every record whole
    (one read each) cost ~0.16 ms a combination. None for a record without one, or that is
    missing, damaged or not a call record of this format (the caller then runs again)."""
    found: list[list | None] = []
    for obj in store.get_many(oids):
        split = None
        if obj is not None and not isinstance(obj, Exception) and obj.kind == "call":
            try:
                tree = json.loads(bytes(obj.payload))
            except (ValueError, UnicodeDecodeError):
                tree = None
            if isinstance(tree, dict) and tree.get("type") == "call" and tree.get("format") == CALL_FORMAT \
                    and isinstance(tree.get("split"), list):
                split = tree["split"]
        found.append(split)
    return found


@dataclass(frozen=True, slots=True)
class RunRecord:
    """A `for_each` run report as journalled (docs/format.md §2, the `run` entry): written by
    the engine and MATLAB's commit, read by `status` (failures) and gc (its items object)."""

    run_id: str | None
    function: str | None
    counts: dict[str, int]
    duration: float
    items: str | None                 # oid of the json object listing each combination
    dry_run: bool
    outputs: tuple[str, ...] | None   # None in runs journalled before outputs were recorded
    t: str
    extra: dict[str, Any] = field(default_factory=dict)

    _KEYS = ("op", "run_id", "function", "counts", "duration", "items", "dry_run", "outputs", "t")

    @classmethod
    def from_entry(cls, entry: dict[str, Any]) -> RunRecord:
        outputs = entry.get("outputs")
        return cls(entry.get("run_id"), entry.get("function"), dict(entry.get("counts") or {}),
                   float(entry.get("duration") or 0.0), entry.get("items"), bool(entry.get("dry_run")),
                   None if outputs is None else tuple(outputs), entry.get("t", ""),
                   {k: v for k, v in entry.items() if k not in cls._KEYS})

    def to_entry(self) -> dict[str, Any]:
        """The journal line's fields (canonical JSON sorts them)."""
        entry = {"op": "run", "run_id": self.run_id, "function": self.function, "counts": self.counts,
                 "duration": self.duration, "items": self.items, "dry_run": self.dry_run, "t": self.t,
                 **self.extra}
        if self.outputs is not None:
            entry["outputs"] = list(self.outputs)
        return entry
