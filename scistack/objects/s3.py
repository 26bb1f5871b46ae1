"""Objects in an S3-compatible bucket, behind a bounded local read-through cache (lab mode).

Layout under `s3://bucket/prefix/` (docs/format.md §1.6): `objects/ab/cdef…` hold exactly the
bytes of a loose file, `pack/pack-<id>.pack` + `.idx` exactly a local pack, and `project.json`
names the project that owns the prefix (two projects never share one: their gc would delete
each other's objects).

Why obstore (not s3fs): conditional puts (`If-None-Match: *`), ranged GETs and listing with
the store's own timestamps, in one small compiled client with no botocore/aiobotocore stack
and no fsspec caching layer between us and the bytes. Credentials come only from the S3
client's usual environment (AWS_ACCESS_KEY_ID, AWS_ENDPOINT_URL, ...): nothing secret is
passed in or written anywhere.

Hazards: a put is create-if-absent, so two machines saving one value both succeed and the
bytes never change; an existing object is re-put (refreshed) when older than `REFRESH_AFTER / 2`
(gc's grace is `REFRESH_AFTER`: half leaves a long save time to name it), so gc's grace period,
counted by the store's own clock, protects a value just named again.
A batch's small objects go up as one pack, its `.idx` last (the commit point, as on disk).
Every read is verified (the cache's reader hashes it); a second read never leaves the machine.

Speed of one save (a PUT is the slowest step): a single save's upload runs on a background
thread while the index takes the journal lock and numbers the version; the index calls
`wait_uploads` just before it writes the line, so a name is never journalled before its object
arrived (a failed upload raises there, in each save that relied on it, and nothing is named). A writer faster than its
uploads waits once `UPLOAD_BACKLOG` bytes written here are not yet up (`_room_for`): a chunked
save's disk use is bounded by that and the cache's bound, not by the array. An object this process put or
confirmed in the bucket less than `REFRESH_AFTER / 2` ago is not sent again (half: room for
clocks that disagree), so re-saving a value costs no request. `fsck --repair` on any machine
marks what it takes out of the bucket (`set-aside/<oid>`) and waits `SET_ASIDE_LOOK` before
taking it; a writer about to skip an upload lists those marks when its last look is older than
that (one LIST at most every few seconds, none for a save that uploads), and forgets having
uploaded what they name: a re-save had skipped the upload, and the value stayed lost.
"""

from __future__ import annotations

import ctypes
import hashlib
import json
import os
import secrets
import socket
import tempfile
import threading
import time
import warnings
import weakref
from collections.abc import Iterable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from concurrent.futures import wait as wait_all
from contextlib import contextmanager
from datetime import timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import numpy as np

from scistack.errors import (
    ConfigurationError,
    CorruptObjectError,
    CorruptPackIndexError,
    GarbageCollectionError,
    GcLockLeftWarning,
    ObjectNotFoundError,
    SchemaMismatchError,
    ScistackError,
    SharedAccessError,
    SharedServiceError,
)
from scistack.objects._proc import pid_started, process_gone, process_space
from scistack.objects.chunked import chunk_labels, parse_manifest
from scistack.objects.gate import DEFAULT_GRACE_SECONDS
from scistack.objects.hashing import Buffer, payload_length
from scistack.objects.local import _SMALL as PACKED_BELOW
from scistack.objects.local import LocalObjectStore, kind_in_stored
from scistack.objects.oid import Oid, is_valid_oid, validate_oid
from scistack.objects.owner import save_owner
from scistack.objects.pack import parse_idx
from scistack.objects.pack_table import PackTable
from scistack.objects.store import Freed, ObjectStore, StoredObject

REFRESH_AFTER = 3600.0         # re-put an existing object older than this (gc grace, by S3's clock)
UPLOAD_THREADS = 4             # single saves' uploads in flight at once (threads of for_each)
# Bytes written to the cache and not yet in the bucket (`_room_for`) before a writer waits for
# uploads to catch up, and at most a quarter of the cache's bound: a chunked save's disk use is
# then bounded by the cache's bound plus this, not by the array's size (one object larger than
# it still goes, alone). 256 MB keeps the pipe full: 2 * UPLOAD_THREADS chunks of up to 32 MB
# (8x that of the default 4 MB chunk), so no upload thread waits for a writer on a fast link.
UPLOAD_BACKLOG = 256 << 20
INDEX_FETCHES = 16             # pack indexes fetched at once by a machine catching up with the bucket
DEFAULT_CACHE_BYTES = 10 << 30  # the local cache's bound unless the project says otherwise
# Seconds a request may wait for the server's next bytes (an answer, or the next part of one)
# before it is given up and retried: a server that stops answering without closing the
# connection (a frozen machine, a network partition) otherwise held a save for the whole
# outage. Retries stop 20 s after the first try (`retry_timeout`), so a silent bucket costs a
# save ~20 s. It bounds silence, never size: a large object keeps the overall 300 s.
READ_STALL = 10
# Seconds a writer trusts its last look at the set-aside marks; `fsck --repair` waits longer
# between marking an object and taking it out of the bucket, so no later save skips it.
SET_ASIDE_LOOK = 5.0
# Seconds a save trusts its look at the recorded pruning gcs (`gc-pruning/`, `_young_parts`); a
# gc with a short grace records itself, then waits twice this before it reads the journal.
PRUNE_LOOK = 3.0
PRUNING = "gc-pruning/"
_BATCH = "batch"  # the save (`_owner`) a batch's writes are for: its flush raises their failures
_PRUNE_PASSES = 10  # looks in a row that took PRUNE_LOOK or longer before a save gives up (slow bucket)
_VERIFY_STEP = 4 << 20  # bytes of a bucket copy fsck holds at once while checking it


def objects_location(url: str) -> str:
    """`s3://bucket/prefix` as a project records where its objects are (its shared settings):
    no user or password, no query, no trailing slash, so two spellings of one prefix compare equal."""
    parts = urlsplit(url.strip())
    return f"s3://{parts.netloc.rpartition('@')[2]}{parts.path.rstrip('/')}"


