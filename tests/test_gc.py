"""gc never deletes anything reachable, honours the grace period, and counts bytes exactly."""

from __future__ import annotations

import os
import shutil
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

import scistack.database as database_module
from scistack import BaseVariable, configure_database, for_each, lineage_fcn
from scistack.errors import GarbageCollectionError
import scistack.gc as gc_module
from scistack.gc import DEFAULT_GRACE_SECONDS, collect_garbage, find_reachable, parse_prune

DAY = 86400.0

POOL = [
    np.arange(64, dtype=np.float64),
    np.arange(64, dtype=np.int32) * 3,
    {"signal": np.arange(64, dtype=np.float64), "rate": 1000},
    {"signal": np.linspace(0, 1, 33), "tags": ["a", "b"]},
    [np.arange(5, dtype=np.int16), 7, "x"],
    pd.DataFrame({"t": [0.0, 0.5, 1.0], "side": ["l", "r", "l"]}),
    3.25,
    "a string value",
]


class GcA(BaseVariable):
    pass


class GcB(BaseVariable):
    pass


class GcC(BaseVariable):
    pass


@lineage_fcn
def gc_scale(value, factor):
    if isinstance(value, dict):
        return {k: (v * factor if isinstance(v, np.ndarray) else v) for k, v in value.items()}
    if isinstance(value, np.ndarray):
        return value * factor
    return [value, factor]


def same(a, b) -> bool:
    """Bit-exact equality of stored values (dtype, shape and bytes for arrays)."""
    if isinstance(a, np.ndarray):
        return (
            isinstance(b, np.ndarray)
            and a.dtype == b.dtype
            and a.shape == b.shape
            and a.tobytes() == b.tobytes()
        )
    if isinstance(a, pd.DataFrame):
        return isinstance(b, pd.DataFrame) and a.equals(b) and list(a.dtypes) == list(b.dtypes)
    if isinstance(a, dict):
        return isinstance(b, dict) and a.keys() == b.keys() and all(same(a[k], b[k]) for k in a)
    if isinstance(a, (list, tuple)):
        return type(a) is type(b) and len(a) == len(b) and all(same(x, y) for x, y in zip(a, b))
    return type(a) is type(b) and a == b


