"""The object store contract, and an in-memory store for store-only use and tests.

Verbs (fixed here, shared by every medium): `put(kind, parts) -> Oid`, `get(oid) ->
StoredObject`, `contains`, `iter_oids`, `delete`. A store computes oids itself and never
accepts one from its caller, so a wrong id can never be recorded. `put_value`/`get_value`
add the codec on top and are what the upper layers use.
"""

from __future__ import annotations

import abc
import functools
import os
import threading
import weakref
from contextlib import AbstractContextManager, nullcontext
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple

from scistack._atomic import temporary_sibling
from scistack.errors import ConfigurationError, CorruptObjectError, ObjectNotFoundError
from scistack.objects.canonical_json import decode_json, loads_scalars
from scistack.objects.codec import decode_value, encode_value, open_chunked
from scistack.objects.npy import decode_npy_many
from scistack.objects.hashing import KINDS, Buffer, hash_object, object_header
from scistack.objects.oid import Oid, validate_oid
from scistack.objects.forks import renew_in_child


@dataclass(frozen=True, slots=True)
class StoredObject:
    """An object's kind and its (uncompressed, verified) payload."""

    kind: str
    payload: bytearray | bytes | Any  # large payloads are a uint8 ndarray (no zero-fill)


class Freed(NamedTuple):
    """What `delete_many` removed: the objects gone now (not one a writer freshened since gc
    judged it, nor one already gone), and the bytes freed on disk (0 where the medium cannot tell)."""

    objects: int
    bytes: int
    # packs a repack left whole, their objects undeleted: the index does not match the records
    left_whole: tuple[str, ...] = ()