class S3ObjectStore(ObjectStore):
    """Content in a bucket; the local cache (a `LocalObjectStore`) answers every repeated read."""

    def __init__(self, url: str, cache_dir: str | os.PathLike, *, max_bytes: int | None = None) -> None:
        try:
            import obstore
            from obstore.store import S3Store
        except ImportError:
            raise SharedServiceError("lab mode needs obstore for the shared object store; install "
                                     "it with pip install 'scistack[lab]'") from None
        self._ob = obstore
        self.url = url.rstrip("/")
        bucket, _, prefix = self.url.removeprefix("s3://").partition("/")
        if not bucket:
            raise SharedServiceError(f"{url!r} names no bucket; use s3://bucket/prefix")
        self.bucket = bucket
        # client options given here replace the environment's, so the http switch is carried over
        options: dict[str, Any] = {"connect_timeout": "5s", "timeout": "300s", "read_timeout": f"{READ_STALL}s"}
        if os.environ.get("AWS_ALLOW_HTTP", "").lower() in ("1", "true", "yes"):
            options["allow_http"] = True
        self._remote = S3Store.from_url(self.url, client_options=options,
                               retry_config={"max_retries": 2, "backoff": {"init_backoff": timedelta(milliseconds=100)},
                                             "retry_timeout": timedelta(seconds=20)})
        self.cache = LocalObjectStore(Path(cache_dir) / "objects")
        self.cache.auto_merge = False  # its packs are the bucket's, queued or trimmed by name
        self.cache.checks_parts = False  # (the bound drops chunks: the bucket's are checked, `_young_parts`)
        self.max_bytes = DEFAULT_CACHE_BYTES if max_bytes is None else int(max_bytes)
        self._cache_bytes: int | None = None
        self._idx_dir = Path(cache_dir) / "remote-idx"
        self._packs = PackTable()                 # remote pack name -> its sorted index entries
        self._listing: dict[str, tuple[float, int, bool]] = {}  # oid -> (store timestamp, size, a loose
        # copy listed), from iter_oids
        self._pack_meta: dict[str, float] = {}    # remote pack name -> its store timestamp
        self._listed_packs: set[str] | None = None  # the bucket's pack names as this process last
        # listed them (None: not listed yet)
        self._lock = threading.Lock()
        self._batch_depth = 0
        self._to_upload: list[Path] = []          # local packs (their .idx) not yet in the bucket
        self._written_bytes = 0                   # bytes of packs the cache wrote since the last flush
        self._young: dict[str, float] = {}        # oid -> when we last knew it young in the bucket
        self._uploading: dict[str, Future] = {}   # oid -> its upload still in flight
        self._relying: dict[str, set] = {}        # oid in flight -> the saves relying on it (`_owner`)
        self._failed: dict[Any, BaseException] = {}  # save -> an upload it relied on that failed,
        # until its wait raises it (`wait_uploads`)
        self._backlog = 0                         # bytes written here and not yet up (`_room_for`)
        self._room = threading.Condition(self._lock)  # notified as an upload ends
        self.peak_upload_backlog = 0              # the most `_backlog` ever held
        self._pool: ThreadPoolExecutor | None = None
        self._set_aside_seen: dict[str, float] = {}  # oid -> its set-aside mark's time, as last listed
        self._set_aside_looked = -SET_ASIDE_LOOK     # time.monotonic() of the last look at the marks
        self._look_lock = threading.Lock()
        self._marked: set[str] = set()                # oids this process marked set aside
        self._checked_packs: dict[str, dict[str, str]] = {}  # bucket pack -> its damaged records (fsck)
        self._own_copies_only = False                 # fsck: answer for the bucket, not the cache
        self._parts: dict[str, float] = {}  # chunks of manifests written here -> first looked at (0: not yet)
        self._cleared: dict[str, set[str]] = {}  # chunk -> pruning records it was seen in the bucket after
        self._pruning_looked = float("-inf")  # (monotonic) the last look at `gc-pruning/` (`_young_parts`)
        self._parts_lock = threading.Lock()  # held by the `wait_uploads` checking them
        self.cache.on_pack = self._pack_written
        _STORES.add(self)
        _runtime_used[0] = True  # (whether making a client starts the runtime or not: as if it did)
        self._load_cached_indexes()

    remote = True

    def _after_fork(self) -> None:
        """In a forked child, at the fork (`_after_fork_in_child`): the upload pool's threads and
        the uploads in flight are the parent's (a save here waited for ever on them), and its
        threads may have held the locks. The client and the pool are kept, never finalised
        here (the client's connections are registered with the runtime the parent still
        runs: dropping them here unregisters the parent's). A child of a process that used
        the bucket refuses every request to it (`_refuse_in_forked_child`)."""
        for inherited in (self._remote, self._pool, self._uploading):
            _keep_for_ever(inherited)
        self._pool, self._uploading, self._relying, self._failed = None, {}, {}, {}
        self._lock, self._look_lock = threading.Lock(), threading.Lock()
        self._room, self._backlog = threading.Condition(self._lock), 0  # (the parent's uploads)
        self._parts, self._cleared, self._parts_lock = {}, {}, threading.Lock()  # (the parent's saves)
        self._batch_depth, self._to_upload = 0, []  # a batch open in the parent, its packs queued: the parent's

    @property
    def address(self) -> str:
        """What a for_each worker (maybe on another machine) opens the store by: the URL."""
        return self.url

    def __reduce__(self) -> tuple:
        """Pickled as its URL: a lazy value sent to a dask worker (maybe another machine)
        reopens the bucket there as a for_each worker does (`for_worker`)."""
        return S3ObjectStore.for_worker, (self.url,)

    @classmethod
    def for_worker(cls, url: str) -> S3ObjectStore:
        """The store as a worker opens it: credentials from the worker's own environment, a
        cache of its own in the temp folder (the caller's folder may not exist there)."""
        name = "scistack-worker-cache-" + hashlib.blake2b(url.encode(), digest_size=8).hexdigest()
        return cls(url, Path(tempfile.gettempdir()) / name)

    # -- errors ------------------------------------------------------------------------------
    def _failure(self, exc: BaseException, doing: str) -> Exception:
        text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        if "NoSuchBucket" in str(exc):
            return SharedServiceError(
                f"the bucket {self.bucket!r} of {self.url} does not exist ({doing}); create it, or "
                "fix objects= / the project's config. Nothing was changed")
        status = _status(exc)
        if status.startswith("HTTP 403") or any(
                code in str(exc) for code in ("AccessDenied", "InvalidAccessKeyId", "SignatureDoesNotMatch")):
            # (not a bare "403" anywhere in the text: a port such as 40312 is not a refusal)
            return SharedAccessError(
                f"the object store refused {doing} at {self.url} ({_status(exc)}); check the S3 "
                "credentials in your environment (AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY or "
                "AWS_PROFILE) and the bucket policy")
        return SharedServiceError(
            f"the object store at {self.url} failed while {doing} ({_status(exc) or text[:300]}); "
            "check the network and AWS_ENDPOINT_URL, then re-run: saved names never point at "
            "objects that did not arrive")

    def _call(self, doing: str, fn: Any, *args: Any, **kwargs: Any) -> Any:
        _refuse_in_forked_child(self.url, doing)
        try:
            return fn(self._remote, *args, **kwargs)
        except (self._ob.exceptions.AlreadyExistsError, self._ob.exceptions.PreconditionError):
            raise
        except Exception as exc:  # noqa: BLE001 - obstore's errors, named for the user
            if isinstance(exc, FileNotFoundError) and "NoSuchBucket" not in str(exc):
                raise  # an absent key: the caller decides
            raise self._failure(exc, doing) from None

    def _list(self, doing: str, prefix: str) -> Iterator[dict]:
        """Every entry under `prefix`. A listing asks the server as it is iterated, after
        `_call` returned: its failures (a server down, a refusal) are named here too."""
        _refuse_in_forked_child(self.url, doing)
        try:
            for batch in self._call(doing, self._ob.list, prefix=prefix):
                yield from batch
        except ScistackError:
            raise
        except Exception as exc:  # noqa: BLE001 - obstore's errors, named for the user
            raise self._failure(exc, doing) from None

    # -- ownership ---------------------------------------------------------------------------
    def claim(self, project_id: str) -> None:
        """Mark the prefix as `project_id`'s (create-if-absent); refuse another project's."""
        marker = self._idx_dir.parent / "claimed"
        if marker.exists() and marker.read_text() == f"{self.url} {project_id}":
            return  # checked before from this machine: opening needs no network round trip
        body = json.dumps({"project_id": project_id}).encode()
        try:
            self._call("claiming the prefix", self._ob.put, "project.json", body, mode="create")
            self._remember_claim(marker, project_id)
            return
        except self._ob.exceptions.AlreadyExistsError:
            pass
        except FileNotFoundError as exc:
            raise self._failure(exc, "claiming the prefix") from None
        owner = json.loads(bytes(self._call("reading project.json", self._ob.get, "project.json").bytes()))
        if owner.get("project_id") != project_id:
            raise SchemaMismatchError(
                f"{self.url} already holds the objects of another scistack project "
                f"({str(owner.get('project_id'))[:12]}); two projects in one prefix would delete "
                "each other's objects in gc. Use another prefix, e.g. "
                f"{self.url}-2, or join that project's shared journal")
        self._remember_claim(marker, project_id)

    def owner(self) -> str | None:
        """The project id `project.json` names (None: no project has claimed the prefix yet)."""
        try:
            body = self._call("reading project.json", self._ob.get, "project.json").bytes()
        except FileNotFoundError:
            return None
        return json.loads(bytes(body)).get("project_id")

    def _remember_claim(self, marker: Path, project_id: str) -> None:
        marker.parent.mkdir(parents=True, exist_ok=True)
        marker.write_text(f"{self.url} {project_id}")

    # -- write ---------------------------------------------------------------------------------
    def _write(self, oid: Oid, kind: str, parts: Sequence[Buffer]) -> None:
        if kind == "chunked":
            self._note_parts(parts)
        if self._batch_depth:
            self.cache._write(oid, kind, parts)  # small ones buffer into the next pack
            if payload_length(parts) < PACKED_BELOW:
                # (the cache's rule): no look for a loose copy, two stats per object
                if oid not in self.cache._buffer:
                    self._send_packed(oid)  # packed here before: not in the batch's new pack
                return
            if self.cache.contains(oid) and os.path.exists(self.cache.path_of(oid)) and not self._is_young(oid):
                self._trim_cache(self._upload_loose(oid))  # a large one was written loose: up now
            return
        size = self._room_for(oid, payload_length(parts))
        try:
            self.cache._write(oid, kind, parts)
            # (young: in the bucket, and young for gc: nothing to send)
            if not self._is_young(oid) and self._upload_soon(oid, size):
                size = 0  # the upload gives its room back as it ends
        finally:
            if size:
                with self._room:
                    self._backlog -= size
                    self._room.notify_all()

    def _room_for(self, oid: str, size: int) -> int:
        """Wait until `size` more bytes written here and not yet uploaded stay within
        `UPLOAD_BACKLOG` (a quarter of the cache's bound at most), and hold them; the bytes
        held (0: its upload is already in flight). A writer faster than its uploads (a chunked
        save of a TB from a memmap, on a slow link) had kept every chunk not yet up in the
        cache, which never drops one, and filled the disk far past the cache's bound. An
        object alone in the backlog always goes (one larger than the bound too). A failed
        upload this save relied on raises here (`wait_uploads`, once its others in flight
        ended): the save stops with nothing named, not held for ever nor writing the rest of
        the array for nothing."""
        bound = min(UPLOAD_BACKLOG, self.max_bytes // 4)
        owner = self._owner()
        while True:
            with self._room:
                if oid in self._uploading:
                    return 0
                while owner not in self._failed and self._backlog and self._backlog + size > bound:
                    self._room.wait()
                if owner not in self._failed:
                    self._backlog += size
                    self.peak_upload_backlog = max(self.peak_upload_backlog, self._backlog)
                    return size
            self.wait_uploads()  # raises it (unless a helper of the same save's did: look again)

    def _send_packed(self, oid: str) -> None:
        """A small object a batch found already packed in this machine's cache, so not in the
        batch's new pack: its pack goes up at the flush (before any name), unless the bucket is
        known to hold it. The cache is no proof: a pack whose upload failed (the network, a
        killed client: its queue died with it) or that the bucket lost stays there, and a
        re-run had named its objects with nothing uploaded. Known: the pack's index kept with
        the bucket's (a process on this machine uploaded it, or listed it there), so a re-run of
        what is in the bucket costs a dict lookup per object; a pack of an older version of this
        code, not kept so, costs one listing of `pack/` per process."""
        name = self.cache.packs.pack_name(oid, look_again=False)
        if name is None:  # (its pack was trimmed meanwhile: only one known in the bucket is)
            located = self._locate(oid)
            if (located is None or not self._pack_is_young(located[0])) and not self._is_young(oid):
                self._upload_soon(oid)
            return
        if name in self._packs:
            self._young_in_pack(oid, name)
            return  # in the bucket
        idx = self.cache.packs.directory / f"{name}.idx"
        with self._lock:
            if idx in self._to_upload:
                return  # goes up at the flush
        if self._is_young(oid):
            return  # uploaded (loose) by this process lately
        try:  # uploaded by another process sharing this cache (for_each's workers on one machine)
            self._packs[name] = _parse_idx((self._idx_dir / f"{name}.idx").read_bytes())
            self._young_in_pack(oid, name)
            return
        except FileNotFoundError:
            pass
        if name in self._bucket_packs():
            try:
                self._know_pack(name, idx.read_bytes(), self._pack_meta.get(name, 0.0))
                self._young_in_pack(oid, name)
                return
            except FileNotFoundError:
                pass  # (trimmed meanwhile)
        self._queue_pack(idx)

    def _young_in_pack(self, oid: str, stem: str) -> None:
        """An object a batch names again, found in bucket pack `stem`: young for gc there, or
        sent up loose now (before any name: `wait_uploads`), as an old loose object is re-put.
        A pack is never uploaded again, so its time in the bucket (gc's grace clock) is when it
        first went up: a gc that judged the object unreachable a moment before the name deleted
        the pack with it, and the new name pointed at nothing. A loose copy created after gc
        listed the bucket is one gc keeps (`delete_many`). A pack put less than `REFRESH_AFTER / 2`
        ago costs nothing (a re-run naming young objects sends nothing)."""
        if not self._pack_is_young(stem) and not self._is_young(oid):
            self._upload_soon(oid)

    def _pack_is_young(self, stem: str) -> bool:
        """Whether pack `stem` went into the bucket less than `REFRESH_AFTER / 2` ago (half: room
        for clocks that disagree): by the bucket's time when this process listed it, else by its
        kept index's mtime, which `_know_pack` sets to the bucket's time (an index kept by an
        older version is as old as when it was learned: no older than the pack)."""
        stamp = self._pack_meta.get(stem)
        if stamp is None:
            try:
                stamp = os.stat(self._idx_dir / f"{stem}.idx").st_mtime
            except FileNotFoundError:
                return False
            self._pack_meta[stem] = stamp  # (one stat per pack, not per object)
        return time.time() - stamp < REFRESH_AFTER / 2

    def _bucket_packs(self) -> set[str]:
        """The bucket's pack names, listed once by this process (`_refresh_packs` lists them
        anew); empty when the bucket does not answer (the pack is then sent, and the flush
        says whether it can be)."""
        if self._listed_packs is None:
            try:
                listed = {meta["path"].rsplit("/", 1)[-1][:-4]: meta["last_modified"].timestamp()
                          for meta in self._list("listing packs", "pack/") if meta["path"].endswith(".idx")}
            except ScistackError:
                return set()
            self._pack_meta.update(listed)
            self._listed_packs = set(listed)
        return self._listed_packs

    def _know_pack(self, stem: str, data: bytes, stamp: float) -> None:
        """Pack `stem`, whose index is `data`, is in the bucket since `stamp` (the bucket's time;
        0: not known): its index is kept with the others' (`remote-idx`), with that time as its
        mtime (`_pack_is_young`), so this and later processes know it without asking, and the
        cache may drop its own copy."""
        self._packs[stem] = self._keep_index(stem, data, stamp)

    def _keep_index(self, stem: str, data: bytes, stamp: float) -> np.ndarray:
        """`_know_pack` but for the table: the index kept, its entries returned."""
        entries = _parse_idx(data)
        self._idx_dir.mkdir(parents=True, exist_ok=True)
        temp = self._idx_dir / f".tmp-{os.getpid()}-{secrets.token_hex(4)}"
        temp.write_bytes(data)
        os.utime(temp, (stamp, stamp))
        os.replace(temp, self._idx_dir / f"{stem}.idx")
        self._pack_meta[stem] = stamp
        if self._listed_packs is not None:
            self._listed_packs.add(stem)
        return entries

    def _pack_written(self, name: str) -> None:
        """The cache wrote pack `name` (`on_pack`): at a flush, or within a batch whose buffer
        passed its bound; that one had never been queued, and its objects were named with
        nothing in the bucket."""
        idx = self.cache.packs.directory / f"{name}.idx"
        try:
            self._written_bytes += idx.stat().st_size + idx.with_suffix(".pack").stat().st_size
        except FileNotFoundError:
            pass
        self._queue_pack(idx)

    def _queue_pack(self, idx: Path) -> None:
        with self._lock:
            if idx not in self._to_upload:
                self._to_upload.append(idx)

    def _owner(self) -> Any:
        """The save a write here is for: the batch (its flush waits before any of its names),
        else the writing thread's save (`owner.save_owner`: a chunked save's helpers write for it)."""
        return _BATCH if self._batch_depth else save_owner()

    def _upload_soon(self, oid: str, size: int = 0) -> bool:
        """Upload a cached object on the background pool (`wait_uploads` waits for it); whether
        it was sent (not already in flight: the save relies on that upload, whoever sent it).
        `size`: backlog bytes it gives back as it ends."""
        _refuse_in_forked_child(self.url, "uploading an object")  # (here: not on the pool's thread)
        owner = self._owner()
        with self._lock:
            if oid in self._uploading:
                self._relying[oid].add(owner)
                return False
            if self._pool is None:
                self._pool = ThreadPoolExecutor(UPLOAD_THREADS, thread_name_prefix="scistack-s3-put")
            self._relying[oid] = {owner}
            self._uploading[oid] = self._pool.submit(self._upload_in_background, oid, size)
            return True

    def _upload_in_background(self, oid: str, size: int) -> None:
        """Upload `oid`; once up, it is no longer in flight, so the bound may drop its copy
        (it was kept until the save's `wait_uploads`: a long save kept every chunk it wrote).
        A failure is kept for each save that relied on the upload, until its own wait raises it
        (a wait had taken every failed upload, another thread's too, whose wait then returned and
        named an object not in the bucket); a later save of the object sends it again."""
        try:
            try:
                uploaded = self._upload_loose(oid)
            except BaseException as exc:
                with self._lock:
                    self._uploading.pop(oid, None)
                    for owner in self._relying.pop(oid, ()):
                        self._failed.setdefault(owner, exc)
                raise
            with self._lock:
                self._uploading.pop(oid, None)  # (this upload's: it is never sent twice at once)
                self._relying.pop(oid, None)
            self._trim_cache(uploaded)
        finally:
            with self._room:
                self._backlog -= size
                self._room.notify_all()

    def _is_young(self, oid: str) -> bool:
        """In the bucket and young for gc, as far as this process knows: put or confirmed less
        than `REFRESH_AFTER / 2` ago, and not set aside by `fsck --repair` since."""
        if time.time() - self._young.get(oid, 0.0) >= REFRESH_AFTER / 2:
            return False
        try:
            self._look_for_set_aside()
        except ScistackError:
            pass  # the bucket does not answer: trust what we knew (a re-save sends nothing), and look later
        return oid in self._young

    def _look_for_set_aside(self) -> None:
        """Forget having uploaded the objects `fsck --repair` (on any machine) marked since the
        last look: one LIST of `set-aside/`, at most every `SET_ASIDE_LOOK` s."""
        with self._look_lock:
            started = time.monotonic()
            if started - self._set_aside_looked < SET_ASIDE_LOOK:
                return
            self._set_aside_looked = started  # (the look began then: fsck waits longer than this)
            marks = self._set_aside_marks()
            for oid, stamp in marks.items():
                if self._set_aside_seen.get(oid) != stamp:
                    self._set_aside_seen[oid] = stamp
                    self._young.pop(oid, None)

    def _set_aside_marks(self) -> dict[str, float]:
        """oid -> when `fsck --repair` marked it set aside (the store's clock)."""
        marks = {}
        for meta in self._list("listing set-aside marks", "set-aside/"):
            oid = meta["path"].rsplit("/", 1)[-1]
            if is_valid_oid(oid):
                marks[oid] = meta["last_modified"].timestamp()
        return marks

    def will_set_aside(self, oids: list[str]) -> None:
        """Mark each object (`set-aside/<oid>`), then wait past `SET_ASIDE_LOOK`: every
        writer's look at the marks after this began after them, so a writer that remembers
        having uploaded one of them uploads it again rather than skip it. Marks older than
        `REFRESH_AFTER` go: no writer trusts an upload that old."""
        fresh = [oid for oid in oids if oid not in self._marked]
        if not fresh:
            return
        for oid, stamp in self._set_aside_marks().items():
            if time.time() - stamp > REFRESH_AFTER and oid not in fresh:
                self._call("removing an old set-aside mark", self._ob.delete, f"set-aside/{oid}")
        body = json.dumps({"host": socket.gethostname(), "pid": os.getpid(), "at": time.time()}).encode()
        for oid in fresh:
            self._call("marking an object set aside", self._ob.put, f"set-aside/{oid}", body)
        self._marked.update(fresh)
        time.sleep(SET_ASIDE_LOOK + 1.0)

    def wait_uploads(self) -> None:
        """Wait for the uploads this save relies on (`_owner`: those it sent, and those it found
        in flight, sent by another); raise the first that failed (those objects are not in the
        bucket: the caller must not name them; a later save of them uploads again). Another
        save's failure is left for that save's wait to raise."""
        self._wait_for({self._owner()})

    def _wait_for(self, owners: set, every: bool = False) -> None:
        """Wait for the uploads `owners` rely on and raise their first failure (taken: raised
        once to each save). `every`: wait for every upload in flight, and raise any save's
        failure too, left for that save's own wait (a batch's flush: the index's batch is the
        process's, so it journals names other threads put, whose objects they sent)."""
        with self._lock:
            mine = [future for oid, future in self._uploading.items()
                    if every or not owners.isdisjoint(self._relying[oid])]
        wait_all(mine)  # (a failure is recorded, in `_failed`, before its future ends)
        with self._lock:
            failures = [self._failed.pop(owner) for owner in owners if owner in self._failed]
            if every:
                failures += list(self._failed.values())
        if failures:
            raise failures[0]
        self._young_parts()

    def _note_parts(self, parts: Sequence[Buffer]) -> None:
        """A chunked manifest is written: its chunks (or row groups) are checked young in the
        bucket before it is named (`_young_parts`)."""
        try:
            named = [oid for oid, _ in chunk_labels(parse_manifest(b"".join(bytes(p) for p in parts)))]
        except (ValueError, KeyError, TypeError):  # (not one this code wrote: nothing to check)
            return
        with self._lock:
            for oid in named:
                self._parts[oid] = 0.0  # (a save again of one noted before: looked at anew)

    def _young_parts(self) -> None:
        """Before a name is journalled: no chunk of a manifest written here was deleted, or may
        be, by a gc on another machine. A chunked save writes its chunks first and names its
        manifest last, and such a gc cannot see this writer: it keeps what is younger than its
        grace (an hour at least in a lab), so a save running longer had its first chunks
        deleted, and returned naming them. Re-putting every old chunk before the name cost a
        save bound by its upload about twice its time, for a rare event; now a gc with a grace
        shorter than the default records its cutoff before it reads the journal (`will_prune`),
        and only a save whose oldest chunk is `REFRESH_AFTER / 2` old or more looks (one LIST
        of `gc-pruning/`, at most every `PRUNE_LOOK` s). A chunk a recorded cutoff reaches is
        looked for (HEAD): one gone is put back from this machine's cache, one that gc may still
        delete (its lock is held) is put again; one held by neither raises, naming nothing.
        A gc recording after the look reads the journal after the name (it waits
        `2 * PRUNE_LOOK`), so sees it. A chunk older than half the default grace (a week) is
        put again whatever was recorded."""
        with self._parts_lock:  # (a second thread's name waits until its chunks are checked too)
            with self._lock:
                parts = dict(self._parts)
            if not parts:
                return
            now, mono = time.time(), time.monotonic()
            # kept after a look until REFRESH_AFTER / 2 (a writer names what it checked within
            # that: the same room as an upload's), so a name retried later (the shared journal's
            # `append_if` losing a race, then the locked path) is looked at again
            expired = [oid for oid, first in parts.items() if first and mono - first >= REFRESH_AFTER / 2]
            kept = [oid for oid in parts if oid not in expired]
            old = {oid: t for oid in kept if now - (t := self._written_at(oid)) >= REFRESH_AFTER / 2}
            if old and (any(not parts[oid] for oid in old) or mono - self._pruning_looked >= PRUNE_LOOK):
                try:
                    self._look_until_trusted(old)
                except (ObjectNotFoundError, SharedServiceError):
                    with self._lock:
                        for oid in parts:
                            self._parts.pop(oid, None)
                            self._cleared.pop(oid, None)
                    raise
            with self._lock:
                for oid in expired:
                    self._parts.pop(oid, None)
                    self._cleared.pop(oid, None)
                for oid in kept:
                    if oid in self._parts and not self._parts[oid]:
                        self._parts[oid] = mono

    def _look_until_trusted(self, old: dict[str, float]) -> None:
        """`_check_parts` again while a pass took `PRUNE_LOOK` or longer (the name must follow
        the look's start by less: a gc that recorded after it reads the journal
        `2 * PRUNE_LOOK` after its record); what a pass put again or found is not redone."""
        for _ in range(_PRUNE_PASSES):
            started = time.monotonic()
            self._pruning_looked = started  # (when the look began: a gc recording later waits past it)
            self._check_parts({oid: self._written_at(oid) for oid in old}, time.time())
            if time.monotonic() - started < PRUNE_LOOK:
                return
        raise SharedServiceError(
            f"{self.url} answered too slowly to check, before naming a value, that no gc on "
            f"another machine deleted its chunks ({_PRUNE_PASSES} looks each took over "
            f"{PRUNE_LOOK:.0f} s); nothing was named. Save the value again (its chunks in the "
            "bucket are not sent again)")

    def _written_at(self, oid: str) -> float:
        """When this process last knew `oid` put in the bucket (its put, or the bucket's time),
        loose or in a bucket pack; 0.0 when it does not know."""
        stamp = self._young.get(oid, 0.0)
        located = self._locate(oid)
        if located is not None:
            stamp = max(stamp, self._pack_meta.get(located[0], 0.0))
        return stamp

    def _check_parts(self, old: dict[str, float], now: float) -> None:
        """`_young_parts`' look: the old chunks a recorded gc's cutoff reaches (with
        `REFRESH_AFTER / 2` of room for clocks that disagree), each not yet seen in the bucket
        since that gc, are looked for; see there."""
        records = self._pruning_records()
        at_risk: dict[str, list[str] | None] = {}
        for oid, written in old.items():
            if now - written >= DEFAULT_GRACE_SECONDS / 2:  # (a gc with the default grace records nothing)
                at_risk[oid] = None
                continue
            cleared = self._cleared.get(oid, set())
            keys = [key for key, cutoff in records.items()
                    if written < cutoff + REFRESH_AFTER / 2 and key not in cleared]
            if keys:
                at_risk[oid] = keys
        if not at_risk:
            return
        running = self._gc_running()

        def check(oid: str) -> bool:
            keys = at_risk[oid]
            if keys is None or running:
                return self.freshen(oid)  # that gc may still delete it: put again
            try:
                self._call("checking an object", self._ob.head, f"objects/{oid[:2]}/{oid[2:]}")
            except FileNotFoundError:
                return self.freshen(oid)  # deleted (or packed): put back loose from this machine's cache
            with self._lock:
                self._cleared.setdefault(oid, set()).update(keys)
            return True

        with ThreadPoolExecutor(UPLOAD_THREADS, thread_name_prefix="scistack-s3-fresh") as pool:
            found = list(pool.map(check, list(at_risk)))
        gone = [oid for oid, ok in zip(at_risk, found) if not ok]
        if gone:
            raise ObjectNotFoundError(gone[0], (
                f"it is a chunk of a value being saved, deleted from {self.url} by a gc on "
                "another machine while this save ran (a gc with a short grace, e.g. --prune=now), "
                "and this machine's cache no longer holds it; nothing was named. Save the value "
                f"again ({len(gone)} chunk(s) are gone)"))

    def _pruning_records(self) -> dict[str, float]:
        """The recorded pruning gcs (`will_prune`): key -> cutoff (the recording gc's clock)."""
        records = {}
        for meta in self._list("listing pruning gcs", PRUNING):
            try:
                records[meta["path"]] = float(meta["path"].rsplit("/", 1)[-1].split("-", 1)[0])
            except ValueError:
                continue
        return records

    def _gc_running(self) -> bool:
        """Whether a gc holds `gc.lock` (one left by a gc that died counts: it may not have)."""
        try:
            self._call("checking the gc lock", self._ob.head, "gc.lock")
        except FileNotFoundError:
            return False
        return True

    def will_prune(self, cutoff: float) -> None:
        """A gc with a grace shorter than the default, holding `gc.lock`, is about to delete
        unreachable objects older than `cutoff`: recorded (`gc-pruning/<cutoff>-<token>`)
        before it reads the journal, then a wait of `2 * PRUNE_LOOK`, so a save naming its old
        chunks either saw the record (`_young_parts`) or journalled the name before the wait
        ended. Records of earlier gcs with a lower cutoff go: each chunk they reach, the
        highest reaches too (they are finished: this gc holds the lock)."""
        records = self._pruning_records()
        if records:
            top = max(records.values())
            for key, old in records.items():
                if old < top:
                    self._call("removing an old pruning record", self._ob.delete, key)
        body = json.dumps({"host": socket.gethostname(), "pid": os.getpid(), "at": time.time(),
                           "cutoff": cutoff}).encode()
        self._call("recording a pruning gc", self._ob.put,
                   f"{PRUNING}{cutoff:.3f}-{secrets.token_hex(8)}", body)
        time.sleep(2 * PRUNE_LOOK)

    def freshen(self, oid: str) -> bool:
        """Young again in the bucket, as a put of it would make it (gc's grace is the bucket's
        clock, and another machine's gc lists and deletes there). The base answered `contains`,
        which this machine's cache answers first: a value another machine's gc had freed was
        named again (undelete, a cache hit's outputs) with no copy in the bucket. A good copy
        here is put back; False when neither the bucket nor this machine holds one. (Called
        only where an old object is named again: a re-put costs what a re-save's does.)"""
        validate_oid(oid)
        if self._is_young(oid):
            return True
        try:
            self.get(oid)  # verified: this machine's copy, else the bucket's (then cached)
            self._trim_cache(self._upload_loose(oid))
        except ObjectNotFoundError:
            return self.contains(oid)  # (a copy trimmed from the cache just now: still there)
        except CorruptObjectError:
            return self.contains(oid)  # damaged everywhere: fsck's to name; freshen only answers
        return True

    def _cached_bytes(self, oid: str) -> bytes:
        """A cached object's stored bytes, loose or packed here (ObjectNotFoundError: neither)."""
        try:
            return self.cache.path_of(oid).read_bytes()
        except FileNotFoundError:
            data = self.cache.packs.read(oid)
            if data is None:
                raise ObjectNotFoundError(oid) from None
            return data

    def _upload_loose(self, oid: str) -> int:
        """Put a cached object's stored bytes into the bucket; returns their size. (Packed
        here, it goes up loose: a loose copy makes it young again in the bucket.)"""
        data = self._cached_bytes(oid)
        key = f"objects/{oid[:2]}/{oid[2:]}"
        young = time.time()
        try:
            self._call("uploading an object", self._ob.put, key, data, mode="create")
        except self._ob.exceptions.AlreadyExistsError:
            meta = self._call("checking an object", self._ob.head, key)
            young = meta["last_modified"].timestamp()
            # half, as `_is_young` and `_pack_is_young`: its name may be journalled minutes from
            # now (a large value still uploading other chunks), and gc's grace is `REFRESH_AFTER`
            if time.time() - young >= REFRESH_AFTER / 2:
                self._call("refreshing an object", self._ob.put, key, data)  # same bytes, young again
                young = time.time()
        except FileNotFoundError as exc:
            raise self._failure(exc, "uploading an object") from None
        self._young[oid] = young
        return len(data)

    def begin_batch(self) -> None:
        self._batch_depth += 1
        self.cache.begin_batch()

    def end_batch(self) -> None:
        self._batch_depth = max(0, self._batch_depth - 1)
        if self._batch_depth == 0:
            self.flush()  # (it waits for the batch's uploads and this thread's)
        self.cache.end_batch()

    def flush(self) -> None:
        """Write the batch's pack locally and upload it whole (`.pack`, then `.idx`), with
        every other queued pack: those the batch's full buffer wrote, and those it found its
        objects in that the bucket may lack (`_send_packed`).

        A pack whose upload failed stays queued and goes up first at the next flush, so the
        index (which journals the batch's names only after this returns) never names an
        object that is not in the bucket. (A process that dies with packs queued leaves them
        in the cache only: a re-run's batch finds its objects there and queues them again.)"""
        self.cache.flush()  # its pack is queued (`_pack_written`)
        added, self._written_bytes = self._written_bytes, 0
        while True:
            with self._lock:
                if not self._to_upload:
                    break
                idx = self._to_upload[0]
            created = time.time()
            for path in (idx.with_suffix(".pack"), idx):
                try:
                    self._call("uploading a pack", self._ob.put, f"pack/{path.name}", path.read_bytes(),
                               mode="create")
                except self._ob.exceptions.AlreadyExistsError:
                    created = 0.0  # the same objects packed the same way: identical bytes, of any age
                except FileNotFoundError as exc:
                    raise self._failure(exc, "uploading a pack") from None
            data = idx.read_bytes()
            if not created:  # its time in the bucket is gc's clock for the objects named now
                meta = self._call("checking a pack", self._ob.head, f"pack/{idx.name}")
                created = meta["last_modified"].timestamp()
            self._know_pack(idx.stem, data, created)
            young = self._pack_is_young(idx.stem)  # put just now (or lately): young in the bucket
            for row in _parse_idx(data):
                oid = bytes(row["oid"]).hex()
                if young:
                    self._young[oid] = created
                else:  # put long ago by a batch of the same objects: each sent up loose
                    self._young_in_pack(oid, idx.stem)
            with self._lock:
                if idx in self._to_upload:
                    self._to_upload.remove(idx)
        # every upload in flight: the batch's loose ones (copies read from the cache's packs: up
        # before the bound drops one), and those of the names other threads put in the batch
        # (sent by them, perhaps before it began: waiting for the batch's and this thread's
        # alone had journalled such a name whose upload failed, review 1 of 085d0f9)
        self._wait_for({_BATCH, save_owner()}, every=True)
        self._trim_cache(added)

    # -- read ----------------------------------------------------------------------------------
    def release_writes(self) -> None:
        with self._lock:  # (a failure is left for its save's wait: another thread may still name)
            in_flight = list(self._uploading.values())
        wait_all(in_flight)  # closing: an unnamed object that did not arrive is not missed
        if self._pool is not None:
            self._pool.shutdown(wait=True)
            self._pool = None
        self.cache.release_writes()

    def get(self, oid: str) -> StoredObject:
        validate_oid(oid)
        damage: CorruptObjectError | None = None
        try:
            return self.cache.get(oid)
        except (ObjectNotFoundError, FileNotFoundError):  # (a pack the bound just dropped)
            pass
        except CorruptObjectError as exc:  # this machine's copy: the bucket's may be good
            damage = exc
        for stored in self._copies(oid):
            try:
                return self._cached(oid, stored)
            except CorruptObjectError as exc:
                damage = damage or exc
        if damage is not None:
            raise damage
        raise ObjectNotFoundError(oid, f"it is not in {self.url} either; run `scistack fsck`")

    def _cached(self, oid: str, stored: bytes) -> StoredObject:
        """A copy from the bucket written into the cache (loose) and read back verified; a
        damaged one is removed again and raises."""
        path = self.cache.path_of(oid)
        path.parent.mkdir(parents=True, exist_ok=True)
        temp = path.with_name(f".tmp-{os.getpid()}-{secrets.token_hex(4)}")
        temp.write_bytes(stored)
        os.replace(temp, path)
        try:
            found = self.cache.get(oid)  # verifies the hash
        except CorruptObjectError:
            path.unlink(missing_ok=True)
            raise CorruptObjectError(oid, f"the copy in {self.url} does not hash to its id") from None
        self._trim_cache(len(stored))
        return found

    def _fetch(self, oid: str) -> bytes | None:
        """An object's stored bytes from the bucket: a pack record (ranged GET) or a loose file."""
        return next(self._copies(oid), None)

    def _copies(self, oid: str) -> Iterator[bytes]:
        """Each copy of an object's stored bytes in the bucket, in turn, for a read to take the
        first that verifies: the packs known to hold it, the loose object, then packs other
        machines uploaded since. A damaged copy stays where it is (a pack every machine reads
        is never rewritten), and a value saved again puts a good one beside it (loose, or in a
        new pack): a read that stopped at the first copy failed for good on every machine that
        knew the damaged pack, while one that did not read the good copy. A good first copy
        costs what it did: one GET."""
        tried: set[str] = set()
        for attempt in (0, 1):
            for pack, offset, length in self._locate_all(oid):
                if pack not in tried:
                    tried.add(pack)
                    try:
                        yield bytes(self._call("reading a pack", self._ob.get_range, f"pack/{pack}.pack",
                                               start=offset, length=length))
                    except FileNotFoundError:  # removed by gc meanwhile: its objects are elsewhere
                        pass
            if attempt == 0:
                try:
                    yield bytes(self._call("reading an object", self._ob.get, f"objects/{oid[:2]}/{oid[2:]}").bytes())
                except FileNotFoundError:
                    pass
                if not self._refresh_packs():
                    return

    def _locate(self, oid: str) -> tuple[str, int, int] | None:
        return next(self._locate_all(oid), None)

    def _locate_all(self, oid: str) -> Iterator[tuple[str, int, int]]:
        """Every known pack holding `oid`, with its offset and length there."""
        yield from self._packs.locate(bytes.fromhex(oid))

    def _load_cached_indexes(self) -> None:
        if self._idx_dir.is_dir():
            self._packs.add({path.stem: _parse_idx(path.read_bytes()) for path in self._idx_dir.glob("pack-*.idx")})

    def _refresh_packs(self) -> bool:
        """Fetch indexes of packs other machines uploaded; True when any were new. Packs known
        before the listing but absent from it (gc's, or lost) are forgotten: a batch saving
        their objects again sends them (`_send_packed`), and fsck names them missing. The new
        indexes are fetched `INDEX_FETCHES` at a time (a machine joining a lab fetches one per
        pack the lab ever uploaded: 1,000 one after another took 4.7 s on loopback)."""
        known, listed, fresh = set(self._packs), set(), []
        for meta in self._list("listing packs", "pack/"):
            name = meta["path"].rsplit("/", 1)[-1]
            if not name.endswith(".idx"):
                continue
            stem = name[:-4]
            listed.add(stem)
            self._pack_meta[stem] = meta["last_modified"].timestamp()
            if stem not in self._packs:
                fresh.append(stem)

        def fetch(stem: str) -> tuple[str, np.ndarray]:
            data = bytes(self._call("reading a pack index", self._ob.get, f"pack/{stem}.idx").bytes())
            return stem, self._keep_index(stem, data, self._pack_meta[stem])

        if len(fresh) > 1:
            with ThreadPoolExecutor(min(INDEX_FETCHES, len(fresh)), thread_name_prefix="scistack-s3-idx") as pool:
                self._packs.add(dict(pool.map(fetch, fresh)))
        elif fresh:
            self._packs.add(dict([fetch(fresh[0])]))
        for stem in known - listed:
            self._packs.pop(stem, None)
            self._pack_meta.pop(stem, None)
            self._checked_packs.pop(stem, None)
            (self._idx_dir / f"{stem}.idx").unlink(missing_ok=True)
        self._listed_packs = listed
        return bool(fresh)

    def contains(self, oid: str) -> bool:
        validate_oid(oid)
        if self._own_copies_only:  # fsck: the bucket's listing, not this machine's cache
            if oid in self._listing or self._locate(oid) is not None:
                return True
        elif self.cache.contains(oid) or self._locate(oid) is not None:
            return True
        try:
            self._call("checking an object", self._ob.head, f"objects/{oid[:2]}/{oid[2:]}")
            return True
        except FileNotFoundError:
            self._refresh_packs()
            return self._locate(oid) is not None

    def kind_of(self, oid: str) -> str | None:
        """The kind an object's header names, or None when it is absent. A damaged object
        answers its header's kind, as a laptop store's does (gc's walk asks every leaf; fsck's
        `verify` names the damage): it had raised, and stopped gc and fsck at the first one."""
        if self.cache.contains(oid):
            return self.cache.kind_of(oid) if not self._own_copies_only or self.contains(oid) else None
        try:
            return self.get(oid).kind
        except ObjectNotFoundError:
            return None
        except CorruptObjectError:  # (get() kept no copy of it: read its header again)
            stored = self._fetch(oid)
            return None if stored is None else kind_in_stored(stored)

    # -- listing, for gc and fsck (the bucket is the truth, its clock the grace period's) --------
    def iter_oids(self) -> Iterator[Oid]:
        listing: dict[str, tuple[float, int, bool]] = {}
        self._refresh_packs()
        for stem, entries in self._packs.items():
            stamp = self._pack_meta.get(stem, 0.0)
            for row in entries:
                oid = bytes(row["oid"]).hex()
                if oid not in listing or listing[oid][0] < stamp:
                    listing[oid] = (stamp, int(row["length"]), False)
        for meta in self._list("listing objects", "objects/"):
            parts = meta["path"].split("/")
            oid = parts[-2] + parts[-1] if len(parts) >= 2 else ""
            if is_valid_oid(oid):
                stamp = meta["last_modified"].timestamp()
                packed = listing.get(oid)
                if packed is None or packed[0] < stamp:
                    listing[oid] = (stamp, int(meta["size"]), True)
                else:
                    listing[oid] = (packed[0], packed[1], True)
        self._listing = listing
        return iter([Oid(o) for o in listing])

    def _listed(self, oid: str) -> tuple[float, int, bool]:
        if oid not in self._listing:
            list(self.iter_oids())
        if oid not in self._listing:
            raise ObjectNotFoundError(oid)
        return self._listing[oid]

    def mtime_of(self, oid: str) -> float:
        """When the bucket last wrote the object (its pack's time, if packed): gc's grace clock."""
        return self._listed(oid)[0]

    def size_of(self, oid: str) -> int:
        return self._listed(oid)[1]

    # -- fsck: the bucket's copies, not this machine's cache of them ------------------------------
    @contextmanager
    def own_copies(self) -> Iterator[None]:
        """`contains` and `kind_of` answer for the bucket (by the last listing, then a HEAD),
        not this machine's cache: an object missing from the bucket but cached here looked
        present to fsck, and was missing for every colleague."""
        self._own_copies_only = True
        try:
            yield
        finally:
            self._own_copies_only = False

    def verify(self, oid: str) -> None:
        """Check the bucket's copies of an object: a good copy in this machine's cache had hidden
        a damaged one that every colleague without it fails on. The loose copy is streamed to a
        temporary file and a pack is read once, whole, in steps (`_pack_damage`): memory stays
        bounded. A damaged record in a pack beside a good copy (a value saved again) is not
        named: every read takes the good one, and the pack is never rewritten."""
        validate_oid(oid)
        packed: list[tuple[str, str | None]] = []
        for stem, _, _ in list(self._locate_all(oid)):
            try:
                packed.append((stem, self._pack_damage(stem).get(oid)))
            except FileNotFoundError:
                pass  # removed by gc meanwhile
        if not packed or self._listing.get(oid, (0.0, 0, True))[2]:  # (fsck's listing: no GET for none)
            try:
                loose = self._loose_damage(oid)
            except FileNotFoundError:
                pass
            else:
                if loose is not None:
                    raise CorruptObjectError(oid, f"the copy in {self.url} is damaged ({loose})")
                return
        if not packed:
            raise ObjectNotFoundError(oid, f"it is not in {self.url}")
        if all(problem is not None for _, problem in packed):
            stem, problem = packed[0]
            raise CorruptObjectError(oid, f"its record in pack {stem} of {self.url} is damaged ({problem})")

    def verify_cached(self, oid: str) -> bool:
        """This machine's copy only (`fsck --local`); a damaged one is judged by the bucket's."""
        if not self.cache.contains(oid):
            return False
        try:
            self.cache.verify(oid)
        except (ObjectNotFoundError, FileNotFoundError):
            return False  # (trimmed meanwhile)
        except CorruptObjectError:
            self.verify(oid)  # reads fall back to the bucket: its copy decides
        return True

    def can_heal(self, oid: str) -> bool:
        """Whether this machine holds a good copy for `heal` to put back (fsck's advice)."""
        try:
            self.cache.verify(oid)
        except (CorruptObjectError, ObjectNotFoundError, FileNotFoundError):
            return False
        return True

    def heal(self, oid: str) -> bool:
        """Put this machine's good cached copy over the bucket's damaged one, or where it is
        missing (loose: a pack every machine reads is never rewritten, and reads take the good
        copy beside it). False when this machine holds no good copy."""
        try:
            self.cache.verify(oid)
            data = self._cached_bytes(oid)
        except (CorruptObjectError, ObjectNotFoundError, FileNotFoundError):
            return False
        self._call("uploading a good copy over a damaged one", self._ob.put, f"objects/{oid[:2]}/{oid[2:]}", data)
        self._young[oid] = time.time()
        return True

    def _loose_damage(self, oid: str) -> str | None:
        """What is wrong with the bucket's loose copy (None: it hashes to `oid`); raises
        FileNotFoundError when there is none. Streamed to a temporary file and checked there."""
        folder = self._idx_dir.parent / "verifying"
        folder.mkdir(parents=True, exist_ok=True)
        temp = folder / f".tmp-{os.getpid()}-{secrets.token_hex(4)}"
        try:
            result = self._call("reading an object to verify it", self._ob.get, f"objects/{oid[:2]}/{oid[2:]}")
            with open(temp, "w+b") as handle:
                for chunk in self._stream(result, "reading an object to verify it"):
                    handle.write(chunk)
                handle.seek(0)
                try:
                    self.cache.verify_file(oid, handle)
                except CorruptObjectError as exc:
                    return _problem(exc)
            return None
        finally:
            temp.unlink(missing_ok=True)

    def _pack_damage(self, stem: str) -> dict[str, str]:
        """The objects whose record in bucket pack `stem` is damaged -> what is wrong. The pack
        is read once, in steps, each record checked as it arrives (records are under 1 MB);
        the answer is kept for the other objects of the pack."""
        if stem in self._checked_packs:
            return self._checked_packs[stem]
        entries = self._packs[stem]
        order = np.argsort(entries["offset"], kind="stable")
        damage: dict[str, str] = {}
        result = self._call("reading a pack to verify it", self._ob.get, f"pack/{stem}.pack")
        buffer, base, i = bytearray(), 0, 0  # base: the pack offset of buffer[0]
        for chunk in self._stream(result, "reading a pack to verify it"):
            buffer += chunk
            while i < len(order):
                row = entries[order[i]]
                start, length = int(row["offset"]) - base, int(row["length"])
                if start + length > len(buffer):
                    break
                oid = bytes(row["oid"]).hex()
                try:
                    self.cache._decode_small(oid, bytes(buffer[start:start + length]))
                except CorruptObjectError as exc:
                    damage[oid] = _problem(exc)
                i += 1
            keep_from = min(int(entries[order[i]]["offset"]) - base, len(buffer)) if i < len(order) else len(buffer)
            del buffer[:max(keep_from, 0)]
            base += max(keep_from, 0)
        for j in order[i:]:
            damage[bytes(entries[j]["oid"]).hex()] = "the pack ends before its record"
        self._checked_packs[stem] = damage
        return damage

    def _stream(self, result: Any, doing: str) -> Iterator[Any]:
        """A GET's bytes in steps of `_VERIFY_STEP`, a failure named as `_call` names it."""
        try:
            yield from result.stream(min_chunk_size=_VERIFY_STEP)
        except Exception as exc:  # noqa: BLE001 - obstore's errors, named for the user
            raise self._failure(exc, doing) from None

    def iter_temp_files(self) -> Iterator[Path]:
        return iter(())

    def delete(self, oid: str) -> None:
        self.delete_many([oid])

    def set_aside(self, oid: str, folder: Path) -> Path:
        """A damaged loose object's bytes kept in `folder`, then removed from the bucket (and
        this machine's cache). One in a pack stays: other machines read the pack, which is
        never rewritten in place."""
        validate_oid(oid)
        if self._locate(oid) is not None:
            raise ConfigurationError(
                f"object {oid} sits in a pack of {self.url} that every machine reads; it is not "
                "rewritten from here: restore the pack from a backup, or delete the refs to the value")
        doing = "reading an object to set it aside"
        try:  # (streamed, as `verify` reads it: a damaged object had been read whole into memory)
            result = self._call(doing, self._ob.get, f"objects/{oid[:2]}/{oid[2:]}")
        except FileNotFoundError:
            raise ObjectNotFoundError(oid, f"it is not in {self.url}") from None
        kept = self._keep(folder, oid, self._stream(result, doing))  # kept before anything is removed
        self.will_set_aside([oid])  # (fsck marked it already, with the others, and waited once)
        self._young.pop(oid, None)
        self._call("deleting an object", self._ob.delete, f"objects/{oid[:2]}/{oid[2:]}")
        self.cache.delete(oid)
        return kept

    def delete_many(self, oids: Iterable[str], *, older_than: float | None = None) -> Freed:
        """Remove loose objects, and packs whose every object is doomed; returns the objects
        removed (one left in a pack that stays is not) and the bytes freed. (An object re-put
        since gc listed it is kept whatever `older_than` says.)"""
        doomed = set(oids)
        freed, removed = 0, set()
        for oid in doomed:
            self._young.pop(oid, None)
            key = f"objects/{oid[:2]}/{oid[2:]}"
            try:
                meta = self._call("checking an object", self._ob.head, key)
                listed = self._listing.get(oid, (float("inf"), 0, True))
                if not listed[2] or meta["last_modified"].timestamp() > listed[0]:
                    # re-put (named again) since gc listed it: young, keep it. A loose copy
                    # gc's listing did not hold (only packed then) was put since, whatever its
                    # time says: the bucket's whole-second clock gave a re-put in the second
                    # its pack went up the pack's time, and it was deleted
                    continue
                self._call("deleting an object", self._ob.delete, key)
                freed += int(meta["size"])
                removed.add(oid)
            except FileNotFoundError:
                pass
            self.cache.delete(oid)
        for stem, entries in list(self._packs.items()):
            members = {bytes(o).hex() for o in entries["oid"]}
            if members and members <= doomed:
                self._call("deleting a pack", self._ob.delete, [f"pack/{stem}.idx", f"pack/{stem}.pack"])
                freed += int(entries["length"].sum())
                removed |= members
                self._packs.pop(stem)
                (self._idx_dir / f"{stem}.idx").unlink(missing_ok=True)
        return Freed(sum(1 for oid in removed if self._locate(oid) is None), freed)

    @contextmanager
    def gc_guard(self) -> Iterator[None]:
        """One gc at a time across the lab: a lock object created only if absent. A lock left
        by a gc of this machine that is gone (its release failed: the bucket did not answer)
        is taken over (`_take_over_gc_lock`); any other is refused, naming its holder."""
        body = json.dumps({"host": socket.gethostname(), "pid": os.getpid(), "since": time.time(),
                           "space": process_space(), "started": pid_started(os.getpid()),
                           "token": secrets.token_hex(8)}).encode()
        try:
            self._call("taking the gc lock", self._ob.put, "gc.lock", body, mode="create")
        except self._ob.exceptions.AlreadyExistsError:
            self._take_over_gc_lock(body)
        with _GC_HELD_LOCK:
            _GC_HELD[self.url] = _GC_HELD.get(self.url, 0) + 1
        try:
            yield
        finally:
            with _GC_HELD_LOCK:
                _GC_HELD[self.url] -= 1
            self._release_gc_lock()

    def _take_over_gc_lock(self, body: bytes) -> None:
        """Take `gc.lock` if its holder is provably gone, else raise GarbageCollectionError.
        Gone: written on this machine (its host, boot and pid namespace: there a pid names one
        process) by a pid that no longer runs, or runs a process started at another time than
        the lock says (`process_gone`: the pid given to another process since, as after a
        restart at once in a container), or by this very process with no gc of it running (a
        gc whose release failed). A lock of an older scistack (no start) is judged by its pid. The lock is then overwritten only if it is still the one
        read (If-Match on its ETag), and read back: of two processes taking it over, one wins and
        the other is refused. A lock from another machine is never taken: its gc may be running."""
        holder: dict = {}
        for _ in range(2):
            try:
                found = self._call("reading the gc lock", self._ob.get, "gc.lock")
            except FileNotFoundError:  # released meanwhile: take it as usual
                try:
                    self._call("taking the gc lock", self._ob.put, "gc.lock", body, mode="create")
                    return
                except self._ob.exceptions.AlreadyExistsError:
                    continue  # taken meanwhile: read who holds it
            data = bytes(found.bytes())
            try:
                holder = json.loads(data)
            except ValueError:
                holder = {}
            if not isinstance(holder, dict):
                holder = {}
            seen = {k: found.meta[k] for k in ("e_tag", "version") if found.meta.get(k)}
            if seen.get("e_tag") and self._gc_lock_is_stale(holder):  # (no ETag: no safe overwrite)
                try:
                    self._call("taking over a left gc lock", self._ob.put, "gc.lock", body, mode=seen)
                    now = bytes(self._call("reading the gc lock", self._ob.get, "gc.lock").bytes())
                except (self._ob.exceptions.AlreadyExistsError, self._ob.exceptions.PreconditionError,
                        FileNotFoundError):
                    now = b""  # another process took it first
                if now == body:
                    return
                continue  # read the new holder, for the message
            break
        since = holder.get("since")
        since = since if isinstance(since, (int, float)) else 0.0
        raise GarbageCollectionError(
            f"gc refused: another gc (on {holder.get('host')}, pid {holder.get('pid')}, since "
            f"{time.strftime('%Y-%m-%d %H:%M:%S', time.gmtime(since))} UTC) is "
            f"running on {self.url}; nothing was deleted. Wait for it; if that gc no longer runs "
            f"(its machine crashed, or lost the bucket before it could remove its lock), delete "
            f"{self.url}/gc.lock (e.g. aws s3 rm {self.url}/gc.lock) and retry. (A lock left by "
            "a gc of this machine that is gone is taken over without asking.)") from None

    def _gc_lock_is_stale(self, holder: dict) -> bool:
        """Whether the gc that wrote lock `holder` is provably gone (`_take_over_gc_lock`)."""
        pid = holder.get("pid")
        if (holder.get("host") != socket.gethostname() or holder.get("space") != process_space()
                or not isinstance(pid, int) or isinstance(pid, bool) or pid <= 0):
            return False
        started = holder.get("started")
        started = started if isinstance(started, str) else ""
        if pid == os.getpid() and (not started or started == pid_started(pid)):
            with _GC_HELD_LOCK:
                return not _GC_HELD.get(self.url)
        return process_gone(pid, started)  # (a pid that runs another process: that gc is gone)

    def _release_gc_lock(self) -> None:
        """Delete `gc.lock`, trying twice. A lock left still (the bucket does not answer) is
        taken over by the next gc on this machine; one elsewhere refuses, naming it."""
        for attempt in (0, 1):
            try:
                self._call("releasing the gc lock", self._ob.delete, "gc.lock")
                return
            except Exception as exc:  # noqa: BLE001 - gc's own outcome (or failure) goes on
                if attempt:
                    warnings.warn(GcLockLeftWarning(
                        f"gc could not remove its lock {self.url}/gc.lock ({exc}); the next gc on "
                        f"this machine takes it over, but one on another machine is refused until "
                        f"it is deleted: aws s3 rm {self.url}/gc.lock"), stacklevel=4)
                else:
                    time.sleep(1.0)

    # -- the bounded cache --------------------------------------------------------------------------
    def _trim_cache(self, added: int = 0) -> None:
        """Keep the cache under `max_bytes`: drop the least recently written loose copies
        (every one of them is in the bucket, so nothing is lost)."""
        with self._lock:
            if self._cache_bytes is None:
                self._cache_bytes = _tree_bytes(self.cache.root)
            else:
                self._cache_bytes += added
            if self._cache_bytes <= self.max_bytes:
                return
            files = []
            for fan in self.cache.root.glob("??"):
                for entry in os.scandir(fan):
                    info = entry.stat()
                    files.append((info.st_mtime, info.st_size, entry.path))
            uploading = {str(self.cache.path_of(o)) for o in self._uploading}
            files = [f for f in files if f[2] not in uploading]  # the only copy until it is up
            packs = self.cache.packs.directory
            for idx in packs.glob("pack-*.idx") if packs.is_dir() else ():
                if idx.stem not in self._packs:
                    continue  # not known in the bucket (queued, or left by a failed upload): the only copy
                pack = idx.with_suffix(".pack")
                try:
                    info = pack.stat()
                    files.append((info.st_mtime, info.st_size + idx.stat().st_size, str(idx)))
                except FileNotFoundError:
                    pass
            files.sort()
            total = sum(f[1] for f in files)
            for _, size, path in files:
                if total <= self.max_bytes * 0.8:
                    break
                try:
                    if path.endswith(".idx"):  # the index first: without it the pack is ignored
                        os.unlink(path)
                        os.unlink(path[:-4] + ".pack")
                    else:
                        os.unlink(path)
                    total -= size
                except FileNotFoundError:
                    pass
            self._cache_bytes = total
            self.cache.packs.refresh()  # forget the indexes of packs dropped here

    def cache_bytes(self) -> int:
        """Bytes the local cache holds now."""
        return _tree_bytes(self.cache.root)


# The S3 client (obstore) runs its requests on one runtime per process (tokio's), whose
# threads and event poller (epoll) are made at its first request. A forked child inherits the
# poller's descriptor, one poller shared with the parent, but none of its threads: a request in
# the child waited for ever, and each connection it opened was registered on the shared poller,
# so the parent's runtime thread was woken for it and took the child's registration (a pointer
# into the child's memory) for one of its own: gdb showed the parent's thread waiting for ever
# on a lock in what it found there (tokio's `ScheduledIo::wake`, from its IO driver's `turn`);
# where that memory held no lock, the wake died of SIGSEGV (an earlier attempt's). Neither a new client nor a new
# store helps (the runtime is the extension's, one per process), so a child forked after this
# process used the bucket refuses each request to it, naming the fix, and never finalises the
# inherited client (dropping its connections unregisters the parent's sockets from the
# shared poller). Values in the local cache still load in the child.
_GC_HELD: dict[str, int] = {}  # bucket url -> gc locks this process holds there (`gc_guard`)
_GC_HELD_LOCK = threading.Lock()


_runtime_used = [False]  # a request has been made in this process (or a parent before a fork)
_forked_after_use = [False]
_STORES: weakref.WeakSet[S3ObjectStore] = weakref.WeakSet()


def _keep_for_ever(inherited: Any) -> None:
    """A reference never given back: not even the interpreter's exit finalises it here."""
    if inherited is not None:
        ctypes.pythonapi.Py_IncRef(ctypes.py_object(inherited))


def _refuse_in_forked_child(url: str, doing: str) -> None:
    if _forked_after_use[0]:
        raise SharedServiceError(
            f"this process was forked from one that had used the lab's object store {url}, and its S3 client "
            f"cannot run in a forked child (it would hang, and could crash the parent), so {doing} was refused "
            "and nothing was named. Start processes that save or load lab values with "
            "multiprocessing.get_context('spawn') (or 'forkserver'), as for_each does, and call "
            "configure_database in each; values already in this machine's cache load here")
    _runtime_used[0] = True


def _after_fork_in_child() -> None:
    _forked_after_use[0] = _runtime_used[0]
    for store in list(_STORES):
        store._after_fork()


if hasattr(os, "register_at_fork"):  # (no fork, no need: Windows)
    os.register_at_fork(after_in_child=_after_fork_in_child)


def _parse_idx(data: bytes) -> np.ndarray:
    """A bucket pack index's entries (`pack.parse_idx`); one that is damaged is the service's fault."""
    try:
        return parse_idx(data)
    except CorruptPackIndexError:
        raise SharedServiceError("a pack index in the object store is damaged; run `scistack fsck`") from None


def _tree_bytes(root: Path) -> int:
    total = 0
    for folder, _, names in os.walk(root):
        for name in names:
            try:
                total += os.stat(os.path.join(folder, name)).st_size
            except FileNotFoundError:
                pass
    return total


def _problem(exc: CorruptObjectError) -> str:
    """What a CorruptObjectError says is wrong (its text between "corrupt: " and the advice)."""
    return str(exc).split(" is corrupt: ", 1)[-1].split(". Its file", 1)[0]


def _status(exc: BaseException) -> str:
    text = str(exc)
    for marker in ("status code: ", "Server returned non-2xx status code: "):
        if marker in text:
            return "HTTP " + text.split(marker, 1)[1][:40].split("<", 1)[0].strip()
    return ""

