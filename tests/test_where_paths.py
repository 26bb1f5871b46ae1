"""Which records and values a `where=` reads: the parts of a condition over schema keys select
addresses first, so that only their values are read, and a value column's type comes from
the values at hand when they are all the variable's (no DuckDB), else from DuckDB or, when
another process holds its file, from the values, once until the journal grows."""

from __future__ import annotations

import re
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager

import pytest

from scistack import BaseVariable, QueryError


class Level(BaseVariable):
    pass


class Tag(BaseVariable):
    pass


def _subjects(rows) -> list:
    return sorted(r.metadata["subject"] for r in rows)


def test_the_key_parts_of_a_where_on_a_value_select_the_values_read(project):
    """`where="subject IN (5, 7) AND value > 5"` read every value of the variable (its `value`
    kept the whole condition from the addresses): its parts over schema keys now choose the
    addresses first. The objects of every record but subjects 5 and 7 are deleted (a damaged
    store): only theirs are read, and the answers are the view's."""
    for n in range(1, 41):
        Level.save(n, subject=n, session="pre")
    project.sync()
    for record in project.index.records("Level"):
        if record.addr["subject"] not in (5, 7):
            project.store.path_of(record.oid).unlink()
    for where, subjects in [("subject IN (5, 7) AND value > 5", [7]),
                            ("value > 5 AND subject BETWEEN 5 AND 7 AND subject <> 6", [7]),
                            (("(subject = ? OR subject = ?) AND value < ?", [5, 7, 6]), [5]),
                            (("value >= ? AND subject IN (?, ?) AND session = 'pre'", [5, 5, 7]), [5, 7])]:
        assert _subjects(Level.load_all(where=where)) == subjects, where
        if isinstance(where, str):
            assert sorted(project.sql(f"SELECT subject FROM Level WHERE {where}")["subject"]) == subjects


def test_a_where_over_keys_alone_keeps_the_newest_version_of_each_address_chosen(project):
    """A condition over schema keys alone is judged once, on the addresses: their records are
    not judged again, and load_all still gives the newest version of each, version= that
    version, list_versions every one; a coarser record (no session) is NULL there."""
    for n in range(1, 21):
        Level.save(n, subject=n, session="pre")
        Level.save(n * 10, subject=n, session="pre")
    Level.save(-1, subject=3)  # saved without a session
    chosen = Level.load_all(where="subject <= 3 AND session IS NOT NULL")
    assert sorted((r.metadata["subject"], r.data) for r in chosen) == [(1, 10), (2, 20), (3, 30)]
    assert [r.data for r in Level.load_all(where="session IS NULL")] == [-1]
    assert [r.data for r in Level.load(version=1, where="subject = 2 AND session = 'pre'")] == [2]
    assert sorted(r.data for r in Level.load_all(where="subject IN (2, 4) OR subject > 100")) == [20, 40]
    assert Level.load_all(where=("subject > ?", [100])) == []
    for where in [("subject > ?", [19, 2]), ("subject > ? AND session = ?", [19])]:
        with pytest.raises(QueryError, match=r"placeholder\(s\) but"):
            Level.load_all(where=where)
    view = project.sql("SELECT subject, value FROM Level WHERE subject <= 3 AND session IS NOT NULL ORDER BY subject")
    assert view["value"].tolist() == [10, 20, 30]


