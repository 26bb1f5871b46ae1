"""The part of a function's identity that depends on its code alone, memoised per code object.

A *shape* is the digest of the normalised tree (or of the bytecode when there is no usable
source), the normalised source text, and the dotted names the code reads. It is computed
once per code object (per class for classes): parsing and compiling files is the expensive
part of identity, and a code object never changes. What those names are bound to *now* is
not part of the shape; ``_graph`` resolves it on every computation.

Which names are read: the tree's Name/Attribute chains whose first name the compiler also
treated as global (``co_names``) or closure (``co_freevars``), so locals never count, except
locals bound by an import inside the code (``from . import helpers`` in a body). For a
class, the names in its methods' ``co_names`` and everything its body evaluates count. Both
rules over-approximate (an attribute that happens to share a global's name); that can only
add a dependency, never lose one.
"""

from __future__ import annotations

import ast
import dis
import weakref
from dataclasses import dataclass, replace
from types import CodeType, FunctionType
from typing import Any

from scistack.codeid import _ast_normalise as norm
from scistack.codeid._source import (
    body_assignments,
    class_functions,
    code_digest,
    code_names,
    defs_named,
    locate_class,
    locate_function,
)
from scistack.codeid._values import encode_constant, hash_fields, value_digest


@dataclass(frozen=True, slots=True)
class Shape:
    """Code-only facts about a function or class."""

    own: str  # digest of the normalised tree, or of the bytecode when source is unusable
    source: str | None  # normalised source; None when identified by bytecode
    refs: tuple[tuple[str, ...], ...]  # sorted dotted names read
    imports: tuple[tuple[str, norm.ImportSpec], ...]  # names bound by imports inside the code
    problem: str  # why the source was unusable; "" when it was used
    declared_global: frozenset[str] = frozenset()  # names assigned under ``global``: state
    mutated: tuple[tuple[str, ...], ...] = ()  # chains of globals changed in place: state
    mutated_names: frozenset[str] = frozenset()  # first names of everything changed in place
    default_names: tuple[tuple[str, str], ...] = ()  # (parameter, the name its default reads)
    self_attrs: tuple[str, ...] | None = ()  # names read on self/cls; None: self escapes
    # keyed reads (``B[k]``, ``B.get(k)``, ``getenv(k)``: `_ast_normalise.environment_reads`),
    # keyed as environment variables where ``B`` is ``os.environ`` (or ``os.getenv``)
    env_reads: tuple[norm.EnvRead, ...] = ()
    env_keyed: frozenset[tuple[str, ...]] = frozenset()  # dotted names read only by key
    env_dynamic: bool = False  # without source: names ``environ`` or ``getenv`` (the whole of it)
    # a class's attributes whose value its body computes by a call (``K = load_k()``): their
    # values, not the text, are what the class holds (`_computed_attributes`)
    computed: tuple[str, ...] = ()


_MEMO: dict[int, tuple[Any, Shape, tuple[CodeType, ...]]] = {}


def function_shape(fn: FunctionType) -> Shape:
    """Shape of a plain function, memoised on its code object."""
    code = fn.__code__
    return _memoised(code, lambda: _build_function_shape(fn))


def known_shape(code: CodeType) -> Shape | None:
    """The shape already worked out for `code` (by a code walk), else None: nothing is parsed."""
    entry = _MEMO.get(id(code))
    return entry[1] if entry is not None and entry[0]() is code else None


def class_shape(cls: type) -> Shape:
    """Shape of a class (its whole source, methods included), memoised on the class and the
    code of its methods (IPython's ``%autoreload`` sets a method's ``__code__`` in place: the
    shape memoised before that had been served after it)."""
    return _memoised(cls, lambda: _build_class_shape(cls), _method_codes(cls))


def _memoised(key: object, build: Any, codes: tuple[CodeType, ...] = ()) -> Shape:
    """Look `key` up by identity (and `codes`, by identity); weak references drop entries of
    dead code objects or classes."""
    entry = _MEMO.get(id(key))
    if entry is not None and entry[0]() is key and _same(entry[2], codes):
        return entry[1]
    shape = build()
    slot = id(key)
    _MEMO[slot] = (weakref.ref(key, lambda _ref, memo=_MEMO: memo.pop(slot, None)), shape, codes)
    return shape


