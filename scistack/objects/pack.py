"""Pack files: many small objects in one file, written when saves come in batches.

A loose object costs a file creation (~80 us, ~12k/s on this machine, far fewer right after
mass deletions); a batch of 10,000 small values would spend most of its time there. As git
does, objects saved inside a batch are collected in memory and written as one pack plus its
index when the batch flushes; reading a packed object is a slice of a memory map.

Layout (docs/format.md §1.4), all integers little-endian:
  pack-<id>.pack  b"SCIPACK1", then per object: oid (32 raw bytes), uint64 n, n stored bytes
                  (exactly what a loose file would hold: raw header+payload or one zstd frame)
  pack-<id>.idx   b"SCIIDX01", uint64 count, then per object sorted by oid:
                  oid (32 bytes), uint64 offset of the stored bytes in the pack, uint64 n
The .idx is renamed into place after the .pack is complete: a pack without an index is an
interrupted write and readers ignore it (gc removes it after the grace period). Small packs
are merged into one (`PackSet.merge_small`: gc, and a writer closing with many packs).
"""

from __future__ import annotations

import bisect
import fcntl
import logging
import mmap
import os
import secrets
import struct
import threading
import time
import weakref
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import blake3
import numpy as np

from scistack.errors import CorruptPackIndexError
from scistack.objects.midx import NAME as MIDX_NAME
from scistack.objects.midx import MultiPackIndex, open_midx, remove_midx, write_midx
from scistack.objects.forks import hold_across_fork

PACK_MAGIC = b"SCIPACK1"
IDX_MAGIC = b"SCIIDX01"
_ENTRY = struct.Struct("<32sQQ")
_RECORD_HEAD = struct.Struct("<32sQ")
_PREAD = hasattr(os, "pread")
_log = logging.getLogger(__name__)
_CLOEXEC = getattr(os, "O_CLOEXEC", 0)
_READ_INDEX_UNDER = 1 << 20  # a pack index up to this size is read, a larger one mapped
_OPEN_PACKS = 64  # packs a process keeps open (mapped, and for `pread`); the others per read


def _close_fds(fds: dict[str, int]) -> None:
    """Close the descriptors `peek` opened (a pack gc removed, or the set collected); a read
    in flight in another thread then fails and takes the mapped path."""
    for name in list(fds):
        fd = fds.pop(name, None)
        if fd is not None:
            try:
                os.close(fd)
            except OSError:
                pass
_PREAD_MAX = 256 << 10  # larger records are sliced from the map (one copy, not two)


def write_pack(directory: Path, objects: list[tuple[str, bytes]], *, fsync: bool = False) -> str:
    """Write `(oid, stored bytes)` pairs as one pack + index; returns the pack's name."""
    directory.mkdir(parents=True, exist_ok=True)
    objects = sorted(objects)
    name = "pack-" + blake3.blake3("".join(oid for oid, _ in objects).encode()).hexdigest()[:20]
    entries, offset = [], len(PACK_MAGIC)
    pack_temp = directory / f".tmp-{secrets.token_hex(6)}.pack"
    with open(pack_temp, "wb") as out:
        out.write(PACK_MAGIC)
        for oid, stored in objects:
            raw = bytes.fromhex(oid)
            out.write(_RECORD_HEAD.pack(raw, len(stored)))
            offset += _RECORD_HEAD.size
            out.write(stored)
            entries.append((raw, offset, len(stored)))
            offset += len(stored)
        _sync(out, fsync)
    os.chmod(pack_temp, 0o444)
    os.replace(pack_temp, directory / f"{name}.pack")
    _write_index(directory, name, entries, fsync)  # the commit point
    return name


def _write_index(directory: Path, name: str, entries: list[tuple[bytes, int, int]], fsync: bool) -> None:
    idx_temp = directory / f".tmp-{secrets.token_hex(6)}.idx"
    with open(idx_temp, "wb") as out:
        out.write(_IDX_HEAD.pack(IDX_MAGIC, len(entries)))
        out.write(b"".join(_ENTRY.pack(*e) for e in sorted(entries)))
        _sync(out, fsync)
    os.chmod(idx_temp, 0o444)
    os.replace(idx_temp, directory / f"{name}.idx")


def rebuild_index(directory: Path, name: str, *, fsync: bool = False) -> int:
    """Write `name`'s index again from its pack, which describes itself; returns its record count.

    The records are read in order (oid, length, stored bytes). A pack cut short (a copy or a
    disk that lost its end) keeps the records that are complete: they are indexed, and the
    cut record is left out (a warning names it; fsck then names its value missing, and the
    bytes after the last complete record stay in the pack file). Refusing had lost every
    object of the pack for the sake of the last one.

    A pack is taken as cut short only when its old index says so (an entry ending past the
    pack's end). A record head damaged in the middle of a whole pack (a length that runs
    past the end) is no cut: the records after it, and the index that still finds them,
    are kept, and the rebuild is refused as it always was (an index written from the heads
    before it had lost every object of the pack to `fsck --repair`).
    """
    pack = directory / f"{name}.pack"
    with open(pack, "rb") as handle:
        data = handle.read()
    if data[: len(PACK_MAGIC)] != PACK_MAGIC:
        raise CorruptPackIndexError(pack, "the pack does not start with SCIPACK1, so its index cannot be rebuilt")

    def not_cut(at: int, what: str) -> None:
        if _indexed_end(directory / f"{name}.idx") <= len(data):
            raise CorruptPackIndexError(
                pack, f"{what} at byte {at}, inside the pack, which its index does not say is cut short: "
                "a damaged record head, so its index cannot be rebuilt from the pack (its objects "
                "are still read through the index it has, each one verified)")

    entries, at = [], len(PACK_MAGIC)
    while at < len(data):
        if at + _RECORD_HEAD.size > len(data):
            not_cut(at, "a record head runs past the pack's end")
            _log.warning("pack %s ends inside a record head at byte %d: its last %d bytes are not a whole "
                         "record and are left out of its rebuilt index", pack, at, len(data) - at)
            break
        raw, length = _RECORD_HEAD.unpack_from(data, at)
        if at + _RECORD_HEAD.size + length > len(data):
            not_cut(at, f"a record claims {length} bytes")
            _log.warning("pack %s is cut short: its record of %s at byte %d claims %d bytes, %d are there; "
                         "it is left out of the rebuilt index (%d complete records kept)", pack, raw.hex()[:12],
                         at, length, len(data) - at - _RECORD_HEAD.size, len(entries))
            break
        at += _RECORD_HEAD.size
        entries.append((raw, at, length))
        at += length
    _write_index(directory, name, entries, fsync)
    return len(entries)


def _indexed_end(path: Path) -> int:
    """Where the last record a pack index names ends (0: no readable index): more than the
    pack's length says the pack was cut short."""
    try:
        entries = parse_idx(path.read_bytes(), lenient=True, path=path)
    except (OSError, CorruptPackIndexError):
        return 0
    return int((entries["offset"] + entries["length"]).max()) if len(entries) else 0


def _heads_match(view: Any, entries: np.ndarray) -> bool:
    """Whether each index entry's oid and length are those of the record head before its
    offset in the pack mapped as `view` (entries pointing outside it are already left out)."""
    pack = np.frombuffer(view, np.uint8)
    try:
        span = np.arange(_RECORD_HEAD.size)
        for start in range(0, len(entries), 1 << 20):
            part = entries[start : start + (1 << 20)]
            offsets = part["offset"].astype(np.int64)
            if len(offsets) and (int(offsets.min()) < len(PACK_MAGIC) + _RECORD_HEAD.size
                                 or int((offsets + part["length"].astype(np.int64)).max()) > len(pack)):
                return False
            heads = pack[offsets[:, None] - _RECORD_HEAD.size + span]
            wanted = part.view(np.uint8).reshape(-1, _IDX_DTYPE.itemsize)
            if not ((heads[:, :32] == wanted[:, :32]).all() and (heads[:, 32:40] == wanted[:, 40:48]).all()):
                return False
        return True
    finally:
        del pack  # (an exported buffer would keep the map from closing)


def _sync(out, fsync: bool) -> None:
    if fsync:
        out.flush()
        os.fsync(out.fileno())


_IDX_HEAD = struct.Struct("<8sQ")
_IDX_DTYPE = np.dtype([("oid", "V32"), ("offset", "<u8"), ("length", "<u8")])


