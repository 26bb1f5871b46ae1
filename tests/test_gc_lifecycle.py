"""Space can be freed: cache entries go with their outputs' names, `rm --cascade` drops what it
orphans, `gc --dry-run` explains what each root keeps, and retention drops old versions."""

from __future__ import annotations

import json
import os
import time

import numpy as np
import pytest
from click.testing import CliRunner

from scistack import BaseVariable, for_each, lineage_fcn
from scistack.cli import main
from scistack.errors import RetentionError
from scistack.gc import collect_garbage
import scistack.objects.local as local_store


class LcRaw(BaseVariable):
    pass


class LcOut(BaseVariable):
    pass


class LcNext(BaseVariable):
    pass


@lineage_fcn
def lc_double(x):
    return x * 2


def _pipeline(db):
    for subject in (1, 2):
        LcRaw.save(np.random.default_rng(subject).normal(size=2000), subject=subject, session="pre")
    for_each(lc_double, inputs={"x": LcRaw}, outputs=[LcOut], subject=[1, 2], session=["pre"],
             progress=False)


def _cli(db, *args: str, input: str | None = None):
    result = CliRunner().invoke(main, ["--db", str(db.root / "gait.duckdb"), *args], input=input)
    assert result.exit_code == 0, (result.output, result.exception)
    return result.stdout


def test_deleting_every_value_frees_the_space_of_cached_calls(project):
    _pipeline(project)
    LcOut.delete(subject=[1, 2])
    LcRaw.delete(subject=[1, 2])
    stats = collect_garbage(project, grace_seconds=0)
    assert stats.bytes_freed > 2 * 2000 * 8 and stats.calls_dropped == 2
    run_reports = [run.items for run in project.index.runs()]
    assert list(project.store.iter_oids()) == run_reports  # nothing else is named or kept
    assert project.index.calls() == []
    project.index.rebuild()  # the drop is in the journal: a fresh fold agrees, and DuckDB too
    assert project.index.calls() == []
    assert project.sql("SELECT count(*) AS n FROM scistack.calls")["n"][0] == 0


def test_a_cache_entry_is_kept_while_its_outputs_are_named_and_served_after_gc(project):
    _pipeline(project)
    LcRaw.save(np.zeros(3), subject=9, session="pre")
    LcRaw.delete(subject=9)
    stats = collect_garbage(project, grace_seconds=0)
    assert stats.calls_dropped == 0 and stats.objects_deleted == 1
    report = for_each(lc_double, inputs={"x": LcRaw}, outputs=[LcOut], subject=[1, 2],
                      session=["pre"], progress=False)
    assert report.counts["cached"] == 2


def test_an_input_named_only_by_a_kept_values_lineage_is_never_freed(project):
    _pipeline(project)
    raw = LcRaw.load(subject=1, session="pre").oid
    LcRaw.delete(subject=[1, 2])  # the outputs stay named: their inputs stay in the store
    collect_garbage(project, grace_seconds=0)
    assert project.store.contains(raw)
    assert project.get_provenance(LcOut, subject=1, session="pre")["inputs"]["x"]["oid"] == raw


def test_a_young_cache_entry_is_kept_by_the_grace_period(project):
    _pipeline(project)
    LcOut.delete(subject=[1, 2])
    stats = collect_garbage(project)  # two weeks of grace: a run may be about to name them
    assert stats.calls_dropped == 0 and len(project.index.calls()) == 2


def test_rm_cascade_shows_and_drops_the_cache_entries_it_orphans(project):
    _pipeline(project)
    out = _cli(project, "rm", "LcRaw", "--subject", "1", "--cascade", "--yes")
    assert "orphans 1 cached calls (dropped now)" in out and "dropped 1 cached calls" in out
    project.index.refresh()
    assert len(project.index.calls()) == 1
    out = _cli(project, "rm", "LcOut", "--subject", "2", "--yes")
    assert "orphans 1 cached calls (`scistack gc` drops them)" in out
    assert len(project.index.calls()) == 1  # without --cascade gc drops it later


def test_rm_confirmation_shows_the_full_address(project):
    long = "a-session-name-long-enough-to-be-cut-in-an-eighty-column-table-" * 2
    LcRaw.save(np.arange(3.0), subject=1, session=long)
    result = CliRunner().invoke(
        main, ["--db", str(project.root / "gait.duckdb"), "rm", "LcRaw", "--subject", "1"],
        input="n\n")
    text = result.output.replace("\n", "").replace(" ", "")
    assert long.replace(" ", "") in text and "(LcRawatsubject=1,everyversion)?" in text


def test_gc_dry_run_reports_what_each_root_keeps_alive(project):
    _pipeline(project)
    LcNext.save(np.arange(10.0), subject=1)
    data = json.loads(_cli(project, "gc", "--dry-run", "--json"))
    roots = {r["root"]: r for r in data["roots"]}
    assert roots["values of LcRaw"]["objects"] == 2 and roots["values of LcNext"]["objects"] == 1
    assert roots["values of LcOut"]["objects"] == 2 and roots["values of LcOut"]["bytes"] > 0
    # LcOut's lineage: two call records and the code object (its inputs are LcRaw's values)
    assert roots["lineage of LcOut"]["objects"] >= 3 and roots["lineage of LcRaw"]["objects"] == 0
    assert roots["for_each run reports"]["objects"] == 1
    text = _cli(project, "gc", "--dry-run")
    assert "what each root keeps alive" in text and "lineage of LcOut" in text


def _versions(project, n: int) -> None:
    for i in range(n):
        LcRaw.save(np.full(500, float(i)), subject=1, session="pre")
        LcRaw.save(np.full(500, float(i)), subject=1, session="pre", note="recal")


