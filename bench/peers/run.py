#!/usr/bin/env python3
"""`make bench-peers`: scistack against its peers, one workload, one invocation, one table.

Stdlib only. Creates (or reuses) one virtual environment per peer under bench/.venvs/,
runs `workload_<peer>.py` in each -- one fresh process and one fresh temporary directory per
step and repetition, peers interleaved within each repetition so that machine noise hits them
alike -- then prints a markdown table of medians and ratios (ours / peer, > 1 = ours better)
and writes it, with a description of the machine, to bench/results/latest.md (+ latest.json).

    python bench/peers/run.py                      # everything, 3 repetitions
    python bench/peers/run.py --peers original,raw --reps 1 --quick
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
BENCH = HERE.parent
ROOT = BENCH.parent
VENVS = BENCH / ".venvs"
RESULTS = BENCH / "results"

# Pinned, so that a table from another day is comparable. `ours` is the project's own venv.
PEERS: dict[str, dict] = {
    "ours": {"requirements": None, "steps": ("small", "big")},
    "original": {"requirements": ["scistack==0.1.58"], "steps": ("small", "big")},
    "joblib": {"requirements": ["joblib==1.6.0", "numpy==2.4.6"], "steps": ("small",)},
    "raw": {"requirements": ["numpy==2.4.6", "blake3==1.0.11", "pandas==3.1.1"],
            "steps": ("small", "big")},
}
ORDER = ["ours", "original", "joblib", "raw"]

FULL = {"subjects": 200, "sessions": 10, "length": 100, "big_mb": 100.0, "cached_calls": 2000}
QUICK = {"subjects": 20, "sessions": 5, "length": 100, "big_mb": 10.0, "cached_calls": 200}


# ------------------------------------------------------------------ rows and goals

def rows(sizes: dict) -> list[tuple[str, str, str]]:
    """(metric, label, better) in table order."""
    n = sizes["subjects"] * sizes["sessions"]
    big = f"{sizes['big_mb']:g} MB"
    return [
        ("save_rate", f"(1) individual saves, {n:,} x {sizes['length']} float64 (saves/s)",
         "higher"),
        ("load_rate", f"(1) individual loads, {n:,} (loads/s)", "higher"),
        ("batch_save_rate", f"(1b) batched saves, {n:,} (saves/s)", "higher"),
        ("big_save_mbps", f"(2) save one {big} float64 array (MB/s)", "higher"),
        ("big_load_mbps", f"(2) load it back (MB/s)", "higher"),
        ("big_peak_x", f"(2) peak memory of the {big} round trip (x payload)", "lower"),
        ("foreach_first_s", f"(3) for_each over {n:,} addresses, first run (s)", "lower"),
        ("foreach_cached_s", f"(3) for_each, fully cached re-run (s)", "lower"),
        ("cached_call_us", "(3) one cached call, 100-element input (µs)", "lower"),
        ("load_df_s", f"(4) load all {n:,} as a DataFrame (s)", "lower"),
        ("disk_small_mb", f"(5) on disk after the {n:,} saves (MB)", "lower"),
        ("disk_big_mb", f"(5) on disk after the {big} save (MB)", "lower"),
    ]


# (metric, kind, peer, threshold, text). kind "ratio": ours/peer (oriented) >= threshold;
# kind "max": ours' own value <= threshold.
GOALS = [
    ("save_rate", "ratio", "original", 15.0, ">= 15x original"),
    ("load_rate", "ratio", "original", 15.0, ">= 15x original"),
    ("big_save_mbps", "ratio", "original", 25.0, ">= 25x original"),
    ("big_save_mbps", "ratio", "raw", 1 / 3, "within 3x of raw (>= 0.33x)"),
    ("big_load_mbps", "ratio", "original", 2.0, ">= 2x original"),
    ("big_peak_x", "max", "ours", 3.0, "<= 3x payload"),
    ("foreach_cached_s", "ratio", "original", 20.0, ">= 20x original"),
    ("cached_call_us", "ratio", "joblib", 1.0, "<= joblib.Memory's (>= 1x)"),
]


# ------------------------------------------------------------------ environments

def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def venv_python(venv: Path) -> Path:
    return venv / ("Scripts/python.exe" if os.name == "nt" else "bin/python")


def ensure_venv(peer: str) -> Path:
    """The interpreter for `peer`: a venv under bench/.venvs/, reused when its pins match."""
    reqs = PEERS[peer]["requirements"]
    if reqs is None:
        return Path(sys.executable)
    venv = VENVS / peer
    stamp = venv / ".bench-requirements"
    want = "\n".join(reqs) + "\n"
    py = venv_python(venv)
    if py.exists() and stamp.exists() and stamp.read_text() == want:
        return py
    log(f"[setup] creating {venv.relative_to(ROOT)} with {' '.join(reqs)}")
    if venv.exists():
        shutil.rmtree(venv)
    VENVS.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    subprocess.run([str(py), "-m", "pip", "install", "--quiet", "--disable-pip-version-check",
                    *reqs], check=True)
    stamp.write_text(want)
    log(f"[setup] {peer}: installed in {time.perf_counter() - t0:.0f} s")
    return py


# ------------------------------------------------------------------ running

def run_step(peer: str, py: Path, step: str, sizes: dict, seed: int, timeout: float) -> dict:
    """One fresh process for one step of one repetition; always returns a result dict."""
    script = HERE / f"workload_{peer}.py"
    with tempfile.TemporaryDirectory(prefix="scistack-peers-run-") as cwd:
        out = Path(cwd) / "result.json"
        cmd = [str(py), str(script), "--step", step, "--seed", str(seed),
               "--subjects", str(sizes["subjects"]), "--sessions", str(sizes["sessions"]),
               "--length", str(sizes["length"]), "--big-mb", str(sizes["big_mb"]),
               "--cached-calls", str(sizes["cached_calls"]), "--out", str(out)]
        t0 = time.perf_counter()
        # cwd is an empty directory: the original SciStack looks for project config there.
        try:
            proc = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, timeout=timeout)
            tail = (proc.stderr or "").strip().splitlines()[-1:] or [""]
            problem = None if proc.returncode == 0 else f"exit {proc.returncode}: {tail[0]}"
        except subprocess.TimeoutExpired:
            problem = f"timed out after {timeout:.0f} s"
        wall = time.perf_counter() - t0
        doc = None
        if out.exists():
            try:
                doc = json.loads(out.read_text())
            except ValueError as exc:
                problem = problem or f"bad JSON: {exc}"
        if doc is None:
            doc = {"peer": peer, "step": step, "metrics": {}, "info": {}, "versions": {},
                   "errors": {"*": problem or "no result written"}}
        elif problem:
            doc.setdefault("errors", {})["*"] = problem
        doc["wall_s"] = wall
        return doc


# ------------------------------------------------------------------ aggregation

def sanitize(text: str) -> str:
    """No absolute machine paths in anything written: repo, temp dir and home are shortened."""
    for path, short in ((str(ROOT), "<repo>"), (tempfile.gettempdir(), "<tmp>"),
                        (os.path.expanduser("~"), "~")):
        if path and path not in ("/", "~"):
            text = text.replace(path, short)
    return text


def fmt(v: float) -> str:
    if v != v:  # nan
        return "nan"
    a = abs(v)
    if a >= 1000:
        return f"{v:,.0f}"
    if a >= 100:
        return f"{v:.0f}"
    if a >= 10:
        return f"{v:.1f}"
    if a >= 1:
        return f"{v:.2f}"
    if a >= 0.01:
        return f"{v:.3f}"
    return f"{v:.2g}"


def fmt_ratio(r: float) -> str:
    return f"{r:.1f}x" if r >= 10 else f"{r:.2f}x"


def cell_text(s: str, limit: int = 70) -> str:
    s = " ".join(s.split()).replace("|", "/")
    return s if len(s) <= limit else s[: limit - 1] + "…"


def aggregate(runs: list[dict], peers: list[str], metrics: list[str]) -> dict:
    """peer -> metric -> {"median", "values", "errors"}; a peer with no entry at all is n/a."""
    agg: dict = {p: {} for p in peers}
    for p in peers:
        docs = [d for d in runs if d["peer"] == p]
        for m in metrics:
            values = [d["metrics"][m] for d in docs if m in d.get("metrics", {})]
            errors = []
            for d in docs:
                if m in d.get("metrics", {}):
                    continue
                e = d.get("errors", {})
                if m in e:
                    errors.append(e[m])
                elif "*" in e and _step_of(m) == d.get("step"):
                    errors.append(e["*"])
            if values or errors:
                agg[p][m] = {"median": statistics.median(values) if values else None,
                             "values": values, "errors": errors}
    return agg


def _step_of(metric: str) -> str:
    return "big" if metric.startswith("big_") or metric == "disk_big_mb" else "small"


def ratio(agg: dict, metric: str, better: str, peer: str) -> float | None:
    a = agg.get("ours", {}).get(metric, {}).get("median")
    b = agg.get(peer, {}).get(metric, {}).get("median")
    if a is None or b is None or a <= 0 or b <= 0:
        return None
    return a / b if better == "higher" else b / a


def build_table(agg: dict, peers: list[str], sizes: dict) -> tuple[str, list[str]]:
    ratio_peers = [p for p in peers if p != "ours"] if "ours" in peers else []
    head = ["Measure", *peers, *[f"ours/{p}" for p in ratio_peers], "goal", "met?"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    notes: list[str] = []
    footnotes: dict[str, int] = {}  # one number per distinct error message

    def error_cell(msg: str) -> str:
        msg = cell_text(msg, 300)
        if msg not in footnotes:
            footnotes[msg] = len(footnotes) + 1
        return f"error [{footnotes[msg]}]"
    for metric, label, better in rows(sizes):
        cells = [label]
        for p in peers:
            e = agg[p].get(metric)
            if e is None:
                cells.append("n/a")
            elif e["median"] is None:
                cells.append(error_cell(e["errors"][0]))
            else:
                mark = ""
                if e["errors"]:
                    mark = " *"
                    notes.append(f"{p}, {metric}: {len(e['errors'])} of "
                                 f"{len(e['errors']) + len(e['values'])} repetitions failed "
                                 f"({cell_text(e['errors'][0], 200)}); median of the rest.")
                cells.append(fmt(e["median"]) + mark)
        for p in ratio_peers:
            r = ratio(agg, metric, better, p)
            cells.append(fmt_ratio(r) if r is not None else "–")
        goals = [g for g in GOALS if g[0] == metric]
        cells.append("; ".join(g[4] for g in goals) if goals else "")
        cells.append("; ".join(judge(agg, g, better, peers) for g in goals) if goals else "")
        lines.append("| " + " | ".join(cells) + " |")
    errors = [f"error [{i}]: {msg}" for msg, i in footnotes.items()]
    return "\n".join(lines), errors + notes


def judge(agg: dict, goal: tuple, better: str, peers: list[str]) -> str:
    metric, kind, peer, threshold, _text = goal
    if "ours" not in peers:
        return "? (ours not run)"
    ours = agg["ours"].get(metric)
    if ours is None or ours["median"] is None:
        return "NO (ours: error)"
    if kind == "max":
        return "yes" if ours["median"] <= threshold else "NO"
    if peer not in peers:
        return f"? ({peer} not run)"
    r = ratio(agg, metric, better, peer)
    if r is None:
        return f"? ({peer}: error)"
    return "yes" if r >= threshold else "NO"


# ------------------------------------------------------------------ machine

def machine() -> dict:
    mem = "?"
    cpu = "?"
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                mem = f"{int(line.split()[1]) / 1024 / 1024:.1f} GiB"
                break
    except OSError:
        pass
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {"cores": os.cpu_count(), "cpu": cpu, "memory": mem,
            "os": platform.platform(terse=True), "python": platform.python_version()}


def load_average() -> float:
    try:
        return os.getloadavg()[0]
    except (OSError, AttributeError):
        return float("nan")


def git_commit() -> str:
    try:
        rev = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT,
                             capture_output=True, text=True, check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"],
                               cwd=ROOT, capture_output=True, text=True).stdout.strip()
        return rev + ("-dirty" if dirty else "")
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def flag_notes(runs: list[dict]) -> list[str]:
    """Correctness checks the workloads recorded: anything not as expected is reported."""
    notes = []
    seen = set()
    for d in runs:
        info = d.get("info", {})
        for key in ("loads_verified", "foreach_verified", "batch_verified", "big_verified"):
            if key in info and info[key] is not True and (d["peer"], key) not in seen:
                seen.add((d["peer"], key))
                notes.append(f"{d['peer']}: check `{key}` failed ({cell_text(str(info[key]), 200)})"
                             " -- its figures for that row are not trustworthy.")
        for key in ("foreach_cached_recomputed", "cached_call_recomputed"):
            if info.get(key) and (d["peer"], key) not in seen:
                seen.add((d["peer"], key))
                notes.append(f"{d['peer']}: the 'cached' run recomputed {info[key]} call(s) "
                             f"(`{key}`): it is not a pure cache hit.")
    return notes


FOOTER = """\
### How each figure is measured

