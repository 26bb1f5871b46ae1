"""The shared S3 object store: create-if-absent, verified reads, packs, a bounded local cache."""

from __future__ import annotations

import json
import struct
import subprocess
import sys
import textwrap

import numpy as np
import pytest

import scistack.database as database_module
from scistack import BaseVariable, configure_database, lineage_fcn
from scistack.errors import SharedAccessError, VariableNotFoundError, CorruptObjectError, GarbageCollectionError, SchemaMismatchError, SharedServiceError
import scistack.gc as gc_module
from scistack.gc import collect_garbage
from scistack.fsck import fsck
from scistack.objects.codec import child_oids
from scistack.index.pgjournal import PostgresJournal

from .conftest import WRITER_PASSWORD, TcpRelay, frozen_while


class LabValue(BaseVariable):
    pass


class LabPeak(BaseVariable):
    pass


@lineage_fcn
def lab_emg_peak(value):
    return float(np.max(value["emg"]))


@pytest.fixture
def machine(tmp_path, monkeypatch, pg_url, bucket_url):
    """`machine(name)` opens the lab project in its own folder (its own cache), like another
    workstation; the previous one is closed first."""

    def open_(name: str, **kwargs):
        current = database_module.current_database()
        if current is not None:
            current.close()
        folder = tmp_path / name
        folder.mkdir(exist_ok=True)
        monkeypatch.chdir(folder)
        return configure_database(folder / "gait.duckdb", ["subject", "session"], shared=pg_url,
                                  objects=bucket_url, **kwargs)

    yield open_
    current = database_module.current_database()
    if current is not None:
        current.close()


def _bucket(s3_server, url: str):
    client = s3_server.client()
    bucket, _, prefix = url.removeprefix("s3://").partition("/")
    keys = [o["Key"] for page in client.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix)
            for o in page.get("Contents", [])]
    return client, bucket, prefix, keys


def _damage_in_bucket(s3_server, url: str, oid: str) -> bytes:
    """Flip the last byte of object `oid` in the bucket; the damaged bytes."""
    client, bucket, prefix, keys = _bucket(s3_server, url)
    key = f"{prefix}/objects/{oid[:2]}/{oid[2:]}"
    assert key in keys
    body = bytearray(client.get_object(Bucket=bucket, Key=key)["Body"].read())
    body[-1] ^= 0xFF
    client.put_object(Bucket=bucket, Key=key, Body=bytes(body))
    return bytes(body)


def test_a_second_load_never_touches_the_network(machine, monkeypatch, pg_url, tmp_path, refused_port):
    machine("a")
    LabValue.save(np.arange(100_000.0), subject=1, session=1)
    machine("b")
    assert LabValue.load(subject=1, session=1).data[-1] == 99_999.0  # fetched once
    database_module.current_database().close()
    monkeypatch.setenv("AWS_ENDPOINT_URL", f"http://127.0.0.1:{refused_port}")  # nothing listens
    db = machine("b")
    assert LabValue.load(subject=1, session=1).data[-1] == 99_999.0  # from the local cache
    with pytest.raises(SharedServiceError, match="object store"):
        LabValue.save(np.arange(3.0), subject=2, session=1)  # S3 unreachable mid-save
    with pytest.raises(VariableNotFoundError):
        LabValue.load(subject=2, session=1)  # no name was recorded for the failed save
    with pytest.raises(SharedServiceError, match="object store"):
        with db.batch():  # the batch's pack cannot be uploaded: none of its names is journalled
            for i in range(3):
                LabValue.save(np.array([i]), subject=3, session=i)
    with pytest.raises(SharedServiceError, match="uploading a pack"):
        db.close()  # the held names wait for their pack: a retry uploads it first, or fails
    database_module._current = None
    journal = PostgresJournal(pg_url, tmp_path / "check")
    try:
        entries, _ = journal.read_from(0)
    finally:
        journal.close()
    assert [e["addr"]["subject"] for e in entries if e["op"] == "put"] == [1]
    assert db.store.cache_bytes() > 0


def test_batches_upload_whole_packs_read_back_by_ranged_gets(machine, s3_server, bucket_url):
    db = machine("a")
    with db.batch():
        for i in range(50):
            LabValue.save(np.array([i]), subject=i, session=1)
    _, _, _, keys = _bucket(s3_server, bucket_url)
    packs = [k for k in keys if "/pack/" in k]
    assert len([k for k in packs if k.endswith(".pack")]) == 1 and len(packs) == 2
    assert not [k for k in keys if "/objects/" in k]  # small values went up in the pack only
    machine("b")
    assert [LabValue.load(subject=i, session=1).data.tolist() for i in (0, 49)] == [[0], [49]]


