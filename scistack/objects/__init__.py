"""The content-addressed object store: canonical encoding, blake3 ids, loose files.

This layer knows nothing of DuckDB, variables or lineage. See docs/format.md.
"""

from scistack.objects.hashing import hash_object
from scistack.objects.local import LocalObjectStore
from scistack.objects.oid import Oid, is_valid_oid, validate_oid
from scistack.objects.store import MemoryObjectStore, ObjectStore, StoredObject

__all__ = [
    "LocalObjectStore", "MemoryObjectStore", "ObjectStore", "Oid", "StoredObject",
    "hash_object", "is_valid_oid", "validate_oid",
]
