"""The store contract, run against every store: memory (the reference) and local files."""

from __future__ import annotations

import os

import zstandard

from scistack.objects import LocalObjectStore, MemoryObjectStore, StoredObject
from tests.objects.store_contract import ObjectStoreContract

ZSTD_MAGIC = b"\x28\xb5\x2f\xfd"


def split_header(content: bytes) -> tuple[str, bytes]:
    """`b"<kind> <len>\\0" + payload` -> (kind, payload), checking the length."""
    header, _, payload = content.partition(b"\x00")
    kind, length = header.decode("ascii").split(" ")
    assert int(length) == len(payload), "the header's length must match the payload"
    return kind, payload


def read_object_file(path: str | os.PathLike) -> tuple[str, bytes]:
    """Decode an object file as docs/format.md describes it (zstd frame or verbatim)."""
    with open(path, "rb") as handle:
        content = handle.read()
    if content[:4] == ZSTD_MAGIC:
        content = zstandard.ZstdDecompressor().decompress(content, max_output_size=1 << 30)
    return split_header(content)


class TestMemoryObjectStore(ObjectStoreContract):
    def make_store(self, tmp_path):
        return MemoryObjectStore()

    def raw_get(self, store, oid):
        obj = store._objects.get(oid)
        return None if obj is None else (obj.kind, bytes(obj.payload))

    def raw_put(self, store, oid, kind, payload):
        store._objects[oid] = StoredObject(kind, payload)


class TestLocalObjectStore(ObjectStoreContract):
    def make_store(self, tmp_path):
        return LocalObjectStore(tmp_path / "objects")

    def raw_get(self, store, oid):
        path = os.path.join(store.root, oid[:2], oid[2:])
        return read_object_file(path) if os.path.exists(path) else None

    def raw_put(self, store, oid, kind, payload):
        os.makedirs(os.path.join(store.root, oid[:2]), exist_ok=True)
        with open(os.path.join(store.root, oid[:2], oid[2:]), "wb") as handle:
            handle.write(b"%s %d\x00" % (kind.encode(), len(payload)) + payload)


class TestLocalObjectStoreWithFsync(TestLocalObjectStore):
    """The same contract with `fsync=True` (the power-loss-safe mode)."""

    def make_store(self, tmp_path):
        return LocalObjectStore(tmp_path / "objects", fsync=True)
