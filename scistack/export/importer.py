"""Import a bundle into a project: check everything first, then write objects, cache, refs.

Every file the manifest lists is checked against its recorded hash (objects against their
blake3 oid, open files against their sha256), the schema keys against the project's, and
every saved record of the manifest (the one file no hash covers) against the rules of `save`,
before anything is written, so a damaged or edited bundle or a wrong project changes nothing.
Address and version-key values are taken as save takes them (a whole float is the int it equals).
Objects are stored byte for byte (the store recomputes each oid: the same oids), call-cache
entries are added where the project has none for that call key, and each saved record is
added unless the project already has that value at that address (so importing twice, or
merging into a project that holds part of the lineage, adds nothing twice), in the bundle's
version order (an aggregate's members are listed in it). Where records are added, the bundle's
newest value of each variant there is current afterwards (named again if the project held it
already: older versions the bundle brings must not displace it); elsewhere nothing changes.
"""

from __future__ import annotations

import errno
import json
import os
import shutil
import tempfile
from dataclasses import dataclass, field
from itertools import groupby
from pathlib import Path, PurePosixPath
from typing import Any

from scistack.address import address_problem, address_value, shown_address
from scistack.database import Database
from scistack.errors import (BundleDamagedError, ExportError, InvalidMetadataError, InvalidNameError,
                             SchemaMismatchError)
from scistack.export.bundle import BUNDLE_FORMAT, MANIFEST, UNFINISHED, sha256_of
from scistack.export.rawnames import restore_path, same_name_key, unrestorable
from scistack.index.journal import entry_problem
from scistack.index.sql import check_identifier
from scistack.lineage.calls import bound_origins, raw_places, read_at, same_raw_names
from scistack.index.state import key_of, untagged_params
from scistack.objects.chunking import policy_from_config
from scistack.objects.hashing import KINDS, hash_object
from scistack.objects.oid import is_valid_oid
from scistack.records import read_call


@dataclass(frozen=True, slots=True)
class ImportReport:
    """What an import added (objects new to the project, saved records, cache entries)."""

    objects: int
    refs: int
    calls: int
    skipped_refs: int
    # (variable, address, version keys) where the project's own current value was another one:
    # the bundle's is current there now, the project's stays as an earlier version
    superseded: list[tuple[str, dict[str, Any], dict[str, Any]]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)  # what the user should know (chunking that differs)


def read_manifest(bundle: Path) -> dict[str, Any]:
    if (bundle / UNFINISHED).exists():
        raise BundleDamagedError(f"{bundle} holds an export that did not finish (it is being written, or its "
                                 f"process was killed: {UNFINISHED}); nothing was imported. Export it again")
    path = bundle / MANIFEST
    if not path.is_file():
        raise ExportError(f"{bundle} is not a scistack bundle: it has no {MANIFEST}; "
                          "pass the folder `scistack export --to` wrote")
    try:
        manifest = json.loads(path.read_text())
    except ValueError as exc:
        raise BundleDamagedError(f"{path} is not valid JSON ({exc}); export the bundle again") from exc
    version = manifest.get("format") if isinstance(manifest, dict) else None
    if version != BUNDLE_FORMAT:
        raise ExportError(f"{path} has bundle format {version!r}; this scistack reads "
                          f"format {BUNDLE_FORMAT}: upgrade scistack or export again")
    lists = {"schema_keys": str, "call_records": str, "selected": dict, "refs": dict, "calls": dict,
             "files": dict, "objects": dict}  # each a list of these
    wrong = [key for key, item in lists.items() if not isinstance(manifest.get(key), list)
             or not all(isinstance(e, item) for e in manifest[key])]
    if wrong:
        raise BundleDamagedError(f"{path} has no list {wrong[0]!r} of the right shape (the manifest was "
                                 "edited or damaged); nothing was imported. Export the bundle again")
    return manifest


