"""BaseVariable save/load/load_all/list_versions/delete through the public API, on real files."""

from __future__ import annotations

import os
import re
import time
import warnings

import numpy as np
import pandas as pd
import pytest

import scistack
from tests.helpers import journal_size
from scistack import BaseVariable, configure_database
from scistack.errors import (
    AmbiguousVersionError,
    DuplicateVariableError,
    InvalidMetadataError,
    InvalidNameError,
    NotARepositoryError,
    QueryError,
    SchemaMismatchError,
    UnknownMetadataKeyError,
    UnsupportedValueError,
    VariableNotFoundError,
)


class VRaw(BaseVariable):
    pass


class VPeak(BaseVariable):
    pass


def test_save_then_load_roundtrips_and_reports_record(project):
    signal = np.random.default_rng(0).normal(size=100)
    saved = VRaw.save(signal, subject=1, session="pre")
    assert saved.version == 1 and len(saved.oid) == 64
    assert saved.metadata == {"subject": 1, "session": "pre"}
    loaded = VRaw.load(subject=1, session="pre")
    np.testing.assert_array_equal(loaded.data, signal)
    assert loaded.oid == saved.oid and loaded.created_at == saved.created_at


def test_numpy_time_scalars_roundtrip_with_a_readable_summary(project):
    # a timedelta64 is an np.integer: its summary had raised a bare TypeError (int() of it)
    for n, value in enumerate([np.timedelta64(3, "s"), np.datetime64("2024-01-02T03:04:05")]):
        saved = VRaw.save(value, subject=n, session="pre")
        assert saved.record.summary == str(value)
        loaded = VRaw.load(subject=n, session="pre").data
        assert loaded == value and loaded.dtype == value.dtype


def test_complex_and_bytes_scalars_have_a_readable_summary(project):
    # a numpy complex or bytes scalar read "complex128[]" / "|S2[]" in ls, log and the views
    cases = [(np.complex128(1 + 2j), "1+2j"), (2 - 1j, "2-1j"), (np.bytes_(b"ab"), "bytes[2]")]
    for n, (value, summary) in enumerate(cases):
        saved = VRaw.save(value, subject=n, session="pre")
        assert saved.record.summary == summary
        assert VRaw.load(subject=n, session="pre").data == value


def test_identical_save_is_a_noop_and_new_data_adds_a_version(project):
    first = VRaw.save(np.arange(3.0), subject=1, session="pre")
    again = VRaw.save(np.arange(3.0), subject=1, session="pre")
    assert (again.version, again.oid) == (first.version, first.oid)
    second = VRaw.save(np.arange(4.0), subject=1, session="pre")
    assert second.version == 2
    assert VRaw.load(subject=1, session="pre").version == 2
    np.testing.assert_array_equal(VRaw.load(subject=1, session="pre", version=1).data, np.arange(3.0))
    assert [r.version for r in VRaw.list_versions(subject=1, session="pre")] == [1, 2]


def test_partial_address_returns_sorted_list_and_lists_select_several(project):
    for subject in (3, 1, 2):
        for session in ("pre", "post"):
            VPeak.save(float(subject), subject=subject, session=session)
    found = VPeak.load(subject=1)
    assert [v.metadata["session"] for v in found] == ["post", "pre"]
    several = VPeak.load(subject=[1, 3], session="pre")
    assert [v.metadata["subject"] for v in several] == [1, 3]


def test_version_keys_make_variants_and_plain_load_is_ambiguous(project):
    VRaw.save(np.ones(2), subject=1, session="pre", note="raw")
    VRaw.save(np.zeros(2), subject=1, session="pre", note="recal")
    with pytest.raises(AmbiguousVersionError, match="note"):
        VRaw.load(subject=1, session="pre")
    assert VRaw.load(subject=1, session="pre", note="recal").data.sum() == 0


def test_a_version_key_of_none_names_the_variant_saved_without_it(project):
    """Once a `note="recal"` variant sits beside the plain one, `note=None` picks the plain one
    in load, load_all, Fixed and delete (there had been no way but version=N, which differs
    from address to address: a for_each could not use the plain variant at all)."""
    for session in ("pre", "post"):
        VRaw.save(np.full(2, 1.0), subject=1, session=session)
    VRaw.save(np.full(2, 9.0), subject=1, session="pre", note="recal")
    with pytest.raises(AmbiguousVersionError, match=r"note=None for the one saved without it"):
        VRaw.load(subject=1, session="pre")
    assert VRaw.load(subject=1, session="pre", note=None).data.tolist() == [1.0, 1.0]
    assert sorted(r.metadata["session"] for r in VRaw.load_all(note=None)) == ["post", "pre"]
    assert len(VRaw.load_all(note=[None, "recal"])) == 3

    def double(x):
        return x * 2

    report = scistack.for_each(double, {"x": scistack.Fixed(VRaw, note=None)}, [VPeak],
                               subject=[1], session=["pre", "post"], progress=False)
    assert not report.failures
    assert VPeak.load(subject=1, session="pre").data.tolist() == [2.0, 2.0]
    VRaw.save(np.full(2, 7.0), subject=1, session="pre", note="recal")  # another variant's news
    assert scistack.why(VPeak, subject=1, session="pre").status == "current"
    VRaw.save(np.full(2, 3.0), subject=1, session="pre")  # the plain one's
    assert scistack.why(VPeak, subject=1, session="pre").status == "stale"
    assert VRaw.delete(subject=1, session="pre", note=None) == 2  # both its versions
    assert [r.metadata.get("note") for r in VRaw.load_all(subject=1, session="pre")] == ["recal"]


def test_an_address_key_of_none_selects_the_records_saved_without_it(project):
    """`session=None` selects the records saved without a session, at a coarser level, as
    `where="session IS NULL"` does, in load, load_all, list_versions, delete and undelete and a
    `Fixed` pin (load_all had answered [] in silence, load and delete that nothing matched). A
    NaN (a frame's missing cell) stays refused, its message naming session=None."""
    for subject in (1, 2):
        VPeak.save(float(subject), subject=subject, session="pre")
    VPeak.save(9.0, subject=3)
    VPeak.save(8.0, subject=3, session="post")
    coarse = [9.0]
    assert sorted(v.data for v in VPeak.load_all(where="session IS NULL")) == coarse
    assert [v.data for v in VPeak.load_all(session=None)] == coarse
    assert [v.data for v in VPeak.load(session=None)] == coarse  # a partial address: a list
    assert VPeak.load(subject=3, session=None).data == 9.0  # the whole address: the value
    with pytest.raises(InvalidMetadataError, match=r"session=nan is a float.*session=None selects the records"):
        VPeak.load_all(session=float("nan"))
    assert sorted(v.data for v in VPeak.load_all(session=[None, "pre"])) == [1.0, 2.0, 9.0]
    assert VPeak.load_all(subject=1, session=None) == []
    assert list(VPeak.load_all(session=None, as_df=True)["data"]) == coarse
    assert [r.addr for r in VPeak.list_versions(session=None)] == [{"subject": 3}]
    with pytest.raises(VariableNotFoundError, match="session=None"):
        VPeak.load(subject=1, session=None)

    def double(x):
        return x * 2

    report = scistack.for_each(double, {"x": scistack.Fixed(VPeak, session=None)}, [VRaw],
                               subject=[3], session=["post"], progress=False)
    assert not report.failures
    assert VRaw.load(subject=3, session="post").data == 18.0
    assert scistack.why(VRaw, subject=3, session="post").status == "current"  # (8.0 at post: not its input)
    assert VPeak.delete(session=None) == 1
    assert sorted(v.data for v in VPeak.load_all()) == [1.0, 2.0, 8.0]
    assert VPeak.undelete(session=None) == 1
    assert VPeak.load(subject=3, session=None).data == 9.0


