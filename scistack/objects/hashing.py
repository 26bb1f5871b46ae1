"""Object identity: ``oid = blake3(b"<kind> <len>\\0" + payload)``, over uncompressed bytes.

The header binds the kind and length into the id (as git does), so identical bytes stored
as two different kinds never collide. Payloads arrive as a sequence of buffers so that a
large array is hashed in place, never concatenated into a copy.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Sequence

import blake3

from scistack.objects.oid import Oid

Buffer = bytes | bytearray | memoryview

# Below this size the thread pool costs more than it saves (blake3 ~4.7 GB/s a core).
_MULTITHREAD_MIN_BYTES = 4 << 20

KINDS = frozenset({"npy", "json", "table", "bytes", "call", "code", "chunked", "chunk"})


def object_header(kind: str, length: int) -> bytes:
    """The header that prefixes every payload: ``b"<kind> <len>\\0"``."""
    return b"%s %d\x00" % (kind.encode("ascii"), length)


def payload_length(parts: Sequence[Buffer]) -> int:
    """Total byte length of a payload given as buffers."""
    return sum(memoryview(p).nbytes for p in parts)


def hash_object(kind: str, parts: Sequence[Buffer]) -> Oid:
    """The oid of a payload given as one or more buffers (hashed in place, no copy)."""
    length = payload_length(parts)
    threads = blake3.blake3.AUTO if length >= _MULTITHREAD_MIN_BYTES else 1
    hasher = blake3.blake3(object_header(kind, length), max_threads=threads)
    for part in parts:
        hasher.update(part)
    return Oid(hasher.digest().hex())


def hash_bytes(data: Buffer) -> str:
    """A plain blake3 hex digest (for keys that are not objects, e.g. call keys).

    Every digest here is `digest().hex()`, the same text as blake3's `hexdigest()`: that one
    builds its string a character at a time (~3k instructions a call, against ~0.3k), and a
    cache hit makes three (its call key, its origins digest, its output's check). The hasher
    is one of `_HASHERS`, `reset` after use, not a new one: making one was ~1k of each
    digest's ~7.5k instructions. A thread takes one out while it hashes (a deque's `pop` and
    `append` are atomic; a list's resized its array at each), so no two threads share one;
    one that raised is not put back."""
    try:
        hasher = _HASHERS.pop()
    except IndexError:
        hasher = blake3.blake3()
    hasher.update(data)
    digest = hasher.digest()
    hasher.reset()
    _HASHERS.append(hasher)
    return digest.hex()


_HASHERS: deque[blake3.blake3] = deque()  # reset hashers, free for `hash_bytes` (see it)
