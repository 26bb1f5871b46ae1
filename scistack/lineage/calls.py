"""Call keys and call records: what makes two calls "the same", and what a call leaves behind.

Call key = blake3 over the function identity and, per bound argument, the oid of its value
(an input loaded from the store brings its oid along, so a 100 MB input is never re-hashed;
a constant is hashed through its canonical encoding). Defaults are bound and arguments are
keyed by name, so positional and keyword spellings of one call share a key. Extra keyword
arguments (``**kwargs``) are keyed by their own names, ``*args`` as one tuple. The
environment is recorded in the call record and never enters the key.

Hazards: a loaded input is keyed by its known oid, so it must not change behind the key:
loaded arrays and results are read-only, and an array the caller still owns (the one given to
`save`) is verified by re-hashing. A default that has no canonical form (numpy's
``np._NoValue`` sentinel) is left out of the key, not refused: it is part of the function's
definition, which the function's identity already covers. Lists, tuples and dicts that hold
loaded variables or earlier results are unwrapped element by element; their key is the
canonical JSON of the container with each such element replaced by a reference to its oid
(no re-hashing of its data).
"""

from __future__ import annotations

import dataclasses
import functools
import inspect
import json
from itertools import islice
from dataclasses import dataclass, field
from collections.abc import Callable, Iterable
from typing import Any

import numpy as np
import orjson

from scistack.codeid.script_path import in_checkout
from scistack.errors import InvalidMetadataError, LineageError, ScistackError, UnsupportedValueError
from scistack.index.state import tagged_params
from scistack.objects.canonical_json import dumps_canonical, from_tree, to_tree
from scistack.objects.hashing import hash_bytes, hash_object
from scistack.objects.store import ObjectStore, hash_value

CALL_FORMAT = 1
_SCALARS = (int, float, str, bool, type(None))
_VAR_POSITIONAL = inspect.Parameter.VAR_POSITIONAL
_VAR_KEYWORD = inspect.Parameter.VAR_KEYWORD


@dataclass(slots=True)
class BoundInput:
    """One argument of a call: the plain value the function gets, and how lineage sees it."""

    name: str
    value: Any
    oid: str
    record: dict[str, Any]
    params: dict[str, Any] = field(default_factory=dict)
    container: Container | None = None  # a list/tuple/dict argument holding inputs


@dataclass(frozen=True, slots=True)
class Container:
    """A list, tuple or dict argument that holds loaded values or earlier results, as a call
    stores it: its canonical JSON (`json`: each input a ``{"$ref": oid}``, each constant inline,
    an array among them a ``{"$ref"}`` to its own object, one of `constants`) and its inputs by
    path (`items`)."""

    json: bytes
    items: dict[str, BoundInput]
    constants: tuple[Any, ...]


def bind(
    signature: inspect.Signature, args: tuple, kwargs: dict, ignore: frozenset[str] = frozenset(),
    plan: Plan | None = None,
) -> tuple[inspect.BoundArguments, dict[str, BoundInput]]:
    """The arguments as given (to call with), and the lineage view of those that count.

    The lineage view binds defaults, keys ``**kwargs`` entries by their own names and leaves
    out `ignore`d names. `plan`: `positional_plan(signature)`, kept by the caller (a lineage
    function makes it once).
    """
    if plan is None:
        plan = _plan_of(signature)
    inputs = positional_inputs(plan, args, kwargs, ignore)
    if inputs is not None:
        return positional_bound(signature, plan, args), inputs
    bound = signature.bind(*args, **kwargs)
    given = bound.arguments
    inputs = {}
    for name, param in signature.parameters.items():
        if param.kind is _VAR_KEYWORD:
            for key, value in given.get(name, {}).items():
                label = keyword_label(signature, name, key)
                if label not in ignore and key not in ignore:
                    inputs[label] = describe(label, value)
        elif name in ignore:
            continue
        elif name in given:
            _describe_into(inputs, name, given[name], param)
        elif param.kind is _VAR_POSITIONAL:
            inputs[name] = describe(name, ())
        elif param.default is not param.empty:
            _describe_into(inputs, name, param.default, param)
    return bound, inputs


@dataclass(frozen=True, slots=True)
class Plan:
    """How `bind` binds positional arguments of a signature: its parameters and their names
    when all are plain (positional-or-keyword), and how many have no default (-1: not all
    plain; `bind` then takes the general way, which raises the usual TypeError)."""

    params: tuple[inspect.Parameter, ...]
    names: tuple[str, ...]
    required: int