def test_load_all_selects_every_level_its_keys_name_as_where_does_in_and_out_of_a_batch(project):
    """`load_all(subject=1)` is every record whose subject is 1, as `where="subject = 1"` is: a
    value saved per subject had hidden the per-session ones below it, outside a batch and not
    inside one, and keywords with `where=` (`subject=1, where="session = 'a'"`) had matched
    nothing. `load(subject=1)` keeps its rule, the per-subject value, inside a batch too (whose
    held saves had made it a list, and whose held delete of it had hidden the rest), and
    with `where=` among the records both select (it had applied before `where=`, or not at all
    when few of the variable's addresses matched)."""
    VPeak.save(1.0, subject=1, session="a")
    VPeak.save(9.0, subject=1)

    def answers():
        return (sorted(v.data for v in VPeak.load_all(subject=1)),
                sorted(v.data for v in VPeak.load_all(where="subject = 1")),
                [v.data for v in VPeak.load_all(subject=1, where="session = 'a'")],
                [v.data for v in VPeak.load_all(subject=1, where="session IS NULL")],
                [v.data for v in VPeak.load_all(subject=[1, 2], where="session = 'a' AND subject < 2")],
                VPeak.load(subject=1).data, VPeak.load(subject=1, where="value > 0").data,
                [v.data for v in VPeak.load(subject=1, where="session = 'a'")])

    want = ([1.0, 9.0], [1.0, 9.0], [1.0], [9.0], [1.0], 9.0, 9.0, [1.0])
    assert answers() == want
    with project.batch():
        assert answers() == want
        VPeak.save(2.0, subject=2, session="a")  # held: the batch's reads take the overlay's path
        assert answers() == want
    for subject in range(3, 12):  # most addresses no longer match: only the matching ones are read
        VPeak.save(float(subject), subject=subject, session="a")
    assert answers() == want
    with project.batch():
        VPeak.save(5.0, subject=20, session="a")
        VPeak.save(6.0, subject=20)
        assert sorted(v.data for v in VPeak.load_all(subject=20)) == [5.0, 6.0]
        assert VPeak.load(subject=20).data == 6.0
        assert VPeak.delete(subject=1) == 1  # (the per-subject value: its address)
        assert [v.data for v in VPeak.load(subject=1)] == [1.0]
        assert [v.data for v in VPeak.load_all(subject=1)] == [1.0]
    assert sorted(v.data for v in VPeak.load_all(subject=20)) == [5.0, 6.0]
    assert VPeak.load(subject=20).data == 6.0
    assert [v.data for v in VPeak.load(subject=1)] == [1.0]


def test_load_by_version_keys_or_parameters_looks_below_the_address_as_where_does(project):
    """`load(subject=1, note="recal")` is the per-subject record with that note when there is
    one, else those below it that have it, as `load(subject=1, where="note = 'recal'")` and
    `load_all(subject=1, note="recal")` are: it had looked at the per-subject records alone and
    raised VariableNotFoundError beside a per-session one holding the note. Likewise for a
    lineage parameter, in a batch, and for list_versions and delete."""
    VPeak.save(9.0, subject=1)
    VPeak.save(3.0, subject=1, session="a", note="recal")
    VPeak.save(1.0, subject=1, session="b")

    def shift(x, k):
        return x + k

    scistack.for_each(shift, {"x": VPeak, "k": 20}, [VRaw], subject=[1], session=["b"], progress=False)
    VRaw.save(5.0, subject=1)  # the per-subject value, made with no parameter
    for held in (False, True):
        with project.batch() if held else open(os.devnull):
            assert [v.data for v in VPeak.load(subject=1, where="note = 'recal'")] == [3.0]
            assert [v.data for v in VPeak.load(subject=1, note="recal")] == [3.0]
            assert [v.data for v in VPeak.load_all(subject=1, note="recal")] == [3.0]
            assert [v.data for v in VRaw.load(subject=1, k=20)] == [21.0]
            assert VRaw.load(subject=1).data == 5.0 and VPeak.load(subject=1).data == 9.0
            assert [v.version for v in VPeak.list_versions(subject=1, note="recal")] == [1]
    VPeak.save(8.0, subject=1, note="recal")  # the address's own record with the note wins
    assert VPeak.load(subject=1, note="recal").data == 8.0
    assert VPeak.load(subject=1, where="note = 'recal'").data == 8.0
    assert sorted(v.data for v in VPeak.load_all(subject=1, note="recal")) == [3.0, 8.0]
    assert VPeak.delete(subject=1, note="recal") == 1
    assert VPeak.delete(subject=1, note="recal") == 1  # then the one below it
    assert sorted(v.data for v in VPeak.load_all(subject=1)) == [1.0, 9.0]


def test_where_naming_a_schema_key_the_variable_was_never_saved_with_is_its_null_column(project):
    """The variable's SQL view has a column for every schema key, NULL where a value was saved
    without it: `where=` over a key none of its values has matches nothing but `IS NULL`, as
    the view does, while a name that is no column is refused as the view refuses it."""
    for subject in (1, 2):
        VPeak.save(float(subject), subject=subject)
    assert project.sql("SELECT * FROM VPeak WHERE session = 'a'").empty
    assert VPeak.load_all(where="session = 'a'") == []
    assert VPeak.load_all(subject=1, where="session = 'a'") == []
    assert [v.data for v in VPeak.load_all(subject=1, where="session IS NULL")] == [1.0]
    with pytest.raises(QueryError, match="'trial' is not a column here"):
        VPeak.load_all(where="trial = 1")


def test_a_selection_naming_no_value_or_no_label_is_refused(project):
    """`subject=[]` (for_each's "every stored value", copied) and a dict or nested list for a
    lineage parameter can match nothing: refused naming the way, where load_all had answered
    [] in silence (and delete, undelete said only that nothing matched)."""
    VPeak.save(1.0, subject=1, session="pre")

    def shift(x, k):
        return x + 1

    for k in (20, {"lo": 20}):
        scistack.for_each(shift, {"x": VPeak, "k": k}, [VRaw], subject=[1], session=["pre"], progress=False)
    for empty in ([], (), np.array([]), range(0)):
        for call in (VPeak.load_all, VPeak.load, VPeak.list_versions, VPeak.delete, VPeak.undelete):
            with pytest.raises(InvalidMetadataError, match=r"names no value.*leave subject= out"):
                call(subject=empty)
        with pytest.raises(InvalidMetadataError, match="names no value"):
            VRaw.load_all(k=empty)
    for odd in ({"lo": 20}, [[20]], [20, {"lo": 20}]):
        with pytest.raises(InvalidMetadataError, match=r"a lineage parameter is a scalar constant"):
            VRaw.load_all(k=odd)
    with pytest.raises(InvalidMetadataError, match="is a dict"):
        VPeak.load_all(subject={"lo": 1})
    assert [v.data for v in VRaw.load_all(k=[20, 30])] == [2.0]  # a list of scalars: any of them
    assert VPeak.load(subject=1, session="pre").data == 1.0  # nothing deleted


