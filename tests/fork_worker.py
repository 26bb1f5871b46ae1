"""A user's own fork of a process using a project, run as its own process by the fork tests
(a crash or a hang of either side fails the test, not pytest).

usage: fork_worker.py FOLDER [SHARED OBJECTS] | FOLDER batch
The parent saves and loads (so every handle, pool and thread exists) and forks; the child
saves, loads, queries SQL and exits; the parent then saves, loads the child's value, queries
SQL and closes. A second child is forked while another thread of the parent holds a DuckDB
connection (as its background sync does while it syncs): it saves and loads, and SQL is
refused there, naming spawn. A third is forked while other threads hold each thread lock its
save, load, merge, lineage and lazy read take (`fork_while_threads_hold_locks`). In a lab project (SHARED and OBJECTS given) one child is forked:
its save is refused, naming spawn (the S3 client cannot run in a forked child), and the value
saved before the fork loads from this machine's cache.
`batch`: children forked inside a batch save (`fork_inside_a_batch`).
Prints one line per step; exit 0 when every step passed on both sides.
"""

from __future__ import annotations

import faulthandler
import json
import os
import select
import sys
import threading
import time
import traceback
from pathlib import Path

import numpy as np

from scistack import BaseVariable, configure_database, variables
from scistack.codeid import files
from scistack.objects.chunked import encode_chunked_array
from scistack.objects.chunking import ChunkPolicy
from scistack.objects.store import MemoryObjectStore
from scistack.errors import DatabaseLockedError, SharedServiceError

BOUND = 60.0  # seconds either side waits before it is taken as hung
HOLD = 0.5  # seconds a thread holds a lock a fork waits for (the fork must wait, then go on)


class Forked(BaseVariable):
    pass


def subjects(db) -> list[int]:
    return sorted(db.sql("SELECT subject FROM Forked")["subject"])


def in_child(steps, bound: float = BOUND) -> None:
    """Run `steps` in a forked child and wait for it; exits when the child failed or hung."""
    pid = os.fork()
    if pid == 0:
        faulthandler.dump_traceback_later(bound, exit=True)  # a hang ends the child, with its stacks
        code = 1
        try:
            steps()
            code = 0
        except BaseException:
            traceback.print_exc()
        finally:
            sys.stdout.flush()
            sys.stderr.flush()
            os._exit(code)
    deadline = time.monotonic() + bound + 10
    while True:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            break
        if time.monotonic() > deadline:
            os.kill(pid, 9)
            os.waitpid(pid, 0)
            sys.exit("the child hung")
        time.sleep(0.01)
    if os.waitstatus_to_exitcode(status) != 0:
        sys.exit(f"the child failed ({os.waitstatus_to_exitcode(status)})")


def lab_child() -> None:
    try:
        Forked.save(np.arange(5.0), subject=2)
    except SharedServiceError as exc:
        assert "get_context('spawn')" in str(exc), exc
    else:
        raise AssertionError("a lab save in a forked child was not refused")
    assert Forked.load(subject=1).data[3] == 3.0
    print("lab child: save refused, cached value loaded", flush=True)


def local_child(db) -> None:
    Forked.save(np.arange(5.0), subject=2)
    assert Forked.load(subject=2).data[4] == 4.0
    assert Forked.load(subject=1).data[3] == 3.0
    db.sync()
    assert subjects(db) == [1, 2, 9]
    print("child saved, loaded and queried", flush=True)


def child_forked_while_duckdb_was_open(db) -> None:
    Forked.save(np.arange(4.0), subject=4)
    assert Forked.load(subject=4).data[3] == 3.0
    assert Forked.load(subject=3).data[6] == 6.0
    try:
        db.sql("SELECT subject FROM Forked")
    except DatabaseLockedError as exc:
        assert "get_context('spawn')" in str(exc), exc
    else:
        raise AssertionError("SQL ran on the DuckDB connection inherited from the parent")
    db.close()
    print("second child saved, loaded and closed; SQL refused", flush=True)


