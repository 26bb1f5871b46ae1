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

import collections
import errno
import heapq
import itertools
import json
import logging
import os
import re
import sqlite3
import threading
import time
import weakref
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from scistack.address import address_order
from scistack.errors import DatabaseLockedError, IndexDamagedError, StorageFullError, storage_full
from scistack.index.journal import JournalBackend, loads_line, size_now
from scistack.index.state import RefRecord, call_changes, key_of, keys_of, shown_as
from scistack.records import RunRecord
from scistack.objects.forks import hold_across_fork

log = logging.getLogger("scistack")

FOLD_VERSION = 19
_EMPTY = "{}"

_SCHEMA = f"""
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS refs (
    var TEXT NOT NULL, addr TEXT NOT NULL, version INTEGER NOT NULL, vkeys TEXT NOT NULL,
    oid BLOB NOT NULL, kind TEXT NOT NULL, call TEXT, params TEXT NOT NULL, summary TEXT,
    created_at TEXT NOT NULL, PRIMARY KEY (var, addr, version)) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS refs_newest ON refs (var, created_at);
CREATE TABLE IF NOT EXISTS slots (
    var TEXT NOT NULL, addr TEXT NOT NULL, max_version INTEGER NOT NULL,
    n INTEGER NOT NULL DEFAULT 0,  -- the variable's change count when this address last changed
    live INTEGER NOT NULL DEFAULT 1,  -- 1 while a record is there (a slot outlives its deletes)
    PRIMARY KEY (var, addr)) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS names (
    var TEXT NOT NULL, kind TEXT NOT NULL, name TEXT NOT NULL,
    PRIMARY KEY (var, kind, name)) WITHOUT ROWID;
-- each schema key's values ever saved, by the text they show as in a column holding text and
-- numbers, and their type (`shown_as`): a save of "1" where 1 is saved is refused, since the
-- views and `where=` cannot tell the two apart (kept after deletes, as names are)
CREATE TABLE IF NOT EXISTS key_values (
    key TEXT NOT NULL, text TEXT NOT NULL, type TEXT NOT NULL, PRIMARY KEY (key, text, type)) WITHOUT ROWID;
-- each variable's version-key values its live refs hold, with how many refs hold each (`n`;
-- a row goes with its last ref), as SQLite's `json_each` gives them (type 'integer', 'real',
-- 'text', 'true' or 'false'; a bool's atom 1 or 0): a save of note="1" where the variable's
-- live refs hold note=1 is refused by a point lookup here (`Index._check_vkey_value`). Kept by
-- the fold as refs are inserted (`_insert`) and by SQLite as they go (`ref_vkeys_gone`)
CREATE TABLE IF NOT EXISTS vkey_values (
    var TEXT NOT NULL, key TEXT NOT NULL, type TEXT NOT NULL, atom NOT NULL, n INTEGER NOT NULL,
    PRIMARY KEY (var, key, type, atom)) WITHOUT ROWID;
-- `vars`: a bit per variable with a live record here (`var_bits`; variables past the 63rd have
-- none), so the addresses a variable lacks are found through a few index ranges, not a probe
-- of every address
CREATE TABLE IF NOT EXISTS addresses (addr TEXT PRIMARY KEY, vars INTEGER NOT NULL DEFAULT 0) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS var_bits (var TEXT PRIMARY KEY, bit INTEGER NOT NULL UNIQUE) WITHOUT ROWID;
-- the call cache: key, call and fn are oids (BLOBs, as `refs.oid`)
CREATE TABLE IF NOT EXISTS calls (
    key BLOB PRIMARY KEY, call BLOB NOT NULL, fn BLOB, outs TEXT NOT NULL, multi INTEGER NOT NULL,
    created_at TEXT, origins BLOB) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS call_keys (call BLOB PRIMARY KEY, key BLOB NOT NULL) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS runs (seq INTEGER PRIMARY KEY, entry TEXT NOT NULL);
-- each measured object's own bytes on disk (a container's children are in `parts`)
CREATE TABLE IF NOT EXISTS sizes (oid BLOB PRIMARY KEY, bytes INTEGER NOT NULL) WITHOUT ROWID;
-- `ls` follows a variable's bytes on disk by what changed, from its first listing on: its
-- distinct objects with how many of its refs name each (`var_oids`), the running total
-- (`var_bytes`), and the objects that joined it since (`var_unsized`, sized by the next `ls`);
-- one whose last ref goes is subtracted. (A full sum after one more save to a variable of 1M
-- refs took 1.1-1.4 s, 4-8 s at 3M.) Variables never listed cost the fold nothing.
CREATE TABLE IF NOT EXISTS var_oids (
    var TEXT NOT NULL, oid BLOB NOT NULL, kind TEXT NOT NULL, n INTEGER NOT NULL, PRIMARY KEY (var, oid)) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS var_bytes (var TEXT PRIMARY KEY, bytes INTEGER NOT NULL) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS var_unsized (var TEXT NOT NULL, oid BLOB NOT NULL, PRIMARY KEY (var, oid)) WITHOUT ROWID;
-- objects shared between a variable's values (chunks of versions that differ in one chunk, an
-- array in two containers) are on disk once: `parts` lists each measured container's objects at
-- any depth (with `sizes`, its own bytes, measured together), and `var_parts` a variable's
-- measured objects with their parts, each with how many of its distinct objects hold it (itself
-- included): `var_bytes` sums each once
CREATE TABLE IF NOT EXISTS parts (parent BLOB NOT NULL, child BLOB NOT NULL, PRIMARY KEY (parent, child)) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS var_parts (var TEXT NOT NULL, oid BLOB NOT NULL, n INTEGER NOT NULL,
    PRIMARY KEY (var, oid)) WITHOUT ROWID;
-- the call records a variable's records ever named, with the variable's change count when one
-- was first named (`var_calls_by_n`: a report reads the calls named since it last looked) and
-- how many of its live refs name it now (`live`: 0 once deleted, and gc may then remove it)
CREATE TABLE IF NOT EXISTS var_calls (
    var TEXT NOT NULL, call TEXT NOT NULL, n INTEGER NOT NULL DEFAULT 0, live INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (var, call)) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS var_changes (var TEXT PRIMARY KEY, n INTEGER NOT NULL) WITHOUT ROWID;
-- the time of a variable's newest delete (journal `t`): a delete changes the variable as a save
-- does, so `ls`'s last change is the later of this and its newest live ref's `created_at`
CREATE TABLE IF NOT EXISTS var_deleted (var TEXT PRIMARY KEY, at TEXT NOT NULL) WITHOUT ROWID;
-- a variable's refs and live addresses, kept from its first summary on (`ls`, `status`): a
-- count after each save read all of its refs (0.7 s for a variable of 3.3M refs)
CREATE TABLE IF NOT EXISTS var_counts (
    var TEXT PRIMARY KEY, refs INTEGER NOT NULL, slots INTEGER NOT NULL) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS var_summary (
    var TEXT PRIMARY KEY, changes INTEGER NOT NULL, current INTEGER NOT NULL, live INTEGER NOT NULL,
    last TEXT, bytes INTEGER) WITHOUT ROWID;  -- (bytes: unused since layout 10, see var_bytes)
CREATE TABLE IF NOT EXISTS call_facts (
    call TEXT PRIMARY KEY, module TEXT, function TEXT, identity TEXT, simple INTEGER NOT NULL) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS call_inputs (
    call TEXT NOT NULL, name TEXT NOT NULL, var TEXT NOT NULL, addr TEXT NOT NULL, vkeys TEXT NOT NULL,
    oid BLOB NOT NULL, PRIMARY KEY (call, name)) WITHOUT ROWID;
-- the variables a call record reads whole or in part through an aggregated or merged input
-- (its members are in the record, not in `call_inputs`)
CREATE TABLE IF NOT EXISTS call_gathers (call TEXT NOT NULL, var TEXT NOT NULL, PRIMARY KEY (call, var)) WITHOUT ROWID;
-- what reports learned, kept between processes (a variable's facts at its change count; its
-- judged cells under a signature of everything they depend on): derived, so always droppable
CREATE TABLE IF NOT EXISTS var_facts (
    var TEXT PRIMARY KEY, changes INTEGER NOT NULL, inputs TEXT NOT NULL, functions TEXT NOT NULL) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS judged_sig (
    var TEXT PRIMARY KEY, sig TEXT NOT NULL, counts TEXT NOT NULL, state TEXT) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS judged_cells (var TEXT NOT NULL, addr TEXT NOT NULL, version INTEGER NOT NULL,
    created_at TEXT, verdict TEXT NOT NULL, PRIMARY KEY (var, addr)) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS run_facts (
    items TEXT PRIMARY KEY, total INTEGER NOT NULL, failed INTEGER NOT NULL) WITHOUT ROWID;
INSERT OR IGNORE INTO meta VALUES ('fold_version', '{FOLD_VERSION}');
INSERT OR IGNORE INTO meta VALUES ('journal_offset', '0');
-- journal lines folded past that no reader can take (torn, or of the wrong shape): reports
-- say so, `fsck` names them; fsck sets it to what it finds (after `--quarantine`: none)
INSERT OR IGNORE INTO meta VALUES ('skipped_lines', '0');
"""

_JSON_TYPES = ("integer", "real", "text", "true", "false")  # (what a version key's value may be)
_VKEY_TYPES = f"{_JSON_TYPES}"
_BITS = 63  # variables with a bit in `addresses.vars` (a signed 64-bit INTEGER)
_BIT_OF_NEW = f"coalesce((SELECT 1 << bit FROM var_bits WHERE var = NEW.var AND bit < {_BITS}), 0)"

# Kept by SQLite itself as slots come and go (a trigger fires only when a slot's liveness
# changes: a new version where one lives costs nothing). After `_SCHEMA` and any migration,
# which gives an older file the column these name.
_DERIVED = f"""
CREATE INDEX IF NOT EXISTS addresses_by_vars ON addresses (vars, addr);
CREATE INDEX IF NOT EXISTS var_calls_by_n ON var_calls (var, n);
CREATE TRIGGER IF NOT EXISTS slot_born AFTER INSERT ON slots WHEN NEW.live BEGIN
    UPDATE addresses SET vars = vars | {_BIT_OF_NEW} WHERE addr = NEW.addr AND NOT vars & {_BIT_OF_NEW};
    UPDATE var_counts SET slots = slots + 1 WHERE var = NEW.var;
END;
CREATE TRIGGER IF NOT EXISTS slot_revived AFTER UPDATE OF live ON slots WHEN NEW.live AND NOT OLD.live BEGIN
    UPDATE addresses SET vars = vars | {_BIT_OF_NEW} WHERE addr = NEW.addr AND NOT vars & {_BIT_OF_NEW};
    UPDATE var_counts SET slots = slots + 1 WHERE var = NEW.var;
END;
CREATE TRIGGER IF NOT EXISTS slot_emptied AFTER UPDATE OF live ON slots WHEN OLD.live AND NOT NEW.live BEGIN
    UPDATE addresses SET vars = vars & ~{_BIT_OF_NEW} WHERE addr = NEW.addr AND vars & {_BIT_OF_NEW};
    UPDATE var_counts SET slots = slots - 1 WHERE var = NEW.var;
END;
CREATE TRIGGER IF NOT EXISTS ref_gone AFTER DELETE ON refs BEGIN  -- a delete, or a ref folded again (REPLACE)
    UPDATE var_counts SET refs = refs - 1 WHERE var = OLD.var;
END;
CREATE TRIGGER IF NOT EXISTS ref_vkeys_gone AFTER DELETE ON refs WHEN OLD.vkeys != '{_EMPTY}' BEGIN
    UPDATE vkey_values SET n = n - 1 WHERE var = OLD.var
        AND (key, type, atom) IN (SELECT key, type, atom FROM json_each(OLD.vkeys));  -- (a seek each)
    DELETE FROM vkey_values WHERE var = OLD.var AND (key, type, atom) IN
        (SELECT key, type, atom FROM json_each(OLD.vkeys)) AND n <= 0;
END;
CREATE TRIGGER IF NOT EXISTS ref_call_unnamed AFTER DELETE ON refs WHEN OLD.call IS NOT NULL BEGIN
    UPDATE var_calls SET live = live - 1 WHERE var = OLD.var AND call = OLD.call;
END;
CREATE TRIGGER IF NOT EXISTS ref_unnamed AFTER DELETE ON refs
WHEN EXISTS (SELECT 1 FROM var_bytes WHERE var = OLD.var) BEGIN
    UPDATE var_oids SET n = n - 1 WHERE var = OLD.var AND oid = OLD.oid;
    DELETE FROM var_oids WHERE var = OLD.var AND oid = OLD.oid AND n <= 0;
END;
CREATE TRIGGER IF NOT EXISTS var_oid_joined AFTER INSERT ON var_oids
WHEN EXISTS (SELECT 1 FROM var_bytes WHERE var = NEW.var) BEGIN
    INSERT OR IGNORE INTO var_unsized VALUES (NEW.var, NEW.oid);
END;
CREATE TRIGGER IF NOT EXISTS var_oid_left AFTER DELETE ON var_oids
WHEN EXISTS (SELECT 1 FROM var_bytes WHERE var = OLD.var) BEGIN
    UPDATE var_parts SET n = n - 1 WHERE var = OLD.var
        AND oid IN (SELECT OLD.oid UNION ALL SELECT child FROM parts WHERE parent = OLD.oid)
        AND NOT EXISTS (SELECT 1 FROM var_unsized WHERE var = OLD.var AND oid = OLD.oid);
    UPDATE var_bytes SET bytes = bytes - coalesce((SELECT sum(s.bytes) FROM var_parts p JOIN sizes s ON s.oid = p.oid
        WHERE p.var = OLD.var AND p.n <= 0
        AND p.oid IN (SELECT OLD.oid UNION ALL SELECT child FROM parts WHERE parent = OLD.oid)), 0)
        WHERE var = OLD.var;
    DELETE FROM var_parts WHERE var = OLD.var AND n <= 0
        AND oid IN (SELECT OLD.oid UNION ALL SELECT child FROM parts WHERE parent = OLD.oid);
    DELETE FROM var_unsized WHERE var = OLD.var AND oid = OLD.oid;
END;
"""

