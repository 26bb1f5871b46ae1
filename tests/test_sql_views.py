"""Issue 17: the data is one SQL query away. A plain DuckDB session (the duckdb module opening
the project's file read-only, as the DuckDB CLI or DBeaver would, no scistack involved)
answers questions in plain SQL, and the Python API (`load_all(where=...)`, `join`) gives the
same answers."""

from __future__ import annotations

import json
import uuid

import duckdb
import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

import scistack
from scistack import BaseVariable, QueryError, for_each, selection
from scistack.index import views
from scistack.inline import INLINE_LIMIT


class EmgRaw(BaseVariable):
    pass


class EmgFiltered(BaseVariable):
    pass


class PeakActivation(BaseVariable):
    pass


class StrideLength(BaseVariable):
    pass


class Typed(BaseVariable):
    pass


class Frame(BaseVariable):
    pass


class Group(BaseVariable):
    pass


def bandpass(signal, low_hz):
    return signal * (low_hz / 10.0)


def peak(signal):
    return float(np.max(signal))


def raw_signal(subject: int, session: str) -> np.ndarray:
    return np.sin(np.arange(50) / (subject + 1)) + (0.5 if session == "post" else 0.0) + subject


@pytest.fixture
def pipeline(project):
    """Subjects 1-4, sessions pre/post: filtered at low_hz=10 then low_hz=20, then peaks."""
    for subject in (1, 2, 3, 4):
        for session in ("pre", "post"):
            EmgRaw.save(raw_signal(subject, session), subject=subject, session=session)
        StrideLength.save(0.5 + subject / 10, subject=subject)  # per subject: coarser
    for low_hz in (10, 20):
        for_each(bandpass, {"signal": EmgRaw, "low_hz": low_hz}, [EmgFiltered],
                 subject=[1, 2, 3, 4], session=["pre", "post"], progress=False)
        for_each(peak, {"signal": EmgFiltered}, [PeakActivation],
                 subject=[1, 2, 3, 4], session=["pre", "post"], progress=False)
    project.sync()
    return project


def expected_mean_peaks(low_hz: int) -> dict[str, float]:
    return {session: float(np.mean([np.max(raw_signal(s, session) * low_hz / 10) for s in (1, 2, 3)]))
            for session in ("pre", "post")}


def test_saved_times_are_timestamps_compared_as_times(pipeline):
    """created_at, last_change and a run's created_at were text: `> now() - INTERVAL 1 DAY` was a
    Binder Error and `> '<today> 23:59:59'` compared letters (ISO's 'T' sorts after ' ')."""
    saved = pipeline.sql("SELECT CAST(min(created_at) AS VARCHAR) AS t FROM PeakActivation").t[0]
    later = f"{saved[:10]} 23:59:59+00"
    for view, column in (("PeakActivation", "created_at"), ("PeakActivation_all", "created_at"),
                         ("scistack_variables", "last_change"), ("scistack_runs", "created_at")):
        counts = pipeline.sql(f"SELECT count(*) FILTER (WHERE {column} > now() - INTERVAL 1 DAY) AS recent, "
                              f"count(*) FILTER (WHERE {column} > '{later}') AS later FROM {view}")
        assert counts.recent[0] > 0 and counts.later[0] == 0, view
    assert not PeakActivation.load_all(where=f"created_at > '{later}'")  # where= compares them alike
    assert len(PeakActivation.load_all(where=f"created_at < '{later}'")) == 8
    frame = PeakActivation.load_all(as_df=True)
    assert str(frame.created_at.dtype).startswith("datetime64") and str(frame.created_at.dt.tz) == "UTC"


def plain_session(project) -> duckdb.DuckDBPyConnection:
    """What a user gets from `duckdb -readonly gait.duckdb`: no scistack settings at all."""
    project.close()
    return duckdb.connect(str(project.path), read_only=True)


def test_a_plain_python_duckdb_session_reads_the_saved_times(pipeline):
    """DuckDB's Python client returns a TIMESTAMPTZ as an aware datetime, which needs `pytz`:
    without it `fetchall()` of `created_at` failed ("Required module 'pytz' failed to import")."""
    con = plain_session(pipeline)
    try:
        (when,) = con.execute("SELECT max(created_at) FROM PeakActivation").fetchone()
    finally:
        con.close()
    assert when.tzinfo is not None and when.utcoffset() is not None


def test_a_plain_duckdb_session_answers_both_questions(pipeline):
    con = plain_session(pipeline)
    try:
        means = dict(con.execute(
            "SELECT session, avg(value) FROM PeakActivation WHERE low_hz = 20 AND subject BETWEEN 1 AND 3 "
            "GROUP BY session").fetchall())
        assert means == pytest.approx(expected_mean_peaks(20))
        # the other branch is older versions: every version is in PeakActivation_all
        older = dict(con.execute(
            "SELECT session, avg(value) FROM (SELECT * FROM PeakActivation_all WHERE low_hz = 10 "
            "QUALIFY row_number() OVER (PARTITION BY subject, session ORDER BY version DESC) = 1) "
            "WHERE subject BETWEEN 1 AND 3 GROUP BY session").fetchall())
        assert older == pytest.approx(expected_mean_peaks(10))
        first5 = con.execute(
            "SELECT value[1:5] FROM EmgFiltered WHERE subject = 1 AND session = 'pre'").fetchone()[0]
        assert first5 == pytest.approx((raw_signal(1, "pre") * 2.0)[:5].tolist())
        types = dict(con.execute("SELECT column_name, data_type FROM information_schema.columns "
                                 "WHERE table_name = 'EmgFiltered'").fetchall())
        assert types["value"] == "DOUBLE[]" and types["subject"] == "BIGINT"
        assert types["low_hz"] == types["bandpass_low_hz"] == "BIGINT"
        row = con.execute("SELECT fn, version, kind, summary FROM EmgFiltered WHERE subject = 2 "
                          "AND session = 'post'").fetchone()
        assert row == ("bandpass", 2, "npy", "float64[50]")
    finally:
        con.close()


def test_numpy_times_are_timestamp_and_interval_values(project):
    """A recording's start time is a TIMESTAMP in SQL (a nanosecond one had shown as a bare
    integer, others as nothing); a duration an INTERVAL."""
    import datetime

    Typed.save(np.datetime64("2024-01-02T03:04:05.123456789"), subject=1, session="a")
    Typed.save(np.datetime64("2024-03", "M"), subject=2, session="a")
    StrideLength.save(np.timedelta64(1500, "ms"), subject=1)
    con = plain_session(project)
    try:
        rows = con.execute("SELECT subject, value, typeof(value) FROM Typed ORDER BY subject").fetchall()
        assert rows == [(1, datetime.datetime(2024, 1, 2, 3, 4, 5, 123456), "TIMESTAMP"),
                        (2, datetime.datetime(2024, 3, 1), "TIMESTAMP")]
        assert con.execute("SELECT value FROM StrideLength").fetchone()[0] == datetime.timedelta(seconds=1.5)
    finally:
        con.close()


def test_numpy_time_arrays_are_timestamp_and_interval_lists(project):
    """A recording's sample times are a TIMESTAMP[] in SQL (they had shown as NULL), NaT a NULL
    element, a 2-D block nested lists; durations INTERVAL[], months as months (numpy would
    give an average month in microseconds)."""
    import datetime

    Typed.save(np.array(["2024-01-02T03:04:05.25", "NaT"], "datetime64[ns]"), subject=1, session="a")
    Typed.save(np.array(["2024-01-03", "2024-01-04"], "datetime64[D]"), subject=2, session="a")
    StrideLength.save(np.array([1500, -3], "timedelta64[ms]"), subject=1)
    StrideLength.save(np.array([2, 14], "timedelta64[M]"), subject=2)
    Frame.save(np.array([["2024-01-01", "NaT"]], "datetime64[s]"), subject=1)
    con = plain_session(project)
    try:
        rows = con.execute("SELECT subject, value, typeof(value) FROM Typed ORDER BY subject").fetchall()
        assert rows == [(1, [datetime.datetime(2024, 1, 2, 3, 4, 5, 250000), None], "TIMESTAMP[]"),
                        (2, [datetime.datetime(2024, 1, 3), datetime.datetime(2024, 1, 4)], "TIMESTAMP[]")]
        assert con.execute("SELECT value[1] + INTERVAL 1 DAY FROM Typed WHERE subject = 1").fetchone()[0] \
            == datetime.datetime(2024, 1, 3, 3, 4, 5, 250000)
        rows = con.execute("SELECT subject, value, typeof(value) FROM StrideLength ORDER BY subject").fetchall()
        assert rows[0] == (1, [datetime.timedelta(seconds=1.5), datetime.timedelta(milliseconds=-3)], "INTERVAL[]")
        assert con.execute("SELECT [datepart('month', x) FOR x IN value], [datepart('year', x) FOR x IN value] "
                           "FROM StrideLength WHERE subject = 2").fetchone() == ([2, 2], [0, 1])
        assert con.execute("SELECT value, typeof(value) FROM Frame").fetchone() == (
            [[datetime.datetime(2024, 1, 1), None]], "TIMESTAMP[][]")
    finally:
        con.close()


def test_a_months_duration_is_months(project):
    """`np.timedelta64(2, "M")` is two months in SQL, not numpy's 60.9-day average."""
    StrideLength.save(np.timedelta64(14, "M"), subject=1)
    con = plain_session(project)
    try:
        assert con.execute("SELECT datepart('year', value), datepart('month', value), datepart('day', value) "
                           "FROM StrideLength").fetchone() == (1, 2, 0)
    finally:
        con.close()


def test_nan_and_infinite_constants_are_parameters_like_any_number(project):
    """`high_hz=np.inf` (no upper limit) is a lineage parameter: loadable by it, a DOUBLE
    column of the views and of `load_all`, and an unchanged rerun is cached (JSON holds no
    NaN or infinity: the journal and the call record tag them)."""
    for subject in (1, 2, 3):
        EmgRaw.save(raw_signal(subject, "pre"), subject=subject, session="pre")
    for subject, low_hz in ((1, 10.0), (2, np.inf), (3, np.nan)):
        for _ in range(2):
            for_each(bandpass, {"signal": EmgRaw, "low_hz": low_hz}, [EmgFiltered], subject=[subject],
                     session=["pre"], progress=False)
    assert EmgFiltered.load(subject=2, session="pre").record.params == {"bandpass.low_hz": np.inf}
    assert [r.version for r in EmgFiltered.list_versions()] == [1, 1, 1]  # each rerun was cached
    assert EmgFiltered.load(low_hz=np.inf)[0].data[0] == np.inf
    assert np.isnan(EmgFiltered.load(low_hz=np.nan)[0].data[0])  # NaN meets NaN here
    frame = EmgFiltered.load_all(as_df=True)
    assert frame["low_hz"].tolist()[:2] == [10.0, np.inf] and np.isnan(frame["low_hz"][2])
    # (NaN is above every number in SQL comparisons, in the views and in where= alike: README)
    assert EmgFiltered.load_all(as_df=True, where="low_hz > 100")["subject"].tolist() == [2, 3]
    assert EmgFiltered.load_all(as_df=True, where="low_hz > 100 AND NOT isnan(low_hz)")["subject"].tolist() == [2]
    con = plain_session(project)
    try:
        rows = con.execute("SELECT subject, low_hz FROM EmgFiltered ORDER BY subject").fetchall()
        assert rows[:2] == [(1, 10.0), (2, np.inf)] and np.isnan(rows[2][1])
        types = dict(con.execute("SELECT column_name, data_type FROM information_schema.columns "
                                 "WHERE table_name = 'EmgFiltered'").fetchall())
        assert types["low_hz"] == "DOUBLE"
    finally:
        con.close()


