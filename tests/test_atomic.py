"""write_atomic: a small file replaced whole, by every writer that had its own copy of the
temporary-file-then-rename dance."""

from __future__ import annotations

import json
import os
import stat
import threading

import pytest

from scistack._atomic import write_atomic
from scistack.dictdb import _atomic_json
from scistack.matlab_bridge._files import write_json


def _payloads(n: int) -> list[dict]:
    # large enough that a write is not done in one step before another thread starts its own
    return [{"format": 1, "writer": k, "rows": [f"{k}-{i}" * 8 for i in range(4_000)]} for k in range(n)]


@pytest.mark.parametrize("writer", ["matlab_bridge._files.write_json", "dictdb._atomic_json", "write_atomic"])
def test_writers_at_once_never_rename_each_others_half_written_file(tmp_path, writer):
    """write_json wrote every file through one fixed `<name>.tmp` and dictdb's registry and
    marker through one name per process: two writers at once (MATLAB's and a Python helper's
    result, threads of one process) wrote into the same temporary file, so one renamed the
    other's half-written (or mixed) bytes into place and the other's rename found the name
    gone (FileNotFoundError). Threads writing at once stand in for the processes."""
    write = {"matlab_bridge._files.write_json": write_json, "dictdb._atomic_json": _atomic_json,
             "write_atomic": lambda path, value: write_atomic(path, json.dumps(value))}[writer]
    path = tmp_path / "result.json"
    payloads = _payloads(4)
    failures: list[BaseException] = []
    start = threading.Barrier(len(payloads))

    def run(value: dict) -> None:
        start.wait()
        try:
            for _ in range(10):
                write(path, value)
                json.loads(path.read_text())  # whatever writer's it is, it is whole
        except (OSError, ValueError) as exc:
            failures.append(exc)

    threads = [threading.Thread(target=run, args=(value,)) for value in payloads]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert failures == []
    assert json.loads(path.read_text()) in payloads
    assert sorted(p.name for p in tmp_path.iterdir()) == ["result.json"]


def test_the_file_gets_the_mode_asked_for_or_a_new_files_usual_one(tmp_path):
    umask = os.umask(0o022)
    os.umask(umask)
    write_atomic(tmp_path / "a", "text é")
    assert (tmp_path / "a").read_text(encoding="utf-8") == "text é"
    assert stat.S_IMODE((tmp_path / "a").stat().st_mode) == 0o666 & ~umask
    write_atomic(tmp_path / "b", b"\x00\x01", mode=0o444)
    assert (tmp_path / "b").read_bytes() == b"\x00\x01"
    assert stat.S_IMODE((tmp_path / "b").stat().st_mode) == 0o444
    write_atomic(tmp_path / "b", b"again")  # (a read-only file is replaced, not opened)
    assert (tmp_path / "b").read_bytes() == b"again"


def test_a_write_that_fails_leaves_the_old_file_and_no_temporary_one(tmp_path):
    (tmp_path / "taken").mkdir()
    (tmp_path / "taken" / "inside").write_text("kept")
    with pytest.raises(OSError):
        write_atomic(tmp_path / "taken", b"new")  # (a folder: the rename fails)
    assert (tmp_path / "taken" / "inside").read_text() == "kept"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["taken"]


@pytest.mark.parametrize("name", ["a" * 255, "é" * 127 + "a", "é" * 120 + ".csv"])
def test_any_name_the_file_system_takes_can_be_written(tmp_path, name):
    # (the temporary name adds a pid and a token: cut from the target's name, not refused by
    # the file system as too long, which made checkout and putting back such a file fail)
    write_atomic(tmp_path / name, b"whole")
    assert (tmp_path / name).read_bytes() == b"whole"
    assert [p.name for p in tmp_path.iterdir()] == [name]


def test_a_copy_of_stored_bytes_is_written_unsynced(tmp_path, monkeypatch):
    # (checkout and a for_each putting back output files write thousands of copies of bytes
    # the store keeps: two syncs a file made them ten times slower)
    def refuse(fd):
        raise AssertionError("synced")

    monkeypatch.setattr(os, "fsync", refuse)
    write_atomic(tmp_path / "copy", b"bytes", durable=False)
    assert (tmp_path / "copy").read_bytes() == b"bytes"
    with pytest.raises(AssertionError, match="synced"):
        write_atomic(tmp_path / "kept", b"bytes")
    assert not (tmp_path / "kept").exists() and [p.name for p in tmp_path.iterdir()] == ["copy"]
