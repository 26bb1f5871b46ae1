"""Function identity: when may a cached result of a function be reused?

A cached result is reused only while the function's *identity* is unchanged, so identity must
change with every edit that can change a result (or the cache serves stale results) and with
nothing else (or it recomputes for no reason). Identity is a blake3 digest of:

* the normalised syntax tree of the function (see ``_ast_normalise``): comments, docstrings,
  formatting and the function's own decorators do not count; a **renamed local variable
  does count** (deciding "same up to renaming" is easy to get wrong in the unsafe direction);
* transitively, the identities of the project's own functions, methods and classes it
  references, through globals, attribute chains (``helpers.smooth``, ``pkg.mod.fn``),
  closure cells and imports inside the body (methods: see below);
* the *values* of immutable constants it reads (``_values``), module-level or captured,
  and of the values of default arguments (``fn=helpers.scale``, ``k=FACTOR``);
* code reached indirectly: ``getattr(module, "literal")``; ``getattr(module, name)`` with a
  name computed at run time, every member of that project module and of its submodules
  (``_graph._any_member``: any may be the one reached); functions stored in module data
  (``OPS["x"]``, decorator registries), ``np.vectorize(f)``, ``functools.singledispatch``
  implementations, and the bodies of ``functools.wraps`` wrappers (``wrapper:`` deps);
* for library code (stdlib, site-packages, scistack itself: ``_packages``), only the qualified
  name and the distribution's version and build, e.g. ``("pkg:numpy.add", "numpy==2.4.6
  build:…")``; for the project's own compiled extension module, the digest of its binary
  (``("pkg:ext.value", "ext==unknown build:so-…")``, `_packages.binary_build`).

Module data (lists, dicts, sets, arrays, dataclass and project-class instances) is read at
*call time*: it can change without being rebound, so the memoised code identity is combined
on every call with a digest of each such value's canonical content (``_data``), as
``("data:mod.NAME", digest)``; ``FunctionIdentity.code_digest`` keeps the code-only digest.
Objects some function of the walk writes (``global`` assignment, item/attribute assignment,
mutating methods) are state, not input: they stay ``("mutable:mod.NAME", ...)`` markers and
are not hashed, so a call counter keeps the cache working. A value with no canonical
encoding is ``("unverifiable:mod.NAME", what it is)``: `why` and `status` report it as ``?``.

Methods: a method depends on its class's *skeleton* (the class without method bodies), its
dunder methods and the methods it reaches through ``self``/``cls``/``super()``; ``Model.a``
resolves to that method. A function that uses the class itself (``Model()``) depends on the
whole class. Type hints of functions are dropped before hashing (they never run).

Recursion: references form a graph, cut into strongly connected components (Tarjan). Inside a
cycle, members contribute their *name* (``"recursive"``) instead of a digest, and every member
hashes the whole component, so an edit to any member changes all of them and the digest does
not depend on which function was asked for first.

Code without source: builtins and C functions (``len``, ``numpy.add``) are identified by
qualified name + package or Python version (``has_source=False``). A pure-Python function
without usable source (typed at a REPL, its file edited since import, several lambdas on one
line) is identified by its bytecode and constants instead of its name alone, because two REPL
lambdas share the name ``<lambda>`` and must not share cached results.

Pinning: ``version="2"`` makes the digest depend on (module, name, version) only.

Not seen (documented limits, README "What the cache sees"): names reached dynamically
(``getattr(obj, name)`` with a computed name on an object that is not a project module,
``eval``; ``importlib.import_module(name)``: ``files`` makes that module an input); methods monkeypatched onto a class
after import.

Speed: the syntax tree is analysed once per code object, and each identity is memoised per
function object together with *guards*: every namespace slot, closure cell and ``__code__`` it
read, checked by ``is`` on the next call. Rebinding a constant or helper, ``importlib.reload``
or assigning ``__code__`` fails a guard and recomputes; mutating a list in place does not.
"""

from __future__ import annotations

import functools
import sys
import threading
import weakref
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from types import CodeType, FunctionType, MethodType, ModuleType
from typing import Any

from scistack.errors import LineageError
from scistack.codeid._codesets import reading, unseen_sets_impossible
from scistack.codeid._data import Unverifiable, data_digest
from scistack.codeid._graph import Guards, unwrap, walk_root
from scistack.codeid._packages import code_module, is_project_module, package_version
from scistack.codeid._shapes import class_shape, function_shape
from scistack.codeid._values import encode_constant, hash_fields, value_digest

