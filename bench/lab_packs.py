"""A lab's pack count against what a machine waits for (lab mode: PostgreSQL + S3 on loopback).

    python bench/lab_packs.py                 # 100 and 1,000 packs (~2 min)
    python bench/lab_packs.py --packs 100,1000,5000

A lab's bucket gathers a pack per batch (packs there are never merged). For each count this
makes that many batches of 5 small values on one machine, then on a fresh machine (an empty
cache) times opening, 100 loads of values it never saw (each a ranged GET of one pack record
after finding the pack), and on the same machine again opening with its pack indexes kept.
Nothing here should grow with the pack count but opening (each kept index file is read) and
the first load on a fresh machine (it fetches the index of every pack it lacks).
"""

from __future__ import annotations

import argparse
import os
import random
import shutil
import signal
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import lab  # noqa: E402 - its service helpers and project opener

import scistack.database as database_module  # noqa: E402
from scistack import BaseVariable  # noqa: E402


class PackBenchValue(BaseVariable):
    pass


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--packs", default="100,1000")
    args = parser.parse_args(argv)
    counts = sorted(int(k) for k in args.packs.split(","))
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    base = Path(tempfile.mkdtemp(prefix="scistack-bench-packs-"))
    os.chmod(base, 0o755)
    cluster, server = lab._services(base)
    try:
        database = cluster.new_database()
        urls = (cluster.url(database, lab.WRITER, lab.WRITER_PASSWORD), f"s3://{server.new_bucket()}/packs")
        rng, made = np.random.default_rng(0), 0
        print(f"{'packs':>6} {'batch ms':>9} {'fresh open s':>13} {'uncached load ms':>17} "
              f"{'first load s':>13} {'reopen s':>9}", flush=True)
        for count in counts:
            db = lab._open(base / "writer", urls)
            t0 = time.perf_counter()
            first = made
            while made < count:
                with db.batch():
                    for j in range(5):
                        PackBenchValue.save(rng.standard_normal(3), subject=made, trial=j)
                made += 1
            batch_ms = (time.perf_counter() - t0) / max(1, made - first) * 1e3
            db.close()
            database_module._current = None
            fresh = base / f"fresh-{count}"
            t0 = time.perf_counter()
            db = lab._open(fresh, urls)
            opened = time.perf_counter() - t0
            t0 = time.perf_counter()
            PackBenchValue.load(subject=0, trial=1)  # fetches every pack index it lacks
            first_load = time.perf_counter() - t0
            times = []
            for i in random.Random(1).sample(range(count), min(100, count)):
                t0 = time.perf_counter()
                PackBenchValue.load(subject=i, trial=2)
                times.append(time.perf_counter() - t0)
            db.close()
            database_module._current = None
            t0 = time.perf_counter()
            db = lab._open(fresh, urls)
            reopened = time.perf_counter() - t0
            db.close()
            database_module._current = None
            print(f"{count:>6} {batch_ms:>9.1f} {opened:>13.2f} {statistics.median(times) * 1e3:>17.1f} "
                  f"{first_load:>13.2f} {reopened:>9.2f}", flush=True)
    finally:
        server.stop()
        cluster.stop()
        shutil.rmtree(cluster.directory, ignore_errors=True)
        shutil.rmtree(base, ignore_errors=True)


if __name__ == "__main__":
    main(sys.argv[1:])
