"""Loose-object files under `.scistack/objects/ab/cdef…`, as git keeps them.

Write path (hazards first): a put hashes the payload in place, then writes a temporary file
*in the destination directory* and renames it over the final name, so a reader or a crash
never sees a half-written object and two processes writing the same object both succeed.
Putting an object that already exists only refreshes its mtime: gc deletes unreferenced
objects older than a grace period, and a concurrent save about to reference an old object
must make it young again. Files are made read-only.

Compression is decided per object: zstd is kept only where it saves >= 10 % (noisy floats
barely compress; masks and zeros compress enormously). Large payloads are judged on samples
and streamed, so peak memory stays near the payload size. The oid is over the uncompressed
bytes, so this choice never changes an id.

Read path: every read verifies the blake3 hash. Memory is never set by a file's own claims:
a compressed object is allocated whole only when its header's length is within the load limit
(`max_load_bytes`, `$SCISTACK_MAX_LOAD_BYTES`, half the machine's memory by default) and within
what its frame plausibly holds (8x its compressed size, or 64 MB); beyond that its stream is
first hashed in 1 MB steps, so a small crafted file claiming gigabytes costs time, not memory.
A genuine object over the limit raises ObjectTooLargeError ("load it lazily"), a forged one
CorruptObjectError. Large raw objects are memory-mapped and allocate nothing.
"""

from __future__ import annotations

import atexit
import logging
import mmap
import os
import secrets
import threading
import time
import weakref
from collections.abc import Callable, Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

import blake3
import numpy as np
import zstandard

from scistack.errors import (ConfigurationError, CorruptObjectError, ObjectNotFoundError, ObjectTooLargeError,
                             ReadOnlyProjectError, storage_full)
from scistack.objects._proc import pid_started, process_gone, process_place
from scistack.objects.canonical_json import REF_MARK
from scistack.objects.chunked import chunk_labels, parse_manifest
from scistack.objects.gate import PRUNE_FLOOR, WritersGate
from scistack.objects.hashing import KINDS, Buffer, hash_bytes, object_header, payload_length
from scistack.objects.oid import Oid, is_valid_oid, oid_relpath, validate_oid
from scistack.objects import pagecache, shuffle
from scistack.objects.pack import MergeStats, PackSet, fsync_dir, write_pack
from scistack.objects.store import Freed, ObjectStore, StoredObject
from scistack.objects.forks import hold_across_fork

log = logging.getLogger(__name__)

ZSTD_MAGIC = b"\x28\xb5\x2f\xfd"
SKIP_MAGIC = shuffle.SKIP_MAGIC  # a shuffled chunk's first frame (objects/shuffle.py)
MIN_SAVING = 0.10            # keep zstd only when it saves at least this fraction
_SMALL = 1 << 20             # below this, compress whole payloads in memory
_SAMPLE = 64 << 10           # large payloads: judge compressibility on 3 samples this size
_NEVER_COMPRESS_BELOW = 4096  # a loose file takes a 4 KB block anyway, and zstd's per-call
                              # setup (~25 us) would dominate the save of a small value
_TEMP_PREFIX = ".tmp-"
_ASIDE = f"{_TEMP_PREFIX}gc-"  # a loose object gc set aside for its last look (`_unlink_unless_fresh`)
_ONE_THREAD_MAX = 16 << 20  # larger payloads are compressed by zstd's own worker threads
_YOUNG_FOR = PRUNE_FLOOR / 4  # seconds an object this process made young is taken as still there
_YOUNG_KEPT = 1 << 18         # objects `_young` remembers before starting again (~30 MB)
_MAX_BUFFER = 64 << 20       # a batch writes a pack at least every 64 MB of small objects
_TRUSTED_ALLOC = 64 << 20    # allocate up to this much (or _TRUSTED_RATIO x the compressed size)
_TRUSTED_RATIO = 8           # on a header's word; beyond, its stream is hashed first
_STREAM_STEP = 1 << 20
_FIRST_READ = 64 << 10       # a load reads this much before asking a file's size
LIMIT_ENV = "SCISTACK_MAX_LOAD_BYTES"
# A writer that closes (or exits) with more packs than this merges small ones, as git's
# gc.autoPackLimit; one such merge copies at most AUTO_MAX_PACKS packs / AUTO_MAX_BYTES
# (docs/architecture.md §3 has the measured costs these bound).
AUTO_PACK_LIMIT = 50
AUTO_MAX_PACKS = 500
AUTO_MAX_BYTES = 64 << 20
RUN_MERGE_EVERY_S = 60.0  # a writer merges such a slice mid-run at most this often
_GC_ROUND_BYTES = 4 << 30  # gc merges in rounds of at most this much (memory: ~100 B an object)


def default_load_limit() -> int:
    """`$SCISTACK_MAX_LOAD_BYTES`, else half of physical memory (a value is loaded whole)."""
    text = os.environ.get(LIMIT_ENV, "").strip()
    if text:
        try:
            return max(0, int(text))
        except ValueError:
            raise ConfigurationError(f"{LIMIT_ENV}={text!r} is not a number of bytes (e.g. 4000000000)") from None
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") // 2
    except (ValueError, OSError, AttributeError):
        return 8 << 30



def kind_in_stored(stored: Buffer, decompressor: zstandard.ZstdDecompressor | None = None) -> str:
    """The kind an object's stored bytes name in their header, read without verifying them
    (`kind_of`: gc's walk asks it of every leaf); "?" when the header cannot be read."""
    head = bytes(stored[:64])
    if head[:4] in (ZSTD_MAGIC, SKIP_MAGIC):
        try:
            head = (decompressor or zstandard.ZstdDecompressor()).stream_reader(bytes(stored)).read(40)
        except zstandard.ZstdError:
            return "?"
    return head.partition(b" ")[0].decode("ascii", "replace") or "?"