def test_schema_values_keep_their_type(project):
    VPeak.save(1.0, subject=1, session="s")
    # "1" beside 1 is refused (the views could not tell the two apart: tests/test_key_types.py)
    with pytest.raises(InvalidMetadataError, match="looks like subject=1"):
        VPeak.save(2.0, subject="1", session="s")
    assert VPeak.load(subject=1, session="s").data == 1.0
    assert VPeak.load(subject=np.int64(1), session="s").data == 1.0
    with pytest.raises(VariableNotFoundError, match="Did you mean subject=1"):
        VPeak.load(subject="1", session="s")


def test_not_found_names_variable_query_and_what_exists(project):
    VPeak.save(1.0, subject=1, session="pre")
    with pytest.raises(VariableNotFoundError) as info:
        VPeak.load(subject=9, session="pre")
    message = str(info.value)
    assert "VPeak" in message and "subject=9" in message and "subject in {1}" in message
    with pytest.raises(LookupError):  # builtin a caller would catch
        VRaw.load(subject=1, session="pre")


def test_not_found_names_a_saved_value_that_differs_only_in_type_or_case(project):
    """`subject="1"` (read from a file name or a CSV) where subject 1 was saved as a number,
    and `session="PRE"` for "pre": the message names the value meant."""
    VPeak.save(1.0, subject=1, session="pre")
    for query, meant in (({"subject": "1", "session": "pre"}, "Did you mean subject=1?"),
                         ({"subject": 1, "session": "PRE"}, "Did you mean session='pre'?")):
        with pytest.raises(VariableNotFoundError, match=re.escape(meant)):
            VPeak.load(**query)
    with pytest.raises(VariableNotFoundError) as info:
        VPeak.load(subject=2, session="pre")
    assert "Did you mean" not in str(info.value)


def test_not_found_names_a_coarser_value_that_covers_the_address(project):
    VPeak.save(1.0, subject=1)
    VPeak.save(2.0, subject=1, session="pre")
    with pytest.raises(VariableNotFoundError, match=re.escape(
            "A value at subject=1 covers it (what for_each takes there): VPeak.load(subject=1)")):
        VPeak.load(subject=1, session="post")
    with pytest.raises(VariableNotFoundError) as info:
        VPeak.load(subject=2, session="post")
    assert "covers it" not in str(info.value)


def test_not_found_names_the_variable_a_typo_meant(project):
    """`scistack log PeakFroce` listed every variable of the project; among a lab's dozens the
    one meant is named."""
    from scistack.selection import select_records

    VPeak.save(1.0, subject=1, session="pre")
    with pytest.raises(VariableNotFoundError, match=re.escape("Did you mean VPeak?")):
        select_records(project, "VPaek", {"subject": 1})
    with pytest.raises(VariableNotFoundError) as info:
        select_records(project, "Elsewhere", {})
    assert "Did you mean" not in str(info.value)


def test_not_found_at_a_deleted_address_says_so_and_how_to_undo(project):
    """A value deleted at the address asked for: the message said only that the variable has
    records with subject in {1, 2} and session in {'pre'}, which include the very values asked
    for, as if they were mistyped. It names the delete and the undelete that undoes it."""
    VPeak.save(1.0, subject=1, session="pre")
    VPeak.save(2.0, subject=2, session="pre")
    VPeak.save(3.0, subject="03", session="pre")
    VPeak.delete(subject=2, session="pre")
    VPeak.delete(subject="03", session="pre")
    with pytest.raises(VariableNotFoundError, match=re.escape(
            "A value saved there was deleted: `scistack undelete VPeak --subject 2 --session pre` "
            "(VPeak.undelete(subject=2, session='pre')) brings it back")):
        VPeak.load(subject=2, session="pre")
    with pytest.raises(VariableNotFoundError, match=re.escape("""undelete VPeak --subject "'03'" --session pre""")):
        VPeak.load(subject="03", session="pre")
    for never in ({"subject": 4, "session": "pre"}, {"subject": 2}):  # never saved; not a full address
        with pytest.raises(VariableNotFoundError) as info:
            VPeak.load(**never)
        assert "deleted" not in str(info.value)
    VPeak.undelete(subject=2, session="pre")
    assert VPeak.load(subject=2, session="pre").data == 2.0
    from scistack.gc import collect_garbage

    collect_garbage(project, grace_seconds=0)  # "03"'s value freed: no undelete brings it back
    with pytest.raises(VariableNotFoundError, match="deleted, and `scistack gc` has freed it since: save it again") as info:
        VPeak.load(subject="03", session="pre")
    assert "undelete" not in str(info.value)


def test_a_mistyped_version_or_where_keyword_is_named(project):
    VPeak.save(1.0, subject=1, session="pre")
    with pytest.raises(UnknownMetadataKeyError, match="did you mean 'version'"):
        VPeak.load(subject=1, session="pre", verison=1)
    with pytest.raises(UnknownMetadataKeyError, match="did you mean 'where'"):
        VPeak.load_all(wher="subject = 1")
    # a call that takes no where= (export) had said "did you mean 'where'?" of `where` itself
    with pytest.raises(UnknownMetadataKeyError, match="takes no where=") as info:
        project.export(VPeak, to=project.root / "out", where="subject = 1")
    assert "did you mean" not in str(info.value)


def test_a_version_that_is_not_a_whole_number_is_refused(project):
    VPeak.save(1.0, subject=1, session="pre")
    VPeak.save(2.0, subject=1, session="pre")
    for wrong in ("1", True, 1.5):  # "1" had said no record matches version=1
        with pytest.raises(InvalidMetadataError, match=r"give a whole number"):
            VPeak.load(subject=1, session="pre", version=wrong)
    assert VPeak.load(subject=1, session="pre", version=1.0).data == 1.0  # a MATLAB double
    assert VPeak.load(subject=1, session="pre", version=np.int64(2)).data == 2.0
    with pytest.raises(InvalidMetadataError, match=r"list_versions\(\.\.\.\) every version"):
        VPeak.load_all(version=1)  # had said VPeak has no metadata key 'version'


def test_load_all_generator_and_dataframe(project):
    for subject in (1, 2):
        VPeak.save(subject * 0.5, subject=subject, session="pre")
    VRaw.save(np.arange(3), subject=1, session="pre")
    assert [v.data for v in VPeak.load_all()] == [0.5, 1.0]
    frame = VPeak.load_all(as_df=True)
    assert list(frame.columns) == ["subject", "session", "data", "fn", "version", "created_at", "oid"]
    assert frame["data"].tolist() == [0.5, 1.0]
    arrays = VRaw.load(subject=1, as_df=True)
    assert isinstance(arrays.loc[0, "data"], np.ndarray)


def test_load_all_as_df_has_every_schema_key_also_one_no_record_holds(project):
    """Values saved per subject only: the frame still has a session column (all empty), as the
    SQL view has, so `df["session"]` works whatever was saved, and `where=` may name it."""
    for subject in (1, 2):
        VPeak.save(subject * 0.5, subject=subject)
    frame = VPeak.load_all(as_df=True)
    assert list(frame.columns) == ["subject", "session", "data", "fn", "version", "created_at", "oid"]
    assert frame["session"].isna().all() and frame["subject"].tolist() == [1, 2]
    assert list(VPeak.load(subject=1, as_df=True).columns) == list(frame.columns)
    assert [v.data for v in VPeak.load_all(where="session IS NULL AND subject = 2")] == [1.0]
    assert [v.data for v in VPeak.load_all(where="session = 'pre'")] == []


