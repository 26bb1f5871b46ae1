"""Files a call read (see ``codeid.files``): recorded with the call, checked on each cache hit.

A cache hit first asks whether the call it would reuse read any files, and whether they still
hold the content they had. The list lives in the call record (``files``), which is immutable,
so it is read once per call record and process; the check itself is one ``os.stat`` per file
while nothing changed.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from scistack.codeid.files import FileRead, changed_files, files_read, recording_reads, settled_listing
from scistack.codeid.script_path import project_relative
from scistack.errors import ScistackError
from scistack.objects import ObjectStore

_KNOWN: dict[str, tuple[FileRead, ...]] = {}  # call record oid -> files it read
_MAX_KNOWN = 100_000
FILES_MARK = ":files"  # appended to a call-cache entry's "fn" when the call read files
# in a call-cache entry's "fn" (before FILES_MARK) when the call's outputs were split into
# finer addresses (`for_each` outputs=[Split(...)]): its outputs are the parts, not what the
# function returned, so only a run splitting the same way may be served it
SPLIT_MARK = ":split"


def cache_fn(identity_digest: str, files: list[FileRead] | tuple[FileRead, ...], *, split: bool = False) -> str:
    """The call-cache entry's ``fn``: the identity, marked when the call read files, so a hit
    of a call that read none costs nothing (no call-record read), and when it split outputs."""
    return identity_digest + (SPLIT_MARK if split else "") + (FILES_MARK if files else "")


def is_split(hit: dict[str, Any]) -> bool:
    """Whether a call-cache entry's outputs were split (`cache_fn`): a direct call, MATLAB or a
    for_each without that Split must not be served them."""
    fn = hit.get("fn")
    return isinstance(fn, str) and SPLIT_MARK in fn


def hit_changed(store: ObjectStore, hit: dict[str, Any]) -> list[str]:
    """Files read by the cached call `hit` (a call-cache entry) that changed since."""
    fn = hit.get("fn")
    if not (isinstance(fn, str) and fn.endswith(FILES_MARK)):
        return []
    return changed_inputs(store, hit["call"])


def store_excludes(store: ObjectStore) -> tuple[str, ...]:
    """Directories whose files are scistack's own (the store and its project folder)."""
    root = getattr(store, "root", None)
    if root is None:
        return ()
    return (os.fspath(root), os.path.dirname(os.fspath(root)))


@dataclass(slots=True)
class CallFiles:
    """The input files a call read (filled when it ends) and the paths it wrote (made,
    removed, renamed: what `for_each` settles the folders its calls listed with)."""

    read: list[FileRead] = field(default_factory=list)
    written: frozenset[str] = frozenset()


@contextmanager
def reads_of_call(store: ObjectStore, inputs: Iterable[str] = (), root: Any = None) -> Iterator[CallFiles]:
    """Record the input files opened inside the block; `read` is filled when it ends.
    `inputs`: files the call key holds by content already (a `PathInput`'s): not listed, so
    that moving the raw data's folder (the same content elsewhere) stays a cache hit. `root`:
    the function called (the files its memos read in earlier calls are its inputs too)."""
    found = CallFiles()
    with recording_reads(store_excludes(store), root) as recording:
        yield found
    known = {os.path.abspath(p) for p in inputs}
    found.read.extend(f for f in files_read(recording) if f.path not in known)
    found.written = frozenset(recording.written)


def settled_files(files: Iterable[FileRead], written: Iterable[str],
                  now: dict[str, FileRead | None] | None = None) -> tuple[FileRead, ...]:
    """A call's files once its for_each step ended: each folder it listed as it is now when
    only the step's own writes (`written`) changed it since (`codeid.files.settled_listing`)."""
    now = {} if now is None else now
    return tuple(settled_listing(f, written, now).bare() for f in files)


def files_value(files: list[FileRead], root: Any = None) -> dict[str, Any]:
    """The call record's extra ``files`` entry (nothing when the call read no file). Each file
    inside the project's folder `root` also names its path relative to it (``project_path``),
    as `function.project_file` does the script: two checkouts of one project (a lab's, at
    other absolute paths) then read the same files (`records.same_arguments`)."""
    if not files:
        return {}
    entries = []
    for f in files:
        value = f.to_value()
        rel = project_relative(f.path, root)
        entries.append(value if rel is None else {**value, "project_path": rel})
    return {"files": entries}


def remember(call_oid: str, files: list[FileRead]) -> None:
    """The files a just-recorded call read: a later hit in this process need not read the record."""
    if len(_KNOWN) >= _MAX_KNOWN:
        _KNOWN.clear()
    _KNOWN[call_oid] = tuple(f.bare() for f in files)


def changed_inputs(store: ObjectStore, call_oid: str) -> list[str]:
    """Files read by call `call_oid` whose content changed since (empty: the hit stands)."""
    files = _KNOWN.get(call_oid)
    if files is None:
        files = _read(store, call_oid)
        remember(call_oid, list(files))
    return changed_files(list(files)) if files else []


def reads_files(store: ObjectStore, call_oid: str) -> bool:
    """Whether call `call_oid` recorded files it read (its hits check them)."""
    files = _KNOWN.get(call_oid)
    if files is None:
        files = _read(store, call_oid)
        remember(call_oid, list(files))
    return bool(files)


def note_record(call_oid: str, record: Any) -> None:
    """A call record read for another reason: remember its files (saves a second read)."""
    if call_oid not in _KNOWN:
        remember(call_oid, list(_files_of(record)))


def _read(store: ObjectStore, call_oid: str) -> tuple[FileRead, ...]:
    from scistack.records import read_call

    try:
        record = read_call(store, call_oid)
    except ScistackError:
        return ()  # a missing record: the caller's own checks decide
    return _files_of(record)


def files_of(record: Any) -> tuple[FileRead, ...]:
    """The files a call record says its call read."""
    return _files_of(record)


def _files_of(record: Any) -> tuple[FileRead, ...]:
    raw = record.extra.get("files")
    if not isinstance(raw, list):
        return ()
    try:
        return tuple(FileRead.from_value(v) for v in raw)
    except (KeyError, TypeError, ValueError):
        return (FileRead("<unreadable files entry>", -1, -1, -1, ""),)  # unreadable: recompute
