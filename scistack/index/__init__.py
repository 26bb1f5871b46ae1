"""The index: names -> oids. A journal (truth), its SQLite fold (reads), and DuckDB (SQL).

`Index` is the only object the layers above use. Every change of a name is journalled
first (a save survives a killed process the moment it returns), folded into
`.scistack/fold.sqlite` by whichever process reads next (so opening a project reads nothing
and a lookup is an indexed query), and copied into DuckDB in batches by a background thread
once the process has been idle briefly, at `sync()`, and at exit. Writes held by a batch are
an in-memory overlay (`RefState`) that every read consults first. The index never decodes
values.
"""

from __future__ import annotations

import atexit
import logging
import math
import os
import re
import sqlite3
import subprocess
import sys
import threading
import time
import weakref
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, NamedTuple

from scistack.errors import (AtomicBatchError, DatabaseLockedError, IndexDamagedError, InvalidMetadataError, InvalidNameError,
                             ReadOnlyProjectError, ScistackError)
from scistack.objects.canonical_json import dumps_canonical, maybe_big_int
from scistack.index.journal import Journal, JournalBackend, loads_line
from scistack.index.sql import SqlIndex, check_identifier, held_by, quote
from scistack.index.views import VIEW_SUFFIXES
from scistack.index.fold import FOLD_NAME, Fold, Judging
from scistack.records import RunRecord
from scistack.index.state import (RefRecord, RefState, decode_keys, is_multi, key_of, keys_of, matching_addresses,
                                  shown_as,
                                  newest_per_variant, resolve_params, select_from, tagged_params)

log = logging.getLogger(__name__)

__all__ = ["Deletion", "Index", "RefRecord", "RefState", "check_identifier", "key_of", "keys_of", "quote"]


_second_text: tuple[int, str] = (-1, "")


def utc_now() -> str:
    """Creation timestamps: ISO 8601, UTC, microseconds (sortable as text); formatted cheaply."""
    global _second_text
    now = time.time_ns() // 1000
    seconds, micros = divmod(now, 1_000_000)
    if _second_text[0] != seconds:
        _second_text = (seconds, datetime.fromtimestamp(seconds, timezone.utc).strftime("%Y-%m-%dT%H:%M:%S"))
    return f"{_second_text[1]}.{micros:06d}Z"


RETENTION = "retention"  # a `del` line's `why` when gc's retention rule wrote it


class Deletion(NamedTuple):
    """A record a `del` entry removed; `t`: the time of its delete (one time for the records
    deleted together); `top`: the highest version saved at its address by then (a later save
    or undelete there is numbered above it: version numbers are never given twice);
    `retention`: dropped by gc's retention rule, not deleted by a user (undelete skips it)."""

    record: RefRecord
    t: str
    top: int
    retention: bool = False


TYPE_WORDS = {"int": "a number", "float": "a float", "str": "text", "bool": "a bool"}
_TYPE_OF = {"int": int, "float": float, "str": str, "bool": lambda text: text == "true"}  # a value from its text
_JSON_TYPES = {"int": "integer", "float": "real", "str": "text"}  # (a bool's is its value: true, false)


def _from_json(json_type: str, atom: Any) -> Any:
    """A value from SQLite's `json_each` (type, atom); None for what a key does not hold."""
    if json_type in ("true", "false"):
        return json_type == "true"
    return {"integer": int, "real": float, "text": str}.get(json_type, lambda _: None)(atom)


def _as_json(value: Any) -> tuple[str, Any]:
    """(type, atom) as SQLite's `json_each` gives a key value (see `_from_json`)."""
    if isinstance(value, bool):
        return ("true", 1) if value else ("false", 0)
    return {int: "integer", float: "real", str: "text"}[type(value)], value


_NUMBER_CHARS = "0123456789.e+-"  # (every character of an int's or a finite float's text)


def _vkey_twins(value: Any) -> list[Any]:
    """The values of other types that show as a text `value` shows as (`shown_as`), which a
    version key could hold: 1 and 1.0 for "1", "1" and 1.0 for 1, "1.0", "1" and 1 for 1.0,
    True for "true"; none for "pre" or "01" (int("01") is 1, which shows as 1). Asked at
    every save of a value not yet passed: a few us, no `shown_as` of each candidate."""
    kind = type(value)
    if kind is str:
        if value in ("true", "false"):
            return [value == "true"]
        if not value or value.strip(_NUMBER_CHARS):  # (the usual version key: a label has none)
            return []
        found: list[Any] = []
        try:
            number = int(value)
            if -(2**63) <= number < 2**63 and int.__repr__(number) == value:
                found.append(number)
        except ValueError:
            pass
        try:
            real = float(value)
            if math.isfinite(real) and (float.__repr__(real) == value or real.is_integer() and str(int(real)) == value):
                found.append(real)
        except ValueError:
            pass
        return found
    if kind is bool:
        return ["true" if value else "false"]
    if kind is int:
        text = int.__repr__(value)
        real = float(value)  # (shows as `text` too when it is that int exactly)
        return [text, real] if str(int(real)) == text else [text]
    if kind is float and math.isfinite(value):
        texts = shown_as(value)[1]  # type: ignore[index]
        whole = [int(value)] if len(texts) > 1 and -(2**63) <= int(value) < 2**63 else []
        return [*texts, *whole]
    return []


class LookAlikes(NamedTuple):
    """Values of one schema key, of different types, that show as one `text` (1 and "1"):
    `holders` is (value, variable, its live refs there) for each."""

    key: str
    text: str
    holders: list[tuple[Any, str, int]]


class VkeyLookAlikes(NamedTuple):
    """Values of one version key of one variable, of different types, that show as one `text`
    (note=1 and note="1"): `holders` is (value, its live records) for each."""

    var: str
    key: str
    text: str
    holders: list[tuple[Any, int]]


