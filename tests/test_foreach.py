"""for_each through the public API: planning, caching, lineage, reports, workers, Dask, kills.

Every test runs on a real project (DuckDB file + object store in tmp_path, see conftest.py).
Functions that must reach other processes live in `tests.foreach_fns` (an importable module);
parallel tests use real spawn process pools and a real `dask.distributed.LocalCluster`.
No timing assertions: speed goals live in bench/foreach.py.
"""

from __future__ import annotations

import concurrent.futures as cf
import functools
import json
import logging
import multiprocessing
import os
import random
import signal
import subprocess
import sys
import time
import types
from collections import Counter
from pathlib import Path

import numpy as np
import pandas as pd
import warnings

import pytest

import scistack
from tests import foreach_fns as fns
from tests.helpers import journal_size
from scistack import (
    BaseVariable,
    Fixed,
    ForEachError,
    Merge,
    RunReport,
    for_each,
    lineage_fcn,
    set_schema,
)
from scistack.errors import InvalidMetadataError, LineageError, VariableNotFoundError
from scistack.fsck import fsck

ROOT = str(Path(__file__).resolve().parents[1])
SUBJECTS = [1, 2, 3]
SESSIONS = ["pre", "post"]


class FeRawEMG(BaseVariable):
    pass


class FeVelocity(BaseVariable):
    pass


class FeFiltered(BaseVariable):
    pass


class FeCentred(BaseVariable):
    pass


class FeMeanEMG(BaseVariable):
    pass


class FeStats(BaseVariable):
    pass


class FeWorkerPid(BaseVariable):
    pass


def raw_signal(subject: int, session: str) -> np.ndarray:
    """Distinct content at every address (identical content is tested on purpose elsewhere)."""
    return np.arange(8.0) + 10 * subject + (0.5 if session == "pre" else 0.0)


@pytest.fixture
def emg(project):
    """FeRawEMG at subjects 1-3 x pre/post/baseline and FeVelocity at pre/post, saved in a batch."""
    with project.batch():
        for subject in SUBJECTS:
            for session in [*SESSIONS, "baseline"]:
                FeRawEMG.save(raw_signal(subject, session), subject=subject, session=session)
            for session in SESSIONS:
                FeVelocity.save(float(subject), subject=subject, session=session)
    return project


@pytest.fixture(scope="module")
def spawn_pool():
    """One real spawn process pool for the tests that pass `executor=`."""
    with cf.ProcessPoolExecutor(2, mp_context=multiprocessing.get_context("spawn")) as pool:
        yield pool


def run_bandpass(low_hz=20, **kwargs):
    kwargs.setdefault("subject", SUBJECTS)
    kwargs.setdefault("session", SESSIONS)
    kwargs.setdefault("progress", False)
    return for_each(fns.bandpass, inputs={"signal": FeRawEMG, "low_hz": low_hz}, outputs=[FeFiltered], **kwargs)


def versions(var: type, **address) -> list[int]:
    return [r.version for r in var.list_versions(**address)]


def object_count(db) -> int:
    return sum(1 for _ in db.store.iter_oids())


# -- running, saving, lineage ---------------------------------------------------------------
def test_runs_every_combination_and_saves_with_lineage(emg):
    report = run_bandpass()
    assert isinstance(report, RunReport)
    assert (report.ran, report.cached, report.missing, report.failed) == (6, 0, 0, 0)
    for subject in SUBJECTS:
        for session in SESSIONS:
            loaded = FeFiltered.load(subject=subject, session=session)
            np.testing.assert_array_equal(loaded.data, raw_signal(subject, session) * 20)
    prov = emg.get_provenance(FeFiltered, subject=2, session="post")
    assert prov["function_name"] == "bandpass"
    assert prov["constants"] == {"low_hz": 20}
    assert prov["inputs"]["signal"]["var"] == "FeRawEMG"
    assert prov["inputs"]["signal"]["addr"] == {"subject": 2, "session": "post"}
    assert prov["inputs"]["signal"]["oid"] == FeRawEMG.load(subject=2, session="post").oid


def test_rerun_is_fully_cached_and_writes_no_new_versions(emg):
    run_bandpass()
    before = {(s, se): versions(FeFiltered, subject=s, session=se) for s in SUBJECTS for se in SESSIONS}
    report = run_bandpass()
    assert (report.ran, report.cached) == (0, 6)
    after = {(s, se): versions(FeFiltered, subject=s, session=se) for s in SUBJECTS for se in SESSIONS}
    assert after == before == {k: [1] for k in before}


def test_a_fully_cached_rerun_writes_nothing(emg):
    run_bandpass()
    emg.flush()
    journal_before, objects = journal_size(emg), object_count(emg)
    assert run_bandpass().cached == 6
    emg.flush()
    assert (journal_size(emg), object_count(emg)) == (journal_before, objects)
    assert len(emg.index.runs()) == 1  # the first run's report only


_PEAK_CALLS = []


def _peak_counted(signal):
    _PEAK_CALLS.append(1)
    return float(np.max(signal))


def test_identical_values_at_two_addresses_keep_their_own_lineage(project):
    """The cache is keyed by function and input values, so subject 2's call (the same
    filtered values as subject 1's, made with another gain) hit subject 1's: its result was
    saved naming subject 1's call record, and its lineage, parameters and `load(gain=...)`
    said subject 1's. The result is still reused, not computed again, but recorded with
    its own inputs; a rerun then writes nothing."""
    for subject in (1, 2):
        FeRawEMG.save(np.arange(4.0) * subject, subject=subject, session="pre")
    scale = lineage_fcn(fns.scale_by)
    for subject, gain in ((1, 2.0), (2, 1.0)):  # arange*1*2 == arange*2*1: one value, two lineages
        for_each(scale, inputs={"signal": FeRawEMG, "k": gain}, outputs=[FeFiltered], subject=[subject],
                 session=["pre"], progress=False)
    _PEAK_CALLS.clear()
    peak = lineage_fcn(_peak_counted)
    for subject in (1, 2):  # the second a cache hit of the first
        report = for_each(peak, inputs={"signal": FeFiltered}, outputs=[FeMeanEMG], subject=[subject],
                          session=["pre"], progress=False)
    assert (report.ran, report.cached, len(_PEAK_CALLS)) == (0, 1, 1)
    for subject, gain in ((1, 2.0), (2, 1.0)):
        prov = project.get_provenance(FeMeanEMG, subject=subject, session="pre")
        assert prov["inputs"]["signal"]["addr"] == {"subject": subject, "session": "pre"}, prov
        assert prov["params"]["scale_by.k"] == gain
        assert [v.metadata["subject"] for v in FeMeanEMG.load_all(k=gain)] == [subject]
    project.flush()
    journal_before = journal_size(project)
    report = for_each(peak, inputs={"signal": FeFiltered}, outputs=[FeMeanEMG], subject=[1, 2], session=["pre"],
                      progress=False)
    project.flush()
    assert (report.ran, report.cached, len(_PEAK_CALLS), journal_size(project) - journal_before) == (0, 2, 1, 0)


def test_plain_function_and_lineage_function_share_the_cache(emg):
    run_bandpass()
    report = for_each(lineage_fcn(fns.bandpass), inputs={"signal": FeRawEMG, "low_hz": 20},
                      outputs=[FeFiltered], subject=SUBJECTS, session=SESSIONS, progress=False)
    assert (report.ran, report.cached) == (0, 6)


def test_constants_are_recorded_and_queryable(emg):
    run_bandpass(low_hz=20)
    found = FeFiltered.load(low_hz=20)
    assert len(found) == 6
    assert FeFiltered.load(subject=1, session="pre", low_hz=20).data[0] == raw_signal(1, "pre")[0] * 20
    assert len(FeFiltered.load(**{"bandpass.low_hz": 20})) == 6
    with pytest.raises(VariableNotFoundError):
        FeFiltered.load(low_hz=30)


@pytest.mark.parametrize("bad", ["caf\udce9.csv", {"gain": 2, "label": "caf\udce9"}, object(), {1: "a"}],
                         ids=["lone-surrogate", "in-a-dict", "object", "int-key"])
def test_a_constant_that_cannot_be_stored_is_refused_naming_its_input(emg, bad):
    """A constant refused for its value said only why ("cannot store 'caf\\udce9': ..."), not
    which of the step's inputs it was: it names the input now, before anything runs."""
    from scistack.errors import UnsupportedValueError

    with pytest.raises(UnsupportedValueError, match=r"for_each input 'low_hz' \(inputs=\{'low_hz': \.\.\.\}") as info:
        for_each(fns.bandpass, inputs={"signal": FeRawEMG, "low_hz": bad}, outputs=[FeFiltered],
                 subject=SUBJECTS, session=SESSIONS, progress=False)
    assert "cannot store" in str(info.value) or "must be str" in str(info.value)
    with pytest.raises(VariableNotFoundError):
        FeFiltered.load(subject=1, session="pre")


def test_a_constant_cannot_be_changed_between_combinations(emg):
    weights = np.ones(3)
    report = for_each(fns.weigh_in_place, inputs={"signal": FeRawEMG, "weights": weights}, outputs=[FeFiltered],
                      subject=[1], session=SESSIONS, progress=False)
    assert report.failed == 2 and "read-only" in report.failures[0].error
    np.testing.assert_array_equal(weights, np.ones(3))
    seen: list[int] = []
    report = for_each(fns.count_with, inputs={"signal": FeRawEMG, "seen": seen}, outputs=[FeMeanEMG],
                      subject=SUBJECTS, session=SESSIONS, progress=False)
    assert report.ran == 6 and seen == []
    assert {v.data for v in FeMeanEMG.load_all()} == {1.0}  # every combination saw the same constant


def test_a_tuple_maps_to_several_outputs(emg):
    report = for_each(fns.centre, inputs={"signal": FeRawEMG}, outputs=[FeCentred, FeMeanEMG],
                      subject=SUBJECTS, session=SESSIONS, progress=False)
    assert report.ran == 6
    centred = FeCentred.load(subject=3, session="pre")
    mean = FeMeanEMG.load(subject=3, session="pre")
    raw = raw_signal(3, "pre")
    np.testing.assert_allclose(centred.data, raw - raw.mean())
    assert mean.data == pytest.approx(raw.mean())
    assert centred.call == mean.call is not None
    direct = lineage_fcn(fns.centre)(FeRawEMG.load(subject=3, session="pre"))
    assert isinstance(direct, tuple) and direct[0].cached  # the same call, returned as a tuple
    np.testing.assert_allclose(direct[0].data, centred.data)


def test_fixed_pins_some_keys(emg):
    report = for_each(fns.minus_baseline, inputs={"signal": FeRawEMG, "baseline": Fixed(FeRawEMG, session="baseline")},
                      outputs=[FeFiltered], subject=SUBJECTS, session=SESSIONS, progress=False)
    assert report.ran == 6
    np.testing.assert_array_equal(FeFiltered.load(subject=2, session="pre").data,
                                  raw_signal(2, "pre") - raw_signal(2, "baseline"))
    prov = emg.get_provenance(FeFiltered, subject=2, session="pre")
    assert prov["inputs"]["baseline"]["addr"] == {"subject": 2, "session": "baseline"}


def test_a_fixed_input_deleted_earlier_in_the_same_batch_is_missing(emg):
    """A batch's held delete was invisible to the run's planning: the deleted baseline was
    still read, and an output computed from a record the batch had removed (`db.sql`, which
    writes the batch first, had it gone). Inside the batch as after it: missing."""
    with emg.batch():
        FeRawEMG.delete(subject=2, session="baseline")
        report = for_each(fns.minus_baseline, inputs={"signal": FeRawEMG, "baseline": Fixed(FeRawEMG, session="baseline")},
                          outputs=[FeFiltered], subject=SUBJECTS, session=SESSIONS, progress=False)
        assert (report.ran, report.missing) == (4, 2)
        assert {i.combo["subject"] for i in report.items if i.status == "missing"} == {2}
    assert sorted(r.metadata["subject"] for r in FeFiltered.load_all()) == [1, 1, 3, 3]
    with emg.batch():  # cached or not, the same answer after the batch
        report = for_each(fns.minus_baseline, inputs={"signal": FeRawEMG, "baseline": Fixed(FeRawEMG, session="baseline")},
                          outputs=[FeFiltered], subject=SUBJECTS, session=SESSIONS, progress=False)
        assert (report.ran, report.cached, report.missing) == (0, 4, 2)


def test_merge_joins_several_variables_into_one_table(emg):
    report = for_each(fns.column_sums, inputs={"table": Merge(FeRawEMG, FeVelocity)}, outputs=[FeStats],
                      subject=SUBJECTS, session=SESSIONS, progress=False)
    assert report.ran == 6
    summary = FeStats.load(subject=2, session="post").data
    assert summary == {"columns": ["FeRawEMG", "FeVelocity", "session", "subject"], "rows": 1, "velocity": 2.0}
    call = emg.store.get_value(FeStats.load(subject=2, session="post").call)
    members = call["inputs"]["table"]["merge"]
    assert {m["var"]: m["oid"] for m in members} == {
        "FeRawEMG": FeRawEMG.load(subject=2, session="post").oid,
        "FeVelocity": FeVelocity.load(subject=2, session="post").oid,
    }
    assert "table" not in json.dumps(call["params"])  # a merged input is not a constant