def positional_inputs(plan: Plan, args: tuple, kwargs: dict, ignore: frozenset[str] = frozenset()
                      ) -> dict[str, BoundInput] | None:
    """`bind`'s lineage view of the common call `f(a, b)` of a function whose parameters are
    all plain (positional-or-keyword), without bind's general checks or its loop over the
    signature (a cache hit binds ~1.5 us faster); None for any other call (`bind` then takes
    the general way). The arguments as given are `positional_bound`'s, made only when the
    function runs: a cache hit never needs them."""
    if kwargs or plan.required < 0 or not plan.required <= len(args) <= len(plan.names):
        return None
    inputs: dict[str, BoundInput] = {}
    given = len(args)
    for i, (name, param) in enumerate(zip(plan.names, plan.params)):
        if name not in ignore:  # (past the given ones, each has a default)
            _describe_into(inputs, name, args[i] if i < given else param.default, param)
    return inputs


def positional_bound(signature: inspect.Signature, plan: Plan, args: tuple) -> inspect.BoundArguments:
    """The arguments as given of a call `positional_inputs` described."""
    return inspect.BoundArguments(signature, dict(zip(plan.names, args)))  # type: ignore[arg-type]


def positional_plan(signature: inspect.Signature) -> Plan:
    """`bind`'s plan for `signature` (see `Plan`)."""
    params = tuple(signature.parameters.values())
    if not all(p.kind is _POSITIONAL_OR_KEYWORD for p in params):
        return Plan((), (), -1)
    return Plan(params, tuple(p.name for p in params), sum(p.default is p.empty for p in params))


def _plan_of(signature: inspect.Signature) -> Plan:
    """The plan of a signature whose caller keeps none, remembered per signature object."""
    known = _PLANS.get(id(signature))
    if known is None or known[0] is not signature:
        known = _PLANS[id(signature)] = (signature, positional_plan(signature))  # (the signature
    return known[1]  # is kept: its id is never reused)


_POSITIONAL_OR_KEYWORD = inspect.Parameter.POSITIONAL_OR_KEYWORD
_PLANS: dict[int, tuple[inspect.Signature, Plan]] = {}


def _describe_into(
    inputs: dict[str, BoundInput], name: str, value: Any, param: inspect.Parameter
) -> None:
    try:
        inputs[name] = describe(name, value)
    except UnsupportedValueError:
        if value is not param.default:
            raise
        # A sentinel default (np._NoValue): part of the function's definition, so of its identity.


def keyword_label(signature: inspect.Signature, varkw: str, key: str) -> str:
    """The lineage name of an extra keyword argument (its own name unless that is taken)."""
    return f"{varkw}[{key}]" if key in signature.parameters else key


def plain_arguments(
    signature: inspect.Signature, bound: inspect.BoundArguments, inputs: dict[str, BoundInput]
) -> tuple[tuple, dict[str, Any]]:
    """Positional and keyword arguments to call the function with: plain values only."""
    plain: dict[str, Any] = {}
    for name, value in bound.arguments.items():
        if signature.parameters[name].kind is _VAR_KEYWORD:
            plain[name] = {}
            for key, item in value.items():
                label = keyword_label(signature, name, key)
                plain[name][key] = inputs[label].value if label in inputs else unwrap_input(item)
        else:
            plain[name] = inputs[name].value if name in inputs else unwrap_input(value)
    call = inspect.BoundArguments(signature, plain)  # type: ignore[arg-type]
    return call.args, call.kwargs


def _hook(value: Any) -> Any:
    """A loaded variable's or an earlier result's `__scistack_input__` (None for anything else,
    a variable class included: it has the method too, unbound)."""
    return None if isinstance(value, type) else getattr(value, "__scistack_input__", None)


def unwrap_input(value: Any) -> Any:
    """A loaded variable or an earlier result as its plain value; anything else unchanged."""
    hook = _hook(value)
    return hook()[0] if hook is not None else value


def unwrap_inputs(value: Any) -> Any:
    """`value` with every loaded variable or earlier result inside a list, tuple or dict (at
    any depth) replaced by its plain value: what saving such a container stores."""
    kind = type(value)
    if kind is list or kind is tuple:
        return kind(unwrap_inputs(item) for item in value)
    if kind is dict:
        return {key: unwrap_inputs(item) for key, item in value.items()}
    return unwrap_input(value)


