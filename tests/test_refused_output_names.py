"""A variable name the project refuses at save (a case twin of a variable, a name one of
another variable's SQL views has) refuses the whole step before anything is journalled:
no call, cache entry or run is half-recorded for outputs that were never saved."""

from __future__ import annotations

import pytest

import scistack
from scistack import BaseVariable, EachOf, PathInput, Split, for_each, lineage_fcn
from scistack.index import views
from tests.helpers import journal_size


class Rfo(BaseVariable):
    pass


class RFO(BaseVariable):  # Rfo's name but for case
    pass


class RfoDoubled(BaseVariable):
    pass


class Rfo_all(BaseVariable):  # noqa: N801 - the name of Rfo's view of every version
    pass


class Rfo_branches(BaseVariable):  # noqa: N801
    pass


CALLS: list[float] = []


def doubled(x):
    CALLS.append(x)
    return x * 2


@pytest.fixture
def rec(project):
    CALLS.clear()
    for subject in (1, 2):
        Rfo.save(float(subject), subject=subject, session="pre")
    return project


@pytest.mark.parametrize("output, said", [
    (RFO, r"'RFO' differs from the project's variable 'Rfo' only by case.*e\.g\. RFO_2"),
    (Rfo_all, r"'Rfo_all' would take the name of the SQL view Rfo_all.*e\.g\. RfoAll"),
    (Rfo_branches, r"'Rfo_branches' would take the name of the SQL view Rfo_branches.*e\.g\. RfoBranches"),
])
def test_for_each_into_a_refused_name_is_refused_before_anything_runs(rec, output, said):
    """The first combination ran, its call and cache entry were journalled, then the save of
    its output was refused: the call was recorded with nothing saved, and a run to a name
    that works served that combination as cached."""
    before = journal_size(rec)
    with pytest.raises(scistack.ScistackError, match=said):
        for_each(doubled, inputs={"x": Rfo}, outputs=[output], subject=[1, 2], session=["pre"], progress=False)
    with pytest.raises(scistack.ScistackError, match=said):
        for_each(doubled, inputs={"x": Rfo}, outputs=[output], subject=[1, 2], session=["pre"], dry_run=True,
                 progress=False)
    assert CALLS == []  # nothing computed
    assert journal_size(rec) == before  # nothing recorded
    assert not output.load_all()
    report = for_each(doubled, inputs={"x": Rfo}, outputs=[RfoDoubled], subject=[1, 2], session=["pre"],
                      progress=False)
    assert (report.ran, report.cached) == (2, 0)
    assert [RfoDoubled.load(subject=s, session="pre").data for s in (1, 2)] == [2.0, 4.0]


def test_a_refused_second_output_refuses_the_step_before_the_first_is_saved(rec):
    """outputs=[RfoDoubled, RFO]: the first output had been saved and the call cached before
    the second was refused."""
    before = journal_size(rec)
    with pytest.raises(scistack.ScistackError, match="only by case"):
        for_each(lambda x: (x * 2, x * 3), inputs={"x": Rfo}, outputs=[RfoDoubled, RFO], subject=[1],
                 session=["pre"], progress=False)
    assert journal_size(rec) == before
    assert not RfoDoubled.load_all()


class Fresh(BaseVariable):
    pass


class FRESH(BaseVariable):  # Fresh's name but for case; neither is in the project
    pass


class Fresh_all(BaseVariable):  # noqa: N801 - the name of Fresh's view of every version
    pass


@pytest.mark.parametrize("outputs, said", [([Fresh, FRESH], "differ only by case"),
                                           ([Fresh, Fresh_all], "SQL view Fresh_all")])
def test_outputs_that_would_collide_with_each_other_refuse_the_step_first(rec, outputs, said):
    """Two new outputs that are case twins of each other (or one another's view name): each
    passed alone, the first was saved, then the second refused (from MATLAB: after every
    combination ran, and the commit it advised could never succeed)."""
    before = journal_size(rec)
    with pytest.raises(scistack.ScistackError, match=said):
        for_each(lambda x: (x * 2, x * 3), inputs={"x": Rfo}, outputs=outputs, subject=[1],
                 session=["pre"], progress=False)
    assert CALLS == [] and journal_size(rec) == before
    assert not any(out.load_all() for out in outputs)


def test_an_each_of_input_named_like_a_schema_key_but_for_case_is_refused_first(rec):
    """EachOf tags each result with a version key named after its parameter: `Subject`
    (the schema key `subject` but for case) was refused at the first save, after the call."""
    before = journal_size(rec)
    with pytest.raises(scistack.ScistackError, match="'Subject' is the schema key 'subject' but for case"):
        for_each(lambda x, Subject: x, inputs={"x": Rfo, "Subject": EachOf(1, 2)},  # noqa: N803
                 outputs=[RfoDoubled], subject=[1], session=["pre"], progress=False)
    assert journal_size(rec) == before


