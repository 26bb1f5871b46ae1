"""What the `scistack` commands ask of a project: history, lineage, listings, removal.

Every function here takes an open `Database`, returns plain data (dataclasses, lists) and
never prints: `scistack.cli` renders it as text or JSON. Refs are read through the index's
verbs, call records from the object store; values are loaded only by `show`.
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass, field
from pathlib import Path
from collections.abc import Iterator
from typing import Any

import numpy as np

from scistack.address import shown_address
from scistack.lineage.calls import raw_file_here
from scistack.lineage.facts import call_facts
from scistack.lineage.filecheck import note_record, reads_files
from scistack.database import ENV_VAR, Database, current_database
from scistack.htmlrepr import ordered
from scistack.errors import InvalidOidError, ObjectNotFoundError, UnknownMetadataKeyError, VariableNotFoundError
from scistack.objects.chunked import describe_manifest
from scistack.objects.codec import child_oids
from scistack.selection import ambiguous_error, many_current, select_records
from scistack.index import RefRecord
from scistack.objects.canonical_json import from_tree
from scistack.objects.oid import is_valid_oid
from scistack.records import read_call as read_call_record

SHORT = 12


def open_database(path: str | os.PathLike | None = None) -> Database:
    """The project at `path` (its .duckdb file, or a folder in it), or the one found upward.

    The current database (`configure_database`) is reused when it is that project: one
    process should hold one `Database` per project.
    """
    current = current_database()
    if current is not None and _is_project(current, path or os.environ.get(ENV_VAR) or os.getcwd()):
        return current
    if path is None:
        return Database.discover()
    target = Path(path)
    if target.is_dir():
        saved = os.environ.pop("SCISTACK_DB", None)
        try:
            return Database.discover(target)
        finally:
            if saved is not None:
                os.environ["SCISTACK_DB"] = saved
    return Database(target)


def _is_project(db: Database, path: str | os.PathLike) -> bool:
    target = Path(path).resolve()
    if not target.is_dir():
        return target == db.path
    for folder in (target, *target.parents):
        if (folder / ".scistack" / "config.json").is_file():
            return folder == db.root
    return False


# -- call records ------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class InputInfo:
    """One input of a call: a saved value (var@oid), an earlier result, or an aggregate."""

    name: str
    var: str | None
    oid: str
    addr: dict[str, Any]
    call: str | None
    members: tuple[str, ...] = ()
    merge: tuple[dict[str, Any], ...] = ()  # each member's record: var, oid, addr, call
    raw_file: tuple[str, str] | None = None  # a PathInput: (path as shown, absolute path)


@dataclass(frozen=True, slots=True)
class CallInfo:
    """The parts of a call record that history shows."""

    oid: str
    function: str
    module: str
    identity: str
    code: str | None
    constants: dict[str, Any]
    inputs: tuple[InputInfo, ...]
    git_commit: str | None
    git_dirty: bool | None
    git_diff: str | None
    started: str
    duration: float
    python: str | None
    host: str | None
    code_identity: str | None = None  # a partial or bound method: its function alone
    runtime: str | None = None  # what ran it: "Python 3.11.7", "Octave 7.3.0", "MATLAB 9.14..."


def read_call(db: Database, call_oid: str) -> CallInfo:
    """Parse the call record `call_oid` (raises if it is missing or corrupt)."""
    record = read_call_record(db.store, call_oid)
    note_record(call_oid, record)
    fn = record.function
    inputs = [
        InputInfo(
            name,
            item.var,
            item.oid,
            ordered(dict(_decoded(item.addr) or {}), db.schema_keys),
            item.call,
            tuple(item.members or ()),
            tuple(_decoded(m.to_value()) for m in item.merge or ()),
            (str(item.extra["path"]), raw_file_here(item.extra, record, db.root, db.project_ids))
            if "path" in item.extra else None,
        )
        for name, item in sorted(record.inputs.items())
    ]
    constants = {name: _decoded(item.const) for name, item in sorted(record.constants.items())}
    env = _decoded(record.env)
    git = env.get("git") or {}
    return CallInfo(
        call_oid,
        fn.name,
        fn.module,
        fn.identity,
        fn.code,
        constants,
        tuple(inputs),
        git.get("commit"),
        git.get("dirty"),
        git.get("diff"),
        record.started or "",
        record.duration or 0.0,
        env.get("python"),
        env.get("host"),
        fn.code_identity,
        _runtime(env),
    )


def _runtime(env: dict[str, Any]) -> str | None:
    """The language and version a call record's env names (a MATLAB client's call has no
    Python version: `octave` or `matlab` holds its own)."""
    for key, name in (("octave", "Octave"), ("matlab", "MATLAB"), ("python", "Python")):
        if isinstance(env.get(key), str):
            return f"{name} {env[key]}"
    return None


def _decoded(tree: Any) -> Any:
    return from_tree(tree, lambda oid: oid)


class CallReader:
    """Reads call records once per command (a missing one is remembered as None)."""

    def __init__(self, db: Database) -> None:
        self.db = db
        self._cache: dict[str, CallInfo | None] = {}

    def prime(self, call_oid: str, info: CallInfo) -> None:
        """Know a call record's parts without reading it (from facts the index keeps)."""
        self._cache.setdefault(call_oid, info)

    def get(self, call_oid: str | None) -> CallInfo | None:
        if call_oid is None:
            return None
        if call_oid not in self._cache:
            try:
                self._cache[call_oid] = read_call(self.db, call_oid)
            except LookupError:
                self._cache[call_oid] = None
        return self._cache[call_oid]


