"""`loads_scalars` parses many scalar payloads in one call; whenever it answers, the answer must
be what decoding each payload alone gives, and a payload it cannot vouch for makes it decline."""

from __future__ import annotations

import json

from hypothesis import given, settings, strategies as st

from scistack.objects.canonical_json import encode_json, loads, loads_scalars

_SCALARS = st.one_of(st.none(), st.booleans(), st.integers(), st.floats(), st.text())


def _alone(payloads):
    try:
        return [loads(p) for p in payloads]
    except (ValueError, UnicodeDecodeError):
        return "error"


@settings(max_examples=300, deadline=None)
@given(st.lists(_SCALARS, min_size=1, max_size=12))
def test_encoded_scalars_read_as_one_by_one(values):
    payloads = [encode_json(v, lambda child: "0" * 64) for v in values]
    found = loads_scalars(payloads)
    if found is not None:
        assert json.dumps(found) == json.dumps(_alone(payloads))


@settings(max_examples=500, deadline=None)
@given(st.lists(st.text(alphabet='0123456789-+.eE"\\,[]{} atrufl', max_size=8), min_size=1, max_size=6))
def test_arbitrary_payloads_never_read_differently(texts):
    payloads = [t.encode() for t in texts]
    found = loads_scalars(payloads)
    if found is not None:
        assert json.dumps(found) == json.dumps(_alone(payloads))


def test_what_it_declines():
    assert loads_scalars([b'"a","b"', b"1"]) is None     # a quote inside: not one string
    assert loads_scalars([b'"a\\"b"']) is None           # escapes are left to the one-by-one path
    assert loads_scalars([b"1", b"[2]"]) is None         # containers decode with their tags
    assert loads_scalars([b"12345678901234567890"]) is None  # beyond int64: `json` reads it
    assert loads_scalars([b"1", b"2.5", b"true", b"null", b'"x"']) == [1, 2.5, True, None, "x"]
