"""The lineage closure of a selection: what a bundle must hold to explain its values.

Starting from the selected saved values, every call that made them is read with the one
call-record reader (`scistack.records.read_call`: its `arguments`, `records()` and
`child_refs()` are what gc and fsck already trust), then every input's own call, down to
raw values. The closure holds those call records, every object they name (code, git diff,
constants, values and their children), the saved records (refs) of every value involved,
and the call-cache entries of the calls; nothing else in the project.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any

from scistack.address import shown_address
from scistack.database import Database
from scistack.errors import ExportError, ScistackError
from scistack.index import RefRecord
from scistack.lineage.calls import raw_file_here, raw_places, record_call_key, same_raw_names
from scistack.objects.codec import child_oids
from scistack.records import CallRecord, read_call
from scistack.selection import select_records


@dataclass
class Closure:
    """Refs, call records, cache entries and objects of a selection (all keyed by oid)."""

    selected: list[RefRecord]
    refs: list[RefRecord] = field(default_factory=list)
    calls: dict[str, CallRecord] = field(default_factory=dict)
    cache: list[dict[str, Any]] = field(default_factory=list)
    objects: dict[str, str] = field(default_factory=dict)  # oid -> kind
    # (path as shown, oid) -> where a raw file is now, as a later record of its call says
    # (`lineage.calls.read_at`: an imported bundle's put back with raw_to, a moved folder)
    raw_now: dict[tuple[str, str], str] = field(default_factory=dict)


_ABSENT = object()


def select(db: Database, variables: list[str], address: dict[str, Any], *,
           all_current: bool = False) -> list[RefRecord]:
    """The saved values a user asked for: the current ones of each variable (at `address`), or
    with `version=N` in `address` its N-th version there (as `load(..., version=N)`). A
    variable named twice is selected once."""
    if not variables:
        raise ExportError("nothing to export: name a variable (or --all-current VAR...)")
    if not all_current and len(variables) != 1:
        raise ExportError("export takes one variable and address filters; "
                          "use --all-current VAR... for several variables")
    address = dict(address)
    version = address.pop("version", None)
    if version is not None and all_current:
        raise ExportError(f"--all-current exports current values, not version={version!r}; export "
                          f"one variable at that version: db.export({variables[0]}, version={version!r}, "
                          "..., to=...) or `scistack export VAR --version N ...`")
    chosen: list[RefRecord] = []
    for var in dict.fromkeys(variables):  # (in the order named)
        chosen += select_records(db, var, dict(address), version=version)
    if not chosen:
        raise ExportError(f"nothing matches {variables} at {shown_address(dict(address))}: nothing to export")
    return chosen


def closure(db: Database, selected: list[RefRecord]) -> Closure:
    """Everything upstream of `selected`, and nothing unrelated."""
    out = Closure(selected)
    seen_refs: set[tuple[str, str, str, int]] = set()
    pending_calls: list[str] = []

    def add_ref(record: RefRecord) -> None:
        key = (record.var, record.addr_key, record.vkeys_key, record.version)
        if key in seen_refs:
            return
        seen_refs.add(key)
        out.refs.append(record)
        _add_value(db, out, record.oid, record.kind)
        if record.call:
            pending_calls.append(record.call)

    def add_saved(oids: set[str], var: str | None, addr: dict | None, call: str | None, *,
                  below: bool = False) -> None:
        """The saved records of input values: their variable at their address (at or below
        the address, for the members of an aggregate)."""
        # by variable and address (indexed); `refs_to` scans every ref: only when no variable
        found = (db.index.select(var, addr or {}, {}, {}, all_versions=True) if var is not None
                 else [r for oid in oids for r in db.index.refs_to(oid)])
        for record in found:
            if record.oid not in oids or (var is not None and record.var != var):
                continue
            if addr is not None and (any(record.addr.get(k, _ABSENT) != v for k, v in addr.items())
                                     if below else record.addr != addr):
                continue
            if call is None or record.call in (None, call):
                add_ref(record)

    for record in selected:
        add_ref(record)
    twins: dict[str, dict[str, Any]] = {}  # call key -> the entry naming a twin's own record
    while pending_calls:
        call_oid = pending_calls.pop()
        if call_oid in out.calls:
            continue
        call = read_call(db.store, call_oid)
        out.calls[call_oid] = call
        out.objects[call_oid] = "call"
        for ref in call.child_refs():
            if ref.kind == "call":
                pending_calls.append(ref.oid)
            elif db.store.contains(ref.oid):
                _add_value(db, out, ref.oid, ref.kind)
            elif not ref.optional:
                db.store.get(ref.oid)  # raises ObjectNotFoundError naming the oid
        for item in call.arguments.values():
            for _, part in item.records():
                if part.members:
                    add_saved(set(part.members), part.var, part.addr, None, below=True)
                elif not part.is_constant and part.var and part.merge is None:
                    add_saved({part.oid}, part.var, part.addr, part.call)
                for merged in part.merge or ():
                    if merged.var:
                        add_saved({merged.oid}, merged.var, merged.addr, merged.call)
                    if merged.call:
                        pending_calls.append(merged.call)
        # (made again only for a record that read raw files: a twin's own, which the cache
        # never named, engine's `_takes_entry`; nothing else is left out)
        key = record_call_key(db.index, call_oid, lambda: call if raw_places(call) else None)
        entry = db.index.cached_call(key) if key else None
        if entry is not None and entry.get("call") != call_oid and _read_later(db, call, entry, out):
            # (the refs name this record, the cache a later one that read the raw files
            # elsewhere: the entry is exported naming this one, which the bundle holds; an
            # import with raw_to records it again where it puts them)
            out.cache.append({"key": key, "call": call_oid, "fn": entry.get("fn"), "outs": entry["outs"],
                              "multi": bool(entry.get("multi"))})
        elif entry is not None and entry.get("call") != call_oid and list(call.outputs) == list(entry["outs"]):
            # (another record of the same call with the same outputs: two processes or machines
            # that ran the call at once, both missing the cache; the refs kept the first record,
            # the same value saved again writing nothing, and the cache names the one journalled
            # last. Or a twin's own record: raw files with the same bytes as the entry's at
            # another address (other shown paths, so not `_read_later`), which a run named its
            # ref with, the entry's files still there (engine's `_takes_entry`). The entry is
            # exported naming the refs' record, which the bundle holds, unless it holds the
            # entry's own: the importer had no entry and computed it again)
            twins.setdefault(key, {"key": key, "call": call_oid, "fn": entry.get("fn"),
                                   "outs": list(call.outputs), "multi": bool(entry.get("multi"))})
        elif entry is not None and entry.get("call") == call_oid:
            # (`origins`: a hit in the importing project then need not read the record to know
            # that it names the inputs as they are there too: the same variables and addresses)
            out.cache.append({"key": key, **{k: entry[k] for k in ("call", "fn", "outs") if k in entry},
                              **({"origins": entry["origins"]} if entry.get("origins") else {}),
                              "multi": bool(entry.get("multi"))})
    held = {entry["key"] for entry in out.cache}
    out.cache += [entry for key, entry in twins.items() if key not in held]
    return out


def _read_later(db: Database, call: CallRecord, entry: dict[str, Any], out: Closure) -> bool:
    """Whether the cache entry's record is a later record of `call` that read its raw files
    under the same shown paths elsewhere (`same_raw_names`, as `status` and `why` take it);
    then where it read them is kept in `out.raw_now`."""
    try:
        later = read_call(db.store, entry["call"])
    except ScistackError:
        return False
    if not same_raw_names(raw_places(call), raw_places(later)):
        return False
    for item in later.arguments.values():
        for _, part in item.records():
            if "path" in part.extra and part.extra.get("file"):
                out.raw_now[(str(part.extra["path"]), part.oid)] = str(part.extra["file"])
    return True


def raw_files(found: Closure, db: Database | None = None) -> list[dict[str, str]]:
    """The raw files the closure's calls read (`PathInput`s): where each was read, as shown
    (`raw/3/s_pre.csv`) and as an absolute path (`db`'s checkout's: where it holds a file its
    project's record names by its path in the project, `raw_file_here`; another lab
    machine's record names that machine's path), and the oid of its content then; once each."""
    seen: dict[tuple[str, str], dict[str, str]] = {}
    for call in found.calls.values():
        for item in call.arguments.values():
            for _, part in item.records():
                if "path" in part.extra:
                    file = str(part.extra.get("file") or "") if db is None else \
                        raw_file_here(part.extra, call, db.root, db.project_ids)
                    now = found.raw_now.get((str(part.extra["path"]), part.oid))
                    if now is not None and not os.path.isfile(file):
                        file = now  # (the later record's place: the record's is gone)
                    entry = {"path": str(part.extra["path"]), "file": file, "oid": part.oid}
                    seen.setdefault((entry["path"], part.oid), entry)
    return sorted(seen.values(), key=lambda e: (e["path"], e["oid"]))


def _add_value(db: Database, out: Closure, root: str, kind: str | None) -> None:
    """A value's object and all its children (chunks, container items)."""
    stack = [(root, kind)]
    while stack:
        oid, kind = stack.pop()
        if oid in out.objects:
            continue
        obj = db.store.get(oid)
        out.objects[oid] = obj.kind
        if obj.kind in ("json", "chunked"):
            stack.extend((child, None) for child, _ in child_oids(obj.kind, obj.payload))