def test_a_where_on_values_while_another_process_holds_the_file_types_them_as_the_view(project):
    """With DuckDB's file held for writing elsewhere (a DuckDB CLI), a where= on every value
    types the column from them (no DuckDB asked: it had waited 2 s on each where=), and one
    on values chosen by key from every value of the variable, read once until the journal
    grows: a text saved since the last sync makes the column text either way."""
    for n, v in enumerate([1, 2, 10, 20], start=1):
        Tag.save(v, subject=n, session="pre")
    project.sync()
    holder = subprocess.Popen([sys.executable, "-c", "import duckdb, sys; c = duckdb.connect(sys.argv[1]); "
                               "print('held', flush=True); sys.stdin.read()", str(project.path)],
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        assert _subjects(Tag.load_all(where="value < '3'")) == [1, 2]  # numbers: 1, 2
        Tag.save("x", subject=5, session="pre")  # journalled; DuckDB cannot be written
        for _ in range(2):  # (text: '1', '10', '2', '20' sort before '3')
            assert _subjects(Tag.load_all(where="value < '3'")) == [1, 2, 3, 4]
            assert _subjects(Tag.load_all(subject=[3, 4, 5], where="value < '3'")) == [3, 4]
    finally:
        holder.stdin.close()
        holder.wait(timeout=60)
        holder.stdout.close()
    assert sorted(project.sql("SELECT subject FROM Tag WHERE value < '3'")["subject"]) == [1, 2, 3, 4]


def test_an_or_beside_an_and_at_the_top_level_is_not_cut_at_the_and(project):
    """AND binds tighter than OR: `subject = 1 AND value > 0 OR subject = 3` is `(subject = 1
    AND value > 0) OR subject = 3`. It had been cut at its AND into `subject = 1` and
    `value > 0 OR subject = 3`, and the addresses chosen by the first part dropped subject 3:
    load_all answered [1] where the view answers [1, 3] (and join the same)."""
    for n in range(1, 7):
        Level.save(n, subject=n, session="pre")
    for where in ("subject = 1 AND value > 0 OR subject = 3", "subject = 1 AND subject = 1 OR subject = 3",
                  "value > 0 AND subject = 1 OR subject = 3 AND value > 0"):
        view = sorted(project.sql(f"SELECT subject FROM Level WHERE {where}")["subject"])
        assert view == [1, 3]
        assert _subjects(Level.load_all(where=where)) == view, where


@pytest.mark.parametrize("comment", ["value > 0 /* AND subject = 1 */", "value > 0 -- AND subject = 1"])
def test_a_comment_in_a_where_is_refused_as_its_message_says(project, comment):
    """`--` and `/* */` passed the tokenizer as the operators `-`, `/` and `*`, though the
    message says no comments: a cut at an AND inside one made a condition that failed."""
    Level.save(1, subject=1, session="pre")
    with pytest.raises(QueryError, match=r"is not allowed here.*no ';', comments"):
        Level.load_all(where=comment)


class Spot(BaseVariable):
    pass


@contextmanager
def _addresses_decoded() -> Iterator[list[int]]:
    """How many address texts `state.decode_keys` decoded (every call, whoever made it),
    counted by a profile hook on its real calls."""
    from scistack.index import state

    counts: list[int] = []
    code = state.decode_keys.__code__

    def hook(frame, event, _arg):
        if event == "call" and frame.f_code is code:
            counts.append(len(frame.f_locals["keys"]))

    sys.setprofile(hook)
    try:
        yield counts
    finally:
        sys.setprofile(None)


def test_a_where_naming_key_values_alone_decodes_only_their_addresses(project):
    """`load_all(where="subject = 7")`, with no keyword argument, decoded every live address
    of the variable to judge the condition on them (`load_all(subject=7, where=...)` looked
    its addresses up by value, 856f8ca): the parts of a condition that name key values
    (`subject = 7`, `subject IN (...)`, `subject = ?`) now look their addresses up the same
    way. The records are the view's."""
    for n in range(1, 61):
        for session in ("pre", "post"):
            Level.save(n, subject=n, session=session)
    Level.load_all(subject=1)  # (the fold's index by subject made: its one pass is no where='s)
    for where, expected in [("subject = 7", [7, 7]), ("7 = subject", [7, 7]),
                            ("subject IN (3, 5) AND session = 'pre'", [3, 5]),
                            (("subject = ? AND session <> ?", [9, "pre"]), [9]),
                            ("session = 'post' AND subject IN (4, 400)", [4])]:
        with _addresses_decoded() as decoded:
            chosen = Level.load_all(where=where)
        assert _subjects(chosen) == expected, where
        assert sum(decoded) <= 4, (where, decoded)  # (of 120)
        sql, params = where if isinstance(where, tuple) else (where, [])
        assert sorted(project.sql(f"SELECT subject FROM Level WHERE {sql}", params)["subject"]) == expected


def test_a_key_of_several_kinds_is_text_in_where_over_some_addresses_as_in_the_view(project):
    """A key whose values are numbers at some addresses and text at others is a text column
    in the view. Over the addresses of one subject, whose sessions are all numbers, where=
    had typed the column by those alone: `session = 'pre'` failed to cast 'pre' to a
    number where the view answers (none of subject 1's), and `session > '10'` compared
    numbers where the view compares text. And `subject = 1`, a number beside text
    subjects, is no lookup by value: it fails as in the view."""
    for n in range(1, 4):
        Spot.save(n, subject=1, session=n * 5)  # sessions 5, 10, 15
        Spot.save(n, subject=2, session="pre")
    Spot.save(9, subject=3, session="pre")
    for where, expected in [("session = 'pre'", []), ("session = '10'", [1]), ("session > '10'", [1, 1])]:
        view = sorted(project.sql(f"SELECT subject FROM Spot WHERE subject = 1 AND {where}")["subject"])
        assert view == expected, where
        assert _subjects(Spot.load_all(subject=1, where=where)) == expected, where
        assert _subjects(Spot.load_all(where=f"subject = 1 AND {where}")) == expected, where
    Spot.save(0, subject="x", session="pre")
    with pytest.raises(QueryError, match="Conversion Error"):
        project.sql("SELECT subject FROM Spot WHERE subject = 1")
    with pytest.raises(QueryError, match="Conversion Error"):
        Spot.load_all(where="subject = 1")


def test_a_where_error_quotes_the_condition_as_written(project):
    """An error quoted the condition as where= had rewritten it: its parts over schema keys
    joined again, each in parentheses ("(subject = 1) AND (session = 2) AND ..."), or, in a
    join, the parts left for the joined rows; and it named a failure of the key parts where
    another part was the mistake. Now it quotes the user's own text and names the mistake,
    with the column meant (`valu`: 'value')."""
    for n in range(1, 9):
        Spot.save(n, subject=n, session="pre")
        Level.save(n, subject=n, session="pre")
    Spot.save(0, subject="x", session=3)
    for where, says in [("subject = 1 AND session = 2 AND subject < 'a'", "failed: Conversion Error"),
                        ("subject IN (1, 2) AND session = 3", "failed: Conversion Error"),
                        ("subject = 1 AND valu > 1", "'valu' is not a column here; did you mean 'value'?"),
                        ("valu > 1", "'valu' is not a column here; did you mean 'value'?")]:
        with pytest.raises(QueryError) as raised:
            Spot.load_all(where=where)
        assert str(raised.value).startswith(f"where={where!r}") and says in str(raised.value), str(raised.value)
    import scistack

    for where, says in [("Level > 1 AND Spot > Level AND Levl < 3", "'Levl' is not a column here; did you mean 'Level'?"),
                        (("Level > ? AND Spot / ? > 1", [1, "a"]), "failed: ")]:
        with pytest.raises(QueryError) as raised:
            scistack.join(Level, Spot, where=where)
        written = where[0] if isinstance(where, tuple) else where
        assert str(raised.value).startswith(f"where={written!r}") and says in str(raised.value), str(raised.value)


def test_a_join_refuses_a_where_with_more_or_fewer_values_than_placeholders(project):
    """A join cut its where= into parts, each taking its ? values in turn: a value beyond the
    last placeholder was dropped in silence (the join answered as if it were not given), and
    one too few was counted against the part left for the joined rows alone. Both are
    refused, counting the whole condition, as load_all refuses them."""
    import scistack

    for n in range(1, 5):
        Level.save(n, subject=n, session="pre")
        Spot.save(n, subject=n, session="pre")
    for where, counts in [(("subject = ?", [1, 2]), "has 1 ? placeholder(s) but 2 value(s)"),
                          (("subject = ? AND Level > ?", [1]), "has 2 ? placeholder(s) but 1 value(s)"),
                          (("Level > ? AND Spot > ?", [1, 2, 3]), "has 2 ? placeholder(s) but 3 value(s)")]:
        with pytest.raises(QueryError, match=re.escape(f"where={where[0]!r} {counts}")):
            scistack.join(Level, Spot, where=where)
    with pytest.raises(QueryError, match=re.escape("has 1 ? placeholder(s) but 2 value(s)")):
        Level.load_all(where=("subject = ?", [1, 2]))
    assert len(scistack.join(Level, Spot, where=("subject = ? AND Level > ?", [1, 0]))) == 1
