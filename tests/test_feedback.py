"""Feedback from for_each: a one-line summary by default, a report that names what did not
run, summarised table-mode failures, and a table-mode dry run that calls nothing."""

from __future__ import annotations

import numpy as np
import pandas as pd

from scistack import BaseVariable, for_each, lineage_fcn, set_schema


class FbRaw(BaseVariable):
    pass


class FbOut(BaseVariable):
    pass


@lineage_fcn
def fb_double(x):
    return x * 2


CALLS: list = []


def fb_table(x):
    CALLS.append(x)
    if x > 2:
        raise ValueError(f"too big: {x}")
    return x * 10


def test_a_run_prints_one_summary_line_unless_quiet(project, capsys):
    FbRaw.save(np.arange(3.0), subject=1, session="pre")
    for_each(fb_double, inputs={"x": FbRaw}, outputs=[FbOut], subject=[1, 2], session=["pre"])
    out = capsys.readouterr().err.splitlines()
    assert len(out) == 1 and out[0].startswith("for_each(fb_double): 1 ran, 0 cached, 1 missing, 0 failed in ")
    assert "print(report)" in out[0]
    for_each(fb_double, inputs={"x": FbRaw}, outputs=[FbOut], subject=[1], session=["pre"], verbose=False)
    for_each(fb_double, inputs={"x": FbRaw}, outputs=[FbOut], subject=[1], session=["pre"], progress=False)
    assert capsys.readouterr().err == ""
    for_each(fb_double, inputs={"x": FbRaw}, outputs=[FbOut], subject=[1], session=["pre"],
             progress=False, verbose=True)
    assert capsys.readouterr().err.startswith("for_each(fb_double): 0 ran, 1 cached")


def test_print_report_names_the_missing_combinations(project):
    FbRaw.save(np.arange(3.0), subject=1, session="pre")
    report = for_each(fb_double, inputs={"x": FbRaw}, outputs=[FbOut], subject=[1, 2, 3],
                      session=["pre"], verbose=False)
    text = str(report)
    assert "missing subject=2, session='pre': no x there" in text
    assert "missing subject=3, session='pre'" in text


def test_table_mode_failures_are_summarised_and_dry_run_calls_nothing(no_database, capsys, caplog):
    set_schema(["subject"])
    frame = pd.DataFrame({"subject": [1, 2, 3, 4], "data": [1, 2, 3, 4]})
    CALLS.clear()
    plan = for_each(fb_table, inputs={"x": frame}, subject=[1, 2, 3, 4, 5], dry_run=True)
    assert CALLS == [] and list(plan["status"]) == ["would_run"] * 4 + ["missing"]
    assert capsys.readouterr().err.startswith("[dry run] for_each(fb_table): 0 ran")
    results = for_each(fb_table, inputs={"x": frame}, subject=[1, 2, 3, 4], verbose=False)
    assert list(results["result"]) == [10, 20]
    warnings = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert len(warnings) == 1 and "2 failed" in warnings[0] and "Traceback" not in warnings[0]
    assert "failed subject=3: ValueError: too big: 3" in warnings[0]
    set_schema([])
