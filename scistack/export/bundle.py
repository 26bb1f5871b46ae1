"""Write a closure as a bundle folder: open files, scistack's objects, and a manifest.

Layout (docs/format.md §3):
    Var/subject=1/session=post.npy   a value as an open file (.npy, .parquet, .json, .bin, a
                                     .zarr folder for a chunked array, or a .parts folder for
                                     a dict or list holding arrays or tables)
    objects/<oid>.<kind>             each object's payload, byte for byte (import restores it)
    scistack-bundle.json             manifest: schema keys, refs, call-cache entries, and the
                                     blake3 oid + sha256 of every file above
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import stat
import time
from pathlib import Path, PurePosixPath
from typing import Any

from scistack._atomic import temporary_sibling
from scistack.database import Database
from scistack.export.closure import Closure, raw_files
from scistack.export.rawnames import BundlePlaces, raw_path, restore_path
from scistack.errors import InputFileError
from scistack.foreach.filestats import FileStats, _content_oid, file_stats, known_oid, remember
from scistack.index import RefRecord
from scistack.objects.canonical_json import decode_json, strict_json_data
from scistack.objects.chunked import array_manifest, parse_manifest
from scistack.objects.hashing import hash_bytes
from scistack.objects.store import Fetch, StoredObject

MANIFEST = "scistack-bundle.json"
# in a folder an export writes in place (an empty folder given), from its start until it is
# whole: the pid of the exporting process. An import refuses a folder holding it; an export
# into one whose process is gone clears the folder first (a killed export's)
UNFINISHED = ".scistack-export-unfinished"
BUNDLE_FORMAT = 1
_UNSAFE = re.compile(r"[^A-Za-z0-9._+-]")
_MAX_PART = 120  # characters of one path component (its extension and `@v<n>` come on top)
PARTS = ".parts"  # a dict or list holding arrays or tables: a folder of open files
PARTS_VALUE = "value.json"  # the dict or list itself in it, each array `{"$ref": "<file>"}`
_MAIN_FILE = {".zarr": "zarr.json", PARTS: PARTS_VALUE}  # a folder's file that the manifest's sha256 is of


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def write_bundle(db: Database, found: Closure, to: Path) -> dict[str, Any]:
    """Write the files and the manifest; returns the manifest."""
    objects = []
    for oid, kind in sorted(found.objects.items()):
        path = Path("objects") / f"{oid}.{kind}"
        (to / path).parent.mkdir(parents=True, exist_ok=True)
        digest, _ = _write_payload(to / path, db.store.get(oid).payload)
        objects.append({"oid": oid, "kind": kind, "path": path.as_posix(), "sha256": digest})
    files, taken = [], set()
    for record in found.refs:
        try:
            path, written, unwritten = *_open_file(db, record, to, taken), None
        except _NoOpenFile as exc:
            path, written, unwritten = None, None, str(exc)
        entry = {"var": record.var, "addr": record.addr, "vkeys": record.vkeys, "version": record.version,
                 "oid": record.oid, "kind": record.kind, "path": path}
        if unwritten is not None:  # named (manifest, README, a warning), never skipped silently
            entry["no_open_file"] = unwritten
        if path is not None and (to / path).is_dir():  # a Zarr array or .parts: each member's hash
            members = {m.relative_to(to / path).as_posix(): m for m in sorted((to / path).rglob("*"))
                       if m.is_file()}
            entry |= {"members": {name: sha256_of(m) for name, m in members.items()},
                      "sha256": sha256_of(to / path / _MAIN_FILE[PurePosixPath(path).suffix]),
                      "size": sum(m.stat().st_size for m in members.values())}
        elif written is not None:  # hashed as written (read back, 300k small files took minutes)
            entry |= {"sha256": written[0], "size": written[1]}
        elif path is not None:
            entry |= {"sha256": sha256_of(to / path), "size": (to / path).stat().st_size}
        files.append(entry)
    manifest = {
        "format": BUNDLE_FORMAT,
        "schema_keys": list(db.schema_keys),
        # part of every large value's identity: an import adopts it (`Database.adopt_chunk_policy`)
        "chunking": _chunking_of(db),
        "selected": [_ref_entry(r) for r in found.selected],
        "refs": [_ref_entry(r) for r in found.refs],
        "call_records": sorted(found.calls),
        "calls": found.cache,
        "files": files,
        "objects": objects,
    }
    write_manifest(manifest, to)
    return manifest


def _chunking_of(db: Database) -> dict[str, int] | None:
    """The project's recorded chunking (None: no value needed one yet)."""
    policy = db.recorded_chunk_policy()
    return None if policy is None else {"threshold": policy.threshold, "chunk_bytes": policy.chunk_bytes}


