"""Shared fixtures: a real project (DuckDB file + object store) in a temporary directory."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

import scistack.database as database_module

SCHEMA = ["subject", "session"]


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