__all__ = ["FunctionIdentity", "function_identity", "normalised_source"]


@dataclass(frozen=True, slots=True)
class FunctionIdentity:
    """What a function is, for caching: its digest and how that digest was obtained.

    Attributes
    ----------
    name, module
        Qualified name and module, e.g. ``"bandpass"`` and ``"mypipeline.filters"``.
    digest
        64-char lowercase hex blake3 digest: *the* identity used in cache keys.
    source
        Normalised source of the function itself; None when it was not used (no usable
        source, or library code identified by version).
    has_source
        False when the function was identified by name + version or by bytecode.
    pinned_version
        The ``version=`` given by the user, if any.
    deps
        Sorted (label, digest-or-version) pairs that went into `digest`.
    note
        Human-readable account of how the identity was obtained.
    """

    name: str
    module: str
    digest: str
    source: str | None
    has_source: bool
    pinned_version: str | None
    deps: tuple[tuple[str, str], ...]
    note: str
    code_digest: str = ""
    # a partial or a bound method: the identity of the function alone, without what is bound
    # to it (another process finds that function by name and can compare only that)
    unbound_digest: str = ""
    data: tuple[tuple[str, object], ...] = field(default=(), compare=False, repr=False)
    shown: tuple[tuple[str, object], ...] = field(default=(), compare=False, repr=False)

    @property
    def code_only(self) -> str:
        """The digest of the code alone, before the module data read at call time."""
        return self.code_digest or self.digest

    @property
    def unverifiable(self) -> tuple[tuple[str, str], ...]:
        """(name, what it is) of every value read that has no canonical encoding."""
        return tuple(
            (label.partition(":")[2], what) for label, what in self.deps
            if label.startswith("unverifiable:")
        )


@dataclass(slots=True)
class _Memo:
    """A memoised identity, valid while `fn` is alive and its guards hold."""

    ref: Callable[[], object]
    identity: FunctionIdentity
    guards: Guards
    reads: tuple[tuple[str, object], ...] = ()
    last: FunctionIdentity | None = None  # the last identity with data, reused while equal
    reached: frozenset[int] | None = None  # `reached_code`, worked out when first asked


_Key = tuple[int, str | None]
_IDENTITIES: dict[_Key, _Memo] = {}
_ALWAYS = Guards((), (), ())
_IN_PROGRESS = threading.local()


def function_identity(fn: Callable[..., Any], *, version: str | None = None,
                      key: _Key | None = None) -> FunctionIdentity:
    """Identify `fn` by its normalised source and everything it references (see module doc).

    Parameters
    ----------
    fn
        A function, method, class, ``functools.partial``, ``functools.wraps`` wrapper,
        builtin or C function.
    version
        Pin the identity by hand: the digest then depends only on module, name and this.
    key
        `memo_key(fn, version)`, kept by a caller that holds `fn` (a lineage function): the
        builtin `id()` raises an audit event, and with a hook installed (scistack's own,
        `codeid.files`) each costs a cache hit ~0.5 us.

    Returns
    -------
    FunctionIdentity
        Memoised: an unchanged function costs a few dictionary and ``is`` checks.

    Raises
    ------
    LineageError
        `fn` is not callable, is a callable object of a project class (its attributes are
        invisible to identity), binds non-constant values in a partial, or `version` is
        not a string.
    """
    if version is not None and not isinstance(version, str):
        raise LineageError(f"version must be a string such as '2', got {version!r}")
    if isinstance(fn, MethodType) and not isinstance(fn.__self__, (type, ModuleType)):
        return _bound_identity(fn.__func__, fn.__self__, version)  # `proc.apply`: proc's state too
    if isinstance(fn, (MethodType, staticmethod, classmethod)):
        fn = fn.__func__
    if key is None:
        key = (id(fn), version)
    memo = _IDENTITIES.get(key)
    if memo is not None and memo.ref() is fn and memo.guards.valid():
        return memo.identity if not memo.reads else _with_data(memo)
    identity, guards, reads = _compute(fn, version)
    if guards is None:
        return identity
    memo = _remember(key, fn, identity, guards, reads)
    return identity if not reads else _with_data(memo)


