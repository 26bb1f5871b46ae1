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

import dataclasses
import functools
import importlib
import inspect
import os
import pickle
import sys
import time
import weakref
from types import FunctionType, MethodType
from typing import Any, Callable

from scistack.errors import LineageError, ObjectNotFoundError, ScistackError, UnsupportedValueError
from scistack.index import utc_now
from scistack.codeid._graph import unwrap
from scistack.codeid._packages import code_module, is_project_module
from scistack.lineage.calls import (
    CALL_FORMAT,
    BoundInput,
    bind,
    call_key,
    positional_plan,
    describe,
    flatten_params,
    freeze,
    origins_digest,
    params_later,
    plain_arguments,
    positional_bound,
    positional_inputs,
    same_origins,
    store_constants,
    unwrap_input,
)
from scistack.codeid.codetree import code_tree, constant_values, source_files, tree_record
from scistack.codeid.files import FileRead, code_object, install as see_reads
from scistack.lineage.filecheck import (cache_fn, files_here, files_value, locates_project, reads_of_call, remember,
                                        servable)
from scistack.lineage.facts import note_written
from scistack.lineage.running import call_running
from scistack.lineage.context import MEMORY, bring_inputs, lineage_context
from scistack.codeid.env import capture_env, imported_modules
from scistack.codeid.script_path import project_relative
from scistack.codeid.identity import FunctionIdentity, function_identity, memo_key, normalised_source
from scistack.lineage.result import LineageResult, immutable_output
from scistack.objects import ObjectStore
from scistack.records import CallInput, CallRecord, FunctionInfo, HelperInfo, read_call

__all__ = [
    "MEMORY",
    "LineageFunction",
    "LineageResult",
    "Thunk",
    "lineage_context",
    "lineage_fcn",
    "registered_function",
    "thunk",
]


_REGISTRY: dict[tuple[Any, str], LineageFunction | None] = {}  # None: several objects' methods
# (cached call record, the inputs' `origins_digest`) -> the call record a hit names (`_own_record`)
_OWN_RECORDS: dict[tuple[str, str], str] = {}


def _remember_own(call_oid: str, origins: str, own: str) -> None:
    if len(_OWN_RECORDS) >= 65536:
        _OWN_RECORDS.clear()
    _OWN_RECORDS[(call_oid, origins)] = own


def registered_function(module: str, qualname: str) -> LineageFunction | None:
    """The lineage function of that name created in this process, if any (for `why`); None
    when it was the method (or partial, or `__call__`) of several objects here: which one
    made a value is not known by the name, so the caller finds the plain function as another
    process does (`Filter(2).apply` and `Filter(4).apply` are two functions, and each had
    made the other's values stale)."""
    return _REGISTRY.get((module, qualname))


def registry_key(fn: Callable) -> tuple[Any, str]:
    """(module, qualified name) a lineage function of `fn` is known by: a partial as its
    function, a callable object as its class's `__call__`."""
    named = fn.func if isinstance(fn, functools.partial) else fn
    qualname = getattr(named, "__qualname__", None)
    if not isinstance(qualname, str):
        qualname = f"{type(named).__qualname__}.__call__"
    if isinstance(named, FunctionType):  # (made by exec or eval: the module its identity names)
        return code_module(named.__module__, named.__code__), qualname
    return getattr(named, "__module__", None), qualname


def _register(key: tuple[Any, str], function: LineageFunction) -> None:
    if key in _REGISTRY:
        known = _REGISTRY[key]
        if known is None:
            return
        same = known.fn is function.fn or (inspect.ismethod(function.fn) and known.fn == function.fn)
        if "<" in key[1] and code_object(known.fn) is not code_object(function.fn):  # two lambdas (`p1`,
            _REGISTRY[key] = None  # `p2`): one name, two functions; the caller finds the one a
            return  # module name holds, as another process does (a factory's closures: the last)
        if _binds(function.fn) and not _binds(known.fn):  # the plain function, as another
            return  # process finds it by name: it judges a partial's values by their code
        if _binds(known.fn) and _binds(function.fn) and not same:
            _REGISTRY[key] = None
            return
    _REGISTRY[key] = function


def _binds(fn: Any) -> bool:
    """Whether `fn` holds an object of its own: a bound method, a partial, a callable object."""
    return inspect.ismethod(fn) or not (inspect.isfunction(fn) or inspect.isbuiltin(fn))


