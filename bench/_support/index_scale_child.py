"""One step of bench/index_scale.py, run in a fresh process: a build step or a measurement.

    python bench/_support/index_scale_child.py TASK PROJECT_DIR [JSON_ARGS]

prints one JSON object (its figures) as the last line of stdout. A fresh process per step is
the point: opening a project is what a scientist's script, a `for_each` worker or a CLI
command pays every time, and a process that built the project would have it folded already.
Only the public API is used (`configure_database`, `BaseVariable`, `for_each`, the decorated
function), so the journal, packs and DuckDB file are exactly what scistack writes.

The project layout (shared with the parent through `layout()` and `address()`): address i is
subject i // 1000, session "s<(i // 100) % 10>", trial i % 100. `Force`, `EMG` and `Rating`
are saved at every address; `PeakEMG` = peak(EMG, gain=2.0) by `for_each` over the first
`cached` addresses (call-cache entries, call records and a run record). The measurements add
one address past the layout where only `Force` is saved (`gap`), so `status` has cells to
list for every variable. The measurements'
"new" `for_each` uses gain=3.0 over the first `new` addresses, on a copy of the project.
"""

from __future__ import annotations

import functools
import importlib
import json
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "peers"))
import common  # noqa: E402 - bench/peers/common.py: VmHWM/VmRSS, median, timed calls

DB_NAME = "bench.duckdb"
SCHEMA = ["subject", "session", "trial"]
SESSIONS = [f"s{j}" for j in range(10)]
PER_SUBJECT = 1000  # 10 sessions x 100 trials
MAX_RUN = 100_000   # combinations of the goals' for_each runs
SAMPLES = 2000      # timed point loads and cache hits per process