def test_a_merge_member_pinned_elsewhere_stands_beside_the_combinations_row(emg):
    """`Merge(Velocity, Fixed(RawEMG, session="baseline"))` at (2, "pre"): one row, the
    baseline beside this session's velocity. The pinned member's rows had been joined on the
    key it pinned, so they stood apart from the combination's row, each half empty."""
    report = for_each(fns.merged_rows, inputs={"table": Merge(FeVelocity, Fixed(FeRawEMG, session="baseline"))},
                      outputs=[FeStats], subject=[2], session=["pre"], progress=False)
    assert report.ran == 1
    assert FeStats.load(subject=2, session="pre").data == {
        "columns": ["subject", "session", "FeVelocity", "FeRawEMG"],
        "rows": [{"subject": 2, "session": "pre", "FeVelocity": 2.0,
                  "FeRawEMG": raw_signal(2, "baseline").tolist()}]}


def test_a_variable_merged_with_itself_at_another_address_gets_a_column_each(emg):
    """This session beside the baseline, one variable: a column each, the pinned one named by
    its pins. The same member twice is refused, naming the way."""
    for_each(fns.merged_rows, inputs={"table": Merge(FeRawEMG, Fixed(FeRawEMG, session="baseline"))},
             outputs=[FeStats], subject=[3], session=["pre"], progress=False)
    got = FeStats.load(subject=3, session="pre").data
    assert got["columns"] == ["subject", "session", "FeRawEMG", "FeRawEMG[session=baseline]"]
    assert [(r["FeRawEMG"], r["FeRawEMG[session=baseline]"]) for r in got["rows"]] == [
        (raw_signal(3, "pre").tolist(), raw_signal(3, "baseline").tolist())]
    with pytest.raises(InvalidMetadataError, match=r"Merge names FeRawEMG twice.*Fixed\(FeRawEMG, session="):
        Merge(FeRawEMG, FeRawEMG)


def test_empty_list_means_every_stored_value(emg):
    report = run_bandpass(subject=[], session=SESSIONS)
    assert report.ran == 6
    assert sorted({item.combo["subject"] for item in report.items}) == SUBJECTS


def test_every_value_follows_the_variables_a_key_addresses(emg):
    # FeRawEMG has a "baseline" session, FeVelocity does not
    pinned = for_each(fns.minus_baseline, inputs={"signal": FeVelocity, "baseline": Fixed(FeRawEMG, session="baseline")},
                      outputs=[FeFiltered], subject=[1], session=[], dry_run=True, progress=False)
    assert sorted(i.combo["session"] for i in pinned.items) == ["post", "pre"]  # the pin is not iterated
    merged = for_each(fns.column_sums, inputs={"table": Merge(FeVelocity, Fixed(FeRawEMG, subject=1))},
                      outputs=[FeStats], subject=[1], session=[], dry_run=True, progress=False)
    assert sorted(i.combo["session"] for i in merged.items) == ["baseline", "post", "pre"]


@pytest.mark.parametrize("subjects", [
    range(1, 4), (s for s in SUBJECTS), np.array(SUBJECTS), pd.Series(SUBJECTS), (1, 2, 3),
], ids=["range", "generator", "ndarray", "series", "tuple"])
def test_any_iterable_of_values(emg, subjects):
    report = run_bandpass(subject=subjects)
    assert report.ran == 6
    assert all(type(item.combo["subject"]) is int for item in report.items)
    assert FeFiltered.load(subject=3, session="post").metadata == {"subject": 3, "session": "post"}


def test_a_single_value_is_one_combination(emg):
    report = run_bandpass(subject=2, session="pre")
    assert (report.ran, len(report.items)) == (1, 1)


def test_repeated_values_run_once(emg):
    report = run_bandpass(subject=[1, 1, 2], session=["pre", "pre"])
    assert report.ran == 2 and len(report.items) == 2
    assert versions(FeFiltered, subject=1, session="pre") == [1]


# -- aggregation ------------------------------------------------------------------------------
def test_fewer_keys_than_schema_aggregates_as_a_list(emg):
    report = for_each(fns.mean_of_all, inputs={"values": FeRawEMG}, outputs=[FeMeanEMG],
                      subject=SUBJECTS, progress=False)
    assert report.ran == 3
    saved = FeMeanEMG.load(subject=2)
    assert saved.metadata == {"subject": 2}
    expected = np.mean([raw_signal(2, s).mean() for s in [*SESSIONS, "baseline"]])
    assert saved.data == pytest.approx(expected)
    assert for_each(fns.mean_of_all, inputs={"values": FeRawEMG}, outputs=[FeMeanEMG],
                    subject=SUBJECTS, progress=False).cached == 3


def test_an_aggregate_keeps_only_the_parameters_its_members_agree_on(emg):
    """A subject's mean over sessions filtered at low_hz 20 (pre) and 30 (post) had taken
    the last member's 30: `load(low_hz=30)` found it and `load(low_hz=20)` did not. A
    parameter the members disagree on is no parameter of the aggregate; one they share is."""
    run_bandpass(low_hz=20, session=["pre"])
    run_bandpass(low_hz=30, session=["post"])
    for_each(fns.mean_of_all, inputs={"values": FeFiltered}, outputs=[FeMeanEMG], subject=[1], progress=False)
    assert "bandpass.low_hz" not in FeMeanEMG.load(subject=1).record.params
    run_bandpass(low_hz=30, session=["pre"])  # every member at 30 now
    for_each(fns.mean_of_all, inputs={"values": FeFiltered}, outputs=[FeMeanEMG], subject=[1], progress=False)
    assert FeMeanEMG.load(subject=1).record.params == {"bandpass.low_hz": 30}
    assert [v.metadata for v in FeMeanEMG.load_all(low_hz=30)] == [{"subject": 1}]


def test_aggregation_as_table_gives_a_dataframe(emg):
    report = for_each(fns.describe_table, inputs={"values": FeRawEMG}, outputs=[FeStats],
                      subject=SUBJECTS, as_table=True, progress=False)
    assert report.ran == 3
    assert FeStats.load(subject=1).data == {"columns": ["data", "session", "subject"], "rows": 3,
                                             "sessions": ["baseline", "post", "pre"]}


# -- missing inputs, failures, dry runs -------------------------------------------------------
def test_missing_inputs_are_skipped_not_errors(emg):
    report = run_bandpass(subject=[1, 2, 3, 4])
    assert (report.ran, report.missing, report.failed) == (6, 2, 0)
    missing = [item for item in report.items if item.status == "missing"]
    assert [item.combo["subject"] for item in missing] == [4, 4]
    assert all(item.missing == ["signal"] for item in missing)


def test_failures_are_recorded_with_tracebacks_and_the_run_continues(emg):
    # subject 3's signals peak at 37.5: above the limit
    report = for_each(fns.fragile, inputs={"signal": FeRawEMG, "limit": 30.0}, outputs=[FeFiltered],
                      subject=SUBJECTS, session=SESSIONS, progress=False)
    assert (report.ran, report.failed) == (4, 2)
    failure = report.failures[0]
    assert failure.combo == {"subject": 3, "session": "pre"}
    assert failure.error.startswith("ValueError: signal peaks at 37.5")
    assert "Traceback" in failure.traceback and "fragile" in failure.traceback
    assert "failed subject=3, session='pre': ValueError" in report.summary()
    with pytest.raises(VariableNotFoundError):
        FeFiltered.load(subject=3, session="pre")
    again = for_each(fns.fragile, inputs={"signal": FeRawEMG, "limit": 30.0}, outputs=[FeFiltered],
                     subject=SUBJECTS, session=SESSIONS, progress=False)
    assert (again.ran, again.cached, again.failed) == (0, 4, 2)  # failures are not cached


def test_on_error_raise_stops_at_the_first_failure(emg):
    with pytest.raises(ForEachError) as caught:
        for_each(fns.fragile, inputs={"signal": FeRawEMG, "limit": 20.0}, outputs=[FeFiltered],
                 subject=SUBJECTS, session=SESSIONS, on_error="raise", progress=False)
    error = caught.value
    assert len(error.failures) == 1
    assert error.failures[0].combo == {"subject": 2, "session": "pre"}
    assert "ValueError" in str(error) and "Traceback" in str(error)
    assert len(FeFiltered.load(subject=1)) == 2          # ran before the failure
    with pytest.raises(VariableNotFoundError):         # never started after it
        FeFiltered.load(subject=3)
    run = emg.index.runs()[-1]
    assert run.counts["failed"] == 1 and run.counts["ran"] == 2


def test_on_error_raise_stops_parallel_runs_too(emg, spawn_pool):
    with pytest.raises(ForEachError) as caught:
        for_each(fns.fragile, inputs={"signal": FeRawEMG, "limit": 20.0}, outputs=[FeFiltered],
                 subject=SUBJECTS, session=SESSIONS, on_error="raise", executor=spawn_pool,
                 chunk_size=1, progress=False)
    assert len(caught.value.failures) == 1  # four combinations fail; the first one seen stops the run
    items = emg.store.get_value(emg.index.runs()[-1].items)
    statuses = Counter(item["status"] for item in items)
    assert statuses["failed"] == 1 and statuses["ran"] + statuses["skipped"] == 5


def test_dry_run_reports_the_plan_and_writes_nothing(emg):
    run_bandpass(subject=[1])
    journal_before, objects = journal_size(emg), object_count(emg)
    report = run_bandpass(subject=[1, 2, 4], dry_run=True)
    assert report.dry_run
    statuses = Counter(item.status for item in report.items)
    assert statuses == {"cached": 2, "would_run": 2, "missing": 2}
    assert report.summary().startswith("[dry run]")
    emg.flush()
    assert journal_size(emg) == journal_before
    assert object_count(emg) == objects
    with pytest.raises(VariableNotFoundError):
        FeFiltered.load(subject=2)


def test_a_dry_run_counts_combinations_of_the_same_call_as_the_run_does(project):
    """Two addresses holding the same value make one call: the run computes it once and serves
    the other (cached). The dry run had said both would run."""
    for subject in (1, 2):
        FeRawEMG.save(np.arange(8.0), subject=subject, session="pre")
    kwargs = dict(inputs={"signal": FeRawEMG, "low_hz": 20}, outputs=[FeFiltered], subject=[1, 2],
                  session=["pre"], progress=False)
    planned = for_each(fns.bandpass, dry_run=True, **kwargs)
    done = for_each(fns.bandpass, **kwargs)
    assert (planned.counts["would_run"], planned.counts["cached"]) == (done.counts["ran"], done.counts["cached"]) == (1, 1)


def test_a_dry_run_plans_to_run_a_cached_call_whose_output_is_gone_as_the_run_does(project):
    """A cached call whose output is not the current value here (saved over by hand) and is
    gone from the store (a lab's bucket lost it): the run computes it again, the dry run had
    said cached (it skipped the run's look at the store)."""
    import time

    FeRawEMG.save(np.arange(8.0), subject=1, session="pre")
    kwargs = dict(inputs={"signal": FeRawEMG, "low_hz": 20}, outputs=[FeFiltered], subject=[1],
                  session=["pre"], progress=False)
    for_each(fns.bandpass, **kwargs)
    lost = FeFiltered.load(subject=1, session="pre").oid
    FeFiltered.save(np.zeros(3), subject=1, session="pre")
    project.store.delete_many([lost], older_than=time.time() + 60)
    planned = for_each(fns.bandpass, dry_run=True, **kwargs)
    done = for_each(fns.bandpass, **kwargs)
    assert (planned.would_run, planned.cached) == (done.ran, done.cached) == (1, 0)


# -- the report and the run record ------------------------------------------------------------
def test_report_counts_summary_and_frame(emg):
    report = run_bandpass(subject=[1, 4])
    assert report.counts == {"ran": 2, "cached": 0, "missing": 2, "failed": 0}
    assert report.summary().splitlines()[0].startswith("for_each(bandpass): 2 ran, 0 cached, 2 missing, 0 failed in ")
    assert str(report) == report.summary() and "RunReport" in repr(report)
    frame = report.to_frame()
    assert list(frame.columns) == ["subject", "session", "status", "duration", "error"]
    assert list(frame["status"]) == ["ran", "ran", "missing", "missing"]
    assert (frame["duration"] >= 0).all() and report.duration >= 0


def test_an_empty_run_is_reported_and_warned_about(emg, caplog):
    # FeStats has nothing stored, so subject=[] finds no values
    empty = for_each(fns.bandpass, inputs={"signal": FeStats, "low_hz": 1}, outputs=[FeFiltered],
                     subject=[], progress=False)
    assert empty.items == [] and list(empty.to_frame().columns) == ["status", "duration", "error"]
    assert any("no combinations" in r.getMessage() for r in caplog.records)


def test_a_variables_name_in_quotes_is_passed_as_text_and_said(emg, caplog):
    """inputs={"signal": "FeRawEMG"} ran with the text "FeRawEMG" at every call without a
    word, though that variable is saved there: said once a run, with the fix."""
    report = for_each(fns.scale_by, inputs={"signal": "FeRawEMG", "k": 2}, outputs=[FeFiltered],
                      subject=[1, 2], session=["pre"], progress=False)
    assert report.failed == 0 and FeFiltered.load(subject=2, session="pre").data == "FeRawEMGFeRawEMG"
    said = [r.getMessage() for r in caplog.records if "is the text 'FeRawEMG'" in r.getMessage()]
    assert said == ["for_each(scale_by): input signal is the text 'FeRawEMG', passed as it is to every "
                    "call; to load the variable FeRawEMG, pass its class: inputs={'signal': FeRawEMG}"]
    caplog.clear()
    for_each(fns.scale_by, inputs={"signal": "FeNothingSaved", "k": 2}, outputs=[FeFiltered],
             subject=[1], session=["pre"], progress=False)
    assert not [r for r in caplog.records if "is the text" in r.getMessage()]  # no such variable


