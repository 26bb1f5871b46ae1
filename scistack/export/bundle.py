"""Write a bundle: the lineage closure of some values, as open files, scistack objects, an
RO-Crate and a README, into an empty folder.

    bundle/
      README.md                 what was exported; loading it with and without scistack
      ro-crate-metadata.json    RO-Crate 1.1 Process Run Crate (export/crate.py)
      provenance.json           W3C PROV-JSON of the same graph
      scistack-bundle.json      schema keys, refs and call-cache entries, every file's hashes
      objects/ab/cdef...        the objects, stored as in a project (import restores them)
      MeanStepLength/subject=1/session=post.npy ...   the values as open files

Nothing is written outside the folder; a failure part-way leaves the folder to delete, and
the project untouched (an export only reads it).
"""

from __future__ import annotations

import json
import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from scistack.database import Database
from scistack.errors import BundleError, ScistackError
from scistack.export.closure import Closure, lineage_closure
from scistack.export.crate import write_crate
from scistack.export.files import OpenFile, write_open_files
from scistack.index import RefRecord
from scistack.objects.gate import GATE_NAME
from scistack.report.history import select
from scistack.version import __version__

BUNDLE_FILE = "scistack-bundle.json"
FORMAT = 1


@dataclass(frozen=True)
class ExportReport:
    """What an export wrote."""

    path: Path
    chosen: int
    values: int
    calls: int
    objects: int


def export(db: Database, variables: list[str] | str, to: str | os.PathLike, *, all_current: bool = False,
           **address: Any) -> ExportReport:
    """Export the newest values of `variables` at `address` (every address with
    `all_current`, or when no address is given) and everything upstream of them."""
    names = [variables] if isinstance(variables, str) else list(variables)
    if not names:
        raise BundleError("nothing to export: name at least one variable, e.g. `scistack export MeanStepLength`")
    if len(names) > 1 and address and not all_current:
        raise BundleError("an address selects values of one variable; give one variable, or --all-current")
    target = Path(to)
    if target.exists() and (not target.is_dir() or any(target.iterdir())):
        raise BundleError(f"{target} is not an empty folder: export into a new or empty one, so nothing "
                          "already there is overwritten or mixed into the bundle")
    chosen: list[RefRecord] = []
    for var in names:
        try:
            chosen += select(db, var, **({} if all_current else address))
        except ScistackError as exc:
            raise BundleError(f"cannot export {var}: {exc}") from exc
    if not chosen:
        shown = ", ".join(f"{k}={v!r}" for k, v in address.items())
        raise BundleError(f"nothing to export: {', '.join(names)} has no value" + (f" at {shown}" if shown else "")
                          + "; `scistack ls` lists variables and `scistack log VAR` their values")
    closure = lineage_closure(db, chosen)
    created = not target.exists()
    target.mkdir(parents=True, exist_ok=True)
    try:
        files = write_open_files(db, closure.records, target)
        _copy_objects(db, closure.objects, target / "objects")
        _write_manifest(db, closure, files, target)
        write_crate(db, closure, files, target, title=f"scistack export of {', '.join(names)}")
        _write_readme(db, closure, files, target, names)
    except BaseException:  # a half-written bundle must not pass for one
        if created:
            shutil.rmtree(target, ignore_errors=True)
        else:
            for child in target.iterdir():
                shutil.rmtree(child) if child.is_dir() else child.unlink()
        raise
    return ExportReport(target, len(chosen), len(files), len(closure.calls), len(closure.objects))


def _copy_objects(db: Database, oids: set[str], folder: Path) -> None:
    """Each object as a loose file of the bundle's own store (verified as it is read)."""
    from scistack.objects import LocalObjectStore

    out = LocalObjectStore(folder)
    try:
        for oid in sorted(oids):
            obj = db.store.get(oid)
            if out.put(obj.kind, obj.payload) != oid:  # cannot happen unless memory is corrupt
                raise BundleError(f"object {oid} changed while it was copied; export again")
    finally:
        out.release_writes()
    (folder / GATE_NAME).unlink(missing_ok=True)  # the store's own lock file: not bundle content


def _write_manifest(db: Database, closure: Closure, files: list[OpenFile], root: Path) -> None:
    refs = [r.to_entry() for r in sorted(closure.records, key=lambda r: (r.var, r.addr_key, r.vkeys_key, r.version))]
    manifest = {
        "format": FORMAT, "scistack": __version__, "schema_keys": db.schema_keys,
        "chosen": [{"var": r.var, "addr": r.addr, "vkeys": r.vkeys, "version": r.version} for r in closure.chosen],
        "refs": refs, "calls": closure.cache,
        "files": [{"path": f.path, "oid": f.oid, "sha256": f.sha256, "size": f.size} for f in files],
    }
    (root / BUNDLE_FILE).write_text(json.dumps(manifest, indent=1, sort_keys=True, default=str) + "\n")


def _write_readme(db: Database, closure: Closure, files: list[OpenFile], root: Path, names: list[str]) -> None:
    chosen = sorted({f"{r.var} {json.dumps(r.addr, sort_keys=True)}" for r in closure.chosen})
    rows = "\n".join(f"| `{f.path}` | {f.record.var} | {f.record.version} | `{f.oid[:16]}` |" for f in files)
    functions = sorted({f"{c.module}.{c.function}" for c in closure.calls.values()})
    text = f"""# scistack export: {', '.join(names)}

Exported by scistack {__version__}: {len(closure.chosen)} chosen value(s), {len(files)} values in
all with everything upstream of them, made by {len(closure.calls)} call(s) of
{', '.join(f'`{f}`' for f in functions) or 'no function (raw values only)'}.
Schema keys: {', '.join(db.schema_keys) or '(none)'}.

Chosen: {'; '.join(chosen)}

## Without scistack

Every value is an open file: `.npy` arrays (`numpy.load`), `.parquet` tables
(`pandas.read_parquet`), `.json` scalars, strings, dicts and lists, `.zarr` folders for arrays
bigger than memory (`zarr.open_array(path)`, Zarr v3), `.bin` bytes. Which call made which
value, from which inputs, with which constants and code: `ro-crate-metadata.json` (an RO-Crate
1.1 Process Run Crate: one CreateAction per call) and `provenance.json` (W3C PROV-JSON).
Each file lists its blake3 object id and sha256 there and in `{BUNDLE_FILE}`.

## With scistack

```
scistack import {root.name}/          # into the project of the current folder (or --db)
```
or `db.import_bundle("{root.name}")`. The values, their versions, lineage and call cache are
restored with the same object ids, merged with what the project has; re-running the same
code there is all cache hits. Files are checked against their hashes first: a changed file is
named and nothing is imported.

| file | variable | version | object id |
|---|---|---|---|
{rows}
"""
    (root / "README.md").write_text(text)
