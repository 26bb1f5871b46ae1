"""A schema key's value saved as text where the same value is saved as a number (subject="1"
beside subject=1): the SQL views and where= show the column as text, so the two were one
value there (a join paired one's records with the other's, `where="subject = '1'"` returned
both). Such a save is refused, naming the value already there."""

from __future__ import annotations

import sqlite3

import pytest

import scistack.database as database_module
from scistack import BaseVariable, configure_database
from scistack.errors import InvalidMetadataError
from tests.helpers import fold_before_key_values


class KtA(BaseVariable):
    pass


class KtB(BaseVariable):
    pass


def test_a_value_that_looks_like_one_of_another_type_is_refused(project):
    KtA.save(10.0, subject=1, session=1)
    with pytest.raises(InvalidMetadataError, match=r"KtB: subject='1' \(text\) looks like subject=1 \(a number\), "
                                                   r"which KtA already has.*Save it as subject=1 \(int\('1'\)\)"):
        KtB.save(20.0, subject="1", session=2)  # another variable, another address: still one column
    KtA.save(1.0, subject=3, session=2.5)
    with pytest.raises(InvalidMetadataError, match=r"session='2.5' \(text\) looks like session=2.5 \(a float\)"):
        KtA.save(1.0, subject=3, session="2.5")
    assert sorted(r.data for r in KtA.load_all()) == [1.0, 10.0] and list(KtB.load_all()) == []
    project.sync()
    assert project.sql("SELECT count(*) AS n FROM KtA WHERE subject = 1")["n"][0] == 1
    # the other way round, and within one batch of this process
    KtA.save(5.0, subject="7", session=2)
    with pytest.raises(InvalidMetadataError, match=r"subject=7 \(a number\) looks like subject='7' \(text\)"):
        KtB.save(6.0, subject=7, session=2)
    with project.index.batch():
        KtB.save(1.0, subject="s", session=9)
        with pytest.raises(InvalidMetadataError, match="session='9'"):
            KtB.save(2.0, subject="s", session="9")
    # text and numbers that read differently mix as before; "01" is not 1
    KtA.save(1.0, subject="a", session=1)
    KtA.save(1.0, subject="01", session=1)
    KtA.save(1.0, subject=2, session=1)
    assert sorted(map(str, (r.metadata["subject"] for r in KtA.load_all()))) == ["01", "1", "2", "3", "7", "a"]


def test_a_look_alike_whose_records_are_all_deleted_is_allowed(project):
    KtA.save(1.0, subject=1, session=1)
    KtA.delete(subject=1)
    KtB.save(2.0, subject="1", session=1)
    assert KtB.load(subject="1", session=1).data == 2.0


def test_another_process_look_alike_and_an_older_fold_are_seen(tmp_path, monkeypatch):
    """The values come from the fold: what another process saved, and (layout 17, before
    `key_values`) a fold migrated in place from its addresses."""
    monkeypatch.chdir(tmp_path)
    db = configure_database(tmp_path / "gait.duckdb", ["subject", "session"])
    KtA.save(1.0, subject=4, session=1)
    KtA.save(1.0, subject="x", session=2.5)
    db.close()
    database_module._current = None
    fold_before_key_values(tmp_path)
    db = configure_database(tmp_path / "gait.duckdb", ["subject", "session"])
    try:
        with pytest.raises(InvalidMetadataError, match=r"subject='4' \(text\) looks like subject=4"):
            KtB.save(2.0, subject="4", session=1)
        with pytest.raises(InvalidMetadataError, match=r"session='2.5' \(text\) looks like session=2.5"):
            KtB.save(2.0, subject="y", session="2.5")
        KtB.save(2.0, subject="x", session=1)  # (no look-alike: "x" is text as before)
    finally:
        db.close()
        database_module._current = None