class GarbageCollection(RuleBasedStateMachine):
    """Random saves, computations, deletions, stray objects and gc (grace 0) vs a dict model."""

    def __init__(self) -> None:
        super().__init__()
        self.dir = Path(tempfile.mkdtemp(prefix="scistack-gc-"))
        database_module._current = None
        self.db = configure_database(self.dir / "gait.duckdb", ["subject"])
        self.model: dict[
            tuple[str, int], dict[int, object]
        ] = {}  # (var, subject) -> version -> value
        self.freed = 0
        self.hand: list = []  # values loaded or computed, kept in memory across deletes and gc

    def _record(self, var: type, subject: int, record, value) -> None:
        self.model.setdefault((var.__name__, subject), {})[record.version] = value

    @rule(
        var=st.sampled_from([GcA, GcB]),
        subject=st.integers(1, 3),
        index=st.integers(0, len(POOL) - 1),
    )
    def save(self, var, subject, index):
        saved = var.save(POOL[index], subject=subject)
        self._record(var, subject, saved.record, POOL[index])

    @rule(
        var=st.sampled_from([GcA, GcB]),
        subjects=st.lists(st.integers(1, 3), min_size=1, max_size=3),
        index=st.integers(0, len(POOL) - 1),
    )
    def save_in_a_batch(self, var, subjects, index):
        """Saves a batch packs: gc then repacks, and lookups go through the packs."""
        with self.db.batch():
            saved = [(s, var.save(POOL[index], subject=s)) for s in subjects]
        for subject, one in saved:
            self._record(var, subject, one.record, POOL[index])

    @precondition(lambda self: any(var == "GcA" for var, _ in self.model))
    @rule(data=st.data(), factor=st.sampled_from([1, 2]))
    def compute(self, data, factor):
        subject = data.draw(st.sampled_from(sorted(s for var, s in self.model if var == "GcA")))
        result = gc_scale(GcA.load(subject=subject), factor)
        saved = GcC.save(result, subject=subject)
        self._record(GcC, subject, saved.record, result.data)

    @precondition(lambda self: any(var == "GcA" for var, _ in self.model))
    @rule(factor=st.sampled_from([2, 3]))
    def run_for_each(self, factor):
        report = for_each(
            gc_scale,
            inputs={"value": GcA, "factor": factor},
            outputs=[GcC],
            subject=sorted(s for var, s in self.model if var == "GcA"),
        )
        for item in report.items:
            if item.status in ("ran", "cached"):
                loaded = GcC.load(subject=item.combo["subject"])
                self._record(GcC, item.combo["subject"], loaded.record, loaded.data)

    @precondition(lambda self: bool(self.model))
    @rule(data=st.data())
    def delete(self, data):
        var, subject = data.draw(st.sampled_from(sorted(self.model)))
        versions = self.model[(var, subject)]
        cls = {"GcA": GcA, "GcB": GcB, "GcC": GcC}[var]
        if data.draw(st.booleans()) and len(versions) > 1:
            version = data.draw(st.sampled_from(sorted(versions)))
            cls.delete(subject=subject, version=version)
            del versions[version]
        else:
            cls.delete(subject=subject)
            del self.model[(var, subject)]

    @precondition(lambda self: bool(self.model))
    @rule(data=st.data(), compute=st.booleans())
    def hold(self, data, compute):
        """Keep a loaded value (or a result computed from one, unsaved) in memory."""
        var, subject = data.draw(st.sampled_from(sorted(self.model)))
        loaded = {"GcA": GcA, "GcB": GcB, "GcC": GcC}[var].load(subject=subject)
        self.hand.append(gc_scale(loaded, 5) if compute else loaded)

    @precondition(lambda self: bool(self.hand))
    @rule(data=st.data(), subject=st.integers(1, 3), call=st.booleans())
    def save_from_hand(self, data, subject, call):
        """Save a value in hand (or a call's result on it), whatever a gc took since: the
        lineage saved with it must be whole (`check_model`)."""
        held = data.draw(st.sampled_from(self.hand))
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", "", UserWarning)  # (lineage a gc took: said, tested apart)
            value = gc_scale(held, 7) if call else held
            saved = GcB.save(value, subject=subject)
        self._record(GcB, subject, saved.record, value.data)

    @rule(index=st.integers(0, len(POOL) - 1), extra=st.integers(0, 1000))
    def stray_object(self, index, extra):
        self.db.store.put_value([POOL[index], extra])  # written, never named (a killed save)

    @rule()
    def gc(self):
        before = {oid: self.db.store.size_of(oid) for oid in self.db.store.iter_oids()}
        packs_before = {p: p.stat().st_size for p in self.db.store.packs.directory.glob("pack-*")}
        stats = collect_garbage(self.db, grace_seconds=0)
        after = set(self.db.store.iter_oids())
        assert after == find_reachable(self.db)
        gone = set(before) - after
        assert stats.objects_deleted == len(gone)
        # a pack emptied by gc frees its header and index too (cache entries go with their outputs)
        packs_gone = sum(size for path, size in packs_before.items() if not path.exists())
        assert stats.bytes_freed - sum(before[oid] for oid in gone) in range(packs_gone + 1)
        assert stats.objects_scanned == len(before) and stats.objects_kept_by_grace == 0
        self.check_model()

    @rule(keep=st.integers(1, 2))
    def gc_with_retention(self, keep):
        collect_garbage(self.db, grace_seconds=0, keep_versions=keep)
        for versions in self.model.values():
            for version in sorted(versions)[:-keep]:
                del versions[version]
        self.check_model()

    @invariant()
    def refs_match_the_model(self):
        self.db.index.refresh()
        live = {
            (r.var, r.addr["subject"], r.version)
            for v in ("GcA", "GcB", "GcC")
            for r in self.db.index.records(v)
        }
        assert live == {
            (var, s, version) for (var, s), versions in self.model.items() for version in versions
        }

    def check_model(self):
        classes = {"GcA": GcA, "GcB": GcB, "GcC": GcC}
        for (var, subject), versions in self.model.items():
            for version, value in versions.items():
                loaded = classes[var].load(subject=subject, version=version)
                assert same(value, loaded.data), (var, subject, version)
                if loaded.record.call:  # the lineage of a kept value is never freed, nor named half
                    assert self.db.store.contains(loaded.record.call)
                    inputs = self.db.call_record(loaded.record.call)["inputs"]
                    assert all(self.db.store.contains(i["oid"]) for i in inputs.values())
                    assert all(self.db.store.contains(i["call"]) for i in inputs.values() if i.get("call"))

    def teardown(self):
        try:
            self.check_model()
        finally:
            self.db.close()
            database_module._current = None
            shutil.rmtree(self.dir, ignore_errors=True)


GarbageCollection.TestCase.settings = settings(
    max_examples=30,
    stateful_step_count=25,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)
test_gc_never_deletes_what_is_reachable = GarbageCollection.TestCase


# -- grace period and mtime refresh ------------------------------------------------------
def age(path: Path, days: float) -> None:
    then = time.time() - days * DAY
    os.utime(path, (then, then))


def test_grace_period_protects_a_fresh_unreferenced_object(project):
    orphan = project.store.put_value(np.arange(100.0))  # a concurrent save about to name it
    stats = collect_garbage(project)
    assert stats.objects_deleted == 0 and stats.objects_kept_by_grace == 1
    assert project.store.contains(orphan)
    age(project.store.path_of(orphan), 13)
    assert collect_garbage(project).objects_deleted == 0
    age(project.store.path_of(orphan), 15)
    stats = collect_garbage(project)
    assert stats.objects_deleted == 1 and not project.store.contains(orphan)


def test_putting_an_old_object_again_makes_it_young(project):
    orphan = project.store.put_value(np.arange(7.0))
    age(project.store.path_of(orphan), 30)
    assert project.store.put_value(np.arange(7.0)) == orphan  # a save re-using it refreshes mtime
    assert collect_garbage(project).objects_kept_by_grace == 1
    assert project.store.contains(orphan)