def test_run_and_statuses_are_stored_in_the_index(emg):
    report = for_each(fns.fragile, inputs={"signal": FeRawEMG, "limit": 30.0}, outputs=[FeFiltered],
                      subject=[1, 3, 4], session=SESSIONS, progress=False)
    run = emg.index.runs()[-1]
    assert run.run_id == report.run_id and run.function == "fragile"
    assert run.counts == {"ran": 2, "cached": 0, "missing": 2, "failed": 2}
    items = emg.store.get_value(run.items)
    assert emg.store.put_value(items) == run.items  # stored in its canonical encoding
    assert [i["status"] for i in items] == ["ran", "ran", "failed", "failed", "missing", "missing"]
    assert items[2]["combo"] == {"subject": 3, "session": "pre"}
    assert "ValueError" in items[2]["error"] and "Traceback" in items[2]["traceback"]
    emg.sync()
    stored = emg.sql("SELECT run_id, entry FROM runs")
    assert report.run_id in set(stored["run_id"])


def test_scistack_status_shows_the_last_run_failures(emg):
    from click.testing import CliRunner

    from scistack.cli import main

    for_each(fns.fragile, inputs={"signal": FeRawEMG, "limit": 30.0}, outputs=[FeFiltered],
             subject=SUBJECTS, session=SESSIONS, progress=False)
    shown = CliRunner().invoke(main, ["--db", str(emg.path), "status", "--problems", "FeFiltered"])
    assert shown.exit_code == 0, shown.output
    failed = [line.split() for line in shown.output.splitlines() if line.split()[-1:] == ["FAILED"]]
    assert sorted(row[:2] for row in failed) == [["3", "post"], ["3", "pre"]]


# -- progress and logging ---------------------------------------------------------------------
def test_progress_false_is_silent(emg, capsys):
    run_bandpass(progress=False)
    assert capsys.readouterr().err == ""


def test_no_progress_bar_when_stderr_is_not_a_terminal(emg, capsys):
    for_each(fns.bandpass, inputs={"signal": FeRawEMG, "low_hz": 20}, outputs=[FeFiltered],
             subject=SUBJECTS, session=SESSIONS)  # progress=None: decide by the terminal
    err = capsys.readouterr().err.splitlines()  # no bar: only the one-line summary of the run
    assert len(err) == 1 and err[0].startswith("for_each(bandpass): 6 ran") and "6/6" not in err[0]


def test_progress_true_draws_a_bar(emg, capsys):
    run_bandpass(progress=True)
    err = capsys.readouterr().err
    assert "for_each(bandpass)" in err and "6/6" in err


def test_progress_bar_in_a_notebook(emg, capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, "ipykernel", types.ModuleType("ipykernel"))  # as in Jupyter
    for_each(fns.bandpass, inputs={"signal": FeRawEMG, "low_hz": 20}, outputs=[FeFiltered],
             subject=SUBJECTS, session=SESSIONS)  # progress=None
    assert "6/6" in capsys.readouterr().err  # tqdm.auto: a widget in Jupyter, text here


_TTY_SCRIPT = """
import sys
sys.path[:0] = [{root!r}]
import numpy as np
from scistack import BaseVariable, configure_database, for_each
from tests import foreach_fns
db = configure_database("tty.duckdb", ["subject", "session"])
class FeRawEMG(BaseVariable): pass
class FeFiltered(BaseVariable): pass
for s in range(3):
    FeRawEMG.save(np.arange(4.0) + s, subject=s, session="pre")
for_each(foreach_fns.bandpass, inputs={{"signal": FeRawEMG, "low_hz": 20}}, outputs=[FeFiltered],
         subject=range(3), session=["pre"])
"""


def test_progress_bar_appears_on_a_real_terminal(tmp_path, python_env):
    import fcntl
    import pty
    import struct
    import termios

    script = _TTY_SCRIPT.format(root=ROOT)
    leader, follower = pty.openpty()
    # a new pty is 0 columns wide, and tqdm draws nothing in 0 columns: size it like a terminal
    fcntl.ioctl(follower, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 100, 0, 0))
    proc = subprocess.Popen([sys.executable, "-c", script], cwd=tmp_path, env=python_env,
                            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=follower)
    os.close(follower)
    chunks = []
    while True:
        try:
            chunk = os.read(leader, 4096)
        except OSError:  # EIO: the child closed the terminal
            break
        if not chunk:
            break
        chunks.append(chunk)
    os.close(leader)
    assert proc.wait(timeout=60) == 0
    on_tty = b"".join(chunks).decode(errors="replace")
    assert "for_each(bandpass)" in on_tty and "3/3" in on_tty
    piped = subprocess.run([sys.executable, "-c", script], cwd=tmp_path, env=python_env, capture_output=True, text=True, timeout=60)
    assert piped.returncode == 0, piped.stderr
    assert "3/3" not in piped.stderr  # not a terminal: no bar (only the run's summary line)
    assert piped.stderr.strip().startswith("for_each(bandpass): 0 ran, 3 cached")


def test_a_run_missing_everything_names_values_saved_as_another_type(emg, caplog):
    """`subject=["1", "2"]` (text read from a file) where the subjects were saved as numbers:
    every combination is missing, and the warning names the values meant."""
    report = for_each(fns.bandpass, inputs={"signal": FeRawEMG, "low_hz": 10}, outputs=[FeFiltered],
                      subject=["1", "2"], session=["PRE"], progress=False)
    assert report.missing == 2
    warned = [r.getMessage() for r in caplog.records if "every combination was missing" in r.getMessage()]
    assert warned and "FeRawEMG has subject=1, subject=2, session='pre'" in warned[0]
    caplog.clear()
    report = for_each(fns.bandpass, inputs={"signal": FeRawEMG, "low_hz": 10}, outputs=[FeFiltered],
                      subject=[7], session=["pre"], progress=False)
    assert report.missing == 1 and not [r for r in caplog.records if "every combination" in r.getMessage()]


class FeRawEmg(BaseVariable):  # FeRawEMG misspelt: never saved
    pass


def test_a_run_whose_input_variable_was_never_saved_says_so_and_the_fix(emg, caplog):
    """An input variable with no records at all (its step not run yet, or a misspelt class)
    makes every combination missing: the warning names the variable, that it has no records,
    the fix, and the variable meant when the name is near one saved."""
    report = for_each(fns.bandpass, inputs={"signal": FeRawEmg, "low_hz": 10}, outputs=[FeFiltered],
                      subject=[1, 2], session=["pre"], progress=False)
    assert report.missing == 2 and report.ran == 0
    warned = [r.getMessage() for r in caplog.records if "every combination was missing" in r.getMessage()]
    assert len(warned) == 1, warned
    assert "FeRawEmg has no saved values in this project: it was never saved here" in warned[0]
    assert "or run the step that computes it first" in warned[0]
    assert "Did you mean FeRawEMG?" in warned[0]


def test_a_failed_combinations_warning_names_the_line_that_raised_and_where_the_traceback_is(emg, caplog):
    """The one line a failure prints names the user's line that raised (not scistack's, not a
    library's), so a newcomer knows where to look without asking for the traceback."""
    for_each(fns.fragile, inputs={"signal": FeRawEMG, "limit": 30.0}, outputs=[FeFiltered],
             subject=[1, 3], session=["pre"], progress=False)
    warned = [r.getMessage() for r in caplog.records if "failed at" in r.getMessage()]
    assert len(warned) == 1, warned
    line = next(i for i, text in enumerate(Path(fns.__file__).read_text().splitlines(), 1) if "raise ValueError" in text)
    assert f"(raised at foreach_fns.py:{line}, in fragile)" in warned[0]
    assert "its traceback: report.failures, or scistack runs" in warned[0]


def test_logging_reports_per_combination_events(emg, caplog):
    caplog.set_level(logging.DEBUG, logger="scistack.foreach")
    for_each(fns.fragile, inputs={"signal": FeRawEMG, "limit": 30.0}, outputs=[FeFiltered],
             subject=[1, 3, 4], session=["pre"], progress=False)
    messages = [(r.levelname, r.getMessage()) for r in caplog.records if r.name == "scistack.foreach"]
    assert any(level == "DEBUG" and "ran fragile at subject=1, session='pre' in" in m for level, m in messages)
    assert any(level == "DEBUG" and "missing" in m and "at subject=4, session='pre'" in m for level, m in messages)
    assert any(level == "WARNING" and "failed at subject=3, session='pre':" in m for level, m in messages)
    assert any(level == "INFO" and "1 ran" in m and "1 failed" in m for level, m in messages)
    caplog.clear()
    for_each(fns.fragile, inputs={"signal": FeRawEMG, "limit": 30.0}, outputs=[FeFiltered],
             subject=[1], session=["pre"], progress=False)
    assert any("cached" in r.getMessage() and "at subject=1, session='pre'" in r.getMessage() for r in caplog.records
               if r.levelname == "DEBUG")


# -- scifor (table mode, no database) ---------------------------------------------------------
@pytest.fixture
def table_schema(no_database):
    set_schema(["subject", "session"])
    yield
    set_schema([])


def test_table_mode_filters_dataframes_and_returns_results(table_schema):
    raw = pd.DataFrame([{"subject": s, "session": se, "data": raw_signal(s, se)}
                        for s in [1, 2] for se in SESSIONS])
    results = for_each(fns.bandpass, inputs={"signal": raw, "low_hz": 3}, outputs=[FeFiltered],
                       subject=[1, 2, 9], session=SESSIONS)
    assert isinstance(results, pd.DataFrame)
    assert list(results.columns) == ["subject", "session", "FeFiltered"]
    assert len(results) == 4  # subject 9 has no rows: skipped
    row = results[(results.subject == 2) & (results.session == "post")].iloc[0]
    np.testing.assert_array_equal(row["FeFiltered"], raw_signal(2, "post") * 3)


def _doubled_by_position(signal, /, factor):
    return signal * factor


def test_table_mode_passes_positional_only_inputs_by_position(table_schema):
    # README: "a function may take its inputs by position only (np.sqrt, abs, def f(x, /))";
    # without a database every such call failed, the input given as a keyword.
    values = pd.DataFrame({"subject": [1, 2], "session": ["pre", "pre"], "data": [4.0, 9.0]})
    roots = for_each(np.sqrt, inputs={"x": values}, outputs=[FeFiltered], subject=[1, 2], session=["pre"])
    assert roots["FeFiltered"].tolist() == [2.0, 3.0]
    doubled = for_each(_doubled_by_position, inputs={"signal": values, "factor": 2}, outputs=[FeFiltered],
                       subject=[1, 2], session=["pre"])
    assert doubled["FeFiltered"].tolist() == [8.0, 18.0]


def test_table_mode_tuples_aggregation_and_every_value(table_schema):
    raw = pd.DataFrame([{"subject": s, "session": se, "data": raw_signal(s, se)}
                        for s in [1, 2] for se in SESSIONS])
    results = for_each(fns.centre, inputs={"signal": raw}, outputs=[FeCentred, FeMeanEMG],
                       subject=[], session=[])
    assert list(results.columns) == ["subject", "session", "FeCentred", "FeMeanEMG"]
    assert results[["subject", "session"]].values.tolist() == [[1, "post"], [1, "pre"], [2, "post"], [2, "pre"]]
    assert results["FeMeanEMG"].iloc[1] == pytest.approx(raw_signal(1, "pre").mean())
    per_subject = for_each(fns.describe_table, inputs={"values": raw}, subject=[1, 2, 2], as_table=True)
    assert len(per_subject) == 2 and per_subject["result"].iloc[0]["rows"] == 2
    with pytest.raises(ForEachError, match="returned 2 values for the 3 outputs"):
        for_each(fns.centre, inputs={"signal": raw}, outputs=[FeCentred, FeMeanEMG, FeStats],
                 subject=np.array([1]), session=["pre"], on_error="raise")
    lineage_results = for_each(lineage_fcn(fns.centre), inputs={"signal": raw}, outputs=[FeCentred, FeMeanEMG],
                               subject=[1], session=["pre"])
    assert type(lineage_results["FeCentred"].iloc[0]) is np.ndarray  # values, not lineage wrappers


def test_table_mode_one_table_feeds_inputs_by_column_name(table_schema):
    # each input had received the whole row (a DataFrame) whenever the table held more than
    # one value column: only a column named `data` was unwrapped
    trials = pd.DataFrame({"subject": [1, 1, 2], "session": ["pre", "post", "pre"],
                           "force": [10.0, 12.0, 9.0], "mass": [70.0, 70.0, 60.0]})
    results = for_each(lambda force, mass: force / mass, inputs={"force": trials, "mass": trials},
                       outputs=["ratio"], subject=[1, 2], session=["pre"])
    assert results["ratio"].tolist() == [10.0 / 70.0, 9.0 / 60.0]
    per_subject = for_each(lambda force: len(force), inputs={"force": trials}, subject=[1])
    assert per_subject["result"].tolist() == [2]  # several rows: the rows themselves


