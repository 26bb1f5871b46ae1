"""The environment of a computation: where, by what code and with which packages it ran.

It goes into the call record (never into the call key: the same code on the same inputs is
the same result on any machine). Git state costs a few subprocess calls (~2-4 ms each), so it
is kept for at most `_TTL` seconds, and re-read sooner when the function's source files, the
git index or HEAD change; the uncommitted diff, when there is one, is stored as an object so
`scistack show` can print exactly what was running.
"""

from __future__ import annotations

import getpass
import os
import platform
import socket
import subprocess
import sys
import time
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

from scistack.codeid.files import stat_stamp

_TTL = 10.0


@dataclass(frozen=True, slots=True)
class _GitSnapshot:
    taken: float
    watched: tuple[str, ...]  # paths whose stats must not change: sources, index, HEAD, ref
    signature: tuple
    state: dict[str, Any]
    diff: bytes


_git_cache: dict[tuple[str, tuple[str, ...]], _GitSnapshot] = {}


def capture_env(
    source_file: str | None,
    modules: list[str],
    put_diff: Callable[[bytes], str],
    *,
    files: Sequence[str] = (),
) -> dict[str, Any]:
    """The environment record for a call whose function lives in `source_file`.

    `files` are the source files of the function and its helpers: the git state is re-read
    when one of them (or the repository's index or HEAD) changed, and any that git does not
    track are listed as ``untracked`` (and make the state dirty: the commit lacks them).

    The record is built once per git snapshot and modules and shared by the calls that follow
    (a run records one per call; building it took ~17 us of a call record's ~90): never
    change it. A diff is put in `put_diff`'s store at every call, which may be another store.
    """
    directory = (os.path.dirname(source_file) or ".") if source_file else os.getcwd()
    files = tuple(sorted({*files, *([source_file] if source_file else [])}))
    snapshot = _git_snapshot(directory, files)
    slot = (tuple(modules), directory, files)
    memo = _env_memo.get(slot)
    if memo is None or memo[0] is not snapshot:
        env: dict[str, Any] = {
            "python": platform.python_version(),
            "host": _host(),
            "user": _user(),
            "platform": sys.platform,
            "packages": {m: v for m in sorted(set(modules)) if (v := _version_of(m))},
        }
        if snapshot.state:
            env["git"] = dict(snapshot.state)
        if len(_env_memo) >= 1024:
            _env_memo.clear()
        memo = _env_memo[slot] = (snapshot, env)
    env = memo[1]
    if snapshot.diff and "git" in env:
        env = {**env, "git": {**env["git"], "diff": put_diff(snapshot.diff)}}
    return env


_env_memo: dict[tuple, tuple[_GitSnapshot, dict[str, Any]]] = {}


def _git_snapshot(directory: str, files: tuple[str, ...]) -> _GitSnapshot:
    """Commit, dirty flag, untracked source files and diff; the same snapshot (object) while
    nothing changed.

    Hazard: the cache is checked against the files of this function, the index and HEAD
    only, so an edit to some *other* tracked file within `_TTL` seconds of the last look
    can be missing from the recorded diff (reading git on every call would cost ~10 ms).
    """
    slot = (directory, files)
    cached = _git_cache.get(slot)
    now = time.monotonic()
    if cached and now - cached.taken < _TTL and cached.signature == _signature(cached.watched):
        return cached
    state: dict[str, Any] = {}
    diff, git_dir = b"", None
    head = _git(directory, "rev-parse", "--absolute-git-dir", "--show-toplevel", "HEAD")
    lines = head.decode(errors="replace").split("\n") if head else []
    if len(lines) >= 3:
        git_dir, top, commit = lines[0], lines[1], lines[2].strip()
        status = _git(directory, "status", "--porcelain", "--untracked-files=no") or b""
        untracked = _untracked(directory, top, files)
        state = {"commit": commit, "dirty": bool(status.strip()) or bool(untracked)}
        if untracked:
            state["untracked"] = untracked
        if status.strip():
            diff = _git(directory, "diff", "HEAD") or b""
    watched = _watched(git_dir, files)
    snapshot = _git_cache[slot] = _GitSnapshot(now, watched, _signature(watched), state, diff)
    return snapshot


