"""Faults a project must survive (issue 16): real processes killed mid-batch and mid-gc, a
flipped byte in a pack record, and the decoders fuzzed (objects, pack indexes, journal
lines, call records): only ScistackError, bounded memory, never a hang."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from scistack import BaseVariable, configure_database, for_each
from scistack.errors import CorruptObjectError, ScistackError, VariableNotFoundError
from scistack.fsck import fsck
from scistack.index.journal import Journal, entry_problem
from scistack.objects import LocalObjectStore
from scistack.objects.hashing import hash_object
from scistack.records import parse_call

from .conftest import SCHEMA
from .helpers import interrupt_after_statement, interrupt_when


class Fault(BaseVariable):
    pass


KILL_MID_BATCH = textwrap.dedent("""
    import sys, numpy as np
    from scistack import configure_database, BaseVariable
    class Fault(BaseVariable): pass
    db = configure_database(sys.argv[1], {schema!r})
    for i in range(40):
        Fault.save(np.full(50, float(i)), subject=i, session="acked")
        print(i, flush=True)
    with db.batch():
        for i in range(10_000):
            Fault.save(np.full(50, float(i)), subject=i, session="batch")
            if i == 200:
                print("in batch", flush=True)
""").format(schema=SCHEMA)

KILL_MID_GC = textwrap.dedent("""
    import sys
    from scistack import configure_database
    from scistack.gc import collect_garbage
    db = configure_database(sys.argv[1])
    print("gc", flush=True)
    collect_garbage(db, grace_seconds=0)
    print("done", flush=True)
