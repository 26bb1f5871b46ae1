"""Memory on read is bounded by the load limit and by what a frame plausibly holds, never by
an object's own header: a small crafted file claiming 512 MB costs no memory; a genuine
object over the limit says "too large to load whole", not "corrupt"."""

from __future__ import annotations

import os
import subprocess
import sys

import blake3
import numpy as np
import pytest
import zstandard

from scistack.errors import CorruptObjectError, ObjectTooLargeError
from scistack.objects import LocalObjectStore

MB = 1 << 20
CLAIM = 512 * MB

CHILD = """
import sys
from scistack.errors import CorruptObjectError
from scistack.objects import LocalObjectStore

def peak():
    with open("/proc/self/status") as status:
        return next(int(l.split()[1]) * 1024 for l in status if l.startswith("VmHWM:"))

store = LocalObjectStore(sys.argv[1])
base = peak()
for _ in range(2):
    try:
        store.get(sys.argv[2]) if _ == 0 else store.verify(sys.argv[2])
        print("loaded")
    except CorruptObjectError as exc:
        print("corrupt", "hashes to" in str(exc))
print(peak() - base)
"""


def crafted(store: LocalObjectStore) -> str:
    """A ~20 KB zstd file whose header (and frame) claim 512 MB of zeros, under a forged oid."""
    header = f"bytes {CLAIM}".encode() + b"\x00"
    oid = blake3.blake3(b"not these bytes").hexdigest()
    path = store.path_of(oid)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "wb") as out:
        with zstandard.ZstdCompressor(level=3).stream_writer(out, size=len(header) + CLAIM) as writer:
            writer.write(header)
            zeros = bytes(MB)
            for _ in range(CLAIM // MB):
                writer.write(zeros)
    assert path.stat().st_size < 100_000
    return oid


def test_a_small_crafted_object_claiming_512_mb_allocates_nothing(tmp_path):
    store = LocalObjectStore(tmp_path / "objects")
    oid = crafted(store)
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(sys.path))
    out = subprocess.run([sys.executable, "-c", CHILD, str(store.root), oid], env=env,
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-3000:]
    *verdicts, grown = out.stdout.split("\n")[:-1]
    assert verdicts == ["corrupt True", "corrupt True"]
    assert int(grown) < 64 * MB  # not the 512 MB its header claims


def test_a_genuine_object_over_the_limit_is_too_large_not_corrupt(tmp_path):
    store = LocalObjectStore(tmp_path / "objects", max_load_bytes=2 * MB)
    oid = store.put_value(np.zeros(MB))  # 8 MB, compresses to almost nothing
    with pytest.raises(ObjectTooLargeError, match="too large to load whole.*lazily") as caught:
        store.get(oid)
    assert not isinstance(caught.value, CorruptObjectError)
    store.verify(oid)  # fsck can still prove it intact
    assert LocalObjectStore(tmp_path / "objects").get_value(oid).nbytes == 8 * MB


def test_the_limit_comes_from_the_environment(tmp_path, monkeypatch):
    monkeypatch.setenv("SCISTACK_MAX_LOAD_BYTES", str(MB))
    store = LocalObjectStore(tmp_path / "objects")
    oid = store.put_value(np.zeros(MB // 4))
    with pytest.raises(ObjectTooLargeError):
        store.get(oid)
    monkeypatch.setenv("SCISTACK_MAX_LOAD_BYTES", "lots")
    with pytest.raises(ValueError, match="SCISTACK_MAX_LOAD_BYTES"):
        LocalObjectStore(tmp_path / "objects")