def test_table_mode_failures_follow_on_error(table_schema, caplog):
    raw = pd.DataFrame([{"subject": s, "session": "pre", "data": raw_signal(s, "pre")} for s in SUBJECTS])
    results = for_each(fns.fragile, inputs={"signal": raw, "limit": 30.0}, subject=SUBJECTS, session=["pre"])
    assert list(results["subject"]) == [1, 2]  # subject 3 failed: logged, left out
    warnings = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert len(warnings) == 1 and "failed subject=3, session='pre': ValueError" in warnings[0]
    assert "Traceback" not in warnings[0]  # summarised: one line per failure, not a traceback each
    with pytest.raises(ForEachError) as caught:
        for_each(fns.fragile, inputs={"signal": raw, "limit": 30.0}, subject=SUBJECTS, session=["pre"],
                 on_error="raise")
    assert caught.value.failures[0].combo == {"subject": 3, "session": "pre"}


def test_variable_inputs_need_a_database(no_database):
    with pytest.raises(InvalidMetadataError, match="configure_database"):
        for_each(fns.bandpass, inputs={"signal": FeRawEMG, "low_hz": 3}, outputs=[FeFiltered], subject=[1])


# -- parallel and distributed -----------------------------------------------------------------
def _assert_bandpass_results(low_hz=20):
    for subject in SUBJECTS:
        for session in SESSIONS:
            np.testing.assert_array_equal(FeFiltered.load(subject=subject, session=session).data,
                                          raw_signal(subject, session) * low_hz)


def test_workers_run_combinations_in_a_spawned_process_pool(emg):
    report = for_each(fns.with_pid, inputs={"signal": FeRawEMG}, outputs=[FeFiltered, FeWorkerPid],
                      subject=SUBJECTS, session=SESSIONS, workers=2, chunk_size=2, progress=False)
    assert (report.ran, report.failed) == (6, 0), report.summary()
    pids = {FeWorkerPid.load(subject=s, session=se).data for s in SUBJECTS for se in SESSIONS}
    assert os.getpid() not in pids
    np.testing.assert_array_equal(FeFiltered.load(subject=1, session="post").data, raw_signal(1, "post") * 2)
    again = for_each(fns.with_pid, inputs={"signal": FeRawEMG}, outputs=[FeFiltered, FeWorkerPid],
                     subject=SUBJECTS, session=SESSIONS, workers=2, progress=False)
    assert (again.ran, again.cached) == (0, 6)


def test_parallel_and_serial_runs_produce_the_same_oids(emg, spawn_pool):
    report = run_bandpass(executor=spawn_pool, chunk_size=4)
    assert report.ran == 6
    parallel = {(s, se): FeFiltered.load(subject=s, session=se).oid for s in SUBJECTS for se in SESSIONS}
    _assert_bandpass_results()
    FeFiltered.delete(all=True)
    expected = {(s, se): emg.store.put_value(raw_signal(s, se) * 20) for s in SUBJECTS for se in SESSIONS}
    assert parallel == expected


def test_a_function_workers_cannot_import_fails_each_combination_with_a_hint(emg, spawn_pool):
    def local_scale(signal):  # defined inside a test: not importable by a worker process
        return signal * 2.0

    report = for_each(local_scale, inputs={"signal": FeRawEMG}, outputs=[FeFiltered],
                      subject=[1], session=SESSIONS, executor=spawn_pool, progress=False)
    assert (report.failed, report.ran) == (2, 0)
    assert "importable" in report.failures[0].error and report.failures[0].traceback
    assert emg.index.runs()[-1].counts["failed"] == 2


class CountingExecutor(cf.Executor):
    """Counts the tasks (chunks) it is given and how many combinations each holds."""

    def __init__(self, pool: cf.Executor) -> None:
        self.pool = pool
        self.sizes: list[int] = []

    def submit(self, fn, /, *args, **kwargs):
        self.sizes.append(len(args[2]))  # run_chunk(fn, store_root, tasks, ...)
        return self.pool.submit(fn, *args, **kwargs)


def test_combinations_go_to_workers_in_chunks(project, spawn_pool):
    with project.batch():
        for subject in range(100):
            FeRawEMG.save(np.arange(4.0) + subject, subject=subject, session="pre")
    counting = CountingExecutor(spawn_pool)
    counting._max_workers = 2
    report = run_bandpass(subject=range(100), session=["pre"], executor=counting)
    assert report.ran == 100
    assert sum(counting.sizes) == 100 and len(counting.sizes) == 8  # about four chunks per worker
    counting.sizes.clear()
    assert run_bandpass(subject=range(100), session=["pre"], low_hz=21, executor=counting, chunk_size=40).ran == 100
    assert counting.sizes == [40, 40, 20]


class RetryingExecutor(cf.Executor):
    """Runs every task twice (as Dask does when a worker dies after finishing), keeps the second."""

    def __init__(self, pool: cf.Executor) -> None:
        self.pool = pool
        self.attempts = 0

    def submit(self, fn, /, *args, **kwargs):
        first = self.pool.submit(fn, *args, **kwargs)
        first.result()
        self.attempts += 2
        return self.pool.submit(fn, *args, **kwargs)


def test_a_retried_task_gives_the_same_oids_and_no_duplicate_records(emg, spawn_pool):
    retrying = RetryingExecutor(spawn_pool)
    before = set(emg.store.iter_oids())
    report = run_bandpass(executor=retrying, chunk_size=2)
    assert report.ran == 6 and retrying.attempts == 6
    _assert_bandpass_results()
    for subject in SUBJECTS:
        for session in SESSIONS:
            assert versions(FeFiltered, subject=subject, session=session) == [1]
    calls = [json.loads(line) for line in (emg.scistack_dir / "refs.log").read_text().splitlines()
             if '"op":"call"' in line]
    assert len(calls) == 6 and len({c["key"] for c in calls}) == 6
    # every object the run added is named by a ref, a call record or the run: no stray
    # outputs from a second attempt that computed something else
    added = set(emg.store.iter_oids()) - before
    named = {emg.index.runs()[-1].items}
    for record in emg.index.records("FeFiltered"):
        named |= {record.oid, record.call} | _oids_in(emg.store.get_value(record.call))
    assert len(added) >= 12 and added <= named
    again = run_bandpass(executor=retrying)
    assert (again.ran, again.cached) == (0, 6)


def _oids_in(tree) -> set[str]:
    """Every oid-shaped string inside a decoded record."""
    if isinstance(tree, dict):
        return set().union(*(_oids_in(v) for v in tree.values()))
    if isinstance(tree, list):
        return set().union(*(_oids_in(v) for v in tree))
    is_oid = isinstance(tree, str) and len(tree) == 64 and all(c in "0123456789abcdef" for c in tree)
    return {tree} if is_oid else set()


@pytest.fixture(scope="module")
def dask_client():
    import dask.distributed as distributed  # in the test extras: a missing one fails
    saved = os.environ.get("PYTHONPATH")
    os.environ["PYTHONPATH"] = os.pathsep.join(p for p in [ROOT, saved] if p)  # workers import tests.*
    try:
        cluster = distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                                           dashboard_address=None, silence_logs=logging.ERROR)
        client = distributed.Client(cluster)
        try:
            yield client
        finally:
            client.close()
            cluster.close()
    finally:
        if saved is None:
            os.environ.pop("PYTHONPATH", None)
        else:
            os.environ["PYTHONPATH"] = saved


def test_dask_local_cluster_runs_the_same_call(emg, dask_client):
    executor = dask_client.get_executor()
    report = for_each(fns.with_pid, inputs={"signal": FeRawEMG}, outputs=[FeFiltered, FeWorkerPid],
                      subject=SUBJECTS, session=SESSIONS, executor=executor, chunk_size=2, progress=False)
    assert (report.ran, report.failed) == (6, 0), report.summary()
    worker_pids = set(dask_client.run(os.getpid).values())
    pids = {FeWorkerPid.load(subject=s, session=se).data for s in SUBJECTS for se in SESSIONS}
    assert pids <= worker_pids and os.getpid() not in pids
    np.testing.assert_array_equal(FeFiltered.load(subject=3, session="pre").data, raw_signal(3, "pre") * 2)
    assert versions(FeFiltered, subject=3, session="pre") == [1]
    prov = emg.get_provenance(FeFiltered, subject=3, session="pre")
    assert prov["function_name"] == "with_pid" and prov["env"]["python"]
    assert prov["inputs"]["signal"]["addr"] == {"subject": 3, "session": "pre"}
    report = run_bandpass(executor=executor)
    assert report.ran == 6
    _assert_bandpass_results()
    again = run_bandpass(executor=executor)
    assert (again.ran, again.cached) == (0, 6)


@pytest.fixture
def dask_to_kill(request):
    """A LocalCluster of its own (2 workers, 1 thread each, or `request.param`) for tests that
    kill its workers, which the nannies start again; it is not left to other tests. Its nannies
    wait 2 minutes for a dead worker (not 15 s) on a busy machine, where starting one can take 10 s."""
    import dask
    import dask.distributed as distributed
    saved = os.environ.get("PYTHONPATH")
    os.environ["PYTHONPATH"] = os.pathsep.join(p for p in [ROOT, saved] if p)  # workers import tests.*
    try:
        with dask.config.set({"distributed.deploy.lost-worker-timeout": "120s"}):
            with distributed.LocalCluster(n_workers=2, threads_per_worker=getattr(request, "param", 1),
                                          processes=True, dashboard_address=None,
                                          silence_logs=logging.CRITICAL) as cluster:
                with distributed.Client(cluster) as client:
                    yield client
    finally:
        if saved is None:
            os.environ.pop("PYTHONPATH", None)
        else:
            os.environ["PYTHONPATH"] = saved


@pytest.mark.parametrize("dask_to_kill", [1, 2], indirect=True, ids=["1-thread", "2-threads"])
def test_a_dask_worker_that_dies_fails_only_its_combination(emg, tmp_path, dask_to_kill):
    """Dask ran a task whose worker died on up to three more workers, each death failing
    every task queued on that worker too: one combination that killed its worker failed
    innocent ones with KilledWorker, and a run could wait for ever once the cluster had
    closed the workers that kept dying. Now an attempt does not run again what an earlier
    attempt's worker died running (one death each), that combination fails saying so and
    what to do, and every other one runs and is saved, also those in its chunk. A worker with
    two threads ran something else as well: what it was running is run again alone."""
    threads = max(dask_to_kill.nthreads().values())
    report = _dies_at_two(tmp_path, "kill", executor=dask_to_kill.get_executor(), chunk_size=2)
    failed = {(f.combo["subject"], f.combo["session"]): f.error for f in report.failures}
    assert set(failed) == {(2, "pre"), (2, "post")}, report.summary()
    how = "in a worker process that ran nothing else" if threads == 1 else "when it ran alone on the cluster"
    assert all(f"Dask worker process running dies_at_two on this combination died, {how}" in e
               and "without executor=" in e and "memory" in e for e in failed.values()), failed
    deaths = 2 if threads == 1 else 4  # (each killed one worker; with two threads, once more alone)
    assert report.ran == 4 and (tmp_path / "deaths").read_text() == "died\n" * deaths
    assert sorted(r.data[0] for r in FeFiltered.load_all()) == [20.0, 21.0, 60.0, 61.0]


def _quick_run(project, tmp_path, client, die_at, n=12):
    """`fns.dies_at` on subjects 1..n (session "pre") in one chunk on the cluster."""
    with project.batch():
        for subject in range(1, n + 1):
            FeRawEMG.save(raw_signal(subject, "pre"), subject=subject, session="pre")
    return for_each(fns.dies_at, inputs={"signal": FeRawEMG, "log": str(tmp_path / "started"), "subject": die_at},
                    outputs=[FeFiltered], subject=list(range(1, n + 1)), session=["pre"],
                    executor=client.get_executor(), chunk_size=n, progress=False)


def test_a_dask_worker_notes_what_it_runs_once_per_window_not_per_combination(project, tmp_path, dask_to_kill):
    """Each combination was preceded by a round trip to the scheduler (set_metadata, 3-14 ms
    on a busy machine): cheap combinations on a cluster ran several times slower than without
    the note. Now a note names a window of the chunk's next combinations (growing while they
    are quick), so 40 quick ones take a handful of notes."""
    scheduler = dask_to_kill.cluster.scheduler  # (a LocalCluster's runs in this process)
    original, notes = scheduler.handlers["set_metadata"], []

    @functools.wraps(original)  # (the scheduler reads the handler's signature)
    def counted(*args, **kwargs):
        notes.append(tuple(kwargs.get("keys") or ()))
        return original(*args, **kwargs)

    scheduler.handlers["set_metadata"] = counted
    try:
        report = _quick_run(project, tmp_path, dask_to_kill, die_at=0, n=40)
    finally:
        scheduler.handlers["set_metadata"] = original
    assert (report.ran, report.failed) == (40, 0), report.summary()
    running = [k for k in notes if k[1:2] == ("scistack-running",)]
    assert 1 <= len(running) <= 15, len(running)


def test_a_dask_worker_killed_inside_a_window_of_quick_combinations_fails_only_the_culprit(project, tmp_path,
                                                                                           dask_to_kill):
    """The note names several quick combinations at once: a worker that dies running one of
    them does not say which, so each is run again alone, and only the one that kills its
    worker then fails; the others (also those that had ended before it) are saved."""
    report = _quick_run(project, tmp_path, dask_to_kill, die_at=6)
    failed = {f.combo["subject"]: f.error for f in report.failures}
    assert set(failed) == {6}, report.summary()
    assert "Dask worker process running dies_at on this combination died" in failed[6]
    assert report.ran == 11
    assert sorted(r.data[0] for r in FeFiltered.load_all()) == [20.0 * s + 1.0 for s in range(1, 13) if s != 6]
    starts = (tmp_path / "started").read_text().split()
    assert starts.count("6") <= 2 and all(starts.count(str(s)) >= 1 for s in range(1, 13))