""")


def _run_and_kill(script: str, db_path, python_env, until: str) -> list[str]:
    child = subprocess.Popen([sys.executable, "-c", script, str(db_path)], env=python_env,
                             stdout=subprocess.PIPE, text=True)
    lines = []
    for line in child.stdout:
        lines.append(line.strip())
        if line.strip() == until:
            break
    child.send_signal(signal.SIGKILL)
    child.wait(30)
    return lines


def test_sigkill_mid_batch_keeps_every_acknowledged_save_and_names_none_of_the_batch(project, python_env):
    project.close()
    acked = _run_and_kill(KILL_MID_BATCH, project.path, python_env, "in batch")[:-1]
    assert len(acked) == 40
    db = configure_database(project.path)
    for i in map(int, acked):
        assert Fault.load(subject=i, session="acked").data[0] == float(i)
    with pytest.raises(VariableNotFoundError):
        Fault.load(subject=0, session="batch")
    assert fsck(db).ok
    db.close()


def test_sigkill_mid_gc_loses_nothing_named(project, python_env):
    for i in range(30):
        Fault.save(np.full(20, float(i)), subject=i, session="kept")
    for i in range(3000):  # garbage for the gc to be busy with
        project.store.put_value(np.full(400_000 // 3000, float(i)) + 0.5)
    project.close()
    lines = _run_and_kill(KILL_MID_GC, project.path, python_env, "gc")
    assert lines[-1] == "gc"
    db = configure_database(project.path)
    for i in range(30):
        assert Fault.load(subject=i, session="kept").data[0] == float(i)
    assert fsck(db).ok  # a half-done gc leaves no damage; the next one finishes the job
    db.close()


def test_a_flipped_byte_in_a_pack_record_is_named_and_the_rest_of_the_pack_loads(project):
    with project.batch():
        for i in range(5):
            Fault.save(np.full(30, float(i)) * 7.5, subject=i, session="p")
    target = Fault.load(subject=2, session="p").oid
    pack = next((project.store.root / "pack").glob("pack-*.pack"))
    where = project.store.packs.locate(target)
    os.chmod(pack, 0o644)
    with open(pack, "r+b") as f:
        f.seek(where[1] + where[2] - 3)
        byte = f.read(1)
        f.seek(-1, 1)
        f.write(bytes([byte[0] ^ 0xFF]))
    with pytest.raises(CorruptObjectError) as caught:
        Fault.load(subject=2, session="p").data
    assert target in str(caught.value)
    for i in (0, 1, 3, 4):
        assert Fault.load(subject=i, session="p").data[0] == i * 7.5
    assert [p.oid for p in fsck(project).problems if p.kind == "corrupt"] == [target]


def test_a_packed_scalar_changed_to_another_number_is_corrupt_in_load_all(project):
    """`load_all(as_df=True)` of scalars reads them in bulk (verified at once, parsed in one call): a
    digit changed in one packed payload is still valid JSON, and must still be named, never
    loaded as another number."""
    with project.batch():
        for i in range(6):
            Fault.save(float(i) + 0.25, subject=i, session="s")
    target = Fault.load(subject=3, session="s").oid
    pack = next((project.store.root / "pack").glob("pack-*.pack"))
    where = project.store.packs.locate(target)
    os.chmod(pack, 0o644)
    with open(pack, "r+b") as f:
        f.seek(where[1] + where[2] - 1)  # the payload's last digit: "3.25" -> "3.26"
        assert f.read(1) == b"5"
        f.seek(-1, 1)
        f.write(b"6")
    with pytest.raises(CorruptObjectError) as caught:
        Fault.load_all(session="s", as_df=True)
    assert target in str(caught.value)


# -- decoders, fuzzed ------------------------------------------------------------------------
FUZZ = settings(max_examples=150, deadline=2000, suppress_health_check=[HealthCheck.function_scoped_fixture])


@FUZZ
@given(st.binary(max_size=600), st.sampled_from(["npy", "json", "table", "bytes", "call", "chunked"]))
def test_any_bytes_in_an_object_file_give_only_scistack_errors(tmp_path_factory, data, kind):
    store = LocalObjectStore(tmp_path_factory.mktemp("fz") / "objects", max_load_bytes=1 << 20)
    oid = hash_object(kind, [b"something else"])
    path = store.path_of(oid)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    for read in (store.get, store.get_value, store.verify, store.kind_of):
        try:
            read(oid)
        except ScistackError:
            pass


@FUZZ
@given(st.binary(max_size=300))
def test_any_bytes_as_a_pack_index_give_only_scistack_errors(tmp_path_factory, data):
    root = tmp_path_factory.mktemp("fzp") / "objects"
    store = LocalObjectStore(root)
    oid = store.put("bytes", b"x" * 100)
    with store_batch(store):
        store.put("bytes", b"y" * 100)
    idx = next((root / "pack").glob("pack-*.idx"))
    os.chmod(idx, 0o644)
    idx.write_bytes(data)
    fresh = LocalObjectStore(root)
    assert fresh.get(oid).payload == b"x" * 100  # the loose object is untouched
    try:
        fresh.get(hash_object("bytes", [b"y" * 100]))
    except ScistackError:
        pass
    assert isinstance(fresh.damaged_pack_indexes(), dict)


def store_batch(store):
    class _Batch:
        def __enter__(self):
            store.begin_batch()

        def __exit__(self, *exc):
            store.end_batch()
    return _Batch()


JSONISH = st.recursive(st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=8),
                       lambda kids: st.lists(kids, max_size=4) | st.dictionaries(
                           st.sampled_from(["op", "var", "addr", "vkeys", "version", "oid", "kind", "call", "key",
                                            "fn", "outs", "t", "params", "x"]), kids, max_size=8), max_leaves=20)


@FUZZ
@given(st.lists(JSONISH | st.binary(max_size=40).map(lambda b: b.decode("latin-1")), max_size=8))
def test_any_journal_lines_are_skipped_or_folded_never_raise(tmp_path_factory, lines):
    path = tmp_path_factory.mktemp("fzj") / "refs.log"
    text = "\n".join(x if isinstance(x, str) else json.dumps(x) for x in lines) + "\n"
    path.write_text(text, encoding="utf-8", errors="replace")
    journal = Journal(path)
    entries, _ = journal.read_from(0)
    assert all(entry_problem(e) is None for e in entries)
    for x in lines:
        if not isinstance(x, str):
            entry_problem(x)  # a verdict, never an exception


@FUZZ
@given(JSONISH)
def test_any_call_record_payload_gives_a_record_or_a_corrupt_record_error(tree):
    try:
        parse_call(json.dumps(tree).encode())
    except ScistackError:
        pass


class FaultDoubled(BaseVariable):
    pass


def doubled(x):
    return x * 2


def _pipeline():
    return for_each(doubled, inputs={"x": Fault}, outputs=[FaultDoubled], subject=list(range(6)), session=["s"],
                    progress=False, verbose=False)


def _still_works(project) -> None:
    """After a Ctrl-C: every value saved loads, and the pipeline at the top level runs what is
    missing, reusing what ran (as a re-run after a crash does)."""
    for s in range(6):
        assert Fault.load(subject=s, session="s").data.tolist() == [float(s)] * 3
    first = _pipeline()
    assert not first.failures and first.ran + first.cached == 6
    assert [FaultDoubled.load(subject=s, session="s").data[0] for s in range(6)] == [2.0 * s for s in range(6)]
    assert _pipeline().cached == 6


@pytest.mark.parametrize("moment", ["save", "load", "for_each", "catch_up"])
def test_ctrl_c_just_after_a_fold_transaction_began_leaves_the_session_usable(project, moment):
    """A KeyboardInterrupt that came just after the fold's BEGIN, before the try that rolls it
    back, left its connection inside the transaction: each later load, save and for_each
    raised a false DatabaseLockedError ("cannot start a transaction within a transaction")
    until the interpreter restarted. The interrupt comes there exactly (see
    `interrupt_after_statement`), at each way in: a save, a point load's read transaction,
    a for_each's flush, and a line another process appended being folded."""
    for s in range(5):
        Fault.save(np.full(3, float(s)), subject=s, session="s")
    if moment != "save":
        Fault.save(np.full(3, 5.0), subject=5, session="s")
    fold = project.index._fold
    Fault.load(subject=0, session="s")  # (the point lookups' connection exists)
    fold._connection()  # (and its read transaction is ended: the next lookup begins one)
    if moment == "catch_up":  # a line the fold has not seen, as another process appends one
        with open(project.index.journal_path, "rb+") as journal:
            journal.write(journal.read().splitlines(keepends=True)[-1])
    statement = "BEGIN" if moment == "load" else "BEGIN IMMEDIATE"
    with pytest.raises(KeyboardInterrupt), interrupt_after_statement([fold._reader(), fold._point], statement):
        if moment == "save":
            Fault.save(np.full(3, 5.0), subject=5, session="s")
        elif moment == "for_each":
            _pipeline()
        else:
            Fault.load(subject=1, session="s")
    _still_works(project)