def learn_calls(db: Database, judging: Any, var: str, *, since: int = -1) -> bool:
    """Parse the call records of `var` that the index has no facts for yet (once ever; a run
    hands in the facts of the records it writes): `lineage.facts.call_facts`. With `since`,
    only those first named after the variable's change count was that. True when every one
    of them has its facts now (none is missing)."""
    facts, missing = [], False
    for call_oid in judging.unlearned_calls(var, since):
        try:
            record = read_call_record(db.store, call_oid)
        except LookupError:
            missing = True  # judged "unknown" where it is named
            continue
        note_record(call_oid, record)
        facts.append((call_oid, *call_facts(record, db.schema_keys, reads_files=reads_files(db.store, call_oid))))
    if facts:
        judging.learn_calls(facts)
    return not missing


def values_read(item: InputInfo) -> Iterator[tuple[str, str]]:
    """(variable, oid) of every saved value an input gave its call: itself, an aggregate's
    members, each part of a merge (a part may be an aggregate itself)."""
    if item.merge:
        for part in item.merge:
            for oid in part.get("members") or (part.get("oid"),):
                yield part.get("var"), oid
    elif item.var is not None:
        for oid in item.members or (item.oid,):
            yield item.var, oid


# -- log ---------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class LogEntry:
    """One saved version of a value, as `scistack log` shows it."""

    var: str
    addr: dict[str, Any]
    vkeys: dict[str, Any]
    version: int
    oid: str
    kind: str
    summary: str
    created_at: str
    current: bool
    call: CallInfo | None
    call_oid: str | None


def select(
    db: Database,
    var: str,
    *,
    all_versions: bool = False,
    version: int | None = None,
    **metadata: Any,
) -> list[RefRecord]:
    """Records of `var` matching schema keys, version keys or lineage parameters."""
    return select_records(db, var, metadata, version=version, all_versions=all_versions)


def _newest_first(db: Database, var: str, n: int | None, address: dict[str, Any]) -> list[RefRecord]:
    """Live versions of `var` at `address`, newest first; with `n` and no address, only the
    newest `n` are read (one indexed query however large the project)."""
    if n and not address:
        records = db.index.newest(var, n)
        if records:
            return records
    records = select(db, var, all_versions=True, **address)
    records.sort(key=lambda r: (r.created_at, r.version), reverse=True)
    return records


def _newest_of_every(db: Database, n: int | None, address: dict[str, Any]) -> list[RefRecord]:
    """Live versions of every variable at `address`, newest first: each variable's newest `n`
    (one indexed query each), merged. A variable with nothing there (or without a key asked
    for: a lineage parameter of another step) is left out; none with anything is an error."""
    merged: list[RefRecord] = []
    variables = db.index.variables()
    unknown: list[UnknownMetadataKeyError] = []
    for var in variables:
        try:
            merged += _newest_first(db, var, n, address)
        except UnknownMetadataKeyError as exc:
            unknown.append(exc)
        except VariableNotFoundError:
            continue
    if not merged and unknown and len(unknown) == len(variables):
        raise unknown[0]  # a key no variable has (a typo): its error names the keys there are
    if not merged and address:
        query = shown_address(address)
        raise VariableNotFoundError(f"no variable has a record matching {query} (variables: "
                                    f"{', '.join(variables) or 'none'}); see `scistack status`")
    merged.sort(key=lambda r: (r.created_at, r.version), reverse=True)
    return merged