def _scheduler_notes(scheduler, refuse=lambda window: False):
    """The notes of what a worker runs ((task key, window) each) the scheduler of a
    LocalCluster (in this process) receives from now on; those `refuse(window)` says are
    refused (the scheduler raises, as a busy or unreachable one fails a note), also recorded.
    Returns the notes and what puts the scheduler's own handler back."""
    original, notes = scheduler.handlers["set_metadata"], []

    @functools.wraps(original)  # (the scheduler reads the handler's signature)
    def noted(*args, **kwargs):
        keys = tuple(kwargs.get("keys") or ())
        if keys[1:2] == ("scistack-running",):
            window = list(kwargs["value"][0])
            notes.append((keys[0], window))
            if refuse(window):
                raise RuntimeError("note refused (test)")
        return original(*args, **kwargs)

    scheduler.handlers["set_metadata"] = noted
    return notes, lambda: scheduler.handlers.__setitem__("set_metadata", original)


@pytest.mark.parametrize("dask_to_kill", [1, 2], indirect=True, ids=["1-thread", "2-threads"])
def test_a_dask_worker_killed_inside_a_large_window_costs_one_more_round_not_one_per_suspect(
        project, tmp_path, dask_to_kill):
    """A death inside a window of many quick combinations made each of them a suspect, run
    again alone in a Dask round of its own: up to 64 rounds, 5-11 s for a death where a note
    per combination had taken 1.5-3. The suspects now run again together, in one chunk with
    a note before each combination, so the next death names the culprit: one more round,
    and the culprit kills one more worker at most; only it fails."""
    notes, restore = _scheduler_notes(dask_to_kill.cluster.scheduler)
    try:
        report = _quick_run(project, tmp_path, dask_to_kill, die_at=45, n=60)
    finally:
        restore()
    failed = {f.combo["subject"]: f.error for f in report.failures}
    assert set(failed) == {45} and report.ran == 59, report.summary()
    assert "Dask worker process running dies_at on this combination died" in failed[45]
    assert sorted(r.data[0] for r in FeFiltered.load_all()) == [20.0 * s + 1.0 for s in range(1, 61) if s != 45]
    chunk = notes[0][0]
    died_in = [w for key, w in notes if key == chunk and 44 in w][-1]  # (index 44: subject 45)
    assert len(died_in) > 1 or max(dask_to_kill.nthreads().values()) > 1, died_in  # (a window of suspects)
    assert len({key for key, _ in notes}) == 2, {key for key, _ in notes}  # the chunk, then the suspects
    assert (tmp_path / "started").read_text().split().count("45") == 2


def test_a_dask_worker_runs_nothing_under_a_note_the_scheduler_refused(project, tmp_path, dask_to_kill):
    """A note the scheduler refused left the previous one in place, naming combinations
    that had ended: a death then blamed the one a one-thread worker had noted before (it
    failed, innocent). A refused note is sent again; still refused, the chunk runs no more,
    and what it did not run is run again in another round; a scheduler that keeps refusing
    leaves it "not run" (skipped, not failed)."""
    def refusing(index, times):  # the first `times` notes naming combination `index` are refused
        refusals = []

        def refuse(window):
            if index in window and len(refusals) < times:
                refusals.append(window)
                return True
            return False
        return refuse, refusals

    def run(die_at, n, refuse):
        notes, restore = _scheduler_notes(dask_to_kill.cluster.scheduler, refuse)
        try:
            report = _quick_run(project, tmp_path, dask_to_kill, die_at=die_at, n=n)
        finally:
            restore()
        failed = {f.combo["subject"]: f.error for f in report.failures}
        return report, failed, {key for key, _ in notes}

    refuse, refusals = refusing(1, 1)  # (subject 2, after subject 1 was noted alone)
    report, failed, chunks = run(2, 4, refuse)
    assert set(failed) == {2} and report.ran == 3, report.summary()
    assert "in a worker process that ran nothing else" in failed[2] and len(refusals) == 1
    # (1 and 2 share a window when 2 starts within 100 ms of 1's note, as on a busy machine:
    # then the suspects' chunk is a second; either way the refused note stopped nothing)
    assert len(chunks) <= 2 and (tmp_path / "started").read_text().split().count("2") <= 2

    refuse, refusals = refusing(5, 3)  # (subject 6: every try; a new die_at, a new call for each subject)
    report, failed, chunks = run(6, 8, refuse)
    assert set(failed) == {6} and report.ran == 7, report.summary()
    assert len(refusals) == 3 and len(chunks) >= 2  # (the chunk stopped; the rest ran in a round of its own)
    starts = (tmp_path / "started").read_text().split()
    assert starts.count("6") <= 2, starts

    report, failed, chunks = run(6, 8, bool)  # (subject 6 alone to run: every note refused)
    assert (report.cached, report.failed) == (7, 0), report.summary()
    item = next(i for i in report.items if i.combo["subject"] == 6)
    assert item.status == "skipped" and "kept refusing" in item.error and "run for_each again" in item.error
    assert (tmp_path / "started").read_text().split() == starts  # (not run under no note)


def test_a_dask_worker_closed_on_purpose_fails_nothing(emg, tmp_path, dask_to_kill):
    """A worker the cluster closes while it runs a combination (retired, scaled down) did not
    die of it: Dask runs the task again elsewhere without counting it, and so does the note
    of what it ran (which had failed that combination as the one that killed its worker)."""
    import threading

    log = tmp_path / "started"
    reports = []
    run = threading.Thread(target=lambda: reports.append(for_each(
        fns.naps, inputs={"signal": FeRawEMG, "log": str(log), "seconds": 1.5}, outputs=[FeFiltered],
        subject=SUBJECTS, session=SESSIONS, executor=dask_to_kill.get_executor(), chunk_size=1,
        progress=False)), daemon=True)
    run.start()
    while not (log.exists() and log.read_text().count("started") >= 2):  # (one in each worker)
        time.sleep(0.05)
    busy = [w for w, keys in dask_to_kill.processing().items() if keys]
    dask_to_kill.retire_workers(busy[:1], close_workers=True)
    run.join(timeout=120)
    assert reports and (reports[0].ran, reports[0].failed) == (6, 0), reports and reports[0].summary()
    _assert_bandpass_results(low_hz=2)


def test_a_dask_cluster_that_lost_every_worker_is_not_waited_for_ever(emg, dask_to_kill, monkeypatch):
    """A LocalCluster closes a worker not back within its lost-worker-timeout (one that keeps
    dying, on a busy machine, may not be): with none left, the run had waited for ever. A
    cluster that had workers and has had none for a while is given up on: what did not run is
    "not run" (skipped, not failed), saying why and what to do."""
    import threading
    from scistack.foreach import engine

    monkeypatch.setattr(engine, "_NO_WORKERS_S", 1.0, raising=False)
    monkeypatch.setattr(engine, "_WAIT_S", 0.2, raising=False)
    reports = []
    run = threading.Thread(target=lambda: reports.append(for_each(
        fns.slow_double, inputs={"signal": FeRawEMG, "delay": 1.0}, outputs=[FeFiltered], subject=SUBJECTS,
        session=SESSIONS, executor=dask_to_kill.get_executor(), chunk_size=1, progress=False)), daemon=True)
    run.start()
    while not any(dask_to_kill.processing().values()):
        time.sleep(0.05)
    dask_to_kill.cluster.scale(0)
    run.join(timeout=120)
    assert reports, "for_each still waits for a cluster without workers"
    report = reports[0]
    not_run = [i for i in report.items if i.status == "skipped"]
    assert not_run and report.failed == 0 and report.ran + len(not_run) == 6, report.summary()
    assert all(i.error.startswith("not run: the Dask cluster has had no workers for") and "lost-worker-timeout"
               in i.error and "run for_each again" in i.error for i in not_run), not_run[0].error


def test_a_lazy_value_computes_on_a_dask_cluster(project, dask_client):
    # a lazy array or table did not pickle (the store held thread-locals), so `.to_dask()`
    # worked only on dask's local scheduler, never on a cluster's workers
    from scistack.objects.chunking import set_chunking

    signal = np.arange(4000.0).reshape(500, 8)
    frame = pd.DataFrame({"t": np.arange(3000.0), "force": np.arange(3000) % 7})
    set_chunking(threshold=1000, chunk_bytes=4000)
    try:
        FeRawEMG.save(signal, subject=1, session="pre")
        FeStats.save(frame, subject=1, session="pre")
    finally:
        set_chunking()
    lazy = FeRawEMG.load(subject=1, session="pre", lazy=True).data
    assert dask_client.compute(lazy.to_dask()[:, 3].sum()).result() == signal[:, 3].sum()
    table = FeStats.load(subject=1, session="pre", lazy=True).data
    assert table.row_groups > 1
    assert dask_client.compute(table.to_dask()["force"].sum()).result() == frame["force"].sum()
    assert lazy.chunks_read == 0  # the workers read the chunks, from the project's store


def test_a_lineage_method_is_cached_per_object_and_runs_in_workers(emg):
    # `@lineage_fcn` on a method bound `self` as an input: every call and every for_each
    # failed (a P object cannot be stored)
    signal = FeRawEMG.load(subject=1, session="pre")
    two = fns.Gain(2).apply(signal)
    assert not two.cached and np.array_equal(two.data, raw_signal(1, "pre") * 2)
    assert fns.Gain(2).apply(signal).cached and not fns.Gain(3).apply(signal).cached
    report = for_each(fns.Gain(4).apply, inputs={"signal": FeRawEMG}, outputs=[FeFiltered],
                      subject=[1, 2], session=["pre"], workers=2, progress=False)
    assert (report.ran, report.failed) == (2, 0), report.summary()
    np.testing.assert_array_equal(FeFiltered.load(subject=2, session="pre").data, raw_signal(2, "pre") * 4)
    again = for_each(fns.Gain(4).apply, inputs={"signal": FeRawEMG}, outputs=[FeFiltered],
                     subject=[1, 2], session=["pre"], progress=False)
    assert again.cached == 2



def test_a_callable_object_and_a_partial_run_in_workers(emg):
    # a callable object travelled to the workers "by reference" with an empty name, which no
    # worker could restore: the pool broke and every combination failed (BrokenProcessPool)
    for fn, k in ((fns.Scale(3), 3), (functools.partial(fns.scale_by, k=5), 5)):
        report = for_each(fn, inputs={"signal": FeRawEMG}, outputs=[FeFiltered],
                          subject=[1, 2], session=["pre"], workers=2, progress=False)
        assert (report.ran, report.failed) == (2, 0), report.summary()
        np.testing.assert_array_equal(FeFiltered.load(subject=2, session="pre").data, raw_signal(2, "pre") * k)



def test_a_function_given_as_a_constant_counts_by_its_code(emg):
    """`inputs={"fn": np.sqrt}` was refused ("cannot store a value of type numpy.ufunc ...
    e.g. a dict of its fields") although the same function as a default argument worked: it
    is bound into the step now, and its code identity keys the call, as a default's does."""
    from scistack import why
    from scistack.errors import UnsupportedValueError

    def run(fn, workers=None):
        return for_each(fns.apply_fn, inputs={"signal": FeRawEMG, "fn": fn}, outputs=[FeFiltered],
                        subject=[1, 2], session=["pre"], workers=workers, progress=False)

    first = run(np.sqrt)
    assert (first.ran, first.failed, first.function) == (2, 0, "apply_fn"), first.summary()
    np.testing.assert_array_equal(FeFiltered.load(subject=2, session="pre").data, np.sqrt(raw_signal(2, "pre")))
    assert run(np.sqrt).cached == 2 and run(np.log).ran == 2  # another function: another call
    assert (run(fns.halve, workers=2).ran, run(fns.halve).cached) == (2, 2)
    np.testing.assert_array_equal(FeFiltered.load(subject=2, session="pre").data, raw_signal(2, "pre") / 2)
    assert why(FeFiltered, subject=2, session="pre").status == "current"
    # its default's values are still current in this process (the bound step, by the same
    # name, had replaced the plain one `why` finds)
    for_each(fns.apply_fn, inputs={"signal": FeRawEMG}, outputs=[FeCentred], subject=[1], session=["pre"],
             progress=False)
    run(np.log)
    assert why(FeCentred, subject=1, session="pre").status == "current"
    with pytest.raises(UnsupportedValueError, match=r"a for_each constant \(inputs=\{\"fn\": np.sqrt\}\)"):
        lineage_fcn(fns.apply_fn)(FeRawEMG.load(subject=1, session="pre"), np.log)


@pytest.mark.parametrize("workers", [None, 2])
def test_a_variable_loaded_inside_a_cached_function_is_refused_by_name(emg, workers):
    """The function loaded a calibration itself: after the calibration changed, a rerun was a
    cache hit serving the result computed from the old one."""
    fns.FnsCalibration.save(2.0, subject=1, session="pre")
    report = for_each(fns.calibrated, inputs={"signal": FeRawEMG}, outputs=[FeFiltered], subject=[1],
                      session=["pre"], workers=workers, progress=False)
    assert (report.ran, report.failed) == (0, 1)
    assert report.failures[0].error.startswith(
        "LineageError: FnsCalibration.load() inside calibrated, whose calls scistack caches")
    assert "Pass FnsCalibration as an input instead" in report.failures[0].error
    assert FeFiltered.load_all() == []
    assert fns.FnsCalibration.load(subject=1, session="pre").data == 2.0  # outside a call: as ever
    thunk = lineage_fcn(lambda signal: scistack.join(FeRawEMG, fns.FnsCalibration))
    with pytest.raises(LineageError, match=r"scistack.join\(FeRawEMG, FnsCalibration\) inside <lambda>"):
        thunk(FeRawEMG.load(subject=1, session="pre"))



