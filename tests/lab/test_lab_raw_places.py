"""Raw files (`PathInput`) of one lab project read on two machines, each holding the project's
raw folder at its own absolute path (real PostgreSQL and S3)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

import scistack.database as database_module
from scistack import BaseVariable, PathInput, configure_database, for_each, why
from scistack.report.status import status_grid


class LabRawTotal(BaseVariable):
    pass


def total(path):
    return float(np.loadtxt(path, delimiter=",").sum())


@pytest.fixture
def machine(tmp_path, monkeypatch, pg_url, bucket_url):
    """`machine(name)` opens the lab project in the checkout `name`, its raw folder there; the
    other machine's raw folder is out of sight (another machine's disk), the previous
    project closed first."""

    def open_(name: str):
        current = database_module.current_database()
        if current is not None:
            current.close()
        for other in {"a", "b"} - {name}:
            if (tmp_path / other / "raw").exists():
                (tmp_path / other / "raw").rename(tmp_path / other / "elsewhere")
        if (tmp_path / name / "elsewhere").exists():
            (tmp_path / name / "elsewhere").rename(tmp_path / name / "raw")
        monkeypatch.chdir(tmp_path / name)
        return configure_database(tmp_path / name / "gait.duckdb", ["subject", "session"], shared=pg_url,
                                  objects=bucket_url)

    yield open_
    current = database_module.current_database()
    if current is not None:
        current.close()
    database_module._current = None


def _raw(folder: Path) -> None:
    for rel, text in {"1/s_pre.csv": "1,2\n", "2/s_pre.csv": "3,4\n"}.items():
        (folder / rel).parent.mkdir(parents=True, exist_ok=True)
        (folder / rel).write_text(text)


def test_two_machines_reading_the_same_raw_folder_at_other_paths_make_no_new_records(tmp_path, machine):
    """Checkouts a and b of one lab project, each with a copy of the same raw folder (the same
    bytes under the same path in the project, other absolute paths). Each machine's run
    recorded every call again with its own absolute paths and made that the cache entry (the
    other machine's next run did the same), and before its own run each machine's `status`
    and `why` called every value stale ("raw/1/s_pre.csv is gone": the other machine's path).
    The raw file's place is its path relative to the project's folder: nothing is recorded
    again, every value stays current at one version, and an edit on b is seen on b."""
    for name in ("a", "b"):
        _raw(tmp_path / name / "raw")

    def run() -> tuple[int, int]:
        done = for_each(total, inputs={"path": PathInput("{subject}/s_{session}.csv", root="raw/")},
                        outputs=[LabRawTotal], subject=[1, 2], session=["pre"], progress=False)
        return done.ran, done.cached

    def statuses(db) -> list[str]:
        said = [why(LabRawTotal, subject=s, session="pre").status for s in (1, 2)]
        assert status_grid(db).counts()["LabRawTotal"]["stale"] == said.count("stale")
        return said

    def calls(db) -> list[tuple[str, str]]:
        refs = [LabRawTotal.load(subject=s, session="pre").record for s in (1, 2)]
        return [(r.call, db.index.cached_call(db.index.call_key_of(r.call))["call"]) for r in refs]

    db = machine("a")
    assert run() == (2, 0)
    first = calls(db)
    for name in ("b", "a", "b"):
        db = machine(name)
        assert statuses(db) == ["current", "current"], name  # (it was "stale": "... is gone")
        assert run() == (0, 2)
        assert calls(db) == first, name  # (nothing recorded again: the entry had flipped)
        assert [len(LabRawTotal.list_versions(subject=s, session="pre")) for s in (1, 2)] == [1, 1]
    (tmp_path / "b/raw/2/s_pre.csv").write_text("5,5\n")
    assert statuses(db) == ["current", "stale"]
    assert "raw/2/s_pre.csv changed" in str(why(LabRawTotal, subject=2, session="pre"))
    assert run() == (1, 1)
    assert (LabRawTotal.load(subject=2, session="pre").data, statuses(db)) == (10.0, ["current", "current"])
