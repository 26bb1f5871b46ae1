"""Planning a `for_each` run: checking its arguments and listing its combinations.

Everything here happens before anything runs, so a mistake in the call (a key outside the
schema, an input the function does not take, an output named twice) is refused at once with
the fix, instead of failing at every combination.
"""

from __future__ import annotations

import functools
import inspect
import itertools
import os
import sys
import warnings
from collections.abc import Iterator
from types import BuiltinFunctionType, FunctionType
from typing import Any

import numpy as np

from scistack.address import checked_label, typed
from scistack.database import Database
from scistack.errors import ForEachError, InvalidMetadataError, MixedKeyTypesWarning, ScistackError
from scistack.foreach.inputs import EachOf, Fixed, Merge, Resolved, constant, is_variable
from scistack.foreach.execute import WORKERS_HINT
from scistack.foreach.paths import PathInput, PathOutput
from scistack.foreach.scifor import check_collectors
from scistack.lineage.function import LineageFunction, pickled_for_workers


def check_arguments(db: Database, fn: Any, inputs: dict[str, Any], outputs: list[Any], on_error: str,
                     iterables: dict[str, Any]) -> None:
    for out in outputs:
        if not is_variable(out):
            raise InvalidMetadataError(
                f"outputs must be variable classes (class Result(BaseVariable): pass), got {out!r}")
    if len({out.__name__ for out in outputs}) != len(outputs):
        raise InvalidMetadataError(
            f"outputs {[o.__name__ for o in outputs]} name a variable twice; each returned value "
            "needs its own variable")
    # a name the project refuses at save (a case twin of a variable, a view's name): refused
    # now, not when the first call's result is saved, after its cache entry was journalled
    # (the call was then recorded with no output saved, and served as a hit on the next run)
    tags = {n: None for n, s in inputs.items() if isinstance(s, EachOf)}  # (EachOf's version keys)
    db.index.check_output_names([out.__name__ for out in outputs], tags)
    for name, spec in inputs.items():
        for fixed in _fixed_specs(spec):
            variants = db.index.vkey_names(fixed.variable.__name__)
            wrong = [k for k in fixed.pinned if k not in db.schema_keys and k not in variants]
            if wrong:
                raise InvalidMetadataError(
                    f"inputs[{name!r}] = {fixed!r} pins {wrong}, which are not schema keys "
                    f"{db.schema_keys} nor version keys of {fixed.variable.__name__} "
                    f"({sorted(variants) or 'none'}); Fixed pins address and version keys only")
    produced = {out.__name__ for out in outputs}
    for name, spec in inputs.items():
        looped = sorted(produced & {v.__name__ for v in _own_address_variables(spec)})
        if looped:
            raise looped_input(looped[0], name)
    unknown = [k for k in iterables if k not in db.schema_keys]
    if unknown:
        raise InvalidMetadataError(_unknown_keywords(fn, unknown, db.schema_keys))
    _check_paths(db, inputs, outputs, iterables)
    if not callable(fn):
        raise InvalidMetadataError(f"for_each needs a function, got {type(fn).__name__}")


def _check_paths(db: Database, inputs: dict[str, Any], outputs: list[Any], iterables: dict[str, Any]) -> None:
    """Path templates name iterated schema keys; each written file needs an output variable."""
    writes = 0
    each = tuple(n for n, s in inputs.items() if isinstance(s, EachOf))  # a PathOutput names these too
    for name, spec in inputs.items():
        for part in (spec.alternatives if isinstance(spec, EachOf) else (spec,)):
            if isinstance(part, PathInput):
                part.check_keys(db.schema_keys, list(iterables), f"inputs[{name!r}]")
            if isinstance(part, PathOutput):
                part.check_keys(db.schema_keys, list(iterables), f"inputs[{name!r}]", each)
                part.check_outputs_apart([k for k, v in iterables.items() if not _one_value(v)], f"inputs[{name!r}]",
                                         tuple(n for n in each if n != name))
                writes += 1
    if writes > len(outputs):
        raise InvalidMetadataError(
            f"{writes} PathOutput input(s) but {len(outputs)} output variable(s): each written file is "
            "saved as the value of an output variable (files first, then returned values); add them to outputs=")


_OPTIONS = ("inputs", "outputs", "dry_run", "on_error", "workers", "executor", "progress", "verbose",
            "as_table", "chunk_size", "lazy")


def _unknown_keywords(fn: Any, unknown: list[str], schema_keys: list[str]) -> str:
    """Keywords that are neither schema keys nor options: a parameter of `fn` belongs in
    inputs=; anything else (where=, distribute= of other tools) is no option of for_each."""
    try:
        params = set(inspect.signature(getattr(fn, "fn", fn)).parameters)
    except (TypeError, ValueError):
        params = set()
    takes = [k for k in unknown if k in params]
    others = [k for k in unknown if k not in params]
    parts = []
    if takes:
        parts.append(f"{takes} are parameters of the function, not schema keys {schema_keys}: pass "
                     f"them through inputs={{{takes[0]!r}: ...}} (a constant, or a variable to load)")
    if others:
        parts.append(f"for_each has no option {', '.join(k + '=' for k in others)}: its keywords are "
                     f"the schema keys {schema_keys} (values to iterate) and {', '.join(_OPTIONS)}")
    return "; ".join(parts)