class ObjectStore(abc.ABC):
    """Immutable, content-addressed objects. Subclasses supply the medium."""

    @abc.abstractmethod
    def _write(self, oid: Oid, kind: str, parts: Sequence[Buffer]) -> None:
        """Store the object unless present (then only refresh it, for gc's grace period)."""

    @abc.abstractmethod
    def get(self, oid: str) -> StoredObject:
        """The object, verified; raise `ObjectNotFoundError` or `CorruptObjectError`."""

    def get_many(self, oids: list[str], *, small_only: bool = False) -> list[StoredObject | Exception | None]:
        """`get` of many objects: each one's object, or the error `get` raised for it (a bulk
        reader, the views' inline step, must not stop at one damaged object). Payloads may be
        read-only; stores that can find many objects at once override this. With `small_only`,
        only objects known to be small are read (a local store's packed ones, under 1 MB):
        the others are None, for the caller to read one at a time (memory stays bounded)."""
        if small_only:
            return [None] * len(oids)
        found: list[StoredObject | Exception | None] = []
        for oid in oids:
            try:
                found.append(self.get(oid))
            except Exception as exc:  # noqa: BLE001 - handed back: the caller says what it means
                found.append(exc)
        return found

    def get_many_stored(self, oids: list[str]) -> list[bytes | None]:
        """The stored bytes (object header and payload, verified) of the small objects kept
        uncompressed, for a bulk reader that splits many alike objects at once (the views'
        inline step); None for every other object, to be read with `get_many`. A store that
        cannot tell answers None for all."""
        return [None] * len(oids)

    @abc.abstractmethod
    def contains(self, oid: str) -> bool:
        """Whether the object is present (not verified)."""

    @abc.abstractmethod
    def iter_oids(self) -> Iterator[Oid]:
        """Every stored oid, in no particular order."""

    @abc.abstractmethod
    def delete(self, oid: str) -> None:
        """Remove an object (gc only); absent objects are ignored."""

    def begin_batch(self) -> None:
        """Start grouping writes (stores that can pack objects override this)."""

    def end_batch(self) -> None:
        """End a group of writes."""

    def flush(self) -> None:
        """Make grouped writes durable before anything refers to them."""

    def wait_uploads(self) -> None:
        """Return once every object written so far is durably stored (raise if one failed):
        called before a journal line names them. Stores that write synchronously return."""

    def writers_gate(self) -> Any:
        """The lock writers hold while objects may be unnamed (objects/gate.py), or None when
        this store cannot tell (a shared store: other machines' writers are invisible)."""
        return None

    def release_writes(self) -> None:
        """This process will write no more (closing): let a pruning gc run."""


    def freshen(self, oid: str) -> bool:
        """Make a stored object young again for gc's grace period, as a put of it would, without
        reading it; False when it is absent. Stores that keep no times only answer."""
        return self.contains(oid)
    def merge_packs(self, *, auto: bool = False, dry_run: bool = False) -> Any:
        """Merge small packs into larger ones (gc; with `auto`, the bounded merge a closing
        writer makes): a `pack.MergeStats`, or None for a store that merges no packs (a
        shared store's packs are read by every machine, and only gc removes one there)."""
        return None

    def gc_guard(self) -> AbstractContextManager[None]:
        """Held around a gc: shared stores refuse a second gc at once (local: flock elsewhere)."""
        return nullcontext()

    def will_prune(self, cutoff: float) -> None:
        """A gc with a grace shorter than the default is about to read the journal and delete
        unreachable objects older than `cutoff`: a shared store records it for other machines'
        saves (objects/s3.py). Local stores have the writers' gate (gate.py)."""

    def set_aside(self, oid: str, folder: Path) -> Path:
        """Move a damaged object's stored bytes out of the store into `folder` (kept, for a
        look or a recovery) so that saving or computing the value again stores a good copy
        (a put of an oid the store holds writes nothing). Stores that cannot say so."""
        raise ConfigurationError(f"this object store ({type(self).__name__}) cannot set damaged objects aside; "
                                 f"delete {oid} from it by hand, then save or compute the value again")

    @staticmethod
    def _keep(folder: Path, oid: str, chunks: Iterable[Buffer]) -> Path:
        """The stored bytes, given in `chunks` (a damaged object may be gigabytes: the caller
        streams it, and memory stays bounded by one chunk), written to `folder/oid` durably
        (before the store lets the object go)."""
        folder.mkdir(parents=True, exist_ok=True)
        kept = folder / oid
        temp = temporary_sibling(kept)  # (unique: one name per process was one for its threads)
        try:
            with open(temp, "wb") as handle:
                for chunk in chunks:
                    handle.write(chunk)
                handle.flush()
                os.fsync(handle.fileno())
        except BaseException:
            temp.unlink(missing_ok=True)
            raise
        os.replace(temp, kept)
        return kept

    def restore_set_aside(self) -> int:
        """Put back objects a gc killed mid-delete left set aside (a store that sets none aside:
        nothing to do); how many."""
        return 0

    def delete_many(self, oids: Iterable[str], *, older_than: float | None = None) -> Freed:
        """Remove several objects (gc); returns how many went and the bytes freed where the
        medium can tell (else 0). `older_than`: gc's cutoff; a store that can keeps what was
        freshened since."""
        present = [oid for oid in dict.fromkeys(oids) if self.contains(oid)]
        for oid in present:
            self.delete(oid)
        return Freed(len(present), 0)

    def kind_of(self, oid: str) -> str | None:
        """An object's kind, or None when it is absent (stores may avoid a full read)."""
        return self.get(oid).kind if self.contains(oid) else None

    def leaf_sizes(self, oids: list[str]) -> list[int | None]:
        """Bytes on disk of each object that names no other, found in bulk; None where the
        store cannot tell cheaply (it may have children, or is not found this way): the caller
        then walks it. Stores that can look many objects up at once override this."""
        return [None] * len(oids)

    def will_set_aside(self, oids: list[str]) -> None:
        """Told before `set_aside` takes these objects out, so that writers elsewhere that
        remember having stored them store them again (a local store's writers look each time)."""

    remote = False  # objects kept elsewhere (a lab's bucket) behind a cache on this machine

    def verify(self, oid: str) -> None:
        """Check that an object hashes to its id (fsck); stores may avoid loading it whole.
        A remote store checks its own copies, never this machine's cache of them."""
        self.get(oid)

    def own_copies(self) -> AbstractContextManager[None]:
        """Held while fsck checks: a remote store answers `contains` for its own copies, not
        for this machine's cache of them (a store with no cache: nothing to do)."""
        return nullcontext()

    def verify_cached(self, oid: str) -> bool:
        """Check this machine's copy only (`fsck --local`); False when it holds none. A store
        with no copy elsewhere checks its own."""
        self.verify(oid)
        return True

    def can_heal(self, oid: str) -> bool:
        """Whether `heal` would find a good copy of `oid` here (fsck's advice; nothing changed)."""
        return False

    def heal(self, oid: str) -> bool:
        """Replace a damaged or missing object with a good copy this machine holds (`fsck
        --repair`); False when there is none (a store with one copy of each never has one)."""
        return False

    def damaged_pack_indexes(self) -> dict[str, str]:
        """Pack name -> what is wrong with its index (stores without packs have none)."""
        return {}

    def interrupted_merges(self) -> dict[str, str]:
        """Merges of packs a killed process left half done -> their state (fsck; stores that
        merge no packs have none)."""
        return {}

    def finish_interrupted_merges(self) -> dict[str, str]:
        """Finish them (fsck --repair); those finished -> the state each was in."""
        return {}

    def repair_pack_index(self, name: str) -> int:
        """Rebuild a damaged pack index from its pack (stores without packs have none)."""
        raise NotImplementedError(f"{type(self).__name__} has no packs to repair")

    def oids_with_prefix(self, prefix: str) -> list[Oid]:
        """Stored oids starting with `prefix`."""
        return sorted(o for o in self.iter_oids() if o.startswith(prefix))

    def put(self, kind: str, parts: Sequence[Buffer] | Buffer) -> Oid:
        """Store a payload (one buffer or several) and return its oid. Idempotent."""
        if kind not in KINDS:
            raise ValueError(f"unknown object kind {kind!r}; expected one of {sorted(KINDS)}")
        if not isinstance(parts, (list, tuple)):
            parts = [parts]
        oid = hash_object(kind, parts)
        self._write(oid, kind, parts)
        return oid

    def put_value(self, value: Any) -> Oid:
        """Encode `value` canonically (children first) and store it."""
        return self.put(*encode_value(value, self.put))

    def get_into(self, oid: str, out: Any) -> tuple[str, int]:
        """Read an object's payload into `out` (a contiguous uint8 array the caller sized).

        Returns `(kind, length)`; `out` holds the payload only when `length == out.size` (the
        caller rejects any other length). Stores that can decode straight into the caller's
        memory override this: loading a big array then allocates nothing per chunk."""
        obj = self.get(oid)
        payload = memoryview(obj.payload).cast("B")
        if len(payload) == out.size:
            out[:] = payload
        return obj.kind, len(payload)

    def prefetch(self, oid: str) -> None:
        """A hint that `oid` will be read soon (a chunk a whole read reaches next), so its
        bytes can be on their way while earlier ones decode. Nothing by default."""

    def get_value(self, oid: str) -> Any:
        """Decode the value stored under `oid` (children resolved)."""
        return self._decoded(oid, self.get(oid))

    def get_values(self, oids: list[str]) -> list[Any]:
        """`get_value` of many objects (`load_all`); raises as `get_value` would for one that
        cannot be read. Arrays may be read-only views.

        Packed objects are split from bytes verified at once (`get_many_stored`): JSON ones,
        when all are scalars, parsed in one call, arrays of one header read as rows of one
        array (`decode_npy_many`); every other object is read with `get_many`, then decoded
        the same way (one path: `_read_values` had been a second copy of it). (One loose
        value among 300k packed ones, saved on its own later, had sent all of them through
        `get_many`: 1.3 s of a 3.5 s `load_all`; packed arrays were read and hashed a second
        time there and decoded one by one: 300k 4-element arrays 4.7 -> 3.0 s.)"""
        split = _split_stored(self.get_many_stored(oids)) if oids else []
        rest = [i for i, (kind, _) in enumerate(split) if kind is None]  # not packed, or not
        for i, obj in zip(rest, self.get_many([oids[i] for i in rest])):  # verified at once
            if isinstance(obj, Exception):
                raise obj
            split[i] = (obj.kind, obj.payload)
        values: list[Any] = [None] * len(oids)
        by_kind: dict[str, list[int]] = {}
        for i, (kind, _) in enumerate(split):
            by_kind.setdefault(kind, []).append(i)
        for kind, members in by_kind.items():
            payloads = [split[i][1] for i in members]
            scalars = loads_scalars(payloads) if kind == "json" else None  # (all scalars: one call)
            if scalars is not None:
                for i, value in zip(members, scalars):
                    values[i] = value
                continue
            arrays = decode_npy_many(payloads) if kind == "npy" else [None] * len(members)
            for i, payload, value in zip(members, payloads, arrays):
                values[i] = self._decoded(oids[i], StoredObject(kind, payload)) if value is None else value
        return values

    def _decoded(self, oid: str, obj: StoredObject) -> Any:
        try:
            return decode_value(obj.kind, obj.payload, self._fetcher, oid)
        except (CorruptObjectError, ObjectNotFoundError, MemoryError):  # a child's: names the child
            raise
        except Exception as exc:  # noqa: BLE001 - any failure to decode verified bytes is damage
            # (struct.error, SyntaxError, IndexError, RecursionError... not only ValueError)
            raise CorruptObjectError(oid, f"its {obj.kind} payload cannot be decoded ({exc})") from exc

    def open_value(self, oid: str) -> Any:
        """Like `get_value`, but a chunked value comes back lazy (only its manifest is read)."""
        return self.open_stored(oid, self.get(oid))  # one read: a chunked object is its small manifest

    def open_stored(self, oid: str, obj: StoredObject) -> Any:
        """`open_value` of an object already read (by `get_many`); a dict or list holding a
        chunked value holds it lazy too (`{"emg": recording, "fs": 2000}` loads `emg` lazily)."""
        if obj.kind == "json":
            try:
                return decode_json(obj.payload, self.open_value)
            except (CorruptObjectError, ObjectNotFoundError, MemoryError):  # a child's: names the child
                raise
            except Exception as exc:  # noqa: BLE001 - as `_decoded`
                raise CorruptObjectError(oid, f"its json payload cannot be decoded ({exc})") from exc
        if obj.kind != "chunked":
            return self._decoded(oid, obj)
        try:
            return open_chunked(obj.payload, self._fetcher, oid)
        except Exception as exc:  # noqa: BLE001 - a manifest that does not parse is damage
            raise CorruptObjectError(oid, f"its chunked manifest cannot be read ({exc})") from exc

    @functools.cached_property
    def _fetcher(self) -> "Fetch":
        return Fetch(self)


