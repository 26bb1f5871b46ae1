"""Find the syntax tree of a live function or class, and prove it is the code that runs.

``inspect.getsource`` reads the file *as it is on disk now*. If the user edited the file
after importing it (a notebook that forgot ``importlib.reload``), the text no longer matches
the code that runs, and hashing it would file results of the old code under the identity
of the new code: a stale cache hit later, in a fresh process. So we parse and *compile* the
whole file (cached per file text), find the definition by name and first line (which
includes decorator lines), and accept it only if the freshly compiled code object matches
the running one (bytecode, names, constants, recursively). A class's code object is not kept
after it is made, so a class is accepted when its methods' code matches and its bases and
literal attributes (``K = 2``) as written are those of the live class. Otherwise the caller
falls back to identifying the code by its bytecode (a class: also its bases in memory),
which can only cost a recompute.

Lambdas: the definition is the Lambda node on ``co_firstlineno``. Two or more lambdas on one
line cannot be told apart cheaply, so such a lambda is identified by its bytecode
(``co_code`` + constants, recursively) instead. Code whose text lives only in ``linecache``
(IPython cells) cannot go stale; if it does not parse as a whole (cell magics), the
definition is read with ``inspect.getsource`` instead, unverified.
"""

from __future__ import annotations

import ast
import builtins
import enum
import functools
import importlib.util
import inspect
import linecache
import os
import sys
import textwrap
import typing
from collections.abc import Iterator
from dataclasses import dataclass
from types import CodeType, FunctionType, ModuleType

import blake3

from scistack.codeid._values import encode_constant

_DEF_TYPES = (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)
_NodeKey = tuple[str, int]  # (name, first line including decorators)
_LITERAL_TYPES = (  # what ast.literal_eval gives
    bool, int, float, complex, str, bytes, type(None), tuple, list, dict, set, frozenset,
)
_UNKNOWN = object()


@dataclass(frozen=True, slots=True)
class _ParsedFile:
    """One version of a source file: its defs and compiled code objects by (name, line)."""

    defs: dict[_NodeKey, list[ast.AST]]
    codes: dict[_NodeKey, list[CodeType]]
    tree: ast.Module


def locate_function(fn: FunctionType) -> tuple[ast.AST | None, str]:
    """The verified FunctionDef/Lambda node of `fn`, or None and the reason why not."""
    code = fn.__code__
    parsed = _parse(code.co_filename, fn.__globals__)
    if parsed is None:
        if not linecache.getlines(code.co_filename):
            return None, "no source"
        if os.path.isfile(code.co_filename):
            return None, "its file does not parse now"
        return _unverified(fn)  # in-memory source (IPython cell) with magics
    nodes = parsed.defs.get((code.co_name, code.co_firstlineno), [])
    if len(nodes) != 1:
        what = "several lambdas share its line" if len(nodes) > 1 else "not found in its file"
        return None, f"definition {what}"
    if not _matches(parsed, code):
        return None, "its file was edited after import (reload the module)"
    return nodes[0], ""


def locate_class(cls: type) -> tuple[ast.ClassDef | None, str]:
    """The verified ClassDef node of `cls`, or None and the reason why not."""
    methods = own_methods(cls)
    filename = _module_file(cls) or next(
        iter(sorted({fn.__code__.co_filename for fn in methods})), None
    )
    methods = [fn for fn in methods if fn.__code__.co_filename == filename]
    parsed = _parse(filename, methods[0].__globals__ if methods else None) if filename else None
    if parsed is None:
        return None, "no source"
    lines = [fn.__code__.co_firstlineno for fn in methods]
    candidates = [
        node
        for node in _find_qualname(parsed.tree, cls.__qualname__.split("."))
        if all(node.lineno <= line <= (node.end_lineno or 0) for line in lines)
    ]
    if len(candidates) != 1:
        return None, "definition not found in its file"
    if not all(_matches(parsed, fn.__code__) for fn in methods) or not _class_matches(
        candidates[0], cls
    ):
        return None, "its file was edited after import (reload the module)"
    return candidates[0], ""


def _class_matches(node: ast.ClassDef, cls: type) -> bool:
    """False when the text gives `cls` other bases or literal class attributes than it has.

    Methods' code says nothing about ``K = 2`` edited to ``K = 3``, or ``class Sc(A)`` to
    ``class Sc(B)``. What cannot be checked without running the text (computed values,
    assignments inside ``if``, a subscript's arguments) passes.
    """
    local = "<locals>" in cls.__qualname__  # its bases may be the enclosing function's locals
    module = sys.modules.get(cls.__module__)
    namespace = vars(module) if module is not None and not local else {}
    return _bases_match(node, cls, namespace) and _attributes_match(node, cls)


