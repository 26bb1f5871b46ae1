"""Oids are the same in every interpreter: fresh processes with different hash seeds agree."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from tests.objects import determinism_values

REPO = Path(__file__).resolve().parents[2]
SEEDS = ["0", "1", "4242"]


def oids_in_fresh_interpreters(seeds: list[str]) -> list[dict]:
    """Run the values module in one fresh interpreter per seed, all at once."""
    procs = [
        subprocess.Popen([sys.executable, "-m", "tests.objects.determinism_values"], cwd=REPO,
                         env=dict(os.environ, PYTHONHASHSEED=seed, PYTHONPATH=str(REPO)),
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for seed in seeds
    ]
    results = []
    for proc in procs:
        out, err = proc.communicate(timeout=120)
        assert proc.returncode == 0, err
        results.append(json.loads(out))
    return results


def test_oids_do_not_depend_on_the_hash_seed():
    results = oids_in_fresh_interpreters(SEEDS)
    assert len({r["hash_of_abc"] for r in results}) == len(SEEDS), "the seeds did not take effect"
    expected = determinism_values.oids()
    for seed, result in zip(SEEDS, results):
        assert result["oids"] == expected, f"PYTHONHASHSEED={seed}"


def test_dict_insertion_order_does_not_change_the_oid():
    forward = {name: 1 for name in sorted(determinism_values.NAMES)}
    backward = dict(reversed(list(forward.items())))
    from tests.objects.values import oid_of

    assert oid_of(forward) == oid_of(backward)
    assert oid_of({"$a": 1, "b": 2}) == oid_of({"b": 2, "$a": 1})
