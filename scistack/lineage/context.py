"""Where lineage lives: the current database's store and call cache, or this process's memory.

With no database configured, calls are cached and recorded in a `MemoryObjectStore` for the
life of the process. A result computed that way and saved once a database exists brings its
whole lineage along: the value, its call record and everything the record names (code, diff,
constants, upstream calls), and each call enters the database's call cache, so provenance,
`why` and later cache hits work as if it had been computed there.
"""

from __future__ import annotations

import warnings
from dataclasses import replace
from typing import Any

from scistack.address import shown_address
from scistack.database import Database, current_database
from scistack.errors import LineageError, ScistackError
from scistack.lineage.calls import BoundInput, key_from_oids
from scistack.lineage.facts import written_facts
from scistack.lineage.filecheck import cache_fn
from scistack.objects import MemoryObjectStore, ObjectStore
from scistack.objects.canonical_json import json_refs
from scistack.objects.codec import child_oids
from scistack.records import CallInput, parse_call


class _MemoryCache:
    """Where lineage goes with no database: a store and a call cache for this process."""

    def __init__(self) -> None:
        self.store: ObjectStore = MemoryObjectStore()
        self.calls: dict[str, dict[str, Any]] = {}
        self.root = None  # (no project folder: records name their source files absolutely)
        self.project = None
        self.db = None  # (no project reads the files: each at its recorded path)

    def lookup(self, key: str) -> dict[str, Any] | None:
        return self.calls.get(key)

    def record(
        self, key: str, call_oid: str, fn: str, outs: list[str], *, multi: bool = False,
        origins: str | None = None,
    ) -> None:
        self.calls[key] = {
            "call": call_oid,
            "fn": fn,
            "outs": outs,
            **({"multi": True} if multi else {}),
            **({"origins": origins} if origins is not None else {}),
        }


class _DatabaseCache:
    """The current database's store and call cache: made at every lineage call (holding the
    database from it would keep a closed one alive), so it takes no more than a hit uses."""

    __slots__ = ("db", "store")

    def __init__(self, db: Database) -> None:
        self.store = db.store
        self.db = db

    @property
    def root(self) -> Any:
        return self.db.root  # (call records name a script inside it relative to it)

    @property
    def project(self) -> Any:
        return self.db.records_project  # (and the project that made them beside it)

    def lookup(self, key: str) -> dict[str, Any] | None:
        return self.db.index.cached_call(key)

    def record(
        self, key: str, call_oid: str, fn: str, outs: list[str], *, multi: bool = False,
        origins: str | None = None,
    ) -> None:
        self.db.index.put_call(key, call_oid, fn, outs, multi=multi, origins=origins,
                               facts=written_facts(call_oid, self.db.schema_keys))


MEMORY = _MemoryCache()
_MISSING = object()


def lineage_context() -> _MemoryCache | _DatabaseCache:
    """The current database's store and cache, or the process's in-memory ones."""
    db = current_database()
    return _DatabaseCache(db) if db is not None else MEMORY


def copy_into_database(db: Database, result: Any) -> None:
    """Copy a result computed in memory (and its whole lineage) into `db`, unless it is there.
    "There" is asked with `freshen` (young again, as the put it replaces; a lab's puts this
    machine's cached copy back in the bucket), never `contains`, which a lab's cache answers
    first: a value the bucket lost was named with no copy there."""
    store = db.store
    if store.freshen(result.oid) and store.freshen(result.call):
        return
    _copy_value(MEMORY.store, store, result.oid, result.data)
    _copy_call(MEMORY.store, db, result.call, set())


def copy_lineage(source: ObjectStore, db: Database, call_oid: str) -> None:
    """Copy call record `call_oid` and its whole lineage from another project's store into
    `db` (a value loaded there, saved here); nothing when `source` cannot be read any more."""
    try:
        _copy_call(source, db, call_oid, set(), strict=False)
    except (ScistackError, OSError):
        pass


def bring_inputs(store: ObjectStore, inputs: dict[str, BoundInput]) -> dict[str, BoundInput]:
    """Make what a new call record names of its inputs be in `store`, and return the inputs
    it should name. Inputs computed in memory before a database was configured bring their
    lineage along. A value in hand whose object a gc collected since (its records deleted,
    or a result never saved) is put again from memory; a call record that made it, gone
    from the store, is then not named (with a warning), as a save of such a value does.
    Loaded values and results inside a list, tuple or dict argument are treated alike."""
    if store is MEMORY.store:
        return inputs
    named = inputs
    db = current_database()
    for name, b in inputs.items():
        brought = _bring(store, db, name, b, _CALLER_DEPTH)
        if brought is not b:
            named = dict(named) if named is inputs else named
            named[name] = brought
    return named


_CALLER_DEPTH = 6  # _bring, bring_inputs, record_call, run, __call__: the warning names the caller


