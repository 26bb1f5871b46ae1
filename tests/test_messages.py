"""Messages a new user meets: each names the problem and the fix, and never echoes megabytes."""

from __future__ import annotations

import re

import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner

import scistack
from scistack import BaseVariable, for_each, lineage_fcn
from scistack.cli import main
from scistack.address import MAX_TEXT
from scistack.errors import (
    EmptyVariableError,
    ForEachError,
    InvalidMetadataError,
    QueryError,
    UnknownMetadataKeyError,
    UnsavedVariableWarning,
    VariableNotFoundError,
)


class MsRaw(BaseVariable):
    pass


class MsOut(BaseVariable):
    pass


class MsOut2(BaseVariable):
    pass


@lineage_fcn
def ms_double(x):
    return x * 2


@lineage_fcn
def ms_nothing(x):
    return None


@lineage_fcn
def ms_pair(x):
    return float(np.min(x)), float(np.max(x))


def test_a_huge_address_value_is_refused_with_the_limit_and_not_echoed(project):
    huge = "x" * 1_000_000
    with pytest.raises(InvalidMetadataError) as err:
        MsRaw.save(1.0, subject=1, session=huge)
    assert f"{MAX_TEXT:,} characters" in str(err.value) and len(str(err.value)) < 600
    with pytest.raises(InvalidMetadataError) as err:
        MsRaw.save(1.0, subject=1, note=huge)
    assert len(str(err.value)) < 600
    MsRaw.save(1.0, subject=1, session="pre")
    with pytest.raises(InvalidMetadataError) as err:  # (no save could have used it: said so)
        MsRaw.load(subject=1, session=huge)
    assert f"{MAX_TEXT:,} characters" in str(err.value) and len(str(err.value)) < 600
    with pytest.raises(InvalidMetadataError) as err:
        for_each(ms_double, inputs={"x": MsRaw}, outputs=[MsOut], subject=[1], session=[huge])
    assert len(str(err.value)) < 600


def test_an_int_beyond_64_bits_is_refused(project):
    with pytest.raises(InvalidMetadataError, match="beyond 64 bits") as err:
        MsRaw.save(1.0, subject=10**5000, session="pre")
    assert len(str(err.value)) < 300


def test_load_and_undelete_of_an_int_beyond_64_bits_say_so_not_that_nothing_matches(project):
    """Loading or bringing back `subject=2**70` had said "no record matching": no save could
    have used it, so it is refused as save refuses it, naming the key and the way out."""
    MsRaw.save(1.0, subject=1, session="pre")
    MsRaw.delete(subject=1, session="pre")
    asks = [lambda: MsRaw.load(subject=2**70), lambda: MsRaw.load(subject=2**70, session="pre"),
            lambda: MsRaw.load(subject=[1, 2**70]), lambda: MsRaw.load_all(subject=2**70),
            lambda: MsRaw.undelete(subject=2**70), lambda: MsRaw.undelete(session="pre", subject=2**70),
            lambda: MsRaw.delete(subject=2**70), lambda: MsRaw.list_versions(subject=2**70)]
    for ask in asks:
        with pytest.raises(InvalidMetadataError, match=r"subject=1180591620717411303424 is an int beyond 64 "
                                                       r"bits; .* use a string for a longer number") as err:
            ask()
        assert not isinstance(err.value, VariableNotFoundError)


@pytest.mark.parametrize("value, why", [(np.nan, "NaN never equals itself"), (np.inf, "JSON, which has no infinity")])
def test_a_fixed_input_pinned_to_nan_or_infinity_is_refused_where_it_is_written(value, why):
    """`Fixed(Var, subject=nan)` had failed every combination of the run with a bare ValueError."""
    from scistack import Fixed

    with pytest.raises(InvalidMetadataError, match=r"Fixed\(MsRaw, subject=(nan|inf)\) is a float, but not a finite") as err:
        Fixed(MsRaw, subject=value)
    assert why in str(err.value)
    assert Fixed(MsRaw, note=None).pinned == {"note": None}  # (the variant saved without a note)


