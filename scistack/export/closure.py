"""The lineage closure of some values: what a bundle must hold to explain them, and no more.

From the chosen records, every call record that made them is read (`report.history.read_call`,
the reader `why` and `log --graph` use), and every input it names is followed to the record
that holds it, upstream to raw saves. The objects are then everything those records and call
records reach (`gc.walk_from`, the walk gc itself does): values and their chunks, call
records, code, constants, environment records. Unrelated values, other versions and other
branches of the pipeline are never visited.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from scistack.database import Database
from scistack.errors import BundleError, ScistackError
from scistack.gc import walk_from
from scistack.index import RefRecord, key_of
from scistack.report.history import CallInfo, read_call


@dataclass
class Closure:
    """Records (chosen first, then upstream), the calls that made them, the cache entries
    of those calls, and every object they reach."""

    chosen: list[RefRecord]
    records: list[RefRecord] = field(default_factory=list)
    calls: dict[str, CallInfo] = field(default_factory=dict)
    cache: list[dict[str, Any]] = field(default_factory=list)
    objects: set[str] = field(default_factory=set)


def lineage_closure(db: Database, chosen: list[RefRecord]) -> Closure:
    """The closure of `chosen` (raises BundleError naming a missing or damaged part)."""
    closure = Closure(list(chosen))
    seen: set[tuple[str, str, str, int]] = set()
    todo_records = list(chosen)
    todo_calls: list[str] = []
    while todo_records or todo_calls:
        while todo_records:
            record = todo_records.pop()
            slot = (record.var, record.addr_key, record.vkeys_key, record.version)
            if slot in seen:
                continue
            seen.add(slot)
            closure.records.append(record)
            if record.call:
                todo_calls.append(record.call)
        if todo_calls:
            call_oid = todo_calls.pop()
            if call_oid in closure.calls:
                continue
            info = _read(db, call_oid)
            closure.calls[call_oid] = info
            for item in info.inputs:
                todo_records += _holders(db, item.var, item.oid, item.addr)
                for member in item.members:
                    todo_records += _holders(db, item.var, member, None)
                for part in item.merge:
                    todo_records += _holders(db, part.get("var"), part.get("oid"), part.get("addr"))
                if item.call and not item.var:  # an earlier result passed on unsaved
                    todo_calls.append(item.call)
    closure.cache = _cache_entries(db, closure.calls)
    roots = [(r.oid, r.kind, f"{r.var} {r.addr}") for r in closure.records]
    roots += [(oid, "call", "a call in the closure") for oid in closure.calls]
    walk = walk_from(db.store, roots)
    if walk.missing or walk.corrupt:
        oid, why = next(iter({**walk.missing, **walk.corrupt}.items()))
        raise BundleError(f"cannot export: object {oid} ({why}) is missing or damaged; run "
                          "`scistack fsck` and repair the project first")
    closure.objects = walk.reachable
    return closure


def _read(db: Database, call_oid: str) -> CallInfo:
    try:
        return read_call(db, call_oid)
    except ScistackError as exc:
        raise BundleError(f"cannot export: the call record {call_oid} is unreadable ({exc}); run "
                          "`scistack fsck` first") from exc


def _holders(db: Database, var: str | None, oid: str | None, addr: dict[str, Any] | None) -> list[RefRecord]:
    """The records of `var` that hold `oid` (at `addr` when one is there: the input's own)."""
    if not var or not oid:
        return []
    found = [r for r in db.index.refs_to(oid) if r.var == var]
    if addr is not None:
        wanted = {k: v for k, v in addr.items() if k in db.schema_keys}
        exact = [r for r in found if key_of(r.addr) == key_of(wanted)]
        found = exact or found
    return found[-1:] if found else []


def _cache_entries(db: Database, calls: dict[str, CallInfo]) -> list[dict[str, Any]]:
    """The call-cache entries naming these call records: imported, a re-run is all hits."""
    entries = []
    for call_oid in calls:
        key = db.index.call_key_of(call_oid)
        entry = db.index.cached_call(key) if key else None
        if entry is not None and entry["call"] in calls:
            entries.append({"key": key, "call": entry["call"], "fn": entry.get("fn"),
                            "outs": list(entry.get("outs") or []), "multi": bool(entry.get("multi"))})
    return sorted({e["key"]: e for e in entries}.values(), key=lambda e: e["key"])
