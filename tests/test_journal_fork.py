"""A forked child (the multiprocessing fork start method, a user's own `os.fork`) shares its
parent's open file descriptions, and a `flock` belongs to the description: the journal must
give the child descriptors of its own and never release the parent's lock from the child."""

from __future__ import annotations

import fcntl
import os
import sqlite3
from pathlib import Path

import pytest

from scistack.index.fold import Fold
from scistack.index.journal import Journal

from .helpers import child_status


PUT = {"op": "put", "var": "V", "addr": {"s": 1}, "version": 1, "oid": "a" * 64, "kind": "json",
       "t": "2026-01-01T00:00:00Z"}


def _held_by_someone(lock_path: Path) -> bool:
    """Whether any lock (shared or exclusive) is held on the lock file: an exclusive lock taken
    without waiting, on a description of our own, is refused."""
    fd = os.open(lock_path, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    else:
        fcntl.flock(fd, fcntl.LOCK_UN)
        return False
    finally:
        os.close(fd)


def test_a_child_forked_inside_locked_never_releases_the_parents_lock(tmp_path: Path):
    journal = Journal(tmp_path / "refs.log")
    journal.append([PUT])
    pid = -1
    try:
        with journal.locked():
            pid = os.fork()
            if pid != 0:  # the parent: the child has left the block (and exited) meanwhile
                assert child_status(pid) == 0
                assert _held_by_someone(journal.lock_path), "the child's unlock released the parent's lock"
                journal.append([dict(PUT, version=2)])  # still ours: re-entrant, no wait
        assert not _held_by_someone(journal.lock_path)
    finally:
        if pid == 0:
            os._exit(0)  # the child: out of the block, never back into pytest
    entries, _ = journal.read_from(0)
    assert [e["version"] for e in entries] == [1, 2]


def test_a_child_forked_during_a_read_never_releases_the_parents_shared_lock(tmp_path: Path):
    journal = Journal(tmp_path / "refs.log")
    with journal.locked():  # (the lock file made, as a writer makes it)
        journal.append([PUT])
    pid = -1
    try:
        with journal._reading() as whole:
            assert whole
            pid = os.fork()
            if pid != 0:
                assert child_status(pid) == 0
                assert _held_by_someone(journal.lock_path), "the child's unlock released the parent's read lock"
    finally:
        if pid == 0:
            os._exit(0)
    assert not _held_by_someone(journal.lock_path)


def test_a_forked_child_locks_on_a_description_of_its_own(tmp_path: Path):
    """A child's lock excludes its parent, as another process's does: on the description they
    shared, the parent's own descriptor was granted the lock the child held (and a child's
    lock, taken at once beside its parent's, excluded nothing)."""
    journal = Journal(tmp_path / "refs.log")
    journal.append([PUT])  # (the descriptors open in the parent)
    journal.read_from(0)
    held_r, held_w = os.pipe()
    done_r, done_w = os.pipe()
    pid = os.fork()
    if pid == 0:
        try:
            with journal.locked():
                os.write(held_w, b"1")
                os.read(done_r, 1)
                journal.append([dict(PUT, version=2)])
            entries, end = journal.read_from(0)
            os._exit(0 if [e["version"] for e in entries] == [1, 2] and end == journal.size() else 3)
        finally:
            os._exit(1)
    try:
        assert os.read(held_r, 1) == b"1"
        assert journal._lock_fd is not None
        with pytest.raises(BlockingIOError):
            fcntl.flock(journal._lock_fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    finally:
        os.write(done_w, b"1")
        status = child_status(pid)
    assert status == 0
    journal.append([dict(PUT, version=3)])
    entries, _ = journal.read_from(0)
    assert [e["version"] for e in entries] == [1, 2, 3]


def test_a_forked_childs_fold_writes_outlive_its_parents_close(tmp_path: Path):
    """The child's fold connection, opened while the inherited one was still open, shared
    SQLite's in-process lock records with it: it took no lock of its own on the file, so the
    parent's close (the last lock it saw) checkpointed and deleted the write-ahead log under
    the child, whose later commits went to a deleted file and were lost."""
    journal = Journal(tmp_path / "refs.log")
    fold = Fold(tmp_path / "fold.sqlite", journal)
    journal.append([PUT])
    assert fold.catch_up()
    opened_r, opened_w = os.pipe()
    closed_r, closed_w = os.pipe()
    pid = os.fork()
    if pid == 0:
        code = 1
        try:
            journal.append([dict(PUT, version=2)])
            fold.catch_up()
            os.write(opened_w, b"1")
            os.read(closed_r, 1)  # the parent has closed its fold meanwhile
            journal.append([dict(PUT, version=3)])
            fold.catch_up()
            code = 0
        finally:
            os._exit(code)
    assert os.read(opened_r, 1) == b"1"
    fold.close()
    os.write(closed_w, b"1")
    assert child_status(pid) == 0
    con = sqlite3.connect(tmp_path / "fold.sqlite")
    try:
        folded = int(con.execute("SELECT value FROM meta WHERE key = 'journal_offset'").fetchone()[0])
        versions = [v for (v,) in con.execute("SELECT version FROM refs ORDER BY version")]
    finally:
        con.close()
    assert (folded, versions) == (journal.size(), [1, 2, 3]), "the child's fold commits were lost"