def parse_idx(data: Any, *, lenient: bool = False, path: object = "(read from memory)") -> np.ndarray:
    """The entries of a pack index, from the bytes of the whole file (bytes or a map; the
    entries are a view of them): oid, offset and length, sorted by oid (`_IDX_DTYPE`).

    CorruptPackIndexError (naming `path`) when `data` is shorter than its 16-byte head, does
    not start with `IDX_MAGIC`, or holds other than the count of entries its head names.
    `lenient`: the whole entries there are, up to that count (how far an index cut short or
    extended reaches: `_indexed_end`). Every reader of the format reads it here: `_Index`,
    a merge's sources, and lab mode's bucket indexes (s3.py)."""
    if len(data) < _IDX_HEAD.size:
        raise CorruptPackIndexError(path, f"it is {len(data)} bytes long, shorter than its {_IDX_HEAD.size}-byte head")
    magic, count = _IDX_HEAD.unpack_from(data)
    if magic != IDX_MAGIC:
        raise CorruptPackIndexError(path, f"it starts with {bytes(magic)!r}, not {IDX_MAGIC!r}")
    held = len(data) - _IDX_HEAD.size
    if lenient:
        count = min(count, held // _IDX_DTYPE.itemsize)
    elif count * _IDX_DTYPE.itemsize != held:
        raise CorruptPackIndexError(
            path, f"its head counts {count} entries but it holds {held / _IDX_DTYPE.itemsize:g} "
            "(it is truncated or was extended)")
    return np.frombuffer(data, _IDX_DTYPE, count, offset=_IDX_HEAD.size)


def oid_prefixes(oids: np.ndarray | bytes) -> np.ndarray:
    """The first 8 bytes of each oid read as a big-endian number (so in the oids' order), as
    native uint64: the search key of every merged lookup (the multi-pack index, the packs
    merged in memory, lab mode's `PackTable`). `oids`: raw oids (32 bytes each), an array of
    them ("V32"), or a pack index's entries (`_IDX_DTYPE`: the oid comes first)."""
    if isinstance(oids, np.ndarray):
        rows = np.ascontiguousarray(oids).view(np.uint8).reshape(-1, oids.dtype.itemsize)
    else:
        rows = np.frombuffer(oids, np.uint8).reshape(-1, 32)
    return rows[:, :8].copy().view(">u8").ravel().astype(np.uint64)


class _Index:
    """One pack's sorted index, memory-mapped: nothing is decoded until asked."""

    def __init__(self, name: str, path: Path) -> None:
        """Map and check an index: its magic and that its length is exactly its entries' (else
        CorruptPackIndexError); entries pointing outside the pack are left out (`outside`)."""
        self.name = name
        self.matches: bool | None = None  # every entry names its record head (`PackSet._matches_pack`)
        with open(path, "rb") as handle:
            size = os.fstat(handle.fileno()).st_size
            # a small index is read: a map holds a descriptor for as long as it lives (Python's
            # mmap keeps one), and a project of a pack a batch ran out of them
            self._map: mmap.mmap | bytes = (handle.read() if size <= _READ_INDEX_UNDER
                                            else mmap.mmap(handle.fileno(), 0, access=mmap.ACCESS_READ))
        try:
            self.entries = parse_idx(self._map, path=path)
            self.pack_size = os.stat(path.with_suffix(".pack")).st_size
        except (CorruptPackIndexError, FileNotFoundError):
            self.entries = np.empty(0, _IDX_DTYPE)
            self.close()
            raise
        # An entry pointing outside the pack (a pack cut short, a flipped offset) is left out,
        # not the whole index: the others stay readable (each object is verified as it is read),
        # and fsck names the pack (`outside`) for `--repair` to rebuild its index.
        offsets, ends = self.entries["offset"], self.entries["offset"] + self.entries["length"]
        inside = (offsets >= len(PACK_MAGIC) + _RECORD_HEAD.size) & (ends >= offsets) & (ends <= self.pack_size)
        self.outside = int(len(self.entries) - np.count_nonzero(inside))
        if self.outside:
            kept = self.entries[inside]
            self.close()
            self._map = _IDX_HEAD.pack(IDX_MAGIC, len(kept)) + kept.tobytes()
            self.entries = parse_idx(self._map, path=path)
        self.raw = self._map  # entries are read with struct too: faster than numpy scalars

    def prefixes(self) -> np.ndarray:
        """`oid_prefixes` of the entries, made once (every refresh merges the prefixes of every
        pack the multi-pack index leaves out)."""
        made = getattr(self, "_prefixes", None)
        if made is None or len(made) != len(self.entries):
            made = self._prefixes = oid_prefixes(self.entries)
        return made

    def close(self) -> None:
        self.entries = self.entries[:0]
        try:
            if isinstance(self._map, mmap.mmap):
                self._map.close()
        except BufferError:  # a view of the index is still alive somewhere: the GC closes it
            pass


def _unlink_pack(directory: str | Path, name: str) -> None:
    for suffix in (".idx", ".pack"):  # index first: readers never see a half-removed pack
        try:
            os.unlink(f"{directory}/{name}{suffix}")
        except FileNotFoundError:
            pass


def _unlink_pack_dated(directory: str | Path, name: str) -> int:
    """`_unlink_pack`, returning the pack's mtime (ns) as it went (0: it was gone already), read
    through a descriptor opened before: a writer's refresh of it by name either came first and
    counts, or fails and the writer stores its object again."""
    with _unlinked(directory, name) as fd:
        if fd is None:
            _unlink_pack(directory, name)
            return 0
        return os.fstat(fd).st_mtime_ns


@contextmanager
def _unlinked(directory: str | Path, name: str) -> Iterator[int | None]:
    """A descriptor of pack `name`, opened before its files are unlinked (None, and nothing
    unlinked, when it is gone): its mtime as it went, and its records, stay readable."""
    try:
        fd = os.open(f"{directory}/{name}.pack", os.O_RDONLY | _CLOEXEC)
    except FileNotFoundError:
        yield None
        return
    try:
        _unlink_pack(directory, name)
        yield fd
    finally:
        os.close(fd)


def _mtime_ns(path: Path) -> int:
    try:
        return os.stat(path).st_mtime_ns
    except FileNotFoundError:
        return 0


def _replaced_packs(side: Path, name: str) -> list[str]:
    """The packs a merge's `.replaces` file names (`name`: the merged pack, never one of them;
    anything that is not a pack name in this folder is skipped)."""
    return [source for source in side.read_text("ascii", "replace").split()
            if source != name and source.startswith("pack-") and "/" not in source]


def _as_young_as(path: Path, mtime_ns: int) -> None:
    """A merged pack made young (now) if a pack it replaced was younger as it went (a writer
    refreshed it during the merge); never made older, so no refresh of it is undone."""
    try:
        if os.stat(path).st_mtime_ns < mtime_ns:
            os.utime(path)
    except FileNotFoundError:
        pass


_SMALL_SOURCE = 256 << 10  # a pack to merge up to this size is read whole (one read, no map)


@dataclass(slots=True)
class _Source:
    """A pack to merge: its open descriptor, its index's entries, and whether it is small
    (its records are then read into memory and written with others', not copied alone)."""

    name: str
    fd: int
    entries: np.ndarray
    small: bool


def _checked_source(directory: str, name: str) -> _Source | None:
    """A pack to merge, opened, with its index's entries, when the index is sound and every
    entry matches the record head before it in the pack (else None: a damaged pack is left
    where it is, for fsck). Plain `os` calls on text paths: this is most of a merge's cost
    per pack (~100 us of which two `unlink`s later take half)."""
    try:
        fd = os.open(f"{directory}/{name}.idx", os.O_RDONLY | _CLOEXEC)
    except FileNotFoundError:
        return None
    try:
        index = os.read(fd, os.fstat(fd).st_size)
    finally:
        os.close(fd)
    try:
        entries = parse_idx(index)
    except CorruptPackIndexError:
        return None
    if not len(entries):
        return None
    try:
        fd = os.open(f"{directory}/{name}.pack", os.O_RDONLY | _CLOEXEC)
    except FileNotFoundError:
        return None
    try:
        size = os.fstat(fd).st_size
        offsets, lengths = entries["offset"].astype(np.int64), entries["length"].astype(np.int64)
        if int(offsets.min()) < len(PACK_MAGIC) + _RECORD_HEAD.size or int((offsets + lengths).max()) > size:
            raise ValueError
        if size <= _SMALL_SOURCE:
            data = os.pread(fd, size, 0)
            if len(data) != size:
                raise ValueError
            heads = np.frombuffer(data, np.uint8)[offsets[:, None] - _RECORD_HEAD.size + np.arange(_RECORD_HEAD.size)]
            del data  # (read again as it is copied: 36k packs held at once would be gigabytes)
        else:
            with mmap.mmap(fd, 0, access=mmap.ACCESS_READ) as view:
                pack = np.frombuffer(view, np.uint8)
                heads = pack[offsets[:, None] - _RECORD_HEAD.size + np.arange(_RECORD_HEAD.size)]
                del pack
        wanted = entries.view(np.uint8).reshape(-1, _IDX_DTYPE.itemsize)
        if not ((heads[:, :32] == wanted[:, :32]).all() and (heads[:, 32:40] == wanted[:, 40:48]).all()):
            raise ValueError
    except (ValueError, OSError):
        os.close(fd)
        return None
    return _Source(name, fd, entries, size <= _SMALL_SOURCE)


def _holds(directory: Path, name: str, oids: np.ndarray) -> bool:
    """Whether pack `name` exists and its index lists exactly `oids` (sorted)."""
    try:
        index = _Index(name, directory / f"{name}.idx")
    except (FileNotFoundError, CorruptPackIndexError):
        return False
    same = len(index.entries) == len(oids) and bytes(index.entries["oid"].tobytes()) == oids.tobytes()
    index.close()
    return same


def _write_all_fd(out: int, data: bytes | bytearray) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(out, view):]


