"""Packs rewritten while they are read: gc's repack (objects/pack.py `PackSet.remove`) in one
process, a reader of every object in another."""

from __future__ import annotations

import subprocess
import time
from pathlib import Path

import blake3
import numpy as np
import pytest

from scistack.objects.local import LocalObjectStore

from .conftest import PYTHON

HERE = Path(__file__).resolve().parent


@pytest.mark.parametrize("how", ["repack"])
def test_a_reader_in_another_process_reads_every_object_while_packs_are_rewritten(tmp_path, python_env, how):
    """Each pack read is found through an index read before; a pack removed in between (a
    merge, gc's repack) had made the read fail with FileNotFoundError."""
    root = tmp_path / "objects"
    store = LocalObjectStore(root)
    rng = np.random.default_rng(7)
    expected, doomed = {}, []
    for b in range(150):  # more packs than a process keeps open: most are opened per read
        store.begin_batch()
        for i in range(6):
            payload = rng.bytes(int(rng.integers(10, 3000)))
            expected[store.put("bytes", payload)] = blake3.blake3(payload).hexdigest()
        doomed.append(store.put("bytes", rng.bytes(50)))  # not read: gc's repack drops them
        store.end_batch()
    listing = tmp_path / "expected.txt"
    listing.write_text("".join(f"{o} {d}\n" for o, d in expected.items()))
    stop = tmp_path / "stop"
    reader = subprocess.Popen([PYTHON, str(HERE / "pack_merge_reader.py"), str(root), str(listing), str(stop)],
                              env=python_env, stdout=subprocess.PIPE, text=True)
    try:
        assert reader.stdout.readline().strip() == "ready"
        time.sleep(0.3)
        rewritten = 0
        for round_ in range(12):  # a few packs at a time, many times over
            if how == "merge":
                rewritten += store.packs.merge_small(max_packs=int(rng.integers(2, 30))).packs_merged
            else:
                store.delete_many(doomed[round_ * 12 : round_ * 12 + 12])
                rewritten += 12
            time.sleep(0.05)
        assert rewritten >= 100
    finally:
        stop.touch()
        out, _ = reader.communicate(timeout=120)
    reads, errors, *first = out.split(" ", 2)
    assert int(reads) > len(expected) and int(errors) == 0, first
