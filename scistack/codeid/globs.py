"""The folders a glob looks in without listing them (``codeid.files`` notes them as listed).

``pathlib.Path.glob`` (3.11, 3.12) and ``glob.glob`` test some names with ``is_dir``,
``exists`` or ``lexists``, which raise no audit event: the folder a pattern starts in when it
is absent (``Path(root).glob("extra/*.json")`` before extra/ exists), and every name that
follows a wildcard (``glob("*/meta.json")`` tests s1/meta.json in each matched s1, and never
lists s1). A result computed while such a name was missing (or present) was served after it
appeared (or went). Their events (``pathlib.Path.glob``/``rglob``, ``glob.glob/2``) name
the root and the pattern: the folders holding those names are listed here, so that the call
records them (a folder absent then is recorded absent).
"""

from __future__ import annotations

import fnmatch
import os


def glob_looks(event: str, args: tuple) -> list[str]:
    """The folders (or, for a pattern without wildcards, the path) whose listing says what
    the glob of audit event `event` found: where its first wildcard lists, and each folder a
    name after a wildcard is tested in. Nothing past a recursive ``**`` (the library lists
    every folder below it, with events). Empty when the arguments are not understood."""
    if event == "glob.glob/2":
        pattern, recursive, root_dir, dir_fd = (list(args) + [None] * 4)[:4]
        if dir_fd is not None:
            return []  # relative to a descriptor: no path to name
        root = os.fsdecode(root_dir) if isinstance(root_dir, (str, bytes, os.PathLike)) else ""
    else:  # pathlib.Path.glob/rglob: (self, pattern); "**" is always recursive there
        pattern, recursive = args[1] if len(args) > 1 else None, True
        root = os.fspath(args[0])
        if isinstance(pattern, os.PathLike):  # (a PurePath, from 3.13)
            pattern = os.fspath(pattern)
        if event == "pathlib.Path.rglob" and isinstance(pattern, str):
            pattern = "**/" + pattern
    if isinstance(pattern, bytes):
        pattern = os.fsdecode(pattern)
    if not isinstance(pattern, str) or not isinstance(root, str):
        return []
    if os.altsep:
        pattern = pattern.replace(os.altsep, os.sep)
    drive, rest = os.path.splitdrive(pattern)
    if os.path.isabs(pattern):
        root, rest = drive + os.sep, rest.lstrip(os.sep)
    names = [n for n in rest.split(os.sep) if n not in ("", ".")]
    return _looks(root, names, bool(recursive))


def _looks(root: str, names: list[str], recursive: bool) -> list[str]:
    literal = 0
    while literal < len(names) and not _magic(names[literal]):
        literal += 1
    first = os.path.join(root, *names[:literal]) if root or literal else "."
    looks = [first]  # the path looked for, or the folder the first wildcard lists
    folders = [first]
    for position in range(literal, len(names)):
        name, last = names[position], position == len(names) - 1
        if name == "**" and recursive:
            break
        if _magic(name):
            folders = [os.path.join(folder, entry) for folder in folders for entry in _entries(folder, last)
                       if fnmatch.fnmatch(entry, name)]
        else:
            looks.extend(folders)  # `name` is tested in each: their listings show it come or go
            folders = [p for p in (os.path.join(f, name) for f in folders) if os.path.isdir(p)]
        if not folders:
            break
    return looks


def _entries(folder: str, files_too: bool) -> list[str]:
    """The names in `folder` a wildcard may match (only folders unless it is the last name)."""
    try:
        with os.scandir(folder) as scan:
            return [e.name for e in scan if files_too or e.is_dir()]
    except OSError:
        return []


def _magic(name: str) -> bool:
    return "*" in name or "?" in name or "[" in name
