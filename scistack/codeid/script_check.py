"""Judge a function defined in a script's `__main__` from the script's text, without running it.

Most pipelines are scripts, and a script cannot be imported again to compare its code: that
would run the whole pipeline. So `why` (and `scistack status`) read the script file recorded
in the call record instead. The function, and every helper defined in the same file, is
normalised exactly as identity normalises it (docstrings, comments, formatting and its own
decorators removed) and compared with the code recorded when the value was computed;
module constants are compared through `ast.literal_eval`; helpers, classes and constants from
importable modules by their identity, imported as they are now; packages by version. Anything it cannot judge makes it give up (None), so a
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
from scistack.codeid._values import encode_constant, value_digest
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
    defs, constants, literal_defaults = parsed
    where = os.path.basename(path)
    try:
        reasons = _code(db, recorded.code, defs, recorded.name, "code", where, diff, reason)
        deps = list(recorded.deps)
        for label, info in sorted(recorded.helpers.items()):
            deps += info.deps
            reasons += _helper(db, label, info, defs, where, diff, reason, find)
        reasons += _leaves(deps, recorded.constants, constants, literal_defaults, reason, find)
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
    if kind not in ("helper", "class"):
        raise _CannotTell(label)
    if module == "__main__":
        if kind == "class":  # its normalisation keeps decorators: not redone from the file here
            raise _CannotTell(label)
        return _code(db, info.code, defs, name, "helper", where, diff, reason)
    target = find(module, name)  # an importable module's function or class: identified as recorded
    if target is None:
        raise _CannotTell(label)
    if function_identity(target).digest != info.identity:
        return [reason(kind, dotted, "its code changed", "")]
    return []


def _leaves(deps: list, recorded: dict[str, str], constants: dict[str, Any], literal_defaults: frozenset[str],
            reason: Any, find: Any) -> list:
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
            scope, _, source = dotted.rpartition(".<default>.")
            param, _, named = source.partition("=")
            if not named:
                module, _, function = scope.rpartition(".")
                if module != "__main__" or f"{function}.{param}" in literal_defaults:
                    continue  # a literal: the function's text, compared above (a module's: its identity)
                raise _CannotTell(label)  # `gain=helpers.default_gain()`: its value now is not in the text
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
            if module != "__main__":  # an importable module's constant: its value now, as recorded
                reasons += _imported_constant(label, dotted, value, recorded, find(module, name), reason)
                continue
            if name not in constants or label not in recorded:
                raise _CannotTell(label)
            now = repr(constants[name])
            now = now if len(now) <= 80 else now[:79] + "…"
            if now != recorded[label]:
                reasons.append(reason("constant", dotted, f"value changed: {recorded[label]} -> {now}", ""))
        elif kind == "mutable":
            continue
    return reasons


def _imported_constant(label: str, dotted: str, digest: str, recorded: dict[str, str], value: Any,
                       reason: Any) -> list:
    """A constant of a module status can import (`helpers.SCALE`), digested as identity does."""
    encoded = None if value is None else encode_constant(value)
    if encoded is None:  # gone, or no longer a constant: the function's identity decides
        raise _CannotTell(label)
    if value_digest(encoded) == digest:
        return []
    return [reason("constant", dotted, f"value changed: {recorded.get(label, '?')} -> {short_repr(value)}", "")]


def _no_code(value: object) -> str:
    """Literals hold no functions; reaching one means the text cannot settle it."""
    raise _CannotTell(repr(value))


@functools.lru_cache(maxsize=32)
def _parse(path: str, mtime_ns: int, size: int) -> tuple[dict[str, str], dict[str, Any], frozenset[str]] | None:
    """Normalised source of each top-level function, literal constants, and the parameters
    (`function.param`) whose default is a literal (cached per version of the file)."""
    try:
        tree = ast.parse(Path(path).read_text(encoding="utf-8"))
    except (OSError, SyntaxError, UnicodeDecodeError, ValueError):
        return None
    defs = {n.name: unparse(normalise(n, strip_decorators=True)) for n in tree.body if isinstance(n, _DEFS)}
    return defs, _literal_constants(tree), _literal_defaults(tree)


def _literal_defaults(tree: ast.Module) -> frozenset[str]:
    """`function.param` for each default of a top-level function that is a literal."""
    out = set()
    for node in tree.body:
        if isinstance(node, _DEFS):
            args = node.args
            positional = [*args.posonlyargs, *args.args][len(args.posonlyargs) + len(args.args) - len(args.defaults):]
            pairs = [*zip(positional, args.defaults), *zip(args.kwonlyargs, args.kw_defaults)]
            out |= {f"{node.name}.{arg.arg}" for arg, default in pairs if default is not None and _is_literal(default)}
    return frozenset(out)


def _is_literal(node: ast.expr) -> bool:
    try:
        ast.literal_eval(node)
    except (ValueError, TypeError, SyntaxError, MemoryError, RecursionError):
        return False
    return True


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
