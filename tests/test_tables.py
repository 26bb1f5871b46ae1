"""Whole tables: save_from_dataframe (one record per row, one batch) and CSV/Parquet export."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

import scistack
from scistack import BaseVariable, InvalidMetadataError
from tests.helpers import journal_size


class PeakForce(BaseVariable):
    pass


class Trace(BaseVariable):
    pass


class Stats(BaseVariable):
    pass


def test_one_record_per_row_addressed_by_key_columns(project):
    frame = pd.DataFrame({"subject": [1, 1, 2], "session": ["pre", "post", "pre"], "peak": [10.5, 11.0, 9.0]})
    assert PeakForce.save_from_dataframe(frame) == 3
    assert PeakForce.load(subject=1, session="post").data == 11.0
    assert PeakForce.save_from_dataframe(frame) == 0  # identical rows: no new versions
    back = PeakForce.load_all(as_df=True)
    assert back[["subject", "session", "data"]].values.tolist() == [[1, "post", 11.0], [1, "pre", 10.5],
                                                                     [2, "pre", 9.0]]


def test_value_columns_and_coarser_rows(project):
    frame = pd.DataFrame({"subject": [1, 2], "mean": [1.0, 2.0], "sd": [0.1, 0.2], "note": ["a", "b"]})
    Stats.save_from_dataframe(frame, value_columns=["mean", "sd"], method="robust")
    assert Stats.load(subject=2, method="robust").data == {"mean": 2.0, "sd": 0.2}
    PeakForce.save_from_dataframe(frame, value_column="note")
    assert PeakForce.load(subject=1).data == "a"


def test_rows_are_saved_in_one_batch(project):
    frame = pd.DataFrame({"subject": range(50), "session": "pre", "v": np.arange(50.0)})
    before = journal_size(project)
    PeakForce.save_from_dataframe(frame)
    assert journal_size(project) > before
    packs = list((project.scistack_dir / "objects").rglob("*.pack"))
    assert len(packs) == 1  # every row's value in one pack


def test_a_row_missing_a_key_saves_nothing(project):
    frame = pd.DataFrame({"subject": [1, None, 3], "session": ["pre", "pre", "pre"], "v": [1.0, 2.0, 3.0]},
                         index=["a", "b", "c"])
    with pytest.raises(InvalidMetadataError, match=r"row 'b' has no 'subject'"):
        PeakForce.save_from_dataframe(frame)
    assert PeakForce.load_all() == []
    twice = pd.DataFrame({"subject": [1, 2, 1], "session": ["pre"] * 3, "v": [1.0, 2.0, 3.0]}, index=[0, 0, 0])
    with pytest.raises(InvalidMetadataError, match=r"rows 0 and 0 both address subject=1, session='pre'"):
        PeakForce.save_from_dataframe(twice)  # the last would have become the current value
    assert PeakForce.load_all() == []
    with pytest.raises(InvalidMetadataError, match="none of the schema keys"):
        PeakForce.save_from_dataframe(pd.DataFrame({"trial": [1], "v": [2.0]}))
    with pytest.raises(InvalidMetadataError, match="not value columns"):
        PeakForce.save_from_dataframe(frame.dropna(), value_column="nope")


def test_a_value_that_cannot_be_stored_saves_no_row(project):
    """A value the pre-check passed but the encoder refused (a set inside a list) raised
    after the rows before it were saved: half a frame, and no row named."""
    frame = pd.DataFrame({"subject": [1, 2, 3], "session": "pre", "v": [[1.0], [{1, 2}], [3.0]]})
    before = journal_size(project)
    with pytest.raises(scistack.UnsupportedValueError, match=r"the row at subject=2, session='pre': .*Nothing was saved"):
        PeakForce.save_from_dataframe(frame)
    assert journal_size(project) == before and PeakForce.load_all() == []


def test_keys_in_the_index_and_pandas_own_cells(project):
    """`df.groupby(["subject", "session"]).mean()` leaves the keys in the index (refused: "none
    of the schema keys as a column"); a datetime or nullable column's cells are pandas'
    Timestamp / NA (refused mid-batch, or as an address value of an unknown type)."""
    raw = pd.DataFrame({"subject": [1, 1, 2], "session": "pre", "peak": [1.0, 3.0, 5.0]})
    assert PeakForce.save_from_dataframe(raw.groupby(["subject", "session"]).mean()) == 2
    assert PeakForce.load(subject=1, session="pre").data == 2.0
    assert PeakForce.save_from_dataframe(raw.groupby("subject")[["peak"]].max(), stat="max") == 2
    assert PeakForce.load(subject=2, stat="max").data == 5.0  # a coarser record
    times = pd.DataFrame({"subject": [1, 2], "session": "pre", "when": pd.to_datetime(["2024-01-02", None]),
                          "count": pd.array([4, None], dtype="Int64")})
    Stats.save_from_dataframe(times, value_columns=["when", "count"])
    first, second = Stats.load(subject=1, session="pre").data, Stats.load(subject=2, session="pre").data
    assert first == {"when": np.datetime64("2024-01-02T00:00:00.000000000"), "count": 4}
    assert np.isnat(second["when"]) and second["count"] is None
    missing = pd.DataFrame({"subject": pd.array([1, None], dtype="Int64"), "session": "pre", "v": [1.0, 2.0]})
    with pytest.raises(InvalidMetadataError, match=r"row 1 has no 'subject'"):
        PeakForce.save_from_dataframe(missing)


def test_a_datetime_column_keeps_its_unit_through_a_missing_cell(project):
    """pandas' NaT became numpy's NaT in nanoseconds: a column of seconds with a missing cell
    loaded back (load_all(as_df=True)) as datetime64[ns], and a timedelta column's missing cell
    was saved as a datetime's NaT."""
    when = pd.Series(pd.to_datetime(["2024-01-02 10:30", None])).astype("datetime64[s]")
    took = pd.Series(pd.to_timedelta(["1.5s", None])).astype("timedelta64[ms]")
    frame = pd.DataFrame({"subject": [1, 2], "session": "pre", "when": when, "took": took})
    PeakForce.save_from_dataframe(frame, value_column="when")
    Stats.save_from_dataframe(frame, value_columns=["when", "took"])
    missing = Stats.load(subject=2, session="pre").data
    assert missing["when"].dtype == np.dtype("datetime64[s]") and np.isnat(missing["when"])
    assert missing["took"].dtype == np.dtype("timedelta64[ms]") and np.isnat(missing["took"])
    assert Stats.load(subject=1, session="pre").data["took"] == np.timedelta64(1500, "ms")
    back = PeakForce.load_all(as_df=True).sort_values("subject")["data"].reset_index(drop=True)
    pd.testing.assert_series_equal(back, when, check_names=False)  # (the dtype too)


def test_a_missing_cell_of_a_text_column_is_none(project):
    """pandas' str dtype and read_csv's object column of strings hold a missing cell as NaN: it
    was saved as a float NaN among strings. It is None, as a nullable column's NA is (and a
    categorical of strings' too); a float column's NaN is a float and stays NaN."""
    import io

    frame = pd.read_csv(io.StringIO("subject,session,note,force\n1,pre,left,1.5\n2,pre,,\n"))
    frame["side"], frame["text"] = frame["note"].astype("category"), frame["note"].astype(object)
    Stats.save_from_dataframe(frame, value_columns=["note", "force", "side", "text"])
    PeakForce.save_from_dataframe(frame, value_column="note")
    missing = Stats.load(subject=2, session="pre").data
    assert {k: v for k, v in missing.items() if k != "force"} == {"note": None, "side": None, "text": None}
    assert type(missing["force"]) is float and np.isnan(missing["force"])
    assert Stats.load(subject=1, session="pre").data == {"note": "left", "force": 1.5, "side": "left",
                                                         "text": "left"}
    assert PeakForce.load(subject=2, session="pre").data is None
    assert PeakForce.load_all(as_df=True).sort_values("subject")["data"].tolist() == ["left", None]


def test_export_csv_and_parquet_of_a_variable_and_a_join(project, tmp_path):
    Trace.save(np.array([1.0, 2.0]), subject=1, session="pre")
    Trace.save(np.array([3.0]), subject=2, session="pre")
    PeakForce.save(5.0, subject=1, session="pre")
    PeakForce.save(6.0, subject=2, session="pre")
    Trace.to_csv(tmp_path / "trace.csv")
    csv = pd.read_csv(tmp_path / "trace.csv")
    assert csv["data"].tolist() == ["[1.0, 2.0]", "[3.0]"]
    Trace.to_parquet(tmp_path / "trace.parquet", subject=1)
    parquet = pd.read_parquet(tmp_path / "trace.parquet")
    assert list(parquet["data"][0]) == [1.0, 2.0] and len(parquet) == 1
    joined = scistack.join(PeakForce, Trace)
    joined.to_csv(tmp_path / "joined.csv", index=False)
    assert pd.read_csv(tmp_path / "joined.csv")["PeakForce"].tolist() == [5.0, 6.0]
    from scistack.tables import export_frame

    export_frame(joined, tmp_path / "joined.parquet", "parquet")
    assert pd.read_parquet(tmp_path / "joined.parquet")["PeakForce"].tolist() == [5.0, 6.0]


def test_export_writes_dataframe_cells_as_data_and_mixed_values_to_parquet(project, tmp_path):
    import json

    Stats.save(pd.DataFrame({"t": [0.0, 0.1], "v": [1, 2]}), subject=1, session="pre")
    Stats.to_csv(tmp_path / "stats.csv")  # a DataFrame cell was its printed text ("     t  v\n0 ...")
    assert json.loads(pd.read_csv(tmp_path / "stats.csv")["data"][0]) == {"t": [0.0, 0.1], "v": [1, 2]}
    Stats.save(2.5, subject=2, session="pre")
    Stats.save("text", subject=3, session="pre")
    Stats.save([1, 2], subject=4, session="pre")
    Stats.to_parquet(tmp_path / "stats.parquet")  # one column of mixed values raised ArrowInvalid
    cells = pd.read_parquet(tmp_path / "stats.parquet")["data"].tolist()
    assert [json.loads(c) for c in cells] == [{"t": [0.0, 0.1], "v": [1, 2]}, 2.5, "text", [1, 2]]


def test_export_keeps_integers_beside_a_missing_value(project, tmp_path):
    # a column of ints and None was inferred float64: 9007199254740993 written as
    # 9007199254740992.0, and 7 as 7.0
    PeakForce.save(9007199254740993, subject=1, session="pre")
    PeakForce.save(7, subject=2, session="pre")
    PeakForce.save(None, subject=3, session="pre")
    PeakForce.to_csv(tmp_path / "peak.csv")
    assert pd.read_csv(tmp_path / "peak.csv", dtype=str)["data"].tolist()[:2] == ["9007199254740993", "7"]
    PeakForce.to_parquet(tmp_path / "peak.parquet")
    data = pd.read_parquet(tmp_path / "peak.parquet")["data"]
    assert data.tolist()[:2] == [9007199254740993, 7] and pd.isna(data[2])


def test_parquet_export_keeps_an_integer_beyond_64_bits(project, tmp_path):
    import json

    Stats.save(1, subject=1, session="pre")
    Stats.save(2**64, subject=2, session="pre")  # raised a raw OverflowError
    Stats.to_parquet(tmp_path / "stats.parquet")
    cells = pd.read_parquet(tmp_path / "stats.parquet")["data"].tolist()
    assert [json.loads(c) for c in cells] == [1, 2**64]


def test_export_writes_frames_and_numbers_inside_a_dict_as_data(project, tmp_path):
    import json

    # nested in a dict or a list they were written as their printed text ("5", "   t\n0 ...")
    Stats.save({"frame": pd.DataFrame({"t": [0.5], "month": pd.period_range("2024-01", periods=1, freq="M")}),
                "n": np.int64(5)}, subject=1, session="pre")
    Stats.to_csv(tmp_path / "stats.csv")
    assert json.loads(pd.read_csv(tmp_path / "stats.csv")["data"][0]) == {
        "frame": {"t": [0.5], "month": ["2024-01"]}, "n": 5}



def _strict_json(text: str):
    """What any non-Python JSON parser does (R's jsonlite, jq, JSON.parse): no NaN, Infinity."""
    import json

    def refuse(word):
        raise ValueError(f"not JSON: {word}")

    return json.loads(text, parse_constant=refuse)


def test_export_writes_nan_and_infinities_in_json_cells_as_null(project, tmp_path):
    # array and dict cells were written `[1.0, NaN, Infinity]`, `{"peak": NaN}`: not JSON,
    # which the README promises (and the bundle's .json files already are)
    Stats.save(np.array([1.0, np.nan, np.inf]), subject=1, session="pre")
    Stats.save({"peak": float("nan"), "trace": np.array([-np.inf, 2.0])}, subject=2, session="pre")
    Stats.to_csv(tmp_path / "stats.csv")
    cells = pd.read_csv(tmp_path / "stats.csv")["data"].tolist()
    assert [_strict_json(c) for c in cells] == [[1.0, None, None], {"peak": None, "trace": [None, 2.0]}]
    Stats.save("text", subject=3, session="pre")  # a mixed column: JSON text in Parquet too
    Stats.to_parquet(tmp_path / "stats.parquet")
    cells = pd.read_parquet(tmp_path / "stats.parquet")["data"].tolist()
    assert [_strict_json(c) for c in cells] == [[1.0, None, None], {"peak": None, "trace": [None, 2.0]},
                                                "text"]


def test_a_numpy_time_inside_a_cell_is_written_as_text(project, tmp_path):
    """A dict holding a datetime64[ns] was written with the time as its int of nanoseconds
    (1577872800000000001) while the same time alone is ISO text; a microsecond one could not
    be written at all. Each is ISO text at its own unit, a timedelta64 its text, NaT null."""
    import json

    t = np.datetime64("2020-01-01T10:00:00.000000001")
    Stats.save({"t": t, "fs": 2000}, subject=1, session="pre")
    Stats.save({"t": np.datetime64("2020-01-01T10:00:00.000001"), "lag": np.timedelta64(1500, "ns"),
                "none": np.datetime64("NaT", "ns")}, subject=2, session="pre")
    Stats.save(t, subject=3, session="pre")
    Stats.to_csv(tmp_path / "stats.csv")
    cells = pd.read_csv(tmp_path / "stats.csv").sort_values("subject")["data"].tolist()
    assert json.loads(cells[0]) == {"fs": 2000, "t": "2020-01-01T10:00:00.000000001"}
    assert json.loads(cells[1]) == {"t": "2020-01-01T10:00:00.000001", "lag": "1500 nanoseconds", "none": None}
    assert cells[2] == "2020-01-01T10:00:00.000000001"
    assert Stats.load(subject=1, session="pre").data["t"] == t  # (stored as it was)


def test_two_exports_to_one_file_at_once_never_rename_each_others_half_written_file(tmp_path):
    """export_frame wrote through one fixed `<target>.scistack-tmp`: two exports of one file at
    once (two processes, threads of one) wrote into the same temporary file, so the first rename
    put bytes the second was still writing (or both writers' bytes) in place and the second's
    rename found the name gone (FileNotFoundError). A cell whose text waits for the other writer
    holds both writers mid-write at once, every time."""
    import threading

    from scistack.tables import export_frame

    both_writing = threading.Barrier(2)

    class Meeting:  # its text is asked for while pandas writes the file (the file is open)
        def __init__(self, writer: int) -> None:
            self.writer, self.met = writer, False

        def __str__(self) -> str:
            if not self.met:
                self.met = True
                both_writing.wait(timeout=60)
            return f"writer {self.writer}"

    target = tmp_path / "out.csv"
    frames = [pd.DataFrame({"who": [Meeting(k)] + [f"writer {k}"] * 20_000}) for k in range(2)]
    failures: list[BaseException] = []

    def run(frame: pd.DataFrame) -> None:
        try:
            export_frame(frame, target, "csv")
        except BaseException as exc:  # noqa: BLE001 (reported below, whatever it is)
            failures.append(exc)
            both_writing.abort()

    threads = [threading.Thread(target=run, args=(frame,)) for frame in frames]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert failures == []
    written = pd.read_csv(target)["who"].tolist()
    assert len(written) == 20_001 and len(set(written)) == 1  # one writer's file, whole
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.csv"]