class LocalObjectStore(ObjectStore):
    """A directory of loose, optionally zstd-compressed, read-only object files."""

    def __init__(self, root: str | os.PathLike, *, fsync: bool = False,
                 max_load_bytes: int | None = None, read_only: str | None = None) -> None:
        """`fsync=True` also survives power loss; without it a save survives a killed process.
        `max_load_bytes` bounds the size of a compressed object loaded whole (see above).
        `read_only` (why, as a sentence) refuses every write before it touches the folder."""
        self.root = Path(root)
        self.read_only = read_only
        self.max_load_bytes = default_load_limit() if max_load_bytes is None else max_load_bytes
        self._root_text = os.fspath(self.root)
        self.fsync = fsync
        self._made_dirs: set[str] = set()
        # zstd contexts are not thread-safe (a shared one writes corrupt frames when two
        # threads compress at once), so each thread gets its own.
        self._zstd = threading.local()
        self.packs = PackSet(self.root / "pack")
        self._batch_depth = 0
        self._buffer: dict[str, bytes] = {}
        self._buffer_bytes = 0
        self._buffer_lock = threading.RLock()  # (an RLock: a fork holds it, see `_before_fork`)
        _STORES.add(self)
        self._refreshed: dict[str, float] = {}
        self._young: dict[str, float] = {}  # oid -> when this process last made it young (`_made_young`)
        self._young_gate = 0  # `gate.left` when `_young` was started
        self.gate = WritersGate(self.root)  # held shared from the first write (see gate.py)
        self.auto_merge = True  # (off for a lab's read-through cache: see s3.py)
        self.checks_parts = True  # a manifest's chunks made young before it is named (`wait_uploads`;
        # off for a lab's cache, whose bound drops them: the bucket's copies are checked, s3.py)
        self._parts: set[str] = set()
        self._parts_lock = threading.Lock()  # (new in a forked child: `_after_fork_in_child`)
        self.on_pack: Callable[[str], None] | None = None  # told each pack this store writes (a lab
        # cache's go up to the bucket: see s3.py), the one a batch's full buffer writes too
        self._wrote_pack = 0  # the pid that wrote a pack through this store (0: none)
        self._merged_at = time.monotonic()  # (`_merge_during_run`: a short script never merges mid-run)

    def __reduce__(self) -> tuple:
        """Pickled as where it is (a lazy value sent to a dask worker reopens its store there)."""
        return _reopen, (self._root_text, self.fsync, self.max_load_bytes)

    def path_of(self, oid: str) -> Path:
        """The file that holds `oid` (validated first)."""
        return self.root / oid_relpath(validate_oid(oid))

    def _contexts(self) -> tuple[zstandard.ZstdCompressor, zstandard.ZstdDecompressor]:
        """This thread's (compressor, decompressor) for small objects."""
        pair = getattr(self._zstd, "pair", None)
        if pair is None:
            pair = self._zstd.pair = (zstandard.ZstdCompressor(level=1), zstandard.ZstdDecompressor())
        return pair

    # -- write -------------------------------------------------------------------------
    def _refuse_writes(self) -> None:
        if self.read_only:
            raise ReadOnlyProjectError(self.read_only)

    def _write(self, oid: Oid, kind: str, parts: Sequence[Buffer]) -> None:
        self._refuse_writes()
        self.gate.enter()
        if kind == "chunked" and self.checks_parts:
            self._note_parts(parts)
        if oid in self._buffer:
            return
        if self._refresh_packed(oid, look_again=False):
            self._note_young(oid)
            return
        length = payload_length(parts)
        if self._batch_depth and length < _SMALL:
            # No probe for a loose copy: a failed lookup costs more than the record, and a
            # fresh packed duplicate is as valid (and as young, for gc) as refreshing it.
            self._buffer_object(oid, self._stored_small(object_header(kind, length), parts, length))
            return
        rel = oid_relpath(oid)
        final = os.path.join(self.root, rel)
        if _touch(final):  # exists: refresh mtime (gc grace period), nothing else to do
            self._note_young(oid)
            return
        header = object_header(kind, length)
        directory = os.path.join(self.root, rel[:2])
        temp = os.path.join(directory, f"{_TEMP_PREFIX}{os.getpid()}-{secrets.token_hex(6)}")
        try:
            if rel[:2] not in self._made_dirs:
                os.makedirs(directory, exist_ok=True)
                self._made_dirs.add(rel[:2])
            fd = _create_read_only(temp, directory)
            with open(fd, "wb", buffering=0 if length < _SMALL else -1) as out:
                self._write_content(out, header, parts, length)
                if self.fsync:
                    out.flush()
                    os.fsync(out.fileno())
            os.replace(temp, final)
        except BaseException as exc:
            _unlink_quietly(temp)
            full = storage_full(exc, f"the object store {self.root}")
            if full is not None and full is not exc:
                raise full from None
            raise
        if self.fsync:
            fsync_dir(directory)
        self._note_young(oid)

    def _note_parts(self, parts: Sequence[Buffer]) -> None:
        """A chunked manifest is written: its chunks are made young before it is named
        (`wait_uploads`). (Not here: an import or a copy may write a manifest before its chunks.)"""
        try:
            named = [oid for oid, _ in chunk_labels(parse_manifest(b"".join(bytes(p) for p in parts)))]
        except (ValueError, KeyError, TypeError):  # (not one this code wrote: nothing to check)
            return
        with self._parts_lock:
            self._parts.update(named)

    def wait_uploads(self) -> None:
        """Before a name is journalled: each chunk of a manifest written since is made young, as
        `freshen` does (free for one this process wrote less than `_YOUNG_FOR` ago). The
        writers' gate makes a pruning gc beside this writer keep `PRUNE_FLOOR` (an hour), not
        the writer's whole save: a chunked save running longer had its first chunks deleted,
        and returned naming them. One gone raises, and nothing is named."""
        if not self._parts:  # (each stays in it until made young: another thread's name waits)
            return
        with self._parts_lock:
            named = list(self._parts)
            gone = [oid for oid in named if not self.freshen(oid)]
            self._parts.difference_update(named)
        if gone:
            raise ObjectNotFoundError(gone[0], (
                f"it is a chunk of a value being saved, deleted by a gc with a short grace "
                f"(--prune=now) in another process while this save ran (over "
                f"{PRUNE_FLOOR / 3600:.0f} h: beside an open writer such a gc keeps only what is "
                f"younger); nothing was named. Save the value again ({len(gone)} chunk(s) are gone)"))

    def _stored_small(self, header: bytes, parts: Sequence[Buffer], length: int) -> bytes:
        """What a small object's file (or pack record) holds: raw, or zstd when it pays."""
        raw = header + b"".join(parts)
        if length < _NEVER_COMPRESS_BELOW:
            return raw
        packed = self._contexts()[0].compress(raw)
        return packed if len(packed) <= (1 - MIN_SAVING) * len(raw) else raw

    def _write_content(self, out, header: bytes, parts: Sequence[Buffer], length: int) -> None:
        if length < _SMALL:
            _write_all(out, self._stored_small(header, parts, length))
            return
        form = shuffle.choose(_samples(parts, length), length, header.partition(b" ")[0].decode(), MIN_SAVING)
        if form:  # an array chunk, shuffled (objects/shuffle.py)
            for stored in shuffle.encode(header, b"".join(parts) if len(parts) > 1 else parts[0], form):
                _write_all(out, stored)
        elif form == 0:
            # chunks (<= 16 MB) are compressed two at a time by the chunk writer: one thread
            # each compresses ~1.5x faster on 2 cores than each spawning its own workers
            cctx = zstandard.ZstdCompressor(level=1, threads=-1 if length > _ONE_THREAD_MAX else 0)
            with cctx.stream_writer(out, size=len(header) + length, closefd=False) as writer:
                writer.write(header)
                for part in parts:
                    writer.write(part)
        else:
            out.write(header)
            for part in parts:
                out.write(part)

    # -- batches (packs) -----------------------------------------------------------------
    def begin_batch(self) -> None:
        """Collect small objects in memory until `flush()` writes them as one pack."""
        self._batch_depth += 1

    def end_batch(self) -> None:
        """Leave a batch (the outermost end flushes)."""
        self._batch_depth = max(0, self._batch_depth - 1)
        if self._batch_depth == 0:
            self.flush()

    def flush(self) -> None:
        """Write buffered objects as a pack (before any ref to them is journalled)."""
        with self._buffer_lock:
            if not self._buffer:
                return
            try:
                name = write_pack(self.packs.directory, list(self._buffer.items()), fsync=self.fsync)
            except OSError as exc:
                count = len(self._buffer)
                self._young.clear()  # (a cautious sweep: what was noted stays on disk, though)
                self._buffer.clear()  # never named: the index refuses the batch with this error
                self._buffer_bytes = 0
                full = storage_full(exc, f"the object store {self.root} (a pack of {count} objects)")
                if full is not None and full is not exc:
                    raise full from None
                raise
            self.packs.refresh()
            if self.on_pack is not None:
                self.on_pack(name)
            for oid in self._buffer:  # a new pack: young
                self._note_young(oid)
            self._buffer.clear()
            self._buffer_bytes = 0
            if not self._wrote_pack and self.auto_merge:
                self._wrote_pack = os.getpid()
                _MERGE_AT_EXIT.add(self)
        self._merge_during_run()

    def _merge_during_run(self) -> None:
        """A long run flushes a pack about once a second (a 10-hour for_each: ~36k of them):
        at most once every `RUN_MERGE_EVERY_S`, a writer with more than `AUTO_PACK_LIMIT`
        packs merges a bounded slice of them, as a close does, never waiting for another
        process's merge. A merge that fails (a full disk) leaves every pack as it was, and
        the run goes on (its flush is done)."""
        now = time.monotonic()
        if not self.auto_merge or now - self._merged_at < RUN_MERGE_EVERY_S or \
                self.packs.count() <= AUTO_PACK_LIMIT:
            return
        self._merged_at = now
        try:
            self.packs.merge_small(fsync=self.fsync, wait=False, more_than=AUTO_PACK_LIMIT,
                                   max_packs=AUTO_MAX_PACKS, max_bytes=AUTO_MAX_BYTES)
        except OSError as exc:
            log.warning("small packs were not merged during the run (%s); a close or gc merges them", exc)

    def _buffer_object(self, oid: str, stored: bytes) -> None:
        with self._buffer_lock:
            self._buffer[oid] = stored
            self._buffer_bytes += len(stored)
        if self._buffer_bytes > _MAX_BUFFER:
            self.flush()

    def merge_packs(self, *, auto: bool = False, dry_run: bool = False) -> MergeStats:
        """Merge small packs (`PackSet.merge_small`). gc merges what the plan names, in rounds;
        `auto` (a writer closing, or exiting) only if this process wrote a pack, there are
        more than `AUTO_PACK_LIMIT`, and no other process is merging, and at most
        `AUTO_MAX_PACKS` / `AUTO_MAX_BYTES` of them."""
        if self.read_only:
            return MergeStats(skipped="the project is read-only here")
        if auto:
            if self._wrote_pack != os.getpid():
                return MergeStats()
            self._wrote_pack = 0
            _MERGE_AT_EXIT.discard(self)
            return self.packs.merge_small(fsync=self.fsync, wait=False, more_than=AUTO_PACK_LIMIT,
                                          max_packs=AUTO_MAX_PACKS, max_bytes=AUTO_MAX_BYTES)
        stats = MergeStats()
        for _ in range(64):
            done = self.packs.merge_small(fsync=self.fsync, max_bytes=_GC_ROUND_BYTES, dry_run=dry_run)
            stats += done
            if dry_run or not done.packs_written:
                break
        if stats.packs_written:
            self.packs.consolidate()  # one multi-pack index over what is left (a few packs now)
        return stats

    def writers_gate(self) -> WritersGate:
        return self.gate

    def release_writes(self) -> None:
        self.gate.leave()

    def freshen(self, oid: str) -> bool:
        """Refresh the loose file's or the pack's mtime (gc grace period), whichever exist
        (a young pack keeps the object: an old loose copy going too loses nothing). One this
        process made young moments ago (`_made_young`) is not touched again: every save of
        a computed result asks for its value and record just put, and each utime, pack lookup
        and failed loose `utime` had doubled the cost of a save: such an object costs what
        `contains` does (still asked: a file removed by hand is stored again)."""
        self._refuse_writes()
        if not is_valid_oid(oid):
            validate_oid(oid)  # raises, saying why
        if oid in self._buffer or (self._made_young(oid) and self.contains(oid)):
            return True  # (a buffered one is a new pack's; `contains`: one removed by hand is not)
        self.gate.enter()  # about to be named again: a pruning gc must not sweep it meanwhile
        found = self._refresh_packed(oid) or _touch(os.path.join(self._root_text, oid_relpath(oid)))
        if found:
            self._note_young(oid)
        return found

    def _made_young(self, oid: str) -> bool:
        """Whether this process wrote or freshened `oid` less than `_YOUNG_FOR` ago while holding
        the writers' gate throughout: no gc deletes it then (one whose grace is shorter than
        `PRUNE_FLOOR` waits for the gate or keeps what is younger than that; a longer grace keeps
        it too), so it is still there and young."""
        stamp = self._young.get(oid)
        return (stamp is not None and self.gate.left == self._young_gate and self.gate.held
                and time.monotonic() - stamp < _YOUNG_FOR)

    def _note_young(self, oid: str) -> None:
        if self.gate.left != self._young_gate or len(self._young) >= _YOUNG_KEPT:
            self._young.clear()  # (left the gate: a pruning gc may have swept since)
            self._young_gate = self.gate.left
        self._young[oid] = time.monotonic()

    def _refresh_packed(self, oid: str, *, look_again: bool = True) -> bool:
        """If `oid` is packed, make its pack young again (gc grace period) and say so. A write
        does not look again for packs other processes wrote since (a `stat` of the folder for
        every new object, ~1/6 of a small put): at worst it stores a second, younger copy.

        The pack this process knows may be gone (another process's `fsck --repair` or gc
        rewrote it without the object, or a merge moved it): one refreshed less than a second
        ago is still looked for (`os.access`, ~1 us), never trusted, and a gone one is looked
        for in the packs as they are now; not found, the object is stored again. A save had
        skipped its write within that second and named an object no longer on disk."""
        for _ in range(2):
            name = self.packs.pack_name(oid, look_again=look_again)
            if name is None:
                return False
            path, now = self.packs.pack_file(name), time.time()
            if now - self._refreshed.get(name, 0.0) <= 1.0:
                if os.access(path, os.F_OK):
                    return True
            else:
                if _touch(path):  # (gc's repack reads a pack's mtime after unlinking it)
                    self._refreshed[name] = now
                    return True
            self._refreshed.pop(name, None)
            self.packs.look_again()
        return False

    # -- read --------------------------------------------------------------------------
    def get(self, oid: str) -> StoredObject:
        # Packed objects first (a failed open() costs more). A packed copy is found by the
        # oid's bytes and served only when its content hashes to `oid` exactly, and a blake3
        # hex digest is 64 lowercase hex characters: a served oid is well-formed, checked by
        # the hash every read makes anyway. So the regex (`is_valid_oid`, ~3.7k instructions,
        # a tenth of a point load's Python) runs only before the oid can reach a path (the
        # loose file) and before any error: a look-alike (upper case, spaces: `bytes.fromhex`
        # takes both) whose bytes are packed is refused as invalid, as before, not corrupt.
        stored = self.packs.peek(oid) if isinstance(oid, str) else None
        if stored is not None:
            try:
                return self._decode_small(oid, stored)
            except CorruptObjectError:
                if not is_valid_oid(oid):
                    validate_oid(oid)  # raises, saying why
                return self._get_again(oid)
        if not is_valid_oid(oid):
            validate_oid(oid)  # raises, saying why
        return self._get_unpacked(oid)

    def _get_again(self, oid: str) -> StoredObject:
        """A packed copy failed its check. The packs this process knows may be out of date:
        `scistack fsck --repair` in another process rewrites a pack without a damaged object
        (the old one stays mapped here, unlinked) and a save then stores a good loose copy.
        So look again, at the loose file first, then at the packs as they are now; the same
        damage, still there, raises again (damaged bytes are never served). The check that
        failed is the only cost: a good read pays nothing for this."""
        self.packs.look_again()
        return self._get_unpacked(oid)

    def _get_unpacked(self, oid: str) -> StoredObject:
        """`get` past the packs already known: the loose file, else the batch's buffer and the
        packs written since."""
        try:  # os-level calls: this is the load hot path (~15 us for a small object)
            fd = os.open(f"{self._root_text}/{oid[:2]}/{oid[2:]}", os.O_RDONLY)
        except FileNotFoundError:
            stored = self._buffer.get(oid) or self.packs.read(oid) or self.packs.find_unindexed(oid)
            if stored is None:
                raise self._not_found(oid) from None
            return self._decode_small(oid, stored)
        try:
            data = os.read(fd, _FIRST_READ)  # a small object whole, without an fstat first
            size = len(data) if len(data) < _FIRST_READ else os.fstat(fd).st_size
            if size <= _SMALL:
                if size > len(data):
                    data += os.read(fd, size - len(data))
                magic = data[:4]
                if magic != SKIP_MAGIC and (magic != ZSTD_MAGIC or 0 <= _content_size(data) <= _SMALL):
                    return self._decode_small(oid, data)
            os.lseek(fd, 0, os.SEEK_SET)
            with open(fd, "rb", closefd=False) as handle:
                return self._read_large(oid, handle)
        finally:
            os.close(fd)

    def leaf_sizes(self, oids: list[str]) -> list[int | None]:
        """Packed, uncompressed objects that name no child (not a manifest, a json object
        without `{"$ref": ...}`), sized from one bulk pack lookup: a first `scistack ls` after
        millions of saves measured each object with a stat, a pack search and a full decode
        (~70 us each). Unverified: a size needs no hash."""
        self.packs.refresh()
        sizes: list[int | None] = []
        for data in self.packs.peek_many(oids):
            if data is None or data[:4] == ZSTD_MAGIC:
                sizes.append(None)
                continue
            kind = data[:data.find(b" ", 0, 40)]
            leaf = kind not in (b"json", b"chunked") or (kind == b"json" and REF_MARK not in data)
            sizes.append(len(data) if leaf else None)
        return sizes

    def get_many(self, oids: list[str], *, small_only: bool = False) -> list[StoredObject | Exception | None]:
        """Packed objects found in one search per index, and a raw (uncompressed) one verified
        by one hash of its stored bytes, which are exactly what its oid hashes; payloads are
        read-only slices. Anything else (loose, compressed, in the batch buffer) goes through
        `get`, or is None with `small_only` (packs hold only objects under 1 MB). ~3 us an
        object instead of ~10 (the views' inline step, `load_all`)."""
        self.packs.refresh()
        found: list[StoredObject | Exception | None] = []
        joined = "".join(oids)
        valid = all(len(oid) == 64 for oid in oids) and joined == joined.lower() and _is_hex(joined)
        headers: dict[bytes, tuple[str, int, int]] = {}  # objects of one kind and size share a header
        append, hasher, get_header = found.append, hash_bytes, headers.get
        for oid, data in zip(oids, self.packs.peek_many(oids)):
            try:
                # a header seen before is good (a zstd frame's magic is never one): most objects
                # of a `load_all` share one, so the full checks run once per kind and size
                parsed = None if data is None else get_header(data[:data.find(b"\x00", 0, 40) + 1])
                if parsed is None:
                    if data is None or data[:4] == ZSTD_MAGIC or not (valid or is_valid_oid(oid)):
                        append(None if small_only and data is None else self.get(oid))
                        continue
                    kind, length, start = _parse_header(oid, data[:40])
                    parsed = headers[data[:start]] = (kind, start + length, start)
                elif not valid and not is_valid_oid(oid):
                    append(self.get(oid))
                    continue
                kind, size, start = parsed
                if len(data) != size:
                    raise CorruptObjectError(oid, f"it holds {len(data) - start} payload bytes, its header says "
                                                  f"{size - start}")
                actual = hasher(data)
                if actual != oid:
                    raise CorruptObjectError(oid, f"its content hashes to {actual}", actual=actual)
                append(StoredObject(kind, data[start:]))
            except CorruptObjectError:  # a damaged packed copy: there may be a good one since
                try:
                    append(self._get_again(oid))
                except Exception as exc:  # noqa: BLE001 - handed back, as `ObjectStore.get_many` says
                    append(exc)
            except Exception as exc:  # noqa: BLE001 - handed back, as `ObjectStore.get_many` says
                append(exc)
        return found

    def get_many_stored(self, oids: list[str]) -> list[bytes | None]:
        """Packed, uncompressed objects: their oids are the hashes of exactly these bytes, so
        all are verified by one comparison of the joined digests with the joined oids (~0.5 us
        an object, no Python object beyond the bytes); on a mismatch each is checked and the
        bad ones are None (`get_many` then says what is wrong)."""
        self.packs.refresh()
        try:
            raw = bytes.fromhex("".join(oids))
        except ValueError:
            return [None] * len(oids)
        if len(raw) != 32 * len(oids) or "".join(oids) != "".join(oids).lower():
            return [None] * len(oids)
        framed = (ZSTD_MAGIC, SKIP_MAGIC)
        found = [None if data is None or data.startswith(framed) else data for data in self.packs.peek_many(oids)]
        hasher = blake3.blake3
        if None in found:
            digests = b"".join([raw[32 * n:32 * n + 32] if data is None else hasher(data).digest()
                                for n, data in enumerate(found)])
        else:  # (the usual case: one call a value, no index arithmetic)
            digests = b"".join([hasher(data).digest() for data in found])
        if digests != raw:
            for n, data in enumerate(found):
                if data is not None and digests[32 * n:32 * n + 32] != raw[32 * n:32 * n + 32]:
                    found[n] = None
        return found

    def _not_found(self, oid: str) -> ObjectNotFoundError:
        """A miss; when a pack index is damaged the object may be in its pack, and the error says so."""
        if not self.packs.damaged:
            return ObjectNotFoundError(oid)
        damaged = ", ".join(f"{name}.idx" for name in sorted(self.packs.damaged))
        return ObjectNotFoundError(
            oid, f"it may be in a pack whose index is damaged ({damaged} in {self.packs.directory}); "
            "run `scistack fsck --repair` to rebuild the index from its pack")

    def damaged_pack_indexes(self) -> dict[str, str]:
        """Pack name -> what is wrong with its index (fsck)."""
        return self.packs.check_indexes()

    def repair_pack_index(self, name: str) -> int:
        """Rebuild a damaged pack index from its pack; returns how many objects it lists."""
        self.packs.damaged.pop(name, None)
        return self.packs.rebuild(name, fsync=self.fsync)

    def interrupted_merges(self) -> dict[str, str]:
        return self.packs.interrupted_merges()

    def finish_interrupted_merges(self) -> dict[str, str]:
        self._refuse_writes()
        return self.packs.finish_interrupted_merges(fsync=self.fsync)

    def _decode_small(self, oid: str, data: bytes) -> StoredObject:
        if data[:4] == ZSTD_MAGIC:
            try:
                data = self._contexts()[1].decompress(data, max_output_size=_SMALL + 64, allow_extra_data=False)
            except zstandard.ZstdError as exc:
                raise CorruptObjectError(oid, f"its zstd frame is damaged ({exc})") from None
        kind, length, start = _parse_header(oid, data[:40])
        if len(data) - start != length:
            raise CorruptObjectError(oid, f"it holds {len(data) - start} payload bytes, its header says {length}")
        actual = hash_bytes(data)  # header and payload as they lie: one call
        if actual != oid:
            raise CorruptObjectError(oid, f"its content hashes to {actual}", actual=actual)
        # (a small payload sliced and copied twice: a memoryview and its slice cost more than
        # copying a few kB, ~2k instructions of every read)
        return StoredObject(kind, bytearray(data[start:] if len(data) <= 4096 else memoryview(data)[start:]))

    def _read_large(self, oid: str, handle) -> StoredObject:
        first = handle.read(18)  # the magic, and a zstd frame header (<= 18 bytes)
        handle.seek(0)
        if first[:4] == SKIP_MAGIC:
            return self._read_shuffled(oid, handle)
        if first[:4] != ZSTD_MAGIC:
            return self._map_raw(oid, handle)
        stream = self._contexts()[1].stream_reader(handle, read_across_frames=False)
        try:
            head = stream.read(40)
            kind, length, start = _parse_header(oid, head)
            # Bound the allocation before making it: a frame that declares its size must
            # declare exactly header + payload (a raw file is checked by _map_raw).
            declared = _content_size(first)
            if declared >= 0 and declared != start + length:
                raise CorruptObjectError(
                    oid, f"its header says {length} payload bytes but its file holds "
                    f"{declared - start}; it is truncated or was damaged",
                )
            compressed = os.fstat(handle.fileno()).st_size
            if length > self.max_load_bytes or length > max(_TRUSTED_ALLOC, _TRUSTED_RATIO * compressed):
                self._verify_stream(oid, handle)  # prove the claim before allocating for it
                if length > self.max_load_bytes:
                    raise ObjectTooLargeError(oid, length, self.max_load_bytes)
                handle.seek(0)
                stream = self._contexts()[1].stream_reader(handle, read_across_frames=False)
                head = stream.read(40)
            try:
                payload = np.empty(length, dtype=np.uint8)  # no zero-fill, unlike bytearray
            except (MemoryError, ValueError):
                raise ObjectTooLargeError(oid, length, self.max_load_bytes) from None
            view = memoryview(payload)
            filled = min(len(head) - start, length)
            view[:filled] = head[start : start + filled]
            while filled < length:
                got = stream.readinto(view[filled:])
                if not got:
                    raise CorruptObjectError(oid, f"it is truncated ({filled} of {length} payload bytes)")
                filled += got
            if len(head) - start > length or stream.read(1):
                raise CorruptObjectError(oid, "it has bytes beyond the length in its header")
        except zstandard.ZstdError as exc:
            raise CorruptObjectError(oid, f"its zstd stream is damaged ({exc})") from None
        _verify(oid, kind, (payload,))
        return StoredObject(kind, payload)

    def _read_shuffled(self, oid: str, handle) -> StoredObject:
        """A shuffled chunk (objects/shuffle.py): inflated whole (a chunk is a few MB), then
        unshuffled into the payload and verified."""
        data = handle.read()
        width = shuffle.width_of(data[:12])
        declared = _content_size(data[12:30])
        if width == 0 or not 0 <= declared <= min(self.max_load_bytes, shuffle.MAX_SHUFFLED + 64):
            raise CorruptObjectError(oid, "its shuffled frame is damaged (unknown width or size)")
        try:
            inflated = self._contexts()[1].decompress(data[12:], max_output_size=declared,
                                                      allow_extra_data=False)
        except zstandard.ZstdError as exc:
            raise CorruptObjectError(oid, f"its zstd frame is damaged ({exc})") from None
        kind, length, start = _parse_header(oid, inflated[:40])
        if len(inflated) - start != length or length % width:
            raise CorruptObjectError(oid, f"it holds {len(inflated) - start} payload bytes, its header says {length}")
        payload = np.empty(length, dtype=np.uint8)
        shuffle.unshuffle_into(payload, memoryview(inflated)[start:], width)
        _verify(oid, kind, (payload,))
        return StoredObject(kind, payload)

    # -- read into the caller's array (chunks of a large array) --------------------------
    def get_into(self, oid: str, out: np.ndarray) -> tuple[str, int]:
        """Decode a loose object straight into `out` (see ObjectStore.get_into).

        A chunk file is read and inflated into buffers this thread keeps, and unshuffled or
        copied into `out`, then verified there: nothing is allocated per chunk. Packed and
        small objects take the ordinary path."""
        validate_oid(oid)
        if self.packs.peek(oid) is None:  # a packed object is small: the ordinary path
            try:
                fd = os.open(f"{self._root_text}/{oid[:2]}/{oid[2:]}", os.O_RDONLY)
            except FileNotFoundError:
                fd = -1
            if fd >= 0:
                try:
                    size = os.fstat(fd).st_size
                    if size > _SMALL or os.pread(fd, 4, 0) == SKIP_MAGIC:
                        return self._read_into(oid, fd, size, out)
                finally:
                    os.close(fd)
        return super().get_into(oid, out)

    def prefetch(self, oid: str) -> None:
        """Ask the kernel to start reading a loose object's file (`POSIX_FADV_WILLNEED`:
        asynchronous; nothing when its pages are cached already). A whole read of an array
        from disk had waited on each chunk's page faults in turn (128 KiB of readahead at a
        time) with its decoding threads idle: an 8 GB array took 9-10 s from disk against
        6.5 s from the page cache."""
        try:
            fd = os.open(f"{self._root_text}/{oid[:2]}/{oid[2:]}", os.O_RDONLY)
        except OSError:  # packed (small), absent, or an odd oid: the read says what is wrong
            return
        try:
            os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_WILLNEED)
        except (OSError, AttributeError):  # (no posix_fadvise on this platform)
            pass
        finally:
            os.close(fd)

    def _read_into(self, oid: str, fd: int, size: int, out: np.ndarray) -> tuple[str, int]:
        first = os.pread(fd, 18, 0)
        if first[:4] == SKIP_MAGIC:
            return self._unshuffle_into(oid, fd, size, out)
        if first[:4] == ZSTD_MAGIC:
            with open(fd, "rb", closefd=False) as handle:
                kind, length = self._inflate_into(oid, handle, out)
            if length != out.size:
                return kind, length
        else:
            kind, length, start = _parse_header(oid, os.pread(fd, 40, 0))
            if length != out.size:
                return kind, length
            if size != start + length:
                raise CorruptObjectError(oid, f"its header says {length} payload bytes but its file holds "
                                         f"{size - start}; it is truncated or was damaged")
            view = memoryview(out)
            _read_fully(oid, lambda part: os.preadv(fd, [part], start + len(view) - len(part)), view)
        _verify(oid, kind, (out,))
        return kind, length

    def _inflate_into(self, oid: str, source: Any, out: np.ndarray) -> tuple[str, int]:
        """A zstd-framed object's payload, inflated from `source` (a file or the bytes as
        stored) into `out` when its length is `out.size`; `(kind, length)`, not verified."""
        stream = self._contexts()[1].stream_reader(source, read_across_frames=False)
        try:
            head = stream.read(40)
            kind, length, start = _parse_header(oid, head)
            if length != out.size:
                return kind, length
            view, early = memoryview(out), min(len(head) - start, length)
            view[:early] = head[start : start + early]
            _read_fully(oid, stream.readinto, view[early:])
            if stream.read(1):
                raise CorruptObjectError(oid, "it has bytes beyond the length in its header")
        except zstandard.ZstdError as exc:
            raise CorruptObjectError(oid, f"its zstd stream is damaged ({exc})") from None
        return kind, length

    def _unshuffle_into(self, oid: str, fd: int, size: int, out: np.ndarray) -> tuple[str, int]:
        if not 30 <= size <= shuffle.MAX_SHUFFLED + 64:
            raise CorruptObjectError(oid, "its shuffled frame is damaged (no chunk has its size)")
        data = memoryview(mmap.mmap(fd, 0, access=mmap.ACCESS_READ))  # zstd reads the page cache
        return self._unshuffle_from(oid, data, out)

    def _unshuffle_from(self, oid: str, data: memoryview, out: np.ndarray) -> tuple[str, int]:
        """A shuffled chunk's stored bytes (`data`) inflated, unshuffled into `out`, verified."""
        width = shuffle.width_of(bytes(data[:12]))
        declared = _content_size(bytes(data[12:30]))
        if width == 0 or not 0 <= declared <= min(self.max_load_bytes, shuffle.MAX_SHUFFLED + 64):
            raise CorruptObjectError(oid, "its shuffled frame is damaged (unknown width or size)")
        inflated = self._scratch("inflated", declared)
        try:
            stream = self._contexts()[1].stream_reader(data[12:], read_across_frames=False)
            _read_fully(oid, stream.readinto, inflated)
            if stream.read(1):
                raise CorruptObjectError(oid, "its zstd frame holds more than it declares")
        except zstandard.ZstdError as exc:
            raise CorruptObjectError(oid, f"its zstd frame is damaged ({exc})") from None
        kind, length, start = _parse_header(oid, bytes(inflated[:40]))
        if declared - start != length or length % width:
            raise CorruptObjectError(oid, f"it holds {declared - start} payload bytes, its header says {length}")
        if length != out.size:
            return kind, length
        shuffle.unshuffle_into(out, inflated[start:], width)
        _verify(oid, kind, (out,))
        return kind, length

    # -- whole reads of many chunks: files read ahead, apart from their decoding ---------
    def read_stored(self, oid: str, buffer: np.ndarray, *, direct: bool = True) -> memoryview | None:
        """A loose object's file as stored, read into `buffer` (page-aligned, its length a
        multiple of 4096); None when `oid` has no loose file that fits (the caller then takes
        `get_into`, which reads packed objects and says what is missing or wrong).

        For a whole read of a large array (objects/chunked.py `read_region`), on a thread of
        its own, ahead of the decoding. A file wholly in the page cache is copied from there
        (`RWF_NOWAIT`: no disk I/O; when `direct`, asked first without reading the file, as
        objects/pagecache.py says why); any other, when `direct` (a read bigger than a quarter
        of the machine's memory: chunked.py `_DIRECT_FROM`), is read straight from the disk
        (`O_DIRECT`), past the page cache: no page-cache pages are allocated, filled and
        mapped for the GBs a whole read passes once, which on this project's VM cost ~0.3 s
        of CPU per GB stored (bench/results/large.md, 12-07). A smaller read, or a file
        system without `O_DIRECT`, goes through the page cache (a script run again then
        loads from memory). Nothing here is verified: `decode_into` does."""
        validate_oid(oid)
        path = f"{self._root_text}/{oid[:2]}/{oid[2:]}"
        try:
            fd = os.open(path, os.O_RDONLY)
        except OSError:
            return None
        try:
            size = os.fstat(fd).st_size
            if size > len(buffer):
                return None
            view = memoryview(buffer)[:size]
            # Before a read past the cache, ask whether the file is all there without reading it:
            # a cache-only read of a file not cached fails, but starts the kernel's readahead of
            # it first, and the direct read then read it from disk twice (objects/pagecache.py).
            cached = pagecache.wholly_cached(fd, size) if direct and _DIRECT else None
            if _NOWAIT and cached is not False:
                try:
                    if os.preadv(fd, [view], 0, _NOWAIT) == size:
                        return view
                except OSError:  # EAGAIN: not all cached; EOPNOTSUPP/EINVAL: no such reads here
                    pass
            if not (direct and _read_direct(path, buffer, size)):
                _read_fully(oid, lambda part: os.preadv(fd, [part], size - len(part)), view)
            return view
        finally:
            os.close(fd)

    def decode_into(self, oid: str, stored: memoryview, out: np.ndarray) -> tuple[str, int]:
        """`get_into` of an object whose stored bytes `read_stored` read: decoded into `out`
        and verified there (returns `(kind, length)`; `out` holds the payload only when
        `length == out.size`)."""
        head = bytes(stored[:4])
        if head == SKIP_MAGIC:
            if not 30 <= len(stored) <= shuffle.MAX_SHUFFLED + 64:
                raise CorruptObjectError(oid, "its shuffled frame is damaged (no chunk has its size)")
            return self._unshuffle_from(oid, stored, out)
        if head == ZSTD_MAGIC:
            kind, length = self._inflate_into(oid, stored, out)
            if length != out.size:
                return kind, length
        else:
            kind, length, start = _parse_header(oid, bytes(stored[:40]))
            if length != out.size:
                return kind, length
            if len(stored) != start + length:
                raise CorruptObjectError(oid, f"its header says {length} payload bytes but its file holds "
                                         f"{len(stored) - start}; it is truncated or was damaged")
            memoryview(out)[:] = stored[start:]
        _verify(oid, kind, (out,))
        return kind, length

    def _scratch(self, name: str, size: int) -> memoryview:
        """A buffer of `size` bytes this thread reuses (grown as needed, never shrunk)."""
        buffers = getattr(self._zstd, "scratch", None)
        if buffers is None:
            buffers = self._zstd.scratch = {}
        buffer = buffers.get(name)
        if buffer is None or len(buffer) < size:
            buffer = buffers[name] = np.empty(size, dtype=np.uint8)
        return memoryview(buffer)[:size]

    def _verify_stream(self, oid: str, handle) -> None:
        """Hash a compressed object's whole stream in steps (bounded memory); raise if it lies."""
        handle.seek(0)
        hasher, total = blake3.blake3(), 0
        head = b""
        try:
            stream = zstandard.ZstdDecompressor().stream_reader(handle, read_across_frames=False)
            while chunk := stream.read(_STREAM_STEP):
                if len(head) < 40:
                    head += chunk[:40]
                hasher.update(chunk)
                total += len(chunk)
        except zstandard.ZstdError as exc:
            raise CorruptObjectError(oid, f"its zstd stream is damaged ({exc})") from None
        kind, length, start = _parse_header(oid, head)
        if total != start + length:
            raise CorruptObjectError(oid, f"its header says {length} payload bytes but its stream holds {total - start}")
        if hasher.hexdigest() != oid:
            raise CorruptObjectError(oid, f"its content hashes to {hasher.hexdigest()}", actual=hasher.hexdigest())

    def verify(self, oid: str) -> None:
        """Check that an object hashes to its id without loading it whole (fsck).

        Raises CorruptObjectError or ObjectNotFoundError; never ObjectTooLargeError.
        """
        try:
            fd = os.open(self.path_of(oid), os.O_RDONLY)
        except FileNotFoundError:
            self.get(oid)  # packed records are small (a pack holds objects under 1 MB)
            return
        with open(fd, "rb") as handle:
            self.verify_file(oid, handle)

    def verify_file(self, oid: str, handle) -> None:
        """Check that the stored bytes in an open file (at its start) hash to `oid`, in bounded
        memory: a loose object here, or a lab bucket's copy streamed to a temporary file."""
        first = handle.read(4)
        handle.seek(0)
        if first == SKIP_MAGIC:
            self._read_shuffled(oid, handle)
        elif first == ZSTD_MAGIC:
            self._verify_stream(oid, handle)
        elif os.fstat(handle.fileno()).st_size > _SMALL:
            self._map_raw(oid, handle)
        else:
            self._decode_small(oid, handle.read())

    def _map_raw(self, oid: str, handle) -> StoredObject:
        """A large raw object, memory-mapped: no copy, no fresh pages; verified over the map.

        The payload is read-only, as loaded values are anyway; the map outlives a gc that
        unlinks the file (POSIX keeps mapped pages alive).
        """
        mapped = mmap.mmap(handle.fileno(), 0, access=mmap.ACCESS_READ)
        kind, length, start = _parse_header(oid, mapped[:40])
        if len(mapped) != start + length:
            raise CorruptObjectError(
                oid, f"its header says {length} payload bytes but its file holds "
                f"{len(mapped) - start}; it is truncated or was damaged")
        payload = memoryview(mapped)[start:]
        _verify(oid, kind, (payload,))
        return StoredObject(kind, payload)

    # -- listing -----------------------------------------------------------------------
    def contains(self, oid: str) -> bool:
        """Packs this process knows first (~2 us), then the batch's buffer, the loose file (a
        path and a `stat`: ~7 us, most of a packed object's answer when asked first) and
        packs written since."""
        return (self.packs.knows(oid) or oid in self._buffer
                or os.path.exists(self.path_of(oid)) or self.packs.locate(oid) is not None)

    def iter_oids(self) -> Iterator[Oid]:
        """Loose and packed objects (an object in both is listed once)."""
        packed = set(self.packs.oids())
        yield from (Oid(o) for o in packed)
        for oid in self._iter_loose():
            if oid not in packed:
                yield oid

    def _iter_loose(self) -> Iterator[Oid]:
        if not self.root.is_dir():
            return
        for fan in sorted(os.scandir(self.root), key=lambda e: e.name):
            if len(fan.name) != 2 or not fan.is_dir():
                continue
            for entry in os.scandir(fan.path):
                oid = fan.name + entry.name
                if is_valid_oid(oid):
                    yield Oid(oid)

    def kind_of(self, oid: str) -> str | None:
        """An object's kind from its header alone (no full read or verify); None if absent."""
        stored = self.packs.peek(oid) or self._buffer.get(oid) or self.packs.read(oid)
        if stored is None:
            try:
                with open(self.path_of(oid), "rb") as handle:
                    stored = handle.read(64)
                    if stored[:4] in (ZSTD_MAGIC, SKIP_MAGIC):  # a frame's first block may be large: stream it
                        handle.seek(0)
                        stored = self._contexts()[1].stream_reader(handle).read(40)
            except FileNotFoundError:
                return None
            except zstandard.ZstdError:
                return "?"
        return kind_in_stored(stored, self._contexts()[1])

    def oids_with_prefix(self, prefix: str) -> list[Oid]:
        """Every stored oid that starts with `prefix` (at least 2 hex characters)."""
        fan = self.root / prefix[:2]
        loose = {prefix[:2] + p.name for p in fan.glob(prefix[2:] + "*")} if fan.is_dir() else set()
        packed = {o for o in self.packs.oids() if o.startswith(prefix)}
        return sorted(Oid(o) for o in loose | packed if is_valid_oid(o))

    def iter_temp_files(self) -> Iterator[Path]:
        """Temporary files and index-less packs left by interrupted writes (gc removes old ones);
        not the objects a killed gc set aside (`restore_set_aside` puts them back)."""
        if self.root.is_dir():
            yield from (p for p in self.root.glob(f"??/{_TEMP_PREFIX}*") if not p.name.startswith(_ASIDE))
            yield from self.packs.incomplete_packs()

    def restore_set_aside(self) -> int:
        """Put back each object a gc killed between setting it aside and its last look left
        (`_unlink_unless_fresh`): a writer may have named it just before. Where the object is
        back at its name already (stored again), the set-aside copy goes; gc judges it again.

        One a gc of this place set aside (`_aside_name`: its pid, when it started and where)
        whose process still runs is left to it (`process_gone`: a pid that runs a process
        started at another time, given to it since, had kept the object aside, missing, for as
        long as that ran). One set aside in another place (`process_place`: another machine
        sharing the folder, a container beside its host, another boot) is put back, its pid
        not judged by this place's: a gc running there finds its aside gone and keeps the
        object (`_unlink_unless_fresh`), so putting it back loses nothing, where leaving it had
        left the object missing whenever a process here had that pid. A name of an older
        scistack (its pid alone) is judged by its pid, as before."""
        self._refuse_writes()
        restored = 0
        here = process_place()
        for aside in self.root.glob(f"??/{_ASIDE}*") if self.root.is_dir() else ():
            parts = aside.name[len(_ASIDE):].split("-")
            name, pid = (parts + ["", ""])[:2]
            started, place = (parts[2], parts[3]) if len(parts) == 5 else ("", here)
            if (place == here and pid.isdigit() and int(pid) != os.getpid()
                    and not process_gone(int(pid), started)):
                continue  # a gc running now, between its two steps: its own to finish
            target = aside.with_name(name)
            try:
                if is_valid_oid(aside.parent.name + name) and not target.exists():
                    os.rename(aside, target)
                    restored += 1
                else:
                    aside.unlink()
            except FileNotFoundError:
                pass  # (another gc did it)
        return restored

    def size_of(self, oid: str) -> int:
        """Bytes the object takes on disk (compressed size; a pack record's stored bytes)."""
        try:
            return os.stat(self.path_of(oid)).st_size
        except FileNotFoundError:
            size = self.packs.size_of(oid)
            if size is None:
                raise ObjectNotFoundError(oid) from None
            return size

    def mtime_of(self, oid: str) -> float:
        """Last write or refresh time: gc's grace period counts from here (a pack's, if packed)."""
        try:
            return os.stat(self.path_of(oid)).st_mtime
        except FileNotFoundError:
            path = self.packs.pack_path(oid)
            if path is None:
                raise ObjectNotFoundError(oid) from None
            return os.stat(path).st_mtime

    def delete(self, oid: str) -> None:
        self.delete_many([oid])

    def set_aside(self, oid: str, folder: Path) -> Path:
        """The loose copy, which `verify` reads first, else the packed one, kept in `folder`
        (streamed: a damaged loose object had been read whole into memory, however large),
        then both leave the store."""
        self._refuse_writes()
        try:
            handle = open(self.path_of(oid), "rb")
        except FileNotFoundError:
            packed = self.packs.read(oid)  # (a pack record: under 1 MB)
            if packed is None:
                raise ObjectNotFoundError(oid) from None
            kept = self._keep(folder, oid, [packed])  # kept before anything is removed: a crash loses nothing
        else:
            with handle:
                kept = self._keep(folder, oid, iter(lambda: handle.read(_STREAM_STEP), b""))
        self.delete_many([oid])
        return kept

    def delete_many(self, oids: Iterable[str], *, older_than: float | None = None) -> Freed:
        """Remove objects (gc only): unlink loose files, rewrite packs without the others.
        With `older_than` (gc's cutoff), an object a writer freshened since gc judged it
        (its mtime, or its pack's, is now younger) is kept: see `_unlink_unless_fresh`.

        Returns the objects this call removed (a copy of one left elsewhere, in a pack
        refreshed meanwhile, keeps it) and the bytes freed on disk, measured from the files,
        and the packs left whole for an index that does not match their records.
        """
        self._refuse_writes()
        self._young.clear()  # (this process's gc or fsck removes: nothing is taken for granted)
        freed, packed, removed, left_whole = 0, [], set(), []
        for oid in dict.fromkeys(oids):
            size = _unlink_unless_fresh(str(self.path_of(oid)), older_than)
            if size:
                freed += size
                removed.add(oid)
            if self.packs.locate(oid) is not None:
                packed.append(oid)
        if packed:
            before = self.packs.disk_usage()
            removed |= self.packs.remove(packed, fsync=self.fsync, older_than=older_than, left_whole=left_whole)
            freed += before - self.packs.disk_usage()
        return Freed(sum(1 for oid in removed if not self.contains(oid)), freed, tuple(left_whole))