def _record_problem(ref: dict[str, Any], schema_keys: list[str], objects: dict[str, dict]) -> str | None:
    """Why a manifest's saved record could not have been saved (None when it could): the rules
    of `save`, so an edited manifest cannot name what no project may hold."""
    addr, vkeys = ref.get("addr"), ref.get("vkeys")
    if not isinstance(addr, dict) or not addr or not isinstance(vkeys, dict):
        return "its address is not a mapping of schema keys"
    try:
        for name, what in [(ref.get("var"), "variable name"), *((key, "version key") for key in vkeys)]:
            check_identifier(name, what)
    except InvalidNameError as exc:
        return str(exc).split(":")[0]
    if not set(addr) <= set(schema_keys) or set(vkeys) & set(schema_keys):
        return (f"its keys {sorted({**addr, **vkeys})} do not split into schema keys {schema_keys} "
                "and version keys")
    for key, value in {**addr, **{k: v for k, v in vkeys.items() if v is not None}}.items():
        if address_problem(value) is not None:
            return f"{key}={value!r} {address_problem(value)}"
    if not isinstance(ref.get("version"), int) or isinstance(ref["version"], bool) or ref["version"] < 1:
        return f"its version {ref.get('version')!r} is not a positive integer"
    kind = objects.get(ref.get("oid"), {}).get("kind")
    if kind is None or kind != ref.get("kind") or kind in ("call", "code", "chunk"):
        return (f"its value, object {ref.get('oid')} of kind {ref.get('kind')!r}, is not a value "
                "the bundle holds")
    if ref.get("call") is not None and objects.get(ref["call"], {}).get("kind") != "call":
        return f"its call record {ref['call']} is not in the bundle"
    if not all(v is None or isinstance(v, (bool, int, float, str))
               for v in untagged_params(ref.get("params") or {}).values()):
        return "its lineage parameters are not all scalar constants"
    return None


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
    """Every object's manifest entry by oid, after checking every listed file's hash and every
    record and cache entry of the manifest. The files are read one at a time and not kept: a
    bundle may be larger than memory."""
    objects = {}
    for obj in manifest["objects"]:
        if not (is_valid_oid(obj.get("oid")) and obj.get("kind") in KINDS and isinstance(obj.get("path"), str)):
            raise BundleDamagedError(f"{MANIFEST} in {bundle} lists an object {str(obj)[:120]} that is "
                                     "not an oid, a kind and a path; nothing was imported. Export it again")
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
    _verify_raw(bundle, manifest.get("raw_files", []))
    problem = _entries_problem(manifest, objects)
    if problem is not None:
        raise BundleDamagedError(f"{MANIFEST} in {bundle} {problem} (the manifest was edited or "
                                 "damaged); nothing was imported. Export the bundle again")
    return objects


def _verify_raw(bundle: Path, raw: Any) -> None:
    """Each raw file the bundle holds (`--with-raw`) against its sha256, inside `raw/`: a
    recipient copies them back to run the pipeline again from them."""
    if not isinstance(raw, list) or not all(isinstance(r, dict) for r in raw):
        raise BundleDamagedError(f"{MANIFEST} in {bundle} has a 'raw_files' that is not a list of entries "
                                 "(the manifest was edited or damaged); nothing was imported. Export it again")
    for entry in raw:
        if entry.get("path") is None:
            continue  # named, not copied (changed or gone when exported)
        name = entry["path"]
        parts = PurePosixPath(name).parts if isinstance(name, str) else ()
        if parts[:1] != ("raw",) or ".." in parts or "\0" in name:
            raise BundleDamagedError(f"{MANIFEST} in {bundle} places raw file {entry.get('read_as')!r} at "
                                     f"{name!r}, outside raw/ (the manifest was edited or damaged); nothing "
                                     "was imported. Export the bundle again")
        path = bundle / name
        if not (path.is_file() and sha256_of(path) == entry.get("sha256")):
            raise BundleDamagedError(
                f"raw file {name} in {bundle} (read as {entry.get('read_as')!r}) is missing or does not "
                f"match its sha256 {str(entry.get('sha256'))[:16]}... (the file was changed or damaged); "
                "nothing was imported. Export the bundle again")
        back = restore_as(entry)
        parts = PurePosixPath(back).parts if isinstance(back, str) else ()
        if not parts or PurePosixPath(back).is_absolute() or ".." in parts or "\0" in back or "\\" in back \
                or (len(parts[0]) == 2 and parts[0][1] == ":"):
            raise BundleDamagedError(f"{MANIFEST} in {bundle} restores raw file {name} to {back!r}, not a "
                                     "relative path inside a folder (the manifest was edited or damaged); "
                                     "nothing was imported. Export the bundle again")
        read_as = entry.get("read_as")
        if not isinstance(read_as, str) or back != restore_path(read_as):
            raise BundleDamagedError(
                f"{MANIFEST} in {bundle} restores raw file {name} (read as {read_as!r}) to {back!r}, not to "
                f"the path it was read as" + (f" ({restore_path(read_as)!r})" if isinstance(read_as, str) else "")
                + " (the manifest was edited or damaged); nothing was imported. Export the bundle again")