# Layouts that become the next one by adding columns or tables (version -> its statements).
# Version 8 stores oids as 32-byte BLOBs (7 kept 64-character hex text), which an older fold's
# rows are not, so versions 6 and 7 are rebuilt from the journal; 8 gains the address
# bitmasks, 9 the tables of the variables' running byte totals (empty: a variable is counted
# at its first `ls`), 10 the variables' running counts (`var_counts`, likewise), 11 the calls'
# gathered variables (`call_gathers`: the facts of calls that are not simple are learned again),
# 12 the digest of the inputs' origins a cache entry was recorded with (`calls.origins`), 13
# the change count at which a variable first named a call (`var_calls.n`), 14 the time of each
# variable's newest delete (`var_deleted`: made by `_SCHEMA`, empty; the deletes folded before
# are in the journal only, so their times count from the next rebuild, `scistack fsck --reindex`),
# 15 how many live refs name each of a variable's calls (`var_calls.live`, counted here once),
# 16 the parts of containers and of each variable (`parts`, `var_parts`: `ls` counts a chunk
# shared between versions once; `sizes` becomes each object's own bytes, so all are measured anew).
def _float_key_values(con: sqlite3.Connection) -> None:
    """Layout 17's `key_values` rows of the addresses' floats, as the fold writes them
    (`shown_as`: Python's repr, and a whole float's int digits too), from the addresses that
    hold one, read by Python. SQLite's own text had been written: 15 digits (2.0**60 as
    1.15292150460685e+18, not 1.152921504606847e+18), `1.0e+20` for `1e+20`, and a whole float
    beyond int64 (1e20, 2.0**70) had no int text at all (CAST AS INTEGER saturates), so a later
    save of a look-alike of such a value was not refused."""
    rows: set[tuple[str, str, str]] = set()
    for (addr,) in con.execute("SELECT addr FROM addresses WHERE EXISTS "
                               "(SELECT 1 FROM json_each(addresses.addr) WHERE type = 'real')"):
        for key, value in json.loads(addr).items():
            if type(value) is float:
                rows.update((key, text, "float") for text in shown_as(value)[1])
    con.executemany("INSERT OR IGNORE INTO key_values VALUES (?, ?, ?)", sorted(rows))


_MIGRATIONS: dict[int, tuple[str | Callable[[sqlite3.Connection], None], ...]] = {18: (
    # each variable's version-key values its live refs hold (`vkey_values`: made empty by
    # `_SCHEMA`; its triggers come with `_DERIVED`, after this): one pass over the refs, once
    "DELETE FROM vkey_values",
    "INSERT INTO vkey_values SELECT r.var, j.key, j.type, j.atom, count(*) FROM refs AS r, json_each(r.vkeys) AS j "
    f"WHERE r.vkeys != '{_EMPTY}' AND j.type IN {_VKEY_TYPES} GROUP BY r.var, j.key, j.type, j.atom",
), 17: (
    # the schema keys' values with their types (`key_values`, from the addresses: what the
    # fold would have written); ints and text as SQLite has them (address ints are within
    # int64: `address_problem`), floats by Python's repr (`_float_key_values`)
    "INSERT OR IGNORE INTO key_values SELECT j.key, CASE j.type WHEN 'text' THEN j.atom ELSE j.type END, "
    "CASE j.type WHEN 'text' THEN 'str' ELSE 'bool' END FROM addresses, json_each(addresses.addr) AS j "
    "WHERE j.type IN ('text', 'true', 'false')",
    "INSERT OR IGNORE INTO key_values SELECT j.key, CAST(j.atom AS TEXT), 'int' FROM addresses, "
    "json_each(addresses.addr) AS j WHERE j.type = 'integer'",
    _float_key_values,
), 16: (
    # sizes had each object's bytes with its children's: measured again, own bytes and parts
    "DELETE FROM sizes", "DELETE FROM var_bytes", "DELETE FROM var_unsized", "DELETE FROM var_oids",
    "DROP TRIGGER IF EXISTS var_oid_left",  # (made again from `_DERIVED`: it takes off parts)
), 15: (
    "ALTER TABLE var_calls ADD COLUMN live INTEGER NOT NULL DEFAULT 0",
    "UPDATE var_calls SET live = c.n FROM (SELECT var, call, count(*) AS n FROM refs WHERE call IS NOT NULL "
    "GROUP BY var, call) AS c WHERE c.var = var_calls.var AND c.call = var_calls.call",
    "DELETE FROM var_facts",  # (its functions may name a deleted call: learned again from live ones)
), 14: (), 13: (
    "ALTER TABLE var_calls ADD COLUMN n INTEGER NOT NULL DEFAULT 0",  # (unknown: before any count)
    "DELETE FROM var_facts",  # (so the next report learns each variable's facts from all its calls)
), 12: (
    "ALTER TABLE calls ADD COLUMN origins BLOB",  # (NULL for entries written before: unknown)
), 11: (
    # calls that may gather (an aggregated or merged input makes a call not simple) are
    # learned again, with the variables they gather (`call_gathers`); simple ones gather none
    "DELETE FROM call_inputs WHERE call IN (SELECT call FROM call_facts WHERE NOT simple)",
    "DELETE FROM call_facts WHERE NOT simple", "DELETE FROM var_facts",
), 10: (
    "DELETE FROM var_counts",  # (empty: a new table; a variable is counted at its first summary)
    # the slots' triggers gain their counts: dropped here, made again from `_DERIVED`
    "DROP TRIGGER IF EXISTS slot_born", "DROP TRIGGER IF EXISTS slot_revived", "DROP TRIGGER IF EXISTS slot_emptied",
), 9: (
    "DELETE FROM var_bytes", "DELETE FROM var_unsized", "DELETE FROM var_oids",  # (empty: new tables)
), 8: (
    "ALTER TABLE addresses ADD COLUMN vars INTEGER NOT NULL DEFAULT 0",
    "INSERT OR IGNORE INTO var_bits SELECT var, row_number() OVER (ORDER BY var) - 1 FROM var_changes",
    "UPDATE addresses SET vars = (SELECT coalesce(sum(1 << b.bit), 0) FROM var_bits b JOIN slots s "
    f"ON s.var = b.var AND s.addr = addresses.addr AND s.live WHERE b.bit < {_BITS})",
)}


def _migrate(con: sqlite3.Connection, found: int) -> int:
    """Bring a fold of version `found` to the current layout in one transaction (another
    process may be doing the same: the version is read again under the write lock)."""
    try:
        _begin(con)
        if int(_scalar(con, "SELECT value FROM meta WHERE key = 'fold_version'")) == found:
            while found in _MIGRATIONS:  # 8 -> 9 -> ... -> FOLD_VERSION
                for statement in _MIGRATIONS[found]:
                    if isinstance(statement, str):
                        con.execute(statement)
                    else:
                        statement(con)
                found += 1
            con.execute("UPDATE meta SET value = ? WHERE key = 'fold_version'", (str(found),))
        con.execute("COMMIT")
    except BaseException:
        _rollback(con)
        raise
    return int(_scalar(con, "SELECT value FROM meta WHERE key = 'fold_version'"))

# How many times this process's line has forked: a child must open its own connection (one
# inherited across fork is unusable). A counter, not os.getpid(): a lookup checks it each time.
# SQLite keeps each file's locks per process, in memory the child inherits: a connection the
# child opened while an inherited one was open counted the parent's lock as its own and took
# none, so the parent's close (the last lock it saw) checkpointed and deleted the write-ahead
# log under the child, whose later commits were lost. So the child closes the inherited
# connections before it opens its own (`_reader`): with the parent's lock held, that close
# neither checkpoints nor deletes anything. No transaction is open at the fork: each fold's
# lock, under which every write runs, is taken for it (the ender thread or another of the
# parent's threads may have held it: the child had waited for ever), and released on both
# sides (`objects.forks.hold_across_fork`).
_forks = [0]
_FOLDS: weakref.WeakSet[Fold] = weakref.WeakSet()
hold_across_fork(lambda: [fold._lock for fold in list(_FOLDS)],
                 in_child=lambda: _forks.__setitem__(0, _forks[0] + 1))

_CHUNK = 5000


def _bound_limit() -> int:
    """The most `?` one statement may bind in this SQLite (999 before 3.32: RHEL 8, Ubuntu
    18.04), so an `IN (?, ...)` list is cut to fit (5000 a statement had failed there)."""
    con = sqlite3.connect(":memory:")
    try:
        return con.getlimit(sqlite3.SQLITE_LIMIT_VARIABLE_NUMBER)
    finally:
        con.close()


_IN_CHUNK = max(1, min(_CHUNK, _bound_limit() - 2))  # oids an `IN (?, ...)` asks at once (two ? spare)
_HOLD_S = 0.1  # the longest a point lookup's read transaction stays open
# WAL pages after which a commit copies them into the file (SQLite's default: 1000). A run's
# flush (~1 s of work) dirties a page per new call in each of the trees keyed by hash (calls,
# call_keys, var_calls, var_oids): ~30 MB at 1M refs, so every commit was also a checkpoint
# that wrote each page again and synced twice. At 40 MB a page changed by several flushes is
# copied once: a fold of 100k calls' lines, a flush's worth at a time, 12.3 -> 10.7 s.
_CHECKPOINT_PAGES = 10_000
_CHUNK_BYTES = 16 << 20  # journal bytes folded per transaction (~50k lines, ~150 MB of Python)
_REF_COLUMNS = "var, addr, version, vkeys, oid, kind, call, params, summary, created_at"
_ROW_COLUMNS = "version, vkeys, oid, kind, call, params, summary, created_at"  # `RefRecord.from_row`'s
_VERSIONS_AT = (f"SELECT {_ROW_COLUMNS} FROM refs "
                "WHERE var = ? AND addr = ? ORDER BY version")


FOLD_NAME = "fold.sqlite"


def _layout(con: sqlite3.Connection) -> int | None:
    """The layout version a fold file says it has (None: a new file, or none readable)."""
    try:
        row = con.execute("SELECT value FROM meta WHERE key = 'fold_version'").fetchone()
        return int(row[0]) if row else None
    except (sqlite3.DatabaseError, ValueError, TypeError):
        return None


# SQLite errors that say the file could not be opened or locked, not that it is damaged
_NOT_DAMAGE = frozenset({"SQLITE_CANTOPEN", "SQLITE_READONLY", "SQLITE_PERM", "SQLITE_BUSY",
                         "SQLITE_LOCKED", "SQLITE_AUTH", "SQLITE_FULL"})


def _not_damage(exc: BaseException) -> bool:
    """An error opening the fold that says nothing about its content: a lock, a permission,
    a full disk or an I/O error (SQLITE_IOERR_*: a file-size limit past which a write fails
    with EFBIG reads as "disk I/O error"). Such a file is not deleted: other processes may
    have it, its -wal and -shm open, and deleting a live WAL lets them diverge."""
    name = getattr(exc, "sqlite_errorname", "") or ""
    return name in _NOT_DAMAGE or name.startswith("SQLITE_IOERR")


def _write_refused(exc: sqlite3.OperationalError, path: Any) -> StorageFullError | None:
    """A clear error for a fold write the disk refused: a full disk (SQLite's "database or
    disk is full") or an I/O error (SQLITE_IOERR_*, what a write past a file-size limit
    reports); None for any other failure (a lock)."""
    consequence = "Every saved value is intact in the journal, and this index is rebuilt from it"
    full = storage_full(exc, f"the local index {path}", consequence)
    if full is not None:
        return full
    if (getattr(exc, "sqlite_errorname", "") or "").startswith("SQLITE_IOERR"):
        return StorageFullError(
            errno.EIO, f"the local index {path} could not be written ({exc}): the disk, a quota "
            f"or a file-size limit (ulimit -f) refused the write, or the disk failed. {consequence}. "
            "Free space or raise the limit and retry")
    return None


