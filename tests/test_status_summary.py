"""`status_summary` (set-at-a-time, in the index) agrees with the full grid's counts.

The grid judges each record in Python and is the reference; the summary must give the same
counts on every project, taking the fast path where the project allows it (each variable at
one level, no version-key variants, no failed run) and falling back to the grid elsewhere.
"""

from __future__ import annotations

import importlib
import sqlite3
import uuid
from collections import Counter
from pathlib import Path
from typing import Any
from unittest.mock import patch

import numpy as np
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from scistack import BaseVariable, configure_database, for_each
from scistack.errors import VariableNotFoundError
from scistack.index import key_of
from scistack.index import fold as fold_module
from scistack.report.status import status_cells, status_grid, status_summary
from tests.helpers import migrated_in_place, older_fold

PIPELINE = """
import numpy as np
from scistack import lineage_fcn

SCALE = 2.0


@lineage_fcn
def scale(signal):
    return signal * SCALE


@lineage_fcn
def total(signal):
    return float(signal.sum())


@lineage_fcn
def subject_sum(signal):
    return float(np.sum(signal))


@lineage_fcn
def fragile(signal):
    if signal[0] < 0:
        raise ValueError("negative start")
    return signal
"""


class SumRaw(BaseVariable):
    pass


class SumScaled(BaseVariable):
    pass


class SumTotal(BaseVariable):
    pass


class SumOther(BaseVariable):
    pass


class SumPerSubject(BaseVariable):
    pass


