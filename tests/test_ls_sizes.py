"""`scistack ls` sizes: the bulk lookup of childless objects (`leaf_sizes`) must give the bytes
a walk of every object and its children gives, for every kind of value, packed or loose; and
each object counts once, however many of the variable's values hold it (a chunk shared by
versions that differ in one chunk, an array in two containers)."""

from __future__ import annotations

import json

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
import pandas as pd
import pytest

from scistack.index.fold import FOLD_VERSION
from scistack import BaseVariable, configure_database
from scistack.objects.chunking import set_chunking
from scistack.objects.codec import child_oids
from scistack.report.history import list_variables
from tests.helpers import migrated_in_place, older_fold


class SizedValue(BaseVariable):
    pass


def _bytes_on_disk(db, oids: list[str]) -> int:
    """The reference: every object the oids reach, walked and counted once."""
    seen, stack, total = set(), list(oids), 0
    while stack:
        oid = stack.pop()
        if oid in seen:
            continue
        seen.add(oid)
        total += db.store.size_of(oid)
        if db.store.kind_of(oid) in ("json", "chunked"):
            obj = db.store.get(oid)
            stack.extend(child for child, _ in child_oids(obj.kind, obj.payload))
    return total


VALUES = [
    0.5, 7, "a label", "x" * 5000, True, None, [1, 2, 3], {"gain": 2.0, "name": "emg"},
    {"signal": np.arange(50.0), "rate": 1000},  # a json object naming a child
    [np.ones(4), np.zeros(3)],
    np.arange(20.0), np.arange(100_000, dtype=np.int16),  # compressible: stored zstd
    np.random.default_rng(0).standard_normal(3000),  # above the tiny chunking threshold
    pd.DataFrame({"a": [1, 2], "b": ["x", "y"]}),
    {"$ref": "not an oid, only a key"},
]


@pytest.fixture
def project(tmp_path):
    set_chunking(threshold=16 << 10, chunk_bytes=4 << 10)
    db = configure_database(tmp_path / "p.duckdb", ["subject"])
    yield db
    db.close()
    set_chunking()


@pytest.mark.parametrize("batched", [True, False], ids=["packed", "loose"])
def test_listed_bytes_equal_a_walk_of_every_object(project, batched):
    if batched:
        with project.batch():
            for subject, value in enumerate(VALUES):
                SizedValue.save(value, subject=subject)
    else:
        for subject, value in enumerate(VALUES):
            SizedValue.save(value, subject=subject)
    assert project.index.byte_total("SizedValue") is None  # not listed yet: nothing followed
    refs = list({r.oid: r.kind for r in project.index.records("SizedValue")}.items())
    assert len(refs) == len(VALUES)
    walked = _bytes_on_disk(project, [oid for oid, _ in refs])
    [listed] = [s for s in list_variables(project) if s.name == "SizedValue"]
    assert listed.size_bytes == walked
    leaves = project.store.leaf_sizes([oid for oid, _ in refs])
    found = [size for size in leaves if size is not None]
    if batched:  # the bulk path is taken for the small childless ones, and only for them
        assert len(found) >= 6
        assert sum(found) < walked
    for (oid, kind), size in zip(refs, leaves):
        if size is not None:
            assert size == project.store.size_of(oid) == _bytes_on_disk(project, [oid])


class Tracked(BaseVariable):
    pass


def _walked(db, var: str) -> int:
    """The bytes of the variable's distinct live objects, each walked with its children."""
    return _bytes_on_disk(db, sorted({r.oid for r in db.index.records(var)}))


def _listed(db, var: str) -> int:
    [found] = [s for s in list_variables(db) if s.name == var]
    return found.size_bytes


def test_ls_follows_what_changed_without_summing_the_variable_again(project, monkeypatch):
    for subject in range(6):
        Tracked.save(float(subject % 3), subject=subject)  # three objects, each named twice
    assert _listed(project, "Tracked") == _walked(project, "Tracked")

    def summed_again(var):
        raise AssertionError(f"{var} was summed again")

    monkeypatch.setattr(project.index, "follow_bytes", summed_again)
    Tracked.save(np.arange(40.0), subject=10)  # a new object
    Tracked.save(1.0, subject=11)  # an object the variable has: counted once
    Tracked.save({"signal": np.ones(9)}, subject=0)  # a new version: the old one stays named
    Tracked.delete(subject=2)  # 2.0 is still named at subject 5: stays
    Tracked.delete(subject=10)  # the array's only ref: it leaves
    assert _listed(project, "Tracked") == _walked(project, "Tracked")
    Tracked.delete(subject=5)  # 2.0's last ref
    Tracked.save(np.arange(40.0), subject=12)  # the array again, after it left
    assert _listed(project, "Tracked") == _walked(project, "Tracked")


def test_ls_reads_what_joined_a_variable_not_all_its_objects(project):
    """A listed variable's total is one row plus what joined since: at 10M refs the query had
    walked every object of the variable (0.3 s a variable) to find the few that joined."""
    with project.batch():
        for subject in range(3000):
            Tracked.save(float(subject), subject=subject)
    assert _listed(project, "Tracked") == _walked(project, "Tracked")
    Tracked.save(-1.0, subject=0)  # one object joins
    reader = project.index._fold._reader()
    steps = []
    reader.set_progress_handler(lambda: steps.append(1), 100)  # every 100 SQLite VM steps
    try:
        total, pending = project.index.byte_total("Tracked")
    finally:
        reader.set_progress_handler(None, 100)
    assert len(pending) == 1
    assert len(steps) < 20, f"{len(steps) * 100} VM steps for one joined object of 3,001"