def _copy_range(source: int, out: int, start: int, count: int) -> None:
    """`count` bytes of `source` from `start` appended to `out` (in the kernel where it can)."""
    while count > 0:
        try:
            done = os.copy_file_range(source, out, count, start)
        except (AttributeError, OSError):  # (not Linux, or across file systems)
            done = os.write(out, os.pread(source, min(count, 1 << 20), start))
        if done <= 0:
            raise OSError(f"a pack ended {count} bytes early while it was merged")
        start, count = start + done, count - done


def _write_replaces(directory: Path, name: str, replaced: list[str], fsync: bool) -> None:
    """`pack-<id>.replaces`: the packs the merge into `name` removes, one a line."""
    temp = directory / f".tmp-{secrets.token_hex(6)}{REPLACES}"
    with open(temp, "w", encoding="ascii") as handle:
        handle.write("".join(f"{source}\n" for source in replaced))
        _sync(handle, fsync)
    os.replace(temp, directory / f"{name}{REPLACES}")
    if fsync:
        fsync_dir(directory)


def _remove_replaces(directory: Path, name: str, fsync: bool) -> None:
    if fsync:
        fsync_dir(directory)  # the unlinks of the packs it names are durable first
    try:
        os.unlink(directory / f"{name}{REPLACES}")
    except FileNotFoundError:
        pass


def fsync_dir(directory: str | os.PathLike) -> None:
    """Make the folder's entries (a rename, an unlink) durable."""
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


# what fsck says of a merge a killed process left half done (`PackSet.interrupted_merges`), and of
# finishing it (format: the merged pack, packs still there / removed, packs it replaces; one
# whose merged index is damaged is not finished)
_MERGE_STATE = {
    "uncommitted": "its merged pack {0} was never committed (it has no index), so every object is still in "
                   "the packs it was to replace ({1} of {2} there); finishing only removes this file",
    "damaged": "its merged pack {0} has a damaged index; `scistack fsck --repair` rebuilds it from the pack, "
               "then finishes the merge",
    "committed": "its merged pack {0} is committed and {1} of the {2} packs it replaces are still there "
                 "beside it (their objects stored twice, read correctly from either); finishing removes them",
}
_MERGE_DONE = {
    "uncommitted": "rolled back: {0} was never committed, every object stays in the packs it was to replace "
                   "(gc removes its unindexed file)",
    "committed": "{1} of the {2} packs it replaces removed ({0} holds their objects)",
}


# Pack sets of this process. A fork waits until no thread is inside one's lock (the background
# sync reads values through it: a child forked meanwhile waited for ever at its first load): the
# forking thread holds each across the fork (`forks.hold_across_fork`).
_PACK_SETS: weakref.WeakSet[PackSet] = weakref.WeakSet()


def _after_fork_in_child() -> None:
    for packs in list(_PACK_SETS):
        packs._after_fork()


hold_across_fork(lambda: [packs._lock for packs in list(_PACK_SETS)], in_child=_after_fork_in_child)

_EMPTY_MERGE: tuple = (None, [], np.empty(0, np.uint64), np.empty(0, np.int32), np.empty(0, np.int64), ((), (), ()))
MIDX_AFTER = 50_000  # objects in packs the multi-pack index leaves out before it is written anew
# ... or packs it leaves out: a lab's cache never merges its packs (they are the bucket's), a
# batch writes one, and each refresh merged every one left out anew (at 1,000 packs of 5
# objects, 16 ms of a 33 ms refresh per batch, the folder's glob the rest)
MIDX_PACKS = 64


