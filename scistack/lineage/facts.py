"""What the index keeps of a call record to judge staleness set-at-a-time (`Judging.learn_calls`):
its function, whether it is simple (plain inputs, no file read, one identity) and where each
plain input came from.

A report learns these once ever per record, parsing it (~0.2 ms: 20 s for the 100k calls of
one big run). The process that writes a record has it in hand, so the facts travel with its
cache entry (`_DatabaseCache.record` -> `Index.put_call`) and the first report after a run
parses nothing. Records written elsewhere (MATLAB, another process that failed to keep them)
are still learned by the report.
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Any

from scistack.index import key_of
from scistack.lineage.filecheck import files_of
from scistack.objects.canonical_json import from_tree

# (module, function, identity, simple, [(input name, var, addr key, vkeys key, oid)],
#  [variables gathered by an aggregated or merged input])
CallFacts = tuple[str, str, str, bool, list[tuple[str, str, str, str, str]], list[str]]


def call_facts(record: Any, schema_keys: list[str], *, reads_files: bool) -> CallFacts:
    """The facts of a call record (a `records.CallRecord`); `reads_files`: whether it
    recorded files its call read (those are checked per record)."""
    fn = record.function
    simple = not reads_files and fn.code_identity is None  # (a partial or bound method: two identities)
    rows, gathers = [], set()
    for name, item in sorted(record.arguments.items()):
        if item.var is None:
            simple = simple and "path" not in item.extra  # a raw file is judged per record
            continue
        if item.merge or item.members:
            simple = False
            gathers |= {part.var for part in item.merge} if item.merge else {item.var}
            continue
        addr = from_tree(item.addr, _oid) or {}
        rows.append((name, item.var, key_of({k: v for k, v in addr.items() if k in schema_keys}),
                     key_of({k: v for k, v in addr.items() if k not in schema_keys}), item.oid))
    return fn.module, fn.name, fn.identity, simple, rows, sorted(v for v in gathers if v)


def _oid(oid: str) -> str:
    return oid


_WRITTEN: OrderedDict[str, Any] = OrderedDict()  # call oid -> record, just written here
_MAX_WRITTEN = 256  # (its cache entry follows at once: a few are ever waiting)


def note_written(call_oid: str, record: Any) -> None:
    """A call record this process just stored: its cache entry takes its facts along."""
    _WRITTEN[call_oid] = record
    while len(_WRITTEN) > _MAX_WRITTEN:
        _WRITTEN.popitem(last=False)


def written_facts(call_oid: str, schema_keys: list[str]) -> CallFacts | None:
    """The facts of a record `note_written` was told of (then forgotten), else None."""
    record = _WRITTEN.pop(call_oid, None)
    if record is None:
        return None
    return call_facts(record, schema_keys, reads_files=bool(files_of(record)))