def test_ctrl_c_as_a_cached_call_starts_leaves_the_session_at_the_top_level(project):
    """A KeyboardInterrupt just after for_each marked its function's body as running (so that
    a load inside it is refused) and before the try that unmarks it: every later for_each and
    load of the session was refused as "inside doubled"."""
    from scistack.lineage.running import _RUNNING

    for s in range(6):
        Fault.save(np.full(3, float(s)), subject=s, session="s")
    with pytest.raises(KeyboardInterrupt), interrupt_when(lambda: _RUNNING.get() is not None,
                                                         "scistack/lineage/running.py"):
        _pipeline()
    _still_works(project)


def test_a_fold_connection_left_inside_a_transaction_is_rolled_back_not_reported_as_a_lock(project):
    """Whatever left the fold's connection inside a transaction (nothing in it committed), the
    next write rolls it back and goes on: it had raised DatabaseLockedError, naming another
    process, at every later save and load."""
    for s in range(5):
        Fault.save(np.full(3, float(s)), subject=s, session="s")
    con = project.index._fold._reader()
    con.execute("BEGIN IMMEDIATE")
    con.execute("DELETE FROM refs")  # (a fold cut short: what it did is not kept)
    Fault.save(np.full(3, 5.0), subject=5, session="s")
    assert not con.in_transaction
    _still_works(project)


def test_ctrl_c_while_a_rerun_asks_the_cache_stays_a_keyboard_interrupt(project):
    """A for_each re-run asks the fold for its cache keys at once. The oids were made blobs
    by a SQL function inside SQLite: a Ctrl-C landing in it reached the user as sqlite3's
    "user-defined function raised exception", the KeyboardInterrupt lost (found by random
    interrupts). The interrupt comes in the first oid conversion of that lookup."""
    import sys

    for s in range(6):
        Fault.save(np.full(3, float(s)), subject=s, session="s")
    _pipeline()
    fold = project.index._fold

    def tracer(frame, event, arg):
        if event == "call" and frame.f_code.co_name == "oid_in":
            sys.settrace(None)
            raise KeyboardInterrupt
        return None

    sys.settrace(tracer)
    try:
        with pytest.raises(KeyboardInterrupt):
            fold.call_outputs_many(["ab" * 32, "cd" * 32])
    finally:
        sys.settrace(None)
    _still_works(project)


def test_ctrl_c_as_a_report_starts_refusing_writes_leaves_the_project_writable(project):
    """`why` refuses writes while it imports a pipeline module; a KeyboardInterrupt just after
    the refusal was set and before the try that lifts it left every later save of the
    session refused."""
    import scistack.database as database_module

    for s in range(6):
        Fault.save(np.full(3, float(s)), subject=s, session="s")
    with pytest.raises(KeyboardInterrupt), interrupt_when(lambda: bool(project.read_only),
                                                         "scistack/database.py"):
        with database_module.writes_refused("a report is reading its code"):
            pass
    _still_works(project)