Every figure is the median of the repetitions above; every ratio is ours / peer computed from
medians of this one run, oriented so that > 1 means ours is better (rates: ours/peer; times,
memory, size: peer/ours). Each step of each repetition runs in a fresh process and a fresh
temporary directory; peers are interleaved within a repetition. Timing: `time.perf_counter`.
Same seeded data for every peer. "n/a": the peer has no such operation.

* **(1)** one `save` per (subject, session) address, then the database is closed, its files
  measured (5), and reopened; then one `load` per address. Loads are checked equal to the input.
  Batched saves (1b): ours `with db.batch()`, the original a DataFrame with schema-key columns
  (it saves one record per row), the raw floor has no batch mode.
* **(2)** one array of the stated size is saved, the database closed and reopened, and the
  array loaded back (every 4 KiB page touched, so a lazily mapped result is paid for, and
  checked equal). **Peak memory** = the larger kernel RSS high-water mark (`VmHWM`, reset
  through `/proc/self/clear_refs` before each phase) of the save and of the load, minus the RSS
  just before the save with the input array already resident, divided by the payload. A store
  that copies nothing scores about 1x (the loaded array itself).
* **(3)** `for_each` of `trivial(x) = x * 2` over every address, once on an empty cache, once
  again with everything cached; the workloads count the function's executions to check that
  the re-run recomputes nothing. **One cached call**: the median of individually timed cache
  hits on one 100-element input — ours: calling the `@lineage_fcn` function on a loaded
  variable; joblib: `Memory(...).cache(trivial)(x)`; the original has no call cache, so its
  figure is a one-address `for_each(..., skip_computed=True)` (median of 5).
  joblib's for_each analogue calls the cached function on each in-memory array.
