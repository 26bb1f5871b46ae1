"""`@lineage_fcn` (alias `thunk`, class `Thunk`): cache a function's calls and record lineage.

```python
@lineage_fcn
def bandpass(signal, low_hz, high_hz): ...
filtered = bandpass(RawEMG.load(subject=1, session="pre"), 20, 450)   # runs, records
filtered = bandpass(RawEMG.load(subject=1, session="pre"), 20, 450)   # cache hit
FilteredEMG.save(filtered, subject=1, session="pre")                  # keeps the lineage
```
The wrapped function gets plain values; it returns a `LineageResult` (a tuple of them for a
tuple return) that behaves like its value and carries the call's lineage. A cache hit is a
dict lookup in the journal fold plus one object read. Without a configured database, calls
are cached and recorded in memory for the life of the process.
"""

from __future__ import annotations

import copy
import functools
import importlib
import inspect
import operator
import time
import weakref
from typing import Any, Callable

import numpy as np

from scistack.database import Database, current_database
from scistack.errors import LineageError, ObjectNotFoundError, UnsupportedValueError
from scistack.index import utc_now
from scistack.lineage._graph import unwrap
from scistack.lineage._packages import is_project_module
from scistack.lineage.calls import (
    CALL_FORMAT,
    BoundInput,
    bind,
    call_key,
    describe,
    flatten_params,
    freeze,
    is_frozen,
    key_from_oids,
    plain_arguments,
    store_constants,
    unwrap_input,
)
from scistack.lineage.codetree import code_tree, constant_values, source_files, tree_record
from scistack.lineage.env import capture_env, imported_modules
from scistack.lineage.identity import FunctionIdentity, function_identity, normalised_source
from scistack.objects import MemoryObjectStore, ObjectStore
from scistack.objects.canonical_json import dumps_canonical
from scistack.objects.codec import value_kind
from scistack.summary import summarize


class _MemoryCache:
    """Where lineage goes with no database: a store and a call cache for this process."""

    def __init__(self) -> None:
        self.store: ObjectStore = MemoryObjectStore()
        self.calls: dict[str, dict[str, Any]] = {}

    def lookup(self, key: str) -> dict[str, Any] | None:
        return self.calls.get(key)

    def record(self, key: str, call_oid: str, fn: str, outs: list[str], *, multi: bool = False) -> None:
        self.calls[key] = {"call": call_oid, "fn": fn, "outs": outs, **({"multi": True} if multi else {})}


class _DatabaseCache:
    def __init__(self, db: Database) -> None:
        self.store = db.store
        self.db = db

    def lookup(self, key: str) -> dict[str, Any] | None:
        return self.db.index.lookup_call(key)

    def record(self, key: str, call_oid: str, fn: str, outs: list[str], *, multi: bool = False) -> None:
        self.db.index.put_call(key, call_oid, fn, outs, multi=multi)


MEMORY = _MemoryCache()
_MISSING = object()
_REGISTRY: dict[tuple[Any, str], LineageFunction] = {}


def registered_function(module: str, qualname: str) -> LineageFunction | None:
    """The lineage function of that name created in this process, if any (for `why`)."""
    return _REGISTRY.get((module, qualname))


def lineage_context() -> _MemoryCache | _DatabaseCache:
    """The current database's store and cache, or the process's in-memory ones."""
    db = current_database()
    return _DatabaseCache(db) if db is not None else MEMORY