def _bring(store: ObjectStore, db: Database | None, name: str, b: BoundInput, depth: int) -> BoundInput:
    """`bring_inputs` of one input: `b`, or a copy that names no collected call record."""
    record = b.record
    if b.container is not None:
        items = {}
        for path, item in b.container.items.items():  # (a loop: a comprehension's frame would
            items[path] = _bring(store, db, path, item, depth + 1)  # move the warning)
        if any(item is not b.container.items[path] for path, item in items.items()):
            b = replace(b, record={**record, "items": {path: item.record for path, item in items.items()}},
                        container=replace(b.container, items=items))
        return b
    if not ("var" in record or "call" in record):
        return b
    call = record.get("call")
    if call and not _bring_from_memory(store, db, record):
        warnings.warn(
            f"{name}: the call record that made this input ({call[:12]}) was collected by gc (no "
            "saved value named it any more), so the new call names the input without that "
            "lineage; compute the input again (and save it) to keep its lineage", stacklevel=depth)
        b = replace(b, record={k: v for k, v in record.items() if k != "call"})
    if b.value is not None and not store.freshen(b.oid):  # (for_each binds no value: it
        store.put_value(b.value)  # reads inputs afresh) its oid: the hash of its canonical bytes
    return b


def _bring_from_memory(store: ObjectStore, db: Database | None, record: dict[str, Any]) -> bool:
    """Whether `store` has the call record that made this input, after copying it (with its
    value and lineage) from memory if it was computed there."""
    call = record.get("call")
    if not call or store.freshen(call):  # (not `contains`: see `copy_into_database`)
        return True
    if not MEMORY.store.contains(call) or db is None or db.store is not store:
        return False
    _copy_value(MEMORY.store, store, record["oid"])
    _copy_call(MEMORY.store, db, call, set())
    return True


def _copy_call(source: ObjectStore, db: Database, call_oid: str, seen: set[str], *, strict: bool = True) -> None:
    """Copy call record `call_oid` from `source` into `db` with its code, inputs, outputs and
    upstream calls, and enter it in `db`'s call cache. `strict`: a loaded value or earlier
    result it names that is neither in `db` nor in `source` is refused (`LineageError`), as
    a result computed in memory from another project's value would name an object `db`
    lacks; `copy_lineage` (from another project's store) copies what is left there."""
    if call_oid in seen or not source.contains(call_oid):
        return
    seen.add(call_oid)
    raw = source.get(call_oid).payload
    call = parse_call(raw, call_oid)
    fn = call.function
    code_oids = [fn.code] + [h.code for h in fn.helpers.values()]
    for oid in [*code_oids, call.git_diff]:
        if oid and source.contains(oid):
            obj = source.get(oid)
            db.store.put(obj.kind, obj.payload)
    for name, item in call.arguments.items():
        for path, record in item.records():
            if record.items is not None:
                _copy_tree(source, db.store, record)
            elif not _copy_value(source, db.store, record.oid) and strict and _has_object(record):
                raise _not_copied(db, fn.name, path or name, record)
            if record.call:
                _copy_call(source, db, record.call, seen, strict=strict)
    for oid in call.outputs:
        _copy_value(source, db.store, oid)
    db.store.put("call", raw)
    key = key_from_oids(fn.identity, call.input_oids)
    if db.index.cached_call(key) is None:
        files = call.extra.get("files") or ()
        db.index.put_call(
            key, call_oid, cache_fn(fn.identity, files, split=bool(call.extra.get("split"))), list(call.outputs),
            multi=bool(call.multi)
        )


def _copy_value(source: ObjectStore, target: ObjectStore, oid: str, value: Any = _MISSING) -> bool:
    """Copy one value object (children included) unless the target has it already; whether
    the target has it now."""
    if target.freshen(oid):
        return True
    if source.contains(oid):
        target.put_value(source.get_value(oid))
    elif value is not _MISSING:
        target.put_value(value)
    else:
        return False
    return True


def _copy_tree(source: ObjectStore, target: ObjectStore, record: CallInput) -> None:
    """Copy a list or dict argument's stored tree as it is stored, with the objects it names
    besides its items (its arrays: the record's `refs`) first. Never decoded: it names its
    items too, and a loaded item is not in `source` (in memory), only in the project it came
    from; the items are copied (or found missing) one by one by the caller. A record written
    before trees were stored (no `refs`) may name one `source` never had: nothing to copy."""
    if target.freshen(record.oid) or not source.contains(record.oid):
        return
    obj = source.get(record.oid)
    items = {item.oid for item in record.items.values()}
    children = [oid for oid, _ in child_oids(obj.kind, obj.payload) if oid not in items]
    children += json_refs(record.extra.get("refs") or [])
    for oid in dict.fromkeys(children):
        _copy_value(source, target, oid)
    target.put(obj.kind, obj.payload)


def _has_object(record: CallInput) -> bool:
    """Whether an input record names a value object that must be in the store: a loaded value
    or an earlier result (an aggregate's oid is a key, never stored)."""
    return (record.var is not None or record.call is not None) and not record.is_aggregate


def _not_copied(db: Database, fn: str, name: str, record: CallInput) -> LineageError:
    """The error for an input of a call computed elsewhere (in memory, say) whose value is
    neither in `db` nor where the call's lineage is copied from."""
    if record.var is not None:
        addr = shown_address(record.addr or {})
        what, how = f"the {record.var} value at {addr or 'its address'}", f"{record.var}.save(value, ...)"
    else:
        what, how = f"the earlier result of call {record.call[:12]}", "save that result here"
    return LineageError(
        f"{fn}: input {name!r} ({what}, object {record.oid[:12]}) is not in {db.root or 'this project'} "
        "nor in memory: it was loaded from another project (or deleted here and collected since), "
        "so the lineage of a result computed from it with no database configured cannot be "
        f"copied into this project. Save that value in this project first ({how}: the same "
        "data gets the same object id), then save (or use) the result again")