def describe(name: str, value: Any) -> BoundInput:
    """Unwrap a loaded variable or an earlier result to its value; hash constants."""
    kind = type(value)
    if kind in _MEMO_KINDS and (kind is not str or len(value) <= 256):  # a scalar constant, as each
        # call of a loop or a for_each passes it again (an exact builtin: no hook, no class).
        # Keyed by the value, but a float zero or NaN by its repr (-0.0 and 0.0 are equal, and
        # differ; each NaN is a key of its own): any other two equal floats are the same
        # float, and `repr` of each was ~1.5k instructions of a cache hit
        memo_key = (kind, repr(value) if kind is float and not (value and value == value) else value)
        found = _CONSTANTS.get(memo_key)
        if found is None:
            tree = to_tree(value, hash_value)
            found = (hash_object("json", [dumps_canonical(tree)]), tree)
            if len(_CONSTANTS) >= _MEMO_SIZE:
                _CONSTANTS.clear()
            _CONSTANTS[memo_key] = found
        return BoundInput(name, value, found[0], {"oid": found[0], "const": found[1]})
    # (a class or a container only can hold a variable class: the common argument, a loaded
    # value or a number, is not asked; nor is `_hook` called for it: a cache hit's calls)
    if (kind in _CONTAINERS or isinstance(value, type)) and _holds_variable_class(value):
        raise InvalidMetadataError(
            f"{name} = {value!r} holds a variable class inside a constant; give the class itself "
            f"(inputs={{{name!r}: Var}}) to load it at each combination, Merge(A, B) for several "
            "variables side by side, or a loaded value (Var.load(...)) in a direct call")
    hook = None if isinstance(value, type) else getattr(value, "__scistack_input__", None)  # (`_hook`)
    if hook is not None:
        parts = hook()
        plain, oid, var, addr, call, params = parts if len(parts) == 6 else _input_parts(parts)
        if oid is None:  # an unsaved variable or result: treat its value as a constant
            return describe(name, plain)
        _check_unchanged(name, plain, oid, var)
        record: dict[str, Any] = {"oid": oid, "var": var, "addr": addr} if var else {"oid": oid}
        if call:
            record["call"] = call
        return BoundInput(name, plain, oid, record, dict(params) if params else {})
    if kind in _CONTAINERS and _holds_inputs(value):
        return _describe_container(name, value)
    if isinstance(value, _SCALARS) or _is_number(value) or (type(value) in (list, tuple, dict)
                                                             and len(value) <= 16):
        # Small constants are stored as canonical JSON: one tree gives both the record's
        # inline copy and the oid (the same bytes `hash_value` would encode and hash).
        tree = to_tree(value, hash_value)
        oid = hash_object("json", [dumps_canonical(tree)])
        return BoundInput(name, value, oid, {"oid": oid, "const": tree})
    oid = hash_value(value)
    return BoundInput(name, value, oid, {"oid": oid})


def _is_number(value: Any) -> bool:
    """A numpy bool or number (`low_hz` taken from `np.arange(10, 50, 10)` is an np.int64):
    recorded inline like a Python number, so it is a lineage parameter too. Its oid is the
    one it had as a stored object (the same canonical bytes), so cached calls still match."""
    return isinstance(value, (np.bool_, np.integer, np.floating)) and not isinstance(value, np.timedelta64)


# A scalar constant's oid and tree, memoised (immutable values of exact builtin types only;
# subclasses and numpy scalars take the general path).
_MEMO_KINDS = frozenset({int, float, str, bool, type(None)})
_CONTAINERS = frozenset({list, tuple, dict})
_MEMO_SIZE = 4096
_CONSTANTS: dict[tuple[type, Any], tuple[str, Any]] = {}


def is_frozen(value: Any) -> bool:
    """True for an array nobody can write through (itself and every array it views)."""
    while isinstance(value, np.ndarray):
        if value.flags.writeable:
            return False
        value = value.base
    return True


def freeze(value: Any) -> Any:
    """Make an array (and the arrays it views) read-only; other values pass unchanged."""
    array = value
    while isinstance(array, np.ndarray):
        array.flags.writeable = False
        array = array.base
    return value


def _check_unchanged(name: str, plain: Any, oid: str, var: str | None) -> None:
    """A writeable array keyed by a known oid could have been changed in place: verify it.

    Loaded values and results are read-only and skip this (their oid is trusted, so a 100 MB
    input is never re-hashed); an array still owned by the caller (the one given to `save`)
    is re-hashed, because keying it by a stale oid would poison the cache for everyone.
    """
    if isinstance(plain, np.ndarray) and not is_frozen(plain) and hash_value(plain) != oid:
        what = f"the {var} value" if var else "the earlier result"
        raise LineageError(
            f"argument {name!r}: {what} was changed in place after it was saved or computed (its "
            f"data no longer matches object {oid[:12]}), so its lineage would be wrong. Save the "
            "changed data as a new version, or pass a plain copy (np.array(x.data))"
        )