class LineageFunction:
    """A function whose calls are cached by (code identity, inputs) and recorded as lineage."""

    def __init__(self, fn: Callable, *, version: str | None = None, ignore: tuple[str, ...] = ()) -> None:
        if isinstance(fn, LineageFunction):
            fn = fn.fn
        if not callable(fn):
            raise LineageError(f"lineage_fcn needs a function, got {type(fn).__name__}")
        functools.update_wrapper(self, fn)
        self.fn = fn
        self.version = version
        self.ignore = frozenset((ignore,) if isinstance(ignore, str) else ignore)
        try:
            self.signature = inspect.signature(fn)
        except (TypeError, ValueError):
            self.signature = inspect.Signature([
                inspect.Parameter("args", inspect.Parameter.VAR_POSITIONAL),
                inspect.Parameter("kwargs", inspect.Parameter.VAR_KEYWORD)])
        params = self.signature.parameters.values()
        takes_any = any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params)
        unknown = self.ignore - set(self.signature.parameters)
        if unknown and not takes_any:
            raise LineageError(
                f"ignore= names {sorted(unknown)}, which {self.name} does not take; its "
                f"parameters are {list(self.signature.parameters)}"
            )
        self._code_oids: weakref.WeakKeyDictionary[ObjectStore, dict[str, str | None]] = \
            weakref.WeakKeyDictionary()
        _REGISTRY[(getattr(fn, "__module__", None), getattr(fn, "__qualname__", self.name))] = self

    @property
    def name(self) -> str:
        return getattr(self.fn, "__name__", type(self.fn).__name__)

    def identity(self) -> FunctionIdentity:
        """The function's current identity (source, helpers, constants it reads)."""
        return function_identity(self.fn, version=self.version)

    def bind_inputs(self, args: tuple, kwargs: dict) -> tuple[inspect.BoundArguments, dict[str, BoundInput]]:
        """The arguments as given, and the lineage view of those that count (defaults bound)."""
        return bind(self.signature, args, kwargs, self.ignore)

    def key_for(self, inputs: dict[str, BoundInput], identity: FunctionIdentity | None = None) -> str:
        """The call key for already-described inputs (missing defaults are bound here)."""
        return call_key((identity or self.identity()).digest, self._with_defaults(inputs))

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        bound, inputs = self.bind_inputs(args, kwargs)
        identity = self.identity()
        key = call_key(identity.digest, inputs)
        ctx = lineage_context()
        hit = ctx.lookup(key)
        if hit is not None:
            try:
                return self._results(ctx.store, hit, inputs, identity)
            except ObjectNotFoundError:
                pass  # an output object was garbage-collected: compute again
        return self.run(ctx, bound, inputs, identity, key)

    def run(self, ctx: Any, bound: inspect.BoundArguments, inputs: dict[str, BoundInput],
            identity: FunctionIdentity, key: str) -> Any:
        """Execute on a cache miss and record the call."""
        args, kwargs = plain_arguments(self.signature, bound, inputs)
        started, t0 = utc_now(), time.perf_counter()
        out = self.fn(*args, **kwargs)
        duration = time.perf_counter() - t0
        multi = isinstance(out, tuple)
        given = [b.value for b in inputs.values()]
        outputs = [_immutable(unwrap_input(v), given) for v in (out if multi else (out,))]
        out_oids = [ctx.store.put_value(v) for v in outputs]
        call_oid = self.record_call(ctx.store, identity, inputs, out_oids, started, duration, multi=multi)
        ctx.record(key, call_oid, identity.digest, out_oids, multi=multi)
        results = self._wrap(outputs, out_oids, call_oid, inputs, identity, cached=False)
        return tuple(results) if multi else results[0]

    def record_call(self, store: ObjectStore, identity: FunctionIdentity, inputs: dict[str, BoundInput],
                    out_oids: list[str], started: str, duration: float, *, multi: bool = False) -> str:
        """Store the call record (and the code it ran) and return its oid."""
        inputs = self._with_defaults(inputs)
        store_constants(store, inputs)
        _copy_inputs_from_memory(store, inputs)
        tree = code_tree(self.fn, identity)
        put_code = functools.partial(_put_code, store)
        project = is_project_module(identity.module)
        record = {
            "type": "call",
            "format": CALL_FORMAT,
            "function": {
                "name": identity.name, "module": identity.module, "identity": identity.digest,
                "code": self._code_oid(store, identity), "has_source": identity.has_source,
                "version": identity.pinned_version, "deps": [list(d) for d in identity.deps],
                "note": identity.note, "helpers": tree_record(tree, put_code),
                "constants": constant_values(identity, tree),
            },
            "inputs": {n: b.record for n, b in sorted(inputs.items())},
            "outputs": out_oids,
            "multi": multi,
            "params": flatten_params(identity.name, inputs),
            "env": capture_env(_source_file(self.fn) if project else None,
                               [*imported_modules(identity.module), identity.module.split(".")[0]],
                               lambda diff: store.put("bytes", diff),
                               files=source_files(self.fn, tree) if project else ()),
            "started": started,
            "duration": round(duration, 6),
        }
        return store.put("call", dumps_canonical(record))

    def _with_defaults(self, inputs: dict[str, BoundInput]) -> dict[str, BoundInput]:
        """`inputs` plus the defaults of parameters it lacks (for callers that bind by name)."""
        missing = [p for n, p in self.signature.parameters.items()
                   if n not in inputs and n not in self.ignore and p.default is not p.empty]
        if not missing:
            return inputs
        completed = dict(inputs)
        for param in missing:
            try:
                completed[param.name] = describe(param.name, param.default)
            except UnsupportedValueError:
                pass  # a sentinel default: covered by the function's identity
        return completed

    def _code_oid(self, store: ObjectStore, identity: FunctionIdentity) -> str | None:
        # Per store *object* (weakly): an id() could be reused by a new store lacking the code.
        known = self._code_oids.setdefault(store, {})
        if identity.digest not in known:
            source = identity.source if identity.source is not None else normalised_source(self.fn)
            known[identity.digest] = _put_code(store, source) if source else None
        return known[identity.digest]

    def _results(self, store: ObjectStore, hit: dict[str, Any], inputs: dict[str, BoundInput],
                 identity: FunctionIdentity) -> Any:
        out_oids = hit["outs"]
        outputs = [freeze(store.get_value(oid)) for oid in out_oids]
        results = self._wrap(outputs, out_oids, hit["call"], inputs, identity, cached=True)
        return tuple(results) if hit.get("multi") else results[0]

    def _wrap(self, outputs: list[Any], out_oids: list[str], call_oid: str, inputs: dict[str, BoundInput],
              identity: FunctionIdentity, *, cached: bool) -> list[LineageResult]:
        params = flatten_params(identity.name, inputs)
        return [LineageResult(v, oid, call_oid, params, i, self.name, cached)
                for i, (v, oid) in enumerate(zip(outputs, out_oids))]

    def __repr__(self) -> str:
        return f"<lineage function {self.__module__}.{self.__qualname__}>"

    def __reduce__(self) -> tuple:
        # Workers need the function. Importable ones travel by reference (plain pickle); one
        # defined in __main__ travels by value, which Dask's cloudpickle supports.
        module, qualname = getattr(self.fn, "__module__", None), getattr(self.fn, "__qualname__", "")
        if module and module != "__main__" and "<locals>" not in qualname:
            return (_restore, (module, qualname, self.version, tuple(self.ignore)))
        return (_rebuild, (self.fn, self.version, tuple(self.ignore)))

    def __get__(self, instance: Any, owner: Any = None) -> Any:
        return self if instance is None else functools.partial(self, instance)