def restore_as(entry: dict[str, Any]) -> Any:
    """Where a copied raw file goes back, relative to the folder it is restored into: the path
    it was read as (`restore_as`; a bundle without it kept that path under `raw/`)."""
    if "restore_as" in entry:
        return entry["restore_as"]
    return entry["path"][len("raw/"):] if isinstance(entry["path"], str) else None


def _raw_targets(bundle: Path, raw: list[dict[str, Any]], into: Path) -> list[tuple[Path, Path]]:
    """(file in the bundle, where it goes) of each copied raw file not at its place already,
    refused, before anything is written, where it would be code Python imports or go inside
    .scistack/ or .git/, where a symbolic link is on its way (it may lead out of `into`), where
    a file other than it is there (never replaced), where a file stands where its folder must
    be, or where two of them are one name on macOS and Windows (case, normalisation)."""
    try:
        return _targets(bundle, raw, into)
    except OSError as exc:  # (a folder that cannot be read, a path too long)
        raise ExportError(f"the raw files of {bundle} cannot be restored into {into}: {exc.filename or into} "
                          f"cannot be looked at ({exc.strerror or exc}); nothing was imported. Pass --raw-to "
                          "a folder you can read and write, with a shorter path") from exc


def _targets(bundle: Path, raw: list[dict[str, Any]], into: Path) -> list[tuple[Path, Path]]:
    moves, seen = [], {}  # restore_as -> sha256
    for entry in raw:
        if entry.get("path") is None:
            continue
        back, target = restore_as(entry), into / restore_as(entry)
        why = unrestorable(back)
        if why is not None:
            raise ExportError(f"raw file {entry['path']} of {bundle} (read as {entry.get('read_as')!r}) would "
                              f"go back to {target}, but {why}; nothing was imported. Import without --raw-to, "
                              "and copy the file from the bundle by hand if you trust it")
        if seen.setdefault(back, entry["sha256"]) != entry["sha256"]:
            raise BundleDamagedError(f"{MANIFEST} in {bundle} restores two raw files to {target} (the "
                                     "manifest was edited or damaged); nothing was imported. Export it again")
        if any(t == target for _, t in moves):
            continue  # (listed twice, the same file)
        link = _link_on_the_way(into, back)
        if link is not None:
            raise ExportError(f"raw file {entry['path']} of {bundle} would go back to {target}, but {link} is a "
                              f"symbolic link (it may lead out of {into}: no raw file is written through one); "
                              "nothing was imported. Remove the link, or restore the raw files into another folder")
        blocked = next((p for p in (target, *target.parents) if p.exists() and not p.is_dir()
                        and p != target), None)
        if blocked is not None or target.is_dir() or (
                target.exists() and sha256_of(target) != entry["sha256"]):
            raise ExportError(
                f"raw file {entry['path']} of {bundle} would go back to {target}, where "
                + (f"{blocked} is a file" if blocked is not None else "another file or a folder is")
                + "; nothing was imported (nothing is replaced). Move it aside, or restore the raw "
                "files into another folder")
        if not target.exists():
            moves.append((bundle / entry["path"], target))
    folders = {str(folder) for back in seen for folder in PurePosixPath(back).parents}
    both = next((back for back in seen if back in folders), None)
    if both is not None:  # (read at different times as a file and as a folder)
        raise ExportError(f"{bundle} holds a raw file read as {both} and others read inside a folder of "
                          "that name: one folder cannot hold both; nothing was imported. Copy them from its "
                          "raw/ folder by hand (its README lists where each was read)")
    _refuse_one_name(bundle, into, seen, folders)
    return moves


def _refuse_one_name(bundle: Path, into: Path, files: dict[str, str], folders: set[str]) -> None:
    """Refused where two restore paths differ only in case (or Unicode normalisation), a Linux
    export, and `into` is on a file system that takes them as one name (macOS, Windows): the
    second would land on the first. Elsewhere they are two files, restored as read."""
    names: dict[str, str] = {}
    for back in [*files, *sorted(folders - {"."})]:
        first = names.setdefault(same_name_key(back), back)
        if first != back and _folds_case(into):
            raise ExportError(f"{bundle} holds raw files read as {first} and as {back}, one name where they "
                              f"would go back ({into}: its file system ignores case), so one would land on the "
                              "other; nothing was imported. Restore the raw files on a file system that tells "
                              "case apart, or copy them from the bundle's raw/ folder by hand (its README lists "
                              "where each was read)")