def test_nan_as_a_version_key_says_why(project):
    with pytest.raises(InvalidMetadataError) as err:
        MsRaw.save(1.0, subject=1, session="pre", gain=float("nan"))
    assert "not a finite one" in str(err.value) and "must be a float" not in str(err.value)


@pytest.mark.parametrize("value, named", [
    (np.nan, "subject=nan is a float, but not a finite one"),
    (float("inf"), "subject=inf is a float, but not a finite one"),
    (pd.Series([1, 2]), "is a Series; address values are single ints"),
    ([[1]], "subject=[1] is a list; address values are single ints"),
    ([1, np.nan], "subject=nan is a float, but not a finite one"),
])
def test_a_query_by_an_address_no_save_could_have_is_refused_as_save_refuses_it(project, value, named):
    MsRaw.save(1.0, subject=1, session="pre")
    asks = [lambda: MsRaw.load(subject=value), lambda: MsRaw.load(subject=value, session="pre"),
            lambda: MsRaw.load_all(subject=value), lambda: MsRaw.list_versions(subject=value),
            lambda: MsRaw.delete(subject=value), lambda: scistack.why(MsRaw, subject=value, session="pre"),
            lambda: project.get_provenance(MsRaw, subject=value, session="pre")]
    for ask in asks:
        with pytest.raises(InvalidMetadataError, match=re.escape(named)) as err:
            ask()
        assert "\n" not in str(err.value)  # (a Series' repr, on one line)
    assert MsRaw.load(subject=1, session="pre").data == 1.0


def test_the_cli_refuses_an_infinite_address_as_save_does(project):
    MsRaw.save(1.0, subject=1, session="pre")
    for command in (["log", "MsRaw"], ["show", "MsRaw", "--session", "pre"], ["why", "MsRaw", "--session", "pre"]):
        result = CliRunner().invoke(main, ["--db", str(project.path), *command, "--subject", "1e400"])
        assert result.exit_code != 0
        assert "error: MsRaw: subject=inf is a float, but not a finite one" in result.output, result.output


def test_a_typo_in_load_all_raises_naming_the_valid_keys(project):
    MsRaw.save(1.0, subject=1, session="pre")
    with pytest.raises(UnknownMetadataKeyError, match="did you mean 'subject'") as err:
        MsRaw.load_all(subjet=1)
    assert "['subject', 'session']" in str(err.value)
    assert MsRaw.load_all(subject=7) == []  # a valid key with nothing there is just empty


def test_one_output_class_without_a_list_is_accepted(project):
    MsRaw.save(np.arange(3.0), subject=1, session="pre")
    report = for_each(ms_double, inputs={"x": MsRaw}, outputs=MsOut, subject=[1], session=["pre"],
                      progress=False)
    assert report.counts["ran"] == 1 and MsOut.load(subject=1, session="pre").data.tolist() == [0, 2, 4]
    with pytest.raises(InvalidMetadataError, match="list of variable classes"):
        for_each(ms_double, inputs={"x": MsRaw}, outputs=3, subject=[1], session=["pre"])


def test_an_empty_variable_instance_as_an_input_is_an_error(project):
    MsRaw.save(np.arange(3.0), subject=1, session="pre")
    with pytest.raises(EmptyVariableError, match="pass the class itself"):
        for_each(ms_double, inputs={"x": MsRaw()}, outputs=[MsOut], subject=[1], session=["pre"])
    with pytest.raises(EmptyVariableError):
        ms_double(MsRaw())


def test_a_function_returning_none_is_skipped_with_a_reason(project):
    MsRaw.save(np.arange(3.0), subject=1, session="pre")
    report = for_each(ms_nothing, inputs={"x": MsRaw}, outputs=[MsOut], subject=[1], session=["pre"],
                      progress=False)
    assert report.counts["skipped"] == 1 and "returned None" in report.items[0].error
    assert "returned None" in str(report)


