"""Fan-out outputs: `for_each(..., outputs=[Split(Trial, by="trial")])` saves each item of the
returned dict at the combination's address plus its label, with the call's lineage, and a
cached re-run restores them. Real projects in tmp_path; workers are a real spawn pool."""

from __future__ import annotations

import concurrent.futures as cf
import logging
import multiprocessing
from pathlib import Path

import numpy as np
import pytest

import scistack.database as database_module
from scistack import BaseVariable, InvalidMetadataError, Split, for_each, lineage_fcn, why
from scistack.gc import collect_garbage
from scistack.records import read_call
from scistack.report.status import status_cells, status_grid, status_summary
from tests import foreach_fns as fns


class SpSession(BaseVariable):
    pass


class SpTrial(BaseVariable):
    pass


class SpCount(BaseVariable):
    pass


class SpPeak(BaseVariable):
    pass


class SpWhole(BaseVariable):
    pass


SUBJECTS, SESSIONS = [1, 2], ["pre", "post"]


@pytest.fixture
def trials(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """A project whose schema has a level below the session, with a recording per session."""
    monkeypatch.chdir(tmp_path)
    db = database_module.configure_database(tmp_path / "split.duckdb", ["subject", "session", "trial"])
    for subject in SUBJECTS:
        for session in SESSIONS:
            SpSession.save(np.arange(30.0) + 100 * subject + (session == "post"), subject=subject, session=session)
    yield db
    db.close()
    database_module._current = None


def cut(n=3, **kwargs):
    return for_each(fns.cut_trials, inputs={"recording": SpSession, "n": n},
                    outputs=[Split(SpTrial, by="trial"), SpCount], subject=SUBJECTS, session=SESSIONS,
                    progress=False, verbose=False, **kwargs)


def _newest(var) -> dict:
    return {(r.record.addr["subject"], r.record.addr["session"], r.record.addr.get("trial")): r
            for r in var.load_all()}


def test_each_part_is_saved_at_its_finer_address_with_the_call_lineage(trials):
    report = cut()
    assert (report.ran, report.cached) == (4, 0)
    parts = _newest(SpTrial)
    assert sorted(parts) == sorted((s, se, t) for s in SUBJECTS for se in SESSIONS for t in (1, 2, 3))
    recording = np.arange(30.0) + 101
    np.testing.assert_array_equal(SpTrial.load(subject=1, session="post", trial=2).data, recording[10:20])
    assert SpCount.load(subject=1, session="post").data == 3  # a plain output beside it
    trial = SpTrial.load(subject=1, session="post", trial=2)
    call = read_call(trials.store, trial.record.call)
    assert call.extra["split"] == [{"by": "trial", "labels": [1, 2, 3]}, None]
    assert list(call.outputs) == [_newest(SpTrial)[(1, "post", t)].oid for t in (1, 2, 3)] + [
        SpCount.load(subject=1, session="post").oid]
    assert SpTrial.load_all(n=3, subject=1, session="post")[0].data is not None  # by its lineage constant
    assert why(SpTrial, subject=1, session="post", trial=2).status == "current"
    assert str(why(SpTrial, subject=1, session="post", trial=2)).startswith(
        "SpTrial(subject=1, session='post', trial=2) is current")  # in schema order, not sorted
    # the parts feed a for_each at the finer level like any saved value
    peaks = for_each(lambda x: float(np.max(x)), inputs={"x": SpTrial}, outputs=[SpPeak], subject=SUBJECTS,
                     session=SESSIONS, trial=[], progress=False, verbose=False)
    assert peaks.ran == 12 and SpPeak.load(subject=2, session="pre", trial=3).data == 229.0


def test_a_rerun_is_cached_and_restores_parts_it_had_made(trials):
    cut()
    first = {k: r.oid for k, r in _newest(SpTrial).items()}
    again = cut()
    assert (again.ran, again.cached) == (0, 4)
    SpTrial.delete(subject=2, session="pre", trial=3)
    restored = cut()
    assert (restored.ran, restored.cached) == (0, 4)
    assert {k: r.oid for k, r in _newest(SpTrial).items()} == first
    cut(n=2)  # another split: new parts, trial 3 stays from the n=3 run
    back = cut(n=3)  # and back: every part of the n=3 call is current again, from the cache
    assert (back.ran, back.cached) == (0, 4)
    assert {k: r.oid for k, r in _newest(SpTrial).items()} == first
    assert all(r.record.params == {"cut_trials.n": 3} for r in SpTrial.load_all())


def test_parts_a_rerun_no_longer_returns_are_kept_and_named(trials, caplog):
    cut(n=3)
    with caplog.at_level(logging.WARNING, logger="scistack.foreach"):
        cut(n=2)
    said = [r.getMessage() for r in caplog.records if "stay from an earlier run" in r.getMessage()]
    assert len(said) == 1 and "4 SpTrial value(s)" in said[0] and "SpTrial.delete(subject=1" in said[0]
    assert "trial=3" in said[0]
    left = SpTrial.load(subject=1, session="pre", trial=3)
    assert left.record.params == {"cut_trials.n": 3}  # still what the n=3 call made, said by its lineage
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="scistack.foreach"):
        cut(n=3)  # every part returned again: nothing to say
    assert not [r for r in caplog.records if "stay from an earlier run" in r.getMessage()]


