"""A value named again on one machine while another machine's gc runs keeps its object.

gc's grace is the bucket's clock: a loose object is refreshed by a re-put when older than
`REFRESH_AFTER`, but one that sits only in a bucket pack got no fresher time when a batch named
it again (packs are never re-uploaded), so a gc that listed the live set a moment before deleted
the pack with it, and the new name pointed at nothing. "Old" here is made as the other lab gc
tests make it: `PRUNE_FLOOR` and the grace at 0, and the naming machine's `REFRESH_AFTER` at 0
(as if an hour had passed since the pack went up). Machine A's naming runs in its own process,
between B's gc listing the bucket and deleting (`_bucket_listing` returns, then the drops and
the deletion follow)."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
import time

import numpy as np
import pytest

import scistack.gc as gc_module
import scistack.objects.s3 as s3_module
from scistack.gc import collect_garbage

from .test_lab_objects import LabValue, machine  # noqa: F401 - `machine` is a fixture
from .test_lab_uploads import LabTripled

_OPEN = textwrap.dedent("""
    import sys
    import numpy as np
    import scistack.objects.s3 as s3_module
    from scistack import BaseVariable, configure_database, for_each, lineage_fcn
    s3_module.REFRESH_AFTER = float(sys.argv[4])  # 0: the bucket's packs are an hour old
    class LabValue(BaseVariable):
        pass
    class LabTripled(BaseVariable):
        pass
    @lineage_fcn
    def lab_tripled(value):
        return value * 3
    db = configure_database(sys.argv[1] + "/gait.duckdb", ["subject", "session"], shared=sys.argv[2],
                            objects=sys.argv[3])
""")

NAME_AGAIN_IN_A_BATCH = _OPEN + textwrap.dedent("""
    with db.batch():
        for i in range(3):
            LabValue.save(np.array([i, 7]), subject=2, session=i)
    db.close()
""")

FOR_EACH = _OPEN + textwrap.dedent("""
    report = for_each(lab_tripled, inputs={"value": LabValue}, outputs=[LabTripled], subject=[1],
                      session=[0, 1, 2], progress=False)
    assert report.failed == 0, report
    print("ran", report.ran, "cached", report.cached, flush=True)
    db.close()
