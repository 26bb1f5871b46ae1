"""orjson makes an integer beyond 64 bits a float, so `maybe_big_int` sends any text that may
hold one to `json`. It looks only for digits that can start a number: the check must never
miss one, however the JSON is spaced, and must let an oid's decimal digits pass."""

from __future__ import annotations

import json

from hypothesis import given, settings, strategies as st

from scistack.objects.canonical_json import loads, maybe_big_int

_LEAVES = st.one_of(st.none(), st.booleans(), st.integers(), st.integers(min_value=2**60, max_value=2**80),
                    st.integers(min_value=-(2**80), max_value=-(2**60)), st.floats(allow_nan=False),
                    st.text(alphabet="0123456789abc\"\\:,[ -", max_size=30))
_JSON = st.recursive(_LEAVES, lambda inner: st.one_of(
    st.lists(inner, max_size=4), st.dictionaries(st.text(max_size=5), inner, max_size=4)), max_leaves=12)


@settings(max_examples=400, deadline=None)
@given(_JSON, st.sampled_from(["", " ", "\t", "\n", "\r"]))
def test_every_integer_reads_back_exactly_however_the_text_is_spaced(value, space):
    text = (space + json.dumps(value, separators=("," + space, ":" + space))).encode()
    found = loads(text)
    assert found == value and json.dumps(found) == json.dumps(value)  # an int stays an int


def test_an_oids_decimal_digits_are_no_number():
    """64 hex digits hold 19 decimal digits in a row about once in 170 oids: that used to send
    every line of a journal slice through the check a second time (0.4 -> 0.27 s per 62k lines)."""
    assert not maybe_big_int(b'{"oid":"1234567890123456789012ab","x":"a9999999999999999999999"}')
    assert maybe_big_int(b'{"oid":"ab","x":-1234567890123456789}')
    assert maybe_big_int(b"1234567890123456789")
    assert maybe_big_int(b'[1,\n\t 1234567890123456789]')


def test_a_payload_of_one_big_integer_reads_back_exactly():
    """orjson's int is taken for a payload of 19 digits or more (exact within 64 bits), its
    float never (beyond 64 bits orjson rounds): each as `json` reads it, type and value."""
    for value in (10**18, 2**62 + 1, 2**63 - 1, 2**64 - 1, 2**64, 2**64 + 1, -(2**63), -(2**63) - 1, 10**30,
                  -(10**30), "1234567890123456789", " 12345678901234567890123", [2**64 + 1], {"a": -(2**70)},
                  1234567890123456789.0):
        text = json.dumps(value).encode()
        found = loads(text)
        assert found == value and type(found) is type(value), value
    assert loads(b" 18446744073709551617 ") == 2**64 + 1