def check_counts(workers: Any, chunk_size: Any) -> None:
    for label, value, least in (("workers", workers, 0), ("chunk_size", chunk_size, 1)):
        if value is not None and (type(value) is not int or value < least):
            raise InvalidMetadataError(f"{label}={value!r}: give a whole number >= {least}, or leave it out")
    main = sys.modules.get("__main__")
    path = getattr(main, "__file__", None)
    if workers and getattr(getattr(main, "__spec__", None), "name", None) is None and path is not None \
            and not os.path.isfile(path):
        # each spawned worker runs the script again by its path: '<stdin>' is none (every
        # combination failed with BrokenProcessPool)
        raise InvalidMetadataError(
            f"workers={workers} starts processes that import the main script again, but it is "
            f"{path!r}, not a file; save the script to a file and run that, or leave workers out")


def check_workers_can_receive(lf: LineageFunction, workers: int | None) -> None:
    """The worker processes of `workers=N` get the function pickled: one that cannot travel (a
    lambda, or a function nested in another, in a script) is refused before anything runs, not
    once per combination. (A Dask executor pickles it itself, by value.)"""
    if not workers:
        return
    try:
        pickled_for_workers(lf)
    except Exception as exc:  # noqa: BLE001 - pickle raises several kinds here
        raise ForEachError(
            f"for_each({lf.name}, workers={workers}): the worker processes cannot be sent "
            f"{lf.name} ({type(exc).__name__}: {exc}); {WORKERS_HINT.format(name=lf.name)}") from None


def check_parameters(lf: LineageFunction, inputs: dict[str, Any]) -> None:
    """Refuse inputs the function does not take, and parameters that nothing would fill."""
    params = lf.signature.parameters
    check_collectors(lf.name, params, inputs)
    kinds = {p.kind for p in params.values()}
    if inspect.Parameter.VAR_KEYWORD not in kinds:
        unknown = [n for n in inputs if n not in params]
        if unknown:
            raise InvalidMetadataError(
                f"inputs= names {unknown}, which {lf.name} does not take; its parameters are {list(params)}")
    needed = [n for n, p in params.items() if n not in inputs and p.default is p.empty
              and p.kind not in (inspect.Parameter.VAR_POSITIONAL, inspect.Parameter.VAR_KEYWORD)]
    if needed:
        raise InvalidMetadataError(
            f"{lf.name} needs {needed}, which inputs= does not give: add a variable or a constant "
            f"for each, e.g. inputs={{..., {needed[0]!r}: ...}}")


def bind_functions(lf: LineageFunction, inputs: dict[str, Any]) -> tuple[LineageFunction, dict[str, Any]]:
    """Functions given as constants (`inputs={"fn": np.sqrt}`) bound into the step, as
    `functools.partial(step, fn=np.sqrt)` would: a function has no value to store, and its
    code identity (as a default argument's) keys the call then."""
    params = lf.signature.parameters
    code = {n: s for n, s in inputs.items() if isinstance(s, _FUNCTIONS) and n not in lf.ignore
            and (n not in params or params[n].kind is not inspect.Parameter.POSITIONAL_ONLY)}
    if not code:
        return lf, inputs
    bound = LineageFunction(functools.partial(lf.fn, **code), version=lf.version, ignore=tuple(lf.ignore))
    return bound, {n: s for n, s in inputs.items() if n not in code}


_FUNCTIONS = (FunctionType, BuiltinFunctionType, np.ufunc, functools.partial, LineageFunction)


def defaults(lf: LineageFunction, inputs: dict[str, Any]) -> dict[str, Resolved]:
    """Defaults of parameters not in `inputs`: part of the call, as a direct call binds them.
    (Not a numpy ufunc's or a builtin's: theirs are sentinels the C code tells apart from a
    value given, `np.sqrt(x, dtype=None, signature=None)` is refused.)"""
    found = {}
    if isinstance(lf.fn, np.ufunc) or inspect.isbuiltin(lf.fn):
        return found
    for name, param in lf.signature.parameters.items():
        if name in inputs or name in lf.ignore or param.default is param.empty:
            continue
        try:
            found[name] = constant(name, param.default)
        except ScistackError:
            continue  # a default with no canonical encoding: the function applies it itself
    return found


def combinations(db: Database, inputs: dict[str, Any], iterables: dict[str, Any]) -> list[dict[str, Any]]:
    """Every combination, in the order given; `[]` expands to every stored value of that key."""
    keys, value_lists = [], []
    for key, values in iterables.items():
        values = _address_values(key, values)
        if not values:
            values = _stored_values(db, inputs, key)
        keys.append(key)
        value_lists.append(values)
    return [dict(zip(keys, combo)) for combo in itertools.product(*value_lists)]


