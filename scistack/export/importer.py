"""Import a bundle into a project: check everything first, then write objects, cache, refs.

Every file the manifest lists is checked against its recorded hash (objects against their
blake3 oid, open files against their sha256) and the schema keys against the project's
before anything is written, so a damaged bundle or a wrong project changes nothing.
Objects are stored byte for byte (the store recomputes each oid: the same oids), call-cache
entries are added where the project has none for that call key, and each saved record is
added unless the project already has that value at that address (so importing twice, or
merging into a project that holds part of the lineage, adds nothing twice).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from scistack.database import Database
from scistack.errors import BundleDamagedError, ExportError, SchemaMismatchError
from scistack.export.bundle import BUNDLE_FORMAT, MANIFEST, sha256_of
from scistack.index.state import key_of
from scistack.objects.hashing import hash_object


@dataclass(frozen=True, slots=True)
class ImportReport:
    """What an import added (objects new to the project, saved records, cache entries)."""

    objects: int
    refs: int
    calls: int
    skipped_refs: int


def read_manifest(bundle: Path) -> dict[str, Any]:
    path = bundle / MANIFEST
    if not path.is_file():
        raise ExportError(f"{bundle} is not a scistack bundle: it has no {MANIFEST}; "
                          "pass the folder `scistack export --to` wrote")
    try:
        manifest = json.loads(path.read_text())
    except ValueError as exc:
        raise BundleDamagedError(f"{path} is not valid JSON ({exc}); export the bundle again") from exc
    if manifest.get("format") != BUNDLE_FORMAT:
        raise ExportError(f"{path} has bundle format {manifest.get('format')!r}; this scistack reads "
                          f"format {BUNDLE_FORMAT}: upgrade scistack or export again")
    return manifest


def _checked(bundle: Path, obj: dict[str, Any]) -> bytes:
    """An object file's payload, refused unless it hashes to its oid."""
    path = bundle / obj["path"]
    if not path.is_file():
        raise BundleDamagedError(
            f"{obj['path']} is missing from the bundle {bundle}; nothing was imported")
    data = path.read_bytes()
    if hash_object(obj["kind"], [data]) != obj["oid"]:
        raise BundleDamagedError(
            f"{obj['path']} in {bundle} does not hash to its oid {obj['oid']} (the file was changed "
            "or damaged); nothing was imported. Export the bundle again")
    return data


def verify(bundle: Path, manifest: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Every object's manifest entry by oid, after checking every listed file's hash. The
    files are read one at a time and not kept: a bundle may be larger than memory."""
    objects = {}
    for obj in manifest["objects"]:
        _checked(bundle, obj)
        objects[obj["oid"]] = obj
    for entry in manifest["files"]:
        if not entry["path"]:
            continue
        members = {entry["path"] + "/" + name: sha for name, sha in entry.get("members", {}).items()}
        for name, sha in members.items() or [(entry["path"], entry["sha256"])]:
            path = bundle / name
            if path.is_file() and sha256_of(path) == sha:
                continue
            raise BundleDamagedError(
                f"{name} in {bundle} is missing or does not match its sha256 {sha[:16]}... "
                "(the file was changed or damaged); nothing was imported. Export the bundle again")
        if entry["oid"] not in objects:
            raise BundleDamagedError(f"{entry['path']} names object {entry['oid']}, which the bundle "
                                     "lacks; nothing was imported. Export the bundle again")
    named = [(r["oid"], f"the value of {r['var']} at {r['addr']}") for r in manifest["refs"]]
    named += [(c["call"], f"call record {c['call']}") for c in manifest["calls"]]
    for oid, what in named:
        if oid not in objects:
            raise BundleDamagedError(f"{MANIFEST} in {bundle} names {what}, object {oid}, which the "
                                     "bundle does not list; nothing was imported. Export it again")
    return objects


def import_bundle(db: Database, bundle: str | Path) -> ImportReport:
    """Merge the bundle at `bundle` into `db` (checked whole first; see the module docstring)."""
    bundle = Path(bundle)
    manifest = read_manifest(bundle)
    if list(manifest["schema_keys"]) != list(db.schema_keys):
        raise SchemaMismatchError(
            f"the bundle {bundle} has schema keys {manifest['schema_keys']}, the project {db.root} has "
            f"{list(db.schema_keys)}; nothing was imported. Import it into a project with schema keys "
            f"{manifest['schema_keys']}")
    new_objects = [obj for oid, obj in verify(bundle, manifest).items() if not db.store.contains(oid)]
    added = skipped = calls = 0
    with db.batch():
        for obj in new_objects:  # read again, one at a time; checked again (it may have changed)
            db.store.put(obj["kind"], _checked(bundle, obj))
        db.flush()  # objects are durable before any name points at them
        for entry in manifest["calls"]:
            if db.index.cached_call(entry["key"]) is not None:
                continue  # the project's own answer to that call stays
            db.index.put_call(entry["key"], entry["call"], entry["fn"], list(entry["outs"]),
                              multi=bool(entry.get("multi")))
            calls += 1
        for ref in sorted(manifest["refs"], key=lambda r: (r["var"], key_of(r["addr"]), r["version"])):
            held = db.index.versions_at(ref["var"], key_of(ref["addr"]))
            if any(r.oid == ref["oid"] and r.vkeys == ref["vkeys"] for r in held):
                skipped += 1
                continue
            db.index.put_ref(ref["var"], ref["addr"], ref["vkeys"], ref["oid"], ref["kind"],
                             call=ref["call"], params=ref["params"], summary=ref["summary"])
            added += 1
    return ImportReport(len(new_objects), added, calls, skipped)