def test_a_tuple_returned_for_one_output_is_flagged(project):
    MsRaw.save(np.arange(3.0), subject=1, session="pre")
    report = for_each(ms_pair, inputs={"x": MsRaw}, outputs=[MsOut], subject=[1], session=["pre"],
                      progress=False)
    assert report.counts["failed"] == 1 and "tuple of 2 values" in report.failures[0].error
    report = for_each(ms_pair, inputs={"x": MsRaw}, outputs=[MsOut, MsOut2], subject=[1],
                      session=["pre"], progress=False)
    assert report.counts["ran"] == 1 and MsOut2.load(subject=1, session="pre").data == 2.0


def test_where_and_distribute_are_not_suggested_as_inputs(project):
    for option in ("where", "distribute"):
        with pytest.raises(InvalidMetadataError) as err:
            for_each(ms_double, inputs={"x": MsRaw}, outputs=[MsOut], subject=[1], **{option: True})
        assert f"for_each has no option {option}=" in str(err.value) and "inputs=" not in str(err.value)
    with pytest.raises(InvalidMetadataError, match=r"parameters of the function.*inputs="):
        for_each(ms_double, inputs={}, outputs=[MsOut], subject=[1], x=3)


def test_a_misspelt_column_in_where_names_the_one_meant(project):
    """`where="sesion = 'pre'"` listed the columns; `load(sesion=...)` also says which key
    was meant, and so does `where=` now."""
    MsRaw.save(1.0, subject=1, session="pre")
    with pytest.raises(QueryError, match="'sesion' is not a column here; did you mean 'session'\\?"):
        MsRaw.load_all(where="sesion = 'pre'")
    with pytest.raises(QueryError, match="not a column here; the columns are"):  # nothing near
        MsRaw.load_all(where="zzz = 1")


class MsgDeletedAll(BaseVariable):
    pass


def test_a_variable_whose_every_record_was_deleted_is_not_said_never_saved(project):
    """"variables with records: none yet" read as if nothing had ever been saved."""
    MsgDeletedAll.save(1.0, subject=1, session="pre")
    MsgDeletedAll.delete(subject=1)
    with pytest.raises(VariableNotFoundError, match=r"every one was deleted; MsgDeletedAll.undelete\(\)") as info:
        MsgDeletedAll.load(subject=1, session="pre")
    assert "never saved" not in str(info.value)


class MsgEmg(BaseVariable):
    pass


class MsgEmgs(BaseVariable):  # MsgEmg misspelt: never saved
    pass


class MsgNeverSaved(BaseVariable):
    pass


def test_loading_a_variable_never_saved_names_the_variables_saved_the_one_meant_and_how_to_save(project):
    """`load` of a class never saved in the project had said it "has no saved records" and
    listed the others, naming no fix: a first-hour user had misspelt a class, or not yet run
    the step that computes it."""
    MsgEmg.save(1.0, subject=1, session="pre")
    with pytest.raises(VariableNotFoundError) as info:
        MsgEmgs.load(subject=1, session="pre")
    text = str(info.value)
    assert "MsgEmgs has no saved values in this project (asked for subject=1, session='pre')" in text
    assert "never saved here. Did you mean MsgEmg?" in text
    assert "Variables with saved values: MsgEmg." in text
    assert "MsgEmgs.save(value, subject=..., session=...)" in text
    with pytest.raises(VariableNotFoundError) as info:
        MsgNeverSaved.load(low_hz=20)  # (no lineage parameters yet: not said to be a typo of the key)
    assert "MsgNeverSaved has no saved values in this project (asked for low_hz=20)" in str(info.value)
    assert "Did you mean" not in str(info.value)


def test_load_at_an_address_without_a_value_still_lists_what_the_variable_has(project):
    MsgEmg.save(1.0, subject=1, session="pre")
    with pytest.raises(VariableNotFoundError) as info:
        MsgEmg.load(subject=2)
    assert str(info.value) == "MsgEmg has no record matching subject=2; it has 1 records with subject in {1}; " \
        "session in {'pre'}"


