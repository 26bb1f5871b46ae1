"""Whether a function made inside another (``run.<locals>.double``) may be made again from
its file's code now with the values the process's own carries.

A module read again into a copy (`why._as_now`: its file may have been edited) holds no
function made inside another, so `why._registered_as_now` makes one from the process's own:
its code as the file holds it now, the copy's globals, and the values the code around it
made when it ran: its cells' contents, defaults, attributes, a partial's arguments. Those are
the file's now only if that code would make them again (a constant of ``run`` edited, or a
helper of the module a cell holds, had been judged current). `carried_as_now` says so when
each is plain data (numbers, strings, bytes, arrays, containers of them: a function, class,
module or other object may hold code edited since) and the function it was made in is the
same code in the copy, with the same defaults, importing nothing, and each global name it (or
a function nested in it, but this one) reads is the same value in the copy. Not seen: what
the caller passed ``run`` (the process's own, as for any registered function).
"""

from __future__ import annotations

import dis
import functools
import inspect
import sys
from types import CodeType, FunctionType, ModuleType
from typing import Any

from scistack.codeid._source import code_names, same_code

_ABSENT = object()
_SCALARS = frozenset({type(None), bool, int, float, complex, str, bytes})
_CONTAINERS = frozenset({tuple, list, set, frozenset, dict})
_MAX_DEPTH = 32


def carried_as_now(fn: Any, plain: FunctionType, held: ModuleType, copy: ModuleType) -> bool:
    """Whether `plain` (the registered `fn`, or the function of a partial `fn`) of module `held`
    may be made again with what it carries, for the module's copy `copy`: it carries nothing,
    or plain data the code around it, unchanged in `copy`, made from the same values."""
    values = _carried(fn, plain)
    if values is None or not all(_plain_data(value) for value in values):
        return False
    return not values or _made_as_now(plain, held, copy)


def _carried(fn: Any, plain: FunctionType) -> list | None:
    """The values a function made again from `plain`'s code takes from `plain` (None: an empty
    cell). Its annotations are not among them: nothing runs or is identified by them."""
    values: list = []
    for cell in plain.__closure__ or ():
        try:
            values.append(cell.cell_contents)
        except ValueError:  # (empty: not bound yet, or deleted)
            return None
    values.extend(plain.__defaults__ or ())
    values.extend((plain.__kwdefaults__ or {}).values())
    values.extend(vars(plain).values())
    if isinstance(fn, functools.partial):
        values.extend(fn.args)
        values.extend(fn.keywords.values())
    return values


def _plain_data(value: object, depth: int = 0) -> bool:
    """Numbers, strings, bytes, None, numpy arrays and scalars of no objects, and tuples,
    lists, sets and dicts of these: no code in it (exact types: a subclass may have methods)."""
    kind = type(value)
    if kind in _SCALARS:
        return True
    if depth >= _MAX_DEPTH:
        return False
    if kind is dict:
        return all(_plain_data(k, depth + 1) and _plain_data(v, depth + 1) for k, v in value.items())  # type: ignore[attr-defined]
    if kind in _CONTAINERS:
        return all(_plain_data(item, depth + 1) for item in value)  # type: ignore[attr-defined]
    numpy = sys.modules.get("numpy")  # (not imported: no array can be here)
    return (numpy is not None and (kind is numpy.ndarray or isinstance(value, numpy.generic))
            and not value.dtype.hasobject)  # type: ignore[attr-defined]


def _same_value(a: object, b: object) -> bool:
    """The same object, or plain data of the same type and value (repr: -0.0 is not 0.0)."""
    return a is b or (type(a) is type(b) and _plain_data(a) and _plain_data(b) and _key(a) == _key(b))


def _key(value: Any) -> object:
    """Plain data (`_plain_data`) as a comparable value, its types in it."""
    kind = type(value)
    if kind in _SCALARS:
        return repr(value)
    if kind is dict:
        return ("dict", [(_key(k), _key(v)) for k, v in value.items()])
    if kind in (set, frozenset):
        return (kind.__name__, sorted(repr(_key(item)) for item in value))
    if kind in _CONTAINERS:
        return (kind.__name__, [_key(item) for item in value])
    return (kind.__name__, str(value.dtype), value.shape, value.tobytes())


def _made_as_now(plain: FunctionType, held: ModuleType, copy: ModuleType) -> bool:
    """Whether the function `plain` was made in (the top one of its qualified name: ``run``
    of ``run.<locals>.helper.<locals>.double``) would make it the same in `copy`: that
    function is the one whose code holds `plain`'s, its code is the same in `copy` (so is
    every function between them), its defaults are, it imports nothing, and each global name
    it reads (its own code and the code nested in it but `plain`'s) is the same value."""
    outer = plain.__qualname__.split(".<locals>.")[0]
    if outer == plain.__qualname__:  # (made by a module's top level: a lambda no global holds)
        return False
    ran, now = _function_at(held, outer), _function_at(copy, outer)
    if ran is None or now is None or ran.__globals__ is not vars(held) or ran.__closure__:
        return False
    path = _code_path(ran.__code__, plain.__code__)
    if path is None or not same_code(ran.__code__, now.__code__):  # (None: made by another `run`)
        return False
    around = path[:-1]
    beside = [const for code in around for const in code.co_consts
              if isinstance(const, CodeType) and not any(const is on for on in path)]
    if any(_imports(code, nested=False) for code in around) or any(_imports(code) for code in beside):
        return False
    names = {name for code in around for name in code.co_names} | {n for code in beside for n in code_names(code)}
    mine, its = vars(held), vars(copy)
    return (_same_value(ran.__defaults__, now.__defaults__) and _same_value(ran.__kwdefaults__, now.__kwdefaults__)
            and all(_same_value(mine.get(name, _ABSENT), its.get(name, _ABSENT)) for name in names))


def _function_at(module: ModuleType, qualname: str) -> FunctionType | None:
    """The function module `module` holds by that qualified name (``run``, ``Steps.run``),
    through staticmethod, classmethod and ``__wrapped__`` (a LineageFunction); None if none.
    Read without running a descriptor or ``__getattr__``."""
    value: object = module
    for part in qualname.split("."):
        try:
            value = inspect.getattr_static(value, part)
        except AttributeError:
            return None
    for _ in range(_MAX_DEPTH):
        if value is None or isinstance(value, FunctionType):
            return value
        value = value.__func__ if isinstance(value, (staticmethod, classmethod)) \
            else inspect.getattr_static(value, "__wrapped__", None)
    return None


def _code_path(top: CodeType, target: CodeType) -> list[CodeType] | None:
    """The code objects from `top` down to `target` (the very object) by their constants."""
    if top is target:
        return [top]
    for const in top.co_consts:
        if isinstance(const, CodeType):
            below = _code_path(const, target)
            if below is not None:
                return [top, *below]
    return None


def _imports(code: CodeType, nested: bool = True) -> bool:
    """Whether `code` (and, `nested`, the code nested in it) has an import statement."""
    if any(instruction.opname == "IMPORT_NAME" for instruction in dis.get_instructions(code)):
        return True
    return nested and any(_imports(const) for const in code.co_consts if isinstance(const, CodeType))
