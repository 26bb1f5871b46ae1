"""The call key is built without the JSON encoder, so its bytes are pinned to the encoder's:
a key that drifted would make every cached result unreachable."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from scistack.lineage.calls import key_from_oids, key_maker
from scistack.objects.canonical_json import dumps_canonical
from scistack.objects.hashing import hash_bytes

names = st.text(min_size=1, max_size=12)  # arguments may be any string (a **kwargs key too)
oids = st.text(alphabet="0123456789abcdef", min_size=64, max_size=64) | st.text(max_size=8)


@given(st.dictionaries(names, oids, max_size=6), oids)
def test_call_key_is_the_hash_of_the_canonical_record(args, digest):
    assert key_from_oids(digest, args) == hash_bytes(dumps_canonical({"args": args, "fn": digest}))


@given(st.dictionaries(names, oids, max_size=4), st.lists(names, max_size=3), st.lists(oids, min_size=3, max_size=3),
       oids)
def test_keys_made_for_many_calls_are_each_calls_key(fixed, varying, values, digest):
    make = key_maker(digest, fixed, varying)
    given_oids = dict(zip(varying, values))
    assert make(values[:len(varying)]) == key_from_oids(digest, {**fixed, **given_oids})


@given(st.one_of(st.integers(), st.floats(allow_nan=True), st.text(max_size=300), st.booleans(), st.none()))
def test_a_memoised_constant_has_the_oid_and_tree_of_the_general_path(value):
    from scistack.lineage import calls
    from scistack.objects.canonical_json import to_tree
    from scistack.objects.hashing import hash_object
    from scistack.objects.store import hash_value

    for _ in range(2):  # the second call is served from the memo
        described = calls.describe("x", value)
        tree = to_tree(value, hash_value)
        assert described.record == {"oid": described.oid, "const": tree}
        assert described.oid == hash_object("json", [dumps_canonical(tree)])
    assert calls.describe("x", -0.0).oid != calls.describe("x", 0.0).oid
    assert calls.describe("x", 1).oid != calls.describe("x", True).oid


def test_positional_calls_bind_as_inspect_binds():
    import inspect

    import pytest

    from scistack.lineage.calls import bind

    def plain(a, b, c=3):
        return a

    def starred(a, *rest, k=1):
        return a

    for fn, args in [(plain, (1, 2)), (plain, (1, 2, 4)), (starred, (1, 2, 3))]:
        sig = inspect.signature(fn)
        bound, inputs = bind(sig, args, {})
        assert bound.arguments == sig.bind(*args).arguments
        assert bound.args == sig.bind(*args).args and set(inputs) >= set(bound.arguments)
    for args in [(1,), (1, 2, 3, 4)]:  # too few, too many: inspect's own TypeError
        with pytest.raises(TypeError):
            bind(inspect.signature(plain), args, {})


@given(st.text(alphabet=st.characters(max_codepoint=0x17F), max_size=70)
       | st.text(alphabet="0123456789abcdefABCXYZ_ \"\\\x7f\x00é", max_size=70))
def test_a_quoted_name_or_oid_is_what_the_json_encoder_writes(text):
    # (the key's quoting writes letters and digits itself: anything else, a quote, a
    # backslash, a control character, DEL, a non-ASCII letter, still goes to the encoder)
    import json

    from scistack.lineage.calls import _quote

    assert _quote(text) == json.encoder.encode_basestring_ascii(text)
    assert _quote("ab" * 32) == '"' + "ab" * 32 + '"'


def test_the_constant_memo_keeps_apart_floats_that_are_equal_but_differ():
    # (keyed by value: 0.0 == -0.0, and a NaN is no key; both are keyed by their repr)
    from scistack.lineage import calls
    from scistack.objects.canonical_json import to_tree

    calls._CONSTANTS.clear()
    for first, second in [(0.0, -0.0), (-0.0, 0.0)]:
        calls._CONSTANTS.clear()
        a, b = calls.describe("x", first), calls.describe("x", second)
        assert a.oid != b.oid and b.record["const"] == to_tree(second, None)
    nans = [calls.describe("x", float("nan")) for _ in range(3)]
    assert len({n.oid for n in nans}) == 1 and len(calls._CONSTANTS) <= 3
    assert calls.describe("x", float("inf")).oid != calls.describe("x", float("-inf")).oid
    big = 2.0 ** 60
    assert calls.describe("x", big).oid != calls.describe("x", 2 ** 60).oid


def test_a_key_made_again_from_remembered_quotes_is_the_same_key():
    # (names, digests and oids are quoted once and remembered: the second key of each is
    # built from the memo, including past the point where the memo is emptied)
    from scistack.lineage import calls

    digest, args = "d" * 64, {"b": "0" * 64, "a\u00e9": "x\"y", "": "1" * 64}
    expected = hash_bytes(dumps_canonical({"args": args, "fn": digest}))
    calls._QUOTED.clear()
    assert [key_from_oids(digest, args) for _ in range(2)] == [expected] * 2
    assert calls._QUOTED["a\u00e9"] == '"a\\u00e9"' and calls._QUOTED["x\"y"] == '"x\\"y"'
    for i in range(calls._QUOTED_SIZE + 10):  # new oids each call fill the memo: emptied, still right
        fresh = {**args, "c": f"{i:064x}"}
        assert key_from_oids(digest, fresh) == hash_bytes(dumps_canonical({"args": fresh, "fn": digest}))
    assert len(calls._QUOTED) <= calls._QUOTED_SIZE
    assert key_from_oids(digest, {}) == hash_bytes(dumps_canonical({"args": {}, "fn": digest}))
