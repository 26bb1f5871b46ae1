"""where= on a variable whose values are dicts (or lists beside other values): its `value`
column is JSON in the views, and where= compares it as the view does, by DuckDB's JSON
spellings (`value->>'label' = 'a'`, `value.sub.k = 5`, `json_extract_string(...)`); a text
compared with a field taken as JSON (`value.label = 'a'`) is refused in both, naming
`value->>'label' = 'a'`."""

from __future__ import annotations

import re

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from scistack import BaseVariable, QueryError


class Labelled(BaseVariable):
    pass


class Mixed(BaseVariable):
    pass


class ArrayTrace(BaseVariable):
    pass


def _subjects(rows) -> list:
    return sorted(r.metadata["subject"] for r in rows)


def _view(project, var: str, where: str) -> list:
    return sorted(project.sql(f'SELECT subject FROM "{var}" WHERE {where}')["subject"].tolist())


_DICTS = [{"label": "a", "n": 1}, {"label": "b", "n": 2.5}, {"label": "a", "n": 3, "sub": {"k": 5}},
          {"n": None, "tags": ["x", "y"]}, None]


def test_a_dict_value_is_selected_by_its_fields_in_where_as_in_the_view(project):
    """where= on a variable of dicts refused any condition on value ("value is a condition on
    scalar values, but Labelled holds a dict"), while the view, JSON, answers
    `value->>'label' = 'a'`. Now where= lays the values out as the view does and answers alike,
    on every record and on records chosen by key."""
    for n, v in enumerate(_DICTS, start=1):
        Labelled.save(v, subject=n, session="pre")
    for where, subjects in {"value->>'label' = 'a'": [1, 3],
                            "(value->>'$.label') = 'b'": [2],
                            "json_extract_string(value, '$.label') = 'a'": [1, 3],
                            "TRY_CAST(value->>'n' AS DOUBLE) > 2": [2, 3],
                            "value.sub.k = 5": [3],
                            "value->'sub'->>'k' = '5'": [3],
                            "value->'tags'->>0 = 'x'": [4],
                            "json_array_length(value->'tags') = 2": [4],
                            "value->>'n' IS NULL AND value IS NOT NULL": [4],
                            "value IS NULL": [5]}.items():
        assert _view(project, "Labelled", where) == subjects, where
        assert _subjects(Labelled.load_all(where=where)) == subjects, where
        chosen = [s for s in subjects if s != 1]
        assert _subjects(Labelled.load_all(subject=[2, 3, 4, 5], where=where)) == chosen, where
    assert _subjects(Labelled.load_all(where=("value->>'label' = ?", ["b"]))) == [2]
    assert len(Labelled.load_all(as_df=True, where="value->>'label' = 'a'")) == 2


def test_a_field_compared_with_text_as_json_is_refused_in_both_naming_the_text_spelling(project):
    """`value.label` is DuckDB's JSON field: compared with 'a' the 'a' is cast to JSON and
    fails. where= had refused the dict itself; now it fails as the view does, and both name
    `value->>'label' = 'a'`."""
    for n, v in enumerate(_DICTS, start=1):
        Labelled.save(v, subject=n, session="pre")
    with pytest.raises(QueryError, match=r"value->>'label' = 'a' \(value\.label is JSON"):
        Labelled.load_all(where="value.label = 'a'")
    with pytest.raises(QueryError, match=r"value->>'label' = 'a' \(value\.label is JSON"):
        project.sql("SELECT subject FROM Labelled WHERE value.label = 'a'")
    assert _subjects(Labelled.load_all(where="value.label = '\"a\"'")) == [1, 3]  # JSON's text, as the view
    assert _view(project, "Labelled", "value.label = '\"a\"'") == [1, 3]