def _input_parts(parts: tuple) -> tuple:
    """Inputs report (value, oid, var, addr[, call, params])."""
    return tuple(parts) + (None,) * (6 - len(parts))


def _holds_variable_class(value: Any, depth: int = 1) -> bool:
    """Whether `value` is, or a list/tuple/dict holds (one level down: the usual slip, `[A]`;
    a long list of numbers is not walked twice), a variable class."""
    if isinstance(value, type):
        return hasattr(value, "__scistack_input__") and hasattr(value, "load_all")
    if depth and type(value) in (list, tuple, dict):
        items = value.values() if type(value) is dict else value
        return any(isinstance(v, type) and _holds_variable_class(v, 0) for v in islice(items, 64))
    return False


def _holds_inputs(value: Any) -> bool:
    """Whether a list/tuple/dict holds a loaded variable or an earlier result, at any depth."""
    items = value.values() if type(value) is dict else value
    for item in items:
        if _hook(item) is not None:
            return True
        if type(item) in (list, tuple, dict) and _holds_inputs(item):
            return True
    return False


def _describe_container(name: str, value: Any) -> BoundInput:
    """A container of inputs: unwrap each, key by the JSON tree with inputs as oid refs."""
    items: dict[str, BoundInput] = {}
    constants: list[Any] = []
    refs: dict[str, None] = {}  # the constants' oids, once each, in order

    def child(value: Any) -> str:
        constants.append(value)
        oid = hash_value(value)
        refs[oid] = None
        return oid

    def walk(item: Any, path: str) -> tuple[Any, Any]:
        if _hook(item) is not None:
            described = describe(path, item)
            if "const" in described.record or not _is_input(described.record):
                return described.value, to_tree(described.value, child)
            items[path] = described
            return described.value, {"$ref": described.oid}
        kind = type(item)
        if kind is list or kind is tuple:
            pairs = [walk(v, f"{path}[{i}]") for i, v in enumerate(item)]
            plain = kind(p for p, _ in pairs)
            tree = [t for _, t in pairs]
            return plain, (tree if kind is list else {"$tuple": tree})
        if kind is dict and all(type(k) is str and not k.startswith("$") for k in item):
            pairs = {k: walk(v, f"{path}[{k}]") for k, v in item.items()}
            return {k: p for k, (p, _) in pairs.items()}, {k: t for k, (_, t) in pairs.items()}
        return item, to_tree(item, child)

    plain, tree = walk(value, name)
    text = dumps_canonical(tree)
    oid = hash_object("json", [text])
    params = agreed_params(item.params for item in items.values())
    # `refs`: the objects the stored tree names besides its items (its constants' own objects),
    # named again in the record so that gc keeps them even were the tree lost; the key also
    # says the tree was stored (records from before lack it), so a lost one is damage
    record = {"oid": oid, "items": {path: b.record for path, b in items.items()},
              "refs": [{"$ref": ref} for ref in refs]}
    return BoundInput(name, plain, oid, record, params, Container(text, items, tuple(constants)))


def _is_input(record: dict[str, Any]) -> bool:
    return "var" in record or "call" in record or "items" in record


def call_key(identity_digest: str, inputs: dict[str, BoundInput]) -> str:
    """The cache key of a call."""
    oids = {}
    for name, b in inputs.items():  # (a loop: a comprehension makes a function each call)
        oids[name] = b.oid
    return key_from_oids(identity_digest, oids)


