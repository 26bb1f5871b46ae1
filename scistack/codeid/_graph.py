"""Resolve what a function references *now*, and hash the reference graph deterministically.

Each project function or class is a node. Its shape (``_shapes``) lists the dotted names it
reads; here they are looked up in the function's globals and closure cells, step by step
through modules (``helpers.smooth``, ``pkg.mod.CONST``), and classified:

* project function or class  -> an edge to another node (``helper:`` / ``class:`` label);
* library function, class, module or C callable -> ``("pkg:mod.name", "dist==version")``;
* immutable constant -> ``("const:mod.NAME", digest of its canonical bytes)``;
* anything else -> ``("mutable:mod.NAME", "mutable")``: not hashed into the code digest;
  unless some function of the walk writes it (state) or it is a logger/stream/lock, it is
  also kept in ``Walk.data`` and digested by content at every call (``identity``);
* a method -> its class's skeleton (``classdef:`` label), its dunders and the methods it
  reaches through ``self``/``cls``/``super()``; ``Model.a`` resolves to that method.

Every lookup is also recorded as a *guard* (namespace, name, object found), so a memoised
identity can later be re-validated with a few ``is`` comparisons instead of a new walk.

Digests come out of Tarjan's strongly connected components, sinks first. A node outside any
cycle hashes its label, own shape and sorted dependencies. The members of a cycle (mutual
recursion, or a function calling itself) name each other as ``"recursive"``; the component
is hashed as a whole from its sorted members, and each member's digest is (label, component
digest). Nothing depends on traversal order, so the digest of ``f`` is the same whether it was
computed first or as a helper of something else. Recursion depth grows with the longest chain
of distinct project functions, which is far below Python's recursion limit in practice.
"""

from __future__ import annotations

import ast
import builtins
import functools
import importlib
import importlib.util
import inspect
import os
import sys
from collections.abc import Mapping
import weakref
from dataclasses import dataclass, field
from types import (BuiltinMethodType, CellType, CodeType, FunctionType, GetSetDescriptorType,
                   MemberDescriptorType, MethodType, ModuleType)
from typing import Any

from scistack.codeid import _codesets
from scistack.codeid._ast_normalise import ANY, ImportSpec
from scistack.codeid._data import EnvironmentVariable, is_state, pure_python
from scistack.codeid._options import process_options
from scistack.codeid._packages import (
    _is_library_path,
    code_module,
    extension_binary,
    is_project_module,
    package_version,
)
from scistack.codeid._shapes import (
    Shape,
    Skeleton,
    all_methods,
    class_shape,
    function_shape,
    skeleton_of,
    skeleton_shape,
)
from scistack.codeid._source import own_methods
from scistack.codeid._values import encode_constant, hash_fields, in_project, value_digest

MISSING = object()


@dataclass(frozen=True, slots=True)
class Guards:
    """Every binding an identity was computed from, re-checked by object identity."""

    # a slot holding the walk's root (a recursive function's own name, a method's class) is
    # (`_Rooted`, name, `_SAME`), holding it weakly for the same reason as `codes`; so are the
    # slots of a class holding it (one `_InRootClass`) and a cell holding it (`_RootedCell`)
    slots: tuple[tuple[Any, str, object], ...]
    # (a weak reference to the function, its code): a memo in `identity._IDENTITIES` holding
    # its own function had kept it alive for the process (a notebook redefining it: every one)
    codes: tuple[tuple[Any, CodeType], ...]
    cells: tuple[tuple[CellType, object], ...]
    defaults: tuple[tuple[Any, object, object], ...] = ()
    # source files of the project modules a computed ``getattr`` reached (`Walk._any_member`):
    # inputs by content of every call (``codeid.files``), their data values being no part here
    modules: tuple[str, ...] = ()
    # (reader, value) of the process-wide options the identity keys (`_options`): numpy's
    # error modes, decimal's context
    options: tuple[tuple[Any, object], ...] = ()
    # the codes and defaults were read with `codeid.files`' audit hook in and no code or
    # defaults of a function a walk read set since (`_codesets`): while none is, they need no
    # reading again
    watched: bool = field(default=False, compare=False)

    def valid(self) -> bool:
        """True while every namespace slot, ``__code__`` and closure cell holds the same object."""
        # Plain loops, not all(...): this runs on every cache hit and generators cost more.
        for namespace, name, value in self.slots:
            if namespace.get(name, MISSING) is not value:
                return False
        for cell, value in self.cells:
            if cell_value(cell) is not value:
                return False
        if not (self.watched and _codesets.STATE[0] == 1):  # (each read here is an audit event)
            for ref, code in self.codes:
                fn = ref()  # (None: it died, and with it what this memo was of)
                if fn is None or fn.__code__ is not code:
                    return False
            for ref, positional, keywords in self.defaults:
                fn = ref()
                if fn is None or fn.__defaults__ is not positional or fn.__kwdefaults__ is not keywords:
                    return False
        for read, value in self.options:
            if read() != value:
                return False
        return True


_SAME = object()


class _Rooted:
    """A namespace slot held weakly (`Walk.guards`): the `Guards.slots` check reads `get` and
    finds `_SAME` while the slot still holds the object (each other slot costs nothing more)."""

    __slots__ = ("namespace", "ref")

    def __init__(self, namespace: dict, ref: Any) -> None:
        self.namespace, self.ref = namespace, ref

    def get(self, name: str, default: object) -> object:
        held = self.ref()  # (None once dead: never taken for a slot holding None)
        return _SAME if held is not None and self.namespace.get(name, MISSING) is held else default


