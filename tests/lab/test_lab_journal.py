"""The shared PostgreSQL journal: every machine folds the same lines, in the same order."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest

import scistack.database as database_module
from scistack import BaseVariable, configure_database
from scistack.errors import (InvalidMetadataError, SchemaMismatchError, SharedAccessError, SharedServiceError,
                             VariableNotFoundError)
import scistack.gc as gc_module
from scistack.gc import collect_garbage
import scistack.index.pgjournal as pgjournal
from scistack.index.pgjournal import PostgresJournal

from ..helpers import child_status
from .conftest import READER, READER_PASSWORD, TcpRelay, freeze, frozen_while, thaw

WORKER = str(Path(__file__).with_name("lab_worker.py"))


class LabSignal(BaseVariable):
    pass


@pytest.fixture
def lab(tmp_path, monkeypatch, pg_url, bucket_url):
    """Open a lab project in folder `name` (a separate machine's checkout); closed afterwards."""
    opened = []

    def open_(name: str = "a", **kwargs):
        folder = tmp_path / name
        folder.mkdir(exist_ok=True)
        monkeypatch.chdir(folder)
        db = configure_database(folder / "gait.duckdb", ["subject", "session"], shared=pg_url,
                                objects=bucket_url, **kwargs)
        opened.append(db)
        return db

    yield open_
    for db in opened:
        db.close()
    database_module._current = None


def _start(python_env, folder: Path, pg_url: str, bucket_url: str, writer: int, count: int, mode: str,
           s3_env: dict) -> subprocess.Popen:
    folder.mkdir(parents=True, exist_ok=True)
    return subprocess.Popen([sys.executable, WORKER, str(folder), pg_url, bucket_url, str(writer), str(count), mode],
                            env=python_env | s3_env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _result(process: subprocess.Popen) -> dict:
    out, err = process.communicate(timeout=300)
    assert process.returncode == 0, err
    return json.loads(out.strip().splitlines()[-1])


def test_a_value_saved_on_one_machine_loads_on_another(lab, tmp_path):
    lab("a")
    LabSignal.save(np.arange(5.0), subject=1, session=2)
    database_module.get_database().close()
    lab("b")
    loaded = LabSignal.load(subject=1, session=2)
    assert loaded.data.tolist() == [0.0, 1.0, 2.0, 3.0, 4.0]
    assert not (tmp_path / "b" / ".scistack" / "refs.log").exists()
    config = json.loads((tmp_path / "b" / ".scistack" / "config.json").read_text())
    assert config["shared"].startswith("postgresql://") and "pw" not in config["shared"]


def test_a_large_batch_is_folded_by_its_writer_on_the_shared_journal_too(lab, monkeypatch):
    """The shared journal's offsets are row numbers: a large batch is folded as written in
    bounded chunks there as well, and another machine reads every value."""
    import scistack.index as index_module
    import scistack.index.fold as fold_module

    monkeypatch.setattr(index_module, "_FOLD_OWN_MAX", 4)
    folded = []
    appended = fold_module.Fold.appended
    monkeypatch.setattr(fold_module.Fold, "appended",
                        lambda self, entries, start, end: folded.append(len(entries)) or appended(self, entries, start, end))
    db = lab("a")
    with db.batch():
        for subject in range(11):
            LabSignal.save(np.arange(2.0) + subject, subject=subject, session=1)
    assert folded == [4, 4, 3]
    assert LabSignal.load(subject=10, session=1).data.tolist() == [10.0, 11.0]
    db.close()
    lab("b")
    assert [LabSignal.load(subject=s, session=1).data.tolist()[0] for s in range(11)] == [float(s) for s in range(11)]


def test_interleaved_writers_agree_on_every_version_and_the_newest(tmp_path, pg_url, bucket_url, python_env,
                                                                   s3_env):
    """Four writers on one address, a batch writer, and a reader folding the tail all along:
    versions are 1..N with no gap or repeat, each writer's acknowledged versions are among
    them with its own oid, and the reader (which only ever read new tails) and a fresh machine
    fold exactly the same history."""
    reader = _start(python_env, tmp_path / "reader", pg_url, bucket_url, 99, 0, "read", s3_env)
    folders = [tmp_path / f"w{i}" for i in range(4)] + [tmp_path / "b"]
    for folder in folders:  # a starting gate: every writer opens the project, then all go at once
        folder.mkdir()
        (folder / "wait").touch()
    writers = [_start(python_env, folders[i], pg_url, bucket_url, i, 20, "single", s3_env) for i in range(4)]
    writers.append(_start(python_env, folders[4], pg_url, bucket_url, 10, 60, "batch", s3_env))
    deadline = time.monotonic() + 120
    while not all((f / "ready").exists() for f in folders) and time.monotonic() < deadline:
        assert all(w.poll() is None for w in writers), [w.communicate() for w in writers if w.poll() is not None]
        time.sleep(0.01)
    for folder in folders:
        (folder / "wait").unlink()
    results = [_result(w) for w in writers]
    (tmp_path / "reader" / "stop").touch()
    seen_by_reader = _result(reader)["versions"]
    (tmp_path / "late").mkdir()
    (tmp_path / "late" / "stop").touch()
    fresh = _result(_start(python_env, tmp_path / "late", pg_url, bucket_url, 98, 0, "read", s3_env))["versions"]
    acked = [tuple(a) for r in results for a in r["acked"]]
    assert sorted(v for v, _ in acked) == list(range(1, 81))
    assert fresh == seen_by_reader
    assert sorted(tuple(v) for v in fresh) == sorted(acked)
    newest = {tuple(r["versions"][-1]) for r in results[:4]}  # each writer's view when it finished
    assert max(v for v, _ in newest) <= 80 and [80, dict(acked)[80]] == fresh[-1]


def test_a_first_opener_killed_between_creating_the_two_tables_leaves_a_project_that_opens(lab, pg_url):
    """The journal and settings tables are created together: the CI once saw a second writer
    read the settings table in the instant between the two, and a kill there had left the
    project unopenable for ever."""
    import psycopg

    with psycopg.connect(pg_url, autocommit=True) as con:
        con.execute(f"CREATE TABLE {pgjournal.TABLE} (seq bigserial PRIMARY KEY, line text NOT NULL)")
    lab("a")
    LabSignal.save(np.arange(3.0), subject=1, session=2)
    assert LabSignal.load(subject=1, session=2).data.tolist() == [0.0, 1.0, 2.0]


def test_a_server_lost_as_a_settings_transaction_commits_is_a_clear_error(postgres, pg_url, tmp_path):
    """The COMMIT of a settings transaction is a statement too: a network cut just before it
    raised psycopg's own OperationalError, not a ScistackError naming the fix."""
    relay = TcpRelay(postgres.port)
    journal = PostgresJournal(pg_url.replace(f":{postgres.port}/", f":{relay.port}/"), tmp_path / "refs.log")
    execute = journal._execute

    def execute_then_cut(*args, **kwargs):
        result = execute(*args, **kwargs)
        relay.cut()  # the network fails after the INSERT, before the COMMIT
        return result

    journal._execute = execute_then_cut
    try:
        with pytest.raises(SharedServiceError, match="lost the shared journal"):
            journal.set_project_meta({"note": "x"})
    finally:
        journal.close()


def test_a_read_only_role_cannot_save_and_is_named(lab, postgres, tmp_path, pg_url, bucket_url):
    lab("a")
    LabSignal.save(np.arange(3.0), subject=1, session=1)
    database_module.get_database().close()
    database = pg_url.rsplit("/", 1)[1]
    reader_url = postgres.url(database, READER, READER_PASSWORD)
    folder = tmp_path / "r"
    folder.mkdir()
    db = configure_database(folder / "gait.duckdb", None, shared=reader_url, objects=bucket_url)
    try:
        assert LabSignal.load(subject=1, session=1).data.tolist() == [0.0, 1.0, 2.0]
        with pytest.raises(SharedAccessError, match=READER):
            LabSignal.save(np.arange(4.0), subject=1, session=1)
        assert [r.version for r in LabSignal.list_versions(subject=1, session=1)] == [1]
    finally:
        db.close()


def test_wrong_password_or_server_down_at_open_is_a_clear_error(postgres, tmp_path, pg_url, bucket_url,
                                                                refused_port):
    wrong = pg_url.replace(":lab-writer-pw@", ":not-the-password@")
    with pytest.raises(SharedServiceError, match="cannot reach the shared journal") as err:
        configure_database(tmp_path / "gait.duckdb", ["subject"], shared=wrong, objects=bucket_url)
    assert "not-the-password" not in str(err.value)
    down = f"postgresql://u:secret@127.0.0.1:{refused_port}/x"
    with pytest.raises(SharedServiceError) as err:
        configure_database(tmp_path / "gait.duckdb", ["subject"], shared=down, objects=bucket_url)
    assert "secret" not in str(err.value)
    assert not (tmp_path / ".scistack" / "config.json").exists()


def test_the_journal_backend_reads_only_the_tail(pg_url, tmp_path):
    journal = PostgresJournal(pg_url, tmp_path / "shared-journal")
    try:
        first = journal.append([{"op": "run"}, {"op": "run", "n": 1}])
        assert journal.size() == first and first >= 2
        journal.append([{"op": "run", "n": 2}])
        entries, offset = journal.read_from(first)
        assert entries == [{"op": "run", "n": 2}] and offset == journal.size()
        assert journal.read_from(offset) == ([], offset)
    finally:
        journal.close()


def test_a_lab_journal_line_with_a_lone_surrogate_is_read_with_its_escape(pg_url, tmp_path):
    """As the file journal's lines (`journal.texts_escaped`): a non-UTF-8 file name's byte,
    journalled before saves refused it, must not reach the fold or DuckDB as a lone surrogate
    (neither takes it: the project would not open); a valid pair stays the character it is."""
    journal = PostgresJournal(pg_url, tmp_path / "shared-journal")
    try:
        journal.append([{"op": "run", "name": "caf\udce9.csv", "caf\udce9": ["\udce9", "\U0001f600"]}])
        entries, _ = journal.read_from(0)
        assert entries == [{"op": "run", "name": "caf\\udce9.csv", "caf\\udce9": ["\\udce9", "\U0001f600"]}]
    finally:
        journal.close()


def _lab_put(subject: int) -> dict:
    return {"op": "put", "var": "LabStale", "addr": {"subject": subject}, "version": 1, "oid": "a" * 64,
            "kind": "json", "t": "2026-01-01T00:00:00Z"}


def test_a_size_reused_behind_another_process_sync_is_not_taken_for_a_replaced_journal(
        pg_url, tmp_path, monkeypatch):
    # two processes of one checkout share its DuckDB file and fold; `size()` reuses an answer
    # up to SIZE_TTL old, and one the other process had synced past was taken for a journal
    # replaced (compaction): DuckDB and the fold were rebuilt from the first line (slow at scale)
    from scistack.index.fold import Fold
    from scistack.index.sql import SqlIndex

    monkeypatch.setattr(pgjournal, "SIZE_TTL", 3600.0)  # the reused answer stays: deterministic
    with contextlib.ExitStack() as stack:
        other, for_sql, for_fold = (stack.enter_context(contextlib.closing(
            PostgresJournal(pg_url, tmp_path / "refs.log"))) for _ in range(3))
        other_fold, fold = (stack.enter_context(contextlib.closing(Fold(tmp_path / "fold.sqlite", j)))
                            for j in (other, for_fold))
        other.append([_lab_put(1)])
        assert for_sql.size() == for_fold.size() == 1  # reused from here on
        other.append([_lab_put(2), _lab_put(3)])
        assert SqlIndex(tmp_path / "x.duckdb", ["subject"], other).sync() == 3
        other_fold.catch_up()
        assert SqlIndex(tmp_path / "x.duckdb", ["subject"], for_sql).sync() == 0  # (a rebuild applied 3)
        read_from = []
        monkeypatch.setattr(for_fold, "read_from", lambda *a, **k: read_from.append(a[0]) or ([], a[0]))
        fold.catch_up()
        assert read_from == [3]  # (a fold anew read from 0)
        assert fold.count("LabStale") == 3


def test_ctrl_c_as_a_pipeline_starts_leaves_psycopgs_warnings_logged(pg_url, tmp_path):
    """A KeyboardInterrupt just after the journal marked this thread as in a pipeline (whose
    end's second error is not logged) and before the try that unmarks it: psycopg's "error
    ignored" warnings of this thread went unlogged for the rest of the session."""
    import logging

    from ..helpers import interrupt_when

    journal = PostgresJournal(pg_url, tmp_path / "shared-journal")
    try:
        with pytest.raises(KeyboardInterrupt), interrupt_when(lambda: getattr(pgjournal._QUIET, "on", False),
                                                             "scistack/index/pgjournal.py"):
            journal.append([{"op": "run"}])
        warning = logging.LogRecord("psycopg", logging.WARNING, __file__, 0, "error ignored terminating "
                                    "<psycopg.Pipeline [BAD]>", None, None)
        assert logging.getLogger("psycopg").filter(warning)  # outside a pipeline: logged
        size = journal.size()
        assert journal.append([{"op": "run", "n": 1}]) > size
    finally:
        journal.close()


def test_ctrl_c_just_after_the_lab_journal_lock_is_taken_releases_it(lab, pg_url):
    """A KeyboardInterrupt just after a batch's flush took the journal's advisory lock (held
    across its appends) and before the try that releases it left the lock held by this
    session: every other writer of the lab waited on it."""
    import psycopg

    from ..helpers import interrupt_when

    db = lab("a")
    LabSignal.save(np.arange(2.0), subject=1, session=1)
    other = psycopg.connect(pg_url, autocommit=True)

    def held() -> bool:
        free = other.execute("SELECT pg_try_advisory_lock(%s)", (pgjournal.LOCK_KEY,)).fetchone()[0]
        if free:
            other.execute("SELECT pg_advisory_unlock(%s)", (pgjournal.LOCK_KEY,))
        return not free

    try:
        with pytest.raises(KeyboardInterrupt), interrupt_when(held, "scistack/index/pgjournal.py"):
            with db.batch():
                LabSignal.save(np.arange(3.0), subject=2, session=1)
        assert not held()
        assert LabSignal.save(np.arange(4.0), subject=3, session=1).version == 1
    finally:
        other.close()
    assert db.index.in_batch is False


def test_another_thread_never_connects_anew_while_the_journal_lock_is_being_taken(pg_url, tmp_path):
    """The background sync shares the journal's connection. Between the server granting the
    advisory lock and the journal noting which session holds it, a read of another thread
    that met the connection dropped connected anew: the holder then took the new session for
    its own and appended on it without the lock (another machine's writer could number the
    same versions). The main thread stops just there; its session is ended from outside
    (a server restart, as pg_terminate_backend does); another thread reads."""
    import psycopg

    from ..helpers import run_when

    journal = PostgresJournal(pg_url, tmp_path / "shared-journal")
    other = psycopg.connect(pg_url, autocommit=True)
    read: list[object] = []

    def end_the_session_then_read_in_another_thread() -> None:
        pids = [pid for (pid,) in other.execute(
            "SELECT pid FROM pg_stat_activity WHERE datname = current_database() AND pid <> pg_backend_pid()")]
        assert pids
        for pid in pids:
            other.execute("SELECT pg_terminate_backend(%s)", (pid,))
        while other.execute("SELECT count(*) FROM pg_stat_activity WHERE pid = ANY(%s)", (pids,)).fetchone()[0]:
            pass  # (until the server has ended them: no sleep to guess)

        def reader() -> None:
            try:
                read.append(journal.read_from(0))
            except Exception as exc:  # noqa: BLE001 - the outcome is checked below
                read.append(exc)

        thread = threading.Thread(target=reader)
        thread.start()
        thread.join()

    try:
        journal.append([{"op": "run"}])
        taken = lambda: journal._lock_session == pgjournal._TAKING and journal._locked_size is not None  # noqa: E731
        with pytest.raises(SharedServiceError, match="lost the shared journal"):
            with run_when(taken, "scistack/index/pgjournal.py", end_the_session_then_read_in_another_thread):
                with journal.locked():
                    journal.append([{"op": "run", "n": 1}])  # (unlocked, on main: no error)
        assert isinstance(read[0], SharedServiceError) and "nothing was changed" in str(read[0]), read
        assert [e.get("n") for e in journal.read_from(0)[0]] == [None]  # nothing written unlocked
        journal.append([{"op": "run", "n": 2}])  # the next step connects anew
        assert [e.get("n") for e in journal.read_from(0)[0]] == [None, 2]
    finally:
        other.close()
        journal.close()


def test_postgres_down_mid_batch_loses_the_whole_batch_and_the_project_recovers(lab, postgres, caplog):
    db = lab("a")
    LabSignal.save(np.arange(2.0), subject=1, session=1)
    try:
        with pytest.raises(SharedServiceError, match="not recorded"):
            with db.batch():
                for i in range(5):
                    LabSignal.save(np.array([i]), subject=2, session=i)
                postgres.stop()
    finally:
        postgres.start()
    # only our error: psycopg's "error ignored terminating <psycopg.Pipeline [BAD]>" went to stderr too
    assert not [r for r in caplog.records if "error ignored" in r.getMessage()]
    assert LabSignal.load(subject=1, session=1).data.tolist() == [0.0, 1.0]  # reconnected
    with pytest.raises(VariableNotFoundError):
        LabSignal.load(subject=2, session=0)  # no half batch of names
    assert LabSignal.save(np.arange(3.0), subject=1, session=1).version == 2


def test_a_frozen_journal_server_fails_a_save_in_bounded_time_and_the_project_recovers(lab, postgres, monkeypatch):
    # a server that stops answering without closing its connections (a frozen VM, SIGSTOP here)
    # held a save for the whole outage: statement_timeout runs on the server, and the kernel
    # of a stopped process still acknowledges every packet, so no keepalive fires
    monkeypatch.setattr(pgjournal, "SILENCE", 2.0)
    monkeypatch.setattr(pgjournal, "PROBE_TIMEOUT", 2)
    db = lab("a", sync_delay=3600)  # each step's own statement is cut (the background sync's, when
    LabSignal.save(np.arange(2.0), subject=1, session=1)  # it comes first: the test below)
    outcome = frozen_while(postgres.pids(), lambda: LabSignal.save(np.arange(3.0), subject=2, session=1))
    assert isinstance(outcome.error, SharedServiceError) and "stopped answering" in str(outcome.error), outcome
    assert outcome.seconds < 15, outcome
    assert LabSignal.load(subject=1, session=1).data.tolist() == [0.0, 1.0]  # thawed: a new session

    def batch():  # the locked path: a session-level lock, granted to the dropped session on thaw
        with db.batch():
            for i in range(3):
                LabSignal.save(np.array([float(i)]), subject=3, session=i)

    outcome = frozen_while(postgres.pids(), batch)
    assert isinstance(outcome.error, SharedServiceError) and "stopped answering" in str(outcome.error), outcome
    assert outcome.seconds < 15, outcome
    assert LabSignal.load(subject=1, session=1).data.tolist() == [0.0, 1.0]  # nothing saved before is lost
    with pytest.raises(VariableNotFoundError):
        LabSignal.load(subject=3, session=0)  # the batch's lines were never sent
    other = lab("b")  # the dropped sessions' locks were released: another machine saves
    LabSignal.save(np.arange(5.0), subject=4, session=1)
    other.close()
    database_module._current = db
    LabSignal.save(np.arange(3.0), subject=2, session=1)  # re-run: one version (the server, thawed, ran the
    assert [v.version for v in LabSignal.list_versions(subject=2, session=1)] == [1]  # first's INSERT, or not)
    assert LabSignal.load(subject=4, session=1).data.tolist() == list(np.arange(5.0))


def test_a_frozen_server_met_first_by_the_background_sync_fails_the_next_batch_in_bounded_time(
        lab, postgres, monkeypatch):
    # the background sync shares the journal's connection: when its statement was the one the
    # watchdog cut (a busy machine: it ran between the batch's end and its flush), the flush
    # connected anew to the frozen server and failed after connect_timeout (10 s) more with
    # "connection timeout expired". db.sync() plays the background sync, first, every time.
    monkeypatch.setattr(pgjournal, "SILENCE", 2.0)
    monkeypatch.setattr(pgjournal, "PROBE_TIMEOUT", 2)
    monkeypatch.setattr(pgjournal, "SIZE_TTL", 0.0)  # the sync asks the server, never a cached size
    db = lab("a", sync_delay=3600)
    LabSignal.save(np.arange(2.0), subject=1, session=1)
    batch_seconds = []

    def sync_then_batch():
        with pytest.raises(SharedServiceError, match="stopped answering"):
            db.sync()
        started = time.monotonic()
        try:
            with db.batch():
                for i in range(3):
                    LabSignal.save(np.array([float(i)]), subject=3, session=i)
        finally:
            batch_seconds.append(time.monotonic() - started)

    outcome = frozen_while(postgres.pids(), sync_then_batch)
    assert isinstance(outcome.error, SharedServiceError) and "stopped answering" in str(outcome.error), outcome
    assert batch_seconds[0] < 8, (batch_seconds, outcome)  # a new connection's connect_timeout is 10 s
    with pytest.raises(VariableNotFoundError):  # thawed: a new session; the batch was never sent
        LabSignal.load(subject=3, session=0)
    with db.batch():  # re-run
        for i in range(3):
            LabSignal.save(np.array([float(i)]), subject=3, session=i)
    assert [LabSignal.load(subject=3, session=i).data.tolist() for i in range(3)] == [[0.0], [1.0], [2.0]]
    assert LabSignal.load(subject=1, session=1).data.tolist() == [0.0, 1.0]


def test_a_server_frozen_before_answering_an_unlock_fails_the_next_statement_without_a_new_connection(
        postgres, pg_url, tmp_path, monkeypatch):
    # a save returns once its unlock is sent; a server frozen before answering it (a busy
    # machine) was probed silent, then connected to anew for connect_timeout (10 s) more, and
    # the step failed with "timeout expired", not that the server stopped answering
    monkeypatch.setattr(pgjournal, "SILENCE", 2.0)
    monkeypatch.setattr(pgjournal, "PROBE_TIMEOUT", 2)
    with contextlib.closing(PostgresJournal(pg_url, tmp_path / "shared-journal")) as journal:
        pids = postgres.pids()
        try:
            with journal.locked():
                freeze(pids)  # before the server can answer the unlock sent on leaving
            outcome = frozen_while(pids, lambda: journal.append([{"op": "run"}]))
        finally:
            thaw(pids)  # (done by frozen_while, unless it was not reached)
        assert isinstance(outcome.error, SharedServiceError) and "stopped answering" in str(outcome.error), outcome
        assert outcome.seconds < journal.connect_timeout, outcome
        assert journal.append([{"op": "run"}]) == journal.size() == 1  # thawed: a new session


def test_only_the_first_reconnect_after_a_cut_is_short(postgres, pg_url, tmp_path, monkeypatch):
    # after the watchdog cut a silent server's connection, the next connection attempt gets
    # PROBE_TIMEOUT (a step fails fast); every later one had too, so a server alive again but
    # slower than that to accept a connection was never reached again by this process
    monkeypatch.setattr(pgjournal, "SILENCE", 2.0)
    monkeypatch.setattr(pgjournal, "PROBE_TIMEOUT", 2)
    monkeypatch.setattr(pgjournal, "SIZE_TTL", 0.0)  # every size() asks the server
    with contextlib.closing(PostgresJournal(pg_url, tmp_path / "shared-journal")) as journal:
        journal.connect_timeout = 20
        pids = postgres.pids()
        freeze(pids)
        try:
            with pytest.raises(SharedServiceError, match="stopped answering"):
                journal.size()  # the statement is cut
            started = time.monotonic()
            with pytest.raises(SharedServiceError, match="stopped answering"):
                journal.size()  # the first reconnect: short
            assert time.monotonic() - started < 10
            timer = threading.Timer(5.0, thaw, (postgres.pids(),))  # alive again, slowly
            timer.start()
            try:
                assert journal.size() == 0  # waited for with connect_timeout, not PROBE_TIMEOUT (2 s)
            finally:
                timer.cancel()
        finally:
            thaw(postgres.pids())


def test_a_save_waiting_for_another_writers_lock_longer_than_the_silence_is_not_cut(lab, pg_url, monkeypatch):
    # the watchdog checks that the server answers, not how long a statement takes: a save
    # waits as long as another writer holds the journal lock
    import psycopg

    monkeypatch.setattr(pgjournal, "SILENCE", 1.0)
    lab("a")
    LabSignal.save(np.arange(2.0), subject=1, session=1)
    with psycopg.connect(pg_url, autocommit=True) as other:
        other.execute("SELECT pg_advisory_lock(%s)", (pgjournal.LOCK_KEY,))
        timer = threading.Timer(4.0, other.execute, ("SELECT pg_advisory_unlock_all()",))
        timer.start()
        started = time.monotonic()
        try:
            LabSignal.save(np.arange(3.0), subject=1, session=1)
        finally:
            timer.join()
    assert time.monotonic() - started > 3.5  # it waited for the lock, through several probes
    assert LabSignal.load(subject=1, session=1).data.tolist() == [0.0, 1.0, 2.0]


@pytest.mark.usefixtures("brief_prune_wait")
def test_a_client_killed_mid_batch_leaves_no_names_and_gc_collects_its_objects_later(
        lab, tmp_path, pg_url, bucket_url, python_env, s3_env, monkeypatch):
    worker = _start(python_env, tmp_path / "k", pg_url, bucket_url, 7, 20, "killme", s3_env)
    assert worker.stdout.readline().strip() == "uploaded"
    worker.send_signal(signal.SIGKILL)
    worker.wait()
    db = lab("a")
    with pytest.raises(VariableNotFoundError):
        LabSignal.load(subject=200, session=0)
    kept = collect_garbage(db, grace_seconds=3600)
    assert kept.objects_deleted == 0 and kept.objects_kept_by_grace >= 20
    floored = collect_garbage(db, grace_seconds=0)  # other machines' writers cannot be seen
    assert floored.objects_deleted == 0 and "1 h" in floored.grace_note
    monkeypatch.setattr(gc_module, "PRUNE_FLOOR", 0.0)  # as if an hour had passed
    swept = collect_garbage(db, grace_seconds=0)
    assert swept.objects_deleted >= 20
    assert collect_garbage(db, grace_seconds=0).objects_scanned == swept.objects_scanned - swept.objects_deleted


@pytest.mark.usefixtures("brief_prune_wait")
def test_lab_gc_reads_the_shared_journal_in_slices_deletions_first(lab, monkeypatch):
    """gc folds the PostgreSQL journal a slice at a time (a first pass parses only the lines
    that can be deletions): its roots are the whole fold's; a deleted version's object goes,
    every other version's stays."""
    monkeypatch.setattr(gc_module, "_SLICE_BYTES", 600)  # two lines a slice
    monkeypatch.setattr(gc_module, "PRUNE_FLOOR", 0.0)  # as if an hour had passed
    db = lab("a")
    for v in range(3):
        LabSignal.save(np.arange(3.0) + 10 * v, subject=9, session=1)
    gone = LabSignal.load(subject=9, session=1, version=2).oid
    LabSignal.delete(subject=9, session=1, version=2)
    roots, bad = gc_module.fold_roots(db.index)
    state, _ = db.index.full_fold()
    whole = gc_module.Roots.of_state(state)
    assert bad == 0 and roots.values == whole.values and len(roots.values["LabSignal"]["npy"]) == 2
    assert collect_garbage(db, grace_seconds=0).objects_deleted >= 1
    assert not db.store.contains(gone)
    assert [LabSignal.load(subject=9, session=1, version=v).data.tolist()[0] for v in (1, 3)] == [0.0, 20.0]


def test_a_colleague_joins_with_one_command_and_later_opens_need_no_urls(lab, tmp_path, pg_url, bucket_url,
                                                                         python_env, s3_env):
    lab("a")
    LabSignal.save(np.arange(3.0), subject=4, session=1)
    database_module.get_database().close()
    scistack = str(Path(sys.executable).with_name("scistack"))
    env = python_env | s3_env | {"PGPASSWORD": "lab-writer-pw"}
    folder = tmp_path / "colleague"
    folder.mkdir()
    url = pg_url.replace(":lab-writer-pw@", "@")  # the password comes from PGPASSWORD
    joined = subprocess.run([scistack, "init", "gait.duckdb", "--shared", url, "--objects", bucket_url],
                            cwd=folder, env=env, capture_output=True, text=True)
    assert joined.returncode == 0, joined.stderr
    assert "subject, session" in joined.stdout
    listed = subprocess.run([scistack, "sql", "SELECT count(*) AS n FROM LabSignal", "--json"], cwd=folder, env=env,
                            capture_output=True, text=True)
    assert listed.returncode == 0, listed.stderr
    assert json.loads(listed.stdout) == [{"n": 1}]
    for command in (["ls"], ["fsck"], ["gc", "--dry-run"], ["show", "LabSignal", "--subject", "4", "--session", "1"]):
        done = subprocess.run([scistack, *command], cwd=folder, env=env, capture_output=True, text=True)
        assert done.returncode == 0, (command, done.stderr)


def test_a_laptop_project_with_names_is_not_silently_hidden_by_lab_mode(tmp_path, monkeypatch, pg_url, bucket_url):
    monkeypatch.chdir(tmp_path)
    db = configure_database(tmp_path / "gait.duckdb", ["subject", "session"])
    LabSignal.save(np.arange(2.0), subject=1, session=1)
    db.close()
    with pytest.raises(SchemaMismatchError, match="laptop project"):
        configure_database(tmp_path / "gait.duckdb", ["subject", "session"], shared=pg_url, objects=bucket_url)
    db = configure_database(tmp_path / "gait.duckdb", ["subject", "session"])
    try:
        assert LabSignal.load(subject=1, session=1).data.tolist() == [0.0, 1.0]
    finally:
        db.close()


def test_configure_again_in_one_process_with_lab_urls_is_checked_as_in_a_fresh_one(tmp_path, monkeypatch, pg_url,
                                                                                   bucket_url):
    # the same path again with shared=/obj= added returned the open laptop database: saves
    # stayed on the laptop, where a fresh process refuses
    monkeypatch.chdir(tmp_path)
    keys = ["subject", "session"]
    db = configure_database(tmp_path / "gait.duckdb", keys)
    LabSignal.save(np.arange(2.0), subject=1, session=1)
    with pytest.raises(SchemaMismatchError, match="holds a laptop project with saved names"):
        configure_database(tmp_path / "gait.duckdb", keys, shared=pg_url, objects=bucket_url)
    assert database_module.current_database() is db and db.shared_url is None  # as it was
    assert configure_database(tmp_path / "gait.duckdb", keys) is db
    db.close()
    lab = configure_database(tmp_path / "lab" / "gait.duckdb", keys, shared=pg_url, objects=bucket_url)
    assert configure_database(tmp_path / "lab" / "gait.duckdb", keys, shared=pg_url, objects=bucket_url) is lab
    assert configure_database(tmp_path / "lab" / "gait.duckdb", keys) is lab
    with pytest.raises(SchemaMismatchError, match=f"keeps its objects at {bucket_url}"):
        configure_database(tmp_path / "lab" / "gait.duckdb", keys, shared=pg_url, objects=bucket_url + "-typo")
    current = database_module.current_database()  # the lab project, open again as it was
    try:
        assert current.objects_url == bucket_url and current.shared_url is not None
        LabSignal.save(np.arange(3.0), subject=2, session=1)
    finally:
        current.close()


def test_a_one_round_trip_append_writes_only_onto_the_journal_it_numbered_from(tmp_path, pg_url):
    """`append_if` (a single save's path) appends only when no line came since `expected`,
    and never under this thread's own `locked()` (the caller then takes the locked path)."""
    journal = PostgresJournal(pg_url, tmp_path / "shared-journal")
    other = PostgresJournal(pg_url, tmp_path / "other-machine")
    line = {"op": "call", "key": "k" * 64, "call": "c" * 64, "fn": "f", "outs": [], "t": "2026-01-01T00:00:00Z"}
    try:
        first = journal.append_if([line], 0)
        assert first is not None and journal.size() == first
        other.append([line])  # another machine wrote since: numbering from `first` is stale
        assert journal.append_if([line], first) is None
        entries, last = journal.read_from(0)
        assert len(entries) == 2
        assert journal.append_if([line], last) == last + 1
        with journal.locked():
            assert journal.append_if([line], last + 1) is None
        assert len(journal.read_from(0)[0]) == 3
    finally:
        journal.close()
        other.close()


def test_a_finer_level_added_on_one_machine_is_every_checkouts(lab, tmp_path, monkeypatch):
    """`add_schema_key` in a lab project: the keys are the shared journal's, so every
    checkout (one that joined before, one that joins after, a script still naming the old
    keys) opens with the new level, and a name another machine used otherwise is refused."""
    lab("c").close()  # a checkout that joined before the key was added
    b = lab("b")
    LabSignal.save(np.arange(1.0), subject=1, session=1, rep=1)  # "rep": a version key, from machine b
    b.close()
    a = lab("a")
    with pytest.raises(InvalidMetadataError, match="'rep' as a version key"):
        a.add_schema_key("rep")
    LabSignal.save(np.arange(3.0), subject=1, session=2)
    stale = lab("e")  # open on another machine while the key is added
    assert a.add_schema_key("trial") == ["subject", "session", "trial"]
    database_module._current = stale
    monkeypatch.setattr(database_module, "_SHARED_KEYS_TTL", 0.0)  # (it reads the shared keys every 10 s)
    with pytest.raises(SchemaMismatchError, match="'trial' became a schema key"):
        LabSignal.save(np.arange(1.0), subject=1, session=2, trial=7)  # not a version key 'trial'
    stale.close()
    database_module._current = a
    LabSignal.save(np.arange(2.0), subject=1, session=2, trial=7)
    a.close()
    for name in ("c", "d"):
        with pytest.warns(UserWarning, match="since a finer level was added"):
            other = lab(name)  # (the fixture names the keys the project was created with)
        assert other.schema_keys == ["subject", "session", "trial"]
        assert json.loads((tmp_path / name / ".scistack" / "config.json").read_text())["schema_keys"] == \
            ["subject", "session", "trial"]
        assert LabSignal.load(subject=1, session=2, trial=7).data.tolist() == [0.0, 1.0]
        assert LabSignal.load(subject=1, session=2).data.tolist() == [0.0, 1.0, 2.0]  # the coarser value stays
        rows = other.sql("SELECT count(*) AS n, max(trial) AS trial FROM LabSignal WHERE subject = 1")  # the new column
        assert rows.values.tolist() == [[3, 7]]
        other.close()


def test_load_all_frame_of_doubles_is_current_across_machines(lab):
    """`load_all(as_df=True)` of doubles is one DuckDB query only while this machine's DuckDB
    is in step with the shared journal: a value another machine saved since is in the frame
    at once, as the fold's records give it."""
    import pandas as pd

    db = lab("a")
    with db.batch():
        for subject in range(5):
            LabSignal.save(subject + 0.5, subject=subject, session=1)
    db.close()
    b = lab("b")
    b.sync()
    assert b.index.duckdb_in_step()
    frame = LabSignal.load_all(as_df=True)
    with b.batch():  # (inside a batch the fold is read)
        pd.testing.assert_frame_equal(frame, LabSignal.load_all(as_df=True), check_exact=True)
    assert frame["data"].tolist() == [0.5, 1.5, 2.5, 3.5, 4.5]
    b.close()
    a = lab("a")
    LabSignal.save(9.25, subject=3, session=1)
    a.close()
    b = lab("b")
    assert LabSignal.load_all(as_df=True)["data"].tolist() == [0.5, 1.5, 2.5, 9.25, 4.5]


def test_creating_the_tables_takes_the_journal_lock_before_the_connection(pg_url, tmp_path):
    """`_ensure_tables` took the connection's lock (`_io`) and then the journal's (`locked()`),
    the opposite of every other step: a thread holding `locked()` that then ran a statement
    waited for ever on it, which waited for `locked()`. Here the tables are gone (as for a
    first opener) while another thread holds the journal; it runs a statement once the
    creator is waiting for the lock."""
    import psycopg

    journal = PostgresJournal(pg_url, tmp_path / "shared-journal")
    with psycopg.connect(pg_url, autocommit=True) as con:
        con.execute(f"DROP TABLE {pgjournal.TABLE}, {pgjournal.META}")
    holding, done = threading.Event(), threading.Event()
    outcome: list[object] = []

    def creator() -> None:
        holding.wait()
        journal._ensure_tables()

    def waiting_for_the_lock(thread: threading.Thread) -> bool:
        frame = sys._current_frames().get(thread.ident)
        while frame is not None:
            if frame.f_code.co_name == "locked" and frame.f_code.co_filename == pgjournal.__file__:
                return True
            frame = frame.f_back
        return False

    def holder() -> None:
        try:
            with journal.locked(_tables=False):
                holding.set()
                deadline = time.monotonic() + 60
                while not waiting_for_the_lock(make) and make.is_alive() and time.monotonic() < deadline:
                    time.sleep(0.001)
                outcome.append(journal._execute("SELECT 1").fetchone()[0])
        except Exception as exc:  # noqa: BLE001 - the outcome is checked below
            outcome.append(exc)
        finally:
            done.set()

    make = threading.Thread(target=creator, daemon=True)
    hold = threading.Thread(target=holder, daemon=True)
    make.start()
    hold.start()
    assert done.wait(60), "the holder of the journal lock waited for ever on the table creator"
    make.join(60)
    assert outcome == [1] and not make.is_alive()
    journal.append([{"op": "run"}])
    assert len(journal.read_from(0)[0]) == 1
    journal.close()


def test_init_shared_of_a_new_project_without_keys_suggests_the_command_with_keys(tmp_path, monkeypatch, pg_url,
                                                                                bucket_url):
    # `scistack init gait.duckdb --shared URL` of a journal that holds no project yet told the
    # shell user to call configure_database(...) in Python
    from click.testing import CliRunner

    from scistack.cli import main

    monkeypatch.chdir(tmp_path)
    url = pg_url.replace(":lab-writer-pw@", "@")
    monkeypatch.setenv("PGPASSWORD", "lab-writer-pw")
    done = CliRunner().invoke(main, ["init", "gait.duckdb", "--shared", url, "--objects", bucket_url])
    assert done.exit_code == 2
    error = done.output.strip().splitlines()[-1]
    assert "configure_database" not in error
    assert f"scistack init gait.duckdb --shared {url} --objects {bucket_url} --keys subject,session" in error
    done = CliRunner().invoke(main, ["init", "gait.duckdb", "--shared", url])
    assert done.exit_code == 2
    assert f"--shared {url} --objects s3://bucket/prefix --keys subject,session" in done.output
    done = CliRunner().invoke(main, ["init", "gait.duckdb", "--shared", url, "--keys", "subject,session"])
    assert done.exit_code == 2 and "--objects" in done.output
    done = CliRunner().invoke(main, ["init", "gait.duckdb", "--shared", url, "--objects", bucket_url,
                                     "--keys", "subject,session"])
    assert done.exit_code == 0, done.output
    assert "schema keys subject, session" in done.output
    database_module._current = None


def _advisory_holders(other) -> list[int]:
    """The backends holding the journal's advisory lock (asked on a connection of the test's)."""
    return [pid for (pid,) in other.execute(
        "SELECT pid FROM pg_locks WHERE locktype = 'advisory' AND granted AND objid = %s",
        (pgjournal.LOCK_KEY,))]


def test_a_forked_child_saves_on_a_session_of_its_own_and_leaves_its_parents_alone(pg_url, tmp_path):
    """A forked child shared its parent's connection: it saved on the parent's session (its
    statements interleaved with the parent's on one socket) and its close sent Terminate there,
    which ended the parent's session; the parent's next save connected anew."""
    import psycopg

    journal = PostgresJournal(pg_url, tmp_path / "shared-journal")
    other = psycopg.connect(pg_url, autocommit=True)
    try:
        journal.append([{"op": "run"}])  # (its unlock sent, the answer unread: read by the parent)
        parent = journal._con.info.backend_pid
        pid = os.fork()
        if pid == 0:
            code = 1
            try:
                journal.append([{"op": "run", "n": 1}])
                code = 2 if journal._con.info.backend_pid == parent else 0
                journal.close()
            finally:
                os._exit(code)
        assert child_status(pid) == 0, "the child saved on its parent's session"
        with journal.locked():
            assert _advisory_holders(other) == [parent]
        assert journal._sessions == 1 and journal._con.info.backend_pid == parent
        journal.append([{"op": "run", "n": 2}])
        assert [e.get("n") for e in journal.read_from(0)[0]] == [None, 1, 2]
        assert journal._sessions == 1
    finally:
        other.close()
        journal.close()


def test_a_child_forked_inside_locked_never_releases_the_parents_lock(pg_url, tmp_path):
    """A child that left a `locked()` it was forked inside sent the unlock on its parent's
    session (the lock was the parent's), and its close ended that session: another machine's
    writer could then number the versions the parent was numbering."""
    import psycopg

    journal = PostgresJournal(pg_url, tmp_path / "shared-journal")
    other = psycopg.connect(pg_url, autocommit=True)
    pid, code = -1, 1
    try:
        journal.append([{"op": "run"}])
        with journal.locked():
            parent = journal._con.info.backend_pid
            pid = os.fork()
            if pid != 0:  # the parent: the child has left the block (and exited) meanwhile
                status = child_status(pid)
                assert _advisory_holders(other) == [parent], "the child released its parent's lock"
                assert status == 0, "the child believed it held the lock (2), or read on its parent's session (3)"
                journal.append([{"op": "run", "n": 2}])  # still ours: re-entrant, no wait
                assert journal._sessions == 1
            elif journal._depth or journal._held_here():
                code = 2
            else:
                entries, _ = journal.read_from(0)  # (on a session of its own: the lock is not needed)
                same = journal._con.info.backend_pid == parent
                code = 3 if same or [e.get("n") for e in entries] != [None] else 0
        if pid == 0:
            journal.close()
        journal.fresh_size()  # (the unlock's answer read: it is sent without waiting)
        assert _advisory_holders(other) == []
    finally:
        if pid == 0:
            os._exit(code)  # the child: out of the block, never back into pytest
        other.close()
        journal.close()


def test_a_child_forked_inside_locked_waits_for_the_lock_to_save(pg_url, tmp_path):
    """A child forked inside its parent's `locked()` holds nothing: its save inside the block
    takes the lock on a session of its own, so it waits for the parent's (it had saved at once,
    on the parent's session, as if it held the lock)."""
    import psycopg

    journal = PostgresJournal(pg_url, tmp_path / "shared-journal")
    other = psycopg.connect(pg_url, autocommit=True)
    pid = -1
    try:
        journal.append([{"op": "run"}])
        with journal.locked():
            pid = os.fork()
            if pid == 0:
                journal.append([{"op": "run", "n": "child"}])
            else:
                deadline = time.monotonic() + 60
                waiting = "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND NOT granted"
                while not other.execute(waiting).fetchone()[0] and time.monotonic() < deadline:
                    done, status = os.waitpid(pid, os.WNOHANG)
                    assert not done, f"the child saved without waiting for the lock (status {status})"
                    time.sleep(0.01)
                assert other.execute(waiting).fetchone()[0] == 1, "the child never waited for the lock"
                journal.append([{"op": "run", "n": "parent"}])
        if pid == 0:
            journal.close()
            os._exit(0)
        assert child_status(pid) == 0
        assert [e.get("n") for e in journal.read_from(0)[0]] == [None, "parent", "child"]
    finally:
        if pid == 0:
            os._exit(1)
        other.close()
        journal.close()


def test_a_child_forked_while_another_thread_held_the_journal_saves(pg_url, tmp_path):
    """Threads do not survive a fork, and locks they held stay held in the child: a child forked
    while the background sync ran a statement (the connection's lock) and the watchdog checked
    its journals (its set's lock) waited for ever at its first save."""
    journal = PostgresJournal(pg_url, tmp_path / "shared-journal")
    holding, release = threading.Event(), threading.Event()

    def hold() -> None:
        with journal._io, pgjournal._WATCHES_LOCK:
            holding.set()
            release.wait(60)

    thread = threading.Thread(target=hold, daemon=True)
    thread.start()
    try:
        assert holding.wait(60)
        pid = os.fork()
        if pid == 0:
            code = 1
            try:
                journal.append([{"op": "run", "n": 1}])
                code = 0
                journal.close()
            finally:
                os._exit(code)
        release.set()
        assert child_status(pid, bound=30) == 0, "the child waited for a lock of a thread it does not have"
        assert [e.get("n") for e in journal.read_from(0)[0]] == [1]
    finally:
        release.set()
        thread.join(60)
        journal.close()


_SWAP = """
import sys
from scistack import BaseVariable, configure_database
db = configure_database(sys.argv[1], ["subject", "session"], shared=sys.argv[2], objects=sys.argv[3])
class LabKeyA(BaseVariable): pass
class LabKeyB(BaseVariable): pass
LabKeyA.delete(subject="5")
LabKeyB.save(2.0, subject=5, session=1)
db.close()
"""


class LabKeyA(BaseVariable):
    pass


def test_a_look_alike_another_machine_saved_since_is_seen_by_a_long_lived_process(lab, tmp_path, pg_url,
                                                                                bucket_url, python_env, s3_env):
    """A notebook saved "5"; another machine deleted it and saved 5; the notebook's next save
    of "5" (its value remembered as passed, the journal's `append_if` then refused as it had
    grown) is checked again against the other machine's lines once folded, and refused."""
    lab("a")
    LabKeyA.save(1.0, subject="5", session=1)
    (tmp_path / "b").mkdir()
    subprocess.run([sys.executable, "-c", _SWAP, str(tmp_path / "b" / "gait.duckdb"), pg_url, bucket_url],
                   env=python_env | s3_env, cwd=tmp_path / "b", check=True, timeout=300)
    with pytest.raises(InvalidMetadataError, match=r"LabKeyA: subject='5' \(text\) looks like subject=5"):
        LabKeyA.save(3.0, subject="5", session=1)
    assert list(LabKeyA.load_all()) == []


def test_a_look_alike_another_process_in_the_same_folder_saved_and_folded_is_seen(lab, tmp_path, pg_url,
                                                                                  bucket_url, python_env, s3_env):
    """As above, the other process in this machine's folder: it folds its own lines into the
    fold.sqlite both share, so the fold's offset is the journal's end and `append_if` from it
    succeeded without this process folding (or forgetting) anything: "5" was saved beside a
    live 5. A fold this process did not make is caught up (and the memo forgotten) first."""
    lab("a")
    LabKeyA.save(1.0, subject="5", session=1)
    subprocess.run([sys.executable, "-c", _SWAP, str(tmp_path / "a" / "gait.duckdb"), pg_url, bucket_url],
                   env=python_env | s3_env, cwd=tmp_path / "a", check=True, timeout=300)
    with pytest.raises(InvalidMetadataError, match=r"LabKeyA: subject='5' \(text\) looks like subject=5"):
        LabKeyA.save(3.0, subject="5", session=1)
    assert list(LabKeyA.load_all()) == []