def _folds_case(folder: Path) -> bool:
    """Whether the file system at `folder` (its nearest existing folder) takes names that differ
    only in case as one: a probe file of a fresh name, looked up in capitals, then removed."""
    at = folder.absolute()
    while not at.is_dir() and at != at.parent:
        at = at.parent
    fd, probe = tempfile.mkstemp(prefix=".scistack-case-probe-", dir=at)
    os.close(fd)
    try:
        return os.path.lexists(os.path.join(at, os.path.basename(probe).upper()))
    finally:
        os.unlink(probe)


def _link_on_the_way(into: Path, back: str) -> Path | None:
    """The first symbolic link among the parts of `into / back` below `into` (None: none)."""
    at = into
    for part in PurePosixPath(back).parts:
        at = at / part
        if at.is_symlink():
            return at
    return None


def _restore_raw(moves: list[tuple[Path, Path]], into: Path | None = None) -> None:
    """Copy the raw files back, each whole or not at all, never over a file: a temporary file
    of a fresh name (removed whatever happens) linked to its name, which fails where one is."""
    for source, target in moves:
        try:
            target.parent.mkdir(parents=True, exist_ok=True)
            if into is not None and _link_on_the_way(into, target.relative_to(into).as_posix()):
                raise FileExistsError(0, "a symbolic link appeared on its way", str(target))
            _write_new(source, target)
        except FileExistsError as exc:
            raise ExportError(f"{exc.filename or target} appeared while the raw files were restored: it was "
                              "kept (nothing is replaced); nothing was imported into the project. Move it "
                              "aside and import again") from exc
        except OSError as exc:
            raise ExportError(f"raw file {source.name} could not be restored to {target} "
                              f"({exc.strerror or exc}); nothing was imported into the project (raw files "
                              "restored before it stay, and are kept by the next import). Pass --raw-to a "
                              "folder you can write, with a shorter path") from exc


def _write_new(source: Path, target: Path) -> None:
    fd, temp = tempfile.mkstemp(prefix=".scistack-", suffix=".tmp", dir=target.parent)
    try:
        with os.fdopen(fd, "wb") as out, open(source, "rb") as data:
            shutil.copyfileobj(data, out)
        shutil.copymode(source, temp)  # (mkstemp makes it private to the user)
        try:
            os.link(temp, target)  # FileExistsError where any file or link is there
        except OSError as exc:
            if isinstance(exc, FileExistsError) or exc.errno not in _NO_HARD_LINKS:
                raise
            _copy_exclusive(Path(temp), target)  # (a file system without hard links: FAT, some shares)
    finally:
        Path(temp).unlink(missing_ok=True)


_NO_HARD_LINKS = {errno.EPERM, errno.ENOTSUP, errno.EOPNOTSUPP, errno.EXDEV, errno.ENOSYS, errno.EMLINK}


def _copy_exclusive(temp: Path, target: Path) -> None:
    """`temp` copied to `target`, created new (never through a link); removed if cut short."""
    fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0)
                 | getattr(os, "O_BINARY", 0), 0o666)
    try:
        with os.fdopen(fd, "wb") as out, open(temp, "rb") as data:
            shutil.copyfileobj(data, out)
    except BaseException:
        target.unlink(missing_ok=True)
        raise


def _entries_problem(manifest: dict[str, Any], objects: dict[str, dict]) -> str | None:
    """What is wrong with the manifest's records and cache entries, which become journal lines
    as they are (None when nothing is)."""
    for ref in manifest["refs"]:
        problem = entry_problem({**ref, "op": "put", "t": ""})
        if problem is not None:
            return f"holds a record of {ref.get('var')!r} that is not a valid journal entry ({problem})"
    for call in manifest["calls"]:
        problem = entry_problem({**call, "op": "call"})
        if problem is not None or not all(isinstance(o, str) for o in call.get("outs", [])):
            return f"holds a call-cache entry that is not a valid journal entry ({problem or 'outs'})"
        for oid in (call["call"], *call.get("outs", [None])):
            if oid not in objects:
                return f"names object {oid}, of call record {call['call']}, which the bundle does not list"
    keys = manifest["schema_keys"]
    for ref in manifest["refs"]:
        if ref["oid"] not in objects:
            return (f"names the value of {ref['var']} at {_where(ref, keys)}, object {ref['oid']}, which "
                    "the bundle does not list")
        problem = _record_problem(ref, keys, objects)
        if problem is not None:
            return f"names a value of {ref['var']!r} at {_where(ref, keys)} that no project can hold: {problem}"
    return None