class _InRootClass:
    """The slots of a class holding the walk's root (a method root's own class), the class
    and their values held weakly, checked in one `get`: its namespace (and its ``__dict__``
    and ``__weakref__`` descriptors, the values of its dunder slots) hold the class, which
    holds the root, and the memo of a method had kept its class and itself for the process
    (a class a notebook defines again: every one). A value with no weak reference is held as
    it is, but a descriptor of the class itself (``__dict__``, a ``__slots__`` member), which
    holds it: known by its type and class."""

    __slots__ = ("cls", "weak", "own", "held")

    def __init__(self, cls: type) -> None:
        self.cls = weakref.ref(cls)
        self.weak: list[tuple[str, Any]] = []  # (name, a weak reference to its value)
        self.own: list[tuple[str, type]] = []  # (name, the type of the class's own descriptor)
        self.held: list[tuple[str, object]] = []  # (name, its value)

    def add(self, name: str, value: object) -> None:
        if isinstance(value, (GetSetDescriptorType, MemberDescriptorType)) and value.__objclass__ is self.cls():
            self.own.append((name, type(value)))
            return
        try:
            self.weak.append((name, weakref.ref(value)))
        except TypeError:
            self.held.append((name, value))

    def get(self, _name: str, default: object) -> object:
        cls = self.cls()
        if cls is None:
            return default
        members = vars(cls)
        for name, ref in self.weak:
            held = ref()  # (None once dead: never taken for a slot holding None)
            if held is None or members.get(name, MISSING) is not held:
                return default
        for name, kind in self.own:
            now = members.get(name, MISSING)
            if type(now) is not kind or now.__objclass__ is not cls:  # type: ignore[attr-defined]
                return default
        for name, value in self.held:
            if members.get(name, MISSING) is not value:
                return default
        return _SAME


class _RootedCell:
    """A closure cell holding the walk's root (a nested recursive function's own name),
    reached through the function whose closure holds it, both held weakly: a cell has no
    weak reference, and held, it kept the function and its memo for the process."""

    __slots__ = ("owner", "place", "ref")

    def __init__(self, owner: Any, place: int, ref: Any) -> None:
        self.owner, self.place, self.ref = owner, place, ref

    def get(self, name: str, default: object) -> object:
        fn, held = self.owner(), self.ref()
        if fn is None or held is None:
            return default
        return _SAME if cell_value(fn.__closure__[self.place]) is held else default


def _holds(value: object, roots: set[int]) -> bool:
    """Whether a guard's `value` is (or holds, as a method's class does, or a class nesting
    that class) one of `roots` (a staticmethod or classmethod has no weak reference: it stays
    held)."""
    if not roots or not isinstance(value, (FunctionType, type)):
        return False
    if not isinstance(value, type):
        return id(unwrap(value)) in roots or id(value) in roots
    for attr, member in list(vars(value).items()):
        if id(unwrap(member)) in roots or id(member) in roots:
            return True
        if isinstance(member, type) and member.__qualname__ == f"{value.__qualname__}.{attr}" \
                and _holds(member, roots):
            return True
    return False


def cell_value(cell: CellType) -> object:
    """Contents of a closure cell, MISSING while it is still empty."""
    try:
        return cell.cell_contents
    except ValueError:
        return MISSING


def unwrap(value: object) -> object:
    """Follow staticmethod/classmethod/bound method and ``__wrapped__`` to the real function."""
    if isinstance(value, (staticmethod, classmethod, MethodType)):
        value = value.__func__
    if isinstance(value, FunctionType) or callable(getattr(value, "__wrapped__", None)):
        try:
            return inspect.unwrap(value)  # type: ignore[arg-type]
        except ValueError:  # a __wrapped__ cycle
            return value
    return value


def wrapper_layers(value: object) -> list[FunctionType]:
    """The project functions wrapping the real one (``functools.wraps``), outermost first."""
    layers: list[FunctionType] = []
    while (
        isinstance(value, FunctionType)
        and hasattr(value, "__wrapped__")
        and is_project_module(home_module(value))
        and len(layers) < 16
    ):
        layers.append(value)
        value = value.__wrapped__
    return layers


def walk_root(
    fn: object, real: FunctionType | type
) -> tuple[Walk, Node, str, tuple[tuple[str, str], ...]]:
    """Walk from `real` and from the wrappers around it: (walk, root node, digest, deps)."""
    walker = Walk()
    walker.roots = (fn, real, *wrapper_layers(fn))
    node = walker.visit(real)
    digest, deps = node.digest, node.deps
    for wrapper in wrapper_layers(fn):
        outer = walker.nodes.get(id(wrapper)) or walker.visit(wrapper)
        deps = tuple(sorted((*deps, (outer.label.replace("helper:", "wrapper:", 1), outer.digest))))
        digest = hash_fields("wrapped", digest, outer.label, outer.digest)
    registry = _dispatch_registry(fn)
    if registry is not None:  # a singledispatch function is the root
        for impl in list(registry.values()):
            impl = unwrap(impl)
            if impl is real or not isinstance(impl, FunctionType):
                continue
            if not is_project_module(home_module(impl)):
                continue
            other = walker.nodes.get(id(impl)) or walker.visit(impl)
            label = other.label.replace("helper:", "registered:", 1)
            deps = tuple(sorted((*deps, (label, other.digest))))
            digest = hash_fields("registered", digest, other.label, other.digest)
        walker.data.setdefault(f"{node.label.partition(':')[2]}.<registry>", registry)
    labels = (label for each in walker.nodes.values() for label, _ in each.leaves)
    options, walker.options = process_options(labels, walker.shown.values())
    if options:  # (none by default: identities stay as they were)
        deps = tuple(sorted((*deps, *options)))
        digest = hash_fields("options", digest, *_flat(tuple(options)))
    return walker, node, digest, deps


@dataclass(frozen=True, slots=True)
class _Roots:
    """Where the first name of a dotted reference can come from, for one node."""

    namespace: dict
    cells: dict[str, CellType]
    imports: dict[str, ImportSpec]
    scope: str


@dataclass(eq=False, slots=True)
class Node:
    """A project function or class during one walk (mutable work state, never stored)."""

    obj: object
    label: str
    shape: Shape
    leaves: set[tuple[str, str]] = field(default_factory=set)
    targets: dict[tuple[str, int], object] = field(default_factory=dict)
    index: int = 0
    low: int = 0
    on_stack: bool = True
    digest: str = ""
    deps: tuple[tuple[str, str], ...] = ()


