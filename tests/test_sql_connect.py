"""A read-only query while this process's own background sync holds the DuckDB file."""

from __future__ import annotations

import threading
import time

import pytest

from scistack import BaseVariable
from scistack.errors import DatabaseLockedError


class SqlConnA(BaseVariable):
    pass


def test_read_only_query_waits_for_a_read_write_connection_in_the_same_process(project, caplog):
    """A query while this process's own sync holds the file waits for it on the process's
    lock: no attempt of DuckDB's that fails (it refuses a connection with another mode in the
    same process), so no retrying and no warning that another process holds the file (without
    the lock the query polled, and said so at once with `say_after=0`: a DuckDB CLI or DBeaver
    session the user had to look for, that did not exist). A hold by a real other process is
    said (the tests below)."""
    SqlConnA.save(1, subject=1)
    project.sync()
    sql = project.index._sql
    ready, done = threading.Event(), threading.Event()

    def hold() -> None:
        with sql.connect():
            ready.set()
            time.sleep(0.3)
            done.set()  # inside: set after the with, it raced the reader granted the file on its exit

    thread = threading.Thread(target=hold)
    thread.start()
    ready.wait()
    with caplog.at_level("WARNING", logger="scistack.index.sql"):
        with sql.connect(read_only=True, say_after=0) as con:  # used to raise ConnectionException at once
            assert done.is_set()
            assert con.execute("SELECT count(*) FROM scistack.refs").fetchone()[0] == 1
    thread.join()
    assert not [r.getMessage() for r in caplog.records if "held by another process" in r.getMessage()]


def test_a_query_waiting_for_another_process_says_what_it_waits_for(project, monkeypatch, caplog):
    # a DuckDB CLI or DBeaver session with write access held the file: db.sql waited up to a
    # minute in silence
    holder = _held_elsewhere(project, monkeypatch, "duckdb.connect(sys.argv[1]); print('held', flush=True); "
                             "time.sleep(1.5)")
    try:
        SqlConnA.save(2, subject=2)  # saves never wait for it
        with caplog.at_level("WARNING", logger="scistack.index.sql"):
            assert project.sql("SELECT count(*) AS n FROM SqlConnA")["n"][0] == 2
    finally:
        holder.wait(timeout=30)
        holder.stdout.close()
    said = [r.getMessage() for r in caplog.records if "held by another process" in r.getMessage()]
    assert len(said) == 1 and "duckdb -readonly gait.duckdb" in said[0]


def test_a_query_reads_the_file_as_it_is_while_a_reader_elsewhere_holds_it(project, monkeypatch, caplog):
    # a read-only DuckDB CLI or DBeaver session blocks the sync's write, not a read: db.sql waited
    # 60 s for it, then failed with DatabaseLockedError, warning of a session "opened for writing"
    holder = _held_elsewhere(project, monkeypatch, "duckdb.connect(sys.argv[1], read_only=True); "
                             "print('held', flush=True); sys.stdin.read()")
    try:
        SqlConnA.save(2, subject=2)
        started = time.monotonic()
        with caplog.at_level("WARNING", logger="scistack.index.sql"):
            assert project.sql("SELECT count(*) AS n FROM SqlConnA")["n"][0] == 1  # the file as it is
        assert time.monotonic() - started < 10
    finally:
        holder.communicate(timeout=30)
    said = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert len(said) == 1 and "open read-only in another process" in said[0] and "behind" in said[0]
    assert project.sql("SELECT count(*) AS n FROM SqlConnA")["n"][0] == 2  # closed: synced again


def test_a_sync_that_may_not_wait_names_the_holder_and_no_wait(project, monkeypatch):
    # a sync told not to wait (timeout 0) while a DuckDB session held the file for writing said
    # it "stayed locked by another process for 0 s"
    holder = _held_elsewhere(project, monkeypatch, "duckdb.connect(sys.argv[1]); print('held', flush=True); "
                             "sys.stdin.read()")
    try:
        SqlConnA.save(2, subject=2)  # (journalled: a sync has something to write)
        with pytest.raises(DatabaseLockedError) as raised:
            project.index.sync(timeout=0.0)
    finally:
        holder.communicate(timeout=30)
    said = str(raised.value)
    assert " s (" not in said and "stayed" not in said, said
    assert "gait.duckdb is held by " in said and f"(PID {holder.pid}) (" in said, said
    assert "Close the DuckDB CLI/DBeaver session or the other script holding it" in said
    assert project.sql("SELECT count(*) AS n FROM SqlConnA")["n"][0] == 2  # let go: synced