class Index:
    """Refs, the call cache and run reports of one project, behind verbs that keep themselves
    current: every read first folds what other processes journalled (one `stat` when nothing)."""

    def __init__(self, scistack_dir: Path, db_path: Path, schema_keys: list[str], *,
                 fsync: bool = False, sync_delay: float = 0.5, journal: JournalBackend | None = None,
                 read_only: str | None = None) -> None:
        """`read_only` (why, as a sentence): nothing is written; writes are refused with it."""
        self.read_only = read_only
        self._journal = journal or Journal(Path(scistack_dir) / "refs.log", fsync=fsync)
        self._fold = Fold(Path(scistack_dir) / FOLD_NAME, self._journal, read_only=bool(read_only))
        self._sql = SqlIndex(db_path, schema_keys, self._journal, read_only=bool(read_only))
        self._pending: list[dict[str, Any]] | None = None   # journal lines a batch holds back
        self._overlay = RefState()                            # ... and what they say, for reads
        self._facts: list[tuple] = []                         # facts of call records written here
        self._batch_depth = 0
        self._atomic = False  # the outermost batch is atomic: nothing it holds is journalled before it ends
        self._ending_batch = False  # a batch's flush runs: busy still, though the batch has ended
        self._ahead: dict[tuple[str, str], list[RefRecord]] = {}  # fold rows read in bulk ...
        self._ahead_calls: dict[str, dict[str, Any] | None] = {}   # ... valid until the journal grows
        self._call_keys: dict[str, str] = {}  # call oid -> call key: fixed once journalled
        self._var_names: set[str] = set()     # variables this process has checked for a put
        self._live_levels: dict[str, tuple[tuple[int, int], set[str]]] = {}  # `levels(live=True)`
        self._key_case = {k.lower(): k for k in schema_keys}  # a schema key, by its name ignoring case
        self._key_values_ok: set[tuple[str, type, Any]] = set()  # (key, type, value) checked by `_check_key_value`
        self._key_values_epoch = 0  # counts the folds of others' lines (each forgets `_key_values_ok`)
        self._pending_epoch = 0     # ... as it was when the batch began holding writes
        self._key_values_here: dict[tuple[str, str], set[str]] = {}  # (key, text) -> types this process saved
        # (var, version key) -> the JSON types its live values have (`_check_vkey_value`), with those
        # this process passed since; forgotten with `_key_values_ok`
        self._vkey_types: dict[tuple[str, str], set[str]] = {}
        self._snapshot = False  # inside reading_ahead: reads answer from one view, no stat each
        self._syncer = _BackgroundSync(self._sql, sync_delay, busy=self._busy)
        self.before_flush: Any = None   # the database flushes buffered objects here, first
        self.before_append: Any = None  # ... and waits for objects still uploading here
        self.record_exists: Any = None  # whether a call record is in the object store (set by the database)
        self.same_arguments: Any = None  # whether two call records name the same inputs (likewise)
        _INDEXES.add(self)

    def set_inliner(self, inliner: Any) -> None:
        """Who turns new oids into the views' inline values (`scistack.inline.Inliner`): a
        layer that may read objects; the index only stores the rows it returns."""
        self._sql.inliner = inliner

    @property
    def journal_path(self) -> Path:
        return self._journal.path

    # -- keeping current -----------------------------------------------------------------
    def refresh(self) -> None:
        """Fold lines other processes appended since we last looked (one `stat` if none)."""
        if not self._snapshot:
            self._catch_up()

    def _catch_up(self) -> None:
        if self._fold.catch_up():
            self._ahead.clear()
            self._ahead_calls.clear()
            self._forget_key_values()

    def _forget_key_values(self) -> None:
        """Lines this process did not fold as it wrote them were folded (another process's, as
        a rule): a key value that passed `_check_key_value` may have a live look-alike in them
        (another process deleted "5" and saved 5), so every value is checked again."""
        self._key_values_ok.clear()
        self._vkey_types.clear()
        self._key_values_epoch += 1

    @contextmanager
    def reading_ahead(self) -> Iterator[None]:
        """Read the project as it is when the block starts, with what `read_ahead` fetched in
        bulk: a run over 100k combinations makes a few bulk queries, not 300k point ones and a
        `stat` each. For a batch (its writes are held, and settled at flush against the project
        as it is then) or a read-only report."""
        self._catch_up()
        self._snapshot = True
        try:
            yield
        finally:
            self._snapshot = False
            self._ahead.clear()
            self._ahead_calls.clear()
            self._call_keys.clear()

    def read_ahead(self, var: str, addr_keys: list[str], *, call_keys: bool = False) -> None:
        """Fetch every version at these addresses in bulk, for the point reads that follow
        (with `call_keys`, also the call keys of the newest versions' call records)."""
        wanted = [k for k in dict.fromkeys(addr_keys) if (var, k) not in self._ahead]
        found = self._fold.versions_many(var, wanted)
        for key in wanted:
            self._ahead[(var, key)] = found.get(key, [])
        if call_keys:
            calls = [v[-1].call for v in found.values() if v[-1].call and v[-1].call not in self._call_keys]
            keys, entries = self._fold.call_keys_many(calls)
            self._call_keys.update(keys)
            self._ahead_calls.update(entries)  # the cache entries those keys hold now

    def newest_rows(self, inputs: list[str], outputs: list[str], addr_keys: list[str]) -> list[tuple] | None:
        """`Fold.newest_rows` (one row per address, in order): None when the answer needs
        records (a variable with version-key variants) or this process holds writes not yet
        in the index."""
        self.refresh()
        if self._pending or any(self.vkey_names(v) for v in (*inputs, *outputs)):
            return None
        return self._fold.newest_rows(inputs, outputs, addr_keys)

    def call_outputs(self, keys: list[str]) -> dict[str, tuple[str, str | None, str]] | None:
        """key -> (call, fn, outs JSON text) of these call-cache entries, in bulk; None when
        this process holds writes not yet in the index."""
        self.refresh()
        return None if self._pending else self._fold.call_outputs_many(keys)

    def read_ahead_calls(self, keys: list[str]) -> None:
        """Fetch these call-cache entries (or their absence) in bulk."""
        wanted = [k for k in dict.fromkeys(keys) if k not in self._ahead_calls]
        found = self._fold.calls_many(wanted)
        for key in wanted:
            self._ahead_calls[key] = found.get(key)

    def _fold_versions(self, var: str, addr_key: str) -> list[RefRecord]:
        ahead = self._ahead.get((var, addr_key))
        return self._fold.versions_at(var, addr_key) if ahead is None else ahead

    def generation(self) -> int:
        """How far the journal has grown (bytes): it changes whenever any process records a
        change, so a long-lived reader (the web view) can tell cheaply that it must look again."""
        return self._journal.size()

    # -- reading -------------------------------------------------------------------------
    # Inside a batch every read answers as the project will be once what it holds is written:
    # the fold's records, less those its held deletes take out (`RefState.gone`), and its held
    # saves. (The deletes had been left out: a record deleted in a batch still loaded, was
    # listed and fed a for_each there, while `db.sql`, which writes the batch first, had it gone.)
    def _held_gone(self, var: str) -> dict[str, set[int]] | None:
        """Address key -> the versions of `var` this process's batch holds deletes of (None: none)."""
        return self._overlay.gone.get(var) if self._pending else None

    def _less_held_deletes(self, var: str, records: list[RefRecord]) -> list[RefRecord]:
        """The fold's `records` of `var` without those the batch's held deletes take out."""
        gone = self._held_gone(var)
        if not gone:
            return records
        return [r for r in records if r.version not in gone.get(r.addr_key, ())]

    def _taken_by_held_deletes(self, var: str) -> tuple[int, set[str]]:
        """How many of the fold's live records of `var` the batch's held deletes take out, and
        the addresses they leave with none of the fold's."""
        gone = self._held_gone(var)
        if not gone:
            return 0, set()
        found = self._fold.versions_many(var, sorted(gone))
        taken, emptied = 0, set()
        for addr_key, versions in gone.items():
            here = found.get(addr_key, [])
            out = sum(1 for r in here if r.version in versions)
            taken += out
            if out == len(here):
                emptied.add(addr_key)
        return taken, emptied

    def variables(self) -> list[str]:
        """Names of variables with at least one live record."""
        self.refresh()
        found = self._fold.variables()
        if not self._pending:
            return found
        names = set(found) | set(self._overlay.variables())
        for var in self._overlay.gone:  # (every record deleted in the batch, none saved since)
            if var in names and not self._overlay.count(var) and \
                    self._fold.count(var) <= self._taken_by_held_deletes(var)[0]:
                names.discard(var)
        return sorted(names)

    def records(self, var: str) -> list[RefRecord]:
        """Every live record of a variable, all versions."""
        self.refresh()
        if not self._pending:
            return self._fold.records(var)
        return self._less_held_deletes(var, self._fold.records(var)) + self._held_kept(var)

    def versions_at(self, var: str, addr_key: str) -> list[RefRecord]:
        """All live versions at one address, oldest first."""
        self.refresh()
        found = self._fold_versions(var, addr_key)
        if not self._pending:
            return found
        return self._less_held_deletes(var, found) + self._held_kept(var, [addr_key])

    def _held_kept(self, var: str, addr_keys: list[str] | None = None) -> list[RefRecord]:
        """The batch's held records of `var` (at `addr_keys`: all when None) as its flush would
        write them now (`_held_numbers`): not those that repeat the value current at their
        address, the others numbered after the address's versions. They had been listed beside
        the record already there, and with the batch's own count (version 1 at an address with
        3), where the project after the batch has neither."""
        held = list(self._overlay.records(var)) if addr_keys is None else [
            r for key in addr_keys for r in self._overlay.versions_at(var, key)]
        if not held:
            return []
        numbers = self._held_numbers(var, addr_keys)
        kept = []
        for record in held:
            version = numbers.get((record.addr_key, record.version), record.version)
            if version is not None:
                kept.append(record if version == record.version else
                            RefRecord.from_entry(dict(record.to_entry(), version=version), record.addr_key))
        return kept

    def _held_numbers(self, var: str, addr_keys: list[str] | None = None) -> dict[tuple[str, int], int | None]:
        """(address key, held version) of each of the batch's held saves of `var` (at `addr_keys`:
        all when None) -> the version its flush would give it now, None for one it would drop:
        it repeats the value (of the same call) current at its address, in the fold or saved
        earlier in the batch (`_settle`, the flush's own rule, asked of the variable's held
        lines). For given addresses the lines are those of their held records and of the held
        deletes there (a batch writes what it holds before a delete, so a held delete precedes
        every held save and names a record of the fold), not a scan of the batch."""
        if addr_keys is None:
            mine = [e for e in self._pending or () if e["op"] in ("put", "del") and e.get("var") == var]
        else:
            gone, mine = self._held_gone(var) or {}, []
            for key in addr_keys:
                held = self._overlay.versions_at(var, key)
                if held:
                    mine += [*({"op": "del", "var": var, "addr": held[0].addr, "version": v}
                               for v in sorted(gone.get(key, ()))), *(r.to_entry() for r in held)]
        numbers: dict[tuple[str, int], int | None] = {}
        if any(e["op"] == "put" for e in mine):
            self._settle(mine, numbers)
        return numbers

    def highest_version(self, var: str, addr_key: str) -> int:
        """The highest version ever saved at an address (0: never), deleted ones included: a
        delete leaves the address's slot in the fold, so this says whether one was there."""
        self.refresh()
        return self._fold.max_version(var, addr_key)

    def current_at(self, var: str, addr_key: str, vkeys_key: str) -> RefRecord | None:
        """The newest record at an address with exactly these version keys."""
        self.refresh()
        if self._pending:
            if self._overlay.current_at(var, addr_key, vkeys_key) is not None:  # as the flush would write it
                return next((r for r in reversed(self.versions_at(var, addr_key)) if r.vkeys_key == vkeys_key), None)
            gone = (self._held_gone(var) or {}).get(addr_key)
            if gone:
                return next((r for r in reversed(self._fold_versions(var, addr_key))
                             if r.vkeys_key == vkeys_key and r.version not in gone), None)
        ahead = self._ahead.get((var, addr_key))
        if ahead is not None:
            return next((r for r in reversed(ahead) if r.vkeys_key == vkeys_key), None)
        return self._fold.current_at(var, addr_key, vkeys_key)

    def summaries(self) -> list[tuple[str, int, int, str]]:
        """(variable, current records, live records, last change) per variable, in one query."""
        self.flush()
        self.refresh()
        return self._fold.summaries()

    def count(self, var: str) -> int:
        """How many live records the variable has (every version)."""
        self.refresh()
        if not self._pending:
            return self._fold.count(var)
        return (self._fold.count(var) - self._taken_by_held_deletes(var)[0] + self._overlay.count(var)
                - self._held_repeats(var))

    def ever_saved(self, var: str) -> bool:
        """Whether `var` has, or once had, a record here (every one deleted since): one never
        saved is a step not run yet or a misspelt class, one emptied is neither."""
        return self.count(var) > 0 or self._fold.changes(var) > 0

    def _held_repeats(self, var: str) -> int:
        """How many of the batch's held saves of `var` its flush will drop (`_held_numbers`).
        They had been counted, with the record already there, until the flush: `count` said 3
        of a variable with 2 records."""
        return sum(1 for version in self._held_numbers(var).values() if version is None)

    def newest(self, var: str, limit: int) -> list[RefRecord]:
        """The variable's `limit` most recently saved live records (held ones too), newest first."""
        self.refresh()
        if not self._pending:
            return self._fold.newest(var, limit)
        gone = self._held_gone(var) or {}
        found = self._less_held_deletes(var, self._fold.newest(var, limit + sum(map(len, gone.values()))))
        return sorted([*found, *self._held_kept(var)], key=lambda r: (r.created_at, r.version),
                      reverse=True)[:limit]

    def byte_total(self, var: str) -> tuple[int, list[tuple[str, str, int | None]]] | None:
        """The variable's running total of bytes on disk and the objects that joined it since
        (oid, kind, remembered size or None); None before `follow_bytes`."""
        self.flush()
        self.refresh()
        return self._fold.byte_total(var)

    def settle_byte_total(self, var: str, measured: dict[str, tuple[int, frozenset[str]]]) -> int | None:
        """Remember `measured` (oid -> own bytes on disk, its parts at any depth) and add the
        objects that joined the variable, each part once; returns its total (None: it went
        meanwhile, with a journal folded anew)."""
        return self._fold.settle_byte_total(var, measured)

    def follow_bytes(self, var: str) -> None:
        """Start following the variable's bytes on disk (`byte_total` then answers)."""
        self._fold.follow_bytes(var)

    def refs_to(self, oid: str) -> list[RefRecord]:
        """Every live record that names `oid` (a scan: for `show`, not for hot paths)."""
        self.flush()
        self.refresh()
        return self._fold.refs_to(oid)

    def levels(self, var: str, *, live: bool = False) -> set[str]:
        """The sets of schema keys (comma-joined, sorted) the variable has been saved at. With
        `live`, those some live record has: a level's name stays after its last record is
        deleted, so where several are named the live addresses are read."""
        self.refresh()
        named = self._fold.names(var, "level") | {",".join(sorted(r.addr)) for r in self._overlay.records(var)}
        if not live or len(named) <= 1:
            return named
        stamp = (self._journal.size(), len(self._pending or ()))  # (a report asks several times)
        kept = self._live_levels.get(var)
        if kept is None or kept[0] != stamp:
            kept = self._live_levels[var] = (
                stamp, {",".join(sorted(addr)) for addr in decode_keys(self.live_addresses(var))})
        return set(kept[1])

    def judging(self) -> Judging:
        """Set-at-a-time staleness facts of the project as it is now, for one report (the
        facts of the call records this process wrote kept first)."""
        self.flush()
        self._keep_facts(now=True)
        self.refresh()
        return Judging(self._fold)

    def vkey_names(self, var: str) -> set[str]:
        """Version-key names any record of the variable has used (names are cheap hints)."""
        self.refresh()
        return self._fold.names(var, "vkey") | self._overlay.vkey_names(var)

    def param_names(self, var: str) -> set[str]:
        """Qualified lineage parameter names recorded for the variable."""
        self.refresh()
        return self._fold.names(var, "param") | self._overlay.param_names(var)

    def select(self, var: str, addr: dict[str, Any], vkeys: dict[str, Any], params: dict[str, Any],
               *, all_versions: bool = False, only: list[str] | None = None,
               finer: bool = False) -> list[RefRecord]:
        """Records matching every filter; unless `all_versions`, the newest per (addr, vkeys).
        An address naming one value of each of its keys, with records saved at exactly it,
        answers from those alone, the finer records below it left out (`load(subject=1)` is
        the per-subject value), unless `finer` (`load_all(subject=1)`: every record whose
        subject is 1). Inside a batch alike: its held saves and deletes count (a held save at
        the address had left the finer records in, a held delete of its records had hidden
        them). `only`: the address keys to look at (a selection above chose them from
        `live_addresses`); only their records are read."""
        exact_address = addr and not any(is_multi(v) for v in addr.values())
        if exact_address and not finer:  # (also with `only`: it narrows what is read, not the rule)
            exact = self.versions_at(var, key_of(addr))  # a point load: one indexed lookup
            if exact:
                if not vkeys and not params:
                    return exact if all_versions else newest_per_variant(exact)
                resolved = resolve_params(var, params, self.param_names(var)) if params else {}
                return select_from([exact], addr, vkeys, resolved, all_versions=all_versions)
        else:
            self.refresh()
        resolved = resolve_params(var, params, self.param_names(var)) if params else {}
        groups: dict[str, list[RefRecord]] = {}
        if only is not None:
            found = self._fold.versions_many(var, only)
            candidates = [record for key in sorted(only) for record in found.get(key, ())]
        else:
            candidates = self._candidates(var, addr)
        for record in self._less_held_deletes(var, candidates) if self._pending else candidates:
            groups.setdefault(record.addr_key, []).append(record)
        if self._pending:  # as the flush would write them, settled only where asked (`_held_kept`)
            wanted = only
            if wanted is None and addr:
                wanted = [key for key, _ in matching_addresses(
                    list(dict.fromkeys(r.addr_key for r in self._overlay.records(var))), addr)]
            for record in self._held_kept(var, wanted):
                groups.setdefault(record.addr_key, []).append(record)
        return select_from(groups.values(), addr, vkeys, resolved, all_versions=all_versions)

    def live_addresses(self, var: str) -> list[str]:
        """The address keys where the variable has a record (this process's held ones too)."""
        self.refresh()
        keys = self._fold.live_addresses(var)
        if self._pending:
            emptied = self._taken_by_held_deletes(var)[1]
            if emptied:
                keys = [key for key in keys if key not in emptied]
            keys = list(dict.fromkeys([*keys, *(r.addr_key for r in self._overlay.records(var))]))
        return keys

    def versions_here(self, var: str, addr_key: str) -> list[RefRecord]:
        """Every version saved at exactly this address (oldest first), as the project is now;
        empty when there is none or this process holds writes (then `select` decides). The
        point load's one indexed lookup."""
        self.refresh()
        return [] if self._pending else self._fold_versions(var, addr_key)

    def live_addresses_matching(self, var: str, addr: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
        """`matching_addresses(self.live_addresses(var), addr)`: (key, address) of the live
        addresses `addr` matches, those of the fold read through its index by key value
        (`_fold_matching`) when it can, so a partial address costs the addresses it names."""
        self.refresh()
        pairs = self._fold_matching(var, addr) if addr else None
        if pairs is None:
            return matching_addresses(self.live_addresses(var), addr)
        if self._pending:  # (as `live_addresses`)
            emptied = self._taken_by_held_deletes(var)[1]
            if emptied:
                pairs = [pair for pair in pairs if pair[0] not in emptied]
            seen = {key for key, _ in pairs}
            held = [key for key in dict.fromkeys(r.addr_key for r in self._overlay.records(var)) if key not in seen]
            pairs += matching_addresses(held, addr)
        return pairs

    def key_kinds(self, var: str, key: str) -> frozenset[str]:
        """The kinds of the values schema key `key` has among the live addresses of `var`
        (`Fold.key_kinds`: "number", "bool", "text", "other"), a batch's held saves too (its
        held deletes may leave one too many: a kind too many only costs a slower path); read
        from every live address when the fold cannot say."""
        self.refresh()
        kinds = self._fold.key_kinds(var, key)
        if kinds is None:  # (no index of the key now: every address read)
            found = {_key_kind(addr.get(key)) for _, addr in matching_addresses(self.live_addresses(var), {})}
            return frozenset(found - {None})
        if not self._pending:
            return kinds
        held = {_key_kind(addr.get(key)) for _, addr in matching_addresses(
            list(dict.fromkeys(r.addr_key for r in self._overlay.records(var))), {})}
        return frozenset(kinds | (held - {None}))

    def _fold_matching(self, var: str, addr: dict[str, Any]) -> list[tuple[str, dict[str, Any]]] | None:
        """(key, address) of the fold's live addresses of `var` that `addr` matches, found
        through the fold's index of the addresses by a key's value (`Fold.live_addresses_with`,
        made at the first such selection), so that `load_all(subject=1)` costs the addresses it
        names whatever the size of the variable: it had decoded every live address at each call
        (34-68 ms at 21k). None when the fold cannot look them up so (a key given None or NaN
        alone)."""
        wanted = {}
        for key, value in addr.items():
            values = list(value) if is_multi(value) else [value]
            if all(v is not None for v in values):  # (None: the addresses without the key)
                wanted[key] = values
        found = self._fold.live_addresses_with(var, wanted) if wanted else None
        return None if found is None else matching_addresses(found, addr)

    def _candidates(self, var: str, addr: dict[str, Any]) -> list[RefRecord]:
        """The records of the live addresses `addr` matches: those the fold's index by key
        value finds (`_fold_matching`), else, reading every live address, when they are fewer
        than half (`load(subject=1)` of a 300k-address variable: 1.8 -> 0.3 s), or every record
        of the variable (the filters decide). (An address with records of its own answers
        before, in `select`, unless the finer ones are asked for too.)"""
        if addr:
            pairs = self._fold_matching(var, addr)
            if pairs is not None:
                found = self._fold.versions_many(var, [key for key, _ in pairs])
                return [record for key, _ in pairs for record in found.get(key, ())]
            keys = self._fold.live_addresses(var)
            matched = [key for key, _ in matching_addresses(keys, addr)]
            if len(matched) < len(keys) // 2:
                found = self._fold.versions_many(var, matched)
                return [record for key in sorted(matched) for record in found.get(key, ())]
        return self._fold.records(var)

    def cached_call(self, key: str) -> dict[str, Any] | None:
        """The call-cache entry under `key` (`call` oid, `outs` oids, `multi`), if any."""
        if not self._snapshot:  # (`refresh`, one call fewer: a cache hit asks every time)
            self._catch_up()
        if self._pending:
            held = self._overlay.calls.get(key)
            if held is not None:
                return held
        if key in self._ahead_calls:
            return self._ahead_calls[key]
        return self._fold.call(key)

    def call_key_of(self, call_oid: str) -> str | None:
        """The call key a call record was cached under (every record ever cached)."""
        self.refresh()
        if self._pending and call_oid in self._overlay.call_keys:
            return self._overlay.call_keys[call_oid]
        key = self._call_keys.get(call_oid)
        if key is None:
            key = self._fold.call_key_of(call_oid)
            if key is not None and self._snapshot:
                self._call_keys[call_oid] = key
        return key

    def cache_entries_of(self, call_oids: list[str]) -> dict[str, str] | None:
        """call oid -> the call the cache entry under its key names now, for those of these
        call records whose key has an entry (in bulk, as `call_key_of` and `cached_call` one
        by one); None when this process holds writes not yet in the index."""
        self.refresh()
        if self._pending:
            return None
        keys, entries = self._fold.call_keys_many(call_oids)
        return {call: entries[key]["call"] for call, key in keys.items() if key in entries}

    def ref_counts(self, oids: list[str], var: str | None = None) -> dict[str, int]:
        """How many live refs (of `var`, if given) name each of these oids (absent: none)."""
        self.flush()
        self.refresh()
        return self._fold.ref_counts(oids, var)

    def calls_naming(self, oids: list[str]) -> list[dict[str, Any]]:
        """The call-cache entries one of whose outputs is one of these oids."""
        self.flush()
        self.refresh()
        return self._fold.calls_naming(oids)

    def calls(self) -> list[dict[str, Any]]:
        """Every call-cache entry."""
        self.flush()
        self.refresh()
        return list(self._fold.calls())

    def runs(self) -> list[RunRecord]:
        """Every for_each run report, oldest first."""
        self.flush()
        self.refresh()
        return self._fold.runs()

    def full_fold(self) -> tuple[RefState, int]:
        """The whole journal folded afresh in memory, and how many lines did not parse (2.2 GB
        at 1M refs: gc and fsck read `journal_slices` instead; tests compare them with this)."""
        self.flush()
        before = self._journal.skipped_lines
        entries, offset = self._journal.read_from(0)
        state = RefState()
        for entry in entries:
            state.apply(entry)
        state.offset = offset
        return state, self._journal.skipped_lines - before

    def journal_slices(self, limit: int = 16 << 20, *, containing: tuple[bytes, ...] = ()
                       ) -> Iterator[list[dict[str, Any]]]:
        """The journal's valid entries from its start, about `limit` bytes of lines at a time,
        to its end as it is when each slice is read: what gc folds in bounded memory (a
        `full_fold` of 1M refs holds 2.2 GB). `skipped_journal_lines` counts the rest. With
        `containing`, only lines holding one of those byte strings are parsed."""
        self.flush()
        offset = 0
        while True:
            entries, new_offset = self._journal.read_from(offset, limit, containing=containing)
            if new_offset <= offset:
                return
            yield entries
            offset = new_offset

    def skipped_journal_lines(self) -> int:
        """Lines this process's journal reader has skipped so far (torn or of the wrong shape)."""
        return self._journal.skipped_lines

    def unreadable_journal_lines(self) -> int:
        """Journal lines the project's index has folded past because no reader can take them
        (torn, or of the wrong shape): what they held is in no view until `scistack fsck`
        names them and they are mended or moved aside."""
        self.refresh()
        return self._fold.skipped_lines()

    def unreadable_journal_warning(self) -> str | None:
        """What to tell a user of `unreadable_journal_lines` (None: there are none)."""
        count = self.unreadable_journal_lines()
        if not count:
            return None
        lines = "1 journal line" if count == 1 else f"{count} journal lines"
        return (f"{lines} could not be read and {'is' if count == 1 else 'are'} left out of every view "
                "(a write cut short, or a malformed line from another writer). `scistack fsck` names "
                "them; `scistack fsck --quarantine` moves them aside to refs.log.quarantine (kept)")

    def counted_unreadable_journal_lines(self, count: int) -> None:
        """Set `unreadable_journal_lines` to what a check of the whole journal file found
        (fsck); a shared journal (lab mode) is not a file fsck reads, and keeps its count."""
        if isinstance(self._journal, Journal):
            self._fold.set_skipped_lines(count)

    def journal_tail(self, offset: int, limit: int | None = None) -> tuple[list[dict[str, Any]], int]:
        """The journal's entries after `offset` (a byte offset, or a lab journal's `seq`) and
        the offset after them: what a mirror of the journal for other readers appends; with
        `limit`, about that many bytes of lines."""
        self.flush()
        return self._journal.read_from(offset, limit)

    # -- writing -------------------------------------------------------------------------
    def put_ref(self, var: str, addr: dict, vkeys: dict, oid: str, kind: str, *,
                call: str | None = None, params: dict | None = None, summary: str = "") -> RefRecord:
        """Point (var, addr, vkeys) at `oid`; a no-op when it already points there."""
        self.check_names(var, vkeys)
        epoch = self._key_values_epoch
        for key, value in addr.items():
            self._check_key_value(var, key, value)
        for key, value in vkeys.items():
            self._check_vkey_value(var, key, value)
        addr_key, vkeys_key = key_of(addr), key_of(vkeys)
        params = tagged_params(params) if params else params
        if self._pending is not None:  # in a batch: versions (and key values) are checked again at flush
            return self._put(var, addr, vkeys, oid, kind, call, params, summary, addr_key, vkeys_key, epoch)
        if hasattr(self._journal, "append_if"):
            # (appended only if the journal ends where this process folded it: nothing since the check)
            record = self._put_if_current(var, addr, vkeys, oid, kind, call, params, summary, addr_key,
                                          vkeys_key)
            if record is not None:
                return record
        with self._journal.locked():
            record = self._put(var, addr, vkeys, oid, kind, call, params, summary, addr_key, vkeys_key, epoch)
        self._objects_arrived()
        return record

    def _objects_arrived(self) -> None:
        """Wait for this process's objects still uploading (raise if one failed), outside the
        lock: a no-op put or call entry writes no line, so `before_append` was never called,
        and a re-save of the current value returned while its object's upload was in flight,
        its failure swallowed at close (the object may be missing from the bucket: lost, or
        taken out by another machine's fsck --repair). Nothing waits when nothing is in flight."""
        if self.before_append is not None:
            self.before_append()

    @property
    def holding(self) -> bool:
        """Whether saves are held by a batch (written, and numbered, at its flush)."""
        return self._pending is not None

    def settled(self, held: RefRecord) -> RefRecord:
        """The record a save held by a batch became once written: numbered after what the
        project had then, or the record already there when the value was its current one.
        Writes what the batch holds so far if it still holds it."""
        if self._pending:
            self.flush()
        versions = [r for r in self.versions_at(held.var, held.addr_key)
                    if r.vkeys_key == held.vkeys_key and r.oid == held.oid]
        return next((r for r in versions if r.created_at == held.created_at), versions[-1] if versions else held)

    def check_names(self, var: str, vkeys: dict) -> None:
        """Refuse the names `put_ref` refuses (a variable or version key named like another but
        for case), so that a caller can check a whole batch before writing any of it (a batch
        is not a transaction: what it wrote before a refusal stays)."""
        if var not in self._var_names:
            self._check_new_variable(var)
        for key in vkeys:
            if self._key_case.get(key.lower(), key) != key:
                raise InvalidMetadataError(
                    f"{var}: the version key {key!r} is the schema key "
                    f"{self._key_case[key.lower()]!r} but for case (a typo?); SQL names ignore case, "
                    f"so it could not be told apart in the views or in where=. Write "
                    f"{self._key_case[key.lower()]}= to address the value")

    def check_output_names(self, names: list[str], vkeys: dict) -> None:
        """Refuse the output variables of a run (a Python or MATLAB `for_each`'s plan) that
        `put_ref` would refuse, before anything runs: each as `check_names` (beside the
        project's names; `vkeys` the version keys its results are saved with), and the names
        that would collide with each other once saved (case twins, one named like another's
        view): the outputs of one run are all new, so each passed alone, and the second was
        refused only when saved, after the first call's first output was (or, from MATLAB,
        after every combination had run)."""
        for name in names:
            self.check_names(name, vkeys)
        for i, name in enumerate(names):
            twin = _case_twin(name, names[:i])
            if twin is not None:
                raise InvalidNameError(
                    f"variables {twin!r} and {name!r} differ only by case; SQL names ignore case, so "
                    f"their views would be one: give one of them another name, e.g. {name}_2")
        for name in names:
            self._check_view_names(name, [other for other in names if other != name])

    def check_save(self, var: str, addr: dict, vkeys: dict) -> None:
        """Refuse what `put_ref` would refuse of a save's names, address and version-key values,
        before the caller writes anything for it (a result computed in memory brings its call and cache
        entry along when saved: journalled, they named a value no variable held)."""
        self.check_names(var, vkeys)
        for key, value in addr.items():
            self._check_key_value(var, key, value)
        for key, value in vkeys.items():
            self._check_vkey_value(var, key, value)

    def _check_key_value(self, var: str, key: str, value: Any,
                         held: RefState | None = None) -> None:
        """Refuse a schema-key value that shows as one of another type the project has (1 and
        "1", True and "true"; a float and an int or text only where the float is still a float
        when saved: a whole float becomes its int first (`address_value`), so 1.0 is 1, but one
        beyond 2**53, or one journalled before that rule and brought back by undelete, stays a
        float, and 1.0 shows as `1.0` and `1`): a column holding both is text in the SQL views
        and in `where=`, where the two are one value, so a query, a join or a filter returned
        one's records for the other's. Loads tell them apart; the scientist meant one subject,
        so the fix is to save it as the type already there. A value whose look-alike is saved
        only in records since deleted is allowed.

        A value that passed is remembered (`_key_values_ok`: a save's check is then one set
        lookup) until it may no longer pass: until lines of another process are folded
        (`_forget_key_values`), or until this process passes a look-alike of it (its look-alike
        deleted, "5" then 5): the look-alike is forgotten here, so a save of "5" beside a live 5
        is checked again (and refused). `held`: a batch being flushed (`_live_with`)."""
        memo = (key, type(value), value)
        if memo in self._key_values_ok:  # (a value this process saw pass: the usual save)
            return
        shown = shown_as(value)
        if shown is None:
            return
        kind, texts = shown
        self.refresh()
        found = {(text, other) for text in texts for other in self._key_values_here.get((key, text), ())}
        found.update(self._fold.key_values_shown_as(key, texts))
        for text, other in sorted(found):
            if other == kind:
                continue
            twin = _TYPE_OF[other](text)
            where = self._live_with(key, twin, held)
            if where is None:
                continue
            fix = f" ({other}({value!r}))" if other != "bool" else ""
            raise InvalidMetadataError(
                f"{var}: {key}={value!r} ({TYPE_WORDS[kind]}) looks like {key}={twin!r} ({TYPE_WORDS[other]}), "
                f"which {where[0]} already has; the SQL views and where= show both as {text}, so a query "
                f"could return one's records for the other's. It was not saved. Save it as {key}={twin!r}{fix} "
                "if it is that one, else give it a value that reads differently")
        for text in texts:
            self._key_values_here.setdefault((key, text), set()).add(kind)
        for text, other in found:  # (this value may be live now: its look-alikes must be checked again)
            if other != kind:
                twin = _TYPE_OF[other](text)
                self._key_values_ok.discard((key, type(twin), twin))
        self._key_values_ok.add(memo)

    def _check_vkey_value(self, var: str, key: str, value: Any, held: RefState | None = None) -> None:
        """Refuse a version-key value that shows as one of another type the variable's live
        records hold under the same version key (note=1 beside note="1", rep=True beside
        rep="true"), as `_check_key_value` refuses a schema key's: the variable's views and its
        `where=` show that column as text, where the two are one value (`where="note = '1'"`
        returned both). Another variable's values do not count: a version key is a column of
        its variable's views alone. A project that holds both (saved before this refusal)
        still opens and loads; only a new save of either is refused (`fsck` warns of them).

        The look-alikes a value can have are few (`_vkey_twins`: "1" has 1 and 1.0, "true" has
        True, "pre" none), and only those of a type the key's live values have (`_vkey_types`,
        read once per process and key by a seek per type) are looked up, in one query of the
        fold's `vkey_values` (how many of the variable's live refs hold each: a point lookup
        each), whatever the project's size; a
        batch's held saves count (`RefState.held_vkeys`) and the records its held deletes take
        out do not (`held`: a batch being flushed, else this process's own). A value that
        passed is remembered as a schema key's is (`_key_values_ok`), and forgotten with it;
        one with no look-alike (a label) is not: it costs no lookup, and a process saving a
        new label each time would keep them all."""
        memo = (("vkey", var, key), type(value), value)
        if memo in self._key_values_ok:  # (the usual save: one set lookup)
            return
        look_alikes = _vkey_twins(value)
        if not look_alikes:
            return
        overlay = held if held is not None else self._overlay
        self.refresh()
        types = self._vkey_types.get((var, key))
        if types is None:
            types = self._vkey_types[(var, key)] = self._fold.vkey_types(var, key)
        held_values = overlay.held_vkeys.get((var, key), ())
        # (a look-alike of a type the key's live values do not have is not looked up: a key that
        # always held one type, the usual, costs no query)
        twins = [twin for twin in look_alikes if _as_json(twin)[0] in types or (type(twin), twin) in held_values]
        kind, texts = shown_as(value)  # type: ignore[misc]
        wanted = [(_as_json(twin)[0], key_of({"v": twin})) for twin in twins if (type(twin), twin) not in held_values]
        counts = self._fold.vkey_counts(var, key, wanted) if wanted else {}
        for twin in twins:
            if not self._vkey_live(var, key, twin, counts.get(_as_json(twin)[0], 0), overlay):
                continue  # (never saved, deleted since, or taken out by a held delete)
            other, other_texts = shown_as(twin)  # type: ignore[misc]
            text = next(t for t in texts if t in other_texts)
            raise InvalidMetadataError(
                f"{var}: version key {key}={value!r} ({TYPE_WORDS[kind]}) looks like {key}={twin!r} "
                f"({TYPE_WORDS[other]}), which {var} already has; its SQL views and where= show both "
                f"as {text}, so a query could return one's records for the other's. It was not saved. "
                f"Save it as {key}={twin!r} if it is that one, else give it a value that reads differently")
        for twin in look_alikes:  # (this value may be live now: its look-alikes must be checked again)
            self._key_values_ok.discard((("vkey", var, key), type(twin), twin))
        types.add(_as_json(value)[0])
        self._key_values_ok.add(memo)

    def _vkey_live(self, var: str, key: str, value: Any, n: int, overlay: RefState) -> bool:
        """Whether a live record of `var` holds `value` (of its type) under version key `key`, as
        the project will be once the batch `overlay` holds is written; `n`: how many of the
        fold's live refs do (`Fold.vkey_counts`)."""
        if (type(value), value) in overlay.held_vkeys.get((var, key), ()):
            return True  # a held save
        gone = overlay.gone.get(var)
        if not n or not gone:
            return n > 0
        # held deletes: the fold's records they take out (as many as the batch deletes)
        taken = sum(1 for addr_key, records in self._fold.versions_many(var, sorted(gone)).items()
                    for r in records if r.version in gone[addr_key] and key in r.vkeys
                    and type(r.vkeys[key]) is type(value) and r.vkeys[key] == value)
        return taken < n

    def live_look_alikes(self) -> list[LookAlikes]:
        """The schema-key values of different types that show as one text (1 and "1") and
        both have live records: saved before `_check_key_value` refused the second.
        Set-at-a-time: `key_values` names the few texts ever
        saved as several types (a project that never mixed them costs one small query), and
        one pass over the refs in SQLite counts the live refs of those values."""
        self.refresh()
        texts: dict[tuple[str, str, Any], set[str]] = {}  # (key, JSON type, atom) -> texts shown as
        for key, text, kind in self._fold.key_texts_of_several_types():
            try:
                value = _TYPE_OF[kind](text)
            except (KeyError, ValueError):
                continue
            if kind == "float" and not math.isfinite(value):
                continue  # (not an address value JSON can hold)
            json_type = _JSON_TYPES[kind] if kind != "bool" else ("true" if value else "false")
            texts.setdefault((key, json_type, int(value) if kind == "bool" else value), set()).add(text)
        if not texts:
            return []
        found: dict[tuple[str, str], list[tuple[Any, str, int]]] = {}
        for key, json_type, atom, var, n in self._fold.live_refs_with_values(list(texts)):
            value = json_type == "true" if json_type in ("true", "false") else float(atom) if json_type == "real" else atom
            for text in texts.get((key, json_type, atom), ()):
                found.setdefault((key, text), []).append((value, var, n))
        return [LookAlikes(key, text, holders) for (key, text), holders in sorted(found.items())
                if len({type(value) for value, _, _ in holders}) > 1]

    def live_vkey_look_alikes(self) -> list[VkeyLookAlikes]:
        """The version-key values of one variable, of different types, that show as one text
        (note=1 and note="1") and both have live records: saved before `_check_vkey_value`
        refused the second. From `vkey_values` (one pass; a project that never mixed a version
        key's types has no candidate), each found value's records counted in its variable."""
        self.refresh()
        shown: dict[tuple[str, str, str], dict[tuple[str, Any], Any]] = {}  # (var, key, text) -> values
        for var, key, json_type, atom, _ in self._fold.vkey_keys_of_several_types():
            value = _from_json(json_type, atom)
            found = shown_as(value)
            for text in found[1] if found else ():
                shown.setdefault((var, key, text), {})[(json_type, atom)] = value
        out = []
        for (var, key, text), values in sorted(shown.items()):
            if len({type(v) for v in values.values()}) > 1:
                holders = [(value, self._fold.vkey_records(var, key, json_type, atom))
                           for (json_type, atom), value in values.items()]
                out.append(VkeyLookAlikes(var, key, text, holders))
        return out

    def _live_with(self, key: str, value: Any, held: RefState | None = None
                   ) -> tuple[str, dict[str, Any]] | None:
        """A variable and address of a live record whose `key` is `value`, of its type; None
        when none is (read only when a look-alike is refused). As the project will be once
        what a batch holds is written: its held saves count, and the records its held deletes
        remove do not (`with db.batch(): A.delete(subject="5"); B.save(.., subject=5)`, what
        the refusal and fsck tell a user to do, had been refused: the held delete was not
        seen). `held`: the overlay of a batch being flushed (else this process's own)."""
        overlay = held if held is not None else self._overlay
        for var in sorted(set(self._fold.variables()) | set(overlay.variables())):
            addr_keys = list(dict.fromkeys([*self._fold.live_addresses(var), *(r.addr_key for r in overlay.records(var))]))
            for addr_key, addr in matching_addresses(addr_keys, {key: value}):
                if type(addr.get(key)) is not type(value):
                    continue
                deleted = overlay.gone.get(var, {}).get(addr_key)
                if deleted and not overlay.versions_at(var, addr_key) and all(
                        r.version in deleted for r in self._fold.versions_at(var, addr_key)):
                    continue  # (a held delete takes every record there; the batch saved none since)
                return var, addr
        return None

    def _check_new_variable(self, var: str) -> None:
        """Refuse a new variable named like an existing one but for case (`EMG` beside `Emg`):
        SQL names ignore case, so DuckDB would show one view for both (the other's values
        were invisible to every query). A variable that already has records may always grow."""
        names = self.variables()
        twin = _case_twin(var, names)
        if twin is not None and var not in names:
            raise InvalidNameError(
                f"variable {var!r} differs from the project's variable {twin!r} only by case; SQL "
                f"names ignore case, so DuckDB would show both as one view. Save to {twin!r}, or "
                f"give this variable another name (e.g. {var}_2)")
        if var not in names:
            self._check_view_names(var, names)
            # a name checked before may clash with this new one (`Force` deleted, then a
            # `Force_all` saved): each is checked again at its next save
            self._var_names.clear()
        self._var_names.add(var)

    @staticmethod
    def _check_view_names(var: str, names: list[str]) -> None:
        """Refuse a new variable whose name is a view of another (`Force_all`, every version of
        `Force`), or one of whose views another variable's name holds (`Force` beside a
        `Force_all`): the variable's own view took the name, and `SELECT * FROM Force_all`
        silently showed the other's values. Whichever of the two is saved second is refused;
        a project holding both (saved before) opens, and the view not made is said once."""
        lower = {n.lower(): n for n in names}
        for suffix, shows in VIEW_SUFFIXES.items():
            owner = lower.get(var.lower()[:-len(suffix)]) if var.lower().endswith(suffix) else None
            if owner is not None:
                raise InvalidNameError(
                    f"variable {var!r} would take the name of the SQL view {owner}{suffix} ({shows} of "
                    f"the project's variable {owner!r}; SQL names ignore case); give it another name, "
                    f"e.g. {var[:-len(suffix)]}{suffix[1:].capitalize()}")
            holder = lower.get(f"{var}{suffix}".lower())
            if holder is not None:
                raise InvalidNameError(
                    f"variable {var!r} would have the SQL view {var}{suffix} ({shows}), but the "
                    f"project's variable {holder!r} has that name (SQL names ignore case); give "
                    f"{var!r} another name, e.g. {var}2")

    def _put(self, var: str, addr: dict, vkeys: dict, oid: str, kind: str, call: str | None,
             params: dict | None, summary: str, addr_key: str, vkeys_key: str, epoch: int) -> RefRecord:
        """`epoch`: `_key_values_epoch` before `addr`'s values were checked."""
        if self._pending is not None:  # held: compared with the project, and numbered, at flush
            current = self._overlay.current_at(var, addr_key, vkeys_key)
            version = self._overlay.next_version(var, addr_key)
        else:
            current = self.current_at(var, addr_key, vkeys_key)  # (folds what others wrote: under the lock)
            if self._key_values_epoch != epoch:  # ... and it came after the check: check against it
                for key, value in addr.items():
                    self._check_key_value(var, key, value)
                for key, value in vkeys.items():
                    self._check_vkey_value(var, key, value)
            version = self._fold.max_version(var, addr_key) + 1
        if current is not None and current.oid == oid and self._same_call(current.call, call):
            return current
        record = RefRecord(var, addr, vkeys, version, oid, kind, call, params or {}, summary, utc_now(),
                           addr_key, vkeys_key)
        self._write([record.to_entry()])
        return record

    def _put_if_current(self, var: str, addr: dict, vkeys: dict, oid: str, kind: str, call: str | None,
                        params: dict | None, summary: str, addr_key: str, vkeys_key: str) -> RefRecord | None:
        """A shared journal's single save in one round trip: numbered from the fold as it is,
        appended only if nothing was journalled since (`append_if`); None when that did not
        hold, when the fold holds lines this process has not seen (another process of this
        folder folded them), or when the value may already be saved there: the locked path
        decides."""
        start, current, top = self._fold.slot_as_folded(var, addr_key, vkeys_key)
        if start != self._fold.offset:
            # another process in this folder folded lines into the file both share (its own,
            # as a rule): `append_if(start)` would succeed though this process never saw them,
            # and a key value it remembers as passed may have a live look-alike in them
            # (`_forget_key_values` runs only when it folds them): the locked path catches up
            return None
        if current is not None and current.oid == oid:
            return None  # perhaps a no-op: judged against the journal as it is, under the lock
        record = RefRecord(var, addr, vkeys, top + 1, oid, kind, call, params or {}, summary, utc_now(),
                           addr_key, vkeys_key)
        entries = [record.to_entry()]
        if self.before_append is not None:
            self.before_append()  # never a name whose object has not arrived
        end = self._journal.append_if(entries, start)
        if end is None:
            return None
        if self._fold.appended(_as_read(entries), start, end):
            self._ahead.clear()
            self._ahead_calls.clear()
        self._syncer.poke()
        return record

    def put_call(self, key: str, call_oid: str, fn: str, outputs: list[str], *, multi: bool = False,
                 origins: str | None = None, facts: tuple | None = None) -> None:
        """Record a call-cache entry: call key -> call record oid (and its output oids).

        `multi` marks a function that returned a tuple, so a cache hit returns a tuple too
        (even of one element) without reading the call record. `origins` is the digest of
        where the record says its inputs came from (`lineage.calls.origins_digest`): a hit
        with inputs of the same origins then reads no record to know it names them. `facts`:
        the record's facts (`lineage.facts.call_facts`), kept in the fold after the entry is
        written, so that no report has to parse the record to learn them.
        """
        if facts is not None and not self._fold.read_only:
            self._facts.append((call_oid, *facts))
        if self._pending is not None:  # in a batch: appended under the lock when it flushes
            self._put_call(key, call_oid, fn, outputs, multi, origins)
            return
        with self._journal.locked():
            self._put_call(key, call_oid, fn, outputs, multi, origins)
        self._objects_arrived()  # (a call already cached writes no line)
        self._keep_facts()

    def _keep_facts(self, *, now: bool = False) -> None:
        """Keep the facts of the call records this process wrote (held up to `_FACTS_AT_ONCE`
        between flushes, or until `now`), if the fold is free (else a report learns them by
        parsing the records): never a reason for a save to fail."""
        if len(self._facts) >= _FACTS_AT_ONCE or (now and self._facts):
            facts, self._facts = self._facts, []
            try:
                self._fold.learn_calls(facts, wait=False)
            except (sqlite3.Error, ScistackError) as exc:
                log.debug("call facts not kept (%s); a report learns them from the records", exc)

    def _put_call(self, key: str, call_oid: str, fn: str, outputs: list[str], multi: bool,
                  origins: str | None) -> None:
        known = self._overlay.calls.get(key) if self._pending is not None else self.cached_call(key)
        if known is not None and known["call"] == call_oid:
            return
        entry = {"op": "call", "key": key, "call": call_oid, "fn": fn, "outs": outputs, "t": utc_now()}
        if multi:
            entry["multi"] = True
        if origins is not None:
            entry["origins"] = origins
        self._write([entry])

    def drop_calls(self, entries: list[dict[str, Any]]) -> int:
        """Drop call-cache entries (each only while its key still names the same call record:
        a later run of the call stays cached); returns how many were asked for."""
        if not entries:
            return 0
        self.flush()
        self._write([{"op": "uncall", "key": e["key"], "call": e["call"], "t": utc_now()} for e in entries])
        return len(entries)

    def put_run(self, run: RunRecord) -> None:
        """Journal a for_each run report."""
        with self._journal.locked():
            self._write([run.to_entry()])

    def deletions(self, var: str | None = None) -> dict[str, list[Deletion]]:
        """Per variable (only `var`, if given), each record a `del` entry removed, in journal
        order: read from the journal itself in slices (the fold forgets them), so this costs a
        pass over the journal; for undoing a delete, not for a hot path."""
        self.flush()
        puts: dict[tuple[str, str, int], RefRecord] = {}
        tops: dict[tuple[str, str], int] = {}  # (variable, address key) -> highest version put
        gone: dict[tuple[str, str, int], Deletion] = {}
        offset = 0
        while True:
            entries, after = self._journal.read_from(offset, _SCAN_BYTES)
            for entry in entries:
                if var is not None and entry.get("var") != var:
                    continue
                if entry["op"] == "put":
                    record = RefRecord.from_entry(entry)
                    puts[(record.var, record.addr_key, record.version)] = record
                    address = (record.var, record.addr_key)
                    tops[address] = max(tops.get(address, 0), record.version)
                elif entry["op"] == "del":
                    slot = (entry["var"], key_of(entry["addr"]), entry["version"])
                    if slot in puts:
                        gone[slot] = Deletion(puts.pop(slot), entry.get("t", ""), tops[slot[:2]],
                                              entry.get("why") == RETENTION)
            if not entries or after <= offset:
                break
            offset = after
        found: dict[str, list[Deletion]] = {}
        for deletion in gone.values():
            found.setdefault(deletion.record.var, []).append(deletion)
        return found

    def delete_refs(self, records: list[RefRecord], *, why: str | None = None) -> int:
        """Remove names (values stay in the store until gc); returns how many. `why`:
        `RETENTION` when gc's retention rule drops them (written on each `del` line, so
        undelete tells a user's delete from the lifecycle's)."""
        self.flush()
        now = utc_now()  # one time for one delete: `scistack undelete --cascade` brings it back whole
        reason = {"why": why} if why else {}
        entries = [{"op": "del", "var": r.var, "addr": r.addr, "version": r.version, "t": now, **reason}
                   for r in records]
        self._write(entries)
        return len(records)

    def _write(self, entries: list[dict[str, Any]]) -> None:
        if self.read_only:
            raise ReadOnlyProjectError(self.read_only)
        if self._pending is not None:
            self._pending.extend(entries)
            for entry in entries:
                self._overlay.hold(entry)
            return
        self._append(entries)
        self._syncer.poke()

    def _append(self, entries: list[dict[str, Any]]) -> None:
        """Append under the lock and fold our own lines as written (no read back)."""
        lines = [dumps_canonical(e) + b"\n" for e in entries]
        with self._journal.locked():
            start = self._journal.size()  # under the lock: no other writer moves it
            if self.before_append is not None:
                self.before_append()  # never a name whose object has not arrived
            append_lines = getattr(self._journal, "append_lines", None)  # (optional in a backend)
            end = append_lines(lines) if append_lines is not None else self._journal.append(entries)
        if self._fold_own(lines, start, end):
            self._ahead.clear()
            self._ahead_calls.clear()

    def _fold_own(self, lines: list[bytes], start: int, end: int) -> bool:
        """Fold lines this process just appended at `start`..`end`, `_FOLD_OWN_MAX` per
        transaction (memory stays bounded); True when any were folded here. A large batch left
        to be folded when read made the next process to open the project wait for it (60k
        refs: 4.5 s in `configure_database`), for lines whose writer had them in hand."""
        if len(lines) <= _FOLD_OWN_MAX:
            return self._fold.appended(_read_back(lines), start, end)
        if start + sum(map(len, lines)) == end:
            width = len  # a file's offsets are bytes
        elif start + len(lines) == end:
            width = lambda line: 1  # noqa: E731 - a shared journal's are row numbers (no gap)
        else:  # a torn line was ended first, or another writer's rows came between: read back
            return False
        folded = False
        for first in range(0, len(lines), _FOLD_OWN_MAX):
            chunk = lines[first:first + _FOLD_OWN_MAX]
            to = start + sum(map(width, chunk))
            if not self._fold.appended(_read_back(chunk), start, to):
                break  # another process folds: the rest is folded when read
            folded, start = True, to
        return folded

    # -- batching ------------------------------------------------------------------------
    @property
    def in_batch(self) -> bool:
        """Writes are being held by a batch (their objects may be unnamed yet)."""
        return self._batch_depth > 0

    @property
    def in_atomic_batch(self) -> bool:
        """Inside an atomic batch: a flush of what it holds is refused until it ends (a flush
        asked only to bound what a kill can lose, as `for_each`'s each second, is skipped)."""
        return self._batch_depth > 0 and self._atomic

    @contextmanager
    def batch(self, *, atomic: bool = False) -> Iterator[None]:
        """Journal all writes inside as one append at the end (durable when the block exits).
        Begun inside the try that ends it, which restores the depth it found: a Ctrl-C just
        before the try had left every later save of the session held, never journalled.

        An `atomic` batch that ends with an error (a Ctrl-C too) journals nothing, for a caller
        that records elsewhere what its batch did (the MATLAB commit's `committed.json`): a
        batch flushed on the error had journalled writes that nothing said were made, and the
        retry made them again. Only outermost, and with no read inside that writes what is held:
        a flush inside it while it holds writes (a read that numbers them, `db.flush()`) is
        refused with `AtomicBatchError` (`flush`), never journalled half way."""
        entered, generation = self._batch_depth, _forks[0]
        if atomic and entered:
            raise AtomicBatchError("an atomic batch cannot be nested in another batch (it would "
                                   "discard the outer batch's writes on an error); begin it outside "
                                   "any other batch, or make it a plain batch")
        completed = False
        try:
            if entered == 0:
                self._pending = []
                self._pending_epoch = self._key_values_epoch
                self._atomic = atomic
            self._batch_depth = entered + 1
            yield
            completed = True
        finally:
            if generation != _forks[0]:
                pass  # forked inside it: the parent's batch, which the parent ends (`_after_fork`)
            elif entered == 0:
                self._end_batch(discard=atomic and not completed)
            else:
                self._batch_depth = entered

    def _end_batch(self, *, discard: bool = False) -> None:
        """Flush an outermost batch, the background sync held off until the flush is done
        (`_busy`): the depth had been restored first, so the sync ran alongside the flush's
        appends and fold, sharing the GIL (and, in lab mode, the journal's connection). Marked
        busy before the depth drops (so `_busy` never lapses) and inside the try that unmarks
        it, which also ends the batch: a Ctrl-C anywhere leaves neither set. One before the
        flush took the held writes refuses the batch whole, as a failed `before_flush` does
        (they had stayed held at depth 0, and so had every later save of the session).
        `discard`: an atomic batch that failed, its held writes dropped, never journalled."""
        try:
            self._ending_batch = True
            if discard:
                self._pending, self._overlay, self._facts = None, RefState(), []
            self._batch_depth = 0  # (the flush's own reads and writes see the batch ended)
            self.flush()
        finally:
            self._batch_depth = 0
            self._atomic = False
            if self._pending is not None:  # the flush never took them: nothing of it journalled
                self._pending, self._overlay, self._facts = None, RefState(), []
            self._ending_batch = False

    def _after_fork(self) -> None:
        """In a forked child, at the fork: a batch open in the parent (in any of its threads:
        a `for_each` holds one) is the parent's, its held writes and facts the parent's to
        write. The child holds none of them and is in no batch: its saves are journalled at
        once, as outside a batch (a child ends with `os._exit`, as a pool's workers do: the
        saves a batch held there were lost), and leaving the inherited `with db.batch()`
        neither flushes nor raises (`batch` compares fork generations: `_forks`)."""
        self._pending, self._overlay, self._facts = None, RefState(), []
        self._batch_depth = 0
        self._atomic = self._ending_batch = False
        # likewise a `reading_ahead` of a parent's thread (a for_each planning): its one view
        # of the project and what it fetched would have answered the child's reads for good
        self._snapshot = False
        self._ahead.clear()
        self._ahead_calls.clear()
        self._call_keys.clear()

    def _busy(self) -> bool:
        """Whether the background sync must wait: inside a batch, or flushing one."""
        return self._batch_depth > 0 or self._ending_batch

    def flush(self) -> None:
        """Append writes held by a batch (after the objects they name are on disk), compared
        with the project as it is now and numbered after it, in bulk. Refused inside an atomic
        batch that holds writes: they are journalled when it ends, all of them or none."""
        if self._atomic and self._batch_depth and self._pending:
            raise AtomicBatchError(
                f"an atomic batch holds {len(self._pending)} write(s) that must be journalled "
                "together when it ends (all or nothing), and something inside it asked for them "
                "to be written now: db.flush(), a delete (it names the versions it removes), or "
                "a read that numbers held saves (a saved variable's version or record, a load by "
                "version= or where=, list_versions, a summary). Do that before the batch (a delete "
                "may also come first in it, before any write) or after it, or use a plain "
                "db.batch() if its writes need not be all or nothing")
        if self.before_flush is not None:
            try:
                self.before_flush()
            except BaseException:  # the objects did not arrive: the batch is refused whole
                self._pending = [] if self._batch_depth else None
                self._overlay = RefState()
                self._facts = []
                raise
        pending, self._pending = self._pending, None
        overlay, self._overlay = self._overlay, RefState()
        if pending:
            with self._journal.locked():
                self._catch_up()
                if self._key_values_epoch != self._pending_epoch:  # others wrote since the batch began
                    self._check_held_key_values(pending, overlay)
                self._append(self._settle(pending))
            self._syncer.poke()  # it waits for the batch to end (see `_BackgroundSync.busy`)
        self._keep_facts()
        if self._batch_depth:
            self._pending = []
            self._pending_epoch = self._key_values_epoch

    def _check_held_key_values(self, pending: list[dict[str, Any]], overlay: RefState) -> None:
        """Check the key values of the saves a batch held again, against the lines of other
        processes folded since it began (under the lock): one may have made a look-alike of
        one live (deleted "5" and saved 5), after the check at `put_ref` had passed it. A
        refusal refuses the batch whole, as a failed `before_flush` does: nothing of it is
        journalled, and the facts of its call records are not kept (a batch that goes on holds
        its later writes). Checked against the project as the batch leaves it (`overlay`: what
        it holds): a look-alike its held deletes take out is not live."""
        for entry in pending:
            if entry["op"] != "put":
                continue
            checks = [(self._check_key_value, key, value) for key, value in entry["addr"].items()]
            checks += [(self._check_vkey_value, key, value) for key, value in entry["vkeys"].items()]
            for check, key, value in checks:
                try:
                    check(entry["var"], key, value, overlay)
                except InvalidMetadataError as exc:
                    self._pending = [] if self._batch_depth else None
                    self._pending_epoch = self._key_values_epoch
                    self._facts = []  # (its calls were never journalled: as a failed `before_flush` drops them)
                    raise InvalidMetadataError(
                        f"{exc} (checked again as a batch of {len(pending)} write(s) was written, as another "
                        "process had written since: nothing the batch held was written; save it again, "
                        "with that value fixed)") from None

    def _settle(self, pending: list[dict[str, Any]],
                numbers: dict[tuple[str, int], int | None] | None = None) -> list[dict[str, Any]]:
        """Held entries against the fold (current, under the lock): a put that repeats the
        current value of the same call is dropped (another process, or an earlier batch, saved
        it), the others numbered after every version given so far; a call entry already cached
        is dropped. A record a delete held before the put takes out is not current: a value
        deleted and saved again in one batch had been dropped as already there, and the delete
        left the address empty. A few bulk queries, not several per entry. `numbers`: given,
        each put's (address key, held version) is mapped there to the version it is written
        with, None when dropped (`_held_numbers`)."""
        # each address's text once, its repeated values written once (7 `key_of`s an entry
        # between here and the fold took ~1 s of a 100k batch's exit)
        addr_keys = iter(keys_of([e["addr"] for e in pending if e["op"] == "put"]))
        keyed = [(e, next(addr_keys) if e["op"] == "put" else None) for e in pending]
        wanted: dict[str, list[str]] = {}
        for entry, addr_key in keyed:
            if addr_key is not None:
                wanted.setdefault(entry["var"], []).append(addr_key)
        versions = {var: self._fold.versions_many(var, keys) for var, keys in wanted.items()}
        highest = {var: self._fold.max_versions_many(var, keys) for var, keys in wanted.items()}
        cached = self._fold.calls_many([e["key"] for e in pending if e["op"] == "call"])
        settled, out = RefState(), []
        for entry, addr_key in keyed:
            if addr_key is not None:
                var, vkeys_key = entry["var"], key_of(entry["vkeys"])
                gone = settled.gone.get(var, {}).get(addr_key, ())  # (a delete held before it: not current)
                current = settled.current_at(var, addr_key, vkeys_key) or next(
                    (r for r in reversed(versions[var].get(addr_key, []))
                     if r.vkeys_key == vkeys_key and r.version not in gone), None)
                if current is not None and current.oid == entry["oid"] and self._same_call(
                        current.call, entry.get("call"), settled):
                    if numbers is not None:
                        numbers[(addr_key, entry["version"])] = None
                    continue
                version = max(settled.next_version(var, addr_key), highest[var].get(addr_key, 0) + 1)
                if numbers is not None:
                    numbers[(addr_key, entry["version"])] = version
                if version != entry["version"]:
                    entry = dict(entry, version=version)
                settled.add(RefRecord.from_entry(entry, addr_key))
                out.append(entry)
                continue
            if entry["op"] == "call":
                known = settled.calls.get(entry["key"]) or cached.get(entry["key"])
                if known is not None and known["call"] == entry["call"]:
                    continue
            settled.hold(entry)
            out.append(entry)
        return out

    def _same_call(self, a: str | None, b: str | None, held: RefState | None = None) -> bool:
        """The same call record, or two records of one call (same key: function and inputs,
        named from the same places).

        Two processes running the same call at once (two for_each runs, a retried task)
        store two call records that differ only in timing and environment; the second ref
        to the same value would be a duplicate version. Unless the record `a` (the ref's now)
        is gone from the store: the rerun that recomputed it must name its own, or the value's
        lineage stays unreadable however often it is run again.
        """
        if a == b:
            return True

        def key_of_call(oid: str | None) -> str | None:
            if not oid:
                return None
            return (held.call_keys.get(oid) if held is not None else None) or self.call_key_of(oid)

        key = key_of_call(a)
        if key is None or key != key_of_call(b):
            return False
        # `a` lost (damage, a pruned store): `b` is the record to name now; and a record of
        # the same values from elsewhere (the same value at another address, made by another
        # call) names other inputs: `b`'s lineage is the value's now (asked last, rarely: in
        # a lab the store answers over the network)
        if self.record_exists is not None and not self.record_exists(a):
            return False
        return self.same_arguments is None or self.same_arguments(a, b)

    # -- the DuckDB materialisation ------------------------------------------------------
    def query(self, sql: str, params: list | None = None) -> Any:
        """A read-only SQL query (one statement) on the DuckDB file (brought up to date first), as Arrow."""
        self.flush()
        return self._sql.query(sql, params)

    def query_each(self, sql: str) -> list[Any]:
        """Each statement's result of a read-only SQL script (`SELECT 1; SELECT 2`), as Arrow."""
        self.flush()
        return self._sql.query_each(sql)

    def newest_doubles(self, var: str) -> Any:
        """`SqlIndex.newest_doubles` (an Arrow table or None); None in a batch, whose held
        saves DuckDB has not seen."""
        return None if self._pending is not None else self._sql.newest_doubles(var)

    def value_types(self, var: str) -> tuple[frozenset, list[RefRecord]] | None:
        """(`SqlIndex.value_types` of `var`: its journalled records' inline types, as its views
        type the value column by; the records of `var` a batch holds, which DuckDB has not seen:
        the caller adds their types), or None when DuckDB cannot say, or the batch holds
        deletes of `var` (DuckDB still has the deleted records' types): the caller reads the
        values of every record then."""
        if self._pending and self._held_gone(var):
            return None
        found = self._sql.value_types(var)
        if found is None:
            return None
        return found, (self._held_kept(var) if self._pending else [])

    @contextmanager
    def detached_sync_turn(self) -> Iterator[bool]:
        """The project's one detached sync at a time (`SqlIndex.detached_turn`)."""
        with self._sql.detached_turn() as mine:
            yield mine

    def duckdb_in_step(self) -> bool:
        """Whether DuckDB has applied the whole journal (no connection)."""
        return self._sql.in_step()

    def poke_sync(self, *, unless_in_step: bool = False) -> None:
        """Ask the background thread to bring DuckDB up to date when it can (with
        `unless_in_step`, only when a cheap check says it is behind the journal)."""
        if not self.read_only and not (unless_in_step and self._sql.in_step()):
            self._syncer.poke()

    def sync(self, *, timeout: float | None = None) -> int:
        """Bring the DuckDB file up to date with the journal now."""
        if self.read_only:
            return 0  # (queries read the file as it is, and say when it is behind)
        self.flush()
        return self._syncer.sync_now(timeout)

    def quarantine_journal(self, numbers: set[int], is_bad: Any) -> list[tuple[int, str]]:
        """Move bad journal lines aside (see `Journal.quarantine`); a shared journal's bad
        rows are left for its database admin (they are skipped all the same)."""
        if not isinstance(self._journal, Journal):
            return []
        return self._journal.quarantine(numbers, is_bad)

    @property
    def moved_aside(self) -> Path | None:
        """Where `rebuild` moved a damaged DuckDB file (None if it did not)."""
        return self._sql.moved_aside

    def check_duckdb(self) -> None:
        """Open the DuckDB file read-only and read it (raises IndexDamagedError if it cannot)."""
        self._sql.check()

    def rebuild(self) -> int:
        """Rebuild everything derived from the journal (the fold and DuckDB); returns how many
        journal entries DuckDB applied."""
        if self.read_only:
            raise ReadOnlyProjectError(self.read_only)
        self.flush()
        self._fold.rebuild()
        return self._sql.rebuild()

    def project_meta(self) -> dict[str, str]:
        """A shared journal's project settings as they are now ({} for a local journal)."""
        read = getattr(self._journal, "read_project_meta", None)
        return read() if read is not None else {}

    def shared_setting(self, key: str, default: str) -> str | None:
        """A shared journal's project setting `key`, set to `default` when it has none yet (the
        first writer's stays: one statement under the journal's lock); None for a local journal."""
        settle = getattr(self._journal, "project_meta", None)
        return None if settle is None else settle({key: default}).get(key)

    def set_project_meta(self, values: dict[str, str]) -> None:
        """Change a shared journal's project settings (under `add_schema_key`'s lock)."""
        self._journal.set_project_meta(values)  # type: ignore[attr-defined] (lab journals only)

    def add_schema_key(self, keys: list[str], check: Any, write_config: Any) -> None:
        """Take `keys` (the old ones and a new last one) as the schema: under the journal's lock
        (no save of this project interleaves, on this machine or, in a lab, any other), with
        the index caught up, `check()` may refuse, then `write_config()` records them; DuckDB
        is rebuilt with a column for the new key. Addresses in the journal do not change."""
        if self.read_only:
            raise ReadOnlyProjectError(self.read_only)
        self.flush()
        with self._journal.locked():
            self.refresh()
            check()
            write_config()
            self._key_case = {k.lower(): k for k in keys}
        self._sql.rebuild_with_keys(keys)

    def close(self) -> None:
        """Flush, sync DuckDB (briefly: the journal keeps anything not yet copied), stop."""
        self._syncer.stop()  # first: a background sync begun after a run shared the GIL with
        self.flush()  # the writes below (the call facts kept at close: 0.1 -> 0.43 s)
        self._keep_facts(now=True)
        if not self.read_only:
            self._syncer.finish()
        self._journal.close()
        self._fold.close()


_FOLD_OWN_MAX = 5000  # lines folded as written per transaction
# call facts held (~3 MB): their keys are random, so each costs a page write unless many are
# kept in one transaction, in key order (at 600k calls: 55 us a call 2,000 at once, 31 20,000
# at once); the rest at close (20,000 took 2.9 s there, against a goal of 5 s for all of it)
_FACTS_AT_ONCE = 5000
_SCAN_BYTES = 16 << 20  # journal bytes read at a time by a scan of the whole journal
DETACH_BYTES = 8 << 20  # a DuckDB tail above this (~25k journal lines) is synced after exit
# seconds a closing process waits for another's hold on the DuckDB file (a DuckDB CLI or
# DBeaver session, read-only or not, holds it as long as it is open: close had waited 5 s)
CLOSE_WAIT = 0.5


class _BackgroundSync:
    """Copies the journal into DuckDB after `delay` seconds without writes, off the hot path,
    and never while the process is `busy` (inside a batch or a for_each run): decoding the
    journal holds the GIL, and sharing it slowed a 5,000-combination run 3x (2.2 s -> 7.1 s)."""

    def __init__(self, sql: SqlIndex, delay: float, busy: Any = lambda: False) -> None:
        self.sql = sql
        self.delay = delay
        self.busy = busy
        self._last_write = 0.0
        self._wake = threading.Event()
        self._halt = threading.Event()  # set by stop(): cuts the thread's waits short
        self._stopped = False
        self._thread: threading.Thread | None = None
        self._sync_lock = threading.Lock()
        _LIVE.add(self)

    def _after_fork(self) -> None:
        """In a forked child: the parent's sync thread does not run here and may have held the
        lock or the events' own locks (the child's `sync` or close waited for ever): new ones,
        and a thread of the child's own at its next write."""
        self._wake, self._halt, self._sync_lock = threading.Event(), threading.Event(), threading.Lock()
        self._thread = None

    def poke(self) -> None:
        self._last_write = time.monotonic()
        if self.sql.open_at_fork:
            return  # (a forked child that cannot use DuckDB: `SqlIndex._after_fork`)
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="scistack-sync", daemon=True)
            self._thread.start()
        self._wake.set()

    def _run(self) -> None:
        while not self._stopped:
            self._wake.wait()
            self._wake.clear()
            while not self._stopped:
                idle = time.monotonic() - self._last_write
                if idle < self.delay or self.busy():
                    self._halt.wait(max(self.delay - idle, 0.05))  # returns at once on stop()
                    continue
                if self.sql.detached_running():  # it holds the file, and takes up what is
                    self._halt.wait(max(self.delay, 1.0))  # written before its turn ends
                    continue
                try:
                    with self._sync_lock:  # gives way at once to the process closing
                        self.sql.sync(timeout=1.0, should_stop=lambda: self._stopped)
                    break
                except Exception:  # noqa: BLE001 - locked, busy or interrupted: the journal holds the data
                    if self._stopped:
                        break
                    self._halt.wait(self.delay)

    def sync_now(self, timeout: float | None = None) -> int:
        with self._sync_lock:
            return self.sql.sync(timeout=timeout)

    def stop(self) -> None:
        """Stop the thread, interrupting a sync in flight (the journal keeps its tail): a
        thread still inside DuckDB when the process exits aborts it ("terminate called
        without an active exception")."""
        self._stopped = True
        self._halt.set()
        self._wake.set()
        thread = self._thread
        if thread is not None and thread.is_alive() and thread is not threading.current_thread():
            self.sql.interrupt()
            thread.join(timeout=10.0)

    def finish(self) -> None:
        """Bring DuckDB in step as the process ends: now when the tail is small and the file
        free, else in a detached process (as `git gc --auto` detaches), so a script that saved
        a million values, or ran while a DuckDB CLI session held the file, exits at once and
        the views catch up later (the detached sync waits for the file). Never raises: the
        journal holds everything, and any later scistack process syncs what is left."""
        if self.sql.open_at_fork:
            return  # a forked child that cannot use DuckDB (`SqlIndex._after_fork`): the parent syncs
        lag = self.sql.lag()  # unknown (None): as long as the whole journal, at most
        long_tail = (self.sql.journal.size() if lag is None else lag) > DETACH_BYTES
        try:
            if lag != 0 and self.sql.detached_running():
                return  # it takes up this tail too (a report run while one catches up had started another)
            if long_tail and self._may_detach():
                return self._detach()
            try:
                self.sync_now(timeout=CLOSE_WAIT)
            except DatabaseLockedError as exc:
                # (said here, the holder whole: the catch-all below cut the message, whose first
                # line holds two paths, at 200 characters, "held in ~/.p", the home folder written whole)
                detached = self._may_detach()
                if detached:
                    self._detach()
                holder = held_by(exc)
                # (another Python process, most often a scistack one syncing: nothing to act on)
                level = logging.INFO if re.search(r"python[\d.]*(\.exe)? \(PID", holder) else logging.WARNING
                log.log(level, "DuckDB was not brought up to date at close: %s is held by another process "
                        "(%s); %s, and the journal holds everything meanwhile", self.sql.path.name, holder,
                        "a background sync brings it up to date once it is let go" if detached else
                        "the next scistack process to open the project brings it up to date")
        except IndexDamagedError as exc:  # no later process catches up by itself: said whole, with the fix
            log.warning("DuckDB was not brought up to date at exit: %s", exc)
        except Exception as exc:  # noqa: BLE001 - DuckDB's own errors too (a full disk, a lock)
            log.warning("DuckDB was not brought up to date at exit (%s); the journal holds "
                        "everything and the next scistack process catches up",
                        str(exc).strip().splitlines()[0][:200] if str(exc).strip() else type(exc).__name__)

    def _may_detach(self) -> bool:
        """Whether a detached process may sync (a local journal, and not asked otherwise)."""
        return os.environ.get("SCISTACK_SYNC") != "foreground" and isinstance(self.sql.journal, Journal)

    def _detach(self) -> None:
        # the project is opened there as here (its views need objects read above the index):
        # the module is named, not imported, so the layers stay as they are
        subprocess.Popen(
            [sys.executable, "-m", "scistack.sync_after_exit", str(self.sql.path)],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            start_new_session=True, close_fds=True)


