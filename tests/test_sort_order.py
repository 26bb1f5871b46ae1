"""`sort_records` orders by numpy when a column is all int, all float or all str; that order
must be exactly the tuple-key order it replaces (Python's comparisons, stable)."""

from __future__ import annotations

from hypothesis import given, settings, strategies as st

from scistack.selection import _numpy_order

_COLUMN = st.one_of(
    st.lists(st.integers(-2**63, 2**63 - 1), min_size=8, max_size=8),
    st.lists(st.integers(min_value=2**63, max_value=2**70), min_size=8, max_size=8),
    st.lists(st.floats(allow_nan=True), min_size=8, max_size=8),
    st.lists(st.text(max_size=4), min_size=8, max_size=8),
    st.lists(st.one_of(st.integers(0, 3), st.text(max_size=2), st.none()), min_size=8, max_size=8),
)


@settings(max_examples=300, deadline=None)
@given(st.lists(_COLUMN, min_size=1, max_size=3))
def test_numpy_order_is_the_tuple_order(columns):
    order = _numpy_order(columns)
    if order is None:  # mixed, NaN or beyond int64: the caller sorts by tuples
        return
    rows = list(zip(*columns))
    assert order == sorted(range(len(rows)), key=rows.__getitem__)


def test_mixed_columns_are_left_to_tuple_keys():
    assert _numpy_order([[1, "a"], [1, 2]]) is None
    assert _numpy_order([[1.0, float("nan")]]) is None
    assert _numpy_order([["a\x00", "a"]]) is None
    assert _numpy_order([[2, 1], ["b", "a"]]) == [1, 0]


_LABELS = {"int": st.integers(-5, 5), "float": st.floats(-3, 3), "str": st.text(max_size=2),
           "bool": st.booleans()}


@st.composite
def _addresses(draw):
    """Addresses at one set of keys, each key's values of one kind or mixed (the fast order's
    condition either way), or at two levels."""
    kinds = [draw(st.sampled_from([*_LABELS, "mixed"])) for _ in range(2)]
    values = [st.one_of(*_LABELS.values()) if kind == "mixed" else _LABELS[kind] for kind in kinds]
    rows = draw(st.lists(st.tuples(*values), min_size=1, max_size=12))
    addrs = [{"subject": a, "session": b} for a, b in rows]
    if draw(st.booleans()):
        addrs += [{"subject": a} for a, _ in rows[:2]]
    return addrs


@settings(max_examples=300, deadline=None)
@given(_addresses())
def test_status_rows_in_the_tuple_order(addrs):
    """The status grid orders rows by their values alone (in C) when one set of keys holds
    only text or only numbers per key: exactly the tuple-key order it replaces."""
    from scistack.index import key_of
    from scistack.report.status import _rows

    unique = {key_of(a): a for a in addrs}
    keys = ["subject", "session", "trial"]
    got = _rows(unique, keys)
    extended = {key_of({"subject": b["subject"]}) for b in unique.values() if len(b) == 2}
    finest = [(k, a) for k, a in unique.items() if k not in extended]
    assert got == sorted(finest, key=lambda pair: tuple(
        (k not in pair[1], isinstance(pair[1].get(k), str), pair[1].get(k, 0)) for k in keys))
