"""`scistack checkout VAR --to DIR`: write stored files back to disk.

A value a function wrote through `PathOutput` is stored as `bytes`; its call record keeps the
path the template gave (relative to the template's root), so checkout re-creates that layout
under DIR. Any other `bytes` value is written as `<key>=<value>/.../<VAR>.bin` (its address).
Existing files with other content are never overwritten silently: checkout refuses them.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from scistack._atomic import write_atomic
from scistack.database import Database
from scistack.errors import InputFileError, InvalidMetadataError
from scistack.index import RefRecord
from scistack.records import read_call
from scistack.selection import select_records


def checkout(db: Database, var: str, to: str | os.PathLike, **address: Any) -> list[str]:
    """Write the current `bytes` values of `var` matching `address` under `to`; the paths written."""
    records = select_records(db, var, address)
    wrong = [r for r in records if r.kind != "bytes"]
    if wrong:
        raise InvalidMetadataError(
            f"{var} at {wrong[0].addr} holds a {wrong[0].kind} value, not a file (bytes); checkout "
            "writes files saved through PathOutput or as bytes. Export tables with to_csv/to_parquet")
    root = Path(to).resolve()
    planned = [(root / _relative(db, var, r), r) for r in records]
    for path, record in planned:
        if path.exists() and path.read_bytes() != db.store.get_value(record.oid):
            raise InputFileError(f"{path} exists with other content; checkout to an empty folder, "
                                 "or remove the file first")
    written = []
    for path, record in planned:
        path.parent.mkdir(parents=True, exist_ok=True)
        # (`write_atomic`: a fixed `<name>.scistack-tmp` had two checkouts into one folder at
        # once rename each other's half-written files; unsynced: the bytes are safe in the store)
        write_atomic(path, db.store.get_value(record.oid), durable=False)
        written.append(str(path))
    return written


def _relative(db: Database, var: str, record: RefRecord) -> str:
    """Where the file goes under the checkout folder: the path it was written to, else its address."""
    if record.call:
        call = read_call(db.store, record.call)
        for i in call.inputs.values():
            position = i.extra.get("output")
            if ("writes" in i.extra and isinstance(position, int) and position < len(call.outputs)
                    and call.outputs[position] == record.oid):
                rel = os.path.normpath(str(i.extra["writes"]))
                if not os.path.isabs(rel) and not rel.startswith(".."):
                    return rel
    parts = [f"{k}={record.addr[k]}" for k in db.schema_keys if k in record.addr]
    parts += [f"{k}={v}" for k, v in sorted(record.vkeys.items())]
    return os.path.join(*parts, f"{var}.bin")
