"""Point reads (a load of one full address, a cache hit): their short cuts never serve a stale
value. The fold keeps a read transaction open across point lookups (index/fold.py), so these
tests change the project from other processes between two reads of this one, check that an
idle process lets SQLite checkpoint its WAL, and that a forked child reads on its own."""

from __future__ import annotations

import gc
import os
import sqlite3
import subprocess
import sys
import textwrap
import threading
import time

import numpy as np
import pytest

from scistack import BaseVariable, lineage_fcn
from scistack.errors import AmbiguousVersionError
from scistack.index.state import RefRecord
from scistack.objects.pack import PackSet
from scistack.report.status import status_grid, status_summary


class PointWeight(BaseVariable):
    pass


@lineage_fcn
def doubled(x):
    return x * 2


def _in_other_process(project, python_env: dict, body: str) -> None:
    code = textwrap.dedent("""
        import sys
        from scistack import configure_database
        from tests.test_point_reads import PointWeight, doubled  # the same variable and function
        db = configure_database(sys.argv[1])
    """) + textwrap.dedent(body) + "\ndb.close()\n"
    done = subprocess.run([sys.executable, "-c", code, str(project.path)], env=python_env,
                          cwd=project.path.parent, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr


def test_a_point_load_sees_a_save_another_process_made_between_two_loads(project, python_env):
    PointWeight.save(1.0, subject=1, session="pre")
    PointWeight.save(5.0, subject=2, session="pre")
    assert PointWeight.load(subject=1, session="pre").data == 1.0  # the read transaction is open now
    _in_other_process(project, python_env, """
        PointWeight.save(2.0, subject=1, session="pre")
        PointWeight.delete(subject=2, session="pre")
        PointWeight.save(3.0, subject=3, session="pre")
    """)
    loaded = PointWeight.load(subject=1, session="pre")
    assert (loaded.data, loaded.version) == (2.0, 2)
    assert PointWeight.load(subject=3, session="pre").data == 3.0
    with pytest.raises(Exception, match="PointWeight"):
        PointWeight.load(subject=2, session="pre")


def test_a_cache_hit_sees_entries_another_process_recorded(project, python_env):
    PointWeight.save(4.0, subject=1, session="pre")
    x = PointWeight.load(subject=1, session="pre")
    assert doubled(x).cached is False
    assert doubled(x).cached is True  # its entry read inside the held transaction
    PointWeight.save(6.0, subject=2, session="pre")
    _in_other_process(project, python_env, """
        assert doubled(PointWeight.load(subject=2, session="pre")).cached is False
    """)
    result = doubled(PointWeight.load(subject=2, session="pre"))
    assert (result.data, result.cached) == (12.0, True)


def test_a_point_load_keeps_the_rules_of_the_general_path(project):
    PointWeight.save(1.0, subject=1, session="pre")
    PointWeight.save(2.0, subject=1, session="pre", scale="kg")  # a version-key variant
    with pytest.raises(AmbiguousVersionError):
        PointWeight.load(subject=1, session="pre")
    assert PointWeight.load(subject=1, session="pre", scale="kg").data == 2.0
    PointWeight.save(7.0, subject=np.int64(2), session="pre")
    assert PointWeight.load(subject=np.int64(2), session="pre").data == 7.0  # numpy keys unwrapped
    assert PointWeight.load(subject=2, session="pre", version=1).data == 7.0
    with project.batch():  # a write held by the batch is seen by the batch's own loads
        PointWeight.save(8.0, subject=2, session="pre")
        assert PointWeight.load(subject=2, session="pre").data == 8.0
    assert PointWeight.load(subject=2, session="pre").data == 8.0


def test_an_idle_process_lets_the_fold_be_checkpointed(project, python_env):
    for i in range(20):
        PointWeight.save(float(i), subject=i, session="pre")
    assert PointWeight.load(subject=3, session="pre").data == 3.0  # a read transaction begins
    _in_other_process(project, python_env, """
        for i in range(20):
            PointWeight.save(float(i) + 0.5, subject=i, session="post")
        PointWeight.load(subject=1, session="post")  # folded into the fold's WAL
    """)
    time.sleep(0.5)  # idle: the held transaction ends within 0.1 s
    fold = project.path.parent / ".scistack" / "fold.sqlite"
    other = sqlite3.connect(fold, timeout=5)
    try:
        busy, _, _ = other.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()
    finally:
        other.close()
    assert busy == 0, "an idle reader held back the checkpoint"
    assert PointWeight.load(subject=3, session="post").data == 3.5


@pytest.mark.skipif(not hasattr(os, "fork"), reason="fork is POSIX-only")
def test_a_forked_child_reads_through_its_own_connection(project):
    PointWeight.save(1.5, subject=1, session="pre")
    assert PointWeight.load(subject=1, session="pre").data == 1.5  # the parent's transaction is open
    pid = os.fork()
    if pid == 0:  # the child: exit status 0 only if both reads are right
        try:
            ok = PointWeight.load(subject=1, session="pre").data == 1.5
            PointWeight.save(2.5, subject=9, session="pre")
            ok = ok and PointWeight.load(subject=9, session="pre").data == 2.5
        finally:
            os._exit(0 if ok else 1)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    assert PointWeight.load(subject=9, session="pre").data == 2.5  # the child's save, seen here
    assert PointWeight.load(subject=1, session="pre").data == 1.5


def test_a_report_writes_what_it_learned_after_point_loads(project):
    for subject in (1, 2):
        PointWeight.save(3.0 * subject, subject=subject, session="pre")
        PointDoubled.save(doubled(PointWeight.load(subject=subject, session="pre")), subject=subject, session="pre")
    PointDoubled.load(subject=1, session="pre")  # a read transaction is open when the report starts
    first = status_summary(project)  # learns call facts and keeps its judgement (writes)
    assert first.counts == status_grid(project).counts()
    PointWeight.save(9.0, subject=2, session="pre")  # PointDoubled at subject 2 is stale now
    PointDoubled.load(subject=1, session="pre")
    again = status_summary(project)
    assert again.counts == status_grid(project).counts() != first.counts


class PointDoubled(BaseVariable):
    pass


def test_a_record_built_from_a_fold_row_is_the_same_immutable_record():
    row = (3, '{"scale":"kg"}', "a" * 64, "json", None, "{}", None, "2026-01-01T00:00:00Z")
    built = RefRecord.from_row("PointWeight", '{"session":"pre","subject":1}', row)
    assert type(built) is RefRecord
    same = RefRecord.from_text("PointWeight", '{"session":"pre","subject":1}', '{"scale":"kg"}', 3, "a" * 64,
                               "json", None, "{}", "", "2026-01-01T00:00:00Z")
    assert built == same and hash(built) == hash(same)
    assert built.addr == {"session": "pre", "subject": 1} and built.vkeys == {"scale": "kg"}
    assert built.summary == "" and built.params == {}
    with pytest.raises(AttributeError, match="immutable"):
        built.version = 4
    big = RefRecord.from_row("PointWeight", '{"subject":123456789012345678901}', row)
    assert big.addr == {"subject": 123456789012345678901}  # beyond 64 bits: still an int


def test_the_thread_ending_read_transactions_stops_when_the_project_closes(project):
    PointWeight.save(1.0, subject=1, session="pre")
    PointWeight.load(subject=1, session="pre")
    ender = next(t for t in threading.enumerate() if t.name == "scistack-fold-reads"
                 and t is project.index._fold._ender)
    project.close()
    ender.join(timeout=2)
    assert not ender.is_alive()


def _pack_descriptors(directory) -> int:
    found = 0
    for fd in os.listdir("/proc/self/fd"):
        try:
            target = os.readlink(f"/proc/self/fd/{fd}")
            found += target.startswith(str(directory)) and target.endswith(".pack")
        except OSError:  # closed meanwhile (the listing's own descriptor)
            pass
    return found


@pytest.mark.skipif(not os.path.isdir("/proc/self/fd"), reason="counts descriptors through /proc")
def test_a_packed_value_is_read_by_pread_and_its_descriptor_goes_with_the_pack_set(project):
    with project.batch():
        for i in range(30):
            PointWeight.save(float(i), subject=i, session="pre")
    assert project.store.packs.consolidate()  # the multi-pack index names every object
    oids = [PointWeight.load(subject=i, session="pre").oid for i in (3, 17)]
    project.sync()  # (the views' background sync reads the values too: not while counting)
    directory = project.store.root / "pack"
    packs = PackSet(directory)
    packs.refresh()
    gc.collect()
    before = _pack_descriptors(directory)  # the project's own store has its pack open
    found = [packs.peek(oid) for oid in oids]
    assert all(found) and _pack_descriptors(directory) == before + 1  # one descriptor for the pack
    assert packs.peek("0" * 64) is None
    del packs, found
    gc.collect()
    assert _pack_descriptors(directory) == before


_MANY_PACKS = """
import resource, sys
import numpy as np
from scistack import BaseVariable, configure_database
resource.setrlimit(resource.RLIMIT_NOFILE, (256, resource.getrlimit(resource.RLIMIT_NOFILE)[1]))
db = configure_database(sys.argv[1])
class PackMany(BaseVariable): pass
with db.batch():
    oids = [PackMany.save(np.full(3, i, dtype=float), subject=i, session="pre").oid for i in range(200)]
    assert len(set(oids)) == 200  # (an oid asked inside a batch writes nothing)
for i in range(300):  # a pack a batch: 300 packs
    with db.batch():
        PackMany.save(np.full(3, 1000.0 + i), subject=1000 + i, session="pre")
values = PackMany.load_all()
assert len(values) == 500 and sorted(float(v.data[0]) for v in values)[-1] == 1299.0
db.store.packs.consolidate()
assert PackMany.load(subject=1150, session="pre").data.tolist() == [1150.0] * 3
db.close()
print("ok")
"""


def test_a_project_of_many_packs_is_read_with_few_open_files(project, python_env):
    """Every pack's index was kept mapped (one descriptor each: Python's mmap holds one), and
    so was every pack read: a process of a project that had grown a pack per batch (a
    for_each flushes about every second) failed with 'Too many open files' once it looked at
    ~1,000 of them (the default limit; 256 on macOS, as here). And asking a batch's save for its oid
    wrote what the batch held, a pack per save."""
    project.close()
    done = subprocess.run([sys.executable, "-c", _MANY_PACKS, str(project.path)], env=python_env,
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0 and done.stdout.strip() == "ok", done.stderr[-2000:]
    packs = list((project.path.parent / ".scistack" / "objects" / "pack").glob("*.pack"))
    assert len(packs) == 301  # one for the first batch, whose oids were asked inside it