class Walk:
    """One identity computation over the graph reachable from a root function or class."""

    def __init__(self) -> None:
        self.watched = _codesets.unseen_sets_impossible()  # (before any code is read)
        self.nodes: dict[int, Node] = {}
        self.stack: list[Node] = []
        self.slots: list[tuple[dict, str, object]] = []
        self.codes: list[tuple[FunctionType, CodeType]] = []
        self.cells: list[tuple[CellType, object]] = []
        self.defaults: list[tuple[FunctionType, object, object]] = []
        self.data: dict[str, object] = {}  # mutable values read: digested at call time
        self.state: set[int] = set()  # ids of objects some function writes: not inputs
        self.shown: dict[str, object] = {}  # constants by label, for `why`'s "old -> new"
        self.modules: dict[str, None] = {}  # source files of modules a computed getattr reached
        self.options: list[tuple[Any, object]] = []  # guards of the options keyed (`walk_root`)
        self.roots: tuple[object, ...] = ()  # what the memo is of (`walk_root`): held weakly

    def guards(self) -> Guards:
        """The bindings read so far, each once, for memo validation; nothing in them holds
        the root (`Guards.codes`, `_Rooted`, `_InRootClass`, `_RootedCell`)."""
        # Helpers share names (``np``, ``len``): check each binding once on the hot path. A
        # class's slots are keyed by the class (`vars` makes a new proxy at each call).
        slots = {(id(ns), name): (ns, name, value) for ns, name, value in self.slots}
        codes = {id(fn): (weakref.ref(fn), code) for fn, code in self.codes}
        cells = {id(cell): (cell, value) for cell, value in self.cells}
        defaults = {id(fn): (weakref.ref(fn), d, k) for fn, d, k in self.defaults}
        roots = {id(root) for root in self.roots}
        proxies: dict[int, Any] = {}  # (one namespace proxy per class)
        rooted: dict[int, _InRootClass] = {}  # (one check per class holding the root)
        guarded: list[tuple[Any, str, object]] = []
        for ns, name, value in slots.values():
            if isinstance(ns, type):  # a class's own namespace: holding the root, held weakly
                if id(ns) not in rooted and id(ns) not in proxies:
                    if _holds(ns, roots):
                        rooted[id(ns)] = _InRootClass(ns)
                        guarded.append((rooted[id(ns)], "", _SAME))
                    else:
                        proxies[id(ns)] = vars(ns)
                if id(ns) in rooted:
                    rooted[id(ns)].add(name, value)
                else:
                    guarded.append((proxies[id(ns)], name, value))
            else:
                guarded.append((_Rooted(ns, weakref.ref(value)), name, _SAME) if _holds(value, roots)
                               else (ns, name, value))
        plain_cells = []
        for cell, value in cells.values():  # (a cell has no weak reference: its function has)
            owner = self._cell_owner(cell) if _holds(value, roots) else None
            if owner is None:
                plain_cells.append((cell, value))
            else:
                guarded.append((_RootedCell(weakref.ref(owner[0]), owner[1], weakref.ref(value)), "", _SAME))
        return Guards(
            tuple(guarded),
            tuple(codes.values()),
            tuple(plain_cells),
            tuple(defaults.values()),
            tuple(self.modules),
            tuple(self.options),
            self.watched,
        )

    def _cell_owner(self, cell: CellType) -> tuple[FunctionType, int] | None:
        """(a function walked, the place of `cell` in its closure), to reach the cell through
        it (`_RootedCell`); None: no function walked holds it."""
        for fn, _ in self.codes:
            for place, held in enumerate(fn.__closure__ or ()):
                if held is cell:
                    return fn, place
        return None

    def reads(self) -> tuple[tuple[str, object], ...]:
        """(label, object) of every mutable value read and written by no function of the walk."""
        return tuple(
            (label, value)
            for label, value in sorted(self.data.items(), key=lambda item: item[0])
            if id(value) not in self.state
        )

    def visit(self, obj: FunctionType | type) -> Node:
        """Tarjan's strongconnect: build `obj`'s node, visit targets, seal finished components."""
        node = self._make_node(obj)
        self.nodes[id(obj)] = node
        node.index = node.low = len(self.nodes)
        self.stack.append(node)
        for target in list(node.targets.values()):
            child = self.nodes.get(id(target))
            if child is None:
                child = self.visit(target)  # type: ignore[arg-type]
                node.low = min(node.low, child.low)
            elif child.on_stack:
                node.low = min(node.low, child.index)
        if node.low == node.index:
            members: list[Node] = []
            while not members or members[-1] is not node:
                members.append(self.stack.pop())
                members[-1].on_stack = False
            self._seal(members)
        return node

    def _make_node(self, obj: FunctionType | type) -> Node:
        """Resolve every name `obj` reads into leaves and targets."""
        scope = f"{obj.__module__}.{obj.__qualname__}"
        if isinstance(obj, Skeleton):
            return self._skeleton_node(obj, scope)
        if isinstance(obj, type):
            self._class_code(obj)  # (before its shape reads the methods' code)
            node = Node(obj, f"class:{scope}", class_shape(obj))
            own = own_methods(obj)
            module = sys.modules.get(obj.__module__)
            namespace = own[0].__globals__ if own else (vars(module) if module else {})
            cells = {
                n: c for fn in own for n, c in zip(fn.__code__.co_freevars, fn.__closure__ or ())
            }
            cells.pop("__class__", None)  # the implicit cell of super(): the class itself
        else:
            _codesets.reading(obj)  # (before its code or defaults are read: a set is seen)
            scope = f"{home_module(obj)}.{_code_qualname(obj)}"
            node = Node(obj, f"helper:{scope}", function_shape(obj))
            self.codes.append((obj, obj.__code__))
            namespace = obj.__globals__
            cells = dict(zip(obj.__code__.co_freevars, obj.__closure__ or ()))
        roots = _Roots(namespace, cells, dict(node.shape.imports), scope)
        for chain in node.shape.mutated:
            found = self._lookup(chain, roots)
            if found is not None:
                self.state.add(id(found[1]))
        for chain in node.shape.refs:
            self._resolve(node, chain, roots)
        if isinstance(obj, type) and node.shape.source is None:  # its text names no bases
            for base in obj.__bases__:
                if base is not object:
                    self.classify(node, f"{scope}.<base>", base)
        if isinstance(obj, type):
            self._computed_attributes(node, obj, scope)
            self._method_defaults(node, obj, scope)
        self._environment(node, roots)
        if isinstance(obj, FunctionType):
            self._defaults(node, obj, scope)
            owner = self._owning_class(obj)
            if owner is not None:
                self._method_owner(node, obj, owner, scope)
        return node

    def _class_code(self, cls: type) -> None:
        """Guard the code of every method of `cls` (and of the classes nested in it), which
        its shape is made from: IPython's ``%autoreload`` sets a method's ``__code__`` in
        place, and a function using the class had kept its memo (a stale hit)."""
        for _, fn in all_methods(cls):
            _codesets.reading(fn)  # (before its code is read: a set is seen)
            self.codes.append((fn, fn.__code__))

    def _environment(self, node: Node, roots: _Roots) -> None:
        """The environment variables `node` reads by key: ``os.environ["X"]``, ``os.getenv("X")``,
        ``"X" in os.environ``, also through another name (``ENV = os.environ``) or by a
        constant's name (``os.getenv(NAME)``, ``NAME = "X"``: that variable, as a literal is).
        A key computed at run time (a parameter: ``def setting(name): return os.getenv(name)``)
        reads the whole environment: unverifiable, as iterating it is. Those had been no input
        at all, and a changed variable was served from the cache."""
        if node.shape.env_dynamic:
            self.data.setdefault("os.environ", os.environ)
        for base, kind, key in node.shape.env_reads:
            found = self._lookup(base, roots)
            if found is None or not (found[1] is os.environ if kind == "item" else _getenv(found[1])):
                continue
            if isinstance(key, tuple):
                named = self._lookup(key, roots)
                key = named[1] if named is not None and isinstance(named[1], str) else None
            if key is None:
                self.data.setdefault("os.environ", os.environ)
            else:
                self.data.setdefault(f"os.environ[{key!r}]", EnvironmentVariable(key))

    def _method_owner(self, node: Node, fn: FunctionType, owner: type, scope: str) -> None:
        """A method depends on its class's skeleton, its dunders and the methods it reaches
        through ``self``/``cls``/``super()``; without the class's source, on the whole class."""
        skeleton = skeleton_of(owner)
        if skeleton_shape(skeleton) is None or node.shape.self_attrs is None:
            self.classify(node, scope, owner)  # no source, or self escapes: the whole class
            return
        node.targets[(f"classdef:{owner.__module__}.{owner.__qualname__}", id(skeleton))] = skeleton
        names = set(node.shape.self_attrs)
        names |= {n for n in vars(owner) if n.startswith("__") and n.endswith("__")}
        for name in sorted(names):
            for klass in owner.__mro__:
                if name in vars(klass):
                    member = vars(klass)[name]
                    self.slots.append((klass, name, member))  # (a class: `Walk.guards`)
                    for inner in _member_functions(member):
                        if inner is not fn:
                            self._code_dependency(node, inner)
                    break

    def _skeleton_node(self, skeleton: Skeleton, scope: str) -> Node:
        """A class without method bodies: bases, decorators, class attributes, signatures."""
        cls = skeleton.cls
        self._class_code(cls)  # (its signatures are the methods' code)
        shape = skeleton_shape(skeleton)
        node = Node(skeleton, f"classdef:{scope}", shape)  # type: ignore[arg-type]
        module = sys.modules.get(cls.__module__)
        own = own_methods(cls)
        namespace = own[0].__globals__ if own else (vars(module) if module else {})
        roots = _Roots(namespace, {}, {}, scope)
        for chain in node.shape.refs:
            found = self._lookup(chain, roots)
            if found is None:
                continue
            where, value = found
            base_class = isinstance(value, type) and value in cls.__mro__[1:]
            if base_class and is_project_module(value.__module__):  # type: ignore[union-attr]
                base = skeleton_of(value)
                if skeleton_shape(base) is not None:
                    label = f"classdef:{value.__module__}.{value.__qualname__}"
                    node.targets[(label, id(base))] = base
                    continue
            self.classify(node, where, value)
        self._computed_attributes(node, cls, scope)
        return node

    def _computed_attributes(self, node: Node, cls: type, scope: str) -> None:
        """The values of the attributes `cls`'s body computes by a call (``K = load_k()``),
        classified as a module's values are: a constant by content, other data read at each
        call (`Shape.computed`). Their text is no part of what they hold."""
        members = vars(cls)
        for name in node.shape.computed:
            value = members.get(name, MISSING)  # (a dataclass's default_factory field: absent)
            self.slots.append((cls, name, value))  # type: ignore[arg-type]
            if value is MISSING or isinstance(value, (staticmethod, classmethod, property)):
                continue
            self.classify(node, f"{scope}.{name}", value)

    def _defaults(self, node: Node, fn: FunctionType, scope: str) -> None:
        """Default argument values: a default naming a function or constant is code it runs."""
        positional, keywords = fn.__defaults__, fn.__kwdefaults__
        if not positional and not keywords:
            return
        self.defaults.append((fn, positional, keywords))
        code = fn.__code__
        names = code.co_varnames[: code.co_argcount]
        mutated = node.shape.mutated_names
        pairs = [*zip(names[len(names) - len(positional or ()) :], positional or ())]
        pairs += sorted((keywords or {}).items())
        named = dict(node.shape.default_names)
        for name, value in pairs:
            if name in mutated:  # ``def f(x, seen=[])`` appending to seen: state
                node.leaves.add((f"mutable:{scope}.<default>.{name}", "state"))
                continue
            source = f"={named[name]}" if name in named else ""
            self.classify(node, f"{scope}.<default>.{name}{source}", value)

    def _method_defaults(self, node: Node, cls: type, scope: str) -> None:
        """The defaults of the methods of `cls` (and of its nested classes), read and guarded
        as a function's own are (`_defaults`): the class's text says only what they were made
        with, and ``Helper.scale.__defaults__ = (3,)`` set at run time had kept the identity of
        a function using the class (a stale hit). Those of the method written in the class
        body are read (behind a ``functools.wraps`` layer too); code a class decorator made
        (a dataclass's ``__init__``, a NamedTuple's ``__new__``) is left out: its defaults are
        the class body's, which its text holds, and a dataclass's default_factory sentinel
        would be data read at every call."""
        prefix = f"{cls.__qualname__}."
        for attr, fn in all_methods(cls):
            layer: object = fn
            for _ in range(16):
                if not isinstance(layer, FunctionType):
                    break
                if layer.__code__.co_qualname.startswith(prefix):
                    _codesets.reading(layer)  # (before its defaults are read: a set is seen)
                    self._defaults(node, layer, f"{scope}.{attr}")
                    break
                layer = getattr(layer, "__wrapped__", None)

    def _resolve(self, node: Node, chain: tuple[str, ...], roots: _Roots) -> None:
        """Look a dotted name up (import, closure or global; then through modules); classify it."""
        if (
            chain[0] in node.shape.declared_global
            and chain[0] not in roots.imports
            and chain[0] not in roots.cells
        ):
            where = f"{roots.namespace.get('__name__')}.{chain[0]}"
            node.leaves.add((f"mutable:{where}", "state"))  # ``global n; n += 1``: state
            return
        if chain[-1] == ANY:  # ``getattr(helpers, name)``, a name computed at run time
            found = self._lookup(chain[:-1], roots)
            if found is not None and isinstance(found[1], ModuleType) and is_project_module(found[1].__name__):
                self._any_member(node, found[1])
            return
        found = self._lookup(chain, roots)
        if found is not None:
            where, value = found
            if chain not in node.shape.env_keyed and value is not os.environ and _getenv(value):
                self.data.setdefault("os.environ", os.environ)  # (``G = os.getenv``; G(k))
            self.classify(node, where, value, keyed=chain in node.shape.env_keyed)

    def _any_member(self, node: Node, module: ModuleType, depth: int = 0) -> None:
        """Every code member of a project module (a function, a class, any callable: a
        ``functools.partial``, an ``lru_cache`` or ``np.vectorize`` wrapper; and its own
        submodules' code members, as ``getattr(plugins, name).run`` reaches them; not its
        dunders, nor other modules it imported): a computed ``getattr`` may return any (an
        edit of the one it reached had been served from the cache, in a new process too).
        Not its data values: a module's ``STARTED = time.time()``, a run id or a
        ``tempfile.mkdtemp()`` differ in every process, and every fresh process had missed
        for every function dispatching by a computed name. Its data is seen by the module's
        source file instead, an input of every call by its content (`Guards.modules`,
        ``codeid.files``): the same in every process, and a data edit (K = 2 -> 3) misses."""
        path = getattr(module, "__file__", None)
        if isinstance(path, str) and path.endswith(".py"):
            self.modules[path] = None
        members = vars(module)
        for attr, value in list(members.items()):
            if attr.startswith("__") and attr.endswith("__"):
                continue
            self.slots.append((members, attr, value))  # (a data member rebound to a function)
            if isinstance(value, ModuleType):
                if value.__name__ == f"{module.__name__}.{attr}" and depth < 2 and is_project_module(value.__name__):
                    self._any_member(node, value, depth + 1)
            elif callable(value):
                self.classify(node, f"{module.__name__}.{attr}", value)

    def _lookup(self, chain: tuple[str, ...], roots: _Roots) -> tuple[str, object] | None:
        """(where, value) a dotted name reaches now (None: not defined); guards recorded."""
        root = chain[0]
        if root in roots.imports:
            where, value = self._imported(roots.imports[root], roots.namespace)
        elif root in roots.cells:
            value = cell_value(roots.cells[root])
            self.cells.append((roots.cells[root], value))
            where = f"{roots.scope}.<closure>.{root}"
        else:
            value = roots.namespace.get(root, MISSING)  # MISSING: a builtin, or not defined yet
            self.slots.append((roots.namespace, root, value))
            where = f"{roots.namespace.get('__name__')}.{root}"
        for attr in chain[1:]:
            if isinstance(value, type):
                method = self._class_method(value, attr)
                if method is not None:  # ``Model.a``: that method, not every method of Model
                    return f"{value.__module__}.{value.__qualname__}.{attr}", method
                break
            if not isinstance(value, ModuleType):
                break
            members = vars(value)
            found = members.get(attr, MISSING)
            if found is MISSING and not is_project_module(value.__name__):
                found = _library_attribute(value, attr)
            elif found is MISSING and "__path__" in members:
                self._unimported_source(value, attr)
            self.slots.append((members, attr, found))
            if found is MISSING:
                break
            where, value = f"{value.__name__}.{attr}", found
        return None if value is MISSING else (where, value)

    def _unimported_source(self, package: ModuleType, attr: str) -> None:
        """``pkg.sub`` named by attribute in a project package whose submodule ``sub`` no code
        imported yet (``import pkg`` and ``pkg.sub.g(x)``; a helper called first may import it):
        its source file is an input of every call by its content, as a computed getattr's
        modules are (`Guards.modules`), so an edit of ``g`` misses: the call had been recorded
        without ``g`` and its edit served from the cache. Found by ``find_spec``, never
        imported here: its top level is the project's code (it may print, parse arguments or
        exit, and a branch not taken never runs it); once something imports it, the slot
        guard walks again and reaches ``g`` itself."""
        try:
            spec = importlib.util.find_spec(f"{package.__name__}.{attr}")
        except Exception:  # noqa: BLE001 - no such submodule (or a finder that fails): nothing
            return
        origin = getattr(spec, "origin", None)
        if isinstance(origin, str) and origin.endswith(".py"):
            name = f"{package.__name__}.{attr}"
            for path in _static_project_sources(name, origin, origin.endswith("__init__.py")):
                self.modules[path] = None

    def _imported(self, spec: ImportSpec, namespace: dict) -> tuple[str, object]:
        """What an import inside a function body binds, found (or imported) via sys.modules."""
        module_name, level, attr = spec
        try:
            name = importlib.util.resolve_name(
                "." * level + module_name, namespace.get("__package__")
            )
            module = sys.modules.get(name) or importlib.import_module(name)
            if attr is not None and not hasattr(module, attr):
                importlib.import_module(f"{name}.{attr}")  # ``from pkg import submodule``
            own_import = _own_import(namespace)
            if own_import is not None:  # (the module binds as its own import would)
                module = own_import(name, namespace, None, (attr or "__name__",), 0)
        except Exception:  # noqa: BLE001 - the call itself will fail the same way (an
            # ImportError; a SyntaxError or any error of a module's top level, edited since:
            # status and why had failed with it, now the code differs from what was recorded)
            return f"{module_name}.{attr}", MISSING
        if own_import is None:
            self.slots.append((sys.modules, name, module))
        if attr is None:
            return name, module
        value = vars(module).get(attr, MISSING)
        self.slots.append((vars(module), attr, value))
        return f"{name}.{attr}", value

    def _class_method(self, cls: type, attr: str) -> FunctionType | None:
        """The function behind ``cls.attr`` when it is a method of a project class with source."""
        if not is_project_module(cls.__module__) or skeleton_shape(skeleton_of(cls)) is None:
            return None
        for klass in cls.__mro__:
            if attr in vars(klass):
                member = vars(klass)[attr]
                self.slots.append((klass, attr, member))
                found = _member_functions(member)
                return found[0] if len(found) == 1 and not isinstance(member, property) else None
        return None

    def _owning_class(self, fn: FunctionType) -> type | None:
        """The class a method is defined in (its source covers ``self.x()`` calls), if reachable."""
        parts = fn.__qualname__.split(".")
        if len(parts) < 2 or "<locals>" in parts:
            return None
        value = fn.__globals__.get(parts[0], MISSING)
        self.slots.append((fn.__globals__, parts[0], value))
        for part in parts[1:-1]:
            value = vars(value).get(part, MISSING) if isinstance(value, type) else MISSING
        return value if isinstance(value, type) and parts[-1] in vars(value) else None

    def classify(self, node: Node, where: str, value: object, keyed: bool = False) -> None:
        """Turn one referenced object into a leaf dependency or an edge to another node
        (`keyed`: a name the code reads only by key, as `_environment` keys ``os.environ``)."""
        bound = isinstance(value, (MethodType, BuiltinMethodType))
        owner = getattr(value, "__self__", None) if bound else None
        if bound and owner is not None and not isinstance(owner, (type, ModuleType)):
            node.leaves.add((f"mutable:{where}.__self__", "mutable"))  # instance state, not code
            if not is_state(owner) and not (keyed and owner is os.environ):  # (os.environ.get:
                # called by key only, `_environment` keys it) its state is data the method
                # reads (random.random)
                self.data.setdefault(f"{where}.__self__", owner)
        if value is os.environ:  # (under any name: ``ENV = os.environ``, a default, data)
            node.leaves.add((f"mutable:{where}", "mutable"))
            if not keyed:  # iterated, copied or passed on: the whole environment is read
                self.data.setdefault(where, value)
            return
        if isinstance(value, ModuleType):
            if not is_project_module(value.__name__) or extension_binary(value.__name__):
                node.leaves.add((f"pkg:{value.__name__}", package_version(value.__name__)))
            return
        if isinstance(value, functools.partial):
            self.classify(node, f"{where}.<partial>", value.func)
            for key, arg in [*enumerate(value.args), *sorted(value.keywords.items())]:
                self.classify(node, f"{where}.<partial>.{key}", arg)
            return
        self._indirect_code(node, where, value)
        target = unwrap(value)
        if isinstance(target, (FunctionType, type)):
            self._code_dependency(node, target)
            return
        encoded = encode_constant(value)
        if encoded is not None:
            placed = in_project(value, self._project_folders(node, where))
            if placed is not value:  # (a path inside the project: by its place in it)
                value, encoded = placed, encode_constant(placed) or encoded
            node.leaves.add((f"const:{where}", value_digest(encoded)))
            self.shown.setdefault(f"const:{where}", value)
            return
        kind = type(value)
        if is_project_module(kind.__module__):
            self._code_dependency(node, kind)  # an instance of a project class: its class counts
        elif callable(value):
            module = getattr(value, "__module__", None) or kind.__module__
            name = getattr(value, "__qualname__", None) or getattr(
                value, "__name__", kind.__qualname__
            )
            node.leaves.add((f"pkg:{module}.{name}", package_version(module)))
            if _holds_data(value):  # interp1d(x, y), a fitted model: its attributes are data
                self.data.setdefault(where, value)
            return
        node.leaves.add((f"mutable:{where}", "mutable"))
        if not is_state(value):
            self.data.setdefault(where, value)
            self._code_in_data(node, where, value, 0)

    def _project_folders(self, node: Node, where: str) -> tuple[str, ...]:
        """The folders a constant path read by `node` at `where` is recorded relative to
        (`_values.in_project`): the import root of the project module `node` was written in
        and of the one the constant was found in (`import_root`)."""
        obj = node.obj
        if isinstance(obj, Skeleton):
            home = obj.cls.__module__
        elif isinstance(obj, FunctionType):
            home = home_module(obj)
        else:
            home = getattr(obj, "__module__", None)
        names = [home]
        parts = where.split(".")
        for cut in range(len(parts) - 1, 0, -1):
            name = ".".join(parts[:cut])
            if name in sys.modules:
                names.append(name)
                break
        return tuple(dict.fromkeys(r for n in names if isinstance(n, str) for r in import_root(n)))

    def _indirect_code(self, node: Node, where: str, value: object) -> None:
        """Code a value runs besides what `unwrap` finds: wrapper bodies, np.vectorize's
        function, functools.singledispatch implementations (and which types pick them)."""
        layer = value
        for _ in range(16):
            if not (isinstance(layer, FunctionType) and hasattr(layer, "__wrapped__")):
                break
            self._code_dependency(node, layer)  # the wrapper's own body runs too
            layer = layer.__wrapped__
        for attr in ("pyfunc", "py_func"):  # np.vectorize(helper), numba.jit(helper)
            pyfunc = getattr(value, attr, None) if not isinstance(value, FunctionType) else None
            if isinstance(pyfunc, FunctionType):
                self._code_dependency(node, unwrap(pyfunc))  # type: ignore[arg-type]
        registry = _dispatch_registry(value)
        if registry is not None:
            for impl in list(registry.values()):
                self.classify(node, f"{where}.<registered>", impl)
            self.data.setdefault(f"{where}.<registry>", registry)

    def _code_in_data(self, node: Node, where: str, value: object, depth: int) -> None:
        """Functions stored in module data (``OPS = {"x": scale}``, decorator registries) are
        code the function may call: follow them (their digest also enters the data's)."""
        if depth > 3:
            return
        if isinstance(value, dict):
            items = list(value.values())[:10_000]
        elif isinstance(value, (list, tuple, set, frozenset)):
            items = list(value)[:10_000]
        else:
            return
        for item in items:
            if isinstance(item, (FunctionType, type, functools.partial)) or (
                callable(item) and hasattr(item, "__wrapped__")
            ):
                self.classify(node, f"{where}.<item>", item)
            elif isinstance(item, (dict, list, tuple, set, frozenset)):
                self._code_in_data(node, where, item, depth + 1)

    def _code_dependency(self, node: Node, target: FunctionType | type) -> None:
        """Edge to a project function/class, or a versioned leaf for library code."""
        module = target.__module__
        name = target.__qualname__ if isinstance(target, type) else _code_qualname(target)
        if isinstance(target, FunctionType):
            module = home_module(target)
        if is_project_module(module) and not (isinstance(target, type) and extension_binary(module)):
            kind = "class" if isinstance(target, type) else "helper"
            node.targets[(f"{kind}:{module}.{name}", id(target))] = target
        else:
            node.leaves.add((f"pkg:{module}.{name}", package_version(module)))

    def _seal(self, members: list[Node]) -> None:
        """Compute digests of one finished strongly connected component."""
        inside = {id(m.obj) for m in members}
        deps: dict[int, tuple[tuple[str, str], ...]] = {}
        for m in members:
            edges = {
                (label, "recursive" if key in inside else self.nodes[key].digest)
                for (label, key) in m.targets
            }
            deps[id(m)] = tuple(sorted(m.leaves | edges))
        only = members[0]
        if len(members) == 1 and id(only.obj) not in {key for _, key in only.targets}:
            only.deps = deps[id(only)]
            only.digest = hash_fields("node", only.label, only.shape.own, *_flat(only.deps))
            return
        parts = sorted(("member", m.label, m.shape.own, *_flat(deps[id(m)])) for m in members)
        cycle = hash_fields("cycle", str(len(parts)), *(text for part in parts for text in part))
        for m in members:
            m.deps = tuple(sorted((*deps[id(m)], ("cycle", cycle))))
            m.digest = hash_fields("cyclic", m.label, cycle)


