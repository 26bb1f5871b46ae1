"""Benchmark the MATLAB client: loading a 100 MB array in Octave vs `fread` of the same bytes,
then small values: individual saves/s, loads/s and a cached for_each, next to Python's.

Run standalone (``python bench/matlab.py``); it needs ``octave-cli`` (and ``zstd`` for the
compressed case) and says so and stops when they are missing. A throwaway project is created
in a temporary directory: Python saves a 100 MB float64 array twice, once incompressible
(stored raw) and once compressible (zeros with a sparse ramp: stored as one zstd frame), and
writes the raw array's data bytes to a plain file. Octave then times, as medians of 3:

* ``fread``: ``fread(fid, n, '*double')`` of the plain file (the floor: one read, no copy);
* ``load raw``: ``RawBig().load('subject', 1)`` (journal lookup, read, header checks, decode);
* ``load zstd``: the same for the compressed value (inflated by the zstd tool first).

Every file was just written, so all reads come from the page cache: the figures compare CPU
and copying costs, not disks.

Small values (``--small`` runs only these): N_SMALL individual saves of a 100-element array
(in Octave: queued, statement form, plus the one flush that records them; the rate counts
both), N_SMALL individual loads, and a for_each over N_COMBOS combinations run twice (the
second, all cached, is timed), in Octave and in Python on the same kind of data; then
N_THUNK Thunk calls of the same step on loaded values, all cache hits: first in the session
(Octave: one `scistack matlab-thunk` each) and repeated (Octave: the session memo; Python: a
lineage function's cached call).
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import scistack  # noqa: E402
from scistack import BaseVariable  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
N_BYTES = 100 * 1024 * 1024
REPEAT = 3
N_SMALL = 200
N_COMBOS = 20
N_THUNK = 10


class RawBig(BaseVariable):
    pass


class ZstdBig(BaseVariable):
    pass


OCTAVE_SCRIPT = r"""
addpath('{matlab}');
scistack.configure_database(fullfile('{root}', 'bench.duckdb'), {{'subject'}});
n = {n};
t = zeros({repeat}, 3);
for k = 1:{repeat}
    t0 = tic;
    fid = fopen(fullfile('{root}', 'plain.bin'), 'r');
    x = fread(fid, n / 8, '*double');
    fclose(fid);
    t(k, 1) = toc(t0);
    clear x
    t0 = tic;
    r = RawBig().load('subject', 1);
    t(k, 2) = toc(t0);
    ok_raw = isequal(size(r.data), [n / 8, 1]) && r.data(end) == {last_raw};
    clear r
    t0 = tic;
    z = ZstdBig().load('subject', 1);
    t(k, 3) = toc(t0);
    ok_zstd = isequal(size(z.data), [n / 8, 1]) && z.data(end) == {last_zstd};
    clear z
end
m = median(t, 1);
fprintf('RESULT fread=%.6f raw=%.6f zstd=%.6f ok=%d\n', m(1), m(2), m(3), ok_raw && ok_zstd);
"""


SMALL_SCRIPT = r"""
addpath('{matlab}'); addpath('{vars}');
scistack.configure_database(fullfile('{root}', 'm.duckdb'), {{'subject'}});
n = {n};
t0 = tic;
for k = 1:n
    SmallRaw().save(rand(100, 1) + k, 'subject', k);
end
t_queue = toc(t0);
t1 = tic;
scistack.flush();
t_flush = toc(t1);
t0 = tic;
for k = 1:n
    r = SmallRaw().load('subject', k);
end
t_load = toc(t0);
scistack.for_each(@small_step, struct('x', SmallRaw()), {{SmallOut()}}, 'subject', 1:{combos});
t0 = tic;
rep = scistack.for_each(@small_step, struct('x', SmallRaw()), {{SmallOut()}}, 'subject', 1:{combos});
t_cached = toc(t0);
f = scistack.Thunk(@small_step);
xs = cell(1, {nthunk});
for k = 1:{nthunk}
    xs{{k}} = SmallRaw().load('subject', k);
end
t0 = tic;
for k = 1:{nthunk}
    y = f(xs{{k}});        % cached by the for_each above: one Python lookup each
end
t_thunk1 = toc(t0);
t0 = tic;
for k = 1:{nthunk}
    z = f(xs{{k}});        % the same calls again: answered by the session memo