def test_status_and_why_judge_each_part_by_its_call(trials):
    cut()
    for_each(lambda x: float(np.max(x)), inputs={"x": SpTrial}, outputs=[SpPeak], subject=SUBJECTS,
             session=SESSIONS, trial=[], progress=False, verbose=False)
    SpSession.save(np.zeros(30), subject=2, session="pre")  # a re-recording of one session
    grid = status_grid(trials)
    stale = {(c.var, c.addr.get("subject"), c.addr.get("session"), c.addr.get("trial"))
             for c in grid.cells if c.status == "stale"}
    assert {s for s in stale if s[0] == "SpTrial"} == {("SpTrial", 2, "pre", t) for t in (1, 2, 3)}
    assert {s for s in stale if s[0] == "SpPeak"} == {("SpPeak", 2, "pre", t) for t in (1, 2, 3)}
    summary = status_summary(trials)
    assert summary.counts == grid.counts()
    cells = status_cells(trials)
    assert (cells.addresses, cells.grid) == (grid.addresses, grid.grid)
    assert why(SpTrial, subject=2, session="pre", trial=1).status == "stale"
    assert why(SpTrial, subject=1, session="pre", trial=1).status == "current"
    cut()  # the changed session is cut again; the others are cached
    assert why(SpTrial, subject=2, session="pre", trial=1).status == "current"


def cut_named(recording, n):
    return {f"t{i + 1}": part for i, part in enumerate(np.array_split(np.asarray(recording), n))}, n


def test_a_direct_call_is_never_served_the_parts(trials):
    """The call key is the function and its inputs: a direct call of the same function on the
    same value has the for_each's key, but its result is the dict, not the first part."""
    def run_split():
        return for_each(cut_named, inputs={"recording": SpSession, "n": 3},
                        outputs=[Split(SpTrial, by="trial"), SpCount], subject=[1], session=["pre"],
                        progress=False, verbose=False)

    assert run_split().ran == 1
    parts, count = lineage_fcn(cut_named)(SpSession.load(subject=1, session="pre"), 3)
    assert isinstance(parts.data, dict) and sorted(parts.data) == ["t1", "t2", "t3"] and count.data == 3
    # nor is a for_each saving the dict whole
    whole = for_each(cut_named, inputs={"recording": SpSession, "n": 3}, outputs=[SpWhole, SpCount],
                     subject=[1], session=["pre"], progress=False, verbose=False)
    assert sorted(SpWhole.load(subject=1, session="pre").data) == ["t1", "t2", "t3"]
    assert whole.ran + whole.cached == 1
    again = run_split()  # and the split run after them is still served nothing else
    assert again.ran + again.cached == 1 and sorted(_newest(SpTrial)) == [(1, "pre", f"t{i}") for i in (1, 2, 3)]