def test_the_python_api_gives_the_same_answers(pipeline):
    frame = PeakActivation.load_all(as_df=True, where="low_hz = 20 AND subject BETWEEN 1 AND 3")
    assert frame.groupby("session")["data"].mean().to_dict() == pytest.approx(expected_mean_peaks(20))
    older = PeakActivation.load_all(as_df=True, where="low_hz = 10 AND subject <= 3")
    assert older.groupby("session")["data"].mean().to_dict() == pytest.approx(expected_mean_peaks(10))
    assert set(older["version"]) == {1}
    branch = EmgFiltered.load(subject=1, session="pre", where="low_hz = 10")  # one record, as load(low_hz=10)
    assert branch.version == 1 and branch.data[:2].tolist() == pytest.approx(raw_signal(1, "pre")[:2].tolist())
    filtered = EmgFiltered.load(subject=1, session="pre").data
    assert filtered[:5].tolist() == pytest.approx((raw_signal(1, "pre") * 2.0)[:5].tolist())
    assert list(frame.columns) == ["subject", "session", "low_hz", "bandpass_low_hz", "data", "fn",
                                   "version", "created_at", "oid"]
    assert set(frame["fn"]) == {"peak"}
    by_sql = pipeline.sql("SELECT subject, session, value, version FROM PeakActivation "
                          "WHERE low_hz = 20 AND subject <= 3 ORDER BY subject, session")
    ours = frame.sort_values(["subject", "session"])[["subject", "session", "data", "version"]]
    assert ours.values.tolist() == by_sql.values.tolist()


def test_the_branches_view_filters_a_parameter_as_load_all_where_does(pipeline):
    """`WHERE low_hz = 20` on the main view drops an address whose newest version has low_hz=10
    (the newest is taken first); on `<Var>_branches` it agrees with load_all(where=...)."""
    for_each(bandpass, {"signal": EmgRaw, "low_hz": 10}, [EmgFiltered], subject=[1], session=["pre"], progress=False)
    for_each(peak, {"signal": EmgFiltered}, [PeakActivation], subject=[1], session=["pre"], progress=False)
    frame = PeakActivation.load_all(as_df=True, where="low_hz = 20")
    ours = frame.sort_values(["subject", "session"])[["subject", "session", "data", "version"]]
    by_sql = pipeline.sql("SELECT subject, session, value, version FROM PeakActivation_branches "
                          "WHERE low_hz = 20 ORDER BY subject, session")
    assert len(ours) == 8 and ours.values.tolist() == by_sql.values.tolist()
    newest = pipeline.sql("SELECT count(*) AS n FROM PeakActivation WHERE low_hz = 20").n[0]
    assert newest == 7  # the main view keeps its one row per address: subject 1 pre is at low_hz=10
    assert pipeline.sql("SELECT count(*) AS n FROM PeakActivation_branches").n[0] == 16


def test_any_of_and_bound_values(pipeline):
    found = PeakActivation.load(subject=[1, 3], session="pre")
    assert [r.metadata["subject"] for r in found] == [1, 3]
    bound = PeakActivation.load_all(as_df=True, where=("subject = ? AND session = ?", [2, "post"]))
    assert bound[["subject", "session"]].values.tolist() == [[2, "post"]]
    quote = PeakActivation.load_all(as_df=True, where=("session = ?", ["x' OR '1'='1"]))
    assert quote.empty
    # numpy scalars bind as the numbers they hold, as load(subject=np.int64(2)) takes them
    numpy = PeakActivation.load_all(as_df=True, where=("subject = ? AND low_hz = ?", [np.int64(2), np.float32(20)]))
    plain = PeakActivation.load_all(as_df=True, where=("subject = ? AND low_hz = ?", [2, 20.0]))
    assert len(plain) and numpy["version"].tolist() == plain["version"].tolist()
    by_fn = EmgFiltered.load_all(as_df=True, where="fn = 'bandpass' AND version = 1 AND session IN ('pre')")
    assert by_fn["subject"].tolist() == [1, 2, 3, 4] and set(by_fn["low_hz"]) == {10}


@pytest.mark.parametrize("where", [
    "subject = 1; DROP TABLE scistack.refs",
    "subject = 1 -- comment",
    "subject IN (SELECT 1)",
    "read_csv('/etc/passwd') IS NOT NULL",
    "nosuchcolumn = 1",
    "subject = 1)",
    "subject = ?",
])
def test_where_refuses_anything_but_a_condition_over_known_columns(pipeline, where):
    with pytest.raises(QueryError):
        PeakActivation.load_all(as_df=True, where=where)
    assert PeakActivation.load_all(as_df=True)["subject"].nunique() == 4  # nothing was touched


def test_join_broadcasts_the_coarser_variable(pipeline):
    joined = scistack.join(PeakActivation, StrideLength, where="subject <= 2 AND low_hz = 20")
    assert joined[["subject", "session"]].values.tolist() == [[1, "post"], [1, "pre"], [2, "post"], [2, "pre"]]
    assert joined["StrideLength"].tolist() == pytest.approx([0.6, 0.6, 0.7, 0.7])
    assert joined["PeakActivation"].tolist() == pytest.approx(
        [np.max(raw_signal(s, ses) * 2.0) for s, ses in [(1, "post"), (1, "pre"), (2, "post"), (2, "pre")]])
    assert scistack.join(PeakActivation, StrideLength, subject=[3])["subject"].tolist() == [3, 3]


def test_join_needs_a_shared_schema_key(project):
    PeakActivation.save(1.0, subject=1)
    StrideLength.save(2.0, session="pre")
    with pytest.raises(scistack.InvalidMetadataError, match="share no schema key"):
        scistack.join(PeakActivation, StrideLength)
    with pytest.raises(scistack.InvalidMetadataError, match="PeakActivation given twice"):
        scistack.join(PeakActivation, PeakActivation)  # had joined into columns A_A_x, A_A_y...
    with pytest.raises(scistack.InvalidMetadataError, match="two or more BaseVariable classes"):
        scistack.join(PeakActivation, BaseVariable)  # had given an empty frame


def test_where_on_the_value_itself_answers_as_the_view(pipeline):
    """`where="value > 5"` as in SQL (the view's name, or the frame's `data`); it reads the
    values, and refuses a condition on arrays rather than guess."""
    by_sql = pipeline.sql("SELECT subject, session FROM PeakActivation WHERE value > 5 AND low_hz = 20 "
                          "ORDER BY subject, session").values.tolist()
    assert 0 < len(by_sql) < 8
    for name in ("value", "data"):
        frame = PeakActivation.load_all(as_df=True, where=f"{name} > 5 AND low_hz = 20")
        assert frame[["subject", "session"]].values.tolist() == by_sql
    with pytest.raises(QueryError, match="value is a condition on scalar values.*ndarray"):
        EmgFiltered.load_all(where="value > 0")
    assert EmgFiltered.load_all(where="session = 'value data'") == []  # text, not the column


def test_join_where_can_filter_on_scalar_values(pipeline):
    """`where` over the joined values too: the subjects whose stride is over 0.6."""
    joined = scistack.join(PeakActivation, StrideLength, where="StrideLength > 0.65 AND low_hz = 20")
    assert sorted(set(joined["subject"])) == [2, 3, 4]
    assert (joined["StrideLength"] > 0.65).all()
    with pytest.raises(QueryError, match="'EmgFiltered' is not a column"):  # arrays stay out
        scistack.join(EmgFiltered, StrideLength, where="EmgFiltered IS NULL")


def test_join_where_filters_on_text_values_and_on_numbers_with_a_none(project):
    """The README: the variables' scalar values are columns in join's where=. A text value, or a
    number column holding a None (both object columns in pandas), had been left out: "'Group'
    is not a column here". Group is an SQL word, quoted as in `scistack sql`, and said so."""
    for subject, group, peak in [(1, "control", 0.7), (2, "patient", None), (3, "patient", 0.9)]:
        StrideLength.save(0.5 + subject / 10, subject=subject)
        Group.save(group, subject=subject)
        Typed.save(peak, subject=subject)
    for where, subjects in (("\"Group\" = 'patient'", [2, 3]), ("Typed > 0.8", [3]), ("Typed IS NULL", [2]),
                            ("StrideLength > 0.65 AND \"Group\" = 'patient'", [2, 3])):
        assert scistack.join(StrideLength, Group, Typed, where=where)["subject"].tolist() == subjects, where
        by_sql = project.sql("SELECT s.subject FROM StrideLength s JOIN \"Group\" g USING (subject) "
                             f"JOIN (SELECT subject, value AS Typed FROM Typed) t USING (subject) "
                             f"WHERE {where.replace('StrideLength', 's.value').replace(chr(34) + 'Group' + chr(34), 'g.value')} "
                             "ORDER BY 1")["subject"].tolist()
        assert by_sql == subjects, where
    with pytest.raises(QueryError, match=r"Group is an SQL word: write the column in double quotes"):
        scistack.join(StrideLength, Group, where="Group = 'patient'")


def test_where_compares_big_integers_as_the_view_holds_them(project):
    # 2**62 beside 1.5 made the column text (a QueryError wrongly blamed strings); an int
    # beyond 64 bits raised a raw OverflowError
    Typed.save(1.5, subject=1, session="pre")
    Typed.save(2**62, subject=2, session="pre")
    assert [r.metadata["subject"] for r in Typed.load_all(where="value > 1")] == [1, 2]
    Frame.save(1, subject=1, session="pre")
    Frame.save(2**64, subject=2, session="pre")
    assert [r.data for r in Frame.load_all(where="value > 1")] == [2**64]
    Frame.save(0.5, subject=3, session="pre")  # 2**64 + 1 is no double: compared as the view
    Frame.save(2**64 + 1, subject=2, session="pre")  # holds it (its double), not refused
    assert [r.data for r in Frame.load_all(where="value > 1")] == [2**64 + 1]


def test_db_sql_keeps_an_int_column_with_a_null_exact(project):
    """db.sql's frame held an int column with a NULL as float64: 2**53 + 1 became 2**53, and a
    schema key with a NULL printed 1.0."""
    Typed.save(2**53 + 1, subject=1, session="pre")
    Typed.save(5, subject=2)  # a coarser level: its session is NULL
    frame = project.sql("SELECT subject, CASE WHEN subject = 1 THEN value END AS big FROM Typed ORDER BY subject")
    assert frame.big[0] == 2**53 + 1 and frame.big[1] is pd.NA
    assert str(frame.big.dtype) == "Int64" and frame.subject.dtype == np.int64  # no NULL: plain int64


def test_db_sql_refuses_several_statements_rather_than_return_the_last_ones_result(project):
    """`db.sql("SELECT 1; SELECT 2")` returned the second result alone, the first silently
    lost: one frame holds one result, so several statements are refused, saying what to do;
    a trailing ';' is still one statement."""
    Typed.save(1.5, subject=1, session="pre")
    with pytest.raises(QueryError, match=r"2 SQL statements.*one db\.sql\(\.\.\.\) per statement"):
        project.sql("SELECT subject FROM Typed; SELECT value FROM Typed")
    assert project.sql("SELECT value FROM Typed;").value.tolist() == [1.5]
    assert project.sql("SELECT value FROM Typed WHERE subject = ?", [1]).value.tolist() == [1.5]


