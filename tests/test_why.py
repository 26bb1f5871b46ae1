"""`why` on values computed from aggregated inputs (every record below a partial address)."""

from __future__ import annotations

import numpy as np

from scistack import BaseVariable, for_each, lineage_fcn, why
from scistack.report.why import why_record


class AggRaw(BaseVariable):
    pass


class AggMean(BaseVariable):
    pass


def average(values):
    return float(np.mean([v.mean() for v in values]))


def test_aggregate_input_is_current_until_a_member_changes(project):
    for subject in (1, 2):
        for session in ("pre", "post"):
            AggRaw.save(np.arange(5.0) + subject, subject=subject, session=session)
    for_each(average, inputs={"values": AggRaw}, outputs=[AggMean], subject=[1, 2])
    assert why(AggMean, subject=1).status == "current"
    AggRaw.save(np.ones(5), subject=1, session="pre")
    report = why(AggMean, subject=1)
    assert report.status == "stale"
    assert [r.kind for r in report.reasons] == ["input"]
    assert why(AggMean, subject=2).status == "current"


class MergeForce(BaseVariable):
    pass


class MergeBoth(BaseVariable):
    pass


def merged_sum(both):
    return float(both["AggRaw"].iloc[0].sum()) + float(both["MergeForce"].iloc[0])


def test_a_merged_input_is_judged_part_by_part_as_status_does(project):
    """`why` of a value computed from `Merge(A, B)` had said stale, "A+B at {} no longer
    exists", for every such value (status said done): each part is judged as an input of
    its own variable now."""
    from scistack import Merge
    from scistack.report.status import status_summary

    for subject in (1, 2):
        AggRaw.save(np.arange(3.0) + subject, subject=subject, session="pre")
        MergeForce.save(float(subject), subject=subject, session="pre")
    for_each(merged_sum, inputs={"both": Merge(AggRaw, MergeForce)}, outputs=[MergeBoth], subject=[1, 2],
             session=["pre"])
    assert why(MergeBoth, subject=1, session="pre").status == "current"
    MergeForce.save(5.0, subject=1, session="pre")
    report = why(MergeBoth, subject=1, session="pre")
    assert report.status == "stale"
    assert [(r.kind, r.name) for r in report.reasons] == [("input", "both (MergeForce)")], report
    assert why(MergeBoth, subject=2, session="pre").status == "current"
    assert status_summary(project, ["MergeBoth"]).counts["MergeBoth"]["stale"] == 1


def test_why_record_needs_no_class(project):
    AggRaw.save(np.arange(3.0), subject=1, session="pre")
    record = AggRaw.load(subject=1, session="pre").record
    assert why_record(project, "AggRaw", record).status == "raw"


def test_a_loaded_value_is_explained_exported_and_traced_as_that_very_record(project, tmp_path):
    """`why(value)` ignored the value and asked for "the" record of its variable (ambiguous as
    soon as there were two addresses); `export(value)` looked for a variable named like the
    value's repr, and said it had no records."""
    import pytest
    from scistack.errors import InvalidMetadataError

    for subject in (1, 2):
        for session in ("pre", "post"):
            AggRaw.save(np.arange(5.0) + subject, subject=subject, session=session)
    for_each(average, inputs={"values": AggRaw}, outputs=[AggMean], subject=[1, 2])
    old = AggMean.load(subject=1)
    AggRaw.save(np.ones(5), subject=1, session="pre")
    for_each(average, inputs={"values": AggRaw}, outputs=[AggMean], subject=[1])
    assert why(old).status == "stale" and why(old).address == {"subject": 1}   # version 1, as loaded
    assert why(AggMean.load(subject=2)).status == "current"
    assert project.get_provenance(old)["value_oid"] == old.record.oid
    assert project.get_provenance(AggRaw.load(subject=2, session="pre")) is None
    report = project.export(old, to=tmp_path / "b")
    assert report.selected == 1
    assert (tmp_path / "b/AggMean/subject=1.json").exists()
    with pytest.raises(InvalidMetadataError, match=r"give a loaded value alone \(why\(value\)\) or the variable"):
        why(old, subject=2)
    with pytest.raises(InvalidMetadataError, match="never saved; save it first"):
        project.get_provenance(AggMean(3.0))
    # by name, as `scistack why` takes it (AttributeError: 'str' object has no attribute 'load_one')
    assert why("AggMean", subject=2).status == "current"
    assert why(AggMean, subject=1, version=1).status == "stale"   # an older version, by number
    assert why(AggMean, subject=1, version=2).status == "current"
    with pytest.raises(InvalidMetadataError, match="get_provenance takes a variable class or a loaded value"):
        project.get_provenance("AggMean", subject=2)