def test_an_older_folds_floats_migrate_as_the_fold_writes_them(tmp_path, monkeypatch):
    """Layout 17's migration wrote a float's `key_values` text as SQLite renders it (15
    digits, `1.0e+20`), and no int text for a whole float beyond int64 (1e20, 2.0**70: CAST AS
    INTEGER saturates): after it, a look-alike of such a value was saved beside it. The rows
    migrated are those the fold writes, and the values still load by the same keys."""
    monkeypatch.chdir(tmp_path)
    fold_path = tmp_path / ".scistack" / "fold.sqlite"

    def key_values() -> list[tuple[str, str, str]]:
        con = sqlite3.connect(fold_path)
        try:
            return sorted(con.execute("SELECT key, text, type FROM key_values"))
        finally:
            con.close()

    db = configure_database(tmp_path / "gait.duckdb", ["subject", "session"])
    KtA.save(1.0, subject=1e20, session=2.0**70)
    KtA.save(2.0, subject=2.0**60, session=-1e300)
    KtA.save(3.0, subject=2.5, session=0.1)
    db.close()
    database_module._current = None
    written = key_values()
    assert ("subject", "100000000000000000000", "float") in written
    fold_before_key_values(tmp_path)
    db = configure_database(tmp_path / "gait.duckdb", ["subject", "session"])
    try:
        assert KtA.load(subject=1e20, session=2.0**70).data == 1.0
        assert KtA.load(subject=2.0**60, session=-1e300).data == 2.0
        for look_alike in ("100000000000000000000", "1e+20"):
            with pytest.raises(InvalidMetadataError, match=r"looks like subject=1e\+20 \(a float\)"):
                KtB.save(9.0, subject=look_alike, session=1)
        with pytest.raises(InvalidMetadataError, match="looks like subject=1.152921504606847e\\+18"):
            KtB.save(9.0, subject="1.152921504606847e+18", session=1)
    finally:
        db.close()
        database_module._current = None
    assert key_values() == written


# -- a value that passed once is checked again once its look-alike may be live ---------------

def test_a_value_whose_look_alike_this_process_saved_since_is_checked_again(project):
    """A value that passed was remembered for good: "5" saved, deleted, 5 saved (allowed: no
    "5" is live), then "5" saved again went through beside the live 5."""
    KtA.save(1.0, subject="5", session=1)
    KtA.delete(subject="5")
    KtB.save(2.0, subject=5, session=1)
    with pytest.raises(InvalidMetadataError, match=r"KtA: subject='5' \(text\) looks like subject=5 \(a number\), "
                                                   "which KtB already has"):
        KtA.save(3.0, subject="5", session=1)
    # and back again: 5 deleted, "5" saved (allowed), then 5 (passed before) is refused
    KtB.delete(subject=5)
    KtA.save(3.0, subject="5", session=1)
    with pytest.raises(InvalidMetadataError, match=r"KtB: subject=5 \(a number\) looks like subject='5' \(text\)"):
        KtB.save(4.0, subject=5, session=1)
    assert [r.metadata["subject"] for r in KtA.load_all()] == ["5"] and list(KtB.load_all()) == []


def test_undelete_is_refused_beside_a_look_alike_saved_since(project):
    KtA.save(1.0, subject="7", session=1)
    KtA.delete(subject="7")
    KtB.save(2.0, subject=7, session=1)
    with pytest.raises(InvalidMetadataError, match=r"KtA: subject='7' \(text\) looks like subject=7"):
        KtA.undelete(subject="7")
    assert list(KtA.load_all()) == [] and [r.metadata["subject"] for r in KtB.load_all()] == [7]


_OTHER = """
import sys
from scistack import BaseVariable, configure_database
db = configure_database(sys.argv[1], ["subject", "session"])
class KtA(BaseVariable): pass
class KtB(BaseVariable): pass
if sys.argv[2] == "swap":
    KtA.delete(subject="5")
KtB.save(2.0, subject=int(sys.argv[3]), session=1)
db.close()
"""


def _other_process(path, python_env, *args: str) -> None:
    import subprocess
    import sys
    subprocess.run([sys.executable, "-c", _OTHER, str(path), *args], env=python_env, check=True, timeout=300)


def test_a_look_alike_another_process_saved_since_is_seen_by_a_long_lived_process(project, tmp_path, python_env):
    """A notebook saved "5"; another process deleted it and saved 5; the notebook's next save
    of "5" went through (it had remembered that "5" passed)."""
    KtA.save(1.0, subject="5", session=1)
    _other_process(tmp_path / "gait.duckdb", python_env, "swap", "5")
    with pytest.raises(InvalidMetadataError, match=r"KtA: subject='5' \(text\) looks like subject=5 \(a number\)"):
        KtA.save(3.0, subject="5", session=1)
    assert list(KtA.load_all()) == [] and [r.metadata["subject"] for r in KtB.load_all()] == [5]


