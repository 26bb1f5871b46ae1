"""A key a record lacks, a None value and a NaN value: as the SQL views have them, so do
`load_all(as_df=True)` and `where=` (README, "Missing, None and NaN")."""

from __future__ import annotations

import math

import pandas as pd

from scistack import BaseVariable


class NnMixed(BaseVariable):
    pass


class NnDoubles(BaseVariable):
    pass


def test_a_missing_key_keeps_an_integer_column_integer_as_db_sql_does(project):
    # session missing (a subject-level record): the frame made session float64 (1 -> 1.0,
    # missing NaN) where the view has BIGINT and NULL, and db.sql gives Int64 and <NA>
    NnMixed.save("a", subject=1, session=1, note="x")
    NnMixed.save(None, subject=2)
    NnDoubles.save(1.5, subject=1, session=1)  # (doubles only: the frame read from one query)
    NnDoubles.save(2.5, subject=2)
    project.sync()
    for var in (NnMixed, NnDoubles):
        frame = var.load_all(as_df=True)
        shown = project.sql(f"SELECT subject, session FROM {var.__name__} ORDER BY subject")
        assert str(frame["session"].dtype) == str(shown["session"].dtype) == "Int64", var
        assert frame["session"].tolist()[0] == 1 and frame["session"].isna().tolist() == [False, True]
        assert type(frame["session"].tolist()[0]) is int
    frame = NnMixed.load_all(as_df=True)
    assert frame["note"].isna().tolist() == [False, True]
    assert frame["data"].tolist() == ["a", None]  # a None value: None (NULL in the view)


def test_nan_is_not_null_and_compares_above_every_number_in_where_as_in_the_views(project):
    NnDoubles.save(float("nan"), subject=1, session=1)
    NnDoubles.save(2.0, subject=2, session=1)
    NnDoubles.save(0.5, subject=3, session=1)
    NnMixed.save(None, subject=4, session=1)
    project.sync()
    for where in ("value > 1", "value < 1", "NOT value > 1", "value IS NULL", "value IS NOT NULL"):
        loaded = sorted(r.metadata["subject"] for r in NnDoubles.load_all(where=where))
        queried = sorted(project.sql(f"SELECT subject FROM NnDoubles WHERE {where}")["subject"])
        assert loaded == queried, (where, loaded, queried)
    # (the Arrow scan's pushed-down filter had dropped the NaN from `value > 1`)
    assert sorted(r.metadata["subject"] for r in NnDoubles.load_all(where="value > 1")) == [1, 2]
    assert [r.metadata["subject"] for r in NnMixed.load_all(where="value IS NULL")] == [4]
    frame = NnDoubles.load_all(as_df=True)
    assert math.isnan(frame["data"][0]) and not pd.isna(frame["data"][1])