class UpSource(BaseVariable):
    pass


def plus_one(x):
    return x + 1


def test_an_input_not_exported_is_not_in_this_project_not_deleted(project, tmp_path):
    """In an imported project, `why` said an input "no longer exists" when it was deleted in
    the source project before the export, so never here: it says it is not in this project."""
    import scistack.database as database_module
    from scistack import configure_database
    from tests.conftest import SCHEMA

    for session in ("pre", "post"):
        UpSource.save(np.arange(3.0), subject=1, session=session)
    for_each(plus_one, inputs={"x": UpSource}, outputs=[AggRaw], subject=[1], session=["pre", "post"])
    UpSource.delete(subject=1, session="pre")
    gone = "input x: UpSource at subject=1, session='pre' no longer exists"
    assert [f"{r.kind} {r.name}: {r.detail}" for r in why(AggRaw, subject=1, session="pre").reasons] == [gone]
    project.export(all_current=[AggRaw], to=tmp_path / "b")
    database_module._current = None
    other = configure_database(tmp_path / "other" / "other.duckdb", SCHEMA)
    try:
        other.import_bundle(tmp_path / "b")
        (reason,) = why(AggRaw, subject=1, session="pre").reasons
        assert reason.detail == ("UpSource at subject=1, session='pre' is not in this project: it was never "
                                 "saved here (a value imported from another project names inputs that were "
                                 "not exported with it)")
    finally:
        other.close()


def test_a_value_computed_from_a_stale_value_is_stale_in_why_as_in_status(project):
    """`why(Peak)` said "current" while `status` (and the CLI's why) said STALE: its input was
    unchanged but itself computed from an input that no longer exists."""
    from scistack.report.status import status_grid

    for session in ("pre", "post"):
        UpSource.save(np.arange(3.0), subject=1, session=session)
    for_each(plus_one, inputs={"x": UpSource}, outputs=[AggRaw], subject=[1], session=["pre", "post"])
    for_each(average, inputs={"values": AggRaw}, outputs=[AggMean], subject=[1])        # an aggregate
    assert why(AggMean, subject=1).status == "current"
    UpSource.delete(subject=1, session="pre")
    report = why(AggMean, subject=1)
    assert report.status == "stale"
    assert [r.detail for r in report.reasons] == [
        "upstream plus_one (feeding average(values)): UpSource at subject=1, session='pre' no longer exists"]
    assert why(AggRaw, subject=1, session="post").status == "current"
    assert status_grid(project, ["AggMean"]).cell("AggMean", {"subject": 1}).status == "stale"


def test_changed_input_is_stale_even_when_the_function_cannot_be_found(project, monkeypatch):
    import scistack.report.why as provenance

    for session in ("pre", "post"):
        AggRaw.save(np.arange(5.0), subject=1, session=session)
    for_each(average, inputs={"values": AggRaw}, outputs=[AggMean], subject=[1])
    AggRaw.save(np.ones(5), subject=1, session="pre")
    monkeypatch.setattr(provenance, "_find_function", lambda module, name: None)
    report = why(AggMean, subject=1)
    assert report.status == "stale"
    assert {r.kind for r in report.reasons} == {"input", "unknown"}


class BoundOut(BaseVariable):
    pass


