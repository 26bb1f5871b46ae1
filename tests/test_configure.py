"""A failed configure_database refuses bad schema keys before touching disk and leaves the
database that was open before open and current."""

from __future__ import annotations

import os

import sys

import numpy as np
import pytest

import scistack.database as database_module
from scistack import BaseVariable, configure_database
from scistack.errors import InvalidNameError


class CfRaw(BaseVariable):
    pass


@pytest.mark.parametrize("keys", [["subject", "Subject"], ["Trial", "session", "TRIAL"]])
def test_keys_differing_only_by_case_are_refused_and_the_open_database_stays(project, tmp_path, keys):
    CfRaw.save(np.arange(3.0), subject=1, session="pre")
    other = tmp_path / "other"
    other.mkdir()
    with pytest.raises(InvalidNameError, match="only in case"):
        configure_database(other / "bad.duckdb", keys)
    assert list(other.iterdir()) == []  # nothing was written
    assert database_module.current_database() is project
    CfRaw.save(np.arange(4.0), subject=2, session="pre")  # the previous database still works
    assert CfRaw.load(subject=2, session="pre").data.tolist() == [0.0, 1.0, 2.0, 3.0]


def test_a_failed_open_of_another_project_keeps_the_current_one(project, tmp_path):
    CfRaw.save(np.arange(3.0), subject=1, session="pre")
    with pytest.raises(InvalidNameError):
        configure_database(tmp_path / "x" / "bad.duckdb", ["subject", "version"])  # reserved
    assert database_module.current_database() is project
    assert CfRaw.load(subject=1, session="pre").data.tolist() == [0.0, 1.0, 2.0]


def test_opening_a_project_that_does_not_exist_names_both_ways_to_create_it(tmp_path, no_database):
    from scistack.errors import NotARepositoryError

    with pytest.raises(NotARepositoryError, match=r"configure_database\('new.duckdb'.*scistack init new.duckdb --keys"):
        configure_database(tmp_path / "new.duckdb")
    assert not (tmp_path / "new.duckdb").exists()


def test_a_folder_given_as_the_project_is_refused_naming_a_file_in_it(tmp_path, no_database):
    """configure_database(<a folder>) put the project in the folder's parent (.scistack/
    beside the folder) and DuckDB then failed raw on the folder ("Is a directory", at db.sql
    and at every exit). A project is named by its DuckDB file (a data_base folder is
    scistack.open's): refused up front, naming a file in the folder, creating nothing."""
    from scistack.database import Database

    folder = tmp_path / "myproj"
    folder.mkdir()
    with pytest.raises(InvalidNameError, match=r"myproj is a folder.*configure_database\('.*myproj/project.duckdb'"):
        configure_database(folder, ["subject"])
    with pytest.raises(InvalidNameError, match="is a folder"):
        Database(folder, ["subject"])  # (also `--db` and SCISTACK_DB, which open it so)
    assert sorted(p.name for p in tmp_path.rglob("*")) == ["myproj"] and database_module._current is None
    with pytest.raises(InvalidNameError, match="is a folder"):  # a trailing slash names a folder to be
        configure_database(f"{tmp_path / 'newdir'}{os.sep}", ["subject"])  # (it had become a file "newdir")
    assert sorted(p.name for p in tmp_path.rglob("*")) == ["myproj"]
    db = configure_database(folder / "gait.duckdb", ["subject"])
    try:
        with pytest.raises(InvalidNameError, match=r"configure_database\('.*myproj/gait.duckdb'"):
            configure_database(folder)  # a folder holding a project: its file is named
        assert database_module.current_database() is db
    finally:
        db.close()
        database_module._current = None


def test_the_schema_keys_may_be_given_as_schema_keys(tmp_path, no_database):
    """configure_database(path, schema_keys=[...]) (Database's name for them) raised a raw
    TypeError ("got multiple values for argument 'schema_keys'")."""
    from scistack.errors import InvalidMetadataError

    with pytest.raises(InvalidMetadataError, match=r"schema keys twice.*give them once"):
        configure_database(tmp_path / "p.duckdb", ["subject"], schema_keys=["subject"])
    assert not (tmp_path / ".scistack").exists()
    db = configure_database(tmp_path / "p.duckdb", schema_keys=["subject", "session"])
    try:
        assert db.schema_keys == ["subject", "session"]
        CfRaw.save(1.0, subject=1, session="pre")
        assert configure_database(tmp_path / "p.duckdb", schema_keys=["subject", "session"]) is db
    finally:
        db.close()
        database_module._current = None