@pytest.mark.parametrize("later", [123.25, [7, 8], np.arange(3.0)])
def test_load_all_reads_packed_values_in_bulk_beside_one_saved_later_on_its_own(project, monkeypatch, later):
    """Values saved in a batch are packed; one saved on its own later is a loose object. The
    packed ones are still split and parsed in bulk: only the loose one is read one by one
    (it had sent every value of the variable through the slower reader)."""
    with project.batch():
        for subject in range(20):
            VPeak.save(subject * 0.5 if subject != 7 else [1, 2], subject=subject, session="pre")
    VPeak.save(later, subject=99, session="pre")
    asked, get_many = [], project.store.get_many
    monkeypatch.setattr(project.store, "get_many", lambda oids, **kw: asked.extend(oids) or get_many(oids, **kw))
    frame = VPeak.load_all(as_df=True)
    assert asked == [VPeak.load(subject=99, session="pre").oid]
    expected = [s * 0.5 if s != 7 else [1, 2] for s in range(20)] + [later]
    got = frame.sort_values("subject")["data"].tolist()
    assert len(got) == len(expected)
    for value, want in zip(got, expected):
        np.testing.assert_array_equal(value, want)

def test_load_all_as_df_keeps_an_int_a_float_column_would_change(project):
    # 2**53 + 1 beside 1.5 made a float64 column: 9007199254740992.0, not what load() gives
    VPeak.save(2**53 + 1, subject=1, session="pre")
    VPeak.save(1.5, subject=2, session="pre")
    frame = VPeak.load_all(as_df=True).sort_values("subject")
    assert frame["data"].tolist() == [2**53 + 1, 1.5] and type(frame["data"].iloc[0]) is int
    VPeak.save(7, subject=1, session="pre")  # ints beside floats that are doubles: float64
    assert VPeak.load_all(as_df=True)["data"].dtype == np.float64


@scistack.lineage_fcn
def fn_column_twice(x):
    return x * 2


@scistack.lineage_fcn
def fn_column_thrice(x):
    return x * 3


def test_the_fn_column_names_each_values_function_and_nothing_for_a_lost_record(project):
    """`fn` is read from each value's call record (many at once); a record lost or damaged
    leaves its cell empty (fsck names it) and the rest of the frame loads."""
    import os

    for subject in (1, 2, 3):
        VPeak.save(fn_column_twice(float(subject)), subject=subject, session="pre")
    VPeak.save(fn_column_thrice(4.0), subject=4, session="pre")
    VPeak.save(5.0, subject=5, session="pre")
    lost = VPeak.load(subject=2, session="pre").record.call
    path = project.store.path_of(lost)
    if path.exists():
        os.chmod(path, 0o644)
        os.unlink(path)
    frame = VPeak.load_all(as_df=True).sort_values("subject")
    names = [None if pd.isna(name) else name for name in frame["fn"]]
    assert names == ["fn_column_twice", None, "fn_column_twice", "fn_column_thrice", None]
    assert frame["data"].tolist() == [2.0, 4.0, 6.0, 12.0, 5.0]


def test_resave_loaded_variable_reuses_its_object(project):
    loaded = VRaw.save(np.arange(5.0), subject=1, session="pre")
    copy = VRaw.save(VRaw.load(subject=1, session="pre"), subject=2, session="pre")
    assert copy.oid == loaded.oid


def test_delete_removes_names_not_objects(project):
    saved = VPeak.save(3.0, subject=1, session="pre")
    assert VPeak.delete(subject=1, session="pre") == 1
    with pytest.raises(VariableNotFoundError):
        VPeak.load(subject=1, session="pre")
    assert project.store.contains(saved.oid)


def test_delete_naming_no_address_deletes_nothing_unless_all_is_asked(project):
    """`VPeak.delete(**keys)` with an empty `keys` (a filter built in a loop) deleted every record
    of the variable; `scistack rm` asks first and MATLAB refuses. Now it needs all=True."""
    VPeak.save(1.0, subject=1, session="pre")
    VPeak.save(2.0, subject=2, session="pre")
    keys: dict = {}
    with pytest.raises(InvalidMetadataError, match=r"names no address.*2 ref\(s\).*all=True"):
        VPeak.delete(**keys)
    with pytest.raises(InvalidMetadataError, match="names no address"):
        VPeak.delete(all=False)
    assert len(VPeak.load_all()) == 2
    assert VPeak.delete(all=True) == 2
    assert list(VPeak.load_all()) == []


def test_delete_of_a_version_naming_no_address_deletes_nothing_unless_all_is_asked(project):
    """`delete(version=1)` deleted version 1 at every address (a bare `delete()` is refused):
    numbers count per address, so one subject's bad first version took every subject's. It is
    refused, naming the fix, unless all=True says every address is meant."""
    for s in (1, 2):
        VPeak.save(1.0, subject=s, session="pre", note="b")
        VPeak.save(2.0, subject=s, session="pre", note="b")
    for query in ({"version": 1}, {"note": "b", "version": 1}):
        with pytest.raises(InvalidMetadataError, match=r"names no address: versions are numbered per address.*"
                                                       r"2 ref\(s\).*VPeak\.delete\(subject=\.\.\., version=1\), "
                                                       r"or pass all=True"):
            VPeak.delete(**query)
    assert len(VPeak.list_versions()) == 4  # nothing deleted
    assert VPeak.delete(subject=1, version=1) == 1
    assert VPeak.delete(version=2, all=True) == 2
    assert [(r.addr["subject"], r.version) for r in VPeak.list_versions()] == [(2, 1)]


def test_undelete_brings_records_back_in_their_order_until_gc_frees_them(project):
    """A delete (a slip, an empty filter with all=True) could only be undone by saving the
    values again by hand, without their lineage; undelete brings them back as new versions."""
    from scistack.gc import collect_garbage

    VPeak.save(1.0, subject=1, session="pre")
    VPeak.save(1.5, subject=1, session="pre")
    VPeak.save(2.0, subject=2, session="pre", note="b")
    VPeak.save(3.0, subject=3, session="pre")
    assert VPeak.delete(all=True) == 4
    assert VPeak.undelete(subject=[1, 2.0]) == 3  # 2.0 is subject 2; the list means any of
    assert [VPeak.load(subject=1, session="pre", version=v).data for v in (3, 4)] == [1.0, 1.5]
    assert VPeak.load(subject=1, session="pre").data == 1.5
    assert VPeak.load(subject=2, session="pre", note="b").data == 2.0
    with pytest.raises(VariableNotFoundError, match="no deleted record matching subject=4"):
        VPeak.undelete(subject=4)
    project.index.flush()
    collect_garbage(project, grace_seconds=0)  # subject 3's value is named by nothing: freed
    with pytest.warns(UserWarning, match=r"0 record\(s\) back; 1 not, their values reclaimed by gc"):
        assert VPeak.undelete(subject=3) == 0
    VPeak.save(7.0, subject=1, session="pre")
    VPeak.delete(subject=1, session="pre", version=5)
    VPeak.save(8.0, subject=1, session="pre")  # saved again after that delete: keeps what it has
    with pytest.warns(UserWarning, match="left deleted: their address holds records again"):
        assert VPeak.undelete(subject=1) == 0
    assert VPeak.load(subject=1, session="pre").data == 8.0


