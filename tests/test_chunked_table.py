"""Chunked tables (issue 14): a large DataFrame / Series / Arrow table as row groups, loadable
whole, lazily as a dask dataframe, or by columns; row groups dedupe across versions."""

from __future__ import annotations

import os

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest
from click.testing import CliRunner

from scistack import BaseVariable
from scistack.cli import main
from scistack.errors import ChunkReadError, ScistackError
from scistack.fsck import fsck
from scistack.gc import collect_garbage
from scistack.objects.chunking import set_chunking
from scistack.objects.lazy import LazyTable
from scistack.objects.store import hash_value


@pytest.fixture(autouse=True)
def tiny_chunks():
    set_chunking(threshold=16 << 10, chunk_bytes=4 << 10)
    yield
    set_chunking()


class Trials(BaseVariable):
    pass


def trials(n: int = 5000) -> pd.DataFrame:
    rng = np.random.default_rng(0)
    return pd.DataFrame({
        "trial": np.arange(n),
        "force": rng.standard_normal(n),
        "label": [f"s{i % 17}" for i in range(n)],
        "side": pd.Categorical(["left", "right"] * (n // 2)),
        "count": pd.array([None if i % 7 == 0 else i for i in range(n)], dtype="Int64"),
        "at": pd.date_range("2026-01-01", periods=n, freq="s", tz="UTC"),
    })


def drop_objects(db, oids) -> None:
    for oid in oids:
        path = db.store.path_of(oid)
        os.chmod(path, 0o644)
        os.unlink(path)


def test_tables_round_trip_whole_with_one_oid(project):
    frame = trials()
    saved = Trials.save(frame, subject=1, session="pre")
    assert saved.record.kind == "chunked" and saved.oid == hash_value(frame)
    pd.testing.assert_frame_equal(Trials.load(subject=1, session="pre").data, frame)
    series = frame["force"].rename("F")
    Trials.save(series, subject=2, session="pre")
    pd.testing.assert_series_equal(Trials.load(subject=2, session="pre").data, series)
    table = pa.Table.from_pandas(frame.drop(columns="at"), preserve_index=False)
    Trials.save(table, subject=3, session="pre")
    assert Trials.load(subject=3, session="pre").data.equals(table)
    indexed = frame.set_index("label")
    Trials.save(indexed, subject=4, session="pre")
    pd.testing.assert_frame_equal(Trials.load(subject=4, session="pre").data, indexed)


def test_lazy_table_by_columns_and_as_dask(project):
    frame = trials()
    Trials.save(frame, subject=1, session="pre")
    lazy = Trials.load(subject=1, session="pre", lazy=True).data
    assert isinstance(lazy, LazyTable) and lazy.num_rows == 5000 and lazy.columns == list(frame.columns)
    pd.testing.assert_frame_equal(lazy.read(columns=["force", "side"]), frame[["force", "side"]])
    pd.testing.assert_frame_equal(lazy.read(), frame)
    ddf = lazy.to_dask()
    assert ddf.npartitions == lazy.row_groups > 10
    pd.testing.assert_frame_equal(ddf.compute(), frame)
    assert ddf["force"].sum().compute() == pytest.approx(frame["force"].sum())
    with pytest.raises(KeyError, match="no column 'nope'"):
        lazy.read(columns=["nope"])
    pd.testing.assert_frame_equal(lazy.head(7), frame.head(7))  # the first row group only
    assert len(lazy.head(0)) == 0 and len(lazy.head(10**6)) == 5000


def test_columns_are_read_in_the_order_asked(project):
    """`read(columns=["force", "time"])` and `to_dask(columns=)` gave the stored order (time,
    force), so `.values` held swapped columns: the order asked now, as `df[columns]` and
    `pq.read_table(columns=)` give it, with each column's saved dtype (an object text column
    stays object wherever it is asked). A name asked twice, or a bare name, is refused."""
    frame = trials()
    frame["note"] = pd.Series([None if i % 5 == 0 else f"n{i}" for i in range(len(frame))], dtype=object)
    Trials.save(frame, subject=1, session="pre")
    lazy = Trials.load(subject=1, session="pre", lazy=True).data
    for columns in (["force", "trial"], ["note", "side", "force", "label"], list(reversed(frame.columns))):
        pd.testing.assert_frame_equal(lazy.read(columns=columns), frame[columns])
        pd.testing.assert_frame_equal(lazy.to_dask(columns=columns).compute(), frame[columns])
    np.testing.assert_array_equal(lazy.read(columns=["force", "trial"]).values, frame[["force", "trial"]].values)
    indexed = frame.set_index("label")
    Trials.save(indexed, subject=2, session="pre")
    lazy_indexed = Trials.load(subject=2, session="pre", lazy=True).data
    pd.testing.assert_frame_equal(lazy_indexed.read(columns=["note", "force"]), indexed[["note", "force"]])
    table = pa.Table.from_pandas(frame.drop(columns="at"), preserve_index=False)
    Trials.save(table, subject=3, session="pre")
    lazy_table = Trials.load(subject=3, session="pre", lazy=True).data
    assert lazy_table.read(columns=["force", "trial"]).equals(table.select(["force", "trial"]))
    with pytest.raises(ScistackError, match=r"column 'force' asked for twice.*ask for each column once") as caught:
        lazy.read(columns=["force", "trial", "force"])
    assert isinstance(caught.value, KeyError)
    with pytest.raises(ScistackError, match=r"columns= is the text 'force'.*columns=\['force'\]"):
        lazy.read(columns="force")


def test_a_chunked_tables_nullable_index_keeps_its_dtype(project):
    """An index of a nullable dtype (64-bit ids with one missing) came back float64, every id
    above 2**53 rounded (`.loc[id]` found another id's row): whole, by columns and as dask."""
    frame = trials().drop(columns="at")
    ids = pd.array([None if i % 11 == 0 else 9007199254740993 + 2 * i for i in range(len(frame))], dtype="Int64")
    indexed = frame.set_index(pd.Index(ids, name="event_id"))
    multi = frame.set_index([pd.Index(pd.array([i % 3 == 0 for i in range(len(frame))], dtype="boolean"), name="ok"),
                             pd.Index(ids, name="event_id")])
    for subject, value in ((1, indexed), (2, multi)):
        assert Trials.save(value, subject=subject, session="pre").record.kind == "chunked"
        got = Trials.load(subject=subject, session="pre").data
        pd.testing.assert_frame_equal(got, value, check_exact=True)
        lazy = Trials.load(subject=subject, session="pre", lazy=True).data
        pd.testing.assert_frame_equal(lazy.read(columns=["force", "trial"]), value[["force", "trial"]], check_exact=True)
        pd.testing.assert_frame_equal(lazy.to_dask().compute(), value, check_exact=True)
    got = Trials.load(subject=1, session="pre").data
    assert got.loc[9007199254740995, "trial"] == 1


def test_saving_a_dask_frame_says_to_compute_it(project):
    """A dask DataFrame (what `to_dask()` gives, edited) was refused with "e.g. a dict of its
    fields or a numpy array"; the way out is `.compute()`."""
    Trials.save(trials(), subject=1, session="pre")
    ddf = Trials.load(subject=1, session="pre", lazy=True).data.to_dask()
    for value in (ddf.assign(double=ddf["force"] * 2), ddf["force"]):
        with pytest.raises(ScistackError, match=r"value\.compute\(\).*only dask arrays are saved chunk by chunk"):
            Trials.save(value, subject=2, session="pre")
    assert [r.metadata["subject"] for r in Trials.load_all()] == [1]


def test_a_dask_frame_has_the_dtypes_read_gives(project):
    """`to_dask()` had turned text columns into dask's `string[pyarrow]` (NA for a missing
    value) where `read()` and a plain load give pandas' own: the same dtypes now, in the
    frame's meta, computed and after an operation, for a DataFrame and a Series."""
    frame = trials()
    frame["note"] = [None if i % 5 == 0 else f"n{i}" for i in range(len(frame))]
    Trials.save(frame, subject=1, session="pre")
    Trials.save(frame["label"], subject=2, session="pre")
    lazy = Trials.load(subject=1, session="pre", lazy=True).data
    read = lazy.read()
    assert read.dtypes.to_dict() == Trials.load(subject=1, session="pre").data.dtypes.to_dict()
    ddf = lazy.to_dask()
    plain = [c for c in read.columns if c != "side"]  # (a categorical's categories: below)
    assert ddf.dtypes[plain].to_dict() == read.dtypes[plain].to_dict()
    pd.testing.assert_frame_equal(ddf.compute(), read)
    picked = ddf[ddf["label"] == "s1"]["note"]
    assert picked.dtype == read["note"].dtype
    pd.testing.assert_series_equal(picked.compute(), read[read["label"] == "s1"]["note"])
    assert isinstance(ddf["side"].dtype, pd.CategoricalDtype)
    assert not ddf["side"].cat.known  # (it had claimed to know them: none)
    assert ddf["side"].cat.as_known().cat.categories.tolist() == ["left", "right"]
    series = Trials.load(subject=2, session="pre", lazy=True).data
    assert series.to_dask().dtype == series.read().dtype == frame["label"].dtype
    pd.testing.assert_series_equal(series.to_dask().compute(), series.read())


def test_a_lazy_tables_edges_are_pandas_own(project):
    """head(-5) gave 0 rows (pandas: all but the last 5), read(columns=[]) 0 rows x 0 columns
    (pandas' df[[]]: every row, no column), and a misspelt column a bare KeyError."""
    frame = trials()
    Trials.save(frame, subject=1, session="pre")
    lazy = Trials.load(subject=1, session="pre", lazy=True).data
    pd.testing.assert_frame_equal(lazy.head(-5), frame.head(-5))
    assert lazy.head(-5).index.tolist() == list(range(4995))
    pd.testing.assert_frame_equal(lazy.head(-10**6), frame.head(-10**6))
    pd.testing.assert_frame_equal(lazy.read(columns=[]), frame[[]])
    indexed = frame.set_index("label")
    Trials.save(indexed, subject=2, session="pre")
    pd.testing.assert_frame_equal(Trials.load(subject=2, session="pre", lazy=True).data.read(columns=[]),
                                  indexed[[]])
    table = pa.Table.from_pandas(frame.drop(columns="at"), preserve_index=False)
    Trials.save(table, subject=3, session="pre")
    lazy_table = Trials.load(subject=3, session="pre", lazy=True).data
    assert lazy_table.read(columns=[]).num_rows == 5000 and lazy_table.read(columns=[]).num_columns == 0
    assert lazy_table.head(-5).equals(table.slice(0, 4995))
    with pytest.raises(ScistackError) as caught:
        lazy.read(columns=["force", "nope", "sidee"])
    assert isinstance(caught.value, KeyError)
    told = str(caught.value)
    assert "'nope', 'sidee'" in told and "['trial', 'force', 'label', 'side', 'count', 'at']" in told
    assert "did you mean 'side'" in told


def test_the_head_of_a_table_saved_from_a_slice_keeps_its_index(project):
    """`df.iloc[1000:]` saved: its RangeIndex starts at 1000, as `read()` and `to_dask()` say;
    `head()` read the first row groups alone and counted from 0."""
    frame = trials(3000).iloc[1000:]
    Trials.save(frame, subject=1, session="pre")
    lazy = Trials.load(subject=1, session="pre", lazy=True).data
    pd.testing.assert_frame_equal(lazy.head(3), frame.head(3))
    assert lazy.head(3).index.tolist() == lazy.read().head(3).index.tolist() == [1000, 1001, 1002]


def test_a_dask_partition_reads_only_its_row_group(project):
    frame = trials()
    Trials.save(frame, subject=1, session="pre")
    lazy = Trials.load(subject=1, session="pre", lazy=True).data
    groups = lazy._chunks.tree["chunks"]
    drop_objects(project, set(groups[1:]) - {groups[0]})
    first = lazy.to_dask().partitions[0].compute()
    pd.testing.assert_frame_equal(first, frame.iloc[: len(first)], check_dtype=False)
    with pytest.raises(ChunkReadError, match=r"chunk \[1\].*missing"):
        lazy.read()


def test_appended_rows_keep_earlier_row_groups(project):
    frame = trials(5000)
    Trials.save(frame, subject=1, session="pre")
    before = set(project.store.iter_oids())
    longer = pd.concat([frame, trials(6000).iloc[5000:]])
    Trials.save(longer, subject=1, session="pre")
    added = set(project.store.iter_oids()) - before
    per_group = Trials.load(subject=1, session="pre", lazy=True).data._chunks.tree["rows_per_chunk"]
    new_groups = -(-6000 // per_group) - 5000 // per_group
    assert len(added) == new_groups + 2  # the new row groups, a new head, a new manifest


def test_gc_fsck_and_show_know_table_manifests(project):
    saved = Trials.save(trials(), subject=1, session="pre")
    assert collect_garbage(project, grace_seconds=0).objects_deleted == 0
    pd.testing.assert_frame_equal(Trials.load(subject=1, session="pre").data, trials())
    lazy = Trials.load(subject=1, session="pre", lazy=True).data
    bad = lazy._chunks.tree["chunks"][3]
    path = project.store.path_of(bad)
    os.chmod(path, 0o644)
    data = bytearray(path.read_bytes())
    data[-1] ^= 0xFF
    path.write_bytes(bytes(data))
    problems = fsck(project).problems
    assert [p.oid for p in problems] == [bad]
    assert f"row group 3 of chunked value {saved.oid}" in problems[0].detail
    project.sync()
    shown = CliRunner().invoke(main, ["--db", str(project.path), "show", saved.oid])
    assert shown.exit_code == 0, shown.output
    assert "chunked table, 5000 rows x 6 columns in" in shown.output


def test_a_lazily_loaded_table_saves_as_the_table_it_is(project):
    """`Var.save(Other.load(..., lazy=True).data)` (a LazyTable) raised AttributeError ('LazyTable'
    object has no attribute 'ndim'): the kind was judged as a DataFrame's. It is the same value:
    the same oid, chunked, for a DataFrame, a Series and an Arrow table."""
    frame = trials()
    for subject, value in enumerate([frame, frame["force"], pa.Table.from_pandas(frame)]):
        original = Trials.save(value, subject=subject, session="pre")
        lazy = Trials.load(subject=subject, session="pre", lazy=True).data
        again = Trials.save(lazy, subject=subject, session="copy")
        assert isinstance(lazy, LazyTable) and again.record.kind == "chunked" and again.oid == original.oid
    copied = Trials.save(Trials.load(subject=0, session="pre", lazy=True).data, subject=0, session="pre")
    assert copied.record.version == 1  # the same value saved again: a no-op


def test_a_string_column_is_not_copied_whole_into_the_head(project):
    """The head (the zero-row table holding the schema) was a zero-row slice of the whole
    table, and a slice of nothing still held every string byte of its column: the head of a
    table of 1 GB of strings was 1 GB, and a loaded table saved again (its strings now laid out
    by row group) had another head, so another oid: a second version of the same value."""
    from scistack.objects.chunked import parse_manifest

    frame = trials()
    saved = Trials.save(frame, subject=1, session="pre")
    head = parse_manifest(project.store.get(saved.oid).payload)["head"]
    assert len(project.store.get(head).payload) < 4096
    again = Trials.save(Trials.load(subject=1, session="pre").data, subject=1, session="pre")
    assert again.oid == saved.oid and again.record.version == 1


def test_the_sql_views_describe_a_value_as_its_summary_does(project):
    """A chunked Series showed shape [5000, 1] and dtype DataFrame in SQL (the one-column table
    it is stored as) where its summary says float64[5000]; a small Series, an Arrow table and
    a chunked frame indexed by a column (counted as a column) differed too. Every table value
    now has the summary's name and shape in the views' `dtype` and `shape` columns."""
    frame = trials()
    values = {1: frame["force"], 2: frame["force"].head(50), 3: frame["label"], 4: frame.set_index("label"),
              5: frame.head(50), 6: pa.Table.from_pandas(frame[["trial", "force"]], preserve_index=False),
              7: pa.Table.from_pandas(frame[["trial"]].head(50), preserve_index=False)}
    for subject, value in values.items():
        Trials.save(value, subject=subject, session="pre")
    project.sync()
    rows = project.sql("SELECT subject, kind, dtype, shape, summary FROM Trials ORDER BY subject")
    got = {subject: (kind, dtype, shape.tolist(), summary) for subject, kind, dtype, shape, summary in rows.values}
    labels = frame["label"].dtype  # (pandas' str, or numpy's object before pandas 3)
    text = labels.name if isinstance(labels, np.dtype) else "Series"
    assert got == {1: ("chunked", "float64", [5000], "float64[5000]"), 2: ("table", "float64", [50], "float64[50]"),
                   3: ("chunked", text, [5000], f"{text}[5000]"),
                   4: ("chunked", "DataFrame", [5000, 5], "DataFrame[5000x5]"),
                   5: ("table", "DataFrame", [50, 6], "DataFrame[50x6]"),
                   6: ("chunked", "Table", [5000, 2], "Table[5000x2]"), 7: ("table", "Table", [50, 1], "Table[50x1]")}


def test_a_chunked_tables_bytes_are_counted_in_scistack_variables(project):
    """A chunked table's value_bytes was NULL (a chunked array's is its size), so
    `sum(value_bytes)` left big tables out: now its rows' bytes, from the head's schema."""
    frame = trials()[["trial", "force"]]  # two 8-byte columns
    Trials.save(frame, subject=1, session="pre")
    project.sync()
    assert Trials.load(subject=1, session="pre", lazy=True).data.nbytes == 5000 * 16
    got = project.sql("SELECT value_bytes FROM scistack_variables WHERE variable = 'Trials'")
    assert got["value_bytes"].tolist() == [5000 * 16]


def test_integer_column_labels_are_asked_for_as_the_frame_had_them(project):
    """A frame with integer column labels (`pd.DataFrame(matrix)`) is stored with Arrow's text
    names ("0", "1"): `read(columns=[0])` was refused ("no column 0") while columns=["0"]
    worked, and `columns` listed the texts. The labels are taken as the frame had them
    (read, to_dask, `columns`); their text is still accepted."""
    frame = pd.DataFrame(np.random.default_rng(1).standard_normal((3000, 3)))
    Trials.save(frame, subject=5, session="pre")
    lazy = Trials.load(subject=5, session="pre", lazy=True).data
    assert isinstance(lazy, LazyTable) and lazy.columns == [0, 1, 2]
    pd.testing.assert_frame_equal(lazy.read(columns=[2, 0]), frame[[2, 0]])
    pd.testing.assert_frame_equal(lazy.read(columns=["1"]), frame[[1]])
    pd.testing.assert_frame_equal(lazy.to_dask(columns=[1]).compute(), frame[[1]])
    with pytest.raises(KeyError, match="no column 7"):
        lazy.read(columns=[7])
    with pytest.raises(KeyError, match="asked for twice"):
        lazy.read(columns=[0, "0"])
