"""The ref journal: `.scistack/refs.log`, an append-only log of every change of a name.

Why a journal in front of DuckDB: DuckDB lets one process at a time hold the file, costs
~14 ms to open and ~0.3 ms a statement, and a user's DuckDB CLI or DBeaver may hold it for
minutes. Appending one line under `flock` costs microseconds, never waits for those tools,
and survives a killed process as soon as `write` returns. DuckDB is then kept in step with
the journal in batches (see `sql.py`), and readers without DuckDB (MATLAB) fold the journal
themselves. Format: docs/format.md §2.

Hazards: `flock` excludes other *processes* only, so an in-process lock guards threads too.
A line torn by a crash mid-write has no final newline; the next writer terminates it and
every reader skips lines that do not parse. An append that meets a full disk is taken back
(truncated) after part of it may have been written: readers never wait for the lock (a writer
holding it may itself wait for the fold a reader is writing), so while a writer holds it they
read only up to the end it published in the lock file (`_reading`). A forked child (the
`multiprocessing` fork start method, a user's `os.fork`) shares its parent's open file
descriptions, and a `flock` belongs to the description: the child's unlock would release the
parent's lock, and the child's "exclusive" lock would be granted at once beside the parent's.
So a child opens its own descriptors at its first use of the journal, and a `locked()` or
read it inherited half way (forked inside it) ends without unlocking (`_forks`).
"""

from __future__ import annotations

import fcntl
import json
import os
import threading
import time
import zlib
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager
from pathlib import Path
from typing import Any, Protocol

import orjson

from scistack.address import has_surrogate_escape, is_text
from scistack.errors import storage_full
from scistack.objects.canonical_json import dumps_canonical, maybe_big_int


_DECODER = json.JSONDecoder()

# How many times this process's line has forked: a child must not use its parent's lock and
# read descriptors (see the module's docstring). A counter, not os.getpid(): `size()` checks it
# before every read.
_forks = [0]
if hasattr(os, "register_at_fork"):  # (no fork, no need: Windows)
    os.register_at_fork(after_in_child=lambda: _forks.__setitem__(0, _forks[0] + 1))


def loads_line(line: bytes, *, may_be_big: bool = True) -> Any:
    """One journal line parsed: by orjson (~2.5x faster: a sync of 100k entries spent ~1 s
    here), and by `json` whatever orjson refuses (invalid UTF-8 read as with "replace", NaN)
    or would read differently (integers beyond 64 bits), so every line means what it always did.
    `may_be_big=False`: the caller has seen no 19-digit run in a text holding this line."""
    entry = None
    if not (may_be_big and maybe_big_int(line)):
        try:
            entry = orjson.loads(line)
        except orjson.JSONDecodeError:
            pass
    if entry is None:
        entry = _DECODER.decode(line.decode("utf-8", "replace"))
    return texts_escaped(entry) if has_surrogate_escape(line) else entry


def texts_escaped(tree: Any) -> Any:
    """`tree` (a parsed journal line that has a `\\ud...` escape) with each lone surrogate of
    its texts written as that escape (`caf\\udce9`: a backslash, then `udce9`). Saves refuse
    such text (`address.is_text`: a non-UTF-8 file name's byte as Python reads it), but a
    journal written before may hold it, and neither SQLite, DuckDB nor Arrow takes it: one such
    line made every process fail to open the project. Read so, the line means one thing to
    every reader (fold, SQL views, loads), and the address can be typed. Valid escapes (a
    pair for a character beyond the BMP) are text, and stay as they are."""
    if type(tree) is str:
        return tree if is_text(tree) else tree.encode("utf-8", "backslashreplace").decode("utf-8")
    if type(tree) is list:
        return [texts_escaped(v) for v in tree]
    if type(tree) is dict:
        return {texts_escaped(k): texts_escaped(v) for k, v in tree.items()}
    return tree


