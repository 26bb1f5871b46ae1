"""Views benchmark (issue #17): building the SQL views with inline values, and load_all(as_df).

Goals (2-core machine): the sync that builds the views for N refs of small arrays (refs,
inline values read from the objects, views) within 3x of a bulk Arrow insert of the same rows
into a fresh DuckDB file; `load_all(as_df=True)` of 10,000 scalar records <= 0.1 s.
`views sync` is the whole sync after a batch (journal read, refs, inline values, views);
`inline step` its part that reads the objects; `refs-only rebuild` DuckDB rebuilt without inline values
(what schema 2 did). Medians of BENCH_REPS repetitions, each in a fresh project. BENCH_N sets N (the issue's size
is 100,000; `make`-style quick runs use 10,000): `BENCH_N=10000 python bench/views.py`.
"""

from __future__ import annotations

import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import duckdb
import numpy as np
import pyarrow as pa

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from scistack import BaseVariable, configure_database  # noqa: E402
import scistack.database as database_module  # noqa: E402

REPS = int(os.environ.get("BENCH_REPS", "3"))
N = int(os.environ.get("BENCH_N", "100000"))
SCALARS = int(os.environ.get("BENCH_SCALARS", "10000"))
SAMPLES = 16  # float64 values per array


class ViewsBenchSignal(BaseVariable):
    pass


class ViewsBenchScalar(BaseVariable):
    pass


def _addresses(n: int) -> list[dict]:
    return [{"subject": i // 10, "session": f"s{i % 10}"} for i in range(n)]


def _build_views(arrays: list[np.ndarray]) -> dict[str, float]:
    out = {}
    with tempfile.TemporaryDirectory() as tmp:
        db = configure_database(Path(tmp) / "b.duckdb", ["subject", "session"], sync_delay=3600)
        with db.batch():
            for a, addr in zip(arrays, _addresses(len(arrays))):
                ViewsBenchSignal.save(a, **addr)
        t = time.perf_counter()
        db.sync()
        out["views sync s"] = time.perf_counter() - t
        oids = [r.oid for r in db.index.records("ViewsBenchSignal")]
        t = time.perf_counter()
        db.index._sql.inliner.values(oids)  # the part that reads objects, alone
        out["inline step s"] = time.perf_counter() - t
        sql = db.index._sql  # DuckDB alone (db.reindex rebuilds the SQLite fold too)
        t = time.perf_counter()
        sql.rebuild()
        out["DuckDB rebuild s"] = time.perf_counter() - t
        inliner, sql.inliner = sql.inliner, None  # refs and views only, as schema 2 did
        t = time.perf_counter()
        sql.rebuild()
        out["refs-only rebuild s"] = time.perf_counter() - t
        db.index._sql.inliner = inliner
        db.close()
        database_module._current = None
    return out


def _arrow_floor(arrays: list[np.ndarray]) -> float:
    """The same rows (ref columns + the array as DOUBLE[]) in one Arrow insert."""
    addrs = _addresses(len(arrays))
    with tempfile.TemporaryDirectory() as tmp:
        t = time.perf_counter()
        flat = np.concatenate(arrays)
        offsets = pa.array(np.arange(0, len(flat) + 1, SAMPLES, dtype=np.int32))
        table = pa.table({
            "var": ["ViewsBenchSignal"] * len(arrays),
            "addr": [f'{{"session":"{a["session"]}","subject":{a["subject"]}}}' for a in addrs],
            "version": pa.array([1] * len(arrays), pa.int32()),
            "oid": [f"{i:064x}" for i in range(len(arrays))],
            "subject": [str(a["subject"]) for a in addrs], "session": [a["session"] for a in addrs],
            "value": pa.ListArray.from_arrays(offsets, pa.array(flat)),
        })
        con = duckdb.connect(str(Path(tmp) / "floor.duckdb"))
        con.execute("CREATE TABLE refs (var VARCHAR, addr VARCHAR, version INTEGER, oid VARCHAR, "
                    "subject VARCHAR, session VARCHAR, value DOUBLE[])")
        con.register("rows", table)
        con.execute("BEGIN; INSERT INTO refs SELECT * FROM rows; COMMIT")
        con.close()
        return time.perf_counter() - t


def _load_all_scalars(n: int) -> float:
    with tempfile.TemporaryDirectory() as tmp:
        db = configure_database(Path(tmp) / "s.duckdb", ["subject", "session"], sync_delay=3600)
        with db.batch():
            for i, addr in enumerate(_addresses(n)):
                ViewsBenchScalar.save(float(i), **addr)
        ViewsBenchScalar.load_all(as_df=True)  # warm: the fold is brought up to date once
        times = []
        for _ in range(3):
            t = time.perf_counter()
            frame = ViewsBenchScalar.load_all(as_df=True)
            times.append(time.perf_counter() - t)
        assert len(frame) == n
        db.close()
        database_module._current = None
    return min(times)


def main() -> None:
    rng = np.random.default_rng(0)
    arrays = [rng.standard_normal(SAMPLES) for _ in range(N)]
    reps = [_build_views(arrays) for _ in range(REPS)]
    floor = statistics.median(_arrow_floor(arrays) for _ in range(REPS))
    scalars = statistics.median(_load_all_scalars(SCALARS) for _ in range(REPS))
    med = {k: statistics.median(r[k] for r in reps) for k in reps[0]}
    print(f"\nbench/views  N={N:,} refs of float64[{SAMPLES}], median of {REPS}")
    print(f"{'measure':<34}{'seconds':>10}{'x floor':>9}  goal")
    print(f"{'bulk Arrow insert (floor)':<34}{floor:>10.3f}{1:>9.1f}")
    for key in ("views sync s", "inline step s", "DuckDB rebuild s", "refs-only rebuild s"):
        ratio = med[key] / floor
        goal = "<= 3x" + (" met" if ratio <= 3 else " NOT MET") if key == "views sync s" else ""
        print(f"{key:<34}{med[key]:>10.3f}{ratio:>9.1f}  {goal}")
    met = "met" if scalars <= 0.1 else "NOT MET"
    print(f"{f'load_all(as_df) of {SCALARS:,} scalars':<34}{scalars:>10.3f}{'':>9}  <= 0.1 s {met}")


if __name__ == "__main__":
    main()
