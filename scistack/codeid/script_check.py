"""Judge a function defined in a script's `__main__` from the script's text, without running it.

Most pipelines are scripts, and a script cannot be imported again to compare its code: that
would run the whole pipeline. So `why` (and `scistack status`) read the script file recorded
in the call record instead. The function, and every helper defined in the same file, is
normalised exactly as identity normalises it (docstrings, comments, formatting and its own
decorators removed) and compared with the code recorded when the value was computed;
module constants are compared through `ast.literal_eval`; helpers from importable modules by
their identity; packages by version. Anything it cannot judge makes it give up (None), so a
value is never called current on a guess.
"""

from __future__ import annotations

import ast
import functools
import os
from pathlib import Path
from typing import Any

from scistack.codeid._packages import package_version, split_label
from scistack.codeid._ast_normalise import normalise, unparse
from scistack.codeid._data import data_digest
from scistack.codeid.codetree import short_repr
from scistack.codeid.identity import function_identity
from scistack.records import CallRecord, HelperInfo

_DEFS = (ast.FunctionDef, ast.AsyncFunctionDef)


class _CannotTell(Exception):
    """Something the file alone cannot settle (a class, a computed constant...)."""


def script_changes(db: Any, call: CallRecord, diff: Any, reason: Any, find: Any) -> list | None:
    """Reasons the recorded `__main__` function differs from its script now; None: cannot tell.

    `diff(db, old_oid, new_source, name)`, `reason(kind, name, detail, diff)` and
    `find(module, name)` come from `provenance` (kept there so this module stays a leaf).
    """
    recorded = call.function
    path = recorded.file
    if recorded.module != "__main__" or not path:
        return None
    try:
        stat = os.stat(path)
    except OSError:
        return None
    parsed = _parse(path, stat.st_mtime_ns, stat.st_size)
    if parsed is None:
        return None
    defs, constants = parsed
    where = os.path.basename(path)
    try:
        reasons = _code(db, recorded.code, defs, recorded.name, "code", where, diff, reason)
        deps = list(recorded.deps)
        for label, info in sorted(recorded.helpers.items()):
            deps += info.deps
            reasons += _helper(db, label, info, defs, where, diff, reason, find)
        reasons += _leaves(deps, recorded.constants, constants, reason)
    except _CannotTell:
        return None
    return reasons


def _code(db: Any, old_oid: str | None, defs: dict, name: str, kind: str, where: str, diff: Any,
          reason: Any) -> list:
    if "." in name:
        raise _CannotTell(name)  # a method or nested function: not a top-level def
    source = defs.get(name)
    if source is None:
        return [reason(kind, name, f"no longer defined in {where}", "")]
    text = diff(db, old_oid, source, name)
    if text is None:
        raise _CannotTell(name)
    return [reason(kind, name, f"its code changed in {where}", text)] if text else []


def _helper(db: Any, label: str, info: HelperInfo, defs: dict, where: str, diff: Any, reason: Any,
            find: Any) -> list:
    kind, _, dotted = label.partition(":")
    module, _, name = dotted.rpartition(".")
    if kind != "helper":
        raise _CannotTell(label)  # classes: their normalisation keeps decorators, not redone here
    if module == "__main__":
        return _code(db, info.code, defs, name, "helper", where, diff, reason)
    target = find(module, name)
    if target is None:
        raise _CannotTell(label)
    if function_identity(target).digest != info.identity:
        return [reason("helper", dotted, "its code changed", "")]
    return []


def _leaves(deps: list, recorded: dict[str, str], constants: dict[str, Any], reason: Any) -> list:
    reasons, seen = [], set()
    for label, value in deps:
        if label in seen:
            continue
        seen.add(label)
        kind, _, dotted = label.partition(":")
        if kind == "pkg":  # labelled as identity labels it (the stdlib by Python's version)
            was, now = str(value), package_version(dotted)
            if not split_label(was)[2]:  # recorded before build digests: versions only
                now = now.partition(" build:")[0]
            if now != was:
                reasons.append(reason("package", dotted, f"changed: {was} -> {now}", ""))
        elif kind == "const" and ".<default>." in dotted:
            _, _, source = dotted.rpartition(".<default>.")
            param, _, named = source.partition("=")
            if not named:
                continue  # a literal default: part of the function's text, compared above
            if named not in constants or label not in recorded:
                raise _CannotTell(label)
            now = short_repr(constants[named])
            if now != recorded[label]:
                reasons.append(reason("constant", dotted, f"value changed: {recorded[label]} -> {now}", ""))
        elif kind == "data":
            module, _, name = dotted.rpartition(".")
            if module != "__main__" or name not in constants:
                raise _CannotTell(label)
            if data_digest(constants[name], _no_code) != value:
                was, now = recorded.get(label, "?"), short_repr(constants[name])
                reasons.append(reason("data", dotted, f"module data changed: {was} -> {now}", ""))
        elif kind == "unverifiable":
            raise _CannotTell(label)
        elif kind == "const":
            module, _, name = dotted.rpartition(".")
            if module != "__main__" or name not in constants or label not in recorded:
                raise _CannotTell(label)
            now = repr(constants[name])
            now = now if len(now) <= 80 else now[:79] + "…"
            if now != recorded[label]:
                reasons.append(reason("constant", dotted, f"value changed: {recorded[label]} -> {now}", ""))
        elif kind == "mutable":
            continue
    return reasons


def _no_code(value: object) -> str:
    """Literals hold no functions; reaching one means the text cannot settle it."""
    raise _CannotTell(repr(value))


@functools.lru_cache(maxsize=32)
def _parse(path: str, mtime_ns: int, size: int) -> tuple[dict[str, str], dict[str, Any]] | None:
    """Normalised source of each top-level function, and literal constants (cached per version)."""
    try:
        tree = ast.parse(Path(path).read_text(encoding="utf-8"))
    except (OSError, SyntaxError, UnicodeDecodeError, ValueError):
        return None
    defs = {n.name: unparse(normalise(n, strip_decorators=True)) for n in tree.body if isinstance(n, _DEFS)}
    return defs, _literal_constants(tree)


def _literal_constants(tree: ast.Module) -> dict[str, Any]:
    """Top-level `NAME = <literal>` assignments (the last one wins, as at run time)."""
    out: dict[str, Any] = {}
    for node in tree.body:
        if isinstance(node, ast.Assign) and len(node.targets) == 1 and isinstance(node.targets[0], ast.Name):
            try:
                out[node.targets[0].id] = ast.literal_eval(node.value)
            except (ValueError, TypeError, SyntaxError, MemoryError, RecursionError):
                out.pop(node.targets[0].id, None)
    return out