def test_chunks_shared_by_versions_and_containers_count_once(project):
    """Versions that differ in one chunk share the others on disk; `ls` had counted each
    version's chunks again (5 versions of a 6.4 MB array: 30.6 MiB listed, 6.2 on disk)."""
    x = np.random.default_rng(1).standard_normal(6000)  # 48 KB: 12 chunks of 4 KB
    for v in range(4):
        y = x.copy()
        y[v * 1000] = -1.0
        Tracked.save(y, subject=1)
    one = _bytes_on_disk(project, [project.index.records("Tracked")[0].oid])
    listed = _listed(project, "Tracked")
    assert listed == _walked(project, "Tracked") < 2 * one  # (each version alone: 4 * one)
    Tracked.save({"left": y, "right": y}, subject=2)  # a container of a chunked array held already
    Tracked.save([x, y], subject=3)
    assert _listed(project, "Tracked") == _walked(project, "Tracked")
    Tracked.delete(subject=1)  # its chunks the containers hold stay counted, the others leave
    assert _listed(project, "Tracked") == _walked(project, "Tracked")
    Tracked.delete(subject=3)
    assert _listed(project, "Tracked") == _walked(project, "Tracked") < 1.5 * one


SHARING = [0.0, 1.0, {"signal": np.arange(9.0), "v": 2}, [np.arange(9.0), np.full(3, 3.0)],
           np.full(3, 3.0)]  # (values 2, 3 and 4 share children)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(st.tuples(st.booleans(), st.integers(0, 4), st.integers(0, 4)), min_size=1, max_size=12),
       st.integers(1, 4))
def test_listed_bytes_after_any_saves_and_deletes_equal_a_walk(tmp_path_factory, steps, listings):
    """Saves (of a few distinct values, so objects are shared) and deletes in any order, with
    listings in between: the running total always equals a walk of the live objects."""
    db = configure_database(tmp_path_factory.mktemp("p") / "p.duckdb", ["subject"])
    try:
        every = max(1, len(steps) // listings)
        for n, (save, subject, value) in enumerate(steps, start=1):
            if save:
                Tracked.save(SHARING[value], subject=subject)
            elif any(r.addr["subject"] == subject for r in db.index.records("Tracked")):
                Tracked.delete(subject=subject)
            if n % every == 0 and db.index.records("Tracked"):
                assert _listed(db, "Tracked") == _walked(db, "Tracked")
    finally:
        db.close()


def test_a_fold_of_layout_9_counts_the_objects_in_place(project, tmp_path):
    import sqlite3

    for subject in range(4):
        Tracked.save(float(subject % 2), subject=subject)
    path, mark = older_fold(project, "ALTER TABLE calls DROP COLUMN origins; DROP TRIGGER ref_unnamed; DROP TRIGGER var_oid_joined; "
                             "DROP TRIGGER var_oid_left; DROP TABLE var_oids; DROP TABLE var_bytes; "
                             "DROP TABLE var_unsized; DROP TRIGGER ref_gone; DROP TABLE var_counts; "
                             "UPDATE meta SET value = '9' WHERE key = 'fold_version';")
    db = configure_database(tmp_path / "p.duckdb", ["subject"])
    try:
        assert _listed(db, "Tracked") == _walked(db, "Tracked")
        Tracked.save(7.0, subject=9)  # the triggers follow it from here
        Tracked.delete(subject=0)
        assert _listed(db, "Tracked") == _walked(db, "Tracked")
        found = sqlite3.connect(path)
        assert found.execute("SELECT sum(n), count(*) FROM var_oids WHERE var = 'Tracked'").fetchone() == (4, 3)
        assert found.execute("SELECT count(*) FROM var_oids WHERE var <> 'Tracked'").fetchone() == (0,)
        assert found.execute("SELECT value FROM meta WHERE key = 'fold_version'").fetchone() == (str(FOLD_VERSION),)
        found.close()
        assert migrated_in_place(path, mark)  # the same file, not a rebuilt one
    finally:
        db.close()


def test_a_ref_folded_twice_is_counted_once(project):
    """A put line applied again (the same variable, address and version) replaces its row:
    the object counts follow it (SQLite fires the delete trigger of a REPLACE only with
    recursive triggers on)."""
    Tracked.save(np.arange(30.0), subject=1)
    assert _listed(project, "Tracked") == _walked(project, "Tracked")
    fold = project.index._fold
    [entry] = [json.loads(line) for line in project.index.journal_path.read_bytes().splitlines()]
    with fold._lock:
        con = fold._connection()
        con.execute("BEGIN IMMEDIATE")
        fold._apply(con, [entry])
        con.execute("COMMIT")
    assert fold._rows("SELECT n FROM var_oids WHERE var = 'Tracked'") == [(1,)]
    assert _listed(project, "Tracked") == _walked(project, "Tracked")