end
t_thunk2 = toc(t0);
fprintf('RESULT queue=%.6f flush=%.6f load=%.6f cached=%.6f ncached=%d thunk1=%.6f thunk2=%.6f ok=%d\n', ...
    t_queue, t_flush, t_load, t_cached, rep.counts.cached, t_thunk1, t_thunk2, y.cached && z.cached);
"""


class SmallRaw(BaseVariable):
    pass


class SmallOut(BaseVariable):
    pass


def small_step(x):
    return x * 2


def python_small(root: Path) -> dict[str, float]:
    """Python's figures for the same work: individual saves, loads, a cached for_each."""
    import time

    db = scistack.configure_database(root / "py.duckdb", ["subject"])
    rng = np.random.default_rng(0)
    t0 = time.perf_counter()
    for k in range(1, N_SMALL + 1):
        SmallRaw.save(rng.random(100) + k, subject=k)
    saves = N_SMALL / (time.perf_counter() - t0)
    t0 = time.perf_counter()
    for k in range(1, N_SMALL + 1):
        SmallRaw.load(subject=k)
    loads = N_SMALL / (time.perf_counter() - t0)
    combos = list(range(1, N_COMBOS + 1))
    scistack.for_each(small_step, {"x": SmallRaw}, [SmallOut], subject=combos, verbose=False)
    t0 = time.perf_counter()
    scistack.for_each(small_step, {"x": SmallRaw}, [SmallOut], subject=combos, verbose=False)
    cached = time.perf_counter() - t0
    step = scistack.Thunk(small_step)
    xs = [SmallRaw.load(subject=k) for k in range(1, N_THUNK + 1)]
    for x in xs:
        step(x)
    t0 = time.perf_counter()
    for x in xs:
        step(x)
    thunk = N_THUNK / (time.perf_counter() - t0)
    db.close()
    return {"saves": saves, "loads": loads, "cached": cached, "thunk": thunk}


def small(octave: str) -> int:
    """Small values, Octave next to Python; prints the table."""
    with tempfile.TemporaryDirectory(prefix="scistack-bench-matlab-small-") as tmp:
        root = Path(tmp)
        py = python_small(root)
        vars_dir = root / "vars"
        vars_dir.mkdir()
        for var in ("SmallRaw", "SmallOut"):
            (vars_dir / f"{var}.m").write_text(f"classdef {var} < scistack.BaseVariable\nend\n")
        (vars_dir / "small_step.m").write_text("function y = small_step(x)\ny = x * 2;\nend\n")
        script = SMALL_SCRIPT.format(matlab=REPO / "matlab", vars=vars_dir, root=root, n=N_SMALL,
                                     combos=N_COMBOS, nthunk=N_THUNK)
        cli = Path(sys.executable).with_name("scistack")
        env = {**os.environ, "SCISTACK_DB": "", "SCISTACK_CLI": str(cli) if cli.exists() else "scistack"}
        proc = subprocess.run([octave, "--no-gui", "--no-init-file", "--quiet", "--eval", script],
                              capture_output=True, text=True, timeout=1800, cwd=tmp, env=env,
                              check=False)
    m = re.search(r"RESULT queue=([\d.]+) flush=([\d.]+) load=([\d.]+) cached=([\d.]+) "
                  r"ncached=(\d+) thunk1=([\d.]+) thunk2=([\d.]+) ok=(\d)", proc.stdout)
    if proc.returncode != 0 or m is None:
        print(proc.stdout + proc.stderr)
        print("bench/matlab.py: the Octave small-value run failed")
        return 1
    queue, flush, load, cached = (float(m.group(i)) for i in range(1, 5))
    print(f"\nsmall values (100 float64), {N_SMALL} individual saves and loads, "
          f"for_each over {N_COMBOS} combinations (second run, all cached)")
    print(f"{'':<34}{'Octave':>12}{'Python':>12}")
    print(f"{'saves/s (Octave: queue + flush)':<34}{N_SMALL / (queue + flush):>12.0f}{py['saves']:>12.0f}")
    print(f"{'  of which queueing only, saves/s':<34}{N_SMALL / queue:>12.0f}{'':>12}")
    print(f"{'loads/s':<34}{N_SMALL / load:>12.0f}{py['loads']:>12.0f}")
    print(f"{'cached for_each (s)':<34}{cached:>12.3f}{py['cached']:>12.3f}")
    thunk1, thunk2 = float(m.group(6)), float(m.group(7))
    print(f"{'cached Thunk calls/s, first':<34}{N_THUNK / thunk1:>12.1f}{'':>12}")
    print(f"{'cached Thunk calls/s, repeated':<34}{N_THUNK / thunk2:>12.1f}{py['thunk']:>12.0f}")
    if m.group(8) != "1":
        print("warning: an Octave Thunk call was not a cache hit")
        return 1
    if int(m.group(5)) != N_COMBOS:
        print(f"warning: the second Octave for_each cached {m.group(5)} of {N_COMBOS}")
        return 1
    return 0


