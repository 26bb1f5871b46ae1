"""Variables benchmark: individual saves/loads, batched saves, load_all(as_df=True).

Goals (issue #3, 2-core machine): >= 2,000 individual saves/s and >= 2,500 loads/s of
100-element float64 arrays over 2,000 addresses, >= 20,000 batched saves/s, and
load_all(as_df=True) of 10,000 records <= 0.2 s. Medians of several repetitions, each in a
fresh project; the raw floor (np.save + blake3 + one file per value) is measured in the same run.
"""

from __future__ import annotations

import io
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import blake3
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from scistack import BaseVariable, configure_database  # noqa: E402
import scistack.database as database_module  # noqa: E402

REPS = int(os.environ.get("BENCH_REPS", "3"))


class VariablesBenchSignal(BaseVariable):
    pass


def _addresses(n: int) -> list[dict]:
    return [{"subject": i // 10, "session": f"s{i % 10}"} for i in range(n)]


def _one_rep(arrays: list[np.ndarray], big: list[np.ndarray]) -> dict[str, float]:
    out = {}
    with tempfile.TemporaryDirectory() as tmp:
        db = configure_database(Path(tmp) / "b.duckdb", ["subject", "session"])
        addrs = _addresses(len(arrays))
        t = time.perf_counter()
        for a, addr in zip(arrays, addrs):
            VariablesBenchSignal.save(a, **addr)
        out["saves/s"] = len(arrays) / (time.perf_counter() - t)
        t = time.perf_counter()
        for addr in addrs:
            VariablesBenchSignal.load(**addr)
        out["loads/s"] = len(arrays) / (time.perf_counter() - t)
        t = time.perf_counter()
        with db.batch():
            for i, a in enumerate(big):
                VariablesBenchSignal.save(a, subject=10_000 + i // 10, session=f"s{i % 10}")
        out["batched saves/s"] = len(big) / (time.perf_counter() - t)
        t = time.perf_counter()
        frame = VariablesBenchSignal.load_all(as_df=True, subject=list(range(10_000, 10_000 + len(big) // 10)))
        out["load_all 10k (s)"] = time.perf_counter() - t
        assert len(frame) == len(big)
        db.close()
        database_module._current = None
    return out


def _raw_floor(arrays: list[np.ndarray]) -> dict[str, float]:
    with tempfile.TemporaryDirectory() as tmp:
        t = time.perf_counter()
        paths = []
        for a in arrays:
            buf = io.BytesIO()
            np.save(buf, a)
            data = buf.getvalue()
            digest = blake3.blake3(data).hexdigest()
            folder = Path(tmp) / digest[:2]
            folder.mkdir(exist_ok=True)
            temp = folder / f".tmp{digest[2:]}"
            temp.write_bytes(data)
            os.replace(temp, folder / digest[2:])
            paths.append(folder / digest[2:])
        saves = len(arrays) / (time.perf_counter() - t)
        t = time.perf_counter()
        for p in paths:
            data = p.read_bytes()
            blake3.blake3(data).hexdigest()
            np.load(io.BytesIO(data))
        loads = len(arrays) / (time.perf_counter() - t)
    return {"saves/s": saves, "loads/s": loads}


def main() -> None:
    rng = np.random.default_rng(0)
    arrays = [rng.normal(size=100) for _ in range(2000)]
    big = [rng.normal(size=100) for _ in range(10_000)]
    reps = [_one_rep(arrays, big) for _ in range(REPS)]
    floors = [_raw_floor(arrays) for _ in range(REPS)]
    med = {k: statistics.median(r[k] for r in reps) for k in reps[0]}
    floor = {k: statistics.median(f[k] for f in floors) for k in floors[0]}
    goals = {"saves/s": (2000, True), "loads/s": (2500, True), "batched saves/s": (20000, True),
             "load_all 10k (s)": (0.2, False)}
    print(f"\nbench/variables  (median of {REPS}; raw floor = np.save + blake3 + atomic file per value)")
    print(f"{'measure':<20}{'scistack':>12}{'raw floor':>12}{'ratio':>8}{'goal':>10}  met")
    for key, value in med.items():
        goal, higher = goals[key]
        met = value >= goal if higher else value <= goal
        raw = floor.get(key)
        ratio = f"{value / raw:.2f}" if raw else ""
        raw_text = f"{raw:,.0f}" if raw else ""
        shown = f"{value:,.0f}" if higher else f"{value:.3f}"
        print(f"{key:<20}{shown:>12}{raw_text:>12}{ratio:>8}{goal:>10,}  {'yes' if met else 'NOT MET'}")


if __name__ == "__main__":
    main()
