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
