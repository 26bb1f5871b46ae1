"""A batch's objects reach the bucket before any name points at them, whatever happened to an
earlier attempt: a pack whose upload failed (the network, the server, a killed client) left
its objects packed in this machine's cache only, and a re-run, finding them there, never put
them in a new pack, uploaded nothing and named them: every other machine failed to load them."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

import scistack.database as database_module
from scistack import BaseVariable, for_each, lineage_fcn
from scistack.errors import SharedServiceError, VariableNotFoundError
from scistack.fsck import fsck
from scistack.index import key_of

from .conftest import TcpRelay, freeze, thaw
from .test_lab_objects import LabValue, _bucket, machine  # noqa: F401 - `machine` is a fixture


class LabTripled(BaseVariable):
    pass


@lineage_fcn
def lab_tripled(value):
    return value * 3


def _values() -> dict[int, list[int]]:
    return {i: [i, 7] for i in range(3)}


def _save_batch(db) -> None:
    with db.batch():
        for i, value in _values().items():
            LabValue.save(np.array(value), subject=1, session=i)


def _loads_everywhere(machine) -> None:
    machine("c")  # a colleague's fresh checkout: only what the bucket holds
    assert {i: LabValue.load(subject=1, session=i).data.tolist() for i in _values()} == _values()


def _forget_the_failed_process(db) -> None:
    """The process that failed is gone with its memory (its queue of packs to upload)."""
    with pytest.raises(SharedServiceError, match="uploading a pack"):
        db.close()  # (a close retries the held names' pack, and fails again: the network is down)
    database_module._current = None


def test_a_batch_whose_pack_upload_failed_is_uploaded_by_the_rerun(machine, monkeypatch, s3_server):
    relay = TcpRelay(s3_server.port)
    monkeypatch.setenv("AWS_ENDPOINT_URL", f"http://127.0.0.1:{relay.port}")
    db = machine("a")
    relay.cut()  # the network fails (or the S3 server stops) before the batch's pack goes up
    with pytest.raises(SharedServiceError, match="never point at objects that did not arrive"):
        _save_batch(db)
    _forget_the_failed_process(db)
    monkeypatch.setenv("AWS_ENDPOINT_URL", s3_server.endpoint)
    db = machine("a")  # the re-run the error asks for, on the same machine
    _save_batch(db)
    _loads_everywhere(machine)


def test_a_rerun_of_everything_already_in_the_bucket_uploads_no_pack_again(machine, s3_server, bucket_url):
    """A re-run of a batch whose pack is in the bucket sends nothing: the pack is known to be
    there (its index is kept), no object is looked for one by one."""
    db = machine("a")
    _save_batch(db)
    keys = _bucket(s3_server, bucket_url)[3]
    db = machine("a")
    _save_batch(db)
    assert db.store._to_upload == [] and sorted(_bucket(s3_server, bucket_url)[3]) == sorted(keys)
    db.close()
    database_module._current = None
    db = machine("a")  # (a later session: no listing of the bucket's packs either)
    _save_batch(db)
    assert db.store._listed_packs is None and sorted(_bucket(s3_server, bucket_url)[3]) == sorted(keys)


RUN_BATCH = textwrap.dedent("""
    import sys, time
    import numpy as np
    from scistack import BaseVariable, configure_database
    class LabValue(BaseVariable):
        pass
    db = configure_database(sys.argv[1] + "/gait.duckdb", ["subject", "session"], shared=sys.argv[2],
                            objects=sys.argv[3])
    with db.batch():
        for i in range(3):
            LabValue.save(np.array([i, 7]), subject=1, session=i)
    print("saved", flush=True)
""")


def test_a_batch_killed_while_its_pack_uploads_is_uploaded_by_the_rerun(machine, s3_server, bucket_url, pg_url,
                                                                        tmp_path, python_env):
    """The client is killed (kill -9) while the S3 server does not answer its pack's upload."""
    (tmp_path / "a").mkdir()
    machine("a").close()  # the project is made, and this machine's folder
    database_module._current = None
    pack_folder = tmp_path / "a" / ".scistack" / "cache" / "objects" / "pack"
    before = set(pack_folder.glob("*.idx")) if pack_folder.is_dir() else set()
    freeze([s3_server.process.pid])
    try:
        client = subprocess.Popen([sys.executable, "-c", RUN_BATCH, str(tmp_path / "a"), pg_url, bucket_url],
                                  env=python_env | s3_server.env(), stdout=subprocess.PIPE, text=True)
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and client.poll() is None:  # its pack is written here...
            if pack_folder.is_dir() and set(pack_folder.glob("*.idx")) - before:
                break
            time.sleep(0.05)
        assert client.poll() is None, client.communicate()
        os.kill(client.pid, signal.SIGKILL)  # ... and goes up to a server that does not answer
        client.communicate()
    finally:
        thaw([s3_server.process.pid])
    db = machine("a")  # the re-run, on the same machine
    _save_batch(db)
    _loads_everywhere(machine)


