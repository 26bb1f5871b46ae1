"""Put lines DuckDB reads itself, so that the sync's Python does not parse most of the journal.

A sync spent ~0.55 s of Python per 100k put lines parsing them (orjson), checking them and
building the refs columns from the dicts, while DuckDB's thread mostly waited. A put line as
scistack writes it is now handed to DuckDB as text: DuckDB parses it and inserts the ref
(~0.15 s per 100k, on the writer thread, both cores). Python reads back only what the next
steps need: the oids to inline, the calls, the variables.

DuckDB takes a line only when what it reads is provably what Python would:
- the line matches `_PUT_LINE`, a put exactly as `RefRecord.to_entry` is written (canonical
  JSON: these keys in this order, each once; printable ASCII, so no escape; an int version;
  flat address, version keys and parameters of scalar values), and no 19-digit number is in
  its slice (`maybe_big_int`). Its fields then have the types `entry_problem` asks for;
- the refs table's texts are those Python writes (`key_of`): each distinct key list of the
  addresses is sorted and without a repeat (DuckDB writes an object's keys in the line's
  order), and each distinct version-key and parameter text is its own `key_of` (a float's
  digits). A few distinct texts are checked, not every line.
Every other line (deletes, calls, runs, other writers' lines, escapes) is parsed in Python as
before, in order; the puts DuckDB took are a set (the order of refs rows means nothing).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np

from scistack.index.journal import loads_line
from scistack.index.state import key_of
from scistack.lazy_import import lazy_module

duckdb = lazy_module("duckdb", globals(), "duckdb")
pa = lazy_module("pyarrow", globals(), "pa")

NEW_REFS = "_simple_refs"  # the temp table of the refs of the slice in hand (for the shapes)

_STR = rb'"[\x20\x21\x23-\x5b\x5d-\x7e]*"'  # printable ASCII but a quote or a backslash
_INT = rb"(?:0|-?[1-9][0-9]*)"
_NUM = rb"-?(?:0|[1-9][0-9]*)(?:\.[0-9]+)?(?:[eE][-+]?[0-9]+)?"
_OR_NULL = b"(?:null|" + _STR + b")"


def _flat(value: bytes) -> bytes:
    return rb"\{(?:" + _STR + b":" + value + b"(?:," + _STR + b":" + value + rb")*)?\}"


_ADDR = _flat(b"(?:" + _STR + b"|" + _INT + b"|true|false|null)")  # (a float: Python decides)
_MAP = _flat(b"(?:" + _STR + b"|" + _NUM + b"|true|false|null)")
_PUT_LINE = re.compile(  # (groups: the call, oid and variable, as Python would read them)
    rb'\{"addr":' + _ADDR + rb',"call":(?:null|"(' + _STR[1:-1] + rb')"),"kind":' + _STR + rb',"oid":"(' + _STR[1:-1]
    + rb')","op":"put","params":' + _MAP + rb',"summary":' + _OR_NULL + rb',"t":' + _STR + rb',"var":"('
    + _STR[1:-1] + rb')","version":' + _INT + rb',"vkeys":' + _MAP + rb"\}")
_PUT_LINES = re.compile(b"(?m)^" + _PUT_LINE.pattern + b"$")  # (no pattern spans a newline)
_TRANSFORM = ('{"var":"VARCHAR","addr":"JSON","vkeys":"JSON","version":"BIGINT","oid":"VARCHAR",'
              '"kind":"VARCHAR","call":"VARCHAR","params":"JSON","summary":"VARCHAR","t":"VARCHAR"}')
_BATCH = 4096  # lines per Arrow batch: DuckDB parses batches on both cores


@dataclass(frozen=True)
class Slice:
    """A journal slice split: the lines DuckDB may read (`candidates`: line number and text,
    or None) with the variables, oids and calls they name, and the numbers of the other lines,
    which Python parses (`may_be_big`: the slice holds a 19-digit run, so each of those lines
    is checked for one)."""

    lines: list[bytes]
    candidates: pa.Table | None
    others: list[int]
    may_be_big: bool
    variables: frozenset[str] = frozenset()
    oids: tuple[str, ...] = ()  # each once, as the lines name them first
    calls: tuple[str, ...] = ()


def split(data: bytes, may_be_big: bool) -> Slice:
    """The lines of `data` (complete lines, each ending in a newline) and which of them
    DuckDB may read."""
    lines = data.split(b"\n")[:-1]
    if may_be_big or not lines:
        return Slice(lines, None, list(range(len(lines))), may_be_big)
    named = _PUT_LINES.findall(data)  # (call, oid, variable) of each line that fits, in one pass
    if len(named) == len(lines):  # (the usual slice: every line a put as scistack writes it)
        ok = np.ones(len(lines), bool)
    else:
        fits = _PUT_LINE.fullmatch
        found = [fits(line) for line in lines]
        ok = np.fromiter((m is not None for m in found), bool, len(lines))
        named = [m.groups() for m in found if m is not None]
    taken = np.flatnonzero(ok)
    if not len(taken):
        return Slice(lines, None, list(range(len(lines))), False)
    calls, oids, variables = zip(*named)
    # every line as one Arrow string (its newline included: JSON allows it), no Python object each
    ends = np.flatnonzero(np.frombuffer(data, np.uint8) == 10) + 1
    offsets = np.concatenate(([0], ends))
    kind, width = (pa.string(), np.int32) if len(data) < 2**31 else (pa.large_string(), np.int64)
    every = pa.Array.from_buffers(kind, len(lines), [None, pa.py_buffer(offsets.astype(width)), pa.py_buffer(data)])
    chosen = pa.array(taken)
    candidates = pa.Table.from_batches(pa.table({"n": chosen, "line": every.take(chosen)}).to_batches(_BATCH))
    return Slice(lines, candidates, np.flatnonzero(~ok).tolist(), False, frozenset(_as_str(set(variables))),
                 tuple(_as_str(dict.fromkeys(oids))), tuple(_as_str(c for c in dict.fromkeys(calls) if c)))


def _as_str(items) -> list[str]:
    """ASCII byte strings without a newline as str, in one decode."""
    items = list(items)
    return b"\n".join(items).decode("ascii").split("\n") if items else []


def insert(con: duckdb.DuckDBPyConnection, candidates: pa.Table, schema_keys: list[str]) -> list[int]:
    """Insert into `scistack.refs` the refs of the candidate lines (kept in the temp table
    `NEW_REFS` until the next slice); runs on the sync's writer thread. Returns the numbers
    of the lines it left to Python (`_reject_unlike_python`)."""
    keys = "".join(f", json_extract_string(j.addr, '$.\"{key}\"') AS \"{key}\"" for key in schema_keys)
    con.register("_lines", candidates)
    try:
        con.execute(
            f"CREATE OR REPLACE TEMP TABLE {NEW_REFS} AS SELECT n, j.var, CAST(j.addr AS VARCHAR) AS addr,"
            " CAST(j.vkeys AS VARCHAR) AS vkeys, j.version, j.oid, j.kind, j.call,"
            f" CAST(j.params AS VARCHAR) AS params, j.summary, j.t AS created_at{keys}"
            f" FROM (SELECT n, json_transform(line, '{_TRANSFORM}') AS j FROM _lines)")
    finally:
        con.unregister("_lines")
    rejected = _reject_unlike_python(con)
    con.execute(f"INSERT INTO scistack.refs BY NAME SELECT * EXCLUDE (n) FROM {NEW_REFS}")
    return rejected


def _reject_unlike_python(con: duckdb.DuckDBPyConnection) -> list[int]:
    """Remove from `NEW_REFS` the rows whose texts differ from Python's (`key_of`): addresses
    whose keys are not sorted or repeat one, version keys or parameters that are not their
    own `key_of`. Returns their line numbers (Python parses those lines)."""
    orders = [r[0] for r in con.execute(f"SELECT DISTINCT json_keys(addr) FROM {NEW_REFS}").fetchall()]
    texts = [r[0] for r in con.execute(f"SELECT DISTINCT params FROM {NEW_REFS} UNION "
                                       f"SELECT DISTINCT vkeys FROM {NEW_REFS}").fetchall()]
    bad_orders = [o for o in orders if o != sorted(set(o))]
    bad_texts = [t for t in texts if not _is_key_of_itself(t)]
    if not bad_orders and not bad_texts:
        return []
    where = ("json_keys(addr) IN (SELECT unnest(CAST(? AS VARCHAR[][]))) "
             "OR params IN (SELECT unnest(CAST(? AS VARCHAR[]))) OR vkeys IN (SELECT unnest(CAST(? AS VARCHAR[])))")
    found = [r[0] for r in con.execute(f"SELECT n FROM {NEW_REFS} WHERE {where}",
                                       [bad_orders, bad_texts, bad_texts]).fetchall()]
    con.execute(f"DELETE FROM {NEW_REFS} WHERE {where}", [bad_orders, bad_texts, bad_texts])
    return found


def _is_key_of_itself(text: str) -> bool:
    """Whether `text` is what `key_of` writes for the object it holds (1e400 is no float
    Python writes: left to Python, which says what is wrong with it)."""
    try:
        return key_of(loads_line(text.encode())) == text
    except Exception:  # noqa: BLE001 - anything Python would not write the same
        return False