def _bases_match(node: ast.ClassDef, cls: type, namespace: dict) -> bool:
    """As many bases as written, and each written (dotted) name is the live base now."""
    if any(isinstance(base, ast.Starred) for base in node.bases):
        return True
    live = vars(cls).get("__orig_bases__", cls.__bases__)  # Generic[T], NamedTuple as written
    if not node.bases:
        return live == (object,)
    if len(node.bases) != len(live):
        return False
    for written, base in zip(node.bases, live):
        named = written.value if isinstance(written, ast.Subscript) else written
        found = _bound_now(named, namespace) if namespace else _UNKNOWN
        if found is not _UNKNOWN and found is not base and found is not typing.get_origin(base):
            return False
    return True


def _attributes_match(node: ast.ClassDef, cls: type) -> bool:
    """Literal class attributes written are the live ones, and no live one has been removed."""
    bound = _bound_in_class_body(node)
    nested = {stmt.name: stmt for stmt in node.body if isinstance(stmt, ast.ClassDef)}
    for name, value in vars(cls).items():
        if isinstance(value, type) and value.__qualname__ == f"{cls.__qualname__}.{name}":
            if name in nested and not _class_matches(nested[name], value):
                return False
        elif type(value) in _LITERAL_TYPES and not name.startswith("_") and name not in bound:
            return False
    for name, written in _literal_assignments(node).items():
        live = next((vars(k)[name] for k in cls.__mro__ if name in vars(k)), _UNKNOWN)
        if live is _UNKNOWN and type(cls) is type:  # (a metaclass may take it, as pydantic's)
            return False
        live = live.value if isinstance(live, enum.Enum) else live
        if type(live) in _LITERAL_TYPES and not _same_value(written, live):
            return False
    return True


def body_assignments(body: list[ast.stmt]) -> Iterator[tuple[list[ast.expr], ast.expr]]:
    """(targets, value) of each ``K = v`` / ``k: int = v`` statement of a class body."""
    for stmt in body:
        if isinstance(stmt, ast.Assign):
            yield stmt.targets, stmt.value
        elif isinstance(stmt, ast.AnnAssign) and stmt.value is not None:
            yield [stmt.target], stmt.value


def _literal_assignments(node: ast.ClassDef) -> dict[str, object]:
    """``K = 3`` / ``k: int = 3`` statements of the class body with a literal value."""
    found: dict[str, object] = {}
    for targets, value in body_assignments(node.body):
        try:
            literal = ast.literal_eval(value)
        except (ValueError, TypeError, SyntaxError, MemoryError, RecursionError):
            continue
        found.update((target.id, literal) for target in targets if isinstance(target, ast.Name))
    return found


def _bound_in_class_body(node: ast.ClassDef) -> set[str]:
    """Every name the class body binds (assignments, imports, defs), not inside nested scopes."""
    names: set[str] = set()
    pending: list[ast.AST] = list(node.body)
    while pending:
        sub = pending.pop()
        if isinstance(sub, _DEF_TYPES):
            names.add(sub.name)
        elif not isinstance(sub, ast.Lambda):
            if isinstance(sub, ast.Name) and isinstance(sub.ctx, ast.Store):
                names.add(sub.id)
            elif isinstance(sub, ast.alias):
                names.add((sub.asname or sub.name).split(".")[0])
            pending.extend(ast.iter_child_nodes(sub))
    return names


def _bound_now(expr: ast.expr, namespace: dict) -> object:
    """What a (dotted) name in a module's namespace (or a builtin) is bound to now."""
    parts: list[str] = []
    while isinstance(expr, ast.Attribute):
        parts.append(expr.attr)
        expr = expr.value
    if not isinstance(expr, ast.Name):
        return _UNKNOWN
    value = namespace.get(expr.id, vars(builtins).get(expr.id, _UNKNOWN))
    for attr in reversed(parts):
        if not isinstance(value, (ModuleType, type)):
            return _UNKNOWN
        value = getattr(value, attr, _UNKNOWN)
    return value


def _same_value(written: object, live: object) -> bool:
    """Equal, and of the same types all the way down where the values are constants."""
    encoded = encode_constant(written)
    if encoded is not None:
        return encoded == encode_constant(live)
    return type(written) is type(live) and written == live