@pytest.mark.parametrize("kept", [10, 20])
def test_a_pack_index_in_the_bucket_cut_short_is_named_damaged(machine, s3_server, bucket_url, kept):
    """Read through pack.parse_idx, as every reader of the format reads it: one cut inside its
    16-byte head had raised struct.error from the machine fetching it, not SharedServiceError."""
    db = machine("a")
    with db.batch():
        for i in range(3):
            LabValue.save(np.array([i]), subject=i, session=1)
    client, bucket, _, keys = _bucket(s3_server, bucket_url)
    (key,) = [k for k in keys if k.endswith(".idx")]
    body = client.get_object(Bucket=bucket, Key=key)["Body"].read()
    client.put_object(Bucket=bucket, Key=key, Body=body[:kept])
    machine("b")
    with pytest.raises(SharedServiceError, match="a pack index in the object store is damaged"):
        LabValue.load(subject=1, session=1)


def test_chunked_and_nested_values_read_on_another_machine_whole_lazily_and_pickled(machine):
    # the S3 store's own `_fetch` (bytes of the bucket) hid the getter decoding uses: every
    # chunked value and every dict holding an array was reported CORRUPT on a lab project
    import pickle

    import pandas as pd

    from scistack.objects.chunking import set_chunking

    signal = np.arange(3000.0).reshape(300, 10)
    frame = pd.DataFrame({"x": np.arange(1000.0)})
    machine("a")
    set_chunking(threshold=1000, chunk_bytes=2000)
    try:
        LabValue.save(signal, subject=1, session=1)
        LabValue.save({"a": np.arange(5.0), "b": [np.arange(3)]}, subject=2, session=1)
        LabValue.save(frame, subject=3, session=1)
    finally:
        set_chunking()
    machine("b")
    np.testing.assert_array_equal(LabValue.load(subject=1, session=1).data, signal)
    nested = LabValue.load(subject=2, session=1).data
    assert nested["a"].tolist() == [0.0, 1.0, 2.0, 3.0, 4.0] and nested["b"][0].tolist() == [0, 1, 2]
    pd.testing.assert_frame_equal(LabValue.load(subject=3, session=1).data, frame)
    lazy = LabValue.load(subject=1, session=1, lazy=True).data
    assert lazy[299, 9] == 2999.0 and lazy.chunks_read == 1
    assert LabValue.load(subject=3, session=1, lazy=True).data.read(columns=["x"])["x"].sum() == frame["x"].sum()
    # a dask worker (another machine) gets the lazy value pickled: it reopens the bucket by URL
    sent = pickle.loads(pickle.dumps(lazy))
    assert sent[0, 1] == 1.0 and sent.chunks_read == 1 and lazy.chunks_read == 1


def test_a_damaged_object_in_the_bucket_is_refused_on_read(machine, s3_server, bucket_url):
    machine("a")
    saved = LabValue.save(np.arange(10.0), subject=1, session=1)
    body = _damage_in_bucket(s3_server, bucket_url, saved.oid)
    db = machine("b")
    with pytest.raises(CorruptObjectError, match=saved.oid):
        LabValue.load(subject=1, session=1)
    # the way back: fsck --repair keeps the bad bytes here and takes them out of the bucket,
    # and saving the value again uploads a good copy (a present oid was never sent again)
    repaired = fsck(db, repair=True)
    assert any(f"moved damaged object {saved.oid[:12]}" in r for r in repaired.repaired)
    assert (db.root / ".scistack" / "quarantine" / saved.oid).read_bytes() == body
    LabValue.save(np.arange(10.0), subject=1, session=1)
    db.store.wait_uploads()
    machine("c")
    assert LabValue.load(subject=1, session=1).data.tolist() == list(np.arange(10.0))


def _damage_packed_in_bucket(s3_server, url: str, oid: str) -> None:
    """Flip the last byte of object `oid`'s record in the bucket pack that holds it."""
    client, bucket, prefix, keys = _bucket(s3_server, url)
    for key in (k for k in keys if k.endswith(".idx")):
        index = client.get_object(Bucket=bucket, Key=key)["Body"].read()
        for at in range(16, len(index), 48):
            raw, offset, length = struct.unpack_from("<32sQQ", index, at)
            if raw.hex() == oid:
                pack = key[:-4] + ".pack"
                body = bytearray(client.get_object(Bucket=bucket, Key=pack)["Body"].read())
                body[offset + length - 1] ^= 0xFF
                client.put_object(Bucket=bucket, Key=pack, Body=bytes(body))
                return
    raise AssertionError(f"{oid} is in no pack of the bucket")


SAVE_AGAIN = textwrap.dedent("""
    import sys
    from pathlib import Path
    import numpy as np
    from scistack import BaseVariable, configure_database
    from scistack.fsck import fsck
    class LabValue(BaseVariable): pass
    folder, shared, objects = sys.argv[1:4]
    db = configure_database(Path(folder) / "gait.duckdb", ["subject", "session"], shared=shared, objects=objects)
    fsck(db, repair=True)  # (a loose damaged object is set aside; a packed one stays, named)
    LabValue.save(np.arange(3000.0).reshape(300, 10), subject=1, session=1)
    db.close()
""")


