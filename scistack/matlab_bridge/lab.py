"""What MATLAB reads of a lab project: a local mirror of the shared journal, and objects
brought into the local read-through cache.

MATLAB cannot reach PostgreSQL or S3, but it can fold a journal file and read store files.
So for a lab project (`shared` in `.scistack/config.json`) it reads `.scistack/cache/`
instead of `.scistack/`: `cache/refs.log` holds the shared journal's lines, appended here
(`mirror_journal`, run by `scistack matlab-mirror`), and `cache/objects` is the same bounded
cache Python's loads fill, laid out as a laptop store. An object MATLAB misses there is
fetched with its children (`fetch_objects`, run by `scistack matlab-fetch`); a second load
never leaves the machine.

The mirror only grows, as MATLAB's fold expects of a journal. Its stamp `refs.seq` holds the
last shared `seq` mirrored and the file size that goes with it; a tail written past the stamp
(a run killed between the two) is cut off first, so no line is ever mirrored twice. A file
lock keeps two MATLAB sessions of one machine from appending at once.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path

from scistack._atomic import write_atomic
from scistack.database import Database
from scistack.errors import ConfigurationError, ObjectNotFoundError
from scistack.ingest import exclusive
from scistack.objects.canonical_json import dumps_canonical
from scistack.objects.codec import child_oids
from scistack.objects.oid import validate_oid
from scistack.objects.s3 import S3ObjectStore


_SLICE_BYTES = 16 << 20  # journal bytes mirrored at a time


def mirror_journal(db: Database) -> tuple[Path, int]:
    """Append the shared journal's new lines to `.scistack/cache/refs.log`; returns the mirror
    and how many lines were added."""
    folder = _cache_folder(db)
    mirror, stamp = folder / "refs.log", folder / "refs.seq"
    with exclusive(folder / "refs.lock"):
        seq, size = _read_stamp(stamp)
        with open(mirror, "ab") as out:
            if out.tell() != size:
                out.truncate(size)  # a tail no stamp covers (an interrupted run): written again below
                out.seek(size)
            added, last = 0, seq
            while True:  # a slice at a time: the first mirror of a 1M-ref journal held 1.6 GB whole
                entries, after = db.index.journal_tail(last, _SLICE_BYTES)
                if after == last:
                    break
                out.write(b"".join(dumps_canonical(e) + b"\n" for e in entries))
                added, last = added + len(entries), after
            out.flush()
            os.fsync(out.fileno())
            size = out.tell()
        if last != seq or not stamp.exists():
            write_atomic(stamp, f"{last} {size}\n")
    return mirror, added


def fetch_objects(db: Database, oids: Iterable[str]) -> int:
    """Bring each object and every object it names (a dict's values, an array's chunks) into
    the local cache, verified; returns how many were read from the object store."""
    _cache_folder(db)
    store: S3ObjectStore = db.store  # type: ignore[assignment]
    todo, seen, fetched = [validate_oid(o) for o in oids], set(), 0
    while todo:
        oid = todo.pop()
        if oid in seen:
            continue
        seen.add(oid)
        cached = store.cache.contains(oid)
        if cached and store.cache.kind_of(oid) not in ("json", "chunked"):
            continue  # a leaf already here: nothing to read
        try:
            obj = store.get(oid)  # from the bucket (ranged GET of a pack, or the loose object)
        except ObjectNotFoundError:
            raise ObjectNotFoundError(oid, "it is named in the shared journal but is in neither "
                                      "the local cache nor the object store; run `scistack fsck`") from None
        fetched += not cached
        todo.extend(child for child, _ in child_oids(obj.kind, obj.payload))
    return fetched


def _cache_folder(db: Database) -> Path:
    if not isinstance(db.store, S3ObjectStore):
        raise ConfigurationError(
            f"{db.root} is not a lab project (no shared journal): MATLAB reads its "
            ".scistack folder directly, with no mirror or fetch")
    folder = db.scistack_dir / "cache"
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def _read_stamp(stamp: Path) -> tuple[int, int]:
    try:
        seq, size = stamp.read_text().split()
        return int(seq), int(size)
    except (FileNotFoundError, ValueError):
        return 0, 0  # no mirror yet (or a damaged stamp): start it again from the first line
