"""The journal in PostgreSQL, for a project shared by a lab (several people and machines).

One append-only table holds the same canonical lines as `refs.log`, each with a `seq` that
plays the role of the byte offset: `read_from(n)` returns the lines with `seq > n`, and each
process folds only that tail into its own local fold and DuckDB file.

Why appends hold an advisory lock (the hazard): `seq` values are handed out when a row is
inserted but become visible when its transaction commits, so two concurrent writers can
commit out of order; a reader that saw seq 11 would then never read a late-committing 10.
Every append (and every read-then-append of the index, through `locked()`) therefore holds
one session-level advisory lock for the whole transaction, so rows commit in `seq` order and
`seq > offset` never skips a line. The same lock makes version numbers and "newest" agree on
every machine, as `flock` does on one. A batch is one transaction: a client killed mid-batch
leaves no line of it; the server releases a dead session's lock.

A server that stops answering without closing the connection (a frozen VM, SIGSTOP, a
partition) would hold a statement for the whole outage: statement_timeout runs on the server,
and the kernel of a stopped server still acknowledges every packet, so keepalives never fire.
A fixed client deadline would cut legitimate waits (another writer holding the lock, a large
COPY). So silence is checked, not duration: a statement unanswered for `SILENCE` seconds
makes the watchdog open a probe connection; a server that answers it is alive and the wait
goes on (probed again every `SILENCE`), one that does not is given up: the statement's
socket is shut down and the step fails with a `SharedServiceError`.

A forked child (the `multiprocessing` fork start method, a user's `os.fork`) inherits the
connection's socket, which is its parent's session: its statements interleaved with the
parent's on one protocol stream, its unlock released the parent's advisory lock, and its
`close()` sent the server a Terminate that ended the parent's session (and its lock). So at
the fork every journal of the child drops the inherited connection without sending anything
on it (`_after_fork`: only the child's descriptor of the socket is closed), holds no lock (a
`locked()` it was forked inside ends without unlocking: the lock is its parent's), has new
thread locks and a watch of its own, and connects anew at its first statement.

Secrets: the password in a URL is never stored or shown; `redact` removes it from messages.
"""

from __future__ import annotations

import json
import logging
import os
import select
import socket
import threading
import time
import uuid
import weakref
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from scistack.address import has_surrogate_escape
from scistack.errors import SharedAccessError, SharedServiceError
from scistack.index.journal import entry_problem, texts_escaped
from scistack.objects.canonical_json import dumps_canonical

TABLE = "scistack_journal"
META = "scistack_meta"
LOCK_KEY = 0x5C157AC6  # pg_advisory_lock key of journal appends ("scistack")
_TAKING = -1  # `_lock_session` while the lock is being taken (no session is numbered so)
SIZE_TTL = 0.05  # seconds an unlocked freshness check is reused (see size())
SILENCE = 10.0  # seconds a statement waits unanswered before the server's liveness is probed
PROBE_TIMEOUT = 5  # seconds a probe connection may go unanswered (libpq's least is 2)
KEEPALIVES = {"keepalives": 1, "keepalives_idle": 10, "keepalives_interval": 5, "keepalives_count": 3}
TCP_USER_TIMEOUT = 30_000  # ms sent data may stay unacknowledged (a partition) before the kernel drops it
_DECODER = json.JSONDecoder()


