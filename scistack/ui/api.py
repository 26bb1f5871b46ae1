"""The JSON the page reads: each answer is one or two calls of the report functions
(`status_cells`, `pipeline_graph`, `why_value`, `log_entries`, `run_history`, ...), reshaped.
Nothing here judges a status or explains one: the report layer does, for the CLI too.

Addresses travel as JSON objects (`{"subject": 1, "session": "pre"}`) so that `1` and `"1"`
stay different values, as they are in the project.
"""

from __future__ import annotations

import json
import time
from typing import Any

from scistack.database import Database
from scistack.errors import WebViewError
from scistack.index import RefRecord
from scistack.report.json_ready import json_ready
from scistack.report.history import log_entries, read_call, select, shown_value
from scistack.report.pipeline import node_grid, pipeline_graph
from scistack.report.preview import preview
from scistack.report.runs import run_history, run_items
from scistack.report.status import STATUSES, journal_warning, why_value
from scistack.ui.layout import NODE_H, NODE_W, layout


def project(db: Database) -> dict[str, Any]:
    """The header's facts, with `status`'s warning of unreadable journal lines (or None)."""
    return {"name": db.path.name, "root": str(db.root), "schema_keys": db.schema_keys,
            "generation": db.index.generation(), "warning": journal_warning(db)}


def graph(db: Database) -> dict[str, Any]:
    """Nodes with state, counts and position; edges; the size of the drawing."""
    g = pipeline_graph(db)
    pos = layout([n.id for n in g.nodes], g.edges)
    nodes = [{**json_ready(n), "x": pos[n.id][0], "y": pos[n.id][1]} for n in g.nodes]
    width = max((x for x, _ in pos.values()), default=0) + NODE_W
    height = max((y for _, y in pos.values()), default=0) + NODE_H
    return {"nodes": nodes, "edges": [list(e) for e in g.edges], "width": width, "height": height,
            "node_w": NODE_W, "node_h": NODE_H}


GRID_PAGE = 500  # addresses a page of the grid holds: a browser draws a few hundred rows, not 300,000
CACHE_SECONDS = 15.0  # what is kept while the journal has not grown is kept this long at most: a
# script's function is judged from its file, which can change without a save


class Kept:
    """Answers kept while the journal has not grown (its generation), for at most
    CACHE_SECONDS; at most `size` of them (all dropped at once when full)."""

    def __init__(self, size: int) -> None:
        self.size = size
        self._items: dict[Any, tuple[int, float, Any]] = {}

    def get(self, key: Any, generation: int, make: Any) -> Any:
        found = self._items.get(key)
        if found is not None and found[0] == generation and time.monotonic() - found[1] < CACHE_SECONDS:
            return found[2]
        value = make()
        if len(self._items) >= self.size:
            self._items.clear()
        self._items[key] = (generation, time.monotonic(), value)
        return value


_grids = Kept(8)  # a node's judged grid, for its pages and filters
_runs = Kept(4)  # a run's combinations, for their pages
RUN_PAGE = 500  # combinations a page of a run holds
FAILURES_SHOWN = 20  # failures a run's page shows with their tracebacks (all are in its table)