@pytest.mark.parametrize("packed", [True, False])
def test_a_damaged_chunk_saved_again_by_another_process_is_read_again(machine, s3_server, bucket_url, pg_url,
                                                                      tmp_path, python_env, packed):
    """A machine that read a damaged chunk reads it again once another process has repaired it
    (`fsck --repair` takes a loose one out of the bucket, and a save puts a good copy). A packed
    one stays in its pack, which every machine reads, and a save puts a good copy beside it:
    a read took the first copy it knew of, so a machine that had looked at that pack failed
    for good, in this session and the next (its pack indexes are kept)."""
    from scistack.objects.chunking import set_chunking

    value = np.arange(3000.0).reshape(300, 10)
    db = machine("a")
    set_chunking(threshold=1000, chunk_bytes=2000)
    try:
        if packed:
            with db.batch():
                saved = LabValue.save(value, subject=1, session=1)
        else:
            saved = LabValue.save(value, subject=1, session=1)
    finally:
        set_chunking()
    chunk = json.loads(bytes(db.store.get(saved.oid).payload))["chunks"][3]
    (_damage_packed_in_bucket if packed else _damage_in_bucket)(s3_server, bucket_url, chunk)
    machine("b")
    with pytest.raises(CorruptObjectError, match=chunk):
        LabValue.load(subject=1, session=1)
    (tmp_path / "c").mkdir()
    subprocess.run([sys.executable, "-c", SAVE_AGAIN, str(tmp_path / "c"), pg_url, bucket_url],
                   env=python_env | s3_server.env(), check=True, timeout=300)
    np.testing.assert_array_equal(LabValue.load(subject=1, session=1).data, value)
    machine("b")  # the next session on that machine
    np.testing.assert_array_equal(LabValue.load(subject=1, session=1).data, value)


def test_a_damaged_copy_in_the_local_cache_is_read_from_the_bucket(machine):
    """The cache is a copy: a damaged record in one of its packs raised on every read, though
    the bucket's copy was good."""
    db = machine("a")
    with db.batch():
        saved = LabValue.save(np.arange(10.0), subject=1, session=1)
    name, offset, length = db.store.cache.packs.locate(saved.oid)
    pack = db.store.cache.packs.directory / f"{name}.pack"
    pack.chmod(0o644)
    with open(pack, "r+b") as handle:
        handle.seek(offset + length - 1)
        last = handle.read(1)
        handle.seek(offset + length - 1)
        handle.write(bytes([last[0] ^ 0xFF]))
    db = machine("a")
    assert LabValue.load(subject=1, session=1).data.tolist() == list(np.arange(10.0))


def test_the_local_cache_stays_under_its_bound(machine):
    machine("a")
    for i in range(20):
        LabValue.save(np.random.default_rng(i).random(20_000), subject=i, session=1)
    db = machine("b", cache_bytes=400_000)
    for i in range(20):
        assert LabValue.load(subject=i, session=1).data.shape == (20_000,)
    assert db.store.cache_bytes() <= 400_000
    for start in range(0, 40, 10):  # batches: packs uploaded from this machine count too
        with db.batch():
            for i in range(start, start + 10):
                LabValue.save(np.random.default_rng(100 + i).random(2_000), subject=i, session=2)
    assert db.store.cache_bytes() <= 400_000
    assert LabValue.load(subject=0, session=2).data.shape == (2_000,)  # its pack left the cache
    machine("c")
    assert LabValue.load(subject=39, session=2).data.shape == (2_000,)


def test_missing_bucket_and_a_second_project_in_one_prefix_are_refused(postgres, tmp_path, s3_env, bucket_url,
                                                                      pg_url):
    with pytest.raises(SharedServiceError, match="does not exist"):
        configure_database(tmp_path / "x" / "gait.duckdb", ["subject"], shared=pg_url,
                           objects="s3://no-such-bucket-here/gait")
    first = configure_database(tmp_path / "a" / "gait.duckdb", ["subject"], shared=pg_url, objects=bucket_url)
    first.close()
    other = postgres.url(postgres.new_database(), "lab_writer", WRITER_PASSWORD)
    with pytest.raises(SchemaMismatchError, match="another scistack project"):
        configure_database(tmp_path / "b" / "gait.duckdb", ["subject"], shared=other, objects=bucket_url)


def test_no_secret_is_written_into_the_project(machine, tmp_path, s3_server):
    machine("a")
    LabValue.save(np.arange(3.0), subject=1, session=1)
    database_module.current_database().close()
    for path in (tmp_path / "a").rglob("*"):
        if path.is_file():
            data = path.read_bytes()
            assert WRITER_PASSWORD.encode() not in data and s3_server.keys["AWS_SECRET_ACCESS_KEY"].encode() not in data, path


