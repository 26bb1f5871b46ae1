"""The DuckDB file: a queryable materialisation of the ref journal, plus readable views.

DuckDB names content by oid: `refs` (variable, address, version keys, version, oid, call,
lineage parameters, a short preview), `calls` (call key -> call oid), `runs`, and, when the
database hands the sync an `inliner` (the layer above, which may read objects), `vals` (each
oid's value as SQL types), `frame_rows` and `call_info` (function names). The views
(`index/views.py`) join them: `SELECT subject, session, value FROM MaxActivation`. `sync` applies the journal's new lines in one transaction together with the
offset it has reached, so a crash between the two cannot apply a line twice or skip one.

A connection is opened only for the duration of a sync or a query: an idle Python process
never locks out the DuckDB CLI, DBeaver, `scistack` commands or a second script. The file
is written in DuckDB's v1.0.0 storage format so that those tools, often older than the
Python package, can open it.
"""

from __future__ import annotations

import ctypes
import fcntl
import functools
import json
import logging
import operator
import os
import re
import threading
import time
import weakref
from collections.abc import Callable, Iterator
from concurrent.futures import Future
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Any

import numpy as np

from scistack._atomic import temporary_sibling
from scistack.errors import (DatabaseLockedError, IndexDamagedError, IndexSchemaError, InvalidNameError, QueryError,
                             ReadOnlyProjectError, ScistackError, storage_full)
from scistack.gcpause import paused
from scistack.index import simple_puts
from scistack.index.journal import Journal, size_now
from scistack.index.state import call_changes, key_of, keys_of
from scistack.index.views import STATIC_VIEWS, VIEW_SUFFIXES, add_shapes, doubles_sql, refresh_views, shown_as_text
from scistack.index.writer import Writer
from scistack.lazy_import import lazy_module
from scistack.objects.canonical_json import maybe_big_int

duckdb = lazy_module("duckdb", globals(), "duckdb")
pa = lazy_module("pyarrow", globals(), "pa")
pc = lazy_module("pyarrow.compute", globals(), "pc")

log = logging.getLogger(__name__)

SCHEMA_VERSION = 15  # 4: version is BIGINT (a journal line may carry any int64); 5: scistack.shapes; 6: vals.okey;
# 7: vals.okey2 (added in place to a file of schema 6); 8: numpy time arrays inlined as TIMESTAMP[] /
# INTERVAL[], month durations as months (the rows of 7 that change are inlined again: `_reinline_times`);
# 9: a Series' or an Arrow table's shape and dtype as its summary says them, not its frame's (in place,
# from the summaries: `_redescribe_tables`); 10: created_at and last_change as TIMESTAMPTZ in the views
# (every view made again in place); 11: `<Var>_branches` (made in place too); 12: N-D arrays keep NaN and
# the infinities, a frame's times their precision, a chunked table its bytes (those rows inlined again:
# `_reinline_values`); 13: scistack.deleted, the times of deletes (`scistack_variables.last_change`;
# made in place, empty: deletes applied before count from the next `fsck --reindex`, as in the fold);
# 14: a text column of lineage parameters or version keys writes a float and a NaN as a key column
# does (`views._json_text`: `1e+100`, `nan`, not `1e100` and the tag; every view made again in place);
# 15: a value column mixing text, true/false and numbers is text, not JSON (`views.value_type`; made again in place)
INTERNAL_SCHEMA = "scistack"  # the DuckDB schema of scistack's own tables
_INLINE_STEP = 2000  # values inlined between two looks at `should_stop`
# oids and calls a first sync or a rebuild keeps in memory to know what it has inlined (~150 B
# each) before it asks DuckDB instead, waiting for the slice before: Python's memory stays
# bounded however large the project (a 10M-ref rebuild would have kept ~1.5 GB)
_REMEMBER_INLINED = 500_000
_SMALL_ASK = 256  # oids a sync looks up by `okey` (more: one join on `okey` and `okey2`)
_INSERT_ROWS = 20000  # inline rows per INSERT (each statement costs DuckDB ~10 ms beyond its rows)
@functools.cache
def _import_pandas() -> None:
    """DuckDB's Python client imports pandas at the first statement given parameters (1.5.6):
    3 s on a busy machine, and done with the file open, it had kept a background sync's
    write lock that long (a DuckDB CLI, another process's sync, refused meanwhile). Imported
    before the file is opened instead; every connection's work needs it anyway."""
    import pandas  # noqa: F401


_SAY_AFTER = 2.0  # seconds a query waits for another process's hold before it says so
_SYNC_BYTES = 16 << 20  # journal bytes read and applied at a time (a rebuild of 1M refs took 3.1 GB whole)
# a round's first slice is smaller: DuckDB has nothing to do until Python has split it
_FIRST_SLICE_BYTES = 2 << 20
# journal bytes per transaction: each costs DuckDB more than its rows (100k refs with values
# in 3 transactions took 0.87 s against 0.51 s in one); a stop commits what is done first
_COMMIT_BYTES = 64 << 20
# journal bytes per connection: the process's memory grows with every transaction one DuckDB
# connection writes and is given back when it closes (a 1M-ref rebuild's anonymous RSS climbed
# to 891 MB on one connection; 759 MB in rounds); opening the file again costs ~0.05 s
_ROUND_BYTES = 128 << 20
STORAGE_COMPATIBILITY = "v1.0.0"
REF_COLUMNS = ("var", "addr", "vkeys", "version", "oid", "kind", "call", "params", "summary", "created_at")
RESERVED_NAMES = frozenset(REF_COLUMNS) | {"data", "value", "metadata", "rn", "as_df", "as_table", "where", "fn",
                                           *STATIC_VIEWS}
_IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


def check_identifier(name: str, what: str) -> str:
    """Refuse names that cannot be SQL identifiers or collide with scistack's columns."""
    if not isinstance(name, str) or not _IDENTIFIER.fullmatch(name):
        raise InvalidNameError(
            f"{what} {name!r} cannot be used: names must start with an ASCII letter (A-Z, a-z) or "
            "underscore and contain only ASCII letters, digits and underscores (they become SQL "
            "columns and views, and MATLAB fields)"
        )
    if name.lower() in RESERVED_NAMES:
        raise InvalidNameError(
            f"{what} {name!r} is reserved by scistack ({', '.join(sorted(RESERVED_NAMES))}); "
            f"rename it, e.g. {name}_"
        )
    return name


def quote(name: str) -> str:
    """A quoted SQL identifier."""
    return '"' + name.replace('"', '""') + '"'


# a variable's deletes' journal times, a row per variable and synced batch (the view reads the
# newest): a delete changes a variable, so `scistack_variables.last_change` counts it, as `ls` does
_DELETED_TABLE = "CREATE TABLE IF NOT EXISTS scistack.deleted (var VARCHAR NOT NULL, deleted_at VARCHAR NOT NULL)"

# scistack's own tables live in the `scistack` schema, so that the views in `main` can take any
# variable name (a variable called `refs` or `meta` is fine). Schema 1 had them in `main`.
_TABLES = [
    "CREATE SCHEMA IF NOT EXISTS scistack",
    "CREATE TABLE scistack.meta (key VARCHAR PRIMARY KEY, value VARCHAR)",
    "CREATE TABLE scistack.calls (key VARCHAR PRIMARY KEY, call VARCHAR NOT NULL, fn VARCHAR, "
    "outs VARCHAR, created_at VARCHAR)",
    "CREATE TABLE scistack.runs (run_id VARCHAR, entry VARCHAR, created_at VARCHAR)",
    # inline forms, keyed by content (objects are immutable: a row never goes stale)
    "CREATE TABLE scistack.vals (oid VARCHAR NOT NULL, sqltype VARCHAR, shape BIGINT[], dtype VARCHAR, "
    "nbytes BIGINT, i BIGINT, d DOUBLE, b BOOLEAN, s VARCHAR, j VARCHAR, li BIGINT[], ld DOUBLE[], "
    "lb BOOLEAN[], ls VARCHAR[], okey BIGINT, okey2 BIGINT)",  # see _OKEY
    "CREATE TABLE scistack.frame_rows (oid VARCHAR NOT NULL, row_n BIGINT, row VARCHAR)",
    "CREATE TABLE scistack.call_info (call VARCHAR NOT NULL, fn_name VARCHAR, fn_module VARCHAR)",
    # one ref per variable and shape of its address, version keys, parameters and value type:
    # what the views' columns are derived from, without a scan of every ref (views.py)
    "CREATE TABLE scistack.shapes (var VARCHAR NOT NULL, addr VARCHAR, vkeys VARCHAR, params VARCHAR, "
    "sqltype VARCHAR)",
    _DELETED_TABLE,
]
_DERIVED = ("refs", "calls", "runs", "vals", "frame_rows", "call_info", "shapes", "deleted")


class SyncStopped(Exception):
    """A sync gave way to its process closing (internal: the background thread ends on it)."""


def _check(should_stop: Callable[[], bool]) -> None:
    if should_stop():
        raise SyncStopped("the process is closing; DuckDB catches up later")