def test_a_batch_is_checked_again_against_what_another_process_saved_while_it_held(project, tmp_path, python_env):
    """A batch holds its saves, checked when made; another process saving a look-alike before
    the batch is written is seen when it is written (the batch is refused whole)."""
    KtA.save(1.0, subject="a", session=1)
    with pytest.raises(InvalidMetadataError, match=r"KtA: subject='6' \(text\) looks like subject=6 \(a number\), "
                                                   r"which KtB already has.*nothing the batch held was written"):
        with project.index.batch():
            KtA.save(1.0, subject="b", session=1)
            KtA.save(2.0, subject="6", session=1)
            _other_process(tmp_path / "gait.duckdb", python_env, "add", "6")
    assert [r.metadata["subject"] for r in KtA.load_all()] == ["a"]
    assert [r.metadata["subject"] for r in KtB.load_all()] == [6]
    KtA.save(1.0, subject="b", session=1)  # (saves after the refusal are written as before)
    assert sorted(r.metadata["subject"] for r in KtA.load_all()) == ["a", "b"]


def test_a_look_alike_deleted_in_the_same_batch_is_not_live(project, tmp_path, python_env):
    """`with batch(): A.delete(subject="5"); B.save(.., subject=5)`, what the refusal and fsck
    tell a user to do, was refused (the held delete was not seen), and the delete written
    alone. Likewise at the flush's check after another process wrote meanwhile."""
    KtA.save(1.0, subject="5", session=1)
    with project.index.batch():
        KtA.delete(subject="5")
        KtB.save(2.0, subject=5, session=1)
    assert list(KtA.load_all()) == [] and [r.metadata["subject"] for r in KtB.load_all()] == [5]
    KtA.save(1.0, subject="8", session=1)
    with project.index.batch():
        KtA.delete(subject="8")
        KtB.save(2.0, subject=8, session=1)
        _other_process(tmp_path / "gait.duckdb", python_env, "add", "9")  # (checked again at flush)
    assert list(KtA.load_all()) == [] and sorted(r.metadata["subject"] for r in KtB.load_all()) == [5, 8, 9]
    # a delete that leaves a record of the look-alike live does not allow it
    KtA.save(1.0, subject="4", session=1)
    KtA.save(1.0, subject="4", session=2)
    with project.index.batch():
        KtA.delete(subject="4", session=1)
        with pytest.raises(InvalidMetadataError, match=r"KtB: subject=4 \(a number\) looks like subject='4'"):
            KtB.save(2.0, subject=4, session=1)


def test_a_batch_refused_at_flush_keeps_no_facts_of_its_calls(project, tmp_path, python_env):
    """The facts of the call records a refused batch held were kept at the next flush, though
    nothing of the batch was journalled (a failed `before_flush` dropped them already)."""
    call = "c" * 64
    with pytest.raises(InvalidMetadataError, match="nothing the batch held was written"):
        with project.index.batch():
            project.index.put_call("k" * 64, call, "fn", ["d" * 64], facts=("mod", "fn", "id", True, [], []))
            KtA.save(2.0, subject="6", session=1)
            _other_process(tmp_path / "gait.duckdb", python_env, "add", "6")
    project.index.judging()  # (keeps the facts this process holds)
    with sqlite3.connect(tmp_path / ".scistack" / "fold.sqlite") as fold:
        assert fold.execute("SELECT count(*) FROM call_facts").fetchone() == (0,)


# -- version keys: the same refusal within a variable's own column ---------------------------