class LineageFunction:
    """A function whose calls are cached by (code identity, inputs) and recorded as lineage."""

    def __init__(
        self, fn: Callable, *, version: str | None = None, ignore: tuple[str, ...] = ()
    ) -> None:
        if isinstance(fn, LineageFunction):
            fn = fn.fn
        if not callable(fn):
            raise LineageError(f"lineage_fcn needs a function, got {type(fn).__name__}")
        _refuse_lazy_results(fn)
        see_reads()  # from now on: a memo the script fills before the first call is seen
        functools.update_wrapper(self, fn)
        self.fn = fn
        self.version = version
        self.ignore = frozenset((ignore,) if isinstance(ignore, str) else ignore)
        try:
            self.signature = inspect.signature(fn)
        except (TypeError, ValueError):
            self.signature = inspect.Signature(
                [
                    inspect.Parameter("args", inspect.Parameter.VAR_POSITIONAL),
                    inspect.Parameter("kwargs", inspect.Parameter.VAR_KEYWORD),
                ]
            )
        self._plan = positional_plan(self.signature)
        self._identity_key = memo_key(fn, version) if version is None or isinstance(version, str) else None
        params = self.signature.parameters.values()
        takes_any = any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params)
        unknown = self.ignore - set(self.signature.parameters)
        if unknown and not takes_any:
            raise LineageError(
                f"ignore= names {sorted(unknown)}, which {self.name} does not take; its "
                f"parameters are {list(self.signature.parameters)}"
            )
        self._infos: weakref.WeakKeyDictionary[ObjectStore, dict[str, tuple[FunctionIdentity, Any, tuple]]] = (
            weakref.WeakKeyDictionary()
        )
        _register(registry_key(fn), self)

    @property
    def name(self) -> str:
        named = self.fn.func if isinstance(self.fn, functools.partial) else self.fn  # (as recorded)
        return getattr(named, "__name__", type(named).__name__)

    def identity(self) -> FunctionIdentity:
        """The function's current identity (source, helpers, constants it reads)."""
        return function_identity(self.fn, version=self.version, key=self._identity_key)

    def bind_inputs(
        self, args: tuple, kwargs: dict
    ) -> tuple[inspect.BoundArguments, dict[str, BoundInput]]:
        """The arguments as given, and the lineage view of those that count (defaults bound)."""
        return bind(self.signature, args, kwargs, self.ignore, self._plan)

    def key_for(
        self, inputs: dict[str, BoundInput], identity: FunctionIdentity | None = None
    ) -> str:
        """The call key for already-described inputs (missing defaults are bound here)."""
        return call_key((identity or self.identity()).digest, self._with_defaults(inputs))

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        inputs = positional_inputs(self._plan, args, kwargs, self.ignore)  # (the common call:
        bound = None  # its arguments as given are made on a miss only, for `run`)
        if inputs is None:
            bound, inputs = self.bind_inputs(args, kwargs)
        identity = self.identity()
        key = call_key(identity.digest, inputs)
        ctx = lineage_context()
        hit = ctx.lookup(key)
        if hit is not None and servable(ctx.store, hit, ctx.db):
            try:
                return self._results(ctx.store, hit, inputs, identity, self._own_record(ctx, hit, inputs, identity))
            except ObjectNotFoundError:
                pass  # an output object was garbage-collected: compute again
        if bound is None:  # (a miss of the common call: the arguments as given, for `run`)
            bound = positional_bound(self.signature, self._plan, args)
        return self.run(ctx, bound, inputs, identity, key)

    def _own_record(self, ctx: Any, hit: dict[str, Any], inputs: dict[str, BoundInput],
                    identity: FunctionIdentity) -> str:
        """The call record a hit's results name: the cached one when it names these inputs as
        its own (known from the entry's `origins` digest, else by reading the record); else
        (the same values at another address, or made by another call) a record of this call,
        made now with the cached result: its lineage then names its own inputs. The cache
        entry stays (a loop over addresses would replace it at every step); each record is
        checked once per process and inputs, and the record made for them named while the store
        still has it."""
        origins = origins_digest(inputs)
        if hit.get("origins") == origins:
            return hit["call"]
        own = _OWN_RECORDS.get((hit["call"], origins))
        if own is not None and ctx.store.contains(own):  # (a gc since, or another project's)
            return own
        try:
            record = read_call(ctx.store, hit["call"])
        except (ScistackError, LookupError):
            return hit["call"]  # unreadable: the outputs decide (a gc'd one is computed again)
        own = hit["call"]
        if not same_origins({name: b.record for name, b in inputs.items()}, record):
            if not all(ctx.store.contains(oid) for oid in hit["outs"]):
                return own  # a gc'd output: computed again (and recorded then)
            own = self.record_call(ctx.store, identity, inputs, list(hit["outs"]), record.started or utc_now(),
                                   record.duration or 0.0, multi=bool(hit.get("multi")), files=files_here(record, ctx.db),
                                   root=ctx.root, project=ctx.project)
        _remember_own(hit["call"], origins, own)
        return own

    def origins(self, inputs: dict[str, BoundInput]) -> str:
        """The `origins_digest` of the inputs a record of this call names (defaults bound):
        what its cache entry keeps."""
        return origins_digest(self._with_defaults(inputs))

    def run(
        self,
        ctx: Any,
        bound: inspect.BoundArguments,
        inputs: dict[str, BoundInput],
        identity: FunctionIdentity,
        key: str,
    ) -> Any:
        """Execute on a cache miss and record the call."""
        args, kwargs = plain_arguments(self.signature, bound, inputs)
        started, t0 = utc_now(), time.perf_counter()
        with reads_of_call(ctx.store, root=self.fn) as files:
            out = call_running(self.name, self.fn, *args, **kwargs)
        duration = time.perf_counter() - t0
        multi = isinstance(out, tuple)
        given = [b.value for b in inputs.values()]
        outputs = [immutable_output(unwrap_input(v), given) for v in (out if multi else (out,))]
        out_oids = [ctx.store.put_value(v) for v in outputs]
        call_oid = self.record_call(
            ctx.store, identity, inputs, out_oids, started, duration, multi=multi, files=files.read,
            root=ctx.root, project=ctx.project,
        )
        ctx.record(key, call_oid, cache_fn(identity.digest, files.read), out_oids, multi=multi,
                   origins=self.origins(inputs))
        results = self._wrap(outputs, out_oids, call_oid, inputs, identity, cached=False)
        return tuple(results) if multi else results[0]

    def record_call(
        self,
        store: ObjectStore,
        identity: FunctionIdentity,
        inputs: dict[str, BoundInput],
        out_oids: list[str],
        started: str,
        duration: float,
        *,
        multi: bool = False,
        files: list[FileRead] | tuple[FileRead, ...] = (),
        split: list[dict[str, Any] | None] | None = None,
        root: str | os.PathLike | None = None,
        project: Callable[[], str | None] | None = None,
    ) -> str:
        """Store the call record (and the code it ran) and return its oid. `split`: per output,
        None or {"by": key, "labels": [...]} when `out_oids` holds that output's parts
        (`for_each` outputs=[Split(...)]), kept in the record's `split` field. `root`: the
        project's folder, so the record also names the source file relative to it; `project`
        (`Database.records_project`) the project's id, named beside it."""
        inputs = self._with_defaults(inputs)
        store_constants(store, inputs)
        inputs = bring_inputs(store, inputs)
        function, source_file, watched = self._function_info(store, identity, root, project)
        source = _source_file(self.fn)
        files = [f for f in files if not locates_project(f, root, source)]  # (where this checkout is)
        read = files_value(files, root)
        if function.project is None and project is not None and (
                any("project_path" in f for f in read.get("files", ()))
                or any("project_path" in b.record for b in inputs.values())):
            # (a script outside the project that read files inside it, or took raw files
            # inside it: the record names its project, so that another project that imports
            # it checks the files where they were read, not its own folder's:
            # `filecheck.changed_inputs`, `calls.raw_file_here`)
            function = dataclasses.replace(function, project=project())
        record = CallRecord(
            function=function,
            arguments={n: CallInput.from_value(b.record) for n, b in sorted(inputs.items())},
            outputs=tuple(out_oids),
            multi=multi,
            params=flatten_params(identity.name, inputs),
            env=capture_env(
                source_file,
                [*imported_modules(identity.module), identity.module.split(".")[0]],
                lambda diff: store.put("bytes", diff),
                files=watched,
            ),
            started=started,
            duration=round(duration, 6),
            format=CALL_FORMAT,
            extra={**read, **({"split": split} if split else {})},
        )
        call_oid = store.put("call", record.to_bytes())
        remember(call_oid, files, record)
        note_written(call_oid, record)
        return call_oid

    def _with_defaults(self, inputs: dict[str, BoundInput]) -> dict[str, BoundInput]:
        """`inputs` plus the defaults of parameters it lacks (for callers that bind by name)."""
        missing = [
            p
            for n, p in self.signature.parameters.items()
            if n not in inputs and n not in self.ignore and p.default is not p.empty
        ]
        if not missing:
            return inputs
        completed = dict(inputs)
        for param in missing:
            try:
                completed[param.name] = describe(param.name, param.default)
            except UnsupportedValueError:
                pass  # a sentinel default: covered by the function's identity
        return completed

    def _function_info(self, store: ObjectStore, identity: FunctionIdentity, root: str | os.PathLike | None = None,
                       made_by: Callable[[], str | None] | None = None
                       ) -> tuple[FunctionInfo, str | None, tuple[str, ...]]:
        """The call record's function part, and the source file and files its environment
        watches (a project's function only): the same for every call of one identity, so
        made once per store, identity and `_era` (a run records one call per combination;
        making it took ~20 us of a record's ~90), its code objects put in the store then.
        Per store *object*, weakly: an id() could be reused by a new store lacking the code."""
        known = self._infos.setdefault(store, {})
        era = (_era(store), None if root is None else os.fspath(root))
        found = known.get(identity.digest)
        if found is not None and found[0] is identity and found[1] == era:
            return found[2]
        tree = code_tree(self.fn, identity)
        project = is_project_module(identity.module)
        source = identity.source if identity.source is not None else normalised_source(self.fn)
        info = FunctionInfo(
            name=identity.name,
            module=identity.module,
            identity=identity.digest,
            code=_put_code(store, source) if source else None,
            has_source=identity.has_source,
            version=identity.pinned_version,
            deps=tuple(tuple(d) for d in identity.deps),
            note=identity.note,
            file=_source_file(self.fn),
            project_file=(project_file := project_relative(_source_file(self.fn), root)),
            project=made_by() if project_file and made_by is not None else None,
            helpers={
                label: HelperInfo.from_value(h)
                for label, h in tree_record(tree, functools.partial(_put_code, store)).items()
            },
            constants=constant_values(identity, tree),
            code_identity=identity.unbound_digest or None,
        )
        parts = (info, _source_file(self.fn) if project else None,
                 tuple(source_files(self.fn, tree)) if project else ())
        known[identity.digest] = (identity, era, parts)
        return parts

    def _results(
        self,
        store: ObjectStore,
        hit: dict[str, Any],
        inputs: dict[str, BoundInput],
        identity: FunctionIdentity,
        call_oid: str,
    ) -> Any:
        out_oids = hit["outs"]
        if len(out_oids) == 1 and not hit.get("multi"):  # (one output: no lists to build)
            oid = out_oids[0]
            return LineageResult(freeze(store.get_value(oid)), oid, call_oid, params_later(identity.name, inputs),
                                 0, self.name, True)
        outputs = [freeze(store.get_value(oid)) for oid in out_oids]
        results = self._wrap(outputs, out_oids, call_oid, inputs, identity, cached=True)
        return tuple(results) if hit.get("multi") else results[0]

    def _wrap(
        self,
        outputs: list[Any],
        out_oids: list[str],
        call_oid: str,
        inputs: dict[str, BoundInput],
        identity: FunctionIdentity,
        *,
        cached: bool,
    ) -> list[LineageResult]:
        params = params_later(identity.name, inputs) if cached else flatten_params(identity.name, inputs)
        return [
            LineageResult(v, oid, call_oid, params, i, self.name, cached)
            for i, (v, oid) in enumerate(zip(outputs, out_oids))
        ]

    def __repr__(self) -> str:
        return f"<lineage function {self.__module__}.{self.__qualname__}>"

    def __reduce__(self) -> tuple:
        # Workers need the function. Importable functions travel by reference (plain pickle);
        # one defined in __main__ travels by value, which Dask's cloudpickle supports, and so
        # do bound methods, partials and callable objects (an object's class names it, not the
        # object: it has no `__qualname__` of its own to find it by).
        module, qualname = (
            getattr(self.fn, "__module__", None),
            getattr(self.fn, "__qualname__", ""),
        )
        named = inspect.isfunction(self.fn) or inspect.isbuiltin(self.fn) or inspect.isclass(self.fn)
        if named and module and module != "__main__" and "<locals>" not in qualname:
            return (_restore, (module, qualname, self.version, tuple(self.ignore)))
        return (_rebuild, (self.fn, self.version, tuple(self.ignore)))

    def __get__(self, instance: Any, owner: Any = None) -> Any:
        """A decorated method, looked up on an object: that object's bound method, a lineage
        function of its own (its identity counts the object; `self` is not an input)."""
        if instance is None:
            return self
        return LineageFunction(MethodType(self.fn, instance), version=self.version, ignore=tuple(self.ignore))