def write_manifest(manifest: dict[str, Any], to: Path) -> None:
    """Streamed to the file (its text for 300k values is ~400 MB: never held whole)."""
    with open(to / MANIFEST, "w") as out:
        json.dump(manifest, out, indent=1, sort_keys=True, default=str)


def write_raw_files(db: Database, found: Closure, to: Path) -> list[dict[str, Any]]:
    """Copy the raw files the calls read into `raw/`, each under the path it was read as
    (`raw_path`), checked against the content its call read; one still there but changed, or
    gone, is listed with why it is not in the bundle. A name Windows or macOS cannot unpack
    (a device name, a refused character, a file and a folder or two files that are one name
    ignoring case) is made safe (`rawnames`), never one file over another; the manifest's
    `read_as` names where each was read, `restore_as` where an import puts it back. Each file
    is read once, hashed as it is copied (it was read whole to check it, copied, and the copy
    read back for its sha256); one whose whole stat the project's memo of files remembers with
    other content is not read."""
    entries, places, stats = [], BundlePlaces(), file_stats(db)
    temp = temporary_sibling(to / ".raw-copy")  # (a fixed `.raw-copy.tmp`: two exports into one
    # folder at once copied into one file, and renamed each other's bytes under a checked sha256)
    for raw in raw_files(found, db):
        entry: dict[str, Any] = {"read_as": raw["path"], "oid": raw["oid"]}
        copied = _copy_checked(raw["file"], raw["oid"], temp, stats)
        if isinstance(copied, str):
            entry["missing"] = copied
        else:
            rel = places.place(raw_path(raw["path"]))
            (to / rel).parent.mkdir(parents=True, exist_ok=True)
            os.replace(temp, to / rel)
            entry |= {"path": rel.as_posix(), "restore_as": restore_path(raw["path"]),
                      "sha256": copied[0], "size": copied[1]}
        entries.append(entry)
    stats.save()  # (what was hashed: nothing, no write)
    return entries


def _copy_checked(file: str, oid: str, temp: Path, stats: FileStats) -> str | tuple[str, int]:
    """Copy the raw file `file` to `temp`, hashed as it is read: (the copy's sha256, its size)
    when it holds the content whose oid is `oid`, else why it is not copied (nothing left at
    `temp`)."""
    try:
        now_ns = time.time_ns()  # (before the stat: a write after it shows as a later mtime)
        st = os.stat(file) if file else None
    except FileNotFoundError:
        st = None
    except OSError as exc:
        raise InputFileError(f"cannot read the raw file {file}: {exc.strerror}; make it a readable "
                             "file, or export without raw files") from None
    if st is None or not stat.S_ISREG(st.st_mode):
        return f"not found at {file}"
    if known_oid(file, st, stats) not in (None, oid):  # (its stat vouches for other content: not read)
        return "changed since the call read it"
    sha, size = hashlib.sha256(), 0
    with open(temp, "wb") as out:

        def copy(block: bytes) -> None:
            nonlocal size
            sha.update(block)
            out.write(block)
            size += len(block)
        try:
            now = _content_oid(file, st.st_size, copy)
        except FileNotFoundError:
            now = None
        except OSError as exc:
            if exc.filename != file:  # (the bundle's side: a full disk)
                raise
            raise InputFileError(f"cannot read the raw file {file}: {exc.strerror}; make it a readable "
                                 "file, or export without raw files") from None
    if now != oid:
        temp.unlink()
        return "changed since the call read it" if os.path.isfile(file) else f"not found at {file}"
    remember(file, st, oid, now_ns, stats)
    return sha.hexdigest(), size


def _ref_entry(record: RefRecord) -> dict[str, Any]:
    return {"var": record.var, "addr": record.addr, "vkeys": record.vkeys, "version": record.version,
            "oid": record.oid, "kind": record.kind, "call": record.call, "params": record.recorded_params(),
            "summary": record.summary, "created_at": record.created_at}


def readable_name(record: RefRecord, schema_keys: list[str]) -> str:
    """`Var/subject=1/session=post`: schema keys in schema order, then version keys."""
    keys = [k for k in schema_keys if k in record.addr]
    parts = [_part("", record.var)]
    parts += [_part(f"{k}=", record.addr[k]) for k in keys]
    parts += [_part(f"{k}=", v) for k, v in sorted(record.vkeys.items())]
    return "/".join(parts) if len(parts) > 1 else f"{parts[0]}/value"


def _part(prefix: str, value: Any) -> str:
    """One path component, `prefix` + the value with unsafe characters as `_`; cut above
    `_MAX_PART` characters, with a hash of the whole value: file systems refuse names of more
    than 255 bytes, and an address value may have 1,024 characters."""
    text = prefix + _UNSAFE.sub("_", str(value))
    if len(text) <= _MAX_PART:
        return text
    return f"{text[:_MAX_PART - 17]}~{hash_bytes(str(value).encode())[:16]}"