def test_a_save_inside_a_cached_function_warns_once_that_a_cache_hit_skips_it(emg):
    """A step that saved another variable itself: a cache hit skipped that save, so after an edit
    and its undo the variable kept the other code's values, silently."""
    def step(signal):
        FeCentred.save(signal - 1, subject=1, session="pre")
        FeCentred.save(signal - 2, subject=1, session="pre")
        return signal

    with pytest.warns(UserWarning, match=r"FeCentred.save\(\) inside step, whose calls scistack caches") as seen:
        for_each(step, inputs={"signal": FeRawEMG}, outputs=[FeFiltered], subject=[1], session=["pre"],
                 progress=False)
    assert len([w for w in seen if "inside step" in str(w.message)]) == 1  # once, not per save
    assert seen[0].filename == __file__                                    # at the user's line
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        FeCentred.save(np.ones(2), subject=2, session="pre")              # outside a call: quiet


def test_a_for_each_inside_a_cached_function_is_refused(emg):
    """A cached function running a pipeline step itself: a cache hit of it skipped the step,
    and its key could not see the variables the step loaded (stale after they changed)."""
    def step(signal):
        for_each(fns.scale_by, inputs={"signal": FeRawEMG, "k": 2}, outputs=[FeFiltered],
                 subject=[1], session=["pre"], progress=False)
        return signal

    with pytest.raises(LineageError, match=r"for_each\(scale_by\) inside step, whose calls scistack caches"
                                           r".*top level of your script"):
        lineage_fcn(step)(FeRawEMG.load(subject=1, session="pre"))
    assert FeFiltered.load_all() == []
    report = for_each(step, inputs={"signal": FeRawEMG}, outputs=[FeFiltered], subject=[1],
                      session=["pre"], progress=False)
    assert (report.ran, report.failed) == (0, 1)
    assert "for_each(scale_by) inside step" in report.failures[0].error


@pytest.mark.parametrize("workers", [None, 2])
def test_functions_taking_their_input_by_position_only(emg, workers):
    """`np.sqrt` (x, /), `abs`, `def f(x, /)` got their inputs by name and failed at every
    combination (a ufunc also got its keyword defaults, which it refuses given together)."""
    for fn, name, expected in ((np.sqrt, "x", np.sqrt), (fns.halve, "signal", lambda x: x / 2), (abs, "x", abs)):
        report = for_each(fn, inputs={name: FeRawEMG}, outputs=[FeFiltered], subject=[1, 2], session=["pre"],
                          workers=workers, progress=False)
        assert (report.ran, report.failed) == (2, 0), report.summary()
        np.testing.assert_array_equal(FeFiltered.load(subject=2, session="pre").data, expected(raw_signal(2, "pre")))


def _total(*signals, **opts):
    return float(sum(np.sum(s) for s in signals)) * opts.get("scale", 1)


def _total_only(*signals):
    return float(sum(np.sum(s) for s in signals))


def _scaled_sum(signal, /, **opts):
    return float(np.sum(signal)) * opts["scale"]


def _tens(a=1, b=2, /):
    return a * 10 + b


def test_an_input_named_after_args_or_kwargs_is_refused_before_anything_runs(emg):
    """`inputs={"signals": FeRawEMG}` for `def f(*signals, **opts)` went by keyword into
    `opts`, `signals` stayed empty and 0.0 was saved with no error; without `**opts` every
    combination failed with a raw TypeError. Naming `**opts` itself gave `opts={"opts": X}`."""
    journal = journal_size(emg)
    cases = ((_total, {"signals": FeRawEMG, "scale": 2}, r"inputs\['signals'\]: signals is _total's \*signals "
              r"parameter.*named parameter"),
             (_total_only, {"signals": FeRawEMG}, r"\*signals parameter"),
             (_total, {"opts": FeRawEMG}, r"inputs\['opts'\]: opts is _total's \*\*opts parameter.*name each one"))
    for fn, inputs, message in cases:
        with pytest.raises(InvalidMetadataError, match=message):
            for_each(fn, inputs=inputs, outputs=[FeStats], subject=[1], session=["pre"], progress=False)
    assert journal_size(emg) == journal  # nothing ran, nothing saved
    # what does work: a positional-only input beside **opts, and one after a skipped default
    report = for_each(_scaled_sum, inputs={"signal": FeRawEMG, "scale": 2}, outputs=[FeStats], subject=[1],
                      session=["pre"], progress=False)
    assert (report.ran, report.failed) == (1, 0), report.summary()
    assert FeStats.load(subject=1, session="pre").data == 2 * raw_signal(1, "pre").sum()
    for_each(_tens, inputs={"b": 5}, outputs=[FeMeanEMG], subject=[1], session=["pre"], progress=False)
    assert FeMeanEMG.load(subject=1, session="pre").data == 15


def test_table_mode_refuses_an_input_named_after_args_too(table_schema):
    frame = pd.DataFrame({"subject": [1], "session": ["pre"], "data": [2.0]})
    with pytest.raises(InvalidMetadataError, match=r"signals is _total's \*signals parameter"):
        for_each(_total, inputs={"signals": frame, "scale": 2}, subject=[1], session=["pre"])
    assert for_each(_scaled_sum, inputs={"signal": frame, "scale": 2}, subject=[1], session=["pre"])["result"].tolist() == [4.0]


def test_async_and_generator_functions_are_refused_with_the_way_out(emg):
    async def fetch(signal):
        return signal

    def chunks(signal):
        yield signal

    with pytest.raises(LineageError, match=r"fetch is an async function.*asyncio.run"):
        for_each(fetch, inputs={"signal": FeRawEMG}, outputs=[FeFiltered], subject=[1], session=["pre"])
    with pytest.raises(LineageError, match=r"chunks is a generator function.*list\(chunks"):
        lineage_fcn(chunks)


def test_an_output_deleted_and_restored_from_the_cache_keeps_its_summary(emg):
    """The cache restores a deleted output without computing; its record had an empty summary
    (`data=` in its repr, blank in `log`, `ls` and the views' summary column)."""
    run_bandpass(low_hz=20)
    shown = FeFiltered.load(subject=1, session="pre").record.summary
    FeFiltered.delete(subject=1, session="pre")
    assert run_bandpass(low_hz=20).cached == 6
    restored = FeFiltered.load(subject=1, session="pre")
    assert restored.record.summary == shown == "float64[8]"
    assert "data=float64[8]" in repr(restored)


def _with_a_large_array(signal):
    return {"large": np.arange(140_000.0) + float(signal[0]), "n": len(signal)}  # (> 1 MB: loose)


def test_a_cached_dict_whose_array_is_gone_is_computed_again_not_named_half(project):
    """A cached result restored at its address is freshened first and, found gone, computed
    again; only the dict and the call record were asked, so a dict whose array a gc (or damage)
    had taken was named without it, and every load of it failed."""
    from scistack.objects.codec import child_oids

    FeRawEMG.save(np.arange(4.0), subject=1, session="pre")

    def run():
        return for_each(_with_a_large_array, inputs={"signal": FeRawEMG}, outputs=[FeStats], subject=[1],
                        session=["pre"], progress=False)

    run()
    made = FeStats.load(subject=1, session="pre").oid
    (large,) = [oid for oid, _ in child_oids("json", project.store.get(made).payload)]
    FeStats.save(np.zeros(2), subject=1, session="pre")  # saved over it: the cached result is not current
    path = project.store.path_of(large)
    os.chmod(path, 0o644)
    os.unlink(path)
    report = run()
    assert (report.ran, report.cached) == (1, 0)
    assert FeStats.load(subject=1, session="pre").data["large"][:3].tolist() == [0.0, 1.0, 2.0]


# -- edits: what re-runs, what becomes the default --------------------------------------------
def test_editing_a_constant_reruns_everything_it_affects_and_keeps_old_results(emg):
    run_bandpass(low_hz=20)
    report = run_bandpass(low_hz=30)
    assert (report.ran, report.cached) == (6, 0)
    current = FeFiltered.load(subject=1, session="pre")  # plain load: one value, not ambiguous
    assert not isinstance(current, list) and current.version == 2
    np.testing.assert_array_equal(current.data, raw_signal(1, "pre") * 30)
    np.testing.assert_array_equal(FeFiltered.load(subject=1, session="pre", version=1).data,
                                  raw_signal(1, "pre") * 20)
    np.testing.assert_array_equal(FeFiltered.load(subject=1, session="pre", low_hz=20).data,
                                  raw_signal(1, "pre") * 20)
    assert len(FeFiltered.load(subject=1)) == 2  # one per session, newest each
    back = run_bandpass(low_hz=20)             # going back is a cache hit, and the default again
    assert (back.ran, back.cached) == (0, 6)
    np.testing.assert_array_equal(FeFiltered.load(subject=1, session="pre").data, raw_signal(1, "pre") * 20)
    assert run_bandpass(low_hz=20).cached == 6
    assert versions(FeFiltered, subject=1, session="pre") == [1, 2, 3]


def test_editing_one_input_reruns_exactly_that_combination(emg):
    run_bandpass()
    FeRawEMG.save(raw_signal(2, "post") + 100, subject=2, session="post")
    report = run_bandpass()
    assert (report.ran, report.cached) == (1, 5)
    assert [i.combo for i in report.items if i.status == "ran"] == [{"subject": 2, "session": "post"}]
    np.testing.assert_array_equal(FeFiltered.load(subject=2, session="post").data,
                                  (raw_signal(2, "post") + 100) * 20)


def test_a_rerun_mixing_cached_changed_and_overwritten_combinations(emg):
    """Plainly cached combinations are recognised in bulk; the rest (a changed input, an output
    saved over by hand, a missing input) take the general path, and the report keeps the order
    of the combinations."""
    run_bandpass()
    FeRawEMG.save(raw_signal(1, "post") + 1, subject=1, session="post")  # changed input: runs
    FeFiltered.save(np.zeros(3), subject=2, session="pre")  # output overwritten: restored, cached
    FeRawEMG.delete(subject=3, session="pre")  # missing input
    report = run_bandpass()
    assert [(i.combo["subject"], i.combo["session"], i.status) for i in report.items] == [
        (1, "pre", "cached"), (1, "post", "ran"), (2, "pre", "cached"), (2, "post", "cached"),
        (3, "pre", "missing"), (3, "post", "cached")]
    np.testing.assert_array_equal(FeFiltered.load(subject=2, session="pre").data, raw_signal(2, "pre") * 20)
    np.testing.assert_array_equal(FeFiltered.load(subject=1, session="post").data,
                                  (raw_signal(1, "post") + 1) * 20)


def test_identical_inputs_at_two_addresses_stay_cached(project):
    for session in SESSIONS:
        FeRawEMG.save(np.ones(4), subject=1, session=session)
    first = run_bandpass(subject=[1])  # one call: the second address is served what it made
    assert (first.ran, first.cached) == (1, 1)
    for _ in range(2):
        assert run_bandpass(subject=[1]).cached == 2
    for session in SESSIONS:
        assert versions(FeFiltered, subject=1, session=session) == [1]
        prov = project.get_provenance(FeFiltered, subject=1, session=session)
        assert prov["inputs"]["signal"]["addr"] == {"subject": 1, "session": session}


@pytest.mark.parametrize("workers", [None, 2])
def test_the_same_values_at_several_addresses_are_computed_once_in_a_run(project, workers):
    """Three sessions holding the same raw values: one call runs (in a worker too), the other
    two are served what it made, each recorded with its own inputs (all three had run)."""
    for session in ("pre", "post", "mid"):
        FeRawEMG.save(np.ones(4) * (7.0 if session == "mid" else 1.0), subject=1, session=session)
    report = for_each(fns.with_pid, inputs={"signal": FeRawEMG}, outputs=[FeFiltered, FeWorkerPid],
                      subject=[1], session=["pre", "post", "mid"], workers=workers, progress=False)
    assert (report.ran, report.cached) == (2, 1), report.summary()
    pids = {FeWorkerPid.load(subject=1, session=s).data for s in ("pre", "post")}
    assert len(pids) == 1  # computed once, in one process
    for session in ("pre", "post", "mid"):
        prov = project.get_provenance(FeFiltered, subject=1, session=session)
        assert prov["inputs"]["signal"]["addr"] == {"subject": 1, "session": session}
    assert {i.combo["session"]: i.status for i in report.items}["post"] == "cached"


def test_ignored_parameter_is_passed_but_not_recorded(emg):
    noisy = lineage_fcn(fns.noisy, ignore=("verbose",))
    report = for_each(noisy, inputs={"signal": FeRawEMG, "verbose": True}, outputs=[FeFiltered],
                      subject=[1], session=SESSIONS, progress=False)
    assert report.ran == 2
    assert for_each(noisy, inputs={"signal": FeRawEMG, "verbose": False}, outputs=[FeFiltered],
                    subject=[1], session=SESSIONS, progress=False).cached == 2
    assert "verbose" not in emg.get_provenance(FeFiltered, subject=1, session="pre")["constants"]