class Fetch:
    """What decoding needs from a store: `fetch(oid) -> (kind, payload)` for children,
    `fetch.into(oid, out)` (`ObjectStore.get_into`) for chunks read straight into an array,
    and `fetch.prefetch(oid)` for the chunks a read reaches next. A store that can read a
    chunk's stored bytes apart from decoding them (`LocalObjectStore.read_stored` and
    `decode_into`) lends those too, for whole reads of many chunks; else they are None."""

    __slots__ = ("_get", "into", "prefetch", "read_stored", "decode_into")

    def __init__(self, store: ObjectStore) -> None:
        self._get = store.get
        self.into = store.get_into
        self.prefetch = store.prefetch
        self.read_stored = getattr(store, "read_stored", None)
        self.decode_into = getattr(store, "decode_into", None)

    def __call__(self, oid: str) -> tuple[str, Any]:
        obj = self._get(oid)
        return obj.kind, obj.payload


class MemoryObjectStore(ObjectStore):
    """Objects in a dict: for lineage without a project, and as the reference in tests."""

    def __init__(self) -> None:
        self._objects: dict[Oid, StoredObject] = {}
        self._lock = threading.Lock()
        _MEMORY_STORES.add(self)

    def _write(self, oid: Oid, kind: str, parts: Sequence[Buffer]) -> None:
        if oid not in self._objects:
            payload = b"".join(bytes(p) for p in parts)
            with self._lock:
                self._objects.setdefault(oid, StoredObject(kind, payload))

    def get(self, oid: str) -> StoredObject:
        obj = self._objects.get(validate_oid(oid))
        if obj is None:
            raise ObjectNotFoundError(oid)
        return StoredObject(obj.kind, bytearray(obj.payload))

    def contains(self, oid: str) -> bool:
        return validate_oid(oid) in self._objects

    def iter_oids(self) -> Iterator[Oid]:
        return iter(list(self._objects))

    def delete(self, oid: str) -> None:
        with self._lock:
            self._objects.pop(validate_oid(oid), None)


