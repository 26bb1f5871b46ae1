"""What a `PathInput` file holds, and whether a cached call's `PathOutput` file still holds the
bytes the call stored, judged by its stat where it can be: `.scistack/output-stats.json`
keeps, per file, the stat (size, mtime, inode, ctime) it had when its content was last
hashed, with that content's oid.

Every run in a new process hashed each raw file a `PathInput` names whole to key its calls
(`paths.file_oid`; its memo lasts one process): a rerun of a pipeline over 100 GB of
recordings read 100 GB before finding every call cached. A raw file whose whole stat is the
one remembered is keyed by the remembered oid (`FileStats.known`), under the rules below.

A fully cached `for_each` rerun checks every written file that is still on disk
(`_Run._files_put_back`): hashing each whole in every new process had made a rerun of 16
files of 64 MB take 2-3 s instead of 0.01 s. A file whose whole stat is the one remembered
has the remembered content (as git's index judges a worktree file; the ctime, which no copy
can set, is in the stat); any other is hashed and remembered anew. A stat taken within 2 s of
the file's mtime or ctime is *racy* (a rewrite of the same size in the same timestamp tick, or
through a still-dirty mapped page, keeps it): it is not remembered, so a file just written is
hashed again on its next check, and judged by its stat from then on. A file of another size
than the content the memo names with the expected oid holds other bytes: no hash.

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
from scistack.codeid.files import racy_stat, trust_verified, verified_stats  # (git's rule, as file inputs judge stats)
from scistack.objects.hashing import object_header

MEMO_NAME = "output-stats.json"
_VERSION = 1
_MAX_ENTRIES = 100_000  # (the oldest are dropped beyond: they cost a hash each, nothing more)
_BLOCK = 1 << 20


def _stamp(st: os.stat_result) -> list[int]:
    return [st.st_size, st.st_mtime_ns, st.st_ino, st.st_ctime_ns]


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
        if not stat.S_ISREG(st.st_mode):
            return False
        now = _stamp(st)
        entry = self._entry(path)
        if entry is not None:
            if entry[:4] == now:
                return entry[4] == oid
            if entry[4] == oid and entry[0] != st.st_size:
                return False  # (an oid names one length: the file's is another)
        found = _content_oid(path, st.st_size)
        if found is not None and not racy_stat(st, now_ns) and _stamp(os.stat(path)) == now:
            self._put(path, [*now, found])  # (unchanged while read: its stat vouches for it)
        return found == oid

    def known(self, path: str, st: os.stat_result) -> str | None:
        """The oid of the content of the file at `path` whose stat is `st`, if the memo vouches
        for it (that whole stat remembered, not racy when it was), else None."""
        entry = self._entry(path)
        return entry[4] if entry is not None and entry[:4] == _stamp(st) else None

    def remember(self, path: str, st: os.stat_result, oid: str, now_ns: int) -> None:
        """The file at `path`, stat'ed as `st` at `now_ns` before being read whole, hashed to
        `oid`: remembered when that stat is not racy and the file still has it."""
        try:
            unchanged = _stamp(os.stat(path)) == _stamp(st)
        except OSError:
            return
        if unchanged and not racy_stat(st, now_ns):
            self._entry(path)  # (the memo file read, if it was not yet)
            self._put(path, [*_stamp(st), oid])

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


def _stat_of(path: Path) -> list[int] | None:
    try:
        return _stamp(os.stat(path))
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


def _content_oid(path: str, size: int, sink: Callable[[bytes], object] | None = None) -> str | None:
    """The oid of the file's content as a `bytes` value (`paths.file_oid`'s hash); None when
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