def _static_project_sources(name: str, origin: str, is_package: bool, limit: int = 64) -> list[str]:
    """The source file of project module `name` (not imported: `Walk._unimported_source`) and
    of the project modules it imports, by its text (`import`, `from ... import`), transitively,
    at most `limit` files. Its helpers reach code in modules imported long before (``from
    pkg.util import h``), which no walk sees until it is imported: an edit of ``h`` had been
    served from the cache. A module not imported yet is located by ``find_spec`` only where
    that imports nothing (a top-level name, or a parent already imported); nothing is run."""
    found: dict[str, None] = {}
    todo = [(name, origin, is_package)]
    while todo and len(found) < limit:
        name, path, is_package = todo.pop()
        if path in found:
            continue
        found[path] = None
        try:
            with open(path, "rb") as handle:
                tree = ast.parse(handle.read())
        except (OSError, SyntaxError, ValueError):
            continue
        package = name if is_package else name.rpartition(".")[0]
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                wanted = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                try:
                    base = importlib.util.resolve_name("." * node.level + (node.module or ""), package)
                except (ImportError, ValueError):
                    continue
                wanted = [base, *(f"{base}.{alias.name}" for alias in node.names if alias.name != "*")]
            else:
                continue
            for wanted_name in wanted:
                located = _project_source(wanted_name)
                if located is not None and located[0] not in found:
                    todo.append((wanted_name, *located))
    return list(found)


