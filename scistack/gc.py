"""Garbage collection: delete objects that no name, cache entry or lineage record needs.

What is kept (the reachable set), as git keeps what its refs reach:

- every live ref's object and call record, every version (not only the current default),
  less the old versions a retention rule drops (`keep_versions`, `older_than`);
- a call-cache entry's call record and outputs while every output is still kept by the rest
  (it can only be served if its outputs exist), or while the entry is younger than the grace
  period (a run may be about to name them). Other entries are dropped from the cache (an
  `uncall` journal line) before their objects are deleted;
- every for_each run report's per-combination object;
- from each call record reached: its code object, its uncommitted-diff object, its outputs,
  its inputs (values and the call records that produced them, recursively) and stored
  constants, so lineage stays inspectable for as long as anything kept descends from it;
- the children of every json object kept (``{"$ref": oid}``: a Merkle tree).

Hazards, and why this is safe with concurrent saves (as dulwich's gc argues): a save writes
its objects first and journals its ref last, so an object can be in the store, unreferenced,
for a while. Every put of an object that already exists refreshes its mtime, and gc deletes
only unreachable objects older than a grace period (two weeks by default), checked during
the scan and again at each deletion in a way a concurrent refresh cannot slip past
(`LocalObjectStore.delete_many`: a file is renamed aside before its mtime is read, and a
writer's refresh checks the name after its utime). Naming an existing object again without a
put (a cache hit restoring outputs gc may be about to free with their dropped cache entry, a
saved cached result, undelete) freshens it and its lineage first (`freshen_lineage`), and
never names what that finds gone. A grace period under an hour
("--prune=now") is only used when no other writer is open (objects/gate.py); otherwise gc
keeps an hour and says why. gc refuses to run when the journal has lines it cannot parse, a root it must read
is missing or corrupt, or an object it must keep that may name others is missing (a lab's, say: lost from the
bucket, cached on another machine): a partial view of the names, or of what a kept object names, would delete
live data. Fan-out
directories are never removed: another process may be about to write into one.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from datetime import datetime, timezone
from pathlib import Path
from typing import Any


from scistack.address import shown_address
from scistack.errors import CorruptObjectError, GarbageCollectionError, ObjectNotFoundError
from scistack.objects.gate import DEFAULT_GRACE_SECONDS, PRUNE_FLOOR
from scistack.index import RETENTION, RefRecord, RefState, key_of
from scistack.objects.codec import child_oids
from scistack.objects.hashing import KINDS
from scistack.objects.oid import is_valid_oid
from scistack.objects.pack import MergeStats
from scistack.objects.store import StoredObject
from scistack.records import CallRecord, RunRecord, call_tree, parse_call
from scistack.retention import describe, retention_plan

_WALKED_KINDS = ("json", "call", "chunked")
_LEAF = "(leaf)"  # a chunked value's chunk or table part: names nothing
_ARRAY = "(array)"  # a json value's child: npy or table (leaves), or a chunked manifest
_PART_KINDS = ("chunk", "table")  # what a chunked manifest names
# what a json object's child may be: a value's array (npy, table, chunked), or a json value a
# call's container of inputs names (read, so verified, like every kind the walk reads); any
# other kind is a damaged header, and a leaf taken on its word may hide a manifest's chunks
_ARRAY_KINDS = ("npy", "table", "chunked", "json")
_READ_BATCH = 4096  # objects the walk reads at once
_SLICE_BYTES = 1 << 20  # journal bytes folded at a time (1M refs: 16 MB slices peaked at 440 MB, 1 MB at 300)


@dataclass(frozen=True, slots=True)
class RootUsage:
    """What one group of roots keeps alive that the groups before it did not."""

    root: str
    objects: int
    bytes: int


@dataclass(frozen=True, slots=True)
class GCStats:
    """What a collection found and did (or, with `dry_run`, would do)."""

    objects_scanned: int
    objects_reachable: int
    objects_deleted: int
    bytes_freed: int
    objects_kept_by_grace: int
    temp_files_removed: int
    dry_run: bool
    calls_dropped: int = 0
    versions_dropped: tuple[dict[str, Any], ...] = ()   # the retention rule's preview
    roots: tuple[RootUsage, ...] = ()                    # filled by a dry run
    grace_note: str = ""  # why a short grace period was raised (another writer is open)
    packs_merged: int = 0   # small packs merged into larger ones (with `dry_run`: would be)
    packs_written: int = 0  # the larger packs they were merged into
    merged_bytes: int = 0   # the merged packs' size
    merge_note: str = ""    # why no pack was merged (another process is merging, ...)
    packs_left_whole: tuple[str, ...] = ()  # packs not repacked: their index does not match their records


@dataclass(slots=True)
class Reachability:
    """The reachable set, plus what the walk could not read (used by gc and fsck)."""

    reachable: set[str] = field(default_factory=set)
    missing: dict[str, str] = field(default_factory=dict)  # oid -> who needs it
    corrupt: dict[str, str] = field(default_factory=dict)  # oid -> problem
    missing_roots: dict[str, str] = field(default_factory=dict)
    missing_parents: dict[str, str] = field(default_factory=dict)  # lost, and may name others
    missing_arrays: dict[str, str] = field(default_factory=dict)  # a lost json's child: a leaf, or a manifest
    lost_in: dict[str, tuple[str, str]] = field(default_factory=dict)  # such a child -> (its json object, where in it)
    unkept_calls: list[dict[str, Any]] = field(default_factory=list)  # cache entries not kept
    groups: dict[str, list[str]] = field(default_factory=dict)  # root -> oids it reached first
    chunks: dict[str, str] = field(default_factory=dict)  # chunk oid -> "chunk [i] of chunked value X"
    manifests: dict[str, str] = field(default_factory=dict)  # chunk oid -> its chunked value's oid
    referrers: dict[str, str] = field(default_factory=dict)  # watched oid -> what first named it


@dataclass(slots=True)
class Roots:
    """What the walk starts from: each variable's live values (every version; oids by kind)
    and their call records, the run reports and the call cache. Only oids are kept per ref
    (a ref's address is looked up again for a message), so gc of 1M refs holds the reachable
    set, not the fold (2.6 GB with `full_fold`)."""

    values: dict[str, dict[str, list[str]]] = field(default_factory=dict)  # var -> kind -> oids
    lineage: dict[str, list[str]] = field(default_factory=dict)           # var -> call record oids
    runs: list[RunRecord] = field(default_factory=list)
    calls: dict[str, dict[str, Any]] = field(default_factory=dict)        # the call cache: key -> entry

    def add(self, var: str, oid: str, kind: str, call: str | None) -> None:
        self.values.setdefault(var, {}).setdefault(kind, []).append(oid)
        if call:
            self.lineage.setdefault(var, []).append(call)

    @classmethod
    def of_state(cls, state: RefState) -> Roots:
        """The roots of an in-memory fold (`full_fold`: the tests' reference for `fold_roots`)."""
        roots = cls(runs=list(state.runs), calls={k: _cache_entry(e) for k, e in state.calls.items()})
        for var in state.variables():
            for r in state.records(var):
                roots.add(var, r.oid, r.kind, r.call)
        return roots


def _cache_entry(e: dict[str, Any]) -> dict[str, Any]:
    """What the walk and fsck read of a cache entry (its journal line holds more)."""
    return {"call": e["call"], "outs": e.get("outs"), "t": e.get("t")}


def live_entries(index: Any, skipped: list[int] | None = None) -> Iterator[tuple[dict[str, Any], bool]]:
    """Every valid journal entry in order, read in bounded slices, each with whether it is
    live: a put is, unless a deletion of its ref follows it (an undeleted ref's put comes
    after its deletion); other entries always are. A first pass parses only the lines that
    can be deletions (a deletion's line holds the text "del", or an escape that could spell
    it) and counts them per ref; the second counts them again as it goes. Lines appended
    meanwhile are read by the second pass only: a put then counts as live (keeps more).
    `skipped` gets the number of lines the second pass could not parse."""
    deletions: dict[tuple[str, str, int], int] = {}  # (var, address key, version) -> how many
    for entries in index.journal_slices(_SLICE_BYTES, containing=(b'"del"', b"\\u")):
        for e in entries:
            if e["op"] == "del":
                ref = (e["var"], key_of(e["addr"]), e["version"])
                deletions[ref] = deletions.get(ref, 0) + 1
    maybe = {(var, version) for var, _, version in deletions}
    seen: dict[tuple[str, str, int], int] = {}  # deletions met so far in the second pass
    before = index.skipped_journal_lines()
    for entries in index.journal_slices(_SLICE_BYTES):
        for e in entries:
            op = e["op"]
            if op == "put" and (e["var"], e["version"]) in maybe:
                ref = (e["var"], key_of(e["addr"]), e["version"])
                yield e, seen.get(ref, 0) >= deletions.get(ref, 0)
                continue
            if op == "del":
                ref = (e["var"], key_of(e["addr"]), e["version"])
                seen[ref] = seen.get(ref, 0) + 1
            yield e, True
    if skipped is not None:
        skipped.append(index.skipped_journal_lines() - before)


def fold_roots(index: Any, on_put: Callable[[dict[str, Any]], None] | None = None, *,
               skip: set[tuple[str, str, int]] = frozenset(),
               on_skip: Callable[[dict[str, Any], str], None] | None = None) -> tuple[Roots, int]:
    """The roots the journal names (`live_entries`), and how many lines did not parse;
    `on_put` sees each live put entry (fsck checks its objects). The live refs in `skip`
    ((var, address key, version): a retention rule's) are not roots: `on_skip` sees them."""
    roots, skipped = Roots(), []
    maybe = {(var, version) for var, _, version in skip}
    for e, live in live_entries(index, skipped):
        op = e["op"]
        if op == "put":
            if live and maybe and (e["var"], e["version"]) in maybe:
                key = key_of(e["addr"])
                if (e["var"], key, e["version"]) in skip:
                    if on_skip is not None:
                        on_skip(e, key)
                    continue
            if live:
                roots.add(e["var"], e["oid"], e["kind"], e.get("call"))
                if on_put is not None:
                    on_put(e)
        elif op == "call":
            roots.calls[e["key"]] = _cache_entry(e)
        elif op == "uncall":
            if (roots.calls.get(e["key"]) or {}).get("call") == e["call"]:
                del roots.calls[e["key"]]
        elif op == "run":
            roots.runs.append(RunRecord.from_entry(e))
    return roots, skipped[0]


def find_reachable(db: Any, roots: Roots | None = None, *, young_after: float | None = None) -> set[str]:
    """Every oid gc must keep (see the module docstring); raises when that cannot be known."""
    return _checked_walk(db, roots, young_after=young_after).reachable


def _checked_walk(db: Any, roots: Roots | None, **options: Any) -> Reachability:
    if roots is None:
        roots, bad = fold_roots(db.index)
        _refuse_bad_journal(db, bad)
    walk = walk_reachable(db.store, roots, **options)
    _refuse_incomplete(db, walk)
    return walk


def walk_reachable(
    store: Any, roots: Roots, *, young_after: float | None = None, explain: bool = False,
    watch: set[str] = frozenset(),
) -> Reachability:
    """Walk from every root; never raises for missing or corrupt objects (it records them).

    Cache entries are roots only while their outputs are kept by the other roots (or, with
    `young_after`, while they are newer than that time; without it every entry is a root).
    With `explain`, `groups` records which root group first reached each oid. A missing or
    corrupt root is recorded as needed by "a ref of VAR" (`name_refs` says which). `referrers`
    says what first named each oid in `watch` (fsck: its damaged objects).
    """
    walker = _Walker(store, watch)
    group = _grouper(walker, explain)
    for var in sorted(roots.values):  # named values first, then the lineage they keep
        where = f"a ref of {var}"
        for kind, oids in roots.values[var].items():
            for oid in oids:
                walker.add(oid, kind, where, root=True)
        group(f"values of {var}")
    for var in sorted(roots.values):
        where = f"a ref of {var}"
        for call in roots.lineage.get(var, ()):
            walker.add(call, "call", where, root=True)
        group(f"lineage of {var}")
    for run in roots.runs:
        if run.items:
            walker.add(run.items, "json", f"report of run {run.run_id or '?'}", root=True)
    group("for_each run reports")
    waiting = dict(roots.calls)
    young = None if young_after is None else _iso(young_after)
    while True:  # an admitted entry's inputs may be the outputs of another entry
        admitted = [k for k, e in waiting.items() if _keeps(e, walker.result.reachable, young)]
        if not admitted:
            break
        for key in admitted:
            entry = waiting.pop(key)
            walker.add(entry["call"], "call", f"call-cache entry {key[:12]}", root=True)
            for oid in entry.get("outs") or []:
                walker.add(oid, None, f"output of cached call {entry['call'][:12]}")
        walker.run()
    group("call cache")
    walker.result.unkept_calls = [{"key": k, **e} for k, e in waiting.items()]
    return walker.result


def _keeps(entry: dict[str, Any], reachable: set[str], young: str | None) -> bool:
    """Whether a cache entry stays: its outputs are kept, or it is younger than `young` (ISO
    text, which sorts as time does; an entry without a readable time counts as young)."""
    stamp = entry.get("t")
    if young is None or not isinstance(stamp, str) or len(stamp) != len(young) or stamp > young:
        return True
    return all(oid in reachable for oid in entry.get("outs") or [])


def _iso(posix: float) -> str:
    """A time as the journal writes it (`utc_now`): `2026-12-03T09:14:27.123456Z`."""
    return datetime.fromtimestamp(max(posix, 0.0), timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _grouper(walker: _Walker, explain: bool) -> Any:
    """Run the walk after each group of roots, noting (with `explain`) what it reached first."""
    if explain:
        walker.fresh = []

    def group(name: str) -> None:
        walker.run()
        if explain:
            reached = [oid for oid in walker.fresh if oid in walker.result.reachable]
            walker.result.groups[name] = walker.result.groups.get(name, []) + reached
            walker.fresh = []

    return group


class _Walker:
    def __init__(self, store: Any, watch: set[str] = frozenset()) -> None:
        self.store = store
        self.watch = watch
        self.result = Reachability()
        # (oid, kind, referrer, root, optional, the json object naming it and where: or None)
        self._stack: list[tuple[str, str | None, str, bool, bool, tuple[str, str] | None]] = []
        self.fresh: list[str] | None = None  # oids added since the last group (when explaining)

    def add(
        self,
        oid: Any,
        kind: str | None,
        referrer: str,
        *,
        root: bool = False,
        optional: bool = False,
        parent: tuple[str, str] | None = None,
    ) -> None:
        if not is_valid_oid(oid) or oid in self.result.reachable:
            return
        self.result.reachable.add(oid)
        if self.watch and oid in self.watch:
            self.result.referrers[oid] = referrer
        if self.fresh is not None:
            self.fresh.append(oid)
        self._stack.append((oid, kind, referrer, root, optional, parent))

    def run(self) -> None:
        """Walk until the stack is empty; the objects to read are read `_READ_BATCH` at a time
        (`get_many`: one search per pack index, ~3 us an object instead of ~15)."""
        while self._stack:
            batch = []
            while self._stack and len(batch) < _READ_BATCH:
                oid, kind, referrer, root, optional, parent = self._stack.pop()
                known = kind if kind not in (None, _ARRAY) else self.store.kind_of(oid)
                if known is not None and kind in (None, _ARRAY) \
                        and known not in (_ARRAY_KINDS if kind == _ARRAY else KINDS):
                    # a damaged header ("bhunked"): taken for a leaf, a chunked value's chunks
                    # had looked unreachable and been deleted; kept, and gc refuses
                    wanted = "npy, table, chunked or json (a value's child)" if kind == _ARRAY else "a known kind"
                    self.result.corrupt[oid] = f"{oid}: its header names kind {known[:20]!r}, not {wanted}"
                    continue
                if known is None and kind == _ARRAY:
                    self._lost(oid, referrer, root, optional, parent=False)
                    if not optional:
                        self.result.missing_arrays[oid] = referrer
                        if parent is not None:
                            self.result.lost_in[oid] = parent
                elif known is None or (known not in _WALKED_KINDS and not self.store.contains(oid)):
                    self._lost(oid, referrer, root, optional, parent=kind is None or kind in _WALKED_KINDS)
                elif known in _WALKED_KINDS:
                    batch.append((oid, known, referrer, root, optional))
            if batch:
                batch = self._without_children(batch)
                for item, obj in zip(batch, self.store.get_many([item[0] for item in batch])):
                    self._read(*item, obj)

    def _without_children(self, batch: list[tuple]) -> list[tuple]:
        """`batch` less its json objects whose stored bytes (verified, uncompressed, packed:
        `get_many_stored`, no Python object each) hold no `$ref` nor an escape that could spell
        one: a value without children (most are) is then never parsed nor read again."""
        values = [item for item in batch if item[1] == "json"]
        stored = dict(zip((item[0] for item in values), self.store.get_many_stored([item[0] for item in values])))
        return [item for item in batch if item[1] != "json" or (data := stored[item[0]]) is None
                or _may_name_children(data)]

    def _lost(self, oid: str, referrer: str, root: bool, optional: bool, *, parent: bool = True) -> None:
        """`parent`: the object may name others (its kind is unknown, or one the walk reads):
        what it keeps cannot be known, so gc must not collect (`_refuse_incomplete`)."""
        self.result.reachable.discard(oid)
        if not optional:
            self.result.missing[oid] = referrer
            if root:
                self.result.missing_roots[oid] = referrer
            elif parent:
                self.result.missing_parents[oid] = referrer

    def _read(self, oid: str, kind: str | None, referrer: str, root: bool, optional: bool,
              obj: StoredObject | Exception) -> None:
        try:
            if isinstance(obj, Exception):
                raise obj
            text = obj.payload if isinstance(obj.payload, (bytes, bytearray)) else bytes(obj.payload)
            if obj.kind == "json" and not _may_name_children(text):
                return
            if obj.kind == "call":
                tree = call_tree(text, oid)
                nested = tree if _may_name_children(text) else {}  # (most records hold none)
                refs = [  # (a `$ref` in a constant recorded inline: a json value's child, `_ARRAY`)
                    (ref.oid, _ARRAY if ref.in_json and ref.kind is None else ref.kind,
                     f"{ref.what} of call record {oid[:12]}", ref.optional, None)
                    for ref in CallRecord.from_value(tree, oid=oid).child_refs(nested)
                ]
            else:
                children = child_oids(obj.kind, obj.payload)
                child_kind = _LEAF if obj.kind == "chunked" else _ARRAY
                refs = [(child, child_kind, f"{what} of {obj.kind} object {oid[:12]}", False, (oid, what))
                        for child, what in children]
                if obj.kind == "chunked":
                    for child, what in children:
                        self.result.chunks.setdefault(child, f"{what} of chunked value {oid}")
                        self.result.manifests.setdefault(child, oid)
        except ObjectNotFoundError:
            self._lost(oid, referrer, root, optional)
            return
        except (CorruptObjectError, ValueError) as exc:
            self.result.corrupt[oid] = str(exc)
            return
        for child, child_kind, what, child_optional, parent in refs:
            self.add(child, child_kind, what, optional=child_optional, parent=parent)


def _may_name_children(text: bytes | bytearray) -> bool:
    """Whether JSON text may hold a `{"$ref": oid}`: it holds `$ref`, or an escape that could
    spell it (a text with neither is never parsed to look)."""
    return b"$ref" in text or b"\\u" in text


def name_refs(index: Any, oids: set[str], keys: list[str]) -> dict[str, str]:
    """"ref VAR at ADDRESS version N" (`keys`: the schema's, in order) of the last put naming
    each of `oids` as its value or call record (the walk keeps no addresses: this reads the
    journal again, for a message)."""
    named: dict[str, str] = {}
    for entries in index.journal_slices(_SLICE_BYTES):
        for e in entries:
            if e["op"] == "put" and (e["oid"] in oids or e.get("call") in oids):
                where = f"ref {ref_text(e, keys)}"
                named[e["oid"] if e["oid"] in oids else e["call"]] = where
    return named


def ref_text(e: dict, keys: list[str]) -> str:
    """`Var at subject=1, session='pre' version 2`: a journal entry's ref as messages name it."""
    return f"{e['var']} at {shown_address(e['addr'], keys) or 'every address'} version {e['version']}"


def freshen_lineage(store: Any, oids: list[str | None], done: set[str],
                    kinds: dict[str, str] | None = None, *, look_only: bool = False) -> set[str]:
    """Make objects about to be named again young, with everything gc would keep for them
    (container children, a call record's code, inputs and their call records, recursively):
    a gc that judged them unreachable a moment ago (a dropped cache entry's outputs) then keeps
    them for its grace period, as git freshens the objects it reuses. `done` skips oids
    already freshened (and collects these). `kinds`: the kinds of some of `oids`, known to
    the caller (a ref's), not asked of the store again.

    Returns the oids that are gone: a gc freed them after the caller last looked (a pruning
    gc holds the writers' gate while it deletes, and `freshen` waits for it). The caller must
    not name these: it stores them again, recomputes, or reports them reclaimed.

    `look_only` (a dry run, which may be of a read-only project): the same walk, asking
    `contains` instead of `freshen`; nothing is made young, and the same oids are gone."""
    gone: set[str] = set()
    stack = [oid for oid in oids if is_valid_oid(oid)]
    while stack:
        oid = stack.pop()
        if oid in done or oid in gone:
            continue
        if not (store.contains(oid) if look_only else store.freshen(oid)):
            gone.add(oid)
            continue
        done.add(oid)
        kind = kinds.get(oid) if kinds else None
        kind = kind or store.kind_of(oid)
        if kind not in _WALKED_KINDS:
            continue
        try:
            obj = store.get(oid)
            if kind == "call":
                children = [ref.oid for ref in parse_call(obj.payload, oid).child_refs()]
            else:
                children = [child for child, _ in child_oids(obj.kind, obj.payload)]
        except (ObjectNotFoundError, CorruptObjectError, ValueError):
            continue  # gc and fsck report what cannot be read
        stack.extend(child for child in children if is_valid_oid(child))
    return gone


_UNITS = {"second": 1, "minute": 60, "hour": 3600, "day": 86400, "week": 7 * 86400}


def parse_prune(text: str) -> float:
    """A grace period in seconds from git's spelling: `now`, `never`, `2.weeks.ago`."""
    text = text.strip().lower()
    if text == "now":
        return 0.0
    if text == "never":
        return float("inf")
    parts = text.removesuffix(".ago").split(".")
    if len(parts) == 2 and parts[0].isdigit() and parts[1].rstrip("s") in _UNITS:
        return float(int(parts[0]) * _UNITS[parts[1].rstrip("s")])
    raise ValueError(
        f"{text!r} is not a time: use now, never, or N.UNIT.ago with UNIT one of "
        "seconds, minutes, hours, days, weeks (e.g. 2.weeks.ago)"
    )


def collect_garbage(
    db: Any,
    *,
    grace_seconds: float = DEFAULT_GRACE_SECONDS,
    dry_run: bool = False,
    keep_versions: int | None = None,
    older_than: float | None = None,
) -> GCStats:
    """Delete unreachable objects older than `grace_seconds` (or only count them: `dry_run`).

    `keep_versions` / `older_than` (a POSIX time) first drop old versions' names (see
    `scistack.retention`); cache entries whose outputs are no longer kept are dropped. A dry
    run changes nothing and reports what each group of roots keeps alive.

    Raises
    ------
    GarbageCollectionError
        The journal has unreadable lines, or a ref's object or call record is missing or
        corrupt, or (lab) an object it keeps is missing from the bucket though cached here:
        nothing is deleted; run `scistack fsck` to see what is wrong.
    """
    db.index.flush()  # this process's batched refs must be in the journal before we read it
    with db.store.gc_guard():  # a shared store: one gc at a time across the lab
        if not dry_run:  # a gc killed mid-delete: back what a writer may have named meanwhile
            db.store.restore_set_aside()
        if grace_seconds >= PRUNE_FLOOR or dry_run:
            return _collect(db, grace_seconds, dry_run, keep_versions, older_than)
        with _other_writers(db) as others:  # a short grace is only safe with no other writer open
            note = ""
            if others is not None:
                note = (f"another process that writes to this project is open{others}, so "
                        f"unreachable objects younger than {PRUNE_FLOOR / 3600:.0f} h were kept (they may "
                        "be saves not yet named); close the other sessions to prune them now")
                grace_seconds = PRUNE_FLOOR
            return replace(_collect(db, grace_seconds, dry_run, keep_versions, older_than), grace_note=note)


@contextmanager
def _other_writers(db: Any) -> Iterator[str | None]:
    """Hold the writers' gate exclusively (objects/gate.py) and yield None when this is the
    only writer; otherwise yield where the others may be ("" for this machine)."""
    gate = db.store.writers_gate()
    if gate is None:  # a shared store: other machines' writers cannot be seen
        yield " (or may be, on another machine of the lab)"
        return
    if not db.index.in_batch:
        gate.leave()  # ours: every object this process wrote is named (flushed above)
    with gate.exclusive() as got:
        yield None if got else ""


def _collect(db: Any, grace_seconds: float, dry_run: bool, keep_versions: int | None,
             older_than: float | None) -> GCStats:
    dropped: list = []
    # one cutoff for every judgement of age: the orphaned-parts check and the deletion had each
    # read the clock (listing and dropping names between), so a chunk younger than the check's
    # cutoff, not refused over, could be older than the deletion's, and deleted. Read before
    # the journal (earlier: keeps more), as a lab's bucket records it (`will_prune`): a save on
    # another machine naming old chunks looks there first, or names them before gc reads
    cutoff = time.time() - grace_seconds
    if not dry_run and grace_seconds < DEFAULT_GRACE_SECONDS:
        db.store.will_prune(cutoff)
    if keep_versions is None and older_than is None:
        roots, bad = fold_roots(db.index)
    else:
        roots, dropped, bad = _fold_with_retention(db.index, keep_versions, older_than)
    _refuse_bad_journal(db, bad)
    walk = _checked_walk(db, roots, young_after=cutoff, explain=dry_run)
    reachable = walk.reachable
    _refuse_orphaned_parts(db, walk, cutoff)
    listed = _bucket_listing(db, reachable)  # (a lab's: checked before anything is changed)
    if not dry_run:  # names first, then cache entries, then (below) the objects they named
        db.index.delete_refs(dropped, why=RETENTION)
        db.index.drop_calls(walk.unkept_calls)
    scanned = freed = kept = 0
    doomed = []
    for oid in db.store.iter_oids() if listed is None else listed:
        scanned += 1
        if oid in reachable:
            continue
        try:
            if db.store.mtime_of(oid) > cutoff:
                kept += 1
                continue
            size = db.store.size_of(oid)
        except LookupError:  # removed meanwhile (another gc)
            continue
        doomed.append(oid)
        freed += size
    deleted, left_whole = len(doomed), ()
    if not dry_run:  # measured from the files: exact, packs included
        done = db.store.delete_many(doomed, older_than=cutoff)  # (what was freshened since is kept)
        deleted, freed, left_whole = done.objects, done.bytes, done.left_whole
    temps = 0
    for path in list(db.store.iter_temp_files()):
        size = _delete_if_older(path, cutoff, dry_run)
        if size is not None and size >= 0:
            temps, freed = temps + 1, freed + size
    roots = tuple(_usage(db.store, name, oids) for name, oids in walk.groups.items())
    merged = _merge_packs(db, dry_run)
    return GCStats(scanned, len(reachable), deleted, freed, kept, temps, dry_run,
                   len(walk.unkept_calls), tuple(describe(r) for r in dropped), roots,
                   packs_merged=merged.packs_merged if merged else 0,
                   packs_written=merged.packs_written if merged else 0,
                   merged_bytes=merged.bytes if merged else 0, merge_note=merged.skipped if merged else "",
                   packs_left_whole=tuple(left_whole))


_ABSENT_SHOWN = 100  # objects gc names before it refuses (each absent one costs a HEAD)


def _bucket_listing(db: Any, reachable: set[str]) -> list[str] | None:
    """A lab store's objects (None for a laptop's: gc lists it as it deletes), after refusing
    when an object gc keeps is absent from the bucket though cached here. The walk reads this
    machine's cache first, and must (a missing manifest's chunks, a missing dict's arrays,
    read from the cached copy, are kept for `fsck --repair` to use); but it had then said
    nothing of a value every colleague fails to load, whose only copy is a cache that drops
    its oldest copies, and counted it reachable. `contains` answers for the bucket here, from
    this listing (`own_copies`, as fsck asks)."""
    if not db.store.remote:
        return None
    listed = list(db.store.iter_oids())
    absent = []
    with db.store.own_copies():
        for oid in reachable:
            if not db.store.contains(oid):
                absent.append(oid)
                if len(absent) == _ABSENT_SHOWN:
                    break
    if absent:
        oid = absent[0]
        where = name_refs(db.index, {oid}, db.schema_keys).get(oid, "a child of a value gc keeps")
        count = f"{len(absent)}{'+' if len(absent) == _ABSENT_SHOWN else ''}"
        raise GarbageCollectionError(
            f"gc refused: {count} object(s) gc must keep are missing from {db.store.address} though "
            f"cached on this machine (e.g. {oid[:12]}, {where}); nothing was deleted. Run `scistack "
            "fsck --repair` here, before this machine's cache drops them: it puts the cached copies back")
    return listed


def _merge_packs(db: Any, dry_run: bool) -> Any:
    """Small packs merged into larger ones, after the deletions (so what is merged is what
    stays), as git's gc repacks; a merge a killed process left half done is finished first.
    None for a store that merges no packs (a lab's bucket). A merge that fails (a full disk)
    leaves every pack as it was and is reported, never raised: the deletions are done."""
    try:
        return db.store.merge_packs(dry_run=dry_run)
    except OSError as exc:
        return MergeStats(skipped=f"packs were not merged ({exc.strerror or exc}); every pack is as it was")


@dataclass(frozen=True, slots=True)
class _Version:
    """What a retention rule ranks a live version by (`retention_plan` reads these fields)."""

    var: str
    addr_key: str
    vkeys_key: str
    version: int
    created_at: str


def _fold_with_retention(index: Any, keep_versions: int | None, older_than: float | None
                         ) -> tuple[Roots, list[RefRecord], int]:
    """The roots less the versions a retention rule drops, and those versions' records: one
    pass ranks every live version (a few fields each, not the whole fold), a second folds
    the roots without the dropped ones and keeps their records (to journal their deletion)."""
    versions = [_Version(e["var"], key_of(e["addr"]), key_of(e.get("vkeys") or {}), e["version"], e["t"])
                for e, live in live_entries(index) if live and e["op"] == "put"]
    plan = retention_plan(versions, keep_versions=keep_versions, older_than=older_than)
    del versions
    drop = {(v.var, v.addr_key, v.version) for v in plan}
    dropped: list[RefRecord] = []
    roots, bad = fold_roots(index, skip=drop, on_skip=lambda e, key: dropped.append(RefRecord.from_entry(e, key)))
    dropped.sort(key=lambda r: (r.var, r.addr_key, r.vkeys_key, r.version))
    return roots, dropped, bad


def _usage(store: Any, name: str, oids: list[str]) -> RootUsage:
    size = 0
    for oid in oids:
        try:
            size += store.size_of(oid)
        except LookupError:
            pass
    return RootUsage(name, len(oids), size)


def _delete_if_older(path: Path, cutoff: float, dry_run: bool) -> int | None:
    """Bytes freed (-1: already gone), or None when the file is younger than `cutoff`."""
    try:
        info = os.stat(path)
    except FileNotFoundError:
        return -1
    if info.st_mtime > cutoff:
        return None
    if not dry_run:
        try:
            os.unlink(path)
        except FileNotFoundError:  # another gc got there first: not ours to count
            return -1
    return info.st_size


def _refuse_bad_journal(db: Any, bad_lines: int) -> None:
    if bad_lines:
        raise GarbageCollectionError(
            f"gc refused: {bad_lines} line(s) of {db.index.journal_path.name} cannot be parsed, so "
            "some names may be unknown and their objects would be deleted. Nothing was deleted; "
            "run `scistack fsck` to see the lines"
        )


def _refuse_incomplete(db: Any, walk: Reachability) -> None:
    if walk.corrupt:
        oid, problem = next(iter(walk.corrupt.items()))
        raise GarbageCollectionError(
            f"gc refused: {len(walk.corrupt)} object(s) it must read are corrupt (e.g. {oid[:12]}: "
            f"{problem.split(':', 1)[-1].strip()[:80]}). Nothing was deleted; run `scistack fsck`"
        )
    if walk.missing_roots:
        oid, referrer = next(iter(walk.missing_roots.items()))
        referrer = name_refs(db.index, {oid}, db.schema_keys).get(oid, referrer)
        raise GarbageCollectionError(
            f"gc refused: {len(walk.missing_roots)} object(s) named by refs or the call cache are "
            f"missing (e.g. {oid[:12]}, {referrer}). Nothing was deleted; run `scistack fsck`"
        )
    if walk.missing_parents:
        raise GarbageCollectionError(_lost_parent_message(db, walk.missing_parents))


def _refuse_orphaned_parts(db: Any, walk: Reachability, cutoff: float) -> None:
    """Refuse when a lost child of a json value kept may have been a chunked manifest whose
    chunks gc would now delete. Such a child is most often a small array (a leaf: losing it
    stops nothing, fsck names it); its header is gone, so what it was is judged from the
    store: only an old, unreachable chunk or table part could be one of its chunks."""
    if not walk.missing_arrays:
        return
    for oid in db.store.iter_oids():
        if oid in walk.reachable:
            continue
        try:
            old = db.store.mtime_of(oid) <= cutoff
        except LookupError:
            continue
        if old and db.store.kind_of(oid) in _PART_KINDS:
            raise GarbageCollectionError(_lost_parent_message(db, walk.missing_arrays))


def _lost_parent_message(db: Any, lost: dict[str, str]) -> str:
    """Why gc refuses over a lost object it must keep that may name others (a dict whose arrays
    are objects of their own, a chunked value's manifest, a call record): what it keeps cannot
    be read, so its children would look unreachable and be deleted, and the value could not be
    made whole again even once the object itself is put back."""
    oid, referrer = next(iter(lost.items()))
    head = (f"gc refused: {len(lost)} object(s) gc must keep are missing{_where(db)} (e.g. {oid[:12]}, "
            f"{referrer}); they may name other objects, which gc cannot see, so it deleted nothing. ")
    fix = ("save its value again (or import a bundle that holds it), or delete the refs whose lineage "
           "needs it; `scistack fsck` lists what is missing and what needs it (and `fsck --repair` drops "
           "a call-cache entry whose output is lost)")
    if db.store.remote:
        return head + ("Run `scistack fsck --repair` on a machine of the lab that has it cached (it puts the "
                       f"cached copy back), then run gc again; if no machine has it, {fix}")
    return head + fix[0].upper() + fix[1:]


def _where(db: Any) -> str:
    return f" from {db.store.address}" if db.store.remote else ""
