"""The contract every `ObjectStore` keeps, as a test class to subclass (zarr's `StoreTests`).

A subclass supplies `make_store(tmp_path)` and the two raw helpers, which reach the medium
*without* going through the store under test:

- `raw_get(store, oid) -> (kind, payload) | None`
- `raw_put(store, oid, kind, payload)` (stores bytes under any oid, even a wrong one)

so that "put wrote it" and "get read it" are each checked against the medium itself.
"""

from __future__ import annotations

import threading
from typing import Any

import blake3
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from scistack.errors import CorruptObjectError, InvalidOidError, ObjectNotFoundError
from scistack.objects import ObjectStore, StoredObject
from scistack.objects.hashing import KINDS

INVALID_OIDS = [
    "", "abc", "ABC", "../x", "../../etc/passwd", "a" * 63, "a" * 65, "A" * 64, "g" * 64,
    "../" + "a" * 61, "ab/" + "c" * 61, "a" * 63 + "\n", " " + "a" * 63, "a" * 62 + "..",
    "\u0661" * 64, None, 123, b"a" * 64,
]
MISSING = "0" * 64


def reference_oid(kind: str, payload: bytes) -> str:
    """The oid computed independently of scistack's code (docs/format.md §1)."""
    return blake3.blake3(b"%s %d\x00" % (kind.encode(), len(payload)) + payload).hexdigest()


