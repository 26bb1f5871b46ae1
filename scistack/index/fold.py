"""The journal folded into a SQLite file (`.scistack/fold.sqlite`): what every name points to.

Why a file and not a fold in each process's memory: a Python fold costs ~2.6 KB and ~17 µs a
ref, so a project of a million refs took 17 s and 2.6 GB to open in every process, and ten
million would not fit. SQLite (in the standard library) opens in a millisecond whatever the
size, answers an indexed point lookup in a few µs, lets many processes read while one writes
(WAL), and commits the journal offset it has reached in the same transaction as the rows, so
a process killed while folding loses nothing and applies nothing twice.

Whoever reads first after the journal grew applies the new tail (`catch_up`), under SQLite's
write lock; a reader then sees every line ever journalled. The file is derived state: it is
rebuilt from the journal when missing, damaged, or when the journal was replaced.
"""

from __future__ import annotations

import json
import logging
import os
import sqlite3
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from scistack.errors import DatabaseLockedError
from scistack.index.journal import JournalBackend
from scistack.index.state import RefRecord, key_of
from scistack.records import RunRecord

log = logging.getLogger("scistack")

FOLD_VERSION = 1
_EMPTY = "{}"

_SCHEMA = f"""
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS refs (
    var TEXT NOT NULL, addr TEXT NOT NULL, version INTEGER NOT NULL, vkeys TEXT NOT NULL,
    oid TEXT NOT NULL, kind TEXT NOT NULL, call TEXT, params TEXT NOT NULL, summary TEXT,
    created_at TEXT NOT NULL, PRIMARY KEY (var, addr, version)) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS refs_newest ON refs (var, created_at);
CREATE TABLE IF NOT EXISTS slots (
    var TEXT NOT NULL, addr TEXT NOT NULL, max_version INTEGER NOT NULL,
    PRIMARY KEY (var, addr)) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS names (
    var TEXT NOT NULL, kind TEXT NOT NULL, name TEXT NOT NULL,
    PRIMARY KEY (var, kind, name)) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS calls (
    key TEXT PRIMARY KEY, call TEXT NOT NULL, fn TEXT, outs TEXT NOT NULL, multi INTEGER NOT NULL,
    created_at TEXT) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS call_keys (call TEXT PRIMARY KEY, key TEXT NOT NULL) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS runs (seq INTEGER PRIMARY KEY, entry TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS sizes (oid TEXT PRIMARY KEY, bytes INTEGER NOT NULL) WITHOUT ROWID;
INSERT OR IGNORE INTO meta VALUES ('fold_version', '{FOLD_VERSION}');
INSERT OR IGNORE INTO meta VALUES ('journal_offset', '0');
"""

_CHUNK = 5000
_REF_COLUMNS = "var, addr, version, vkeys, oid, kind, call, params, summary, created_at"