@pytest.mark.usefixtures("brief_prune_wait")
def test_lab_gc_keeps_another_machines_unnamed_objects_and_runs_once_at_a_time(machine, monkeypatch):
    a = machine("a")
    kept = LabValue.save(np.arange(4.0), subject=1, session=1)
    unnamed = a.store.put_value(np.arange(7.0))  # uploaded by a, its name not yet journalled
    b = machine("b")
    stats = collect_garbage(b, grace_seconds=3600)
    assert stats.objects_deleted == 0 and stats.objects_kept_by_grace >= 1
    assert b.store.contains(unnamed)
    with b.store.gc_guard():  # another gc is running somewhere in the lab
        with pytest.raises(GarbageCollectionError, match="another gc"):
            collect_garbage(b, grace_seconds=0)
    assert b.store.contains(unnamed)
    stats = collect_garbage(b, grace_seconds=0)  # --prune=now: other machines' writers are invisible
    assert stats.objects_deleted == 0 and b.store.contains(unnamed)
    assert "another machine" in stats.grace_note and "1 h" in stats.grace_note
    monkeypatch.setattr(gc_module, "PRUNE_FLOOR", 0.0)  # as if an hour had passed: the sweep itself
    stats = collect_garbage(b, grace_seconds=0)
    assert stats.objects_deleted >= 1 and not b.store.contains(unnamed)
    assert LabValue.load(subject=1, session=1).oid == kept.oid


def test_wrong_s3_credentials_are_refused_without_showing_them(tmp_path, pg_url, bucket_url, monkeypatch):
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "not-the-lab-secret")
    with pytest.raises(SharedAccessError, match="credentials") as err:
        configure_database(tmp_path / "gait.duckdb", ["subject"], shared=pg_url, objects=bucket_url)
    assert "not-the-lab-secret" not in str(err.value)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIANOSUCHKEY")
    with pytest.raises(SharedAccessError, match="credentials"):
        configure_database(tmp_path / "gait.duckdb", ["subject"], shared=pg_url, objects=bucket_url)


def test_s3_unreachable_mid_save_names_nothing_and_the_project_recovers(machine, monkeypatch, s3_server):
    relay = TcpRelay(s3_server.port)
    monkeypatch.setenv("AWS_ENDPOINT_URL", f"http://127.0.0.1:{relay.port}")
    machine("a")
    LabValue.save(np.arange(5.0), subject=1, session=1)
    relay.cut()  # the network fails between two saves
    with pytest.raises(SharedServiceError, match="never point at objects that did not arrive"):
        LabValue.save(np.arange(6.0), subject=1, session=1)  # its upload fails: no name
    with pytest.raises(SharedServiceError):
        LabValue.save(np.arange(7.0), subject=2, session=1)
    LabValue.save(np.arange(5.0), subject=3, session=1)  # uploaded moments ago: sends nothing
    monkeypatch.setenv("AWS_ENDPOINT_URL", s3_server.endpoint)
    machine("b")  # another machine: what the lab's journal names
    np.testing.assert_array_equal(LabValue.load(subject=3, session=1).data, np.arange(5.0))
    assert len(LabValue.list_versions(subject=1, session=1)) == 1
    np.testing.assert_array_equal(LabValue.load(subject=1, session=1).data, np.arange(5.0))
    with pytest.raises(VariableNotFoundError):
        LabValue.load(subject=2, session=1)


def test_a_save_of_the_current_value_waits_for_its_upload_and_raises_when_it_failed(machine, monkeypatch,
                                                                                     s3_server, bucket_url):
    """A re-save of the current value writes no journal line, so nothing waited for its object's
    (background) upload: with the object gone from the bucket and the bucket refusing, the save
    returned as if the value were safe, the failure swallowed at close, and a colleague's load
    found no object under the name."""
    relay = TcpRelay(s3_server.port)
    monkeypatch.setenv("AWS_ENDPOINT_URL", f"http://127.0.0.1:{relay.port}")
    db = machine("a")
    value = np.arange(5.0)
    saved = LabValue.save(value, subject=1, session=1)
    db.store.wait_uploads()
    client, bucket, prefix, _ = _bucket(s3_server, bucket_url)
    client.delete_object(Bucket=bucket, Key=f"{prefix}/objects/{saved.oid[:2]}/{saved.oid[2:]}")  # lost
    machine("b")  # another checkout: it has never uploaded the value, so a save of it does
    relay.cut()
    with pytest.raises(SharedServiceError, match="never point at objects that did not arrive"):
        LabValue.save(value, subject=1, session=1)
    monkeypatch.setenv("AWS_ENDPOINT_URL", s3_server.endpoint)
    machine("b")  # the network is back: saving again puts the value back
    assert LabValue.save(value, subject=1, session=1).version == saved.version
    machine("c")  # a colleague's fresh checkout
    assert LabValue.load(subject=1, session=1).data.tolist() == value.tolist()


def test_packs_are_not_merged_in_a_lab_neither_in_the_bucket_nor_in_the_cache(machine, s3_server, bucket_url,
                                                                                monkeypatch):
    """Every machine reads the bucket's packs (and keeps their indexes): a merge there would
    need every reader to cope, so neither a closing writer nor gc merges them; the local
    cache's packs are the bucket's, uploaded and trimmed by name, and stay as they are too."""
    import scistack.objects.local as local_module
    from scistack.gc import collect_garbage

    monkeypatch.setattr(local_module, "AUTO_PACK_LIMIT", 2)
    db = machine("a")
    for b in range(5):
        with db.batch():
            for i in range(3):
                LabValue.save(np.array([b, i]), subject=b, session=i)
    cache_packs = sorted((db.store.cache.root / "pack").glob("pack-*.idx"))
    assert len(cache_packs) == 5 and db.store.merge_packs(auto=True) is None
    db.close()
    assert sorted((db.store.cache.root / "pack").glob("pack-*.idx")) == cache_packs
    db = machine("a")
    stats = collect_garbage(db)
    assert stats.packs_merged == 0
    _, _, _, keys = _bucket(s3_server, bucket_url)
    assert len([k for k in keys if k.endswith(".idx")]) == 5
    assert [LabValue.load(subject=4, session=i).data.tolist() for i in range(3)] == [[4, 0], [4, 1], [4, 2]]