class ObjectStoreContract:
    """Subclass as `TestXObjectStore` and implement the three hooks below."""

    def make_store(self, tmp_path) -> ObjectStore:
        raise NotImplementedError

    def raw_get(self, store: ObjectStore, oid: str) -> tuple[str, bytes] | None:
        raise NotImplementedError

    def raw_put(self, store: ObjectStore, oid: str, kind: str, payload: bytes) -> None:
        raise NotImplementedError

    @pytest.fixture
    def store(self, tmp_path) -> ObjectStore:
        return self.make_store(tmp_path)

    # -- put / get ------------------------------------------------------------------------
    @pytest.mark.parametrize("kind", sorted(KINDS))
    def test_put_returns_the_reference_oid_and_writes_the_medium(self, store, kind):
        payload = b"some payload \x00\xff"
        oid = store.put(kind, payload)
        assert oid == reference_oid(kind, payload)
        assert self.raw_get(store, oid) == (kind, payload)

    def test_get_reads_what_the_medium_holds(self, store):
        payload = b"written behind the store's back"
        oid = reference_oid("bytes", payload)
        self.raw_put(store, oid, "bytes", payload)
        obj = store.get(oid)
        assert isinstance(obj, StoredObject)
        assert obj.kind == "bytes" and bytes(obj.payload) == payload

    @pytest.mark.parametrize("size", [0, 1, 63, 64, 1000, (1 << 20) - 1, 3 << 20])
    def test_payload_sizes_roundtrip(self, store, size):
        payload = np.random.default_rng(size).integers(0, 4, size, dtype=np.uint8).tobytes()
        oid = store.put("bytes", payload)
        assert oid == reference_oid("bytes", payload)
        assert bytes(store.get(oid).payload) == payload
        assert self.raw_get(store, oid) == ("bytes", payload)

    def test_parts_are_one_payload(self, store):
        whole = store.put("npy", b"abcdef")
        assert store.put("npy", [b"ab", bytearray(b"cd"), memoryview(b"ef")]) == whole
        assert store.put("npy", (b"", b"abc", np.frombuffer(b"def", np.uint8))) == whole
        assert store.put("npy", [memoryview(np.frombuffer(b"abcdef", np.uint8))]) == whole

    def test_same_bytes_as_different_kinds_are_different_objects(self, store):
        oids = {store.put(kind, b"1") for kind in KINDS}
        assert len(oids) == len(KINDS)
        assert {store.get(oid).kind for oid in oids} == KINDS

    def test_put_is_idempotent(self, store):
        first = store.put("json", b"[1]")
        assert store.put("json", b"[1]") == first
        assert list(store.iter_oids()) == [first]

    def test_unknown_kind_is_refused_and_nothing_is_stored(self, store):
        with pytest.raises(ValueError, match="unknown object kind"):
            store.put("pickle", b"x")
        assert list(store.iter_oids()) == []

    def test_returned_payload_is_the_callers_own(self, store):
        oid = store.put("bytes", b"immutable")
        payload = store.get(oid).payload
        payload[0:1] = b"X"
        assert bytes(store.get(oid).payload) == b"immutable"

    def test_store_never_accepts_an_oid_from_the_caller(self, store):
        with pytest.raises(TypeError):
            store.put("bytes", b"x", "0" * 64)  # type: ignore[call-arg]

    # -- missing, invalid, corrupt --------------------------------------------------------
    def test_missing_object(self, store):
        with pytest.raises(ObjectNotFoundError) as info:
            store.get(MISSING)
        assert isinstance(info.value, LookupError) and info.value.oid == MISSING
        assert MISSING in str(info.value)
        assert not store.contains(MISSING)
        store.delete(MISSING)  # absent: ignored

    @pytest.mark.parametrize("bad", INVALID_OIDS, ids=repr)
    def test_invalid_oids_are_refused_by_every_verb(self, store, bad):
        for verb in (store.get, store.contains, store.delete, store.get_value):
            with pytest.raises(InvalidOidError) as info:
                verb(bad)
            assert isinstance(info.value, ValueError) and "64 lowercase hex" in str(info.value)

    def test_undecodable_payload_is_a_corrupt_object(self, store):
        garbage = b"\x93NUMPY garbage"
        oid = reference_oid("npy", garbage)
        self.raw_put(store, oid, "npy", garbage)
        with pytest.raises(CorruptObjectError) as info:
            store.get_value(oid)
        assert info.value.oid == oid and oid in str(info.value)

    @settings(max_examples=60, deadline=None,
              suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.differing_executors])
    @given(kind=st.sampled_from(["npy", "json", "table", "call"]), payload=st.one_of(
        st.binary(max_size=200),
        st.binary(max_size=120).map(lambda b: b"\x93NUMPY\x01\x00" + b),
        st.sampled_from([b'{"$np":["<f8"]}', b'{"$complex":[1]}', b'{"$ref":"../x"}', b'{"$tuple":5}',
                         b"[" * 100_000 + b"]" * 100_000, b'{"$np":["<U0",1]}', b'{"$x":1}',
                         b"\x93NUMPY\x01\x00\x05\x00{{{{{", b"\x93NUMPY\x01\x00\x40\x00" + b" " * 64]),
    ))
    def test_any_undecodable_payload_is_a_corrupt_object(self, store, kind, payload):
        oid = reference_oid(kind, payload)
        self.raw_put(store, oid, kind, payload)
        try:
            store.get_value(oid)
        except CorruptObjectError as exc:
            assert exc.oid == oid
        except ObjectNotFoundError:  # a well-formed {"$ref": oid} to an absent child
            pass

    def test_get_many_answers_each_oid_as_get_and_get_value_do(self, store):
        values = [1.5, "text", [1, 2], {"a": None}, 2**70, np.arange(4.0), np.array([True, False])]
        oids = [store.put_value(v) for v in values]
        wrong = "1" * 64
        self.raw_put(store, wrong, "json", b"3")  # bytes that do not hash to their name
        asked = [*oids, MISSING, wrong, oids[0]]
        got = store.get_many(asked)

        def outcome(obj):
            return type(obj) if isinstance(obj, Exception) else (obj.kind, bytes(obj.payload))

        def alone(oid):
            try:
                return outcome(store.get(oid))
            except Exception as exc:  # noqa: BLE001 - compared with get_many's
                return type(exc)

        assert [outcome(obj) for obj in got] == [alone(oid) for oid in asked]
        assert isinstance(got[len(oids)], ObjectNotFoundError)
        small = store.get_many(asked, small_only=True)  # what is read must be what get reads
        assert [outcome(obj) for obj in small if obj is not None] == \
            [alone(oid) for oid, obj in zip(asked, small) if obj is not None]
        loaded = store.get_values(oids)
        assert repr(loaded[:5]) == repr(values[:5]) and type(loaded[4]) is int  # 2**70 stays an int
        assert all(np.array_equal(a, b) for a, b in zip(loaded[5:], values[5:]))
        with pytest.raises(ObjectNotFoundError):
            store.get_values([oids[0], MISSING])

    # -- listing and deleting -------------------------------------------------------------
    def test_contains_iter_and_delete(self, store):
        oids = {store.put("bytes", bytes([i]) * i) for i in range(20)}
        assert set(store.iter_oids()) == oids
        assert all(store.contains(oid) for oid in oids)
        victim = sorted(oids)[0]
        store.delete(victim)
        assert not store.contains(victim)
        assert set(store.iter_oids()) == oids - {victim}
        assert self.raw_get(store, victim) is None
        with pytest.raises(ObjectNotFoundError):
            store.get(victim)

    def test_deleted_object_can_be_put_again(self, store):
        oid = store.put("code", b"def f(): pass\n")
        store.delete(oid)
        assert store.put("code", b"def f(): pass\n") == oid
        assert bytes(store.get(oid).payload) == b"def f(): pass\n"

    # -- values ---------------------------------------------------------------------------
    def test_values_with_children_roundtrip(self, store):
        arr = np.arange(12.0).reshape(3, 4)
        value = {"a": arr, "b": [arr, (1, "x")], "c": None}
        oid = store.put_value(value)
        assert len(set(store.iter_oids())) == 2  # the dict and its (deduplicated) array child
        out = store.get_value(oid)
        assert out["b"][1] == (1, "x")
        np.testing.assert_array_equal(out["a"], arr)

    def test_missing_child_is_object_not_found(self, store):
        arr = np.arange(3)
        oid = store.put_value([arr])
        child = next(o for o in store.iter_oids() if o != oid)
        store.delete(child)
        with pytest.raises(ObjectNotFoundError) as info:
            store.get_value(oid)
        assert info.value.oid == child

    @settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.differing_executors])
    @given(kind=st.sampled_from(sorted(KINDS)), payload=st.binary(max_size=300))
    def test_any_payload_roundtrips(self, store, kind, payload):
        oid = store.put(kind, payload)
        assert oid == reference_oid(kind, payload)
        obj = store.get(oid)
        assert (obj.kind, bytes(obj.payload)) == (kind, payload)
        assert self.raw_get(store, oid) == (kind, payload)

    def test_threads_putting_the_same_objects(self, store):
        payloads = [bytes([i % 7]) * (i * 37) for i in range(30)]
        results: list[Any] = []

        def work() -> None:
            results.append([store.put("bytes", p) for p in payloads])

        threads = [threading.Thread(target=work) for _ in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert len(results) == 4 and all(r == results[0] for r in results)
        assert set(store.iter_oids()) == set(results[0])
        assert [bytes(store.get(o).payload) for o in results[0]] == payloads