def log_entries(db: Database, var: str | None, *, n: int | None = None, **address: Any) -> list[LogEntry]:
    """Every saved version of `var` at `address`, newest first (at most `n`); with `var` None,
    of every variable: what the project saved lately."""
    records = _newest_first(db, var, n, address) if var is not None else _newest_of_every(db, n, address)
    calls = CallReader(db)
    out = []
    for record in records[:n] if n else records:
        current = db.index.current_at(record.var, record.addr_key, record.vkeys_key)
        out.append(
            LogEntry(
                record.var,
                ordered(record.addr, db.schema_keys),  # as the table shows it (the record's: sorted)
                record.vkeys,
                record.version,
                record.oid,
                record.kind,
                record.summary,
                record.created_at,
                current is not None and current.version == record.version,
                calls.get(record.call),
                record.call,
            )
        )
    return out


# -- lineage graph -----------------------------------------------------------------------
@dataclass(slots=True)
class LineageNode:
    """A value in a lineage tree: who made it from what, down to raw inputs."""

    var: str | None
    oid: str
    addr: dict[str, Any]
    param: str | None = None  # the input name under its parent
    call: CallInfo | None = None
    note: str = ""  # raw, constant, aggregate of N, shown above, missing record
    children: list[LineageNode] = field(default_factory=list)


def lineage_graph(
    db: Database, record: RefRecord | LogEntry, *, max_depth: int = 50
) -> LineageNode:
    """The upstream lineage tree of a record; a subtree already shown is not repeated."""
    calls, expanded = CallReader(db), set()
    root = LineageNode(record.var, record.oid, ordered(record.addr, db.schema_keys))
    stack = [(root, record.call_oid if isinstance(record, LogEntry) else record.call, 0)]
    while stack:
        node, call_oid, depth = stack.pop()
        if call_oid is None:  # a saved value, or an array constant (stored by oid, no variable)
            node.note = node.note or ("constant" if node.var is None and node.param else "raw")
            continue
        if call_oid in expanded:
            node.note = "shown above"
            continue
        expanded.add(call_oid)
        node.call = calls.get(call_oid)
        if node.call is None:
            node.note = f"call record {call_oid[:SHORT]} missing"
            continue
        if depth >= max_depth:
            node.note = "deeper lineage not shown"
            continue
        for item in node.call.inputs:
            child = LineageNode(item.var, item.oid, item.addr, item.name)
            if item.members:
                child.note = f"aggregate of {len(item.members)} records"
            elif item.merge:
                child.note = f"merge of {' + '.join(str(m.get('var', '?')) for m in item.merge)}"
            elif item.raw_file:  # a PathInput: the file it read
                child.note = f"file {item.raw_file[0]}"
            node.children.append(child)
            stack.append((child, item.call, depth + 1))
    return root


# -- ls ----------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class VariableSummary:
    """A variable in `scistack ls`."""

    name: str
    values: int  # current records (one per address and version-key variant)
    versions: int  # live records, every version
    size_bytes: int  # on disk, each object counted once (children of containers too)
    last_change: str


def list_variables(db: Database) -> list[VariableSummary]:
    """Every variable with live records."""
    return [VariableSummary(var, current, versions, _stored_bytes(db, var), last)
            for var, current, versions, last in db.index.summaries()]


def _stored_bytes(db: Database, var: str) -> int:
    """Bytes the variable's distinct objects take on disk, each object once (children of
    containers too: a chunk shared by versions that differ in one chunk counts once): summed
    at its first listing, then followed by what changed (an object measured once is
    remembered, with its parts), so a listing after one more save measures one object, not
    the variable."""
    running = db.index.byte_total(var)
    if running is None:
        db.index.follow_bytes(var)
        running = db.index.byte_total(var)
    total, joined = running
    if not joined:
        return total
    measured = _measure(db, [(oid, kind) for oid, kind, size in joined if size is None])
    total = db.index.settle_byte_total(var, measured)
    return _stored_bytes(db, var) if total is None else total  # (the fold began anew meanwhile)


