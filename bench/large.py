"""Values bigger than memory (issue 14): a large int16 memmap saved and loaded chunked,
next to a raw floor measured in the same run on the same bytes.

Raw floor: save = read the memmap in 4 MB blocks, blake3 them, write one file; load = read
that file into one preallocated array of plain pages in a fresh process (see raw_load).
scistack: `Var.save(memmap)` and `Var.load()` (whole, a numpy array), a streamed lazy read
(32k rows at a time), a 1-channel 1-second slice of a lazy load (bytes read, chunks, ms),
and the new bytes on disk of a second version with 1 % of the samples (one contiguous
stretch) changed. Each save and load runs in a fresh process so its peak RSS is its own.
Done for incompressible noise and for zstd-compressible data. The OS page cache is warm
for both sides (the files were just written); nothing is dropped, but before each timed
whole load dirty pages are written back, free memory is compacted (`settle`, as root) and
the source memmap leaves the page cache, so neither side pays for the leftovers of the
writes before. Each whole load is
then timed once more with its side's files evicted from the page cache (`evict`: the raw
file, or the project's files), as a recording's first read in a session comes from disk.

Not a test: it asserts nothing. Run: python bench/large.py [--mb 512] [--reps 3] [--dir DIR]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import blake3
import numpy as np

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:  # (the tests' helpers, as bench/lab.py takes the tests' servers)
    sys.path.insert(0, str(REPO))

from tests.helpers import evict  # noqa: E402 - one copy, shared with tests/test_chunked.py
CHANNELS, RATE = 64, 30_000
BLOCK = 4 << 20


def make_source(path: Path, mb: int, kind: str) -> tuple[int, int]:
    """Write an int16 (n, 64) recording; returns its shape."""
    n = (mb << 20) // (2 * CHANNELS)
    out = np.memmap(path, dtype="<i2", mode="w+", shape=(n, CHANNELS))
    rng = np.random.default_rng(0)
    step = 1 << 16
    for start in range(0, n, step):
        rows = min(step, n - start)
        if kind == "noise":
            out[start : start + rows] = rng.integers(-32768, 32767, (rows, CHANNELS), dtype=np.int16)
        else:  # a slow signal with small noise: zstd pays
            t = np.arange(start, start + rows)[:, None]
            out[start : start + rows] = (200 * np.sin(t / 3000 + np.arange(CHANNELS))).astype(np.int16) \
                + rng.integers(-3, 4, (rows, CHANNELS), dtype=np.int16)
    out.flush()
    del out
    return n, CHANNELS


def raw_save(source: Path, target: Path) -> float:
    started = time.perf_counter()
    hasher = blake3.blake3(max_threads=blake3.blake3.AUTO)
    with open(source, "rb") as src, open(target, "wb") as dst:
        while block := src.read(BLOCK):
            hasher.update(block)
            dst.write(block)
    hasher.hexdigest()
    return time.perf_counter() - started


def zstd_save(source: Path, target: Path) -> float:
    """The floor for compressible data: the raw floor plus zstd level 1 (all cores) on the way."""
    import zstandard

    started = time.perf_counter()
    hasher = blake3.blake3(max_threads=blake3.blake3.AUTO)
    with open(source, "rb") as src, open(target, "wb") as dst:
        with zstandard.ZstdCompressor(level=1, threads=-1).stream_writer(dst, closefd=False) as out:
            while block := src.read(BLOCK):
                hasher.update(block)
                out.write(block)
    hasher.hexdigest()
    return time.perf_counter() - started


RAW_LOAD = r"""
import mmap, os, sys, time
import numpy as np
target, how = sys.argv[1], sys.argv[2]
started = time.perf_counter()
size = os.path.getsize(target)
if how == "numpy":
    out = np.empty(size, dtype=np.uint8)
else:
    flags = mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS | (mmap.MAP_POPULATE if how == "populate" else 0)
    out = np.frombuffer(mmap.mmap(-1, size, flags=flags), dtype=np.uint8)
with open(target, "rb", buffering=0) as src:
    view, done = memoryview(out), 0
    while done < len(out):
        done += src.readinto(view[done:])
