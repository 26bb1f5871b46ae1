"""The sync hands put lines to DuckDB to read (`index/simple_puts.py`): whatever the lines, the
refs table it builds must be the one Python's own reading of the journal builds, row for row.

Lines come as scistack writes them (canonical) and as another writer might: keys in any order
or twice, spaces, escapes, non-ASCII, floats written without an exponent, nested parameters,
null or missing fields, lines that are no entry at all."""

from __future__ import annotations

import json
from pathlib import Path

from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from scistack.index import simple_puts
from scistack.index.journal import Journal
from scistack.index.sql import SqlIndex
from scistack.objects.canonical_json import dumps_canonical, maybe_big_int

KEYS = ["subject", "session"]


class _RowsJournal:
    """The same journal without `read_lines`: the sync parses every line in Python."""

    def __init__(self, journal: Journal) -> None:
        self._journal = journal

    def __getattr__(self, name: str):
        if name == "read_lines":
            raise AttributeError(name)
        return getattr(self._journal, name)


def _refs_built(folder: Path, lines: list[bytes]) -> tuple[list[tuple], list[tuple], int]:
    """(refs rows by the DuckDB reading, refs rows by Python's, lines DuckDB read itself)."""
    log = folder / "refs.log"
    log.write_bytes(b"".join(line + b"\n" for line in lines))
    rows = []
    for name, journal in (("fast", Journal(log)), ("python", _RowsJournal(Journal(log)))):
        index = SqlIndex(folder / f"{name}.duckdb", KEYS, journal)
        index.sync()
        with index.connect(read_only=True) as con:
            rows.append(sorted(con.execute("SELECT * FROM scistack.refs").fetchall(), key=repr))
    data = log.read_bytes()
    piece = simple_puts.split(data, maybe_big_int(data))
    return rows[0], rows[1], 0 if piece.candidates is None else piece.candidates.num_rows


def _put(addr, *, params=None, vkeys=None, version=1, oid="ab" * 32, call=None, var="Emg", summary="float64[3]"):
    return {"op": "put", "var": var, "addr": addr, "vkeys": vkeys or {}, "version": version, "oid": oid,
            "kind": "npy", "call": call, "params": params or {}, "summary": summary, "t": "2026-12-06T00:00:00Z"}


def test_lines_scistack_writes_are_read_by_duckdb_and_give_pythons_rows(tmp_path):
    lines = [dumps_canonical(_put({"subject": s, "session": f"s{k}"}, version=k + 1, oid=f"{s:02x}{k:02x}" * 16,
                                  params={"bandpass.low_hz": 20, "smoothing": 0.5}, call="cd" * 32))
             for s in range(5) for k in range(3)]
    lines.append(dumps_canonical({"op": "del", "var": "Emg", "addr": {"session": "s0", "subject": 0}, "version": 1,
                                  "t": "2026-12-06T00:00:01Z"}))
    fast, python, read = _refs_built(tmp_path, lines)
    assert read == 15  # every put: none left to Python
    assert fast == python and len(fast) == 14  # (the delete came after its put)


def _raw(addr: bytes, n: str, *, params: bytes = b"{}", vkeys: bytes = b"{}", var: bytes = b'"Emg"',
         version: bytes = b"1") -> bytes:
    """A put line in scistack's layout from raw JSON fragments, any of which may be odd."""
    return (b'{"addr":' + addr + b',"call":null,"kind":"npy","oid":"' + n.encode() * 64 + b'","op":"put","params":'
            + params + b',"summary":null,"t":"x","var":' + var + b',"version":' + version + b',"vkeys":' + vkeys + b"}")


ODD_LINES = [
    # keys of the address out of order, or one twice (orjson keeps the last)
    _raw(b'{"subject":1,"session":"a"}', "1"),
    _raw(b'{"session":"a","subject":1,"subject":2}', "2"),
    # floats as Python does not write them (Python writes 1e-05 and 1.5)
    _raw(b'{"session":"a","subject":3}', "3", params=b'{"f.x":0.00001,"f.y":1.50}'),
    _raw(b'{"session":"a","subject":4}', "4", params=b'{"f.y":1E5}', vkeys=b'{"note":2.50}'),
    # a top-level key twice: orjson keeps the last
    _raw(b'{"session":"a","subject":5}', "5", var=b'"Emg","var":"Other"'),
    # an escape, non-ASCII, spaces, another key order, nested parameters, null version keys
    _raw(b'{"session":"a\\"b","subject":6}', "6"),
    _raw('{"session":"séance","subject":7}'.encode(), "7"),
    b'{"op": "put", "var": "Emg", "addr": {"subject": 8, "session": "a"}, "version": 1, "oid": "' + b"8" * 64
    + b'", "kind": "npy", "t": "x"}',
    _raw(b'{"session":"a","subject":9}', "9", params=b'{"f":{"b":1,"a":[1,2.0]}}'),
    _raw(b'{"session":"a","subject":10}', "a", vkeys=b"null"),
    # wrong types, no entry at all, a torn line
    _raw(b'{"session":"a","subject":11}', "b", version=b'"1"'),
    b"[1, 2]",
    b'{"addr":{"session":"a","subject":13},"call":null,"kind":"npy","oid":"',
]
# beyond 64 bits: Python reads it exactly (`json`), DuckDB would not; its whole slice goes to Python
BIG = _raw(b'{"session":"a","subject":12345678901234567890}', "c")