def _untracked(directory: str, top: str, files: tuple[str, ...]) -> list[str]:
    """Which of `files` (inside the repository at `top`) git does not track, relative to `top`."""
    top_real = os.path.realpath(top)
    inside = [f for f in files if os.path.isfile(f) and _within(os.path.realpath(f), top_real)]
    if not inside:
        return []
    listed = _git(
        top, "ls-files", "-z", "--full-name", "--", *[os.path.realpath(f) for f in inside]
    )
    tracked = set((listed or b"").decode(errors="replace").split("\0"))
    rel = [os.path.relpath(os.path.realpath(f), top_real).replace(os.sep, "/") for f in inside]
    return sorted(r for r in rel if r not in tracked)


def _within(path: str, root: str) -> bool:
    try:
        return os.path.commonpath([path, root]) == root
    except ValueError:
        return False


def _watched(git_dir: str | None, files: tuple[str, ...]) -> tuple[str, ...]:
    """The paths whose change invalidates a git snapshot: sources, index, HEAD and its ref."""
    paths = list(files)
    if git_dir:
        paths += [
            os.path.join(git_dir, "index"),
            os.path.join(git_dir, "HEAD"),
            os.path.join(git_dir, "packed-refs"),
        ]
        try:
            with open(os.path.join(git_dir, "HEAD"), encoding="utf-8", errors="replace") as handle:
                ref = handle.read().strip()
            if ref.startswith("ref: "):  # a branch switch rewrites HEAD, so this path stays right
                paths.append(os.path.join(git_dir, ref[5:]))
        except OSError:
            pass
    return tuple(paths)


def _signature(paths: tuple[str, ...]) -> tuple:
    return tuple(_stat(p) for p in paths)


def _stat(path: str) -> tuple[int, int, int, int] | None:
    """The whole stat, as git's index keeps it: by mtime and size alone, a source file restored
    by ``cp -p`` or ``touch -r`` (another version of the same size, the old mtime) kept the old
    snapshot's diff for `_TTL`; the ctime, which no copy can set, shows it. (A same-size
    rewrite in the stat's own timestamp tick is not seen: the record's diff, no result, may then
    be up to `_TTL` old, as for an edit of a tracked file not watched; trusting no racy stat,
    as `files.content_stamp` does, would run git at every call for 2 s after each save.)"""
    try:
        st = os.stat(path)
    except OSError:
        return None
    return stat_stamp(st)


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
    # (imported here, not at scistack's import: ~10 ms; and before the try, whose except names
    # it: a Ctrl-C inside the import had surfaced as an UnboundLocalError)
    from importlib.metadata import PackageNotFoundError
    from importlib.metadata import version as dist_version

    try:  # distribution metadata first: some packages deprecate `__version__` (click)
        return dist_version(top)
    except (PackageNotFoundError, ValueError):
        pass
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        version = getattr(sys.modules.get(top), "__version__", None)
    return version if isinstance(version, str) else None


def imported_modules(module_name: str) -> list[str]:
    """Top-level third-party modules a function's module has imported (for package versions)."""
    module = sys.modules.get(module_name)
    if module is None:
        return []
    slot = (module_name, id(module), len(vars(module)))  # new imports add globals
    known = _imports_memo.get(slot)
    if known is None:
        known = _imports_memo[slot] = _imported_modules(module, module_name)
    return known


_imports_memo: dict[tuple[str, int, int], list[str]] = {}


def _imported_modules(module: Any, module_name: str) -> list[str]:
    names = set()
    for value in vars(module).values():
        owner = (
            getattr(value, "__module__", None)
            if not isinstance(value, type(sys))
            else value.__name__
        )
        if isinstance(owner, str):
            top = owner.split(".")[0]
            if top not in sys.stdlib_module_names and top not in (
                "builtins",
                "__main__",
                module_name.split(".")[0],
            ):
                names.add(top)
    return sorted(names)
