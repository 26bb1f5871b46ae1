"""The index: journal durability, DuckDB views, concurrency with real processes and tools."""

from __future__ import annotations

import json
import shutil
import signal
import subprocess
import sys
import textwrap
import time
import warnings
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from scistack import BaseVariable, configure_database
from scistack.errors import AtomicBatchError, ScistackError, UnreadableJournalWarning, VariableNotFoundError
from scistack.index.sql import SCHEMA_VERSION, STORAGE_COMPATIBILITY, SyncStopped

from .helpers import journal_size

DUCKDB_CLI = shutil.which("duckdb", path=str(Path(sys.executable).parent)) or shutil.which("duckdb")


class MaxActivation(BaseVariable):
    pass


class Signal(BaseVariable):
    pass


def _run(code: str, env: dict, cwd: Path, timeout: float = 60) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code)], env=env, cwd=cwd,
                          capture_output=True, text=True, timeout=timeout)


def test_view_per_variable_reads_like_a_table(project):
    for subject, value in [(1, 0.82), (2, 0.91)]:
        MaxActivation.save(value, subject=subject, session="baseline")
    project.sync()
    frame = project.sql("SELECT subject, session, value FROM MaxActivation ORDER BY subject")
    assert frame.values.tolist() == [[1, "baseline", 0.82], [2, "baseline", 0.91]]


def test_view_shows_latest_version_with_the_array_itself(project):
    Signal.save(np.zeros(1000), subject=1, session="pre")
    Signal.save(np.ones(1000), subject=1, session="pre")
    project.sync()
    frame = project.sql('SELECT subject, value, summary, shape, version FROM "Signal"')
    assert frame["value"][0].tolist() == [1.0] * 1000
    assert frame[["subject", "summary", "version"]].values.tolist() == [[1, "float64[1000]", 2]]
    assert frame["shape"][0].tolist() == [1000]


def test_index_holds_names_only_and_schema_version(project):
    Signal.save(np.arange(10_000.0), subject=1, session="pre")
    project.sync()
    meta = dict(project.sql("SELECT key, value FROM meta").values.tolist())
    assert int(meta["schema_version"]) == SCHEMA_VERSION
    assert project.path.stat().st_size < 2_000_000  # small arrays are inlined, nothing more
    tags = project.sql("SELECT tags FROM duckdb_databases() WHERE database_name = current_database()")
    assert STORAGE_COMPATIBILITY in str(tags.iloc[0, 0])


