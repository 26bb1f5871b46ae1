"""MATLAB saves called as statements are queued on disk: an Octave killed right after its
saves returned loses none of them; `scistack ingest <project>/.scistack/queue` (what the next
MATLAB flush runs) records them in save order, readable from Python."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from scistack.database import Database

MATLAB_TESTS = Path(__file__).resolve().parents[2] / "matlab" / "tests"


def _require(tool: str) -> str:
    path = shutil.which(tool)
    if path is None:  # as in test_octave.py: a failure in CI, where make test installs it
        if os.environ.get("CI"):
            pytest.fail(f"{tool} is not installed; CI must run the MATLAB client tests")
        pytest.skip(f"{tool} is not installed (make octave installs it)")
    return path


def scistack_cli() -> str:
    return str(Path(sys.executable).with_name("scistack.exe" if os.name == "nt" else "scistack"))


def test_saves_survive_a_kill_after_they_returned(tmp_path: Path):
    octave = _require("octave-cli")
    project = tmp_path / "p"
    script = (
        "addpath('..'); addpath('vars'); "
        f"scistack.configure_database('{project / 'gait.duckdb'}', {{'subject', 'session'}}); "
        "for k = 1:5, SavedValue().save([k; k + 1], 'subject', k, 'session', 'pre'); end; "
        "SavedValue().save(99, 'subject', 1, 'session', 'pre'); "
        "kill(getpid(), 9);"
    )
    env = dict(os.environ, SCISTACK_CLI=scistack_cli(), SCISTACK_PYTHON=sys.executable)
    env.pop("SCISTACK_DB", None)
    proc = subprocess.run([octave, "--no-gui", "--no-init-file", "--quiet", "--eval", script],
                          cwd=MATLAB_TESTS, env=env, capture_output=True, text=True, timeout=120,
                          stdin=subprocess.DEVNULL, check=False)
    assert proc.returncode != 0, "octave should have been killed"
    queue = project / ".scistack" / "queue"
    assert len([p for p in queue.iterdir() if (p / "manifest.json").is_file()]) == 6
    ingest = subprocess.run([scistack_cli(), "--db", str(project), "ingest", str(queue)],
                            capture_output=True, text=True, env=env, timeout=120, check=False)
    assert ingest.returncode == 0, ingest.stderr
    assert len(ingest.stdout.split()) == 6
    assert not any(queue.iterdir())
    with Database(project / "gait.duckdb") as db:
        db.index.refresh()
        latest: dict = {}
        for r in db.index.records("SavedValue"):
            if r.addr["subject"] not in latest or r.version > latest[r.addr["subject"]].version:
                latest[r.addr["subject"]] = r
        assert np.array_equal(db.store.get_value(latest[3].oid), [3.0, 4.0])
        assert db.store.get_value(latest[1].oid) == 99  # the later save is the newer version
        assert latest[1].version == 2