def test_undelete_refuses_the_queries_load_refuses(project):
    """undelete ran none of load's checks on its query: subject=nan brought back nothing with
    'no deleted record matching subject=nan', and subject=[1, nan] brought subject 1 back,
    passing over the NaN. It refuses them with load's own message."""
    VPeak.save(1.0, subject=1, session="pre")
    VPeak.save(2.0, subject=2, session="pre", note="b")
    assert VPeak.delete(all=True) == 2
    for query in ({"subject": float("nan")}, {"subject": [1, float("nan")]},
                  {"subject": pd.Series([1, 2])}, {"subject": np.ones((2, 2))},
                  {"subject": 2, "note": float("nan")}):
        with pytest.raises(InvalidMetadataError) as refused_load:
            VPeak.load(**query)
        with pytest.raises(InvalidMetadataError) as refused:
            VPeak.undelete(**query)
        assert str(refused.value) == str(refused_load.value)
    assert str(refused.value).startswith("VPeak: note=nan is a float, but not a finite one")
    with pytest.raises(InvalidMetadataError, match=r"VPeak: subject=nan is a float, but not a finite one"):
        VPeak.undelete(subject=[1, float("nan")])
    assert VPeak.load_all() == []  # nothing came back
    assert VPeak.undelete(subject=[1, 2]) == 2


def test_undelete_names_a_misspelt_key_and_takes_version(project):
    """undelete(subjct=1) said only that no deleted record matched, and version=1 was taken as
    a version key (matching nothing). A key no deleted record has is named with the keys there
    are and the one meant; version= picks the deleted version to bring back."""
    VPeak.save(1.0, subject=1, session="pre")
    VPeak.save(2.0, subject=1, session="pre")
    VPeak.save(3.0, subject=2, session="pre", note="b")
    VPeak.delete(all=True)
    with pytest.raises(UnknownMetadataKeyError, match=r"no metadata key 'subjct'.*version keys \['note'\].*did you mean 'subject'"):
        VPeak.undelete(subjct=1)
    with pytest.raises(VariableNotFoundError, match=r"no deleted record matching subject=1, version=7"):
        VPeak.undelete(subject=1, version=7)
    assert VPeak.undelete(subject=1, version=1) == 1
    assert VPeak.load(subject=1, session="pre").data == 1.0
    assert VPeak.undelete(note="b") == 1


def _versions_saved(**address):
    """The values of VPeak's live versions at `address`, oldest first."""
    return [VPeak.load(**r.addr, version=r.version).data for r in VPeak.list_versions(**address)]


def test_undelete_undoes_the_last_delete_not_a_version_deleted_on_purpose_before(project):
    """undelete brought back every record ever deleted at the address: a bad version deleted
    on purpose came back as the current value when a later slip was undone. It undoes the
    last delete of what it is asked for; the older one stays deleted (and is named)."""
    VPeak.save(1.0, subject=1, session="a")
    VPeak.save(-999.0, subject=1, session="a")
    VPeak.delete(subject=1, session="a", version=2)  # on purpose
    VPeak.delete(subject=1)  # a slip
    with pytest.warns(UserWarning, match=r"1 record\(s\) back; 1 removed by an older delete left deleted "
                                         r"\(e\.g\. subject=1, session='a', version=2"):
        assert VPeak.undelete(subject=1) == 1
    assert VPeak.load(subject=1, session="a").data == 1.0
    assert _versions_saved(subject=1) == [1.0]
    assert VPeak.undelete(subject=1, version=2) == 1  # asked for by its number: back
    assert VPeak.load(subject=1, session="a").data == -999.0


def test_undelete_never_makes_an_older_version_the_current_value(project):
    """A deleted record that was not the newest when deleted (an old version deleted on its
    own, or dropped by retention after a delete elsewhere) came back as a new version, so the
    older value became the current one. It stays deleted, and is named, unless asked for by
    its number."""
    from scistack.gc import collect_garbage

    for value in (1.0, 2.0, 3.0):
        VPeak.save(value, subject=1, session="pre")
    VPeak.delete(subject=1, session="pre", version=1)
    with pytest.warns(UserWarning, match=r"0 record\(s\) back; 1 left deleted: newer versions"):
        assert VPeak.undelete(subject=1) == 0
    assert VPeak.load(subject=1, session="pre").data == 3.0
    VPeak.save(9.0, subject=2, session="pre")
    VPeak.delete(subject=2)
    collect_garbage(project, keep_versions=1)  # drops version 2: not a delete, left deleted
    with pytest.warns(UserWarning, match="left deleted: newer versions"):
        VPeak.undelete()
    assert VPeak.load(subject=1, session="pre").data == 3.0
    assert VPeak.undelete(subject=1, version=1) == 1  # asked for by its number: the current value
    assert VPeak.load(subject=1, session="pre").data == 1.0


def test_undelete_leaves_the_versions_a_retention_rule_dropped(project):
    """Old versions whose names gc's retention rule dropped came back (as new versions) when
    a later delete of the address was undone: undelete undoes that delete only."""
    from scistack.gc import collect_garbage

    for value in (1.0, 2.0, 3.0):
        VPeak.save(value, subject=1, session="pre")
    collect_garbage(project, keep_versions=1)  # (the default grace: no value freed)
    VPeak.delete(subject=1)
    with pytest.warns(UserWarning, match="2 dropped by gc's retention rule left deleted"):
        assert VPeak.undelete(subject=1) == 1
    assert _versions_saved(subject=1) == [3.0]


def test_undelete_undoes_a_loop_of_deletes_whole(project):
    """`for s in subjects: delete(subject=s)` then `undelete()` brought back the last subject
    only (a warning named the rest): it undid the last delete of all it matched. It undoes
    each address's own last delete; a version deleted on purpose before that stays deleted."""
    for s in (1, 2, 3):
        VPeak.save(float(s), subject=s, session="pre")
    VPeak.save(-999.0, subject=2, session="pre")
    VPeak.delete(subject=2, session="pre", version=2)  # on purpose
    for s in (1, 2, 3):
        VPeak.delete(subject=s)
    with pytest.warns(UserWarning, match=r"3 record\(s\) back; 1 removed by an older delete left deleted "
                                         r"\(e\.g\. subject=2, session='pre', version=2"):
        assert VPeak.undelete() == 3
    assert [VPeak.load(subject=s, session="pre").data for s in (1, 2, 3)] == [1.0, 2.0, 3.0]
    assert _versions_saved(subject=2) == [2.0]


def test_undelete_leaves_another_addresss_delete_made_long_before(project, monkeypatch):
    """Undoing each address's own last delete brought back, with a loop just deleted, a subject
    deleted on purpose days before. Only deletes made within the window of the newest are
    undone together; the older one is named, and undone when its address is asked for."""
    import scistack.variables as variables

    monkeypatch.setattr(variables, "UNDO_WINDOW_S", 0.5)  # (an hour in use: the test can't wait one)
    for s in (1, 2, 3):
        VPeak.save(float(s), subject=s, session="pre")
    VPeak.delete(subject=3)  # on purpose, "days" before
    time.sleep(1.0)
    for s in (1, 2):
        VPeak.delete(subject=s)  # the mistake
    with pytest.warns(UserWarning, match=r"2 record\(s\) back; 1 left deleted: their address's last delete "
                                         r"was made more than .* \(e\.g\. subject=3, session='pre'; "
                                         r"undelete\(subject=3, session='pre'\) brings it back\)"):
        assert VPeak.undelete() == 2
    assert [VPeak.load(subject=s, session="pre").data for s in (1, 2)] == [1.0, 2.0]
    assert VPeak.load_all(subject=3) == []
    assert VPeak.undelete(subject=3) == 1