# A forked child's memory stores have locks of their own (a thread of the parent writing may
# have held one: the child's first write waited for ever); each write is one dict operation, so
# what they guard stays whole without waiting for that thread at the fork.
_MEMORY_STORES: weakref.WeakSet[MemoryObjectStore] = weakref.WeakSet()


renew_in_child(lambda: [store._lock for store in list(_MEMORY_STORES)])


def hash_value(value: Any) -> Oid:
    """The oid `value` would have if stored, computed without writing anything."""

    def hash_only(kind: str, parts: list) -> Oid:
        return hash_object(kind, parts)

    return hash_object(*encode_value(value, hash_only))


def _split_stored(stored: list[bytes | None]) -> list[tuple[str | None, Any]]:
    """(kind, payload) of each stored object (`get_many_stored`: verified bytes) whose header
    is the one `object_header` writes for its kind and length; (None, None) for any other
    (read it with `get_many`, which says what is wrong)."""
    split: list[tuple[str | None, Any]] = []
    headers: dict[bytes, tuple[str | None, int]] = {}  # most of a variable's share a few
    append = split.append
    for data in stored:
        end = -1 if data is None else data.find(b"\x00", 0, 40)
        if end < 0:
            append((None, None))
            continue
        head = data[:end + 1]
        parsed = headers.get(head)
        if parsed is None:
            name, _, length = head[:-1].decode("ascii", "replace").partition(" ")
            good = name in KINDS and length.isdigit() and object_header(name, int(length)) == head
            parsed = headers[head] = (name, int(length)) if good else (None, -1)
        kind, length = parsed
        append((kind, data[end + 1:]) if kind is not None and length == len(data) - end - 1 else (None, None))
    return split