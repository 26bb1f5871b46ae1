"""A full disk (issue 16, item 6): a save that cannot be written is a StorageFullError naming
what could not grow; `close()` does not raise; every save that returned still loads. A real
full disk: a 6 MB tmpfs, mounted by the test (root only; CI runs as root)."""

from __future__ import annotations

import os
import subprocess

import numpy as np
import pytest

import scistack.database as database_module
from scistack import BaseVariable, configure_database
from scistack.errors import ScistackError, StorageFullError, VariableNotFoundError
from scistack.fsck import fsck
from tests.helpers import small_tmpfs



class Full(BaseVariable):
    pass


@pytest.fixture
def small_disk(tmp_path):
    # (the issue allows a stated skip off CI; CI runs as root and must run it)
    with small_tmpfs(tmp_path / "disk") as disk:
        try:
            yield disk
        finally:
            current = database_module.current_database()
            if current is not None:
                current.close()


def _fill(db, rng) -> tuple[list[int], StorageFullError]:
    acked = []
    for i in range(1000):
        try:
            Full.save(rng.random(12_000), subject=i, session="s")  # ~96 KB, incompressible
        except ScistackError as exc:
            return acked, exc
        acked.append(i)
    raise AssertionError("the disk never filled")


def test_a_full_disk_is_a_clear_error_and_every_returned_save_loads(small_disk):
    rng = np.random.default_rng(0)
    db = configure_database(small_disk / "p.duckdb", ["subject", "session"])
    acked, error = _fill(db, rng)
    assert isinstance(error, StorageFullError) and "could not grow" in str(error)
    assert str(small_disk) in str(error) and "not recorded" in str(error)
    with pytest.raises(StorageFullError):  # a batch: refused whole, at its end
        with db.batch():
            for i in range(30):
                Full.save(rng.random(2_000), subject=10_000 + i, session="b")
    db.close()  # does not raise: DuckDB is derived, the journal holds every name
    subprocess.run(["mount", "-o", "remount,size=64m", str(small_disk)], check=True)
    db = configure_database(small_disk / "p.duckdb", ["subject", "session"])
    expected = np.random.default_rng(0)
    for i in acked:
        np.testing.assert_array_equal(Full.load(subject=i, session="s").data, expected.random(12_000))
    with pytest.raises(VariableNotFoundError):  # no part of the refused batch is named
        Full.load(subject=10_000, session="b")
    problems = fsck(db).problems  # the objects and the journal are whole; DuckDB, a mirror of
    assert {p.kind for p in problems} <= {"index"}  # the journal, may have been torn by the full disk
    if problems:
        db.reindex()  # what `scistack fsck --reindex` does: moved aside, rebuilt
        assert fsck(db).ok
    assert db.sql('SELECT count(*) AS n FROM "Full"')["n"][0] == len(acked)
    Full.save(np.arange(3.0), subject=-1, session="after")
    assert Full.load(subject=-1, session="after").data[-1] == 2.0


def _journal_put(subject: int) -> bytes:
    from scistack.objects.canonical_json import dumps_canonical

    return dumps_canonical({"op": "put", "var": "Refused", "addr": {"subject": subject}, "version": 1,
                            "oid": "a" * 64, "kind": "json", "t": "2026-01-01T00:00:00Z", "summary": "x" * 100}) + b"\n"


@pytest.mark.parametrize("reader", ["another process", "another thread"])
def test_a_reader_never_folds_an_append_the_full_disk_took_back(small_disk, tmp_path, reader):
    # a batch's append writes part of its lines, meets the full disk and truncates them away;
    # a reader (another process's fold or DuckDB sync, this process's background sync) read
    # without the lock and folded the complete ones: names of saves refused with an error,
    # and, once the journal grew again, an offset in the middle of a line
    import threading

    from scistack.index.fold import Fold
    from scistack.index.journal import Journal

    from .helpers import run_when

    writer = Journal(small_disk / "refs.log")
    read = Journal(small_disk / "refs.log") if reader == "another process" else writer
    fold = Fold(tmp_path / "fold.sqlite", read)  # (on a disk with room)
    try:
        writer.append_lines([_journal_put(0)])
        free = os.statvfs(small_disk).f_bavail * os.statvfs(small_disk).f_frsize
        with open(small_disk / "filler", "wb") as filler:
            filler.write(b"\0" * (free - 8192))  # two pages left: ~40 lines of the batch fit
        before = writer.size()

        def fold_meanwhile() -> None:  # the batch's first lines written, the full disk not yet met
            folding = threading.Thread(target=fold.catch_up)
            folding.start()
            folding.join()

        with pytest.raises(StorageFullError):
            with run_when(lambda: os.path.getsize(small_disk / "refs.log") > before + 4096, "index/journal.py",
                          fold_meanwhile):
                writer.append_lines([_journal_put(i) for i in range(1, 200)])
        assert writer.size() == before
        assert fold.count("Refused") == 1  # (the refused batch's first lines had been folded)
        os.unlink(small_disk / "filler")
        writer.append_lines([_journal_put(i) for i in range(300, 600)])
        fold.catch_up()
        assert fold.count("Refused") == 301 and read.skipped_lines == 0  # (an offset mid-line)
        assert sorted(r.addr["subject"] for r in fold.records("Refused")) == [0, *range(300, 600)]
    finally:
        fold.close()
        writer.close()
        read.close()