def test_a_for_each_whose_outputs_upload_failed_uploads_them_on_the_rerun(machine, monkeypatch, s3_server):
    relay = TcpRelay(s3_server.port)
    monkeypatch.setenv("AWS_ENDPOINT_URL", f"http://127.0.0.1:{relay.port}")
    db = machine("a")
    for i in range(3):
        LabValue.save(np.arange(4.0) + i, subject=1, session=i)
    db.store.wait_uploads()
    relay.cut()
    with pytest.raises(SharedServiceError, match="never point at objects that did not arrive"):
        for_each(lab_tripled, inputs={"value": LabValue}, outputs=[LabTripled], subject=[1], session=[0, 1, 2],
                 progress=False)
    _forget_the_failed_process(db)
    monkeypatch.setenv("AWS_ENDPOINT_URL", s3_server.endpoint)
    machine("a")
    report = for_each(lab_tripled, inputs={"value": LabValue}, outputs=[LabTripled], subject=[1],
                      session=[0, 1, 2], progress=False)
    assert report.failed == 0, report
    machine("c")
    assert [LabTripled.load(subject=1, session=i).data.tolist() for i in range(3)] == \
        [((np.arange(4.0) + i) * 3).tolist() for i in range(3)]


def test_a_batch_larger_than_the_cache_buffer_uploads_every_pack(machine, monkeypatch):
    """The cache writes a pack whenever its buffer passes its bound (64 MB of small objects)
    within the batch: that pack was never queued for the bucket, only the batch's last one."""
    import scistack.objects.local as local_module

    monkeypatch.setattr(local_module, "_MAX_BUFFER", 100)  # (a pack every object or two)
    db = machine("a")
    _save_batch(db)
    assert len(list((db.store.cache.root / "pack").glob("*.idx"))) > 1
    _loads_everywhere(machine)


def test_a_pack_the_bucket_lost_is_named_by_fsck_advising_repair_and_sent_again_by_a_resave(machine, s3_server,
                                                                                       bucket_url):
    db = machine("a")
    _save_batch(db)
    client, bucket, prefix, keys = _bucket(s3_server, bucket_url)
    for key in keys:
        if key.startswith(f"{prefix}/pack/"):
            client.delete_object(Bucket=bucket, Key=key)  # the bucket loses the batch's pack
    db = machine("a")
    report = fsck(db)
    assert {p.kind for p in report.problems} == {"missing-ref-object"} and len(report.problems) == 3
    assert all("fsck --repair" in p.detail and "save it again" not in p.detail for p in report.problems)
    _save_batch(db)  # saved again from its source, inside a batch: the lost pack goes up again
    _loads_everywhere(machine)
    assert fsck(machine("a")).ok


def test_fsck_repair_puts_back_the_objects_of_a_lost_pack_cached_here(machine, s3_server, bucket_url):
    db = machine("a")
    _save_batch(db)
    client, bucket, prefix, keys = _bucket(s3_server, bucket_url)
    for key in keys:
        if key.startswith(f"{prefix}/pack/"):
            client.delete_object(Bucket=bucket, Key=key)
    db = machine("a")
    repaired = fsck(db, repair=True)
    assert repaired.ok and len(repaired.repaired) == 3, repaired
    _loads_everywhere(machine)


_CHUNK = 32 << 10  # bytes of one chunk below: 64 of them, each its own (random) bytes


def _save_chunked(signal) -> None:
    from scistack.objects.chunking import set_chunking

    set_chunking(threshold=_CHUNK, chunk_bytes=_CHUNK)
    try:
        LabValue.save(signal, subject=1, session=1)
    finally:
        set_chunking()


