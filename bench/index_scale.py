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
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

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

# (key, label, unit) of the figures measured in fresh processes, in table order
MEASURES = [
    ("open_s", "open: configure_database + first load", "s"),
    ("peak_rss_mb", "peak RSS after open (VmHWM)", "MB"),
    ("import_s", "import scistack + pipeline (not in open)", "s"),
    ("load_us", "point load after open (median of 2,000)", "us"),
    ("hit_us", "cache hit after open (median of 2,000)", "us"),
    ("cached_run_s", "for_each fully cached ({cached:,} combinations)", "s"),
    ("ls_s", "scistack ls", "s"),
    ("log_s", "scistack log EMG -n 10", "s"),
    ("status_s", "scistack status", "s"),
    ("new_run_s", "for_each of {new:,} new combinations", "s"),
    ("close_s", "db.close() after it", "s"),
]
# (label, key, target, size the goal is set at: None = the largest measured)
GOALS = [
    ("open + first load at 10M refs", "open_s", 0.3, 10_000_000),
    ("peak RSS after open at 10M refs (MB)", "peak_rss_mb", 300, 10_000_000),
    ("point load after open (us)", "load_us", 50, None),
    ("cache hit after open (us)", "hit_us", 50, None),
    ("fully cached for_each, 100k combinations", "cached_100k_s", 2.0, None),
    ("scistack status at 1M refs", "status_s", 1.0, 1_000_000),
    ("scistack ls at 1M refs", "ls_s", 1.0, 1_000_000),
    ("scistack log -n 10 at 1M refs", "log_s", 1.0, 1_000_000),
    ("close after a 100k-combination for_each", "close_100k_s", 5.0, None),
    ("on disk / (payload + names) at 1M refs", "disk_ratio", 2.0, 1_000_000),
    ("journal bytes per ref", "journal_per_ref", None, None),
    ("DuckDB bytes per ref", "duckdb_per_ref", None, None),
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


def run_child(task: str, project: Path, *args: Any, timeout: float) -> dict[str, Any]:
    """One step in a fresh interpreter; its JSON figures plus the wall time seen from here."""
    t0 = time.perf_counter()
    done = subprocess.run([sys.executable, str(CHILD), task, str(project), json.dumps(args)],
                          capture_output=True, text=True, timeout=timeout)
    if done.returncode != 0:
        raise ChildError(f"{task} failed: {done.stderr.strip().splitlines()[-1:]}")
    return json.loads(done.stdout.strip().splitlines()[-1]) | {"wall_s": time.perf_counter() - t0}


def run_cli(project: Path, *argv: str, timeout: float) -> float:
    """Wall time of one `scistack` command run from inside the project, as a user runs it."""
    t0 = time.perf_counter()
    done = subprocess.run([str(SCISTACK), *argv], cwd=project, capture_output=True, text=True, timeout=timeout)
    if done.returncode != 0:
        raise ChildError(f"scistack {' '.join(argv)} failed: {done.stderr.strip()[-300:]}")
    return time.perf_counter() - t0


# -- building -----------------------------------------------------------------------------
def ensure_project(args: argparse.Namespace, n: int) -> dict[str, Any]:
    """The project of `n` refs: built now unless its marker says an earlier build finished."""
    folder, marker = args.dir / f"refs-{size_label(n)}", args.dir / f"refs-{size_label(n)}.json"
    if marker.exists() and not args.rebuild:
        return json.loads(marker.read_text())
    shutil.rmtree(folder, ignore_errors=True)  # an interrupted build: start again
    folder.mkdir(parents=True)
    shutil.copy(HERE / "_support" / "index_scale_pipeline.py", folder / "pipeline.py")
    plan, steps, t_build = layout(n), {}, time.perf_counter()
    run_child("init", folder, timeout=args.timeout)
    chunks = [(s, min(s + args.chunk, plan["addresses"])) for s in range(0, plan["addresses"], args.chunk)]
    t0 = time.perf_counter()
    with ThreadPoolExecutor(args.build_workers) as pool:
        parts = list(pool.map(lambda c: run_child("raw", folder, *c, timeout=args.timeout), chunks))
    raw = f"raw saves ({3 * plan['addresses']:,} refs, {len(chunks)} processes, {args.build_workers} at once)"
    steps[f"{raw}, wall"] = time.perf_counter() - t0
    steps["raw saves: `with db.batch()` bodies, sum"] = sum(p["save_s"] for p in parts)
    steps["raw saves: db.close(), sum"] = sum(p["close_s"] for p in parts)
    steps["raw saves: process start + configure_database, sum"] = sum(
        p["wall_s"] - p["save_s"] - p["close_s"] for p in parts)
    done = run_child("lineage", folder, plan["cached"], timeout=args.timeout)
    steps[f"lineage: for_each first run ({done['ran']:,} combinations)"] = done["run_s"]
    steps["lineage: db.close() after it"] = done["close_s"]
    steps["lineage: process start + configure_database"] = done["wall_s"] - done["run_s"] - done["close_s"]
    steps["db.sync() (DuckDB in step)"] = run_child("sync", folder, timeout=args.timeout)["sync_s"]
    build_s = time.perf_counter() - t_build
    first = run_child("open", folder, plan["addresses"], 0, timeout=args.timeout)
    lengths = [len(json.dumps(address(i), sort_keys=True, separators=(",", ":"))) for i in range(plan["addresses"])]
    info = {"refs": plan["refs"], "layout": plan, "built": _now(), "commit": peers_run.git_commit(),
            "build_s": build_s, "steps": steps, "first_open_s": first["open_s"],
            "payload_bytes": plan["addresses"] * (8 + 32 + 8) + plan["cached"] * 8,  # values' own bytes
            "name_bytes": 3 * sum(lengths) + plan["addresses"] * len("ForceEMGRating")  # var + address
            + sum(lengths[:plan["cached"]]) + plan["cached"] * len("PeakEMG")}
    marker.write_text(json.dumps(info, indent=1))
    return info


# -- measuring ----------------------------------------------------------------------------
def measure(args: argparse.Namespace, n: int, info: dict[str, Any]) -> dict[str, Any]:
    """Every figure at one size: --repeats fresh processes each, interleaved."""
    folder, plan = args.dir / f"refs-{size_label(n)}", info["layout"]
    a, k, new, t = plan["addresses"], plan["cached"], plan["new"], args.timeout
    warm = run_child("open", folder, a, 0, timeout=t)  # untimed warm-up: any checkpoint is built now
    probes = {
        "open": lambda seed: run_child("open", folder, a, seed, timeout=t),
        "micro": lambda seed: run_child("micro", folder, a, k, seed, timeout=t),
        "foreach": lambda seed: run_child("foreach_cached", folder, k, timeout=t),
        "cli": lambda seed: {"ls_s": run_cli(folder, "ls", timeout=t),
                             "log_s": run_cli(folder, "log", "EMG", "-n", "10", timeout=t),
                             "status_s": run_cli(folder, "status", timeout=t)},
        "close": lambda seed: run_child("foreach_new", folder, new, str(args.dir / "scratch"), timeout=t),
    }
    samples: dict[str, list[float]] = {}
    errors: dict[str, str] = {}
    for rep in range(args.repeats):
        for name in args.only:
            try:
                figures = probes[name](rep + 1)
            except (ChildError, subprocess.TimeoutExpired) as exc:
                errors[name] = str(exc)
                continue
            for key, value in figures.items():
                samples.setdefault(key, []).append(value)
        print(f"  {size_label(n)}: repetition {rep + 1} done", file=sys.stderr, flush=True)
    return {"samples": samples, "errors": errors, "first_open_run_s": warm["open_s"], "disk": disk(folder, info)}


def disk(folder: Path, info: dict[str, Any]) -> dict[str, float]:
    """Bytes on disk (allocated, as `du` counts) by part, against the payload plus names."""
    scistack, refs = folder / ".scistack", info["refs"]
    journal = (scistack / "refs.log").stat().st_size
    duckdb = sum(p.stat().st_size for p in folder.glob("bench.duckdb*"))
    objects = common.dir_size(str(scistack / "objects"))[0]
    total = common.dir_size(str(folder))[0]
    useful = info["payload_bytes"] + info["name_bytes"]
    return {"journal_mb": journal / 1e6, "journal_per_ref": journal / refs, "duckdb_mb": duckdb / 1e6,
            "duckdb_per_ref": duckdb / refs, "objects_mb": objects / 1e6, "total_mb": total / 1e6,
            "useful_mb": useful / 1e6, "disk_ratio": total / useful}


def medians(result: dict[str, Any], plan: dict[str, int]) -> dict[str, float]:
    """Median of each figure, plus the for_each figures scaled to 100k combinations."""
    out = {key: common.median(values) for key, values in result["samples"].items()}
    out.update(result["disk"])
    if "cached_run_s" in out:
        out["cached_100k_s"] = out["cached_run_s"] * MAX_RUN / plan["cached"]
    if "close_s" in out and plan["new"]:
        out["close_100k_s"] = out["close_s"] * MAX_RUN / plan["new"]
    return out


def value_at(per_size: dict[int, dict[str, float]], key: str, size: int | None) -> tuple[float, str] | None:
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
    return b * (size / hi) ** slope, f"extrapolated from {size_label(lo)}->{size_label(hi)} (n^{slope:.2f})"


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
    plan, rows = info["layout"], []
    rows.append([f"first open after build (built {info['built']}, commit {info['commit']})",
                 fmt(info["first_open_s"], "s"), "once"])
    rows.append(["first open of this run (warm-up, not in the medians)", fmt(result["first_open_run_s"], "s"), "once"])
    for key, label, unit in MEASURES:
        values = result["samples"].get(key)
        spread = f"{fmt(min(values))} - {fmt(max(values))} (n={len(values)})" if values else "-"
        rows.append([label.format(**plan), fmt(med.get(key), unit) if values else "-", spread])
    d = result["disk"]
    rows += [["journal (refs.log)", f"{fmt(d['journal_mb'], 'MB')}, {d['journal_per_ref']:.0f} B/ref", ""],
             ["DuckDB file", f"{fmt(d['duckdb_mb'], 'MB')}, {d['duckdb_per_ref']:.0f} B/ref", ""],
             ["objects (packs + loose)", fmt(d["objects_mb"], "MB"), ""],
             ["total on disk / payload + names", f"{fmt(d['total_mb'], 'MB')} / {fmt(d['useful_mb'], 'MB')} "
              f"= {d['disk_ratio']:.2f}x", ""],
             [f"build, total ({info['refs']:,} refs)", fmt(info["build_s"], "s"), "once"]]
    rows += [[f"build: {step}", fmt(s, "s"), "once"] for step, s in info["steps"].items()]
    rows += [[f"error: {name}", text[:200], ""] for name, text in result["errors"].items()]
    return f"### {size_label(n)} refs ({info['refs']:,})\n\n" + table(["measure", "median", "min - max"], rows)


def goal_table(per_size: dict[int, dict[str, float]], plans: dict[int, dict[str, int]]) -> str:
    rows = []
    for label, key, target, size in GOALS:
        found = value_at(per_size, key, size)
        if found is None:
            rows.append([label, "-", fmt(target), "not measured", "-", ""])
            continue
        value, how = found
        where = size if size in per_size else max(per_size)
        plan = plans[where]
        if key == "cached_100k_s" and plan["cached"] < MAX_RUN:
            how += f", scaled from {plan['cached']:,} combinations"
        if key == "close_100k_s" and plan["new"] < MAX_RUN:
            how += f", scaled from {plan['new']:,} combinations"
        base = per_size.get(10_000, {}).get(key)
        verdict = "-" if target is None else ("met" if value <= target else "NOT MET")
        rows.append([label, fmt(value), "-" if target is None else f"<= {fmt(target)}", verdict,
                     f"{value / base:.1f}x" if base else "-", how])
    return table(["goal", "value", "target", "met?", "vs 10k", "how"], rows)


def _now() -> str:
    return dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")


def render(args: argparse.Namespace, infos: dict, results: dict, per_size: dict, wall: float) -> str:
    m = peers_run.machine()
    head = [
        "# Index scale (issue 12)", "",
        f"Produced by `{args.command}` on {_now()}, scistack commit `{peers_run.git_commit()}`; "
        f"{args.repeats} repetition(s), medians, each figure from a fresh process; whole run {wall / 60:.1f} min.",
        "",
        f"Machine: {m['cores']} cores ({m['cpu']}), {m['memory']} memory, {m['os']}, Python {m['python']}; "
        f"load average {args.load_before:.1f} at the start, {peers_run.load_average():.1f} at the end. "
        f"Projects: {args.dir}/refs-<size> (kept for reuse).", "",
        "Project: schema subject/session/trial; Force (float), EMG (4 float64), Rating (int) at every "
        "address, PeakEMG = @lineage_fcn peak(EMG, gain=2.0) by for_each over the first addresses. "
        "The new-combination for_each (gain=3.0) and its close run on a copy of the project.", "",
        "## Goals", "", goal_table(per_size, {n: infos[n]["layout"] for n in infos}), "",
    ]
    sizes = [size_table(n, infos[n], results[n], per_size[n]) for n in sorted(results)]
    return "\n".join(head + ["## Per size", ""] + [s + "\n" for s in sizes])


def main(argv: list[str] | None = None) -> str:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="10k,100k", help="refs per project: 10k,100k,1M,3M,10M")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--dir", type=Path, default=Path(os.environ.get("SCISTACK_BENCH_DIR", "/tmp/scistack-bench")))
    parser.add_argument("--only", default="open,micro,foreach,cli,close", help="measurement groups to run")
    parser.add_argument("--build-workers", type=int, default=2, help="processes saving raw values at once")
    parser.add_argument("--chunk", type=int, default=100_000, help="addresses saved per build process")
    parser.add_argument("--rebuild", action="store_true", help="build the projects again")
    parser.add_argument("--timeout", type=float, default=3600, help="seconds per process")
    parser.add_argument("--write", nargs="?", const=str(RESULTS / "index_scale.md"), default=None,
                        metavar="PATH", help="write the markdown report (default bench/results/index_scale.md)")
    args = parser.parse_args(argv if argv is not None else [])  # run_all calls main() bare
    args.command = "bench/index_scale.py " + " ".join(argv or [])
    args.only = [o for o in args.only.split(",") if o]
    args.dir.mkdir(parents=True, exist_ok=True)
    args.load_before, t_start = peers_run.load_average(), time.perf_counter()
    infos, results, per_size = {}, {}, {}
    for n in sorted(parse_size(s) for s in args.sizes.split(",")):
        t0 = time.perf_counter()
        infos[n] = ensure_project(args, n)
        print(f"{size_label(n)}: project ready in {time.perf_counter() - t0:.1f} s "
              f"(build {infos[n]['build_s']:.1f} s on {infos[n]['built']})", file=sys.stderr, flush=True)
        results[n] = measure(args, n, infos[n])
        per_size[n] = medians(results[n], infos[n]["layout"])
        (args.dir / "index_scale-last.json").write_text(json.dumps({"infos": infos, "results": results}, indent=1))
        report = render(args, infos, results, per_size, time.perf_counter() - t_start)
        if args.write:  # after every size: a run cut short still leaves what it measured
            Path(args.write).write_text(report)
    print(report)
    return report


if __name__ == "__main__":
    main(sys.argv[1:])