class PackSet:
    """Every complete pack in a directory, refreshed on change.

    Lookups search the multi-pack index (midx.py: one memory-mapped sorted array for the packs
    it covers) and then one array of 8-byte oid prefixes merged in memory from the packs
    written since; full oids are compared only on a prefix match. A process opening a store
    of ten million packed objects maps a file instead of merging and sorting ten million
    entries. Once the packs left out hold `MIDX_AFTER` objects the index is written anew.
    """

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.directory_text = os.fspath(directory)  # (a `Path` built per lookup costs ~2 us)
        self._names: set[str] = set()  # every complete pack (it has an index file)
        self._indexes: dict[str, _Index] = {}  # opened (and checked) as needed
        # (multi-pack index, the other packs' indexes, their sorted 8-byte oid prefixes, which
        # index each is in, its row there): replaced whole, so a reader in another thread
        # never mixes two generations
        self._merged: tuple[Any, ...] = _EMPTY_MERGE  # (midx, indexes, keys, packs, rows, their memoryviews)
        self._maps: dict[str, mmap.mmap] = {}
        self._fds: dict[str, int] = {}  # packs read by `pread` (`peek`), closed with the set
        weakref.finalize(self, _close_fds, self._fds)
        self._seen_mtime = -1
        self._lock = threading.RLock()
        _PACK_SETS.add(self)
        self.damaged: dict[str, CorruptPackIndexError] = {}  # pack name -> why its index was skipped
        self._gone: frozenset[str] = frozenset()  # packs the multi-pack index names that are gone
        self._merging = threading.RLock()  # this process's hold of MERGE_LOCK (see `exclusive`)
        self._merge_fd: int | None = None

    def _after_fork(self) -> None:
        """In a forked child: `MERGE_LOCK`, which a thread of the parent may hold (a merge, gc's
        repack), is not this process's. Its descriptor shares the parent's open file, so a
        merge here had gone ahead beside the parent's as if it held the lock (and a child that
        kept it open held the parent's flock until it exited); and `_merging`, held by that
        thread, made the child's first merge (a run's, a close's) wait for ever. Not waited
        for at the fork (a merge, or a wait for another process's, may be long): the child
        closes its copy of the descriptor and has a lock of its own. A fork from inside
        `exclusive` keeps its hold (the forking thread's, here too)."""
        if self._merging._is_owned():
            return
        self._merging._at_fork_reinit()
        if self._merge_fd is not None:
            try:
                os.close(self._merge_fd)  # (the child's copy: the parent's hold stays)
            except OSError:
                pass
            self._merge_fd = None

    def refresh(self) -> bool:
        """Load indexes of packs added (or drop those removed) since last time; cheap when none."""
        try:
            mtime = os.stat(self.directory).st_mtime_ns
        except FileNotFoundError:
            return False
        if mtime == self._seen_mtime:
            return False
        with self._lock:
            try:
                names = self._listed()
            except FileNotFoundError:
                return False
            gone = self._names - names
            if gone:  # a pack was removed (gc repacked, fsck set an object aside): forget it.
                # Its index and map are dropped, not closed: another thread may be reading
                # through them (a chunked read's pool), and a closed map failed that read
                # ("mmap closed or invalid"); the last reference closes them.
                for name in gone:
                    self._indexes.pop(name, None)
                    self._maps.pop(name, None)
                _close_fds({name: fd for name in gone if (fd := self._fds.pop(name, None)) is not None})
            self._names = names
            self.damaged = {n: e for n, e in self.damaged.items() if n in names}
            midx = open_midx(self.directory)
            if midx is not None and not set(midx.packs) & names:  # every pack it names is gone
                midx.close()
                midx = None
            # a pack it names may be gone (gc's repack, a merge): its entries are skipped, and
            # the pack that holds those objects now is searched through its own index
            self._gone = frozenset(set(midx.packs) - names) if midx is not None else frozenset()
            covered = set(midx.packs) & names if midx is not None else set()
            extras = [index for index in map(self._index, sorted(names - covered)) if index is not None]
            # (a pack left out of it for a damaged index stays left out: not counted, or each
            # refresh had written it anew)
            due = [index for index in extras if index.matches is not False]
            if (sum(len(index.entries) for index in due) >= MIDX_AFTER or len(due) >= MIDX_PACKS) \
                    and self._write_midx():
                written = open_midx(self.directory)
                if written is not None and set(written.packs) <= names:
                    midx, extras = written, [i for i in extras if i.name not in set(written.packs)]
                    self._gone = frozenset()
            self._merge(midx, extras)
            self._seen_mtime = mtime  # (a write of the index above changed it: looked at again next time)
        return True

    def _listed(self) -> set[str]:
        """The names of the packs in the folder now (scandir, not a glob: ~10x less per pack,
        and a lab's cache keeps thousands). Raises FileNotFoundError without the folder."""
        with os.scandir(self.directory_text) as listing:
            return {entry.name[:-4] for entry in listing
                    if entry.name.startswith("pack-") and entry.name.endswith(".idx")}

    def look_again(self) -> None:
        """Read the folder again now, whatever its time stamp says (a copy found damaged: the
        pack holding it may have been rewritten or removed since)."""
        with self._lock:
            self._seen_mtime = -1
            self.refresh()

    def consolidate(self) -> bool:
        """Write the multi-pack index over every pack now (gc, tests); False if it could not."""
        with self._lock:
            self.refresh()
            written = self._write_midx()
            self._seen_mtime = -1
            self.refresh()
            return written

    def _write_midx(self) -> bool:
        """Write the multi-pack index from the packs' own indexes, leaving out a pack whose
        index disagrees with a record head in its pack (`_matches_pack`): an offset flipped
        inside the pack passes `_Index`'s range check, and copied here it outlived the rebuild
        of that index by fsck --repair. The pack left out is searched through its own index,
        as before, and fsck names it."""
        sound = [index for index in filter(None, map(self._index, sorted(self._names))) if self._matches_pack(index)]
        parts = list(enumerate(sound))
        if not parts:
            return False
        packs = [index.name for _, index in parts]
        try:
            write_midx(self.directory, packs,
                       np.concatenate([index.prefixes() for _, index in parts]),
                       np.concatenate([np.full(len(index.entries), i, np.uint32) for i, index in parts]),
                       np.concatenate([index.entries["offset"] for _, index in parts]),
                       np.concatenate([index.entries["length"] for _, index in parts]))
        except OSError:  # a read-only store (someone else's project): merge in memory, as before
            return False
        return True

    def _matches_pack(self, index: _Index) -> bool:
        """Whether every entry of a pack's index names the record head before its offset (full
        oid and length), read 1M heads at a time; kept on the index (a pack and an index once
        read never change: a rebuilt index is opened anew). ~0.15 s per million entries with
        the packs in the page cache, as much again as the sort of the multi-pack index."""
        known = index.matches
        if known is None:
            try:
                view = self._map(index.name)
            except (FileNotFoundError, ValueError):  # removed meanwhile, or empty
                return False
            known = index.matches = _heads_match(view, index.entries)
        return known

    def _index(self, name: str) -> _Index | None:
        """A pack's own index, opened and checked the first time it is needed (None if damaged)."""
        index = self._indexes.get(name)
        if index is None and name not in self.damaged:
            try:
                index = self._indexes[name] = _Index(name, self.directory / f"{name}.idx")
            except FileNotFoundError:  # removed meanwhile
                return None
            except CorruptPackIndexError as exc:  # skipped: the other packs stay readable
                self.damaged[name] = exc
                return None
        return index

    def _merge(self, midx: MultiPackIndex | None, indexes: list[_Index]) -> None:
        keys = [index.prefixes() for index in indexes]
        if not keys:
            self._merged = (midx, *_EMPTY_MERGE[1:])
            return
        merged = np.concatenate(keys)
        order = np.argsort(merged, kind="stable")
        columns = (merged[order], np.concatenate([np.full(len(k), i, np.int32) for i, k in enumerate(keys)])[order],
                   np.concatenate([np.arange(len(k)) for k in keys])[order])
        # and the same columns as plain-int sequences for `_find` (memoryviews: items are ints,
        # searched by `bisect`), as the multi-pack index keeps its own: numpy's per-call and
        # per-scalar costs were ~8k instructions of each read of a project without one
        self._merged = (midx, indexes, *columns, tuple(memoryview(column) for column in columns))

    def _find(self, oid: str) -> tuple[str, int, int] | None:
        if self._merged[0] is None and not len(self._merged[2]):
            return None  # no pack known (a project of single saves): ~5 us off each load
        try:
            raw = bytes.fromhex(oid)
        except ValueError:
            return None
        if len(raw) != 32:
            return None
        midx, indexes, _, _, _, (keys, packs, rows) = self._merged
        prefix = raw[:8]
        if midx is not None:
            gone = self._gone
            for name, offset, length in midx.candidates(prefix):
                if name not in gone and self._record_is(name, offset, length, raw):
                    return name, offset, length
        i = bisect.bisect_left(keys, int.from_bytes(prefix, "big"))
        while i < len(keys):
            index = indexes[packs[i]]
            found, offset, length = _ENTRY.unpack_from(index.raw, 16 + rows[i] * _ENTRY.size)
            if found[:8] != prefix:
                return None
            if found == raw:
                return index.name, offset, length
            i += 1
        return None

    def _record_is(self, name: str, offset: int, length: int, raw: bytes) -> bool:
        """Whether the pack's record head before `offset` names this oid and length."""
        try:
            view = self._map(name)
        except FileNotFoundError:  # removed since the index was read
            return False
        return offset >= len(PACK_MAGIC) + _RECORD_HEAD.size and offset + length <= len(view) and \
            _RECORD_HEAD.unpack_from(view, offset - _RECORD_HEAD.size) == (raw, length)

    def find_unindexed(self, oid: str) -> bytes | None:
        """The stored bytes of a packed object found by searching each pack's own index: the
        last look before an object is reported missing, in case the multi-pack index is
        damaged (it can hide an object, never return a wrong one). The folder's pack names are
        compared with those known, whatever its mtime says: a pack another process wrote in
        the same timestamp tick as this one's last look kept that mtime (a coarse clock: the
        kernel's tick before Linux 6.13, FAT's, a server's), so `refresh` saw nothing new and
        its objects were reported missing. (One listing more on this path, which already
        searches every pack's index.)"""
        self.refresh()
        try:
            unseen = self._listed() != self._names
        except FileNotFoundError:
            unseen = False
        if unseen:
            self.look_again()
            found = self.read(oid)
            if found is not None:
                return found
        if self._merged[0] is None:
            return None
        raw = bytes.fromhex(oid)
        for name in sorted(self._names):
            index = self._index(name)
            if index is None:
                continue
            at = int(index.prefixes().searchsorted(np.uint64(int.from_bytes(raw[:8], "big"))))
            while at < len(index.entries):
                found, offset, length = _ENTRY.unpack_from(index.raw, 16 + at * _ENTRY.size)
                if found[:8] != raw[:8]:
                    break
                if found == raw:
                    try:
                        return self._map(name)[offset : offset + length]
                    except FileNotFoundError:  # removed meanwhile: its objects are elsewhere
                        break
                at += 1
        return None

    def locate(self, oid: str) -> tuple[str, int, int] | None:
        """Where a packed object is, refreshing once on a miss."""
        hit = self._find(oid)
        if hit is None and self.refresh():
            hit = self._find(oid)
        return hit

    def peek(self, oid: str) -> bytes | None:
        """The stored bytes if the object is in a pack already known (no refresh).

        A small object the multi-pack index names is read with one `pread` of its record
        (head and bytes, the head checked as `_record_is` does): a random object in a fresh
        process otherwise costs a page fault in the mapped pack (~3-8 us at 1M objects, more
        on a busy machine), the pread ~1 us."""
        midx = self._merged[0]
        if midx is not None and _PREAD:
            try:
                raw = bytes.fromhex(oid)
            except ValueError:
                return None
            gone = self._gone
            for name, offset, length in midx.candidates(raw[:8]):
                if name not in gone and length <= _PREAD_MAX and offset >= len(PACK_MAGIC) + _RECORD_HEAD.size:
                    found = self._pread(name, offset - _RECORD_HEAD.size, _RECORD_HEAD.size + length)
                    if found is not None and found[:32] == raw and \
                            _RECORD_HEAD.unpack_from(found)[1] == length:
                        return found[_RECORD_HEAD.size:]
        return self._stored(oid, self._find(oid))

    def _stored(self, oid: str, hit: tuple[str, int, int] | None) -> bytes | None:
        """The stored bytes at `hit`; when its pack is gone since its index was read (gc's
        repack or a merge removed it, after writing its objects elsewhere) the packs are looked
        at again and the object found where it is now."""
        for _ in range(3):
            if hit is None:
                return None
            name, offset, length = hit
            try:
                return self._map(name)[offset : offset + length]
            except FileNotFoundError:
                self.look_again()
                hit = self._find(oid)
        return None

    def _pread(self, name: str, start: int, size: int) -> bytes | None:
        """`size` bytes of a pack from `start`; None if the pack is gone or shorter. The first
        `_OPEN_PACKS` packs read keep their descriptor; any other is opened for the read."""
        fd = self._fds.get(name)
        try:
            if fd is None:
                fd = os.open(self.directory / f"{name}.pack", os.O_RDONLY | getattr(os, "O_CLOEXEC", 0))
                if len(self._fds) >= _OPEN_PACKS:  # (never one closed while another thread reads it)
                    try:
                        found = os.pread(fd, size, start)
                    finally:
                        os.close(fd)
                    return found if len(found) == size else None
                if self._fds.setdefault(name, fd) != fd:  # another thread opened it first
                    os.close(fd)
                    fd = self._fds[name]
            found = os.pread(fd, size, start)
        except OSError:  # removed (gc), or closed by a refresh meanwhile: the mapped path decides
            return None
        return found if len(found) == size else None

    def peek_many(self, oids: list[str]) -> list[bytes | None]:
        """`peek` of many oids: the prefix searches and the full-oid checks done by numpy, per
        index and per pack (the views' inline step reads 100k objects; a `peek` each cost
        ~5 us). Anything not settled here (a shared prefix, not packed) goes through `peek`."""
        midx, indexes, keys, packs, rows, _ = self._merged
        try:
            raw = bytes.fromhex("".join(oids))
        except ValueError:
            return [self.peek(oid) for oid in oids]
        if len(raw) != 32 * len(oids) or not oids:
            return [self.peek(oid) for oid in oids]
        wanted = np.frombuffer(raw, np.uint8).reshape(-1, 32)
        prefixes = oid_prefixes(raw)
        found: list[bytes | None] = [None] * len(oids)
        settled = np.zeros(len(oids), bool)
        if midx is not None and midx.count:
            at = np.minimum(midx.prefixes.searchsorted(prefixes), midx.count - 1)
            hit = np.flatnonzero(midx.prefixes[at] == prefixes)
            at = at[hit]
            self._settle(found, settled, wanted, hit, midx.ordinals[at], midx.packs, midx.offsets[at],
                         midx.lengths[at])
        if len(keys):
            left = np.flatnonzero(~settled)
            at = np.minimum(keys.searchsorted(prefixes[left]), len(keys) - 1)
            same = keys[at] == prefixes[left]
            hit, at = left[same], at[same]
            ordinals = packs[at]
            offsets, lengths = np.zeros(len(hit), np.uint64), np.zeros(len(hit), np.uint64)
            for ordinal in np.unique(ordinals).tolist():
                mine = ordinals == ordinal
                entries = indexes[ordinal].entries[rows[at[mine]]]
                offsets[mine], lengths[mine] = entries["offset"], entries["length"]
            self._settle(found, settled, wanted, hit, ordinals, [index.name for index in indexes], offsets, lengths)
        for i in np.flatnonzero(~settled).tolist():
            found[i] = self.peek(oids[i])
        return found

    def _settle(self, found: list, settled: np.ndarray, wanted: np.ndarray, hit: np.ndarray, ordinals: np.ndarray,
                names: list[str], offsets: np.ndarray, lengths: np.ndarray) -> None:
        """Candidates (pack ordinal, offset, length) for the oids `hit`: each is taken when the
        record head before it in its pack names that oid and length (as `_record_is` checks)."""
        offsets, lengths = offsets.astype(np.int64), lengths.astype(np.int64)
        span = np.arange(_RECORD_HEAD.size)
        for ordinal in np.unique(ordinals).tolist():
            mine = ordinals == ordinal
            try:
                view = self._map(names[ordinal])
            except FileNotFoundError:  # removed since the index was read: `peek` decides
                continue
            pack = np.frombuffer(view, np.uint8)
            idx, offs, lens = hit[mine], offsets[mine], lengths[mine]
            ok = (offs >= len(PACK_MAGIC) + _RECORD_HEAD.size) & (offs + lens <= len(pack))
            heads = pack[np.where(ok, offs, _RECORD_HEAD.size)[:, None] - _RECORD_HEAD.size + span]
            del pack  # (an exported buffer would keep the map from closing)
            ok &= (heads[:, :32] == wanted[idx]).all(axis=1) & (heads[:, 32:].copy().view("<u8").ravel() == lens)
            starts, ends = offs[ok], offs[ok] + lens[ok]
            for i, item in zip(idx[ok].tolist(), map(view.__getitem__, map(slice, starts.tolist(), ends.tolist()))):
                found[i] = item
            settled[idx[ok]] = True

    def read(self, oid: str) -> bytes | None:
        """The stored bytes of a packed object, or None if it is not packed."""
        return self._stored(oid, self.locate(oid))

    def _map(self, name: str) -> mmap.mmap:
        """The pack mapped: kept for the first `_OPEN_PACKS` packs, any other for its caller's
        use only (a map holds a descriptor while it lives)."""
        view = self._maps.get(name)
        if view is None:
            with open(self.directory / f"{name}.pack", "rb") as handle:
                view = mmap.mmap(handle.fileno(), 0, access=mmap.ACCESS_READ)
            if len(self._maps) < _OPEN_PACKS:
                view = self._maps.setdefault(name, view)
        return view

    def oids(self) -> Iterator[str]:
        self.refresh()
        indexes = [index for index in map(self._index, sorted(self._names)) if index is not None]
        return iter([bytes(raw).hex() for index in indexes for raw in index.entries["oid"]])

    def _pack_oids(self, name: str) -> list[str]:
        index = self._index(name)
        return [] if index is None else [bytes(raw).hex() for raw in index.entries["oid"]]

    def pack_path(self, oid: str) -> Path | None:
        """The pack holding `oid`."""
        name = self.pack_name(oid)
        return None if name is None else self.directory / f"{name}.pack"

    def pack_name(self, oid: str, *, look_again: bool = True) -> str | None:
        """The name of the pack holding `oid` (its file: `pack_file`); without `look_again`,
        among the packs already known (no `stat` of the folder on a miss), once the folder
        has been looked at at all. The pack may be gone since it was known."""
        hit = self.locate(oid) if look_again else self._among_known(oid)
        return hit[0] if hit else None

    def pack_file(self, name: str) -> str:
        """Pack `name`'s file as text (no `Path` built: a put asks it)."""
        return f"{self.directory_text}/{name}.pack"

    def count(self) -> int:
        """How many packs there were when the folder was last looked at."""
        return len(self._names)

    def knows(self, oid: str) -> bool:
        """Whether `oid` is in a pack already known (as `pack_name` without `look_again`) that
        is still there: one `os.access` (~1 us). Another process may have removed it since
        (`fsck --repair` setting a damaged object aside, gc's repack, a merge); the object is
        then looked for in the packs as they are now. A save trusting a removed pack named
        an object no longer on disk."""
        hit = self._among_known(oid)
        if hit is None:
            return False
        if os.access(self.pack_file(hit[0]), os.F_OK):
            return True
        self.look_again()
        return self._find(oid) is not None

    def _among_known(self, oid: str) -> tuple[str, int, int] | None:
        """`_find` without a look at the folder, once it has been looked at at all."""
        return self.locate(oid) if self._seen_mtime == -1 else self._find(oid)

    def size_of(self, oid: str) -> int | None:
        hit = self.locate(oid)
        return hit[2] if hit else None

    def remove(self, oids: Iterable[str], *, fsync: bool = False, older_than: float | None = None,
               left_whole: list[str] | None = None) -> set[str]:
        """Drop objects: rewrite each affected pack without them (gc's repack), holding
        `MERGE_LOCK` (a merge and a repack of one pack at once would each copy what the
        other removes). A pack whose index does not match its records (each kept record's head
        is checked against its entry before it is copied: `_kept_records`) is left whole.

        With `older_than` (gc's cutoff), a pack a writer refreshed since gc judged its objects
        is left whole, and one refreshed while it is rewritten keeps them: its mtime is read
        through a descriptor after the unlink (`_unlink_pack_dated`), and if it is young the
        doomed records are copied from that descriptor into a pack of their own. A writer
        refreshing a pack checks after its utime that the pack is still there (else it looks
        again and stores the object if it is nowhere), so every refresh is seen by one side.
        Returns the objects dropped (not those of a pack left whole, nor those stored again);
        the name of each pack left whole for its index is appended to `left_whole` (gc says so)."""
        doomed, dropped = set(oids), set()
        fresh_ns = None if older_than is None else int(older_than * 1e9)
        with self.exclusive(wait=True):
            self._seen_mtime = -1  # what the packs are now, not when this process last looked
            self.refresh()
            by_pack: dict[str, list[str]] = {}
            for oid in doomed:
                hit = self.locate(oid)
                if hit:
                    by_pack.setdefault(hit[0], []).append(oid)
            for name, gone in by_pack.items():
                if fresh_ns is not None and _mtime_ns(self.directory / f"{name}.pack") > fresh_ns:
                    continue  # refreshed since gc looked: every object in it is young again
                keep = self._kept_records(name, doomed)
                if keep is None:
                    if left_whole is not None:
                        left_whole.append(name)
                    continue
                if keep:
                    write_pack(self.directory, keep, fsync=fsync)
                if fresh_ns is None:
                    _unlink_pack(self.directory, name)
                    dropped.update(gone)
                else:
                    dropped.update(set(gone) - self._unlink_unless_refreshed(name, gone, fresh_ns, fsync))
            if by_pack:
                self._seen_mtime = -1
                self.refresh()
        return dropped

    def _kept_records(self, name: str, doomed: set[str]) -> list[tuple[str, bytes]] | None:
        """The records of pack `name` a repack keeps (those not `doomed`), read at its index's
        entries once each entry is checked against the record head before it, as a merge checks
        its sources (`_checked_source`); None, and a warning, when the index is damaged (or
        gone): the pack is then left whole, for `fsck --repair`. A repack that copied the bytes
        a damaged entry pointed at had removed the only good copy of an intact object."""
        source = _checked_source(self.directory_text, name)
        if source is None:
            _log.warning("gc left pack %s whole: its index is damaged or does not match its records "
                         "(`scistack fsck --repair` rebuilds it from the pack)", name)
            return None
        try:
            keep = []
            for raw, offset, length in source.entries.tolist():
                oid = bytes(raw).hex()
                if oid not in doomed:
                    stored = os.pread(source.fd, length, offset)
                    if len(stored) != length:
                        return None
                    keep.append((oid, stored))
            return keep
        finally:
            os.close(source.fd)

    def _unlink_unless_refreshed(self, name: str, gone: list[str], fresh_ns: int, fsync: bool) -> set[str]:
        """Unlink a repacked pack; if it was refreshed before it went, store `gone` again
        (read from a descriptor opened before the unlink). Returns the objects stored again."""
        hits = [(oid, self._find(oid)) for oid in gone]
        with _unlinked(self.directory, name) as fd:
            if fd is not None and os.fstat(fd).st_mtime_ns > fresh_ns:
                back = [(oid, os.pread(fd, hit[2], hit[1])) for oid, hit in hits if hit and hit[0] == name]
                if back:
                    write_pack(self.directory, back, fsync=fsync)
                return {oid for oid, _ in back}
        return set()

    # -- merging small packs into one (see `plan_merge`) ------------------------------------
    @contextmanager
    def exclusive(self, *, wait: bool) -> Iterator[bool]:
        """Hold `MERGE_LOCK` (an flock of `pack/merge.lock`): one process at a time rewrites or
        removes packs. Yields False when another process holds it and `wait` is False, or the
        lock cannot be made (a read-only folder). Re-entrant within this process."""
        with self._merging:
            if self._merge_fd is not None:
                yield True
                return
            try:
                fd = os.open(self.directory / MERGE_LOCK, os.O_RDWR | os.O_CREAT | getattr(os, "O_CLOEXEC", 0), 0o644)
            except OSError:
                yield False
                return
            try:
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | (0 if wait else fcntl.LOCK_NB))
                except BlockingIOError:
                    yield False
                    return
                self._merge_fd = fd
                try:
                    yield True
                finally:
                    self._merge_fd = None
            finally:
                os.close(fd)

    def merge_small(self, *, fsync: bool = False, wait: bool = True, more_than: int = 1,
                    max_packs: int | None = None, max_bytes: int | None = None, dry_run: bool = False,
                    stop: Any = None) -> MergeStats:
        """Merge small packs into one (`plan_merge`) when there are more than `more_than`
        packs, first finishing any merge a killed process left half done; `max_packs` /
        `max_bytes` bound the work. Nothing saved is ever only in a file being removed:

        1. the merged pack is written under a temporary name and renamed (fsync'd with `fsync`);
        2. `pack-<id>.replaces` names the packs it replaces (temporary name, renamed);
        3. its index is renamed into place: the commit point, as for every pack;
        4. each replaced pack's index, then the pack, is unlinked; then `.replaces`.

        A process killed before 3 leaves a pack without an index (ignored by readers, removed
        by gc after its grace period) and every object where it was; after 3, objects in two
        places until the next merge or gc reads `.replaces` and finishes 4 (each replaced
        pack is removed only if the merged one's index lists all its objects). A reader that
        finds a pack gone looks at the packs again (`_stored`). With `dry_run`, only plans."""
        started = time.perf_counter()
        if not self.directory.is_dir():
            return MergeStats()
        with self.exclusive(wait=wait) as got:
            if not got:
                return MergeStats(skipped="another process is merging or repacking packs")
            listing = [entry.name for entry in os.scandir(self.directory) if entry.name.startswith("pack-")]
            sides = sorted(n for n in listing if n.endswith(REPLACES))
            interrupted = self._finish_interrupted(sides, fsync) if sides and not dry_run else 0
            if interrupted:
                listing = [entry.name for entry in os.scandir(self.directory) if entry.name.startswith("pack-")]
            names = sorted(n[:-4] for n in listing if n.endswith(".idx"))
            if len(names) <= more_than:
                return MergeStats(interrupted=interrupted, seconds=time.perf_counter() - started)
            sizes = {}
            for name in names:
                if name in self.damaged:
                    continue  # (fsck --repair first; its pack stays as it is)
                try:
                    sizes[name] = os.stat(self.directory / f"{name}.pack").st_size
                except FileNotFoundError:
                    pass
            plan = plan_merge(sizes, max_packs=max_packs, max_bytes=max_bytes)
            if dry_run or not plan:
                return MergeStats(len(plan), int(bool(plan)), 0, sum(sizes[n] for n in plan),
                                  time.perf_counter() - started, interrupted)
            merged = self._merge_packs(plan, fsync, stop)
            return merged + MergeStats(interrupted=interrupted, seconds=time.perf_counter() - started)

    def _merge_packs(self, names: list[str], fsync: bool, stop: Any = None) -> MergeStats:
        """Copy the records of `names` into one new pack (held: `MERGE_LOCK`); see `merge_small`."""
        sources: list[_Source] = []
        directory = os.fspath(self.directory)
        try:
            for name in names:
                found = _checked_source(directory, name)
                if found is not None:
                    sources.append(found)
            if len(sources) < 2:
                return MergeStats()
            entries = np.concatenate([source.entries for source in sources])
            which = np.concatenate([np.full(len(source.entries), i, np.int32) for i, source in enumerate(sources)])
            words = entries.view(np.uint8).reshape(-1, _IDX_DTYPE.itemsize)[:, :32].copy().view(">u8")
            order = np.lexsort((words[:, 3], words[:, 2], words[:, 1], words[:, 0]))
            words = words[order]
            first = np.ones(len(order), bool)  # an object in two packs is copied once
            first[1:] = (words[1:] != words[:-1]).any(axis=1)
            order = order[first]
            union = entries["oid"][order]
            name = "pack-" + blake3.blake3(union.tobytes().hex().encode()).hexdigest()[:20]
            replaced = [source.name for source in sources if source.name != name]
            if name not in {source.name for source in sources} and not _holds(self.directory, name, union):
                if (self.directory / f"{name}.idx").exists() or (stop is not None and stop()):
                    return MergeStats()  # (a pack of that name holding other objects: never overwritten)
                self._write_merged(name, sources, which[order], entries[order], fsync,
                                   max(os.fstat(source.fd).st_mtime_ns for source in sources))
            # (else a pack of exactly these objects is there already: only the others go)
            _write_replaces(self.directory, name, replaced, fsync)
            for source in replaced:
                _unlink_pack(directory, source)
            _as_young_as(self.directory / f"{name}.pack",  # (a source refreshed while it was copied)
                         max(os.fstat(source.fd).st_mtime_ns for source in sources))
            _remove_replaces(self.directory, name, fsync)
            size = os.stat(self.directory / f"{name}.pack").st_size
            return MergeStats(len(replaced), 1, len(union), size)
        finally:
            for source in sources:
                os.close(source.fd)
            self._seen_mtime = -1  # looked at again at the next use

    def _write_merged(self, name: str, sources: list[_Source], which: np.ndarray, kept: np.ndarray,
                      fsync: bool, mtime_ns: int) -> None:
        """Write the merged pack (steps 1-3 of `merge_small`): the kept records (`kept`, in oid
        order, from `sources[which]`) laid out source by source, each source's in its own
        order, copied in runs of records that lie back to back there (a small source from
        its bytes in memory, a large one by the kernel: `copy_file_range`); then its index.
        The pack gets `mtime_ns` (its youngest source's) before anyone can know it: gc's grace
        for an unreachable object in it goes on from where it was, not from the merge."""
        offsets = kept["offset"].astype(np.int64)
        sizes = kept["length"].astype(np.int64) + _RECORD_HEAD.size
        place = np.lexsort((offsets, which))  # records in the order they are written
        starts, lengths, owners = offsets[place] - _RECORD_HEAD.size, sizes[place], which[place]
        written = len(PACK_MAGIC) + np.cumsum(lengths) - lengths
        index = np.empty(len(kept), _IDX_DTYPE)
        index["oid"] = kept["oid"]
        index["length"] = kept["length"]
        index["offset"][place] = written + _RECORD_HEAD.size
        breaks = np.flatnonzero((owners[1:] != owners[:-1]) | (starts[1:] != starts[:-1] + lengths[:-1])) + 1
        run_first = np.concatenate([[0], breaks])
        run_last = np.concatenate([breaks - 1, [len(place) - 1]])
        temp = f"{self.directory}/.tmp-{secrets.token_hex(6)}.pack"
        out = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | _CLOEXEC, 0o444)
        try:
            try:
                pending = bytearray(PACK_MAGIC)
                for owner, begin, end in zip(owners[run_first].tolist(), starts[run_first].tolist(),
                                             (starts[run_last] + lengths[run_last]).tolist()):
                    if sources[owner].small:
                        data = os.pread(sources[owner].fd, end - begin, begin)
                        if len(data) != end - begin:
                            raise OSError(f"pack {sources[owner].name} ended early while it was merged")
                        pending += data
                        if len(pending) >= 1 << 20:
                            _write_all_fd(out, pending)
                            pending = bytearray()
                    else:
                        _write_all_fd(out, pending)
                        pending = bytearray()
                        _copy_range(sources[owner].fd, out, begin, end - begin)
                _write_all_fd(out, pending)
                if fsync:
                    os.fsync(out)
            finally:
                os.close(out)
            os.utime(temp, ns=(mtime_ns, mtime_ns))
            os.replace(temp, self.directory / f"{name}.pack")
        except BaseException:
            try:
                os.unlink(temp)
            except FileNotFoundError:
                pass
            raise
        idx_temp = self.directory / f".tmp-{secrets.token_hex(6)}.idx"
        with open(idx_temp, "wb") as handle:
            handle.write(_IDX_HEAD.pack(IDX_MAGIC, len(index)))
            handle.write(index.tobytes())
            _sync(handle, fsync)
        os.chmod(idx_temp, 0o444)
        _write_replaces(self.directory, name, [source.name for source in sources], fsync)  # before the commit
        os.replace(idx_temp, self.directory / f"{name}.idx")
        if fsync:
            fsync_dir(self.directory)

    def _finish_interrupted(self, sides: list[str], fsync: bool) -> int:
        """Finish the merges a killed process left half done (their `.replaces` files `sides`;
        held: `MERGE_LOCK`); how many."""
        finished = 0
        for side_name in sides:
            side = self.directory / side_name
            name = side_name[: -len(REPLACES)]
            try:
                merged = _Index(name, self.directory / f"{name}.idx")
            except FileNotFoundError:  # never committed: every object is where it was
                _remove_replaces(self.directory, name, fsync)
                finished += 1
                continue
            except CorruptPackIndexError:
                continue  # fsck names it; --repair rebuilds it, and the next merge finishes
            held = set(merged.entries["oid"].tolist())
            merged.close()
            newest = 0  # the youngest replaced pack's mtime, as it went
            for source in _replaced_packs(side, name):
                try:
                    index = _Index(source, self.directory / f"{source}.idx")
                    inside = held.issuperset(index.entries["oid"].tolist())
                    index.close()
                except FileNotFoundError:  # its index went already: only the pack is left
                    inside = True
                except CorruptPackIndexError:
                    inside = False
                if inside:
                    newest = max(newest, _unlink_pack_dated(self.directory, source))
            _as_young_as(self.directory / f"{name}.pack", newest)
            _remove_replaces(self.directory, name, fsync)
            finished += 1
        if finished:
            self._seen_mtime = -1
        return finished

    def interrupted_merges(self) -> dict[str, str]:
        """Each merge a killed process left half done: its `.replaces` file -> the state it is
        in (fsck). None while another process merges (its `.replaces` is its own, live)."""
        if not self.directory.is_dir():
            return {}
        with self.exclusive(wait=False) as got:
            if not got:
                return {}
            found = {side: self._merge_state(side) for side in self._replaces_files()}
            return {side: _MERGE_STATE[state].format(name, len(there), total)
                    for side, (state, name, there, total) in found.items()}

    def finish_interrupted_merges(self, *, fsync: bool = False) -> dict[str, str]:
        """Finish them as the next merge would (fsck --repair; after another process's merge):
        each one finished -> what was done. One whose merged index is damaged is left."""
        if not self.directory.is_dir():
            return {}
        with self.exclusive(wait=True) as got:
            if not got:
                return {}
            found = {side: self._merge_state(side) for side in self._replaces_files()}
            self._finish_interrupted(sorted(found), fsync)
            left = set(self._replaces_files())
            done = {}
            for side, (state, name, there, total) in found.items():
                if side not in left:
                    removed = sum(not (self.directory / f"{source}.pack").exists() for source in there)
                    done[side] = _MERGE_DONE[state].format(name, removed, total)
            return done

    def _replaces_files(self) -> list[str]:
        return sorted(entry.name for entry in os.scandir(self.directory)
                      if entry.name.startswith("pack-") and entry.name.endswith(REPLACES))

    def _merge_state(self, side: str) -> tuple[str, str, list[str], int]:
        """Whether the merge a `.replaces` file names was committed ("uncommitted", "damaged",
        "committed"), the merged pack, the packs it replaces still there, and how many it names."""
        name = side[: -len(REPLACES)]
        try:
            sources = _replaced_packs(self.directory / side, name)
        except FileNotFoundError:
            sources = []
        there = [source for source in sources if (self.directory / f"{source}.pack").exists()]
        try:
            _Index(name, self.directory / f"{name}.idx").close()
        except FileNotFoundError:
            return "uncommitted", name, there, len(sources)
        except CorruptPackIndexError:
            return "damaged", name, there, len(sources)
        return "committed", name, there, len(sources)

    def check_indexes(self) -> dict[str, str]:
        """Every pack whose index is damaged (fsck): skipped ones, and loaded indexes whose entries
        are unsorted or disagree with the record heads in their pack (a flipped byte)."""
        self.refresh()
        for name in sorted(self._names):
            self._index(name)  # opened and checked (a damaged one lands in self.damaged)
        found = {name: str(exc) for name, exc in self.damaged.items()}
        for name, index in list(self._indexes.items()):
            problem = self._index_problem(index)
            if problem:
                found[name] = str(CorruptPackIndexError(self.directory / f"{name}.idx", problem))
        midx = self._merged[0]
        problem = midx.problem() if midx is not None else None
        if midx is not None and not problem:
            problem = self._midx_problem(midx)
        if problem:
            found[MIDX_NAME] = str(CorruptPackIndexError(self.directory / MIDX_NAME, problem))
        return found

    def _index_problem(self, index: _Index) -> str | None:
        if index.outside:
            return (f"{index.outside} of its entries point outside its {index.pack_size}-byte pack (the pack was "
                    "cut short, or those entries are damaged)")
        oids = [bytes(raw) for raw in index.entries["oid"]]
        if oids != sorted(oids):
            return "its entries are not sorted by oid"
        pack = self._map(index.name)
        for raw, offset, length in zip(oids, index.entries["offset"].tolist(), index.entries["length"].tolist()):
            if offset < len(PACK_MAGIC) + _RECORD_HEAD.size or offset + length > len(pack) or \
                    _RECORD_HEAD.unpack_from(pack, offset - _RECORD_HEAD.size) != (raw, length):
                return f"its entry for {raw.hex()[:12]} does not match the record at byte {offset} of its pack"
        return None

    def _midx_problem(self, midx: MultiPackIndex) -> str | None:
        """Whether an entry of the multi-pack index for a pack still there disagrees with the
        record head before it in that pack (its oid's first 8 bytes, its length): written from
        a pack index that was damaged then, it hid that object after the index was rebuilt."""
        if not midx.count or int(midx.ordinals.max()) >= len(midx.packs):
            return None
        order = np.argsort(midx.ordinals, kind="stable")  # the entries pack by pack
        ends = np.cumsum(np.bincount(midx.ordinals, minlength=len(midx.packs)))
        span = np.arange(_RECORD_HEAD.size)
        for ordinal, name in enumerate(midx.packs):
            if name in self._gone or name not in self._names:
                continue
            try:
                view = self._map(name)
            except FileNotFoundError:
                continue
            first = int(ends[ordinal - 1]) if ordinal else 0
            for start in range(first, int(ends[ordinal]), 1 << 20):  # (40 bytes a head checked at once)
                mine = order[start : min(start + (1 << 20), int(ends[ordinal]))]
                pack = np.frombuffer(view, np.uint8)
                offsets, lengths = midx.offsets[mine].astype(np.int64), midx.lengths[mine]
                ok = (offsets >= len(PACK_MAGIC) + _RECORD_HEAD.size) & (lengths <= len(pack)) & \
                    (offsets + lengths.astype(np.int64) <= len(pack))
                heads = pack[np.where(ok, offsets, _RECORD_HEAD.size)[:, None] - _RECORD_HEAD.size + span]
                del pack  # (an exported buffer would keep the map from closing)
                ok &= (heads[:, :8].copy().view(">u8").ravel() == midx.prefixes[mine]) & \
                    (heads[:, 32:].copy().view("<u8").ravel() == lengths)
                if not ok.all():
                    bad = int(np.flatnonzero(~ok)[0])
                    return (f"its entry for an oid starting {int(midx.prefixes[mine[bad]]):016x} does not match the "
                            f"record at byte {int(offsets[bad])} of {name}")
        return None

    def rebuild(self, name: str, *, fsync: bool = False) -> int:
        """Rebuild one pack's index from the pack (fsck --repair); returns its record count.
        The multi-pack index is written anew from the packs' own indexes."""
        if name == MIDX_NAME:
            with self._lock:
                remove_midx(self.directory)
                self._merged = _EMPTY_MERGE
                self._seen_mtime = -1
                self.consolidate()
                midx = self._merged[0]
                return midx.count if midx is not None else 0
        with self._lock:
            count = rebuild_index(self.directory, name, fsync=fsync)
            self._seen_mtime = -1
            self._indexes.pop(name, None)
            self.damaged.pop(name, None)
            midx = open_midx(self.directory)
            named = midx is not None and name in midx.packs
            if midx is not None:
                midx.close()
            if named:  # its entries for this pack were written from the damaged index: written anew
                remove_midx(self.directory)
                self._merged = _EMPTY_MERGE
                self.consolidate()
            else:
                self.refresh()
            return count

    def disk_usage(self) -> int:
        """Bytes taken by complete packs and their indexes."""
        if not self.directory.is_dir():
            return 0
        return sum(p.stat().st_size for p in self.directory.glob("pack-*.*"))

    def incomplete_packs(self) -> list[Path]:
        """Packs without an index (interrupted writes) and leftover temporary files."""
        if not self.directory.is_dir():
            return []
        indexed = {p.stem for p in self.directory.glob("pack-*.idx")}
        return [p for p in self.directory.glob("pack-*.pack") if p.stem not in indexed] + \
            list(self.directory.glob(".tmp-*"))