def _method_codes(cls: type) -> tuple[CodeType, ...]:
    """The code of every method of `cls` and of the classes nested in it, in a fixed order."""
    return tuple(fn.__code__ for _, fn in all_methods(cls))


def _same(old: tuple[CodeType, ...], new: tuple[CodeType, ...]) -> bool:
    """The same code objects (by identity: equal code elsewhere is another edit's)."""
    return len(old) == len(new) and all(a is b for a, b in zip(old, new))


def _build_function_shape(fn: FunctionType) -> Shape:
    """Analyse one function's code (slow path)."""
    code = fn.__code__
    readable = code_names(code) | set(code.co_freevars)
    node, problem = locate_function(fn)
    if node is None:
        refs = tuple(sorted((name,) for name in readable))
        env = bool(readable & _ENV_NAMES)  # (which variable it reads is not known)
        return Shape(code_digest(code), None, refs, (), problem, _stored_globals(code), env_dynamic=env)
    tree = norm.normalise(node, strip_decorators=True)
    chains = {c for c in norm.name_chains(tree) if c[0] in readable}
    shape = _tree_shape(tree, chains, readable, _local_names(code))
    return replace(shape, default_names=_default_names(tree), self_attrs=_self_attrs(tree))


def sources_named(filename: str, qualname: str) -> list[str] | None:
    """The normalised sources (as `function_shape` makes a function's) of the functions of
    `filename` as it is now with qualified name `qualname`; None when that cannot be told
    (`_source.defs_named`)."""
    nodes = defs_named(filename, qualname)
    if nodes is None:
        return None
    return [norm.unparse(norm.normalise(node, strip_decorators=True)) for node in nodes]


def _self_attrs(tree: ast.AST) -> tuple[str, ...] | None:
    """Names read on the first parameter (``self.b()``) or on ``super()``.

    None when the first parameter *escapes*: used other than as ``self.x`` (passed to a
    function, called as ``cls()``, returned, ``getattr(self, name)``). Code elsewhere may then
    call any method by name, so the method must depend on its whole class.
    """
    args = getattr(tree, "args", None)
    params = [*args.posonlyargs, *args.args] if args is not None else []
    first = params[0].arg if params else None
    if first is None:
        return ()
    bases = {id(sub.value) for sub in ast.walk(tree) if isinstance(sub, ast.Attribute)}
    for sub in ast.walk(tree):
        if isinstance(sub, ast.Name) and sub.id == first and id(sub) not in bases:
            if isinstance(sub.ctx, ast.Load):
                return None
    found: set[str] = set()
    for chain in norm.name_chains(tree):
        if chain[0] == first and len(chain) > 1:
            found.add(chain[1])
            if chain[1] == "__class__" and len(chain) > 2:  # self.__class__.b
                found.add(chain[2])
    for sub in ast.walk(tree):
        if (
            isinstance(sub, ast.Attribute)
            and isinstance(sub.value, ast.Call)
            and isinstance(sub.value.func, ast.Name)
            and sub.value.func.id == "super"
        ):
            found.add(sub.attr)
    return tuple(sorted(found))


class Skeleton:
    """Stands for a class *without its method bodies* in the graph (one per class, weakly).

    A method depends on its class's skeleton (bases, decorators, class attributes, method
    signatures) and on the methods it reaches through ``self``/``cls``, not on every method:
    editing an unrelated method of the same class then changes nothing.
    """

    def __init__(self, cls: type) -> None:
        # weakly: `_SKELETONS` is keyed weakly on the class, and a value holding its key keeps
        # it for the process (a class a notebook defines again: every one, with its methods)
        self._cls = weakref.ref(cls)
        self.__module__ = cls.__module__
        self.__qualname__ = cls.__qualname__

    @property
    def cls(self) -> type:
        """The class (alive while anything walks it: a walk reaches it through the class)."""
        return self._cls()  # type: ignore[return-value]


_SKELETONS: weakref.WeakKeyDictionary[type, Skeleton] = weakref.WeakKeyDictionary()


def skeleton_of(cls: type) -> Skeleton:
    """The one Skeleton of `cls` (stable, so the graph keys it by identity)."""
    found = _SKELETONS.get(cls)
    if found is None:
        found = _SKELETONS[cls] = Skeleton(cls)
    return found