def child_forked_while_threads_held_locks(db, lazy, memory) -> None:
    """Each lock below was held by another thread of the parent at the fork (that thread is
    not here): its first use in the child must not wait for ever."""
    class DefinedInChild(BaseVariable):  # variables._registry_lock
        pass

    assert DefinedInChild.__name__ in variables._registry

    with db.batch():  # the writers gate's lock at the first write; the buffer lock at the flush
        Forked.save(np.arange(2.0), subject=5)
    assert Forked.load(subject=5).data[1] == 1.0
    with db.store.packs.exclusive(wait=False) as got:  # the pack set's `_merging`
        assert not got, "the child took MERGE_LOCK, which a thread of its parent holds, as its own"
    files.install()  # the codeid hooks' lock
    assert lazy[7] == 7.0 and lazy.chunks_read == 1  # the lazy array's lock
    memory.delete(memory.put("bytes", b"child"))  # the memory store's lock
    print("third child: every lock a parent's thread held was free", flush=True)


def fork_while_threads_hold_locks(db) -> None:
    """Another thread holds each lock, inside its critical section, as a child is forked:
    those the fork waits for (a store's buffer lock, the codeid hooks'), each for `HOLD` s
    before a fork of its own, the others until the child is done."""
    memory = MemoryObjectStore()
    lazy = memory.open_value(memory.put("chunked", encode_chunked_array(np.arange(64.0), memory.put,
                                                                         ChunkPolicy(64, 128))))
    db.store.packs.directory.mkdir(exist_ok=True)  # (no pack written yet: MERGE_LOCK is made there)
    for waited_for in (db.store._buffer_lock, files._HOOK_LOCK):
        holding, briefly, release = threading.Event(), threading.Event(), threading.Event()

        def hold() -> None:
            with variables._registry_lock, db.store.gate._lock, db.store.packs.exclusive(wait=True) as merging, \
                    lazy._lock, memory._lock:
                if merging:
                    holding.set()
                    release.wait(BOUND)

        def hold_briefly() -> None:
            with waited_for:  # (the fork waits for it: the thread leaves after HOLD s)
                briefly.set()
                release.wait(HOLD)

        threads = [threading.Thread(target=hold), threading.Thread(target=hold_briefly)]
        for thread in threads:
            thread.start()
        assert holding.wait(BOUND) and briefly.wait(BOUND)
        try:
            in_child(lambda: child_forked_while_threads_held_locks(db, lazy, memory), bound=20.0)
        finally:
            release.set()
            for thread in threads:
                thread.join()
        with db.store.packs.exclusive(wait=False) as got:
            assert got, "MERGE_LOCK stayed held after the merge and the child ended"
    assert Forked.load(subject=5).data[1] == 1.0, "the parent does not see the third child's save"


def puts(folder: Path) -> list[int]:
    """The subjects of the journal's put lines, one per line (a save written twice: twice)."""
    journal = folder / ".scistack" / "refs.log"
    lines = journal.read_bytes().splitlines() if journal.exists() else []
    return sorted(json.loads(line)["addr"]["subject"] for line in lines if json.loads(line)["op"] == "put")


def child_in_parents_batch(subject: int) -> None:
    """Forked inside the parent's batch: its save is its own, written at once (the process
    ends with `os._exit`, as a pool's worker does: a save held there was lost)."""
    Forked.save(np.arange(float(subject)), subject=subject)
    assert Forked.load(subject=subject).data[1] == 1.0


