"""A user's own fork of a process using a project, run as its own process by the fork tests
(a crash or a hang of either side fails the test, not pytest).

usage: fork_worker.py FOLDER [SHARED OBJECTS]
The parent saves and loads (so every handle, pool and thread exists) and forks; the child
saves, loads, queries SQL and exits; the parent then saves, loads the child's value, queries
SQL and closes. A second child is forked while another thread of the parent holds a DuckDB
connection (as its background sync does while it syncs): it saves and loads, and SQL is
refused there, naming spawn. In a lab project (SHARED and OBJECTS given) one child is forked:
its save is refused, naming spawn (the S3 client cannot run in a forked child), and the value
saved before the fork loads from this machine's cache.
Prints one line per step; exit 0 when every step passed on both sides.
"""

from __future__ import annotations

import faulthandler
import os
import sys
import threading
import time
from pathlib import Path

import numpy as np

from scistack import BaseVariable, configure_database
from scistack.errors import DatabaseLockedError, SharedServiceError

BOUND = 60.0  # seconds either side waits before it is taken as hung


class Forked(BaseVariable):
    pass


def subjects(db) -> list[int]:
    return sorted(db.sql("SELECT subject FROM Forked")["subject"])


def in_child(steps) -> None:
    """Run `steps` in a forked child and wait for it; exits when the child failed or hung."""
    pid = os.fork()
    if pid == 0:
        faulthandler.dump_traceback_later(BOUND, exit=True)  # a hang ends the child, with its stacks
        code = 1
        try:
            steps()
            code = 0
        finally:
            sys.stdout.flush()
            sys.stderr.flush()
            os._exit(code)
    deadline = time.monotonic() + BOUND + 10
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


def main() -> None:
    faulthandler.enable()
    folder = Path(sys.argv[1])
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
        db.sync()
        assert subjects(db) == [1, 2, 3, 4, 9]
    db.close()
    print("parent saved, loaded, queried and closed", flush=True)


if __name__ == "__main__":
    main()