def _where(ref: dict[str, Any], keys: list[str]) -> str:
    """A manifest record's address as messages write one: `subject=1, session='pre'`, the
    schema's keys first in their order (it printed the dict, in the manifest's key order)."""
    addr = ref.get("addr")
    return (shown_address(addr, keys) or "every address") if isinstance(addr, dict) else repr(addr)


def _check_schema(bundle: Path, theirs: list[str], mine: list[str], refs: list[dict[str, Any]]) -> None:
    """The bundle's schema keys are the project's, or its first ones (the project has added a
    finer level since: the bundle's values sit at the coarser level, as the project's own old
    values do), and no record of it uses one of the project's other keys as a version key."""
    if mine[:len(theirs)] != theirs:
        finer = theirs[:len(mine)] == mine
        raise SchemaMismatchError(
            f"the bundle {bundle} has schema keys {theirs}, the project has {mine}; nothing was "
            "imported. " + (f"Add the bundle's finer level(s) first: db.add_schema_key({theirs[len(mine)]!r})"
                            if finer else f"Import it into a project with schema keys {theirs}"))
    added = set(mine) - set(theirs)  # (a version key named like one of theirs: a damaged manifest, said later)
    clash = sorted({k for ref in refs if isinstance(ref, dict) and isinstance(ref.get("vkeys"), dict)
                    for k in ref["vkeys"] if k in added})
    if clash:
        raise SchemaMismatchError(
            f"the bundle {bundle} uses {clash[0]!r} as a version key, a schema key of this project; "
            "nothing was imported. Import it into a project without that key")


def _adopt_chunking(db: Database, found: Any) -> list[str]:
    """The bundle's chunking becomes the project's when the project records none yet (a new
    one), so identical data saved here again keeps the oid it came with (a no-op, not a new
    version). A project chunking otherwise keeps its own: the bundle's values keep theirs (their
    lineage names them), and the note says what follows."""
    theirs = policy_from_config(found)
    if theirs is None:
        return []
    ours = db.adopt_chunk_policy(theirs)
    if ours == theirs:
        return []
    return [f"the bundle's large values were chunked above {theirs.threshold:,} bytes in chunks of "
            f"{theirs.chunk_bytes:,} bytes; this project chunks above {ours.threshold:,} in chunks of "
            f"{ours.chunk_bytes:,}. They are imported as they are, but an identical array saved here again gets "
            "another oid (a new version, and its steps run again). Import into a new project to keep the "
            "bundle's chunking"]


def _restored_places(raw: list[dict[str, Any]], into: Path) -> dict[tuple[str, str], str]:
    """(path as read, oid) -> the absolute path a copied raw file went back to in `into`, as a
    `PathInput` run from `into` names it in a call record (`file`)."""
    into_abs = os.path.abspath(into)
    return {(entry["read_as"], entry["oid"]): os.path.normpath(os.path.join(into_abs, restore_as(entry)))
            for entry in raw if entry.get("path") is not None}


def _read_there(db: Database, call_oid: str, restored: dict[tuple[str, str], str]) -> tuple[str, str] | None:
    """(oid, origins digest) of the record of call `call_oid` (the bundle's, stored) made where
    its raw files went back (`lineage.calls.read_at`), stored; None when it read none of
    them elsewhere (`same_raw_names`: what makes `status` and `why` judge that later record,
    the cache entry's, for the bundle's refs, as after a cached run there)."""
    call = read_call(db.store, call_oid)
    there = read_at(call, restored)
    if not same_raw_names(raw_places(call), raw_places(there)):
        return None
    return db.store.put("call", there.to_bytes()), bound_origins(there)