class Fold:
    """Reads and maintains the SQLite fold of one journal; one connection per process."""

    def __init__(self, path: str | os.PathLike, journal: JournalBackend, *, lock_timeout: float = 60.0) -> None:
        self.path = Path(path)
        self.journal = journal
        self.lock_timeout = lock_timeout
        self.offset = -1  # journal bytes this process knows the file holds (-1: not looked yet)
        self._con: sqlite3.Connection | None = None
        self._names: dict[tuple[str, str], set[str]] = {}  # cleared whenever the journal grows
        self._lock = threading.RLock()
        self._pid = os.getpid()

    # -- connection ----------------------------------------------------------------------
    def _connection(self) -> sqlite3.Connection:
        if self._con is not None and self._pid == os.getpid():
            return self._con
        self._pid = os.getpid()
        try:
            self._con = self._open()
        except sqlite3.DatabaseError as exc:  # damaged: it is derived state, so start again
            log.warning("%s is damaged (%s); rebuilding it from the journal", self.path, exc)
            self._discard_file()
            self._con = self._open()
        return self._con

    def _open(self) -> sqlite3.Connection:
        con = sqlite3.connect(self.path, timeout=self.lock_timeout, isolation_level=None,
                              check_same_thread=False)
        try:
            con.execute("PRAGMA journal_mode=WAL")
            con.execute("PRAGMA synchronous=NORMAL")  # derived state: a power cut re-folds
            con.executescript(_SCHEMA)
            found = int(_scalar(con, "SELECT value FROM meta WHERE key = 'fold_version'"))
            if found != FOLD_VERSION:  # another layout: derived, so rebuild rather than migrate
                con.close()
                self._discard_file()
                return self._open()
        except BaseException:
            con.close()
            raise
        return con

    def _discard_file(self) -> None:
        if self._con is not None:
            self._con.close()
            self._con = None
        self._names.clear()
        for suffix in ("", "-wal", "-shm"):
            try:
                os.unlink(f"{self.path}{suffix}")
            except FileNotFoundError:
                pass
        self.offset = -1

    def close(self) -> None:
        with self._lock:
            if self._con is not None and self._pid == os.getpid():
                self._con.close()
            self._con = None

    # -- keeping current -----------------------------------------------------------------
    def catch_up(self) -> bool:
        """Apply journal lines the file has not seen; True when any were applied here or by
        another process since this one last looked (so the caller's view changed)."""
        size = self.journal.size()
        if size == self.offset:
            return False
        with self._lock:
            self._names.clear()
            con = self._connection()
            stored = int(_scalar(con, "SELECT value FROM meta WHERE key = 'journal_offset'"))
            if stored == size:
                self.offset = size
                return True
            try:
                con.execute("BEGIN IMMEDIATE")
            except sqlite3.OperationalError as exc:
                raise DatabaseLockedError(
                    f"{self.path} stayed locked for {self.lock_timeout:.0f} s ({exc}); another "
                    "scistack process is folding a large journal. Try again; nothing is lost"
                ) from None
            try:
                stored = int(_scalar(con, "SELECT value FROM meta WHERE key = 'journal_offset'"))
                if stored > size:  # the journal was replaced (compaction): fold anew
                    for table in ("refs", "slots", "names", "calls", "call_keys", "runs"):
                        con.execute(f"DELETE FROM {table}")
                    stored = 0
                entries, offset = self.journal.read_from(stored)
                self._apply(con, entries)
                con.execute("UPDATE meta SET value = ? WHERE key = 'journal_offset'", (str(offset),))
                con.execute("COMMIT")
            except BaseException:
                con.execute("ROLLBACK")
                raise
            self.offset = offset
        return True

    def rebuild(self) -> None:
        """Forget the file and fold the whole journal again."""
        with self._lock:
            self._discard_file()
            self.catch_up()

    def _apply(self, con: sqlite3.Connection, entries: list[Any]) -> None:
        """Fold entries in journal order (puts and deletes of one ref may meet in one batch)."""
        puts: list[tuple] = []
        dels: list[tuple] = []
        calls: list[tuple] = []
        for entry in entries:
            try:
                op = entry["op"]
                if op == "put":
                    if dels:
                        _delete(con, dels)
                    puts.append(_put_row(entry))
                elif op == "del":
                    if puts:
                        _insert(con, puts)
                    dels.append((entry["var"], key_of(entry["addr"]), int(entry["version"])))
                elif op == "call":
                    calls.append(_call_row(entry))
                elif op == "uncall":  # in journal order: the entries before it go in first
                    _insert_calls(con, calls)
                    calls = []
                    con.execute("DELETE FROM calls WHERE key = ? AND call = ?", (entry["key"], entry["call"]))
                elif op == "run":
                    con.execute("INSERT INTO runs (entry) VALUES (?)", (json.dumps(entry),))
            except (KeyError, TypeError, ValueError, AttributeError):
                pass  # the journal's reader validated the shape; a value key_of cannot take is skipped
        if puts:
            _insert(con, puts)
        if dels:
            _delete(con, dels)
        _insert_calls(con, calls)

    # -- reading -------------------------------------------------------------------------
    def _rows(self, sql: str, args: tuple = ()) -> list[tuple]:
        with self._lock:
            return self._connection().execute(sql, args).fetchall()

    def variables(self) -> list[str]:
        # one index seek per variable (SELECT DISTINCT would scan every ref)
        found: list[str] = []
        while True:
            rows = self._rows("SELECT var FROM refs WHERE var > ? ORDER BY var LIMIT 1",
                              (found[-1] if found else "",))
            if not rows:
                return found
            found.append(rows[0][0])

    def summaries(self) -> list[tuple[str, int, int, str]]:
        """(variable, current records, live records, last change) for every variable."""
        return self._rows(
            "SELECT var, count(DISTINCT addr || char(0) || vkeys), count(*), max(created_at) "
            "FROM refs GROUP BY var ORDER BY var")

    def count(self, var: str) -> int:
        return self._rows("SELECT count(*) FROM refs WHERE var = ?", (var,))[0][0]

    def newest(self, var: str, limit: int) -> list[RefRecord]:
        rows = self._rows(f"SELECT {_REF_COLUMNS} FROM refs WHERE var = ? "
                          "ORDER BY created_at DESC, version DESC LIMIT ?", (var, limit))
        return [_record(r) for r in rows]

    def sizes(self, var: str) -> tuple[int, list[tuple[str, str]]]:
        """Bytes of the remembered sizes of the variable's distinct oids, and the (oid, kind)
        pairs whose size is not remembered yet."""
        known = self._rows("SELECT coalesce(sum(s.bytes), 0) FROM (SELECT DISTINCT oid FROM refs "
                           "WHERE var = ?) r JOIN sizes s USING (oid)", (var,))[0][0]
        unknown = self._rows("SELECT DISTINCT r.oid, r.kind FROM refs r LEFT JOIN sizes s USING (oid) "
                             "WHERE r.var = ? AND s.oid IS NULL", (var,))
        return known, unknown

    def remember_sizes(self, sizes: dict[str, int]) -> None:
        """Objects are immutable, so a size once measured is true for as long as the oid exists."""
        with self._lock:
            con = self._connection()
            con.execute("BEGIN IMMEDIATE")
            try:
                con.executemany("INSERT OR REPLACE INTO sizes VALUES (?, ?)", sizes.items())
                con.execute("COMMIT")
            except BaseException:
                con.execute("ROLLBACK")
                raise

    def records(self, var: str) -> list[RefRecord]:
        rows = self._rows(f"SELECT {_REF_COLUMNS} FROM refs WHERE var = ? ORDER BY addr, version", (var,))
        return [_record(r) for r in rows]

    def versions_at(self, var: str, addr_key: str) -> list[RefRecord]:
        rows = self._rows(f"SELECT {_REF_COLUMNS} FROM refs WHERE var = ? AND addr = ? ORDER BY version",
                          (var, addr_key))
        return [_record(r) for r in rows]

    def versions_many(self, var: str, addr_keys: list[str]) -> dict[str, list[RefRecord]]:
        """`versions_at` for many addresses in one query per chunk (an index seek each)."""
        found: dict[str, list[RefRecord]] = {}
        for start in range(0, len(addr_keys), _CHUNK):
            rows = self._rows(
                f"SELECT {_REF_COLUMNS} FROM refs WHERE var = ? AND addr IN "
                "(SELECT value FROM json_each(?)) ORDER BY addr, version",
                (var, json.dumps(addr_keys[start:start + _CHUNK])))
            for row in rows:
                found.setdefault(row[1], []).append(_record(row))
        return found

    def calls_many(self, keys: list[str]) -> dict[str, dict[str, Any]]:
        """`call` for many keys in one query per chunk."""
        found = {}
        for start in range(0, len(keys), _CHUNK):
            rows = self._rows("SELECT key, call, fn, outs, multi, created_at FROM calls WHERE key IN "
                              "(SELECT value FROM json_each(?))", (json.dumps(keys[start:start + _CHUNK]),))
            found.update((r[0], _call_entry(r[0], r[1:])) for r in rows)
        return found

    def max_versions_many(self, var: str, addr_keys: list[str]) -> dict[str, int]:
        found = {}
        for start in range(0, len(addr_keys), _CHUNK):
            found.update(self._rows("SELECT addr, max_version FROM slots WHERE var = ? AND addr IN "
                                    "(SELECT value FROM json_each(?))",
                                    (var, json.dumps(addr_keys[start:start + _CHUNK]))))
        return found

    def call_keys_many(self, call_oids: list[str]) -> dict[str, str]:
        found = {}
        for start in range(0, len(call_oids), _CHUNK):
            found.update(self._rows("SELECT call, key FROM call_keys WHERE call IN "
                                    "(SELECT value FROM json_each(?))",
                                    (json.dumps(call_oids[start:start + _CHUNK]),)))
        return found

    def current_at(self, var: str, addr_key: str, vkeys_key: str) -> RefRecord | None:
        rows = self._rows(
            f"SELECT {_REF_COLUMNS} FROM refs WHERE var = ? AND addr = ? AND vkeys = ? "
            "ORDER BY version DESC LIMIT 1", (var, addr_key, vkeys_key))
        return _record(rows[0]) if rows else None

    def refs_to(self, oid: str) -> list[RefRecord]:
        return [_record(r) for r in self._rows(f"SELECT {_REF_COLUMNS} FROM refs WHERE oid = ?", (oid,))]

    def max_version(self, var: str, addr_key: str) -> int:
        rows = self._rows("SELECT max_version FROM slots WHERE var = ? AND addr = ?", (var, addr_key))
        return rows[0][0] if rows else 0

    def names(self, var: str, kind: str) -> set[str]:
        found = self._names.get((var, kind))
        if found is None:
            found = {r[0] for r in self._rows("SELECT name FROM names WHERE var = ? AND kind = ?", (var, kind))}
            self._names[(var, kind)] = found
        return found

    def call(self, key: str) -> dict[str, Any] | None:
        rows = self._rows("SELECT call, fn, outs, multi, created_at FROM calls WHERE key = ?", (key,))
        return _call_entry(key, rows[0]) if rows else None

    def call_key_of(self, call_oid: str) -> str | None:
        rows = self._rows("SELECT key FROM call_keys WHERE call = ?", (call_oid,))
        return rows[0][0] if rows else None

    def calls(self) -> Iterator[dict[str, Any]]:
        rows = self._rows("SELECT key, call, fn, outs, multi, created_at FROM calls ORDER BY key")
        return (_call_entry(r[0], r[1:]) for r in rows)

    def runs(self) -> list[RunRecord]:
        return [RunRecord.from_entry(json.loads(r[0])) for r in self._rows("SELECT entry FROM runs ORDER BY seq")]


