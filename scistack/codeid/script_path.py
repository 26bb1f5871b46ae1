"""Where a function's script is, for whichever checkout of the project reads its call record.

A call record keeps the absolute path of the function's source file (`function.file`): the
path on the machine, and in the folder, that computed the value. A lab has one checkout of
the project per colleague (and a laptop project may be copied or moved), so that path names
someone else's file, or none. The record therefore also keeps the file's path relative to
the project's root folder (`function.project_file`) when the file is inside it, and a reader
resolves that against its own root first.
"""

from __future__ import annotations

import os
from typing import Any


def project_relative(path: str | None, root: str | os.PathLike | None) -> str | None:
    """`path` relative to the project folder `root`, with `/` separators, when it lies
    inside it (directly or through symlinks); None otherwise, or when either is unknown."""
    if not path or root is None:
        return None
    for resolve in (os.path.abspath, os.path.realpath):
        here, top = resolve(path), resolve(os.fspath(root))
        try:
            rel = os.path.relpath(here, top)
        except ValueError:  # (another drive, on Windows)
            continue
        parts = rel.split(os.sep)
        if rel != os.curdir and os.pardir not in parts:
            return "/".join(parts)
    return None


def script_path(function: Any, root: str | os.PathLike | None, projects: Any = ()) -> str | None:
    """The file to read a recorded function from, in this checkout: its `project_file`
    joined to `root` when the record has one (a plain relative path) and was made by this
    project (its `project` one of `projects`, the reader's `Database.project_ids`, or none
    recorded), else the absolute `file` recorded (records written before `project_file`
    existed, a script outside the project, no project root known here, or a record imported
    from another project: its `project_file` names that project's script, not this one's)."""
    return recorded_path(function.file, getattr(function, "project_file", None),
                         getattr(function, "project", None), root, projects)


def recorded_path(file: Any, rel: Any, made: Any, root: str | os.PathLike | None,
                  projects: Any = ()) -> Any:
    """`script_path` for one recorded file given apart: its absolute path `file`, its path
    `rel` relative to the project's folder, and `made`, the project that made the record (a
    MATLAB helper's `.m` file: its paths in the helper's entry, the project the function's)."""
    if rel and root is not None and (made is None or made in (projects or ())):
        here = in_checkout(rel, root)
        if here is not None:
            return here
    return file


def in_checkout(rel: Any, root: str | os.PathLike) -> str | None:
    """A recorded path relative to the project's folder (`project_file`, a file's
    `project_path`: `/`-separated) joined to this checkout's folder `root`; None when it is
    not a plain relative path (absolute, empty parts, `..`, a drive)."""
    if not isinstance(rel, str) or not rel:
        return None
    parts = rel.split("/")
    if rel.startswith("/") or "" in parts or os.pardir in parts or ":" in parts[0]:
        return None
    return os.path.join(os.fspath(root), *parts)