class Fold:
    """Reads and maintains the SQLite fold of one journal; one connection per process."""

    def __init__(self, path: str | os.PathLike, journal: JournalBackend, *, lock_timeout: float = 60.0,
                 read_only: bool = False) -> None:
        self.path = Path(path)
        self.journal = journal
        # a project that cannot be written: the fold is a copy in memory (the file as it is,
        # else an empty one) that catches up with the journal there, and nothing is written
        self.read_only = read_only
        self._memory = f"file:scistack-fold-{id(self)}?mode=memory&cache=shared"
        self.lock_timeout = lock_timeout
        self.offset = -1  # journal bytes this process knows the file holds (-1: not looked yet)
        self._con: sqlite3.Connection | None = None
        self._point: sqlite3.Connection | None = None  # the point lookups' own (`_held_rows`)
        self._point_cursor: sqlite3.Cursor | None = None  # (made with `_point`, used only with it)
        self._names: dict[tuple[str, str], set[str]] = {}  # cleared whenever the journal grows
        # (the connection, keys whose `_key_index` it has, keys it could not be made for at offset)
        self._indexed: tuple[Any, set[str], dict[str, int]] = (None, set(), {})
        self._lock = threading.RLock()
        self._pid = _forks[0]
        _FOLDS.add(self)
        self._held = False  # a read transaction `_held_rows` began is open
        self._fold_warned = False  # `appended` said once that it could not fold
        self._held_opened = threading.Event()
        self._ender: threading.Thread | None = None

    # -- connection ----------------------------------------------------------------------
    def _connection(self) -> sqlite3.Connection:
        """The connection with no read transaction of `_held_rows` open: for writers, and
        for readers that begin their own transactions (`Judging`)."""
        con = self._reader()
        if self._held:
            self._end_held()
        return con

    def _reader(self) -> sqlite3.Connection:
        if self._con is not None and self._pid == _forks[0]:
            return self._con
        if self._pid != _forks[0]:  # a forked child: its parent's connections are closed first
            self._close_inherited()
        self._pid = _forks[0]
        # a forked child: the parent's transaction, thread, event, connections are not its own
        self._held, self._ender, self._held_opened, self._point = False, None, threading.Event(), None
        try:
            self._con = self._open()
        except sqlite3.DatabaseError as exc:  # damaged: it is derived state, so start again
            if _not_damage(exc):
                raise IndexDamagedError(  # (it said "damaged" and deleted the file to rebuild it)
                    f"cannot open the local index {self.path} ({exc}); check that its folder can be "
                    "written by you and is on a working disk. Nothing was changed") from None
            log.warning("%s is damaged (%s); rebuilding it from the journal", self.path, exc)
            self._discard_file()
            self._con = self._open()
        return self._con

    def _close_inherited(self) -> None:
        """In a forked child: close the connections inherited from the parent before any of
        the child's own opens (see `_forks`). The parent holds its lock on the file, so this
        close cannot take the exclusive lock that would checkpoint or delete the log."""
        for con in (self._point, self._con):
            if con is not None:
                try:
                    con.close()
                except sqlite3.Error:
                    pass
        self._con = self._point = None

    def _connect(self) -> sqlite3.Connection:
        if self.read_only:
            return sqlite3.connect(self._memory, uri=True, isolation_level=None, check_same_thread=False)
        return sqlite3.connect(self.path, timeout=self.lock_timeout, isolation_level=None,
                               check_same_thread=False)

    def _copy_file(self, con: sqlite3.Connection) -> None:
        """Read-only: the fold file as it is into the memory one (when its layout is this
        one's and no write-ahead log holds part of it); else the memory fold starts empty."""
        wal = Path(f"{self.path}-wal")
        if not self.path.exists() or (wal.exists() and wal.stat().st_size):
            return
        try:
            disk = sqlite3.connect(f"{self.path.as_uri()}?mode=ro&immutable=1", uri=True)
        except sqlite3.Error:
            return
        try:
            if _layout(disk) == FOLD_VERSION:
                disk.backup(con)
        except sqlite3.Error:
            pass  # unreadable: folded from the journal in memory instead
        finally:
            disk.close()

    def _open(self) -> sqlite3.Connection:
        con = self._connect()
        try:
            if self.read_only:
                self._copy_file(con)
            con.execute("PRAGMA journal_mode=WAL")
            con.execute("PRAGMA synchronous=NORMAL")  # derived state: a power cut re-folds
            con.execute("PRAGMA mmap_size=1073741824")  # pages read by memory access, not a syscall each
            con.execute("PRAGMA cache_size=-16384")
            con.execute(f"PRAGMA wal_autocheckpoint={_CHECKPOINT_PAGES}")
            # a report's judged cells (`Judging`'s temp tables): kept in memory up to 256 MB
            # (~500k cells judged at once), spilled to a temp file past that. With the default
            # 2 MB they spilled at ~5k cells and the judging took twice as long; all in memory
            # (`temp_store=MEMORY`) was as fast but grew without bound (~450 B a cell)
            con.execute(f"PRAGMA temp.cache_size = -{_TEMP_CACHE_KB}")
            con.execute("PRAGMA recursive_triggers=ON")  # a ref replaced counts as one gone (`ref_unnamed`)
            newer = _layout(con)
            if newer is not None and newer > FOLD_VERSION and self.path.name == FOLD_NAME and not self.read_only:
                # a newer scistack's fold (a lab mixing versions): left to it, whole; this
                # version folds the journal into its own file beside it, once, rather than
                # each rebuilding the other's (minutes at 10M refs) at every switch
                con.close()
                log.warning("%s has layout %d, written by a newer scistack; this one (layout %d) keeps "
                            "its own fold beside it. Upgrade scistack to share one", self.path, newer,
                            FOLD_VERSION)
                self.path = self.path.with_name(f"fold.v{FOLD_VERSION}.sqlite")
                return self._open()
            con.executescript(_SCHEMA)
            found = int(_scalar(con, "SELECT value FROM meta WHERE key = 'fold_version'"))
            if found in _MIGRATIONS:  # a column more: added in place (a rebuild of 1M refs takes ~50 s)
                found = _migrate(con, found)
            if found != FOLD_VERSION:  # another layout: derived, so rebuild rather than migrate
                con.close()
                self._discard_file()
                return self._open()
            con.executescript(_DERIVED)
        except BaseException:
            con.close()
            raise
        return con

    def _discard_file(self) -> None:
        if self._con is not None:
            self._con.close()
            self._con = None
        self._close_point()
        self._names.clear()
        self.offset = -1
        if self.read_only:
            self._memory = f"file:scistack-fold-{id(self)}-{time.monotonic_ns()}?mode=memory&cache=shared"
            return  # (a fresh memory fold; the file is not touched)
        for suffix in ("", "-wal", "-shm"):
            try:
                os.unlink(f"{self.path}{suffix}")
            except FileNotFoundError:
                pass
        self.offset = -1

    def close(self) -> None:
        with self._lock:
            if self._con is not None and self._pid == _forks[0]:
                self._con.close()
                self._close_point()
            self._con = self._point = None
            self._held, self._ender = False, None  # its thread stops
            self._held_opened.set()

    def _close_point(self) -> None:
        if self._point is not None:
            self._point.close()
            self._point = None
        self._held = False

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
            while True:  # a chunk per transaction: memory stays bounded however long the tail
                stored = int(_scalar(con, "SELECT value FROM meta WHERE key = 'journal_offset'"))
                if stored == size:
                    self.offset = size
                    return True
                try:
                    if self._fold_chunk(con, size) >= size:
                        return True
                except sqlite3.OperationalError as exc:
                    full = _write_refused(exc, self.path)
                    if full is None:
                        raise
                    raise full from None

    def appended(self, entries: list[dict[str, Any]], start: int, end: int) -> bool:
        """Fold lines this process has just appended at `start` (under the journal lock),
        ending at `end`, without reading them back: a save's own line costs no second round
        trip to a shared journal. Nothing happens (False) unless the file held exactly
        `start`; the next `catch_up` then reads the tail as usual."""
        with self._lock:
            if self.offset != start or start < 0:
                return False
            self._names.clear()
            con = self._connection()
            began = False
            try:
                _begin(con)
                began = True
                stored = int(_scalar(con, "SELECT value FROM meta WHERE key = 'journal_offset'"))
                if stored != start:
                    _rollback(con)
                    return False
                self._apply(con, entries)
                con.execute("UPDATE meta SET value = ? WHERE key = 'journal_offset'", (str(end),))
                con.execute("COMMIT")
            except sqlite3.OperationalError as exc:
                _rollback(con)
                # another process folds (the BEGIN waited in vain), the disk is full, or a write
                # failed (a file-size limit's EFBIG reads as "disk I/O error"): the lines are
                # journalled, so the save is done; the next catch_up folds them (or says clearly
                # why it cannot). Raising here failed a save that had succeeded, and a retry
                # saved a second version
                if began:
                    (log.debug if self._fold_warned else log.warning)(
                        "%s: could not fold the lines just saved (%s); they are saved in the "
                        "journal and folded when next read", self.path, exc)
                    self._fold_warned = True
                return False
            except BaseException:
                _rollback(con)
                raise
            self.offset = end
            return True

    def _fold_chunk(self, con: sqlite3.Connection, size: int) -> int:
        """Fold up to `_CHUNK_BYTES` of journal lines in one transaction; the offset reached."""
        try:
            try:
                _begin(con)
            except sqlite3.OperationalError as exc:
                raise DatabaseLockedError(
                    f"{self.path} stayed locked for {self.lock_timeout:.0f} s ({exc}); another "
                    "scistack process is folding a large journal. Try again; nothing is lost"
                ) from None
            stored = int(_scalar(con, "SELECT value FROM meta WHERE key = 'journal_offset'"))
            # the journal was replaced (compaction): fold anew; a size reused from an earlier
            # answer (lab mode) may be behind another process's fold of this file: asked afresh
            if stored > size and stored > size_now(self.journal):
                for table in ("var_counts", "var_bytes", "var_unsized", "var_oids", "var_parts", "refs", "slots", "names",
                              "key_values", "vkey_values", "addresses", "calls", "call_keys", "runs", "var_calls", "var_changes",
                              "var_summary", "var_facts", "judged_sig", "judged_cells"):
                    con.execute(f"DELETE FROM {table}")
                con.execute("UPDATE meta SET value = '0' WHERE key = 'skipped_lines'")
                stored = 0
            before = self.journal.skipped_lines
            entries, offset = self.journal.read_from(stored, _CHUNK_BYTES)
            self._apply(con, entries)
            if self.journal.skipped_lines > before:
                con.execute("UPDATE meta SET value = CAST(value AS INTEGER) + ? WHERE key = 'skipped_lines'",
                            (self.journal.skipped_lines - before,))
            con.execute("UPDATE meta SET value = ? WHERE key = 'journal_offset'", (str(offset),))
            con.execute("COMMIT")
        except BaseException:
            _rollback(con)
            raise
        self.offset = offset
        return offset if offset > stored else size  # nothing complete after `stored`: done

    def skipped_lines(self) -> int:
        """Journal lines folded past that could not be read (`meta.skipped_lines`)."""
        rows = self._rows("SELECT value FROM meta WHERE key = 'skipped_lines'")
        return int(rows[0][0]) if rows else 0  # (a read-only copy of an older scistack's fold lacks it)

    def set_skipped_lines(self, count: int) -> None:
        """Set the count to what a whole-journal check found (fsck)."""
        with self._lock:
            self._connection().execute("UPDATE meta SET value = ? WHERE key = 'skipped_lines'", (str(count),))

    def rebuild(self) -> None:
        """Forget the file and fold the whole journal again."""
        with self._lock:
            self._discard_file()
            self.catch_up()

    def _apply(self, con: sqlite3.Connection, entries: list[Any]) -> None:
        """Fold entries in journal order (puts and deletes of one ref may meet in one batch)."""
        puts: list[tuple] = []
        dels: list[tuple] = []
        call_keys: list[tuple] = []  # (call record, its key) of every call line
        calls: list[dict[str, Any]] = []  # the call and uncall lines, in journal order
        try:  # the puts' address texts in one pass: each repeated value written once
            addr_keys = iter(keys_of([e["addr"] for e in entries if e.get("op") == "put"]))
        except (KeyError, TypeError, ValueError, AttributeError):
            addr_keys = None  # a value only `key_of` can judge: each put is keyed on its own
        for entry in entries:
            try:
                op = entry["op"]
                if op == "put":
                    addr_key = None if addr_keys is None else next(addr_keys)  # (first: one per put)
                    if dels:
                        _delete(con, dels)
                    puts.append(_put_row(entry, addr_key))
                elif op == "del":
                    if puts:
                        _insert(con, puts)
                    dels.append((entry["var"], key_of(entry["addr"]), int(entry["version"]),
                                 entry.get("t") if isinstance(entry.get("t"), str) else None))
                elif op == "call":
                    calls.append(entry)
                    call_keys.append((oid_in(entry["call"]), oid_in(entry["key"])))
                elif op == "uncall":
                    calls.append(entry)
                elif op == "run":
                    con.execute("INSERT INTO runs (entry) VALUES (?)", (json.dumps(entry),))
            except (KeyError, TypeError, ValueError, AttributeError):
                pass  # the journal's reader validated the shape; a value key_of cannot take is skipped
        if puts:
            _insert(con, puts)
        if dels:
            _delete(con, dels)
        for kind, change in call_changes(calls):  # (the rule DuckDB's scistack.calls follows too)
            if kind == "put":
                con.executemany("INSERT OR REPLACE INTO calls VALUES (?, ?, ?, ?, ?, ?, ?)",
                                [_call_row(e) for e in change.values()])
            else:
                con.executemany("DELETE FROM calls WHERE key = ? AND call = ?",
                                [(oid_in(key), oid_in(call)) for key, call in change])
        if call_keys:  # every call line's record, the entry's or not: a ref may name any of them
            con.executemany("INSERT OR REPLACE INTO call_keys VALUES (?, ?)", call_keys)

    # -- reading -------------------------------------------------------------------------
    def _rows(self, sql: str, args: tuple = ()) -> list[tuple]:
        with self._lock:
            return self._reader().execute(sql, args).fetchall()

    def _held_rows(self, sql: str, args: tuple = ()) -> list[tuple]:
        """`_rows` for the point lookups (a load, a cache hit): on a second connection that
        reads by `pread` into a small page cache, not through the memory map (a fresh process
        took a page fault per random lookup, 2-5 us and erratic on a busy machine; bulk reads
        keep the map), inside a read transaction kept open across calls. SQLite otherwise
        begins and ends one around every statement (two `fcntl` locks and an `fstat`: ~3 of
        a lookup's ~9 us). Never stale: the callers check the journal first
        (`Index.refresh`), and the fold changes only when the journal grows, whereupon
        `catch_up` ends the transaction (`_connection`), as any write does. Ended within
        `_HOLD_S` by a thread, so an idle process never holds back SQLite's checkpoints (an
        old snapshot would let the WAL grow)."""
        with self._lock:
            if self._con is None or self._pid != _forks[0]:  # (`_reader`'s own test, first)
                self._reader()  # the file is there, checked, and this process's own
            con = self._point
            if con is None:
                con = self._point = self._connect()
                # one cursor for every lookup: `con.execute` makes a cursor and drops it each
                # time (~2k instructions of a load's and a cache hit's lookup)
                self._point_cursor = con.cursor()
                con.execute("PRAGMA mmap_size=0")
                con.execute("PRAGMA cache_size=-4096")  # the B-tree's upper pages, kept
            if not self._held:
                # marked held before the BEGIN, so that one an interrupt cuts short is ended
                # all the same (by the thread, or the next write), never begun twice
                if self._ender is None:
                    self._ender = threading.Thread(target=_end_held_soon, name="scistack-fold-reads",
                                                   args=(weakref.ref(self), self._held_opened), daemon=True)
                    self._ender.start()
                self._held = True
                self._held_opened.set()
                if not con.in_transaction:
                    con.execute("BEGIN")
            return self._point_cursor.execute(sql, args).fetchall()

    def _end_held(self) -> None:
        """End the read transaction `_held_rows` began (caller holds the lock)."""
        self._held = False
        if self._point is not None and self._point.in_transaction:
            self._point.execute("COMMIT")

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
        """(variable, current records, live records, last change) for every variable, cached
        at its change count; a variable that changed reads its running counts (`var_counts`),
        and only one with version keys counts its distinct (address, version keys) again."""
        out = []
        for var in self.variables():
            changes, cached = self._summary(var)
            if cached is None:
                live, slots = self._counts(var)
                if self.names(var, "vkey"):
                    current = self._rows("SELECT count(*) FROM (SELECT DISTINCT addr, vkeys FROM refs "
                                         "WHERE var = ?)", (var,))[0][0]
                else:  # one record per address: the live addresses
                    current = slots
                last = self._rows("SELECT nullif(max(coalesce((SELECT max(created_at) FROM refs WHERE var = ?1), ''), "
                                  "coalesce((SELECT at FROM var_deleted WHERE var = ?1), '')), '')", (var,))[0][0]
                cached = (current, live, last)
                self._write("INSERT INTO var_summary VALUES (?, ?, ?, ?, ?, NULL) ON CONFLICT (var) DO UPDATE "
                            "SET changes = excluded.changes, current = excluded.current, live = excluded.live, "
                            "last = excluded.last, bytes = NULL", (var, changes, *cached))
            out.append((var, *cached))
        return out

    def _counts(self, var: str) -> tuple[int, int]:
        """The variable's refs and live addresses, from its running counts (started here, in
        one transaction with a full count, the first time they are asked for)."""
        rows = self._rows("SELECT refs, slots FROM var_counts WHERE var = ?", (var,))
        if rows:
            return rows[0]
        with self._lock:
            con = self._connection()
            try:
                _begin(con)
                con.execute("INSERT OR IGNORE INTO var_counts SELECT ?1, (SELECT count(*) FROM refs WHERE var = ?1), "
                            "(SELECT count(*) FROM slots WHERE var = ?1 AND live)", (var,))
                found = con.execute("SELECT refs, slots FROM var_counts WHERE var = ?", (var,)).fetchone()
                con.execute("COMMIT")
            except BaseException:
                _rollback(con)
                raise
        return found

    def _summary(self, var: str) -> tuple[int, tuple[int, int, str] | None]:
        """The variable's change count, and its cached summary if counted at that count."""
        rows = self._rows("SELECT c.n, s.changes, s.current, s.live, s.last FROM var_changes c LEFT JOIN "
                          "var_summary s USING (var) WHERE c.var = ?", (var,))
        if not rows:
            return 0, None
        n, changes, *cached = rows[0]
        return n, (tuple(cached) if changes == n else None)

    def changes(self, var: str) -> int:
        rows = self._rows("SELECT n FROM var_changes WHERE var = ?", (var,))
        return rows[0][0] if rows else 0

    def _write(self, sql: str, args: tuple) -> None:
        with self._lock:
            con = self._connection()
            try:
                _begin(con)
                con.execute(sql, args)
                con.execute("COMMIT")
            except BaseException:
                _rollback(con)
                raise

    def count(self, var: str) -> int:
        return self._rows("SELECT count(*) FROM refs WHERE var = ?", (var,))[0][0]

    def newest(self, var: str, limit: int) -> list[RefRecord]:
        rows = self._rows(f"SELECT {_REF_COLUMNS} FROM refs WHERE var = ? "
                          "ORDER BY created_at DESC, version DESC LIMIT ?", (var, limit))
        return [_record(r) for r in rows]

    def byte_total(self, var: str) -> tuple[int, list[tuple[str, str, int | None]]] | None:
        """The variable's running total of bytes on disk, and the objects that joined it since
        (oid, kind, remembered size or None); None before its first full sum."""
        rows = self._rows("SELECT bytes FROM var_bytes WHERE var = ?", (var,))
        if not rows:
            return None
        # CROSS JOIN: SQLite keeps this order. Left to choose (no statistics), it walked all of
        # the variable's `var_oids` to probe the few `var_unsized` (0.3 s a variable at 10M refs)
        pending = self._rows("SELECT u.oid, o.kind, s.bytes FROM var_unsized u CROSS JOIN var_oids o "
                             "ON o.var = u.var AND o.oid = u.oid LEFT JOIN sizes s ON s.oid = u.oid "
                             "WHERE u.var = ?", (var,))
        return rows[0][0], [(oid_out(oid), kind, size) for oid, kind, size in pending]

    def settle_byte_total(self, var: str, measured: dict[str, tuple[int, frozenset[str]]]) -> int | None:
        """Remember `measured` (oid -> its own bytes and its parts at any depth: every object
        measured, parts included), then count each object that joined the variable and is
        measured now, with its parts, each part once however many of the variable's objects
        hold it (and however many processes settle at a time); returns the total, None if
        the total went meanwhile (the journal was replaced and folded anew)."""
        # CROSS JOIN: SQLite keeps this order (left to choose, it may walk every size to probe
        # the few joined objects)
        claimed = ("WITH claimed AS (SELECT u.oid FROM var_unsized u CROSS JOIN sizes s ON s.oid = u.oid "
                   "WHERE u.var = ?1), claims AS (SELECT oid FROM claimed UNION ALL SELECT p.child FROM claimed c "
                   "CROSS JOIN parts p ON p.parent = c.oid) ")
        with self._lock:
            con = self._connection()
            try:
                _begin(con)
                _remember(con, measured)
                con.execute(claimed + "UPDATE var_bytes SET bytes = bytes + (SELECT coalesce(sum(s.bytes), 0) "
                            "FROM (SELECT DISTINCT oid FROM claims) x JOIN sizes s ON s.oid = x.oid WHERE NOT EXISTS "
                            "(SELECT 1 FROM var_parts v WHERE v.var = ?1 AND v.oid = x.oid)) WHERE var = ?1", (var,))
                con.execute(claimed + "INSERT INTO var_parts SELECT ?1, oid, count(*) FROM claims WHERE true "
                            "GROUP BY oid ON CONFLICT (var, oid) DO UPDATE SET n = n + excluded.n", (var,))
                con.execute("DELETE FROM var_unsized WHERE var = ? AND EXISTS (SELECT 1 FROM sizes s "
                            "WHERE s.oid = var_unsized.oid)", (var,))
                total = con.execute("SELECT bytes FROM var_bytes WHERE var = ?", (var,)).fetchone()
                con.execute("COMMIT")
            except BaseException:
                _rollback(con)
                raise
        return None if total is None else total[0]

    def follow_bytes(self, var: str) -> None:
        """Start the variable's running total: its distinct objects counted, with the parts of
        those measured before, and their remembered sizes summed (each object once), in one
        transaction (no fold comes between); the others wait in `var_unsized`. Reads every ref
        of the variable, once."""
        with self._lock:
            con = self._connection()
            try:
                _begin(con)
                if not con.execute("SELECT 1 FROM var_bytes WHERE var = ?", (var,)).fetchone():
                    for table in ("var_oids", "var_unsized", "var_parts"):
                        con.execute(f"DELETE FROM {table} WHERE var = ?", (var,))
                    con.execute("INSERT INTO var_oids SELECT var, oid, min(kind), count(*) FROM refs WHERE var = ? "
                                "GROUP BY oid", (var,))
                    con.execute("INSERT INTO var_parts SELECT ?1, oid, count(*) FROM (SELECT o.oid FROM var_oids o "
                                "JOIN sizes s ON s.oid = o.oid WHERE o.var = ?1 UNION ALL SELECT p.child FROM var_oids o "
                                "JOIN sizes s ON s.oid = o.oid JOIN parts p ON p.parent = o.oid WHERE o.var = ?1) "
                                "GROUP BY oid", (var,))
                    con.execute("INSERT INTO var_bytes SELECT ?1, coalesce(sum(s.bytes), 0) FROM var_parts p "
                                "JOIN sizes s ON s.oid = p.oid WHERE p.var = ?1", (var,))
                    con.execute("INSERT INTO var_unsized SELECT var, oid FROM var_oids o WHERE var = ? AND NOT EXISTS "
                                "(SELECT 1 FROM sizes s WHERE s.oid = o.oid)", (var,))
                con.execute("COMMIT")
            except BaseException:
                _rollback(con)
                raise

    def records(self, var: str) -> list[RefRecord]:
        # the variable is not read back (10k equal strings), nor passed through `_record`
        rows = self._rows(f"SELECT addr, {_ROW_COLUMNS} FROM refs WHERE var = ? ORDER BY addr, version", (var,))
        from_row = RefRecord.from_row
        return [from_row(var, r[0], r[1:]) for r in rows]

    def live_addresses(self, var: str) -> list[str]:
        """The address keys where the variable has a record."""
        return [r[0] for r in self._rows("SELECT addr FROM slots WHERE var = ? AND live = 1", (var,))]

    def live_addresses_with(self, var: str, wanted: dict[str, list[Any]]) -> list[str] | None:
        """The address keys where the variable has a record and whose value of each key of
        `wanted` may be one of its values: a superset of those `state.matching_addresses`
        keeps (numbers compare as SQLite compares them, within a hair of the value when not a
        whole number SQLite and Python both hold exactly; True as 1), read through an index of
        the live slots by that key's value (`_key_index`), so `load_all(subject=1)` reads
        the few addresses it names rather than decoding every one of the variable's. None
        when no key of `wanted` can be looked up so (another key, a value of another type, the
        index could not be made): the caller reads every live address."""
        terms = [(len(values), key, term) for key, values in wanted.items()
                 if (term := _value_term(key, values)) is not None]
        # looked up by one key, the one naming fewest values (SQLite's planner, without
        # statistics, preferred a scan of the variable's slots to the index); the rest filter
        for _, key, _ in sorted(terms, key=lambda t: t[0]):
            if self._key_index(key):
                break
        else:
            return None
        try:
            return [r[0] for r in self._rows(
                f"SELECT addr FROM slots INDEXED BY {_key_index_name(key)} WHERE var = ? AND live = 1 AND "
                f"{' AND '.join(term[0] for _, _, term in terms)} ORDER BY addr",
                (var, *(arg for _, _, term in terms for arg in term[1])))]
        except sqlite3.OperationalError as exc:  # (gone: the file was made anew meanwhile)
            if "no such index" not in str(exc):
                raise
            self._indexed[1].discard(key)
            return None

    def key_kinds(self, var: str, key: str) -> frozenset[str] | None:
        """The kinds ("number", "bool", "text", "other": a NaN's tag) of the values of schema key
        `key` among the live addresses of `var` (empty: none holds it), by a few lookups in the
        index of the addresses by that key's value (`_key_index`), whatever the size of the
        variable: SQLite orders NULL < numbers (a bool is 0 or 1) < text, so the lowest and
        highest values say which of numbers and text there are. What the views type the
        key's column by: one kind is its own type, several text. None when no index can be
        made now (the caller then reads every address)."""
        if not _KEY_NAME.match(key) or not self._key_index(key):
            return None
        column, name = _key_value(key), _key_index_name(key)
        path = "'$." + key + "'"

        def one(condition: str = "1", order: str = "") -> list[tuple]:
            return self._rows(
                f"SELECT {column}, typeof({column}) FROM slots INDEXED BY {name} WHERE var = ? AND live = 1 "
                f"AND {column} IS NOT NULL AND {condition} {order} LIMIT 1", (var,))

        try:
            low, high = one(order=f"ORDER BY {column}"), one(order=f"ORDER BY {column} DESC")
            if not low:
                return frozenset()
            kinds = {"text" if kind == "text" else "number" for _, kind in (low[0], high[0])}
            if "text" in kinds and one(f"{column} >= '{{' AND {column} < '|'"):
                kinds.add("other")  # (a NaN key is held as {"$float": "nan"}; its text is no text key)
            if "number" in kinds and one(f"{column} IN (0, 1) AND json_type(addr, {path}) IN ('true', 'false')"):
                kinds.add("bool")
                if kinds == {"number", "bool"} and not (
                        low[0][0] < 0 or high[0][1] == "text" or high[0][0] > 1
                        or one(f"{column} BETWEEN 0 AND 1 AND json_type(addr, {path}) NOT IN ('true', 'false')")):
                    kinds.discard("number")
        except sqlite3.OperationalError as exc:  # (gone: the file was made anew meanwhile)
            if "no such index" not in str(exc):
                raise
            self._indexed[1].discard(key)
            return None
        return frozenset(kinds)

    def _key_index(self, key: str) -> bool:
        """Whether the fold has an index of the live slots by `key`'s value (made here the first
        time it is asked for: one pass over the slots, then kept by SQLite as slots come and
        go). Not in `_DERIVED`: only a project that selects by part of an address pays for one
        (an index entry per live address and key, and each new address's insert into it).
        False when it cannot be made now (another process holds the write lock for more than
        a second, a full disk): the caller reads every address, and it is tried again once
        the journal has grown."""
        with self._lock:
            con = self._reader()
            if self._indexed[0] is not con:
                self._indexed = (con, set(), {})
            made, failed = self._indexed[1], self._indexed[2]
            if key in made:
                return True
            if failed.get(key) == self.offset:
                return False
            name = _key_index_name(key)
            con = self._connection()
            if not con.execute("SELECT 1 FROM sqlite_master WHERE type = 'index' AND name = ?", (name,)).fetchall():
                try:
                    con.execute("PRAGMA busy_timeout = 1000")
                    try:
                        con.execute(f"CREATE INDEX IF NOT EXISTS {name} ON slots (var, {_key_value(key)}) "
                                    "WHERE live = 1")
                    finally:
                        con.execute(f"PRAGMA busy_timeout = {int(self.lock_timeout * 1000)}")
                except sqlite3.OperationalError as exc:
                    log.debug("%s: no index of the addresses by %s now (%s)", self.path, key, exc)
                    failed[key] = self.offset
                    return False
            made.add(key)
            return True

    def versions_at(self, var: str, addr_key: str) -> list[RefRecord]:
        rows = self._held_rows(_VERSIONS_AT, (var, addr_key))  # the names asked are not read back
        return [RefRecord.from_row(var, addr_key, r) for r in rows]

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

    def newest_rows(self, inputs: list[str], outputs: list[str], addr_keys: list[str]) -> list[tuple]:
        """For a cached for_each's planning, one row per address: the address, the newest oid
        of each input variable there, then the newest (oid, call) of each output variable.
        One query per few thousand addresses (two index seeks per variable); a value whose
        newest version was deleted reads as absent (the caller plans it the general way)."""
        def newest(alias: str, var_arg: str) -> str:
            return (f"LEFT JOIN refs {alias} ON {alias}.var = {var_arg} AND {alias}.addr = a.value AND "
                    f"{alias}.version = (SELECT max_version FROM slots s WHERE s.var = {var_arg} AND s.addr = a.value)")
        ins = [f"i{n}" for n in range(len(inputs))]
        outs = [f"o{n}" for n in range(len(outputs))]
        joins = [newest(alias, f"?{n + 2}") for n, alias in enumerate(ins + outs)]
        columns = ["a.value", *(f"{i}.oid" for i in ins), *(f"{o}.oid, {o}.call" for o in outs)]
        sql = f"SELECT {', '.join(columns)} FROM json_each(?1) a {' '.join(joins)}"
        found: list[tuple] = []
        for start in range(0, len(addr_keys), _CHUNK):
            found += self._rows(sql, (json.dumps(addr_keys[start:start + _CHUNK]), *inputs, *outputs))
        oids = {1 + n for n in range(len(inputs))} | {1 + len(inputs) + 2 * n for n in range(len(outputs))}
        return [tuple(oid_out(v) if n in oids else v for n, v in enumerate(row)) for row in found]

    def call_outputs_many(self, keys: list[str]) -> dict[str, tuple[str, str | None, str]]:
        """key -> (call, fn, outs as the index keeps them: JSON text) for these cache keys.
        Asked in key order: keys are hashes, and seeks in b-tree order touch each page once
        (100k keys at 10M refs: 0.51 -> 0.36 s, the sort included)."""
        found: dict[str, tuple[str, str | None, str]] = {}
        keys = sorted(keys)
        for start in range(0, len(keys), _IN_CHUNK):
            chunk = keys[start:start + _IN_CHUNK]
            for key, call, fn, outs in self._rows(
                    f"SELECT key, call, fn, outs FROM calls WHERE key IN ({_marks(chunk)})", _oids_in(chunk)):
                found[oid_out(key)] = (oid_out(call), oid_out(fn), outs)
        return found

    def calls_many(self, keys: list[str]) -> dict[str, dict[str, Any]]:
        """`call` for many keys in one query per chunk, asked in key order (as `call_outputs_many`)."""
        found = {}
        keys = sorted(keys)
        for start in range(0, len(keys), _IN_CHUNK):
            chunk = keys[start:start + _IN_CHUNK]
            rows = self._rows(f"SELECT key, {_CALL_COLUMNS} FROM calls WHERE key IN ({_marks(chunk)})",
                              _oids_in(chunk))
            found.update((key, _call_entry(key, r[1:])) for key, r in ((oid_out(r[0]), r) for r in rows))
        return found

    def max_versions_many(self, var: str, addr_keys: list[str]) -> dict[str, int]:
        found = {}
        for start in range(0, len(addr_keys), _CHUNK):
            found.update(self._rows("SELECT addr, max_version FROM slots WHERE var = ? AND addr IN "
                                    "(SELECT value FROM json_each(?))",
                                    (var, json.dumps(addr_keys[start:start + _CHUNK]))))
        return found

    def call_keys_many(self, call_oids: list[str]) -> tuple[dict[str, str], dict[str, dict[str, Any]]]:
        """call oid -> call key for these call records, and the cache entries under those keys
        (read in the same query: a re-run's cache checks then need no second one)."""
        keys: dict[str, str] = {}
        entries: dict[str, dict[str, Any]] = {}
        for start in range(0, len(call_oids), _IN_CHUNK):
            chunk = call_oids[start:start + _IN_CHUNK]
            for call_oid, key, *row in self._rows(
                    "SELECT ck.call, ck.key, c.call, c.fn, c.outs, c.multi, c.created_at, c.origins FROM call_keys ck "
                    f"LEFT JOIN calls c ON c.key = ck.key WHERE ck.call IN ({_marks(chunk)})", _oids_in(chunk)):
                call_oid, key = oid_out(call_oid), oid_out(key)
                keys[call_oid] = key
                if row[0] is not None:
                    entries[key] = _call_entry(key, tuple(row))
        return keys, entries

    def current_at(self, var: str, addr_key: str, vkeys_key: str) -> RefRecord | None:
        rows = self._rows(
            f"SELECT {_REF_COLUMNS} FROM refs WHERE var = ? AND addr = ? AND vkeys = ? "
            "ORDER BY version DESC LIMIT 1", (var, addr_key, vkeys_key))
        return _record(rows[0]) if rows else None

    def slot_as_folded(self, var: str, addr_key: str, vkeys_key: str) -> tuple[int, RefRecord | None, int]:
        """The journal offset the file holds, the current record at the slot and its highest
        version, read in one transaction (one snapshot: another process folding meanwhile
        cannot pair an offset with rows of another); nothing is caught up first."""
        with self._lock:
            con = self._connection()
            try:
                _begin(con, "BEGIN")
                offset = int(_scalar(con, "SELECT value FROM meta WHERE key = 'journal_offset'"))
                rows = con.execute(
                    f"SELECT {_REF_COLUMNS} FROM refs WHERE var = ? AND addr = ? AND vkeys = ? "
                    "ORDER BY version DESC LIMIT 1", (var, addr_key, vkeys_key)).fetchall()
                top = con.execute("SELECT max_version FROM slots WHERE var = ? AND addr = ?",
                                  (var, addr_key)).fetchall()
            finally:
                _rollback(con)  # (a read: nothing to keep)
        return offset, (_record(rows[0]) if rows else None), (top[0][0] if top else 0)

    def refs_to(self, oid: str) -> list[RefRecord]:
        return [_record(r) for r in self._rows(f"SELECT {_REF_COLUMNS} FROM refs WHERE oid = ?", (oid_in(oid),))]

    def max_version(self, var: str, addr_key: str) -> int:
        rows = self._rows("SELECT max_version FROM slots WHERE var = ? AND addr = ?", (var, addr_key))
        return rows[0][0] if rows else 0

    def key_values_shown_as(self, key: str, texts: tuple[str, ...]) -> list[tuple[str, str]]:
        """The (text, type) of the values of schema key `key` ever saved that show as one of
        `texts` (`key_values`)."""
        marks = ", ".join("?" * len(texts))
        return [tuple(r) for r in self._held_rows(f"SELECT text, type FROM key_values WHERE key = ? AND text IN ({marks})",
                                             (key, *texts))]

    def vkey_counts(self, var: str, key: str, wanted: list[tuple[str, str]]) -> dict[str, int]:
        """JSON type -> how many of the variable's live refs hold that value under version key
        `key`, for the `wanted` values (of different types) given as (JSON type, `{"v": value}`
        as `key_of` writes it, which SQLite reads as it read the refs' own `vkeys`, so a float
        is the same double here): a point lookup each in `vkey_values`."""
        one = "SELECT type, n FROM vkey_values WHERE var = ?1 AND key = ?2 AND type = ? AND atom = json_extract(?, '$.v')"
        # (one statement, a seek each: a row-value IN over a JSON list seeks by type alone)
        rows = self._held_rows(" UNION ALL ".join([one] * len(wanted)),
                               (var, key, *(part for pair in wanted for part in pair)))
        return dict(rows)

    def vkey_types(self, var: str, key: str) -> set[str]:
        """The JSON types of the values the variable's live refs hold under version key `key`
        (a seek per type, whatever their number)."""
        one = "SELECT type FROM (SELECT type FROM vkey_values WHERE var = ?1 AND key = ?2 AND type = ? LIMIT 1)"
        return {r[0] for r in self._held_rows(" UNION ALL ".join([one] * len(_JSON_TYPES)), (var, key, *_JSON_TYPES))}

    def vkey_keys_of_several_types(self) -> list[tuple[str, str, str, Any, int]]:
        """(variable, version key, JSON type, atom, live refs) of each value of the version keys
        whose live values are of more than one type (a bool's two count as one): few, and none
        in a project that never mixed them (`fsck`: one pass over `vkey_values`)."""
        return [tuple(r) for r in self._rows(
            "SELECT var, key, type, atom, n FROM vkey_values WHERE (var, key) IN (SELECT var, key FROM "
            "vkey_values GROUP BY var, key HAVING count(DISTINCT CASE type WHEN 'false' THEN 'true' ELSE type END) > 1) "
            "ORDER BY var, key, type, atom")]

    def vkey_records(self, var: str, key: str, json_type: str, atom: Any) -> int:
        """How many records (an address and version keys, whatever its versions) of the
        variable hold that value under version key `key`: a scan of its refs (fsck's warning)."""
        return self._rows("SELECT count(DISTINCT json_array(r.addr, r.vkeys)) FROM refs AS r, json_each(r.vkeys) AS j "
                          "WHERE r.var = ? AND r.vkeys != '{}' AND j.key = ? AND j.type = ? AND j.atom IS ?",
                          (var, key, json_type, atom))[0][0]

    def key_texts_of_several_types(self) -> list[tuple[str, str, str]]:
        """(key, text, type) of the `key_values` whose text more than one type shows as (1 and
        "1" both ever saved): few, and none in a project that never mixed them."""
        return [tuple(r) for r in self._rows(
            "SELECT key, text, type FROM key_values WHERE (key, text) IN "
            "(SELECT key, text FROM key_values GROUP BY key, text HAVING count(*) > 1) ORDER BY key, text, type")]

    def live_refs_with_values(self, wanted: list[tuple[str, str, Any]]) -> list[tuple[str, str, Any, str, int]]:
        """(key, JSON type, atom, variable, current records) for each of the `wanted` address
        values ((key, JSON type, atom), as SQLite's `json_each` gives them: type 'integer',
        'real', 'text', 'true' or 'false', a bool's atom 1 or 0) some variable's live refs
        hold: one pass over the refs, in SQLite, each value looked up in the list (a join with
        the list as the outer loop read every ref once per value). A record is counted once
        however many live versions it has (one per address and version keys: `refs` holds a
        row per version, and a value saved three times had counted as three refs)."""
        return [tuple(r) for r in self._rows(
            "SELECT j.key, j.type, j.atom, r.var, count(DISTINCT json_array(r.addr, r.vkeys)) "
            "FROM refs AS r, json_each(r.addr) AS j "
            "WHERE (j.key, j.type, j.atom) IN (SELECT json_extract(value, '$[0]'), json_extract(value, '$[1]'), "
            "json_extract(value, '$[2]') FROM json_each(?)) "
            "GROUP BY j.key, j.type, j.atom, r.var ORDER BY j.key, j.type, j.atom, r.var",
            (json.dumps(wanted),))]

    def names(self, var: str, kind: str) -> set[str]:
        found = self._names.get((var, kind))
        if found is None:
            found = {r[0] for r in self._rows("SELECT name FROM names WHERE var = ? AND kind = ?", (var, kind))}
            self._names[(var, kind)] = found
        return found

    def call(self, key: str) -> dict[str, Any] | None:
        rows = self._held_rows(_CALL_AT, (blob_param(oid_in(key)),))
        return _call_entry(key, rows[0]) if rows else None

    def learn_calls(self, facts: list[tuple[str, str, str, str, bool, list[tuple[str, str, str, str, str]],
                                            list[str]]], *, wait: bool = True) -> bool:
        """Keep the facts of call records: (call, module, function, identity, simple, [(input
        name, var, addr key, vkeys key, oid)], [variables gathered by an aggregated or merged
        input]). Derived from immutable records, so true whenever written. Without `wait`,
        only if the fold is free within a moment (a writer hands them in as a shortcut for
        the next report, never worth waiting behind another writer for); True when kept."""
        facts = sorted(facts, key=lambda fact: fact[0])  # (in key order: a page is written once a batch)
        def write(con: sqlite3.Connection) -> None:
            con.executemany("INSERT OR REPLACE INTO call_facts VALUES (?, ?, ?, ?, ?)",
                            [(c, m, f, i, int(simple)) for c, m, f, i, simple, _, _ in facts])
            con.executemany("INSERT OR REPLACE INTO call_inputs VALUES (?, ?, ?, ?, ?, ?)",
                            [(f[0], *row[:4], oid_in(row[4])) for f in facts for row in f[5]])
            con.executemany("INSERT OR REPLACE INTO call_gathers VALUES (?, ?)",
                            [(f[0], var) for f in facts for var in f[6]])
        return self.shortcut_write(write, wait=wait)

    def shortcut_write(self, write: Callable[[sqlite3.Connection], None], *, wait: bool) -> bool:
        """`write(con)` in a write transaction, for what is only a shortcut (what a report
        learned, the call facts a writer hands in): without `wait`, only if the fold is free
        within a moment (False: nothing is kept this time). Not a context manager: an
        interrupt between its entry and its block would leave the transaction open."""
        with self._lock:
            con = self._connection()  # (ends a point lookup's read transaction)
            began = False
            try:
                try:
                    if not wait:
                        con.execute("PRAGMA busy_timeout = 200")
                    _begin(con)
                    began = True
                finally:
                    if not wait:
                        con.execute(f"PRAGMA busy_timeout = {int(self.lock_timeout * 1000)}")
                write(con)
                con.execute("COMMIT")
            except sqlite3.OperationalError:
                _rollback(con)
                if began or wait:
                    raise
                return False  # a writer holds the fold
            except BaseException:
                _rollback(con)
                raise
            return True

    def ref_counts(self, oids: list[str], var: str | None = None) -> dict[str, int]:
        """How many live refs (of `var`, if given) name each of these oids (absent: none): one
        scan of the refs per `_COUNT_CHUNK` oids (no index holds refs by oid: it would cost
        every save)."""
        found: dict[str, int] = {}
        for start in range(0, len(oids), _COUNT_CHUNK):
            chunk = oids[start:start + _COUNT_CHUNK]
            rows = self._rows(f"SELECT oid, count(*) FROM refs WHERE {'var = ? AND ' if var is not None else ''}"
                              f"oid IN ({', '.join('?' * len(chunk))}) GROUP BY oid",
                              (*(() if var is None else (var,)), *(oid_in(o) for o in chunk)))
            found.update((oid_out(oid), n) for oid, n in rows)
        return found

    def calls_naming(self, oids: list[str]) -> list[dict[str, Any]]:
        """The call-cache entries whose outputs include one of these oids (a scan of the
        entries per `_NAMING_CHUNK` oids, their text searched in SQLite)."""
        found: dict[str, dict[str, Any]] = {}
        for start in range(0, len(oids), _NAMING_CHUNK):
            chunk = oids[start:start + _NAMING_CHUNK]
            rows = self._rows(f"SELECT key, {_CALL_COLUMNS} FROM calls WHERE "
                              + " OR ".join(["instr(outs, ?) > 0"] * len(chunk)), tuple(chunk))
            for r in rows:
                entry = _call_entry(oid_out(r[0]), r[1:])
                if set(entry["outs"]) & set(chunk):  # (a substring of a longer text is no match)
                    found[entry["key"]] = entry
        return [found[key] for key in sorted(found)]

    def call_key_of(self, call_oid: str) -> str | None:
        rows = self._rows("SELECT key FROM call_keys WHERE call = ?", (oid_in(call_oid),))
        return oid_out(rows[0][0]) if rows else None

    def calls(self) -> Iterator[dict[str, Any]]:
        rows = self._rows(f"SELECT key, {_CALL_COLUMNS} FROM calls ORDER BY key")
        return (_call_entry(oid_out(r[0]), r[1:]) for r in rows)

    def runs(self) -> list[RunRecord]:
        return [RunRecord.from_entry(json.loads(r[0])) for r in self._rows("SELECT entry FROM runs ORDER BY seq")]