def test_deleted_refs_are_collected_after_the_grace_period(project):
    GcA.save(np.arange(10.0), subject=1)
    kept = GcA.save(np.arange(20.0), subject=2).record.oid
    GcA.delete(subject=1)
    gone = np.arange(10.0)
    from scistack.objects.store import hash_value

    oid = hash_value(gone)
    assert collect_garbage(project).objects_deleted == 0
    age(project.store.path_of(oid), 20)
    assert collect_garbage(project).objects_deleted == 1
    assert not project.store.contains(oid) and project.store.contains(kept)


def test_bytes_freed_equal_the_sizes_of_the_deleted_files(project):
    GcA.save(np.arange(50.0), subject=1)
    orphans = [
        project.store.put_value(np.random.default_rng(n).normal(size=n * 100)) for n in range(1, 6)
    ]
    orphans.append(
        project.store.put_value({"a": np.zeros(10_000), "b": "x"})
    )  # compressible, with a child
    temp = project.store.root / "ab" / ".tmp-12345-deadbeef"
    temp.parent.mkdir(exist_ok=True)
    temp.write_bytes(b"half-written object" * 10)
    unreachable = set(project.store.iter_oids()) - find_reachable(project)
    assert set(orphans) <= unreachable and len(unreachable) == 7
    expected = sum(project.store.size_of(oid) for oid in unreachable) + temp.stat().st_size
    for oid in unreachable:
        age(project.store.path_of(oid), 30)
    age(temp, 30)
    dry = collect_garbage(project, dry_run=True)
    assert (dry.objects_deleted, dry.temp_files_removed, dry.bytes_freed) == (7, 1, expected)
    assert all(project.store.contains(oid) for oid in unreachable) and temp.exists()
    stats = collect_garbage(project)
    assert (stats.objects_deleted, stats.temp_files_removed, stats.bytes_freed) == (7, 1, expected)
    assert not any(project.store.contains(oid) for oid in unreachable) and not temp.exists()
    assert GcA.load(subject=1).data.tolist() == list(np.arange(50.0))


# -- what is kept ------------------------------------------------------------------------
def test_every_version_and_the_lineage_of_kept_values_survive(project):
    GcA.save(np.arange(4.0), subject=1)
    GcA.save(np.arange(5.0), subject=1)  # version 2; version 1 stays
    raw = GcB.save({"x": np.arange(3.0)}, subject=1)
    result = gc_scale(GcB.load(subject=1), 2)
    GcC.save(result, subject=1)
    report = for_each(gc_scale, inputs={"value": GcA, "factor": 3}, outputs=[GcB], subject=[1])
    GcB.delete(subject=1)  # the input of GcC's value loses its name
    collect_garbage(project, grace_seconds=0)
    assert GcA.load(subject=1, version=1).data.tolist() == [0.0, 1.0, 2.0, 3.0]
    provenance = project.get_provenance(GcC, subject=1)
    assert (
        project.store.contains(provenance["inputs"]["value"]["oid"])
        and raw.record.oid == provenance["inputs"]["value"]["oid"]
    )
    assert project.store.get_value(raw.record.oid)["x"].tolist() == [0.0, 1.0, 2.0]
    assert "def gc_scale" in project.store.get_value(provenance["code"])
    run = project.index.runs()[-1]
    assert run.run_id == report.run_id and project.store.contains(run.items)


def _roots_as_sets(roots) -> tuple:
    values = {(var, kind, oid) for var, kinds in roots.values.items() for kind, oids in kinds.items() for oid in oids}
    counts = sorted(len(oids) for kinds in roots.values.values() for oids in kinds.values())
    lineage = {var: sorted(calls) for var, calls in roots.lineage.items()}
    return values, counts, lineage, dict(roots.calls), [r.items for r in roots.runs]


def test_gc_folds_the_roots_in_slices_as_the_whole_fold_does(project, monkeypatch):
    """gc reads the journal a slice at a time and keeps only oids (a whole fold of 1M refs
    held 2.6 GB): its roots are those of the whole fold. Deleted versions are not roots, a ref
    put again after its deletion (a journal written by another tool) is, cache entries gc
    dropped are not, run reports are; its value survives gc."""
    monkeypatch.setattr(gc_module, "_SLICE_BYTES", 300)  # a few lines a slice
    for version in range(3):
        GcA.save(np.arange(4.0) + version, subject=1)
        GcA.save(float(version), subject=2)
    for_each(gc_scale, inputs={"value": GcA, "factor": 2}, outputs=[GcC], subject=[1, 2])
    GcC.delete(subject=2)  # its cache entry goes at the next gc (its output is no longer named)
    GcA.delete(subject=1, version=2)
    again = GcB.save(np.arange(7.0), subject=3)
    GcB.delete(subject=3)
    journal = project.index.journal_path
    put = next(line for line in journal.read_bytes().splitlines()
               if b'"op":"put"' in line and again.record.oid.encode() in line)
    with open(journal, "ab") as out:
        out.write(put + b"\n")  # put again after its deletion, as written by another tool
    project.index.refresh()
    collect_garbage(project, grace_seconds=0)

    roots, bad = gc_module.fold_roots(project.index)
    state, whole_bad = project.index.full_fold()
    assert bad == whole_bad == 0
    assert _roots_as_sets(roots) == _roots_as_sets(gc_module.Roots.of_state(state))
    values = _roots_as_sets(roots)[0]
    assert ("GcB", "npy", again.record.oid) in values
    assert len([v for v in values if v[0] == "GcA"]) == 5 and len(roots.runs) == 1
    assert [e["outs"] for e in roots.calls.values()] == [[GcC.load(subject=1).record.oid]]
    np.testing.assert_array_equal(project.store.get_value(again.record.oid), np.arange(7.0))