def _scalar(con: sqlite3.Connection, sql: str) -> Any:
    return con.execute(sql).fetchone()[0]


def _put_row(e: dict[str, Any]) -> tuple:
    var, oid, kind, t = e["var"], e["oid"], e["kind"], e["t"]
    version = e["version"]
    params = e.get("params") or {}
    return (var, key_of(e["addr"]), version, key_of(e.get("vkeys") or {}), oid, kind, e.get("call"),
            key_of(params) if params else _EMPTY, e.get("summary", ""), t,
            tuple(e.get("vkeys") or ()), tuple(params))


def _insert(con: sqlite3.Connection, puts: list[tuple]) -> None:
    con.executemany(f"INSERT OR REPLACE INTO refs ({_REF_COLUMNS}) VALUES (?,?,?,?,?,?,?,?,?,?)",
                    [p[:10] for p in puts])
    con.executemany(
        "INSERT INTO slots VALUES (?, ?, ?) ON CONFLICT (var, addr) "
        "DO UPDATE SET max_version = max(max_version, excluded.max_version)",
        [(p[0], p[1], p[2]) for p in puts])
    names = {(p[0], "vkey", n) for p in puts for n in p[10]} | {(p[0], "param", n) for p in puts for n in p[11]}
    if names:
        con.executemany("INSERT OR IGNORE INTO names VALUES (?, ?, ?)", sorted(names))
    puts.clear()


