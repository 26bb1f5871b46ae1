"""Call keys and call records: what makes two calls "the same", and what a call leaves behind.

Call key = blake3 over the function identity and, per bound argument, the oid of its value
(an input loaded from the store brings its oid along, so a 100 MB input is never re-hashed;
a constant is hashed through its canonical encoding). Defaults are bound and arguments are
keyed by name, so positional and keyword spellings of one call share a key. The
environment is recorded in the call record and never enters the key.
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass, field
from typing import Any

from scistack.objects.canonical_json import dumps_canonical, to_tree
from scistack.objects.hashing import hash_bytes
from scistack.objects.store import ObjectStore, hash_value

CALL_FORMAT = 1
_SCALARS = (int, float, str, bool, type(None))


@dataclass(slots=True)
class BoundInput:
    """One argument of a call: the plain value the function gets, and how lineage sees it."""

    name: str
    value: Any
    oid: str
    record: dict[str, Any]
    params: dict[str, Any] = field(default_factory=dict)


def bind(signature: inspect.Signature, args: tuple, kwargs: dict, ignore: frozenset[str]) -> dict[str, Any]:
    """Arguments by parameter name, defaults applied; `ignore`d names are left out of lineage."""
    bound = signature.bind(*args, **kwargs)
    bound.apply_defaults()
    return dict(bound.arguments)


def describe(name: str, value: Any) -> BoundInput:
    """Unwrap a loaded variable or an earlier result to its value; hash constants."""
    hook = getattr(value, "__scistack_input__", None)
    if hook is not None:
        plain, oid, var, addr, call, params = _input_parts(hook())
        if oid is None:  # an unsaved variable or result: treat its value as a constant
            return describe(name, plain)
        record: dict[str, Any] = {"oid": oid}
        if var:
            record.update(var=var, addr=addr)
        if call:
            record["call"] = call
        return BoundInput(name, plain, oid, record, dict(params or {}))
    oid = hash_value(value)
    record = {"oid": oid}
    if isinstance(value, _SCALARS) or (isinstance(value, (list, tuple, dict)) and len(value) <= 16):
        try:
            record["const"] = to_tree(value, lambda child: hash_value(child))
        except Exception:  # noqa: BLE001 - unsupported values fail in hash_value already
            pass
    return BoundInput(name, value, oid, record)


def _input_parts(parts: tuple) -> tuple:
    """Inputs report (value, oid, var, addr[, call, params])."""
    return tuple(parts) + (None,) * (6 - len(parts))


def call_key(identity_digest: str, inputs: dict[str, BoundInput]) -> str:
    """The cache key of a call."""
    args = {name: b.oid for name, b in sorted(inputs.items())}
    return hash_bytes(dumps_canonical({"args": args, "fn": identity_digest}))


def flatten_params(fn_name: str, inputs: dict[str, BoundInput]) -> dict[str, Any]:
    """This call's scalar constants as `fn.param`, plus every upstream call's parameters."""
    params: dict[str, Any] = {}
    for b in inputs.values():
        params.update(b.params)
    for name, b in inputs.items():
        const = b.record.get("const")
        if "var" not in b.record and "call" not in b.record and isinstance(const, _SCALARS):
            params[f"{fn_name}.{name}"] = const
    return params


def store_constants(store: ObjectStore, inputs: dict[str, BoundInput]) -> None:
    """Constants that are not inline in the record (arrays...) are stored for provenance."""
    for b in inputs.values():
        if "const" not in b.record and "var" not in b.record and "call" not in b.record:
            store.put_value(b.value)
        elif "const" in b.record and not isinstance(b.value, _SCALARS):
            store.put_value(b.value)  # children of containers