def test_undelete_skips_a_retention_drop_made_after_the_delete(project):
    """A retention drop after a mistaken delete counted as the last delete: undelete tried to
    bring back the version gc dropped (and, an older one, left it and the deleted one alone).
    A drop is lifecycle, not a delete: undelete undoes the user's delete, and brings a dropped
    version back only when asked for by its number."""
    from scistack.gc import collect_garbage

    for value in (1.0, 2.0, 3.0):
        VPeak.save(value, subject=1, session="pre")
    VPeak.delete(subject=1, session="pre", version=3)  # the mistake: the current value
    collect_garbage(project, keep_versions=1)  # drops version 1 (the default grace: nothing freed)
    with pytest.warns(UserWarning, match=r"1 record\(s\) back; 1 dropped by gc's retention rule left "
                                         r"deleted \(e\.g\. subject=1, session='pre', version=1"):
        assert VPeak.undelete(subject=1) == 1
    assert _versions_saved(subject=1) == [2.0, 3.0]
    VPeak.save(4.0, subject=1, session="pre")
    collect_garbage(project, keep_versions=1)  # drops versions 2 and 4 (3.0 back as version 4)
    with pytest.warns(UserWarning, match=r"0 record\(s\) back; .*3 dropped by gc's retention rule"):
        assert VPeak.undelete(subject=1) == 0  # only drops (and the delete undone) to undo
    assert _versions_saved(subject=1) == [4.0]
    assert VPeak.undelete(subject=1, version=1) == 1  # asked for by its number: back
    assert VPeak.load(subject=1, session="pre").data == 1.0


def test_undelete_brings_a_record_back_once(project):
    """Records deleted and brought back were still counted as deleted: each delete/undelete
    cycle brought back twice as many (2, 4, 8 copies). A record live again since its delete,
    brought back or its value saved again, is not brought back twice."""
    VPeak.save(1.0, subject=1, session="pre")
    VPeak.save(2.0, subject=1, session="pre")
    for _ in range(3):
        VPeak.delete(subject=1)
        assert VPeak.undelete(subject=1) == 2
        assert _versions_saved(subject=1) == [1.0, 2.0]
    with pytest.warns(UserWarning, match=r"0 record\(s\) back; 2 back already"):
        assert VPeak.undelete(subject=1) == 0
    VPeak.delete(subject=1, version=8)
    VPeak.save(2.0, subject=1, session="pre")  # the same value saved again
    with pytest.warns(UserWarning, match="1 back already"):
        assert VPeak.undelete(subject=1) == 0
    assert _versions_saved(subject=1) == [1.0, 2.0]


def test_undelete_by_version_while_other_versions_stay_live(project):
    """undelete(version=2) after delete(version=2) brought nothing back, warning that the
    address 'holds records again since the delete': the versions that were never deleted
    counted as saved since. So did a version brought back just before, after delete(all=True)."""
    for value in (1.0, 2.0, 3.0):
        VPeak.save(value, subject=1, session="pre")
    VPeak.delete(subject=1, session="pre", version=2)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert VPeak.undelete(subject=1, session="pre", version=2) == 1
    assert _versions_saved(subject=1) == [1.0, 3.0, 2.0]
    VPeak.delete(all=True)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert VPeak.undelete(subject=1, version=1) == 1
        assert VPeak.undelete(subject=1, version=3) == 1
    assert _versions_saved(subject=1) == [1.0, 3.0]


class VTrial(BaseVariable):
    pass


def trial_mean(x):
    return float(np.mean(x))


def test_a_whole_float_is_the_same_address_as_the_int(project):
    """`subject=1.0` (a pandas column of floats, a MATLAB double) was a second address beside
    `subject=1`: load(subject=1) missed it, for_each ran both, and Python and MATLAB saves of one
    subject never met. A whole float is the int; 1.5, "1" and True stay what they are."""
    frame = pd.DataFrame({"subject": [1.0, 2.0, np.nan], "session": ["pre", "pre", "post"]})
    VRaw.save(np.ones(3), subject=1, session="pre")
    for subject in frame.subject.dropna():          # np.float64(1.0), np.float64(2.0)
        VRaw.save(np.arange(3.0) * subject, subject=subject, session="pre")
    assert VRaw.load(subject=1, session="pre").version == 2
    assert VRaw.load(subject=np.float64(2.0), session="pre").metadata == {"subject": 2, "session": "pre"}
    VRaw.save(np.zeros(3), subject=1.5, session="pre", note=3.0)
    assert VRaw.load(subject=1.5, session="pre", note=3).metadata == {"subject": 1.5, "session": "pre", "note": 3}
    report = scistack.for_each(trial_mean, inputs={"x": VRaw}, outputs=[VTrial], subject=[], session=["pre"],
                               verbose=False)
    assert sorted(i.combo["subject"] for i in report.items) == [1, 1.5, 2]
    assert scistack.for_each(trial_mean, inputs={"x": VRaw}, outputs=[VTrial], subject=[1.0, 2.0],
                             session=["pre"], verbose=False).cached == 2
    VTrial.save_from_dataframe(pd.DataFrame({"subject": [1.0], "session": ["pre"], "v": [7.0]}), "v")
    assert VTrial.load(subject=1, session="pre").data == 7.0


def test_coarser_address_is_allowed(project):
    VPeak.save(7.0, subject=1)
    assert VPeak.load(subject=1).data == 7.0


def test_batch_saves_are_visible_and_durable(project):
    with project.batch():
        for i in range(50):
            VPeak.save(float(i), subject=i, session="pre")
        assert VPeak.load(subject=10, session="pre").data == 10.0
    assert len(VPeak.load(session="pre")) == 50
    assert journal_size(project) > 0


def test_versions_asked_for_inside_a_batch_are_the_projects(project):
    """A held save is numbered when written: `load(version=1)` inside a batch had found the
    project's version 1 and the held one (provisionally 1 too) and refused them as variants;
    `where=` picked the project's version 2 over the newer held value."""
    VPeak.save(1.0, subject=1, session="pre")
    VPeak.save(2.0, subject=1, session="pre")
    with project.batch():
        VPeak.save(3.0, subject=1, session="pre")
        assert VPeak.load(subject=1, session="pre", version=1).data == 1.0
        VPeak.save(4.0, subject=1, session="pre")
        assert [v.data for v in VPeak.load_all(where="subject = 1")] == [4.0]
        VPeak.save(5.0, subject=1, session="pre")
        assert [(r.version, r.oid) for r in VPeak.list_versions(subject=1, session="pre")][-1][0] == 5
    assert VPeak.load(subject=1, session="pre").version == 5


