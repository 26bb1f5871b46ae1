"""Values as open files a person can use without scistack, named by variable and address.

`Var/subject=1/session=post.npy`: arrays as .npy, tables as Parquet, scalars, strings,
dicts and lists as JSON, bytes as .bin, chunked arrays as a Zarr v3 directory (the manifest's
`zarr` member is its `zarr.json`, each chunk payload its chunk file: the stored layout is
already Zarr's, so no library is needed and nothing is held whole). An older version of the
same address in the bundle gets `.v<N>` before the extension.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from scistack.database import Database
from scistack.index import RefRecord
from scistack.objects.chunked import array_manifest, parse_manifest


@dataclass(frozen=True)
class OpenFile:
    """One value written as an open file: where, what, and how to check it."""

    path: str           # relative to the bundle, '/'-separated
    oid: str
    sha256: str         # of the file (of zarr.json for a Zarr directory)
    size: int           # bytes (all files of a Zarr directory)
    encoding: str       # a media type
    record: RefRecord


_MEDIA = {".npy": "application/x-npy", ".parquet": "application/vnd.apache.parquet",
          ".json": "application/json", ".bin": "application/octet-stream", ".zarr": "application/x-zarr"}


def write_open_files(db: Database, records: list[RefRecord], root: Path) -> list[OpenFile]:
    """Write every record's value under `root`; the newest version of an address gets the plain name."""
    newest: dict[tuple[str, str, str], int] = {}
    for r in records:
        slot = (r.var, r.addr_key, r.vkeys_key)
        newest[slot] = max(newest.get(slot, 0), r.version)
    written = []
    for r in sorted(records, key=lambda r: (r.var, r.addr_key, r.vkeys_key, r.version)):
        stem = _stem(db, r) + ("" if newest[(r.var, r.addr_key, r.vkeys_key)] == r.version else f".v{r.version}")
        written.append(_write_value(db, r, root, stem))
    return written


def _stem(db: Database, r: RefRecord) -> str:
    parts = [_safe(r.var)]
    parts += [f"{_safe(k)}={_safe(str(r.addr[k]))}" for k in db.schema_keys if k in r.addr]
    parts += [f"{_safe(k)}={_safe(str(v))}" for k, v in sorted(r.vkeys.items())]
    if len(parts) == 1:
        parts.append("value")
    return "/".join(parts)


def _safe(text: str) -> str:
    """A path part: no separators, nothing hidden, readable."""
    cleaned = re.sub(r"[^A-Za-z0-9._=+-]", "_", text).lstrip(".")
    return cleaned or "_"


def _write_value(db: Database, r: RefRecord, root: Path, stem: str) -> OpenFile:
    obj = db.store.get(r.oid)
    if obj.kind == "chunked" and parse_manifest(obj.payload)["type"] == "array":
        return _write_zarr(db, r, obj.payload, root, stem + ".zarr")
    value = db.store.get_value(r.oid)
    if obj.kind == "npy" or isinstance(value, np.ndarray):
        path, ext = root / f"{stem}.npy", ".npy"
        path.parent.mkdir(parents=True, exist_ok=True)
        np.save(path, np.asarray(value), allow_pickle=False)
    elif obj.kind in ("table", "chunked"):
        import pyarrow as pa
        import pyarrow.parquet as pq

        path, ext = root / f"{stem}.parquet", ".parquet"
        path.parent.mkdir(parents=True, exist_ok=True)
        table = value if isinstance(value, pa.Table) else pa.Table.from_pandas(
            value.to_frame() if hasattr(value, "to_frame") and not hasattr(value, "columns") else value)
        pq.write_table(table, path)
    elif obj.kind == "bytes":
        path, ext = root / f"{stem}.bin", ".bin"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(bytes(value))
    else:
        path, ext = root / f"{stem}.json", ".json"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(_plain(value), indent=1, sort_keys=True) + "\n")
    data = path.read_bytes()
    return OpenFile(path.relative_to(root).as_posix(), r.oid, hashlib.sha256(data).hexdigest(), len(data),
                    _MEDIA[ext], r)


def _write_zarr(db: Database, r: RefRecord, payload: Any, root: Path, name: str) -> OpenFile:
    """A Zarr v3 array directory: zarr.json, then `c/i/j` per chunk (raw little-endian)."""
    tree = parse_manifest(payload)
    manifest = array_manifest(tree)
    folder = root / name
    folder.mkdir(parents=True, exist_ok=True)
    meta = json.dumps(tree["zarr"], indent=1, sort_keys=True).encode()
    (folder / "zarr.json").write_bytes(meta)
    size = len(meta)
    for index in manifest.indices():
        chunk = folder.joinpath("c", *map(str, index))
        chunk.parent.mkdir(parents=True, exist_ok=True)
        data = db.store.get(manifest.oid_at(index)).payload
        chunk.write_bytes(memoryview(data))
        size += len(data)
    return OpenFile(f"{folder.relative_to(root).as_posix()}", r.oid, hashlib.sha256(meta).hexdigest(), size,
                    _MEDIA[".zarr"], r)


def _plain(value: Any) -> Any:
    """A decoded value as plain JSON (arrays as nested lists, numpy scalars as numbers)."""
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, np.ndarray):
        return _plain(value.tolist())
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, float) and not np.isfinite(value):
        return str(value)
    if isinstance(value, (str, int, float, bool)) or value is None:
        return value
    if hasattr(value, "to_dict"):  # a small DataFrame inside a dict
        return _plain(value.to_dict(orient="list"))
    return repr(value)


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while block := handle.read(1 << 20):
            digest.update(block)
    return digest.hexdigest()
