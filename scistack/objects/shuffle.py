"""Byte-shuffled zstd frames for array chunks: how Blosc makes numeric data compress well, fast.

A chunk's payload is the raw bytes of one block of an array: element after element, each
`width` bytes. Their high bytes change slowly and their low bytes fast, so zstd sees little
repetition in them as they come. Stored shuffled (every element's byte 0, then every byte 1,
...) the slow bytes form long runs: on a recording (int16, a slow signal plus small noise)
zstd's fast level -1 then stores 51 % of the bytes at ~2.8 GB/s and inflates them at ~7 GB/s
on one core, where plain level 1 stores 66 % at ~0.3 GB/s and inflates at ~1.2 GB/s.

The stored form is a zstd *skippable frame* saying the width (`50 2A 4D 18`, its size 4,
then "SH", the width, 0) followed by one ordinary frame of the object's header and its
shuffled payload. The oid is still over the header and the payload as given (shuffling is
how it is stored, as compression is). Any zstd decoder (the command-line tool MATLAB uses)
skips the first frame; the payload it inflates is then unshuffled (docs/format.md, 1.3).
"""

from __future__ import annotations

import struct
from collections.abc import Sequence

import numpy as np
import zstandard

from scistack.objects.hashing import Buffer

SKIP_MAGIC = b"\x50\x2a\x4d\x18"  # the first of zstd's skippable-frame magic numbers
_TAG = b"SH"
SHUFFLE_LEVEL = -1       # on shuffled bytes, as small as level 1 and ~3x faster (see above)
PLAIN_LEVEL = 1
WIDTHS = (2, 4, 8)       # element sizes tried (a 1-byte dtype gains nothing from a shuffle)
MAX_SHUFFLED = 64 << 20  # a shuffled frame is built in memory: chunks only, never a huge object
_AS_INTEGER = {2: np.dtype("<u2"), 4: np.dtype("<u4")}  # unshuffled by integer arithmetic
PLAIN_MARGIN = 1.1       # plain zstd must be >10 % smaller than the best shuffle to be chosen
WIDTH_MARGIN = 1.05      # the narrowest width within 5 % of the smallest is taken (see `choose`)


def prefix(width: int) -> bytes:
    """The skippable frame that announces a shuffled payload of `width`-byte elements."""
    return SKIP_MAGIC + struct.pack("<I", 4) + _TAG + bytes([width, 0])


def width_of(head: bytes) -> int:
    """The element width a stored object's first bytes announce (0: not shuffled, or unreadable)."""
    if len(head) < 12 or head[:4] != SKIP_MAGIC or head[8:10] != _TAG:
        return 0
    if struct.unpack_from("<I", head, 4)[0] != 4 or head[11] != 0 or head[10] not in WIDTHS:
        return 0
    return head[10]


def shuffled(payload: Buffer, width: int) -> bytes:
    """Byte `k` of every element, for k = 0 .. width-1 (the payload's length is a multiple of width)."""
    out = np.empty(len(memoryview(payload).cast("B")), dtype=np.uint8)
    shuffle_into(out, payload, width)
    return out.tobytes()


def shuffle_into(out: np.ndarray, payload: Buffer, width: int) -> None:
    """`shuffled(payload)` written into `out` (a contiguous uint8 array of the same length).

    For 2- and 4-byte elements each byte plane is the elements, viewed as little-endian
    integers, shifted and narrowed in one whole-array pass: ~0.35 ms per 4 MiB of int16,
    where the strided byte-column copy numpy makes of a transpose took ~1.1 ms (a third of
    what storing a shuffled chunk costs). 8-byte elements keep the column copy."""
    data = np.frombuffer(payload, dtype=np.uint8)
    planes = out.reshape(width, -1)
    if width in _AS_INTEGER and data.size:
        element = data.view(_AS_INTEGER[width])
        np.copyto(planes[0], element, casting="unsafe")  # the low byte (a narrowing cast)
        for k in range(1, width):
            np.copyto(planes[k], element >> (8 * k), casting="unsafe")
        return
    planes[...] = data.reshape(-1, width).T


def unshuffle_into(out: np.ndarray, data: Buffer, width: int) -> None:
    """Write the payload `shuffled` made of it into `out` (a C-contiguous uint8 array of the
    same length).

    For 2- and 4-byte elements, each element is built as an integer from its byte planes,
    highest first (`e = e << 8 | plane`), in whole-array passes over `out` viewed as
    little-endian integers: ~0.4 ms per 4 MiB of int16 (a strided byte-column copy per plane
    took ~1.2 ms; numpy walks it element by element). For 8-byte elements those passes cost
    more than the column copies, which are kept."""
    rows = np.frombuffer(data, dtype=np.uint8).reshape(width, -1)
    if width in _AS_INTEGER:
        element = out.view(_AS_INTEGER[width])
        np.copyto(element, rows[width - 1])  # widening, zero-extended
        for k in range(width - 2, -1, -1):
            element <<= 8
            element |= rows[k]
        return
    columns = out.reshape(-1, width)
    for k in range(width):
        columns[:, k] = rows[k]


def encode(header: bytes, payload: Buffer, width: int) -> list[bytes]:
    """The stored form, in the order written: the announcing frame, then zstd of the header
    and the shuffled payload (shuffled straight behind the header: no copy of either)."""
    body = np.empty(len(header) + len(memoryview(payload).cast("B")), dtype=np.uint8)
    body[: len(header)] = np.frombuffer(header, dtype=np.uint8)
    shuffle_into(body[len(header) :], payload, width)
    return [prefix(width), zstandard.ZstdCompressor(level=SHUFFLE_LEVEL).compress(body)]


def choose(samples: Sequence[bytes], length: int, kind: str, min_saving: float) -> int | None:
    """How to store a large payload, judged on samples of it (aligned to 8 bytes): None raw,
    0 plain zstd (level 1), or a shuffle width. The narrowest width whose frame is within
    `WIDTH_MARGIN` of the smallest is taken: on int16 data all three widths compress within
    a few % of each other, picked by the samples' noise, and a 2-byte unshuffle costs a third
    of an 8-byte one; a width that does not match the data is 8-60 % larger. Plain zstd is
    taken only if smaller by more than `PLAIN_MARGIN` (a shuffled frame writes and reads
    several times faster). Compression is kept only when it saves at least
    `min_saving`; only chunks are shuffled (whole elements of one dtype, and small enough to
    shuffle in memory)."""
    sample = b"".join(samples)
    plain = len(zstandard.ZstdCompressor(level=PLAIN_LEVEL).compress(sample))
    best, best_size = 0, plain
    if kind == "chunk" and length <= MAX_SHUFFLED:
        squeeze = zstandard.ZstdCompressor(level=SHUFFLE_LEVEL)
        sizes = {width: len(squeeze.compress(b"".join(shuffled(s, width) for s in samples)))
                 for width in WIDTHS if not (length % width or any(len(s) % width for s in samples))}
        if sizes:
            smallest = min(sizes.values())
            width = min(w for w in sizes if sizes[w] <= WIDTH_MARGIN * smallest)
            if sizes[width] <= PLAIN_MARGIN * plain:
                best, best_size = width, sizes[width]
    return best if best_size <= (1 - min_saving) * len(sample) else None