def test_load_all_of_a_variable_never_saved_is_empty_and_warns_once_naming_the_one_meant(project):
    """`load_all()` of a class never saved returned [] in silence: a misspelt class read as
    "no results yet". Scripts rely on the empty result, so it stays, with one warning."""
    MsgEmg.save(1.0, subject=1, session="pre")
    with pytest.warns(scistack.UnsavedVariableWarning) as warned:  # (importable as scistack.X)
        assert MsgEmgs.load_all() == []
    assert len(warned) == 1
    assert "MsgEmgs has no saved values in this project" in str(warned[0].message)
    assert "Did you mean MsgEmg?" in str(warned[0].message)
    with pytest.warns(UnsavedVariableWarning):
        assert MsgEmgs.load_all(low_hz=20) == []  # (no parameter is known of a variable never saved)
    with pytest.warns(UnsavedVariableWarning):
        frame = MsgEmgs.load_all(as_df=True)
    saved = MsgEmg.load_all(as_df=True)
    assert frame.empty and list(frame.columns) == list(saved.columns)
    assert frame["version"].dtype == saved["version"].dtype


def test_load_all_of_a_variable_whose_values_were_all_deleted_is_empty_in_silence(project, recwarn):
    MsgDeletedAll.save(1.0, subject=1, session="pre")
    MsgDeletedAll.delete(subject=1)
    assert MsgDeletedAll.load_all() == []
    assert MsgDeletedAll.load_all(as_df=True).empty
    assert not [w for w in recwarn if issubclass(w.category, UnsavedVariableWarning)]


@lineage_fcn
def ms_fails(x):
    raise ValueError("bad trial")


def test_a_combination_is_shown_as_load_takes_it_in_every_message(project, caplog):
    """A combination was `{'subject': 1, 'session': 'pre'}` in for_each's warning and error,
    `subject=1, session='pre'` in its report: one form, the one `load` is called with."""
    MsgEmg.save(1.0, subject=1, session="pre")
    MsgEmg.save(2.0, subject=2, session="pre")
    with pytest.raises(ForEachError) as info:
        for_each(ms_fails, inputs={"x": MsgEmg}, outputs=[MsOut], subject=[1], session=["pre"],
                 on_error="raise", progress=False)
    said = [str(info.value).splitlines()[0]]
    assert said[0] == "for_each(ms_fails) stopped at subject=1, session='pre': ValueError: bad trial"
    report = for_each(ms_fails, inputs={"x": MsgEmg}, outputs=[MsOut], subject=[1, 2], session=["pre"],
                      progress=False)
    said += [r.getMessage() for r in caplog.records]
    assert any("failed at subject=2, session='pre': ValueError: bad trial" in m for m in said), said
    said.append(str(report))
    assert "failed subject=2, session='pre': ValueError: bad trial" in said[-1]
    with pytest.raises(scistack.errors.AmbiguousVersionError) as info:
        MsgEmg.load_one(session="pre")
    said.append(str(info.value))
    assert "2 records of MsgEmg match session='pre', one is needed" in said[-1]
    assert not [m for m in said if "{'" in m], said


class MsgDeletedTypo(BaseVariable):
    pass


class MsgDeletedFreed(BaseVariable):
    pass


def test_a_misspelt_key_of_a_variable_whose_values_were_all_deleted_still_raises(project):
    """ea91195 gave [] in silence where `load_all(sesion=...)` had raised naming the key meant:
    the typo was let through as of a variable never saved (review 3)."""
    MsgDeletedTypo.save(1.0, subject=1, session="pre")
    MsgDeletedTypo.delete(subject=1)
    with pytest.raises(UnknownMetadataKeyError, match="session"):
        MsgDeletedTypo.load_all(sesion="pre")


def test_once_gc_freed_the_deleted_values_the_message_offers_no_undelete(project):
    """The message offered `undelete()`, which brings nothing back once gc freed the values."""
    MsgDeletedFreed.save(1.0, subject=1, session="pre")
    MsgDeletedFreed.delete(subject=1)
    with pytest.raises(VariableNotFoundError, match=r"MsgDeletedFreed.undelete\(\)"):
        MsgDeletedFreed.load()
    assert CliRunner().invoke(main, ["--db", str(project.root), "gc", "--prune=now"]).exit_code == 0
    with pytest.raises(VariableNotFoundError) as info:
        MsgDeletedFreed.load()
    assert "undelete" not in str(info.value) and "freed them since" in str(info.value), str(info.value)
