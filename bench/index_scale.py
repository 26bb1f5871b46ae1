"""Index scale (issue 12): what opening, loading, caching, for_each, the CLI and close cost as a
project grows from 10k to 10M refs.

    python bench/index_scale.py                                 # 10k and 100k refs, 3 repetitions
    python bench/index_scale.py --sizes 10k,100k,1M --write     # + bench/results/index_scale.md
    python bench/run_all.py index_scale                         # the defaults, through the runner

Why: every process folds the whole ref journal when it opens a project, so a project's size
is paid by each script, worker and `scistack` command (issue 12: 17 s and 2.6 GB to open 1M
refs, 239 s to close after a 100k-combination for_each). Goals, with this run's 10k figures
as the baseline: open + first load <= 0.3 s and <= 300 MB RSS at 10M refs; a point load or
cache hit <= 50 us after open; a fully cached for_each of 100k combinations <= 2 s; `status`,
`ls`, `log -n 10` <= 1 s at 1M; close after a 100k-combination for_each <= 5 s; on disk within
2x of payload plus names at 1M refs.

Each project is built once through the public API (bench/_support/index_scale_child.py
describes it) and kept under --dir (default $SCISTACK_BENCH_DIR or /tmp/scistack-bench) with a
marker file written when the build finished. Every figure comes from a fresh process; medians
of --repeats, the measurements interleaved within each repetition. A goal at a size that was
not measured is extrapolated from the growth between the two nearest measured sizes (a power
law through them) and marked so; a for_each figure from fewer than 100k combinations is scaled
linearly to 100k and marked so.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import math
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Iterator

HERE = Path(__file__).resolve().parent
for _path in (HERE / "_support", HERE / "peers"):
    if str(_path) not in sys.path:
        sys.path.insert(0, str(_path))

import common  # noqa: E402 - bench/peers/common.py: median, dir_size
import run as peers_run  # noqa: E402 - bench/peers/run.py: machine, git_commit, load_average
from index_scale_child import MAX_RUN, address, layout  # noqa: E402

CHILD = HERE / "_support" / "index_scale_child.py"
SCISTACK = Path(sys.executable).with_name("scistack")
RESULTS = HERE / "results"
UNITS = {"k": 1_000, "M": 1_000_000}
DEFAULT_DIR = "/tmp/scistack-bench"

# (key, label, unit) of the figures measured in fresh processes, in table order
MEASURES = [
    ("open_s", "open: configure_database + first load", "s"),
    ("peak_rss_mb", "peak RSS after open (VmHWM)", "MB"),
    ("import_s", "import scistack + pipeline (not in open)", "s"),
    ("load_us", "point load after open (median of 2,000)", "us"),
    ("hit_us", "cache hit after open (median of 2,000)", "us"),
    ("cached_run_s", "for_each fully cached ({cached:,} combinations)", "s"),
    ("ls_s", "scistack ls", "s"),
    ("ls_after_save_s", "scistack ls right after one save (re-measures that variable)", "s"),
    ("log_s", "scistack log EMG -n 10", "s"),
    ("status_s", "scistack status", "s"),
    ("new_run_s", "for_each of {new:,} new combinations", "s"),
    ("close_s", "db.close() after it", "s"),
    ("status_after_run_s", "scistack status right after it (judges the cells it changed)", "s"),
    ("status_two_levels_s", "scistack status, PeakEMG at two levels (one value per subject too)", "s"),
    ("save1_close_s", "db.close() after saving one value", "s"),
    ("load_all_floats_s", "Force.load_all(as_df=True): a float at every address", "s"),
    ("load_all_arrays_s", "EMG.load_all(as_df=True): a 4-element array at every address", "s"),
    ("run_peak_rss_mb", "peak RSS of that for_each + close process", "MB"),
    ("gc_s", "scistack gc (walks every object; --only lifecycle)", "s"),
    ("gc_rss_mb", "peak RSS of that gc", "MB"),
    ("fsck_s", "scistack fsck (re-hashes every object; --only lifecycle)", "s"),
    ("fsck_rss_mb", "peak RSS of that fsck", "MB"),
]
# (label, key, target, size the goal is set at: None = the largest measured)
GOALS = [
    ("open + first load at 10M refs (s)", "open_s", 0.3, 10_000_000),
    ("peak RSS after open at 10M refs (MB)", "peak_rss_mb", 300, 10_000_000),
    ("point load after open (us)", "load_us", 50, None),
    ("cache hit after open (us)", "hit_us", 50, None),
    ("fully cached for_each of 100k combinations (s)", "cached_100k_s", 2.0, None),
    ("scistack status at 1M refs (s)", "status_s", 1.0, 1_000_000),
    ("scistack status, a variable at two levels, at 1M refs (s)", "status_two_levels_s", 1.0, 1_000_000),
    ("first scistack status after a 100k-combination run, at 1M refs (s)", "status_after_run_s", None, 1_000_000),
    ("scistack ls at 1M refs (s)", "ls_s", 1.0, 1_000_000),
    ("scistack ls right after one save, at 1M refs (s)", "ls_after_save_s", 1.0, 1_000_000),
    ("scistack log -n 10 at 1M refs (s)", "log_s", 1.0, 1_000_000),
    ("close after a 100k-combination for_each (s)", "close_100k_s", 5.0, None),
    ("close after saving one value, at 10M refs (s; grows?)", "save1_close_s", None, 10_000_000),
    ("on disk / (payload + names) at 1M refs", "disk_ratio", 2.0, 1_000_000),
    ("peak RSS of scistack gc (MB; grows with the reachable set)", "gc_rss_mb", None, None),
    ("peak RSS of scistack fsck (MB)", "fsck_rss_mb", None, None),
    ("journal bytes per ref", "journal_per_ref", None, None),
    ("DuckDB bytes per ref", "duckdb_per_ref", None, None),
    ("fold (fold.sqlite) bytes per ref", "fold_per_ref", None, None),
    ("objects bytes per ref", "objects_per_ref", None, None),
]


class ChildError(RuntimeError):
    pass


def parse_size(text: str) -> int:
    text = text.strip()
    return int(float(text[:-1]) * UNITS[text[-1]]) if text[-1] in UNITS else int(text)


def size_label(n: int) -> str:
    for suffix, unit in sorted(UNITS.items(), key=lambda u: -u[1]):
        if n >= unit and n % unit == 0:
            return f"{n // unit}{suffix}"
    return str(n)


# Children import scistack as an installed copy does: from compiled bytecode. Without it
# (PYTHONDONTWRITEBYTECODE, set in some sandboxes) every command compiled each module again:
# `import scistack` took 0.59 s against 0.29 s, and `status` at 1M refs 0.64-0.86 s against 0.51-0.57 s.
_CHILD_ENV = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}


def run_child(task: str, project: Path, *args: Any, timeout: float) -> dict[str, Any]:
    """One step in a fresh interpreter; its JSON figures plus the wall time seen from here."""
    t0 = time.perf_counter()
    done = subprocess.run([sys.executable, str(CHILD), task, str(project), json.dumps(args)],
                          capture_output=True, text=True, timeout=timeout, env=_CHILD_ENV)
    if done.returncode != 0:
        last = (done.stderr.strip().splitlines() or ["no message"])[-1]
        raise ChildError(f"{task}: exit status {done.returncode} (< 0: killed by a signal): {last}")
    figures = json.loads(done.stdout.strip().splitlines()[-1])
    return figures | {"process_s": time.perf_counter() - t0}


def run_cli(project: Path, *argv: str, timeout: float) -> float:
    """Wall time of one `scistack` command run from inside the project, as a user runs it."""
    t0 = time.perf_counter()
    done = subprocess.run([str(SCISTACK), *argv], cwd=project, capture_output=True, text=True,
                          timeout=timeout, env=_CHILD_ENV)
    if done.returncode != 0:
        raise ChildError(f"scistack {' '.join(argv)} failed: {done.stderr.strip()[-300:]}")
    return time.perf_counter() - t0


def run_cli_peak(project: Path, *argv: str, timeout: float) -> tuple[float, float]:
    """Wall time and peak RSS (MB) of one `scistack` command (its own rusage, by wait4)."""
    with tempfile.TemporaryFile() as errors:  # (a pipe could fill and stall the child)
        t0 = time.perf_counter()
        child = subprocess.Popen([str(SCISTACK), *argv], cwd=project, stdout=subprocess.DEVNULL,
                                 stderr=errors, env=_CHILD_ENV)
        timer = threading.Timer(timeout, child.kill)
        timer.start()
        try:
            _, status, usage = os.wait4(child.pid, 0)
        finally:
            timer.cancel()
        wall = time.perf_counter() - t0
        child.returncode = os.waitstatus_to_exitcode(status)
        if child.returncode != 0:
            errors.seek(0)
            raise ChildError(f"scistack {' '.join(argv)} failed: {errors.read().decode()[-300:]}")
    return wall, usage.ru_maxrss / 1024


# -- building -----------------------------------------------------------------------------
def ensure_project(args: argparse.Namespace, n: int) -> dict[str, Any]:
    """The project of `n` refs: built now unless its marker says an earlier build finished."""
    folder, marker = args.dir / f"refs-{size_label(n)}", args.dir / f"refs-{size_label(n)}.json"
    if marker.exists() and not args.rebuild:
        return json.loads(marker.read_text())
    shutil.rmtree(folder, ignore_errors=True)  # an interrupted build: start again
    folder.mkdir(parents=True)
    shutil.copy(HERE / "_support" / "index_scale_pipeline.py", folder / "pipeline.py")
    plan, t0 = layout(n), time.perf_counter()
    steps = build(args, folder, plan)
    build_s = time.perf_counter() - t0
    first = run_child("open", folder, plan["addresses"], 0, timeout=args.timeout)
    info = {"refs": plan["refs"], "layout": plan, "built": _now(), "build_s": build_s,
            "commit": peers_run.git_commit(), "steps": steps, "first_open_s": first["open_s"],
            **useful_bytes(plan)}
    marker.write_text(json.dumps(info, indent=1))
    return info


def build(args: argparse.Namespace, folder: Path, plan: dict[str, int]) -> dict[str, float]:
    """Raw values in chunks (a process each, --build-workers at once), then the lineage run."""
    t = args.timeout
    run_child("init", folder, timeout=t)
    a = plan["addresses"]
    chunks = [(s, min(s + args.chunk, a)) for s in range(0, a, args.chunk)]
    t0 = time.perf_counter()
    with ThreadPoolExecutor(args.build_workers) as pool:
        parts = list(pool.map(lambda c: run_child("raw", folder, *c, timeout=t), chunks))
    raw = f"raw saves ({3 * a:,} refs; {len(chunks)} process(es), {args.build_workers} at once)"
    steps = {f"{raw}, wall": time.perf_counter() - t0,
             "raw saves: `with db.batch()` bodies, sum": sum(p["save_s"] for p in parts),
             "raw saves: db.close(), sum": sum(p["close_s"] for p in parts),
             "raw saves: process start + configure_database, sum":
                 sum(p["process_s"] - p["save_s"] - p["close_s"] for p in parts)}
    done = run_child("lineage", folder, plan["cached"], timeout=t)
    steps[f"lineage: for_each first run ({done['ran']:,} combinations)"] = done["run_s"]
    steps["lineage: db.close() after it"] = done["close_s"]
    steps["lineage: process start + configure_database"] = \
        done["process_s"] - done["run_s"] - done["close_s"]
    steps["db.sync() (DuckDB in step)"] = run_child("sync", folder, timeout=t)["sync_s"]
    return steps


def useful_bytes(plan: dict[str, int]) -> dict[str, int]:
    """The values' own bytes, and the names (variable + canonical address text) of every ref."""
    lengths = [len(json.dumps(address(i), sort_keys=True, separators=(",", ":")))
               for i in range(plan["addresses"])]
    a, k = plan["addresses"], plan["cached"]
    return {"payload_bytes": a * (8 + 32 + 8) + k * 8,
            "name_bytes": 3 * sum(lengths) + a * len("ForceEMGRating")
            + sum(lengths[:k]) + k * len("PeakEMG")}