_SHAPES: dict[str, dict[str, type | tuple[type, ...]]] = {
    "put": {"var": str, "addr": dict, "version": int, "oid": str, "kind": str, "t": str},
    "del": {"var": str, "addr": dict, "version": int},
    "call": {"key": str, "call": str},
    "uncall": {"key": str, "call": str},
    "run": {},
}
_OPTIONAL: dict[str, type | tuple[type, ...]] = {
    "vkeys": dict, "params": dict, "call": (str, type(None)), "summary": (str, type(None)),
    "outs": list, "multi": bool, "fn": (str, type(None)), "origins": (str, type(None)),
}


def entry_problem(entry: Any) -> str | None:
    """Why a parsed journal line is not a valid entry (None when it is). Other writers (MATLAB,
    a buggy script) append to the journal too: a wrong-shaped line is skipped and reported,
    never allowed to stop every reader."""
    if type(entry) is dict and entry.get("op") == "put" and _good_put(entry):
        return None  # the common case, checked without a loop (a sync reads 100k of them)
    if not isinstance(entry, dict):
        return f"a {type(entry).__name__}, not an object"
    op = entry.get("op")
    if not isinstance(op, str) or op not in _SHAPES:  # (a list is unhashable: no `in` first)
        return f"unknown op {op!r}"[:80]
    for name, kind in _SHAPES[op].items():
        if name not in entry:
            return f"{op} without {name!r}"
        if not isinstance(entry[name], kind) or (kind is int and isinstance(entry[name], bool)):
            return f"{op} with {name!r} of type {type(entry[name]).__name__}"
    if op in ("put", "call"):
        for name, kind in _OPTIONAL.items():
            if name in entry and not isinstance(entry[name], kind) and not (name == "call" and op == "call"):
                return f"{op} with {name!r} of type {type(entry[name]).__name__}"
    return None


def _good_put(e: dict[str, Any], _str: type = str, _dict: type = dict, _none: None = None) -> bool:
    """`_SHAPES["put"]` and `_OPTIONAL` for a put whose fields have exactly their types (a
    subclass, or anything else, is left to the general check)."""
    return (type(e.get("var")) is _str and type(e.get("addr")) is _dict and type(e.get("version")) is int
            and type(e.get("oid")) is _str and type(e.get("kind")) is _str and type(e.get("t")) is _str
            and type(e.get("vkeys", {})) is _dict and type(e.get("params", {})) is _dict
            and (e.get("call") is _none or type(e["call"]) is _str)
            and (e.get("summary") is _none or type(e["summary"]) is _str)
            and type(e.get("outs", [])) is list and type(e.get("multi", False)) is bool
            and (e.get("fn") is _none or type(e["fn"]) is _str))


class JournalBackend(Protocol):
    """What the index needs of a journal: an append-only sequence of entries addressed by
    byte offset, with an exclusive lock for read-then-append. `Journal` (a local file) is one;
    a shared database table can be another (lab mode), with no change above the index."""

    path: Path            # named in messages; derived files (the fold) live beside it
    skipped_lines: int    # lines read so far that did not parse

    def size(self) -> int: ...
    # optional: `fresh_size() -> int`, `size()` never reused from an earlier answer (see `size_now`)
    def locked(self) -> AbstractContextManager[None]: ...
    def append(self, entries: list[dict[str, Any]]) -> int: ...
    # optional: `append_lines(lines: list[bytes]) -> int`, the same for entries the caller has
    # already written as canonical lines (each ending in a newline): a batch writes them once
    def read_from(self, offset: int, limit: int | None = None, *,
                  containing: tuple[bytes, ...] = ()) -> tuple[list[dict[str, Any]], int]: ...
    def close(self) -> None: ...


def size_now(journal: JournalBackend) -> int:
    """The journal's size asked afresh: a backend's `size()` may reuse an answer a little old
    (lab mode), which must not make a reader ahead of it conclude the journal was replaced."""
    fresh = getattr(journal, "fresh_size", None)
    return journal.size() if fresh is None else fresh()


