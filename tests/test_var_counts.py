"""`ls` and `status` count a variable's values and versions from running counts kept by the
fold (`var_counts`): after any saves, deletes and refolds they equal a count of the records,
and a listing after one more save does not read all of the variable's refs again."""

from __future__ import annotations

import json
import sqlite3

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from scistack.index.fold import FOLD_VERSION
from scistack import BaseVariable, configure_database
from scistack.report.history import list_variables
from tests.helpers import migrated_in_place, older_fold


class Counted(BaseVariable):
    pass


class CountedVariant(BaseVariable):
    pass


def _listed(db) -> dict[str, tuple[int, int]]:
    return {s.name: (s.values, s.versions) for s in list_variables(db)}


def _counted(db, var: str) -> tuple[int, int]:
    """(values, versions) from the records themselves: newest per address and version keys."""
    records = db.index.records(var)
    return len({(r.addr_key, r.vkeys_key) for r in records}), len(records)


def _agree(db) -> None:
    listed = _listed(db)
    for var in ("Counted", "CountedVariant"):
        if db.index.records(var):
            assert listed[var] == _counted(db, var), var
        else:
            assert var not in listed


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(st.tuples(st.sampled_from(["save", "variant", "delete", "delete_v1"]), st.integers(0, 3)),
                min_size=1, max_size=14), st.integers(1, 4))
def test_listed_counts_after_any_saves_and_deletes_equal_a_count(tmp_path_factory, steps, listings):
    db = configure_database(tmp_path_factory.mktemp("p") / "p.duckdb", ["subject"])
    try:
        every = max(1, len(steps) // listings)
        for n, (op, subject) in enumerate(steps, start=1):
            here = [r for r in db.index.records("Counted") if r.addr["subject"] == subject]
            if op == "save":
                Counted.save(float(n), subject=subject)
            elif op == "variant":
                CountedVariant.save(float(n), subject=subject, trial=n % 2)
            elif op == "delete" and here:
                Counted.delete(subject=subject)
            elif op == "delete_v1" and any(r.version == 1 for r in here):
                Counted.delete(subject=subject, version=1)
            if n % every == 0:
                _agree(db)
        _agree(db)
    finally:
        db.close()


def test_a_listing_after_one_save_does_not_count_the_variable_again(tmp_path):
    db = configure_database(tmp_path / "p.duckdb", ["subject"])
    try:
        with db.batch():
            for subject in range(3000):
                Counted.save(float(subject), subject=subject)
        assert _listed(db)["Counted"] == (3000, 3000)
        Counted.save(-1.0, subject=0)
        Counted.save(-1.0, subject=5000)
        reader = db.index._fold._reader()
        steps = []
        reader.set_progress_handler(lambda: steps.append(1), 100)  # every 100 SQLite VM steps
        try:
            listed = _listed(db)["Counted"]
        finally:
            reader.set_progress_handler(None, 100)
        assert listed == (3001, 3002)
        assert len(steps) < 50, f"{len(steps) * 100} VM steps to list a variable of 3,002 refs"
    finally:
        db.close()


def test_a_ref_folded_twice_is_counted_once(tmp_path):
    db = configure_database(tmp_path / "p.duckdb", ["subject"])
    try:
        Counted.save(1.0, subject=1)
        assert _listed(db)["Counted"] == (1, 1)
        fold = db.index._fold
        [entry] = [json.loads(line) for line in db.index.journal_path.read_bytes().splitlines()]
        with fold._lock:
            con = fold._connection()
            con.execute("BEGIN IMMEDIATE")
            fold._apply(con, [entry])  # the REPLACE takes the row off (`ref_gone`) and puts it back
            con.execute("COMMIT")
        Counted.save(2.0, subject=2)
        assert _listed(db)["Counted"] == (2, 2)
    finally:
        db.close()


def test_a_fold_of_layout_10_gains_the_counts_in_place(tmp_path):
    db = configure_database(tmp_path / "p.duckdb", ["subject"])
    for subject in range(4):
        Counted.save(np.arange(3.0) + subject, subject=subject)
    # layout 10: no counts, and slot triggers that do not count (stand-ins for the old ones,
    # which the migration must replace: `CREATE TRIGGER IF NOT EXISTS` alone would keep them)
    path, mark = older_fold(db, "ALTER TABLE calls DROP COLUMN origins; DROP TRIGGER ref_gone; DROP TABLE var_counts; "
                             "DROP TRIGGER slot_born; DROP TRIGGER slot_revived; DROP TRIGGER slot_emptied; "
                             "CREATE TRIGGER slot_born AFTER INSERT ON slots WHEN NEW.live BEGIN SELECT 1; END; "
                             "CREATE TRIGGER slot_revived AFTER UPDATE OF live ON slots BEGIN SELECT 1; END; "
                             "CREATE TRIGGER slot_emptied AFTER UPDATE OF live ON slots BEGIN SELECT 1; END; "
                             "UPDATE meta SET value = '10' WHERE key = 'fold_version';")
    db = configure_database(tmp_path / "p.duckdb", ["subject"])
    try:
        assert _listed(db)["Counted"] == (4, 4)
        Counted.save(np.ones(2), subject=9)  # a new address: its slot is born
        Counted.save(np.ones(2), subject=1)  # a new version
        Counted.delete(subject=2)  # a slot emptied
        Counted.save(np.zeros(2), subject=2)  # and revived
        assert _listed(db)["Counted"] == _counted(db, "Counted") == (5, 6)
        found = sqlite3.connect(path)
        assert found.execute("SELECT value FROM meta WHERE key = 'fold_version'").fetchone() == (str(FOLD_VERSION),)
        found.close()
        assert migrated_in_place(path, mark)  # the same file, not a rebuilt one
    finally:
        db.close()