Thunk = LineageFunction


def _restore(module: str, qualname: str, version: str | None, ignore: tuple[str, ...]) -> LineageFunction:
    target: Any = importlib.import_module(module)
    for part in qualname.split("."):
        target = getattr(target, part)
    if isinstance(target, LineageFunction):
        return target
    return LineageFunction(target, version=version, ignore=ignore)


def _rebuild(fn: Callable, version: str | None, ignore: tuple[str, ...]) -> LineageFunction:
    return LineageFunction(fn, version=version, ignore=ignore)


def lineage_fcn(fn: Callable | None = None, *, version: str | None = None,
                ignore: tuple[str, ...] | list[str] = ()) -> Any:
    """Decorate (or wrap) a function so its calls are cached and their lineage recorded.

    Parameters
    ----------
    version
        Pin the function's identity by hand: its source no longer counts, only this string.
    ignore
        Parameters that do not affect the result (``verbose``): left out of the cache key.
    """
    names = (ignore,) if isinstance(ignore, str) else tuple(ignore)
    if fn is None:
        return lambda f: LineageFunction(f, version=version, ignore=names)
    return LineageFunction(fn, version=version, ignore=names)


thunk = lineage_fcn


class LineageResult:
    """A computed value with its lineage; behaves like the value where reasonable.

    Arithmetic, comparisons, ``len``, indexing, iteration, ``in``, ``round``, formatting and
    numpy functions (through ``__array__``) act on the value; other attributes are looked up
    on the value (``result.shape``). ``.data`` is the value itself; an array is read-only,
    because downstream calls key it by its oid (copy it to change it).
    """

    __slots__ = ("data", "oid", "call", "params", "output_index", "function_name", "cached")

    def __init__(self, data: Any, oid: str, call: str, params: dict[str, Any], output_index: int,
                 function_name: str, cached: bool) -> None:
        self.data, self.oid, self.call, self.params = data, oid, call, params
        self.output_index, self.function_name, self.cached = output_index, function_name, cached

    @property
    def value(self) -> Any:
        return self.data

    def __scistack_input__(self) -> tuple:
        return self.data, self.oid, None, {}, self.call, self.params

    def __scistack_saveinfo__(self, db: Database) -> Any:
        from scistack.variables import SaveInfo  # noqa: PLC0415 - variables sits above lineage

        _copy_into(db, self)
        return SaveInfo(self.oid, value_kind(self.data), summarize(self.data), self.call, self.params)

    def __repr__(self) -> str:
        state = "cached" if self.cached else "computed"
        return f"<{self.function_name} -> {summarize(self.data)} ({state}, call {self.call[:12]})>"

    def __format__(self, spec: str) -> str:
        return format(self.data, spec) if spec else str(self)

    def __reduce__(self) -> tuple:
        return (LineageResult, (self.data, self.oid, self.call, self.params, self.output_index,
                                self.function_name, self.cached))

    def __copy__(self) -> LineageResult:
        return LineageResult(self.data, self.oid, self.call, self.params, self.output_index,
                             self.function_name, self.cached)

    def __deepcopy__(self, memo: dict) -> LineageResult:
        return LineageResult(copy.deepcopy(self.data, memo), self.oid, self.call, dict(self.params),
                             self.output_index, self.function_name, self.cached)

    # -- behave like the value ------------------------------------------------------------
    def __getattr__(self, name: str) -> Any:
        # Only reached for names that are not slots or methods. A slot read before __init__
        # (unpickling, copy) must fail plainly instead of recursing through self.data.
        try:
            data = object.__getattribute__(self, "data")
        except AttributeError:
            raise AttributeError(name) from None
        return getattr(data, name)

    def __array__(self, dtype: Any = None, copy: Any = None) -> Any:
        return np.asarray(self.data, dtype=dtype)

    def __len__(self) -> int:
        return len(self.data)

    def __iter__(self) -> Any:
        return iter(self.data)

    def __contains__(self, item: Any) -> bool:
        return _unwrap(item) in self.data

    def __getitem__(self, item: Any) -> Any:
        return self.data[item]

    def __float__(self) -> float:
        return float(self.data)

    def __int__(self) -> int:
        return int(self.data)

    def __complex__(self) -> complex:
        return complex(self.data)

    def __index__(self) -> int:
        return operator.index(self.data)

    def __round__(self, ndigits: int | None = None) -> Any:
        return round(self.data) if ndigits is None else round(self.data, ndigits)

    def __bool__(self) -> bool:
        return bool(self.data)

    def __eq__(self, other: Any) -> Any:
        return self.data == _unwrap(other)

    __hash__ = None  # type: ignore[assignment]