def test_values_appear_as_sql_types(project):
    long_text = "x" * 500
    big = np.zeros(INLINE_LIMIT // 8 + 10)
    values = {1: 7, 2: 2.5, 3: True, 4: long_text, 5: [1, 2, 3], 6: ["a", "b"], 7: np.eye(2),
              8: {"gain": 2, "names": ["a"]}, 9: [1, "a"], 10: big, 11: np.arange(3, dtype=np.int32)}
    for subject, value in values.items():
        Typed.save(value, subject=subject, session=f"v{subject}")  # one variable: the value column is JSON
    project.sync()
    got = dict(project.sql("SELECT subject, CAST(value AS VARCHAR) AS v FROM Typed").values.tolist())
    assert got[1] == "7" and got[2] == "2.5" and got[3] == "true" and got[4] == f'"{long_text}"'
    assert got[5] == "[1,2,3]" and got[6] == '["a","b"]' and got[7] == "[[1.0,0.0],[0.0,1.0]]"
    assert got[8] == '{"gain":2,"names":["a"]}' and got[9] == '[1,"a"]' and got[11] == "[0,1,2]"
    assert pd.isna(got[10])  # too large: described instead
    row = project.sql("SELECT shape, dtype, kind, summary, oid FROM Typed WHERE subject = 10").iloc[0]
    assert row["shape"].tolist() == [len(big)] and row["dtype"] == "float64" and row["kind"] == "npy"
    assert row["summary"] == f"float64[{len(big)}]" and len(row["oid"]) == 64


@pytest.mark.parametrize("value, sql_type, back", [
    (3, "BIGINT", 3), (0.25, "DOUBLE", 0.25), (False, "BOOLEAN", False), ("é" * 100, "VARCHAR", "é" * 100),
    (np.arange(4.0), "DOUBLE[]", [0.0, 1.0, 2.0, 3.0]), ([True, False], "BOOLEAN[]", [True, False]),
    (["a", "bc"], "VARCHAR[]", ["a", "bc"]), (np.arange(4).reshape(2, 2), "BIGINT[][]", [[0, 1], [2, 3]]),
    ({"a": 1}, "JSON", '{"a":1}'),
])
def test_one_kind_per_variable_gets_its_own_sql_type(project, value, sql_type, back):
    Typed.save(value, subject=1, session="a")
    project.sync()
    con = plain_session(project)
    try:
        assert con.execute("SELECT data_type FROM information_schema.columns WHERE table_name = 'Typed' "
                           "AND column_name = 'value'").fetchone()[0] == sql_type
        got = con.execute("SELECT value FROM Typed").fetchone()[0]
        assert (got.tolist() if hasattr(got, "tolist") else got) == back
    finally:
        con.close()


def test_nan_and_infinity_survive_in_list_columns_and_become_null_in_json(project):
    Typed.save(np.array([1.0, np.nan, np.inf]), subject=1, session="a")
    Frame.save({"x": float("nan"), "y": [1.5]}, subject=2, session="a")
    project.sync()
    row = project.sql("SELECT isnan(value[2]) AS nan, isinf(value[3]) AS inf FROM Typed").iloc[0]
    assert bool(row["nan"]) and bool(row["inf"])
    assert project.sql("SELECT CAST(value AS VARCHAR) AS v FROM Frame")["v"][0] == '{"x":null,"y":[1.5]}'


def test_nan_and_infinity_survive_in_nested_list_columns(project):
    """A 2-D float array is DOUBLE[][] as a 1-D one is DOUBLE[]: NaN and the infinities kept
    (they were NULL, so `isinf` found none)."""
    Typed.save(np.array([[1.0, np.nan], [np.inf, -np.inf]]), subject=1, session="a")
    project.sync()
    con = plain_session(project)
    try:
        value = con.execute("SELECT value FROM Typed").fetchone()[0]
        assert value[0][0] == 1.0 and np.isnan(value[0][1]) and value[1] == [np.inf, -np.inf]
        assert con.execute("SELECT len(list_filter(flatten(value), x -> isinf(x))), "
                           "len(list_filter(flatten(value), x -> isnan(x))) FROM Typed").fetchone() == (2, 1)
    finally:
        con.close()


def test_dataframe_rows_view(project):
    Frame.save(pd.DataFrame({"t": [0.0, 0.1, 0.2], "force": [10, 12, 11]}), subject=1, session="pre")
    Frame.save(pd.DataFrame({"t": [0.0], "force": [9]}), subject=2, session="pre")
    project.sync()
    rows = project.sql("SELECT subject, row_n, t, force FROM Frame_rows ORDER BY subject, row_n")
    assert rows.values.tolist() == [[1, 1, 0.0, 10], [1, 2, 0.1, 12], [1, 3, 0.2, 11], [2, 1, 0.0, 9]]
    assert project.sql("SELECT summary FROM Frame WHERE subject = 1")["summary"][0] == "DataFrame[3x2]"


def test_rows_view_keeps_a_datetime_column_to_the_microsecond(project):
    """pandas writes times to the millisecond by default: .123456 and .123999 were one time."""
    t = pd.to_datetime(["2024-01-01 10:00:00.123456", "2024-01-01 10:00:00.123999"])
    Frame.save(pd.DataFrame({"t": t, "at": t.tz_localize("UTC")}), subject=1, session="pre")
    project.sync()
    got = project.sql("SELECT CAST(CAST(t AS TIMESTAMP) AS VARCHAR) AS t, "
                      "epoch_us(CAST(\"at\" AS TIMESTAMPTZ)) = epoch_us(CAST(t AS TIMESTAMP)) AS same "
                      "FROM Frame_rows ORDER BY row_n")
    assert got["t"].tolist() == ["2024-01-01 10:00:00.123456", "2024-01-01 10:00:00.123999"]
    assert got["same"].tolist() == [True, True]


def test_rows_view_types_a_frames_time_columns(project):
    """A frame's datetime, tz-aware and timedelta columns were VARCHAR in `<Var>_rows` (JSON has
    no time type); they are TIMESTAMP, TIMESTAMPTZ and INTERVAL. A text column stays text unless
    every value in it is a time as pandas writes one: one date-like string among others is text."""
    t = pd.to_datetime(["2024-01-01 10:00:00.123456", None])
    Frame.save(pd.DataFrame({"t": t, "at": t.tz_localize("Europe/Paris"),
                             "dt": pd.to_timedelta(["-1 days +02:00:00", "1.5us"]),
                             "note": ["2024-01-01T10:00:00.123456000", "x"]}), subject=1, session="pre")
    Frame.save(pd.DataFrame({"t": pd.to_datetime(["2025-06-01"]), "dt": pd.to_timedelta(["90s"])}),
               subject=2, session="pre")
    project.sync()
    con = plain_session(project)
    try:
        assert con.execute("SELECT typeof(t), typeof(\"at\"), typeof(dt), typeof(note) FROM Frame_rows "
                           "LIMIT 1").fetchone() == ("TIMESTAMP", "TIMESTAMP WITH TIME ZONE", "INTERVAL", "VARCHAR")
        rows = con.execute("SELECT CAST(t AS VARCHAR), epoch_us(\"at\") - epoch_us(t), CAST(dt AS VARCHAR) "
                           "FROM Frame_rows ORDER BY subject, row_n").fetchall()
        assert rows == [("2024-01-01 10:00:00.123456", -3600 * 10**6, "-1 day 02:00:00"),
                        (None, None, "00:00:00.000001"), ("2025-06-01 00:00:00", None, "00:01:30")]
    finally:
        con.close()


def test_rows_view_holds_the_very_numbers_load_gives(project):
    # pandas' to_json wrote floats to 10 decimal places (1.5e-12 was 0.0, pi 3.1415926536)
    # and -0.0 as 0.0; a uint64 above BIGINT's range was NULL
    molar = [1.5e-12, 2.25e-9, np.pi, -0.0, 0.1 + 0.2, np.nan]
    Frame.save(pd.DataFrame({"molar": molar, "n": [1, 2, 3, 4, 5, 6], "s": list("abcdef"),
                             "f32": np.full(6, 0.1, np.float32)}), subject=1, session="pre")
    Typed.save(pd.DataFrame({"u": np.array([2**64 - 1, 5], np.uint64)}), subject=1, session="pre")
    project.sync()
    rows = project.sql("SELECT molar, n, s, f32 FROM Frame_rows ORDER BY row_n")
    loaded = Frame.load(subject=1, session="pre").data
    assert [np.float64(x).tobytes() for x in rows["molar"][:5]] == [np.float64(x).tobytes() for x in molar[:5]]
    assert pd.isna(rows["molar"][5]) and rows["n"].tolist() == loaded["n"].tolist()
    assert rows["s"].tolist() == list("abcdef") and rows["f32"].tolist() == [float(np.float32(0.1))] * 6
    assert project.sql("SELECT count(*) AS n FROM Frame_rows WHERE molar > 0")["n"][0] == 4
    assert project.sql("SELECT CAST(u AS VARCHAR) AS u FROM Typed_rows ORDER BY row_n")["u"].tolist() \
        == [str(2**64 - 1), "5"]


def test_rows_view_holds_floats_of_object_columns_exactly(project):
    # float columns were exact already; floats in an object column (an Arrow table's lists and
    # structs, a categorical of floats) still went through pandas' to_json: 10 decimal places
    import pyarrow as pa

    tiny, third = 1.5e-12, 0.1 + 0.2
    table = pa.table({"x": pa.array([[tiny, np.pi], [third, None]]),
                      "p": pa.array([{"a": np.pi}, {"a": -0.0}])})
    Frame.save(table, subject=1, session="pre")
    categorical = pd.DataFrame({"k": pd.Categorical([tiny, np.pi, None]), "n": [1, 2, 3]})
    Typed.save(categorical, subject=1, session="pre")
    project.sync()
    rows = project.sql("SELECT x, p FROM Frame_rows ORDER BY row_n")
    assert [json.loads(x) for x in rows["x"]] == [[tiny, np.pi], [third, None]]
    assert [json.loads(p) for p in rows["p"]] == [{"a": np.pi}, {"a": -0.0}]
    assert str(json.loads(rows["p"][1])["a"]) == "-0.0"
    k = project.sql("SELECT k FROM Typed_rows ORDER BY row_n")["k"]
    assert k[:2].tolist() == [tiny, np.pi] and pd.isna(k[2])
    assert project.sql("SELECT count(*) AS n FROM Typed_rows WHERE k > 0")["n"][0] == 2


def test_a_frame_without_columns_has_its_rows_in_the_rows_view(project):
    """pandas writes the rows of a frame with no columns as one empty line, which DuckDB could
    not cast to JSON: the variable's whole rows view was not made (a warning said so)."""
    Frame.save(pd.DataFrame(index=range(3)), subject=1, session="pre")
    Frame.save(pd.DataFrame({"t": [0.5]}), subject=2, session="pre")
    project.sync()
    rows = project.sql("SELECT subject, row_n, t FROM Frame_rows ORDER BY subject, row_n")
    assert rows["subject"].tolist() == [1, 1, 1, 2] and rows["t"].tolist()[3] == 0.5


def test_a_column_pandas_cannot_write_as_json_is_text_in_the_rows_view(project):
    # a period column made pandas' to_json raise inside the sync: every sync failed on it, so
    # the views stayed as they were before that save, for every variable
    Frame.save(pd.DataFrame({"month": pd.period_range("2024-01", periods=2, freq="M"), "n": [3, 4],
                             "raw": [b"\x00\xff", None]}), subject=1, session="pre")  # (not UTF-8)
    Frame.save({"table": pd.DataFrame({"month": pd.period_range("2024-03", periods=1, freq="M")})},
               subject=2, session="pre")
    Typed.save(1.5, subject=1, session="pre")
    project.sync()
    rows = project.sql("SELECT month, n, raw FROM Frame_rows ORDER BY row_n")
    assert rows.values.tolist()[0] == ["2024-01", 3, "00ff"]
    assert rows.values.tolist()[1][:2] == ["2024-02", 4] and pd.isna(rows["raw"][1])
    assert json.loads(project.sql("SELECT CAST(value AS VARCHAR) AS v FROM Frame WHERE subject = 2")["v"][0]) \
        == {"table": [{"month": "2024-03"}]}
    assert project.sql("SELECT value FROM Typed")["value"].tolist() == [1.5]


def test_rows_view_takes_any_frame_column_names_and_never_stops_the_sync(project):
    # a column named "" made the rows view's SQL invalid: the sync raised on it every time,
    # so no view of any variable moved past that save; "A" and "a" are one name to DuckDB
    Frame.save(pd.DataFrame({"A": [1], "a": [2], "": [3], "subject": [4], "row_n": [5], "row_a": [6]}),
               subject=1, session="pre")
    Typed.save(2.5, subject=1, session="pre")
    project.sync()
    row = project.sql("SELECT * FROM Frame_rows").iloc[0]
    assert row["subject"] == 1 and row["row_n"] == 1  # the keys, then the frame's own columns
    assert [row[c] for c in ("A", "row_a", "row_subject", "row_row_n", "row_row_a")] == [1, 2, 4, 5, 6]
    assert project.sql("SELECT value FROM Typed")["value"].tolist() == [2.5]


def test_project_views_list_variables_and_runs(pipeline):
    variables = pipeline.sql("SELECT variable, records, versions FROM scistack_variables ORDER BY variable")
    assert variables.values.tolist() == [["EmgFiltered", 8, 16], ["EmgRaw", 8, 8],
                                         ["PeakActivation", 8, 16], ["StrideLength", 4, 4]]
    runs = pipeline.sql("SELECT function, ran, cached, failed, skipped, outputs FROM scistack_runs "
                        "ORDER BY created_at")
    assert runs["function"].tolist() == ["bandpass", "peak", "bandpass", "peak"]
    assert runs["ran"].tolist() == [8, 8, 8, 8] and runs["failed"].tolist() == [0, 0, 0, 0]
    assert runs["skipped"].tolist() == [0, 0, 0, 0]  # (a report leaves a zero out: it was NULL)
    assert runs["outputs"].iloc[0].tolist() == ["EmgFiltered"]


def test_inline_values_follow_deletes_and_rebuilds(pipeline):
    count = "SELECT count(*) AS n FROM scistack.vals"
    before = pipeline.sql(count)["n"][0]
    StrideLength.delete(subject=4)
    pipeline.sync()
    assert pipeline.sql(count)["n"][0] == before - 1
    assert pipeline.sql("SELECT count(*) AS n FROM StrideLength")["n"][0] == 3
    pipeline.reindex()
    assert pipeline.sql(count)["n"][0] == before - 1
    assert pipeline.sql("SELECT avg(value) AS m FROM StrideLength")["m"][0] == pytest.approx(0.7)


def _views(db) -> list[str]:
    return sorted(db.sql("SELECT table_name FROM information_schema.tables WHERE table_schema = 'main' "
                         "AND table_type = 'VIEW'")["table_name"])


def test_the_views_of_a_variable_deleted_whole_go_and_come_back_with_undelete(project):
    """Deleting every value of a variable left its views (`Frame`, `Frame_all`, `Frame_branches`,
    `Frame_rows`) in the file, empty, though `ls` and `scistack_variables` no longer list it and
    a rebuild from the journal does not make them. They go with the last record (the view's
    name then says to undelete), come back with `undelete`, and `<Var>_rows` goes with the last
    frame of a variable that keeps other values."""
    frame = pd.DataFrame({"a": [1, 2]})
    Frame.save(frame, subject=1, session="pre")
    Frame.save(2.5, subject=2, session="pre")
    Typed.save(frame, subject=1, session="pre")
    Typed.save(1.5, subject=2, session="pre")
    project.sync()
    kept = ["Typed", "Typed_all", "Typed_branches", "Typed_rows", "scistack_runs", "scistack_variables"]
    assert _views(project) == ["Frame", "Frame_all", "Frame_branches", "Frame_rows", *kept]
    Frame.delete(all=True)
    Typed.delete(subject=1)
    project.sync()
    assert _views(project) == ["Typed", "Typed_all", "Typed_branches", "scistack_runs", "scistack_variables"]
    assert [s[0] for s in project.index.summaries()] == ["Typed"]
    assert project.sql("SELECT variable FROM scistack_variables")["variable"].tolist() == ["Typed"]
    with pytest.raises(QueryError, match=r"Every value of the variable Frame was deleted.*scistack undelete Frame"):
        project.sql("SELECT * FROM frame_all")
    Frame.undelete()
    project.sync()
    assert project.sql("SELECT value FROM Frame WHERE subject = 2")["value"].tolist() == [2.5]
    assert project.sql("SELECT a FROM Frame_rows ORDER BY a")["a"].tolist() == [1, 2]
    Frame.delete(all=True)
    project.reindex()  # (a file that kept such views before loses them at its next rebuild)
    assert _views(project) == ["Typed", "Typed_all", "Typed_branches", "scistack_runs", "scistack_variables"]


def test_views_of_the_users_own_are_never_dropped_with_a_variables(tmp_path, monkeypatch):
    """Dropping a deleted variable's views must touch only views scistack made: a view made by
    hand under a name of the variable's (`Typed_rows` over a variable of numbers, which has no
    rows view) survived every sync before, and a table of the user's named like the variable
    (which only keeps its main view from being made) must not take `Typed_all` with it."""
    monkeypatch.chdir(tmp_path)
    path = tmp_path / "own.duckdb"
    db = scistack.configure_database(path, ["subject", "session"])
    Typed.save(1.5, subject=1, session="pre")
    db.close()
    con = duckdb.connect(str(path))
    con.execute("CREATE VIEW Typed_rows AS SELECT 42 AS answer")
    con.close()
    db = scistack.configure_database(path, ["subject", "session"])
    try:
        Typed.save(2.5, subject=2, session="pre")
        db.sync()
        assert db.sql("SELECT answer FROM Typed_rows")["answer"].tolist() == [42]
    finally:
        db.close()
    con = duckdb.connect(str(path))
    con.execute("DROP VIEW Typed")
    con.execute("CREATE TABLE typed AS SELECT 1 AS mine")
    con.close()
    db = scistack.configure_database(path, ["subject", "session"])
    try:
        Typed.save(3.5, subject=3, session="pre")
        db.sync()
        assert db.sql("SELECT value FROM Typed_all ORDER BY subject")["value"].tolist() == [1.5, 2.5, 3.5]
        assert db.sql("SELECT answer FROM Typed_rows")["answer"].tolist() == [42]
    finally:
        db.close()


def test_a_value_unreadable_at_sync_is_read_again_later(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    db = scistack.configure_database(tmp_path / "late.duckdb", ["subject", "session"], sync_delay=3600)
    try:
        saved = Typed.save(1.5, subject=1, session="a")
        path = db.store.path_of(saved.oid)
        hidden = path.with_name("hidden")
        path.rename(hidden)
        db.sync()
        assert pd.isna(db.sql("SELECT value FROM Typed")["value"][0])
        hidden.rename(path)
        Typed.save(2.5, subject=2, session="a")
        db.sync()
        assert db.sql("SELECT value FROM Typed ORDER BY subject")["value"].tolist() == [1.5, 2.5]
    finally:
        db.close()


def test_sql_stays_read_only(pipeline):
    with pytest.raises(QueryError):
        pipeline.sql("DELETE FROM scistack.vals")
    with pytest.raises(QueryError):
        pipeline.sql("CREATE OR REPLACE VIEW PeakActivation AS SELECT 1")
    assert pipeline.sql("SELECT count(*) AS n FROM PeakActivation")["n"][0] == 8


def test_sql_errors_keep_duckdbs_own_hints(pipeline):
    """Only the first line of DuckDB's error was kept: its 'Did you mean' and 'Candidate
    bindings' lines were cut (its 'LINE 1:' context stays out)."""
    with pytest.raises(QueryError, match=r'PeakActivatio does not exist! Did you mean "PeakActivation\w*"\?') as typo:
        pipeline.sql("SELECT * FROM PeakActivatio")
    with pytest.raises(QueryError, match=r'"valeu" not found .* Candidate bindings: .*"value"') as column:
        pipeline.sql("SELECT valeu FROM PeakActivation")
    for error in (typo, column):
        assert "LINE 1" not in str(error.value) and "\n" not in str(error.value)


def test_sql_touches_no_file_but_the_index(pipeline, tmp_path):
    """Read-only protected the DuckDB file only: a COPY ... TO the journal overwrote it (every
    name lost), and read_text() read any file on the machine. Neither can be switched back on."""
    journal = pipeline.path.parent / ".scistack" / "refs.log"
    before = journal.read_bytes()
    (tmp_path / "secret.txt").write_text("x")
    for query in (f"COPY (SELECT 'garbage' AS x) TO '{journal}' (FORMAT csv, HEADER false)",
                  f"SELECT * FROM read_text('{tmp_path / 'secret.txt'}')",
                  f"ATTACH '{tmp_path / 'other.duckdb'}'",
                  "SET enable_external_access = true", "SET lock_configuration = false"):
        with pytest.raises(QueryError):
            pipeline.sql(query)
    assert journal.read_bytes() == before and not (tmp_path / "other.duckdb").exists()
    assert pipeline.sql("SELECT count(*) AS n FROM PeakActivation")["n"][0] == 8


def test_a_key_saved_as_text_and_numbers_gets_a_query_error_that_says_how_to_compare(project):
    StrideLength.save(1.0, subject=1)
    StrideLength.save(2.0, subject="S02")  # one subject named as text: the column is VARCHAR
    with pytest.raises(QueryError, match=r"Column subject holds text as well as numbers.*subject = '5'"):
        project.sql("SELECT value FROM StrideLength WHERE subject = 1")
    with pytest.raises(QueryError, match=r"to INT64 .*Column subject holds text as well as numbers"):
        project.sql("SELECT CAST(subject AS BIGINT) FROM StrideLength")  # (DuckDB 1.5 says INT64 there)
    assert project.sql("SELECT value FROM StrideLength WHERE subject = '1'")["value"].tolist() == [1.0]
    with pytest.raises(QueryError, match=r"subject holds text as well as numbers.*subject = '5'"):
        StrideLength.load_all(where="subject > 0")
    assert StrideLength.load_all(as_df=True, where="subject = '1'")["data"].tolist() == [1.0]



def _plus_one(x, p):
    return x + 1.0


def test_where_reads_a_column_of_mixed_types_as_the_view_writes_it(project):
    """A key or lineage parameter whose values mix types is text in the views: True as 'true',
    1.0 as '1.0', NaN as 'nan'. where= wrote str(v), 'True': `subject = 'True'` found the bool
    record beside the string one, `subject = 'true'` nothing; and the view showed a NaN
    parameter as its JSON tag, `{"$float":"nan"}`, a float as JSON's `1e100`, not as a key's `1e+100`."""
    Typed.save(1.0, subject=True, session="pre")
    Typed.save(2.0, subject="True", session="pre")
    Typed.save(3.0, subject="s1", session="pre")
    for where, found in (("subject = 'true'", [1.0]), ("subject = 'True'", [2.0])):
        assert project.sql(f"SELECT value FROM Typed WHERE {where}")["value"].tolist() == found
        assert [r.data for r in Typed.load_all(where=where)] == found, where
    values = [True, "True", 1, 1.0, 2.5, None, float("nan"), float("-inf"), 1e100, "x"]
    for n, p in enumerate(values):
        StrideLength.save(float(n), subject=n)
        for_each(_plus_one, inputs={"x": StrideLength, "p": p}, outputs=[PeakActivation], subject=[n])
    expected = {"p = 'true'": [0], "p = 'True'": [1], "p = '1'": [2], "p = '1.0'": [3], "p = '2.5'": [4],
                "p IS NULL": [5], "p = 'nan'": [6], "p = '-inf'": [7], "p = '1e+100'": [8], "p = 'x'": [9]}
    for where, subjects in expected.items():
        assert project.sql(f"SELECT subject FROM PeakActivation WHERE {where}")["subject"].tolist() == subjects, where
        assert [r.metadata["subject"] for r in PeakActivation.load_all(where=where)] == subjects, where

@pytest.mark.parametrize("order", [(2.5, True, 1), (True, 1, 2.5)])
def test_where_tells_a_bool_key_from_the_number_1_as_the_view_does(project, order):
    """A key, version key or lineage parameter holding True beside numbers is text in the views
    ('true', '1', '2.5'). where= let Arrow guess the column's type from its first value: after
    2.5, True became the double 1.0, so `rep = '1'` (and `rep = 1`) found rep=True as well,
    where the view and `load_all(rep=1)` find rep=1 alone; True first, the column was text."""
    for n, v in enumerate(order, start=1):
        Typed.save(float(n), subject=n, session="pre", rep=v)
        Frame.save(float(n), subject=v, session="pre")
        StrideLength.save(float(n), subject=n)
        for_each(_plus_one, inputs={"x": StrideLength, "p": v}, outputs=[PeakActivation], subject=[n])
        Group.save(10.0 * n, subject=n, session="pre")
    at = {shown: next(n for n, v in enumerate(order, start=1) if type(v) is type(value))  # (True == 1)
          for shown, value in (("1", 1), ("true", True), ("2.5", 2.5))}
    for shown, n in at.items():
        for var, column, by_key in ((Typed, "rep", lambda v: Typed.load_all(rep=v)),
                                    (Frame, "subject", lambda v: Frame.load_all(subject=v)),
                                    (PeakActivation, "p", lambda v: PeakActivation.load_all(p=v))):
            where = f"{column} = '{shown}'"
            assert project.sql(f"SELECT value FROM {var.__name__} WHERE {where}")["value"].tolist() == [float(n) + (var is PeakActivation)], where
            assert [r.data for r in var.load_all(where=where)] == [r.data for r in by_key(order[n - 1])] == [float(n) + (var is PeakActivation)], where
        # join: rep goes with Group's value into one part, judged on the joined rows
        joined = scistack.join(Typed, Group, where=f"rep = '{shown}' OR \"Group\" > 100")
        assert joined["subject"].tolist() == [n], shown
    for var, column in ((Typed, "rep"), (Frame, "subject"), (PeakActivation, "p")):
        with pytest.raises(QueryError, match=rf"{column} holds text as well as numbers .*true/false beside numbers"):
            var.load_all(where=f"{column} = 1")  # as the view: compare it with text
        with pytest.raises(QueryError, match="Column .* holds text as well as numbers"):
            project.sql(f"SELECT value FROM {var.__name__} WHERE {column} = 1")
    # a value column holding True beside numbers is text too, in the view, where= and a join
    Group.save(True, subject=3, session="pre")
    assert project.sql("SELECT subject FROM \"Group\" WHERE value = 'true'")["subject"].tolist() == [3]
    assert [r.metadata["subject"] for r in Group.load_all(where="value = 'true'")] == [3]
    joined = scistack.join(Typed, Group, where="rep = '1' OR \"Group\" = 'true'")
    assert joined["subject"].tolist() == sorted({at["1"], 3})


@pytest.mark.parametrize("order", [(2.5, True, 1), (True, 1, 2.5)])
def test_join_pairs_a_bool_key_only_with_the_same_bool(project, order):
    """pandas' merge matched subject=True with subject=1 (True == 1 in Python): a join of two
    variables saved at subjects 2.5, True and 1 gave 5 rows, pairing each of True and 1 with
    the other's value, where the views, where= and load tell them apart."""
    for n, v in enumerate(order, start=1):
        Frame.save(float(n), subject=v, session="pre")
        Group.save(10.0 * n, subject=v, session="pre")
    joined = scistack.join(Frame, Group)
    pairs = sorted((repr(s), f, g) for s, f, g in zip(joined["subject"], joined["Frame"], joined["Group"]))
    assert pairs == sorted((repr(v), float(n), 10.0 * n) for n, v in enumerate(order, start=1))


def _answer(rows) -> list | str:
    """The sorted subjects a query gives, or "error" when it is refused."""
    try:
        return sorted(rows())
    except QueryError:
        return "error"


@pytest.mark.parametrize("order", [(2.5, True, 1, None), (True, 1, 2.5, None), (None, 1, 2.5, False)])
def test_where_on_a_value_of_bools_and_numbers_answers_as_the_view_in_any_order(project, order):
    """A value column holding true/false beside numbers is text in the views, as a key column
    of them is ('true', '1', '2.5'). where= let Arrow guess the column's type from the first
    record: 2.5 first it was doubles (`value = true` found True alone), True first it was
    text; the answer depended on the records' order. The view was JSON, which DuckDB compared
    by casting it to the other side's type (`value = 2` found 2.5). Now text in both, in
    load_all and in a join, in any order; a number is compared by TRY_CAST."""
    for n, v in enumerate(order, start=1):
        Group.save(v, subject=n, session="pre")
        StrideLength.save(float(n), subject=n)
    conditions = ["value = 1", "value = true", "value = false", "value > 1", "value = 2.5", "value < 2",
                  "value <> 1", "value = '1'", "value = 'true'", "value IS NULL", "value IN (1, 2)",
                  "TRY_CAST(value AS DOUBLE) >= 1", "NOT value", "value IN ('1', '2.5')"]
    for where in conditions:
        view = _answer(lambda: project.sql(f'SELECT subject FROM "Group" WHERE {where}')["subject"].tolist())
        assert _answer(lambda: [r.metadata["subject"] for r in Group.load_all(where=where)]) == view, where
        joined = _answer(lambda: scistack.join(StrideLength, Group, where=where.replace("value", '"Group"'))["subject"].tolist())
        assert joined == view, where
    at = {type(v): n for n, v in enumerate(order, start=1)}
    assert _answer(lambda: project.sql("SELECT subject FROM \"Group\" WHERE value = '1'")["subject"].tolist()) == [at[int]]
    assert _answer(lambda: project.sql("SELECT subject FROM \"Group\" WHERE value = '2.5'")["subject"].tolist()) == [at[float]]
    assert _answer(lambda: project.sql(
        "SELECT subject FROM \"Group\" WHERE TRY_CAST(value AS DOUBLE) > 1")["subject"].tolist()) == [at[float]]
    with pytest.raises(QueryError, match=r"value holds text as well as numbers .*so it is text, as in the views.*"
                                         r"TRY_CAST\(value AS DOUBLE\) > 5"):
        Group.load_all(where="value > 1")


def test_an_int_a_double_does_not_hold_is_compared_as_the_view_holds_it(project):
    # (the view types the column DOUBLE and rounds 2**64 + 1; where= refused the whole column,
    # "cannot be held exactly beside floats", though the view answered)
    class BigInts(BaseVariable):
        pass

    class MixedInts(BaseVariable):
        pass

    BigInts.save(2**64 + 1, subject=1, session="a")
    BigInts.save(5, subject=2, session="a")
    MixedInts.save(2**53 + 1, subject=1, session="a")
    MixedInts.save(1.5, subject=2, session="a")
    MixedInts.save(7, subject=3, session="a")
    for var, where, by_key in [(BigInts, "value = 5", {}), (BigInts, "value > 0", {"subject": 2}),
                               (MixedInts, "value = 7", {}), (MixedInts, "value > 0", {"subject": 1})]:
        found = sorted(r.metadata["subject"] for r in var.load_all(where=where, **by_key))
        keys = " AND ".join(f"{k} = {v}" for k, v in by_key.items()) or "true"
        view = project.sql(f"SELECT subject FROM {var.__name__} WHERE ({where}) AND {keys} ORDER BY subject")
        assert found == view["subject"].tolist() and found, (var.__name__, where)


def test_a_value_of_text_beside_numbers_is_compared_as_text_in_the_view_and_in_where(project):
    """A variable saved as text in some records and as numbers in others: its view's value
    column was JSON, so `value = 'a'` failed there (DuckDB casts 'a' to JSON: malformed) while
    where= found it, `value LIKE 'a%'` found nothing there, and `value = '1'` found the 1 in
    the view, the 1 and the "1" in where=. The column is now text in both, each value as a key
    column writes it (1.0 as '1.0', True as 'true'), in a join too."""
    for n, v in enumerate(["a", 1, 2.5, True, None, "1", 1.0, "b"], start=1):
        Group.save(v, subject=n, session="pre")
        StrideLength.save(float(n), subject=n)
    expected = {"value = 'a'": [1], "value = '1'": [2, 6], "value = '1.0'": [7], "value IN ('a', 'b')": [1, 8],
                "value LIKE 'a%'": [1], "value = 'true'": [4], "value IS NULL": [5], "value < '2'": [2, 6, 7],
                "TRY_CAST(value AS DOUBLE) = 1": [2, 6, 7], "TRY_CAST(value AS DOUBLE) > 1": [3]}
    for where, subjects in expected.items():
        assert project.sql(f'SELECT subject FROM "Group" WHERE {where}')["subject"].tolist() == subjects, where
        assert sorted(r.metadata["subject"] for r in Group.load_all(where=where)) == subjects, where
        joined = scistack.join(StrideLength, Group, where=where.replace("value", '"Group"'))
        assert sorted(joined["subject"].tolist()) == subjects, where
    assert project.sql('SELECT value FROM "Group" WHERE subject = 7')["value"].tolist() == ["1.0"]


def test_where_types_a_value_column_from_the_whole_variable_as_its_view(project):
    """where= typed a value column from the records it compared: with subject=[3, 7] chosen,
    both numbers (2.5 and 1.0), `value = '1'` compared them as numbers and found the 1.0, and
    `value > 1` answered, where the view (text: another record holds "a") finds nothing for
    the first and refuses the second. The column is typed from every record of the variable,
    in load_all and in a join."""
    for n, v in enumerate(["a", 1, 2.5, True, None, "1", 1.0, "b"], start=1):
        Group.save(v, subject=n, session="pre")
        StrideLength.save(float(n), subject=n)
    view = project.sql("SELECT subject FROM \"Group\" WHERE subject IN (3, 7) AND value = '1'")["subject"].tolist()
    assert view == [] and Group.load_all(subject=[3, 7], where="value = '1'", as_df=True).empty
    assert [r.metadata["subject"] for r in Group.load_all(subject=[3, 7], where="value = '1.0'")] == [7]
    joined = scistack.join(StrideLength, Group, subject=[3, 7], where="\"Group\" = '1'")
    assert joined.empty
    with pytest.raises(QueryError, match="value holds text as well as numbers"):
        Group.load_all(subject=[3, 7], where="value > 1")
    with pytest.raises(QueryError, match="Group holds text as well as numbers"):
        scistack.join(StrideLength, Group, subject=[3, 7], where="\"Group\" > 1")
    # ints beside floats: doubles, as the view (`value = '1.0'` is the number 1)
    for n, v in enumerate([1, 2.5, 3], start=1):
        Frame.save(v, subject=n, session="pre")
    assert project.sql("SELECT subject FROM Frame WHERE subject = 1 AND value = 1.0")["subject"].tolist() == [1]
    assert [r.metadata["subject"] for r in Frame.load_all(subject=[1, 3], where="value IN (1.0, 3)")] == [1, 3]


class Tally(BaseVariable):
    pass


def _chosen(var, where, subjects=(2, 3)):
    return sorted(r.metadata["subject"] for r in var.load_all(subject=list(subjects), where=where))


def test_where_on_records_chosen_by_key_reads_only_their_values(project):
    """where= on a value column read every value of the variable to type it as its view
    (1M objects for two records chosen): it asks DuckDB, which keeps each variable's types.
    The objects of every record but the two chosen are deleted (a damaged store): the text
    the store no longer holds still makes the column text, as in the view (reading the
    values had lost its type: `value < '10'` compared 5 and 7 as numbers)."""
    text = f"text {uuid.uuid4()}"  # (its own object: no value read before in this process)
    Group.save(text, subject=1, session="pre")
    for n in range(2, 41):
        Group.save(n, subject=n, session="pre")
    project.sync()
    for record in project.index.records("Group"):
        if record.addr["subject"] not in (5, 7):
            project.store.path_of(record.oid).unlink()
    assert _chosen(Group, "value < '10'", (5, 7)) == []  # text: '5' and '7' sort after '10'
    assert _chosen(Group, "value = '5'", (5, 7)) == [5]
    assert project.sql("SELECT subject FROM \"Group\" WHERE subject IN (5, 7) AND value < '10'").empty


_SAVE_TEXT = """
import sys
from scistack import BaseVariable, configure_database

class Tally(BaseVariable):
    pass

db = configure_database(sys.argv[1], ["subject", "session"])
Tally.save(sys.argv[2], subject=int(sys.argv[3]))
db.close()
"""


def test_where_types_a_value_column_from_saves_duckdb_has_not_seen(project, tmp_path, python_env):
    """The types DuckDB keeps are those of what it has synced: where= syncs it first (a save
    just made here, or in another process), and adds the types of the saves a batch holds; a
    batch holding a delete of the variable reads its values (DuckDB still has the deleted
    record's type)."""
    import subprocess
    import sys

    for n in range(1, 7):
        Tally.save(n, subject=n)
    project.sync()
    assert _chosen(Tally, "value < '10'") == [2, 3]  # numbers
    Tally.save(f"text {uuid.uuid4()}", subject=20)  # journalled, not synced
    assert _chosen(Tally, "value < '10'") == []  # text
    Tally.delete(subject=20)
    assert _chosen(Tally, "value < '10'") == [2, 3]
    with project.batch():  # (load_all(where=...) writes what a batch holds first: a join does not)
        Tally.save(f"text {uuid.uuid4()}", subject=21)  # held
        synced, held = project.index.value_types("Tally")  # DuckDB's, and the held save
        assert "VARCHAR" not in synced and [r.addr["subject"] for r in held] == [21]
        assert "VARCHAR" in selection.value_types(project, "Tally")
        assert _chosen(Tally, "value < '10'") == []
    with project.batch():
        Tally.delete(subject=21)  # held
        assert project.index.value_types("Tally") is None  # (DuckDB has its type: every value read)
        assert "VARCHAR" not in selection.value_types(project, "Tally")
        assert _chosen(Tally, "value < '10'") == [2, 3]
    assert _chosen(Tally, "value < '10'") == [2, 3]
    script = tmp_path / "save_text.py"
    script.write_text(_SAVE_TEXT)
    done = subprocess.run([sys.executable, str(script), str(tmp_path / "gait.duckdb"), f"text {uuid.uuid4()}", "22"],
                          env=python_env, cwd=tmp_path, capture_output=True, text=True, timeout=180)
    assert done.returncode == 0, done.stderr
    assert _chosen(Tally, "value < '10'") == []
    view = project.sql("SELECT subject FROM Tally WHERE subject IN (2, 3) AND value < '10'")
    assert view.empty


def test_a_value_of_lists_or_dicts_beside_single_values_is_json_in_the_view_and_in_where(project):
    """A variable holding a list and a dict beside single values has a JSON value column. where=
    on single values chosen by key typed them alone (text: "a" beside numbers), so `value =
    '"a"'` (JSON's text) found nothing where the view finds "a". Both are JSON now; a text
    compared with it is refused in both, naming (value->>'$') = 'a'."""
    for n, v in enumerate([[1, 2], "a", 1, 2.5, True, None, {"k": 1}], start=1):
        Group.save(v, subject=n, session="pre")
    for where, subjects in {"(value->>'$') = 'a'": [2], "TRY_CAST(value AS DOUBLE) > 1": [4],
                            "value = '\"a\"'": [2], "value IS NULL": [6]}.items():
        view = project.sql(f'SELECT subject FROM "Group" WHERE subject IN (2, 3, 4, 5, 6) AND ({where})')
        assert view["subject"].tolist() == subjects, where
        assert sorted(r.metadata["subject"] for r in Group.load_all(subject=[2, 3, 4, 5, 6], where=where)) == subjects, where
    with pytest.raises(QueryError, match=r"value holds lists or dicts beside single values, so it is JSON.*\(value->>'\$'\) = 'a'"):
        Group.load_all(subject=[2, 3], where="value = 'a'")
    with pytest.raises(QueryError, match=r"A JSON column .*\(value->>'\$'\) = 'a'"):
        project.sql("SELECT subject FROM \"Group\" WHERE value = 'a'")


_mixed_scalar = st.one_of(st.none(), st.booleans(), st.integers(-2, 3), st.sampled_from([0.5, 1.0, 2.5, -1.5]),
                          st.sampled_from(["a", "b", "1", "1.0", "2.5", "true", ""]))
_mixed_literal = st.sampled_from(["'a'", "'1'", "'1.0'", "'2.5'", "'true'", "''", "1", "2", "2.5", "1.0",
                                  "true", "false", "-1"])


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(values=st.lists(_mixed_scalar, min_size=1, max_size=6), op=st.sampled_from(["=", "<>", "<", ">=", "IN"]),
       literals=st.lists(_mixed_literal, min_size=1, max_size=3), chosen=st.sets(st.integers(1, 6), min_size=1))
@example(values=["a", 1.0], op="=", literals=["'1'"], chosen={2})
@example(values=["a", 1], op="=", literals=["'a'"], chosen={1})
@example(values=[True, 2.5, 1], op="IN", literals=["1", "2"], chosen={2})
@example(values=[None], op="<", literals=["1"], chosen={1})
@example(values=[None, None], op=">=", literals=["true"], chosen={2})
def test_a_value_column_of_mixed_types_selects_the_same_records_in_the_view_and_where(
        project, values, op, literals, chosen):
    """For any mix of scalar values and any literal, `=`, `<>`, `<`, `>=` and `IN` select the
    same records in the view (real SQL on the project's file) as in load_all(where=...), or
    both refuse; and on records chosen by key, where= answers as the view does there whenever
    both answer (a refusal may depend on which rows DuckDB casts first)."""
    var = type(f"Mixed{next(_examples)}", (BaseVariable,), {})
    name = var.__name__
    for n, v in enumerate(values, start=1):
        var.save(v, subject=n, session="pre")
    project.sync()
    where = f"value IN ({', '.join(literals)})" if op == "IN" else f"value {op} {literals[0]}"
    view = _answer(lambda: project.sql(f'SELECT subject FROM "{name}" WHERE {where}')["subject"].tolist())
    assert _answer(lambda: [r.metadata["subject"] for r in var.load_all(where=where)]) == view, where
    picked = sorted(n for n in chosen if n <= len(values))
    if not picked:
        return
    view = _answer(lambda: project.sql(f'SELECT subject FROM "{name}" WHERE subject IN '
                                       f'({", ".join(map(str, picked))}) AND ({where})')["subject"].tolist())
    selected = _answer(lambda: [r.metadata["subject"] for r in var.load_all(subject=picked, where=where)])
    if "error" not in (view, selected):
        assert selected == view, (where, picked)


_examples = iter(range(10**6))
_text = st.text(alphabet=st.characters(blacklist_categories=("Cs", "Cc")), max_size=8)


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.one_of(
    st.lists(st.floats(allow_nan=False, allow_infinity=False, width=64), min_size=1, max_size=20),
    st.lists(st.integers(-2**63, 2**63 - 1), min_size=1, max_size=20),
    st.lists(_text, min_size=1, max_size=5),
))
def test_a_saved_list_reads_back_from_its_view(project, items):
    var = type(f"Listed{next(_examples)}", (BaseVariable,), {})  # one type per variable
    var.save(items, subject=1, session="h")
    project.sync()
    got = project.index.query(f"SELECT value FROM {var.__name__}").to_pylist()[0]["value"]
    assert got == items


@pytest.mark.parametrize("make, back", [
    (lambda i: np.arange(i, i + 5, dtype=np.float32) / 4, lambda a: a.astype(float).tolist()),
    (lambda i: np.arange(-i, 3 - i, dtype=np.int16), lambda a: a.tolist()),
    (lambda i: np.array([i % 2 == 0, True]), lambda a: a.tolist()),
    (lambda i: np.array([2**64 - 1 - i, i], dtype=np.uint64), lambda a: a.astype(float).tolist()),
    (lambda i: np.zeros(0), lambda a: []),
    (lambda i: np.arange(4.0).reshape(2, 2) + i, lambda a: a.tolist()),
])
def test_many_arrays_of_one_dtype_and_shape_read_back_from_the_view(project, make, back):
    """Arrays sharing a header are inlined together (inline.py); each row must still be its own."""
    arrays = [make(i) for i in range(25)]
    with project.batch():
        for i, a in enumerate(arrays):
            Typed.save(a, subject=i, session="a")
    project.sync()
    rows = project.sql("SELECT subject, value, shape, dtype FROM Typed ORDER BY subject")
    assert len(rows) == len(arrays)
    for (subject, value, shape, dtype), a in zip(rows.values.tolist(), arrays):
        cells = value.tolist() if hasattr(value, "tolist") else value
        if a.ndim == 2:
            cells = [c.tolist() if hasattr(c, "tolist") else c for c in cells]
        assert cells == back(a) and shape.tolist() == list(a.shape) and dtype == str(a.dtype)


def test_a_damaged_object_among_many_alike_leaves_only_its_own_value_empty(project):
    with project.batch():
        for i in range(10):
            Typed.save(np.full(3, float(i)), subject=i, session="a")
    victim = Typed.load(subject=4, session="a").record.oid
    name, offset, length = project.store.packs.locate(victim)
    pack = project.store.root / "pack" / f"{name}.pack"
    pack.chmod(0o644)
    with open(pack, "r+b") as handle:
        handle.seek(offset + length - 1)
        last = handle.read(1)[0]
        handle.seek(offset + length - 1)
        handle.write(bytes([last ^ 0x40]))
    project.sync()
    got = project.sql("SELECT subject, value FROM Typed ORDER BY subject")
    assert got["value"].isna().tolist() == [i == 4 for i in range(10)]
    assert [v.tolist() for v in got["value"].drop(4)] == [[float(i)] * 3 for i in range(10) if i != 4]


def test_a_version_beyond_int32_reaches_the_views(tmp_path):
    """The journal takes any int64 version (another client, an import); DuckDB's column is BIGINT."""
    db = scistack.configure_database(tmp_path / "big.duckdb", ["subject", "session"], sync_delay=3600)
    try:
        saved = Typed.save(1.5, subject=1, session="a")
        line = json.dumps({"addr": {"session": "a", "subject": 1}, "call": None, "kind": "json",
                           "oid": saved.oid, "op": "put", "params": {}, "summary": "1.5",
                           "t": "2026-12-04T07:32:43.631647Z", "var": "Typed", "version": 3_000_000_000,
                           "vkeys": {}}, sort_keys=True, separators=(",", ":"))
        with open(tmp_path / ".scistack" / "refs.log", "a") as journal:
            journal.write(line + "\n")
        db.sync()
        assert db.sql("SELECT version, value FROM Typed").values.tolist() == [[3_000_000_000, 1.5]]
        assert Typed.load(subject=1, session="a").version == 3_000_000_000
    finally:
        db.close()


@pytest.mark.parametrize("count", [3, 300])  # a few oids are found by `okey`, many by a join
def test_content_named_again_in_a_later_sync_keeps_its_value_and_type(tmp_path, monkeypatch, count):
    """A later sync that names content DuckDB already holds inlines nothing again and gives the
    new refs their value's SQL type (from the rows there, not a scan of every inline row)."""
    monkeypatch.chdir(tmp_path)
    db = scistack.configure_database(tmp_path / "again.duckdb", ["subject", "session"], sync_delay=3600)
    try:
        with db.batch():
            for n in range(count):
                Typed.save(np.arange(3.0) + n, subject=n, session="a")
        db.sync()
        with db.batch():
            for n in range(count):
                Typed.save(np.arange(3.0) + n, subject=n, session="b")  # the same content again
            Frame.save(2.5, subject=0, session="b")  # and one new value beside it
        db.sync()
        rows = db.sql("SELECT subject, session, value FROM Typed ORDER BY subject, session")
        assert len(rows) == 2 * count
        assert [list(v) for v in rows["value"]] == [[n, n + 1.0, n + 2.0] for n in range(count) for _ in "ab"]
        assert db.sql("SELECT value FROM Frame")["value"].tolist() == [2.5]
        assert db.sql("SELECT var, sqltype FROM scistack.shapes ORDER BY var").values.tolist() == [
            ["Frame", "DOUBLE"], ["Typed", "DOUBLE[]"]]
        kept = db.sql("SELECT oid, okey, count(*) OVER (PARTITION BY oid) AS n FROM scistack.vals")
        assert (kept["n"] == 1).all() and len(kept) == count + 1
        assert all(int(oid[:15], 16) == okey for oid, okey in zip(kept["oid"], kept["okey"]))
    finally:
        db.close()


def test_a_sync_past_what_it_remembers_asks_duckdb_and_gives_the_same_views(tmp_path, monkeypatch):
    """A first sync (or a rebuild) keeps the oids it inlined in memory only up to a bound; past
    it, each slice asks DuckDB what it holds, and the views are the same: content repeated
    across slices is inlined once and every ref has its value."""
    from scistack.index import sql as sql_module

    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sql_module, "_REMEMBER_INLINED", 5)
    monkeypatch.setattr(sql_module, "_SYNC_BYTES", 2000)  # a few journal lines a slice
    asked = []
    known_vals = sql_module._known_vals
    monkeypatch.setattr(sql_module, "_known_vals", lambda con, oids: asked.append(len(oids)) or known_vals(con, oids))
    db = scistack.configure_database(tmp_path / "bound.duckdb", ["subject", "session"], sync_delay=3600)
    try:
        with db.batch():
            for n in range(40):
                Typed.save(np.arange(3.0) + n % 7, subject=n, session="a")  # 7 contents, each named again later
        db.sync()
        assert asked  # the bound was passed: later slices asked DuckDB
        rows = db.sql("SELECT subject, value FROM Typed ORDER BY subject")
        assert [list(v) for v in rows["value"]] == [[n % 7, n % 7 + 1.0, n % 7 + 2.0] for n in range(40)]
        assert db.sql("SELECT count(*) AS n, count(DISTINCT oid) AS d FROM scistack.vals").values.tolist() == [[7, 7]]
        assert db.sql("SELECT sqltype FROM scistack.shapes WHERE var = 'Typed'")["sqltype"].tolist() == ["DOUBLE[]"]
    finally:
        db.close()