def test_a_deletion_written_by_another_tool_is_seen_however_it_is_spelt(project):
    """gc's first pass parses only lines that can be deletions: a line written with spaces or
    with the op spelt by a JSON escape (MATLAB, a script) is still one."""
    kept = [GcA.save(np.arange(3.0) + v, subject=1).record for v in range(3)]
    with open(project.index.journal_path, "ab") as journal:
        journal.write(b'{"op": "del", "var": "GcA", "addr": {"subject": 1}, "version": 1, "t": "x"}\n')
        journal.write(b'{"op":"d\\u0065l","var":"GcA","addr":{"subject":1},"version":2,"t":"x"}\n')
    project.index.refresh()
    roots, bad = gc_module.fold_roots(project.index)
    assert bad == 0 and roots.values["GcA"]["npy"] == [kept[2].oid]
    collect_garbage(project, grace_seconds=0)
    assert [project.store.contains(r.oid) for r in kept] == [False, False, True]


@lineage_fcn
def gc_weighted(value, weights):
    return value * weights["w"].sum()


def test_an_array_inside_a_constant_of_a_call_record_is_kept(project):
    """A constant holding an array: the call record names the array by `{"$ref": oid}`
    inside the constant; gc, reading records and json objects in batches, keeps it."""
    GcA.save(np.arange(4.0), subject=1)
    weights = {"w": np.arange(50.0), "name": "ramp"}
    for_each(gc_weighted, inputs={"value": GcA, "weights": weights}, outputs=[GcC], subject=[1])
    from scistack.objects.store import hash_value

    record = bytes(project.store.get(GcC.load(subject=1).record.call).payload)
    ramp = hash_value(np.arange(50.0))
    assert b'{"$ref":"' + ramp.encode() in record  # named deep inside the record only
    collect_garbage(project, grace_seconds=0)
    np.testing.assert_array_equal(project.store.get_value(ramp), np.arange(50.0))


# -- refusals ----------------------------------------------------------------------------
def test_gc_refuses_when_a_journal_line_cannot_be_read(project):
    GcA.save(1, subject=1)
    orphan = project.store.put_value("stray")
    with open(project.index.journal_path, "ab") as journal:
        journal.write(b'{"op":"put","var":"GcA", torn\n')
    with pytest.raises(GarbageCollectionError, match="cannot be parsed"):
        collect_garbage(project, grace_seconds=0)
    assert project.store.contains(orphan)


def test_gc_refuses_when_a_ref_points_to_a_missing_or_corrupt_object(project):
    kept = GcA.save({"x": np.arange(3.0)}, subject=1).record.oid
    GcA.save(np.arange(3.0), subject=2)
    orphan = project.store.put_value("stray")
    path = project.store.path_of(kept)
    os.chmod(path, 0o644)
    data = bytearray(path.read_bytes())
    data[-2] ^= 0xFF
    path.write_bytes(bytes(data))
    with pytest.raises(GarbageCollectionError, match="corrupt"):
        collect_garbage(project, grace_seconds=0)
    os.unlink(path)
    with pytest.raises(GarbageCollectionError, match=r"missing \(e.g. \w+, ref GcA at subject=1 version 1\)"):
        collect_garbage(project, grace_seconds=0)
    assert project.store.contains(orphan)


def test_gc_refuses_when_a_kept_object_that_names_others_is_missing_and_deletes_none_of_its_children(project):
    """A dict kept only as a result's lineage input (its ref deleted) whose own object is lost:
    the walk cannot read which arrays it names, so they looked unreachable and were deleted."""
    from scistack.objects.codec import child_oids

    raw = GcA.save({"signal": np.arange(6.0), "rate": 100}, subject=1).record.oid
    GcB.save(gc_scale(GcA.load(subject=1), 2.0), subject=1)
    arrays = [oid for oid, _ in child_oids("json", project.store.get(raw).payload)]
    GcA.delete(subject=1)
    path = project.store.path_of(raw)
    os.chmod(path, 0o644)
    os.unlink(path)
    for dry_run in (True, False):
        with pytest.raises(GarbageCollectionError, match=rf"missing \(e.g. {raw[:12]}, input 'value' of call") as refused:
            collect_garbage(project, grace_seconds=0, dry_run=dry_run)
        assert "deleted nothing" in str(refused.value) and "Save its value again" in str(refused.value)
    assert arrays and all(project.store.contains(oid) for oid in arrays)
    GcA.save({"signal": np.arange(6.0), "rate": 100}, subject=1)  # the fix it names: stored again
    assert collect_garbage(project, grace_seconds=0).objects_deleted == 0
    assert GcB.load(subject=1).data["signal"].tolist() == list(np.arange(6.0) * 2)


def _unlink_object(project, oid):
    path = project.store.path_of(oid)
    os.chmod(path, 0o644)
    os.unlink(path)