def test_a_dot_in_where_takes_a_field_and_calls_nothing(project):
    """A '.' reaches a JSON field: DuckDB also reads `value.lower()` as lower(value), which
    would call any function past the allowed ones, so a call after a '.' is refused, as is a
    '.' with nothing before or after it."""
    Labelled.save({"label": "a"}, subject=1, session="pre")
    for where in ["value.label.lower() = 'a'", "value.read_text() IS NULL", ".label = 1", "value. = 1",
                  "value.* IS NULL"]:
        with pytest.raises(QueryError, match="not allowed here"):
            Labelled.load_all(where=where)
    with pytest.raises(QueryError, match="'label' is not a column"):  # (a field is not a column)
        Labelled.load_all(where="label = 'a'")


def test_a_variable_of_dicts_lists_and_single_values_is_json_in_where_as_in_the_view(project):
    """A dict, a mixed list, a list of numbers, an array and single values: the view's JSON
    (each value's inline row: a list of numbers `[1,2]`, an array's numbers) is where='s,
    on every record and on those chosen by key (typed from the whole variable)."""
    values = [{"label": "a"}, [1, "x"], [1, 2], np.arange(3.0), "a", 2, 2.5, True, None]
    for n, v in enumerate(values, start=1):
        Mixed.save(v, subject=n, session="pre")
    for where in ["value->>'label' = 'a'", "(value->>'$') = 'a'", "TRY_CAST(value AS DOUBLE) > 1",
                  "value->>1 = 'x'", "json_array_length(value) = 3", "json_type(value) = 'ARRAY'",
                  "value = '[1,2]'", "value->>0 = '0.0'", "value IS NULL", "json_type(value) = 'BOOLEAN'"]:
        view = _view(project, "Mixed", where)
        assert _subjects(Mixed.load_all(where=where)) == view, where
        assert _subjects(Mixed.load_all(subject=[1, 2, 3, 4, 5], where=where)) == [s for s in view if s <= 5], where


def test_where_on_a_variable_of_arrays_is_refused_naming_what_selects(project):
    """A variable of arrays (a LIST column in the view) still refuses a condition on value."""
    ArrayTrace.save(np.arange(3.0), subject=1, session="pre")
    with pytest.raises(QueryError, match="holds a ndarray; select by its keys"):
        ArrayTrace.load_all(where="value IS NULL")


_leaf = st.one_of(st.none(), st.booleans(), st.integers(-3, 3), st.sampled_from([0.5, 2.5]),
                  st.sampled_from(["a", "b", "1", ""]))
_json_value = st.one_of(_leaf, st.dictionaries(st.sampled_from(["label", "n"]), _leaf, max_size=2),
                        st.lists(_leaf, min_size=1, max_size=3))
_conditions = ["value->>'label' = 'a'", "value->>'n' = '1'", "TRY_CAST(value->>'n' AS DOUBLE) > 0",
               "value.n = 1", "value.label = '\"a\"'", "(value->>'$') = 'a'", "TRY_CAST(value AS DOUBLE) >= 1",
               "value->>0 = 'a'", "json_type(value) = 'OBJECT'", "value IS NULL", "value.label = 'a'"]
_examples = iter(range(10**6))


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(values=st.lists(_json_value, min_size=1, max_size=6).filter(
           lambda vs: any(isinstance(v, dict) for v in vs)),  # (a dict makes the column JSON)
       where=st.sampled_from(_conditions), chosen=st.sets(st.integers(1, 6), min_size=1))
def test_where_on_a_json_value_column_selects_what_the_view_selects(project, values, where, chosen):
    """For any mix of dicts with lists and single values, a JSON condition selects the same records
    in the view (real SQL on the project's file) as in load_all(where=...), or both refuse."""
    var = type(f"Json{next(_examples)}", (BaseVariable,), {})
    for n, v in enumerate(values, start=1):
        var.save(v, subject=n, session="pre")
    project.sync()

    def answer(rows):
        try:
            return sorted(rows())
        except QueryError:
            return "error"

    view = answer(lambda: _view(project, var.__name__, where))
    assert answer(lambda: _subjects(var.load_all(where=where))) == view, (values, where)
    picked = sorted(n for n in chosen if n <= len(values))
    if not picked:
        return
    view = answer(lambda: _view(project, var.__name__, f"subject IN ({', '.join(map(str, picked))}) AND ({where})"))
    selected = answer(lambda: _subjects(var.load_all(subject=picked, where=where)))
    if "error" not in (view, selected):  # (a refusal may depend on which rows DuckDB casts first)
        assert selected == view, (values, where, picked)