def test_a_bound_method_partial_or_callable_object_is_judged_by_its_code_in_another_process(project, monkeypatch):
    import functools

    import scistack.lineage.function as function_module
    from scistack.report.status import status_grid
    from tests import foreach_fns as fns

    AggRaw.save(np.arange(3.0), subject=1, session="pre")
    steps = [(fns.Scale(2).apply, fns.Scale(3).apply), (fns.Scale(2), fns.Scale(3)),
             (functools.partial(fns.scale_by, k=2), functools.partial(fns.scale_by, k=3))]
    for two, three in steps:
        first = for_each(two, inputs={"signal": AggRaw}, outputs=[BoundOut], subject=[1], session=["pre"])
        other = for_each(three, inputs={"signal": AggRaw}, outputs=[BoundOut], subject=[1], session=["pre"])
        assert first.ran + first.cached == 1 and other.ran == 1  # k=3 is another function (was cached)
        assert BoundOut.load(subject=1, session="pre").data.tolist() == [0.0, 3.0, 6.0]
        # another process (the CLI) has no registry entry: it finds the function by its name
        # and cannot see the object or the bound arguments; it was always STALE
        with monkeypatch.context() as m:
            m.setattr(function_module, "_REGISTRY", {})
            assert why(BoundOut, subject=1, session="pre").status == "current"
            assert status_grid(project, ["BoundOut"]).cell("BoundOut", {"subject": 1, "session": "pre"}).status == "done"


class BoundOther(BaseVariable):
    pass


def test_a_bound_methods_value_is_not_stale_because_another_objects_method_ran_since(project):
    """`Filter(2).apply` and `Filter(4).apply` are two functions: in the process that ran
    both, the first one's value was judged against the object that ran last (the name finds
    it) and called stale for its attributes; a run of the first then made the other's stale,
    back and forth. Each is judged by its code, as another process judges it."""
    import functools

    from scistack.report.status import status_grid
    from tests import foreach_fns as fns

    AggRaw.save(np.arange(3.0), subject=1, session="pre")
    at = {"subject": 1, "session": "pre"}
    steps = [(fns.Scale(2).apply, fns.Scale(4).apply), (fns.Scale(2), fns.Scale(4)),
             (functools.partial(fns.scale_by, k=2), functools.partial(fns.scale_by, k=4))]
    for two, four in steps:
        for_each(two, inputs={"signal": AggRaw}, outputs=[BoundOut], **{k: [v] for k, v in at.items()})
        for_each(four, inputs={"signal": AggRaw}, outputs=[BoundOther], **{k: [v] for k, v in at.items()})
        for var in (BoundOut, BoundOther):
            assert why(var, **at).status == "current", why(var, **at)
            assert status_grid(project, [var.__name__]).cell(var.__name__, at).status == "done"
    assert BoundOther.load(**at).data.tolist() == [0.0, 4.0, 8.0]


class LevelCal(BaseVariable):
    pass


class LevelOut(BaseVariable):
    pass


class LevelParts(BaseVariable):
    pass


def calibrate(cal):
    return cal * 2


def parts(cal):
    return {"a": cal + 1, "b": cal + 2}


def test_a_finer_input_saved_after_the_run_makes_its_result_stale(project):
    """A value made from a subject's calibration (no session-level one then) is stale once
    that session gets a calibration of its own: for_each takes the finer one now. `why` and
    `status` had called it current; the run would have recomputed it."""
    from scistack import Split
    from scistack.report.status import status_grid

    for subject in (1, 2):
        LevelCal.save(np.full(2, float(subject)), subject=subject)
    for_each(calibrate, inputs={"cal": LevelCal}, outputs=[LevelOut], subject=[1, 2], session=["pre", "post"],
             progress=False)
    for_each(parts, inputs={"cal": LevelCal}, outputs=[Split(LevelParts, by="session")], subject=[1, 2],
             progress=False)  # each part at a session: made per subject, from the subject's value
    assert why(LevelOut, subject=1, session="pre").status == "current"
    LevelCal.save(np.full(2, 9.0), subject=1, session="pre")
    LevelCal.save(np.full(2, 8.0), subject=1, session="a")  # where a Split part of subject 1 is

    report = why(LevelOut, subject=1, session="pre")
    assert report.status == "stale"
    assert "LevelCal now has a value at subject=1, session='pre'" in report.reasons[0].detail
    assert why(LevelOut, subject=1, session="post").status == "current"
    assert why(LevelOut, subject=2, session="pre").status == "current"
    assert why(LevelParts, subject=1, session="a").status == "current"  # a Split's key: not the run's
    grid = status_grid(project, ["LevelOut", "LevelParts"])
    stale = {(c.var, tuple(sorted(c.addr.items()))) for c in grid.cells if c.status == "stale"}
    assert stale == {("LevelOut", (("session", "pre"), ("subject", 1)))}
    dry = for_each(calibrate, inputs={"cal": LevelCal}, outputs=[LevelOut], subject=[1, 2],
                   session=["pre", "post"], progress=False, dry_run=True)
    assert [i.combo for i in dry.items if i.status == "would_run"] == [{"subject": 1, "session": "pre"}]


