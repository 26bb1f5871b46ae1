"""`scistack share`: a laptop project copied whole into a new lab project.

A project starts on one laptop; when the lab wants it, its history (every version, call-cache
entry and run report, with their times) and its objects move to the lab's PostgreSQL journal
and bucket, and work goes on in a lab checkout (`to`). The laptop project is left as it was.

The journal's lines are copied verbatim, so the lab's versions, lineage and cache are the
laptop's: that needs a lab journal holding nothing else, and `share` refuses any other (a
project with values of its own merges another one through `export` / `import`). Objects go
first (the store re-hashes each), then the lines, slice by slice, each slice in one
transaction with the laptop journal offset it reached (`moved_offset`): killed at any point,
`share` run again resumes where it stopped and never writes a line twice. Run again later, it
brings what the laptop saved since, as long as the lab journal still holds only the copy.
"""

from __future__ import annotations

import json
import os
import sys
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import blake3

from scistack.database import CONFIG_NAME, SHARED_FROM, Database, check_lab_urls, register_share
from scistack.errors import CorruptObjectError, SchemaMismatchError, ScistackError, SharedServiceError
from scistack.index.journal import Journal
from scistack.ingest import ingest_queue
from scistack.index.pgjournal import PostgresJournal, redact
from scistack.objects.canonical_json import dumps_canonical

_SLICE = 16 << 20  # journal bytes per transaction


@dataclass(frozen=True)
class ShareReport:
    """What `share` did: the lab checkout, and what it copied this time."""

    path: str
    objects: int   # objects uploaded (already in the bucket: not counted)
    entries: int   # journal entries appended to the lab journal


def share(db: Database, *, to: str | os.PathLike, shared: str, objects: str) -> ShareReport:
    """Copy the laptop project `db` into the new lab project at `shared` (a postgresql:// URL)
    and `objects` (s3://bucket/prefix), with a lab checkout in the folder `to`."""
    check_lab_urls(shared or None, objects or None)
    if not shared:
        raise SchemaMismatchError("share needs the lab's journal: shared='postgresql://host/db' and "
                                  "objects='s3://bucket/prefix'")
    if _config(db.scistack_dir).get("shared"):
        raise SchemaMismatchError(f"{db.path.name} is a lab project already; colleagues join it with "
                                  "scistack init PATH --shared URL --objects URL")
    rejected: list[str] = []
    ingest_queue(db, db.scistack_dir / "queue", rejected)  # MATLAB's deferred saves are the project's too
    for message in rejected:  # (set aside in .scistack/rejected, not copied)
        warnings.warn(message, stacklevel=2)
    db.flush()
    local = Journal(db.index.journal_path)
    marker = _marker(local)
    target = Path(to) / db.path.name
    _check_target(Path(to), target, None)  # before any connection
    journal = PostgresJournal(shared, target.parent / ".scistack" / "shared-journal")
    try:
        with journal.locked():
            meta = journal.project_meta({})
            resuming = meta.get("moved_from") == marker and int(meta.get("moved_seq", "-1")) == journal.size()
            if (meta or journal.size()) and not resuming:
                raise SchemaMismatchError(_not_empty(meta, journal, marker))
            _check_target(Path(to), target, meta.get("project_id"))
            # the laptop's call records name its id: the lab's are its own (`Database.project_ids`)
            laptop = {SHARED_FROM: laptop_id} if (laptop_id := _config(db.scistack_dir).get("laptop_id")) else {}
            if not meta:  # a new lab project, marked as this copy from its first transaction, chunking
                policy = db.chunk_policy()  # as this project's (its values' oids depend on it)
                journal.project_meta({"schema_keys": json.dumps(db.schema_keys), "moved_from": marker, **laptop,
                                      "moved_offset": "0", "moved_seq": "0",
                                      "chunking": json.dumps({"threshold": policy.threshold,
                                                              "chunk_bytes": policy.chunk_bytes}, sort_keys=True)})
            elif laptop:  # (set unless set: run again after the laptop had made its id)
                journal.project_meta(laptop)
        lab = Database(target, db.schema_keys, shared=shared, objects=objects)
        uploaded = entries = 0
        try:
            uploaded = _copy_objects(db, lab)
            offset = int(journal.project_meta({})["moved_offset"])
            while offset < local.size():
                found, reached = local.read_from(offset, _SLICE)
                if reached <= offset:
                    break
                lines = [dumps_canonical(e) + b"\n" for e in found]
                journal.append_with_meta(lines, {"moved_offset": str(reached)}, seq_key="moved_seq")
                entries += len(lines)
                offset = reached
            lab.index.refresh()
        except BaseException as exc:
            try:
                lab.close()  # (the lab may be unreachable: what failed first is what is said)
            except ScistackError:
                pass
            if isinstance(exc, SharedServiceError):
                raise SharedServiceError(
                    f"{exc}. The copy stopped after {uploaded} object(s) and {entries} journal entr(ies) "
                    "of this run; run the same share again to resume it (nothing is written twice)") from None
            raise
        lab.close()
    finally:
        journal.close()
    return ShareReport(str(target), uploaded, entries)


