"""Files a call read (see ``codeid.files``): recorded with the call, checked on each cache hit.

A cache hit first asks whether the call it would reuse read any files, and whether they still
hold the content they had. The list lives in the call record (``files``), which is immutable,
so it is read once per call record and process; the check itself is one ``os.stat`` per file
while nothing changed.

Where each file is looked for: a file inside the project's folder is recorded with its path
relative to it too (``project_path``), and the record names the project that made it
(``function.project``). A reader of a record of its own project (`Database.project_ids`, or
none named: as `codeid.script_path` reads ``project_file``) checks the file at its own folder
joined to ``project_path``: a project moved to another folder, or a lab colleague's checkout
at another absolute path, checks its own copy (the recorded absolute path names a folder that
is gone, or another machine's). A file outside the project, or a record imported from another
project, is checked at its absolute path. Cache hits, `status` and `why` all ask
`changed_inputs`, so they agree.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from scistack.codeid.files import FileRead, changed_files, files_read, recording_reads, settled_listing
from scistack.codeid.script_path import in_checkout, project_relative
from scistack.errors import ScistackError
from scistack.objects import ObjectStore

# call record oid -> the files it read; each one's path relative to the project's folder in
# this system's form (None: outside it), or None for none; the project that made the record
_Known = tuple[tuple[FileRead, ...], "tuple[str | None, ...] | None", "str | None"]
_KNOWN: dict[str, _Known] = {}
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


def hit_changed(store: ObjectStore, hit: dict[str, Any], here: Any = None) -> list[str]:
    """Files read by the cached call `hit` (a call-cache entry) that changed since. `here`:
    the reading project (a `Database`: its `root` and `project_ids`; None with no database),
    whose own records' files inside its folder are looked for there (`changed_inputs`)."""
    fn = hit.get("fn")
    if not (isinstance(fn, str) and fn.endswith(FILES_MARK)):
        return []
    return changed_inputs(store, hit["call"], here)


def servable(store: ObjectStore, hit: dict[str, Any], here: Any = None) -> bool:
    """Whether a direct call may be served the call-cache entry `hit`: neither `is_split`
    nor `hit_changed` (one look at its `fn` for both: a cache hit asks every time)."""
    fn = hit.get("fn")
    if not isinstance(fn, str):
        return True
    return SPLIT_MARK not in fn and not (fn.endswith(FILES_MARK) and changed_inputs(store, hit["call"], here))


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


def locates_project(f: FileRead, root: Any, source: str | None = None) -> bool:
    """Whether `f` is a link whose target the code read (a resolve's, `codeid.files`) that
    names the project's folder `root` or a folder above it, and lies on the path by which the
    call's code was found (`source`, its file as imported: `home/proj/step.py`): where this
    checkout is (a linked home folder: `Path(__file__).resolve()`),
    not what the call read. A link elsewhere naming the project or a folder above it (`p/lab`
    naming the lab's folder, `B/current` naming one copy of the project) stays an input: the
    call reads through it, and re-pointing it had been served the old result. Two lab machines whose
    home links name other disks had each run such a call again, a new version of the same
    value each time (the link's target as text is machine's own); the files read through it
    are inputs on their own, by their path in the project (`project_path`)."""
    if f.kind != "link" or root is None:
        return False
    link = os.path.abspath(f.path).rstrip(os.sep) + os.sep
    if source is None or not os.path.abspath(source).startswith(link):
        return False  # (a link elsewhere naming the project or above: what the call reads through it)
    target, top = os.path.realpath(f.path), os.path.realpath(os.fspath(root))
    return top == target or top.startswith(target.rstrip(os.sep) + os.sep)


def files_value(files: list[FileRead], root: Any = None) -> dict[str, Any]:
    """The call record's extra ``files`` entry (nothing when the call read no file). Each file
    inside the project's folder `root` also names its path relative to it (``project_path``),
    as `function.project_file` does the script: two checkouts of one project (a lab's, at
    other absolute paths) then read the same files (`records.same_arguments`), and a reader of
    the project's own records looks for them in its own folder (`changed_inputs`; the record
    then names the project, `function.project`: see `LineageFunction.record_call`)."""
    if not files:
        return {}
    entries = []
    for f in files:
        value = f.to_value()
        rel = None if f.kind == "unseen" else project_relative(f.path, root)  # (a description)
        entries.append(value if rel is None else {**value, "project_path": rel})
    return {"files": entries}


