"""A project used in a forked child (a user's own `multiprocessing.Pool` under the fork start
method, or `os.fork`): the child saves and loads, the parent carries on and sees its saves.
The fork runs in a process of its own (`fork_worker.py`): a hang or a crash fails the test."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

WORKER = str(Path(__file__).with_name("fork_worker.py"))


def test_forked_children_save_and_load_and_their_parent_carries_on(tmp_path, python_env):
    """The second child is forked while another thread holds a DuckDB connection (as the
    background sync does): the process lock that thread held stayed held in the child, whose
    SQL and close waited for ever. Two more are forked while other threads hold each thread
    lock a child's save, load, merge, lineage and lazy read take (the child's first use of one
    waited for ever), one of them held until the child ends, `MERGE_LOCK` too (the child had
    taken it as its own)."""
    done = subprocess.run([sys.executable, "-X", "faulthandler", WORKER, str(tmp_path)], env=python_env,
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "parent saved, loaded, queried and closed" in done.stdout


def test_children_forked_inside_a_batch_save_once_each_and_the_parents_batch_goes_on(tmp_path, python_env):
    """Batch state was per process: a child forked inside one (a fork pool made inside a
    batch, or while another thread runs a for_each) held its saves for a flush that never
    came (it ends with `os._exit`), and one that left the block wrote its parent's held
    saves too, which the parent wrote again."""
    done = subprocess.run([sys.executable, "-X", "faulthandler", WORKER, str(tmp_path), "batch"], env=python_env,
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "the parent's batch wrote its own" in done.stdout


def test_a_child_forked_while_a_thread_reads_ahead_sees_what_is_saved_after(tmp_path):
    """A thread inside `reading_ahead` (a `for_each` reads its inputs so) answers from one view
    of the project: a child forked meanwhile inherited that view for good, and never saw a
    version saved after the fork."""
    import os
    import threading

    from scistack import BaseVariable, configure_database
    from scistack.index.state import keys_of

    from .helpers import child_status

    class ForkAhead(BaseVariable):
        pass

    db = configure_database(tmp_path / "p.duckdb", ["subject"])
    try:
        ForkAhead.save(1.0, subject=1)
        inside, leave = threading.Event(), threading.Event()

        def hold() -> None:
            with db.index.reading_ahead():
                db.index.read_ahead("ForkAhead", keys_of([{"subject": 1}]))  # (as a for_each plans)
                inside.set()
                leave.wait(30)

        thread = threading.Thread(target=hold)
        thread.start()
        assert inside.wait(30)
        saved_r, saved_w = os.pipe()
        pid = os.fork()
        if pid == 0:
            code = 1
            try:
                os.read(saved_r, 1)
                code = 0 if ForkAhead.load(subject=1).data == 2.0 else 3
            except BaseException:  # noqa: BLE001 - the exit status says it
                code = 4
            finally:
                os._exit(code)
        leave.set()
        thread.join()
        ForkAhead.save(2.0, subject=1)  # (a new version: a new address was looked up anew)
        os.write(saved_w, b"1")
        assert child_status(pid) == 0, "the child answered from the view its parent's thread had at the fork"
    finally:
        db.close()


def test_a_fold_made_while_a_fork_waits_is_usable_in_the_child(tmp_path):
    """A fork first takes every fold's lock, then waits for the stores' buffer locks (another
    thread's flush). A fold made and entered by a third thread in that wait was not taken by
    the fork, and its lock stayed held for ever in the child, whose first use of it hung."""
    import os
    import threading

    from scistack import BaseVariable, configure_database
    from scistack.index.fold import _FOLDS, Fold

    from .helpers import child_status

    class ForkWindow(BaseVariable):
        pass

    db = configure_database(tmp_path / "p.duckdb", ["subject"])
    try:
        ForkWindow.save(1.0, subject=1)
        flushing, made, forked = threading.Event(), threading.Event(), threading.Event()
        own_fold = db.index._fold

        def flush() -> None:  # (holds the buffer lock as a long flush would)
            with db.store._buffer_lock:
                flushing.set()
                made.wait(30)

        def make_fold() -> None:
            flushing.wait(30)
            while own_fold._lock.acquire(blocking=False):  # until the fork holds the folds' locks
                own_fold._lock.release()
                threading.Event().wait(0.005)
            fold = Fold(tmp_path / ".scistack" / "second.sqlite", db.index._journal)
            with fold._lock:  # (entered, as a long catch-up of a big journal)
                made.set()
                forked.wait(30)

        threads = [threading.Thread(target=flush), threading.Thread(target=make_fold)]
        for thread in threads:
            thread.start()
        assert flushing.wait(30)
        pid = os.fork()
        if pid == 0:
            code = 1
            try:
                second = [f for f in list(_FOLDS) if f is not own_fold]
                second[-1].catch_up()
                code = 0
            finally:
                os._exit(code)
        forked.set()
        for thread in threads:
            thread.join()
        assert made.is_set()
        assert child_status(pid, bound=30) == 0
    finally:
        db.close()