print(time.perf_counter() - started)
"""


def settle(source: Path | None = None) -> bool:
    """Write back dirty pages and defragment free memory before a timed load (the floor's and
    scistack's alike), so that each pays for its own work: right after writing GBs, this VM's
    kernel stalls faults of fresh memory on writeback and compaction (an 8 GB load took 4.3 s
    settled and 12-33 s straight after the save). The source memmap, which both saves read
    whole, leaves the page cache too (`evict`): an 8 GB load then took 6-9 s, not 13, since
    its result no longer had to push the bench's own leftovers out of memory. Compaction needs
    root; False when not done."""
    if source is not None:
        evict([source])
    os.sync()
    try:
        Path("/proc/sys/vm/compact_memory").write_text("1")
        return True
    except OSError:
        return False


def raw_load(target: Path, source: Path) -> float:
    """Read the raw file into one array in a fresh process, once, into the same kind of memory
    the scistack load fills (plain anonymous pages, objects/chunked.py `result_array`). It
    used to be the fastest of three allocations against one scistack load: on this VM a fresh
    8 GB result costs 4-20 s by the host's state alone, so a best of three measured that
    spread more than either reader."""
    settle(source)
    done = subprocess.run([sys.executable, "-c", RAW_LOAD, str(target), "plain"],
                          capture_output=True, text=True, check=True)
    return float(done.stdout.strip())


CHILD = r"""
import json, resource, sys, time
import numpy as np
from scistack import BaseVariable, configure_database
op, db_path, source, n = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
db = configure_database(db_path, ["subject"])
class Rec(BaseVariable): pass
out = {}
started = time.perf_counter()
if op == "save":
    Rec.save(np.memmap(source, dtype="<i2", mode="r", shape=(n, 64)), subject=1)
elif op == "save_dask":  # the same bytes as a dask array that reads the file (no mmap) in
    import dask, dask.array as da  # blocks of 100,000 rows, unlike the grid's 32,768
    rows = 100_000
    read = lambda start, count: np.fromfile(source, dtype="<i2", count=count * 64, offset=start * 128).reshape(count, 64)
    blocks = [da.from_delayed(dask.delayed(read)(s, min(rows, n - s)), shape=(min(rows, n - s), 64), dtype="<i2")
              for s in range(0, n, rows)]
    Rec.save(da.concatenate(blocks), subject=2)
elif op == "save2":  # 1% of the samples (one contiguous stretch) changed
    x = np.memmap(source, dtype="<i2", mode="c", shape=(n, 64))
    x[n // 2 : n // 2 + n // 100] += 1
    Rec.save(x, subject=1)
elif op == "load":
    assert Rec.load(subject=1, version=1).data.shape == (n, 64)
elif op == "stream":
    lazy = Rec.load(subject=1, version=1, lazy=True).data
    for start in range(0, n, 32768):
        lazy[start : start + 32768]
elif op == "slice":
    times = []
    for rep in range(5):
        lazy = Rec.load(subject=1, version=1, lazy=True).data
        t0 = time.perf_counter()
        part = lazy[n // 3 + rep * 30000 : n // 3 + rep * 30000 + 30000, 3]
        times.append(time.perf_counter() - t0)
    out.update(slice_ms=sorted(times)[2] * 1e3, bytes_read=lazy.bytes_read, chunks_read=lazy.chunks_read,
               chunk_bytes=int(np.prod(lazy.chunks)) * 2, slice_bytes=part.nbytes)
out["seconds"] = time.perf_counter() - started
db.close()
# VmHWM, not ru_maxrss: Linux carries ru_maxrss across exec from the forking parent
hwm = [l for l in open("/proc/self/status") if l.startswith("VmHWM:")][0]
out["peak_rss_mb"] = int(hwm.split()[1]) / 1024
print(json.dumps(out))
"""


SETTLED: list[bool] = []  # whether each timed whole load ran on settled memory (`settle`)


def child(op: str, db: Path, source: Path, n: int) -> dict:
    env = dict(os.environ, PYTHONPATH=str(REPO))
    done = subprocess.run([sys.executable, "-c", CHILD, op, str(db), str(source), str(n)],
                          env=env, capture_output=True, text=True, check=False)
    if done.returncode:
        raise RuntimeError(done.stderr[-2000:])
    return json.loads(done.stdout.strip().splitlines()[-1])


def disk_bytes(root: Path) -> int:
    return sum(p.stat().st_size for p in root.rglob("*") if p.is_file())


def run(kind: str, mb: int, reps: int, work: Path) -> dict:
    source = work / f"{kind}.dat"
    n, _ = make_source(source, mb, kind)
    nbytes = n * CHANNELS * 2
    floor_save, floor_load, floor_zstd, saves, loads, streams = [], [], [], [], [], []
    floor_cold, cold_loads = [], []  # the same whole loads, each side's files evicted first
    for rep in range(reps):
        target = work / "raw.bin"
        floor_save.append(raw_save(source, target))
        floor_load.append(raw_load(target, source))
        evict([target])
        floor_cold.append(raw_load(target, source))
        target.unlink()
        if kind != "noise":
            floor_zstd.append(zstd_save(source, target))
            target.unlink()
        project = work / f"{kind}-{rep}"
        project.mkdir()
        db = project / "large.duckdb"
        saves.append(child("save", db, source, n))
        SETTLED.append(settle(source))
        loads.append(child("load", db, source, n))
        evict([p for p in (project / ".scistack").rglob("*") if p.is_file()])
        settle(source)
        cold_loads.append(child("load", db, source, n))
        streams.append(child("stream", db, source, n))
        if rep == reps - 1:
            dask_save = child("save_dask", db, source, n)
            sliced = child("slice", db, source, n)
            before = disk_bytes(project / ".scistack" / "objects")  # the dask save added nothing
            second = child("save2", db, source, n)
            added = disk_bytes(project / ".scistack" / "objects") - before
            stored = before
        shutil.rmtree(project) if rep < reps - 1 else None
    med = statistics.median
    return {
        "data": kind, "array_mb": nbytes / 2**20, "shape": [n, CHANNELS],
        "floor_save_mb_s": nbytes / 2**20 / med(floor_save), "floor_load_mb_s": nbytes / 2**20 / med(floor_load),
        "save_mb_s": nbytes / 2**20 / med(s["seconds"] for s in saves),
        "load_mb_s": nbytes / 2**20 / med(s["seconds"] for s in loads),
        "stream_mb_s": nbytes / 2**20 / med(s["seconds"] for s in streams),
        "save_ratio": med(floor_save) / med(s["seconds"] for s in saves),
        "load_ratio": med(floor_load) / med(s["seconds"] for s in loads),
        "zstd_floor_save_mb_s": nbytes / 2**20 / med(floor_zstd) if floor_zstd else None,
        "save_ratio_to_zstd_floor": med(floor_zstd) / med(s["seconds"] for s in saves) if floor_zstd else None,
        "cold_floor_load_s": floor_cold, "cold_load_s": [s["seconds"] for s in cold_loads],
        "cold_load_ratio": med(floor_cold) / med(s["seconds"] for s in cold_loads),
        "best_save_ratio": min(floor_save) / min(s["seconds"] for s in saves),
        "best_load_ratio": min(floor_load) / min(s["seconds"] for s in loads),
        "floor_save_s": floor_save, "floor_load_s": floor_load,
        "save_s": [s["seconds"] for s in saves], "load_s": [s["seconds"] for s in loads],
        "save_rss_mb": med(s["peak_rss_mb"] for s in saves),
        "load_rss_mb": med(s["peak_rss_mb"] for s in loads),
        "stream_rss_mb": med(s["peak_rss_mb"] for s in streams),
        "stored_mb": stored / 2**20,
        "dask_save_mb_s": nbytes / 2**20 / dask_save["seconds"], "dask_save_rss_mb": dask_save["peak_rss_mb"],
        "slice": sliced, "second_version_new_mb": added / 2**20, "loads_settled": all(SETTLED),
        "second_version_new_pct": 100 * added / nbytes, "second_version_save_s": second["seconds"],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mb", type=int, default=512)
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--dir", default=None, help="where to write (default: a temp dir)")
    parser.add_argument("--data", default="noise,compressible")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="scistack-large-", dir=args.dir))
    try:
        for kind in args.data.split(","):
            print(json.dumps(run(kind, args.mb, args.reps, work)), flush=True)
            for path in work.glob("*.dat"):
                path.unlink()
    finally:
        shutil.rmtree(work, ignore_errors=True)
    print(f"# parent peak RSS {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MB "
          "(it wrote the source memmaps)")


if __name__ == "__main__":
    main()