def test_gc_runs_over_a_lost_array_of_a_current_dict_and_fsck_names_it(project):
    """A lost leaf (an array of a saved dict) names nothing gc could delete: gc collects as
    before (it had refused the whole project over one lost array, which no fix cleared)."""
    from scistack.fsck import fsck
    from scistack.objects.codec import child_oids

    raw = GcA.save({"signal": np.arange(6.0), "rate": 100}, subject=1).record.oid
    (array,) = [oid for oid, _ in child_oids("json", project.store.get(raw).payload)]
    garbage = GcB.save(np.arange(3.0), subject=9).record.oid
    GcB.delete(subject=9)
    _unlink_object(project, array)
    stats = collect_garbage(project, grace_seconds=0)
    assert stats.objects_deleted >= 1 and not project.store.contains(garbage)
    assert project.store.contains(raw)
    assert array[:12] in str(fsck(project))


def test_gc_refuses_over_a_lost_array_of_a_dict_that_was_a_chunked_value_with_old_chunks(project):
    """A lost child of a dict may have been a chunked manifest (its header is gone): its old
    chunks would look unreachable, so gc refuses while such chunks are there to be deleted."""
    from scistack.objects.chunking import set_chunking
    from scistack.objects.codec import child_oids

    set_chunking(threshold=1 << 10, chunk_bytes=256)
    try:
        raw = GcA.save({"signal": np.arange(512.0), "rate": 100}, subject=1).record.oid
    finally:
        set_chunking()
    (manifest,) = [oid for oid, _ in child_oids("json", project.store.get(raw).payload)]
    chunks = [oid for oid, _ in child_oids("chunked", project.store.get(manifest).payload)]
    _unlink_object(project, manifest)
    for dry_run in (True, False):
        with pytest.raises(GarbageCollectionError, match=rf'missing \(e.g. {manifest[:12]}, value\["signal"\] of json'):
            collect_garbage(project, grace_seconds=0, dry_run=dry_run)
    assert chunks and all(project.store.contains(oid) for oid in chunks)


def test_gc_runs_over_a_lost_array_inside_a_constant_recorded_inline_and_fsck_names_it(project):
    """A small constant is recorded inline in its call record, an array in it as a `{"$ref"}`:
    that child is what a dict value's child is (an array, or a chunked manifest). The walk
    took it as an object of unknown kind that may name others, so one lost array refused gc
    for the whole project, with a fix (save its value again) that no save could follow."""
    from scistack.fsck import fsck
    from scistack.objects.store import hash_value

    GcA.save(np.arange(4.0), subject=1)
    GcC.save(gc_weighted(GcA.load(subject=1), {"w": np.arange(50.0), "name": "ramp"}), subject=1)
    ramp = hash_value(np.arange(50.0))
    garbage = GcB.save(np.arange(3.0), subject=9).record.oid
    GcB.delete(subject=9)
    _unlink_object(project, ramp)
    stats = collect_garbage(project, grace_seconds=0)
    assert stats.objects_deleted >= 1 and not project.store.contains(garbage)
    assert ramp[:12] in str(fsck(project))


def test_gc_refuses_over_a_lost_chunked_value_inside_a_constant_with_old_chunks(project):
    """Such a child may have been a chunked manifest: gc still refuses while old chunks it may
    have named are there to be deleted (as for a dict value's lost child)."""
    from scistack.objects.canonical_json import json_refs
    from scistack.objects.chunking import set_chunking
    from scistack.objects.codec import child_oids
    from scistack.records import read_call

    set_chunking(threshold=1 << 10, chunk_bytes=256)  # (before the first save: the project records it)
    try:
        GcA.save(np.arange(4.0), subject=1)
        call = GcC.save(gc_weighted(GcA.load(subject=1), {"w": np.arange(512.0), "name": "ramp"}), subject=1).call
    finally:
        set_chunking()
    (manifest,) = json_refs(read_call(project.store, call).arguments["weights"].const)
    assert project.store.kind_of(manifest) == "chunked"
    chunks = [oid for oid, _ in child_oids("chunked", project.store.get(manifest).payload)]
    _unlink_object(project, manifest)
    with pytest.raises(GarbageCollectionError, match=rf'missing \(e.g. {manifest[:12]}, value\["w"\] of json'):
        collect_garbage(project, grace_seconds=0)
    assert chunks and all(project.store.contains(oid) for oid in chunks)


@lineage_fcn
def gc_summed(parts):
    return sum(np.sum(p) for p in parts)


def test_gc_refuses_when_a_container_argument_s_stored_tree_is_lost_and_keeps_its_array(project):
    """A list argument holding a loaded value and an array is stored as its tree, the array a
    `{"$ref"}` in it (the record names the loaded value only, as an item). The tree was
    optional to gc (records written before it was stored name one never stored), so a lost
    tree marked nothing missing and gc deleted the array it named: damage became data loss."""
    from scistack.fsck import fsck
    from scistack.objects.store import hash_value
    from scistack.records import read_call

    GcA.save(np.arange(4.0), subject=1)
    call = GcC.save(gc_summed([GcA.load(subject=1), np.arange(50.0)]), subject=1).call
    tree = read_call(project.store, call).arguments["parts"].oid
    ramp = hash_value(np.arange(50.0))
    assert project.store.contains(tree) and project.store.contains(ramp)
    _unlink_object(project, tree)
    with pytest.raises(GarbageCollectionError, match=rf"missing \(e.g. {tree[:12]}, input 'parts'.*fsck"):
        collect_garbage(project, grace_seconds=0)
    assert project.store.contains(ramp)
    assert tree[:12] in str(fsck(project))