class Judging:
    """Set-at-a-time staleness facts for one report, on the fold's connection (`Fold.judging`).

    Knows names and oids only: whether a variable's current records name call records whose
    inputs still name the current values. What a function's code says is the caller's to judge
    (`verdicts`); call facts (`learn_calls`) are parsed by the caller from the call records,
    once ever: a call record is immutable, so its facts stay true while its oid exists.
    """

    def __init__(self, fold: Fold) -> None:
        self.fold = fold
        self.con = fold._connection()
        self.con.executescript(
            "CREATE TEMP TABLE IF NOT EXISTS stale_cells (var TEXT, addr TEXT, vkeys TEXT, "
            "PRIMARY KEY (var, addr, vkeys)) WITHOUT ROWID;"
            "CREATE TEMP TABLE IF NOT EXISTS verdicts (identity TEXT PRIMARY KEY, verdict TEXT) WITHOUT ROWID;"
            "CREATE TEMP TABLE IF NOT EXISTS judged (var TEXT, addr TEXT, version INTEGER, created_at TEXT, "
            "verdict TEXT, PRIMARY KEY (var, addr)) WITHOUT ROWID;"
            "CREATE TEMP TABLE IF NOT EXISTS call_verdicts (call TEXT PRIMARY KEY, verdict TEXT) WITHOUT ROWID;"
            "CREATE TEMP TABLE IF NOT EXISTS reused (var TEXT PRIMARY KEY, counts TEXT NOT NULL) WITHOUT ROWID;"  # counts known
            "CREATE TEMP TABLE IF NOT EXISTS dirty (addr TEXT PRIMARY KEY) WITHOUT ROWID;"  # cells judged again
            "CREATE TEMP TABLE IF NOT EXISTS newest (addr TEXT PRIMARY KEY, version INTEGER, call TEXT, "
            "created_at TEXT) WITHOUT ROWID;"  # the records a `judge` judges
            "DELETE FROM stale_cells; DELETE FROM verdicts; DELETE FROM judged; DELETE FROM call_verdicts; "
            "DELETE FROM reused; DELETE FROM dirty; DELETE FROM newest;")

    def computed(self, var: str) -> bool:
        """Whether any record of the variable was ever computed by a function (else all are raw)."""
        return bool(self.fold.names(var, "made_by"))

    def unlearned_calls(self, var: str, since: int = -1) -> list[str]:
        """Call oids the variable's records name whose facts are not yet known (of those
        first named after its change count was `since`)."""
        return [r[0] for r in self.con.execute(
            "SELECT call FROM var_calls v WHERE var = ? AND n > ? AND NOT EXISTS "
            "(SELECT 1 FROM call_facts f WHERE f.call = v.call)", (var, since))]

    def learn_calls(self, facts: list[tuple[str, str, str, str, bool, list[tuple[str, str, str, str, str]],
                                            list[str]]]) -> None:
        """Keep call facts (`Fold.learn_calls`)."""
        self.fold.learn_calls(facts)
        self.con = self.fold._connection()

    def computed_from(self, var: str, input_var: str, oids: list[str]) -> list[RefRecord]:
        """Live records of `var` whose call record names, as a plain input of `input_var`,
        one of `oids` (by the learned facts: records of calls not learned are not found)."""
        found: list[RefRecord] = []
        for start in range(0, len(oids), _COUNT_CHUNK):
            chunk = oids[start:start + _COUNT_CHUNK]
            found += map(_record, self.con.execute(
                f"SELECT {_REF_COLUMNS} FROM refs WHERE var = ? AND call IN (SELECT call FROM call_inputs "
                f"WHERE var = ? AND oid IN ({', '.join('?' * len(chunk))})) ORDER BY addr, version",
                (var, input_var, *(oid_in(o) for o in chunk))))
        return found

    def gathered_vars(self, var: str) -> set[str]:
        """Variables `var`'s call records gather through an aggregated or merged input."""
        return {r[0] for r in self.con.execute(
            "SELECT DISTINCT g.var FROM var_calls v JOIN call_gathers g ON g.call = v.call WHERE v.var = ?", (var,))}

    def gathered_records(self, var: str, input_var: str) -> list[RefRecord]:
        """Live records of `var` whose call record gathers values of `input_var` (which of
        them is in the record: its members)."""
        return list(map(_record, self.con.execute(
            f"SELECT {_REF_COLUMNS} FROM refs WHERE var = ? AND call IN "
            "(SELECT call FROM call_gathers WHERE var = ?) ORDER BY addr, version", (var, input_var))))

    def facts(self, var: str) -> dict[str, tuple[str, str, str, list[tuple[str, str, str, str, str]]]]:
        """call oid -> (module, function, identity, plain inputs) of the variable's simple
        call records (inputs as (name, var, addr key, vkeys key, oid))."""
        found: dict[str, tuple[str, str, str, list]] = {}
        for call, module, function, identity in self.con.execute(
                "SELECT f.call, f.module, f.function, f.identity FROM var_calls v JOIN call_facts f "
                "ON f.call = v.call WHERE v.var = ? AND f.simple", (var,)):
            found[call] = (module, function, identity, [])
        for call, *row in self.con.execute(
                "SELECT ci.call, ci.name, ci.var, ci.addr, ci.vkeys, ci.oid FROM var_calls v JOIN call_inputs ci "
                "ON ci.call = v.call WHERE v.var = ? ORDER BY ci.call, ci.name", (var,)):
            if call in found:
                found[call][3].append((*row[:4], oid_out(row[4])))
        return found

    def functions(self, var: str, since: int = -1) -> list[tuple[str, str, str, str]]:
        """(identity, module, function, one call oid) of the call records the variable's live
        records name (first named after its change count was `since`)."""
        return self.con.execute(
            "SELECT f.identity, f.module, f.function, min(f.call) FROM var_calls v JOIN call_facts f "
            "ON f.call = v.call WHERE v.var = ? AND v.n > ? AND v.live > 0 AND f.simple "
            "GROUP BY f.identity, f.module, f.function", (var, since)).fetchall()

    def dead_calls(self, var: str, calls: list[str]) -> set[str]:
        """Those of `calls` no live record of the variable names any more (deleted: gc may
        have removed them, so a report must not read them)."""
        if not calls:
            return set()
        live = {r[0] for r in self.con.execute(
            f"SELECT call FROM var_calls WHERE var = ? AND live > 0 AND call IN ({_marks(calls)})", (var, *calls))}
        return set(calls) - live

    def input_vars(self, var: str, since: int = -1) -> set[str]:
        """The variables the call records of the variable's records read (of those first
        named after its change count was `since`)."""
        return {r[0] for r in self.con.execute(
            "SELECT DISTINCT ci.var FROM var_calls v JOIN call_inputs ci ON ci.call = v.call "
            "WHERE v.var = ? AND v.n > ?", (var, since))}

    def kept_facts(self, var: str) -> tuple[int, set[str], list[tuple[str, str, str, str]]] | None:
        """(change count, input variables, `functions`) as last kept for the variable (every
        call it had named by that count learned), or None."""
        row = self.con.execute("SELECT changes, inputs, functions FROM var_facts WHERE var = ?", (var,)).fetchone()
        if row is None:
            return None
        return row[0], set(json.loads(row[1])), [tuple(f) for f in json.loads(row[2])]

    def keep_facts(self, var: str, changes: int, inputs: set[str],
                   functions: list[tuple[str, str, str, str]]) -> None:
        """Keep what `kept_facts` answers, as learned when the variable's change count was
        `changes` (only once none of its calls named by then is left unlearned)."""
        self._keep(("INSERT OR REPLACE INTO var_facts VALUES (?, ?, ?, ?)",
                    (var, changes, json.dumps(sorted(inputs)), json.dumps(functions))))

    def kept_state(self, var: str) -> dict[str, Any] | None:
        """The signature of the variable's kept judgement and what it was made from
        (`keep_judged`'s `state`, under "sig"), or None."""
        row = self.con.execute("SELECT sig, state FROM judged_sig WHERE var = ?", (var,)).fetchone()
        return {**json.loads(row[1]), "sig": row[0]} if row and row[1] else None

    def changed_cells(self, var: str, since: int) -> set[str]:
        """Address keys where the variable's records changed (saved or deleted) after its
        change count was `since`."""
        return {r[0] for r in self.con.execute("SELECT addr FROM slots WHERE var = ? AND n > ?", (var, since))}

    def judged_aligned(self) -> bool:
        """Whether every input of the call of every record the last `judge` judged sits at the
        record's own address: a changed input cell can then change the verdict at that
        address only (judged records only: a verdict reads no other)."""
        return self.con.execute("SELECT 1 FROM newest c JOIN call_inputs ci ON ci.call = c.call "
                                "WHERE ci.addr != c.addr LIMIT 1").fetchone() is None

    def reuse_judged(self, var: str, sig: str) -> bool:
        """Take the variable's judged cells as kept under `sig`, if they were: a report that
        finds nothing changed upstream (values, code verdicts) judges nothing again. Kept are
        the counts and the cells that are not done (all a report or a downstream judgement
        reads), so keeping a done variable costs one row."""
        row = self.con.execute("SELECT counts FROM judged_sig WHERE var = ? AND sig = ?", (var, sig)).fetchone()
        if row is None:
            return False
        self.con.execute("INSERT OR REPLACE INTO reused VALUES (?, ?)", (var, row[0]))
        self.con.execute("INSERT OR REPLACE INTO judged SELECT var, addr, version, created_at, verdict "
                         "FROM judged_cells WHERE var = ?", (var,))
        self.mark_stale_from_judged(var)
        return True

    def keep_judged(self, var: str, sig: str, state: dict[str, Any] | None = None) -> None:
        """Keep the variable's judged cells under `sig` (what `reuse_judged` reads), and the
        `state` they were judged from (what `judge_again` starts from)."""
        counts = json.dumps(self.counts(var))
        self.con.execute("INSERT OR REPLACE INTO reused VALUES (?, ?)", (var, counts))  # counted once
        self._keep(("DELETE FROM judged_cells WHERE var = ?1", (var,)),
                   ("INSERT INTO judged_cells SELECT var, addr, version, created_at, verdict FROM judged "
                    "WHERE var = ?1 AND verdict NOT LIKE 'done|%'", (var,)),
                   ("INSERT OR REPLACE INTO judged_sig VALUES (?1, ?2, ?3, ?4)",
                    (var, sig, counts, json.dumps(state) if state is not None else None)))

    def has_unknown(self, var: str) -> bool:
        """Whether a judged cell of the variable names a call record that is missing."""
        return self.con.execute("SELECT 1 FROM judged WHERE var = ? AND verdict LIKE 'unknown|%' LIMIT 1",
                                (var,)).fetchone() is not None

    def changes(self, var: str) -> int:
        return self.fold.changes(var)

    def _keep(self, *statements: tuple[str, tuple]) -> None:
        """Write what a report learned, if the fold is free within a moment: it is only a
        shortcut for the next report, never worth waiting behind a writer for."""
        def write(con: sqlite3.Connection) -> None:
            for sql, args in statements:
                con.execute(sql, args)
        self.fold.shortcut_write(write, wait=False)
        self.con = self.fold._connection()

    def set_verdicts(self, verdicts: dict[str, tuple[str, str]]) -> None:
        self.con.executemany("INSERT OR REPLACE INTO verdicts VALUES (?, ?)",
                             [(identity, f"{status}|{reason}") for identity, (status, reason) in verdicts.items()])

    def judge_again(self, var: str, cells: set[str]) -> None:
        """Judge only `cells` (address keys) of the variable again and take its other cells as
        kept (`keep_judged`): after a change to a few cells upstream, a report judges those
        and what they reach, not every cell of every variable downstream (the caller says
        which cells a change can reach: `report.status`). Where they are most of its cells
        (a run that made a new version of each), all are judged: it costs less than sorting
        out which (~0.3 s per 100k)."""
        if len(cells) >= _JUDGE_ALL_AT * self.cells(var):
            self.judge(var)
            return
        self.con.execute("DELETE FROM dirty")
        self.con.executemany("INSERT OR IGNORE INTO dirty VALUES (?)", [(c,) for c in cells])
        self.con.execute("INSERT OR REPLACE INTO judged SELECT var, addr, version, created_at, verdict "
                         "FROM judged_cells WHERE var = ? AND addr NOT IN (SELECT addr FROM dirty)", (var,))
        self.judge(var, only_dirty=True)
        counts = dict(self.con.execute(
            "SELECT substr(verdict, 1, instr(verdict, '|') - 1), count(*) FROM judged WHERE var = ? "
            "AND verdict NOT LIKE 'done|%' GROUP BY 1", (var,)).fetchall())
        counts["done"] = self.cells(var) - sum(counts.values())
        self.con.execute("INSERT OR REPLACE INTO reused VALUES (?, ?)", (var, json.dumps(counts)))

    def judge(self, var: str, *, only_dirty: bool = False) -> None:
        """Judge the newest record at each address of `var` (one without version keys): done,
        stale (an input names another value now, or is stale), the function's verdict, or
        `complex` (an aggregated or merged input: the caller judges those records itself).
        A variable never computed by a function is done everywhere: nothing is scanned.

        Each call record is judged once per report (`call_verdicts`), however many variables
        it made (a function with seven outputs names one call per address from seven
        variables). Sound because variables are judged upstream first: everything a call's
        verdict reads (its inputs' current values and staleness, its function's verdict) is
        settled before the first of its outputs is judged."""
        self.con.execute("DELETE FROM newest")  # the newest record at each address (to judge): the
        if not self.computed(var):  # calls of older versions are not judged (their verdicts read nothing)
            return
        # with nothing stale upstream (the usual case) the probe of stale_cells for every
        # input of every record could only answer NULL: it is left out (~0.2 s per 100k)
        stale_inputs = (
            " (SELECT 'stale|input ' || ci.name || ' (' || ci.var || ') is stale' FROM call_inputs ci "
            "  JOIN stale_cells s ON s.var = ci.var AND s.addr = ci.addr AND s.vkeys = ci.vkeys "
            "  WHERE ci.call = c.call ORDER BY ci.name LIMIT 1),"
        ) if self.con.execute("SELECT 1 FROM stale_cells LIMIT 1").fetchone() else ""
        cells = "AND addr IN (SELECT addr FROM dirty) " if only_dirty else ""
        self.con.execute(
            f"INSERT INTO newest SELECT addr, max(version), call, created_at FROM refs WHERE var = ?1 {cells}"
            "GROUP BY addr", (var,))
        self.con.execute(
            "INSERT OR IGNORE INTO call_verdicts SELECT f.call, CASE WHEN f.simple = 0 THEN 'complex|' "
            "ELSE coalesce("
            " (SELECT 'stale|input ' || ci.name || ' (' || ci.var || ') changed' FROM call_inputs ci "
            "  WHERE ci.call = c.call AND (SELECT u.oid FROM refs u WHERE u.var = ci.var AND u.addr = ci.addr "
            "  AND u.vkeys = ci.vkeys ORDER BY u.version DESC LIMIT 1) IS NOT ci.oid ORDER BY ci.name LIMIT 1),"
            + stale_inputs +
            " (SELECT v.verdict FROM verdicts v WHERE v.identity = f.identity), 'done|') END "
            "FROM newest c JOIN call_facts f ON f.call = c.call "  # (a call twice is judged twice,
            "WHERE NOT EXISTS (SELECT 1 FROM call_verdicts cv WHERE cv.call = c.call)")  # not sorted: -0.15 s)
        self.con.execute(
            "INSERT OR REPLACE INTO judged SELECT ?1, c.addr, c.version, c.created_at, CASE "
            "WHEN c.call IS NULL THEN 'done|' "
            "ELSE coalesce(cv.verdict, 'unknown|call record ' || substr(c.call, 1, 12) || ' is missing') END "
            "FROM newest c LEFT JOIN call_verdicts cv ON cv.call = c.call", (var,))
        self.mark_stale_from_judged(var)

    def mark_stale_from_judged(self, var: str) -> None:
        self.con.execute("INSERT OR IGNORE INTO stale_cells SELECT var, addr, '{}' FROM judged "
                         "WHERE var = ? AND verdict LIKE 'stale|%'", (var,))

    def mark_stale(self, cells: list[tuple[str, str, str]]) -> None:
        """(var, addr key, vkeys key) judged stale elsewhere, for the variables downstream."""
        self.con.executemany("INSERT OR IGNORE INTO stale_cells VALUES (?, ?, ?)", cells)

    def complex_records(self, var: str) -> list[RefRecord]:
        rows = self.con.execute(
            f"SELECT {', '.join('r.' + c.strip() for c in _REF_COLUMNS.split(','))} FROM judged j JOIN refs r "
            "ON r.var = j.var AND r.addr = j.addr AND r.version = j.version "
            "WHERE j.var = ? AND j.verdict = 'complex|'", (var,)).fetchall()
        return [_record(r) for r in rows]

    def set_judged(self, var: str, verdicts: list[tuple[str, str, str]]) -> None:
        """Set (addr key, status, reason) of cells judged by the caller."""
        self.con.executemany("UPDATE judged SET verdict = ?3 || '|' || ?4 WHERE var = ?1 AND addr = ?2",
                             [(var, addr, status, reason) for addr, status, reason in verdicts])

    def counts(self, var: str) -> dict[str, int]:
        reused = self.con.execute("SELECT counts FROM reused WHERE var = ?", (var,)).fetchone()
        if reused is not None:
            return json.loads(reused[0])
        if not self.computed(var):
            return {"done": self.cells(var)}
        return dict(self.con.execute(
            "SELECT substr(verdict, 1, instr(verdict, '|') - 1), count(*) FROM judged WHERE var = ? GROUP BY 1",
            (var,)).fetchall())

    def problems(self, var: str, limit: int, keys: list[str] | None = None
                 ) -> list[tuple[str, int, str, str]]:
        """Up to `limit` (-1: all) (addr key, version, status, reason) of cells that are not
        done: in `address_order` of the schema `keys` when given (else in no useful order)."""
        order = address_order_sql(keys) if keys else "addr"
        rows = self.con.execute(
            "SELECT addr, version, verdict FROM judged WHERE var = ? AND verdict NOT LIKE 'done|%' "
            f"ORDER BY {order} LIMIT ?", (var, limit)).fetchall()
        return [(addr, version, *verdict.split("|", 1)) for addr, version, verdict in rows]

    def newest_versions(self, var: str) -> list[tuple[str, int]]:
        """(addr key, newest version) of every address where the variable has a record."""
        return self.con.execute("SELECT addr, max(version) FROM refs WHERE var = ? GROUP BY addr", (var,)).fetchall()

    def cells(self, var: str) -> int:
        """Addresses where the variable has a live record (a b-tree count)."""
        return self.con.execute("SELECT count(*) FROM slots WHERE var = ? AND live", (var,)).fetchone()[0]

    def addresses(self, variables: list[str] | None) -> int:
        """Distinct addresses among these variables' live records (None: every variable)."""
        if variables is None:
            return self.con.execute("SELECT count(*) FROM addresses").fetchone()[0]
        mask = self._mask(variables)
        if mask is not None:  # a scan of the bitmasks, not a sort of every variable's addresses
            return self.con.execute("SELECT count(*) FROM addresses WHERE vars & ?", (mask,)).fetchone()[0]
        return self.con.execute(
            "SELECT count(*) FROM (SELECT DISTINCT addr FROM slots WHERE var IN (SELECT value FROM json_each(?)) "
            "AND live)",
            (json.dumps(variables),)).fetchone()[0]

    def missing(self, var: str, limit: int, within: list[str] | None = None, keys: list[str] | None = None
                ) -> list[str]:
        """Up to `limit` address keys some variable (of `within`, if given) has and `var` has
        not: in `address_order` of the schema `keys` when given, else in key order.

        Read by the addresses' bitmasks of variables present: the distinct masks (an index
        seek each) that lack the variable's bit, then the first addresses under each. A
        variable that lacks one address of a million costs a few seeks, where probing every
        address for its record cost ~0.6 s. Past 63 variables, or with many distinct masks,
        the probe it is."""
        order = address_order_sql(keys) if keys else "addr"
        found = self.con.execute("SELECT bit FROM var_bits WHERE var = ?", (var,)).fetchone()
        bit = found[0] if found else _BITS
        among = None if within is None else self._mask(within)
        masks = [r[0] for r in self.con.execute(_DISTINCT_MASKS, (_MAX_MASKS + 1,))] if bit < _BITS else []
        if bit >= _BITS or (within is not None and among is None) or len(masks) > _MAX_MASKS:
            some = "" if within is None else (
                "AND EXISTS (SELECT 1 FROM slots w WHERE w.var IN (SELECT value FROM json_each(?3)) "
                "AND w.addr = a.addr AND w.live) ")
            return [r[0] for r in self.con.execute(
                "SELECT addr FROM addresses a WHERE NOT EXISTS (SELECT 1 FROM slots c WHERE c.var = ?1 AND "
                f"c.addr = a.addr AND c.live) {some}ORDER BY {order} LIMIT ?2",
                (var, limit) if within is None else (var, limit, json.dumps(within)))]
        firsts = [[r[0] for r in self.con.execute(
            f"SELECT addr FROM addresses WHERE vars = ? ORDER BY {order} LIMIT ?", (mask, limit))]
            for mask in masks if not mask >> bit & 1 and (within is None or mask & among)]
        merged = heapq.merge(*firsts, key=(lambda addr: address_key_order(addr, keys)) if keys else None)
        return list(itertools.islice(merged, limit if limit >= 0 else None))  # (no keys: SQLite's str order)

    def address_groups(self, names: list[str], projected: list[str], variables: list[str]
                       ) -> list[tuple] | None:
        """The live addresses of `variables` counted in groups of the same keys, the same
        variables with a live record there and the same values of the schema keys `projected`:
        (the keys an address has, as bits in the order of `names`; those variables' bits; the
        JSON text of each `projected` key, typed as saved, None where it has none; how many
        addresses; the least address key). A group whose keys are all `projected` is one
        address. None where this SQLite cannot say (before 3.38: no `->`) or a variable has
        no bit (past 63)."""
        mask = self._mask(variables)
        if sqlite3.sqlite_version_info < (3, 38, 0) or mask is None:
            return None
        has, picks, probes = _address_parts(names, projected)
        by = ", ".join(str(i) for i in range(1, len(projected) + 3))
        return self.con.execute(f"SELECT {has}, vars & ?1, {picks}count(*), min(addr) FROM addresses "
                                f"WHERE vars & ?1 GROUP BY {by}", (mask, *probes)).fetchall()

    def addresses_lacking(self, var: str, names: list[str], projected: list[str], variables: list[str]
                          ) -> Iterator[tuple]:
        """(address key, then as `address_groups` gives them: its keys, `variables`' bits and
        the `projected` texts) of each live address of `variables` where `var` has no live
        record, in `address_order` of the schema keys `names`, read as the caller goes
        (`address_groups` said that this SQLite can)."""
        has, picks, probes = _address_parts(names, projected)
        return self.con.execute(f"SELECT addr, {has}, vars & ?1, {picks}0 FROM addresses "
                                f"WHERE vars & ?1 AND NOT vars & ?{len(names) + 2} "
                                f"ORDER BY {address_order_sql(names)}",
                                (self._mask(variables), *probes, self._mask([var])))

    def bit(self, var: str) -> int | None:
        """The variable's bit in `address_values` (None past 63 variables)."""
        return self._mask([var])

    def reads_elsewhere(self, var: str, input_var: str) -> bool:
        """Whether a record of `var` names a call whose input of `input_var` was found at
        another address than the record's own (a session's value for each of its trials)."""
        return self.con.execute(
            "SELECT 1 FROM refs r JOIN call_inputs ci ON ci.call = r.call WHERE r.var = ? AND ci.var = ? "
            "AND ci.addr != r.addr LIMIT 1", (var, input_var)).fetchone() is not None

    def _mask(self, variables: list[str]) -> int | None:
        """The variables' bits in `addresses.vars`, or None when one has none (past 63)."""
        bits = [r[0] for r in self.con.execute(
            "SELECT bit FROM var_bits WHERE var IN (SELECT value FROM json_each(?))", (json.dumps(variables),))]
        if len(bits) < len(set(variables)) or any(b >= _BITS for b in bits):
            return None
        return sum(1 << b for b in bits)

    def run_facts(self, items: list[str]) -> dict[str, tuple[int, int]]:
        """(items, failures) each run's item list holds, where known."""
        return {r[0]: (r[1], r[2]) for r in self.con.execute(
            "SELECT items, total, failed FROM run_facts WHERE items IN (SELECT value FROM json_each(?))",
            (json.dumps(items),))}

    def learn_runs(self, facts: dict[str, tuple[int, int]]) -> None:
        self.con.executemany("INSERT OR REPLACE INTO run_facts VALUES (?, ?, ?)",
                             [(items, total, failed) for items, (total, failed) in facts.items()])


