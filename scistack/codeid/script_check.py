"""Judge a function defined in a script's `__main__` from the script's text, without running it.

Most pipelines are scripts, and a script cannot be imported again to compare its code: that
would run the whole pipeline. So `why` (and `scistack status`) read the script file recorded
in the call record instead (this checkout's copy when it was inside the project: `script_path`).
The function, and every helper defined in the same file, is normalised exactly as identity
normalises it (docstrings, comments, formatting and its own decorators removed) and compared
with the code recorded when the value was computed; module constants are compared through
`ast.literal_eval`; helpers, classes, constants and data from importable modules (also
imported by name: `from config import GAIN`) by their identity, imported as they are now;
packages by version. A name bound inside a block (`if __name__ ==
"__main__": GAIN = 3.0`) cannot be told from the text (which binding ran?). Anything it
cannot judge makes it "unknown", saying what, so a value is never called current on a guess.
"""

from __future__ import annotations

import ast
import functools
import os
from pathlib import Path
from types import FunctionType
from typing import Any, NamedTuple

from scistack.codeid._packages import package_version, split_label
from scistack.codeid._ast_normalise import normalise, unparse
from scistack.codeid._data import data_digest
from scistack.codeid._values import encode_constant, value_digest
from scistack.codeid.codetree import short_repr
from scistack.codeid.files import content_stamp
from scistack.codeid.identity import _code_of, function_identity
from scistack.codeid.script_path import script_path
from scistack.records import CallRecord, HelperInfo

_DEFS = (ast.FunctionDef, ast.AsyncFunctionDef)


class _CannotTell(Exception):
    """Something the file alone cannot settle (a class, a computed constant...): says what."""


def script_changes(db: Any, call: CallRecord, diff: Any, reason: Any, find: Any) -> list | None:
    """Reasons the recorded `__main__` function differs from its script now (one reason of
    kind "unknown", saying what, when the file cannot settle it); None for a function that is
    not a script's.

    `diff(db, old_oid, new_source, name)`, `reason(kind, name, detail, diff)` and
    `find(module, name)` come from `provenance` (kept there so this module stays a leaf).
    """
    recorded = call.function
    path = script_path(recorded, getattr(db, "root", None),  # this checkout's copy of the script
                       getattr(db, "project_ids", ()))
    if recorded.module != "__main__" or not path:
        return None
    where = os.path.basename(path)

    def unknown(why: str) -> list:
        return [reason("unknown", recorded.name, f"judged from its script {where}: {why}; "
                       "running the script again recomputes it if it changed", "")]

    try:
        stamp = content_stamp(path)
    except (OSError, ValueError):  # (ValueError: a NUL in a damaged or crafted record's path)
        return unknown(f"{path!r} is not there" if "\0" in path else f"{path} is not there")
    parsed = _parse(path) if stamp is None else _parse_version(path, stamp)
    if parsed is None:
        return unknown("it cannot be read or parsed")
    defs, constants, literal_defaults, imports = parsed
    unknowns: list[str] = []

    def judged(step: Any, *args: Any) -> list:
        try:
            return step(*args)
        except _CannotTell as exc:
            unknowns.append(str(exc))
            return []

    reasons = judged(_code, db, recorded.code, defs, recorded.name, "code", where, diff, reason)
    deps = list(recorded.deps)
    for label, info in sorted(recorded.helpers.items()):
        deps += info.deps
        reasons += judged(_helper, db, label, info, defs, where, diff, reason, find)
    reasons += _leaves(deps, recorded.constants, constants, literal_defaults, imports, reason, find, unknowns)
    return reasons + (unknown(unknowns[0]) if unknowns else [])


def _code(db: Any, old_oid: str | None, defs: dict, name: str, kind: str, where: str, diff: Any,
          reason: Any) -> list:
    if "." in name:
        raise _CannotTell(f"{name} is a method or a nested function (only top-level ones are read from the file)")
    if name in defs and defs[name] is None:
        raise _CannotTell(f"{name} is defined inside a block (`if ...:`): which definition ran is not in the text")
    source = defs.get(name)
    if source is None:
        return [reason(kind, name, f"no longer defined in {where}", "")]
    text = diff(db, old_oid, source, name)
    if text is None:
        raise _CannotTell(f"the code recorded for {name} is not stored")
    return [reason(kind, name, f"its code changed in {where}", text)] if text else []


