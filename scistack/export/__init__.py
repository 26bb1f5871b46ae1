"""Publish what a paper used: a selection's lineage closure as a bundle, and import it back.

`export` selects saved values (`closure.select`), collects everything upstream of them
(`closure.closure`), writes the bundle (`bundle.write_bundle`: open files, scistack's
objects, a manifest with every hash), describes it as an RO-Crate Process Run Crate and as
PROV-JSON (`crate`) and writes a README (`readme`). `import_bundle` (`importer`) checks a
bundle whole and merges it into a project. `db.export` / `db.import_bundle` and the CLI's
`scistack export` / `scistack import` are these two functions.
"""

from __future__ import annotations

import errno
import os
import shutil
import uuid
import warnings
from dataclasses import dataclass, field
from datetime import datetime, timezone
from glob import escape as glob_escape
from pathlib import Path
from typing import Any

from scistack.database import Database, loaded_record, register_bundle_verbs
from scistack.errors import ExportError, NoOpenFileWarning, ScistackError, storage_full
from scistack.export import bundle, closure, readme
from scistack.export.importer import ImportReport, import_bundle
from scistack.objects._proc import pid_started, process_gone, process_place

__all__ = ["ExportReport", "ImportReport", "export", "import_bundle"]


@dataclass(frozen=True, slots=True)
class ExportReport:
    """What a bundle holds: the selected values, every value record, calls and objects."""

    path: str
    selected: int
    values: int
    calls: int
    objects: int
    files: int
    raw_missing: list[str] = field(default_factory=list)  # raw files asked for but not copied, and why
    no_open_file: list[str] = field(default_factory=list)  # values in objects/ only (no open file), and why


def _name(variable: Any) -> str:
    """A variable's name, from its class, its name, or a loaded value of it."""
    if isinstance(variable, str):
        return variable
    return getattr(variable, "__name__", None) or type(variable).__name__


def export(db: Database, variable: Any = None, *, to: str | os.PathLike, all_current: Any = None,
           raw_files: bool = False, **metadata: Any) -> ExportReport:
    """Write `variable` at `metadata` (or the current values of each of `all_current`) with
    its lineage closure to the new or empty folder `to`; with `raw_files`, the raw files its
    calls read (`PathInput`) too, in `raw/`, so the pipeline can run again from them."""
    target = Path(to)
    try:  # (a parent that cannot be entered: is_symlink raises too)
        if target.is_symlink() and not target.exists():  # (the whole bundle had been written first)
            raise ExportError(f"{target} is a symbolic link to {os.readlink(target)}, which does not exist; "
                              "make that folder, or export into a new or empty folder (nothing was written)")
        if _unfinished_by_the_dead(target):  # an export killed while writing here: cleared
            _clear(target)
        if target.exists() and (not target.is_dir() or any(target.iterdir())):
            if _mark(target):  # (a hidden file: the folder looks empty)
                raise ExportError(_busy(target))
            raise ExportError(f"{target} is not an empty folder; export into a new or empty folder "
                              "(nothing was written)")
    except OSError as exc:  # (a folder that cannot be read or written: it had been a bare OSError)
        raise _folder_error(exc, target, "looked into or cleared") from exc
    if all_current is not None:
        names = [_name(v) for v in ([all_current] if isinstance(all_current, str) else all_current)]
        if variable is not None:
            names.insert(0, _name(variable))
        chosen = closure.select(db, names, metadata, all_current=True)
    elif (record := loaded_record(variable, metadata, "export")) is not None:
        chosen = [record]  # a loaded value: that very version
    else:
        chosen = closure.select(db, [_name(variable)] if variable is not None else [], metadata)
    from scistack.export import crate  # rocrate and prov cost ~0.2 s to import: only when exporting

    db.flush()
    found = closure.closure(db, chosen)
    # written beside the target under a name of its own and renamed into place once whole, or
    # in an empty folder given, marked unfinished until whole (`_work_folder`): a process killed
    # mid-way had left a half bundle in `to` (its manifest, no RO-Crate) that an import took
    # for whole, and that refused the export run again ("not an empty folder")
    try:
        work, token = _work_folder(target)
    except OSError as exc:  # (a full disk, a folder that cannot be written: nothing is left behind)
        raise _folder_error(exc, target, "written") from exc
    try:
        manifest = bundle.write_bundle(db, found, work)
        if raw_files:
            manifest["raw_files"] = bundle.write_raw_files(db, found, work)
            bundle.write_manifest(manifest, work)
        title = "scistack export of " + ", ".join(sorted({r.var for r in chosen}))
        now = datetime.now(timezone.utc).replace(microsecond=0).isoformat()
        text = readme.render(manifest, title=title, producer=crate.producer(), date=now)
        (work / "README.md").write_text(text)
        crate.write_prov(found, manifest, work)
        crate.write_crate(found, manifest, work, title)
        _into_place(work, target)
    except BaseException as exc:
        if work != target:
            shutil.rmtree(work, ignore_errors=True)
        elif _ours(target):  # (another's mark: its bundle, not ours, is being written there)
            _clear(target)
        full = storage_full(exc, f"the export folder {target}", "Nothing was exported (no bundle was left "
                            "there); the project is untouched") if isinstance(exc, OSError) else None
        if full is not None and full is not exc:  # (it had been a raw OSError: [Errno 27] File too large)
            raise full from exc
        raise
    finally:
        _OURS.discard(token)
    unwritten = [f"{f['var']} at {readme.where(f, list(db.schema_keys))} (version {f['version']}): "
                 f"{f['no_open_file']}" for f in manifest["files"] if f.get("no_open_file")]
    if unwritten:  # (a value no open file holds had been skipped silently, though selected)
        shown = "; ".join(unwritten[:5]) + (f"; and {len(unwritten) - 5} more" if len(unwritten) > 5 else "")
        warnings.warn(f"export to {target}: {len(unwritten)} value(s) have no open file: {shown}. "
                      "The bundle's README.md and its manifest (`no_open_file`) name each", NoOpenFileWarning,
                      stacklevel=2)
    return ExportReport(str(target), len(chosen), len(found.refs), len(found.calls), len(found.objects),
                        sum(1 for f in manifest["files"] if f["path"]),
                        [f"{r['read_as']}: {r['missing']}" for r in manifest.get("raw_files", []) if "missing" in r],
                        unwritten)