Thunk = LineageFunction


def _refuse_lazy_results(fn: Callable) -> None:
    """An async or generator function returns a coroutine or generator, not its results: one
    could only fail at each call, as a value that cannot be stored."""
    plain = inspect.unwrap(fn.func if isinstance(fn, functools.partial) else fn)
    name = getattr(plain, "__name__", "the function")
    if inspect.iscoroutinefunction(plain) or inspect.isasyncgenfunction(plain):
        raise LineageError(f"{name} is an async function: scistack calls a function and keeps what it "
                           f"returns; wrap it, e.g. def {name}_sync(...): return asyncio.run({name}(...))")
    if inspect.isgeneratorfunction(plain):
        raise LineageError(f"{name} is a generator function (it yields): scistack keeps what a function "
                           f"returns; return the values instead, e.g. a list: list({name}(...))")


def pickled_for_workers(lf: LineageFunction) -> bytes:
    """`lf` pickled for a spawned process pool, whose workers import the main script again.

    A function decorated at the top level of the script is found there by name: by value,
    pickle looked up `__main__.<name>`, found the decorator's LineageFunction rather than the
    function and refused it, so `workers=N` failed for every decorated script function. (A
    Dask executor's cloudpickle sends it by value instead: a Dask worker's `__main__` is not
    the script.)"""
    fn, qualname = lf.fn, getattr(lf.fn, "__qualname__", "")
    if inspect.isfunction(fn) and getattr(fn, "__module__", None) == "__main__" and "<locals>" not in qualname:
        found: Any = sys.modules.get("__main__")
        for part in qualname.split("."):
            found = getattr(found, part, None)
        if isinstance(found, LineageFunction) and found.fn is fn:
            return pickle.dumps(_ByName("__main__", qualname, lf.version, tuple(lf.ignore)))
    return pickle.dumps(lf)