class Emg(BaseVariable):
    pass


class EMG(BaseVariable):
    pass


def test_a_new_variable_named_like_another_but_for_case_is_refused(project):
    """SQL names ignore case: `EMG` beside `Emg` would have been one view, hiding one of them
    from every query. The second name is refused before anything is written."""
    Emg.save(1.0, subject=1, session="pre")
    journal = (project.path.parent / ".scistack" / "refs.log").read_bytes()
    with pytest.raises(scistack.ScistackError, match=r"'EMG' differs from the project's variable 'Emg' only by case"):
        EMG.save(2.0, subject=1, session="pre")
    assert (project.path.parent / ".scistack" / "refs.log").read_bytes() == journal
    Emg.save(3.0, subject=2, session="pre")  # the existing spelling goes on growing
    assert Emg.load(subject=2, session="pre").data == 3.0
    with pytest.raises(scistack.ScistackError, match="only by case"):
        for_each(lambda x: x, inputs={"x": Emg}, outputs=[EMG], subject=[1], session=["pre"])


def test_an_older_project_with_two_spellings_shows_one_of_them_and_says_so(project, caplog):
    """A project written before such names were refused (or by two machines at once): the
    views of the spelling first in binary order stay whole and the other's are not made over
    them, whichever was synced last; the other still loads from Python."""
    Emg.save(1.0, subject=1, session="pre")
    project.close()
    journal = project.path.parent / ".scistack" / "refs.log"
    line = journal.read_bytes().splitlines()[-1]
    twin = json.loads(line)
    twin["var"] = "EMG"
    with journal.open("ab") as out:  # as an older scistack wrote it
        out.write(json.dumps(twin, sort_keys=True, separators=(",", ":")).encode() + b"\n")
    with caplog.at_level("WARNING", logger="scistack.index.views"):  # (the background sync's too)
        db = scistack.configure_database(project.path, ["subject", "session"])
        Emg.save(5.0, subject=2, session="pre")  # a later sync touches only Emg
        assert EMG.load(subject=1, session="pre").data == 1.0
        db.sync()
    con = plain_session(db)
    assert con.execute('SELECT subject, value FROM "EMG" ORDER BY subject').fetchall() == [(1, 1.0)]
    assert con.execute('SELECT count(*) FROM "Emg"').fetchone()[0] == 1  # one view: EMG's
    assert "variable Emg has no SQL views" in caplog.text