@pytest.mark.skipif(DUCKDB_CLI is None, reason="duckdb-cli is installed by make test")
def test_duckdb_cli_opens_the_file_while_python_is_idle(project):
    MaxActivation.save(0.5, subject=1, session="pre")
    project.sync()
    done = subprocess.run([DUCKDB_CLI, str(project.path), "-csv", "-c",
                           "SELECT subject, session, value FROM MaxActivation"],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines()[1] == "1,pre,0.5"


def test_saves_survive_sigkill_right_after_returning(tmp_path, python_env):
    script = f"""
        import os, signal, numpy as np
        from scistack import configure_database, BaseVariable
        db = configure_database({str(tmp_path / 'k.duckdb')!r}, ["subject", "session"])
        class Signal(BaseVariable): pass
        for i in range(200):
            Signal.save(np.full(10, float(i)), subject=i, session="pre")
        os.kill(os.getpid(), signal.SIGKILL)
    """
    done = _run(script, python_env, tmp_path)
    assert done.returncode == -signal.SIGKILL
    db = configure_database(tmp_path / "k.duckdb", ["subject", "session"])
    try:
        for i in range(200):
            assert Signal.load(subject=i, session="pre").data[0] == float(i)
        db.sync()
        assert db.sql('SELECT count(*) FROM "Signal"').iloc[0, 0] == 200
    finally:
        db.close()


def test_two_processes_saving_at_once_lose_nothing(tmp_path, python_env):
    configure_database(tmp_path / "c.duckdb", ["subject", "session"]).close()
    script = """
        import sys, numpy as np
        from scistack import configure_database, BaseVariable
        db = configure_database(sys.argv[1], ["subject", "session"])
        class Signal(BaseVariable): pass
        who = sys.argv[2]
        for i in range(150):
            Signal.save(np.full(5, i), subject=i, session=who)
            Signal.save(np.full(5, -i), subject=i, session="shared")  # same addresses from both
        db.close()
    """
    procs = [subprocess.Popen([sys.executable, "-c", textwrap.dedent(script), str(tmp_path / "c.duckdb"), who],
                              env=python_env, cwd=tmp_path, stderr=subprocess.PIPE, text=True)
             for who in ("a", "b")]
    for proc in procs:
        assert proc.wait(timeout=120) == 0, proc.stderr.read()
    db = configure_database(tmp_path / "c.duckdb", ["subject", "session"])
    try:
        for who in ("a", "b"):
            assert len(Signal.load(session=who)) == 150
        versions = Signal.list_versions(subject=3, session="shared")
        assert [v.version for v in versions] == [1]  # the second identical save was a no-op
        db.sync()
        assert db.sql('SELECT count(*) FROM refs').iloc[0, 0] == 450
    finally:
        db.close()


def test_two_processes_saving_in_batches_at_once_never_share_a_version_number(tmp_path, python_env):
    configure_database(tmp_path / "c.duckdb", ["subject", "session"]).close()
    script = """
        import sys, time, numpy as np
        from scistack import configure_database, BaseVariable
        db = configure_database(sys.argv[1], ["subject", "session"])
        class Signal(BaseVariable): pass
        offset = 1000 if sys.argv[2] == "b" else 0
        with db.batch():  # the same addresses, different values, from both processes
            for i in range(100):
                Signal.save(np.full(5, i + offset), subject=i, session="shared")
                time.sleep(0.002)
        db.close()
    """
    procs = [subprocess.Popen([sys.executable, "-c", textwrap.dedent(script), str(tmp_path / "c.duckdb"), who],
                              env=python_env, cwd=tmp_path, stderr=subprocess.PIPE, text=True)
             for who in ("a", "b")]
    for proc in procs:
        assert proc.wait(timeout=120) == 0, proc.stderr.read()
    db = configure_database(tmp_path / "c.duckdb", ["subject", "session"])
    try:
        for i in range(100):
            assert [v.version for v in Signal.list_versions(subject=i, session="shared")] == [1, 2]
    finally:
        db.close()


def test_idle_python_process_does_not_lock_out_a_second_writer(tmp_path, python_env):
    holder = subprocess.Popen([sys.executable, "-c", textwrap.dedent(f"""
        import time, numpy as np
        from scistack import configure_database, BaseVariable
        db = configure_database({str(tmp_path / 'i.duckdb')!r}, ["subject", "session"])
        class Signal(BaseVariable): pass
        Signal.save(np.ones(3), subject=1, session="pre")
        print("saved", flush=True)
        time.sleep(30)
    """)], env=python_env, cwd=tmp_path, stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "saved"
        time.sleep(1.5)  # past the background sync: the holder is idle now
        started = time.monotonic()
        db = configure_database(tmp_path / "i.duckdb", ["subject", "session"])
        Signal.save(np.zeros(3), subject=2, session="pre")
        db.sync()
        assert db.sql('SELECT count(*) FROM "Signal"').iloc[0, 0] == 2
        assert time.monotonic() - started < 20  # did not wait for the holder to exit
        db.close()
    finally:
        holder.kill()
        holder.wait()


def test_torn_journal_line_is_skipped_and_next_save_works(project):
    Signal.save(np.ones(2), subject=1, session="pre")
    with open(project.index.journal_path, "ab") as journal:
        journal.write(b'{"op":"put","var":"Sig')  # a writer killed mid-line
    Signal.save(np.zeros(2), subject=2, session="pre")
    project.close()
    with pytest.warns(UnreadableJournalWarning, match="1 journal line could not be read"):
        db = configure_database(project.path, ["subject", "session"])  # (the torn line, terminated)
    assert Signal.load(subject=1, session="pre").data.sum() == 2
    assert Signal.load(subject=2, session="pre").data.sum() == 0
    lines = db.index.journal_path.read_bytes().split(b"\n")
    assert sum(1 for line in lines if line.startswith(b'{"op":"put","var":"Sig{')) == 0
    db.close()


def test_lost_duckdb_file_is_rebuilt_from_the_journal(project):
    for i in range(5):
        MaxActivation.save(float(i), subject=i, session="pre")
    project.close()
    project.path.unlink()
    db = configure_database(project.path, ["subject", "session"])
    assert db.sql("SELECT count(*) FROM MaxActivation").iloc[0, 0] == 5
    db.close()


def test_journal_lines_are_documented_canonical_json(project):
    Signal.save(np.ones(2), subject=1, session="pre", note="x")
    line = project.index.journal_path.read_bytes().splitlines()[0]
    entry = json.loads(line)
    assert entry["op"] == "put" and entry["addr"] == {"session": "pre", "subject": 1}
    assert entry["vkeys"] == {"note": "x"} and entry["version"] == 1 and entry["kind"] == "npy"
    assert line == json.dumps(entry, sort_keys=True, separators=(",", ":")).encode()


def test_the_fold_keeps_oids_as_32_bytes_and_gives_them_back_as_text(project):
    """Layout 8 stores an oid in half the bytes of its hex text; every reader still gets the
    text (a load, a cache entry, a lookup by oid), and a value that is not
    lowercase hex of 32 bytes is kept as it is, so it can never be read back as another."""
    import sqlite3

    from scistack.index import key_of
    from scistack.index.fold import oid_in, oid_out

    Signal.save(np.arange(3.0), subject=1, session="pre")
    MaxActivation.save(2.0, subject=1, session="pre")
    record = project.index.current_at("Signal", key_of({"subject": 1, "session": "pre"}), "{}")
    assert isinstance(record.oid, str) and len(record.oid) == 64
    np.testing.assert_array_equal(Signal.load(subject=1, session="pre").data, np.arange(3.0))
    key, call, fn = "1a" * 32, "2b" * 32, "3c" * 32
    project.index.put_call(key, call, fn, [record.oid])
    odd_key, odd_call = "A" * 64, "B" * 64  # not lowercase hex: kept as text
    project.index.put_call(odd_key, odd_call, None, [record.oid])
    peak = MaxActivation.load(subject=1, session="pre").oid
    project.close()
    con = sqlite3.connect(project.root / ".scistack" / "fold.sqlite")
    assert con.execute("SELECT DISTINCT typeof(oid), length(oid) FROM refs").fetchall() == [("blob", 32)]
    assert con.execute("SELECT oid FROM refs WHERE var = 'Signal'").fetchone()[0].hex() == record.oid
    assert con.execute("SELECT key, call, fn FROM calls ORDER BY typeof(key)").fetchall() == [
        tuple(map(bytes.fromhex, (key, call, fn))), (odd_key, odd_call, None)]
    con.close()
    db = configure_database(project.path, ["subject", "session"])  # read from the fold, not this process's lines
    try:
        assert db.index.cached_call(key) | {"t": None} == {"op": "call", "key": key, "call": call, "fn": fn,
                                                           "outs": [record.oid], "t": None}
        assert db.index.call_key_of(call) == key
        assert [r.var for r in db.index.refs_to(record.oid)] == ["Signal"]
        # the bulk reads of a cached for_each (the oids made text by SQLite)
        outs = f'["{record.oid}"]'
        assert db.index.call_outputs([key, odd_key, "9" * 64]) == {key: (call, fn, outs),
                                                                   odd_key: (odd_call, None, outs)}
        at = key_of({"subject": 1, "session": "pre"})
        assert db.index.newest_rows(["Signal"], ["MaxActivation"], [at, key_of({"subject": 2, "session": "pre"})]) \
            == [(at, record.oid, peak, None), (key_of({"subject": 2, "session": "pre"}), None, None, None)]
    finally:
        db.close()
    for odd in ("A" * 64, "a" * 63, "zz" * 32, " " + "a" * 63, 7, None):
        assert oid_in(odd) == odd and oid_out(oid_in(odd)) == odd
    assert oid_out(oid_in("0f" * 32)) == "0f" * 32


def test_second_project_in_same_folder_is_refused(project):
    from scistack.errors import SchemaMismatchError

    with pytest.raises(SchemaMismatchError, match="one folder"):
        configure_database(project.root / "other.duckdb", ["subject", "session"])


def test_reindex_rebuilds_tables_from_the_journal(project):
    for i in range(3):
        MaxActivation.save(float(i), subject=i, session="pre")
    project.sync()
    with project.index._sql.connect() as con:
        con.execute("DELETE FROM scistack.refs")
    assert project.sql("SELECT count(*) FROM refs").iloc[0, 0] == 0
    assert project.reindex() == 3
    assert project.sql("SELECT count(*) FROM MaxActivation").iloc[0, 0] == 3


def test_project_opens_and_saves_while_another_process_holds_the_duckdb_file(tmp_path, python_env):
    configure_database(tmp_path / "h.duckdb", ["subject", "session"]).close()
    holder = subprocess.Popen([sys.executable, "-c", textwrap.dedent(f"""
        import time, duckdb
        con = duckdb.connect({str(tmp_path / 'h.duckdb')!r})   # as the DuckDB CLI or DBeaver would
        print("holding", flush=True)
        time.sleep(60)
    """)], env=python_env, cwd=tmp_path, stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "holding"
        started = time.monotonic()
        db = configure_database(tmp_path / "h.duckdb", ["subject", "session"])
        Signal.save(np.ones(3), subject=1, session="pre")
        assert Signal.load(subject=1, session="pre").data.sum() == 3
        assert time.monotonic() - started < 10  # did not wait for the holder
        # a background sync waiting for the file gives way as its process closes (a status
        # run while a big run's DuckDB sync went on waited ~1 s at exit for that wait to end)
        looks = iter([False, False])
        with pytest.raises(SyncStopped):
            db.index._sql.sync(timeout=8.0, should_stop=lambda: next(looks, True))
    finally:
        holder.kill()
        holder.wait()
    db.sync()  # the holder is gone: DuckDB catches up from the journal
    assert db.sql('SELECT count(*) FROM "Signal"').iloc[0, 0] == 1
    db.close()


from scistack.index.state import key_of  # noqa: E402
from scistack.objects.canonical_json import dumps_canonical  # noqa: E402

_SCALARS = st.one_of(st.text(), st.integers(), st.booleans(), st.none(),
                     st.floats(allow_nan=False, allow_infinity=False))


@given(st.dictionaries(st.text(min_size=1), _SCALARS, max_size=6))
def test_address_keys_are_exactly_the_canonical_json(mapping):
    expected = dumps_canonical(mapping).decode("ascii") if mapping else "{}"
    assert key_of(mapping) == expected


@given(st.lists(st.dictionaries(st.sampled_from(["a", "b", "c"]),
                                st.one_of(_SCALARS, st.sampled_from([0.0, -0.0, 1, 1.0, True, "1"])),
                                max_size=3), max_size=8))
def test_many_address_keys_at_once_are_each_ones_key(mappings):
    from scistack.index.state import keys_of

    assert keys_of(mappings) == [key_of(m) for m in mappings]


class refs(BaseVariable):  # noqa: N801 - named like scistack's own tables on purpose
    pass


class meta(BaseVariable):  # noqa: N801
    pass


def test_variables_may_share_names_with_scistacks_tables(project):
    refs.save(1.0, subject=1, session="pre")
    meta.save(2.0, subject=1, session="pre")
    assert project.sql("SELECT value FROM refs")["value"].tolist() == [1.0]
    assert project.sql("SELECT value FROM meta")["value"].tolist() == [2.0]
    assert project.sql("SELECT count(*) AS n FROM scistack.refs")["n"][0] == 2
    assert project.reindex() == 2
    assert project.sql("SELECT value FROM refs")["value"].tolist() == [1.0]


def test_an_index_file_of_schema_1_is_migrated_from_the_journal(project):
    refs.save(1.0, subject=1, session="pre")
    project.sync()
    with project.index._sql.connect() as con:  # the layout of schema 1: scistack's tables in main
        con.execute("DROP VIEW main.refs; DROP SCHEMA scistack CASCADE")
        con.execute("CREATE TABLE main.meta (key VARCHAR PRIMARY KEY, value VARCHAR)")
        con.execute("INSERT INTO main.meta VALUES ('schema_version', '1'), ('journal_offset', '999')")
        for table in ("refs", "calls", "runs"):
            con.execute(f"CREATE TABLE main.{table} (var VARCHAR)")
    assert project.sql("SELECT value FROM refs")["value"].tolist() == [1.0]
    assert project.sql("SELECT value FROM scistack.meta WHERE key = 'schema_version'")["value"][0] == str(SCHEMA_VERSION)


def test_a_project_file_named_like_the_internal_schema_is_refused(tmp_path):
    from scistack.errors import InvalidNameError

    with pytest.raises(InvalidNameError, match="scistack_project.duckdb"):
        configure_database(tmp_path / "scistack.duckdb", ["subject", "session"])
    assert not (tmp_path / ".scistack").exists()


def test_a_long_journal_is_folded_in_chunks_with_the_same_result(project, monkeypatch):
    """The fold reads a bounded slice of the journal per transaction (memory stays flat for a
    million lines): a fold in many small chunks answers exactly as a fold in one."""
    import scistack.index.fold as fold_module

    for subject in range(30):
        Signal.save(float(subject), subject=subject, session="pre")
    Signal.delete(subject=3)
    Signal.save(-1.0, subject=4, session="pre")
    with open(project.index.journal_path, "ab") as handle:
        handle.write(b'{"op":"put","var":"Signal"')  # a writer's torn last line
    expected = {(r.addr_key, r.version, r.oid) for r in project.index.records("Signal")}
    monkeypatch.setattr(fold_module, "_CHUNK_BYTES", 300)  # a few lines per transaction
    project.index.rebuild()
    assert {(r.addr_key, r.version, r.oid) for r in project.index.records("Signal")} == expected
    assert Signal.load(subject=4, session="pre").data == -1.0


@pytest.mark.parametrize("when", ["between", "inside"])
def test_a_rebuild_killed_between_or_inside_a_chunk_loses_nothing(tmp_path, python_env, when):
    """A process killed while folding (two chunks committed, before the third or inside its
    transaction) leaves a fold the next process completes from the offset it committed:
    every value, delete and call entry reads as before."""
    import sqlite3

    db = configure_database(tmp_path / "k.duckdb", ["subject", "session"])
    for subject in range(40):
        Signal.save(float(subject), subject=subject, session="pre")
    Signal.delete(subject=3)
    db.index.put_call("1a" * 32, "2b" * 32, "3c" * 32, [])
    db.close()
    fold = tmp_path / ".scistack" / "fold.sqlite"
    for suffix in ("", "-wal", "-shm"):
        Path(f"{fold}{suffix}").unlink(missing_ok=True)
    script = f"""
        import os, signal
        import scistack.index.fold as fold_module
        from scistack import configure_database
        fold_module._CHUNK_BYTES = 1500  # a few lines a transaction
        begun, fold_chunk, apply = [], fold_module.Fold._fold_chunk, fold_module.Fold._apply
        def chunk(self, con, size):
            if len(begun) == 2 and {when!r} == "between":
                os.kill(os.getpid(), signal.SIGKILL)  # two chunks committed, the third not begun
            begun.append(1)
            return fold_chunk(self, con, size)
        def applied(self, con, entries):
            apply(self, con, entries)
            if len(begun) == 3:
                os.kill(os.getpid(), signal.SIGKILL)  # the third chunk's rows in, not committed
        fold_module.Fold._fold_chunk, fold_module.Fold._apply = chunk, applied
        db = configure_database({str(tmp_path / "k.duckdb")!r}, ["subject", "session"])
        db.index.records("Signal")
    """
    done = _run(script, python_env, tmp_path)
    assert done.returncode == -signal.SIGKILL, done.stderr
    con = sqlite3.connect(fold)
    offset = int(con.execute("SELECT value FROM meta WHERE key = 'journal_offset'").fetchone()[0])
    con.close()
    assert 0 < offset < (tmp_path / ".scistack" / "refs.log").stat().st_size  # killed part-way
    db = configure_database(tmp_path / "k.duckdb", ["subject", "session"])
    try:
        assert sorted(r.addr["subject"] for r in db.index.records("Signal")) == [s for s in range(40) if s != 3]
        for subject in (0, 17, 39):
            assert Signal.load(subject=subject, session="pre").data == float(subject)
        assert db.index.cached_call("1a" * 32)["call"] == "2b" * 32
    finally:
        db.close()


def test_duckdb_is_not_synced_in_the_background_while_a_batch_runs(project):
    """Decoding the journal for DuckDB holds the GIL: a run would share it with the sync
    thread (3x slower), so the background sync waits for the batch to end."""
    db = project
    db.index._syncer.delay = 0.05
    with db.batch():
        Signal.save(np.arange(3.0), subject=1, session="pre")
        db.index.flush()  # journalled mid-batch, as a long for_each does
        time.sleep(2.5)   # fifty sync delays (a first sync imports and opens DuckDB: ~1 s)
        assert not db.index._sql.in_step()
    deadline = time.monotonic() + 30
    while not db.index._sql.in_step() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert db.index._sql.in_step()


def test_the_background_sync_waits_for_a_batchs_flush_to_end_too(project):
    """A batch's flush (its appends, fold, call facts) is part of the batch: the background
    sync had been let go as the flush began (the batch's depth was restored first), so it
    shared the GIL with the flush (and in lab mode the journal's connection). The main thread
    stops in the flush just after it woke the sync thread, until that thread has asked
    whether the process is busy: it must have been told yes."""
    import threading

    from .helpers import run_when

    db = project
    syncer = db.index._syncer
    syncer.delay = 0.0  # (the sync thread asks `busy` at once when woken)
    busy, poke = syncer.busy, syncer.poke
    answers: list[bool] = []
    asked = threading.Event()
    watching = threading.Event()

    def watched_busy() -> bool:
        answer = busy()
        if watching.is_set() and not asked.is_set():
            answers.append(answer)
            asked.set()
        return answer

    poked: list[bool] = []
    syncer.busy = watched_busy
    syncer.poke = lambda: (poke(), poked.append(True))

    def wait_for_the_sync_thread() -> None:
        watching.set()
        assert asked.wait(60), "the woken sync thread never asked whether the process is busy"

    with run_when(lambda: bool(poked), "scistack/index/__init__.py", wait_for_the_sync_thread):
        with db.batch():
            Signal.save(np.arange(3.0), subject=1, session="pre")
    assert answers == [True]
    assert Signal.load(subject=1, session="pre").data.tolist() == [0.0, 1.0, 2.0]
    deadline = time.monotonic() + 30  # once the flush ended, the sync runs
    while not db.index.duckdb_in_step() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert db.index.duckdb_in_step()


def test_ctrl_c_as_a_batchs_flush_begins_leaves_the_session_out_of_the_batch(project):
    """The flush of a batch is marked busy for the background sync inside the try that unmarks
    it and ends the batch: a Ctrl-C just after the mark leaves neither the batch open (every
    later save held) nor the sync held off for the session; the batch is refused whole (its
    flush never began), and a re-run saves it."""
    from .helpers import interrupt_when

    db = project
    with pytest.raises(KeyboardInterrupt), interrupt_when(lambda: db.index._ending_batch,
                                                         "scistack/index/__init__.py"):
        with db.batch():
            Signal.save(np.arange(3.0), subject=1, session="pre")
    assert db.index.in_batch is False and db.index._syncer.busy() is False
    before = journal_size(db)
    Signal.save(np.arange(4.0), subject=2, session="pre")
    assert journal_size(db) > before  # journalled at once, not held
    with pytest.raises(VariableNotFoundError):
        Signal.load(subject=1, session="pre")
    with db.batch():  # re-run
        Signal.save(np.arange(3.0), subject=1, session="pre")
    assert Signal.load(subject=1, session="pre").data.tolist() == [0.0, 1.0, 2.0]
    assert Signal.load(subject=2, session="pre").data.tolist() == [0.0, 1.0, 2.0, 3.0]


def test_an_atomic_batch_that_fails_journals_nothing_and_a_plain_one_keeps_its_saves(project):
    """A plain batch keeps what was saved before an error (it groups writes for speed); an
    atomic one (a caller that records elsewhere what it did, the MATLAB commit) journals
    nothing of it, and the session saves at once after it. Nested, it would drop the outer
    batch's saves with its own: refused."""
    db = project
    with pytest.raises(ValueError), db.batch():
        Signal.save(np.arange(3.0), subject=1, session="pre")
        raise ValueError("a later value is bad")
    assert Signal.load(subject=1, session="pre").data.tolist() == [0.0, 1.0, 2.0]
    before = journal_size(db)
    with pytest.raises(KeyboardInterrupt), db.batch(atomic=True):
        Signal.save(np.arange(4.0), subject=2, session="pre")
        raise KeyboardInterrupt
    assert journal_size(db) == before and db.index.in_batch is False
    with pytest.raises(VariableNotFoundError):
        Signal.load(subject=2, session="pre")
    Signal.save(np.arange(5.0), subject=3, session="pre")
    assert journal_size(db) > before  # journalled at once, not held
    with db.batch(atomic=True):
        Signal.save(np.arange(4.0), subject=2, session="pre")
    assert Signal.load(subject=2, session="pre").data.tolist() == [0.0, 1.0, 2.0, 3.0]
    with pytest.raises(AtomicBatchError, match="cannot be nested"), db.batch(), db.batch(atomic=True):
        pass


def test_an_atomic_batch_refuses_to_journal_its_writes_before_it_ends(project):
    """An atomic batch is all or nothing only if nothing inside it journals what it holds:
    `db.flush()`, or a read that numbers held saves (`list_versions`, a load by `version=`),
    had written them half way, and the error that followed then discarded only the rest.
    Refused with a clear error instead; a refusal caught inside leaves the batch whole."""
    db = project
    before = journal_size(db)
    with pytest.raises(AtomicBatchError, match="all or nothing"), db.batch(atomic=True):
        Signal.save(np.arange(3.0), subject=1, session="pre")
        db.flush()
    assert journal_size(db) == before and not db.index.in_batch
    with pytest.raises(AtomicBatchError, match="list_versions"), db.batch(atomic=True):
        Signal.save(np.arange(3.0), subject=1, session="pre")
        Signal.list_versions(subject=1, session="pre")
    assert journal_size(db) == before
    with pytest.raises(VariableNotFoundError):
        Signal.load(subject=1, session="pre")
    with db.batch(atomic=True):
        Signal.save(np.arange(3.0), subject=1, session="pre")
        with pytest.raises(AtomicBatchError):
            Signal.load(subject=1, session="pre", version=1)
        assert journal_size(db) == before
        Signal.save(np.arange(4.0), subject=2, session="pre")
    assert Signal.load(subject=1, session="pre").data.tolist() == [0.0, 1.0, 2.0]
    assert Signal.load(subject=2, session="pre").data.tolist() == [0.0, 1.0, 2.0, 3.0]
    with db.batch(atomic=True):  # holding nothing, a read needs no flush
        assert Signal.list_versions(subject=1, session="pre")
        db.flush()
    Signal.save(np.arange(5.0), subject=3, session="pre")  # after it: journalled at once
    assert Signal.load(subject=3, session="pre").version == 1


def test_a_delete_held_by_a_batch_is_gone_from_every_read_inside_it(project):
    """A batch's held delete was invisible to reads inside it: the record still loaded, was
    listed by load_all and as_df, counted, and deleted again, while `db.sql` (which writes the
    batch first) had it gone. Every read answers as the project will be after the batch."""
    db = project
    for subject in (0, 1):
        MaxActivation.save(float(subject), subject=subject, session="pre")
    Signal.save(np.zeros(3), subject=0, session="pre")
    with db.batch():
        assert MaxActivation.delete(subject=0, session="pre") == 1
        with pytest.raises(VariableNotFoundError, match="deleted"):
            MaxActivation.load(subject=0, session="pre")
        assert [r.metadata["subject"] for r in MaxActivation.load_all()] == [1]
        assert [r.metadata["subject"] for r in MaxActivation.load(session="pre")] == [1]
        assert MaxActivation.load_all(as_df=True)["subject"].tolist() == [1]
        assert db.index.count("MaxActivation") == 1
        assert len(db.index.live_addresses("MaxActivation")) == 1
        with pytest.raises(VariableNotFoundError):  # nothing left there to delete twice
            MaxActivation.delete(subject=0, session="pre")
        Signal.delete(subject=0, session="pre")
        assert "Signal" not in db.index.variables() and Signal.load_all() == []
        assert db.sql("SELECT subject FROM MaxActivation")["subject"].tolist() == [1]
    assert [r.metadata["subject"] for r in MaxActivation.load_all()] == [1]
    assert "Signal" not in db.index.variables()


def test_a_value_deleted_and_saved_again_in_one_batch_is_saved(project):
    """The batch's flush took the record its held delete removes for the current value, so
    saving the same value again there was dropped as already saved, and the delete left the
    address empty once the batch was written (inside it, it was there)."""
    db = project
    MaxActivation.save(0.5, subject=1, session="pre")
    with db.batch():
        MaxActivation.delete(subject=1, session="pre")
        MaxActivation.save(0.5, subject=1, session="pre")
        assert MaxActivation.load(subject=1, session="pre").data == 0.5
    assert MaxActivation.load(subject=1, session="pre").data == 0.5
    assert [r.version for r in MaxActivation.list_versions(subject=1, session="pre")] == [2]


def test_an_atomic_batch_hides_its_held_delete_and_discards_it_on_an_error(project):
    """A delete an atomic batch holds (made before its first write: a later one would write
    what it holds, and is refused) is gone from reads inside it, and is dropped on an error."""
    db = project
    MaxActivation.save(0.5, subject=1, session="pre")
    with pytest.raises(KeyboardInterrupt), db.batch(atomic=True):
        MaxActivation.delete(subject=1, session="pre")
        assert MaxActivation.load_all() == []
        raise KeyboardInterrupt
    assert MaxActivation.load(subject=1, session="pre").data == 0.5
    with db.batch(atomic=True):
        MaxActivation.delete(subject=1, session="pre")
        MaxActivation.save(0.25, subject=2, session="pre")
        assert [(r.metadata["subject"], r.data) for r in MaxActivation.load_all()] == [(2, 0.25)]
        with pytest.raises(AtomicBatchError, match="a delete"):  # (it would write what the batch holds)
            MaxActivation.delete(subject=2, session="pre")
    assert [(r.metadata["subject"], r.data) for r in MaxActivation.load_all()] == [(2, 0.25)]


def _what_reads_say(db) -> dict:
    """What the read paths say of MaxActivation and Signal, version numbers too: a held save's
    is the one the batch's flush would give it (held saves had shown the batch's own count)."""
    said: dict = {"variables": [v for v in db.index.variables() if v in ("MaxActivation", "Signal")]}
    for var in (MaxActivation, Signal):
        name = var.__name__
        said[name + " count"] = db.index.count(name)
        said[name] = sorted((tuple(sorted(r.metadata.items())), r.version, r.created_at,
                             float(np.asarray(r.data).sum())) for r in var.load_all())
        frame = var.load_all(as_df=True)
        said[name + " df"] = sorted(map(tuple, frame[["subject", "session", "version"]].values.tolist())) \
            if len(frame) else []
        said[name + " addresses"] = sorted(db.index.live_addresses(name))
        said[name + " records"] = sorted((r.addr_key, r.vkeys_key, r.version, r.oid) for r in db.index.records(name))
        said[name + " newest"] = sorted((r.addr_key, r.vkeys_key, r.version, r.oid) for r in db.index.newest(name, 20))
        said[name + " versions"] = {key: [(r.vkeys_key, r.version, r.oid) for r in db.index.versions_at(name, key)]
                                    for key in db.index.live_addresses(name)}
        for subject in (1, 2):
            try:
                found = var.load(subject=subject, session="pre")
                said[(name, subject)] = [(x.version, float(np.asarray(x.data).sum())) for x in found] \
                    if isinstance(found, list) else (found.version, float(np.asarray(found.data).sum()))
            except ScistackError as exc:
                said[(name, subject)] = type(exc).__name__
    return said


_BATCH_OPS = st.lists(st.one_of(
    st.tuples(st.just("save"), st.sampled_from([MaxActivation, Signal]), st.integers(1, 2), st.integers(0, 2),
              st.sampled_from([None, "x"])),
    st.tuples(st.just("delete"), st.sampled_from([MaxActivation, Signal]), st.integers(1, 2), st.none(), st.none()),
    st.tuples(st.just("delete"), st.sampled_from([MaxActivation, Signal]), st.integers(1, 2), st.integers(1, 4),
              st.none()),
    st.tuples(st.just("undelete"), st.sampled_from([MaxActivation, Signal]), st.integers(1, 2), st.none(), st.none()),
    st.tuples(st.just("flush"), st.none(), st.none(), st.none(), st.none()),
), max_size=10)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(before=_BATCH_OPS, inside=_BATCH_OPS, atomic=st.booleans())
@example(before=[("save", MaxActivation, 1, 0, None)],
         inside=[("delete", MaxActivation, 1, None, None), ("save", MaxActivation, 1, 0, None)], atomic=False)
@example(before=[("save", MaxActivation, 1, 0, None), ("save", Signal, 2, 1, "x")],
         inside=[("save", MaxActivation, 1, 0, None), ("save", Signal, 2, 1, "x"),
                 ("save", Signal, 2, 1, "x")], atomic=False)  # values already there: counted once
def test_reads_inside_a_batch_agree_with_reads_after_it(project, before, inside, atomic):
    """Saves, deletes (whole addresses, one version) and undeletes in any order inside a batch
    (an atomic one refuses those that would write what it holds): what every read says at its
    end is what it says once the batch is written."""
    db = project
    for var in (MaxActivation, Signal):
        try:
            var.delete(all=True)
        except VariableNotFoundError:
            pass

    def do(ops):
        for op, var, subject, arg, note in ops:
            try:
                if op == "save":
                    var.save(float(arg) if var is MaxActivation else np.full(2, float(arg)), subject=subject,
                             session="pre", **({"note": note} if note else {}))
                elif op == "delete":
                    var.delete(subject=subject, session="pre", **({"version": arg} if arg else {}))
                elif op == "undelete":
                    with warnings.catch_warnings():
                        warnings.simplefilter("ignore")
                        var.undelete(subject=subject, session="pre")
                else:
                    db.flush()
            except (VariableNotFoundError, AtomicBatchError):
                pass

    def listed(var) -> dict:  # (list_versions writes what a batch holds: asked after the reads)
        try:
            found = var.list_versions()
        except VariableNotFoundError:
            return {}
        by_addr: dict = {}
        for r in found:
            by_addr.setdefault(r.addr_key, []).append((r.vkeys_key, r.version, r.oid))
        return {key: sorted(versions) for key, versions in by_addr.items()}

    do(before)
    with db.batch(atomic=atomic):
        do(inside)
        inside_said = _what_reads_say(db)
        if not atomic:  # (an atomic batch refuses to write what it holds before it ends)
            listed_inside = [listed(var) for var in (MaxActivation, Signal)]
    assert _what_reads_say(db) == inside_said
    listed_after = [listed(var) for var in (MaxActivation, Signal)]
    assert listed_after == [{key: sorted(versions) for key, versions in inside_said[var.__name__ + " versions"].items()}
                            for var in (MaxActivation, Signal)]
    assert atomic or listed_inside == listed_after


def test_a_batch_counts_a_save_of_the_value_already_there_once(project):
    """A save held by a batch of the value current at its address (the same call) is dropped
    by the flush; `count` inside the batch had counted it with the record already there (3
    records of a variable that has 2, before and after the batch)."""
    db = project
    MaxActivation.save(1.0, subject=1, session="pre")
    MaxActivation.save(2.0, subject=2, session="pre")
    with db.batch():
        MaxActivation.save(1.0, subject=1, session="pre")  # already there
        MaxActivation.save(1.0, subject=1, session="pre")
        assert db.index.count("MaxActivation") == 2
        MaxActivation.save(3.0, subject=1, session="pre")  # a new value, then the old one again
        MaxActivation.save(1.0, subject=1, session="pre")
        MaxActivation.save(4.0, subject=3, session="pre")
        inside = db.index.count("MaxActivation")
    assert inside == db.index.count("MaxActivation") == 5


def test_a_batch_lists_a_save_of_the_value_already_there_once(project):
    """`records`, `newest` and `versions_at` listed a held save of the value current at its
    address beside the record already there, until the flush (`count` and loads were right)."""
    db = project
    MaxActivation.save(1.0, subject=1, session="pre")
    MaxActivation.save(2.0, subject=2, session="pre")
    here = key_of({"subject": 1, "session": "pre"})

    def listed():
        return (sorted((r.addr_key, r.oid) for r in db.index.records("MaxActivation")),
                sorted((r.addr_key, r.oid) for r in db.index.newest("MaxActivation", 10)),
                [r.oid for r in db.index.versions_at("MaxActivation", here)])

    before = listed()
    with db.batch():
        MaxActivation.save(1.0, subject=1, session="pre")  # already there
        MaxActivation.save(1.0, subject=1, session="pre")
        assert listed() == before
        MaxActivation.save(3.0, subject=1, session="pre")  # a new value, then the old one again
        MaxActivation.save(1.0, subject=1, session="pre")
        MaxActivation.save(4.0, subject=3, session="pre")
        inside = listed()
        assert len(inside[0]) == len(inside[1]) == db.index.count("MaxActivation") == 5
    assert listed() == inside
    assert [r.version for r in db.index.versions_at("MaxActivation", here)] == [1, 2, 3]


def test_reads_inside_a_batch_give_held_saves_the_version_the_batch_writes(project):
    """A save held by a batch is numbered when the batch is written, after the versions the
    address has: reads inside answer with that number. `load_all` (and its frame) had shown a
    held save of the value already there as a version 1 of its own, where `load` and the
    project after the batch say 3, and every load a new value with the batch's own count
    (version 1 at an address with 3), where the project after the batch says 4."""
    db = project
    for value in (1.0, 2.0, 1.0):
        MaxActivation.save(value, subject=1, session="pre")  # versions 1-3, the first value again

    def said():
        one = MaxActivation.load(subject=1, session="pre")
        frame = MaxActivation.load_all(as_df=True)
        return ([(r.metadata["subject"], r.version, r.created_at, float(r.data)) for r in MaxActivation.load_all()],
                (one.version, one.created_at),
                frame[["subject", "version", "data"]].values.tolist())

    with db.batch():
        MaxActivation.save(1.0, subject=1, session="pre")  # the value already there: dropped
        repeated = said()
        assert repeated[0][0][1] == repeated[1][0] == 3
    assert said() == repeated
    with db.batch():
        MaxActivation.save(5.0, subject=1, session="pre")  # a new value: version 4
        MaxActivation.save(7.0, subject=2, session="pre")  # another address: its version 1
        MaxActivation.save(7.0, subject=2, session="pre")
        new = said()
        assert [(s, v) for s, v, *_ in new[0]] == [(1, 4), (2, 1)] and new[1][0] == 4
        assert new[2] == [[1, 4, 5.0], [2, 1, 7.0]]
        listed = [(r.addr["subject"], r.version) for r in MaxActivation.list_versions()]  # (writes them)
        assert listed == [(1, 1), (1, 2), (1, 3), (1, 4), (2, 1)]
        assert MaxActivation.load(subject=1, session="pre", version=4).data == 5.0
    assert said() == new


def test_the_background_sync_leaves_the_file_to_a_detached_sync_at_work(project):
    """While a detached sync has its turn (a big run's, catching up), a process's background
    sync does not wait for the DuckDB file in one-second tries: it looks again later, and
    syncs once the turn is over."""
    db = project
    db.index._syncer.delay = 0.05
    db.sync()
    with db.index.detached_sync_turn() as mine:  # (this process stands in for the detached one)
        assert mine
        Signal.save(np.arange(3.0), subject=1, session="pre")
        time.sleep(2.5)  # fifty sync delays
        assert not db.index.duckdb_in_step()
    deadline = time.monotonic() + 30
    while not db.index.duckdb_in_step() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert db.index.duckdb_in_step()


@pytest.mark.parametrize("mode", ["detached", "foreground"])
def test_a_long_unsynced_tail_is_synced_after_the_script_exits(tmp_path, python_env, mode):
    """A script that wrote a long tail exits without waiting for DuckDB: a detached process
    applies it (as `git gc --auto` detaches); with SCISTACK_SYNC=foreground the exit waits."""
    script = f"""
        import numpy as np, scistack.index
        from scistack import configure_database, BaseVariable
        scistack.index.DETACH_BYTES = 0  # every tail counts as long here
        db = configure_database({str(tmp_path / 'd.duckdb')!r}, ["subject", "session"])
        db.sync()
        class Signal(BaseVariable): pass
        with db.batch():
            for i in range(50):
                Signal.save(float(i), subject=i, session="pre")
    """
    env = dict(python_env, SCISTACK_SYNC=mode)
    assert _run(script, env, tmp_path).returncode == 0
    from scistack.index.journal import Journal
    from scistack.index.sql import SqlIndex

    # read the sidecar only: opening the project here would sync it from this process
    duck = SqlIndex(tmp_path / "d.duckdb", ["subject", "session"], Journal(tmp_path / ".scistack" / "refs.log"))
    if mode == "foreground":
        assert duck.lag() == 0
    deadline = time.monotonic() + 60
    while duck.lag() != 0 and time.monotonic() < deadline:
        time.sleep(0.1)
    assert duck.lag() == 0  # synced by the detached process
    with duck.connect(read_only=True) as con:
        assert con.execute('SELECT count(*) FROM "Signal"').fetchone()[0] == 50


@pytest.mark.parametrize("tail", ["short", "long"])
def test_a_process_ending_while_a_detached_sync_runs_leaves_its_tail_to_it(tmp_path, python_env, tail):
    """A script (or a report) ending while a detached sync catches up neither syncs DuckDB
    itself (it waited for the file) nor starts a second detached one (which waited in turn):
    the one running looks at the journal again when its turn ends and takes the tail up."""
    from scistack.index.journal import Journal
    from scistack.index.sql import SqlIndex

    def script(n: int, detach_bytes: int) -> str:
        return f"""
            import subprocess, numpy as np, scistack.index
            from scistack import configure_database, BaseVariable
            scistack.index.DETACH_BYTES = {detach_bytes}
            scistack.index.subprocess.Popen = lambda *a, **k: print("started a detached sync")
            db = configure_database({str(tmp_path / 'd.duckdb')!r}, ["subject", "session"])
            class Signal(BaseVariable): pass
            with db.batch():
                for i in range({n}):
                    Signal.save(float(i), subject=i, session="pre")
        """
    duck = SqlIndex(tmp_path / "d.duckdb", ["subject", "session"], Journal(tmp_path / ".scistack" / "refs.log"))
    assert _run(script(1, 1 << 30), python_env, tmp_path).returncode == 0
    assert duck.lag() == 0  # (synced at its exit)
    detached = [sys.executable, "-m", "scistack.sync_after_exit", str(tmp_path / "d.duckdb")]
    with duck.detached_turn() as mine:  # a detached sync at work (this process has its turn)
        assert mine
        done = _run(script(50, 0 if tail == "long" else 1 << 30), python_env, tmp_path)
        assert done.returncode == 0, done.stderr
        assert "started a detached sync" not in done.stdout
        assert duck.lag() > 0  # left to the sync at work
        second = subprocess.run(detached, env=python_env, cwd=tmp_path, timeout=60)
        assert second.returncode == 0 and duck.lag() > 0  # another one leaves at once
    last = subprocess.run(detached, env=python_env, cwd=tmp_path, timeout=60, capture_output=True, text=True)
    assert last.returncode == 0, last.stderr
    assert duck.lag() == 0
    with duck.connect(read_only=True) as con:
        assert con.execute('SELECT count(*) FROM "Signal"').fetchone()[0] == 50


def test_duckdb_applies_a_long_tail_in_slices_with_the_same_result(project, monkeypatch):
    """DuckDB applies the journal a bounded slice per transaction: a rebuild in many slices
    gives the views a rebuild in one gives."""
    import scistack.index.sql as sql_module

    for subject in range(30):
        Signal.save(np.arange(3.0) + subject, subject=subject, session="pre")
    Signal.delete(subject=2)
    project.sync()
    whole = project.sql('SELECT subject, version, oid FROM "Signal" ORDER BY subject').values.tolist()
    monkeypatch.setattr(sql_module, "_SYNC_BYTES", 400)  # a line or two per slice
    monkeypatch.setattr(sql_module, "_COMMIT_BYTES", 1000)  # a few slices per transaction
    assert project.index._sql.rebuild() == len(project.index._journal.read_from(0)[0])
    assert project.sql('SELECT subject, version, oid FROM "Signal" ORDER BY subject').values.tolist() == whole
    assert len(whole) == 29
def test_a_large_batch_is_folded_by_its_writer_a_bounded_chunk_at_a_time(project, monkeypatch):
    """A batch's lines are folded by the process that wrote them, `_FOLD_OWN_MAX` per
    transaction: left to whoever reads next, the next script to open the project waited for
    them (60k refs: 4.5 s in `configure_database`)."""
    import sqlite3

    import scistack.index as index_module
    import scistack.index.fold as fold_module

    monkeypatch.setattr(index_module, "_FOLD_OWN_MAX", 4)
    folded = []
    appended = fold_module.Fold.appended
    monkeypatch.setattr(fold_module.Fold, "appended",
                        lambda self, entries, start, end: folded.append(len(entries)) or appended(self, entries, start, end))
    with project.batch():
        for subject in range(11):
            Signal.save(np.arange(2.0) + subject, subject=subject, session="pre")
    assert folded == [4, 4, 3]
    journal = project.index._journal.size()
    path = project.root / ".scistack" / "fold.sqlite"
    offset = sqlite3.connect(path).execute("SELECT value FROM meta WHERE key = 'journal_offset'").fetchone()
    assert int(offset[0]) == journal  # folded as written, before anyone read
    assert [Signal.load(subject=s, session="pre").data.tolist() for s in (0, 10)] == [[0.0, 1.0], [10.0, 11.0]]

    # a line torn by a crashed writer is ended first: its offsets are not the lines' own, so
    # nothing is folded as written and a reader folds it all, as before
    with open(project.index._journal.path, "ab") as f:
        f.write(b'{"op":"put","var":"Torn"')
    folded.clear()
    with project.batch():
        for subject in range(11, 17):
            Signal.save(np.arange(2.0) + subject, subject=subject, session="pre")
    assert folded == []
    assert Signal.load(subject=16, session="pre").data.tolist() == [16.0, 17.0]
    assert len(project.index.records("Signal")) == 17


def test_a_long_tail_is_applied_in_rounds_each_on_a_connection_of_its_own(project, monkeypatch):
    """DuckDB gives back what a connection's writes left behind only when it closes, so a
    long rebuild reconnects every `_ROUND_BYTES`: same views, each value inlined once, and
    a sync by someone else between two rounds is taken up where it ended."""
    import scistack.index.sql as sql_module

    for subject in range(30):
        Signal.save(np.arange(3.0) + subject % 4, subject=subject, session="pre")  # 4 contents
    Signal.delete(subject=2)
    project.sync()
    query = 'SELECT subject, version, oid, value FROM "Signal" ORDER BY subject'
    whole = [(s, v, o, list(x)) for s, v, o, x in project.sql(query).values.tolist()]
    sql = project.index._sql
    monkeypatch.setattr(sql_module, "_SYNC_BYTES", 400)  # a line or two per slice
    monkeypatch.setattr(sql_module, "_COMMIT_BYTES", 1000)
    monkeypatch.setattr(sql_module, "_ROUND_BYTES", 2500)  # a few transactions per connection
    rounds, ends = [], []
    apply_round = sql_module.SqlIndex._apply_round

    def recorded_round(self, con, offset, *args):
        rounds.append(offset)
        done = apply_round(self, con, offset, *args)
        ends.append(done[1])
        return done
    monkeypatch.setattr(sql_module.SqlIndex, "_apply_round", recorded_round)
    assert sql.rebuild() == len(sql.journal.read_from(0)[0])
    assert len(rounds) >= 3 and rounds == sorted(rounds)
    assert [(s, v, o, list(x)) for s, v, o, x in project.sql(query).values.tolist()] == whole
    assert project.sql("SELECT count(*) AS n, count(DISTINCT oid) AS d FROM scistack.vals").values.tolist() == [[4, 4]]

    # someone else syncs a slice between two rounds of a rebuild: the next round starts where
    # that ended, and asks DuckDB what is inlined (the other inlined contents first seen there,
    # which come again later: 15 new contents, each at two subjects 15 lines apart)
    before = sql.journal.size()
    for subject in range(30, 60):
        Signal.save(np.arange(3.0) + 4 + subject % 15, subject=subject, session="pre")
    other = sql_module.SqlIndex(sql.path, sql.schema_keys, sql.journal)
    other.inliner = sql.inliner
    connect, asked = sql_module.SqlIndex.connect, []

    def connect_after_another(self, **kwargs):
        if self is sql and not asked and ends and ends[-1] >= before:  # (a round ends < 15 lines past it)
            with pytest.raises(sql_module.SyncStopped):
                other.sync(should_stop=lambda: asked.append(1) or len(asked) > 3)  # after a slice
        return connect(self, **kwargs)
    monkeypatch.setattr(sql_module.SqlIndex, "connect", connect_after_another)
    rounds.clear()
    ends.clear()
    sql.rebuild()
    assert asked and len(rounds) >= 3
    with sql.connect(read_only=True) as con:
        assert int(sql._meta(con, "journal_offset", "0")) == sql.journal.size()
    rows = project.sql('SELECT subject, value FROM "Signal" ORDER BY subject').values.tolist()
    assert [s for s, _ in rows] == [s for s in range(60) if s != 2]
    assert [list(v) for s, v in rows if s >= 30] == [[4.0 + s % 15 + k for k in range(3)] for s in range(30, 60)]
    assert project.sql("SELECT count(*) AS n, count(DISTINCT oid) AS d FROM scistack.vals").values.tolist() == [[19, 19]]


def test_a_stopped_sync_keeps_the_slices_it_applied_and_a_later_sync_finishes(tmp_path, monkeypatch):
    """Slices share a transaction (DuckDB pays per transaction); a stop between slices commits
    what is applied, so the next sync starts from there and ends with the same views."""
    import scistack.database as database_module
    import scistack.index.sql as sql_module

    db = configure_database(tmp_path / "stop.duckdb", ["subject", "session"], sync_delay=3600)
    try:
        for subject in range(30):
            Signal.save(np.arange(3.0) + subject, subject=subject, session="pre")
        monkeypatch.setattr(sql_module, "_SYNC_BYTES", 400)
        monkeypatch.setattr(sql_module, "_COMMIT_BYTES", 1 << 30)
        sql, asked = db.index._sql, []

        def stop() -> bool:
            asked.append(1)
            return len(asked) > 12
        with pytest.raises(sql_module.SyncStopped):
            sql.sync(should_stop=stop)
        with sql.connect(read_only=True) as con:
            reached = int(sql._meta(con, "journal_offset", "0"))
            kept = con.execute("SELECT count(*) FROM scistack.refs").fetchone()[0]
        assert 0 < reached < sql.journal.size() and 0 < kept < 30
        db.sync()
        got = db.sql('SELECT subject, value FROM "Signal" ORDER BY subject').values.tolist()
        assert [s for s, _ in got] == list(range(30)) and [v.tolist() for _, v in got][7] == [7.0, 8.0, 9.0]
    finally:
        db.close()
        database_module._current = None


def test_an_index_file_of_schema_2_is_rebuilt_with_inline_values(project):
    refs.save(1.5, subject=1, session="pre")
    project.sync()
    with project.index._sql.connect() as con:  # schema 2 had no inline values
        con.execute("DROP TABLE scistack.vals")
        con.execute("UPDATE scistack.meta SET value = '2' WHERE key = 'schema_version'")
        con.execute("UPDATE scistack.meta SET value = '999' WHERE key = 'journal_offset'")
    assert project.sql("SELECT value FROM refs")["value"].tolist() == [1.5]
    assert project.sql("SELECT count(*) AS n FROM scistack.vals")["n"][0] == 1


@pytest.mark.parametrize("older", range(3, 6))
def test_an_index_file_of_any_older_schema_is_rebuilt(project, older):
    """Schemas 3 and 4 once crashed every sync ("Table with name meta already exists"), so an
    upgraded project's views silently stopped following its journal."""
    refs.save(np.arange(3.0), subject=1, session="pre")
    project.sync()
    with project.index._sql.connect() as con:
        con.execute(f"UPDATE scistack.meta SET value = '{older}' WHERE key = 'schema_version'")
        con.execute("DELETE FROM scistack.refs")  # what an older file would not hold
    refs.save(np.arange(4.0), subject=2, session="pre")
    project.sync()
    got = project.sql('SELECT subject, value FROM refs ORDER BY subject').values.tolist()
    assert [(s, v.tolist()) for s, v in got] == [(1, [0.0, 1.0, 2.0]), (2, [0.0, 1.0, 2.0, 3.0])]
    assert project.sql("SELECT value FROM scistack.meta WHERE key = 'schema_version'")["value"][0] == str(SCHEMA_VERSION)


def test_an_index_file_of_schema_12_gains_the_deletes_table_in_place(project):
    """Schema 13 adds `scistack.deleted` (a delete is a variable's last change too): made in
    place, not rebuilt from the journal, and a delete synced after shows in `last_change`."""
    import pandas as pd

    refs.save(1.5, subject=1, session="pre")
    refs.save(2.5, subject=2, session="pre")
    project.sync()
    with project.index._sql.connect() as con:
        con.execute("DROP VIEW main.scistack_variables")  # (schema 12's read no deletes)
        con.execute("DROP TABLE scistack.deleted")
        con.execute("UPDATE scistack.meta SET value = '12' WHERE key = 'schema_version'")
        con.execute("INSERT INTO scistack.meta VALUES ('left_by_schema_12', '1')")  # gone if rebuilt
    refs.delete(subject=2)
    project.sync()
    deleted = max(pd.Timestamp(e["t"]) for e in project.index._journal.read_from(0)[0] if e["op"] == "del")
    assert project.sql("SELECT last_change FROM scistack_variables")["last_change"].tolist() == [deleted]
    meta = dict(project.sql("SELECT key, value FROM scistack.meta").values.tolist())
    assert meta["left_by_schema_12"] == "1" and meta["schema_version"] == str(SCHEMA_VERSION)


def _with_p(x, p):
    return x


def test_an_index_file_of_schema_13_has_its_views_made_again_in_place(project):
    """Schema 14 writes a text column of lineage parameters as `where=` and the key columns do
    (NaN as 'nan', not its tag `{"$float":"nan"}`): the views of a file of 13 are made again
    at its first sync, not only those of the variables a save touches."""
    from scistack import for_each

    refs.save(1.5, subject=1, session="pre")
    refs.save(2.5, subject=2, session="pre")
    for subject, p in ((1, "x"), (2, float("nan"))):
        for_each(_with_p, inputs={"x": refs, "p": p}, outputs=[meta], subject=[subject], session=["pre"])
    project.sync()
    view = 'CREATE OR REPLACE VIEW main.meta AS SELECT subject, json_extract_string(params, \'$."_with_p.p"\') AS p ' \
           'FROM scistack.refs WHERE var = \'meta\''  # (schema 13's text: the tag)
    with project.index._sql.connect() as con:
        con.execute(view)
        con.execute("UPDATE scistack.meta SET value = '13' WHERE key = 'schema_version'")
        con.execute("INSERT INTO scistack.meta VALUES ('left_by_schema_13', '1')")  # gone if rebuilt
    refs.save(3.5, subject=3, session="pre")  # a sync that touches only refs
    project.sync()
    assert project.sql("SELECT subject, p FROM meta ORDER BY subject").values.tolist() == [[1, "x"], [2, "nan"]]
    kept = dict(project.sql("SELECT key, value FROM scistack.meta").values.tolist())
    assert kept["left_by_schema_13"] == "1" and kept["schema_version"] == str(SCHEMA_VERSION)


def test_an_index_file_of_schema_14_has_a_value_column_of_text_beside_numbers_made_text_in_place(project):
    """Schema 15 makes a value column mixing text and numbers text (`views.value_type`), as
    where= types it: the views of a file of 14 (JSON there, `value = 'a'` refused) are made
    again at its first sync, not only those of the variables a save touches."""
    meta.save("a", subject=1, session="pre")
    meta.save(1, subject=2, session="pre")
    refs.save(1.5, subject=1, session="pre")
    project.sync()
    view = ("CREATE OR REPLACE VIEW main.meta AS SELECT subject, CAST(value_json AS JSON) AS value FROM "
            "(SELECT r.subject, COALESCE(to_json(v.s), to_json(v.i)) AS value_json FROM scistack.refs r "
            "JOIN scistack.vals v ON v.oid = r.oid WHERE r.var = 'meta')")  # (schema 14's JSON)
    with project.index._sql.connect() as con:
        con.execute(view)
        con.execute("UPDATE scistack.meta SET value = '14' WHERE key = 'schema_version'")
        con.execute("INSERT INTO scistack.meta VALUES ('left_by_schema_14', '1')")  # gone if rebuilt
    refs.save(3.5, subject=3, session="pre")  # a sync that touches only refs
    project.sync()
    assert project.sql("SELECT subject FROM meta WHERE value = 'a'")["subject"].tolist() == [1]
    kept = dict(project.sql("SELECT key, value FROM scistack.meta").values.tolist())
    assert kept["left_by_schema_14"] == "1" and kept["schema_version"] == str(SCHEMA_VERSION)


def test_an_index_file_of_schema_6_gains_okey2_in_place_and_finds_many_oids_by_it(project, monkeypatch):
    """Schema 7 adds `vals.okey2` (the oid's hex digits 16-30): computed in place, not rebuilt
    from the journal; a sync asking about many oids then joins on (okey, okey2) and inlines
    each content once."""
    import scistack.index.sql as sql_module

    for subject in range(5):
        refs.save(np.arange(3.0) + subject, subject=subject, session="pre")
    project.sync()
    sql = project.index._sql
    with sql.connect() as con:
        con.execute("ALTER TABLE scistack.vals DROP COLUMN okey2")
        con.execute("UPDATE scistack.meta SET value = '6' WHERE key = 'schema_version'")
        con.execute("INSERT INTO scistack.meta VALUES ('left_by_schema_6', '1')")  # gone if rebuilt
    monkeypatch.setattr(sql_module, "_SMALL_ASK", 0)  # every ask by the join
    for subject in range(5, 10):  # the first five contents again, and five new ones
        refs.save(np.arange(3.0) + subject % 5, subject=subject, session="pre")
        refs.save(np.arange(3.0) + subject, subject=subject, session="post")
    project.sync()
    with sql.connect(read_only=True) as con:
        assert con.execute("SELECT value FROM scistack.meta WHERE key = 'left_by_schema_6'").fetchone() == ("1",)
        assert con.execute("SELECT value FROM scistack.meta WHERE key = 'schema_version'").fetchone() == (
            str(SCHEMA_VERSION),)
        vals = con.execute("SELECT oid, okey, okey2 FROM scistack.vals").fetchall()
    assert len(vals) == 10 and len({o for o, _, _ in vals}) == 10  # each content once
    assert all((k, k2) == (int(o[:15], 16), int(o[15:30], 16)) for o, k, k2 in vals)
    got = project.sql("SELECT subject, session, value FROM refs ORDER BY subject, session").values.tolist()
    assert [(s, e, v.tolist()) for s, e, v in got if s == 7] == [(7, "post", [7.0, 8.0, 9.0]), (7, "pre", [2.0, 3.0, 4.0])]
    assert len(got) == 15


def test_an_index_file_of_schema_7_inlines_its_time_arrays_again_in_place(project):
    """Schema 7 showed a numpy time array as NULL (OPAQUE) and a month duration as an average
    length: schema 8 marks those rows to be read again, and the next sync fixes their values
    and their variables' column types without rebuilding the file."""
    import datetime

    refs.save(np.array(["2024-01-02", "NaT"], "datetime64[D]"), subject=1, session="pre")
    refs.save(np.array(["2024-01-03", "2024-01-04"], "datetime64[D]"), subject=2, session="pre")
    project.sync()
    sql = project.index._sql
    with sql.connect() as con:  # what schema 7 had written
        con.execute("UPDATE scistack.vals SET sqltype = 'OPAQUE', ls = NULL")
        con.execute("UPDATE scistack.shapes SET sqltype = 'OPAQUE'")
        con.execute("UPDATE scistack.meta SET value = '7' WHERE key = 'schema_version'")
        con.execute("INSERT INTO scistack.meta VALUES ('left_by_schema_7', '1')")  # gone if rebuilt
        con.execute("CREATE OR REPLACE VIEW main.refs AS SELECT 1 AS stale")
    refs.save(np.array(["2024-01-05"], "datetime64[D]"), subject=3, session="pre")
    project.sync()
    with sql.connect(read_only=True) as con:
        assert con.execute("SELECT value FROM scistack.meta WHERE key = 'left_by_schema_7'").fetchone() == ("1",)
        assert con.execute("SELECT value FROM scistack.meta WHERE key = 'schema_version'").fetchone() == (
            str(SCHEMA_VERSION),)
    got = project.sql("SELECT subject, to_json(value) AS v, typeof(value) AS t FROM refs ORDER BY subject")
    assert got.values.tolist() == [[1, '["2024-01-02 00:00:00",null]', "TIMESTAMP[]"],
                                   [2, '["2024-01-03 00:00:00","2024-01-04 00:00:00"]', "TIMESTAMP[]"],
                                   [3, '["2024-01-05 00:00:00"]', "TIMESTAMP[]"]]
    assert project.sql("SELECT value FROM refs WHERE subject = 2")["value"][0].tolist() == [
        datetime.datetime(2024, 1, 3), datetime.datetime(2024, 1, 4)]


def test_an_index_file_of_schema_9_makes_its_views_again_in_place(project):
    """Schema 10 shows created_at as a TIMESTAMPTZ (9: text): a file of 9 has every view made
    again, a variable no sync touches included, without being rebuilt."""
    refs.save(1.0, subject=1, session="pre")
    project.sync()
    sql = project.index._sql
    with sql.connect() as con:  # what schema 9 had made
        con.execute("UPDATE scistack.meta SET value = '9' WHERE key = 'schema_version'")
        con.execute("INSERT INTO scistack.meta VALUES ('left_by_schema_9', '1')")  # gone if rebuilt
        con.execute("CREATE OR REPLACE VIEW main.refs AS SELECT 'text' AS created_at")
    project.sql("SELECT 1")  # a query syncs: the file of schema 9 is brought to 10
    with sql.connect(read_only=True) as con:
        assert con.execute("SELECT value FROM scistack.meta WHERE key = 'left_by_schema_9'").fetchone() == ("1",)
    assert project.sql("SELECT typeof(created_at) AS t FROM refs").t.tolist() == ["TIMESTAMP WITH TIME ZONE"]
    assert project.sql("SELECT count(*) AS n FROM refs_branches").n[0] == 1  # 11: a view more


def test_an_index_file_of_schema_8_describes_its_series_and_tables_again_in_place(project):
    """Schema 8 showed a Series (and an Arrow table) as the one-column DataFrame it is written
    from; schema 9 reads their shape and dtype back from their summaries, in place, with no
    value read and the frame rows kept."""
    import pandas as pd
    import pyarrow as pa

    refs.save(pd.Series(np.arange(5.0), name="f"), subject=1, session="pre")
    refs.save(pa.table({"a": [1, 2], "b": ["x", "y"]}), subject=2, session="pre")
    refs.save(pd.DataFrame({"a": [1, 2, 3]}), subject=3, session="pre")
    project.sync()
    sql = project.index._sql
    with sql.connect() as con:  # what schema 8 had written
        con.execute("UPDATE scistack.vals SET dtype = 'DataFrame', shape = [5, 1] WHERE shape = [5]")
        con.execute("UPDATE scistack.vals SET dtype = 'DataFrame' WHERE dtype = 'Table'")
        con.execute("UPDATE scistack.meta SET value = '8' WHERE key = 'schema_version'")
        con.execute("INSERT INTO scistack.meta VALUES ('left_by_schema_8', '1')")  # gone if rebuilt
        rows_before = con.execute("SELECT count(*) FROM scistack.frame_rows").fetchone()[0]
    project.sync()
    with sql.connect(read_only=True) as con:
        assert con.execute("SELECT value FROM scistack.meta WHERE key = 'left_by_schema_8'").fetchone() == ("1",)
        assert con.execute("SELECT value FROM scistack.meta WHERE key = 'schema_version'").fetchone() == (
            str(SCHEMA_VERSION),)
        assert con.execute("SELECT count(*) FROM scistack.frame_rows").fetchone()[0] == rows_before == 10
    got = project.sql("SELECT subject, dtype, shape FROM refs ORDER BY subject").values.tolist()
    assert [(s, d, list(shape)) for s, d, shape in got] == [(1, "float64", [5]), (2, "Table", [2, 2]),
                                                          (3, "DataFrame", [3, 1])]


def test_an_older_schema_is_rebuilt_even_when_its_sidecar_says_in_step(project):
    """An older scistack left `index.synced` saying DuckDB is in step: a newer one must still
    open the file once and rebuild it, not trust the sidecar until the next save."""
    refs.save(2.5, subject=1, session="pre")
    project.sync()
    sql = project.index._sql
    with sql.connect() as con:
        con.execute("UPDATE scistack.meta SET value = '3' WHERE key = 'schema_version'")
    info, wal = sql.path.stat(), sql.path.with_name(sql.path.name + ".wal").exists()
    sql._sidecar().write_text(f"{sql.journal.size()} {info.st_mtime_ns}:{info.st_size}:{wal}")  # the old format
    project.sync()
    with sql.connect(read_only=True) as con:
        assert con.execute("SELECT value FROM scistack.meta WHERE key = 'schema_version'").fetchone()[0] == str(SCHEMA_VERSION)


def test_call_entries_read_back_their_outputs_exactly():
    """The fold reads a call entry's output list without the JSON decoder: same list."""
    from scistack.index.fold import _oid_list

    for outs in ([], ["a" * 64], ["a" * 64, "b" * 64, "c" * 64]):
        for text in (json.dumps(outs), json.dumps(outs, separators=(",", ":"))):
            assert _oid_list(text) == outs


@given(st.one_of(st.integers(-(2**53), 2**53), st.floats(allow_nan=False, allow_infinity=False),
                 st.booleans(), st.text(max_size=5)))
def test_one_number_is_one_address_and_other_types_stay_apart(value):
    """A whole float is keyed as the int it equals (one address for `1` and `1.0`); any other
    float, a bool and a string keep their own type (`True`, `"1"` and `1` stay three)."""
    import numpy as np

    from scistack.address import address_value

    got = address_value(value)
    assert address_value(np.asarray(value).item() if not isinstance(value, str) else value) == got
    if type(value) is float and value.is_integer() and abs(value) <= 2**53:
        assert type(got) is int and got == value and key_of({"k": got}) == key_of({"k": int(value)})
    else:
        assert type(got) is type(value) and (got == value)


def test_an_index_file_of_schema_11_inlines_its_nd_arrays_and_timed_frames_again(project):
    """Schema 12 keeps an N-D array's NaN and infinities (11 wrote NULL) and a frame's times
    to the nanosecond (11: milliseconds); a file of 11 has those values inlined again."""
    import math

    import pandas as pd

    refs.save(np.array([[1.0, np.nan], [np.inf, -np.inf]]), subject=1, session="pre")
    times = pd.to_datetime(["2024-01-01 10:00:00.123456", "2024-01-01 10:00:00.123999"])
    refs.save(pd.DataFrame({"t": times, "x": [1, 2]}), subject=2, session="pre")
    project.sync()
    sql = project.index._sql
    with sql.connect() as con:  # what schema 11 had written
        con.execute("UPDATE scistack.vals SET j = '[[1.0,null],[null,null]]' WHERE sqltype LIKE '%[][]'")
        con.execute("""UPDATE scistack.frame_rows SET "row" = regexp_replace("row", '\\.123[0-9]+', '.123')""")
        con.execute("UPDATE scistack.meta SET value = '11' WHERE key = 'schema_version'")
    refs.save(np.zeros((2, 2)), subject=3, session="pre")  # (rows to inline again: a sync's next slice)
    project.sync()
    value = project.sql("SELECT value FROM refs WHERE subject = 1").value[0]
    assert value[0][0] == 1.0 and math.isnan(value[0][1]) and list(value[1]) == [math.inf, -math.inf]
    assert project.sql("SELECT count(DISTINCT t) AS n FROM refs_rows").n[0] == 2
    assert project.sql("SELECT count(*) AS n FROM refs_rows").n[0] == 2  # (its old rows gone)
