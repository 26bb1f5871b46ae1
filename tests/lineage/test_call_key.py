"""The call key is built without the JSON encoder, so its bytes are pinned to the encoder's:
a key that drifted would make every cached result unreachable."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from scistack.lineage.calls import key_from_oids
from scistack.objects.canonical_json import dumps_canonical
from scistack.objects.hashing import hash_bytes

names = st.text(min_size=1, max_size=12)  # arguments may be any string (a **kwargs key too)
oids = st.text(alphabet="0123456789abcdef", min_size=64, max_size=64) | st.text(max_size=8)


@given(st.dictionaries(names, oids, max_size=6), oids)
def test_call_key_is_the_hash_of_the_canonical_record(args, digest):
    assert key_from_oids(digest, args) == hash_bytes(dumps_canonical({"args": args, "fn": digest}))