@pytest.mark.usefixtures("brief_prune_wait")
def test_a_damaged_chunk_in_the_bucket_is_listed_by_fsck_and_kept_by_gc(machine, s3_server, bucket_url, monkeypatch):
    # gc's walk asked the bucket store for each chunk's kind by reading it whole and verified:
    # the first damaged chunk raised, so lab fsck and gc stopped there (exit 2) instead of
    # listing it as a laptop project's fsck does
    from scistack.objects.chunking import set_chunking

    machine("a")
    set_chunking(threshold=1000, chunk_bytes=2000)
    try:
        saved = LabValue.save(np.arange(3000.0).reshape(300, 10), subject=1, session=1)
    finally:
        set_chunking()
    LabValue.save(np.arange(4.0), subject=2, session=1)
    db = database_module.current_database()
    chunks = json.loads(bytes(db.store.get(saved.oid).payload))["chunks"]
    _damage_in_bucket(s3_server, bucket_url, chunks[3])
    b = machine("b")  # a colleague's fresh cache
    report = fsck(b)
    assert [(p.kind, p.oid) for p in report.problems] == [("corrupt", chunks[3])]
    monkeypatch.setattr(gc_module, "PRUNE_FLOOR", 0.0)
    stats = collect_garbage(b, grace_seconds=0)
    assert stats.objects_deleted == 0
    assert all(b.store.contains(c) for c in chunks) and b.store.contains(saved.oid)
    assert LabValue.load(subject=2, session=1).data.tolist() == [0.0, 1.0, 2.0, 3.0]


def test_another_objects_url_for_the_shared_project_is_refused_and_changes_nothing(machine, tmp_path, pg_url,
                                                                                  bucket_url, s3_server):
    # a member who joined with a mistyped prefix had his saves journalled for the whole lab
    # while their bytes went to that prefix (colleagues: ObjectNotFoundError), and an
    # existing checkout opened once with another objects= had its config rewritten for good
    machine("a")
    LabValue.save(np.arange(3.0), subject=1, session=1)
    database_module.current_database().close()
    typo = bucket_url + "-typo"
    for folder in ("b", "a"):  # a new checkout, and one that has joined already
        with pytest.raises(SchemaMismatchError, match=f"keeps its objects at {bucket_url}, not {typo}") as refused:
            configure_database(tmp_path / folder / "gait.duckdb", ["subject", "session"], shared=pg_url, objects=typo)
        assert "Leave objects= out" in str(refused.value) and f"objects={bucket_url!r}" in str(refused.value)
    assert not (tmp_path / "b" / ".scistack" / "config.json").exists()
    assert json.loads((tmp_path / "a" / ".scistack" / "config.json").read_text())["objects"] == bucket_url
    assert not _bucket(s3_server, typo)[3]  # nothing was put under the other prefix
    db = configure_database(tmp_path / "c" / "gait.duckdb", ["subject", "session"], shared=pg_url)  # no objects=
    assert db.objects_url == bucket_url and LabValue.load(subject=1, session=1).data.tolist() == [0.0, 1.0, 2.0]
    db.close()
    db = configure_database(tmp_path / "a" / "gait.duckdb", ["subject", "session"], shared=pg_url,
                            objects=bucket_url + "/")  # the same prefix, spelt otherwise
    db.close()


def test_a_project_made_before_its_objects_url_was_recorded_records_it_once_checked(machine, tmp_path, pg_url,
                                                                                    bucket_url):
    import psycopg

    machine("a")
    LabValue.save(np.arange(3.0), subject=1, session=1)
    database_module.current_database().close()
    with psycopg.connect(pg_url, autocommit=True) as con:  # as a project created before this
        con.execute("DELETE FROM scistack_meta WHERE key = 'objects'")
    with pytest.raises(SchemaMismatchError, match="holds no objects of the shared project"):
        configure_database(tmp_path / "b" / "gait.duckdb", ["subject", "session"], shared=pg_url,
                           objects=bucket_url + "-typo")
    assert not (tmp_path / "b" / ".scistack" / "config.json").exists()
    machine("b")  # its own prefix: recorded
    with psycopg.connect(pg_url, autocommit=True) as con:
        assert con.execute("SELECT value FROM scistack_meta WHERE key = 'objects'").fetchone()[0] == bucket_url


