"""The environment the MATLAB client's `scistack` command runs in keeps that command's
bytecode between its starts (the octave suite starts it ~130 times), outside the source tree."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import scistack.cli
from tests.helpers import octave_env

_CACHED_AS = "import importlib.util, sys; print(importlib.util.cache_from_source(sys.argv[1]))"


def test_the_command_keeps_its_bytecode_where_writing_it_is_turned_off(monkeypatch):
    monkeypatch.setenv("PYTHONDONTWRITEBYTECODE", "1")  # as in the CI's container
    env = octave_env()
    proc = subprocess.run([env["SCISTACK_CLI"], "--help"], env=env, capture_output=True, text=True,
                          timeout=120, check=False)
    assert proc.returncode == 0, proc.stderr
    source = scistack.cli.__file__
    cached = subprocess.run([sys.executable, "-c", _CACHED_AS, source], env=env, capture_output=True,
                            text=True, check=True).stdout.strip()
    assert Path(cached).is_file(), f"{source} was compiled again at every start (no {cached})"
    assert Path(cached).parent != Path(source).parent / "__pycache__"  # not in the source tree
