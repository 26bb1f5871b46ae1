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
interrupted write and readers ignore it (gc removes it after the grace period).
"""

from __future__ import annotations

import fcntl
import mmap
import os
import secrets
import struct
import threading
import weakref
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path

import blake3
import numpy as np

from scistack.errors import CorruptPackIndexError
from scistack.objects.midx import NAME as MIDX_NAME
from scistack.objects.midx import MultiPackIndex, open_midx, remove_midx, write_midx

PACK_MAGIC = b"SCIPACK1"
IDX_MAGIC = b"SCIIDX01"
_ENTRY = struct.Struct("<32sQQ")
_RECORD_HEAD = struct.Struct("<32sQ")
_PREAD = hasattr(os, "pread")
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
        out.write(IDX_MAGIC + struct.pack("<Q", len(entries)))
        out.write(b"".join(_ENTRY.pack(*e) for e in sorted(entries)))
        _sync(out, fsync)
    os.chmod(idx_temp, 0o444)
    os.replace(idx_temp, directory / f"{name}.idx")


def rebuild_index(directory: Path, name: str, *, fsync: bool = False) -> int:
    """Write `name`'s index again from its pack, which describes itself; returns its record count.

    The records are read in order (oid, length, stored bytes); a pack whose records do not end
    exactly at its end is damaged too, and nothing is written.
    """
    pack = directory / f"{name}.pack"
    with open(pack, "rb") as handle:
        data = handle.read()
    if data[: len(PACK_MAGIC)] != PACK_MAGIC:
        raise CorruptPackIndexError(pack, "the pack does not start with SCIPACK1, so its index cannot be rebuilt")
    entries, at = [], len(PACK_MAGIC)
    while at < len(data):
        if at + _RECORD_HEAD.size > len(data):
            raise CorruptPackIndexError(pack, f"the pack ends inside a record head at byte {at}")
        raw, length = _RECORD_HEAD.unpack_from(data, at)
        at += _RECORD_HEAD.size
        if at + length > len(data):
            raise CorruptPackIndexError(pack, f"a record at byte {at} claims {length} bytes past the pack's end")
        entries.append((raw, at, length))
        at += length
    _write_index(directory, name, entries, fsync)
    return len(entries)


def _sync(out, fsync: bool) -> None:
    if fsync:
        out.flush()
        os.fsync(out.fileno())


_IDX_DTYPE = np.dtype([("oid", "V32"), ("offset", "<u8"), ("length", "<u8")])


class _Index:
    """One pack's sorted index, memory-mapped: nothing is decoded until asked."""

    def __init__(self, name: str, path: Path) -> None:
        """Map and check an index: its magic, that its length is exactly its entries', and that
        every entry lies inside its pack (a damaged index raises CorruptPackIndexError)."""
        self.name = name
        with open(path, "rb") as handle:
            size = os.fstat(handle.fileno()).st_size
            if size < 16:
                raise CorruptPackIndexError(path, f"it is {size} bytes long, shorter than its 16-byte head")
            # a small index is read: a map holds a descriptor for as long as it lives (Python's
            # mmap keeps one), and a project of a pack a batch ran out of them
            self._map: mmap.mmap | bytes = (handle.read() if size <= _READ_INDEX_UNDER
                                            else mmap.mmap(handle.fileno(), 0, access=mmap.ACCESS_READ))
        try:
            if self._map[:8] != IDX_MAGIC:
                raise CorruptPackIndexError(path, f"it starts with {bytes(self._map[:8])!r}, not {IDX_MAGIC!r}")
            count = struct.unpack_from("<Q", self._map, 8)[0]
            if count * _IDX_DTYPE.itemsize != size - 16:
                raise CorruptPackIndexError(
                    path, f"its head counts {count} entries but it holds {(size - 16) / _IDX_DTYPE.itemsize:g} "
                    "(it is truncated or was extended)")
            self.entries = np.frombuffer(self._map, _IDX_DTYPE, count, offset=16)
            pack_size = os.stat(path.with_suffix(".pack")).st_size
            ends = self.entries["offset"] + self.entries["length"]
            if count and (int(ends.max()) > pack_size or int(self.entries["offset"].min()) < len(PACK_MAGIC)):
                raise CorruptPackIndexError(path, f"an entry points outside its {pack_size}-byte pack")
        except (CorruptPackIndexError, FileNotFoundError):
            self.entries = np.empty(0, _IDX_DTYPE)
            self.close()
            raise
        self.raw = self._map  # entries are read with struct too: faster than numpy scalars

    def prefixes(self) -> np.ndarray:
        """The first 8 bytes of each oid as big-endian integers (the sort order of the oids)."""
        return self.entries.view(np.uint8).reshape(-1, _IDX_DTYPE.itemsize)[:, :8].copy().view(">u8").ravel()

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