def test_the_open_laptop_project_given_lab_urls_again_is_refused_as_a_fresh_process_refuses(project):
    # it had been returned as it was: saves meant for the lab stayed on the laptop
    from scistack.errors import SchemaMismatchError

    CfRaw.save(np.arange(3.0), subject=1, session="pre")
    with pytest.raises(SchemaMismatchError, match="holds a laptop project with saved names.*scistack share"):
        configure_database(project.path, ["subject", "session"], shared="postgresql://me@127.0.0.1:1/gait",
                           objects="s3://labbucket/gait")  # (refused before any connection)
    assert database_module.current_database() is project and project.shared_url is None
    with pytest.raises(InvalidNameError, match="needs both"):
        configure_database(project.path, ["subject", "session"], objects="s3://labbucket/gait")
    assert configure_database(project.path, ["subject", "session"]) is project



def test_config_writes_at_once_never_collide(project):
    """A process records a new project's chunking in its config the first time a value needs
    it, so processes starting together write the config at once. Each wrote `config.tmp` and
    renamed it: a second rename found the name gone (FileNotFoundError, and that save
    failed; seen in a two-process test). Threads writing at once stand in for them here."""
    import json
    import threading

    config = json.loads((project.scistack_dir / "config.json").read_text())
    failures = []

    def write() -> None:
        try:
            for _ in range(200):
                project._write_config(config)
        except OSError as exc:
            failures.append(exc)

    threads = [threading.Thread(target=write) for _ in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert failures == []
    assert json.loads((project.scistack_dir / "config.json").read_text()) == config
    assert not list(project.scistack_dir.glob("*.tmp"))



_KEY = """
import sys
from scistack import configure_database
configure_database(sys.argv[1], ["subject", "session"]).add_schema_key("trial")
"""

_SAVE = """
import sys
import numpy as np
from scistack import BaseVariable, configure_database
class Big(BaseVariable):
    pass
configure_database(sys.argv[1], ["subject", "session"])
Big.save(np.arange(4096.0), subject=1, session="a")  # its first large value: the chunking is recorded
"""


def test_a_schema_key_added_while_another_process_records_the_chunking_keeps_both(tmp_path, python_env):
    """Each change to the config read the file, then wrote it whole. `add_schema_key` read it,
    then waited for the journal (behind a writer, here this test); meanwhile another process
    recorded the new project's chunking at its first large save; the key's write then dropped
    the chunking, which the next process recorded again from its own settings (identical data,
    another oid). Each change now reads the config again under a lock of its own."""
    import fcntl
    import json
    import os
    import subprocess
    import time

    path = tmp_path / "p.duckdb"
    configure_database(path, ["subject", "session"]).close()
    database_module._current = None
    config_path = tmp_path / ".scistack" / "config.json"
    env = python_env | {"SCISTACK_CHUNK_THRESHOLD": "4096", "SCISTACK_CHUNK_BYTES": "4096"}
    fd = os.open(tmp_path / ".scistack" / "refs.lock", os.O_RDWR | os.O_CREAT)
    fcntl.flock(fd, fcntl.LOCK_EX)  # a writer holds the journal
    try:
        key = subprocess.Popen([sys.executable, "-c", _KEY, str(path)], env=env)
        deadline = time.monotonic() + 60
        while not _waits_for_a_lock(key.pid) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert _waits_for_a_lock(key.pid), "add_schema_key never waited for the journal"
        save = subprocess.Popen([sys.executable, "-c", _SAVE, str(path)], env=env)
        while "chunking" not in json.loads(config_path.read_text()) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert "chunking" in json.loads(config_path.read_text()), "the save never recorded its chunking"
    finally:
        os.close(fd)
    assert key.wait(timeout=60) == 0 and save.wait(timeout=60) == 0
    config = json.loads(config_path.read_text())
    assert "trial" in config["schema_keys"] and config.get("chunking"), config


def _waits_for_a_lock(pid: int) -> bool:
    """Whether the process is blocked in flock (its kernel wait channel)."""
    try:
        with open(f"/proc/{pid}/wchan") as handle:
            return "lock" in handle.read()
    except OSError:
        return False