def test_defaults_are_bound_like_constants(emg):
    report = for_each(fns.amplify, inputs={"signal": FeRawEMG}, outputs=[FeFiltered],
                      subject=[1], session=SESSIONS, progress=False)
    assert report.ran == 2
    assert len(FeFiltered.load(gain=2.0)) == 2
    assert emg.get_provenance(FeFiltered, subject=1, session="pre")["constants"] == {"gain": 2.0}
    direct = lineage_fcn(fns.amplify)(FeRawEMG.load(subject=1, session="pre"))
    assert direct.cached  # for_each and a direct call make the same call key
    explicit = for_each(fns.amplify, inputs={"signal": FeRawEMG, "gain": 2.0}, outputs=[FeFiltered],
                        subject=[1], session=SESSIONS, progress=False)
    assert explicit.cached == 2


def test_returning_none_saves_nothing(project):
    FeRawEMG.save(np.ones(3), subject=1, session="pre")
    FeRawEMG.save(np.ones(6), subject=1, session="post")
    report = for_each(fns.none_for_short, inputs={"signal": FeRawEMG}, outputs=[FeFiltered],
                      subject=[1], session=SESSIONS, progress=False)
    assert Counter(i.status for i in report.items) == {"skipped": 1, "ran": 1}
    assert FeFiltered.load(subject=1, session="post").data.shape == (6,)


def test_ctrl_c_keeps_what_ran_and_records_the_run(project):
    """A KeyboardInterrupt mid-run: the values done are saved, `scistack runs` shows the run
    as far as it got (the rest skipped), and the interrupt still stops the script."""
    for subject in range(5):
        FeRawEMG.save(np.ones(3) * subject, subject=subject, session="pre")

    @lineage_fcn
    def stops_at_three(signal):
        if signal[0] == 3:
            raise KeyboardInterrupt
        return signal * 2

    with pytest.raises(KeyboardInterrupt):
        for_each(stops_at_three, inputs={"signal": FeRawEMG}, outputs=[FeFiltered], subject=range(5),
                 session=["pre"], progress=False)
    assert len(FeFiltered.load_all()) == 3
    (run,) = project.index.runs()
    assert {k: n for k, n in run.counts.items() if n} == {"ran": 3, "skipped": 2}


def test_without_outputs_calls_are_still_cached(emg):
    first = for_each(fns.bandpass, inputs={"signal": FeRawEMG, "low_hz": 5}, subject=[1], session=SESSIONS,
                     progress=False)
    assert isinstance(first, RunReport) and first.ran == 2
    again = for_each(fns.bandpass, inputs={"signal": FeRawEMG, "low_hz": 5}, subject=[1], session=SESSIONS,
                     progress=False)
    assert (again.ran, again.cached) == (0, 2)
    assert run_bandpass(low_hz=5, subject=[1]).cached == 2  # and later saved from the cache


def test_bad_arguments_are_refused_with_a_hint(emg):
    with pytest.raises(InvalidMetadataError, match="on_error"):
        run_bandpass(on_error="ignore")
    with pytest.raises(InvalidMetadataError, match="schema"):
        run_bandpass(trial=[1])
    with pytest.raises(InvalidMetadataError, match="variable classes"):
        for_each(fns.bandpass, inputs={"signal": FeRawEMG, "low_hz": 1}, outputs=["FeFiltered"], subject=[1])
    with pytest.raises(InvalidMetadataError, match="low_hz"):
        for_each(fns.bandpass, inputs={"signal": FeRawEMG}, outputs=[FeFiltered], subject=[1])
    with pytest.raises(InvalidMetadataError, match="highpass"):
        for_each(fns.bandpass, inputs={"signal": FeRawEMG, "low_hz": 1, "highpass": 2}, outputs=[FeFiltered],
                 subject=[1])


def test_more_argument_checks(emg):
    with pytest.raises(InvalidMetadataError, match="twice"):
        for_each(fns.centre, inputs={"signal": FeRawEMG}, outputs=[FeCentred, FeCentred], subject=[1])
    with pytest.raises(InvalidMetadataError, match="not schema keys"):
        for_each(fns.minus_baseline, inputs={"signal": FeRawEMG, "baseline": Fixed(FeRawEMG, sesion="baseline")},
                 outputs=[FeFiltered], subject=[1], session=SESSIONS)
    with pytest.raises(InvalidMetadataError, match="chunk_size"):
        run_bandpass(workers=2, chunk_size=0)
    with pytest.raises(InvalidMetadataError, match="address values"):
        run_bandpass(subject=[1, None])
    with pytest.raises(InvalidMetadataError, match=r"pins several values.*Fixed\(FeRawEMG, session='pre'\)"):
        Fixed(FeRawEMG, session=["pre", "post"])  # each combination failed: "2 variants", both "version 1"
    # a loaded value, a name, or a class inside a list where a variable class is meant: each
    # raised AttributeError or TypeError from deep inside
    loaded = FeRawEMG.load(subject=1, session="pre")
    with pytest.raises(InvalidMetadataError, match=r"got a loaded value FeRawEMG\(.*give its class FeRawEMG"):
        Fixed(loaded, session="pre")
    with pytest.raises(InvalidMetadataError, match="Fixed takes a variable class .* got 'FeRawEMG'"):
        Fixed("FeRawEMG", session="pre")
    with pytest.raises(InvalidMetadataError, match="Merge takes variable classes, got a loaded value"):
        Merge(FeRawEMG, loaded)
    for wrong in ([FeRawEMG], None):  # AttributeError: 'list' object has no attribute 'items'
        with pytest.raises(InvalidMetadataError, match="inputs= takes a dict from each parameter"):
            for_each(fns.centre, inputs=wrong, outputs=[FeCentred], subject=[1], session=["pre"])
    with pytest.raises(InvalidMetadataError, match=r"signal = \[.*FeRawEMG.*\] holds a variable class inside a constant"):
        for_each(fns.centre, inputs={"signal": [FeRawEMG]}, outputs=[FeCentred], subject=[1], session=["pre"])


def test_an_output_that_is_also_an_input_is_refused(emg):
    """`inputs={"signal": FeRawEMG}, outputs=[FeRawEMG]` halved the signal again at every run,
    burying the raw data under versions, and was never cached."""
    journal = journal_size(emg)
    for spec in (FeRawEMG, Merge(FeFiltered, FeRawEMG)):
        with pytest.raises(InvalidMetadataError, match=r"FeRawEMG is both an input \(inputs\['signal'\]\) and an output"):
            for_each(fns.centre, inputs={"signal": spec}, outputs=[FeCentred, FeRawEMG], subject=[1],
                     session=["pre"], progress=False)
    assert journal_size(emg) == journal
    baseline = for_each(fns.minus_baseline, inputs={"signal": FeRawEMG, "baseline": Fixed(FeFiltered, session="pre")},
                        outputs=[FeFiltered], subject=[1], session=["post"], progress=False, dry_run=True)
    assert baseline.failed == 0  # an input pinned elsewhere (Fixed) may be the output variable


def test_workers_from_a_script_on_stdin_is_refused_before_anything_runs(kill_project, tmp_path):
    """Spawned workers run the main script again by its path; `python - < script` has none.
    Every combination had failed with BrokenProcessPool."""
    script = _KILL_SCRIPT.format(root=ROOT, db=str(kill_project.path), n=3, workers=2)
    done = subprocess.run([sys.executable, "-"], input=script, cwd=tmp_path, capture_output=True, text=True,
                          timeout=120)
    assert done.returncode != 0 and "finished" not in done.stdout
    assert "'<stdin>', not a file; save the script to a file" in done.stderr
    assert FeFiltered.load_all() == []



def test_a_function_workers_cannot_receive_is_refused_before_anything_runs(emg):
    """A lambda failed once per combination; nothing can run it in a worker, so it is refused."""
    journal = journal_size(emg)
    with pytest.raises(ForEachError, match=r"workers=2\): the worker processes cannot be sent <lambda>"):
        for_each(lambda signal: signal, inputs={"signal": FeRawEMG}, outputs=[FeFiltered], subject=[1],
                 session=["pre"], workers=2, progress=False)
    assert journal_size(emg) == journal


# a script run as a real process: the project, two variables, then its __main__ block
_SCRIPT_HEAD = """
import sys
sys.path[:0] = [{root!r}]
from scistack import BaseVariable, configure_database, for_each
from tests import foreach_fns
db = configure_database({db!r})
class FeRawEMG(BaseVariable): pass
class FeFiltered(BaseVariable): pass
if __name__ == "__main__":
"""
_GUARDED_SCRIPT = _SCRIPT_HEAD + """\
    def guarded(signal):  # workers import the script again without running this block
        return signal
    report = for_each(guarded, inputs={{"signal": FeRawEMG}}, outputs=[FeFiltered], subject=[0, 1],
                      session=["pre"], workers=2, chunk_size=1, progress=False)
    print(report.failed, report.failures[0].error if report.failures else "", flush=True)
    report = for_each(foreach_fns.bandpass, inputs={{"signal": FeRawEMG, "low_hz": 2}}, outputs=[FeFiltered],
                      subject=[0, 1], session=["pre"], workers=2, progress=False)
    print("then", report.ran, report.failed, flush=True)
"""