* **(4)** every small value of the variable as one DataFrame (ours `load_all(as_df=True)`,
  the original `load(as_df=True)`, raw: read every file + `pd.DataFrame`).
* **(5)** bytes allocated on disk (as `du` counts them) by everything in the database's
  directory after a close; the original's `scidb.log` is not counted.
* **raw floor**: NPY header + the array buffer hashed with blake3 (all cores from 4 MiB) and
  written to `objects/<h[:2]>/<h[2:]>` via a temp file + rename, read with `np.load`; the
  address map is an in-memory dict (no index). Neither side fsyncs.
* **the original SciStack** (`scistack==0.1.58`, API in `scidb`): run with
  `SCIDB_LOG_LEVEL=WARN` (it logs every call at INFO to stderr and to `scidb.log`; measured
  to make no speed difference). `load_all` no longer exists there: `load(as_df=True)` is used;
  its only cache is `for_each(..., skip_computed=True)`, used for both for_each runs.
"""


def render(agg: dict, runs: list[dict], peers: list[str], sizes: dict, args, wall: float,
           pythons: dict) -> str:
    table, notes = build_table(agg, peers, sizes)
    m = machine()
    now = dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    versions: dict[str, dict] = {}
    for d in runs:
        if d.get("versions"):
            versions.setdefault(d["peer"], d["versions"])
    parts = [
        "# scistack vs its peers",
        "",
        f"Produced by `{args.command}` on {now}, scistack commit `{git_commit()}`; "
        f"{args.reps} repetition(s), medians; whole run {wall / 60:.1f} min"
        + (" (**--quick sizes**)" if args.quick else "") + ".",
        "",
        f"Machine: {m['cores']} cores ({m['cpu']}), {m['memory']} memory, {m['os']}; "
        f"load average (1 min) {args.load_before:.1f} at the start, {load_average():.1f} at "
        "the end. The machine is shared and noisy: compare within one table, not across tables.",
        "",
    ]
    for p in peers:
        py = pythons.get(p, "?")
        pk = ", ".join(f"{k} {v}" for k, v in sorted(versions.get(p, {}).items()))
        where = "the driver's interpreter" if p == "ours" else f"bench/.venvs/{p}"
        parts.append(f"* **{p}** ({where}, Python {py}): {pk or 'no versions reported'}")
    parts += ["", table, ""]
    better_of = {r[0]: r[2] for r in rows(sizes)}
    verdicts = [judge(agg, g, better_of[g[0]], peers) for g in GOALS]
    met = sum(v == "yes" for v in verdicts)
    missed = sum(v.startswith("NO") for v in verdicts)
    unjudged = len(verdicts) - met - missed
    summary = f"**Goals: {met} of {len(GOALS)} met, {missed} missed"
    summary += f", {unjudged} not judged (a peer was not run or failed)**" if unjudged else "**"
    parts.append(summary + " -- see the met? column.")
    parts.append("")
    extra = notes + flag_notes(runs)
    if extra:
        parts += ["### Errors and notes on this run", ""] + [f"* {n}" for n in extra] + [""]
    parts.append(FOOTER)
    return "\n".join(parts)


# ------------------------------------------------------------------ main

def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--peers", default=",".join(ORDER), help="comma-separated subset of "
                    + ",".join(ORDER))
    ap.add_argument("--reps", type=int, default=None,
                    help="repetitions (default 3; 1 with --quick)")
    ap.add_argument("--quick", action="store_true",
                    help="small sizes, for iterating on the harness")
    ap.add_argument("--seed", type=int, default=20240601)
    ap.add_argument("--timeout", type=float, default=1800, help="seconds per step process")
    ap.add_argument("--out", default=None, help="markdown output (default bench/results/latest.md;"
                    " --quick writes nothing unless given)")
    args = ap.parse_args(argv)
    args.reps = args.reps or (1 if args.quick else 3)
    args.command = "make bench-peers" if argv is None and len(sys.argv) == 1 else \
        "bench/peers/run.py " + " ".join(sys.argv[1:] if argv is None else argv)
    peers = [p.strip() for p in args.peers.split(",") if p.strip()]
    unknown = [p for p in peers if p not in PEERS]
    if unknown:
        ap.error(f"unknown peer(s) {unknown}; choose from {ORDER}")
    peers = [p for p in ORDER if p in peers]
    sizes = QUICK if args.quick else FULL
    out = Path(args.out) if args.out else (None if args.quick else RESULTS / "latest.md")

    t_start = time.perf_counter()
    args.load_before = load_average()
    pys: dict[str, Path] = {}
    setup_errors: dict[str, str] = {}
    for p in peers:
        try:
            pys[p] = ensure_venv(p)
        except (OSError, subprocess.CalledProcessError) as exc:
            setup_errors[p] = f"venv setup failed: {exc}"
            log(f"[setup] {p}: {setup_errors[p]}")

    runs: list[dict] = []
    for rep in range(args.reps):
        for p in peers:
            for step in PEERS[p]["steps"]:
                if p in setup_errors:
                    runs.append({"peer": p, "step": step, "metrics": {}, "info": {},
                                 "errors": {"*": setup_errors[p]}, "rep": rep})
                    continue
                doc = run_step(p, pys[p], step, sizes, args.seed, args.timeout)
                doc["rep"] = rep
                runs.append(doc)
                bad = doc.get("errors", {})
                log(f"[rep {rep + 1}/{args.reps}] {p:8s} {step:5s} {doc['wall_s']:6.1f} s"
                    + (f"  ({len(bad)} error(s): {cell_text(next(iter(bad.values())), 90)})"
                       if bad else ""))
    wall = time.perf_counter() - t_start

    metrics = [r[0] for r in rows(sizes)]
    agg = aggregate(runs, peers, metrics)
    pythons = {d["peer"]: d.get("python", "?") for d in runs if d.get("python")}
    md = sanitize(render(agg, runs, peers, sizes, args, wall, pythons))
    print(md)
    # Full detail, tracebacks included, for debugging: git-ignored, beside the venvs.
    VENVS.mkdir(parents=True, exist_ok=True)
    (VENVS / "last-run.json").write_text(json.dumps(runs, indent=1, default=str))
    if out is not None:
        for d in runs:
            d.get("info", {}).pop("tracebacks", None)
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(md)
        out.with_suffix(".json").write_text(sanitize(json.dumps(
            {"sizes": sizes, "reps": args.reps, "seed": args.seed, "peers": peers,
             "machine": machine(), "wall_s": wall,
             "medians": {p: {m: v["median"] for m, v in agg[p].items()} for p in peers},
             "runs": runs}, indent=1, sort_keys=True, default=str)) + "\n")
        log(f"[done] wrote {out.relative_to(ROOT) if out.is_relative_to(ROOT) else out} "
            f"in {wall / 60:.1f} min")
    return 0


if __name__ == "__main__":
    sys.exit(main())
