"""Import a bundle into a project: every file checked first, then objects, refs and call-cache
entries written in one batch, merged with what the project already has.

Checked before anything is written: the bundle's format, its schema keys against the
project's, every open file's sha256 and every object's blake3 (a changed byte is named with
its file), and that every ref and cache entry names objects the bundle holds. So a bad
bundle changes nothing. Objects keep their ids; a ref whose address already holds the same
value from the same call is not repeated; in an empty project the versions come out as in
the source. The call cache is restored, so running the same code again is all cache hits.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from scistack.database import Database
from scistack.errors import BundleError, CorruptObjectError, ObjectNotFoundError
from scistack.export.bundle import BUNDLE_FILE, FORMAT
from scistack.export.files import sha256_of
from scistack.objects import LocalObjectStore


@dataclass(frozen=True)
class ImportReport:
    """What an import brought in."""

    path: Path
    objects: int
    refs: int
    calls: int


def import_bundle(db: Database, path: str | os.PathLike) -> ImportReport:
    root = Path(path)
    manifest = _manifest(root)
    if list(manifest.get("schema_keys") or []) != list(db.schema_keys):
        raise BundleError(
            f"{root} was exported from a project with schema keys {manifest.get('schema_keys')}, this project "
            f"has {db.schema_keys}; nothing was imported. Import it into a project with the same keys "
            "(configure_database(path, " + repr(manifest.get("schema_keys")) + "))")
    _check_files(root, manifest)
    source = LocalObjectStore(root / "objects")
    oids = sorted(source.iter_oids())
    for oid in oids:
        try:
            source.get(oid)
        except (CorruptObjectError, ObjectNotFoundError) as exc:
            raise BundleError(f"{root}: the object file objects/{oid[:2]}/{oid[2:]} is damaged or was changed "
                              f"({exc}); nothing was imported. Export the bundle again") from None
    named = {e["oid"] for e in manifest["refs"]} | {e["call"] for e in manifest["refs"] if e.get("call")}
    named |= {c["call"] for c in manifest["calls"]} | {o for c in manifest["calls"] for o in c["outs"]}
    missing = sorted(named - set(oids))
    if missing:
        raise BundleError(f"{root} names object {missing[0]} but does not hold it; nothing was imported. "
                          "Export the bundle again")
    with db.batch():
        for oid in oids:
            obj = source.get(oid)
            db.store.put(obj.kind, obj.payload)
        refs = sorted(manifest["refs"], key=lambda e: (e["var"], json.dumps(e["addr"], sort_keys=True),
                                                       json.dumps(e["vkeys"], sort_keys=True), e["version"]))
        for e in refs:
            db.index.put_ref(e["var"], e["addr"], e["vkeys"], e["oid"], e["kind"], call=e.get("call"),
                             params=e.get("params") or {}, summary=e.get("summary") or "")
        for c in manifest["calls"]:
            db.index.put_call(c["key"], c["call"], c.get("fn") or "", list(c["outs"]), multi=bool(c.get("multi")))
    return ImportReport(root, len(oids), len(refs), len(manifest["calls"]))


def _manifest(root: Path) -> dict[str, Any]:
    try:
        manifest = json.loads((root / BUNDLE_FILE).read_text())
    except FileNotFoundError:
        raise BundleError(f"{root} is not a scistack bundle (no {BUNDLE_FILE}); `scistack export` writes one") from None
    except ValueError as exc:
        raise BundleError(f"{root / BUNDLE_FILE} is not readable JSON ({exc}); export the bundle again") from None
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT or \
            not all(isinstance(manifest.get(k), list) for k in ("refs", "calls", "files")):
        raise BundleError(f"{root / BUNDLE_FILE} is not a format-{FORMAT} bundle description; export it again "
                          "with this scistack version")
    return manifest


def _check_files(root: Path, manifest: dict[str, Any]) -> None:
    """Every open file as exported (a Zarr folder by its zarr.json; its chunks are objects)."""
    for entry in manifest["files"]:
        relative = str(entry.get("path", ""))
        path = root / relative
        if ".." in Path(relative).parts or Path(relative).is_absolute():
            raise BundleError(f"{root}: file entry {relative!r} points outside the bundle; nothing was imported")
        checked = path / "zarr.json" if path.is_dir() else path
        try:
            digest = sha256_of(checked)
        except FileNotFoundError:
            raise BundleError(f"{root}: {relative} is missing; nothing was imported") from None
        if digest != entry.get("sha256"):
            raise BundleError(f"{root}: {relative} was changed since it was exported (its sha256 is {digest}, "
                              f"the bundle says {entry.get('sha256')}); nothing was imported")