def memo_key(fn: Callable[..., Any], version: str | None = None) -> _Key | None:
    """The key `function_identity` memoises `fn`'s identity under (None for a method bound to
    an object: its identity is memoised another way). Valid while `fn` is alive."""
    if isinstance(fn, MethodType) and not isinstance(fn.__self__, (type, ModuleType)):
        return None
    if isinstance(fn, (MethodType, staticmethod, classmethod)):
        fn = fn.__func__
    return (id(fn), version)


def reached_code(fn: Callable[..., Any]) -> frozenset[int]:
    """The ids of the code objects of the project functions `fn`'s identity followed (and of
    the functions defined inside them; kept alive by the memo's guards): a memo one of them
    fills in one call serves `fn`'s later calls, which must then name the files it read
    (``codeid.files``). Empty when `fn` has no memoised walk."""
    memo = _walked(fn)
    if memo is None:
        return frozenset()
    if memo.reached is None:
        memo.reached = _codes_within(memo.guards)
    return memo.reached


def reached_modules(fn: Callable[..., Any]) -> tuple[str, ...]:
    """The source files of the project modules `fn`'s identity reached by a ``getattr`` with a
    computed name (`Guards.modules`): their data is no part of the identity, so each call
    names them as inputs by content (``codeid.files``). Empty when `fn` has no memoised walk."""
    memo = _walked(fn)
    return () if memo is None else memo.guards.modules


def _walked(fn: Callable[..., Any]) -> _Memo | None:
    """`fn`'s memoised walk, valid now (walked again if gone or stale), or None."""
    if isinstance(fn, functools.partial):
        fn = fn.func
    if isinstance(fn, (MethodType, staticmethod, classmethod)):
        fn = fn.__func__
    memo = _IDENTITIES.get((id(fn), None))
    if memo is None or memo.ref() is not fn or not memo.guards.valid():
        # walked again only when its memo is gone or stale: `function_identity` on a valid
        # memo would digest the module data again (~0.5 ms of a ~6 ms miss for 1 MB), and
        # the code reached depends on the walk alone
        try:
            function_identity(fn)
        except Exception:  # noqa: BLE001 - (a pinned function walked here): its own memos still count
            return None
        memo = _IDENTITIES.get((id(fn), None))
        if memo is None or memo.ref() is not fn:
            return None
    return memo


def _codes_within(guards: Guards) -> frozenset[int]:
    """Code objects of the functions a walk visited or found bound (a ``functools.lru_cache``
    wrapper is found by name: its function is unwrapped), nested code included."""
    found = [code for _, code in guards.codes]
    for _, _, value in guards.slots:
        project_class = isinstance(value, type) and is_project_module(value.__module__)
        for member in vars(value).values() if project_class else (value,):
            real = unwrap(member)
            if isinstance(real, FunctionType):
                found.append(real.__code__)
    seen: set[int] = set()  # (by id: equal code elsewhere is another function)
    while found:
        code = found.pop()
        if id(code) not in seen:
            seen.add(id(code))
            found.extend(c for c in code.co_consts if isinstance(c, CodeType))
    return frozenset(seen)


def _with_data(memo: _Memo) -> FunctionIdentity:
    """The memoised code identity plus the digests of the module data it reads, now."""
    busy: set[int] = _IN_PROGRESS.__dict__.setdefault("ids", set())
    static = memo.identity
    pairs = []
    try:  # (added inside: a Ctrl-C just before the try had left it "busy" for the session)
        busy.add(id(memo))
        for label, value in memo.reads:
            try:
                pairs.append((f"data:{label}", data_digest(value, _code_of)))
            except Unverifiable as exc:
                pairs.append((f"unverifiable:{label}", str(exc)))
            except Exception as exc:  # noqa: BLE001 - a value whose reading fails is unverifiable
                pairs.append((f"unverifiable:{label}", f"reading it failed: {type(exc).__name__}"))
    finally:
        busy.discard(id(memo))
    last = memo.last
    if last is not None and last.deps[-len(pairs) :] == tuple(pairs):
        return last
    fields = (text for pair in pairs for text in pair)
    digest = hash_fields("with-data", static.digest, str(len(pairs)), *fields)
    note = f"{static.note} + {len(pairs)} module data values read at call time"
    memo.last = replace(
        static,
        digest=digest,
        deps=(*static.deps, *pairs),
        note=note,
        code_digest=static.digest,
        data=memo.reads,
    )
    return memo.last