def test_a_chunked_save_faster_than_its_uploads_waits_for_them(machine, monkeypatch, s3_server):
    """The bytes written to the cache and not yet in the bucket stay within UPLOAD_BACKLOG:
    a chunked save on a slow link had kept every chunk not yet up (the cache's bound never
    drops one in flight, and every chunk stayed in flight until the save's end) and filled
    the disk far past the cache's bound."""
    from scistack.objects import s3

    relay = TcpRelay(s3_server.port, upload_rate=1 << 20)  # a slow link: the disk writes faster
    monkeypatch.setenv("AWS_ENDPOINT_URL", f"http://127.0.0.1:{relay.port}")
    monkeypatch.setattr(s3, "UPLOAD_BACKLOG", 4 * _CHUNK)
    db = machine("a", cache_bytes=16 * _CHUNK)
    signal = np.random.default_rng(1).standard_normal(64 * _CHUNK // 8)
    _save_chunked(signal)
    assert 0 < db.store.peak_upload_backlog <= 4 * _CHUNK
    # a chunk once up is no longer in flight: the cache's bound drops it (all were kept)
    assert db.store.cache_bytes() <= 20 * _CHUNK
    machine("b")
    np.testing.assert_array_equal(LabValue.load(subject=1, session=1).data, signal)


def test_a_chunked_save_waiting_for_uploads_that_fail_raises(machine, monkeypatch, s3_server):
    """A writer held by the bound is not held for ever by uploads that fail: the save raises,
    and nothing is named."""
    from scistack.objects import s3

    relay = TcpRelay(s3_server.port)
    monkeypatch.setenv("AWS_ENDPOINT_URL", f"http://127.0.0.1:{relay.port}")
    monkeypatch.setattr(s3, "UPLOAD_BACKLOG", 4 * _CHUNK)
    db = machine("a")
    relay.cut()
    with pytest.raises(SharedServiceError, match="never point at objects that did not arrive"):
        _save_chunked(np.random.default_rng(2).standard_normal(64 * _CHUNK // 8))
    assert db.store.peak_upload_backlog <= 4 * _CHUNK
    try:
        db.close()
    except SharedServiceError:
        pass  # (uploads the save's other writers had sent meanwhile, failed too: raised again)
    database_module._current = None
    monkeypatch.setenv("AWS_ENDPOINT_URL", s3_server.endpoint)
    machine("b")
    with pytest.raises(VariableNotFoundError):
        LabValue.load(subject=1, session=1)


def _keys_of(s3_server, url: str) -> set[str]:
    """The object keys in the bucket under the project's prefix, relative to it."""
    _, _, prefix, keys = _bucket(s3_server, url)
    return {key.removeprefix(prefix + "/") for key in keys}


def _key(oid: str) -> str:
    return f"objects/{oid[:2]}/{oid[2:]}"


def test_a_threads_wait_never_takes_another_threads_failed_upload(machine, monkeypatch, s3_server,
                                                                   bucket_url):
    """Two threads save through one lab store and the link is cut: each save's wait raises its
    own upload's failure. One thread's wait had taken every failed upload, the other's too, so
    the other's wait found nothing pending and returned: its save named an object that never
    reached the bucket."""
    relay = TcpRelay(s3_server.port)
    monkeypatch.setenv("AWS_ENDPOINT_URL", f"http://127.0.0.1:{relay.port}")
    db = machine("a")
    relay.cut()
    mine = db.store.put_value(np.arange(1000.0))  # this thread's save: its upload is in flight
    with ThreadPoolExecutor(1) as other:  # another thread saves another value, and waits first
        theirs = other.submit(db.store.put_value, np.arange(2000.0)).result()
        with pytest.raises(SharedServiceError, match="uploading an object"):
            other.submit(db.store.wait_uploads).result()
    with pytest.raises(SharedServiceError, match="uploading an object"):
        db.store.wait_uploads()  # (returned: the other thread's wait had raised this failure)
    assert not {_key(mine), _key(theirs)} & _keys_of(s3_server, bucket_url)


def test_a_save_that_found_its_object_in_flight_raises_when_that_upload_fails(machine, monkeypatch, s3_server,
                                                                             bucket_url):
    """A save of a value whose upload another thread had just sent relies on that upload: it
    sends none itself, and when that upload fails its wait raises too (it had returned, the
    sender's wait having taken the failure, and the name pointed at nothing). A later save of
    the value uploads it again."""
    relay = TcpRelay(s3_server.port)
    monkeypatch.setenv("AWS_ENDPOINT_URL", f"http://127.0.0.1:{relay.port}")
    db = machine("a")
    relay.cut()
    value = np.arange(3000.0)
    with ThreadPoolExecutor(1) as other:
        oid = other.submit(db.store.put_value, value).result()  # the other thread sends it...
        assert db.store.put_value(value) == oid  # ... and this one finds it in flight
        with pytest.raises(SharedServiceError, match="uploading an object"):
            other.submit(db.store.wait_uploads).result()
    with pytest.raises(SharedServiceError, match="uploading an object"):
        db.store.wait_uploads()
    assert _key(oid) not in _keys_of(s3_server, bucket_url)
    try:
        db.close()
    finally:
        database_module._current = None
    monkeypatch.setenv("AWS_ENDPOINT_URL", s3_server.endpoint)
    db = machine("a")  # the same machine (its cache holds the value), the link back
    db.store.put_value(value)
    db.store.wait_uploads()
    assert _key(oid) in _keys_of(s3_server, bucket_url)


def test_a_chunked_saves_wait_covers_the_uploads_of_its_chunk_writers(machine, monkeypatch, s3_server,
                                                                      bucket_url):
    """A chunked save writes its chunks on helper threads, which write for the saving thread:
    its wait covers their uploads, so when the save returns every chunk is in the bucket, each
    sent once. (A wait that covered only the saving thread's own uploads returned as soon as
    the manifest was up, and `_young_parts`, not knowing the chunks in the bucket, put each
    one still in flight a second time.)"""
    from scistack.objects import s3

    relay = TcpRelay(s3_server.port, upload_rate=64 << 10)  # half a second a chunk
    monkeypatch.setenv("AWS_ENDPOINT_URL", f"http://127.0.0.1:{relay.port}")
    monkeypatch.setattr(s3, "UPLOAD_THREADS", 64)  # (all at once: the manifest queued behind no chunk)
    machine("a")
    signal = np.random.default_rng(3).standard_normal(32 * _CHUNK // 8)
    before = relay.sent
    _save_chunked(signal)
    sent = relay.sent - before
    client, bucket, prefix, _ = _bucket(s3_server, bucket_url)
    pages = client.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=f"{prefix}/objects/")
    sizes = [o["Size"] for page in pages for o in page.get("Contents", [])]
    assert len(sizes) == 33  # every chunk and the manifest, when the save returned
    assert sent < 1.5 * sum(sizes), (sent, sum(sizes))
    machine("b")
    np.testing.assert_array_equal(LabValue.load(subject=1, session=1).data, signal)


def test_a_close_that_fails_still_gives_up_its_writers_hold(machine, monkeypatch, s3_server):
    """A close whose last names cannot be written (their pack's upload fails: the link is cut)
    raises, and still gives up the store's write hold (the writers' gate a pruning gc waits
    for): it had kept it, as if the project were still open, until the process ended."""
    from scistack.objects.gate import WritersGate

    relay = TcpRelay(s3_server.port)
    monkeypatch.setenv("AWS_ENDPOINT_URL", f"http://127.0.0.1:{relay.port}")
    db = machine("a")
    LabValue.save(np.arange(10.0), subject=9, session=9)  # (a write: the hold is taken)
    assert db.store.cache.gate.held
    relay.cut()
    with pytest.raises(SharedServiceError):
        _save_batch(db)
    _forget_the_failed_process(db)  # (its close raised)
    with WritersGate(db.store.cache.root).exclusive(wait=0.5) as alone:
        assert alone


def test_a_batch_raises_the_failed_upload_of_a_name_another_thread_put_in_it(machine, monkeypatch, s3_server,
                                                                          bucket_url):
    """The index's batch is the process's: it journals names other threads put in it, whose
    objects they sent (here before the batch began). Its flush waited for the batch's uploads
    and its own thread's only, and journalled such a name whose upload failed (review 1)."""
    relay = TcpRelay(s3_server.port)
    monkeypatch.setenv("AWS_ENDPOINT_URL", f"http://127.0.0.1:{relay.port}")
    db = machine("a")
    LabValue.save(np.arange(3.0), subject=0, session=0)  # (the variable exists)
    relay.cut()
    with ThreadPoolExecutor(1) as other:
        oid = other.submit(db.store.put_value, np.arange(5000.0)).result()  # in flight, then fails
        kind = db.store.get(oid).kind
        with pytest.raises(SharedServiceError):
            with db.batch():
                other.submit(db.index.put_ref, "LabValue", {"subject": 1, "session": 1}, {}, oid, kind).result()
        with pytest.raises(SharedServiceError):
            other.submit(db.store.wait_uploads).result()  # (raised to its own save's wait too)
    assert _key(oid) not in _keys_of(s3_server, bucket_url)
    assert db.index.current_at("LabValue", key_of({"subject": 1, "session": 1}), key_of({})) is None