def _unique(base: str, version: int, taken: set[str]) -> str:
    """`base`, or `base@v<version>` (then `-2`, `-3`...) when a value already has that name:
    addresses that read alike once sanitised (`a b`, `a/b`, `a_b`; `1` and `"1"`) or that differ
    only in case (one name on macOS and Windows) would otherwise overwrite each other's file."""
    name, n = base, 1
    while name.casefold() in taken:
        name, n = f"{base}@v{version}" + (f"-{n}" if n > 1 else ""), n + 1
    taken.add(name.casefold())
    return name


def _open_file(db: Database, record: RefRecord, to: Path, taken: set[str]
               ) -> tuple[str | None, tuple[str, int] | None]:
    """Write the value as a file anyone can open: its path (None for values no open format
    holds) and, for a single file written from memory, its (sha256, size). Stored bytes that
    already are an open format (NPY, bytes, Zarr chunks, Arrow row groups) are copied, never
    decoded whole: a value larger than memory is exported piece by piece."""
    base = _unique(readable_name(record, list(db.schema_keys)), record.version, taken)

    def dest(ext: str) -> Path:
        (to / base).parent.mkdir(parents=True, exist_ok=True)
        return to / (base + ext)

    obj = db.store.get(record.oid)
    if obj.kind != "json":
        ext = _extension(obj)
        return base + ext, _write_open(db, record.oid, obj, dest(ext), record.var)
    try:  # its arrays and tables are named, never read (a chunked one may be larger than memory)
        value = _plain(decode_json(obj.payload, _Child))
    except (TypeError, ValueError) as exc:
        raise _NoOpenFile(_why_not(exc)) from None
    held = list(_children(value))
    if not held:
        text = json.dumps(value, indent=1, allow_nan=False)
        return base + ".json", _write_payload(dest(".json"), text.encode("utf-8"))
    folder = dest(PARTS)
    folder.mkdir()
    names = {PARTS_VALUE}
    for holder, key, child, parts in held:
        stored = db.store.get(child.oid)
        name = _member_name(parts, _extension(stored), names)
        label = parts[-1] if isinstance(parts[-1], str) else record.var  # an unnamed Series' column
        _write_open(db, child.oid, stored, folder / name, label)
        holder[key] = {"$ref": name}
    (folder / PARTS_VALUE).write_text(json.dumps(value, indent=1, allow_nan=False))
    return base + PARTS, None


class _NoOpenFile(Exception):
    """A JSON value no open file holds (a complex number, bytes inside a dict or list): it is
    in objects/ only, and the manifest, README and a warning say why."""


def _why_not(exc: Exception) -> str:
    return (f"it holds a {exc} value, which JSON has no type for; the value is in objects/ only "
            "(`scistack import` restores it)")


class _Child:
    """An array or table held in a dict or list: its oid, not its value."""

    __slots__ = ("oid",)

    def __init__(self, oid: str) -> None:
        self.oid = oid


def _children(node: Any, parts: tuple = ()) -> Any:
    """(holder, key, child, key path) of each `_Child` in a plain dict or list."""
    items = node.items() if isinstance(node, dict) else enumerate(node) if isinstance(node, list) else ()
    for key, item in items:
        if isinstance(item, _Child):
            yield node, key, item, (*parts, key)
        else:
            yield from _children(item, (*parts, key))


def _member_name(parts: tuple, ext: str, names: set[str]) -> str:
    """A held value's file name in its `.parts` folder: its key path joined by `.` (`emg.npy`,
    `trials.0.npy`), sanitised as an address part is; `~2`, `~3`... when taken (ignoring case)."""
    stem = _part("", ".".join(str(p) for p in parts))
    if not stem.strip("."):  # (`..` would leave the folder)
        stem = "_" + stem
    name, n = stem + ext, 1
    while name.casefold() in names:
        n += 1
        name = f"{stem}~{n}{ext}"
    names.add(name.casefold())
    return name


def _extension(obj: StoredObject) -> str:
    """The open file (or folder) a non-json object is written as."""
    if obj.kind == "chunked":
        return ".zarr" if parse_manifest(obj.payload)["type"] == "array" else ".parquet"
    return {"npy": ".npy", "table": ".parquet"}.get(obj.kind, ".bin")  # an npy payload is an NPY 1.0 file


def _write_open(db: Database, oid: str, obj: StoredObject, path: Path, label: str
                ) -> tuple[str, int] | None:
    """Write an array, table or bytes object at `path` (named by `_extension`); its (sha256,
    size) when written from memory as one file. `label` names an unnamed Series' column."""
    tree = parse_manifest(obj.payload) if obj.kind == "chunked" else None
    if tree is not None and tree["type"] == "array":
        _write_zarr(db, tree, path)
        return None
    if obj.kind in ("table", "chunked"):
        _write_parquet(db, oid, obj.payload, tree, path, label)
        return None
    return _write_payload(path, obj.payload)


