"""The multi-pack index: where every object of many packs is, in one memory-mapped file.

Each pack has its own sorted index (pack.py). Finding an object among P packs means either P
binary searches or one search in an array merged from all of them; merging a million entries
took ~0.12 s and ~20 bytes of memory per object in every process that opened the project (at
10M objects: over a second and 200 MB before the first load). As git's multi-pack-index does,
the merged array is kept on disk instead: a process maps it and searches it, touching a few
pages per lookup, and merges in memory only the packs written since (see `PackSet`).

Layout (`objects/pack/multi-pack-index`, little-endian unless said):
  b"SCIMIDX2", uint32 P, uint32 0, uint64 N
  P pack names, 32 bytes each (ASCII, NUL-padded)
  N uint64: the first 8 bytes of each oid read as a big-endian number, sorted (stored
    little-endian like the rest: a search on a byte-swapped array would copy it every time)
  N uint32: the pack (0..P-1) each object is in
  N uint64: the offset of its stored bytes in that pack;  N uint64: their length
  32 bytes: blake3 of everything before (checked by fsck, not on open: that would read it all)
A prefix names a candidate only: the full oid is compared with the record head in the pack
(pack.py), so a damaged index can hide an object (the per-pack indexes are then searched) but
never hand out the wrong one. The file is written to a temporary name and renamed.
"""

from __future__ import annotations

import bisect
import mmap
import os
import secrets
import struct
import sys
from pathlib import Path

import blake3
import numpy as np

NAME = "multi-pack-index"
MAGIC = b"SCIMIDX2"  # 1 stored the prefixes big-endian (slow to search)
_HEAD = struct.Struct("<8sIIQ")
_NAME_BYTES = 32


class MultiPackIndex:
    """A mapped multi-pack index; `None` from `open_midx` when absent or unreadable."""

    def __init__(self, path: Path, data: mmap.mmap, packs: list[str], count: int, at: int) -> None:
        self.path, self._map, self.packs, self.count = path, data, packs, count
        self.prefixes = np.frombuffer(data, "<u8", count, at)
        self.ordinals = np.frombuffer(data, "<u4", count, at + 8 * count)
        self.offsets = np.frombuffer(data, "<u8", count, at + 12 * count)
        self.lengths = np.frombuffer(data, "<u8", count, at + 20 * count)
        self._body_end = at + 28 * count
        # the same columns as plain-int sequences (native order: little-endian machines; numpy
        # arrays elsewhere, whose items compare as ints too)
        native = sys.byteorder == "little"
        self._prefix_ints, self._ordinal_ints, self._offset_ints, self._length_ints = (
            (memoryview(data)[start : start + size * count].cast(code) if native else array)
            for start, size, code, array in ((at, 8, "Q", self.prefixes), (at + 8 * count, 4, "I", self.ordinals),
                                            (at + 12 * count, 8, "Q", self.offsets),
                                            (at + 20 * count, 8, "Q", self.lengths)))

    def candidates(self, prefix: bytes) -> list[tuple[str, int, int]]:
        """(pack, offset, length) of every object whose oid starts with these 8 bytes.

        Searched through memoryviews of the map (plain ints, `bisect`): a load makes one
        search, and numpy's per-call and per-scalar costs were most of it (~3 us of ~7)."""
        key = int.from_bytes(prefix, "big")
        i = bisect.bisect_left(self._prefix_ints, key)
        found = []
        while i < self.count and self._prefix_ints[i] == key:
            found.append((self.packs[self._ordinal_ints[i]], self._offset_ints[i], self._length_ints[i]))
            i += 1
        return found

    def problem(self) -> str | None:
        """What is wrong with the file (fsck): its checksum, or its order."""
        body = memoryview(self._map)[: self._body_end]
        if blake3.blake3(body).digest() != self._map[self._body_end : self._body_end + 32]:
            return "its checksum does not match its content"
        if self.count and bool(np.any(self.prefixes[1:] < self.prefixes[:-1])):
            return "its entries are not sorted"
        if self.count and int(self.ordinals.max()) >= len(self.packs):
            return "an entry names a pack it does not list"
        return None

    def close(self) -> None:
        self.prefixes = self.ordinals = self.offsets = self.lengths = np.empty(0)
        # dropped, not released: another thread may be searching them (the map then stays
        # open until the last view goes, as with the arrays)
        self._prefix_ints = self._ordinal_ints = self._offset_ints = self._length_ints = ()
        try:
            self._map.close()
        except BufferError:  # a view is still alive somewhere: the GC closes it
            pass


def open_midx(directory: Path) -> MultiPackIndex | None:
    """Map the directory's multi-pack index, if there is a readable one (its size must be
    exactly what its head says; its content is checked by `problem`, for fsck)."""
    path = directory / NAME
    try:
        with open(path, "rb") as handle:
            size = os.fstat(handle.fileno()).st_size
            if size < _HEAD.size:
                return None
            data = mmap.mmap(handle.fileno(), 0, access=mmap.ACCESS_READ)
    except (FileNotFoundError, ValueError):
        return None
    magic, packs, _, count = _HEAD.unpack_from(data, 0)
    at = _HEAD.size + packs * _NAME_BYTES
    if magic != MAGIC or size != at + 28 * count + 32:
        data.close()
        return None
    names = [bytes(data[_HEAD.size + i * _NAME_BYTES : _HEAD.size + (i + 1) * _NAME_BYTES]).rstrip(b"\0").decode(
        "ascii", "replace") for i in range(packs)]
    return MultiPackIndex(path, data, names, count, at)


def write_midx(directory: Path, packs: list[str], prefixes: np.ndarray, ordinals: np.ndarray,
               offsets: np.ndarray, lengths: np.ndarray, *, fsync: bool = False) -> None:
    """Write the index of these entries (sorted here by prefix), replacing any earlier one."""
    order = np.argsort(prefixes, kind="stable")
    names = b"".join(name.encode("ascii").ljust(_NAME_BYTES, b"\0") for name in packs)
    body = b"".join([
        _HEAD.pack(MAGIC, len(packs), 0, len(order)), names,
        prefixes[order].astype("<u8").tobytes(), ordinals[order].astype("<u4").tobytes(),
        offsets[order].astype("<u8").tobytes(), lengths[order].astype("<u8").tobytes()])
    temp = directory / f".tmp-{secrets.token_hex(6)}.midx"
    with open(temp, "wb") as out:
        out.write(body)
        out.write(blake3.blake3(body).digest())
        if fsync:
            out.flush()
            os.fsync(out.fileno())
    os.chmod(temp, 0o444)
    os.replace(temp, directory / NAME)


def remove_midx(directory: Path) -> None:
    try:
        os.unlink(directory / NAME)
    except FileNotFoundError:
        pass