def grid(db: Database, node: str, *, offset: int = 0, limit: int = GRID_PAGE,
         statuses: list[str] | None = None, text: str = "") -> dict[str, Any]:
    """One page of the status grid of a variable (`var:X`) or of a function's step (`fn:f`: its
    own cells, `pipeline.node_grid`, which its node counts):
    the addresses (in order) with a cell in one of `statuses` whose text (`subject=1,
    session="pre"`) holds `text` (case and quotes ignored), from `offset`, at most `limit`.
    `total` is every address, `matching` those the filters keep; `counts` are the whole grid's.
    At 300k addresses the whole grid was 46 MB of JSON that the page drew as one table."""
    kind, _, name = node.partition(":")
    if kind not in ("fn", "var"):
        raise WebViewError(f"node {node!r} must be var:NAME or fn:NAME")
    wanted = set(STATUSES if statuses is None else statuses)
    if not wanted <= set(STATUSES):
        raise WebViewError(f"statuses {sorted(wanted - set(STATUSES))} are not among {list(STATUSES)}")
    if offset < 0 or limit < 1:
        raise WebViewError(f"offset {offset} and limit {limit} must be >= 0 and >= 1")
    g, counts, keys, texts = _judged(db, node)
    keep: Any = range(len(g.addresses))  # every row holds a cell of one of the variables
    if wanted != set(STATUSES):
        keep = [i for i in keep if any(c is not None and c.status in wanted for c in g.grid[i])]
    needle = _unquoted(text.strip())
    if needle:
        keep = [i for i in keep if needle in texts()[i]]
    page = keep[offset:offset + limit]
    rows = [[None if c is None else {"status": c.status, "version": c.version, "reason": c.reason,
                                     "addr": c.addr, "run": c.run} for c in g.grid[i]] for i in page]
    return {"node": node, "variables": g.variables, "keys": keys, "addresses": [g.addresses[i] for i in page],
            "rows": rows, "counts": counts, "empty": g.empty, "total": len(g.addresses), "matching": len(keep),
            "offset": offset, "limit": limit}


def _judged(db: Database, node: str) -> tuple[Any, dict, list[str], Any]:
    """The grid of a node (`node_grid`), its counts, the schema keys its addresses use, and a
    function giving their search texts (made on the first search), kept (`_grids`): paging or
    filtering a grid of many addresses does not judge it again (nor draw the graph again to
    find a function's step)."""
    def judge() -> tuple[Any, dict, list[str], Any]:
        judged = node_grid(db, node)
        if judged is None:
            raise WebViewError(f"no function {node.partition(':')[2]!r} in this project's lineage or runs")
        made: list[list[str]] = []

        def texts() -> list[str]:
            if not made:
                made.append([_search_text(db.schema_keys, addr) for addr in judged.addresses])
            return made[0]

        keys = [k for k in db.schema_keys if any(k in a for a in judged.addresses)]
        return judged, judged.counts(), keys, texts

    return _grids.get((str(db.path), id(db), node), db.index.generation(), judge)


def _search_text(schema_keys: list[str], addr: dict[str, Any]) -> str:
    """An address as the page writes it (`subject=1, session="pre"`: schema keys in order,
    then version keys), lower case and without quotes: what a filter is looked for in."""
    keys = [k for k in schema_keys if k in addr] + [k for k in addr if k not in schema_keys]
    return _unquoted(", ".join(f"{k}={_text_of(addr[k])}" for k in keys))


def _unquoted(text: str) -> str:
    """Lower case, without double or single quotes: `session="pre"` as the page writes it
    and `session='pre'` as the CLI's reports print it are one filter."""
    return text.lower().replace('"', "").replace("'", "")


def _text_of(value: Any) -> str:
    """An address value as the page writes it (`str` of an int is its JSON, 5x quicker)."""
    kind = type(value)
    return value if kind is str else str(value) if kind is int else json.dumps(value)


def value(db: Database, var: str, addr: dict[str, Any], version: int | None = None) -> dict[str, Any]:
    """One value: metadata, versions, preview, provenance and (if current) why; or, when the
    address names several version-key variants, the list of them."""
    records = select(db, var, version=version, **addr)
    if len(records) != 1:
        return {"var": var, "addr": addr, "variants": [_record(db, r) for r in records]}
    record = records[0]
    data, described = shown_value(db, record.oid, db.store.get(record.oid))  # (never gigabytes)
    where = _where(db, record)
    versions = log_entries(db, var, **where)
    current = any(e.current and e.version == record.version for e in versions)
    out = {
        "var": var,
        "addr": addr,
        "record": _record(db, record),
        "current": current,
        "describe": described,
        "preview": preview(data),
        "versions": [{"version": e.version, "oid": e.oid, "created_at": e.created_at,
                      "current": e.current, "summary": e.summary,
                      "function": e.call.function if e.call else None} for e in versions],
        "provenance": _provenance(db, record.call) if record.call else None,
        "why": json_ready(why_value(db, var, **where)) if current else None,
    }
    return out