def key_from_oids(identity_digest: str, oids: dict[str, str]) -> str:
    """The cache key of a call from its function identity and its inputs' oids by name: the
    hash of the canonical JSON `{"args": oids, "fn": identity_digest}`, built directly (a
    cached for_each computes one per combination; a property test pins it to the encoder).
    Each name, oid and digest is quoted once (`_QUOTED`): a function's names and identity and
    a constant's oid are the same in every call, and quoting them again was ~3k instructions
    of a cache hit."""
    try:
        names = sorted(oids) if type(identity_digest) is str else None
    except TypeError:  # (names of several types: the encoder says what is wrong)
        names = None
    if names is not None:
        quoted = _QUOTED
        parts = ['{"args":{']
        for name in names:  # (one loop checks and writes: a cache hit makes one key)
            oid = oids[name]
            if type(name) is not str or type(oid) is not str:
                break
            # (a quoted text is never empty: `or` asks the memo's miss only)
            parts += (quoted.get(name) or _quoted(name), ":", quoted.get(oid) or _quoted(oid), ",")
        else:
            if names:
                parts.pop()  # the last ","
            parts += ('},"fn":', quoted.get(identity_digest) or _quoted(identity_digest), "}")
            return hash_bytes("".join(parts).encode("ascii"))
    return hash_bytes(dumps_canonical({"args": oids, "fn": identity_digest}))


def record_call_key(index: Any, call_oid: str, record: Callable[[], Any]) -> str | None:
    """The call key of the call record `call_oid`: the one the call cache named it under
    (`Index.call_key_of`), else made again from the record (`key_from_oids` of its function
    identity and inputs' oids: a record the cache never named, as a twin's own, one written
    elsewhere, or one of a compacted journal). `record()` gives the record (a `CallRecord`),
    asked only then; None from it, or a record that cannot be read or keyed (damaged), has
    no key: None."""
    key = index.call_key_of(call_oid)
    if key is not None:
        return key
    try:
        call = record()
        return None if call is None else key_from_oids(call.function.identity, call.input_oids)
    except (ScistackError, LookupError, TypeError):
        return None


_QUOTED: dict[str, str] = {}  # text -> `_quote(text)`, for texts of up to `_QUOTED_LONGEST`
_QUOTED_SIZE = 4096
_QUOTED_LONGEST = 128


def _quoted(text: str) -> str:
    """`_quote(text)`, remembered in `_QUOTED` (emptied when full: a loaded input's oid is new
    in each call)."""
    found = _quote(text)
    if len(text) <= _QUOTED_LONGEST:
        if len(_QUOTED) >= _QUOTED_SIZE:
            _QUOTED.clear()
        _QUOTED[text] = found
    return found


_encode_ascii = json.encoder.encode_basestring_ascii


def _quote(text: str) -> str:
    """`text` as a JSON string, exactly as json's `encode_basestring_ascii` writes it. An oid,
    a digest or a plain name (ASCII letters and digits: nothing to escape) is written as it
    is: the encoder's two passes over each character cost ~2.9k instructions for a 64-digit
    oid, and a cache hit's key quotes three (~3% of the hit, by callgrind); the check here
    (an O(1) ASCII flag, a copy, a byte-table scan) ~1k. Anything else goes to the encoder."""
    if text.isascii() and text.encode().isalnum():
        return f'"{text}"'
    return _encode_ascii(text)


def key_maker(identity_digest: str, fixed: dict[str, str], varying: list[str]) -> Callable[[list[str]], str]:
    """`key_from_oids` for many calls of one function whose arguments `fixed` (name -> oid)
    are the same every time: the returned function takes the oids of `varying` (in that
    order) and builds the same key with the constant parts joined once (a cached for_each
    computes one per combination). Falls back to `key_from_oids` for anything unusual."""
    names = sorted([*fixed, *varying])
    plain = (type(identity_digest) is str and len(set(names)) == len(names)
             and all(type(n) is str for n in names) and all(type(o) is str for o in fixed.values()))
    if not plain:
        return lambda oids: key_from_oids(identity_digest, {**fixed, **dict(zip(varying, oids))})
    slot = {name: i for i, name in enumerate(varying)}
    # the canonical text as constant pieces around the varying oids: pieces[0] oid pieces[1] ...
    pieces, order, text = [], [], '{"args":{'
    for n, name in enumerate(names):
        text += "," if n else ""
        if name in slot:
            pieces.append(text + f"{_quote(name)}:")
            order.append(slot[name])
            text = ""
        else:
            text += f"{_quote(name)}:{_quote(fixed[name])}"
    pieces.append(text + f'}},"fn":{_quote(identity_digest)}}}')
    if len(order) == 1:
        head, tail, at = pieces[0], pieces[1], order[0]
        return lambda oids: hash_bytes((head + _quote(oids[at]) + tail).encode("ascii"))

    def key(oids: list[str]) -> str:
        parts = [pieces[0]]
        for piece, i in zip(pieces[1:], order):
            parts += (_quote(oids[i]), piece)
        return hash_bytes("".join(parts).encode("ascii"))

    return key