def _project_source(name: str) -> tuple[str, bool] | None:
    """(source file, is a package) of project module `name`, found without importing it."""
    if not is_project_module(name):
        return None
    module = sys.modules.get(name)
    if module is not None:
        path = getattr(module, "__file__", None)
    else:
        parent = name.rpartition(".")[0]
        if parent and parent not in sys.modules:
            return None  # (find_spec would import the parent: project code)
        try:
            spec = importlib.util.find_spec(name)
        except Exception:  # noqa: BLE001 - not a module (a name imported from one), or no finder
            return None
        path = getattr(spec, "origin", None) if spec is not None else None
    if not isinstance(path, str) or not path.endswith(".py") or _is_library_path(path):
        return None
    return path, path.endswith("__init__.py")


_IMPORT_ROOTS: dict[tuple[str, str], tuple[str, ...]] = {}


def import_root(name: str) -> tuple[str, ...]:
    """The folder project module `name` was imported from (``/a/proj`` for ``pkg.mod`` at
    ``/a/proj/pkg/mod.py``; a script's own folder for ``__main__``), as written and as its
    real path: the project's folder as codeid knows it, the same for every checkout of the
    project. () for a library's module, one without a file, or a file whose folders do not
    match its dotted name (a module loaded by hand)."""
    module = sys.modules.get(name)
    path = getattr(module, "__file__", None)
    if not isinstance(path, str) or not is_project_module(name):
        return ()
    found = _IMPORT_ROOTS.get((name, path))
    if found is None:
        spec = getattr(module, "__spec__", None)
        dotted = getattr(spec, "name", None) if name == "__main__" else name
        packages = dotted.split(".") if isinstance(dotted, str) else []  # (a script: its folder)
        if os.path.basename(path).startswith("__init__."):
            packages.append("")
        folder = os.path.dirname(os.path.abspath(path))
        for part in reversed(packages[:-1] if packages else []):
            if os.path.basename(folder) != part:
                folder = ""
                break
            folder = os.path.dirname(folder)
        if folder and os.path.dirname(folder) != folder:  # (never a disk's root: every path)
            found = tuple(dict.fromkeys((folder, os.path.realpath(folder))))
        else:
            found = ()
        if len(_IMPORT_ROOTS) > 4096:
            _IMPORT_ROOTS.clear()
        _IMPORT_ROOTS[(name, path)] = found
    return found