def test_keep_versions_previews_then_drops_old_versions_of_each_variant(project):
    _versions(project, 4)
    out = _cli(project, "gc", "--keep-versions", "2", "--dry-run", "--prune=now")
    assert "retention would drop 4 old versions" in out
    assert len(LcRaw.list_versions(subject=1, session="pre")) == 8  # a preview changes nothing
    stats = collect_garbage(project, grace_seconds=0, keep_versions=2)
    assert len(stats.versions_dropped) == 4 and stats.objects_deleted >= 2
    left = LcRaw.list_versions(subject=1, session="pre")
    assert sorted(v.version for v in left) == [5, 6, 7, 8]
    assert LcRaw.load(subject=1, session="pre", note="recal").data[0] == 3.0


def test_gc_asks_before_a_retention_rule_drops_names(project):
    _versions(project, 3)
    result = CliRunner().invoke(
        main, ["--db", str(project.root / "gait.duckdb"), "gc", "--keep-versions", "1"], input="n\n")
    assert result.exit_code == 1 and "retention would drop 4 old versions" in result.output
    assert len(LcRaw.list_versions(subject=1, session="pre")) == 6
    out = _cli(project, "gc", "--keep-versions", "1", "--yes", "--prune=now")
    assert "retention dropped 4 old versions" in out
    project.index.refresh()
    assert len(LcRaw.list_versions(subject=1, session="pre")) == 2


def test_older_than_keeps_newer_versions_and_always_the_newest(project):
    _versions(project, 3)
    stats = collect_garbage(project, dry_run=True, older_than=time.time() - 3600)
    assert stats.versions_dropped == ()
    stats = collect_garbage(project, grace_seconds=0, older_than=time.time() + 1)
    assert len(stats.versions_dropped) == 4  # everything but the newest of each variant
    assert LcRaw.load(subject=1, session="pre", note="recal").data[0] == 2.0


def test_retention_never_frees_an_old_version_a_kept_value_was_computed_from(project):
    _pipeline(project)  # LcOut was computed from LcRaw version 1
    used = LcRaw.load(subject=1, session="pre").oid
    LcRaw.save(np.zeros(5), subject=1, session="pre")
    LcRaw.save(np.ones(5), subject=1, session="pre")
    stats = collect_garbage(project, grace_seconds=0, keep_versions=1)
    assert [v["version"] for v in stats.versions_dropped if v["addr"]["subject"] == 1] == [1, 2]
    assert [v.version for v in LcRaw.list_versions(subject=1, session="pre")] == [3]
    assert project.store.contains(used)  # its name went, the lineage of LcOut keeps the value
    assert project.get_provenance(LcOut, subject=1, session="pre")["inputs"]["x"]["oid"] == used
    assert stats.calls_dropped == 0


def test_an_uncall_drops_only_the_call_record_it_names(project):
    key, first, second = "a" * 64, "b" * 64, "c" * 64
    project.index.put_call(key, first, "mod.fn#1", ["d" * 64])
    project.index.drop_calls([{"key": key, "call": first}])
    assert project.index.cached_call(key) is None
    project.index.put_call(key, second, "mod.fn#1", ["e" * 64])
    project.index.drop_calls([{"key": key, "call": first}])  # stale: a later run re-cached it
    views = [project.index.cached_call(key)["call"], project.index.full_fold()[0].calls[key]["call"]]
    project.index.rebuild()
    views.append(project.index.cached_call(key)["call"])
    views.append(project.sql("SELECT call FROM scistack.calls")["call"].tolist()[0])
    assert views == [second] * 4


def test_a_retention_rule_must_keep_at_least_one_version(project):
    with pytest.raises(RetentionError, match=">= 1"):
        collect_garbage(project, keep_versions=0)


def _a_month_later(monkeypatch) -> float:
    """Files back-dated a month stand for a month gone by; so must this process's memory of
    what it made young (`LocalObjectStore._made_young`, trusted for `_YOUNG_FOR` seconds)."""
    monkeypatch.setattr(local_store, "_YOUNG_FOR", 0.0)
    return time.time() - 30 * 86400


def test_a_cache_hit_that_names_old_unnamed_outputs_again_makes_them_young(project, monkeypatch):
    _pipeline(project)
    out = LcOut.load(subject=1, session="pre").oid
    LcOut.delete(subject=[1, 2])  # outputs unnamed: a gc past the grace period would free them
    month_ago = _a_month_later(monkeypatch)
    for path in (project.root / ".scistack" / "objects").rglob("*"):
        if path.is_file():
            os.utime(path, (month_ago, month_ago))
    report = for_each(lc_double, inputs={"x": LcRaw}, outputs=[LcOut], subject=[1, 2],
                      session=["pre"], progress=False)
    assert report.counts["cached"] == 2 and LcOut.load(subject=1, session="pre").oid == out
    assert project.store.mtime_of(out) > time.time() - 3600  # a concurrent gc now keeps it


def test_saving_a_cached_result_makes_its_lineage_young(project, monkeypatch):
    LcRaw.save(np.random.default_rng(3).normal(size=50), subject=1, session="pre")
    lc_double(LcRaw.load(subject=1, session="pre"))  # computed, cached, never named
    month_ago = _a_month_later(monkeypatch)
    for path in (project.root / ".scistack" / "objects").rglob("*"):
        if path.is_file():
            os.utime(path, (month_ago, month_ago))
    again = lc_double(LcRaw.load(subject=1, session="pre"))
    assert again.cached
    LcOut.save(again, subject=1, session="pre")
    code = project.get_provenance(LcOut, subject=1, session="pre")["code"]
    for oid in (again.oid, again.call, code):
        assert project.store.mtime_of(oid) > time.time() - 3600, oid
