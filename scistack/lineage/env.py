"""The environment of a computation: where, by what code and with which packages it ran.

It goes into the call record (never into the call key: the same code on the same inputs is
the same result on any machine). Git state costs a few subprocess calls, so it is captured
at most once every `_TTL` seconds per directory; the uncommitted diff, when there is one, is
stored as an object so `scistack show` can print exactly what was running.
"""

from __future__ import annotations

import getpass
import os
import platform
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from functools import lru_cache
from pathlib import Path
from typing import Any

_TTL = 10.0
_git_cache: dict[str, tuple[float, dict[str, Any], bytes]] = {}


def capture_env(source_file: str | None, modules: list[str], put_diff: Callable[[bytes], str]) -> dict[str, Any]:
    """The environment record for a call whose function lives in `source_file`."""
    env: dict[str, Any] = {
        "python": platform.python_version(),
        "host": _host(),
        "user": _user(),
        "platform": sys.platform,
        "packages": {m: v for m in sorted(set(modules)) if (v := _version_of(m))},
    }
    git, diff = _git_state(str(Path(source_file).parent) if source_file else os.getcwd())
    if git:
        env["git"] = dict(git)
        if diff:
            env["git"]["diff"] = put_diff(diff)
    return env


def _git_state(directory: str) -> tuple[dict[str, Any], bytes]:
    now = time.monotonic()
    cached = _git_cache.get(directory)
    if cached and now - cached[0] < _TTL:
        return cached[1], cached[2]
    state: dict[str, Any] = {}
    diff = b""
    commit = _git(directory, "rev-parse", "HEAD")
    if commit is not None:
        status = _git(directory, "status", "--porcelain", "--untracked-files=no") or b""
        state = {"commit": commit.decode().strip(), "dirty": bool(status.strip())}
        if state["dirty"]:
            diff = _git(directory, "diff", "HEAD") or b""
    _git_cache[directory] = (now, state, diff)
    return state, diff


def _git(directory: str, *args: str) -> bytes | None:
    try:
        done = subprocess.run(["git", *args], cwd=directory, capture_output=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return None
    return done.stdout if done.returncode == 0 else None


@lru_cache(maxsize=None)
def _host() -> str:
    return socket.gethostname()


@lru_cache(maxsize=None)
def _user() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return "unknown"


@lru_cache(maxsize=None)
def _version_of(module: str) -> str | None:
    top = module.split(".")[0]
    mod = sys.modules.get(top)
    version = getattr(mod, "__version__", None)
    if isinstance(version, str):
        return version
    try:
        from importlib.metadata import PackageNotFoundError, version as dist_version
        return dist_version(top)
    except (PackageNotFoundError, ValueError):
        return None


def imported_modules(module_name: str) -> list[str]:
    """Top-level third-party modules a function's module has imported (for package versions)."""
    module = sys.modules.get(module_name)
    if module is None:
        return []
    names = set()
    for value in vars(module).values():
        owner = getattr(value, "__module__", None) if not isinstance(value, type(sys)) else value.__name__
        if isinstance(owner, str):
            top = owner.split(".")[0]
            if top not in sys.stdlib_module_names and top not in ("builtins", "__main__", module_name.split(".")[0]):
                names.add(top)
    return sorted(names)