""")


def _run(script: str, folder, pg_url, bucket_url, env, refresh_after: float = 0.0) -> str:
    done = subprocess.run([sys.executable, "-c", script, str(folder), pg_url, bucket_url, str(refresh_after)],
                          env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    return done.stdout


def _while_listed(monkeypatch, action) -> list[bool]:
    """Run `action` once gc has listed the bucket and judged what is live, before it deletes."""
    listing, ran = gc_module._bucket_listing, []

    def listed_then_named(db, reachable):
        result = listing(db, reachable)
        action()
        ran.append(True)
        return result

    monkeypatch.setattr(gc_module, "_bucket_listing", listed_then_named)
    return ran


@pytest.mark.parametrize("namer", ["a", "d"])
def test_a_packed_value_a_batch_names_again_during_another_machines_gc_still_loads(
        machine, monkeypatch, pg_url, bucket_url, tmp_path, python_env, s3_server, namer):
    """`a` has the pack in its cache (the batch finds its objects packed there: `_send_packed`);
    `d` is a fresh checkout whose batch packs the same objects into a pack of the same name,
    which the bucket already holds (`flush`: created-if-absent, so never made young)."""
    (tmp_path / namer).mkdir(exist_ok=True)
    db = machine("a")
    with db.batch():  # one pack in the bucket, and in a's cache
        for i in range(3):
            LabValue.save(np.array([i, 7]), subject=1, session=i)
    for i in range(3):
        LabValue.delete(subject=1, session=i)  # unnamed: gc may free them
    b = machine("b")
    monkeypatch.setattr(gc_module, "PRUNE_FLOOR", 0.0)
    env = python_env | s3_server.env()
    ran = _while_listed(monkeypatch, lambda: _run(NAME_AGAIN_IN_A_BATCH, tmp_path / namer, pg_url, bucket_url, env))
    collect_garbage(b, grace_seconds=0)
    assert ran
    machine("c")  # a colleague's fresh checkout: only what the bucket holds
    assert [LabValue.load(subject=2, session=i).data.tolist() for i in range(3)] == [[i, 7] for i in range(3)]


def test_a_young_packed_value_a_batch_names_again_uploads_nothing(machine, pg_url, bucket_url, tmp_path,
                                                                  python_env, s3_server):
    """The common case stays cheap: a pack younger than `REFRESH_AFTER / 2` is young for gc
    already, and a batch naming its objects again sends nothing."""
    from .test_lab_objects import _bucket

    db = machine("a")
    with db.batch():
        for i in range(3):
            LabValue.save(np.array([i, 7]), subject=1, session=i)
    db.close()
    keys = sorted(_bucket(s3_server, bucket_url)[3])
    _run(NAME_AGAIN_IN_A_BATCH, tmp_path / "a", pg_url, bucket_url, python_env | s3_server.env(),
         refresh_after=3600.0)
    assert sorted(_bucket(s3_server, bucket_url)[3]) == keys


def test_a_cache_hit_naming_packed_outputs_again_during_another_machines_gc_still_loads(
        machine, monkeypatch, pg_url, bucket_url, tmp_path, python_env, s3_server):
    machine("a")
    for i in range(3):
        LabValue.save(np.arange(4.0) + i, subject=1, session=i)
    env = python_env | s3_server.env()
    assert "ran 3 cached 0" in _run(FOR_EACH, tmp_path / "a", pg_url, bucket_url, env)  # outputs packed
    machine("a")
    for i in range(3):
        LabTripled.delete(subject=1, session=i)  # unnamed: gc may free them (and drop the entry)
    b = machine("b")
    monkeypatch.setattr(gc_module, "PRUNE_FLOOR", 0.0)
    hits = []
    ran = _while_listed(monkeypatch, lambda: hits.append(_run(FOR_EACH, tmp_path / "a", pg_url, bucket_url, env)))
    collect_garbage(b, grace_seconds=0)
    assert ran and "ran 0 cached 3" in hits[0], hits  # served from the cache, named again
    machine("c")
    assert [LabTripled.load(subject=1, session=i).data.tolist() for i in range(3)] == \
        [((np.arange(4.0) + i) * 3).tolist() for i in range(3)]


def test_a_save_finding_its_object_older_than_half_refresh_after_puts_it_again(machine, monkeypatch, s3_server,
                                                                              bucket_url):
    """An object found in the bucket between `REFRESH_AFTER / 2` and `REFRESH_AFTER` old is
    re-put: its name may be journalled minutes later (a large value still uploading other
    chunks), and a gc in between, whose grace is `REFRESH_AFTER` (an hour), deleted it when
    only objects older than `REFRESH_AFTER` were re-put. The hour is scaled down: the object is
    left to age a few seconds (by the bucket's clock), and `REFRESH_AFTER` set just above."""
    from .test_lab_objects import _bucket

    machine("a")
    value = np.arange(20_000.0)  # loose (above the pack bound), uploaded by a single save
    oid = LabValue.save(value, subject=1, session=1).oid
    client, bucket, prefix, _ = _bucket(s3_server, bucket_url)
    key = f"{prefix}/objects/{oid[:2]}/{oid[2:]}"
    put_at = client.head_object(Bucket=bucket, Key=key)["LastModified"].timestamp()
    machine("b")  # another machine: it has not put the object itself
    deadline = time.time() + 60
    while time.time() - put_at < 6.0 and time.time() < deadline:  # (the bucket's clock, in whole seconds)
        time.sleep(0.1)
    age = time.time() - put_at
    monkeypatch.setattr(s3_module, "REFRESH_AFTER", age + 6.0)  # the object: over half of it old, not all
    assert LabValue.save(value, subject=1, session=2).oid == oid
    assert client.head_object(Bucket=bucket, Key=key)["LastModified"].timestamp() > put_at


GC_ELSEWHERE = textwrap.dedent("""
    import sys
    import scistack.gc as gc_module
    from scistack import configure_database
    from scistack.gc import collect_garbage
    gc_module.PRUNE_FLOOR = 0.0  # as if the save had run for over an hour
    db = configure_database(sys.argv[1] + "/gait.duckdb", ["subject", "session"], shared=sys.argv[2],
                            objects=sys.argv[3])
    print("deleted", collect_garbage(db, grace_seconds=0).objects_deleted, flush=True)
    db.close()
""")


class _Recording(np.ndarray):
    """A large array whose reading of its last block first runs `midway` (once): what a save
    that has run for hours meets while it still reads and uploads its later chunks."""

    midway = None

    def __getitem__(self, key):
        block = super().__getitem__(key)
        if type(self).midway is not None and isinstance(key, tuple) and key and isinstance(key[0], slice) \
                and key[0].start and key[0].stop == len(self):
            midway, type(self).midway = type(self).midway, None
            midway()
        return np.asarray(block)


def test_a_long_chunked_save_names_no_chunk_another_machines_gc_deleted_meanwhile(
        machine, monkeypatch, pg_url, bucket_url, tmp_path, python_env, s3_server):
    """A chunked save writes its chunks first and names the manifest last. In a lab a gc on
    another machine cannot see this writer, and keeps only what is younger than `PRUNE_FLOOR`
    (an hour): a save running longer (a TB recording uploading for hours) had its first chunks
    deleted before its manifest was named, and the save returned naming missing chunks (every
    load failed). Chunks of a manifest about to be named are made young again when this
    process last knew them young more than `REFRESH_AFTER / 2` ago (put again from this
    machine's cache, where gc deleted them). The hour is scaled down: `REFRESH_AFTER` 4 s, the
    first chunks left to age past its half, the other machine's floor at 0."""
    from scistack.objects.chunking import set_chunking

    (tmp_path / "b").mkdir()
    db = machine("a")
    monkeypatch.setattr(s3_module, "REFRESH_AFTER", 4.0)
    value = np.arange(3000.0).reshape(300, 10).view(_Recording)
    deleted = []

    def gc_elsewhere():
        db.store.wait_uploads()  # the first chunks are in the bucket, unnamed
        started = time.time()
        deleted.append(_run(GC_ELSEWHERE, tmp_path / "b", pg_url, bucket_url, python_env | s3_server.env()))
        time.sleep(max(0.0, 2.5 - (time.time() - started)))  # older than REFRESH_AFTER / 2 now

    _Recording.midway = gc_elsewhere
    set_chunking(threshold=1000, chunk_bytes=2000)
    try:
        saved = LabValue.save(value, subject=1, session=1)
    finally:
        set_chunking()
    assert deleted and int(deleted[0].split()[-1]) > 0, deleted  # the gc freed the first chunks
    assert json.loads(bytes(db.store.get(saved.oid).payload))["type"] == "array"
    machine("c")  # a colleague's fresh checkout: only what the bucket holds
    assert np.array_equal(LabValue.load(subject=1, session=1).data, np.arange(3000.0).reshape(300, 10))


GC_WITH_GRACE = textwrap.dedent("""
    import sys
    from scistack import configure_database
    from scistack.gc import collect_garbage
    db = configure_database(sys.argv[1] + "/gait.duckdb", ["subject", "session"], shared=sys.argv[2],
                            objects=sys.argv[3])
    print("deleted", collect_garbage(db, grace_seconds=float(sys.argv[4])).objects_deleted, flush=True)
    db.close()
""")


def test_a_long_chunked_save_with_no_pruning_gc_meanwhile_puts_no_chunk_again(
        machine, monkeypatch, pg_url, bucket_url, tmp_path, python_env, s3_server):
    """The check before a long save's name (previous test) cost a save bound by its upload
    about twice its time: each chunk older than `REFRESH_AFTER / 2` was put again, to guard
    against a short-grace gc elsewhere that had not run. Now such a gc records its cutoff in
    the bucket (`gc-pruning/`) before it reads the journal, and the save looks there: a gc
    whose cutoff reaches none of its chunks (here an hour's grace, recorded: shorter than the
    default) and no gc at all put nothing again. Scaled down as above: `REFRESH_AFTER` 4 s,
    the first chunks older than its half when the manifest is named."""
    from scistack.objects.chunking import set_chunking

    from .test_lab_objects import _bucket

    (tmp_path / "b").mkdir()
    db = machine("a")
    monkeypatch.setattr(s3_module, "REFRESH_AFTER", 4.0)
    client, bucket, prefix, _ = _bucket(s3_server, bucket_url)

    def put_times() -> dict[str, float]:
        keys = _bucket(s3_server, bucket_url)[3]
        return {key: client.head_object(Bucket=bucket, Key=key)["LastModified"].timestamp()
                for key in keys if key.startswith(f"{prefix}/objects/".lstrip("/"))}

    for grace in ("3600", None):  # an hour's gc elsewhere meanwhile, then none
        value = (np.arange(3000.0).reshape(300, 10) + (0 if grace else 1)).view(_Recording)
        first: dict[str, float] = {}

        def midway():
            db.store.wait_uploads()  # the first chunks are in the bucket, unnamed
            first.update(put_times())
            started = time.time()
            if grace is not None:
                out = _run(GC_WITH_GRACE, tmp_path / "b", pg_url, bucket_url, python_env | s3_server.env(), grace)
                assert out.split()[-1] == "0", out
            time.sleep(max(0.0, 2.5 - (time.time() - started)))  # older than REFRESH_AFTER / 2 now

        _Recording.midway = midway
        set_chunking(threshold=1000, chunk_bytes=2000)
        try:
            LabValue.save(value, subject=1, session=3 if grace else 4)
        finally:
            set_chunking()
        assert first, "the save never reached its last block"
        after = put_times()
        assert {key: after.get(key) for key in first} == first  # not one put again
        if grace is not None:  # the gc left its record
            assert any(key.startswith(f"{prefix}/gc-pruning/".lstrip("/")) for key in _bucket(s3_server, bucket_url)[3])
    machine("c")  # a colleague's fresh checkout
    assert np.array_equal(LabValue.load(subject=1, session=4).data, np.arange(3000.0).reshape(300, 10) + 1)


def test_a_long_chunked_save_after_a_recorded_pruning_gc_looks_and_puts_again_only_under_a_running_one(
        machine, monkeypatch, bucket_url, s3_server):
    """A recorded gc whose cutoff reaches a long save's first chunks: finished (no `gc.lock`),
    the chunks found in the bucket are left as they are (a HEAD each); while its lock is held
    it may still delete them, and they are put again before the name. The record and the lock
    are written here as another machine's gc writes them; scaled as above."""
    from scistack.objects.chunking import set_chunking

    from .test_lab_objects import _bucket

    db = machine("a")
    monkeypatch.setattr(s3_module, "REFRESH_AFTER", 4.0)
    client, bucket, prefix, _ = _bucket(s3_server, bucket_url)
    key_of = lambda name: f"{prefix}/{name}".lstrip("/")  # noqa: E731

    def put_times() -> dict[str, float]:
        return {key: client.head_object(Bucket=bucket, Key=key)["LastModified"].timestamp()
                for key in _bucket(s3_server, bucket_url)[3] if key.startswith(key_of("objects/"))}

    try:
        for running in (False, True):
            value = (np.arange(3000.0).reshape(300, 10) + running).view(_Recording)
            first: dict[str, float] = {}

            def midway():
                db.store.wait_uploads()  # the first chunks are in the bucket, unnamed
                first.update(put_times())
                time.sleep(1.0)
                client.put_object(Bucket=bucket, Key=key_of(f"gc-pruning/{time.time():.3f}-elsewhere"), Body=b"{}")
                if running:
                    client.put_object(Bucket=bucket, Key=key_of("gc.lock"), Body=json.dumps(
                        {"host": "elsewhere", "pid": 1, "since": time.time()}).encode())
                time.sleep(1.6)  # older than REFRESH_AFTER / 2 now

            _Recording.midway = midway
            set_chunking(threshold=1000, chunk_bytes=2000)
            try:
                LabValue.save(value, subject=1, session=5 + running)
            finally:
                set_chunking()
            assert first, "the save never reached its last block"
            after = put_times()
            changed = [key for key in first if after[key] != first[key]]
            if running:
                assert changed, "under a running gc the reached chunks are put again"
            else:
                assert changed == []  # finished: looked at, not put again
    finally:
        client.delete_object(Bucket=bucket, Key=key_of("gc.lock"))
    machine("c")
    for running in (False, True):
        assert np.array_equal(LabValue.load(subject=1, session=5 + running).data,
                              np.arange(3000.0).reshape(300, 10) + running)