def _read_fully(oid: str, read_into: Callable[[memoryview], int], view: memoryview) -> None:
    """Fill `view` by repeated `read_into(rest)` calls; a short source is a truncated object."""
    filled = 0
    while filled < len(view):
        got = read_into(view[filled:])
        if not got:
            raise CorruptObjectError(oid, f"it is truncated ({filled} of {len(view)} bytes)")
        filled += got


_NOWAIT = getattr(os, "RWF_NOWAIT", 0)  # (Linux: a read that only copies from the page cache)
_DIRECT = getattr(os, "O_DIRECT", 0)
_ALIGN = 4096  # O_DIRECT's buffer address and length (a multiple of any disk's block size)


def _read_direct(path: str, buffer: np.ndarray, size: int) -> bool:
    """Read a file's `size` bytes into `buffer` past the page cache (`O_DIRECT`); False where
    the file system or platform has no such reads (the caller reads it the ordinary way)."""
    if not _DIRECT:
        return False
    try:
        fd = os.open(path, os.O_RDONLY | _DIRECT)
    except OSError:
        return False
    try:
        want = -(-size // _ALIGN) * _ALIGN
        got = os.preadv(fd, [memoryview(buffer)[:want]], 0)
    except OSError:  # EINVAL: this file system wants another alignment, or no O_DIRECT
        return False
    finally:
        os.close(fd)
    return got == size


def _content_size(frame: bytes) -> int:
    """The decompressed size a zstd frame declares (-1 when unknown or unreadable)."""
    try:
        return zstandard.frame_content_size(frame)
    except zstandard.ZstdError:
        return -1


def _samples(parts: Sequence[Buffer], length: int) -> list[bytes]:
    """Three samples (start, middle, end; 8-byte aligned) a large payload is judged on."""
    flat = [memoryview(p).cast("B") for p in parts]
    return [bytes(_slice(flat, at - at % 8, _SAMPLE)) for at in (0, length // 2, max(0, length - _SAMPLE))]


def _slice(flat: list[memoryview], start: int, size: int) -> bytes:
    out = bytearray()
    for part in flat:
        if start >= len(part):
            start -= len(part)
            continue
        out += part[start : start + size - len(out)]
        start = 0
        if len(out) >= size:
            break
    return bytes(out)


def _is_hex(text: str) -> bool:
    try:
        return len(bytes.fromhex(text)) * 2 == len(text)  # (fromhex skips whitespace)
    except ValueError:
        return False


def _parse_header(oid: str, head: bytes | bytearray) -> tuple[str, int, int]:
    if type(head) is bytes:  # the usual header, in one pass (a load parses one per object)
        end = head.find(b"\x00")
        kind_text, _, length_text = head[:end].partition(b" ")
        kind = _KIND_NAMES.get(kind_text)
        if kind is not None and end > 0 and length_text.isdigit():
            return kind, int(length_text), end + 1
    end = bytes(head).find(b"\x00")
    try:
        kind_text, length_text = bytes(head[:end]).decode("ascii").split(" ")
        length = int(length_text)
    except (ValueError, UnicodeDecodeError):
        raise CorruptObjectError(oid, "its header is unreadable (not '<kind> <len>\\0')") from None
    if end < 0 or kind_text not in KINDS or length < 0 or not length_text.isdigit():
        raise CorruptObjectError(oid, f"its header names an unknown kind or length ({bytes(head[:end])!r})")
    return kind_text, length, end + 1


_KIND_NAMES = {kind.encode("ascii"): kind for kind in KINDS}


def _verify(oid: str, kind: str, parts: Sequence[Buffer]) -> None:
    length = payload_length(parts)
    hasher = blake3.blake3(object_header(kind, length), max_threads=blake3.blake3.AUTO if length > 4 << 20 else 1)
    for part in parts:
        hasher.update(part)
    actual = hasher.hexdigest()
    if actual != oid:
        raise CorruptObjectError(oid, f"its content hashes to {actual}", actual=actual)


def _create_read_only(temp: str, directory: str) -> int:
    """Open a new temp file, created read-only (0444): the open fd may still write it."""
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL
    try:
        return os.open(temp, flags, 0o444)
    except FileNotFoundError:  # the fan-out directory was removed (gc, a user) since we made it
        os.makedirs(directory, exist_ok=True)
        return os.open(temp, flags, 0o444)


def _write_all(out, data: Buffer) -> None:
    """Write every byte: an unbuffered file may write only part of a buffer in one call."""
    view = memoryview(data).cast("B")
    while view:
        view = view[out.write(view) :]


def _unlink_unless_fresh(path: str, older_than: float | None) -> int:
    """Bytes freed by removing a loose object, 0 if it is gone or (with `older_than`) was
    freshened since gc judged it. A writer freshens by `os.utime(path)` and then checks that
    `path` is still there (`_touch`); gc first renames the file aside, then reads its mtime,
    and puts it back if it is young. The rename splits every freshen in two cases: its utime
    found the file at `path` and completed before the writer's check, which came before the
    rename (else the check fails and the writer stores the object again), so the mtime read
    after the rename shows it; or the utime found nothing and the writer stores it again.
    A reader can miss the object between the rename and the put-back (microseconds) only if
    it was named in that instant; a crash there leaves it set aside, and the next gc puts it
    back (`restore_set_aside`)."""
    if older_than is None:
        try:
            size = os.stat(path).st_size
            os.unlink(path)
            return size
        except FileNotFoundError:
            return 0
    folder, name = os.path.split(path)  # (the set-aside name keeps the object's: `restore_set_aside`)
    aside = os.path.join(folder, _aside_name(name))
    try:
        os.rename(path, aside)
    except FileNotFoundError:
        return 0
    try:  # (another gc or fsck --repair may have put it back meanwhile: theirs to judge)
        info = os.stat(aside)
        if info.st_mtime > older_than:
            os.replace(aside, path)  # (a copy a writer stored meanwhile has the same bytes)
            return 0
        os.unlink(aside)
    except FileNotFoundError:
        return 0
    return info.st_size


def _aside_name(name: str) -> str:
    """The name a gc sets loose object `name` aside under: the object's name (to put it back),
    this process's pid, when it started and where it runs (`restore_set_aside` leaves a
    running gc's to it, and judges another place's by no pid of its own), and a token."""
    global _ASIDE_OF
    pid = os.getpid()
    if _ASIDE_OF[0] != pid:  # (read once a process, not per object: a gc sets many aside)
        _ASIDE_OF = (pid, f"{pid}-{pid_started(pid)}-{process_place()}")
    return f"{_ASIDE}{name}-{_ASIDE_OF[1]}-{secrets.token_hex(6)}"


_ASIDE_OF = (0, "")  # (the pid, and its part of `_aside_name`)


def _touch(path: str | os.PathLike) -> bool:
    """Refresh a file's mtime (gc grace period) and say whether it is still there after:
    gc renames a file aside before its last look at the mtime (`_unlink_unless_fresh`), so a
    True means gc saw this refresh, and a False that the object must be stored again."""
    try:
        os.utime(path)
    except FileNotFoundError:
        return False
    return os.access(path, os.F_OK)


def _unlink_quietly(path: str | os.PathLike) -> None:
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass


_MERGE_AT_EXIT: weakref.WeakSet[LocalObjectStore] = weakref.WeakSet()  # wrote packs, not yet merged

# Stores of this process. A fork waits until no thread is inside one's buffer lock (a flush
# writing the buffered objects as a pack and clearing the buffer: a child forked meanwhile
# inherited the lock held for ever, and a buffer half flushed); the forking thread takes it
# (an RLock: a fork from inside a flush re-enters it) and releases it on both sides, so a
# hold of its own stays its own in the child. Its hook is registered after pack.py's, so it
# runs first (`os.register_at_fork` runs `before` hooks in reverse): the buffer lock before
# the pack set's lock, the order a flush nests them in (a thread flushing holds the one and
# waits for the other).
_STORES: weakref.WeakSet[LocalObjectStore] = weakref.WeakSet()


def _after_fork_in_child() -> None:
    """A batch open in the parent is the parent's: the objects it buffered are its to write
    (before the journal lines naming them), and the child, in no batch, writes its own at
    once (its saves are journalled at once: `Index._after_fork`). So are the chunks the parent
    will name (`wait_uploads`), and their lock, which a thread of the parent may have held."""
    for store in list(_STORES):
        store._batch_depth, store._buffer, store._buffer_bytes = 0, {}, 0
        store._parts, store._parts_lock = set(), threading.Lock()


hold_across_fork(lambda: [store._buffer_lock for store in list(_STORES)], in_child=_after_fork_in_child)


@atexit.register
def _merge_at_exit() -> None:
    """A script that never closed its project merges as a closing one does (bounded)."""
    for store in list(_MERGE_AT_EXIT):
        try:
            store.merge_packs(auto=True)
        except Exception:  # noqa: BLE001 - never fail an exit; a later close or gc merges
            pass


def _reopen(root: str, fsync: bool, max_load_bytes: int) -> LocalObjectStore:
    return LocalObjectStore(root, fsync=fsync, max_load_bytes=max_load_bytes)