def agreed_params(parts: Iterable[dict[str, Any]]) -> dict[str, Any]:
    """The lineage parameters of values used together (a call's inputs, an aggregate's
    members, a merge's parts): each one they give, except one they disagree on. A sum of
    sessions filtered at `low_hz` 10 and 20 had taken the last one's 20, so
    `load(low_hz=20)` found it and `load(low_hz=10)` did not."""
    params: dict[str, Any] = {}
    torn: set[str] = set()
    for part in parts:
        for key, value in part.items():
            if key in params and not _same_value(params[key], value):
                torn.add(key)
            params.setdefault(key, value)
    return {k: v for k, v in params.items() if k not in torn}


def _same_value(a: Any, b: Any) -> bool:
    return a == b or (a != a and b != b)  # (two NaNs agree)


def flatten_params(fn_name: str, inputs: dict[str, BoundInput]) -> dict[str, Any]:
    """This call's scalar constants as `fn.param`, plus every upstream call's parameters.

    `fn` is the function's own name, not its qualified name: a method or a function defined
    inside another is still queried as ``load(**{"bandpass.low_hz": 20})``.
    """
    return _flattened(fn_name, [(name, b.record, b.params) for name, b in inputs.items()])


def params_later(fn_name: str, inputs: dict[str, BoundInput]) -> Callable[[], dict[str, Any]]:
    """`flatten_params` when first asked for: a cache hit's result is seldom asked (2 of a
    hit's ~50 us). It keeps the inputs' records, never their values (a result must not hold
    a large input alive)."""
    parts = []
    for name, b in inputs.items():  # (a loop and a partial: a comprehension and a lambda make
        parts.append((name, b.record, b.params))  # two functions each call)
    return functools.partial(_flattened, fn_name, parts)


def _flattened(fn_name: str, inputs: list[tuple[str, dict[str, Any], dict[str, Any]]]) -> dict[str, Any]:
    fn_name = fn_name.rsplit(".", 1)[-1]
    params = agreed_params(upstream for _, _, upstream in inputs)
    for name, record, _ in inputs:
        if "const" not in record or _is_input(record):
            continue
        const = record["const"]
        if isinstance(const, dict) and "$np" in const:
            const = const["$np"][1]  # a numpy scalar: queryable as the plain number
        if isinstance(const, _SCALARS) or (isinstance(const, dict) and const.keys() == {"$float"}):
            params[f"{fn_name}.{name}"] = const  # (a tag: nan or an infinity, `high_hz=np.inf`)
    # as recorded (journal, call record): JSON has no NaN or infinity, so an upstream one
    # (read back as the float, `RefRecord.params`) is tagged again
    return tagged_params(params)


def store_constants(store: ObjectStore, inputs: dict[str, BoundInput]) -> None:
    """Constants (arrays, containers) are stored for provenance; inline scalars need nothing.
    A container of inputs is stored as its tree (its constants inline, its inputs as refs).
    One already stored is made young (`freshen`, as the put it replaces): a lab's `contains`
    answers from this machine's cache, and a constant the bucket lost was named, not put."""
    for b in inputs.values():
        if b.container is not None:
            if not store.freshen(b.oid):
                for constant in b.container.constants:  # (children before the tree that names them)
                    store.put_value(constant)
                store.put("json", b.container.json)
        elif _is_input(b.record) or isinstance(b.value, _SCALARS) or store.freshen(b.oid):
            continue
        else:
            store.put_value(b.value)


def input_origin(record: dict[str, Any], *, placed: bool = False) -> tuple:
    """Where a bound input came from (variable, address, the call that made it, the file a
    `PathInput` read; each merged part and container item alike): `recorded_origin` of the
    input a call record keeps for it. `placed`: the file as (absolute path, path relative to
    the project's folder or None), for `same_place`."""
    merge, items = record.get("merge"), record.get("items")  # (mostly neither: a hit's few us)
    file = (record.get("file"), record.get("project_path")) if placed else record.get("file")
    return (record.get("var"), _plain(record.get("addr")), record.get("call"), file,
            tuple(input_origin(part, placed=placed) for part in merge) if merge else (),
            tuple(sorted((str(path), input_origin(item, placed=placed)) for path, item in items.items()))
            if items else ())


