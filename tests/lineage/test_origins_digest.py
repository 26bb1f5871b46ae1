"""A cache entry's `origins` digest says, without reading the call record, that the record
names a hit's inputs as its own. Two bound inputs of different origins must never share a
digest (a hit would then claim another call's lineage); equal origins must share it (or every
hit reads its record)."""

from __future__ import annotations

import numpy as np
from hypothesis import example, given
from hypothesis import strategies as st

from scistack.lineage.calls import BoundInput, input_origin, origins_digest

address_values = st.one_of(st.integers(min_value=-(2**70), max_value=2**70), st.booleans(),
                           st.floats(allow_nan=False), st.text(max_size=6),
                           st.integers(-3, 3).map(np.int64), st.none())
addresses = st.dictionaries(st.sampled_from(["subject", "session", "trial"]), address_values, max_size=3)
simple = st.fixed_dictionaries({"var": st.sampled_from(["EMG", "Force"]), "addr": addresses},
                               optional={"call": st.sampled_from(["c1", "c2"]), "file": st.sampled_from(["a.csv"])})
records = st.one_of(simple, st.fixed_dictionaries({"merge": st.lists(simple, min_size=1, max_size=2)}),
                    st.fixed_dictionaries({"items": st.dictionaries(st.sampled_from(["0", "1", "k"]), simple,
                                                                    min_size=1, max_size=2)}))
calls = st.dictionaries(st.sampled_from(["signal", "gain", "x"]), records, min_size=1, max_size=2)


def _bound(records: dict) -> dict[str, BoundInput]:
    return {name: BoundInput(name, None, "0" * 64, record) for name, record in records.items()}


def _origins(records: dict) -> list:
    return sorted((name, input_origin(record)) for name, record in records.items())


@given(calls, calls)
@example({"x": {"var": "EMG", "addr": {"subject": 1}}}, {"x": {"var": "EMG", "addr": {"subject": 1.0}}})
@example({"x": {"var": "EMG", "addr": {"subject": 1}}}, {"x": {"var": "EMG", "addr": {"subject": True}}})
@example({"x": {"var": "EMG", "addr": {"subject": 1}}}, {"x": {"var": "EMG", "addr": {"subject": np.int64(1)}}})
@example({"x": {"var": "EMG", "addr": {"subject": 2**64}}}, {"x": {"var": "EMG", "addr": {"subject": 2**64 + 1}}})
@example({"x": {"var": "EMG", "addr": {"subject": "1"}}}, {"x": {"var": "EMG", "addr": {"subject": 1}}})
@example({"x": {"var": "EMG", "addr": {"subject": 0.0}}}, {"x": {"var": "EMG", "addr": {"subject": -0.0}}})
def test_digests_agree_exactly_when_origins_do(first, second):
    same = repr(_origins(first)) == repr(_origins(second))  # (0.0 and -0.0 are equal, not the same)
    assert (origins_digest(_bound(first)) == origins_digest(_bound(second))) == same


@given(calls)
def test_the_digest_does_not_depend_on_the_order_of_inputs_or_address_keys(records):
    reordered = {name: {**record, "addr": dict(reversed(record["addr"].items()))} if "addr" in record else record
                 for name, record in reversed(records.items())}
    assert origins_digest(_bound(reordered)) == origins_digest(_bound(records))