def _address_values(key: str, values: Any) -> list[Any]:
    """One key's values as plain Python scalars (numpy ones unwrapped), each once, in order."""
    if isinstance(values, (str, bytes, int, float, np.generic)):
        values = [values]
    try:
        values = list(values)
    except TypeError:
        raise InvalidMetadataError(
            f"for_each({key}=...) takes a list (or any iterable) of values, got {values!r}") from None
    unique: dict[tuple[str, Any], Any] = {}
    for value in values:
        value = checked_label(value, f"for_each: {key}")
        unique.setdefault(typed(value), value)
    return list(unique.values())


def _stored_values(db: Database, inputs: dict[str, Any], key: str) -> list[Any]:
    """Every value of `key` in the addresses of the input variables (pinned by none of them),
    and in the file names a `PathInput` finds on disk."""
    seen: dict[Any, Any] = {}
    for spec in inputs.values():
        for part in (spec.alternatives if isinstance(spec, EachOf) else (spec,)):
            if isinstance(part, PathInput) and key in part.keys:
                found = {combo[key] for combo in part.discover()}
                for value in found:
                    seen[(type(value).__name__, value)] = value
                _warn_mixed_types(part, key, found)
        for var in _variables_of(spec, key):
            for record in db.index.records(var.__name__):
                if key in record.addr:
                    value = record.addr[key]
                    seen[(type(value).__name__, value)] = value
    return sorted(seen.values(), key=lambda v: (isinstance(v, str), v))


def _warn_mixed_types(path: PathInput, key: str, found: set[Any]) -> None:
    """Warn (once per run: the values of a key are found once) when file names give one key
    both ints and zero-padded text: `sub-01` ... `sub-10` are '01' ... '09' (a str, as "03"
    does not read back as 3) and 10 (an int), so the key mixes types and sorts 10 first."""
    ints = sorted(v for v in found if isinstance(v, int))
    padded = sorted(v for v in found if isinstance(v, str) and v.isdigit())
    if not ints or not padded:
        return
    text = sorted((str(v) for v in [*ints, *padded]), key=lambda t: (int(t), t))
    shown = ", ".join(repr(t) for t in text[:2]) + (", ..., " if len(text) > 3 else ", ") + repr(text[-1])
    warnings.warn(MixedKeyTypesWarning(
        f"{path!r}: the file names give {key} both zero-padded text ({padded[0]!r}: a str, as it does not "
        f"read back the same as an int) and numbers ({ints[0]!r}: an int), so {key} mixes types (and "
        f"{ints[0]!r} sorts before {padded[0]!r}). To keep every value as the text in the file names, give "
        f"them: for_each(..., {key}=[{shown}]) (a value saved as a number already, such as "
        f"{key}={ints[0]!r}, is kept apart: delete it first, or its text look-alike is refused)"),
        stacklevel=_outside_scistack())


def _outside_scistack() -> int:
    """The stacklevel of the first caller outside the scistack package (the user's for_each)."""
    package = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    level, frame = 1, sys._getframe(1)
    while frame is not None and os.path.abspath(frame.f_code.co_filename).startswith(package + os.sep):
        level, frame = level + 1, frame.f_back
    return level


def _parts(spec: Any) -> tuple:
    """The inputs a `Merge` or `EachOf` is made of (none for any other input)."""
    return spec.variables if isinstance(spec, Merge) else spec.alternatives if isinstance(spec, EachOf) else ()


def _variables_of(spec: Any, key: str) -> Iterator[type]:
    """The variables an input loads whose address follows `key` (a Fixed pinning it does not)."""
    if isinstance(spec, (Merge, EachOf)):
        for part in _parts(spec):
            yield from _variables_of(part, key)
    elif isinstance(spec, Fixed):
        if key not in spec.pinned:
            yield spec.variable
    elif is_variable(spec):
        yield spec


def looped_input(var: str, name: str) -> InvalidMetadataError:
    """The refusal of a variable that is both an input at the combination and an output."""
    return InvalidMetadataError(
        f"{var} is both an input (inputs[{name!r}]) and an output: each run would read the last "
        f"run's result and save another version over it (the values change at every run and no "
        f"run is ever cached). Save the result as a variable of its own, e.g. {var}Processed")


def _one_value(values: Any) -> bool:
    """Whether an iterable of `for_each` gives one value (`[]` finds any number on disk)."""
    return isinstance(values, (str, bytes, int, float)) or (hasattr(values, "__len__") and len(values) == 1)


def _own_address_variables(spec: Any) -> Iterator[type]:
    """Variables an input reads at the combination's own address (not through `Fixed`)."""
    if isinstance(spec, (Merge, EachOf)):
        for part in _parts(spec):
            yield from _own_address_variables(part)
    elif is_variable(spec):
        yield spec


def _fixed_specs(spec: Any) -> Iterator[Fixed]:
    if isinstance(spec, (Merge, EachOf)):
        for part in _parts(spec):
            yield from _fixed_specs(part)
    elif isinstance(spec, Fixed):
        yield spec
