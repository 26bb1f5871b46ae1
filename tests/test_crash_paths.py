"""Kills and full disks on paths the first crash tests did not reach (issue 16): SIGKILL
during an export, during a fold migration on open, and a file-size limit (RLIMIT_FSIZE: the
disk full for one process) met first by a batch's pack or by DuckDB's file. Real processes,
real files; each kill is the process's own SIGKILL at a chosen instruction."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import numpy as np
import pytest

from scistack import BaseVariable, configure_database, for_each
from scistack.fsck import fsck


class CrRaw(BaseVariable):
    pass


class CrOut(BaseVariable):
    pass


def tripled(signal):
    return signal * 3


def _project(project) -> None:
    for subject in (1, 2, 3):
        CrRaw.save(np.arange(50.0) * subject, subject=subject, session="s")
    for_each(tripled, inputs={"signal": CrRaw}, outputs=[CrOut], subject=[1, 2, 3], session=["s"],
             verbose=False)


def _run(script: str, python_env, *args, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", textwrap.dedent(script), *map(str, args)], env=python_env,
                          capture_output=True, text=True, timeout=timeout)


KILL_MID_EXPORT = """
import os, signal, sys
from scistack import configure_database
from scistack.export import bundle, crate, readme

def kill(*args, **kwargs):
    os.kill(os.getpid(), signal.SIGKILL)

point = sys.argv[3]
if point == "objects":  # some objects written, the open files and the manifest not
    write, seen = bundle._write_payload, []
    def _write_payload(path, payload):
        seen.append(path)
        if len(seen) == 4:
            kill()
        return write(path, payload)
    bundle._write_payload = _write_payload
elif point == "manifest":  # the manifest half written
    def write_manifest(manifest, to):
        with open(to / bundle.MANIFEST, "w") as out:
            out.write('{"format": 1, "files": [')
            out.flush()
            kill()
    bundle.write_manifest = write_manifest
elif point == "crate":  # the manifest and the README written, the RO-Crate not
    crate.write_crate = kill
db = configure_database(sys.argv[1])
db.export(to=sys.argv[2], all_current=["CrOut"])
print("exported")
"""


@pytest.mark.parametrize("point", ["objects", "crate", "crate into an empty folder"])
def test_sigkill_mid_export_leaves_no_bundle_that_passes_for_whole_and_the_export_runs_again(
        project, python_env, tmp_path, point):
    _project(project)
    project.close()
    target = tmp_path / "out" / "paper"
    given = None
    if point.endswith("empty folder"):  # written in place: a folder renamed over it had left a shell
        target.mkdir(parents=True)      # open in it in a deleted folder
        given = target.stat().st_ino
    done = _run(KILL_MID_EXPORT, python_env, project.path, target, point.split()[0])
    assert done.returncode == -9, done.stdout + done.stderr
    # what the kill left is no bundle: an import of it refuses, naming why, and imports nothing
    other = configure_database(tmp_path / "other" / "o.duckdb", ["subject", "session"])
    from scistack.errors import ScistackError

    with pytest.raises(ScistackError):
        other.import_bundle(target)
    assert not other.index.records("CrOut")
    other.close()
    db = configure_database(project.path)
    try:
        report = db.export(to=target, all_current=["CrOut"])  # runs again into the same folder
        assert report.selected == 3
        assert [p.name for p in target.parent.iterdir()] == ["paper"]  # nothing of the killed export left
        assert given is None or target.stat().st_ino == given
        for name in ("README.md", "ro-crate-metadata.json", "scistack-bundle.json"):
            assert (target / name).is_file(), name
        assert fsck(db).ok
    finally:
        db.close()
    other = configure_database(tmp_path / "other" / "o.duckdb", ["subject", "session"])
    try:
        other.import_bundle(target)
        np.testing.assert_array_equal(CrOut.load(subject=2, session="s").data, np.arange(50.0) * 6)
    finally:
        other.close()


KILL_MID_MIGRATION = """
import os, signal, sys
from scistack import configure_database
from scistack.index import fold

def kill(*args):
    os.kill(os.getpid(), signal.SIGKILL)

if sys.argv[2] == "mid":  # inside the migration's transaction, some of its statements run
    fold._MIGRATIONS[15] = (*fold._MIGRATIONS[15][:1], kill)
else:  # "committed": migrated, the derived triggers not yet made again
    migrate = fold._migrate
    fold._migrate = lambda con, found: (migrate(con, found), kill())
