"""`Var.load_all(as_df=True)` of a variable of 300k scalar floats, each figure from a fresh process.

    python bench/load_all.py                          # 300k values, 5 repetitions
    python bench/load_all.py --code /tmp/old --code .  # A/B: another checkout's scistack, interleaved
    python bench/load_all.py --values 100000 --repeats 7

Why: a frame of every value of a variable is how a scientist starts an analysis, and it took
2.5-3 s at 300k floats (the fold's records, sorting them, reading 300k objects). When DuckDB is
in step with the journal and every value is a plain double, one query gives the frame.

The project (schema subject/trial, one variable `Force`, a float per address, saved in one
batch and synced) is built once under --dir (default $SCISTACK_BENCH_DIR or
/tmp/scistack-bench) and only read afterwards. Each repetition runs, in fresh processes and
interleaved: `Force.load_all(as_df=True)` (DuckDB in step: the one-query path) and the same
call inside `db.batch()` (whose held saves DuckDB has not seen: the rows come from the fold's
records and the objects, as with a `where=`, other values than doubles, or a DuckDB behind
the journal). With several --code checkouts (A/B), every one runs each probe in every
repetition, interleaved. pandas is imported
before the clock starts (a script asking for a DataFrame has it); DuckDB and pyarrow are not.
Medians of --repeats, wall time and the process's CPU time (every thread: DuckDB's too; on a
busy machine it moves less than the wall time). Nothing here is a unit test: timings never are.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
SCHEMA = ["subject", "trial"]
PER_SUBJECT = 1000

PIPELINE = "from scistack import BaseVariable\n\n\nclass Force(BaseVariable):\n    pass\n"

BUILD = """
import sys, time
import numpy as np
sys.path.insert(0, sys.argv[1])
from scistack import configure_database
import pipeline
folder, n = sys.argv[1], int(sys.argv[2])
db = configure_database(folder + "/bench.duckdb", {schema!r})
values = np.random.default_rng(0).standard_normal(n)
with db.batch():
    for i in range(n):
        pipeline.Force.save(float(values[i]), subject=i // {per}, trial=i % {per})
db.sync()
db.close()
""".format(schema=SCHEMA, per=PER_SUBJECT)

MEASURE = """
import json, sys, time
import pandas
sys.path.insert(0, sys.argv[1])
import scistack
from scistack import configure_database
import pipeline
db = configure_database(sys.argv[1] + "/bench.duckdb")
in_step = db.index.duckdb_in_step()
t0, c0 = time.perf_counter(), time.process_time()
if sys.argv[2] == "fold":  # a batch's saves are DuckDB's to learn: inside one, the fold is read
    with db.batch():
        frame = pipeline.Force.load_all(as_df=True)
else:
    frame = pipeline.Force.load_all(as_df=True)
seconds, cpu = time.perf_counter() - t0, time.process_time() - c0
db.close()
print(json.dumps({"s": seconds, "cpu": cpu, "rows": len(frame), "in_step": in_step, "code": scistack.__file__}))
"""


def child(code: Path, script: str, *args: str, timeout: float) -> dict:
    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    env["PYTHONPATH"] = str(code)
    # run in the project's folder: `-c` puts the working directory first on sys.path, and a
    # checkout there would be imported instead of `code`
    done = subprocess.run([sys.executable, "-c", script, *args], capture_output=True, text=True,
                          env=env, timeout=timeout, cwd=args[0])
    if done.returncode != 0:
        raise RuntimeError(done.stderr.strip()[-500:])
    start = done.stdout.rfind('{"s"')  # (after any progress bar a slow load drew on the same line)
    if start < 0:
        raise RuntimeError(f"no figures in the output: {done.stdout[-300:]!r}")
    return json.loads(done.stdout[start:])


def ensure_project(folder: Path, n: int, timeout: float) -> None:
    marker = folder.with_name(folder.name + ".built")
    if marker.exists():
        return
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "pipeline.py").write_text(PIPELINE)
    t0 = time.perf_counter()
    child(ROOT, BUILD, str(folder), str(n), timeout=timeout)
    marker.write_text(f"built in {time.perf_counter() - t0:.1f} s\n")


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--values", type=int, default=300_000)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--code", type=Path, action="append",
                        help="a scistack checkout the measuring processes import (repeat for A/B; default this one)")
    parser.add_argument("--dir", type=Path, default=Path(os.environ.get("SCISTACK_BENCH_DIR", "/tmp/scistack-bench")))
    parser.add_argument("--timeout", type=float, default=600)
    args = parser.parse_args(argv if argv is not None else [])  # run_all calls main() bare
    folder = args.dir / f"load_all-{args.values}"
    ensure_project(folder, args.values, args.timeout)
    codes = args.code or [ROOT]
    probes = {"load_all(as_df=True)": "duckdb", "the same inside db.batch() (the fold's path)": "fold"}
    samples: dict[tuple[Path, str], list[tuple[float, float]]] = {(code, name): [] for code in codes for name in probes}
    for _ in range(args.repeats):
        for code in codes:
            for name, mode in probes.items():
                found = child(code, MEASURE, str(folder), mode, timeout=args.timeout)
                if found["rows"] != args.values or not found["in_step"]:
                    raise RuntimeError(f"{name}: {found} (the project must hold {args.values} values, DuckDB in step)")
                samples[code, name].append((found["s"], found["cpu"]))
    print(f"{args.values:,} floats, {args.repeats} fresh processes each, interleaved; "
          f"load average {os.getloadavg()[0]:.1f} at the end")
    for (code, name), values in samples.items():
        wall, cpu = [v[0] for v in values], [v[1] for v in values]
        print(f"  {code}: {name}: median {statistics.median(wall):.3f} s (min {min(wall):.3f}, max "
              f"{max(wall):.3f}); CPU (all threads) median {statistics.median(cpu):.3f} s")
    return samples


if __name__ == "__main__":
    main(sys.argv[1:])