class Journal:
    """Append and tail `refs.log`; `locked()` makes read-then-append atomic across processes."""

    def __init__(self, path: str | os.PathLike, *, fsync: bool = False) -> None:
        self.path = Path(path)
        self.lock_path = self.path.with_name(self.path.stem + ".lock")
        self.fsync = fsync
        self._thread_lock = threading.RLock()
        self._lock_fd: int | None = None
        self._size_fd: int | None = None
        self._depth = 0
        self._owner: int | None = None  # the thread that holds `locked()`
        self._read_lock = threading.Lock()  # `_reading`: a thread of this process at a time
        self._read_fd: int | None = None    # ... on a descriptor of its own (flock is per one)
        self._published: tuple[int, int] | None = None  # (end, inode) this process published last
        self._forked = _forks[0]  # the fork generation these descriptors and locks belong to
        self.skipped_lines = 0

    def _after_fork(self) -> None:
        """In a forked child, at its first use of the journal: the parent's descriptors are
        closed (only in this process: a `flock` lasts while any descriptor of its description is
        open, so the parent keeps its lock) and the child's own are opened when next needed.
        The thread locks are new: another thread of the parent may have held them at the fork,
        and never releases them here. Nothing is held in the child: a `locked()` it inherited
        half way ends without unlocking (the lock is its parent's)."""
        for fd in (self._lock_fd, self._size_fd, self._read_fd):
            if fd is not None:
                try:
                    os.close(fd)
                except OSError:
                    pass
        self._lock_fd = self._size_fd = self._read_fd = None
        self._thread_lock = threading.RLock()
        self._read_lock = threading.Lock()
        self._depth, self._owner, self._published = 0, None, None
        self._forked = _forks[0]

    def size(self) -> int:
        """Bytes in the journal (0 when it does not exist yet): a cheap change detector, asked
        before every read. An `fstat` of a descriptor kept open costs half a path `stat`; a
        journal replaced or removed since (no link left) is looked up by name again."""
        if self._forked != _forks[0]:
            self._after_fork()
        fd = self._size_fd
        if fd is not None:
            found = os.fstat(fd)
            if found.st_nlink:
                return found.st_size
        with self._thread_lock:
            if self._size_fd is not None:
                os.close(self._size_fd)
                self._size_fd = None
            try:
                self._size_fd = os.open(self.path, os.O_RDONLY)
            except FileNotFoundError:
                return 0
            return os.fstat(self._size_fd).st_size

    @contextmanager
    def locked(self) -> Iterator[None]:
        """Hold the journal exclusively (threads and processes); re-entrant in a thread. Taken
        inside the try that releases it, which restores the depth it found: a Ctrl-C just after
        the flock had left every other process's saves waiting on this one. A child forked
        inside it leaves it without unlocking (the parent's lock: see `_after_fork`)."""
        if self._forked != _forks[0]:
            self._after_fork()
        generation = _forks[0]
        with self._thread_lock:
            entered = self._depth
            try:
                if entered == 0:
                    if self._lock_fd is None:
                        self._lock_fd = os.open(self.lock_path, os.O_RDWR | os.O_CREAT, 0o644)
                    fcntl.flock(self._lock_fd, fcntl.LOCK_EX)
                    self._owner = threading.get_ident()
                    self.size()  # (the descriptor kept open, for the file as it is named now)
                    if self._size_fd is not None:  # a writer that does not publish may have come
                        self._publish(self._lock_fd, os.fstat(self._size_fd))
                self._depth = entered + 1
                yield
            finally:
                if _forks[0] == generation:  # (a forked child holds nothing: its parent does)
                    self._depth = entered
                    if entered == 0:
                        self._owner = None
                        if self._lock_fd is not None:
                            fcntl.flock(self._lock_fd, fcntl.LOCK_UN)

    def append(self, entries: list[dict[str, Any]]) -> int:
        """Append entries as canonical JSON lines; returns the new journal size."""
        return self.append_lines([dumps_canonical(e) + b"\n" for e in entries])

    def append_lines(self, lines: list[bytes]) -> int:
        """Append entries already written as canonical JSON lines, each ending in a newline
        (a batch keeps them to fold its own lines: writing 100k twice cost ~0.3 s)."""
        if not lines:
            return self.size()
        data = b"".join(lines)
        with self.locked():
            fd = os.open(self.path, os.O_RDWR | os.O_APPEND | os.O_CREAT, 0o644)
            before = -1
            try:
                before = os.fstat(fd).st_size
                if not _ends_with_newline(fd):
                    data = b"\n" + data  # terminate a line torn by a crashed writer
                _write_all(fd, data)
                if self.fsync:
                    os.fsync(fd)
                found = os.fstat(fd)
                if self._lock_fd is not None:
                    self._publish(self._lock_fd, found)  # readers may now take it, before we return
                return found.st_size
            except OSError as exc:
                full = storage_full(exc, f"the journal {self.path}")
                if full is None:
                    raise
                if before >= 0:  # we hold the lock: drop our partial line (shrinking needs no space)
                    os.ftruncate(fd, before)
                raise full from None
            finally:
                os.close(fd)

    def read_from(self, offset: int, limit: int | None = None, *,
                  containing: tuple[bytes, ...] = ()) -> tuple[list[dict[str, Any]], int]:
        """Complete entries after byte `offset`, and the offset just past the last of them;
        with `limit`, about that many bytes of lines (at least one line), so a long journal
        is folded in bounded memory. With `containing`, only the lines holding one of those
        byte strings are parsed (the others are neither returned nor counted as skipped)."""
        data, end = self.read_lines(offset, limit)
        lines = data.split(b"\n")
        if containing:
            lines = [line for line in lines if any(needle in line for needle in containing)]
        return self.parse_lines(lines, may_be_big=maybe_big_int(data)), end

    def read_lines(self, offset: int, limit: int | None = None) -> tuple[bytes, int]:
        """The bytes of the complete lines after byte `offset` (each ending in a newline), and
        the offset just past them; `limit` as in `read_from`. The DuckDB sync hands most of
        them to DuckDB unparsed (`index/simple_puts.py`)."""
        try:
            with self._reading() as whole, open(self.path, "rb") as handle:
                room = -1  # (bytes it may read: -1 to the end)
                if not whole:  # a writer holds the journal: to the end it published (none: no further)
                    stop = self._published_end(os.fstat(handle.fileno()).st_ino)
                    room = 0 if stop is None else max(stop - offset, 0)
                handle.seek(offset)
                data = handle.read(room if limit is None else limit if room < 0 else min(limit, room))
                if limit is not None and len(data) == limit and b"\n" not in data:
                    data += handle.readline(room - len(data) if room >= 0 else -1)  # one line over the limit
        except FileNotFoundError:
            return b"", 0
        end = data.rfind(b"\n") + 1
        return data[:end], offset + end

    @contextmanager
    def _reading(self) -> Iterator[bool]:
        """Around a read of new bytes: whether it may read to the journal's end (True), or only
        to the end published by a writer holding the journal (False): an append that meets a
        full disk is truncated away, and its complete lines must never be folded. Never waits
        for a writer (one holding the journal may wait for the fold its reader is writing):
        a shared lock taken without waiting keeps writers out for the read; the writer that
        holds the journal publishes the end of what is complete (`_publish`). A child forked
        during the read leaves it without unlocking (the shared lock is its parent's)."""
        if self._forked != _forks[0]:
            self._after_fork()
        generation = _forks[0]
        if self._depth and self._owner == threading.get_ident():
            yield True  # this thread holds the journal: no append of its is under way
            return
        with self._read_lock:
            try:
                if self._read_fd is None:
                    self._read_fd = os.open(self.lock_path, os.O_RDONLY)
            except OSError:  # no lock file: no writer has come (or one that cannot lock it)
                yield True
                return
            try:
                fcntl.flock(self._read_fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
            except BlockingIOError:
                yield False
                return
            try:
                yield True
            finally:
                if _forks[0] == generation:
                    fcntl.flock(self._read_fd, fcntl.LOCK_UN)

    def _publish(self, lock_fd: int, found: os.stat_result) -> None:
        """Write into the lock file where the complete journal ends (`found`: its size and
        file), for readers while we hold it: under the lock, with no append of ours under way.
        Skipped when it is what this process wrote last: every end published since would be
        past it (the journal only grows; a taken-back append publishes nothing)."""
        if (found.st_size, found.st_ino) == self._published:
            return
        record = b"%020d %020d" % (found.st_size, found.st_ino)
        try:
            os.pwrite(lock_fd, record + b" %08x\n" % zlib.crc32(record), 0)
        except OSError:  # no room even for this: readers keep an older end (or none)
            self._published = None
        else:
            self._published = (found.st_size, found.st_ino)

    def _published_end(self, inode: int) -> int | None:
        """The end `_publish` wrote for the journal file `inode`; None (read nothing new) when
        there is none for it, or it was being rewritten as read (its checksum fails)."""
        assert self._read_fd is not None
        fields = os.pread(self._read_fd, 64, 0).split()
        try:
            end, written_for, check = int(fields[0]), int(fields[1]), int(fields[2], 16)
        except (IndexError, ValueError):
            return None
        if written_for != inode or zlib.crc32(b" ".join(fields[:2])) != check:
            return None
        return end

    def parse_lines(self, lines: list[bytes], *, may_be_big: bool = True) -> list[dict[str, Any]]:
        """The valid entries among `lines`, in order; a line that does not parse, or is not a
        valid entry, is skipped and counted. `may_be_big` as in `loads_line` (the caller
        checks a whole slice at once: per line it cost ~0.1 s per 100k)."""
        entries = []
        for line in lines:
            if not line or line.isspace():
                continue  # (a quarantined line is blanked in place)
            try:
                entry = loads_line(line, may_be_big=may_be_big)
            except ValueError:
                self.skipped_lines += 1  # a torn line, terminated by the next writer
                continue
            if entry_problem(entry) is None:
                entries.append(entry)
            else:
                self.skipped_lines += 1  # valid JSON of the wrong shape (fsck names the line)
        return entries

    def quarantine(self, numbers: set[int], is_bad: Any) -> list[tuple[int, str]]:
        """Move the lines `numbers` (1-based) that `is_bad(line)` still judges bad to
        `<journal>.quarantine` (kept, as JSON lines), and blank them in place: each byte but
        the newline becomes a newline, so every reader (Python, MATLAB) skips empty lines and
        no other line's byte offset moves. Returns (number, text) of the lines moved."""
        moved: list[tuple[int, str]] = []
        with self.locked():
            data = self.path.read_bytes()
            complete = data[: data.rfind(b"\n") + 1]
            start, spans = 0, []
            for number, line in enumerate(complete.split(b"\n")[:-1], start=1):
                if number in numbers and line.strip() and is_bad(line):
                    spans.append((number, start, line))
                start += len(line) + 1
            if not spans:
                return moved
            side = self.path.with_name(self.path.name + ".quarantine")
            with open(side, "ab") as out:  # kept first: a crash after this loses nothing
                for number, _, line in spans:
                    out.write(dumps_canonical({"line": number, "text": line.decode("utf-8", "replace"),
                                               "t": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}) + b"\n")
                out.flush()
                os.fsync(out.fileno())
            fd = os.open(self.path, os.O_WRONLY)
            try:
                for number, offset, line in spans:
                    os.pwrite(fd, b"\n" * len(line), offset)
                    moved.append((number, line.decode("utf-8", "replace")))
                os.fsync(fd)
            finally:
                os.close(fd)
        return moved

    def close(self) -> None:
        """Release the file descriptors."""
        if self._forked != _forks[0]:
            self._after_fork()  # (a child's inherited descriptors: closed there)
        with self._thread_lock:
            if self._lock_fd is not None:
                os.close(self._lock_fd)
                self._lock_fd = None
                self._published = None
            with self._read_lock:
                if self._read_fd is not None:
                    os.close(self._read_fd)
                    self._read_fd = None
            if self._size_fd is not None:
                os.close(self._size_fd)
                self._size_fd = None


def _ends_with_newline(fd: int) -> bool:
    size = os.fstat(fd).st_size
    return size == 0 or os.pread(fd, 1, size - 1) == b"\n"


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        written = os.write(fd, view)
        view = view[written:]