class Force(BaseVariable):
    pass


class Force_all(BaseVariable):  # noqa: N801 - a name like one of Force's views, as a user may give
    pass


class Force_branches(BaseVariable):  # noqa: N801
    pass


def test_a_variable_named_like_a_view_of_another_is_refused_either_way(project):
    """`Force_all` beside `Force` silently took over Force's view of every version: `SELECT *
    FROM Force_all` showed the other variable. Whichever comes second is refused, before
    anything is written, naming the view; each alone is fine."""
    Force.save(1.0, subject=1, session="pre")
    journal = (project.path.parent / ".scistack" / "refs.log").read_bytes()
    with pytest.raises(scistack.ScistackError, match=r"'Force_all' would take the name of the SQL view "
                       r"Force_all \(every version of the project's variable 'Force'.*e\.g\. ForceAll"):
        Force_all.save(99.0, subject=1, session="pre")
    with pytest.raises(scistack.ScistackError, match=r"view Force_all"), project.batch():
        Force_all.save(99.0, subject=1, session="pre")
    assert (project.path.parent / ".scistack" / "refs.log").read_bytes() == journal
    with pytest.raises(scistack.ScistackError, match=r"view Force_branches"):
        for_each(lambda x: x, inputs={"x": Force}, outputs=[Force_branches], subject=[1], session=["pre"])
    assert not Force_branches.load_all()
    Force.delete(subject=1, session="pre")  # Force gone: Force_all is a name like any other
    Force_all.save(99.0, subject=1, session="pre")
    with pytest.raises(scistack.ScistackError, match=r"'Force' would have the SQL view Force_all \(every "
                       r"version\), but the project's variable 'Force_all' has that name.*e\.g\. Force2"):
        Force.save(1.0, subject=1, session="pre")
    assert project.sql("SELECT value FROM Force_all")["value"].tolist() == [99.0]