def _binary(op: Callable) -> tuple[Callable, Callable]:
    def forward(self: LineageResult, other: Any) -> Any:
        return op(self.data, _unwrap(other))

    def reverse(self: LineageResult, other: Any) -> Any:
        return op(_unwrap(other), self.data)

    return forward, reverse


for _name, _op in [("add", operator.add), ("sub", operator.sub), ("mul", operator.mul),
                   ("truediv", operator.truediv), ("floordiv", operator.floordiv), ("mod", operator.mod),
                   ("pow", operator.pow), ("matmul", operator.matmul), ("and", operator.and_),
                   ("or", operator.or_), ("xor", operator.xor), ("lshift", operator.lshift),
                   ("rshift", operator.rshift)]:
    _fwd, _rev = _binary(_op)
    setattr(LineageResult, f"__{_name}__", _fwd)
    setattr(LineageResult, f"__r{_name}__", _rev)
for _name, _op in [("lt", operator.lt), ("le", operator.le), ("gt", operator.gt), ("ge", operator.ge),
                   ("ne", operator.ne)]:
    setattr(LineageResult, f"__{_name}__", _binary(_op)[0])
LineageResult.__divmod__, LineageResult.__rdivmod__ = _binary(divmod)  # type: ignore[attr-defined]
LineageResult.__neg__ = lambda self: -self.data  # type: ignore[attr-defined]
LineageResult.__pos__ = lambda self: +self.data  # type: ignore[attr-defined]
LineageResult.__abs__ = lambda self: abs(self.data)  # type: ignore[attr-defined]
LineageResult.__invert__ = lambda self: ~self.data  # type: ignore[attr-defined]