def layout(refs: int) -> dict[str, int]:
    """How a project of about `refs` refs is made: addresses, cached and new combinations."""
    cached = max(PER_SUBJECT, min(MAX_RUN, refs // 5 // PER_SUBJECT * PER_SUBJECT))
    addresses = (refs - cached) // 3
    new = min(MAX_RUN, addresses // PER_SUBJECT * PER_SUBJECT)
    return {"addresses": addresses, "cached": cached, "new": new, "refs": 3 * addresses + cached}


def address(i: int) -> dict[str, Any]:
    return {"subject": i // PER_SUBJECT, "session": SESSIONS[(i // 100) % 10], "trial": i % 100}


def _run_peak(p: Any, n: int, gain: float) -> Any:
    """for_each of peak(EMG, gain) -> PeakEMG over the first `n` addresses (a multiple of 1000)."""
    from scistack import for_each

    return for_each(p.peak, inputs={"emg": p.EMG, "gain": gain}, outputs=[p.PeakEMG],
                    progress=False, subject=range(n // PER_SUBJECT), session=SESSIONS,
                    trial=range(100))


def _open(project: Path):
    from scistack import configure_database

    sys.path.insert(0, str(project))  # the project's own pipeline.py, as its scripts see it
    import pipeline

    return configure_database(project / DB_NAME), pipeline


def _timed(fn, *args: Any) -> tuple[Any, float]:
    t0 = time.perf_counter()
    out = fn(*args)
    return out, time.perf_counter() - t0


# -- build steps --------------------------------------------------------------------------
def init(project: Path) -> dict[str, Any]:
    from scistack import configure_database

    configure_database(project / DB_NAME, SCHEMA).close()
    return {}


def raw(project: Path, start: int, stop: int) -> dict[str, Any]:
    """Save Force, EMG and Rating at addresses [start, stop) in one batch (one pack stream,
    one journal append)."""
    db, p = _open(project)
    rng = np.random.default_rng(start)
    n = stop - start
    forces, emg = rng.standard_normal(n), rng.standard_normal((n, 4))
    ratings = rng.integers(0, 2**62, n)
    t0 = time.perf_counter()
    with db.batch():
        for j in range(n):
            addr = address(start + j)
            p.Force.save(float(forces[j]), **addr)
            p.EMG.save(emg[j], **addr)
            p.Rating.save(int(ratings[j]), **addr)
    save_s = time.perf_counter() - t0
    _, close_s = _timed(db.close)
    return {"save_s": save_s, "close_s": close_s, "refs": 3 * n}


def lineage(project: Path, cached: int) -> dict[str, Any]:
    db, p = _open(project)
    report, run_s = _timed(_run_peak, p, cached, 2.0)
    _, close_s = _timed(db.close)
    return {"run_s": run_s, "close_s": close_s, "ran": report.ran}


def sync(project: Path) -> dict[str, Any]:
    db, _ = _open(project)
    _, sync_s = _timed(db.sync)
    db.close()
    return {"sync_s": sync_s}


# -- measurements -------------------------------------------------------------------------
def open_project(project: Path, addresses: int, seed: int) -> dict[str, Any]:
    """configure_database + the first load of one value: wall time and peak RSS."""
    i = int(np.random.default_rng(seed).integers(addresses))
    t0 = time.perf_counter()
    from scistack import configure_database  # noqa: F401 - import time reported apart
    sys.path.insert(0, str(project))
    import pipeline
    import_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    configure_database(project / DB_NAME)
    pipeline.EMG.load(**address(i))
    open_s = time.perf_counter() - t0
    return {"import_s": import_s, "open_s": open_s, "peak_rss_mb": common.peak_bytes() / 1e6,
            "rss_mb": common.rss_bytes() / 1e6}


def micro(project: Path, addresses: int, cached: int, seed: int) -> dict[str, Any]:
    """Point loads of random stored values, then cache hits of `peak` on random cached inputs."""
    db, p = _open(project)
    rng = np.random.default_rng(seed)
    variables = [p.Force, p.EMG, p.Rating]
    loads = [functools.partial(variables[v].load, **address(int(i)))
             for v, i in zip(rng.integers(3, size=SAMPLES + 1),
                             rng.integers(addresses, size=SAMPLES + 1))]
    loads.pop()()  # not timed: the first load after open is part of open_project's figure
    it = iter(loads)
    load_s = common.time_calls(lambda: next(it)(), SAMPLES)
    hits = [functools.partial(p.peak, p.EMG.load(**address(int(i))), 2.0)
            for i in rng.integers(cached, size=SAMPLES)]
    it, results = iter(hits), []
    hit_s = common.time_calls(lambda: results.append(next(it)()), SAMPLES)
    misses = sum(not r.cached for r in results)
    db.close()
    return {"load_us": load_s * 1e6, "hit_us": hit_s * 1e6, "hit_misses": misses}


def foreach_cached(project: Path, cached: int) -> dict[str, Any]:
    """A re-run of the build's for_each: every combination is a cache hit."""
    db, p = _open(project)
    report, run_s = _timed(_run_peak, p, cached, 2.0)
    db.close()
    return {"cached_run_s": run_s, "combinations": cached, "not_cached": cached - report.cached}


def foreach_new(project: Path, new: int, scratch: str) -> dict[str, Any]:
    """`new` combinations never run before (gain=3.0), then close, on a throwaway copy; then
    the first `scistack status` after the run (it judges every cell the run changed), and
    `status` once PeakEMG has one value at the subject level too (a variable at two levels)."""
    copy = Path(scratch) / project.name
    shutil.rmtree(copy, ignore_errors=True)
    _, copy_s = _timed(shutil.copytree, project, copy)  # copy2 keeps mtimes: DuckDB stays "in step"
    try:
        db, p = _open(copy)
        report, run_s = _timed(_run_peak, p, new, 3.0)
        _, close_s = _timed(db.close)
        peak_mb = common.peak_bytes() / 1e6
        status_after_s = _status(copy)
        db, p = _open(copy)
        p.PeakEMG.save(1.0, subject=0)
        db.close()
        _status(copy)  # (the first judges the changed cell again)
        status_levels_s = _status(copy)
    finally:
        shutil.rmtree(copy, ignore_errors=True)
    return {"new_run_s": run_s, "close_s": close_s, "run_peak_rss_mb": peak_mb, "ran": report.ran,
            "combinations": new, "copy_s": copy_s, "status_after_run_s": status_after_s,
            "status_two_levels_s": status_levels_s}


def _status(project: Path) -> float:
    """Wall time of `scistack status` run in the project by a fresh process, as a user runs it."""
    t0 = time.perf_counter()
    subprocess.run([str(Path(sys.executable).with_name("scistack")), "status"], cwd=project, check=True,
                   stdout=subprocess.DEVNULL)
    return time.perf_counter() - t0


def load_all(project: Path) -> dict[str, Any]:
    """Every value of a variable as one DataFrame: Force (a float per address), then EMG (a
    4-element array per address). pandas is imported first (not timed: a script that asks
    for a DataFrame has it)."""
    importlib.import_module("pandas")
    db, p = _open(project)
    floats, floats_s = _timed(lambda: p.Force.load_all(as_df=True))
    arrays, arrays_s = _timed(lambda: p.EMG.load_all(as_df=True))
    db.close()
    return {"load_all_floats_s": floats_s, "load_all_arrays_s": arrays_s, "load_all_rows": len(floats) + len(arrays)}


def save_one(project: Path, seed: int) -> dict[str, Any]:
    """One value saved, then close: the views catch up in this process before it ends, and
    that wait must grow with what the process changed, not with the project. The value is a
    new version of the first address's Force (nothing reads it): the project gains one ref a
    run and no address."""
    db, p = _open(project)
    _, save_s = _timed(lambda: p.Force.save(float(seed) + time.time() % 1, **address(0)))
    _, close_s = _timed(db.close)
    return {"save1_s": save_s, "save1_close_s": close_s}


def gap(project: Path, addresses: int) -> dict[str, Any]:
    """Force saved at one address past the layout, once: Force, EMG and Rating each lack one
    address of the others then, which `status` must list without reading every address (a
    probe of each took 0.17 s per variable per 300k addresses)."""
    from scistack.errors import VariableNotFoundError

    db, p = _open(project)
    try:
        p.Force.load(**address(addresses))
    except VariableNotFoundError:
        p.Force.save(0.0, **address(addresses))
    db.close()
    return {}


TASKS = {"gap": gap, "init": init, "raw": raw, "lineage": lineage, "sync": sync, "open": open_project,
         "micro": micro, "foreach_cached": foreach_cached, "foreach_new": foreach_new,
         "save_one": save_one, "load_all": load_all}


if __name__ == "__main__":
    task, folder = sys.argv[1], Path(sys.argv[2])
    arguments = json.loads(sys.argv[3]) if len(sys.argv) > 3 else []
    print(json.dumps(TASKS[task](folder, *arguments)), flush=True)