def test_a_frozen_object_store_fails_a_save_in_bounded_time(machine, s3_server):
    # a server that stops answering without closing the connection (a frozen VM, a network
    # partition; here SIGSTOP) blocked a save for the whole outage: the client's only bound
    # was a 300 s overall request timeout, retried
    machine("a")
    LabValue.save(np.arange(5.0), subject=1, session=1)  # connections open and warm
    outcome = frozen_while(s3_server.process.pid, lambda: LabValue.save(np.arange(6.0), subject=2, session=1))
    assert isinstance(outcome.error, SharedServiceError) and "object store" in str(outcome.error), outcome
    assert outcome.seconds < 25, outcome
    with pytest.raises(VariableNotFoundError):
        LabValue.load(subject=2, session=1)  # nothing was named
    LabValue.save(np.arange(6.0), subject=2, session=1)  # the server is back: so is the save
    assert LabValue.load(subject=2, session=1).data.tolist() == list(np.arange(6.0))


def test_every_machine_chunks_as_the_lab_project_recorded(machine):
    """The chunking is part of a large value's oid: machine b, whose process asks for another,
    gave the same recording a new oid (a new version, cache misses). The lab project records
    the chunking of the first machine that needs one, in the shared journal, and every machine
    uses it."""
    import json
    import warnings

    from scistack.objects.chunking import set_chunking

    signal = np.arange(3000.0).reshape(300, 10)
    db = machine("a")
    set_chunking(threshold=1000, chunk_bytes=2000)
    try:
        first = LabValue.save(signal, subject=1, session=1)
    finally:
        set_chunking()
    assert first.record.kind == "chunked"
    assert json.loads(db.index.project_meta()["chunking"]) == {"threshold": 1000, "chunk_bytes": 2000}
    machine("b")  # its own folder and config; its process's policy is the default (256 MiB)
    again = LabValue.save(signal, subject=1, session=1)
    assert again.oid == first.oid and len(LabValue.list_versions(subject=1, session=1)) == 1
    set_chunking(threshold=1 << 30)
    try:
        db = machine("c")
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            assert LabValue.save(signal, subject=1, session=1).oid == first.oid
        assert any("The project's are used" in str(w.message) for w in caught)
    finally:
        set_chunking()


FSCK_REPAIR = textwrap.dedent("""
    import sys
    from pathlib import Path
    from scistack import configure_database
    from scistack.fsck import fsck
    folder, shared, objects = sys.argv[1:4]
    db = configure_database(Path(folder) / "gait.duckdb", ["subject", "session"], shared=shared, objects=objects)
    print("\\n".join(fsck(db, repair=True).repaired))
    db.close()
""")


def test_a_value_saved_again_after_another_machines_fsck_set_it_aside_is_uploaded(machine, s3_server, bucket_url,
                                                                                 pg_url, tmp_path, python_env):
    """Machine A remembered having uploaded the value (`_young`, half an hour), so a save of it
    after machine B's `fsck --repair` took its damaged copy out of the bucket sent nothing, and
    a colleague's load found no object under the name."""
    db = machine("a")
    value = np.arange(10.0)
    saved = LabValue.save(value, subject=1, session=1)
    db.store.wait_uploads()
    _damage_in_bucket(s3_server, bucket_url, saved.oid)
    (tmp_path / "b").mkdir()
    done = subprocess.run([sys.executable, "-c", FSCK_REPAIR, str(tmp_path / "b"), pg_url, bucket_url],
                          env=python_env | s3_server.env(), check=True, timeout=300, capture_output=True, text=True)
    assert f"moved damaged object {saved.oid[:12]}" in done.stdout  # (B has no good copy to put back)
    LabValue.save(value, subject=1, session=1)  # on A, minutes after its first upload
    machine("c")  # (A closes: its uploads finish) a colleague's fresh checkout
    assert LabValue.load(subject=1, session=1).data.tolist() == value.tolist()


@pytest.mark.parametrize("packed", [False, True])
def test_lab_fsck_checks_the_buckets_copies_and_repairs_them_from_a_good_cached_copy(machine, s3_server, bucket_url,
                                                                                    packed):
    """fsck verified this machine's cached copy, found it good and said all was well, while the
    bucket's copy, the one every colleague without the cache reads, was damaged."""
    db = machine("a")
    value = np.arange(10.0)
    if packed:
        with db.batch():
            saved = LabValue.save(value, subject=1, session=1)
    else:
        saved = LabValue.save(value, subject=1, session=1)
        db.store.wait_uploads()
    (_damage_packed_in_bucket if packed else _damage_in_bucket)(s3_server, bucket_url, saved.oid)
    report = fsck(db)
    assert [(p.kind, p.oid) for p in report.problems] == [("corrupt", saved.oid)]
    assert bucket_url in report.problems[0].detail and "LabValue" in report.problems[0].detail
    assert any("checked the object store's copies of" in note for note in report.notes)
    local = fsck(db, local=True)  # this machine's copies only: good
    assert local.ok and any(note.startswith("--local") for note in local.notes)
    repaired = fsck(db, repair=True)
    assert repaired.ok and any(f"good copy of {saved.oid[:12]}" in r for r in repaired.repaired)
    assert fsck(db).ok
    db = machine("c")  # a colleague's fresh checkout
    assert LabValue.load(subject=1, session=1).data.tolist() == value.tolist()
    assert fsck(db).ok


