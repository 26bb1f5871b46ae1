"""Peak memory of saving and loading a large array stays within ~2x of the array.

Each measurement runs in a fresh process and reads its own peak RSS (VmHWM), so nothing
the test process allocated before counts. Saving is measured on top of the array it saves;
loading from a bare interpreter, so its peak includes the loaded array itself.
"""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

MB = 1 << 20
SIZE = 200 * MB

CHILD = """
import resource, sys
import numpy as np
from scistack.objects import LocalObjectStore

def peak():
    # VmHWM: this process's own peak RSS. Not ru_maxrss, which a child inherits from the
    # parent it was forked from (a large pytest process would hide the child's real peak).
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024

root, mode, kind = sys.argv[1], sys.argv[2], sys.argv[3]
store = LocalObjectStore(root)
n = int(sys.argv[4]) // 8
if mode == "save":
    arr = np.empty(n)  # filled in place: no temporary copy raises the baseline
    np.random.default_rng(0).random(out=arr) if kind == "random" else arr.fill(0.0)
    base = peak()  # interpreter + imports + the array itself, resident
    oid = store.put_value(arr)
    print(oid, base, peak() - base)
else:
    base = peak()  # interpreter + imports, no array yet
    arr = store.get_value(sys.argv[5])
    assert arr.nbytes == n * 8
    print(arr.nbytes, base, peak() - base)
"""


def run_children(*argvs: list[str]) -> list[list[str]]:
    """Run one child per argv, all at once (two cores: the random and zeros cases overlap)."""
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(sys.path))
    procs = [subprocess.Popen([sys.executable, "-c", CHILD, *argv], env=env, text=True,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE) for argv in argvs]
    outs = []
    for proc in procs:
        out, err = proc.communicate(timeout=120)
        assert proc.returncode == 0, err[-3000:]
        outs.append(out.split())
    return outs


@pytest.mark.slow
def test_save_and_load_of_a_200_mb_array_stay_within_2x(tmp_path):
    """Random floats (stored raw) and zeros (zstd-streamed), each saved then loaded."""
    kinds = ["random", "zeros"]
    roots = [str(tmp_path / kind) for kind in kinds]
    saves = run_children(*([root, "save", kind, str(SIZE)] for root, kind in zip(roots, kinds)))
    loads = run_children(*([root, "load", kind, str(SIZE), save[0]]
                           for root, kind, save in zip(roots, kinds, saves)))
    for kind, (_, _, save_extra), (nbytes, _, load_peak) in zip(kinds, saves, loads):
        # Saving: the array is already in memory; the put may add at most one more array.
        assert int(save_extra) < 1.0 * SIZE, f"{kind}: save used {int(save_extra) / MB:.0f} MB more"
        # Loading: the result is one array; the whole load may peak at two arrays.
        assert int(nbytes) == SIZE
        assert int(load_peak) < 2.0 * SIZE, f"{kind}: load peaked at {int(load_peak) / MB:.0f} MB"