def origins_digest(inputs: dict[str, BoundInput]) -> str:
    """A digest of where the bound inputs came from (each `input_origin`, by input name):
    what a call-cache entry keeps, so that a hit on inputs of the same origins knows, without
    reading the record (~50 us), that it names them as its own (`same_origins`). Written by
    orjson, not as the origins' `repr` (a hit's 7 us to 1.5: the nested tuples' `repr` alone
    took 3.4); a value JSON has no type for is written with its type's name, and an int
    orjson cannot write (beyond 64 bits) makes it the `repr` of the origins."""
    ordered = sorted(inputs.items())
    trees = []
    for name, b in ordered:  # (a loop: a comprehension makes a function each call)
        trees.append((name, _origin_tree(b.record)))
    try:
        text = orjson.dumps(trees, default=_typed, option=orjson.OPT_SORT_KEYS | orjson.OPT_NON_STR_KEYS)
    except orjson.JSONEncodeError:
        text = repr([(name, input_origin(b.record)) for name, b in ordered]).encode()
    return hash_bytes(text)


def _origin_tree(record: dict[str, Any]) -> tuple:
    """`input_origin` as JSON can hold it: the address stays a dict (its keys sorted), and
    an int and a float of the same value differ there as they do in `_plain`."""
    merge, items = record.get("merge"), record.get("items")
    return (record.get("var"), record.get("addr"), record.get("call"), record.get("file"),
            [_origin_tree(part) for part in merge] if merge else None,
            {str(path): _origin_tree(item) for path, item in items.items()} if items else None)


def _typed(value: Any) -> dict[str, str]:
    # (a numpy scalar in an address, say: its type named, as `_plain` names it)
    return {f"${type(value).__name__}": repr(value)}


def recorded_origin(item: Any, *, placed: bool = False) -> tuple:
    """`input_origin` of an input as a call record holds it (a `CallInput`)."""
    addr = from_tree(item.addr, lambda oid: oid) if item.addr is not None else None
    file = (item.extra.get("file"), item.extra.get("project_path")) if placed else item.extra.get("file")
    return (item.var, _plain(addr), item.call, file,
            tuple(recorded_origin(part, placed=placed) for part in item.merge) if item.merge else (),
            tuple(sorted((str(path), recorded_origin(i, placed=placed)) for path, i in item.items.items()))
            if item.items else ())


def own_record(call: Any, projects: Any) -> bool:
    """Whether the call record `call` (a `CallRecord`) is of the reading project (its
    `project_ids`; a record naming none counts as its own, as `filecheck` takes it): only
    then does a raw file's `project_path` name a file of this checkout. None: never."""
    if projects is None:
        return False
    made = getattr(call.function, "project", None)
    return made is None or made in projects


def same_place(here: tuple[Any, Any], there: tuple[Any, Any], own: bool) -> bool:
    """Whether a `PathInput` file bound here, (absolute path, path relative to the project's
    folder), is the one a record read, the same pair as recorded. A record of this project
    (`own`) naming the path relative to the project's folder read it there: two lab machines
    (or a moved project) hold the project, and its raw folder, at other absolute paths, and
    where a machine found the file is no part of the input's place (each machine's run had
    recorded every call again, and `status` and `why` on the other called its files gone).
    Else (a record from before, another project's) the absolute paths."""
    if own and isinstance(here[1], str) and isinstance(there[1], str):
        return here[1] == there[1]
    return here[0] == there[0]


def raw_file_here(extra: dict[str, Any], call: Any, root: Any, projects: Any) -> str:
    """Where this checkout finds the `PathInput` file a call record's input (its `extra`)
    read: its path relative to the project's folder joined to this checkout's folder `root`
    when the record is of this project (`own_record`) and names one, else the absolute path
    as recorded. Another lab machine's record names that machine's absolute path."""
    rel = extra.get("project_path")
    if rel and root is not None and own_record(call, projects):
        here = in_checkout(rel, root)
        if here is not None:
            return here
    return str(extra.get("file") or extra["path"])


def _same_origin(here: tuple, there: tuple, own: bool) -> bool:
    """Two `placed` origins alike, their files by `same_place`."""
    if here[:3] != there[:3] or len(here[4]) != len(there[4]) or len(here[5]) != len(there[5]):
        return False
    if here[3] != there[3] and not (isinstance(here[3], tuple) and isinstance(there[3], tuple)
                                    and same_place(here[3], there[3], own)):
        return False
    return all(_same_origin(a, b, own) for a, b in zip(here[4], there[4])) and \
        all(p == q and _same_origin(a, b, own) for (p, a), (q, b) in zip(here[5], there[5]))