def import_bundle(db: Database, bundle: str | Path, raw_to: str | Path | None = None) -> ImportReport:
    """Merge the bundle at `bundle` into `db` (checked whole first; see the module docstring).
    `raw_to`: a folder the bundle's raw files (`--with-raw`) go back into, each at the path it
    was read as (relative to the folder the pipeline ran from), whatever name the bundle gave
    it to be unpacked on Windows and macOS; a file already there is never replaced."""
    bundle = Path(bundle)
    manifest = read_manifest(bundle)
    _check_schema(bundle, list(manifest["schema_keys"]), list(db.schema_keys), manifest["refs"])
    try:
        objects = verify(bundle, manifest)
    except (KeyError, TypeError, AttributeError) as exc:  # a field missing or of another shape
        raise BundleDamagedError(f"{MANIFEST} in {bundle} is malformed ({type(exc).__name__}: {exc}; the "
                                 "manifest was edited or damaged); nothing was imported. Export the bundle "
                                 "again") from exc
    for ref in manifest["refs"]:  # as save takes them (`address_value`): an edited `subject: 1.0` is
        for part in ("addr", "vkeys"):  # subject 1, not an address of its own beside the project's 1
            ref[part] = {k: address_value(v) for k, v in ref[part].items()}
    new_objects = [obj for oid, obj in objects.items() if not db.store.contains(oid)]
    names = {(r["var"], key_of(r["vkeys"])): r["vkeys"] for r in manifest["refs"]}
    try:  # what the project would refuse by name mid-way: refused before anything is written
        for (var, _), vkeys in names.items():
            db.index.check_names(var, vkeys)
    except (InvalidNameError, InvalidMetadataError) as exc:
        raise type(exc)(f"{exc}; nothing was imported from {bundle}") from None
    if raw_to is not None:  # (files beside the project: written before it, and never over one)
        _restore_raw(_raw_targets(bundle, manifest.get("raw_files", []), Path(raw_to)), Path(raw_to))
    restored = {} if raw_to is None else _restored_places(manifest.get("raw_files", []), Path(raw_to))
    notes = _adopt_chunking(db, manifest.get("chunking"))
    added = skipped = calls = 0
    superseded: list[tuple[str, dict[str, Any], dict[str, Any]]] = []
    here: dict[str, tuple[str, str] | None] = {}  # the bundle's call record -> its record made here

    def read_here(call_oid: str) -> tuple[str, str] | None:
        if call_oid not in here:
            here[call_oid] = _read_there(db, call_oid, restored)
        return here[call_oid]

    with db.batch():
        for obj in new_objects:  # read again, one at a time; checked again (it may have changed)
            db.store.put(obj["kind"], _checked(bundle, obj))
        db.flush()  # objects are durable before any name points at them
        for entry in manifest["calls"]:
            if db.index.cached_call(entry["key"]) is not None:
                continue  # the project's own answer to that call stays
            db.index.put_call(entry["key"], entry["call"], entry["fn"], list(entry["outs"]),
                              multi=bool(entry.get("multi")), origins=entry.get("origins"))
            calls += 1
            there = read_here(entry["call"]) if restored else None
            if there is not None:  # (after the bundle's: its record keeps its key)
                db.index.put_call(entry["key"], there[0], entry["fn"], list(entry["outs"]),
                                  multi=bool(entry.get("multi")), origins=there[1])
        place = lambda r: (r["var"], key_of(r["addr"]))  # noqa: E731
        for (var, addr_key), group in groupby(
                sorted(manifest["refs"], key=lambda r: (*place(r), r["version"])), key=place):
            # in the bundle's version order across variants: an aggregate's members are in it
            group, held = list(group), db.index.versions_at(var, addr_key)
            new = [ref for ref in group if not any(r.oid == ref["oid"] and r.vkeys == ref["vkeys"]
                                                   for r in held)]
            newest = {key_of(ref["vkeys"]): ref for ref in group}  # each variant's, in the bundle
            brought = {key_of(ref["vkeys"]): ref for ref in new}  # the last added of each
            # the bundle's newest value, held already: named again after the older versions
            # the bundle brings, it is current
            new += [ref for vkeys, ref in newest.items() if vkeys in brought and brought[vkeys] is not ref]
            skipped += len(group) - len(new)
            current = {r.vkeys_key: r.oid for r in sorted(held, key=lambda r: r.version)}  # (the last: current)
            for vkeys, ref in brought.items():
                if vkeys in current and current[vkeys] != newest[vkeys]["oid"]:
                    superseded.append((var, ref["addr"], ref["vkeys"]))
            for ref in new:
                # a ref whose call read raw files put back here names the record made where they
                # are (`_read_there`), which status and why judge: the bundle's names the
                # exporter's folder, maybe still there (an edit of the copy here was "current"),
                # and a later record of the call, the cache entry's, may be another address's
                # (files with the same bytes: one call key)
                there = read_here(ref["call"]) if restored and ref["call"] else None
                db.index.put_ref(ref["var"], ref["addr"], ref["vkeys"], ref["oid"], ref["kind"],
                                 call=ref["call"] if there is None else there[0], params=ref["params"],
                                 summary=ref["summary"])
            added += len(new)
    return ImportReport(len(new_objects), added, calls, skipped, superseded, notes)
