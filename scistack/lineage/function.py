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

import functools
import importlib
import inspect
import operator
import time
from typing import Any, Callable

from scistack.database import Database, current_database
from scistack.errors import LineageError
from scistack.index import utc_now
from scistack.lineage.calls import (
    CALL_FORMAT,
    BoundInput,
    bind,
    call_key,
    describe,
    flatten_params,
    store_constants,
)
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

    def record(self, key: str, call_oid: str, fn: str, outs: list[str]) -> None:
        self.calls[key] = {"call": call_oid, "fn": fn, "outs": outs}


class _DatabaseCache:
    def __init__(self, db: Database) -> None:
        self.store = db.store
        self.db = db

    def lookup(self, key: str) -> dict[str, Any] | None:
        return self.db.index.lookup_call(key)

    def record(self, key: str, call_oid: str, fn: str, outs: list[str]) -> None:
        self.db.index.put_call(key, call_oid, fn, outs)


MEMORY = _MemoryCache()
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
        self.ignore = frozenset(ignore)
        try:
            self.signature = inspect.signature(fn)
        except (TypeError, ValueError):
            self.signature = inspect.Signature([
                inspect.Parameter("args", inspect.Parameter.VAR_POSITIONAL),
                inspect.Parameter("kwargs", inspect.Parameter.VAR_KEYWORD)])
        unknown = self.ignore - set(self.signature.parameters)
        if unknown:
            raise LineageError(
                f"ignore= names {sorted(unknown)}, which {self.__name__} does not take; its "
                f"parameters are {list(self.signature.parameters)}"
            )
        self._code_oids: dict[tuple[int, str], str] = {}
        _REGISTRY[(getattr(fn, "__module__", None), getattr(fn, "__qualname__", self.name))] = self

    @property
    def name(self) -> str:
        return getattr(self.fn, "__name__", type(self.fn).__name__)

    def identity(self) -> FunctionIdentity:
        """The function's current identity (source, helpers, constants it reads)."""
        return function_identity(self.fn, version=self.version)

    def bind_inputs(self, args: tuple, kwargs: dict) -> tuple[dict[str, Any], dict[str, BoundInput]]:
        """All arguments by name, and the lineage view of those that count."""
        values = bind(self.signature, args, kwargs, self.ignore)
        return values, {n: describe(n, v) for n, v in values.items() if n not in self.ignore}

    def key_for(self, inputs: dict[str, BoundInput], identity: FunctionIdentity | None = None) -> str:
        """The call key for already-described inputs."""
        return call_key((identity or self.identity()).digest, inputs)

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        values, inputs = self.bind_inputs(args, kwargs)
        identity = self.identity()
        key = call_key(identity.digest, inputs)
        ctx = lineage_context()
        hit = ctx.lookup(key)
        if hit is not None:
            try:
                return self._results(ctx.store, hit["outs"], hit["call"], inputs, cached=True)
            except LookupError:
                pass  # an output object was garbage-collected: compute again
        return self.run(ctx, values, inputs, identity, key)

    def run(self, ctx: Any, values: dict[str, Any], inputs: dict[str, BoundInput],
            identity: FunctionIdentity, key: str) -> Any:
        """Execute on a cache miss and record the call."""
        plain = {n: (inputs[n].value if n in inputs else _unwrap(v)) for n, v in values.items()}
        bound = self.signature.bind_partial()
        bound.arguments.update(plain)
        started, t0 = utc_now(), time.perf_counter()
        out = self.fn(*bound.args, **bound.kwargs)
        duration = time.perf_counter() - t0
        outputs = [_unwrap(v) for v in (out if isinstance(out, tuple) else (out,))]
        out_oids = [ctx.store.put_value(v) for v in outputs]
        call_oid = self.record_call(ctx.store, identity, inputs, out_oids, started, duration)
        ctx.record(key, call_oid, identity.digest, out_oids)
        results = self._wrap(outputs, out_oids, call_oid, inputs, cached=False)
        return results if isinstance(out, tuple) else results[0]

    def record_call(self, store: ObjectStore, identity: FunctionIdentity, inputs: dict[str, BoundInput],
                    out_oids: list[str], started: str, duration: float) -> str:
        """Store the call record (and the code it ran) and return its oid."""
        store_constants(store, inputs)
        source_file = _source_file(self.fn)
        record = {
            "type": "call",
            "format": CALL_FORMAT,
            "function": {
                "name": identity.name, "module": identity.module, "identity": identity.digest,
                "code": self._code_oid(store, identity), "has_source": identity.has_source,
                "version": identity.pinned_version, "deps": [list(d) for d in identity.deps],
                "note": identity.note,
            },
            "inputs": {n: b.record for n, b in sorted(inputs.items())},
            "outputs": out_oids,
            "params": flatten_params(identity.name, inputs),
            "env": capture_env(source_file, imported_modules(identity.module),
                               lambda diff: store.put("bytes", diff)),
            "started": started,
            "duration": round(duration, 6),
        }
        return store.put("call", dumps_canonical(record))

    def _code_oid(self, store: ObjectStore, identity: FunctionIdentity) -> str | None:
        slot = (id(store), identity.digest)
        if slot not in self._code_oids:
            source = identity.source if identity.source is not None else normalised_source(self.fn)
            self._code_oids[slot] = store.put("code", source.encode("utf-8")) if source else None
        return self._code_oids[slot]

    def _results(self, store: ObjectStore, out_oids: list[str], call_oid: str,
                 inputs: dict[str, BoundInput], *, cached: bool) -> Any:
        outputs = [store.get_value(oid) for oid in out_oids]
        results = self._wrap(outputs, out_oids, call_oid, inputs, cached=cached)
        return tuple(results) if len(results) != 1 else results[0]

    def _wrap(self, outputs: list[Any], out_oids: list[str], call_oid: str,
              inputs: dict[str, BoundInput], *, cached: bool) -> list[LineageResult]:
        params = flatten_params(self.name, inputs)
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
    if fn is None:
        return lambda f: LineageFunction(f, version=version, ignore=tuple(ignore))
    return LineageFunction(fn, version=version, ignore=tuple(ignore))