# -- merging small packs ----------------------------------------------------------------------
MERGE_LOCK = "merge.lock"  # held (flock, exclusive) by whoever rewrites or removes packs
REPLACES = ".replaces"  # pack-<id>.replaces: the packs a merge into pack-<id> removes
GEOMETRIC_FACTOR = 2  # packs left alone form a progression: each at least twice the one before


@dataclass(frozen=True, slots=True)
class MergeStats:
    """What one call that merges packs did."""

    packs_merged: int = 0     # packs removed because a merged pack holds their objects
    packs_written: int = 0    # merged packs written
    objects: int = 0          # objects in the merged packs
    bytes: int = 0            # bytes of the merged packs
    seconds: float = 0.0
    interrupted: int = 0      # merges a killed process left half done, finished here
    skipped: str = ""         # why nothing was looked at (another process is merging, ...)

    def __add__(self, other: MergeStats) -> MergeStats:
        return MergeStats(self.packs_merged + other.packs_merged, self.packs_written + other.packs_written,
                          self.objects + other.objects, self.bytes + other.bytes, self.seconds + other.seconds,
                          self.interrupted + other.interrupted, self.skipped or other.skipped)


def plan_merge(sizes: dict[str, int], *, factor: float = GEOMETRIC_FACTOR, max_packs: int | None = None,
               max_bytes: int | None = None) -> list[str]:
    """The packs to merge into one, as git's `repack --geometric`: sorted by size, the largest
    packs that already form a progression (each at least `factor` times the one below) stay;
    the rest are merged, together with any pack smaller than `factor` times their total. So
    every object is copied O(log n) times over a project's life, and packs stay O(log n).

    `max_packs` / `max_bytes` bound one merge (the smallest packs first); fewer than two packs
    is no merge (an empty list)."""
    order = sorted(sizes, key=lambda name: (sizes[name], name))
    weights = [max(sizes[name], 1) for name in order]
    split = 0
    for i in range(len(order) - 1, 0, -1):
        if weights[i] < factor * weights[i - 1]:
            split = i + 1  # pack i is not in the progression either
            break
    total = sum(weights[:split])
    while split < len(order) and split and weights[split] < factor * total:
        total += weights[split]
        split += 1
    chosen, total = [], 0
    for name, weight in zip(order[:split], weights[:split]):
        if chosen and ((max_packs is not None and len(chosen) >= max_packs)
                       or (max_bytes is not None and total + weight > max_bytes)):
            break
        chosen.append(name)
        total += weight
    return chosen if len(chosen) >= 2 else []
