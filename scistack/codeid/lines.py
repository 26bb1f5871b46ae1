"""Where a change is: lines of the normalised source mapped back to the file as it is now.

`why` diffs normalised sources (what identity hashes), whose line numbers count from the
function's first line of *re-printed* code. To point at the change in the user's file, the
normalised tree is printed and parsed again; its statements correspond one to one (same
order, same structure) to those of the tree located in the file, which still carry their
real line numbers. A diff hunk's new lines are mapped through that correspondence.
"""

from __future__ import annotations

import ast
import bisect
import functools
import os
import re
from types import FunctionType
from typing import Any

from scistack.codeid import _ast_normalise as norm
from scistack.codeid._graph import unwrap
from scistack.codeid._source import locate_class, locate_function
from scistack.codeid.files import content_stamp

_HUNK = re.compile(r"^@@ -\d+(?:,\d+)? \+(\d+)(?:,\d+)? @@")


def line_map(obj: Any, *, follow_wrapped: bool = True) -> tuple[str | None, dict[int, int]]:
    """(file, {normalised line: file line}) for a function or class; ({} when unknown).

    `follow_wrapped`: a decorated function's diff is of the function it wraps (as identity
    sees it); a wrapper met as a helper is its own code.
    """
    if type(obj).__name__ == "Skeleton":
        real = obj.cls
    elif follow_wrapped or not isinstance(obj, FunctionType):
        real = unwrap(obj)
    else:
        real = obj
    try:
        if isinstance(real, FunctionType):
            node, _ = locate_function(real)
            path: str | None = real.__code__.co_filename
            strip = True
        elif isinstance(real, type):
            node, _ = locate_class(real)
            import sys

            path = getattr(sys.modules.get(real.__module__), "__file__", None)
            strip = False
        else:
            return None, {}
        if node is None:
            return path, {}
        tree = norm.normalise(node, strip_decorators=strip)
        printed = ast.parse(norm.unparse(tree))
    except (SyntaxError, ValueError, TypeError, OSError):
        return None, {}
    first = printed.body[0] if printed.body else printed
    if isinstance(tree, ast.Lambda) and isinstance(first, ast.Expr):
        first = first.value
    ours = [n for n in ast.walk(first) if isinstance(n, (ast.stmt, ast.Lambda))]
    theirs = [n for n in ast.walk(tree) if isinstance(n, (ast.stmt, ast.Lambda))]
    if len(ours) != len(theirs):
        return path, {}
    mapping: dict[int, int] = {}
    for printed_node, file_node in zip(ours, theirs):
        mapping.setdefault(printed_node.lineno, file_node.lineno)
    return path, mapping


def changed_lines(diff: str, mapping: dict[int, int]) -> list[int]:
    """File lines of the new side's changed lines in a unified diff (sorted, distinct)."""
    if not mapping:
        return []
    keys = sorted(mapping)
    found: set[int] = set()
    new_line = 0
    for line in diff.splitlines():
        hunk = _HUNK.match(line)
        if hunk:
            new_line = int(hunk.group(1))
            continue
        if line.startswith(("+++", "---")):
            continue
        if line.startswith("+"):
            found.add(_nearest(keys, mapping, new_line))
            new_line += 1
        elif line.startswith("-"):
            found.add(_nearest(keys, mapping, max(new_line, 1)))  # a deletion: where it was
        else:
            new_line += 1
    return sorted(found)


def describe_location(path: str | None, lines: list[int]) -> str:
    """``pipeline.py, line 5`` / ``lines 5, 9`` (the path relative to the working directory)."""
    if not path or not lines:
        return ""
    try:
        shown = os.path.relpath(path)
        shown = path if shown.startswith("..") else shown
    except ValueError:
        shown = path
    word = "line" if len(lines) == 1 else "lines"
    return f"{shown}, {word} {', '.join(map(str, lines))}"


def _nearest(keys: list[int], mapping: dict[int, int], line: int) -> int:
    """The file line of the statement that starts at or before normalised `line`."""
    at = bisect.bisect_right(keys, line) - 1
    return mapping[keys[max(at, 0)]]


def assignment_place(dotted: str) -> str:
    """``pipeline.py, line 4`` for a module-level name (``pkg.mod.NAME``); "" when not found.

    The last top-level assignment to the name in its module's file as it is now, which is
    where an edited constant or module data value is.
    """
    import sys

    module_name, _, name = dotted.rpartition(".")
    module = sys.modules.get(module_name)
    path = getattr(module, "__file__", None)
    if not path or not name.isidentifier():
        return ""
    try:
        stamp = content_stamp(path)
    except (OSError, ValueError):
        return ""
    line = (_assignments(path) if stamp is None else _assignments_of(path, stamp)).get(name)
    return describe_location(path, [line]) if line else ""


@functools.lru_cache(maxsize=64)
def _assignments_of(path: str, stamp: tuple[int, int, int, int]) -> dict[str, int]:
    """`_assignments`, remembered per version of the file: its whole stat when that vouches
    for its content (`content_stamp`; keyed by the mtime alone, a same-size edit in the same
    timestamp tick, or a ``cp -p`` of another version, pointed at the old line)."""
    return _assignments(path)


def _assignments(path: str) -> dict[str, int]:
    """Top-level names assigned in a file -> line of the last assignment."""
    try:
        with open(path, encoding="utf-8") as handle:
            tree = ast.parse(handle.read())
    except (OSError, SyntaxError, UnicodeDecodeError, ValueError):
        return {}
    found: dict[str, int] = {}
    for stmt in tree.body:
        targets = stmt.targets if isinstance(stmt, ast.Assign) else (
            [stmt.target] if isinstance(stmt, (ast.AnnAssign, ast.AugAssign)) else []
        )
        for target in targets:
            for node in ast.walk(target):
                if isinstance(node, ast.Name):
                    found[node.id] = stmt.lineno
        if isinstance(stmt, (ast.With, ast.If, ast.Try)):  # CONFIG = json.load(f) inside a with
            for sub in ast.walk(stmt):
                if isinstance(sub, ast.Assign):
                    for target in sub.targets:
                        if isinstance(target, ast.Name):
                            found[target.id] = sub.lineno
    return found
