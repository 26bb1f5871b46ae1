"""for_each on a Dask cluster: the cost of cheap combinations, this code against other commits.

    python bench/foreach_dask.py                       # this tree against main and 43a704b
    python bench/foreach_dask.py --revs main --repeat 5 --n 4000 --chunk-size 400
    python bench/foreach_dask.py --n 200 --chunk-size 200 --die-at 150   # the cost of a death

A trivial function (``x * 2.0`` on 100-element float64 arrays, bench/_support) over `--n`
combinations on a LocalCluster(n_workers=2, threads_per_worker=1, processes=True), in chunks
of `--chunk-size`. What differs between commits is what a worker does around each
combination (execute.run_chunk: e.g. telling the scheduler what it runs). Each measurement is
a process of its own (its own project and cluster, the workers warmed by a small for_each
first, not timed) running the code of one commit (exported with `git archive`; the workers
import it through PYTHONPATH); the commits take turns (interleaved, on a busy machine) and
the median of `--repeat` is reported, with how many notes of what a worker runs the
scheduler received in the last run (a round trip each; deterministic where timings are not).
With `--die-at K` the combination K (its signal's first value) kills its worker (SIGKILL) every
time it starts: the run must fail it alone; `calls` counts the function's starts, `culprit`
those of combination K (1: only the first death; 2: it killed one more worker being found).
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
SUPPORT = Path(__file__).resolve().parent / "_support"
TRIALS = 100  # combinations = subjects x TRIALS


def one(n: int, chunk_size: int, die_at: int | None = None) -> dict[str, float]:
    """In a process running one commit's code (on sys.path): the timed for_each on a cluster."""
    import logging

    import numpy as np
    import dask.distributed as distributed
    from foreach_work import scaled, scaled_or_dies
    from scistack import BaseVariable, configure_database, for_each

    class DaskBenchSignal(BaseVariable):
        pass

    class DaskBenchScaled(BaseVariable):
        pass

    folder = Path(tempfile.mkdtemp(prefix="scistack-dask-bench-"))
    try:
        db = configure_database(folder / "bench.duckdb", ["subject", "trial"])
        rng = np.random.default_rng(0)
        with db.batch():
            for index in range(n):
                signal = rng.standard_normal(100)
                signal[0] = index  # (names the combination: `--die-at`)
                DaskBenchSignal.save(signal, subject=index // TRIALS, trial=index % TRIALS)
        with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None,
                                      silence_logs=logging.ERROR) as cluster, distributed.Client(cluster) as client:
            executor = client.get_executor()
            notes = _count_notes(cluster.scheduler)

            log = folder / "starts"

            def run(scale: float, subjects: range, dies: bool = False) -> float:
                fn, inputs = scaled, {"signal": DaskBenchSignal, "scale": scale}
                if dies:
                    fn, inputs = scaled_or_dies, {**inputs, "die_at": die_at, "log": str(log)}
                t0 = time.perf_counter()
                report = for_each(fn, inputs=inputs, outputs=[DaskBenchScaled], subject=subjects, trial=range(TRIALS),
                                  executor=executor, chunk_size=chunk_size, progress=False)
                elapsed = time.perf_counter() - t0
                failed = [i.combo["subject"] * TRIALS + i.combo["trial"] for i in report.failures]
                assert failed == ([die_at] if dies else []), report.summary()
                assert report.ran == len(subjects) * TRIALS - len(failed), report.summary()
                return elapsed

            run(1.0, range(1))  # (warm-up: the workers import scistack and open the store)
            notes.clear()
            seconds = run(2.0, range(n // TRIALS), dies=die_at is not None)
        db.close()
        starts = log.read_text().split() if log.exists() else []
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    return {"seconds": seconds, "notes": len(notes), "calls": len(starts), "culprit": starts.count(str(die_at))}


def _count_notes(scheduler: Any) -> list[tuple]:
    """The notes of what a worker runs (set_metadata under "scistack-running") the scheduler
    receives from now on (a LocalCluster's scheduler runs in this process)."""
    original, notes = scheduler.handlers["set_metadata"], []

    @functools.wraps(original)  # (the scheduler reads the handler's signature)
    def counted(*args: Any, **kwargs: Any) -> Any:
        keys = tuple(kwargs.get("keys") or ())
        if keys[1:2] == ("scistack-running",):
            notes.append(keys)
        return original(*args, **kwargs)

    scheduler.handlers["set_metadata"] = counted
    return notes


def _export(rev: str, base: Path) -> Path:
    """The scistack package of commit `rev` in a folder of its own ('.': this tree)."""
    if rev == ".":
        return ROOT
    target = base / rev.replace("/", "_")
    target.mkdir()
    archive = subprocess.run(["git", "-C", str(ROOT), "archive", rev, "scistack"], check=True, capture_output=True)
    subprocess.run(["tar", "-x", "-C", str(target)], input=archive.stdout, check=True)
    return target


def _measure(code: Path, n: int, chunk_size: int, die_at: int | None) -> dict[str, float]:
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(code), str(SUPPORT)]))
    dies = [] if die_at is None else ["--die-at", str(die_at)]
    out = subprocess.run([sys.executable, __file__, "--one", "--n", str(n), "--chunk-size", str(chunk_size), *dies],
                         env=env, check=True, capture_output=True, text=True, cwd=tempfile.gettempdir())
    return json.loads(out.stdout.strip().splitlines()[-1])


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--revs", nargs="+", default=["main", "43a704b"], help="commits to compare with this tree")
    parser.add_argument("--n", type=int, default=2000)
    parser.add_argument("--chunk-size", type=int, default=200)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--die-at", type=int, default=None, help="this combination kills its worker")
    parser.add_argument("--one", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.one:
        print(json.dumps(one(args.n, args.chunk_size, args.die_at)))
        return
    base = Path(tempfile.mkdtemp(prefix="scistack-dask-revs-"))
    try:
        codes = {rev: _export(rev, base) for rev in [".", *args.revs]}
        times: dict[str, list[float]] = {rev: [] for rev in codes}
        notes: dict[str, int] = {}
        calls: dict[str, list[str]] = {rev: [] for rev in codes}
        for attempt in range(args.repeat):
            for rev, code in codes.items():
                measured = _measure(code, args.n, args.chunk_size, args.die_at)
                times[rev].append(measured["seconds"])
                notes[rev] = int(measured["notes"])
                calls[rev].append(f"{measured['calls']}/{measured['culprit']}")
                print(f"  {attempt + 1}/{args.repeat} {rev}: {times[rev][-1]:.3f} s", file=sys.stderr, flush=True)
    finally:
        shutil.rmtree(base, ignore_errors=True)
    print(f"for_each of {args.n:,} trivial combinations on a LocalCluster (2 workers x 1 thread, processes), "
          f"chunk_size={args.chunk_size}" + ("" if args.die_at is None else f", combination {args.die_at} kills "
          "its worker") + f"; median of {args.repeat}, interleaved")
    print(f"{'code':>12} {'median s':>9} {'ms/combo':>9} {'notes':>6}  all s" +
          ("" if args.die_at is None else "  (calls/culprit's)"))
    for rev, values in times.items():
        median = statistics.median(values)
        name = "this tree" if rev == "." else rev
        print(f"{name:>12} {median:>9.3f} {1000 * median / args.n:>9.3f} {notes[rev]:>6}  "
              f"{' '.join(f'{v:.3f}' for v in values)}" + ("" if args.die_at is None else f"  ({' '.join(calls[rev])})"))


if __name__ == "__main__":
    main(sys.argv[1:])
