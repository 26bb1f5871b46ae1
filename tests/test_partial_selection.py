"""Selections that name part of an address (`load(subject=1)`, `load_all(subject=[1, 2])`,
`where="subject < 3"`, `join(..., where=...)`) read only the records of the addresses they
match, chosen from the variable's live addresses. Held to the reference: every current
record, filtered in Python, over random histories (versions, version keys, partial
deletions, text and numbers in one key, saves held in a batch); the join with a variable
saved per subject."""

from __future__ import annotations

import itertools

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import scistack
from scistack import BaseVariable
from scistack.address import typed
from scistack.errors import InvalidMetadataError, QueryError, VariableNotFoundError


class PartSignal(BaseVariable):
    pass


class PartCoarse(BaseVariable):
    pass


SUBJECTS = st.sampled_from([1, 2, 3, "3", 4, True, 2.0])  # 2.0 meets 2; True and "3" meet no number
SESSIONS = st.sampled_from(["a", "b"])
SAVE = st.tuples(st.just("save"), SUBJECTS, SESSIONS, st.sampled_from([None, "x"]))  # (a coarser one: below)
DELETE = st.tuples(st.just("delete"), SUBJECTS, st.one_of(st.none(), SESSIONS), st.none())
OPS = st.lists(st.one_of(SAVE, SAVE, DELETE), min_size=1, max_size=14)

# (SQL, the same in Python on an address); as text, since a history may mix "3" and 3
WHERES = [
    ("CAST(subject AS VARCHAR) = '1'", lambda a: str(a.get("subject")) == "1"),
    ("CAST(subject AS VARCHAR) IN ('1', '2') AND session = 'a'",
     lambda a: str(a.get("subject")) in ("1", "2") and a.get("session") == "a"),
    ("session = 'b' OR CAST(subject AS VARCHAR) = '3'",
     lambda a: a.get("session") == "b" or str(a.get("subject")) == "3"),
    (("CAST(subject AS VARCHAR) = ?", ["4"]), lambda a: str(a.get("subject")) == "4"),
]


SAVED = itertools.count()  # each save a value of its own: a wrong version shows as a wrong value


def _apply(ops) -> None:
    for op, subject, session, note in ops:
        addr = {"subject": subject} if session is None else {"subject": subject, "session": session}
        if op == "save":
            try:
                PartSignal.save(float(next(SAVED)), **addr, **({"note": note} if note else {}))
            except InvalidMetadataError as exc:  # 3 beside a live "3" (tests/test_key_types.py)
                if "looks like" not in str(exc):
                    raise
        else:
            try:
                PartSignal.delete(**addr)
            except VariableNotFoundError:
                pass


def _current() -> list:
    try:
        return PartSignal.load_all()
    except VariableNotFoundError:
        return []


def _keys(values) -> list:
    """Addresses and values (a save held in a batch has its version number only at the flush)."""
    return sorted((repr(sorted(v.metadata.items())), v.data) for v in values)


def _selected(**metadata) -> list:
    try:
        return PartSignal.load_all(**metadata)
    except VariableNotFoundError:
        return []


def _check(where_index: int) -> None:
    every = _current()
    for subject in (1, 2, 3, "3", True, 2.0, [1, 2], [2, "3"], [True, 4]):
        wanted = subject if isinstance(subject, list) else [subject]
        expected = [v for v in every if any(typed(w) == typed(v.metadata.get("subject")) for w in wanted)]
        assert _keys(_selected(subject=subject)) == _keys(expected), subject
    assert _keys(_selected(subject=1, session="a")) == _keys(
        [v for v in every if typed(v.metadata.get("subject")) == typed(1) and v.metadata.get("session") == "a"])
    sql, holds = WHERES[where_index]
    named = {"subject"} | ({"session"} if "session" in str(sql) else set())
    if every and not all(any(k in v.metadata for v in every) for k in named):  # as the views lack it
        with pytest.raises(QueryError, match="is not a column here"):
            PartSignal.load_all(where=sql)
        return
    expected = [v for v in every if holds(v.metadata)]
    assert _keys(_selected(where=sql)) == _keys(expected), sql


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(ops=OPS, held=OPS, where_index=st.integers(0, len(WHERES) - 1))
def test_partial_selections_match_every_record_filtered(project, ops, held, where_index):
    try:
        PartSignal.delete(all=True)
    except VariableNotFoundError:
        pass
    _apply(ops)
    _check(where_index)
    with project.batch():  # held saves: the overlay's addresses count too
        _apply([op for op in held if op[0] == "save"])
        _check(where_index)
    _check(where_index)