def test_a_save_inside_a_batch_tells_the_version_it_got(project):
    """A held save is numbered when the batch is written; the variable a save returned
    inside it said version 1 at an address that had 2 versions (and a value already current
    there, which the batch then dropped, said a new version). Asking for it writes the batch
    so far, so it tells the version it got; a save nobody asks about costs nothing more."""
    import pickle

    VPeak.save(1.0, subject=1, session="pre")
    VPeak.save(2.0, subject=1, session="pre")
    VPeak.save(9.0, subject=2, session="pre")
    with project.batch():
        third = VPeak.save(3.0, subject=1, session="pre")
        again = VPeak.save(9.0, subject=2, session="pre")  # the current value there: no new version
        fourth = VPeak.save(4.0, subject=1, session="pre")
        assert third.version == 3 and again.version == 1
        assert VPeak.load(subject=1, session="pre", version=third.version).data == 3.0
        fifth = VPeak.save(5.0, subject=1, session="pre")
        copied = pickle.loads(pickle.dumps(fifth))  # settled first: the index stays here
    assert (fourth.version, fifth.version, copied.version) == (4, 5, 5)
    assert [r.version for r in VPeak.list_versions(subject=1, session="pre")] == [1, 2, 3, 4, 5]
    assert repr(fifth) == repr(VPeak.load(subject=1, session="pre"))


@pytest.mark.parametrize("metadata, error", [
    ({"subject": [1, 2], "session": "pre"}, InvalidMetadataError),
    ({"subject": None, "session": "pre"}, InvalidMetadataError),
    ({"subject": float("inf"), "session": "pre"}, InvalidMetadataError),
    ({"subject": 1, "gain": float("nan")}, InvalidMetadataError),
    ({"note": "x"}, InvalidMetadataError),                 # no schema key at all
    ({"subject": 1, "data": 2}, InvalidNameError),         # reserved
    ({"subject": 1, "version": 2}, InvalidNameError),
    ({"subject": 1, "bad-name": 2}, InvalidNameError),     # not an SQL identifier
    ({"subject": 1, "note": [1]}, InvalidMetadataError),   # version key must be a scalar
])
def test_bad_metadata_is_refused_and_nothing_is_harmed(project, metadata, error):
    VPeak.save(1.0, subject=1, session="pre")
    with pytest.raises(error):
        VPeak.save(2.0, **metadata)
    assert VPeak.load(subject=1, session="pre").data == 1.0
    assert len(list(VPeak.load_all())) == 1


def test_a_dict_or_list_holding_loaded_values_saves_their_data(project):
    """`{"emg": EMG.load(...), "fs": 2000}` is what a scientist writes to bundle a recording
    with its rate: each loaded value (or result) inside is saved as its data, at any depth,
    not refused as a type scistack cannot store. Anything else still is, naming its type."""
    VRaw.save(np.arange(4.0), subject=1, session="pre")
    loaded = VRaw.load(subject=1, session="pre")
    VPeak.save({"emg": loaded, "fs": 2000, "more": [loaded, (1, loaded)]}, subject=1, session="pre")
    got = VPeak.load(subject=1, session="pre").data
    np.testing.assert_array_equal(got["emg"], np.arange(4.0))
    np.testing.assert_array_equal(got["more"][1][1], np.arange(4.0))
    assert got["fs"] == 2000 and got["more"][1][0] == 1

    class Custom:
        pass

    with pytest.raises(UnsupportedValueError, match="Custom"):
        VPeak.save({"emg": loaded, "x": Custom()}, subject=2, session="pre")
    with pytest.raises(VariableNotFoundError):
        VPeak.load(subject=2, session="pre")


def test_unsupported_value_names_type_and_saves_nothing(project):
    class Custom:
        pass

    with pytest.raises(UnsupportedValueError, match="Custom"):
        VPeak.save(Custom(), subject=1, session="pre")
    # the common ones name the conversion that keeps their meaning
    import datetime
    import pathlib

    for value, way in ((datetime.datetime(2024, 1, 2), r"np.datetime64\(value\)"),
                       (datetime.timedelta(seconds=3), r"np.timedelta64\(value\)"),
                       (pathlib.Path("rec.dat"), r"str\(path\).*PathInput"), ({1, 2}, r"sorted\(value\)")):
        with pytest.raises(UnsupportedValueError, match=way):
            VPeak.save(value, subject=1, session="pre")
    with pytest.raises(VariableNotFoundError):
        VPeak.load(subject=1, session="pre")
    VPeak.save(np.datetime64(datetime.datetime(2024, 1, 2)), subject=1, session="pre")  # the way works


def test_typo_of_schema_key_warns(project):
    with pytest.warns(UserWarning, match="did you mean 'subject'"):
        VPeak.save(1.0, subject=1, subjct=2)


def test_a_schema_key_written_in_another_case_is_refused_not_a_version_key(project):
    """`Subject=1` for the schema key `subject` had saved a coarser value with a version key
    `Subject` (a warning only), which no view column and no where= could tell apart."""
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the refusal alone, no warning before it
        with pytest.raises(InvalidMetadataError, match=r"'Subject' is the schema key 'subject' but for case"):
            VPeak.save(1.0, Subject=1, session="pre")
    with pytest.raises(VariableNotFoundError):
        VPeak.load(session="pre")  # nothing was saved


def test_reserved_and_invalid_variable_names():
    with pytest.raises(InvalidNameError):
        type("data", (BaseVariable,), {})
    with pytest.raises(InvalidNameError):
        type("has space", (BaseVariable,), {})


def test_same_name_from_another_module_raises_but_redefinition_is_fine():
    type("Redefined", (BaseVariable,), {"__module__": "nb"})
    type("Redefined", (BaseVariable,), {"__module__": "nb"})  # notebook cell re-run
    with pytest.raises(DuplicateVariableError, match="Redefined"):
        type("Redefined", (BaseVariable,), {"__module__": "other_module"})


def test_reopen_with_other_keys_raises_and_changes_nothing(tmp_path):
    db = configure_database(tmp_path / "a.duckdb", ["subject"])
    VPeak.save(1.0, subject=1)
    db.close()
    with pytest.raises(SchemaMismatchError, match="subject"):
        scistack.Database(tmp_path / "a.duckdb", ["subject", "trial"])
    db = configure_database(tmp_path / "a.duckdb", ["subject"])
    assert VPeak.load(subject=1).data == 1.0
    db.close()


class VPerTrial(BaseVariable):
    pass


def calibrated(x, gain):
    return x * gain