def address_order_sql(keys: list[str], column: str = "addr") -> str:
    """ORDER BY terms putting address keys in `address_order` (the order the status grid
    lists its rows in), not in the order of their text, where `session` came before `subject`
    and 10 before 9: each schema key's value, an address without the key (NULL: address
    values are never null) before numbers and numbers before text, by SQLite's order of
    types; then the text, for a tie of 1 and true. One JSON parse per key and row: the sort
    reads every row that qualifies, ~0.5 µs a key. (Schema keys are identifiers: they are
    written into the SQL as they are.)"""
    terms = [f"json_extract({column}, '$.{key}')" for key in keys]
    return ", ".join([*terms, column])


def address_key_order(addr_key: str, keys: list[str]) -> tuple:
    """`address_order` of an address key, as `address_order_sql` orders them."""
    return (*address_order(loads_line(addr_key.encode()), keys), addr_key)


def _address_parts(names: list[str], projected: list[str]) -> tuple[str, str, list[str]]:
    """SQL of the keys an address key has (bits in the order of `names`) and of the JSON texts
    of the `projected` keys, with the parameters from ?2 on: a key as an address key writes
    it, then ':' (inside a string value every '"' is escaped, so only a key matches)."""
    has = " | ".join(f"((instr(addr, ?{i + 2}) > 0) << {i})" for i in range(len(names))) or "0"
    return has, "".join(f"addr -> '$.{name}', " for name in projected), [key_of({n: 0})[1:-2] for n in names]