class LevelFixedOut(BaseVariable):
    pass


def test_a_fixed_input_found_at_a_coarser_address_is_judged_where_the_run_looked(project):
    """`Fixed(LevelCal, session="baseline")` with only a subject's calibration saved: a value
    saved later at the output's own session is not where that run looks (it stays current);
    one saved at the baseline session is (stale, as the run would compute it again)."""
    from scistack import Fixed
    from scistack.report.status import status_grid

    LevelCal.save(np.full(2, 1.0), subject=1)
    report = for_each(calibrate, inputs={"cal": Fixed(LevelCal, session="baseline")}, outputs=[LevelFixedOut],
                      subject=[1], session=["pre"], progress=False)
    assert report.ran == 1
    LevelCal.save(np.full(2, 5.0), subject=1, session="pre")
    assert why(LevelFixedOut, subject=1, session="pre").status == "current"
    assert status_grid(project, ["LevelFixedOut"]).counts()["LevelFixedOut"]["stale"] == 0
    LevelCal.save(np.full(2, 7.0), subject=1, session="baseline")
    report = why(LevelFixedOut, subject=1, session="pre")
    assert report.status == "stale" and "at subject=1, session='baseline'" in report.reasons[0].detail
    assert status_grid(project, ["LevelFixedOut"]).counts()["LevelFixedOut"]["stale"] == 1
    rerun = for_each(calibrate, inputs={"cal": Fixed(LevelCal, session="baseline")}, outputs=[LevelFixedOut],
                     subject=[1], session=["pre"], progress=False, dry_run=True)
    assert [i.status for i in rerun.items] == ["would_run"]


class SameCal(BaseVariable):
    pass


@lineage_fcn
def calibrated(cal):
    return np.asarray(cal) * 2


def test_a_cached_result_whose_input_now_comes_from_elsewhere_names_it_and_turns_stale_with_it(project):
    """The same values read from elsewhere hit the cache, and the outputs already saved named
    the first run's inputs: `Fixed(LevelCal, session="b")` where session "b" holds what "a"
    held, or another variable of the same values. After the new input changed, `why` and
    `status` still said current. The outputs now name where this run read its inputs (a new
    version, the value unchanged), so they turn stale with them; a direct call's result saved
    there does too."""
    from scistack import Fixed
    from scistack.report.status import status_grid

    for session in ("a", "b"):
        LevelCal.save(np.arange(3.0), subject=1, session=session)
    SameCal.save(np.arange(3.0), subject=1, session="a")
    run = dict(outputs=[LevelFixedOut], subject=[1], session=["a"], progress=False)
    assert for_each(calibrate, inputs={"cal": LevelCal}, **run).ran == 1
    moved = for_each(calibrate, inputs={"cal": Fixed(LevelCal, session="b")}, **run)
    assert moved.ran == 0 and LevelFixedOut.load(subject=1, session="a").version == 2
    LevelCal.save(np.arange(3.0) + 1, subject=1, session="b")
    assert why(LevelFixedOut, subject=1, session="a").status == "stale"
    assert status_grid(project, ["LevelFixedOut"]).counts()["LevelFixedOut"]["stale"] == 1

    assert for_each(calibrate, inputs={"cal": LevelCal}, **run).ran == 0  # back to "a": named again
    swapped = for_each(calibrate, inputs={"cal": SameCal}, **run)  # plain inputs: the quick path
    assert swapped.ran == 0 and LevelFixedOut.load(subject=1, session="a").version == 4
    SameCal.save(np.arange(3.0) + 5, subject=1, session="a")
    assert why(LevelFixedOut, subject=1, session="a").status == "stale"

    first = calibrated(LevelCal.load(subject=1, session="a"))
    LevelFixedOut.save(first, subject=2, session="a")
    again = calibrated(_saved_like(LevelCal, np.arange(3.0), subject=1, session="c"))  # the same value
    assert again.cached and again.call != first.call
    LevelFixedOut.save(again, subject=2, session="a")
    assert LevelFixedOut.load(subject=2, session="a").version == 2
    LevelCal.save(np.arange(3.0) + 9, subject=1, session="c")
    assert why(LevelFixedOut, subject=2, session="a").status == "stale"