def test_a_finer_level_is_added_and_the_values_saved_before_stay_where_they_were(tmp_path, monkeypatch):
    """A project that grows a level (trials within sessions) had to start over in a new file:
    opening it with the new keys was refused. `add_schema_key` appends the level."""
    import subprocess
    import sys

    monkeypatch.chdir(tmp_path)
    db = configure_database(tmp_path / "a.duckdb", ["subject", "session"])
    VPeak.save(2.0, subject=1, session="pre")
    VRaw.save(np.ones(2), subject=1, session="pre", filter="raw")
    with pytest.raises(SchemaMismatchError, match=r"db.add_schema_key\('trial'\).*keep their addresses"):
        scistack.Database(tmp_path / "a.duckdb", ["subject", "session", "trial"])
    with pytest.raises(InvalidMetadataError, match="'filter' as a version key.*Nothing was changed"):
        db.add_schema_key("filter")
    with pytest.raises(InvalidNameError, match="repeat a name"):
        db.add_schema_key("Session")
    stale = scistack.Database(tmp_path / "a.duckdb")  # another session, open before the key is added
    assert db.add_schema_key("trial") == ["subject", "session", "trial"]
    scistack.database._current = stale
    VPerTrial.save(np.ones(3), subject=1, session="pre", rep=1)  # another version key: fine
    with pytest.raises(SchemaMismatchError, match="'trial' became a schema key.*reopen the project"):
        VPerTrial.save(np.ones(3), subject=1, session="pre", trial=1)  # not a version key 'trial'
    with pytest.raises(SchemaMismatchError, match="'trial' became a schema key"):  # (asked again: still refused)
        VPerTrial.save(np.ones(3), subject=1, session="pre", trial=1)
    with pytest.raises(InvalidMetadataError, match="'trial' became a schema key.*reopen the project.*select by it"):
        VPeak.load(subject=1, session="pre", trial=1)  # (had said: VPeak has no metadata key 'trial')
    VPerTrial.delete(subject=1, session="pre", rep=1)
    VPeak.save(5.0, subject=2, session="pre")  # without the new key: fine, and synced by column name
    assert stale.sql("SELECT subject, value FROM VPeak ORDER BY subject")["value"].tolist() == [2.0, 5.0]
    assert "trial" in stale.sql("SELECT * FROM VPeak").columns  # its views keep the new key's column
    stale.close()
    scistack.database._current = db
    for trial in (1, 2):
        VPerTrial.save(np.arange(3.0) * trial, subject=1, session="pre", trial=trial)
    report = scistack.for_each(calibrated, inputs={"x": VPerTrial, "gain": VPeak}, outputs=[VRaw],
                               subject=[1], session=["pre"], trial=[], verbose=False)
    assert report.ran == 2                                  # each trial got its session's gain
    np.testing.assert_array_equal(VRaw.load(subject=1, session="pre", trial=2).data, np.arange(3.0) * 4)
    assert VPeak.load(subject=1, session="pre").data == 2.0
    frame = db.sql("SELECT trial, value FROM VRaw WHERE trial IS NOT NULL ORDER BY trial")
    assert frame["trial"].tolist() == [1, 2]
    db.close()
    scistack.database._current = None
    done = subprocess.run([sys.executable, "-m", "scistack", "add-key", "repetition"], cwd=tmp_path,
                          capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    with pytest.raises(SchemaMismatchError, match="has schema keys"):
        configure_database(tmp_path / "a.duckdb", ["subject"])  # short of a key it was created with: a slip
    with pytest.warns(UserWarning, match="since a finer level was added; opened with them"):
        db = configure_database(tmp_path / "a.duckdb", ["subject", "session"])  # a script written before
    try:
        assert db.schema_keys == ["subject", "session", "trial", "repetition"]
        assert VPerTrial.load(subject=1, session="pre", trial=1).data.tolist() == [0.0, 1.0, 2.0]
        assert len(db.sql("SELECT * FROM VPerTrial")) == 2
    finally:
        db.close()
        scistack.database._current = None


def test_a_schema_key_added_by_a_process_killed_before_duckdb_was_rebuilt(tmp_path):
    """The config names the new key, DuckDB's refs table lacks its column: every sync failed
    ("column not found"), `fsck --reindex` too. The next open builds DuckDB again."""
    import json

    db = configure_database(tmp_path / "a.duckdb", ["subject"])
    VPeak.save(1.0, subject=1)
    db.close()
    scistack.database._current = None
    config = tmp_path / ".scistack" / "config.json"  # what add_schema_key writes first
    config.write_text(json.dumps(json.loads(config.read_text()) | {"schema_keys": ["subject", "trial"]}))
    db = configure_database(tmp_path / "a.duckdb")
    try:
        VPeak.save(2.0, subject=1, trial=3)
        frame = db.sql("SELECT subject, trial, value FROM VPeak ORDER BY value")
        assert frame["trial"].tolist()[1] == 3 and frame["value"].tolist() == [1.0, 2.0]
    finally:
        db.close()
        scistack.database._current = None


def test_third_positional_argument_is_deprecated(tmp_path):
    with pytest.warns(DeprecationWarning, match="lineage"):
        db = configure_database(tmp_path / "a.duckdb", ["subject"], tmp_path / "lineage.duckdb")
    db.close()


def test_no_database_configured_is_a_clear_error(no_database):
    with pytest.raises(NotARepositoryError, match="configure_database"):
        VPeak.load(subject=1)


def test_discovery_walks_up_like_git_and_env_var_overrides(tmp_path, monkeypatch):
    db = configure_database(tmp_path / "proj.duckdb", ["subject"])
    VPeak.save(4.0, subject=1)
    db.close()
    sub = tmp_path / "analysis" / "deep"
    sub.mkdir(parents=True)
    found = scistack.Database.discover(sub)
    assert found.path == (tmp_path / "proj.duckdb").resolve()
    found.index.close()
    monkeypatch.setenv("SCISTACK_DB", str(tmp_path / "proj.duckdb"))
    assert scistack.Database.discover("/").schema_keys == ["subject"]
    monkeypatch.delenv("SCISTACK_DB")
    with pytest.raises(NotARepositoryError):
        scistack.Database.discover(tmp_path.parent)


def test_database_is_a_context_manager(tmp_path):
    with configure_database(tmp_path / "c.duckdb", ["subject"]) as db:
        VPeak.save(1.0, subject=1)
    assert db.path.exists()


def test_dataframe_values_roundtrip_through_variables(project):
    frame = pd.DataFrame({"t": [0.0, 0.1], "force": [1.5, 2.5]})
    VRaw.save(frame, subject=1, session="pre")
    pd.testing.assert_frame_equal(VRaw.load(subject=1, session="pre").data, frame)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        VRaw.save({"gain": 2, "ok": True}, subject=2, session="pre")
    assert VRaw.load(subject=2, session="pre").data == {"gain": 2, "ok": True}


def test_numpy_values_select_as_the_numbers_they_hold(project):
    # a list of numpy ints matched nothing; an array and Fixed(..., subject=np.int64(1))
    # raised a bare TypeError (not JSON serializable)
    from scistack import Fixed, for_each

    for subject in (1, 2, 3):
        VRaw.save(np.arange(3.0) * subject, subject=subject, session="pre")
    assert len(VRaw.load(subject=list(np.arange(1, 3)), session="pre")) == 2
    assert len(VRaw.load(subject=np.array([1, 3]), session=np.str_("pre"))) == 2
    assert len(VRaw.load_all(subject=np.arange(5))) == 3
    assert [r.version for r in VRaw.list_versions(subject=np.array([2]), session="pre")] == [1]
    with pytest.raises(InvalidMetadataError, match="2-D array"):
        VRaw.load(subject=np.ones((2, 2)))
    report = for_each(lambda signal, base: signal - base,
                      inputs={"signal": VRaw, "base": Fixed(VRaw, subject=np.int64(1))},
                      outputs=[VPeak], subject=[2], session=["pre"], progress=False)
    assert report.ran == 1
    assert VPeak.load(subject=2, session="pre").data.tolist() == [0.0, 1.0, 2.0]


def test_the_base_class_saves_no_variable_named_basevariable(project):
    """`BaseVariable.save(...)` made a variable called "BaseVariable"; a subclass was meant."""
    import pandas as pd

    with pytest.raises(InvalidNameError, match=r"names no variable.*class RawEMG\(BaseVariable\)"):
        BaseVariable.save(1.0, subject=1, session="pre")
    with pytest.raises(InvalidNameError, match="names no variable"):
        BaseVariable.save_from_dataframe(pd.DataFrame({"subject": [1], "session": ["a"], "v": [1.0]}))
    assert "BaseVariable" not in project.index.variables()
