"""MATLAB (run under Octave) reads a lab project through its local mirror: names saved from
Python on one machine load in MATLAB on another, objects are fetched once into the local
cache, and a second load reads only local files (the bridge command is never run again)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import scistack.database as database_module
from scistack import BaseVariable, configure_database

from .conftest import WRITER_PASSWORD

MATLAB = Path(__file__).resolve().parents[2] / "matlab"


class LabMatlabValue(BaseVariable):
    pass


def _octave() -> str:
    path = shutil.which("octave-cli")
    if path is None:  # as in tests/matlab: a failure in CI, where make test installs it
        if os.environ.get("CI"):
            pytest.fail("octave-cli is not installed; CI must run the MATLAB client tests")
        pytest.skip("octave-cli is not installed (make octave installs it)")
    return path


def _run(octave: str, folder: Path, script: str, env: dict[str, str]) -> subprocess.CompletedProcess:
    (folder / "LabMatlabValue.m").write_text("classdef LabMatlabValue < scistack.BaseVariable\nend\n")
    setup = f"addpath('{MATLAB}'); addpath('{folder}'); "
    return subprocess.run([octave, "--no-gui", "--no-init-file", "--quiet", "--eval", setup + script],
                          cwd=folder, env=env, capture_output=True, text=True, timeout=300,
                          stdin=subprocess.DEVNULL, check=False)


def _open(folder: Path, pg_url: str, bucket_url: str):
    current = database_module.current_database()
    if current is not None:
        current.close()
    folder.mkdir(exist_ok=True)
    return configure_database(folder / "gait.duckdb", ["subject", "session"], shared=pg_url, objects=bucket_url)


def test_matlab_loads_a_lab_project_through_its_local_cache(tmp_path, pg_url, bucket_url, s3_env):
    octave = _octave()
    db = _open(tmp_path / "python", pg_url, bucket_url)
    LabMatlabValue.save(np.arange(6.0).reshape(2, 3), subject=1, session="pre")  # one loose object
    with db.batch():  # a pack, read back with ranged GETs
        for i in range(5):
            LabMatlabValue.save({"n": i, "w": np.full(3, float(i))}, subject=2, session=f"s{i}")
    db.close()
    _open(tmp_path / "matlab", pg_url, bucket_url).close()  # the MATLAB machine joins
    folder = tmp_path / "matlab"
    cache = folder / ".scistack" / "cache" / "objects"
    shutil.rmtree(cache)  # (its DuckDB views read some values): start from an empty cache
    env = dict(os.environ, SCISTACK_CLI=f"{sys.executable} -m scistack", SCISTACK_LAB_REFRESH="0",
               PGPASSWORD=WRITER_PASSWORD)  # the project stores no password: the environment gives it
    env.pop("SCISTACK_DB", None)
    first = _run(octave, folder, (
        f"scistack.configure_database('{folder / 'gait.duckdb'}', {{'subject', 'session'}}); "
        "a = LabMatlabValue().load('subject', 1, 'session', 'pre'); "
        "d = LabMatlabValue().load('subject', 2, 'session', 's3'); "
        "printf('A=%s\\n', mat2str(a.data)); printf('N=%d W=%s\\n', d.data.n, mat2str(d.data.w));"),
        env)
    assert first.returncode == 0, first.stdout + first.stderr
    assert "A=[0 1 2;3 4 5]" in first.stdout
    assert "N=3 W=[3;3;3]" in first.stdout
    assert any(p.is_file() for p in cache.rglob("*"))  # fetched into the read-through cache

    # another machine saves a newer version: the mirror shows it on the next read
    db = _open(tmp_path / "python", pg_url, bucket_url)
    LabMatlabValue.save(np.array([7.0, 8.0]), subject=1, session="pre")
    db.close()
    second = _run(octave, folder, (
        f"scistack.configure_database('{folder / 'gait.duckdb'}', {{'subject', 'session'}}); "
        "printf('A=%s\\n', mat2str(LabMatlabValue().load('subject', 1, 'session', 'pre').data));"), env)
    assert second.returncode == 0, second.stdout + second.stderr
    assert "A=[7;8]" in second.stdout

    # cached: with the bridge command broken and no refresh due, loads read only local files
    offline = dict(env, SCISTACK_CLI="false", SCISTACK_LAB_REFRESH="3600")
    third = _run(octave, folder, (
        "scistack.internal.project(struct('root', pwd(), 'path', fullfile(pwd(), 'gait.duckdb'), "
        "'schema_keys', {{'subject', 'session'}})); scistack.internal.lab_refreshed(pwd(), true); "
        "d = LabMatlabValue().load('subject', 2, 'session', 's3'); "
        "printf('A=%s N=%d\\n', mat2str(LabMatlabValue().load('subject', 1, 'session', 'pre').data), d.data.n); "
        "try, LabMatlabValue().load('subject', 2, 'session', 's4'); catch e, printf('ERR=%s\\n', e.identifier); end"),
        offline)
    assert third.returncode == 0, third.stdout + third.stderr
    assert "A=[7;8] N=3" in third.stdout
    assert "ERR=scistack:labSync" in third.stdout  # s4 was never fetched: the fetch is refused clearly


def test_matlab_mirror_refuses_a_laptop_project(tmp_path):
    folder = tmp_path / "laptop"
    configure_database(folder / "gait.duckdb", ["subject"]).close()
    proc = subprocess.run([sys.executable, "-m", "scistack", "--db", str(folder), "matlab-mirror"],
                          capture_output=True, text=True, timeout=120, check=False)
    assert proc.returncode != 0
    assert "not a lab project" in proc.stderr
    assert json.loads((folder / ".scistack" / "config.json").read_text()).get("shared") is None


def test_the_mirror_copies_the_shared_journal_a_slice_at_a_time(tmp_path, pg_url, bucket_url, s3_env, monkeypatch):
    """`matlab-mirror` appends the shared journal's new lines in bounded slices (the first
    mirror of a 1M-ref journal read it whole), each line once, in `seq` order."""
    from scistack.matlab_bridge import lab as bridge

    monkeypatch.setattr(bridge, "_SLICE_BYTES", 300)  # one line a slice
    db = _open(tmp_path / "m", pg_url, bucket_url)
    for i in range(5):
        LabMatlabValue.save(float(i), subject=i, session="pre")
    mirror, added = bridge.mirror_journal(db)
    assert added == 5
    for i in range(3):
        LabMatlabValue.save(float(i) + 0.5, subject=i, session="post")
    assert bridge.mirror_journal(db)[1] == 3 and bridge.mirror_journal(db)[1] == 0
    lines = [json.loads(line) for line in mirror.read_bytes().splitlines()]
    assert lines == db.index.journal_tail(0)[0]
    assert [(e["addr"]["subject"], e["addr"]["session"]) for e in lines] == \
        [(i, "pre") for i in range(5)] + [(i, "post") for i in range(3)]
    db.close()
