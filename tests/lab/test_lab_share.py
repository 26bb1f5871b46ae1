"""`scistack share`: a laptop project copied whole into a new lab project (real PostgreSQL and S3)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import scistack.database as database_module
import scistack.share as share_module
from scistack import BaseVariable, configure_database, for_each, why
from scistack.errors import ScistackError, SchemaMismatchError, SharedServiceError
from scistack.index.pgjournal import PostgresJournal
from scistack.objects.chunking import set_chunking
from scistack.objects.npy import encode_npy

from .conftest import WRITER_PASSWORD, TcpRelay


class ShRaw(BaseVariable):
    pass


class ShScaled(BaseVariable):
    pass


def scale(signal, k):
    return signal * k


class ShRecording(BaseVariable):
    pass


def _laptop(folder: Path):
    folder.mkdir(exist_ok=True)
    db = configure_database(folder / "gait.duckdb", ["subject", "session"])
    set_chunking(threshold=16 << 10, chunk_bytes=4 << 10)  # a recording of many chunks
    try:
        ShRecording.save(np.arange(20_000, dtype=np.int16).reshape(-1, 4), subject=1, session="pre")
    finally:
        set_chunking()
    for subject in (1, 2):
        ShRaw.save(np.arange(4.0) * subject, subject=subject, session="pre")
    ShRaw.save(np.arange(4.0) * 10, subject=1, session="pre")       # a second version
    ShRaw.save(np.ones(2), subject=3, session="pre")
    ShRaw.delete(subject=3, session="pre")
    for_each(scale, inputs={"signal": ShRaw, "k": 2}, outputs=[ShScaled], subject=[1, 2], session=["pre"],
             verbose=False)
    return db


def _queue_matlab_save(db, value: np.ndarray) -> None:
    """A save the MATLAB client has queued (`<project>/.scistack/queue`), not yet recorded."""
    folder = db.scistack_dir / "queue" / "20260101T000000000-00000001-a"
    folder.mkdir(parents=True)
    (folder / "payload-0.bin").write_bytes(b"".join(bytes(p) for p in encode_npy(value)))
    (folder / "manifest.json").write_text(json.dumps({
        "children": [], "format": 1, "schema_keys": db.schema_keys, "var": "ShRaw", "writer": "scistack-matlab",
        "items": [{"addr": {"subject": 8, "session": "pre"}, "kind": "npy", "payload": "payload-0.bin",
                   "vkeys": {}}]}))


def _history(var) -> list:
    return sorted((r.record.addr_key, r.record.version, r.record.oid, r.record.created_at, r.record.call)
                  for r in var.load_all())


def _open(folder: Path):
    """The project in `folder`, as a later session opens it (a lab checkout's password from PGPASSWORD)."""
    database_module._current = None
    return configure_database(folder / "gait.duckdb")


def _lines(url: str) -> int:
    journal = PostgresJournal(url, Path("unused"))
    try:
        return len(journal.read_from(0)[0])
    finally:
        journal.close()


def test_a_laptop_project_moves_whole_into_a_new_lab_project_and_the_laptop_stays(tmp_path, monkeypatch,
                                                                                  pg_url, bucket_url):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("PGPASSWORD", WRITER_PASSWORD)
    laptop = _laptop(tmp_path / "laptop")
    _queue_matlab_save(laptop, np.full(3, 7.0))  # a MATLAB save still queued: part of the project
    entries = len(laptop.index._journal.read_from(0)[0]) + 1
    report = laptop.share(to=tmp_path / "lab", shared=pg_url, objects=bucket_url)
    assert (report.entries, report.path) == (entries, str(tmp_path / "lab" / "gait.duckdb"))
    before = {v.__name__: _history(v) for v in (ShRaw, ShScaled)}
    assert report.objects > 0
    laptop.close()

    lab = _open(tmp_path / "lab")  # the checkout remembers its URLs
    try:
        assert {v.__name__: _history(v) for v in (ShRaw, ShScaled)} == before  # versions, times, lineage
        assert [r.version for r in ShRaw.list_versions(subject=1, session="pre")] == [1, 2]
        assert ShRaw.load_all(subject=3) == []                                     # the delete too
        np.testing.assert_array_equal(ShScaled.load(subject=1, session="pre").data, np.arange(4.0) * 20)
        lazy = ShRecording.load(subject=1, session="pre", lazy=True).data             # every chunk came
        np.testing.assert_array_equal(lazy[4000:4002], np.arange(16_000, 16_008, dtype=np.int16).reshape(2, 4))
        np.testing.assert_array_equal(np.asarray(lazy), np.arange(20_000, dtype=np.int16).reshape(-1, 4))
        rerun = for_each(scale, inputs={"signal": ShRaw, "k": 2}, outputs=[ShScaled], subject=[1, 2],
                         session=["pre"], verbose=False)
        assert (rerun.ran, rerun.cached) == (0, 2)                                 # the call cache came along
        assert why(ShScaled, subject=2, session="pre").status == "current"
        assert ShRaw.load(subject=8, session="pre").data.tolist() == [7.0, 7.0, 7.0]
    finally:
        lab.close()

    laptop = _open(tmp_path / "laptop")  # untouched, and still a laptop project
    try:
        assert {v.__name__: _history(v) for v in (ShRaw, ShScaled)} == before
        ShRaw.save(np.zeros(4), subject=4, session="pre")                         # saved after the copy
        again = laptop.share(to=tmp_path / "lab", shared=pg_url, objects=bucket_url)
        assert again.entries == 1                                                  # brings only that
        assert laptop.share(to=tmp_path / "lab", shared=pg_url, objects=bucket_url).entries == 0
    finally:
        laptop.close()
    assert _lines(pg_url) == entries + 1                                           # no line twice

    lab = _open(tmp_path / "lab")
    try:
        ShRaw.save(np.ones(4), subject=5, session="pre")                          # a colleague saves there
    finally:
        lab.close()
    laptop = _open(tmp_path / "laptop")
    try:
        ShRaw.save(np.ones(4), subject=6, session="pre")
        with pytest.raises(SchemaMismatchError, match="colleagues have saved there since.*scistack import"):
            laptop.share(to=tmp_path / "lab", shared=pg_url, objects=bucket_url)
    finally:
        laptop.close()
        database_module._current = None


def test_a_copy_cut_by_the_network_resumes_without_writing_a_line_twice(tmp_path, monkeypatch, postgres,
                                                                         pg_url, bucket_url):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("PGPASSWORD", WRITER_PASSWORD)
    laptop = _laptop(tmp_path / "laptop")
    entries = len(laptop.index._journal.read_from(0)[0])
    relay = TcpRelay(postgres.port)
    cut_url = pg_url.replace(f":{postgres.port}/", f":{relay.port}/")
    monkeypatch.setattr(share_module, "_SLICE", 200)  # a slice of a line or two: several transactions
    original = PostgresJournal.append_with_meta

    def append_then_fail(self, *args, **kwargs):
        last = original(self, *args, **kwargs)
        relay.cut()  # the network fails after the first slice committed
        return last

    monkeypatch.setattr(PostgresJournal, "append_with_meta", append_then_fail)
    with pytest.raises(SharedServiceError, match="run the same share again to resume"):
        laptop.share(to=tmp_path / "lab", shared=cut_url, objects=bucket_url)
    monkeypatch.setattr(PostgresJournal, "append_with_meta", original)
    copied = _lines(pg_url)
    assert 0 < copied < entries
    report = laptop.share(to=tmp_path / "lab", shared=pg_url, objects=bucket_url)  # the same lab, its direct URL
    assert report.entries == entries - copied
    assert _lines(pg_url) == entries
    before = _history(ShScaled)
    laptop.close()
    lab = _open(tmp_path / "lab")
    try:
        assert _history(ShScaled) == before
    finally:
        lab.close()
        database_module._current = None


def test_share_refuses_a_lab_journal_holding_another_project_and_changes_nothing(tmp_path, monkeypatch,
                                                                               pg_url, bucket_url):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "colleague").mkdir()
    other = configure_database(tmp_path / "colleague" / "gait.duckdb", ["subject", "session"], shared=pg_url,
                               objects=bucket_url)
    ShRaw.save(np.ones(3), subject=9, session="pre")
    other.close()
    database_module._current = None
    laptop = _laptop(tmp_path / "laptop")
    try:
        with pytest.raises(SchemaMismatchError, match="holds a project already.*scistack export"):
            laptop.share(to=tmp_path / "lab", shared=pg_url, objects=bucket_url)
        assert not (tmp_path / "lab").exists() or not any((tmp_path / "lab").iterdir())
        assert _lines(pg_url) == 1
        with pytest.raises(ScistackError, match="shared= must be a postgresql:// URL"):
            laptop.share(to=tmp_path / "lab", shared="lab-db/gait", objects=bucket_url)  # (psycopg's error before)
        (tmp_path / "full").mkdir()
        (tmp_path / "full" / "notes.txt").write_text("mine")
        with pytest.raises(ScistackError, match="not an empty folder"):
            laptop.share(to=tmp_path / "full", shared=pg_url, objects=bucket_url)
    finally:
        laptop.close()
        database_module._current = None


def test_the_cli_shares_and_opening_a_laptop_folder_with_urls_points_to_it(tmp_path, monkeypatch, pg_url,
                                                                          bucket_url, python_env, s3_env):
    monkeypatch.chdir(tmp_path)
    _laptop(tmp_path / "laptop").close()
    database_module._current = None
    with pytest.raises(SchemaMismatchError, match="scistack share --to NEW_FOLDER"):
        configure_database(tmp_path / "laptop" / "gait.duckdb", shared=pg_url, objects=bucket_url)
    database_module._current = None
    scistack = str(Path(sys.executable).with_name("scistack"))
    done = subprocess.run([scistack, "share", "--to", str(tmp_path / "lab"), "--shared", pg_url,
                           "--objects", bucket_url, "--json"], cwd=tmp_path / "laptop",
                          env=python_env | s3_env, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["entries"] > 0
    listed = subprocess.run([scistack, "sql", "SELECT count(*) AS n FROM ShScaled", "--json"],
                            cwd=tmp_path / "lab", env=python_env | s3_env | {"PGPASSWORD": WRITER_PASSWORD},
                            capture_output=True, text=True)
    assert listed.returncode == 0, listed.stderr
    assert json.loads(listed.stdout) == [{"n": 2}]