def _saved_like(var, value, **address):
    var.save(value, **address)
    return var.load(**address)


def test_a_fixed_input_pinned_to_another_subject_is_judged_where_the_run_looked(project):
    """`Fixed(LevelCal, subject=9)` (a reference subject's calibration, saved per subject):
    the output of subject 1's session is stale once subject 9 has a value of that session,
    which the run takes there; status had not looked, as the pinned value is not the output's."""
    from scistack import Fixed
    from scistack.report.status import status_grid

    LevelCal.save(np.full(2, 1.0), subject=9)
    for_each(calibrate, inputs={"cal": Fixed(LevelCal, subject=9)}, outputs=[LevelFixedOut],
             subject=[1], session=["pre"], progress=False)
    LevelCal.save(np.full(2, 4.0), subject=1, session="pre")  # not where the run looks
    assert status_grid(project, ["LevelFixedOut"]).counts()["LevelFixedOut"]["stale"] == 0
    LevelCal.save(np.full(2, 3.0), subject=9, session="pre")
    assert why(LevelFixedOut, subject=1, session="pre").status == "stale"
    assert status_grid(project, ["LevelFixedOut"]).counts()["LevelFixedOut"]["stale"] == 1


def test_why_in_a_session_leaves_its_database_current_when_the_module_it_imports_opens_one(
        project, tmp_path, python_env, monkeypatch):
    """A notebook's `why` imports the module that made a value; the module's top level opens
    its own project and saves. Nothing is saved, the notebook's database stays current and
    open, and `why` says what stopped it."""
    import subprocess
    import sys

    from scistack.database import current_database

    (tmp_path / "nbsteps.py").write_text(
        "import numpy as np\nfrom scistack import configure_database, BaseVariable, for_each, lineage_fcn\n"
        "db = configure_database('gait.duckdb', ['subject', 'session'])\n"
        "class NbA(BaseVariable): pass\nclass NbB(BaseVariable): pass\n"
        "@lineage_fcn\ndef double(x):\n    return np.asarray(x) * 2\n"
        "NbA.save(np.random.rand(3), subject=1, session='pre')\n"
        "for_each(double, inputs={'x': NbA}, outputs=[NbB], subject=[1], session=['pre'])\n")
    subprocess.run([sys.executable, "-c", "import nbsteps"], cwd=tmp_path, env=python_env, check=True, timeout=120)
    monkeypatch.syspath_prepend(str(tmp_path))
    journal = tmp_path / ".scistack" / "refs.log"
    before = journal.read_bytes()

    told = why("NbB", subject=1, session="pre")  # (by name: the module declares the class)
    assert told.status == "unknown" and "__name__" in str(told)
    assert journal.read_bytes() == before
    assert current_database() is project
    AggRaw.save(np.arange(2.0), subject=9, session="pre")  # still open, and writable again
    assert AggRaw.load(subject=9, session="pre").data.tolist() == [0.0, 1.0]