def _delete(con: sqlite3.Connection, dels: list[tuple]) -> None:
    con.executemany("DELETE FROM refs WHERE var = ? AND addr = ? AND version = ?", dels)
    dels.clear()


def _insert_calls(con: sqlite3.Connection, calls: list[tuple]) -> None:
    if calls:  # the last entry of a key wins, as in journal order
        con.executemany("INSERT OR REPLACE INTO calls VALUES (?, ?, ?, ?, ?, ?)", calls)
        con.executemany("INSERT OR REPLACE INTO call_keys VALUES (?, ?)", [(c[1], c[0]) for c in calls])


def _call_row(e: dict[str, Any]) -> tuple:
    return (e["key"], e["call"], e.get("fn"), json.dumps(e.get("outs") or []), 1 if e.get("multi") else 0,
            e.get("t"))


def _call_entry(key: str, row: tuple) -> dict[str, Any]:
    """A call-cache entry in its journal shape (what `Index.cached_call` has always returned)."""
    call, fn, outs, multi, t = row
    entry = {"op": "call", "key": key, "call": call, "fn": fn, "outs": json.loads(outs), "t": t}
    if multi:
        entry["multi"] = True
    return entry



def _record(row: tuple) -> RefRecord:
    var, addr, version, vkeys, oid, kind, call, params, summary, created_at = row
    return RefRecord.from_text(var, addr, vkeys, version, oid, kind, call, params, summary or "", created_at)