def _held_elsewhere(project, monkeypatch, holding: str):
    """One value saved and synced, then a second process holding the DuckDB file (`holding`:
    its code after `import duckdb, sys, time; c = `), once it has said "held"."""
    import subprocess
    import sys

    import scistack.index.sql as sql_module

    SqlConnA.save(1, subject=1)
    project.sync()
    monkeypatch.setattr(sql_module, "_SAY_AFTER", 0.2)
    holder = subprocess.Popen([sys.executable, "-c", f"import duckdb, sys, time; c = {holding}", str(project.path)],
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    assert holder.stdout.readline().strip() == "held"
    return holder


def test_close_does_not_wait_for_a_reader_elsewhere_and_loses_nothing(project, monkeypatch, python_env, tmp_path):
    """A read-only DuckDB CLI or DBeaver session holding the file made db.close() wait 5 s (its
    sync at close waited for the file). Close now returns at once: the journal holds the save,
    DuckDB catches up once the reader has gone (a detached sync), and a new process sees it."""
    import subprocess
    import sys

    holder = _held_elsewhere(project, monkeypatch, "duckdb.connect(sys.argv[1], read_only=True); "
                             "print('held', flush=True); sys.stdin.read()")
    try:
        SqlConnA.save(2, subject=2)
        started = time.monotonic()
        project.close()
        assert time.monotonic() - started < 2
    finally:
        holder.communicate(timeout=30)
    from scistack.index.journal import Journal
    from scistack.index.sql import SqlIndex

    # the file alone, as the DuckDB CLI reads it (opening the project here would sync it)
    duck = SqlIndex(project.path, ["subject", "session"], Journal(tmp_path / ".scistack" / "refs.log"))
    deadline = time.monotonic() + 60
    while duck.lag() != 0 and time.monotonic() < deadline:
        time.sleep(0.1)
    with duck.connect(read_only=True) as con:
        assert con.execute("SELECT subject FROM SqlConnA ORDER BY subject").fetchall() == [(1,), (2,)]
    seen = subprocess.run(
        [sys.executable, "-c", "import sys; from scistack import configure_database, BaseVariable\n"
         "class SqlConnA(BaseVariable): pass\n"
         "db = configure_database(sys.argv[1], ['subject', 'session'])\n"
         "print([v.data for v in SqlConnA.load_all()], db.sql('SELECT count(*) AS n FROM SqlConnA')['n'][0])",
         str(project.path)], env=python_env, capture_output=True, text=True, timeout=60)
    assert seen.returncode == 0, seen.stderr
    assert seen.stdout.split() == ["[1,", "2]", "2"]


def test_a_close_that_cannot_sync_names_the_holder_whole(project, monkeypatch, caplog):
    # with no background sync to hand the tail to (SCISTACK_SYNC=foreground, a lab project) the
    # note cut DuckDB's error at 200 characters: "... Conflicting lock is held in <home>/.p"
    monkeypatch.setenv("SCISTACK_SYNC", "foreground")
    holder = _held_elsewhere(project, monkeypatch, "duckdb.connect(sys.argv[1]); print('held', flush=True); "
                             "sys.stdin.read()")
    try:
        SqlConnA.save(2, subject=2)
        with caplog.at_level("INFO", logger="scistack.index"):
            project.close()
    finally:
        holder.communicate(timeout=30)
    said = [r.getMessage() for r in caplog.records if "not brought up to date" in r.getMessage()]
    assert len(said) == 1, said
    assert f"(PID {holder.pid})" in said[0] and "gait.duckdb is held by another process" in said[0], said
    assert "next scistack process" in said[0]
