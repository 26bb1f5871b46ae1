"""`gc.lock`, one lab gc at a time: a lock left by a gc of this machine that is gone (its
release failed while the bucket did not answer) is taken over; a running gc's never is.

A left lock had refused every later gc on every machine for ever ("another gc (on HOST, pid N)
is running ... Wait for it", naming a pid long gone), even in the process that left it."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import time

import numpy as np
import pytest

from scistack.errors import GarbageCollectionError
from scistack.gc import collect_garbage
from scistack.objects._proc import pid_started, process_space

from .test_lab_objects import LabValue, _bucket, machine  # noqa: F401 - `machine` is a fixture

pytestmark = pytest.mark.usefixtures("brief_prune_wait")  # these gcs are about the lock, not the wait


def _leave_lock(s3_server, bucket_url, **fields) -> bytes:
    """Write `gc.lock` as a gc of this machine (unless `fields` say otherwise) had left it."""
    client, bucket, prefix, _ = _bucket(s3_server, bucket_url)
    body = json.dumps({"host": socket.gethostname(), "pid": 0, "since": time.time() - 60,
                       "space": process_space()} | fields).encode()
    client.put_object(Bucket=bucket, Key=f"{prefix}/gc.lock", Body=body)
    return body


def _lock(s3_server, bucket_url) -> bytes | None:
    client, bucket, prefix, keys = _bucket(s3_server, bucket_url)
    if f"{prefix}/gc.lock" not in keys:
        return None
    return client.get_object(Bucket=bucket, Key=f"{prefix}/gc.lock")["Body"].read()


def _dead_pid() -> int:
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()  # reaped: its pid names no process
    return child.pid


def test_a_lock_left_by_a_dead_gc_of_this_machine_is_taken_over(machine, s3_server, bucket_url):
    db = machine("a")
    LabValue.save(np.arange(3.0), subject=1, session=1)
    _leave_lock(s3_server, bucket_url, pid=_dead_pid())
    collect_garbage(db, grace_seconds=3600)  # refused before: "another gc ... is running"
    assert _lock(s3_server, bucket_url) is None  # taken over, then released


def test_a_lock_this_process_left_with_no_gc_running_is_taken_over(machine, s3_server, bucket_url):
    import os

    db = machine("a")
    _leave_lock(s3_server, bucket_url, pid=os.getpid())  # an earlier gc here whose release failed
    collect_garbage(db, grace_seconds=3600)
    assert _lock(s3_server, bucket_url) is None
    with db.store.gc_guard():  # a gc of this process is running: its lock is not taken
        with pytest.raises(GarbageCollectionError, match="another gc"):
            collect_garbage(db, grace_seconds=3600)


def test_a_live_gcs_lock_and_another_machines_are_never_taken_over(machine, s3_server, bucket_url):
    db = machine("a")
    sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(300)"])
    try:
        body = _leave_lock(s3_server, bucket_url, pid=sleeper.pid)  # a gc running on this machine
        with pytest.raises(GarbageCollectionError, match=f"another gc .*pid {sleeper.pid}"):
            collect_garbage(db, grace_seconds=3600)
        assert _lock(s3_server, bucket_url) == body
    finally:
        sleeper.kill()
        sleeper.wait()
    # another machine's (its pids are not this machine's to look at), or another boot's
    for fields in ({"host": "elsewhere.lab"}, {"space": "another-boot/1"}, {"space": None}):
        body = _leave_lock(s3_server, bucket_url, pid=_dead_pid(), **fields)
        with pytest.raises(GarbageCollectionError, match="aws s3 rm .*gc.lock"):
            collect_garbage(db, grace_seconds=3600)
        assert _lock(s3_server, bucket_url) == body


def test_a_lock_whose_pid_now_runs_another_process_is_taken_over(machine, s3_server, bucket_url):
    """A lock named its gc by pid alone: once that pid ran another process (pids are used
    again, after a restart at once, as in a container), every later gc was refused ("another
    gc ... is running", delete the lock by hand). The lock holds when its gc started too
    (`_proc.pid_started`); a pid that runs a process started at another time is taken over,
    and the gc that does still runs is not."""
    db = machine("a")
    LabValue.save(np.arange(3.0), subject=1, session=1)
    other = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(300)"])  # (the pid's new owner)
    try:
        started = pid_started(other.pid)
        assert started.isdigit(), "the start of a process is read from /proc (Linux)"
        body = _leave_lock(s3_server, bucket_url, pid=other.pid, started=started)  # that very gc
        with pytest.raises(GarbageCollectionError, match=f"another gc .*pid {other.pid}"):
            collect_garbage(db, grace_seconds=3600)
        assert _lock(s3_server, bucket_url) == body
        _leave_lock(s3_server, bucket_url, pid=other.pid, started=str(int(started) + 1))  # a gc gone
        collect_garbage(db, grace_seconds=3600)
        assert _lock(s3_server, bucket_url) is None  # taken over, then released
        # another machine's lock naming the same live pid at another start: not ours to judge
        body = _leave_lock(s3_server, bucket_url, pid=other.pid, started=str(int(started) + 1),
                           host="elsewhere.lab")
        with pytest.raises(GarbageCollectionError, match="aws s3 rm .*gc.lock"):
            collect_garbage(db, grace_seconds=3600)
        assert _lock(s3_server, bucket_url) == body
    finally:
        other.kill()
        other.wait()


def test_a_gc_cut_from_the_bucket_leaves_a_lock_the_next_gc_here_takes_over(machine, monkeypatch, s3_server,
                                                                             bucket_url):
    """The bug as met: the bucket stops answering during a gc, whose release of the lock fails
    too (a warning says so); once it is back, the next gc on this machine runs."""
    import scistack.gc as gc_module
    from scistack.errors import GcLockLeftWarning, SharedServiceError

    from .conftest import TcpRelay

    relay = TcpRelay(s3_server.port)
    monkeypatch.setenv("AWS_ENDPOINT_URL", f"http://127.0.0.1:{relay.port}")
    db = machine("a")
    LabValue.save(np.arange(3.0), subject=1, session=1)
    LabValue.delete(subject=1, session=1)  # something for gc to delete
    listing = gc_module._bucket_listing

    def listed_then_cut(db_, reachable):
        result = listing(db_, reachable)
        relay.cut()  # the network fails mid-gc
        return result

    monkeypatch.setattr(gc_module, "_bucket_listing", listed_then_cut)
    monkeypatch.setattr(gc_module, "PRUNE_FLOOR", 0.0)
    with pytest.warns(GcLockLeftWarning, match="aws s3 rm"), pytest.raises(SharedServiceError):
        collect_garbage(db, grace_seconds=0)
    assert _lock(s3_server, bucket_url) is not None  # left behind
    monkeypatch.setattr(gc_module, "_bucket_listing", listing)
    monkeypatch.setenv("AWS_ENDPOINT_URL", s3_server.endpoint)
    db = machine("a")  # the bucket answers again
    collect_garbage(db, grace_seconds=0)
    assert _lock(s3_server, bucket_url) is None