def _library_attribute(module: ModuleType, attr: str) -> object:
    """``module.attr`` of a library module whose namespace lacks it yet: a submodule not
    imported so far (``np.random`` after a bare ``import numpy``), loaded by the module's
    ``__getattr__`` (PEP 562) or imported as the running code's ``module.attr`` would find
    it once imported. MISSING when it stays absent from the namespace. The code reached had
    differed before and after the first call imported it (a library leaf for ``numpy``, then
    ``numpy.random.default_rng``): the second call in a process was a miss, and
    so was every first call of a new process."""
    members = vars(module)
    if callable(members.get("__getattr__")):
        try:
            getattr(module, attr)
        except Exception:  # noqa: BLE001 - not an attribute (or a failing import): as before
            return MISSING
    elif "__path__" in members:  # a package
        name = f"{module.__name__}.{attr}"
        try:
            if importlib.util.find_spec(name) is not None:
                importlib.import_module(name)
        except Exception:  # noqa: BLE001 - no such submodule, or it fails to import: as before
            return MISSING
    return members.get(attr, MISSING)


def _getenv(value: object) -> bool:
    """``os.getenv`` (or ``os.environ``'s own ``get``, ``__getitem__``: ``G = os.environ.get``)."""
    if value is os.getenv:
        return True
    return isinstance(value, (MethodType, BuiltinMethodType)) and value.__self__ is os.environ