thunk = lineage_fcn


class LineageResult:
    """A computed value with its lineage; behaves like the value where reasonable."""

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

        _copy_into(db.store, self)
        return SaveInfo(self.oid, value_kind(self.data), summarize(self.data), self.call, self.params)

    def __repr__(self) -> str:
        state = "cached" if self.cached else "computed"
        return f"<{self.function_name} -> {summarize(self.data)} ({state}, call {self.call[:12]})>"

    # -- behave like the value ------------------------------------------------------------
    def __getattr__(self, name: str) -> Any:
        return getattr(self.data, name)

    def __array__(self, dtype: Any = None, copy: Any = None) -> Any:
        import numpy as np

        return np.asarray(self.data, dtype=dtype)

    def __len__(self) -> int:
        return len(self.data)

    def __iter__(self) -> Any:
        return iter(self.data)

    def __getitem__(self, item: Any) -> Any:
        return self.data[item]

    def __float__(self) -> float:
        return float(self.data)

    def __int__(self) -> int:
        return int(self.data)

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
                   ("pow", operator.pow), ("matmul", operator.matmul)]:
    _fwd, _rev = _binary(_op)
    setattr(LineageResult, f"__{_name}__", _fwd)
    setattr(LineageResult, f"__r{_name}__", _rev)
for _name, _op in [("lt", operator.lt), ("le", operator.le), ("gt", operator.gt), ("ge", operator.ge),
                   ("ne", operator.ne)]:
    setattr(LineageResult, f"__{_name}__", _binary(_op)[0])
LineageResult.__neg__ = lambda self: -self.data  # type: ignore[attr-defined]
LineageResult.__abs__ = lambda self: abs(self.data)  # type: ignore[attr-defined]


def _unwrap(value: Any) -> Any:
    hook = getattr(value, "__scistack_input__", None)
    return hook()[0] if hook is not None else value


def _copy_into(store: ObjectStore, result: LineageResult) -> None:
    """A result computed before the database was configured lives in memory: copy it over."""
    if store.contains(result.oid) and store.contains(result.call):
        return
    source = MEMORY.store
    store.put_value(result.data)
    if source.contains(result.call):
        call = source.get(result.call)
        store.put("call", call.payload)


@functools.lru_cache(maxsize=4096)
def _source_file_cached(code: Any) -> str | None:
    return code.co_filename if code is not None else None


def _source_file(fn: Callable) -> str | None:
    return _source_file_cached(getattr(fn, "__code__", None))