def _helper(db: Any, label: str, info: HelperInfo, defs: dict, where: str, diff: Any, reason: Any,
            find: Any) -> list:
    kind, _, dotted = label.partition(":")
    module, _, name = dotted.rpartition(".")
    if kind not in ("helper", "class"):
        raise _CannotTell(f"{dotted} is not read from the file")
    if name == "<lambda>" and module != "__main__":  # (no name to import it by)
        if _lambda_held(find(module, "__dict__"), module, info.identity):
            return []
        raise _CannotTell(f"a lambda of {module} is no longer found there as it was")
    if module == "__main__":
        if kind == "class":  # its normalisation keeps decorators: not redone from the file here
            raise _CannotTell(f"class {name} of the script is not judged from the file")
        return _code(db, info.code, defs, name, "helper", where, diff, reason)
    target = find(module, name)  # an importable module's function or class: identified as recorded
    if target is None:
        raise _CannotTell(f"{dotted} cannot be imported here")
    if function_identity(target).code_only != info.identity:  # (data it reads: a leaf below)
        return [reason(kind, dotted, "its code changed", "")]
    return []


def _lambda_held(names: Any, module: str, identity: str | None) -> bool:
    """Whether module `module` (its globals `names`) holds a lambda with code identity
    `identity`, bound to a name or inside a dict, list or tuple it binds (`OPS = {"x":
    lambda v: ...}`): one unchanged lambda the call reached. A changed one is not told apart
    from one held deeper: "unknown" then, never a guess."""
    if not isinstance(names, dict) or identity is None:
        return False
    todo: list[tuple[Any, int]] = [(value, 0) for value in names.values()]
    while todo:
        value, depth = todo.pop()
        if isinstance(value, FunctionType):
            if value.__name__ == "<lambda>" and value.__module__ == module \
                    and function_identity(value).code_only == identity:
                return True
        elif depth < 2 and isinstance(value, (dict, list, tuple)):
            todo += [(v, depth + 1) for v in (value.values() if isinstance(value, dict) else value)]
    return False


def _leaves(deps: list, recorded: dict[str, str], constants: dict[str, Any], literal_defaults: frozenset[str],
            imports: _Imports, reason: Any, find: Any, unknowns: list[str]) -> list:
    """What changed among the constants, data and packages read; what the file cannot settle
    goes to `unknowns`, and the rest is still compared (a change found is "stale" either way)."""
    reasons, seen = [], set()
    for label, value in deps:
        if label in seen:
            continue
        seen.add(label)
        try:
            reasons += _leaf(label, value, recorded, constants, literal_defaults, imports, reason, find)
        except _CannotTell as exc:
            unknowns.append(str(exc))
    return reasons