_TEMP_CACHE_KB = 256 * 1024  # the temp tables' page cache (`_open`)
_JUDGE_ALL_AT = 0.5  # the share of a variable's cells to judge again at which `judge_again` judges all
_MAX_MASKS = 256  # distinct sets of variables at which `missing` still reads by bitmask
# the distinct `addresses.vars`, one index seek each (SQLite would read every row for DISTINCT)
_DISTINCT_MASKS = (
    "WITH RECURSIVE m(v) AS (SELECT min(vars) FROM addresses UNION ALL "
    "SELECT (SELECT min(vars) FROM addresses WHERE vars > m.v) FROM m WHERE m.v IS NOT NULL) "
    "SELECT v FROM m WHERE v IS NOT NULL LIMIT ?")


def _scalar(con: sqlite3.Connection, sql: str) -> Any:
    return con.execute(sql).fetchone()[0]


def oid_in(oid: Any) -> Any:
    """An oid as the fold keeps it: 32 bytes, not 64 hex characters (half the bytes in every
    row and index that holds one). Anything that would not read back as the same text (not
    lowercase hex of 32 bytes) is kept as it is: never equal to a BLOB, so never misread."""
    if type(oid) is str and len(oid) == 64:
        try:
            raw = bytes.fromhex(oid)
        except ValueError:
            return oid
        if len(raw) == 32 and raw.hex() == oid:
            return raw
    return oid