def _chunked_dict(project) -> tuple[str, str, list[str]]:
    """A saved dict whose array is chunked: (its oid, the manifest's, the chunks')."""
    from scistack.objects.chunking import set_chunking
    from scistack.objects.codec import child_oids

    set_chunking(threshold=1 << 10, chunk_bytes=256)
    try:
        raw = GcA.save({"signal": np.arange(512.0), "rate": 100}, subject=1).record.oid
    finally:
        set_chunking()
    (manifest,) = [oid for oid, _ in child_oids("json", project.store.get(raw).payload)]
    return raw, manifest, [oid for oid, _ in child_oids("chunked", project.store.get(manifest).payload)]


def test_gc_refuses_over_a_chunked_manifest_whose_header_is_damaged(project):
    """One flipped bit in a manifest's header ("bhunked"): the walk took the kind it read for
    a leaf's, the chunks looked unreachable and `gc --prune=now` deleted them all (the value
    was lost for good). A kind that is none scistack writes is damage: gc refuses."""
    raw, manifest, chunks = _chunked_dict(project)
    path = project.store.path_of(manifest)
    os.chmod(path, 0o644)
    data = bytearray(path.read_bytes())
    data[0] ^= 0x01
    path.write_bytes(bytes(data))
    assert project.store.kind_of(manifest) not in ("chunked", None)
    for dry_run in (True, False):
        with pytest.raises(GarbageCollectionError, match=rf"corrupt \(e.g. {manifest[:12]}: .*scistack fsck"):
            collect_garbage(project, grace_seconds=0, dry_run=dry_run)
    assert chunks and all(project.store.contains(oid) for oid in chunks)


def test_gc_judges_lost_manifests_chunks_old_by_the_cutoff_it_deletes_by(project, monkeypatch):
    """gc read the clock once to judge whether a lost manifest's chunks were old (refuse) and
    again, after listing and dropping names, to delete what was old: a chunk younger than the
    first cutoff but older than the second was neither refused over nor kept. One cutoff now.
    (A clock that moves 1000 s at each reading stands for the time those steps took.)"""
    raw, manifest, chunks = _chunked_dict(project)
    _unlink_object(project, manifest)
    start = time.time()
    readings = iter(range(1, 1000))
    monkeypatch.setattr(gc_module, "time", type("Clock", (), {"time": staticmethod(
        lambda: start + 1000.0 * next(readings))}))
    for chunk in chunks:  # younger than the second reading, older than the third
        os.utime(project.store.path_of(chunk), (start + 2500.0, start + 2500.0))
    try:
        collect_garbage(project, grace_seconds=0)
    except GarbageCollectionError:
        pass  # (refusing is safe too)
    assert chunks and all(project.store.contains(oid) for oid in chunks)


def test_parse_prune():
    assert parse_prune("now") == 0 and parse_prune("never") == float("inf")
    assert parse_prune("2.weeks.ago") == DEFAULT_GRACE_SECONDS
    assert parse_prune("3.days.ago") == 3 * DAY and parse_prune("1.hour.ago") == 3600
    assert parse_prune("90.seconds") == 90
    for bad in ("yesterday", "2.fortnights.ago", "-1.days.ago", ""):
        with pytest.raises(ValueError):
            parse_prune(bad)


class Packed(BaseVariable):
    pass


def test_gc_reclaims_packed_objects_and_keeps_live_ones(project):
    with project.batch():  # small objects saved in a batch live in one pack
        for i in range(20):
            Packed.save(np.full(8, float(i)), subject=i, session="pre")
    assert list(project.store.packs.directory.glob("pack-*.idx"))
    doomed = [Packed.load(subject=i, session="pre").oid for i in range(10)]
    Packed.delete(subject=list(range(10)))
    stats = collect_garbage(project, grace_seconds=0)
    assert stats.objects_deleted == 10
    assert not any(project.store.contains(oid) for oid in doomed)
    for i in range(10, 20):
        assert Packed.load(subject=i, session="pre").data[0] == float(i)
    assert len(list(project.store.packs.directory.glob("pack-*.idx"))) == 1


def _gc_halve(value):
    return value / 2


@lineage_fcn
def gc_halved(value):
    return _gc_halve(value)


def test_a_call_after_a_gc_took_its_code_names_code_the_store_has_again(project):
    """A process runs a function, deletes what it made and collects the garbage (the code
    objects go with the last record naming them), then calls the function again: the new
    record's code and helpers' code are in the store again (a process remembers the function
    part of its records, so it must not remember it across a gc)."""
    from scistack.records import read_call

    GcA.save(np.arange(4.0), subject=1)
    GcB.save(gc_halved(GcA.load(subject=1)), subject=1)
    first = read_call(project.store, GcB.load(subject=1).call).function
    code = [first.code, *(h.code for h in first.helpers.values())]
    assert len([c for c in code if c]) == 2
    GcB.delete(subject=1)
    collect_garbage(project, grace_seconds=0)
    assert not any(project.store.contains(c) for c in code if c)  # (else this test proves nothing)

    again = gc_halved(GcA.load(subject=1))
    assert not again.cached
    function = read_call(project.store, again.call).function
    assert function.code == first.code and project.store.contains(function.code)
    assert all(project.store.contains(h.code) for h in function.helpers.values() if h.code)


