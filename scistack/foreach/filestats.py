"""The project's memo of files (`FileStats`, `.scistack/output-stats.json`): per file, the stat
(size, mtime, inode, ctime) it had when its content was last hashed, with that content's oid
(as a `bytes` value), so that a file whose whole stat is the one remembered is not read again
in a new process. `content_oid` is the one way a file's content is keyed (stat, the memos,
else a hash, remembered): `paths.file_oid` for a `PathInput`'s raw file (what `for_each`,
`status`, `why` and an export ask), `FileStats.holds` for a cached call's `PathOutput` file.

Every run in a new process hashed each raw file a `PathInput` names whole to key its calls
(the hash memo lasted one process): a rerun of a pipeline over 100 GB of recordings read
100 GB before finding every call cached, and so did every `scistack status`. A fully cached
`for_each` rerun checks every written file that is still on disk (`_Run._files_put_back`):
hashing each whole in every new process had made a rerun of 16 files of 64 MB take 2-3 s
instead of 0.01 s. A file whose whole stat is the one remembered has the remembered content
(as git's index judges a worktree file; the ctime, which no copy can set, is in the stat);
any other is hashed and remembered anew. A stat taken within 2 s of the file's mtime or
ctime is *racy* (`codeid.files.racy_stat`: a rewrite of the same size in the same timestamp
tick, or through a still-dirty mapped page, keeps it): it is not remembered, so a file just
written is hashed again on its next use, and judged by its stat from then on. A file of
another size than the content the memo names with the expected oid holds other bytes: no
hash. This process's own memo (`_hashes`) keeps the same, without the file.

It also keeps ("inputs") the file inputs of call records this process verified by a stat no
longer racy (`codeid.files.verified_stats`: path -> stat and blake3), taken back at a run's
start (`trust_inputs`): a record written racy (its file read within 2 s of its last change)
is never trusted by its own stat, and each new process had hashed its file again at its
first hit, for ever; verified once, it is judged by its stat from then on.

The memo is a convenience, never a source of truth: a missing, unreadable or damaged memo
file costs hashes only; processes saving theirs at once may lose one's new entries (the
next run hashes those files again). A read-only project reads it and writes nothing.
"""

from __future__ import annotations

import contextlib
import errno
import itertools
import json
import os
import secrets
import stat
import time
import weakref
from collections.abc import Callable
from pathlib import Path
from typing import Any

import blake3
import orjson

from scistack.gcpause import paused
from scistack.codeid.files import racy_stat, stat_stamp, trust_verified, verified_stats  # (git's rule, as file inputs judge stats)
from scistack.objects.hashing import object_header

MEMO_NAME = "output-stats.json"
_VERSION = 1
_MAX_ENTRIES = 100_000  # (the oldest are dropped beyond: they cost a hash each, nothing more)
_BLOCK = 1 << 20
_MEMO_SIZE = 1 << 18
# this process's memo: (path, size, mtime_ns, inode, ctime_ns) -> the oid of its content
_hashes: dict[tuple[str, int, int, int, int], str] = {}
_TRIES = 3  # hashes of a file whose size changes while it is read, before it is refused