class Pace(BaseVariable):
    pass


def test_join_where_takes_a_dict_values_fields_as_the_view_does(project):
    """join's where= left a value column of dicts out of its columns (no scalars), so
    `"Labelled"->>'label' = 'a'` was "'Labelled' is not a column here" where the view of
    Labelled answers `value->>'label' = 'a'`; the column is JSON there, as in the view."""
    import scistack

    for n, v in enumerate(_DICTS, start=1):
        Labelled.save(v, subject=n, session="pre")
        Pace.save(float(n), subject=n, session="pre")
    for where in ["value->>'label' = 'a'", "TRY_CAST(value->>'n' AS DOUBLE) > 2", "value.sub.k = 5",
                  "value IS NULL", "value->>'label' = 'a' AND subject > 1"]:
        joined = scistack.join(Pace, Labelled, where=where.replace("value", '"Labelled"'))
        assert sorted(joined["subject"].tolist()) == _view(project, "Labelled", where), where
        paced = scistack.join(Pace, Labelled, where=f"({where.replace('value', 'Labelled')}) AND Pace < 3")
        assert sorted(paced["subject"].tolist()) == [s for s in _view(project, "Labelled", where) if s < 3], where


@pytest.mark.parametrize("var, where", [
    ("Pace", "value::INTEGER = 3"), ("Pace", "value::VARCHAR LIKE '1%'"), ("Pace", "CAST(value AS INT) > 2"),
    ("Pace", "subject::VARCHAR = '2'"), ("Pace", "CAST(subject AS TEXT) IN ('3', '4') AND value::INT > 3"),
    ("Pace", "subject::DECIMAL(4, 1) = 2.0"),
    ("Labelled", "value['label'] = '\"a\"'"), ("Labelled", "value['label']::VARCHAR = '\"a\"'"),
    ("Labelled", "(value->>'n')::DOUBLE > 2"), ("Labelled", "value['tags'][1] = '\"y\"'"),
    ("Labelled", "value['sub']['k']::INTEGER = 5 OR value::VARCHAR LIKE '%zz%'"),
    ("Labelled", "subject::VARCHAR = '3' AND value['n']::DOUBLE = 3")])
def test_casts_and_brackets_in_where_select_what_the_view_selects(project, var, where):
    """`value::INTEGER`, `CAST(value AS INT)` and a JSON value's `value['label']` were refused
    by where= ("'::INTEGER' is not allowed here", "'INT' is not a column here") where the view
    answers them; now they are allowed (the name after :: or AS is a type, no column), and
    where= answers as the view does, in load_all and in a join."""
    import scistack

    for n, v in enumerate([*_DICTS, "zz", 7], start=1):
        Labelled.save(v, subject=n, session="pre")
        Pace.save(float(n), subject=n, session="pre")
    view = _view(project, var, where)
    assert view, where  # (each selects something)
    chosen = {"Pace": Pace, "Labelled": Labelled}[var].load_all(where=where)
    assert _subjects(chosen) == view, where
    joined = scistack.join(Pace, Labelled, where=where.replace("value", f'"{var}"'))
    assert sorted(joined["subject"].tolist()) == view, where


def test_brackets_in_where_must_close_what_they_open(project):
    """A `)` closing a `[`, or a `]` nothing, is refused by name, as a `)` closing nothing is."""
    Pace.save(1.0, subject=1, session="pre")
    for where, says in [("value[1) = 1", "a ')' closes a '['"), ("value] = 1", "a ']' closes nothing"),
                        ("value[1 = 1", "a '[' is not closed")]:
        with pytest.raises(QueryError, match=re.escape(says)):
            Pace.load_all(where=where)
