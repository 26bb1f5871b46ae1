"""Every per-variable view in DuckDB agrees with the fold of the journal: the newest version of
each (address, version keys), after any mix of saves, re-saves and deletes."""

from __future__ import annotations

import tempfile
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import scistack.database as database_module
from scistack import BaseVariable, configure_database


class AgreeA(BaseVariable):
    pass


class AgreeB(BaseVariable):
    pass


VARIABLES = {"AgreeA": AgreeA, "AgreeB": AgreeB}
save = st.tuples(st.just("save"), st.sampled_from(sorted(VARIABLES)), st.integers(1, 3),
                 st.sampled_from(["pre", "post"]), st.sampled_from([None, "recal"]), st.integers(0, 2))
delete = st.tuples(st.just("delete"), st.sampled_from(sorted(VARIABLES)), st.integers(1, 3))


@settings(max_examples=10, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.one_of(save, delete), min_size=1, max_size=12), st.booleans())
def test_views_agree_with_the_fold(ops, batched):
    with tempfile.TemporaryDirectory() as tmp:
        db = configure_database(Path(tmp) / "agree.duckdb", ["subject", "session"])
        try:
            for op in ops:
                if op[0] == "save":
                    _, var, subject, session, note, value = op
                    extra = {"note": note} if note else {}
                    if batched:
                        with db.batch():
                            VARIABLES[var].save(float(value), subject=subject, session=session, **extra)
                    else:
                        VARIABLES[var].save(float(value), subject=subject, session=session, **extra)
                else:
                    _, var, subject = op
                    try:
                        VARIABLES[var].delete(subject=subject)
                    except LookupError:
                        pass
            for var in VARIABLES:
                fold = sorted((r.addr["subject"], r.addr["session"], r.vkeys.get("note") or "", r.version, r.oid)
                              for r in db.index.select(var, {}, {}, {}))
                if var not in db.index.variables():
                    assert fold == []
                    continue
                frame = db.sql(f'SELECT * FROM "{var}"')
                notes = frame["note"] if "note" in frame else [None] * len(frame)
                view = sorted((int(s), se, n if isinstance(n, str) else "", int(v), o)
                              for s, se, n, v, o in zip(frame["subject"], frame["session"], notes,
                                                        frame["version"], frame["oid"]))
                assert view == fold
            assert _last_changes_in_view(db) == _last_changes_in_ls(db)
        finally:
            db.close()
            database_module._current = None


def _last_changes_in_ls(db) -> dict[str, object]:
    import pandas as pd

    return {var: pd.Timestamp(last) for var, *_, last in db.index.summaries()}


def _last_changes_in_view(db) -> dict[str, object]:
    frame = db.sql("SELECT variable, last_change FROM scistack_variables")
    return dict(zip(frame["variable"], frame["last_change"]))


def test_a_delete_is_the_last_change_in_ls_and_in_the_view(tmp_path):
    """A delete changes a variable: `ls` and `scistack_variables` give its time as the last
    change (they gave the newest live save's, which a delete of the newest even moved back)."""
    import pandas as pd

    db = configure_database(tmp_path / "last.duckdb", ["subject", "session"])
    try:
        AgreeA.save(1.0, subject=1, session="pre")
        AgreeA.save(2.0, subject=2, session="pre")
        saved = _last_changes_in_ls(db)["AgreeA"]
        AgreeA.delete(subject=2)
        deleted = max(pd.Timestamp(e["t"]) for e in db.index._journal.read_from(0)[0] if e["op"] == "del")
        assert saved < deleted
        assert _last_changes_in_ls(db) == _last_changes_in_view(db) == {"AgreeA": deleted}
        AgreeB.save(1.0, subject=1, session="pre")  # another variable's change leaves it alone
        assert _last_changes_in_ls(db)["AgreeA"] == _last_changes_in_view(db)["AgreeA"] == deleted
    finally:
        db.close()
        database_module._current = None


_VALUES = [1.5, 2, "text", True, [1, 2], {"a": 1}]
shaped_save = st.tuples(st.just("save"), st.sampled_from(sorted(VARIABLES)), st.sampled_from([1, 2, "s3"]),
                        st.sampled_from([None, "recal", 7]), st.integers(0, len(_VALUES) - 1))


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.one_of(shaped_save, delete), min_size=1, max_size=10))
def test_view_columns_kept_step_by_step_are_those_of_a_rebuild(ops):
    """Each sync derives the views' columns from the few refs kept per shape (`scistack.shapes`);
    after any saves of mixed address, version-key and value types and deletes, every view must
    have exactly the columns and types a scan of every ref (and a rebuild) gives it."""
    with tempfile.TemporaryDirectory() as tmp:
        db = configure_database(Path(tmp) / "shapes.duckdb", ["subject", "session"], sync_delay=3600)
        try:
            for op in ops:
                if op[0] == "save":
                    _, var, subject, note, value = op
                    extra = {"note": note} if note is not None else {}
                    VARIABLES[var].save(_VALUES[value], subject=subject, session="pre", **extra)
                else:
                    try:
                        VARIABLES[op[1]].delete(subject=op[2])
                    except LookupError:
                        pass
                db.sync()
            assert _structures(db, "scistack.shapes") == _structures(db, "scistack.refs")
            columns = _view_columns(db)
            db.reindex()
            assert _view_columns(db) == columns
        finally:
            db.close()
            database_module._current = None


def _view_columns(db) -> dict[str, list[tuple[str, str]]]:
    names = db.sql("SELECT view_name FROM duckdb_views() WHERE NOT internal")["view_name"].tolist()
    return {name: [tuple(r) for r in db.sql(f'DESCRIBE "{name}"')[["column_name", "column_type"]].values.tolist()]
            for name in sorted(names)}