def test_an_older_project_with_a_variable_named_like_a_view_opens_and_says_so(project, caplog, monkeypatch):
    """A project that holds `Force` and `Force_all` (saved before such names were refused)
    opens, both load and grow, `Force_all` is the variable's view, and the view of Force's
    versions not made is said once."""
    monkeypatch.setattr(views, "_warned", set())  # (said once a process: maybe by another test)
    Force.save(1.0, subject=1, session="pre")
    Force.save(2.0, subject=1, session="pre")
    project.close()
    journal = project.path.parent / ".scistack" / "refs.log"
    twin = json.loads(journal.read_bytes().splitlines()[-1])
    twin.update(var="Force_all", version=1)
    with journal.open("ab") as out:  # as an older scistack wrote it
        out.write(json.dumps(twin, sort_keys=True, separators=(",", ":")).encode() + b"\n")
    with caplog.at_level("WARNING", logger="scistack.index.views"):
        db = scistack.configure_database(project.path, ["subject", "session"])
        assert Force_all.load(subject=1, session="pre").data == 2.0
        Force.save(3.0, subject=2, session="pre")  # both go on growing
        Force_all.save(4.0, subject=2, session="pre")
        assert [v.version for v in Force.list_versions(subject=1, session="pre")] == [1, 2]
        db.sync()
        db.sync()
    con = plain_session(db)
    assert con.execute("SELECT subject, value FROM Force_all ORDER BY subject").fetchall() == [(1, 2.0), (2, 4.0)]
    said = "the view Force_all of Force is not made: the variable Force_all has that name"
    assert caplog.text.count(said) == 1