def _journal_locked_elsewhere(project) -> bool:
    """Whether another process would wait for the journal's lock (a flock of another open
    file description conflicts with it as another process's would)."""
    import fcntl

    fd = os.open(project.index._journal.lock_path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        return False
    except BlockingIOError:
        return True
    finally:
        os.close(fd)  # (closing it releases a lock it took)


def test_ctrl_c_just_after_the_journal_lock_is_taken_releases_it(project):
    """A KeyboardInterrupt just after a save took the journal's file lock and before the try
    that releases it left the lock held: every other process's saves waited on this session
    until its next save."""
    Fault.save(np.full(3, 1.0), subject=1, session="s")
    with pytest.raises(KeyboardInterrupt), interrupt_when(lambda: _journal_locked_elsewhere(project),
                                                         "scistack/index/journal.py"):
        Fault.save(np.full(3, 2.0), subject=2, session="s")
    assert not _journal_locked_elsewhere(project)


OPEN_DUCKDB_ELSEWHERE = textwrap.dedent("""
    import sys
    import time
    import duckdb
    deadline = time.monotonic() + 30  # (the project's background sync may hold it a moment)
    while True:
        try:
            duckdb.connect(sys.argv[1]).close()
            break
        except duckdb.IOException:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)
""")


def test_ctrl_c_as_the_duckdb_file_is_opened_closes_it(project, python_env):
    """A KeyboardInterrupt just after a sync's connection to the DuckDB file was kept (to be
    interrupted when the project closes) and before the try that closes it left it open for
    the session: no other process could open the file (a DuckDB CLI, a colleague's sync)."""
    Fault.save(np.full(3, 1.0), subject=1, session="s")
    with pytest.raises(KeyboardInterrupt), interrupt_when(lambda: bool(project.index._sql._open),
                                                         "scistack/index/sql.py"):
        project.sync()
    opened = subprocess.run([sys.executable, "-c", OPEN_DUCKDB_ELSEWHERE, str(project.path)], env=python_env,
                            capture_output=True, text=True, timeout=120)
    assert opened.returncode == 0, opened.stderr[-800:]


LOAD_ELSEWHERE = textwrap.dedent("""
    import sys
    from scistack import configure_database, BaseVariable
    class Fault(BaseVariable): pass
    configure_database(sys.argv[1])
    print(Fault.load(subject=7, session="after").data[0])
""")


@pytest.mark.parametrize("held", ["objects", "refs"])
def test_ctrl_c_as_a_batch_begins_leaves_later_saves_durable(project, python_env, held):
    """A KeyboardInterrupt just after a batch began holding objects (or refs) and before the
    try that ends it left the session in a batch for good: a later save's object stayed in
    memory while its ref was journalled (another process found the object missing), or its
    ref was never journalled."""
    if held == "objects":
        ready, where = (lambda: project.store._batch_depth > 0), "scistack/database.py"
    else:
        ready, where = (lambda: project.index.in_batch), "scistack/index/__init__.py"
    with pytest.raises(KeyboardInterrupt), interrupt_when(ready, where):
        with project.batch():
            pass
    Fault.save(np.full(3, 7.0), subject=7, session="after")
    elsewhere = subprocess.run([sys.executable, "-c", LOAD_ELSEWHERE, str(project.path)], env=python_env,
                               capture_output=True, text=True, timeout=120)
    assert elsewhere.returncode == 0 and elsewhere.stdout.strip() == "7.0", elsewhere.stderr[-800:]


_FAULT_GAIN = {"k": 2.0}


def _fault_inner(x):
    return x * _FAULT_GAIN["k"]


_FAULT_STEPS = {"inner": _fault_inner}


def _fault_outer(x):
    return _FAULT_STEPS["inner"](x)


def test_ctrl_c_while_a_function_reads_its_module_data_leaves_its_identity_as_it_was():
    """A function reading module data is marked busy while that data is hashed (a function
    found inside it, busy, is "recursive"). A KeyboardInterrupt just after the mark and before
    the try that unmarks it left it busy for the session: a function whose module data holds
    it got another identity (its cached calls missed, and a change of it went unseen)."""
    from scistack.codeid.identity import _IN_PROGRESS, function_identity

    before = function_identity(_fault_outer).digest
    with pytest.raises(KeyboardInterrupt), interrupt_when(lambda: bool(_IN_PROGRESS.__dict__.get("ids")),
                                                         "scistack/codeid/identity.py"):
        function_identity(_fault_inner)
    assert function_identity(_fault_outer).digest == before