class FileStats:
    """The project's memo of its raw and written files' stats (`.scistack/output-stats.json`),
    read at its first use in a run and saved by `save` at the run's end with what the run hashed."""

    def __init__(self, scistack_dir: Path, read_only: bool = False) -> None:
        self.path = Path(scistack_dir) / MEMO_NAME
        self.read_only = read_only
        self._entries: dict[str, list] | None = None
        self._new: dict[str, list] = {}
        self._inputs: dict[str, list] | None = None  # file inputs' verifications, as read (`trust_inputs`)
        self._trusted = False
        # the memo file's stat when this process read or wrote it: a save finding it so
        # writes what it holds without reading the file again (no other process saved since)
        self._seen: list[int] | None = None

    def holds(self, path: str, oid: str) -> bool:
        """Whether the file at `path` holds exactly the bytes whose oid (as a `bytes` value)
        is `oid`. Raises OSError when it cannot be stat'ed or read (a link to nothing, an
        unreadable file); False for a folder or other non-file."""
        now_ns = time.time_ns()  # (before the stat: a write after it shows as a later mtime)
        st = os.stat(path)
        entry = self._entry(path)
        if (entry is not None and entry[4] == oid and entry[0] != st.st_size
                and stat.S_ISREG(st.st_mode)):
            return False  # (an oid names one length: the file's is another)
        return _content_oid_at(path, st, now_ns, self) == oid

    def known(self, path: str, st: os.stat_result) -> str | None:
        """The oid of the content of the file at `path` whose stat is `st`, if the memo vouches
        for it (that whole stat remembered, not racy when it was), else None."""
        entry = self._entry(path)
        return entry[4] if entry is not None and entry[:4] == [*stat_stamp(st)] else None

    def _put(self, path: str, entry: list) -> None:
        """Remember `entry` for `path`, as the newest (the last dropped beyond `_MAX_ENTRIES`)."""
        self._entries.pop(path, None)  # type: ignore[union-attr]
        self._entries[path] = self._new[path] = entry  # type: ignore[index]

    def trust_inputs(self) -> None:
        """Take the verifications of call records' file inputs an earlier run kept
        (`codeid.files.trust_verified`): a record written racy (its file read within 2 s of its
        last change) is checked by its content, and a new process had hashed each such file
        again at its first hit, for ever; verified once by a stat no longer racy, it is
        judged by that stat from then on (git's promotion of a racily clean entry)."""
        if not self._trusted:
            self._trusted = True
            self._load()
            trust_verified(self._inputs)  # type: ignore[arg-type]

    def _load(self) -> None:
        """Read the memo file, both its parts at once (its stat, `_seen`, vouches for both)."""
        if self._entries is None or self._inputs is None:
            self._entries, self._inputs, self._seen = _read(self.path)

    def _entry(self, path: str) -> list | None:
        self._load()
        entry = self._entries.get(path)  # type: ignore[union-attr]
        if (isinstance(entry, list) and len(entry) == 5 and all(type(v) is int for v in entry[:4])
                and isinstance(entry[4], str)):
            return entry
        return None

    def save(self) -> None:
        """Add what this run hashed to the memo file, at most `_MAX_ENTRIES`, the newest kept;
        never fails the run. With them the file inputs this process verified that the memo did
        not hold yet. The file is read again first only when another process saved since this
        one read it (its stat moved): a save had read and parsed the whole file and written it
        with `json` (100,000 files, 19 MB: 0.8 s to add one entry)."""
        known = self._inputs or {}
        verified = {path: entry for path, entry in verified_stats().items() if known.get(path) != entry}
        # (this process's verifications since the last save: of this run's hits, mostly)
        if not self._new and not verified or self.read_only:
            return
        if self._entries is None or self._inputs is None or self._seen is None or _stat_of(self.path) != self._seen:
            entries, inputs, _ = _read(self.path)
            news = ((entries, self._new), (inputs, verified))
        else:  # (what this process holds is the file's, with its own new entries: `_put`)
            entries, inputs = self._entries, self._inputs
            news = ((inputs, verified),)
        for kept, new in news:
            for path, entry in new.items():
                kept.pop(path, None)  # (re-inserted last: the newest)
                kept[path] = entry
        for kept in (entries, inputs):
            for path in list(itertools.islice(kept, max(0, len(kept) - _MAX_ENTRIES))):
                del kept[path]  # (the oldest first; a new dict of the rest had cost 0.3 s)
        self._entries, self._inputs, self._seen = entries, inputs, None
        temp = None
        try:
            temp = f"{self.path}.{os.getpid()}-{secrets.token_hex(4)}.tmp"  # (the umask's mode, as the
            fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)  # project's other files)
            with os.fdopen(fd, "wb") as f:
                f.write(_encode({"version": _VERSION, "files": entries, "inputs": inputs}))
                written = os.fstat(f.fileno()).st_ino
            os.replace(temp, self.path)
            temp = None
            now = _stat_of(self.path)
            self._seen = now if now is not None and now[2] == written else None  # (else: another's)
        except (OSError, ValueError):  # (a read-only or full disk: the next run hashes again)
            pass
        finally:
            if temp is not None:
                with contextlib.suppress(OSError):
                    os.unlink(temp)
        self._new.clear()


def _stat_of(path: str | Path) -> list[int] | None:
    try:
        return [*stat_stamp(os.stat(path))]
    except OSError:
        return None


def _encode(memo: dict) -> bytes:
    """The memo file's text: by orjson (0.02 s for 100,000 files, `json` 0.6 s); by `json` where
    a path is not UTF-8 (a name read with lone surrogates, which orjson refuses)."""
    try:
        return orjson.dumps(memo)
    except TypeError:
        return json.dumps(memo, separators=(",", ":")).encode()