def _dispatch_registry(value: object) -> Mapping | None:
    """The type -> implementation registry of a ``functools.singledispatch`` function."""
    registry = getattr(value, "registry", None)
    if isinstance(registry, Mapping) and callable(getattr(value, "dispatch", None)):
        return registry
    return None


def _holds_data(value: object) -> bool:
    """A callable library *object* with attributes of its own (not a function, class, ufunc
    or a wrapper of one): what it computes depends on those attributes."""
    if isinstance(value, (FunctionType, type, MethodType, ModuleType, functools.partial)):
        return False
    if any(hasattr(value, attr) for attr in ("__wrapped__", "pyfunc", "py_func")):
        return False
    if not pure_python(type(value)):  # C callables (ufuncs, builtins) are code, not data
        return False
    try:
        return bool(vars(value)) and not is_state(value)
    except TypeError:  # no __dict__
        return False


def _member_functions(member: object) -> list[FunctionType]:
    """The plain functions behind a class member (method, static/class method, property)."""
    if isinstance(member, (staticmethod, classmethod)):
        member = member.__func__
    if isinstance(member, property):
        return [f for f in (member.fget, member.fset, member.fdel) if isinstance(f, FunctionType)]
    real = unwrap(member)
    return [real] if isinstance(real, FunctionType) else []