def test_a_version_key_value_that_looks_like_one_of_another_type_is_refused(project):
    """note=1 and note="1" (or True and "true") were saved as two variants at one address,
    which the variable's views and where= show as one text ('1'): `where="note = '1'"`
    returned both. The second is refused as a schema key's look-alike is."""
    KtA.save(1.0, subject=1, session=1, note=1)
    with pytest.raises(InvalidMetadataError, match=r"KtA: version key note='1' \(text\) looks like note=1 "
                                                   r"\(a number\), which KtA already has.*Save it as note=1"):
        KtA.save(2.0, subject=1, session=1, note="1")
    KtA.save(1.0, subject=2, session=1, rep="true")
    with pytest.raises(InvalidMetadataError, match=r"rep=True \(a bool\) looks like rep='true' \(text\)"):
        KtA.save(2.0, subject=3, session=1, rep=True)  # another address: still one column
    KtA.save(1.0, subject=2, session=1, rep=2.5)
    with pytest.raises(InvalidMetadataError, match=r"rep='2.5' \(text\) looks like rep=2.5 \(a float\)"):
        KtA.save(1.0, subject=2, session=1, rep="2.5")
    with project.index.batch():  # a held save counts
        KtA.save(1.0, subject=4, session=1, tag="x9")
        KtA.save(1.0, subject=4, session=1, tag=9)
        with pytest.raises(InvalidMetadataError, match=r"tag='9' \(text\) looks like tag=9"):
            KtA.save(2.0, subject=4, session=1, tag="9")
    KtB.save(2.0, subject=1, session=1, note="1")  # another variable's column: allowed
    KtA.save(3.0, subject=1, session=1, note=1)  # the same type again: a new version
    assert [r.data for r in KtA.load_all(where="note = '1'")] == [3.0]
    assert [r.data for r in KtA.load_all(note=1)] == [3.0] and list(KtA.load_all(note="1")) == []
    # deleted, the look-alike is allowed; then the first value is checked again (not remembered)
    KtA.delete(subject=1, note=1)
    KtA.save(4.0, subject=1, session=1, note="1")
    with pytest.raises(InvalidMetadataError, match=r"note=1 \(a number\) looks like note='1' \(text\)"):
        KtA.save(5.0, subject=1, session=1, note=1)
    with project.index.batch():  # a look-alike a held delete takes out is not live
        KtA.delete(subject=1, note="1")
        KtA.save(6.0, subject=1, session=1, note=1)
    assert [(r.metadata.get("note"), r.data) for r in KtA.load_all(subject=1)] == [(1, 6.0)]


def test_a_project_holding_version_key_look_alikes_still_opens_and_loads(tmp_path, monkeypatch):
    """Saved before the refusal, both stay readable; only a new save of either is refused."""
    from scistack.index import Index
    monkeypatch.chdir(tmp_path)
    path = tmp_path / "old.duckdb"
    db = configure_database(path, ["subject"])
    with monkeypatch.context() as m:
        m.setattr(Index, "_check_vkey_value", lambda *args, **kwargs: None)  # as before the refusal
        KtA.save(1.0, subject=1, note=1)
        KtA.save(2.0, subject=1, note="1")
    db.close()
    database_module._current = None
    db = configure_database(path, ["subject"])
    try:
        assert sorted(r.data for r in KtA.load_all()) == [1.0, 2.0]
        assert KtA.load(subject=1, note="1").data == 2.0 and KtA.load(subject=1, note=1).data == 1.0
        assert sorted(r.data for r in KtA.load_all(where="note = '1'")) == [1.0, 2.0]
        with pytest.raises(InvalidMetadataError, match=r"note=1 \(a number\) looks like note='1'"):
            KtA.save(3.0, subject=1, note=1)
        KtA.save(3.0, subject=1, note="other")
    finally:
        db.close()
        database_module._current = None


_OTHER_VKEY = """
import sys
from scistack import BaseVariable, configure_database
db = configure_database(sys.argv[1], ["subject", "session"])
class KtA(BaseVariable): pass
value = int(sys.argv[2]) if sys.argv[2].isdigit() else sys.argv[2]
KtA.save(2.0, subject=9, session=1, **{sys.argv[3] if len(sys.argv) > 3 else "note": value})
db.close()
"""


def _other_saves_note(tmp_path, python_env, note: str, key: str = "note") -> None:
    import subprocess
    import sys
    subprocess.run([sys.executable, "-c", _OTHER_VKEY, str(tmp_path / "gait.duckdb"), note, key],
                   env=python_env, check=True, timeout=300)


