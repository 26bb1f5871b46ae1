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
