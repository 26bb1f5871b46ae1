"""Garbage collection: delete objects that no name, cache entry or lineage record needs.

What is kept (the reachable set), as git keeps what its refs reach:

- every live ref's object and call record, every version (not only the current default);
- every call-cache entry's call record and output objects (a cache hit needs them);
- every for_each run report's per-combination object;
- from each call record reached: its code object, its uncommitted-diff object, its outputs,
  its inputs (values and the call records that produced them, recursively) and stored
  constants, so lineage stays inspectable for as long as anything kept descends from it;
- the children of every json object kept (``{"$ref": oid}``: a Merkle tree).

Hazards, and why this is safe with concurrent saves (as dulwich's gc argues): a save writes
its objects first and journals its ref last, so an object can be in the store, unreferenced,
for a while. Every put of an object that already exists refreshes its mtime, and gc deletes
only unreachable objects older than a grace period (two weeks by default), checked just
before each deletion. `grace_seconds=0` ("--prune=now") is only safe when nothing else is
writing. gc refuses to run when the journal has lines it cannot parse or a root it must read
is missing or corrupt: a partial view of the names would delete live data. Fan-out
directories are never removed: another process may be about to write into one.
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


from scistack.errors import CorruptObjectError, GarbageCollectionError, ObjectNotFoundError
from scistack.index import RefState
from scistack.objects.canonical_json import json_refs
from scistack.objects.oid import is_valid_oid
from scistack.records import parse_call

DEFAULT_GRACE_SECONDS = 14 * 24 * 3600
_WALKED_KINDS = ("json", "call")


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


@dataclass(slots=True)
class Reachability:
    """The reachable set, plus what the walk could not read (used by gc and fsck)."""

    reachable: set[str] = field(default_factory=set)
    missing: dict[str, str] = field(default_factory=dict)  # oid -> who needs it
    corrupt: dict[str, str] = field(default_factory=dict)  # oid -> problem
    missing_roots: dict[str, str] = field(default_factory=dict)


def find_reachable(db: Any, state: RefState | None = None) -> set[str]:
    """Every oid gc must keep (see the module docstring); raises when that cannot be known."""
    if state is None:
        state, bad = db.index.full_fold()
        _refuse_bad_journal(db, bad)
    walk = walk_reachable(db.store, state)
    _refuse_incomplete(walk)
    return walk.reachable


def walk_reachable(store: Any, state: RefState) -> Reachability:
    """Walk from every root; never raises for missing or corrupt objects (it records them)."""
    walker = _Walker(store)
    for var in state.variables():
        for record in state.records(var):
            where = f"ref {record.var} {record.addr} version {record.version}"
            walker.add(record.oid, record.kind, where, root=True)
            if record.call:
                walker.add(record.call, "call", where, root=True)
    for key, entry in state.calls.items():
        walker.add(entry["call"], "call", f"call-cache entry {key[:12]}", root=True)
        for oid in entry.get("outs") or []:
            walker.add(oid, None, f"output of cached call {entry['call'][:12]}")
    for run in state.runs:
        if run.items:
            walker.add(run.items, "json", f"report of run {run.run_id or '?'}", root=True)
    walker.run()
    return walker.result


class _Walker:
    def __init__(self, store: Any) -> None:
        self.store = store
        self.result = Reachability()
        self._stack: list[tuple[str, str | None, str, bool, bool]] = []

    def add(
        self,
        oid: Any,
        kind: str | None,
        referrer: str,
        *,
        root: bool = False,
        optional: bool = False,
    ) -> None:
        if not is_valid_oid(oid) or oid in self.result.reachable:
            return
        self.result.reachable.add(oid)
        self._stack.append((oid, kind, referrer, root, optional))

    def run(self) -> None:
        while self._stack:
            oid, kind, referrer, root, optional = self._stack.pop()
            kind = kind or self.store.kind_of(oid)
            if kind is None or (kind not in _WALKED_KINDS and not self.store.contains(oid)):
                self.result.reachable.discard(oid)
                if not optional:
                    self.result.missing[oid] = referrer
                    if root:
                        self.result.missing_roots[oid] = referrer
                continue
            if kind in _WALKED_KINDS:
                self._read(oid, kind, referrer, root, optional)

    def _read(self, oid: str, kind: str, referrer: str, root: bool, optional: bool) -> None:
        try:
            obj = self.store.get(oid)
            if obj.kind == "call":
                refs = [
                    (ref.oid, ref.kind, f"{ref.what} of call record {oid[:12]}", ref.optional)
                    for ref in parse_call(obj.payload, oid).child_refs()
                ]
            else:
                refs = [
                    (child, None, f"child of {obj.kind} object {oid[:12]}", False)
                    for child in json_refs(json.loads(bytes(obj.payload)))
                ]
        except ObjectNotFoundError:
            self.result.reachable.discard(oid)
            if not optional:
                self.result.missing[oid] = referrer
                if root:
                    self.result.missing_roots[oid] = referrer
            return
        except (CorruptObjectError, ValueError) as exc:
            self.result.corrupt[oid] = str(exc)
            return
        for child, child_kind, what, child_optional in refs:
            self.add(child, child_kind, what, optional=child_optional)


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
    db: Any, *, grace_seconds: float = DEFAULT_GRACE_SECONDS, dry_run: bool = False
) -> GCStats:
    """Delete unreachable objects older than `grace_seconds` (or only count them: `dry_run`).

    Raises
    ------
    GarbageCollectionError
        The journal has unreadable lines, or a ref's object or call record is missing or
        corrupt: nothing is deleted; run `scistack fsck` to see what is wrong.
    """
    db.index.flush()  # this process's batched refs must be in the journal before we read it
    with db.store.gc_guard():  # a shared store: one gc at a time across the lab
        return _collect(db, grace_seconds, dry_run)


def _collect(db: Any, grace_seconds: float, dry_run: bool) -> GCStats:
    reachable = find_reachable(db)
    cutoff = time.time() - grace_seconds
    scanned = freed = kept = 0
    doomed = []
    for oid in db.store.iter_oids():
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
    if not dry_run:  # measured from the files: exact, packs included
        freed = db.store.delete_many(doomed)
    deleted = len(doomed)
    temps = 0
    for path in list(db.store.iter_temp_files()):
        size = _delete_if_older(path, cutoff, dry_run)
        if size is not None and size >= 0:
            temps, freed = temps + 1, freed + size
    return GCStats(scanned, len(reachable), deleted, freed, kept, temps, dry_run)


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


def _refuse_incomplete(walk: Reachability) -> None:
    if walk.corrupt:
        oid, problem = next(iter(walk.corrupt.items()))
        raise GarbageCollectionError(
            f"gc refused: {len(walk.corrupt)} object(s) it must read are corrupt (e.g. {oid[:12]}: "
            f"{problem.split(':', 1)[-1].strip()[:80]}). Nothing was deleted; run `scistack fsck`"
        )
    if walk.missing_roots:
        oid, referrer = next(iter(walk.missing_roots.items()))
        raise GarbageCollectionError(
            f"gc refused: {len(walk.missing_roots)} object(s) named by refs or the call cache are "
            f"missing (e.g. {oid[:12]}, {referrer}). Nothing was deleted; run `scistack fsck`"
        )