_unwrap = unwrap_input


def _immutable(value: Any, inputs: list[Any]) -> Any:
    """A result is keyed by its oid downstream, so its array must not change: make it read-only.

    A fresh array is frozen in place; one that views or is memory of someone else's
    (an input passed straight through, a view of a caller's array) is copied first.
    """
    if not isinstance(value, np.ndarray) or is_frozen(value):
        return value
    if value.base is None and not any(value is v for v in inputs):
        return freeze(value)
    return freeze(value.copy())


def _put_code(store: ObjectStore, source: str) -> str:
    return store.put("code", source.encode("utf-8"))


def _copy_into(db: Database, result: LineageResult) -> None:
    """A result computed before the database was configured lives in memory: copy it over.

    The value, its call record and everything the record names (code, diff, constants,
    upstream calls) are copied, and each call enters the database's call cache, so
    `get_provenance`, `why` and later cache hits work as if it had been computed there.
    """
    store = db.store
    if store.contains(result.oid) and store.contains(result.call):
        return
    _copy_value(MEMORY.store, store, result.oid, result.data)
    _copy_call(MEMORY.store, db, result.call, set())


def _copy_inputs_from_memory(store: ObjectStore, inputs: dict[str, BoundInput]) -> None:
    """Inputs computed in memory before a database was configured: bring their lineage along."""
    if store is MEMORY.store:
        return
    for b in inputs.values():
        for record in (b.record, *b.record.get("items", {}).values()):
            call = record.get("call")
            if call and not store.contains(call) and MEMORY.store.contains(call):
                _copy_value(MEMORY.store, store, record["oid"])
                db = current_database()
                if db is not None and db.store is store:
                    _copy_call(MEMORY.store, db, call, set())


def _copy_call(source: ObjectStore, db: Database, call_oid: str, seen: set[str]) -> None:
    if call_oid in seen or not source.contains(call_oid):
        return
    seen.add(call_oid)
    raw = source.get(call_oid).payload
    call = source.get_value(call_oid)
    fn = call["function"]
    code_oids = [fn.get("code")] + [h.get("code") for h in fn.get("helpers", {}).values()]
    for oid in [*code_oids, call.get("env", {}).get("git", {}).get("diff")]:
        if oid and source.contains(oid):
            obj = source.get(oid)
            db.store.put(obj.kind, obj.payload)
    oids = {}
    for name, item in call["inputs"].items():
        oids[name] = item["oid"]
        for record in (item, *item.get("items", {}).values()):
            _copy_value(source, db.store, record["oid"])
            if record.get("call"):
                _copy_call(source, db, record["call"], seen)
    for oid in call["outputs"]:
        _copy_value(source, db.store, oid)
    db.store.put("call", raw)
    key = key_from_oids(fn["identity"], oids)
    if db.index.lookup_call(key) is None:
        db.index.put_call(key, call_oid, fn["identity"], call["outputs"], multi=bool(call.get("multi")))


def _copy_value(source: ObjectStore, target: ObjectStore, oid: str, value: Any = _MISSING) -> None:
    """Copy one value object (children included) unless the target has it already."""
    if target.contains(oid):
        return
    if source.contains(oid):
        target.put_value(source.get_value(oid))
    elif value is not _MISSING:
        target.put_value(value)


@functools.lru_cache(maxsize=4096)
def _source_file_cached(code: Any) -> str | None:
    return code.co_filename if code is not None else None


def _source_file(fn: Callable) -> str | None:
    return _source_file_cached(getattr(unwrap(fn), "__code__", None))