# -- measuring ----------------------------------------------------------------------------
def measure(args: argparse.Namespace, n: int, info: dict[str, Any]) -> Iterator[dict[str, Any]]:
    """Every figure at one size: --repeats fresh processes each, interleaved; yields the
    figures so far after each repetition, so a run cut short still reports them."""
    folder, plan, t = args.dir / f"refs-{size_label(n)}", info["layout"], args.timeout
    a, k, new, scratch = plan["addresses"], plan["cached"], plan["new"], str(args.dir / "scratch")
    run_child("gap", folder, a, timeout=t)  # one address only Force has: `status` lists it
    warm = run_child("open", folder, a, 0, timeout=t)  # not in the medians: builds any checkpoint
    probes = {
        "open": lambda seed: run_child("open", folder, a, seed, timeout=t),
        "micro": lambda seed: run_child("micro", folder, a, k, seed, timeout=t),
        "foreach": lambda seed: run_child("foreach_cached", folder, k, timeout=t),
        "cli": lambda seed: {"ls_s": run_cli(folder, "ls", timeout=t),
                             "log_s": run_cli(folder, "log", "EMG", "-n", "10", timeout=t),
                             "status_s": run_cli(folder, "status", timeout=t)},
        "close": lambda seed: run_child("foreach_new", folder, new, scratch, timeout=t),
        "lifecycle": lambda seed: dict(zip(("gc_s", "gc_rss_mb", "fsck_s", "fsck_rss_mb"),
                                           run_cli_peak(folder, "gc", timeout=t)
                                           + run_cli_peak(folder, "fsck", timeout=t))),
        "load_all": lambda seed: run_child("load_all", folder, timeout=t),
        "save1": lambda seed: run_child("save_one", folder, seed, timeout=t)
        | {"ls_after_save_s": run_cli(folder, "ls", timeout=t)},  # the first `ls` after a change
    }
    result = {"samples": {}, "errors": {}, "first_open_run_s": warm["open_s"],
              "disk": disk(folder, info)}
    # the one-value saves go last: each writes to the project, and a probe in the process after
    # one measured 58-88 us cache hits at 10k against 40-46 with none between (page cache, writeback)
    order = [n for n in args.only if n != "save1"], [n for n in args.only if n == "save1"]
    for rep, names in [(rep, names) for names in order if names for rep in range(args.repeats)]:
        for name in names:
            try:
                figures = probes[name](rep + 1)
            except (ChildError, subprocess.TimeoutExpired) as exc:
                result["errors"][name] = str(exc)
                continue
            if "process_s" in figures:
                figures[f"{name}_process_s"] = figures.pop("process_s")
            for key, value in figures.items():
                result["samples"].setdefault(key, []).append(value)
        print(f"  {size_label(n)}: repetition {rep + 1} of {','.join(names)} done", file=sys.stderr, flush=True)
        yield result