def class_functions(cls: type) -> list[tuple[str, FunctionType]]:
    """(attribute, function) for the plain functions behind methods and properties of `cls`."""
    found: list[tuple[str, FunctionType]] = []
    for attr, value in sorted(vars(cls).items()):
        if isinstance(value, type):
            continue
        inner = getattr(value, "__func__", None) or getattr(value, "func", None) or value
        candidates = [getattr(value, part, None) for part in ("fget", "fset", "fdel")]
        for fn in (inner, *candidates):
            if isinstance(fn, FunctionType):
                found.append((attr, fn))
    return found


def own_methods(cls: type) -> list[FunctionType]:
    """Functions defined in the body of `cls` (not generated by exec, not assigned from outside).

    Judged by each code object's own qualified name: ``functools.wraps`` copies ``__qualname__``
    onto a wrapper written elsewhere (dataclasses' ``__repr__`` is wrapped in its module; a
    project decorator's wrapper lives in the decorator's module), and the method behind such a
    wrapper is the one written here. A wrapper had been taken for the class's own method: the
    class body's names were looked up in its module (``dataclasses``), none was found there,
    and a dataclass default naming a constant or helper (``g: float = GAIN``,
    ``field(default_factory=helpers.weights)``) was no part of the class's identity.
    """
    prefix = cls.__qualname__ + "."
    found: list[FunctionType] = []
    for _, fn in class_functions(cls):
        written = _written_in(fn, prefix)
        if written is not None and written.__code__.co_filename != "<string>" and written not in found:
            found.append(written)
    return found


def _written_in(fn: FunctionType, prefix: str) -> FunctionType | None:
    """`fn`, or the function its ``functools.wraps`` layers wrap, whose code was written in the
    body of the class whose qualified name is `prefix` (without the dot's tail); None if none."""
    layer: object = fn
    for _ in range(16):
        if not isinstance(layer, FunctionType):
            return None
        if layer.__code__.co_qualname.startswith(prefix):
            return layer
        layer = getattr(layer, "__wrapped__", None)
    return None


def code_names(code: CodeType) -> frozenset[str]:
    """Every global or attribute name used by `code` and the code objects nested in it."""
    names = set(code.co_names)
    for const in code.co_consts:
        if isinstance(const, CodeType):
            names |= code_names(const)
    return frozenset(names)


def code_digest(code: CodeType) -> str:
    """Hash of bytecode, names and constants (recursively): identity when there is no source."""
    return blake3.blake3(
        repr(("bytecode", sys.version_info[:2], _signature(code))).encode()
    ).hexdigest()


def _signature(code: CodeType) -> tuple:
    """Everything about `code` that affects behaviour, without positions; deterministic repr."""
    return (
        code.co_code,
        code.co_names,
        code.co_varnames,
        code.co_freevars,
        code.co_cellvars,
        (code.co_argcount, code.co_posonlyargcount, code.co_kwonlyargcount),
        tuple(_const_signature(const) for const in code.co_consts),
    )


def _const_signature(const: object) -> object:
    """Constants by type and repr; frozensets sorted (their order depends on the hash seed)."""
    if isinstance(const, CodeType):
        return _signature(const)
    if isinstance(const, (tuple, frozenset)):
        items = [_const_signature(item) for item in const]
        return (
            type(const).__name__,
            tuple(sorted(items, key=repr) if isinstance(const, frozenset) else items),
        )
    return (type(const).__name__, repr(const))


def _matches(parsed: _ParsedFile, code: CodeType) -> bool:
    """True if compiling the file today yields the running `code` at the same place."""
    wanted = _signature(code)
    return any(
        _signature(c) == wanted for c in parsed.codes.get((code.co_name, code.co_firstlineno), [])
    )


def code_now(fn: FunctionType) -> CodeType | None:
    """The code object compiling `fn`'s file as it is now gives for `fn`: the same code but
    for positions, at its own first line with the same qualified name, else the file's one
    code of that qualified name (a line added above it moves it). None: its code is not the
    file's now; or it moved and its qualified name is not the file's only one (``p1 = lambda
    ...`` edited and ``p2``'s lambda now of its old code: not taken for it)."""
    code = fn.__code__
    parsed = _parse(code.co_filename, fn.__globals__)
    if parsed is None:
        return None
    wanted = _signature(code)
    named = [c for (name, _), codes in parsed.codes.items() if name == code.co_name for c in codes
             if c.co_qualname == code.co_qualname]
    here = [c for c in named if c.co_firstlineno == code.co_firstlineno and _signature(c) == wanted]
    if here:
        return here[0]
    return named[0] if len(named) == 1 and _signature(named[0]) == wanted else None