def test_a_path_input_iterated_over_look_alikes_of_stored_key_values_records_no_call(rec, tmp_path):
    """subject="1" iterated (a PathInput reads files, so no stored input said what subjects
    are) where the project's subjects are numbers: the call ran and was cached, then the
    save at subject="1" was refused. The call runs (a combination whose inputs are missing
    is reported missing, never refused for its values), but nothing of it is recorded."""
    (tmp_path / "raw").mkdir()
    for subject in ("1", "2"):
        (tmp_path / "raw" / f"{subject}.txt").write_text(subject)
    before = journal_size(rec)
    with pytest.raises(scistack.ScistackError, match=r"subject='1' \(text\) looks like subject=1"):
        for_each(read_value, inputs={"path": PathInput("raw/{subject}.txt")},
                 outputs=[RfoDoubled], subject=["1", "2"], session=["pre"], progress=False)
    assert journal_size(rec) == before
    assert len(CALLS) == 1  # (the first combination's call ran; its refusal ended the run)


def read_value(path):
    CALLS.append(path)
    return float(open(path).read())


def test_a_split_label_a_save_refuses_is_refused_before_the_call_is_recorded(tmp_path, monkeypatch):
    """A `Split` part's label is known only once the call returns: one that reads like a
    stored value of another type is refused before the call's cache entry is journalled."""
    import scistack.database as database_module

    monkeypatch.chdir(tmp_path)
    db = scistack.configure_database(tmp_path / "p.duckdb", ["subject", "trial"])
    try:
        Rfo.save(1.0, subject=1, trial=1)
        before = journal_size(db)
        with pytest.raises(scistack.ScistackError, match=r"trial='1' \(text\) looks like trial=1"):
            for_each(lambda x: {"1": x}, inputs={"x": Rfo}, outputs=[Split(RfoDoubled, by="trial")],
                     subject=[1], progress=False)
        assert journal_size(db) == before
        report = for_each(lambda x: {1: x}, inputs={"x": Rfo}, outputs=[Split(RfoDoubled, by="trial")],
                          subject=[1], progress=False)
        assert (report.ran, report.cached) == (1, 0)
    finally:
        db.close()
        database_module._current = None


def test_a_result_computed_before_the_database_saved_to_a_refused_name_records_nothing(tmp_path, monkeypatch):
    """A lineage_fcn result computed with no database brings its call into the project when
    saved (its cache entry is journalled): that happened before the name was refused."""
    import scistack.database as database_module

    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("SCISTACK_DB", raising=False)
    previous, database_module._current = database_module._current, None
    try:
        result = lineage_fcn(doubled)(5.0)  # (in memory)
        db = scistack.configure_database(tmp_path / "p.duckdb", ["subject", "session"])
        try:
            Rfo.save(1.0, subject=1, session="pre")
            before = journal_size(db)
            with pytest.raises(scistack.ScistackError, match="only by case"):
                RFO.save(result, subject=1, session="pre")
            with pytest.raises(scistack.ScistackError, match="view Rfo_all"):
                Rfo_all.save(result, subject=1, session="pre")
            with pytest.raises(scistack.ScistackError, match="looks like subject=1"):
                RfoDoubled.save(result, subject="1", session="pre")
            assert journal_size(db) == before
            RfoDoubled.save(result, subject=2, session="pre")  # (a name that works: the call comes along)
            assert db.get_provenance(RfoDoubled, subject=2, session="pre")["function_name"] == "doubled"
        finally:
            db.close()
    finally:
        database_module._current = previous


@pytest.mark.parametrize("first, then", [(Rfo, RFO), (RFO, Rfo)])
def test_a_name_taken_over_by_its_case_twin_once_deleted_warns_of_no_missing_views(project, caplog, monkeypatch,
                                                                                    first, then):
    """`Rfo` deleted, then `RFO` saved (allowed: Rfo has no records), both synced at once:
    the sync said "variable Rfo has no SQL views: its name differs from RFO's only by case",
    of a variable with nothing to show, whose name is no longer refused."""
    monkeypatch.setattr(views, "_warned", set())
    first.save(1.0, subject=1, session="pre")
    project.sync()
    with caplog.at_level("WARNING", logger="scistack.index.views"):
        first.delete(subject=1, session="pre")
        then.save(2.0, subject=1, session="pre")
        project.sync()
        assert project.sql(f'SELECT subject, value FROM "{then.__name__}"').values.tolist() == [[1, 2.0]]
    assert "SQL views" not in caplog.text and "not made" not in caplog.text