_LIVE: weakref.WeakSet[_BackgroundSync] = weakref.WeakSet()
_INDEXES: weakref.WeakSet[Index] = weakref.WeakSet()
_forks = [0]  # how many times this process's line has forked (a batch begun before is the parent's)


def _key_kind(value: Any) -> str | None:
    """A decoded address value's kind as `Fold.key_kinds` names it (None: no value)."""
    if value is None:
        return None
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, (int, float)):
        return "number" if value == value else "other"  # (a NaN)
    return "text" if isinstance(value, str) else "other"


def _case_twin(name: str, names: list[str]) -> str | None:
    """The first of `names` that is `name` but for case (`EMG` for `Emg`), if any: SQL names
    ignore case, so DuckDB would show one view for both."""
    lower = name.lower()
    return next((n for n in names if n.lower() == lower and n != name), None)


def _after_fork_in_child() -> None:
    _forks[0] += 1
    for syncer in list(_LIVE):
        syncer._after_fork()
    for index in list(_INDEXES):
        index._after_fork()


if hasattr(os, "register_at_fork"):  # (no fork, no need: Windows)
    os.register_at_fork(after_in_child=_after_fork_in_child)


@atexit.register
def _sync_at_exit() -> None:
    for syncer in list(_LIVE):
        if syncer._thread is not None and not syncer._stopped:
            syncer.stop()
            try:
                syncer.finish()
            except Exception:  # noqa: BLE001 - never fail an exit; the journal has everything
                pass


def _as_read(entries: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Entries exactly as a reader of the journal decodes them (canonical JSON round trip)."""
    return _read_back([dumps_canonical(e) for e in entries])


def _read_back(lines: list[bytes]) -> list[dict[str, Any]]:
    """Journal lines parsed as every reader parses them (`loads_line`: orjson, 2-2.5x faster
    than `json`, which a batch's own fold used: ~0.4 s per 100k lines)."""
    big = maybe_big_int(b"".join(lines))
    return [loads_line(line, may_be_big=big) for line in lines]