def home_module(fn: FunctionType) -> str:
    """The module a function's code was written in (``functools.wraps`` copies another's;
    `code_module`: `EXEC_MODULE` for code made by exec or eval that no module holds)."""
    name = fn.__globals__.get("__name__")
    return code_module(name if isinstance(name, str) else fn.__module__, fn.__code__)


def _code_qualname(fn: FunctionType) -> str:
    """A function's qualified name; a ``functools.wraps`` wrapper's own (wraps copies another's)."""
    if hasattr(fn, "__wrapped__"):
        return getattr(fn.__code__, "co_qualname", fn.__qualname__)
    return fn.__qualname__


def _flat(deps: tuple[tuple[str, str], ...]) -> tuple[str, ...]:
    """Count-prefixed flat fields of (label, digest) pairs, unambiguous inside a hash."""
    return (str(len(deps)), *(text for pair in deps for text in pair))


def _own_import(namespace: dict) -> Any:
    """The ``__import__`` a module's code runs with when it is not Python's own (None): a
    module `report.why` read again from its edited file imports the project modules edited
    since as they are now; an import in a function's body must be resolved the same way (it
    had found the module this process imported, and the edit of a helper imported there was
    not seen)."""
    own = namespace.get("__builtins__")
    if not isinstance(own, dict) or own is vars(builtins):
        return None
    found = own.get("__import__")
    return found if callable(found) and found is not builtins.__import__ else None