def _interactive() -> bool:
    return sys.stderr is not None and sys.stderr.isatty()


def _config(scistack_dir: Path) -> dict[str, Any]:
    path = scistack_dir / CONFIG_NAME
    return json.loads(path.read_text()) if path.exists() else {}


def _marker(local: Journal) -> str:
    """Which laptop project this is: the hash of its journal's first line (its first save,
    with its time), the same however the journal has grown since."""
    entries, _ = local.read_from(0, 1 << 16)
    if not entries:
        raise SchemaMismatchError("this project has saved nothing yet: create the lab project "
                                  "directly, with configure_database(path, keys, shared=..., objects=...)")
    return blake3.blake3(dumps_canonical(entries[0])).hexdigest()


def _check_target(folder: Path, target: Path, project_id: str | None) -> None:
    """`to` is a new or empty folder, or the checkout of the lab project being resumed."""
    if not folder.exists() or not any(folder.iterdir()):
        return
    config = _config(folder / ".scistack")
    if config.get("db") == target.name and config.get("project_id") and config["project_id"] == (
            project_id or config["project_id"]):
        return  # resuming into the checkout the first run made (its URL may be spelt otherwise)
    raise SchemaMismatchError(f"{folder} is not an empty folder; share into a new or empty folder "
                              "(the lab checkout); nothing was changed")


def _not_empty(meta: dict[str, str], journal: PostgresJournal, marker: str) -> str:
    where = redact(journal.url)
    if meta.get("moved_from") == marker:
        return (f"the lab project at {where} was copied from this project, but colleagues have saved "
                "there since, so the values saved here after the copy cannot be appended as they "
                "are; bring them with scistack export --all-current ... here and scistack import "
                "in the lab checkout. Nothing was changed")
    return (f"{where} holds a project already (schema keys {meta.get('schema_keys', '?')}); share "
            "copies a project into a new, empty lab journal. To add this project's values to that "
            "one, use scistack export here and scistack import in its checkout. Nothing was changed")


def _copy_objects(db: Database, lab: Database) -> int:
    """Every object of the laptop store the bucket lacks (one listing of the bucket, not a
    request per object), re-hashed on the way, small ones packed (a pack per `_PACK_BYTES`)."""
    from tqdm.auto import tqdm  # a copy of a large project takes minutes: say how far it is

    there = set(lab.store.iter_oids())
    uploaded = pending = 0
    try:  # (begun inside: a Ctrl-C just before the try had left the lab store batching)
        lab.store.begin_batch()
        for oid in tqdm(db.store.iter_oids(), desc="share: objects", unit="obj",
                        disable=not _interactive(), leave=False):
            if oid in there:
                continue
            obj = db.store.get(oid)
            if lab.store.put(obj.kind, obj.payload) != oid:
                raise CorruptObjectError(
                    f"object {oid} of this project does not hash to its name (damaged on disk); run "
                    "scistack fsck here first. Nothing was named in the lab project yet")
            uploaded += 1
            pending += len(obj.payload)
            if pending >= _PACK_BYTES:
                lab.store.flush()
                pending = 0
    finally:
        lab.store.end_batch()  # the last pack up, every upload waited for
    return uploaded


_PACK_BYTES = 64 << 20


register_share(share)
