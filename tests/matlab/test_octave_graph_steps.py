"""A MATLAB run names the variables it read (its run entry's `inputs`, as Python's do), so
the pipeline graph counts each MATLAB step as its own: `mstep(X)` failing at subject 2 and
`mstep(Y)` making the same variable at subject 4 are two nodes, and `mstep(Y)` shows no
failure of `mstep(X)`'s. Without the inputs, a MATLAB run fell to the old matching by
function and output, and each step's node counted the other's failure."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from scistack.database import Database
from scistack.ui import api
from tests.helpers import octave_for_each_project, run_octave

ZERO = {"done": 0, "stale": 0, "unknown": 0, "failed": 0, "missing": 0}


def test_a_matlab_run_names_its_inputs_and_its_graph_node_counts_its_own_step(tmp_path: Path):
    with Database(tmp_path / "p" / "p.duckdb", ["subject", "session"]) as db:
        for s in (1, 2, 3):
            db.index.put_ref("X", {"subject": s, "session": "pre"}, {}, db.store.put_value(np.array([float(s)])),
                             "npy")
        db.index.put_ref("Y", {"subject": 4, "session": "pre"}, {}, db.store.put_value(np.array([4.0])), "npy")
    env = octave_for_each_project(
        tmp_path, ("X", "Y", "M"),
        {"mstep": "function out = mstep(x, k)\n  if x(1) == 2\n    error('two is refused');\n  end\n"
                  "  out = x * k;\nend\n"},
        ("subject", "session"),
        "scistack.for_each(@mstep, struct('x', X(), 'k', int64(3)), {M()}, 'subject', [1 2 3], "
        "'session', {'pre'});\n"
        "scistack.for_each(@mstep, struct('x', scistack.Fixed(Y(), 'session', 'pre'), 'k', int64(3)), {M()}, "
        "'subject', [4], 'session', {'pre'});\n"
        "disp('both ran');\n")
    out = run_octave(tmp_path, env)
    assert "both ran" in out.stdout, out.stdout + out.stderr
    with Database(tmp_path / "p" / "p.duckdb") as db:
        db.index.refresh()
        assert [run.extra.get("inputs") for run in db.index.runs()] == [["X"], ["Y"]]
        nodes = {n["id"]: n for n in api.graph(db)["nodes"]}
        assert sorted(n for n in nodes if n.startswith("fn:")) == ["fn:mstep(X)", "fn:mstep(Y)"]
        assert nodes["fn:mstep(X)"]["counts"] == {**ZERO, "done": 2, "failed": 1}
        mine = nodes["fn:mstep(Y)"]
        assert (mine["counts"], mine["state"]) == ({**ZERO, "done": 1}, "current")  # (had been failed 1)
        assert nodes["var:M"]["counts"] == {**ZERO, "done": 3, "failed": 1}
        grid = api.grid(db, "fn:mstep(Y)")  # its grid: its own cell, as it counts
        assert (grid["addresses"], grid["counts"]["M"]) == ([{"subject": 4, "session": "pre"}], {**ZERO, "done": 1})
