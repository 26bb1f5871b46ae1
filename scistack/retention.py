"""Retention: which old versions a rule drops (`scistack gc --keep-versions N --older-than WHEN`).

Versions are grouped by (variable, address, version keys): each variant has its own history.
The newest version of a group is never dropped (it is what `load` returns). With both rules a
version is dropped only when both allow it (outside the newest N *and* older than the time),
so either rule alone can only keep more. Objects of a dropped version that a kept value's
lineage still reaches stay in the store (gc walks lineage); only the name goes.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime, timezone
from typing import Any

from scistack.errors import RetentionError
from scistack.index import RefRecord


def retention_plan(
    records: Iterable[RefRecord], *, keep_versions: int | None = None, older_than: float | None = None
) -> list[RefRecord]:
    """The records a retention rule drops (never the newest of a variant).

    `keep_versions` keeps the newest N versions of each variant; `older_than` (a POSIX time)
    keeps versions created at or after it.
    """
    if keep_versions is None and older_than is None:
        return []
    if keep_versions is not None and (isinstance(keep_versions, bool) or not isinstance(keep_versions, int)
                                      or keep_versions < 1):
        raise RetentionError(
            f"keep_versions must be a whole number >= 1 (the newest version is always kept), "
            f"not {keep_versions!r}")
    cutoff = None if older_than is None else _iso(older_than)
    variants: dict[tuple[str, str, str], list[RefRecord]] = {}
    for record in records:
        variants.setdefault((record.var, record.addr_key, record.vkeys_key), []).append(record)
    dropped = []
    for versions in variants.values():
        versions.sort(key=lambda r: r.version, reverse=True)
        for rank, record in enumerate(versions[1:], start=1):
            beyond = keep_versions is None or rank >= keep_versions
            old = cutoff is None or record.created_at < cutoff
            if beyond and old:
                dropped.append(record)
    return sorted(dropped, key=lambda r: (r.var, r.addr_key, r.vkeys_key, r.version))


def describe(record: RefRecord) -> dict[str, Any]:
    """A dropped version as the preview shows it."""
    return {"var": record.var, "addr": record.addr, "vkeys": record.vkeys, "version": record.version,
            "created_at": record.created_at}


def _iso(posix: float) -> str:
    return datetime.fromtimestamp(posix, timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