_EMPTY_MERGE: tuple = (None, [], np.empty(0, np.uint64), np.empty(0, np.int32), np.empty(0, np.int64))
MERGE_LOCK = "merge.lock"  # held (flock, exclusive) by whoever rewrites or removes packs
MIDX_AFTER = 50_000  # objects in packs the multi-pack index leaves out before it is written anew


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
        self._names: set[str] = set()  # every complete pack (it has an index file)
        self._indexes: dict[str, _Index] = {}  # opened (and checked) as needed
        # (multi-pack index, the other packs' indexes, their sorted 8-byte oid prefixes, which
        # index each is in, its row there): replaced whole, so a reader in another thread
        # never mixes two generations
        self._merged: tuple[MultiPackIndex | None, list[_Index], np.ndarray, np.ndarray, np.ndarray] = _EMPTY_MERGE
        self._maps: dict[str, mmap.mmap] = {}
        self._fds: dict[str, int] = {}  # packs read by `pread` (`peek`), closed with the set
        weakref.finalize(self, _close_fds, self._fds)
        self._seen_mtime = -1
        self._lock = threading.RLock()
        self.damaged: dict[str, CorruptPackIndexError] = {}  # pack name -> why its index was skipped
        self._gone: frozenset[str] = frozenset()  # packs the multi-pack index names that are gone
        self._merging = threading.RLock()  # this process's hold of MERGE_LOCK (see `exclusive`)
        self._merge_fd: int | None = None

    def refresh(self) -> bool:
        """Load indexes of packs added (or drop those removed) since last time; cheap when none."""
        try:
            mtime = os.stat(self.directory).st_mtime_ns
        except FileNotFoundError:
            return False
        if mtime == self._seen_mtime:
            return False
        with self._lock:
            names = {p.stem for p in self.directory.glob("pack-*.idx")}
            if self._names - names:  # a pack was removed (gc repacked): start again
                for index in self._indexes.values():
                    index.close()
                self._indexes.clear()
                self._maps.clear()  # (not closed: another thread may be slicing one; each
                # map closes when its last user lets go, and a removed pack's map still reads)
                _close_fds(self._fds)
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
            if sum(len(index.entries) for index in extras) >= MIDX_AFTER and self._write_midx():
                written = open_midx(self.directory)
                if written is not None and set(written.packs) <= names:
                    midx, extras = written, [i for i in extras if i.name not in set(written.packs)]
                    self._gone = frozenset()
            self._merge(midx, extras)
            self._seen_mtime = mtime  # (a write of the index above changed it: looked at again next time)
        return True

    def consolidate(self) -> bool:
        """Write the multi-pack index over every pack now (gc, tests); False if it could not."""
        with self._lock:
            self.refresh()
            written = self._write_midx()
            self._seen_mtime = -1
            self.refresh()
            return written

    def _write_midx(self) -> bool:
        parts = [(i, index) for i, index in enumerate(filter(None, map(self._index, sorted(self._names))))]
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
        merged = np.concatenate(keys).astype(np.uint64)
        order = np.argsort(merged, kind="stable")
        self._merged = (midx, indexes, merged[order],
                        np.concatenate([np.full(len(k), i, np.int32) for i, k in enumerate(keys)])[order],
                        np.concatenate([np.arange(len(k)) for k in keys])[order])

    def _find(self, oid: str) -> tuple[str, int, int] | None:
        if self._merged[0] is None and not len(self._merged[2]):
            return None  # no pack known (a project of single saves): ~5 us off each load
        try:
            raw = bytes.fromhex(oid)
        except ValueError:
            return None
        if len(raw) != 32:
            return None
        midx, indexes, keys, packs, rows = self._merged
        prefix = raw[:8]
        if midx is not None:
            gone = self._gone
            for name, offset, length in midx.candidates(prefix):
                if name not in gone and self._record_is(name, offset, length, raw):
                    return name, offset, length
        i = int(keys.searchsorted(np.uint64(int.from_bytes(prefix, "big"))))
        while i < len(keys):
            index = indexes[packs[i]]
            found, offset, length = _ENTRY.unpack_from(index.raw, 16 + int(rows[i]) * _ENTRY.size)
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
        damaged (it can hide an object, never return a wrong one)."""
        self.refresh()
        if self._merged[0] is None:
            return None
        raw = bytes.fromhex(oid)
        for name in sorted(self._names):
            index = self._index(name)
            if index is None:
                continue
            at = int(index.prefixes().astype(np.uint64).searchsorted(np.uint64(int.from_bytes(raw[:8], "big"))))
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
                with self._lock:
                    self._seen_mtime = -1
                    self.refresh()
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
        midx, indexes, keys, packs, rows = self._merged
        try:
            raw = bytes.fromhex("".join(oids))
        except ValueError:
            return [self.peek(oid) for oid in oids]
        if len(raw) != 32 * len(oids) or not oids:
            return [self.peek(oid) for oid in oids]
        wanted = np.frombuffer(raw, np.uint8).reshape(-1, 32)
        prefixes = np.frombuffer(raw, ">u8").reshape(-1, 4)[:, 0].astype(np.uint64)
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

    def pack_path(self, oid: str, *, look_again: bool = True) -> Path | None:
        """The pack holding `oid`; without `look_again`, among the packs already known (no
        `stat` of the folder on a miss), once the folder has been looked at at all."""
        hit = self.locate(oid) if look_again else self._among_known(oid)
        return self.directory / f"{hit[0]}.pack" if hit else None

    def knows(self, oid: str) -> bool:
        """Whether `oid` is in a pack already known (as `pack_path` without `look_again`)."""
        return self._among_known(oid) is not None

    def _among_known(self, oid: str) -> tuple[str, int, int] | None:
        """`_find` without a look at the folder, once it has been looked at at all."""
        return self.locate(oid) if self._seen_mtime == -1 else self._find(oid)

    def size_of(self, oid: str) -> int | None:
        hit = self.locate(oid)
        return hit[2] if hit else None

    def remove(self, oids: Iterable[str], *, fsync: bool = False) -> None:
        """Drop objects: rewrite each affected pack without them (gc's repack), holding
        `MERGE_LOCK` (a merge and a repack of one pack at once would each copy what the
        other removes). A pack one of whose kept objects cannot be read is left whole."""
        doomed = set(oids)
        with self.exclusive(wait=True):
            self._seen_mtime = -1  # what the packs are now, not when this process last looked
            self.refresh()
            by_pack: dict[str, list[str]] = {}
            for oid in doomed:
                hit = self.locate(oid)
                if hit:
                    by_pack.setdefault(hit[0], []).append(oid)
            for name in by_pack:
                keep = []
                for oid in self._pack_oids(name):
                    if oid not in doomed:
                        stored = self.read(oid)
                        if stored is None:  # (it had written an empty record in its place)
                            break
                        keep.append((oid, bytes(stored)))
                else:
                    if keep:
                        write_pack(self.directory, keep, fsync=fsync)
                    _unlink_pack(self.directory, name)
            if by_pack:
                self._seen_mtime = -1
                self.refresh()

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
        if problem:
            found[MIDX_NAME] = str(CorruptPackIndexError(self.directory / MIDX_NAME, problem))
        return found

    def _index_problem(self, index: _Index) -> str | None:
        oids = [bytes(raw) for raw in index.entries["oid"]]
        if oids != sorted(oids):
            return "its entries are not sorted by oid"
        pack = self._map(index.name)
        for raw, offset, length in zip(oids, index.entries["offset"].tolist(), index.entries["length"].tolist()):
            if offset < len(PACK_MAGIC) + _RECORD_HEAD.size or \
                    _RECORD_HEAD.unpack_from(pack, offset - _RECORD_HEAD.size) != (raw, length):
                return f"its entry for {raw.hex()[:12]} does not match the record at byte {offset} of its pack"
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
        count = rebuild_index(self.directory, name, fsync=fsync)
        self._seen_mtime = -1
        self._indexes.pop(name, None)
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