@pytest.fixture
def pipeline(project, tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    name = f"sumpipe_{uuid.uuid4().hex[:8]}"
    path = tmp_path / f"{name}.py"
    path.write_text(PIPELINE)
    monkeypatch.syspath_prepend(str(tmp_path))
    module = importlib.import_module(name)
    module.path = path
    return module


def _build(module, subjects=(1, 2, 3)) -> None:
    for subject in subjects:
        for session in ("pre", "post"):
            SumRaw.save(np.arange(4.0) + subject, subject=subject, session=session)
    for_each(module.scale, inputs={"signal": SumRaw}, outputs=[SumScaled], progress=False,
             subject=list(subjects), session=["pre", "post"])
    for_each(module.total, inputs={"signal": SumScaled}, outputs=[SumTotal], progress=False,
             subject=list(subjects)[:2], session=["pre", "post"])


def _agree(db, variables=None, *, fast: bool | None) -> dict:
    """The summary's counts and problems, the grid's, and the web view's cells agree; `fast`:
    whether the summary must have been set-at-a-time (None: either)."""
    summary = status_summary(db, variables)
    grid = status_grid(db, variables)
    assert summary.counts == grid.counts()
    cells = status_cells(db, variables)  # the web view's grid, judged as the summary is
    assert (cells.variables, cells.addresses, cells.grid) == (grid.variables, grid.addresses, grid.grid)
    assert fast is None or summary.fast is fast
    expected = {(c.var, key_of(c.addr), c.status) for c in grid.cells if c.status != "done"}
    assert {(c.var, key_of(c.addr), c.status) for c in summary.problems} == expected
    return summary.counts


def test_fresh_pipeline_done_and_missing(pipeline, project):
    _build(pipeline)
    counts = _agree(project, fast=True)
    assert counts["SumTotal"] == {"done": 4, "stale": 0, "unknown": 0, "failed": 0, "missing": 2}
    assert counts["SumRaw"]["done"] == 6


def test_changed_input_and_stale_upstream(pipeline, project):
    _build(pipeline)
    assert _agree(project, fast=True)["SumScaled"]["stale"] == 0  # judged once, and kept
    SumRaw.save(np.zeros(4), subject=1, session="pre")  # a re-recording
    counts = _agree(project, fast=True)
    assert counts["SumScaled"]["stale"] == 1 and counts["SumTotal"]["stale"] == 1
    problems = {c.var: c.reason for c in status_summary(project).problems if c.status == "stale"}
    assert problems["SumScaled"] == "input signal (SumRaw) changed"
    assert problems["SumTotal"] == "input signal (SumScaled) is stale"


def test_after_a_few_changes_only_the_cells_they_reach_are_judged_again(pipeline, project, monkeypatch):
    """A report after a change judges again only the cells the change can reach (the rest
    as kept), and still gives the grid's answer after every kind of change: a re-recorded
    input, a re-run, a delete, a report on an input alone in between, a code edit."""
    from scistack.index.fold import Judging

    judged_again: list[tuple[str, int]] = []
    real = Judging.judge_again

    def counting(self, var, cells):
        judged_again.append((var, len(cells)))
        return real(self, var, cells)

    monkeypatch.setattr(Judging, "judge_again", counting)
    _build(pipeline)
    _agree(project, fast=True)
    SumRaw.save(np.zeros(4), subject=2, session="post")
    counts = _agree(project, fast=True)
    assert counts["SumScaled"]["stale"] == 1 and counts["SumTotal"]["stale"] == 1
    assert ("SumScaled", 1) in judged_again and ("SumTotal", 1) in judged_again
    for_each(pipeline.scale, inputs={"signal": SumRaw}, outputs=[SumScaled], progress=False,
             subject=[2], session=["post"])
    assert _agree(project, fast=True)["SumTotal"]["stale"] == 1  # its input is newer now
    SumScaled.delete(subject=1, session="pre")
    assert _agree(project, fast=True)["SumTotal"]["stale"] == 2
    SumRaw.save(np.ones(4), subject=1, session="post")
    assert _agree(project, ["SumScaled"], fast=True)["SumScaled"]["stale"] == 1  # SumTotal left as kept
    judged_again.clear()
    counts = _agree(project, fast=True)  # SumScaled was judged again since SumTotal's judgement
    assert counts["SumTotal"]["stale"] == 3 and ("SumTotal", 1) not in judged_again
    pipeline.path.write_text(PIPELINE.replace("signal * SCALE", "signal * SCALE + 1"))
    importlib.invalidate_caches()
    importlib.reload(pipeline)
    judged_again.clear()
    counts = _agree(project, fast=True)  # a function's verdict changed: judged in full
    assert counts["SumScaled"]["stale"] == 5 and not [v for v, _ in judged_again if v == "SumScaled"]


def test_an_index_of_the_previous_layout_is_rebuilt_not_misread(pipeline, project, tmp_path):
    """A fold of layout 7 (oids as hex text, where layout 8 keeps 32 bytes) is not read as it
    is: it is folded again from the journal, and judges right from then on."""
    import sqlite3

    from scistack import configure_database
    from scistack.index.fold import FOLD_VERSION

    _build(pipeline)
    _agree(project, fast=True)
    path = project.root / ".scistack" / "fold.sqlite"
    project.close()
    con = sqlite3.connect(path)
    con.executescript("UPDATE meta SET value = '7' WHERE key = 'fold_version'; "
                      "INSERT INTO meta VALUES ('left_by_layout_7', '1');")
    con.close()
    db = configure_database(tmp_path / "gait.duckdb", ["subject", "session"])
    try:
        assert _agree(db, fast=True)["SumTotal"]["done"] == 4
        found = sqlite3.connect(path).execute("SELECT key, value FROM meta WHERE key IN "
                                              "('fold_version', 'left_by_layout_7')").fetchall()
        assert found == [("fold_version", str(FOLD_VERSION))]  # a new file, not the old one relabelled
        SumRaw.save(np.zeros(4), subject=1, session="pre")
        assert _agree(db, fast=True)["SumTotal"]["stale"] == 1
    finally:
        db.close()


def test_the_first_report_after_a_run_parses_no_call_record(pipeline, project, monkeypatch):
    """A run hands the index the facts of the call records it writes (so does a direct call
    whose result is saved): the first `status` after a run of 100k combinations had parsed
    every record to learn them (~0.2 ms each: 10-20 s)."""
    from scistack.report import history

    _build(pipeline)
    SumOther.save(pipeline.total(SumScaled.load(subject=3, session="post")), subject=3, session="post")
    parsed = []
    read = history.read_call_record
    monkeypatch.setattr(history, "read_call_record", lambda store, oid: parsed.append(oid) or read(store, oid))
    summary = status_summary(project)
    assert parsed == [] and summary.fast
    assert summary.counts == status_grid(project).counts()
    assert summary.counts["SumOther"]["done"] == 1


def test_a_report_after_a_change_reads_only_the_calls_named_since(pipeline, project, monkeypatch):
    """A variable's input variables and functions are kept, and brought up to date from the
    calls its records first named since (a read of every call of every version took 0.4 s
    after a 100k run at 1M refs, and grew with the history): a function and an input first
    used since are found, and a later edit of that function's code makes its record stale."""
    from scistack.index.fold import Judging

    _build(pipeline)
    _agree(project, fast=True)
    asked: list[tuple[str, int]] = []
    real = Judging.input_vars
    monkeypatch.setattr(Judging, "input_vars",
                        lambda self, var, since=-1: asked.append((var, since)) or real(self, var, since))
    SumOther.save(np.arange(4.0), subject=3, session="pre")  # SumTotal at (3, pre) by another function
    for_each(pipeline.fragile, inputs={"signal": SumOther}, outputs=[SumTotal], progress=False,
             subject=[3], session=["pre"])
    assert _agree(project, fast=True)["SumTotal"]["done"] == 5
    assert [since for var, since in asked if var == "SumTotal"] == [4]  # its 4 records were known
    assert "SumOther" in project.index.judging().input_vars("SumTotal")
    pipeline.path.write_text(PIPELINE.replace("return signal\n", "return signal + 0\n"))
    importlib.invalidate_caches()
    importlib.reload(pipeline)
    counts = _agree(project, fast=True)
    assert counts["SumTotal"]["stale"] == 1 and counts["SumScaled"]["stale"] == 0


def test_a_fold_of_layout_13_forgets_the_facts_it_kept(pipeline, project, tmp_path):
    """Layout 14 notes when a variable first named each call (`var_calls.n`); the calls a
    layout-13 fold holds all read 0 then, so what its reports kept is dropped and learned
    again from every call (else a call named after the last report would never be read)."""
    _build(pipeline)
    _agree(project, fast=True)
    path, mark = older_fold(project, "")
    db = configure_database(tmp_path / "gait.duckdb", ["subject", "session"])
    try:
        assert SumRaw.load(subject=1, session="pre").data[0] == 1.0  # (the fold is open: migrated)
        con = sqlite3.connect(path)
        assert con.execute("SELECT count(*) FROM var_facts").fetchone() == (0,)
        assert con.execute("SELECT value FROM meta WHERE key = 'fold_version'").fetchone() == (str(fold_module.FOLD_VERSION),)
        con.close()
        assert migrated_in_place(path, mark)
        _agree(db, fast=True)
    finally:
        db.close()


def test_a_record_computed_from_another_address_is_judged_again_when_its_input_changes(pipeline, project):
    """A result saved at another address than its input's (a call's output saved by hand):
    once such a record is judged, a change at its input's address must judge it again too,
    not only the cells at that address."""
    _build(pipeline)
    _agree(project, fast=True)
    SumScaled.save(pipeline.scale(SumRaw.load(subject=1, session="pre")), subject=5, session="pre")
    _agree(project, fast=True)
    SumRaw.save(np.arange(4.0) * 7, subject=1, session="pre")
    counts = _agree(project, fast=True)
    assert counts["SumScaled"]["stale"] == status_grid(project).counts()["SumScaled"]["stale"] >= 1


def test_a_report_counts_a_run_from_its_own_counts_not_its_item_list(pipeline, project, monkeypatch):
    """A run's journal line counts its combinations by status: whether it failed anywhere
    is read there (its item list of 100k combinations took 1.2 s to read); a failed run
    still sends the report to the grid."""
    _build(pipeline)
    read = []
    get_value = project.store.get_value
    monkeypatch.setattr(project.store, "get_value", lambda oid, *a, **k: read.append(oid) or get_value(oid, *a, **k))
    assert status_summary(project).fast
    items = {run.items for run in project.index.runs()}
    assert len(items) == 2 and not items & set(read)
    SumRaw.save(np.arange(4.0) - 1, subject=1, session="pre")
    for_each(pipeline.fragile, inputs={"signal": SumRaw}, outputs=[SumScaled], progress=False,
             subject=[1], session=["pre"])
    assert _agree(project, fast=False)["SumScaled"]["failed"] == 1


def test_a_report_on_some_variables_lists_only_their_addresses_as_missing(pipeline, project):
    """`scistack status SumRaw SumTotal`: the rows are those variables' addresses; one only
    another variable has is no cell of theirs (the summary had listed it as missing)."""
    _build(pipeline)
    SumOther.save(1.0, subject=9, session="pre")
    counts = _agree(project, ["SumRaw", "SumTotal"], fast=True)
    assert counts["SumTotal"]["missing"] == 2  # subject 3, pre and post


def test_code_change_is_stale(pipeline, project):
    _build(pipeline)
    assert _agree(project, fast=True)["SumScaled"]["stale"] == 0  # judged once, and kept
    pipeline.path.write_text(PIPELINE.replace("signal * SCALE", "signal * SCALE + 1"))
    importlib.invalidate_caches()
    importlib.reload(pipeline)
    counts = _agree(project, fast=True)
    assert counts["SumScaled"]["stale"] == 6 and counts["SumTotal"]["stale"] == 4
    # asked for one variable, its upstream is still judged
    assert _agree(project, ["SumTotal"], fast=True)["SumTotal"]["stale"] == 4


def test_deletes_keep_the_counts(pipeline, project):
    _build(pipeline)
    SumScaled.delete(subject=3, session="pre")
    SumRaw.delete(subject=3)
    counts = _agree(project, fast=True)
    assert counts["SumScaled"]["missing"] == 0  # subject 3 pre is gone from every variable
    assert counts["SumTotal"]["missing"] == 1


def test_failed_run_variants_and_levels_fall_back(pipeline, project):
    _build(pipeline)
    SumOther.save(np.ones(4), subject=1, session="pre", note="recal")
    SumOther.save(np.ones(4), subject=1, session="pre")
    _agree(project, fast=False)  # a variable with version-key variants
    SumOther.delete(subject=1)
    SumOther.save(1.0, subject=2)
    counts = _agree(project, fast=False)  # saved at another level than the rest
    # subjects 1 and 3 lack it: each one missing cell, though each is in two rows (pre, post)
    assert counts["SumOther"] == {"done": 1, "stale": 0, "unknown": 0, "failed": 0, "missing": 2}
    grid = status_grid(project)
    missing = [row[grid.variables.index("SumOther")] for row, addr in zip(grid.grid, grid.addresses)
               if addr["subject"] == 3]
    assert len(missing) == 2 and missing[0] is missing[1] and missing[0].addr == {"subject": 3}
    # every address in schema order, as the fast path shows them (a missing cell's had followed
    # a set's order, which varies by run, the others the sorted keys: session before subject)
    shown = [c for row in grid.grid for c in row if c is not None] + [
        c for c in status_summary(project).problems]
    assert {c.status for c in shown} >= {"done", "missing"}
    assert all(list(c.addr) == [k for k in ("subject", "session") if k in c.addr] for c in shown)
    assert all(list(a) == ["subject", "session"] for a in grid.addresses)


def test_a_variable_at_two_levels_is_done_where_its_coarser_value_serves(pipeline, project):
    """A variable saved per session at (1, pre) and per subject at 1: its subject-level value
    serves (1, post), as for_each finds it there; the grid had called that cell missing. The
    summary counts it set-at-a-time (it took the per-record grid: 28 s at 1M refs) until a
    value computed from it found the subject's value for a session: that value is judged per
    record, as the grid does (a finer value saved later makes it stale)."""
    _build(pipeline)
    SumOther.save(np.ones(4), subject=1, session="pre")
    SumOther.save(np.full(4, 2.0), subject=1)
    counts = _agree(project, fast=True)
    assert counts["SumOther"] == {"done": 2, "stale": 0, "unknown": 0, "failed": 0, "missing": 4}
    grid = status_grid(project)
    column = grid.variables.index("SumOther")
    shown = {(addr["subject"], addr["session"]): row[column] for row, addr in zip(grid.grid, grid.addresses)}
    assert shown[1, "pre"].addr == {"subject": 1, "session": "pre"} and shown[1, "pre"].status == "done"
    assert shown[1, "post"].addr == {"subject": 1} and shown[1, "post"].status == "done"
    assert shown[2, "post"].addr == {"subject": 2, "session": "post"} and shown[2, "post"].status == "missing"
    report = for_each(pipeline.total, inputs={"signal": SumOther}, outputs=[SumTotal], progress=False,
                      subject=[1], session=["pre", "post"])
    assert (report.ran + report.cached, report.missing, report.failed) == (2, 0, 0)  # as the grid says
    assert _agree(project, fast=False)["SumTotal"]["stale"] == 0
    SumOther.save(np.full(4, 3.0), subject=1, session="post")  # a run would take this one now
    assert _agree(project, fast=False)["SumTotal"]["stale"] == 1
    SumTotal.delete(subject=1, session="post")
    assert _agree(project, fast=True)["SumTotal"]["missing"] == 3  # (1, post) and subject 3


def test_a_level_whose_records_are_all_deleted_no_longer_counts(pipeline, project):
    """A value saved once at a coarser level had put the whole project on the per-record grid
    (28 s of `status` at 1M refs instead of 0.4), and kept it there after that value was
    deleted: the level's name stays. The live addresses decide now."""
    _build(pipeline)
    before = _agree(project, fast=True)
    SumRaw.save(np.ones(4), subject=1)  # a subject-level value beside the subject/session ones
    assert _agree(project, fast=True) == before  # every session has its own: none takes it
    SumRaw.delete(subject=1)  # (that exact address: only the coarse value)
    assert {r.addr_key for r in project.index.records("SumRaw")} == {
        key_of({"subject": s, "session": e}) for s in (1, 2, 3) for e in ("pre", "post")}
    assert _agree(project, fast=True) == before


def test_failed_run_falls_back(pipeline, project):
    SumRaw.save(np.arange(4.0) - 1, subject=1, session="pre")
    SumRaw.save(np.arange(4.0), subject=2, session="pre")
    for_each(pipeline.fragile, inputs={"signal": SumRaw}, outputs=[SumScaled], progress=False,
             subject=[1, 2], session=["pre"])
    counts = _agree(project, fast=False)
    assert counts["SumScaled"]["failed"] == 1


OPS = st.lists(st.tuples(st.sampled_from(["raw", "scale", "total", "delete", "delete_scaled", "per_subject",
                                          "subject_total", "delete_per_subject", "raw_subject",
                                          "other_session", "scaled_elsewhere"]),
                         st.integers(1, 3), st.sampled_from(["pre", "post"])), min_size=1, max_size=8)


def _several_levels(db) -> bool:
    """Whether the addresses have several sets of keys (counted by the grid on an old SQLite)."""
    return len({level for v in db.index.variables() for level in db.index.levels(v, live=True)}) > 1


@settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(ops=OPS, judge_all_at=st.sampled_from([0.5, 2.0]))
@example(ops=[("raw_subject", 1, "pre"), ("scale", 1, "pre"), ("raw", 1, "pre")], judge_all_at=2.0)
@example(ops=[("raw", 1, "pre"), ("scale", 1, "pre"), ("total", 1, "pre"), ("raw", 1, "pre"),
              ("scale", 1, "pre"), ("delete", 1, "pre")], judge_all_at=2.0)
@example(ops=[("raw", 1, "pre"), ("scale", 1, "pre"), ("raw", 1, "pre")], judge_all_at=0.5)  # all again
@example(ops=[("raw", 1, "pre"), ("raw", 2, "pre"), ("scaled_elsewhere", 2, "pre"), ("raw", 1, "pre")],
         judge_all_at=2.0)  # an input at another address changed
def test_any_history_agrees(pipeline, project, ops, judge_all_at):
    """Random saves, runs and deletes: the summary always gives the grid's counts, judged
    afresh or reusing the cells an earlier report kept, with variables at one level or
    several (set-at-a-time but where a value was computed from a coarser one). The cells a
    change reached are judged again as such, or all of them where they are most (as in
    this small project they often are: `judge_all_at` 2.0 never judges all)."""
    with patch.object(fold_module, "_JUDGE_ALL_AT", judge_all_at):
        _any_history_agrees(pipeline, project, ops)


def _any_history_agrees(pipeline, project, ops):
    for name in ("SumRaw", "SumScaled", "SumTotal", "SumOther", "SumPerSubject"):
        for record in project.index.records(name):
            project.index.delete_refs([record])
    for step, (op, subject, session) in enumerate(ops):
        if op == "raw":  # a new value at each step: a re-recording makes what used it stale
            SumRaw.save(np.arange(4.0) * subject + step, subject=subject, session=session)
        elif op == "per_subject":  # variables at two levels: a subject's value beside session ones
            SumOther.save(float(step), subject=subject)
        elif op == "other_session":  # and one variable at both
            SumOther.save(float(step), subject=subject, session=session)
        elif op == "raw_subject":  # an input at both: a run takes a session's own, else the subject's
            SumRaw.save(np.arange(4.0) - step, subject=subject)
        elif op == "subject_total":  # computed per subject from its sessions' values (aggregated)
            for_each(pipeline.subject_sum, inputs={"signal": SumScaled}, outputs=[SumPerSubject],
                     progress=False, subject=[subject])
        elif op == "scaled_elsewhere":  # computed from the value at another address, saved by hand
            try:
                SumScaled.save(pipeline.scale(SumRaw.load(subject=1, session="pre")), subject=subject,
                               session=session)
            except VariableNotFoundError:
                pass
        elif op == "delete_per_subject":
            for var in (SumOther, SumPerSubject):
                try:
                    var.delete(subject=subject)
                except VariableNotFoundError:
                    pass
        elif op in ("scale", "total"):
            fn, out, src = ((pipeline.scale, SumScaled, SumRaw) if op == "scale"
                            else (pipeline.total, SumTotal, SumScaled))
            for_each(fn, inputs={"signal": src}, outputs=[out], progress=False,
                     subject=[subject], session=[session])
        else:
            try:
                if op == "delete":
                    SumRaw.delete(subject=subject, session=session)
                else:
                    SumScaled.delete(subject=subject)
            except VariableNotFoundError:
                pass
        if project.index.variables():  # after every step: what a report kept must not outlive a change
            fast = None if any(o == "raw_subject" for o, _, _ in ops[:step + 1]) else True
            _agree(project, fast=fast)
            with patch.object(sqlite3, "sqlite_version_info", (3, 37, 0)):  # no `->`: projected in Python
                _agree(project, fast=fast and not _several_levels(project))


def test_cli_prints_counts_for_a_large_project_and_the_grid_on_request(pipeline, project):
    from click.testing import CliRunner

    from scistack.cli import GRID_ROWS, main

    subjects = range(GRID_ROWS // 2 + 1)  # two sessions each: more rows than the grid shows
    with project.batch():
        for subject in subjects:
            for session in ("pre", "post"):
                SumRaw.save(np.arange(4.0) + subject, subject=subject, session=session)
    for_each(pipeline.scale, inputs={"signal": SumRaw}, outputs=[SumScaled], progress=False,
             subject=[0, 1], session=["pre", "post"])
    runner = CliRunner()
    out = runner.invoke(main, ["--db", str(project.path), "status"])
    assert out.exit_code == 0, out.output
    lines = out.stdout.splitlines()
    assert lines[0].split() == ["VARIABLE", "done", "STALE", "?", "FAILED", "missing"]
    assert lines[2].split() == ["SumRaw", str(2 * len(subjects)), "0", "0", "0", "0"]
    assert lines[3].split() == ["SumScaled", "4", "0", "0", "0", str(2 * len(subjects) - 4)]
    assert len([line for line in lines if line.startswith("  SumScaled")]) == 20
    assert max(map(len, lines)) <= 80
    whole = runner.invoke(main, ["--db", str(project.path), "status", "--all"])
    assert whole.exit_code == 0 and whole.stdout.splitlines()[0].split() == ["subject", "session", "SumRaw",
                                                                              "SumScaled"]
    assert len(whole.stdout.splitlines()) > 2 * len(subjects)


def _listed(summary, var: str) -> list[tuple]:
    return [(c.addr.get("subject"), c.addr.get("session"), c.status) for c in summary.problems if c.var == var]


def _in_order(cells: list[tuple[int, str]], status: str) -> list[tuple]:
    return [(subject, session, status) for subject, session in cells]


def test_a_large_project_lists_its_first_cells_not_done_in_schema_order_with_whole_reasons(pipeline, project):
    """Above GRID_ROWS addresses `status` lists the first cells not done of each variable:
    they came in the order of their addresses' JSON text (session before subject, subject 10
    before 9, 100 before 2), each reason cut at 80 columns ("code, module data or packages
    of sc…"). They come as the grid orders its rows (by subject, then session, numbers by
    value), stale and missing cells together, and a long line is wrapped, not cut."""
    from click.testing import CliRunner

    from scistack.cli import GRID_ROWS, main

    subjects = list(range(1, GRID_ROWS // 2 + 11))  # two sessions each: more rows than the grid shows
    with project.batch():
        for subject in subjects:
            for session in ("pre", "post"):
                SumRaw.save(np.arange(4.0) + subject, subject=subject, session=session)
    for_each(pipeline.scale, inputs={"signal": SumRaw}, outputs=[SumScaled], progress=False,
             subject=subjects, session=["pre", "post"])
    for_each(pipeline.total, inputs={"signal": SumScaled}, outputs=[SumTotal], progress=False,
             subject=[1, 2], session=["pre", "post"])
    pipeline.path.write_text(PIPELINE.replace("signal * SCALE", "signal * SCALE + 1"))
    importlib.invalidate_caches()
    importlib.reload(pipeline)
    first = [(subject, session) for subject in range(1, 11) for session in ("post", "pre")]
    summary = status_summary(project)
    assert summary.fast
    assert _listed(summary, "SumScaled") == _in_order(first, "stale")
    # SumTotal: stale at subjects 1 and 2, missing from subject 3 on: the first 20 of both
    assert _listed(summary, "SumTotal") == _in_order(first[:4], "stale") + _in_order(first[4:], "missing")
    out = CliRunner().invoke(main, ["--db", str(project.path), "status"])
    assert out.exit_code == 0, out.output
    lines = out.stdout.splitlines()
    assert max(map(len, lines)) <= 80
    listed = lines[lines.index(next(line for line in lines if line.startswith("Not done"))) + 1:]
    scaled = [i for i, line in enumerate(listed) if line.startswith("  SumScaled ")]
    assert [listed[i].split()[1:3] for i in scaled] == [[f"subject={a}", f"session={b}"] for a, b in first]
    for i in scaled:  # the reason whole, its end on the next line
        assert listed[i + 1].startswith("      ")
        assert " ".join((listed[i] + " " + listed[i + 1]).split()).endswith(
            "STALE code, module data or packages of scale changed")


def test_cells_not_done_across_levels_and_in_the_grid_come_in_schema_order(pipeline, project):
    """The first cells not done are listed in the grid's order on the other paths as well: a
    variable saved per subject beside others per session (counted on address groups), and a
    project the per-record grid answers (version-key variants)."""
    subjects = list(range(1, 13))
    for subject in subjects:
        for session in ("pre", "post"):
            SumRaw.save(np.arange(4.0) + subject, subject=subject, session=session)
    for_each(pipeline.scale, inputs={"signal": SumRaw}, outputs=[SumScaled], progress=False,
             subject=[1, 2], session=["pre", "post"])
    SumPerSubject.save(1.0, subject=1)
    SumPerSubject.save(1.0, subject=2)
    lacking = [(subject, session) for subject in subjects[2:] for session in ("post", "pre")]
    summary = status_summary(project, limit=10)
    assert summary.fast
    assert _listed(summary, "SumScaled") == _in_order(lacking[:10], "missing")
    assert _listed(summary, "SumPerSubject") == [(subject, None, "missing") for subject in subjects[2:]]
    SumOther.save(1.0, subject=1, session="pre", note="recal")  # variants: the grid answers
    summary = status_summary(project, limit=10)
    assert not summary.fast
    assert _listed(summary, "SumScaled") == _in_order(lacking[:10], "missing")
    assert _listed(summary, "SumPerSubject") == [(subject, None, "missing") for subject in subjects[2:]]


def test_a_coarse_cell_not_done_comes_before_the_finer_ones_it_covers(project, tmp_path):
    """A variable saved at two levels lacks a subject-level cell (subject 2, for the row
    subject 2, trial 2) and a session-level one (subject 2, session 1): `subject=2` was
    listed after `subject=2, session=1`, an address without a key coming after those with it.
    Coarse before fine now, on both paths, and the grid's rows so too."""
    trials = configure_database(tmp_path / "trials" / "t.duckdb", ["subject", "session", "trial"])
    try:
        for addr in ({"subject": 1}, {"subject": 2, "session": 1, "trial": 1}, {"subject": 2, "trial": 2},
                     {"subject": 3, "session": 1}):
            SumRaw.save(1.0, **addr)
        SumPerSubject.save(1.0, subject=1)
        SumPerSubject.save(1.0, subject=3, session=1)
        expected = [{"subject": 2}, {"subject": 2, "session": 1}]
        summary = status_summary(trials)
        assert summary.fast
        assert [c.addr for c in summary.problems if c.var == "SumPerSubject"] == expected
        grid = status_grid(trials)
        assert [a for a in grid.addresses if a["subject"] == 2] == [{"subject": 2, "trial": 2},
                                                                     {"subject": 2, "session": 1, "trial": 1}]
        SumOther.save(1.0, subject=1, note="recal")  # variants: the grid answers
        summary = status_summary(trials)
        assert not summary.fast
        assert [c.addr for c in summary.problems if c.var == "SumPerSubject"] == expected
    finally:
        trials.close()


def test_listing_is_counted_again_only_after_a_change(project):
    """`ls` caches each variable's counts and bytes at its change count: a save or a delete
    shows at once, an unchanged variable is not counted again."""
    from scistack.report.history import list_variables

    for subject in (1, 2):
        SumRaw.save(np.arange(100.0) * subject, subject=subject, session="pre")
    first = {s.name: s for s in list_variables(project)}["SumRaw"]
    assert list_variables(project) == [first]  # from the cache
    SumRaw.save(np.arange(100.0) * 3, subject=3, session="pre")
    second = {s.name: s for s in list_variables(project)}["SumRaw"]
    assert second.values == 3 and second.size_bytes > first.size_bytes
    SumRaw.delete(subject=3)
    assert {s.name: s for s in list_variables(project)}["SumRaw"].values == 2


def test_a_file_a_call_read_is_checked_per_record(project, tmp_path, monkeypatch):
    """A call that read a file is judged record by record (its file is checked each time):
    the summary still agrees with the grid after the file changes."""
    name = f"filepipe_{uuid.uuid4().hex[:8]}"
    calib = tmp_path / "calib.txt"
    calib.write_text("2.0")
    (tmp_path / f"{name}.py").write_text(
        "from scistack import lineage_fcn\n\n\n@lineage_fcn\ndef calibrated(signal, path):\n"
        "    with open(path) as handle:\n        return signal * float(handle.read())\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    module = importlib.import_module(name)
    for subject in (1, 2):
        SumRaw.save(np.arange(3.0), subject=subject, session="pre")
    for_each(module.calibrated, inputs={"signal": SumRaw, "path": str(calib)}, outputs=[SumScaled],
             progress=False, subject=[1, 2], session=["pre"])
    assert _agree(project, fast=True)["SumScaled"]["done"] == 2
    calib.write_text("3.0")
    assert _agree(project, fast=True)["SumScaled"]["stale"] == 2


def _what_a_rerun_would_say(db) -> dict[tuple[str, str], str]:
    """An oracle for `status`, from the journal's records and the call records alone: a
    computed value is done when every input its call record names is still the newest
    value at that address and is itself done; else stale. A raw value is done."""
    newest: dict[str, dict[str, Any]] = {}
    for var in db.index.variables():
        for r in db.index.records(var):
            kept = newest.setdefault(var, {}).get(key_of(r.addr))
            if kept is None or r.version > kept.version:
                newest[var][key_of(r.addr)] = r
    said: dict[tuple[str, str], str] = {}

    def judge(var: str, addr: str) -> str:
        if (var, addr) not in said:
            record = newest[var][addr]
            said[(var, addr)] = "done"
            for item in (db.call_record(record.call)["inputs"].values() if record.call else ()):
                if "var" not in item:
                    continue
                now = newest.get(item["var"], {}).get(key_of(item["addr"]))
                if now is None or now.oid != item["oid"] or judge(item["var"], key_of(item["addr"])) != "done":
                    said[(var, addr)] = "stale"
        return said[(var, addr)]

    return {(var, addr): judge(var, addr) for var, records in newest.items() for addr in records}


RERUN_OPS = st.lists(st.tuples(st.sampled_from(["raw", "same_raw", "scale", "total", "scale_all", "total_all",
                                                "delete", "delete_newest", "delete_scaled", "by_hand",
                                                "scaled_elsewhere", "gc"]),
                               st.integers(1, 3), st.sampled_from(["pre", "post"])), min_size=1, max_size=12)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(ops=RERUN_OPS)
@example(ops=[("raw", 1, "pre"), ("scale", 1, "pre"), ("raw", 1, "pre"), ("total", 1, "pre")])  # stale upstream
def test_status_says_what_a_rerun_would_find(pipeline, project, ops):
    """After any history of saves, runs, calls by hand, deletes and gc, every cell of the
    grid (and the web view's, and the summary's counts) is what `_what_a_rerun_would_say`
    finds from the records themselves, not only what the other reports say."""
    from scistack.gc import collect_garbage

    for name in ("SumRaw", "SumScaled", "SumTotal"):
        for record in project.index.records(name):
            project.index.delete_refs([record])
    for step, (op, subject, session) in enumerate(ops):
        at = {"subject": subject, "session": session}
        try:
            if op in ("raw", "same_raw"):
                SumRaw.save(np.arange(4.0) * subject + (step if op == "raw" else 0), **at)
            elif op in ("scale", "total", "scale_all", "total_all"):
                fn, out, src = ((pipeline.scale, SumScaled, SumRaw) if op.startswith("scale")
                                else (pipeline.total, SumTotal, SumScaled))
                where = {"subject": [], "session": []} if op.endswith("_all") else {"subject": [subject],
                                                                                   "session": [session]}
                for_each(fn, inputs={"signal": src}, outputs=[out], progress=False, **where)
            elif op == "by_hand":
                SumTotal.save(pipeline.total(SumScaled.load(**at)), **at)
            elif op == "scaled_elsewhere":
                SumScaled.save(pipeline.scale(SumRaw.load(subject=1, session="pre")), **at)
            elif op == "delete_newest":
                versions = [r.version for r in project.index.records("SumRaw") if r.addr == at]
                if versions:
                    SumRaw.delete(**at, version=max(versions))
            elif op == "gc":
                collect_garbage(project, grace_seconds=0)
            else:
                (SumRaw if op == "delete" else SumScaled).delete(**at)
        except VariableNotFoundError:
            pass
        if not project.index.variables():
            continue
        expected = _what_a_rerun_would_say(project)
        for grid in (status_grid(project), status_cells(project)):
            found = {(c.var, key_of(c.addr)): c.status for c in grid.cells if c.version is not None}
            assert found == expected, (ops[:step + 1], set(found.items()) ^ set(expected.items()))
        counts = status_summary(project).counts
        for var in {var for var, _ in expected}:
            assert {s: n for s, n in counts[var].items() if n and s != "missing"} == dict(
                Counter(status for (v, _), status in expected.items() if v == var))


def test_a_module_edited_after_its_import_is_judged_as_its_file_is_now(pipeline, project):
    """A long-running process (the web view's server, a notebook) imported the module once:
    an edit to its file makes its values stale without a reload, as a fresh process says, and
    the process's own module is left as it was."""
    from scistack import why

    _build(pipeline, subjects=(1,))
    assert _agree(project, fast=True)["SumScaled"]["stale"] == 0
    pipeline.path.write_text(PIPELINE.replace("signal * SCALE", "signal * SCALE + 1"))
    assert _agree(project, fast=None)["SumScaled"]["stale"] == 2
    assert why(SumScaled, subject=1, session="pre").status == "stale"
    assert pipeline.scale(np.ones(2)).data.tolist() == [2.0, 2.0]  # (the code it imported)


@pytest.mark.parametrize("racy", [True, False])
def test_a_module_edited_again_with_its_mtime_set_back_is_judged_as_its_file_is_now(pipeline, project,
                                                                                   monkeypatch, racy):
    """The copy of an edited module `why` runs was remembered by its file's (mtime, size): a
    second same-size edit in the same timestamp tick, or a `cp -p` of another version (its
    mtime set back), kept judging the first edit's copy ("stale" for a file whose code is
    again the one that ran). A racy stat is keyed by the file's content; an older one by its
    whole stat, whose ctime (no copy can set it) changed."""
    from scistack import why
    from scistack.codeid import files
    from tests.helpers import same_size_rewrite

    monkeypatch.setattr(files, "_RACY_NS", 3600 * 10**9 if racy else 0)
    _build(pipeline, subjects=(1,))
    pipeline.path.write_text(PIPELINE.replace("signal * SCALE", "signal * SCALE + 1"))
    assert why(SumScaled, subject=1, session="pre").status == "stale"
    same_size_rewrite(pipeline.path, PIPELINE.replace("signal * SCALE", "signal * SCALE #+1"))
    assert why(SumScaled, subject=1, session="pre").status == "current"
    assert _agree(project, fast=None)["SumScaled"]["stale"] == 0


def test_a_module_replaced_by_cp_p_with_a_time_before_the_start_is_judged_as_its_file_is_now(
        project, tmp_path, monkeypatch):
    """A module file whose mtime is older than the process was taken for the code it had
    imported: a `cp -p` (or `touch -r`) of another version since then sets such an mtime
    back, and `why` judged the in-memory code, "current". Its ctime, which no copy can set,
    is later than the start: the file is read again."""
    import os

    from scistack import why

    name = f"sumold_{uuid.uuid4().hex[:8]}"
    path = tmp_path / f"{name}.py"
    path.write_text(PIPELINE)
    os.utime(path, (0, 0))  # (as written long before this process started)
    monkeypatch.syspath_prepend(str(tmp_path))
    module = importlib.import_module(name)
    _build(module, subjects=(1,))
    assert why(SumScaled, subject=1, session="pre").status == "current"
    path.write_text(PIPELINE.replace("signal * SCALE", "signal / SCALE"))  # (the same size)
    os.utime(path, (0, 0))
    assert why(SumScaled, subject=1, session="pre").status == "stale"
    assert module.scale(np.ones(2)).data.tolist() == [2.0, 2.0]  # (the code it imported)


def test_a_module_written_then_imported_is_not_read_again_while_its_file_is_the_one_imported(
        project, tmp_path, monkeypatch):
    """A module file written after the process started counted as edited whatever its import
    read, so `why` ran a copy of it again from its file (its top level too) though the code in
    memory was the file's. Where the import was seen (its stat, or its content where that was
    racy), the file is judged by it: as imported, none; rewritten since with its size and
    mtime kept, a copy, judged as the file is now."""
    import os

    from scistack import why
    from scistack.codeid import files
    from scistack.report import why as why_module
    from tests.helpers import same_size_rewrite

    files.install()  # (as making a lineage function does: imports are seen from here)
    name = f"sumseen_{uuid.uuid4().hex[:8]}"
    path = tmp_path / f"{name}.py"
    path.write_text(PIPELINE)
    monkeypatch.syspath_prepend(str(tmp_path))
    module = importlib.import_module(name)
    _build(module, subjects=(1,))
    assert why(SumScaled, subject=1, session="pre").status == "current"
    assert name not in why_module._READ_AGAIN  # (no copy run: the file is the one imported)
    old = os.stat(path)
    same_size_rewrite(path, PIPELINE.replace("signal * SCALE", "signal / SCALE"))
    os.utime(path, ns=(old.st_atime_ns, old.st_mtime_ns))  # (cp -p: only the ctime tells)
    assert why(SumScaled, subject=1, session="pre").status == "stale"
    assert name in why_module._READ_AGAIN


LOCAL_STEP = """
from scistack import for_each

SCALE = 2.0


def run(inputs, outputs):
    def double(signal):
        return signal * SCALE

    return for_each(double, inputs=inputs, outputs=outputs, progress=False, subject=[1], session=["pre"])
"""


@pytest.mark.parametrize("maybe", ["import unseen, dated in the racy window", "saved again unchanged"])
def test_a_function_made_inside_another_of_a_module_maybe_edited_is_judged_by_its_file(
        project, tmp_path, monkeypatch, maybe):
    """A module whose file may have been written after its import is read again into a copy,
    which holds no function made inside another (`run.<locals>.double`): the registry of the
    process's own was skipped, and its values were "unknown" (test_variables' `why` failed
    after a `touch` of the file just before pytest started). Its code is the file's: judged
    with the constants the file holds now; a real edit of its code is still not taken for it."""
    import os

    from scistack import why
    from scistack.codeid import files
    from scistack.report import why as why_module

    racy = files._RACY_NS
    if maybe == "saved again unchanged":
        monkeypatch.setattr(files, "_RACY_NS", 0)  # (the import's stat vouches for the content)
    files.install()  # (as making a lineage function does: imports are seen from here)
    name = f"sumlocal_{uuid.uuid4().hex[:8]}"
    path = tmp_path / f"{name}.py"
    path.write_text(LOCAL_STEP)
    monkeypatch.syspath_prepend(str(tmp_path))
    module = importlib.import_module(name)
    SumRaw.save(np.arange(4.0), subject=1, session="pre")
    assert not module.run({"signal": SumRaw}, [SumScaled]).failures
    assert why(SumScaled, subject=1, session="pre").status == "current"
    assert name not in why_module._READ_AGAIN
    if maybe == "saved again unchanged":
        path.write_text(LOCAL_STEP)
        later = os.stat(path).st_mtime_ns + 10**9  # (a new stat, whatever the clock's tick)
        os.utime(path, ns=(later, later))
        monkeypatch.setattr(files, "_RACY_NS", racy)
    else:  # as pytest imports a test file before any lineage function is made
        monkeypatch.delitem(files._LOADED_AT, os.path.abspath(path))
        started = int(why_module._STARTED * 1e9) + racy // 2  # (just before the process started)
        os.utime(path, ns=(started, started))
    assert why(SumScaled, subject=1, session="pre").status == "current"
    assert name in why_module._READ_AGAIN  # (read again: it may have been edited)
    assert _agree(project, fast=None)["SumScaled"] == {"done": 1, "stale": 0, "unknown": 0, "failed": 0,
                                                        "missing": 0}
    path.write_text(LOCAL_STEP.replace("SCALE = 2.0", "# the gain\nSCALE = 2.0"))  # a line above it
    assert why(SumScaled, subject=1, session="pre").status == "current"
    path.write_text(LOCAL_STEP.replace("SCALE = 2.0", "SCALE = 3.25"))  # a constant it reads
    edited = why(SumScaled, subject=1, session="pre")
    assert edited.status == "stale", edited
    assert [r.kind for r in edited.reasons] == ["constant"], edited
    assert _agree(project, fast=None)["SumScaled"]["stale"] == 1
    path.write_text(LOCAL_STEP.replace("signal * SCALE", "signal * SCALE + 1"))  # its own code
    edited = why(SumScaled, subject=1, session="pre")  # (not found; but the file's code is not it)
    assert edited.status == "stale", edited
    assert [r.kind for r in edited.reasons] == ["code"], edited
    assert "+    return signal * SCALE + 1" in edited.reasons[0].diff
    assert _agree(project, fast=None)["SumScaled"]["stale"] == 1
    assert module.SCALE == 2.0  # (the process's own module is left as it was)


CARRIED_STEPS = {
    "a constant of the function it was made in": ("""
from scistack import for_each


def run(inputs, outputs):
    GAIN = 2.0

    def double(signal):
        return signal * GAIN

    return for_each(double, inputs=inputs, outputs=outputs, progress=False, subject=[1], session=["pre"])
""", "step", "GAIN = 2.0", "GAIN = 7.0"),
    "a helper made beside it": ("""
from scistack import for_each

SCALE = 2.0


def run(inputs, outputs):
    def helper(signal):
        return signal * SCALE

    def double(signal):
        return helper(signal)

    return for_each(double, inputs=inputs, outputs=outputs, progress=False, subject=[1], session=["pre"])
""", "step", "SCALE = 2.0", "SCALE = 3.25"),
    "a function imported in the function it was made in": ("""
from scistack import for_each


def run(inputs, outputs):
    from {helpers} import gain

    def double(signal):
        return gain(signal)

    return for_each(double, inputs=inputs, outputs=outputs, progress=False, subject=[1], session=["pre"])
""", "helpers", "* 2.0", "* 9.0"),
}
GAIN_HELPER = """
def gain(signal):
    return signal * 2.0
"""


def _write_again(path: Path, text: str) -> None:
    """Write `text` to `path` with a new stat, whatever the clock's tick: read again by `why`."""
    import os

    path.write_text(text)
    later = os.stat(path).st_mtime_ns + 10**9
    os.utime(path, ns=(later, later))


def _import_unseen(monkeypatch, path: Path) -> None:
    """As if the import of module file `path` was not seen (before scistack's hook): written
    after the process started, it may have been edited since, and `why` reads it again."""
    import os

    from scistack.codeid import files

    monkeypatch.delitem(files._LOADED_AT, os.path.abspath(path))


def _run_step(project, tmp_path, monkeypatch, step: str) -> tuple[str, Path, Path]:
    """Module `step` (its `{helpers}` a module of `GAIN_HELPER`) imported and run once: its
    name, file and helper module's file."""
    from scistack import why
    from scistack.codeid import files

    files.install()  # (as making a lineage function does: imports are seen from here)
    tag = uuid.uuid4().hex[:8]
    name, helpers = f"sumcarry_{tag}", f"sumgain_{tag}"
    (tmp_path / f"{helpers}.py").write_text(GAIN_HELPER)
    (tmp_path / f"{name}.py").write_text(step.format(helpers=helpers))
    monkeypatch.syspath_prepend(str(tmp_path))
    module = importlib.import_module(name)
    SumRaw.save(np.arange(4.0), subject=1, session="pre")
    assert not module.run({"signal": SumRaw}, [SumScaled]).failures
    assert why(SumScaled, subject=1, session="pre").status == "current"
    return name, tmp_path / f"{name}.py", tmp_path / f"{helpers}.py"


@pytest.mark.parametrize("carried", list(CARRIED_STEPS))
def test_an_edit_reaching_a_function_made_inside_another_through_what_it_carries_is_not_current(
        project, tmp_path, monkeypatch, carried):
    """A function made inside another (`run.<locals>.double`) of a module read again is made
    from its code as the file holds it now, but with the cells the process's own `run` made:
    a constant of `run`, a helper made beside it (its globals the process's), a function
    `run` imported. An edit reaching it through them had been judged current (and done by
    status); it is "unknown" (not found), as before such functions were made again."""
    from scistack import why
    from scistack.report import why as why_module

    step, edited, old, new = CARRIED_STEPS[carried]
    name, path, helpers = _run_step(project, tmp_path, monkeypatch, step)
    edited_path = path if edited == "step" else helpers
    _write_again(edited_path, edited_path.read_text().replace(old, new))
    report = why(SumScaled, subject=1, session="pre")
    assert name in why_module._READ_AGAIN  # (read again: it was edited)
    assert report.status == "unknown", report
    assert _agree(project, fast=None)["SumScaled"] == {"done": 0, "stale": 0, "unknown": 1, "failed": 0,
                                                        "missing": 0}


DATA_CELL_STEP = """
from scistack import for_each

SCALE = 2.0


def run(inputs, outputs):
    gain = SCALE * 2

    def double(signal, k=3.0):
        return signal * gain * k

    return for_each(double, inputs=inputs, outputs=outputs, progress=False, subject=[1], session=["pre"])
"""


def test_a_function_made_inside_another_carrying_data_is_unknown_in_a_module_maybe_edited(
        project, tmp_path, monkeypatch):
    """Numbers in a cell and a default of a function made inside another were made by the
    function it was made in, from what it read and what its caller passed when it ran: whether
    the file makes them again is not known, so such a function is not made again from a module
    maybe edited ("unknown", not current), whatever the edit."""
    from scistack import why
    from scistack.report import why as why_module

    name, path, _ = _run_step(project, tmp_path, monkeypatch, DATA_CELL_STEP)
    _import_unseen(monkeypatch, path)
    assert why(SumScaled, subject=1, session="pre").status == "unknown"
    assert name in why_module._READ_AGAIN  # (read again: it may have been edited)
    _write_again(path, DATA_CELL_STEP.replace("SCALE = 2.0", "# the scale\nSCALE = 2.0"))  # a line above
    assert why(SumScaled, subject=1, session="pre").status == "unknown"
    for old, new in [("SCALE = 2.0", "SCALE = 3.0"),  # a global `run` reads to make the cell
                     ("gain = SCALE * 2", "gain = SCALE * 5")]:  # the cell's value in `run`
        _write_again(path, DATA_CELL_STEP.replace(old, new))
        assert why(SumScaled, subject=1, session="pre").status == "unknown", new
    _write_again(path, DATA_CELL_STEP.replace("def double(signal, k=3.0):", 'def double(signal, k=3.0):\n'
                                              '        """Its docstring, which no identity reads."""'))
    assert why(SumScaled, subject=1, session="pre").status == "unknown"  # (its code as recorded)
    # its own code edited (its body, or the default its text gives): whatever it carries, a
    # run computes anew, its normalised source being part of the identity ("unknown" had hidden it)
    for old, new in [("signal * gain * k", "signal * gain * k + 1"), ("k=3.0", "k=4.0")]:
        _write_again(path, DATA_CELL_STEP.replace(old, new))
        edited = why(SumScaled, subject=1, session="pre")
        assert edited.status == "stale" and [r.kind for r in edited.reasons] == ["code"], edited
        assert any(line[:1] == "+" and line[:3] != "+++" and new in line for line in edited.reasons[0].diff.splitlines()), edited
        assert _agree(project, fast=None)["SumScaled"] == {"done": 0, "stale": 1, "unknown": 0, "failed": 0,
                                                            "missing": 0}


def test_a_function_made_inside_another_run_by_another_process_is_stale_when_its_code_is_edited(
        project, tmp_path, python_env, monkeypatch):
    """`run.<locals>.double` run by another process (a script): here no name holds it and no
    lineage function of it was made, so it is never found ("unknown"). Its own code edited in
    the file is what a run would call: stale, with its diff (it had stayed "unknown")."""
    import subprocess
    import sys

    from scistack import why

    name = f"sumfresh_{uuid.uuid4().hex[:8]}"
    path = tmp_path / f"{name}.py"
    path.write_text(LOCAL_STEP)
    script = (f"from scistack import BaseVariable, configure_database\nimport numpy as np\nimport {name}\n"
              "configure_database('gait.duckdb', ['subject', 'session'])\n"
              "class SumRaw(BaseVariable): pass\nclass SumScaled(BaseVariable): pass\n"
              "SumRaw.save(np.arange(4.0), subject=1, session='pre')\n"
              f"assert not {name}.run({{'signal': SumRaw}}, [SumScaled]).failures\n")
    subprocess.run([sys.executable, "-c", script], cwd=tmp_path, env=python_env, check=True, timeout=120)
    monkeypatch.syspath_prepend(str(tmp_path))
    assert why(SumScaled, subject=1, session="pre").status == "unknown"  # (its code as recorded)
    _write_again(path, LOCAL_STEP.replace("signal * SCALE", "signal * SCALE * 2"))
    edited = why(SumScaled, subject=1, session="pre")
    assert edited.status == "stale" and [r.kind for r in edited.reasons] == ["code"], edited
    assert "+    return signal * SCALE * 2" in edited.reasons[0].diff
    assert _agree(project, fast=None)["SumScaled"] == {"done": 0, "stale": 1, "unknown": 0, "failed": 0,
                                                        "missing": 0}


KEYWORD_ONLY_STEP = """
from scistack import for_each

SCALE = 2.0


def run(inputs, outputs):
    def double(signal, *, k=2.0):
        return signal * k * SCALE

    return for_each(double, inputs=inputs, outputs=outputs, progress=False, subject=[1], session=["pre"])
"""


def test_a_function_made_inside_another_with_keyword_only_defaults_is_made_without_a_set(
        project, tmp_path, monkeypatch):
    """Keyword-only defaults can be given to a function as it is made from Python 3.13 only;
    set on it after (3.11, 3.12), the audit hook saw a set of a function's defaults, and every
    later cache hit of the process read codes and defaults again (`_codesets`). Before 3.13
    such a function is not made again: "unknown", as before."""
    import sys
    from types import FunctionType

    from scistack import why
    from scistack.codeid import files

    name, path, _ = _run_step(project, tmp_path, monkeypatch, KEYWORD_ONLY_STEP)
    _import_unseen(monkeypatch, path)
    noted, sets = files.note_code_set, []

    def note(args: tuple) -> None:  # (the audit hook's, for a set of an attribute)
        if isinstance(args[0], FunctionType) and args[1] in ("__code__", "__defaults__", "__kwdefaults__"):
            sets.append(args[1])
        noted(args)

    monkeypatch.setattr(files, "note_code_set", note)
    assert why(SumScaled, subject=1, session="pre").status == ("current" if sys.version_info >= (3, 13)
                                                               else "unknown")
    assert sets == []


LAMBDA_STEPS = """
p1 = lambda signal: signal * 2
p2 = lambda signal: signal * 3
"""


def test_a_lambda_of_a_module_maybe_edited_is_its_own_code_not_a_twin_elsewhere(project, tmp_path, monkeypatch):
    """Two lambdas share the name `<lambda>`, so a module's copy cannot say which one made a
    value: the process's own is judged where the file holds its code at its place; edited, a
    lambda of its old code elsewhere in the file is not taken for it."""
    import os

    from scistack import why
    from scistack.codeid import files
    from scistack.report import why as why_module

    files.install()  # (as making a lineage function does: imports are seen from here)
    name = f"sumlambda_{uuid.uuid4().hex[:8]}"
    path = tmp_path / f"{name}.py"
    path.write_text(LAMBDA_STEPS)
    monkeypatch.syspath_prepend(str(tmp_path))
    module = importlib.import_module(name)
    SumRaw.save(np.arange(4.0), subject=1, session="pre")
    for_each(module.p1, inputs={"signal": SumRaw}, outputs=[SumScaled], progress=False, subject=[1],
             session=["pre"])
    monkeypatch.delitem(files._LOADED_AT, os.path.abspath(path))  # (its import unseen: maybe edited)
    assert why(SumScaled, subject=1, session="pre").status == "current"
    assert name in why_module._READ_AGAIN  # (read again: it may have been edited)
    path.write_text(LAMBDA_STEPS.replace("* 2", "* 4").replace("* 3", "* 2"))  # p2: p1's old code
    assert why(SumScaled, subject=1, session="pre").status == "unknown"  # (as before)


def test_a_module_edited_to_a_syntax_error_after_its_import_is_not_importable_not_a_crash(pipeline, project):
    """The module a long-running process imported no longer compiles (a syntax error
    mid-edit): its copy could not be made, and `why` and `status` ended with a TypeError
    (`vars(None)`). Its values are "unknown", the reason naming the SyntaxError."""
    from scistack import why

    _build(pipeline, subjects=(1,))
    pipeline.path.write_text(PIPELINE.replace("signal * SCALE", "signal *"))
    report = why(SumScaled, subject=1, session="pre")
    assert report.status == "unknown", report
    assert "SyntaxError" in report.reasons[0].detail, report
    assert _agree(project, fast=None)["SumScaled"]["unknown"] == 2
    assert pipeline.scale(np.ones(2)).data.tolist() == [2.0, 2.0]  # (the code it imported)


def test_the_start_a_module_file_is_compared_with_is_early_by_the_racy_window(tmp_path):
    """A module file written after the start may be dated up to the stat rule's racy window
    before it (a coarse clock, FAT's 2 s, a server's clock behind): `why` compares its times
    with the start less that window, to a clock tick. The start was read from /proc/stat's
    whole-second boot time less 1 s, early by 1 to 2 s by chance (a module written 0.5 s
    before the start was edited; one dated 1.5 s early by the clock may not have been)."""
    import os
    import subprocess
    import sys
    import time

    from scistack.codeid import files

    if not os.path.exists("/proc/self/stat"):
        pytest.skip("the process's start is read from /proc")
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(Path(__file__).resolve().parents[1]), env.get("PYTHONPATH", "")])
    before = time.time()
    child = subprocess.Popen([sys.executable, "-c", "from scistack.report import why; print(repr(why._STARTED))"],
                             stdout=subprocess.PIPE, text=True, env=env, cwd=tmp_path)
    after = time.time()  # (the child exists: its start, the fork, is between the two)
    out, _ = child.communicate(timeout=600)
    started = float(out)
    window = files._RACY_NS / 1e9
    assert before - window - 0.1 <= started <= after - window


class SumNeverIn(BaseVariable):
    pass


class SumNever(BaseVariable):
    pass


def test_a_step_that_produced_nothing_says_so_not_current(pipeline, project):
    """A step whose every combination missed an input has no value: the graph had called it
    current (all counts zero), `status` printed `SumNever: ` and `status SumNever` "nothing
    saved yet". Each now says what its last run did."""
    from scistack.report.pipeline import pipeline_graph

    SumRaw.save(np.arange(4.0), subject=1, session="pre")
    for_each(pipeline.scale, inputs={"signal": SumNeverIn}, outputs=[SumNever], progress=False,
             subject=[1, 2], session=["pre"])
    said = "never produced: the last run of scale had 2 combinations, 2 missing an input"
    assert status_grid(project).empty == status_cells(project).empty == {"SumNever": said}
    assert status_grid(project, ["SumNever"]).empty == {"SumNever": said}
    graph = pipeline_graph(project)
    for node in ("var:SumNever", "fn:scale"):
        assert (graph.node(node).state, graph.node(node).note) == ("missing", said)
    assert graph.node("var:SumRaw").state == "current"
    from scistack.cli.render import render_status

    assert render_status(status_grid(project, ["SumNever"]), project.schema_keys) == f"SumNever: {said}"
    assert "\nSumNever: never produced: the last run of scale" in render_status(status_grid(project), project.schema_keys)


class SumAllGone(BaseVariable):
    pass


class SumDirect(BaseVariable):
    pass


def test_a_variable_whose_every_value_was_deleted_says_so_not_never_produced(pipeline, project):
    """Its last run had computed every value: "never produced: ... 2 ran" read as if the step
    had made nothing. It now says the values were deleted and how to bring them back."""
    from scistack.report.pipeline import pipeline_graph

    for s in (1, 2):
        SumRaw.save(np.arange(4.0), subject=s, session="pre")
    for_each(pipeline.scale, inputs={"signal": SumRaw}, outputs=[SumAllGone], progress=False,
             subject=[1, 2], session=["pre"])
    for s in (1, 2):
        SumAllGone.delete(subject=s, session="pre")
    said = "no values (every one deleted; `scistack undelete SumAllGone` brings them back, until gc)"
    assert status_grid(project, ["SumAllGone"]).empty == {"SumAllGone": said}
    assert pipeline_graph(project).node("var:SumAllGone").note == said


def test_a_run_that_made_nothing_is_not_drawn_as_the_maker_of_values_saved_directly(pipeline, project):
    """A run whose every combination missed an input, into a variable saved directly: the
    graph had drawn the function as its maker (an edge, and the values' counts as its own)."""
    from scistack.report.pipeline import pipeline_graph

    for s in (1, 2):
        SumDirect.save(np.arange(4.0), subject=s, session="pre")
    report = for_each(pipeline.scale, inputs={"signal": SumNeverIn}, outputs=[SumDirect], progress=False,
                      subject=[1, 2], session=["pre"])
    assert report.counts["missing"] == 2
    graph = pipeline_graph(project)
    assert not [e for e in graph.edges if e[1] == "var:SumDirect"]
    assert graph.node("var:SumDirect").state == "current"
    assert not [n for n in graph.nodes if n.kind == "function"]


SELF_EDITING_SCRIPT = """
from scistack import BaseVariable, configure_database, for_each, lineage_fcn
from scistack.report.status import status_grid
db = configure_database("p.duckdb", ["subject"])
class A(BaseVariable): pass
class B(BaseVariable): pass
@lineage_fcn
def double(a):
    return a * 2
print("ran")
A.save(1, subject=1)
for_each(double, inputs={"a": A}, outputs=[B], subject=[1], progress=False)
open(__file__, "w").write(open(__file__).read().replace("a * 2", "a * 3"))
print(status_grid(db, ["B"]).grid[0][0].status)
"""


def test_a_script_edited_while_it_runs_is_never_run_again_to_judge_it(tmp_path):
    """Only modules are read again after an edit: a running script's __main__ (`python -m
    run`) is not (that would run the whole pipeline a second time)."""
    import os
    import subprocess
    import sys

    (tmp_path / "run.py").write_text(SELF_EDITING_SCRIPT)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    done = subprocess.run([sys.executable, "-m", "run"], cwd=tmp_path, env=env, capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["ran", "done"]  # (judged by the code it runs, as before)


HELPERS = """
FACTOR = 2.0


def h(signal):
    return signal * FACTOR
"""


@pytest.mark.parametrize("imports", ["from {helpers} import h", "import {helpers} as helpers_module",
                                     "in the body"])
def test_a_helper_module_edited_after_its_import_is_judged_as_its_file_is_now(project, tmp_path, monkeypatch,
                                                                                imports):
    """Only the helper's file is edited (the pipeline's is as the process first read it): the
    pipeline's values are stale in a long-running process too, as a fresh process says, and
    the process's own modules are left as they were."""
    import os

    from scistack import why

    helpers = f"sumhelp_{uuid.uuid4().hex[:8]}"
    body = "return " + ("h(signal)" if imports.startswith("from") else "helpers_module.h(signal)")
    if imports == "in the body":  # imported when the function runs: not a global of its module
        imports, body = "", f"from {helpers} import h\n    return h(signal)"
    (tmp_path / f"{helpers}.py").write_text(HELPERS)
    fns = tmp_path / f"sumfns_{uuid.uuid4().hex[:8]}.py"
    fns.write_text(f"from scistack import lineage_fcn\n{imports.format(helpers=helpers)}\n\n\n"
                   f"@lineage_fcn\ndef scale(signal):\n    {body}\n\n\n"
                   "@lineage_fcn\ndef total(signal):\n    return float(signal.sum())\n")
    os.utime(fns, (0, 0))  # (written before this process started, never edited since)
    monkeypatch.syspath_prepend(str(tmp_path))
    module = importlib.import_module(fns.stem)
    _build(module, subjects=(1,))
    assert _agree(project, fast=True)["SumScaled"]["stale"] == 0
    (tmp_path / f"{helpers}.py").write_text(HELPERS.replace("signal * FACTOR", "signal * FACTOR + 1"))
    assert _agree(project, fast=None)["SumScaled"]["stale"] == 2
    assert why(SumScaled, subject=1, session="pre").status == "stale"
    assert module.scale(np.ones(2)).data.tolist() == [2.0, 2.0]  # (the code it imported)


@pytest.mark.parametrize("imported", ["in this process", "not yet"])
def test_a_helper_imported_in_a_body_that_no_longer_compiles_makes_the_value_stale(project, tmp_path, monkeypatch,
                                                                                  imported):
    """The helper a function imports in its body was edited mid-way (a syntax error): status
    and why failed with the SyntaxError (a fresh process, which had not imported it yet; in a
    long-running one too once its edits are seen). The code differs from what ran: stale."""
    import os
    import sys

    from scistack import why

    helpers = f"sumbroken_{uuid.uuid4().hex[:8]}"
    (tmp_path / f"{helpers}.py").write_text(HELPERS)
    fns = tmp_path / f"sumfns_{uuid.uuid4().hex[:8]}.py"
    fns.write_text(f"from scistack import lineage_fcn\n\n\n@lineage_fcn\ndef scale(signal):\n"
                   f"    from {helpers} import h\n    return h(signal)\n\n\n"
                   "@lineage_fcn\ndef total(signal):\n    return float(signal.sum())\n")
    os.utime(fns, (0, 0))  # (written before this process started, never edited since)
    monkeypatch.syspath_prepend(str(tmp_path))
    module = importlib.import_module(fns.stem)
    _build(module, subjects=(1,))
    (tmp_path / f"{helpers}.py").write_text(HELPERS.replace("signal * FACTOR", "signal *"))
    if imported == "not yet":  # as a fresh process finds it
        del sys.modules[helpers]
    assert _agree(project, fast=None)["SumScaled"]["stale"] == 2
    assert why(SumScaled, subject=1, session="pre").status == "stale"