def redact(url: str) -> str:
    """`url` without its password, for messages and files."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    host = parts.hostname or ""
    if parts.port:
        host += f":{parts.port}"
    user = f"{parts.username}@" if parts.username else ""
    return urlunsplit((parts.scheme, user + host, parts.path, parts.query, parts.fragment))


class PostgresJournal:
    """The `JournalBackend` of lab mode: lines in a PostgreSQL table, appends serialised."""

    def __init__(self, url: str, path: str | Path, *, connect_timeout: float = 10) -> None:
        """`path` is local (named in messages; the fold and DuckDB stamps live beside it)."""
        try:
            import psycopg
        except ImportError:
            raise SharedServiceError(
                "lab mode needs psycopg for the shared PostgreSQL journal; install it with "
                "pip install 'scistack[lab]'"
            ) from None
        self._psycopg = psycopg
        self.url, self.path = url, Path(path)
        self.connect_timeout = connect_timeout
        self.skipped_lines = 0
        self._io = threading.RLock()          # one statement at a time on the connection
        self._thread_lock = threading.RLock()  # locked(): threads of this process
        self._depth = 0                        # ... its depth, in the thread that holds it
        self._owner: int | None = None         # the thread holding (or taking) it: `_held_here`
        self._con: Any = None
        self._lock_session = 0                 # which connection holds the advisory lock
        self._sessions = 0
        self._size, self._size_at = 0, float("-inf")  # (never asked: monotonic() starts near 0 at boot)
        self._locked_size: int | None = None   # the last seq while we hold the lock
        self._unlock_sent = False              # an unlock is on the wire, its answer unread
        self._watch = _Watch(url, psycopg)     # tells the watchdog when the server is silent
        self._forked = _forks[0]               # the fork generation the connection belongs to
        _JOURNALS.add(self)
        self._connect()
        self._ensure_tables()

    # -- connection ----------------------------------------------------------------------
    def _after_fork(self) -> None:
        """In a forked child, at the fork (`_after_fork_in_child`): the connection is its
        parent's session. Closing it (psycopg's `close`, libpq's `PQfinish`) sends Terminate on
        the socket both share, which ends the parent's session and releases its lock; so only
        this process's descriptor of the socket is closed, which sends nothing while the parent
        holds its own (and lets the server see the session end once the parent is gone, where a
        child kept it open), and the connection object is kept, never finished here (psycopg
        finishes a connection it collects only in the process that opened it). Nothing is held
        in the child: the advisory lock is the parent's session's. The thread locks and the
        watch are new: another thread of the parent (the background sync, the watchdog) may
        have held them at the fork, and none of its threads runs here."""
        con, self._con = self._con, None
        if con is not None:
            _INHERITED.append(con)
            try:
                fd = con.pgconn.socket
            except Exception:  # noqa: BLE001 - closed or broken already: no descriptor
                fd = -1
            if fd >= 0:
                try:
                    os.close(fd)
                except OSError:
                    pass
        self._io = threading.RLock()
        self._thread_lock = threading.RLock()
        self._depth, self._owner, self._lock_session = 0, None, 0
        self._locked_size, self._unlock_sent = None, False
        self._watch = _Watch(self.url, self._psycopg)
        self._forked = _forks[0]

    def _connect(self) -> Any:
        """A new session. Once the watchdog found the server silent (the connection it cut is
        still `_con`) a new one gets `PROBE_TIMEOUT`, as the watchdog's probe did, and its
        timeout is reported as the watchdog's finding: the statement cut may be another
        thread's (the background sync's), and the step that came next then waited the full
        `connect_timeout` (10 s) more and failed with "connection timeout expired". Only the
        first reconnect after the cut is short: a server alive but slower than that to accept
        was never reached again by this process."""
        silent = self._stopped()
        cut = self._con
        if silent and getattr(cut, "short_tried", False):
            silent = None  # (once: a live server slower than PROBE_TIMEOUT to accept is waited for)
        timeout = min(self.connect_timeout, PROBE_TIMEOUT) if silent else self.connect_timeout
        if silent:
            cut.short_tried = True
        try:
            self._con = _watched_connection(self._psycopg).connect(
                self.url, autocommit=True, connect_timeout=max(1, int(timeout)),
                **_tcp_settings(self._psycopg, self.url))
        except self._psycopg.OperationalError as exc:
            if silent and _timed_out(self._psycopg, exc):
                raise self._unreachable(silent) from None
            raise SharedServiceError(
                f"cannot reach the shared journal at {redact(self.url)}: {_first_line(exc)}. Check "
                "the URL, that the server is up, and the user's password (in ~/.pgpass or the "
                "PGPASSWORD variable, never in the project); nothing was changed"
            ) from None
        self._sessions += 1
        self._con.watch = self._watch
        _watch_over(self._watch)
        return self._con

    def _connection(self) -> Any:
        if not self._read_unlock():  # the server is silent: no new connection to it now
            raise self._unreachable(self._stopped())
        con = self._con
        if con is None or con.closed or con.broken:
            if self._lock_session and not self._taking_here():
                raise self._lost("the connection dropped while holding the journal lock")
            con = self._connect()
        return con

    def _held_here(self) -> bool:
        """Whether this thread holds `locked()` (another thread's hold is not its own)."""
        return self._depth > 0 and self._owner == threading.get_ident()

    def _taking_here(self) -> bool:
        """Whether this thread is taking the lock (and may connect anew: it holds nothing yet).
        Any other thread meanwhile must not: the lock may be granted already on the session it
        would replace, and the taker then wrote, unlocked, on the new one."""
        return self._lock_session == _TAKING and self._owner == threading.get_ident()

    def _stopped(self) -> str | None:
        """Why the watchdog gave up the connection (None: it did not)."""
        return getattr(self._con, "stopped", None)

    def _unreachable(self, why: str | None) -> SharedServiceError:
        """The server was found silent before this step sent anything."""
        return SharedServiceError(
            f"cannot reach the shared journal at {redact(self.url)}: {why}. Check that the "
            "server is up and retry; nothing was changed")

    def _lost(self, what: str) -> SharedServiceError:
        if self._stopped():  # what was sent may still be applied if the server resumes
            return SharedServiceError(
                f"lost the shared journal at {redact(self.url)}: {self._stopped()}. The names "
                "of this step may or may not be recorded once the server answers again (a batch "
                "is all or nothing); its objects stay in the store. Re-run the step then: a value "
                "saved again unchanged makes no new version"
            )
        return SharedServiceError(
            f"lost the shared journal at {redact(self.url)} ({what}); the names of this step "
            "were not recorded (a batch is all or nothing). Its objects stay in the store and "
            "gc removes them if they stay unnamed. Re-run the step when the server is back"
        )

    def _execute(self, sql: str, args: tuple | list | None = None, *, write: bool = False) -> Any:
        """Run one statement; turn server and permission failures into clear errors."""
        psycopg = self._psycopg
        with self._io:
            failure = ""
            for _ in (0, 1):
                try:
                    return self._connection().execute(sql, args)
                except psycopg.errors.InsufficientPrivilege:
                    raise self._denied() from None
                except psycopg.OperationalError as exc:
                    failure = self._stopped() or _first_line(exc)
                except SharedServiceError as exc:  # could not reconnect
                    failure = str(exc).split(": ", 1)[-1].split(". Check", 1)[0]
                    break
                con = self._con
                if self._held_here() or self._stopped() or not (con is None or con.closed or con.broken):
                    break
                # a session the server dropped (a restart) held nothing: one fresh try
            if write or self._held_here():
                raise self._lost(failure) from None
            raise SharedServiceError(
                f"the shared journal at {redact(self.url)} failed: {failure}. Check that the "
                "server is up and retry; nothing was changed"
            ) from None

    @contextmanager
    def _transaction(self) -> Iterator[None]:
        """A transaction of settings or tables. Its BEGIN and COMMIT are statements too: a
        server lost as they were sent raised psycopg's own OperationalError, not a clear error
        (what it held is rolled back by the server, or was committed: said as for a batch)."""
        psycopg = self._psycopg
        try:
            with self._connection().transaction():
                yield
        except psycopg.errors.InsufficientPrivilege:
            raise self._denied() from None
        except psycopg.OperationalError as exc:
            raise self._lost(self._stopped() or _first_line(exc)) from None

    def _denied(self) -> SharedAccessError:
        try:
            self._read_unlock()
            role = self._con.execute("SELECT current_user").fetchone()[0]
        except Exception:  # noqa: BLE001 - the role is only for the message
            role = urlsplit(self.url).username or "?"
        return SharedAccessError(
            f"the PostgreSQL role {role!r} may not write the shared journal of "
            f"{redact(self.url)}; nothing was saved. Ask the lab's database admin to GRANT "
            f"INSERT ON {TABLE} (and USAGE on its sequence) to {role}, or save with a writing role"
        )

    def _ensure_tables(self) -> None:
        """Both tables, created in one transaction: the connection autocommits, and a second
        process that saw the journal table just committed read the settings table before
        the first created it ("relation scistack_meta does not exist")."""
        exists = self._execute("SELECT to_regclass(%s) IS NOT NULL AND to_regclass(%s) IS NOT NULL",
                               (TABLE, META)).fetchone()[0]
        if exists:
            return
        # the journal's lock first, then the connection's: the order of every other step (taken
        # the other way round, a thread holding `locked()` that then asked for `_io` waited
        # for ever on this one, which held `_io` and waited for `locked()`)
        with self.locked(_tables=False), self._io, self._transaction():
            self._execute(f"CREATE TABLE IF NOT EXISTS {TABLE} (seq bigserial PRIMARY KEY, line text NOT NULL)",
                          write=True)
            self._execute(f"CREATE TABLE IF NOT EXISTS {META} (key text PRIMARY KEY, value text NOT NULL)",
                          write=True)

    # -- identity --------------------------------------------------------------------------
    def project_meta(self, defaults: dict[str, str]) -> dict[str, str]:
        """The project's shared settings (id, schema keys), set from `defaults` when new (its
        objects URL is recorded once the bucket answered: `record_project_meta`)."""
        with self.locked():
            rows = dict(self._execute(f"SELECT key, value FROM {META}").fetchall())
            missing = {k: v for k, v in defaults.items() if k not in rows}
            if missing:
                missing.setdefault("project_id", uuid.uuid4().hex)
                with self._io, self._transaction():
                    for key, value in missing.items():
                        if key not in rows:
                            self._execute(f"INSERT INTO {META} VALUES (%s, %s) ON CONFLICT DO NOTHING",
                                          (key, value), write=True)
                rows = dict(self._execute(f"SELECT key, value FROM {META}").fetchall())
        return rows

    def record_project_meta(self, key: str, value: str) -> str | None:
        """Set a shared setting unless one is set already; the value it holds now (another
        machine may have recorded its own first), or None when this role may not write it."""
        try:
            self._execute(f"INSERT INTO {META} VALUES (%s, %s) ON CONFLICT DO NOTHING", (key, value), write=True)
        except SharedAccessError:
            return None
        found = self._execute(f"SELECT value FROM {META} WHERE key = %s", (key,)).fetchone()
        return None if found is None else found[0]

    def read_project_meta(self) -> dict[str, str]:
        """The shared settings as they are now (one query, no lock: read, never changed here)."""
        return dict(self._execute(f"SELECT key, value FROM {META}").fetchall())

    def set_project_meta(self, values: dict[str, str]) -> None:
        """Change shared settings (a schema key added), in one transaction; the caller holds
        `locked()`, so no save of the project interleaves."""
        with self._io, self._transaction():
            for key, value in values.items():
                self._execute(f"INSERT INTO {META} VALUES (%s, %s) "
                              "ON CONFLICT (key) DO UPDATE SET value = EXCLUDED.value", (key, value), write=True)

    # -- the JournalBackend protocol -------------------------------------------------------
    def size(self) -> int:
        """The last committed `seq` (0 when empty): a cheap change detector.

        Outside `locked()` an answer younger than `SIZE_TTL` is reused, so one load's several
        freshness checks cost one round trip (other machines' saves show up that much later);
        under the lock, where versions are numbered, it is always asked. Another thread (the
        background sync) is answered the holder's `_locked_size` too: the holder sets it under
        `_io` just after its commit, before any other statement can read the new rows, so it is
        the committed last `seq`, never behind what any thread has read."""
        if self._depth and self._locked_size is not None:
            return self._locked_size  # read as the lock was taken; only our appends move it
        if not self._depth and time.monotonic() - self._size_at < SIZE_TTL:
            return self._size
        return self.fresh_size()

    def fresh_size(self) -> int:
        """`size()` asked of the server whatever the age of the last answer. A reader whose
        offset is past a reused `size()` has met another process's progress (it synced the
        machine's shared DuckDB file or fold further), not a replaced journal: this is asked
        before concluding the latter, which starts a full rebuild."""
        if self._depth and self._locked_size is not None:
            return self._locked_size
        now = time.monotonic()
        size = int(self._execute(f"SELECT coalesce(max(seq), 0) FROM {TABLE}").fetchone()[0])
        self._seen(size, now)
        return size

    def _seen(self, size: int, now: float) -> None:
        self._size, self._size_at = max(self._size, size), now

    @contextmanager
    def locked(self, *, _tables: bool = True) -> Iterator[None]:
        """Hold the journal exclusively across the lab (re-entrant in a thread). Taken inside
        the try that releases it, which restores the depth it found: a Ctrl-C just after the
        server granted it had left it held by this session, every other writer waiting. Cut
        short while taking it (`_lock_session` still `_TAKING`), it is unlocked at once
        (`force`: a lock not held unlocks to false). A child forked inside it leaves it without
        unlocking, and holds nothing (`_after_fork`)."""
        generation = _forks[0]
        with self._thread_lock:
            entered = self._depth
            try:
                if entered == 0:
                    self._owner = threading.get_ident()  # (before _TAKING: `_taking_here`)
                    self._lock_session = _TAKING
                    if _tables:
                        self._locked_size = self._lock_and_size()
                    else:  # creating the tables: nothing to count yet
                        self._execute("SELECT pg_advisory_lock(%s)", (LOCK_KEY,), write=True)
                    self._lock_session = self._sessions
                self._depth = entered + 1
                yield
            finally:
                if _forks[0] == generation:  # (a forked child holds nothing: its parent does)
                    self._depth = entered
                    if entered == 0:
                        self._locked_size = None
                        self._release(LOCK_KEY, force=self._lock_session == _TAKING)

    def _lock_and_size(self) -> int:
        """Take the lock and read the last `seq` in one round trip (a pipeline: the server
        runs the statements in order, so the size is read with the lock held)."""
        with self._io:
            con = self._connection()
            try:
                with _pipeline(con):
                    con.execute("SELECT pg_advisory_lock(%s)", (LOCK_KEY,))
                    cur = con.execute(f"SELECT coalesce(max(seq), 0) FROM {TABLE}")
                size = int(cur.fetchone()[0])
            except self._psycopg.errors.InsufficientPrivilege:
                self._release(LOCK_KEY, force=True)
                raise self._denied() from None
            except self._psycopg.OperationalError:  # the plain path reconnects or explains
                if self._stopped():  # (a silent server: no new connection either)
                    raise self._lost("") from None
                self._execute("SELECT pg_advisory_lock(%s)", (LOCK_KEY,), write=True)
                size = int(self._execute(f"SELECT coalesce(max(seq), 0) FROM {TABLE}", write=True).fetchone()[0])
        self._seen(size, time.monotonic())
        return size

    def _release(self, key: int, *, force: bool = False) -> None:
        """Unlock. The journal's unlock is sent without waiting for its answer (read before
        the next statement): the server releases the lock when it runs the statement, so
        other writers wait no longer, and a save returns one round trip sooner."""
        session, self._lock_session = self._lock_session, 0
        con = self._con
        if con is None or con.closed or con.broken or (session != self._sessions and not force):
            return  # the server dropped the session, and its lock with it
        with self._io:
            self._read_unlock()
            if key == LOCK_KEY and not force:
                try:
                    pgconn = con.pgconn
                    pgconn.send_query(f"SELECT pg_advisory_unlock({LOCK_KEY})".encode())
                    while pgconn.flush():  # a non-blocking connection: send it all now
                        select.select([], [pgconn.socket], [], 1.0)
                    self._unlock_sent = True
                    return
                except Exception:  # noqa: BLE001 - the plain path below reports nothing either
                    self._unlock_sent = False
            try:
                con.execute("SELECT pg_advisory_unlock(%s)", (key,))
            except self._psycopg.OperationalError:
                pass

    def _read_unlock(self) -> bool:
        """Read the answer of an unlock sent by `_release` (the connection takes one command
        at a time); a dropped connection released the lock with the session. False when the
        server went silent before answering (a save returns before the answer, so a server
        frozen right after a save is first met here): the watchdog cut the wait."""
        if not self._unlock_sent:
            return True
        self._unlock_sent = False
        con = self._con
        if con is None or con.closed or con.broken:
            return True
        try:
            pgconn = con.pgconn
            self._watch.begin(con)  # a silent server has the socket shut down: consume_input raises
            pgconn.consume_input()
            while pgconn.is_busy():
                select.select([pgconn.socket], [], [], 1.0)
                pgconn.consume_input()
            while pgconn.get_result() is not None:
                pass
        except Exception:  # noqa: BLE001 - a silent or broken server: start a new session
            self._watch.end()  # (first: the watchdog must not shut a socket closed below, or reused)
            con.close()  # (the server drops the old one, and any lock it held)
            return con.stopped is None
        finally:
            self._watch.end()
        return True

    def append(self, entries: list[dict[str, Any]]) -> int:
        """Append entries in one transaction, under the lock; returns the new last `seq`."""
        return self.append_lines([dumps_canonical(e) + b"\n" for e in entries])

    def append_lines(self, lines_written: list[bytes]) -> int:
        """`append` of entries already written as canonical JSON lines (each ending in a newline)."""
        if not lines_written:
            return self.size()
        lines = [line.rstrip(b"\n").decode() for line in lines_written]
        psycopg = self._psycopg
        with self.locked(), self._io:
            con = self._connection()
            try:
                if len(lines) == 1:  # a single save: no array to build and unpack
                    last = con.execute(f"INSERT INTO {TABLE} (line) VALUES (%s) RETURNING seq",
                                       (lines[0],)).fetchone()[0]
                elif len(lines) <= 64:  # one statement, so one round trip and its own transaction
                    rows = con.execute(f"INSERT INTO {TABLE} (line) SELECT unnest(%s::text[]) "
                                       "RETURNING seq", (lines,)).fetchall()
                    last = max(r[0] for r in rows)
                else:
                    with con.transaction(), con.cursor() as cur:
                        with cur.copy(f"COPY {TABLE} (line) FROM STDIN") as copy:
                            for line in lines:
                                copy.write_row((line,))
                        cur.execute(f"SELECT max(seq) FROM {TABLE}")
                        last = int(cur.fetchone()[0])
            except psycopg.errors.InsufficientPrivilege:
                raise self._denied() from None
            except psycopg.OperationalError as exc:
                raise self._lost(_first_line(exc)) from None
            self._seen(last, time.monotonic())
            self._locked_size = last
        return last

    def append_with_meta(self, lines_written: list[bytes], meta: dict[str, str], *, seq_key: str) -> int:
        """`append_lines`, with project settings `meta`, and the new last `seq` as `seq_key`, set
        in the same transaction: a copy of another journal (`scistack share`) records how far
        it got with the lines it wrote, so a copy killed half way resumes without writing a line
        twice, and knows whether anyone else has written since."""
        lines = [line.rstrip(b"\n").decode() for line in lines_written]
        psycopg = self._psycopg
        with self.locked(), self._io:
            con = self._connection()
            try:
                with con.transaction(), con.cursor() as cur:
                    if lines:
                        with cur.copy(f"COPY {TABLE} (line) FROM STDIN") as copy:
                            for line in lines:
                                copy.write_row((line,))
                    cur.execute(f"SELECT coalesce(max(seq), 0) FROM {TABLE}")
                    last = int(cur.fetchone()[0])
                    for key, value in {**meta, seq_key: str(last)}.items():
                        cur.execute(f"INSERT INTO {META} VALUES (%s, %s) ON CONFLICT (key) DO UPDATE "
                                    "SET value = excluded.value", (key, value))
            except psycopg.errors.InsufficientPrivilege:
                raise self._denied() from None
            except psycopg.OperationalError as exc:
                raise self._lost(_first_line(exc)) from None
            self._seen(last, time.monotonic())
            self._locked_size = last
        return last

    def append_if(self, entries: list[dict[str, Any]], expected: int) -> int | None:
        """Append entries only if the last `seq` is still `expected`; the new last `seq`, or
        None (nothing written) when another writer appended since, or this thread holds
        `locked()` (the caller then takes the plain path).

        One round trip (a pipeline: BEGIN, the transaction-level advisory lock, a conditional
        INSERT, COMMIT), against three messages and two waits for lock-then-append: the lock
        is the same key as `locked()`'s, so rows still commit in `seq` order, and the INSERT's
        snapshot, taken after the lock, sees every committed line. The lock is held only while
        the server runs the INSERT, never across the client's upload."""
        lines = [dumps_canonical(e).decode() for e in entries]
        psycopg = self._psycopg
        with self._thread_lock, self._io:
            if self._depth or not lines:
                return None
            con = self._connection()
            try:
                with _pipeline(con):
                    con.execute("BEGIN")
                    con.execute("SELECT pg_advisory_xact_lock(%s)", (LOCK_KEY,))
                    cur = con.execute(
                        f"INSERT INTO {TABLE} (line) SELECT unnest(%s::text[]) WHERE "
                        f"(SELECT coalesce(max(seq), 0) FROM {TABLE}) = %s RETURNING seq",
                        (lines, expected))
                    con.execute("COMMIT")
                rows = cur.fetchall()
            except psycopg.errors.InsufficientPrivilege:
                self._rollback(con)
                raise self._denied() from None
            except psycopg.OperationalError as exc:
                self._rollback(con)
                raise self._lost(_first_line(exc)) from None
            except BaseException:
                self._rollback(con)
                raise
        if not rows:
            return None
        last = max(r[0] for r in rows)
        self._seen(last, time.monotonic())
        return last

    def _rollback(self, con: Any) -> None:
        """End a failed pipeline's transaction block (a broken connection ended it already)."""
        try:
            if not (con.closed or con.broken) and con.info.transaction_status != 0:  # not IDLE
                con.execute("ROLLBACK")
        except Exception:  # noqa: BLE001 - the session is dropped and its transaction with it
            pass

    def read_from(self, offset: int, limit: int | None = None, *,
                  containing: tuple[bytes, ...] = ()) -> tuple[list[dict[str, Any]], int]:
        """Entries with `seq > offset`, in order, and the last `seq` read; with `limit` (bytes,
        as the file journal counts), about that many bytes of lines (~300 B a line). With
        `containing`, only lines holding one of those strings are parsed (as the file journal)."""
        needles = tuple(n.decode("utf-8") for n in containing)
        if limit is None:
            rows = self._execute(f"SELECT seq, line FROM {TABLE} WHERE seq > %s ORDER BY seq", (offset,)).fetchall()
        else:
            rows = self._execute(f"SELECT seq, line FROM {TABLE} WHERE seq > %s ORDER BY seq LIMIT %s",
                                 (offset, max(1, limit // 300))).fetchall()
        entries = []
        decode = _DECODER.decode
        for _, line in rows:
            if needles and not any(needle in line for needle in needles):
                continue
            try:
                entry = decode(line)
                if has_surrogate_escape(line):  # (a lone surrogate: `texts_escaped`)
                    entry = texts_escaped(entry)
            except ValueError:
                self.skipped_lines += 1
                continue
            if entry_problem(entry) is None:
                entries.append(entry)
            else:
                self.skipped_lines += 1
        return entries, (rows[-1][0] if rows else offset)

    def close(self) -> None:
        """Close the connection (the server releases any lock it held)."""
        with self._io:
            if self._con is not None:
                self._read_unlock()
                self._con.close()
                self._con = None
        _unwatch(self._watch)


def _timed_out(psycopg: Any, exc: BaseException) -> bool:
    """A connection attempt that got no answer (not a refusal, which shows the server alive)."""
    return isinstance(exc, getattr(psycopg.errors, "ConnectionTimeout", ())) or "timeout expired" in str(exc)


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__


_QUIET = threading.local()  # .on: this thread is in a journal's pipeline


class _QuietPipelineEnd(logging.Filter):
    """Drop psycopg's warning that ending a pipeline failed ("error ignored terminating
    <psycopg.Pipeline [BAD]>"), printed on stderr when the connection is lost in one: the
    statement's own error is raised, and the journal explains it; the scientist sees only that."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not (getattr(_QUIET, "on", False) and str(record.msg).startswith("error ignored"))


logging.getLogger("psycopg").addFilter(_QuietPipelineEnd())


@contextmanager
def _pipeline(con: Any) -> Iterator[None]:
    """`con.pipeline()`, its end's second error unlogged (`_QuietPipelineEnd`)."""
    try:  # (marked inside: a Ctrl-C just before the try had left this thread's warnings unlogged)
        _QUIET.on = True
        with con.pipeline():
            yield
    finally:
        _QUIET.on = False


def _tcp_settings(psycopg: Any, url: str) -> dict[str, int]:
    """Keepalives and tcp_user_timeout, unless the URL sets its own: they drop a connection
    to a partitioned server while idle or sending (not a frozen one: its kernel answers)."""
    settings = dict(KEEPALIVES)
    if psycopg.pq.version() >= 120000:
        settings["tcp_user_timeout"] = TCP_USER_TIMEOUT
    given = psycopg.conninfo.conninfo_to_dict(url)
    return {k: v for k, v in settings.items() if k not in given}


_WATCHED_CLASS: Any = None


def _watched_connection(psycopg: Any) -> Any:
    """psycopg's Connection, telling its `_Watch` when it waits for the server: every
    statement, pipeline, COPY and transaction waits through `Connection.wait`."""
    global _WATCHED_CLASS
    if _WATCHED_CLASS is None:
        class WatchedConnection(psycopg.Connection):
            watch: _Watch | None = None
            stopped: str | None = None  # why the watchdog shut its socket down
            short_tried = False  # a reconnect with PROBE_TIMEOUT was tried after the cut

            def wait(self, *args: Any, **kwargs: Any) -> Any:
                watch = self.watch
                if watch is None:
                    return super().wait(*args, **kwargs)
                watch.waiting = (time.monotonic(), self)
                try:
                    return super().wait(*args, **kwargs)
                finally:
                    watch.end()

        _WATCHED_CLASS = WatchedConnection
    return _WATCHED_CLASS


class _Watch:
    """One journal's connection as the watchdog sees it: `waiting` is (since, connection)
    while the server has not answered, None otherwise."""

    def __init__(self, url: str, psycopg: Any) -> None:
        self.url, self._psycopg = url, psycopg
        self.waiting: tuple[float, Any] | None = None
        self._lock = threading.Lock()  # the wait cannot end (nor its socket close) while cut

    def begin(self, con: Any) -> None:
        self.waiting = (time.monotonic(), con)

    def end(self) -> None:
        with self._lock:
            self.waiting = None

    def check(self, waiting: tuple[float, Any]) -> None:
        """Probe the server of a wait silent for `SILENCE`; cut the wait if it is silent too."""
        alive = self._answers()
        with self._lock:
            if self.waiting is not waiting:
                return  # answered meanwhile
            if alive:
                self.waiting = (time.monotonic(), waiting[1])  # probe again in SILENCE
                return
            con = waiting[1]
            con.stopped = (f"it stopped answering (nothing for {SILENCE:g} s, and a new connection "
                            f"got no answer in {PROBE_TIMEOUT} s: the server is frozen or unreachable)")
            try:  # the waiting statement sees the connection closed (an OperationalError)
                sock = socket.socket(fileno=con.pgconn.socket)
                try:
                    sock.shutdown(socket.SHUT_RDWR)
                finally:
                    sock.detach()  # the connection still owns the descriptor
            except Exception:  # noqa: BLE001 - already closed
                pass

    def _answers(self) -> bool:
        """Whether the server answers a new connection: any answer, even a refusal (too many
        clients), shows it alive; only silence until the timeout does not."""
        psycopg = self._psycopg
        try:
            psycopg.connect(self.url, connect_timeout=PROBE_TIMEOUT).close()
        except psycopg.OperationalError as exc:
            return not _timed_out(psycopg, exc)
        except Exception:  # noqa: BLE001 - answered, oddly
            pass
        return True


_WATCHES: weakref.WeakSet[_Watch] = weakref.WeakSet()
_WATCHES_LOCK = threading.Lock()
_WATCHDOG: threading.Thread | None = None


def _watch_over(watch: _Watch) -> None:
    """Register `watch`; one watchdog thread serves every journal of the process, and runs
    only while one is open (none is started per statement)."""
    global _WATCHDOG
    with _WATCHES_LOCK:
        _WATCHES.add(watch)
        if _WATCHDOG is None or not _WATCHDOG.is_alive():  # (not alive: in a forked child)
            _WATCHDOG = threading.Thread(target=_watchdog, name="scistack-journal-watchdog", daemon=True)
            _WATCHDOG.start()


def _unwatch(watch: _Watch) -> None:
    with _WATCHES_LOCK:
        _WATCHES.discard(watch)


def _watchdog() -> None:
    global _WATCHDOG
    while True:
        time.sleep(SILENCE / 4)
        with _WATCHES_LOCK:
            if not _WATCHES:
                _WATCHDOG = None
                return
            watches = list(_WATCHES)
        now = time.monotonic()
        for watch in watches:
            waiting = watch.waiting
            if waiting is not None and now - waiting[0] >= SILENCE:
                watch.check(waiting)


# How many times this process's line has forked, and the journals open in it: at a fork each
# of the child's journals drops its parent's connection (`PostgresJournal._after_fork`), and
# the watchdog's state starts afresh (its thread does not run in the child, and may have held
# the lock of its set). Connections given up so are kept here: never finished in the child.
_forks = [0]
_JOURNALS: weakref.WeakSet[PostgresJournal] = weakref.WeakSet()
_INHERITED: list[Any] = []


def _after_fork_in_child() -> None:
    global _WATCHES, _WATCHES_LOCK, _WATCHDOG
    _forks[0] += 1
    _WATCHES, _WATCHES_LOCK, _WATCHDOG = weakref.WeakSet(), threading.Lock(), None
    for journal in list(_JOURNALS):
        journal._after_fork()


if hasattr(os, "register_at_fork"):  # (no fork, no need: Windows)
    os.register_at_fork(after_in_child=_after_fork_in_child)
