"""Publish what a paper used: a selection's lineage closure as a bundle, and import it back.

`export` selects saved values (`closure.select`), collects everything upstream of them
(`closure.closure`), writes the bundle (`bundle.write_bundle`: open files, scistack's
objects, a manifest with every hash), describes it as an RO-Crate Process Run Crate and as
PROV-JSON (`crate`) and writes a README (`readme`). `import_bundle` (`importer`) checks a
bundle whole and merges it into a project. `db.export` / `db.import_bundle` and the CLI's
`scistack export` / `scistack import` are these two functions.
"""

from __future__ import annotations

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
from scistack.errors import ExportError, NoOpenFileWarning, storage_full
from scistack.export import bundle, closure, readme
from scistack.export.importer import ImportReport, import_bundle
from scistack.objects._proc import pid_alive

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
    if target.exists() and (not target.is_dir() or any(target.iterdir())):
        raise ExportError(f"{target} is not an empty folder; export into a new or empty folder "
                          "(nothing was written)")
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
    # written beside the target under a name of its own, renamed into place once whole: a
    # process killed mid-way had left a half bundle in `to` (its manifest, no RO-Crate) that an
    # import took for whole, and that refused the export run again ("not an empty folder")
    work = _work_folder(target)
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
        else:
            for child in target.iterdir():
                shutil.rmtree(child, ignore_errors=True) if child.is_dir() else child.unlink()
        full = storage_full(exc, f"the export folder {target}", "Nothing was exported (no bundle was left "
                            "there); the project is untouched") if isinstance(exc, OSError) else None
        if full is not None and full is not exc:  # (it had been a raw OSError: [Errno 27] File too large)
            raise full from exc
        raise
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


_WORK = ".{name}.export-{pid}-"  # the folder an export writes in, beside its target


def _work_folder(target: Path) -> Path:
    """A new folder beside `target` to write the bundle in, with the mode `target` has (or
    would have), after removing those an export killed before left there (their process gone).
    `target` itself when it is an empty folder no bundle can be renamed onto: a mount point,
    a symbolic link, or in a folder this user cannot write (written in place, as before)."""
    parent = target.absolute().parent
    parent.mkdir(parents=True, exist_ok=True)
    if target.is_symlink() or target.exists() and (target.stat().st_dev != parent.stat().st_dev
                                                   or not os.access(parent, os.W_OK)):
        return target
    prefix = _WORK.format(name=target.name, pid="")[:-1]
    for left in parent.glob(glob_escape(prefix) + "*"):
        pid = left.name[len(prefix):].split("-", 1)[0]
        if pid.isdigit() and not pid_alive(int(pid)):
            shutil.rmtree(left, ignore_errors=True)
    while True:
        work = parent / (_WORK.format(name=target.name, pid=os.getpid()) + uuid.uuid4().hex[:8])
        try:
            work.mkdir(0o777)  # (the umask applies, as to `target.mkdir`)
            break
        except FileExistsError:
            continue
        except OSError as exc:
            raise ExportError(f"cannot write beside {target} ({exc}); export into a folder whose parent "
                              "you can write (nothing was written)") from exc
    if target.exists():
        os.chmod(work, target.stat().st_mode & 0o7777)
    return work


def _into_place(work: Path, target: Path) -> None:
    """Rename the written bundle onto `target`, absent or an empty folder (atomic)."""
    if work == target:
        return
    try:
        os.rename(work, target)
    except OSError as exc:  # a file or a folder with files appeared there meanwhile
        raise ExportError(f"{target} is not an empty folder any more (another process wrote there while "
                          f"exporting: {exc}); export into a new or empty folder (nothing was written)") from exc


register_bundle_verbs(export, import_bundle)