def build(root: Path) -> tuple[float, float]:
    """The project and the plain file; returns the last element of each saved array."""
    db = scistack.configure_database(root / "bench.duckdb", ["subject"])
    raw = np.random.default_rng(0).random(N_BYTES // 8)
    RawBig.save(raw, subject=1)
    (root / "plain.bin").write_bytes(raw.tobytes())
    ramp = np.zeros(N_BYTES // 8)
    ramp[::1000] = np.arange(ramp[::1000].size, dtype=float)
    ZstdBig.save(ramp, subject=1)
    last_raw, last_zstd = float(raw[-1]), float(ramp[-1])
    del raw, ramp
    for var in ("RawBig", "ZstdBig"):
        (var_dir := root / "vars").mkdir(exist_ok=True)
        (var_dir / f"{var}.m").write_text(f"classdef {var} < scistack.BaseVariable\nend\n")
    db.close()
    return last_raw, last_zstd


def stored_sizes(root: Path) -> dict[str, int]:
    objects = root / ".scistack" / "objects"
    return {p.name: p.stat().st_size for p in objects.glob("*/*") if p.is_file()}


def main() -> int:
    octave = shutil.which("octave-cli")
    if octave is None:
        print("bench/matlab.py: skipped, octave-cli is not installed (make octave installs it)")
        return 0
    if shutil.which("zstd") is None:
        print("bench/matlab.py: skipped, the zstd command-line tool is not installed")
        return 0
    if "--small" in sys.argv[1:]:
        return small(octave)
    with tempfile.TemporaryDirectory(prefix="scistack-bench-matlab-") as tmp:
        root = Path(tmp)
        last_raw, last_zstd = build(root)
        sizes = sorted(stored_sizes(root).values())
        script = OCTAVE_SCRIPT.format(matlab=REPO / "matlab", root=root, n=N_BYTES, repeat=REPEAT,
                                      last_raw=repr(last_raw), last_zstd=repr(last_zstd))
        script = f"addpath('{root / 'vars'}');\n" + script
        proc = subprocess.run([octave, "--no-gui", "--no-init-file", "--quiet", "--eval", script],
                              capture_output=True, text=True, timeout=1800, cwd=tmp,
                              env={**os.environ, "SCISTACK_DB": ""}, check=False)
        match = re.search(r"RESULT fread=([\d.]+) raw=([\d.]+) zstd=([\d.]+) ok=(\d)", proc.stdout)
        if proc.returncode != 0 or match is None:
            print(proc.stdout + proc.stderr)
            print("bench/matlab.py: the Octave run failed")
            return 1
    fread_s, raw_s, zstd_s = (float(match.group(i)) for i in (1, 2, 3))
    mb = N_BYTES / 1e6
    print(f"MATLAB client (GNU Octave), load of a {N_BYTES >> 20} MiB float64 array, median of {REPEAT}")
    print(f"stored object sizes: {', '.join(f'{s / 1e6:.1f} MB' for s in sizes)}")
    print(f"{'case':<34}{'time (s)':>10}{'MB/s':>10}{'vs fread':>10}")
    for label, seconds in [("fread of the same bytes (*double)", fread_s),
                           ("load, stored raw", raw_s),
                           ("load, stored zstd-compressed", zstd_s)]:
        print(f"{label:<34}{seconds:>10.3f}{mb / seconds:>10.0f}{seconds / fread_s:>9.1f}x")
    if match.group(4) != "1":
        print("warning: a loaded array did not have the expected size or last element")
        return 1
    return small(octave)


if __name__ == "__main__":
    raise SystemExit(main())