def _structures(db, table: str) -> list[tuple]:
    """Per variable, the JSON structure of addresses, version keys and parameters, and the
    value types, over every ref or over the few kept per shape."""
    types, source = (("r.sqltype", "scistack.shapes r") if table == "scistack.shapes" else
                     ("v.sqltype", "scistack.refs r LEFT JOIN scistack.vals v ON v.oid = r.oid"))
    frame = db.sql(
        "SELECT r.var, json_group_structure(CAST(r.addr AS JSON)) AS a, json_group_structure(CAST(r.vkeys AS JSON)) "
        "AS k, json_group_structure(CAST(r.params AS JSON)) AS p, "
        f"list_sort(list(DISTINCT coalesce({types}, '-'))) AS t FROM {source} GROUP BY r.var ORDER BY r.var")
    return [tuple(str(x) for x in row) for row in frame.values.tolist()]


# -- load_all(as_df=True) read from DuckDB in one query, against the fold's records -----------
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from scistack import for_each, lineage_fcn  # noqa: E402

_ODD = [float("nan"), float("inf"), -0.0, 1e300, np.float64(2.25), np.float32(0.1), np.float16(3.5), 2**70 + 1,
        2**70, 7, np.array(4.5), True]
_KEYS = {"ints": [1, 2, 10, -3], "strings": ["a", "b", "é", "10"], "mixed": [1, "a", 2, "b"]}
_value = st.one_of(*[st.floats(-1e6, 1e6)] * 15, st.sampled_from(_ODD))


def _from_the_fold(var: type[BaseVariable], db, **options) -> pd.DataFrame:
    """The frame as the records and objects give it: a batch's saves are DuckDB's to learn, so
    inside one `load_all` reads the fold."""
    with db.batch():
        return var.load_all(as_df=True, **options)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.sampled_from(sorted(_KEYS)),
       st.lists(st.tuples(st.sampled_from(["save"] * 5 + ["delete"]), st.integers(0, 3),
                          st.sampled_from(["pre", "post", None]), _value), min_size=1, max_size=16),
       st.sampled_from([True, True, True, False]))
def test_load_all_frame_from_duckdb_is_the_folds(keys, ops, synced):
    """`load_all(as_df=True)` of a variable of doubles comes from one DuckDB query when DuckDB
    is in step (`Index.newest_doubles`): whatever was saved (floats, NaN, -0.0, numpy floats,
    ints beyond 64 bits, 0-d arrays, ints, bools; keys ints or strings, mixed or
    not; saved per subject only (no session: the column is there, all None); versions and
    deletes), the frame must be the one the fold's records and the
    objects give, column for column, dtype for dtype, row for row."""
    with tempfile.TemporaryDirectory() as tmp:
        db = configure_database(Path(tmp) / "frame.duckdb", ["subject", "session"], sync_delay=3600)
        try:
            for op, key, session, value in ops:
                if op == "save":
                    AgreeA.save(value, subject=_KEYS[keys][key], **({} if session is None else {"session": session}))
                else:
                    try:
                        AgreeA.delete(subject=_KEYS[keys][key])
                    except LookupError:
                        pass
            if synced:
                db.sync()
            if "AgreeA" not in db.index.variables():
                return
            pd.testing.assert_frame_equal(AgreeA.load_all(as_df=True), _from_the_fold(AgreeA, db),
                                          check_exact=True)
        finally:
            db.close()
            database_module._current = None


def test_load_all_frame_from_duckdb_has_a_schema_key_no_record_holds(project):
    """Doubles saved per subject only: DuckDB's frame has the session column, all None, as
    the fold's (a frame's columns must not depend on whether DuckDB is in step)."""
    for subject in (1, 2, 3):
        AgreeA.save(subject + 0.5, subject=subject)
    project.sync()
    assert project.index.newest_doubles("AgreeA") is not None  # (the DuckDB path is the one taken)
    frame = AgreeA.load_all(as_df=True)
    assert list(frame.columns[:2]) == ["subject", "session"] and frame["session"].isna().all()
    pd.testing.assert_frame_equal(frame, _from_the_fold(AgreeA, project), check_exact=True)


@lineage_fcn
def _halved(x):
    return x / 2


def test_load_all_frame_from_duckdb_names_newest_versions_and_functions(project):
    """The newest version of each address, a deleted newest giving back the one before, string
    keys in the fold's order, and the `fn` of computed doubles: as the fold's frame."""
    for subject in (3, 1, 2):
        for session in ("pré", "post", "a"):
            AgreeA.save(subject + 0.5, subject=subject, session=session)
    AgreeA.save(9.75, subject=1, session="post")
    AgreeA.save(10.25, subject=1, session="a")
    AgreeA.delete(subject=1, session="a", version=2)
    for_each(_halved, inputs={"x": AgreeA}, outputs=[AgreeB], progress=False, subject=[1, 2, 3],
             session=["pré", "post", "a"])
    project.sync()
    for var in (AgreeA, AgreeB):
        frame = var.load_all(as_df=True)
        pd.testing.assert_frame_equal(frame, _from_the_fold(var, project), check_exact=True)
    frame = AgreeA.load_all(as_df=True)
    assert frame[frame.subject == 1].set_index("session")["data"].to_dict() == {"a": 1.5, "post": 9.75, "pré": 1.5}
    assert frame["session"].tolist()[:3] == ["a", "post", "pré"]
    assert set(AgreeB.load_all(as_df=True)["fn"]) == {"_halved"}
