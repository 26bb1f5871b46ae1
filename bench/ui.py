"""Web view (issue 19): how long the pipeline graph and a node's grid take to serve and to draw
for a project of 50 variables x 2,000 addresses (goal: under 1 s each).

    python bench/ui.py                 # 50 variables x 2,000 addresses, 3 repetitions
    python bench/ui.py --subjects 20   # a smaller project (20 x 10 = 200 addresses)
    python bench/ui.py --project /tmp/scistack-bench/refs-1M/bench.duckdb --node var:EMG
                                       # a grid of an existing (large) project, a page at a time

The project (Raw, then 7 functions with 7 outputs each, chained: 50 variables, 100k values)
is built once through the public API under --dir (default $SCISTACK_BENCH_DIR or
/tmp/scistack-bench) and kept. Measured, medians of --repeats: the JSON answer of
`/api/graph` (status of every value, the graph, the layout) and of `/api/grid` for one
variable, over HTTP from a running `scistack ui`; and, when Debian's chromium and
Playwright are installed, the time from navigation until the page has drawn the graph and
the grid (fetch included).
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.parse
import urllib.request
from pathlib import Path

FUNCTIONS, OUTPUTS, SESSIONS = 7, 7, 10
GRID = "api/grid?node=var%3AV3_0"  # a variable four functions downstream of Raw

STEPS = "\n".join(f"@lineage_fcn\ndef step{i}(x, k):\n    return tuple(float(np.sum(x)) + k + j for j in range({OUTPUTS}))\n"
                  for i in range(FUNCTIONS))

BUILD = '''
import sys
import numpy as np
from scistack import BaseVariable, configure_database, for_each

root, subjects, functions, outputs, sessions = sys.argv[1], *map(int, sys.argv[2:])
sys.path.insert(0, root)
import uipipe

db = configure_database(root + "/bench.duckdb", ["subject", "session"])
Raw = type("Raw", (BaseVariable,), {})
with db.batch():
    for s in range(subjects):
        for t in range(sessions):
            Raw.save(np.full(4, float(s + t)), subject=s, session=t)
previous = Raw
for i in range(functions):
    outs = [type(f"V{i}_{j}", (BaseVariable,), {}) for j in range(outputs)]
    for_each(getattr(uipipe, f"step{i}"), inputs={"x": previous, "k": i}, outputs=outs,
             subject=list(range(subjects)), session=list(range(sessions)))
    previous = outs[0]
db.close()
'''


def build(root: Path, subjects: int) -> Path:
    marker = root / "built"
    if marker.exists():
        return root / "bench.duckdb"
    shutil.rmtree(root, ignore_errors=True)
    root.mkdir(parents=True)
    (root / "uipipe.py").write_text("import numpy as np\nfrom scistack import lineage_fcn\n\n\n" + STEPS)
    start = time.perf_counter()
    subprocess.run([sys.executable, "-c", BUILD, str(root), str(subjects), str(FUNCTIONS), str(OUTPUTS),
                    str(SESSIONS)], check=True)
    print(f"  built {root} in {time.perf_counter() - start:.0f} s", file=sys.stderr)
    marker.write_text("ok")
    return root / "bench.duckdb"


CHANGE = '''
import sys, time
import numpy as np
from scistack import BaseVariable, configure_database
db = configure_database(sys.argv[1] + "/bench.duckdb")
type("Raw", (BaseVariable,), {}).save(np.full(4, time.time()), subject=0, session=0)
db.close()
'''


def change_upstream(db_path: Path) -> None:
    """Re-record one Raw value: every variable downstream must be judged again (a report
    reuses judged cells only while nothing they depend on changed)."""
    subprocess.run([sys.executable, "-c", CHANGE, str(db_path.parent)], check=True)


def timed_get(url: str) -> tuple[float, int]:
    start = time.perf_counter()
    with urllib.request.urlopen(url, timeout=600) as response:
        body = response.read()
    return time.perf_counter() - start, len(body)


def serve(db_path: Path) -> tuple[subprocess.Popen, str]:
    """A fresh `scistack ui` (nothing cached yet) and its URL."""
    server = subprocess.Popen([sys.executable, "-m", "scistack", "--db", str(db_path), "ui", "--port", "0"],
                              stdout=subprocess.PIPE, text=True)
    return server, re.search(r"http://\S+/", server.stdout.readline()).group(0)


def stop(server: subprocess.Popen) -> None:
    server.terminate()
    server.wait()
    server.stdout.close()


def json_times(db_path: Path, times: dict[str, list[float]], size: dict[str, int]) -> None:
    """The JSON answers, each first in a fresh server: the graph after a change, then the
    graph, a grid and the graph again (that one from the server's memory)."""
    for after_change in (True, False):
        if after_change:
            change_upstream(db_path)
        server, url = serve(db_path)
        try:
            asked = ([("/api/graph after a change (JSON)", "api/graph")] if after_change else
                     [("/api/graph (JSON)", "api/graph"), ("/api/grid one variable (JSON)", GRID),
                      ("/api/grid its next page (JSON)", GRID + "&offset=500"),
                      ("/api/graph again (cached)", "api/graph")])
            for name, path in asked:
                seconds, size[name] = timed_get(url + path)
                times.setdefault(name, []).append(seconds)
        finally:
            stop(server)


def project_grid_times(db_path: Path, node: str, times: dict[str, list[float]], size: dict[str, int]) -> None:
    """A grid of an existing project (e.g. bench/index_scale.py's 1M-ref one), in a fresh
    server: its first page (the judging), the next page, then a filter by address text."""
    server, url = serve(db_path)
    grid = f"api/grid?node={urllib.parse.quote(node)}"
    try:
        for name, path in [(f"{node} first page", grid), (f"{node} next page", grid + "&offset=500"),
                           (f"{node} filtered by text", grid + "&text=subject%3D12%2C")]:
            seconds, size[name] = timed_get(url + path)
            times.setdefault(name, []).append(seconds)
    finally:
        stop(server)


def browser_times(db_path: Path, times: dict[str, list[float]], *, after_change: bool = False) -> bool:
    """Navigation until the graph, then a grid, is drawn (fetch included) in a fresh server;
    `after_change`: the graph alone, after a Raw value changed (everything judged again)."""
    chromium = shutil.which("chromium") or "/usr/bin/chromium"
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        return False
    if not Path(chromium).exists():
        return False
    args = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
            "--disable-background-networking", "--disable-component-update", "--disable-sync"]
    profile = tempfile.mkdtemp(prefix="scistack-chromium-")
    if after_change:
        change_upstream(db_path)
    server, url = serve(db_path)
    try:
        with sync_playwright() as p:
            browser = p.chromium.launch_persistent_context(profile, executable_path=chromium, headless=True,
                                                           args=args)
            page = browser.new_page()
            page.set_default_timeout(600_000)
            pages = [("graph drawn (page)", "#/", "svg.graph g.node"),
                     ("grid drawn (page)", "#/node/var%3AV3_0", "table.grid td.cell")]
            for name, path, selector in pages if not after_change else pages[:1]:
                name = name.replace("drawn", "drawn after a change") if after_change else name
                page.goto("about:blank")
                start = time.perf_counter()
                page.goto(url + path)
                page.wait_for_selector(selector)
                times.setdefault(name, []).append(time.perf_counter() - start)
            browser.close()
    finally:
        stop(server)
        shutil.rmtree(profile, ignore_errors=True)
    return True


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--subjects", type=int, default=200, help="addresses = subjects x 10 sessions")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--dir", default=os.environ.get("SCISTACK_BENCH_DIR", "/tmp/scistack-bench"))
    parser.add_argument("--project", help="instead: time a grid of this existing project's DuckDB path")
    parser.add_argument("--node", default="var:EMG", help="with --project: the grid's node")
    args = parser.parse_args(argv if argv is not None else [])
    times: dict[str, list[float]] = {}
    size: dict[str, int] = {}
    if args.project:
        for _ in range(args.repeats):
            project_grid_times(Path(args.project), args.node, times, size)
        print(f"web view of {args.project}, {args.node}; median of {args.repeats}, each in a fresh server")
        for name, seconds in times.items():
            print(f"{name:<34}{statistics.median(seconds):>10.3f}{size.get(name, ''):>12}")
        return
    db_path = build(Path(args.dir) / f"ui-{args.subjects}x{SESSIONS}", args.subjects)
    drawn = True
    for _ in range(args.repeats):
        json_times(db_path, times, size)
        drawn = browser_times(db_path, times, after_change=True) and drawn
        drawn = browser_times(db_path, times) and drawn
    variables = 1 + FUNCTIONS * OUTPUTS
    print(f"web view, {variables} variables x {args.subjects * SESSIONS:,} addresses; median of {args.repeats}; "
          "each repetition starts a fresh server (nothing cached in it); 'after a change': one Raw value was "
          "re-recorded just before, so every variable is judged again, else the index reuses the judged "
          "cells an earlier report kept")
    print(f"{'what':<34}{'median s':>10}{'bytes':>12}")
    for name, seconds in times.items():
        print(f"{name:<34}{statistics.median(seconds):>10.3f}{size.get(name, ''):>12}")
    if not drawn:
        print("(browser rows skipped: chromium or playwright not installed)")


if __name__ == "__main__":
    main(sys.argv[1:])