def test_a_table_of_the_users_own_named_like_a_view_is_kept_and_the_views_go_on(project, caplog):
    """A user's own table in the DuckDB file (made in DBeaver) named like a variable, or like
    scistack_variables, made the sync fail replacing it: every later sync failed the same way,
    so no view of any variable moved again."""
    EmgRaw.save(1.0, subject=1, session="pre")
    project.close()
    with duckdb.connect(str(project.path)) as con:
        con.execute("CREATE TABLE emgfiltered (note VARCHAR)")
        con.execute("INSERT INTO emgfiltered VALUES ('mine')")
        con.execute("DROP VIEW scistack_variables; CREATE TABLE scistack_variables (n INT)")
    with caplog.at_level("WARNING", logger="scistack.index.views"):
        db = scistack.configure_database(project.path, ["subject", "session"])
        EmgFiltered.save(2.0, subject=1, session="pre")
        db.sync()
        EmgRaw.save(3.0, subject=2, session="pre")
        db.sync()
    assert EmgFiltered.load(subject=1, session="pre").data == 2.0
    con = plain_session(db)
    assert con.execute("SELECT * FROM emgfiltered").fetchall() == [("mine",)]
    assert con.execute("SELECT count(*) FROM scistack_variables").fetchone()[0] == 0
    assert con.execute('SELECT subject, value FROM "EmgRaw" ORDER BY subject').fetchall() == [(1, 1.0), (2, 3.0)]
    assert "the view EmgFiltered is not made: a table of your own" in caplog.text


def test_join_selects_an_older_branch_as_load_all_does(pipeline):
    """`where="low_hz = 10"` (or `low_hz=10`) picks the low_hz=10 branch of each variable that
    has the parameter, as `load_all(where=...)` does; the join had filtered the newest rows
    (low_hz=20) and found nothing. With two variables that both have it, each selects."""
    by_load_all = PeakActivation.load_all(as_df=True, where="low_hz = 10 AND subject <= 2")
    assert len(by_load_all) == 4 and set(by_load_all["low_hz"]) == {10}
    for joined in (scistack.join(PeakActivation, StrideLength, where="low_hz = 10 AND subject <= 2"),
                   scistack.join(PeakActivation, StrideLength, low_hz=10, subject=[1, 2]),
                   scistack.join(PeakActivation, StrideLength, where=("subject BETWEEN ? AND 2 AND low_hz = ?", [1, 10]))):
        assert joined[["subject", "session", "PeakActivation"]].values.tolist() == \
            by_load_all[["subject", "session", "data"]].values.tolist()
        assert joined["StrideLength"].tolist() == pytest.approx([0.6, 0.6, 0.7, 0.7])
    both = scistack.join(PeakActivation, EmgFiltered, where="low_hz = 10")
    assert len(both) == 8 and set(both["low_hz_PeakActivation"]) == set(both["low_hz_EmgFiltered"]) == {10}
    for row in both.itertuples():
        assert row.PeakActivation == pytest.approx(float(np.max(row.EmgFiltered)))
    # a part naming a value stays a check of the joined rows; the parameter part still selects
    high = scistack.join(PeakActivation, StrideLength, where="low_hz = 10 AND StrideLength > 0.75")
    assert sorted(set(high["subject"])) == [3, 4] and set(high["low_hz"]) == {10}
    with pytest.raises(QueryError, match="AND with nothing"):
        scistack.join(PeakActivation, StrideLength, where="low_hz = 10 AND")