def test_lab_fsck_names_an_object_missing_from_the_bucket_though_cached_here_and_repair_puts_it_back(
        machine, s3_server, bucket_url):
    """fsck asked `contains`, which the cache answers first: an object gone from the bucket
    (lost, or taken out by another machine's fsck) but cached here looked present, while
    every colleague's load failed."""
    db = machine("a")
    value = np.arange(10.0)
    saved = LabValue.save(value, subject=1, session=1)
    db.store.wait_uploads()
    client, bucket, prefix, _ = _bucket(s3_server, bucket_url)
    client.delete_object(Bucket=bucket, Key=f"{prefix}/objects/{saved.oid[:2]}/{saved.oid[2:]}")
    report = fsck(db)
    assert [(p.kind, p.oid) for p in report.problems] == [("missing-ref-object", saved.oid)]
    assert fsck(db, local=True).ok  # this machine's copies only
    repaired = fsck(db, repair=True)
    assert repaired.ok and any(f"good copy of {saved.oid[:12]}, missing" in r for r in repaired.repaired)
    assert fsck(db).ok
    machine("c")  # a colleague's fresh checkout
    assert LabValue.load(subject=1, session=1).data.tolist() == value.tolist()


def test_lab_gc_refuses_over_an_object_missing_from_the_bucket_though_cached_here(machine, s3_server, bucket_url):
    """gc's walk asked `contains` and `kind_of`, which the cache answers first: an array of a
    saved dict gone from the bucket but cached here looked present, gc counted it reachable and
    said nothing, while every colleague's load failed and the only copy sat in a cache that
    drops its oldest copies."""
    db = machine("a")
    saved = LabValue.save({"emg": np.arange(10.0), "fs": 2000}, subject=1, session=1)
    db.store.wait_uploads()
    child = next(o for o in db.store.iter_oids() if o != saved.oid)
    client, bucket, prefix, _ = _bucket(s3_server, bucket_url)
    client.delete_object(Bucket=bucket, Key=f"{prefix}/objects/{child[:2]}/{child[2:]}")
    for dry_run in (True, False):
        with pytest.raises(GarbageCollectionError, match=f"missing from {bucket_url} though cached") as refused:
            collect_garbage(db, dry_run=dry_run)
        assert child[:12] in str(refused.value) and "fsck --repair" in str(refused.value)
    assert db.store.cache.contains(child)  # nothing was deleted, the cached copy least of all
    assert fsck(db, repair=True).ok
    assert collect_garbage(db).objects_reachable == 2
    machine("c")  # a colleague's fresh checkout
    assert LabValue.load(subject=1, session=1).data["emg"].tolist() == list(np.arange(10.0))


@pytest.mark.usefixtures("brief_prune_wait")
def test_lab_gc_on_a_fresh_machine_refuses_over_a_lost_parent_and_deletes_none_of_its_children(
        machine, s3_server, bucket_url, monkeypatch):
    """A dict kept only as the lineage input of a result (its own ref deleted) is lost from the
    bucket, still cached on the machine that saved it. gc on a fresh checkout could not read
    it, so the arrays it names looked unreachable and were deleted: `fsck --repair` on the
    machine with the cached dict then put back a dict whose arrays no machine had."""
    db = machine("a")
    raw = LabValue.save({"emg": np.arange(10.0), "fs": 2000}, subject=1, session=1)
    LabPeak.save(lab_emg_peak(LabValue.load(subject=1, session=1)), subject=1, session=1)
    db.store.wait_uploads()
    arrays = [oid for oid, _ in child_oids("json", db.store.get(raw.oid).payload)]
    assert arrays
    LabValue.delete(subject=1, session=1)  # the dict is kept as LabPeak's lineage only
    client, bucket, prefix, _ = _bucket(s3_server, bucket_url)
    client.delete_object(Bucket=bucket, Key=f"{prefix}/objects/{raw.oid[:2]}/{raw.oid[2:]}")  # lost
    for oid in arrays:  # and long gone from a's cache, which keeps the dict
        db.store.cache.delete(oid)
    monkeypatch.setattr(gc_module, "PRUNE_FLOOR", 0.0)
    b = machine("b")  # a fresh checkout: no cache
    for dry_run in (True, False):
        with pytest.raises(GarbageCollectionError, match=f"missing from {bucket_url}") as refused:
            collect_garbage(b, grace_seconds=0, dry_run=dry_run)
        said = str(refused.value)
        assert raw.oid[:12] in said and "deleted nothing" in said and "fsck --repair" in said
        assert "input 'value'" in said
    _, _, _, keys = _bucket(s3_server, bucket_url)
    assert all(f"{prefix}/objects/{oid[:2]}/{oid[2:]}" in keys for oid in arrays)
    assert fsck(machine("a"), repair=True).ok  # puts the cached dict back
    stats = collect_garbage(machine("b"), grace_seconds=0)
    assert stats.objects_deleted == 0
    c = machine("c")  # a colleague's fresh checkout reads the whole lineage input
    restored = c.store.get_value(raw.oid)
    assert restored["emg"].tolist() == list(np.arange(10.0)) and restored["fs"] == 2000


