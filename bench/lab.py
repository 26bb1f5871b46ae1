"""Lab mode (PostgreSQL journal + S3 objects) next to laptop mode, in the same run.

    python bench/lab.py                  # the small run (~1 min): 2,000 batched, 200 single saves,
                                         # a cached for_each of 500, a 20 MB array
    python bench/lab.py --full           # the issue's sizes: for_each of 2,000, a 100 MB array
    python bench/run_all.py lab          # the small run, through the runner

Starts its own throw-away PostgreSQL cluster and SeaweedFS S3 server on loopback (the same
helpers as tests/lab), and stops them. Goals (issue 13): batched saves >= 5,000/s per client;
single saves >= 200/s; a fully cached for_each <= 2x the laptop's time; a second load of a
large array at local-disk speed (a cache hit). Medians of --repeat runs where repeated
(batched: --repeat batches of 2,000 new values, the first into an empty project, which is
also printed alone).
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
SUPPORT = Path(__file__).resolve().parent / "_support"
for _path in (ROOT, SUPPORT):
    if str(_path) not in sys.path:
        sys.path.insert(0, str(_path))

import scistack.database as database_module  # noqa: E402
from foreach_work import scaled  # noqa: E402
from scistack import BaseVariable, configure_database, for_each  # noqa: E402
from tests.lab.conftest import (  # noqa: E402 - the tests' service helpers
    WRITER, WRITER_PASSWORD, PostgresCluster, _pg_bindir, _service_user,
)
from tests.lab.s3_server import S3Server  # noqa: E402


class LabBenchValue(BaseVariable):
    pass


class LabBenchIn(BaseVariable):
    pass


class LabBenchOut(BaseVariable):
    pass


def _services(base: Path) -> tuple[PostgresCluster, S3Server]:
    bindir = _pg_bindir()
    if bindir is None:
        raise SystemExit("PostgreSQL is not installed: run `make lab-services` first")
    directory = Path(tempfile.mkdtemp(prefix="scistack-pg-"))
    cluster = PostgresCluster(bindir, directory, _service_user())
    cluster.init()
    cluster.start()
    cluster.admin(f"CREATE ROLE {WRITER} LOGIN PASSWORD '{WRITER_PASSWORD}'")
    cluster.admin("CREATE ROLE lab_reader LOGIN PASSWORD 'x'")
    try:
        server = S3Server(base / "s3")
    except BaseException:
        cluster.stop()
        raise
    os.environ.update(server.env())
    return cluster, server


def _open(folder: Path, lab: tuple[str, str] | None, keys: tuple[str, ...] = ("subject", "trial")) -> Any:
    folder.mkdir(parents=True, exist_ok=True)
    kwargs = {"shared": lab[0], "objects": lab[1]} if lab else {}
    return configure_database(folder / "bench.duckdb", list(keys), **kwargs)


def measure(mode: str, folder: Path, lab: tuple[str, str] | None, n_batch: int, n_single: int,
            n_foreach: int, array_mb: int, repeat: int) -> dict[str, float]:
    row: dict[str, float] = {}
    db = _open(folder / "a", lab)
    rng = np.random.default_rng(0)
    batches = []
    for r in range(repeat):  # the first into an empty project, then into a growing one
        values = [rng.standard_normal(10) for _ in range(n_batch)]
        t0 = time.perf_counter()
        with db.batch():
            for i, value in enumerate(values):
                LabBenchValue.save(value, subject=i, trial=0 if r == 0 else 1000 + r)
        batches.append(n_batch / (time.perf_counter() - t0))
        db.index.sync()  # (both modes) the DuckDB views catch up now, not during the next timing
    row["batched saves/s"] = statistics.median(batches)
    row["first batch saves/s"] = batches[0]
    singles, resaves = [], []
    for r in range(repeat):
        fresh = [rng.standard_normal(10) for _ in range(n_single)]  # new content: each one uploads
        t0 = time.perf_counter()
        for i in range(n_single):
            LabBenchValue.save(fresh[i], subject=i, trial=10 + 2 * r)
        singles.append(n_single / (time.perf_counter() - t0))
        t0 = time.perf_counter()
        for i in range(n_single):  # content this process stored moments ago, at a new address
            LabBenchValue.save(fresh[i], subject=i, trial=11 + 2 * r)
        resaves.append(n_single / (time.perf_counter() - t0))
    row["single saves/s"] = statistics.median(singles)
    row["single re-saves/s"] = statistics.median(resaves)
    with db.batch():
        for i in range(n_foreach):
            LabBenchIn.save(rng.standard_normal(100), subject=i // 100, trial=i % 100)

    def run() -> Any:
        return for_each(scaled, inputs={"signal": LabBenchIn, "scale": 2.0}, outputs=[LabBenchOut],
                        subject=range(n_foreach // 100), trial=range(100), progress=False)

    assert run().ran == n_foreach
    db.index.sync()
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        assert run().cached == n_foreach
        times.append(time.perf_counter() - t0)
    row[f"cached for_each of {n_foreach} s"] = statistics.median(times)
    big = rng.standard_normal(array_mb * (1 << 20) // 8)
    LabBenchValue.save(big, subject=0, trial=9)
    db.close()
    db = _open(folder / ("b" if lab else "a"), lab)  # lab: another machine, an empty cache
    t0 = time.perf_counter()
    LabBenchValue.load(subject=0, trial=9)
    row[f"first load of {array_mb} MB s"] = time.perf_counter() - t0
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        LabBenchValue.load(subject=0, trial=9)
        times.append(time.perf_counter() - t0)
    row[f"second load of {array_mb} MB s"] = statistics.median(times)
    db.close()
    database_module._current = None
    return row


def writers_and_gc(folder: Path, lab: tuple[str, str], writers: int, count: int) -> dict[str, float]:
    """`writers` processes saving one by one while this one runs gc (1 h grace) in a loop: every
    acknowledged save must load afterwards, on a fresh machine."""
    import json
    import subprocess

    worker = ROOT / "tests" / "lab" / "lab_worker.py"
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    t0 = time.perf_counter()
    for i in range(writers):
        (folder / f"w{i}").mkdir(parents=True, exist_ok=True)
    procs = [subprocess.Popen([sys.executable, str(worker), str(folder / f"w{i}"), *lab, str(i), str(count), "single"],
                              env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for i in range(writers)]
    from scistack.gc import collect_garbage

    db = _open(folder / "gc", lab, ("subject", "session"))
    gcs = 0
    while any(p.poll() is None for p in procs):
        collect_garbage(db, grace_seconds=3600)
        gcs += 1
        time.sleep(0.5)
    acked = []
    for p in procs:
        out, err = p.communicate()
        assert p.returncode == 0, err
        acked += json.loads(out.strip().splitlines()[-1])["acked"]
    elapsed = time.perf_counter() - t0
    db.close()
    db = _open(folder / "fresh", lab, ("subject", "session"))
    records = {r.version: r.oid for r in db.index.versions_at("LabSignal", _addr_key())}
    lost = [v for v, oid in acked if records.get(v) != oid]
    for version in records:
        db.store.get(records[version])  # every named object is still there, verified
    db.close()
    database_module._current = None
    return {"writers": writers, "acked saves": len(acked), "gc runs": gcs, "lost": len(lost),
            "saves/s all writers": len(acked) / elapsed}


def _addr_key() -> str:
    from scistack.index.state import key_of

    return key_of({"subject": 1, "session": 1})


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--full", action="store_true", help="the issue's sizes (longer)")
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args(argv if argv is not None else [])
    n_foreach, array_mb = (2000, 100) if args.full else (500, 20)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # a timeout still stops the servers
    base = Path(tempfile.mkdtemp(prefix="scistack-bench-lab-"))
    os.chmod(base, 0o755)
    cluster, server = _services(base)
    try:
        database = cluster.new_database()
        lab = (cluster.url(database, WRITER, WRITER_PASSWORD), f"s3://{server.new_bucket()}/bench")
        rows = {}
        for mode, urls in (("laptop", None), ("lab", lab)):
            rows[mode] = measure(mode, base / mode, urls, 2000, 200, n_foreach, array_mb, args.repeat)
        _print(rows)
        database = cluster.new_database()
        lab2 = (cluster.url(database, WRITER, WRITER_PASSWORD), f"s3://{server.new_bucket()}/bench")
        concurrent = writers_and_gc(base / "concurrent", lab2, 4, 100 if args.full else 40)
        print("4 writers + gc: " + ", ".join(f"{k} {v:.0f}" for k, v in concurrent.items())
              + (" (every acknowledged save loads)" if concurrent["lost"] == 0 else " SAVES LOST"), flush=True)
    finally:
        server.stop()
        cluster.stop()
        shutil.rmtree(cluster.directory, ignore_errors=True)
        shutil.rmtree(base, ignore_errors=True)


def _print(rows: dict[str, dict[str, float]]) -> None:
    print(f"{'measure':<32} {'laptop':>10} {'lab':>10}")
    for name in rows["laptop"]:
        print(f"{name:<32} {rows['laptop'][name]:>10.3f} {rows['lab'][name]:>10.3f}")
    cached = [k for k in rows["lab"] if k.startswith("cached")][0]
    print(f"goals: batched >= 5000/s {'met' if rows['lab']['batched saves/s'] >= 5000 else 'NOT MET'}; "
          f"single >= 200/s {'met' if rows['lab']['single saves/s'] >= 200 else 'NOT MET'}; cached for_each "
          f"<= 2x laptop {'met' if rows['lab'][cached] <= 2 * rows['laptop'][cached] else 'NOT MET'}", flush=True)


if __name__ == "__main__":
    main(sys.argv[1:])