def disk(folder: Path, info: dict[str, Any]) -> dict[str, float]:
    """Bytes on disk (allocated, as `du` counts) by part, against the payload plus names."""
    scistack, refs = folder / ".scistack", info["refs"]
    journal = (scistack / "refs.log").stat().st_size
    duckdb = sum(p.stat().st_size for p in folder.glob("bench.duckdb*"))
    fold = sum(p.stat().st_size for p in scistack.glob("fold.sqlite*"))
    objects = common.dir_size(str(scistack / "objects"))[0]
    total = common.dir_size(str(folder))[0]
    useful = info["payload_bytes"] + info["name_bytes"]
    return {"journal_mb": journal / 1e6, "journal_per_ref": journal / refs,
            "duckdb_mb": duckdb / 1e6, "duckdb_per_ref": duckdb / refs,
            "fold_mb": fold / 1e6, "fold_per_ref": fold / refs,
            "objects_mb": objects / 1e6, "objects_per_ref": objects / refs,
            "total_mb": total / 1e6, "useful_mb": useful / 1e6, "disk_ratio": total / useful}


def medians(result: dict[str, Any], plan: dict[str, int]) -> dict[str, float]:
    """Median of each figure, plus the for_each figures scaled to 100k combinations."""
    out = {key: common.median(values) for key, values in result["samples"].items()}
    out.update(result["disk"])
    if "cached_run_s" in out:
        out["cached_100k_s"] = out["cached_run_s"] * MAX_RUN / plan["cached"]
    if "close_s" in out and plan["new"]:
        out["close_100k_s"] = out["close_s"] * MAX_RUN / plan["new"]
    return out