def test_a_cache_hit_after_a_gc_names_a_call_record_the_store_has(project):
    """The same values at another address are a cache hit whose result names a record of its
    own (made at the first such hit, and remembered); a gc that pruned that record, never
    saved, must not leave the next hit naming it."""
    from scistack.records import read_call

    for subject in (1, 2):
        GcA.save(np.arange(4.0), subject=subject)  # one value at two addresses
    GcB.save(gc_halved(GcA.load(subject=1)), subject=1)
    first = gc_halved(GcA.load(subject=2))
    assert first.cached and first.call != GcB.load(subject=1).call  # its own record
    collect_garbage(project, grace_seconds=0)
    assert not project.store.contains(first.call)  # (never saved: pruned)

    again = gc_halved(GcA.load(subject=2))
    assert again.cached and project.store.contains(again.call)
    assert read_call(project.store, again.call).arguments["value"].addr == {"subject": 2}


def _loaded_then_collected(project, value, *, packed: bool = False):
    """GcB computed from GcA (in a batch, which packs them, if `packed`), loaded, then both
    deleted and collected: the loaded value in hand, its object and call record gone."""
    from contextlib import nullcontext

    with project.batch() if packed else nullcontext():
        GcA.save(value, subject=1)
        GcB.save(gc_halved(GcA.load(subject=1)), subject=1)
    loaded = GcB.load(subject=1)
    assert (project.store.packs.pack_path(loaded.oid) is not None) == packed
    GcB.delete(subject=1)
    GcA.delete(subject=1)
    collect_garbage(project, grace_seconds=0)
    assert not project.store.contains(loaded.call) and not project.store.contains(loaded.oid)
    return loaded


def test_a_loaded_value_saved_after_a_gc_took_its_lineage_names_no_missing_record(project):
    """A value loaded, its records deleted and collected (value and call record), then saved
    under another name: the value is put again from memory; the call record cannot be, so
    the new record names none (and says why) rather than one the store lacks."""
    loaded = _loaded_then_collected(project, np.arange(4.0))

    with pytest.warns(UserWarning, match="lineage"):
        saved = GcC.save(loaded, subject=1)
    assert project.store.contains(saved.oid)
    assert saved.call is None or project.store.contains(saved.call)
    np.testing.assert_array_equal(GcC.load(subject=1).data, np.arange(4.0) / 2)


def test_a_loaded_dict_saved_again_stores_an_array_gone_from_the_store(project):
    """A dict of arrays is a dict object naming one object per array. Saving the loaded dict
    again freshened the dict's object only: an array gone since (collected, removed by hand)
    was named again, and the new ref's value could not be loaded."""
    from scistack.objects.codec import child_oids

    raw = GcA.save({"signal": np.arange(6.0), "rate": 100}, subject=1).record.oid
    (array,) = [oid for oid, _ in child_oids("json", project.store.get(raw).payload)]
    loaded = GcA.load(subject=1)
    _unlink_object(project, array)
    GcB.save(loaded, subject=1)
    assert project.store.contains(array)
    assert GcB.load(subject=1).data["signal"].tolist() == list(np.arange(6.0))


def test_a_computed_value_loaded_in_one_project_and_saved_in_another_brings_its_lineage(project, tmp_path):
    """As a result computed in memory does: the call record, its inputs and code are copied
    over, so `why` and fsck see whole lineage in the second project."""
    from scistack.records import read_call

    GcA.save(np.arange(4.0), subject=1)
    GcB.save(gc_halved(GcA.load(subject=1)), subject=1)
    loaded = GcB.load(subject=1)
    other = configure_database(tmp_path / "other" / "o.duckdb", ["subject"])
    try:
        saved = GcC.save(loaded, subject=7)
        assert saved.call == loaded.call
        record = read_call(other.store, saved.call)
        assert other.store.contains(record.function.code)
        assert all(other.store.contains(item.oid) for item in record.arguments.values())
        assert other.call_record(saved.call)["function"]["name"] == "gc_halved"
    finally:
        other.close()


def test_a_result_saved_after_a_gc_took_its_call_record_names_no_missing_record(project):
    """A result computed, not saved, then a gc (its value and call record unnamed: collected),
    then saved: the value is put again from memory; the call record is gone, so the record
    names none (and says why) rather than one the store lacks."""
    GcA.save(np.arange(4.0), subject=1)
    result = gc_halved(GcA.load(subject=1))
    collect_garbage(project, grace_seconds=0)
    assert not project.store.contains(result.call)

    with pytest.warns(UserWarning, match="lineage"):
        saved = GcC.save(result, subject=1)
    assert project.store.contains(saved.oid)
    assert saved.call is None or project.store.contains(saved.call)