class SqlIndex:
    """Opens the DuckDB file on demand, keeps it in step with the journal, answers SQL."""

    def __init__(self, path: str | Path, schema_keys: list[str], journal: Journal, *,
                 lock_timeout: float = 60.0, read_only: bool = False) -> None:
        self.path = Path(path)
        self.read_only = read_only  # a project that cannot be written: its file is read as it is
        self.schema_keys = list(schema_keys)
        self.journal = journal
        self.lock_timeout = lock_timeout
        self.moved_aside: Path | None = None  # where a damaged file went (rebuild)
        self._open: set[duckdb.DuckDBPyConnection] = set()  # connections in use (interrupt)
        self.inliner: Any = None  # values.(oids) and calls(oids) -> Arrow tables, from above
        self._inlined: dict[str, Any] | None = None  # see _apply_journal
        self._retry_unreadable = False  # once a sync: its first slice tries UNREADABLE rows again
        self._open_at_fork = False  # a forked child whose parent had a connection open (`_after_fork`)
        self._value_types: dict[str, tuple[int, frozenset]] = {}  # var -> (journal size, types): `value_types`
        _SQL_INDEXES.add(self)

    def _after_fork(self) -> None:
        """In a forked child: a connection the parent had open (its background sync, a query
        in another thread) is the parent's DuckDB instance, whose threads are not here and whose
        file lock is the parent's: closing it would checkpoint the file unlocked, and a new
        connection to the file would be handed that same instance. It is kept, never closed,
        and this child does not use DuckDB (`connect` refuses; the parent, or the next process,
        brings DuckDB up to date from the journal). With none open, the child connects anew."""
        if self._open:
            for con in self._open:
                ctypes.pythonapi.Py_IncRef(ctypes.py_object(con))  # never finalised here
            self._open, self._open_at_fork = set(), True

    @property
    def open_at_fork(self) -> bool:
        return self._open_at_fork

    @contextmanager
    def connect(self, *, read_only: bool = False, timeout: float | None = None, say_after: float | None = None,
                should_stop: Callable[[], bool] | None = None) -> Iterator[duckdb.DuckDBPyConnection]:
        """A short-lived connection, retried with backoff while another process holds the file
        (until `should_stop` says so: a background sync as its process closes).

        Connections to one file are serialised within the process: DuckDB refuses a second
        connection with another configuration (read-only vs read-write), and the background
        sync thread must not collide with a query in the main thread.
        """
        if self._open_at_fork:
            raise DatabaseLockedError(
                f"{self.path} was open in the process this one was forked from (its DuckDB connection "
                "cannot be used or closed in a forked child), so SQL and its views are not available in "
                "this process; saves and loads are. Run SQL in the parent, or start this process with "
                "multiprocessing.get_context('spawn') (or 'forkserver') and call configure_database in it")
        with _process_lock(self.path):
            with self._connect(read_only, self.lock_timeout if timeout is None else timeout, say_after,
                               should_stop) as con:
                try:
                    yield con
                except duckdb.Error as exc:  # a damaged block found by a query, not at open
                    if _damaged(exc) and not _held_elsewhere(exc):
                        raise self._damage(exc) from None
                    if _not_utf8(exc):  # (a sync's or a lookup's statement over such a row)
                        raise IndexDamagedError(
                            f"the DuckDB index {self.path} holds {_NOT_UTF8_ROW} "
                            f"({str(exc).strip().splitlines()[0][:160]}): {_NOT_UTF8_FIX}") from None
                    raise

    def _damage(self, exc: Exception) -> IndexDamagedError:
        return IndexDamagedError(
            f"the DuckDB index {self.path} is damaged ({str(exc).strip().splitlines()[0][:160]}). "
            "It only mirrors the journal, where every value's name is safe: run `scistack fsck "
            "--reindex` to move it aside and rebuild it")

    @contextmanager
    def _connect(self, read_only: bool, timeout: float, say_after: float | None = None,
                 should_stop: Callable[[], bool] | None = None) -> Iterator[duckdb.DuckDBPyConnection]:
        """`say_after`: seconds of waiting for another process's hold after which a warning
        says what is waited for (a query the user waits on; the background sync waits quietly).
        `should_stop`: asked between tries (a status run while a big run's DuckDB sync went on
        waited ~1 s at exit for its own background sync's wait for the file to end)."""
        deadline = time.monotonic() + timeout
        say_at = None if say_after is None else time.monotonic() + say_after
        delay = 0.005
        if not read_only:
            _drop_unwritten(self.path)
        _import_pandas()
        while True:
            try:
                con = duckdb.connect(
                    str(self.path), read_only=read_only,
                    config={"storage_compatibility_version": STORAGE_COMPATIBILITY},
                )
                break
            except duckdb.Error as exc:
                if _damaged(exc) and not _held_elsewhere(exc):
                    raise self._damage(exc) from None
                if not isinstance(exc, (duckdb.IOException, duckdb.ConnectionException, duckdb.BinderException)):
                    raise
                busy = _held_elsewhere(exc)
                if not busy or time.monotonic() > deadline:
                    if busy:
                        # (a wait under a second, 0 for a look at once, is not a wait: it said "for 0 s")
                        held = (f"stayed held by {held_by(exc)} for {timeout:.0f} s" if timeout >= 1 else
                                f"is held by {held_by(exc)}")
                        raise DatabaseLockedError(
                            f"{self.path} {held} ({exc}). Close the DuckDB CLI/DBeaver session or the other "
                            "script holding it; saves are not lost meanwhile (they are journalled)"
                        ) from None
                    raise
                if say_at is not None and time.monotonic() > say_at:
                    say_at = None
                    log.warning("%s is held by another process %s; waiting for it, up to %.0f s. Loads do "
                                "not wait for it; open it there read-only (duckdb -readonly %s) and SQL "
                                "reads it meanwhile", self.path,
                                "for writing (a DuckDB CLI or DBeaver session that opened it for writing, "
                                "or a scistack process syncing it)" if read_only else
                                "(a DuckDB CLI or DBeaver session, read-only or not: writing needs it alone; "
                                "or a scistack process syncing it)", timeout, self.path.name)
                if should_stop is not None:
                    _check(should_stop)
                time.sleep(delay)
                delay = min(delay * 2, 0.25)
        try:  # (kept inside: a Ctrl-C just before the try had left it open, the file locked)
            self._open.add(con)
            yield con
        finally:
            self._open.discard(con)
            con.close()

    def interrupt(self) -> None:
        """Abort the statements running on this index's connections (a background sync as the
        process closes: a thread still inside DuckDB at exit aborts the interpreter)."""
        for con in list(self._open):
            try:
                con.interrupt()
            except duckdb.Error:
                pass

    # -- schema ------------------------------------------------------------------------
    def ensure_schema(self, con: duckdb.DuckDBPyConnection) -> None:
        """Create or migrate the tables; refuse files from a newer scistack."""
        found = self._found_version(con)
        if found > SCHEMA_VERSION:
            raise IndexSchemaError(
                f"{self.path} was written by a newer scistack (index schema {found}, this one "
                f"knows {SCHEMA_VERSION}); upgrade scistack (pip install -U scistack)"
            )
        if found == SCHEMA_VERSION and not self._lacks_key_columns(con):
            return
        if found == SCHEMA_VERSION:  # a schema key added, its rebuild cut short: built again below
            found = 2
        con.execute("BEGIN")
        if found in (6, 7, 8, 9, 10, 11, 12, 13, 14):  # changed in place
            if found == 6:  # a column more, computed from the oids (0.5 s at 3M rows)
                con.execute("ALTER TABLE scistack.vals ADD COLUMN okey2 BIGINT")
                con.execute(f"UPDATE scistack.vals SET okey2 = {_OKEY2}")
            if found in (6, 7):
                _reinline_times(con)
            if found in (6, 7, 8):
                _redescribe_tables(con)
            if found <= 11:
                _reinline_values(con)
            con.execute(_DELETED_TABLE)  # 13
            every = [var for (var,) in con.execute("SELECT DISTINCT var FROM scistack.refs").fetchall()]
            refresh_views(con, self._key_columns(con), every)  # 10, 11, 13, 14, 15: changed views
            self._set_meta(con, "schema_version", str(SCHEMA_VERSION))
            con.execute("COMMIT")
            return
        if found == 1:  # derived state: drop it, the journal is applied again below
            for (var,) in con.execute("SELECT DISTINCT var FROM main.refs").fetchall():
                con.execute(f"DROP VIEW IF EXISTS main.{quote(var)}")
            con.execute("DROP TABLE main.refs; DROP TABLE main.calls; DROP TABLE main.runs; DROP TABLE main.meta")
        if found >= 2:  # every table is derived from the journal: an older schema's are dropped
            # and built again below (each version adds columns or tables: 3 inline values, 4 a
            # BIGINT version, 5 scistack.shapes); the user's own tables in main are left alone
            for (var,) in con.execute("SELECT DISTINCT var FROM scistack.refs").fetchall():
                for view in (var, f"{var}_all", f"{var}_rows", f"{var}_branches"):
                    con.execute(f"DROP VIEW IF EXISTS main.{quote(view)}")
            con.execute("DROP SCHEMA scistack CASCADE")
        for statement in [*_TABLES, self._refs_ddl()]:
            con.execute(statement)
        self._set_meta(con, "schema_version", str(SCHEMA_VERSION))
        self._set_meta(con, "journal_offset", "0")
        refresh_views(con, self.schema_keys, [])  # scistack_variables, scistack_runs
        con.execute("COMMIT")

    def _lacks_key_columns(self, con: duckdb.DuckDBPyConnection) -> bool:
        """Whether the refs table lacks a column for one of the schema keys (a key added by
        `add_schema_key` in a process killed before DuckDB was rebuilt). More columns than
        keys are fine: a session opened before a key was added inserts by name."""
        have = set(self._key_columns(con))
        return any(k not in have for k in self.schema_keys)

    @staticmethod
    def _key_columns(con: duckdb.DuckDBPyConnection) -> list[str]:
        """The refs table's schema-key columns, in order: the project's keys as the file was
        last built, which a session opened before `add_schema_key` does not know of."""
        return [r[0] for r in con.execute(
            "SELECT column_name FROM duckdb_columns() WHERE schema_name = 'scistack' AND table_name = 'refs' "
            "AND database_name = current_database() ORDER BY column_index").fetchall() if r[0] not in REF_COLUMNS]

    @staticmethod
    def _found_version(con: duckdb.DuckDBPyConnection) -> int:
        schemas = {r[0] for r in con.execute(
            "SELECT schema_name FROM duckdb_tables() WHERE table_name = 'meta' "
            "AND database_name = current_database()").fetchall()}
        where = "scistack" if "scistack" in schemas else "main" if "main" in schemas else None
        if where is None:
            return 0
        row = con.execute(f"SELECT value FROM {where}.meta WHERE key = 'schema_version'").fetchone()
        return int(row[0]) if row else 0

    def _refs_ddl(self) -> str:
        keys = "".join(f", {quote(k)} VARCHAR" for k in self.schema_keys)
        return (
            "CREATE TABLE scistack.refs (var VARCHAR NOT NULL, addr VARCHAR NOT NULL, vkeys VARCHAR NOT NULL, "
            "version BIGINT NOT NULL, oid VARCHAR NOT NULL, kind VARCHAR NOT NULL, call VARCHAR, "
            f"params VARCHAR NOT NULL, summary VARCHAR, created_at VARCHAR NOT NULL{keys})"
        )

    @staticmethod
    def _meta(con: duckdb.DuckDBPyConnection, key: str, default: str) -> str:
        row = con.execute("SELECT value FROM scistack.meta WHERE key = ?", [key]).fetchone()
        return row[0] if row else default

    @staticmethod
    def _set_meta(con: duckdb.DuckDBPyConnection, key: str, value: str) -> None:
        con.execute("INSERT OR REPLACE INTO scistack.meta VALUES (?, ?)", [key, value])

    # -- sync --------------------------------------------------------------------------
    def sync(self, *, timeout: float | None = None, should_stop: Callable[[], bool] = lambda: False,
             say_after: float | None = None) -> int:
        """Apply journal lines DuckDB has not seen; returns how many were applied.
        `should_stop` is asked between steps (a slice of the journal, a few thousand values
        inlined): when it says so the slice in hand is rolled back and `SyncStopped` raised,
        so a process closing never waits behind a long sync (what is left is synced later)."""
        size = self.journal.size()
        if (size == 0 and self.path.exists()) or self._known_in_step(size):
            return 0  # nothing new: not even a connection (~15-300 ms on a large file)
        return self._apply_journal(timeout, start_over=False, should_stop=should_stop, say_after=say_after)

    def rebuild(self, *, timeout: float | None = None) -> int:
        """Forget everything DuckDB holds and apply the whole journal again; returns how many
        entries were applied. A damaged file is first moved aside (`<name>.damaged-<time>`,
        kept for inspection: it may hold a user's own tables) and a new one built."""
        try:
            return self._apply_journal(timeout, start_over=True)
        except IndexDamagedError:
            self.moved_aside = self._move_aside()
            return self._apply_journal(timeout, start_over=True)

    def rebuild_with_keys(self, schema_keys: list[str], *, timeout: float | None = None) -> int:
        """Rebuild with a schema key added: the refs table lacks its column, so `ensure_schema`
        makes the tables and views again (the user's own tables stay)."""
        with _process_lock(self.path):
            self.schema_keys = list(schema_keys)
            return self.rebuild(timeout=timeout)

    def _move_aside(self) -> Path:
        stamp = time.strftime("%Y%m%dT%H%M%S", time.gmtime())
        target = self.path.with_name(f"{self.path.name}.damaged-{stamp}")
        with _process_lock(self.path):
            os.replace(self.path, target)
            wal = self.path.with_name(self.path.name + ".wal")
            if wal.exists():
                os.replace(wal, target.with_name(target.name + ".wal"))
        log.warning("moved the damaged DuckDB index %s aside to %s; rebuilding it from the journal",
                    self.path, target.name)
        return target

    def _apply_journal(self, timeout: float | None, *, start_over: bool,
                       should_stop: Callable[[], bool] = lambda: False, say_after: float | None = None) -> int:
        """The one writer of DuckDB's tables: under the process's lock on the file from
        reading the offset to committing the new one, so a sync in another thread can neither
        interleave nor take the work of a rebuild. A long tail is applied in rounds of
        `_ROUND_BYTES`, each on a connection of its own: the memory a connection's writes
        leave behind is given back only when it closes."""
        try:
            return self._apply_rounds(timeout, start_over, should_stop, say_after)
        except duckdb.Error as exc:  # a full disk, quota or file-size limit: named, with the fix
            full = storage_full(exc, f"the DuckDB index {self.path}", "Nothing saved is lost: every save is "
                                "in the journal and loads; the SQL views catch up at the next sync with room")
            if full is None:
                raise
            raise full from exc

    def _apply_rounds(self, timeout: float | None, start_over: bool, should_stop: Callable[[], bool],
                      say_after: float | None) -> int:
        with _process_lock(self.path):  # (re-entrant: each round's connection takes it too)
            applied, touched, rebuilt, reached = 0, set(), start_over, None
            while True:
                with self.connect(timeout=timeout, say_after=say_after, should_stop=should_stop) as con:
                    self.ensure_schema(con)
                    offset = 0 if start_over else int(self._meta(con, "journal_offset", "0"))
                    # the journal was replaced (compaction); a size reused from an earlier answer
                    # (lab mode) may be behind another process's sync of this file: asked afresh
                    if offset > self.journal.size() and offset > size_now(self.journal):
                        offset, start_over, rebuilt = 0, True, True
                    if reached is None or offset != reached:  # a first round, or another process synced
                        self._retry_unreadable = True  # between rounds: what this one inlined is unknown
                        # when DuckDB holds no inline rows yet (a first sync, a rebuild), which oids and
                        # calls this sync has inlined is kept here: a slice then need not wait for the
                        # slice before to be inserted to ask DuckDB what it has (0.5 s of 2.6 s waited
                        # there at 100k refs)
                        self._inlined = {"vals": {}, "call_info": set()} if start_over or not con.execute(
                            "SELECT count(*) FROM (SELECT 1 FROM scistack.vals LIMIT 1)").fetchone()[0] else None
                    n, reached, done = self._apply_round(con, offset, start_over, touched, should_stop)
                    applied += n
                    start_over = False
                    if done:
                        if rebuilt:
                            touched |= {r[0] for r in con.execute("SELECT DISTINCT var FROM scistack.refs").fetchall()}
                        # (by the file's key columns: a session opened before a key was added
                        # made the views without its column, until another session's sync)
                        refresh_views(con, self._key_columns(con), touched)
                        break
            self._remember_in_step(reached)
        return applied

    def _apply_round(self, con: duckdb.DuckDBPyConnection, offset: int, start_over: bool, touched: set[str],
                     should_stop: Callable[[], bool]) -> tuple[int, int, bool]:
        """Apply the journal from `offset` on one connection, committing every `_COMMIT_BYTES`,
        until its end or past `_ROUND_BYTES`: (entries applied, offset committed, at the end?)."""
        applied, round_bytes = 0, 0
        open_bytes = -1  # journal bytes in the open transaction (-1: none open)
        writer = Writer(con)  # DuckDB's half of each slice runs while Python does the next
        try:
            while True:  # slices of the tail: Python's memory stays bounded at any size
                if should_stop() and open_bytes >= 0:  # keep what is done, then give way
                    writer.call(_execute, "COMMIT")
                    open_bytes = -1
                _check(should_stop)
                with paused():  # a slice allocates ~10 objects an entry, none in a cycle
                    if hasattr(self.journal, "read_lines"):  # most put lines are read by DuckDB
                        data, new_offset = self.journal.read_lines(
                            offset, min(_FIRST_SLICE_BYTES, _SYNC_BYTES) if round_bytes == 0 else _SYNC_BYTES)
                        entries = simple_puts.split(data, maybe_big_int(data))
                    else:  # (a journal of rows, not lines: lab mode's PostgreSQL table)
                        entries, new_offset = self.journal.read_from(offset, _SYNC_BYTES)
                    # the end as the journal stands now: no further read, so no empty transaction
                    # after the last slice (a late line is the next sync's)
                    at_end = new_offset <= offset or new_offset >= self.journal.size()
                    if open_bytes < 0:
                        writer.put(_execute, "BEGIN")
                        open_bytes = 0
                    if start_over:
                        writer.put(_execute, "; ".join(f"DELETE FROM scistack.{t}" for t in _DERIVED))
                        start_over = False
                    if isinstance(entries, simple_puts.Slice):
                        done, count = self._apply_slice(writer, entries, should_stop)
                        touched |= done
                    else:
                        touched |= self._apply(writer, entries, should_stop) if entries else set()
                        count = len(entries)
                    writer.put(self._set_meta, "journal_offset", str(new_offset))
                    open_bytes += new_offset - offset
                    round_bytes += new_offset - offset
                    if open_bytes >= _COMMIT_BYTES or at_end or round_bytes >= _ROUND_BYTES:
                        writer.put(_execute, "COMMIT")
                        open_bytes = -1
                applied += count
                offset = max(offset, new_offset)
                if at_end:
                    break
                if round_bytes >= _ROUND_BYTES:
                    writer.close()
                    return applied, offset, False
        except BaseException:
            writer.close(raise_errors=False)  # the transaction in hand rolls back at close
            raise
        writer.close()
        return applied, offset, True

    # The sidecar says "DuckDB had applied the journal up to OFFSET when its file looked like
    # this (mtime, size)". Any write to the file by anyone changes that, and then a real
    # connection checks; so a stale sidecar can only cost a connection, never skip a sync.
    def _sidecar(self) -> Path:
        return self.journal.path.with_name("index.synced")

    def _file_stamp(self) -> str | None:
        try:
            info = os.stat(self.path)
        except FileNotFoundError:
            return None
        wal = self.path.with_name(self.path.name + ".wal")
        # the schema too: a newer scistack must open an in-step file of an older schema once,
        # to rebuild it (else `scistack sql` showed the old views until the next save)
        return f"{info.st_mtime_ns}:{info.st_size}:{wal.exists()}:{SCHEMA_VERSION}"

    def check(self) -> None:
        """Read the file's tables once (a damaged block raises IndexDamagedError)."""
        if not self.read_only:
            _drop_unwritten(self.path)  # not damage: nothing was ever in it (made by the next sync)
        if not self.path.exists():
            return
        try:
            with self.connect(read_only=True, timeout=5.0) as con:
                con.execute("PRAGMA database_size").fetchall()
                for (table,) in con.execute("SELECT table_schema || '.' || table_name FROM information_schema.tables "
                                            "WHERE table_type = 'BASE TABLE'").fetchall():
                    con.execute(f"SELECT bit_xor(hash(t)) FROM {table} AS t").fetchall()  # every column's blocks
        except duckdb.Error as exc:
            if _damaged(exc) and not _held_elsewhere(exc):
                raise self._damage(exc) from None
            raise

    def lag(self) -> int | None:
        """Journal bytes DuckDB has not applied, by the sidecar (no connection); None when
        the sidecar cannot tell (someone else wrote the file since)."""
        stamp = self._file_stamp()
        try:
            offset, _, seen = self._sidecar().read_text().partition(" ")
        except OSError:
            return None
        if stamp is None or seen != stamp:
            return None
        return max(self.journal.size() - int(offset), 0)

    @contextmanager
    def detached_turn(self) -> Iterator[bool]:
        """The turn of the one detached sync a project runs at a time (`scistack.sync_after_exit`),
        held while the block runs: True if taken, False when another process has it. A lock
        beside the journal (`flock`: let go when its process ends, even killed)."""
        fd = os.open(self._detached_lock, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            yield _flocked(fd, tries=5)  # (a process asking `detached_running` holds it a moment)
        finally:
            os.close(fd)  # (lets the lock go)

    def detached_running(self) -> bool:
        """Whether a detached sync has its turn now: it takes up any tail written before its
        turn ends (it looks again after), so a process ending need neither wait for DuckDB
        nor start another."""
        if self._detached_lock is None:
            return False  # (a lab's shared journal: never synced detached)
        try:
            fd = os.open(self._detached_lock, os.O_RDONLY)
        except OSError:
            return False  # (never made: none ever ran)
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
            return False
        except BlockingIOError:
            return True
        finally:
            os.close(fd)

    @property
    def _detached_lock(self) -> Path | None:
        path = getattr(self.journal, "path", None)
        return None if path is None else Path(path).with_name("sync-after-exit.lock")

    def in_step(self) -> bool:
        """Whether DuckDB has applied the whole journal, by the sidecar (no connection)."""
        return self._known_in_step(self.journal.size())

    def _known_in_step(self, journal_size: int) -> bool:
        stamp = self._file_stamp()
        try:
            return stamp is not None and self._sidecar().read_text() == f"{journal_size} {stamp}"
        except OSError:
            return False

    def _remember_in_step(self, offset: int) -> None:
        stamp = self._file_stamp()
        if stamp is None or offset != self.journal.size():
            return
        temp = temporary_sibling(self._sidecar())  # (unique: a name per process was one name
        try:  # for two threads of it)
            temp.write_text(f"{offset} {stamp}")
            os.replace(temp, self._sidecar())
        except OSError:  # (a hint: the next sync checks again)
            with suppress(OSError):
                temp.unlink()

    def _apply_slice(self, writer: Writer, piece: simple_puts.Slice,
                     should_stop: Callable[[], bool]) -> tuple[set[str], int]:
        """A slice of journal lines: DuckDB reads the put lines it can (`simple_puts`) while
        Python parses the rest, in order, and inlines the values; both go on as `_apply`.
        Returns the variables touched and how many entries were applied."""
        read = None
        if piece.candidates is not None:
            read = (piece, writer.put(simple_puts.insert, piece.candidates, self.schema_keys))
        entries = self.journal.parse_lines([piece.lines[n] for n in piece.others], may_be_big=piece.may_be_big)
        count = len(entries) + (piece.candidates.num_rows if read else 0)
        return (self._apply(writer, entries, should_stop, read) if entries or read else set()), count

    def _apply(self, writer: Writer, entries: list[dict[str, Any]],
               should_stop: Callable[[], bool] = lambda: False,
               read: tuple[simple_puts.Slice, Future] | None = None) -> set[str]:
        """Every kind of entry goes in as one Arrow table (row-by-row statements cost ~2 ms a
        row: closing after a 100k-combination run took minutes). Deletes follow the puts:
        a version number is never given twice, so a delete never precedes its put. DuckDB's
        statements go to `writer` (its thread), in the order they are handed over. `read`:
        the slice whose put lines DuckDB is inserting itself, and that work's future."""
        puts = [e for e in entries if e["op"] == "put"]
        again: set[str] = set()
        piece = read[0] if read else None
        if puts or piece:
            # the questions to DuckDB go first, so its answers are there when the Python needs them
            asked = None
            if self.inliner is not None:
                oids = list(dict.fromkeys([*(piece.oids if piece else ()), *(e["oid"] for e in puts)]))
                calls = list(dict.fromkeys([*(piece.calls if piece else ()),
                                            *(e["call"] for e in puts if e.get("call"))]))
                inlined = self._inlined
                if inlined is None:
                    retry, self._retry_unreadable = self._retry_unreadable, False
                    asked = (writer.put(_known_vals, oids), writer.put(_take_unreadable) if retry else ([], set()),
                             writer.put(_unseen, "call_info", "call", calls))
                else:  # nothing was inlined before this sync: the dicts say what is new
                    known = inlined["vals"]
                    asked = (([o for o in oids if o not in known], {o: known[o] for o in oids if o in known}),
                             ([], set()), [c for c in calls if c not in inlined["call_info"]])
                    inlined["call_info"].update(asked[2])
            refs = self._refs_table(puts) if puts else None
            if refs is not None:
                writer.put(_insert_arrow, "scistack.refs", refs)
            types = None  # each oid's sqltype, for the shapes (None: from scistack.vals)
            if asked is not None:
                (new_oids, seen), unreadable, new_calls = (
                    a if isinstance(a, (list, tuple)) else writer.result(a) for a in asked)
                again, inlined_types = self._inline(writer, new_oids, unreadable, new_calls, should_stop)
                retried = set(unreadable[0])
                types = pa.concat_tables([inlined_types, pa.table(
                    {"oid": [o for o in seen if o not in retried],
                     "sqltype": [t for o, t in seen.items() if o not in retried]}, schema=_types_schema())])
                if self._inlined is not None:
                    self._inlined["vals"].update(zip(inlined_types["oid"].to_pylist(),
                                                     inlined_types["sqltype"].to_pylist()))
                    if len(self._inlined["vals"]) + len(self._inlined["call_info"]) > _REMEMBER_INLINED:
                        self._inlined = None  # a rebuild of millions: DuckDB is asked from here on
            writer.put(_add_new_shapes, None if refs is None else refs.select(["var", "addr", "vkeys", "params", "oid"]),
                       types, piece is not None)
            left = writer.result(read[1]) if read else []  # put lines DuckDB left to Python (rare)
            if left:  # (their values were inlined above: their oids were among the slice's)
                refs = self._refs_table(self.journal.parse_lines([piece.lines[n] for n in left]))
                writer.put(_insert_arrow, "scistack.refs", refs)
                writer.put(_add_new_shapes, refs.select(["var", "addr", "vkeys", "params", "oid"]), types)
        dels = [e for e in entries if e["op"] == "del"]
        if dels:
            writer.put(_delete_refs, pa.table({
                "var": [e["var"] for e in dels], "addr": [_canon(e["addr"]) for e in dels],
                "version": pa.array([e["version"] for e in dels], pa.int64()),
                "deleted_at": pa.array([e.get("t") if isinstance(e.get("t"), str) else None for e in dels], pa.string())}))
        for kind, change in call_changes(entries):  # the fold's rule (a key's last line): the two agree
            if kind == "drop":  # (an entry dropped only while it names that record)
                writer.put(_drop_calls, pa.table({"key": [key for key, _ in change], "call": [c for _, c in change]}))
            else:
                calls = list(change.values())
                writer.put(_insert_calls, pa.table({
                    "key": list(change), "call": [e["call"] for e in calls], "fn": [e.get("fn") for e in calls],
                    "outs": [json.dumps(e.get("outs") or []) for e in calls],
                    "created_at": [e.get("t") for e in calls]}))
        redo = sorted({e["var"] for e in dels} | again)
        if redo:  # a shape may have gone with the deleted refs; a late value adds its type
            writer.put(_execute, "DELETE FROM scistack.shapes WHERE var IN (SELECT unnest(CAST(? AS VARCHAR[])))",
                       [redo])
            writer.put(add_shapes, "scistack.refs", redo)
        runs = [e for e in entries if e["op"] == "run"]
        if runs:
            writer.put(_insert_arrow, "scistack.runs", pa.table({
                "run_id": [e.get("run_id") for e in runs], "entry": [_canon(e) for e in runs],
                "created_at": [e.get("t") for e in runs]}, schema=_runs_schema()))
        return {e["var"] for e in puts} | {e["var"] for e in dels} | again | (set(piece.variables) if piece else set())

    def _inline(self, writer: Writer, new_oids: list[str], unreadable: tuple[list[str], set[str]],
                new_calls: list[str], should_stop: Callable[[], bool]) -> tuple[set[str], pa.Table]:
        """Inline rows for the oids and call records this batch names for the first time
        (`new_oids`, `new_calls`), and for the `unreadable` ones of earlier syncs (tried again:
        a network store's hiccup heals); the inliner (above the index) reads the objects,
        DuckDB only stores what it returns. Returns the variables of earlier refs whose values
        it could read only now, and the (oid, sqltype) of every row inlined."""
        retry, again = unreadable
        if retry:
            fresh = set(new_oids)
            new_oids = new_oids + [oid for oid in retry if oid not in fresh]
        done: list[pa.Table] = []  # a few inline steps per insert: each statement costs ~10 ms
        types: list[pa.Table] = [pa.table({"oid": [], "sqltype": []}, schema=_types_schema())]
        for start in range(0, len(new_oids), _INLINE_STEP):  # objects are read: the slow part
            _check(should_stop)
            vals, rows = self.inliner.values(new_oids[start:start + _INLINE_STEP])
            done.append(vals)
            types.append(vals.select(["oid", "sqltype"]).cast(_types_schema()))
            if rows.num_rows:
                writer.put(_insert_arrow, "scistack.frame_rows", rows)
            if sum(t.num_rows for t in done) >= _INSERT_ROWS:
                writer.put(_insert_vals, pa.concat_tables(done))
                done = []
        if done:
            writer.put(_insert_vals, pa.concat_tables(done))
        if new_calls:
            writer.put(_insert_arrow, "scistack.call_info", self.inliner.calls(new_calls))
        return again, pa.concat_tables(types)

    def _refs_table(self, puts: list[dict[str, Any]]) -> pa.Table:
        """Column by column; addresses and key values that repeat are written once (`keys_of`)."""
        # the fields every put has (the journal checked them), taken in one pass
        var, addrs, version, oid, kind, created_at = zip(*map(_PUT_FIELDS, puts))
        columns: dict[str, Any] = {
            "var": var,
            "addr": keys_of(addrs),
            "vkeys": _texts([e.get("vkeys") for e in puts]),
            "version": version,
            "oid": oid,
            "kind": kind,
            "call": [e.get("call") for e in puts],
            "params": _texts([e.get("params") for e in puts]),
            "summary": [e.get("summary") for e in puts],
            "created_at": created_at,
        }
        for key in self.schema_keys:
            columns[key] = _display_all([a.get(key) for a in addrs])
        types = {"version": pa.int64()}
        return pa.table({k: pa.array(v, type=types.get(k, pa.string())) for k, v in columns.items()})

    # -- queries -----------------------------------------------------------------------
    def _check_readable(self) -> None:
        """A project that cannot be written is queried as its DuckDB file is: there must be
        one, and a warning says when it is behind the journal (no one could sync it here)."""
        if not self.path.exists():
            raise ReadOnlyProjectError(
                f"{self.path} does not exist and its folder cannot be written, so SQL has no views to "
                "read; open the project once where it can be written (any scistack command builds it)")
        if not self._known_in_step(self.journal.size()):
            log.warning("%s may be behind the project's journal (its folder cannot be written, so it "
                        "was not brought up to date): SQL answers from it as it is; loads are current",
                        self.path)

    def _sync_or_read_as_is(self) -> None:
        """Sync before a query. A reader elsewhere (DBeaver, `duckdb -readonly`) blocks the sync's
        write for as long as it stays open (a query waited 60 s, then failed), but not a read:
        after `_SAY_AFTER` the query reads the file as it is. A writer elsewhere blocks reads
        too: then the sync waits for it, as before."""
        try:
            self.sync(timeout=_SAY_AFTER)
            return
        except DatabaseLockedError:
            if not self.path.exists() or not self._readable_now():
                self.sync(say_after=0.0)
                return
        log.warning("%s is open read-only in another process (a DuckDB CLI or DBeaver session), so the "
                    "saves since it was opened could not be written to it: SQL answers from it as it is "
                    "and may be behind by them (loads are current; the next sync writes them)", self.path)

    def _readable_now(self) -> bool:
        """Whether the file can be opened read-only at once (only readers hold it)."""
        try:
            with self.connect(read_only=True, timeout=0.0):
                return True
        except DatabaseLockedError:
            return False

    def newest_doubles(self, var: str) -> pa.Table | None:
        """The newest record of each address of `var` among `views.doubles_sql`'s rows (its
        columns but `plain`), read when DuckDB is known in step with the journal (by the
        sidecar) and no other process is writing it; None otherwise, and when a record is not
        a plain double: the caller reads the fold then. A load never waits for DuckDB, nor
        fails for it."""
        if not self._known_in_step(self.journal.size()):
            return None
        try:
            with self.connect(read_only=True, timeout=0.0) as con:
                query = doubles_sql(con, var, self.schema_keys)
                if query is None:
                    return None
                sql, keys = query
                table = _arrow(con.execute(sql))
        except (DatabaseLockedError, IndexDamagedError, duckdb.Error):
            return None
        if not pc.all(table["plain"]).as_py():  # (before any row is dropped: a NULL key too)
            return None
        return _last_of_each(table.select([c for c in table.column_names if c != "plain"]), keys)

    def value_types(self, var: str) -> frozenset | None:
        """The inline types (`scistack.vals.sqltype`) of every live record of `var`: what its
        views type the value column by (`views.value_type`), as `scistack.shapes` keeps them,
        so that `where=` types it alike without reading a value (it had read every value of
        the variable: 1M objects for two records chosen). DuckDB is synced first, as for a
        query: the cost is what changed since the last sync, not the variable; an answer is
        kept until the journal grows. None when DuckDB cannot say: a forked child that may not
        use it, a read-only project's file behind the journal, the file held by a writer
        elsewhere beyond `_SAY_AFTER`, a damaged file (a load never fails for DuckDB: the
        caller reads the values then)."""
        size = self.journal.size()
        kept = self._value_types.get(var)
        if kept is not None and kept[0] == size:
            return kept[1]
        if self._open_at_fork:
            return None
        try:
            if self.read_only:
                if not self.path.exists() or not self._known_in_step(size):
                    return None  # (no one can sync it here)
            else:
                # (a save elsewhere after it is concurrent with this load, as the fold's is)
                self.sync(timeout=_SAY_AFTER)
            with self.connect(read_only=True, timeout=_SAY_AFTER) as con:
                found = frozenset(t for (t,) in con.execute(
                    "SELECT DISTINCT sqltype FROM scistack.shapes WHERE var = ?", [var]).fetchall())
        except (ScistackError, duckdb.Error, OSError):
            return None
        self._value_types[var] = (size, found)
        return found

    def query(self, sql: str, params: list | None = None) -> pa.Table:
        """Run a read-only query, one statement, after bringing the index up to date. Several
        (`SELECT 1; SELECT 2`) are refused: DuckDB returns the last one's result only, and
        the others' were silently lost; `query_each` gives each one's."""
        statements = _statements(sql)
        if len(statements) > 1:
            raise QueryError(
                f"the query holds {len(statements)} SQL statements and one table is returned: run each "
                "on its own (one db.sql(...) per statement); `scistack sql` shows every statement's result")
        return self._run(statements, params)[0]

    def query_each(self, sql: str) -> list[pa.Table]:
        """The result of each statement of `sql` in order, run read-only on one connection, as
        the DuckDB CLI runs a script."""
        return self._run(_statements(sql), None)

    def _run(self, statements: list[Any], params: list | None) -> list[pa.Table]:
        if self.read_only:
            self._check_readable()
        else:
            self._sync_or_read_as_is()
        with self.connect(read_only=True, say_after=_SAY_AFTER) as con:
            # unqualified names find a variable's view first, then scistack's tables
            con.execute("SET search_path = 'main,scistack'")
            # read-only protects the DuckDB file only: `COPY (...) TO '.scistack/refs.log'` had
            # overwritten the journal (every name lost), and read_text() read any file. No file
            # but the index, and no setting may be changed back (the connection is this query's)
            con.execute("SET enable_external_access = false")
            con.execute("SET lock_configuration = true")
            results = []
            for n, statement in enumerate(statements, 1):
                try:
                    result = con.execute(statement, params or [])
                except duckdb.Error as exc:
                    which = f"statement {n} of {len(statements)}: " if len(statements) > 1 else ""
                    raise QueryError(which + _query_failed(str(exc), con)) from None
                results.append(_arrow(result))
            return results


def _last_of_each(table: pa.Table, keys: list[str]) -> pa.Table:
    """The last row of each run of equal `keys` (rows ordered by them, then by version)."""
    if table.num_rows < 2:
        return table
    changes = None
    for key in keys:
        column = table[key].combine_chunks()
        differs = pc.not_equal(column.slice(0, len(column) - 1), column.slice(1))
        changes = differs if changes is None else pc.or_(changes, differs)
    last = pa.concat_arrays([changes, pa.array([True])])
    return table if pc.all(last).as_py() else table.filter(last)


def _arrow(result: duckdb.DuckDBPyConnection) -> pa.Table:
    """A result as Arrow (`to_arrow_table`; `fetch_arrow_table` in DuckDB before 1.4)."""
    return (getattr(result, "to_arrow_table", None) or result.fetch_arrow_table)()


def _statements(sql: str) -> list[Any]:
    """The statements of `sql`, as DuckDB parses them; `[sql]` when it cannot (running it says
    why). An empty query (blank, `;`, comments only) runs nothing, and DuckDB then hands back
    no result to read (an AttributeError came out): say so."""
    try:
        statements = duckdb.extract_statements(sql)
    except duckdb.Error:  # a syntax error: running it says which
        return [sql]
    if not statements:
        raise QueryError(f"the query {sql!r} is empty (no SQL statement, only blanks, ';' or comments): "
                         "give one, e.g. SELECT variable, records FROM scistack_variables")
    return statements


# "... Could not convert string 'S01' to INT32 (INT64 for a CAST) when casting from source column subject"
_SYNTAX_NEAR = re.compile(r'syntax error at or near "(\w+)"')


def _view_named(con: duckdb.DuckDBPyConnection, word: str) -> str | None:
    """The variable's view a keyword in a query names (identifiers ignore case), if any."""
    try:
        found = con.execute("SELECT table_name FROM information_schema.tables WHERE table_schema = 'main' "
                            "AND lower(table_name) = lower(?)", [word]).fetchall()
    except duckdb.Error:  # (the failed statement may have left the connection unusable)
        return None
    return found[0][0] if found else None


_NO_TABLE = re.compile(r'Table with name (\S+) does not exist')


def _deleted_variable(con: duckdb.DuckDBPyConnection, word: str) -> str | None:
    """The variable whose every record was deleted (so its views were dropped) that a name in
    a query names (`X`, or one of its views `X_all`...), if any."""
    candidates = [word, *(word[:-len(suffix)] for suffix in VIEW_SUFFIXES if word.lower().endswith(suffix))]
    try:
        found = con.execute(
            "SELECT d.var FROM scistack.deleted d WHERE lower(d.var) IN (SELECT lower(unnest(CAST(? AS VARCHAR[])))) "
            "AND NOT EXISTS (SELECT 1 FROM scistack.refs r WHERE lower(r.var) = lower(d.var)) "
            "ORDER BY d.deleted_at DESC LIMIT 1", [candidates]).fetchall()
    except duckdb.Error:  # (the failed statement may have left the connection unusable)
        return None
    return found[0][0] if found else None


_MALFORMED_JSON = "Conversion Error: Malformed JSON"
_TEXT_COLUMN = re.compile(r"Could not convert string '.*' to \w+ when casting from source column (\w+)")
_HINT_LINES = 3  # DuckDB's own hints kept ('Did you mean "Score"?', 'Candidate bindings: "value"')


def _query_failed(error: str, con: duckdb.DuckDBPyConnection) -> str:
    """DuckDB's error, its first line and the hint lines under it (up to the blank line before
    its 'LINE 1: ...' context), and what usually fixes it."""
    lines = error.strip().split("\n\n")[0].splitlines()
    first = " ".join([lines[0], *(line.strip() for line in lines[1:1 + _HINT_LINES] if line.strip())])
    first += "" if first.endswith((".", "!", "?")) else "."
    keyword = _SYNTAX_NEAR.search(first)
    name = _view_named(con, keyword.group(1)) if keyword else None
    if name:  # a variable named Table, Order, Group...
        return (f"the query failed: {first} {keyword.group(1)} is an SQL keyword as well as a variable: put "
                f'its view\'s name in double quotes, e.g. SELECT * FROM "{name}"')
    if _not_utf8(error):
        return (f"the query failed: {first} If the query reads saved values, the index holds {_NOT_UTF8_ROW}: "
                f"{_NOT_UTF8_FIX}. (Text of the query's own that is not UTF-8 fails the same way.)")
    missing = _NO_TABLE.search(first)
    gone = _deleted_variable(con, missing.group(1)) if missing else None
    if gone:  # its views went with its last record
        return (f"the query failed: {first} Every value of the variable {gone} was deleted, so it has "
                f"no views; `scistack undelete {gone}` brings its values and views back (until "
                "`scistack gc` frees them)")
    mixed = _TEXT_COLUMN.search(first)
    if mixed:  # a key or value saved both as numbers and as text (or true/false) is a VARCHAR column
        column = mixed.group(1)
        return (f"the query failed: {first} Column {column} holds text as well as numbers (some "
                f"values were saved as strings, or as true/false beside numbers), so it is VARCHAR: compare it with text, e.g. "
                f"{column} = '5', or cast, e.g. TRY_CAST({column} AS BIGINT) = 5")
    if _MALFORMED_JSON in first:  # text compared with a JSON column: the text is cast to JSON
        return (f"the query failed: {first} A JSON column (a value column whose variable holds dicts, or "
                f"lists beside other values) compares with JSON: a dict's field as text by value->>'label' "
                f"= 'a' (value.label is JSON, as is value['label']: value.label = '\"a\"'), as a number by "
                f"TRY_CAST(value->>'n' AS DOUBLE) > 1; a single value's text by (value->>'$') = 'a' (or "
                f"value = '\"a\"'), its number by TRY_CAST(value AS DOUBLE) > 1")
    return (f"the query failed: {first} The index is read-only here; `scistack ls` lists the "
            "variables (each is a view); scistack's own tables are scistack.refs and scistack.calls")


def result_frame(result: pa.Table) -> Any:
    """A query's Arrow result as a pandas DataFrame whose integer columns stay integers: pandas
    makes an int column holding a NULL float64 (1 -> 1.0, 2**53 + 1 -> 2**53), so such a column
    becomes a nullable one (Int64, NULL as pd.NA); one without a NULL stays int64."""
    import pandas as pd

    frame = result.to_pandas()
    for i, column in enumerate(result.columns):
        if pa.types.is_integer(column.type) and column.null_count:
            unsigned = "U" if pa.types.is_unsigned_integer(column.type) else ""
            dtype = pd.api.types.pandas_dtype(f"{unsigned}Int{column.type.bit_width}")
            frame.isetitem(i, column.to_pandas(types_mapper=lambda _, dtype=dtype: dtype).array)
    return frame


@functools.cache
def _runs_schema() -> pa.Schema:
    return pa.schema([("run_id", pa.string()), ("entry", pa.string()), ("created_at", pa.string())])


def _execute(con: duckdb.DuckDBPyConnection, sql: str, params: list | None = None) -> None:
    con.execute(sql, params or [])


def _add_new_shapes(con: duckdb.DuckDBPyConnection, refs: pa.Table | None, types: pa.Table | None,
                    read_by_duckdb: bool = False) -> None:
    """The shapes of new refs (`refs`, and with `read_by_duckdb` those `simple_puts` inserted);
    their values' types from `types` (this slice's oids) when given, not from a join with
    every row of `scistack.vals` (~70 ms at 3M rows, after each save)."""
    registered = {**({"_new_refs": refs} if refs is not None else {}),
                  **({"_new_types": types} if types is not None else {})}
    sources = ([f"SELECT var, addr, vkeys, params, oid FROM {simple_puts.NEW_REFS}"] if read_by_duckdb else []) + (
        ["SELECT var, addr, vkeys, params, oid FROM _new_refs"] if refs is not None else [])
    for name, table in registered.items():
        con.register(name, table)
    try:
        add_shapes(con, f"({' UNION ALL '.join(sources)})", types="_new_types" if types is not None else "scistack.vals")
    finally:
        for name in registered:
            con.unregister(name)


# A vals row's `okey`: its oid's first 15 hex digits as an integer. Finding a few oids among
# millions by this column reads 8 bytes a row (~5 ms at 3M rows); by `oid`, DuckDB reads and
# compares every 64-character string (~60-80 ms), in every sync, however little it adds.
# `okey2` holds the next 15: many oids are found by a join on both (120 bits, where a 60-bit
# prefix alone would collide at 10M values with odds near 1 in 25,000): 28 ms for 50k oids
# at 3M rows, against 81-133 ms joined on `oid` (which DuckDB reads whole for the join).
_OKEY = "TRY_CAST('0x' || left(oid, 15) AS BIGINT)"
_OKEY2 = "TRY_CAST('0x' || substr(oid, 16, 15) AS BIGINT)"
_HEX = re.compile(r"[0-9a-f]{64}")


def _with_okeys(vals: pa.Table) -> pa.Table | None:
    """`vals` with its `okey` and `okey2` columns, or None unless every oid is 64 hex digits
    (then DuckDB computes them)."""
    keyed = _okey_columns(vals["oid"].combine_chunks())
    return None if keyed is None else vals.append_column("okey", keyed[0]).append_column("okey2", keyed[1])


def _okey_columns(oids: pa.Array) -> tuple[pa.Array, pa.Array] | None:
    """The `okey` and `okey2` of each oid (what `_OKEY`, `_OKEY2` give), computed by numpy from
    the hex digits, or None unless every oid is 64 hex digits."""
    if not len(oids) or oids.null_count:
        return None
    offsets = np.frombuffer(oids.buffers()[1], np.int32)[oids.offset:oids.offset + len(oids) + 1]
    if (np.diff(offsets) != 64).any():
        return None
    text = oids.buffers()[2].to_pybytes()[offsets[0]:offsets[-1]]
    try:
        raw = bytes.fromhex(text.decode("ascii"))
    except ValueError:  # (not hex: DuckDB's TRY_CAST makes those NULL)
        return None
    words = np.frombuffer(raw, ">u8").reshape(-1, 4).astype(np.uint64)
    okey = (words[:, 0] >> np.uint64(4)).astype(np.int64)  # the first 15 hex digits
    okey2 = (((words[:, 0] & np.uint64(0xF)) << np.uint64(56)) | (words[:, 1] >> np.uint64(8))).astype(np.int64)
    return pa.array(okey), pa.array(okey2)


@functools.cache
def _types_schema() -> pa.Schema:
    return pa.schema([("oid", pa.string()), ("sqltype", pa.string())])


def _insert_vals(con: duckdb.DuckDBPyConnection, vals: pa.Table) -> None:
    keyed = _with_okeys(vals)  # (computed here, not by DuckDB: its thread is a sync's longer half)
    con.register("_new_vals", keyed if keyed is not None else vals)
    try:
        con.execute("INSERT INTO scistack.vals SELECT * FROM _new_vals" if keyed is not None else
                    f"INSERT INTO scistack.vals SELECT *, {_OKEY}, {_OKEY2} FROM _new_vals")
    finally:
        con.unregister("_new_vals")


def _known_vals(con: duckdb.DuckDBPyConnection, oids: list[str]) -> tuple[list[str], dict[str, str | None]]:
    """(the oids `scistack.vals` does not hold yet, in order; the sqltype of those it holds).
    A few oids are found by `okey` (one scan of that column, then one lookup per oid whose
    prefix is there: usually none), many by a join on `okey` and `okey2`."""
    seen: dict[str, str | None] = {}
    hexed = all(_HEX.fullmatch(o) for o in oids)  # (every oid scistack writes)
    if oids and len(oids) <= _SMALL_ASK and hexed:
        keys = {int(o[:15], 16): o for o in oids}
        there = [r[0] for r in con.execute(
            f"SELECT DISTINCT okey FROM scistack.vals WHERE okey IN ({', '.join(map(str, keys))})").fetchall()]
        if len(there) <= 16:
            for okey in there:  # (an equality is filtered in the scan; an IN list of two is not)
                seen.update(con.execute(f"SELECT oid, any_value(sqltype) FROM scistack.vals WHERE okey = {int(okey)} "
                                        "GROUP BY oid").fetchall())
            return [o for o in oids if o not in seen], seen
    if oids:
        columns = {"k": pa.array(oids, pa.string())}
        keyed = _okey_columns(columns["k"]) if hexed else None
        if keyed is not None:  # two integers a row for DuckDB to read, not the 64-character text
            columns |= {"okey": keyed[0], "okey2": keyed[1]}
        hexed = keyed is not None
        on = "t.okey = _keys.okey AND t.okey2 = _keys.okey2" if hexed else "t.oid = _keys.k"
        con.register("_keys", pa.table(columns))
        try:
            seen.update(con.execute(f"SELECT _keys.k, any_value(t.sqltype) FROM _keys JOIN scistack.vals t ON {on} "
                                    "GROUP BY _keys.k").fetchall())
        finally:
            con.unregister("_keys")
    return [o for o in oids if o not in seen], seen


def _reinline_times(con: duckdb.DuckDBPyConnection) -> None:
    """Schema 8 inlines numpy time arrays (7 showed them as NULL) and month durations as
    months: their rows are marked UNREADABLE, so that syncs read them again (`_take_unreadable`,
    which also redoes their variables' shapes) rather than rebuilding every table."""
    con.execute("UPDATE scistack.vals SET sqltype = 'UNREADABLE' WHERE sqltype = 'INTERVAL' "
                "OR dtype LIKE 'datetime64%' OR dtype LIKE 'timedelta64%'")


def _reinline_values(con: duckdb.DuckDBPyConnection) -> None:
    """Schema 12 writes N-D float arrays with their NaN and infinities (11: NULL), a frame's
    times to the nanosecond (11: milliseconds, so two times became one) and a chunked table's
    bytes (11: NULL): those rows are marked UNREADABLE, so syncs inline them again
    (`_take_unreadable`), a frame's old rows removed first."""
    timed = r"""'"(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z?|P\d+DT[^"]*)"'"""  # 11's times in rows
    con.execute(f"""UPDATE scistack.vals SET sqltype = 'UNREADABLE' WHERE sqltype LIKE '%[][]'
        OR (sqltype = 'LARGE' AND nbytes IS NULL)
        OR oid IN (SELECT DISTINCT oid FROM scistack.frame_rows WHERE regexp_matches("row", {timed}))""")
    con.execute("DELETE FROM scistack.frame_rows WHERE oid IN "
                "(SELECT oid FROM scistack.vals WHERE sqltype = 'UNREADABLE')")


def _redescribe_tables(con: duckdb.DuckDBPyConnection) -> None:
    """Schema 9 gives a Series, an Arrow table and a chunked table the shape and dtype their
    summary says (`summary.described`: `float64`, [5000] for a Series of floats, which 8 showed
    as `DataFrame`, [5000, 1]): read back from that summary, `name[AxB]`, no value read."""
    described = r"'^(.*)\[([0-9]+(x[0-9]+)*)\]$'"
    con.execute(f"""UPDATE scistack.vals v SET dtype = d.name, shape = d.shape FROM (
        SELECT oid, regexp_extract(s, {described}, 1) AS name,
               CAST(string_split(regexp_extract(s, {described}, 2), 'x') AS BIGINT[]) AS shape
        FROM (SELECT oid, min(summary) AS s FROM scistack.refs WHERE kind IN ('table', 'chunked') GROUP BY oid)
    ) d WHERE v.oid = d.oid AND v.dtype = 'DataFrame' AND d.name != ''""")


def _take_unreadable(con: duckdb.DuckDBPyConnection) -> tuple[list[str], set[str]]:
    """Up to 1,000 oids marked UNREADABLE, their rows deleted (to be tried again), and the
    variables naming them."""
    retry = [r[0] for r in con.execute(
        "SELECT oid FROM scistack.vals WHERE sqltype = 'UNREADABLE' LIMIT 1000").fetchall()]
    if not retry:
        return [], set()
    con.execute("DELETE FROM scistack.vals WHERE oid IN (SELECT unnest(CAST(? AS VARCHAR[])))", [retry])
    return retry, {r[0] for r in con.execute(
        "SELECT DISTINCT var FROM scistack.refs WHERE oid IN (SELECT unnest(CAST(? AS VARCHAR[])))",
        [retry]).fetchall()}


def _delete_refs(con: duckdb.DuckDBPyConnection, gone_refs: pa.Table) -> None:
    """Delete the refs named by (var, addr, version), and the inline rows of content no ref
    names any more; note each variable's newest delete time (`deleted_at`)."""
    con.register("_gone", gone_refs)
    con.execute("INSERT INTO scistack.deleted SELECT var, max(deleted_at) FROM _gone WHERE deleted_at IS NOT NULL GROUP BY var")
    gone = [r[0] for r in con.execute(
        "SELECT DISTINCT r.oid FROM scistack.refs r JOIN _gone ON r.var = _gone.var AND "
        "r.addr = _gone.addr AND r.version = _gone.version").fetchall()]
    con.execute("DELETE FROM scistack.refs r USING _gone WHERE r.var = _gone.var AND "
                "r.addr = _gone.addr AND r.version = _gone.version")
    con.unregister("_gone")
    if gone:
        for table in ("vals", "frame_rows"):
            con.execute(f"DELETE FROM scistack.{table} WHERE oid IN (SELECT unnest(CAST(? AS VARCHAR[]))) "
                        "AND oid NOT IN (SELECT oid FROM scistack.refs)", [gone])


def _insert_calls(con: duckdb.DuckDBPyConnection, calls: pa.Table) -> None:
    """A run of call lines (`call_changes`: one row per key, its last): each replaces its key's entry."""
    con.register("_new_calls", calls)
    con.execute("INSERT OR REPLACE INTO scistack.calls SELECT * FROM _new_calls")
    con.unregister("_new_calls")


def _drop_calls(con: duckdb.DuckDBPyConnection, dropped: pa.Table) -> None:
    """A run of uncall lines (`call_changes`): each key's entry goes while it names that record."""
    con.register("_dropped_calls", dropped)
    # (a key's record may be uncalled twice in one run: a join would name its row twice, which
    # DuckDB refuses, "Failed to delete all rows from index")
    con.execute("DELETE FROM scistack.calls WHERE (key, call) IN (SELECT DISTINCT key, call FROM _dropped_calls)")
    con.unregister("_dropped_calls")


def _unseen(con: duckdb.DuckDBPyConnection, table: str, column: str, keys: list[str]) -> list[str]:
    """The keys not yet in `scistack.<table>.<column>`, in their order."""
    if not keys:
        return []
    con.register("_keys", pa.table({"k": pa.array(keys, pa.string())}))
    seen = {r[0] for r in con.execute(
        f"SELECT k FROM _keys SEMI JOIN scistack.{table} t ON t.{column} = _keys.k").fetchall()}
    con.unregister("_keys")
    return [k for k in keys if k not in seen]


def _insert_arrow(con: duckdb.DuckDBPyConnection, table_name: str, table: pa.Table) -> None:
    """By column name: a session opened before a schema key was added (its refs lack that
    column) still inserts its rows rightly, the new key NULL."""
    con.register("_new_rows", table)
    con.execute(f"INSERT INTO {table_name} BY NAME SELECT * FROM _new_rows")
    con.unregister("_new_rows")


_locks: dict[str, threading.RLock] = {}
_locks_guard = threading.Lock()
_SQL_INDEXES: weakref.WeakSet[SqlIndex] = weakref.WeakSet()


def _after_fork_in_child() -> None:
    """The process locks are new (a thread of the parent, its background sync, may have held
    one: the child's first query waited for ever), and each index sees what was open."""
    global _locks, _locks_guard
    _locks, _locks_guard = {}, threading.Lock()
    for index in list(_SQL_INDEXES):
        index._after_fork()


if hasattr(os, "register_at_fork"):  # (no fork, no need: Windows)
    os.register_at_fork(after_in_child=_after_fork_in_child)


def _flocked(fd: int, tries: int) -> bool:
    """Whether an exclusive `flock` on `fd` was taken within `tries` tries 50 ms apart."""
    for attempt in range(tries):
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return True
        except BlockingIOError:
            if attempt < tries - 1:
                time.sleep(0.05)
    return False


def _process_lock(path: Path) -> threading.RLock:
    key = str(Path(path).resolve())
    with _locks_guard:
        return _locks.setdefault(key, threading.RLock())


_DUCKDB_HEADERS = 3 * 4096  # a DuckDB file begins with three 4 KiB headers
_ABANDONED_AFTER = 10.0  # seconds a file shorter than them must be untouched to be taken as abandoned


def _drop_unwritten(path: Path) -> None:
    """Remove a DuckDB file that was made but never written: a full disk, or a process killed
    as DuckDB made it, leaves it shorter than its headers, and DuckDB refuses it ("not a valid
    DuckDB database file") forever after, so every sync failed until `fsck --reindex`. Such a
    file holds nothing. It is taken as abandoned only without a WAL, untouched for a while (a
    young one may be another process's, being made) and locked by no one (DuckDB holds a lock
    on the file while it is open)."""
    try:
        info = path.stat()
    except OSError:
        return
    if info.st_size >= _DUCKDB_HEADERS or time.time() - info.st_mtime < _ABANDONED_AFTER \
            or path.with_name(path.name + ".wal").exists():
        return
    try:
        fd = os.open(path, os.O_RDWR)
    except OSError:
        return
    try:
        fcntl.lockf(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        if os.fstat(fd).st_size < _DUCKDB_HEADERS:
            os.unlink(path)
            log.info("%s was made but never written (a full disk or a killed process); made anew", path)
    except OSError:
        pass  # held by another process, or not ours to remove: DuckDB says what is wrong
    finally:
        os.close(fd)  # (releases the lock)


def held_by(exc: Exception) -> str:
    """What holds the file, from DuckDB's lock error ("... Conflicting lock is held in
    /usr/bin/duckdb (PID 4242)"), or what usually does."""
    found = re.search(r"lock is held in (.*?\(PID \d+\))", str(exc))
    return found.group(1) if found else "a DuckDB CLI or DBeaver session, or another scistack process"


def _held_elsewhere(exc: Exception) -> bool:
    """Another process holds the file, or (in this process) a connection with another mode
    does: a background sync while a read-only query opens. Both pass when it is closed.
    (Not any "lock" in the text: a checksum error names a "block".)"""
    text = str(exc).lower()
    return any(phrase in text for phrase in (
        "could not set lock", "conflicting lock", "lock on file", "same database file", "unique file handle"))


_NOT_UTF8_ROW = ("text that is not UTF-8 (a lone surrogate such as \\udce9, a file name's byte that is not "
                 "UTF-8) in a value an older scistack inlined")
_NOT_UTF8_FIX = ("run `scistack fsck --reindex` to rebuild the index from the journal (such a value is then shown "
                 "by its summary); every value still loads as saved")


def _not_utf8(exc: Exception | str) -> bool:
    """DuckDB refused a row's text as not UTF-8: its JSON a lone surrogate's escape (an older
    scistack inlined a value holding one; this one shows such a value by its summary, and
    `fsck --reindex` rebuilds the rows), or a string's bytes."""
    text = str(exc).lower()
    return any(phrase in text for phrase in ("invalid high surrogate", "invalid low surrogate", "invalid unicode"))


def _damaged(exc: Exception) -> bool:
    """The file itself is unreadable (a flipped byte, a truncation, not a DuckDB file)."""
    text = str(exc).lower()
    return any(phrase in text for phrase in (
        "corrupt", "checksum", "not a valid duckdb database", "invalid database", "serialization error",
        "failed to read", "could not read enough bytes", "the file is not a valid"))


def _canon(mapping: dict[str, Any]) -> str:
    return key_of(mapping)


def _texts(mappings: list[dict[str, Any] | None]) -> list[str]:
    """`key_of` of each mapping; most are empty (no version keys, no parameters): "{}" each."""
    found = iter(keys_of([m for m in mappings if m]))
    return [next(found) if m else "{}" for m in mappings]


def _display_all(values: list[Any]) -> list[str | None]:
    """`_display` of a schema key's values, each distinct value written once (a column of
    only strings is itself; of only ints, their reprs, which is what `json.dumps` writes)."""
    kinds = set(map(type, values))
    if kinds <= _STR_OR_NONE:
        return values
    if kinds == _INT:
        return list(map(int.__repr__, values))
    texts: dict[tuple[type, Any], str | None] = {}
    out = []
    for value in values:
        kind = type(value)
        if kind is str or value is None:
            out.append(value)
            continue
        memo = (kind, float.__repr__(value) if kind is float else value)  # -0.0 == 0.0
        try:
            text = texts[memo]
        except KeyError:
            text = texts[memo] = _display(value)
        except TypeError:  # unhashable
            text = _display(value)
        out.append(text)
    return out


_STR_OR_NONE = frozenset({str, type(None)})
_INT = frozenset({int})
_PUT_FIELDS = operator.itemgetter("var", "addr", "version", "oid", "kind", "t")


_display = shown_as_text  # the views show the key columns as they are