def value_at(per_size: dict[int, dict[str, float]], key: str,
             size: int | None) -> tuple[float, str] | None:
    """The figure at `size`: measured, or a power law through the two nearest measured sizes."""
    have = sorted(n for n, m in per_size.items() if m.get(key) is not None)
    if not have:
        return None
    size = size or have[-1]
    if size in have:
        return per_size[size][key], f"measured at {size_label(size)}"
    if len(have) < 2:
        return None
    lo, hi = sorted(sorted(have, key=lambda n: abs(math.log(n / size)))[:2])
    a, b = per_size[lo][key], per_size[hi][key]
    slope = math.log(b / a) / math.log(hi / lo) if a > 0 and b > 0 else 0.0
    how = f"extrapolated from {size_label(lo)}->{size_label(hi)} growth (n^{slope:.2f})"
    return b * (size / hi) ** slope, how


# -- reporting ----------------------------------------------------------------------------
def table(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    return "\n".join(lines + ["| " + " | ".join(r) + " |" for r in rows])


def fmt(value: float | None, unit: str = "") -> str:
    if value is None:
        return "-"
    text = f"{value:,.0f}" if abs(value) >= 1000 else f"{value:.3g}"
    return f"{text} {unit}".strip()


def size_table(n: int, info: dict[str, Any], result: dict[str, Any], med: dict[str, float]) -> str:
    plan, d = info["layout"], result["disk"]
    rows = [[f"first open after build (built {info['built']}, commit {info['commit']})",
             fmt(info["first_open_s"], "s"), "once"],
            ["first open of this run (warm-up, not in the medians)",
             fmt(result["first_open_run_s"], "s"), "once"]]
    for key, label, unit in MEASURES:
        values = result["samples"].get(key)
        spread = f"{fmt(min(values))} - {fmt(max(values))} (n={len(values)})" if values else "-"
        rows.append([label.format(**plan), fmt(med.get(key), unit) if values else "-", spread])
    rows += [
        ["journal (refs.log)", f"{fmt(d['journal_mb'], 'MB')}, {d['journal_per_ref']:.0f} B/ref",
         ""],
        ["DuckDB file", f"{fmt(d['duckdb_mb'], 'MB')}, {d['duckdb_per_ref']:.0f} B/ref", ""],
        ["fold (fold.sqlite)", f"{fmt(d['fold_mb'], 'MB')}, {d['fold_per_ref']:.0f} B/ref", ""],
        ["objects (packs + loose)", f"{fmt(d['objects_mb'], 'MB')}, {d['objects_per_ref']:.0f} B/ref", ""],
        ["total on disk / payload + names",
         f"{fmt(d['total_mb'], 'MB')} / {fmt(d['useful_mb'], 'MB')} = {d['disk_ratio']:.2f}x", ""],
        [f"build, total ({info['refs']:,} refs)", fmt(info["build_s"], "s"), "once"],
    ]
    rows += [[f"build: {step}", fmt(s, "s"), "once"] for step, s in info["steps"].items()]
    rows += [[f"error: {name}", text[:200], ""] for name, text in result["errors"].items()]
    header = f"### {size_label(n)} refs ({info['refs']:,})\n\n"
    return header + table(["measure", "median", "min - max"], rows)


def goal_table(per_size: dict[int, dict[str, float]], plans: dict[int, dict[str, int]]) -> str:
    rows = []
    for label, key, target, size in GOALS:
        found = value_at(per_size, key, size)
        limit = "-" if target is None else f"<= {fmt(target)}"
        if found is None:
            rows.append([label, "-", limit, "not measured", "-", ""])
            continue
        value, how = found
        plan = plans[size if size in per_size else max(per_size)]
        for scaled, count in (("cached_100k_s", plan["cached"]), ("close_100k_s", plan["new"])):
            if key == scaled and count < MAX_RUN:
                how += f", scaled linearly from {count:,} combinations"
        base = per_size.get(10_000, {}).get(key)
        verdict = "-" if target is None else ("met" if value <= target else "NOT MET")
        ratio = f"{value / base:.1f}x" if base else "-"
        rows.append([label, fmt(value), limit, verdict, ratio, how])
    return table(["goal", "value", "target", "met?", "vs 10k", "how"], rows)


def _now() -> str:
    return dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")


def render(args: argparse.Namespace, infos: dict, results: dict, per_size: dict,
           wall: float) -> str:
    m = peers_run.machine()
    head = [
        "# Index scale (issue 12)", "",
        f"Produced by `{args.command}` on {_now()}, scistack commit `{peers_run.git_commit()}`; "
        f"{args.repeats} repetition(s), medians, each figure from a fresh process; "
        f"whole run {wall / 60:.1f} min.", "",
        f"Machine: {m['cores']} cores ({m['cpu']}), {m['memory']} memory, {m['os']}, "
        f"Python {m['python']}; load average {args.load_before:.1f} at the start, "
        f"{peers_run.load_average():.1f} at the end. Projects: {args.dir}/refs-<size> (kept).", "",
        "Project: schema subject/session/trial; Force (float), EMG (4 float64), Rating (int) at "
        "every address, PeakEMG = @lineage_fcn peak(EMG, gain=2.0) by for_each over the first "
        "addresses. The new-combination for_each (gain=3.0) and its close run on a copy.", "",
        "## Goals", "", goal_table(per_size, {n: infos[n]["layout"] for n in infos}), "",
    ]
    sizes = [size_table(n, infos[n], results[n], per_size[n]) for n in sorted(results)]
    return "\n".join(head + ["## Per size", ""] + [s + "\n" for s in sizes])


def main(argv: list[str] | None = None) -> str:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add = parser.add_argument
    add("--sizes", default="10k,100k", help="refs per project: 10k,100k,1M,3M,10M")
    add("--repeats", type=int, default=3)
    add("--dir", type=Path, default=Path(os.environ.get("SCISTACK_BENCH_DIR", DEFAULT_DIR)))
    add("--only", default="open,micro,foreach,cli,close,load_all,save1",
        help="measurement groups to run (also: lifecycle, gc and fsck: minutes at 1M refs)")
    add("--build-workers", type=int, default=2, help="processes saving raw values at once")
    add("--chunk", type=int, default=100_000, help="addresses saved per build process")
    add("--rebuild", action="store_true", help="build the projects again")
    add("--timeout", type=float, default=3600, help="seconds per process")
    add("--write", nargs="?", const=str(RESULTS / "index_scale.md"), default=None, metavar="PATH",
        help="write the markdown report (default bench/results/index_scale.md)")
    args = parser.parse_args(argv if argv is not None else [])  # run_all calls main() bare
    args.command = "bench/index_scale.py " + " ".join(argv or [])
    args.only = [o for o in args.only.split(",") if o]
    args.dir.mkdir(parents=True, exist_ok=True)
    args.load_before, t_start = peers_run.load_average(), time.perf_counter()
    infos, results, per_size, report = {}, {}, {}, ""
    for n in sorted(parse_size(s) for s in args.sizes.split(",")):
        t0 = time.perf_counter()
        infos[n] = ensure_project(args, n)
        print(f"{size_label(n)}: project ready in {time.perf_counter() - t0:.1f} s (built in "
              f"{infos[n]['build_s']:.1f} s on {infos[n]['built']})", file=sys.stderr, flush=True)
        for results[n] in measure(args, n, infos[n]):  # a run cut short keeps what it measured
            per_size[n] = medians(results[n], infos[n]["layout"])
            raw = json.dumps({"infos": infos, "results": results})
            (args.dir / "index_scale-last.json").write_text(raw)
            report = render(args, infos, results, per_size, time.perf_counter() - t_start)
            if args.write:
                Path(args.write).write_text(report)
    print(report)
    return report


if __name__ == "__main__":
    main(sys.argv[1:])