def blob_param(value: Any) -> Any:
    """An oid as `oid_in` made it, to bind to a point lookup's `?`: the same bytes as a
    bytearray. Python's sqlite3 binds both as the same BLOB, but offers a `bytes` to its
    adapters first, and the failed lookup of `__adapt__` builds and drops an AttributeError
    (~3.4k instructions of a cache hit's lookup)."""
    return bytearray(value) if type(value) is bytes else value


def _marks(items: list) -> str:
    """One `?` per item, for `IN (...)`: the oids are bound as blobs made here. (A SQL function
    made them from a JSON list before; a Ctrl-C landing in it reached the user as SQLite's
    "user-defined function raised exception", the KeyboardInterrupt lost.)"""
    return ", ".join("?" * len(items))


def _oids_in(oids: list[str]) -> tuple:
    return tuple(oid_in(o) for o in oids)


def oid_out(value: Any) -> Any:
    """An oid as read from the fold, as the text everything else names it by."""
    return value.hex() if type(value) is bytes else value


def _put_row(e: dict[str, Any], addr_key: str | None = None) -> tuple:
    var, oid, kind, t = e["var"], e["oid"], e["kind"], e["t"]
    version = e["version"]
    params = e.get("params") or {}
    return (var, key_of(e["addr"]) if addr_key is None else addr_key, version, key_of(e.get("vkeys") or {}), oid_in(oid), kind, e.get("call"),
            key_of(params) if params else _EMPTY, e.get("summary", ""), t,
            tuple(e.get("vkeys") or ()), tuple(params), ",".join(sorted(e["addr"])), e["addr"], e.get("vkeys"))


