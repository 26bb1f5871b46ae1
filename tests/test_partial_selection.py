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