def same_origins(records: dict[str, dict[str, Any]], call: Any, *, files: bool = True,
                 projects: Any = None) -> bool:
    """Whether the call record `call` names these bound inputs (by their records) as its own:
    a cache hit on the same values at another address, or made by another call, does not.
    `files=False`: where a `PathInput` file is does not count (the same raw files, by content,
    in a moved folder or an importing project's copy). `projects`: the reading project's ids
    (`Database.project_ids`): a record of it names a raw file's place by its path relative to
    the project's folder where both name one (`same_place`)."""
    if files:
        if projects is not None:
            own = own_record(call, projects)
            return all(name in call.arguments and _same_origin(
                input_origin(record, placed=True), recorded_origin(call.arguments[name], placed=True), own)
                for name, record in records.items())
        return all(name in call.arguments and input_origin(record) == recorded_origin(call.arguments[name])
                   for name, record in records.items())
    return all(name in call.arguments and
               _placeless(input_origin(record)) == _placeless(recorded_origin(call.arguments[name]))
               for name, record in records.items())


def raw_places(call: Any) -> list[tuple[str, str]]:
    """(path as shown, absolute path) of each `PathInput` file a call record (a `CallRecord`)
    names, sorted."""
    return sorted((str(r.extra["path"]), str(r.extra.get("file") or r.extra["path"]))
                  for item in call.inputs.values() for _, r in item.records() if "path" in r.extra)


def same_raw_names(old: list[tuple[str, str]], new: list[tuple[str, str]]) -> bool:
    """Whether a later record of a call (its `raw_places` `new`) read the raw files an earlier
    one (`old`) read under the same paths as shown, at other absolute paths: the files of an
    imported bundle put back with `raw_to` (the bundle's records name the exporting project's
    folder), a moved project. The later record then says where the files are now. Files with
    the same bytes at other addresses (one call key) are shown under other paths: never taken
    for these."""
    return bool(old) and [s for s, _ in old] == [s for s, _ in new] and old != new


def read_at(call: Any, places: dict[tuple[str, str], str]) -> Any:
    """The call record `call` (a `CallRecord`) as made where its `PathInput` files are now:
    each file `places` names by (path as shown, oid) read at the absolute path it gives, the
    rest as recorded (the files that `raw_places` lists). An imported bundle's raw files put
    back with `raw_to` (`export.importer`): its record then says what a cached run there
    records again (`foreach.engine`), and `status`/`why` judge the files where they are, by
    `same_raw_names` (the bundle's records name the exporting project's folder)."""
    def moved(item: Any) -> Any:
        extra = item.extra
        there = places.get((str(extra.get("path")), item.oid)) if "path" in extra else None
        if there is not None:
            item = dataclasses.replace(item, extra={**extra, "file": there})
        if item.items:
            item = dataclasses.replace(item, items={p: moved(i) for p, i in item.items.items()})
        return item

    return dataclasses.replace(call, arguments={n: moved(i) for n, i in call.arguments.items()})


def bound_origins(call: Any) -> str:
    """The `origins_digest` of the inputs a call record (a `CallRecord`) names, as its cache
    entry keeps it (`read_at`'s record: a run there reads no record to know it is its own)."""
    return origins_digest({n: BoundInput(n, None, i.oid, i.to_value()) for n, i in call.arguments.items()})


def relocated(old: Any, new: Any) -> bool:
    """Whether the call record `new` (a later record of the same call key) is `old` with its
    raw files found elsewhere: the same inputs but for where a `PathInput` file is
    (`same_origins(files=False)`), read under the same shown paths at other absolute paths
    (`same_raw_names`). `status` and `why` judge a ref naming `old` by `new` only then: files
    with the same bytes at other addresses (one call key, one cache entry) are shown under
    other paths, and a value at another address is another input, so another combination's
    record is never taken for this one's. Both are `CallRecord`s."""
    return (same_raw_names(raw_places(old), raw_places(new)) and old.arguments.keys() == new.arguments.keys()
            and all(_placeless(recorded_origin(item)) == _placeless(recorded_origin(new.arguments[name]))
                    for name, item in old.arguments.items()))


def _placeless(origin: tuple) -> tuple:
    """An `input_origin` without the file a `PathInput` read (its merged parts' and items' too)."""
    var, addr, call, _, merge, items = origin
    return (var, addr, call, None, tuple(_placeless(m) for m in merge),
            tuple((path, _placeless(i)) for path, i in items))


def _plain(addr: Any) -> Any:
    return tuple(sorted((str(k), type(v).__name__, v) for k, v in addr.items())) if isinstance(addr, dict) else addr