def _code_of(value: object) -> str:
    """Identity digest of a function or class found inside module data ("recursive" in a loop)."""
    try:
        if isinstance(value, type) or callable(value):
            memo = _IDENTITIES.get((id(value), None))
            busy = _IN_PROGRESS.__dict__.setdefault("ids", set())
            if memo is not None and id(memo) in busy:
                return "recursive"
            return function_identity(value).digest  # type: ignore[arg-type]
    except LineageError as exc:
        raise Unverifiable(str(exc)) from exc
    raise Unverifiable(f"a {type(value).__name__}")


def normalised_source(fn: Callable[..., Any]) -> str | None:
    """The normalised source of `fn` (the text of its ``code`` object), None without source.

    Decorators, docstrings, comments and formatting are gone; it is ``ast.unparse`` of the
    tree that identity hashes, so equal texts mean equal own-code identities.
    """
    if isinstance(fn, functools.partial):
        fn = fn.func
    real = unwrap(fn)
    if isinstance(real, FunctionType):
        return function_shape(real).source
    if isinstance(real, type):
        return class_shape(real).source
    return None


def _remember(
    key: _Key,
    fn: object,
    identity: FunctionIdentity,
    guards: Guards,
    reads: tuple[tuple[str, object], ...] = (),
) -> _Memo:
    """Memoise `identity`; a weak reference drops the entry when `fn` dies (notebooks redefine)."""
    try:
        ref: Callable[[], object] = weakref.ref(
            fn, lambda _ref, memo=_IDENTITIES: memo.pop(key, None)
        )
    except TypeError:  # e.g. numpy ufuncs: not weak-referenceable, but immortal anyway
        ref = lambda: fn  # noqa: E731
    memo = _Memo(ref, identity, guards, reads)
    _IDENTITIES[key] = memo
    return memo


_Computed = tuple[FunctionIdentity, "Guards | None", tuple[tuple[str, object], ...]]


def _compute(fn: Callable[..., Any], version: str | None) -> _Computed:
    """Slow path: identity, the guards that keep it valid (None: do not memoise), data read."""
    if isinstance(fn, functools.partial):
        return _partial_identity(fn, version), None, ()
    real = unwrap(fn)
    if not callable(real):
        raise LineageError(f"{real!r} is not a function; only callables have an identity")
    name, module = _name_of(real), getattr(real, "__module__", None) or type(real).__module__
    if isinstance(real, FunctionType):  # (exec'd code: its __module__ None, or a library's)
        module = code_module(real.__module__, real.__code__)
    if version is not None:
        return (*_pinned_identity(real, name, module, version), ())
    if isinstance(real, (FunctionType, type)) and is_project_module(module):
        return _project_identity(fn, real, name, module)
    call = getattr(type(real), "__call__", None)
    if is_project_module(type(real).__module__):
        if not isinstance(call, FunctionType):
            raise LineageError(
                f"cannot identify the callable object {real!r}: its class has no Python __call__ "
                "whose code identity could see. Decorate a plain function, or pin it with version=..."
            )
        return _bound_identity(call, real, version), None, ()  # (its state is read at each call)
    return _library_identity(real, name, module), _ALWAYS, ()


def _bound_identity(func: FunctionType, instance: object, version: str | None) -> FunctionIdentity:
    """A bound method (`proc.apply`) or a callable object (`Filter(order=4)`): the code of the
    method, and the object's attributes now, read as module data is (`P(2).apply` and
    `P(3).apply` are different functions; the same object changed in place is too)."""
    inner = function_identity(func, version=version)
    label = f"{type(instance).__module__}.{type(instance).__qualname__} object of {inner.name}"
    try:  # "object:", like a partial's bound arguments, is what was called, not what the code
        # reads: `status` and `why` in another process, which find the method by name, cannot
        # see the object and do not call a result stale for it
        pair = (f"object:{label}", data_digest(instance, _code_of))
    except Unverifiable as exc:
        pair = (f"unverifiable:{label}", str(exc))
    except Exception as exc:  # noqa: BLE001 - an object whose reading fails is unverifiable
        pair = (f"unverifiable:{label}", f"reading it failed: {type(exc).__name__}")
    return replace(
        inner,
        digest=hash_fields("bound", inner.digest, *pair),
        deps=(*inner.deps, pair),
        note=f"{inner.note} + the attributes of its object, read at call time",
        code_digest=inner.code_only,
        unbound_digest=inner.unbound_digest or inner.digest,
        shown=(*inner.shown, (pair[0], instance)) if pair[0].startswith("object:") else inner.shown,
    )