def skeleton_shape(skeleton: Skeleton) -> Shape | None:
    """Shape of a class with every method body replaced by ``pass``; None without source."""
    codes = _method_codes(skeleton.cls)  # (its signatures are in them: `class_shape`)
    shape = _memoised(skeleton, lambda: _build_skeleton_shape(skeleton.cls), codes)
    return shape if shape.source is not None else None


def _build_skeleton_shape(cls: type) -> Shape:
    node, problem = locate_class(cls)
    if node is None:
        return Shape("", None, (), (), problem)
    tree = norm.normalise(node, strip_decorators=False)
    computed = _computed_attributes(tree)  # (the methods' writes count: before they go)
    for stmt in tree.body:  # type: ignore[attr-defined]
        if isinstance(stmt, (ast.FunctionDef, ast.AsyncFunctionDef)):
            stmt.body = [ast.Pass()]
    refs = norm.name_chains(tree, skip_function_bodies=True) | _class_lambda_chains(tree)
    digest = hash_fields("skeleton", norm.dump(tree))
    return Shape(digest, norm.unparse(tree), tuple(sorted(refs)), (), "", computed=computed)


def _class_lambda_chains(tree: ast.AST) -> set[tuple[str, ...]]:
    """Dotted names read in the bodies of lambdas the class body makes outside its methods
    (``field(default_factory=lambda: {"a": helpers.scale})``): such a lambda is kept nowhere
    on the class (a dataclass holds it in its fields), so no method's code names what it
    reads, and an edit of ``helpers.scale`` had been served from the cache. Its parameters
    are left out; any other name counts (a name that is not a global finds nothing)."""
    found: set[tuple[str, ...]] = set()
    for stmt in getattr(tree, "body", ()):
        if isinstance(stmt, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            continue
        for sub in ast.walk(stmt):
            if isinstance(sub, ast.Lambda):
                args = sub.args
                params = {a.arg for a in (*args.posonlyargs, *args.args, *args.kwonlyargs, args.vararg, args.kwarg) if a}
                found |= {chain for chain in norm.name_chains(sub.body) if chain[0] not in params}
    return found


def _computed_attributes(tree: ast.AST) -> tuple[str, ...]:
    """Names the class body binds to the result of a call (``K = load_k()``, ``g: float =
    field(default=read_gain())``, ``TABLE = np.loadtxt(PATH)``): the same text holds another
    value once what the call reads changes (a file, the environment), so `_graph` reads these
    values as it reads module data. They had been known by their text alone: ``K = load_k()``
    reading a file gave the class the same digest after the file was edited, served stale.
    An attribute the class's own code changes in place (``self.cache[k] = v``,
    ``cls.seen.append(x)``) is its state, not an input, as a module's memo is."""
    _, mutated = norm.written_names(tree)
    state = {chain[1] for chain in mutated if len(chain) > 1}
    names: set[str] = set()
    for targets, value in body_assignments(getattr(tree, "body", ())):
        if any(isinstance(sub, ast.Call) for sub in ast.walk(value)):
            names.update(
                target.id for target in targets
                if isinstance(target, ast.Name) and not target.id.startswith("__")
            )
    return tuple(sorted(names - state))


def _default_names(tree: ast.AST) -> tuple[tuple[str, str], ...]:
    """Parameters whose default is a plain (dotted) name, e.g. ``k=FACTOR``: for `why`."""
    args = getattr(tree, "args", None)
    if args is None:
        return ()
    positional = [*args.posonlyargs, *args.args]
    pairs = [*zip(positional[len(positional) - len(args.defaults):], args.defaults)]
    pairs += [(a, d) for a, d in zip(args.kwonlyargs, args.kw_defaults) if d is not None]
    return tuple(
        (arg.arg, ast.unparse(default))
        for arg, default in pairs
        if isinstance(default, (ast.Name, ast.Attribute))
    )


def _build_class_shape(cls: type) -> Shape:
    """Analyse one class's code (slow path)."""
    methods = all_methods(cls)
    readable: set[str] = set()
    for _, fn in methods:
        for layer in _wrapped_layers(fn):  # (a decorated method: the names its own body reads)
            readable |= code_names(layer.__code__) | set(layer.__code__.co_freevars)
    node, problem = locate_class(cls)
    if node is None:
        own = hash_fields("class-bytecode", cls.__qualname__, *_class_contents(cls, methods))
        return Shape(own, None, tuple(sorted((name,) for name in readable)), (), problem)
    tree = norm.normalise(node, strip_decorators=False)
    refs = {chain for chain in norm.name_chains(tree) if chain[0] in readable}
    refs |= norm.name_chains(tree, skip_function_bodies=True) | _class_lambda_chains(tree)
    shape = _tree_shape(tree, refs, readable)
    return replace(shape, computed=_computed_attributes(tree))


def _wrapped_layers(fn: FunctionType) -> list[FunctionType]:
    """`fn` and the functions its ``functools.wraps`` layers wrap, outermost first. A method
    decorated by such a wrapper is the wrapper in the class's namespace: the names only the
    method's own body read (``x * GAIN``) had been left out of the class's references, and a
    class used whole (``M().apply(x)``) kept its digest when ``GAIN`` was edited."""
    layers: list[FunctionType] = []
    layer: object = fn
    while isinstance(layer, FunctionType) and layer not in layers and len(layers) < 16:
        layers.append(layer)
        layer = getattr(layer, "__wrapped__", None)
    return layers


def _local_names(code: CodeType) -> frozenset[str]:
    """Names local to `code` or to a code object nested in it (parameters, assigned names)."""
    names = set(code.co_varnames) | set(code.co_cellvars)
    for const in code.co_consts:
        if isinstance(const, CodeType):
            names |= _local_names(const)
    return frozenset(names)


def _tree_shape(
    tree: ast.AST, refs: set[tuple[str, ...]], readable: set[str], local: frozenset[str] = frozenset()
) -> Shape:
    """Shape of a located, normalised tree; chains rooted at a local import count too."""
    imports = norm.local_imports(tree)
    refs |= {chain for chain in norm.name_chains(tree) if chain[0] in imports}
    digest = hash_fields("ast", norm.dump(tree))
    declared, changed = norm.written_names(tree)
    reads, keyed = norm.environment_reads(tree)
    known = (readable - local) | imports.keys()  # (a local's or parameter's value is not known)
    env_reads = tuple(sorted((
        (base, kind, key if not isinstance(key, tuple) or key[0] in known else None)
        for base, kind, key in reads if base[0] in known
    ), key=repr))
    mutated = frozenset(chain for chain in changed if chain[0] in readable or chain[0] in imports)
    return Shape(
        digest,
        norm.unparse(tree),
        tuple(sorted(refs)),
        tuple(sorted(imports.items())),
        "",
        declared,
        tuple(sorted(mutated)),
        frozenset(chain[0] for chain in changed),
        env_reads=env_reads,
        env_keyed=frozenset(chain for chain in keyed if chain[0] in known),
    )


_ENV_NAMES = frozenset({"environ", "getenv", "environb", "getenvb"})


def _stored_globals(code: CodeType) -> frozenset[str]:
    """Names a code object (or one nested in it) assigns as globals, read from its bytecode."""
    stores = ("STORE_GLOBAL", "DELETE_GLOBAL")
    names = {i.argval for i in dis.get_instructions(code) if i.opname in stores}
    for const in code.co_consts:
        if isinstance(const, CodeType):
            names |= _stored_globals(const)
    return frozenset(names)


def all_methods(cls: type) -> list[tuple[str, FunctionType]]:
    """Functions of `cls` and of the classes nested in it (their globals count too)."""
    found = list(class_functions(cls))
    for attr, value in sorted(vars(cls).items()):
        if isinstance(value, type) and value.__qualname__ == f"{cls.__qualname__}.{attr}":
            found += [(f"{attr}.{name}", fn) for name, fn in all_methods(value)]
    return found


def _class_contents(cls: type, methods: list[tuple[str, FunctionType]]) -> list[str]:
    """Sorted method bytecode digests and constant class attributes (dataclass defaults...)."""
    parts = [f"{attr}:{code_digest(fn.__code__)}" for attr, fn in methods]
    for attr, value in vars(cls).items():
        encoded = encode_constant(value)
        if encoded is not None and not attr.startswith("__"):
            parts.append(f"{attr}={value_digest(encoded)}")
    return sorted(parts)