db = configure_database(sys.argv[1])
db.index.records("CrOut")  # (opens the fold: migrates it)
print("not killed")
"""

ran: list[float] = []


def counted(signal):
    ran.append(float(signal[1]))
    return signal * 3


def _answers(db) -> dict:
    return {var: sorted((r.addr_key, r.version, r.oid, r.call) for r in db.index.records(var))
            for var in ("CrRaw", "CrOut")}


@pytest.mark.parametrize("point", ["mid"])
def test_sigkill_mid_fold_migration_leaves_the_same_answers(project, python_env, point):
    from tests.helpers import migrated_in_place, older_fold

    for subject in (1, 2, 3):
        CrRaw.save(np.arange(50.0) * subject, subject=subject, session="s")
    CrRaw.save(np.ones(4), subject=1, session="s", note="v")  # (a version key: layout 19's counts)
    for_each(counted, inputs={"signal": CrRaw}, outputs=[CrOut], subject=[1, 2, 3], session=["s"],
             verbose=False)
    CrOut.delete(subject=3, session="s")
    before, computed, count = _answers(project), len(ran), project.index.count("CrOut")
    path, mark = older_fold(project, "ALTER TABLE calls DROP COLUMN origins; "
                                     "UPDATE meta SET value = '12' WHERE key = 'fold_version';")
    done = _run(KILL_MID_MIGRATION, python_env, project.path, point)
    assert done.returncode == -9, done.stdout + done.stderr
    db = configure_database(project.path)
    try:
        assert _answers(db) == before
        assert migrated_in_place(path, mark)  # (the kill's migration undone or finished, not rebuilt)
        np.testing.assert_array_equal(CrOut.load(subject=2, session="s").data, np.arange(50.0) * 6)
        for_each(counted, inputs={"signal": CrRaw}, outputs=[CrOut], subject=[1, 2], session=["s"],
                 verbose=False)
        assert len(ran) == computed  # all cache hits
        assert _answers(db) == before
        assert fsck(db).ok
        CrOut.save(np.zeros(2), subject=9, session="s")  # and the triggers count again
        assert db.index.count("CrOut") == count + 1
    finally:
        db.close()


FULL_FOR_ONE_PROCESS = """
import resource, signal, sys
import numpy as np
from scistack import configure_database, BaseVariable
from scistack.errors import ScistackError
class CrRaw(BaseVariable): pass
db = configure_database(sys.argv[1])
CrRaw.load(subject=1, session="s")                  # the fold is open
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)       # a write past the limit fails with EFBIG
limit = int(sys.argv[3]) << 10
resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))
if sys.argv[2] == "pack":
    rng = np.random.default_rng(0)
    try:
        with db.batch():                             # ~1.3 MB of incompressible values: one pack
            for i in range(20):
                CrRaw.save(rng.random(8000), subject=100 + i, session="b")
    except ScistackError as exc:
        print("refused:", type(exc).__name__, exc)
    CrRaw.save(np.arange(3.0), subject=7, session="after")  # a loose object and a line: they fit
else:                                                # DuckDB: built again from the journal
    try:
        db.sync()
        print("synced")
    except ScistackError as exc:
        print("refused:", type(exc).__name__, exc)
    try:
        db.sql('SELECT count(*) AS n FROM "CrRaw"')
    except ScistackError as exc:
        print("sql refused:", type(exc).__name__, exc)
db.close()                                           # logs, never raises
print("closed")
"""


@pytest.mark.parametrize("first", ["pack", "duckdb"])
def test_a_file_size_limit_met_first_by_a_pack_or_duckdb_is_a_clear_error_and_loses_nothing(
        project, python_env, first):
    for subject in (1, 2, 3):
        CrRaw.save(np.arange(50.0) * subject, subject=subject, session="s")
    project.sync()
    project.close()
    if first == "duckdb":  # (gone: made again by the next sync, which the limit refuses)
        project.path.unlink()
        (project.root / ".scistack" / "index.synced").unlink()
    limit = 512 if first == "pack" else 16  # KB: the journal and the fold fit, the pack / DuckDB not
    done = _run(FULL_FOR_ONE_PROCESS, python_env, project.path, first, limit)
    out = done.stdout + done.stderr
    assert done.returncode == 0 and "Traceback" not in out and "closed" in done.stdout, out
    refused = done.stdout.splitlines()[0]
    assert refused.startswith("refused: StorageFullError") and "could not grow" in refused, out
    assert ("pack" if first == "pack" else "DuckDB") in refused and "Free space" in refused, out
    db = configure_database(project.path)
    try:
        for subject in (1, 2, 3):
            np.testing.assert_array_equal(CrRaw.load(subject=subject, session="s").data, np.arange(50.0) * subject)
        expected = [1, 2, 3] + ([7] if first == "pack" else [])
        assert sorted(r.addr["subject"] for r in db.index.records("CrRaw")) == expected  # none of the batch
        assert fsck(db).ok
        assert sorted(db.sql('SELECT subject FROM "CrRaw"')["subject"]) == expected
    finally:
        db.close()


FULL_MID_EXPORT = """
import resource, signal, sys
from scistack import configure_database
from scistack.errors import ScistackError
db = configure_database(sys.argv[1])
db.sql("SELECT 1")                                   # (DuckDB in step before the limit)
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
resource.setrlimit(resource.RLIMIT_FSIZE, (64 << 10, 64 << 10))
try:
    db.export("CrRaw", to=sys.argv[2], subject=1, session="s")
except ScistackError as exc:
    print("refused:", type(exc).__name__, exc)
"""


def test_a_full_disk_mid_export_is_a_clear_error_and_leaves_no_bundle(project, python_env, tmp_path):
    CrRaw.save(np.random.default_rng(0).random(20_000), subject=1, session="s")  # 160 KB: over the limit
    project.sync()
    project.close()
    target = tmp_path / "out" / "paper"
    done = _run(FULL_MID_EXPORT, python_env, project.path, target)
    out = done.stdout + done.stderr
    assert done.returncode == 0 and out.startswith("refused: StorageFullError"), out  # (a raw OSError)
    assert "the export folder" in out and "could not grow" in out and "Nothing was exported" in out, out
    assert list(target.parent.iterdir()) == []
    db = configure_database(project.path)
    try:
        assert db.export("CrRaw", to=target, subject=1, session="s").selected == 1
        assert fsck(db).ok
    finally:
        db.close()