def _insert(con: sqlite3.Connection, puts: list[tuple]) -> None:
    con.executemany(f"INSERT OR REPLACE INTO refs ({_REF_COLUMNS}) VALUES (?,?,?,?,?,?,?,?,?,?)",
                    [p[:10] for p in puts])
    # the variables `ls` follows: each (variable, object) counted once per batch, in key order
    # (a trigger per ref inserting at random places made a fold of 100k new objects ~40%
    # slower); a REPLACE above fires `ref_unnamed` for the row it replaced
    tracked = {var for (var,) in con.execute("SELECT var FROM var_bytes")}  # (after a first `ls`)
    named = collections.Counter((p[0], p[4], p[5]) for p in puts if p[0] in tracked)
    con.executemany("INSERT INTO var_oids VALUES (?, ?, ?, ?) ON CONFLICT (var, oid) DO UPDATE SET n = n + excluded.n",
                    [(var, oid, kind, n) for (var, oid, kind), n in sorted(named.items())])
    _count_changes(con, [p[0] for p in puts])
    # (a ref that replaced one already there was taken off by `ref_gone`)
    con.executemany("UPDATE var_counts SET refs = refs + ? WHERE var = ?",
                    [(n, var) for var, n in sorted(collections.Counter(p[0] for p in puts).items())])
    variables = sorted({p[0] for p in puts})
    bits = _var_bits(con, variables)
    if len(bits) < len(variables):  # a variable's first save: its bit is the next free one
        con.executemany("INSERT OR IGNORE INTO var_bits SELECT ?, coalesce(max(bit) + 1, 0) FROM var_bits",
                        [(var,) for var in variables if var not in bits])
        bits = _var_bits(con, variables)
    masks: dict[str, int] = {}
    for p in puts:
        masks[p[1]] = masks.get(p[1], 0) | (1 << bits[p[0]] if bits[p[0]] < _BITS else 0)
    # a new address gets its bits now, before its slots, whose triggers then find them set: a
    # later update per variable would move its `addresses_by_vars` entry each time (+50% a fold)
    con.executemany("INSERT OR IGNORE INTO addresses (addr, vars) VALUES (?, ?)", masks.items())
    con.executemany(
        "INSERT INTO slots (var, addr, max_version, n, live) VALUES (?1, ?2, ?3, (SELECT n FROM var_changes "
        "WHERE var = ?1), 1) ON CONFLICT (var, addr) DO UPDATE SET max_version = max(max_version, "
        "excluded.max_version), n = excluded.n, live = 1",
        [(p[0], p[1], p[2]) for p in puts])
    # the call records a variable's records ever named (kept after deletes: reports only read
    # them to learn call facts and upstream variables, where a few extra cost nothing), with
    # how many live refs name each (`ref_call_unnamed` takes one off for a delete or a REPLACE)
    con.executemany("INSERT INTO var_calls SELECT ?1, ?2, n, ?3 FROM var_changes WHERE var = ?1 "
                    "ON CONFLICT (var, call) DO UPDATE SET live = live + excluded.live",
                    [(*named, n) for named, n in sorted(collections.Counter((p[0], p[6]) for p in puts if p[6]).items())])
    names = {(p[0], "vkey", n) for p in puts for n in p[10]} | {(p[0], "param", n) for p in puts for n in p[11]}
    names |= {(p[0], "level", p[12]) for p in puts}  # which schema keys the variable is saved at
    names |= {(p[0], "made_by", "call") for p in puts if p[6]}  # computed by a function at least once
    if names:
        con.executemany("INSERT OR IGNORE INTO names VALUES (?, ?, ?)", sorted(names))
    con.executemany("INSERT OR IGNORE INTO key_values VALUES (?, ?, ?)", sorted(_key_values(puts)))
    # the version-key values the new refs hold, each distinct one written once (a trigger per ref
    # made a fold of refs with two version keys ~55% slower); as SQLite's JSON reads the refs'
    # own `vkeys` (`ref_vkeys_gone` takes a ref off, a REPLACE included)
    held: collections.Counter[tuple[str, str, str, Any]] = collections.Counter()
    reals: collections.Counter[tuple[str, str, str]] = collections.Counter()
    for p in puts:
        for key, value in (p[14] or {}).items():
            kind = type(value)
            if kind is str:
                held[(p[0], key, "text", value)] += 1
            elif kind is bool:
                held[(p[0], key, "true", 1) if value else (p[0], key, "false", 0)] += 1
            elif kind is int and -(2**63) <= value < 2**63:
                held[(p[0], key, "integer", value)] += 1
            elif kind is float:  # (a double as SQLite's JSON reads its text, as it read the ref's)
                reals[(p[0], key, key_of({"v": value}))] += 1
    upsert = "ON CONFLICT (var, key, type, atom) DO UPDATE SET n = n + excluded.n"
    if held:
        con.executemany(f"INSERT INTO vkey_values VALUES (?, ?, ?, ?, ?) {upsert}",
                        [(*row, n) for row, n in sorted(held.items())])  # (atoms compared within a type)
    if reals:
        con.executemany("INSERT INTO vkey_values SELECT ?1, ?2, 'real', json_extract(?3, '$.v'), ?4 "
                        f"WHERE json_type(?3, '$.v') = 'real' {upsert}", [(*row, n) for row, n in sorted(reals.items())])
    puts.clear()


def _key_values(puts: list[tuple]) -> set[tuple[str, str, str]]:
    """The (key, text, type) rows of the puts' address values (each distinct address and
    value looked at once)."""
    rows: set[tuple[str, str, str]] = set()
    seen_addrs: set[str] = set()
    seen: set[tuple[str, type, Any]] = set()
    for p in puts:
        if p[1] in seen_addrs:
            continue
        seen_addrs.add(p[1])
        for key, value in p[13].items():
            memo = (key, type(value), value)
            try:
                if memo in seen:
                    continue
                seen.add(memo)
            except TypeError:  # (unhashable: not an address value)
                continue
            shown = shown_as(value)
            if shown is not None:
                rows.update((key, text, shown[0]) for text in shown[1])
    return rows


def _var_bits(con: sqlite3.Connection, variables: list[str]) -> dict[str, int]:
    return dict(con.execute("SELECT var, bit FROM var_bits WHERE var IN (SELECT value FROM json_each(?))",
                            (json.dumps(variables),)))


def _remember(con: sqlite3.Connection, measured: dict[str, tuple[int, frozenset[str]]]) -> None:
    """Objects are immutable: an object's own size and its parts, once measured, are true for
    as long as the oid exists (in key order: a million random keys inserted in order cost a
    fraction). A size is only written with the object's parts, in one transaction."""
    con.executemany("INSERT OR REPLACE INTO sizes VALUES (?, ?)",
                    [(oid_in(oid), own) for oid, (own, _) in sorted(measured.items())])
    con.executemany("INSERT OR IGNORE INTO parts VALUES (?, ?)",
                    sorted((oid_in(oid), oid_in(part)) for oid, (_, held) in measured.items() for part in held))


def _count_changes(con: sqlite3.Connection, variables: list[str]) -> None:
    """Each variable's change counter: a summary cached at one count is true while it holds."""
    counts: dict[str, int] = {}
    for var in variables:
        counts[var] = counts.get(var, 0) + 1
    con.executemany("INSERT INTO var_changes VALUES (?, ?) ON CONFLICT (var) DO UPDATE SET n = n + excluded.n",
                    counts.items())


def _delete(con: sqlite3.Connection, dels: list[tuple]) -> None:
    """Fold deletes given as (var, addr key, version, journal time or None)."""
    con.executemany("DELETE FROM refs WHERE var = ? AND addr = ? AND version = ?", [d[:3] for d in dels])
    _count_changes(con, [d[0] for d in dels])
    con.executemany("INSERT INTO var_deleted VALUES (?, ?) ON CONFLICT (var) DO UPDATE SET at = max(at, excluded.at)",
                    [(d[0], d[3]) for d in dels if d[3]])
    emptied = sorted({(var, addr) for var, addr, *_ in dels})
    con.executemany("UPDATE slots SET n = (SELECT n FROM var_changes WHERE var = ?1) WHERE var = ?1 AND addr = ?2",
                    emptied)
    con.executemany("UPDATE slots SET live = 0 WHERE var = ?1 AND addr = ?2 AND NOT EXISTS "
                    "(SELECT 1 FROM refs WHERE var = ?1 AND addr = ?2)", emptied)
    con.executemany("DELETE FROM addresses WHERE addr = ?1 AND NOT EXISTS (SELECT 1 FROM slots WHERE var IN "
                    "(SELECT var FROM var_changes) AND addr = ?1 AND live)",  # a seek per variable
                    sorted({(addr,) for _, addr in emptied}))
    dels.clear()


def _call_row(e: dict[str, Any]) -> tuple:
    return (oid_in(e["key"]), oid_in(e["call"]), oid_in(e.get("fn")), json.dumps(e.get("outs") or []),
            1 if e.get("multi") else 0, e.get("t"), oid_in(e.get("origins")))


_KEY_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")  # (a schema key is an identifier: `check_identifier`)
_EXACT = 2 ** 53  # whole numbers up to this a double holds exactly, in Python and SQLite alike


def _key_value(key: str) -> str:
    """The SQL of an address's value of schema key `key` (SQL NULL where it has none), as the
    index `_key_index_name(key)` holds it: the queries must spell it the same to use it."""
    return f"json_extract(addr, '$.{key}')"


def _key_index_name(key: str) -> str:
    return f"slots_by_{key.encode().hex()}"  # (SQLite's names ignore case, JSON paths do not)


def _value_term(key: str, values: list[Any]) -> tuple[str, list[Any]] | None:
    """An SQL condition holding for an address whose value of `key` is one of `values` as
    `state._matches` judges (1 meets 1.0 and no other type; "1" meets "1"), and perhaps for a
    few more, with its arguments; None when it cannot be said so (a key that is no identifier,
    a value of another type, several values not all strings or whole numbers). A whole number
    SQLite and Python both hold exactly is compared as is; another (0.1, 2**60) within a hair
    either side, so that SQLite's reading of the address's text never leaves it out."""
    if not _KEY_NAME.match(key) or not values:
        return None
    exact, near = [], []
    for value in values:
        if isinstance(value, bool):
            exact.append(int(value))  # (true reads as 1 in SQLite; `_matches` keeps bools apart)
        elif isinstance(value, str):
            if "\x00" in value or not value.isascii() and not _utf8(value):
                return None
            exact.append(value)
        elif isinstance(value, (int, float)) and not isinstance(value, bool):
            if value != value or value in (float("inf"), float("-inf")):
                return None
            if value == int(value) and abs(value) <= _EXACT:
                exact.append(int(value))
            else:
                near.append(float(value))
        else:
            return None
    column = _key_value(key)
    if near and (exact or len(near) > 1):
        return None
    if near:
        hair = abs(near[0]) * 1e-9
        return f"{column} BETWEEN ? AND ?", [near[0] - hair, near[0] + hair]
    if len(exact) == 1:
        return f"{column} = ?", exact
    return f"{column} IN (SELECT value FROM json_each(?))", [json.dumps(exact)]


def _utf8(text: str) -> bool:
    try:
        text.encode()
    except UnicodeEncodeError:  # (a lone surrogate: SQLite cannot be given it)
        return False
    return True


def _begin(con: sqlite3.Connection, how: str = "BEGIN IMMEDIATE") -> None:
    """Begin a transaction, first rolling back one left open: every BEGIN here is inside the
    try that ends its transaction, but an interrupt (Ctrl-C) between two statements of a
    rollback, or code yet to come, could leave one, and then each later BEGIN failed ("cannot
    start a transaction within a transaction", reported as a lock) until the process ended.
    Nothing in it was committed, and the journal still holds whatever it was folding."""
    if con.in_transaction:
        log.warning("the local index's connection was left inside a transaction (an interrupted "
                    "write); rolled back, nothing saved is lost")
        con.execute("ROLLBACK")
    con.execute(how)


def _rollback(con: sqlite3.Connection) -> None:
    """Roll back the open transaction, if SQLite has not already (it does on a full disk)."""
    if con.in_transaction:
        con.execute("ROLLBACK")


_CALL_COLUMNS = "call, fn, outs, multi, created_at, origins"  # a cache entry's row (`_call_entry`)
_CALL_AT = f"SELECT {_CALL_COLUMNS} FROM calls WHERE key = ?"
_COUNT_CHUNK = _IN_CHUNK  # oids a `ref_counts` scan looks for
_NAMING_CHUNK = 200  # oids a `calls_naming` scan looks for


def _oid_list(text: str) -> list[str]:
    """A JSON list of oids (hex: nothing escaped) without the JSON decoder: a cache hit reads one."""
    if text == "[]":
        return []
    if text.startswith('["') and text.endswith('"]') and "\\" not in text:
        return [part.strip().strip('"') for part in text[1:-1].split(",")]
    return json.loads(text)


def _call_entry(key: str, row: tuple) -> dict[str, Any]:
    """A call-cache entry in its journal shape (what `Index.cached_call` has always returned)."""
    call, fn, outs, multi, t, origins = row
    # (`oid_out` written out: a cache hit reads one entry, and each call was ~0.3k instructions)
    entry = {"op": "call", "key": key, "call": call.hex() if type(call) is bytes else call,
             "fn": fn.hex() if type(fn) is bytes else fn, "outs": _oid_list(outs), "t": t}
    if multi:
        entry["multi"] = True
    if origins is not None:
        entry["origins"] = origins.hex() if type(origins) is bytes else origins
    return entry



def _end_held_soon(fold_ref: weakref.ref, opened: threading.Event) -> None:
    """A fold's thread: end the read transaction `_held_rows` began `_HOLD_S` after it began.
    It holds the fold weakly (an unclosed project is still collected) and stops when the fold
    is closed or collected, or starts another thread (after a fork)."""
    while True:
        opened.wait()
        time.sleep(_HOLD_S)
        fold = fold_ref()
        if fold is None:
            return
        with fold._lock:
            if fold._ender is not threading.current_thread():
                return
            opened.clear()
            if fold._held:
                fold._end_held()
        del fold


def _record(row: tuple) -> RefRecord:
    """A record from a row of `_REF_COLUMNS`."""
    return RefRecord.from_row(row[0], row[1], row[2:])