def test_workers_save_the_same_parts_as_a_serial_run(trials):
    cut()
    serial = {k: r.oid for k, r in _newest(SpTrial).items()}
    SpTrial.delete(all=True)
    with cf.ProcessPoolExecutor(2, mp_context=multiprocessing.get_context("spawn")) as pool:
        report = for_each(fns.cut_trials, inputs={"recording": SpSession, "n": 4},
                          outputs=[Split(SpTrial, by="trial"), SpCount], subject=SUBJECTS, session=SESSIONS,
                          progress=False, verbose=False, executor=pool, chunk_size=1)
    assert report.ran == 4
    assert len(SpTrial.load_all()) == 16
    restored = cut()  # the n=3 parts again, restored from the cache: the same oids
    assert restored.cached == 4
    assert {k: r.oid for k, r in _newest(SpTrial).items() if k[2] != 4} == serial


def test_gc_keeps_what_a_cached_split_needs(trials):
    cut()
    cut(n=2)
    stats = collect_garbage(trials, grace_seconds=0)
    assert stats.objects_deleted == 0  # every part of both calls is still named by a ref
    back = cut(n=3)
    assert (back.ran, back.cached) == (0, 4)


@pytest.mark.parametrize("outputs, iterate, message", [
    ([Split(SpTrial, by="rep")], {}, "not a schema key"),
    ([Split(SpTrial, by="trial")], {"trial": [1]}, "iterates trial= too"),
    ([Split(SpTrial, by="trial"), SpTrial], {}, "name a variable twice"),
])
def test_a_split_that_cannot_work_is_refused_before_anything_runs(trials, outputs, iterate, message):
    with pytest.raises(InvalidMetadataError, match=message):
        for_each(fns.cut_trials, inputs={"recording": SpSession, "n": 3}, outputs=outputs,
                 subject=SUBJECTS, session=SESSIONS, progress=False, verbose=False, **iterate)
    assert trials.index.runs() == []


def test_a_split_where_a_written_file_goes_is_refused(trials, tmp_path):
    from scistack import PathOutput

    def plot(recording, dest):
        return {1: recording}

    with pytest.raises(InvalidMetadataError, match="receives a file written through PathOutput"):
        for_each(plot, inputs={"recording": SpSession, "dest": PathOutput("{subject}/{session}.png",
                                                                          root=str(tmp_path / "figs"))},
                 outputs=[Split(SpTrial, by="trial")], subject=SUBJECTS, session=SESSIONS, verbose=False)


def test_split_takes_a_variable_and_a_key():
    with pytest.raises(InvalidMetadataError, match="variable class first"):
        Split("SpTrial", by="trial")
    with pytest.raises(InvalidMetadataError, match="schema key the returned dict"):
        Split(SpTrial, by=3)


def test_a_result_that_is_not_a_dict_fails_its_combination_with_the_fix(trials):
    def not_a_dict(recording):
        return [1, 2]

    def bad_label(recording):
        return {float("nan"): recording}

    for fn, text in ((not_a_dict, "returned list for an output split by 'trial'; return a dict"),
                     (bad_label, "key nan cannot be a trial")):
        report = for_each(fn, inputs={"recording": SpSession}, outputs=[Split(SpTrial, by="trial")],
                          subject=[1], session=["pre"], progress=False, verbose=False)
        assert report.failed == 1 and text in report.failures[0].error
    assert list(SpTrial.load_all()) == []


def test_an_empty_dict_saves_no_part_and_is_cached(trials):
    def no_trials(recording):
        return {}

    first = for_each(no_trials, inputs={"recording": SpSession}, outputs=[Split(SpTrial, by="trial")],
                     subject=[1], session=["pre"], progress=False, verbose=False)
    again = for_each(no_trials, inputs={"recording": SpSession}, outputs=[Split(SpTrial, by="trial")],
                     subject=[1], session=["pre"], progress=False, verbose=False)
    assert (first.ran, again.cached) == (1, 1)
    assert list(SpTrial.load_all()) == []


def test_a_cached_split_whose_call_record_is_gone_runs_that_combination_again(trials):
    cut()
    lost = SpTrial.load(subject=1, session="post", trial=1).record.call
    trials.store.delete_many([lost])  # (a damaged or removed record: its labels cannot be read)
    again = cut()
    assert (again.ran, again.cached) == (1, 3)
    assert {r.combo["subject"]: r.combo["session"] for r in again.items if r.status == "ran"} == {1: "post"}
    call = read_call(trials.store, SpTrial.load(subject=1, session="post", trial=1).record.call)  # readable again
    assert call.extra["split"] == [{"by": "trial", "labels": [1, 2, 3]}, None]
