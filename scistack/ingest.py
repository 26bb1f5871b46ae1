"""`scistack ingest`: record values another language (MATLAB) encoded, with one index writer.

MATLAB cannot hash with blake3 or write DuckDB, so it stages payload files and a manifest
(`matlab/README.md` has the contract) and asks this command to store them. Everything is
validated and decoded before anything is recorded, and the refs are appended in one batch,
so an ingest records all of its items or none of them.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from scistack.address import NOT_TEXT, checked_label, is_text, shown
from scistack.database import Database
from scistack.errors import (
    InvalidMetadataError,
    InvalidNameError,
    SchemaMismatchError,
    ScistackError,
    UnsupportedValueError,
)
from scistack.gc import freshen_lineage
from scistack.index import check_identifier
from scistack.objects.canonical_json import dumps_canonical, from_tree
from scistack.objects.codec import decode_value
from scistack.objects.npy import refuse_lone_surrogates
from scistack.objects.oid import is_valid_oid
from scistack.records import read_call
from scistack.summary import summarize

_STAGED = "staged:"
_KINDS = ("npy", "json", "bytes")


def project_of_manifest(manifest: str | Path) -> Path:
    """The project folder of a staged manifest: `<project>/.scistack/staging/<id>/manifest.json`."""
    return Path(manifest).resolve().parents[3]


def ingest_manifest(db: Database, manifest_path: str | Path) -> list[str]:
    """Store a staged manifest's values and record them; returns each item's oid, in order."""
    folder = Path(manifest_path).parent
    manifest = _read_manifest(db, Path(manifest_path))
    var = check_identifier(manifest.get("var"), "variable name")
    staged: dict[str, str] = {}
    for n, child in enumerate(manifest["children"]):
        where = _entry(f"{manifest_path}: child {n}", child)
        staged[staged_name(child)] = store_staged(db, folder, child, staged, where=where)[0]
    planned = []
    fresh: set[str] = set()  # what `_stored` freshened: the items' lineages overlap, walked once
    for n, item in enumerate(manifest["items"]):
        where = _entry(f"{manifest_path}: item {n}", item, stored=True)
        addr, vkeys = _addresses(db, var, item, where)
        if "payload" in item:
            oid, value = store_staged(db, folder, item, staged, where=where)
            kind = item["kind"]
        else:  # a value already stored (a MATLAB Thunk's result), named by its oid
            oid, kind, value = _stored(db, item, where, fresh)
        call, params = _lineage(db, item, oid, where)
        planned.append((addr, vkeys, oid, kind, summarize(value), call, params))
    with db.batch():  # one journal append: all or nothing
        for addr, vkeys, oid, kind, summary, call, params in planned:
            db.index.put_ref(var, addr, vkeys, oid, kind, call=call, params=params, summary=summary)
    return [p[2] for p in planned]


def _entry(where: str, entry: Any, *, stored: bool = False) -> str:
    """`where` (an entry's place in its manifest, for messages), once the entry is an object
    that names its payload file (or, an item when `stored`, the oid of a value stored already)."""
    if not isinstance(entry, dict):
        raise InvalidMetadataError(
            f"{where} is the {type(entry).__name__} {shown(entry)}, not an object with 'kind' and "
            f"'payload'; nothing was recorded. {_RESTAGE}")
    if not (stored and "oid" in entry) and (not isinstance(entry.get("payload"), str) or not Path(entry["payload"]).name):
        raise InvalidMetadataError(
            f"{where} has 'payload' {shown(entry.get('payload'))}, not the name of a file in its "
            f"staging folder; nothing was recorded. {_RESTAGE}")
    return where


_RESTAGE = "Save the value again from MATLAB (matlab/README.md has the manifest's contract)"


def _stored(db: Database, item: dict[str, Any], where: str,
            fresh: set[str]) -> tuple[str, str, Any]:
    """A value already stored (a Thunk result, maybe old and unnamed), about to be named: made
    young with its lineage first, as Python's save of a cached result does (`freshen_lineage`;
    a lab's puts this machine's cached copies back in the bucket). `contains`, which a lab's
    cache answers first, had let a value the bucket lost be named: no colleague could load it.
    Refused when the value or any part of it (a container's child) is gone: a dict whose array
    a gc freed had been named, half of it unloadable. Its call's lineage is freshened apart
    (what it lost is `_lineage`'s and fsck's to judge). `fresh` is shared by a manifest's items."""
    oid = item.get("oid")
    if not isinstance(oid, str) or not is_valid_oid(oid) or freshen_lineage(db.store, [oid], fresh):
        raise InvalidMetadataError(
            f"{where} names the stored value {oid!r}, which this project does not hold (whole: "
            "it or a part of it is gone); save the value itself (its data) instead")
    freshen_lineage(db.store, [item.get("call")], fresh)
    return oid, db.store.get(oid).kind, db.store.get_value(oid)


def _lineage(db: Database, item: dict[str, Any], oid: str, where: str) -> tuple[str | None, dict[str, Any]]:
    """The call that computed a staged item (a Thunk result) and its parameters, checked: the
    call record must exist and name the item's value among its outputs."""
    call = item.get("call")
    if call is None:
        return None, {}
    try:
        record = read_call(db.store, call) if isinstance(call, str) else None
    except ScistackError:
        record = None
    if record is None or oid not in record.outputs:
        raise InvalidMetadataError(
            f"{where} claims it was computed by call {call!r}, but that call record is not "
            f"stored or did not output {oid}; save the value without 'call'")
    return call, from_tree(record.params, lambda child: child) or {}


REJECTED = "rejected"
"""`<project>/.scistack/rejected/`: queued saves that ingest refused, kept whole."""

# what a save's own content can be refused for (not a locked or read-only project, a full disk)
_REFUSALS = (InvalidMetadataError, InvalidNameError, SchemaMismatchError, UnsupportedValueError)


def ingest_queue(db: Database, queue: str | Path,
                 rejected: list[str] | None = None) -> list[str]:
    """Record every save the MATLAB client queued in QUEUE (`<project>/.scistack/queue`), oldest first.

    Each `<queue>/<id>/` folder holds one save, complete once its manifest.json exists (MATLAB
    writes it last, by rename); it is recorded with ingest_manifest and then removed, so a
    crash between two folders leaves the rest queued for the next call. A folder without a
    manifest is a save still being written (or one that never returned) and is left alone.
    A save ingest refuses (an address value Python cannot hold, from a client that did not
    check it) is moved whole to `<project>/.scistack/rejected/` and its message appended to
    `rejected`, once: left in the queue it would have failed every later flush, and kept
    every save after it from being recorded.
    Two sessions flushing at once take turns on `<queue>.lock` (an exclusive flock the kernel
    drops when a process dies): the second sees only what the first left, so no save is
    recorded twice or lost."""
    import shutil

    oids: list[str] = []
    queue = Path(queue)
    with exclusive(queue.with_name(queue.name + ".lock")):
        if not queue.is_dir():
            return oids
        for folder in sorted(p for p in queue.iterdir() if p.is_dir()):
            manifest = folder / "manifest.json"
            if not manifest.is_file():
                continue
            try:
                oids.extend(ingest_manifest(db, manifest))
            except _REFUSALS as exc:
                message = _set_aside(folder, queue.with_name(REJECTED), exc)
                if rejected is not None:
                    rejected.append(message)
                continue
            shutil.rmtree(folder, ignore_errors=True)
    return oids


def _set_aside(folder: Path, rejected: Path, exc: Exception) -> str:
    """Move a refused queued save to REJECTED (its files and a `reason.txt`); the message
    that says which save, why, and where it is kept."""
    rejected.mkdir(exist_ok=True)
    kept = rejected / folder.name
    reason = str(exc).replace(str(folder), str(kept))
    (folder / "reason.txt").write_text(reason + "\n", encoding="utf-8")
    os.replace(folder, kept)
    return (f"a queued save was not recorded ({_what_was_saved(kept / 'manifest.json')}): {reason}\n"
            f"  Its files are kept in {kept} (reason.txt says why; delete that folder once the value "
            "is saved again); the saves queued after it were recorded.")


def _what_was_saved(manifest: Path) -> str:
    """`Var at key=value, ...` of a queued manifest, its values as the user gave them."""
    try:
        data = json.loads(manifest.read_text())
        items = [f"{k}={shown(_untagged(v))}" for item in data["items"]
                 for k, v in {**item.get("addr", {}), **item.get("vkeys", {})}.items()]
        return f"{data['var']} at {', '.join(items)}"
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return manifest.parent.name


@contextlib.contextmanager
def exclusive(path: Path) -> Iterator[None]:
    """An exclusive flock on `path` while the block runs (other processes wait their turn)."""
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # closing the descriptor releases the lock


def _read_manifest(db: Database, path: Path) -> dict[str, Any]:
    try:
        manifest = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise InvalidMetadataError(f"cannot read the manifest {path}: {exc}") from None
    if not isinstance(manifest, dict):
        raise InvalidMetadataError(
            f"{path} holds a JSON {type(manifest).__name__}, not the manifest object ('format', "
            f"'var', 'schema_keys', 'items'); nothing was recorded. {_RESTAGE}")
    if manifest.get("format") != 1:
        raise InvalidMetadataError(f"{path}: manifest format {manifest.get('format')!r}; this scistack reads 1")
    if list(manifest.get("schema_keys", [])) != db.schema_keys:
        raise SchemaMismatchError(
            f"{path} was staged for schema keys {manifest.get('schema_keys')}, but the project has "
            f"{db.schema_keys}; configure MATLAB with scistack.configure_database(path, {db.schema_keys})"
        )
    manifest.setdefault("children", [])
    for field in ("items", "children"):
        if not isinstance(manifest.get(field), list):
            raise InvalidMetadataError(f"{path}: {field!r} must be a list of staged values; "
                                       f"nothing was recorded. {_RESTAGE}")
    return manifest


def _addresses(db: Database, var: str, item: dict[str, Any], where: str) -> tuple[dict, dict]:
    """An item's address and version keys, held to the rules of `save` (a whole float is its
    int): what `save` refuses, no later load, listing or export could handle."""
    addr, vkeys = item.get("addr"), item.get("vkeys") or {}
    for field, value in [("addr", addr), ("vkeys", vkeys)]:
        if not isinstance(value, dict):
            raise InvalidMetadataError(
                f"{where}: {field!r} is the {type(value).__name__} {shown(value)}, not an object of "
                f"keys to values such as {{\"{db.schema_keys[0]}\": 1}}; nothing was recorded. {_RESTAGE}")
    unknown = [k for k in addr if k not in db.schema_keys]
    if unknown or not addr:
        raise InvalidMetadataError(
            f"{where}: {var}'s address {addr} must use schema keys {db.schema_keys} (unknown: "
            f"{unknown or 'none given'}); nothing was recorded")
    try:
        for key in vkeys:
            check_identifier(key, "metadata key")
    except InvalidNameError as exc:
        raise InvalidNameError(f"{where}: {exc}") from None
    clash = [k for k in vkeys if k in db.schema_keys]
    if clash:
        raise InvalidMetadataError(
            f"{where}: version key {clash[0]!r} is a schema key. Nothing of this manifest was "
            "recorded: give it in 'addr' (a save names each schema key once)")
    db.index.check_names(var, vkeys)
    return ({k: _label(where, k, v, "") for k, v in addr.items()},
            {k: _label(where, k, v, "version key ") for k, v in vkeys.items()})


def _label(where: str, key: str, value: Any, what: str) -> Any:
    """An address (or version-key) value as `save` takes it, or the error `save` would give."""
    return checked_label(_untagged(value), f"{where}: {what}{key}", none_ok=bool(what),
                         then=". Nothing of this manifest was recorded: save that value again with a "
                              "valid one (one save per address)")


def _untagged(value: Any) -> Any:
    """A metadata value MATLAB wrote as a tag (NaN and infinities as `{"$float": "nan"}`,
    JSON having neither) as the float it stands for, so a refusal names NaN, not the tag."""
    if isinstance(value, dict) and len(value) == 1 and isinstance(value.get("$float"), str):
        try:
            return float(value["$float"])
        except ValueError:
            return value
    return value


def staged_name(entry: dict[str, Any]) -> str:
    """The placeholder (`staged:payload-<n>.bin`) that json payloads use for a staged child."""
    return f"{_STAGED}{entry['payload']}"


def staged_payload(folder: Path, entry: dict[str, Any], staged: dict[str, str],
                   *, where: str = "staged") -> tuple[str, bytes]:
    """(kind, payload) of a staged entry, with `staged:` child placeholders replaced by oids.
    `where` names the entry in messages."""
    kind = entry.get("kind")
    if kind not in _KINDS:
        raise UnsupportedValueError(f"{where}: kind {kind!r} cannot be ingested; expected one of {_KINDS}")
    name = Path(entry["payload"]).name  # never follow a path out of the staging folder
    try:
        payload = (folder / name).read_bytes()
    except OSError as exc:
        raise InvalidMetadataError(
            f"{where}: its payload file {name!r} cannot be read in {folder} ({exc.strerror}); nothing "
            f"was recorded. {_RESTAGE}") from None
    if kind == "json":
        payload = dumps_canonical(_replace_refs(_json_tree(payload, f"{where}: json payload {name}"), staged))
    return kind, payload


def _json_tree(payload: bytes, what: str) -> Any:
    """A json payload's tree; NaN and infinities, which JSON lacks, are refused (canonical JSON
    writes them as `$float` tags)."""
    def refuse(constant: str) -> Any:
        tag = {"NaN": "nan", "Infinity": "inf"}.get(constant, "-inf")
        raise ValueError(f"{constant} is not JSON: write it as {{\"$float\": \"{tag}\"}}")

    try:
        return json.loads(payload, parse_constant=refuse)
    except ValueError as exc:  # (not UTF-8 too)
        raise UnsupportedValueError(
            f"{what} is not UTF-8 JSON ({exc}); nothing was recorded. {_RESTAGE}") from None


def store_staged(db: Database, folder: Path, entry: dict[str, Any], staged: dict[str, str],
                 *, where: str = "staged") -> tuple[str, Any]:
    """Validate (decode) and store one staged payload; returns its oid and decoded value."""
    kind, payload = staged_payload(folder, entry, staged, where=where)
    try:
        value = decode_value(kind, payload, lambda oid: (db.store.get(oid).kind, db.store.get(oid).payload))
    except Exception as exc:  # noqa: BLE001 - any decoding failure means a bad payload
        name = Path(entry["payload"]).name
        raise UnsupportedValueError(f"{where}: {kind} payload {name} does not decode: {exc}") from None
    try:
        _refuse_non_text(value)
    except UnsupportedValueError as exc:
        raise UnsupportedValueError(f"{where}: {exc}; nothing was recorded") from None
    return db.store.put(kind, payload), value


def _refuse_non_text(value: Any) -> None:
    """Refuse a staged value holding a str that is not UTF-8 (a lone surrogate: MATLAB's char
    is UTF-16 code units, and JSON's escapes carry one), as a save from Python does (the
    canonical encoder, `npy.refuse_lone_surrogates`): the summary, the index and the views could
    not hold it."""
    if isinstance(value, str):  # (a numpy str scalar too)
        if not is_text(value):
            raise UnsupportedValueError(f"cannot store {shown(str(value))}: {NOT_TEXT}")
    elif isinstance(value, np.ndarray):
        if value.dtype.kind == "U":
            refuse_lone_surrogates(value)
    elif isinstance(value, (list, tuple)):
        for item in value:
            _refuse_non_text(item)
    elif isinstance(value, dict):
        for key, item in value.items():
            _refuse_non_text(key)
            _refuse_non_text(item)


def _replace_refs(tree: Any, staged: dict[str, str]) -> Any:
    if isinstance(tree, list):
        return [_replace_refs(v, staged) for v in tree]
    if isinstance(tree, dict):
        if len(tree) == 1 and isinstance(tree.get("$ref"), str) and tree["$ref"].startswith(_STAGED):
            if tree["$ref"] not in staged:
                raise InvalidMetadataError(f"json payload refers to {tree['$ref']}, which is not staged before it")
            return {"$ref": staged[tree["$ref"]]}
        return {k: _replace_refs(v, staged) for k, v in tree.items()}
    return tree
