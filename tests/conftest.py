"""Shared fixtures: a real project (DuckDB file + object store) in a temporary directory."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

import scistack.database as database_module

SCHEMA = ["subject", "session"]

# Under pytest-xdist (`make test`: `-n auto --dist loadfile --no-loadscope-reorder`) a file's
# tests run on one worker (a module-scoped fixture is set up once), the files in the order the
# workers collected them: these, whose tests take longest, are moved to the front so that none
# of them is the run's tail. The Octave suite's fixture runs the whole MATLAB suite (~110 s)
# before its first test.
START_FIRST = ("tests/matlab/test_octave.py",)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """On an xdist worker, the files of START_FIRST first (every worker computes the same order
    from the same collection). A serial run is left as collected."""
    if not hasattr(config, "workerinput"):
        return

    def first(item: pytest.Item) -> int:
        path = item.nodeid.split("::", 1)[0]
        return START_FIRST.index(path) if path in START_FIRST else len(START_FIRST)

    items.sort(key=first)  # (stable: the rest keep their order)


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """A fresh project at tmp_path/gait.duckdb, current for BaseVariable; closed afterwards."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("SCISTACK_DB", raising=False)
    db = database_module.configure_database(tmp_path / "gait.duckdb", SCHEMA)
    yield db
    db.close()
    database_module._current = None


@pytest.fixture
def no_database():
    """Make sure no database is current (lineage in memory)."""
    previous = database_module._current
    database_module._current = None
    yield
    database_module._current = previous


@pytest.fixture
def python_env(tmp_path: Path) -> dict[str, str]:
    """Environment for subprocesses that import scistack from this checkout."""
    root = Path(__file__).resolve().parents[1]
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(root), env.get("PYTHONPATH", "")])
    env.pop("SCISTACK_DB", None)
    return env


PYTHON = sys.executable