def defs_named(filename: str, qualname: str) -> list[ast.AST] | None:
    """The def or lambda nodes of `filename` as it is on disk now whose code has qualified
    name `qualname` (``run.<locals>.double``: a function no module global holds, which `why`
    cannot find in a fresh copy of its module). None: the file cannot be read or parsed, or
    a code of that name has no node of its own (lambdas sharing a line, a class)."""
    try:
        with open(filename, "rb") as handle:
            text = importlib.util.decode_source(handle.read())
    except (OSError, SyntaxError, UnicodeDecodeError, ValueError):
        return None
    parsed = _parse_text(filename, text)
    if parsed is None:
        return None
    found: list[ast.AST] = []
    for key, codes in parsed.codes.items():
        for code in codes:
            if code.co_qualname == qualname:
                nodes = parsed.defs.get(key, [])
                if len(nodes) != 1:
                    return None
                found.append(nodes[0])
    return found


def _parse(filename: str, module_globals: dict | None) -> _ParsedFile | None:
    """Parse and compile `filename` as linecache sees it now; None if no text or no parse."""
    linecache.checkcache(filename)
    text = "".join(linecache.getlines(filename, module_globals))
    return _parse_text(filename, text) if text else None


@functools.lru_cache(maxsize=64)
def _parse_text(filename: str, text: str) -> _ParsedFile | None:
    """Parse and compile one version of a file; cached (thread-safely) by its text."""
    try:
        tree = ast.parse(text, filename)
        flags = ast.PyCF_ALLOW_TOP_LEVEL_AWAIT  # notebook cells may await at top level
        module_code = compile(tree, filename, "exec", flags=flags, dont_inherit=True)
    except (SyntaxError, ValueError):
        return None
    return _ParsedFile(_index_defs(tree), _index_codes(module_code), tree)


def _index_defs(tree: ast.Module) -> dict[_NodeKey, list[ast.AST]]:
    """Function and lambda nodes by (code name, first line including decorators)."""
    index: dict[_NodeKey, list[ast.AST]] = {}
    for node in ast.walk(tree):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            first = min([node.lineno, *(d.lineno for d in node.decorator_list)])
            index.setdefault((node.name, first), []).append(node)
        elif isinstance(node, ast.Lambda):
            index.setdefault(("<lambda>", node.lineno), []).append(node)
    return index


def _index_codes(code: CodeType) -> dict[_NodeKey, list[CodeType]]:
    """All code objects nested in a module's code, by (name, first line)."""
    index: dict[_NodeKey, list[CodeType]] = {}
    pending = [code]
    while pending:
        current = pending.pop()
        index.setdefault((current.co_name, current.co_firstlineno), []).append(current)
        pending.extend(c for c in current.co_consts if isinstance(c, CodeType))
    return index


def _find_qualname(tree: ast.Module, parts: list[str]) -> list[ast.ClassDef]:
    """ClassDef nodes reached by following a ``__qualname__`` such as ``f.<locals>.A.B``."""
    scopes: list[ast.AST] = [tree]
    for part in parts:
        if part == "<locals>":
            continue
        scopes = [child for scope in scopes for child in _scope_defs(scope) if child.name == part]
    return [node for node in scopes if isinstance(node, ast.ClassDef)]


def _scope_defs(scope: ast.AST) -> Iterator[ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef]:
    """Defs directly inside `scope` (also inside its if/try/with blocks, not inside other defs)."""
    for child in ast.iter_child_nodes(scope):
        if isinstance(child, _DEF_TYPES):
            yield child
        elif isinstance(child, (ast.stmt, ast.excepthandler, ast.match_case)):
            yield from _scope_defs(child)


def _module_file(cls: type) -> str | None:
    """Source file of the module defining `cls`, when there is one."""
    module = sys.modules.get(cls.__module__)
    return getattr(module, "__file__", None)


def _unverified(fn: FunctionType) -> tuple[ast.AST | None, str]:
    """Fallback for in-memory sources that do not parse as a whole (e.g. cells with magics)."""
    try:
        tree = ast.parse(textwrap.dedent(inspect.getsource(fn)))
    except (OSError, TypeError, SyntaxError):
        return None, "no source"
    nodes = [n for n in tree.body if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef))]
    return (
        (nodes[0], "")
        if len(nodes) == 1 and fn.__code__.co_name == nodes[0].name
        else (None, "no source")
    )