@pytest.mark.usefixtures("brief_prune_wait")
def test_undelete_after_another_machines_gc_freed_the_value_puts_the_cached_copy_back(machine, monkeypatch):
    """Naming an old object again freshens it first (`freshen_lineage`), and never names what
    that finds gone; a lab store's `freshen` answered from this machine's cache, so an undelete
    after another machine's gc had freed the value named an object no colleague could load."""
    db = machine("a")
    value = np.arange(7.0)
    LabValue.save(value, subject=1, session=1)
    db.store.wait_uploads()
    LabValue.delete(subject=1, session=1)
    monkeypatch.setattr(gc_module, "PRUNE_FLOOR", 0.0)
    assert collect_garbage(machine("b"), grace_seconds=0).objects_deleted == 1
    machine("a")  # its cache still holds the value
    assert LabValue.undelete(subject=1, session=1) == 1
    machine("c")  # a colleague's fresh checkout
    assert LabValue.load(subject=1, session=1).data.tolist() == value.tolist()


def test_a_loaded_value_saved_elsewhere_is_put_back_when_the_bucket_lost_it(machine, s3_server, bucket_url):
    """Saving a loaded variable skips the put while the store `contains` the object, which a
    lab store answers from this machine's cache: gone from the bucket, the value was named at
    its new address with no copy there, and a colleague's load failed."""
    db = machine("a")
    saved = LabValue.save(np.arange(5.0), subject=1, session=1)
    db.store.wait_uploads()
    client, bucket, prefix, _ = _bucket(s3_server, bucket_url)
    client.delete_object(Bucket=bucket, Key=f"{prefix}/objects/{saved.oid[:2]}/{saved.oid[2:]}")  # lost
    machine("a")  # a later session: its cache still holds the value
    LabValue.save(LabValue.load(subject=1, session=1), subject=2, session=1)
    machine("c")  # a colleague's fresh checkout
    assert LabValue.load(subject=2, session=1).data.tolist() == list(np.arange(5.0))


def test_a_listing_with_the_s3_server_down_is_a_shared_service_error_naming_the_fix(machine, monkeypatch,
                                                                                     s3_server):
    """A listing asks the server as it is iterated, after the call that made it returned: with
    the network down, `ls` and `fsck` ended in obstore's raw GenericError, without the store's
    URL or what to do."""
    from click.testing import CliRunner

    from scistack.cli import main

    relay = TcpRelay(s3_server.port)
    monkeypatch.setenv("AWS_ENDPOINT_URL", f"http://127.0.0.1:{relay.port}")
    db = machine("a")
    LabValue.save(np.arange(3.0), subject=1, session=1)
    db.store.wait_uploads()
    relay.cut()
    with pytest.raises(SharedServiceError, match="check the network"):
        fsck(db)
    db.close()
    database_module._current = None
    monkeypatch.setenv("PGPASSWORD", WRITER_PASSWORD)  # (a later session: the URL has no password)
    done = CliRunner().invoke(main, ["--db", str(db.path), "ls"])
    assert done.exit_code != 0
    assert "failed while listing packs" in done.output and "check the network" in done.output, done.output
    assert "GenericError" not in done.output


def test_a_refused_lab_create_records_nothing_so_the_corrected_retry_opens(tmp_path, pg_url, bucket_url):
    """A new lab project's keys were recorded in the shared journal before its objects URL was
    checked: a create refused for a mistyped bucket or a missing objects= had fixed the keys
    ("nothing was changed", it said), and the corrected retry was a schema mismatch."""
    from scistack.errors import InvalidNameError

    folder = tmp_path / "student"
    folder.mkdir()
    with pytest.raises(InvalidNameError, match="needs objects="):
        configure_database(folder / "gait.duckdb", ["subject"], shared=pg_url)
    with pytest.raises(SharedServiceError, match="does not exist"):
        configure_database(folder / "gait.duckdb", ["subject"], shared=pg_url,
                           objects="s3://no-such-lab-bucket/gait")
    db = configure_database(folder / "gait.duckdb", ["subject", "session"], shared=pg_url, objects=bucket_url)
    assert db.schema_keys == ["subject", "session"]
    LabValue.save(np.arange(3.0), subject=1, session=1)
    db.close()


def test_lab_set_aside_streams_a_large_damaged_object_in_bounded_memory(machine, s3_server, bucket_url, tmp_path):
    """`fsck --repair` keeps a damaged bucket copy's bytes before it deletes it: the whole
    object had been read into memory (a damaged 10 GB recording: 10 GB), now streamed."""
    import tracemalloc

    db = machine("a")
    saved = LabValue.save(np.random.default_rng(5).random(6 << 20), subject=1, session=1)  # 48 MB, loose
    db.store.wait_uploads()
    damaged = _damage_in_bucket(s3_server, bucket_url, saved.oid)
    tracemalloc.start()
    try:
        kept = db.store.set_aside(saved.oid, tmp_path / "quarantine")
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 16 << 20, f"set_aside held {peak >> 20} MB at once"
    assert kept.read_bytes() == damaged
    with db.store.own_copies():
        assert not db.store.contains(saved.oid)