def test_join_selects_before_joining_with_the_same_rows(project, monkeypatch):
    """A join's `where=` and keys on schema keys both variables have are applied by each
    variable first (its values read only there), part by part (top-level ANDs); a part on
    another column, after the join."""
    for subject in (1, 2, 3):
        PartCoarse.save(subject * 10.0, subject=subject)
        for session in ("a", "b"):
            PartSignal.save(subject + (0.5 if session == "b" else 0.0), subject=subject, session=session)
    read: list[int] = []
    load_all = BaseVariable.load_all.__func__

    def counting(cls, **kwargs):
        frame = load_all(cls, **kwargs)
        read.append(len(frame))
        return frame

    monkeypatch.setattr(BaseVariable, "load_all", classmethod(counting))
    joined = scistack.join(PartSignal, PartCoarse, where="subject < 3")
    assert joined[["subject", "session", "PartSignal", "PartCoarse"]].values.tolist() == [
        [1, "a", 1.0, 10.0], [1, "b", 1.5, 10.0], [2, "a", 2.0, 20.0], [2, "b", 2.5, 20.0]]
    assert read == [4, 2]  # only subjects 1 and 2 were read
    read.clear()
    joined = scistack.join(PartSignal, PartCoarse, where="session = 'b'")
    assert joined[["subject", "PartSignal"]].values.tolist() == [[1, 1.5], [2, 2.5], [3, 3.5]]
    assert read == [3, 3]  # the signal's sessions b; the coarse one has no session: all of it
    read.clear()
    joined = scistack.join(PartSignal, PartCoarse, where="session = 'b' AND PartCoarse > 15")
    assert joined[["subject", "PartSignal"]].values.tolist() == [[2, 2.5], [3, 3.5]]
    assert read == [3, 3]  # the part naming a value is checked on the joined rows, the other selects
    read.clear()
    assert len(scistack.join(PartSignal, PartCoarse, subject=[1, 3])) == 4 and read == [4, 2]
    with pytest.raises(scistack.QueryError, match="nothing"):
        scistack.join(PartSignal, PartCoarse, where="nothing > 1")


VALUES = [1, 2, True, False, 0, "x", "1e3", "é", 0.1, 0.30000000000000004, -5, 1.5, 2 ** 60, 2 ** 60 + 1,
          2.0 ** 60, 2 ** 63 - 1, 2 ** 53 + 1]


def _saved_each(values) -> None:
    for n, subject in enumerate(values):
        for session in ("a", "b"):
            try:
                PartSignal.save(float(n), subject=subject, session=session)
            except InvalidMetadataError as exc:  # (a look-alike of one saved: tests/test_key_types.py)
                if "looks like" not in str(exc):
                    raise


def _check_each(values) -> None:
    every = _current()
    for subject in [*values, [1, "x"], [True, 2], [0.1, 2 ** 60]]:
        wanted = subject if isinstance(subject, list) else [subject]
        expected = [v for v in every if any(typed(w) == typed(v.metadata.get("subject")) for w in wanted)]
        assert _keys(_selected(subject=subject)) == _keys(expected), subject
        assert _keys(_selected(subject=subject, where="session = 'b'")) == _keys(
            [v for v in expected if v.metadata["session"] == "b"]), subject
        assert _keys(_selected(session="a", subject=subject)) == _keys(
            [v for v in expected if v.metadata["session"] == "a"]), subject
    assert _keys(_selected(session="a")) == _keys([v for v in every if v.metadata["session"] == "a"])


def test_a_partial_address_is_found_through_the_folds_index_of_key_values(project, tmp_path, python_env):
    """`load_all(subject=1)` finds its addresses through an index of the fold's live addresses
    by a key's value (made at the first such selection; it had decoded every live address of
    the variable at each call): the same records as every one filtered in Python, for values
    of each type SQLite reads from the address texts (True beside 1, 0.1, 2**60 as an int and
    a float, 2**63 - 1, text beyond ASCII), after deletes and saves again, in a
    batch, with the fold made anew, with its index kept by another process's saves, and when
    another process holds the fold's lock so that no index can be made (every address read)."""
    import sqlite3
    import subprocess
    import sys

    _saved_each(VALUES)
    _check_each(VALUES)
    PartSignal.delete(subject=2, session="a")
    PartSignal.delete(subject=0.1)
    PartSignal.save(7.0, subject=0.1, session="b")  # (its slot live again)
    _check_each(VALUES)
    with project.batch():
        PartSignal.delete(subject=1, session="b")
        PartSignal.save(8.0, subject=3, session="a")
        PartSignal.save(9.0, subject=1, session="c")
        _check_each([*VALUES, 3])
    _check_each([*VALUES, 3])
    script = ("import sys\nfrom scistack import configure_database, BaseVariable\n"
              "db = configure_database(sys.argv[1], ['subject', 'session'])\n"
              "class PartSignal(BaseVariable): pass\n"
              "PartSignal.save(10.0, subject=4, session='a'); PartSignal.save(11.0, subject=1, session='d')\n"
              "PartSignal.delete(subject=3, session='a')\ndb.close()\n")
    done = subprocess.run([sys.executable, "-c", script, str(tmp_path / "gait.duckdb")], env=python_env,
                          capture_output=True, text=True, timeout=300, check=False)
    assert done.returncode == 0, done.stderr
    _check_each([*VALUES, 3, 4])  # (its saves and delete folded into our index by that process)
    project.reindex()  # the fold made anew, without the index
    fold = sqlite3.connect(tmp_path / ".scistack" / "fold.sqlite", isolation_level=None)

    def indexes() -> int:
        return fold.execute("SELECT count(*) FROM sqlite_master WHERE name LIKE 'slots_by_%'").fetchall()[0][0]

    try:
        fold.execute("BEGIN IMMEDIATE")  # another process's lock: no index can be made now
        _check_each([*VALUES, 3, 4])
        fold.execute("COMMIT")
        assert indexes() == 0  # (every address was read)
        _check_each([*VALUES, 3, 4])
        PartSignal.save(12.0, subject=5, session="a")  # (tried again once the journal has grown)
        _check_each([*VALUES, 3, 4, 5])
        assert indexes() > 0
    finally:
        fold.close()