def _pinned_identity(
    real: object, name: str, module: str, version: str
) -> tuple[FunctionIdentity, Guards]:
    """Identity pinned by hand: (module, name, version); the source is returned, not hashed."""
    source = normalised_source(real)  # type: ignore[arg-type]
    digest = hash_fields("pinned", module, name, version)
    note = f"identity pinned by hand: version={version!r}"
    identity = FunctionIdentity(name, module, digest, source, source is not None, version, (), note)
    watched = unseen_sets_impossible()  # (before the code is read)
    if isinstance(real, FunctionType):
        reading(real)  # (a set of its code from now on is seen)
    codes = ((weakref.ref(real), real.__code__),) if isinstance(real, FunctionType) else ()
    return identity, Guards((), codes, (), watched=watched)


def _library_identity(real: object, name: str, module: str) -> FunctionIdentity:
    """Library or C code: qualified name + distribution (or Python) version."""
    label = package_version(module)
    source_kind = isinstance(real, (FunctionType, type))
    what = "library code, not hashed by source" if source_kind else "no source available"
    note = f"{what}: identified by {module}.{name} @ {label.replace('==', ' ')}"
    deps = ((f"pkg:{module}.{name}", label),)
    digest = hash_fields("external", module, name, label)
    return FunctionIdentity(name, module, digest, None, False, None, deps, note)


def _project_identity(
    fn: object, real: FunctionType | type, name: str, module: str
) -> _Computed:
    """Walk the project-code graph from `real` (and from the wrappers around it)."""
    walker, node, digest, deps = walk_root(fn, real)
    source = node.shape.source
    if source is None:
        python = sys.version.split()[0]
        how = f"no usable source ({node.shape.problem}): identified by bytecode"
        note = f"{how} of {module}.{name} @ python {python}"
    else:
        note = f"normalised source of {module}.{name} + {len(deps)} dependencies"
    identity = FunctionIdentity(
        name, module, digest, source, source is not None, None, deps, note,
        shown=tuple(walker.shown.items()),
    )
    return identity, walker.guards(), walker.reads()


def _partial_identity(partial: functools.partial, version: str | None) -> FunctionIdentity:
    """Identity of ``partial.func`` plus the bound arguments (constants or functions only)."""
    inner = function_identity(partial.func, version=version)
    fields: list[str] = []
    shown: list[tuple[str, object]] = []
    args = [*enumerate(partial.args), *sorted(partial.keywords.items())]
    for key, value in args:
        fields += [str(key), _bound_digest(key, value)]
        label = f"const:{inner.module}.{inner.name}.<partial>.{key}"
        shown.append((label, value))
    bound = hash_fields("partial-args", str(len(partial.args)), *fields)
    own = [(label, fields[2 * i + 1]) for i, (label, _) in enumerate(shown)]
    deps = tuple(sorted((*inner.deps, ("partial-args", bound), *own)))
    return FunctionIdentity(
        inner.name,
        inner.module,
        hash_fields("partial", inner.digest, bound),
        inner.source,
        inner.has_source,
        inner.pinned_version,
        deps,
        f"functools.partial of {inner.note}",
        unbound_digest=inner.unbound_digest or inner.digest,
        data=inner.data,
        shown=(*inner.shown, *shown),
    )


def _bound_digest(key: int | str, value: object) -> str:
    """Digest of one argument bound by a partial."""
    encoded = encode_constant(value)
    if encoded is not None:
        return value_digest(encoded)
    if callable(value):
        return function_identity(value).digest
    raise LineageError(
        f"functools.partial binds a {type(value).__name__} to argument {key!r}; only constants and "
        "functions can be part of a function's identity. Pass it as a call argument instead."
    )


def _name_of(obj: object) -> str:
    """Qualified name of a callable, falling back to its type's."""
    name = getattr(obj, "__qualname__", None) or getattr(obj, "__name__", None)
    return name if isinstance(name, str) else type(obj).__qualname__
