"""Where each object is among the bucket's packs: every pack's own index, and one merged search.

A lab's bucket holds a pack per batch, and packs there are never merged (other machines read
them), so a project gathers thousands. Looking an object up pack by pack cost a binary search
per pack (numpy's search over 32-byte oids: ~13 us each): a load on a machine that had not
cached the value took 8 ms at 1,000 packs, and a batch slowed down with every pack before it
(each small object it saves is looked up). `PackTable` keeps the packs' indexes by name, as
the dict it replaces did, and answers `locate` from merged arrays: the oids' first 8 bytes as
sorted integers (searched by `bisect`, as the local multi-pack index is) and the full oids
beside them, so a candidate is confirmed before it is named.

New packs go into a small merged level first; it is merged into the large one when it grows to
an eighth of it (numpy's stable sort merges two sorted runs in linear time), so adding a pack
costs in proportion to the small level, not to the project. A pack taken out (gc, or no longer
listed in the bucket) makes both levels be rebuilt at the next lookup.
"""

from __future__ import annotations

import bisect
import threading
from collections.abc import Iterator, MutableMapping

import numpy as np

from scistack.objects.pack import oid_prefixes

_SMALL_LEVEL = 1 << 16  # entries the small level may hold before it joins the large one, at least


class _Level:
    """Sorted entries of some packs: prefix (first 8 oid bytes, big-endian, as an int), oid,
    the pack's ordinal, offset and length. The columns are also held as memoryviews (and the
    oids as bytes), which `bisect`, indexing and slicing read as plain ints and bytes, without
    numpy's per-call and per-scalar costs (as the multi-pack index's `candidates` does)."""

    def __init__(self, prefixes: np.ndarray, oids: np.ndarray, ordinals: np.ndarray,
                 offsets: np.ndarray, lengths: np.ndarray) -> None:
        self.prefixes, self.oids, self.ordinals = prefixes, oids, ordinals
        self.offsets, self.lengths = offsets, lengths
        self._prefix_ints, self._ordinal_ints, self._offset_ints, self._length_ints = (
            memoryview(np.ascontiguousarray(column, dtype=dtype)).cast("B").cast(code)
            for column, dtype, code in ((prefixes, np.uint64, "Q"), (ordinals, np.uint32, "I"),
                                        (offsets, np.uint64, "Q"), (lengths, np.uint64, "Q")))
        self._oid_bytes = oids.tobytes()

    def __len__(self) -> int:
        return len(self.prefixes)

    def find(self, prefix: int, oid: bytes) -> list[tuple[int, int, int]]:
        ints, oids = self._prefix_ints, self._oid_bytes
        i = bisect.bisect_left(ints, prefix)
        found = []
        while i < len(ints) and ints[i] == prefix:
            if oids[32 * i : 32 * i + 32] == oid:
                found.append((self._ordinal_ints[i], self._offset_ints[i], self._length_ints[i]))
            i += 1
        return found


def _merge(parts: list[tuple[np.ndarray, ...]]) -> _Level:
    """One sorted level from sorted (or unsorted) parts: a stable sort of runs already in
    order merges them in linear time (timsort)."""
    columns = [np.concatenate([part[c] for part in parts]) if parts else np.empty(0) for c in range(5)]
    prefixes, oids, ordinals, offsets, lengths = columns
    if not parts:
        return _Level(np.empty(0, np.uint64), np.empty(0, "V32"), np.empty(0, np.uint32),
                      np.empty(0, np.uint64), np.empty(0, np.uint64))
    order = np.argsort(prefixes, kind="stable")
    return _Level(prefixes[order], oids[order], ordinals[order], offsets[order], lengths[order])


def _level_columns(level: _Level) -> tuple[np.ndarray, ...]:
    return level.prefixes, level.oids, level.ordinals, level.offsets, level.lengths


class PackTable(MutableMapping):
    """Pack name -> its index entries (a structured array: oid V32, offset, length), with
    `locate(oid)`: every (pack, offset, length) holding it, in one search per level."""

    def __init__(self) -> None:
        self._entries: dict[str, np.ndarray] = {}
        self._ordinal: dict[str, int] = {}   # pack name -> its number in the levels
        self._names: list[str | None] = []  # number -> name (None: taken out)
        self._large = _merge([])
        self._small = _merge([])
        self._stale = False                  # a pack was taken out or replaced: rebuild first
        self._lock = threading.Lock()        # (uploads add packs on the store's pool threads)

    # -- the mapping ---------------------------------------------------------------------------
    def __getitem__(self, name: str) -> np.ndarray:
        return self._entries[name]

    def __setitem__(self, name: str, entries: np.ndarray) -> None:
        self.add({name: entries})

    def add(self, packs: dict[str, np.ndarray]) -> None:
        """Know these packs (name -> index entries). Several at once (opening a project reads
        every kept index) are merged whole at the first lookup, which a process that finds
        every value in its cache never makes; one (a batch's upload) joins the small level."""
        with self._lock:
            for name, entries in packs.items():
                if name in self._entries:
                    self._forget(name)
                self._entries[name] = entries
                self._ordinal[name] = len(self._names)
                self._names.append(name)
            if len(packs) > 1:
                self._stale = True
            if self._stale or not packs:
                return  # (rebuilt whole at the next lookup)
            small = _merge([_level_columns(self._small)] + [self._columns(n, e) for n, e in packs.items()])
            if len(small) > max(_SMALL_LEVEL, len(self._large) // 8):
                self._large, self._small = _merge([_level_columns(self._large), _level_columns(small)]), _merge([])
            else:
                self._small = small

    def __delitem__(self, name: str) -> None:
        with self._lock:
            del self._entries[name]
            self._forget(name)

    def __iter__(self) -> Iterator[str]:
        return iter(self._entries)

    def __len__(self) -> int:
        return len(self._entries)

    def __contains__(self, name: object) -> bool:
        return name in self._entries

    # -- the search ----------------------------------------------------------------------------
    def locate(self, oid: bytes) -> Iterator[tuple[str, int, int]]:
        """(pack, offset, length) of every pack holding the object `oid` (32 raw bytes)."""
        with self._lock:
            if self._stale:
                self._rebuild()
            levels, names = (self._large, self._small), self._names
        prefix = int.from_bytes(oid[:8], "big")
        found = []
        for level in levels:
            for ordinal, offset, length in level.find(prefix, oid):
                name = names[ordinal]
                if name is not None:
                    found.append((name, offset, length))
        return iter(found)

    def _columns(self, name: str, entries: np.ndarray) -> tuple[np.ndarray, ...]:
        oids = np.ascontiguousarray(entries["oid"])
        return (oid_prefixes(oids), oids, np.full(len(entries), self._ordinal[name], dtype=np.uint32),
                entries["offset"].astype(np.uint64), entries["length"].astype(np.uint64))

    def _forget(self, name: str) -> None:
        self._names[self._ordinal.pop(name)] = None
        self._stale = True

    def _rebuild(self) -> None:
        self._names = list(self._entries)
        self._ordinal = {name: i for i, name in enumerate(self._names)}
        self._large = _merge([self._columns(name, entries) for name, entries in self._entries.items()])
        self._small = _merge([])
        self._stale = False
