"""A fold written by a newer scistack (a lab mixing versions) is left whole: this version
folds the journal into its own file beside it instead of rebuilding the other's."""

from __future__ import annotations

import sqlite3

from scistack import BaseVariable, configure_database
from scistack.index.fold import FOLD_VERSION


class Layered(BaseVariable):
    pass


def test_a_newer_layout_is_left_to_the_newer_version(tmp_path, caplog):
    db = configure_database(tmp_path / "p.duckdb", ["subject"])
    Layered.save(1.0, subject=1)
    path = db.root / ".scistack" / "fold.sqlite"
    db.close()
    con = sqlite3.connect(path)  # what a newer scistack's fold could look like
    con.executescript(f"UPDATE meta SET value = '{FOLD_VERSION + 1}' WHERE key = 'fold_version'; "
                      "CREATE TABLE from_the_future (x INTEGER); DROP TABLE var_counts;")
    con.close()
    inode = path.stat().st_ino

    db = configure_database(tmp_path / "p.duckdb", ["subject"])
    try:
        assert Layered.load(subject=1).data == 1.0
        Layered.save(2.0, subject=2)
        assert [r.addr["subject"] for r in db.index.records("Layered")] == [1, 2]
    finally:
        db.close()
    assert path.stat().st_ino == inode  # not discarded, not rebuilt
    con = sqlite3.connect(path)
    assert con.execute("SELECT value FROM meta WHERE key = 'fold_version'").fetchone() == (str(FOLD_VERSION + 1),)
    names = {r[0] for r in con.execute("SELECT name FROM sqlite_master")}
    assert "from_the_future" in names and "var_counts" not in names  # untouched by the older schema
    con.close()
    assert (path.parent / f"fold.v{FOLD_VERSION}.sqlite").exists()
    assert "written by a newer scistack" in caplog.text


class LiveCalled(BaseVariable):
    pass


def test_a_fold_of_layout_15_counts_its_calls_live_refs_in_place(tmp_path):
    """Layout 16 counts the live refs naming each of a variable's calls (`var_calls.live`): a
    fold of 15 gains the column and the counts in place; a deleted value's call counts none."""
    from scistack import for_each
    from tests.helpers import migrated_in_place

    def twice(x):
        return x * 2

    db = configure_database(tmp_path / "p.duckdb", ["subject"])
    Layered.save(1.0, subject=1)
    Layered.save(2.0, subject=2)
    for_each(twice, inputs={"x": Layered}, outputs=[LiveCalled], subject=[1, 2], verbose=False)
    gone = db.index.select("LiveCalled", {"subject": 2}, {}, {})[0].call
    LiveCalled.delete(subject=2)
    path = db.root / ".scistack" / "fold.sqlite"
    db.close()
    con = sqlite3.connect(path)  # layout 15: no `live`, no trigger
    con.executescript("DROP TRIGGER ref_call_unnamed; ALTER TABLE var_calls DROP COLUMN live; "
                      "UPDATE meta SET value = '15' WHERE key = 'fold_version'; "
                      "INSERT INTO meta VALUES ('test_mark', 'm15');")
    con.close()

    db = configure_database(tmp_path / "p.duckdb", ["subject"])
    db.index.records("LiveCalled")  # (opens the fold: migrates it)
    db.close()
    assert migrated_in_place(path, "m15")
    con = sqlite3.connect(path)
    live = dict(con.execute("SELECT call, live FROM var_calls WHERE var = 'LiveCalled'").fetchall())
    con.close()
    assert live[gone] == 0 and sorted(live.values()) == [0, 1]
