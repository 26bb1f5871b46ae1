"""The bucket's pack table (lab mode's object lookup) answers as a search of every pack would.

`PackTable.locate` searches merged levels instead of each pack's index in turn; these tests
hold it to the plain answer (every pack whose index holds the oid, with its offset and
length) through any sequence of packs added, replaced and taken out, including oids that
share their first 8 bytes (the levels' search key) and an object held by several packs.
"""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from scistack.objects import pack_table
from scistack.objects.pack_table import PackTable

_DTYPE = np.dtype([("oid", "V32"), ("offset", "<u8"), ("length", "<u8")])


def _oid(n: int) -> bytes:
    """Oids 0-3 share their first 8 bytes (differ after them), as do 4-7: the search key's
    collisions are confirmed by the whole oid."""
    return bytes([n // 4, 0, 0, 0, 0, 0, 0, 0, n % 4]) + bytes(23)


def _entries(oids: list[int], base: int) -> np.ndarray:
    rows = sorted(set(oids))
    entries = np.zeros(len(rows), dtype=_DTYPE)
    for i, n in enumerate(rows):
        entries[i] = (np.frombuffer(_oid(n), dtype="V32")[0], base + 100 * i, 10 + n)
    return entries


def _plain(packs: dict[str, np.ndarray], oid: bytes) -> set[tuple[str, int, int]]:
    raw = np.frombuffer(oid, dtype="V32")[0]
    return {(name, int(e["offset"]), int(e["length"])) for name, entries in packs.items() for e in entries
            if e["oid"] == raw}


_STEPS = st.lists(st.one_of(
    st.tuples(st.just("add"), st.integers(0, 5), st.lists(st.integers(0, 15), max_size=6)),
    st.tuples(st.just("add_many"), st.integers(0, 5), st.lists(st.integers(0, 15), max_size=6)),
    st.tuples(st.just("remove"), st.integers(0, 5), st.just([]))), max_size=25)


@settings(max_examples=150, deadline=None)
@given(_STEPS, st.integers(1, 40))
def test_locate_answers_as_a_search_of_every_pack(steps, small_level):
    pack_table._SMALL_LEVEL, kept = small_level, pack_table._SMALL_LEVEL  # levels merge often
    try:
        table, plain = PackTable(), {}
        for at, (step, pack, oids) in enumerate(steps):
            name = f"pack-{pack}"
            if step == "remove":
                table.pop(name, None)
                plain.pop(name, None)
            elif step == "add":
                table[name] = plain[name] = _entries(oids, 1000 * at)
            else:
                batch = {name: _entries(oids, 1000 * at), f"pack-{pack + 10}": _entries(oids[::-1], 7 + 1000 * at)}
                table.add(batch)
                plain.update(batch)
            for n in range(17):
                assert set(table.locate(_oid(n))) == _plain(plain, _oid(n))
        assert sorted(table) == sorted(plain) and len(table) == len(plain)
        assert all(np.array_equal(table[name], plain[name]) for name in plain)
    finally:
        pack_table._SMALL_LEVEL = kept


def test_an_empty_table_and_an_empty_pack_hold_nothing():
    table = PackTable()
    assert list(table.locate(_oid(3))) == []
    table["pack-a"] = _entries([], 0)
    assert list(table.locate(_oid(3))) == [] and "pack-a" in table


def test_oid_prefixes_read_raw_oids_an_oid_array_and_index_entries_alike():
    """One search key for every merged lookup (pack.oid_prefixes): the first 8 bytes of each
    oid as a big-endian number, whatever holds the oids."""
    from scistack.objects.pack import oid_prefixes

    entries = _entries([0, 3, 5, 15], 0)
    entries[1]["oid"] = np.frombuffer(b"\xff" * 32, "V32")[0]  # (the top bit set: unsigned)
    raw = entries["oid"].tobytes()
    expected = [int.from_bytes(raw[32 * i : 32 * i + 8], "big") for i in range(len(entries))]
    for held in (raw, np.ascontiguousarray(entries["oid"]), entries):
        found = oid_prefixes(held)
        assert found.dtype == np.uint64 and found.tolist() == expected
    assert oid_prefixes(b"").tolist() == [] and oid_prefixes(entries[:0]).tolist() == []