class _ByName:
    """Unpickles as the LineageFunction at `module.qualname` (see `pickled_for_workers`)."""

    def __init__(self, *args: Any) -> None:
        self.args = args

    def __reduce__(self) -> tuple:
        return (_restore, self.args)


def _restore(
    module: str, qualname: str, version: str | None, ignore: tuple[str, ...]
) -> LineageFunction:
    target: Any = importlib.import_module(module)
    for part in qualname.split("."):
        target = getattr(target, part)
    if isinstance(target, LineageFunction):
        return target
    return LineageFunction(target, version=version, ignore=ignore)


def _rebuild(fn: Callable, version: str | None, ignore: tuple[str, ...]) -> LineageFunction:
    return LineageFunction(fn, version=version, ignore=ignore)


def lineage_fcn(
    fn: Callable | None = None,
    *,
    version: str | None = None,
    ignore: tuple[str, ...] | list[str] = (),
) -> Any:
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


def _era(store: ObjectStore) -> Any:
    """How long a function part `_function_info` made stays true of the store: while a local
    store's writers' gate is not left (a pruning gc may then remove code that no record kept
    names: a call after it had named code the store no longer had); a shared store's gc
    prunes only what went unnamed past a grace period of an hour or more, so a minute there
    (the code is put again, which makes it young)."""
    gate = store.writers_gate()
    return ("gate", gate.left) if gate is not None else ("minute", int(time.monotonic() // 60))


def _put_code(store: ObjectStore, source: str) -> str:
    return store.put("code", source.encode("utf-8"))


@functools.lru_cache(maxsize=4096)
def _source_file_cached(code: Any) -> str | None:
    return code.co_filename if code is not None else None


def _source_file(fn: Callable) -> str | None:
    return _source_file_cached(getattr(unwrap(fn), "__code__", None))