def _read(path: Path) -> tuple[dict[str, list], dict[str, list], list[int] | None]:
    """The memo file's two parts, each empty when the file is absent, unreadable or not a memo
    ("files": raw and written files by oid; "inputs": call records' file inputs by blake3),
    and its stat, taken before it was read (None: no file)."""
    seen = _stat_of(path)
    try:
        with open(path, "rb") as f:
            text = f.read()
    except OSError:
        return {}, {}, seen
    try:
        with paused():  # (600,000 small objects, no cycles: the collector's passes cost 2/3)
            memo = orjson.loads(text)
    except ValueError:
        try:  # (a path that is not UTF-8, escaped by `json`: orjson refuses lone surrogates)
            memo = json.loads(text)
        except ValueError:
            return {}, {}, seen
    if not isinstance(memo, dict) or memo.get("version") != _VERSION:
        return {}, {}, seen
    files, inputs = memo.get("files"), memo.get("inputs")
    return (files if isinstance(files, dict) else {}), (inputs if isinstance(inputs, dict) else {}), seen


def content_oid(path: str, stats: FileStats | None = None) -> str | None:
    """The oid of the content of the file at `path` as a `bytes` value; None for a folder or
    other non-file. Raises OSError: FileNotFoundError where there is none, another where it
    cannot be stat'ed or read, or keeps changing size while it is read. `stats` (the
    project's memo) answers for a file whose whole stat it remembers, and remembers what is
    hashed here, as this process's memo does (no racy stat in either)."""
    for _ in range(_TRIES):
        now_ns = time.time_ns()  # (before the stat: a write after it shows as a later mtime)
        st = os.stat(path)
        found = _content_oid_at(path, st, now_ns, stats)
        if found != "":
            return found
    raise OSError(errno.EBUSY, "it kept changing size while it was read", path)


def _content_oid_at(path: str, st: os.stat_result, now_ns: int, stats: FileStats | None) -> str | None:
    """`content_oid` of the file stat'ed as `st` at `now_ns`; "" when its size changed while
    it was read."""
    if not stat.S_ISREG(st.st_mode):
        return None
    found = known_oid(path, st, stats)
    if found is not None:
        return found
    found = _content_oid(path, st.st_size)
    if found is None:
        return ""
    remember(path, st, found, now_ns, stats)
    return found


def known_oid(path: str, st: os.stat_result, stats: FileStats | None) -> str | None:
    """The oid of the content of the file at `path` whose stat is `st`, where this process
    or `stats` remembers that whole stat, else None."""
    found = _hashes.get((path, *stat_stamp(st)))
    return stats.known(path, st) if found is None and stats is not None else found


def remember(path: str, st: os.stat_result, oid: str, now_ns: int, stats: FileStats | None) -> None:
    """The file at `path`, stat'ed as `st` at `now_ns` before being read whole, hashed to
    `oid`: remembered (by this process and `stats`) when that stat is not racy and the file
    still has it (unchanged while read: its stat vouches for it)."""
    if racy_stat(st, now_ns) or _stat_of(path) != [*stat_stamp(st)]:
        return
    if len(_hashes) >= _MEMO_SIZE:
        _hashes.clear()
    _hashes[(path, *stat_stamp(st))] = oid
    if stats is not None:
        stats._entry(path)  # (the memo file read, if it was not yet)
        stats._put(path, [*stat_stamp(st), oid])


def _content_oid(path: str, size: int, sink: Callable[[bytes], object] | None = None) -> str | None:
    """The oid of the file's content as a `bytes` value (the one hasher of files); None when
    it does not have `size` bytes any more (rewritten while read). `sink`: given each block
    as it is read (an export copies the file and takes its sha256 in the same pass)."""
    hasher = blake3.blake3(object_header("bytes", size))
    read = 0
    with open(path, "rb") as f:
        while block := f.read(_BLOCK):
            hasher.update(block)
            read += len(block)
            if sink is not None:
                sink(block)
    return hasher.hexdigest() if read == size else None


_OF_PROJECT: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def file_stats(db: Any) -> FileStats:
    """The memo of `db`'s project (one per open project: a run's inputs and outputs share it,
    and the run's end saves it)."""
    stats = _OF_PROJECT.get(db)
    if stats is None:
        stats = _OF_PROJECT[db] = FileStats(db.scistack_dir, bool(db.read_only))
    return stats
