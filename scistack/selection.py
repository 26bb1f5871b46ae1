"""What a user's metadata names: `load(subject=1, low_hz=20)` split into address, version keys
and lineage parameters, matched against the index, with errors that show what does exist.

One implementation, used by `BaseVariable` and by the reporting commands.
"""

from __future__ import annotations

from typing import Any

from scistack.address import plain
from scistack.database import Database
from scistack.errors import AmbiguousVersionError, VariableNotFoundError
from scistack.index import RefRecord
from scistack.where import matching_rows, record_columns


def select_records(db: Database, var: str, metadata: dict[str, Any], *, version: int | None = None,
                   all_versions: bool = False, where: str | tuple | None = None) -> list[RefRecord]:
    """Records of `var` matching `metadata` (a list value means any of) and the SQL predicate
    `where`; unless `all_versions` (or a `version`), the newest matching one per address and
    version keys. Raises with what exists when nothing matches."""
    vkey_names, param_names = db.index.vkey_names(var), db.index.param_names(var)
    addr, vkeys, params, unknown = {}, {}, {}, []
    for key, value in metadata.items():
        value = plain(value)
        if key in db.schema_keys:
            addr[key] = value
        elif key in vkey_names:
            vkeys[key] = value
        elif key in param_names or any(p.rsplit(".", 1)[-1] == key for p in param_names):
            params[key] = value
        else:
            unknown.append(key)
    if unknown:
        raise VariableNotFoundError(_unknown_keys_message(db, var, unknown, vkey_names, param_names))
    every = all_versions or version is not None or where is not None
    records = db.index.select(var, addr, vkeys, params, all_versions=every)
    if version is not None:
        records = [r for r in records if r.version == version]
    if where is not None:
        records = _where(db, records, where, newest=not (all_versions or version is not None))
    if not records:
        raise VariableNotFoundError(_nearby_message(db, var, metadata, version))
    return records


def _where(db: Database, records: list[RefRecord], where: str | tuple, *, newest: bool) -> list[RefRecord]:
    """Records for which the predicate holds; with `newest`, the newest of them per address
    and version keys (as `load(low_hz=20)` picks the newest version made with low_hz=20)."""
    if not records:
        return records
    columns = record_columns(db.schema_keys, records, db.store, fn=_names_fn(where))
    kept = [records[i] for i in matching_rows(columns, where, len(records))]
    if not newest:
        return kept
    best: dict[tuple[str, str], RefRecord] = {}
    for r in kept:
        key = (r.addr_key, r.vkeys_key)
        if key not in best or r.version > best[key].version:
            best[key] = r
    return list(best.values())


def _names_fn(where: str | tuple) -> bool:
    """Reading call records for `fn` costs a read per call: only when the predicate uses it."""
    text = where[0] if isinstance(where, tuple) else where
    return isinstance(text, str) and "fn" in text.lower()


def _unknown_keys_message(db: Database, var: str, unknown: list[str], vkeys: set, params: set) -> str:
    return (
        f"{var} has no metadata key {', '.join(map(repr, unknown))}: its schema keys are "
        f"{db.schema_keys}, version keys {sorted(vkeys) or 'none'}, lineage parameters "
        f"{sorted(params) or 'none'}"
    )


_HINT_SAMPLE = 1000


def _nearby_message(db: Database, var: str, metadata: dict[str, Any], version: int | None) -> str:
    query = ", ".join(f"{k}={v!r}" for k, v in metadata.items())
    if version is not None:
        query += f"{', ' if query else ''}version={version}"
    total, records = db.index.count(var), db.index.newest(var, _HINT_SAMPLE)  # bounded: an error path
    if not records:
        others = db.index.variables()
        return (f"{var} has no saved records (query: {query or 'everything'}); variables with records: "
                f"{', '.join(others) or 'none yet'}")
    hints = []
    for key in db.schema_keys:
        values = sorted({repr(r.addr[key]) for r in records if key in r.addr})
        if values:
            shown = ", ".join(values[:8]) + (", …" if len(values) > 8 else "")
            hints.append(f"{key} in {{{shown}}}")
    if version is not None:
        hints.append(f"versions {sorted({r.version for r in records})[:10]}")
    among = "" if total <= len(records) else f" (among its {len(records)} newest)"
    return f"{var} has no record matching {query}; it has {total} records with{among} " + "; ".join(hints)


def ambiguous_error(var: str, records: list[RefRecord]) -> AmbiguousVersionError:
    variants = "; ".join(f"{r.vkeys or '(no version keys)'} -> version {r.version}" for r in records)
    example = next((r.vkeys for r in records if r.vkeys), {})
    pick = ", ".join(f"{k}={v!r}" for k, v in example.items())
    return AmbiguousVersionError(
        f"{var} has {len(records)} variants at {records[0].addr}: {variants}. Pick one with its "
        f"version keys (e.g. load(..., {pick})) or version=N"
    )


def _sort_key(db: Database, record: RefRecord) -> tuple:
    parts = []
    for key in db.schema_keys:
        value = record.addr.get(key)
        parts.append((2, "") if value is None else ((1, value) if isinstance(value, str) else (0, value)))
    return (*parts, record.vkeys_key, record.version)


def sort_records(db: Database, records: list[RefRecord]) -> list[RefRecord]:
    return sorted(records, key=lambda r: _sort_key(db, r))