def test_a_function_only_the_main_block_defines_fails_its_combinations_by_name(kill_project, tmp_path):
    """The workers could not find it: each died unpickling it, the pool broke, and every
    combination failed with BrokenProcessPool, saying nothing of why."""
    script = tmp_path / "guarded.py"
    script.write_text(_GUARDED_SCRIPT.format(root=ROOT, db=str(kill_project.path)))
    done = subprocess.run([sys.executable, str(script)], cwd=tmp_path, capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0, done.stderr
    first, then = done.stdout.splitlines()
    assert first.startswith("2 AttributeError: Can't get attribute 'guarded'"), first
    assert 'outside any function and any `if __name__ == "__main__":` block' in first
    assert then == "then 2 0"
    assert "BrokenProcessPool" not in done.stderr


# -- a real SIGKILL ---------------------------------------------------------------------------
_KILL_SCRIPT = _SCRIPT_HEAD + """\
    for_each(foreach_fns.slow_double, inputs={{"signal": FeRawEMG, "delay": 0.01}}, outputs=[FeFiltered],
             subject=range({n}), session=["pre"], workers={workers}, chunk_size=25, progress=False)
    print("finished", flush=True)
"""
KILL_N = 300


@pytest.fixture
def kill_project(project):
    with project.batch():
        for subject in range(KILL_N):
            FeRawEMG.save(np.arange(10.0) + subject, subject=subject, session="pre")
    return project


def _start_run(db, env, tmp_path, workers=None, name="run") -> subprocess.Popen:
    """The run in a real process of its own session (its pool workers too), to be killed."""
    script = tmp_path / f"{name}.py"
    script.write_text(_KILL_SCRIPT.format(root=ROOT, db=str(db.path), n=KILL_N,
                                          workers=workers))
    return subprocess.Popen([sys.executable, str(script)], env=env, cwd=db.root, start_new_session=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _kill(proc: subprocess.Popen) -> str:
    """SIGKILL the run and every process it started; returns its stdout."""
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    out, _ = proc.communicate(timeout=30)
    return out


_CTRL_C_SCRIPT = _SCRIPT_HEAD + """\
    try:
        for_each(foreach_fns.nap_then_log, inputs={{"signal": FeRawEMG, "log": {log!r}, "seconds": {seconds}}},
                 outputs=[FeFiltered], subject=range({n}), session=["pre"], workers=2, chunk_size=2,
                 progress=False)
    except KeyboardInterrupt:
        print("interrupted", flush=True)
"""


def _lines(path: Path) -> list[str]:
    return path.read_text().splitlines() if path.exists() else []


def _wait_for_lines(path: Path, n: int, what: str) -> list[str]:
    """The lines of `path` once it has `n` (a generous bound for a busy machine)."""
    deadline = time.monotonic() + 120
    while len(_lines(path)) < n:
        assert time.monotonic() < deadline, f"{what}: {_lines(path)}"
        time.sleep(0.02)
    return _lines(path)


def test_ctrl_c_with_workers_saves_every_call_that_finished_and_stops_at_once(project, tmp_path, python_env):
    """A terminal's Ctrl-C (SIGINT to the process group) during a run with workers=2: the pool
    went on computing the chunks queued for its workers (shutdown waited for them) while the
    results of calls that had finished were thrown away (a chunk back after the interrupt, and
    the calls an interrupted chunk had finished). Now every call that finished is saved and
    in the run's record, and the run stops before the calls not yet run could have run."""
    n, seconds = 20, 1.0
    with project.batch():
        for subject in range(n):
            FeRawEMG.save(np.ones(3) * subject, subject=subject, session="pre")
    log = tmp_path / "done.log"
    script = tmp_path / "ctrl_c.py"
    script.write_text(_CTRL_C_SCRIPT.format(root=ROOT, db=str(project.path), log=str(log), seconds=seconds, n=n))
    proc = subprocess.Popen([sys.executable, str(script)], env=python_env, cwd=tmp_path, start_new_session=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    try:
        before = _wait_for_lines(log, 3, "the run did not start")
        os.killpg(proc.pid, signal.SIGINT)
        t0 = time.monotonic()
        out, err = proc.communicate(timeout=60)
        took = time.monotonic() - t0
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.communicate()
    assert "interrupted" in out, err[-3000:]
    # the calls not run yet needed (n - before) / 2 workers * seconds: it stopped well before
    assert took < (n - len(before)) / 2 * seconds, (took, len(before))
    finished = {float(line) for line in _lines(log)}
    assert len(finished) < n and {float(line) for line in before} <= finished
    project.index.refresh()
    saved = {float(r.data[0]) / 2 for r in FeFiltered.load_all()}  # (each value doubled)
    # every call finished before the signal is saved (one a worker the Ctrl-C did not reach
    # finished as it was ended may be lost, as after a kill)
    assert {float(line) for line in before} <= saved <= finished, (sorted(saved), before, sorted(finished))
    (run,) = project.index.runs()
    assert {k: c for k, c in run.counts.items() if c} == {"ran": len(saved), "skipped": n - len(saved)}


def test_ctrl_c_on_a_dask_executor_cancels_what_has_not_run(project, tmp_path, dask_to_kill):
    """A Ctrl-C during a run on a caller's Dask executor left every task it had submitted
    running on the cluster (nothing cancelled them, and their results were dropped). Now what
    has not run is cancelled, and what finished before is saved. A Ctrl-C reaches Python as
    SIGINT's handler: pytest-xdist's workers run with SIGINT ignored (a terminal's Ctrl-C is
    for the controller), where `interrupt_main` does nothing, and the run had ended whole ("DID
    NOT RAISE"); the handler a script has is put in place for the test."""
    import _thread
    import signal
    import threading

    was = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        _ctrl_c_on_a_dask_executor(project, tmp_path, dask_to_kill, _thread, threading)
    finally:
        signal.signal(signal.SIGINT, was)


def _ctrl_c_on_a_dask_executor(project, tmp_path, dask_to_kill, _thread, threading) -> None:
    n, seconds = 12, 1.0
    with project.batch():
        for subject in range(n):
            FeRawEMG.save(np.ones(3) * subject, subject=subject, session="pre")
    log = tmp_path / "done.log"
    seen: list[str] = []

    def interrupt_after_three() -> None:
        seen.extend(_wait_for_lines(log, 3, "the run did not start"))
        _thread.interrupt_main()  # (as a Ctrl-C reaches the main thread)

    watcher = threading.Thread(target=interrupt_after_three, daemon=True)
    watcher.start()
    with pytest.raises(KeyboardInterrupt):
        for_each(fns.nap_then_log, inputs={"signal": FeRawEMG, "log": str(log), "seconds": seconds},
                 outputs=[FeFiltered], subject=range(n), session=["pre"], executor=dask_to_kill.get_executor(),
                 chunk_size=1, progress=False)
    watcher.join(timeout=60)
    deadline = time.monotonic() + 120  # the cluster is idle once the calls it was running end
    while any(dask_to_kill.processing().values()):
        assert time.monotonic() < deadline, dask_to_kill.processing()
        time.sleep(0.05)
    finished = {float(line) for line in _lines(log)}
    assert len(finished) <= len(seen) + 2 < n, (sorted(finished), seen)  # (at most the two running went on)
    saved = {float(r.data[0]) / 2 for r in FeFiltered.load_all()}  # (each value doubled)
    # each call finished a call's time before the third line was written was back, and is saved
    assert {float(line) for line in seen[:-2]} <= saved <= finished
    (run,) = project.index.runs()
    assert {k: c for k, c in run.counts.items() if c} == {"ran": len(saved), "skipped": n - len(saved)}


def _assert_rerun_completes_exactly_what_is_missing(db) -> None:
    db.index.refresh()
    called = {c["key"] for c in db.index.calls()}  # every call entry here is slow_double's
    report = for_each(fns.slow_double, inputs={"signal": FeRawEMG, "delay": 0.01}, outputs=[FeFiltered],
                      subject=range(KILL_N), session=["pre"], progress=False)
    assert (report.cached, report.ran, report.failed) == (len(called), KILL_N - len(called), 0), report.summary()
    _assert_every_name_verifies(db)
    for subject in range(KILL_N):
        assert versions(FeFiltered, subject=subject, session="pre") == [1]  # no duplicate versions
    for subject in (0, KILL_N // 2, KILL_N - 1):
        np.testing.assert_array_equal(FeFiltered.load(subject=subject, session="pre").data,
                                      (np.arange(10.0) + subject) * 2.0)
    db.sync()
    assert db.sql("SELECT count(*) AS n FROM refs WHERE var = 'FeFiltered'")["n"][0] == KILL_N


@pytest.mark.slow
@pytest.mark.parametrize("workers", [None, 2], ids=["serial", "workers"])
def test_sigkill_mid_run_leaves_a_consistent_store_and_rerun_completes(kill_project, python_env, tmp_path,
                                                                      workers):
    journal = kill_project.scistack_dir / "refs.log"
    proc = _start_run(kill_project, python_env, tmp_path, workers)
    deadline = time.monotonic() + 60
    try:
        while time.monotonic() < deadline and proc.poll() is None:
            if journal.read_bytes().count(b'"op":"call"') >= 1:  # the first batch is durable
                break
            time.sleep(0.005)
    finally:
        out = _kill(proc)
    assert proc.returncode == -signal.SIGKILL and "finished" not in out

    kill_project.index.refresh()
    called = {c["key"] for c in kill_project.index.calls()}
    assert 0 < len(called) < KILL_N, "the kill should land mid-run"
    assert len(list(kill_project.index.records("FeFiltered"))) <= len(called)  # calls journalled first
    _assert_every_name_verifies(kill_project)
    _assert_rerun_completes_exactly_what_is_missing(kill_project)


@pytest.mark.slow
def test_sigkill_at_arbitrary_moments_then_rerun_completes(kill_project, python_env, tmp_path):
    rng = random.Random(20240607)
    for _ in range(3):  # kill re-runs of the same run at arbitrary moments, each picking up the last
        proc = _start_run(kill_project, python_env, tmp_path)
        time.sleep(rng.uniform(0.2, 2.5))
        out = _kill(proc)
        if "finished" in out:
            break
        _assert_every_name_verifies(kill_project)
    _assert_rerun_completes_exactly_what_is_missing(kill_project)


@pytest.mark.slow
def test_two_processes_running_the_same_run_at_once_save_each_value_once(kill_project, python_env, tmp_path):
    first = _start_run(kill_project, python_env, tmp_path, name="first")
    second = _start_run(kill_project, python_env, tmp_path, name="second")
    for proc in (first, second):
        out, err = proc.communicate(timeout=120)
        assert proc.returncode == 0 and "finished" in out, err
    _assert_every_name_verifies(kill_project)
    for subject in range(KILL_N):
        assert versions(FeFiltered, subject=subject, session="pre") == [1]
    again = for_each(fns.slow_double, inputs={"signal": FeRawEMG, "delay": 0.01}, outputs=[FeFiltered],
                     subject=range(KILL_N), session=["pre"], progress=False)
    assert (again.ran, again.cached) == (0, KILL_N)


def _assert_every_name_verifies(db) -> None:
    """fsck: every ref's value and call record, and every cached call's outputs, exist and verify."""
    found = fsck(db)  # every object re-hashed, every name and everything reachable present
    # a journal line torn by the kill is expected (readers skip it); nothing else may be wrong
    assert [p for p in found.problems if p.kind != "journal"] == [], found.problems
    for var in db.index.variables():
        for record in db.index.records(var):
            assert db.store.get(record.oid).kind == record.kind  # get() verifies the hash
            if record.call:
                assert db.store.get(record.call).kind == "call"
    for entry in db.index.calls():
        assert db.store.get(entry["call"]).kind == "call"
        for oid in entry["outs"]:
            db.store.get(oid)


class FeCalibration(BaseVariable):
    pass


class FeCalibrated(BaseVariable):
    pass


def test_value_saved_at_a_coarser_level_serves_finer_combinations(project):
    FeCalibration.save(2.0, subject=1)                  # one calibration per subject
    for session in ("pre", "post"):
        FeRawEMG.save(np.ones(3) * (3.0 if session == "pre" else 1.0), subject=1, session=session)

    def calibrate(signal, gain):
        return signal * gain

    report = for_each(calibrate, inputs={"signal": FeRawEMG, "gain": FeCalibration},
                      outputs=[FeCalibrated], subject=[1], session=["pre", "post"], progress=False)
    assert report.counts["ran"] == 2
    assert FeCalibrated.load(subject=1, session="post").data.tolist() == [2.0, 2.0, 2.0]
    provenance = project.get_provenance(FeCalibrated, subject=1, session="pre")
    assert provenance["inputs"]["gain"]["addr"] == {"subject": 1}


_DECORATED_SCRIPT = '''
import numpy as np
from scistack import BaseVariable, configure_database, for_each, lineage_fcn

class DsRaw(BaseVariable): pass
class DsOut(BaseVariable): pass

@lineage_fcn
def double(signal):
    import os
    return {"value": signal * 2, "pid": os.getpid()}

if __name__ == "__main__":
    db = configure_database("p.duckdb", ["subject"])
    for subject in (1, 2, 3):
        DsRaw.save(np.arange(3.0) * subject, subject=subject)
    report = for_each(double, inputs={"signal": DsRaw}, outputs=[DsOut], subject=[1, 2, 3], workers=2,
                      progress=False)
    assert (report.ran, report.failed) == (3, 0), report
    pids = {DsOut.load(subject=s).data["pid"] for s in (1, 2, 3)}
    assert os.getpid() not in pids
    assert DsOut.load(subject=3).data["value"].tolist() == [0.0, 6.0, 12.0]
    print("ok")
'''.replace("import numpy as np", "import os\nimport numpy as np", 1)


def test_workers_run_a_function_decorated_in_the_script(tmp_path, python_env):
    """`@lineage_fcn` at the top level of a script with `workers=2`: the workers find it by
    name in the script they import again. It had been refused (pickle found the decorator's
    object under the function's name, not the function)."""
    (tmp_path / "pipeline.py").write_text(_DECORATED_SCRIPT)
    done = subprocess.run([sys.executable, "pipeline.py"], cwd=tmp_path, env=python_env, capture_output=True,
                          text=True, timeout=180)
    assert done.returncode == 0 and "ok" in done.stdout, done.stderr


# -- a worker process that dies -----------------------------------------------------------------
def _dies_at_two(tmp_path, how, **kwargs):
    return for_each(fns.dies_at_two, inputs={"signal": FeRawEMG, "log": str(tmp_path / "deaths"), "how": how},
                    outputs=[FeFiltered], subject=SUBJECTS, session=SESSIONS, progress=False, **kwargs)


def test_a_worker_that_dies_fails_only_its_combinations_and_the_others_run(emg, tmp_path):
    """A worker that died (a crash in compiled code, the OOM killer) broke the pool, and every
    combination not yet back failed with the same BrokenProcessPool, naming neither the
    combination nor the cause. Now the combinations it was running fail, saying how it died,
    once each (not tried again: they would kill every worker); the others run in a new pool,
    also those of a chunk (chunk_size=2) that died with it."""
    report = _dies_at_two(tmp_path, "exit", workers=2, chunk_size=2)
    failed = {(f.combo["subject"], f.combo["session"]): f.error for f in report.failures}
    assert set(failed) == {(2, "pre"), (2, "post")}, failed
    assert all("worker process running dies_at_two on this combination died (exit code 139" in e
               and "without workers=" in e for e in failed.values())
    assert report.ran == 4 and (tmp_path / "deaths").read_text() == "died\n" * 2
    assert sorted(r.data[0] for r in FeFiltered.load_all()) == [20.0, 21.0, 60.0, 61.0]
    again = _dies_at_two(tmp_path, "exit", workers=2, chunk_size=1)
    assert (again.cached, again.failed) == (4, 2)


def test_a_worker_killed_by_a_signal_is_named_with_the_likely_cause(emg, tmp_path):
    report = _dies_at_two(tmp_path, "kill", workers=2, chunk_size=1)
    assert [f.combo["subject"] for f in report.failures] == [2, 2] and report.ran == 4
    assert "died (killed by signal 9 (SIGKILL): out of memory?" in report.failures[0].error


def test_a_worker_that_dies_in_a_callers_process_pool_leaves_the_rest_not_run(emg, tmp_path):
    """The caller's executor is not replaced: what did not run is said to be "not run" (not
    failed), and a later run does it."""
    with cf.ProcessPoolExecutor(2, mp_context=multiprocessing.get_context("spawn")) as pool:
        report = _dies_at_two(tmp_path, "exit", executor=pool, chunk_size=1)
    assert report.failures and {f.combo["subject"] for f in report.failures} == {2}
    assert "died (exit code 139" in report.failures[0].error
    not_run = [i for i in report.items if i.status == "skipped"]
    assert all("not run: a worker process of the pool died" in i.error for i in not_run)
    assert report.ran + len(not_run) + report.failed == 6
    rest = _dies_at_two(tmp_path, "exit", workers=2, chunk_size=1)
    assert (rest.cached, rest.ran, rest.failed) == (report.ran, 4 - report.ran, 2)


def test_for_each_inside_an_atomic_batch_leaves_its_writes_to_the_batch(emg, monkeypatch):
    """`for_each` flushes about every second (to bound what a kill loses); inside an atomic
    batch that flush would journal half of the batch, so it waits for the batch's end: an
    error after the run journals nothing of it, and a batch that ends well journals it all."""
    from scistack.foreach import engine
    monkeypatch.setattr(engine, "_FLUSH_EVERY_S", -1.0)  # (a flush after every combination)
    before = journal_size(emg)
    with pytest.raises(KeyboardInterrupt), emg.batch(atomic=True):
        report = run_bandpass()
        assert report.ran == len(SUBJECTS) * len(SESSIONS) and not report.failed
        assert journal_size(emg) == before
        raise KeyboardInterrupt
    assert journal_size(emg) == before
    with pytest.raises(VariableNotFoundError):
        FeFiltered.load(subject=1, session="pre")
    with emg.batch(atomic=True):
        report = run_bandpass()
    assert versions(FeFiltered, subject=1, session="pre") == [1]
    assert journal_size(emg) > before
