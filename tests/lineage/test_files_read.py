"""Files a lineage function opens are inputs: also when for_each runs it in worker processes,
and also when the call was made before a database existed (then copied into one)."""

from __future__ import annotations

import concurrent.futures as cf
import importlib
import multiprocessing
import sys
from pathlib import Path

import numpy as np

from scistack import BaseVariable, for_each
from scistack.records import read_call


class FrIn(BaseVariable):
    pass


class FrOut(BaseVariable):
    pass


MODULE = """
import os
from scistack import lineage_fcn

HERE = os.path.dirname(__file__)

@lineage_fcn
def calibrated(x):
    with open(os.path.join(HERE, "gain.txt")) as handle:
        return float(x.sum()) * float(handle.read())
"""


def _import(tmp_path: Path, monkeypatch) -> object:
    package = tmp_path / "fr_pkg"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "steps.py").write_text(MODULE)
    (package / "gain.txt").write_text("2")
    monkeypatch.syspath_prepend(str(tmp_path))
    importlib.invalidate_caches()
    sys.modules.pop("fr_pkg.steps", None)
    sys.modules.pop("fr_pkg", None)
    return importlib.import_module("fr_pkg.steps")


def test_files_read_in_workers_are_recorded_and_checked(project, tmp_path, monkeypatch):
    steps = _import(tmp_path, monkeypatch)
    for subject in (1, 2):  # other values each: both run (the same ones would run once)
        FrIn.save(np.arange(3.0) + (subject == 1), subject=subject, session="a")
    with cf.ProcessPoolExecutor(2, mp_context=multiprocessing.get_context("spawn")) as pool:
        run = dict(inputs={"x": FrIn}, outputs=[FrOut], subject=[1, 2], session=["a"], executor=pool)
        first = for_each(steps.calibrated, **run)
        assert [i.status for i in first.items] == ["ran", "ran"]
        record = read_call(project.store, FrOut.load(subject=1, session="a").record.call)
        assert [f["path"] for f in record.extra["files"]] == [str(tmp_path / "fr_pkg" / "gain.txt")]

        assert [i.status for i in for_each(steps.calibrated, **run).items] == ["cached", "cached"]
        (tmp_path / "fr_pkg" / "gain.txt").write_text("5")
        assert [i.status for i in for_each(steps.calibrated, **run).items] == ["ran", "ran"]
        assert float(FrOut.load(subject=2, session="a").data) == 15.0


def test_a_call_made_in_memory_keeps_its_files_when_copied_into_a_database(
    tmp_path, monkeypatch, no_database
):
    import scistack.database as database_module
    from scistack import configure_database

    steps = _import(tmp_path, monkeypatch)
    x = np.arange(3.0)
    in_memory = steps.calibrated(x)  # no database yet: cached in this process's memory
    db = configure_database(tmp_path / "p.duckdb", ["subject"])
    try:
        FrOut.save(in_memory, subject=1)  # brings the call (and its cache entry) along
        assert steps.calibrated(x).cached
        (tmp_path / "fr_pkg" / "gain.txt").write_text("7")
        again = steps.calibrated(x)
        assert not again.cached and float(again.data) == 21.0
    finally:
        db.close()
        database_module._current = None