def _write_payload(path: Path, payload: Any) -> tuple[str, int]:
    """Write the bytes; their sha256 and size (the manifest's, without reading them back)."""
    data = payload if isinstance(payload, bytes) else memoryview(payload).cast("B")
    path.write_bytes(data)
    return hashlib.sha256(data).hexdigest(), len(data)


def _write_parquet(db: Database, oid: str, payload: Any, tree: dict[str, Any] | None, path: Path,
                   label: str) -> None:
    """A table (DataFrame, Series or Arrow) as Parquet with its stored schema metadata, so
    pandas reads back the frame as saved (a Series as a frame of one column, `_open_schema`);
    a chunked one a row group at a time."""
    import pyarrow as pa
    import pyarrow.parquet as pq  # pyarrow is imported on first use (scistack/lazy_import.py)

    from scistack.objects.chunked_table import TableChunks
    from scistack.objects.table import read_arrow

    if tree is None:
        table = read_arrow(payload)
        schema = _open_schema(table.schema, label)
        pq.write_table(table if schema is None else pa.Table.from_arrays(table.columns, schema=schema), path)
        return
    chunks = TableChunks(tree, Fetch(db.store), oid)
    schema = _open_schema(chunks.schema, label)
    with pq.ParquetWriter(path, schema or chunks.schema) as writer:
        for i in range(len(tree["chunks"])):
            part = chunks.group(i).cast(chunks.schema)
            writer.write_table(part if schema is None else pa.Table.from_arrays(part.columns, schema=schema))


def _open_schema(schema: Any, label: str) -> Any:
    """The schema a Series is exported with (None for any other table: as stored): its column
    (stored as `__series__`) named as pandas names it in `series.to_frame()` (an unnamed
    Series after `label`: its variable, or its key in a dict), so `pd.read_parquet(path)`
    gives a frame of that one column beside the Series' index. scistack's own metadata is
    dropped: import restores the Series from objects/."""
    import pandas as pd
    import pyarrow as pa

    from scistack.objects.table import series_name

    meta = dict(schema.metadata or {})
    if meta.get(b"scistack") != b"series" or b"pandas" not in meta or "__series__" not in schema.names:
        return None
    name = series_name(meta)
    name = label if name is None else name
    like = json.loads(pa.Schema.from_pandas(pd.DataFrame({name: [0]})).metadata[b"pandas"])
    pandas_meta = json.loads(meta[b"pandas"])
    column = like["columns"][0]
    names = list(schema.names)
    for k, index in enumerate(pandas_meta.get("index_columns", [])):  # an index named as the Series
        if index == column["field_name"]:
            fresh = next(f"__index_level_{n}__" for n in range(k, k + len(names) + 1)
                         if f"__index_level_{n}__" not in names)
            pandas_meta["index_columns"][k] = names[names.index(index)] = fresh
            next(c for c in pandas_meta["columns"] if c["field_name"] == index)["field_name"] = fresh
    entry = next(c for c in pandas_meta["columns"] if c["field_name"] == "__series__")
    entry |= {"name": column["name"], "field_name": column["field_name"]}
    pandas_meta["column_indexes"] = like["column_indexes"]
    names[names.index("__series__")] = column["field_name"]
    for key in (b"scistack", b"scistack.series_name"):
        meta.pop(key, None)
    meta[b"pandas"] = json.dumps(pandas_meta, allow_nan=True).encode()
    return pa.schema([field.with_name(n) for field, n in zip(schema, names)], metadata=meta)


def _write_zarr(db: Database, tree: dict[str, Any], folder: Path) -> None:
    """A chunked array as a Zarr v3 folder: its manifest already holds `zarr.json`, and each
    chunk's payload is the bytes Zarr's `bytes` codec reads (docs/format.md §1.6): copied, never
    decoded, so an array larger than memory is exported chunk by chunk."""
    manifest = array_manifest(tree)
    folder.mkdir(parents=True)
    (folder / "zarr.json").write_text(json.dumps(tree["zarr"], indent=1))
    for index in manifest.indices():
        chunk = folder.joinpath("c", *map(str, index))
        chunk.parent.mkdir(parents=True, exist_ok=True)
        _write_payload(chunk, db.store.get(manifest.oid_at(index)).payload)


def _plain(value: Any) -> Any:
    """The value as strict JSON data (`strict_json_data`: a NaN or infinity is null; the exact
    value stays in objects/), a held array or table (`_Child`) as it is; TypeError for
    anything else, or a dict with keys other than strings."""
    return strict_json_data(value, _held, string_keys=True)


def _held(value: Any) -> Any:
    if isinstance(value, _Child):
        return value
    raise TypeError(type(value).__name__)