def test_lines_of_other_writers_give_the_rows_python_reads(tmp_path):
    good = dumps_canonical(_put({"subject": 0, "session": "a"}))
    fast, python, read = _refs_built(tmp_path, [good, *ODD_LINES])
    assert fast == python
    assert read == 5  # the good line and the first four odd ones fit the pattern: DuckDB leaves those to Python
    by_oid = {row[4]: row for row in fast}
    assert by_oid["1" * 64][1] == '{"session":"a","subject":1}'  # keys sorted, as `key_of` writes them
    assert by_oid["2" * 64][1] == '{"session":"a","subject":2}'
    assert by_oid["3" * 64][7] == '{"f.x":1e-05,"f.y":1.5}'
    assert by_oid["5" * 64][0] == "Other"
    fast, python, read = _refs_built(tmp_path, [good, *ODD_LINES, BIG])
    assert fast == python and read == 0
    assert {row[4]: row for row in fast}["c" * 64][1] == '{"session":"a","subject":12345678901234567890}'


_scalar = st.one_of(st.integers(-3, 10**12), st.text(max_size=4), st.booleans(), st.none(),
                    st.sampled_from([0.5, 1e-05, 2.0, -0.0, 1e16, 123.25, 0.1]))
_mapping = st.dictionaries(st.sampled_from(["subject", "session", "trial", "f.low_hz"]), _scalar, max_size=3)


@st.composite
def _lines(draw):
    entry = _put(draw(_mapping.filter(bool)), params=draw(st.one_of(_mapping, st.just({"f": {"b": [1, 2.5]}}))),
                 vkeys=draw(_mapping), version=draw(st.integers(1, 3)), oid=draw(st.sampled_from(["ab" * 32, "cd" * 32])),
                 call=draw(st.sampled_from([None, "ef" * 32])), var=draw(st.sampled_from(["Emg", "Force"])),
                 summary=draw(st.sampled_from([None, "x", 'q"uote'])))
    style = draw(st.sampled_from(["canonical", "sorted", "spaced", "unicode"]))
    if style == "canonical":
        return dumps_canonical(entry)
    if style == "sorted":  # sorted keys, floats as `json` writes them: canonical too, mostly
        return json.dumps(entry, sort_keys=True, separators=(",", ":")).encode()
    if style == "spaced":
        return json.dumps(entry).encode()
    return json.dumps(entry, ensure_ascii=False, separators=(",", ":")).encode()


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow,
                                                                 HealthCheck.function_scoped_fixture])
@given(st.lists(_lines(), min_size=1, max_size=12))
@example([dumps_canonical(_put({"session": "a", "subject": 1}, params={"f.x": 1e-05}))])
def test_refs_from_any_lines_are_those_python_builds(tmp_path_factory, lines):
    fast, python, _ = _refs_built(tmp_path_factory.mktemp("lines"), lines)
    assert fast == python


def test_the_inline_rows_keys_computed_in_python_are_duckdbs(tmp_path):
    """`vals.okey`/`okey2` (how a sync finds known oids) are computed by numpy from the oids;
    they must be what DuckDB's own expressions give (`sql._OKEY`, `sql._OKEY2`)."""
    import numpy as np

    import scistack.database as database_module
    from scistack import BaseVariable, configure_database
    from scistack.index.sql import _OKEY, _OKEY2

    class KeyedSignal(BaseVariable):
        pass

    db = configure_database(tmp_path / "k.duckdb", KEYS)
    try:
        for n in range(40):
            KeyedSignal.save(np.arange(n, n + 3.0), subject=n, session="a")
        db.sync()
        rows = db.sql(f"SELECT count(*) AS n, count(*) FILTER (okey IS DISTINCT FROM {_OKEY} "
                      f"OR okey2 IS DISTINCT FROM {_OKEY2} OR okey IS NULL) AS wrong FROM scistack.vals")
        assert int(rows["n"][0]) == 40 and int(rows["wrong"][0]) == 0
    finally:
        db.close()
        database_module._current = None