# the folder an export writes in, beside its target: then its pid, when that started, where
# it runs (`_left_by_the_dead`) and a token
_WORK = ".{name}.export-"


def _work_prefix(name: str) -> str:
    """`_WORK` for a target named `name`, cut so the working folder's whole name stays within
    the 255 bytes a file name may have (its tail of pid, start, place and token takes up to
    ~60): a legal target name of 200-255 bytes had failed with "File name too long". Two long
    names alike in their first bytes share the prefix, harmlessly: each export renames its own
    folder, and only a dead export's are removed."""
    cut = os.fsdecode(os.fsencode(name)[:180])  # (a cut inside a character: escaped)
    return _WORK.format(name=cut)


def _work_folder(target: Path) -> tuple[Path, str | None]:
    """Where to write the bundle: a new folder beside `target`, renamed onto it once whole
    (after removing those an export killed before left there, their process gone). An empty
    folder given is written in place (a folder renamed over it would leave a shell or a file
    manager open in it in a deleted folder; it may be a mount point or a symbolic link), marked
    `UNFINISHED` with this process's pid until it is whole."""
    if target.exists():
        # the pid, when that process started and where it runs: a pid alone is used again by
        # another process, which had kept a mark left by a killed export taken for a running
        # one for good, and names another process on another machine sharing the folder
        token = f"{os.getpid()} {uuid.uuid4().hex} {pid_started(os.getpid()) or '-'} {process_place()}"
        mark = target / bundle.UNFINISHED
        _OURS.add(token)  # (before the mark is there: another thread of this process reading it
        try:  # meanwhile had taken it for a killed export's, and cleared this one's folder)
            try:  # (one step with the check that it is free: O_EXCL; an overwrite had let a second
                fd = os.open(mark, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
            except FileExistsError:  # export at once clear the first's finished bundle)
                raise ExportError(_busy(target)) from None
            try:
                with open(fd, "w") as out:
                    out.write(token + "\n")
            except BaseException:  # (a full disk: the empty mark, made, had been left behind)
                mark.unlink(missing_ok=True)
                raise
        except BaseException:
            _OURS.discard(token)
            raise
        return target, token
    parent = target.absolute().parent
    parent.mkdir(parents=True, exist_ok=True)
    prefix = _work_prefix(target.name)
    for left in parent.glob(glob_escape(prefix) + "*"):
        if _left_by_the_dead(left.name[len(prefix):]):
            shutil.rmtree(left, ignore_errors=True)
    pid = os.getpid()
    while True:
        work = parent / f"{prefix}{pid}-{pid_started(pid)}-{process_place()}-{uuid.uuid4().hex[:8]}"
        try:
            work.mkdir(0o777)  # (the umask applies, as to `target.mkdir`)
            return work, None
        except FileExistsError:
            continue


def _into_place(work: Path, target: Path) -> None:
    """Rename the written bundle onto `target` (absent: atomic), or mark it whole in place."""
    if work == target:
        if _ours(target):
            (target / bundle.UNFINISHED).unlink()
            return
        raise ExportError(f"the mark {bundle.UNFINISHED} in {target} was replaced by another process while "
                          "exporting; export into a new or empty folder (its bundle is not this export's)")
    try:
        os.rename(work, target)
    except OSError as exc:  # made meanwhile by another process
        raise ExportError(f"{target} was made by another process while exporting ({exc}); export into a "
                          "new or empty folder (nothing was written)") from exc


_OURS: set[str] = set()  # the marks of this process's exports writing in place now


def _folder_error(exc: OSError, target: Path, doing: str) -> ScistackError:
    """The error for `exc`, met checking the export folder `target` or making it, its mark or
    the folder beside it it is written in (these had come out as a bare OSError): a
    StorageFullError for a full disk, else an ExportError naming the folder and the way out."""
    full = storage_full(exc, f"the export folder {target}", "Nothing was exported (no bundle was left there); "
                        "the project is untouched")
    if full is not None:
        return full
    named = Path(os.fsdecode(exc.filename)) if exc.filename else target
    folder = named if named == target else named.parent  # (what was made in it, or the folder itself)
    if isinstance(exc, PermissionError) or exc.errno == errno.EROFS:
        fix = ("mount it read-write" if exc.errno == errno.EROFS else
               f"make it writable (as its owner: chmod u+rwx '{folder}')")
        return ExportError(f"{folder} cannot be {doing} by this process ({exc.strerror or exc}), so nothing "
                           f"could be exported to {target}; {fix}, or export into a folder you can write "
                           "(nothing was written)")
    return ExportError(f"the export folder {target} cannot be {doing}: {named}: {exc.strerror or exc}; export "
                       "into another folder (nothing was written)")


def _mark(target: Path) -> str | None:
    try:
        return (target / bundle.UNFINISHED).read_text().strip() or None
    except OSError:
        return None


def _ours(target: Path) -> bool:
    """Whether the mark in `target` is one of this process's running exports."""
    return _mark(target) in _OURS


def _unfinished_by_the_dead(target: Path) -> bool:
    """Whether `target` holds an export whose process is gone (killed while writing): its pid
    not alive, or alive but started at another time than the mark says (`process_gone`: the
    pid given to another process since, after a restart at once, as in a container: the folder
    had stayed blocked for good), or this process's own pid on a mark none of its exports made.
    A mark made in another place (`process_place`: another machine sharing the folder, a
    container beside its host) is never judged by this place's pids: its export may be
    writing (its folder had been cleared under it when its pid ran nothing here); the refusal
    says so (`_busy`). A mark of an older scistack (no start, no place) is judged by its pid
    alone."""
    mark = _mark(target)
    fields = (mark or "").split()
    try:
        pid = int(fields[0])
    except (IndexError, ValueError):
        return False
    if len(fields) > 3 and fields[3] != process_place():
        return False
    if pid == os.getpid():
        return mark not in _OURS
    return process_gone(pid, fields[2] if len(fields) > 2 and fields[2] != "-" else "")


def _left_by_the_dead(rest: str) -> bool:
    """Whether an export's working folder beside its target, named `rest` after `_WORK`'s
    prefix (`<pid>-<start>-<place>-<token>`), was left by an export whose process is gone (as
    `_unfinished_by_the_dead` judges a mark: another place's never is). A name of an older
    scistack (`<pid>-<token>`) is judged by its pid alone."""
    fields = rest.split("-")
    if not fields[0].isdigit():
        return False
    if len(fields) == 4:
        if fields[2] != process_place():
            return False
        return process_gone(int(fields[0]), fields[1])
    return process_gone(int(fields[0]), "")


def _busy(target: Path) -> str:
    """The refusal of an export into `target`, which holds another export's mark."""
    fields = (_mark(target) or "").split()
    if len(fields) > 3 and fields[3] != process_place():
        return (f"another export is writing into {target}, or was killed while writing there, on another "
                f"machine or in another container sharing the folder (its mark {bundle.UNFINISHED} is there; "
                f"whether its process still runs cannot be told from here); wait for it to finish, or, if no "
                f"export runs there any more, empty {target} (what is in it is that export's unfinished bundle, "
                "its mark too) and export again, or export into another folder (nothing was written)")
    return (f"another export is writing into {target} (its mark {bundle.UNFINISHED} is there); wait for it to "
            "finish, or export into another folder (nothing was written)")


def _clear(target: Path) -> None:
    for child in target.iterdir():
        shutil.rmtree(child, ignore_errors=True) if child.is_dir() and not child.is_symlink() else child.unlink()


register_bundle_verbs(export, import_bundle)
