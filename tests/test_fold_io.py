"""The fold (SQLite checkpoint of the ref journal) when its writes fail: a save whose lines
reached the journal is saved, whatever the fold's COMMIT says; a write the disk refuses is a
ScistackError, never a raw sqlite3 error; an I/O error is not damage (no file deleted)."""

from __future__ import annotations

import sqlite3
import subprocess
import sys

import numpy as np
from scistack import BaseVariable, configure_database


class Sig(BaseVariable):
    pass


# a file-size limit (RLIMIT_FSIZE: writes past it fail with EFBIG) that the journal's few
# hundred bytes stay under and the fold's WAL frames (4 KB pages, several per save) pass
EFBIG_SCRIPT = """
import resource, signal, sys
import numpy as np
from scistack import configure_database, BaseVariable
from scistack.errors import ScistackError
db = configure_database(sys.argv[1], ["subject"])
class Sig(BaseVariable): pass
Sig.load(subject=0)                                  # the fold is open
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
limit = int(sys.argv[2])
resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))
try:
    Sig.save(np.arange(5.0) + 1, subject=1)
except ScistackError as exc:
    print("refused:", type(exc).__name__, exc)
    sys.exit(3)
print("saved")
try:
    Sig.save(np.arange(5.0) + 2, subject=2)
except ScistackError as exc:
    print("second refused:", type(exc).__name__, exc)
    sys.exit(4)
print("second saved")
"""


def test_a_file_size_limit_on_the_fold_does_not_fail_a_journalled_save(tmp_path, python_env):
    path = tmp_path / "p.duckdb"
    db = configure_database(path, ["subject"])
    Sig.save(np.arange(5.0), subject=0)
    db.close()
    journal = tmp_path / ".scistack" / "refs.log"
    assert journal.stat().st_size < 4096
    script = tmp_path / "efbig.py"
    script.write_text(EFBIG_SCRIPT)
    done = subprocess.run([sys.executable, str(script), str(path), "8192"], env=python_env,
                          capture_output=True, text=True, timeout=120)
    out = done.stdout + done.stderr
    assert "sqlite3.OperationalError" not in out and "Traceback" not in out, out
    # the journal took the line: the save is done (it raised before, and a retry saved twice)
    assert "saved" in done.stdout.splitlines()[0], out
    assert done.returncode in (0, 4), out  # the next read may say clearly the index cannot grow
    if done.returncode == 4:
        assert "could not be written" in done.stdout or "could not grow" in done.stdout, out
    db = configure_database(path, ["subject"])
    assert [v.version for v in Sig.list_versions(subject=1)] == [1]
    np.testing.assert_array_equal(Sig.load(subject=1).data, np.arange(5.0) + 1)
    db.close()


def test_an_io_error_opening_the_fold_is_not_damage():
    from scistack.index.fold import _not_damage

    for name in ("SQLITE_IOERR", "SQLITE_IOERR_WRITE", "SQLITE_IOERR_SHMOPEN", "SQLITE_FULL"):
        exc = sqlite3.OperationalError("disk I/O error")
        exc.sqlite_errorname = name
        assert _not_damage(exc), name
    exc = sqlite3.DatabaseError("file is not a database")
    exc.sqlite_errorname = "SQLITE_NOTADB"
    assert not _not_damage(exc)
