"""The modules a function imports in its body (``def f(x): from mypkg.helpers import g``).

Such a module is no global of the function's module, so a walk over a module's globals does
not reach it: `report.why` asks here which project modules a module's functions reach this
way, to see that one of them was edited after this process imported it.
"""

from __future__ import annotations

import dis
import importlib.util
import inspect
from types import CodeType, FunctionType
from typing import Any

_FOUND: dict[int, tuple[CodeType, tuple[tuple[str, int, tuple[str, ...]], ...]]] = {}  # id(code) ->
# (code, kept alive so that its id is not reused; its imports: (name, level, fromlist))
_RESOLVED: dict[tuple[int, str | None], tuple[CodeType, tuple[str, ...]]] = {}  # and as modules


def body_imports(value: Any, package: str | None) -> list[str]:
    """Dotted names of the modules function or class `value` imports inside its code (its
    methods', nested functions' and comprehensions' too), resolved against `package`; a
    ``from pkg import name`` names ``pkg`` and ``pkg.name`` (which may be a submodule)."""
    names: list[str] = []
    for code in _codes(value):
        names.extend(_resolved(code, package))
    return names


def _resolved(code: CodeType, package: str | None) -> tuple[str, ...]:
    known = _RESOLVED.get((id(code), package))
    if known is not None and known[0] is code:
        return known[1]
    names: list[str] = []
    for name, level, fromlist in _imports(code):
        try:
            module = importlib.util.resolve_name("." * level + name, package)
        except (ImportError, ValueError):
            continue  # a relative import outside a package: fails when it runs too
        names.append(module)
        names.extend(f"{module}.{member}" for member in fromlist if member != "*")
    if len(_RESOLVED) > 10_000:
        _RESOLVED.clear()
    _RESOLVED[(id(code), package)] = (code, tuple(names))
    return _RESOLVED[(id(code), package)][1]


def _codes(value: Any) -> list[CodeType]:
    if isinstance(value, type):
        members = [getattr(m, "__func__", m) for m in list(vars(value).values())]
        return [code for m in members if isinstance(m, FunctionType) for code in _codes(m)]
    if hasattr(value, "__wrapped__"):  # (a decorated function)
        try:
            value = inspect.unwrap(value)
        except ValueError:  # a cycle of __wrapped__
            return []
    code = getattr(value, "__code__", None) if isinstance(value, FunctionType) else None
    return [code] if isinstance(code, CodeType) else []


def _imports(code: CodeType) -> tuple[tuple[str, int, tuple[str, ...]], ...]:
    known = _FOUND.get(id(code))
    if known is not None and known[0] is code:
        return known[1]
    found: list[tuple[str, int, tuple[str, ...]]] = []
    consts: list[Any] = []
    for instruction in dis.get_instructions(code):
        if instruction.opname == "IMPORT_NAME" and len(consts) >= 2:
            level, fromlist = consts[-2], consts[-1]
            if isinstance(level, int) and isinstance(instruction.argval, str):
                members = tuple(m for m in fromlist or () if isinstance(m, str))
                found.append((instruction.argval, level, members))
        consts.append(instruction.argval if instruction.opname == "LOAD_CONST" else None)
    for const in code.co_consts:
        if isinstance(const, CodeType):
            found.extend(_imports(const))
    if len(_FOUND) > 10_000:
        _FOUND.clear()
    _FOUND[id(code)] = (code, tuple(found))
    return _FOUND[id(code)][1]
