"""A value computed from a Merge input is reported like any other: done right after its run,
stale when a member changes, and drawn by `log --graph`."""

from __future__ import annotations

import numpy as np
from click.testing import CliRunner

from scistack import BaseVariable, Merge, for_each
from scistack.cli import main
from scistack.report.status import status_grid


class MrgA(BaseVariable):
    pass


class MrgB(BaseVariable):
    pass


class MrgSums(BaseVariable):
    pass


def mrg_width(table):
    return float(len(table.columns))


def _run() -> None:
    for_each(mrg_width, inputs={"table": Merge(MrgA, MrgB)}, outputs=[MrgSums],
             subject=[1, 2], session=["pre"], progress=False)


def test_merge_results_are_done_after_their_run_and_stale_after_a_member_changes(project):
    for subject in (1, 2):
        MrgA.save(np.arange(3.0) * subject, subject=subject, session="pre")
        MrgB.save(np.ones(3) * subject, subject=subject, session="pre")
    _run()
    assert status_grid(project, ["MrgSums"]).counts()["MrgSums"]["done"] == 2
    MrgB.save(np.zeros(3), subject=2, session="pre")
    grid = status_grid(project, ["MrgSums"])
    cell = grid.cell("MrgSums", {"subject": 2, "session": "pre"})
    assert cell.status == "stale" and "MrgB" in cell.reason
    result = CliRunner().invoke(main, ["--db", str(project.path), "log", "MrgSums", "--graph"])
    assert result.exit_code == 0, result.output
    assert "merge(MrgA + MrgB)" in result.output and "merge of MrgA + MrgB" in result.output
