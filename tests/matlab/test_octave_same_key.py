"""MATLAB's for_each computes a call key once per run, as Python's does: combinations whose
inputs hold the same values (a recording copied to two sessions) share one call key; the
first runs, the others are served its result, cached, each recorded with a call record of
its own that names its own inputs, and a re-run finds them all cached."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np

from scistack.database import Database
from scistack.index import key_of
from tests.helpers import octave_for_each_project, run_octave

SUBJECTS = (1, 2, 3, 4)


def _project(tmp_path: Path) -> dict:
    """Y at (s, pre) and (s, post) holds the same values for each subject; `mstep` prints
    each combination it computes. Returns the environment Octave runs run.m in."""
    with Database(tmp_path / "p" / "p.duckdb", ["subject", "session"]) as db:
        for s in SUBJECTS:
            oid = db.store.put_value(np.arange(3.0) + 10 * s)
            for session in ("pre", "post"):
                db.index.put_ref("Y", {"subject": s, "session": session}, {}, oid, "npy")
    return octave_for_each_project(
        tmp_path, ("Y", "M"),
        {"mstep": "function out = mstep(y, k)\n  printf('computed %g\\n', y(1)); fflush(stdout);\n"
                  "  out = y * k;\nend\n"},
        ("subject", "session"),
        "r = scistack.for_each(@mstep, struct('y', Y(), 'k', int64(3)), {M()}, 'subject', [], "
        "'session', {'pre', 'post'});\n"
        "printf('ran=%d cached=%d failed=%d\\n', r.counts.ran, r.counts.cached, r.counts.failed);\n"
        "printf('outputs=%d\\n', sum(arrayfun(@(it) numel(it.outputs), r.items)));\n",
        SCISTACK_COMMIT_EVERY="0")  # a partial commit after every combination, too


def _run(cwd: Path, env: dict) -> tuple[int, int, int, int]:
    """run.m in Octave: (ran, cached, combinations computed, outputs the report names)."""
    out = run_octave(cwd, env)
    counts = re.search(r"ran=(\d+) cached=(\d+) failed=(\d+)", out.stdout)
    named = re.search(r"outputs=(\d+)", out.stdout)
    assert counts and named and counts.group(3) == "0", out.stdout + out.stderr
    computed = len(re.findall(r"^computed", out.stdout, re.M))
    return int(counts.group(1)), int(counts.group(2)), computed, int(named.group(1))


def test_the_same_inputs_at_two_addresses_are_computed_once_and_each_recorded_as_its_own(tmp_path: Path):
    """Before, each combination was planned against the call cache alone: the 8 ran (`mstep`
    called 8 times) where Python's for_each reports 4 ran, 4 cached."""
    env = _project(tmp_path)
    assert _run(tmp_path, env) == (4, 4, 4, 8)
    with Database(tmp_path / "p" / "p.duckdb") as db:
        db.index.refresh()
        calls = set()
        for s in SUBJECTS:
            for session in ("pre", "post"):
                addr = {"subject": s, "session": session}
                ref = db.index.current_at("M", key_of(addr), "{}")
                assert ref is not None, addr
                assert np.array_equal(db.store.get_value(ref.oid), (np.arange(3.0) + 10 * s) * 3)
                assert ref.params == {"mstep.k": 3}
                record = db.store.get_value(ref.call)
                assert record["inputs"]["y"]["addr"] == addr  # its own input, not the other session's
                assert record["outputs"] == [ref.oid]
                calls.add(ref.call)
        assert len(calls) == 8  # a record per combination
        assert len({db.index.call_key_of(c) for c in calls}) == 4  # one call key per subject
    assert _run(tmp_path, env) == (0, 8, 0, 8)
