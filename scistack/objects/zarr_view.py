"""Open a stored chunked array with zarr-python, read-only: `open_zarr(db.store, oid)`.

A `chunked` manifest already holds a valid Zarr v3 `zarr.json` (the `zarr` member) and the
oid of every chunk; a chunk object's payload is exactly the bytes Zarr's `bytes` codec
expects for that chunk. So a Zarr store over scistack only renames keys: `zarr.json` is the
manifest's metadata and `c/i/j` is chunk (i, j). Nothing is copied or converted, every chunk
is verified by the object store as it is read, and zarr-python stays optional (it is
imported only here; `pip install zarr`).
"""

from __future__ import annotations

import json
from typing import Any

from scistack.objects.chunked import array_manifest, parse_manifest


def open_zarr(store: Any, oid: str) -> Any:
    """A read-only `zarr.Array` over the chunked array `oid` in `store` (a Database given,
    as in `open_zarr(db, oid)`, stands for its object store)."""
    import zarr

    if hasattr(store, "store") and hasattr(store, "index"):  # (a Database: had raised AttributeError)
        store = store.store

    return zarr.open_array(store=_store_class()(store, oid), mode="r", zarr_format=3)


_CLASS: list = []


def _store_class() -> type:
    """The zarr Store subclass (defined on first use, so zarr is only imported when wanted)."""
    if _CLASS:
        return _CLASS[0]
    from zarr.abc.store import OffsetByteRequest, RangeByteRequest, Store, SuffixByteRequest

    class ScistackZarrStore(Store):
        """Zarr keys over one chunked manifest: `zarr.json` and `c/<i>/<j>...` (read-only)."""

        supports_writes = False
        supports_deletes = False
        supports_partial_writes = False
        supports_listing = True

        def __init__(self, objects: Any, oid: str) -> None:
            super().__init__(read_only=True)
            tree = parse_manifest(objects.get(oid).payload)
            if tree["type"] != "array":
                raise ValueError(f"object {oid} is a chunked table, not an array: zarr opens arrays only")
            self.objects, self.oid = objects, oid
            self.manifest = array_manifest(tree)
            self.metadata = json.dumps(tree["zarr"]).encode()
            self.keys = {"zarr.json": None} | {
                "c/" + "/".join(map(str, index)): self.manifest.oid_at(index)
                for index in self.manifest.indices()
            }

        def __eq__(self, other: object) -> bool:
            return isinstance(other, ScistackZarrStore) and other.oid == self.oid

        async def get(self, key: str, prototype: Any, byte_range: Any = None) -> Any:
            if key not in self.keys:
                return None
            data = self.metadata if key == "zarr.json" else bytes(self.objects.get(self.keys[key]).payload)
            if isinstance(byte_range, RangeByteRequest):
                data = data[byte_range.start : byte_range.end]
            elif isinstance(byte_range, OffsetByteRequest):
                data = data[byte_range.offset :]
            elif isinstance(byte_range, SuffixByteRequest):
                data = data[-byte_range.suffix :]
            return prototype.buffer.from_bytes(data)

        async def get_partial_values(self, prototype: Any, key_ranges: Any) -> list:
            return [await self.get(key, prototype, byte_range) for key, byte_range in key_ranges]

        async def exists(self, key: str) -> bool:
            return key in self.keys

        async def set(self, key: str, value: Any) -> None:
            raise PermissionError("a scistack object is immutable: save a new value instead")

        async def delete(self, key: str) -> None:
            raise PermissionError("a scistack object is immutable; `scistack gc` removes unnamed ones")

        async def list(self) -> Any:
            for key in self.keys:
                yield key

        async def list_prefix(self, prefix: str) -> Any:
            for key in self.keys:
                if key.startswith(prefix):
                    yield key

        async def list_dir(self, prefix: str) -> Any:
            prefix = prefix.rstrip("/") + "/" if prefix else ""
            seen = set()
            for key in self.keys:
                if key.startswith(prefix):
                    head = key[len(prefix) :].split("/", 1)[0]
                    if head not in seen:
                        seen.add(head)
                        yield head

    _CLASS.append(ScistackZarrStore)
    return ScistackZarrStore