def _leaf(label: str, value: Any, recorded: dict[str, str], constants: dict[str, Any],
          literal_defaults: frozenset[str], imports: _Imports, reason: Any, find: Any) -> list:
    kind, _, dotted = label.partition(":")
    if kind == "pkg":  # labelled as identity labels it (the stdlib by Python's version)
        was, now = str(value), package_version(dotted)
        if split_label(was)[2].startswith("so-") and not split_label(now)[2].startswith("so-"):
            raise _CannotTell(f"the project's compiled extension behind {dotted} is not found "
                              "here (its folder is not on sys.path)")  # (not "changed": unknown)
        if not split_label(was)[2]:  # recorded before build digests: versions only
            now = now.partition(" build:")[0]
        if now != was:
            return [reason("package", dotted, f"changed: {was} -> {now}", "")]
    elif kind == "const" and ".<default>." in dotted:
        scope, _, source = dotted.rpartition(".<default>.")
        param, _, named = source.partition("=")
        if not named:
            module, _, function = scope.rpartition(".")
            if module != "__main__" or f"{function}.{param}" in literal_defaults:
                return []  # a literal: the function's text, compared above (a module's: its identity)
            raise _CannotTell(f"the default of {param} is computed when the script runs")  # (a call)
        if named not in constants or label not in recorded:
            raise _CannotTell(f"the default of {param} ({named}) is not a literal of the script")
        now = short_repr(constants[named])
        if now != recorded[label]:
            return [reason("constant", dotted, f"value changed: {recorded[label]} -> {now}", "")]
    elif kind == "data":
        module, _, name = dotted.rpartition(".")
        if module == "__main__" and name in constants:
            now = constants[name]
        else:  # a module's data, or data the script imported by name (`from config import GAINS`)
            now = _imported(module, name, imports, find, label)
        # a module's data may hold functions (a registry of lambdas): digested as identity does
        literal = module == "__main__" and name in constants
        if data_digest(now, _no_code if literal else _code_of) != value:
            was = recorded.get(label, "?")
            return [reason("data", dotted, f"module data changed: {was} -> {short_repr(now)}", "")]
    elif kind == "unverifiable":
        raise _CannotTell(f"{dotted} cannot be verified")
    elif kind == "const":
        module, _, name = dotted.rpartition(".")
        if module != "__main__" or name not in constants:  # an importable module's, as it is now
            now = _imported(module, name, imports, find, label)
            return _imported_constant(label, dotted, value, recorded, now, reason)
        if label not in recorded:
            raise _CannotTell(f"the value {name} had is not recorded")
        now = repr(constants[name])
        now = now if len(now) <= 80 else now[:79] + "…"
        if now != recorded[label]:
            return [reason("constant", dotted, f"value changed: {recorded[label]} -> {now}", "")]
    return []  # unchanged, or "mutable": state the function writes, not an input


class _Imports(NamedTuple):
    """What the script's top-level imports bind: `from config import GAIN as G` (G -> (config,
    GAIN)); the modules of its `from lab.helpers import *`, in order; and every name the
    script binds itself at the top level (a star import does not settle those)."""

    named: dict[str, tuple[str, str]]
    stars: tuple[str, ...]
    bound: frozenset[str]


# what `_parse` finds in a script: (functions, constants, literal defaults, imports)
_Parsed = tuple[dict[str, str], dict[str, Any], frozenset[str], _Imports]


def _imported(module: str, name: str, imports: _Imports, find: Any, label: str) -> Any:
    """The value now of a module's global, or of a name the script imported from a module
    (by name, or by a star import: the last of them whose module exports it)."""
    if module == "__main__":
        if name in imports.named:
            module, name = imports.named[name]
        else:
            module = _star_source(name, imports, find)
            if module is None:
                raise _CannotTell(f"{name} is not a literal of the script: its value is computed when it runs")
    value = find(module, name)
    if value is None:  # (not importable now; a None constant is not told apart: unknown, never a guess)
        raise _CannotTell(f"{module}.{name} cannot be imported here")
    return value


def _star_source(name: str, imports: _Imports, find: Any) -> str | None:
    """The module a star import took `name` from (None: bound otherwise, or by none of them)."""
    if name in imports.bound:
        return None
    for module in reversed(imports.stars):  # (a later star import rebinds the name)
        exported = find(module, "__all__")
        if (name in exported) if isinstance(exported, (list, tuple)) else not name.startswith("_"):
            if find(module, name) is not None:
                return module
    return None


def _imported_constant(label: str, dotted: str, digest: str, recorded: dict[str, str], value: Any,
                       reason: Any) -> list:
    """A constant of a module status can import (`helpers.SCALE`), digested as identity does."""
    encoded = None if value is None else encode_constant(value)
    if encoded is None:  # gone, or no longer a constant: the function's identity decides
        raise _CannotTell(f"{dotted} is no longer a constant")
    if value_digest(encoded) == digest:
        return []
    return [reason("constant", dotted, f"value changed: {recorded.get(label, '?')} -> {short_repr(value)}", "")]


def _no_code(value: object) -> str:
    """Literals hold no functions; reaching one means the text cannot settle it."""
    raise _CannotTell(f"module data holds {short_repr(value)}")