def _measure(db: Database, objects: list[tuple[str, str]]) -> dict[str, tuple[int, frozenset[str]]]:
    """Each (oid, kind) and every object it holds at any depth: oid -> (own bytes on disk,
    the objects it holds). Childless ones in bulk."""
    leaves = db.store.leaf_sizes([oid for oid, _ in objects])
    out: dict[str, tuple[int, frozenset[str]]] = {}
    for (oid, kind), size in zip(objects, leaves):
        if size is not None:
            out[oid] = (size, frozenset())
        elif _parts_of(db, oid, kind, out) is None:
            out[oid] = (0, frozenset())  # (missing: counts nothing, as before; fsck names it)
    return out


def _parts_of(db: Database, oid: str, kind: str | None, out: dict[str, tuple[int, frozenset[str]]]
              ) -> frozenset[str] | None:
    """The objects `oid` holds at any depth, measuring it and them into `out`; None when it
    is missing. (Depth is the nesting of containers: a json tree of chunked arrays is 3.)"""
    if oid in out:
        return out[oid][1]
    try:
        own = db.store.size_of(oid)
    except LookupError:
        return None
    kind = kind or db.store.kind_of(oid)
    held: set[str] = set()
    if kind in ("json", "chunked"):
        obj = db.store.get(oid)
        for child, _ in child_oids(obj.kind, obj.payload):
            if child not in held and (below := _parts_of(db, child, None, out)) is not None:
                held.add(child)
                held |= below
    out[oid] = (own, frozenset(held))
    return out[oid][1]


# -- show --------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class ShowResult:
    """An object and what names it: its value (summarised), refs and call record."""

    oid: str
    kind: str
    size_bytes: int
    value: dict[str, Any]
    refs: list[RefRecord]
    call: CallInfo | None


def resolve_oid(db: Database, text: str) -> str:
    """A full oid from an oid or a unique prefix of at least 4 hex characters."""
    if is_valid_oid(text):
        return text
    if len(text) < 4 or any(c not in "0123456789abcdef" for c in text):
        raise InvalidOidError(
            f"{text!r} is neither a variable with records nor an object id "
            "(at least 4 lowercase hex characters)"
        )
    found = db.store.oids_with_prefix(text)
    if not found:
        raise ObjectNotFoundError(
            text, "no object id starts with it; `scistack log VAR` prints ids"
        )
    if len(found) > 1:
        raise InvalidOidError(
            f"object id prefix {text!r} is ambiguous: it starts {len(found)} ids "
            f"({', '.join(o[:SHORT] for o in found[:4])}...); give more characters"
        )
    return found[0]


def show(db: Database, target: str, *, version: int | None = None, **address: Any) -> ShowResult:
    """Show an object by (prefix of) oid, with every name it has; or the value of variable
    `target` at `address`, with the versions there that hold it (every name of an object is
    a scan of every ref: 0.17 s and 0.3 GB of the fold's pages at 1M refs)."""
    if target in db.index.variables() or address or version is not None:
        many = many_current(db, target, address, version)
        records = [] if many else select(db, target, version=version, **address)
        if len(records) > 1 and len({r.addr_key for r in records}) == 1:  # variants of one address
            raise ambiguous_error(target, records, cli=True, schema_keys=db.schema_keys)
        if len(records) != 1:
            raise VariableNotFoundError(
                f"{target}: {many or len(records)} records match {address or 'everything'}; give the full "
                f"address ({', '.join('--' + k for k in db.schema_keys)}) or an oid"
            )
        oid = records[0].oid
        refs = [r for r in db.index.versions_at(target, records[0].addr_key)
                if r.oid == oid and r.vkeys_key == records[0].vkeys_key]
    else:
        oid = resolve_oid(db, target)
        refs = db.index.refs_to(oid)
    obj = db.store.get(oid)
    refs.sort(key=lambda r: r.created_at, reverse=True)
    if obj.kind == "call":
        value: dict[str, Any] = {"type": "call record"}
    elif obj.kind in ("code", "bytes") and not refs:  # a function's source, a git diff
        text = bytes(obj.payload).decode("utf-8", "replace")
        value = {"type": "code" if obj.kind == "code" else "text", "text": text}
    else:
        value = shown_value(db, oid, obj, rows=0)[1]  # (no chunk read)
    call_oid = oid if obj.kind == "call" else next((r.call for r in refs if r.call), None)
    call = read_call(db, call_oid) if call_oid else None
    refs = [_in_schema_order(r, db.schema_keys) for r in refs]
    return ShowResult(oid, obj.kind, db.store.size_of(oid), value, refs, call)