def test_why_creates_no_project_where_an_imported_module_opens_one_by_a_relative_path(
        project, tmp_path, python_env, monkeypatch):
    """The module `why` imports opens its project by a path relative to the folder its
    scripts run from; a notebook elsewhere runs the report. No project is created where that
    path points from there (an empty one had been), and `why` says why it cannot judge."""
    import subprocess
    import sys

    from scistack.database import current_database

    (tmp_path / "relsteps.py").write_text(
        "import numpy as np\nfrom scistack import configure_database, BaseVariable, for_each, lineage_fcn\n"
        "db = configure_database('gait.duckdb', ['subject', 'session'])\n"
        "class RelA(BaseVariable): pass\nclass RelB(BaseVariable): pass\n"
        "@lineage_fcn\ndef double(x):\n    return np.asarray(x) * 2\n"
        "def run():\n    RelA.save(np.random.rand(3), subject=1, session='pre')\n"
        "    for_each(double, inputs={'x': RelA}, outputs=[RelB], subject=[1], session=['pre'])\n")
    subprocess.run([sys.executable, "-c", "import relsteps; relsteps.run()"], cwd=tmp_path, env=python_env,
                   check=True, timeout=120)
    notebooks = tmp_path / "notebooks"
    notebooks.mkdir()
    monkeypatch.chdir(notebooks)
    monkeypatch.syspath_prepend(str(tmp_path))

    told = why("RelB", subject=1, session="pre")
    assert told.status == "unknown" and "nothing was created" in str(told), str(told)
    assert list(notebooks.iterdir()) == []
    assert current_database() is project


@lineage_fcn
def why_inverse(x):
    if np.any(np.asarray(x) == 0):
        raise ZeroDivisionError("zero in input")
    return 1.0 / np.asarray(x)


def test_why_says_the_last_run_at_the_address_failed_as_status_does(project):
    """`status` showed FAILED (the last run there failed) where `why` said only "stale", and
    "current" once the input was back as it was: it names the failure now."""
    at = {"subject": 1, "session": "pre"}
    run = dict(inputs={"x": AggRaw}, outputs=[BoundOut], subject=[1], session=["pre"], progress=False)
    AggRaw.save(np.array([1.0, 2.0]), **at)
    for_each(why_inverse, **run)
    AggRaw.save(np.array([0.0, 2.0]), **at)
    assert for_each(why_inverse, **run).counts["failed"] == 1
    told = why(BoundOut, **at)
    assert told.status == "stale" and told.reasons[0].kind == "failed"
    assert "ZeroDivisionError: zero in input" in told.reasons[0].detail
    AggRaw.save(np.array([1.0, 2.0]), **at)  # the input back as the value was computed from it
    told = why(BoundOut, **at)
    assert told.status == "current" and [r.kind for r in told.reasons] == ["failed"]
    from scistack.report.status import status_grid
    assert status_grid(project, ["BoundOut"]).cell("BoundOut", at).status == "failed"  # the two agree
    assert for_each(why_inverse, **run).counts["cached"] == 1  # a rerun served from the cache is
    assert why(BoundOut, **at).reasons == ()  # the newest run there now: it did not fail (it had
    assert status_grid(project, ["BoundOut"]).cell("BoundOut", at).status == "done"  # not been journalled)


def test_why_where_the_last_run_failed_and_no_value_was_saved_names_the_failure(project):
    """`status` shows FAILED where a run failed and nothing was ever saved; `why` there said
    only "no record matching ...". It names the run's failure and where its traceback is."""
    import pytest

    from scistack.errors import VariableNotFoundError

    AggRaw.save(np.array([1.0, 2.0]), subject=1, session="pre")
    AggRaw.save(np.array([0.0, 2.0]), subject=2, session="pre")
    report = for_each(why_inverse, inputs={"x": AggRaw}, outputs=[BoundOut], subject=[1, 2], session=["pre"],
                      progress=False)
    assert report.counts["failed"] == 1
    with pytest.raises(VariableNotFoundError) as told:
        why(BoundOut, subject=2, session="pre")
    message = str(told.value)
    assert "BoundOut has no value at subject=2, session='pre': the last run of why_inverse there" in message
    assert "failed: ZeroDivisionError: zero in input" in message
    assert f"`scistack runs {project.index.runs()[-1].run_id[:12]}` shows its traceback" in message
    with pytest.raises(VariableNotFoundError, match="no record matching subject=3"):  # no run there: as before
        why(BoundOut, subject=3, session="pre")