@pytest.mark.parametrize("packed", [False, True])
def test_a_loaded_value_passed_to_a_call_after_a_gc_took_it_is_stored_again(project, packed):
    """A value loaded, its records deleted and collected (value and call record), then given
    to a new call: the call's record names the input by its oid, so the value is put again
    from memory (fsck finds nothing missing); the input's own call record cannot be, so the
    new record names none for it (and says why). Loose objects, and objects a batch packed."""
    from scistack.fsck import fsck
    from scistack.records import read_call

    loaded = _loaded_then_collected(project, np.arange(6.0), packed=packed)

    with pytest.warns(UserWarning, match="lineage") as said:
        result = gc_scale(loaded, 3.0)
    assert said[0].filename == __file__
    GcC.save(result, subject=1)
    record = read_call(project.store, result.call)
    named = record.arguments["value"]
    assert named.oid == loaded.oid and project.store.contains(named.oid)
    assert named.call is None
    np.testing.assert_array_equal(project.store.get_value(named.oid), np.arange(6.0) / 2)
    assert [p for p in fsck(project).problems if "missing" in p.kind] == []


def test_a_result_saved_again_after_a_gc_then_given_to_a_call_names_no_collected_record(project):
    """Found by the state machine above: a result computed, collected by a gc (never saved),
    saved (its value put again, its call record gone: saved without it), then given to a new
    call. The store has the value again, but not the record that made it: the new call's
    record must not name that one either."""
    from scistack.records import read_call

    GcA.save(np.arange(4.0), subject=1)
    result = gc_scale(GcA.load(subject=1), 5)
    collect_garbage(project, grace_seconds=0)
    with pytest.warns(UserWarning, match="lineage"):
        GcB.save(result, subject=1)
    with pytest.warns(UserWarning, match="lineage"):
        again = gc_scale(result, 7)
    saved = GcC.save(again, subject=1)
    collect_garbage(project, grace_seconds=0)
    named = read_call(project.store, saved.call).arguments["value"]
    assert project.store.contains(named.oid) and named.call is None


_DELETE_AND_COLLECT = """
import sys
from scistack import BaseVariable, configure_database
from scistack.gc import collect_garbage
class GcA(BaseVariable): pass
db = configure_database(sys.argv[1])
GcA.delete(subject=1)
collect_garbage(db)  # the default grace: the input's object is older than it
db.close()
"""


@lineage_fcn
def gc_doubled_while_another_collects(value, project_path, script):
    import subprocess
    import sys as _sys

    subprocess.run([_sys.executable, "-c", script, project_path], check=True)
    return value * 2


def test_an_input_another_process_collects_during_a_run_fails_that_combination(project, python_env,
                                                                              monkeypatch):
    """for_each binds no value to its inputs (it reads them afresh): when another process
    deletes an input's records and its gc collects the old object while the run computes,
    the call record must neither store a stand-in (an object holding None) for it nor name
    an object the store lacks. The combination fails, saying why; nothing is saved."""
    from scistack.fsck import fsck

    from scistack.objects.store import hash_value

    monkeypatch.setenv("PYTHONPATH", python_env["PYTHONPATH"])  # (the other process: this checkout)
    GcA.save(np.arange(3.0), subject=1)
    source = GcA.load(subject=1)
    path = project.store.path_of(source.oid)
    old = time.time() - 30 * DAY
    os.utime(path, (old, old))
    report = for_each(gc_doubled_while_another_collects,
                      inputs={"value": GcA, "project_path": str(project.path), "script": _DELETE_AND_COLLECT},
                      outputs=[GcC], subject=[1], progress=False)
    assert [item.status for item in report.items] == ["failed"]
    assert "'value' (GcA): deleted and collected by a gc" in report.items[0].error
    assert not project.store.contains(source.oid)  # collected meanwhile, as the other process chose
    assert not project.store.contains(hash_value(None))
    assert GcC.load_all() == [] and fsck(project).ok


@lineage_fcn
def gc_total(values):
    return sum(float(np.sum(v)) for v in values)


def test_loaded_values_in_a_list_passed_to_a_call_after_a_gc_took_them_are_stored_again(project):
    """As a loaded value given directly: values loaded, their records deleted and collected,
    then given to a new call inside a list. The record names each item by its oid, so each
    is put again from memory; their own call records cannot be, so the items name none (and
    say why). fsck then finds nothing missing."""
    from scistack.fsck import fsck
    from scistack.records import read_call

    loaded = _loaded_then_collected(project, np.arange(6.0))
    GcA.save(np.ones(2), subject=2)
    kept = GcA.load(subject=2)

    with pytest.warns(UserWarning, match="lineage") as said:
        result = gc_total([loaded, kept])
    assert said[0].filename == __file__  # (the warning names the line that made the call)
    GcC.save(result, subject=1)
    items = read_call(project.store, result.call).arguments["values"].items
    assert sorted(items) == ["values[0]", "values[1]"]
    assert items["values[0]"].oid == loaded.oid and items["values[0]"].call is None
    assert items["values[1]"].oid == kept.oid
    np.testing.assert_array_equal(project.store.get_value(loaded.oid), np.arange(6.0) / 2)
    assert [p for p in fsck(project).problems if "missing" in p.kind] == []
    assert result.data == 7.5 + 2