def remember(call_oid: str, files: list[FileRead] | tuple[FileRead, ...],
             record: Any = None) -> None:
    """The files a just-recorded call read: a later hit in this process need not read the
    record. `record`: the call record written (where each file is, relative to the project's
    folder, and which project made it)."""
    if len(_KNOWN) >= _MAX_KNOWN:
        _KNOWN.clear()
    bare = tuple(f.bare() for f in files)
    _KNOWN[call_oid] = (bare, *_places(record, len(bare))) if record is not None else \
        (bare, None, None)


def changed_inputs(store: ObjectStore, call_oid: str, here: Any = None, *,
                   report: bool = False) -> list[str]:
    """Files read by call `call_oid` whose content changed since (empty: the hit stands),
    each named where it was looked for. `here`: the reading project (a `Database`, or None):
    a file inside the project's folder, in a record of this project, is looked for in this
    checkout's folder (see the module's docstring); any other at its recorded path.
    `report`: asked by status or why, not by a call (`codeid.files.changed_files`)."""
    files, rels, made = _known(store, call_oid)
    if not files:
        return []
    if rels is None or here is None:
        return changed_files(list(files), report=report)
    return changed_files(list(files), _paths_here(files, rels, made, here), report=report)


def _paths_here(files: tuple[FileRead, ...], rels: tuple[str | None, ...], made: str | None,
                here: Any) -> list[str] | None:
    root = getattr(here, "root", None)
    if root is None or made is not None and made not in here.project_ids:
        return None  # (another project's record: its files are where it read them)
    top = os.fspath(root)
    top = top if top.endswith(os.sep) else top + os.sep  # (`rel`: a plain relative path, `_native`)
    return [f.path if rel is None else top + rel for f, rel in zip(files, rels)]


def files_here(record: Any, here: Any = None) -> tuple[FileRead, ...]:
    """The files a call record says its call read, each at the path `changed_inputs` looks
    for it (this checkout's copy, for the project's own files): what a record of the cached
    result made here names (it then names this checkout's files, and is checked here)."""
    files = _files_of(record)
    rels, made = _places(record, len(files))
    if not files or rels is None or here is None:
        return files
    paths = _paths_here(files, rels, made, here)
    if paths is None:
        return files
    return tuple(f if p == f.path else dataclasses.replace(f, path=p) for f, p in zip(files, paths))


def reads_files(store: ObjectStore, call_oid: str) -> bool:
    """Whether call `call_oid` recorded files it read (its hits check them)."""
    return bool(_known(store, call_oid)[0])


def note_record(call_oid: str, record: Any) -> None:
    """A call record read for another reason: remember its files (saves a second read)."""
    if call_oid not in _KNOWN:
        remember(call_oid, _files_of(record), record)


def _known(store: ObjectStore, call_oid: str) -> _Known:
    known = _KNOWN.get(call_oid)
    if known is None:
        from scistack.records import read_call

        try:
            record = read_call(store, call_oid)
        except ScistackError:
            record = None  # a missing record: the caller's own checks decide
        remember(call_oid, () if record is None else _files_of(record), record)
        known = _KNOWN[call_oid]
    return known


def _places(record: Any, count: int) -> tuple[tuple[str | None, ...] | None, str | None]:
    """Each recorded file's path relative to the project's folder, in this system's form
    (None: outside it, or not a plain relative path), or None when none is; and the project
    that made the record (`function.project`)."""
    raw = record.extra.get("files")
    if not isinstance(raw, list) or len(raw) != count:
        return None, None
    rels = tuple(_native(v.get("project_path")) if isinstance(v, dict) else None for v in raw)
    if not any(rels):
        return None, None
    made = getattr(record.function, "project", None)
    return rels, made if isinstance(made, str) else None


def _native(rel: Any) -> str | None:
    """A recorded `project_path` as a relative path of this system (None: not a plain one)."""
    joined = in_checkout(rel, "")
    return joined if joined else None


def files_of(record: Any) -> tuple[FileRead, ...]:
    """The files a call record says its call read (at the paths recorded)."""
    return _files_of(record)


def _files_of(record: Any) -> tuple[FileRead, ...]:
    raw = record.extra.get("files")
    if not isinstance(raw, list):
        return ()
    try:
        return tuple(FileRead.from_value(v) for v in raw)
    except (KeyError, TypeError, ValueError):
        return (FileRead("<unreadable files entry>", -1, -1, -1, ""),)  # unreadable: recompute
