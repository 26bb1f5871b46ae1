"""Benchmark the MATLAB client: loading a 100 MB array in Octave vs `fread` of the same bytes.

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
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