def _in_schema_order(record: RefRecord, keys: list[str]) -> RefRecord:
    """`record` with its address's keys in schema order, as `show --json` writes them (the
    index's are sorted: `session` before `subject`)."""
    return RefRecord(record.var, ordered(record.addr, keys), record.vkeys, record.version, record.oid,
                     record.kind, record.call, record.recorded_params(), record.summary, record.created_at,
                     record.addr_key, record.vkeys_key)


PREVIEW_ROWS = 10_000  # rows of a chunked value read to preview it


def shown_value(db: Database, oid: str, obj: Any, *, rows: int | None = None) -> tuple[Any, dict[str, Any]]:
    """(what to preview, its description) for `show` and the web view: a chunked value is
    described from its manifest and previewed by its first `rows` rows (none: no chunk is
    read), never read whole; a dict or list holding chunked values holds them lazy."""
    if obj.kind != "chunked":
        value = db.store.open_stored(oid, obj)
        return value, describe_value(value)
    described = describe_manifest(obj.payload)
    rows = PREVIEW_ROWS if rows is None else rows
    if not rows:
        return None, described
    value = db.store.open_stored(oid, obj)
    head = value.head(rows) if hasattr(value, "head") else value[:rows]
    return head, {**described, "preview": f"the first {len(head):,} rows"}


def describe_value(value: Any, *, head: int = 6) -> dict[str, Any]:
    """A short description of a value: summary statistics for arrays, a head for tables."""
    # a table exists only if its library was imported to make it: a number is described
    # without importing pandas and pyarrow (0.37 s of `scistack show` of a float)
    pa, pd = sys.modules.get("pyarrow"), sys.modules.get("pandas")
    if pa is not None and isinstance(value, pa.Table):
        value = value.to_pandas()
        pd = sys.modules["pandas"]
    if isinstance(value, np.ndarray):
        out: dict[str, Any] = {
            "type": "ndarray",
            "dtype": str(value.dtype),
            "shape": list(value.shape),
        }
        flat = value.reshape(-1)
        if (
            flat.size
            and (np.issubdtype(value.dtype, np.number) or value.dtype == bool)
            and not np.issubdtype(value.dtype, np.complexfloating)
        ):
            numbers = flat.astype(np.float64)
            if np.isnan(numbers).all():  # (numpy warns on an all-NaN array; the summary says NaN)
                out.update(min=float("nan"), max=float("nan"), mean=float("nan"))
            else:
                with np.errstate(invalid="ignore", over="ignore"):  # inf and -inf average to NaN
                    out.update(min=float(np.nanmin(numbers)), max=float(np.nanmax(numbers)),
                               mean=float(np.nanmean(numbers)))
        out["head"] = [x.item() if hasattr(x, "item") else x for x in flat[:head]]
        return out
    if pd is not None and isinstance(value, (pd.DataFrame, pd.Series)):
        frame = value.to_frame() if isinstance(value, pd.Series) else value
        text = frame.head(head).to_string(max_cols=8, max_colwidth=20, line_width=78)
        return {
            "type": type(value).__name__,
            "shape": list(value.shape),
            "columns": [str(c) for c in frame.columns],
            "head": text,
        }
    if isinstance(value, (list, tuple, dict, set)):
        return {"type": type(value).__name__, "len": len(value), "repr": _short_repr(value)}
    if isinstance(value, (bytes, bytearray)):
        return {"type": "bytes", "len": len(value), "repr": _short_repr(bytes(value[:60]))}
    return {"type": type(value).__name__, "repr": _short_repr(value)}


def _short_repr(value: Any, limit: int = 600) -> str:
    import pprint

    text = pprint.pformat(value, width=78, compact=True)
    return text if len(text) <= limit else text[: limit - 1] + "…"


# -- sql ---------------------------------------------------------------------------------
def query_each(db: Database, sql: str) -> list[Any]:
    """A read-only SQL query on the index, each statement's result in order as an Arrow table
    (`QueryError` when one fails).

    Arrow, not pandas: a float column in a DataFrame holds NULL and NaN alike as NaN, and
    `scistack sql` must show which is which."""
    return db.index.query_each(sql)
