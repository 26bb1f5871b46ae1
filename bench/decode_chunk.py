"""Micro-benchmark: the CPU cost of decoding one compressible 4 MiB chunk, step by step.

64 chunks (32768 x 64 int16) of bench/large.py's compressible recording are stored in a
LocalObjectStore in a temporary directory; each step is timed once per chunk on one thread
and the median printed in ms per chunk. The steps are those of `LocalObjectStore.get_into`
(inflate, unshuffle, blake3), the whole `get_into` into a warm buffer, and the alternatives
weighed for it (the earlier column-copy unshuffle, blake3 on all cores, plain zstd). Not a
test: it asserts only that every way decodes the same bytes.

Run: python bench/decode_chunk.py [--chunks 64]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import blake3
import numpy as np
import zstandard

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from large import CHANNELS, make_source  # noqa: E402
from scistack.objects import LocalObjectStore  # noqa: E402
from scistack.objects import shuffle  # noqa: E402
from scistack.objects.hashing import object_header  # noqa: E402

ROWS = 32768


def column_copy(out: np.ndarray, data, width: int) -> None:
    """The unshuffle before this benchmark: one strided byte-column copy per plane."""
    rows, columns = np.frombuffer(data, dtype=np.uint8).reshape(width, -1), out.reshape(-1, width)
    for k in range(width):
        columns[:, k] = rows[k]


def median_ms(step, items) -> float:
    times = []
    for item in items:
        started = time.perf_counter()
        step(item)
        times.append(time.perf_counter() - started)
    return statistics.median(times) * 1e3


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--chunks", type=int, default=64)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="scistack-decode-") as work:
        source = Path(work) / "source.dat"
        make_source(source, args.chunks * ROWS * CHANNELS * 2 >> 20, "compressible")
        data = np.fromfile(source, dtype=np.uint8).reshape(args.chunks, -1)
        payloads = [data[i] for i in range(args.chunks)]
        store = LocalObjectStore(Path(work) / "objects")
        oids = [store.put("chunk", p) for p in payloads]
        header = object_header("chunk", payloads[0].size)
        frames = [store.path_of(oid).read_bytes() for oid in oids]
        widths = [shuffle.width_of(f[:12]) for f in frames]
        assert set(widths) == {2}, f"stored widths {sorted(set(widths))}, expected 2 (objects/shuffle.py choose)"
        inflated = [np.frombuffer(zstandard.ZstdDecompressor().decompress(f[12:]), np.uint8)[len(header):]
                    for f in frames]
        plain = [zstandard.ZstdCompressor(level=level).compress(header + p.tobytes())
                 for level in (1, -1) for p in payloads[:8]]
        stored = sum(len(f) for f in frames) / sum(p.size for p in payloads)
        out, scratch = np.empty(payloads[0].size, np.uint8), bytearray(len(header) + payloads[0].size)
        decompressor = zstandard.ZstdDecompressor()
        steps = {
            "inflate (zstd -1, shuffled)": (lambda f: decompressor.stream_reader(
                memoryview(f)[12:], read_across_frames=False).readinto(scratch), frames),
            "unshuffle, integer shifts": (lambda d: shuffle.unshuffle_into(out, d, 2), inflated),
            "unshuffle, column copies (before)": (lambda d: column_copy(out, d, 2), inflated),
            "blake3, one thread": (lambda p: blake3.blake3(header).update(p).digest(), payloads),
            "blake3, all cores": (lambda p: blake3.blake3(header, max_threads=blake3.blake3.AUTO)
                                  .update(p).digest(), payloads),
            "get_into, whole (warm buffer)": (lambda oid: store.get_into(oid, out), oids),
            "inflate plain zstd 1 (unshuffled)": (lambda f: decompressor.decompress(f), plain[:8]),
            "inflate plain zstd -1 (unshuffled)": (lambda f: decompressor.decompress(f), plain[8:]),
            "copy (memcpy floor)": (lambda p: np.copyto(out, p), payloads),
        }
        for oid, payload in zip(oids[:4], payloads):
            store.get_into(oid, out)
            assert np.array_equal(out, payload)
        print(f"# {args.chunks} chunks of {payloads[0].size >> 20} MiB, shuffled stored size {stored:.1%}; "
              f"plain zstd 1 {sum(map(len, plain[:8])) / (8 * payloads[0].size):.1%}, "
              f"-1 {sum(map(len, plain[8:])) / (8 * payloads[0].size):.1%}")
        for name, (step, items) in steps.items():
            step(items[0])
            print(f"{name:38s} {median_ms(step, items):6.3f} ms")


if __name__ == "__main__":
    main()