def test_a_condition_is_cut_at_its_top_level_ands_only():
    from scistack.where import conjuncts

    assert conjuncts(("low_hz IN (10, 20) AND subject BETWEEN ? AND 3 AND session = 'a AND b'", [1])) == [
        ("low_hz IN (10, 20)", [], {"low_hz"}), ("subject BETWEEN ? AND 3", [1], {"subject"}),
        ("session = 'a AND b'", [], {"session"})]
    assert conjuncts("NOT (low_hz = 10 AND subject = 1)") == [
        ("NOT (low_hz = 10 AND subject = 1)", [], {"low_hz", "subject"})]
    for wrong in ("AND low_hz = 1", "low_hz = 1 AND", "(low_hz = 1", "low_hz = 1; DROP TABLE x"):
        with pytest.raises(QueryError):
            conjuncts(wrong)


def test_join_with_a_variable_saved_at_two_levels_takes_its_finest_value_per_row(project):
    """A calibration per subject, and a session's own in one place: each session joins with
    its own where it has one, else its subject's, as for_each takes an input. The join had
    kept only the rows of the session-level value (one row of four)."""
    for subject in (1, 2):
        StrideLength.save(float(subject), subject=subject)
        for session in ("pre", "post"):
            PeakActivation.save(subject * 10.0 + (session == "pre"), subject=subject, session=session)
    StrideLength.save(9.0, subject=1, session="pre")
    expected = [[1, "post", 10.0, 1.0], [1, "pre", 11.0, 9.0], [2, "post", 20.0, 2.0], [2, "pre", 21.0, 2.0]]
    for joined in (scistack.join(PeakActivation, StrideLength), scistack.join(StrideLength, PeakActivation)):
        assert joined[["subject", "session", "PeakActivation", "StrideLength"]].values.tolist() == expected
        assert not [c for c in joined.columns if c.startswith("__")]
    assert scistack.join(PeakActivation, StrideLength, where="StrideLength > 5")["session"].tolist() == ["pre"]


_joins = iter(range(10**6))


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    finer=st.sets(st.tuples(st.integers(1, 3), st.sampled_from(["pre", "post", "mid"])), max_size=7),
    coarse=st.sets(st.integers(1, 3), max_size=3),
    mixed=st.sets(st.tuples(st.integers(1, 3), st.sampled_from(["pre", "post", "mid"])), max_size=4),
    left=st.booleans(),
)
@example(finer={(2, "pre")}, coarse={1}, mixed={(1, "pre")}, left=False)  # no row: had raised KeyError
def test_join_agrees_with_the_finest_covering_value_per_row(project, finer, coarse, mixed, left):
    """A session-level variable joined with one saved per subject and, in places, per session:
    each row the session variable has gets the other's own value there, else its subject's,
    else no row; either order of the two."""
    n = next(_joins)
    sessions = type(f"JoinSes{n}", (BaseVariable,), {})
    levels = type(f"JoinLev{n}", (BaseVariable,), {})
    if not finer or not (coarse or mixed):
        return
    for subject, session in finer:
        sessions.save(subject * 10.0 + len(session), subject=subject, session=session)
    for subject in coarse:
        levels.save(float(subject), subject=subject)
    for subject, session in mixed:
        levels.save(100.0 + subject + len(session), subject=subject, session=session)
    expected = []
    for subject, session in sorted(finer):
        value = (100.0 + subject + len(session) if (subject, session) in mixed
                 else float(subject) if subject in coarse else None)
        if value is not None:
            expected.append([subject, session, subject * 10.0 + len(session), value])
    joined = scistack.join(*((sessions, levels) if left else (levels, sessions)))
    got = joined[["subject", "session", sessions.__name__, levels.__name__]].values.tolist() if len(joined) else []
    assert sorted(got) == sorted(expected)


class Order(BaseVariable):  # an ordinary class name in a lab, and an SQL keyword
    pass


def test_a_variable_named_by_a_keyword_is_queried_in_double_quotes(project):
    """`SELECT * FROM Order` failed with DuckDB's bare syntax error and a hint about read-only
    indexes; the message now says to double-quote the view's name."""
    Order.save(1.5, subject=1, session="pre")
    with pytest.raises(QueryError, match=r'order is an SQL keyword.*double quotes.*FROM "Order"'):
        project.sql("SELECT subject, value FROM order")
    assert project.sql('SELECT value FROM "Order"')["value"].tolist() == [1.5]


class RacedIn(BaseVariable):
    pass


_SAME_CALL_AT_ONCE = '''
import sys
from scistack import BaseVariable, configure_database, for_each, lineage_fcn

class RacedIn(BaseVariable): pass
class RacedOut(BaseVariable): pass

@lineage_fcn
def double(signal):
    print("inside", flush=True)  # the test lets both go on once both are inside (both missed the cache)
    sys.stdin.readline()
    return signal * 2

if __name__ == "__main__":
    db = configure_database(sys.argv[1], ["subject"])
    done = for_each(double, inputs={"signal": RacedIn}, outputs=[RacedOut], subject=[1], progress=False)
    assert done.ran == 1, done.counts
    db.close()
'''


def test_scistack_calls_names_the_record_the_fold_names_after_two_processes_ran_a_call_at_once(
        tmp_path, python_env):
    """Two processes that run the same call at once both miss the cache and each journal a
    call line of its own for the key (the same outputs, another record). The fold (cache hits,
    why) keeps the key's last line and DuckDB's scistack.calls kept its first: SQL named
    another record than `why`. Both follow `state.call_changes` now."""
    import subprocess
    import sys

    path = tmp_path / "race.duckdb"
    db = scistack.configure_database(path, ["subject"])
    try:
        RacedIn.save(np.arange(3.0), subject=1)
    finally:
        db.close()
    script = tmp_path / "same_call.py"
    script.write_text(_SAME_CALL_AT_ONCE)
    procs = [subprocess.Popen([sys.executable, str(script), str(path)], env=python_env, cwd=tmp_path,
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for _ in range(2)]
    said = [proc.stdout.readline() for proc in procs]  # (each blocks until its process is inside)
    for proc in procs:
        out, err = proc.communicate("go\n", timeout=180)
        assert proc.returncode == 0 and said == ["inside\n"] * 2, err
    db = scistack.configure_database(path, ["subject"])
    try:
        lines = [json.loads(line) for line in (tmp_path / ".scistack/refs.log").read_text().splitlines()
                 if '"op":"call"' in line]
        assert len({e["key"] for e in lines}) == 1 and len({e["call"] for e in lines}) == 2  # (the race)
        assert len({json.dumps(e["outs"]) for e in lines}) == 1
        key = lines[0]["key"]
        entry = db.index.cached_call(key)
        assert entry["call"] == lines[-1]["call"]
        assert db.sql("SELECT key, call FROM scistack.calls").values.tolist() == [[key, entry["call"]]]
    finally:
        db.close()


def test_scistack_calls_keeps_a_key_s_last_call_line_as_the_fold_does(pipeline):
    """A key journalled twice (each record of its own): SQL's scistack.calls names the record
    the cache names, whether the two lines are synced apart or in one slice; an `uncall` of
    the replaced record leaves the entry alone, one of the entry's record drops it; a rebuild
    of DuckDB from the journal says the same."""
    import dataclasses

    from scistack.records import read_call

    db = pipeline
    refs = db.index.select("EmgFiltered", {}, {}, {})
    keys = [db.index.call_key_of(ref.call) for ref in refs]
    assert len(set(keys)) == len(refs) > 3

    def record_again(key: str, ref, started: str) -> str:
        entry = db.index.cached_call(key)
        again = dataclasses.replace(read_call(db.store, ref.call), started=started)
        oid = db.store.put("call", again.to_bytes())
        db.index.put_call(key, oid, entry["fn"], list(entry["outs"]), multi=bool(entry.get("multi")))
        return oid

    def in_sql() -> dict[str, str]:
        return dict(db.sql("SELECT key, call FROM scistack.calls").values.tolist())

    db.sql("SELECT count(*) FROM scistack.calls")  # the first lines synced apart from the second
    seconds = {key: record_again(key, ref, "2001-01-01T00:00:00Z") for key, ref in zip(keys, refs)}
    for key, ref in zip(keys[:2], refs[:2]):  # a third record of two keys, synced with the second
        seconds[key] = record_again(key, ref, "2002-01-01T00:00:00Z")
    db.index.drop_calls([{"key": keys[0], "call": refs[0].call}])  # (names no entry now)
    db.index.drop_calls([{"key": keys[1], "call": seconds[keys[1]]}])  # (the entry's own)
    del seconds[keys[1]]
    cached = {k: e["call"] for k in keys if (e := db.index.cached_call(k)) is not None}
    assert cached == seconds
    assert {k: c for k, c in in_sql().items() if k in keys} == seconds
    for ref in refs:  # every record journalled for a key keeps its key
        assert db.index.call_key_of(ref.call) in keys
    db.reindex()  # (the fold and DuckDB folded again, every line in one pass)
    assert {k: e["call"] for k in keys if (e := db.index.cached_call(k)) is not None} == seconds
    assert {k: c for k, c in in_sql().items() if k in keys} == seconds
    assert all(db.index.call_key_of(ref.call) in keys for ref in refs)


_CALL_OPS = st.lists(st.one_of(
    st.tuples(st.sampled_from(["call", "uncall"]), st.integers(0, 1), st.integers(0, 2)),
    st.just(("sync",)),
    st.lists(st.tuples(st.just("call"), st.integers(0, 1), st.integers(0, 2)), min_size=2, max_size=4)),
    max_size=12)


@settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(ops=_CALL_OPS)
# a record uncalled twice in one DuckDB slice (its DELETE ... USING named the row twice: refused)
@example(ops=[[("call", 0, 0), ("call", 1, 2)], ("uncall", 1, 2), ("uncall", 1, 2)])
def test_the_fold_duckdb_and_a_fresh_fold_keep_the_same_call_entries(tmp_path_factory, ops):
    """Any journal of call and uncall lines (some held in a batch and folded together, DuckDB
    synced between any two): the fold, DuckDB's scistack.calls and a fresh fold of the
    journal (gc's and fsck's) name the same record for each key, the one `call_changes`'
    rule gives (a key's last call line; an uncall drops only the record it names); and every
    record journalled keeps its key (`call_key_of`), its line the entry or not."""
    path = tmp_path_factory.mktemp("calls") / "calls.duckdb"
    db = scistack.configure_database(path, ["subject"], sync_delay=3600)
    try:
        expected: dict[str, str] = {}
        keys_of_calls: dict[str, str] = {}  # every record journalled -> its key, an entry's or not

        def apply(op: str, k: int, r: int) -> None:
            key, call = f"{k + 1:064x}", f"{16 * (k + 1) + r:064x}"
            if op == "call":
                db.index.put_call(key, call, f"{255:064x}", [])
                expected[key], keys_of_calls[call] = call, key
            else:
                db.index.drop_calls([{"key": key, "call": call}])
                if expected.get(key) == call:
                    del expected[key]

        for op in ops:
            if op == ("sync",):
                db.sync()
            elif isinstance(op, list):
                with db.batch():
                    for one in op:
                        apply(*one)
            else:
                apply(*op)
        assert {e["key"]: e["call"] for e in db.index.calls()} == expected
        assert dict(db.sql("SELECT key, call FROM scistack.calls").values.tolist()) == expected
        fresh = db.index.full_fold()[0]
        assert {k: e["call"] for k, e in fresh.calls.items()} == expected
        assert fresh.call_keys == keys_of_calls
        assert {call: db.index.call_key_of(call) for call in keys_of_calls} == keys_of_calls
    finally:
        db.close()