def test_a_batch_is_checked_again_against_a_version_key_another_process_saved(project, tmp_path, python_env):
    KtA.save(1.0, subject=1, session=1, note="a")
    with pytest.raises(InvalidMetadataError, match=r"note='6' \(text\) looks like note=6.*nothing the batch held"):
        with project.index.batch():
            KtA.save(2.0, subject=2, session=1, note="6")
            _other_saves_note(tmp_path, python_env, "6")
    assert sorted(map(repr, (r.metadata["note"] for r in KtA.load_all()))) == ["'a'", "6"]
    # a held value still counts once another process's lines made this one read the values again
    with project.index.batch():
        KtA.save(2.0, subject=2, session=1, note="7")
        _other_saves_note(tmp_path, python_env, "other")
        with pytest.raises(InvalidMetadataError, match=r"note=7 \(a number\) looks like note='7' \(text\)"):
            KtA.save(3.0, subject=3, session=1, note=7)
    assert sorted(map(repr, (r.metadata["note"] for r in KtA.load_all()))) == ["'7'", "'a'", "'other'", "6"]
    # outside a batch: the types this process knew a key's values to have (text) are read again
    KtA.save(4.0, subject=4, session=1, label="5")
    _other_saves_note(tmp_path, python_env, "8", key="label")
    with pytest.raises(InvalidMetadataError, match=r"label='8' \(text\) looks like label=8 \(a number\)"):
        KtA.save(4.0, subject=4, session=1, label="8")


# -- the fold's `vkey_values`: kept as refs come and go, rebuilt, migrated -------------------

_RECOUNT = ("SELECT r.var, j.key, j.type, j.atom, count(*) FROM refs AS r, json_each(r.vkeys) AS j WHERE j.type "
            "IN ('integer', 'real', 'text', 'true', 'false') GROUP BY r.var, j.key, j.type, j.atom ORDER BY 1, 2, 3, 4")


def _vkey_rows(root) -> tuple[list[tuple], list[tuple]]:
    """The fold's `vkey_values` rows and the same counted from its refs."""
    con = sqlite3.connect(root / ".scistack" / "fold.sqlite")
    try:
        return (con.execute("SELECT var, key, type, atom, n FROM vkey_values ORDER BY 1, 2, 3, 4").fetchall(),
                con.execute(_RECOUNT).fetchall())
    finally:
        con.close()


def _fold_before_vkey_values(root) -> str:
    """The closed project's fold set back to layout 18 (no `vkey_values`, nor its triggers),
    marked, so a test can tell it was migrated in place rather than rebuilt."""
    import uuid
    mark = uuid.uuid4().hex
    con = sqlite3.connect(root / ".scistack" / "fold.sqlite")
    try:
        con.executescript("DROP TRIGGER ref_vkeys_gone; DROP TABLE vkey_values; "
                          "UPDATE meta SET value = '18' WHERE key = 'fold_version';")
        con.execute("INSERT INTO meta VALUES ('test_mark', ?)", (mark,))
        con.commit()
    finally:
        con.close()
    return mark