def _record(db: Database, record: RefRecord) -> dict[str, Any]:
    return {"addr": record.addr, "vkeys": record.vkeys, "where": _where(db, record), "version": record.version,
            "oid": record.oid, "kind": record.kind, "summary": record.summary, "created_at": record.created_at}


def _where(db: Database, record: RefRecord) -> dict[str, Any]:
    """The address that selects this record's variant alone: its version keys, and None for
    each version key of the variable it was saved without (`note=None`, as `load` takes it;
    its bare address names every variant)."""
    unkeyed = {k: None for k in db.index.vkey_names(record.var) if k not in record.vkeys}
    return {**record.addr, **unkeyed, **record.vkeys}


def _provenance(db: Database, call_oid: str) -> dict[str, Any]:
    try:
        call = read_call(db, call_oid)
    except LookupError as exc:
        return {"missing": str(exc)}
    inputs = [{"name": i.name, "var": i.var, "oid": i.oid, "addr": i.addr,
               "file": i.raw_file[0] if i.raw_file else None,  # a PathInput: the file it read
               "members": len(i.members), "merge": [m.get("var") for m in i.merge]} for i in call.inputs]
    code = None
    if call.code:
        try:
            code = bytes(db.store.get(call.code).payload).decode("utf-8", "replace")
        except LookupError:
            code = None
    return {"call": call_oid, "function": call.function, "module": call.module, "code": code,
            "constants": call.constants, "inputs": inputs, "git_commit": call.git_commit,
            "git_dirty": call.git_dirty, "python": call.python, "runtime": call.runtime, "host": call.host,
            "started": call.started, "duration": call.duration}


def runs(db: Database) -> dict[str, Any]:
    return {"runs": json_ready(run_history(db))}


def run(db: Database, run_id: str, *, offset: int = 0, limit: int = RUN_PAGE) -> dict[str, Any]:
    """A run: its summary, its first `FAILURES_SHOWN` failures with their tracebacks, and a
    page of its combinations (failures first; no tracebacks). A run of 100k combinations
    was sent whole: 13 MB, and a table of 100k rows for the browser to draw."""
    if offset < 0 or limit < 1:
        raise WebViewError(f"offset {offset} and limit {limit} must be >= 0 and >= 1")
    summary, items, failed = _runs.get((str(db.path), id(db), run_id), db.index.generation(),
                                       lambda: _run_items(db, run_id))
    page = [{"combo": i.combo, "status": i.status, "duration": i.duration, "error": i.error}
            for i in items[offset:offset + limit]]
    return {"run": json_ready(summary), "failures": json_ready(items[:min(failed, FAILURES_SHOWN)]),
            "failed": failed, "items": json_ready(page), "total": len(items), "offset": offset, "limit": limit}


def _run_items(db: Database, run_id: str) -> tuple[Any, list[Any], int]:
    summary, items = run_items(db, run_id)  # (failures first)
    return summary, items, sum(1 for i in items if i.status == "failed")


def parse_addr(text: str | None) -> dict[str, Any]:
    """An address from the page: a JSON object of scalar values (null: a version key the
    variant was saved without, as `load(note=None)`)."""
    if not text:
        return {}
    try:
        addr = json.loads(text)
    except ValueError:
        addr = None
    if not isinstance(addr, dict) or not all(
        v is None or isinstance(v, (str, int, float, bool)) for v in addr.values()
    ):
        raise WebViewError(f"address {text[:80]!r} must be a JSON object of scalars, like "
                           '{"subject": 1, "session": "pre"}')
    return addr


def dumps(data: Any) -> bytes:
    return json.dumps(json_ready(data), allow_nan=False).encode()