@functools.lru_cache(maxsize=32)
def _parse_version(path: str, stamp: tuple[int, int, int, int]) -> _Parsed | None:
    """`_parse`, remembered per version of the file: its whole stat when that vouches for its
    content (`content_stamp`; keyed by mtime and size alone, a same-size edit in the same
    timestamp tick, or a ``cp -p`` of another version, was judged from the old text)."""
    return _parse(path)


def _parse(path: str) -> _Parsed | None:
    """Normalised source of each top-level function (None for a name bound inside a block),
    literal constants, the parameters (`function.param`) whose default is a literal, and the
    names imported from modules (`_Imports`)."""
    try:
        tree = ast.parse(Path(path).read_text(encoding="utf-8"))
    except (OSError, SyntaxError, UnicodeDecodeError, ValueError):
        return None
    defs = {n.name: unparse(normalise(n, strip_decorators=True)) for n in tree.body if isinstance(n, _DEFS)}
    rebound = _bound_in_blocks(tree)  # `if __name__ == "__main__": GAIN = 3.0`: which one ran?
    defs.update(dict.fromkeys(rebound))  # (None: defined or bound in a block, not told from the text)
    constants = {k: v for k, v in _literal_constants(tree).items() if k not in rebound}
    named = {k: v for k, v in _imported_names(tree).items() if k not in rebound}
    stars = tuple(n.module for n in tree.body if isinstance(n, ast.ImportFrom) and n.level == 0 and n.module
                  and any(a.name == "*" for a in n.names))
    return defs, constants, _literal_defaults(tree), _Imports(named, stars, frozenset(_names_bound(tree.body)))


def _bound_in_blocks(tree: ast.Module) -> set[str]:
    """Module globals bound inside a top-level block (if, for, with, try...): the text alone
    cannot say which binding the run saw."""
    return _names_bound([n for n in tree.body if not isinstance(
        n, (*_DEFS, ast.ClassDef, ast.Assign, ast.AnnAssign, ast.AugAssign, ast.Import, ast.ImportFrom, ast.Expr))])


def _names_bound(nodes: list[ast.stmt]) -> set[str]:
    """The global names `nodes` bind (a function's or class's own name, not its body's)."""
    found: set[str] = set()
    todo: list[ast.AST] = list(nodes)
    while todo:
        node = todo.pop()
        if isinstance(node, (*_DEFS, ast.ClassDef)):
            found.add(node.name)
            continue  # (its body binds its own names)
        if isinstance(node, ast.Lambda):
            continue
        if isinstance(node, ast.Name) and isinstance(node.ctx, ast.Store):
            found.add(node.id)
        elif isinstance(node, (ast.Import, ast.ImportFrom)):
            found |= {a.asname or a.name.partition(".")[0] for a in node.names if a.name != "*"}
        todo += ast.iter_child_nodes(node)
    return found


def _imported_names(tree: ast.Module) -> dict[str, tuple[str, str]]:
    """Top-level `from module import name [as alias]` (absolute imports; the last one wins).
    A later assignment of the name shadows it: then the script alone cannot tell."""
    out: dict[str, tuple[str, str]] = {}
    for node in tree.body:
        if isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            for alias in node.names:
                if alias.name != "*":
                    out[alias.asname or alias.name] = (node.module, alias.name)
        elif isinstance(node, ast.Import):
            for alias in node.names:
                out.pop(alias.asname or alias.name.partition(".")[0], None)
        elif isinstance(node, (*_DEFS, ast.ClassDef)):
            out.pop(node.name, None)
        elif isinstance(node, (ast.Assign, ast.AnnAssign, ast.AugAssign)):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            for target in targets:
                for name in ast.walk(target):
                    if isinstance(name, ast.Name):
                        out.pop(name.id, None)
    return out


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
        elif isinstance(node, (ast.Import, ast.ImportFrom)):  # a later import rebinds the name
            for alias in node.names:
                out.pop(alias.asname or alias.name.partition(".")[0], None)
    return out