def test_the_fold_keeps_each_variables_live_version_key_values_rebuilt_and_migrated(tmp_path, monkeypatch):
    """The check is a point lookup in the fold's `vkey_values` (how many of a variable's live
    refs hold each value of a version key), kept by SQLite as refs are folded and deleted,
    the same after a rebuild (`fsck --reindex`), and filled in place from the refs when a
    layout 18 fold is opened (a project saved before it keeps opening)."""
    monkeypatch.chdir(tmp_path)
    db = configure_database(tmp_path / "gait.duckdb", ["subject", "session"])
    KtA.save(1.0, subject=1, session=1, note=1)
    KtA.save(2.0, subject=1, session=1, note=1)  # a second version: two refs hold note=1
    KtA.save(1.0, subject=2, session=1, note="x", rep=2.5)
    KtA.save(1.0, subject=3, session=1, rep=True, gain=2.0**60, step=0.1)
    KtB.save(1.0, subject=1, session=1, note="1")  # another variable's column
    KtA.save(1.0, subject=4, session=1, note=1)
    KtA.delete(subject=4)  # counted down
    KtA.save(1.0, subject=5, session=1, note=7)
    KtA.delete(subject=5)  # gone with its last ref
    db.close()
    database_module._current = None
    rows, recount = _vkey_rows(tmp_path)
    assert rows == recount and ("KtA", "note", "integer", 1, 2) in rows and ("KtB", "note", "text", "1", 1) in rows
    assert ("KtA", "rep", "true", 1, 1) in rows and not any(r[3] == 7 for r in rows)

    db = configure_database(tmp_path / "gait.duckdb", ["subject", "session"])
    db.index.rebuild()
    db.close()
    database_module._current = None
    assert _vkey_rows(tmp_path) == (rows, recount)

    mark = _fold_before_vkey_values(tmp_path)
    db = configure_database(tmp_path / "gait.duckdb", ["subject", "session"])
    try:
        with pytest.raises(InvalidMetadataError, match=r"note='1' \(text\) looks like note=1 \(a number\)"):
            KtA.save(3.0, subject=9, session=1, note="1")
        with pytest.raises(InvalidMetadataError, match=r"rep='true' \(text\) looks like rep=True"):
            KtA.save(3.0, subject=9, session=1, rep="true")
        for look_alike in ("1152921504606846976", "1.152921504606847e+18"):
            with pytest.raises(InvalidMetadataError, match=r"looks like gain=1.152921504606847e\+18 \(a float\)"):
                KtA.save(3.0, subject=9, session=1, gain=look_alike)
        with pytest.raises(InvalidMetadataError, match=r"step='0.1' \(text\) looks like step=0.1 \(a float\)"):
            KtA.save(3.0, subject=9, session=1, step="0.1")
        KtA.save(3.0, subject=9, session=1, note=7)  # (its look-alike's records were all deleted)
        KtA.save(3.0, subject=9, session=1, note="01")  # reads differently
        assert KtA.load(subject=1, session=1, note=1).data == 2.0
    finally:
        db.close()
        database_module._current = None
    rows, recount = _vkey_rows(tmp_path)
    assert rows == recount and ("KtA", "note", "integer", 7, 1) in rows
    con = sqlite3.connect(tmp_path / ".scistack" / "fold.sqlite")
    try:  # migrated in place, not rebuilt
        assert con.execute("SELECT value FROM meta WHERE key = 'test_mark'").fetchone() == (mark,)
    finally:
        con.close()


def test_a_result_computed_in_memory_saved_under_a_version_key_look_alike_records_nothing(tmp_path, monkeypatch):
    """A lineage_fcn result brings its call and cache entry into the project when saved: a
    version-key look-alike is refused before they are journalled (`check_save`), as a schema
    key's is, and a for_each step's version keys likewise."""
    from scistack import EachOf, for_each, lineage_fcn
    from tests.helpers import journal_size

    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("SCISTACK_DB", raising=False)
    previous, database_module._current = database_module._current, None
    try:
        result = lineage_fcn(_halved)(5.0)  # (in memory)
        db = configure_database(tmp_path / "gait.duckdb", ["subject", "session"])
        try:
            KtA.save(1.0, subject=1, session=1, note=1)
            before = journal_size(db)
            with pytest.raises(InvalidMetadataError, match=r"note='1' \(text\) looks like note=1"):
                KtA.save(result, subject=2, session=1, note="1")
            assert journal_size(db) == before
            KtB.save(0.0, subject=1, session=1, gain=1)
            before = journal_size(db)
            with pytest.raises(InvalidMetadataError, match=r"gain='1' \(text\) looks like gain=1"):
                # (EachOf tags each alternative's results with its label, as text: gain="1")
                for_each(_scaled, inputs={"x": KtA, "gain": EachOf(1, 2)}, outputs=[KtB], subject=[1],
                         session=[1], progress=False)
            assert journal_size(db) == before
            KtA.save(result, subject=2, session=1, note=1)
            assert db.get_provenance(KtA, subject=2, session=1, note=1)["function_name"] == "_halved"
        finally:
            db.close()
    finally:
        database_module._current = previous


def _halved(x):
    return x / 2


def _scaled(x, gain):
    return x * gain
