"""Several real processes (and threads) writing into one store at the same moment.

Puts are atomic (temp file in the same directory, then rename) and idempotent, so writers
need no lock: afterwards every object reads back verified and no temp file is left.
"""

from __future__ import annotations

import multiprocessing
import os
import stat
import subprocess
import sys

import numpy as np

from scistack.objects import LocalObjectStore

WORKERS = 3
MB = 1 << 20


def shared_values() -> list:
    """The same values in every worker: small/large, raw/zstd, a container with children."""
    rng = np.random.default_rng(7)
    return [
        b"tiny",
        rng.random(500),  # small, raw
        np.zeros(50_000),  # small, zstd
        rng.random(400_000),  # large (3.2 MB), raw, streamed
        np.zeros(400_000, dtype=np.int64) + 3,  # large, zstd, streamed
        {"a": np.arange(10), "b": [np.arange(10), "x"]},
    ] + [f"value {i}" for i in range(200)]


def own_values(worker: int) -> list:
    rng = np.random.default_rng(1000 + worker)
    return [rng.random(200) for _ in range(50)] + [np.full(300_000, worker)] + [
        {"worker": worker, "i": i} for i in range(100)]


def put_all(root: str, worker: int, barrier, results) -> None:
    store = LocalObjectStore(root)
    barrier.wait(timeout=60)
    oids = [store.put_value(v) for v in shared_values()]
    oids += [store.put_value(v) for v in own_values(worker)]
    oids += [store.put_value(v) for v in shared_values()]  # again: existing objects
    results.put((worker, oids))


def test_processes_putting_same_and_different_objects_at_once(tmp_path):
    root = str(tmp_path / "objects")
    ctx = multiprocessing.get_context("spawn")
    barrier, results = ctx.Barrier(WORKERS), ctx.Queue()
    procs = [ctx.Process(target=put_all, args=(root, w, barrier, results)) for w in range(WORKERS)]
    for proc in procs:
        proc.start()
    got = dict(results.get(timeout=120) for _ in procs)
    for proc in procs:
        proc.join(timeout=60)
        assert proc.exitcode == 0

    store = LocalObjectStore(root)
    n_shared = len(shared_values())
    assert all(got[w][:n_shared] == got[0][:n_shared] for w in range(WORKERS))
    every = {oid for oids in got.values() for oid in oids}
    assert set(store.iter_oids()) >= every
    for oid in every:
        store.get(oid)  # verifies the hash
        assert stat.S_IMODE(os.stat(store.path_of(oid)).st_mode) == 0o444
    for w in range(WORKERS):
        np.testing.assert_array_equal(store.get_value(got[w][n_shared + 50]), np.full(300_000, w))
    assert list(store.iter_temp_files()) == []
    assert not [p for p in (tmp_path / "objects").rglob("*") if p.name.startswith(".tmp-")]


THREADS_CHILD = """
import sys, threading
import numpy as np
from scistack.objects import LocalObjectStore
store = LocalObjectStore(sys.argv[1])
errors = []
def work(seed):
    rng = np.random.default_rng(seed % 3)  # threads 0 and 3 etc. write the same objects
    for _ in range(25):
        payload = rng.integers(0, 3, 200_000, dtype=np.uint8).tobytes()  # compressible
        oid = store.put("bytes", payload)
        try:
            assert bytes(store.get(oid).payload) == payload
        except Exception as exc:
            errors.append(repr(exc))
threads = [threading.Thread(target=work, args=(k,)) for k in range(6)]
for t in threads: t.start()
for t in threads: t.join()
print(len(errors), errors[:1])
"""


def test_threads_compressing_at_once_in_one_store(tmp_path):
    """Run in a child process: a zstd context shared between threads used to segfault."""
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(sys.path))
    out = subprocess.run([sys.executable, "-c", THREADS_CHILD, str(tmp_path / "objects")],
                         capture_output=True, text=True, timeout=120, env=env)
    assert out.returncode == 0, f"child died ({out.returncode}): {out.stderr[-2000:]}"
    assert out.stdout.startswith("0 "), out.stdout
    assert list(LocalObjectStore(tmp_path / "objects").iter_temp_files()) == []