def fork_inside_a_batch(folder: Path) -> None:
    """A child forked inside a batch (the first ends with `os._exit` inside it, the second
    leaves it, from a nested one, and the parent waits inside it until the child has looked
    at the journal; a third is forked while another thread's batch is open): each save is
    written once, the parent's held ones by the parent."""
    db = configure_database(folder / "batch.duckdb", ["subject"])
    read, write = os.pipe()
    pid, code = -1, 1
    try:
        with db.batch():
            Forked.save(np.arange(4.0), subject=1)
            in_child(lambda: child_in_parents_batch(2))
            assert puts(folder) == [2], f"the child's save was lost: {puts(folder)}"
            assert Forked.load(subject=2).data[1] == 1.0 and db.index.in_batch
            with db.batch():  # (nested: as a for_each inside the parent's batch)
                Forked.save(np.arange(4.0), subject=3)
                pid = os.fork()
                if pid == 0:
                    faulthandler.dump_traceback_later(20.0, exit=True)
                    child_in_parents_batch(4)
                else:
                    child_done(pid, read)
                    assert puts(folder) == [2, 4, 14], f"the child's saves: {puts(folder)}"
            if pid == 0:  # left the nested block: in no batch
                assert not db.index.in_batch, "the child is in its parent's batch"
            else:
                Forked.save(np.arange(4.0), subject=5)
        if pid == 0:  # left the outermost: nothing of the parent's written, and a batch of its own
            assert puts(folder) == [2, 4], f"the child wrote the parent's held saves: {puts(folder)}"
            with db.batch(atomic=True):
                Forked.save(np.arange(3.0), subject=14)
            assert puts(folder) == [2, 4, 14] and Forked.load(subject=14).data[2] == 2.0, puts(folder)
            os.write(write, b"ok")
            code = 0
    except BaseException:
        if pid != 0:
            raise
        traceback.print_exc()
    finally:
        if pid == 0:
            sys.stdout.flush()
            sys.stderr.flush()
            os._exit(code)
    assert puts(folder) == [1, 2, 3, 4, 5, 14], f"the parent's batch: {puts(folder)}"
    holding, release = threading.Event(), threading.Event()

    def hold() -> None:  # another thread's batch (as a for_each running in a thread)
        with db.batch():
            Forked.save(np.arange(4.0), subject=6)
            holding.set()
            release.wait(BOUND)

    thread = threading.Thread(target=hold)
    thread.start()
    try:
        assert holding.wait(BOUND)
        in_child(lambda: child_in_parents_batch(7))
        assert puts(folder) == [1, 2, 3, 4, 5, 7, 14], f"a child forked beside a thread's batch: {puts(folder)}"
    finally:
        release.set()
        thread.join()
    assert puts(folder) == [1, 2, 3, 4, 5, 6, 7, 14], puts(folder)
    for subject in (1, 2, 3, 4, 5, 6, 7, 14):
        assert Forked.load(subject=subject).data[1] == 1.0
    db.close()
    print("children forked inside a batch saved once each; the parent's batch wrote its own", flush=True)


def child_done(pid: int, read: int) -> None:
    """Wait until the child says it is done (a bound: else it hung), and for its end."""
    deadline = time.monotonic() + BOUND
    while not select.select([read], [], [], 0.05)[0]:
        done, _ = os.waitpid(pid, os.WNOHANG)
        if done:
            sys.exit("the child failed before it was done")
        if time.monotonic() > deadline:
            os.kill(pid, 9)
            sys.exit("the child hung")
    os.waitpid(pid, 0)


def main() -> None:
    faulthandler.enable()
    folder = Path(sys.argv[1])
    if sys.argv[2:] == ["batch"]:
        fork_inside_a_batch(folder)
        return
    lab = dict(shared=sys.argv[2], objects=sys.argv[3]) if len(sys.argv) > 3 else {}
    db = configure_database(folder / "forked.duckdb", ["subject"], **lab)
    Forked.save(np.arange(10.0), subject=1)
    assert Forked.load(subject=1).data[3] == 3.0
    db.sync()  # DuckDB written and read too, before the fork
    assert subjects(db) == [1]
    Forked.save(np.arange(3.0), subject=9)  # the background sync's thread awake at the fork
    if lab:
        in_child(lab_child)
    else:
        in_child(lambda: local_child(db))
    Forked.save(np.arange(7.0), subject=3)
    if not lab:
        assert Forked.load(subject=2).data[4] == 4.0, "the parent does not see the child's save"
    assert Forked.load(subject=3).data[6] == 6.0
    db.sync()
    assert subjects(db) == ([1, 3, 9] if lab else [1, 2, 3, 9])
    if not lab:
        holding, release = threading.Event(), threading.Event()

        def hold() -> None:
            with db.index._sql.connect():
                holding.set()
                release.wait(BOUND)

        thread = threading.Thread(target=hold)
        thread.start()
        assert holding.wait(BOUND)
        try:
            in_child(lambda: child_forked_while_duckdb_was_open(db))
        finally:
            release.set()
            thread.join()
        assert Forked.load(subject=4).data[3] == 3.0, "the parent does not see the second child's save"
        fork_while_threads_hold_locks(db)
        db.sync()
        assert subjects(db) == [1, 2, 3, 4, 5, 9]
    db.close()
    print("parent saved, loaded, queried and closed", flush=True)


if __name__ == "__main__":
    main()
